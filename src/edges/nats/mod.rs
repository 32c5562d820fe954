//! The NATS edge: a venue's command log on JetStream, for an authority that publishes it and
//! for render followers that apply it (docs/scale.md).
//!
//! One runtime thread per node holds the client. The authority's publisher takes applied
//! commands from the venue in order, publishes each with a JetStream message id (so a retry
//! after a lost acknowledgement is stored once), and moves the venue's [`DurableGate`] only when
//! JetStream confirmed: acknowledgements to the command's origin wait for that. A follower reads
//! the latest snapshot and the log after it, then follows the log live with an ordered
//! consumer. Nothing read from NATS is trusted: every message is parsed and bounded
//! ([`crate::model::net`]) and a follower applies it under the permissions of its origin.
//!
//! [`DurableGate`]: crate::engine::command::DurableGate

pub mod audience;
pub mod performers;
pub mod shards;

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use async_nats::jetstream::{self, stream};
use async_nats::{ConnectOptions, HeaderMap};
use bevy::log::{error, info, warn};
use futures_util::StreamExt;
use thiserror::Error;
use tokio::sync::mpsc;

use crate::engine::control::Throttle;
use crate::engine::net::{FollowIn, LogOutgoing, NetStats, now_ms};
use crate::engine::rest::Doorbell;
use crate::model::command::LoggedCommand;
use crate::model::net::{LogSnapshot, VenueSubjects, logged_from_message};

/// How long to wait for NATS when a node starts.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// The longest a node waits for the venue's history when it starts.
const HISTORY_TIMEOUT: Duration = Duration::from_secs(60);
/// JetStream's de-duplication window: a retry within it is stored once.
const DUPLICATE_WINDOW: Duration = Duration::from_secs(600);

/// How a node proves who it is to NATS. Read from the environment, never from the command
/// line (where `ps` shows it), and never written to a log.
#[derive(Clone, Default)]
pub enum NatsAuth {
    /// No credential (a server on loopback, or a URL's own).
    #[default]
    None,
    /// `PARVIS_NATS_TOKEN`.
    Token(String),
    /// `PARVIS_NATS_USER` and `PARVIS_NATS_PASSWORD`.
    UserPassword(String, String),
    /// `PARVIS_NATS_CREDS`: a `.creds` file (JWT and NKey seed).
    CredsFile(PathBuf),
    /// `PARVIS_NATS_NKEY`: a file holding an NKey seed.
    NKeySeed(String),
}

impl std::fmt::Debug for NatsAuth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the secret itself.
        f.write_str(match self {
            NatsAuth::None => "none",
            NatsAuth::Token(_) => "token",
            NatsAuth::UserPassword(..) => "user and password",
            NatsAuth::CredsFile(_) => "credentials file",
            NatsAuth::NKeySeed(_) => "NKey",
        })
    }
}

impl NatsAuth {
    /// The credential the environment gives (`lookup` reads a variable); an error names what
    /// is missing or unreadable, never a secret.
    pub fn from_env(lookup: impl Fn(&str) -> Option<String>) -> Result<Self, NatsError> {
        let get = |name: &str| lookup(name).filter(|v| !v.is_empty());
        let chosen = [
            get("PARVIS_NATS_TOKEN").is_some(),
            get("PARVIS_NATS_USER").is_some(),
            get("PARVIS_NATS_CREDS").is_some(),
            get("PARVIS_NATS_NKEY").is_some(),
        ];
        if chosen.iter().filter(|c| **c).count() > 1 {
            return Err(NatsError::Credentials(
                "more than one of PARVIS_NATS_TOKEN, PARVIS_NATS_USER, PARVIS_NATS_CREDS, PARVIS_NATS_NKEY is set: keep one".into(),
            ));
        }
        if let Some(token) = get("PARVIS_NATS_TOKEN") {
            return Ok(Self::Token(token));
        }
        if let Some(user) = get("PARVIS_NATS_USER") {
            let password = get("PARVIS_NATS_PASSWORD")
                .ok_or_else(|| NatsError::Credentials("PARVIS_NATS_USER is set without PARVIS_NATS_PASSWORD".into()))?;
            return Ok(Self::UserPassword(user, password));
        }
        if let Some(path) = get("PARVIS_NATS_CREDS") {
            let path = PathBuf::from(path);
            if !path.is_file() {
                return Err(NatsError::Credentials(format!("PARVIS_NATS_CREDS: no file {}", path.display())));
            }
            return Ok(Self::CredsFile(path));
        }
        if let Some(path) = get("PARVIS_NATS_NKEY") {
            let seed = std::fs::read_to_string(&path)
                .map_err(|e| NatsError::Credentials(format!("PARVIS_NATS_NKEY: cannot read {path}: {e}")))?;
            return Ok(Self::NKeySeed(seed.trim().to_owned()));
        }
        Ok(Self::None)
    }
}

