//! Chat bridges: chat from streaming platforms enters the same moderation → rules → commands
//! pipeline as the venue's own audience page.
//!
//! A bridge is a [`ChatBridge`]: an async task that speaks its platform's protocol, turns each
//! chat line into an [`IncomingChat`] and each platform moderation action into a
//! [`Retraction`], and hands them to its [`BridgeSink`]. The sink applies the venue's moderation
//! (cleaning, blocklist, rate limits, bans, slow mode) exactly as for the page, so a new
//! platform touches neither the pipeline nor the rules. The model's `irc` parses the Twitch
//! dialect of IRCv3; `twitch` connects to Twitch (or any IRC server). See docs/bridges.md.

pub mod twitch;

use std::collections::{HashMap, VecDeque};
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::broadcast;

use crate::engine::audience::hub::AudienceHub;
use crate::engine::audience::metrics::Rejection;
use crate::model::audience::event::{AudienceEvent, ChatMeta, ChatRoles, UserId};
use crate::model::audience::moderation::{TokenBucket, moderate, moderate_name};
use crate::model::audience::moderator::ModeratorAction;
use crate::model::rng::SeededRng;

/// A chat platform connected to the venue.
pub trait ChatBridge: Send + 'static {
    /// A short name for logs and metrics, e.g. `twitch:#parvis`.
    fn name(&self) -> String;

    /// Runs until `sink` says the venue is stopping: connects, reconnects, and feeds the sink.
    /// Announcements from the venue (poll results, acknowledgements) arrive on `outbound`; a
    /// bridge that cannot post (read-only) ignores them.
    fn run(
        self: Box<Self>,
        sink: BridgeSink,
        outbound: broadcast::Receiver<Arc<str>>,
    ) -> Pin<Box<dyn Future<Output = ()> + Send>>;
}

/// A chat line as a platform delivers it, before the venue's moderation.
#[derive(Debug, Clone)]
pub struct IncomingChat {
    /// Stable pseudonymous id with the platform's prefix, e.g. `twitch:141981764`.
    pub user: String,
    /// The name the platform shows (moderated before use).
    pub name: String,
    /// The text as sent.
    pub text: String,
    /// Roles, bits, the platform's line id.
    pub roles: ChatRoles,
    /// Bits cheered with the line.
    pub bits: u32,
    /// The platform's id of the line, for its own moderation to retract it later.
    pub platform_id: Option<String>,
    /// When the line arrived.
    pub received: Instant,
}

/// A platform's moderators took something back; the venue retracts it too (and hides it if it
/// is shown on stage).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Retraction {
    /// One line, by the platform's id.
    Line(String),
    /// Every recent line of one member (ban or time-out), by the venue's user id.
    User(String),
    /// Every recent line from this platform (the chat was cleared).
    All,
}

/// Why the sink did not pass a line on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// Refused by moderation, with the protocol's error code.
    Moderation(&'static str),
    /// The venue's queue was full.
    Busy,
}

/// Members a bridge keeps rate-limit buckets for; the oldest half is forgotten beyond this.
const MAX_TRACKED_MEMBERS: usize = 50_000;

/// Where a bridge delivers chat: the venue's moderation, then its event queue.
#[derive(Clone)]
pub struct BridgeSink {
    hub: Arc<AudienceHub>,
    /// Name of the bridge, for the retractions it causes (logged as a moderator's).
    name: Arc<str>,
    /// Id prefix of this platform's members, e.g. `twitch:`.
    prefix: Arc<str>,
    buckets: Arc<Mutex<HashMap<String, TokenBucket>>>,
}

impl BridgeSink {
    /// A sink into the venue's audience hub, for members ids starting with `prefix`. Their
    /// lines carry the venue's stream delay (`Audience::stream_delay`, declared or measured).
    pub fn new(hub: Arc<AudienceHub>, name: &str, prefix: &str) -> Self {
        Self { hub, name: name.into(), prefix: prefix.into(), buckets: Arc::default() }
    }

    /// The venue's audience hub (metrics, moderation).
    pub fn hub(&self) -> &AudienceHub {
        &self.hub
    }

