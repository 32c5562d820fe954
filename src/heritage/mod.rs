//! Heritage twins from scans: point clouds read from PLY, LAS and LAZ files, organised in a
//! level-of-detail octree, imported into a content-addressed cache (`import`), and streamed
//! node by node into the venue under point and memory budgets (`cloud`), drawn by our own
//! shaders with eye-dome lighting (`points`, `edl`). See docs/heritage.md.

pub mod cache;
pub mod cloud;
pub mod edl;
pub mod las;
pub mod measure;
pub mod lod;
pub mod mesh;
pub mod octree;
pub mod ply;
pub mod points;
pub mod sample;

use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
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

/// Most points an in-memory import accepts (20 bytes a point: 8 GB). Files over
/// [`IN_MEMORY_BYTES`] are imported out of core instead, up to [`MAX_OUT_OF_CORE_POINTS`].
pub const MAX_IMPORT_POINTS: u64 = 400_000_000;

/// Why an import failed.
#[derive(Debug, Error)]
pub enum ImportError {
    /// The file's kind is not known from its extension.
    #[error("{0}: unknown kind of scan; Parvis imports .ply, .las and .laz point clouds and .glb/.gltf meshes")]
    UnknownKind(PathBuf),
    /// A glTF problem.
    #[error("{0}: {1}")]
    Mesh(PathBuf, mesh::MeshError),
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

/// How an import is going: its step, and how far into it (bytes read, chunks simplified). Shared
/// with whoever shows it (a progress bar, the venue's status) while the import runs.
#[derive(Debug, Default)]
pub struct Progress {
    /// Steps begun, in order; the last is under way.
    steps: Mutex<Vec<&'static str>>,
    done: AtomicU64,
    total: AtomicU64,
}

impl Progress {
    fn begin(&self, step: &'static str, total: u64) {
        self.steps.lock().expect("progress steps").push(step);
        self.done.store(0, Ordering::Relaxed);
        self.total.store(total, Ordering::Relaxed);
    }

    fn add(&self, n: u64) {
        self.done.fetch_add(n, Ordering::Relaxed);
    }

    /// The step under way ("" before the start).
    pub fn step(&self) -> &'static str {
        self.steps.lock().expect("progress steps").last().copied().unwrap_or("")
    }

    /// Every step begun so far, in order (a fast step may come and go between two looks).
    pub fn steps(&self) -> Vec<&'static str> {
        self.steps.lock().expect("progress steps").clone()
    }

    /// Share of the step done, for steps that can tell.
    pub fn fraction(&self) -> Option<f32> {
        let total = self.total.load(Ordering::Relaxed);
        (total > 0).then(|| (self.done.load(Ordering::Relaxed) as f64 / total as f64).min(1.0) as f32)
    }
}

/// Counts the bytes a reader hands out into a [`Progress`].
struct Counting<R> {
    inner: R,
    progress: Arc<Progress>,
}

impl<R: Read> Read for Counting<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.progress.add(n as u64);
        Ok(n)
    }
}

impl<R: std::io::BufRead> std::io::BufRead for Counting<R> {
    fn fill_buf(&mut self) -> std::io::Result<&[u8]> {
        self.inner.fill_buf()
    }
    fn consume(&mut self, amount: usize) {
        self.progress.add(amount as u64);
        self.inner.consume(amount);
    }
}

impl<R: std::io::Seek> std::io::Seek for Counting<R> {
    fn seek(&mut self, pos: std::io::SeekFrom) -> std::io::Result<u64> {
        self.inner.seek(pos)
    }
}

impl<R> std::fmt::Debug for Counting<R> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Counting")
    }
}

/// Imports a scan into `cache_root/<content key>/`, or finds it there, reporting into
/// `progress` as it goes.
pub fn import(input: &Path, cache_root: &Path, config: octree::OctreeConfig, progress: &Arc<Progress>) -> Result<Imported, ImportError> {
    import_with(input, cache_root, config, progress, IN_MEMORY_BYTES)
}

