//! Shows: timecode ([`timecode`]) and its sources, linear timecode from audio ([`ltc`]) and MIDI
//! Time Code ([`mtc`]), and how a transport chases them ([`chase`]), and a show's cue list resolved onto its clock with the
//! pure logic of which cue fires when ([`plan`]). The format is the scene's (`ShowDef`); the
//! engine runs the clock (kira) and sends what fires through the command pipeline.

pub mod actions;
pub mod chase;
pub mod ltc;
pub mod mtc;
pub mod plan;
pub mod timecode;
