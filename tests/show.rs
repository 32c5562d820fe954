//! Shows on the audio clock, headless on kira's mock backend: cues fire once, in order, in the
//! first frame whose clock position has passed them; GO, follow-ons, seeks, loops and jumps;
//! the log records planned and actual positions, and replaying it gives the same venue. Also
//! the control room that drives shows (module `osc`: OSC and OSCQuery with real peers) and the
//! program output that broadcasts them (module `program`: ffmpeg, nginx-rtmp, SRT), kept in
//! this binary because each test binary links the whole engine.

use std::path::{Path, PathBuf};
use std::time::Duration;

use bevy::prelude::*;
use bevy::time::TimeUpdateStrategy;
use parvis::app::{VenueSetup, core_app, replay_setup};
use parvis::engine::audience::Audience;
use parvis::engine::command::{RejectedCommand, SubmitCommand, VenueParams, venue_state_hash};
use parvis::engine::show::clock::ShowClock;
use parvis::engine::show::{Shows, TransportState};
use parvis::model::assets_root::AssetsRoot;
use parvis::model::command::{CommandOrigin, TransportAction, VenueCommand, read_command_log};
use parvis::model::params::ParamValue;
use parvis::model::scene::DEFAULT_SCENE;
use parvis::model::scene::format::SceneFile;
use parvis::model::scene::validate::{load_scene_str, parse_scene, validate_scene};

#[path = "show/captions.rs"]
mod captions;
#[path = "show/nats.rs"]
mod nats;
#[path = "show/program.rs"]
mod program;

const FRAME: f64 = 1.0 / 60.0;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn assets() -> AssetsRoot {
    AssetsRoot::new(root().join("assets"))
}

fn cloister() -> SceneFile {
    load_scene_str(DEFAULT_SCENE, "cloister.ron", &assets()).expect("the built-in scene is valid")
}

fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("parvis-show-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn app_with(setup: VenueSetup) -> App {
    let mut app = core_app(setup);
    app.insert_resource(TimeUpdateStrategy::ManualDuration(Duration::from_secs_f64(FRAME)));
    app.update();
    app
}

fn stage_manager(app: &mut App, action: TransportAction) {
    app.world_mut().write_message(SubmitCommand {
        origin: CommandOrigin::Moderator("stage manager".into()),
        command: VenueCommand::Transport { show: "evening".into(), action },
    });
}

fn position(app: &App) -> f64 {
    app.world().resource::<Shows>().running.as_ref().map_or(-1.0, |s| s.position)
}

fn state(app: &App) -> Option<TransportState> {
    app.world().resource::<Shows>().running.as_ref().map(|s| s.state)
}

fn fired(app: &App) -> Vec<(String, f64, f64)> {
    app.world().resource::<Shows>().fired.iter().map(|(_, cue, p, a)| (cue.clone(), *p, *a)).collect()
}

fn run_until(app: &mut App, frames: usize, done: impl Fn(&App) -> bool) {
    for _ in 0..frames {
        if done(app) {
            return;
        }
        app.update();
    }
    panic!("not done after {frames} frames; position {:.3} s, fired {:?}", position(app), fired(app));
}

