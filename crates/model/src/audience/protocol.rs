//! The audience protocol (docs/protocol.md) as plain data, and its pure parser. No I/O here:
//! the server feeds frames in and sends what comes out.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use thiserror::Error;

/// Protocol version spoken by this build.
pub const PROTOCOL_VERSION: u32 = 1;

/// Deepest JSON nesting accepted; audience messages are flat, so anything deeper is hostile.
pub const MAX_DEPTH: usize = 8;

/// A message from an audience member.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ClientMessage {
    /// First message: who is there.
    Hello {
        /// Protocol version the client speaks.
        v: u32,
        /// Display name.
        name: String,
        /// Preferred language (BCP 47).
        #[serde(default)]
        lang: Option<String>,
        /// The session token an earlier `welcome` gave, to come back as the same member.
        #[serde(default)]
        session: Option<String>,
        /// What the page does not show and need not be sent: `chat` (others' chat lines and
        /// their retractions), `effects`.
        #[serde(default)]
        mute: Vec<String>,
    },
    /// A chat line.
    Chat {
        /// The text.
        text: String,
    },
    /// A reaction.
    React {
        /// One of the venue's reaction emoji.
        emoji: String,
    },
    /// A vote in the open poll.
    Vote {
        /// Poll id.
        poll: String,
        /// Option id.
        option: String,
    },
}

/// Why a frame was refused; `code` is the stable error code sent to the client.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum ProtocolError {
    /// Not JSON, not an object, or nested too deep.
    #[error("{0}")]
    BadJson(String),
    /// No such message type.
    #[error("unknown message type {0:?}")]
    UnknownType(String),
    /// A field is missing or of the wrong type.
    #[error("{0}")]
    BadField(String),
}

impl ProtocolError {
    /// The stable error code.
    pub fn code(&self) -> &'static str {
        match self {
            ProtocolError::BadJson(_) => "bad_json",
            ProtocolError::UnknownType(_) => "unknown_type",
            ProtocolError::BadField(_) => "bad_field",
        }
    }
}

/// Nesting depth of a JSON text, ignoring brackets inside strings; stops counting past `limit`.
fn nesting_exceeds(text: &str, limit: usize) -> bool {
    let (mut depth, mut in_string, mut escaped) = (0usize, false, false);
    for b in text.bytes() {
        if in_string {
            match (escaped, b) {
                (true, _) => escaped = false,
                (false, b'\\') => escaped = true,
                (false, b'"') => in_string = false,
                _ => {}
            }
            continue;
        }
        match b {
            b'"' => in_string = true,
            b'{' | b'[' => {
                depth += 1;
                if depth > limit {
                    return true;
                }
            }
            b'}' | b']' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    false
}

/// Parses one text frame from an audience member.
pub fn parse_client_message(text: &str) -> Result<ClientMessage, ProtocolError> {
    if nesting_exceeds(text, MAX_DEPTH) {
        return Err(ProtocolError::BadJson(format!("JSON nested deeper than {MAX_DEPTH} levels")));
    }
    let trimmed = text.trim_start();
    if !trimmed.starts_with('{') {
        return Err(ProtocolError::BadJson("expected a JSON object".into()));
    }
    serde_json::from_str(text).map_err(|e| {
        let message = e.to_string();
        match e.classify() {
            serde_json::error::Category::Data if message.starts_with("unknown variant") => {
                let found = message.split('`').nth(1).unwrap_or_default().to_owned();
                ProtocolError::UnknownType(found)
            }
            serde_json::error::Category::Data if message.starts_with("missing field `type`") => {
                ProtocolError::BadField("missing field `type`".into())
            }
            serde_json::error::Category::Data => ProtocolError::BadField(strip_position(&message)),
            _ => ProtocolError::BadJson(strip_position(&message)),
        }
    })
}

/// serde_json appends " at line 1 column 17", meaningless to a chat client.
fn strip_position(message: &str) -> String {
    message.split(" at line ").next().unwrap_or(message).to_owned()
}

/// Limits announced in `welcome`.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Limits {
    /// Longest chat line, in characters.
    pub max_chars: usize,
    /// Chat lines allowed per 10 seconds.
    pub messages_per_10s: u32,
}

/// An option of a poll, with its votes.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PollOptionView {
    /// Option id.
    pub id: String,
    /// Label shown.
    pub label: String,
    /// Votes so far.
    pub votes: u32,
}

