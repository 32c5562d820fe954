//! Scanned meshes (photogrammetry glTF/GLB) made ready for real time: the triangles of each
//! material are split into spatial chunks, and each chunk gets a chain of simplified levels
//! (meshoptimizer, chunk borders locked so that neighbours at different levels still meet),
//! each level with its geometric error in metres. Each material keeps its glTF properties
//! (`material`), and each of its textures gets one downscaled copy per level.
//! The result is cached by content like point clouds, and a viewer picks, chunk by chunk, the
//! coarsest level whose error covers less than a pixel or so on screen.

use std::collections::HashMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use bevy::math as glam;
use serde::{Deserialize, Serialize};
use thiserror::Error;

use super::material::{MaterialDesc, Sampling, SlotRef};
use super::scan::Progress;

/// The mesh cache layout's version; another one is imported again. 4: whole glTF materials
/// (3 kept the base colour only).
pub const MESH_CACHE_VERSION: u32 = 4;
/// Most triangles in one chunk: small enough for culling and per-chunk detail, large enough
/// that draw calls stay few.
pub const MAX_CHUNK_TRIANGLES: usize = 32_768;
/// Most triangles a scan may have.
pub const MAX_TRIANGLES: u64 = 200_000_000;
/// Largest texture edge kept at import; larger ones are downscaled (and the import says so).
pub const MAX_TEXTURE_EDGE: u32 = 8_192;
/// Most levels per chunk.
const MAX_LEVELS: usize = 8;
/// Neighbouring chunks merged into one group, drawn as one mesh when all of it is far: far
/// views then cost a draw per group, not per chunk.
pub const GROUP_CHUNKS: usize = 16;
/// Bytes per stored vertex: position, normal (3 × f32 each), uv (2 × f32).
pub const VERTEX_BYTES: usize = 32;

/// Why a mesh scan could not be imported.
#[derive(Debug, Error)]
pub enum MeshError {
    /// File system error.
    #[error("{path}: {error}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The error.
        error: std::io::Error,
    },
    /// Not valid glTF, or a GLB cut short.
    #[error("not a valid glTF/GLB file: {0}")]
    Gltf(String),
    /// A buffer or image the file names is missing, shorter than declared, or not allowed.
    #[error("buffer {index}: {why}")]
    Buffer {
        /// Buffer index.
        index: usize,
        /// What is wrong.
        why: String,
    },
    /// A primitive's data is unusable.
    #[error("mesh {mesh:?}, primitive {primitive}: {why}")]
    Primitive {
        /// Mesh name or index.
        mesh: String,
        /// Primitive index.
        primitive: usize,
        /// What is wrong.
        why: String,
    },
    /// No triangles at all.
    #[error("the file has no triangles to show")]
    Empty,
    /// Over [`MAX_TRIANGLES`].
    #[error("{0} triangles is over the limit of {MAX_TRIANGLES}")]
    TooMany(u64),
    /// The cache holds something else.
    #[error("{path}: not a Parvis mesh index ({why})")]
    BadIndex {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        why: String,
    },
}

fn io(path: &Path) -> impl Fn(std::io::Error) -> MeshError + '_ {
    move |error| MeshError::Io { path: path.to_owned(), error }
}

/// A texture of a part, decoded, and how it is used.
#[derive(Debug, Clone)]
pub struct SourceTexture {
    /// The pixels, at most `MAX_TEXTURE_EDGE` a side, shared by the parts that use them.
    pub image: std::sync::Arc<image::RgbaImage>,
    /// Colour data (sRGB) or not (normals, metallic-roughness, occlusion).
    pub srgb: bool,
    /// How it is sampled.
    pub sampling: Sampling,
}

/// The triangles of one material, in world coordinates of the file.
#[derive(Debug, Clone, Default)]
pub struct Part {
    /// The material; its texture slots index `textures`.
    pub material: MaterialDesc,
    /// Its textures, decoded.
    pub textures: Vec<SourceTexture>,
    /// Positions.
    pub positions: Vec<[f32; 3]>,
    /// Normals (computed when the file has none).
    pub normals: Vec<[f32; 3]>,
    /// Texture coordinates (zero when the file has none).
    pub uvs: Vec<[f32; 2]>,
    /// Triangle list.
    pub indices: Vec<u32>,
}

/// What a glTF file holds, ready for chunking.
#[derive(Debug, Default)]
pub struct SourceMesh {
    /// Parts by material.
    pub parts: Vec<Part>,
    /// Things left out, for the import's report (non-triangle primitives, oversized textures).
    pub notes: Vec<String>,
}

