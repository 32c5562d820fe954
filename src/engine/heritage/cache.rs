//! The imported form of a point cloud: its octree written to a folder named by the source's
//! content hash, so a scan is imported once whatever it is called, and nodes can be read one
//! at a time (the unit of streaming) without loading the rest.
//!
//! `cloud.json` holds the hierarchy (each node's cube, depth, children and place in the data);
//! `points.bin` holds the nodes' points one after the other, [`POINT_BYTES`] each.

use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use thiserror::Error;

use super::octree::{Cube, Octree};
use super::scan::{POINT_BYTES, Point, StoredNode, decode_points};

/// The cache layout's version; a different one is imported again.
pub const CACHE_VERSION: u32 = 1;

/// Why a cached cloud could not be written or read.
#[derive(Debug, Error)]
pub enum CacheError {
    /// File system error, with the file concerned.
    #[error("{path}: {error}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The error (not chained as a source: the message already says it).
        error: std::io::Error,
    },
    /// `cloud.json` is not what this version writes.
    #[error("{path}: not a Parvis point cloud index ({why})")]
    BadIndex {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        why: String,
    },
    /// A node's points are missing from `points.bin` (a truncated or replaced file).
    #[error("{path}: node {node} should hold {count} points at point {offset}, but the file ends before")]
    MissingPoints {
        /// The data file.
        path: PathBuf,
        /// Node index.
        node: usize,
        /// Its first point.
        offset: u64,
        /// Its point count.
        count: u32,
    },
}

/// `cloud.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CloudIndex {
    /// [`CACHE_VERSION`].
    pub version: u32,
    /// The source's file name, for people.
    pub source: String,
    /// Content hash of the source.
    pub key: String,
    /// The source's coordinates of the points' (0, 0, 0).
    pub origin: [f64; 3],
    /// Points stored.
    pub points: u64,
    /// Points left out as duplicates.
    pub dropped: u64,
    /// Whether the source had colours, intensities, classes.
    pub attributes: Attributes,
    /// The hierarchy, root first.
    pub nodes: Vec<StoredNode>,
}

/// Which attributes a source had (the others are defaults).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Attributes {
    /// Colours.
    pub colour: bool,
    /// Intensities.
    pub intensity: bool,
    /// Classifications.
    pub classification: bool,
}

/// Mixes `bytes` into an FNV-1a hash.
pub(crate) fn fnv1a(hash: &mut u64, bytes: &[u8]) {
    for &b in bytes {
        *hash = (*hash ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3);
    }
}

/// A stable content hash of a file (FNV-1a, 64 bits, with the cache version mixed in): the
/// same bytes give the same key on every machine and Rust version.
pub fn content_key(path: &Path) -> Result<String, CacheError> {
    let io = |source| CacheError::Io { path: path.to_owned(), error: source };
    let mut file = std::fs::File::open(path).map_err(io)?;
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325 ^ u64::from(CACHE_VERSION);
    let mut buf = vec![0u8; 1 << 16];
    loop {
        let n = file.read(&mut buf).map_err(io)?;
        if n == 0 {
            break;
        }
        fnv1a(&mut hash, &buf[..n]);
    }
    Ok(format!("{hash:016x}"))
}

/// Writes `tree` into `dir` (created if needed).
pub fn write_cloud(
    dir: &Path,
    tree: &Octree,
    source: &str,
    key: &str,
    origin: [f64; 3],
    attributes: Attributes,
) -> Result<CloudIndex, CacheError> {
    let io = |path: &Path| {
        let path = path.to_owned();
        move |error| CacheError::Io { path, error }
    };
    std::fs::create_dir_all(dir).map_err(io(dir))?;
    let data_path = dir.join("points.bin");
    let mut data = std::io::BufWriter::new(std::fs::File::create(&data_path).map_err(io(&data_path))?);
    let mut nodes = Vec::with_capacity(tree.nodes.len());
    let mut offset = 0u64;
    let mut record = [0u8; POINT_BYTES];
    for node in &tree.nodes {
        for p in &node.points {
            for (k, v) in p.position.iter().enumerate() {
                record[k * 4..k * 4 + 4].copy_from_slice(&v.to_le_bytes());
            }
            record[12..15].copy_from_slice(&p.colour);
            record[15] = p.class;
            record[16..18].copy_from_slice(&p.intensity.to_le_bytes());
            data.write_all(&record).map_err(io(&data_path))?;
        }
        nodes.push(StoredNode {
            min: node.cube.min,
            size: node.cube.size,
            depth: node.depth,
            children: node.children,
            offset,
            count: node.points.len() as u32,
        });
        offset += node.points.len() as u64;
    }
    data.flush().map_err(io(&data_path))?;
    let index = CloudIndex {
        version: CACHE_VERSION,
        source: source.to_owned(),
        key: key.to_owned(),
        origin,
        points: offset,
        dropped: tree.dropped,
        attributes,
        nodes,
    };
    let index_path = dir.join("cloud.json");
    // Written last: a folder with an index is a complete import.
    std::fs::write(&index_path, serde_json::to_vec_pretty(&index).expect("plain data")).map_err(io(&index_path))?;
    Ok(index)
}

