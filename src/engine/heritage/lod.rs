//! Scanned meshes in the venue: each scene `meshes` entry is imported (or found in the cache)
//! and read on a thread of its own; then every frame each chunk shows the coarsest of its
//! levels whose geometric error covers at most `max_error_px` pixels from the visitor's eye.
//! Chunks outside the view are culled by Bevy like any mesh.

use std::collections::HashSet;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, mpsc};

use bevy::asset::RenderAssetUsages;
use bevy::image::Image;
use bevy::mesh::{Indices, PrimitiveTopology};
use bevy::prelude::*;
use bevy::render::render_resource::{Extent3d, TextureDimension, TextureFormat};
use bevy::render::renderer::RenderDevice;

use super::cloud::ScanPhase;
use super::material::{AlphaUse, MaterialDesc, Sampling, Wrap};
use super::measure::PickTriangles;
use super::mesh::{self, Level, MeshIndex};
use crate::engine::command::CurrentScene;
use crate::engine::command::VenueAssets;
use crate::engine::environment::{VenueCamera, leading_view};
use crate::engine::rest::Rest;
use crate::engine::scene::venue::to_transform;
use crate::engine::schedule::VenueSystems;
use crate::model::scene::format::MeshScanDef;

/// Streams nothing but picks levels: all levels of a scan are on the GPU (about twice the
/// finest level's memory); per-chunk choice keeps what is drawn small.
pub struct MeshLodPlugin;

/// A mesh being imported needs frames (to take it when ready).
fn keep_awake_while_importing(scans: Query<&MeshScanStatus>, mut rest: ResMut<Rest>) {
    if scans.iter().any(|s| s.phase == ScanPhase::Importing) {
        rest.busy();
    }
}

impl Plugin for MeshLodPlugin {
    fn build(&self, app: &mut App) {
        app.add_systems(
            Update,
            sync_mesh_scans.run_if(resource_exists_and_changed::<CurrentScene>).in_set(VenueSystems::Simulate),
        )
        .add_systems(Update, (receive_mesh_scans, keep_awake_while_importing).in_set(VenueSystems::Present))
        // With this frame's camera, before visibility is worked out.
        .add_systems(
            PostUpdate,
            pick_levels
                .after(bevy::camera::visibility::VisibilitySystems::UpdateFrusta)
                .before(bevy::camera::visibility::VisibilitySystems::VisibilityPropagate),
        );
    }
}

/// A scanned mesh as the scene placed it.
#[derive(Component, Debug, Clone)]
#[require(Transform, Visibility, MeshScanStatus)]
pub struct MeshScan {
    /// Its scene entry.
    pub def: MeshScanDef,
}

/// How a scanned mesh is doing.
#[derive(Component, Debug, Clone, Default)]
pub struct MeshScanStatus {
    /// Import or showing.
    pub phase: ScanPhase,
    /// Triangles in the scan.
    pub source_triangles: u64,
    /// Triangles drawn this frame (chunks in view or not: Bevy culls after).
    pub drawn_triangles: u64,
    /// Chunks.
    pub chunks: usize,
    /// Chunks showing each level (index = level), not counting chunks drawn by their group.
    pub levels_shown: Vec<usize>,
    /// Groups drawn as one mesh in place of their chunks.
    pub groups_shown: usize,
    /// What the import left out or degraded.
    pub notes: Vec<String>,
}

/// One chunk: its levels' entities and errors.
#[derive(Component, Debug, Clone)]
pub struct LodChunk {
    levels: Vec<(Entity, f32, u32)>,
    centre: Vec3,
    radius: f32,
    shown: Option<usize>,
}

/// A group of neighbouring chunks and its merged levels.
#[derive(Component, Debug, Clone)]
pub struct LodGroup {
    chunks: Vec<Entity>,
    levels: Vec<(Entity, f32, u32)>,
    centre: Vec3,
    radius: f32,
}

struct LoadedPart {
    /// Each texture's copies, finest first.
    textures: Vec<Vec<image::RgbaImage>>,
    chunks: Vec<(Vec3, Vec3, Vec<Level>)>,
    groups: Vec<(u32, u32, Vec3, Vec3, Vec<Level>)>,
}

type Loaded = Result<(MeshIndex, Vec<LoadedPart>), String>;

#[derive(Component)]
struct MeshScanLoad(Mutex<mpsc::Receiver<Loaded>>);

