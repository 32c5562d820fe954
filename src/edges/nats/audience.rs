//! The audience across machines: audience edges (`parvis edge`) hold the WebSockets and hand
//! accepted events to the venue's authority over NATS; the authority answers everyone through
//! them. Both ends keep the single-process [`AudienceHub`] as it is — the edge's hub has no
//! venue behind it, the authority's has no sockets for these members — and this module moves
//! what crosses between them:
//!
//! - edge → venue: [`EdgeBatch`]es of events every 10 ms (or at once when 256 wait), and at
//!   least every second with the edge's member count, which is how the venue knows the edge is
//!   alive. Staff events (moderators' requests) go on a subject of their own, which only edges
//!   with a staff credential may publish on; the venue refuses them anywhere else.
//! - venue → edges: [`AudienceOut`] batches: what the venue says to everyone (written once,
//!   passed on as is), replies to one member, the moderators' feed.
//! - moderators' decisions (ban, time-out, slow mode), made at any edge, to every edge.
//!
//! An edge lost (no batch for [`EDGE_TIMEOUT`]) takes its members with it: the venue applies
//! their `left`, so the audience count, votes and shares stay true.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use bevy::log::warn;
use futures_util::StreamExt;
use tokio::sync::{broadcast, mpsc};

use super::NatsNode;
use crate::engine::audience::hub::{AudienceHub, RemoteAudience};
use crate::engine::control::Throttle;
use crate::engine::net::NetStats;
use crate::model::audience::event::{AudienceEvent, UserId};
use crate::model::net::{AudienceOut, EdgeBatch, MAX_MESSAGE_BYTES, ModerationDecision, VenueSubjects, WireEvent};

/// Events an edge holds before it sends them.
const BATCH_EVENTS: usize = 256;
/// The longest an event waits at the edge for others to travel with.
const BATCH_WAIT: Duration = Duration::from_millis(10);
/// An edge says it is alive at least this often.
const HEARTBEAT: Duration = Duration::from_secs(1);
/// An edge silent this long is lost, and its members with it.
pub const EDGE_TIMEOUT: Duration = Duration::from_secs(5);
/// Replies for members elsewhere waiting to be sent.
const DIRECT_CAPACITY: usize = 4096;

impl NatsNode {
    /// Starts an audience edge's side: `events` (the edge hub's input) go to the venue, what
    /// the venue says reaches `hub`'s members and moderators, and moderators' decisions go
    /// both ways. With `staff`, this edge's moderators' requests go to the venue (its NATS user
    /// must be allowed to publish on the staff subject).
    pub fn start_audience_edge(
        &self,
        hub: Arc<AudienceHub>,
        events: mpsc::Receiver<AudienceEvent>,
        edge: String,
        staff: bool,
    ) {
        let (decisions, decisions_out) = mpsc::unbounded_channel();
        let _ = hub.remote.set(RemoteAudience { direct: None, decisions });
        let (client, subjects, stats) = (self.client.clone(), self.subjects.clone(), self.stats.clone());
        self.runtime.spawn(send_batches(
            client.clone(),
            subjects.clone(),
            stats.clone(),
            hub.clone(),
            events,
            edge,
            staff,
        ));
        self.runtime.spawn(publish_decisions(client.clone(), subjects.moderation.clone(), decisions_out));
        self.runtime.spawn(receive_decisions(client.clone(), subjects.moderation.clone(), hub.clone()));
        self.runtime.spawn(receive_venue_words(client, subjects, stats, hub));
    }

    /// Starts the venue authority's side: events from every edge into `hub`, and what the
    /// venue says (its broadcasts, replies to members elsewhere, the moderators' feed) out to
    /// every edge.
    pub fn start_audience_authority(&self, hub: Arc<AudienceHub>) {
        let (direct, direct_out) = mpsc::channel(DIRECT_CAPACITY);
        let (decisions, decisions_out) = mpsc::unbounded_channel();
        let _ = hub.remote.set(RemoteAudience { direct: Some(direct), decisions });
        let (client, subjects, stats) = (self.client.clone(), self.subjects.clone(), self.stats.clone());
        self.runtime.spawn(receive_edges(client.clone(), subjects.clone(), stats.clone(), hub.clone()));
        self.runtime.spawn(publish_venue_words(client.clone(), subjects.clone(), stats, hub.clone(), direct_out));
        self.runtime.spawn(publish_decisions(client.clone(), subjects.moderation.clone(), decisions_out));
        self.runtime.spawn(receive_decisions(client, subjects.moderation, hub));
    }
}

