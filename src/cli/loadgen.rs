//! A load generator for the audience edge (docs/protocol.md, `ws://ADDR/ws`).
//!
//! [`run`] opens `active + idle` WebSocket connections to a server on **this machine only**
//! (a non-loopback address is refused: the tool must not be usable to flood third parties),
//! says `hello` on each, then lets the active ones chat at a steady rate for a while, and
//! reports what it saw in a [`LoadReport`]:
//!
//! * the client's side: connections welcomed or failed (by reason), the most open at once,
//!   messages sent and the rate achieved, every incoming frame counted by `type` and every
//!   `error` by `code`, and the round trip of a few *probe* lines (sent → own `chat` echo);
//! * the server's side, from `/metrics` scraped before and after: messages in, accepted,
//!   rejected by reason, dropped, commands applied, and receipt-to-applied latency quantiles
//!   estimated from the histogram;
//! * optionally the server's resident memory (`/proc/PID/status`), before connecting, once
//!   every connection is open (hence bytes per connection), and at the end of the load.
//!
//! The run has three phases. **Connect**: connection `i` of `n` starts at `ramp · i / n`, at
//! most `connect_concurrency` handshakes at a time; each must be welcomed within
//! [`CONNECT_TIMEOUT`]. **Load**: once every connection is welcomed or has failed, active
//! connections send for `duration`. **Drain**: [`DRAIN`] more for echoes and replies, then every
//! connection sends a Close frame and waits at most [`CLOSE_TIMEOUT`] for the answer. Every wait
//! has a time limit, and whatever is still running after the last one is aborted.
//!
//! Every connection reads and discards incoming frames all the time, otherwise the server's
//! socket buffers fill and the run measures back-pressure instead of the server. Counting a
//! frame costs a prefix comparison (the server writes `type` first), not a JSON parse.
//!
//! `run` is only `async`: the caller provides the runtime, which should be a multi-threaded
//! tokio runtime (one task per connection).

use std::borrow::Cow;
use std::collections::{BTreeMap, VecDeque};
use std::fmt::Write as _;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::stream::{SplitSink, SplitStream};
use futures_util::{SinkExt, StreamExt};
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};
use tokio::sync::{Notify, Semaphore, watch};
use tokio::time::{Instant, MissedTickBehavior, timeout, timeout_at};
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::error::ProtocolError;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::{CloseFrame, WebSocketConfig};
use tokio_tungstenite::tungstenite::{Error as WsError, Message, Utf8Bytes};

/// Time allowed for one connection's TCP connect, WebSocket handshake and `welcome`.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// A probe whose echo has not come back within this time counts as lost.
pub const PROBE_TIMEOUT: Duration = Duration::from_secs(2);
/// Time after the load during which connections stay open and keep reading (at least
/// [`PROBE_TIMEOUT`], so that every probe gets its full chance).
pub const DRAIN: Duration = Duration::from_millis(2500);
/// Time allowed for the closing handshake of each connection.
pub const CLOSE_TIMEOUT: Duration = Duration::from_secs(1);
/// A send this late (after its scheduled tick) counts in [`LoadReport::late_sends`].
pub const LATE_TICK: Duration = Duration::from_millis(10);
/// Time allowed for one `/metrics` scrape.
pub const SCRAPE_TIMEOUT: Duration = Duration::from_secs(5);
/// Most connections one run may open.
pub const MAX_CONNECTIONS: u32 = 50_000;
/// Most chat lines per second one connection may be asked to send.
pub const MAX_RATE_PER_CONN: f64 = 100.0;
/// Longest load phase.
pub const MAX_DURATION: Duration = Duration::from_secs(3600);
/// One probe connection per this many active connections (at least one).
pub const ACTIVE_PER_PROBE: u32 = 1000;

/// Largest `/metrics` response read.
const SCRAPE_MAX_BYTES: u64 = 4 << 20;
/// Probes remembered per probe connection while waiting for their echo.
const MAX_PENDING_PROBES: usize = 64;
/// Marks a probe line: `probe6k<conn>k<seq>k …`. The `6` is a digit the blocklist treats as a
/// foreign letter in the middle of the word, so the token can never spell a blocked word.
const PROBE_MARK: &str = "probe6k";

/// Harmless chat lines the generator sends (each at most 100 characters, none with a blocked
/// word); a few suffixes vary them further.
pub const CHAT_TEXTS: &[&str] = &[
    "bravo",
    "what a lovely evening",
    "the lights look amazing tonight",
    "encore, encore",
    "merci beaucoup",
    "this music is great",
    "hello from the back row",
    "so beautiful",
    "love the colours",
    "wow",
    "magnifique",
    "the fog is just perfect",
    "can we have more blue please",
    "amazing show",
    "clap clap clap",
    "greetings from the balcony",
    "c'est superbe",
    "what a view from up here",
    "that was wonderful",
    "more please",
    "hi everyone",
    "the stage looks great",
    "such a nice atmosphere",
    "thank you to the artists",
    "brilliant",
    "this is so much fun",
    "sending good vibes to everyone in the room",
    "lovely sound",
    "great performance",
    "bonsoir tout le monde",
    "quelle belle soirée",
    "calm and nice, I like it",
];

/// Endings appended to [`CHAT_TEXTS`] to vary the lines.
const SUFFIXES: [&str; 4] = ["", " :)", " !!", " 🎶"];

/// Frame types of the audience protocol, counted without allocating.
const TYPES: [&str; 8] = ["welcome", "state", "chat", "retract", "effect", "poll", "notice", "error"];
/// Error codes of the audience protocol, counted without allocating.
const CODES: [&str; 17] = [
    "bad_json",
    "unknown_type",
    "bad_field",
    "hello_required",
    "empty",
    "too_long",
    "blocked_word",
    "rate_limited",
    "slow_mode",
    "timed_out",
    "banned",
    "not_allowed",
    "no_poll",
    "bad_option",
    "bad_value",
    "busy",
    "binary_not_supported",
];

/// What to run.
#[derive(Debug, Clone)]
pub struct LoadConfig {
    /// The audience edge; must be a loopback address. The WebSocket is `ws://addr/ws` and the
    /// metrics `http://addr/metrics`.
    pub addr: SocketAddr,
    /// Connections that chat.
    pub active: u32,
    /// Connections that only say `hello` and then stay idle (still reading).
    pub idle: u32,
    /// Chat lines per second sent by each active connection.
    pub rate_per_conn: f64,
    /// Length of the load phase (after every connection is open).
    pub duration: Duration,
    /// Share of chat lines that are `command_text` instead of ordinary chat, from 0 to 1.
    pub command_share: f64,
    /// The venue command sent as a chat line, e.g. `!fog 0.1`.
    pub command_text: String,
    /// Time over which the connections are opened.
    pub ramp: Duration,
    /// Most connection handshakes in progress at once.
    pub connect_concurrency: usize,
    /// The server's process id, to sample its resident memory (Linux `/proc`).
    pub server_pid: Option<u32>,
    /// Connections per loopback source address. Connections are spread over 127.1.0.1,
    /// 127.1.0.2, … (all of 127.0.0.0/8 is this machine), so that a server's per-address limits
    /// (parvis: `--max-per-address` 256 connections and `--address-rate` 100 messages per 10 s
    /// by default) see them as separate people. Keep `per_source_address × rate_per_conn`
    /// under the per-address rate to measure the server rather than that limit. 0: every
    /// connection from the system's default address. IPv4 targets only.
    pub per_source_address: u32,
}

impl LoadConfig {
    /// A modest load: 100 active connections at 0.5 lines per second (half the default rate
    /// limit of 10 lines per 10 s), no idle ones, 10 s, 5 % of lines `!fog 0.1`, opened over
    /// 2 s with 64 handshakes at a time.
    pub fn new(addr: SocketAddr) -> Self {
        Self {
            addr,
            active: 100,
            idle: 0,
            rate_per_conn: 0.5,
            duration: Duration::from_secs(10),
            command_share: 0.05,
            command_text: "!fog 0.1".to_owned(),
            ramp: Duration::from_secs(2),
            connect_concurrency: 64,
            server_pid: None,
            per_source_address: 8,
        }
    }

    /// Checks the configuration; the address check is the loopback safety rule.
    pub fn validate(&self) -> Result<(), LoadError> {
        if !self.addr.ip().to_canonical().is_loopback() {
            return Err(LoadError::NotLoopback(self.addr));
        }
        let invalid = |what: &str| Err(LoadError::InvalidConfig(what.to_owned()));
        let total = u64::from(self.active) + u64::from(self.idle);
        if total == 0 {
            return invalid("no connections to open");
        }
        if total > u64::from(MAX_CONNECTIONS) {
            return Err(LoadError::InvalidConfig(format!("{total} connections; at most {MAX_CONNECTIONS}")));
        }
        if self.active > 0 && !(self.rate_per_conn > 0.0 && self.rate_per_conn <= MAX_RATE_PER_CONN) {
            return Err(LoadError::InvalidConfig(format!("rate_per_conn must be in (0, {MAX_RATE_PER_CONN}]")));
        }
        if !(0.0..=1.0).contains(&self.command_share) {
            return invalid("command_share must be between 0 and 1");
        }
        if self.command_share > 0.0 && (self.command_text.trim().is_empty() || self.command_text.chars().count() > 100)
        {
            return invalid("command_text must have 1 to 100 characters");
        }
        if self.duration.is_zero() || self.duration > MAX_DURATION {
            return invalid("duration must be more than 0 and at most an hour");
        }
        if self.ramp > MAX_DURATION {
            return invalid("ramp must be at most an hour");
        }
        if self.connect_concurrency == 0 {
            return invalid("connect_concurrency must be at least 1");
        }
        Ok(())
    }
}