fn sync_mesh_scans(
    mut commands: Commands,
    scene: Res<CurrentScene>,
    assets: Res<VenueAssets>,
    existing: Query<(Entity, &MeshScan)>,
) {
    let mut kept = HashSet::new();
    for (entity, scan) in &existing {
        if scene.0.meshes.contains(&scan.def) && kept.insert(scan.def.name.clone()) {
            continue;
        }
        commands.entity(entity).despawn();
    }
    for def in scene.0.meshes.iter().filter(|d| !kept.contains(&d.name)) {
        let mut status = MeshScanStatus::default();
        let mut entity = commands.spawn((Name::new(def.name.clone()), to_transform(&def.transform)));
        match assets.resolve_entry(&def.path) {
            Ok(path) => {
                entity.insert(MeshScanLoad(Mutex::new(start_load(def.name.clone(), path))));
            }
            Err(e) => {
                error!("mesh {:?}: {e}", def.name);
                status.phase = ScanPhase::Failed(e.to_string());
            }
        }
        entity.insert((MeshScan { def: def.clone() }, status));
    }
}

/// Imports (or opens) the scan and reads every level and texture, off the frame.
fn start_load(name: String, path: PathBuf) -> mpsc::Receiver<Loaded> {
    let (send, receive) = mpsc::channel();
    let spawned = std::thread::Builder::new().name(format!("mesh {name}")).spawn(move || {
        let result = (|| {
            let (dir, index) = if path.is_dir() {
                (path.clone(), mesh::read_mesh_index(&path).map_err(|e| e.to_string())?)
            } else {
                let cache_root = path.parent().unwrap_or(&path).join(".parvis-cache");
                let imported = mesh::import_mesh(&path, &cache_root, &Arc::default()).map_err(|e| e.to_string())?;
                (imported.dir, imported.index)
            };
            let mut parts = Vec::new();
            for part in &index.parts {
                let mut textures = Vec::new();
                for texture in &part.textures {
                    let mut copies = Vec::new();
                    for name in &texture.files {
                        let file = dir.join(name);
                        copies.push(image::open(&file).map_err(|e| format!("{}: {e}", file.display()))?.to_rgba8());
                    }
                    textures.push(copies);
                }
                let mut chunks = Vec::new();
                for chunk in &part.chunks {
                    let levels = chunk
                        .levels
                        .iter()
                        .map(|l| mesh::read_level(&dir, l))
                        .collect::<Result<Vec<_>, _>>()
                        .map_err(|e| e.to_string())?;
                    chunks.push((Vec3::from(chunk.min), Vec3::from(chunk.max), levels));
                }
                let mut groups = Vec::new();
                for group in &part.groups {
                    let levels = group
                        .levels
                        .iter()
                        .map(|l| mesh::read_level(&dir, l))
                        .collect::<Result<Vec<_>, _>>()
                        .map_err(|e| e.to_string())?;
                    groups.push((group.first, group.count, Vec3::from(group.min), Vec3::from(group.max), levels));
                }
                parts.push(LoadedPart { textures, chunks, groups });
            }
            Ok((index, parts))
        })();
        let _ = send.send(result);
    });
    if let Err(e) = spawned {
        error!("mesh {name}: cannot start its import: {e}");
    }
    receive
}

/// A level as a Bevy mesh; with tangents (MikkTSpace, as glTF asks when a file has none)
/// where its material has a normal map.
fn level_mesh(level: Level, tangents: bool) -> Mesh {
    let mut mesh = Mesh::new(PrimitiveTopology::TriangleList, RenderAssetUsages::RENDER_WORLD)
        .with_inserted_attribute(Mesh::ATTRIBUTE_POSITION, level.positions)
        .with_inserted_attribute(Mesh::ATTRIBUTE_NORMAL, level.normals)
        .with_inserted_attribute(Mesh::ATTRIBUTE_UV_0, level.uvs)
        .with_inserted_indices(Indices::U32(level.indices));
    if tangents && let Err(e) = mesh.generate_tangents() {
        warn!("a scanned mesh's level has no usable tangents for its normal map: {e}");
    }
    mesh
}

