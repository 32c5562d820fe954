//! The program output's side in the venue: the director's camera (cuts and eased moves from
//! `program` commands, so cues, OSC, `/mod` and the keyboard all drive it and the log replays
//! it), the overlays drawn on the program picture only (credits, poll and windows, chat), and
//! the frames and program sound handed to the output edge through one bounded queue.
//!
//! The frame never waits for the encoder: a frame is read back asynchronously (Bevy's
//! screenshot machinery), at most [`MAX_IN_FLIGHT`] at a time, and dropped (counted) when the
//! edge has not taken the previous ones. Sound is never dropped while the edge keeps up: it is
//! the stream's clock.

use std::collections::{HashSet, VecDeque};
use std::fmt::Write as _;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::mpsc::{SyncSender, TrySendError};

use bevy::camera::RenderTarget;
use bevy::prelude::*;
use bevy::render::view::screenshot::{Screenshot, ScreenshotCaptured};

use crate::engine::audience::Audience;
use crate::engine::audience::hub::MetricsSection;
use crate::engine::camera::{CameraRig, apply_viewpoint};
use crate::engine::command::{AppliedCommand, CurrentScene, SubmitCommand};
use crate::engine::schedule::VenueSystems;
use crate::engine::show::clock::ShowClock;
use crate::model::command::VenueCommand;
use crate::model::program::{AUDIO_RATE, Overlay, ProgramAction};
use crate::model::scene::format::{Easing, SceneFile};

/// Frames read back and not yet taken by the output edge, at most.
pub const MAX_IN_FLIGHT: usize = 3;
/// Chat lines the chat overlay shows.
const CHAT_LINES: usize = 4;

/// The program output's systems, in the venue's frame.
#[derive(SystemSet, Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ProgramSystems {
    /// Apply `program` commands: camera cuts and moves, overlay switches.
    Direct,
    /// Move the camera along its current move; refresh the overlays.
    Present,
    /// Hand frames and sound to the output edge (in `Last`, after the frame's state is final).
    Feed,
}

pub use crate::engine::camera::ProgramCamera;

/// An eased move of the program camera from one rig to another.
#[derive(Component, Debug, Clone)]
struct CameraMove {
    from: CameraRig,
    to: CameraRig,
    fov: Option<(f32, f32)>,
    start: f64,
    seconds: f32,
    easing: Easing,
}

/// Which program overlays are shown.
#[derive(Resource, Debug, Clone, PartialEq)]
pub struct ProgramOverlays {
    /// Shown now.
    pub visible: HashSet<Overlay>,
    /// Whether the overlays are drawn at all: only in apps with a program output (streaming,
    /// recording, `render --program`), so that other renders and their golden images are
    /// unchanged.
    pub enabled: bool,
}

impl Default for ProgramOverlays {
    fn default() -> Self {
        // Credits wait for a cue (a lower third at the start or the end); the frame code is
        // for line checks and delay measurements (`--frame-code`, or a command); the rest
        // are on.
        Self { visible: [Overlay::Poll, Overlay::Chat, Overlay::Surtitles].into(), enabled: false }
    }
}

/// Audience lines that passed moderation, newest last, for the chat overlay.
#[derive(Resource, Debug, Default)]
struct ChatLines(VecDeque<(u64, String, String)>);

#[derive(Component)]
struct OverlayText(Overlay);

/// What goes to the output edge, in order.
#[derive(Debug)]
pub enum ProgramPacket {
    /// A picture of the program camera, read back.
    Frame {
        /// Venue time (virtual seconds since start) of the frame it shows.
        time: f64,
        /// Width in pixels.
        width: u32,
        /// Height in pixels.
        height: u32,
        /// RGBA, 8 bits a channel, rows without padding.
        rgba: Vec<u8>,
        /// Whether the frame code is stamped on it.
        stamp: bool,
    },
    /// The program sound of one venue frame: 16-bit stereo at [`AUDIO_RATE`].
    Audio {
        /// Venue time at the end of the sound.
        until: f64,
        /// Interleaved samples.
        samples: Vec<i16>,
    },
}