/// Edge → venue: batches of events, and a heartbeat with the member count.
async fn send_batches(
    client: async_nats::Client,
    subjects: VenueSubjects,
    stats: Arc<NetStats>,
    hub: Arc<AudienceHub>,
    mut events: mpsc::Receiver<AudienceEvent>,
    edge: String,
    staff: bool,
) {
    let mut audience: Vec<WireEvent> = Vec::new();
    let mut staff_events: Vec<WireEvent> = Vec::new();
    let mut last_sent = Instant::now();
    let mut refused = Throttle::default();
    // Who is connected here, as the venue was told: said again when the venue asks (it
    // restarted, or had thought this edge lost).
    let mut members: HashMap<UserId, Arc<str>> = HashMap::new();
    let Ok(mut resync) = client.subscribe(subjects.resync.clone()).await else {
        warn!("NATS: cannot subscribe to {}", subjects.resync);
        return;
    };
    let (audience_subject, staff_subject) = (subjects.audience_in(&edge), subjects.staff_in(&edge));
    loop {
        let wait = if audience.is_empty() && staff_events.is_empty() { HEARTBEAT } else { BATCH_WAIT };
        let deadline = tokio::time::Instant::from_std(last_sent + wait);
        tokio::select! {
            asked = resync.next() => {
                let Some(asked) = asked else { return };
                if asked.payload.as_ref() == edge.as_bytes() {
                    audience.extend(members.iter().map(|(user, name)| WireEvent::Joined { user: user.to_string(), name: name.to_string() }));
                }
                continue;
            }
            event = events.recv() => {
                let Some(event) = event else { return };
                let now = Instant::now();
                match &event {
                    AudienceEvent::Joined { user, name } => { members.insert(user.clone(), name.clone()); }
                    AudienceEvent::Left { user } => { members.remove(user); }
                    _ => {}
                }
                let wire = WireEvent::from_event(&event, now);
                let is_staff = matches!(event, AudienceEvent::Moderator { .. } | AudienceEvent::Chat { staff: true, .. });
                if is_staff && !staff {
                    refused.say(|| "a moderator's request at an edge started without --staff-edge: dropped (give this edge a staff NATS credential and --staff-edge)".into());
                    continue;
                }
                if is_staff { staff_events.push(wire) } else { audience.push(wire) }
                if audience.len() + staff_events.len() < BATCH_EVENTS {
                    continue;
                }
            }
            _ = tokio::time::sleep_until(deadline) => {}
        }
        let connected = hub.direct.lock().map(|d| d.len() as u32).unwrap_or(0);
        for (subject, batch) in [(&staff_subject, &mut staff_events), (&audience_subject, &mut audience)] {
            // The audience batch always goes: it is the heartbeat.
            if batch.is_empty() && subject == &staff_subject {
                continue;
            }
            // In pieces that fit a NATS message (a resync of many members is large).
            let mut events = std::mem::take(batch);
            loop {
                let rest =
                    if events.len() > 2 * BATCH_EVENTS { events.split_off(2 * BATCH_EVENTS) } else { Vec::new() };
                let count = events.len() as u64;
                let message = EdgeBatch { edge: edge.clone(), members: connected, events };
                let payload = serde_json::to_vec(&message).unwrap_or_default();
                // The client queues while reconnecting; a full queue waits here, which fills
                // the hub's bounded input, and members hear `busy`: the edge never grows
                // without end.
                if client.publish(subject.clone(), payload.into()).await.is_ok() {
                    stats.audience_sent.fetch_add(count, Ordering::Relaxed);
                }
                if rest.is_empty() {
                    break;
                }
                events = rest;
            }
        }
        last_sent = Instant::now();
    }
}

/// Venue → edge: what the venue says, to this edge's members and moderators.
async fn receive_venue_words(
    client: async_nats::Client,
    subjects: VenueSubjects,
    stats: Arc<NetStats>,
    hub: Arc<AudienceHub>,
) {
    let mut refused = Throttle::default();
    let Ok(mut words) = client.subscribe(subjects.audience_out.clone()).await else { return };
    while let Some(message) = words.next().await {
        let batch: Result<Vec<AudienceOut>, String> = if message.payload.len() > MAX_MESSAGE_BYTES {
            Err(format!("{} bytes", message.payload.len()))
        } else {
            serde_json::from_slice(&message.payload).map_err(|e| e.to_string())
        };
        let batch = match batch {
            Ok(batch) => batch,
            Err(e) => {
                stats.refused.fetch_add(1, Ordering::Relaxed);
                refused.say(|| format!("NATS: refused on {}: {e}", subjects.audience_out));
                continue;
            }
        };
        for word in batch {
            stats.words_received.fetch_add(1, Ordering::Relaxed);
            match word {
                AudienceOut::Everyone { json } => {
                    let json: Arc<str> = json.into();
                    if json.starts_with(r#"{"type":"state""#) {
                        *hub.state_json.write().expect("state snapshot") = json.clone();
                    }
                    let _ = hub.broadcast.send(json);
                }
                AudienceOut::Member { user, json } => {
                    let mailbox = hub.direct.lock().expect("direct map").get(user.as_str()).cloned();
                    if let Some(mailbox) = mailbox
                        && !mailbox.push(json.into())
                    {
                        hub.metrics.dropped_outbound.fetch_add(1, Ordering::Relaxed);
                    }
                }
                AudienceOut::Moderators { json } => {
                    let _ = hub.moderators.send(json.into());
                }
                AudienceOut::Approvals { json } => {
                    let json: Arc<str> = json.into();
                    *hub.approvals_json.write().expect("approvals snapshot") = json.clone();
                    let _ = hub.moderators.send(json);
                }
            }
        }
    }
}

