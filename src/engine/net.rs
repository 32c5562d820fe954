//! The venue's side of scale-out: where its command log leaves for a log on another machine
//! (an authority publishing to JetStream) and where another venue's log comes in (a render
//! follower). The NATS client lives in the edges (`edges::nats`); the two meet at channels,
//! like every edge: the frame hands entries over and never waits for the network.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use bevy::prelude::*;
use tokio::sync::mpsc;

use crate::engine::audience::hub::{MetricsSection, write_counter, write_gauge};
use crate::engine::audience::shards::plays_on_shards;
use crate::engine::command::{AppliedCommand, CommandLog, CurrentScene, DurableGate, FollowCommand, VenueParams};
use crate::engine::schedule::VenueSystems;
use crate::model::command::{LoggedCommand, state_hash};
use crate::model::net::{Arrival, FollowPosition, lasting_entries};

/// What the venue hands to the log's publisher, in order.
#[derive(Debug, Clone)]
pub enum LogOutgoing {
    /// An applied command.
    Command(LoggedCommand),
    /// The venue's lasting state up to `seq`: published once every earlier command is stored.
    Snapshot {
        /// The last command it includes.
        seq: u64,
        /// The commands that make it ([`lasting_entries`]).
        entries: Vec<LoggedCommand>,
    },
}

/// What arrives from a followed log, in order.
#[derive(Debug, Clone)]
pub enum FollowIn {
    /// A logged command.
    Command(LoggedCommand),
    /// The log was started again (a new stream): its numbering starts over.
    LogStartedAgain,
}

/// Counters of the venue's NATS link, shared with the edge's tasks and shown on `/metrics`.
#[derive(Debug, Default)]
pub struct NetStats {
    /// 1 while connected to NATS.
    pub connected: AtomicU64,
    /// Connections made again after a loss.
    pub reconnects: AtomicU64,
    /// Commands handed to the publisher.
    pub queued: AtomicU64,
    /// Commands the log confirmed (JetStream acknowledged).
    pub stored: AtomicU64,
    /// Publications tried again after an error or a lost acknowledgement.
    pub retries: AtomicU64,
    /// Snapshots stored.
    pub snapshots: AtomicU64,
    /// Commands applied that cannot be in the log (over a NATS message, or a number the
    /// stream already held): said as errors when they happen.
    pub unlogged: AtomicU64,
    /// Commands applied from another venue's log.
    pub followed: AtomicU64,
    /// The main stage's audience effects an overflow shard left out (its audience's are its
    /// own).
    pub shard_skipped: AtomicU64,
    /// Redeliveries skipped (already applied).
    pub duplicates: AtomicU64,
    /// Sequence numbers found missing in a followed log.
    pub gaps: AtomicU64,
    /// Messages refused on the venue's subjects (not what the subject carries).
    pub refused: AtomicU64,
    /// Last milliseconds between a command being logged by its venue and applied here (a
    /// follower) or stored (an authority).
    pub lag_ms: AtomicU64,
    /// The last sequence number applied here.
    pub position: AtomicU64,
    /// Audience events an edge sent to the venue.
    pub audience_sent: AtomicU64,
    /// Audience events the venue received from edges (and accepted).
    pub audience_received: AtomicU64,
    /// Audience edges the venue hears from now.
    pub edges: AtomicU64,
    /// Messages for the audience the venue sent to its edges.
    pub words_sent: AtomicU64,
    /// Messages for the audience an edge received from the venue.
    pub words_received: AtomicU64,
    /// Messages for the audience the venue's relay skipped (it fell behind its broadcast).
    pub words_lagged: AtomicU64,
    /// The venue's state fingerprint at [`Self::hashed_at`] ([`crate::model::command::state_hash`]).
    pub state_hash: AtomicU64,
    /// The sequence number the fingerprint was taken at.
    pub hashed_at: AtomicU64,
}