/// Counters shared between the venue and the output edge, for `/metrics` and the log.
#[derive(Debug, Default)]
pub struct ProgramStats {
    /// Frames read back and handed over.
    pub frames_grabbed: AtomicU64,
    /// Frames not read back because the edge had not taken the previous ones.
    pub frames_dropped: AtomicU64,
    /// Output frames written again because the venue had no newer picture (slow renderer).
    pub frames_repeated: AtomicU64,
    /// Pictures read back but never written, because a newer one replaced them first.
    pub frames_skipped: AtomicU64,
    /// Output frames written to each encoder, all targets together.
    pub frames_written: AtomicU64,
    /// Sound blocks lost because the edge's queue was full (the edge stalled).
    pub audio_dropped: AtomicU64,
    /// Frames handed over and not yet taken by the edge.
    pub in_flight: AtomicUsize,
    /// Packets in the queue to the edge (an offline render waits on it).
    pub queued: AtomicUsize,
    /// The output frame the stream has reached (the number the frame code carries, before
    /// its wrap at 65 536): with a frame code read back from what viewers get, the delay.
    pub stream_frame: AtomicU64,
    /// Each target's state, set by the edge.
    pub targets: std::sync::Mutex<Vec<TargetStatus>>,
    /// The stream's delay read back from a viewer's copy, milliseconds (0: not measured).
    pub measured_delay_ms: AtomicU64,
}

/// One output's state, for `/metrics` and the log. `name` is redacted: no stream key.
#[derive(Debug, Clone, Default)]
pub struct TargetStatus {
    /// The target without its secrets.
    pub name: String,
    /// `starting`, `live`, `reconnecting`, `failed` or `stopped`.
    pub state: &'static str,
    /// Times its encoder was started again after a failure.
    pub restarts: u64,
    /// Output frames written to it.
    pub frames: u64,
    /// Frames it missed while down.
    pub missed: u64,
    /// Its last error, without secrets.
    pub last_error: String,
}

impl MetricsSection for ProgramStats {
    fn render(&self, out: &mut String) {
        let load = |a: &AtomicU64| a.load(Ordering::Relaxed);
        let mut counter =
            |name: &str, help: &str, value: u64| crate::engine::audience::hub::write_counter(out, name, help, value);
        counter("program_frames_grabbed_total", "Program frames read back.", load(&self.frames_grabbed));
        counter(
            "program_frames_dropped_total",
            "Program frames not read back: the output was still busy with earlier ones.",
            load(&self.frames_dropped),
        );
        counter(
            "program_frames_repeated_total",
            "Output frames repeated because the renderer was slower than the output rate.",
            load(&self.frames_repeated),
        );
        counter(
            "program_frames_skipped_total",
            "Frames read back but replaced by a newer one before an output tick.",
            load(&self.frames_skipped),
        );
        counter("program_frames_written_total", "Output frames written to encoders.", load(&self.frames_written));
        counter("program_audio_dropped_total", "Program sound blocks lost to a full queue.", load(&self.audio_dropped));
        crate::engine::audience::hub::write_gauge(
            out,
            "program_stream_frame",
            "The output frame the stream has reached (its frame code, before the wrap at 65536).",
            load(&self.stream_frame),
        );
        let measured = load(&self.measured_delay_ms);
        if measured > 0 {
            crate::engine::audience::hub::write_gauge(
                out,
                "program_measured_delay_seconds",
                "The stream's delay read back from what viewers get.",
                format_args!("{:.3}", measured as f64 / 1000.0),
            );
        }
        let targets = self.targets.lock().map(|t| t.clone()).unwrap_or_default();
        let _ = writeln!(
            out,
            "# HELP parvis_program_output_up Whether each output is live (1) or not (0).\n# TYPE parvis_program_output_up gauge"
        );
        for t in &targets {
            let _ = writeln!(
                out,
                "parvis_program_output_up{{target=\"{}\",state=\"{}\"}} {}",
                escape(&t.name),
                t.state,
                u8::from(t.state == "live")
            );
        }
        // Per output, each counter's lines in turn (Prometheus wants a metric's samples together).
        let per_target: [(&str, &str, fn(&TargetStatus) -> u64); 3] = [
            ("program_output_restarts_total", "Encoder restarts per output.", |t| t.restarts),
            ("program_output_frames_total", "Frames written per output.", |t| t.frames),
            ("program_output_missed_total", "Frames an output missed while it was down.", |t| t.missed),
        ];
        for (name, help, value) in per_target {
            let _ = writeln!(out, "# HELP parvis_{name} {help}\n# TYPE parvis_{name} counter");
            for t in &targets {
                let _ = writeln!(out, "parvis_{name}{{target=\"{}\"}} {}", escape(&t.name), value(t));
            }
        }
    }
}

