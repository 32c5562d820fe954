//! Importing a point cloud (PLY, LAS, LAZ) into the content-addressed cache a venue streams
//! from: in memory for ordinary files, out of core past [`IN_MEMORY_BYTES`].

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use thiserror::Error;

use super::scan::{Counting, Progress, staging_dir};
use super::{cache, las, octree, ply};

/// Most points an in-memory import accepts (20 bytes a point: 8 GB). Files over
/// [`IN_MEMORY_BYTES`] are imported out of core instead, up to [`MAX_OUT_OF_CORE_POINTS`].
pub const MAX_IMPORT_POINTS: u64 = 400_000_000;

/// Why an import failed.
#[derive(Debug, Error)]
pub enum ImportError {
    /// The file's kind is not known from its extension.
    #[error("{0}: unknown kind of scan; Parvis imports .ply, .las and .laz point clouds and .glb/.gltf meshes")]
    UnknownKind(PathBuf),
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

/// Imports a scan into `cache_root/<content key>/`, or finds it there, reporting into
/// `progress` as it goes.
pub fn import(
    input: &Path,
    cache_root: &Path,
    config: octree::OctreeConfig,
    progress: &Arc<Progress>,
) -> Result<Imported, ImportError> {
    import_with(input, cache_root, config, progress, IN_MEMORY_BYTES)
}

/// Scans larger than this (bytes of file) are imported out of core: 1 GiB is some 40 to 130
/// million points, 1 to 3 GB in memory.
pub const IN_MEMORY_BYTES: u64 = 1 << 30;

/// [`import`], importing out of core any file larger than `in_memory_bytes`.
pub fn import_with(
    input: &Path,
    cache_root: &Path,
    config: octree::OctreeConfig,
    progress: &Arc<Progress>,
    in_memory_bytes: u64,
) -> Result<Imported, ImportError> {
    let extension = input.extension().and_then(|e| e.to_str()).map(str::to_ascii_lowercase).unwrap_or_default();
    if matches!(extension.as_str(), "gltf" | "glb") {
        // Meshes have their own import (`mesh::import_mesh`).
        return Err(ImportError::UnknownKind(input.to_owned()));
    }
    if !matches!(extension.as_str(), "ply" | "las" | "laz") {
        return Err(ImportError::UnknownKind(input.to_owned()));
    }
    let size = std::fs::metadata(input).map(|m| m.len()).unwrap_or(0);
    progress.begin("hashing", 0);
    // The same scan built with other settings is another import.
    let key = format!("{}-n{}-d{}", cache::content_key(input)?, config.max_points_per_node, config.max_depth);
    let dir = cache_root.join(&key);
    if let Ok(index) = cache::read_index(&dir) {
        return Ok(Imported { dir, index, cached: true, timings: [Duration::ZERO; 3] });
    }
    if size > in_memory_bytes {
        return import_out_of_core(input, &extension, dir, &key, config, progress);
    }
    progress.begin("reading", size);
    let start = Instant::now();
    let (points, origin, attributes) = if extension == "ply" {
        let file = std::fs::File::open(input).map_err(|e| ImportError::Ply(input.to_owned(), e.into()))?;
        let reader = Counting { inner: std::io::BufReader::new(file), progress: progress.clone() };
        let cloud = ply::read_ply(reader, MAX_IMPORT_POINTS).map_err(|e| ImportError::Ply(input.to_owned(), e))?;
        let attributes = cache::Attributes {
            colour: cloud.has_colour,
            intensity: cloud.has_intensity,
            classification: cloud.has_classification,
        };
        (cloud.points, [0.0; 3], attributes)
    } else {
        let file = std::fs::File::open(input)
            .map_err(|e| ImportError::Las(input.to_owned(), las::LasError::Open(format!("cannot open it: {e}"))))?;
        let reader = Counting { inner: std::io::BufReader::new(file), progress: progress.clone() };
        let cloud = las::read_las_from(reader, MAX_IMPORT_POINTS).map_err(|e| ImportError::Las(input.to_owned(), e))?;
        // LAS always has intensity and class fields; they may be zero.
        (
            cloud.points,
            cloud.origin,
            cache::Attributes { colour: cloud.has_colour, intensity: true, classification: true },
        )
    };
    if points.is_empty() {
        return Err(ImportError::Empty(input.to_owned()));
    }
    let read = start.elapsed();
    progress.begin("building the octree", 0);
    let start = Instant::now();
    let tree = octree::Octree::build(points, config);
    let built = start.elapsed();
    progress.begin("writing", 0);
    let start = Instant::now();
    let source = input.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let staging = staging_dir(&dir);
    let index = cache::write_cloud(&staging, &tree, &source, &key, origin, attributes)?;
    let index = cache::publish(&staging, &dir, || cache::read_index(&dir).ok())?.unwrap_or(index);
    Ok(Imported { dir, index, cached: false, timings: [read, built, start.elapsed()] })
}

/// Points a scan larger than [`MAX_IMPORT_POINTS`] may have out of core: what the cache's
/// 32-bit node counts and a disk of this size can hold.
pub const MAX_OUT_OF_CORE_POINTS: u64 = 20_000_000_000;

/// Imports a scan without holding it: the points go once through the octree's upper levels
/// into per-node bucket files (for a PLY, after a first pass that finds the bounds; a LAS
/// header has them), then each bucket's subtree is built in memory on its own.
fn import_out_of_core(
    input: &Path,
    extension: &str,
    dir: PathBuf,
    key: &str,
    config: octree::OctreeConfig,
    progress: &Arc<Progress>,
) -> Result<Imported, ImportError> {
    use std::io::Write as _;
    let size = std::fs::metadata(input).map(|m| m.len()).unwrap_or(0);
    let staging = staging_dir(&dir);
    let buckets = staging.join("buckets");
    let io = |path: &Path| {
        let path = path.to_owned();
        move |error: std::io::Error| ImportError::Cache(cache::CacheError::Io { path, error })
    };
    let open = || std::fs::File::open(input).map(std::io::BufReader::new);
    let start = Instant::now();
    let mut count = 0u64;
    let (origin, attributes, builder) = if extension == "ply" {
        progress.begin("measuring", size);
        let (mut lo, mut hi) = ([f32::MAX; 3], [f32::MIN; 3]);
        let reader = Counting {
            inner: open().map_err(|e| ImportError::Ply(input.to_owned(), e.into()))?,
            progress: progress.clone(),
        };
        let cloud = ply::read_ply_each(reader, MAX_OUT_OF_CORE_POINTS, |p| {
            for a in 0..3 {
                lo[a] = lo[a].min(p.position[a]);
                hi[a] = hi[a].max(p.position[a]);
            }
            Ok(())
        })
        .map_err(|e| ImportError::Ply(input.to_owned(), e))?;
        let size_of_cube = (0..3).map(|a| hi[a] - lo[a]).fold(0.0f32, f32::max).max(1e-3) * 1.0001;
        let cube = octree::Cube { min: lo, size: size_of_cube };
        let mut builder =
            octree::OutOfCore::new(cube, config, bucket_depth(size / 15), &buckets).map_err(io(&buckets))?;
        progress.begin("reading", size);
        let reader = Counting {
            inner: open().map_err(|e| ImportError::Ply(input.to_owned(), e.into()))?,
            progress: progress.clone(),
        };
        ply::read_ply_each(reader, MAX_OUT_OF_CORE_POINTS, |p| {
            count += 1;
            builder.insert(p)
        })
        .map_err(|e| ImportError::Ply(input.to_owned(), e))?;
        let attributes = cache::Attributes {
            colour: cloud.has_colour,
            intensity: cloud.has_intensity,
            classification: cloud.has_classification,
        };
        ([0.0; 3], attributes, builder)
    } else {
        progress.begin("reading", size);
        let file = std::fs::File::open(input)
            .map_err(|e| ImportError::Las(input.to_owned(), las::LasError::Open(format!("cannot open it: {e}"))))?;
        let reader = Counting { inner: std::io::BufReader::new(file), progress: progress.clone() };
        let mut builder: Option<octree::OutOfCore> = None;
        let cloud = las::read_las_each(reader, MAX_OUT_OF_CORE_POINTS, |bounds, p| {
            let b = match builder.as_mut() {
                Some(b) => b,
                None => {
                    let size_of_cube = bounds.max.iter().fold(0.0f32, |m, v| m.max(*v)).max(1e-3) * 1.0001;
                    builder.insert(octree::OutOfCore::new(
                        octree::Cube { min: [0.0; 3], size: size_of_cube },
                        config,
                        bucket_depth(size / 8),
                        &buckets,
                    )?)
                }
            };
            // The header's bounds place the octree: a point outside them is a lying header.
            let outside = (0..3).any(|a| p.position[a] < -1e-3 || p.position[a] > bounds.max[a] + 1e-3);
            if outside {
                return Err(std::io::Error::other(format!(
                    "point {count} at {:?} lies outside the header's bounds",
                    p.position
                )));
            }
            count += 1;
            b.insert(p)
        })
        .map_err(|e| ImportError::Las(input.to_owned(), e))?;
        let Some(builder) = builder else { return Err(ImportError::Empty(input.to_owned())) };
        (cloud.origin, cache::Attributes { colour: cloud.has_colour, intensity: true, classification: true }, builder)
    };
    if count == 0 {
        return Err(ImportError::Empty(input.to_owned()));
    }
    let read = start.elapsed();
    progress.begin("building the octree", 0);
    let start = Instant::now();
    let data_path = staging.join("points.bin");
    let mut data = std::io::BufWriter::new(std::fs::File::create(&data_path).map_err(io(&data_path))?);
    let (nodes, points, dropped) = builder.finish(&mut data).map_err(io(&data_path))?;
    data.flush().map_err(io(&data_path))?;
    let built = start.elapsed();
    let source = input.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let index = cache::CloudIndex {
        version: cache::CACHE_VERSION,
        source,
        key: key.to_owned(),
        origin,
        points,
        dropped,
        attributes,
        nodes,
    };
    let index_path = staging.join("cloud.json");
    std::fs::write(&index_path, serde_json::to_vec_pretty(&index).expect("plain data")).map_err(io(&index_path))?;
    let index = cache::publish(&staging, &dir, || cache::read_index(&dir).ok())?.unwrap_or(index);
    Ok(Imported { dir, index, cached: false, timings: [read, built, Duration::ZERO] })
}

/// Depth of the bucket files: about 2 to 20 million points each for a scan of `points`.
fn bucket_depth(points: u64) -> u8 {
    match points {
        0..=20_000_000 => 1,
        20_000_001..=160_000_000 => 2,
        _ => 3,
    }
}
