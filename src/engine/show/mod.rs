//! Shows: a cue list on the audio clock. The stage manager's transport (play, pause, stop,
//! seek, GO, jump, loop) arrives as venue commands; cues fire in the first frame whose clock
//! position has passed their time, and what they do goes through the command pipeline like
//! every other input: first a [`VenueCommand::CueFired`] record with the planned and actual
//! positions, then each action from the cue's origin (`show/cue`). Replaying a log applies
//! those records and actions and never runs the clock, so a replay cannot fire a cue twice.

pub mod chase;
pub mod clock;

use bevy::prelude::*;

use crate::engine::command::{AppliedCommand, CurrentScene, SubmitCommand, VenueAssets, VenueParams};
use crate::engine::rest::Rest;
use crate::engine::schedule::VenueSystems;
use crate::model::command::{CommandOrigin, TransportAction, VenueCommand};
use crate::model::scene::format::SceneFile;
use crate::model::show::actions::cue_command;
use crate::model::show::plan::{CueRunner, Firing, ShowPlan};
use clock::{ShowClock, track_length};

/// The show systems, in the venue's frame.
#[derive(SystemSet, Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ShowSystems {
    /// Read the clock (and pump the silent mixer), in [`VenueSystems::Ingest`].
    Clock,
    /// Fire the cues the clock has reached, in [`VenueSystems::Decide`].
    Cues,
    /// Follow applied transport commands, in [`VenueSystems::Simulate`].
    Transport,
}

/// Whether shows run their clock (a live venue) or only follow the log (a replay).
#[derive(Resource, Debug, Clone, Copy, PartialEq, Eq)]
pub struct ShowMode {
    /// Cues fire from the clock, GO and jumps; `false` while replaying a log.
    pub live: bool,
}

impl Default for ShowMode {
    fn default() -> Self {
        Self { live: true }
    }
}

/// Where a show's transport stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TransportState {
    /// At rest; play starts from the position.
    Stopped,
    /// Running on the clock.
    Playing,
    /// Held; play carries on from the position.
    Paused,
}

/// The show loaded on the transport.
#[derive(Debug, Clone)]
pub struct RunningShow {
    /// Its plan.
    pub plan: ShowPlan,
    /// What has fired.
    pub runner: CueRunner,
    /// Transport state.
    pub state: TransportState,
    /// Position on the show's clock, seconds, as of this frame.
    pub position: f64,
    /// While playing: show position minus clock seconds.
    offset: f64,
    /// The rehearsal loop, seconds.
    pub looping: Option<(f64, f64)>,
    /// The song whose tracks were started last.
    song_started: Option<usize>,
    /// Interaction windows the show opened, closed on its clock: (when, the opening cue's
    /// origin, the rules).
    closings: Vec<(f64, CommandOrigin, Vec<String>)>,
    /// Each song's surtitles, by language.
    surtitles: Vec<Surtitles>,
}

/// A song's surtitles: timed texts by language.
type Surtitles = std::collections::BTreeMap<String, Vec<crate::model::subtitles::TimedText>>;

/// Reads each song's surtitle files; a file that cannot be read or parsed is left out, said
/// once (`parvis check` names its line first).
fn load_surtitles(scene: &SceneFile, name: &str, assets: Option<&VenueAssets>) -> Vec<Surtitles> {
    let Some(show) = scene.shows.iter().find(|s| s.name == name) else { return Vec::new() };
    show.songs
        .iter()
        .map(|song| {
            song.surtitles
                .iter()
                .filter_map(|(lang, file)| {
                    let path = assets?.resolve(file).map_err(|e| warn!("surtitles {file}: {e}")).ok()?;
                    let text = std::fs::read_to_string(&path).map_err(|e| warn!("surtitles {file}: {e}")).ok()?;
                    let vtt = file.to_ascii_lowercase().ends_with(".vtt");
                    let cues =
                        crate::model::subtitles::parse(&text, vtt).map_err(|e| warn!("surtitles {file}: {e}")).ok()?;
                    Some((lang.clone(), cues))
                })
                .collect()
        })
        .collect()
}

/// The surtitle showing now in each language (empty when none): the venue's panel shows the
/// visitor's language, the audience page each member's.
#[derive(Resource, Debug, Clone, Default, PartialEq)]
pub struct ShowSurtitles {
    /// Text by language.
    pub texts: std::collections::BTreeMap<String, String>,
}

impl RunningShow {
    /// The cue GO fires next.
    pub fn standby(&self) -> Option<&crate::model::show::plan::PlannedCue> {
        self.runner.standby(&self.plan).map(|i| &self.plan.cues[i])
    }

