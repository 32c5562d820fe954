//! The model layer of Parvis: plain data and pure logic, the bottom of the house.
//!
//! What it owns: the scene file format and its validation ([`scene`]), the assets root's path
//! rules ([`assets_root`]), venue commands with their origins, permissions and log lines
//! ([`command`]), stage-parameter values ([`params`]), language tags and fallback ([`lang`]),
//! the roles chat platforms give ([`roles`]), the audience protocol, moderation, rule matching
//! and vote counting ([`audience`]), the IRCv3 parser chat bridges read Twitch with ([`irc`]),
//! the seeded random numbers effects are planned with ([`rng`]), shows: timecode and which cue
//! fires when ([`show`]), the program output's targets, settings and frame code ([`program`]),
//! performers: humanoid bones, the VMC protocol, smoothing and recordings ([`performer`]),
//! counting votes and crowd energy across overflow shards ([`shard`]), and the WebSocket frames
//! audience members send ([`websocket`]).
//!
//! What it may use: the standard library and small data crates (serde, ron, thiserror,
//! unicode-normalization, memchr). No Bevy, no threads, no network, no async: the engine
//! (`parvis::engine`) and the edges (`parvis::edges`) build on it, never the other way round.
//! Its only file-system access is reading scene files and checking that the files a scene
//! names exist under the assets root. Being this small is what lets the parsers be fuzzed and
//! the curator's format be understood without the rest of the engine.

pub mod assets_root;
pub mod audience;
pub mod command;
pub mod irc;
pub mod lang;
pub mod net;
pub mod osc;
pub mod osc_tags;
pub mod oscquery;
pub mod params;
pub mod performer;
pub mod program;
pub mod rng;
pub mod roles;
pub mod scene;
pub mod shard;
pub mod show;
pub mod subtitles;
pub mod websocket;
