//! The venue's environment — sky, ambient light, fog and the sun's strength — as plain state
//! set by the scene and stage parameters, and its transfer to Bevy's rendering resources.

use bevy::prelude::*;

use crate::engine::scene::venue::{VenueLight, to_color};
use crate::engine::schedule::VenueSystems;
use crate::model::scene::format::{Colour, EnvironmentDef, EnvironmentPreset};

/// Marks the cameras that show the venue; they receive its fog.
#[derive(Debug, Clone, Copy, Default, Component)]
pub struct VenueCamera;

/// Of several views of the venue, the one that leads what depends on where the visitor looks
/// (levels of detail, panels turned to face them, the listener): the active one drawn last,
/// which puts a headset's eyes (ordered after it) before the desktop's spectator.
pub fn leading_view<T>(views: impl IntoIterator<Item = T>, camera: impl Fn(&T) -> &Camera) -> Option<T> {
    views.into_iter().filter(|v| camera(v).is_active).max_by_key(|v| camera(v).order)
}

/// The environment as the venue currently wants it.
#[derive(Debug, Clone, Copy, PartialEq, Resource)]
pub struct EnvironmentState {
    /// Preset last applied.
    pub preset: EnvironmentPreset,
    /// Background colour.
    pub sky: Colour,
    /// Ambient light colour.
    pub ambient_colour: Colour,
    /// Ambient light brightness in cd/m².
    pub ambient_brightness: f32,
    /// Fog colour.
    pub fog_colour: Colour,
    /// Exponential fog density per metre; 0 is no fog.
    pub fog_density: f32,
    /// Factor applied to directional lights (the sun).
    pub sun_factor: f32,
}

impl Default for EnvironmentState {
    fn default() -> Self {
        Self::from_def(&EnvironmentDef::default())
    }
}

impl EnvironmentState {
    /// The environment a scene file asks for: its preset, then its explicit overrides.
    pub fn from_def(def: &EnvironmentDef) -> Self {
        let mut state = Self {
            preset: def.preset,
            sky: Colour::rgb(0.0, 0.0, 0.0),
            ambient_colour: Colour::rgb(1.0, 1.0, 1.0),
            ambient_brightness: 0.0,
            fog_colour: Colour::rgb(0.5, 0.5, 0.5),
            fog_density: def.fog_density,
            sun_factor: 1.0,
        };
        state.apply_preset(def.preset);
        if let Some(sky) = def.sky {
            state.sky = sky;
        }
        if let Some(c) = def.ambient_colour {
            state.ambient_colour = c;
        }
        if let Some(b) = def.ambient_brightness {
            state.ambient_brightness = b;
        }
        if let Some(c) = def.fog_colour {
            state.fog_colour = c;
        }
        state
    }

    /// Replaces sky, ambient light, fog colour and sun factor with the preset's.
    /// Fog density is left alone: it is the venue's, not the weather's.
    pub fn apply_preset(&mut self, preset: EnvironmentPreset) {
        let hex = |s: &str| Colour::parse(s).expect("preset colours are valid");
        let (sky, ambient, brightness, fog, sun) = match preset {
            EnvironmentPreset::Day => ("#8cb8e6", "#d8e6ff", 450.0, "#c9d9ea", 1.0),
            EnvironmentPreset::Overcast => ("#a9b1ba", "#d4d8de", 900.0, "#b8bfc6", 0.25),
            EnvironmentPreset::Dusk => ("#e3946a", "#ffb48c", 250.0, "#c98f7a", 0.3),
            EnvironmentPreset::Night => ("#0a1130", "#5068b0", 40.0, "#0d1633", 0.02),
        };
        self.preset = preset;
        self.sky = hex(sky);
        self.ambient_colour = hex(ambient);
        self.ambient_brightness = brightness;
        self.fog_colour = hex(fog);
        self.sun_factor = sun;
    }
}

/// Applies [`EnvironmentState`] to the clear colour, ambient light, fog and the sun.
pub struct EnvironmentPlugin;

impl Plugin for EnvironmentPlugin {
    fn build(&self, app: &mut App) {
        app.init_resource::<EnvironmentState>()
            .init_resource::<ClearColor>()
            .init_resource::<GlobalAmbientLight>()
            .add_systems(
                Update,
                (apply_sky_and_ambient, apply_fog, apply_light_strength).in_set(VenueSystems::Present),
            );
    }
}

fn apply_sky_and_ambient(
    env: Res<EnvironmentState>,
    mut clear: ResMut<ClearColor>,
    mut ambient: ResMut<GlobalAmbientLight>,
) {
    if !env.is_changed() {
        return;
    }
    clear.0 = to_color(env.sky);
    ambient.color = to_color(env.ambient_colour);
    ambient.brightness = env.ambient_brightness;
}

fn apply_fog(
    env: Res<EnvironmentState>,
    mut commands: Commands,
    cameras: Query<(Entity, Option<&DistanceFog>), With<VenueCamera>>,
    new_cameras: Query<(), Added<VenueCamera>>,
) {
    if !env.is_changed() && new_cameras.is_empty() {
        return;
    }
    for (camera, fog) in &cameras {
        if env.fog_density <= 0.0 {
            if fog.is_some() {
                commands.entity(camera).remove::<DistanceFog>();
            }
            continue;
        }
        commands.entity(camera).insert(DistanceFog {
            color: to_color(env.fog_colour),
            falloff: FogFalloff::Exponential { density: env.fog_density },
            ..default()
        });
    }
}

fn apply_light_strength(
    env: Res<EnvironmentState>,
    mut lights: Query<(
        Ref<VenueLight>,
        Option<&mut PointLight>,
        Option<&mut SpotLight>,
        Option<&mut DirectionalLight>,
    )>,
) {
    for (light, point, spot, dir) in &mut lights {
        if !env.is_changed() && !light.is_changed() {
            continue;
        }
        let factor = if light.is_sun { env.sun_factor } else { 1.0 };
        let value = light.base_intensity * factor;
        if let Some(mut l) = point {
            l.intensity = value;
        }
        if let Some(mut l) = spot {
            l.intensity = value;
        }
        if let Some(mut l) = dir {
            l.illuminance = value;
        }
    }
}
