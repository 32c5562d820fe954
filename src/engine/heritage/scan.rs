//! What every scan import shares: the point record (in memory and on disk), how an import
//! reports its progress, the stored form of an octree node, and the private folder an import
//! is written into before it is published.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use serde::{Deserialize, Serialize};

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

/// Bytes per stored point: position (3 × f32), colour (3 × u8), class (u8), intensity (u16),
/// little-endian.
pub const POINT_BYTES: usize = 18;

/// Appends one node's points to `points.bin`; returns its first point's number.
pub(crate) fn write_points(data: &mut impl Write, points: &[Point], offset: &mut u64) -> std::io::Result<u64> {
    let first = *offset;
    let mut record = [0u8; POINT_BYTES];
    for p in points {
        for (k, v) in p.position.iter().enumerate() {
            record[k * 4..k * 4 + 4].copy_from_slice(&v.to_le_bytes());
        }
        record[12..15].copy_from_slice(&p.colour);
        record[15] = p.class;
        record[16..18].copy_from_slice(&p.intensity.to_le_bytes());
        data.write_all(&record)?;
    }
    *offset += points.len() as u64;
    Ok(first)
}

/// Points from their stored records ([`POINT_BYTES`] each; a partial record is ignored).
pub(crate) fn decode_points(bytes: &[u8]) -> Vec<Point> {
    bytes
        .chunks_exact(POINT_BYTES)
        .map(|r| {
            let f = |k: usize| f32::from_le_bytes([r[k], r[k + 1], r[k + 2], r[k + 3]]);
            Point {
                position: [f(0), f(4), f(8)],
                colour: [r[12], r[13], r[14]],
                class: r[15],
                intensity: u16::from_le_bytes([r[16], r[17]]),
            }
        })
        .collect()
}

/// One node as stored.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StoredNode {
    /// Lowest corner of the node's cube, relative to the cloud's origin.
    pub min: [f32; 3],
    /// Edge of the cube.
    pub size: f32,
    /// Depth (0: root).
    pub depth: u8,
    /// Children by octant (indices into `nodes`).
    pub children: [Option<u32>; 8],
    /// First point in `points.bin`.
    pub offset: u64,
    /// Points.
    pub count: u32,
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
    pub(crate) fn begin(&self, step: &'static str, total: u64) {
        self.steps.lock().expect("progress steps").push(step);
        self.done.store(0, Ordering::Relaxed);
        self.total.store(total, Ordering::Relaxed);
    }

    pub(crate) fn add(&self, n: u64) {
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
pub(crate) struct Counting<R> {
    pub(crate) inner: R,
    pub(crate) progress: Arc<Progress>,
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

/// A private folder next to `dir` to write an import into: a viewer streaming from `dir`, or
/// another import of the same scan, never sees a half-written file.
pub(crate) fn staging_dir(dir: &Path) -> PathBuf {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let name = dir.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    dir.with_file_name(format!("{name}.partial-{}-{n}", std::process::id()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn progress_counts_the_bytes_read_through_both_read_paths() {
        let progress = Arc::new(Progress::default());
        progress.begin("reading", 1000);
        assert_eq!(progress.fraction(), Some(0.0));
        let data = vec![7u8; 1000];
        let mut counting =
            Counting { inner: std::io::BufReader::with_capacity(64, &data[..]), progress: progress.clone() };
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
