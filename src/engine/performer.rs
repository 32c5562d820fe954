//! Performers on the stage: humanoid avatars whose bones follow motion capture (VMC, from the
//! edge) or a recorded performance. Capture arrives at 30–60 Hz and is drawn at the display's
//! rate, so every bone eases toward its latest capture through a one-euro filter (smooth when
//! still, quick when moving). When the capture stops the avatar holds its last pose, then eases
//! to an idle pose; the operator sees each performer's state on the panel and `/metrics`.
//!
//! Poses are not venue commands: they are many per second and change no state a replay must
//! reach. They are recorded beside the command log instead (`--record-performers`), timed by
//! the show's clock, and a recording can drive a performer in place of the capture.

use std::collections::{BTreeMap, HashMap};
use std::fmt::Write as _;
use std::io::Write as _;
use std::net::{IpAddr, SocketAddr};
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use bevy::gltf::GltfAssetLabel;
use bevy::prelude::*;
use bevy::world_serialization::WorldAssetRoot;
use tokio::sync::mpsc;

use crate::engine::audience::hub::MetricsSection;
use crate::engine::command::{CurrentScene, VenueAssets};
use crate::engine::control::Throttle;
use crate::engine::rest::{Doorbell, Rest};
use crate::engine::scene::venue::{VenueEntity, VenueIndex, to_transform};
use crate::engine::schedule::VenueSystems;
use crate::engine::show::Shows;
use crate::model::performer::{HumanBone, OneEuro, PoseUpdate, idle_rotation, read_avatar_rig, recording};
use crate::model::scene::format::{PerformerDef, PerformerSource};

/// Pose updates waiting for the venue before the edge drops new ones (counted): poses are
/// state, so the next one replaces a dropped one.
pub const POSE_INBOX: usize = 1024;
/// Without a packet for this long, a live capture counts as lost and the avatar holds.
pub const LIVE_GAP_S: f64 = 0.5;

/// The performer systems, in the venue's frame.
#[derive(SystemSet, Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PerformerSystems {
    /// Take pose updates from the edge and recordings, in [`VenueSystems::Ingest`].
    Receive,
    /// Spawn avatars after the scene, find their bones, move them, in [`VenueSystems::Simulate`].
    Animate,
}

/// A pose update from a capture source, as the edge read it.
#[derive(Debug, Clone)]
pub struct PoseArrival {
    /// The performer's name: the edge was started for the scene of its time, and a scene
    /// loaded since may have other performers, in another order.
    pub performer: String,
    /// Who sent it.
    pub from: SocketAddr,
    /// What it says, checked.
    pub update: PoseUpdate,
    /// When it arrived.
    pub received: Instant,
}

/// Counters for `/metrics` and logs.
#[derive(Debug, Default)]
pub struct PerformerStats {
    /// Packets received from allowed addresses.
    pub packets: AtomicU64,
    /// Packets from addresses not allowed, dropped unread.
    pub refused_sources: AtomicU64,
    /// Packets that were not OSC, or over the limits.
    pub malformed: AtomicU64,
    /// VMC messages refused: unknown bones, non-finite or out-of-range transforms, wrong types.
    pub refused_messages: AtomicU64,
    /// Packets from a second sender while another drives the performer.
    pub contested: AtomicU64,
    /// Packets from a sender no performer listens to on that port.
    pub unclaimed: AtomicU64,
    /// Updates dropped because the venue's inbox was full.
    pub dropped: AtomicU64,
    /// Updates applied to avatars.
    pub applied: AtomicU64,
    /// Updates queued for the recording.
    pub recorded: AtomicU64,
    /// Updates not recorded: the recording's queue was full, or its file failed.
    pub unrecorded: AtomicU64,
}

impl MetricsSection for PerformerStats {
    fn render(&self, out: &mut String) {
        let rows: [(&str, &str, &AtomicU64); 10] = [
            ("vmc_packets_total", "VMC packets received from allowed addresses.", &self.packets),
            ("vmc_refused_sources_total", "VMC packets from addresses not allowed.", &self.refused_sources),
            ("vmc_malformed_total", "VMC packets that were not OSC or over the limits.", &self.malformed),
            ("vmc_refused_messages_total", "VMC messages refused (bone, values, types).", &self.refused_messages),
            ("vmc_contested_total", "VMC packets from a second sender for a driven performer.", &self.contested),
            ("vmc_unclaimed_total", "VMC packets no performer listens to.", &self.unclaimed),
            ("vmc_dropped_total", "Pose updates dropped on a full queue.", &self.dropped),
            ("performer_updates_applied_total", "Pose updates applied to avatars.", &self.applied),
            ("performer_updates_recorded_total", "Pose updates written to the recording.", &self.recorded),
            ("performer_updates_unrecorded_total", "Pose updates the recording could not take.", &self.unrecorded),
        ];
        for (name, help, value) in rows {
            crate::engine::audience::hub::write_counter(out, name, help, value.load(Ordering::Relaxed));
        }
    }
}

