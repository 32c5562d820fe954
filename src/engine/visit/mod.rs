//! Visits: hotspots and guided tours from the scene file, in the visitor's language. One data
//! model for the desktop and for headsets. Opening a hotspot and playing a tour are venue
//! commands (logged, replayable); what follows from them (camera moves, subtitles, the
//! narration) is derived from the command and the clock.

pub mod narration;
pub mod tour;
pub mod ui;

use bevy::prelude::*;

use crate::engine::camera::CameraRig;
use crate::engine::command::AppliedCommand;
use crate::engine::command::CurrentScene;
use crate::engine::command::VenueAssets;
use crate::engine::environment::VenueCamera;
use crate::engine::rest::Rest;
use crate::engine::schedule::VenueSystems;
use crate::model::assets_root::AssetsRoot;
use crate::model::command::VenueCommand;
use crate::model::scene::format::{HotspotDef, Localized, SceneFile, TourDef};
use narration::Narrator;
use tour::{StopTiming, TourEvent, TourPhase, TourPlayer};

/// Hotspots, tours, narration.
pub struct VisitPlugin {
    /// Play sound on the machine's audio device (else a silent mixer).
    pub audio: bool,
}

impl Plugin for VisitPlugin {
    fn build(&self, app: &mut App) {
        app.insert_resource(Narrator::new(self.audio))
            .init_resource::<VisitorLanguage>()
            .init_resource::<OpenHotspot>()
            .init_resource::<Subtitles>()
            .init_resource::<ActiveTour>()
            .add_systems(
                Update,
                (
                    follow_scene_changes.run_if(resource_exists_and_changed::<CurrentScene>),
                    apply_visit_commands,
                    advance_tour,
                    move_listener,
                )
                    .chain()
                    .in_set(VenueSystems::Simulate),
            );
    }
}

/// The visitor's language (a BCP 47 tag); empty means the venue's first language.
#[derive(Resource, Debug, Clone, Default, PartialEq)]
pub struct VisitorLanguage(pub String);

/// The hotspot whose panel is open, with its texts in the visitor's language.
#[derive(Resource, Debug, Clone, Default, PartialEq)]
pub struct OpenHotspot {
    /// Its name; `None` when no panel is open.
    pub name: Option<String>,
    /// Title shown.
    pub title: String,
    /// Text shown.
    pub text: String,
    /// The language they are in (may differ from the visitor's, by fallback).
    pub language: String,
}

/// The subtitle on screen.
#[derive(Resource, Debug, Clone, Default, PartialEq)]
pub struct Subtitles {
    /// The cue shown; `None` for nothing.
    pub text: Option<String>,
    /// Its language.
    pub language: String,
}

/// The tour being played.
#[derive(Resource, Debug, Default)]
pub struct ActiveTour {
    /// Its name; `None` when no tour plays.
    pub name: Option<String>,
    player: Option<TourPlayer>,
    /// The tour as it was when it started: a new version of the venue stops it only if the
    /// tour itself changed.
    def: Option<TourDef>,
    /// The camera's rig and field of view when travel to the current stop began.
    from: Option<(CameraRig, f32)>,
    cues: Vec<String>,
    /// Seconds the current stop's subtitles are spread over: its recording, else the stop.
    cue_seconds: f32,
}

impl ActiveTour {
    /// Where the tour is.
    pub fn phase(&self) -> Option<TourPhase> {
        self.player.as_ref().map(TourPlayer::phase)
    }
}

/// The venue's languages, in fallback order.
fn language_order(scene: &SceneFile) -> &[String] {
    &scene.venue.languages
}

fn localise<'a>(texts: &'a Localized, language: &VisitorLanguage, scene: &SceneFile) -> Option<(&'a str, &'a str)> {
    let wanted = crate::model::lang::visitor_language(Some(&language.0), language_order(scene));
    crate::model::lang::pick(texts, &wanted, language_order(scene))
}

