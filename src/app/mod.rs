//! The app layer owns assembling the engine's plugins into an app — with a window
//! ([`windowed_app`]), headless for rendering to images ([`headless_render_app`],
//! [`headless::HeadlessRenderer`]), in a headset ([`xr_app`]), or with no rendering at all for
//! tests, replay and servers ([`core_app`]). Edges are attached to an app by their own
//! `attach` (e.g. `AudienceServer::attach`); the `parvis` binary parses the command line and
//! calls these.
//!
//! What it may use: everything below it (model, engine, edges). Nothing imports it but the
//! binary, the tests and the benchmarks.

pub mod headless;
pub mod loading;
pub mod shutdown;

use std::path::PathBuf;

use bevy::asset::AssetPlugin;
use bevy::prelude::*;
use bevy::render::RenderPlugin;
use bevy::render::pipelined_rendering::PipelinedRenderingPlugin;
use bevy::window::ExitCondition;
use bevy::winit::WinitPlugin;
use bevy::world_serialization::WorldAsset;

use crate::engine::audience::AudiencePlugin;
use crate::engine::camera::{AwaitingViewpoint, CameraPlugin, CameraRig, StartViewpoint};
use crate::engine::command::{
    CommandLog, CommandLogFile, CommandPlugin, LogSync, RestoreCommand, SubmitCommand, VenueAssets,
};
use crate::engine::control::ControlPlugin;
use crate::engine::effects::EffectsPlugin;
use crate::engine::environment::{EnvironmentPlugin, VenueCamera};
use crate::engine::heritage::cloud::PointCloudPlugin;
use crate::engine::heritage::lod::MeshLodPlugin;
use crate::engine::heritage::measure::MeasurePlugin;
use crate::engine::hud::HudPlugin;
use crate::engine::rest::RestPlugin;
use crate::engine::scene::ScenePlugin;
use crate::engine::scene::watch::SceneWatcher;
use crate::engine::schedule::VenueSchedulePlugin;
use crate::engine::show::chase::ChasePlugin;
use crate::engine::show::clock::ShowClock;
use crate::engine::show::{ShowMode, ShowPlugin};
use crate::engine::stage_text::{StageTextPlugin, StageTextRenderPlugin};
use crate::engine::visit::narration::Narrator;
use crate::engine::visit::ui::VisitUiPlugin;
use crate::engine::visit::{VisitPlugin, VisitorLanguage};
use crate::model::assets_root::AssetsRoot;
use crate::model::command::{LoggedCommand, VenueCommand};
use crate::model::scene::format::SceneFile;

/// The venue's core, with no rendering: the frame's order, commands, stage parameters, the
/// scene and its environment, the audience's venue side, effects, stage texts, visits and
/// measuring. Needs `AssetPlugin` and the `Mesh` and `StandardMaterial` asset types.
pub struct VenueCorePlugin;

impl Plugin for VenueCorePlugin {
    fn build(&self, app: &mut App) {
        app.add_plugins((
            VenueSchedulePlugin,
            RestPlugin,
            CommandPlugin,
            ScenePlugin,
            EnvironmentPlugin,
            AudiencePlugin,
            EffectsPlugin,
            StageTextPlugin,
            VisitPlugin { audio: false },
            MeasurePlugin,
            ShowPlugin,
            ChasePlugin,
            ControlPlugin,
            crate::engine::program::ProgramPlugin,
            crate::engine::performer::PerformerPlugin,
        ))
        .add_plugins((crate::engine::captions::CaptionsPlugin, crate::engine::net::NetPlugin));
    }
}

