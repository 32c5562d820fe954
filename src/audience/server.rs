//! The audience edge: a tokio runtime on its own thread serving the audience page, the
//! WebSocket (`/ws`) and metrics. It never touches the ECS: accepted input goes out through a
//! bounded channel (full → dropped and counted), and everything the venue says comes back
//! through a bounded broadcast channel (a slow client skips messages instead of growing memory).

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{broadcast, mpsc};
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::{CloseFrame, WebSocketConfig};
use tokio_tungstenite::tungstenite::Message;

use super::metrics::{AudienceMetrics, Rejection};
use super::moderation::{Blocklist, TokenBucket, moderate};
use super::protocol::{ClientMessage, Limits, PROTOCOL_VERSION, ServerMessage, parse_client_message};
use crate::assets_root::check_relative;

/// A pseudonymous audience member id (never a name, address or anything personal).
pub type UserId = Arc<str>;

/// What the edge hands to the venue.
#[derive(Debug, Clone)]
pub enum AudienceEvent {
    /// Someone joined.
    Joined {
        /// Their id.
        user: UserId,
        /// Display name, moderated.
        name: Arc<str>,
    },
    /// Someone left.
    Left {
        /// Their id.
        user: UserId,
    },
    /// A moderated chat line.
    Chat {
        /// Sender.
        user: UserId,
        /// Sender's display name.
        name: Arc<str>,
        /// Cleaned text.
        text: String,
        /// When the frame arrived, for latency metrics.
        received: Instant,
        /// Whether the sender is staff (moderator, streamer): exempt from cooldowns, votes and
        /// approval. Never true for the audience page.
        staff: bool,
        /// What a chat platform says about the sender and the line (nothing for the page).
        meta: ChatMeta,
    },
    /// A reaction.
    React {
        /// Sender.
        user: UserId,
        /// Emoji.
        emoji: String,
        /// Arrival time.
        received: Instant,
    },
    /// A moderator's request that needs the venue.
    Moderator {
        /// Which moderator connection.
        moderator: Arc<str>,
        /// What to do.
        action: super::moderator::ModeratorAction,
    },
    /// A vote.
    Vote {
        /// Sender.
        user: UserId,
        /// Poll id.
        poll: String,
        /// Option id.
        option: String,
        /// Arrival time.
        received: Instant,
        /// What a chat platform says about the voter (nothing for the page).
        meta: ChatMeta,
    },
}

/// Roles a chat platform gives a member; the audience page gives none.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ChatRoles {
    /// The channel's owner.
    pub broadcaster: bool,
    /// A moderator of the channel.
    pub moderator: bool,
    /// A VIP of the channel.
    pub vip: bool,
    /// A paying subscriber.
    pub subscriber: bool,
}

impl ChatRoles {
    /// Moderators and the streamer: exempt from cooldowns, votes and approval.
    pub fn is_staff(self) -> bool {
        self.broadcaster || self.moderator
    }
}

/// What a chat platform tells about a line beyond its text.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ChatMeta {
    /// The sender's roles.
    pub roles: ChatRoles,
    /// Bits (Twitch's paid cheers) attached to the line.
    pub bits: u32,
    /// The platform's id of the line, so that the platform's moderation can retract it.
    pub platform_id: Option<Arc<str>>,
    /// How far the sender's view lags the stage (the stream's delay): their votes count for
    /// windows as they saw them.
    pub behind: Duration,
    /// Whether the line comes from a stream's chat (and may answer a delay probe).
    pub from_stream: bool,
}

/// How the edge is set up.
#[derive(Debug, Clone)]
pub struct AudienceConfig {
    /// Address to listen on; port 0 picks a free one.
    pub addr: SocketAddr,
    /// Folder with the audience page (`index.html`, …).
    pub web_root: PathBuf,
    /// Most simultaneous connections; more are refused at once.
    pub max_connections: u32,
    /// Chat limits announced to clients and enforced per connection.
    pub limits: Limits,
    /// Allowed reaction emoji.
    pub reactions: Vec<String>,
    /// Venue title for `welcome`.
    pub venue_title: String,
    /// Capacity of the channel to the venue.
    pub event_capacity: usize,
    /// Time allowed for the request head and for `hello`; slower clients are dropped.
    pub hello_timeout: Duration,
    /// Token moderators authenticate with on `/mod`; without one, `/mod` is closed.
    pub mod_token: Option<String>,
    /// Words refused in names and chat.
    pub blocklist: Blocklist,
    /// Most connections from one network address (0: no limit). Several people behind one
    /// venue Wi-Fi share an address, so keep this generous.
    pub max_connections_per_address: u32,
    /// Messages per 10 s from one address, all its connections together (0: no limit), so
    /// that opening many tabs does not multiply a member's allowance.
    pub messages_per_10s_per_address: u32,
}

