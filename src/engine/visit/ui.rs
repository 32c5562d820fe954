//! What a visitor sees of hotspots and tours: a marker at each hotspot (brighter under the
//! pointer), a click to open its panel, the panel itself, and the narration's subtitles.

use bevy::prelude::*;
use bevy::window::PrimaryWindow;

use super::{OpenHotspot, Subtitles, pick_hotspot};
use crate::engine::command::{CurrentScene, SubmitCommand};
use crate::engine::environment::VenueCamera;
use crate::engine::heritage::measure::{MeasureRay, Measurement, NotMeasured};
use crate::engine::ui_panel::ui_font;
use crate::model::command::VenueCommand;

/// Hotspot markers, panels and subtitles; with `interactive`, the mouse opens hotspots.
pub struct VisitUiPlugin {
    /// Whether the mouse and keyboard open and close panels.
    pub interactive: bool,
}

impl Plugin for VisitUiPlugin {
    fn build(&self, app: &mut App) {
        app.init_resource::<HoveredHotspot>().add_systems(Startup, spawn_overlays).add_systems(
            Update,
            (
                spawn_markers.run_if(resource_exists_and_changed::<CurrentScene>),
                show_panel,
                show_subtitles,
                light_markers,
            )
                .chain()
                .after(crate::engine::schedule::VenueSystems::Present),
        );
        app.add_systems(Update, show_measurement.after(crate::engine::schedule::VenueSystems::Simulate));
        if self.interactive {
            app.add_systems(
                Update,
                (toggle_measuring, hover_and_click, close_with_escape)
                    .chain()
                    .in_set(crate::engine::schedule::VenueSystems::Ingest),
            );
        }
    }
}

/// The hotspot under the pointer.
#[derive(Resource, Debug, Default, PartialEq)]
pub struct HoveredHotspot(pub Option<String>);

#[derive(Component)]
struct HotspotMarker {
    name: String,
    material: Handle<StandardMaterial>,
}

#[derive(Component)]
struct PanelRoot;
#[derive(Component)]
struct PanelTitle;
#[derive(Component)]
struct PanelText;
#[derive(Component)]
struct SubtitleRoot;
#[derive(Component)]
struct MeasureText;
#[derive(Component)]
struct MeasureMarker;
#[derive(Component)]
struct SubtitleText;

const MARKER_COLOUR: Color = Color::srgb(1.0, 0.78, 0.25);
const MEASURE_COLOUR: Color = Color::srgb(0.3, 0.9, 1.0);

/// The tape's two ends as small spheres, and its reading.
fn show_measurement(
    mut commands: Commands,
    measurement: Res<Measurement>,
    markers: Query<Entity, With<MeasureMarker>>,
    mut text: Single<(&mut Text, &mut Node), With<MeasureText>>,
    mut meshes: ResMut<Assets<Mesh>>,
    mut materials: ResMut<Assets<StandardMaterial>>,
) {
    if !measurement.is_changed() {
        return;
    }
    for marker in &markers {
        commands.entity(marker).despawn();
    }
    let (text, node) = &mut *text;
    node.display = if measurement.active { Display::Flex } else { Display::None };
    let mut label = measurement.label();
    if measurement.missed {
        label.push_str(" (nothing there)");
    }
    text.0 = label;
    let ends: Vec<Vec3> = [&measurement.a, &measurement.b].into_iter().flatten().map(|p| p.position).collect();
    if ends.is_empty() {
        return;
    }
    let material = materials.add(StandardMaterial { base_color: MEASURE_COLOUR, unlit: true, ..default() });
    // Sized with the measure: visible on a 30 m span, not in the way of a 1 m one.
    let span = if let [a, b] = ends[..] { a.distance(b) } else { 1.0 };
    let thickness = (span * 0.006).clamp(0.01, 0.08);
    let dot = meshes.add(Sphere::new(thickness * 2.5).mesh().ico(2).expect("a small icosphere"));
    for end in &ends {
        commands.spawn((
            MeasureMarker,
            NotMeasured,
            Mesh3d(dot.clone()),
            MeshMaterial3d(material.clone()),
            Transform::from_translation(*end),
            bevy::light::NotShadowCaster,
        ));
    }
    if let [a, b] = ends[..] {
        let length = a.distance(b);
        let line = meshes.add(Cylinder::new(thickness, length.max(1e-3)));
        let rotation = Quat::from_rotation_arc(Vec3::Y, (b - a).normalize_or(Vec3::Y));
        commands.spawn((
            MeasureMarker,
            NotMeasured,
            Mesh3d(line),
            MeshMaterial3d(material),
            Transform::from_translation((a + b) / 2.0).with_rotation(rotation),
            bevy::light::NotShadowCaster,
        ));
    }
}