/// Why a run could not start.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// The target is not on this machine.
    #[error("refusing to load {0}: the load generator only targets loopback addresses")]
    NotLoopback(SocketAddr),
    /// A setting is out of range.
    #[error("invalid load configuration: {0}")]
    InvalidConfig(String),
    /// This process may not open enough files for the connections.
    #[error("{needed} file descriptors needed but the limit is {limit}; raise `ulimit -n` or open fewer connections")]
    FdLimit {
        /// Descriptors the run needs (connections, the ones already open, and a margin).
        needed: u64,
        /// The soft limit of this process.
        limit: u64,
    },
}

/// The server's counters over the load, from `/metrics`. A metric the server does not expose
/// is `None`. Per-second rates divide by the load phase's length, although the "after" scrape
/// comes at the end of the drain so that late messages are counted.
#[derive(Debug, Clone, Default, Serialize)]
pub struct ServerDeltas {
    /// Text frames received after `hello` (`parvis_audience_messages_total`).
    pub messages_in: Option<u64>,
    /// Messages passed to the venue.
    pub accepted: Option<u64>,
    /// Messages refused, all reasons.
    pub rejected: Option<u64>,
    /// Messages refused, by reason (only reasons that changed).
    pub rejected_by_reason: BTreeMap<String, u64>,
    /// Messages dropped because the venue's queue was full.
    pub dropped_inbound: Option<u64>,
    /// Messages slow clients skipped, or replies dropped.
    pub dropped_outbound: Option<u64>,
    /// Chat lines over the server's display rate, sent to their sender only
    /// (`parvis_audience_chat_unshown_total`).
    pub chat_unshown: Option<u64>,
    /// Venue commands caused by the audience and applied.
    pub commands_applied: Option<u64>,
    /// Connections that said hello, over the whole run (connect phase included).
    pub connections: Option<u64>,
    /// Connections the server refused (full, or too many from one address), over the whole run.
    pub connections_refused: Option<u64>,
    /// Members the server counted as connected when the load started.
    pub connected_at_start: Option<u64>,
    /// Events waiting for the venue at the end of the drain.
    pub queue_depth_end: Option<u64>,
    /// `messages_in` per second of load.
    pub messages_in_per_s: Option<f64>,
    /// `accepted` per second of load.
    pub accepted_per_s: Option<f64>,
    /// `commands_applied` per second of load.
    pub commands_applied_per_s: Option<f64>,
    /// Observations of the receipt-to-applied histogram during the load.
    pub latency_count: Option<u64>,
    /// Median receipt-to-applied latency, estimated from the histogram's buckets.
    pub latency_p50_ms: Option<f64>,
    /// 99th percentile receipt-to-applied latency, estimated from the histogram's buckets.
    pub latency_p99_ms: Option<f64>,
    /// Median of the same latency in venue frames (1: applied in the next frame).
    pub latency_p50_frames: Option<f64>,
    /// 99th percentile of the same latency in venue frames.
    pub latency_p99_frames: Option<f64>,
}

/// Round trips of probe lines: sent → their own `chat` echo.
#[derive(Debug, Clone, Default, Serialize)]
pub struct ProbeReport {
    /// Connections that sent probes.
    pub connections: u32,
    /// Probe lines sent.
    pub sent: u64,
    /// Probes echoed within [`PROBE_TIMEOUT`].
    pub echoed: u64,
    /// Probes with no echo within [`PROBE_TIMEOUT`] (refused and late ones included).
    pub lost: u64,
    /// Lost probes whose echo came, but late.
    pub late: u64,
    /// Lost probes the server answered with an `error` (rate limit, busy…).
    pub refused: u64,
    /// Median round trip.
    pub rtt_p50_ms: Option<f64>,
    /// 99th percentile round trip.
    pub rtt_p99_ms: Option<f64>,
    /// Longest round trip.
    pub rtt_max_ms: Option<f64>,
}

/// What a run measured.
#[derive(Debug, Clone, Serialize)]
pub struct LoadReport {
    /// Target address.
    pub addr: String,
    /// Active connections asked for.
    pub active: u32,
    /// Idle connections asked for.
    pub idle: u32,
    /// Lines per second per active connection asked for.
    pub rate_per_conn: f64,
    /// Share of lines that were commands, asked for.
    pub command_share: f64,
    /// The command line sent.
    pub command_text: String,
    /// Connections attempted.
    pub connections_attempted: u64,
    /// Connections that got `welcome`.
    pub connections_welcomed: u64,
    /// Connections that did not.
    pub connections_failed: u64,
    /// Failed connections by reason (`tcp_refused`, `timeout_welcome`, `hello_refused_<code>`…).
    pub connect_failures: BTreeMap<String, u64>,
    /// Most connections welcomed and open at the same time.
    pub max_concurrent: u64,
    /// Time from the first connection attempt until every connection was welcomed or failed.
    pub connect_phase_s: f64,
    /// Connections the server ended before the run closed them, by reason (`close_1008`…).
    pub disconnects: BTreeMap<String, u64>,
    /// Length of the load phase (`duration`); rates divide by it.
    pub load_s: f64,
    /// Chat lines sent (commands and probes included).
    pub sent: u64,
    /// Of which venue commands.
    pub sent_commands: u64,
    /// Sends that failed (connection gone).
    pub send_errors: u64,
    /// Lines per second asked for (welcomed active connections × rate).
    pub target_per_s: f64,
    /// Lines per second achieved.
    pub sent_per_s: f64,
    /// Sends that started more than [`LATE_TICK`] after their scheduled time: the client was
    /// short of CPU. Sends more than a period late are skipped, not made up in a burst.
    pub late_sends: u64,
    /// The latest any send started after its scheduled time.
    pub max_send_lag_ms: f64,
    /// Frames received over the whole run, all types.
    pub received: u64,
    /// `received` divided by the load phase's length (the few frames of the connect phase and
    /// the drain are included).
    pub received_per_s: f64,
    /// Frames received by `type` (`other` for unparsable ones, `non_text` for binary).
    pub received_by_type: BTreeMap<String, u64>,
    /// `error` frames by `code`.
    pub errors_by_code: BTreeMap<String, u64>,
    /// Probe round trips.
    pub probes: ProbeReport,
    /// The server's counters; `None` when `/metrics` could not be read.
    pub server: Option<ServerDeltas>,
    /// Why `/metrics` could not be read, if it could not.
    pub metrics_error: Option<String>,
    /// Server RSS before connecting.
    pub rss_before_bytes: Option<u64>,
    /// Server RSS once every connection was open, before sending.
    pub rss_connected_bytes: Option<u64>,
    /// Server RSS at the end of the load phase.
    pub rss_end_bytes: Option<u64>,
    /// (connected − before) / welcomed connections.
    pub rss_bytes_per_connection: Option<f64>,
    /// CPU time the server used during the load phase (user + system, all its threads).
    pub server_cpu_s: Option<f64>,
    /// Server CPU time per message received, in microseconds: with the load generator on the
    /// same machine, the server's own cost, whatever the pair's ceiling.
    pub server_cpu_us_per_message: Option<f64>,
}

/// CPU time a process has used so far (user + system, `/proc/PID/stat`), if readable.
pub fn process_cpu_seconds(pid: u32) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name may hold spaces and parentheses: fields are counted after the last ')'.
    let mut fields = stat[stat.rfind(')')? + 1..].split_whitespace();
    let utime: u64 = fields.nth(11)?.parse().ok()?;
    let stime: u64 = fields.next()?.parse().ok()?;
    // /proc reports times in USER_HZ ticks, which Linux fixes at 100 as part of its ABI.
    Some((utime + stime) as f64 / 100.0)
}

/// The resident memory of a process (`VmRSS` in `/proc/PID/status`), if readable.
pub fn process_rss_bytes(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    let mut words = line["VmRSS:".len()..].split_whitespace();
    let value: u64 = words.next()?.parse().ok()?;
    let unit = match words.next() {
        Some("kB") | None => 1024,
        Some("mB") => 1 << 20,
        Some(_) => return None,
    };
    value.checked_mul(unit)
}