impl AudienceConfig {
    /// Defaults that work on a laptop.
    pub fn new(addr: SocketAddr, web_root: PathBuf, venue_title: String) -> Self {
        Self {
            addr,
            web_root,
            max_connections: 20_000,
            limits: Limits {
                max_chars: 280,
                messages_per_10s: 10,
            },
            reactions: ["👏", "❤️", "🔥", "🌹", "✨", "😮"].map(String::from).to_vec(),
            venue_title,
            event_capacity: 65_536,
            hello_timeout: Duration::from_secs(10),
            mod_token: None,
            blocklist: Blocklist::default_fr_en(),
            max_connections_per_address: 256,
            messages_per_10s_per_address: 100,
        }
    }
}

/// Moderation decisions shared between the venue (which makes them) and the edge (which
/// enforces them on every message).
#[derive(Debug, Default)]
pub struct ModerationState {
    /// Banned users.
    pub banned: std::collections::HashSet<UserId>,
    /// Users timed out until the given instant.
    pub timed_out: HashMap<UserId, Instant>,
    /// Minimum interval between two chat lines of one user, if slow mode is on.
    pub slow_mode: Option<Duration>,
    /// When each user last chatted, for slow mode.
    pub last_chat: HashMap<UserId, Instant>,
}

/// Senders remembered for slow mode before those whose interval is over are forgotten.
const MAX_LAST_CHAT: usize = 50_000;

/// Why moderators' decisions hold a member's message back.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Held {
    /// Timed out for this much longer.
    TimedOut(Duration),
    /// Slow mode, at one chat line per this interval.
    SlowMode(Duration),
}

impl Held {
    /// The protocol's error code.
    pub fn code(self) -> &'static str {
        match self {
            Held::TimedOut(_) => "timed_out",
            Held::SlowMode(_) => "slow_mode",
        }
    }
}

impl ModerationState {
    /// Whether `user`'s message at `now` is held back: by a time-out (forgotten here once
    /// over), or by slow mode when `slowed` (chat lines of members who are not staff).
    pub fn held(&mut self, user: &UserId, now: Instant, slowed: bool) -> Option<Held> {
        if let Some(until) = self.timed_out.get(user).copied() {
            if now < until {
                return Some(Held::TimedOut(until - now));
            }
            self.timed_out.remove(user);
        }
        let interval = self.slow_mode.filter(|_| slowed)?;
        self.last_chat.get(user).is_some_and(|last| now.duration_since(*last) < interval).then_some(Held::SlowMode(interval))
    }

    /// Records a chat line for slow mode. Audiences churn and platforms bring any number of
    /// senders: beyond a bound, those whose slow-mode interval is over are forgotten.
    pub fn record_chat(&mut self, user: UserId, now: Instant) {
        if self.last_chat.len() >= MAX_LAST_CHAT {
            let keep = self.slow_mode.unwrap_or(Duration::ZERO);
            self.last_chat.retain(|_, at| now.saturating_duration_since(*at) < keep);
        }
        self.last_chat.insert(user, now);
    }
}

/// State shared by the edge's tasks and the venue.
pub struct Shared {
    /// Counters and histograms for `/metrics`.
    pub metrics: AudienceMetrics,
    /// The latest `state` message, sent to every new member.
    pub state_json: RwLock<Arc<str>>,
    /// Moderation decisions.
    pub moderation: Mutex<ModerationState>,
    /// Per-member channels, to answer one member (errors, notices).
    pub direct: Mutex<HashMap<UserId, Arc<Mailbox>>>,
    /// Whether the edge should stop accepting.
    pub stopping: AtomicBool,
    /// Messages for every moderator connection (the approval queue).
    pub moderators: broadcast::Sender<Arc<str>>,
    /// The stream's delay in milliseconds, as the venue knows it (declared or measured); chat
    /// bridges stamp their lines with it.
    pub stream_delay_ms: AtomicU64,
    /// Plain-text announcements for chat platforms (poll results, acknowledgements).
    pub platform_out: broadcast::Sender<Arc<str>>,
    /// The latest approval queue, sent to every moderator who authenticates.
    pub approvals_json: RwLock<Arc<str>>,
    /// Per network address: open connections and the shared message allowance. Addresses are
    /// kept in memory only, and forgotten when their last connection closes.
    addresses: Mutex<HashMap<std::net::IpAddr, (u32, TokenBucket)>>,
    config: AudienceConfig,
    next_user: AtomicU64,
    user_salt: u64,
}

