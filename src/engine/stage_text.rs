//! Audience texts shown in the venue: floating panels that [`VenueCommand::ShowText`] opens
//! and [`VenueCommand::HideText`] (a moderator's retraction) or time closes.
//!
//! [`StageTextPlugin`] keeps which texts are shown (headless, testable); [`StageTextRenderPlugin`]
//! draws them. All panels share one UI camera that renders into one image, a slot per panel,
//! and each panel is a quad in the world showing its slot: one extra render pass whatever the
//! number of panels, and the same quads work in a headset. Texts are laid out as glyphs by
//! Bevy's text engine: there is no markup to inject.

use bevy::light::NotShadowCaster;
use bevy::math::Affine2;
use bevy::prelude::*;

use crate::engine::command::AppliedCommand;
use crate::engine::environment::{VenueCamera, leading_view};
use crate::engine::rest::Rest;
use crate::engine::schedule::VenueSystems;
use crate::engine::ui_panel::{UiImage, panel_material, spawn_ui_image, ui_font};
use crate::model::command::VenueCommand;

/// Most texts shown at once; a new one replaces the oldest.
pub const MAX_PANELS: usize = 8;

/// A text shown in the venue.
#[derive(Debug, Clone, PartialEq)]
pub struct ShownText {
    /// Chat line id.
    pub id: u64,
    /// The words.
    pub text: String,
    /// Author's display name.
    pub by: String,
    /// Where, metres.
    pub at: Vec3,
    /// When it goes (seconds of the app clock).
    pub expires: f64,
    /// Atlas slot it is drawn in.
    pub slot: usize,
}

/// The texts shown now, oldest first.
#[derive(Debug, Default, Resource)]
pub struct ShownTexts {
    /// The texts.
    pub texts: Vec<ShownText>,
}

impl ShownTexts {
    fn free_slot(&self) -> Option<usize> {
        (0..MAX_PANELS).find(|s| !self.texts.iter().any(|t| t.slot == *s))
    }
}

/// Follows `ShowText` and `HideText` commands and the clock.
pub struct StageTextPlugin;

impl Plugin for StageTextPlugin {
    fn build(&self, app: &mut App) {
        app.init_resource::<ShownTexts>()
            .add_systems(Update, (follow_text_commands, expire_texts).chain().in_set(VenueSystems::Simulate));
    }
}

fn follow_text_commands(mut applied: MessageReader<AppliedCommand>, mut shown: ResMut<ShownTexts>, time: Res<Time>) {
    for entry in applied.read() {
        match &entry.command {
            VenueCommand::ShowText { id, text, by, seconds, at } => {
                shown.texts.retain(|t| t.id != *id);
                if shown.texts.len() == MAX_PANELS {
                    shown.texts.remove(0);
                }
                let slot = shown.free_slot().unwrap_or(0);
                shown.texts.push(ShownText {
                    id: *id,
                    text: text.clone(),
                    by: by.clone(),
                    at: Vec3::from(*at),
                    expires: time.elapsed_secs_f64() + f64::from(*seconds),
                    slot,
                });
            }
            VenueCommand::HideText { id: Some(id) } => shown.texts.retain(|t| t.id != *id),
            VenueCommand::HideText { id: None } => shown.texts.clear(),
            _ => {}
        }
    }
}

fn expire_texts(mut shown: ResMut<ShownTexts>, time: Res<Time>, mut rest: ResMut<Rest>) {
    let now = time.elapsed_secs_f64();
    if !shown.texts.is_empty() {
        // A text is shown for a time counted in frames' time: they must run until it goes.
        rest.busy();
    }
    if shown.texts.iter().any(|t| t.expires <= now) {
        shown.texts.retain(|t| t.expires > now);
    }
}

/// Size of one panel's slot in the atlas, in pixels; panels are 4:1.
const SLOT: UVec2 = UVec2::new(1024, 256);
/// Gap left transparent at the bottom of each slot, so that sampling never bleeds between slots.
const GUTTER: u32 = 8;
/// A panel's width in the venue, metres.
const PANEL_WIDTH: f32 = 3.2;

/// The shared atlas: its image, the camera drawing into it, and the panel quad.
#[derive(Resource)]
struct PanelAtlas {
    image: Handle<Image>,
    camera: Entity,
    quad: Handle<Mesh>,
    font: Handle<Font>,
}

/// A panel on screen: its UI root in the atlas and its quad in the venue.
#[derive(Component)]
struct Panel {
    id: u64,
    root: Entity,
}

/// Draws shown texts as panels in the venue (windowed and headless rendering apps).
pub struct StageTextRenderPlugin;

