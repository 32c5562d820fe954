//! Turning a validated scene file into entities, and driving their properties from stage
//! parameters. The file stays declarative; everything here is derived from it.

use std::collections::HashMap;

use bevy::gltf::GltfAssetLabel;
use bevy::light::NotShadowCaster;
use bevy::prelude::*;
use bevy::world_serialization::WorldAssetRoot;

use super::venue::{VenueEntity, VenueIndex, VenueLight, VenuePrimitive, standard_material, to_color, to_transform};
use crate::engine::command::{CurrentScene, VenueParams};
use crate::engine::environment::EnvironmentState;
use crate::model::params::ParamValue;
use crate::model::scene::format::*;

/// Names of primitive copies that a binding targets one by one (`name[i]`); they need a
/// material of their own, while other copies share one.
fn individually_bound(scene: &SceneFile) -> Vec<String> {
    scene
        .params
        .iter()
        .flat_map(|p| &p.bind)
        .filter_map(|b| match b {
            BindingDef::Emissive(n) | BindingDef::BaseColour(n) if names_one_copy(n) => Some(n.clone()),
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
        let step = prim.repeat.map_or(Vec3::ZERO, |r| Vec3::from(r.step));
        for (i, name) in prim.copy_names().enumerate() {
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
        let mut entity =
            commands.spawn((Name::new(light.name.clone()), VenueEntity { name: light.name.clone() }, transform));
        match light.kind {
            LightKind::Directional { illuminance } => {
                entity.insert((
                    DirectionalLight { color, illuminance, shadow_maps_enabled: light.shadows, ..default() },
                    VenueLight { base_intensity: illuminance, is_sun: true },
                ));
            }
            LightKind::Point { intensity, range } => {
                entity.insert((
                    PointLight { color, intensity, range, shadow_maps_enabled: light.shadows, ..default() },
                    VenueLight { base_intensity: intensity, is_sun: false },
                ));
            }
            LightKind::Spot { intensity, range, inner_angle, outer_angle } => {
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
                    VenueLight { base_intensity: intensity, is_sun: false },
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
    params: Res<VenueParams>,
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