/// What a venue app starts with.
#[derive(Debug, Clone)]
pub struct VenueSetup {
    /// The scene to load first.
    pub scene: SceneFile,
    /// A scene file to watch for changes (hot reload); `None` for the built-in scene.
    pub watch: Option<PathBuf>,
    /// The folder asset paths are relative to.
    pub assets: AssetsRoot,
    /// Viewpoint to start at, instead of the scene's spawn.
    pub viewpoint: Option<String>,
    /// Commands applied right after the scene loads (e.g. `--set`, or a replayed log).
    pub initial_commands: Vec<SubmitCommand>,
    /// File to append every applied command to, as JSON lines.
    pub command_log: Option<PathBuf>,
    /// The visitor's language (BCP 47); `None` for the venue's first.
    pub language: Option<String>,
    /// A show to carry on from its log (see [`VenueSetup::resume`]): its commands are applied
    /// again with their own sequence numbers, in place of loading `scene` anew, and new
    /// commands are numbered after `after`.
    pub restore: Option<Restore>,
    /// When the command log is forced to the disk.
    pub log_sync: LogSync,
    /// Replaying a log: shows follow its cue records and never run their clock.
    pub replay: bool,
    /// A recorded performance played onto the performers in place of their sources (`--performers`).
    pub performances: Vec<crate::model::performer::recording::PoseRecord>,
}

/// The part of a logged show that is restored.
#[derive(Debug, Clone, Default)]
pub struct Restore {
    /// The entries applied again, from the show's last scene load on.
    pub entries: Vec<LoggedCommand>,
    /// The highest sequence number of the log: new commands follow it.
    pub after: u64,
}

impl VenueSetup {
    /// A setup for `scene` with the project's assets root and nothing else.
    pub fn new(scene: SceneFile, assets: AssetsRoot) -> Self {
        Self {
            scene,
            watch: None,
            assets,
            viewpoint: None,
            initial_commands: Vec::new(),
            command_log: None,
            language: None,
            restore: None,
            log_sync: LogSync::Frame,
            replay: false,
            performances: Vec::new(),
        }
    }

    /// Carries on the show of a command log: the scene of its last `load_scene`, and every
    /// command since then applied again with its origin and sequence number, so that the stage
    /// is as the log left it — except the passing ones (bursts of effects, audience texts, a
    /// tour in progress), which would all replay at once. New commands are numbered after the
    /// log's. Returns the number of commands restored, or `None` (and changes nothing) when
    /// the log never loaded a scene.
    pub fn resume_from(&mut self, entries: &[LoggedCommand]) -> Option<usize> {
        let lasting = crate::model::net::lasting_entries(entries)?;
        let VenueCommand::LoadScene { scene } = &lasting.first()?.command else { return None };
        self.scene = (**scene).clone();
        let restored = lasting.len();
        self.restore = Some(Restore { entries: lasting, after: entries.iter().map(|e| e.seq).max().unwrap_or(0) });
        Some(restored)
    }
}

/// The setup that replays a command log (`parvis replay`): the scene of its first
/// `load_scene`, then every entry asked again by its own origin, so that permissions apply
/// exactly as they did live. `None` when the log never loaded a scene.
pub fn replay_setup(entries: &[LoggedCommand], assets: AssetsRoot) -> Option<VenueSetup> {
    let scene = entries.iter().find_map(|e| match &e.command {
        VenueCommand::LoadScene { scene } => Some((**scene).clone()),
        _ => None,
    })?;
    let mut setup = VenueSetup::new(scene, assets);
    setup.initial_commands = entries.iter().map(SubmitCommand::from).collect();
    setup.replay = true;
    Some(setup)
}

fn asset_plugin(assets: &AssetsRoot) -> AssetPlugin {
    AssetPlugin { file_path: assets.dir().to_string_lossy().into_owned(), ..default() }
}

/// Loads the scene and queues the initial commands: all of it through the command pipeline.
fn add_venue(app: &mut App, setup: VenueSetup) {
    app.add_plugins(VenueCorePlugin)
        .insert_resource(VenueAssets(setup.assets.clone()))
        .insert_resource(StartViewpoint(setup.viewpoint.clone()))
        .insert_resource(ShowMode { live: !setup.replay })
        .insert_resource(VisitorLanguage(setup.language.clone().unwrap_or_default()));
    if !setup.performances.is_empty() {
        app.insert_resource(crate::engine::performer::PerformanceOverride(setup.performances.clone()));
    }
    let world = app.world_mut();
    match setup.restore {
        // The restored entries begin with the log's own scene load.
        Some(restore) => {
            world.insert_resource(CommandLog::starting_after(restore.after));
            for entry in restore.entries {
                world.write_message(RestoreCommand(entry));
            }
        }
        None => {
            world.write_message(SubmitCommand::local(VenueCommand::LoadScene { scene: Box::new(setup.scene) }));
        }
    }
    for command in setup.initial_commands {
        world.write_message(command);
    }
    if let Some(path) = &setup.command_log {
        match CommandLogFile::append_to(path) {
            Ok(file) => {
                world.insert_resource(file.syncing(setup.log_sync));
            }
            Err(e) => error!("cannot open the command log {}: {e}", path.display()),
        }
    }
    if let Some(path) = setup.watch {
        let doorbell = world.resource::<crate::engine::rest::Rest>().doorbell.clone();
        match SceneWatcher::spawn(&path, setup.assets, doorbell) {
            Ok(watcher) => {
                world.insert_resource(watcher);
            }
            Err(e) => warn!("cannot watch {} for changes: {e}", path.display()),
        }
    }
}

