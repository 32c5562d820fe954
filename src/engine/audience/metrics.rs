//! Audience metrics in Prometheus' text format, kept in atomics so that edge tasks and the
//! venue can count without locks.

use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// Why an audience message was refused, for the `rejected` counter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rejection {
    /// Not JSON or nested too deep.
    BadJson,
    /// No such message type.
    UnknownType,
    /// Missing or wrongly typed field.
    BadField,
    /// A message before `hello`.
    HelloRequired,
    /// Nothing left after cleaning.
    Empty,
    /// Too long after cleaning.
    TooLong,
    /// Blocked word.
    BlockedWord,
    /// Over the rate limit.
    RateLimited,
    /// Slow mode.
    SlowMode,
    /// Timed out by a moderator.
    TimedOut,
    /// Binary frame.
    Binary,
    /// Frame or message over the size limit.
    TooBig,
    /// Refused by the venue's rules (cooldown, unknown command…).
    Rule,
    /// From a banned member (who can still write on a chat platform).
    Banned,
    /// A WebSocket protocol violation (unmasked frame, reserved bits, unknown opcode).
    Protocol,
}

impl Rejection {
    const ALL: [Rejection; 15] = [
        Rejection::BadJson,
        Rejection::UnknownType,
        Rejection::BadField,
        Rejection::HelloRequired,
        Rejection::Empty,
        Rejection::TooLong,
        Rejection::BlockedWord,
        Rejection::RateLimited,
        Rejection::SlowMode,
        Rejection::TimedOut,
        Rejection::Binary,
        Rejection::TooBig,
        Rejection::Rule,
        Rejection::Banned,
        Rejection::Protocol,
    ];

    /// The label value used in metrics (the protocol's error code where there is one).
    pub fn label(self) -> &'static str {
        match self {
            Rejection::BadJson => "bad_json",
            Rejection::UnknownType => "unknown_type",
            Rejection::BadField => "bad_field",
            Rejection::HelloRequired => "hello_required",
            Rejection::Empty => "empty",
            Rejection::TooLong => "too_long",
            Rejection::BlockedWord => "blocked_word",
            Rejection::RateLimited => "rate_limited",
            Rejection::SlowMode => "slow_mode",
            Rejection::TimedOut => "timed_out",
            Rejection::Binary => "binary_not_supported",
            Rejection::TooBig => "too_big",
            Rejection::Rule => "rule",
            Rejection::Banned => "banned",
            Rejection::Protocol => "protocol_error",
        }
    }

    /// The rejection for a protocol or moderation error code.
    pub fn from_code(code: &str) -> Self {
        Self::ALL.into_iter().find(|r| r.label() == code).unwrap_or(Rejection::BadField)
    }
}

/// Upper bounds (milliseconds) of the receipt-to-applied latency histogram.
pub const LATENCY_BUCKETS_MS: [f64; 12] = [0.5, 1.0, 2.0, 5.0, 11.1, 20.0, 50.0, 100.0, 200.0, 500.0, 1000.0, 5000.0];

/// Upper bounds of the same latency counted in venue frames: 1 means the command was applied
/// in the first frame that began after the message arrived, the best any frame loop can do.
pub const LATENCY_BUCKETS_FRAMES: [u64; 6] = [1, 2, 3, 5, 10, 100];

