//! Visiting the venue in a headset through OpenXR (`parvis run --xr`).
//!
//! [`probe`] asks the OpenXR loader, before the engine starts, whether a runtime and a headset
//! are there, so that a missing one gets a message naming what to install. [`XrVisitPlugin`]
//! places the visitor at the scene's spawn point at real scale (one venue unit is a metre),
//! gives the eye cameras the venue's look, moves the visitor with the controllers
//! ([`locomotion`], [`controllers`]), keeps a desktop spectator view following the head
//! ([`spectator`]), and keeps a [`XrSessionLog`] of states, frames and poses, written as JSON
//! with `--xr-report` (the session test reads it).

pub mod controllers;
pub mod locomotion;
pub mod panel;
pub mod session;
pub mod spectator;

use std::path::PathBuf;
use std::time::{Duration, Instant};

use bevy::prelude::*;
use bevy_mod_openxr::resources::{OxrCurrentSessionConfig, OxrFrameState, OxrSessionStarted};
use bevy_mod_openxr::session::OxrSession;
use bevy_mod_xr::camera::XrCamera;
use bevy_mod_xr::session::{
    XrFirst, XrHandleEvents, XrRequestExitMessage, XrSessionDestroyedMessage, XrState, XrStateChanged, XrTrackingRoot,
};
use bevy_mod_xr::spaces::XrPrimaryReferenceSpace;
use bevy_rapier3d::prelude::ReadRapierContext;
use thiserror::Error;

use crate::engine::camera::{StartViewpoint, pick_viewpoint};
use crate::engine::command::CurrentScene;
use crate::engine::environment::VenueCamera;
use locomotion::{ComfortSettings, TeleportRules};
pub use session::{RuntimeInfo, XrHead, XrMode, XrSessionLog, XrVisitSystems};
use spectator::SpectatorSettings;

/// Why no headset session can start, found by [`probe`]; each names what to install or do.
#[derive(Debug, Clone, Error)]
pub enum XrUnavailable {
    /// No loader library.
    #[error(
        "the OpenXR loader is not installed ({0}); install it (Debian/Ubuntu: `apt install libopenxr-loader1 libopenxr-dev`) and an OpenXR runtime"
    )]
    NoLoader(String),
    /// The loader found no runtime.
    #[error(
        "no OpenXR runtime is active ({0}); install and start one — Monado (Debian 13, Ubuntu 24.04: `apt install monado-service libopenxr1-monado`, then run `monado-service`), SteamVR, or your headset's — or set XR_RUNTIME_JSON to a runtime's manifest"
    )]
    NoRuntime(String),
    /// The runtime cannot render through Vulkan, which the engine uses.
    #[error("the OpenXR runtime {0} does not offer Vulkan rendering (XR_KHR_vulkan_enable2)")]
    NoVulkan(String),
    /// The runtime is there, the headset is not.
    #[error("the OpenXR runtime {runtime} sees no headset ({reason}); connect it and switch it on")]
    NoHeadset {
        /// Runtime name and version.
        runtime: String,
        /// The runtime's answer.
        reason: String,
    },
}

/// Asks OpenXR whether a headset session could start: loader, runtime, Vulkan support and a
/// head-mounted system. The instance it makes is dropped before the engine makes its own.
#[allow(
    unsafe_code,
    reason = "loading the OpenXR loader library is how OpenXR starts; bevy_mod_openxr does the same next"
)]
pub fn probe() -> Result<RuntimeInfo, XrUnavailable> {
    // SAFETY: loading the system's OpenXR loader library runs its initialisers; that is what
    // every OpenXR application does, and the engine would do it next anyway.
    let entry = unsafe { openxr::Entry::load() }.map_err(|e| XrUnavailable::NoLoader(e.to_string()))?;
    let extensions = entry.enumerate_extensions().map_err(|e| XrUnavailable::NoRuntime(e.to_string()))?;
    let mut wanted = openxr::ExtensionSet::default();
    wanted.khr_vulkan_enable2 = extensions.khr_vulkan_enable2;
    let app = openxr::ApplicationInfo {
        application_name: "Parvis (probe)",
        engine_name: "Parvis",
        api_version: openxr::Version::new(1, 0, 0),
        ..default()
    };
    let instance = entry.create_instance(&app, &wanted, &[]).map_err(|e| XrUnavailable::NoRuntime(e.to_string()))?;
    let runtime = instance
        .properties()
        .map(|p| format!("{} {}", p.runtime_name, p.runtime_version))
        .unwrap_or_else(|_| "(unnamed)".into());
    if !extensions.khr_vulkan_enable2 {
        return Err(XrUnavailable::NoVulkan(runtime));
    }
    let system = instance
        .system(openxr::FormFactor::HEAD_MOUNTED_DISPLAY)
        .map_err(|e| XrUnavailable::NoHeadset { runtime: runtime.clone(), reason: e.to_string() })?;
    let system = instance.system_properties(system).map(|p| p.system_name).unwrap_or_default();
    Ok(RuntimeInfo { runtime, system })
}

