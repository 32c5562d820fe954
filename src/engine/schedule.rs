//! The venue's frame: one chain of system sets that every engine plugin places its systems in,
//! ordered once here.

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

/// Orders [`VenueSystems`] in `Update`: added once, by the venue's core.
pub struct VenueSchedulePlugin;

impl Plugin for VenueSchedulePlugin {
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
        );
    }
}