/// An interaction window as the audience sees it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct WindowView {
    /// What it is for ("Petals for the chorus!").
    pub label: String,
    /// The commands and reactions it allows (`!petales`, `🌹`).
    pub allows: Vec<String>,
    /// Seconds left, for a countdown; `None` until closed by the show.
    pub closes_in: Option<f32>,
}

/// A message to audience members.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ServerMessage {
    /// Answer to `hello`.
    Welcome {
        /// Protocol version.
        v: u32,
        /// The member's pseudonymous id.
        id: String,
        /// Venue title.
        venue: String,
        /// Allowed reaction emoji.
        reactions: Vec<String>,
        /// Limits.
        limits: Limits,
        /// A token to send in the next `hello` to come back as the same member (after a
        /// dropped connection or a reload); keep it for this venue only.
        session: String,
    },
    /// Current venue state.
    State {
        /// Stage parameter values as text.
        params: BTreeMap<String, String>,
        /// The open poll, if any.
        poll: Option<Box<ServerMessage>>,
        /// Connected audience members.
        audience: u32,
        /// Whether audience effects are paused by a moderator.
        paused: bool,
        /// Crowd energy: chat lines and reactions per second over the last 10 s.
        energy: f32,
        /// Interaction windows open now: what they allow and how long is left.
        windows: Vec<WindowView>,
    },
    /// A moderated chat line.
    Chat {
        /// Message id, for `retract`.
        id: u64,
        /// Display name.
        from: String,
        /// Text.
        text: String,
    },
    /// The show's surtitle now, in every language it has (empty: none showing). A page shows
    /// its member's language, by the venue's fallback order.
    Surtitle {
        /// Text by language tag.
        texts: BTreeMap<String, String>,
        /// The venue's languages, in fallback order.
        order: Vec<String>,
    },
    /// A chat line removed by moderation.
    Retract {
        /// Message id.
        id: u64,
    },
    /// The venue changed because of the audience.
    Effect {
        /// Parameter changed.
        param: String,
        /// New value as text.
        value: String,
        /// Who caused it (display name).
        by: String,
        /// Rule that fired.
        rule: Option<String>,
        /// What the rule did: `set`, `animate`, `spawn` (then `value` is the effect) or `show`.
        action: String,
        /// How many more members fired the same rule in the same frame (announced once).
        others: u32,
    },
    /// Poll life cycle.
    Poll {
        /// `open`, `tally` or `close`.
        phase: String,
        /// Poll id.
        id: String,
        /// Question.
        question: String,
        /// Options with votes.
        options: Vec<PollOptionView>,
        /// Milliseconds left.
        closes_in_ms: u64,
        /// Winning option id, on close.
        winner: Option<String>,
    },
    /// Information for everyone or one member.
    Notice {
        /// Text.
        text: String,
    },
    /// The member's last message was refused.
    Error {
        /// Stable code (docs/protocol.md).
        code: String,
        /// Explanation.
        message: String,
    },
}

impl ServerMessage {
    /// An `error` message.
    pub fn error(code: &str, message: impl Into<String>) -> Self {
        ServerMessage::Error { code: code.to_owned(), message: message.into() }
    }

    /// The JSON text of this message.
    pub fn to_json(&self) -> String {
        serde_json::to_string(self)
            .unwrap_or_else(|_| r#"{"type":"error","code":"server","message":"encoding failed"}"#.into())
    }
}

/// Merges a `state` message into the state a client shows: a field the message has replaces
/// the client's (whole: `params` is every parameter); a field it lacks did not change.
pub fn merge_state(shown: &mut serde_json::Map<String, serde_json::Value>, state: &serde_json::Value) {
    if let Some(fields) = state.as_object() {
        for (key, value) in fields {
            shown.insert(key.clone(), value.clone());
        }
    }
}

/// A client's reading of the server's messages, as the audience page reads them: each `state`
/// merged into the state shown, which is what [`Iterator::next`] gives for it (a later `state`
/// carries only what changed).
#[derive(Debug, Default)]
pub struct StateReader {
    waiting: std::collections::VecDeque<serde_json::Value>,
    state: serde_json::Map<String, serde_json::Value>,
}

impl StateReader {
    /// Reads one text message.
    pub fn read(&mut self, text: &str) -> Result<(), serde_json::Error> {
        let message: serde_json::Value = serde_json::from_str(text)?;
        if message["type"] == "state" {
            merge_state(&mut self.state, &message);
            self.waiting.push_back(serde_json::Value::Object(self.state.clone()));
        } else {
            self.waiting.push_back(message);
        }
        Ok(())
    }
}

/// The messages read and not yet taken, in order.
impl Iterator for StateReader {
    type Item = serde_json::Value;

