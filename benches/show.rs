//! Shows and OSC (issue #16): how late cues fire against the audio clock over a 10-minute show
//! of 500 cues, with steady frames and with frames of random length (a loaded renderer); OSC
//! messages decoded and turned into commands per second on one core; and a packet's time from
//! its arrival in the venue's inbox to its command applied; and the program output's cost per
//! frame (`SHOW_BENCH_PROGRAM=1` for that alone; needs ffmpeg and a renderer, lavapipe here);
//! performers' VMC decoding and their cost per frame (`SHOW_BENCH_PERFORMERS=1` for that alone).
//!
//! `cargo bench --profile perf --bench show`. Results in docs/benchmarks.md.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use bevy::prelude::*;
use bevy::time::TimeUpdateStrategy;
use parvis::app::{VenueSetup, core_app};
use parvis::engine::command::{CommandLog, SubmitCommand, VenueParams};
use parvis::engine::control::{ControlPacket, control_link};
use parvis::engine::rest::Doorbell;
use parvis::engine::show::{Shows, TransportState};
use parvis::model::assets_root::AssetsRoot;
use parvis::model::command::{TransportAction, VenueCommand};
use parvis::model::osc;
use parvis::model::params::ParamValue;
use parvis::model::rng::SeededRng;
use parvis::model::scene::DEFAULT_SCENE;
use parvis::model::scene::format::{CueAction, CueAt, CueDef, SceneFile, ShowDef, SongDef, TempoDef};
use parvis::model::scene::validate::load_scene_str;
use parvis::model::show::plan::CLOCK_EPSILON;

fn scene() -> SceneFile {
    let assets = AssetsRoot::new(concat!(env!("CARGO_MANIFEST_DIR"), "/assets"));
    load_scene_str(DEFAULT_SCENE, "cloister.ron", &assets).unwrap()
}