/// Reads `cloud.json` from an imported cloud's folder.
pub fn read_index(dir: &Path) -> Result<CloudIndex, CacheError> {
    let path = dir.join("cloud.json");
    let bytes = std::fs::read(&path).map_err(|source| CacheError::Io { path: path.clone(), error: source })?;
    let index: CloudIndex =
        serde_json::from_slice(&bytes).map_err(|e| CacheError::BadIndex { path: path.clone(), why: e.to_string() })?;
    if index.version != CACHE_VERSION {
        return Err(CacheError::BadIndex {
            path,
            why: format!("layout version {} instead of {CACHE_VERSION}; import the scan again", index.version),
        });
    }
    let children_ok = index
        .nodes
        .iter()
        .enumerate()
        .all(|(i, n)| n.children.iter().flatten().all(|c| (*c as usize) > i && (*c as usize) < index.nodes.len()));
    // A tree: every node but the root has exactly one parent (a node reachable twice would
    // make selection walk it twice, or explode on a crafted index).
    let mut parents = vec![0u32; index.nodes.len()];
    for child in index.nodes.iter().flat_map(|n| n.children.iter().flatten()) {
        if let Some(p) = parents.get_mut(*child as usize) {
            *p += 1;
        }
    }
    let tree = parents.first().is_none_or(|root| *root == 0) && parents.iter().skip(1).all(|p| *p == 1);
    if !children_ok || !tree || index.nodes.iter().any(|n| !(n.size.is_finite() && n.size > 0.0) || n.count == 0) {
        return Err(CacheError::BadIndex { path, why: "inconsistent hierarchy".into() });
    }
    // Every node's points must lie within the data file: `read_node` can then trust them.
    let data = dir.join("points.bin");
    let stored = std::fs::metadata(&data).map_err(|error| CacheError::Io { path: data.clone(), error })?.len()
        / POINT_BYTES as u64;
    if let Some((node, n)) = index
        .nodes
        .iter()
        .enumerate()
        .find(|(_, n)| n.offset.checked_add(u64::from(n.count)).is_none_or(|end| end > stored))
    {
        return Err(CacheError::MissingPoints { path: data, node, offset: n.offset, count: n.count });
    }
    Ok(index)
}

/// Reads one node's points: the unit a viewer streams in and out.
pub fn read_node(dir: &Path, index: &CloudIndex, node: usize) -> Result<Vec<Point>, CacheError> {
    let path = dir.join("points.bin");
    let io = |error| CacheError::Io { path: path.clone(), error };
    let Some(stored) = index.nodes.get(node) else {
        return Err(CacheError::BadIndex { path, why: format!("no node {node}; the cloud has {}", index.nodes.len()) });
    };
    let mut file = std::fs::File::open(&path).map_err(io)?;
    file.seek(SeekFrom::Start(stored.offset * POINT_BYTES as u64)).map_err(io)?;
    let mut bytes = vec![0u8; stored.count as usize * POINT_BYTES];
    file.read_exact(&mut bytes).map_err(|e| {
        if e.kind() == std::io::ErrorKind::UnexpectedEof {
            CacheError::MissingPoints { path: path.clone(), node, offset: stored.offset, count: stored.count }
        } else {
            CacheError::Io { path: path.clone(), error: e }
        }
    })?;
    Ok(decode_points(&bytes))
}