/// Counters of the audience pipeline.
#[derive(Debug, Default)]
pub struct AudienceMetrics {
    /// Connections that said hello, since start.
    pub connections_total: AtomicU64,
    /// Connections refused because the server was full.
    pub refused_connections: AtomicU64,
    /// Requests that were not valid HTTP or WebSocket handshakes.
    pub bad_requests: AtomicU64,
    /// Text frames received after hello.
    pub messages_in: AtomicU64,
    /// Messages passed to the venue.
    pub accepted: AtomicU64,
    rejected: [AtomicU64; 15],
    /// Messages dropped because the channel to the venue was full.
    pub dropped_inbound: AtomicU64,
    /// Gathered intervals a slow client skipped, or replies dropped because its queue was full.
    pub dropped_outbound: AtomicU64,
    /// Connections closed because the client read nothing for the send timeout.
    pub slow_clients_closed: AtomicU64,
    /// Frames gathered for everyone (one per interval at most, each sent to every member).
    pub fanout_frames: AtomicU64,
    /// Messages for everyone in those frames.
    pub fanout_messages: AtomicU64,
    /// Venue commands caused by the audience and applied.
    pub commands_applied: AtomicU64,
    /// Chat lines over the display limit, sent only to their sender.
    pub chat_unshown: AtomicU64,
    /// Chat lines received from chat platforms (before moderation).
    pub bridge_lines: AtomicU64,
    /// Platform lines that could not be parsed, skipped.
    pub bridge_malformed: AtomicU64,
    /// Platform connections lost or refused and tried again.
    pub bridge_reconnects: AtomicU64,
    /// Platform lines for channels the bridge did not join, ignored.
    pub bridge_foreign: AtomicU64,
    /// Announcements posted to chat platforms.
    pub bridge_posted: AtomicU64,
    /// Announcements dropped to stay within a platform's rate limit.
    pub bridge_post_dropped: AtomicU64,
    /// Failed moderator authentications.
    pub moderator_auth_failures: AtomicU64,
    /// Moderator authentications refused unheard while their address waits after failures.
    pub moderator_auth_throttled: AtomicU64,
    /// Connections closed before saying hello (silence, or not a hello in time).
    pub hello_timeouts: AtomicU64,
    /// WebSocket upgrades refused for their web origin.
    pub refused_origins: AtomicU64,
    /// Events waiting in the channel to the venue, as last seen by the venue.
    pub queue_depth: AtomicU64,
    /// Frames the venue ran; it runs none while it rests.
    pub venue_frames: AtomicU64,
    latency_buckets: [AtomicU64; 12],
    latency_count: AtomicU64,
    latency_sum_us: AtomicU64,
    latency_frame_buckets: [AtomicU64; 6],
    latency_frames_sum: AtomicU64,
}

impl AudienceMetrics {
    /// Counts a refused message.
    pub fn reject(&self, why: Rejection) {
        let i = Rejection::ALL.iter().position(|r| *r == why).unwrap_or(0);
        self.rejected[i].fetch_add(1, Ordering::Relaxed);
    }

    /// Refused messages for one reason.
    pub fn rejected(&self, why: Rejection) -> u64 {
        let i = Rejection::ALL.iter().position(|r| *r == why).unwrap_or(0);
        self.rejected[i].load(Ordering::Relaxed)
    }

    /// Records the time from a message's arrival to the command it caused being applied, in
    /// time and in venue frames begun since the arrival.
    pub fn observe_latency(&self, latency: Duration, frames: u64) {
        for (bound, bucket) in LATENCY_BUCKETS_FRAMES.iter().zip(&self.latency_frame_buckets) {
            if frames <= *bound {
                bucket.fetch_add(1, Ordering::Relaxed);
            }
        }
        self.latency_frames_sum.fetch_add(frames, Ordering::Relaxed);
        let ms = latency.as_secs_f64() * 1000.0;
        for (bound, bucket) in LATENCY_BUCKETS_MS.iter().zip(&self.latency_buckets) {
            if ms <= *bound {
                bucket.fetch_add(1, Ordering::Relaxed);
            }
        }
        self.latency_count.fetch_add(1, Ordering::Relaxed);
        self.latency_sum_us.fetch_add(latency.as_micros() as u64, Ordering::Relaxed);
    }

