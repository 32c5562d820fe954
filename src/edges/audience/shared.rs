//! What the audience edge's tasks share: its configuration, its own bookkeeping (connections
//! per address, member ids) beside the venue's hub, and the WebSocket settings and closing
//! handshake both its sockets (`/ws` and `/mod`) use.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::{CloseFrame, WebSocketConfig};

use super::fanout::{Fanout, Pace};
use super::session::SessionKeys;
use crate::engine::audience::hub::AudienceHub;
use crate::model::audience::event::UserId;
use crate::model::audience::moderation::{Blocklist, TokenBucket};
use crate::model::audience::protocol::Limits;

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
    /// Web origins (`https://console.example.org`) whose pages may open `/mod`, besides the
    /// venue's own (the Host it is reached at). Browsers send their page's origin; a page on
    /// another site must not drive a moderator's session with the moderator's browser.
    /// Clients that send no origin (tools, scripts) are not browsers and are let through.
    pub mod_origins: Vec<String>,
    /// Web origins whose pages may open `/ws`, besides the venue's own; empty: any origin (the
    /// audience page may be embedded elsewhere).
    pub ws_origins: Vec<String>,
    /// How long a send to one client may wait for room in its socket. A client that reads
    /// nothing for this long is closed: its task would otherwise wait on it for ever, deaf to
    /// bans and to the venue closing, while the kernel holds its unsent frames.
    pub send_timeout: Duration,
    /// Member ids start with this and a '-' (an audience edge's id, `parvis edge`), so that the
    /// venue can tell whose members an edge speaks for; `None`: ids start with `a`.
    pub member_prefix: Option<String>,
    /// What the venue says to everyone goes to each member gathered in one frame at most once
    /// per this interval, and the edge sends at most this many such frames a second in all.
    pub fanout: Pace,
}

impl AudienceConfig {
    /// Defaults that work on a laptop.
    pub fn new(addr: SocketAddr, web_root: PathBuf, venue_title: String) -> Self {
        Self {
            addr,
            web_root,
            max_connections: 20_000,
            limits: Limits { max_chars: 280, messages_per_10s: 10 },
            reactions: ["👏", "❤️", "🔥", "🌹", "✨", "😮"].map(String::from).to_vec(),
            venue_title,
            event_capacity: 65_536,
            hello_timeout: Duration::from_secs(10),
            mod_token: None,
            blocklist: Blocklist::default_fr_en(),
            max_connections_per_address: 256,
            messages_per_10s_per_address: 100,
            mod_origins: Vec::new(),
            ws_origins: Vec::new(),
            send_timeout: Duration::from_secs(10),
            member_prefix: None,
            fanout: DEFAULT_FANOUT,
        }
    }
}

/// How often a member is sent what the venue said to everyone, by default: four frames a
/// second at most, and 20 000 frames a second for the whole crowd (a crowd of 10 000 every
/// half second). A member's own chat line and replies to them do not wait for it.
pub const DEFAULT_FANOUT: Pace = Pace { interval: Duration::from_millis(250), frames_per_second: 20_000 };

/// Why a send did not go out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SendFailed {
    /// The connection is gone.
    Gone,
    /// The client's socket stayed full for the whole timeout: it stopped reading.
    Stalled,
}

/// Sends `message`, waiting at most `timeout` for the client to make room.
pub async fn send_within<Si>(sink: &mut Si, message: Message, timeout: Duration) -> Result<(), SendFailed>
where
    Si: futures_util::Sink<Message> + Unpin,
{
    let mut send = std::pin::pin!(sink.send(message));
    // Almost every send finishes at once, the socket having room: those need no timer, which
    // for tens of thousands of members is measurable work.
    let done = match futures_util::FutureExt::now_or_never(send.as_mut()) {
        Some(done) => done,
        None => tokio::time::timeout(timeout, send).await.map_err(|_| SendFailed::Stalled)?,
    };
    done.map_err(|_| SendFailed::Gone)
}

