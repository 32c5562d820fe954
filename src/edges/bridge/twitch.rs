//! The Twitch chat bridge: IRC over TCP or WebSocket, anonymous or with an OAuth token, that
//! reconnects on its own. It also reads a plain IRC server (members are then `irc:NICK`),
//! which is how it is tested against a real server.

use std::collections::HashSet;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::str::FromStr;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use thiserror::Error;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::{broadcast, mpsc};
use tokio_tungstenite::tungstenite::Message;

use super::{Backoff, BridgeSink, ChatBridge, IncomingChat, OutboundLimiter, Retraction};
use crate::model::audience::event::ChatRoles;
use crate::model::irc::{ClearChatAction, TwitchEvent, parse_line, twitch_event};

/// Twitch's limits on what one account may post (messages per 30 seconds).
pub const POSTS_PER_30S_AS_USER: usize = 20;
/// The same for a moderator or the broadcaster of the channel.
pub const POSTS_PER_30S_AS_MODERATOR: usize = 100;
/// Longest line read; Twitch's own lines stay far below (8 KiB of tags plus 512 bytes).
const MAX_LINE: usize = 16 * 1024;
/// Announcements waiting for the rate limit; the oldest is dropped beyond.
const MAX_WAITING_POSTS: usize = 20;
/// Longest announcement posted, in bytes.
const MAX_POST: usize = 450;

/// Where to connect.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    /// IRC lines straight over the connection, or inside WebSocket messages.
    pub transport: Transport,
    /// Host name or address.
    pub host: String,
    /// Port.
    pub port: u16,
    /// Whether the connection is encrypted (TLS, the server's certificate checked).
    pub tls: bool,
    /// The WebSocket URL path (with its query), `/` for plain IRC.
    pub path: String,
}

/// How IRC lines travel.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    /// One line per `\r\n`: `irc://` and `ircs://`.
    Tcp,
    /// One or more lines per text message: `ws://` and `wss://`.
    WebSocket,
}

impl Endpoint {
    /// Twitch's encrypted IRC endpoint.
    pub fn twitch() -> Self {
        "ircs://irc.chat.twitch.tv:6697".parse().expect("a valid address")
    }

    fn is_loopback(&self) -> bool {
        let host = self.host.trim_start_matches('[').trim_end_matches(']');
        host == "localhost" || host.parse::<std::net::IpAddr>().is_ok_and(|ip| ip.is_loopback())
    }

    fn url(&self) -> String {
        let scheme = match (self.transport, self.tls) {
            (Transport::Tcp, false) => "irc",
            (Transport::Tcp, true) => "ircs",
            (Transport::WebSocket, false) => "ws",
            (Transport::WebSocket, true) => "wss",
        };
        match self.transport {
            Transport::Tcp => format!("{scheme}://{}:{}", self.host, self.port),
            Transport::WebSocket => format!("{scheme}://{}:{}{}", self.host, self.port, self.path),
        }
    }
}

impl fmt::Display for Endpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.url())
    }
}

/// A bad bridge setting.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum TwitchConfigError {
    /// Not `irc[s]://HOST:PORT` or `ws[s]://HOST:PORT/PATH`.
    #[error(
        "{0:?} is not a chat server address: use ircs://HOST:PORT, wss://HOST:PORT/PATH, or irc:// and ws:// unencrypted"
    )]
    BadEndpoint(String),
    /// No channel to join.
    #[error("no channel given: name at least one, e.g. --twitch mychannel")]
    NoChannels,
    /// A channel name Twitch would refuse.
    #[error("{0:?} is not a channel name (letters, digits and _ only, at most 25)")]
    BadChannel(String),
    /// A token would cross the network unencrypted.
    #[error(
        "an OAuth token is only sent over an encrypted connection (ircs:// or wss://), or to this machine; {0} is neither"
    )]
    TokenNeedsTls(String),
    /// A token without the account's login.
    #[error("a token needs the bot account's login too (--twitch-nick)")]
    NickRequired,
    /// Extra root certificates that cannot be read.
    #[error("cannot read the certificate authority file: {0}")]
    BadCertificates(String),
}

