//! The moderators' channel (`/mod`): authenticated by a shared token, it bans, times out,
//! slows down and retracts, pauses audience effects, and issues venue commands directly.
//! Audience connections speak another protocol on another path and can never reach this one.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;

use super::shared::{Shared, close_gracefully, send_within, socket_config};
use crate::model::audience::event::{AudienceEvent, UserId};
use crate::model::audience::moderation::moderate;
use crate::model::audience::moderator::{ModeratorAction, ModeratorRequest, parse_request};
use crate::model::audience::protocol::ServerMessage;
use crate::model::net::ModerationDecision;

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
pub async fn serve_moderator_socket<S>(stream: S, ip: std::net::IpAddr, shared: &Arc<Shared>)
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    let Ok(mut socket) = tokio_tungstenite::accept_async_with_config(stream, Some(socket_config())).await else {
        return;
    };
    let timeout = shared.config().hello_timeout;
    let auth = tokio::time::timeout(timeout, socket.next()).await;
    let token = match auth {
        Ok(Some(Ok(Message::Text(t)))) => serde_json::from_str::<serde_json::Value>(t.as_str())
            .ok()
            .filter(|v| v["type"] == "auth")
            .and_then(|v| v["token"].as_str().map(str::to_owned)),
        _ => None,
    };
    // An address that failed too often waits, its attempts refused unheard: guessing the
    // token costs time that doubles with each miss, while other addresses are not slowed.
    if let Some(wait) = shared.auth_locked(ip, Instant::now()) {
        shared.hub.metrics.moderator_auth_throttled.fetch_add(1, Ordering::Relaxed);
        let why = format!("too many failed attempts from this address; retry in {} s", wait.as_secs() + 1);
        let _ = socket.send(reply("too_many_failures", &why)).await;
        close_gracefully(&mut socket, CloseCode::Policy, "too many failures").await;
        return;
    }
    let authed = match (&shared.config().mod_token, token) {
        (Some(expected), Some(given)) => same_secret(given.as_bytes(), expected.as_bytes()),
        _ => false,
    };
    if !authed {
        shared.hub.metrics.moderator_auth_failures.fetch_add(1, Ordering::Relaxed);
        let failures = shared.auth_failed(ip, Instant::now());
        bevy::log::warn!("moderator authentication failed from {ip} ({failures} in a row)");
        let why = if shared.config().mod_token.is_none() {
            "no moderator token is configured on this venue"
        } else {
            "authentication failed"
        };
        let _ = socket.send(reply("not_allowed", why)).await;
        close_gracefully(&mut socket, CloseCode::Policy, "not authenticated").await;
        return;
    }
    shared.auth_succeeded(ip);
    let moderator = format!("mod{}", NEXT_MODERATOR.fetch_add(1, Ordering::Relaxed));
    // A moderator's console that stops reading is closed like a page member's.
    let deadline = shared.config().send_timeout;
    if send_within(&mut socket, reply("authed", &moderator), deadline).await.is_err() {
        return;
    }
    let mut updates = shared.hub.moderators.subscribe();
    let mut closing = shared.hub.closing.subscribe();
    let approvals = shared.hub.approvals_json.read().expect("approvals snapshot").clone();
    if send_within(&mut socket, Message::text(approvals.to_string()), deadline).await.is_err() {
        return;
    }
    loop {
        let frame = tokio::select! {
            frame = socket.next() => frame,
            () = async { let _ = closing.wait_for(|closed| *closed).await; } => {
                close_gracefully(&mut socket, CloseCode::Away, "the venue is closing").await;
                return;
            }
            update = updates.recv() => {
                match update {
                    Ok(json) => if send_within(&mut socket, Message::text(json.to_string()), deadline).await.is_err() { break },
                    Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {
                        // Too far behind: send the whole current queue instead.
                        let json = shared.hub.approvals_json.read().expect("approvals snapshot").clone();
                        if send_within(&mut socket, Message::text(json.to_string()), deadline).await.is_err() { break }
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
            Ok(request) => apply(request, &moderator, shared),
            Err(e) => Err(("bad_field", e)),
        };
        let message = match answer {
            Ok(of) => reply("ok", of),
            Err((code, why)) => reply(code, &why),
        };
        if send_within(&mut socket, message, deadline).await.is_err() {
            break;
        }
    }
}

/// Applies a request at the edge, or passes it to the venue. Returns the request type.
fn apply(request: ModeratorRequest, moderator: &str, shared: &Shared) -> Result<&'static str, (&'static str, String)> {
    let now = Instant::now();
    let (of, action) = match request {
        ModeratorRequest::Ban { user } => {
            let user: UserId = user.into();
            // The address too, so that reconnecting under a new name does not lift the ban.
            shared.hub.moderation.lock().expect("moderation").ban(user.clone(), shared.member_address(&user));
            shared.hub.send_to(&user, &ServerMessage::error("banned", "a moderator banned you from this venue"));
            shared.hub.share_decision(ModerationDecision::Ban { user: user.to_string() });
            ("ban", None)
        }
        ModeratorRequest::Unban { user } => {
            shared.hub.moderation.lock().expect("moderation").unban(&user.as_str().into());
            shared.hub.share_decision(ModerationDecision::Unban { user });
            ("unban", None)
        }
        ModeratorRequest::Timeout { user, seconds } => {
            if !(1..=86_400).contains(&seconds) {
                return Err(("bad_field", "seconds must be from 1 to 86400".into()));
            }
            let user: UserId = user.into();
            let address = shared.member_address(&user);
            shared.hub.moderation.lock().expect("moderation").time_out(
                user.clone(),
                address,
                now + Duration::from_secs(seconds),
            );
            shared.hub.share_decision(ModerationDecision::TimeOut { user: user.to_string(), seconds });
            ("timeout", None)
        }
        ModeratorRequest::SlowMode { seconds } => {
            if seconds > 3600 {
                return Err(("bad_field", "seconds must be from 0 to 3600".into()));
            }
            shared.hub.moderation.lock().expect("moderation").slow_mode =
                (seconds > 0).then(|| Duration::from_secs(seconds));
            shared.hub.share_decision(ModerationDecision::SlowMode { seconds });
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
            let text = moderate(&text, shared.limits().max_chars, shared.blocklist())
                .map_err(|e| (e.code(), e.to_string()))?;
            ("say", Some(ModeratorAction::Say(text)))
        }
        ModeratorRequest::MeasureDelay => ("measure_delay", Some(ModeratorAction::MeasureDelay)),
    };
    if let Some(action) = action {
        // Moderators must never be dropped silently: wait briefly for room rather than drop.
        let event = AudienceEvent::Moderator { moderator: moderator.into(), action };
        if shared.hub.submit(event).is_err() {
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
}
