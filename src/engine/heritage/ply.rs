//! PLY point clouds (ASCII and binary, either byte order): positions, and colour, intensity
//! and classification when the file has them. Every problem is an error naming where it is;
//! nothing here panics or allocates more than the file can justify.

use std::io::{BufRead, Read};

use thiserror::Error;

use super::scan::Point;

/// Largest header accepted, in bytes: real headers are a few hundred.
const MAX_HEADER: usize = 64 * 1024;

/// Why a PLY file could not be read.
#[derive(Debug, Error)]
pub enum PlyError {
    /// Reading failed.
    #[error("cannot read: {0}")]
    Io(#[from] std::io::Error),
    /// Not a PLY file at all.
    #[error("not a PLY file: it must start with the line `ply`")]
    NotPly,
    /// A header line this reader does not understand.
    #[error("header line {line}: {why}")]
    Header {
        /// 1-based line number.
        line: usize,
        /// What is wrong.
        why: String,
    },
    /// The header never ends.
    #[error("the header has no `end_header` line within {MAX_HEADER} bytes")]
    NoEndHeader,
    /// No `vertex` element, or one without x, y and z.
    #[error("the file has no vertex element with x, y and z properties")]
    NoPositions,
    /// The file ends before all vertices announced were read.
    #[error("truncated: the header announces {announced} vertices but the data ends after {read}")]
    Truncated {
        /// Vertices the header announced.
        announced: u64,
        /// Vertices read.
        read: u64,
    },
    /// An ASCII value that is not a number.
    #[error("vertex {vertex}: {value:?} is not a number")]
    BadNumber {
        /// 0-based vertex index.
        vertex: u64,
        /// The text.
        value: String,
    },
    /// A position that is not a finite number within a sane range.
    #[error("vertex {vertex}: position {position:?} is not finite or beyond {MAX_COORDINATE} m")]
    BadCoordinate {
        /// 0-based vertex index.
        vertex: u64,
        /// The position read.
        position: [f64; 3],
    },
}

/// Coordinates beyond this (in the file's units, taken as metres) are refused: a heritage
/// scan spans metres to kilometres, and 1e30 means a broken file.
pub const MAX_COORDINATE: f64 = 1.0e7;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Format {
    Ascii,
    BinaryLittle,
    BinaryBig,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Scalar {
    I8,
    U8,
    I16,
    U16,
    I32,
    U32,
    F32,
    F64,
}

impl Scalar {
    fn parse(name: &str) -> Option<Self> {
        Some(match name {
            "char" | "int8" => Scalar::I8,
            "uchar" | "uint8" => Scalar::U8,
            "short" | "int16" => Scalar::I16,
            "ushort" | "uint16" => Scalar::U16,
            "int" | "int32" => Scalar::I32,
            "uint" | "uint32" => Scalar::U32,
            "float" | "float32" => Scalar::F32,
            "double" | "float64" => Scalar::F64,
            _ => return None,
        })
    }

    fn size(self) -> usize {
        match self {
            Scalar::I8 | Scalar::U8 => 1,
            Scalar::I16 | Scalar::U16 => 2,
            Scalar::I32 | Scalar::U32 | Scalar::F32 => 4,
            Scalar::F64 => 8,
        }
    }

    fn read(self, bytes: &[u8], big: bool) -> f64 {
        macro_rules! num {
            ($t:ty, $n:expr) => {{
                let mut b = [0u8; $n];
                b.copy_from_slice(&bytes[..$n]);
                f64::from(if big { <$t>::from_be_bytes(b) } else { <$t>::from_le_bytes(b) })
            }};
        }
        match self {
            Scalar::I8 => f64::from(bytes[0] as i8),
            Scalar::U8 => f64::from(bytes[0]),
            Scalar::I16 => num!(i16, 2),
            Scalar::U16 => num!(u16, 2),
            Scalar::I32 => num!(i32, 4),
            Scalar::U32 => num!(u32, 4),
            Scalar::F32 => num!(f32, 4),
            Scalar::F64 => num!(f64, 8),
        }
    }
}

/// What each vertex property means to us.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Role {
    X,
    Y,
    Z,
    Red,
    Green,
    Blue,
    Intensity,
    Classification,
    Ignored,
}

#[derive(Debug)]
struct Header {
    format: Format,
    vertices: u64,
    /// Bytes of elements before the vertices (binary only; ASCII skips lines).
    properties: Vec<(Scalar, Role)>,
    /// Lines (ASCII) or bytes (binary) of elements that come before `vertex`.
    before: Vec<(u64, Vec<Scalar>)>,
}

/// A point cloud read from a PLY file, with what it had besides positions.
#[derive(Debug, Clone, PartialEq)]
pub struct PlyCloud {
    /// The points.
    pub points: Vec<Point>,
    /// Whether the file had colours (otherwise points are grey).
    pub has_colour: bool,
    /// Whether the file had intensities.
    pub has_intensity: bool,
    /// Whether the file had classifications.
    pub has_classification: bool,
}

/// Reads a whole PLY point cloud. `max_points` bounds what a header may make us allocate.
pub fn read_ply(input: impl BufRead, max_points: u64) -> Result<PlyCloud, PlyError> {
    let mut points = Vec::new();
    let mut cloud = read_ply_each(input, max_points, |p| {
        points.push(p);
        Ok(())
    })?;
    cloud.points = points;
    Ok(cloud)
}

/// Reads a PLY point cloud point by point into `sink`, holding none of them: for scans larger
/// than memory. The returned cloud has no points, only what the file has.
pub fn read_ply_each(
    mut input: impl BufRead,
    max_points: u64,
    mut sink: impl FnMut(Point) -> std::io::Result<()>,
) -> Result<PlyCloud, PlyError> {
    let header = read_header(&mut input)?;
    if header.vertices > max_points {
        return Err(PlyError::Header {
            line: 0,
            why: format!("{} vertices is over the limit of {max_points}", header.vertices),
        });
    }
    let cloud = PlyCloud {
        points: Vec::new(),
        has_colour: header.properties.iter().any(|(_, r)| *r == Role::Red),
        has_intensity: header.properties.iter().any(|(_, r)| *r == Role::Intensity),
        has_classification: header.properties.iter().any(|(_, r)| *r == Role::Classification),
    };
    let mut values = vec![0.0f64; header.properties.len()];
    match header.format {
        Format::Ascii => {
            let mut lines = input.lines();
            for (count, _) in &header.before {
                for _ in 0..*count {
                    if lines.next().transpose()?.is_none() {
                        return Err(PlyError::Truncated { announced: header.vertices, read: 0 });
                    }
                }
            }
            for vertex in 0..header.vertices {
                let Some(line) = lines.next().transpose()? else {
                    return Err(PlyError::Truncated { announced: header.vertices, read: vertex });
                };
                let mut words = line.split_ascii_whitespace();
                for value in values.iter_mut() {
                    let Some(word) = words.next() else {
                        return Err(PlyError::Truncated { announced: header.vertices, read: vertex });
                    };
                    *value = word
                        .parse()
                        .map_err(|_| PlyError::BadNumber { vertex, value: word.chars().take(32).collect() })?;
                }
                sink(to_point(&header, &values, vertex)?)?;
            }
        }
        Format::BinaryLittle | Format::BinaryBig => {
            let big = header.format == Format::BinaryBig;
            for (count, scalars) in &header.before {
                let size: u64 = scalars.iter().map(|s| s.size() as u64).sum();
                let skip =
                    count.checked_mul(size).ok_or(PlyError::Truncated { announced: header.vertices, read: 0 })?;
                if std::io::copy(&mut (&mut input).take(skip), &mut std::io::sink())? < skip {
                    return Err(PlyError::Truncated { announced: header.vertices, read: 0 });
                }
            }
            let stride: usize = header.properties.iter().map(|(s, _)| s.size()).sum();
            let mut record = vec![0u8; stride];
            for vertex in 0..header.vertices {
                if let Err(e) = input.read_exact(&mut record) {
                    return Err(if e.kind() == std::io::ErrorKind::UnexpectedEof {
                        PlyError::Truncated { announced: header.vertices, read: vertex }
                    } else {
                        e.into()
                    });
                }
                let mut at = 0;
                for ((scalar, _), value) in header.properties.iter().zip(values.iter_mut()) {
                    *value = scalar.read(&record[at..], big);
                    at += scalar.size();
                }
                sink(to_point(&header, &values, vertex)?)?;
            }
        }
    }
    Ok(cloud)
}

fn to_point(header: &Header, values: &[f64], vertex: u64) -> Result<Point, PlyError> {
    let mut position = [0.0f64; 3];
    let mut colour = [160u8, 160, 160];
    let mut intensity = 0u16;
    let mut class = 0u8;
    for ((scalar, role), value) in header.properties.iter().zip(values) {
        // Colours come as 8-bit, 16-bit or 0–1 floats.
        let channel = || match scalar {
            Scalar::F32 | Scalar::F64 => (value.clamp(0.0, 1.0) * 255.0).round() as u8,
            Scalar::U16 | Scalar::I16 => (value.clamp(0.0, 65535.0) / 257.0).round() as u8,
            _ => value.clamp(0.0, 255.0) as u8,
        };
        match role {
            Role::X => position[0] = *value,
            Role::Y => position[1] = *value,
            Role::Z => position[2] = *value,
            Role::Red => colour[0] = channel(),
            Role::Green => colour[1] = channel(),
            Role::Blue => colour[2] = channel(),
            Role::Intensity => intensity = value.clamp(0.0, 65535.0) as u16,
            Role::Classification => class = value.clamp(0.0, 255.0) as u8,
            Role::Ignored => {}
        }
    }
    if !position.iter().all(|v| v.is_finite() && v.abs() <= MAX_COORDINATE) {
        return Err(PlyError::BadCoordinate { vertex, position });
    }
    Ok(Point { position: position.map(|v| v as f32), colour, intensity, class })
}

fn read_header(input: &mut impl BufRead) -> Result<Header, PlyError> {
    let mut read = 0usize;
    let mut next_line = |input: &mut dyn BufRead| -> Result<Option<String>, PlyError> {
        let mut line = Vec::new();
        let n = input.take((MAX_HEADER - read.min(MAX_HEADER)) as u64 + 1).read_until(b'\n', &mut line)?;
        read += n;
        if n == 0 {
            return Ok(None);
        }
        if read > MAX_HEADER {
            return Err(PlyError::NoEndHeader);
        }
        Ok(Some(String::from_utf8_lossy(&line).trim_end_matches(['\r', '\n']).to_owned()))
    };
    if next_line(input)?.as_deref() != Some("ply") {
        return Err(PlyError::NotPly);
    }
    let mut format = None;
    let mut elements: Vec<(String, u64, Vec<(Scalar, String)>)> = Vec::new();
    let mut number = 1;
    loop {
        number += 1;
        let Some(line) = next_line(input)? else { return Err(PlyError::NoEndHeader) };
        let bad = |why: String| PlyError::Header { line: number, why };
        let words: Vec<&str> = line.split_ascii_whitespace().collect();
        match words.as_slice() {
            ["end_header"] => break,
            [] | ["comment", ..] | ["obj_info", ..] => {}
            ["format", kind, version] => {
                if *version != "1.0" {
                    return Err(bad(format!("format version {version} is not 1.0")));
                }
                format = Some(match *kind {
                    "ascii" => Format::Ascii,
                    "binary_little_endian" => Format::BinaryLittle,
                    "binary_big_endian" => Format::BinaryBig,
                    other => return Err(bad(format!("unknown format {other:?}"))),
                });
            }
            ["element", name, count] => {
                let count =
                    count.parse::<u64>().map_err(|_| bad(format!("element count {count:?} is not a number")))?;
                elements.push(((*name).to_owned(), count, Vec::new()));
            }
            ["property", "list", ..] => {
                let Some((name, _, _)) = elements.last() else {
                    return Err(bad("a property before any element".into()));
                };
                if name == "vertex" {
                    return Err(bad("list properties on vertices are not supported".into()));
                }
                // Lists (faces) after the vertices are never read: points only.
                elements.last_mut().expect("checked").2.push((Scalar::U8, "list".into()));
            }
            ["property", kind, name] => {
                let scalar = Scalar::parse(kind).ok_or_else(|| bad(format!("unknown property type {kind:?}")))?;
                let Some(element) = elements.last_mut() else {
                    return Err(bad("a property before any element".into()));
                };
                element.2.push((scalar, (*name).to_owned()));
            }
            _ => return Err(bad(format!("cannot read {:?}", line.chars().take(60).collect::<String>()))),
        }
    }
    let format = format.ok_or(PlyError::Header { line: number, why: "no `format` line".into() })?;
    let at = elements.iter().position(|(name, _, _)| name == "vertex").ok_or(PlyError::NoPositions)?;
    let before: Vec<(u64, Vec<Scalar>)> =
        elements[..at].iter().map(|(_, count, props)| (*count, props.iter().map(|(s, _)| *s).collect())).collect();
    if elements[..at].iter().any(|(_, _, props)| props.iter().any(|(_, name)| name == "list")) {
        return Err(PlyError::Header {
            line: number,
            why: "list elements before the vertices are not supported".into(),
        });
    }
    let (_, vertices, props) = &elements[at];
    let properties: Vec<(Scalar, Role)> = props
        .iter()
        .map(|(scalar, name)| {
            let role = match name.as_str() {
                "x" => Role::X,
                "y" => Role::Y,
                "z" => Role::Z,
                "red" | "r" | "diffuse_red" => Role::Red,
                "green" | "g" | "diffuse_green" => Role::Green,
                "blue" | "b" | "diffuse_blue" => Role::Blue,
                "intensity" | "scalar_intensity" => Role::Intensity,
                "classification" | "scalar_classification" | "label" => Role::Classification,
                _ => Role::Ignored,
            };
            (*scalar, role)
        })
        .collect();
    for axis in [Role::X, Role::Y, Role::Z] {
        if !properties.iter().any(|(_, r)| *r == axis) {
            return Err(PlyError::NoPositions);
        }
    }
    Ok(Header { format, vertices: *vertices, properties, before })
}

/// Writes points as a binary little-endian PLY with colour, intensity and classification:
/// what the tests generate scans with, and a portable export.
pub fn write_ply(points: &[Point], mut out: impl std::io::Write) -> std::io::Result<()> {
    write!(
        out,
        "ply\nformat binary_little_endian 1.0\ncomment written by Parvis\nelement vertex {}\n\
         property float x\nproperty float y\nproperty float z\nproperty uchar red\nproperty uchar green\nproperty uchar blue\n\
         property ushort intensity\nproperty uchar classification\nend_header\n",
        points.len()
    )?;
    let mut record = Vec::with_capacity(points.len().min(1 << 16) * 18);
    for p in points {
        for v in p.position {
            record.extend_from_slice(&v.to_le_bytes());
        }
        record.extend_from_slice(&p.colour);
        record.extend_from_slice(&p.intensity.to_le_bytes());
        record.push(p.class);
        if record.len() >= 1 << 20 {
            out.write_all(&record)?;
            record.clear();
        }
    }
    out.write_all(&record)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn point(x: f32, y: f32, z: f32) -> Point {
        Point { position: [x, y, z], colour: [200, 100, 50], intensity: 1200, class: 6 }
    }

    #[test]
    fn binary_files_round_trip_with_every_attribute() {
        let points: Vec<Point> = (0..1000).map(|i| point(i as f32 * 0.01, -(i as f32), 3.5)).collect();
        let mut file = Vec::new();
        write_ply(&points, &mut file).unwrap();
        let cloud = read_ply(&file[..], 1 << 30).unwrap();
        assert_eq!(cloud.points, points);
        assert!(cloud.has_colour && cloud.has_intensity && cloud.has_classification);
    }

    #[test]
    fn ascii_and_big_endian_files_read_the_same_and_skip_other_elements() {
        let ascii = "ply\nformat ascii 1.0\ncomment scanner X\nelement camera 1\nproperty float fov\nelement vertex 2\n\
                     property double x\nproperty double y\nproperty double z\nproperty float red\nproperty float green\nproperty float blue\n\
                     element face 1\nproperty list uchar int vertex_indices\nend_header\n60\n1 2 3 1 0.5 0\n-4 5.5 6 0 0 1\n3 0 1 1\n";
        let cloud = read_ply(ascii.as_bytes(), 10).unwrap();
        assert_eq!(cloud.points[0].position, [1.0, 2.0, 3.0]);
        assert_eq!(cloud.points[0].colour, [255, 128, 0]);
        assert_eq!(cloud.points[1].position, [-4.0, 5.5, 6.0]);
        assert!(cloud.has_colour && !cloud.has_intensity);

        let mut big = b"ply\nformat binary_big_endian 1.0\nelement vertex 1\nproperty float x\nproperty float y\nproperty float z\nproperty ushort intensity\nend_header\n".to_vec();
        for v in [1.0f32, 2.0, 3.0] {
            big.extend_from_slice(&v.to_be_bytes());
        }
        big.extend_from_slice(&500u16.to_be_bytes());
        let cloud = read_ply(&big[..], 10).unwrap();
        assert_eq!((cloud.points[0].position, cloud.points[0].intensity), ([1.0, 2.0, 3.0], 500));
    }

    #[test]
    fn broken_files_get_errors_that_say_what_is_wrong() {
        let mut file = Vec::new();
        write_ply(&[point(1.0, 2.0, 3.0), point(4.0, 5.0, 6.0)], &mut file).unwrap();
        let cut = &file[..file.len() - 5];
        assert!(matches!(read_ply(cut, 100), Err(PlyError::Truncated { announced: 2, read: 1 })));
        assert!(matches!(read_ply(&b"PK\x03\x04 zip"[..], 100), Err(PlyError::NotPly)));
        assert!(matches!(
            read_ply(&b"ply\nformat ascii 1.0\nelement vertex 1\nproperty float x\n"[..], 100),
            Err(PlyError::NoEndHeader)
        ));
        assert!(matches!(
            read_ply(
                &b"ply\nformat ascii 1.0\nelement vertex 1\nproperty float x\nproperty float y\nend_header\n1 2\n"[..],
                100
            ),
            Err(PlyError::NoPositions)
        ));
        let e = read_ply(&b"ply\nformat ascii 1.0\nelement vertex 1\nproperty quaternion x\nend_header\n"[..], 100)
            .unwrap_err();
        assert_eq!(e.to_string(), "header line 4: unknown property type \"quaternion\"");
        let e = read_ply(&b"ply\nformat ascii 1.0\nelement vertex 1\nproperty float x\nproperty float y\nproperty float z\nend_header\n1 nan? 3\n"[..], 100).unwrap_err();
        assert_eq!(e.to_string(), "vertex 0: \"nan?\" is not a number");
        let e = read_ply(&b"ply\nformat ascii 1.0\nelement vertex 1\nproperty float x\nproperty float y\nproperty float z\nend_header\n1 1e30 3\n"[..], 100).unwrap_err();
        assert!(matches!(e, PlyError::BadCoordinate { vertex: 0, .. }), "{e}");
        let e = read_ply(&b"ply\nformat ascii 1.0\nelement vertex 1\nproperty float x\nproperty float y\nproperty float z\nend_header\nNaN 0 0\n"[..], 100).unwrap_err();
        assert!(matches!(e, PlyError::BadCoordinate { .. }), "{e}");
        // A header announcing billions of points does not make us allocate them.
        let e = read_ply(&b"ply\nformat binary_little_endian 1.0\nelement vertex 99999999999\nproperty float x\nproperty float y\nproperty float z\nend_header\n"[..], 1 << 20).unwrap_err();
        assert!(e.to_string().contains("over the limit"), "{e}");
        // An endless header is refused at its limit.
        let endless = format!("ply\n{}", "comment x\n".repeat(10_000));
        assert!(matches!(read_ply(endless.as_bytes(), 100), Err(PlyError::NoEndHeader)));
        // Elements before the vertices that announce more than the file holds end early.
        let e = read_ply(&b"ply\nformat ascii 1.0\nelement cam 18446744073709551615\nproperty float a\nelement vertex 1\nproperty float x\nproperty float y\nproperty float z\nend_header\n1\n"[..], 100).unwrap_err();
        assert!(matches!(e, PlyError::Truncated { .. }), "{e}");
        let e = read_ply(&b"ply\nformat binary_little_endian 1.0\nelement cam 4611686018427387904\nproperty double a\nelement vertex 1\nproperty float x\nproperty float y\nproperty float z\nend_header\n"[..], 100).unwrap_err();
        assert!(matches!(e, PlyError::Truncated { .. }), "{e}");
        // An empty cloud is a cloud with no points, not an error.
        let empty = read_ply(&b"ply\nformat ascii 1.0\nelement vertex 0\nproperty float x\nproperty float y\nproperty float z\nend_header\n"[..], 100).unwrap();
        assert!(empty.points.is_empty());
    }
}