/// The bot account, for posting announcements.
#[derive(Clone)]
pub struct Login {
    /// The account's login name.
    pub nick: String,
    token: String,
}

impl Login {
    /// An account with its OAuth token (with or without the `oauth:` prefix).
    pub fn new(nick: &str, token: &str) -> Self {
        Self { nick: nick.to_ascii_lowercase(), token: token.trim().trim_start_matches("oauth:").to_owned() }
    }
}

impl fmt::Debug for Login {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Never the token: settings are logged.
        f.debug_struct("Login").field("nick", &self.nick).field("token", &"<redacted>").finish()
    }
}

/// How the bridge connects.
#[derive(Debug, Clone)]
pub struct TwitchConfig {
    /// The chat server.
    pub endpoint: Endpoint,
    /// Channels to read, lower case, without `#`.
    pub channels: Vec<String>,
    /// The bot account; `None` reads anonymously (`justinfan…`) and posts nothing.
    pub login: Option<Login>,
    /// Silence after which the bridge checks the connection with a PING.
    pub keepalive: Duration,
    /// First and longest wait between reconnection attempts.
    pub backoff: (Duration, Duration),
    /// Time allowed to connect.
    pub connect_timeout: Duration,
    /// Certificate authorities trusted besides the usual public ones (a private relay's).
    pub extra_roots: Vec<rustls::pki_types::CertificateDer<'static>>,
}

impl TwitchConfig {
    /// Reads `CHANNEL[,CHANNEL…]` from Twitch's plain endpoint, anonymously.
    pub fn new(channels: &str) -> Self {
        Self {
            endpoint: Endpoint::twitch(),
            channels: channels
                .split(',')
                .map(|c| c.trim().trim_start_matches('#').to_ascii_lowercase())
                .filter(|c| !c.is_empty())
                .collect(),
            login: None,
            keepalive: Duration::from_secs(240),
            backoff: (Duration::from_secs(1), Duration::from_secs(60)),
            connect_timeout: Duration::from_secs(10),
            extra_roots: Vec::new(),
        }
    }

    /// Trusts the certificate authorities in a PEM file too.
    pub fn trust_pem(&mut self, pem: &[u8]) -> Result<(), TwitchConfigError> {
        use rustls::pki_types::pem::PemObject;
        let before = self.extra_roots.len();
        for cert in rustls::pki_types::CertificateDer::pem_slice_iter(pem) {
            self.extra_roots.push(cert.map_err(|e| TwitchConfigError::BadCertificates(e.to_string()))?);
        }
        if self.extra_roots.len() == before {
            return Err(TwitchConfigError::BadCertificates("no certificate in it".into()));
        }
        Ok(())
    }

    /// Checks the settings before anything connects.
    pub fn validate(&self) -> Result<(), TwitchConfigError> {
        if self.channels.is_empty() {
            return Err(TwitchConfigError::NoChannels);
        }
        if let Some(bad) =
            self.channels.iter().find(|c| c.len() > 25 || !c.chars().all(|ch| ch.is_ascii_alphanumeric() || ch == '_'))
        {
            return Err(TwitchConfigError::BadChannel(bad.clone()));
        }
        if let Some(login) = &self.login {
            if login.nick.is_empty() {
                return Err(TwitchConfigError::NickRequired);
            }
            if !self.endpoint.tls && !self.endpoint.is_loopback() {
                return Err(TwitchConfigError::TokenNeedsTls(self.endpoint.to_string()));
            }
        }
        Ok(())
    }
}