/// Settings of a headset visit.
#[derive(Debug, Clone, Resource)]
pub struct XrVisitSettings {
    /// Comfort choices.
    pub comfort: ComfortSettings,
    /// Where a visitor may stand.
    pub teleport: TeleportRules,
    /// What the desktop shows meanwhile.
    pub spectator: spectator::SpectatorMode,
    /// Leave the headset session after this many frames drawn for it (0: run until the
    /// runtime or the visitor ends it); then the app exits.
    pub frames: u64,
    /// Write the session's log here as JSON when the app ends.
    pub report: Option<PathBuf>,
    /// What to do when the runtime goes away mid-session.
    pub mode: XrMode,
}

impl Default for XrVisitSettings {
    fn default() -> Self {
        Self {
            comfort: default(),
            teleport: default(),
            spectator: default(),
            frames: 0,
            report: None,
            mode: XrMode::Prefer,
        }
    }
}

/// The headset visit. Needs the app built with `bevy_mod_openxr::add_xr_plugins`.
pub struct XrVisitPlugin {
    /// Settings.
    pub settings: XrVisitSettings,
    /// What [`probe`] found.
    pub runtime: Option<RuntimeInfo>,
}

impl Plugin for XrVisitPlugin {
    fn build(&self, app: &mut App) {
        app.insert_resource(self.settings.clone())
            .insert_resource(self.settings.comfort)
            .insert_resource(self.settings.teleport)
            .insert_resource(SpectatorSettings { mode: self.settings.spectator, frames: self.settings.frames })
            .insert_resource(XrSessionLog { runtime: self.runtime.clone(), ..default() })
            .init_resource::<XrHead>()
            .init_resource::<ExitPlan>()
            .configure_sets(Update, (XrVisitSystems::Track, XrVisitSystems::Move).chain())
            .add_systems(
                Update,
                (log_states, dress_eye_cameras, follow_head, count_frames, leave_after_frames, exit_when_session_ends)
                    .chain()
                    .in_set(XrVisitSystems::Track),
            )
            .add_systems(XrFirst, watch_the_runtime.before(XrHandleEvents::Poll))
            .add_systems(Update, place_at_spawn.in_set(XrVisitSystems::Track).after(follow_head))
            .add_systems(Last, write_report_on_exit)
            .add_plugins((
                controllers::ControllersPlugin,
                spectator::SpectatorPlugin,
                panel::HotspotPanelPlugin,
                locomotion::TourInHeadsetPlugin,
            ));
    }
}

fn log_states(
    mut changes: MessageReader<XrStateChanged>,
    mut log: ResMut<XrSessionLog>,
    config: Option<Res<OxrCurrentSessionConfig>>,
) {
    for XrStateChanged(state) in changes.read() {
        // OpenXR's synchronized, visible and focused states are all `Running` here.
        let name = format!("{state:?}");
        if log.states.last() != Some(&name) {
            info!("headset session: {name}");
            log.states.push(name);
        }
    }
    if let Some(config) = config
        && log.eye_resolution.is_none()
    {
        log.eye_resolution = Some([config.resolution.x, config.resolution.y]);
        info!("headset: {}×{} per eye", config.resolution.x, config.resolution.y);
    }
}