/// The program output's state in a few lines, for the operator's panel.
pub fn status_text(stats: &ProgramStats) -> String {
    let load = |a: &AtomicU64| a.load(Ordering::Relaxed);
    let mut lines = vec![format!(
        "program: frame {} · {} dropped · {} repeated",
        load(&stats.stream_frame),
        load(&stats.frames_dropped),
        load(&stats.frames_repeated)
    )];
    for t in stats.targets.lock().map(|t| t.clone()).unwrap_or_default() {
        let mark = if t.state == "live" { "●" } else { "○" };
        let mut line = format!("{mark} {} {}", t.state, t.name);
        if t.restarts > 0 {
            line.push_str(&format!(" ({} restarts)", t.restarts));
        }
        if t.state != "live" && !t.last_error.is_empty() {
            line.push_str(&format!(": {}", t.last_error));
        }
        lines.push(line);
    }
    lines.join("\n")
}

fn escape(label: &str) -> String {
    label.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', " ")
}

/// The venue's end of the program output: present only when something is streamed or
/// recorded.
#[derive(Resource)]
pub struct ProgramFeed {
    out: SyncSender<ProgramPacket>,
    /// Counters, shared with the edge.
    pub stats: Arc<ProgramStats>,
    fps: f64,
    next_grab: Option<f64>,
}

impl ProgramFeed {
    /// A feed sending at `fps` frames a second into `out`.
    pub fn new(out: SyncSender<ProgramPacket>, stats: Arc<ProgramStats>, fps: u32) -> Self {
        Self { out, stats, fps: f64::from(fps.max(1)), next_grab: None }
    }
}

/// The director's camera, overlays and feed.
pub struct ProgramPlugin;

impl Plugin for ProgramPlugin {
    fn build(&self, app: &mut App) {
        app.init_resource::<ProgramOverlays>()
            .init_resource::<ChatLines>()
            .configure_sets(Update, ProgramSystems::Direct.in_set(VenueSystems::Simulate))
            .configure_sets(Update, ProgramSystems::Present.in_set(VenueSystems::Present))
            .add_systems(Update, direct_program.in_set(ProgramSystems::Direct))
            .add_systems(
                Update,
                director_keys.run_if(resource_exists::<ButtonInput<KeyCode>>).in_set(VenueSystems::Ingest),
            )
            .add_systems(
                Update,
                (move_program_camera, spawn_overlays, refresh_overlays).chain().in_set(ProgramSystems::Present),
            )
            .add_systems(Last, feed_program.run_if(resource_exists::<ProgramFeed>).in_set(ProgramSystems::Feed))
            .add_systems(
                Update,
                use_measured_delay.run_if(resource_exists::<ProgramFeed>).in_set(ProgramSystems::Direct),
            );
    }
}