fn spawn_overlays(mut commands: Commands, mut fonts: ResMut<Assets<Font>>) {
    let handle = ui_font(&mut fonts);
    let font = |size: f32| TextFont { font: handle.clone().into(), font_size: FontSize::Px(size), ..default() };
    commands
        .spawn((
            Node {
                position_type: PositionType::Absolute,
                left: Val::Px(12.0),
                top: Val::Px(124.0),
                max_width: Val::Px(420.0),
                padding: UiRect::all(Val::Px(10.0)),
                row_gap: Val::Px(6.0),
                flex_direction: FlexDirection::Column,
                display: Display::None,
                ..default()
            },
            BackgroundColor(Color::srgba(0.03, 0.03, 0.06, 0.8)),
            PanelRoot,
        ))
        .with_children(|panel| {
            panel.spawn((Text::new(""), font(20.0), TextColor(MARKER_COLOUR), PanelTitle));
            panel.spawn((Text::new(""), font(15.0), PanelText));
        });
    commands.spawn((
        Node {
            position_type: PositionType::Absolute,
            right: Val::Px(12.0),
            bottom: Val::Px(48.0),
            padding: UiRect::all(Val::Px(8.0)),
            display: Display::None,
            ..default()
        },
        BackgroundColor(Color::srgba(0.03, 0.03, 0.06, 0.8)),
        Text::new(""),
        font(18.0),
        TextColor(MEASURE_COLOUR),
        MeasureText,
    ));
    commands
        .spawn((
            Node {
                position_type: PositionType::Absolute,
                left: Val::Px(0.0),
                right: Val::Px(0.0),
                bottom: Val::Px(56.0),
                justify_content: JustifyContent::Center,
                display: Display::None,
                ..default()
            },
            SubtitleRoot,
        ))
        .with_children(|bar| {
            bar.spawn((
                Node { max_width: Val::Percent(80.0), padding: UiRect::axes(Val::Px(12.0), Val::Px(6.0)), ..default() },
                BackgroundColor(Color::srgba(0.0, 0.0, 0.0, 0.7)),
                Text::new(""),
                font(22.0),
                TextLayout::justify(Justify::Center),
                SubtitleText,
            ));
        });
}

fn spawn_markers(
    mut commands: Commands,
    scene: Res<CurrentScene>,
    old: Query<Entity, With<HotspotMarker>>,
    mut meshes: ResMut<Assets<Mesh>>,
    mut materials: ResMut<Assets<StandardMaterial>>,
) {
    for entity in &old {
        commands.entity(entity).despawn();
    }
    let mesh = meshes.add(Sphere::new(0.12).mesh().ico(3).expect("a small icosphere"));
    for hotspot in &scene.0.hotspots {
        let material = materials.add(StandardMaterial {
            base_color: MARKER_COLOUR,
            emissive: LinearRgba::from(MARKER_COLOUR) * 2.0,
            ..default()
        });
        commands.spawn((
            Name::new(format!("hotspot {}", hotspot.name)),
            HotspotMarker { name: hotspot.name.clone(), material: material.clone() },
            NotMeasured,
            Mesh3d(mesh.clone()),
            MeshMaterial3d(material),
            Transform::from_translation(Vec3::from(hotspot.position)),
            bevy::light::NotShadowCaster,
        ));
    }
}

/// M starts and stops the measuring tape.
fn toggle_measuring(keys: Res<ButtonInput<KeyCode>>, mut measurement: ResMut<Measurement>) {
    if keys.just_pressed(KeyCode::KeyM) {
        let active = !measurement.active;
        *measurement = Measurement { active, ..default() };
    }
}

