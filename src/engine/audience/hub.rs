//! Where the audience's edges meet the venue. The engine publishes one [`AudienceHub`] per
//! venue: the bounded channel accepted input arrives on, the broadcast the venue speaks to
//! everyone through, one mailbox per member for replies, the moderators' feed, the venue's
//! moderation state and its metrics. Edges (the WebSocket server, chat bridges) hold the hub;
//! the venue holds the [`AudienceLink`], the hub plus the receiving end of the channel. Neither
//! side knows the other's code, so a new edge changes nothing here.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock, RwLock};

use bevy::prelude::Resource;
use tokio::sync::{broadcast, mpsc, watch};

use super::metrics::AudienceMetrics;
use crate::engine::rest::Doorbell;
use crate::model::audience::event::{AudienceEvent, UserId};
use crate::model::audience::moderation::{Blocklist, ModerationState};
use crate::model::audience::protocol::{Limits, ServerMessage};
use crate::model::net::ModerationDecision;

/// Messages to everyone waiting for a slow member before they skip ahead.
const BROADCAST_CAPACITY: usize = 1024;

/// How text from the audience is judged, the same for every edge: the page and each chat
/// platform.
#[derive(Debug, Clone)]
pub struct ModerationPolicy {
    /// Words refused in names and chat.
    pub blocklist: Blocklist,
    /// Longest line and chat allowance per member.
    pub limits: Limits,
}

/// What the venue and its audience edges share.
pub struct AudienceHub {
    /// Counters and histograms for `/metrics`.
    pub metrics: AudienceMetrics,
    /// Accepted input into the venue. Bounded: when full, an edge drops the message, counts it
    /// and tells the sender `busy`.
    pub events: mpsc::Sender<AudienceEvent>,
    /// Everything the venue says to everyone. Bounded: a slow member skips ahead (counted).
    pub broadcast: broadcast::Sender<Arc<str>>,
    /// The latest `state` message, sent to every new member.
    pub state_json: RwLock<Arc<str>>,
    /// The venue's moderation decisions (bans, time-outs, slow mode), which every edge
    /// enforces on every message.
    pub moderation: Mutex<ModerationState>,
    /// How text is judged.
    pub policy: ModerationPolicy,
    /// Per-member mailboxes, to answer one member (errors, notices).
    pub direct: Mutex<HashMap<UserId, Arc<Mailbox>>>,
    /// Messages for every moderator connection (the approval queue, delay probes).
    pub moderators: broadcast::Sender<Arc<str>>,
    /// The latest approval queue, sent to every moderator who authenticates.
    pub approvals_json: RwLock<Arc<str>>,
    /// Plain-text announcements for chat platforms (poll results, acknowledgements).
    pub platform_out: broadcast::Sender<Arc<str>>,
    /// The stream's delay in milliseconds, as the venue knows it (declared or measured); chat
    /// bridges stamp their lines with it.
    pub stream_delay_ms: AtomicU64,
    /// Set when the venue stops: edges stop accepting.
    pub stopping: AtomicBool,
    /// Turns true when the venue closes: every connection says goodbye (WebSocket 1001) and
    /// bridges leave their platforms.
    pub closing: watch::Sender<bool>,
    /// Chat bridges running now; a closing venue waits for them to leave their platforms.
    pub open_bridges: AtomicU32,
    /// Rung with each event queued for the venue, so that a resting venue wakes at once.
    pub doorbell: Doorbell,
    /// Other parts of the venue's metrics (the program output), appended to `/metrics`.
    pub metric_sections: RwLock<Vec<Arc<dyn MetricsSection>>>,
    /// Audience edges on other machines (NATS), once linked: replies for their members, and
    /// moderators' decisions every edge enforces.
    pub remote: OnceLock<RemoteAudience>,
}

/// Where a hub reaches the audience edges of other machines (`edges::nats`).
#[derive(Debug)]
pub struct RemoteAudience {
    /// Replies for members connected elsewhere (the venue's authority has these; an edge does
    /// not). Bounded: when full a reply is dropped and counted, like a full mailbox.
    pub direct: Option<mpsc::Sender<(UserId, Arc<str>)>>,
    /// Moderators' decisions made here, for every other edge and the venue.
    pub decisions: mpsc::UnboundedSender<ModerationDecision>,
}

/// A part of `/metrics` that another capability keeps (Prometheus text format).
pub trait MetricsSection: Send + Sync {
    /// Appends its metrics to `out`.
    fn render(&self, out: &mut String);
}

// The metrics sections' writers live with the audience's metrics; every section uses them.
pub use super::metrics::{write_counter, write_gauge};

