//! LAS and LAZ point clouds through the `las` crate, read in chunks. Coordinates of real scans
//! are georeferenced (hundreds of kilometres in UTM), far beyond what `f32` holds to the
//! millimetre, so points are kept relative to an origin: the file's lowest corner.

use std::path::Path;

use thiserror::Error;

use super::ply::MAX_COORDINATE;
use super::scan::Point;

/// Points read per chunk.
const CHUNK: u64 = 1 << 20;

/// Why a LAS/LAZ file could not be read.
#[derive(Debug, Error)]
pub enum LasError {
    /// The file could not be opened or its header is broken.
    #[error("not a readable LAS/LAZ file: {0}")]
    Open(String),
    /// The header announces more points than allowed.
    #[error("{announced} points is over the limit of {max}")]
    TooMany {
        /// Points announced.
        announced: u64,
        /// The limit.
        max: u64,
    },
    /// A point record could not be decoded.
    #[error("point {index}: {why}")]
    Point {
        /// 0-based index.
        index: u64,
        /// What went wrong.
        why: String,
    },
    /// The data ends before the points announced.
    #[error("truncated: the header announces {announced} points but the data ends after {read}")]
    Truncated {
        /// Points announced.
        announced: u64,
        /// Points read.
        read: u64,
    },
    /// A position that is not finite or absurdly far from the others.
    #[error(
        "point {index}: position {position:?} is not finite or more than {MAX_COORDINATE} m from the scan's corner"
    )]
    BadCoordinate {
        /// 0-based index.
        index: u64,
        /// The position.
        position: [f64; 3],
    },
}

/// A point cloud read from a LAS/LAZ file.
#[derive(Debug, Clone, PartialEq)]
pub struct LasCloud {
    /// Where the points' (0, 0, 0) is in the file's coordinates.
    pub origin: [f64; 3],
    /// The points, relative to `origin`.
    pub points: Vec<Point>,
    /// Whether the point format has colours.
    pub has_colour: bool,
}

/// Reads a LAS or LAZ file (the `laz` compression is detected from the header).
pub fn read_las(path: &Path, max_points: u64) -> Result<LasCloud, LasError> {
    let file = std::fs::File::open(path).map_err(|e| LasError::Open(format!("cannot open it: {e}")))?;
    read_las_from(std::io::BufReader::new(file), max_points)
}

/// Reads a LAS or LAZ cloud from any seekable reader (a file, a counting wrapper).
pub fn read_las_from(
    input: impl std::io::Read + std::io::Seek + Send + Sync + std::fmt::Debug + 'static,
    max_points: u64,
) -> Result<LasCloud, LasError> {
    let mut points = Vec::new();
    let mut cloud = read_las_each(input, max_points, |_, p| {
        points.push(p);
        Ok(())
    })?;
    cloud.points = points;
    Ok(cloud)
}

/// Reads a LAS or LAZ cloud point by point into `sink`, holding none of them; the sink also
/// gets the cloud's origin and bounds (relative to it) first thing, from the header.
pub fn read_las_each(
    input: impl std::io::Read + std::io::Seek + Send + Sync + std::fmt::Debug + 'static,
    max_points: u64,
    mut sink: impl FnMut(&LasBounds, Point) -> std::io::Result<()>,
) -> Result<LasCloud, LasError> {
    let mut reader = las::Reader::new(input).map_err(|e| {
        let why = e.to_string();
        // LAZ keeps its chunk table at the end: a cut file fails here already.
        if why.contains("failed to fill whole buffer") {
            LasError::Open("truncated: the file ends before its header, point tables or compressed chunks do".into())
        } else {
            LasError::Open(why)
        }
    })?;
    let header = reader.header().clone();
    let announced = header.number_of_points();
    if announced > max_points {
        return Err(LasError::TooMany { announced, max: max_points });
    }
    let bounds = header.bounds();
    let origin = [bounds.min.x, bounds.min.y, bounds.min.z];
    if !origin.iter().all(|v| v.is_finite()) {
        return Err(LasError::Open(format!("the header's bounds are not finite: {origin:?}")));
    }
    let has_colour = header.point_format().has_color;
    let cloud = LasCloud { origin, points: Vec::new(), has_colour };
    let extent = [bounds.max.x - origin[0], bounds.max.y - origin[1], bounds.max.z - origin[2]];
    let las_bounds = LasBounds { origin, max: extent.map(|v| v as f32) };
    let mut index = 0u64;
    loop {
        let data = reader.read_points(CHUNK).map_err(|e| {
            let why = e.to_string();
            if why.contains("failed to fill whole buffer")
                || why.contains("UnexpectedEof")
                || why.contains("end of file")
            {
                LasError::Truncated { announced, read: index }
            } else {
                LasError::Point { index, why }
            }
        })?;
        if data.is_empty() {
            break;
        }
        for point in data.points() {
            let point = point.map_err(|e| LasError::Point { index, why: e.to_string() })?;
            let relative = [point.x - origin[0], point.y - origin[1], point.z - origin[2]];
            if !relative.iter().all(|v| v.is_finite() && v.abs() <= MAX_COORDINATE) {
                return Err(LasError::BadCoordinate { index, position: [point.x, point.y, point.z] });
            }
            let colour = point
                .color
                .map_or([160, 160, 160], |c| [(c.red >> 8) as u8, (c.green >> 8) as u8, (c.blue >> 8) as u8]);
            let point = Point {
                position: relative.map(|v| v as f32),
                colour,
                intensity: point.intensity,
                class: u8::from(point.classification),
            };
            sink(&las_bounds, point).map_err(|e| LasError::Open(format!("cannot keep point {index}: {e}")))?;
            index += 1;
        }
    }
    if index < announced {
        return Err(LasError::Truncated { announced, read: index });
    }
    Ok(cloud)
}

