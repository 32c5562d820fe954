//! Turning a validated scene file into entities, and driving their properties from stage
//! parameters. The file stays declarative; everything here is derived from it.

use std::collections::HashMap;

use bevy::gltf::GltfAssetLabel;
use bevy::light::NotShadowCaster;
use bevy::prelude::*;
use bevy::world_serialization::WorldAssetRoot;

use super::format::*;
use crate::command::CurrentScene;
use crate::environment::EnvironmentState;
use crate::params::{ParamValue, StageParams};

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

    fn add(&mut self, name: &str, entity: Entity) {
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

fn standard_material(m: &MaterialDef) -> StandardMaterial {
    let colour = to_color(m.colour);
    StandardMaterial {
        base_color: colour,
        perceptual_roughness: m.roughness,
        metallic: m.metallic,
        emissive: LinearRgba::from(to_color(m.emissive)) * m.emissive_strength,
        unlit: m.unlit,
        alpha_mode: if m.colour.srgba[3] < 1.0 { AlphaMode::Blend } else { AlphaMode::Opaque },
        ..default()
    }
}

/// Names of primitive copies that a binding targets one by one (`name[i]`); they need a
/// material of their own, while other copies share one.
fn individually_bound(scene: &SceneFile) -> Vec<String> {
    scene
        .params
        .iter()
        .flat_map(|p| &p.bind)
        .filter_map(|b| match b {
            BindingDef::Emissive(n) | BindingDef::BaseColour(n) if n.ends_with(']') => Some(n.clone()),
            _ => None,
        })
        .collect()
}

/// Replaces the venue's entities whenever the current scene changes.
pub(crate) fn rebuild_venue(
    mut commands: Commands,
    scene: Res<CurrentScene>,
    existing: Query<Entity, With<VenueEntity>>,
    mut meshes: ResMut<Assets<Mesh>>,
    mut materials: ResMut<Assets<StandardMaterial>>,
    asset_server: Res<AssetServer>,
) {
    for entity in &existing {
        commands.entity(entity).despawn();
    }
    let scene = &scene.0;
    let mut index = VenueIndex::default();

    for asset in &scene.assets {
        let handle = asset_server.load(GltfAssetLabel::Scene(asset.scene).from_asset(asset.path.clone()));
        let entity = commands
            .spawn((
                Name::new(asset.name.clone()),
                VenueEntity { name: asset.name.clone() },
                WorldAssetRoot(handle),
                to_transform(&asset.transform),
            ))
            .id();
        index.add(&asset.name, entity);
    }

    let own_material = individually_bound(scene);
    for prim in &scene.primitives {
        let mesh = meshes.add(super::mesh::shape_mesh(&prim.shape));
        let shared = materials.add(standard_material(&prim.material));
        let base = to_transform(&prim.transform);
        let copies = prim.repeat.map_or(1, |r| r.count);
        let step = prim.repeat.map_or(Vec3::ZERO, |r| Vec3::from(r.step));
        for i in 0..copies {
            let name = if prim.repeat.is_some() { format!("{}[{i}]", prim.name) } else { prim.name.clone() };
            let material = if own_material.contains(&name) {
                materials.add(standard_material(&prim.material))
            } else {
                shared.clone()
            };
            let mut transform = base;
            transform.translation += step * i as f32;
            let mut entity = commands.spawn((
                Name::new(name.clone()),
                VenueEntity { name: name.clone() },
                VenuePrimitive { material: prim.material, shape: prim.shape, walkable: prim.walkable },
                Mesh3d(mesh.clone()),
                MeshMaterial3d(material),
                transform,
                if prim.visible { Visibility::Inherited } else { Visibility::Hidden },
            ));
            if !prim.casts_shadows {
                entity.insert(NotShadowCaster);
            }
            let id = entity.id();
            index.add(&name, id);
            if prim.repeat.is_some() {
                index.add(&prim.name, id);
            }
        }
    }

    for light in &scene.lights {
        let color = to_color(light.colour);
        let transform = to_transform(&light.transform);
        let mut entity = commands.spawn((Name::new(light.name.clone()), VenueEntity { name: light.name.clone() }, transform));
        match light.kind {
            LightKind::Directional { illuminance } => {
                entity.insert((
                    DirectionalLight {
                        color,
                        illuminance,
                        shadow_maps_enabled: light.shadows,
                        ..default()
                    },
                    VenueLight {
                        base_intensity: illuminance,
                        is_sun: true,
                    },
                ));
            }
            LightKind::Point { intensity, range } => {
                entity.insert((
                    PointLight {
                        color,
                        intensity,
                        range,
                        shadow_maps_enabled: light.shadows,
                        ..default()
                    },
                    VenueLight {
                        base_intensity: intensity,
                        is_sun: false,
                    },
                ));
            }
            LightKind::Spot {
                intensity,
                range,
                inner_angle,
                outer_angle,
            } => {
                entity.insert((
                    SpotLight {
                        color,
                        intensity,
                        range,
                        inner_angle: inner_angle.to_radians(),
                        outer_angle: outer_angle.to_radians(),
                        shadow_maps_enabled: light.shadows,
                        ..default()
                    },
                    VenueLight {
                        base_intensity: intensity,
                        is_sun: false,
                    },
                ));
            }
        }
        index.add(&light.name, entity.id());
    }
    commands.insert_resource(index);
}

/// Pushes every stage parameter's value into the properties it is bound to. Runs when a value
/// or the venue changes; it sets the whole state, so the picture depends only on the values.
pub(crate) fn sync_param_bindings(
    scene: Res<CurrentScene>,
    params: Res<StageParams>,
    index: Res<VenueIndex>,
    mut environment: ResMut<EnvironmentState>,
    mut lights: Query<(
        &mut VenueLight,
        Option<&mut PointLight>,
        Option<&mut SpotLight>,
        Option<&mut DirectionalLight>,
    )>,
    primitives: Query<(&VenuePrimitive, &MeshMaterial3d<StandardMaterial>)>,
    mut materials: ResMut<Assets<StandardMaterial>>,
    mut visibility: Query<&mut Visibility, With<VenueEntity>>,
) {
    // The environment is rebuilt from the file each time: presets first, so that parameters
    // bound to single environment properties override the preset whatever their order.
    let mut env = EnvironmentState::from_def(&scene.0.environment);
    for (def, value) in params.iter() {
        if let ParamValue::Enum(v) = value
            && def.bind.contains(&BindingDef::EnvironmentPreset)
            && let Some(preset) = EnvironmentPreset::from_name(v)
        {
            env.apply_preset(preset);
        }
    }
    let mut shown: HashMap<Entity, bool> = HashMap::new();
    for (def, value) in params.iter() {
        for binding in &def.bind {
            match (binding, value) {
                (BindingDef::LightColour(n), ParamValue::Colour(c)) => {
                    for &e in index.get(n) {
                        if let Ok((_, point, spot, dir)) = lights.get_mut(e) {
                            let color = to_color(*c);
                            if let Some(mut l) = point {
                                l.color = color;
                            }
                            if let Some(mut l) = spot {
                                l.color = color;
                            }
                            if let Some(mut l) = dir {
                                l.color = color;
                            }
                        }
                    }
                }
                (BindingDef::LightIntensity(n), ParamValue::Float(v)) => {
                    for &e in index.get(n) {
                        if let Ok((mut light, ..)) = lights.get_mut(e) {
                            light.base_intensity = *v;
                        }
                    }
                }
                (BindingDef::Emissive(n) | BindingDef::BaseColour(n), ParamValue::Colour(c)) => {
                    for &e in index.get(n) {
                        let Ok((prim, handle)) = primitives.get(e) else { continue };
                        let Some(mut material) = materials.get_mut(&handle.0) else { continue };
                        if matches!(binding, BindingDef::Emissive(_)) {
                            material.emissive = LinearRgba::from(to_color(*c)) * prim.material.emissive_strength;
                        } else {
                            material.base_color = to_color(*c);
                        }
                    }
                }
                (BindingDef::Visible(n), ParamValue::Bool(b)) => {
                    for &e in index.get(n) {
                        shown.insert(e, *b);
                    }
                }
                (BindingDef::VisibleWhen(n, option), ParamValue::Enum(v)) => {
                    for &e in index.get(n) {
                        let entry = shown.entry(e).or_insert(false);
                        *entry |= v == option;
                    }
                }
                (BindingDef::SkyColour, ParamValue::Colour(c)) => env.sky = *c,
                (BindingDef::FogColour, ParamValue::Colour(c)) => env.fog_colour = *c,
                (BindingDef::FogDensity, ParamValue::Float(v)) => env.fog_density = *v,
                (BindingDef::AmbientBrightness, ParamValue::Float(v)) => env.ambient_brightness = *v,
                (BindingDef::EnvironmentPreset, ParamValue::Enum(_)) => {}
                // Validation guarantees matching types; a mismatch can only come from a bug.
                (binding, value) => warn!("binding {binding:?} cannot take {value:?}"),
            }
        }
    }
    environment.set_if_neq(env);
    for (entity, visible) in shown {
        if let Ok(mut v) = visibility.get_mut(entity) {
            v.set_if_neq(if visible { Visibility::Inherited } else { Visibility::Hidden });
        }
    }
}