/// Moderators' decisions made here, to every edge and the venue.
async fn publish_decisions(
    client: async_nats::Client,
    subject: String,
    mut decisions: mpsc::UnboundedReceiver<ModerationDecision>,
) {
    while let Some(decision) = decisions.recv().await {
        let payload = serde_json::to_vec(&decision).unwrap_or_default();
        let _ = client.publish(subject.clone(), payload.into()).await;
    }
}

/// Moderators' decisions made anywhere, enforced here.
async fn receive_decisions(client: async_nats::Client, subject: String, hub: Arc<AudienceHub>) {
    let mut refused = Throttle::default();
    let Ok(mut decisions) = client.subscribe(subject.clone()).await else { return };
    while let Some(message) = decisions.next().await {
        let decision: ModerationDecision = match serde_json::from_slice(&message.payload) {
            Ok(d) => d,
            Err(e) => {
                refused.say(|| format!("NATS: refused on {subject}: not a moderation decision ({e})"));
                continue;
            }
        };
        let mut moderation = hub.moderation.lock().expect("moderation");
        match decision {
            ModerationDecision::Ban { user } => {
                let user: UserId = user.into();
                moderation.ban(user.clone(), None);
                drop(moderation);
                hub.send_to(
                    &user,
                    &crate::model::audience::protocol::ServerMessage::error(
                        "banned",
                        "a moderator banned you from this venue",
                    ),
                );
            }
            ModerationDecision::Unban { user } => moderation.unban(&user.into()),
            ModerationDecision::TimeOut { user, seconds } => {
                moderation.time_out(user.into(), None, Instant::now() + Duration::from_secs(seconds.min(86_400)));
            }
            ModerationDecision::SlowMode { seconds } => {
                moderation.slow_mode = (seconds > 0).then(|| Duration::from_secs(seconds.min(3600)));
            }
        }
    }
}

/// What the venue knows of one edge.
struct EdgeSeen {
    last: Instant,
    members: HashSet<UserId>,
    /// Whether the edge was asked to say its members again.
    asked: bool,
}

/// Edges → venue: every batch read, checked and handed to the hub; lost edges' members leave.
async fn receive_edges(
    client: async_nats::Client,
    subjects: VenueSubjects,
    stats: Arc<NetStats>,
    hub: Arc<AudienceHub>,
) {
    let (Ok(audience), Ok(staff)) = (
        client.subscribe(subjects.audience_in_all.clone()).await,
        client.subscribe(subjects.staff_in_all.clone()).await,
    ) else {
        warn!("NATS: cannot subscribe to the audience edges' subjects");
        return;
    };
    let mut inbound = futures_util::stream::select(audience.map(|m| (false, m)), staff.map(|m| (true, m)));
    let mut edges: HashMap<String, EdgeSeen> = HashMap::new();
    let mut refused = Throttle::default();
    let mut check = tokio::time::interval(Duration::from_secs(1));
    loop {
        tokio::select! {
            message = inbound.next() => {
                let Some((staff_subject, message)) = message else { return };
                let batch = match EdgeBatch::from_message(&message.subject, &message.payload) {
                    Ok(b) => b,
                    Err(e) => {
                        stats.refused.fetch_add(1, Ordering::Relaxed);
                        refused.say(|| format!("NATS: refused: {e}"));
                        continue;
                    }
                };
                // Each edge publishes on a subject of its own (which NATS permissions can hold
                // it to): a batch naming another edge is refused.
                if message.subject.rsplit('.').next() != Some(batch.edge.as_str()) {
                    stats.refused.fetch_add(1, Ordering::Relaxed);
                    refused.say(|| format!("NATS: refused on {}: a batch in the name of edge {:?}", message.subject, batch.edge));
                    continue;
                }
                let now = Instant::now();
                let seen = edges.entry(batch.edge.clone()).or_insert_with(|| {
                    warn!("NATS: audience edge {:?} joined ({} members)", batch.edge, batch.members);
                    EdgeSeen { last: now, members: HashSet::new(), asked: false }
                });
                if !seen.asked {
                    // Members who joined before the venue heard from this edge (the venue
                    // restarted, or thought the edge lost) are said again.
                    seen.asked = true;
                    let _ = client.publish(subjects.resync.clone(), batch.edge.clone().into_bytes().into()).await;
                }
                seen.last = now;
                for wire in batch.events {
                    match wire.into_event(&batch.edge, staff_subject, now) {
                        Ok(event) => {
                            match &event {
                                AudienceEvent::Joined { user, .. } => { seen.members.insert(user.clone()); }
                                AudienceEvent::Left { user } => { seen.members.remove(user); }
                                _ => {}
                            }
                            stats.audience_received.fetch_add(1, Ordering::Relaxed);
                            if hub.submit(event).is_err() {
                                hub.metrics.dropped_inbound.fetch_add(1, Ordering::Relaxed);
                            }
                        }
                        Err(why) => {
                            stats.refused.fetch_add(1, Ordering::Relaxed);
                            refused.say(|| format!("NATS: refused from audience edge {:?} on {}: {why}", batch.edge, message.subject));
                        }
                    }
                }
            }
            _ = check.tick() => {
                let now = Instant::now();
                let lost: Vec<String> = edges.iter().filter(|(_, e)| now - e.last > EDGE_TIMEOUT).map(|(id, _)| id.clone()).collect();
                for id in lost {
                    let Some(edge) = edges.remove(&id) else { continue };
                    warn!("NATS: audience edge {id:?} lost (silent for {EDGE_TIMEOUT:?}): its {} members leave", edge.members.len());
                    for user in edge.members {
                        let _ = hub.submit(AudienceEvent::Left { user });
                    }
                }
                stats.edges.store(edges.len() as u64, Ordering::Relaxed);
            }
        }
    }
}