fn texture_image(texture: &image::RgbaImage, srgb: bool, sampling: Sampling) -> Image {
    use bevy::image::{ImageAddressMode, ImageFilterMode, ImageSampler, ImageSamplerDescriptor};
    let mode = |wrap: Wrap| match wrap {
        Wrap::Repeat => ImageAddressMode::Repeat,
        Wrap::MirroredRepeat => ImageAddressMode::MirrorRepeat,
        Wrap::ClampToEdge => ImageAddressMode::ClampToEdge,
    };
    let mut image = Image::new(
        Extent3d { width: texture.width(), height: texture.height(), depth_or_array_layers: 1 },
        TextureDimension::D2,
        texture.as_raw().clone(),
        if srgb { TextureFormat::Rgba8UnormSrgb } else { TextureFormat::Rgba8Unorm },
        RenderAssetUsages::RENDER_WORLD,
    );
    // As Bevy's glTF loader samples the same texture: its default (linear) sampler, with the
    // file's wrap modes and filters.
    let mut sampler = ImageSamplerDescriptor::linear();
    sampler.address_mode_u = mode(sampling.wrap_u);
    sampler.address_mode_v = mode(sampling.wrap_v);
    if sampling.nearest {
        sampler.mag_filter = ImageFilterMode::Nearest;
    }
    if sampling.min_nearest {
        sampler.min_filter = ImageFilterMode::Nearest;
    }
    image.sampler = ImageSampler::Descriptor(sampler);
    image
}

/// The material a level is drawn with, as Bevy's glTF path makes it from the same
/// properties; `texture(slot)` gives the texture for a slot at this level.
fn level_material(desc: &MaterialDesc, texture: impl Fn(Option<usize>) -> Option<Handle<Image>>) -> StandardMaterial {
    let [r, g, b, a] = desc.base_colour;
    let [er, eg, eb] = desc.emissive;
    StandardMaterial {
        base_color: Color::linear_rgba(r, g, b, a),
        base_color_texture: texture(desc.base_colour_texture),
        perceptual_roughness: desc.roughness,
        metallic: desc.metallic,
        metallic_roughness_texture: texture(desc.metallic_roughness_texture),
        normal_map_texture: texture(desc.normal_texture),
        occlusion_texture: texture(desc.occlusion_texture),
        emissive: LinearRgba::rgb(er, eg, eb),
        emissive_texture: texture(desc.emissive_texture),
        double_sided: desc.double_sided,
        cull_mode: if desc.double_sided { None } else { Some(bevy::render::render_resource::Face::Back) },
        unlit: desc.unlit,
        alpha_mode: match desc.alpha {
            AlphaUse::Opaque => AlphaMode::Opaque,
            AlphaUse::Mask(cutoff) => AlphaMode::Mask(cutoff),
            AlphaUse::Blend => AlphaMode::Blend,
        },
        uv_transform: desc.uv_transform.map_or(bevy::math::Affine2::IDENTITY, |t| {
            bevy::math::Affine2::from_scale_angle_translation(t.scale.into(), -t.rotation, t.offset.into())
        }),
        ..default()
    }
}