/// Reads every triangle primitive of the default scene (or of all nodes if none), with node
/// transforms applied. `dir` is where external buffers and images are looked up; their URIs
/// may not leave it.
pub fn read_gltf(bytes: &[u8], dir: &Path) -> Result<SourceMesh, MeshError> {
    let gltf = crate::model::scene::models::parse_gltf(bytes).map_err(|p| {
        let message = p.message.trim_start_matches("not a valid glTF file: ");
        MeshError::Gltf(if p.field.is_empty() { message.to_owned() } else { format!("{}: {message}", p.field) })
    })?;
    let document = &gltf.document;
    let mut buffers: Vec<Vec<u8>> = Vec::new();
    for buffer in document.buffers() {
        let data = match buffer.source() {
            gltf::buffer::Source::Bin => gltf
                .blob
                .clone()
                .ok_or(MeshError::Buffer { index: buffer.index(), why: "the GLB has no binary chunk".into() })?,
            gltf::buffer::Source::Uri(uri) => {
                read_relative(dir, uri).map_err(|why| MeshError::Buffer { index: buffer.index(), why })?
            }
        };
        // Accessors index into buffers by their declared length: a shorter buffer is a cut file.
        if data.len() < buffer.length() {
            return Err(MeshError::Buffer {
                index: buffer.index(),
                why: format!("holds {} bytes but declares {} (a truncated file?)", data.len(), buffer.length()),
            });
        }
        buffers.push(data);
    }
    let mut source = SourceMesh::default();
    let mut by_material: HashMap<Option<usize>, usize> = HashMap::new();
    // Images decoded so far, by index: parts may share one (None: it could not be read).
    // Shared, and cut to the largest size kept as soon as decoded: a file that names one huge
    // image from a thousand materials must not hold a thousand copies.
    let mut decoded: HashMap<usize, Option<std::sync::Arc<image::RgbaImage>>> = HashMap::new();
    let roots: Vec<gltf::Node> = match document.default_scene().or_else(|| document.scenes().next()) {
        Some(scene) => scene.nodes().collect(),
        None => document.nodes().collect(),
    };
    let mut stack: Vec<(gltf::Node, glam::Mat4)> = roots.into_iter().map(|n| (n, glam::Mat4::IDENTITY)).collect();
    let mut triangles = 0u64;
    while let Some((node, parent)) = stack.pop() {
        let world = parent * glam::Mat4::from_cols_array_2d(&node.transform().matrix());
        stack.extend(node.children().map(|c| (c, world)));
        let Some(mesh) = node.mesh() else { continue };
        let normal_matrix = glam::Mat3::from_mat4(world).inverse().transpose();
        // A mirroring transform turns triangles inside out: their winding is turned back, or
        // one-sided materials would show their back faces.
        let mirrored = world.determinant() < 0.0;
        let mesh_name = mesh.name().map_or_else(|| mesh.index().to_string(), str::to_owned);
        for primitive in mesh.primitives() {
            let bad = |why: String| MeshError::Primitive { mesh: mesh_name.clone(), primitive: primitive.index(), why };
            if primitive.mode() != gltf::mesh::Mode::Triangles {
                source.notes.push(format!(
                    "mesh {mesh_name:?} primitive {}: {:?} left out (only triangles are imported)",
                    primitive.index(),
                    primitive.mode()
                ));
                continue;
            }
            let reader = primitive.reader(|b| buffers.get(b.index()).map(Vec::as_slice));
            let Some(positions) = reader.read_positions() else { return Err(bad("no POSITION attribute".into())) };
            let positions: Vec<[f32; 3]> =
                positions.map(|p| world.transform_point3(glam::Vec3::from(p)).to_array()).collect();
            if let Some(i) = positions
                .iter()
                .position(|p| !p.iter().all(|v| v.is_finite() && v.abs() <= super::ply::MAX_COORDINATE as f32))
            {
                return Err(bad(format!("vertex {i} has an absurd position {:?}", positions[i])));
            }
            let count = positions.len() as u32;
            let mut indices: Vec<u32> = match reader.read_indices() {
                Some(i) => i.into_u32().collect(),
                None => (0..count).collect(),
            };
            if mirrored {
                indices.chunks_exact_mut(3).for_each(|t| t.swap(1, 2));
            }
            if let Some(i) = indices.iter().find(|i| **i >= count) {
                return Err(bad(format!("index {i} points past its {count} vertices")));
            }
            let normals: Option<Vec<[f32; 3]>> = reader
                .read_normals()
                .map(|n| n.map(|n| (normal_matrix * glam::Vec3::from(n)).normalize_or_zero().to_array()).collect());
            let uvs: Option<Vec<[f32; 2]>> = reader.read_tex_coords(0).map(|t| t.into_f32().collect());
            // Bevy's glTF path multiplies the base colour by them; the cache holds none yet.
            if primitive.get(&gltf::Semantic::Colors(0)).is_some() {
                let note = "vertex colours (COLOR_0) are not kept: the scan is drawn without them".to_owned();
                if !source.notes.contains(&note) {
                    source.notes.push(note);
                }
            }
            triangles += (indices.len() / 3) as u64;
            if triangles > MAX_TRIANGLES {
                return Err(MeshError::TooMany(triangles));
            }
            let material = primitive.material();
            let key = material.index();
            let part_index = match by_material.get(&key) {
                Some(i) => *i,
                None => {
                    let mut part = Part::default();
                    let mut used: HashMap<(usize, bool, Sampling), usize> = HashMap::new();
                    let notes = &mut source.notes;
                    let mut failed = Vec::new();
                    let mut failed_or_shrunk = Vec::new();
                    part.material = super::material::read_material(
                        &material,
                        |slot: SlotRef| {
                            if let Some(t) = used.get(&(slot.image, slot.srgb, slot.sampling)) {
                                return Some(*t);
                            }
                            let image = decoded
                                .entry(slot.image)
                                .or_insert_with(|| {
                                    let image = document.images().nth(slot.image)?;
                                    let image = load_image(&image, &buffers, dir)
                                        .map_err(|why| failed.push(format!("image {}: {why}", slot.image)))
                                        .ok()?;
                                    if image.width().max(image.height()) <= MAX_TEXTURE_EDGE {
                                        return Some(std::sync::Arc::new(image));
                                    }
                                    failed_or_shrunk.push(format!(
                                        "a {}×{} texture was downscaled to fit {MAX_TEXTURE_EDGE} pixels",
                                        image.width(),
                                        image.height()
                                    ));
                                    Some(std::sync::Arc::new(fit(&image, MAX_TEXTURE_EDGE)))
                                })
                                .clone()?;
                            part.textures.push(SourceTexture { image, srgb: slot.srgb, sampling: slot.sampling });
                            used.insert((slot.image, slot.srgb, slot.sampling), part.textures.len() - 1);
                            Some(part.textures.len() - 1)
                        },
                        notes,
                    );
                    notes.extend(failed.into_iter().map(|why| format!("{why}; drawn without it")));
                    notes.extend(failed_or_shrunk);
                    source.parts.push(part);
                    by_material.insert(key, source.parts.len() - 1);
                    source.parts.len() - 1
                }
            };
            let part = &mut source.parts[part_index];
            let base = part.positions.len() as u32;
            let n = positions.len();
            part.positions.extend(positions);
            match normals {
                Some(normals) if normals.len() == n => part.normals.extend(normals),
                _ => part.normals.extend(std::iter::repeat_n([0.0; 3], n)),
            }
            match uvs {
                Some(uvs) if uvs.len() == n => part.uvs.extend(uvs),
                _ => part.uvs.extend(std::iter::repeat_n([0.0; 2], n)),
            }
            let whole = indices.len() / 3 * 3;
            part.indices.extend(indices[..whole].iter().map(|i| i + base));
        }
    }
    source.parts.retain(|p| !p.indices.is_empty());
    if source.parts.is_empty() {
        return Err(MeshError::Empty);
    }
    for part in &mut source.parts {
        fill_missing_normals(part);
    }
    Ok(source)
}

/// The JSON of a `.gltf`, or of a GLB's first chunk, without reading the GLB's binary chunk.
fn gltf_json(input: &Path) -> std::io::Result<Vec<u8>> {
    use std::io::Read;
    let mut file = std::fs::File::open(input)?;
    let mut header = [0u8; 20];
    let n = file.read(&mut header)?;
    if n < 20 || &header[..4] != b"glTF" {
        // Not a GLB: the whole file is the JSON (import refuses it later if not).
        return std::fs::read(input);
    }
    let length = u32::from_le_bytes([header[12], header[13], header[14], header[15]]);
    // A declared length is not trusted with memory: a real JSON chunk is far below this.
    let mut json = vec![0; (length as usize).min(64 << 20)];
    file.read_exact(&mut json)?;
    Ok(json)
}