/// Scans larger than this (bytes of file) are imported out of core: 1 GiB is some 40 to 130
/// million points, 1 to 3 GB in memory.
pub const IN_MEMORY_BYTES: u64 = 1 << 30;

/// [`import`], importing out of core any file larger than `in_memory_bytes`.
pub fn import_with(input: &Path, cache_root: &Path, config: octree::OctreeConfig, progress: &Arc<Progress>, in_memory_bytes: u64) -> Result<Imported, ImportError> {
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
        let attributes = cache::Attributes { colour: cloud.has_colour, intensity: cloud.has_intensity, classification: cloud.has_classification };
        (cloud.points, [0.0; 3], attributes)
    } else {
        let file = std::fs::File::open(input).map_err(|e| ImportError::Las(input.to_owned(), las::LasError::Open(format!("cannot open it: {e}"))))?;
        let reader = Counting { inner: std::io::BufReader::new(file), progress: progress.clone() };
        let cloud = las::read_las_from(reader, MAX_IMPORT_POINTS).map_err(|e| ImportError::Las(input.to_owned(), e))?;
        // LAS always has intensity and class fields; they may be zero.
        (cloud.points, cloud.origin, cache::Attributes { colour: cloud.has_colour, intensity: true, classification: true })
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
    let index = publish(&staging, &dir, || cache::read_index(&dir).ok())?.unwrap_or(index);
    Ok(Imported { dir, index, cached: false, timings: [read, built, start.elapsed()] })
}

/// Points a scan larger than [`MAX_IMPORT_POINTS`] may have out of core: what the cache's
/// 32-bit node counts and a disk of this size can hold.
pub const MAX_OUT_OF_CORE_POINTS: u64 = 20_000_000_000;

