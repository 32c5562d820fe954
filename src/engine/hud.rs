//! The desktop overlay: venue title and credits, controls, live stage parameter values, and
//! the scene file's problems when a save is rejected.

use bevy::prelude::*;

use crate::engine::command::CurrentScene;
use crate::engine::command::VenueParams;
use crate::engine::heritage::cloud::{CloudStatus, PointCloud, ScanPhase};
use crate::engine::heritage::lod::{MeshScan, MeshScanStatus};
use crate::engine::scene::SceneStatus;
use crate::engine::show::{Shows, panel_text};
use crate::engine::ui_panel::ui_font;

/// The overlay's font.
#[derive(Resource)]
struct HudFont(Handle<Font>);

/// Shows the overlay on the desktop window.
pub struct HudPlugin;

impl Plugin for HudPlugin {
    fn build(&self, app: &mut App) {
        app.add_systems(PreStartup, load_hud_font).add_systems(Startup, spawn_hud).add_systems(
            Update,
            (update_title, update_params, update_problems, update_scans, update_show, update_program)
                .after(crate::engine::schedule::VenueSystems::Present),
        );
    }
}

#[derive(Component)]
struct TitleText;
#[derive(Component)]
struct ParamsText;
#[derive(Component)]
struct ProblemText;
#[derive(Component)]
struct ScanText;
#[derive(Component)]
struct ShowText;
#[derive(Component)]
struct ProgramText;

fn load_hud_font(mut commands: Commands, mut fonts: ResMut<Assets<Font>>) {
    let handle = ui_font(&mut fonts);
    commands.insert_resource(HudFont(handle));
}

fn spawn_hud(mut commands: Commands, hud_font: Res<HudFont>) {
    let font = |size: f32| TextFont { font: hud_font.0.clone().into(), font_size: FontSize::Px(size), ..default() };
    let panel = Color::srgba(0.02, 0.02, 0.05, 0.55);
    commands.spawn((
        Node {
            position_type: PositionType::Absolute,
            left: Val::Px(12.0),
            top: Val::Px(12.0),
            padding: UiRect::all(Val::Px(8.0)),
            ..default()
        },
        BackgroundColor(panel),
        Text::new(""),
        font(16.0),
        TitleText,
    ));
    commands.spawn((
        Node {
            position_type: PositionType::Absolute,
            right: Val::Px(12.0),
            top: Val::Px(12.0),
            padding: UiRect::all(Val::Px(8.0)),
            ..default()
        },
        BackgroundColor(panel),
        Text::new(""),
        font(14.0),
        ParamsText,
    ));
    commands.spawn((
        Node {
            position_type: PositionType::Absolute,
            left: Val::Px(12.0),
            bottom: Val::Px(12.0),
            padding: UiRect::all(Val::Px(6.0)),
            ..default()
        },
        BackgroundColor(panel),
        Text::new("drag: orbit · right-drag: pan · wheel: zoom · WASD/arrows: walk · Q/E: down/up · Shift: faster · 1–9: viewpoints · click a gold marker: its story · Esc: close · M: measure"),
        font(13.0),
    ));
    commands.spawn((
        Node {
            position_type: PositionType::Absolute,
            left: Val::Percent(35.0),
            top: Val::Px(12.0),
            padding: UiRect::all(Val::Px(8.0)),
            display: Display::None,
            ..default()
        },
        BackgroundColor(panel),
        Text::new(""),
        font(14.0),
        ScanText,
    ));
    commands.spawn((
        // Bottom left, narrow enough to leave the centre to surtitles and subtitles.
        Node {
            position_type: PositionType::Absolute,
            left: Val::Px(12.0),
            bottom: Val::Px(48.0),
            width: Val::Percent(33.0),
            padding: UiRect::all(Val::Px(8.0)),
            display: Display::None,
            ..default()
        },
        BackgroundColor(Color::srgba(0.0, 0.0, 0.0, 0.8)),
        Text::new(""),
        font(16.0),
        ShowText,
    ));
    commands.spawn((
        Node {
            position_type: PositionType::Absolute,
            left: Val::Px(12.0),
            right: Val::Px(12.0),
            bottom: Val::Px(48.0),
            padding: UiRect::all(Val::Px(8.0)),
            display: Display::None,
            ..default()
        },
        BackgroundColor(Color::srgba(0.45, 0.02, 0.02, 0.85)),
        Text::new(""),
        font(14.0),
        ProblemText,
    ));
    commands.spawn((
        // Bottom right: the program output's state, for the operator of a streamed show.
        Node {
            position_type: PositionType::Absolute,
            right: Val::Px(12.0),
            bottom: Val::Px(48.0),
            max_width: Val::Percent(40.0),
            padding: UiRect::all(Val::Px(8.0)),
            display: Display::None,
            ..default()
        },
        BackgroundColor(Color::srgba(0.0, 0.0, 0.0, 0.8)),
        Text::new(""),
        font(14.0),
        ProgramText,
    ));
}