/// Runs a load against the audience edge at `cfg.addr` and reports what happened.
///
/// Fails only before any connection is opened (bad configuration, non-loopback address, too
/// few file descriptors); everything that goes wrong afterwards is counted in the report.
pub async fn run(cfg: LoadConfig) -> Result<LoadReport, LoadError> {
    cfg.validate()?;
    let total = cfg.active + cfg.idle;
    check_fd_limit(total)?;

    let rss = || cfg.server_pid.and_then(process_rss_bytes);
    let rss_before = rss();
    let mut metrics_errors = Vec::new();
    let mut scrape = async |what: &str| match scrape_metrics(cfg.addr).await {
        Ok(m) => Some(m),
        Err(e) => {
            metrics_errors.push(format!("{what}: {e}"));
            None
        }
    };
    let m_before_connect = scrape("before connecting").await;

    let t0 = Instant::now();
    let settle_deadline = t0 + cfg.ramp + 2 * CONNECT_TIMEOUT;
    let hard_deadline = settle_deadline + CONNECT_TIMEOUT + cfg.duration + DRAIN + CLOSE_TIMEOUT;
    let probes = if cfg.active == 0 { 0 } else { cfg.active.div_ceil(ACTIVE_PER_PROBE) };
    let ctx = Arc::new(Ctx {
        shared: Shared::default(),
        addr: cfg.addr,
        per_source_address: if cfg.addr.is_ipv4() { cfg.per_source_address } else { 0 },
        url: format!("ws://{}/ws", cfg.addr),
        sem: Semaphore::new(cfg.connect_concurrency),
        chat_frames: chat_frames(),
        command_frame: chat_frame(&cfg.command_text),
        period: if cfg.active > 0 { Duration::from_secs_f64(1.0 / cfg.rate_per_conn) } else { Duration::from_secs(1) },
        command_share: cfg.command_share,
        settle_deadline,
        hard_deadline,
        total,
    });

    let (phase_tx, phase_rx) = watch::channel(None::<Phase>);
    let probe_every = cfg.active.checked_div(probes).unwrap_or(u32::MAX);
    let mut handles = Tasks(Vec::with_capacity(total as usize));
    for n in 0..total {
        let role = if n < cfg.active {
            Role::Active { probe: probe_every != u32::MAX && n % probe_every == 0 && n / probe_every < probes }
        } else {
            Role::Idle
        };
        let slot = t0 + cfg.ramp.mul_f64(f64::from(n) / f64::from(total));
        handles.0.push(tokio::spawn(connection(n, role, ctx.clone(), slot, phase_rx.clone())));
    }
    drop(phase_rx);

    // Connect phase: wait until every connection is welcomed or has failed.
    let shared = &ctx.shared;
    while shared.settled.load(Ordering::Acquire) < total {
        if timeout_at(settle_deadline + CONNECT_TIMEOUT, shared.settled_notify.notified()).await.is_err() {
            break;
        }
    }
    let connect_phase = t0.elapsed();
    let rss_connected = rss();
    let m_start = scrape("at load start").await;
    let cpu = || cfg.server_pid.and_then(process_cpu_seconds);
    let cpu_start = cpu();

    // Load phase, then drain.
    let start = Instant::now() + Duration::from_millis(50);
    let end = start + cfg.duration;
    let close_at = end + DRAIN;
    let _ = phase_tx.send(Some(Phase { start, end, close_at }));
    tokio::time::sleep_until(end).await;
    let rss_end = rss();
    let server_cpu_s = cpu().zip(cpu_start).map(|(end, start)| end - start);
    tokio::time::sleep_until(close_at).await;
    let m_end = scrape("after the drain").await;

    // Close: every connection sends Close and waits for the answer; stragglers are aborted.
    let join_deadline = close_at + 2 * CLOSE_TIMEOUT + Duration::from_millis(500);
    for handle in &mut handles.0 {
        if timeout_at(join_deadline, &mut *handle).await.is_err() {
            handle.abort();
            let _ = handle.await;
        }
    }
    drop(phase_tx);

    let load_s = (end - start).as_secs_f64();
    let server = match (m_start.as_ref().or(m_before_connect.as_ref()), m_end.as_ref()) {
        (Some(before), Some(after)) => {
            Some(server_deltas(m_before_connect.as_ref().unwrap_or(before), before, after, load_s))
        }
        _ => None,
    };
    let metrics_error = (!metrics_errors.is_empty()).then(|| metrics_errors.join("; "));
    let welcomed = shared.welcomed.load(Ordering::Relaxed);
    let active_welcomed = shared.active_welcomed.load(Ordering::Relaxed);
    Ok(build_report(
        &cfg,
        shared,
        Measured {
            probes,
            welcomed,
            active_welcomed,
            connect_phase,
            load_s,
            server,
            metrics_error,
            rss_before,
            rss_connected,
            rss_end,
            server_cpu_s,
        },
    ))
}

/// The connection tasks; dropping this (the run's future was dropped) aborts them all.
struct Tasks(Vec<tokio::task::JoinHandle<()>>);

impl Drop for Tasks {
    fn drop(&mut self) {
        for handle in &self.0 {
            handle.abort();
        }
    }
}

struct Measured {
    probes: u32,
    welcomed: u64,
    active_welcomed: u64,
    connect_phase: Duration,
    load_s: f64,
    server: Option<ServerDeltas>,
    metrics_error: Option<String>,
    rss_before: Option<u64>,
    rss_connected: Option<u64>,
    rss_end: Option<u64>,
    server_cpu_s: Option<f64>,
}

fn build_report(cfg: &LoadConfig, shared: &Shared, m: Measured) -> LoadReport {
    let load = |a: &AtomicU64| a.load(Ordering::Relaxed);
    let mut received_by_type = BTreeMap::new();
    for (name, count) in TYPES.iter().zip(&shared.types) {
        if load(count) > 0 {
            received_by_type.insert((*name).to_owned(), load(count));
        }
    }
    for (name, count) in lock(&shared.other_types).iter() {
        *received_by_type.entry(name.clone()).or_default() += count;
    }
    if load(&shared.non_text) > 0 {
        received_by_type.insert("non_text".to_owned(), load(&shared.non_text));
    }
    let mut errors_by_code = BTreeMap::new();
    for (name, count) in CODES.iter().zip(&shared.codes) {
        if load(count) > 0 {
            errors_by_code.insert((*name).to_owned(), load(count));
        }
    }
    for (name, count) in lock(&shared.other_codes).iter() {
        *errors_by_code.entry(name.clone()).or_default() += count;
    }
    let received: u64 = received_by_type.values().sum();
    let mut rtts = std::mem::take(&mut *lock(&shared.rtts_us));
    rtts.sort_unstable();
    let ms = |us: u64| us as f64 / 1000.0;
    let probes = ProbeReport {
        connections: m.probes,
        sent: load(&shared.probes_sent),
        echoed: rtts.len() as u64,
        lost: load(&shared.probes_lost),
        late: load(&shared.probes_late),
        refused: load(&shared.probes_refused),
        rtt_p50_ms: nearest_rank(&rtts, 0.5).map(ms),
        rtt_p99_ms: nearest_rank(&rtts, 0.99).map(ms),
        rtt_max_ms: rtts.last().copied().map(ms),
    };
    let attempted = u64::from(cfg.active) + u64::from(cfg.idle);
    let failures = lock(&shared.failures).clone();
    let sent = load(&shared.sent);
    let per_s = |n: u64| if m.load_s > 0.0 { n as f64 / m.load_s } else { 0.0 };
    let rss_per_conn = match (m.rss_before, m.rss_connected) {
        (Some(b), Some(c)) if m.welcomed > 0 => Some((c as f64 - b as f64) / m.welcomed as f64),
        _ => None,
    };
    LoadReport {
        addr: cfg.addr.to_string(),
        active: cfg.active,
        idle: cfg.idle,
        rate_per_conn: cfg.rate_per_conn,
        command_share: cfg.command_share,
        command_text: cfg.command_text.clone(),
        connections_attempted: attempted,
        connections_welcomed: m.welcomed,
        connections_failed: failures.values().sum(),
        connect_failures: failures,
        max_concurrent: load(&shared.max_open),
        connect_phase_s: m.connect_phase.as_secs_f64(),
        disconnects: lock(&shared.disconnects).clone(),
        load_s: m.load_s,
        sent,
        sent_commands: load(&shared.sent_commands),
        send_errors: load(&shared.send_errors),
        target_per_s: m.active_welcomed as f64 * cfg.rate_per_conn,
        sent_per_s: per_s(sent),
        late_sends: load(&shared.late_ticks),
        max_send_lag_ms: ms(load(&shared.max_lag_us)),
        received,
        received_per_s: per_s(received),
        received_by_type,
        errors_by_code,
        probes,
        server: m.server.clone(),
        metrics_error: m.metrics_error,
        rss_before_bytes: m.rss_before,
        rss_connected_bytes: m.rss_connected,
        rss_end_bytes: m.rss_end,
        rss_bytes_per_connection: rss_per_conn,
        server_cpu_s: m.server_cpu_s,
        server_cpu_us_per_message: m
            .server_cpu_s
            .zip(m.server.as_ref().and_then(|s| s.messages_in))
            .filter(|(_, n)| *n > 0)
            .map(|(cpu, n)| cpu * 1e6 / n as f64),
    }
}

impl LoadReport {
    /// A compact Markdown table of the run, for docs/benchmarks.md.
    pub fn to_markdown(&self) -> String {
        let mut out = String::with_capacity(2048);
        let opt = |v: Option<f64>, unit: &str| v.map_or_else(|| "n/a".to_owned(), |v| format!("{v:.1}{unit}"));
        let optu = |v: Option<u64>| v.map_or_else(|| "n/a".to_owned(), |v| v.to_string());
        let map = |m: &BTreeMap<String, u64>| {
            if m.is_empty() {
                "none".to_owned()
            } else {
                m.iter().map(|(k, v)| format!("{k} {v}")).collect::<Vec<_>>().join(", ")
            }
        };
        let mib = |b: Option<u64>| b.map_or_else(|| "n/a".to_owned(), |b| format!("{:.1} MiB", b as f64 / 1048576.0));
        let _ = writeln!(out, "| measure | value |\n|---|---|");
        let _ = writeln!(
            out,
            "| load | {} active + {} idle connections to {}, {} lines/s each for {:.1} s, {:.0} % `{}` |",
            self.active,
            self.idle,
            self.addr,
            self.rate_per_conn,
            self.load_s,
            self.command_share * 100.0,
            self.command_text.replace('|', "\\|"),
        );
        let _ = writeln!(
            out,
            "| connections | {} of {} welcomed in {:.1} s, at most {} open at once; failed: {}; dropped by the server: {} |",
            self.connections_welcomed,
            self.connections_attempted,
            self.connect_phase_s,
            self.max_concurrent,
            map(&self.connect_failures),
            map(&self.disconnects),
        );
        let _ = writeln!(
            out,
            "| sent | {} lines ({} commands), {:.0}/s of {:.0}/s asked; {} send errors; client lag: {} sends over {} ms late, max {:.1} ms |",
            self.sent,
            self.sent_commands,
            self.sent_per_s,
            self.target_per_s,
            self.send_errors,
            self.late_sends,
            LATE_TICK.as_millis(),
            self.max_send_lag_ms,
        );
        match &self.server {
            Some(s) => {
                let _ = writeln!(
                    out,
                    "| server: in / accepted / rejected / dropped | {} / {} ({}/s) / {} / {} in, {} out; {} lines shown to their sender only; {} connections refused |",
                    optu(s.messages_in),
                    optu(s.accepted),
                    opt(s.accepted_per_s, ""),
                    optu(s.rejected),
                    optu(s.dropped_inbound),
                    optu(s.dropped_outbound),
                    optu(s.chat_unshown),
                    optu(s.connections_refused),
                );
                let _ = writeln!(out, "| server: rejected by reason | {} |", map(&s.rejected_by_reason));
                let _ = writeln!(
                    out,
                    "| server: commands applied, receipt → applied | {} ({}/s), p50 {}, p99 {}; in venue frames p50 {}, p99 {} (histogram estimates) |",
                    optu(s.commands_applied),
                    opt(s.commands_applied_per_s, ""),
                    opt(s.latency_p50_ms, " ms"),
                    opt(s.latency_p99_ms, " ms"),
                    opt(s.latency_p50_frames, ""),
                    opt(s.latency_p99_frames, ""),
                );
            }
            None => {
                let _ =
                    writeln!(out, "| server metrics | unavailable: {} |", self.metrics_error.as_deref().unwrap_or("?"));
            }
        }
        let p = &self.probes;
        let _ = writeln!(
            out,
            "| probe round trip (send → own echo) | p50 {}, p99 {}, max {}; {} of {} without echo in {} s ({} refused, {} late) |",
            opt(p.rtt_p50_ms, " ms"),
            opt(p.rtt_p99_ms, " ms"),
            opt(p.rtt_max_ms, " ms"),
            p.lost,
            p.sent,
            PROBE_TIMEOUT.as_secs(),
            p.refused,
            p.late,
        );
        let _ = writeln!(
            out,
            "| received | {} frames ({:.0}/s): {} |",
            self.received,
            self.received_per_s,
            map(&self.received_by_type)
        );
        let _ = writeln!(out, "| errors received | {} |", map(&self.errors_by_code));
        if self.rss_before_bytes.is_some() || self.rss_end_bytes.is_some() {
            let _ = writeln!(
                out,
                "| server RSS | {} before, {} connected ({} per connection), {} at the end |",
                mib(self.rss_before_bytes),
                mib(self.rss_connected_bytes),
                self.rss_bytes_per_connection.map_or_else(|| "n/a".to_owned(), |b| format!("{:.1} KiB", b / 1024.0)),
                mib(self.rss_end_bytes),
            );
        }
        if let Some(cpu) = self.server_cpu_s {
            let _ = writeln!(
                out,
                "| server CPU during the load | {cpu:.2} s over {:.1} s ({:.0} % of one core); {} per message received |",
                self.load_s,
                100.0 * cpu / self.load_s.max(1e-9),
                self.server_cpu_us_per_message.map_or_else(|| "n/a".to_owned(), |us| format!("{us:.1} µs")),
            );
        }
        out
    }
}

