//! Counting across overflow shards over NATS (core NATS, not the log: counts are replaced by
//! the next ones, so a lost message costs a quarter of a second, never a vote). Each shard
//! publishes its [`ShardReport`]s on a subject of its own; the authority reads them all and
//! publishes the [`ShardTotals`] of summed polls to every shard. What arrives is parsed,
//! bounded and checked against its subject; what is refused is counted and said (once a
//! second at most). The venue's side is [`crate::engine::audience::shards`].

use std::sync::Arc;
use std::sync::atomic::Ordering;

use bevy::log::warn;
use futures_util::StreamExt;
use tokio::sync::mpsc;

use super::NatsNode;
use crate::engine::audience::shards::{ShardCounting, ShardReporting};
use crate::engine::control::Throttle;
use crate::engine::net::NetStats;
use crate::engine::rest::Doorbell;
use crate::model::shard::{ShardReport, ShardTotals};

/// Messages waiting for the venue or for NATS; beyond it the oldest news is dropped (the next
/// report or totals replace it).
const CAPACITY: usize = 256;

impl NatsNode {
    /// The authority's side: every shard's reports in, the totals of summed polls out.
    pub fn start_shard_counting(&self, doorbell: Doorbell) -> ShardCounting {
        let (reports_in, reports) = mpsc::channel(CAPACITY);
        let (totals, totals_out) = mpsc::channel(CAPACITY);
        let (client, subjects, stats) = (self.client.clone(), self.subjects.clone(), self.stats.clone());
        self.runtime.spawn(receive(client.clone(), subjects.shard_report_all, stats, reports_in, doorbell, |s, p| {
            ShardReport::from_message(s, p)
        }));
        self.runtime.spawn(publish(client, subjects.shard_totals, totals_out, |t: ShardTotals| t.to_json()));
        ShardCounting::new(reports, totals)
    }

    /// Shard `shard`'s side: its reports out, the authority's totals in.
    pub fn start_shard_reporting(&self, shard: String, doorbell: Doorbell) -> ShardReporting {
        let (reports, reports_out) = mpsc::channel(CAPACITY);
        let (totals_in, totals) = mpsc::channel(CAPACITY);
        let (client, subjects, stats) = (self.client.clone(), self.subjects.clone(), self.stats.clone());
        let subject = subjects.shard_report(&shard);
        self.runtime.spawn(receive(client.clone(), subjects.shard_totals, stats, totals_in, doorbell, |s, p| {
            ShardTotals::from_message(s, p)
        }));
        self.runtime.spawn(publish(client, subject, reports_out, |r: ShardReport| r.to_json()));
        ShardReporting::new(shard, reports, totals)
    }
}

/// Reads `subject` (a wildcard for the authority), hands what parses to the venue and rings it.
async fn receive<T: Send + 'static>(
    client: async_nats::Client,
    subject: String,
    stats: Arc<NetStats>,
    venue: mpsc::Sender<T>,
    doorbell: Doorbell,
    parse: impl Fn(&str, &[u8]) -> Result<T, crate::model::net::NetError> + Send + 'static,
) {
    let mut refused = Throttle::default();
    let Ok(mut messages) = client.subscribe(subject.clone()).await else {
        warn!("NATS: cannot subscribe to {subject}: shards' counts will not arrive");
        return;
    };
    while let Some(message) = messages.next().await {
        match parse(message.subject.as_str(), &message.payload) {
            Ok(value) => {
                if venue.try_send(value).is_err() {
                    stats.refused.fetch_add(1, Ordering::Relaxed);
                    refused
                        .say(|| format!("NATS: the venue is behind on {subject}; dropped one (the next replaces it)"));
                }
                doorbell.ring();
            }
            Err(e) => {
                stats.refused.fetch_add(1, Ordering::Relaxed);
                refused.say(|| format!("NATS: refused {e}"));
            }
        }
    }
}

/// Publishes what the venue hands over on `subject`.
async fn publish<T>(
    client: async_nats::Client,
    subject: String,
    mut venue: mpsc::Receiver<T>,
    encode: impl Fn(T) -> Vec<u8>,
) {
    while let Some(value) = venue.recv().await {
        // The client queues while it reconnects; counts are sent again within a second.
        let _ = client.publish(subject.clone(), encode(value).into()).await;
    }
}