/// Five songs of two minutes, 100 cues each: 80 at seconds drawn at random (to the
/// microsecond), 20 on bars and beats of a 123-bpm tempo map.
fn long_show() -> ShowDef {
    let mut rng = SeededRng::new(16);
    let songs = (0..5)
        .map(|s| {
            let mut times: Vec<f64> = (0..80).map(|_| (f64::from(rng.unit()) * 119.0 * 1e6).round() / 1e6).collect();
            times.sort_by(f64::total_cmp);
            let mut cues: Vec<(f64, CueAt)> = times.into_iter().map(|t| (t, CueAt::Seconds(t))).collect();
            for i in 0..20u32 {
                let (bar, beat) = (2 + i * 3, 1.0 + f64::from(i % 4) * 0.75);
                let t = (f64::from(bar - 1) * 4.0 + beat - 1.0) * 60.0 / 123.0;
                cues.push((t, CueAt::Bar(bar, beat)));
            }
            cues.sort_by(|a, b| a.0.total_cmp(&b.0));
            let cues = cues
                .into_iter()
                .enumerate()
                .map(|(i, (_, at))| CueDef {
                    id: format!("{s}.{i}"),
                    label: String::new(),
                    at,
                    follow: None,
                    actions: vec![CueAction::Set {
                        param: "fog".into(),
                        value: format!("{}", (i % 20) as f32 / 100.0),
                    }],
                })
                .collect();
            SongDef {
                name: format!("song {s}"),
                tracks: vec![],
                length: Some(120.0),
                timecode: None,
                tempo: vec![TempoDef { bar: 1, bpm: 123.0, beats_per_bar: 4 }],
                cues,
                surtitles: Default::default(),
            }
        })
        .collect();
    ShowDef { name: "long".into(), fps: 25.0, songs }
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

/// Plays the long show with frames of `frame(i)` seconds; returns each cue's lateness
/// (actual − planned, seconds), whether it fired in the frame its time fell in, and the wall
/// time.
fn play(frame: impl Fn(&mut SeededRng) -> f64) -> (Vec<f64>, usize, Duration) {
    let mut scene = scene();
    scene.shows = vec![long_show()];
    let mut app = core_app(VenueSetup::new(scene, AssetsRoot::new(concat!(env!("CARGO_MANIFEST_DIR"), "/assets"))));
    app.update();
    app.world_mut().write_message(SubmitCommand::local(VenueCommand::Transport {
        show: "long".into(),
        action: TransportAction::Play,
    }));
    let mut rng = SeededRng::new(7);
    let started = Instant::now();
    // Frame boundaries on the show's clock, to say which frame each cue's time fell in.
    let mut bounds = vec![];
    loop {
        let dt = frame(&mut rng);
        app.insert_resource(TimeUpdateStrategy::ManualDuration(Duration::from_secs_f64(dt)));
        app.update();
        let shows = app.world().resource::<Shows>();
        let running = shows.running.as_ref().unwrap();
        bounds.push(running.position);
        if running.state == TransportState::Stopped && running.position > 0.0 {
            break;
        }
    }
    let wall = started.elapsed();
    let fired = &app.world().resource::<Shows>().fired;
    assert_eq!(fired.len(), 500, "every cue fires once");
    let mut late: Vec<f64> = fired.iter().map(|(_, _, planned, actual)| actual - planned).collect();
    // A cue is in its frame when the first frame boundary at or after its time is where it fired.
    let in_frame = fired
        .iter()
        .filter(|(_, _, planned, actual)| bounds.iter().find(|b| **b >= *planned - CLOCK_EPSILON) == Some(actual))
        .count();
    if std::env::var_os("SHOW_BENCH_DEBUG").is_some() {
        for (_, cue, planned, actual) in fired {
            let first = bounds.iter().find(|b| **b >= *planned - CLOCK_EPSILON);
            if first != Some(actual) {
                eprintln!("cue {cue}: planned {planned}, fired at {actual}, first boundary after {first:?}");
            }
        }
    }
    late.sort_by(f64::total_cmp);
    (late, in_frame, wall)
}

fn report_timing(label: &str, frame_ms: &str, (late, in_frame, wall): (Vec<f64>, usize, Duration)) {
    let ms = |v: f64| v * 1000.0;
    println!(
        "cue timing, {label} ({frame_ms}): late by min {:.3} ms, median {:.3} ms, p99 {:.3} ms, max {:.3} ms; {in_frame}/500 in the frame their time falls in; 10-min show played in {:.1} s",
        ms(late[0]),
        ms(percentile(&late, 0.5)),
        ms(percentile(&late, 0.99)),
        ms(late[late.len() - 1]),
        wall.as_secs_f64()
    );
}

fn osc_ingest() {
    let scene = scene();
    let params = parvis::model::params::StageParams::from_scene(&scene);
    let messages = [
        osc::param_message("fog", &ParamValue::Float(0.05)),
        osc::param_message(
            "stage_light",
            &ParamValue::Colour(parvis::model::scene::format::Colour::rgb(1.0, 0.2, 0.0)),
        ),
        osc::param_message("sky", &ParamValue::Enum("night".into())),
        osc::param_message("banner", &ParamValue::Bool(false)),
    ];
    let packets: Vec<Vec<u8>> = messages.iter().map(|m| osc::encode(vec![m.clone()])).collect();
    // Decode + address and value to a checked command, one core.
    let mut rounds = vec![];
    for _ in 0..7 {
        let n = 400_000;
        let started = Instant::now();
        let mut ok = 0;
        for i in 0..n {
            let decoded = osc::decode(&packets[i % packets.len()]).unwrap();
            if let Ok(Some(_)) = osc::command_for(&decoded[0], &params, Some("evening")) {
                ok += 1;
            }
        }
        assert_eq!(ok, n);
        rounds.push(n as f64 / started.elapsed().as_secs_f64());
    }
    rounds.sort_by(f64::total_cmp);
    println!(
        "OSC decode + command: median {:.0} messages/s over 7 rounds of 400 000 (min {:.0}, max {:.0})",
        rounds[3], rounds[0], rounds[6]
    );

    // Through the venue: inbox → command → checked, applied and logged (in memory), one frame
    // per batch of 20 000 (the most a frame reads).
    let mut app = core_app(VenueSetup::new(scene, AssetsRoot::new(concat!(env!("CARGO_MANIFEST_DIR"), "/assets"))));
    app.update();
    let (hub, link, _) = control_link(Doorbell::default(), false);
    app.insert_resource(link);
    let from: SocketAddr = "127.0.0.1:53000".parse().unwrap();
    let decoded: Vec<_> = packets.iter().map(|p| osc::decode(p).unwrap()).collect();
    let mut rates = vec![];
    for round in 0..7 {
        let before = app.world().resource::<CommandLog>().applied();
        let started = Instant::now();
        for _ in 0..5 {
            for i in 0..4_000 {
                let _ = hub.inbox.try_send(ControlPacket {
                    from,
                    messages: decoded[i % decoded.len()].clone(),
                    received: Instant::now(),
                });
            }
            app.update();
        }
        let applied = app.world().resource::<CommandLog>().applied() - before;
        assert_eq!(applied, 20_000, "round {round}");
        rates.push(applied as f64 / started.elapsed().as_secs_f64());
    }
    rates.sort_by(f64::total_cmp);
    println!(
        "OSC through the venue (decoded packets → applied and logged in memory): median {:.0} commands/s",
        rates[3]
    );

    // Latency: a packet queued, then the next frame; from its arrival to its command applied.
    let mut latencies = vec![];
    let mut frames = vec![];
    for i in 0..2_000 {
        let received = Instant::now();
        let value = ParamValue::Float((i % 20) as f32 / 100.0);
        let _ = hub.inbox.try_send(ControlPacket { from, messages: vec![osc::param_message("fog", &value)], received });
        let frame = Instant::now();
        app.update();
        latencies.push(received.elapsed().as_secs_f64() * 1000.0);
        frames.push(frame.elapsed().as_secs_f64() * 1000.0);
        assert_eq!(app.world().resource::<VenueParams>().value("fog"), Some(&value));
    }
    latencies.sort_by(f64::total_cmp);
    frames.sort_by(f64::total_cmp);
    println!(
        "OSC arrival → applied: median {:.3} ms, p99 {:.3} ms; the frame itself: median {:.3} ms (core venue, no renderer)",
        percentile(&latencies, 0.5),
        percentile(&latencies, 0.99),
        percentile(&frames, 0.5)
    );
}

/// Surtitles against the clock: 500 surtitles over ten minutes, at random starts to the
/// millisecond; how late each appears (the show's position in the frame it first shows, minus
/// its start).
fn surtitle_timing() {
    let dir = std::env::temp_dir().join(format!("parvis-bench-surtitles-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let mut rng = SeededRng::new(11);
    let mut srt = String::new();
    let mut starts = Vec::new();
    for i in 0..500u32 {
        let start = f64::from(i) * 1.2 + (f64::from(rng.unit()) * 0.2 * 1000.0).round() / 1000.0;
        let end = start + 0.8;
        let stamp = |t: f64| {
            let ms = (t * 1000.0).round() as u64;
            format!("{:02}:{:02}:{:02},{:03}", ms / 3_600_000, ms / 60_000 % 60, ms / 1000 % 60, ms % 1000)
        };
        srt.push_str(&format!("{}\n{} --> {}\nline {i}\n\n", i + 1, stamp(start), stamp(end)));
        starts.push(start);
    }
    std::fs::write(dir.join("subs.srt"), srt).unwrap();
    // Without the cloister's models, which are not under this assets root.
    let mut scene = scene().stage_only();
    scene.shows = vec![ShowDef {
        name: "subs".into(),
        fps: 25.0,
        songs: vec![SongDef {
            name: "one".into(),
            tracks: vec![],
            length: Some(605.0),
            timecode: None,
            tempo: vec![],
            cues: vec![],
            surtitles: [("en".to_owned(), "subs.srt".to_owned())].into(),
        }],
    }];
    let mut app = core_app(VenueSetup::new(scene, AssetsRoot::new(&dir)));
    app.insert_resource(TimeUpdateStrategy::ManualDuration(Duration::from_secs_f64(1.0 / 60.0)));
    app.update();
    app.world_mut().write_message(SubmitCommand::local(VenueCommand::Transport {
        show: "subs".into(),
        action: TransportAction::Play,
    }));
    let mut late = Vec::new();
    let mut shown = String::new();
    loop {
        app.update();
        let position = app.world().resource::<Shows>().running.as_ref().unwrap().position;
        let text =
            app.world().resource::<parvis::engine::show::ShowSurtitles>().texts.get("en").cloned().unwrap_or_default();
        if text != shown && !text.is_empty() {
            let i: usize = text.trim_start_matches("line ").parse().unwrap();
            late.push(position - starts[i]);
        }
        shown = text;
        if position >= 605.0 {
            break;
        }
    }
    assert_eq!(late.len(), 500, "every surtitle shows");
    late.sort_by(f64::total_cmp);
    println!(
        "surtitles at 60 fps: late by min {:.3} ms, median {:.3} ms, p99 {:.3} ms, max {:.3} ms over 500",
        late[0] * 1000.0,
        percentile(&late, 0.5) * 1000.0,
        percentile(&late, 0.99) * 1000.0,
        late[499] * 1000.0
    );
    let _ = std::fs::remove_dir_all(dir);
}

/// The program output's cost per frame (issue #17): the same venue rendered headless at
/// 1280×720 and 1920×1080, frame times without an output, with the output's readback and
/// queue (every frame read back and handed to the dispatcher, no encoder), and with libx264
/// encoding into a Matroska file (ffmpeg competes for the same cores).
fn program_output_cost() {
    use parvis::app::headless::HeadlessRenderer;
    use parvis::edges::program::{ProgramOutput, QUEUE};
    use parvis::engine::program::{ProgramFeed, ProgramOverlays, ProgramStats};
    use parvis::model::program::{OutputSettings, OutputTarget, Overlay};
    use std::sync::Arc;
    use std::sync::atomic::Ordering;

    let frames = 60;
    let median = |r: &mut HeadlessRenderer| {
        let mut times: Vec<f64> = (0..frames)
            .map(|_| {
                let t = Instant::now();
                r.step();
                t.elapsed().as_secs_f64() * 1000.0
            })
            .collect();
        times.sort_by(f64::total_cmp);
        times[times.len() / 2]
    };
    for size in [UVec2::new(1280, 720), UVec2::new(1920, 1080)] {
        let assets = AssetsRoot::new(concat!(env!("CARGO_MANIFEST_DIR"), "/assets"));
        let attach = |r: &mut HeadlessRenderer, targets: Vec<OutputTarget>| {
            let settings = OutputSettings { width: size.x, height: size.y, fps: 60, ..Default::default() };
            let stats = Arc::new(ProgramStats::default());
            let (tx, rx) = std::sync::mpsc::sync_channel(QUEUE);
            let output = ProgramOutput::start(targets, settings, "ffmpeg".into(), stats.clone(), rx, false).unwrap();
            let world = r.app_mut().world_mut();
            let mut overlays = world.resource_mut::<ProgramOverlays>();
            overlays.enabled = true;
            overlays.visible.insert(Overlay::Stamp);
            world.insert_resource(ProgramFeed::new(tx, stats.clone(), 60));
            world.insert_resource(output);
            stats
        };
        let mut renderer = HeadlessRenderer::new(VenueSetup::new(scene(), assets.clone()), size);
        renderer.wait_until_ready().unwrap();
        for _ in 0..10 {
            renderer.step();
        }
        let base = median(&mut renderer);
        let stats = attach(&mut renderer, Vec::new());
        for _ in 0..10 {
            renderer.step();
        }
        let fed = median(&mut renderer);
        let grabbed = stats.frames_grabbed.load(Ordering::Relaxed);
        let dropped = stats.frames_dropped.load(Ordering::Relaxed);
        parvis::app::shutdown::close_edges(renderer.app_mut().world_mut());

        let file = std::env::temp_dir().join(format!("parvis-bench-program-{}.mkv", size.y));
        let mut renderer = HeadlessRenderer::new(VenueSetup::new(scene(), assets), size);
        renderer.wait_until_ready().unwrap();
        let stats = attach(&mut renderer, vec![OutputTarget::File(file.clone())]);
        for _ in 0..10 {
            renderer.step();
        }
        let encoded = median(&mut renderer);
        let encoded_dropped = stats.frames_dropped.load(Ordering::Relaxed);
        parvis::app::shutdown::close_edges(renderer.app_mut().world_mut());
        let _ = std::fs::remove_file(&file);
        println!(
            "program output {}x{}: median frame {base:.1} ms without output; {fed:.1} ms with readback and queue \
             (ratio {:.2}; {grabbed} read back, {dropped} dropped); {encoded:.1} ms with libx264 into a file \
             (ratio {:.2}; {encoded_dropped} dropped)",
            size.x,
            size.y,
            fed / base,
            encoded / base
        );
    }
}

/// A full-body VMC frame as VSeeFace sends it: the root, the 55 humanoid bones and 20
/// blendshape values with their apply, in one bundle.
fn vmc_frame(t: f32) -> Vec<u8> {
    use rosc::{OscBundle, OscMessage, OscPacket, OscTime, OscType};
    let transform = |name: &str, addr: &str, angle: f32| {
        let mut args = vec![OscType::String(name.into())];
        let (s, c) = (angle / 2.0).sin_cos();
        args.extend([0.0, 0.1, 0.0, 0.0, 0.0, s, c].map(OscType::Float));
        OscPacket::Message(OscMessage { addr: addr.into(), args })
    };
    let mut content = vec![transform("root", "/VMC/Ext/Root/Pos", 0.0)];
    for (i, bone) in parvis::model::performer::HUMAN_BONES.iter().enumerate() {
        content.push(transform(bone, "/VMC/Ext/Bone/Pos", t + i as f32 * 0.01));
    }
    for i in 0..20 {
        content.push(OscPacket::Message(OscMessage {
            addr: "/VMC/Ext/Blend/Val".into(),
            args: vec![OscType::String(format!("shape{i}")), OscType::Float(0.5)],
        }));
    }
    content.push(OscPacket::Message(OscMessage { addr: "/VMC/Ext/Blend/Apply".into(), args: vec![] }));
    rosc::encoder::encode(&OscPacket::Bundle(OscBundle { timetag: OscTime { seconds: 0, fractional: 1 }, content }))
        .unwrap()
}

/// Performers (issue #19): VMC frames decoded and checked per second on one core; then frame
/// times on the renderer with no performer, ten idle performers, and ten whose 55-bone capture
/// arrives every frame (through the venue's queue, as the edge delivers it).
fn performers_cost() {
    use parvis::app::headless::HeadlessRenderer;
    use parvis::engine::performer::{Performers, PoseArrival, pose_link};
    use parvis::model::performer::VmcReader;
    use parvis::model::scene::format::PerformerSource;

    let packets: Vec<Vec<u8>> = (0..64).map(|i| vmc_frame(i as f32 * 0.05)).collect();
    let mut reader = VmcReader::default();
    let mut rates = Vec::new();
    for _ in 0..5 {
        let start = Instant::now();
        let mut n = 0u32;
        while start.elapsed() < Duration::from_millis(500) {
            for packet in &packets {
                let messages = osc::decode(packet).unwrap();
                let read = reader.read(&messages);
                assert_eq!(read.update.bones.len(), 55);
                n += 1;
            }
        }
        rates.push(f64::from(n) / start.elapsed().as_secs_f64());
    }
    rates.sort_by(f64::total_cmp);
    println!(
        "VMC frames ({} bytes, 55 bones, 20 blendshapes) decoded and checked: median {:.0}/s on one core \
         ({:.0} bones/s; runs {:?})",
        packets[0].len(),
        rates[2],
        rates[2] * 55.0,
        rates.iter().map(|r| r.round()).collect::<Vec<_>>()
    );

    let size = UVec2::new(640, 360);
    let frames = 40;
    let assets = AssetsRoot::new(concat!(env!("CARGO_MANIFEST_DIR"), "/assets"));
    let median_frame = |r: &mut HeadlessRenderer, feed: &dyn Fn(&mut HeadlessRenderer, u32)| {
        let mut times: Vec<f64> = (0..frames)
            .map(|i| {
                feed(r, i);
                let t = Instant::now();
                r.step();
                t.elapsed().as_secs_f64() * 1000.0
            })
            .collect();
        times.sort_by(f64::total_cmp);
        times[times.len() / 2]
    };
    let venue = |count: usize| {
        let mut scene = scene();
        let singer = scene.performers[0].clone();
        scene.performers = (0..count)
            .map(|i| {
                let mut p = singer.clone();
                p.name = format!("performer {i}");
                p.source = PerformerSource::Vmc { port: 0, from: None };
                p.transform.translation = [-3.0 + (i % 5) as f32 * 1.5, 0.6, -6.5 + (i / 5) as f32 * 1.2];
                p
            })
            .collect();
        let mut setup = VenueSetup::new(scene, assets.clone());
        setup.viewpoint = Some("courtyard".into());
        let mut r = HeadlessRenderer::new(setup, size);
        r.wait_until_ready().unwrap();
        for _ in 0..20 {
            r.step();
        }
        r
    };
    let mut none = venue(0);
    let bare = median_frame(&mut none, &|_, _| {});
    drop(none);
    let mut ten = venue(10);
    let bound = ten.app_mut().world().resource::<Performers>().list.iter().filter(|p| p.is_bound()).count();
    assert_eq!(bound, 10, "every avatar bound");
    let idle = median_frame(&mut ten, &|_, _| {});
    let doorbell = ten.app_mut().world().resource::<parvis::engine::rest::Rest>().doorbell.clone();
    let (hub, link) = pose_link(doorbell);
    ten.app_mut().insert_resource(link);
    let from: SocketAddr = "127.0.0.1:39539".parse().unwrap();
    let live = median_frame(&mut ten, &|_, i| {
        let messages = osc::decode(&packets[i as usize % packets.len()]).unwrap();
        let update = VmcReader::default().read(&messages).update;
        for performer in 0..10 {
            let performer = format!("performer {performer}");
            hub.send(PoseArrival { performer, from, update: update.clone(), received: Instant::now() });
        }
    });
    println!(
        "frame at {}x{} on this renderer, median of {frames}: no performer {bare:.1} ms; ten idle {idle:.1} ms \
         (×{:.2}); ten live (550 bones received, 220 drawn a frame) {live:.1} ms (×{:.2})",
        size.x,
        size.y,
        idle / bare,
        live / bare
    );
}

fn main() {
    if std::env::var_os("SHOW_BENCH_PERFORMERS").is_some() {
        performers_cost();
        return;
    }
    if std::env::var_os("SHOW_BENCH_PROGRAM").is_some() {
        program_output_cost();
        return;
    }
    if std::env::var_os("SHOW_BENCH_SURTITLES").is_some() {
        surtitle_timing();
        return;
    }
    if std::env::var_os("SHOW_BENCH_DEBUG").is_some() {
        report_timing("steady frames", "60 fps", play(|_| 1.0 / 60.0));
        return;
    }
    report_timing("steady frames", "60 fps", play(|_| 1.0 / 60.0));
    report_timing("steady frames", "90 fps", play(|_| 1.0 / 90.0));
    report_timing("frames of random length", "8–50 ms", play(|rng| 0.008 + f64::from(rng.unit()) * 0.042));
    osc_ingest();
    surtitle_timing();
    program_output_cost();
    performers_cost();
}
