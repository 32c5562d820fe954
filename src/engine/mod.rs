//! The engine layer: Bevy plugins that turn the model into a venue.
//!
//! What it owns: the frame's order ([`schedule::VenueSystems`]), the command pipeline that
//! applies and logs commands ([`command`]), spawning a scene and binding stage parameters to
//! it, hot reload ([`scene`]), the environment ([`environment`]), the desktop camera
//! ([`camera`]) and overlay ([`hud`]), physical effects ([`effects`]), audience texts in the
//! venue ([`stage_text`]) and the panels they and the headset's hotspot panel are drawn on
//! ([`ui_panel`]), resting when nothing changes ([`rest`]), the venue's side of the live audience (rules, votes, crowd energy,
//! moderation state, [`audience`]), hotspots and tours ([`visit`]), shows on the audio clock ([`show`]), the control room's inputs and echoes (OSC, [`control`]), heritage scans
//! ([`heritage`]), headsets ([`xr`]), offscreen output ([`output`]) and the program output's
//! camera, overlays and feed ([`program`]).
//!
//! What it may use: the model ([`crate::model`]), Bevy and its ecosystem (rapier, OpenXR,
//! kira), and channels. It never imports the edges or the app: an edge reaches the venue only
//! through the channels and shared state the engine publishes (for the audience, the
//! [`audience::hub`]), so a new input protocol never changes an engine module.

pub mod audience;
pub mod camera;
pub mod captions;
pub mod command;
pub mod control;
pub mod effects;
pub mod environment;
pub mod heritage;
pub mod hud;
pub mod net;
pub mod output;
pub mod performer;
pub mod program;
pub mod rest;
pub mod scene;
pub mod schedule;
pub mod show;
pub mod stage_text;
pub mod ui_panel;
pub mod visit;
pub mod xr;
