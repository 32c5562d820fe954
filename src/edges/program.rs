//! The program output's edge: the venue's frames and sound, from the engine's bounded queue,
//! encoded by Debian's `ffmpeg` (a child process per output: raw RGBA frames on its standard
//! input, 16-bit PCM over a loopback TCP connection it opens) and sent to RTMP, SRT or a file.
//!
//! One dispatcher thread keeps the stream's clock: output frame `k` shows the newest picture
//! the venue rendered at or before `k / fps` seconds into the stream, repeated when the
//! renderer is slower than the output (counted), and the sound is released to the encoders in
//! step with the frames, so that both start at the same instant in every encoder, including
//! one restarted mid-show. Each output has a supervisor thread that starts ffmpeg, watches it,
//! and starts it again with backoff when it dies or stalls (a lost ingest, a full disk); the
//! others carry on, and the venue never waits for any of them.

use std::collections::VecDeque;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError, SyncSender, sync_channel};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use thiserror::Error;

use crate::engine::program::{ProgramPacket, ProgramStats, TargetStatus};
use crate::model::program::{AUDIO_RATE, OutputError, OutputSettings, OutputTarget, scrub, stamp};

/// Packets the engine may queue before it drops frames (and, beyond, sound).
pub const QUEUE: usize = 512;
/// Seconds of output queued for one encoder before it counts as stalled.
const ENCODER_QUEUE_SECONDS: u32 = 4;
/// ... and at most this many bytes of pictures (about 60 frames of 1080p).
const ENCODER_QUEUE_BYTES: usize = 512 << 20;
/// An encoder that took nothing for this long is restarted.
const STALL: Duration = Duration::from_secs(10);
/// Longest wait between restarts.
const MAX_BACKOFF: Duration = Duration::from_secs(30);
/// How long the renderer may fall behind the sound before frames are repeated to keep the
/// stream going (a stalled venue frame, a long scene load).
const MAX_VIDEO_LAG: f64 = 0.5;
/// Rows at the bottom of a frame that carry the frame code (copied per output frame).
const STAMP_ROWS: usize = stamp::CELL * 2;

/// Why the program output cannot start.
#[derive(Debug, Error)]
pub enum ProgramOutputError {
    /// ffmpeg is not installed or not runnable.
    #[error("cannot run {program}: {why} (install Debian's ffmpeg package, or give --ffmpeg PATH)")]
    NoFfmpeg {
        /// The program tried.
        program: String,
        /// Why.
        why: String,
    },
    /// The asked encoder is not in this ffmpeg, or does not work on this machine.
    #[error("the video encoder {0:?} is not available in this ffmpeg (`ffmpeg -encoders` lists them)")]
    NoEncoder(String),
    /// A thread could not be started.
    #[error("cannot start the program output: {0}")]
    Io(#[from] std::io::Error),
}

/// Checks a target before anything starts: a network one against `loopback_only`, a
/// recording's folder for existence and write permission (by creating and removing a file in
/// it: read-only mounts and permissions both show).
pub fn check_target(target: &OutputTarget, loopback_only: bool) -> Result<(), OutputError> {
    target.check_host(loopback_only)?;
    let OutputTarget::File(path) = target else { return Ok(()) };
    let folder = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_owned(),
        _ => PathBuf::from("."),
    };
    let unwritable = |why: String| OutputError::Unwritable { path: path.clone(), why };
    if !folder.is_dir() {
        return Err(unwritable("no such folder".into()));
    }
    if path.is_dir() {
        return Err(unwritable("it is a folder".into()));
    }
    let probe = folder.join(format!(".parvis-probe-{}", std::process::id()));
    std::fs::write(&probe, b"").map_err(|e| unwritable(e.to_string()))?;
    let _ = std::fs::remove_file(probe);
    Ok(())
}

/// The program at `name`: a path to a file, or a command found on `PATH`.
pub fn find_program(name: &Path) -> Option<PathBuf> {
    if name.components().count() > 1 {
        return name.is_file().then(|| name.to_owned());
    }
    std::env::var_os("PATH").and_then(|paths| std::env::split_paths(&paths).map(|d| d.join(name)).find(|p| p.is_file()))
}