#[test]
fn the_built_in_show_plays_from_start_to_end_and_replays_to_the_same_venue() {
    let dir = temp_dir("whole");
    let log = dir.join("show.log");
    let mut setup = VenueSetup::new(cloister(), assets());
    setup.command_log = Some(log.clone());
    let mut app = app_with(setup);
    stage_manager(&mut app, TransportAction::Play);
    // GO on the finale poll's cue half-way through the prelude.
    run_until(&mut app, 2_000, |app| position(app) >= 25.0);
    let go_at = position(&app);
    stage_manager(&mut app, TransportAction::Go);
    run_until(&mut app, 5_000, |app| state(app) == Some(TransportState::Stopped));
    assert!((position(&app) - 70.0).abs() < 1e-9, "the show stops at its end, not at {}", position(&app));

    let fired = fired(&app);
    let ids: Vec<&str> = fired.iter().map(|(id, ..)| id.as_str()).collect();
    assert_eq!(ids, ["1", "2", "3", "4", "5", "6", "7"], "every cue once, in order");
    // Planned positions: seconds, bar 5 at 96 bpm (16 beats = 10 s), timecodes on the song's.
    let planned: Vec<f64> = fired.iter().map(|(_, p, _)| *p).collect();
    // GO fires where the clock stands when it is applied: the frame after it was asked.
    assert!((0.0..=2.0 * FRAME).contains(&(planned[3] - go_at)), "GO at {go_at}: {planned:?}");
    for (got, want) in planned.iter().zip([0.0, 10.0, 20.0, planned[3], planned[3] + 12.0, 40.0, 60.0]) {
        assert!((got - want).abs() < 1e-9, "planned {planned:?}");
    }
    // Each cue fires in the first frame whose clock has passed it: late by less than a frame
    // (plus the mixer's block of 1/3000 s), never early. GO fires at the clock as it stands.
    for (id, planned, actual) in &fired {
        let late = actual - planned;
        assert!((-1e-6..FRAME + 1.0 / 3000.0).contains(&late), "cue {id}: {late} s late");
    }
    let params = &app.world().resource::<VenueParams>().0;
    assert_eq!(params.value("sky"), Some(&ParamValue::Enum("night".into())));
    // Cue 2 opened the chorus window for 20 s, closed by the show's clock (logged below).
    assert!(app.world().resource::<Audience>().windows().is_empty());
    assert_eq!(params.value("fog"), Some(&ParamValue::Float(0.04)));

    // The log: each cue's record (planned and actual) and then its actions, from the cue.
    let entries = read_command_log(std::io::BufReader::new(std::fs::File::open(&log).unwrap())).unwrap();
    let records: Vec<(&str, f64, f64)> = entries
        .iter()
        .filter_map(|e| match &e.command {
            VenueCommand::CueFired { cue, planned, actual, .. } => Some((cue.as_str(), *planned, *actual)),
            _ => None,
        })
        .collect();
    assert_eq!(records.len(), 7);
    for ((id, planned, actual), (want_id, want_planned, want_actual)) in records.iter().zip(&fired) {
        assert_eq!((*id, *planned, *actual), (want_id.as_str(), *want_planned, *want_actual));
    }
    let six =
        entries.iter().position(|e| matches!(&e.command, VenueCommand::CueFired { cue, .. } if cue == "6")).unwrap();
    assert_eq!(entries[six + 1].origin, CommandOrigin::Cue("evening/6".into()));
    assert!(matches!(&entries[six + 1].command, VenueCommand::SetParam { name, .. } if name == "sky"));
    let close = entries
        .iter()
        .find(|e| matches!(&e.command, VenueCommand::CloseWindow { rules } if rules == &["chorus"]))
        .expect("the chorus window's close is logged");
    assert_eq!(close.origin, CommandOrigin::Cue("evening/2".into()));
    let hash = venue_state_hash(app.world());
    drop(app);

    // Replaying the log fires nothing from a clock, and ends in the same venue.
    let mut replay = app_with(replay_setup(&entries, assets()).expect("the log loads a scene"));
    for _ in 0..5 {
        replay.update();
    }
    assert_eq!(venue_state_hash(replay.world()), hash, "the replay's venue differs from the show's");
    let shows = replay.world().resource::<Shows>();
    assert!(shows.fired.is_empty(), "a replay fired cues of its own: {:?}", shows.fired);
    let running = shows.running.as_ref().expect("the replay follows the show");
    assert_eq!(running.last_cue().map(|c| c.id.as_str()), Some("7"));
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn a_cue_opens_an_audience_window_for_its_span() {
    let mut app = app_with(VenueSetup::new(cloister(), assets()));
    stage_manager(&mut app, TransportAction::Jump { cue: "2".into() });
    app.update();
    app.update();
    let windows = app.world().resource::<Audience>().windows().clone();
    let window = windows.get("chorus_confetti").expect("the chorus group's rule is open");
    assert_eq!(window.label, "Confetti for the chorus!");
    let left = window.closes_at.unwrap().saturating_duration_since(std::time::Instant::now()).as_secs_f32();
    assert!((19.0..=20.0).contains(&left), "{left} s left");
    // Closed by command before its time.
    app.world_mut().write_message(SubmitCommand {
        origin: CommandOrigin::Moderator("m".into()),
        command: VenueCommand::CloseWindow { rules: vec!["chorus".into()] },
    });
    app.update();
    assert!(app.world().resource::<Audience>().windows().is_empty());
    // Windows only on closed rules, named as the scene names them.
    let mut cursor = app.world().resource::<Messages<RejectedCommand>>().get_cursor();
    for (rules, want) in [
        (vec!["petals".to_owned()], "rule \"petals\" is always open"),
        (vec!["encore".to_owned()], "no audience rule or group named \"encore\"; closed rules are: chorus_confetti"),
    ] {
        app.world_mut().write_message(SubmitCommand::local(VenueCommand::OpenWindow {
            rules,
            seconds: None,
            label: String::new(),
        }));
        app.update();
        let refused: Vec<String> =
            cursor.read(app.world().resource::<Messages<RejectedCommand>>()).map(|r| r.error.to_string()).collect();
        assert!(refused.len() == 1 && refused[0].contains(want), "{refused:?}");
    }
}

#[test]
fn surtitles_follow_the_show_clock_in_every_language() {
    use parvis::engine::show::ShowSurtitles;
    use parvis::engine::visit::Subtitles;
    let mut app = app_with(VenueSetup::new(cloister(), assets()));
    stage_manager(&mut app, TransportAction::Play);
    run_until(&mut app, 700, |app| position(app) >= 9.0);
    let texts = app.world().resource::<ShowSurtitles>().texts.clone();
    assert_eq!(texts.get("en").map(String::as_str), Some("The lanterns light up,\none by one, under the arches."));
    assert_eq!(texts.get("fr").map(String::as_str), Some("Les lanternes s’allument,\nune à une, sous les arcades."));
    // The venue shows the visitor's language (the cloister's first: French).
    let shown = app.world().resource::<Subtitles>().clone();
    assert_eq!((shown.language.as_str(), shown.text.as_deref()), ("fr", texts.get("fr").map(String::as_str)));
    // Between two surtitles, nothing; and the change comes in the frame the clock passes 14 s.
    run_until(&mut app, 400, |app| position(app) >= 14.0);
    assert!(app.world().resource::<ShowSurtitles>().texts.is_empty());
    assert_eq!(app.world().resource::<Subtitles>().text, None);
}

#[test]
fn a_broken_surtitle_file_is_named_with_its_line() {
    let dir = temp_dir("surtitles");
    std::fs::create_dir_all(dir.join("surtitles")).unwrap();
    std::fs::write(
        dir.join("surtitles/a.srt"),
        "1\n00:00:01,000 --> 00:00:03,000\nun\n\n2\n00:00:02,000 --> 00:00:04,000\ndeux\n",
    )
    .unwrap();
    let text = r#"(
    version: 1,
    venue: (title: "Surtitles", languages: ["fr"]),
    shows: [(name: "s", songs: [(name: "one", length: Some(10.0),
        surtitles: {"fr": "surtitles/a.srt", "de": "surtitles/missing.vtt", "en": "surtitles/a.txt"})])],
)"#;
    let root = AssetsRoot::new(&dir);
    let scene = parse_scene(text).unwrap();
    let problems: Vec<String> = validate_scene(&scene, text, &root).iter().map(ToString::to_string).collect();
    for want in [
        "shows[0].songs[0].surtitles.fr: surtitles/a.srt: line 6: the cue starts at 2.000 s, before the previous one ends (3.000 s)",
        "shows[0].songs[0].surtitles.de: language \"de\" is not one of the venue's languages (fr)",
        "shows[0].songs[0].surtitles.de: asset \"surtitles/missing.vtt\" not found",
        "shows[0].songs[0].surtitles.en: expected an .srt or .vtt file, found \"surtitles/a.txt\"",
    ] {
        assert!(problems.iter().any(|p| p.contains(want)), "no problem says {want:?}:\n{}", problems.join("\n"));
    }
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn seek_pause_loop_and_jump_move_the_transport_as_a_stage_manager_expects() {
    let mut app = app_with(VenueSetup::new(cloister(), assets()));
    stage_manager(&mut app, TransportAction::Seek { seconds: 15.0 });
    app.update();
    assert_eq!(position(&app), 15.0);
    // Cues passed by a seek do not fire.
    stage_manager(&mut app, TransportAction::Play);
    run_until(&mut app, 600, |app| position(app) >= 20.5);
    assert_eq!(fired(&app).iter().map(|f| f.0.as_str()).collect::<Vec<_>>(), ["3"]);
    // Paused, the clock holds.
    stage_manager(&mut app, TransportAction::Pause);
    app.update();
    let held = position(&app);
    for _ in 0..30 {
        app.update();
    }
    assert_eq!(position(&app), held);
    assert_eq!(state(&app), Some(TransportState::Paused));
    // A rehearsal loop over cue 3 fires it on each pass.
    stage_manager(&mut app, TransportAction::Loop { from: 18.0, to: 21.0 });
    stage_manager(&mut app, TransportAction::Seek { seconds: 18.0 });
    stage_manager(&mut app, TransportAction::Play);
    for _ in 0..(3.0 * 3.0 / FRAME) as usize + 10 {
        app.update();
        assert!(position(&app) < 21.0 + FRAME, "the loop let the clock run to {}", position(&app));
    }
    let threes = fired(&app).iter().filter(|f| f.0 == "3").count();
    assert_eq!(threes, 4, "cue 3 once before the loop and once per pass: {:?}", fired(&app));
    stage_manager(&mut app, TransportAction::Unloop);
    // Jump: to cue 6 at the finale's start, fired there.
    stage_manager(&mut app, TransportAction::Jump { cue: "6".into() });
    app.update();
    app.update();
    let last = fired(&app).last().cloned().unwrap();
    assert_eq!((last.0.as_str(), last.1), ("6", 40.0));
    assert!(position(&app) >= 40.0 && position(&app) < 40.1, "{}", position(&app));
    assert_eq!(app.world().resource::<VenueParams>().value("sky"), Some(&ParamValue::Enum("night".into())));
    // Stop: back to the start, nothing fired in the new pass.
    stage_manager(&mut app, TransportAction::Stop);
    app.update();
    assert_eq!((position(&app), state(&app)), (0.0, Some(TransportState::Stopped)));
    let shows = app.world().resource::<Shows>();
    assert_eq!(shows.running.as_ref().unwrap().standby().map(|c| c.id.as_str()), Some("4"));
}

#[test]
fn bad_transport_commands_are_refused_by_name_and_the_audience_cannot_run_the_show() {
    let mut app = app_with(VenueSetup::new(cloister(), assets()));
    let mut cursor = app.world().resource::<Messages<RejectedCommand>>().get_cursor();
    let commands = [
        (
            CommandOrigin::Local,
            VenueCommand::Transport { show: "matinee".into(), action: TransportAction::Play },
            "no show named \"matinee\" in this venue; shows: evening",
        ),
        (
            CommandOrigin::Local,
            VenueCommand::Transport { show: "evening".into(), action: TransportAction::Jump { cue: "99".into() } },
            "show \"evening\" has no cue \"99\"",
        ),
        (
            CommandOrigin::Local,
            VenueCommand::Transport { show: "evening".into(), action: TransportAction::Seek { seconds: -1.0 } },
            "seek to 0 s",
        ),
        (
            CommandOrigin::Local,
            VenueCommand::Transport { show: "evening".into(), action: TransportAction::Loop { from: 5.0, to: 5.0 } },
            "a loop goes from",
        ),
        (
            CommandOrigin::Local,
            VenueCommand::Transport { show: "evening".into(), action: TransportAction::Seek { seconds: f64::NAN } },
            "infinite or not a number",
        ),
        (
            CommandOrigin::Audience("a1".into()),
            VenueCommand::Transport { show: "evening".into(), action: TransportAction::Go },
            "may not",
        ),
        (
            CommandOrigin::Moderator("m".into()),
            VenueCommand::CueFired { show: "evening".into(), cue: "1".into(), planned: 0.0, actual: 0.0 },
            "may not",
        ),
    ];
    for (origin, command, _) in &commands {
        app.world_mut().write_message(SubmitCommand { origin: origin.clone(), command: command.clone() });
    }
    app.update();
    let refused: Vec<String> =
        cursor.read(app.world().resource::<Messages<RejectedCommand>>()).map(|r| r.error.to_string()).collect();
    assert_eq!(refused.len(), commands.len(), "{refused:?}");
    for ((_, _, want), got) in commands.iter().zip(&refused) {
        assert!(got.contains(want), "expected {want:?} in {got:?}");
    }
    assert!(app.world().resource::<Shows>().running.is_none(), "a refused command loaded a show");
}

/// A mono 16-bit WAV of `seconds` of a quiet tone: a real file for kira to decode.
fn write_wav(path: &Path, seconds: f32) {
    let rate = 8_000u32;
    let samples: Vec<i16> =
        (0..(seconds * rate as f32) as u32).map(|i| ((i as f32 * 0.05).sin() * 3_000.0) as i16).collect();
    write_pcm_wav(path, rate, 1, &samples);
}

/// A 16-bit PCM WAV file of interleaved `samples`, its folder made if needed.
fn write_pcm_wav(path: &Path, rate: u32, channels: u16, samples: &[i16]) {
    let data_len = samples.len() as u32 * 2;
    let block = channels * 2;
    let mut bytes = Vec::new();
    bytes.extend(b"RIFF");
    bytes.extend((36 + data_len).to_le_bytes());
    bytes.extend(b"WAVEfmt ");
    bytes.extend(16u32.to_le_bytes());
    bytes.extend(1u16.to_le_bytes());
    bytes.extend(channels.to_le_bytes());
    bytes.extend(rate.to_le_bytes());
    bytes.extend((rate * u32::from(block)).to_le_bytes());
    bytes.extend(block.to_le_bytes());
    bytes.extend(16u16.to_le_bytes());
    bytes.extend(b"data");
    bytes.extend(data_len.to_le_bytes());
    for s in samples {
        bytes.extend(s.to_le_bytes());
    }
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, bytes).unwrap();
}