impl MetricsSection for NetStats {
    fn render(&self, out: &mut String) {
        use std::fmt::Write as _;
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        write_gauge(out, "nats_connected", "Whether the NATS connection is up (1) or not (0).", get(&self.connected));
        write_counter(out, "nats_reconnects_total", "NATS connections made again after a loss.", get(&self.reconnects));
        write_counter(out, "nats_log_queued_total", "Commands handed to the JetStream log.", get(&self.queued));
        write_counter(out, "nats_log_stored_total", "Commands JetStream acknowledged.", get(&self.stored));
        write_counter(out, "nats_log_retries_total", "Publications to the log tried again.", get(&self.retries));
        write_counter(out, "nats_snapshots_total", "Snapshots stored.", get(&self.snapshots));
        write_counter(out, "nats_followed_total", "Commands applied from the authority's log.", get(&self.followed));
        write_counter(out, "nats_duplicates_total", "Redelivered commands skipped.", get(&self.duplicates));
        write_counter(
            out,
            "nats_shard_skipped_total",
            "The main stage's audience effects this shard left out.",
            get(&self.shard_skipped),
        );
        write_counter(out, "nats_gaps_total", "Gaps found in the followed log.", get(&self.gaps));
        write_counter(out, "nats_refused_total", "Messages refused on the venue's subjects.", get(&self.refused));
        write_counter(
            out,
            "nats_audience_sent_total",
            "Audience events this edge sent to the venue.",
            get(&self.audience_sent),
        );
        write_counter(
            out,
            "nats_audience_received_total",
            "Audience events the venue accepted from its edges.",
            get(&self.audience_received),
        );
        write_counter(
            out,
            "nats_words_sent_total",
            "Messages for the audience sent to the edges.",
            get(&self.words_sent),
        );
        write_counter(
            out,
            "nats_words_received_total",
            "Messages for the audience received from the venue.",
            get(&self.words_received),
        );
        write_counter(
            out,
            "nats_words_lagged_total",
            "Messages for the audience the relay skipped.",
            get(&self.words_lagged),
        );
        write_gauge(out, "nats_edges", "Audience edges the venue hears from.", get(&self.edges));
        write_counter(
            out,
            "nats_log_unlogged_total",
            "Commands applied that could not be logged.",
            get(&self.unlogged),
        );
        let backlog = get(&self.queued).saturating_sub(get(&self.stored) + get(&self.unlogged));
        write_gauge(out, "nats_log_backlog", "Commands applied and not yet stored by JetStream.", backlog);
        write_gauge(
            out,
            "nats_lag_ms",
            "Milliseconds from a command being logged to being stored or followed here.",
            get(&self.lag_ms),
        );
        write_gauge(out, "log_position", "The last command sequence number applied here.", get(&self.position));
        // A label, not a value: a 64-bit fingerprint does not fit a Prometheus float.
        let _ = writeln!(
            out,
            "# HELP parvis_state_info The venue's state fingerprint and the log position it was taken at.\n# TYPE parvis_state_info gauge\nparvis_state_info{{hash=\"{:016x}\",seq=\"{}\"}} 1",
            get(&self.state_hash),
            get(&self.hashed_at)
        );
    }
}

/// An authority's link to its log elsewhere. Every command applied here (not restored) goes to
/// the publisher; acknowledgements wait for it ([`DurableGate`]).
#[derive(Resource)]
pub struct LogPublisher {
    /// To the publisher. Unbounded on purpose: a command applied must reach the log, and
    /// dropping one would break the log; the backlog is on `/metrics`
    /// (`parvis_nats_log_backlog`) and grows by some hundred bytes a command while NATS is
    /// away.
    pub outgoing: mpsc::UnboundedSender<LogOutgoing>,
    /// A snapshot is stored after this many commands.
    pub snapshot_every: u64,
    /// Set by the publisher when the stream had to be made again (deleted under the venue):
    /// the next frame sends a snapshot, so that nodes can start from it.
    pub wants_snapshot: Arc<std::sync::atomic::AtomicBool>,
    /// Counters.
    pub stats: Arc<NetStats>,
}

/// A follower's link to its authority's log: commands arrive in order from the edge.
#[derive(Resource)]
pub struct LogFollower {
    /// Logged commands, as they arrive.
    pub incoming: mpsc::Receiver<FollowIn>,
    /// Where the follower is.
    pub position: FollowPosition,
    /// Counters.
    pub stats: Arc<NetStats>,
    /// An overflow shard: what the main stage's audience caused is left out, as the shard's
    /// audience's effects stay on the shard.
    pub shard: bool,
}

/// The venue's lasting state as commands since its last scene load, kept compact for
/// snapshots.
#[derive(Debug, Default, Resource)]
struct LastingLog {
    entries: Vec<LoggedCommand>,
    since_snapshot: u64,
}

/// The venue's side of the NATS link.
pub struct NetPlugin;

/// The net plugin's systems.
#[derive(SystemSet, Debug, Clone, PartialEq, Eq, Hash)]
pub enum NetSystems {
    /// Drains a followed log into [`FollowCommand`]s.
    Follow,
    /// Hands applied commands and snapshots to the publisher.
    Publish,
}

impl Plugin for NetPlugin {
    fn build(&self, app: &mut App) {
        app.init_resource::<LastingLog>()
            .add_systems(
                Update,
                follow_log
                    .in_set(NetSystems::Follow)
                    .in_set(VenueSystems::Ingest)
                    .run_if(resource_exists::<LogFollower>),
            )
            .add_systems(
                Update,
                fingerprint_state
                    .after(VenueSystems::Apply)
                    .before(VenueSystems::Simulate)
                    .run_if(resource_exists::<LogPublisher>.or_else(resource_exists::<LogFollower>)),
            )
            .add_systems(
                Update,
                publish_applied
                    .in_set(NetSystems::Publish)
                    .after(VenueSystems::Apply)
                    .before(VenueSystems::Simulate)
                    .run_if(resource_exists::<LogPublisher>),
            );
    }
}