impl Shared {
    /// The edge's configuration.
    pub fn config(&self) -> &AudienceConfig {
        &self.config
    }

    /// The words refused in names and chat.
    pub fn blocklist(&self) -> &Blocklist {
        &self.config.blocklist
    }

    /// Counts a new connection from `ip`; false when the address has too many already.
    fn admit_address(&self, ip: std::net::IpAddr) -> bool {
        let limit = self.config.max_connections_per_address;
        let per_10s = f64::from(self.config.messages_per_10s_per_address);
        let mut addresses = self.addresses.lock().expect("addresses");
        let (open, _) = addresses.entry(ip).or_insert_with(|| (0, TokenBucket::new(per_10s, per_10s / 10.0)));
        if limit > 0 && *open >= limit {
            return false;
        }
        *open += 1;
        true
    }

    fn release_address(&self, ip: std::net::IpAddr) {
        let mut addresses = self.addresses.lock().expect("addresses");
        if let Some((open, _)) = addresses.get_mut(&ip) {
            *open -= 1;
            if *open == 0 {
                addresses.remove(&ip);
            }
        }
    }

    /// Takes one message from the address's shared allowance.
    fn address_allows(&self, ip: std::net::IpAddr, now: Instant) -> bool {
        if self.config.messages_per_10s_per_address == 0 {
            return true;
        }
        self.addresses.lock().expect("addresses").get_mut(&ip).is_none_or(|(_, bucket)| bucket.try_take(now, 1.0))
    }

    /// Sends one message to one member, dropping it if their queue is full.
    pub fn send_to(&self, user: &str, message: &ServerMessage) {
        let mailbox = self.direct.lock().expect("direct map").get(user).cloned();
        if let Some(mailbox) = mailbox
            && !mailbox.push(message.to_json().into())
        {
            self.metrics.dropped_outbound.fetch_add(1, Ordering::Relaxed);
        }
    }

    fn new_user_id(&self) -> UserId {
        // A counter mixed with a per-run random salt: unique, unguessable across runs, and
        // derived from nothing about the person.
        let n = self.next_user.fetch_add(1, Ordering::Relaxed);
        let mut x = n ^ self.user_salt;
        x ^= x >> 33;
        x = x.wrapping_mul(0xff51_afd7_ed55_8ccd);
        x ^= x >> 33;
        format!("a{x:016x}").into()
    }
}

/// A running audience edge.
#[derive(bevy::prelude::Resource)]
pub struct AudienceServer {
    /// The address actually bound.
    pub local_addr: SocketAddr,
    /// Input for the venue.
    pub events: mpsc::Receiver<AudienceEvent>,
    /// Messages for every connected member.
    pub broadcast: broadcast::Sender<Arc<str>>,
    /// Shared state.
    pub shared: Arc<Shared>,
    /// The edge's own end of the venue's queue, for chat bridges.
    events_tx: mpsc::Sender<AudienceEvent>,
    /// The edge's runtime, where chat bridges run too.
    runtime: tokio::runtime::Handle,
}

impl AudienceServer {
    /// A sender into the venue's event queue (chat bridges feed it as the edge does).
    pub fn events_sender(&self) -> mpsc::Sender<AudienceEvent> {
        self.events_tx.clone()
    }

    /// Runs a task on the edge's runtime; it stops with the server.
    pub fn spawn(&self, task: impl std::future::Future<Output = ()> + Send + 'static) {
        self.runtime.spawn(task);
    }
}

/// Messages a slow client may fall behind before it skips ahead.
const BROADCAST_CAPACITY: usize = 1024;
/// Largest HTTP request head accepted.
const MAX_HEAD: usize = 8 * 1024;
/// Messages refused for rate in a row before the connection is closed for flooding.
const FLOOD_STRIKES: u32 = 50;