const SET_LIST: &str = r#"(
    version: 1,
    venue: (title: "Set list"),
    params: [(name: "fog", kind: Float(default: 0.0, min: 0.0, max: 1.0))],
    shows: [(name: "evening", songs: [
        (name: "one", tracks: ["music/one.wav"], cues: [(id: "a", at: Seconds(0.5), actions: [Set(param: "fog", value: "0.5")])]),
        (name: "two", tracks: ["music/two.wav"], cues: [(id: "b", at: Seconds(0.5), actions: [Set(param: "fog", value: "1")])]),
    ])],
)"#;

#[test]
fn songs_take_their_length_from_their_music_which_plays_on_the_show_clock() {
    let dir = temp_dir("music");
    write_wav(&dir.join("music/one.wav"), 2.0);
    write_wav(&dir.join("music/two.wav"), 1.5);
    let root = AssetsRoot::new(&dir);
    let scene = load_scene_str(SET_LIST, "set.ron", &root).expect("valid");
    let mut app = app_with(VenueSetup::new(scene, root));
    stage_manager(&mut app, TransportAction::Play);
    app.update();
    assert!(app.world().resource::<ShowClock>().tracks() >= 1, "the first song's music plays");
    run_until(&mut app, 400, |app| state(app) == Some(TransportState::Stopped));
    let fired = fired(&app);
    // Song two starts when song one's 2-s track ends; the show ends with song two's track.
    assert_eq!(fired.iter().map(|f| (f.0.as_str(), f.1)).collect::<Vec<_>>(), [("a", 0.5), ("b", 2.5)]);
    assert!((position(&app) - 3.5).abs() < 1e-9, "{}", position(&app));
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn check_names_each_problem_of_a_show_with_its_line() {
    let text = r#"(
    version: 1,
    venue: (title: "Bad show"),
    params: [(name: "fog", kind: Float(default: 0.0, min: 0.0, max: 0.2))],
    shows: [(name: "evening", fps: 50.0, songs: [
        (name: "one", tracks: ["music/missing.wav", "../outside.wav"], tempo: [(bar: 2, bpm: 120.0)],
            cues: [
                (id: "1", at: Seconds(10.0), actions: [Set(param: "fog", value: "0.9")]),
                (id: "2", at: Seconds(5.0), follow: Some(2.0)),
                (id: "1", at: Timecode("01:00:00:00"), actions: [OpenPoll("nope")]),
                (id: "a b", at: Seconds(12.0), actions: [Animate(param: "fog", to: "0.1", seconds: 900.0)]),
            ]),
        (name: "two", cues: []),
    ])],
)"#;
    let scene = parse_scene(text).expect("it parses");
    let problems: Vec<String> = validate_scene(&scene, text, &assets()).iter().map(ToString::to_string).collect();
    let expect = [
        "5:20: shows[0].fps: expected a timecode rate of 24, 25, 29.97 (drop-frame) or 30, found 50",
        "6:32: shows[0].songs[0].tracks[0]: asset \"music/missing.wav\" not found",
        "6:53: shows[0].songs[0].tracks[1]: asset path \"../outside.wav\" must be relative",
        "6:16: shows[0].songs[0].tempo[0].bar: expected the first tempo at bar 1, found bar 2",
        "8:22: shows[0].songs[0].cues[0].actions[0]: stage parameter \"fog\" takes 0 to 0.2, not 0.9",
        "9:22: shows[0].songs[0].cues[1].at: cue \"2\" at 5.000 s comes before cue \"1\" at 10.000 s",
        "9:22: shows[0].songs[0].cues[1].follow: a follow-on fires the next cue, which must be `Manual`",
        "10:22: shows[0].songs[0].cues[2].id: duplicate cue id \"1\" in show \"evening\"",
        "10:22: shows[0].songs[0].cues[2].at: a cue at a timecode needs its song's `timecode`",
        "10:22: shows[0].songs[0].cues[2].actions[0]: no poll named \"nope\"; polls are: (none)",
        "11:22: shows[0].songs[0].cues[3].id: expected a cue id of 1 to 32 letters",
        "11:22: shows[0].songs[0].cues[3].actions[0]: an animation lasts 0 to 600 seconds, not 900",
    ];
    for want in expect {
        assert!(
            problems.iter().any(|p| p.contains(want)),
            "no problem says {want:?}; problems:\n{}",
            problems.join("\n")
        );
    }
    // Song one has tracks (it would take their length); a song before the last with neither
    // would need a length, but song two is the last.
    assert!(!problems.iter().any(|p| p.contains("needs a `length`")), "{problems:?}");
}

