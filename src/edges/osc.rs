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

use crate::engine::control::{ControlHub, ControlPacket, Throttle};
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
    /// Where to serve OSCQuery (HTTP), if anywhere.
    pub query: Option<SocketAddr>,
    /// The venue's name, for OSCQuery's `HOST_INFO`.
    pub name: String,
}

/// The running OSC edge.
#[derive(bevy::prelude::Resource)]
pub struct OscEdge {
    /// The socket's address (the port chosen when asked for port 0).
    pub local_addr: SocketAddr,
    /// OSCQuery's HTTP address, if served.
    pub query_addr: Option<SocketAddr>,
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
        let query = match config.query {
            Some(addr) => {
                let listener = std::net::TcpListener::bind(addr)?;
                listener.set_nonblocking(true)?;
                Some(listener)
            }
            None => None,
        };
        let query_addr = query.as_ref().map(|l| l.local_addr()).transpose()?;
        let host_info = crate::model::oscquery::host_info(&config.name, listening.then_some(local_addr.port()));
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
                let server = query.and_then(|listener| match tokio::net::TcpListener::from_std(listener) {
                    Ok(listener) => Some(tokio::spawn(serve_oscquery(listener, hub.clone(), host_info))),
                    Err(e) => {
                        bevy::log::error!("OSCQuery: {e}");
                        None
                    }
                });
                if listening {
                    receive(socket, config.allow, hub, stopped).await;
                } else {
                    let mut stopped = stopped;
                    let _ = stopped.wait_for(|s| *s).await;
                }
                if let Some(sender) = sender {
                    sender.abort();
                }
                if let Some(server) = server {
                    server.abort();
                }
            });
        })?;
        Ok(Self { local_addr, query_addr, stop, thread: Some(thread) })
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

async fn receive(socket: Arc<UdpSocket>, allow: AllowList, hub: Arc<ControlHub>, mut stopped: watch::Receiver<bool>) {
    let mut buffer = vec![0u8; 65_536];
    let mut refused = Throttle::default();
    let mut malformed = Throttle::default();
    let mut full = Throttle::default();
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
    let mut failed = Throttle::default();
    while let Some(packet) = echoes.recv().await {
        for target in &targets {
            if let Err(e) = socket.send_to(&packet, target).await {
                failed.say(|| format!("OSC echo to {target}: {e}"));
            }
        }
    }
}

/// OSCQuery connections served at once; more wait for a slot.
const QUERY_CONNECTIONS: usize = 32;
/// Longest request head read.
const QUERY_HEAD: usize = 8 * 1024;

/// Serves the venue's OSCQuery description: `GET /path[?ATTRIBUTE]`, one answer per
/// connection, JSON, readable from any web page (the description holds nothing secret).
async fn serve_oscquery(listener: tokio::net::TcpListener, hub: Arc<ControlHub>, host_info: serde_json::Value) {
    let slots = Arc::new(tokio::sync::Semaphore::new(QUERY_CONNECTIONS));
    let host_info = Arc::new(host_info);
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            // Out of file descriptors, or the like: wait rather than spin.
            tokio::time::sleep(Duration::from_millis(100)).await;
            continue;
        };
        let Ok(slot) = slots.clone().acquire_owned().await else { return };
        let (hub, host_info) = (hub.clone(), host_info.clone());
        tokio::spawn(async move {
            let _ = tokio::time::timeout(Duration::from_secs(5), answer_query(stream, &hub, &host_info)).await;
            drop(slot);
        });
    }
}

async fn answer_query(
    mut stream: tokio::net::TcpStream,
    hub: &ControlHub,
    host_info: &serde_json::Value,
) -> std::io::Result<()> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut head = Vec::with_capacity(1024);
    let mut chunk = [0u8; 1024];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
        let n = stream.read(&mut chunk).await?;
        if n == 0 || head.len() + n > QUERY_HEAD {
            return Ok(());
        }
        head.extend_from_slice(&chunk[..n]);
    }
    let line = String::from_utf8_lossy(&head);
    let mut words = line.lines().next().unwrap_or_default().split(' ');
    let (method, target) = (words.next().unwrap_or_default(), words.next().unwrap_or_default());
    let (status, body) = if method != "GET" && method != "HEAD" {
        ("405 Method Not Allowed", serde_json::json!({"error": "OSCQuery answers GET"}))
    } else {
        let (path, query) = match target.split_once('?') {
            Some((p, q)) => (p, Some(q)),
            None => (target, None),
        };
        let tree = hub.namespace.read().map(|n| n.clone()).unwrap_or_default();
        // Until the venue's first frame has described its scene there is nothing to answer: a
        // client told to retry does not take an empty venue for the real one.
        if tree.is_null() {
            ("503 Service Unavailable", serde_json::json!({"error": "the venue is loading its scene; retry"}))
        } else {
            match crate::model::oscquery::answer(&tree, path, query, host_info) {
                Some(value) => ("200 OK", value),
                None => ("404 Not Found", serde_json::json!({"error": format!("nothing at {target}")})),
            }
        }
    };
    let body = body.to_string();
    let retry = if status.starts_with("503") { "Retry-After: 1\r\n" } else { "" };
    let response = format!(
        "HTTP/1.1 {status}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n{retry}Access-Control-Allow-Origin: *\r\nConnection: close\r\n\r\n",
        body.len()
    );
    stream.write_all(response.as_bytes()).await?;
    if method == "GET" {
        stream.write_all(body.as_bytes()).await?;
    }
    stream.shutdown().await
}