// ---------------------------------------------------------------------------------------------
// Connections

/// When the load starts and ends, decided once every connection is open.
#[derive(Debug, Clone, Copy)]
struct Phase {
    start: Instant,
    end: Instant,
    close_at: Instant,
}

#[derive(Debug, Clone, Copy)]
enum Role {
    Active { probe: bool },
    Idle,
}

/// What every connection task shares.
struct Ctx {
    shared: Shared,
    addr: SocketAddr,
    per_source_address: u32,
    url: String,
    sem: Semaphore,
    /// Prepared `chat` frames: cloning one is a reference count, not an allocation.
    chat_frames: Vec<Utf8Bytes>,
    command_frame: Utf8Bytes,
    period: Duration,
    command_share: f64,
    /// After this, a connection still waiting for its turn gives up.
    settle_deadline: Instant,
    /// Nothing runs past this.
    hard_deadline: Instant,
    total: u32,
}

/// Totals, added to by each connection when it ends (see [`ConnStats`]).
#[derive(Default)]
struct Shared {
    types: [AtomicU64; TYPES.len()],
    codes: [AtomicU64; CODES.len()],
    other_types: Mutex<BTreeMap<String, u64>>,
    other_codes: Mutex<BTreeMap<String, u64>>,
    non_text: AtomicU64,
    sent: AtomicU64,
    sent_commands: AtomicU64,
    send_errors: AtomicU64,
    probes_sent: AtomicU64,
    probes_lost: AtomicU64,
    probes_late: AtomicU64,
    probes_refused: AtomicU64,
    late_ticks: AtomicU64,
    max_lag_us: AtomicU64,
    rtts_us: Mutex<Vec<u64>>,
    welcomed: AtomicU64,
    active_welcomed: AtomicU64,
    open: AtomicU64,
    max_open: AtomicU64,
    settled: AtomicU32,
    settled_notify: Notify,
    failures: Mutex<BTreeMap<String, u64>>,
    disconnects: Mutex<BTreeMap<String, u64>>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl Shared {
    fn settle(&self, total: u32) {
        if self.settled.fetch_add(1, Ordering::AcqRel) + 1 >= total {
            self.settled_notify.notify_one();
        }
    }

    fn fail(&self, reason: impl Into<String>, total: u32) {
        *lock(&self.failures).entry(reason.into()).or_default() += 1;
        self.settle(total);
    }
}

/// One connection's counts, kept locally and added to [`Shared`] once, when dropped (also when
/// the task is aborted).
struct ConnStats {
    ctx: Arc<Ctx>,
    rx: Incoming,
    tx: Outgoing,
}

#[derive(Default)]
struct Incoming {
    types: [u64; TYPES.len()],
    codes: [u64; CODES.len()],
    other_types: Vec<String>,
    other_codes: Vec<String>,
    non_text: u64,
    rtts_us: Vec<u64>,
    probes_lost: u64,
    probes_late: u64,
    probes_refused: u64,
}

#[derive(Default)]
struct Outgoing {
    sent: u64,
    sent_commands: u64,
    send_errors: u64,
    probes_sent: u64,
    /// Probes dropped from the waiting list while too many were unanswered (lost).
    probes_given_up: u64,
    late_ticks: u64,
    max_lag: Duration,
}

impl Drop for ConnStats {
    fn drop(&mut self) {
        let s = &self.ctx.shared;
        let add = |a: &AtomicU64, n: u64| {
            if n > 0 {
                a.fetch_add(n, Ordering::Relaxed);
            }
        };
        for (a, n) in s.types.iter().zip(self.rx.types) {
            add(a, n);
        }
        for (a, n) in s.codes.iter().zip(self.rx.codes) {
            add(a, n);
        }
        if !self.rx.other_types.is_empty() {
            let mut map = lock(&s.other_types);
            for t in self.rx.other_types.drain(..) {
                *map.entry(t).or_default() += 1;
            }
        }
        if !self.rx.other_codes.is_empty() {
            let mut map = lock(&s.other_codes);
            for c in self.rx.other_codes.drain(..) {
                *map.entry(c).or_default() += 1;
            }
        }
        add(&s.non_text, self.rx.non_text);
        add(&s.probes_lost, self.rx.probes_lost + self.tx.probes_given_up);
        add(&s.probes_late, self.rx.probes_late);
        add(&s.probes_refused, self.rx.probes_refused);
        if !self.rx.rtts_us.is_empty() {
            lock(&s.rtts_us).append(&mut self.rx.rtts_us);
        }
        add(&s.sent, self.tx.sent);
        add(&s.sent_commands, self.tx.sent_commands);
        add(&s.send_errors, self.tx.send_errors);
        add(&s.probes_sent, self.tx.probes_sent);
        add(&s.late_ticks, self.tx.late_ticks);
        s.max_lag_us.fetch_max(u64::try_from(self.tx.max_lag.as_micros()).unwrap_or(u64::MAX), Ordering::Relaxed);
    }
}

/// Counts a connection as open while it lives.
struct OpenGuard<'a>(&'a Shared);

impl<'a> OpenGuard<'a> {
    fn new(shared: &'a Shared) -> Self {
        let now = shared.open.fetch_add(1, Ordering::Relaxed) + 1;
        shared.max_open.fetch_max(now, Ordering::Relaxed);
        shared.welcomed.fetch_add(1, Ordering::Relaxed);
        Self(shared)
    }
}

