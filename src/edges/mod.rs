//! The edges layer: asynchronous I/O at the venue's borders, on tokio, never touching the
//! `World`.
//!
//! What it owns: the audience's web server, WebSocket and moderators' channel
//! ([`audience`]), the chat bridges to streaming platforms ([`bridge`]), and the control
//! room's OSC socket ([`osc`]) and timecode sources ([`timecode`]), and the program output's
//! encoders (ffmpeg child processes, [`program`]). Later: NATS.
//!
//! What it may use: the model ([`crate::model`]) for what it parses and checks, and the
//! engine's published meeting points only — today [`crate::engine::audience::hub`] (bounded
//! channels into the venue, its broadcasts out, the venue's moderation state and metrics) and
//! [`crate::engine::control`] (the control room's channels both ways) and
//! [`crate::engine::program`] (the program output's frames, sound and counters).
//! It never imports the app, and one edge never imports another: a chat bridge enters through
//! the hub exactly as the page does.

pub mod audience;
pub mod bridge;
pub mod captions;
pub mod nats;
pub mod osc;
pub mod program;
pub mod timecode;
pub mod vmc;