/// Eye cameras get the venue's look (sky, fog, tonemapping follow [`VenueCamera`]) and lead
/// level-of-detail choices over the desktop's spectator (a higher order).
fn dress_eye_cameras(mut commands: Commands, mut eyes: Query<(Entity, &XrCamera, &mut Camera), Added<XrCamera>>) {
    for (entity, eye, mut camera) in &mut eyes {
        camera.order = 1 + eye.0 as isize;
        commands.entity(entity).insert(VenueCamera);
    }
}

fn follow_head(eyes: Query<(&XrCamera, &Camera, &Transform, &GlobalTransform)>, mut head: ResMut<XrHead>) {
    let mut sum = Vec3::ZERO;
    let mut rotation = None;
    let mut n = 0;
    for (eye, camera, local, transform) in &eyes {
        // An eye the runtime has not located yet sits at the play space's origin.
        if !camera.is_active || *local == Transform::IDENTITY {
            continue;
        }
        sum += transform.translation();
        if eye.0 == 0 || rotation.is_none() {
            rotation = Some(transform.rotation());
        }
        n += 1;
    }
    head.0 = rotation.map(|r| Transform::from_translation(sum / n as f32).with_rotation(r));
}

fn count_frames(
    frame: Option<Res<OxrFrameState>>,
    state: Option<Res<XrState>>,
    eyes: Query<(&XrCamera, &Camera, &Transform, &GlobalTransform)>,
    mut log: ResMut<XrSessionLog>,
) {
    let (Some(frame), Some(XrState::Running)) = (frame, state.as_deref()) else { return };
    if !frame.is_changed() || !frame.should_render {
        return;
    }
    let now = Instant::now();
    if let Some(last) = log.last_frame.replace(now) {
        if log.frame_ms.len() >= 10_000 {
            log.frame_ms.pop_front();
        }
        log.frame_ms.push_back(now.duration_since(last).as_secs_f64() * 1000.0);
    }
    log.display_period_ms = Some(frame.predicted_display_period.as_nanos() as f64 / 1e6);
    log.frames_rendered += 1;
    log.eye_cameras = eyes.iter().filter(|(_, c, ..)| c.is_active).count();
    // Sampled once the visitor stands at the spawn point (and its transforms have propagated),
    // so every sample is at the same placement.
    if log.spawn.is_some()
        && log.frames_rendered > log.spawned_at_frame + 1
        && log.frames_rendered.is_multiple_of(10)
        && let Some((_, _, local, global)) = eyes.iter().find(|(e, ..)| e.0 == 0)
    {
        let head = local.translation.to_array();
        let venue = global.translation().to_array();
        log.head_in_play_space.push(head);
        log.eye_in_venue.push(venue);
    }
}

/// Ending the session: asked for, then waited on.
#[derive(Debug, Default, Resource)]
struct ExitPlan {
    requested_at: Option<Instant>,
    ran: bool,
    started: Option<Instant>,
}

/// How long a session may take to reach `Running` (lavapipe compiles pipelines slowly).
const START_TIMEOUT: Duration = Duration::from_secs(120);

/// How long the runtime gets to end a session before the app exits anyway.
const END_TIMEOUT: Duration = Duration::from_secs(10);

fn leave_after_frames(
    settings: Res<XrVisitSettings>,
    log: Res<XrSessionLog>,
    mut plan: ResMut<ExitPlan>,
    mut request: MessageWriter<XrRequestExitMessage>,
) {
    if settings.frames > 0 && log.frames_rendered >= settings.frames && plan.requested_at.is_none() {
        info!("headset: {} frames drawn; ending the session", log.frames_rendered);
        plan.requested_at = Some(Instant::now());
        request.write_default();
    }
}

