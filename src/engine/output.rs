//! Offscreen output: images cameras render into and the CPU reads back, writing them as PNG,
//! and comparing two pictures (golden images). The app's `HeadlessRenderer` drives frames
//! with these.

use bevy::prelude::*;

use bevy::render::render_resource::{TextureFormat, TextureUsages};
use thiserror::Error;

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

/// Writes pixels as a PNG file.
pub fn save_png(image: &image::RgbaImage, path: &std::path::Path) -> Result<(), OutputError> {
    image
        .save_with_format(path, image::ImageFormat::Png)
        .map_err(|source| OutputError::Write { path: path.display().to_string(), source })
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
    Some(ImageDiff { mean_abs: sum as f64 / channels.max(1) as f64, max_abs, pixels_over, bbox, heatmap })
}
