//! Heritage twins from scans: point clouds read from PLY, LAS and LAZ files (`ply`, `las`),
//! organised in a level-of-detail octree (`octree`), imported into a content-addressed cache
//! (`import`, `cache`, with what imports share in `scan`), and streamed node by node into the
//! venue under point and memory budgets (`cloud`), drawn by our own shaders with eye-dome
//! lighting (`points`, `edl`); meshes with levels of detail (`mesh`, `lod`) and their glTF
//! materials (`material`); synthetic scans
//! (`sample`) and the measuring tape (`measure`). See docs/heritage.md.

pub mod cache;
pub mod cloud;
pub mod edl;
pub mod import;
pub mod las;
pub mod lod;
pub mod material;
pub mod measure;
pub mod mesh;
pub mod octree;
pub mod ply;
pub mod points;
pub mod sample;
pub mod scan;

pub use import::{ImportError, Imported, import};
pub use scan::{Point, Progress};
