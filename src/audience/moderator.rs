//! The moderators' channel (`/mod`): authenticated by a shared token, it bans, times out,
//! slows down and retracts, pauses audience effects, and issues venue commands directly.
//! Audience connections speak another protocol on another path and can never reach this one.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use serde::Deserialize;
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;

use super::protocol::MAX_DEPTH;
use super::server::{AudienceEvent, Shared, UserId, close_gracefully, socket_config};
use crate::command::VenueCommand;

/// What a moderator asks for.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ModeratorRequest {
    /// Disconnect a member and refuse them until restart.
    Ban {
        /// Member id.
        user: String,
    },
    /// Refuse a member's messages for a while.
    Timeout {
        /// Member id.
        user: String,
        /// How long, 1 to 86400 seconds.
        seconds: u64,
    },
    /// At most one chat line per member per interval; 0 turns it off.
    SlowMode {
        /// Interval, 0 to 3600 seconds.
        seconds: u64,
    },
    /// Retract one chat line, or all recent lines of a member.
    Clear {
        /// Message id.
        #[serde(default)]
        id: Option<u64>,
        /// Member id.
        #[serde(default)]
        user: Option<String>,
    },
    /// Kill switch for audience effects.
    Pause {
        /// Paused or not.
        paused: bool,
    },
    /// A venue command, applied with origin `moderator`.
    Command {
        /// The command.
        command: VenueCommand,
    },
    /// Put a text waiting for approval on stage.
    Approve {
        /// Its chat line id.
        id: u64,
    },
    /// Refuse a text waiting for approval.
    Reject {
        /// Its chat line id.
        id: u64,
    },
    /// Speak through the venue's rules as staff (no cooldowns, votes or approval), e.g.
    /// `!light red` from the stage manager's console.
    Say {
        /// The chat line.
        text: String,
    },
    /// Measure the stream's delay: a code is shown on stage, and the first chat-platform line
    /// that repeats it sets the delay.
    MeasureDelay,
}

/// Requests that need the venue's state, passed on to it.
#[derive(Debug, Clone, PartialEq)]
pub enum ModeratorAction {
    /// Retract lines.
    Clear {
        /// Message id.
        id: Option<u64>,
        /// Member id.
        user: Option<String>,
        /// A chat platform's id of the line (its own moderation deleted it).
        platform_id: Option<String>,
        /// Every recent line of members whose id starts with this (a platform cleared its chat).
        user_prefix: Option<String>,
    },
    /// Kill switch.
    Pause(bool),
    /// A venue command.
    Command(VenueCommand),
    /// Put the waiting text with this line id on stage.
    Approve(u64),
    /// Drop the waiting text with this line id.
    Reject(u64),
    /// A staff chat line for the rules.
    Say(String),
    /// Show a code on stage and time the stream's viewers typing it back.
    MeasureDelay,
}

/// Compares two secrets in time that depends only on their lengths, not on where they differ.
pub fn same_secret(given: &[u8], expected: &[u8]) -> bool {
    let mut diff = given.len() ^ expected.len();
    for i in 0..given.len().max(expected.len()) {
        let a = given.get(i).copied().unwrap_or(0);
        let b = expected.get(i).copied().unwrap_or(0);
        diff |= usize::from(a ^ b);
    }
    diff == 0
}

static NEXT_MODERATOR: AtomicU64 = AtomicU64::new(1);

fn reply(kind: &str, detail: &str) -> Message {
    Message::text(match kind {
        "ok" => serde_json::json!({"type": "ok", "of": detail}).to_string(),
        "authed" => serde_json::json!({"type": "authed", "id": detail}).to_string(),
        _ => serde_json::json!({"type": "error", "code": kind, "message": detail}).to_string(),
    })
}

/// Serves one moderator connection (after the HTTP head has been read).
pub(super) async fn serve_moderator_socket<S>(stream: S, shared: &Arc<Shared>, events: mpsc::Sender<AudienceEvent>)
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    let Ok(socket) = tokio_tungstenite::accept_async_with_config(stream, Some(socket_config())).await else {
        return;
    };
    let (mut sink, mut source) = socket.split();
    let timeout = shared.config().hello_timeout;
    let auth = tokio::time::timeout(timeout, source.next()).await;
    let token = match auth {
        Ok(Some(Ok(Message::Text(t)))) => serde_json::from_str::<serde_json::Value>(t.as_str())
            .ok()
            .filter(|v| v["type"] == "auth")
            .and_then(|v| v["token"].as_str().map(str::to_owned)),
        _ => None,
    };
    let authed = match (&shared.config().mod_token, token) {
        (Some(expected), Some(given)) => same_secret(given.as_bytes(), expected.as_bytes()),
        _ => false,
    };
    if !authed {
        shared.metrics.moderator_auth_failures.fetch_add(1, Ordering::Relaxed);
        let why = if shared.config().mod_token.is_none() { "no moderator token is configured on this venue" } else { "authentication failed" };
        let _ = sink.send(reply("not_allowed", why)).await;
        close_gracefully(&mut sink, &mut source, CloseCode::Policy, "not authenticated").await;
        return;
    }
    let moderator = format!("mod{}", NEXT_MODERATOR.fetch_add(1, Ordering::Relaxed));
    if sink.send(reply("authed", &moderator)).await.is_err() {
        return;
    }
    let mut updates = shared.moderators.subscribe();
    let approvals = shared.approvals_json.read().expect("approvals snapshot").clone();
    if sink.send(Message::text(approvals.to_string())).await.is_err() {
        return;
    }
    loop {
        let frame = tokio::select! {
            frame = source.next() => frame,
            update = updates.recv() => {
                match update {
                    Ok(json) => if sink.send(Message::text(json.to_string())).await.is_err() { break },
                    Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {
                        // Too far behind: send the whole current queue instead.
                        let json = shared.approvals_json.read().expect("approvals snapshot").clone();
                        if sink.send(Message::text(json.to_string())).await.is_err() { break }
                    }
                    Err(tokio::sync::broadcast::error::RecvError::Closed) => break,
                }
                continue;
            }
        };
        let Some(Ok(frame)) = frame else { break };
        let Message::Text(text) = frame else {
            if matches!(frame, Message::Close(_)) {
                break;
            }
            continue;
        };
        let answer = match parse_request(text.as_str()) {
            Ok(request) => apply(request, &moderator, shared, &events),
            Err(e) => Err(("bad_field", e)),
        };
        let message = match answer {
            Ok(of) => reply("ok", of),
            Err((code, why)) => reply(code, &why),
        };
        if sink.send(message).await.is_err() {
            break;
        }
    }
}