/// What a LAS header says of where its points are.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LasBounds {
    /// The lowest corner, georeferenced.
    pub origin: [f64; 3],
    /// The highest corner, relative to `origin`.
    pub max: [f32; 3],
}

/// Writes points (placed at `origin`) as LAS 1.4 with colours, compressed when `path` ends in
/// `.laz`; millimetre precision. For tests that generate scans, and exports.
pub fn write_las(points: &[Point], origin: [f64; 3], path: &Path) -> Result<(), las::Error> {
    let mut builder = las::Builder::from((1, 4));
    builder.point_format = las::point::Format::new(2)?;
    builder.point_format.is_compressed = path.extension().is_some_and(|e| e.eq_ignore_ascii_case("laz"));
    builder.transforms = las::Vector {
        x: las::Transform { scale: 0.001, offset: origin[0] },
        y: las::Transform { scale: 0.001, offset: origin[1] },
        z: las::Transform { scale: 0.001, offset: origin[2] },
    };
    let mut writer = las::Writer::from_path(path, builder.into_header()?)?;
    for p in points {
        let widen = |c: u8| u16::from(c) << 8 | u16::from(c);
        writer.write_point(las::Point {
            x: origin[0] + f64::from(p.position[0]),
            y: origin[1] + f64::from(p.position[1]),
            z: origin[2] + f64::from(p.position[2]),
            intensity: p.intensity,
            classification: las::point::Classification::new(p.class.min(31))?,
            color: Some(las::Color::new(widen(p.colour[0]), widen(p.colour[1]), widen(p.colour[2]))),
            ..Default::default()
        })?;
    }
    writer.close()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scan() -> Vec<Point> {
        (0..5000u32)
            .map(|i| Point {
                position: [(i % 100) as f32 * 0.05, (i / 100) as f32 * 0.05, (i % 7) as f32 * 0.1],
                colour: [(i % 256) as u8, 128, 7],
                intensity: (i * 13 % 65_535) as u16,
                class: (i % 10) as u8,
            })
            .collect()
    }

    fn temp(name: &str) -> std::path::PathBuf {
        std::env::temp_dir().join(format!("parvis-las-{}-{name}", std::process::id()))
    }

    #[test]
    fn las_and_laz_round_trip_georeferenced_scans_to_the_millimetre() {
        let points = scan();
        // A UTM position: far beyond f32's millimetres, kept by the origin.
        let origin = [652_000.125, 6_862_000.5, 35.25];
        for name in ["scan.las", "scan.laz"] {
            let path = temp(name);
            write_las(&points, origin, &path).unwrap();
            let cloud = read_las(&path, 1 << 30).unwrap();
            assert_eq!(cloud.points.len(), points.len(), "{name}");
            assert!(cloud.has_colour);
            for (a, b) in cloud.points.iter().zip(&points) {
                let moved: [f64; 3] = std::array::from_fn(|k| {
                    cloud.origin[k] + f64::from(a.position[k]) - origin[k] - f64::from(b.position[k])
                });
                assert!(moved.iter().all(|d| d.abs() <= 0.0011), "{name}: {moved:?}");
                assert_eq!((a.colour, a.intensity, a.class), (b.colour, b.intensity, b.class), "{name}");
            }
            std::fs::remove_file(&path).unwrap();
        }
    }

    #[test]
    fn broken_las_files_get_clear_errors() {
        let path = temp("cut.las");
        write_las(&scan(), [0.0; 3], &path).unwrap();
        let bytes = std::fs::read(&path).unwrap();
        std::fs::write(&path, &bytes[..bytes.len() - 1000]).unwrap();
        let e = read_las(&path, 1 << 30).unwrap_err();
        assert!(matches!(e, LasError::Truncated { announced: 5000, .. }), "{e}");
        std::fs::write(&path, b"LASF but nothing else").unwrap();
        assert!(matches!(read_las(&path, 1 << 30), Err(LasError::Open(_))));
        std::fs::write(&path, b"PK\x03\x04").unwrap();
        assert!(matches!(read_las(&path, 1 << 30), Err(LasError::Open(_))));
        write_las(&scan(), [0.0; 3], &path).unwrap();
        assert!(matches!(read_las(&path, 100), Err(LasError::TooMany { announced: 5000, max: 100 })));
        std::fs::remove_file(&path).unwrap();
        assert!(matches!(read_las(&temp("missing.las"), 100), Err(LasError::Open(_))));
    }
}