/// The audience page in a real browser (Debian's Chromium, as the audience test drives it):
/// the built-in show's cue 2 opens `!confettis` for 20 s; the page shows the window with a
/// moving countdown and the command works in it.
#[test]
fn the_audience_page_shows_a_window_the_show_opens() {
    use std::io::{BufRead, BufReader};
    let mut venue = std::process::Command::new(env!("CARGO_BIN_EXE_parvis"))
        .args(["run", "--no-render", "--fps", "60", "--audience", "127.0.0.1:0", "--show", "evening", "--play"])
        .current_dir(root())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    let stderr = BufReader::new(venue.stderr.take().unwrap());
    std::thread::spawn(move || {
        for line in stderr.lines().map_while(Result::ok) {
            if let Some(url) = line.split("audience page at ").nth(1) {
                let _ = tx.send(url.split_whitespace().next().unwrap_or_default().to_owned());
            }
        }
    });
    let url = rx.recv_timeout(Duration::from_secs(60)).expect("the venue prints its audience page URL");
    let e2e = std::process::Command::new("node")
        .arg(root().join("tests/e2e/audience.mjs"))
        .arg(&url)
        .env("PARVIS_E2E_WINDOW", "1")
        .output()
        .expect("node is installed by scripts/test.sh");
    let _ = venue.kill();
    let _ = venue.wait();
    let out = format!("{}{}", String::from_utf8_lossy(&e2e.stdout), String::from_utf8_lossy(&e2e.stderr));
    assert!(
        e2e.status.success() && out.contains("ok  e. a window opened by the show") && out.contains("ok  f. surtitles"),
        "browser test failed:\n{out}"
    );
}

/// Builds the LTC writer that links Debian's libltc (tests/tools/ltcgen.c) into `dir`.
fn ltcgen(dir: &Path) -> PathBuf {
    let helper = dir.join("ltcgen");
    let built = std::process::Command::new("cc")
        .arg(root().join("tests/tools/ltcgen.c"))
        .args(["-O2", "-lltc", "-o"])
        .arg(&helper)
        .output()
        .expect("a C compiler (build-essential)");
    assert!(built.status.success(), "libltc-dev is needed: {}", String::from_utf8_lossy(&built.stderr));
    helper
}

/// Linear timecode written by Debian's libltc (a small C helper linked against it) reads back
/// frame by frame: 24, 25, 29.97 drop-frame and 30 fps, at 48 and 44.1 kHz, with noise added.
#[test]
fn ltc_written_by_libltc_decodes_frame_by_frame() {
    use parvis::model::show::ltc::LtcDecoder;
    use parvis::model::show::timecode::{FrameRate, Timecode};
    let dir = temp_dir("ltc");
    let helper = ltcgen(&dir);
    let cases = [
        ("25", FrameRate::Fps25, "01:00:00:00", 48_000, 0.0),
        ("24", FrameRate::Fps24, "00:59:59:20", 48_000, 0.0),
        ("30", FrameRate::Fps30, "10:00:00:00", 44_100, 0.0),
        ("29.97", FrameRate::Fps2997Drop, "00:00:59;27", 48_000, 0.0),
        ("25", FrameRate::Fps25, "23:59:59:20", 48_000, 0.25),
    ];
    for (fps, rate, start, sample_rate, noise) in cases {
        let tc = Timecode::parse(start, rate).unwrap();
        let raw = dir.join(format!("ltc-{fps}-{sample_rate}.raw"));
        let status = std::process::Command::new(&helper)
            .args([
                fps,
                &tc.hours.to_string(),
                &tc.minutes.to_string(),
                &tc.seconds.to_string(),
                &tc.frames.to_string(),
            ])
            .args(["60", &sample_rate.to_string()])
            .arg(&raw)
            .status()
            .unwrap();
        assert!(status.success());
        let mut rng = parvis::model::rng::SeededRng::new(5);
        let samples: Vec<f32> = std::fs::read(&raw)
            .unwrap()
            .iter()
            .map(|b| (f32::from(*b) - 128.0) / 128.0 + noise * rng.signed())
            .collect();
        let mut decoder = LtcDecoder::new(sample_rate);
        // In chunks, as audio arrives.
        let frames: Vec<_> = samples.chunks(512).flat_map(|c| decoder.push(c)).collect();
        assert!(frames.len() >= 58, "{fps} fps: {} of 60 frames decoded", frames.len());
        let first = frames[0].timecode.to_frames(rate);
        assert!(first <= tc.to_frames(rate) + 1, "{fps} fps: first frame {} for {start}", frames[0].timecode);
        for pair in frames.windows(2) {
            let (a, b) = (pair[0].timecode.to_frames(rate), pair[1].timecode.to_frames(rate));
            // Consecutive, across minute and day boundaries and dropped labels.
            assert!(b == a + 1 || b == 0, "{fps} fps: {} then {}", pair[0].timecode, pair[1].timecode);
            let spacing = (pair[1].end_sample - pair[0].end_sample) as f64;
            let expected = f64::from(sample_rate) / rate.fps();
            assert!((spacing - expected).abs() <= 2.0, "{fps} fps: frames {spacing} samples apart, not {expected}");
        }
        assert_eq!(frames.iter().any(|f| f.drop_frame), rate == FrameRate::Fps2997Drop, "{fps} fps: drop-frame flag");
    }
    let _ = std::fs::remove_dir_all(dir);
}

/// The transport chases LTC from a WAV file written with libltc: located to the timecode's
/// place in the show (the prelude's timecode is 01:00:00:00, so 01:00:05:00 is 5 s in), played,
/// firing the cues it passes, and held a second after the timecode stops.
#[test]
fn the_transport_chases_ltc_from_a_wav_written_by_libltc() {
    let dir = temp_dir("chase");
    let helper = ltcgen(&dir);
    let raw = dir.join("ltc.raw");
    let status = std::process::Command::new(&helper)
        .args(["25", "1", "0", "5", "0", "200", "48000"])
        .arg(&raw)
        .status()
        .unwrap();
    assert!(status.success());
    // An 8-bit mono WAV around libltc's samples.
    let data = std::fs::read(&raw).unwrap();
    let mut wav = Vec::new();
    wav.extend(b"RIFF");
    wav.extend((36 + data.len() as u32).to_le_bytes());
    wav.extend(b"WAVEfmt ");
    wav.extend(16u32.to_le_bytes());
    wav.extend(1u16.to_le_bytes());
    wav.extend(1u16.to_le_bytes());
    wav.extend(48_000u32.to_le_bytes());
    wav.extend(48_000u32.to_le_bytes());
    wav.extend(1u16.to_le_bytes());
    wav.extend(8u16.to_le_bytes());
    wav.extend(b"data");
    wav.extend((data.len() as u32).to_le_bytes());
    wav.extend(&data);
    let wav_path = dir.join("ltc.wav");
    std::fs::write(&wav_path, wav).unwrap();

    let log = dir.join("chase.jsonl");
    let mut venue = std::process::Command::new(env!("CARGO_BIN_EXE_parvis"))
        .args(["run", "--no-render", "--no-audience", "--fps", "60", "--show", "evening", "--ltc"])
        .arg(&wav_path)
        .arg("--log")
        .arg(&log)
        .current_dir(root())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let from_ltc = |e: &parvis::model::command::LoggedCommand| matches!(&e.origin, CommandOrigin::Control(o) if o.starts_with("ltc "));
    let deadline = std::time::Instant::now() + Duration::from_secs(40);
    let entries = loop {
        let text = std::fs::read_to_string(&log).unwrap_or_default();
        let entries = read_command_log(text.as_bytes()).unwrap();
        let held = entries.iter().any(|e| {
            from_ltc(e) && matches!(&e.command, VenueCommand::Transport { action: TransportAction::Pause, .. })
        });
        if held {
            break entries;
        }
        assert!(std::time::Instant::now() < deadline, "the show never held after the timecode stopped: {entries:#?}");
        std::thread::sleep(Duration::from_millis(100));
    };
    let _ = venue.kill();
    let _ = venue.wait();
    let actions: Vec<&TransportAction> = entries
        .iter()
        .filter(|e| from_ltc(e))
        .filter_map(|e| match &e.command {
            VenueCommand::Transport { action, .. } => Some(action),
            _ => None,
        })
        .collect();
    // The first reading usable is the second frame (its rate comes from two frames' spacing).
    assert!(
        matches!(actions.as_slice(), [TransportAction::Seek { seconds }, TransportAction::Play, .., TransportAction::Pause] if (5.0..5.25).contains(seconds)),
        "{actions:#?}"
    );
    let cue = |id: &str| {
        entries.iter().find_map(|e| match &e.command {
            VenueCommand::CueFired { cue, actual, .. } if cue == id => Some(*actual),
            _ => None,
        })
    };
    let two = cue("2").expect("cue 2 (10 s) fired while chasing");
    assert!((10.0..10.1).contains(&two), "cue 2 at {two}");
    assert_eq!(cue("1"), None, "cue 1 (0 s) lies before the timecode's place");
    assert_eq!(cue("3"), None, "cue 3 (20 s) lies after the timecode stopped (13 s)");
    // A file that is not WAV stops the venue before it starts, naming it.
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_parvis"))
        .args(["run", "--no-render", "--no-audience", "--frames", "1", "--show", "evening", "--ltc", "Cargo.toml"])
        .current_dir(root())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && stderr.contains("Cargo.toml: not a WAV file"), "{stderr}");
    // MIDI Time Code from a port that is not there: refused, naming what there is (this
    // machine may have no MIDI system at all, which is said as such).
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_parvis"))
        .args(["run", "--no-render", "--no-audience", "--frames", "1", "--show", "evening", "--mtc", "No Such Desk"])
        .current_dir(root())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success()
            && (stderr.contains("--mtc: no MIDI input port matching \"No Such Desk\"; ports:")
                || stderr.contains("--mtc: cannot open the MIDI system")),
        "{stderr}"
    );
    let _ = std::fs::remove_dir_all(dir);
}