fn exit_when_session_ends(
    state: Option<Res<XrState>>,
    mut destroyed: MessageReader<XrSessionDestroyedMessage>,
    mut plan: ResMut<ExitPlan>,
    mut log: ResMut<XrSessionLog>,
    settings: Res<XrVisitSettings>,
    head: Res<XrHead>,
    spectators: Query<(Entity, &Transform), With<spectator::SpectatorCamera>>,
    mut commands: Commands,
    mut exit: MessageWriter<AppExit>,
) {
    if matches!(state.as_deref(), Some(XrState::Running)) {
        plan.ran = true;
    }
    let ended = destroyed.read().count() > 0;
    // The runtime's loss-pending end (mapped to `Exiting { should_restart: true }`) is a lost
    // runtime, not a visit ending: the supervising process takes over.
    if plan.ran && log.lost.is_none() && log.states.iter().any(|s| s.contains("should_restart: true")) {
        log.lost = Some("the OpenXR runtime is losing the session (loss pending)".into());
        error!("the OpenXR runtime is losing the session; exiting");
        exit.write(AppExit::from_code(EXIT_RUNTIME_LOST));
        return;
    }
    // A session that never runs (the runtime stalls, or OpenXR's start failed after the probe)
    // counts as lost too, so the visit is not left frozen.
    if !plan.ran && log.lost.is_none() {
        let since = *plan.started.get_or_insert_with(Instant::now);
        if since.elapsed() > START_TIMEOUT {
            log.lost = Some(format!("the headset session did not start within {START_TIMEOUT:?}"));
            error!("the headset session did not start within {START_TIMEOUT:?}; exiting");
            exit.write(AppExit::from_code(EXIT_RUNTIME_LOST));
            return;
        }
    }
    if ended && plan.ran {
        log.ended_cleanly =
            log.states.iter().any(|s| s == "Stopping") && log.states.iter().any(|s| s.starts_with("Exiting"));
        info!("headset session ended");
        // Asked to end (frame limit), or the runtime ended it: either way the visit is over
        // unless the visitor may carry on at the desktop.
        if plan.requested_at.is_some() || settings.mode == XrMode::Require {
            exit.write(AppExit::Success);
        } else {
            // The spectator camera becomes the desktop visitor's, from where the head was.
            for (camera, transform) in &spectators {
                let view = head.0.unwrap_or(*transform);
                commands.entity(camera).remove::<spectator::SpectatorCamera>().insert(
                    crate::engine::camera::CameraRig::looking(
                        view.translation,
                        view.translation + *view.forward() * 4.0,
                    ),
                );
            }
            info!("the visit carries on at the desktop");
        }
    }
    if let Some(at) = plan.requested_at
        && at.elapsed() > END_TIMEOUT
        && !ended
    {
        warn!("headset: the runtime did not end the session within {END_TIMEOUT:?}; exiting");
        log.lost.get_or_insert_with(|| "the session did not end when asked".into());
        exit.write(AppExit::Success);
        plan.requested_at = None;
    }
}

fn write_report_on_exit(
    mut exits: MessageReader<AppExit>,
    settings: Res<XrVisitSettings>,
    log: Res<XrSessionLog>,
    mut written: Local<bool>,
) {
    if exits.read().count() == 0 || *written {
        return;
    }
    *written = true;
    if let Some((median, p99)) = log.frame_time_summary() {
        info!(
            "headset: {} frames, median {median:.1} ms, 99th percentile {p99:.1} ms between frames",
            log.frames_rendered
        );
    }
    if let Some(path) = &settings.report {
        let json = serde_json::to_string_pretty(&*log).expect("the log serialises");
        if let Err(e) = std::fs::write(path, json) {
            error!("cannot write the headset report {}: {e}", path.display());
        }
    }
}

/// Exit status of an engine whose headset runtime went away mid-session (with `--xr`, the
/// supervising process then carries the visit on at the desktop).
pub const EXIT_RUNTIME_LOST: u8 = 3;