/// Where and how a node reaches NATS.
#[derive(Debug, Clone)]
pub struct NatsConfig {
    /// Server URL(s), comma-separated (`nats://host:4222`, `tls://host:4222`).
    pub url: String,
    /// The credential.
    pub auth: NatsAuth,
    /// A CA certificate (PEM) to trust for TLS, beyond the system's.
    pub ca: Option<PathBuf>,
    /// The client name the server shows (`parvis authority cloister`).
    pub name: String,
}

/// A URL as it may be shown: without a user or password written into it.
pub fn shown_url(url: &str) -> String {
    url.split(',')
        .map(|one| match (one.find("://"), one.rfind('@')) {
            (Some(scheme), Some(at)) if at > scheme => format!("{}://…@{}", &one[..scheme], &one[at + 1..]),
            (None, Some(at)) => format!("…@{}", &one[at + 1..]),
            _ => one.to_owned(),
        })
        .collect::<Vec<_>>()
        .join(",")
}

/// What can go wrong between a node and NATS.
#[derive(Debug, Error)]
pub enum NatsError {
    /// The credential in the environment is unusable.
    #[error("NATS credentials: {0}")]
    Credentials(String),
    /// No connection.
    #[error("cannot connect to NATS at {url}: {message}")]
    Connect {
        /// The server, as it may be shown.
        url: String,
        /// Why.
        message: String,
    },
    /// JetStream refused or failed.
    #[error("JetStream ({what}): {message}")]
    JetStream {
        /// What was being done.
        what: String,
        /// Why.
        message: String,
    },
    /// The node's runtime could not start.
    #[error("cannot start the NATS runtime: {0}")]
    Runtime(#[from] std::io::Error),
}

fn jetstream_error(what: &str, e: impl std::fmt::Display) -> NatsError {
    NatsError::JetStream { what: what.to_owned(), message: e.to_string() }
}

/// What a node finds in a venue's streams when it starts.
#[derive(Debug, Default)]
pub struct History {
    /// The commands to restore, oldest first: the snapshot's, then the log after it.
    pub entries: Vec<LoggedCommand>,
    /// The log stream's last sequence read: a follower goes on after it.
    pub stream_seq: u64,
    /// Whether a snapshot was used.
    pub from_snapshot: Option<u64>,
    /// When the log stream read was made (its identity; nanoseconds since the Unix epoch).
    pub stream_created_ns: u64,
    /// The last command sequence number the history stands for (the snapshot's own, or the
    /// last read after it): new commands are numbered after it, a follower follows on from it.
    pub last_seq: u64,
    /// Messages refused on the log subject while reading (counted, each said).
    pub refused: u64,
}

/// One node's connection to NATS: a runtime thread, the client, and the venue's subjects.
#[derive(bevy::prelude::Resource)]
pub struct NatsNode {
    runtime: tokio::runtime::Runtime,
    client: async_nats::Client,
    js: jetstream::Context,
    /// The venue's subjects and streams.
    pub subjects: VenueSubjects,
    /// Counters, shared with the venue's `/metrics`.
    pub stats: Arc<NetStats>,
}

impl NatsNode {
    /// Connects (waiting up to ten seconds), or says why not, naming the server.
    pub fn connect(config: &NatsConfig, subjects: VenueSubjects) -> Result<Self, NatsError> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("parvis-nats")
            .enable_all()
            .build()?;
        let stats = Arc::new(NetStats::default());
        let shown = shown_url(&config.url);
        // Set once the first connection is made: a `Connected` after that is a reconnection.
        let first_made = Arc::new(AtomicBool::new(false));
        let client = runtime.block_on(async {
            let events = stats.clone();
            let first = first_made.clone();
            let said = shown.clone();
            let mut options = ConnectOptions::new()
                .name(&config.name)
                .connection_timeout(CONNECT_TIMEOUT)
                .max_reconnects(None)
                .event_callback(move |event| {
                    let (stats, url, first) = (events.clone(), said.clone(), first.clone());
                    async move {
                        match event {
                            async_nats::Event::Connected => {
                                if stats.connected.swap(1, Ordering::Relaxed) == 0 && first.load(Ordering::Acquire) {
                                    stats.reconnects.fetch_add(1, Ordering::Relaxed);
                                    warn!("NATS: connected again to {url}");
                                }
                            }
                            async_nats::Event::Disconnected => {
                                stats.connected.store(0, Ordering::Relaxed);
                                warn!("NATS: lost the connection to {url}; reconnecting (commands wait in order)");
                            }
                            async_nats::Event::SlowConsumer(_) => warn!("NATS: this node reads too slowly"),
                            other => warn!("NATS: {other}"),
                        }
                    }
                });
            options = match &config.auth {
                NatsAuth::None => options,
                NatsAuth::Token(token) => options.token(token.clone()),
                NatsAuth::UserPassword(user, password) => options.user_and_password(user.clone(), password.clone()),
                NatsAuth::CredsFile(path) => options
                    .credentials_file(path)
                    .await
                    .map_err(|e| NatsError::Credentials(format!("{}: {e}", path.display())))?,
                NatsAuth::NKeySeed(seed) => options.nkey(seed.clone()),
            };
            if let Some(ca) = &config.ca {
                options = options.add_root_certificates(ca.clone()).require_tls(true);
            }
            let connect = options.connect(config.url.as_str());
            match tokio::time::timeout(CONNECT_TIMEOUT + Duration::from_secs(1), connect).await {
                Ok(Ok(client)) => Ok(client),
                Ok(Err(e)) => Err(NatsError::Connect { url: shown.clone(), message: e.to_string() }),
                Err(_) => Err(NatsError::Connect { url: shown.clone(), message: "no answer within 10 s".into() }),
            }
        })?;
        // Up before `first_made`: the first connection's own event is not counted as a return.
        stats.connected.store(1, Ordering::Relaxed);
        first_made.store(true, Ordering::Release);
        // The JetStream context starts a task of its own: inside the node's runtime.
        let js = {
            let _inside = runtime.enter();
            jetstream::new(client.clone())
        };
        Ok(Self { runtime, client, js, subjects, stats })
    }