impl FromStr for Endpoint {
    type Err = TwitchConfigError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = || TwitchConfigError::BadEndpoint(s.to_owned());
        let (scheme, rest) = s.split_once("://").ok_or_else(bad)?;
        let (transport, tls) = match scheme {
            "irc" | "tcp" => (Transport::Tcp, false),
            "ircs" => (Transport::Tcp, true),
            "ws" => (Transport::WebSocket, false),
            "wss" => (Transport::WebSocket, true),
            _ => return Err(bad()),
        };
        let (authority, path) = match rest.find('/') {
            Some(at) => (&rest[..at], &rest[at..]),
            None => (rest, "/"),
        };
        let (host, port) = authority.rsplit_once(':').ok_or_else(bad)?;
        let port: u16 = port.parse().map_err(|_| bad())?;
        if host.is_empty() || port == 0 {
            return Err(bad());
        }
        Ok(Endpoint { transport, host: host.to_owned(), port, tls, path: path.to_owned() })
    }
}

/// The bridge itself.
pub struct TwitchBridge {
    config: TwitchConfig,
}

impl TwitchBridge {
    /// A bridge with checked settings.
    pub fn new(config: TwitchConfig) -> Result<Self, TwitchConfigError> {
        config.validate()?;
        Ok(Self { config })
    }
}

impl ChatBridge for TwitchBridge {
    fn name(&self) -> String {
        let channels: Vec<String> = self.config.channels.iter().map(|c| format!("#{c}")).collect();
        format!("twitch:{}", channels.join(","))
    }

    fn run(
        self: Box<Self>,
        sink: BridgeSink,
        outbound: broadcast::Receiver<Arc<str>>,
    ) -> Pin<Box<dyn Future<Output = ()> + Send>> {
        Box::pin(run(self.config, sink, outbound))
    }
}

/// How a session ended.
#[derive(Debug)]
enum SessionEnd {
    /// The venue is stopping.
    Stopped,
    /// The server asked us to reconnect (it is restarting).
    Reconnect,
    /// Login refused: waiting longest before trying again.
    AuthFailed(String),
    /// Connection lost or never made.
    Lost(String),
}

async fn run(config: TwitchConfig, sink: BridgeSink, mut outbound: broadcast::Receiver<Arc<str>>) {
    let seed = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(7, |d| d.as_nanos() as u64);
    let mut backoff = Backoff::new(config.backoff.0, config.backoff.1, seed);
    let mut limiter = OutboundLimiter::new(POSTS_PER_30S_AS_USER, Duration::from_secs(30), MAX_WAITING_POSTS);
    let metrics = &sink.hub().metrics;
    for attempt in 0u64.. {
        let mut joined = false;
        let end = session(&config, &sink, &mut outbound, &mut limiter, &mut joined, seed.wrapping_add(attempt)).await;
        let wait = match &end {
            SessionEnd::Stopped => return,
            // At once after a working session; a server that asks again and again waits
            // like any other failure.
            SessionEnd::Reconnect if joined => {
                bevy::log::info!("chat bridge {}: the server asked to reconnect", config.endpoint);
                backoff.reset();
                Duration::from_millis(50)
            }
            SessionEnd::Reconnect => backoff.next_wait(),
            SessionEnd::AuthFailed(why) => {
                bevy::log::error!(
                    "chat bridge {}: login refused ({why}); check the token and --twitch-nick",
                    config.endpoint
                );
                config.backoff.1
            }
            SessionEnd::Lost(why) => {
                if joined {
                    backoff.reset();
                }
                let wait = backoff.next_wait();
                bevy::log::warn!("chat bridge {}: {why}; reconnecting in {:.1} s", config.endpoint, wait.as_secs_f32());
                wait
            }
        };
        metrics.bridge_reconnects.fetch_add(1, Ordering::Relaxed);
        let until = tokio::time::Instant::now() + wait;
        while tokio::time::Instant::now() < until {
            if sink.stopping() {
                return;
            }
            tokio::time::sleep_until(until.min(tokio::time::Instant::now() + Duration::from_millis(250))).await;
        }
    }
}

/// A connection's byte stream, plain or encrypted.
trait Io: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Io for T {}

