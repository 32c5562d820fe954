//! A venue rendered offscreen: no window, no event loop, frames driven by the caller with a
//! fixed time step, and the pixels read back — for `parvis render`, headless `parvis run`,
//! `parvis replay --out`, tests and benchmarks.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use bevy::camera::{RenderTarget, ShadowLodOrigin};
use bevy::prelude::*;
use bevy::render::render_resource::PollType;
use bevy::render::renderer::RenderDevice;
use bevy::render::view::screenshot::{Screenshot, ScreenshotCaptured};
use bevy::time::TimeUpdateStrategy;

use super::loading::venue_loading;
use super::{VenueSetup, headless_render_app};
use crate::engine::camera::{AwaitingViewpoint, CameraRig};
use crate::engine::command::{RejectedCommand, SubmitCommand};
use crate::engine::environment::VenueCamera;
use crate::engine::heritage::cloud::{CloudStatus, ScanPhase};
use crate::engine::heritage::lod::MeshScanStatus;
use crate::engine::output::{OutputError, readable_target};
use crate::model::command::VenueCommand;

/// A venue rendered offscreen into an image of fixed size, with time advancing by a fixed step
/// per frame so that the same commands always give the same picture.
pub struct HeadlessRenderer {
    app: App,
    target: Handle<Image>,
    camera: Entity,
}

/// Frames allowed for models to load before giving up.
const LOAD_FRAMES: u32 = 600;
/// Longest wait for scans to import.
const IMPORT_TIMEOUT: Duration = Duration::from_secs(30 * 60);

impl HeadlessRenderer {
    /// Builds the app and its offscreen target. The scene is loaded on the first frame.
    pub fn new(setup: VenueSetup, size: UVec2) -> Self {
        let mut app = headless_render_app(setup);
        app.insert_resource(TimeUpdateStrategy::ManualDuration(Duration::from_secs_f64(1.0 / 60.0)));
        let target = readable_target(&mut app.world_mut().resource_mut::<Assets<Image>>(), size);
        let camera = app
            .world_mut()
            .spawn((
                Name::new("headless camera"),
                Camera3d::default(),
                RenderTarget::Image(target.clone().into()),
                // With no window, Bevy cannot guess which camera's position should decide
                // the level of detail of point and spot light shadows.
                ShadowLodOrigin,
                // Overlays (subtitles, hotspot panels) draw on the captured picture, as a
                // stream would show them.
                IsDefaultUiCamera,
                VenueCamera,
                // The headless picture is what a stream or a recording sends.
                crate::engine::program::ProgramCamera,
                CameraRig::looking(Vec3::new(0.0, 5.0, 15.0), Vec3::ZERO),
                AwaitingViewpoint,
            ))
            .id();
        Self { app, target, camera }
    }

    /// The app, for inspection and for tests that reach into the world.
    pub fn app_mut(&mut self) -> &mut App {
        &mut self.app
    }

    /// The camera entity.
    pub fn camera(&self) -> Entity {
        self.camera
    }

    /// Runs one frame and waits for the GPU to finish it.
    pub fn step(&mut self) {
        self.app.update();
        if let Some(device) = self.app.world().get_resource::<RenderDevice>() {
            // Waiting keeps frames from piling up on a slow adapter and makes timing honest.
            let _ = device.wgpu_device().poll(PollType::Wait { submission_index: None, timeout: None });
        }
    }

    /// Submits a command from the local operator; it applies on the next frame.
    pub fn submit(&mut self, command: VenueCommand) {
        self.app.world_mut().write_message(SubmitCommand::local(command));
    }