impl Drop for OpenGuard<'_> {
    fn drop(&mut self) {
        self.0.open.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Probe lines sent and not yet echoed: (sequence number, when sent).
type Pending = Mutex<VecDeque<(u64, Instant)>>;

type Socket = WebSocketStream<TcpStream>;

pub(super) fn ws_config() -> WebSocketConfig {
    WebSocketConfig::default()
        .read_buffer_size(4 << 10)
        .max_message_size(Some(64 << 10))
        .max_frame_size(Some(64 << 10))
        .write_buffer_size(0)
        .max_write_buffer_size(64 << 10)
}

/// Low-discrepancy fraction for connection `n` (golden ratio sequence): spreads start times and
/// command turns evenly over connections without a random number generator.
fn spread(n: u32) -> f64 {
    (f64::from(n) * 0.618_033_988_749_895).fract()
}

async fn connection(n: u32, role: Role, ctx: Arc<Ctx>, slot: Instant, phase: watch::Receiver<Option<Phase>>) {
    let mut stats = ConnStats { ctx: ctx.clone(), rx: Incoming::default(), tx: Outgoing::default() };
    let shared = &ctx.shared;
    tokio::time::sleep_until(slot).await;
    let Ok(Ok(permit)) = timeout_at(ctx.settle_deadline, ctx.sem.acquire()).await else {
        return shared.fail("not_started", ctx.total);
    };
    let socket = match open(n, &ctx, &mut stats.rx).await {
        Ok(socket) => socket,
        Err(reason) => return shared.fail(reason, ctx.total),
    };
    drop(permit);
    let _open = OpenGuard::new(shared);
    if matches!(role, Role::Active { .. }) {
        shared.active_welcomed.fetch_add(1, Ordering::Relaxed);
    }
    shared.settle(ctx.total);

    let (mut sink, mut stream) = socket.split();
    let pending = match role {
        Role::Active { probe: true } => Some(Pending::default()),
        _ => None,
    };
    let ended = {
        let reader = read_loop(n, &mut stream, &mut stats.rx, pending.as_ref(), phase.clone(), ctx.hard_deadline);
        let writer = write_loop(n, role, &ctx, &mut sink, &mut stats.tx, pending.as_ref(), phase);
        tokio::pin!(reader, writer);
        let mut writer_done = false;
        loop {
            tokio::select! {
                ended = &mut reader => break ended,
                () = &mut writer, if !writer_done => writer_done = true,
            }
        }
    };
    // Probes still waiting had their full time (the drain is longer) or lost their connection.
    if let Some(p) = &pending {
        stats.rx.probes_lost += lock(p).len() as u64;
    }
    match ended {
        ReadEnd::Deadline => {
            let close = Message::Close(Some(CloseFrame { code: CloseCode::Normal, reason: "load test over".into() }));
            if matches!(timeout(CLOSE_TIMEOUT, sink.send(close)).await, Ok(Ok(()))) {
                let answer = async {
                    while let Some(Ok(message)) = stream.next().await {
                        if message.is_close() {
                            break;
                        }
                    }
                };
                let _ = timeout(CLOSE_TIMEOUT, answer).await;
            }
        }
        ReadEnd::Gone(reason) => *lock(&shared.disconnects).entry(reason).or_default() += 1,
    }
}

/// Connects, says hello and waits for `welcome`; the error is the failure's label.
async fn open(n: u32, ctx: &Ctx, rx: &mut Incoming) -> Result<Socket, String> {
    let deadline = Instant::now() + CONNECT_TIMEOUT;
    let tcp = match timeout_at(deadline, connect_from(ctx.addr, source_address(n, ctx.per_source_address))).await {
        Err(_) => return Err("timeout_tcp".into()),
        Ok(Err(e)) => return Err(io_label("tcp", &e)),
        Ok(Ok(tcp)) => tcp,
    };
    let _ = tcp.set_nodelay(true);
    let mut socket = match timeout_at(
        deadline,
        tokio_tungstenite::client_async_with_config(ctx.url.as_str(), tcp, Some(ws_config())),
    )
    .await
    {
        Err(_) => return Err("timeout_handshake".into()),
        Ok(Err(e)) => return Err(ws_label("handshake", &e)),
        Ok(Ok((socket, _response))) => socket,
    };
    let hello = format!(r#"{{"type":"hello","v":1,"name":"load{n}"}}"#);
    match timeout_at(deadline, socket.send(Message::text(hello))).await {
        Err(_) => return Err("timeout_hello".into()),
        Ok(Err(e)) => return Err(ws_label("hello", &e)),
        Ok(Ok(())) => {}
    }
    loop {
        let Ok(frame) = timeout_at(deadline, socket.next()).await else {
            return Err("timeout_welcome".into());
        };
        match frame {
            Some(Ok(Message::Text(text))) => match rx.count(&text) {
                Some(Head { ty, .. }) if ty == "welcome" => return Ok(socket),
                Some(Head { ty, code }) if ty == "error" => {
                    return Err(format!("hello_refused_{}", code.as_deref().unwrap_or("unknown")));
                }
                _ => {}
            },
            Some(Ok(Message::Close(frame))) => {
                return Err(frame.map_or_else(
                    || "closed_before_welcome".to_owned(),
                    |f| format!("closed_before_welcome_{}", u16::from(f.code)),
                ));
            }
            Some(Ok(Message::Binary(_))) => rx.non_text += 1,
            Some(Ok(_)) => {}
            Some(Err(e)) => return Err(ws_label("before_welcome", &e)),
            None => return Err("closed_before_welcome".into()),
        }
    }
}

/// The loopback address connection `n` connects from, if connections are spread.
fn source_address(n: u32, per_source_address: u32) -> Option<Ipv4Addr> {
    let index = n.checked_div(per_source_address)?;
    // From 127.1.0.1 up to at most 127.255.255.254: inside 127.0.0.0/8, never its broadcast.
    let base = u32::from(Ipv4Addr::new(127, 1, 0, 1));
    Some(Ipv4Addr::from(base + index.min(0x00fe_fffd)))
}

pub(super) async fn connect_from(addr: SocketAddr, source: Option<Ipv4Addr>) -> std::io::Result<TcpStream> {
    let Some(source) = source else { return TcpStream::connect(addr).await };
    let socket = TcpSocket::new_v4()?;
    socket.bind(SocketAddr::from((source, 0)))?;
    socket.connect(addr).await
}

fn io_label(stage: &str, e: &std::io::Error) -> String {
    use std::io::ErrorKind as K;
    match (e.raw_os_error(), e.kind()) {
        (Some(23 | 24), _) => "fd_exhausted".into(), // ENFILE, EMFILE
        (_, K::ConnectionRefused) => format!("{stage}_refused"),
        (_, K::ConnectionReset) => format!("{stage}_reset"),
        (_, K::AddrNotAvailable) => "no_local_port".into(),
        (_, K::TimedOut) => format!("timeout_{stage}"),
        (_, kind) => format!("{stage}_{kind:?}").to_lowercase(),
    }
}

fn ws_label(stage: &str, e: &WsError) -> String {
    match e {
        WsError::Io(io) => io_label(stage, io),
        WsError::Http(response) => format!("{stage}_http_{}", response.status().as_u16()),
        WsError::ConnectionClosed | WsError::AlreadyClosed => format!("{stage}_closed"),
        WsError::Capacity(_) => format!("{stage}_too_big"),
        // The server closed the socket before answering: refused before the handshake.
        WsError::Protocol(ProtocolError::HandshakeIncomplete) => format!("{stage}_eof"),
        WsError::Protocol(_) => format!("{stage}_protocol"),
        _ => format!("{stage}_error"),
    }
}

enum ReadEnd {
    /// The run's time is up; the connection is still open.
    Deadline,
    /// The server closed the connection or it broke; the label says how.
    Gone(String),
}

/// Reads and counts every frame until the drain ends or the connection does.
async fn read_loop(
    n: u32,
    stream: &mut SplitStream<Socket>,
    rx: &mut Incoming,
    pending: Option<&Pending>,
    mut phase: watch::Receiver<Option<Phase>>,
    hard_deadline: Instant,
) -> ReadEnd {
    let mut phase_known = false;
    let deadline = tokio::time::sleep_until(hard_deadline);
    tokio::pin!(deadline);
    if let Some(p) = *phase.borrow_and_update() {
        deadline.as_mut().reset(p.close_at);
        phase_known = true;
    }
    loop {
        tokio::select! {
            biased;
            () = &mut deadline => return ReadEnd::Deadline,
            changed = phase.changed(), if !phase_known => {
                phase_known = true;
                match changed.ok().and(*phase.borrow_and_update()) {
                    Some(p) => deadline.as_mut().reset(p.close_at),
                    // The run gave up: close now.
                    None => deadline.as_mut().reset(Instant::now()),
                }
            }
            frame = stream.next() => match frame {
                Some(Ok(Message::Text(text))) => {
                    let head = rx.count(&text);
                    if let (Some(pending), Some(head)) = (pending, head) {
                        match &*head.ty {
                            "chat" => rx.match_probe(n, &text, pending),
                            "error" => rx.refuse_probe(pending),
                            _ => {}
                        }
                    }
                }
                Some(Ok(Message::Binary(_))) => rx.non_text += 1,
                Some(Ok(Message::Close(frame))) => {
                    return ReadEnd::Gone(frame.map_or_else(|| "close_no_code".to_owned(), |f| format!("close_{}", u16::from(f.code))));
                }
                Some(Ok(_)) => {} // ping/pong: tungstenite answers pings itself
                Some(Err(e)) => return ReadEnd::Gone(ws_label("read", &e)),
                None => return ReadEnd::Gone("eof".into()),
            },
        }
    }
}

/// Sends chat lines at the connection's rate during the load phase (idle connections: nothing).
///
/// The interval uses [`MissedTickBehavior::Skip`]: when the client falls behind (CPU starved),
/// missed lines are not sent later in a burst, and the next ones stay on the original
/// staggered schedule, so the load stays smooth across connections and the shortfall shows up
/// as `sent_per_s` below `target_per_s`. `Delay` would also avoid bursts, but after a stall
/// that delays every connection alike it would re-align them all to the same instant.
async fn write_loop(
    n: u32,
    role: Role,
    ctx: &Ctx,
    sink: &mut SplitSink<Socket, Message>,
    tx: &mut Outgoing,
    pending: Option<&Pending>,
    mut phase: watch::Receiver<Option<Phase>>,
) {
    if matches!(role, Role::Idle) {
        return;
    }
    let phase = match timeout_at(ctx.hard_deadline, phase.wait_for(Option::is_some)).await {
        Ok(Ok(p)) => match *p {
            Some(p) => p,
            None => return,
        },
        _ => return,
    };
    let first = phase.start + ctx.period.mul_f64(spread(n));
    let mut interval = tokio::time::interval_at(first, ctx.period);
    interval.set_missed_tick_behavior(MissedTickBehavior::Skip);
    let frames = &ctx.chat_frames;
    let mut next_frame = (n as usize).wrapping_mul(7919) % frames.len();
    let step = 37; // coprime with the pool's size, so each connection walks the whole pool
    let mut command_turn = spread(n.wrapping_add(0x9e37));
    let mut seq = 0u64;
    loop {
        let tick = interval.tick().await;
        if tick >= phase.end {
            return;
        }
        // How late the client itself is: the generator, not the server, may be the bottleneck.
        let lag = tick.elapsed();
        tx.max_lag = tx.max_lag.max(lag);
        tx.late_ticks += u64::from(lag > LATE_TICK);
        let (message, command) = if let Some(pending) = pending {
            seq += 1;
            let phrase = CHAT_TEXTS[(seq as usize) % CHAT_TEXTS.len()];
            let frame = chat_frame(&format!("{PROBE_MARK}{n}k{seq}k {phrase}"));
            let mut waiting = lock(pending);
            if waiting.len() == MAX_PENDING_PROBES {
                // Too many unanswered: give up on the oldest.
                waiting.pop_front();
                tx.probes_given_up += 1;
            }
            waiting.push_back((seq, Instant::now()));
            drop(waiting);
            tx.probes_sent += 1;
            (frame, false)
        } else {
            command_turn += ctx.command_share;
            if command_turn >= 1.0 {
                command_turn -= 1.0;
                (ctx.command_frame.clone(), true)
            } else {
                next_frame = (next_frame + step) % frames.len();
                (frames[next_frame].clone(), false)
            }
        };
        match timeout_at(phase.close_at, sink.send(Message::Text(message))).await {
            Ok(Ok(())) => {
                tx.sent += 1;
                tx.sent_commands += u64::from(command);
            }
            _ => {
                tx.send_errors += 1;
                return;
            }
        }
    }
}

fn chat_frame(text: &str) -> Utf8Bytes {
    #[derive(Serialize)]
    struct Chat<'a> {
        #[serde(rename = "type")]
        ty: &'static str,
        text: &'a str,
    }
    serde_json::to_string(&Chat { ty: "chat", text }).unwrap_or_default().into()
}

fn chat_frames() -> Vec<Utf8Bytes> {
    let mut frames = Vec::with_capacity(CHAT_TEXTS.len() * SUFFIXES.len());
    for suffix in SUFFIXES {
        for text in CHAT_TEXTS {
            frames.push(chat_frame(&format!("{text}{suffix}")));
        }
    }
    frames
}

// ---------------------------------------------------------------------------------------------
// Counting incoming frames

/// The `type` (and `code`, for errors) of a server frame.
#[derive(Debug, PartialEq)]
struct Head<'a> {
    ty: Cow<'a, str>,
    code: Option<Cow<'a, str>>,
}