/// Picks the video encoder: `asked` if given (checked), else NVENC when this ffmpeg has it and
/// it works here (a GPU with NVIDIA's driver), else libx264.
pub fn choose_encoder(ffmpeg: &Path, asked: Option<&str>) -> Result<String, ProgramOutputError> {
    let works = |encoder: &str| -> Result<bool, ProgramOutputError> {
        // A one-frame encode: listing an encoder in `-encoders` says nothing about the driver.
        let status = Command::new(ffmpeg)
            .args(["-hide_banner", "-nostdin", "-loglevel", "error", "-f", "lavfi", "-i"])
            .arg("color=black:size=256x144:rate=30:duration=0.1")
            .args(["-frames:v", "1", "-c:v", encoder, "-f", "null", "-"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .map_err(|e| ProgramOutputError::NoFfmpeg { program: ffmpeg.display().to_string(), why: e.to_string() })?;
        Ok(status.success())
    };
    if let Some(asked) = asked {
        return if works(asked)? { Ok(asked.to_owned()) } else { Err(ProgramOutputError::NoEncoder(asked.to_owned())) };
    }
    for encoder in ["h264_nvenc", "libx264"] {
        if works(encoder)? {
            return Ok(encoder.to_owned());
        }
    }
    Err(ProgramOutputError::NoEncoder("libx264".into()))
}

/// One output frame for an encoder: the picture, and (when stamped) its bottom rows with this
/// frame's code, written in place of the picture's own.
#[derive(Clone)]
struct Tick {
    picture: Arc<Vec<u8>>,
    tail: Option<Arc<Vec<u8>>>,
}

/// What the dispatcher and a target's supervisor share.
struct TargetLink {
    target: OutputTarget,
    index: usize,
    /// True while an encoder is running and taking data.
    ready: AtomicBool,
    /// Set by the dispatcher when it could not queue (the encoder stalled): restart it.
    overflowed: AtomicBool,
    video: Mutex<Option<SyncSender<Tick>>>,
    audio: Mutex<Option<SyncSender<Arc<[i16]>>>>,
    /// Set by the dispatcher when the venue ended the stream: encoders finish and stay down.
    closed: AtomicBool,
}

/// The running program output; [`ProgramOutput::finish`] ends the streams and files cleanly.
#[derive(bevy::prelude::Resource)]
pub struct ProgramOutput {
    dispatcher: Option<JoinHandle<()>>,
    supervisors: Vec<JoinHandle<()>>,
    stop: Arc<AtomicBool>,
    /// Set when the venue has stopped: the dispatcher writes out what it has once the queue
    /// is quiet (a frame still being read back may hold a sender for ever).
    closing: Arc<AtomicBool>,
}

impl ProgramOutput {
    /// Starts one encoder per target. `packets` is the engine's end of the queue. A `patient`
    /// output (an offline render) waits for a slow encoder instead of restarting it.
    pub fn start(
        targets: Vec<OutputTarget>,
        settings: OutputSettings,
        ffmpeg: PathBuf,
        stats: Arc<ProgramStats>,
        packets: Receiver<ProgramPacket>,
        patient: bool,
    ) -> Result<Self, ProgramOutputError> {
        let stop = Arc::new(AtomicBool::new(false));
        let closing = Arc::new(AtomicBool::new(false));
        *stats.targets.lock().expect("targets") = targets
            .iter()
            .map(|t| TargetStatus { name: t.redacted(), state: "starting", ..Default::default() })
            .collect();
        let links: Vec<Arc<TargetLink>> = targets
            .into_iter()
            .enumerate()
            .map(|(index, target)| {
                Arc::new(TargetLink {
                    target,
                    index,
                    ready: AtomicBool::new(false),
                    overflowed: AtomicBool::new(false),
                    video: Mutex::new(None),
                    audio: Mutex::new(None),
                    closed: AtomicBool::new(false),
                })
            })
            .collect();
        let mut supervisors = Vec::new();
        for link in &links {
            let (link, settings, ffmpeg, stats, stop) =
                (link.clone(), settings.clone(), ffmpeg.clone(), stats.clone(), stop.clone());
            supervisors.push(
                std::thread::Builder::new()
                    .name(format!("program output {}", link.index))
                    .spawn(move || supervise(link, settings, ffmpeg, stats, stop))?,
            );
        }
        let dispatcher = {
            let (stats, settings, closing) = (stats.clone(), settings.clone(), closing.clone());
            std::thread::Builder::new()
                .name("program dispatcher".into())
                .spawn(move || Dispatcher::new(settings, stats, links, patient).run(packets, &closing))?
        };
        Ok(Self { dispatcher: Some(dispatcher), supervisors, stop, closing })
    }

    /// Ends the output after the venue stopped: the dispatcher writes out what the venue sent,
    /// then every encoder finishes its stream or file (an MP4's index is written last).
    pub fn finish(mut self) {
        self.closing.store(true, Ordering::Release);
        if let Some(d) = self.dispatcher.take() {
            let _ = d.join();
        }
        self.stop.store(true, Ordering::Relaxed);
        for s in self.supervisors.drain(..) {
            let _ = s.join();
        }
    }
}

impl Drop for ProgramOutput {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

/// Keeps the stream's clock: turns the venue's timed pictures and sound into output frames
/// and aligned sound for every encoder.
struct Dispatcher {
    settings: OutputSettings,
    stats: Arc<ProgramStats>,
    links: Vec<Arc<TargetLink>>,
    /// Whether to wait for a slow encoder instead of restarting it (an offline render).
    patient: bool,
    /// Venue time of the stream's start (the start of the first sound).
    t0: Option<f64>,
    /// Next output frame.
    tick: u64,
    /// Pictures by venue time, oldest first: the one the last output frame showed (kept for
    /// repeats), then newer ones not shown yet. Each: time, pixels, shown, stamped.
    pictures: VecDeque<(f64, Arc<Vec<u8>>, bool, bool)>,
    /// Sound not yet released, and the sample (per channel) its first sample is.
    sound: VecDeque<i16>,
    sound_start: u64,
    /// Samples (per channel) received since the stream's start, silence for gaps included.
    sound_end: u64,
}

impl Dispatcher {
    fn new(settings: OutputSettings, stats: Arc<ProgramStats>, links: Vec<Arc<TargetLink>>, patient: bool) -> Self {
        Self {
            settings,
            stats,
            links,
            patient,
            t0: None,
            tick: 0,
            pictures: VecDeque::new(),
            sound: VecDeque::new(),
            sound_start: 0,
            sound_end: 0,
        }
    }

    fn tick_time(&self, k: u64) -> f64 {
        self.t0.unwrap_or(0.0) + k as f64 / f64::from(self.settings.fps)
    }

    /// The first sample (per channel) after output frame `k`.
    fn tick_end_sample(&self, k: u64) -> u64 {
        ((k + 1) * u64::from(AUDIO_RATE)) / u64::from(self.settings.fps)
    }

    fn sound_until(&self) -> f64 {
        self.t0.unwrap_or(0.0) + self.sound_end as f64 / f64::from(AUDIO_RATE)
    }

    fn run(mut self, packets: Receiver<ProgramPacket>, closing: &AtomicBool) {
        loop {
            let packet = match packets.recv_timeout(Duration::from_millis(100)) {
                Err(RecvTimeoutError::Timeout) if closing.load(Ordering::Acquire) => {
                    Err(RecvTimeoutError::Disconnected)
                }
                other => other,
            };
            match packet {
                Ok(ProgramPacket::Audio { until, samples }) => {
                    self.stats.queued.fetch_sub(1, Ordering::Relaxed);
                    let frames = (samples.len() / 2) as u64;
                    let start = until - frames as f64 / f64::from(AUDIO_RATE);
                    let t0 = *self.t0.get_or_insert(start);
                    // A block lost to a full queue leaves a gap: silence fills it, so that the
                    // sound after it stays on the venue's clock (and with the pictures).
                    let expected = ((start - t0) * f64::from(AUDIO_RATE)).round() as i64;
                    let gap = expected - self.sound_end as i64;
                    if gap > i64::from(AUDIO_RATE) / 1000 {
                        let gap = gap.min(i64::from(AUDIO_RATE) * 10) as u64;
                        self.sound.extend(std::iter::repeat_n(0i16, gap as usize * 2));
                        self.sound_end += gap;
                    }
                    self.sound.extend(samples);
                    self.sound_end += frames;
                    self.emit_ready(false);
                }
                Ok(ProgramPacket::Frame { time, width, height, rgba, stamp }) => {
                    self.stats.in_flight.fetch_sub(1, Ordering::Relaxed);
                    self.stats.queued.fetch_sub(1, Ordering::Relaxed);
                    if (width, height) != (self.settings.width, self.settings.height)
                        || rgba.len() != self.settings.frame_bytes()
                    {
                        bevy::log::warn!(
                            "program output: a {width}x{height} frame for a {}x{} output, left out",
                            self.settings.width,
                            self.settings.height
                        );
                        continue;
                    }
                    if self.t0.is_none() {
                        continue;
                    }
                    self.pictures.push_back((time, Arc::new(rgba), false, stamp));
                    self.emit_ready(false);
                }
                Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => {
                    // The venue stopped: write out the stream up to where its sound ends.
                    self.emit_ready(true);
                    for link in &self.links {
                        link.closed.store(true, Ordering::Release);
                        link.video.lock().expect("video queue").take();
                        link.audio.lock().expect("audio queue").take();
                    }
                    return;
                }
            }
        }
    }

    /// Writes every output frame that can be written: its whole sound has arrived, and its
    /// picture is known — a newer picture exists (so the one before it is the frame's), or
    /// the renderer has fallen half a second behind the sound (the newest is repeated to keep
    /// the stream going), or the stream is ending.
    fn emit_ready(&mut self, ending: bool) {
        loop {
            if self.pictures.is_empty() || self.sound_end < self.tick_end_sample(self.tick) {
                return;
            }
            let t = self.tick_time(self.tick);
            // Drop pictures that a newer one replaces for this frame.
            while self.pictures.len() > 1 && self.pictures[1].0 <= t {
                if let Some((_, _, false, _)) = self.pictures.pop_front() {
                    self.stats.frames_skipped.fetch_add(1, Ordering::Relaxed);
                }
            }
            let known =
                self.pictures.len() > 1 || ending || self.pictures[0].0 > t || self.sound_until() - t > MAX_VIDEO_LAG;
            if !known {
                return;
            }
            self.emit_tick();
        }
    }

    /// Writes output frame `tick` (the oldest kept picture) and its sound to every ready
    /// encoder.
    fn emit_tick(&mut self) {
        let Some((_, picture, shown, stamped)) = self.pictures.front_mut() else { return };
        if *shown {
            self.stats.frames_repeated.fetch_add(1, Ordering::Relaxed);
        }
        *shown = true;
        let (w, h) = (self.settings.width as usize, self.settings.height as usize);
        let tail = stamped.then(|| {
            let start = (h - STAMP_ROWS.min(h)) * w * 4;
            let mut rows = picture[start..].to_vec();
            // The code sits in the bottom rows; stamp a copy of them, framed as a whole image.
            let rows_h = rows.len() / (w * 4);
            stamp::write(&mut rows, w, rows_h, self.tick as u32);
            Arc::new(rows)
        });
        let tick = Tick { picture: picture.clone(), tail };
        // This frame's sound: from its start to the next frame's, all arrived (emit_ready).
        let take =
            (self.tick_end_sample(self.tick).saturating_sub(self.sound_start) as usize * 2).min(self.sound.len());
        let chunk: Arc<[i16]> = self.sound.drain(..take).collect::<Vec<_>>().into();
        self.sound_start += (take / 2) as u64;
        // A target that is (again) ready starts here: on a frame's start, with that frame's
        // sound, so its picture and sound begin at the same instant.
        for (i, link) in self.links.iter().enumerate() {
            if !link.ready.load(Ordering::Acquire) {
                self.note_missed(i);
                continue;
            }
            let video = link.video.lock().expect("video queue").clone();
            let audio = link.audio.lock().expect("audio queue").clone();
            let (Some(video), Some(audio)) = (video, audio) else {
                self.note_missed(i);
                continue;
            };
            let sent = if self.patient {
                // Offline: wait for the encoder (a render may outrun it); a dead one errs.
                video.send(tick.clone()).is_ok() && (chunk.is_empty() || audio.send(chunk.clone()).is_ok())
            } else {
                video.try_send(tick.clone()).is_ok() && (chunk.is_empty() || audio.try_send(chunk.clone()).is_ok())
            };
            if sent {
                self.stats.frames_written.fetch_add(1, Ordering::Relaxed);
                if let Some(t) = self.stats.targets.lock().expect("targets").get_mut(link.index) {
                    t.frames += 1;
                }
            } else {
                // A full queue (the encoder stalled), a closed one (it died), or half a frame
                // sent: out of step from here, so this encoder starts again.
                link.overflowed.store(true, Ordering::Release);
                link.ready.store(false, Ordering::Release);
                self.note_missed(i);
            }
        }
        self.tick += 1;
        self.stats.stream_frame.store(self.tick, Ordering::Relaxed);
    }

    fn note_missed(&self, i: usize) {
        if let Some(t) = self.stats.targets.lock().expect("targets").get_mut(self.links[i].index) {
            t.missed += 1;
        }
    }
}

fn set_state(stats: &ProgramStats, index: usize, state: &'static str, error: Option<String>) {
    if let Some(t) = stats.targets.lock().expect("targets").get_mut(index) {
        t.state = state;
        if let Some(e) = error {
            t.last_error = e;
        }
    }
}

/// Starts the target's encoder, watches it, restarts it with backoff; until `stop`.
fn supervise(
    link: Arc<TargetLink>,
    settings: OutputSettings,
    ffmpeg: PathBuf,
    stats: Arc<ProgramStats>,
    stop: Arc<AtomicBool>,
) {
    let name = link.target.redacted();
    let secrets = link.target.secrets();
    let mut backoff = Duration::from_secs(1);
    let mut attempt = 0u32;
    let mut live_since: Option<Instant>;
    loop {
        if stop.load(Ordering::Relaxed) || link.closed.load(Ordering::Acquire) {
            set_state(&stats, link.index, "stopped", None);
            break;
        }
        attempt += 1;
        // A restarted recording goes to a new file: the first one is kept whole.
        let target = match (&link.target, attempt) {
            (OutputTarget::File(path), n) if n > 1 => OutputTarget::File(numbered(path, n)),
            (t, _) => t.clone(),
        };
        let outcome = run_encoder(&link, &target, &settings, &ffmpeg, &stats, &secrets, &stop);
        link.ready.store(false, Ordering::Release);
        link.video.lock().expect("video queue").take();
        link.audio.lock().expect("audio queue").take();
        live_since = outcome.live_since;
        match outcome.error {
            None => {
                set_state(&stats, link.index, "stopped", None);
                bevy::log::info!("program output {name}: finished");
                break;
            }
            Some(error) => {
                let error = scrub(&error, &secrets);
                if stop.load(Ordering::Relaxed) || link.closed.load(Ordering::Acquire) {
                    // The end of the show, badly: a file may be cut short. Said, and kept as
                    // the output's state for whoever checks (`parvis render --video` does).
                    bevy::log::error!("program output {name}: did not finish cleanly: {error}");
                    set_state(&stats, link.index, "failed", Some(error));
                    break;
                }
                // A run that stayed up a while starts the backoff again.
                if live_since.is_some_and(|t| t.elapsed() > Duration::from_secs(30)) {
                    backoff = Duration::from_secs(1);
                }
                set_state(&stats, link.index, "reconnecting", Some(error.clone()));
                if let Some(t) = stats.targets.lock().expect("targets").get_mut(link.index) {
                    t.restarts += 1;
                }
                bevy::log::warn!(
                    "program output {name}: {error}; starting it again in {} s (the venue carries on)",
                    backoff.as_secs()
                );
                let until = Instant::now() + backoff;
                while Instant::now() < until && !stop.load(Ordering::Relaxed) {
                    std::thread::sleep(Duration::from_millis(50));
                }
                backoff = (backoff * 2).min(MAX_BACKOFF);
            }
        }
    }
}

/// `NAME-n.ext`, or the next number free: a file an earlier run left is never overwritten.
fn numbered(path: &Path, n: u32) -> PathBuf {
    let stem = path.file_stem().and_then(|s| s.to_str()).unwrap_or("program");
    let ext = path.extension().and_then(|s| s.to_str()).unwrap_or("mkv");
    (n..n + 1000)
        .map(|i| path.with_file_name(format!("{stem}-{i}.{ext}")))
        .find(|p| !p.exists())
        .unwrap_or_else(|| path.with_file_name(format!("{stem}-{n}.{ext}")))
}

struct Outcome {
    /// `None`: the venue ended the stream and ffmpeg finished it.
    error: Option<String>,
    live_since: Option<Instant>,
}

fn run_encoder(
    link: &TargetLink,
    target: &OutputTarget,
    settings: &OutputSettings,
    ffmpeg: &Path,
    stats: &Arc<ProgramStats>,
    secrets: &[String],
    stop: &AtomicBool,
) -> Outcome {
    let fail = |e: String| Outcome { error: Some(e), live_since: None };
    set_state(stats, link.index, "starting", None);
    let listener = match TcpListener::bind("127.0.0.1:0").and_then(|l| l.set_nonblocking(true).map(|()| l)) {
        Ok(l) => l,
        Err(e) => return fail(format!("cannot open the sound's loopback socket: {e}")),
    };
    let audio_addr = match listener.local_addr() {
        Ok(a) => format!("tcp://{a}"),
        Err(e) => return fail(e.to_string()),
    };
    let mut child = match Command::new(ffmpeg)
        .args(settings.ffmpeg_args(target, &audio_addr))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
    {
        Ok(c) => c,
        Err(e) => return fail(format!("cannot run {}: {e}", ffmpeg.display())),
    };
    let last_error: Arc<Mutex<String>> = Arc::default();
    let stderr_thread = child.stderr.take().map(|stderr| {
        let (last_error, secrets, name) = (last_error.clone(), secrets.to_vec(), target.redacted());
        std::thread::spawn(move || {
            let mut said = 0u32;
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                let line = scrub(line.trim(), &secrets);
                // A network output cannot seek back to patch its header: said at every end.
                if line.is_empty() || line.contains("Failed to update header") {
                    continue;
                }
                // ffmpeg repeats itself on a bad stream; the first lines say what is wrong.
                if said < 20 {
                    bevy::log::warn!("program output {name}: ffmpeg: {line}");
                    said += 1;
                }
                *last_error.lock().expect("last error") = line;
            }
        })
    });
    // Microseconds of output ffmpeg has written, from its progress reports.
    let written_us = Arc::new(std::sync::atomic::AtomicI64::new(-1));
    let progress_thread = child.stdout.take().map(|stdout| {
        let written_us = written_us.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if let Some(us) = line.strip_prefix("out_time_us=").and_then(|v| v.trim().parse::<i64>().ok()) {
                    written_us.store(us, Ordering::Relaxed);
                }
            }
        })
    });
    let said = |fallback: String| {
        let last = last_error.lock().expect("last error").clone();
        if last.is_empty() { fallback } else { last }
    };
    // ffmpeg opens its inputs in order: the frames (standard input) first, then the sound.
    let Some(stdin) = child.stdin.take() else {
        let _ = child.kill();
        let _ = child.wait();
        return fail("ffmpeg has no standard input".into());
    };
    // A few seconds of output: ffmpeg's start and an ingest's hiccups, before the encoder
    // counts as stalled. Repeated frames share their picture.
    // Bounded in bytes too: a stalled 1080p encoder must not hold gigabytes.
    let by_bytes = (ENCODER_QUEUE_BYTES / settings.frame_bytes().max(1)).max(8);
    let depth = ((settings.fps * ENCODER_QUEUE_SECONDS) as usize).min(by_bytes);
    let (video_tx, video_rx) = sync_channel::<Tick>(depth);
    let (audio_tx, audio_rx) = sync_channel::<Arc<[i16]>>(depth);
    let video_writer = {
        let settings = settings.clone();
        std::thread::spawn(move || write_video(stdin, video_rx, &settings))
    };
    *link.video.lock().expect("video queue") = Some(video_tx);
    *link.audio.lock().expect("audio queue") = Some(audio_tx);
    link.overflowed.store(false, Ordering::Release);
    link.ready.store(true, Ordering::Release);
    let mut audio_writer: Option<JoinHandle<std::io::Result<()>>> = None;
    let mut audio_rx = Some(audio_rx);
    let mut live_since = None;
    let sent_before = stats.targets.lock().expect("targets").get(link.index).map_or(0, |t| t.frames);
    let opened = Instant::now();
    let error = loop {
        std::thread::sleep(Duration::from_millis(20));
        if audio_writer.is_none() {
            match listener.accept() {
                Ok((socket, _)) => {
                    let rx = audio_rx.take().expect("one sound connection");
                    audio_writer = Some(std::thread::spawn(move || write_audio(socket, rx)));
                }
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                    if opened.elapsed() > STALL {
                        break Some(said("ffmpeg did not open the sound input".into()));
                    }
                }
                Err(e) => break Some(format!("sound input: {e}")),
            }
        }
        // The venue ended the stream (or the output is dropped without `finish`).
        let closed = link.closed.load(Ordering::Acquire) || stop.load(Ordering::Relaxed);
        match child.try_wait() {
            Ok(Some(status)) if status.success() && closed => break None,
            Ok(Some(status)) => break Some(said(format!("ffmpeg stopped ({status})"))),
            Ok(None) => {}
            Err(e) => break Some(e.to_string()),
        }
        if closed {
            // Close the inputs (a queue installed after the dispatcher closed the others is
            // closed here), then give ffmpeg time to write the rest and finish the file (an
            // MP4's index is written last).
            link.ready.store(false, Ordering::Release);
            link.video.lock().expect("video queue").take();
            link.audio.lock().expect("audio queue").take();
            let deadline = Instant::now() + Duration::from_secs(30);
            while Instant::now() < deadline && matches!(child.try_wait(), Ok(None)) {
                std::thread::sleep(Duration::from_millis(20));
            }
            break match child.try_wait() {
                Ok(Some(status)) if status.success() => None,
                Ok(Some(status)) => Some(said(format!("ffmpeg stopped ({status})"))),
                _ => Some("ffmpeg did not finish the output within 30 s".into()),
            };
        }
        if link.overflowed.load(Ordering::Acquire) {
            break Some("the encoder fell behind (its queue filled): the ingest is slow or gone".into());
        }
        if video_writer.is_finished() {
            break Some(said("ffmpeg stopped reading the frames".into()));
        }
        if audio_writer.as_ref().is_some_and(JoinHandle::is_finished) {
            break Some(said("ffmpeg stopped reading the sound".into()));
        }
        // The output is live once ffmpeg has written some of it (for a network output: the
        // server took it); it is stalled when that stops moving.
        // Stalled is counted in the stream's time, not the wall's: an offline render may feed
        // it far slower than real time, and ffmpeg writes nothing until it has about a
        // second of both streams.
        let us = written_us.load(Ordering::Relaxed);
        if live_since.is_none() && us > 0 {
            live_since = Some(Instant::now());
            set_state(stats, link.index, "live", None);
            bevy::log::info!("program output {}: live ({})", target.redacted(), settings.encoder);
        }
        let sent = stats.targets.lock().expect("targets").get(link.index).map_or(0, |t| t.frames) - sent_before;
        let behind = sent as f64 / f64::from(settings.fps) - us.max(0) as f64 / 1e6;
        if behind > STALL.as_secs_f64() {
            break Some(format!("{behind:.0} s of the stream sent and not written: the output is stalled"));
        }
    };
    link.ready.store(false, Ordering::Release);
    link.video.lock().expect("video queue").take();
    link.audio.lock().expect("audio queue").take();
    if error.is_some() {
        // Its inputs closed, ffmpeg ends a file properly if it still can (an MP4 killed
        // mid-write has no index and cannot be read); one that does not is killed.
        let deadline = Instant::now() + Duration::from_secs(3);
        while Instant::now() < deadline && matches!(child.try_wait(), Ok(None)) {
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = child.kill();
    }
    let _ = child.wait();
    let _ = video_writer.join();
    if let Some(a) = audio_writer {
        let _ = a.join();
    }
    for t in [stderr_thread, progress_thread].into_iter().flatten() {
        let _ = t.join();
    }
    Outcome { error, live_since }
}