    /// Makes the venue's two streams if they do not exist: the command log (every message
    /// kept, on disk, de-duplicated by message id) and the snapshot (the latest only).
    pub fn ensure_streams(&self) -> Result<(), NatsError> {
        self.runtime.block_on(ensure_streams(&self.js, &self.subjects))
    }

    /// Starts the venue's log afresh: deletes its streams and makes them again. (A purge would
    /// keep JetStream's de-duplication ids, and the new log's first commands, numbered from 1
    /// again, would be taken for the old log's and dropped.)
    pub fn new_log(&self) -> Result<(), NatsError> {
        self.runtime.block_on(async {
            for name in [&self.subjects.log_stream, &self.subjects.snapshot_stream] {
                self.js.delete_stream(name).await.map_err(|e| jetstream_error(&format!("deleting {name}"), e))?;
            }
            ensure_streams(&self.js, &self.subjects).await
        })
    }

    /// Reads the latest snapshot and the log after it. Messages that are not logged commands
    /// are refused (counted and said) and reading goes on.
    pub fn history(&self) -> Result<History, NatsError> {
        self.read_history(true)
    }

    /// Reads the whole log from its first message, without the snapshot (`parvis replay`).
    pub fn whole_log(&self) -> Result<History, NatsError> {
        self.read_history(false)
    }

    fn read_history(&self, use_snapshot: bool) -> Result<History, NatsError> {
        let read = read_history(&self.js, &self.subjects, &self.stats, use_snapshot);
        // The timer is made inside the runtime, whose clock it needs.
        match self.runtime.block_on(async { tokio::time::timeout(HISTORY_TIMEOUT, read).await }) {
            Ok(history) => history,
            Err(_) => Err(NatsError::JetStream {
                what: self.subjects.log_stream.clone(),
                message: format!("reading the log took more than {HISTORY_TIMEOUT:?}"),
            }),
        }
    }

