//! Headless output: rendering the venue into an image with no window, frame by frame, and
//! reading the pixels back — for `parvis render`, headless `parvis run`, tests and benchmarks.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use bevy::asset::RecursiveDependencyLoadState;
use bevy::camera::{RenderTarget, ShadowLodOrigin};
use bevy::prelude::*;

use bevy::render::render_resource::{PollType, TextureFormat, TextureUsages};
use bevy::render::renderer::RenderDevice;
use bevy::render::view::screenshot::{Screenshot, ScreenshotCaptured};
use bevy::time::TimeUpdateStrategy;
use bevy::world_serialization::WorldAssetRoot;
use thiserror::Error;

use crate::app::{VenueSetup, headless_render_app};
use crate::camera::{AwaitingViewpoint, CameraRig};
use crate::command::{CurrentScene, RejectedCommand, SubmitCommand, VenueCommand};
use crate::environment::VenueCamera;
use crate::heritage::cloud::{CloudStatus, PointCloud, ScanPhase};
use crate::heritage::lod::{MeshScan, MeshScanStatus};

/// An image a camera can render into and the CPU can read back (screenshots of it).
pub fn readable_target(images: &mut Assets<Image>, size: UVec2) -> Handle<Image> {
    let mut image = Image::new_target_texture(size.x, size.y, TextureFormat::Rgba8UnormSrgb, None);
    image.texture_descriptor.usage |= TextureUsages::COPY_SRC;
    images.add(image)
}

/// Why headless rendering failed.
#[derive(Debug, Error)]
pub enum OutputError {
    /// A model of the scene could not be loaded.
    #[error("asset {path} failed to load: {reason}")]
    AssetFailed {
        /// Asset path.
        path: String,
        /// Loader's message.
        reason: String,
    },
    /// Something did not happen within the allowed number of frames.
    #[error("{what} did not happen within {frames} frames")]
    Timeout {
        /// What was awaited.
        what: &'static str,
        /// Frames waited.
        frames: u32,
    },
    /// A command was refused.
    #[error("command refused: {0}")]
    Rejected(String),
    /// The captured frame could not be converted.
    #[error("captured frame could not be read: {0}")]
    Readback(String),
    /// The image file could not be written.
    #[error("cannot write {path}: {source}")]
    Write {
        /// Output path.
        path: String,
        /// Encoder or I/O error.
        #[source]
        source: image::ImageError,
    },
}

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
            let _ = device.wgpu_device().poll(PollType::Wait {
                submission_index: None,
                timeout: None,
            });
        }
    }

    /// Submits a command from the local operator; it applies on the next frame.
    pub fn submit(&mut self, command: VenueCommand) {
        self.app.world_mut().write_message(SubmitCommand::local(command));
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
            if !world.contains_resource::<CurrentScene>() {
                continue;
            }
            let server = world.resource::<AssetServer>();
            let mut pending = false;
            let mut roots = world.try_query::<(&WorldAssetRoot, Option<&Children>)>().expect("component registered");
            for (root, children) in roots.iter(world) {
                // Loaded is not enough: the model's entities must have been spawned too, which
                // can take more frames than usual on a loaded machine.
                pending |= children.is_none();
                match server.get_recursive_dependency_load_state(&root.0) {
                    Some(RecursiveDependencyLoadState::Loaded) => {}
                    Some(RecursiveDependencyLoadState::Failed(e)) => {
                        return Err(OutputError::AssetFailed {
                            path: root.0.path().map(|p| p.path().display().to_string()).unwrap_or_default(),
                            reason: e.to_string(),
                        });
                    }
                    _ => pending = true,
                }
            }
            let mut clouds = world.try_query::<(&PointCloud, &CloudStatus)>().expect("component registered");
            for (cloud, status) in clouds.iter(world) {
                if let ScanPhase::Failed(reason) = &status.phase {
                    return Err(OutputError::AssetFailed { path: cloud.def.path.clone(), reason: reason.clone() });
                }
                // The picture is final once every node the view calls for is drawn.
                pending |= !status.settled();
            }
            let mut scans = world.try_query::<(&MeshScan, &MeshScanStatus)>().expect("component registered");
            for (scan, status) in scans.iter(world) {
                match &status.phase {
                    ScanPhase::Failed(reason) => return Err(OutputError::AssetFailed { path: scan.def.path.clone(), reason: reason.clone() }),
                    ScanPhase::Importing => pending = true,
                    // Levels are picked in the frame after the chunks spawn.
                    ScanPhase::Ready => pending |= status.levels_shown.is_empty() && status.groups_shown == 0,
                }
            }
            if !pending {
                // Let the spawned models' meshes and materials reach the GPU.
                self.step();
                self.step();
                return Ok(());
            }
        }
        Err(OutputError::Timeout {
            what: "loading the scene's models and scans",
            frames,
        })
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
        self.app
            .world_mut()
            .spawn(Screenshot::image(self.target.clone()))
            .observe(move |captured: On<ScreenshotCaptured>| {
                *sink.lock().expect("capture slot") = Some(captured.image.clone());
            });
        const READBACK_FRAMES: u32 = 8;
        for _ in 0..READBACK_FRAMES {
            self.step();
            if let Some(image) = slot.lock().expect("capture slot").take() {
                let dynamic = image.try_into_dynamic().map_err(|e| OutputError::Readback(e.to_string()))?;
                return Ok(dynamic.to_rgba8());
            }
        }
        Err(OutputError::Timeout {
            what: "reading the frame back",
            frames: READBACK_FRAMES,
        })
    }
}

