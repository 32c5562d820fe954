//! A real OpenXR session: the `parvis` binary against Monado's service (null compositor,
//! simulated headset and controllers), both in the Debian 13 root folder that
//! `scripts/xr-runtime.sh` makes once and keeps. Also what `--xr` does with no runtime at all.
//!
//! These tests start the runtime themselves; they need root (or sudo) for the root folder's
//! mounts, like `scripts/test.sh`'s package installs.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::Mutex;

use serde_json::Value;

/// One session at a time under `cargo test`'s threads: each has its own Monado service in its
/// own mount namespace, but two lavapipe sessions on two cores slow each other to a crawl.
static RUNTIME: Mutex<()> = Mutex::new(());

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// A fresh folder inside the cargo target folder, which the root folder sees too.
fn out_dir(name: &str) -> PathBuf {
    let dir = Path::new(env!("CARGO_BIN_EXE_parvis")).parent().expect("target folder").join("xr-tests").join(name);
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("test folder");
    dir
}

/// Runs `parvis ARGS` next to a running Monado service.
fn with_monado(command: &[&str]) -> Output {
    // A session that never gets going must not hang the test run.
    let output = Command::new("timeout")
        .arg("600")
        .arg(repo().join("scripts/xr-runtime.sh"))
        .arg("run")
        .args(command)
        .current_dir(repo())
        .output()
        .expect("scripts/xr-runtime.sh runs");
    eprintln!(
        "--- stdout\n{}\n--- stderr\n{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    output
}

fn report(path: &Path) -> Value {
    serde_json::from_str(&std::fs::read_to_string(path).expect("the session wrote its report"))
        .expect("the report is JSON")
}

fn points(value: &Value) -> Vec<[f32; 3]> {
    value
        .as_array()
        .expect("an array")
        .iter()
        .map(|p| {
            let p = p.as_array().expect("a point");
            [p[0].as_f64().unwrap() as f32, p[1].as_f64().unwrap() as f32, p[2].as_f64().unwrap() as f32]
        })
        .collect()
}

fn spread(points: &[[f32; 3]]) -> f32 {
    let mut widest: f32 = 0.0;
    for a in points {
        for b in points {
            widest = widest.max(((a[0] - b[0]).powi(2) + (a[1] - b[1]).powi(2) + (a[2] - b[2]).powi(2)).sqrt());
        }
    }
    widest
}

#[test]
fn a_headset_session_runs_renders_both_eyes_follows_the_head_and_ends_cleanly() {
    let _one = RUNTIME.lock().unwrap_or_else(|e| e.into_inner());
    let dir = out_dir("session");
    let report_path = dir.join("report.json");
    let spectator = dir.join("spectator.png");
    const FRAMES: u64 = 120;
    let output = with_monado(&[
        env!("CARGO_BIN_EXE_parvis"),
        "run",
        "--xr=require",
        "--no-audience",
        "--frames",
        &FRAMES.to_string(),
        "--size",
        "320x180",
        "--xr-report",
        report_path.to_str().unwrap(),
        "--spectator-out",
        spectator.to_str().unwrap(),
        "--hotspot",
        "fountain",
    ]);
    assert!(output.status.success(), "the session ran and exited cleanly");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("headset session through Monado"), "the runtime is named");
    let r = report(&report_path);
    let states: Vec<&str> = r["states"].as_array().unwrap().iter().map(|s| s.as_str().unwrap()).collect();
    for wanted in ["Ready", "Running", "Stopping"] {
        assert!(states.contains(&wanted), "state {wanted} in {states:?}");
    }
    assert!(states.iter().any(|s| s.starts_with("Exiting")), "{states:?}");
    assert!(r["ended_cleanly"].as_bool().unwrap(), "the session went through its end");
    assert!(r["frames_rendered"].as_u64().unwrap() >= FRAMES, "{}", r["frames_rendered"]);
    assert_eq!(r["eye_cameras"].as_u64(), Some(2), "both eyes draw");
    let resolution = r["eye_resolution"].as_array().expect("resolution");
    assert!(resolution.iter().all(|v| v.as_u64().unwrap() > 0));
    assert!(r["runtime"]["system"].as_str().unwrap().contains("Monado"));
    // The simulated headset sways its head; the eye camera in the venue moves with it, at the
    // spawn point (the courtyard, where the cloister's xr_spawn stands) and at real scale.
    let head = points(&r["head_in_play_space"]);
    let eye = points(&r["eye_in_venue"]);
    assert!(head.len() >= 10 && head.len() == eye.len());
    assert!(spread(&head) > 0.01, "the simulated head moves: {head:?}");
    assert!((spread(&eye) - spread(&head)).abs() < 0.01, "the eye in the venue moves as much as the head (scale 1)");
    let spawn = points(&serde_json::json!([r["spawn"]]))[0];
    assert!(
        (spawn[0] + 1.3).abs() < 1.0 && (spawn[2] - 7.0).abs() < 1.0 && spawn[1].abs() < 0.2,
        "on the courtyard's floor: {spawn:?}"
    );
    for e in &eye {
        assert!((e[1] - 1.6).abs() < 0.5, "eye height above the floor: {e:?}");
    }
    // Frame timing is reported.
    assert!(r["frame_ms"].as_array().unwrap().len() as u64 >= FRAMES - 2);
    // The spectator view shows the venue (not one flat colour) and, in front of the visitor,
    // the open hotspot's panel: the world-space panel the headset shows, dark with light text.
    let picture = image::open(&spectator).expect("the spectator view was saved").to_rgba8();
    let first = picture.get_pixel(0, 0);
    assert!(
        picture.pixels().filter(|p| *p != first).count() > picture.len() as usize / 64,
        "the spectator image has content"
    );
    let (w, h) = picture.dimensions();
    // The fountain is ahead of the courtyard's spawn, a little to the right: so is the panel,
    // above the screen overlay's band at the bottom. Without it this region is lit stone and
    // garden (measured: 2 % of it darker than 80 of 255); with it, mostly the panel's ground.
    // The simulated head sways, so where the panel falls moves with the frame captured: the
    // region reaches the right edge, and half the panel in it is far above the 2 % without.
    let region: Vec<f32> = (h / 4..h * 3 / 5)
        .flat_map(|y| (w * 3 / 10..w).map(move |x| (x, y)))
        .map(|(x, y)| {
            let p = picture.get_pixel(x, y);
            0.3 * f32::from(p[0]) + 0.59 * f32::from(p[1]) + 0.11 * f32::from(p[2])
        })
        .collect();
    let dark = region.iter().filter(|l| **l < 80.0).count();
    let light = region.iter().filter(|l| **l > 170.0).count();
    assert!(dark > region.len() / 3, "the panel's dark ground fills the region: {dark} of {}", region.len());
    assert!(light > 0, "with text on it");
}

