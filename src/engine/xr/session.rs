//! What every part of a headset visit shares: where the head is ([`XrHead`]), the session's
//! log ([`XrSessionLog`]), the order of the visit's systems ([`XrVisitSystems`]), and what the
//! probe found ([`RuntimeInfo`]).

use std::time::Instant;

use bevy::prelude::*;
use serde::Serialize;

/// What `--xr` does when no headset session can start.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum XrMode {
    /// Say what is missing and carry on on the desktop.
    #[default]
    Prefer,
    /// Say what is missing and exit with an error.
    Require,
}

/// The runtime and headset [`super::probe`] found.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RuntimeInfo {
    /// Runtime name and version, e.g. "Monado(XRT) by Collabora et al 25.0.0".
    pub runtime: String,
    /// The headset, e.g. "Monado: Simulated HMD".
    pub system: String,
}

/// Where the visitor's head is, in the venue (the middle of the eye cameras), once a session
/// draws frames; with its facing direction.
#[derive(Debug, Clone, Copy, Default, Resource)]
pub struct XrHead(pub Option<Transform>);

/// What happened in the headset session, for the log, the report and the session test.
#[derive(Debug, Clone, Default, Resource, Serialize)]
pub struct XrSessionLog {
    /// Runtime and headset.
    pub runtime: Option<RuntimeInfo>,
    /// Per-eye resolution.
    pub eye_resolution: Option<[u32; 2]>,
    /// Session states in the order entered.
    pub states: Vec<String>,
    /// Frames drawn for the headset (the runtime asked for them).
    pub frames_rendered: u64,
    /// Eye cameras seen drawing in the last frame.
    pub eye_cameras: usize,
    /// Time between headset frames, milliseconds (at most the last 10 000).
    pub frame_ms: std::collections::VecDeque<f64>,
    /// The runtime's predicted display period, milliseconds.
    pub display_period_ms: Option<f64>,
    /// The head's position in the play space (from the runtime), sampled every 10th frame.
    pub head_in_play_space: Vec<[f32; 3]>,
    /// The left eye camera's position in the venue, at the same frames.
    pub eye_in_venue: Vec<[f32; 3]>,
    /// The play space's origin in the venue once placed at the spawn point.
    pub spawn: Option<[f32; 3]>,
    /// Whether the session went through its end (stopping, exiting, destroyed).
    pub ended_cleanly: bool,
    /// Why the session ended early, if it did.
    pub lost: Option<String>,
    #[serde(skip)]
    pub(super) last_frame: Option<Instant>,
    #[serde(skip)]
    pub(super) spawned_at_frame: u64,
}

impl XrSessionLog {
    /// Median and 99th percentile of the frame intervals, milliseconds.
    pub fn frame_time_summary(&self) -> Option<(f64, f64)> {
        if self.frame_ms.is_empty() {
            return None;
        }
        let mut sorted: Vec<f64> = self.frame_ms.iter().copied().collect();
        sorted.sort_by(f64::total_cmp);
        let at = |q: f64| sorted[((sorted.len() - 1) as f64 * q).round() as usize];
        Some((at(0.5), at(0.99)))
    }
}

/// Where the XR systems run in the frame.
#[derive(SystemSet, Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum XrVisitSystems {
    /// Follow the runtime: states, frames, head.
    Track,
    /// Move the visitor (spawn, teleport, turns, walking).
    Move,
}