    /// The metrics in Prometheus' text exposition format.
    pub fn render(&self, connected: usize) -> String {
        let mut out = String::with_capacity(2048);
        let load = |a: &AtomicU64| a.load(Ordering::Relaxed);
        let mut counter = |name: &str, help: &str, value: u64| write_counter(&mut out, name, help, value);
        counter("audience_connections_total", "Audience connections that said hello.", load(&self.connections_total));
        counter(
            "audience_connections_refused_total",
            "Connections refused because the server or the address had too many.",
            load(&self.refused_connections),
        );
        counter(
            "audience_bad_requests_total",
            "Invalid HTTP requests or WebSocket handshakes.",
            load(&self.bad_requests),
        );
        counter("audience_messages_total", "Text frames received from audience members.", load(&self.messages_in));
        counter("audience_messages_accepted_total", "Messages passed to the venue.", load(&self.accepted));
        counter(
            "audience_dropped_inbound_total",
            "Messages dropped because the venue's queue was full.",
            load(&self.dropped_inbound),
        );
        counter(
            "audience_dropped_outbound_total",
            "What slow clients skipped: gathered intervals, or replies for a full mailbox.",
            load(&self.dropped_outbound),
        );
        counter(
            "audience_fanout_frames_total",
            "Intervals gathered for everyone, each written once to every member.",
            load(&self.fanout_frames),
        );
        counter(
            "audience_fanout_messages_total",
            "Messages for everyone in those frames.",
            load(&self.fanout_messages),
        );
        counter(
            "audience_slow_clients_closed_total",
            "Connections closed because the client read nothing for the send timeout.",
            load(&self.slow_clients_closed),
        );
        counter(
            "audience_chat_unshown_total",
            "Chat lines over the display limit, shown only to their sender.",
            load(&self.chat_unshown),
        );
        counter(
            "audience_commands_applied_total",
            "Venue commands caused by the audience.",
            load(&self.commands_applied),
        );
        counter("bridge_lines_total", "Chat lines received from chat platforms.", load(&self.bridge_lines));
        counter(
            "bridge_malformed_total",
            "Chat platform lines that could not be parsed, skipped.",
            load(&self.bridge_malformed),
        );
        counter(
            "bridge_reconnects_total",
            "Chat platform connections lost and tried again.",
            load(&self.bridge_reconnects),
        );
        counter(
            "bridge_foreign_total",
            "Chat platform lines for channels the bridge did not join, ignored.",
            load(&self.bridge_foreign),
        );
        counter("bridge_posted_total", "Announcements posted to chat platforms.", load(&self.bridge_posted));
        counter(
            "bridge_post_dropped_total",
            "Announcements dropped to respect a platform's rate limit.",
            load(&self.bridge_post_dropped),
        );
        counter(
            "moderator_auth_failures_total",
            "Failed moderator authentications.",
            load(&self.moderator_auth_failures),
        );
        counter(
            "moderator_auth_throttled_total",
            "Moderator authentications refused unheard while their address waits after failures.",
            load(&self.moderator_auth_throttled),
        );
        counter(
            "audience_hello_timeouts_total",
            "Connections closed without a hello in time.",
            load(&self.hello_timeouts),
        );
        counter("venue_frames_total", "Frames the venue ran (none while it rests).", load(&self.venue_frames));
        counter(
            "audience_origins_refused_total",
            "WebSocket upgrades refused for their web origin.",
            load(&self.refused_origins),
        );
        write_gauge(&mut out, "audience_connected", "Audience members connected now.", connected);
        write_gauge(&mut out, "audience_queue_depth", "Events waiting for the venue.", load(&self.queue_depth));
        let _ = writeln!(
            out,
            "# HELP parvis_audience_messages_rejected_total Messages refused, by reason.\n# TYPE parvis_audience_messages_rejected_total counter"
        );
        for (why, count) in Rejection::ALL.iter().zip(&self.rejected) {
            let _ =
                writeln!(out, "parvis_audience_messages_rejected_total{{reason=\"{}\"}} {}", why.label(), load(count));
        }
        let _ = writeln!(
            out,
            "# HELP parvis_audience_latency_seconds From a message's arrival to the command it caused being applied.\n# TYPE parvis_audience_latency_seconds histogram"
        );
        for (bound, bucket) in LATENCY_BUCKETS_MS.iter().zip(&self.latency_buckets) {
            let _ =
                writeln!(out, "parvis_audience_latency_seconds_bucket{{le=\"{}\"}} {}", bound / 1000.0, load(bucket));
        }
        let count = load(&self.latency_count);
        let _ = writeln!(out, "parvis_audience_latency_seconds_bucket{{le=\"+Inf\"}} {count}");
        let _ = writeln!(out, "parvis_audience_latency_seconds_sum {}", load(&self.latency_sum_us) as f64 / 1e6);
        let _ = writeln!(out, "parvis_audience_latency_seconds_count {count}");
        let _ = writeln!(
            out,
            "# HELP parvis_audience_latency_frames Venue frames begun from a message's arrival to the frame that applied its command (1: the next frame).\n# TYPE parvis_audience_latency_frames histogram"
        );
        for (bound, bucket) in LATENCY_BUCKETS_FRAMES.iter().zip(&self.latency_frame_buckets) {
            let _ = writeln!(out, "parvis_audience_latency_frames_bucket{{le=\"{bound}\"}} {}", load(bucket));
        }
        let _ = writeln!(out, "parvis_audience_latency_frames_bucket{{le=\"+Inf\"}} {count}");
        let _ = writeln!(out, "parvis_audience_latency_frames_sum {}", load(&self.latency_frames_sum));
        let _ = writeln!(out, "parvis_audience_latency_frames_count {count}");
        out
    }
}