/// A key of the files a glTF names beside it (buffers, images; not `data:` URIs), from their
/// names, sizes and modification times: part of the import's cache key, so that a texture or
/// buffer replaced next to a scan is imported again instead of found as it was. Empty for a
/// scan that names none, so such caches keep their key.
fn referenced_files_key(input: &Path) -> String {
    let Ok(json) = gltf_json(input) else { return String::new() };
    let Ok(value) = serde_json::from_slice::<serde_json::Value>(&json) else { return String::new() };
    let dir = input.parent().unwrap_or(Path::new("."));
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    let mut mix = |bytes: &[u8]| super::cache::fnv1a(&mut hash, bytes);
    let mut named = 0;
    for list in ["buffers", "images"] {
        for entry in value.get(list).and_then(serde_json::Value::as_array).into_iter().flatten() {
            let Some(uri) = entry.get("uri").and_then(serde_json::Value::as_str) else { continue };
            if uri.starts_with("data:") {
                continue;
            }
            named += 1;
            mix(uri.as_bytes());
            let decoded = crate::model::scene::models::percent_decode(uri).unwrap_or_default();
            // A file missing now is a state of its own: it may come back.
            if let Ok(meta) = std::fs::metadata(dir.join(decoded)) {
                mix(&meta.len().to_le_bytes());
                let modified = meta.modified().ok().and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok());
                mix(&modified.map_or(0, |d| d.as_nanos()).to_le_bytes());
            }
        }
    }
    if named == 0 { String::new() } else { format!("-{:08x}", hash as u32) }
}

/// Reads `uri` relative to `dir`, refusing anything that would leave it.
fn read_relative(dir: &Path, uri: &str) -> Result<Vec<u8>, String> {
    if uri.starts_with("data:") {
        return Err("embedded data URIs are not supported; export the scan as GLB".into());
    }
    let decoded =
        crate::model::scene::models::percent_decode(uri).ok_or_else(|| format!("{uri:?} is not a valid URI"))?;
    crate::model::assets_root::check_relative(&decoded).map_err(|e| e.to_string())?;
    let path = dir.join(&decoded);
    // Through a link, a file may still lie elsewhere: it must resolve inside the scan's folder.
    let real = path.canonicalize().map_err(|e| format!("{}: {e}", path.display()))?;
    let root = dir.canonicalize().map_err(|e| format!("{}: {e}", dir.display()))?;
    if !real.starts_with(&root) {
        return Err(format!("{decoded:?} leads outside the scan's folder"));
    }
    std::fs::read(&real).map_err(|e| format!("{}: {e}", path.display()))
}

fn load_image(image: &gltf::Image, buffers: &[Vec<u8>], dir: &Path) -> Result<image::RgbaImage, String> {
    let bytes = match image.source() {
        gltf::image::Source::View { view, .. } => {
            let data = buffers.get(view.buffer().index()).ok_or("its buffer is missing")?;
            data.get(view.offset()..view.offset() + view.length()).ok_or("its bytes lie outside the buffer")?.to_vec()
        }
        gltf::image::Source::Uri { uri, .. } => read_relative(dir, uri)?,
    };
    let reader =
        image::ImageReader::new(std::io::Cursor::new(bytes)).with_guessed_format().map_err(|e| e.to_string())?;
    let mut limits = image::Limits::default();
    // A hostile header may announce a gigapixel image: refuse before allocating it.
    limits.max_image_width = Some(4 * MAX_TEXTURE_EDGE);
    limits.max_image_height = Some(4 * MAX_TEXTURE_EDGE);
    limits.max_alloc = Some(1 << 30);
    let mut reader = reader;
    reader.limits(limits);
    Ok(reader.decode().map_err(|e| e.to_string())?.to_rgba8())
}

/// Smooth normals from the triangles, for vertices the file gave none.
fn fill_missing_normals(part: &mut Part) {
    if !part.normals.contains(&[0.0; 3]) {
        return;
    }
    let mut sums = vec![glam::Vec3::ZERO; part.positions.len()];
    for t in part.indices.chunks_exact(3) {
        let [a, b, c] = [t[0], t[1], t[2]].map(|i| glam::Vec3::from(part.positions[i as usize]));
        let face = (b - a).cross(c - a);
        for i in t {
            sums[*i as usize] += face;
        }
    }
    for (n, sum) in part.normals.iter_mut().zip(sums) {
        if *n == [0.0; 3] {
            *n = sum.normalize_or(glam::Vec3::Y).to_array();
        }
    }
}

/// `image` scaled down so that its longer edge is at most `edge`.
pub fn fit(image: &image::RgbaImage, edge: u32) -> image::RgbaImage {
    let longest = image.width().max(image.height());
    if longest <= edge {
        return image.clone();
    }
    let scale = edge as f32 / longest as f32;
    let (w, h) = (((image.width() as f32 * scale) as u32).max(1), ((image.height() as f32 * scale) as u32).max(1));
    image::imageops::resize(image, w, h, image::imageops::FilterType::Triangle)
}

/// Splits triangles into spatial chunks of at most `max` triangles: halves along the longest
/// axis of their centroids' box, at the median, until small enough.
pub fn chunk_triangles(positions: &[[f32; 3]], indices: &[u32], max: usize) -> Vec<Vec<u32>> {
    let centroid = |t: u32| {
        let i = t as usize * 3;
        (glam::Vec3::from(positions[indices[i] as usize])
            + glam::Vec3::from(positions[indices[i + 1] as usize])
            + glam::Vec3::from(positions[indices[i + 2] as usize]))
            / 3.0
    };
    let all: Vec<u32> = (0..(indices.len() / 3) as u32).collect();
    let mut done = Vec::new();
    let mut stack = vec![all];
    while let Some(mut tris) = stack.pop() {
        if tris.len() <= max.max(1) {
            done.push(tris);
            continue;
        }
        let (lo, hi) = tris.iter().fold((glam::Vec3::splat(f32::MAX), glam::Vec3::splat(f32::MIN)), |(lo, hi), t| {
            let c = centroid(*t);
            (lo.min(c), hi.max(c))
        });
        let extent = hi - lo;
        let axis = if extent.x >= extent.y && extent.x >= extent.z {
            0
        } else if extent.y >= extent.z {
            1
        } else {
            2
        };
        let middle = tris.len() / 2;
        tris.select_nth_unstable_by(middle, |a, b| centroid(*a)[axis].total_cmp(&centroid(*b)[axis]));
        let upper = tris.split_off(middle);
        stack.push(upper);
        stack.push(tris);
    }
    done
}

/// One level of a chunk, compacted: only the vertices it uses.
#[derive(Debug, Clone, PartialEq)]
pub struct Level {
    /// Positions.
    pub positions: Vec<[f32; 3]>,
    /// Normals.
    pub normals: Vec<[f32; 3]>,
    /// Texture coordinates.
    pub uvs: Vec<[f32; 2]>,
    /// Triangle list.
    pub indices: Vec<u32>,
    /// Largest distance, metres, between this level's surface and the original's.
    pub error: f32,
}

