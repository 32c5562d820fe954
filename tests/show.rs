//! Shows on the audio clock, headless on kira's mock backend: cues fire once, in order, in the
//! first frame whose clock position has passed them; GO, follow-ons, seeks, loops and jumps;
//! the log records planned and actual positions, and replaying it gives the same venue.

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
    let data_len = samples.len() as u32 * 2;
    let mut bytes = Vec::new();
    bytes.extend(b"RIFF");
    bytes.extend((36 + data_len).to_le_bytes());
    bytes.extend(b"WAVEfmt ");
    bytes.extend(16u32.to_le_bytes());
    bytes.extend(1u16.to_le_bytes());
    bytes.extend(1u16.to_le_bytes());
    bytes.extend(rate.to_le_bytes());
    bytes.extend((rate * 2).to_le_bytes());
    bytes.extend(2u16.to_le_bytes());
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

/// Linear timecode written by Debian's libltc (a small C helper linked against it) reads back
/// frame by frame: 24, 25, 29.97 drop-frame and 30 fps, at 48 and 44.1 kHz, with noise added.
#[test]
fn ltc_written_by_libltc_decodes_frame_by_frame() {
    use parvis::model::show::ltc::LtcDecoder;
    use parvis::model::show::timecode::{FrameRate, Timecode};
    let dir = temp_dir("ltc");
    let helper = dir.join("ltcgen");
    let built = std::process::Command::new("cc")
        .arg(root().join("tests/tools/ltcgen.c"))
        .args(["-O2", "-lltc", "-o"])
        .arg(&helper)
        .output()
        .expect("a C compiler (build-essential)");
    assert!(built.status.success(), "libltc-dev is needed: {}", String::from_utf8_lossy(&built.stderr));
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
    let helper = dir.join("ltcgen");
    let built = std::process::Command::new("cc")
        .arg(root().join("tests/tools/ltcgen.c"))
        .args(["-O2", "-lltc", "-o"])
        .arg(&helper)
        .output()
        .expect("a C compiler");
    assert!(built.status.success(), "{}", String::from_utf8_lossy(&built.stderr));
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