/// Milliseconds since the Unix epoch, as the log stamps its entries.
pub fn now_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64)
}

/// Takes the venue's state fingerprint whenever commands were applied, for `/metrics`: nodes
/// that follow one log show the same fingerprint at the same position (a follower's is where
/// it is in the authority's log).
fn fingerprint_state(
    log: Res<CommandLog>,
    scene: Option<Res<CurrentScene>>,
    params: Res<VenueParams>,
    publisher: Option<Res<LogPublisher>>,
    follower: Option<Res<LogFollower>>,
    mut applied: MessageReader<AppliedCommand>,
    mut taken: Local<bool>,
) {
    let changed = applied.read().count() > 0;
    let (stats, position) = match (publisher, follower) {
        (Some(p), _) => (p.stats.clone(), log.applied()),
        (None, Some(f)) => (f.stats.clone(), f.position.applied),
        (None, None) => return,
    };
    if *taken && !changed && stats.hashed_at.load(Ordering::Relaxed) == position {
        return;
    }
    *taken = true;
    let hash = state_hash(scene.as_deref().map(|s| &*s.0), Some(&params.0));
    stats.state_hash.store(hash, Ordering::Relaxed);
    stats.hashed_at.store(position, Ordering::Relaxed);
}

fn follow_log(
    mut follower: ResMut<LogFollower>,
    mut follow: MessageWriter<FollowCommand>,
    scene: Option<Res<CurrentScene>>,
) {
    let follower = &mut *follower;
    while let Ok(arrived) = follower.incoming.try_recv() {
        let entry = match arrived {
            FollowIn::Command(entry) => entry,
            FollowIn::LogStartedAgain => {
                warn!("the authority's log stream was made again: following it on from its first command");
                follower.position.log_started_again();
                continue;
            }
        };
        let loads_scene = matches!(entry.command, crate::model::command::VenueCommand::LoadScene { .. });
        match follower.position.arrive(entry.seq, loads_scene) {
            Arrival::Implausible => {
                follower.stats.refused.fetch_add(1, Ordering::Relaxed);
                warn!(
                    "refused from the authority's log: #{} is implausibly far after #{} (a forged or broken message)",
                    entry.seq, follower.position.applied
                );
                continue;
            }
            Arrival::Duplicate => {
                follower.stats.duplicates.fetch_add(1, Ordering::Relaxed);
                continue;
            }
            Arrival::Gap { expected } => {
                follower.stats.gaps.fetch_add(1, Ordering::Relaxed);
                warn!(
                    "the authority's log jumps from #{} to #{}: commands in between are missing from the stream; applying on from here",
                    expected - 1,
                    entry.seq
                );
            }
            Arrival::Apply => {}
        }
        follower.stats.position.store(entry.seq, Ordering::Relaxed);
        follower.stats.lag_ms.store(now_ms().saturating_sub(entry.time_ms), Ordering::Relaxed);
        // The main stage's audience effects stay there, but for the outcomes of what the
        // scene counts across shards (summed polls and crowd energy), which play everywhere.
        if follower.shard
            && matches!(entry.origin, crate::model::command::CommandOrigin::Audience(_))
            && !scene.as_deref().is_some_and(|s| plays_on_shards(&s.0, &entry.origin))
        {
            follower.stats.shard_skipped.fetch_add(1, Ordering::Relaxed);
            continue;
        }
        follower.stats.followed.fetch_add(1, Ordering::Relaxed);
        follow.write(FollowCommand(entry));
    }
}

fn publish_applied(
    publisher: Res<LogPublisher>,
    mut lasting: ResMut<LastingLog>,
    log: Res<CommandLog>,
    mut applied: MessageReader<AppliedCommand>,
) {
    let lasting = &mut *lasting;
    for entry in applied.read() {
        lasting.entries.push(entry.entry.clone());
        if entry.restored {
            continue;
        }
        lasting.since_snapshot += 1;
        publisher.stats.queued.fetch_add(1, Ordering::Relaxed);
        // The publisher lives as long as the venue; a send fails only while it stops.
        let _ = publisher.outgoing.send(LogOutgoing::Command(entry.entry.clone()));
    }
    publisher.stats.position.store(log.applied(), Ordering::Relaxed);
    let asked = publisher.wants_snapshot.swap(false, Ordering::AcqRel);
    if (lasting.since_snapshot >= publisher.snapshot_every || asked) && log.applied() > 0 {
        lasting.entries = lasting_entries(&lasting.entries).unwrap_or_default();
        lasting.since_snapshot = 0;
        if !lasting.entries.is_empty() {
            let _ =
                publisher.outgoing.send(LogOutgoing::Snapshot { seq: log.applied(), entries: lasting.entries.clone() });
        }
    }
}

/// Everything an authority's venue needs to publish its log: the publisher link and the gate
/// that holds acknowledgements until the log confirms.
pub fn insert_publisher(app: &mut App, publisher: LogPublisher, gate: DurableGate) {
    app.insert_resource(publisher).insert_resource(gate);
}
