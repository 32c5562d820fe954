//! Point clouds in the venue: each scene `clouds` entry is imported (or found in the cache) on
//! a thread of its own, then streamed node by node: every frame the octree is cut by
//! screen-space error, view frustum and point budget, missing nodes load on the I/O pool, and
//! nodes no longer drawn stay cached until the memory budget needs their room.

use std::collections::{HashMap, HashSet};
use std::path::PathBuf;
use std::sync::{Arc, Mutex, mpsc};

use bevy::camera::primitives::{Aabb, Frustum};
use bevy::light::{NotShadowCaster, NotShadowReceiver};
use bevy::prelude::*;
use bevy::tasks::{IoTaskPool, Task, block_on};

use super::cache::{self, CacheError, CloudIndex};
use super::edl::{EyeDomeLighting, EyeDomeLightingPlugin};
use super::measure::PickPoints;
use super::octree::{self, LodView, OctreeConfig};
use super::points::{
    GPU_BYTES_PER_POINT, PointMaterial, PointMaterialPlugin, PointSettings, colouring_index, node_mesh,
};
use crate::engine::command::CurrentScene;
use crate::engine::command::VenueAssets;
use crate::engine::environment::{VenueCamera, leading_view};
use crate::engine::rest::Rest;
use crate::engine::scene::venue::to_transform;
use crate::engine::schedule::VenueSystems;
use crate::model::scene::format::CloudDef;

/// Nodes read at once per cloud: enough to keep a disk busy, few enough that the most
/// important nodes are not queued behind many others.
const MAX_IN_FLIGHT: usize = 4;
/// Largest point size, pixels.
const MAX_POINT_PX: f32 = 24.0;
/// Memory one loaded point takes: its quad on the GPU, and its position kept for the
/// measuring tape. Memory budgets count in these.
pub const BYTES_PER_POINT: u64 = GPU_BYTES_PER_POINT + 12;

/// Streams the venue's point clouds and draws them with eye-dome lighting.
pub struct PointCloudPlugin;

impl Plugin for PointCloudPlugin {
    fn build(&self, app: &mut App) {
        app.add_plugins((PointMaterialPlugin, EyeDomeLightingPlugin))
            .add_systems(
                Update,
                sync_clouds.run_if(resource_exists_and_changed::<CurrentScene>).in_set(VenueSystems::Simulate),
            )
            .add_systems(Update, (receive_imports, keep_awake_while_loading).in_set(VenueSystems::Present))
            // With this frame's camera: after transforms and frusta are updated, before
            // visibility is worked out, so what is chosen is what this frame draws.
            .add_systems(
                PostUpdate,
                (stream_clouds, sync_eye_dome_lighting)
                    .chain()
                    .after(bevy::camera::visibility::VisibilitySystems::UpdateFrusta)
                    .before(bevy::camera::visibility::VisibilitySystems::VisibilityPropagate),
            );
    }
}

/// A cloud being imported, or with nodes to load for the view, needs frames.
fn keep_awake_while_loading(clouds: Query<&CloudStatus>, mut rest: ResMut<Rest>) {
    if clouds.iter().any(|c| c.phase == ScanPhase::Importing || c.missing_nodes > 0) {
        rest.busy();
    }
}

/// A point cloud as the scene file placed it.
#[derive(Component, Debug, Clone)]
#[require(Transform, Visibility, CloudStatus)]
pub struct PointCloud {
    /// Its scene entry.
    pub def: CloudDef,
}

/// Marks the entity of one loaded node.
#[derive(Component, Debug, Clone, Copy)]
pub struct CloudNode {
    /// Index of the node in the cloud's octree.
    pub node: u32,
}

/// Where a cloud is.
#[derive(Debug, Clone, Default, PartialEq)]
pub enum ScanPhase {
    /// Being imported or read from the cache; the text says which step.
    #[default]
    Importing,
    /// Streaming.
    Ready,
    /// Could not be imported; the reason.
    Failed(String),
}