    /// Waits until the venue's log holds a scene (its authority started), up to `within`.
    pub fn wait_for_history(&self, within: Duration) -> Result<History, NatsError> {
        let deadline = Instant::now() + within;
        let mut said = false;
        loop {
            let history = self.history();
            match history {
                // A log whose scene load is not there yet (a stream made again, before its
                // snapshot) is waited for like an empty one.
                Ok(h)
                    if h.entries
                        .iter()
                        .any(|e| matches!(e.command, crate::model::command::VenueCommand::LoadScene { .. })) =>
                {
                    return Ok(h);
                }
                Ok(_) | Err(NatsError::JetStream { .. }) if Instant::now() < deadline => {
                    if !said {
                        eprintln!(
                            "parvis: waiting for the authority of {:?} to start its log on NATS",
                            self.subjects.venue
                        );
                        said = true;
                    }
                    std::thread::sleep(Duration::from_millis(250));
                }
                Ok(_) => {
                    return Err(NatsError::JetStream {
                        what: self.subjects.log_stream.clone(),
                        message: format!(
                            "no venue was logged within {within:?}: is its authority running with --nats?"
                        ),
                    });
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// Starts publishing what the venue hands over ([`LogOutgoing`]); `confirmed` moves to
    /// each command JetStream stored, `wants_snapshot` is set when the stream had to be made
    /// again, and `doorbell` wakes a resting venue to release acknowledgements.
    pub fn start_publisher(
        &self,
        outgoing: mpsc::UnboundedReceiver<LogOutgoing>,
        confirmed: Arc<AtomicU64>,
        wants_snapshot: Arc<AtomicBool>,
        doorbell: Doorbell,
    ) {
        let publisher = Publisher {
            js: self.js.clone(),
            subjects: self.subjects.clone(),
            stats: self.stats.clone(),
            confirmed,
            wants_snapshot,
            doorbell,
            last_stream_seq: 0,
            failing: Throttle::default(),
            snapshot_owed: false,
        };
        self.runtime.spawn(publisher.run(outgoing));
    }

    /// Starts following the log after `history` (its stream sequence, in its stream's life),
    /// handing each command to `incoming` in order (redeliveries included: the venue skips
    /// them by sequence number).
    pub fn start_follower(&self, history: &History, incoming: mpsc::Sender<FollowIn>, doorbell: Doorbell) {
        let (js, subjects, stats) = (self.js.clone(), self.subjects.clone(), self.stats.clone());
        let (after, created) = (history.stream_seq, history.stream_created_ns);
        self.runtime.spawn(follow(js, subjects, stats, after, created, incoming, doorbell));
    }

    /// Serves `/metrics` (what `render` writes) on `addr`, for a node without an audience
    /// server; returns the address bound.
    pub fn serve_metrics(
        &self,
        addr: std::net::SocketAddr,
        render: Arc<dyn Fn() -> String + Send + Sync>,
    ) -> std::io::Result<std::net::SocketAddr> {
        let listener = self.runtime.block_on(tokio::net::TcpListener::bind(addr))?;
        let bound = listener.local_addr()?;
        self.runtime.spawn(async move {
            loop {
                let Ok((socket, _)) = listener.accept().await else { continue };
                tokio::spawn(answer_metrics(socket, render.clone()));
            }
        });
        Ok(bound)
    }

    /// Gives the publisher up to `grace` to store what the venue applied, then sends what the
    /// client holds. A command left unstored was never acknowledged to its origin.
    pub fn close(&self, grace: Duration) {
        let deadline = Instant::now() + grace;
        let backlog = || {
            let done = self.stats.stored.load(Ordering::Relaxed) + self.stats.unlogged.load(Ordering::Relaxed);
            self.stats.queued.load(Ordering::Relaxed).saturating_sub(done)
        };
        while backlog() > 0 && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
        if backlog() > 0 {
            warn!("NATS: closing with {} commands not stored by JetStream (never acknowledged)", backlog());
        }
        let client = self.client.clone();
        let _ = self.runtime.block_on(async { tokio::time::timeout(Duration::from_secs(1), client.flush()).await });
    }
}

/// One HTTP/1.1 exchange: `GET /metrics` gets the text, anything else 404. The head is read
/// within 5 s and 4 KiB, so a silent or endless client costs nothing.
async fn answer_metrics(mut socket: tokio::net::TcpStream, render: Arc<dyn Fn() -> String + Send + Sync>) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut head = Vec::with_capacity(512);
    let read = tokio::time::timeout(Duration::from_secs(5), async {
        let mut chunk = [0u8; 1024];
        while !head.windows(4).any(|w| w == b"\r\n\r\n") && head.len() < 4096 {
            match socket.read(&mut chunk).await {
                Ok(0) | Err(_) => return false,
                Ok(n) => head.extend_from_slice(&chunk[..n]),
            }
        }
        true
    })
    .await;
    if !matches!(read, Ok(true)) {
        return;
    }
    let (status, body) = if head.starts_with(b"GET /metrics ") || head.starts_with(b"GET /metrics?") {
        ("200 OK", render())
    } else {
        ("404 Not Found", "only /metrics here\n".to_owned())
    };
    let reply = format!(
        "HTTP/1.1 {status}\r\nContent-Type: text/plain; version=0.0.4\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    let _ = tokio::time::timeout(Duration::from_secs(5), socket.write_all(reply.as_bytes())).await;
}

async fn ensure_streams(js: &jetstream::Context, subjects: &VenueSubjects) -> Result<(), NatsError> {
    let log = stream::Config {
        name: subjects.log_stream.clone(),
        subjects: vec![subjects.log.clone()],
        storage: stream::StorageType::File,
        duplicate_window: DUPLICATE_WINDOW,
        max_message_size: crate::model::net::MAX_MESSAGE_BYTES as i32,
        description: Some(format!("Parvis: the command log of venue {}", subjects.venue)),
        ..Default::default()
    };
    js.get_or_create_stream(log).await.map_err(|e| jetstream_error(&subjects.log_stream, e))?;
    let snapshot = stream::Config {
        name: subjects.snapshot_stream.clone(),
        subjects: vec![subjects.snapshot.clone()],
        storage: stream::StorageType::File,
        max_messages_per_subject: 1,
        description: Some(format!("Parvis: the latest snapshot of venue {}", subjects.venue)),
        ..Default::default()
    };
    js.get_or_create_stream(snapshot).await.map_err(|e| jetstream_error(&subjects.snapshot_stream, e))?;
    Ok(())
}

async fn read_history(
    js: &jetstream::Context,
    subjects: &VenueSubjects,
    stats: &NetStats,
    use_snapshot: bool,
) -> Result<History, NatsError> {
    let mut history = History::default();
    let mut last_seq = 0;
    let mut log = js.get_stream(&subjects.log_stream).await.map_err(|e| jetstream_error(&subjects.log_stream, e))?;
    let info = log.info().await.map_err(|e| jetstream_error(&subjects.log_stream, e))?;
    let (state, log_created_ns) = (info.state.clone(), u64::try_from(info.created.unix_timestamp_nanos()).unwrap_or(0));
    history.stream_created_ns = log_created_ns;
    let mut snapshot_of_this_life = false;
    let snapshots =
        js.get_stream(&subjects.snapshot_stream).await.map_err(|e| jetstream_error(&subjects.snapshot_stream, e))?;
    let latest = match use_snapshot {
        true => snapshots.get_last_raw_message_by_subject(&subjects.snapshot).await.map(Some),
        false => Ok(None),
    };
    match latest {
        Ok(None) => {}
        Ok(Some(message)) => match LogSnapshot::from_message(&subjects.snapshot, &message.payload) {
            Ok(snapshot) if snapshot.stream_created_ns != 0 && snapshot.stream_created_ns != log_created_ns => {
                warn!(
                    "NATS: the latest snapshot (#{}) is of a log stream since deleted; reading the whole log instead",
                    snapshot.seq
                );
            }
            Ok(snapshot) => {
                snapshot_of_this_life = snapshot.stream_created_ns == log_created_ns;
                history.stream_seq = snapshot.stream_seq;
                history.from_snapshot = Some(snapshot.seq);
                last_seq = snapshot.seq;
                history.entries = snapshot.entries;
            }
            Err(e) => {
                stats.refused.fetch_add(1, Ordering::Relaxed);
                warn!("NATS: the latest snapshot is refused, reading the whole log instead: {e}");
            }
        },
        Err(e) if e.kind() == jetstream::stream::LastRawMessageErrorKind::NoMessageFound => {}
        Err(e) => return Err(jetstream_error(&subjects.snapshot_stream, e)),
    }
    // A snapshot of unknown stream life (from before it carried one) past the stream's end
    // belongs to a log since started again. (A snapshot of this life past the end read above
    // was stored just after: the tail after it is empty, and following goes on from it.)
    if history.stream_seq > state.last_sequence && !snapshot_of_this_life {
        history.stream_seq = 0;
    }
    history.last_seq = last_seq;
    if state.messages == 0 || state.last_sequence <= history.stream_seq {
        return Ok(history);
    }
    let consumer = log
        .create_consumer(jetstream::consumer::pull::OrderedConfig {
            deliver_policy: start_after(history.stream_seq),
            ..Default::default()
        })
        .await
        .map_err(|e| jetstream_error(&format!("reading {}", subjects.log_stream), e))?;
    let mut messages =
        consumer.messages().await.map_err(|e| jetstream_error(&format!("reading {}", subjects.log_stream), e))?;
    while let Some(message) = messages.next().await {
        let message = message.map_err(|e| jetstream_error(&format!("reading {}", subjects.log_stream), e))?;
        let stream_seq = message.info().map(|i| i.stream_sequence).unwrap_or(history.stream_seq + 1);
        history.stream_seq = stream_seq;
        match logged_from_message(&subjects.log, &message.payload) {
            Ok(entry) if entry.seq > last_seq && entry.seq - last_seq <= crate::model::net::MAX_SEQ_JUMP => {
                last_seq = entry.seq;
                history.entries.push(entry);
            }
            Ok(entry) if entry.seq > last_seq => {
                history.refused += 1;
                stats.refused.fetch_add(1, Ordering::Relaxed);
                warn!(
                    "NATS: refused on the venue's log (stream #{stream_seq}): #{} is implausibly far after #{last_seq}",
                    entry.seq
                );
            }
            // A retry stored twice (after the de-duplication window): skipped.
            Ok(_) => {
                stats.duplicates.fetch_add(1, Ordering::Relaxed);
            }
            Err(e) => {
                history.refused += 1;
                stats.refused.fetch_add(1, Ordering::Relaxed);
                warn!("NATS: refused on the venue's log (stream #{stream_seq}): {e}");
            }
        }
        if stream_seq >= state.last_sequence {
            break;
        }
    }
    history.last_seq = last_seq;
    Ok(history)
}

/// Delivery from after stream sequence `after`.
fn start_after(after: u64) -> jetstream::consumer::DeliverPolicy {
    if after == 0 {
        jetstream::consumer::DeliverPolicy::All
    } else {
        jetstream::consumer::DeliverPolicy::ByStartSequence { start_sequence: after + 1 }
    }
}

struct Publisher {
    js: jetstream::Context,
    subjects: VenueSubjects,
    stats: Arc<NetStats>,
    confirmed: Arc<AtomicU64>,
    wants_snapshot: Arc<AtomicBool>,
    doorbell: Doorbell,
    last_stream_seq: u64,
    failing: Throttle,
    /// A snapshot must be stored for the new life of the stream (made again under the venue):
    /// until then nodes starting could not find a scene in it. Asked for again until stored.
    snapshot_owed: bool,
}

impl Publisher {
    async fn run(mut self, mut outgoing: mpsc::UnboundedReceiver<LogOutgoing>) {
        while let Some(item) = outgoing.recv().await {
            match item {
                LogOutgoing::Command(entry) => self.store_command(entry).await,
                LogOutgoing::Snapshot { seq, entries } => self.store_snapshot(seq, entries).await,
            }
        }
    }

    /// Publishes one command and waits for JetStream's acknowledgement, trying again (same
    /// message id) until it has it. One at a time, on purpose: a command published after one
    /// that was lost on a broken connection could be stored first, and every reader would
    /// then take the late one for a duplicate. Never gives up: the venue's acknowledgements
    /// wait on it, and a stage manager would rather see a backlog on `/metrics` than lose a
    /// cue.
    async fn store_command(&mut self, entry: LoggedCommand) {
        let payload = match serde_json::to_vec(&entry) {
            // Room for the headers, which the stream's limit counts too.
            Ok(p) if p.len() + 1024 <= crate::model::net::MAX_MESSAGE_BYTES => p,
            Ok(p) => {
                // It cannot be stored, ever: say so loudly and let the show (and the
                // acknowledgements of later commands) go on; followers will name the gap.
                self.stats.unlogged.fetch_add(1, Ordering::Relaxed);
                error!(
                    "NATS: command #{} ({}) is {} bytes, over the log's {} — it is applied here but NOT in the NATS log; followers will miss it",
                    entry.seq,
                    entry.command.summary(),
                    p.len(),
                    crate::model::net::MAX_MESSAGE_BYTES
                );
                self.confirm(&entry);
                return;
            }
            Err(e) => {
                self.stats.unlogged.fetch_add(1, Ordering::Relaxed);
                error!("NATS: command #{} cannot be written as JSON ({e}); it is not in the NATS log", entry.seq);
                self.confirm(&entry);
                return;
            }
        };
        let mut delay = Duration::from_millis(100);
        let mut first_try = true;
        loop {
            let mut headers = HeaderMap::new();
            headers.insert("Nats-Msg-Id", self.subjects.message_id(entry.seq).as_str());
            let stored =
                match self.js.publish_with_headers(self.subjects.log.clone(), headers, payload.clone().into()).await {
                    Ok(ack) => ack.await.map_err(|e| e.to_string()),
                    Err(e) => Err(e.to_string()),
                };
            match stored {
                Ok(ack) => {
                    if ack.duplicate && first_try {
                        // Only a retry can be a duplicate: the stream holds another command
                        // under this number (a log started again without --nats-new-log).
                        self.stats.unlogged.fetch_add(1, Ordering::Relaxed);
                        error!(
                            "NATS: JetStream already held a command numbered #{} for venue {:?}: this one is NOT in the log. Was the log started again without --nats-new-log?",
                            entry.seq, self.subjects.venue
                        );
                    } else {
                        self.last_stream_seq = ack.sequence;
                        self.stats.stored.fetch_add(1, Ordering::Relaxed);
                    }
                    self.stats.lag_ms.store(now_ms().saturating_sub(entry.time_ms), Ordering::Relaxed);
                    self.confirm(&entry);
                    return;
                }
                Err(why) => {
                    first_try = false;
                    self.stats.retries.fetch_add(1, Ordering::Relaxed);
                    let (seq, subject) = (entry.seq, self.subjects.log.clone());
                    self.failing.say(|| {
                        format!("NATS: the log did not store #{seq} on {subject} ({why}); trying again, acknowledgements wait")
                    });
                    self.recover_stream().await;
                    tokio::time::sleep(delay).await;
                    delay = (delay * 2).min(Duration::from_secs(2));
                }
            }
        }
    }

    /// The venue may acknowledge `entry` (and everything before it).
    fn confirm(&self, entry: &LoggedCommand) {
        self.confirmed.fetch_max(entry.seq, Ordering::AcqRel);
        self.doorbell.ring();
    }

    /// After a failed publication: if the venue's streams are gone (deleted under it), makes
    /// them again and asks the venue for a snapshot, so that nodes can start from it.
    async fn recover_stream(&mut self) {
        match self.js.get_stream(&self.subjects.log_stream).await {
            Ok(_) => {}
            Err(e)
                if matches!(
                    e.kind(),
                    jetstream::context::GetStreamErrorKind::JetStream(j)
                        if j.error_code() == jetstream::ErrorCode::STREAM_NOT_FOUND
                ) =>
            {
                match ensure_streams(&self.js, &self.subjects).await {
                    Ok(()) => {
                        error!(
                            "NATS: the command log stream {} was gone (deleted under the running venue); made it again: the commands not yet stored go to it, then a snapshot of the venue",
                            self.subjects.log_stream
                        );
                        self.last_stream_seq = 0;
                        self.snapshot_owed = true;
                        self.wants_snapshot.store(true, Ordering::Release);
                        self.doorbell.ring();
                    }
                    Err(e) => warn!("NATS: cannot make the command log stream again: {e}"),
                }
            }
            // Not reachable: the connection is down, and the client reconnects on its own.
            Err(_) => {}
        }
    }

    async fn store_snapshot(&mut self, seq: u64, entries: Vec<LoggedCommand>) {
        let stored = self.try_store_snapshot(seq, entries).await;
        if !stored && self.snapshot_owed {
            // Asked for again, a second on: the venue sends a fresh one.
            tokio::time::sleep(Duration::from_secs(1)).await;
            self.wants_snapshot.store(true, Ordering::Release);
            self.doorbell.ring();
        }
        if stored {
            self.snapshot_owed = false;
        }
    }

    async fn try_store_snapshot(&mut self, seq: u64, entries: Vec<LoggedCommand>) -> bool {
        // Without the stream's creation time a snapshot could be taken for another life of the
        // stream: not stored.
        let stream_created_ns = match self.js.get_stream(&self.subjects.log_stream).await {
            Ok(mut stream) => match stream.info().await {
                Ok(info) => u64::try_from(info.created.unix_timestamp_nanos()).unwrap_or(0),
                Err(_) => 0,
            },
            Err(_) => 0,
        };
        if stream_created_ns == 0 {
            warn!("NATS: the snapshot at #{seq} is not stored: the log stream's details could not be read");
            return false;
        }
        let snapshot = LogSnapshot { seq, stream_seq: self.last_stream_seq, entries, stream_created_ns };
        let payload = match serde_json::to_vec(&snapshot) {
            Ok(p) if p.len() <= crate::model::net::MAX_MESSAGE_BYTES => p,
            Ok(p) => {
                warn!(
                    "NATS: the snapshot at #{seq} is {} bytes, over the limit: not stored (nodes read the log instead)",
                    p.len()
                );
                return false;
            }
            Err(e) => {
                warn!("NATS: the snapshot at #{seq} cannot be written: {e}");
                return false;
            }
        };
        // A lost snapshot costs a node a longer catch-up, never a command: one try is enough.
        let stored = match self.js.publish(self.subjects.snapshot.clone(), payload.into()).await {
            Ok(ack) => ack.await.map(|_| ()).map_err(|e| e.to_string()),
            Err(e) => Err(e.to_string()),
        };
        match stored {
            Ok(()) => {
                self.stats.snapshots.fetch_add(1, Ordering::Relaxed);
                info!("NATS: snapshot of the venue at #{seq} stored");
                true
            }
            Err(e) => {
                warn!("NATS: the snapshot at #{seq} was not stored ({e}); the next one will be");
                false
            }
        }
    }
}

/// Follows the log live after stream sequence `after` of the stream made at `created_ns`,
/// making the consumer again whenever it breaks (the server restarted, the stream was made
/// again: then the venue is told, and the new stream is read from its start).
async fn follow(
    js: jetstream::Context,
    subjects: VenueSubjects,
    stats: Arc<NetStats>,
    mut after: u64,
    mut created_ns: u64,
    incoming: mpsc::Sender<FollowIn>,
    doorbell: Doorbell,
) {
    let mut trouble = Throttle::default();
    loop {
        let reason = match follow_once(&js, &subjects, &stats, &mut after, &mut created_ns, &incoming, &doorbell).await
        {
            Ok(()) => return,
            Err(why) => why,
        };
        trouble.say(|| {
            format!("NATS: following {} stopped ({reason}); starting again after stream #{after}", subjects.log)
        });
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// One consumer's life; `Ok` when the venue is gone.
async fn follow_once(
    js: &jetstream::Context,
    subjects: &VenueSubjects,
    stats: &NetStats,
    after: &mut u64,
    created_ns: &mut u64,
    incoming: &mpsc::Sender<FollowIn>,
    doorbell: &Doorbell,
) -> Result<(), String> {
    let mut log = js.get_stream(&subjects.log_stream).await.map_err(|e| e.to_string())?;
    let info = log.info().await.map_err(|e| e.to_string())?;
    let created = u64::try_from(info.created.unix_timestamp_nanos()).unwrap_or(0);
    if created != *created_ns {
        // Another life of the stream: the log was started again (`--nats-new-log`) or the
        // stream deleted and made again. Its numbering starts over; the venue is told, so that
        // the new log's commands are not taken for ones it has.
        if *created_ns != 0 {
            warn!(
                "NATS: the venue's log stream {} was made again; following the new one from its start",
                subjects.log_stream
            );
            if incoming.send(FollowIn::LogStartedAgain).await.is_err() {
                return Ok(());
            }
        }
        *created_ns = created;
        *after = 0;
    }
    let consumer = log
        .create_consumer(jetstream::consumer::pull::OrderedConfig {
            deliver_policy: start_after(*after),
            // A lost server is noticed within seconds, not the 30 s of a default pull.
            max_expires: Duration::from_secs(5),
            ..Default::default()
        })
        .await
        .map_err(|e| e.to_string())?;
    let mut messages = consumer.messages().await.map_err(|e| e.to_string())?;
    let mut refusals = Throttle::default();
    // The ordered consumer makes itself again after any loss, from the next stream sequence;
    // a stream deleted and made anew numbers from 1, so that would wait for ever. Checked
    // every two seconds.
    let mut check = tokio::time::interval(Duration::from_secs(2));
    loop {
        let message = tokio::select! {
            message = messages.next() => message,
            _ = check.tick() => {
                match js.get_stream(&subjects.log_stream).await {
                    Ok(mut now) => match now.info().await {
                        Ok(info) if u64::try_from(info.created.unix_timestamp_nanos()).unwrap_or(0) != *created_ns => {
                            return Err("the stream was deleted and made again".into());
                        }
                        _ => continue,
                    },
                    Err(e) => return Err(format!("the stream is not there ({e})")),
                }
            }
        };
        let Some(message) = message else { break };
        let message = message.map_err(|e| e.to_string())?;
        if let Ok(info) = message.info() {
            *after = info.stream_sequence;
        }
        match logged_from_message(&subjects.log, &message.payload) {
            Ok(entry) => {
                if incoming.send(FollowIn::Command(entry)).await.is_err() {
                    return Ok(());
                }
                doorbell.ring();
            }
            Err(e) => {
                stats.refused.fetch_add(1, Ordering::Relaxed);
                refusals.say(|| format!("NATS: refused on the venue's log: {e}"));
            }
        }
    }
    Err("the server ended the subscription".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credentials_come_from_one_variable_and_are_never_shown() {
        let env = |pairs: &'static [(&'static str, &'static str)]| {
            move |name: &str| pairs.iter().find(|(k, _)| *k == name).map(|(_, v)| (*v).to_owned())
        };
        let auth = NatsAuth::from_env(env(&[("PARVIS_NATS_TOKEN", "s3cret")])).unwrap();
        assert!(matches!(auth, NatsAuth::Token(_)));
        assert_eq!(format!("{auth:?}"), "token");
        let auth = NatsAuth::from_env(env(&[("PARVIS_NATS_USER", "edge"), ("PARVIS_NATS_PASSWORD", "pw")])).unwrap();
        assert!(!format!("{auth:?}").contains("pw"));
        let e = NatsAuth::from_env(env(&[("PARVIS_NATS_USER", "edge")])).unwrap_err().to_string();
        assert!(e.contains("PARVIS_NATS_PASSWORD"), "{e}");
        let e =
            NatsAuth::from_env(env(&[("PARVIS_NATS_TOKEN", "a"), ("PARVIS_NATS_USER", "b")])).unwrap_err().to_string();
        assert!(e.contains("keep one"), "{e}");
        let e = NatsAuth::from_env(env(&[("PARVIS_NATS_CREDS", "/nonexistent/x.creds")])).unwrap_err().to_string();
        assert!(e.contains("no file"), "{e}");
        assert!(matches!(NatsAuth::from_env(env(&[])).unwrap(), NatsAuth::None));
    }

    #[test]
    fn a_url_is_shown_without_its_password() {
        assert_eq!(shown_url("nats://edge:s3cret@10.0.0.2:4222"), "nats://…@10.0.0.2:4222");
        assert_eq!(shown_url("tls://a:4222,nats://u:p@b:4222"), "tls://a:4222,nats://…@b:4222");
        assert_eq!(shown_url("127.0.0.1:4222"), "127.0.0.1:4222");
    }
}