fn compact(part: &Part, indices: &[u32], error: f32) -> Level {
    let mut map: HashMap<u32, u32> = HashMap::new();
    let mut level = Level {
        positions: Vec::new(),
        normals: Vec::new(),
        uvs: Vec::new(),
        indices: Vec::with_capacity(indices.len()),
        error,
    };
    for i in indices {
        let local = *map.entry(*i).or_insert_with(|| {
            let v = *i as usize;
            level.positions.push(part.positions[v]);
            level.normals.push(part.normals[v]);
            level.uvs.push(part.uvs[v]);
            (level.positions.len() - 1) as u32
        });
        level.indices.push(local);
    }
    meshopt::optimize_vertex_cache_in_place(&mut level.indices, level.positions.len());
    level
}

/// The level chain of one chunk (`triangles` indexes the part's triangles): level 0 is the
/// chunk as scanned, each next one about half the triangles, until simplification stalls
/// (locked borders) or the chunk is tiny.
pub fn level_chain(part: &Part, triangles: &[u32]) -> Vec<Level> {
    let indices: Vec<u32> =
        triangles.iter().flat_map(|t| part.indices[*t as usize * 3..*t as usize * 3 + 3].iter().copied()).collect();
    halve_until_stalled(vec![compact(part, &indices, 0.0)])
}

/// Adds levels after the last one, each about half its triangles, with open borders locked
/// (so that what it meets still fits whatever their level), until simplification stalls, the
/// level is tiny, or there are [`MAX_LEVELS`]. Errors add up along the chain.
fn halve_until_stalled(mut levels: Vec<Level>) -> Vec<Level> {
    while levels.len() < MAX_LEVELS {
        let previous = levels.last().expect("level 0 exists");
        if previous.indices.len() / 3 < 128 {
            break;
        }
        let Ok(adapter) = meshopt::VertexDataAdapter::new(meshopt::typed_to_bytes(&previous.positions), 12, 0) else {
            break;
        };
        let target = previous.indices.len() / 2 / 3 * 3;
        let mut relative = 0.0f32;
        let simplified = meshopt::simplify(
            &previous.indices,
            &adapter,
            target,
            1.0,
            meshopt::SimplifyOptions::LockBorder,
            Some(&mut relative),
        );
        if simplified.len() * 10 > previous.indices.len() * 8 || simplified.is_empty() {
            break;
        }
        let error = previous.error + relative * meshopt::simplify_scale(&adapter);
        let prev_part = Part {
            positions: previous.positions.clone(),
            normals: previous.normals.clone(),
            uvs: previous.uvs.clone(),
            ..Part::default()
        };
        levels.push(compact(&prev_part, &simplified, error));
    }
    levels
}

/// The levels of a group of chunks: the given levels of its chunks merged (welded where borders
/// meet, so the seams can simplify away), then halved while simplification goes on, with the
/// group's outer border locked so that it meets its neighbours.
pub fn group_chain(members: &[Level]) -> Vec<Level> {
    let mut merged =
        Level { positions: Vec::new(), normals: Vec::new(), uvs: Vec::new(), indices: Vec::new(), error: 0.0 };
    // Welded on position, normal and uv: a texture seam (same position, other uv) stays a
    // seam, so coarse levels keep sampling the right part of the atlas.
    let mut welded: HashMap<[u32; 8], u32> = HashMap::new();
    for level in members {
        merged.error = merged.error.max(level.error);
        let map: Vec<u32> = (0..level.positions.len())
            .map(|v| {
                let [x, y, z] = level.positions[v].map(f32::to_bits);
                let [nx, ny, nz] = level.normals[v].map(f32::to_bits);
                let [u, w] = level.uvs[v].map(f32::to_bits);
                *welded.entry([x, y, z, nx, ny, nz, u, w]).or_insert_with(|| {
                    merged.positions.push(level.positions[v]);
                    merged.normals.push(level.normals[v]);
                    merged.uvs.push(level.uvs[v]);
                    (merged.positions.len() - 1) as u32
                })
            })
            .collect();
        merged.indices.extend(level.indices.iter().map(|i| map[*i as usize]));
    }
    let part = Part {
        positions: merged.positions.clone(),
        normals: merged.normals.clone(),
        uvs: merged.uvs.clone(),
        ..Part::default()
    };
    halve_until_stalled(vec![compact(&part, &merged.indices, merged.error)])
}

/// One stored level.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StoredLevel {
    /// Triangles.
    pub triangles: u32,
    /// Vertices.
    pub vertices: u32,
    /// Geometric error, metres.
    pub error: f32,
    /// Byte offset of its vertices (then indices) in `mesh.bin`.
    pub offset: u64,
}

/// One stored chunk.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StoredChunk {
    /// Lowest corner of its box.
    pub min: [f32; 3],
    /// Highest corner.
    pub max: [f32; 3],
    /// Levels, finest first.
    pub levels: Vec<StoredLevel>,
}

/// Neighbouring chunks (`first..first + count` of the part's) that are drawn as one mesh,
/// at one of its own levels, when the whole group is far enough.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StoredGroup {
    /// First chunk.
    pub first: u32,
    /// Chunks.
    pub count: u32,
    /// Lowest corner of its box.
    pub min: [f32; 3],
    /// Highest corner.
    pub max: [f32; 3],
    /// Levels, finest first; the first is its chunks' levels two above their coarsest, merged.
    pub levels: Vec<StoredLevel>,
}

/// One stored texture: a downscaled copy per level.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StoredTexture {
    /// File names in the folder, finest first.
    pub files: Vec<String>,
    /// Their sizes.
    pub sizes: Vec<[u32; 2]>,
    /// Colour data (sRGB) or not.
    pub srgb: bool,
    /// How it is sampled.
    pub sampling: Sampling,
}

/// One stored part (material).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StoredPart {
    /// The material; its texture slots index `textures`.
    pub material: MaterialDesc,
    /// Its textures.
    pub textures: Vec<StoredTexture>,
    /// Chunks.
    pub chunks: Vec<StoredChunk>,
    /// Groups of neighbouring chunks.
    pub groups: Vec<StoredGroup>,
}

/// `mesh.json`: an imported mesh scan.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MeshIndex {
    /// Layout version.
    pub version: u32,
    /// The scan's file name.
    pub source: String,
    /// The content key.
    pub key: String,
    /// Triangles in the scan.
    pub triangles: u64,
    /// Parts.
    pub parts: Vec<StoredPart>,
    /// What the import left out or changed.
    pub notes: Vec<String>,
}

/// An imported mesh scan.
#[derive(Debug)]
pub struct ImportedMesh {
    /// Its folder.
    pub dir: PathBuf,
    /// Its index.
    pub index: MeshIndex,
    /// Whether it was there already.
    pub cached: bool,
}