    /// Whether the venue is shutting down.
    pub fn stopping(&self) -> bool {
        self.hub.stopping()
    }

    /// Moderates a line and passes it to the venue: a chat line, or a vote for `!vote OPTION`.
    pub fn chat(&self, chat: IncomingChat) -> Result<(), Refusal> {
        let metrics = &self.hub.metrics;
        metrics.bridge_lines.fetch_add(1, Ordering::Relaxed);
        let user: UserId = chat.user.as_str().into();
        let staff = chat.roles.is_staff();
        let refuse = |code: &'static str| {
            metrics.reject(Rejection::from_code(code));
            Err(Refusal::Moderation(code))
        };
        {
            let mut moderation = self.hub.moderation.lock().expect("moderation");
            if moderation.is_banned(&user, None) {
                return refuse("banned");
            }
            if let Some(held) = moderation.held(&user, None, chat.received, !staff) {
                return refuse(held.code());
            }
        }
        if !staff && !self.take_token(&chat.user, chat.received) {
            return refuse("rate_limited");
        }
        let limits = self.hub.policy.limits;
        let text = match moderate(&chat.text, limits.max_chars, &self.hub.policy.blocklist) {
            Ok(text) => text,
            Err(e) => return refuse(e.code()),
        };
        // A name the blocklist refuses is replaced, not the line: the platform allowed it.
        let name: Arc<str> =
            moderate_name(&chat.name, 32, &self.hub.policy.blocklist).unwrap_or_else(|_| "viewer".to_owned()).into();
        self.hub.moderation.lock().expect("moderation").record_chat(user.clone(), chat.received);
        let meta = ChatMeta {
            roles: chat.roles,
            bits: chat.bits,
            platform_id: chat.platform_id.map(Into::into),
            behind: Duration::from_millis(self.hub.stream_delay_ms.load(Ordering::Relaxed)),
            from_stream: true,
        };
        let event = match vote_option(&text) {
            Some(option) => AudienceEvent::Vote {
                user,
                poll: String::new(),
                option: option.to_owned(),
                received: chat.received,
                meta,
            },
            None => AudienceEvent::Chat { user, name, text, received: chat.received, staff, meta },
        };
        self.send(event)
    }

    /// Retracts lines the platform's moderators removed.
    pub fn retract(&self, retraction: Retraction) -> Result<(), Refusal> {
        let mut clear = (None, None, None);
        match retraction {
            Retraction::Line(id) => clear.0 = Some(id),
            Retraction::User(user) => clear.1 = Some(user),
            Retraction::All => clear.2 = Some(self.prefix.to_string()),
        }
        let action = ModeratorAction::Clear { id: None, platform_id: clear.0, user: clear.1, user_prefix: clear.2 };
        self.send(AudienceEvent::Moderator { moderator: self.name.clone(), action })
    }

    fn send(&self, event: AudienceEvent) -> Result<(), Refusal> {
        let metrics = &self.hub.metrics;
        match self.hub.submit(event) {
            Ok(()) => {
                metrics.accepted.fetch_add(1, Ordering::Relaxed);
                Ok(())
            }
            Err(_) => {
                metrics.dropped_inbound.fetch_add(1, Ordering::Relaxed);
                Err(Refusal::Busy)
            }
        }
    }

    fn take_token(&self, user: &str, now: Instant) -> bool {
        let per_10s = f64::from(self.hub.policy.limits.messages_per_10s);
        let mut buckets = self.buckets.lock().expect("buckets");
        if buckets.len() >= MAX_TRACKED_MEMBERS && !buckets.contains_key(user) {
            // Members whose buckets are full again have nothing to remember.
            buckets.retain(|_, b| b.available(now) < per_10s);
            if buckets.len() >= MAX_TRACKED_MEMBERS {
                buckets.clear();
            }
        }
        buckets.entry(user.to_owned()).or_insert_with(|| TokenBucket::new(per_10s, per_10s / 10.0)).try_take(now, 1.0)
    }
}

/// `!vote OPTION` (any case) → `OPTION`: how stream viewers vote in the open poll.
fn vote_option(text: &str) -> Option<&str> {
    let rest = text.get(..6).filter(|head| head.eq_ignore_ascii_case("!vote "))?;
    let option = text[rest.len()..].split_whitespace().next()?;
    Some(option)
}