/// What the edge's tasks share: the venue's hub, and the edge's own bookkeeping.
pub struct Shared {
    /// Where the edge meets the venue: input, broadcasts, mailboxes, moderation, metrics.
    pub hub: Arc<AudienceHub>,
    /// Per network address: open connections and the shared message allowance. Addresses are
    /// kept in memory only, and forgotten when their last connection closes.
    addresses: Mutex<HashMap<std::net::IpAddr, (u32, TokenBucket)>>,
    /// The address each connected page member came from, to ban or time out the address too.
    members: Mutex<HashMap<UserId, IpAddr>>,
    /// Failed `/mod` authentications per address, for backing off.
    mod_failures: Mutex<HashMap<IpAddr, AuthFailures>>,
    /// The key of the page's session tokens.
    pub sessions: SessionKeys,
    /// What the venue says to everyone, gathered per interval.
    pub fanout: Arc<Fanout>,
    config: AudienceConfig,
    next_user: AtomicU64,
    user_salt: u64,
    /// Connections open now (page, moderators, metrics and files alike).
    pub open_connections: AtomicU32,
}

/// Failed moderator authentications from one address.
#[derive(Debug, Clone, Copy)]
struct AuthFailures {
    /// Failures in a row.
    count: u32,
    /// Until when attempts from the address are refused unheard.
    locked_until: Instant,
}

/// Failed `/mod` authentications an address may make before it must wait.
const FREE_AUTH_FAILURES: u32 = 3;
/// Longest wait imposed after failed authentications.
const MAX_AUTH_LOCK: Duration = Duration::from_secs(300);
/// Addresses remembered for failed authentications; beyond, those no longer locked go.
const MAX_AUTH_ADDRESSES: usize = 10_000;

impl Shared {
    /// The edge's state for `config`, feeding the venue's `hub`.
    pub fn new(hub: Arc<AudienceHub>, config: AudienceConfig) -> Self {
        let salt = {
            use std::hash::{BuildHasher, Hasher};
            let mut h = std::collections::hash_map::RandomState::new().build_hasher();
            h.write_u64(std::process::id().into());
            h.finish()
        };
        Self {
            fanout: Arc::new(Fanout::new(&hub, config.fanout)),
            hub,
            addresses: Mutex::default(),
            members: Mutex::default(),
            mod_failures: Mutex::default(),
            sessions: SessionKeys::generate(),
            config,
            next_user: AtomicU64::new(1),
            user_salt: salt,
            open_connections: AtomicU32::new(0),
        }
    }

    /// Remembers that page member `user` is connected from `address`.
    pub fn join_member(&self, user: &UserId, address: IpAddr) {
        self.members.lock().expect("members").insert(user.clone(), address);
    }

    /// Forgets a page member who left.
    pub fn leave_member(&self, user: &UserId) {
        self.members.lock().expect("members").remove(user);
    }

    /// Whether a page member with this id is connected now.
    pub fn member_connected(&self, user: &UserId) -> bool {
        self.members.lock().expect("members").contains_key(user)
    }

    /// The address a connected page member came from.
    pub fn member_address(&self, user: &UserId) -> Option<IpAddr> {
        self.members.lock().expect("members").get(user).copied()
    }

    /// How long `/mod` authentications from `address` must wait, if they must.
    pub fn auth_locked(&self, address: IpAddr, now: Instant) -> Option<Duration> {
        let failures = self.mod_failures.lock().expect("auth failures");
        failures.get(&address).filter(|f| f.locked_until > now).map(|f| f.locked_until - now)
    }

    /// Records a failed `/mod` authentication from `address`: after a few, the address waits
    /// a time that doubles with each further failure. Returns the failures in a row.
    pub fn auth_failed(&self, address: IpAddr, now: Instant) -> u32 {
        let mut failures = self.mod_failures.lock().expect("auth failures");
        if failures.len() >= MAX_AUTH_ADDRESSES && !failures.contains_key(&address) {
            failures.retain(|_, f| f.locked_until > now);
        }
        let entry = failures.entry(address).or_insert(AuthFailures { count: 0, locked_until: now });
        entry.count = entry.count.saturating_add(1);
        if entry.count >= FREE_AUTH_FAILURES {
            let wait = Duration::from_secs(1u64 << (entry.count - FREE_AUTH_FAILURES).min(9)).min(MAX_AUTH_LOCK);
            entry.locked_until = now + wait;
        }
        entry.count
    }

    /// Forgets the failures of an address that authenticated.
    pub fn auth_succeeded(&self, address: IpAddr) {
        self.mod_failures.lock().expect("auth failures").remove(&address);
    }

