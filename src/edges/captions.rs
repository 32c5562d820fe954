//! The captions edge: audio in, recognised lines out, on threads of their own. The audio comes
//! from a command that writes raw 16-bit 16 kHz mono samples on its standard output (`arecord`
//! for a sound card, `ffmpeg` for a file, a stream or a desk's feed); the recogniser is behind
//! the [`Recogniser`] trait. The one Parvis ships runs a speech engine as a child process that
//! speaks a line protocol (samples on its standard input, one JSON line per recognised or
//! revised line on its standard output: `scripts/captions/README.md`), so a better engine can
//! replace it without touching the venue. Nothing here is downloaded at run time.

use std::io::{BufRead, BufReader, Read, Write};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{Receiver, TryRecvError};

use std::time::{Duration, Instant};
use tokio::sync::mpsc::Sender;

use crate::engine::captions::{CaptionLink, CaptionStats, RecognisedLine};
use crate::engine::control::Throttle;
use crate::model::command::CommandOrigin;

/// The rate recognisers take.
pub const SAMPLE_RATE: u32 = 16_000;
/// Lines waiting for the venue; the edge waits when it is full (no line is lost).
const LINE_QUEUE: usize = 256;
/// Longest line read from a recogniser.
const MAX_LINE: usize = 16 * 1024;

/// A speech recogniser: 16 kHz mono samples in, lines out.
pub trait Recogniser: Send {
    /// Its name, for logs and the command log's origin.
    fn name(&self) -> &str;
    /// Takes the next samples.
    fn feed(&mut self, samples: &[i16]) -> std::io::Result<()>;
    /// Lines recognised or revised since the last call.
    fn lines(&mut self) -> std::io::Result<Vec<RecognisedLine>>;
    /// The audio has ended: every line still open comes out complete.
    fn finish(&mut self) -> std::io::Result<Vec<RecognisedLine>>;
}

/// A recogniser run as a child process speaking the line protocol.
pub struct ProcessRecogniser {
    name: String,
    child: Child,
    stdin: Option<ChildStdin>,
    lines: Receiver<RecognisedLine>,
    ended: Arc<AtomicBool>,
}