fn direct_program(
    mut applied: MessageReader<AppliedCommand>,
    scene: Option<Res<CurrentScene>>,
    time: Res<Time>,
    mut overlays: ResMut<ProgramOverlays>,
    mut chat: ResMut<ChatLines>,
    mut cameras: Query<(Entity, &mut CameraRig, &mut Projection), With<ProgramCamera>>,
    mut commands: Commands,
) {
    for entry in applied.read() {
        match &entry.command {
            VenueCommand::Program { action: ProgramAction::Overlay { overlay, visible } } => {
                if *visible {
                    overlays.visible.insert(*overlay);
                } else {
                    overlays.visible.remove(overlay);
                }
            }
            VenueCommand::Program { action } => {
                let (name, seconds, easing) = match action {
                    ProgramAction::Cut { viewpoint } => (viewpoint, 0.0, Easing::Linear),
                    ProgramAction::Move { viewpoint, seconds, easing } => (viewpoint, *seconds, *easing),
                    ProgramAction::Overlay { .. } => continue,
                };
                let Some(def) = scene.as_deref().and_then(|s| s.0.viewpoints.iter().find(|v| &v.name == name)) else {
                    continue;
                };
                for (entity, mut rig, mut projection) in &mut cameras {
                    let from = *rig;
                    let fov_from = match &*projection {
                        Projection::Perspective(p) => Some(p.fov),
                        _ => None,
                    };
                    apply_viewpoint(&mut rig, &mut projection, def);
                    if seconds > 0.0 {
                        let to = *rig;
                        *rig = from;
                        let fov = fov_from.map(|f| (f, def.fov.to_radians()));
                        commands.entity(entity).insert(CameraMove {
                            from,
                            to,
                            fov,
                            start: time.elapsed_secs_f64(),
                            seconds,
                            easing,
                        });
                        if let (Projection::Perspective(p), Some((f, _))) = (&mut *projection, fov) {
                            p.fov = f;
                        }
                    } else {
                        commands.entity(entity).remove::<CameraMove>();
                    }
                }
            }
            VenueCommand::ShowText { id, text, by, .. } => {
                chat.0.push_back((*id, by.clone(), text.clone()));
                while chat.0.len() > CHAT_LINES {
                    chat.0.pop_front();
                }
            }
            VenueCommand::HideText { id: Some(id) } => chat.0.retain(|(i, ..)| i != id),
            VenueCommand::HideText { id: None } => chat.0.clear(),
            _ => {}
        }
    }
}

/// At the desktop, Shift with 1 to 9 cuts the program output to the scene's viewpoints (the
/// digits alone move the visitor's view).
fn director_keys(
    keys: Res<ButtonInput<KeyCode>>,
    scene: Option<Res<CurrentScene>>,
    cameras: Query<(), With<ProgramCamera>>,
    mut submit: MessageWriter<SubmitCommand>,
) {
    if cameras.is_empty() || !keys.any_pressed([KeyCode::ShiftLeft, KeyCode::ShiftRight]) {
        return;
    }
    let Some(i) = crate::engine::camera::DIGITS.iter().position(|k| keys.just_pressed(*k)) else { return };
    if let Some(viewpoint) = scene.as_deref().and_then(|s| s.0.viewpoints.get(i)) {
        submit.write(SubmitCommand::local(VenueCommand::Program {
            action: ProgramAction::Cut { viewpoint: viewpoint.name.clone() },
        }));
    }
}

fn move_program_camera(
    time: Res<Time>,
    mut cameras: Query<(Entity, &CameraMove, &mut CameraRig, &mut Projection)>,
    mut commands: Commands,
) {
    let now = time.elapsed_secs_f64();
    for (entity, m, mut rig, mut projection) in &mut cameras {
        let t = if m.seconds <= 0.0 { 1.0 } else { ((now - m.start) / f64::from(m.seconds)) as f32 };
        let k = m.easing.apply(t);
        *rig = blend(&m.from, &m.to, k);
        if let (Projection::Perspective(p), Some((a, b))) = (&mut *projection, m.fov) {
            p.fov = a + (b - a) * k;
        }
        if t >= 1.0 {
            commands.entity(entity).remove::<CameraMove>();
        }
    }
}