type Stream = Box<dyn Io>;

/// The sending half of a connection.
enum Writer {
    Tcp(tokio::io::WriteHalf<Stream>),
    WebSocket(futures_util::stream::SplitSink<tokio_tungstenite::WebSocketStream<Stream>, Message>),
}

/// Longest a write may wait: a server that stops reading must not freeze the bridge.
const WRITE_TIMEOUT: Duration = Duration::from_secs(10);

impl Writer {
    async fn send(&mut self, line: &str) -> Result<(), String> {
        match tokio::time::timeout(WRITE_TIMEOUT, self.send_now(line)).await {
            Ok(result) => result,
            Err(_) => Err(format!("the server took no data for {} s", WRITE_TIMEOUT.as_secs())),
        }
    }

    async fn send_now(&mut self, line: &str) -> Result<(), String> {
        match self {
            Writer::Tcp(w) => {
                let mut bytes = Vec::with_capacity(line.len() + 2);
                bytes.extend_from_slice(line.as_bytes());
                bytes.extend_from_slice(b"\r\n");
                w.write_all(&bytes).await.map_err(|e| e.to_string())?;
                w.flush().await.map_err(|e| e.to_string())
            }
            Writer::WebSocket(w) => w.send(Message::text(line)).await.map_err(|e| e.to_string()),
        }
    }
}

/// A received line, or why one was skipped.
type Line = Result<String, &'static str>;

/// The reader task of a connection, stopped when the session ends (even if the server is mute).
struct Reader(tokio::task::JoinHandle<()>);