/// A stream's viewers see the stage late: a window stays open for them as long after it closes
/// on stage as they are behind, and no longer.
#[test]
fn a_window_stays_open_for_stream_viewers_as_long_as_they_are_behind() {
    use parvis::engine::audience::hub::{AudienceLink, ModerationPolicy};
    use parvis::engine::command::CommandLog;
    use parvis::model::audience::event::{AudienceEvent, ChatMeta};
    use parvis::model::audience::moderation::Blocklist;
    use parvis::model::audience::protocol::Limits;
    let mut app = app_with(VenueSetup::new(cloister(), assets()));
    let policy = ModerationPolicy {
        blocklist: Blocklist::default_fr_en(),
        limits: Limits { max_chars: 280, messages_per_10s: 100 },
    };
    let link = AudienceLink::new(policy, 64);
    let events = link.hub.events.clone();
    app.insert_resource(link);
    app.world_mut().resource_mut::<Audience>().stream_delay = Duration::from_secs(60);
    app.world_mut().write_message(SubmitCommand::local(VenueCommand::OpenWindow {
        rules: vec!["chorus".into()],
        seconds: Some(1.0),
        label: "Confetti!".into(),
    }));
    app.update();
    let opened = std::time::Instant::now();
    std::thread::sleep(Duration::from_millis(1200));
    app.update();
    let spawned = |app: &App| {
        app.world()
            .resource::<CommandLog>()
            .recent()
            .filter(|e| matches!(&e.command, VenueCommand::SpawnEffect { effect, .. } if effect == "confetti"))
            .count()
    };
    // Closed on stage 0.2 s ago. A viewer 30 s behind typed it while the window was open for them.
    let chat = |user: &str, behind: u64| AudienceEvent::Chat {
        user: user.into(),
        name: user.into(),
        text: "!confettis".into(),
        received: std::time::Instant::now(),
        staff: false,
        meta: ChatMeta { behind: Duration::from_secs(behind), from_stream: behind > 0, ..Default::default() },
    };
    // Someone on the page, with no delay, is too late (and fires nothing, so no cooldown runs).
    events.try_send(chat("page", 0)).unwrap();
    for _ in 0..3 {
        app.update();
    }
    assert_eq!(spawned(&app), 0, "a command after the window closed on stage must not count");
    events.try_send(chat("viewer", 30)).unwrap();
    for _ in 0..3 {
        app.update();
    }
    assert_eq!(spawned(&app), 1, "the delayed viewer's command counts");
    assert!(opened.elapsed() < Duration::from_secs(30), "the machine was too slow for this test's timing");
}

/// A show carried on from its log (`--resume`) keeps the live pass's bookkeeping: after a
/// jump to cue 6 and a crash, playing on does not fire cues 1–5, which the jump passed.
#[test]
fn a_resumed_show_does_not_fire_the_cues_its_log_passed() {
    let dir = temp_dir("resume");
    let log = dir.join("show.log");
    let mut setup = VenueSetup::new(cloister(), assets());
    setup.command_log = Some(log.clone());
    let mut app = app_with(setup);
    stage_manager(&mut app, TransportAction::Jump { cue: "6".into() });
    app.update();
    app.update();
    drop(app);
    let entries = read_command_log(std::io::BufReader::new(std::fs::File::open(&log).unwrap())).unwrap();
    let mut setup = VenueSetup::new(cloister(), assets());
    setup.resume_from(&entries).expect("the log loads a scene");
    let mut app = app_with(setup);
    app.update();
    let shows = app.world().resource::<Shows>();
    let running = shows.running.as_ref().expect("the show is back on the transport");
    assert_eq!((running.last_cue().map(|c| c.id.as_str()), running.state), (Some("6"), TransportState::Stopped));
    stage_manager(&mut app, TransportAction::Play);
    for _ in 0..30 {
        app.update();
    }
    let fired: Vec<String> = fired(&app).into_iter().map(|f| f.0).collect();
    assert!(fired.is_empty(), "cues fired after resuming at cue 6: {fired:?}");
    let _ = std::fs::remove_dir_all(dir);
}

/// OSC with real peers: Debian's liblo tools (`oscsend`, `oscdump`), a separate OSC
/// implementation, drive a running venue and receive its echoes. Parameters, the transport and
/// cues change the venue through the command pipeline (logged with the sender as origin);
/// malformed packets, unknown addresses, wrong types, out-of-range values and a flood change
/// nothing they should not; addresses not allowed are dropped unread.
mod osc {
    use std::io::BufRead;
    use std::net::{SocketAddr, UdpSocket};
    use std::path::PathBuf;
    use std::process::{Child, Command, Stdio};
    use std::sync::{Arc, Mutex};
    use std::time::{Duration, Instant};

    use parvis::model::command::{CommandOrigin, TransportAction, VenueCommand, read_command_log};
    use parvis::model::params::ParamValue;
    use parvis::model::program::{Overlay, ProgramAction};

    pub(crate) fn root() -> PathBuf {
        PathBuf::from(env!("CARGO_MANIFEST_DIR"))
    }

    pub(crate) fn tool(name: &str) -> &str {
        let found = Command::new("sh").args(["-c", &format!("command -v {name}")]).output().unwrap();
        assert!(found.status.success(), "{name} is missing: scripts/test.sh installs liblo-tools");
        name
    }

    /// A child whose stderr (or stdout) is kept as it comes.
    pub(crate) struct Watched {
        pub(crate) child: Child,
        text: Arc<Mutex<String>>,
    }

    impl Watched {
        pub(crate) fn spawn(mut command: Command, stdout: bool) -> Self {
            let mut child = if stdout {
                command.stdout(Stdio::piped()).stderr(Stdio::null()).spawn().unwrap()
            } else {
                command.stderr(Stdio::piped()).stdout(Stdio::null()).spawn().unwrap()
            };
            let text = Arc::new(Mutex::new(String::new()));
            let kept = text.clone();
            let reader: Box<dyn std::io::Read + Send> =
                if stdout { Box::new(child.stdout.take().unwrap()) } else { Box::new(child.stderr.take().unwrap()) };
            std::thread::spawn(move || {
                for line in std::io::BufReader::new(reader).lines().map_while(Result::ok) {
                    let mut t = kept.lock().unwrap();
                    t.push_str(&line);
                    t.push('\n');
                }
            });
            Self { child, text }
        }

