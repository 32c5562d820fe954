//! Heritage twins from scans: point clouds read from PLY, LAS and LAZ files, organised in a
//! level-of-detail octree, imported into a content-addressed cache (`import`), and streamed
//! node by node into the venue under point and memory budgets (`cloud`), drawn by our own
//! shaders with eye-dome lighting (`points`, `edl`). See docs/heritage.md.

pub mod cache;
pub mod cloud;
pub mod edl;
pub mod las;
pub mod octree;
pub mod ply;
pub mod points;
pub mod sample;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use thiserror::Error;

/// One point of a scan: position in metres, colour, and the scanner's intensity and class.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Point {
    /// Position (x, y, z), metres.
    pub position: [f32; 3],
    /// sRGB colour.
    pub colour: [u8; 3],
    /// Return intensity, 0–65535 (0 when the scan has none).
    pub intensity: u16,
    /// Classification (ASPRS codes for LAS: 2 ground, 6 building…; 0 unclassified).
    pub class: u8,
}

/// Most points one import accepts: 2 billion points (about 40 GB to hold) is beyond this
/// machine's memory; larger scans need the out-of-core builder that is not written yet.
pub const MAX_IMPORT_POINTS: u64 = 400_000_000;

/// Why an import failed.
#[derive(Debug, Error)]
pub enum ImportError {
    /// The file's kind is not known from its extension.
    #[error("{0}: unknown kind of scan; Parvis imports .ply, .las and .laz point clouds")]
    UnknownKind(PathBuf),
    /// Meshes are not imported yet.
    #[error("{0}: meshes (glTF) are not imported yet; place them in the scene's `assets` as they are")]
    MeshNotYet(PathBuf),
    /// A PLY problem.
    #[error("{0}: {1}")]
    Ply(PathBuf, ply::PlyError),
    /// A LAS/LAZ problem.
    #[error("{0}: {1}")]
    Las(PathBuf, las::LasError),
    /// A cache problem.
    #[error(transparent)]
    Cache(#[from] cache::CacheError),
    /// Nothing to import.
    #[error("{0}: the scan has no points")]
    Empty(PathBuf),
}

/// What an import did.
#[derive(Debug, Clone)]
pub struct Imported {
    /// The folder holding the imported cloud.
    pub dir: PathBuf,
    /// Its index.
    pub index: cache::CloudIndex,
    /// Whether it was imported before (nothing was done).
    pub cached: bool,
    /// Time spent reading, building and writing.
    pub timings: [Duration; 3],
}

/// Imports a scan into `cache_root/<content key>/`, or finds it there. `progress` hears about
/// each phase as it starts.
pub fn import(input: &Path, cache_root: &Path, config: octree::OctreeConfig, mut progress: impl FnMut(&str)) -> Result<Imported, ImportError> {
    let extension = input.extension().and_then(|e| e.to_str()).map(str::to_ascii_lowercase).unwrap_or_default();
    if matches!(extension.as_str(), "gltf" | "glb") {
        return Err(ImportError::MeshNotYet(input.to_owned()));
    }
    if !matches!(extension.as_str(), "ply" | "las" | "laz") {
        return Err(ImportError::UnknownKind(input.to_owned()));
    }
    progress("hashing");
    // The same scan built with other settings is another import.
    let key = format!("{}-n{}-d{}", cache::content_key(input)?, config.max_points_per_node, config.max_depth);
    let dir = cache_root.join(&key);
    if let Ok(index) = cache::read_index(&dir) {
        return Ok(Imported { dir, index, cached: true, timings: [Duration::ZERO; 3] });
    }
    progress("reading");
    let start = Instant::now();
    let (points, origin, attributes) = if extension == "ply" {
        let file = std::fs::File::open(input).map_err(|e| ImportError::Ply(input.to_owned(), e.into()))?;
        let cloud = ply::read_ply(std::io::BufReader::new(file), MAX_IMPORT_POINTS).map_err(|e| ImportError::Ply(input.to_owned(), e))?;
        let attributes = cache::Attributes { colour: cloud.has_colour, intensity: cloud.has_intensity, classification: cloud.has_classification };
        (cloud.points, [0.0; 3], attributes)
    } else {
        let cloud = las::read_las(input, MAX_IMPORT_POINTS).map_err(|e| ImportError::Las(input.to_owned(), e))?;
        // LAS always has intensity and class fields; they may be zero.
        (cloud.points, cloud.origin, cache::Attributes { colour: cloud.has_colour, intensity: true, classification: true })
    };
    if points.is_empty() {
        return Err(ImportError::Empty(input.to_owned()));
    }
    let read = start.elapsed();
    progress("building the octree");
    let start = Instant::now();
    let tree = octree::Octree::build(points, config);
    let built = start.elapsed();
    progress("writing");
    let start = Instant::now();
    let source = input.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let index = cache::write_cloud(&dir, &tree, &source, &key, origin, attributes)?;
    Ok(Imported { dir, index, cached: false, timings: [read, built, start.elapsed()] })
}
