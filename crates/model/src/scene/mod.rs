//! Scene files, the curator's contract: the format (`format`, documented field by field in
//! docs/scene-format.md), its validation with precise errors (`validate`), and the models it
//! names held to the same rules (`models`). The rules that
//! validation and the engine's spawning must agree on (how the copies of a repeated primitive
//! are named, when a colour is translucent) live on the format's types, in one place.

pub mod format;
pub mod models;
pub mod validate;

/// The venue built in: a cloister courtyard with a stage. Used when no scene file is given.
pub const DEFAULT_SCENE: &str = include_str!("../../../../scenes/cloister.ron");

/// Name shown in messages for the built-in scene.
pub const DEFAULT_SCENE_NAME: &str = "scenes/cloister.ron (built in)";