/// An app with the venue's logic and no rendering: for tests, replay and servers.
pub fn core_app(setup: VenueSetup) -> App {
    let mut app = App::new();
    app.add_plugins((MinimalPlugins, TransformPlugin, asset_plugin(&setup.assets)))
        .init_asset::<Mesh>()
        .init_asset::<StandardMaterial>()
        .init_asset::<WorldAsset>()
        .init_asset::<Image>();
    add_venue(&mut app, setup);
    app
}

/// Ends a windowed session after a number of frames, optionally saving the window first.
#[derive(Debug, Clone, Default, Resource)]
pub struct FrameLimit {
    /// Frames of the loaded venue to show before exiting.
    pub frames: u64,
    /// PNG file to save the window to after those frames; the run ends once it is saved.
    pub screenshot: Option<PathBuf>,
}

/// Where a `--frames` run stands: frames counted, and the screenshot asked for.
#[derive(Default)]
struct FrameCount {
    frame: u64,
    waited: u64,
    /// Whether counting has started (the venue loaded, or could not, or took too long).
    started: bool,
    /// The screenshot's entity and the frame it was asked at.
    asked: Option<(Entity, u64)>,
    /// The screenshot: 0 not yet saved, 1 saved, 2 could not be saved.
    saved: std::sync::Arc<std::sync::atomic::AtomicU8>,
}

/// Render pipelines still compiling, as the render world last saw them: a window draws
/// nothing of what waits for one (black, on lavapipe, for the first second or so), so frames
/// are counted only once none waits.
#[derive(Debug, Default, Resource)]
struct PipelinesWaiting(usize);

fn count_waiting_pipelines(
    mut main_world: ResMut<bevy::render::MainWorld>,
    pipelines: Res<bevy::render::render_resource::PipelineCache>,
) {
    if let Some(mut waiting) = main_world.get_resource_mut::<PipelinesWaiting>() {
        waiting.0 = pipelines.waiting_pipelines().count();
    }
}

/// Frames a `--frames` run waits for the venue to load before counting anyway.
const LOAD_WAIT_FRAMES: u64 = 3_000;
/// Frames after which an unanswered screenshot is asked again: Bevy drops one asked before the
/// window's surface exists, without a word.
const SCREENSHOT_RETRY: u64 = 30;
/// Frames past the limit to wait for a screenshot before giving up.
const SCREENSHOT_WAIT_FRAMES: u64 = 600;