    fn next(&mut self) -> Option<serde_json::Value> {
        self.waiting.pop_front()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn states_merge_field_by_field() {
        let mut shown = serde_json::Map::new();
        merge_state(&mut shown, &serde_json::json!({"type": "state", "audience": 1, "paused": false}));
        merge_state(&mut shown, &serde_json::json!({"type": "state", "audience": 2}));
        assert_eq!(
            serde_json::Value::Object(shown),
            serde_json::json!({"type": "state", "audience": 2, "paused": false})
        );

        let mut reader = StateReader::default();
        reader.read(r#"{"type":"state","audience":1,"paused":true}"#).unwrap();
        reader.read(r#"{"type":"chat","id":1}"#).unwrap();
        reader.read(r#"{"type":"state","audience":2}"#).unwrap();
        assert!(reader.read("{").is_err());
        assert_eq!(reader.next().unwrap()["audience"], 1);
        assert_eq!(reader.next().unwrap()["type"], "chat");
        assert_eq!(reader.next().unwrap(), serde_json::json!({"type": "state", "audience": 2, "paused": true}));
        assert!(reader.next().is_none());
    }

    #[test]
    fn parses_each_message_type() {
        assert_eq!(
            parse_client_message(r#"{"type":"hello","v":1,"name":"Ana","lang":"fr"}"#),
            Ok(ClientMessage::Hello { v: 1, name: "Ana".into(), lang: Some("fr".into()), session: None, mute: vec![] })
        );
        assert_eq!(
            parse_client_message(r#"{"type":"chat","text":"!light red"}"#),
            Ok(ClientMessage::Chat { text: "!light red".into() })
        );
        assert_eq!(
            parse_client_message(r#"{"type":"react","emoji":"👏"}"#),
            Ok(ClientMessage::React { emoji: "👏".into() })
        );
        assert_eq!(
            parse_client_message(r#"{"type":"vote","poll":"p1","option":"night","extra":true}"#),
            Ok(ClientMessage::Vote { poll: "p1".into(), option: "night".into() }),
            "unknown fields are ignored"
        );
    }

    #[test]
    fn refuses_bad_frames_with_stable_codes() {
        let code = |t: &str| parse_client_message(t).unwrap_err().code();
        assert_eq!(code("not json"), "bad_json");
        assert_eq!(code("[1,2]"), "bad_json");
        assert_eq!(code(r#"{"type":"chat","text":"x""#), "bad_json");
        assert_eq!(code(r#"{"type":"ban","user":"x"}"#), "unknown_type");
        assert_eq!(code(r#"{"type":"set_param","name":"fog"}"#), "unknown_type");
        assert_eq!(code(r#"{"text":"no type"}"#), "bad_field");
        assert_eq!(code(r#"{"type":"chat"}"#), "bad_field");
        assert_eq!(code(r#"{"type":"chat","text":42}"#), "bad_field");
        let deep = format!(r#"{{"type":"chat","text":"x","a":{}{}}}"#, "[".repeat(5000), "]".repeat(5000));
        assert_eq!(code(&deep), "bad_json");
        // Brackets inside strings do not count as nesting.
        assert!(parse_client_message(&format!(r#"{{"type":"chat","text":"{}"}}"#, "[".repeat(50))).is_ok());
    }

    #[test]
    fn server_messages_are_tagged_json() {
        let json = ServerMessage::error("rate_limited", "wait 2 s").to_json();
        assert_eq!(json, r#"{"type":"error","code":"rate_limited","message":"wait 2 s"}"#);
    }
}
