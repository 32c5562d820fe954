//! The motion-capture edge: one UDP socket per VMC port the scene's performers take capture on.
//! Packets from allowed addresses are read as OSC (with the control edge's bounds), then as
//! VMC (bones checked: unknown names, NaN and huge transforms refused), and handed to the venue
//! as pose updates through a bounded queue. VMC has no authentication: a packet from an address
//! that is not allowed is dropped unread. Every refusal is counted and said at most once a
//! second.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr, UdpSocket as StdUdpSocket};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use tokio::net::UdpSocket;
use tokio::sync::watch;

use crate::engine::control::Throttle;
use crate::engine::performer::{PoseArrival, PoseHub, VmcPort};
use crate::model::osc::{self, AllowList};
use crate::model::performer::VmcReader;

/// The running capture edge.
#[derive(bevy::prelude::Resource)]
pub struct VmcEdge {
    /// Each socket's address (ports chosen when asked for 0) and the performers on it.
    pub sockets: Vec<(SocketAddr, Vec<String>)>,
    stop: watch::Sender<bool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl VmcEdge {
    /// Binds one socket per port on `host` (an error names the port) and starts receiving on a
    /// thread of its own.
    pub fn start(host: IpAddr, ports: Vec<VmcPort>, allow: AllowList, hub: Arc<PoseHub>) -> std::io::Result<Self> {
        let mut bound = Vec::new();
        for (port, users) in ports {
            let socket = StdUdpSocket::bind(SocketAddr::new(host, port))
                .map_err(|e| std::io::Error::new(e.kind(), format!("cannot take VMC on {host}:{port}: {e}")))?;
            socket.set_nonblocking(true)?;
            bound.push((socket, users));
        }
        let sockets = bound
            .iter()
            .map(|(s, users)| Ok((s.local_addr()?, users.iter().map(|u| u.0.clone()).collect())))
            .collect::<std::io::Result<Vec<_>>>()?;
        let (stop, stopped) = watch::channel(false);
        let thread = std::thread::Builder::new().name("parvis-vmc".into()).spawn(move || {
            let runtime = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
                Ok(r) => r,
                Err(e) => {
                    bevy::log::error!("VMC: cannot start its runtime: {e}");
                    return;
                }
            };
            runtime.block_on(async move {
                let mut tasks = Vec::new();
                for (socket, users) in bound {
                    match UdpSocket::from_std(socket) {
                        Ok(socket) => tasks.push(tokio::spawn(receive(
                            socket,
                            users,
                            allow.clone(),
                            hub.clone(),
                            stopped.clone(),
                        ))),
                        Err(e) => bevy::log::error!("VMC: {e}"),
                    }
                }
                for task in tasks {
                    let _ = task.await;
                }
            });
        })?;
        Ok(Self { sockets, stop, thread: Some(thread) })
    }
}

impl Drop for VmcEdge {
    fn drop(&mut self) {
        let _ = self.stop.send(true);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// Which performer a packet from `from` drives: the one that names that sender, else the one
/// that takes any sender.
fn performer_for(users: &[(String, Option<IpAddr>)], from: IpAddr) -> Option<&str> {
    let named = users.iter().find(|(_, f)| *f == Some(from));
    named.or_else(|| users.iter().find(|(_, f)| f.is_none())).map(|u| u.0.as_str())
}

async fn receive(
    socket: UdpSocket,
    users: Vec<(String, Option<IpAddr>)>,
    allow: AllowList,
    hub: Arc<PoseHub>,
    mut stopped: watch::Receiver<bool>,
) {
    let mut buffer = vec![0u8; 65_536];
    // One reader per sending machine, as the venue tells senders apart: blendshape values and
    // their `Apply` may come from different sockets of one tool.
    let mut readers: HashMap<IpAddr, VmcReader> = HashMap::new();
    let (mut refused, mut malformed, mut bad, mut unclaimed, mut full) =
        (Throttle::default(), Throttle::default(), Throttle::default(), Throttle::default(), Throttle::default());
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    let stats = hub.stats.clone();
    loop {
        let (len, from) = tokio::select! {
            _ = stopped.wait_for(|s| *s) => return,
            _ = tick.tick() => {
                refused.flush("VMC packets from addresses not allowed");
                malformed.flush("malformed VMC packets");
                bad.flush("VMC messages refused");
                unclaimed.flush("VMC packets for no performer");
                full.flush("pose updates dropped on a full queue");
                continue;
            }
            received = socket.recv_from(&mut buffer) => match received {
                Ok(r) => r,
                Err(_) => continue,
            },
        };
        if !allow.allows(from.ip()) {
            stats.refused_sources.fetch_add(1, Ordering::Relaxed);
            refused
                .say(|| format!("VMC from {from} dropped: not an allowed address (allowed: {allow}; see --vmc-allow)"));
            continue;
        }
        let Some(performer) = performer_for(&users, from.ip()) else {
            stats.unclaimed.fetch_add(1, Ordering::Relaxed);
            unclaimed.say(|| format!("VMC from {from}: no performer on this port takes capture from that address"));
            continue;
        };
        let messages = match osc::decode(&buffer[..len]) {
            Ok(messages) => messages,
            Err(e) => {
                stats.malformed.fetch_add(1, Ordering::Relaxed);
                malformed.say(|| format!("VMC from {from}: {e}"));
                continue;
            }
        };
        stats.packets.fetch_add(1, Ordering::Relaxed);
        // Senders are few (a studio's capture machines), but a spoofed flood of addresses must
        // not grow the map without bound.
        if readers.len() >= 64 && !readers.contains_key(&from.ip()) {
            readers.clear();
        }
        let packet = readers.entry(from.ip()).or_default().read(&messages);
        if !packet.problems.is_empty() {
            stats.refused_messages.fetch_add(packet.problems.len() as u64, Ordering::Relaxed);
            bad.say(|| format!("VMC from {from}: {}", packet.problems[0]));
        }
        if packet.update.is_empty() {
            continue;
        }
        let arrival =
            PoseArrival { performer: performer.to_owned(), from, update: packet.update, received: Instant::now() };
        if !hub.send(arrival) {
            full.say(|| format!("VMC from {from}: the venue's queue is full"));
        }
    }
}