/// A rig part way from `a` to `b`; the turn takes the shorter way round.
fn blend(a: &CameraRig, b: &CameraRig, k: f32) -> CameraRig {
    let mut dyaw = (b.yaw - a.yaw) % std::f32::consts::TAU;
    if dyaw > std::f32::consts::PI {
        dyaw -= std::f32::consts::TAU;
    } else if dyaw < -std::f32::consts::PI {
        dyaw += std::f32::consts::TAU;
    }
    CameraRig {
        focus: a.focus.lerp(b.focus, k),
        yaw: a.yaw + dyaw * k,
        pitch: a.pitch + (b.pitch - a.pitch) * k,
        distance: a.distance + (b.distance - a.distance) * k,
    }
}

/// The credits lower third: the venue's title, then each credit with its licence.
pub fn credits_text(scene: &SceneFile) -> String {
    let mut credits: Vec<String> = Vec::new();
    let mut add = |work: &str, author: &str, licence: &str| {
        let line =
            if work.is_empty() { format!("{author} ({licence})") } else { format!("{work}: {author} ({licence})") };
        if !credits.contains(&line) {
            credits.push(line);
        }
    };
    for c in &scene.venue.credits {
        add(&c.work, &c.author, &c.licence);
    }
    let placed = scene.assets.iter().map(|a| (&a.name, &a.credit));
    let clouds = scene.clouds.iter().map(|c| (&c.name, &c.credit));
    let meshes = scene.meshes.iter().map(|m| (&m.name, &m.credit));
    let performers = scene.performers.iter().map(|p| (&p.name, &p.credit));
    for (name, credit) in placed.chain(clouds).chain(meshes).chain(performers) {
        add(name, &credit.author, &credit.licence);
    }
    let mut text = scene.venue.title.clone();
    if !credits.is_empty() {
        text.push('\n');
        text.push_str(&credits.join(" · "));
        // A lower third, not a roll: a long list is cut, with the number of credits.
        if text.chars().count() > 240 {
            let mut short: String = text.chars().take(220).collect();
            short.push_str(&format!(" … ({} credits)", credits.len()));
            return short;
        }
    }
    text
}

fn spawn_overlays(
    overlays: Res<ProgramOverlays>,
    cameras: Query<(Entity, Has<IsDefaultUiCamera>), With<ProgramCamera>>,
    existing: Query<(), With<OverlayText>>,
    fonts: Option<ResMut<Assets<Font>>>,
    mut commands: Commands,
) {
    if !overlays.enabled || !existing.is_empty() {
        return;
    }
    let (Some((camera, default_ui)), Some(mut fonts)) = (cameras.iter().next(), fonts) else { return };
    let font = crate::engine::ui_panel::ui_font(&mut fonts);
    let panel = BackgroundColor(Color::srgba(0.03, 0.03, 0.06, 0.78));
    // Sizes follow the output's height, so a 720p and a 1080p stream look alike.
    let text = |vh: f32| {
        (
            Text::new(""),
            TextFont { font: font.clone().into(), font_size: FontSize::Vh(vh), ..default() },
            TextColor(Color::WHITE),
        )
    };
    let node = |left: Option<f32>, right: Option<f32>, top: Option<f32>, bottom: Option<f32>| Node {
        position_type: PositionType::Absolute,
        left: left.map_or(Val::Auto, Val::Percent),
        right: right.map_or(Val::Auto, Val::Percent),
        top: top.map_or(Val::Auto, Val::Percent),
        bottom: bottom.map_or(Val::Auto, Val::Percent),
        max_width: Val::Percent(70.0),
        padding: UiRect::axes(Val::Vh(1.6), Val::Vh(0.9)),
        ..default()
    };
    let mut spawn = |name: &str, overlay: Overlay, place: Node, size: f32| {
        commands.spawn((
            Name::new(format!("program overlay: {name}")),
            place,
            panel,
            text(size),
            UiTargetCamera(camera),
            Visibility::Hidden,
            OverlayText(overlay),
        ));
    };
    // Lower third above the surtitles' band; poll top right; chat on the left.
    for (name, overlay, place, size) in [
        ("credits", Overlay::Credits, node(Some(4.0), None, None, Some(17.0)), 2.6),
        ("poll", Overlay::Poll, node(None, Some(3.0), Some(4.0), None), 2.8),
        ("chat", Overlay::Chat, node(Some(3.0), None, Some(28.0), None), 2.5),
    ] {
        spawn(name, overlay, place, size);
    }
    // Surtitles at the bottom, where the venue draws its own on its default camera: only for
    // a program camera that is not that one (a program beside a desktop window).
    if !default_ui {
        let mut place = node(Some(10.0), Some(10.0), None, Some(4.0));
        place.justify_content = JustifyContent::Center;
        spawn("surtitles", Overlay::Surtitles, place, 3.6);
    }
}

