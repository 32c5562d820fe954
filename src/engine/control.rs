//! Where the control room's edges meet the venue: OSC from lighting desks, TouchDesigner or a
//! stage manager's tablet comes in decoded, goes out as echoes. The engine publishes a
//! [`ControlHub`] (the bounded channels both ways, counters, the doorbell); the OSC edge holds
//! it, the venue holds the [`ControlLink`]. Every message becomes a venue command from a
//! [`CommandOrigin::Control`] origin, checked and logged like any other; what is refused is
//! counted and said at most once a second, so a flood of bad packets cannot flood the log.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use bevy::prelude::*;
use rosc::OscMessage;
use tokio::sync::mpsc;

use crate::engine::command::{AppliedCommand, SubmitCommand, VenueParams};
use crate::engine::rest::Doorbell;
use crate::engine::schedule::VenueSystems;
use crate::engine::show::{Shows, TransportState};
use crate::model::command::{CommandOrigin, VenueCommand};
use crate::model::osc;
use crate::model::params::ParamValue;

/// Packets waiting for the venue before the edge drops new ones (counted).
pub const INBOX_CAPACITY: usize = 4096;
/// Echo packets waiting for the edge before the venue drops new ones (counted).
pub const OUTBOX_CAPACITY: usize = 1024;
/// Most messages in one echo packet (a bundle), to stay near one network frame.
const ECHO_BATCH: usize = 24;

/// Messages from one packet, decoded at the edge.
#[derive(Debug, Clone)]
pub struct ControlPacket {
    /// Who sent it.
    pub from: SocketAddr,
    /// Its messages, bundles flattened.
    pub messages: Vec<OscMessage>,
    /// When it arrived, for latency.
    pub received: Instant,
}

/// Counters for `/metrics` and logs.
#[derive(Debug, Default)]
pub struct ControlStats {
    /// Packets received from allowed addresses.
    pub packets: AtomicU64,
    /// Packets from addresses not allowed, dropped unread.
    pub refused_sources: AtomicU64,
    /// Packets that were not OSC or over the limits.
    pub malformed: AtomicU64,
    /// Messages that became commands.
    pub commands: AtomicU64,
    /// Messages refused (unknown address, wrong arguments, a value out of range).
    pub refused_messages: AtomicU64,
    /// Packets dropped because the venue's inbox was full.
    pub dropped_inbound: AtomicU64,
    /// Echo packets dropped because the edge's outbox was full.
    pub dropped_echoes: AtomicU64,
    /// Echo packets sent.
    pub echoes: AtomicU64,
}

/// What the control edges hold.
pub struct ControlHub {
    /// Decoded packets into the venue. Bounded: a full inbox drops the packet (counted).
    pub inbox: mpsc::Sender<ControlPacket>,
    /// Counters.
    pub stats: Arc<ControlStats>,
    /// Rung with each packet queued, so that a resting venue wakes at once.
    pub doorbell: Doorbell,
    /// The venue's OSC address space as OSCQuery JSON, with current values; kept up to date
    /// by the venue, served by the edge.
    pub namespace: RwLock<Arc<serde_json::Value>>,
}

/// The venue's end of the control channels.
#[derive(Resource)]
pub struct ControlLink {
    inbox: mpsc::Receiver<ControlPacket>,
    /// Echo packets (encoded OSC) for the edge to send to its targets; absent with no targets.
    outbox: Option<mpsc::Sender<Vec<u8>>>,
    /// Counters, shared with the edge.
    pub stats: Arc<ControlStats>,
    hub: Arc<ControlHub>,
    said: Throttle,
}

/// Makes the channels: the hub for the edge, the link for the venue, and the receiving end of
/// the echoes if `echo` (the edge sends them).
pub fn control_link(doorbell: Doorbell, echo: bool) -> (Arc<ControlHub>, ControlLink, Option<mpsc::Receiver<Vec<u8>>>) {
    let (tx, rx) = mpsc::channel(INBOX_CAPACITY);
    let (out_tx, out_rx) = if echo {
        let (t, r) = mpsc::channel(OUTBOX_CAPACITY);
        (Some(t), Some(r))
    } else {
        (None, None)
    };
    let stats = Arc::new(ControlStats::default());
    let hub = Arc::new(ControlHub {
        inbox: tx,
        stats: stats.clone(),
        doorbell,
        namespace: RwLock::new(Arc::new(serde_json::Value::Null)),
    });
    let link = ControlLink { inbox: rx, outbox: out_tx, stats, hub: hub.clone(), said: Throttle::default() };
    (hub, link, out_rx)
}

/// Says a line at most once a second, with the number left unsaid, so that a flood of bad
/// input cannot flood the log. Shared by the control room's edges and the venue.
#[derive(Debug, Default)]
pub struct Throttle {
    last: Option<Instant>,
    unsaid: u64,
}

impl Throttle {
    /// Says `line` unless a line was said less than a second ago (then counts it).
    pub fn say(&mut self, line: impl FnOnce() -> String) {
        let now = Instant::now();
        if self.last.is_some_and(|t| now - t < Duration::from_secs(1)) {
            self.unsaid += 1;
            return;
        }
        let more = std::mem::take(&mut self.unsaid);
        let more = if more > 0 { format!(" ({more} more since the last line)") } else { String::new() };
        warn!("{}{more}", line());
        self.last = Some(now);
    }