/// Counts the frames of a `--frames` run from the first frame of the loaded venue (as `render`
/// waits for it), so that a small count does not end, or take its screenshot, on a venue still
/// loading, and only frames whose render pipelines are all compiled count. A venue that cannot
/// load, or takes longer than [`LOAD_WAIT_FRAMES`], is counted from then, with a warning. With a
/// screenshot, the run ends when the picture is saved.
fn stop_after_frame_limit(world: &mut World, mut state: Local<FrameCount>) {
    if !state.started {
        if state.waited < LOAD_WAIT_FRAMES {
            state.waited += 1;
            match loading::venue_loading(world) {
                Ok(true) => {}
                Ok(false) => return,
                Err(e) => warn!("counting frames without the whole venue: {e}"),
            }
        } else {
            warn!("the venue had not loaded after {LOAD_WAIT_FRAMES} frames; counting frames from now");
        }
        state.started = true;
    }
    let limit = world.resource::<FrameLimit>().clone();
    // A frame whose pipelines are still compiling does not show the venue (bounded: a
    // pipeline that never compiles does not hold the run for ever).
    if world.resource::<PipelinesWaiting>().0 > 0 && state.waited < LOAD_WAIT_FRAMES {
        state.waited += 1;
        return;
    }
    state.frame += 1;
    let frame = state.frame;
    let end = limit.frames.max(1);
    if frame < end {
        return;
    }
    let Some(path) = &limit.screenshot else {
        world.write_message(AppExit::Success);
        return;
    };
    match state.saved.load(std::sync::atomic::Ordering::Acquire) {
        1 => {
            world.write_message(AppExit::Success);
            return;
        }
        2 => {
            world.write_message(AppExit::error());
            return;
        }
        _ => {}
    }
    if frame > end + SCREENSHOT_WAIT_FRAMES {
        error!("the window could not be saved to {} in {SCREENSHOT_WAIT_FRAMES} frames", path.display());
        world.write_message(AppExit::error());
        return;
    }
    if state.asked.is_none_or(|(_, at)| frame >= at + SCREENSHOT_RETRY) {
        if let Some((old, _)) = state.asked.take()
            && let Ok(stale) = world.get_entity_mut(old)
        {
            stale.despawn();
        }
        let (saved, path) = (state.saved.clone(), path.clone());
        // Saved here rather than by Bevy's `save_to_disk`, which only logs a failure: a run
        // asked for a picture fails without one.
        let entity = world
            .spawn(bevy::render::view::screenshot::Screenshot::primary_window())
            .observe(move |captured: On<bevy::render::view::screenshot::ScreenshotCaptured>| {
                let result = captured
                    .image
                    .clone()
                    .try_into_dynamic()
                    .map_err(|e| e.to_string())
                    .and_then(|image| image.to_rgb8().save(&path).map_err(|e| e.to_string()));
                let outcome = match result {
                    Ok(()) => {
                        info!("saved the window to {}", path.display());
                        1
                    }
                    Err(e) => {
                        error!("the window could not be saved to {}: {e}", path.display());
                        2
                    }
                };
                saved.store(outcome, std::sync::atomic::Ordering::Release);
            })
            .id();
        state.asked = Some((entity, frame));
    }
}

/// Bevy's log, less the asset server's load errors: the venue says which model or texture
/// failed and what it does about it (`engine::scene::textures`), in one line, where the asset
/// server's would come first with its loader's type names.
/// Bevy's log output to stderr, without the asset server's lines (a broken file is said once,
/// by the venue). Apps built here add it; add it to a [`core_app`] that runs as a server.
pub fn log_plugin() -> bevy::log::LogPlugin {
    let default = bevy::log::LogPlugin::default();
    bevy::log::LogPlugin { filter: format!("{},bevy_asset::server=off", default.filter), ..default }
}

/// The desktop app: a window with the venue, a mouse-and-keyboard camera and an overlay.
/// With a [`FrameLimit`], it exits by itself.
pub fn windowed_app(setup: VenueSetup, limit: Option<FrameLimit>) -> App {
    let mut app = App::new();
    let title = format!("Parvis — {}", setup.scene.venue.title);
    app.add_plugins(
        DefaultPlugins
            .set(WindowPlugin {
                primary_window: Some(Window { title, resolution: (1280, 720).into(), ..default() }),
                ..default()
            })
            .set(asset_plugin(&setup.assets))
            .set(log_plugin())
            .disable::<bevy::app::TerminalCtrlCHandlerPlugin>(),
    )
    .add_plugins((
        shutdown::ShutdownPlugin,
        CameraPlugin { interactive: true },
        HudPlugin,
        StageTextRenderPlugin,
        PointCloudPlugin,
        MeshLodPlugin,
        VisitUiPlugin { interactive: true },
    ));
    add_venue(&mut app, setup);
    // The desktop visitor hears the narration (the core runs a silent mixer).
    app.insert_resource(Narrator::new(true));
    app.insert_resource(ShowClock::new(true));
    if let Some(limit) = limit {
        app.insert_resource(limit).init_resource::<PipelinesWaiting>().add_systems(Last, stop_after_frame_limit);
        app.sub_app_mut(bevy::render::RenderApp).add_systems(bevy::render::ExtractSchedule, count_waiting_pipelines);
    }
    app.world_mut().spawn((
        Name::new("visitor camera"),
        Camera3d::default(),
        VenueCamera,
        CameraRig::looking(Vec3::new(0.0, 5.0, 15.0), Vec3::ZERO),
        AwaitingViewpoint,
    ));
    app
}