/// What the capture edge holds.
pub struct PoseHub {
    /// Updates into the venue. Bounded: a full inbox drops the update (counted).
    pub inbox: mpsc::Sender<PoseArrival>,
    /// Counters.
    pub stats: Arc<PerformerStats>,
    /// Rung with each update, so that a resting venue wakes at once.
    pub doorbell: Doorbell,
}

impl PoseHub {
    /// Queues an update for the venue; a full queue drops it (counted).
    pub fn send(&self, arrival: PoseArrival) -> bool {
        match self.inbox.try_send(arrival) {
            Ok(()) => {
                self.doorbell.ring();
                true
            }
            Err(_) => {
                self.stats.dropped.fetch_add(1, Ordering::Relaxed);
                false
            }
        }
    }
}

/// The venue's end of the capture channel.
#[derive(Resource)]
pub struct PoseLink {
    inbox: mpsc::Receiver<PoseArrival>,
    /// Counters, shared with the edge.
    pub stats: Arc<PerformerStats>,
}

/// Makes the channel: the hub for the edge, the link for the venue.
pub fn pose_link(doorbell: Doorbell) -> (Arc<PoseHub>, PoseLink) {
    let (tx, rx) = mpsc::channel(POSE_INBOX);
    let stats = Arc::new(PerformerStats::default());
    (Arc::new(PoseHub { inbox: tx, stats: stats.clone(), doorbell }), PoseLink { inbox: rx, stats })
}

/// Where a performer's capture stands.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum CaptureState {
    /// No capture yet: the idle pose.
    Waiting,
    /// Packets arriving.
    Live,
    /// The capture stopped: the last pose is held.
    Holding,
    /// The capture has been gone longer than `hold`: easing to, then standing in, the idle pose.
    Idle,
    /// Driven by a recording.
    Playing,
}

/// One bone of a bound avatar.
#[derive(Debug, Clone)]
struct BoneTrack {
    bone: HumanBone,
    entity: Entity,
    rest: Transform,
    /// Latest capture, relative to the rest rotation.
    target: Quat,
    /// What is drawn, relative to the rest rotation.
    current: Quat,
    /// Filtered angular speed toward the target, radians per second.
    speed: f32,
    /// Where the ease to idle started.
    from: Quat,
}

/// A performer's state in the venue.
#[derive(Debug, Clone)]
pub struct PerformerState {
    /// Its definition in the scene.
    pub def: PerformerDef,
    /// The avatar's root entity.
    pub entity: Option<Entity>,
    bones: Vec<BoneTrack>,
    /// Hips' captured local position, if sent.
    hips: Option<Vec3>,
    root: Option<Transform>,
    placement: Transform,
    /// Capture state.
    pub state: CaptureState,
    /// Seconds since the venue started when the last update arrived.
    last_update: Option<f64>,
    /// When the ease to idle began.
    idle_since: Option<f64>,
    /// The machine driving it, for sources that accept the first sender. By address, not
    /// port: a capture tool may send from more than one socket (liblo's `oscsend` opens one
    /// per message), but two machines are two performers' tools.
    pub driver: Option<IpAddr>,
    /// Updates in the current second and the rate over the last whole second.
    counted: (f64, u32),
    /// Updates per second, over the last second.
    pub rate: u32,
    /// Blendshape values last applied.
    pub blends: BTreeMap<String, f32>,
    /// A recording driving it: the records for this performer, by time.
    playback: Option<Vec<recording::PoseRecord>>,
    /// How many records have been applied, and the clock they were applied up to: records
    /// carry some bones each, so every one up to the clock counts, in order.
    played: (usize, f64),
    /// Why the avatar could not be bound, if it could not.
    pub problem: Option<String>,
    /// The avatar's bones by node name, read once when the scene is built.
    rig: Option<crate::model::performer::AvatarRig>,
    /// The avatar faces -Z (VRM 0.x): capture is turned half a turn to meet it.
    faces_back: bool,
    /// Venue seconds when it was spawned: an avatar not there after a while failed to load.
    spawned: f64,
    /// Where the root and hips were when the ease to idle began.
    idle_from: (Transform, Option<Vec3>),
    /// Draw the targets as they are next frame, without smoothing: a recording's first pose,
    /// or its pose after the show's clock jumped (a seek, a still render at a moment).
    snap: bool,
}