#[allow(clippy::too_many_arguments, reason = "a Bevy system: each argument is a query or resource it needs")]
fn receive_mesh_scans(
    mut commands: Commands,
    mut scans: Query<(Entity, &MeshScan, &MeshScanLoad, &mut MeshScanStatus)>,
    mut meshes: ResMut<Assets<Mesh>>,
    mut materials: ResMut<Assets<StandardMaterial>>,
    mut images: ResMut<Assets<Image>>,
    device: Option<Res<RenderDevice>>,
) {
    for (entity, scan, load, mut status) in &mut scans {
        let received = load.0.lock().expect("load channel").try_recv();
        let (index, parts) = match received {
            Err(mpsc::TryRecvError::Empty) => continue,
            Err(mpsc::TryRecvError::Disconnected) => {
                status.phase = ScanPhase::Failed("the import stopped without a result".into());
                commands.entity(entity).remove::<MeshScanLoad>();
                continue;
            }
            Ok(Err(e)) => {
                error!("mesh {:?}: {e}", scan.def.name);
                status.phase = ScanPhase::Failed(e);
                commands.entity(entity).remove::<MeshScanLoad>();
                continue;
            }
            Ok(Ok(loaded)) => loaded,
        };
        commands.entity(entity).remove::<MeshScanLoad>();
        let limit = device.as_ref().map_or(u32::MAX, |d| d.limits().max_texture_dimension_2d);
        // What the import left out (a texture it could not read, say) is flagged, not hidden.
        for note in &index.notes {
            warn!("mesh {:?}: {note}", scan.def.name);
        }
        let mut notes = index.notes.clone();
        let mut chunks = 0;
        for (stored, part) in index.parts.iter().zip(parts) {
            // A texture too large for this adapter: the finest level that fits, said once.
            let mut first = Vec::new();
            for texture in &stored.textures {
                let fits = mesh::texture_level_for_limit(&texture.sizes, limit);
                if fits != Some(0) {
                    let note = format!(
                        "a {:?} texture is over this adapter's {limit}-pixel limit; a smaller level is used",
                        texture.sizes[0]
                    );
                    warn!("mesh {:?}: {note}", scan.def.name);
                    notes.push(note);
                }
                first.push(fits.unwrap_or(texture.sizes.len().saturating_sub(1)));
            }
            // Copies over the adapter's limit are never made images: Bevy uploads every image
            // asset, used or not, and wgpu would refuse one that large.
            let handles: Vec<Vec<Option<Handle<Image>>>> = part
                .textures
                .iter()
                .zip(&stored.textures)
                .zip(&first)
                .map(|((copies, kept), first)| {
                    copies
                        .iter()
                        .enumerate()
                        .map(|(i, c)| (i >= *first).then(|| images.add(texture_image(c, kept.srgb, kept.sampling))))
                        .collect()
                })
                .collect();
            let tangents = stored.material.normal_texture.is_some();
            let level_materials: Vec<Handle<StandardMaterial>> =
                (0..part.chunks.iter().map(|c| c.2.len()).max().unwrap_or(1).max(1))
                    .map(|level| {
                        let texture = |slot: Option<usize>| {
                            let copies = handles.get(slot?)?;
                            copies.get(level.max(first[slot?]).min(copies.len().checked_sub(1)?))?.clone()
                        };
                        let mut material = level_material(&stored.material, texture);
                        if scan.def.one_sided {
                            material.double_sided = false;
                            material.cull_mode = Some(bevy::render::render_resource::Face::Back);
                        }
                        materials.add(material)
                    })
                    .collect();
            let mut chunk_entities = Vec::new();
            for (min, max, levels) in part.chunks {
                let errors: Vec<(f32, u32)> = levels.iter().map(|l| (l.error, (l.indices.len() / 3) as u32)).collect();
                let chunk = commands
                    .spawn((
                        Name::new(format!("{} chunk {chunks}", scan.def.name)),
                        Transform::IDENTITY,
                        Visibility::Inherited,
                        ChildOf(entity),
                    ))
                    .id();
                let mut entries = Vec::new();
                for (i, (level, (error, triangles))) in levels.into_iter().zip(errors).enumerate() {
                    // The measuring tape picks on the level shown: a copy of its triangles.
                    let pick = PickTriangles {
                        positions: Arc::new(level.positions.iter().map(|p| Vec3::from(*p)).collect()),
                        indices: Arc::new(level.indices.clone()),
                        error,
                    };
                    let child = commands
                        .spawn((
                            pick,
                            Mesh3d(meshes.add(level_mesh(level, tangents))),
                            MeshMaterial3d(level_materials[i.min(level_materials.len() - 1)].clone()),
                            Transform::IDENTITY,
                            Visibility::Hidden,
                            ChildOf(chunk),
                        ))
                        .id();
                    entries.push((child, error, triangles));
                }
                commands.entity(chunk).insert(LodChunk {
                    levels: entries,
                    centre: (min + max) / 2.0,
                    radius: (max - min).length() / 2.0,
                    shown: None,
                });
                chunk_entities.push(chunk);
                chunks += 1;
            }
            for (first, count, min, max, levels) in part.groups {
                let members = chunk_entities
                    .get(first as usize..(first + count) as usize)
                    .map(<[Entity]>::to_vec)
                    .unwrap_or_default();
                let group = commands
                    .spawn((
                        Name::new(format!("{} group {first}", scan.def.name)),
                        Transform::IDENTITY,
                        Visibility::Inherited,
                        ChildOf(entity),
                    ))
                    .id();
                let mut entries = Vec::new();
                for level in levels {
                    let (error, triangles) = (level.error, (level.indices.len() / 3) as u32);
                    let pick = PickTriangles {
                        positions: Arc::new(level.positions.iter().map(|p| Vec3::from(*p)).collect()),
                        indices: Arc::new(level.indices.clone()),
                        error,
                    };
                    // A group stands for its chunks' coarsest levels: it uses the coarsest material.
                    let material = level_materials[level_materials.len() - 1].clone();
                    let child = commands
                        .spawn((
                            pick,
                            Mesh3d(meshes.add(level_mesh(level, tangents))),
                            MeshMaterial3d(material),
                            Transform::IDENTITY,
                            Visibility::Hidden,
                            ChildOf(group),
                        ))
                        .id();
                    entries.push((child, error, triangles));
                }
                commands.entity(group).insert(LodGroup {
                    chunks: members,
                    levels: entries,
                    centre: (min + max) / 2.0,
                    radius: (max - min).length() / 2.0,
                });
            }
        }
        info!("mesh {:?}: {} triangles in {chunks} chunks", scan.def.name, index.triangles);
        *status =
            MeshScanStatus { phase: ScanPhase::Ready, source_triangles: index.triangles, chunks, notes, ..default() };
    }
}

