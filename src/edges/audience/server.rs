//! The audience edge: a tokio runtime on its own thread serving the audience page, the
//! WebSocket (`/ws`) and metrics. It never touches the ECS: accepted input goes out through a
//! bounded channel (full → dropped and counted), and everything the venue says to everyone
//! comes back gathered per interval (`fanout`: a slow client skips frames and is sent the whole
//! state again instead of growing memory); what concerns one member comes through its mailbox.

use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::task::{Context, Poll, ready};
use std::time::{Duration, Instant};

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;

use super::fanout::{Fanout, GroupId};
use super::moderator;
use super::outlet::{MAX_WAITING, Muted, Outlet, ReadFailed};
use super::shared::{AudienceConfig, MAX_MESSAGE, SendFailed, Shared};
use crate::engine::audience::hub::{AudienceHub, AudienceLink, Mailbox, ModerationPolicy};
use crate::engine::audience::metrics::{AudienceMetrics, Rejection};
use crate::model::assets_root::check_relative;
use crate::model::audience::event::{AudienceEvent, ChatMeta, UserId};
use crate::model::audience::moderation::{Held, TokenBucket, moderate, moderate_name};
use crate::model::audience::protocol::{ClientMessage, PROTOCOL_VERSION, ServerMessage, parse_client_message};
use crate::model::websocket::{FrameError, FrameReader, HandshakeError, Incoming, handshake_key, header};

/// A running audience edge. [`AudienceServer::attach`] connects it to a venue app.
#[derive(bevy::prelude::Resource)]
pub struct AudienceServer {
    /// The address actually bound.
    pub local_addr: SocketAddr,
    /// Shared state.
    pub shared: Arc<Shared>,
    /// The venue's end of the hub, until the server is attached to an app.
    link: Option<AudienceLink>,
    /// The edge's runtime, where chat bridges run too.
    runtime: tokio::runtime::Handle,
}

impl AudienceServer {
    /// The venue's hub this edge feeds (chat bridges feed it too).
    pub fn hub(&self) -> &Arc<AudienceHub> {
        &self.shared.hub
    }

    /// The edge's runtime, where chat bridges run too; its tasks stop with the server.
    pub fn runtime(&self) -> &tokio::runtime::Handle {
        &self.runtime
    }

    /// The venue's end of the hub, for a venue elsewhere (`parvis edge` hands its events to
    /// NATS); `None` once taken or attached.
    pub fn take_link(&mut self) -> Option<AudienceLink> {
        self.link.take()
    }

    /// Connects the edge to a venue app: the venue's audience systems drain its input from
    /// the next frame, and the server lives as long as the app.
    pub fn attach(mut self, app: &mut bevy::app::App) {
        if let Some(link) = self.link.take() {
            app.insert_resource(link);
        }
        app.insert_resource(self);
    }
}

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
        let link = AudienceLink::new(
            ModerationPolicy { blocklist: config.blocklist.clone(), limits: config.limits },
            config.event_capacity,
        );
        let shared = Arc::new(Shared::new(link.hub.clone(), config));
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("parvis-audience")
            .enable_all()
            .build()?;
        let task_shared = shared.clone();
        let handle = runtime.handle().clone();
        handle.spawn(shared.fanout.clone().run(link.hub.clone()));
        std::thread::Builder::new().name("parvis-audience-rt".into()).spawn(move || {
            runtime.block_on(async move {
                match TcpListener::from_std(std_listener) {
                    Ok(listener) => accept_loop(listener, task_shared).await,
                    Err(e) => bevy::log::error!("audience server cannot listen: {e}"),
                }
            });
        })?;
        Ok(Self { local_addr, shared, link: Some(link), runtime: handle })
    }
}