/// How often the delay is read back from the playback URL.
const DELAY_EVERY: Duration = Duration::from_secs(30);

/// `--stream-delay auto`: a thread that decodes one frame of what viewers get every 30 s with
/// ffmpeg, reads its frame code, and stores the delay in [`ProgramStats::measured_delay_ms`].
#[derive(bevy::prelude::Resource)]
pub struct DelayMeter {
    stop: Arc<AtomicBool>,
}

impl DelayMeter {
    /// Starts measuring `url`, a stream of `size` at `fps` whose frames carry the frame code.
    pub fn start(
        url: String,
        ffmpeg: PathBuf,
        stats: Arc<ProgramStats>,
        size: bevy::math::UVec2,
        fps: u32,
    ) -> std::io::Result<Self> {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        std::thread::Builder::new().name("stream delay".into()).spawn(move || {
            let (shown, secrets) = (crate::model::program::redact_url(&url), crate::model::program::url_secrets(&url));
            let mut next = Instant::now() + Duration::from_secs(5);
            while !flag.load(Ordering::Relaxed) {
                if Instant::now() < next {
                    std::thread::sleep(Duration::from_millis(100));
                    continue;
                }
                next = Instant::now() + DELAY_EVERY;
                match read_delay(&ffmpeg, &url, &stats, size, fps) {
                    Ok(delay) => {
                        stats.measured_delay_ms.store((delay * 1000.0).round().max(1.0) as u64, Ordering::Relaxed);
                        bevy::log::info!("stream delay measured from {shown}: {delay:.2} s");
                    }
                    Err(e) => {
                        bevy::log::warn!("stream delay from {shown}: {}", scrub(&e, &secrets));
                        // A stream not readable yet (starting, reconnecting): try again soon.
                        next = Instant::now() + Duration::from_secs(5);
                    }
                }
            }
        })?;
        Ok(Self { stop })
    }
}