impl PerformerState {
    fn new(def: PerformerDef) -> Self {
        Self {
            placement: to_transform(&def.transform),
            def,
            entity: None,
            bones: Vec::new(),
            hips: None,
            root: None,
            state: CaptureState::Waiting,
            last_update: None,
            idle_since: None,
            driver: None,
            counted: (0.0, 0),
            rate: 0,
            blends: BTreeMap::new(),
            playback: None,
            played: (0, f64::NEG_INFINITY),
            problem: None,
            rig: None,
            faces_back: false,
            spawned: 0.0,
            idle_from: (Transform::IDENTITY, None),
            snap: false,
        }
    }

    /// Back to the rest pose before a recording is played again from its start.
    fn reset_pose(&mut self) {
        for track in &mut self.bones {
            track.target = Quat::from_array(idle_rotation(track.bone));
        }
        self.hips = None;
        self.root = None;
        self.blends.clear();
    }

    /// Each bound bone's drawn rotation relative to its rest, in glTF's axes (for tests and
    /// the operator).
    pub fn bone_rotation(&self, bone: HumanBone) -> Option<Quat> {
        self.bones.iter().find(|b| b.bone == bone).map(|b| b.current)
    }

    /// The entity a humanoid bone is drawn by.
    pub fn bone_entity(&self, bone: HumanBone) -> Option<Entity> {
        self.bones.iter().find(|b| b.bone == bone).map(|b| b.entity)
    }

    /// Whether its avatar's bones were found.
    pub fn is_bound(&self) -> bool {
        !self.bones.is_empty()
    }

    fn apply(&mut self, update: &PoseUpdate, now: f64) {
        // Capture arrives in glTF's axes for an avatar facing +Z; one facing -Z (VRM 0.x) sees
        // it turned half a turn about Y: x and z change sign, in rotations and positions.
        let turn = |q: [f32; 4], back: bool| {
            let q = Quat::from_array(q).normalize();
            if back { Quat::from_xyzw(-q.x, q.y, -q.z, q.w) } else { q }
        };
        let place = |p: [f32; 3], back: bool| if back { Vec3::new(-p[0], p[1], -p[2]) } else { Vec3::from_array(p) };
        let back = self.faces_back;
        for (bone, pose) in &update.bones {
            if let Some(track) = self.bones.iter_mut().find(|b| b.bone == *bone) {
                track.target = turn(pose.rotation, back);
            }
            if *bone == HumanBone::HIPS {
                self.hips = Some(place(pose.position, back));
            }
        }
        if let Some(root) = &update.root {
            self.root = Some(Transform {
                translation: place(root.position, back),
                rotation: turn(root.rotation, back),
                scale: Vec3::ONE,
            });
        }
        for (name, value) in &update.blends {
            if self.blends.len() < 256 || self.blends.contains_key(name) {
                self.blends.insert(name.clone(), *value);
            }
        }
        self.last_update = Some(now);
        if now - self.counted.0 >= 1.0 {
            self.rate = if now - self.counted.0 < 2.0 { self.counted.1 } else { 0 };
            self.counted = (now, 0);
        }
        self.counted.1 += 1;
    }
}

/// The venue's performers, in the scene's order.
#[derive(Resource, Debug, Default)]
pub struct Performers {
    /// One per `performers` entry.
    pub list: Vec<PerformerState>,
}

impl Performers {
    /// The performer named `name`.
    pub fn get(&self, name: &str) -> Option<&PerformerState> {
        self.list.iter().find(|p| p.def.name == name)
    }
}

/// Writes every pose update to a recording (`parvis run --record-performers FILE`), on a
/// thread of its own behind a bounded queue: the frame never waits for the disk.
#[derive(Resource)]
pub struct PerformerRecorder {
    queue: Option<std::sync::mpsc::SyncSender<Vec<u8>>>,
    thread: Option<std::thread::JoinHandle<()>>,
    buffer: Vec<u8>,
}

/// Record batches waiting for the disk before new ones are dropped (counted).
const RECORDER_QUEUE: usize = 1024;