    /// The cue fired last.
    pub fn last_cue(&self) -> Option<&crate::model::show::plan::PlannedCue> {
        self.runner.last().map(|i| &self.plan.cues[i])
    }
}

/// The show on the transport, if any.
#[derive(Resource, Debug, Default)]
pub struct Shows {
    /// The loaded show.
    pub running: Option<RunningShow>,
    /// Cues fired by this venue since start: (show, cue id, planned, actual).
    pub fired: Vec<(String, String, f64, f64)>,
}

/// Shows on the audio clock.
pub struct ShowPlugin;

impl Plugin for ShowPlugin {
    fn build(&self, app: &mut App) {
        if !app.world().contains_resource::<ShowClock>() {
            app.insert_resource(ShowClock::new(false));
        }
        app.init_resource::<Shows>()
            .init_resource::<ShowSurtitles>()
            .init_resource::<ShowMode>()
            .configure_sets(Update, ShowSystems::Clock.in_set(VenueSystems::Ingest))
            .configure_sets(Update, ShowSystems::Cues.in_set(VenueSystems::Decide))
            .configure_sets(Update, ShowSystems::Transport.in_set(VenueSystems::Simulate))
            .add_systems(Update, read_clock.in_set(ShowSystems::Clock))
            .add_systems(Update, show_keys.run_if(resource_exists::<ButtonInput<KeyCode>>).in_set(VenueSystems::Ingest))
            .add_systems(Update, fire_due_cues.in_set(ShowSystems::Cues))
            .add_systems(
                Update,
                (
                    follow_scene_changes.run_if(resource_exists_and_changed::<CurrentScene>),
                    run_transport,
                    show_surtitles.after(crate::engine::captions::CaptionSystems::Follow),
                )
                    .chain()
                    .in_set(ShowSystems::Transport),
            );
    }
}

/// Track lengths from the files under the assets root.
fn plan_show(scene: &SceneFile, name: &str, assets: Option<&VenueAssets>) -> Result<ShowPlan, String> {
    let show = scene.shows.iter().find(|s| s.name == name).ok_or_else(|| format!("no show named {name:?}"))?;
    ShowPlan::new(show, |track| assets.and_then(|a| a.resolve(track).ok()).and_then(|p| track_length(&p)))
        .map_err(|e| format!("show {name:?}: {e}"))
}

fn read_clock(time: Res<Time>, mut clock: ResMut<ShowClock>, mut shows: ResMut<Shows>, mut rest: ResMut<Rest>) {
    clock.pump(time.delta_secs_f64());
    for e in clock.track_errors() {
        warn!("show music: {e}");
    }
    let Some(show) = shows.running.as_mut() else { return };
    if show.state == TransportState::Playing {
        show.position = clock.seconds() + show.offset;
        // The clock is what moves the show: the venue may not rest while it runs.
        rest.busy();
    }
}

/// The stage manager's keys at the desktop: space is GO, P plays or pauses.
fn show_keys(keys: Res<ButtonInput<KeyCode>>, shows: Res<Shows>, mut submit: MessageWriter<SubmitCommand>) {
    let Some(show) = shows.running.as_ref() else { return };
    let action = if keys.just_pressed(KeyCode::Space) {
        TransportAction::Go
    } else if keys.just_pressed(KeyCode::KeyP) {
        if show.state == TransportState::Playing { TransportAction::Pause } else { TransportAction::Play }
    } else {
        return;
    };
    submit.write(SubmitCommand::local(VenueCommand::Transport { show: show.plan.name.clone(), action }));
}

/// One line per fact for the show panel: state, clock, timecode, song, last and standby cues.
pub fn panel_text(show: &RunningShow) -> String {
    let state = match show.state {
        TransportState::Stopped => "STOPPED",
        TransportState::Playing => "PLAYING",
        TransportState::Paused => "PAUSED",
    };
    let p = show.position.max(0.0);
    let clock = format!("{:02}:{:02}.{}", (p / 60.0) as u64, (p % 60.0) as u64, ((p * 10.0) as u64) % 10);
    let mut lines = vec![format!("SHOW {} — {state}  {clock}", show.plan.name)];
    if let Some(i) = show.plan.song_at(p) {
        let song = &show.plan.songs[i];
        let mut line = format!("song {}/{} {}", i + 1, show.plan.songs.len(), song.name);
        if let Some(start) = song.timecode {
            let rate = show.plan.rate;
            let frames = start + ((p - song.start) * rate.fps() + 1e-6) as u64;
            let tc = crate::model::show::timecode::Timecode::from_frames(frames, rate);
            line.push_str(&format!("  TC {}", tc.display(rate)));
        }
        lines.push(line);
    }
    if let Some((from, to)) = show.looping {
        lines.push(format!("looping {from:.1}–{to:.1} s"));
    }
    lines.push(match show.last_cue() {
        Some(c) => format!("last: {} {}", c.id, c.label),
        None => "last: —".into(),
    });
    lines.push(match show.standby() {
        Some(c) => format!("standby: {} {}   [space] GO", c.id, c.label),
        None => "standby: — (no manual cue ahead)".into(),
    });
    lines.push("[P] play/pause".into());
    lines.join("\n")
}