/// Pointing at a hotspot lights it; a click (not a drag, which orbits) opens it, or, while
/// measuring, picks a point.
#[allow(clippy::too_many_arguments, reason = "a Bevy system: each argument is a query or resource it needs")]
fn hover_and_click(
    window: Option<Single<&Window, With<PrimaryWindow>>>,
    cameras: Query<(&Camera, &GlobalTransform, &Projection), With<VenueCamera>>,
    scene: Option<Res<CurrentScene>>,
    buttons: Res<ButtonInput<MouseButton>>,
    measurement: Res<Measurement>,
    mut pressed_at: Local<Option<Vec2>>,
    mut hovered: ResMut<HoveredHotspot>,
    mut submit: MessageWriter<SubmitCommand>,
    mut measure: MessageWriter<MeasureRay>,
) {
    let (Some(window), Some(scene)) = (window, scene) else { return };
    let Some(cursor) = window.cursor_position() else { return };
    // The window's camera: the lowest order (a headset's eyes come after it).
    let Some((camera, transform, projection)) =
        cameras.iter().filter(|(c, ..)| c.is_active).min_by_key(|(c, ..)| c.order)
    else {
        return;
    };
    let Ok(ray) = camera.viewport_to_world(transform, cursor) else { return };
    if measurement.active {
        hovered.set_if_neq(HoveredHotspot(None));
        if buttons.just_pressed(MouseButton::Left) {
            *pressed_at = Some(cursor);
        }
        if buttons.just_released(MouseButton::Left) && pressed_at.take().is_some_and(|p| p.distance(cursor) < 5.0) {
            // Points within three pixels of the pointer count as under it.
            let fov = if let Projection::Perspective(p) = projection { p.fov } else { 1.0 };
            let tolerance = 3.0 * 2.0 * (fov / 2.0).tan() / window.height().max(1.0);
            measure.write(MeasureRay { ray, tolerance });
        }
        return;
    }
    let hit = pick_hotspot(ray.origin, *ray.direction, &scene.0.hotspots).map(|i| scene.0.hotspots[i].name.clone());
    hovered.set_if_neq(HoveredHotspot(hit.clone()));
    if buttons.just_pressed(MouseButton::Left) {
        *pressed_at = Some(cursor);
    }
    if buttons.just_released(MouseButton::Left) {
        let click = pressed_at.take().is_some_and(|p| p.distance(cursor) < 5.0);
        if click && let Some(name) = hit {
            submit.write(SubmitCommand::local(VenueCommand::ShowHotspot { name: Some(name) }));
        }
    }
}

fn close_with_escape(
    keys: Res<ButtonInput<KeyCode>>,
    open: Res<OpenHotspot>,
    mut submit: MessageWriter<SubmitCommand>,
) {
    if keys.just_pressed(KeyCode::Escape) && open.name.is_some() {
        submit.write(SubmitCommand::local(VenueCommand::ShowHotspot { name: None }));
    }
}

fn light_markers(
    hovered: Res<HoveredHotspot>,
    open: Res<OpenHotspot>,
    markers: Query<(&HotspotMarker, &mut Transform)>,
    mut materials: ResMut<Assets<StandardMaterial>>,
) {
    if !(hovered.is_changed() || open.is_changed()) {
        return;
    }
    for (marker, mut transform) in markers {
        let lit = hovered.0.as_ref() == Some(&marker.name) || open.name.as_ref() == Some(&marker.name);
        transform.scale = Vec3::splat(if lit { 1.6 } else { 1.0 });
        if let Some(mut material) = materials.get_mut(&marker.material) {
            material.emissive = LinearRgba::from(MARKER_COLOUR) * if lit { 8.0 } else { 2.0 };
        }
    }
}

fn show_panel(
    open: Res<OpenHotspot>,
    mut root: Single<&mut Node, With<PanelRoot>>,
    mut title: Single<&mut Text, (With<PanelTitle>, Without<PanelText>)>,
    mut text: Single<&mut Text, (With<PanelText>, Without<PanelTitle>)>,
) {
    if !open.is_changed() {
        return;
    }
    root.display = if open.name.is_some() { Display::Flex } else { Display::None };
    // Texts are shown as text, never interpreted: a curator's markup shows as typed.
    title.0 = open.title.clone();
    text.0 = open.text.clone();
}

fn show_subtitles(
    subtitles: Res<Subtitles>,
    mut root: Single<&mut Node, With<SubtitleRoot>>,
    mut text: Single<&mut Text, With<SubtitleText>>,
) {
    if !subtitles.is_changed() {
        return;
    }
    root.display = if subtitles.text.is_some() { Display::Flex } else { Display::None };
    text.0 = subtitles.text.clone().unwrap_or_default();
}
