//! The program output with real peers: Debian's ffmpeg encodes, ffprobe and ffmpeg read the
//! results back, nginx with its RTMP module is the ingest server, and an ffmpeg listening on
//! SRT is the other end of an SRT stream. Kept in this binary (each test binary links the whole
//! engine).

use std::io::{BufRead, BufReader, Read};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use parvis::model::program::stamp;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn temp(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("parvis-program-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// A scene whose show flashes the whole picture white on the same instant (2 s) as a click in
/// its music: a black backdrop, a white screen shown by the cue.
const FLASH: &str = r##"(
    version: 1,
    venue: (title: "Flash", credits: [(author: "Parvis tests", licence: "CC0-1.0", work: "Flash")]),
    environment: (sky: Some("#000000"), ambient_brightness: Some(0.0)),
    primitives: [
        (name: "screen", shape: Box(size: (40, 40, 0.1)), material: (colour: "#ffffff", unlit: true)),
        (name: "block", shape: Box(size: (1, 1, 1)), material: (colour: "#4080c0"), transform: (translation: (0, 0, 1))),
    ],
    lights: [(name: "sun", kind: Directional(illuminance: 5000.0), transform: (translation: (0, 2, 5), look_at: Some((0, 0, 0))))],
    viewpoints: [
        (name: "front", position: (0, 0, 6), look_at: (0, 0, 0)),
        (name: "side", position: (6, 3, 3), look_at: (0, 0, 0)),
    ],
    params: [(name: "flash", kind: Bool(default: false), bind: [Visible("screen")])],
    shows: [(name: "sync", songs: [(name: "click", tracks: ["music/click.wav"], cues: [
        (id: "flash", at: Seconds(2.0), actions: [Set(param: "flash", value: "true")]),
    ])])],
)"##;

/// 4 s of 48 kHz stereo silence with a 10 ms click at exactly 2 s.
fn write_click(path: &Path) {
    let rate = 48_000u32;
    let mut samples = vec![0i16; (4 * rate) as usize * 2];
    for i in (2 * rate) as usize..(2 * rate + rate / 100) as usize {
        let v = if (i / 24) % 2 == 0 { 20_000 } else { -20_000 };
        samples[i * 2] = v;
        samples[i * 2 + 1] = v;
    }
    super::write_pcm_wav(path, rate, 2, &samples);
}

fn flash_venue(dir: &Path) -> PathBuf {
    write_click(&dir.join("assets/music/click.wav"));
    let scene = dir.join("flash.ron");
    std::fs::write(&scene, FLASH).unwrap();
    scene
}

fn parvis(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_parvis")).args(args).current_dir(root()).output().unwrap()
}

fn probe(target: &str) -> String {
    let out = Command::new("ffprobe")
        .args(["-v", "error", "-rw_timeout", "15000000", "-show_entries"])
        .arg("stream=codec_type,codec_name,width,height,r_frame_rate,sample_rate,channels:format=duration")
        .args(["-of", "compact", target])
        .output()
        .expect("ffprobe is installed by scripts/test.sh");
    format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr))
}

fn duration(probe: &str) -> f64 {
    probe
        .lines()
        .find_map(|l| l.strip_prefix("format|duration="))
        .and_then(|d| d.trim().parse().ok())
        .unwrap_or_else(|| panic!("no duration in {probe}"))
}

/// Video packets in a file, counted by reading it through (a file whose writer was killed has
/// no duration in its header).
fn video_frames(file: &Path) -> u64 {
    let out = Command::new("ffprobe")
        .args(["-v", "error", "-select_streams", "v", "-count_packets", "-show_entries", "stream=nb_read_packets"])
        .args(["-of", "csv=p=0"])
        .arg(file)
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout).trim().parse().unwrap_or(0)
}