/// Submits a cue's record and its actions; a window it opens for a span is closed on the
/// show's clock, so that the span is the music's (and a replay logs the close).
fn submit_firing(
    show: &mut RunningShow,
    firing: Firing,
    actual: f64,
    params: &VenueParams,
    submit: &mut MessageWriter<SubmitCommand>,
) {
    let cue = &show.plan.cues[firing.cue];
    let origin = CommandOrigin::Cue(format!("{}/{}", show.plan.name, cue.id));
    info!("show {}: cue {} {:?} at {actual:.3} s (planned {:.3} s)", show.plan.name, cue.id, cue.label, firing.planned);
    submit.write(SubmitCommand {
        origin: origin.clone(),
        command: VenueCommand::CueFired {
            show: show.plan.name.clone(),
            cue: cue.id.clone(),
            planned: firing.planned,
            actual,
        },
    });
    for action in &cue.def.actions {
        match cue_command(action, params) {
            Ok(command) => {
                if let VenueCommand::OpenWindow { rules, seconds: Some(seconds), .. } = &command {
                    show.closings.push((firing.planned + f64::from(*seconds), origin.clone(), rules.clone()));
                }
                submit.write(SubmitCommand { origin: origin.clone(), command });
            }
            // `parvis check` refuses this; a scene loaded by command may still carry it.
            Err(e) => warn!("show {}: cue {}: an action was not sent: {e}", show.plan.name, cue.id),
        }
    }
}

fn fire_due_cues(
    mode: Res<ShowMode>,
    mut shows: ResMut<Shows>,
    mut clock: ResMut<ShowClock>,
    params: Res<VenueParams>,
    assets: Option<Res<VenueAssets>>,
    mut submit: MessageWriter<SubmitCommand>,
) {
    let shows = &mut *shows;
    let Some(show) = shows.running.as_mut() else { return };
    if !mode.live || show.state != TransportState::Playing {
        return;
    }
    let mut position = show.position;
    // A rehearsal loop: the cues up to its end, then back to its start.
    let wrap = show.looping.filter(|&(_, to)| position >= to);
    if let Some((_, to)) = wrap {
        position = to;
    }
    close_windows(show, Some(position), &mut submit);
    for firing in show.runner.advance(&show.plan, position) {
        submit_firing(show, firing, position, &params, &mut submit);
        let cue = &show.plan.cues[firing.cue];
        shows.fired.push((show.plan.name.clone(), cue.id.clone(), firing.planned, position));
    }
    if let Some((from, _)) = wrap {
        seek(show, &mut clock, assets.as_deref(), from, &mut submit);
    } else if let Some(end) = show.plan.length()
        && position >= end
    {
        info!("show {}: ended at {end:.3} s", show.plan.name);
        close_windows(show, None, &mut submit);
        clock.pause();
        clock.stop_tracks();
        show.state = TransportState::Stopped;
        show.position = end;
    }
    start_song_tracks(show, &mut clock, assets.as_deref());
}

/// Closes the windows the show opened that are due by `by` (all of them for `None`: the show
/// stopped or moved).
fn close_windows(show: &mut RunningShow, by: Option<f64>, submit: &mut MessageWriter<SubmitCommand>) {
    let due = |at: f64| by.is_none_or(|by| at <= by + crate::model::show::plan::CLOCK_EPSILON);
    for (_, origin, rules) in show.closings.extract_if(.., |(at, ..)| due(*at)) {
        submit.write(SubmitCommand { origin, command: VenueCommand::CloseWindow { rules } });
    }
}

/// Moves a show to `to` without firing, restarting its music there when it plays; windows it
/// opened close.
fn seek(
    show: &mut RunningShow,
    clock: &mut ShowClock,
    assets: Option<&VenueAssets>,
    to: f64,
    submit: &mut MessageWriter<SubmitCommand>,
) {
    close_windows(show, None, submit);
    show.runner.seek(&show.plan, to);
    show.position = to;
    show.offset = to - clock.seconds();
    clock.stop_tracks();
    show.song_started = None;
    start_song_tracks(show, clock, assets);
}

