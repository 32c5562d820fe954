//! The venue's entities as the scene file names them (the components every spawned entity
//! carries, and the index from names to entities), and how the file's plain values become
//! Bevy's: transforms, colours and materials. Spawning, the environment, effects and headset
//! locomotion all read these; this module reads only the model.

use std::collections::HashMap;

use bevy::prelude::*;

use crate::model::scene::format::{Colour, MaterialDef, ShapeDef, TransformDef};

/// Marks every entity spawned from the scene file; all of them are replaced on reload.
#[derive(Debug, Clone, Component)]
pub struct VenueEntity {
    /// The name in the scene file (`name[i]` for copies of a repeated primitive).
    pub name: String,
}

/// A primitive's material as written, so bindings can recompute its colours.
#[derive(Debug, Clone, Component)]
pub struct VenuePrimitive {
    /// The material from the scene file.
    pub material: MaterialDef,
    /// The shape, for physics colliders.
    pub shape: ShapeDef,
    /// Whether a headset visitor may teleport onto it (`None`: by slope).
    pub walkable: Option<bool>,
}

/// A light's intensity as written (or last set by a binding), before the environment's scaling.
#[derive(Debug, Clone, Copy, Component)]
pub struct VenueLight {
    /// Lux for directional lights, lumens otherwise.
    pub base_intensity: f32,
    /// Whether the environment preset scales this light (the sun).
    pub is_sun: bool,
}

/// Entities by scene-file name. A repeated primitive's base name lists every copy.
#[derive(Debug, Default, Resource)]
pub struct VenueIndex {
    by_name: HashMap<String, Vec<Entity>>,
}

impl VenueIndex {
    /// Entities known by `name`; empty when there are none.
    pub fn get(&self, name: &str) -> &[Entity] {
        self.by_name.get(name).map_or(&[], Vec::as_slice)
    }

    pub(crate) fn add(&mut self, name: &str, entity: Entity) {
        self.by_name.entry(name.to_owned()).or_default().push(entity);
    }
}

/// Converts a scene transform to a Bevy one.
pub fn to_transform(t: &TransformDef) -> Transform {
    let translation = Vec3::from(t.translation);
    let mut transform = match t.look_at {
        Some(target) => {
            let target = Vec3::from(target);
            let forward = (target - translation).normalize_or_zero();
            // Looking straight up or down needs another "up" to stay well defined.
            let up = if forward.cross(Vec3::Y).length_squared() < 1e-6 { Vec3::Z } else { Vec3::Y };
            Transform::from_translation(translation).looking_at(target, up)
        }
        None => {
            let [rx, ry, rz] = t.rotation.map(f32::to_radians);
            Transform::from_translation(translation).with_rotation(Quat::from_euler(EulerRot::YXZ, ry, rx, rz))
        }
    };
    transform.scale = Vec3::from(t.scale);
    transform
}

/// A scene colour as Bevy's.
pub fn to_color(c: Colour) -> Color {
    let [r, g, b, a] = c.srgba;
    Color::srgba(r, g, b, a)
}

/// A primitive's material as Bevy's: translucent colours blend, others are opaque.
pub fn standard_material(m: &MaterialDef) -> StandardMaterial {
    let colour = to_color(m.colour);
    StandardMaterial {
        base_color: colour,
        perceptual_roughness: m.roughness,
        metallic: m.metallic,
        emissive: LinearRgba::from(to_color(m.emissive)) * m.emissive_strength,
        unlit: m.unlit,
        alpha_mode: if m.colour.is_translucent() { AlphaMode::Blend } else { AlphaMode::Opaque },
        ..default()
    }
}