fn parse_request(text: &str) -> Result<ModeratorRequest, String> {
    if text.matches(['{', '[']).count() > MAX_DEPTH * 4 {
        return Err("request too deeply nested".into());
    }
    serde_json::from_str(text).map_err(|e| e.to_string())
}

/// Applies a request at the edge, or passes it to the venue. Returns the request type.
fn apply(request: ModeratorRequest, moderator: &str, shared: &Shared, events: &mpsc::Sender<AudienceEvent>) -> Result<&'static str, (&'static str, String)> {
    let now = Instant::now();
    let (of, action) = match request {
        ModeratorRequest::Ban { user } => {
            let user: UserId = user.into();
            shared.moderation.lock().expect("moderation").banned.insert(user.clone());
            shared.send_to(&user, &super::protocol::ServerMessage::error("banned", "a moderator banned you from this venue"));
            ("ban", None)
        }
        ModeratorRequest::Timeout { user, seconds } => {
            if !(1..=86_400).contains(&seconds) {
                return Err(("bad_field", "seconds must be from 1 to 86400".into()));
            }
            shared.moderation.lock().expect("moderation").timed_out.insert(user.into(), now + Duration::from_secs(seconds));
            ("timeout", None)
        }
        ModeratorRequest::SlowMode { seconds } => {
            if seconds > 3600 {
                return Err(("bad_field", "seconds must be from 0 to 3600".into()));
            }
            shared.moderation.lock().expect("moderation").slow_mode = (seconds > 0).then(|| Duration::from_secs(seconds));
            ("slow_mode", None)
        }
        ModeratorRequest::Clear { id, user } => {
            if id.is_none() && user.is_none() {
                return Err(("bad_field", "clear needs an `id` or a `user`".into()));
            }
            ("clear", Some(ModeratorAction::Clear { id, user, platform_id: None, user_prefix: None }))
        }
        ModeratorRequest::Pause { paused } => ("pause", Some(ModeratorAction::Pause(paused))),
        ModeratorRequest::Command { command } => ("command", Some(ModeratorAction::Command(command))),
        ModeratorRequest::Approve { id } => ("approve", Some(ModeratorAction::Approve(id))),
        ModeratorRequest::Reject { id } => ("reject", Some(ModeratorAction::Reject(id))),
        ModeratorRequest::Say { text } => {
            let text = super::moderation::moderate(&text, shared.config().limits.max_chars, shared.blocklist())
                .map_err(|e| (e.code(), e.to_string()))?;
            ("say", Some(ModeratorAction::Say(text)))
        }
        ModeratorRequest::MeasureDelay => ("measure_delay", Some(ModeratorAction::MeasureDelay)),
    };
    if let Some(action) = action {
        // Moderators must never be dropped silently: wait briefly for room rather than drop.
        let event = AudienceEvent::Moderator { moderator: moderator.into(), action };
        if events.try_send(event).is_err() {
            return Err(("busy", "the venue is busy; try again".into()));
        }
    }
    Ok(of)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_compare_whole() {
        assert!(same_secret(b"s3cret-token", b"s3cret-token"));
        assert!(!same_secret(b"s3cret-tokem", b"s3cret-token"));
        assert!(!same_secret(b"s3cret", b"s3cret-token"));
        assert!(!same_secret(b"", b"x"));
        assert!(!same_secret(b"s3cret-token-and-more", b"s3cret-token"));
    }

    #[test]
    fn requests_parse() {
        assert_eq!(parse_request(r#"{"type":"pause","paused":true}"#), Ok(ModeratorRequest::Pause { paused: true }));
        assert!(matches!(
            parse_request(r#"{"type":"command","command":{"type":"set_param","name":"fog","value":{"Float":0.1}}}"#),
            Ok(ModeratorRequest::Command { .. })
        ));
        assert!(parse_request(r#"{"type":"shutdown"}"#).is_err());
    }
}