/// While playing, the current song's tracks play from where the show stands, and the next
/// song's are scheduled on the clock for its start.
fn start_song_tracks(show: &mut RunningShow, clock: &mut ShowClock, assets: Option<&VenueAssets>) {
    if show.state != TransportState::Playing {
        return;
    }
    let Some(song) = show.plan.song_at(show.position) else { return };
    if show.song_started == Some(song) {
        return;
    }
    let Some(assets) = assets else { return };
    let current = show.song_started.is_none_or(|s| s + 1 != song);
    let mut play = |index: usize, now: bool| {
        let planned = &show.plan.songs[index];
        for track in &planned.tracks {
            let result = assets.resolve(track).map_err(|e| e.to_string()).and_then(|file| {
                if now {
                    clock.play_track(&file, show.position - planned.start, None)
                } else {
                    clock.play_track(&file, 0.0, Some(planned.start - show.offset))
                }
            });
            if let Err(e) = result {
                warn!("show {}: song {:?}: {e}", show.plan.name, planned.name);
            }
        }
    };
    // Entering the next song by the clock: its tracks were scheduled already.
    if current {
        play(song, true);
    }
    if song + 1 < show.plan.songs.len() {
        play(song + 1, false);
    }
    show.song_started = Some(song);
}

fn follow_scene_changes(
    scene: Res<CurrentScene>,
    assets: Option<Res<VenueAssets>>,
    mut shows: ResMut<Shows>,
    mut clock: ResMut<ShowClock>,
) {
    let Some(show) = shows.running.as_mut() else { return };
    match plan_show(&scene.0, &show.plan.name, assets.as_deref()) {
        // The curator edited the show during rehearsal: the new cues, from where it stands.
        Ok(plan) => {
            let position = show.position;
            show.surtitles = load_surtitles(&scene.0, &plan.name, assets.as_deref());
            show.runner = CueRunner::new(&plan);
            show.plan = plan;
            show.runner.seek(&show.plan, position);
        }
        Err(e) => {
            warn!("{e}: the transport stops");
            clock.pause();
            clock.stop_tracks();
            shows.running = None;
        }
    }
}