impl PerformerRecorder {
    /// Opens the recording to append to (a new file gets the header; an existing one must be
    /// a recording: a second take in one session, after a headset handed back to the desktop,
    /// follows the first instead of replacing it). An error names the file.
    pub fn create(path: &Path) -> std::io::Result<Self> {
        use std::io::Read as _;
        let mut file = std::fs::OpenOptions::new().create(true).read(true).append(true).open(path)?;
        let mut head = Vec::new();
        (&mut file).take(recording::MAGIC.len() as u64).read_to_end(&mut head)?;
        if head.is_empty() {
            file.write_all(recording::MAGIC)?;
        } else if head != recording::MAGIC {
            return Err(std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                format!("{} is not a performance recording; choose a new file", path.display()),
            ));
        }
        let (tx, rx) = std::sync::mpsc::sync_channel::<Vec<u8>>(RECORDER_QUEUE);
        let shown = path.display().to_string();
        let thread = std::thread::Builder::new().name("parvis-recorder".into()).spawn(move || {
            let mut out = std::io::BufWriter::new(file);
            while let Ok(first) = rx.recv() {
                let written = std::iter::once(first)
                    .chain(rx.try_iter())
                    .try_for_each(|batch| out.write_all(&batch))
                    .and_then(|()| out.flush());
                if let Err(e) = written {
                    error!("performer recording {shown}: {e}; recording stopped");
                    return;
                }
            }
        })?;
        Ok(Self { queue: Some(tx), thread: Some(thread), buffer: Vec::new() })
    }

    /// Queues one record; `false` when the queue is full (the disk is behind) or the writer
    /// stopped.
    fn write(&mut self, record: &recording::PoseRecord) -> bool {
        self.buffer.clear();
        recording::write(&mut self.buffer, record);
        self.queue.as_ref().is_some_and(|q| q.try_send(self.buffer.clone()).is_ok())
    }
}