impl Drop for DelayMeter {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

/// Decodes one frame of `url` at the output's size and reads the delay off its frame code.
fn read_delay(
    ffmpeg: &Path,
    url: &str,
    stats: &ProgramStats,
    size: bevy::math::UVec2,
    fps: u32,
) -> Result<f64, String> {
    let out = Command::new(ffmpeg)
        .args(["-v", "error", "-nostdin", "-rw_timeout", "15000000", "-i", url, "-frames:v", "1"])
        .args(["-s", &format!("{}x{}", size.x, size.y), "-f", "rawvideo", "-pix_fmt", "rgba", "-"])
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("cannot run ffmpeg: {e}"))?;
    // The frame the venue has reached when the viewer's frame arrived.
    let now = stats.stream_frame.load(Ordering::Relaxed);
    if !out.status.success() {
        let said = String::from_utf8_lossy(&out.stderr);
        return Err(said.lines().last().unwrap_or("ffmpeg could not read the stream").to_owned());
    }
    let seen = stamp::read(&out.stdout, size.x as usize, size.y as usize)
        .ok_or("no frame code in the stream's picture (is the stamp overlay off?)")?;
    let behind = (now as u16).wrapping_sub(seen);
    Ok(f64::from(behind) / f64::from(fps.max(1)))
}