#[test]
fn without_a_runtime_require_fails_with_what_to_install_and_prefer_carries_on() {
    let dir = out_dir("no-runtime");
    let parvis = env!("CARGO_BIN_EXE_parvis");
    // No runtime here: the host has no OpenXR loader, or a manifest that does not exist.
    let missing = dir.join("no-such-runtime.json");
    let run = |mode: &str| {
        Command::new(parvis)
            .args(["run", mode, "--no-audience", "--headless", "--frames", "2", "--size", "64x36"])
            .env("XR_RUNTIME_JSON", &missing)
            .env_remove("DISPLAY")
            .output()
            .expect("parvis runs")
    };
    let require = run("--xr=require");
    let message = String::from_utf8_lossy(&require.stderr);
    assert!(!require.status.success(), "--xr=require exits with an error");
    assert!(message.contains("--xr=require") && message.contains("OpenXR") && message.contains("install"), "{message}");
    let prefer = run("--xr");
    let message = String::from_utf8_lossy(&prefer.stderr);
    assert!(prefer.status.success(), "--xr carries on: {message}");
    assert!(message.contains("no headset session") && message.contains("Carrying on at the desktop"), "{message}");
}

/// Starts a session, waits until it runs, kills the Monado service, and returns the exit
/// status and the whole log.
fn kill_runtime_mid_session(mode: &str, frames: u32, dir: &Path) -> (std::process::ExitStatus, String) {
    use std::io::{BufRead, BufReader};
    let pid_file = dir.join("monado.pid");
    let frames = frames.to_string();
    let mut child = Command::new("timeout")
        .arg("600")
        .arg(repo().join("scripts/xr-runtime.sh"))
        .args(["run", "sh", "-c", r#"echo "$PARVIS_XR_MONADO_PID" > "$0"; exec "$@""#, pid_file.to_str().unwrap()])
        .args([
            env!("CARGO_BIN_EXE_parvis"),
            "run",
            mode,
            "--no-audience",
            "--size",
            "160x90",
            "--frames",
            &frames,
            "--set",
            "stage_light=#ff0000",
        ])
        .current_dir(repo())
        .stderr(std::process::Stdio::piped())
        .stdout(std::process::Stdio::null())
        .spawn()
        .expect("scripts/xr-runtime.sh runs");
    let mut lines = BufReader::new(child.stderr.take().expect("piped")).lines();
    let mut seen = String::new();
    // Wait for the session to run, then take the runtime away at once (a fast machine would
    // otherwise draw all its frames first).
    let mut running = false;
    for line in lines.by_ref() {
        let line = line.expect("utf-8 log");
        seen.push_str(&line);
        seen.push('\n');
        if line.contains("headset session: Running") {
            running = true;
            break;
        }
    }
    assert!(running, "the session ran before the runtime was killed:\n{seen}");
    let pid = std::fs::read_to_string(&pid_file).expect("the service's pid");
    let killed = Command::new("kill").args(["-KILL", pid.trim()]).status().expect("kill runs");
    assert!(killed.success(), "the Monado service was killed");
    for line in lines {
        seen.push_str(&line.unwrap_or_default());
        seen.push('\n');
    }
    let status = child.wait().expect("the session ends");
    eprintln!("--- stderr\n{seen}");
    (status, seen)
}

#[test]
fn a_runtime_killed_mid_session_returns_the_visit_to_the_desktop_with_its_state() {
    let _one = RUNTIME.lock().unwrap_or_else(|e| e.into_inner());
    let (status, log) = kill_runtime_mid_session("--xr", 300, &out_dir("killed-prefer"));
    assert!(status.success(), "the visit carried on and ended normally");
    assert!(!log.contains("internal error") && !log.contains("panicked"), "no crash report");
    assert!(log.contains("went away mid-session"), "the reason is given");
    // The first load and the --set were applied in the headset session, and again at the desktop.
    assert!(
        log.contains("carries on at the desktop with the show's state restored (2 commands)"),
        "the state is restored"
    );
    assert!(log.contains("running headless"), "the desktop visit ran (headless here: no display)");
}

#[test]
fn a_runtime_killed_mid_session_ends_a_required_visit_with_a_message() {
    let _one = RUNTIME.lock().unwrap_or_else(|e| e.into_inner());
    let (status, log) = kill_runtime_mid_session("--xr=require", 1_000_000, &out_dir("killed-require"));
    assert_eq!(
        status.code(),
        Some(i32::from(parvis::engine::xr::EXIT_RUNTIME_LOST)),
        "the engine exits with the runtime-lost status"
    );
    assert!(!log.contains("internal error") && !log.contains("panicked"), "no crash report");
    assert!(log.contains("went away mid-session") && log.contains("exiting"), "the reason is given");
    assert!(!log.contains("carries on at the desktop"));
}

/// A render follower in a headset: `parvis follow --xr=require` catches up from an authority's
/// command log on NATS (Debian's `nats-server`, on a loopback port of its own) and applies, in
/// the headset session, the commands the authority logs while it runs.
#[test]
fn a_headset_follows_an_authoritys_venue_over_nats() {
    use std::net::{TcpListener, TcpStream, UdpSocket};
    use std::process::Stdio;
    use std::time::{Duration, Instant};

    let _one = RUNTIME.lock().unwrap_or_else(|e| e.into_inner());
    let dir = out_dir("follow");
    let port = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let mut nats = Command::new("nats-server")
        .args(["-js", "-a", "127.0.0.1", "-p", &port.to_string(), "-sd"])
        .arg(dir.join("jetstream"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("nats-server runs (scripts/test.sh installs it)");
    let deadline = Instant::now() + Duration::from_secs(20);
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "nats-server never listened");
        std::thread::sleep(Duration::from_millis(50));
    }
    let url = format!("nats://127.0.0.1:{port}");
    let osc = UdpSocket::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port().to_string();
    let mut authority = Command::new(env!("CARGO_BIN_EXE_parvis"))
        .args(["run", "--no-render", "--no-audience", "--fps", "60", "--osc", &format!("127.0.0.1:{osc}")])
        .args(["--nats", &url, "--nats-venue", "xr-follow"])
        .current_dir(repo())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let fog = |value: f32| {
        let sent = Command::new("oscsend")
            .args(["127.0.0.1", &osc, "/parvis/param/fog", "f", &value.to_string()])
            .status()
            .expect("oscsend (liblo-tools)");
        assert!(sent.success());
    };
    // No wait for the authority: the follower waits until the log holds a scene.
    let log = dir.join("follower.jsonl");
    let follower = {
        let (url, log) = (url.clone(), log.to_str().unwrap().to_owned());
        std::thread::spawn(move || {
            with_monado(&[
                env!("CARGO_BIN_EXE_parvis"),
                "follow",
                "--xr=require",
                "--frames",
                "40",
                "--size",
                "320x180",
                "--nats",
                &url,
                "--nats-venue",
                "xr-follow",
                "--log",
                &log,
            ])
        })
    };
    // The desk changes the fog while the headset runs.
    let mut step = 0;
    while !follower.is_finished() {
        step += 1;
        fog(0.001 * (step % 150) as f32);
        std::thread::sleep(Duration::from_millis(300));
    }
    let output = follower.join().unwrap();
    let _ = authority.kill();
    let _ = nats.kill();
    let _ = (authority.wait(), nats.wait());
    assert!(output.status.success(), "the followed session ran and exited cleanly");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("following venue \"xr-follow\""), "{stderr}");
    assert!(stderr.contains("headset session through Monado"), "{stderr}");
    // What the follower applied live (not what it caught up with) is in its log, in the
    // authority's numbering and order.
    let text = std::fs::read_to_string(&log).unwrap_or_default();
    let entries = parvis::model::command::read_command_log(text.as_bytes()).unwrap();
    assert!(!entries.is_empty(), "the headset followed commands live:\n{stderr}");
    assert!(entries.windows(2).all(|w| w[1].seq == w[0].seq + 1), "in order, without gaps");
    assert!(entries[0].seq > 1, "after what it caught up with");
}