/// Why a mesh import failed.
#[derive(Debug, Error)]
pub enum MeshImportError {
    /// A glTF problem, in the scan at this path.
    #[error("{0}: {1}")]
    Mesh(PathBuf, MeshError),
    /// A cache problem.
    #[error(transparent)]
    Cache(#[from] super::cache::CacheError),
}

/// Imports a glTF/GLB scan into `cache_root/<content key>/`, or finds it there.
pub fn import_mesh(input: &Path, cache_root: &Path, progress: &Arc<Progress>) -> Result<ImportedMesh, MeshImportError> {
    progress.begin("hashing", 0);
    let key = format!("{}{}-mesh{MESH_CACHE_VERSION}", super::cache::content_key(input)?, referenced_files_key(input));
    let dir = cache_root.join(&key);
    if let Ok(index) = read_mesh_index(&dir) {
        return Ok(ImportedMesh { dir, index, cached: true });
    }
    progress.begin("reading", 0);
    let bytes = std::fs::read(input).map_err(|e| MeshImportError::Mesh(input.to_owned(), io(input)(e)))?;
    let parent = input.parent().unwrap_or(Path::new("."));
    let source = read_gltf(&bytes, parent).map_err(|e| MeshImportError::Mesh(input.to_owned(), e))?;
    drop(bytes);
    let triangles: u64 = source.parts.iter().map(|p| (p.indices.len() / 3) as u64).sum();
    let chunked: Vec<Vec<Vec<u32>>> =
        source.parts.iter().map(|p| chunk_triangles(&p.positions, &p.indices, MAX_CHUNK_TRIANGLES)).collect();
    let total_chunks: usize = chunked.iter().map(Vec::len).sum();
    progress.begin("building levels of detail", total_chunks as u64);
    let final_dir = dir;
    let dir = super::scan::staging_dir(&final_dir);
    std::fs::create_dir_all(&dir).map_err(|e| MeshImportError::Mesh(input.to_owned(), io(&dir)(e)))?;
    let data_path = dir.join("mesh.bin");
    let file =
        std::fs::File::create(&data_path).map_err(|e| MeshImportError::Mesh(input.to_owned(), io(&data_path)(e)))?;
    let mut out = std::io::BufWriter::new(file);
    let mut offset = 0u64;
    let mut parts = Vec::new();
    for (p, (part, chunks)) in source.parts.iter().zip(&chunked).enumerate() {
        let mut stored = StoredPart {
            material: part.material.clone(),
            textures: Vec::new(),
            chunks: Vec::new(),
            groups: Vec::new(),
        };
        let mut deepest = 0;
        let mut group_sources: Vec<Level> = Vec::new();
        for triangles in chunks {
            let levels = level_chain(part, triangles);
            // Groups start two levels finer than a chunk's coarsest, so that they stand in
            // from mid distance, not only from far away; their own levels go coarser still.
            group_sources.push(levels[levels.len().saturating_sub(3)].clone());
            deepest = deepest.max(levels.len());
            let (mut lo, mut hi) = ([f32::MAX; 3], [f32::MIN; 3]);
            for v in &levels[0].positions {
                for a in 0..3 {
                    lo[a] = lo[a].min(v[a]);
                    hi[a] = hi[a].max(v[a]);
                }
            }
            let mut chunk = StoredChunk { min: lo, max: hi, levels: Vec::new() };
            for level in &levels {
                write_level(&mut out, level).map_err(|e| MeshImportError::Mesh(input.to_owned(), io(&data_path)(e)))?;
                chunk.levels.push(StoredLevel {
                    triangles: (level.indices.len() / 3) as u32,
                    vertices: level.positions.len() as u32,
                    error: level.error,
                    offset,
                });
                offset += (level.positions.len() * VERTEX_BYTES + level.indices.len() * 4) as u64;
            }
            stored.chunks.push(chunk);
            progress.add(1);
        }
        // Chunks come out of the split depth first: consecutive ones are neighbours.
        if chunks.len() > 1 {
            for (g, members) in group_sources.chunks(GROUP_CHUNKS).enumerate() {
                let levels = group_chain(members);
                let (mut lo, mut hi) = ([f32::MAX; 3], [f32::MIN; 3]);
                for c in &stored.chunks[g * GROUP_CHUNKS..g * GROUP_CHUNKS + members.len()] {
                    for a in 0..3 {
                        lo[a] = lo[a].min(c.min[a]);
                        hi[a] = hi[a].max(c.max[a]);
                    }
                }
                let mut group = StoredGroup {
                    first: (g * GROUP_CHUNKS) as u32,
                    count: members.len() as u32,
                    min: lo,
                    max: hi,
                    levels: Vec::new(),
                };
                for level in &levels {
                    write_level(&mut out, level)
                        .map_err(|e| MeshImportError::Mesh(input.to_owned(), io(&data_path)(e)))?;
                    group.levels.push(StoredLevel {
                        triangles: (level.indices.len() / 3) as u32,
                        vertices: level.positions.len() as u32,
                        error: level.error,
                        offset,
                    });
                    offset += (level.positions.len() * VERTEX_BYTES + level.indices.len() * 4) as u64;
                }
                stored.groups.push(group);
            }
        }
        // One copy of each texture per level, each half the previous one's size (down to 64
        // pixels): coarse levels are seen from far away.
        for (t, texture) in part.textures.iter().enumerate() {
            let mut kept =
                StoredTexture { files: Vec::new(), sizes: Vec::new(), srgb: texture.srgb, sampling: texture.sampling };
            for level in 0..deepest {
                let edge = (texture.image.width().max(texture.image.height()) >> level).max(64);
                let scaled = fit(&texture.image, edge);
                let name = format!("part{p}-texture{t}-level{level}.png");
                scaled.save(dir.join(&name)).map_err(|e| {
                    MeshImportError::Mesh(
                        input.to_owned(),
                        MeshError::Io { path: dir.join(&name), error: std::io::Error::other(e) },
                    )
                })?;
                kept.sizes.push([scaled.width(), scaled.height()]);
                kept.files.push(name);
            }
            stored.textures.push(kept);
        }
        parts.push(stored);
    }
    out.flush().map_err(|e| MeshImportError::Mesh(input.to_owned(), io(&data_path)(e)))?;
    let index = MeshIndex {
        version: MESH_CACHE_VERSION,
        source: input.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default(),
        key,
        triangles,
        parts,
        notes: source.notes,
    };
    let index_path = dir.join("mesh.json");
    // Written last: a folder with an index is a complete import.
    std::fs::write(&index_path, serde_json::to_vec_pretty(&index).expect("plain data"))
        .map_err(|e| MeshImportError::Mesh(input.to_owned(), io(&index_path)(e)))?;
    let index = super::cache::publish(&dir, &final_dir, || read_mesh_index(&final_dir).ok())?.unwrap_or(index);
    Ok(ImportedMesh { dir: final_dir, index, cached: false })
}

fn write_level(out: &mut impl Write, level: &Level) -> std::io::Result<()> {
    for ((p, n), uv) in level.positions.iter().zip(&level.normals).zip(&level.uvs) {
        for v in p.iter().chain(n).chain(uv) {
            out.write_all(&v.to_le_bytes())?;
        }
    }
    for i in &level.indices {
        out.write_all(&i.to_le_bytes())?;
    }
    Ok(())
}

/// Reads `mesh.json` and checks it against `mesh.bin`.
pub fn read_mesh_index(dir: &Path) -> Result<MeshIndex, MeshError> {
    let path = dir.join("mesh.json");
    let bytes = std::fs::read(&path).map_err(io(&path))?;
    // The version first: an older layout lacks fields, and "missing field" would not say why.
    #[derive(Deserialize)]
    struct Version {
        version: u32,
    }
    let bad = |e: serde_json::Error| MeshError::BadIndex { path: path.clone(), why: e.to_string() };
    let Version { version } = serde_json::from_slice(&bytes).map_err(bad)?;
    if version != MESH_CACHE_VERSION {
        return Err(MeshError::BadIndex {
            path,
            why: format!(
                "layout version {version} instead of {MESH_CACHE_VERSION} (written by another Parvis); import the scan again"
            ),
        });
    }
    let index: MeshIndex = serde_json::from_slice(&bytes).map_err(bad)?;
    let data = dir.join("mesh.bin");
    let stored = std::fs::metadata(&data).map_err(io(&data))?.len();
    // A folder named in a scene may come from anywhere: its index is checked before use.
    let plain = |name: &str| !name.is_empty() && !name.contains(['/', '\\']) && name != ".." && name != ".";
    for part in &index.parts {
        if !part
            .textures
            .iter()
            .all(|t| !t.files.is_empty() && t.files.len() == t.sizes.len() && t.files.iter().all(|f| plain(f)))
        {
            return Err(MeshError::BadIndex {
                path,
                why: "texture names must be plain file names, one size each".into(),
            });
        }
        if part.material.slots().any(|(t, _)| t >= part.textures.len()) {
            return Err(MeshError::BadIndex { path, why: "a material names a texture the part does not have".into() });
        }
        if part.chunks.iter().any(|c| c.levels.is_empty()) || part.groups.iter().any(|g| g.levels.is_empty()) {
            return Err(MeshError::BadIndex { path, why: "a chunk or group without levels".into() });
        }
    }
    let groups_ok = index.parts.iter().all(|p| {
        p.groups.iter().all(|g| {
            g.count > 0 && (g.first as usize).checked_add(g.count as usize).is_some_and(|end| end <= p.chunks.len())
        })
    });
    if !groups_ok {
        return Err(MeshError::BadIndex { path, why: "a group names chunks the part does not have".into() });
    }
    let levels = index
        .parts
        .iter()
        .flat_map(|p| p.chunks.iter().flat_map(|c| &c.levels).chain(p.groups.iter().flat_map(|g| &g.levels)));
    let fits = levels.into_iter().all(|l| {
        let size = u64::from(l.vertices) * VERTEX_BYTES as u64 + u64::from(l.triangles) * 12;
        l.offset.checked_add(size).is_some_and(|end| end <= stored)
    });
    if !fits {
        return Err(MeshError::BadIndex { path, why: "a level lies past the end of mesh.bin".into() });
    }
    // Levels may not overlap into more data than the file holds: what is loaded is bounded
    // by the file's size.
    let total: u64 = index
        .parts
        .iter()
        .flat_map(|p| p.chunks.iter().flat_map(|c| &c.levels).chain(p.groups.iter().flat_map(|g| &g.levels)))
        .map(|l| u64::from(l.vertices) * VERTEX_BYTES as u64 + u64::from(l.triangles) * 12)
        .sum();
    if total > stored {
        return Err(MeshError::BadIndex {
            path,
            why: format!("its levels add up to {total} bytes but mesh.bin holds {stored}"),
        });
    }
    Ok(index)
}

/// Reads one level back.
pub fn read_level(dir: &Path, level: &StoredLevel) -> Result<Level, MeshError> {
    use std::io::{Read, Seek, SeekFrom};
    let path = dir.join("mesh.bin");
    let mut file = std::fs::File::open(&path).map_err(io(&path))?;
    file.seek(SeekFrom::Start(level.offset)).map_err(io(&path))?;
    let mut bytes = vec![0u8; level.vertices as usize * VERTEX_BYTES + level.triangles as usize * 12];
    file.read_exact(&mut bytes).map_err(io(&path))?;
    let f = |k: usize| f32::from_le_bytes([bytes[k], bytes[k + 1], bytes[k + 2], bytes[k + 3]]);
    let mut out =
        Level { positions: Vec::new(), normals: Vec::new(), uvs: Vec::new(), indices: Vec::new(), error: level.error };
    for v in 0..level.vertices as usize {
        let b = v * VERTEX_BYTES;
        out.positions.push([f(b), f(b + 4), f(b + 8)]);
        out.normals.push([f(b + 12), f(b + 16), f(b + 20)]);
        out.uvs.push([f(b + 24), f(b + 28)]);
    }
    let start = level.vertices as usize * VERTEX_BYTES;
    out.indices = bytes[start..].chunks_exact(4).map(|c| u32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect();
    if out.indices.iter().any(|i| *i >= level.vertices) {
        return Err(MeshError::BadIndex { path, why: "an index points past its level's vertices".into() });
    }
    Ok(out)
}

/// The coarsest level to draw: the first whose error, seen from `distance` metres with
/// `pixels_per_metre_at_1m`, covers at most `max_error_px` pixels.
pub fn pick_level(errors: &[f32], distance: f32, pixels_per_metre_at_1m: f32, max_error_px: f32) -> usize {
    let distance = distance.max(0.01);
    errors.iter().rposition(|e| e * pixels_per_metre_at_1m / distance <= max_error_px).unwrap_or(0)
}

/// The finest texture level that fits the adapter's limit, if any.
pub fn texture_level_for_limit(sizes: &[[u32; 2]], limit: u32) -> Option<usize> {
    sizes.iter().position(|[w, h]| *w <= limit && *h <= limit)
}

/// Writes a GLB holding one textured triangle mesh: for tests and benchmarks that generate
/// scans, and exports.
pub fn write_glb(
    positions: &[[f32; 3]],
    normals: &[[f32; 3]],
    uvs: &[[f32; 2]],
    indices: &[u32],
    texture_png: Option<&[u8]>,
    path: &Path,
) -> std::io::Result<()> {
    let mut glb = GlbWriter::default();
    let mut material = serde_json::json!({"pbrMetallicRoughness": {"baseColorFactor": [1.0, 1.0, 1.0, 1.0], "metallicFactor": 0.0, "roughnessFactor": 0.9}});
    if let Some(png) = texture_png {
        let texture = glb.texture(png, None);
        material["pbrMetallicRoughness"]["baseColorTexture"] = serde_json::json!({"index": texture});
    }
    let material = glb.material(material);
    glb.mesh("scan", positions, normals, uvs, indices, material, serde_json::json!({}));
    glb.write(path)
}

/// A GLB written piece by piece — textures, materials (glTF JSON), meshes each on a node of
/// its own — for tests and benchmarks that need models with particular materials.
#[derive(Debug, Default)]
pub struct GlbWriter {
    bin: Vec<u8>,
    views: Vec<serde_json::Value>,
    accessors: Vec<serde_json::Value>,
    images: Vec<serde_json::Value>,
    samplers: Vec<serde_json::Value>,
    textures: Vec<serde_json::Value>,
    materials: Vec<serde_json::Value>,
    meshes: Vec<serde_json::Value>,
    nodes: Vec<serde_json::Value>,
}

impl GlbWriter {
    fn view(&mut self, bytes: &[u8], target: Option<u32>) -> usize {
        while !self.bin.len().is_multiple_of(4) {
            self.bin.push(0);
        }
        let mut view = serde_json::json!({"buffer": 0, "byteOffset": self.bin.len(), "byteLength": bytes.len()});
        if let Some(target) = target {
            view["target"] = serde_json::json!(target);
        }
        self.views.push(view);
        self.bin.extend_from_slice(bytes);
        self.views.len() - 1
    }

    fn floats(&mut self, values: &[f32], count: usize, kind: &str, bounds: bool) -> usize {
        let bytes: Vec<u8> = values.iter().flat_map(|f| f.to_le_bytes()).collect();
        let view = self.view(&bytes, Some(34962));
        let mut accessor = serde_json::json!({"bufferView": view, "componentType": 5126, "count": count, "type": kind});
        if bounds {
            let (lo, hi) = values.chunks_exact(3).fold(([f32::MAX; 3], [f32::MIN; 3]), |(mut lo, mut hi), v| {
                for a in 0..3 {
                    lo[a] = lo[a].min(v[a]);
                    hi[a] = hi[a].max(v[a]);
                }
                (lo, hi)
            });
            accessor["min"] = serde_json::json!(lo);
            accessor["max"] = serde_json::json!(hi);
        }
        self.accessors.push(accessor);
        self.accessors.len() - 1
    }

    /// Adds a PNG image as a texture, with a glTF sampler if given; returns the texture index.
    pub fn texture(&mut self, png: &[u8], sampler: Option<serde_json::Value>) -> usize {
        let view = self.view(png, None);
        self.images.push(serde_json::json!({"bufferView": view, "mimeType": "image/png"}));
        let mut texture = serde_json::json!({"source": self.images.len() - 1});
        if let Some(sampler) = sampler {
            self.samplers.push(sampler);
            texture["sampler"] = serde_json::json!(self.samplers.len() - 1);
        }
        self.textures.push(texture);
        self.textures.len() - 1
    }

    /// Adds a texture whose image is the file at `uri`, next to the GLB (which need not exist:
    /// tests use it for a missing texture); returns the texture index.
    pub fn texture_file(&mut self, uri: &str) -> usize {
        self.images.push(serde_json::json!({"uri": uri}));
        self.textures.push(serde_json::json!({"source": self.images.len() - 1}));
        self.textures.len() - 1
    }

    /// Adds a material (glTF JSON); returns its index.
    pub fn material(&mut self, material: serde_json::Value) -> usize {
        self.materials.push(material);
        self.materials.len() - 1
    }

    /// Adds a triangle mesh with `material`, on a node with `node`'s transform (glTF JSON:
    /// `translation`, `rotation`, `scale`, or `{}`).
    #[allow(clippy::too_many_arguments, reason = "a mesh's arrays, its material and its place")]
    pub fn mesh(
        &mut self,
        name: &str,
        positions: &[[f32; 3]],
        normals: &[[f32; 3]],
        uvs: &[[f32; 2]],
        indices: &[u32],
        material: usize,
        mut node: serde_json::Value,
    ) {
        let p = self.floats(positions.as_flattened(), positions.len(), "VEC3", true);
        let n = self.floats(normals.as_flattened(), normals.len(), "VEC3", false);
        let t = self.floats(uvs.as_flattened(), uvs.len(), "VEC2", false);
        let bytes: Vec<u8> = indices.iter().flat_map(|i| i.to_le_bytes()).collect();
        let view = self.view(&bytes, Some(34963));
        self.accessors.push(
            serde_json::json!({"bufferView": view, "componentType": 5125, "count": indices.len(), "type": "SCALAR"}),
        );
        let i = self.accessors.len() - 1;
        self.meshes.push(serde_json::json!({"name": name, "primitives": [{"attributes": {"POSITION": p, "NORMAL": n, "TEXCOORD_0": t}, "indices": i, "material": material}]}));
        node["mesh"] = serde_json::json!(self.meshes.len() - 1);
        node["name"] = serde_json::json!(name);
        self.nodes.push(node);
    }

    /// Writes the GLB. Extensions its materials use are declared.
    pub fn write(mut self, path: &Path) -> std::io::Result<()> {
        while !self.bin.len().is_multiple_of(4) {
            self.bin.push(0);
        }
        let mut used = std::collections::BTreeSet::new();
        collect_extensions(&serde_json::Value::Array(self.materials.clone()), &mut used);
        let mut json = serde_json::json!({
            "asset": {"version": "2.0", "generator": "parvis"},
            "scene": 0,
            "scenes": [{"nodes": (0..self.nodes.len()).collect::<Vec<_>>()}],
            "nodes": self.nodes,
            "meshes": self.meshes,
            "accessors": self.accessors,
            "bufferViews": self.views,
            "buffers": [{"byteLength": self.bin.len()}],
            "materials": self.materials,
        });
        if !self.images.is_empty() {
            json["images"] = serde_json::json!(self.images);
            json["textures"] = serde_json::json!(self.textures);
        }
        if !self.samplers.is_empty() {
            json["samplers"] = serde_json::json!(self.samplers);
        }
        if !used.is_empty() {
            json["extensionsUsed"] = serde_json::json!(used);
        }
        let mut text = serde_json::to_vec(&json).expect("plain data");
        while !text.len().is_multiple_of(4) {
            text.push(b' ');
        }
        let total = 12 + 8 + text.len() + 8 + self.bin.len();
        let mut out = std::io::BufWriter::new(std::fs::File::create(path)?);
        out.write_all(b"glTF")?;
        out.write_all(&2u32.to_le_bytes())?;
        out.write_all(&(total as u32).to_le_bytes())?;
        out.write_all(&(text.len() as u32).to_le_bytes())?;
        out.write_all(b"JSON")?;
        out.write_all(&text)?;
        out.write_all(&(self.bin.len() as u32).to_le_bytes())?;
        out.write_all(b"BIN\0")?;
        out.write_all(&self.bin)?;
        out.flush()
    }
}

/// The names of the extensions objects in `value` use.
fn collect_extensions(value: &serde_json::Value, used: &mut std::collections::BTreeSet<String>) {
    match value {
        serde_json::Value::Object(map) => {
            for (key, inner) in map {
                if key == "extensions"
                    && let Some(names) = inner.as_object()
                {
                    used.extend(names.keys().cloned());
                }
                collect_extensions(inner, used);
            }
        }
        serde_json::Value::Array(items) => items.iter().for_each(|v| collect_extensions(v, used)),
        _ => {}
    }
}

/// A bumpy terrain-like grid of `n × n` quads over `size` metres: a stand-in photogrammetry
/// scan with surface detail for simplification to remove.
pub fn generate_scan_grid(n: u32, size: f32) -> (Vec<[f32; 3]>, Vec<[f32; 3]>, Vec<[f32; 2]>, Vec<u32>) {
    let height = |x: f32, z: f32| 0.6 * (x * 0.35).sin() * (z * 0.27).cos() + 0.05 * (x * 7.3).sin() * (z * 6.1).sin();
    let mut positions = Vec::new();
    let mut uvs = Vec::new();
    for j in 0..=n {
        for i in 0..=n {
            let (u, v) = (i as f32 / n as f32, j as f32 / n as f32);
            let (x, z) = ((u - 0.5) * size, (v - 0.5) * size);
            positions.push([x, height(x, z), z]);
            uvs.push([u, v]);
        }
    }
    let mut indices = Vec::new();
    for j in 0..n {
        for i in 0..n {
            let a = j * (n + 1) + i;
            let (b, c, d) = (a + 1, a + n + 1, a + n + 2);
            indices.extend_from_slice(&[a, c, b, b, c, d]);
        }
    }
    let mut part = Part { positions, uvs, indices, ..Part::default() };
    part.normals = vec![[0.0; 3]; part.positions.len()];
    fill_missing_normals(&mut part);
    (part.positions, part.normals, part.uvs, part.indices)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The positions of a level's open-border vertices (on edges of one triangle), sorted.
    fn open_border(level: &Level) -> Vec<[u32; 3]> {
        let mut edges: HashMap<(u32, u32), u32> = HashMap::new();
        for t in level.indices.chunks_exact(3) {
            for (a, b) in [(t[0], t[1]), (t[1], t[2]), (t[2], t[0])] {
                *edges.entry((a.min(b), a.max(b))).or_default() += 1;
            }
        }
        let mut points: Vec<[u32; 3]> = edges
            .iter()
            .filter(|(_, n)| **n == 1)
            .flat_map(|((a, b), _)| [*a, *b])
            .map(|v| level.positions[v as usize].map(f32::to_bits))
            .collect();
        points.sort_unstable();
        points.dedup();
        points
    }

    #[test]
    fn chunks_cover_every_triangle_once_and_keep_to_their_size() {
        let (positions, _, _, indices) = generate_scan_grid(200, 50.0);
        let chunks = chunk_triangles(&positions, &indices, 5_000);
        let mut seen: Vec<u32> = chunks.iter().flatten().copied().collect();
        seen.sort_unstable();
        assert_eq!(seen, (0..(indices.len() / 3) as u32).collect::<Vec<_>>());
        assert!(chunks.iter().all(|c| c.len() <= 5_000 && !c.is_empty()));
        assert!(chunks.len() >= 16, "{} chunks", chunks.len());
    }

    #[test]
    fn levels_halve_the_triangles_with_growing_error_and_sealed_borders() {
        let (positions, normals, uvs, indices) = generate_scan_grid(120, 30.0);
        let part = Part { positions, normals, uvs, indices, ..Part::default() };
        let chunks = chunk_triangles(&part.positions, &part.indices, 8_000);
        let levels = level_chain(&part, &chunks[0]);
        assert!(levels.len() >= 3, "{} levels", levels.len());
        assert_eq!(levels[0].error, 0.0);
        for pair in levels.windows(2) {
            assert!(pair[1].indices.len() * 10 <= pair[0].indices.len() * 8, "each level is clearly coarser");
            assert!(pair[1].error >= pair[0].error);
        }
        assert!(
            levels.last().unwrap().error < 2.0,
            "a coarse level of a 30 m scan stays within metres: {}",
            levels.last().unwrap().error
        );
        // The chunk's border vertices are all still there at every level: no cracks.
        let finest = open_border(&levels[0]);
        for level in &levels[1..] {
            assert_eq!(open_border(level), finest);
        }
    }

    #[test]
    fn a_group_merges_its_chunks_coarse_levels_and_keeps_the_outer_border() {
        let (positions, normals, uvs, indices) = generate_scan_grid(160, 40.0);
        let part = Part { positions, normals, uvs, indices, ..Part::default() };
        let chunks = chunk_triangles(&part.positions, &part.indices, 4_000);
        let coarsest: Vec<Level> =
            chunks[..GROUP_CHUNKS.min(chunks.len())].iter().map(|c| level_chain(&part, c).pop().unwrap()).collect();
        let total: usize = coarsest.iter().map(|l| l.indices.len() / 3).sum();
        let levels = group_chain(&coarsest);
        assert_eq!(levels[0].indices.len() / 3, total, "level 0 is the chunks' coarsest levels merged");
        assert!(
            levels[0].positions.len() < coarsest.iter().map(|l| l.positions.len()).sum::<usize>(),
            "shared border vertices are welded"
        );
        assert!(levels.len() >= 2, "once welded, the seams simplify: {} levels", levels.len());
        let outer = open_border(&levels[0]);
        for level in &levels[1..] {
            assert_eq!(open_border(level), outer, "the group's outer border stays: no cracks with its neighbours");
            assert!(level.error >= levels[0].error);
        }
    }

    #[test]
    fn the_coarsest_level_whose_error_is_invisible_is_picked() {
        let errors = [0.0, 0.01, 0.04, 0.2];
        // 1000 px per metre at 1 m: 0.01 m is 10 px at 1 m, 1 px at 10 m.
        assert_eq!(pick_level(&errors, 1.0, 1000.0, 1.0), 0);
        assert_eq!(pick_level(&errors, 10.0, 1000.0, 1.0), 1);
        assert_eq!(pick_level(&errors, 40.0, 1000.0, 1.0), 2);
        assert_eq!(pick_level(&errors, 10_000.0, 1000.0, 1.0), 3);
        assert_eq!(texture_level_for_limit(&[[16384, 8192], [8192, 4096], [4096, 2048]], 8192), Some(1));
        assert_eq!(texture_level_for_limit(&[[16384, 8192]], 4096), None);
    }
}