/// How a cloud's streaming is going, for the HUD, logs, tests and benchmarks.
#[derive(Component, Debug, Clone, Default)]
pub struct CloudStatus {
    /// Import or streaming.
    pub phase: ScanPhase,
    /// The import step under way.
    pub step: String,
    /// Nodes in the octree.
    pub nodes: usize,
    /// Points in the cloud (as imported).
    pub total_points: u64,
    /// Nodes chosen to draw this frame.
    pub selected_nodes: usize,
    /// Of those, the ones not loaded yet.
    pub missing_nodes: usize,
    /// Points drawn.
    pub drawn_points: u64,
    /// Nodes loaded, drawn or cached.
    pub resident_nodes: usize,
    /// Their points.
    pub resident_points: u64,
    /// Their memory, with the nodes being read.
    pub resident_bytes: u64,
    /// The memory budget, bytes.
    pub budget_bytes: u64,
    /// Nodes being read.
    pub in_flight: usize,
    /// Nodes loaded since the start.
    pub loaded: u64,
    /// Nodes dropped for room since the start.
    pub evicted: u64,
    /// Node reads that failed; the last error.
    pub failed_reads: u64,
    /// The last read error.
    pub last_error: Option<String>,
}

impl CloudStatus {
    /// Whether everything chosen is drawn and nothing is loading: the picture is final.
    pub fn settled(&self) -> bool {
        self.phase == ScanPhase::Ready && self.missing_nodes == 0 && self.in_flight == 0
    }
}

type ImportResult = Result<(PathBuf, CloudIndex), String>;

#[derive(Component)]
struct CloudImport {
    done: Mutex<mpsc::Receiver<ImportResult>>,
    progress: Arc<super::scan::Progress>,
}

struct Resident {
    entity: Entity,
    points: u64,
    last_used: u64,
}

struct LoadedNode {
    mesh: Mesh,
    positions: Arc<Vec<Vec3>>,
    min: Vec3,
    max: Vec3,
    max_intensity: u16,
}

#[derive(Component)]
struct CloudStream {
    dir: PathBuf,
    index: Arc<CloudIndex>,
    /// One per octree level: the point spacing differs.
    materials: Vec<Handle<PointMaterial>>,
    resident: HashMap<u32, Resident>,
    loading: HashMap<u32, Task<Result<LoadedNode, CacheError>>>,
    frame: u64,
}

/// Replaces the clouds whose scene entry changed, and leaves the others streaming.
fn sync_clouds(
    mut commands: Commands,
    scene: Res<CurrentScene>,
    assets: Res<VenueAssets>,
    existing: Query<(Entity, &PointCloud)>,
) {
    let mut kept = HashSet::new();
    for (entity, cloud) in &existing {
        if scene.0.clouds.contains(&cloud.def) && kept.insert(cloud.def.name.clone()) {
            continue;
        }
        commands.entity(entity).despawn();
    }
    for def in scene.0.clouds.iter().filter(|d| !kept.contains(&d.name)) {
        let mut status = CloudStatus { step: "starting".into(), ..default() };
        let mut entity = commands.spawn((Name::new(def.name.clone()), to_transform(&def.transform)));
        match assets.resolve_entry(&def.path) {
            Ok(path) => {
                let progress = Arc::new(super::scan::Progress::default());
                let done = start_import(def.name.clone(), path, progress.clone());
                entity.insert(CloudImport { done: Mutex::new(done), progress });
            }
            Err(e) => {
                error!("cloud {:?}: {e}", def.name);
                status.phase = ScanPhase::Failed(e.to_string());
            }
        }
        entity.insert((PointCloud { def: def.clone() }, status));
    }
}

/// Imports a scan into `.parvis-cache` next to it (or opens an imported folder) on a thread:
/// a large scan takes minutes, and the venue keeps running meanwhile.
fn start_import(name: String, path: PathBuf, progress: Arc<super::scan::Progress>) -> mpsc::Receiver<ImportResult> {
    let (send, receive) = mpsc::channel();
    let spawned = std::thread::Builder::new().name(format!("import {name}")).spawn(move || {
        let result = if path.is_dir() {
            cache::read_index(&path).map(|index| (path.clone(), index)).map_err(|e| e.to_string())
        } else {
            let cache_root = path.parent().unwrap_or(&path).join(".parvis-cache");
            super::import::import(&path, &cache_root, OctreeConfig::default(), &progress)
                .map(|imported| (imported.dir, imported.index))
                .map_err(|e| e.to_string())
        };
        let _ = send.send(result);
    });
    if let Err(e) = spawned {
        error!("cloud {name}: cannot start its import: {e}");
    }
    receive
}