fn run_transport(
    mut applied: MessageReader<AppliedCommand>,
    mode: Res<ShowMode>,
    scene: Option<Res<CurrentScene>>,
    assets: Option<Res<VenueAssets>>,
    params: Res<VenueParams>,
    mut shows: ResMut<Shows>,
    mut clock: ResMut<ShowClock>,
    mut submit: MessageWriter<SubmitCommand>,
) {
    let assets = assets.as_deref();
    for entry in applied.read() {
        let (name, transport) = match &entry.command {
            VenueCommand::Transport { show, action } => (show, Some(action)),
            VenueCommand::CueFired { show, .. } => (show, None),
            _ => continue,
        };
        let Some(scene) = scene.as_deref() else { continue };
        if shows.running.as_ref().is_none_or(|s| &s.plan.name != name) {
            match plan_show(&scene.0, name, assets) {
                Ok(plan) => {
                    clock.pause();
                    clock.stop_tracks();
                    let runner = CueRunner::new(&plan);
                    shows.running = Some(RunningShow {
                        plan,
                        runner,
                        state: TransportState::Stopped,
                        position: 0.0,
                        offset: 0.0,
                        looping: None,
                        song_started: None,
                        closings: Vec::new(),
                        surtitles: load_surtitles(&scene.0, name, assets),
                    });
                }
                Err(e) => {
                    warn!("{e}");
                    continue;
                }
            }
        }
        let shows = &mut *shows;
        let show = shows.running.as_mut().expect("loaded above");
        // Live, fresh commands move the clock; a replay or a restored log only keeps count of
        // the cues, and a restored show waits, paused, at its last cue.
        let live = mode.live && !entry.restored;
        let Some(action) = transport else {
            if !live
                && let VenueCommand::CueFired { cue, planned, actual, .. } = &entry.command
                && let Some(index) = show.plan.cue(cue)
            {
                // As the live pass stood when it fired: what lies before it passed.
                show.runner.seek(&show.plan, *actual);
                show.runner.fire(&show.plan, Firing { cue: index, planned: *planned });
                show.position = *actual;
                if show.state == TransportState::Playing {
                    show.state = TransportState::Paused;
                }
            }
            continue;
        };
        if !live {
            // A replay or a restored log keeps the cues' bookkeeping as the live show did
            // (what a stop or a seek made fire again, or skipped), without moving any clock.
            match action {
                TransportAction::Stop => {
                    show.runner = CueRunner::new(&show.plan);
                    show.position = 0.0;
                }
                TransportAction::Seek { seconds } => {
                    show.runner.seek(&show.plan, *seconds);
                    show.position = *seconds;
                }
                _ => {}
            }
            continue;
        }
        info!("show {}: {action}", show.plan.name);
        match action {
            TransportAction::Play if show.state != TransportState::Playing => {
                show.offset = show.position - clock.seconds();
                show.state = TransportState::Playing;
                show.song_started = None;
                clock.start();
                start_song_tracks(show, &mut clock, assets);
            }
            TransportAction::Play => {}
            TransportAction::Pause => {
                if show.state == TransportState::Playing {
                    show.position = clock.seconds() + show.offset;
                    show.state = TransportState::Paused;
                }
                clock.pause();
                clock.stop_tracks();
            }
            TransportAction::Stop => {
                close_windows(show, None, &mut submit);
                clock.pause();
                clock.stop_tracks();
                show.state = TransportState::Stopped;
                show.looping = None;
                show.runner = CueRunner::new(&show.plan);
                show.position = 0.0;
            }
            TransportAction::Seek { seconds } => seek(show, &mut clock, assets, *seconds, &mut submit),
            TransportAction::Go => match show.runner.go(&show.plan, show.position) {
                Some(firing) => {
                    submit_firing(show, firing, show.position, &params, &mut submit);
                    let id = show.plan.cues[firing.cue].id.clone();
                    shows.fired.push((show.plan.name.clone(), id, firing.planned, show.position));
                }
                None => warn!("show {}: GO, but no cue is in standby", show.plan.name),
            },
            TransportAction::Jump { cue } => match show.plan.cue(cue) {
                Some(index) => {
                    let place = show.plan.place(index);
                    seek(show, &mut clock, assets, place, &mut submit);
                    let firing = show.runner.jump(&show.plan, index);
                    submit_firing(show, firing, place, &params, &mut submit);
                    shows.fired.push((show.plan.name.clone(), cue.clone(), firing.planned, place));
                }
                None => warn!("show {}: no cue {cue:?}", show.plan.name),
            },
            TransportAction::Loop { from, to } => show.looping = Some((*from, *to)),
            TransportAction::Unloop => show.looping = None,
        }
    }
}

/// Shows the surtitle of the song at the show's position, in every language it has; the venue
/// shows the visitor's language (by the venue's fallback order) where the tour's subtitles go.
fn show_surtitles(
    shows: Res<Shows>,
    scene: Option<Res<CurrentScene>>,
    language: Option<Res<crate::engine::visit::VisitorLanguage>>,
    mut current: ResMut<ShowSurtitles>,
    mut subtitles: ResMut<crate::engine::visit::Subtitles>,
    captions: Option<Res<crate::engine::captions::LiveCaptions>>,
) {
    let mut texts: std::collections::BTreeMap<String, String> = std::collections::BTreeMap::new();
    if let Some(show) = &shows.running
        && let Some(song) = show.plan.song_at(show.position)
        && let Some(by_language) = show.surtitles.get(song)
    {
        // As for cues: a clock a few picoseconds short of a start has reached it.
        let at = show.position - show.plan.songs[song].start + crate::model::show::plan::CLOCK_EPSILON;
        for (lang, cues) in by_language {
            if let Some(cue) = crate::model::subtitles::at(cues, at) {
                texts.insert(lang.clone(), cue.text.clone());
            }
        }
    }
    // Live captions show in the surtitle band, in the language spoken, under its surtitle.
    if let Some(captions) = captions.filter(|c| !c.text.is_empty()) {
        let text = texts.entry(captions.language.clone()).or_default();
        if !text.is_empty() {
            text.push('\n');
        }
        text.push_str(&captions.text);
    }
    if current.texts == texts {
        return;
    }
    let order = scene.as_ref().map(|s| s.0.venue.languages.clone()).unwrap_or_default();
    let wanted = language.map(|l| l.0.clone()).unwrap_or_default();
    let wanted =
        crate::model::lang::visitor_language(Some(&wanted).filter(|w| !w.is_empty()).map(|w| w.as_str()), &order);
    *subtitles = match crate::model::lang::pick(&texts, &wanted, &order) {
        Some((lang, text)) => {
            crate::engine::visit::Subtitles { text: Some(text.to_owned()), language: lang.to_owned() }
        }
        None => crate::engine::visit::Subtitles::default(),
    };
    current.texts = texts;
}
