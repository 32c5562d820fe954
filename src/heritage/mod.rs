//! Heritage twins from scans (issue #6, first part): point clouds read from PLY files and
//! organised in a level-of-detail octree. Import to a cache, LAS/LAZ, meshes with LOD,
//! streaming and rendering come next (docs/heritage.md).

pub mod las;
pub mod octree;
pub mod ply;

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