fn receive_imports(
    mut commands: Commands,
    mut clouds: Query<(Entity, &PointCloud, &CloudImport, &mut CloudStatus)>,
    mut materials: ResMut<Assets<PointMaterial>>,
) {
    for (entity, cloud, import, mut status) in &mut clouds {
        let receiver = import.done.lock().expect("import channel");
        let step = import.progress.step();
        let step = match import.progress.fraction() {
            Some(f) => format!("{step} {:.0} %", f * 100.0),
            None => step.to_owned(),
        };
        if status.step != step {
            status.step = step;
        }
        match receiver.try_recv() {
            Ok(Ok((dir, index)))
                if index.nodes.first().is_some_and(|root| {
                    u64::from(root.count) * BYTES_PER_POINT > u64::from(cloud.def.memory_budget_mb) << 20
                }) =>
            {
                let root = u64::from(index.nodes[0].count);
                let why = format!(
                    "its coarsest level alone ({root} points, {} MiB) is over the memory budget of {} MiB; raise memory_budget_mb or import with a smaller --points-per-node",
                    (root * BYTES_PER_POINT) >> 20,
                    cloud.def.memory_budget_mb
                );
                error!("cloud {:?}: {why} ({})", cloud.def.name, dir.display());
                status.phase = ScanPhase::Failed(why);
                commands.entity(entity).remove::<CloudImport>();
            }
            Ok(Ok((dir, index))) => {
                info!(
                    "cloud {:?}: {} points in {} nodes from {}",
                    cloud.def.name,
                    index.points,
                    index.nodes.len(),
                    dir.display()
                );
                let levels = index.nodes.iter().map(|n| n.depth).max().unwrap_or(0);
                let root_size = index.nodes.first().map_or(1.0, |n| n.size);
                let def = &cloud.def;
                let materials = (0..=levels)
                    .map(|depth| {
                        materials.add(PointMaterial {
                            settings: PointSettings {
                                colouring: colouring_index(def.colouring),
                                min_px: def.point_size,
                                max_px: MAX_POINT_PX.max(def.point_size),
                                spacing: octree::spacing(&octree::Cube {
                                    min: [0.0; 3],
                                    size: root_size / (1u32 << depth.min(31)) as f32,
                                }),
                                low: 0.0,
                                high: 1.0,
                                intensity_scale: 1.0 / 65_535.0,
                                has_colour: u32::from(index.attributes.colour),
                            },
                        })
                    })
                    .collect();
                status.phase = ScanPhase::Ready;
                status.step = "streaming".into();
                status.nodes = index.nodes.len();
                status.total_points = index.points;
                commands.entity(entity).remove::<CloudImport>().insert(CloudStream {
                    dir,
                    index: Arc::new(index),
                    materials,
                    resident: HashMap::new(),
                    loading: HashMap::new(),
                    frame: 0,
                });
            }
            Ok(Err(e)) => {
                error!("cloud {:?}: {e}", cloud.def.name);
                status.phase = ScanPhase::Failed(e);
                commands.entity(entity).remove::<CloudImport>();
            }
            Err(mpsc::TryRecvError::Empty) => {}
            Err(mpsc::TryRecvError::Disconnected) => {
                status.phase = ScanPhase::Failed("the import stopped without a result".into());
                commands.entity(entity).remove::<CloudImport>();
            }
        }
    }
}

/// What streaming does this frame.
#[derive(Debug, Default, PartialEq)]
struct Plan {
    /// Nodes to start reading, most important first.
    load: Vec<u32>,
    /// Resident nodes to drop.
    evict: Vec<u32>,
}