/// Set once the headset app is built: from then on, a panic inside OpenXR's frame loop means
/// the runtime went away (bevy_mod_openxr panics on a lost runtime), and the `parvis` binary's
/// panic hook ends the process with [`EXIT_RUNTIME_LOST`] and a message instead of a crash report.
pub static SESSION_STARTED: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// Notices between frames that the runtime has gone (a view query fails with a lost instance
/// or session, or a runtime failure): the session is marked unavailable, which stops OpenXR's
/// frame loop in both worlds before it talks to the dead runtime again, the session log is
/// written, and the app ends with [`EXIT_RUNTIME_LOST`]. (A runtime that dies while a frame
/// call waits on it is caught by the panic hook instead.)
#[allow(clippy::too_many_arguments, reason = "a Bevy system: each argument is a query or resource it needs")]
fn watch_the_runtime(
    session: Option<Res<OxrSession>>,
    space: Option<Res<XrPrimaryReferenceSpace>>,
    frame: Option<Res<OxrFrameState>>,
    state: Option<ResMut<XrState>>,
    started: Option<ResMut<OxrSessionStarted>>,
    eyes: Query<Entity, With<XrCamera>>,
    mut log: ResMut<XrSessionLog>,
    mut commands: Commands,
    mut exit: MessageWriter<AppExit>,
) {
    let (Some(session), Some(space), Some(frame), Some(mut state), Some(mut started)) =
        (session, space, frame, state, started)
    else {
        return;
    };
    if !started.0 || log.lost.is_some() {
        return;
    }
    let Err(
        error @ (openxr::sys::Result::ERROR_INSTANCE_LOST
        | openxr::sys::Result::ERROR_SESSION_LOST
        | openxr::sys::Result::ERROR_RUNTIME_FAILURE),
    ) = session.locate_views(openxr::ViewConfigurationType::PRIMARY_STEREO, frame.predicted_display_time, &space)
    else {
        return;
    };
    let reason = format!("the OpenXR runtime went away mid-session ({error})");
    error!("{reason}");
    *state = XrState::Unavailable;
    started.0 = false;
    for eye in &eyes {
        commands.entity(eye).despawn();
    }
    log.states.push("Lost".into());
    log.lost = Some(reason);
    exit.write(AppExit::from_code(EXIT_RUNTIME_LOST));
}

/// Standing eye height assumed when the floor under a viewpoint cannot be found.
const EYE_HEIGHT: f32 = 1.65;

/// Puts the play space at the scene's spawn viewpoint, facing where it looks, with the floor
/// under the viewpoint (found with the venue's colliders) as the play space's floor. Waits for
/// the scene, the colliders and the first head pose, so the head itself lands on the spot.
#[allow(clippy::too_many_arguments, reason = "a Bevy system: each argument is a query or resource it needs")]
fn place_at_spawn(
    scene: Option<Res<CurrentScene>>,
    start: Option<Res<StartViewpoint>>,
    mut xr_head: ResMut<XrHead>,
    comfort: Res<ComfortSettings>,
    rapier: ReadRapierContext,
    mut roots: Query<&mut Transform, With<XrTrackingRoot>>,
    mut log: ResMut<XrSessionLog>,
    mut tries: Local<u32>,
) {
    if log.spawn.is_some() {
        return;
    }
    let (Some(scene), Some(head)) = (scene, xr_head.0) else { return };
    let Ok(mut root) = roots.single_mut() else { return };
    let requested = start.as_ref().and_then(|s| s.0.as_deref()).or(scene.0.xr_spawn.as_deref());
    let (eye, look) = match pick_viewpoint(&scene.0, requested) {
        Some(v) => (Vec3::from(v.position), Vec3::from(v.look_at)),
        None => (Vec3::new(0.0, EYE_HEIGHT, 5.0), Vec3::new(0.0, EYE_HEIGHT, 0.0)),
    };
    // Colliders join rapier's query structures at the next physics step: give them a few frames.
    let floor = locomotion::floor_below(&rapier, eye);
    *tries += 1;
    if floor.is_none() && *tries < 60 {
        return;
    }
    let floor = floor.unwrap_or(eye.y - EYE_HEIGHT);
    let placed = locomotion::stand_at(&root, head.translation, eye, look, floor, comfort.floor_offset());
    locomotion::move_root(&mut root, &mut xr_head, placed);
    log.spawn = Some(root.translation.to_array());
    log.spawned_at_frame = log.frames_rendered;
    info!("headset: visitor placed at ({:.2}, {:.2}, {:.2}), floor at {floor:.2} m", eye.x, floor, eye.z);
}