    /// Says how many `what` went unsaid, once the second is over, so that a flood's end is
    /// reported.
    pub fn flush(&mut self, what: &str) {
        if self.unsaid > 0 && self.last.is_some_and(|t| t.elapsed() >= Duration::from_secs(1)) {
            warn!("OSC: {} more {what} since the last line", self.unsaid);
            self.unsaid = 0;
            self.last = Some(Instant::now());
        }
    }
}

/// The control room's inputs and echoes; does nothing until a [`ControlLink`] is inserted.
pub struct ControlPlugin;

impl Plugin for ControlPlugin {
    fn build(&self, app: &mut App) {
        app.init_resource::<EchoState>()
            .add_systems(Update, ingest_control.run_if(resource_exists::<ControlLink>).in_set(VenueSystems::Ingest))
            .add_systems(
                Update,
                (echo_to_control, describe_for_oscquery)
                    .run_if(resource_exists::<ControlLink>)
                    .in_set(VenueSystems::Present),
            );
    }
}

/// Messages read per frame at most, so that a flood delays the venue by a bounded amount
/// (the rest wait in the inbox, then the edge drops).
const MESSAGES_PER_FRAME: usize = 20_000;

fn ingest_control(
    mut link: ResMut<ControlLink>,
    params: Res<VenueParams>,
    shows: Res<Shows>,
    scene: Option<Res<crate::engine::command::CurrentScene>>,
    mut submit: MessageWriter<SubmitCommand>,
) {
    let link = &mut *link;
    // The show on the transport, else the venue's first.
    let show = shows
        .running
        .as_ref()
        .map(|s| s.plan.name.clone())
        .or_else(|| scene.as_ref().and_then(|s| s.0.shows.first().map(|s| s.name.clone())));
    link.said.flush("messages refused");
    let mut read = 0;
    while read < MESSAGES_PER_FRAME {
        let Ok(packet) = link.inbox.try_recv() else { break };
        let origin = CommandOrigin::Control(format!("osc {}", packet.from));
        for message in &packet.messages {
            read += 1;
            match osc::command_for(message, &params, show.as_deref()) {
                Ok(Some(command)) => {
                    link.stats.commands.fetch_add(1, Ordering::Relaxed);
                    submit.write(SubmitCommand { origin: origin.clone(), command });
                }
                Ok(None) => {}
                Err(e) => {
                    link.stats.refused_messages.fetch_add(1, Ordering::Relaxed);
                    link.said.say(|| format!("OSC from {}: {e}", packet.from));
                }
            }
        }
    }
}

/// What the desks were last told.
#[derive(Resource, Default)]
struct EchoState {
    params: Vec<(String, ParamValue)>,
    transport: Option<(String, TransportState)>,
}

fn echo_to_control(
    link: Res<ControlLink>,
    params: Res<VenueParams>,
    shows: Res<Shows>,
    mut applied: MessageReader<AppliedCommand>,
    mut state: ResMut<EchoState>,
) {
    let Some(outbox) = &link.outbox else {
        applied.clear();
        return;
    };
    let mut messages = Vec::new();
    // Every parameter whose value differs from what the desks last heard: set by anyone,
    // moving in an animation, or reset by a new scene.
    if params.is_changed() {
        let now: Vec<(String, ParamValue)> = params.iter().map(|(d, v)| (d.name.clone(), v.clone())).collect();
        for (name, value) in &now {
            if !state.params.iter().any(|(n, v)| n == name && v == value) {
                messages.push(osc::param_message(name, value));
            }
        }
        state.params = now;
    }
    for entry in applied.read() {
        if let VenueCommand::CueFired { show, cue, planned, actual } = &entry.command {
            messages.push(osc::cue_fired_message(show, cue, *planned, *actual));
        }
    }
    let transport = shows.running.as_ref().map(|s| (s.plan.name.clone(), s.state));
    if transport != state.transport {
        if let Some(show) = &shows.running {
            let name = match show.state {
                TransportState::Playing => "playing",
                TransportState::Paused => "paused",
                TransportState::Stopped => "stopped",
            };
            messages.push(osc::transport_message(&show.plan.name, name, show.position));
        }
        state.transport = transport;
    }
    while !messages.is_empty() {
        let batch: Vec<OscMessage> = messages.drain(..messages.len().min(ECHO_BATCH)).collect();
        match outbox.try_send(osc::encode(batch)) {
            Ok(()) => link.stats.echoes.fetch_add(1, Ordering::Relaxed),
            Err(_) => link.stats.dropped_echoes.fetch_add(1, Ordering::Relaxed),
        };
    }
}

/// Keeps the OSCQuery description current: on a new scene, a new show on the transport, or a
/// parameter's change (values are part of it).
fn describe_for_oscquery(
    link: Res<ControlLink>,
    params: Res<VenueParams>,
    shows: Res<Shows>,
    scene: Option<Res<crate::engine::command::CurrentScene>>,
    mut described: Local<Option<String>>,
) {
    let Some(scene) = scene else { return };
    let show = shows.running.as_ref().map(|s| s.plan.name.clone());
    let fresh = link.hub.namespace.read().map(|n| n.is_null()).unwrap_or(true);
    if !(fresh || params.is_changed() || scene.is_changed() || *described != show) {
        return;
    }
    let length = shows.running.as_ref().and_then(|s| s.plan.length());
    let tree = crate::model::oscquery::namespace(&scene.0, &params, show.as_deref(), length);
    if let Ok(mut namespace) = link.hub.namespace.write() {
        *namespace = Arc::new(tree);
    }
    *described = show;
}