/// Exponential backoff with full jitter: the n-th wait is uniform in [base, min(max, base·2ⁿ)],
/// so that many bridges cut off together do not come back together.
#[derive(Debug, Clone)]
pub struct Backoff {
    base: Duration,
    max: Duration,
    attempt: u32,
    rng: SeededRng,
}

impl Backoff {
    /// Waits from `base` doubling up to `max`.
    pub fn new(base: Duration, max: Duration, seed: u64) -> Self {
        Self { base, max: max.max(base), attempt: 0, rng: SeededRng::new(seed) }
    }

    /// The next wait: from `base` up to a ceiling that starts at twice `base` and doubles
    /// with each attempt (at most `max`). Even the first wait is spread over a range, so that
    /// venues that lost a platform together do not all come back in the same instant.
    pub fn next_wait(&mut self) -> Duration {
        let ceiling = self.base.saturating_mul(2u32 << self.attempt.min(20)).min(self.max);
        self.attempt = self.attempt.saturating_add(1);
        let spread = ceiling.saturating_sub(self.base).as_secs_f64();
        self.base + Duration::from_secs_f64(spread * f64::from(self.rng.unit()))
    }

    /// After a connection that worked: start again from the shortest wait.
    pub fn reset(&mut self) {
        self.attempt = 0;
    }
}

/// A sliding-window limit on messages posted to a platform (Twitch: 20 per 30 s as a user, 100
/// as a moderator), so that the bot is never locked out. Announcements wait in a short queue;
/// beyond it the oldest is dropped.
#[derive(Debug)]
pub struct OutboundLimiter {
    window: Duration,
    limit: usize,
    sent: VecDeque<Instant>,
    queue: VecDeque<Arc<str>>,
    max_queue: usize,
    /// Announcements dropped because the queue was full.
    pub dropped: u64,
}

impl OutboundLimiter {
    /// At most `limit` messages in any `window`, `max_queue` waiting.
    pub fn new(limit: usize, window: Duration, max_queue: usize) -> Self {
        Self { window, limit, sent: VecDeque::new(), queue: VecDeque::new(), max_queue, dropped: 0 }
    }

    /// Changes the limit (the bot became or stopped being a moderator).
    pub fn set_limit(&mut self, limit: usize) {
        self.limit = limit;
    }

    /// The limit now.
    pub fn limit(&self) -> usize {
        self.limit
    }

    /// Queues an announcement.
    pub fn push(&mut self, text: Arc<str>) {
        if self.queue.len() >= self.max_queue.max(1) {
            self.queue.pop_front();
            self.dropped += 1;
        }
        self.queue.push_back(text);
    }

    /// The next announcement that may be posted at `now`, counted as sent.
    pub fn pop_ready(&mut self, now: Instant) -> Option<Arc<str>> {
        while self.sent.front().is_some_and(|t| now.duration_since(*t) >= self.window) {
            self.sent.pop_front();
        }
        if self.sent.len() >= self.limit {
            return None;
        }
        let text = self.queue.pop_front()?;
        self.sent.push_back(now);
        Some(text)
    }

    /// When the next message may be posted, if one waits.
    pub fn next_ready(&self, now: Instant) -> Option<Instant> {
        if self.queue.is_empty() {
            return None;
        }
        if self.sent.len() < self.limit {
            return Some(now);
        }
        self.sent.front().map(|t| *t + self.window)
    }

    /// Messages posted in the window ending at `now`.
    pub fn sent_in_window(&self, now: Instant) -> usize {
        self.sent.iter().filter(|t| now.duration_since(**t) < self.window).count()
    }
}

