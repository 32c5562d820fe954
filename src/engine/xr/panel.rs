//! The open hotspot's panel in the headset: a screen-space overlay cannot be seen in a
//! headset, so the panel's title and text are laid out by Bevy's UI into an image, shown on a
//! quad in the venue a metre in front of the visitor, toward the hotspot, facing them.

use bevy::light::NotShadowCaster;
use bevy::math::Affine2;
use bevy::prelude::*;

use super::session::XrHead;
use crate::engine::command::CurrentScene;
use crate::engine::ui_panel::{UiImage, panel_material, spawn_ui_image, ui_font};
use crate::engine::visit::OpenHotspot;

/// Pixels of the panel's image.
const IMAGE: UVec2 = UVec2::new(1024, 640);
/// Width of the panel in the venue, metres: at a metre away, about 60 pixels a degree of text
/// on a 2 k headset, comfortably readable.
const WIDTH: f32 = 0.9;
/// Distance from the head, metres.
const DISTANCE: f32 = 1.0;
/// How far below the eyes the panel's centre sits, metres (reading looks slightly down).
const BELOW_EYES: f32 = 0.15;

#[derive(Resource)]
struct PanelParts {
    camera: Entity,
    quad: Entity,
    title: Entity,
    text: Entity,
}

/// Shows [`OpenHotspot`] as a panel in the venue.
pub struct HotspotPanelPlugin;

impl Plugin for HotspotPanelPlugin {
    fn build(&self, app: &mut App) {
        app.add_systems(Startup, build_panel)
            .add_systems(Update, show_open_hotspot.after(crate::engine::schedule::VenueSystems::Present));
    }
}

/// Where the panel goes: `DISTANCE` in front of the head toward the hotspot (level), a little
/// below the eyes, turned to face the head.
pub fn panel_pose(head: Vec3, hotspot: Vec3) -> Transform {
    let toward = Vec3::new(hotspot.x - head.x, 0.0, hotspot.z - head.z).normalize_or(Vec3::NEG_Z);
    let centre = head + toward * DISTANCE - Vec3::Y * BELOW_EYES;
    // The quad's front (+Z) faces the head.
    Transform::from_translation(centre).looking_to(toward, Vec3::Y)
}

fn build_panel(
    mut commands: Commands,
    mut images: ResMut<Assets<Image>>,
    mut meshes: ResMut<Assets<Mesh>>,
    mut materials: ResMut<Assets<StandardMaterial>>,
    mut fonts: ResMut<Assets<Font>>,
) {
    // Before the eyes' cameras (order -2), so they show this frame's panel; on layer 30.
    let UiImage { image, camera } = spawn_ui_image(&mut commands, &mut images, "hotspot panel camera", IMAGE, -2, 30);
    let font = ui_font(&mut fonts);
    let title = commands
        .spawn((
            Text::new(""),
            TextFont { font: font.clone().into(), font_size: FontSize::Px(64.0), ..default() },
            TextColor(Color::srgb(1.0, 0.84, 0.5)),
        ))
        .id();
    let text = commands
        .spawn((
            Text::new(""),
            TextFont { font: font.into(), font_size: FontSize::Px(38.0), ..default() },
            TextColor(Color::WHITE),
            TextLayout::new(Justify::Left, LineBreak::WordBoundary),
        ))
        .id();
    commands
        .spawn((
            Node {
                width: percent(100),
                height: percent(100),
                padding: UiRect::all(px(40)),
                row_gap: px(24),
                flex_direction: FlexDirection::Column,
                overflow: Overflow::clip(),
                border_radius: BorderRadius::all(px(32)),
                ..default()
            },
            BackgroundColor(Color::srgba(0.03, 0.03, 0.08, 0.88)),
            UiTargetCamera(camera),
        ))
        .add_children(&[title, text]);
    let material = materials.add(panel_material(image, Affine2::IDENTITY));
    let quad = commands
        .spawn((
            Name::new("hotspot panel"),
            Mesh3d(meshes.add(Rectangle::new(WIDTH, WIDTH * IMAGE.y as f32 / IMAGE.x as f32))),
            MeshMaterial3d(material),
            NotShadowCaster,
            Visibility::Hidden,
            Transform::default(),
        ))
        .id();
    commands.insert_resource(PanelParts { camera, quad, title, text });
}

#[allow(clippy::too_many_arguments, reason = "a Bevy system: each argument is a query or resource it needs")]
fn show_open_hotspot(
    open: Res<OpenHotspot>,
    head: Res<XrHead>,
    scene: Option<Res<CurrentScene>>,
    parts: Option<Res<PanelParts>>,
    mut texts: Query<&mut Text>,
    mut cameras: Query<&mut Camera>,
    mut quads: Query<(&mut Transform, &mut Visibility)>,
    log: Res<super::session::XrSessionLog>,
    mut placed_for: Local<Option<String>>,
    mut frames_since_spawn: Local<u32>,
) {
    let Some(parts) = parts else { return };
    // The head is known in the venue only once the visitor stands at the spawn point, and a
    // frame later (it is read from the last frame's transforms).
    if log.spawn.is_none() {
        return;
    }
    *frames_since_spawn = frames_since_spawn.saturating_add(1);
    if *frames_since_spawn < 3 {
        return;
    }
    // Placed once per opening, where the visitor was: a panel that followed the head would
    // swim in view.
    if *placed_for == open.name && (open.name.is_none() || !open.is_changed()) {
        return;
    }
    let shown = match (&open.name, head.0, scene) {
        (Some(name), Some(head), Some(scene)) => scene
            .0
            .hotspots
            .iter()
            .find(|h| &h.name == name)
            .map(|h| panel_pose(head.translation, Vec3::from(h.position))),
        _ => None,
    };
    if let Ok(mut camera) = cameras.get_mut(parts.camera) {
        camera.is_active = shown.is_some();
    }
    if let Ok((mut transform, mut visibility)) = quads.get_mut(parts.quad) {
        match shown {
            Some(pose) => {
                *transform = pose;
                *visibility = Visibility::Inherited;
            }
            None => *visibility = Visibility::Hidden,
        }
    }
    if let Ok(mut title) = texts.get_mut(parts.title) {
        title.0.clone_from(&open.title);
    }
    if let Ok(mut text) = texts.get_mut(parts.text) {
        text.0.clone_from(&open.text);
    }
    // Wait for a head pose before calling it placed.
    if shown.is_some() || open.name.is_none() {
        placed_for.clone_from(&open.name);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_panel_stands_in_front_toward_the_hotspot_and_faces_the_visitor() {
        let head = Vec3::new(2.0, 1.7, 5.0);
        let pose = panel_pose(head, Vec3::new(2.0, 4.0, -10.0));
        assert!((pose.translation - Vec3::new(2.0, 1.55, 4.0)).length() < 1e-5, "{}", pose.translation);
        // The quad's front (+Z) points back at the visitor.
        let front = pose.rotation * Vec3::Z;
        assert!(front.dot((head - pose.translation).normalize()) > 0.98);
        // A hotspot straight above still gives a level panel in front.
        let above = panel_pose(head, head + Vec3::Y * 3.0);
        assert!((above.translation.y - 1.55).abs() < 1e-5 && (above.rotation * Vec3::Y).y > 0.999);
    }
}