        pub(crate) fn text(&self) -> String {
            self.text.lock().unwrap().clone()
        }

        pub(crate) fn wait_for(&self, what: &str, within: Duration) -> String {
            let deadline = Instant::now() + within;
            loop {
                let text = self.text();
                if text.contains(what) {
                    return text;
                }
                assert!(Instant::now() < deadline, "no {what:?} within {within:?}:\n{text}");
                std::thread::sleep(Duration::from_millis(20));
            }
        }
    }

    impl Drop for Watched {
        fn drop(&mut self) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }

    fn free_udp_port() -> u16 {
        UdpSocket::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
    }

    fn venue(log: &std::path::Path, extra: &[&str]) -> (Watched, SocketAddr) {
        let mut command = Command::new(env!("CARGO_BIN_EXE_parvis"));
        command
            .args([
                "run",
                "--no-render",
                "--no-audience",
                "--fps",
                "60",
                "--show",
                "evening",
                "--osc",
                "127.0.0.1:0",
                "--log",
            ])
            .arg(log)
            .args(extra)
            .current_dir(root());
        let venue = Watched::spawn(command, false);
        let text = venue.wait_for("OSC on udp://", Duration::from_secs(60));
        let addr = text.split("OSC on udp://").nth(1).unwrap().split_whitespace().next().unwrap().parse().unwrap();
        (venue, addr)
    }

    pub(crate) fn oscsend(addr: SocketAddr, path: &str, types: &str, values: &[&str]) {
        let status = Command::new(tool("oscsend"))
            .args(["127.0.0.1", &addr.port().to_string(), path, types])
            .args(values)
            .status()
            .unwrap();
        assert!(status.success(), "oscsend {path} {types} {values:?}");
    }

    fn logged(log: &std::path::Path) -> Vec<parvis::model::command::LoggedCommand> {
        let text = std::fs::read_to_string(log).unwrap_or_default();
        read_command_log(text.as_bytes()).unwrap()
    }