/// Decides loads and evictions: selected nodes load in order while fewer than
/// `max_in_flight` are being read and their memory fits in `budget_bytes`, making room by
/// dropping the least recently used nodes that are not selected. A selected node is never
/// dropped.
fn plan(
    selected: &[u32],
    resident: &HashMap<u32, (u64, u64)>,
    loading: &HashMap<u32, u64>,
    points_of: impl Fn(u32) -> u64,
    budget_bytes: u64,
    max_in_flight: usize,
) -> Plan {
    let bytes = |points: u64| points * BYTES_PER_POINT;
    let mut used: u64 =
        resident.values().map(|(p, _)| bytes(*p)).sum::<u64>() + loading.values().map(|p| bytes(*p)).sum::<u64>();
    let wanted: HashSet<u32> = selected.iter().copied().collect();
    let mut spare: Vec<(u64, u32)> =
        resident.iter().filter(|(n, _)| !wanted.contains(n)).map(|(n, (_, last))| (*last, *n)).collect();
    spare.sort_unstable();
    let mut spare = spare.into_iter();
    let mut plan = Plan::default();
    let mut in_flight = loading.len();
    for node in selected {
        if in_flight >= max_in_flight {
            break;
        }
        if resident.contains_key(node) || loading.contains_key(node) {
            continue;
        }
        if plan.load.contains(node) {
            continue;
        }
        let need = bytes(points_of(*node));
        // Make room only if it then fits: the cache is not emptied for nothing.
        let mut freed = 0;
        let mut victims = Vec::new();
        while used + need > budget_bytes + freed {
            let Some((_, victim)) = spare.next() else { break };
            freed += bytes(resident[&victim].0);
            victims.push(victim);
        }
        if used + need > budget_bytes + freed {
            break;
        }
        used -= freed;
        plan.evict.extend(victims);
        used += need;
        in_flight += 1;
        plan.load.push(*node);
    }
    // Over budget with nothing to load (a smaller budget after a reload): trim the cache.
    while used > budget_bytes {
        let Some((_, victim)) = spare.next() else { break };
        used -= bytes(resident[&victim].0);
        plan.evict.push(victim);
    }
    plan
}

fn stream_clouds(
    mut commands: Commands,
    cameras: Query<(&Camera, &GlobalTransform, &Projection, &Frustum), With<VenueCamera>>,
    mut clouds: Query<(Entity, &PointCloud, &GlobalTransform, &mut CloudStream, &mut CloudStatus)>,
    mut visibility: Query<&mut Visibility, With<CloudNode>>,
    mut meshes: ResMut<Assets<Mesh>>,
    mut materials: ResMut<Assets<PointMaterial>>,
) {
    let camera = leading_view(cameras.iter(), |(c, ..)| c);
    for (entity, cloud, transform, mut stream, mut status) in &mut clouds {
        let stream = &mut *stream;
        stream.frame += 1;
        let def = &cloud.def;
        let affine = transform.affine();
        let budget_bytes = u64::from(def.memory_budget_mb) << 20;

        // Finished reads first: their room counts in this frame's plan.
        let finished: Vec<u32> = stream.loading.iter().filter(|(_, t)| t.is_finished()).map(|(n, _)| *n).collect();
        for node in finished {
            let task = stream.loading.remove(&node).expect("listed above");
            match block_on(task) {
                Ok(loaded) => {
                    let depth = stream.index.nodes[node as usize].depth as usize;
                    if node == 0 {
                        tune_materials(&stream.materials, &mut materials, &loaded, &affine);
                    }
                    let spacing = octree::spacing(&super::octree::LodNode::cube(&stream.index.nodes[node as usize]));
                    let child = commands
                        .spawn((
                            Name::new(format!("{} node {node}", def.name)),
                            CloudNode { node },
                            PickPoints { positions: loaded.positions, spacing },
                            Mesh3d(meshes.add(loaded.mesh)),
                            MeshMaterial3d(stream.materials[depth.min(stream.materials.len() - 1)].clone()),
                            Transform::IDENTITY,
                            Visibility::Hidden,
                            NotShadowCaster,
                            NotShadowReceiver,
                            ChildOf(entity),
                        ))
                        .id();
                    let points = u64::from(stream.index.nodes[node as usize].count);
                    stream.resident.insert(node, Resident { entity: child, points, last_used: 0 });
                    status.loaded += 1;
                }
                Err(e) => {
                    status.failed_reads += 1;
                    if status.last_error.as_deref() != Some(&e.to_string()) {
                        error!("cloud {:?}: {e}", def.name);
                    }
                    status.last_error = Some(e.to_string());
                }
            }
        }

        let selected = match camera {
            Some((camera, eye, projection, frustum)) => {
                let eye = affine.inverse().transform_point3(eye.translation());
                let fov_y = match projection {
                    Projection::Perspective(p) => p.fov,
                    _ => std::f32::consts::FRAC_PI_4,
                };
                let height = camera.physical_viewport_size().map_or(720.0, |s| s.y as f32);
                let point_budget = def.point_budget.min(budget_bytes / BYTES_PER_POINT);
                let view = LodView { eye: eye.to_array(), fov_y, height, max_error_px: def.max_error_px, point_budget };
                octree::select(&stream.index.nodes, &view, |cube| {
                    let min = Vec3::from(cube.min);
                    frustum.intersects_obb(&Aabb::from_min_max(min, min + Vec3::splat(cube.size)), &affine, true, false)
                })
            }
            None => Vec::new(),
        };

        let frame = stream.frame;
        let wanted: HashSet<u32> = selected.iter().copied().collect();
        for (node, resident) in stream.resident.iter_mut() {
            let shown = wanted.contains(node);
            if shown {
                resident.last_used = frame;
            }
            if let Ok(mut v) = visibility.get_mut(resident.entity) {
                v.set_if_neq(if shown { Visibility::Inherited } else { Visibility::Hidden });
            }
        }

        let index = stream.index.clone();
        let points_of = |n: u32| u64::from(index.nodes[n as usize].count);
        let resident: HashMap<u32, (u64, u64)> =
            stream.resident.iter().map(|(n, r)| (*n, (r.points, r.last_used))).collect();
        let loading: HashMap<u32, u64> = stream.loading.keys().map(|n| (*n, points_of(*n))).collect();
        let todo = plan(&selected, &resident, &loading, points_of, budget_bytes, MAX_IN_FLIGHT);
        for node in todo.evict {
            if let Some(r) = stream.resident.remove(&node) {
                commands.entity(r.entity).despawn();
                status.evicted += 1;
            }
        }
        for node in todo.load {
            let (dir, index) = (stream.dir.clone(), stream.index.clone());
            let task = IoTaskPool::get().spawn(async move { read_node(&dir, &index, node) });
            stream.loading.insert(node, task);
        }

        status.selected_nodes = selected.len();
        status.missing_nodes = selected.iter().filter(|n| !stream.resident.contains_key(n)).count();
        status.drawn_points = selected.iter().filter(|n| stream.resident.contains_key(n)).map(|n| points_of(*n)).sum();
        status.resident_nodes = stream.resident.len();
        status.resident_points = stream.resident.values().map(|r| r.points).sum();
        status.in_flight = stream.loading.len();
        status.resident_bytes =
            (status.resident_points + stream.loading.keys().map(|n| points_of(*n)).sum::<u64>()) * BYTES_PER_POINT;
        status.budget_bytes = budget_bytes;
    }
}

