//! Whether a venue has loaded: the condition headless runs wait for before their first
//! picture and a window's `--frames` count from.

use bevy::asset::{LoadState, RecursiveDependencyLoadState};
use bevy::prelude::*;
use bevy::world_serialization::WorldAssetRoot;

use crate::engine::command::CurrentScene;
use crate::engine::heritage::cloud::{CloudStatus, PointCloud, ScanPhase};
use crate::engine::heritage::lod::{MeshScan, MeshScanStatus};
use crate::engine::output::OutputError;

/// Whether the venue has loaded: its scene built, every model loaded and spawned (drawn
/// without a texture that failed, as engine::scene::textures does), every scan imported and
/// shown. `Err` names the first model or scan that cannot load. Headless runs wait for this
/// before their first picture, and a window's `--frames` count from it.
pub fn venue_loading(world: &World) -> Result<bool, OutputError> {
    if !world.contains_resource::<CurrentScene>() {
        return Ok(false);
    }
    let server = world.resource::<AssetServer>();
    let mut pending = false;
    let Some(mut roots) = world.try_query::<(&WorldAssetRoot, Option<&Children>)>() else { return Ok(false) };
    for (root, children) in roots.iter(world) {
        // Loaded is not enough: the model's entities must have been spawned too, which can
        // take more frames than usual on a loaded machine.
        pending |= children.is_none();
        match server.get_recursive_dependency_load_state(&root.0) {
            Some(RecursiveDependencyLoadState::Loaded) => {}
            // The model loaded, a texture of it did not: it is drawn without it
            // (engine::scene::textures), as a scanned mesh is.
            Some(RecursiveDependencyLoadState::Failed(_))
                if matches!(server.get_load_state(&root.0), Some(LoadState::Loaded)) => {}
            Some(RecursiveDependencyLoadState::Failed(e)) => {
                return Err(OutputError::AssetFailed {
                    path: root.0.path().map(|p| p.path().display().to_string()).unwrap_or_default(),
                    reason: e.to_string(),
                });
            }
            _ => pending = true,
        }
    }
    if let Some(mut clouds) = world.try_query::<(&PointCloud, &CloudStatus)>() {
        for (cloud, status) in clouds.iter(world) {
            if let ScanPhase::Failed(reason) = &status.phase {
                return Err(OutputError::AssetFailed { path: cloud.def.path.clone(), reason: reason.clone() });
            }
            // The picture is final once every node the view calls for is drawn.
            pending |= !status.settled();
        }
    }
    if let Some(mut scans) = world.try_query::<(&MeshScan, &MeshScanStatus)>() {
        for (scan, status) in scans.iter(world) {
            match &status.phase {
                ScanPhase::Failed(reason) => {
                    return Err(OutputError::AssetFailed { path: scan.def.path.clone(), reason: reason.clone() });
                }
                ScanPhase::Importing => pending = true,
                // Levels are picked in the frame after the chunks spawn.
                ScanPhase::Ready => pending |= status.levels_shown.is_empty() && status.groups_shown == 0,
            }
        }
    }
    Ok(!pending)
}