fn refresh_overlays(
    overlays: Res<ProgramOverlays>,
    scene: Option<Res<CurrentScene>>,
    audience: Option<Res<Audience>>,
    chat: Res<ChatLines>,
    surtitles: Option<Res<crate::engine::show::ShowSurtitles>>,
    mut texts: Query<(&OverlayText, &mut Text, &mut Visibility)>,
) {
    let now = std::time::Instant::now();
    for (kind, mut text, mut visibility) in &mut texts {
        let content = match kind.0 {
            Overlay::Credits => scene.as_deref().map(|s| credits_text(&s.0)).unwrap_or_default(),
            Overlay::Poll => {
                let mut out = String::new();
                if let Some((question, options, left)) = audience.as_deref().and_then(|a| a.poll_overlay(now)) {
                    let total: u64 = options.iter().map(|(_, v)| v).sum();
                    let _ = write!(out, "{question}  ({left:.0} s)");
                    for (label, votes) in options {
                        let share = if total == 0 { 0.0 } else { votes as f64 * 100.0 / total as f64 };
                        let _ = write!(out, "\n{label}: {votes} ({share:.0} %)");
                    }
                }
                for (label, left) in audience.as_deref().map(|a| a.window_overlay(now)).unwrap_or_default() {
                    if !out.is_empty() {
                        out.push('\n');
                    }
                    match left {
                        Some(s) => {
                            let _ = write!(out, "{label}: {s:.0} s");
                        }
                        None => out.push_str(&label),
                    }
                }
                out
            }
            Overlay::Chat => chat.0.iter().map(|(_, by, line)| format!("{by}: {line}")).collect::<Vec<_>>().join("\n"),
            Overlay::Stamp => String::new(),
            Overlay::Surtitles => {
                let first = scene.as_deref().and_then(|s| s.0.venue.languages.first().cloned());
                surtitles
                    .as_deref()
                    .and_then(|s| {
                        first.and_then(|l| s.texts.get(&l).cloned()).or_else(|| s.texts.values().next().cloned())
                    })
                    .unwrap_or_default()
            }
        };
        let show = overlays.enabled && overlays.visible.contains(&kind.0) && !content.is_empty();
        let wanted = if show { Visibility::Inherited } else { Visibility::Hidden };
        if *visibility != wanted {
            *visibility = wanted;
        }
        if text.0 != content {
            text.0 = content;
        }
    }
}

/// A delay measured from the stream becomes the one the audience's windows allow for.
fn use_measured_delay(feed: Res<ProgramFeed>, audience: Option<ResMut<Audience>>, mut last: Local<u64>) {
    let ms = feed.stats.measured_delay_ms.load(Ordering::Relaxed);
    let Some(mut audience) = audience else { return };
    if ms == 0 || ms == *last {
        return;
    }
    *last = ms;
    audience.stream_delay = std::time::Duration::from_millis(ms);
}