/// Every frame of a video, decoded to RGBA.
fn decode_frames(file: &Path, w: usize, h: usize) -> Vec<Vec<u8>> {
    let out = Command::new("ffmpeg")
        .args(["-v", "error", "-i"])
        .arg(file)
        .args(["-f", "rawvideo", "-pix_fmt", "rgba", "-"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    out.stdout.chunks_exact(w * h * 4).map(<[u8]>::to_vec).collect()
}

fn decode_audio(file: &Path) -> Vec<i16> {
    let out = Command::new("ffmpeg")
        .args(["-v", "error", "-i"])
        .arg(file)
        .args(["-f", "s16le", "-ac", "1", "-ar", "48000", "-"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    out.stdout.chunks_exact(2).map(|b| i16::from_le_bytes([b[0], b[1]])).collect()
}

fn mean_luma(rgba: &[u8]) -> f64 {
    rgba.chunks_exact(4).map(|p| (u32::from(p[0]) + u32::from(p[1]) + u32::from(p[2])) as f64 / 3.0).sum::<f64>()
        / (rgba.len() / 4) as f64
}

/// `parvis render --show --video`: a file with H.264 and AAC of the right size, rate and
/// length; the flash and the click on one cue land within one frame of each other; every
/// frame carries its frame code through the encoder; and a frame of the film is the picture a
/// still render of the same moment gives.
#[test]
fn an_offline_video_has_its_picture_and_sound_in_step() {
    let dir = temp("offline");
    let scene = flash_venue(&dir);
    let assets = dir.join("assets");
    let (w, h) = (320usize, 180usize);
    let video = dir.join("sync.mp4");
    // `parvis render` of the flash scene's show at 320x180, with `extra` arguments.
    let render = |extra: &[&str]| {
        let base = ["render", scene.to_str().unwrap(), "--assets", assets.to_str().unwrap(), "--show", "sync"];
        parvis(&[&base[..], &["--size", "320x180"], extra].concat())
    };
    let out = render(&["--video", video.to_str().unwrap(), "--fps", "30", "--frame-code"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(stderr.contains("0 dropped"), "an offline render drops nothing: {stderr}");

    let probed = probe(video.to_str().unwrap());
    assert!(probed.contains("codec_name=h264|codec_type=video|width=320|height=180|r_frame_rate=30/1"), "{probed}");
    assert!(probed.contains("codec_name=aac|codec_type=audio|sample_rate=48000|channels=2"), "{probed}");
    let length = duration(&probed);
    assert!((4.0..4.4).contains(&length), "the show's 4 s (and a few frames): {length} s");

    let frames = decode_frames(&video, w, h);
    assert!(frames.len() >= 120, "{} frames", frames.len());
    // Frame codes read back through H.264: frame k carries k.
    for (k, frame) in frames.iter().enumerate() {
        assert_eq!(stamp::read(frame, w, h), Some(k as u16), "frame {k}'s code");
    }
    let lumas: Vec<f64> = frames.iter().map(|f| mean_luma(f)).collect();
    let (dark, bright) = (lumas[10], lumas[lumas.len() - 5]);
    assert!(bright > dark + 100.0, "the flash whitens the picture: {dark:.0} → {bright:.0}");
    let flash = lumas.iter().position(|l| *l > (dark + bright) / 2.0).unwrap();
    let samples = decode_audio(&video);
    let click = samples.iter().position(|s| s.unsigned_abs() > 8_000).expect("the click is in the sound");
    let (t_flash, t_click) = (flash as f64 / 30.0, click as f64 / 48_000.0);
    let offset = t_flash - t_click;
    eprintln!("flash at frame {flash} ({t_flash:.4} s), click at {t_click:.4} s: offset {:.1} ms", offset * 1000.0);
    assert!((1.9..2.2).contains(&t_click), "the click is 2 s into the show: {t_click} s");
    assert!(offset.abs() <= 1.0 / 30.0 + 0.002, "picture and sound within one frame: {:.1} ms", offset * 1000.0);

    // A frame of the film against a still render of the same moment, with the same overlays
    // (no frame code: the edge stamps it).
    let still = dir.join("still.png");
    let out = render(&["--at", "3", "--program", "--out", still.to_str().unwrap()]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let still = image::open(&still).unwrap().to_rgba8();
    let film = &frames[3 * 30 + 5];
    let mut se = 0.0;
    let mut n = 0.0;
    for y in 0..h - 2 * stamp::CELL {
        for x in 0..w {
            let (p, q) = (&film[(y * w + x) * 4..][..3], &still.get_pixel(x as u32, y as u32).0[..3]);
            for c in 0..3 {
                se += (f64::from(p[c]) - f64::from(q[c])).powi(2);
                n += 1.0;
            }
        }
    }
    let psnr = 10.0 * (255.0f64.powi(2) / (se / n).max(1e-9)).log10();
    assert!(psnr > 30.0, "a frame of the film matches a still render of that moment: PSNR {psnr:.1} dB");
}

/// Bad outputs and settings are refused before anything starts, naming the problem and never
/// the stream key.
#[test]
fn bad_outputs_are_refused_before_the_venue_starts() {
    let key = "live_987654_sEcReTkEy";
    let cases: Vec<(Vec<String>, &str)> = vec![
        (vec!["--stream".into(), "http://example.org/live".into()], "unknown output"),
        (vec!["--stream".into(), "rtmp://127.0.0.1".into()], "no application or stream key"),
        (vec!["--stream".into(), "srt://127.0.0.1".into()], "expected srt://host:port"),
        (vec!["--record".into(), "/no/such/folder/show.mkv".into()], "no such folder"),
        (vec!["--record".into(), "show.avi".into()], "unknown output"),
        (vec!["--stream".into(), "show.mkv".into()], "a file is recorded with --record"),
        (vec!["--record".into(), "/tmp/x.mkv".into(), "--size".into(), "321x180".into()], "must be even"),
        (vec!["--record".into(), "/tmp/x.mkv".into(), "--output-fps".into(), "500".into()], "1 to 120"),
        (vec!["--record".into(), "/tmp/x.mkv".into(), "--encoder".into(), "no_such_encoder".into()], "not available"),
        (
            vec!["--record".into(), "/tmp/x.mkv".into(), "--ffmpeg".into(), "/no/ffmpeg".into()],
            "cannot find /no/ffmpeg",
        ),
        (vec!["--stream".into(), "env:PARVIS_TEST_NO_SUCH_VAR".into()], "PARVIS_TEST_NO_SUCH_VAR is not set"),
        (vec!["--stream".into(), format!("rtmp://live.example.org/app/{key}")], "only loopback outputs"),
        (vec!["--no-render".into(), "--record".into(), "/tmp/x.mkv".into()], "cannot go with --no-render"),
        (vec!["--stream-delay".into(), "auto".into(), "--record".into(), "/tmp/x.mkv".into()], "--playback-url URL"),
        (vec!["--stream-delay".into(), "soon".into()], "seconds from 0 to 600, or auto"),
    ];
    for (extra, expected) in cases {
        let started = Instant::now();
        let out = Command::new(env!("CARGO_BIN_EXE_parvis"))
            .args(["run", "--no-audience", "--frames", "1"])
            .env_remove("DISPLAY")
            .args(&extra)
            .env("PARVIS_OUTPUT_LOOPBACK_ONLY", "1")
            .current_dir(root())
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{extra:?} was accepted: {stderr}");
        assert!(stderr.contains(expected), "{extra:?}: expected {expected:?} in {stderr}");
        assert!(!stderr.contains(key), "the stream key leaked: {stderr}");
        assert!(!stderr.contains("program output to"), "{extra:?} started an output: {stderr}");
        assert!(started.elapsed() < Duration::from_secs(20), "{extra:?} took {:?}", started.elapsed());
    }
}

/// A loopback port nobody listens on now.
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// nginx with Debian's RTMP module, on a loopback port, in a folder of its own.
struct Nginx {
    child: Child,
}

impl Nginx {
    fn start(dir: &Path, port: u16) -> Self {
        let conf = dir.join("nginx.conf");
        std::fs::write(
            &conf,
            format!(
                "daemon off;\nmaster_process off;\nworker_processes 1;\npid {dir}/nginx.pid;\n\
                 error_log {dir}/error.log info;\nload_module /usr/lib/nginx/modules/ngx_rtmp_module.so;\n\
                 events {{ worker_connections 64; }}\n\
                 rtmp {{ server {{ listen 127.0.0.1:{port}; application live {{ live on; record off; }} }} }}\n",
                dir = dir.display()
            ),
        )
        .unwrap();
        let child = Command::new("nginx")
            .args(["-e", &format!("{}/error.log", dir.display()), "-p"])
            .arg(dir)
            .arg("-c")
            .arg(&conf)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("nginx is installed by scripts/test.sh");
        let deadline = Instant::now() + Duration::from_secs(10);
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "nginx did not listen on {port}");
            std::thread::sleep(Duration::from_millis(50));
        }
        Self { child }
    }

    fn kill(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Nginx {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn metrics(addr: &str) -> String {
    let mut stream = TcpStream::connect(addr).unwrap();
    std::io::Write::write_all(&mut stream, b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").unwrap();
    let mut body = String::new();
    stream.read_to_string(&mut body).unwrap();
    body
}

fn metric(body: &str, prefix: &str) -> f64 {
    body.lines()
        .find_map(|l| l.strip_prefix(prefix).and_then(|v| v.trim().parse().ok()))
        .unwrap_or_else(|| panic!("no {prefix} in {body}"))
}

fn wait_for(what: &str, timeout: Duration, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !done() {
        assert!(Instant::now() < deadline, "{what} did not happen within {timeout:?}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// One venue streams to a real RTMP server (nginx), to an ffmpeg listening on SRT, and into a
/// file at once. ffprobe reads the RTMP stream back; the frame code read off it gives the
/// delay. nginx is killed mid-stream and started again: the venue keeps its frame rate, counts
/// the outage, reconnects and the stream plays again, while the SRT stream and the file go on.
/// The stream key never shows in the log or `/metrics`.
#[test]
fn the_venue_streams_to_rtmp_and_srt_and_survives_a_lost_ingest() {
    let dir = temp("live");
    let (rtmp_port, srt_port) = (free_port(), free_port());
    let key = "live_424242_TopSecretStreamKey";
    let rtmp_url = format!("rtmp://127.0.0.1:{rtmp_port}/live/{key}");
    let nginx = Nginx::start(&dir, rtmp_port);
    let srt_file = dir.join("srt.ts");
    let mut srt_listener = Command::new("ffmpeg")
        .args(["-v", "error", "-y", "-i", &format!("srt://127.0.0.1:{srt_port}?mode=listener"), "-c", "copy"])
        .arg(&srt_file)
        .stdin(Stdio::null())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(500));
    let record = dir.join("program.mkv");
    // A recording onto a full disk: /dev/full refuses every write with ENOSPC.
    let full = dir.join("full.mkv");
    std::os::unix::fs::symlink("/dev/full", &full).unwrap();
    let mut venue = Command::new(env!("CARGO_BIN_EXE_parvis"))
        .args(["run", "--headless", "--size", "320x180", "--fps", "30", "--audience", "127.0.0.1:0"])
        .args(["--show", "evening", "--play", "--stream", "env:PARVIS_TEST_STREAM_URL", "--stream"])
        .arg(format!("srt://127.0.0.1:{srt_port}?mode=caller"))
        .arg("--record")
        .arg(&record)
        .arg("--record")
        .arg(&full)
        .args(["--stream-delay", "auto", "--playback-url", &rtmp_url])
        .env("PARVIS_TEST_STREAM_URL", &rtmp_url)
        .env("PARVIS_OUTPUT_LOOPBACK_ONLY", "1")
        .current_dir(root())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let log = Arc::new(Mutex::new(String::new()));
    {
        let (log, stderr) = (log.clone(), BufReader::new(venue.stderr.take().unwrap()));
        std::thread::spawn(move || {
            for line in stderr.lines().map_while(Result::ok) {
                let mut log = log.lock().unwrap();
                log.push_str(&line);
                log.push('\n');
            }
        });
    }
    let text = || log.lock().unwrap().clone();
    wait_for("the venue's audience address", Duration::from_secs(60), || text().contains("audience page at"));
    let addr = text().split("audience page at http://").nth(1).unwrap().split('/').next().unwrap().to_owned();
    let up = |m: &str, t: &str| metric(m, &format!("parvis_program_output_up{{target=\"{t}\",state=\"live\"}}"));
    let shown = format!("rtmp://127.0.0.1:{rtmp_port}/live/…");
    wait_for("all three outputs live", Duration::from_secs(60), || {
        let m = metrics(&addr);
        m.contains(&format!("target=\"{shown}\",state=\"live\"}} 1"))
            && m.contains(&format!("target=\"{}\",state=\"live\"}} 1", record.display()))
            && m.contains("srt://127.0.0.1")
            && m.matches("state=\"live\"} 1").count() >= 3
    });
    wait_for("the full disk named", Duration::from_secs(30), || text().contains("No space left on device"));
    let _ = up;

    // Read the stream back from nginx as a viewer would.
    let probed = probe(&rtmp_url);
    assert!(probed.contains("codec_name=h264") && probed.contains("width=320|height=180"), "{probed}");
    assert!(probed.contains("r_frame_rate=30/1"), "{probed}");
    assert!(probed.contains("codec_name=aac") && probed.contains("sample_rate=48000"), "{probed}");
    // The delay: the frame code a viewer sees now against the frame the venue has reached.
    let viewer = Command::new("ffmpeg")
        .args(["-v", "error", "-rw_timeout", "15000000", "-i", &rtmp_url, "-frames:v", "1"])
        .args(["-f", "rawvideo", "-pix_fmt", "rgba", "-"])
        .output()
        .unwrap();
    let venue_frame = metric(&metrics(&addr), "parvis_program_stream_frame ");
    let seen = stamp::read(&viewer.stdout, 320, 180).expect("the frame code survives the stream");
    let delay = (venue_frame - f64::from(seen)) / 30.0;
    eprintln!("stream delay through nginx, read back by ffmpeg: {delay:.2} s (frame {seen} seen at {venue_frame})");
    assert!((0.0..10.0).contains(&delay), "delay {delay} s");
    // --stream-delay auto measures the same way, on its own.
    let measured = "parvis_program_measured_delay_seconds ";
    wait_for("the delay measured", Duration::from_secs(60), || metrics(&addr).contains(measured));
    let auto = metric(&metrics(&addr), measured);
    assert!(auto > 0.0 && auto < 10.0, "measured delay {auto} s");
    eprintln!("--stream-delay auto measured {auto:.2} s");

    // The ingest goes away mid-stream, and comes back.
    nginx.kill();
    wait_for("the RTMP output noticing the loss", Duration::from_secs(30), || {
        metric(&metrics(&addr), &format!("parvis_program_output_restarts_total{{target=\"{shown}\"}} ")) >= 1.0
    });
    std::thread::sleep(Duration::from_secs(2));
    let nginx = Nginx::start(&dir, rtmp_port);
    wait_for("the RTMP output live again", Duration::from_secs(60), || {
        metrics(&addr).contains(&format!("target=\"{shown}\",state=\"live\"}} 1"))
    });
    let probed = probe(&rtmp_url);
    assert!(probed.contains("codec_name=h264") && probed.contains("codec_name=aac"), "after the restart: {probed}");
    let m = metrics(&addr);
    for target in [format!("{}", record.display()), format!("srt://127.0.0.1:{srt_port}?mode=…")] {
        assert!(m.contains(&format!("target=\"{target}\",state=\"live\"}} 1")), "{target} carried on:\n{m}");
    }

    // ffmpeg dies under the recording: it is started again into a new file, the first kept.
    let pids = Command::new("pgrep").args(["-f", &format!("{}$", record.display())]).output().unwrap();
    let pid = String::from_utf8_lossy(&pids.stdout).lines().next().expect("the recording's ffmpeg").to_owned();
    let _ = Command::new("kill").args(["-KILL", &pid]).status();
    let restarts = format!("parvis_program_output_restarts_total{{target=\"{}\"}} ", record.display());
    wait_for("the recording started again", Duration::from_secs(30), || {
        let m = metrics(&addr);
        metric(&m, &restarts) >= 1.0 && m.contains(&format!("target=\"{}\",state=\"live\"}} 1", record.display()))
    });
    std::thread::sleep(Duration::from_secs(2));
    assert!(metric(&m, &format!("parvis_program_output_missed_total{{target=\"{shown}\"}} ")) > 0.0, "{m}");

    // A clean stop finishes the file and the streams.
    let _ = Command::new("kill").args(["-INT", &venue.id().to_string()]).status();
    let status = venue.wait().unwrap();
    drop(nginx);
    let _ = Command::new("kill").args(["-INT", &srt_listener.id().to_string()]).status();
    let _ = srt_listener.wait();
    let log = text();
    std::fs::write(dir.join("venue.log"), &log).unwrap();
    assert!(status.success(), "{log}");
    assert!(!log.contains(key) && !m.contains(key), "the stream key leaked:\n{log}\n{m}");
    assert!(log.contains(&shown), "the log names the stream without its key:\n{log}");
    // The venue's frames kept their pace while the ingest was down: no 5-second report has a
    // frame longer than a second.
    let longest = log
        .lines()
        .filter_map(|l| l.split("longest ").nth(1)?.split(" ms").next()?.parse::<f64>().ok())
        .fold(0.0f64, f64::max);
    assert!(longest > 0.0 && longest < 1000.0, "longest frame {longest} ms\n{log}");
    // The file of the killed ffmpeg is readable up to its death (Matroska), and the second
    // one goes on from there.
    let recorded = probe(record.to_str().unwrap());
    assert!(recorded.contains("codec_name=h264") && recorded.contains("codec_name=aac"), "{recorded}");
    assert!(video_frames(&record) > 90, "{} frames before the kill", video_frames(&record));
    let second = probe(dir.join("program-2.mkv").to_str().unwrap());
    assert!(second.contains("codec_name=h264") && duration(&second) > 1.0, "{second}");
    assert!(
        log.lines().any(|l| l.contains(&format!("program output {}:", full.display()))
            && l.contains("No space left on device; starting it again")),
        "{log}"
    );
    let srt = probe(srt_file.to_str().unwrap());
    assert!(srt.contains("codec_name=h264") && srt.contains("width=320"), "the SRT listener got the stream: {srt}");
}
