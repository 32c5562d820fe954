//! The moderators' channel's messages (`/mod`, docs/protocol.md): what a moderator asks for,
//! how a request is read, and the part of it that needs the venue's state.

use serde::Deserialize;

use super::protocol::MAX_DEPTH;
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
    /// Lift a member's ban (and the ban of the address they came from).
    Unban {
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

/// Requests that need the venue's state, passed on to it (between machines too: an audience
/// edge hands them to the venue's authority over NATS).
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
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

/// Reads a moderator's request, refusing nesting deeper than the audience protocol allows.
pub fn parse_request(text: &str) -> Result<ModeratorRequest, String> {
    if text.matches(['{', '[']).count() > MAX_DEPTH * 4 {
        return Err("request too deeply nested".into());
    }
    serde_json::from_str(text).map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

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