/// Reads `type` and `code` from a frame: a prefix check for the server's own layout (`type`
/// first, then `code`), a minimal parse for anything else.
fn frame_head(text: &str) -> Option<Head<'_>> {
    fn quoted(s: &str) -> Option<&str> {
        let (value, _) = s.split_once('"')?;
        (!value.contains('\\')).then_some(value)
    }
    if let Some(rest) = text.strip_prefix(r#"{"type":""#)
        && let Some(ty) = quoted(rest)
    {
        if ty != "error" {
            return Some(Head { ty: ty.into(), code: None });
        }
        if let Some(code) = rest[ty.len() + 1..].strip_prefix(r#","code":""#).and_then(quoted) {
            return Some(Head { ty: ty.into(), code: Some(code.into()) });
        }
    }
    #[derive(Deserialize)]
    struct Minimal<'a> {
        #[serde(rename = "type", borrow)]
        ty: Cow<'a, str>,
        #[serde(default, borrow)]
        code: Option<Cow<'a, str>>,
    }
    let m: Minimal<'_> = serde_json::from_str(text).ok()?;
    Some(Head { ty: m.ty, code: m.code })
}

impl Incoming {
    /// Counts one text frame by type and error code; returns its head.
    fn count<'a>(&mut self, text: &'a str) -> Option<Head<'a>> {
        let Some(head) = frame_head(text) else {
            self.other_types.push("other".to_owned());
            return None;
        };
        match TYPES.iter().position(|t| *t == head.ty) {
            Some(i) => self.types[i] += 1,
            None => self.other_types.push(head.ty.to_string()),
        }
        if head.ty == "error" {
            let code = head.code.as_deref().unwrap_or("none");
            match CODES.iter().position(|c| *c == code) {
                Some(i) => self.codes[i] += 1,
                None => self.other_codes.push(code.to_owned()),
            }
        }
        Some(head)
    }

    /// An `error` answers the line just sent: the newest waiting probe was refused.
    fn refuse_probe(&mut self, pending: &Pending) {
        if lock(pending).pop_back().is_some() {
            self.probes_refused += 1;
            self.probes_lost += 1;
        }
    }

    /// Looks for this connection's probe token in a `chat` frame and records its round trip.
    fn match_probe(&mut self, n: u32, text: &str, pending: &Pending) {
        let Some((conn, seq)) = probe_token(text) else { return };
        if conn != n {
            return;
        }
        let mut waiting = lock(pending);
        let Some(i) = waiting.iter().position(|(s, _)| *s == seq) else { return };
        let (_, sent) = waiting.remove(i).unwrap_or((seq, Instant::now()));
        drop(waiting);
        let rtt = sent.elapsed();
        if rtt > PROBE_TIMEOUT {
            self.probes_lost += 1;
            self.probes_late += 1;
        } else {
            self.rtts_us.push(u64::try_from(rtt.as_micros()).unwrap_or(u64::MAX));
        }
    }
}

/// The (connection, sequence) of a probe token in a frame, if there is one.
fn probe_token(text: &str) -> Option<(u32, u64)> {
    let at = text.find(PROBE_MARK)?;
    let rest = &text[at + PROBE_MARK.len()..];
    let (conn, rest) = rest.split_once('k')?;
    let (seq, _) = rest.split_once('k')?;
    Some((conn.parse().ok()?, seq.parse().ok()?))
}

/// The value at quantile `q` of sorted samples (nearest rank).
fn nearest_rank(sorted: &[u64], q: f64) -> Option<u64> {
    if sorted.is_empty() {
        return None;
    }
    let rank = (q * sorted.len() as f64).ceil() as usize;
    Some(sorted[rank.clamp(1, sorted.len()) - 1])
}

// ---------------------------------------------------------------------------------------------
// File descriptors

/// Refuses a run that would exceed this process's open-file limit (when it can be read).
fn check_fd_limit(connections: u32) -> Result<(), LoadError> {
    let Some(limit) = fd_soft_limit() else { return Ok(()) };
    let open = std::fs::read_dir("/proc/self/fd").map_or(0, |d| d.count() as u64);
    let needed = u64::from(connections) + open + 32;
    if needed > limit {
        return Err(LoadError::FdLimit { needed, limit });
    }
    Ok(())
}

fn fd_soft_limit() -> Option<u64> {
    let limits = std::fs::read_to_string("/proc/self/limits").ok()?;
    let line = limits.lines().find(|l| l.starts_with("Max open files"))?;
    line["Max open files".len()..].split_whitespace().next()?.parse().ok()
}

// ---------------------------------------------------------------------------------------------
// Metrics

/// One sample of the Prometheus text format.
#[derive(Debug, Clone, PartialEq)]
struct Sample {
    name: String,
    labels: Vec<(String, String)>,
    value: f64,
}

/// A parsed `/metrics` page.
#[derive(Debug, Clone, Default)]
pub(super) struct Metrics {
    samples: Vec<Sample>,
}

impl Metrics {
    /// Parses the text exposition format; lines it does not understand are skipped.
    fn parse(text: &str) -> Self {
        Self { samples: text.lines().filter_map(parse_sample).collect() }
    }

    /// The value of an unlabelled metric.
    pub(super) fn value(&self, name: &str) -> Option<f64> {
        self.samples.iter().find(|s| s.name == name && s.labels.is_empty()).map(|s| s.value)
    }

    /// `(label value, value)` for every sample of `name` with label `label`.
    pub(super) fn by_label(&self, name: &str, label: &str) -> Vec<(String, f64)> {
        self.samples
            .iter()
            .filter(|s| s.name == name)
            .filter_map(|s| s.labels.iter().find(|(k, _)| k == label).map(|(_, v)| (v.clone(), s.value)))
            .collect()
    }
}

fn parse_sample(line: &str) -> Option<Sample> {
    let line = line.trim();
    if line.is_empty() || line.starts_with('#') {
        return None;
    }
    let name_end = line.find(|c: char| c == '{' || c.is_whitespace())?;
    let name = &line[..name_end];
    let mut rest = &line[name_end..];
    let mut labels = Vec::new();
    if let Some(inner) = rest.strip_prefix('{') {
        let mut chars = inner.char_indices().peekable();
        let end = loop {
            // Skip separators, read `key="value"`.
            while let Some((_, c)) = chars.peek() {
                if *c == ',' || c.is_whitespace() {
                    chars.next();
                } else {
                    break;
                }
            }
            let &(start, c) = chars.peek()?;
            if c == '}' {
                break start + 1;
            }
            let eq = inner[start..].find('=')? + start;
            let key = inner[start..eq].trim().to_owned();
            while let Some((i, _)) = chars.peek() {
                if *i > eq {
                    break;
                }
                chars.next();
            }
            if chars.next()?.1 != '"' {
                return None;
            }
            let mut value = String::new();
            loop {
                match chars.next()?.1 {
                    '"' => break,
                    '\\' => match chars.next()?.1 {
                        'n' => value.push('\n'),
                        other => value.push(other),
                    },
                    other => value.push(other),
                }
            }
            labels.push((key, value));
        };
        rest = &inner[end..];
    }
    let value = rest.split_whitespace().next()?.parse().ok()?;
    Some(Sample { name: name.to_owned(), labels, value })
}

/// Fetches and parses `http://addr/metrics` (plain HTTP/1.1, `Connection: close`).
pub(super) async fn scrape_metrics(addr: SocketAddr) -> Result<Metrics, String> {
    let body = timeout(SCRAPE_TIMEOUT, http_get(addr, "/metrics")).await.map_err(|_| "timed out".to_owned())??;
    Ok(Metrics::parse(&body))
}