/// Imports a scan without holding it: the points go once through the octree's upper levels
/// into per-node bucket files (for a PLY, after a first pass that finds the bounds; a LAS
/// header has them), then each bucket's subtree is built in memory on its own.
fn import_out_of_core(input: &Path, extension: &str, dir: PathBuf, key: &str, config: octree::OctreeConfig, progress: &Arc<Progress>) -> Result<Imported, ImportError> {
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
        let reader = Counting { inner: open().map_err(|e| ImportError::Ply(input.to_owned(), e.into()))?, progress: progress.clone() };
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
        let mut builder = octree::OutOfCore::new(cube, config, bucket_depth(size / 15), &buckets).map_err(io(&buckets))?;
        progress.begin("reading", size);
        let reader = Counting { inner: open().map_err(|e| ImportError::Ply(input.to_owned(), e.into()))?, progress: progress.clone() };
        ply::read_ply_each(reader, MAX_OUT_OF_CORE_POINTS, |p| {
            count += 1;
            builder.insert(p)
        })
        .map_err(|e| ImportError::Ply(input.to_owned(), e))?;
        let attributes = cache::Attributes { colour: cloud.has_colour, intensity: cloud.has_intensity, classification: cloud.has_classification };
        ([0.0; 3], attributes, builder)
    } else {
        progress.begin("reading", size);
        let file = std::fs::File::open(input).map_err(|e| ImportError::Las(input.to_owned(), las::LasError::Open(format!("cannot open it: {e}"))))?;
        let reader = Counting { inner: std::io::BufReader::new(file), progress: progress.clone() };
        let mut builder: Option<octree::OutOfCore> = None;
        let cloud = las::read_las_each(reader, MAX_OUT_OF_CORE_POINTS, |bounds, p| {
            let b = match builder.as_mut() {
                Some(b) => b,
                None => {
                    let size_of_cube = bounds.max.iter().fold(0.0f32, |m, v| m.max(*v)).max(1e-3) * 1.0001;
                    builder.insert(octree::OutOfCore::new(octree::Cube { min: [0.0; 3], size: size_of_cube }, config, bucket_depth(size / 8), &buckets)?)
                }
            };
            // The header's bounds place the octree: a point outside them is a lying header.
            let outside = (0..3).any(|a| p.position[a] < -1e-3 || p.position[a] > bounds.max[a] + 1e-3);
            if outside {
                return Err(std::io::Error::other(format!("point {count} at {:?} lies outside the header's bounds", p.position)));
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
    let index = cache::CloudIndex { version: cache::CACHE_VERSION, source, key: key.to_owned(), origin, points, dropped, attributes, nodes };
    let index_path = staging.join("cloud.json");
    std::fs::write(&index_path, serde_json::to_vec_pretty(&index).expect("plain data")).map_err(io(&index_path))?;
    let index = publish(&staging, &dir, || cache::read_index(&dir).ok())?.unwrap_or(index);
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

/// A private folder next to `dir` to write an import into: a viewer streaming from `dir`, or
/// another import of the same scan, never sees a half-written file.
pub(crate) fn staging_dir(dir: &Path) -> PathBuf {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let name = dir.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    dir.with_file_name(format!("{name}.partial-{}-{n}", std::process::id()))
}

/// Moves a finished import into place. If another import of the same scan got there first,
/// ours is thrown away and theirs (`existing`) is used.
pub(crate) fn publish<T>(staging: &Path, dir: &Path, existing: impl FnOnce() -> Option<T>) -> Result<Option<T>, cache::CacheError> {
    match std::fs::rename(staging, dir) {
        Ok(()) => Ok(None),
        Err(error) => {
            let _ = std::fs::remove_dir_all(staging);
            match existing() {
                Some(theirs) => Ok(Some(theirs)),
                None => Err(cache::CacheError::Io { path: dir.to_owned(), error }),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_import_of_the_same_scan_yields_to_the_first() {
        let root = std::env::temp_dir().join(format!("parvis-publish-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        let dir = root.join("abc-n20000-d16");
        let (ours, theirs) = (staging_dir(&dir), staging_dir(&dir));
        assert_ne!(ours, theirs, "each import writes a folder of its own");
        for (staging, who) in [(&ours, "first"), (&theirs, "second")] {
            std::fs::create_dir_all(staging).unwrap();
            std::fs::write(staging.join("cloud.json"), who).unwrap();
        }
        assert_eq!(publish(&ours, &dir, || Some("unused")).unwrap(), None, "the first moves into place");
        // The second finds the place taken: its folder goes, the first's import is used.
        let used = publish(&theirs, &dir, || std::fs::read_to_string(dir.join("cloud.json")).ok()).unwrap();
        assert_eq!(used.as_deref(), Some("first"));
        assert!(!theirs.exists());
        assert_eq!(std::fs::read_dir(&root).unwrap().count(), 1, "no partial folder left");
        std::fs::remove_dir_all(&root).unwrap();
    }

    #[test]
    fn progress_counts_the_bytes_read_through_both_read_paths() {
        let progress = Arc::new(Progress::default());
        progress.begin("reading", 1000);
        assert_eq!(progress.fraction(), Some(0.0));
        let data = vec![7u8; 1000];
        let mut counting = Counting { inner: std::io::BufReader::with_capacity(64, &data[..]), progress: progress.clone() };
        let mut first = [0u8; 100];
        counting.read_exact(&mut first).unwrap();
        assert_eq!(progress.fraction(), Some(0.1));
        // Line-oriented reading goes through fill_buf/consume: counted once, not twice.
        let mut rest = Vec::new();
        std::io::BufRead::read_until(&mut counting, b'\n', &mut rest).unwrap();
        assert_eq!(progress.fraction(), Some(1.0));
        progress.begin("building the octree", 0);
        assert_eq!(progress.fraction(), None, "a step that cannot tell");
        assert_eq!(progress.steps(), vec!["reading", "building the octree"]);
        assert_eq!(progress.step(), "building the octree");
    }
}