fn read_node(dir: &std::path::Path, index: &CloudIndex, node: u32) -> Result<LoadedNode, CacheError> {
    let points = cache::read_node(dir, index, node as usize)?;
    let (mut min, mut max) = (Vec3::splat(f32::MAX), Vec3::splat(f32::MIN));
    let mut max_intensity = 0;
    for p in &points {
        min = min.min(Vec3::from(p.position));
        max = max.max(Vec3::from(p.position));
        max_intensity = max_intensity.max(p.intensity);
    }
    let positions = Arc::new(points.iter().map(|p| Vec3::from(p.position)).collect());
    Ok(LoadedNode { mesh: node_mesh(&points), positions, min, max, max_intensity })
}

/// The root is an even sample of the whole scan: its height range and brightest return set
/// the elevation ramp and the intensity scale of every level.
fn tune_materials(
    handles: &[Handle<PointMaterial>],
    materials: &mut Assets<PointMaterial>,
    root: &LoadedNode,
    affine: &bevy::math::Affine3A,
) {
    let corners = (0..8).map(|i| {
        let pick = |bit: usize, a: f32, b: f32| if i >> bit & 1 == 1 { b } else { a };
        affine.transform_point3(Vec3::new(
            pick(0, root.min.x, root.max.x),
            pick(1, root.min.y, root.max.y),
            pick(2, root.min.z, root.max.z),
        ))
    });
    let (low, high) = corners.fold((f32::MAX, f32::MIN), |(lo, hi), c| (lo.min(c.y), hi.max(c.y)));
    for handle in handles {
        if let Some(mut material) = materials.get_mut(handle) {
            material.settings.low = low;
            material.settings.high = high;
            material.settings.intensity_scale = 1.0 / f32::from(root.max_intensity.max(1));
        }
    }
}