async fn http_get(addr: SocketAddr, path: &str) -> Result<String, String> {
    let mut stream = TcpStream::connect(addr).await.map_err(|e| e.to_string())?;
    let request = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nAccept: text/plain\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await.map_err(|e| e.to_string())?;
    let mut response = Vec::with_capacity(8192);
    (&mut stream).take(SCRAPE_MAX_BYTES).read_to_end(&mut response).await.map_err(|e| e.to_string())?;
    let split = response.windows(4).position(|w| w == b"\r\n\r\n").ok_or("no HTTP header")?;
    let head = String::from_utf8_lossy(&response[..split]);
    let mut body = &response[split + 4..];
    let status = head.lines().next().unwrap_or_default();
    if status.split_whitespace().nth(1) != Some("200") {
        return Err(format!("HTTP status {status:?}"));
    }
    let header = |name: &str| {
        head.lines().skip(1).find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.trim().eq_ignore_ascii_case(name).then(|| v.trim().to_ascii_lowercase())
        })
    };
    if header("transfer-encoding").is_some_and(|v| v.contains("chunked")) {
        return Ok(String::from_utf8_lossy(&dechunk(body)?).into_owned());
    }
    if let Some(len) = header("content-length").and_then(|v| v.parse::<usize>().ok()) {
        body = &body[..len.min(body.len())];
    }
    Ok(String::from_utf8_lossy(body).into_owned())
}

fn dechunk(mut body: &[u8]) -> Result<Vec<u8>, String> {
    let mut out = Vec::with_capacity(body.len());
    loop {
        let line_end = body.windows(2).position(|w| w == b"\r\n").ok_or("bad chunk")?;
        let size_text = String::from_utf8_lossy(&body[..line_end]);
        let size = usize::from_str_radix(size_text.split(';').next().unwrap_or("").trim(), 16)
            .map_err(|_| "bad chunk size")?;
        body = &body[line_end + 2..];
        if size == 0 {
            return Ok(out);
        }
        out.extend_from_slice(body.get(..size).ok_or("short chunk")?);
        body = body.get(size + 2..).unwrap_or_default();
    }
}

pub(super) const M_MESSAGES: &str = "parvis_audience_messages_total";
pub(super) const M_ACCEPTED: &str = "parvis_audience_messages_accepted_total";
const M_REJECTED: &str = "parvis_audience_messages_rejected_total";
const M_DROPPED_IN: &str = "parvis_audience_dropped_inbound_total";
pub(super) const M_DROPPED_OUT: &str = "parvis_audience_dropped_outbound_total";
pub(super) const M_SLOW_CLOSED: &str = "parvis_audience_slow_clients_closed_total";
pub(super) const M_APPLIED: &str = "parvis_audience_commands_applied_total";
const M_CONNECTIONS: &str = "parvis_audience_connections_total";
const M_REFUSED: &str = "parvis_audience_connections_refused_total";
/// The name docs/protocol.md gives the refused-connections counter; read if `M_REFUSED` is not.
const M_REFUSED_ALT: &str = "parvis_audience_refused_connections_total";
const M_UNSHOWN: &str = "parvis_audience_chat_unshown_total";
pub(super) const M_CONNECTED: &str = "parvis_audience_connected";
const M_QUEUE: &str = "parvis_audience_queue_depth";
pub(super) const M_LATENCY_BUCKET: &str = "parvis_audience_latency_seconds_bucket";
const M_LATENCY_FRAMES_BUCKET: &str = "parvis_audience_latency_frames_bucket";

/// Counter increase; `None` if missing in either scrape or if it went down (server restart).
fn counter_delta(before: &Metrics, after: &Metrics, name: &str) -> Option<u64> {
    let (b, a) = (before.value(name)?, after.value(name)?);
    (a >= b).then(|| (a - b).round() as u64)
}

/// `connect` spans the whole run (connections), `before` → `after` the load and drain.
fn server_deltas(connect: &Metrics, before: &Metrics, after: &Metrics, load_s: f64) -> ServerDeltas {
    let delta = |name| counter_delta(before, after, name);
    let per_s = |v: Option<u64>| v.filter(|_| load_s > 0.0).map(|v| v as f64 / load_s);
    let mut rejected_by_reason = BTreeMap::new();
    let mut rejected = None;
    let reasons_before: BTreeMap<String, f64> = before.by_label(M_REJECTED, "reason").into_iter().collect();
    for (reason, value) in after.by_label(M_REJECTED, "reason") {
        let base = reasons_before.get(&reason).copied().unwrap_or(0.0);
        if value >= base {
            let d = (value - base).round() as u64;
            *rejected.get_or_insert(0) += d;
            if d > 0 {
                rejected_by_reason.insert(reason, d);
            }
        }
    }
    let buckets = histogram_delta(&before.by_label(M_LATENCY_BUCKET, "le"), &after.by_label(M_LATENCY_BUCKET, "le"));
    let latency_count = buckets.as_ref().and_then(|b| b.last()).map(|(_, c)| c.round() as u64);
    let quantile = |q| buckets.as_deref().and_then(|b| histogram_quantile(b, q)).map(|s| s * 1000.0);
    let frame_buckets = histogram_delta(
        &before.by_label(M_LATENCY_FRAMES_BUCKET, "le"),
        &after.by_label(M_LATENCY_FRAMES_BUCKET, "le"),
    );
    let frames_quantile = |q| frame_buckets.as_deref().and_then(|b| histogram_upper_bound(b, q));
    let (messages_in, accepted, commands_applied) = (delta(M_MESSAGES), delta(M_ACCEPTED), delta(M_APPLIED));
    ServerDeltas {
        messages_in,
        accepted,
        rejected,
        rejected_by_reason,
        dropped_inbound: delta(M_DROPPED_IN),
        dropped_outbound: delta(M_DROPPED_OUT),
        chat_unshown: delta(M_UNSHOWN),
        commands_applied,
        connections: counter_delta(connect, after, M_CONNECTIONS),
        connections_refused: counter_delta(connect, after, M_REFUSED)
            .or_else(|| counter_delta(connect, after, M_REFUSED_ALT)),
        connected_at_start: before.value(M_CONNECTED).map(|v| v.round() as u64),
        queue_depth_end: after.value(M_QUEUE).map(|v| v.round() as u64),
        messages_in_per_s: per_s(messages_in),
        accepted_per_s: per_s(accepted),
        commands_applied_per_s: per_s(commands_applied),
        latency_count,
        latency_p50_ms: quantile(0.5),
        latency_p99_ms: quantile(0.99),
        latency_p50_frames: frames_quantile(0.5),
        latency_p99_frames: frames_quantile(0.99),
    }
}

/// Cumulative bucket counts `(upper bound, count)` of the increase between two scrapes, sorted
/// by bound and ending with `+Inf`; `None` if the histogram is missing after the load or has no
/// `+Inf` bucket. A bucket missing before counts from zero.
pub(super) fn histogram_delta(before: &[(String, f64)], after: &[(String, f64)]) -> Option<Vec<(f64, f64)>> {
    let parse = |le: &str| le.parse::<f64>().ok();
    let mut out: Vec<(f64, f64)> = after
        .iter()
        .filter_map(|(le, count)| {
            let bound = parse(le)?;
            let base = before.iter().find(|(l, _)| parse(l) == Some(bound)).map_or(0.0, |(_, c)| *c);
            Some((bound, (count - base).max(0.0)))
        })
        .collect();
    out.sort_by(|a, b| a.0.total_cmp(&b.0));
    out.last().is_some_and(|(b, _)| b.is_infinite()).then_some(out)
}

/// Estimates quantile `q` from cumulative buckets as Prometheus' `histogram_quantile` does:
/// find the first bucket whose cumulative count reaches `q × total`, then interpolate linearly
/// between its lower bound (the previous bucket's bound, 0 for the first) and its upper bound,
/// assuming observations are spread evenly inside it. A quantile in the `+Inf` bucket is
/// reported as the largest finite bound (a lower bound of the truth). `None` with no
/// observations.
pub(super) fn histogram_quantile(buckets: &[(f64, f64)], q: f64) -> Option<f64> {
    let total = buckets.last()?.1;
    if total <= 0.0 {
        return None;
    }
    let rank = q * total;
    let mut lower = (0.0, 0.0);
    for &(bound, cumulative) in buckets {
        if cumulative >= rank && cumulative > lower.1 {
            if bound.is_infinite() {
                return Some(lower.0);
            }
            let within = (rank - lower.1) / (cumulative - lower.1);
            return Some(lower.0 + (bound - lower.0) * within.clamp(0.0, 1.0));
        }
        lower = (bound, cumulative.max(lower.1));
    }
    Some(lower.0)
}

/// The upper bound of the bucket holding the `q` quantile: for counts (frames), where
/// interpolating inside a bucket would invent fractions. `+Inf` when it lies beyond them all.
fn histogram_upper_bound(buckets: &[(f64, f64)], q: f64) -> Option<f64> {
    let total = buckets.last()?.1;
    (total > 0.0).then(|| {
        buckets.iter().find(|(_, cumulative)| *cumulative >= q * total).map_or(f64::INFINITY, |(bound, _)| *bound)
    })
}