/// Writes output frames to ffmpeg's standard input until the queue closes or ffmpeg goes.
fn write_video(
    mut stdin: std::process::ChildStdin,
    frames: Receiver<Tick>,
    settings: &OutputSettings,
) -> std::io::Result<()> {
    let (w, h) = (settings.width as usize, settings.height as usize);
    let split = (h - STAMP_ROWS.min(h)) * w * 4;
    while let Ok(tick) = frames.recv() {
        match &tick.tail {
            Some(tail) => {
                stdin.write_all(&tick.picture[..split])?;
                stdin.write_all(tail)?;
            }
            None => stdin.write_all(&tick.picture)?,
        }
    }
    stdin.flush()
}

/// Writes the sound to ffmpeg's loopback connection until the queue closes or ffmpeg goes.
fn write_audio(mut socket: TcpStream, sound: Receiver<Arc<[i16]>>) -> std::io::Result<()> {
    socket.set_nonblocking(false)?;
    socket.set_write_timeout(Some(STALL))?;
    let mut bytes = Vec::new();
    while let Ok(chunk) = sound.recv() {
        bytes.clear();
        bytes.extend(chunk.iter().flat_map(|s| s.to_le_bytes()));
        socket.write_all(&bytes)?;
    }
    socket.flush()?;
    // Closing says end of input; ffmpeg may still send nothing back, but drain to be polite.
    let _ = socket.shutdown(std::net::Shutdown::Write);
    let _ = socket.read(&mut [0u8; 1]);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(time: f64) -> ProgramPacket {
        ProgramPacket::Frame { time, width: 32, height: 18, rgba: vec![7; 32 * 18 * 4], stamp: false }
    }

    fn sound(until: f64, seconds: f64) -> ProgramPacket {
        ProgramPacket::Audio { until, samples: vec![0; (seconds * f64::from(AUDIO_RATE)) as usize * 2] }
    }

    /// The stream's clock: output frame k shows the newest picture at or before k / fps; a slow
    /// renderer's pictures are repeated, a fast one's extra pictures skipped, and the end is
    /// written out to where the sound ends.
    #[test]
    fn output_frames_follow_the_venue_clock() {
        let settings = OutputSettings { width: 32, height: 18, fps: 10, ..Default::default() };
        let stats = Arc::new(ProgramStats::default());
        let (tx, rx) = sync_channel(64);
        let packets = [sound(0.1, 0.1), frame(0.0), frame(0.3), frame(0.31), frame(0.32), frame(0.33), sound(0.5, 0.4)];
        stats.in_flight.store(5, Ordering::Relaxed);
        stats.queued.store(packets.len(), Ordering::Relaxed);
        for p in packets {
            tx.send(p).unwrap();
        }
        drop(tx);
        Dispatcher::new(settings, stats.clone(), Vec::new(), false).run(rx, &AtomicBool::new(false));
        let load = |a: &std::sync::atomic::AtomicU64| a.load(Ordering::Relaxed);
        // Frames 0–2 (0.0–0.2 s) show the first picture: two repeats; frame 3 (0.3 s) the
        // picture of 0.3 s; those of 0.31 and 0.32 s are replaced before frame 4 (0.4 s),
        // which shows the 0.33 s one; the sound ends at 0.5 s: five frames in all.
        assert_eq!(load(&stats.stream_frame), 5);
        assert_eq!(load(&stats.frames_repeated), 2);
        assert_eq!(load(&stats.frames_skipped), 2);
        assert_eq!(stats.in_flight.load(Ordering::Relaxed), 0);
    }

    #[test]
    fn recordings_need_a_folder_that_can_be_written() {
        let missing = OutputTarget::parse("/no/such/folder/show.mkv").unwrap();
        assert!(matches!(check_target(&missing, false), Err(OutputError::Unwritable { .. })));
        let here = OutputTarget::File(std::env::temp_dir().join("parvis-check.mkv"));
        assert!(check_target(&here, false).is_ok());
        let folder = OutputTarget::File(std::env::temp_dir());
        assert!(matches!(check_target(&folder, false), Err(OutputError::Unwritable { .. })));
        let remote = OutputTarget::parse("rtmp://live.example.org/app/key").unwrap();
        assert!(matches!(check_target(&remote, true), Err(OutputError::NotLoopback { .. })));
        assert!(find_program(Path::new("sh")).is_some());
        assert!(find_program(Path::new("/no/such/program")).is_none());
    }

    /// A frame of the wrong size (a resized target) is left out, not written.
    #[test]
    fn frames_of_the_wrong_size_are_left_out() {
        let settings = OutputSettings { width: 64, height: 36, fps: 10, ..Default::default() };
        let stats = Arc::new(ProgramStats::default());
        let (tx, rx) = sync_channel(8);
        stats.in_flight.store(1, Ordering::Relaxed);
        stats.queued.store(3, Ordering::Relaxed);
        tx.send(sound(0.1, 0.1)).unwrap();
        tx.send(frame(0.0)).unwrap();
        tx.send(sound(0.5, 0.4)).unwrap();
        drop(tx);
        Dispatcher::new(settings, stats.clone(), Vec::new(), false).run(rx, &AtomicBool::new(false));
        assert_eq!(stats.stream_frame.load(Ordering::Relaxed), 0);
    }
}
