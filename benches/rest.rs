//! The venue at rest (issue #15): CPU of a venue that nothing changes — headless at 640×360,
//! without a renderer, and in a window under Xvfb when `xvfb-run` is there — with resting on
//! and off (`--no-rest`, which is how the venue ran before), and the wake-up latency of a chat
//! command sent to a resting venue, from the client's send to the effect coming back.
//!
//! `cargo bench --bench rest` (lavapipe: the scripts' environment, e.g. `source
//! scripts/common.sh; use_lavapipe_if_needed`). Results in docs/benchmarks.md.

use std::io::{Read, Write};
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use tokio_tungstenite::tungstenite::Message;

const IDLE_SECONDS: u64 = 30;

fn cpu_seconds(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // Fields after the command name (which may hold spaces) start after its ')'.
    let fields: Vec<&str> =
        stat.rsplit_once(')').map(|(_, rest)| rest.split_whitespace().collect()).unwrap_or_default();
    let ticks: f64 = fields.get(11).and_then(|u| u.parse::<f64>().ok()).unwrap_or(0.0)
        + fields.get(12).and_then(|s| s.parse::<f64>().ok()).unwrap_or(0.0);
    ticks / 100.0
}

/// Starts `parvis run` with `args`; returns the child (and the pid doing the work, which is
/// the child's own unless it is wrapped) and the audience address it prints.
fn start(wrapper: &[&str], args: &[&str]) -> (Child, SocketAddr) {
    use std::io::BufRead;
    let bin = env!("CARGO_BIN_EXE_parvis");
    let mut command = if wrapper.is_empty() { Command::new(bin) } else { Command::new(wrapper[0]) };
    if !wrapper.is_empty() {
        command.args(&wrapper[1..]).arg(bin);
    }
    let mut child = command
        .arg("run")
        .args(args)
        .args(["--audience", "127.0.0.1:0", "--fps", "60"])
        .stderr(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .expect("parvis starts");
    let stderr = std::io::BufReader::new(child.stderr.take().unwrap());
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in stderr.lines().map_while(Result::ok) {
            if let Some(addr) = line.split("audience page at http://").nth(1) {
                let _ = tx.send(addr.split('/').next().unwrap_or_default().to_owned());
            }
        }
    });
    let addr = rx.recv_timeout(Duration::from_secs(60)).expect("the venue starts").parse().unwrap();
    (child, addr)
}

fn parvis_pid(child: &Child) -> u32 {
    // Under xvfb-run the venue is a grandchild: find the parvis process started last.
    let out = Command::new("pgrep").args(["-n", "-f", "parvis run"]).output().ok();
    out.and_then(|o| String::from_utf8_lossy(&o.stdout).trim().parse().ok()).unwrap_or(child.id())
}

fn stop(mut child: Child) {
    let _ = Command::new("kill").args(["-TERM", &child.id().to_string()]).status();
    let deadline = Instant::now() + Duration::from_secs(10);
    while child.try_wait().ok().flatten().is_none() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    let _ = child.kill();
    let _ = child.wait();
    let _ = Command::new("pkill").arg("Xvfb").status();
}

fn metric(addr: SocketAddr, name: &str) -> f64 {
    let mut stream = std::net::TcpStream::connect(addr).unwrap();
    stream.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
    let mut text = String::new();
    stream.read_to_string(&mut text).unwrap();
    text.lines()
        .find_map(|l| l.strip_prefix(name).and_then(|v| v.strip_prefix(' ')))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0.0)
}

/// Idle CPU, percent of one core, after the venue has loaded and settled.
fn idle_cpu(label: &str, wrapper: &[&str], args: &[&str]) {
    let (child, addr) = start(wrapper, args);
    std::thread::sleep(Duration::from_secs(15));
    let pid = parvis_pid(&child);
    let (cpu0, frames0, t0) = (cpu_seconds(pid), metric(addr, "parvis_venue_frames_total"), Instant::now());
    std::thread::sleep(Duration::from_secs(IDLE_SECONDS));
    let (cpu1, frames1) = (cpu_seconds(pid), metric(addr, "parvis_venue_frames_total"));
    let seconds = t0.elapsed().as_secs_f64();
    println!("| {label} | {:.2} % | {:.1} frames/s |", (cpu1 - cpu0) / seconds * 100.0, (frames1 - frames0) / seconds);
    stop(child);
}

/// Sends chat commands to a resting venue and times each from the send to its effect.
fn wake_latency(args: &[&str], samples: usize) -> Vec<Duration> {
    let (child, addr) = start(&[], args);
    std::thread::sleep(Duration::from_secs(15));
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let colours = ["#ff0000", "#00ff00", "#0000ff", "#ffff00", "#ff00ff", "#00ffff"];
    let times = runtime.block_on(async {
        let mut times = Vec::new();
        for i in 0..samples {
            // A new member each time (the rule cools down per member), who lets the venue rest.
            let (mut socket, _) = tokio_tungstenite::connect_async(format!("ws://{addr}/ws")).await.unwrap();
            socket.send(Message::text(format!(r#"{{"type":"hello","v":1,"name":"Member{i}"}}"#))).await.unwrap();
            tokio::time::sleep(Duration::from_millis(1500)).await;
            let sent = Instant::now();
            socket
                .send(Message::text(format!(r#"{{"type":"chat","text":"!light {}"}}"#, colours[i % colours.len()])))
                .await
                .unwrap();
            loop {
                let next = tokio::time::timeout(Duration::from_secs(10), socket.next()).await.expect("an effect");
                if let Some(Ok(Message::Text(t))) = next
                    && t.as_str().contains(r#""type":"effect""#)
                {
                    times.push(sent.elapsed());
                    break;
                }
            }
        }
        times
    });
    stop(child);
    times
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    println!("| venue, nothing changing | CPU | frames |");
    println!("|---|---|---|");
    idle_cpu("headless 640×360, resting", &[], &["--headless", "--size", "640x360"]);
    idle_cpu("headless 640×360, --no-rest", &[], &["--headless", "--size", "640x360", "--no-rest"]);
    idle_cpu("no renderer, resting", &[], &["--no-render"]);
    idle_cpu("no renderer, --no-rest", &[], &["--no-render", "--no-rest"]);
    if Command::new("xvfb-run").arg("--help").stdout(Stdio::null()).stderr(Stdio::null()).status().is_ok() {
        let xvfb = ["xvfb-run", "-a", "-s", "-screen 0 1280x720x24"];
        idle_cpu("window 1280×720 (Xvfb), resting", &xvfb, &[]);
        idle_cpu("window 1280×720 (Xvfb), --no-rest", &xvfb, &["--no-rest"]);
    }
    for (label, args) in
        [("headless 640×360", &["--headless", "--size", "640x360"][..]), ("no renderer", &["--no-render"][..])]
    {
        let mut times = wake_latency(args, 20);
        times.sort();
        let ms = |d: Duration| d.as_secs_f64() * 1000.0;
        println!(
            "wake-up, {label}: chat command to effect, median {:.1} ms, p90 {:.1} ms, max {:.1} ms ({} samples)",
            ms(times[times.len() / 2]),
            ms(times[times.len() * 9 / 10]),
            ms(times[times.len() - 1]),
            times.len()
        );
    }
}