/// The nearest hotspot hit by a ray, if any: its index in `hotspots`.
pub fn pick_hotspot(origin: Vec3, direction: Vec3, hotspots: &[HotspotDef]) -> Option<usize> {
    let direction = direction.try_normalize()?;
    hotspots
        .iter()
        .enumerate()
        .filter_map(|(i, h)| {
            let to_centre = Vec3::from(h.position) - origin;
            let along = to_centre.dot(direction);
            let miss_sq = to_centre.length_squared() - along * along;
            let r_sq = h.radius * h.radius;
            if miss_sq > r_sq {
                return None;
            }
            let entry = along - (r_sq - miss_sq).sqrt();
            // Inside the sphere counts (entry behind the eye); a sphere behind does not.
            (along + (r_sq - miss_sq).sqrt() >= 0.0).then_some((entry.max(0.0), i))
        })
        .min_by(|a, b| a.0.total_cmp(&b.0))
        .map(|(_, i)| i)
}

/// Opens (or with `None` closes) a hotspot's panel; with `describe`, its audio description
/// plays too.
fn open_hotspot(
    name: Option<&str>,
    scene: &SceneFile,
    language: &VisitorLanguage,
    assets: Option<&AssetsRoot>,
    open: &mut OpenHotspot,
    narrator: &mut Narrator,
    describe: bool,
) {
    narrator.stop_description();
    let Some(def) = name.and_then(|n| scene.hotspots.iter().find(|h| h.name == n)) else {
        *open = OpenHotspot::default();
        return;
    };
    let (title_lang, title) = localise(&def.title, language, scene).unwrap_or(("", ""));
    let text = localise(&def.text, language, scene).map_or("", |(_, t)| t);
    *open = OpenHotspot {
        name: Some(def.name.clone()),
        title: title.to_owned(),
        text: text.to_owned(),
        language: title_lang.to_owned(),
    };
    if !describe {
        return;
    }
    if let (Some((audio_lang, file)), Some(assets)) = (localise(&def.audio, language, scene), assets) {
        match assets.resolve(file) {
            Ok(path) => {
                if let Err(e) = narrator.describe_at(&path, audio_lang, Vec3::from(def.position)) {
                    warn!("hotspot {:?}: {e}", def.name);
                }
            }
            Err(e) => warn!("hotspot {:?}: {e}", def.name),
        }
    }
}

/// A new version of the venue refreshes an open panel's texts (or closes it if its hotspot is
/// gone) and stops the tour only if that tour changed: its stops may no longer exist.
fn follow_scene_changes(
    scene: Res<CurrentScene>,
    language: Res<VisitorLanguage>,
    mut open: ResMut<OpenHotspot>,
    mut active: ResMut<ActiveTour>,
    mut subtitles: ResMut<Subtitles>,
    mut narrator: ResMut<Narrator>,
) {
    if let Some(name) = open.name.clone() {
        let still_there = scene.0.hotspots.iter().any(|h| h.name == name);
        // Without its audio: the description that plays goes on (or stops with the close).
        open_hotspot(still_there.then_some(name.as_str()), &scene.0, &language, None, &mut open, &mut narrator, false);
    }
    if let Some(name) = &active.name
        && scene.0.tours.iter().find(|t| &t.name == name) != active.def.as_ref()
    {
        info!("tour {name:?} stopped: the venue's new version changed it");
        *active = ActiveTour::default();
        *subtitles = Subtitles::default();
        narrator.stop_narration();
    }
}

#[allow(clippy::too_many_arguments, reason = "a Bevy system: each argument is a resource it needs")]
fn apply_visit_commands(
    mut applied: MessageReader<AppliedCommand>,
    scene: Option<Res<CurrentScene>>,
    assets: Option<Res<VenueAssets>>,
    mut language: ResMut<VisitorLanguage>,
    mut open: ResMut<OpenHotspot>,
    mut active: ResMut<ActiveTour>,
    mut subtitles: ResMut<Subtitles>,
    mut narrator: ResMut<Narrator>,
) {
    let Some(scene) = scene else { return };
    for entry in applied.read() {
        match &entry.command {
            VenueCommand::ShowHotspot { name } => open_hotspot(
                name.as_deref(),
                &scene.0,
                &language,
                assets.as_deref().map(|a| &a.0),
                &mut open,
                &mut narrator,
                true,
            ),
            VenueCommand::PlayTour { tour, language: asked } => {
                if let Some(asked) = asked {
                    language.0 = asked.clone();
                }
                narrator.stop_narration();
                *subtitles = Subtitles::default();
                *active = ActiveTour::default();
                let Some(def) = tour.as_deref().and_then(|t| scene.0.tours.iter().find(|d| d.name == t)) else {
                    continue;
                };
                info!(
                    "tour {:?} starts, {} stops, in {:?}",
                    def.name,
                    def.stops.len(),
                    crate::model::lang::visitor_language(Some(&language.0), &scene.0.venue.languages)
                );
                let timings = def.stops.iter().map(|s| StopTiming { travel: s.travel, dwell: s.seconds }).collect();
                *active = ActiveTour {
                    name: Some(def.name.clone()),
                    player: Some(TourPlayer::new(timings)),
                    def: Some(def.clone()),
                    ..default()
                };
            }
            _ => {}
        }
    }
}

