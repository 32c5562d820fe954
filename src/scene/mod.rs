//! Scene files: the format (`format`), checking (`validate`), meshes for primitives (`mesh`),
//! turning a scene into entities (`spawn`) and hot reload (`watch`).

pub mod format;
pub mod mesh;
pub mod spawn;
pub mod validate;
pub mod watch;

use bevy::prelude::*;

use crate::VenueSystems;
use crate::command::{CommandOrigin, CurrentScene, SubmitCommand, VenueCommand};
use crate::params::StageParams;
use spawn::{VenueIndex, rebuild_venue, sync_param_bindings};
use watch::{SceneFileEvent, SceneWatcher};

/// The venue built in: a cloister courtyard with a stage. Used when no scene file is given.
pub const DEFAULT_SCENE: &str = include_str!("../../scenes/cloister.ron");

/// Name shown in messages for the built-in scene.
pub const DEFAULT_SCENE_NAME: &str = "scenes/cloister.ron (built in)";

/// How scene loading is going, for the HUD, logs and tests.
#[derive(Debug, Default, Resource)]
pub struct SceneStatus {
    /// Versions of the file applied by hot reload.
    pub reloads: u32,
    /// The last rejected version's problems, until a good version arrives.
    pub last_error: Option<String>,
}

/// Builds the venue from [`CurrentScene`], keeps it in step with stage parameters, and applies
/// new versions of the scene file.
pub struct ScenePlugin;

impl Plugin for ScenePlugin {
    fn build(&self, app: &mut App) {
        app.init_resource::<SceneStatus>()
            .init_resource::<VenueIndex>()
            .add_systems(Update, ingest_scene_file.in_set(VenueSystems::Ingest))
            .add_systems(
                Update,
                (
                    rebuild_venue.run_if(resource_exists_and_changed::<CurrentScene>),
                    sync_param_bindings.run_if(
                        resource_exists::<CurrentScene>
                            .and_then(resource_changed::<StageParams>.or_else(resource_changed::<CurrentScene>)),
                    ),
                )
                    .chain()
                    .in_set(VenueSystems::Simulate),
            );
    }
}

/// Turns what the watcher found into commands (good versions) or a logged error (bad ones).
fn ingest_scene_file(
    watcher: Option<Res<SceneWatcher>>,
    mut status: ResMut<SceneStatus>,
    mut submit: MessageWriter<SubmitCommand>,
) {
    let Some(watcher) = watcher else { return };
    for event in watcher.drain() {
        match event {
            SceneFileEvent::Loaded(scene) => {
                info!("{}: reloaded", watcher.path.display());
                status.reloads += 1;
                status.last_error = None;
                submit.write(SubmitCommand {
                    origin: CommandOrigin::Curator(watcher.path.display().to_string()),
                    command: VenueCommand::LoadScene { scene },
                });
            }
            SceneFileEvent::Rejected(error) => {
                error!("scene file rejected, keeping the last good venue:\n{error}");
                status.last_error = Some(error.to_string());
            }
        }
    }
}
