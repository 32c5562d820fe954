//! The performers' motion over NATS: the authority publishes each frame's applied pose updates
//! ([`PoseRelay`]) on `parvis.V.performer.poses`; followers and shards read them into their
//! venue as a capture source, so that a headset, a projection wall or an overflow shard shows
//! the performer the main stage shows. Core NATS, not the log: a lost message is replaced by
//! the next frame's. What arrives is read as any recording is (bounded, checked: finite values,
//! unit rotations, known bones); a refused message is counted and said.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Instant;

use futures_util::StreamExt;
use tokio::sync::mpsc;

use super::NatsNode;
use crate::engine::control::Throttle;
use crate::engine::performer::{PoseArrival, PoseHub, PoseRelay};
use crate::model::net::MAX_POSES_BYTES;
use crate::model::performer::recording;

/// Frames of poses waiting for NATS before the newest are dropped.
const CAPACITY: usize = 64;

/// Where relayed poses say they come from: the main stage, not a capture rig's address.
pub const MAIN_STAGE: SocketAddr = SocketAddr::V4(std::net::SocketAddrV4::new(std::net::Ipv4Addr::UNSPECIFIED, 0));

impl NatsNode {
    /// The authority's side: the relay the venue hands its frames' poses to.
    pub fn start_pose_relay(&self) -> PoseRelay {
        let (outgoing, mut frames) = mpsc::channel::<Vec<u8>>(CAPACITY);
        let (client, subject) = (self.client.clone(), self.subjects.performer_poses.clone());
        self.runtime.spawn(async move {
            while let Some(frame) = frames.recv().await {
                // The client queues while it reconnects; poses are replaced by the next.
                let _ = client.publish(subject.clone(), frame.into()).await;
            }
        });
        PoseRelay::new(outgoing)
    }

    /// A follower's side: the main stage's poses into `hub`, as a capture source.
    pub fn follow_poses(&self, hub: Arc<PoseHub>) {
        let (client, subject, stats) = (self.client.clone(), self.subjects.performer_poses.clone(), self.stats.clone());
        self.runtime.spawn(async move {
            let mut refused = Throttle::default();
            let Ok(mut messages) = client.subscribe(subject.clone()).await else {
                bevy::log::warn!("NATS: cannot subscribe to {subject}: the performers will not move here");
                return;
            };
            while let Some(message) = messages.next().await {
                let records = if message.payload.len() > MAX_POSES_BYTES {
                    Err(format!("{} bytes, more than the {MAX_POSES_BYTES} allowed", message.payload.len()))
                } else {
                    recording::read(&message.payload)
                };
                let records = match records {
                    Ok(records) => records,
                    Err(e) => {
                        stats.refused.fetch_add(1, Ordering::Relaxed);
                        refused.say(|| format!("NATS: refused on {subject}: {e}"));
                        continue;
                    }
                };
                let received = Instant::now();
                for record in records {
                    hub.send(PoseArrival {
                        performer: record.performer,
                        from: MAIN_STAGE,
                        update: record.update,
                        received,
                    });
                }
            }
        });
    }
}