#[allow(clippy::too_many_arguments, reason = "a Bevy system: each argument is a query or resource it needs")]
fn advance_tour(
    time: Res<Time>,
    scene: Option<Res<CurrentScene>>,
    assets: Option<Res<VenueAssets>>,
    language: Res<VisitorLanguage>,
    mut active: ResMut<ActiveTour>,
    mut open: ResMut<OpenHotspot>,
    mut subtitles: ResMut<Subtitles>,
    mut narrator: ResMut<Narrator>,
    mut cameras: Query<(&mut CameraRig, &mut Projection), With<VenueCamera>>,
    mut rest: ResMut<Rest>,
) {
    narrator.pump();
    let (Some(scene), Some(name)) = (scene, active.name.clone()) else { return };
    // A tour moves the camera and times its stops in frames.
    rest.busy();
    let Some(def) = scene.0.tours.iter().find(|t| t.name == name) else { return };
    let active = &mut *active;
    let Some(player) = active.player.as_mut() else { return };
    for event in player.advance(time.delta_secs()) {
        match event {
            TourEvent::Depart(stop) => {
                subtitles.text = None;
                narrator.stop_narration();
                active.from = cameras.iter().next().map(|(rig, projection)| (*rig, fov_of(projection)));
                debug!("tour {name:?}: to stop {stop}");
            }
            TourEvent::Arrive(stop) => {
                let recording = arrive(
                    def,
                    stop,
                    &scene.0,
                    &language,
                    assets.as_deref().map(|a| &a.0),
                    &mut open,
                    &mut narrator,
                    &mut subtitles,
                );
                player.extend_dwell(stop, recording);
                active.cue_seconds = if recording > 0.0 { recording } else { def.stops[stop].seconds };
                active.cues = localise(&def.stops[stop].narration, &language, &scene.0)
                    .map(|(_, t)| tour::subtitle_cues(t))
                    .unwrap_or_default();
            }
            TourEvent::Finished => {
                info!("tour {name:?} finished");
                subtitles.text = None;
            }
        }
    }
    match player.phase() {
        TourPhase::Travelling { stop, progress } => {
            let Some(target) = scene.0.viewpoints.iter().find(|v| v.name == def.stops[stop].viewpoint) else { return };
            let to = CameraRig::looking(Vec3::from(target.position), Vec3::from(target.look_at));
            let t = tour::ease_in_out(progress);
            for (mut rig, mut projection) in &mut cameras {
                let (from, fov) = active.from.unwrap_or((*rig, fov_of(&projection)));
                *rig = blend(&from, &to, t);
                if let Projection::Perspective(p) = &mut *projection {
                    p.fov = fov + (target.fov.to_radians() - fov) * t;
                }
            }
        }
        TourPhase::AtStop { stop, elapsed, .. } => {
            if let Some(target) = scene.0.viewpoints.iter().find(|v| v.name == def.stops[stop].viewpoint) {
                for (mut rig, mut projection) in &mut cameras {
                    crate::engine::camera::apply_viewpoint(&mut rig, &mut projection, target);
                }
            }
            // Subtitles follow the recording; a stop held longer than it shows nothing after.
            let cue = tour::cue_at(&active.cues, elapsed, active.cue_seconds).map(str::to_owned);
            if subtitles.text != cue {
                subtitles.text = cue;
            }
        }
        TourPhase::Finished => {
            active.name = None;
            active.player = None;
        }
    }
}

fn fov_of(projection: &Projection) -> f32 {
    match projection {
        Projection::Perspective(p) => p.fov,
        _ => std::f32::consts::FRAC_PI_4,
    }
}

/// A rig between two: focus and distance in a straight line, turns the short way round.
fn blend(from: &CameraRig, to: &CameraRig, t: f32) -> CameraRig {
    let turn = (to.yaw - from.yaw + std::f32::consts::PI).rem_euclid(std::f32::consts::TAU) - std::f32::consts::PI;
    CameraRig {
        focus: from.focus.lerp(to.focus, t),
        yaw: from.yaw + turn * t,
        pitch: from.pitch + (to.pitch - from.pitch) * t,
        distance: from.distance + (to.distance - from.distance) * t,
    }
}