/// The program output's state (each output live or reconnecting and why, frames dropped and
/// repeated) and the performers' (capture live, held or lost). Refreshed twice a second.
fn update_program(
    feed: Option<Res<crate::engine::program::ProgramFeed>>,
    performers: Option<Res<crate::engine::performer::Performers>>,
    time: Res<Time<Real>>,
    venue_time: Res<Time>,
    mut last: Local<f64>,
    mut node: Single<(&mut Text, &mut Node), With<ProgramText>>,
) {
    let (text, node) = &mut *node;
    let performers = performers.filter(|p| !p.list.is_empty());
    if feed.is_none() && performers.is_none() {
        node.display = Display::None;
        return;
    }
    if time.elapsed_secs_f64() - *last < 0.5 {
        return;
    }
    *last = time.elapsed_secs_f64();
    node.display = Display::Flex;
    let mut status = feed.map(|f| crate::engine::program::status_text(&f.stats)).unwrap_or_default();
    if let Some(performers) = performers {
        status.push_str(&crate::engine::performer::status_text(&performers, venue_time.elapsed_secs_f64()));
    }
    text.0 = status.trim_end().to_owned();
}

fn update_title(scene: Option<Res<CurrentScene>>, mut text: Single<&mut Text, With<TitleText>>) {
    let Some(scene) = scene.filter(|s| s.is_changed()) else { return };
    let venue = &scene.0.venue;
    let mut lines = vec![venue.title.clone()];
    if !venue.site.is_empty() {
        lines.push(venue.site.clone());
    }
    for credit in &venue.credits {
        lines.push(format!("{} — {} ({})", credit.work, credit.author, credit.licence));
    }
    let viewpoints: Vec<String> =
        scene.0.viewpoints.iter().enumerate().take(9).map(|(i, v)| format!("{} {}", i + 1, v.name)).collect();
    if !viewpoints.is_empty() {
        lines.push(format!("viewpoints: {}", viewpoints.join(" · ")));
    }
    text.0 = lines.join("\n");
}

fn update_params(params: Res<VenueParams>, mut text: Single<&mut Text, With<ParamsText>>) {
    if !params.is_changed() {
        return;
    }
    let lines: Vec<String> = params.iter().map(|(def, value)| format!("{} = {value}", def.name)).collect();
    text.0 =
        if lines.is_empty() { "no stage parameters".into() } else { format!("stage parameters\n{}", lines.join("\n")) };
}

/// The stage manager's panel: the show on the transport, its clock, last and standby cues.
fn update_show(shows: Res<Shows>, mut node: Single<(&mut Text, &mut Node), With<ShowText>>) {
    if !shows.is_changed() {
        return;
    }
    let (text, node) = &mut *node;
    match &shows.running {
        Some(show) => {
            let panel = panel_text(show);
            if text.0 != panel {
                text.0 = panel;
            }
            node.display = Display::Flex;
        }
        None => node.display = Display::None,
    }
}

fn update_problems(status: Res<SceneStatus>, mut node: Single<(&mut Text, &mut Node), With<ProblemText>>) {
    if !status.is_changed() {
        return;
    }
    let (text, node) = &mut *node;
    match &status.last_error {
        Some(error) => {
            text.0 = format!("Scene file rejected — still showing the last good version:\n{error}");
            node.display = Display::Flex;
        }
        None => node.display = Display::None,
    }
}

/// Scans still importing, or that failed: a large one takes minutes, and the visitor should
/// know why it is not there yet.
fn update_scans(
    clouds: Query<(&PointCloud, &CloudStatus)>,
    meshes: Query<(&MeshScan, &MeshScanStatus)>,
    mut node: Single<(&mut Text, &mut Node), With<ScanText>>,
) {
    let describe = |kind: &str, name: &str, phase: &ScanPhase, step: &str| match phase {
        ScanPhase::Importing => Some(format!("{kind} “{name}”: importing — {step}")),
        ScanPhase::Failed(reason) => Some(format!("{kind} “{name}” failed: {reason}")),
        ScanPhase::Ready => None,
    };
    let lines: Vec<String> = clouds
        .iter()
        .filter_map(|(c, s)| describe("cloud", &c.def.name, &s.phase, &s.step))
        .chain(
            meshes.iter().filter_map(|(m, s)| describe("mesh", &m.def.name, &s.phase, "reading and building levels")),
        )
        .collect();
    let (text, node) = &mut *node;
    let display = if lines.is_empty() { Display::None } else { Display::Flex };
    if node.display != display {
        node.display = display;
    }
    let joined = lines.join("\n");
    if text.0 != joined {
        text.0 = joined;
    }
}