impl Plugin for StageTextRenderPlugin {
    fn build(&self, app: &mut App) {
        app.add_systems(Startup, create_atlas).add_systems(
            Update,
            (sync_panels, face_the_camera).chain().after(VenueSystems::Simulate).before(VenueSystems::Present),
        );
    }
}

fn create_atlas(
    mut commands: Commands,
    mut images: ResMut<Assets<Image>>,
    mut meshes: ResMut<Assets<Mesh>>,
    mut fonts: ResMut<Assets<Font>>,
) {
    // Before the venue's cameras (order -1), on a layer of its own (31).
    let UiImage { image, camera } = spawn_ui_image(
        &mut commands,
        &mut images,
        "stage text atlas camera",
        UVec2::new(SLOT.x, SLOT.y * MAX_PANELS as u32),
        -1,
        31,
    );
    let quad = meshes.add(Rectangle::new(PANEL_WIDTH, PANEL_WIDTH * SLOT.y as f32 / SLOT.x as f32));
    let font = ui_font(&mut fonts);
    commands.insert_resource(PanelAtlas { image, camera, quad, font });
}

/// Makes the panels match [`ShownTexts`]: spawns new ones, removes hidden ones.
fn sync_panels(
    shown: Res<ShownTexts>,
    atlas: Option<Res<PanelAtlas>>,
    panels: Query<(Entity, &Panel)>,
    mut cameras: Query<&mut Camera>,
    mut materials: ResMut<Assets<StandardMaterial>>,
    mut commands: Commands,
) {
    let Some(atlas) = atlas else { return };
    if !shown.is_changed() {
        return;
    }
    for (entity, panel) in &panels {
        if !shown.texts.iter().any(|t| t.id == panel.id) {
            commands.entity(panel.root).despawn();
            commands.entity(entity).despawn();
        }
    }
    for text in &shown.texts {
        if panels.iter().any(|(_, p)| p.id == text.id) {
            continue;
        }
        let root = commands
            .spawn((
                Node {
                    position_type: PositionType::Absolute,
                    left: px(0),
                    top: px(text.slot as u32 * SLOT.y),
                    width: px(SLOT.x),
                    height: px(SLOT.y - GUTTER),
                    padding: UiRect::all(px(20)),
                    flex_direction: FlexDirection::Column,
                    justify_content: JustifyContent::Center,
                    align_items: AlignItems::Center,
                    overflow: Overflow::clip(),
                    border_radius: BorderRadius::all(px(28)),
                    ..default()
                },
                BackgroundColor(Color::srgba(0.03, 0.03, 0.08, 0.78)),
                UiTargetCamera(atlas.camera),
                children![
                    (
                        Text::new(text.text.clone()),
                        TextFont { font: atlas.font.clone().into(), font_size: FontSize::Px(58.0), ..default() },
                        TextColor(Color::WHITE),
                        TextLayout::new(Justify::Center, LineBreak::WordOrCharacter),
                    ),
                    (
                        Text::new(format!("— {}", text.by)),
                        TextFont { font: atlas.font.clone().into(), font_size: FontSize::Px(34.0), ..default() },
                        TextColor(Color::srgb(1.0, 0.82, 0.45)),
                    ),
                ],
            ))
            .id();
        let slots = MAX_PANELS as f32;
        let uv = Affine2::from_scale_angle_translation(
            Vec2::new(1.0, 1.0 / slots),
            0.0,
            Vec2::new(0.0, text.slot as f32 / slots),
        );
        let material = materials.add(panel_material(atlas.image.clone(), uv));
        commands.spawn((
            Name::new(format!("stage text #{}", text.id)),
            Panel { id: text.id, root },
            Mesh3d(atlas.quad.clone()),
            MeshMaterial3d(material),
            Transform::from_translation(text.at),
            NotShadowCaster,
        ));
    }
    // The atlas camera renders only while there is something to show.
    if let Ok(mut camera) = cameras.get_mut(atlas.camera) {
        let active = !shown.texts.is_empty();
        if camera.is_active != active {
            camera.is_active = active;
        }
    }
}

/// Turns panels towards the viewer (about the vertical axis only, so they stay upright).
fn face_the_camera(
    viewers: Query<(&Camera, &GlobalTransform), With<VenueCamera>>,
    mut panels: Query<&mut Transform, With<Panel>>,
) {
    let Some(eye) = leading_view(viewers.iter(), |(c, _)| c).map(|(_, t)| t.translation()) else { return };
    for mut transform in &mut panels {
        let to_eye = Vec3::new(eye.x - transform.translation.x, 0.0, eye.z - transform.translation.z);
        if to_eye.length_squared() > 1e-6 {
            transform.rotation = Quat::from_rotation_y(to_eye.x.atan2(to_eye.z));
        }
    }
}