/// Venue → edges: broadcasts, replies to members elsewhere and the moderators' feed, in
/// batches of what is waiting (each written once, passed on as it is).
async fn publish_venue_words(
    client: async_nats::Client,
    subjects: VenueSubjects,
    stats: Arc<NetStats>,
    hub: Arc<AudienceHub>,
    mut direct: mpsc::Receiver<(UserId, Arc<str>)>,
) {
    let mut everyone = hub.broadcast.subscribe();
    let mut moderators = hub.moderators.subscribe();
    let mut batch: Vec<AudienceOut> = Vec::new();
    loop {
        let word = tokio::select! {
            word = everyone.recv() => match word {
                Ok(json) => AudienceOut::Everyone { json: json.to_string() },
                Err(broadcast::error::RecvError::Lagged(n)) => {
                    stats.words_lagged.fetch_add(n, Ordering::Relaxed);
                    continue;
                }
                Err(broadcast::error::RecvError::Closed) => return,
            },
            word = moderators.recv() => match word {
                Ok(json) if json.starts_with(r#"{"type":"approvals""#) => AudienceOut::Approvals { json: json.to_string() },
                Ok(json) => AudienceOut::Moderators { json: json.to_string() },
                Err(broadcast::error::RecvError::Lagged(_)) => continue,
                Err(broadcast::error::RecvError::Closed) => return,
            },
            word = direct.recv() => match word {
                Some((user, json)) => AudienceOut::Member { user: user.to_string(), json: json.to_string() },
                None => return,
            },
        };
        batch.push(word);
        // Whatever else is waiting travels in the same message, within a NATS message's size.
        let mut bytes = 0;
        while batch.len() < BATCH_EVENTS && bytes < MAX_MESSAGE_BYTES / 4 {
            bytes += match batch.last() {
                Some(
                    AudienceOut::Everyone { json } | AudienceOut::Moderators { json } | AudienceOut::Approvals { json },
                ) => json.len(),
                Some(AudienceOut::Member { json, .. }) => json.len() + 32,
                None => 0,
            };
            let next = if let Ok(json) = everyone.try_recv() {
                AudienceOut::Everyone { json: json.to_string() }
            } else if let Ok(json) = moderators.try_recv() {
                if json.starts_with(r#"{"type":"approvals""#) {
                    AudienceOut::Approvals { json: json.to_string() }
                } else {
                    AudienceOut::Moderators { json: json.to_string() }
                }
            } else if let Ok((user, json)) = direct.try_recv() {
                AudienceOut::Member { user: user.to_string(), json: json.to_string() }
            } else {
                break;
            };
            batch.push(next);
        }
        let payload = serde_json::to_vec(&batch).unwrap_or_default();
        stats.words_sent.fetch_add(batch.len() as u64, Ordering::Relaxed);
        batch.clear();
        if let Err(e) = client.publish(subjects.audience_out.clone(), payload.into()).await {
            stats.words_lagged.fetch_add(1, Ordering::Relaxed);
            warn!("NATS: a batch for the audience was not sent: {e}");
        }
    }
}
