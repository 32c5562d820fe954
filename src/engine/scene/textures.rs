//! A model whose texture cannot be loaded is drawn without it, and said so, instead of not at
//! all: a material waiting for an image that never comes is never drawn, and a curator on a
//! live night wants the venue up with the faulty model plain and flagged (`parvis check` names
//! the missing file before). The same holds for scanned meshes (their import leaves such a
//! texture out and notes it).

use std::collections::HashMap;

use bevy::asset::{AssetLoadFailedEvent, UntypedAssetLoadFailedEvent};
use bevy::prelude::*;

/// Textures that failed to load, with why; materials drop them.
#[derive(Debug, Default, Resource)]
pub struct FailedTextures(pub HashMap<AssetId<Image>, String>);

/// Records failed textures and takes them out of every material that uses them, now and as
/// materials arrive (a model's materials may be added before or after its images fail).
pub(crate) fn draw_without_failed_textures(
    mut failed: MessageReader<AssetLoadFailedEvent<Image>>,
    mut added: MessageReader<AssetEvent<StandardMaterial>>,
    mut images: MessageReader<AssetEvent<Image>>,
    mut known: ResMut<FailedTextures>,
    mut materials: ResMut<Assets<StandardMaterial>>,
) {
    // A texture that loads after all (the curator put the file back, and a reload asked for
    // it again under the same id) is no longer taken out of the materials that arrive.
    for event in images.read() {
        if let AssetEvent::Added { id } | AssetEvent::LoadedWithDependencies { id } | AssetEvent::Modified { id } =
            event
            && known.0.remove(id).is_some()
        {
            info!("a texture that had failed has loaded; models loaded from now on use it");
        }
    }
    let mut fresh = false;
    for event in failed.read() {
        let why = event.error.to_string();
        warn!("texture {} could not be loaded ({}); its model is drawn without it", event.path, why.trim_end());
        known.0.insert(event.id, event.path.to_string());
        fresh = true;
    }
    let arrived: Vec<AssetId<StandardMaterial>> = added
        .read()
        .filter_map(|e| match e {
            AssetEvent::Added { id } | AssetEvent::LoadedWithDependencies { id } => Some(*id),
            _ => None,
        })
        .collect();
    if known.0.is_empty() || (!fresh && arrived.is_empty()) {
        return;
    }
    let ids: Vec<AssetId<StandardMaterial>> = if fresh { materials.ids().collect() } else { arrived };
    for id in ids {
        // Read first: `get_mut` would mark every material changed.
        let uses_failed = materials.get(id).is_some_and(|m| slots(m).iter().any(|s| is_failed(s, &known)));
        if uses_failed && let Some(mut material) = materials.get_mut(id) {
            for slot in slots_mut(&mut material) {
                if is_failed(slot, &known) {
                    *slot = None;
                }
            }
        }
    }
}

/// Says, in one line, which model (or other file) failed to load and why; textures have their
/// own line above. (The asset server's own error lines are filtered out of the log.)
pub(crate) fn report_failed_loads(mut failed: MessageReader<UntypedAssetLoadFailedEvent>) {
    for event in failed.read() {
        // A venue with no renderer (`run --no-render`, replay) has no glTF loader: its models
        // are not drawn, which is no failure of the files.
        let no_loader = matches!(event.error, bevy::asset::AssetLoadError::MissingAssetLoader { .. });
        if event.id.type_id() != std::any::TypeId::of::<Image>() && !no_loader {
            error!("{} could not be loaded: {}", event.path, event.error.to_string().trim_end());
        }
    }
}

fn is_failed(slot: &Option<Handle<Image>>, known: &FailedTextures) -> bool {
    slot.as_ref().is_some_and(|h| known.0.contains_key(&h.id()))
}

fn slots(m: &StandardMaterial) -> [&Option<Handle<Image>>; 5] {
    [
        &m.base_color_texture,
        &m.emissive_texture,
        &m.metallic_roughness_texture,
        &m.normal_map_texture,
        &m.occlusion_texture,
    ]
}

fn slots_mut(m: &mut StandardMaterial) -> [&mut Option<Handle<Image>>; 5] {
    [
        &mut m.base_color_texture,
        &mut m.emissive_texture,
        &mut m.metallic_roughness_texture,
        &mut m.normal_map_texture,
        &mut m.occlusion_texture,
    ]
}