    fn wait_logged(log: &std::path::Path, what: &str, ok: impl Fn(&[parvis::model::command::LoggedCommand]) -> bool) {
        let deadline = Instant::now() + Duration::from_secs(20);
        while !ok(&logged(log)) {
            assert!(Instant::now() < deadline, "the log never had {what}: {:#?}", logged(log));
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    #[test]
    fn liblo_drives_the_venue_and_hears_its_echoes_and_bad_packets_change_nothing() {
        let dir = std::env::temp_dir().join(format!("parvis-osc-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let log = dir.join("osc.jsonl");
        let _ = std::fs::remove_file(&log);
        let dump_port = free_udp_port();
        let mut dump = Command::new(tool("oscdump"));
        dump.args(["-L", &dump_port.to_string()]);
        let dump = Watched::spawn(dump, true);
        std::thread::sleep(Duration::from_millis(300));
        let (venue, addr) = venue(&log, &["--osc-out", &format!("127.0.0.1:{dump_port}")]);
        // The venue tells the desk every parameter as it opens.
        dump.wait_for("/parvis/param/fog f 0.000000", Duration::from_secs(20));

        // Hostile input first: garbage, a flood of it, bad types and values, unknown addresses.
        let raw = UdpSocket::bind("127.0.0.1:0").unwrap();
        raw.send_to(b"not osc at all", addr).unwrap();
        raw.send_to(b"/parvis/param/fog\0\0\0,f\0\0", addr).unwrap(); // a float tag with no float
        for _ in 0..5_000 {
            raw.send_to(b"#bundle\0\0\0\0\0\0\0\0\x01\0\0\0\x10garbage", addr).unwrap();
        }
        oscsend(addr, "/parvis/param/fog", "f", &["9"]);
        oscsend(addr, "/parvis/param/fog", "s", &["thick"]);
        oscsend(addr, "/parvis/param/nope", "f", &["1"]);
        oscsend(addr, "/nothing/here", "", &[]);

        // Then a desk's real work.
        oscsend(addr, "/parvis/param/fog", "f", &["0.1"]);
        oscsend(addr, "/parvis/param/stage_light", "s", &["#ff0000"]);
        oscsend(addr, "/parvis/param/lanterns", "fff", &["0", "0", "1"]);
        oscsend(addr, "/parvis/param/sky", "i", &["3"]);
        oscsend(addr, "/parvis/param/banner", "F", &[]);
        oscsend(addr, "/parvis/show/play", "i", &["1"]);
        oscsend(addr, "/parvis/show/play", "i", &["0"]); // the button's release: nothing
        wait_logged(&log, "the transport playing", |l| {
            l.iter().any(|e| matches!(&e.command, VenueCommand::Transport { action: TransportAction::Play, .. }))
        });
        oscsend(addr, "/parvis/show/go", "", &[]);
        oscsend(addr, "/parvis/cue/3", "", &[]);
        wait_logged(&log, "cue 3 fired", |l| {
            l.iter().any(|e| matches!(&e.command, VenueCommand::CueFired { cue, .. } if cue == "3"))
        });
        // The director from the desk: a viewpoint the venue lacks is refused by the venue.
        oscsend(addr, "/parvis/program/cut", "s", &["balcony"]);
        oscsend(addr, "/parvis/program/overlay", "si", &["credits", "1"]);
        oscsend(addr, "/parvis/program/cut", "s", &["aerial"]);
        wait_logged(&log, "the program cut", |l| {
            l.iter().any(|e| matches!(&e.command, VenueCommand::Program { action: ProgramAction::Cut { .. } }))
        });

        let entries = logged(&log);
        let from_osc: Vec<&VenueCommand> = entries
            .iter()
            .filter(|e| matches!(&e.origin, CommandOrigin::Control(o) if o.starts_with("osc 127.0.0.1:")))
            .map(|e| &e.command)
            .collect();
        let set = |name: &str| {
            from_osc.iter().find_map(|c| match c {
                VenueCommand::SetParam { name: n, value } if n == name => Some(value.clone()),
                _ => None,
            })
        };
        assert_eq!(set("fog"), Some(ParamValue::Float(0.1)), "only the good fog value applied: {from_osc:#?}");
        assert_eq!(set("sky"), Some(ParamValue::Enum("night".into())));
        assert_eq!(set("banner"), Some(ParamValue::Bool(false)));
        assert!(matches!(set("stage_light"), Some(ParamValue::Colour(c)) if c.srgba == [1.0, 0.0, 0.0, 1.0]));
        assert!(matches!(set("lanterns"), Some(ParamValue::Colour(c)) if c.srgba == [0.0, 0.0, 1.0, 1.0]));
        let sets = from_osc.iter().filter(|c| matches!(c, VenueCommand::SetParam { .. })).count();
        assert_eq!(sets, 5, "bad values must not apply: {from_osc:#?}");
        let plays = from_osc
            .iter()
            .filter(|c| matches!(c, VenueCommand::Transport { action: TransportAction::Play, .. }))
            .count();
        assert_eq!(plays, 1, "a button's release is not a press");
        let program: Vec<&ProgramAction> = from_osc
            .iter()
            .filter_map(|c| match c {
                VenueCommand::Program { action } => Some(action),
                _ => None,
            })
            .collect();
        assert_eq!(
            program,
            [
                &ProgramAction::Overlay { overlay: Overlay::Credits, visible: true },
                &ProgramAction::Cut { viewpoint: "aerial".into() }
            ],
            "the director's messages, the unknown viewpoint refused"
        );
        // GO fired the cue in standby (4, the first manual cue); /parvis/cue/3 jumped to cue 3.
        let cues: Vec<&str> = entries
            .iter()
            .filter_map(|e| match &e.command {
                VenueCommand::CueFired { cue, .. } => Some(cue.as_str()),
                _ => None,
            })
            .collect();
        assert!(cues.contains(&"4") && cues.ends_with(&["3"]), "{cues:?}");

        // The echoes, as liblo read them.
        let echoes = dump.wait_for("/parvis/cue/fired ssff \"evening\" \"3\"", Duration::from_secs(10));
        for want in [
            "/parvis/param/fog f 0.100000",
            "/parvis/param/stage_light fff 1.000000 0.000000 0.000000",
            "/parvis/param/sky s \"night\"",
            "/parvis/param/banner F",
            "/parvis/show/state ssf \"evening\" \"playing\"",
            "/parvis/cue/fired ssff \"evening\" \"4\"",
        ] {
            assert!(echoes.contains(want), "no echo {want:?} in:\n{echoes}");
        }
        // The bad packets were counted and said, not once per packet.
        let stderr = venue.wait_for("more malformed packets since the last line", Duration::from_secs(5));
        assert!(stderr.contains("malformed OSC packet"), "{stderr}");
        assert!(stderr.contains("/parvis/param/fog: stage parameter \"fog\" takes 0 to 0.2, not 9"), "{stderr}");
        assert!(stderr.lines().count() < 200, "the flood flooded the log: {} lines", stderr.lines().count());
        drop(venue);
        let _ = std::fs::remove_dir_all(dir);
    }

    #[test]
    fn osc_from_an_address_not_allowed_is_dropped_unread() {
        let dir = std::env::temp_dir().join(format!("parvis-osc-allow-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let log = dir.join("osc.jsonl");
        let _ = std::fs::remove_file(&log);
        let (venue, addr) = venue(&log, &["--osc-allow", "10.0.0.0/8"]);
        oscsend(addr, "/parvis/param/fog", "f", &["0.1"]);
        let stderr = venue.wait_for("not an allowed address", Duration::from_secs(20));
        assert!(stderr.contains("allowed: 10.0.0.0/8"), "{stderr}");
        std::thread::sleep(Duration::from_millis(300));
        assert!(
            !logged(&log).iter().any(|e| matches!(e.origin, CommandOrigin::Control(_))),
            "a command from a refused address was applied"
        );
        drop(venue);
        // A bad list stops the venue before it starts, naming the entry.
        let out = Command::new(env!("CARGO_BIN_EXE_parvis"))
            .args(["run", "--no-render", "--no-audience", "--frames", "1", "--osc", "0", "--osc-allow", "desk.local"])
            .current_dir(root())
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            !out.status.success()
                && stderr
                    .contains("--osc-allow expected an IP address or a range like 10.0.0.0/24, found \"desk.local\""),
            "{stderr}"
        );
        let _ = std::fs::remove_dir_all(dir);
    }

    fn curl(url: &str) -> (String, String) {
        let out = Command::new(tool("curl")).args(["-s", "-w", "\n%{http_code}", url]).output().unwrap();
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        let (body, code) = text.rsplit_once('\n').unwrap();
        (body.to_owned(), code.to_owned())
    }

    /// OSCQuery read by a real HTTP client (curl): every stage parameter of the scene with its
    /// type, range and current value, the show's cues, and HOST_INFO naming the OSC port.
    #[test]
    fn oscquery_describes_every_parameter_and_cue_to_a_real_client() {
        let dir = std::env::temp_dir().join(format!("parvis-oscquery-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let log = dir.join("q.jsonl");
        let _ = std::fs::remove_file(&log);
        let (venue, osc_addr) = venue(&log, &["--oscquery", "127.0.0.1:0"]);
        let text = venue.wait_for("OSCQuery at http://", Duration::from_secs(20));
        let base = format!("http://{}", text.split("OSCQuery at http://").nth(1).unwrap().split('/').next().unwrap());

        // Until its first frame the venue says it is loading (503): a client retries.
        let deadline = std::time::Instant::now() + Duration::from_secs(20);
        let (body, code) = loop {
            let (body, code) = curl(&format!("{base}/"));
            if code != "503" || std::time::Instant::now() > deadline {
                break (body, code);
            }
            assert!(body.contains("loading"), "{body}");
            std::thread::sleep(Duration::from_millis(100));
        };
        assert_eq!(code, "200", "{body}");
        let tree: serde_json::Value = serde_json::from_str(&body).unwrap();
        let scene = parvis::model::scene::validate::parse_scene(parvis::model::scene::DEFAULT_SCENE).unwrap();
        let params = &tree["CONTENTS"]["parvis"]["CONTENTS"]["param"]["CONTENTS"];
        assert_eq!(params.as_object().unwrap().len(), scene.params.len());
        for def in &scene.params {
            let node = &params[&def.name];
            assert_eq!(node["FULL_PATH"], format!("/parvis/param/{}", def.name));
            assert_eq!(node["ACCESS"], 3);
            let (kind, value) = match &def.kind {
                parvis::model::scene::format::ParamKind::Float { default, min, max } => {
                    assert_eq!(node["RANGE"][0]["MIN"].as_f64().unwrap() as f32, *min);
                    assert_eq!(node["RANGE"][0]["MAX"].as_f64().unwrap() as f32, *max);
                    ("f", serde_json::json!([default]))
                }
                parvis::model::scene::format::ParamKind::Colour { .. } => ("r", node["VALUE"].clone()),
                parvis::model::scene::format::ParamKind::Bool { default } => {
                    (if *default { "T" } else { "F" }, serde_json::json!([default]))
                }
                parvis::model::scene::format::ParamKind::Enum { default, options } => {
                    assert_eq!(node["RANGE"][0]["VALS"], serde_json::json!(options));
                    ("s", serde_json::json!([default]))
                }
            };
            assert_eq!((node["TYPE"].as_str().unwrap(), &node["VALUE"]), (kind, &value), "{}", def.name);
        }
        let cues = &tree["CONTENTS"]["parvis"]["CONTENTS"]["cue"]["CONTENTS"];
        assert_eq!(cues.as_object().unwrap().len(), 7);
        assert_eq!(cues["3"]["DESCRIPTION"], "Petals at 01:00:20:00");

        let (info, _) = curl(&format!("{base}/?HOST_INFO"));
        let info: serde_json::Value = serde_json::from_str(&info).unwrap();
        assert_eq!(info["OSC_PORT"], osc_addr.port());
        assert_eq!(info["OSC_TRANSPORT"], "UDP");
        // Values follow the venue.
        oscsend(osc_addr, "/parvis/param/fog", "f", &["0.1"]);
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let (value, code) = curl(&format!("{base}/parvis/param/fog?VALUE"));
            assert_eq!(code, "200");
            let value: serde_json::Value = serde_json::from_str(&value).unwrap();
            if (value["VALUE"][0].as_f64().unwrap() - 0.1).abs() < 1e-6 {
                break;
            }
            assert!(Instant::now() < deadline, "the description never showed fog = 0.1: {value}");
            std::thread::sleep(Duration::from_millis(50));
        }
        assert_eq!(curl(&format!("{base}/parvis/nothing")).1, "404");
        assert_eq!(curl(&format!("{base}/parvis/param/fog?UNIT")).1, "404");
        drop(venue);
        let _ = std::fs::remove_dir_all(dir);
    }

    /// A scene file: the built-in venue with its performer taking VMC on a free port.
    fn vmc_scene(dir: &std::path::Path) -> PathBuf {
        let text = parvis::model::scene::DEFAULT_SCENE.replace(
            "source: Recording(path: \"performances/evening.poses\")",
            "source: Vmc(port: 0), hold: 0.5, ease: 0.3",
        );
        assert!(text.contains("Vmc(port: 0)"), "the built-in performer's source was found");
        let path = dir.join("vmc.ron");
        std::fs::write(&path, text).unwrap();
        path
    }

    pub(crate) fn vmc_addr(stderr: &str) -> SocketAddr {
        stderr.split("VMC for singer on udp://").nth(1).unwrap().split_whitespace().next().unwrap().parse().unwrap()
    }

    /// A flood of capture packets (a broken sender, or an attack from an allowed address):
    /// the venue's frames keep their pace, every packet is counted as read or dropped, and the
    /// performer ends on the last pose.
    #[test]
    fn a_flood_of_vmc_packets_does_not_stall_the_venue() {
        use parvis::engine::performer::{Performers, pose_link, vmc_ports};
        use parvis::model::scene::format::PerformerSource;
        use std::sync::atomic::Ordering;

        let mut scene = super::cloister();
        scene.performers[0].source = PerformerSource::Vmc { port: 0, from: None };
        let performers = scene.performers.clone();
        let mut app = super::app_with(super::VenueSetup::new(scene, super::assets()));
        let doorbell = app.world().resource::<parvis::engine::rest::Rest>().doorbell.clone();
        let (hub, link) = pose_link(doorbell);
        let stats = link.stats.clone();
        let allow = parvis::model::osc::AllowList::loopback();
        let edge = parvis::edges::vmc::VmcEdge::start("127.0.0.1".parse().unwrap(), vmc_ports(&performers), allow, hub)
            .unwrap();
        let addr = edge.sockets[0].0;
        app.insert_resource(link).insert_resource(edge);
        let sender = std::thread::spawn(move || {
            let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
            let total = 50_000u32;
            for i in 0..total {
                let angle = if i + 1 == total { 0.5f32 } else { (i % 100) as f32 / 200.0 };
                let mut args = vec![rosc::OscType::String("Head".into())];
                args.extend([0.0, 0.0, 0.0, angle.sin(), 0.0, 0.0, angle.cos()].map(rosc::OscType::Float));
                let message = rosc::OscMessage { addr: "/VMC/Ext/Bone/Pos".into(), args };
                let packet = rosc::encoder::encode(&rosc::OscPacket::Message(message)).unwrap();
                let _ = socket.send_to(&packet, addr);
            }
            total
        });
        let mut slowest = Duration::ZERO;
        let started = Instant::now();
        while !sender.is_finished() || started.elapsed() < Duration::from_millis(500) {
            let t = Instant::now();
            app.update();
            slowest = slowest.max(t.elapsed());
            std::thread::sleep(Duration::from_millis(5));
            assert!(started.elapsed() < Duration::from_secs(60), "the flood never ended");
        }
        let sent = sender.join().unwrap();
        for _ in 0..20 {
            app.update();
            std::thread::sleep(Duration::from_millis(10));
        }
        let (packets, dropped, applied) = (
            stats.packets.load(Ordering::Relaxed),
            stats.dropped.load(Ordering::Relaxed),
            stats.applied.load(Ordering::Relaxed),
        );
        eprintln!(
            "VMC flood: {sent} sent, {packets} read, {applied} applied, {dropped} dropped; slowest frame {slowest:?}"
        );
        // UDP may lose packets in the kernel under a flood; what was read was applied or dropped.
        assert!(packets > u64::from(sent) / 10, "most of the flood was read: {packets} of {sent}");
        assert_eq!(packets, applied + dropped, "every packet read is counted");
        assert!(slowest < Duration::from_millis(250), "a frame took {slowest:?} during the flood");
        let state = app.world().resource::<Performers>().list[0].state;
        use parvis::engine::performer::CaptureState;
        assert!(matches!(state, CaptureState::Live | CaptureState::Holding), "the capture was taken: {state:?}");
    }

    /// The whole path through real processes: liblo's `oscsend` sends VMC to a running venue,
    /// which records it (`--record-performers`), says when the capture is lost and when the
    /// performer goes idle, and turns away what it should.
    #[test]
    fn vmc_from_liblo_is_recorded_and_its_loss_is_told_to_the_operator() {
        use parvis::model::performer::{HumanBone, recording};
        let dir = std::env::temp_dir().join(format!("parvis-vmc-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let (log, poses) = (dir.join("vmc.jsonl"), dir.join("vmc.poses"));
        let scene = vmc_scene(&dir);
        let (live, _) = venue(&log, &["--record-performers", poses.to_str().unwrap(), scene.to_str().unwrap()]);
        let stderr = live.wait_for("VMC for singer on udp://", Duration::from_secs(30));
        let addr = vmc_addr(&stderr);
        assert!(stderr.contains("from 127.0.0.1/8, ::1/128"), "loopback only by default: {stderr}");
        // The socket is bound before the venue's first frames make its performers: what comes
        // before is not claimed (a rig sends all the time; a test sends once). The arm goes
        // until the venue says it took the capture.
        let started = Instant::now();
        while !live.text().contains("performer singer: capture from 127.0.0.1:") {
            assert!(started.elapsed() < Duration::from_secs(20), "no capture: {}", live.text());
            oscsend(
                addr,
                "/VMC/Ext/Bone/Pos",
                "sfffffff",
                &["LeftUpperArm", "0", "0", "0", "0", "0", "-0.5", "0.8660254"],
            );
            std::thread::sleep(Duration::from_millis(200));
        }
        oscsend(addr, "/VMC/Ext/Root/Pos", "sfffffff", &["root", "0.5", "0", "0", "0", "0", "0", "1"]);
        oscsend(addr, "/VMC/Ext/Blend/Val", "sf", &["A", "0.75"]);
        oscsend(addr, "/VMC/Ext/Blend/Apply", "", &[]);
        oscsend(addr, "/VMC/Ext/Bone/Pos", "sfffffff", &["Wing", "0", "0", "0", "0", "0", "0", "1"]);
        live.wait_for("performer singer: capture from 127.0.0.1:", Duration::from_secs(20));
        live.wait_for("capture lost; holding the last pose", Duration::from_secs(20));
        let text = live.wait_for("easing to the idle pose", Duration::from_secs(20));
        assert!(text.contains("unknown bone \"Wing\""), "the bad bone is said: {text}");
        drop(live);

        let records = recording::read(&std::fs::read(&poses).unwrap()).unwrap();
        // The arm (once or more, as it was sent), the root, the applied blendshape (the value
        // alone and the unknown bone update nothing).
        let n = records.len();
        assert!(n >= 3, "three updates or more recorded: {records:#?}");
        assert!(records.iter().all(|r| r.performer == "singer"));
        assert!(records.windows(2).all(|w| w[0].time <= w[1].time), "recorded in the clock's order");
        for record in &records[..n - 2] {
            let arm = &record.update.bones[0];
            assert_eq!(arm.0, HumanBone::from_name("LeftUpperArm").unwrap());
            assert!((arm.1.rotation[2] - 0.5).abs() < 1e-3, "stored in glTF's axes: {:?}", arm.1.rotation);
        }
        assert_eq!(records[n - 2].update.root.unwrap().position, [-0.5, 0.0, 0.0], "X mirrored from Unity's");
        assert_eq!(records[n - 1].update.blends, vec![("A".to_owned(), 0.75)]);

        // Capture from an address that is not allowed is dropped unread.
        let (guarded, _) = venue(&log, &["--vmc-allow", "10.0.0.0/8", scene.to_str().unwrap()]);
        let stderr = guarded.wait_for("VMC for singer on udp://", Duration::from_secs(30));
        oscsend(vmc_addr(&stderr), "/VMC/Ext/Bone/Pos", "sfffffff", &["Head", "0", "0", "0", "0", "0", "0", "1"]);
        let stderr = guarded.wait_for("not an allowed address", Duration::from_secs(20));
        assert!(stderr.contains("see --vmc-allow") && !stderr.contains("capture from"), "{stderr}");
        drop(guarded);
        let _ = std::fs::remove_dir_all(dir);
    }
}
