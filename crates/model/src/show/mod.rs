//! Shows: timecode ([`timecode`]), and a show's cue list resolved onto its clock with the
//! pure logic of which cue fires when ([`plan`]). The format is the scene's (`ShowDef`); the
//! engine runs the clock (kira) and sends what fires through the command pipeline.

pub mod actions;
pub mod plan;
pub mod timecode;