impl Drop for PerformerRecorder {
    /// What is queued reaches the file before the venue closes.
    fn drop(&mut self) {
        drop(self.queue.take());
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// Pose updates gathered into one relayed message before it goes (a record is at most
/// [`recording::MAX_RECORD`]; followers read messages up to
/// [`crate::model::net::MAX_POSES_BYTES`]).
const RELAY_MESSAGE_BYTES: usize = 128 * 1024;

/// The authority's relay of its performers' motion to its followers and shards over NATS
/// (`parvis.V.performer.poses`): each frame's applied pose updates go as one message, in the
/// recording format, so that every instance shows the same performer. Behind a bounded queue:
/// a full one drops the frame's poses (the next frame's replace them), counted.
#[derive(Resource)]
pub struct PoseRelay {
    outgoing: mpsc::Sender<Vec<u8>>,
    buffer: Vec<u8>,
    /// Frames of poses dropped on a full queue.
    pub dropped: Arc<AtomicU64>,
    said: Throttle,
}

impl PoseRelay {
    /// A relay whose NATS side publishes what arrives on `outgoing`.
    pub fn new(outgoing: mpsc::Sender<Vec<u8>>) -> Self {
        Self { outgoing, buffer: Vec::new(), dropped: Arc::default(), said: Throttle::default() }
    }

    fn flush(&mut self) {
        if self.buffer.is_empty() {
            return;
        }
        let mut message = Vec::with_capacity(recording::MAGIC.len() + self.buffer.len());
        message.extend_from_slice(recording::MAGIC);
        message.append(&mut self.buffer);
        if self.outgoing.try_send(message).is_err() {
            self.dropped.fetch_add(1, Ordering::Relaxed);
            self.said.say(|| {
                "performers' poses: NATS is behind; a frame's poses not relayed (the next replace them)".into()
            });
        }
    }
}

/// A recorded performance played onto the performers in place of their own sources
/// (`parvis run|render|replay --performers FILE`).
#[derive(Resource, Debug, Clone)]
pub struct PerformanceOverride(pub Vec<recording::PoseRecord>);

/// Performers: avatars spawned with the scene, their bones moved by capture or recordings.
pub struct PerformerPlugin;

impl Plugin for PerformerPlugin {
    fn build(&self, app: &mut App) {
        app.init_resource::<Performers>()
            .configure_sets(Update, PerformerSystems::Receive.in_set(VenueSystems::Ingest))
            .configure_sets(
                Update,
                PerformerSystems::Animate
                    .in_set(VenueSystems::Simulate)
                    .after(crate::engine::scene::spawn::rebuild_venue),
            )
            .add_systems(Update, (receive_poses, play_recordings).chain().in_set(PerformerSystems::Receive))
            .add_systems(
                Update,
                (
                    spawn_performers.run_if(resource_exists_and_changed::<CurrentScene>),
                    bind_rigs,
                    animate_performers,
                    apply_blendshapes,
                )
                    .chain()
                    .in_set(PerformerSystems::Animate),
            );
    }
}

/// The clock poses are recorded and played on: the show's when one is on the transport, else
/// the venue's.
fn performance_clock(shows: &Shows, time: &Time) -> f64 {
    shows.running.as_ref().map_or(time.elapsed_secs_f64(), |show| show.position)
}

fn spawn_performers(
    mut commands: Commands,
    scene: Res<CurrentScene>,
    assets: Option<Res<VenueAssets>>,
    asset_server: Res<AssetServer>,
    mut performers: ResMut<Performers>,
    mut index: ResMut<VenueIndex>,
    played: Option<Res<PerformanceOverride>>,
    time: Res<Time>,
) {
    // The avatars themselves went with the venue's other entities (`VenueEntity`). The files
    // below are read here, once per scene (as the scene's own files are), never per frame.
    performers.list = scene.0.performers.iter().cloned().map(PerformerState::new).collect();
    for performer in &mut performers.list {
        performer.spawned = time.elapsed_secs_f64();
        let def = &performer.def;
        let rig = assets
            .as_deref()
            .ok_or_else(|| "no assets root".to_owned())
            .and_then(|a| a.resolve(&def.avatar).map_err(|e| e.to_string()))
            .and_then(|file| std::fs::read(file).map_err(|e| e.to_string()))
            .and_then(|bytes| read_avatar_rig(&bytes, &def.bones));
        match rig {
            Ok(rig) => {
                performer.faces_back = rig.source == "VRM 0.x";
                performer.rig = Some(rig);
            }
            Err(e) => {
                error!("performer {}: avatar {}: {e}", def.name, def.avatar);
                performer.problem = Some(e);
            }
        }
        let handle = asset_server.load(GltfAssetLabel::Scene(0).from_asset(def.avatar.clone()));
        let entity = commands
            .spawn((
                Name::new(def.name.clone()),
                VenueEntity { name: def.name.clone() },
                WorldAssetRoot(handle),
                performer.placement,
            ))
            .id();
        index.add(&def.name, entity);
        performer.entity = Some(entity);
        if let Some(played) = &played {
            let def = &performer.def;
            match records_for(played.0.clone(), &def.name) {
                Ok(records) => performer.playback = Some(records),
                Err(e) => warn!("performer {}: --performers {e}; it keeps its own source", def.name),
            }
        }
        if performer.playback.is_some() {
            continue;
        }
        let def = &performer.def;
        if let PerformerSource::Recording { path } = &def.source {
            performer.playback = match load_playback(assets.as_deref(), path, &def.name) {
                Ok(records) => Some(records),
                Err(e) => {
                    error!("performer {}: {e}", def.name);
                    performer.problem = Some(e);
                    None
                }
            };
        }
    }
}

/// A recording's records for `name`, or all of them if it holds one performer only.
fn load_playback(assets: Option<&VenueAssets>, path: &str, name: &str) -> Result<Vec<recording::PoseRecord>, String> {
    let file = assets.ok_or("no assets root")?.resolve(path).map_err(|e| format!("recording {path}: {e}"))?;
    let bytes = std::fs::read(&file).map_err(|e| format!("recording {path}: {e}"))?;
    let records = recording::read(&bytes).map_err(|e| format!("recording {path}: {e}"))?;
    records_for(records, name).map_err(|e| format!("recording {path}: {e}"))
}

/// The records for `name`, or all of them if they hold one performer only, by time.
fn records_for(records: Vec<recording::PoseRecord>, name: &str) -> Result<Vec<recording::PoseRecord>, String> {
    let mine: Vec<_> = records.iter().filter(|r| r.performer == name).cloned().collect();
    let mut chosen =
        if mine.is_empty() && records.iter().all(|r| r.performer == records[0].performer) { records } else { mine };
    if chosen.is_empty() {
        return Err(format!("the recording holds no performance of {name:?}"));
    }
    chosen.sort_by(|a, b| a.time.total_cmp(&b.time));
    Ok(chosen)
}

/// Seconds an avatar may take to load before the operator is told it did not.
const AVATAR_LOAD_S: f64 = 30.0;

/// Finds each spawned avatar's bones once its glTF scene is there.
fn bind_rigs(
    mut performers: ResMut<Performers>,
    children: Query<&Children>,
    names: Query<(&Name, &Transform)>,
    time: Res<Time>,
    gltf: Option<Res<Assets<bevy::gltf::Gltf>>>,
) {
    let now = time.elapsed_secs_f64();
    // A venue without a renderer has no glTF loader: its avatars never load, and that is no fault.
    let loads_models = gltf.is_some();
    for performer in &mut performers.list {
        let Some(root) = performer.entity else { continue };
        let Some(rig) = performer.rig.as_ref() else { continue };
        if performer.is_bound() || performer.problem.is_some() {
            continue;
        }
        let mut found: HashMap<&str, (Entity, Transform)> = HashMap::new();
        if children.get(root).is_ok() {
            for entity in children.iter_descendants(root) {
                if let Ok((name, transform)) = names.get(entity) {
                    found.entry(name.as_str()).or_insert((entity, *transform));
                }
            }
        }
        if !found.contains_key(rig.bones[&HumanBone::HIPS].as_str()) {
            // The glTF scene is still loading, or never will (the loader said why in the log).
            if loads_models && now - performer.spawned > AVATAR_LOAD_S {
                let why = format!("the avatar {} did not load within {AVATAR_LOAD_S} s", performer.def.avatar);
                error!("performer {}: {why}", performer.def.name);
                performer.problem = Some(why);
            }
            continue;
        }
        let bones: Vec<BoneTrack> = rig
            .bones
            .iter()
            .filter_map(|(bone, node)| {
                let (entity, rest) = *found.get(node.as_str())?;
                let idle = Quat::from_array(idle_rotation(*bone));
                Some(BoneTrack { bone: *bone, entity, rest, target: idle, current: idle, speed: 0.0, from: idle })
            })
            .collect();
        info!(
            "performer {}: {} bones of {} found (by {})",
            performer.def.name,
            bones.len(),
            performer.def.avatar,
            rig.source
        );
        performer.bones = bones;
        // A recording applied before the bones were there plays again onto them.
        performer.played = (0, f64::NEG_INFINITY);
    }
}

/// What the capture edge delivered this frame.
fn receive_poses(
    link: Option<ResMut<PoseLink>>,
    mut performers: ResMut<Performers>,
    recorder: Option<ResMut<PerformerRecorder>>,
    mut relay: Option<ResMut<PoseRelay>>,
    shows: Res<Shows>,
    time: Res<Time>,
    mut said: Local<Throttle>,
) {
    let Some(mut link) = link else { return };
    let now = time.elapsed_secs_f64();
    let clock = performance_clock(&shows, &time);
    let mut recorder = recorder;
    while let Ok(arrival) = link.inbox.try_recv() {
        let performer = performers.list.iter_mut().find(|p| {
            p.def.name == arrival.performer
                && matches!(p.def.source, PerformerSource::Vmc { .. })
                && p.playback.is_none()
        });
        let Some(performer) = performer else {
            // The scene changed since the edge started: no performer takes this capture now.
            link.stats.unclaimed.fetch_add(1, Ordering::Relaxed);
            continue;
        };
        // A performer with no `from` follows the first sender; another sender takes over only
        // once the first has been silent for LIVE_GAP_S (a second machine left sending by
        // mistake must not make the avatar flicker between two people).
        let silent = performer.last_update.is_none_or(|t| now - t > LIVE_GAP_S);
        let from = arrival.from.ip();
        match performer.driver {
            Some(driver) if driver != from && !silent => {
                link.stats.contested.fetch_add(1, Ordering::Relaxed);
                said.say(|| {
                    format!("performer {}: VMC from {} ignored, {} drives it", performer.def.name, arrival.from, driver)
                });
                continue;
            }
            Some(driver) if driver == from => {}
            _ => {
                if from.is_unspecified() {
                    // Relayed by the main stage (`edges::nats::performers`) to a follower.
                    info!("performer {}: capture from the main stage", performer.def.name);
                } else {
                    info!("performer {}: capture from {}", performer.def.name, arrival.from);
                }
                performer.driver = Some(from);
            }
        }
        performer.apply(&arrival.update, now);
        link.stats.applied.fetch_add(1, Ordering::Relaxed);
        if recorder.is_none() && relay.is_none() {
            continue;
        }
        let record =
            recording::PoseRecord { time: clock, performer: performer.def.name.clone(), update: arrival.update };
        if let Some(relay) = relay.as_deref_mut() {
            recording::write(&mut relay.buffer, &record);
            // A frame after a stall may hold many updates: in messages followers take.
            if relay.buffer.len() > RELAY_MESSAGE_BYTES {
                relay.flush();
            }
        }
        if let Some(recorder) = recorder.as_deref_mut() {
            if recorder.write(&record) {
                link.stats.recorded.fetch_add(1, Ordering::Relaxed);
            } else {
                link.stats.unrecorded.fetch_add(1, Ordering::Relaxed);
                said.say(|| {
                    "performer recording: the disk is behind (or failed, said above); updates not recorded".into()
                });
            }
        }
    }
    if let Some(relay) = relay.as_deref_mut() {
        relay.flush();
    }
}

/// Performers driven by a recording take every record up to the show's clock, in order (a
/// record may carry some bones only); a seek back starts again from the rest pose and the
/// first record, so a seek or a loop of the show lands on the recorded pose. A recording is a
/// rehearsal of a show: with no show on the transport it holds its first pose, which keeps a
/// still render of the venue the same whenever it is taken.
fn play_recordings(mut performers: ResMut<Performers>, shows: Res<Shows>, time: Res<Time>, mut rest: ResMut<Rest>) {
    let clock = shows.running.as_ref().map_or(0.0, |show| show.position);
    let now = time.elapsed_secs_f64();
    for performer in &mut performers.list {
        let Some(records) = performer.playback.take() else { continue };
        if clock < performer.played.1 {
            performer.played.0 = 0;
            performer.reset_pose();
        }
        // The first pose, and the pose after a jump of the clock, are drawn as they are.
        let jumped = (clock - performer.played.1).abs() > 0.25;
        performer.snap |= performer.played.0 == 0 || jumped;
        // At least the first record: a take whose first pose comes after 0 still shows it.
        let until = records.partition_point(|r| r.time <= clock).max(1);
        for record in &records[performer.played.0.min(until)..until] {
            performer.apply(&record.update, now);
        }
        performer.played = (until, clock);
        performer.playback = Some(records);
        performer.state = CaptureState::Playing;
        if shows.running.as_ref().is_some_and(|s| s.state == crate::engine::show::TransportState::Playing) {
            rest.busy();
        }
    }
}

/// Moves every bound avatar: toward its capture while live, its last pose while holding, the
/// idle pose once the capture has been gone longer than `hold`.
fn animate_performers(
    mut performers: ResMut<Performers>,
    time: Res<Time>,
    mut transforms: Query<&mut Transform>,
    mut rest: ResMut<Rest>,
) {
    let now = time.elapsed_secs_f64();
    let dt = time.delta_secs();
    for performer in &mut performers.list {
        // The capture's state is kept even where no avatar is drawn (a venue without a
        // renderer still records, and tells its operator).
        let previous = performer.state;
        if performer.playback.is_none() {
            performer.state = match performer.last_update {
                None => CaptureState::Waiting,
                Some(t) if now - t <= LIVE_GAP_S => CaptureState::Live,
                Some(t) if now - t <= LIVE_GAP_S + performer.def.hold as f64 => CaptureState::Holding,
                Some(_) => CaptureState::Idle,
            };
        }
        let name = &performer.def.name;
        match (previous, performer.state) {
            (CaptureState::Live, CaptureState::Holding) => {
                warn!("performer {name}: capture lost; holding the last pose for {} s", performer.def.hold);
            }
            (CaptureState::Holding, CaptureState::Idle) => {
                warn!("performer {name}: no capture for {:.1} s; easing to the idle pose", performer.def.hold);
            }
            (CaptureState::Holding | CaptureState::Idle, CaptureState::Live) => {
                info!("performer {name}: capture back");
            }
            _ => {}
        }
        if performer.state == CaptureState::Idle && previous != CaptureState::Idle {
            performer.idle_since = Some(now);
            performer.driver = None;
            for track in &mut performer.bones {
                track.from = track.current;
            }
            // The root and the hips ease home with the bones instead of jumping there.
            performer.idle_from = (performer.root.take().unwrap_or(Transform::IDENTITY), performer.hips.take());
        }
        // Frames must keep coming while the pose moves or may change state: a resting venue
        // would otherwise hold a lost capture for ever.
        let settling = match performer.state {
            CaptureState::Live | CaptureState::Holding => true,
            CaptureState::Idle => performer.idle_since.is_some_and(|t| now - t <= performer.def.ease as f64),
            CaptureState::Waiting | CaptureState::Playing => false,
        };
        if settling {
            rest.busy();
        }
        if !performer.is_bound() {
            continue;
        }
        let filter = OneEuro { min_cutoff: performer.def.smoothing.0, beta: performer.def.smoothing.1 };
        let idle_blend = performer
            .idle_since
            .filter(|_| performer.state == CaptureState::Idle)
            .map(|since| ((now - since) as f32 / performer.def.ease.max(1e-3)).clamp(0.0, 1.0));
        let eased = idle_blend.map(|k| k * k * (3.0 - 2.0 * k));
        for track in &mut performer.bones {
            match eased {
                Some(eased) => {
                    track.current = track.from.slerp(Quat::from_array(idle_rotation(track.bone)), eased);
                }
                None if performer.state == CaptureState::Waiting => {}
                None if performer.snap => {
                    track.current = track.target;
                    track.speed = 0.0;
                }
                None => {
                    let gap = track.current.angle_between(track.target);
                    let raw_speed = if dt > 0.0 { gap / dt } else { 0.0 };
                    // The one-euro filter: speed itself is low-passed at 1 Hz.
                    track.speed += (raw_speed - track.speed) * OneEuro { min_cutoff: 1.0, beta: 0.0 }.alpha(dt, 0.0);
                    track.current = track.current.slerp(track.target, filter.alpha(dt, track.speed)).normalize();
                }
            }
            if let Ok(mut transform) = transforms.get_mut(track.entity) {
                transform.rotation = track.rest.rotation * track.current;
                if track.bone == HumanBone::HIPS {
                    transform.translation = match (performer.hips, eased, performer.idle_from.1) {
                        (Some(hips), None, _) => hips,
                        (_, Some(k), Some(from)) => from.lerp(track.rest.translation, k),
                        _ => track.rest.translation,
                    };
                }
            }
        }
        if let Some(entity) = performer.entity
            && let Ok(mut transform) = transforms.get_mut(entity)
        {
            *transform = match (performer.root, eased) {
                (Some(root), None) => performer.placement * root,
                (_, Some(k)) => {
                    let from = performer.idle_from.0;
                    let root = Transform {
                        translation: from.translation.lerp(Vec3::ZERO, k),
                        rotation: from.rotation.slerp(Quat::IDENTITY, k),
                        scale: Vec3::ONE,
                    };
                    performer.placement * root
                }
                (None, None) => performer.placement,
            };
        }
        performer.snap = false;
    }
}

/// Blendshape values onto the avatar's morph targets of the same name (any case).
fn apply_blendshapes(
    performers: Res<Performers>,
    children: Query<&Children>,
    mut morphs: Query<(&mut MorphWeights, &Mesh3d)>,
    meshes: Res<Assets<Mesh>>,
) {
    if !performers.is_changed() {
        return;
    }
    for performer in performers.list.iter().filter(|p| !p.blends.is_empty()) {
        let Some(root) = performer.entity else { continue };
        for entity in children.iter_descendants(root) {
            let Ok((mut weights, mesh)) = morphs.get_mut(entity) else { continue };
            let Some(names) = meshes.get(&mesh.0).and_then(|m| m.morph_target_names()) else { continue };
            for (i, name) in names.iter().enumerate() {
                let value = performer.blends.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| *v);
                if let (Some(value), Some(weight)) = (value, weights.weights_mut().get_mut(i)) {
                    *weight = value;
                }
            }
        }
    }
}

/// The performers' state in a line each, for the operator's panel.
pub fn status_text(performers: &Performers, now: f64) -> String {
    let mut text = String::new();
    for p in &performers.list {
        let since = p.last_update.map(|t| now - t).unwrap_or(0.0);
        let state = match (&p.problem, p.state) {
            (Some(problem), _) => format!("not shown: {problem}"),
            (None, CaptureState::Waiting) => "waiting for capture (idle pose)".to_owned(),
            (None, CaptureState::Live) => {
                format!("live from {}, {} updates/s", p.driver.map_or("?".into(), |d| d.to_string()), p.rate)
            }
            (None, CaptureState::Holding) => format!("capture lost {since:.1} s ago: holding the last pose"),
            (None, CaptureState::Idle) => format!("no capture for {since:.0} s: idle pose"),
            (None, CaptureState::Playing) => "playing its recording".to_owned(),
        };
        let _ = writeln!(text, "{}: {state}", p.def.name);
    }
    text
}

/// A UDP port and the performers that take capture on it, each with the sender it takes
/// (`None`: the first allowed sender).
pub type VmcPort = (u16, Vec<(String, Option<IpAddr>)>);

/// Which performers listen where. Performers on port 0 get a free port each.
pub fn vmc_ports(performers: &[PerformerDef]) -> Vec<VmcPort> {
    let mut ports: Vec<VmcPort> = Vec::new();
    for p in performers {
        if let PerformerSource::Vmc { port, from } = &p.source {
            let from = from.as_deref().and_then(|f| f.parse().ok());
            match ports.iter_mut().find(|(q, _)| *q == *port && *port != 0) {
                Some((_, users)) => users.push((p.name.clone(), from)),
                None => ports.push((*port, vec![(p.name.clone(), from)])),
            }
        }
    }
    ports
}