impl AudienceHub {
    /// `/metrics`: the audience's, then every other section's.
    pub fn render_metrics(&self) -> String {
        let mut body = self.metrics.render(self.direct.lock().map(|d| d.len()).unwrap_or(0));
        for section in self.metric_sections.read().expect("metric sections").iter() {
            section.render(&mut body);
        }
        body
    }

    /// Sends `message` to one member, if connected; a full mailbox drops it (counted).
    pub fn send_to(&self, user: &str, message: &ServerMessage) {
        self.send_json_to(user, message.to_json().into());
    }

    /// Sends a message already encoded to one member, as [`Self::send_to`].
    pub fn send_json_to(&self, user: &str, json: Arc<str>) {
        let mailbox = self.direct.lock().expect("direct map").get(user).cloned();
        let delivered = match (mailbox, self.remote.get().and_then(|r| r.direct.as_ref())) {
            (Some(mailbox), _) => mailbox.push(json),
            // Not connected here: maybe at an edge elsewhere.
            (None, Some(remote)) => remote.try_send((user.into(), json)).is_ok(),
            (None, None) => true,
        };
        if !delivered {
            self.metrics.dropped_outbound.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Tells every other edge about a moderator's decision made here (nothing without NATS).
    pub fn share_decision(&self, decision: ModerationDecision) {
        if let Some(remote) = self.remote.get() {
            let _ = remote.decisions.send(decision);
        }
    }

    /// Queues an accepted event for the venue and wakes it; an error when the queue is full
    /// (the event is dropped: the caller counts it and tells the sender).
    pub fn submit(&self, event: AudienceEvent) -> Result<(), QueueFull> {
        self.events.try_send(event).map_err(|_| QueueFull)?;
        self.doorbell.ring();
        Ok(())
    }

    /// Whether the venue is stopping.
    pub fn stopping(&self) -> bool {
        self.stopping.load(Ordering::Relaxed)
    }

    /// Closes the venue to its audience: edges stop accepting, connections close with
    /// "going away" and bridges leave their platforms.
    pub fn close(&self) {
        self.stopping.store(true, Ordering::Relaxed);
        self.closing.send_replace(true);
    }
}

/// The venue's input queue was full: the event was dropped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QueueFull;

/// The venue's end of the hub: the hub and the receiving end of its input channel. Inserted
/// as a resource, it turns the venue's audience systems on.
#[derive(Resource)]
pub struct AudienceLink {
    /// The shared hub.
    pub hub: Arc<AudienceHub>,
    /// Accepted input, drained each frame.
    pub events: mpsc::Receiver<AudienceEvent>,
}

impl AudienceLink {
    /// A new hub judging text by `policy`, whose input channel holds `capacity` events.
    pub fn new(policy: ModerationPolicy, capacity: usize) -> Self {
        let (events_tx, events) = mpsc::channel(capacity.max(1));
        let hub = Arc::new(AudienceHub {
            metrics: AudienceMetrics::default(),
            events: events_tx,
            broadcast: broadcast::channel(BROADCAST_CAPACITY).0,
            state_json: RwLock::new(Arc::from(
                "{\"type\":\"state\",\"params\":{},\"poll\":null,\"audience\":0,\"paused\":false,\"energy\":0.0}",
            )),
            moderation: Mutex::default(),
            policy,
            direct: Mutex::default(),
            moderators: broadcast::channel(64).0,
            approvals_json: RwLock::new(Arc::from(r#"{"type":"approvals","items":[]}"#)),
            platform_out: broadcast::channel(64).0,
            stream_delay_ms: AtomicU64::new(0),
            stopping: AtomicBool::new(false),
            closing: watch::channel(false).0,
            open_bridges: AtomicU32::new(0),
            doorbell: Doorbell::default(),
            metric_sections: RwLock::default(),
            remote: OnceLock::new(),
        });
        Self { hub, events }
    }
}

impl Drop for AudienceLink {
    fn drop(&mut self) {
        // The venue is gone: its edges stop accepting and say goodbye.
        self.hub.close();
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

    /// The next reply if one waits.
    pub fn try_next(&self) -> Option<Arc<str>> {
        self.queue.lock().expect("mailbox").pop_front()
    }

    /// Wakes the member's reader without a reply: its edge has other work for it (bytes
    /// waiting for its socket). One wake-up for both keeps an idle member to one waiter.
    pub fn wake(&self) {
        self.ready.notify_one();
    }

    /// Resolves once a reply was pushed or [`Mailbox::wake`] called (since the last time it
    /// resolved, if nobody was waiting then): the reader then looks at everything it serves.
    pub fn woken(&self) -> tokio::sync::futures::Notified<'_> {
        self.ready.notified()
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

#[cfg(test)]
mod tests {
    use std::time::Duration;

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