impl ProcessRecogniser {
    /// Starts `command` (run by `sh -c`); an error names it, also when it exits at once (a
    /// missing engine, a wrong path).
    pub fn start(name: &str, command: &str, stats: Arc<CaptionStats>) -> std::io::Result<Self> {
        let mut child = Command::new("sh")
            .args(["-c", command])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .map_err(|e| std::io::Error::new(e.kind(), format!("cannot start the recogniser {command:?}: {e}")))?;
        let stdout = child.stdout.take().expect("piped");
        let (tx, rx) = std::sync::mpsc::sync_channel(LINE_QUEUE);
        let ended = Arc::new(AtomicBool::new(false));
        let done = ended.clone();
        let engine = name.to_owned();
        std::thread::Builder::new().name("parvis-captions-read".into()).spawn(move || {
            let mut reader = BufReader::new(stdout);
            let mut line = Vec::new();
            let mut garbage = Throttle::default();
            loop {
                line.clear();
                match reader.by_ref().take(MAX_LINE as u64).read_until(b'\n', &mut line) {
                    Ok(0) | Err(_) => break,
                    Ok(_) => match parse_line(&line) {
                        // A flood of lines faster than the pump takes them (a broken engine) is
                        // dropped, counted, rather than left to hold the engine's output.
                        Ok(parsed) => match tx.try_send(parsed) {
                            Ok(()) => {}
                            Err(std::sync::mpsc::TrySendError::Full(_)) => {
                                stats.bad_lines.fetch_add(1, Ordering::Relaxed);
                                garbage.say(|| format!("captions: {engine}: lines faster than they are read; dropped"));
                            }
                            Err(std::sync::mpsc::TrySendError::Disconnected(_)) => break,
                        },
                        Err(why) => {
                            stats.bad_lines.fetch_add(1, Ordering::Relaxed);
                            garbage.say(|| format!("captions: {engine}: {why}"));
                        }
                    },
                }
            }
            garbage.flush("recogniser lines refused");
            done.store(true, Ordering::Release);
        })?;
        // An engine that cannot run (no Python environment, a wrong path) exits at once: say so
        // now, while the operator is starting the venue.
        for _ in 0..15 {
            if let Some(status) = child.try_wait()? {
                return Err(std::io::Error::other(format!(
                    "the recogniser {command:?} exited at once ({status}); its own message is above"
                )));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let stdin = child.stdin.take();
        Ok(Self { name: name.to_owned(), child, stdin, lines: rx, ended })
    }

    fn drain(&mut self) -> std::io::Result<Vec<RecognisedLine>> {
        let mut out = Vec::new();
        loop {
            match self.lines.try_recv() {
                Ok(line) => out.push(line),
                Err(TryRecvError::Empty) => return Ok(out),
                Err(TryRecvError::Disconnected) => {
                    if out.is_empty() {
                        return Err(self.stopped());
                    }
                    return Ok(out);
                }
            }
        }
    }

    fn stopped(&mut self) -> std::io::Error {
        let status = self.child.try_wait().ok().flatten().map_or("still running".into(), |s| s.to_string());
        std::io::Error::other(format!("the recogniser {} stopped ({status})", self.name))
    }

    /// Closes the engine's input and takes every line it wrote before its output ended, waiting
    /// at most `within`; an engine still running then is stopped. Used at the audio's end and
    /// when the engine has died: its last lines may still be in the pipe or on the reading
    /// thread when the write fails, and are not to be lost with it.
    fn wind_up(&mut self, within: Duration, after: &str) -> Vec<RecognisedLine> {
        drop(self.stdin.take());
        let deadline = Instant::now() + within;
        while !self.ended.load(Ordering::Acquire) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
        let lines = self.drain().unwrap_or_default();
        // An engine that has not ended by now will not: it is stopped, not waited for.
        if !self.ended.load(Ordering::Acquire) {
            bevy::log::warn!("captions: {} did not finish within {} s {after}; stopped", self.name, within.as_secs());
            let _ = self.child.kill();
        }
        let _ = self.child.wait();
        lines
    }
}

impl Drop for ProcessRecogniser {
    fn drop(&mut self) {
        drop(self.stdin.take());
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Reads one line of the protocol: `{"id": 3, "text": "...", "final": true}`.
fn parse_line(line: &[u8]) -> Result<RecognisedLine, String> {
    let value: serde_json::Value = serde_json::from_slice(line)
        .map_err(|e| format!("not a JSON line ({e}): {}", String::from_utf8_lossy(line).trim()))?;
    let id = value["id"].as_u64().ok_or("a line without a numeric \"id\"")?;
    let text = value["text"].as_str().ok_or("a line without a \"text\"")?.to_owned();
    let done = value["final"].as_bool().unwrap_or(false);
    Ok(RecognisedLine { id, text, done, received: Instant::now() })
}

impl Recogniser for ProcessRecogniser {
    fn name(&self) -> &str {
        &self.name
    }

    fn feed(&mut self, samples: &[i16]) -> std::io::Result<()> {
        let bytes: Vec<u8> = samples.iter().flat_map(|s| s.to_le_bytes()).collect();
        match self.stdin.as_mut() {
            Some(stdin) => {
                stdin.write_all(&bytes).map_err(|e| std::io::Error::new(e.kind(), self.stopped().to_string()))
            }
            None => Err(self.stopped()),
        }
    }

    fn lines(&mut self) -> std::io::Result<Vec<RecognisedLine>> {
        self.drain()
    }

    fn finish(&mut self) -> std::io::Result<Vec<RecognisedLine>> {
        Ok(self.wind_up(Duration::from_secs(30), "of the audio's end"))
    }
}

/// What `parvis run --captions-audio` starts.
#[derive(Debug, Clone)]
pub struct CaptionsConfig {
    /// The audio command (run by `sh -c`): raw s16le 16 kHz mono on its standard output.
    pub audio: String,
    /// The recogniser command (run by `sh -c`), speaking the line protocol.
    pub engine: String,
    /// A name for the engine, in logs and the command log.
    pub name: String,
}

/// Starts the audio command and the recogniser, and pumps one into the other on a thread;
/// returns the venue's end. A recogniser that stops is started again (after 1, 2, 4 … 10 s);
/// the end of the audio ends the captions, the last lines complete.
pub fn start_captions(config: CaptionsConfig, doorbell: crate::engine::rest::Doorbell) -> std::io::Result<CaptionLink> {
    let stats = Arc::new(CaptionStats::default());
    let (tx, rx) = tokio::sync::mpsc::channel(LINE_QUEUE);
    let audio = start_audio(&config.audio)?;
    // The first start's failure is the operator's to see at once; later ones are retried.
    let recogniser = ProcessRecogniser::start(&config.name, &config.engine, stats.clone())?;
    let origin = CommandOrigin::Control(format!("captions {}", config.name));
    let pump_stats = stats.clone();
    std::thread::Builder::new()
        .name("parvis-captions".into())
        .spawn(move || pump(audio, recogniser, config, tx, pump_stats, doorbell))?;
    Ok(CaptionLink { lines: rx, origin, stats })
}

fn start_audio(command: &str) -> std::io::Result<Child> {
    Command::new("sh")
        .args(["-c", command])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .map_err(|e| std::io::Error::new(e.kind(), format!("cannot start the audio input {command:?}: {e}")))
}

fn send(lines: Vec<RecognisedLine>, tx: &Sender<RecognisedLine>, doorbell: &crate::engine::rest::Doorbell) -> bool {
    let any = !lines.is_empty();
    for line in lines {
        // This thread is not in a runtime: waiting here holds the recogniser, not the venue.
        if tx.blocking_send(line).is_err() {
            return false;
        }
    }
    if any {
        doorbell.ring();
    }
    true
}

fn pump(
    mut audio: Child,
    mut recogniser: ProcessRecogniser,
    config: CaptionsConfig,
    tx: Sender<RecognisedLine>,
    stats: Arc<CaptionStats>,
    doorbell: crate::engine::rest::Doorbell,
) {
    let mut input = audio.stdout.take().expect("piped");
    // 100 ms of audio at a time: small enough for latency, large enough for few wake-ups.
    let mut bytes = vec![0u8; SAMPLE_RATE as usize / 10 * 2];
    let mut odd: Option<u8> = None;
    let mut backoff = Duration::from_secs(1);
    // Each run of the recogniser numbers its lines from 0: the run goes in the high bits, so
    // a restarted engine's line 0 is a new line, not a revision of the first run's.
    let mut run: u64 = 0;
    let mut run_started = Instant::now();
    let mut heard = false;
    let numbered = |run: u64, lines: Vec<RecognisedLine>| -> Vec<RecognisedLine> {
        lines.into_iter().map(|l| RecognisedLine { id: (run << 32) | (l.id & 0xffff_ffff), ..l }).collect()
    };
    bevy::log::info!("captions: listening to {:?} through {}", config.audio, config.name);
    loop {
        let n = match input.read(&mut bytes) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => {
                bevy::log::error!("captions: reading the audio input: {e}");
                break;
            }
        };
        let mut chunk: Vec<u8> = odd.take().into_iter().chain(bytes[..n].iter().copied()).collect();
        if chunk.len() % 2 == 1 {
            odd = chunk.pop();
        }
        let samples: Vec<i16> = chunk.chunks_exact(2).map(|b| i16::from_le_bytes([b[0], b[1]])).collect();
        stats.audio_ms.fetch_add(samples.len() as u64 * 1000 / u64::from(SAMPLE_RATE), Ordering::Relaxed);
        let fed = recogniser.feed(&samples).and_then(|()| recogniser.lines());
        match fed {
            Ok(lines) => {
                heard |= !lines.is_empty();
                if !send(numbered(run, lines), &tx, &doorbell) {
                    return;
                }
                // Only an engine that has shown it works earns a quick restart next time: one
                // that dies after taking a few writes must not be restarted every second.
                if heard || run_started.elapsed() > Duration::from_secs(10) {
                    backoff = Duration::from_secs(1);
                }
            }
            Err(e) => {
                // What it wrote before it stopped still counts, also the lines its reading
                // thread has not passed on yet (the write can fail before they are read).
                let last = recogniser.wind_up(Duration::from_secs(2), "of failing");
                send(numbered(run, last), &tx, &doorbell);
                bevy::log::error!("captions: {e}; starting it again in {} s", backoff.as_secs());
                std::thread::sleep(backoff);
                backoff = (backoff * 2).min(Duration::from_secs(10));
                match ProcessRecogniser::start(&config.name, &config.engine, stats.clone()) {
                    Ok(r) => {
                        stats.restarts.fetch_add(1, Ordering::Relaxed);
                        recogniser = r;
                        run += 1;
                        run_started = Instant::now();
                        heard = false;
                    }
                    Err(e) => bevy::log::error!("captions: {e}"),
                }
            }
        }
    }
    let status = audio.wait().map(|s| s.to_string()).unwrap_or_else(|e| e.to_string());
    bevy::log::info!("captions: the audio input ended ({status}); the last lines complete");
    if let Ok(lines) = recogniser.finish() {
        send(numbered(run, lines), &tx, &doorbell);
    }
}
