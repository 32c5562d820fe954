//! Parvis: a real-time engine for immersive cultural venues.
//!
//! Every change to a venue is a [`command::VenueCommand`] that passes one pipeline:
//! inputs → checks → commands (logged) → ECS state → rendering. Each capability is a plugin:
//! [`scene::ScenePlugin`], [`command::CommandPlugin`], [`environment::EnvironmentPlugin`],
//! [`audience::AudiencePlugin`], [`effects::EffectsPlugin`],
//! [`camera::CameraPlugin`], [`hud::HudPlugin`]; [`app`] assembles them for a window, for
//! headless rendering, or for tests without rendering.

pub mod app;
pub mod assets_root;
pub mod audience;
pub mod bridge;
pub mod camera;
pub mod command;
pub mod effects;
pub mod environment;
pub mod heritage;
pub mod hud;
pub mod loadgen;
pub mod output;
pub mod params;
pub mod scene;
pub mod stage_text;
pub mod visit;
pub mod xr;

use bevy::prelude::*;

/// The venue's frame, in order. Other plugins place their systems in these sets.
#[derive(SystemSet, Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum VenueSystems {
    /// Drain inputs (files, network, devices) into commands.
    Ingest,
    /// Decide: moderation and rules turn inputs into commands.
    Decide,
    /// Check and apply commands to the venue's state, and log them.
    Apply,
    /// Derive the world from state: spawn the scene, push parameter values into properties.
    Simulate,
    /// Hand the state to rendering and other outputs.
    Present,
}

/// The venue's core, with no rendering: commands, stage parameters, the scene and its
/// environment. Needs `AssetPlugin` and the `Mesh` and `StandardMaterial` asset types.
pub struct VenueCorePlugin;

impl Plugin for VenueCorePlugin {
    fn build(&self, app: &mut App) {
        app.configure_sets(
            Update,
            (
                VenueSystems::Ingest,
                VenueSystems::Decide,
                VenueSystems::Apply,
                VenueSystems::Simulate,
                VenueSystems::Present,
            )
                .chain(),
        )
        .add_plugins((
            command::CommandPlugin,
            scene::ScenePlugin,
            environment::EnvironmentPlugin,
            audience::AudiencePlugin,
            effects::EffectsPlugin,
            stage_text::StageTextPlugin,
            visit::VisitPlugin { audio: false },
            heritage::measure::MeasurePlugin,
        ));
    }
}