/// Appends one Prometheus counter, `parvis_` + `name`, with its help line: the form every
/// metrics section writes its counters in.
pub fn write_counter(out: &mut String, name: &str, help: &str, value: u64) {
    write_metric(out, name, help, "counter", value);
}

/// Appends one Prometheus gauge, `parvis_` + `name`, with its help line.
pub fn write_gauge(out: &mut String, name: &str, help: &str, value: impl std::fmt::Display) {
    write_metric(out, name, help, "gauge", value);
}

fn write_metric(out: &mut String, name: &str, help: &str, kind: &str, value: impl std::fmt::Display) {
    use std::fmt::Write as _;
    let _ = writeln!(out, "# HELP parvis_{name} {help}\n# TYPE parvis_{name} {kind}\nparvis_{name} {value}");
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The metrics the audience protocol's documentation names: in its `/metrics` table and
    /// anywhere else it writes `parvis_…`.
    const PROTOCOL_DOC: &str = include_str!("../../../docs/protocol.md");

    #[test]
    fn every_metric_and_refusal_reason_is_the_one_the_protocol_documents() {
        let rendered = AudienceMetrics::default().render(0);
        let families: std::collections::BTreeSet<String> = rendered
            .lines()
            .filter_map(|l| l.strip_prefix("# TYPE parvis_"))
            .filter_map(|l| l.split_whitespace().next())
            .map(str::to_owned)
            .collect();
        let table = &PROTOCOL_DOC[PROTOCOL_DOC.find("## Metrics").expect("a metrics section")..];
        for family in &families {
            assert!(
                table.contains(&format!("`{family}`")) || table.contains(&format!("`{family}{{")),
                "metric {family} is not in docs/protocol.md's table"
            );
        }
        // Every name the document gives, anywhere, is one the server renders.
        for (at, _) in PROTOCOL_DOC.match_indices("parvis_") {
            let name: String =
                PROTOCOL_DOC[at + 7..].chars().take_while(|c| c.is_ascii_alphanumeric() || *c == '_').collect();
            let base = ["_bucket", "_sum", "_count"].iter().fold(name.as_str(), |n, s| n.strip_suffix(s).unwrap_or(n));
            assert!(
                families.contains(base) || name.is_empty(),
                "docs/protocol.md names parvis_{name}, which /metrics does not have"
            );
        }
        for why in Rejection::ALL {
            assert!(table.contains(&format!("`{}`", why.label())), "refusal reason {} is not documented", why.label());
        }
    }
}
