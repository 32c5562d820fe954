//! The soak (`parvis loadgen --soak`): the steady load of [`super::loadgen`] plus what wears a
//! live venue down over time — members who drop without closing and come back (churn), members
//! who stop reading (slow readers), and members who flood — while the server's resident memory,
//! its receipt-to-applied latency and its counters are sampled at an interval. At the end, the
//! audience commands the server says it applied are counted against the venue's command log:
//! every accepted command must be there.

use std::net::{Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use serde::Serialize;
use tokio::sync::watch;
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::Message;

use super::loadgen::{
    M_ACCEPTED, M_APPLIED, M_CONNECTED, M_DROPPED_OUT, M_LATENCY_BUCKET, M_MESSAGES, M_SLOW_CLOSED, connect_from,
    histogram_delta, histogram_quantile, process_rss_bytes, scrape_metrics, ws_config,
};

/// What wears the venue down, besides the steady load.
#[derive(Debug, Clone)]
pub struct SoakConfig {
    /// The audience edge (loopback).
    pub addr: SocketAddr,
    /// Members who join, chat a little, drop the connection without a close (half of them
    /// with a reset) and come back, over and over.
    pub churners: u32,
    /// Members who join and then never read again (with a small receive window, so that the
    /// server's sends back up soon); closed by the server, they come back.
    pub slow_readers: u32,
    /// Members who send as fast as they can, are closed for flooding, and come back.
    pub flooders: u32,
    /// How often the server is sampled.
    pub sample_every: Duration,
    /// How long the soak lasts.
    pub duration: Duration,
    /// The server's process, for its resident memory.
    pub server_pid: Option<u32>,
    /// The venue's command log, to count the audience's applied commands in.
    pub log: Option<PathBuf>,
}

/// One sample of the server.
#[derive(Debug, Clone, Serialize)]
pub struct SoakSample {
    /// Seconds since the soak began.
    pub t_s: f64,
    /// Resident memory, MiB.
    pub rss_mib: Option<f64>,
    /// 99th percentile of receipt-to-applied latency over the interval, milliseconds.
    pub latency_p99_ms: Option<f64>,
    /// Audience messages received over the interval, per second.
    pub messages_per_s: f64,
    /// Audience commands applied so far.
    pub commands_applied: u64,
    /// Members connected.
    pub connected: u64,
    /// Broadcast frames slow members skipped so far.
    pub skipped_outbound: u64,
    /// Members the server closed for reading nothing, so far.
    pub slow_closed: u64,
}

/// What the soak saw.
#[derive(Debug, Clone, Serialize)]
pub struct SoakReport {
    /// The samples, in time order.
    pub samples: Vec<SoakSample>,
    /// Join–chat–drop cycles done, and how many failed to join.
    pub churn_cycles: u64,
    /// Churn joins refused or failed.
    pub churn_failures: u64,
    /// Times a flooder was closed by the server.
    pub flood_closes: u64,
    /// Times a slow reader found itself closed by the server.
    pub slow_closes: u64,
    /// Growth of the resident memory from the end of the warm-up (the first fifth of the soak,
    /// at least one sample) to the end, MiB.
    pub rss_growth_mib: Option<f64>,
    /// The same as a share of the memory at the end of the warm-up.
    pub rss_growth_share: Option<f64>,
    /// The worst interval's 99th percentile latency, milliseconds.
    pub worst_latency_p99_ms: Option<f64>,
    /// Audience commands the server says it applied (`/metrics`).
    pub commands_applied: Option<u64>,
    /// Audience commands in the command log.
    pub commands_logged: Option<u64>,
}

impl SoakReport {
    /// Applied commands missing from the log (0 is the only good answer).
    pub fn lost_commands(&self) -> Option<i64> {
        Some(self.commands_applied? as i64 - self.commands_logged? as i64)
    }

    /// The report as Markdown: a line per sample, then the verdicts.
    pub fn to_markdown(&self) -> String {
        let mut out = String::from(
            "\n## Soak\n\n| t (s) | RSS (MiB) | latency p99 (ms) | messages/s | commands applied | connected | skipped by slow readers | slow readers closed |\n|---|---|---|---|---|---|---|---|\n",
        );
        let opt = |v: Option<f64>| v.map_or("—".to_owned(), |v| format!("{v:.1}"));
        for s in &self.samples {
            out.push_str(&format!(
                "| {:.0} | {} | {} | {:.0} | {} | {} | {} | {} |\n",
                s.t_s,
                opt(s.rss_mib),
                opt(s.latency_p99_ms),
                s.messages_per_s,
                s.commands_applied,
                s.connected,
                s.skipped_outbound,
                s.slow_closed
            ));
        }
        out.push_str(&format!(
            "\nchurn: {} cycles ({} failed joins); flooders closed {} times; slow readers closed {} times\n",
            self.churn_cycles, self.churn_failures, self.flood_closes, self.slow_closes
        ));
        out.push_str(&format!(
            "memory after warm-up: {} MiB growth ({}); worst interval latency p99: {} ms\n",
            opt(self.rss_growth_mib),
            self.rss_growth_share.map_or("—".to_owned(), |s| format!("{:.1} %", s * 100.0)),
            opt(self.worst_latency_p99_ms)
        ));
        out.push_str(&format!(
            "audience commands: {} applied, {} in the log, {} lost\n",
            self.commands_applied.map_or("—".to_owned(), |v| v.to_string()),
            self.commands_logged.map_or("—".to_owned(), |v| v.to_string()),
            self.lost_commands().map_or("—".to_owned(), |v| v.to_string())
        ));
        out
    }
}

#[derive(Default)]
struct Counters {
    churn_cycles: AtomicU64,
    churn_failures: AtomicU64,
    flood_closes: AtomicU64,
    slow_closes: AtomicU64,
}

type Socket = tokio_tungstenite::WebSocketStream<tokio::net::TcpStream>;

/// Opens a member's socket from `source` and says hello; the socket once welcomed.
async fn join(addr: SocketAddr, source: Ipv4Addr, name: &str) -> Option<Socket> {
    join_with(addr, source, name, None).await
}

/// As [`join`], with the socket's receive buffer set to `recv_buffer` bytes.
async fn join_with(addr: SocketAddr, source: Ipv4Addr, name: &str, recv_buffer: Option<u32>) -> Option<Socket> {
    let stream = match recv_buffer {
        None => connect_from(addr, Some(source)).await.ok()?,
        Some(size) => {
            let socket = tokio::net::TcpSocket::new_v4().ok()?;
            socket.set_recv_buffer_size(size).ok()?;
            socket.bind(SocketAddr::from((source, 0))).ok()?;
            socket.connect(addr).await.ok()?
        }
    };
    let (mut socket, _) =
        tokio_tungstenite::client_async_with_config(format!("ws://{addr}/ws"), stream, Some(ws_config())).await.ok()?;
    socket.send(Message::text(format!(r#"{{"type":"hello","v":1,"name":"{name}"}}"#))).await.ok()?;
    let welcome = tokio::time::timeout(Duration::from_secs(10), async {
        while let Some(Ok(message)) = socket.next().await {
            if let Message::Text(t) = message
                && t.as_str().starts_with(r#"{"type":"welcome""#)
            {
                return true;
            }
        }
        false
    });
    welcome.await.ok().filter(|w| *w).map(|_| socket)
}

/// A member who joins, chats a little, drops the connection without closing it, and comes back.
async fn churner(n: u32, addr: SocketAddr, counters: Arc<Counters>, mut stop: watch::Receiver<bool>) {
    let source = Ipv4Addr::new(127, 2, (n / 250) as u8, (n % 250 + 1) as u8);
    let mut cycle = 0u64;
    while !*stop.borrow() {
        cycle += 1;
        match join(addr, source, &format!("Churn{n}")).await {
            Some(mut socket) => {
                let lines = 1 + cycle % 3;
                for i in 0..lines {
                    let text = if (cycle + i).is_multiple_of(5) {
                        "!fog 0.02".to_owned()
                    } else {
                        format!("churn {n} {cycle}")
                    };
                    let _ = socket.send(Message::text(format!(r#"{{"type":"chat","text":"{text}"}}"#))).await;
                }
                tokio::time::sleep(Duration::from_millis(100 + (cycle * 37 % 200))).await;
                // Gone without a close frame: half with a reset, half with a plain FIN.
                if cycle.is_multiple_of(2) {
                    let _ = socket.get_ref().set_zero_linger();
                }
                drop(socket);
                counters.churn_cycles.fetch_add(1, Ordering::Relaxed);
            }
            None => {
                counters.churn_failures.fetch_add(1, Ordering::Relaxed);
            }
        }
        tokio::select! {
            () = tokio::time::sleep(Duration::from_millis(150)) => {}
            _ = stop.changed() => {}
        }
    }
}

/// A member who joins and never reads again: the server's sends to it back up until the server
/// closes it. To get there within a short soak it starts with a burst of binary frames, each of
/// which the server answers with an error it never reads (the broadcast alone would take minutes
/// to fill a socket). It pings once a second, which fails once the server has dropped it; then
/// it comes back.
async fn slow_reader(n: u32, addr: SocketAddr, counters: Arc<Counters>, mut stop: watch::Receiver<bool>) {
    let source = Ipv4Addr::new(127, 3, 0, (n % 250 + 1) as u8);
    while !*stop.borrow() {
        if let Some(mut socket) = join_with(addr, source, &format!("Slow{n}"), Some(4096)).await {
            let burst = async {
                for _ in 0..50_000 {
                    if socket.send(Message::binary(vec![0u8])).await.is_err() {
                        break;
                    }
                }
            };
            let _ = tokio::time::timeout(Duration::from_secs(5), burst).await;
            loop {
                tokio::select! {
                    () = tokio::time::sleep(Duration::from_secs(1)) => {}
                    _ = stop.changed() => return,
                }
                let ping = tokio::time::timeout(Duration::from_secs(5), socket.send(Message::Ping(Vec::new().into())));
                if !matches!(ping.await, Ok(Ok(()))) {
                    counters.slow_closes.fetch_add(1, Ordering::Relaxed);
                    break;
                }
            }
        }
        tokio::select! {
            () = tokio::time::sleep(Duration::from_secs(1)) => {}
            _ = stop.changed() => {}
        }
    }
}

/// A member who sends as fast as possible until closed for flooding, then comes back.
async fn flooder(n: u32, addr: SocketAddr, counters: Arc<Counters>, mut stop: watch::Receiver<bool>) {
    let source = Ipv4Addr::new(127, 4, 0, (n % 250 + 1) as u8);
    while !*stop.borrow() {
        if let Some(socket) = join(addr, source, &format!("Flood{n}")).await {
            let (mut sink, mut stream) = socket.split();
            let reader = tokio::spawn(async move { while let Some(Ok(_)) = stream.next().await {} });
            let line = Message::text(r#"{"type":"chat","text":"FLOOD FLOOD FLOOD"}"#);
            let mut sent = 0u32;
            while sink.send(line.clone()).await.is_ok() && !*stop.borrow() && sent < 100_000 {
                sent += 1;
                if reader.is_finished() {
                    break;
                }
                if sent.is_multiple_of(64) {
                    tokio::task::yield_now().await;
                }
            }
            reader.abort();
            counters.flood_closes.fetch_add(1, Ordering::Relaxed);
        }
        tokio::select! {
            () = tokio::time::sleep(Duration::from_secs(1)) => {}
            _ = stop.changed() => {}
        }
    }
}

/// Runs the troublemakers and samples the server for `cfg.duration`.
pub async fn run(cfg: SoakConfig) -> SoakReport {
    let counters = Arc::new(Counters::default());
    let (stop_tx, stop) = watch::channel(false);
    let mut tasks = Vec::new();
    for n in 0..cfg.churners {
        tasks.push(tokio::spawn(churner(n, cfg.addr, counters.clone(), stop.clone())));
    }
    for n in 0..cfg.slow_readers {
        tasks.push(tokio::spawn(slow_reader(n, cfg.addr, counters.clone(), stop.clone())));
    }
    for n in 0..cfg.flooders {
        tasks.push(tokio::spawn(flooder(n, cfg.addr, counters.clone(), stop.clone())));
    }
    let start = Instant::now();
    let end = start + cfg.duration;
    let mut samples = Vec::new();
    let mut previous = scrape_metrics(cfg.addr).await.ok();
    let mut previous_at = Instant::now();
    while Instant::now() < end {
        tokio::time::sleep_until((Instant::now() + cfg.sample_every).min(end)).await;
        let Ok(now) = scrape_metrics(cfg.addr).await else { continue };
        let seconds = previous_at.elapsed().as_secs_f64().max(1e-3);
        let (latency, messages) = match &previous {
            Some(before) => (
                histogram_delta(&before.by_label(M_LATENCY_BUCKET, "le"), &now.by_label(M_LATENCY_BUCKET, "le"))
                    .and_then(|b| histogram_quantile(&b, 0.99))
                    .map(|s| s * 1000.0),
                now.value(M_MESSAGES).unwrap_or(0.0) - before.value(M_MESSAGES).unwrap_or(0.0),
            ),
            None => (None, 0.0),
        };
        samples.push(SoakSample {
            t_s: start.elapsed().as_secs_f64(),
            rss_mib: cfg.server_pid.and_then(process_rss_bytes).map(|b| b as f64 / (1 << 20) as f64),
            latency_p99_ms: latency,
            messages_per_s: messages / seconds,
            commands_applied: now.value(M_APPLIED).unwrap_or(0.0) as u64,
            connected: now.value(M_CONNECTED).unwrap_or(0.0) as u64,
            skipped_outbound: now.value(M_DROPPED_OUT).unwrap_or(0.0) as u64,
            slow_closed: now.value(M_SLOW_CLOSED).unwrap_or(0.0) as u64,
        });
        let _ = now.value(M_ACCEPTED);
        previous = Some(now);
        previous_at = Instant::now();
    }
    let _ = stop_tx.send(true);
    for task in tasks {
        let _ = tokio::time::timeout(Duration::from_secs(5), task).await;
    }
    // Let the venue apply and log what was in flight, then count.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let applied = scrape_metrics(cfg.addr).await.ok().and_then(|m| m.value(M_APPLIED)).map(|v| v as u64);
    let logged = cfg.log.as_ref().and_then(|path| std::fs::read_to_string(path).ok()).and_then(|text| {
        let (entries, _) = parvis::model::command::read_command_log_recovering(&text).ok()?;
        Some(entries.iter().filter(|e| matches!(e.origin, parvis::model::command::CommandOrigin::Audience(_))).count()
            as u64)
    });
    let warm = samples.len() / 5;
    let rss_growth = samples.get(warm).and_then(|s| s.rss_mib).zip(samples.last().and_then(|s| s.rss_mib));
    SoakReport {
        churn_cycles: counters.churn_cycles.load(Ordering::Relaxed),
        churn_failures: counters.churn_failures.load(Ordering::Relaxed),
        flood_closes: counters.flood_closes.load(Ordering::Relaxed),
        slow_closes: counters.slow_closes.load(Ordering::Relaxed),
        rss_growth_mib: rss_growth.map(|(a, b)| b - a),
        rss_growth_share: rss_growth.map(|(a, b)| (b - a) / a.max(1.0)),
        worst_latency_p99_ms: samples.iter().filter_map(|s| s.latency_p99_ms).reduce(f64::max),
        commands_applied: applied,
        commands_logged: logged,
        samples,
    }
}
