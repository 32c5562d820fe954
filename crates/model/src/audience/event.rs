//! What the audience's edges hand to the venue: one event type for the page, the moderators'
//! channel and every chat bridge, with the pseudonymous member id and what a chat platform
//! says about a line.

use std::sync::Arc;
use std::time::{Duration, Instant};

pub use crate::roles::ChatRoles;

/// A pseudonymous audience member id (never a name, address or anything personal).
pub type UserId = Arc<str>;

/// What the edge hands to the venue.
#[derive(Debug, Clone)]
pub enum AudienceEvent {
    /// Someone joined.
    Joined {
        /// Their id.
        user: UserId,
        /// Display name, moderated.
        name: Arc<str>,
    },
    /// Someone left.
    Left {
        /// Their id.
        user: UserId,
    },
    /// A moderated chat line.
    Chat {
        /// Sender.
        user: UserId,
        /// Sender's display name.
        name: Arc<str>,
        /// Cleaned text.
        text: String,
        /// When the frame arrived, for latency metrics.
        received: Instant,
        /// Whether the sender is staff (moderator, streamer): exempt from cooldowns, votes and
        /// approval. Never true for the audience page.
        staff: bool,
        /// What a chat platform says about the sender and the line (nothing for the page).
        meta: ChatMeta,
    },
    /// A reaction.
    React {
        /// Sender.
        user: UserId,
        /// Emoji.
        emoji: String,
        /// Arrival time.
        received: Instant,
    },
    /// A moderator's request that needs the venue.
    Moderator {
        /// Which moderator connection.
        moderator: Arc<str>,
        /// What to do.
        action: super::moderator::ModeratorAction,
    },
    /// A vote.
    Vote {
        /// Sender.
        user: UserId,
        /// Poll id.
        poll: String,
        /// Option id.
        option: String,
        /// Arrival time.
        received: Instant,
        /// What a chat platform says about the voter (nothing for the page).
        meta: ChatMeta,
    },
}

/// What a chat platform tells about a line beyond its text.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ChatMeta {
    /// The sender's roles.
    pub roles: ChatRoles,
    /// Bits (Twitch's paid cheers) attached to the line.
    pub bits: u32,
    /// The platform's id of the line, so that the platform's moderation can retract it.
    pub platform_id: Option<Arc<str>>,
    /// How far the sender's view lags the stage (the stream's delay): their votes count for
    /// windows as they saw them.
    pub behind: Duration,
    /// Whether the line comes from a stream's chat (and may answer a delay probe).
    pub from_stream: bool,
}
