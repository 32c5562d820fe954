//! Bevy's UI laid out into an image and shown on quads in the venue: the way text reaches a
//! headset, where a screen-space overlay cannot be seen, and the way audience texts float in
//! the venue. One piece for every such panel: the camera that renders UI into an image, the
//! material of a quad showing it, and the font panels are written in.

use bevy::camera::RenderTarget;
use bevy::camera::visibility::RenderLayers;
use bevy::math::Affine2;
use bevy::prelude::*;
use bevy::render::render_resource::TextureFormat;

/// DejaVu Sans (Bitstream Vera licence, see `assets/fonts/DejaVuSans-LICENSE.txt`), built in so
/// that titles and texts in any Latin, Greek or Cyrillic language show whatever the assets root:
/// Bevy's default font covers ASCII only. The desktop overlay uses it too.
pub const UI_FONT: &[u8] = include_bytes!("../../assets/fonts/DejaVuSans.ttf");

/// An image that UI is rendered into, and the camera rendering it.
#[derive(Debug, Clone)]
pub struct UiImage {
    /// The image, to show on quads (see [`panel_material`]).
    pub image: Handle<Image>,
    /// The camera; UI roots target it with `UiTargetCamera`. It starts inactive: activate it
    /// while there is something to show, so an idle panel costs no render pass.
    pub camera: Entity,
}

/// Spawns a camera rendering UI into a new transparent image of `size` pixels. `order` puts it
/// before the views that show it (so they sample this frame's panel); `layer` is a render
/// layer no 3D entity is on, so the camera culls the venue at once.
pub fn spawn_ui_image(
    commands: &mut Commands,
    images: &mut Assets<Image>,
    name: &'static str,
    size: UVec2,
    order: isize,
    layer: usize,
) -> UiImage {
    let image = images.add(Image::new_target_texture(size.x, size.y, TextureFormat::Rgba8UnormSrgb, None));
    let camera = commands
        .spawn((
            Name::new(name),
            Camera2d,
            Camera { order, clear_color: ClearColorConfig::Custom(Color::NONE), is_active: false, ..default() },
            RenderTarget::Image(image.clone().into()),
            Msaa::Off,
            RenderLayers::layer(layer),
        ))
        .id();
    UiImage { image, camera }
}

/// The material of a quad showing the part `uv` of a UI image: unlit and without fog (a panel
/// reads the same in any light), with the premultiplied colour the UI leaves when it blends
/// over a transparent clear.
pub fn panel_material(image: Handle<Image>, uv: Affine2) -> StandardMaterial {
    StandardMaterial {
        base_color_texture: Some(image),
        uv_transform: uv,
        alpha_mode: AlphaMode::Premultiplied,
        unlit: true,
        fog_enabled: false,
        ..default()
    }
}

/// The built-in [`UI_FONT`] as a font asset.
pub fn ui_font(fonts: &mut Assets<Font>) -> Handle<Font> {
    fonts.add(Font::from_bytes(UI_FONT.to_vec()))
}