/// Starts a bridge on `runtime` (the audience edge's), feeding the venue's `hub`; its
/// members' ids start with `prefix`.
pub fn start(runtime: &tokio::runtime::Handle, hub: &Arc<AudienceHub>, bridge: Box<dyn ChatBridge>, prefix: &str) {
    let name = bridge.name();
    let sink = BridgeSink::new(hub.clone(), &name, prefix);
    let outbound = hub.platform_out.subscribe();
    let task = bridge.run(sink, outbound);
    hub.open_bridges.fetch_add(1, Ordering::Relaxed);
    let hub = hub.clone();
    runtime.spawn(async move {
        task.await;
        hub.open_bridges.fetch_sub(1, Ordering::Relaxed);
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn votes_are_recognised_in_any_case() {
        assert_eq!(vote_option("!vote stars"), Some("stars"));
        assert_eq!(vote_option("!VOTE  dawn now"), Some("dawn"));
        assert_eq!(vote_option("!vote"), None);
        assert_eq!(vote_option("!voter x"), None);
        assert_eq!(vote_option("!vot€ x"), None);
    }

    #[test]
    fn backoff_doubles_with_jitter_up_to_its_ceiling_and_resets() {
        let mut backoff = Backoff::new(Duration::from_millis(100), Duration::from_secs(2), 7);
        let waits: Vec<Duration> = (0..8).map(|_| backoff.next_wait()).collect();
        for (n, wait) in waits.iter().enumerate() {
            let ceiling = Duration::from_millis(200 * (1 << n)).min(Duration::from_secs(2));
            assert!(*wait >= Duration::from_millis(100) && *wait <= ceiling, "wait {n}: {wait:?}");
        }
        assert!(waits[5..].iter().any(|w| *w > Duration::from_millis(400)), "waits grow: {waits:?}");
        let mut other = Backoff::new(Duration::from_millis(100), Duration::from_secs(2), 8);
        let other_waits: Vec<Duration> = (0..8).map(|_| other.next_wait()).collect();
        assert_ne!(waits, other_waits, "jitter differs between bridges");
        backoff.reset();
        assert!(backoff.next_wait() <= Duration::from_millis(200));
    }

    #[test]
    fn venues_that_lost_a_platform_together_do_not_come_back_together() {
        // The first wait of 100 bridges seeded differently: spread over 1 to 2 s, not all 1 s.
        let firsts: Vec<Duration> = (0..100u64)
            .map(|seed| Backoff::new(Duration::from_secs(1), Duration::from_secs(60), seed * 7919).next_wait())
            .collect();
        assert!(firsts.iter().all(|w| *w >= Duration::from_secs(1) && *w <= Duration::from_secs(2)), "{firsts:?}");
        let distinct: std::collections::HashSet<u128> = firsts.iter().map(|w| w.as_millis()).collect();
        assert!(distinct.len() > 50, "first waits differ: {} distinct of 100", distinct.len());
        let spread = firsts.iter().max().unwrap().saturating_sub(*firsts.iter().min().unwrap());
        assert!(spread > Duration::from_millis(700), "spread over the range: {spread:?}");
    }

    #[test]
    fn outbound_limiter_never_exceeds_its_window_and_drops_the_oldest() {
        let start = Instant::now();
        let mut limiter = OutboundLimiter::new(20, Duration::from_secs(30), 5);
        let mut posted = Vec::new();
        // 200 announcements offered over 90 s, one every 0.45 s.
        for i in 0..200u32 {
            let now = start + Duration::from_millis(450 * u64::from(i));
            limiter.push(format!("m{i}").into());
            while let Some(text) = limiter.pop_ready(now) {
                posted.push((now, text));
            }
        }
        for (i, (t, _)) in posted.iter().enumerate() {
            let in_window = posted[..=i].iter().filter(|(u, _)| t.duration_since(*u) < Duration::from_secs(30)).count();
            assert!(in_window <= 20, "{in_window} messages within 30 s at {i}");
        }
        assert!(posted.len() >= 60, "the allowance is used: {}", posted.len());
        assert!(limiter.dropped > 0, "the excess is dropped, oldest first");
        // A moderator's allowance is larger.
        let mut moderator = OutboundLimiter::new(100, Duration::from_secs(30), 200);
        for i in 0..150 {
            moderator.push(format!("{i}").into());
        }
        let burst = std::iter::from_fn(|| moderator.pop_ready(start)).count();
        assert_eq!(burst, 100);
        assert_eq!(moderator.next_ready(start), Some(start + Duration::from_secs(30)));
    }
}