    /// Whether a browser page of `origin` may open the socket at `path` of this venue, reached
    /// at `host`. No origin: not a browser.
    pub fn origin_allowed(&self, path: &str, origin: Option<&str>, host: Option<&str>) -> bool {
        let Some(origin) = origin else { return true };
        let origin = origin.trim().trim_end_matches('/');
        // The venue's own pages: an origin whose host part is the Host header.
        let own = host.is_some_and(|host| {
            origin.split_once("://").is_some_and(|(_, rest)| rest.eq_ignore_ascii_case(host.trim()))
        });
        let listed = |list: &[String]| list.iter().any(|o| o.trim_end_matches('/').eq_ignore_ascii_case(origin));
        match path {
            "/mod" => own || listed(&self.config.mod_origins),
            _ => self.config.ws_origins.is_empty() || own || listed(&self.config.ws_origins),
        }
    }

    /// The edge's configuration.
    pub fn config(&self) -> &AudienceConfig {
        &self.config
    }

    /// The words refused in names and chat (the venue's policy).
    pub fn blocklist(&self) -> &Blocklist {
        &self.hub.policy.blocklist
    }

    /// Longest line and chat allowance per member (the venue's policy).
    pub fn limits(&self) -> Limits {
        self.hub.policy.limits
    }

    /// Counts a new connection from `ip`; false when the address has too many already.
    pub fn admit_address(&self, ip: std::net::IpAddr) -> bool {
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

    /// Counts a connection from `ip` as closed; the address is forgotten with its last one.
    pub fn release_address(&self, ip: std::net::IpAddr) {
        let mut addresses = self.addresses.lock().expect("addresses");
        if let Some((open, _)) = addresses.get_mut(&ip) {
            *open -= 1;
            if *open == 0 {
                addresses.remove(&ip);
            }
        }
    }

    /// Takes one message from the address's shared allowance.
    pub fn address_allows(&self, ip: std::net::IpAddr, now: Instant) -> bool {
        if self.config.messages_per_10s_per_address == 0 {
            return true;
        }
        self.addresses.lock().expect("addresses").get_mut(&ip).is_none_or(|(_, bucket)| bucket.try_take(now, 1.0))
    }

    /// A new member id.
    pub fn new_user_id(&self) -> UserId {
        // A counter mixed with a per-run random salt: unique, unguessable across runs, and
        // derived from nothing about the person.
        let n = self.next_user.fetch_add(1, Ordering::Relaxed);
        let mut x = n ^ self.user_salt;
        x ^= x >> 33;
        x = x.wrapping_mul(0xff51_afd7_ed55_8ccd);
        x ^= x >> 33;
        match &self.config.member_prefix {
            Some(prefix) => format!("{prefix}-{x:016x}").into(),
            None => format!("a{x:016x}").into(),
        }
    }
}

/// The longest message a member or moderator may send, fragments together.
pub const MAX_MESSAGE: usize = 4 << 10;

/// tungstenite's settings for the moderators' socket (`/mod`).
pub fn socket_config() -> WebSocketConfig {
    // Audience messages are small: tight limits, and small buffers so that tens of thousands
    // of idle connections stay cheap (the tungstenite default reads into 128 KiB per socket;
    // a longer message grows the buffer for as long as it takes to read it).
    WebSocketConfig::default()
        .max_message_size(Some(MAX_MESSAGE))
        .max_frame_size(Some(MAX_MESSAGE))
        // Each read takes at most this much; a longer message is read into room reserved
        // for it whole (its header says its length) and released after.
        .read_buffer_size(128)
        // Messages are written out on flush, so that a gathered frame's messages go in one
        // write; a send is always flushed.
        .write_buffer_size(64 << 10)
        .max_write_buffer_size(256 << 10)
}

/// Sends a close frame and waits briefly for the client's answer, so that the client reads
/// the close code instead of a connection reset.
pub async fn close_gracefully<S>(socket: &mut S, code: CloseCode, reason: &'static str)
where
    S: futures_util::Sink<Message>
        + futures_util::Stream<Item = Result<Message, tokio_tungstenite::tungstenite::Error>>
        + Unpin,
{
    let frame = CloseFrame { code, reason: reason.into() };
    // A client that stopped reading has no room for the close frame either: give up on it
    // after a second rather than hold the task.
    if send_within(socket, Message::Close(Some(frame)), Duration::from_secs(1)).await.is_err() {
        return;
    }
    let drain = async {
        while let Some(Ok(message)) = socket.next().await {
            if matches!(message, Message::Close(_)) {
                break;
            }
        }
    };
    let _ = tokio::time::timeout(Duration::from_secs(1), drain).await;
}
