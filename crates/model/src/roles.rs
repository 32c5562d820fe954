//! The roles a chat platform gives a member (the audience page gives none), which a rule's
//! `only:` admits and which make a member staff.

/// Roles a chat platform gives a member; the audience page gives none.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ChatRoles {
    /// The channel's owner.
    pub broadcaster: bool,
    /// A moderator of the channel.
    pub moderator: bool,
    /// A VIP of the channel.
    pub vip: bool,
    /// A paying subscriber.
    pub subscriber: bool,
}

impl ChatRoles {
    /// Moderators and the streamer: exempt from cooldowns, votes and approval.
    pub fn is_staff(self) -> bool {
        self.broadcaster || self.moderator
    }
}