/// Reads the program camera's picture back when an output frame is due, and hands the frame's
/// sound over.
fn feed_program(
    time: Res<Time>,
    mut feed: ResMut<ProgramFeed>,
    mut rest: ResMut<crate::engine::rest::Rest>,
    overlays: Res<ProgramOverlays>,
    clock: Option<ResMut<ShowClock>>,
    cameras: Query<&RenderTarget, With<ProgramCamera>>,
    images: Res<Assets<Image>>,
    mut commands: Commands,
) {
    let now = time.elapsed_secs_f64();
    // A stream needs every frame: the venue may not rest while it goes out.
    rest.busy();
    // The sound of this frame: the program mixer's, or silence of the frame's length.
    let sound = clock.and_then(|mut c| c.take_program_audio());
    let samples: Vec<i16> = match sound {
        Some(s) => s.iter().map(|v| (v.clamp(-1.0, 1.0) * 32767.0) as i16).collect(),
        None => vec![0; (time.delta_secs_f64() * f64::from(AUDIO_RATE)).round() as usize * 2],
    };
    if !samples.is_empty() {
        // Counted before the send, so that the edge never takes one not counted yet.
        feed.stats.queued.fetch_add(1, Ordering::Relaxed);
        match feed.out.try_send(ProgramPacket::Audio { until: now, samples }) {
            Ok(()) => {}
            Err(TrySendError::Full(_)) => {
                feed.stats.queued.fetch_sub(1, Ordering::Relaxed);
                feed.stats.audio_dropped.fetch_add(1, Ordering::Relaxed);
            }
            Err(TrySendError::Disconnected(_)) => {
                feed.stats.queued.fetch_sub(1, Ordering::Relaxed);
                return;
            }
        }
    }
    let period = 1.0 / feed.fps;
    let due = feed.next_grab.is_none_or(|t| now + 1e-9 >= t);
    if !due {
        return;
    }
    // The next grab one output period on; a renderer slower than the output grabs every
    // frame, without a burst to catch up (the edge repeats frames to keep the stream's clock).
    let mut next = feed.next_grab.unwrap_or(now) + period;
    if next <= now {
        next = now + period;
    }
    feed.next_grab = Some(next);
    let Some(RenderTarget::Image(target)) = cameras.iter().next() else { return };
    if feed.stats.in_flight.load(Ordering::Relaxed) >= MAX_IN_FLIGHT {
        feed.stats.frames_dropped.fetch_add(1, Ordering::Relaxed);
        return;
    }
    let Some(size) = images.get(&target.handle).map(|i| i.size()) else { return };
    feed.stats.in_flight.fetch_add(1, Ordering::Relaxed);
    let (out, stats, stamp) = (feed.out.clone(), feed.stats.clone(), overlays.visible.contains(&Overlay::Stamp));
    commands.spawn(Screenshot::image(target.handle.clone())).observe(move |captured: On<ScreenshotCaptured>| {
        let Some(rgba) = captured.image.data.clone() else {
            stats.in_flight.fetch_sub(1, Ordering::Relaxed);
            return;
        };
        let frame = ProgramPacket::Frame { time: now, width: size.x, height: size.y, rgba, stamp };
        stats.queued.fetch_add(1, Ordering::Relaxed);
        match out.try_send(frame) {
            Ok(()) => {
                stats.frames_grabbed.fetch_add(1, Ordering::Relaxed);
            }
            Err(_) => {
                stats.queued.fetch_sub(1, Ordering::Relaxed);
                stats.in_flight.fetch_sub(1, Ordering::Relaxed);
                stats.frames_dropped.fetch_add(1, Ordering::Relaxed);
            }
        }
    });
}

/// Adds a program camera rendering into `target` (a readable image of the output's size), at
/// the scene's start viewpoint: for apps whose own camera is not the program (a window).
pub fn spawn_program_camera(world: &mut World, target: Handle<Image>) -> Entity {
    world
        .spawn((
            Name::new("program camera"),
            Camera3d::default(),
            Camera { order: -1, ..default() },
            RenderTarget::Image(target.into()),
            ProgramCamera,
            CameraRig::looking(Vec3::new(0.0, 5.0, 15.0), Vec3::ZERO),
            crate::engine::camera::AwaitingViewpoint,
        ))
        .id()
}