/// `parvis loadgen`: runs the load and prints its report.
pub fn command(args: &super::args::LoadgenArgs) -> anyhow::Result<()> {
    use anyhow::Context;
    let mut config = LoadConfig::new(args.addr);
    config.active = args.active;
    config.idle = args.idle;
    config.rate_per_conn = args.rate;
    config.duration = std::time::Duration::from_secs_f64(args.seconds.max(0.0));
    config.command_share = args.command_share;
    config.command_text = args.command.clone();
    config.ramp = std::time::Duration::from_secs_f64(args.ramp.max(0.0));
    config.server_pid = args.server_pid;
    config.per_source_address = args.per_source_address;
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build()?;
    if !args.soak {
        let report = runtime.block_on(run(config))?;
        println!("{}", report.to_markdown());
        if let Some(path) = &args.json {
            std::fs::write(path, serde_json::to_string_pretty(&report)?)
                .with_context(|| format!("cannot write {}", path.display()))?;
        }
        return Ok(());
    }
    let soak = super::soak::SoakConfig {
        addr: config.addr,
        churners: args.churners,
        slow_readers: args.slow_readers,
        flooders: args.flooders,
        sample_every: std::time::Duration::from_secs_f64(args.sample_every.clamp(1.0, 600.0)),
        duration: config.duration + config.ramp,
        server_pid: config.server_pid,
        log: args.log.clone(),
    };
    if !soak.addr.ip().to_canonical().is_loopback() {
        anyhow::bail!("refusing to soak {}: the load generator only targets loopback addresses", soak.addr);
    }
    let (report, soaked) = runtime.block_on(async { tokio::join!(run(config), super::soak::run(soak)) });
    let report = report?;
    println!("{}{}", report.to_markdown(), soaked.to_markdown());
    if let Some(path) = &args.json {
        let both = serde_json::json!({"load": report, "soak": soaked, "lost_commands": soaked.lost_commands()});
        std::fs::write(path, serde_json::to_string_pretty(&both)?)
            .with_context(|| format!("cannot write {}", path.display()))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refuses_non_loopback_targets() {
        let mut cfg = LoadConfig::new("192.0.2.1:7878".parse().unwrap());
        assert!(matches!(cfg.validate(), Err(LoadError::NotLoopback(_))));
        cfg.addr = "[::ffff:10.0.0.1]:7878".parse().unwrap();
        assert!(matches!(cfg.validate(), Err(LoadError::NotLoopback(_))));
        for ok in ["127.0.0.1:7878", "[::1]:7878", "[::ffff:127.0.0.1]:7878", "127.8.9.10:1"] {
            cfg.addr = ok.parse().unwrap();
            assert!(cfg.validate().is_ok(), "{ok}");
        }
        cfg.rate_per_conn = f64::NAN;
        assert!(matches!(cfg.validate(), Err(LoadError::InvalidConfig(_))));
    }

    #[test]
    fn reads_frame_heads_without_parsing() {
        let head = |t| frame_head(t).map(|h| (h.ty.into_owned(), h.code.map(Cow::into_owned)));
        assert_eq!(head(r#"{"type":"chat","id":3,"from":"a","text":"b"}"#), Some(("chat".into(), None)));
        assert_eq!(
            head(r#"{"type":"error","code":"rate_limited","message":"x"}"#),
            Some(("error".into(), Some("rate_limited".into())))
        );
        // Other layouts fall back to a minimal parse.
        assert_eq!(head(r#" { "code": "busy", "type": "error" }"#), Some(("error".into(), Some("busy".into()))));
        assert_eq!(head(r#"{"type":"error","message":"x"}"#), Some(("error".into(), None)));
        assert_eq!(head("not json"), None);
        let mut rx = Incoming::default();
        rx.count(r#"{"type":"error","code":"brand_new","message":"x"}"#);
        rx.count(r#"{"type":"surprise"}"#);
        assert_eq!((rx.other_codes.len(), rx.other_types.len()), (1, 1));
    }

    #[test]
    fn finds_probe_tokens() {
        let frame = r#"{"type":"chat","id":9,"from":"load12","text":"probe6k12k345k bravo"}"#;
        assert_eq!(probe_token(frame), Some((12, 345)));
        assert_eq!(probe_token(r#"{"type":"chat","text":"probe6k1"}"#), None);
        let pending = Pending::default();
        lock(&pending).push_back((345, Instant::now()));
        let mut rx = Incoming::default();
        rx.match_probe(11, frame, &pending);
        assert!(rx.rtts_us.is_empty());
        rx.match_probe(12, frame, &pending);
        assert_eq!(rx.rtts_us.len(), 1);
        assert!(lock(&pending).is_empty());
    }

    #[test]
    fn chat_texts_are_short_and_json() {
        for frame in chat_frames() {
            let v: serde_json::Value = serde_json::from_str(frame.as_str()).unwrap();
            assert!(v["text"].as_str().unwrap().chars().count() <= 100);
        }
    }

    const PAGE: &str = r#"# HELP parvis_audience_messages_total Text frames.
# TYPE parvis_audience_messages_total counter
parvis_audience_messages_total 1500
parvis_audience_messages_rejected_total{reason="rate_limited"} 7
parvis_audience_messages_rejected_total{reason="blocked_word"} 1
parvis_audience_latency_seconds_bucket{le="0.001"} 10
parvis_audience_latency_seconds_bucket{le="0.01"} 90
parvis_audience_latency_seconds_bucket{le="0.1"} 100
parvis_audience_latency_seconds_bucket{le="+Inf"} 100
odd_metric{a="x\"y",b="z"} 3 1700000000000
garbage line {
"#;

    #[test]
    fn parses_prometheus_text() {
        let m = Metrics::parse(PAGE);
        assert_eq!(m.value(M_MESSAGES), Some(1500.0));
        assert_eq!(m.value(M_ACCEPTED), None);
        assert_eq!(m.by_label(M_REJECTED, "reason").len(), 2);
        let odd = m.samples.iter().find(|s| s.name == "odd_metric").unwrap();
        assert_eq!(odd.labels, vec![("a".into(), "x\"y".into()), ("b".into(), "z".into())]);
        assert_eq!(odd.value, 3.0);
        assert_eq!(Metrics::parse("").value(M_MESSAGES), None);
    }

    #[test]
    fn frame_quantiles_are_bucket_bounds() {
        let b = [(1.0, 90.0), (2.0, 99.0), (3.0, 99.0), (f64::INFINITY, 100.0)];
        assert_eq!(histogram_upper_bound(&b, 0.5), Some(1.0));
        assert_eq!(histogram_upper_bound(&b, 0.99), Some(2.0));
        assert_eq!(histogram_upper_bound(&b, 1.0), Some(f64::INFINITY));
        assert_eq!(histogram_upper_bound(&[(1.0, 0.0), (f64::INFINITY, 0.0)], 0.5), None);
    }

    #[test]
    fn histogram_quantiles_interpolate_within_buckets() {
        let m = Metrics::parse(PAGE);
        let b = histogram_delta(&[], &m.by_label(M_LATENCY_BUCKET, "le")).unwrap();
        // 50th of 100: in (0.001, 0.01], 40 of its 80 → halfway.
        let p50 = histogram_quantile(&b, 0.5).unwrap();
        assert!((p50 - 0.0055).abs() < 1e-9, "{p50}");
        // 99th: in (0.01, 0.1], 9 of its 10.
        let p99 = histogram_quantile(&b, 0.99).unwrap();
        assert!((p99 - 0.091).abs() < 1e-9, "{p99}");
        // Everything past the last finite bound: that bound.
        assert_eq!(histogram_quantile(&[(0.5, 0.0), (f64::INFINITY, 4.0)], 0.5), Some(0.5));
        assert_eq!(histogram_quantile(&[(0.5, 0.0), (f64::INFINITY, 0.0)], 0.5), None);
        // Deltas between scrapes.
        let before = vec![("0.001".to_owned(), 10.0), ("0.01".to_owned(), 10.0), ("+Inf".to_owned(), 10.0)];
        let after = vec![("0.001".to_owned(), 10.0), ("0.01".to_owned(), 20.0), ("+Inf".to_owned(), 20.0)];
        let d = histogram_delta(&before, &after).unwrap();
        assert_eq!(d, vec![(0.001, 0.0), (0.01, 10.0), (f64::INFINITY, 10.0)]);
        assert!((histogram_quantile(&d, 0.5).unwrap() - 0.0055).abs() < 1e-9);
    }

    #[test]
    fn server_deltas_tolerate_missing_metrics() {
        let before = Metrics::parse("parvis_audience_messages_total 100\n");
        let after = Metrics::parse(PAGE);
        let d = server_deltas(&before, &before, &after, 10.0);
        assert_eq!(d.messages_in, Some(1400));
        assert_eq!(d.messages_in_per_s, Some(140.0));
        assert_eq!(d.accepted, None);
        assert_eq!(d.rejected, Some(8));
        assert_eq!(d.latency_count, Some(100));
        assert!(d.latency_p50_ms.is_some());
    }

    #[test]
    fn spreads_connections_over_loopback_addresses() {
        assert_eq!(source_address(5, 0), None);
        assert_eq!(source_address(0, 8), Some(Ipv4Addr::new(127, 1, 0, 1)));
        assert_eq!(source_address(7, 8), Some(Ipv4Addr::new(127, 1, 0, 1)));
        assert_eq!(source_address(8, 8), Some(Ipv4Addr::new(127, 1, 0, 2)));
        assert_eq!(source_address(49_999, 1), Some(Ipv4Addr::new(127, 1, 195, 80)));
        assert_eq!(source_address(u32::MAX, 1), Some(Ipv4Addr::new(127, 255, 255, 254)));
    }

    #[test]
    fn dechunks_bodies() {
        assert_eq!(dechunk(b"5\r\nhello\r\n6;x=y\r\n world\r\n0\r\n\r\n").unwrap(), b"hello world");
        assert!(dechunk(b"zz\r\n").is_err());
    }

    #[test]
    fn nearest_rank_percentiles() {
        let v: Vec<u64> = (1..=100).collect();
        assert_eq!(nearest_rank(&v, 0.5), Some(50));
        assert_eq!(nearest_rank(&v, 0.99), Some(99));
        assert_eq!(nearest_rank(&v, 1.0), Some(100));
        assert_eq!(nearest_rank(&[], 0.5), None);
    }

    #[test]
    fn cpu_time_of_this_process_grows() {
        let before = process_cpu_seconds(std::process::id()).expect("readable");
        let spin = Instant::now();
        let mut x = 0u64;
        while spin.elapsed() < Duration::from_millis(300) {
            x = std::hint::black_box(x.wrapping_add(1));
        }
        let after = process_cpu_seconds(std::process::id()).expect("readable");
        assert!(after - before >= 0.1, "{before} → {after}");
        assert_eq!(process_cpu_seconds(u32::MAX), None);
    }

    #[test]
    fn rss_of_this_process() {
        assert!(process_rss_bytes(std::process::id()).is_some_and(|b| b > 0));
        assert_eq!(process_rss_bytes(u32::MAX), None);
    }
}
