//! The OSC edge: a UDP socket for the control room. Packets from allowed source addresses are
//! decoded here (malformed and hostile ones counted and dropped) and queued for the venue
//! through the engine's [`ControlHub`]; the venue's echoes go out from the same socket to
//! each target, so a desk sees the venue at one address. OSC has no authentication: a packet
//! from an address that is not listed is dropped unread, and said once a second at most.

use std::net::{SocketAddr, UdpSocket as StdUdpSocket};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use tokio::net::UdpSocket;
use tokio::sync::{mpsc, watch};

use crate::engine::control::{ControlHub, ControlPacket};
use crate::model::osc::{self, AllowList};

/// The OSC edge's settings.
#[derive(Debug, Clone)]
pub struct OscConfig {
    /// Where to listen; `None` to only send echoes (from a free loopback port).
    pub listen: Option<SocketAddr>,
    /// Who may send.
    pub allow: AllowList,
    /// Where echoes go.
    pub targets: Vec<SocketAddr>,
}

/// The running OSC edge.
#[derive(bevy::prelude::Resource)]
pub struct OscEdge {
    /// The socket's address (the port chosen when asked for port 0).
    pub local_addr: SocketAddr,
    stop: watch::Sender<bool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl OscEdge {
    /// Binds the socket (an error names the address) and starts receiving and sending on a
    /// thread of its own.
    pub fn start(
        config: OscConfig,
        hub: Arc<ControlHub>,
        echoes: Option<mpsc::Receiver<Vec<u8>>>,
    ) -> std::io::Result<Self> {
        let bind = config.listen.unwrap_or_else(|| SocketAddr::from(([127, 0, 0, 1], 0)));
        let socket = StdUdpSocket::bind(bind)?;
        socket.set_nonblocking(true)?;
        let local_addr = socket.local_addr()?;
        let (stop, stopped) = watch::channel(false);
        let listening = config.listen.is_some();
        let thread = std::thread::Builder::new().name("parvis-osc".into()).spawn(move || {
            let runtime = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
                Ok(r) => r,
                Err(e) => {
                    bevy::log::error!("OSC: cannot start its runtime: {e}");
                    return;
                }
            };
            runtime.block_on(async move {
                let socket = match UdpSocket::from_std(socket) {
                    Ok(s) => Arc::new(s),
                    Err(e) => {
                        bevy::log::error!("OSC: {e}");
                        return;
                    }
                };
                let sender = echoes.map(|echoes| tokio::spawn(send_echoes(socket.clone(), config.targets, echoes)));
                if listening {
                    receive(socket, config.allow, hub, stopped).await;
                } else {
                    let mut stopped = stopped;
                    let _ = stopped.wait_for(|s| *s).await;
                }
                if let Some(sender) = sender {
                    sender.abort();
                }
            });
        })?;
        Ok(Self { local_addr, stop, thread: Some(thread) })
    }

    /// Stops receiving and sending, and waits for the thread.
    pub fn shutdown(mut self) {
        let _ = self.stop.send(true);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

impl Drop for OscEdge {
    fn drop(&mut self) {
        let _ = self.stop.send(true);
    }
}

/// Says something at most once a second, with the count left unsaid.
struct Throttle {
    last: Option<Instant>,
    unsaid: u64,
}

impl Throttle {
    fn say(&mut self, line: impl FnOnce() -> String) {
        let now = Instant::now();
        if self.last.is_some_and(|t| now - t < Duration::from_secs(1)) {
            self.unsaid += 1;
            return;
        }
        let more = std::mem::take(&mut self.unsaid);
        let more = if more > 0 { format!(" ({more} more since the last line)") } else { String::new() };
        bevy::log::warn!("{}{more}", line());
        self.last = Some(now);
    }

    /// Says how many went unsaid, once the second is over, so that a flood's end is reported.
    fn flush(&mut self, what: &str) {
        if self.unsaid > 0 && self.last.is_some_and(|t| t.elapsed() >= Duration::from_secs(1)) {
            bevy::log::warn!("OSC: {} more {what} since the last line", self.unsaid);
            self.unsaid = 0;
            self.last = Some(Instant::now());
        }
    }
}

async fn receive(socket: Arc<UdpSocket>, allow: AllowList, hub: Arc<ControlHub>, mut stopped: watch::Receiver<bool>) {
    let mut buffer = vec![0u8; 65_536];
    let mut refused = Throttle { last: None, unsaid: 0 };
    let mut malformed = Throttle { last: None, unsaid: 0 };
    let mut full = Throttle { last: None, unsaid: 0 };
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    loop {
        let (len, from) = tokio::select! {
            _ = stopped.wait_for(|s| *s) => return,
            _ = tick.tick() => {
                refused.flush("packets from addresses not allowed");
                malformed.flush("malformed packets");
                full.flush("packets dropped on a full queue");
                continue;
            }
            received = socket.recv_from(&mut buffer) => match received {
                Ok(r) => r,
                // An ICMP "port unreachable" from an echo target shows up here on some
                // systems: not a reason to stop listening.
                Err(_) => continue,
            },
        };
        if !allow.allows(from.ip()) {
            hub.stats.refused_sources.fetch_add(1, Ordering::Relaxed);
            refused
                .say(|| format!("OSC from {from} dropped: not an allowed address (allowed: {allow}; see --osc-allow)"));
            continue;
        }
        let received = Instant::now();
        match osc::decode(&buffer[..len]) {
            Ok(messages) => {
                hub.stats.packets.fetch_add(1, Ordering::Relaxed);
                match hub.inbox.try_send(ControlPacket { from, messages, received }) {
                    Ok(()) => hub.doorbell.ring(),
                    Err(_) => {
                        hub.stats.dropped_inbound.fetch_add(1, Ordering::Relaxed);
                        full.say(|| format!("OSC from {from} dropped: the venue's queue is full"));
                    }
                }
            }
            Err(e) => {
                hub.stats.malformed.fetch_add(1, Ordering::Relaxed);
                malformed.say(|| format!("OSC from {from}: {e}"));
            }
        }
    }
}

async fn send_echoes(socket: Arc<UdpSocket>, targets: Vec<SocketAddr>, mut echoes: mpsc::Receiver<Vec<u8>>) {
    let mut failed = Throttle { last: None, unsaid: 0 };
    while let Some(packet) = echoes.recv().await {
        for target in &targets {
            if let Err(e) = socket.send_to(&packet, target).await {
                failed.say(|| format!("OSC echo to {target}: {e}"));
            }
        }
    }
}