fn pick_levels(
    cameras: Query<(&Camera, &GlobalTransform, &Projection), With<VenueCamera>>,
    mut scans: Query<(&MeshScan, &GlobalTransform, &mut MeshScanStatus, &Children)>,
    mut chunks: Query<(&mut LodChunk, &mut Visibility)>,
    groups: Query<&LodGroup>,
    mut visibility: Query<&mut Visibility, Without<LodChunk>>,
) {
    let Some((camera, eye, projection)) = leading_view(cameras.iter(), |(c, ..)| c) else { return };
    let fov = match projection {
        Projection::Perspective(p) => p.fov,
        _ => std::f32::consts::FRAC_PI_4,
    };
    let height = camera.physical_viewport_size().map_or(720.0, |s| s.y as f32);
    let pixels_per_metre_at_1m = height / (2.0 * (fov / 2.0).tan());
    let eye = eye.translation();
    for (scan, transform, mut status, children) in &mut scans {
        let scale = transform.scale().abs().max_element();
        let distance_to =
            |centre: Vec3, radius: f32| (transform.transform_point(centre).distance(eye) - radius * scale).max(0.01);
        let show = |visibility: &mut Query<&mut Visibility, Without<LodChunk>>,
                    levels: &[(Entity, f32, u32)],
                    shown: Option<usize>| {
            for (i, (entity, _, _)) in levels.iter().enumerate() {
                if let Ok(mut v) = visibility.get_mut(*entity) {
                    v.set_if_neq(if Some(i) == shown { Visibility::Inherited } else { Visibility::Hidden });
                }
            }
        };
        let mut drawn = 0u64;
        let mut groups_shown = 0;
        // A group stands in for its chunks when even its merged coarse level is invisible
        // from here: one draw instead of sixteen.
        let mut grouped = HashSet::new();
        for child in children {
            let Ok(group) = groups.get(*child) else { continue };
            let errors: Vec<f32> = group.levels.iter().map(|(_, e, _)| e * scale).collect();
            let distance = distance_to(group.centre, group.radius);
            let fits = errors.first().is_some_and(|e| e * pixels_per_metre_at_1m / distance <= scan.def.max_error_px);
            let level =
                fits.then(|| mesh::pick_level(&errors, distance, pixels_per_metre_at_1m, scan.def.max_error_px));
            show(&mut visibility, &group.levels, level);
            if let Some(level) = level {
                grouped.extend(group.chunks.iter().copied());
                drawn += u64::from(group.levels[level].2);
                groups_shown += 1;
            }
        }
        let mut histogram = Vec::new();
        for child in children {
            let Ok((mut chunk, mut chunk_visibility)) = chunks.get_mut(*child) else { continue };
            if grouped.contains(child) {
                chunk_visibility.set_if_neq(Visibility::Hidden);
                continue;
            }
            chunk_visibility.set_if_neq(Visibility::Inherited);
            let errors: Vec<f32> = chunk.levels.iter().map(|(_, e, _)| e * scale).collect();
            let level = mesh::pick_level(
                &errors,
                distance_to(chunk.centre, chunk.radius),
                pixels_per_metre_at_1m,
                scan.def.max_error_px,
            );
            if chunk.shown != Some(level) {
                show(&mut visibility, &chunk.levels, Some(level));
                chunk.shown = Some(level);
            }
            drawn += u64::from(chunk.levels[level].2);
            if histogram.len() <= level {
                histogram.resize(level + 1, 0);
            }
            histogram[level] += 1;
        }
        status.drawn_triangles = drawn;
        status.levels_shown = histogram;
        status.groups_shown = groups_shown;
    }
}