impl Drop for Reader {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// TCP, then TLS when asked, checking the server's certificate against the public roots and
/// any extra ones.
async fn open_stream(
    endpoint: &Endpoint,
    extra_roots: &[rustls::pki_types::CertificateDer<'static>],
) -> Result<Stream, String> {
    let tcp = TcpStream::connect((endpoint.host.as_str(), endpoint.port))
        .await
        .map_err(|e| format!("cannot connect: {e}"))?;
    let _ = tcp.set_nodelay(true);
    if !endpoint.tls {
        return Ok(Box::new(tcp));
    }
    let mut roots = rustls::RootCertStore::empty();
    roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
    for cert in extra_roots {
        roots.add(cert.clone()).map_err(|e| format!("unusable extra certificate: {e}"))?;
    }
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_root_certificates(roots)
        .with_no_client_auth();
    let name =
        rustls::pki_types::ServerName::try_from(endpoint.host.trim_start_matches('[').trim_end_matches(']').to_owned())
            .map_err(|e| format!("{}: {e}", endpoint.host))?;
    let tls = tokio_rustls::TlsConnector::from(Arc::new(config))
        .connect(name, tcp)
        .await
        .map_err(|e| format!("TLS handshake failed: {e}"))?;
    Ok(Box::new(tls))
}

/// Connects and starts a reader task that delivers lines.
async fn connect(
    endpoint: &Endpoint,
    extra_roots: &[rustls::pki_types::CertificateDer<'static>],
) -> Result<(Writer, mpsc::Receiver<Line>, Reader), String> {
    let (tx, rx) = mpsc::channel::<Line>(1024);
    let stream = open_stream(endpoint, extra_roots).await?;
    match endpoint.transport {
        Transport::Tcp => {
            let (mut read, write) = tokio::io::split(stream);
            let reader = tokio::spawn(async move {
                let mut buf: Vec<u8> = Vec::with_capacity(4096);
                let mut chunk = vec![0u8; 8192];
                let mut skipping = false;
                loop {
                    let n = match read.read(&mut chunk).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => n,
                    };
                    for &byte in &chunk[..n] {
                        if byte == b'\n' {
                            let line = if skipping {
                                Err("line too long")
                            } else {
                                let end = buf.strip_suffix(b"\r").map_or(buf.len(), <[u8]>::len);
                                String::from_utf8(buf[..end].to_vec()).map_err(|_| "invalid UTF-8")
                            };
                            buf.clear();
                            skipping = false;
                            if tx.send(line).await.is_err() {
                                return;
                            }
                        } else if !skipping {
                            buf.push(byte);
                            if buf.len() > MAX_LINE {
                                buf.clear();
                                skipping = true;
                            }
                        }
                    }
                }
            });
            Ok((Writer::Tcp(write), rx, Reader(reader)))
        }
        Transport::WebSocket => {
            let config = tokio_tungstenite::tungstenite::protocol::WebSocketConfig::default()
                .max_message_size(Some(64 << 10))
                .max_frame_size(Some(64 << 10));
            // The URL only names the resource: the stream is already connected (and encrypted).
            let url = format!("ws://{}:{}{}", endpoint.host, endpoint.port, endpoint.path);
            let (socket, _) = tokio_tungstenite::client_async_with_config(url, stream, Some(config))
                .await
                .map_err(|e| format!("WebSocket handshake failed: {e}"))?;
            let (write, mut read) = socket.split();
            let reader = tokio::spawn(async move {
                while let Some(Ok(message)) = read.next().await {
                    let text = match message {
                        Message::Text(text) => text,
                        Message::Close(_) => return,
                        Message::Binary(_) => {
                            if tx.send(Err("binary message")).await.is_err() {
                                return;
                            }
                            continue;
                        }
                        _ => continue,
                    };
                    for line in text.as_str().split('\n') {
                        let line = line.strip_suffix('\r').unwrap_or(line);
                        if !line.is_empty() && tx.send(Ok(line.to_owned())).await.is_err() {
                            return;
                        }
                    }
                }
            });
            Ok((Writer::WebSocket(write), rx, Reader(reader)))
        }
    }
}

/// One connection, from login to its end.
async fn session(
    config: &TwitchConfig,
    sink: &BridgeSink,
    outbound: &mut broadcast::Receiver<Arc<str>>,
    limiter: &mut OutboundLimiter,
    joined: &mut bool,
    seed: u64,
) -> SessionEnd {
    let metrics = &sink.hub().metrics;
    let (mut writer, mut lines, _reader) =
        match tokio::time::timeout(config.connect_timeout, connect(&config.endpoint, &config.extra_roots)).await {
            Ok(Ok(connection)) => connection,
            Ok(Err(why)) => return SessionEnd::Lost(why),
            Err(_) => return SessionEnd::Lost("connection timed out".into()),
        };
    let mut nick = match &config.login {
        Some(login) => login.nick.clone(),
        None => format!("justinfan{}", 10_000 + seed % 89_999),
    };
    let mut hello = vec!["CAP REQ :twitch.tv/tags twitch.tv/commands".to_owned()];
    if let Some(login) = &config.login {
        hello.push(format!("PASS oauth:{}", login.token));
    }
    hello.push(format!("NICK {nick}"));
    hello.push(format!("USER {nick} 0 * :{nick}"));
    for line in &hello {
        if let Err(e) = writer.send(line).await {
            return SessionEnd::Lost(format!("cannot log in: {e}"));
        }
    }
    let want: HashSet<String> = config.channels.iter().map(|c| format!("#{c}")).collect();
    let mut in_channels: HashSet<String> = HashSet::new();
    let mut cap_done = false;
    let mut last_heard = tokio::time::Instant::now();
    let mut pinged = false;
    let mut tick = tokio::time::interval(Duration::from_millis(250));
    loop {
        let post_at = limiter.next_ready(Instant::now()).map(tokio::time::Instant::from_std);
        tokio::select! {
            line = lines.recv() => {
                let Some(line) = line else { return SessionEnd::Lost("the server closed the connection".into()) };
                last_heard = tokio::time::Instant::now();
                pinged = false;
                let line = match line {
                    Ok(line) => line,
                    Err(why) => {
                        metrics.bridge_malformed.fetch_add(1, Ordering::Relaxed);
                        bevy::log::debug!("chat bridge: skipped a line ({why})");
                        continue;
                    }
                };
                if line.is_empty() {
                    continue;
                }
                let message = match parse_line(&line) {
                    Ok(m) => m,
                    Err(e) => {
                        metrics.bridge_malformed.fetch_add(1, Ordering::Relaxed);
                        bevy::log::debug!("chat bridge: skipped a malformed line ({e})");
                        continue;
                    }
                };
                let reply = match message.command {
                    "CAP" if !cap_done && matches!(message.params.get(1), Some("ACK" | "NAK")) => {
                        cap_done = true;
                        Some("CAP END".to_owned())
                    }
                    "001" => {
                        // The server may have changed or truncated the nick we asked for.
                        if let Some(given) = message.params.get(0).filter(|n| !n.is_empty() && n.len() <= 64) {
                            nick = given.to_owned();
                        }
                        Some(format!("JOIN {}", config.channels.iter().map(|c| format!("#{c}")).collect::<Vec<_>>().join(",")))
                    }
                    // A server that does not know CAP: end the negotiation so registration goes on.
                    "410" | "421" if !cap_done && message.params.iter().any(|p| p.eq_ignore_ascii_case("CAP")) => {
                        cap_done = true;
                        Some("CAP END".to_owned())
                    }
                    "JOIN" => {
                        if let (Some(prefix), Some(channel)) = (message.prefix, message.params.get(0))
                            && prefix.nick.eq_ignore_ascii_case(&nick)
                            && want.contains(&channel.to_ascii_lowercase())
                        {
                            in_channels.insert(channel.to_ascii_lowercase());
                            if !*joined && want.iter().all(|c| in_channels.contains(c)) {
                                *joined = true;
                                bevy::log::info!("chat bridge {}: joined {}", config.endpoint, config.channels.join(", "));
                            }
                        }
                        None
                    }
                    "PING" => Some(format!("PONG :{}", message.params.get(0).unwrap_or(""))),
                    "RECONNECT" => return SessionEnd::Reconnect,
                    // Nick refused or taken: an anonymous bridge takes another number next time.
                    "432" | "433" => return SessionEnd::Lost(format!("the server refused the nick {nick}: {}", message.params.trailing().unwrap_or_default())),
                    // Only the server's own notice (no user prefix): a user's cannot stop the bridge.
                    "NOTICE" if message.prefix.is_none_or(|p| p.user.is_none() && !p.raw.contains('!'))
                        && message.params.get(1).is_some_and(|t| t.contains("authentication failed") || t.contains("Improperly formatted auth")) => {
                        return SessionEnd::AuthFailed(message.params.get(1).unwrap_or_default().to_owned());
                    }
                    "USERSTATE" => {
                        let badges = message.tags.get_raw("badges").unwrap_or("");
                        let moderator = message.tags.get_raw("mod") == Some("1") || badges.split(',').any(|b| b.starts_with("broadcaster/") || b.starts_with("moderator/"));
                        limiter.set_limit(if moderator { POSTS_PER_30S_AS_MODERATOR } else { POSTS_PER_30S_AS_USER });
                        None
                    }
                    "PRIVMSG" if message.tags.is_empty() => {
                        // A plain IRC server: no tags, so the nick is the only identity.
                        let channel = message.params.get(0).unwrap_or_default().to_ascii_lowercase();
                        if !want.contains(&channel) {
                            // Only the channels the bridge joined may act on the venue.
                            metrics.bridge_foreign.fetch_add(1, Ordering::Relaxed);
                        } else if let (Some(prefix), Some(text)) = (message.prefix, message.params.get(1))
                            && !prefix.nick.eq_ignore_ascii_case(&nick)
                        {
                            let chat = IncomingChat {
                                user: format!("irc:{}", prefix.nick.to_ascii_lowercase()),
                                name: prefix.nick.to_owned(),
                                text: text.to_owned(),
                                roles: ChatRoles::default(),
                                bits: 0,
                                platform_id: None,
                                received: Instant::now(),
                            };
                            let _ = sink.chat(chat);
                        }
                        None
                    }
                    _ => {
                        match twitch_event(&message) {
                            Ok(Some(event)) if event_channel(&event).is_none_or(|c| want.contains(&format!("#{}", c.to_ascii_lowercase()))) => {
                                deliver(sink, event);
                            }
                            // A line for a channel the bridge did not join (a server or a
                            // relay sending more than asked) must not act on the venue.
                            Ok(Some(_)) => {
                                metrics.bridge_foreign.fetch_add(1, Ordering::Relaxed);
                            }
                            Ok(None) => {}
                            Err(e) => {
                                metrics.bridge_malformed.fetch_add(1, Ordering::Relaxed);
                                bevy::log::debug!("chat bridge: skipped a line ({e})");
                            }
                        }
                        None
                    }
                };
                if let Some(reply) = reply
                    && let Err(e) = writer.send(&reply).await
                {
                    return SessionEnd::Lost(format!("cannot write: {e}"));
                }
            }
            announcement = outbound.recv(), if config.login.is_some() => match announcement {
                Ok(text) => {
                    let text: String = text.chars().filter(|c| !c.is_control()).collect();
                    let text = &text[..text.floor_char_boundary(MAX_POST)];
                    let dropped_before = limiter.dropped;
                    for channel in &config.channels {
                        limiter.push(format!("PRIVMSG #{channel} :{text}").into());
                    }
                    metrics.bridge_post_dropped.fetch_add(limiter.dropped - dropped_before, Ordering::Relaxed);
                }
                Err(broadcast::error::RecvError::Lagged(n)) => { metrics.bridge_post_dropped.fetch_add(n, Ordering::Relaxed); }
                Err(broadcast::error::RecvError::Closed) => return SessionEnd::Stopped,
            },
            _ = sleep_until_opt(post_at), if *joined => {
                while let Some(line) = limiter.pop_ready(Instant::now()) {
                    if let Err(e) = writer.send(&line).await {
                        return SessionEnd::Lost(format!("cannot write: {e}"));
                    }
                    metrics.bridge_posted.fetch_add(1, Ordering::Relaxed);
                }
            }
            _ = tick.tick() => {
                if sink.stopping() {
                    // The venue closes: leave the platform properly rather than drop the line.
                    let _ = writer.send("QUIT :the venue is closing").await;
                    return SessionEnd::Stopped;
                }
                let silent = last_heard.elapsed();
                if silent >= config.keepalive + Duration::from_secs(20).min(config.keepalive) && pinged {
                    return SessionEnd::Lost(format!("no answer from the server for {} s", silent.as_secs()));
                }
                if silent >= config.keepalive && !pinged {
                    pinged = true;
                    if let Err(e) = writer.send("PING :parvis").await {
                        return SessionEnd::Lost(format!("cannot write: {e}"));
                    }
                }
            }
        }
    }
}

async fn sleep_until_opt(at: Option<tokio::time::Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

/// The channel (without `#`) a Twitch event is about, for events that act on the venue.
fn event_channel<'a>(event: &TwitchEvent<'a>) -> Option<&'a str> {
    match event {
        TwitchEvent::Privmsg(m) => Some(m.channel),
        TwitchEvent::UserNotice(n) => Some(n.channel),
        TwitchEvent::ClearChat(c) => Some(c.channel),
        TwitchEvent::ClearMsg(c) => Some(c.channel),
        TwitchEvent::RoomState(r) => Some(r.channel),
        _ => None,
    }
}

/// Hands one Twitch event to the venue.
fn deliver(sink: &BridgeSink, event: TwitchEvent<'_>) {
    let roles = |r: crate::model::irc::Roles| ChatRoles {
        broadcaster: r.broadcaster,
        moderator: r.moderator,
        vip: r.vip,
        subscriber: r.subscriber,
    };
    let _ = match event {
        TwitchEvent::Privmsg(m) => sink.chat(IncomingChat {
            user: format!("twitch:{}", m.user_id),
            name: m.display_name.into_owned(),
            text: m.text.to_owned(),
            roles: roles(m.roles),
            bits: m.bits.unwrap_or(0),
            platform_id: Some(m.message_id.to_owned()),
            received: Instant::now(),
        }),
        // A subscription's or raid's own message is chat like any other.
        TwitchEvent::UserNotice(n) => match n.text {
            Some(text) => sink.chat(IncomingChat {
                user: format!("twitch:{}", n.user_id),
                name: n.display_name.into_owned(),
                text: text.to_owned(),
                roles: roles(n.roles),
                bits: 0,
                platform_id: n.message_id.map(str::to_owned),
                received: Instant::now(),
            }),
            None => Ok(()),
        },
        TwitchEvent::ClearChat(c) => match c.action {
            ClearChatAction::ClearAll => sink.retract(Retraction::All),
            ClearChatAction::Ban { user_id, .. } | ClearChatAction::Timeout { user_id, .. } => {
                sink.retract(Retraction::User(format!("twitch:{user_id}")))
            }
        },
        TwitchEvent::ClearMsg(c) => sink.retract(Retraction::Line(c.target_msg_id.to_owned())),
        TwitchEvent::RoomState(state) => {
            if let Some(slow) = state.slow_seconds {
                bevy::log::info!("chat bridge: #{} slow mode {} s", state.channel, slow);
            }
            Ok(())
        }
        _ => Ok(()),
    };
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoints_parse_with_their_transport_and_encryption() {
        let e: Endpoint = "irc://127.0.0.1:6667".parse().unwrap();
        assert_eq!((e.transport, e.tls, e.host.as_str(), e.port), (Transport::Tcp, false, "127.0.0.1", 6667));
        let e: Endpoint = "wss://irc-ws.chat.twitch.tv:443".parse().unwrap();
        assert_eq!((e.transport, e.tls, e.path.as_str()), (Transport::WebSocket, true, "/"));
        assert_eq!(e.to_string(), "wss://irc-ws.chat.twitch.tv:443/");
        assert_eq!(Endpoint::twitch().to_string(), "ircs://irc.chat.twitch.tv:6697");
        for bad in ["irc.chat.twitch.tv", "irc://host", "irc://:6667", "http://h:1", "irc://h:0", "irc://h:99999"] {
            assert!(matches!(bad.parse::<Endpoint>(), Err(TwitchConfigError::BadEndpoint(_))), "{bad}");
        }
    }

    #[test]
    fn settings_are_checked_and_tokens_never_leave_unencrypted() {
        assert_eq!(TwitchConfig::new("Parvis, #Other").channels, ["parvis", "other"]);
        assert_eq!(TwitchConfig::new(" , ").validate(), Err(TwitchConfigError::NoChannels));
        assert!(matches!(TwitchConfig::new("bad-name").validate(), Err(TwitchConfigError::BadChannel(_))));
        let mut config = TwitchConfig::new("parvis");
        config.login = Some(Login::new("parvisbot", "oauth:secret"));
        assert_eq!(config.validate(), Ok(()), "Twitch's own endpoint is encrypted");
        config.endpoint = "irc://irc.chat.twitch.tv:6667".parse().unwrap();
        assert!(matches!(config.validate(), Err(TwitchConfigError::TokenNeedsTls(_))));
        config.endpoint = "irc://127.0.0.1:6667".parse().unwrap();
        assert_eq!(config.validate(), Ok(()), "this machine");
        assert!(matches!(config.trust_pem(b"not a certificate"), Err(TwitchConfigError::BadCertificates(_))));
        let shown = format!("{config:?}");
        assert!(!shown.contains("secret") && shown.contains("redacted"), "{shown}");
    }
}