/// Lets a window rest when nothing changes: Bevy's reactive update mode, with a frame asked
/// for while the venue needs frames ([`crate::engine::rest::Rest`]), the event loop woken when
/// an edge rings the doorbell, and a wait no longer than the venue's next wake-up.
pub fn rest_when_idle(app: &mut App) {
    use bevy::winit::{UpdateMode, WinitSettings};
    let wait = crate::engine::rest::HEARTBEAT;
    app.insert_resource(WinitSettings {
        focused_mode: UpdateMode::reactive(wait),
        unfocused_mode: UpdateMode::reactive_low_power(wait),
    })
    .add_systems(Startup, wake_the_window_on_ring)
    .add_systems(Last, ask_for_frames_while_busy.after(crate::engine::rest::SettleRest));
}

fn wake_the_window_on_ring(
    proxy: Option<Res<bevy::winit::EventLoopProxyWrapper>>,
    rest: Res<crate::engine::rest::Rest>,
) {
    let Some(proxy) = proxy else { return };
    let proxy: bevy::winit::EventLoopProxy<bevy::winit::WinitUserEvent> = (**proxy).clone();
    rest.doorbell.on_ring(move || {
        let _ = proxy.send_event(bevy::winit::WinitUserEvent::WakeUp);
    });
}

fn ask_for_frames_while_busy(
    rest: Res<crate::engine::rest::Rest>,
    mut settings: ResMut<bevy::winit::WinitSettings>,
    mut redraw: MessageWriter<bevy::window::RequestRedraw>,
) {
    use bevy::winit::UpdateMode;
    if rest.needs_frames() {
        redraw.write(bevy::window::RequestRedraw);
        return;
    }
    // Resting: the next frame comes with an input, a ring, or the venue's own wake-up time.
    let wait =
        rest.next_wake().saturating_duration_since(std::time::Instant::now()).max(std::time::Duration::from_millis(1));
    let mode = UpdateMode::reactive(wait);
    if settings.focused_mode != mode {
        settings.focused_mode = mode;
        settings.unfocused_mode = UpdateMode::reactive_low_power(wait);
    }
}

/// An app that renders without a window or an event loop; the caller drives its frames.
/// `finish` and `cleanup` have been called.
pub fn headless_render_app(setup: VenueSetup) -> App {
    let mut app = App::new();
    app.add_plugins(
        DefaultPlugins
            .set(WindowPlugin { primary_window: None, exit_condition: ExitCondition::DontExit, ..default() })
            .set(RenderPlugin {
                // Every pipeline is ready on the frame that needs it: no pop-in in captures.
                synchronous_pipeline_compilation: true,
                ..default()
            })
            .set(asset_plugin(&setup.assets))
            .set(log_plugin())
            .disable::<WinitPlugin>()
            .disable::<PipelinedRenderingPlugin>()
            .disable::<bevy::app::TerminalCtrlCHandlerPlugin>(),
    )
    .add_plugins((
        CameraPlugin { interactive: false },
        StageTextRenderPlugin,
        PointCloudPlugin,
        MeshLodPlugin,
        VisitUiPlugin { interactive: false },
    ));
    add_venue(&mut app, setup);
    app.finish();
    app.cleanup();
    app
}

/// How a headset visit's app is put together.
#[derive(Debug, Clone, Default)]
pub struct XrAppOptions {
    /// Comfort, teleport, spectator, frame limit and report.
    pub settings: crate::engine::xr::XrVisitSettings,
    /// What [`crate::engine::xr::probe`] found.
    pub runtime: Option<crate::engine::xr::RuntimeInfo>,
    /// Show the spectator view in a desktop window; without one (no display) it is drawn
    /// into an image of `spectator_size`, saved to `spectator_out` if given.
    pub window: bool,
    /// Size of the headless spectator image.
    pub spectator_size: UVec2,
    /// Where to save the headless spectator view at the end of a `frames` run.
    pub spectator_out: Option<PathBuf>,
}