impl super::octree::LodNode for StoredNode {
    fn cube(&self) -> Cube {
        Cube { min: self.min, size: self.size }
    }
    fn point_count(&self) -> u64 {
        u64::from(self.count)
    }
    fn children(&self) -> &[Option<u32>; 8] {
        &self.children
    }
}

/// Moves a finished import into place. If another import of the same scan got there first,
/// ours is thrown away and theirs (`existing`) is used.
pub fn publish<T>(staging: &Path, dir: &Path, existing: impl FnOnce() -> Option<T>) -> Result<Option<T>, CacheError> {
    match std::fs::rename(staging, dir) {
        Ok(()) => Ok(None),
        Err(error) => {
            let _ = std::fs::remove_dir_all(staging);
            match existing() {
                Some(theirs) => Ok(Some(theirs)),
                None => Err(CacheError::Io { path: dir.to_owned(), error }),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::heritage::octree::{LodNode, OctreeConfig};
    use crate::engine::heritage::scan::staging_dir;

    fn points(n: u32) -> Vec<Point> {
        (0..n)
            .map(|i| Point {
                position: [(i % 97) as f32 * 0.1, (i % 89) as f32 * 0.1, (i % 83) as f32 * 0.1],
                colour: [i as u8, 2, 3],
                intensity: i as u16,
                class: (i % 5) as u8,
            })
            .collect()
    }

    #[test]
    fn a_cloud_written_reads_back_node_by_node() {
        let dir = std::env::temp_dir().join(format!("parvis-cache-{}", std::process::id()));
        let tree = Octree::build(points(30_000), OctreeConfig { max_points_per_node: 2_000, max_depth: 10 });
        let attributes = Attributes { colour: true, intensity: true, classification: true };
        let written = write_cloud(&dir, &tree, "scan.ply", "00ff", [1.0, 2.0, 3.0], attributes).unwrap();
        let index = read_index(&dir).unwrap();
        assert_eq!(index, written);
        assert_eq!(index.points, 30_000);
        for (i, node) in tree.nodes.iter().enumerate() {
            assert_eq!(read_node(&dir, &index, i).unwrap(), node.points, "node {i}");
            assert_eq!(index.nodes[i].cube(), node.cube);
        }
        // A cut data file names the node that lost its points.
        let data = dir.join("points.bin");
        let len = std::fs::metadata(&data).unwrap().len();
        std::fs::OpenOptions::new().write(true).open(&data).unwrap().set_len(len - 100).unwrap();
        let last = index.nodes.len() - 1;
        let e = read_node(&dir, &index, last).unwrap_err();
        assert!(matches!(e, CacheError::MissingPoints { node, .. } if node == last), "{e}");
        // Reading the index again finds it too, before any node is read.
        let e = read_index(&dir).unwrap_err();
        assert!(matches!(e, CacheError::MissingPoints { .. }), "{e}");
        assert!(matches!(read_node(&dir, &index, 1_000_000), Err(CacheError::BadIndex { .. })));
        // Another layout version, or a broken index, is refused with the reason.
        let json =
            std::fs::read_to_string(dir.join("cloud.json")).unwrap().replacen("\"version\": 1", "\"version\": 99", 1);
        std::fs::write(dir.join("cloud.json"), json).unwrap();
        assert!(read_index(&dir).unwrap_err().to_string().contains("layout version 99"));
        std::fs::write(dir.join("cloud.json"), "{").unwrap();
        assert!(matches!(read_index(&dir), Err(CacheError::BadIndex { .. })));
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn content_keys_follow_the_bytes_not_the_name() {
        let dir = std::env::temp_dir().join(format!("parvis-key-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("a.ply"), b"same bytes").unwrap();
        std::fs::write(dir.join("b.ply"), b"same bytes").unwrap();
        std::fs::write(dir.join("c.ply"), b"other bytes").unwrap();
        let key = |n: &str| content_key(&dir.join(n)).unwrap();
        assert_eq!(key("a.ply"), key("b.ply"));
        assert_ne!(key("a.ply"), key("c.ply"));
        assert_eq!(key("a.ply").len(), 16);
        assert!(matches!(content_key(&dir.join("none.ply")), Err(CacheError::Io { .. })));
        std::fs::remove_dir_all(&dir).unwrap();
    }

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
}