impl AudienceServer {
    /// Closes the edge: it stops accepting, every connection closes with "going away" (1001)
    /// and bridges leave their platforms; waits up to `grace` for the connections to go.
    pub fn shutdown(&self, grace: Duration) {
        self.shared.hub.close();
        let deadline = Instant::now() + grace;
        let open = || {
            self.shared.open_connections.load(Ordering::Relaxed) + self.shared.hub.open_bridges.load(Ordering::Relaxed)
        };
        while open() > 0 && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

impl Drop for AudienceServer {
    fn drop(&mut self) {
        self.shared.hub.close();
    }
}

async fn accept_loop(listener: TcpListener, shared: Arc<Shared>) {
    while !shared.hub.stopping() {
        let Ok(Ok((stream, peer))) = tokio::time::timeout(Duration::from_millis(250), listener.accept()).await else {
            continue;
        };
        if shared.open_connections.load(Ordering::Relaxed) >= shared.config().max_connections {
            shared.hub.metrics.refused_connections.fetch_add(1, Ordering::Relaxed);
            drop(stream);
            continue;
        }
        let ip = peer.ip();
        if !shared.admit_address(ip) {
            shared.hub.metrics.refused_connections.fetch_add(1, Ordering::Relaxed);
            drop(stream);
            continue;
        }
        let _ = stream.set_nodelay(true);
        shared.open_connections.fetch_add(1, Ordering::Relaxed);
        let shared = shared.clone();
        // Boxed: what the task captures it keeps for its whole life, and a pointer is smaller.
        let connection = Box::new((stream, ip));
        let task = async move {
            // An idle member's task is what tens of thousands of them hold: the request, the
            // handshake, the hello and the goodbye run boxed (on the heap only while they do),
            // and the task carries only the member and what it waits on.
            if let Some(mut member) = boxed(open(connection, &shared)).await {
                // The member is boxed (the task would hold it twice: as what `open` returned
                // and as this binding), and lent, not moved: an async function keeps a moved-in
                // argument twice too.
                let ending = serve_member(&mut member, &shared).await;
                boxed(goodbye(member, ending, &shared)).await;
            }
            shared.open_connections.fetch_sub(1, Ordering::Relaxed);
        };
        tokio::spawn(task);
    }
}

/// A stream that first yields bytes already read (the HTTP head), then the socket.
struct Replayed {
    head: Vec<u8>,
    /// How much of `head` was read again.
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
            // The head's memory goes once it is read.
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

/// Reads the request and serves it, but for an audience WebSocket's, which it returns (the
/// request head read, the socket as the member's connection and the fan-out will share it).
async fn route(
    mut stream: TcpStream,
    ip: std::net::IpAddr,
    shared: &Arc<Shared>,
) -> Option<(FrameReader, Arc<Outlet>)> {
    let Some(head) = read_head(&mut stream, shared.config().hello_timeout).await else {
        shared.hub.metrics.bad_requests.fetch_add(1, Ordering::Relaxed);
        return None;
    };
    // The head up to its blank line; what follows it (a client's first frames) is not headers.
    let end = head.windows(4).position(|w| w == b"\r\n\r\n").map_or(head.len(), |at| at + 4);
    let text = String::from_utf8_lossy(&head[..end]);
    let mut words = text.lines().next().unwrap_or_default().split_whitespace();
    let (method, target) = (words.next().unwrap_or_default(), words.next().unwrap_or_default());
    let path = target.split(['?', '#']).next().unwrap_or_default().to_owned();
    let upgrade = header(&text, "upgrade").is_some_and(|v| v.to_ascii_lowercase().contains("websocket"));
    if upgrade && matches!(path.as_str(), "/ws" | "/mod") {
        let (origin, host) = (header(&text, "origin"), header(&text, "host"));
        if !shared.origin_allowed(&path, origin, host) {
            shared.hub.metrics.refused_origins.fetch_add(1, Ordering::Relaxed);
            bevy::log::warn!(
                "refused a {path} connection from {ip}: origin {:?} is not allowed",
                origin.unwrap_or_default()
            );
            respond(&mut stream, "403 Forbidden", "text/plain", b"origin not allowed\n").await;
            return None;
        }
    }
    match (method, path.as_str(), upgrade) {
        ("GET", "/ws", true) => return accept_member(stream, &text, &head[end..], shared).await,
        ("GET", "/mod", true) => {
            moderator::serve_moderator_socket(Replayed { head, pos: 0, inner: stream }, ip, shared).await;
        }
        ("GET", "/metrics", false) => {
            let body = shared.hub.render_metrics();
            respond(&mut stream, "200 OK", "text/plain; version=0.0.4", body.as_bytes()).await;
        }
        ("GET", _, false) => serve_static(&mut stream, &shared.config().web_root, &path).await,
        _ => respond(&mut stream, "400 Bad Request", "text/plain", b"bad request\n").await,
    }
    None
}

/// Answers an audience WebSocket's handshake; the member's frames are read from then on by a
/// reader of the edge's own (what the client sent after its request already in it).
async fn accept_member(
    mut stream: TcpStream,
    head: &str,
    early: &[u8],
    shared: &Shared,
) -> Option<(FrameReader, Arc<Outlet>)> {
    let key = match handshake_key(head) {
        Ok(key) => key,
        Err(e) => {
            shared.hub.metrics.bad_requests.fetch_add(1, Ordering::Relaxed);
            // RFC 6455, 4.4: a version the server does not speak is answered with the one it does.
            let (status, extra) = match e {
                HandshakeError::Version(_) => ("426 Upgrade Required", "Sec-WebSocket-Version: 13\r\n"),
                _ => ("400 Bad Request", ""),
            };
            respond_with(&mut stream, status, extra, "text/plain", format!("{e}\n").as_bytes()).await;
            return None;
        }
    };
    let answer = format!(
        "HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Accept: {}\r\n\r\n",
        derive_accept_key(key.as_bytes())
    );
    let outlet = Arc::new(Outlet::new(stream, Arc::new(Mailbox::default())));
    outlet.write_raw(answer.into_bytes());
    let mut reader = FrameReader::new(MAX_MESSAGE);
    reader.feed(early);
    Some((reader, outlet))
}

async fn respond(stream: &mut TcpStream, status: &str, content_type: &str, body: &[u8]) {
    respond_with(stream, status, "", content_type, body).await;
}

/// [`respond`] with `extra` headers (each ending in CRLF).
async fn respond_with(stream: &mut TcpStream, status: &str, extra: &str, content_type: &str, body: &[u8]) {
    let head = format!(
        "HTTP/1.1 {status}\r\n{extra}Content-Type: {content_type}\r\nContent-Length: {}\r\nCache-Control: no-cache\r\n\
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

/// `future` on the heap: a future awaited in place is part of its caller's state for the
/// caller's whole life, so what an idle member does not run (the handshake, a send, the
/// goodbye) is awaited through a box, a pointer in the member's task (docs/benchmarks.md,
/// "Written by the fan-out").
fn boxed<'a, T>(future: impl Future<Output = T> + Send + 'a) -> Pin<Box<dyn Future<Output = T> + Send + 'a>> {
    Box::pin(future)
}

/// Writes out what the fan-out left waiting; stalled when the socket took nothing for
/// `deadline` (a member who reads, however slowly, skips frames instead of being closed).
async fn drain_within(outlet: &Outlet, deadline: Duration) -> Result<(), SendFailed> {
    loop {
        let before = outlet.sent();
        match tokio::time::timeout(deadline, outlet.drain_waiting()).await {
            Ok(Ok(())) => return Ok(()),
            Ok(Err(_)) => return Err(SendFailed::Gone),
            Err(_) if outlet.sent() == before => return Err(SendFailed::Stalled),
            Err(_) => {}
        }
    }
}

/// Ends a connection whose send failed; a client that stopped reading is counted, and gets no
/// close frame (there is no room for one).
fn give_up(failed: SendFailed, metrics: &AudienceMetrics) -> Ending {
    if failed == SendFailed::Stalled {
        metrics.slow_clients_closed.fetch_add(1, Ordering::Relaxed);
    }
    Ending::Gone
}

/// Close codes the edge sends (RFC 6455, 7.4.1).
mod close {
    /// The venue closes.
    pub const AWAY: u16 = 1001;
    /// Banned, flooding, no hello, a hello refused.
    pub const POLICY: u16 = 1008;
}

/// How a member's connection ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Ending {
    /// The client is gone, or stopped reading and has no room for a close frame.
    Gone,
    /// The client closed with this code: answered with the same, and the connection dropped
    /// (RFC 6455, 5.5.1: the server closes the TCP connection once both close frames went).
    Answered(u16),
    /// The edge closes: its close frame, then the client's answer awaited briefly.
    Close(u16, &'static str),
}

/// A member who said hello and was welcomed, with their socket (which the fan-out writes to as
/// well). What every idle member holds for the whole show: kept small.
struct Member {
    reader: FrameReader,
    user: UserId,
    name: Arc<str>,
    ip: std::net::IpAddr,
    outlet: Arc<Outlet>,
    group: GroupId,
    fanout: Arc<Fanout>,
}

impl Drop for Member {
    /// Takes the member out of the fan-out however their task ends: a socket left in its group
    /// would be held open and written to.
    fn drop(&mut self) {
        self.fanout.leave(self.group, &self.outlet);
    }
}

/// The request, and for an audience WebSocket the handshake, the hello and the welcome: the
/// member then. The connection's address is let go if it ends there.
async fn open(connection: Box<(TcpStream, std::net::IpAddr)>, shared: &Arc<Shared>) -> Option<Box<Member>> {
    let (stream, ip) = *connection;
    let member = match route(stream, ip, shared).await {
        Some((reader, outlet)) => admit(reader, outlet, ip, shared).await,
        None => None,
    };
    if member.is_none() {
        shared.release_address(ip);
    }
    member
}

/// The member's last words and the closing handshake, and the edge forgets them.
async fn goodbye(mut member: Box<Member>, ending: Ending, shared: &Shared) {
    shared.fanout.leave(member.group, &member.outlet);
    farewell(&mut member, ending).await;
    shared.hub.direct.lock().expect("direct map").remove(&member.user);
    shared.leave_member(&member.user);
    shared.release_address(member.ip);
    if shared.hub.submit(AudienceEvent::Left { user: member.user.clone() }).is_err() {
        shared.hub.metrics.dropped_inbound.fetch_add(1, Ordering::Relaxed);
    }
}

/// Counts a frame the member's bytes were not and returns the close it is answered with.
fn refused_frames(error: &FrameError, metrics: &AudienceMetrics) -> (u16, &'static str) {
    let (why, reason) = match error {
        FrameError::TooBig { .. } => (Rejection::TooBig, "message too big"),
        FrameError::InvalidUtf8 => (Rejection::BadJson, "invalid UTF-8"),
        // Unmasked frames, reserved bits, unknown opcodes: RFC 6455 asks for a close frame
        // with 1002 before the connection goes.
        _ => (Rejection::Protocol, "protocol error"),
    };
    metrics.reject(why);
    (error.close_code(), reason)
}

/// Refuses a connection before it was welcomed: `error`, then the close.
async fn refuse(outlet: &Outlet, reader: &mut FrameReader, error: ServerMessage) {
    outlet.write_text(&error.to_json());
    close_connection(outlet, reader, close::POLICY, "hello refused").await;
}

/// The hello and the welcome; `None` when the connection ends there.
async fn admit(
    mut reader: FrameReader,
    outlet: Arc<Outlet>,
    ip: std::net::IpAddr,
    shared: &Shared,
) -> Option<Box<Member>> {
    let outlet = &outlet;
    let metrics = &shared.hub.metrics;
    // The first message must be a hello, within the handshake time; pings before it are answered.
    let mut pings = ping_allowance();
    let hello =
        tokio::time::timeout(shared.config().hello_timeout, next_message(outlet, &mut reader, &mut pings)).await;
    let text = match hello {
        Ok(Ok(Some(Incoming::Text(text)))) => text,
        Ok(Ok(Some(Incoming::Binary(_)))) => {
            metrics.reject(Rejection::Binary);
            refuse(outlet, &mut reader, ServerMessage::error("binary_not_supported", "send JSON text frames")).await;
            return None;
        }
        Ok(Ok(Some(Incoming::Close(code)))) => {
            answer_close(outlet, code.map_or(1000, |(code, _)| code)).await;
            return None;
        }
        Ok(Err(ReadFailed::Frame(e))) => {
            let (code, reason) = refused_frames(&e, metrics);
            close_connection(outlet, &mut reader, code, reason).await;
            return None;
        }
        Ok(Ok(_) | Err(ReadFailed::Io)) => return None,
        Err(_) => {
            metrics.hello_timeouts.fetch_add(1, Ordering::Relaxed);
            close_connection(outlet, &mut reader, close::POLICY, "no hello").await;
            return None;
        }
    };
    let (name, session, muted) = match parse_client_message(&text) {
        Ok(ClientMessage::Hello { v, name, session, mute, .. }) if v == PROTOCOL_VERSION => {
            let muted = match Muted::parse(&mute) {
                Ok(muted) => muted,
                Err(e) => {
                    metrics.reject(Rejection::BadField);
                    refuse(outlet, &mut reader, ServerMessage::error("bad_field", e)).await;
                    return None;
                }
            };
            match moderate_name(&name, 32, shared.blocklist()) {
                Ok(name) => (name, session, muted),
                Err(e) => {
                    metrics.reject(Rejection::from_code(e.code()));
                    refuse(outlet, &mut reader, ServerMessage::error(e.code(), format!("name refused: {e}"))).await;
                    return None;
                }
            }
        }
        Ok(ClientMessage::Hello { v, .. }) => {
            let error = ServerMessage::error(
                "bad_field",
                format!("protocol version {v} is not supported; this venue speaks {PROTOCOL_VERSION}"),
            );
            refuse(outlet, &mut reader, error).await;
            return None;
        }
        Ok(_) => {
            metrics.reject(Rejection::HelloRequired);
            refuse(outlet, &mut reader, ServerMessage::error("hello_required", "send hello first")).await;
            return None;
        }
        Err(e) => {
            metrics.reject(Rejection::from_code(e.code()));
            refuse(outlet, &mut reader, ServerMessage::error(e.code(), e.to_string())).await;
            return None;
        }
    };
    // A returning member keeps their id (and their bans, time-outs and cooldowns); a second
    // tab of a member already here gets an id of its own.
    let returning = session.as_deref().and_then(|token| shared.sessions.verify(token));
    if shared.hub.moderation.lock().expect("moderation").is_banned(&returning.clone().unwrap_or_default(), Some(ip)) {
        metrics.reject(Rejection::Banned);
        outlet.write_text(&ServerMessage::error("banned", "a moderator banned you from this venue").to_json());
        close_connection(outlet, &mut reader, close::POLICY, "banned").await;
        return None;
    }
    let user = returning.filter(|user| !shared.member_connected(user)).unwrap_or_else(|| shared.new_user_id());
    let name: Arc<str> = name.into();
    shared.hub.direct.lock().expect("direct map").insert(user.clone(), outlet.mailbox().clone());
    shared.join_member(&user, ip);
    metrics.connections_total.fetch_add(1, Ordering::Relaxed);
    let config = shared.config();
    let welcome = ServerMessage::Welcome {
        v: PROTOCOL_VERSION,
        id: user.to_string(),
        venue: config.venue_title.clone(),
        reactions: config.reactions.clone(),
        limits: shared.limits(),
        session: shared.sessions.sign(&user),
    };
    // The welcome, then the whole state, then what the venue says to everyone.
    outlet.write_text(&welcome.to_json());
    let group = shared.fanout.join(outlet, muted);
    if shared.hub.submit(AudienceEvent::Joined { user: user.clone(), name: name.clone() }).is_err() {
        metrics.dropped_inbound.fetch_add(1, Ordering::Relaxed);
    }
    let (outlet, fanout) = (outlet.clone(), shared.fanout.clone());
    Some(Box::new(Member { reader, user, name, ip, outlet, group, fanout }))
}

/// What a member's task does next, once a message, waiting bytes or a mailbox entry was seen.
enum Step {
    /// Wait for the next thing.
    Go,
    /// Write out what waits, then go on (or end, if the venue closes).
    Drain,
    /// End the connection.
    End(Ending),
}

/// A member's allowance of messages, and how many in a row went over it; pings have one of
/// their own (a client's keep-alive must not eat into its chat).
struct Allowance {
    bucket: TokenBucket,
    pings: TokenBucket,
    strikes: u32,
}

/// Pings answered: 5 a second, 20 in a burst, far more than any keep-alive; a flood beyond
/// goes unanswered rather than costing a write each.
fn ping_allowance() -> TokenBucket {
    TokenBucket::new(20.0, 5.0)
}

/// A member's connection from the welcome until it is to close (and why, when it says). Its
/// state is what an idle member holds for the whole show: what is not waited on is done in
/// plain functions ([`on_message`]), so that nothing else is kept across the waits.
async fn serve_member(member: &mut Member, shared: &Shared) -> Ending {
    let limits = shared.limits();
    let per_second = f64::from(limits.messages_per_10s) / 10.0;
    let bucket = TokenBucket::new(f64::from(limits.messages_per_10s), per_second);
    let mut allowance = Allowance { bucket, pings: ping_allowance(), strikes: 0 };
    loop {
        let step = tokio::select! {
            message = next_message(&member.outlet, &mut member.reader, &mut allowance.pings) => {
                on_message(message, member, &mut allowance, shared)
            }
            // Replies in the mailbox, or the fan-out's bytes the socket had no room for (out as
            // it makes room, or the member stopped reading). The fan-out also wakes the member
            // when the venue closes (its last frames written), which saves each member a
            // listener of its own.
            () = member.outlet.woken() => {
                let outlet = &member.outlet;
                while let Some(json) = outlet.mailbox().try_next() {
                    outlet.write_text(&json);
                }
                // A ban arrives this way too: close at once, even if the member is idle.
                match banned(member, shared) {
                    Step::Go if outlet.waiting_bytes() > 0 || outlet.is_ended() => Step::Drain,
                    step => step,
                }
            }
        };
        match step {
            Step::Go => {}
            Step::Drain => {
                if let Err(failed) = boxed(drain_within(&member.outlet, shared.config().send_timeout)).await {
                    return give_up(failed, &shared.hub.metrics);
                }
                if member.outlet.is_ended() {
                    return Ending::Close(close::AWAY, "the venue is closing");
                }
            }
            Step::End(ending) => return ending,
        }
    }
}

/// The member's next message; pings are answered within `pings` (a flood beyond is not). A
/// plain future, not an async function's: it is part of every idle member's state.
fn next_message<'a>(
    outlet: &'a Outlet,
    reader: &'a mut FrameReader,
    pings: &'a mut TokenBucket,
) -> impl Future<Output = Result<Option<Incoming>, ReadFailed>> + 'a {
    std::future::poll_fn(move |cx| {
        loop {
            match ready!(outlet.poll_message(cx, reader)) {
                Ok(Some(Incoming::Ping(payload))) => {
                    if pings.try_take(Instant::now(), 1.0) {
                        outlet.write_pong(&payload);
                    }
                }
                Ok(Some(Incoming::Pong)) => {}
                other => return Poll::Ready(other),
            }
        }
    })
}

/// Whether the member is banned (then the connection closes at once).
fn banned(member: &Member, shared: &Shared) -> Step {
    if shared.hub.moderation.lock().expect("moderation").is_banned(&member.user, Some(member.ip)) {
        Step::End(Ending::Close(close::POLICY, "banned"))
    } else {
        Step::Go
    }
}

/// A member's message: checked, handed to the venue, answered.
fn on_message(
    message: Result<Option<Incoming>, ReadFailed>,
    member: &Member,
    allowance: &mut Allowance,
    shared: &Shared,
) -> Step {
    let (outlet, ip) = (&member.outlet, member.ip);
    let metrics = &shared.hub.metrics;
    let received = Instant::now();
    let reply = match message {
        Ok(Some(Incoming::Text(text))) => {
            metrics.messages_in.fetch_add(1, Ordering::Relaxed);
            if !allowance.bucket.try_take(received, 1.0) || !shared.address_allows(ip, received) {
                allowance.strikes += 1;
                metrics.reject(Rejection::RateLimited);
                if allowance.strikes >= FLOOD_STRIKES {
                    return Step::End(Ending::Close(close::POLICY, "flooding"));
                }
                let wait = allowance.bucket.retry_after(received, 1.0);
                Some(ServerMessage::error(
                    "rate_limited",
                    format!("too many messages; retry in {:.1} s", wait.as_secs_f32()),
                ))
            } else {
                allowance.strikes = 0;
                handle_text(&text, &member.user, ip, &member.name, received, shared)
            }
        }
        Ok(Some(Incoming::Binary(_))) => {
            metrics.reject(Rejection::Binary);
            Some(ServerMessage::error("binary_not_supported", "send JSON text frames"))
        }
        // The client's close is answered in `farewell`.
        Ok(Some(Incoming::Close(code))) => return Step::End(Ending::Answered(code.map_or(1000, |(code, _)| code))),
        Ok(Some(Incoming::Ping(_) | Incoming::Pong)) => None,
        Ok(None) | Err(ReadFailed::Io) => return Step::End(Ending::Gone),
        Err(ReadFailed::Frame(e)) => {
            let (code, reason) = refused_frames(&e, metrics);
            return Step::End(Ending::Close(code, reason));
        }
    };
    // Replies, like the fan-out's frames, are written by the outlet (what the socket has no
    // room for waits there, driven out by the member's task).
    if let Some(reply) = reply {
        outlet.write_text(&reply.to_json());
    }
    match banned(member, shared) {
        Step::Go if outlet.waiting_bytes() > MAX_WAITING => {
            // A member who sends but does not read is not read from while their answers wait
            // beyond the outlet's bound: their socket must take them first.
            Step::Drain
        }
        step => step,
    }
}

/// The member's last words (a ban's among them) and the closing handshake.
async fn farewell(member: &mut Member, ending: Ending) {
    let outlet = &member.outlet;
    let (code, reason) = match ending {
        Ending::Gone => return,
        Ending::Answered(code) => return answer_close(outlet, code).await,
        Ending::Close(code, reason) => (code, reason),
    };
    if reason == "banned" {
        // The ban is seen as soon as it is made, possibly with replies still waiting in the
        // mailbox (the ban's own message among them, or not yet pushed): they go first, and
        // the member is told of the ban in any case before the close.
        let mut told = false;
        while let Some(json) = outlet.mailbox().try_next() {
            told |= json.contains(r#""code":"banned""#);
            outlet.write_text(&json);
        }
        if !told {
            outlet.write_text(&ServerMessage::error("banned", "a moderator banned you from this venue").to_json());
        }
    }
    close_connection(&member.outlet, &mut member.reader, code, reason).await;
}

/// Answers the client's close frame with its code (RFC 6455, 5.5.1), briefly: the connection
/// is dropped after.
async fn answer_close(outlet: &Outlet, code: u16) {
    outlet.write_close(code, "");
    let _ = tokio::time::timeout(CLOSING, outlet.drain_waiting()).await;
}

/// How long a closing connection may take to write its last words and close frame, in all:
/// a client reading a byte now and then must not hold its place (its address, its id) open.
const CLOSING: Duration = Duration::from_secs(2);

/// The closing handshake from the server's side: the close frame after what waits (within
/// [`CLOSING`]), then the client's answer awaited for a second (read, so that the socket is not
/// reset under the close frame).
async fn close_connection(outlet: &Outlet, reader: &mut FrameReader, code: u16, reason: &str) {
    outlet.write_close(code, reason);
    if !matches!(tokio::time::timeout(CLOSING, outlet.drain_waiting()).await, Ok(Ok(()))) {
        return;
    }
    let answer = async {
        loop {
            match std::future::poll_fn(|cx| outlet.poll_message(cx, reader)).await {
                Ok(Some(Incoming::Close(_))) | Ok(None) | Err(ReadFailed::Io) => return,
                Ok(Some(_)) => {}
                // The stream is not frames any more: what comes is read and dropped.
                Err(ReadFailed::Frame(_)) => return std::future::poll_fn(|cx| outlet.poll_discard(cx)).await,
            }
        }
    };
    let _ = tokio::time::timeout(Duration::from_secs(1), answer).await;
}

/// Checks one text frame from a member who said hello; returns the reply to send, if any.
fn handle_text(
    text: &str,
    user: &UserId,
    ip: std::net::IpAddr,
    name: &Arc<str>,
    received: Instant,
    shared: &Shared,
) -> Option<ServerMessage> {
    let metrics = &shared.hub.metrics;
    let message = match parse_client_message(text) {
        Ok(m) => m,
        Err(e) => {
            metrics.reject(Rejection::from_code(e.code()));
            return Some(ServerMessage::error(e.code(), e.to_string()));
        }
    };
    let held = shared.hub.moderation.lock().expect("moderation").held(
        user,
        Some(ip),
        received,
        matches!(message, ClientMessage::Chat { .. }),
    );
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
            let text = match moderate(&text, shared.limits().max_chars, shared.blocklist()) {
                Ok(t) => t,
                Err(e) => {
                    metrics.reject(Rejection::from_code(e.code()));
                    return Some(ServerMessage::error(e.code(), e.to_string()));
                }
            };
            shared.hub.moderation.lock().expect("moderation").record_chat(user.clone(), received);
            AudienceEvent::Chat {
                user: user.clone(),
                name: name.clone(),
                text,
                received,
                staff: false,
                meta: ChatMeta::default(),
            }
        }
        ClientMessage::React { emoji } => {
            if !shared.config().reactions.contains(&emoji) {
                metrics.reject(Rejection::BadField);
                return Some(ServerMessage::error(
                    "bad_field",
                    format!("reactions are: {}", shared.config().reactions.join(" ")),
                ));
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
    match shared.hub.submit(event) {
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

    /// An outlet over loopback with far more waiting than the sockets hold: both kernel
    /// buffers set small (which also stops the kernel growing them).
    async fn backed_up() -> (Arc<Outlet>, TcpStream) {
        let listening = tokio::net::TcpSocket::new_v4().unwrap();
        listening.set_recv_buffer_size(8 << 10).unwrap();
        listening.bind("127.0.0.1:0".parse().unwrap()).unwrap();
        let listener = listening.listen(8).unwrap();
        let socket = tokio::net::TcpSocket::new_v4().unwrap();
        socket.set_send_buffer_size(8 << 10).unwrap();
        let ours = socket.connect(listener.local_addr().unwrap()).await.unwrap();
        let (client, _) = listener.accept().await.unwrap();
        let outlet = Arc::new(Outlet::new(ours, Arc::default()));
        let line = "x".repeat(60_000);
        while outlet.waiting_bytes() < super::super::outlet::MAX_WAITING / 2 {
            outlet.write_text(&line);
        }
        (outlet, client)
    }

    #[tokio::test]
    async fn a_member_who_reads_slowly_is_drained_and_one_who_reads_nothing_is_stalled() {
        let deadline = Duration::from_millis(300);
        // Reading 4 KiB every 20 ms: far slower than the whole queue within the deadline, but
        // never nothing for that long.
        let (outlet, mut client) = backed_up().await;
        let reader = tokio::spawn(async move {
            let mut buf = vec![0u8; 4 << 10];
            loop {
                if client.read(&mut buf).await.unwrap_or(0) == 0 {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        });
        let started = Instant::now();
        assert_eq!(drain_within(&outlet, deadline).await, Ok(()));
        assert!(started.elapsed() > deadline, "the slow reader took longer than one deadline");
        assert_eq!(outlet.waiting_bytes(), 0);
        reader.abort();
        // Reading nothing: stalled after the deadline.
        let (outlet, _client) = backed_up().await;
        assert_eq!(drain_within(&outlet, deadline).await, Err(SendFailed::Stalled));
    }
}
