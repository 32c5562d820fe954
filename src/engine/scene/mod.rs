//! The scene in the venue: the venue's entities and the conversions from the file's values
//! (`venue`), meshes for primitives (`mesh`), turning a scene into entities and driving them
//! from stage parameters (`spawn`), models drawn without the textures they lack (`textures`),
//! and hot reload (`watch`). The file format and its
//! validation are the model's ([`crate::model::scene`]).

pub mod mesh;
pub mod spawn;
pub mod textures;
pub mod venue;
pub mod watch;

use bevy::prelude::*;

use crate::engine::command::VenueParams;
use crate::engine::command::{CurrentScene, SubmitCommand};
use crate::engine::schedule::VenueSystems;
use crate::model::command::{CommandOrigin, VenueCommand};
use spawn::{rebuild_venue, sync_param_bindings};
use venue::VenueIndex;
use watch::{SceneFileEvent, SceneWatcher};

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
            .init_resource::<textures::FailedTextures>()
            .add_systems(
                Update,
                (textures::draw_without_failed_textures, textures::report_failed_loads).in_set(VenueSystems::Present),
            )
            .add_systems(Update, ingest_scene_file.in_set(VenueSystems::Ingest))
            .add_systems(
                Update,
                (
                    rebuild_venue.run_if(resource_exists_and_changed::<CurrentScene>),
                    sync_param_bindings.run_if(
                        resource_exists::<CurrentScene>
                            .and_then(resource_changed::<VenueParams>.or_else(resource_changed::<CurrentScene>)),
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