/// Writes pixels as a PNG file.
pub fn save_png(image: &image::RgbaImage, path: &std::path::Path) -> Result<(), OutputError> {
    image.save_with_format(path, image::ImageFormat::Png).map_err(|source| OutputError::Write {
        path: path.display().to_string(),
        source,
    })
}

/// How two images differ, for golden-image tests.
#[derive(Debug, Clone, PartialEq)]
pub struct ImageDiff {
    /// Mean absolute difference per channel, 0–255.
    pub mean_abs: f64,
    /// Largest difference of any channel of any pixel.
    pub max_abs: u8,
    /// Pixels where some channel differs by more than the threshold given.
    pub pixels_over: usize,
    /// Bounding box `(x0, y0, x1, y1)` (inclusive) of those pixels, if any.
    pub bbox: Option<(u32, u32, u32, u32)>,
    /// Image of the per-pixel difference, amplified for viewing.
    pub heatmap: image::RgbaImage,
}

/// Compares two images of the same size; a pixel counts as changed when a channel differs by
/// more than `threshold`. Alpha is ignored.
pub fn diff_images(a: &image::RgbaImage, b: &image::RgbaImage, threshold: u8) -> Option<ImageDiff> {
    if a.dimensions() != b.dimensions() {
        return None;
    }
    let mut sum = 0u64;
    let mut max_abs = 0u8;
    let mut pixels_over = 0;
    let mut bbox: Option<(u32, u32, u32, u32)> = None;
    let mut heatmap = image::RgbaImage::new(a.width(), a.height());
    for (x, y, pa) in a.enumerate_pixels() {
        let pb = b.get_pixel(x, y);
        let d = (0..3).map(|c| pa[c].abs_diff(pb[c])).max().unwrap_or(0);
        sum += (0..3).map(|c| u64::from(pa[c].abs_diff(pb[c]))).sum::<u64>();
        max_abs = max_abs.max(d);
        let v = d.saturating_mul(4);
        heatmap.put_pixel(x, y, image::Rgba([v, v, v, 255]));
        if d > threshold {
            pixels_over += 1;
            bbox = Some(match bbox {
                None => (x, y, x, y),
                Some((x0, y0, x1, y1)) => (x0.min(x), y0.min(y), x1.max(x), y1.max(y)),
            });
        }
    }
    let channels = u64::from(a.width()) * u64::from(a.height()) * 3;
    Some(ImageDiff {
        mean_abs: sum as f64 / channels.max(1) as f64,
        max_abs,
        pixels_over,
        bbox,
        heatmap,
    })
}