impl AudienceServer {
    /// Binds the address and starts the edge on a runtime thread of its own.
    pub fn start(config: AudienceConfig) -> std::io::Result<Self> {
        let std_listener = std::net::TcpListener::bind(config.addr)?;
        std_listener.set_nonblocking(true)?;
        let local_addr = std_listener.local_addr()?;
        let (events_tx, events) = mpsc::channel(config.event_capacity);
        let (broadcast, _) = broadcast::channel(BROADCAST_CAPACITY);
        let salt = {
            use std::hash::{BuildHasher, Hasher};
            let mut h = std::collections::hash_map::RandomState::new().build_hasher();
            h.write_u64(std::process::id().into());
            h.finish()
        };
        let shared = Arc::new(Shared {
            metrics: AudienceMetrics::default(),
            state_json: RwLock::new(Arc::from("{\"type\":\"state\",\"params\":{},\"poll\":null,\"audience\":0,\"paused\":false,\"energy\":0.0}")),
            moderation: Mutex::default(),
            direct: Mutex::default(),
            stopping: AtomicBool::new(false),
            moderators: broadcast::channel(64).0,
            platform_out: broadcast::channel(64).0,
            stream_delay_ms: AtomicU64::new(0),
            approvals_json: RwLock::new(Arc::from(r#"{"type":"approvals","items":[]}"#)),
            addresses: Mutex::default(),
            config,
            next_user: AtomicU64::new(1),
            user_salt: salt,
        });
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("parvis-audience")
            .enable_all()
            .build()?;
        let task_shared = shared.clone();
        let task_broadcast = broadcast.clone();
        let handle = runtime.handle().clone();
        let task_events = events_tx.clone();
        std::thread::Builder::new().name("parvis-audience-rt".into()).spawn(move || {
            runtime.block_on(async move {
                match TcpListener::from_std(std_listener) {
                    Ok(listener) => accept_loop(listener, task_shared, task_events, task_broadcast).await,
                    Err(e) => bevy::log::error!("audience server cannot listen: {e}"),
                }
            });
        })?;
        Ok(Self {
            local_addr,
            events,
            broadcast,
            shared,
            events_tx,
            runtime: handle,
        })
    }
}

impl Drop for AudienceServer {
    fn drop(&mut self) {
        self.shared.stopping.store(true, Ordering::Relaxed);
    }
}

async fn accept_loop(
    listener: TcpListener,
    shared: Arc<Shared>,
    events: mpsc::Sender<AudienceEvent>,
    broadcast: broadcast::Sender<Arc<str>>,
) {
    let connections = Arc::new(AtomicU32::new(0));
    while !shared.stopping.load(Ordering::Relaxed) {
        let Ok(Ok((stream, peer))) = tokio::time::timeout(Duration::from_millis(250), listener.accept()).await else {
            continue;
        };
        if connections.load(Ordering::Relaxed) >= shared.config.max_connections {
            shared.metrics.refused_connections.fetch_add(1, Ordering::Relaxed);
            drop(stream);
            continue;
        }
        let ip = peer.ip();
        if !shared.admit_address(ip) {
            shared.metrics.refused_connections.fetch_add(1, Ordering::Relaxed);
            drop(stream);
            continue;
        }
        let _ = stream.set_nodelay(true);
        connections.fetch_add(1, Ordering::Relaxed);
        let (shared, events, broadcast, connections) = (shared.clone(), events.clone(), broadcast.clone(), connections.clone());
        tokio::spawn(async move {
            serve_connection(stream, ip, &shared, events, broadcast).await;
            shared.release_address(ip);
            connections.fetch_sub(1, Ordering::Relaxed);
        });
    }
}

/// A stream that first yields bytes already read (the HTTP head), then the socket.
struct Replayed {
    head: Vec<u8>,
    pos: usize,
    inner: TcpStream,
}

impl AsyncRead for Replayed {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<std::io::Result<()>> {
        if self.pos < self.head.len() {
            let n = (self.head.len() - self.pos).min(buf.remaining());
            let start = self.pos;
            buf.put_slice(&self.head[start..start + n]);
            self.pos += n;
            if self.pos == self.head.len() {
                self.head = Vec::new();
                self.pos = 0;
            }
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl AsyncWrite for Replayed {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }
    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }
    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// Reads the HTTP request head (up to the blank line), within size and time limits.
async fn read_head(stream: &mut TcpStream, timeout: Duration) -> Option<Vec<u8>> {
    let mut head = Vec::with_capacity(1024);
    let mut chunk = [0u8; 1024];
    let read = async {
        loop {
            let n = stream.read(&mut chunk).await.ok()?;
            if n == 0 {
                return None;
            }
            head.extend_from_slice(&chunk[..n]);
            if head.windows(4).any(|w| w == b"\r\n\r\n") {
                return Some(());
            }
            if head.len() > MAX_HEAD {
                return None;
            }
        }
    };
    tokio::time::timeout(timeout, read).await.ok()??;
    Some(head)
}

async fn serve_connection(
    mut stream: TcpStream,
    ip: std::net::IpAddr,
    shared: &Arc<Shared>,
    events: mpsc::Sender<AudienceEvent>,
    broadcast: broadcast::Sender<Arc<str>>,
) {
    let Some(head) = read_head(&mut stream, shared.config.hello_timeout).await else {
        shared.metrics.bad_requests.fetch_add(1, Ordering::Relaxed);
        return;
    };
    let text = String::from_utf8_lossy(&head);
    let mut words = text.lines().next().unwrap_or_default().split_whitespace();
    let (method, target) = (words.next().unwrap_or_default(), words.next().unwrap_or_default());
    let path = target.split(['?', '#']).next().unwrap_or_default().to_owned();
    let upgrade = text.lines().any(|l| {
        let l = l.to_ascii_lowercase();
        l.starts_with("upgrade:") && l.contains("websocket")
    });
    match (method, path.as_str(), upgrade) {
        ("GET", "/ws", true) => serve_audience_socket(Replayed { head, pos: 0, inner: stream }, ip, shared, events, broadcast).await,
        ("GET", "/mod", true) => super::moderator::serve_moderator_socket(Replayed { head, pos: 0, inner: stream }, shared, events).await,
        ("GET", "/metrics", false) => {
            let body = shared.metrics.render(shared.direct.lock().map(|d| d.len()).unwrap_or(0));
            respond(&mut stream, "200 OK", "text/plain; version=0.0.4", body.as_bytes()).await;
        }
        ("GET", _, false) => serve_static(&mut stream, &shared.config.web_root, &path).await,
        _ => respond(&mut stream, "400 Bad Request", "text/plain", b"bad request\n").await,
    }
}

async fn respond(stream: &mut TcpStream, status: &str, content_type: &str, body: &[u8]) {
    let head = format!(
        "HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nCache-Control: no-cache\r\n\
         X-Content-Type-Options: nosniff\r\nContent-Security-Policy: default-src 'self'; connect-src 'self' ws: wss:; img-src 'self' data:\r\n\
         Connection: close\r\n\r\n",
        body.len()
    );
    let _ = stream.write_all(head.as_bytes()).await;
    let _ = stream.write_all(body).await;
    let _ = stream.shutdown().await;
}

/// Serves a file from the web root; paths that could leave it are refused.
async fn serve_static(stream: &mut TcpStream, root: &std::path::Path, path: &str) {
    let relative = match path.trim_start_matches('/') {
        "" => "index.html",
        other => other,
    };
    if check_relative(relative).is_err() {
        respond(stream, "404 Not Found", "text/plain", b"not found\n").await;
        return;
    }
    let file = root.join(relative);
    let inside = match (file.canonicalize(), root.canonicalize()) {
        (Ok(f), Ok(r)) => f.starts_with(r) && f.is_file(),
        _ => false,
    };
    if !inside {
        respond(stream, "404 Not Found", "text/plain", b"not found\n").await;
        return;
    }
    let content_type = match file.extension().and_then(|e| e.to_str()) {
        Some("html") => "text/html; charset=utf-8",
        Some("js" | "mjs") => "text/javascript; charset=utf-8",
        Some("css") => "text/css; charset=utf-8",
        Some("svg") => "image/svg+xml",
        Some("png") => "image/png",
        Some("json") => "application/json",
        _ => "application/octet-stream",
    };
    match tokio::task::spawn_blocking(move || std::fs::read(file)).await {
        Ok(Ok(body)) => respond(stream, "200 OK", content_type, &body).await,
        _ => respond(stream, "404 Not Found", "text/plain", b"not found\n").await,
    }
}

/// Replies waiting for one member (errors, a ban notice, their own chat echo), at most this many.
const MAILBOX_CAPACITY: usize = 32;

/// One member's replies. Unlike a channel it allocates nothing until the first reply, which
/// matters with tens of thousands of members who mostly only watch.
#[derive(Debug, Default)]
pub struct Mailbox {
    queue: Mutex<VecDeque<Arc<str>>>,
    ready: tokio::sync::Notify,
}

impl Mailbox {
    /// Queues a reply; false (and nothing queued) when the mailbox is full.
    pub fn push(&self, message: Arc<str>) -> bool {
        let mut queue = self.queue.lock().expect("mailbox");
        if queue.len() >= MAILBOX_CAPACITY {
            return false;
        }
        queue.push_back(message);
        drop(queue);
        self.ready.notify_one();
        true
    }

    /// The next reply, waiting for one. Cancel-safe: a reply is taken only when returned.
    pub async fn next(&self) -> Arc<str> {
        loop {
            if let Some(message) = self.queue.lock().expect("mailbox").pop_front() {
                return message;
            }
            // A push between the check and this wait leaves a permit, so none is missed.
            self.ready.notified().await;
        }
    }
}

pub(super) fn socket_config() -> WebSocketConfig {
    // Audience messages are small: tight limits, and small buffers so that tens of thousands
    // of idle connections stay cheap (the tungstenite default reads into 128 KiB per socket;
    // a longer message grows the buffer for as long as it takes to read it).
    WebSocketConfig::default()
        .max_message_size(Some(4 << 10))
        .max_frame_size(Some(4 << 10))
        .read_buffer_size(1 << 10)
        .write_buffer_size(0)
        .max_write_buffer_size(256 << 10)
}

async fn serve_audience_socket(
    stream: Replayed,
    ip: std::net::IpAddr,
    shared: &Arc<Shared>,
    events: mpsc::Sender<AudienceEvent>,
    broadcast: broadcast::Sender<Arc<str>>,
) {
    let Ok(socket) = tokio_tungstenite::accept_async_with_config(stream, Some(socket_config())).await else {
        shared.metrics.bad_requests.fetch_add(1, Ordering::Relaxed);
        return;
    };
    let (mut sink, mut source) = socket.split();
    let metrics = &shared.metrics;
    let send = |m: &ServerMessage| Message::text(m.to_json());

    // The first message must be a hello, within the handshake time.
    let hello = tokio::time::timeout(shared.config.hello_timeout, source.next()).await;
    let name = match hello {
        Ok(Some(Ok(Message::Text(text)))) => match parse_client_message(text.as_str()) {
            Ok(ClientMessage::Hello { v, name, .. }) if v == PROTOCOL_VERSION => {
                match moderate(&name, 32, shared.blocklist()) {
                    Ok(name) => name,
                    Err(e) => {
                        metrics.reject(Rejection::from_code(e.code()));
                        let _ = sink.send(send(&ServerMessage::error(e.code(), format!("name refused: {e}")))).await;
                        let _ = sink.close().await;
                        return;
                    }
                }
            }
            Ok(ClientMessage::Hello { v, .. }) => {
                let _ = sink.send(send(&ServerMessage::error("bad_field", format!("protocol version {v} is not supported; this venue speaks {PROTOCOL_VERSION}")))).await;
                return;
            }
            Ok(_) => {
                metrics.reject(Rejection::HelloRequired);
                let _ = sink.send(send(&ServerMessage::error("hello_required", "send hello first"))).await;
                return;
            }
            Err(e) => {
                metrics.reject(Rejection::from_code(e.code()));
                let _ = sink.send(send(&ServerMessage::error(e.code(), e.to_string()))).await;
                return;
            }
        },
        _ => {
            metrics.reject(Rejection::HelloRequired);
            close_gracefully(&mut sink, &mut source, CloseCode::Policy, "no hello").await;
            return;
        }
    };
    let name: Arc<str> = name.into();
    let user = shared.new_user_id();
    let mailbox = Arc::new(Mailbox::default());
    shared.direct.lock().expect("direct map").insert(user.clone(), mailbox.clone());
    metrics.connections_total.fetch_add(1, Ordering::Relaxed);
    let mut updates = broadcast.subscribe();
    let config = &shared.config;
    let welcome = ServerMessage::Welcome {
        v: PROTOCOL_VERSION,
        id: user.to_string(),
        venue: config.venue_title.clone(),
        reactions: config.reactions.clone(),
        limits: config.limits,
    };
    let state: Arc<str> = shared.state_json.read().expect("state snapshot").clone();
    if sink.send(send(&welcome)).await.is_err() || sink.send(Message::text(state.to_string())).await.is_err() {
        shared.direct.lock().expect("direct map").remove(&user);
        return;
    }
    if events.try_send(AudienceEvent::Joined { user: user.clone(), name: name.clone() }).is_err() {
        metrics.dropped_inbound.fetch_add(1, Ordering::Relaxed);
    }

    let limits = config.limits;
    let mut bucket = TokenBucket::new(f64::from(limits.messages_per_10s), f64::from(limits.messages_per_10s) / 10.0);
    let mut strikes = 0u32;
    let close_reason = loop {
        tokio::select! {
            frame = source.next() => {
                let received = Instant::now();
                let reply = match frame {
                    Some(Ok(Message::Text(text))) => {
                        metrics.messages_in.fetch_add(1, Ordering::Relaxed);
                        if !bucket.try_take(received, 1.0) || !shared.address_allows(ip, received) {
                            strikes += 1;
                            metrics.reject(Rejection::RateLimited);
                            if strikes >= FLOOD_STRIKES {
                                break Some((CloseCode::Policy, "flooding"));
                            }
                            let wait = bucket.retry_after(received, 1.0);
                            Some(ServerMessage::error("rate_limited", format!("too many messages; retry in {:.1} s", wait.as_secs_f32())))
                        } else {
                            strikes = 0;
                            handle_text(text.as_str(), &user, &name, received, shared, &events)
                        }
                    }
                    Some(Ok(Message::Binary(_))) => {
                        metrics.reject(Rejection::Binary);
                        Some(ServerMessage::error("binary_not_supported", "send JSON text frames"))
                    }
                    Some(Ok(Message::Close(_))) | None => break None,
                    Some(Ok(_)) => None, // ping/pong: tungstenite answers pings itself
                    Some(Err(e)) => {
                        use tokio_tungstenite::tungstenite::Error as E;
                        let reason = match e {
                            E::Capacity(_) => { metrics.reject(Rejection::TooBig); Some((CloseCode::Size, "message too big")) }
                            E::Utf8(_) => { metrics.reject(Rejection::BadJson); Some((CloseCode::Invalid, "invalid UTF-8")) }
                            _ => None,
                        };
                        break reason;
                    }
                };
                if let Some(reply) = reply
                    && sink.send(send(&reply)).await.is_err()
                {
                    break None;
                }
                if shared.moderation.lock().expect("moderation").banned.contains(&user) {
                    break Some((CloseCode::Policy, "banned"));
                }
            }
            update = updates.recv() => match update {
                Ok(json) => if sink.send(Message::text(json.to_string())).await.is_err() { break None },
                Err(broadcast::error::RecvError::Lagged(n)) => { metrics.dropped_outbound.fetch_add(n, Ordering::Relaxed); }
                Err(broadcast::error::RecvError::Closed) => break None,
            },
            json = mailbox.next() => {
                if sink.send(Message::text(json.to_string())).await.is_err() {
                    break None;
                }
                // A ban arrives this way too: close at once, even if the member is idle.
                if shared.moderation.lock().expect("moderation").banned.contains(&user) {
                    break Some((CloseCode::Policy, "banned"));
                }
            }
        }
    };
    if let Some((code, reason)) = close_reason {
        close_gracefully(&mut sink, &mut source, code, reason).await;
    }
    shared.direct.lock().expect("direct map").remove(&user);
    if events.try_send(AudienceEvent::Left { user }).is_err() {
        metrics.dropped_inbound.fetch_add(1, Ordering::Relaxed);
    }
}

/// Sends a close frame and waits briefly for the client's answer, so that the client reads
/// the close code instead of a connection reset.
pub(super) async fn close_gracefully<Si, St>(sink: &mut Si, source: &mut St, code: CloseCode, reason: &'static str)
where
    Si: futures_util::Sink<Message> + Unpin,
    St: futures_util::Stream<Item = Result<Message, tokio_tungstenite::tungstenite::Error>> + Unpin,
{
    let frame = CloseFrame { code, reason: reason.into() };
    if sink.send(Message::Close(Some(frame))).await.is_err() {
        return;
    }
    let drain = async {
        while let Some(Ok(message)) = source.next().await {
            if matches!(message, Message::Close(_)) {
                break;
            }
        }
    };
    let _ = tokio::time::timeout(Duration::from_secs(1), drain).await;
}

/// Checks one text frame from a member who said hello; returns the reply to send, if any.
fn handle_text(
    text: &str,
    user: &UserId,
    name: &Arc<str>,
    received: Instant,
    shared: &Shared,
    events: &mpsc::Sender<AudienceEvent>,
) -> Option<ServerMessage> {
    let metrics = &shared.metrics;
    let message = match parse_client_message(text) {
        Ok(m) => m,
        Err(e) => {
            metrics.reject(Rejection::from_code(e.code()));
            return Some(ServerMessage::error(e.code(), e.to_string()));
        }
    };
    let held = shared.moderation.lock().expect("moderation").held(user, received, matches!(message, ClientMessage::Chat { .. }));
    if let Some(held) = held {
        metrics.reject(Rejection::from_code(held.code()));
        let text = match held {
            Held::TimedOut(left) => format!("a moderator timed you out for {} more seconds", left.as_secs() + 1),
            Held::SlowMode(interval) => format!("slow mode: one message every {} s", interval.as_secs()),
        };
        return Some(ServerMessage::error(held.code(), text));
    }
    let event = match message {
        ClientMessage::Hello { .. } => {
            metrics.reject(Rejection::BadField);
            return Some(ServerMessage::error("bad_field", "already said hello"));
        }
        ClientMessage::Chat { text } => {
            let text = match moderate(&text, shared.config.limits.max_chars, shared.blocklist()) {
                Ok(t) => t,
                Err(e) => {
                    metrics.reject(Rejection::from_code(e.code()));
                    return Some(ServerMessage::error(e.code(), e.to_string()));
                }
            };
            shared.moderation.lock().expect("moderation").record_chat(user.clone(), received);
            AudienceEvent::Chat { user: user.clone(), name: name.clone(), text, received, staff: false, meta: ChatMeta::default() }
        }
        ClientMessage::React { emoji } => {
            if !shared.config.reactions.contains(&emoji) {
                metrics.reject(Rejection::BadField);
                return Some(ServerMessage::error("bad_field", format!("reactions are: {}", shared.config.reactions.join(" "))));
            }
            AudienceEvent::React { user: user.clone(), emoji, received }
        }
        ClientMessage::Vote { poll, option } => {
            if poll.len() > 64 || option.len() > 64 {
                metrics.reject(Rejection::BadField);
                return Some(ServerMessage::error("bad_field", "poll and option ids are at most 64 bytes"));
            }
            AudienceEvent::Vote { user: user.clone(), poll, option, received, meta: ChatMeta::default() }
        }
    };
    match events.try_send(event) {
        Ok(()) => {
            metrics.accepted.fetch_add(1, Ordering::Relaxed);
            None
        }
        Err(_) => {
            metrics.dropped_inbound.fetch_add(1, Ordering::Relaxed);
            Some(ServerMessage::error("busy", "the venue is busy; message dropped"))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mailbox_holds_at_most_its_capacity_in_order_and_wakes_its_reader() {
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        runtime.block_on(async {
            let mailbox = Arc::new(Mailbox::default());
            for i in 0..MAILBOX_CAPACITY {
                assert!(mailbox.push(i.to_string().into()));
            }
            assert!(!mailbox.push("one too many".into()), "full: refused, not grown");
            for i in 0..MAILBOX_CAPACITY {
                assert_eq!(&*mailbox.next().await, i.to_string());
            }
            // A reader already waiting is woken by the next push.
            let reader = tokio::spawn({
                let mailbox = mailbox.clone();
                async move { mailbox.next().await }
            });
            tokio::task::yield_now().await;
            assert!(mailbox.push("late".into()));
            let got = tokio::time::timeout(Duration::from_secs(5), reader).await.expect("woken").unwrap();
            assert_eq!(&*got, "late");
        });
    }
}