/// The headset app: OpenXR renders the venue to both eyes (bevy_mod_openxr), and the desktop
/// shows the spectator view. Built only after [`crate::engine::xr::probe`] found a runtime and a
/// headset; if the runtime still fails, OpenXR's plugins fall back to a plain renderer.
pub fn xr_app(setup: VenueSetup, options: XrAppOptions) -> App {
    use bevy::app::ScheduleRunnerPlugin;
    use bevy_mod_openxr::init::OxrInitPlugin;
    use bevy_mod_openxr::types::AppInfo;

    crate::engine::xr::SESSION_STARTED.store(true, std::sync::atomic::Ordering::SeqCst);
    let mut app = App::new();
    let title = format!("Parvis — {} (spectator)", setup.scene.venue.title);
    let window = if options.window {
        WindowPlugin {
            primary_window: Some(Window { title, resolution: (1280, 720).into(), ..default() }),
            ..default()
        }
    } else {
        WindowPlugin { primary_window: None, exit_condition: ExitCondition::DontExit, ..default() }
    };
    // The headset's compositor paces frames (xrWaitFrame); pipelined rendering would add a
    // frame of latency between head motion and picture.
    let mut plugins = DefaultPlugins
        .set(window)
        .set(asset_plugin(&setup.assets))
        .set(log_plugin())
        .disable::<PipelinedRenderingPlugin>()
        .disable::<bevy::app::TerminalCtrlCHandlerPlugin>()
        .build();
    if !options.window {
        // The runtime paces frames while a session runs; before and after, a short wait keeps
        // the loop from spinning a core that lavapipe and the runtime need.
        plugins =
            plugins.disable::<WinitPlugin>().add(ScheduleRunnerPlugin::run_loop(std::time::Duration::from_millis(2)));
    }
    let plugins = bevy_mod_openxr::add_xr_plugins(plugins)
        .set(OxrInitPlugin { app_info: AppInfo { name: "Parvis".into(), ..default() }, ..default() });
    app.add_plugins(plugins)
        .add_plugins(shutdown::ShutdownPlugin)
        .add_plugins((
            CameraPlugin { interactive: options.window },
            StageTextRenderPlugin,
            PointCloudPlugin,
            MeshLodPlugin,
            VisitUiPlugin { interactive: options.window },
        ))
        .add_plugins(crate::engine::xr::XrVisitPlugin {
            settings: options.settings.clone(),
            runtime: options.runtime.clone(),
        });
    if options.window {
        app.add_plugins(HudPlugin);
    }
    add_venue(&mut app, setup);
    // A headset keeps its own frame rate: the runtime paces it.
    app.world_mut().resource_mut::<crate::engine::rest::Rest>().enabled = false;
    app.insert_resource(Narrator::new(true));
    app.insert_resource(ShowClock::new(true));
    let spectator = app
        .world_mut()
        .spawn((
            Name::new("spectator camera"),
            Camera3d::default(),
            VenueCamera,
            Transform::from_xyz(0.0, 5.0, 15.0).looking_at(Vec3::ZERO, Vec3::Y),
        ))
        .id();
    if options.settings.spectator == crate::engine::xr::spectator::SpectatorMode::Off {
        // Not following the head: the desktop's own camera, starting at the venue's viewpoint.
        app.world_mut()
            .entity_mut(spectator)
            .insert((CameraRig::looking(Vec3::new(0.0, 5.0, 15.0), Vec3::ZERO), AwaitingViewpoint));
    } else {
        app.world_mut().entity_mut(spectator).insert(crate::engine::xr::spectator::SpectatorCamera);
    }
    if !options.window {
        use bevy::camera::RenderTarget;
        let target = crate::engine::output::readable_target(
            &mut app.world_mut().resource_mut::<Assets<Image>>(),
            options.spectator_size.max(UVec2::ONE),
        );
        app.world_mut().entity_mut(spectator).insert((
            RenderTarget::Image(target.into()),
            IsDefaultUiCamera,
            bevy::camera::ShadowLodOrigin,
        ));
        if let Some(path) = options.spectator_out {
            app.insert_resource(crate::engine::xr::spectator::SpectatorCapture(path));
        }
    }
    app
}