/// Cameras of the venue get eye-dome lighting while a cloud asks for it.
fn sync_eye_dome_lighting(
    mut commands: Commands,
    clouds: Query<(&PointCloud, &CloudStatus)>,
    cameras: Query<(Entity, Has<EyeDomeLighting>), With<VenueCamera>>,
) {
    let wanted = clouds.iter().any(|(c, s)| c.def.eye_dome_lighting && s.phase == ScanPhase::Ready);
    for (camera, has) in &cameras {
        if wanted && !has {
            commands.entity(camera).insert(EyeDomeLighting::default());
        } else if !wanted && has {
            // The pass's observer gives the camera its own anti-aliasing back.
            commands.entity(camera).remove::<EyeDomeLighting>();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn resident(entries: &[(u32, u64, u64)]) -> HashMap<u32, (u64, u64)> {
        entries.iter().map(|(n, p, last)| (*n, (*p, *last))).collect()
    }

    #[test]
    fn loads_follow_priority_and_in_flight_limit() {
        let p = plan(&[0, 1, 2, 3, 4, 5], &resident(&[(0, 100, 1)]), &HashMap::from([(1, 100)]), |_| 100, u64::MAX, 3);
        assert_eq!(p, Plan { load: vec![2, 3], evict: vec![] }, "0 is loaded, 1 is loading, two more fit in flight");
    }

    #[test]
    fn room_is_made_from_the_least_recently_used_unselected_nodes_only() {
        let per = BYTES_PER_POINT * 100;
        // Four nodes resident, budget for four: loading node 5 must drop one.
        let held = resident(&[(0, 100, 9), (7, 100, 3), (8, 100, 5), (9, 100, 8)]);
        let p = plan(&[0, 5], &held, &HashMap::new(), |_| 100, 4 * per, 4);
        assert_eq!(p, Plan { load: vec![5], evict: vec![7] }, "node 7 was used longest ago");
        // Selected nodes are never dropped: with no spare node, nothing loads.
        let p = plan(&[0, 7, 8, 9, 5], &held, &HashMap::new(), |_| 100, 4 * per, 4);
        assert_eq!(p, Plan::default());
        // A smaller budget trims the cache even with nothing to load.
        let p = plan(&[0], &held, &HashMap::new(), |_| 100, 2 * per, 4);
        assert_eq!(p, Plan { load: vec![], evict: vec![7, 8] });
    }

    #[test]
    fn nodes_being_read_count_and_nothing_is_dropped_for_a_load_that_cannot_fit() {
        let per = BYTES_PER_POINT * 100;
        // Two nodes resident, one being read, budget for four: one more fits, not two.
        let held = resident(&[(1, 100, 1), (2, 100, 2)]);
        let p = plan(&[1, 2, 5, 6, 6], &held, &HashMap::from([(3, 100)]), |_| 100, 4 * per, 8);
        assert_eq!(p, Plan { load: vec![5], evict: vec![] });
        // A node bigger than all the room there could be: nothing is evicted for it.
        let p = plan(&[9], &held, &HashMap::new(), |n| if n == 9 { 1_000 } else { 100 }, 4 * per, 8);
        assert_eq!(p, Plan::default());
    }

    #[test]
    fn memory_in_use_never_exceeds_the_budget() {
        // A walk through a made-up hierarchy: whatever is selected, resident + loading stays
        // within the budget after each plan.
        let budget = BYTES_PER_POINT * 1_000;
        let points_of = |n: u32| 50 + u64::from(n % 7) * 40;
        let mut held: HashMap<u32, (u64, u64)> = HashMap::new();
        let mut rng = crate::model::rng::SeededRng::new(7);
        for frame in 0..500u64 {
            let selected: Vec<u32> = (0..(rng.unit() * 12.0) as u32)
                .map(|_| (rng.unit() * 40.0) as u32)
                .collect::<HashSet<_>>()
                .into_iter()
                .collect();
            let p = plan(&selected, &held, &HashMap::new(), points_of, budget, 4);
            for n in p.evict {
                assert!(!selected.contains(&n), "evicted selected node {n}");
                held.remove(&n);
            }
            for n in p.load {
                held.insert(n, (points_of(n), frame));
            }
            for n in &selected {
                if let Some(r) = held.get_mut(n) {
                    r.1 = frame;
                }
            }
            let used: u64 = held.values().map(|(p, _)| p * BYTES_PER_POINT).sum();
            assert!(used <= budget, "frame {frame}: {used} bytes for a budget of {budget}");
        }
    }
}