/// At a stop: its hotspot opens, its narration plays; returns how long the audio lasts.
#[allow(clippy::too_many_arguments, reason = "the state a stop touches")]
fn arrive(
    def: &TourDef,
    stop: usize,
    scene: &SceneFile,
    language: &VisitorLanguage,
    assets: Option<&AssetsRoot>,
    open: &mut OpenHotspot,
    narrator: &mut Narrator,
    subtitles: &mut Subtitles,
) -> f32 {
    let stop_def = &def.stops[stop];
    if let Some(hotspot) = &stop_def.hotspot {
        // One voice at a time: the hotspot's description plays only at a stop without its own.
        let narrated = localise(&stop_def.audio, language, scene).is_some();
        open_hotspot(Some(hotspot), scene, language, assets, open, narrator, !narrated);
    }
    subtitles.language = localise(&stop_def.narration, language, scene).map(|(l, _)| l.to_owned()).unwrap_or_default();
    let Some((audio_lang, file)) = localise(&stop_def.audio, language, scene) else { return 0.0 };
    let Some(assets) = assets else { return 0.0 };
    let played = assets
        .resolve(file)
        .map_err(|e| e.to_string())
        .and_then(|path| narrator.narrate(&path, audio_lang).map_err(|e| e.to_string()));
    match played {
        Ok(duration) => duration.as_secs_f32(),
        Err(e) => {
            warn!("tour {:?} stop {stop}: {e}", def.name);
            0.0
        }
    }
}

/// The listener follows the leading venue camera (a headset's eyes before the desktop's),
/// and is told only when it moved.
fn move_listener(
    mut narrator: ResMut<Narrator>,
    cameras: Query<(&Camera, &GlobalTransform), With<VenueCamera>>,
    mut last: Local<Option<GlobalTransform>>,
) {
    if let Some((_, transform)) = crate::engine::environment::leading_view(cameras.iter(), |(c, _)| c)
        && *last != Some(*transform)
    {
        narrator.set_listener(transform);
        *last = Some(*transform);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hotspot(name: &str, position: [f32; 3], radius: f32) -> HotspotDef {
        HotspotDef {
            name: name.into(),
            position,
            radius,
            title: Localized::new(),
            text: Localized::new(),
            audio: Localized::new(),
        }
    }

    #[test]
    fn the_nearest_hotspot_along_the_ray_is_picked() {
        let spots = [
            hotspot("far", [0.0, 0.0, -10.0], 1.0),
            hotspot("near", [0.2, 0.0, -5.0], 0.5),
            hotspot("aside", [3.0, 0.0, -5.0], 0.5),
        ];
        assert_eq!(pick_hotspot(Vec3::ZERO, Vec3::NEG_Z, &spots), Some(1));
        // Just past the near one's edge, the far one is hit.
        assert_eq!(pick_hotspot(Vec3::ZERO, Vec3::new(-0.09, 0.0, -1.0), &spots), Some(0));
        assert_eq!(pick_hotspot(Vec3::ZERO, Vec3::Z, &spots), None, "behind the eye");
        assert_eq!(pick_hotspot(Vec3::ZERO, Vec3::Y, &spots), None);
        assert_eq!(pick_hotspot(Vec3::new(0.2, 0.0, -5.1), Vec3::X, &spots), Some(1), "from inside a hotspot");
        assert_eq!(pick_hotspot(Vec3::ZERO, Vec3::ZERO, &spots), None);
    }

    #[test]
    fn camera_moves_turn_the_short_way() {
        let from = CameraRig { focus: Vec3::ZERO, yaw: 3.0, pitch: 0.0, distance: 5.0 };
        let to = CameraRig { focus: Vec3::X, yaw: -3.0, pitch: -0.5, distance: 10.0 };
        let mid = blend(&from, &to, 0.5);
        assert!((mid.yaw - std::f32::consts::PI).abs() < 0.01, "through π, not through 0: {}", mid.yaw);
        assert_eq!(blend(&from, &to, 0.0), from);
        let end = blend(&from, &to, 1.0);
        assert!((end.transform().translation - to.transform().translation).length() < 1e-3);
    }
}