    /// Plays `show` from where its transport stands to `at` seconds on its clock, in frames
    /// that land just past each cue (the silent mixer's clock moves with the frames, so a
    /// cue fires where it would live, and a long show takes as many frames as it has cues).
    /// The transport is left paused at `at`. Returns the number of cues fired.
    pub fn play_show_to(&mut self, show: &str, at: f64) -> Result<usize, OutputError> {
        use crate::engine::show::clock::ShowClock;
        use crate::engine::show::{Shows, TransportState};
        use crate::model::command::TransportAction;

        let world = self.app.world_mut();
        let block = world.get_resource::<ShowClock>().map_or(1.0 / 3000.0, ShowClock::block_seconds);
        let fired_before = world.resource::<Shows>().fired.len();
        // Frames as long as the next cue is far; Bevy caps a frame's time step otherwise.
        world.resource_mut::<Time<Virtual>>().set_max_delta(Duration::from_secs(86_400));
        let transport = |action| VenueCommand::Transport { show: show.to_owned(), action };
        self.submit(transport(TransportAction::Play));
        self.step();
        let mut frames = 0u32;
        loop {
            let world = self.app.world();
            let shows = world.resource::<Shows>();
            let Some(running) = shows.running.as_ref().filter(|r| r.plan.name == show) else {
                return Err(OutputError::Rejected(format!("show {show:?} is not on the transport")));
            };
            if running.position >= at - 1e-9 || running.state == TransportState::Stopped {
                break;
            }
            let next = running.runner.next_due(&running.plan).map_or(at, |due| due.planned + block);
            let step = next.min(at) - running.position;
            frames += 1;
            if frames > 100_000 {
                return Err(OutputError::Timeout { what: "reaching the show's time", frames });
            }
            self.app.insert_resource(TimeUpdateStrategy::ManualDuration(Duration::from_secs_f64(step.max(block))));
            self.step();
        }
        self.app.insert_resource(TimeUpdateStrategy::ManualDuration(Duration::from_secs_f64(1.0 / 60.0)));
        self.submit(transport(TransportAction::Pause));
        self.step();
        Ok(self.app.world().resource::<Shows>().fired.len() - fired_before)
    }

    /// Steps until the scene is built and every model has loaded and been spawned.
    /// Fails on the first model that cannot load, or on a refused command.
    pub fn wait_until_ready(&mut self) -> Result<(), OutputError> {
        let mut rejected_cursor = self.app.world().resource::<Messages<RejectedCommand>>().get_cursor();
        let started = std::time::Instant::now();
        let mut frames = 0;
        loop {
            // Frames bound model loading; a scan's import runs on its own thread at its own
            // pace (minutes for a large one) and is bounded in time instead.
            if self.importing() {
                // The frames for loading count from the end of the imports.
                frames = 0;
            }
            if frames >= LOAD_FRAMES || started.elapsed() > IMPORT_TIMEOUT {
                break;
            }
            frames += 1;
            self.step();
            let world = self.app.world();
            if let Some(r) = rejected_cursor.read(world.resource::<Messages<RejectedCommand>>()).next() {
                return Err(OutputError::Rejected(format!("{}: {}", r.command.summary(), r.error)));
            }
            if venue_loading(world)? {
                // Let the spawned models' meshes and materials reach the GPU.
                self.step();
                self.step();
                return Ok(());
            }
        }
        Err(OutputError::Timeout { what: "loading the scene's models and scans", frames })
    }

    /// Whether a point cloud or mesh scan is still being imported.
    fn importing(&mut self) -> bool {
        let world = self.app.world_mut();
        let clouds = world.query::<&CloudStatus>().iter(world).any(|s| s.phase == ScanPhase::Importing);
        clouds || world.query::<&MeshScanStatus>().iter(world).any(|s| s.phase == ScanPhase::Importing)
    }

    /// Renders a frame and reads it back as RGBA pixels.
    pub fn capture(&mut self) -> Result<image::RgbaImage, OutputError> {
        let slot: Arc<Mutex<Option<Image>>> = Arc::default();
        let sink = slot.clone();
        self.app.world_mut().spawn(Screenshot::image(self.target.clone())).observe(
            move |captured: On<ScreenshotCaptured>| {
                *sink.lock().expect("capture slot") = Some(captured.image.clone());
            },
        );
        const READBACK_FRAMES: u32 = 8;
        for _ in 0..READBACK_FRAMES {
            self.step();
            if let Some(image) = slot.lock().expect("capture slot").take() {
                let dynamic = image.try_into_dynamic().map_err(|e| OutputError::Readback(e.to_string()))?;
                return Ok(dynamic.to_rgba8());
            }
        }
        Err(OutputError::Timeout { what: "reading the frame back", frames: READBACK_FRAMES })
    }
}
