//! Scale-out over NATS, as plain data: the subjects and streams of a venue, what travels on
//! them (logged commands, snapshots), and the pure decisions a node takes on what arrives —
//! NATS has no schema, so every message is read as hostile until it parses and fits.
//!
//! The NATS client itself lives in the edges (`edges::nats`); nothing here does I/O.

use serde::{Deserialize, Serialize};
use thiserror::Error;

use crate::command::{LoggedCommand, VenueCommand};

/// Longest message a node reads from a venue's subjects. A logged `load_scene` carries a whole
/// scene (the cloister's is 30 KB as JSON); anything near NATS's own 1 MiB default is refused.
pub const MAX_MESSAGE_BYTES: usize = 900 * 1024;

/// Longest message of performers' poses a follower reads (a frame's updates of every performer:
/// a whole skeleton is under 2 KiB).
pub const MAX_POSES_BYTES: usize = 256 * 1024;

/// Longest venue name on NATS (one subject token).
pub const MAX_VENUE_NAME: usize = 64;

/// A venue's name on NATS was refused.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum NetError {
    /// Empty, too long, or with a character a subject token cannot hold.
    #[error(
        "venue name {0:?} cannot name NATS subjects: use 1 to {MAX_VENUE_NAME} letters, digits, '-' or '_' (--nats-venue)"
    )]
    BadVenueName(String),
    /// A message that is not what its subject carries.
    #[error("{subject}: {message}")]
    BadMessage {
        /// Where it arrived.
        subject: String,
        /// What is wrong with it.
        message: String,
    },
}

/// The subjects and JetStream streams of one venue. Every name starts with `parvis.<venue>.`
/// so that one NATS account can carry many venues and its permissions can be written per
/// venue and per role (docs/scale.md).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VenueSubjects {
    /// The venue's name token.
    pub venue: String,
    /// Every applied command, in order: the durable command log (stream [`Self::log_stream`]).
    pub log: String,
    /// The latest snapshot of the venue's lasting state (stream [`Self::snapshot_stream`],
    /// one message kept).
    pub snapshot: String,
    /// JetStream stream holding the command log.
    pub log_stream: String,
    /// JetStream stream holding the latest snapshot.
    pub snapshot_stream: String,
    /// Audience events from the edges ([`EdgeBatch`]), one subject per edge
    /// (`….audience.in.EDGE`, see [`Self::audience_in`]): this is the wildcard the venue reads.
    pub audience_in_all: String,
    /// Staff events from the edges (moderators' requests, staff chat), one subject per edge
    /// (`….staff.in.EDGE`): only edges with a staff credential may publish there (NATS
    /// permissions, docs/scale.md). The wildcard the venue reads.
    pub staff_in_all: String,
    /// The venue asks an edge to say again who its members are (`….audience.resync`, the
    /// payload is the edge's id): after the venue restarted, or heard from an edge it had
    /// thought lost.
    pub resync: String,
    /// What the venue says to the audience and its moderators ([`AudienceOut`]), to every
    /// edge.
    pub audience_out: String,
    /// Moderators' decisions every edge enforces ([`ModerationDecision`]).
    pub moderation: String,
    /// Overflow shards' counts for the authority ([`crate::shard::ShardReport`]), one subject
    /// per shard (`….shard.report.SHARD`, see [`Self::shard_report`]): the wildcard the
    /// authority reads.
    pub shard_report_all: String,
    /// The authority's totals of polls counted across shards ([`crate::shard::ShardTotals`]),
    /// to every shard.
    pub shard_totals: String,
    /// The performers' motion as the authority applied it, a frame's pose updates per message
    /// (a performance recording: [`crate::performer::recording`]), to every follower and
    /// shard. Not logged: a pose is replaced by the next within a frame.
    pub performer_poses: String,
}

impl VenueSubjects {
    /// The subjects of venue `name`; an error names a name NATS cannot carry.
    pub fn new(name: &str) -> Result<Self, NetError> {
        let ok = !name.is_empty()
            && name.len() <= MAX_VENUE_NAME
            && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
        if !ok {
            return Err(NetError::BadVenueName(name.to_owned()));
        }
        // Stream names may not hold '.', and are upper case by convention.
        let stream = name.to_ascii_uppercase().replace('-', "_");
        Ok(Self {
            venue: name.to_owned(),
            log: format!("parvis.{name}.log"),
            snapshot: format!("parvis.{name}.snapshot"),
            log_stream: format!("PARVIS_{stream}_LOG"),
            snapshot_stream: format!("PARVIS_{stream}_SNAPSHOT"),
            audience_in_all: format!("parvis.{name}.audience.in.*"),
            staff_in_all: format!("parvis.{name}.staff.in.*"),
            resync: format!("parvis.{name}.audience.resync"),
            audience_out: format!("parvis.{name}.audience.out"),
            moderation: format!("parvis.{name}.staff.moderation"),
            shard_report_all: format!("parvis.{name}.shard.report.*"),
            shard_totals: format!("parvis.{name}.shard.totals"),
            performer_poses: format!("parvis.{name}.performer.poses"),
        })
    }

    /// Where edge `edge` publishes its audience events: a subject of its own, so that NATS
    /// permissions can hold each edge to it.
    pub fn audience_in(&self, edge: &str) -> String {
        format!("parvis.{}.audience.in.{edge}", self.venue)
    }

    /// Where overflow shard `shard` reports its counts.
    pub fn shard_report(&self, shard: &str) -> String {
        format!("parvis.{}.shard.report.{shard}", self.venue)
    }

    /// Where edge `edge` publishes its staff events.
    pub fn staff_in(&self, edge: &str) -> String {
        format!("parvis.{}.staff.in.{edge}", self.venue)
    }

    /// The message id JetStream de-duplicates a logged command by: publishing it again (a
    /// retry after a lost acknowledgement) stores it once.
    pub fn message_id(&self, seq: u64) -> String {
        format!("{}:{seq}", self.venue)
    }
}

/// A name for NATS made from a venue's title: lower case, runs of anything else as one '-'.
pub fn venue_name_from_title(title: &str) -> String {
    let mut name = String::new();
    for c in title.chars().flat_map(char::to_lowercase) {
        if c.is_ascii_alphanumeric() {
            name.push(c);
        } else if !name.ends_with('-') && !name.is_empty() {
            name.push('-');
        }
    }
    let name = name.trim_end_matches('-');
    let mut name: String = name.chars().take(MAX_VENUE_NAME).collect();
    if name.is_empty() {
        name.push_str("venue");
    }
    name
}

/// The venue's lasting state at one point of its log: what a node restores before reading the
/// log's tail. The commands that made it, compacted ([`lasting_entries`]), so that applying
/// them is the same path as applying the log and permissions are checked the same way.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LogSnapshot {
    /// The last command sequence number the snapshot includes.
    pub seq: u64,
    /// The command log stream's sequence of that command: the tail starts after it.
    pub stream_seq: u64,
    /// The commands to apply, oldest first, starting with a `load_scene`.
    pub entries: Vec<LoggedCommand>,
    /// When the log stream `stream_seq` counts in was made (nanoseconds since the Unix epoch):
    /// a snapshot of a stream since deleted and made again is not used with the new one.
    #[serde(default)]
    pub stream_created_ns: u64,
}

impl LogSnapshot {
    /// Reads a snapshot from a message, refusing what does not fit.
    pub fn from_message(subject: &str, payload: &[u8]) -> Result<Self, NetError> {
        let bad = |message: String| NetError::BadMessage { subject: subject.to_owned(), message };
        within_limit(subject, payload)?;
        let snapshot: LogSnapshot = serde_json::from_slice(payload).map_err(|e| bad(format!("not a snapshot: {e}")))?;
        if !matches!(snapshot.entries.first().map(|e| &e.command), Some(VenueCommand::LoadScene { .. })) {
            return Err(bad("a snapshot must start with a load_scene".into()));
        }
        let last_entry = snapshot.entries.iter().map(|e| e.seq).max().unwrap_or(0);
        if snapshot.seq - last_entry.min(snapshot.seq) > MAX_SEQ_JUMP {
            return Err(bad(format!("its sequence #{} is implausibly far after its last command", snapshot.seq)));
        }
        if snapshot.entries.iter().any(|e| e.seq > snapshot.seq || !e.command.numbers_are_finite()) {
            return Err(bad(
                "an entry is after the snapshot's own sequence or holds a number that is not finite".into()
            ));
        }
        Ok(snapshot)
    }
}

/// Refuses a message longer than any node reads, before it is parsed.
fn within_limit(subject: &str, payload: &[u8]) -> Result<(), NetError> {
    if payload.len() <= MAX_MESSAGE_BYTES {
        return Ok(());
    }
    Err(NetError::BadMessage {
        subject: subject.to_owned(),
        message: format!("{} bytes, more than the {MAX_MESSAGE_BYTES} allowed", payload.len()),
    })
}

/// Reads one logged command from a message of the log subject, refusing what does not fit.
pub fn logged_from_message(subject: &str, payload: &[u8]) -> Result<LoggedCommand, NetError> {
    let bad = |message: String| NetError::BadMessage { subject: subject.to_owned(), message };
    within_limit(subject, payload)?;
    let entry: LoggedCommand = serde_json::from_slice(payload).map_err(|e| {
        let shown: String = String::from_utf8_lossy(&payload[..payload.len().min(60)]).into_owned();
        bad(format!("not a logged command ({e}): {shown:?}"))
    })?;
    if entry.seq == 0 {
        return Err(bad("sequence numbers start at 1".into()));
    }
    if !entry.command.numbers_are_finite() {
        return Err(bad(format!("#{}: a number is infinite or not a number", entry.seq)));
    }
    Ok(entry)
}

/// The commands that make a venue's lasting state, from a log: from its last `load_scene` on,
/// without the passing ones (bursts of effects, audience texts, captions, a tour in progress,
/// which would all replay at once), and without parameter changes a later `set_param` of the
/// same parameter overrides. `None` when the log never loaded a scene.
pub fn lasting_entries(entries: &[LoggedCommand]) -> Option<Vec<LoggedCommand>> {
    let start = entries.iter().rposition(|e| matches!(e.command, VenueCommand::LoadScene { .. }))?;
    let tail = &entries[start..];
    let mut kept: Vec<LoggedCommand> = Vec::new();
    let mut set_later: std::collections::HashSet<&str> = std::collections::HashSet::new();
    // Newest first: a parameter set later makes every earlier change of it irrelevant.
    for entry in tail.iter().rev() {
        match &entry.command {
            VenueCommand::SpawnEffect { .. }
            | VenueCommand::ShowText { .. }
            | VenueCommand::HideText { .. }
            | VenueCommand::PlayTour { .. }
            | VenueCommand::Caption { .. }
            | VenueCommand::HideCaption { .. } => continue,
            VenueCommand::SetParam { name, .. } if !set_later.insert(name.as_str()) => continue,
            VenueCommand::AnimateParam { name, .. } if set_later.contains(name.as_str()) => continue,
            _ => {}
        }
        kept.push(entry.clone());
    }
    kept.reverse();
    Some(kept)
}

/// What a follower does with a logged command that arrives.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Arrival {
    /// The next one: apply it.
    Apply,
    /// Already applied (a redelivery): skip it.
    Duplicate,
    /// Later than the next one: commands are missing in between (the stream lost them); apply
    /// it and say so.
    Gap {
        /// The sequence number expected.
        expected: u64,
    },
    /// So far ahead that it cannot be the venue's (a forged or broken message): refused, the
    /// position unchanged.
    Implausible,
}

/// The furthest a followed log may jump ahead at once; more is refused as [`Arrival::Implausible`].
pub const MAX_SEQ_JUMP: u64 = 10_000_000;

/// Where a follower is in the venue's log.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct FollowPosition {
    /// The last sequence number applied.
    pub applied: u64,
    /// The log's stream was made again: the next arrival sets the position, whatever its jump
    /// (the authority numbers on; a new log starts again from a scene load).
    pub rebasing: bool,
}

impl FollowPosition {
    /// The log's stream was made again (deleted under the authority, or a new log started).
    pub fn log_started_again(&mut self) {
        self.rebasing = true;
    }

    /// Decides about `seq` (a scene load when `loads_scene`), and moves past it unless it is a
    /// duplicate. After [`Self::log_started_again`], a scene load at or before the position
    /// starts the numbering again (a new log); anything later than the position is taken
    /// whatever its jump (the authority numbering on into the new stream).
    pub fn arrive(&mut self, seq: u64, loads_scene: bool) -> Arrival {
        if self.rebasing && seq <= self.applied && loads_scene {
            self.rebasing = false;
            self.applied = seq;
            return Arrival::Apply;
        }
        if seq <= self.applied {
            return Arrival::Duplicate;
        }
        if seq - self.applied > MAX_SEQ_JUMP && !self.rebasing {
            return Arrival::Implausible;
        }
        self.rebasing = false;
        let expected = self.applied + 1;
        self.applied = seq;
        if seq == expected { Arrival::Apply } else { Arrival::Gap { expected } }
    }
}

/// Longest edge id.
pub const MAX_EDGE_ID: usize = 16;

/// Checks an audience edge's id (`--edge-id`): its members' ids start with it, so the venue
/// can tell whose members an edge speaks for and forget them when the edge is lost.
pub fn check_edge_id(id: &str) -> Result<(), NetError> {
    let ok =
        !id.is_empty() && id.len() <= MAX_EDGE_ID && id.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit());
    ok.then_some(()).ok_or_else(|| NetError::BadMessage {
        subject: "--edge-id".into(),
        message: format!("{id:?}: use 1 to {MAX_EDGE_ID} lower-case letters or digits"),
    })
}

/// What a chat platform says about a line, as it travels.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct WireMeta {
    /// The sender's roles.
    #[serde(default)]
    pub roles: crate::roles::ChatRoles,
    /// Bits attached.
    #[serde(default)]
    pub bits: u32,
    /// The platform's id of the line.
    #[serde(default)]
    pub platform_id: Option<String>,
    /// How far the sender's view lags the stage, in milliseconds.
    #[serde(default)]
    pub behind_ms: u64,
    /// From a stream's chat.
    #[serde(default)]
    pub from_stream: bool,
}

/// An audience event as it travels from an edge to the venue: the edge's
/// [`AudienceEvent`](crate::audience::event::AudienceEvent) with its arrival time as an age.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "t", rename_all = "snake_case")]
pub enum WireEvent {
    /// Someone joined.
    Joined {
        /// Member id.
        user: String,
        /// Moderated display name.
        name: String,
    },
    /// Someone left.
    Left {
        /// Member id.
        user: String,
    },
    /// A moderated chat line.
    Chat {
        /// Member id.
        user: String,
        /// Display name.
        name: String,
        /// Cleaned text.
        text: String,
        /// Milliseconds since the edge received it.
        age_ms: u64,
        /// Staff (only on the staff subject).
        staff: bool,
        /// Platform details.
        #[serde(default)]
        meta: WireMeta,
    },
    /// A reaction.
    React {
        /// Member id.
        user: String,
        /// Emoji.
        emoji: String,
        /// Milliseconds since the edge received it.
        age_ms: u64,
    },
    /// A moderator's request (only on the staff subject).
    Moderator {
        /// Which moderator connection.
        moderator: String,
        /// What to do.
        action: crate::audience::moderator::ModeratorAction,
    },
    /// A vote.
    Vote {
        /// Member id.
        user: String,
        /// Poll id.
        poll: String,
        /// Option id.
        option: String,
        /// Milliseconds since the edge received it.
        age_ms: u64,
        /// Platform details.
        #[serde(default)]
        meta: WireMeta,
    },
}

/// What an edge publishes: its events since the last batch, and how many members it holds
/// (sent at least every second, events or not, so the venue knows the edge is alive).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EdgeBatch {
    /// The edge's id ([`check_edge_id`]).
    pub edge: String,
    /// Members connected to it now.
    pub members: u32,
    /// Events, oldest first.
    pub events: Vec<WireEvent>,
}

/// Longest text fields accepted from an edge, in characters: an edge checks the protocol's
/// own, tighter limits; these stop a hostile publisher.
const MAX_WIRE_NAME: usize = 64;
const MAX_WIRE_TEXT: usize = 2000;
const MAX_WIRE_AGE_MS: u64 = 60_000;

impl WireEvent {
    /// The event as it travels; `now` turns its arrival time into an age.
    pub fn from_event(event: &crate::audience::event::AudienceEvent, now: std::time::Instant) -> Self {
        use crate::audience::event::AudienceEvent as E;
        let age = |t: &std::time::Instant| now.saturating_duration_since(*t).as_millis() as u64;
        let meta = |m: &crate::audience::event::ChatMeta| WireMeta {
            roles: m.roles,
            bits: m.bits,
            platform_id: m.platform_id.as_deref().map(str::to_owned),
            behind_ms: m.behind.as_millis() as u64,
            from_stream: m.from_stream,
        };
        match event {
            E::Joined { user, name } => Self::Joined { user: user.to_string(), name: name.to_string() },
            E::Left { user } => Self::Left { user: user.to_string() },
            E::Chat { user, name, text, received, staff, meta: m } => Self::Chat {
                user: user.to_string(),
                name: name.to_string(),
                text: text.clone(),
                age_ms: age(received),
                staff: *staff,
                meta: meta(m),
            },
            E::React { user, emoji, received } => {
                Self::React { user: user.to_string(), emoji: emoji.clone(), age_ms: age(received) }
            }
            E::Moderator { moderator, action } => {
                Self::Moderator { moderator: moderator.to_string(), action: action.clone() }
            }
            E::Vote { user, poll, option, received, meta: m } => Self::Vote {
                user: user.to_string(),
                poll: poll.clone(),
                option: option.clone(),
                age_ms: age(received),
                meta: meta(m),
            },
        }
    }

    /// The event for the venue, from edge `edge` on the staff subject or not: refuses a member
    /// id that is not the edge's, oversized fields, and staff events (a moderator's request,
    /// staff chat, a platform's moderator role) from the audience subject.
    pub fn into_event(
        self,
        edge: &str,
        staff_subject: bool,
        now: std::time::Instant,
    ) -> Result<crate::audience::event::AudienceEvent, String> {
        use crate::audience::event::{AudienceEvent as E, ChatMeta};
        let prefix = format!("{edge}-");
        let member = |user: &str| {
            if user.starts_with(&prefix) && user.len() <= prefix.len() + 32 {
                Ok(std::sync::Arc::<str>::from(user))
            } else {
                Err(format!("member id {user:?} is not one of edge {edge:?}'s"))
            }
        };
        let short = |what: &str, text: &str, max: usize| {
            if text.chars().count() <= max { Ok(()) } else { Err(format!("{what} longer than {max} characters")) }
        };
        let received =
            |age_ms: u64| now.checked_sub(std::time::Duration::from_millis(age_ms.min(MAX_WIRE_AGE_MS))).unwrap_or(now);
        let meta = |m: WireMeta| -> Result<ChatMeta, String> {
            if m.roles.is_staff() && !staff_subject {
                return Err("a member with a staff role on the audience subject".into());
            }
            Ok(ChatMeta {
                roles: m.roles,
                bits: m.bits,
                platform_id: m.platform_id.map(|p| p.chars().take(MAX_WIRE_NAME).collect::<String>().into()),
                behind: std::time::Duration::from_millis(m.behind_ms.min(MAX_WIRE_AGE_MS)),
                from_stream: m.from_stream,
            })
        };
        Ok(match self {
            Self::Joined { user, name } => {
                short("name", &name, MAX_WIRE_NAME)?;
                E::Joined { user: member(&user)?, name: name.into() }
            }
            Self::Left { user } => E::Left { user: member(&user)? },
            Self::Chat { user, name, text, age_ms, staff, meta: m } => {
                if staff && !staff_subject {
                    return Err("staff chat on the audience subject".into());
                }
                short("name", &name, MAX_WIRE_NAME)?;
                short("text", &text, MAX_WIRE_TEXT)?;
                E::Chat {
                    user: member(&user)?,
                    name: name.into(),
                    text,
                    received: received(age_ms),
                    staff,
                    meta: meta(m)?,
                }
            }
            Self::React { user, emoji, age_ms } => {
                short("emoji", &emoji, 8)?;
                E::React { user: member(&user)?, emoji, received: received(age_ms) }
            }
            Self::Moderator { moderator, action } => {
                if !staff_subject {
                    return Err(format!("a moderator's request ({action:?}) on the audience subject"));
                }
                short("moderator", &moderator, MAX_WIRE_NAME)?;
                if let crate::audience::moderator::ModeratorAction::Command(command) = &action
                    && !command.numbers_are_finite()
                {
                    return Err("a command with a number that is not finite".into());
                }
                E::Moderator { moderator: format!("{edge}/{moderator}").into(), action }
            }
            Self::Vote { user, poll, option, age_ms, meta: m } => {
                short("poll", &poll, MAX_WIRE_NAME)?;
                short("option", &option, MAX_WIRE_NAME)?;
                E::Vote { user: member(&user)?, poll, option, received: received(age_ms), meta: meta(m)? }
            }
        })
    }
}

impl EdgeBatch {
    /// Reads a batch from a message, refusing what does not fit.
    pub fn from_message(subject: &str, payload: &[u8]) -> Result<Self, NetError> {
        let bad = |message: String| NetError::BadMessage { subject: subject.to_owned(), message };
        within_limit(subject, payload)?;
        let batch: EdgeBatch = serde_json::from_slice(payload).map_err(|e| bad(format!("not an edge batch: {e}")))?;
        check_edge_id(&batch.edge).map_err(|e| bad(e.to_string()))?;
        Ok(batch)
    }
}

/// What the venue says to the audience and its moderators, as it travels to every edge: the
/// protocol's JSON text, written once by the venue and passed on as it is.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "t", rename_all = "snake_case")]
pub enum AudienceOut {
    /// To every member (chat lines, effects, polls, `state`).
    Everyone {
        /// The message.
        json: String,
    },
    /// To one member, wherever connected.
    Member {
        /// Member id.
        user: String,
        /// The message.
        json: String,
    },
    /// To every moderator.
    Moderators {
        /// The message.
        json: String,
    },
    /// The approval queue, for moderators who connect later.
    Approvals {
        /// The message.
        json: String,
    },
}

/// A moderator's decision that every edge enforces on every message.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "t", rename_all = "snake_case")]
pub enum ModerationDecision {
    /// Ban a member (and the address they came from, where the edge holding them knows it).
    Ban {
        /// Member id.
        user: String,
    },
    /// Lift a ban.
    Unban {
        /// Member id.
        user: String,
    },
    /// Time a member out.
    TimeOut {
        /// Member id.
        user: String,
        /// For how long.
        seconds: u64,
    },
    /// Slow mode: one chat line per this many seconds (0: off).
    SlowMode {
        /// Seconds.
        seconds: u64,
    },
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::command::CommandOrigin;
    use crate::params::ParamValue;
    use crate::scene::format::SceneFile;

    fn entry(seq: u64, command: VenueCommand) -> LoggedCommand {
        LoggedCommand { seq, time_ms: 0, origin: CommandOrigin::Local, command }
    }

    fn set(name: &str, v: f32) -> VenueCommand {
        VenueCommand::SetParam { name: name.into(), value: ParamValue::Float(v) }
    }

    fn scene() -> VenueCommand {
        let text = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../../tests/scenes/minimal.ron"));
        let scene: SceneFile = crate::scene::validate::parse_scene(&text.unwrap()).unwrap();
        VenueCommand::LoadScene { scene: Box::new(scene) }
    }

    #[test]
    fn venue_names_that_cannot_be_subject_tokens_are_refused_by_name() {
        let subjects = VenueSubjects::new("cloister-night_2").unwrap();
        assert_eq!(subjects.log, "parvis.cloister-night_2.log");
        assert_eq!(subjects.log_stream, "PARVIS_CLOISTER_NIGHT_2_LOG");
        assert_eq!(subjects.message_id(7), "cloister-night_2:7");
        for bad in ["", "a.b", "a*", "a>", "a b", &"x".repeat(65)] {
            let e = VenueSubjects::new(bad).unwrap_err();
            assert!(e.to_string().contains("--nats-venue"), "{e}");
        }
        assert_eq!(venue_name_from_title("Le Cloître — nuit!"), "le-clo-tre-nuit");
        assert_eq!(venue_name_from_title("***"), "venue");
    }

    #[test]
    fn lasting_entries_keep_the_state_and_drop_what_passes_or_was_overridden() {
        let log = vec![
            entry(1, scene()),
            entry(2, set("fog", 0.1)),
            entry(3, scene()),
            entry(4, set("fog", 0.2)),
            entry(
                5,
                VenueCommand::AnimateParam {
                    name: "fog".into(),
                    to: ParamValue::Float(0.9),
                    seconds: 2.0,
                    easing: Default::default(),
                },
            ),
            entry(6, VenueCommand::SpawnEffect { effect: "petals".into(), seed: 1 }),
            entry(7, set("hue", 0.5)),
            entry(8, set("fog", 0.3)),
        ];
        let kept: Vec<u64> = lasting_entries(&log).unwrap().iter().map(|e| e.seq).collect();
        assert_eq!(kept, vec![3, 7, 8]);
        assert!(lasting_entries(&log[1..2]).is_none(), "no scene: nothing to restore");
        // A move not overridden is kept: the parameter ends where it went.
        let kept: Vec<u64> = lasting_entries(&log[..5]).unwrap().iter().map(|e| e.seq).collect();
        assert_eq!(kept, vec![3, 4, 5]);
    }

    #[test]
    fn hostile_messages_on_the_log_subject_are_refused_with_what_is_wrong() {
        let subject = "parvis.v.log";
        let good = serde_json::to_vec(&entry(3, set("fog", 0.5))).unwrap();
        assert_eq!(logged_from_message(subject, &good).unwrap().seq, 3);
        let cases: Vec<(Vec<u8>, &str)> = vec![
            (b"garbage".to_vec(), "not a logged command"),
            (vec![b' '; MAX_MESSAGE_BYTES + 1], "more than"),
            (serde_json::to_vec(&entry(0, set("fog", 0.5))).unwrap(), "start at 1"),
            (br#"{"seq":4,"time_ms":0,"origin":{"kind":"local"},"command":{"type":"set_param","name":"fog","value":{"Float":1e39}}}"#.to_vec(), "not a number"),
        ];
        for (payload, says) in cases {
            let e = logged_from_message(subject, &payload).unwrap_err().to_string();
            assert!(e.starts_with(subject) && e.contains(says), "{e}");
        }
        let e = LogSnapshot::from_message("s", br#"{"seq":1,"stream_seq":1,"entries":[]}"#).unwrap_err();
        let subjects = VenueSubjects::new("v").unwrap();
        assert_eq!(subjects.audience_in("e1"), "parvis.v.audience.in.e1");
        assert_eq!(subjects.audience_in_all, "parvis.v.audience.in.*");
        assert!(e.to_string().contains("load_scene"), "{e}");
    }

    #[test]
    fn a_follower_skips_redeliveries_and_names_a_gap() {
        let mut at = FollowPosition { applied: 10, rebasing: false };
        assert_eq!(at.arrive(11, false), Arrival::Apply);
        assert_eq!(at.arrive(11, false), Arrival::Duplicate);
        assert_eq!(at.arrive(9, false), Arrival::Duplicate);
        assert_eq!(at.arrive(14, false), Arrival::Gap { expected: 12 });
        assert_eq!(at.applied, 14);
        assert_eq!(at.arrive(u64::MAX, false), Arrival::Implausible, "a forged sequence would skip the rest");
        assert_eq!(at.applied, 14);
        // The stream made again under a running authority: it numbers on; a command stored in
        // both streams is still a duplicate.
        at.log_started_again();
        assert_eq!(at.arrive(14, false), Arrival::Duplicate);
        assert_eq!(at.arrive(15, false), Arrival::Apply);
        // A new log (`--nats-new-log`): it starts again from a scene load at #1.
        at.log_started_again();
        assert_eq!(at.arrive(1, true), Arrival::Apply);
        assert_eq!(at.arrive(2, false), Arrival::Apply);
        assert_eq!(at.applied, 2);
    }

    #[test]
    fn edge_events_are_refused_when_they_claim_staff_or_another_edges_members() {
        use crate::audience::event::AudienceEvent;
        use crate::audience::moderator::ModeratorAction;
        let now = std::time::Instant::now();
        let chat = |user: &str, staff: bool| WireEvent::Chat {
            user: user.into(),
            name: "Ada".into(),
            text: "!fog 0.1".into(),
            age_ms: 12,
            staff,
            meta: WireMeta::default(),
        };
        let event = chat("e1-abc", false).into_event("e1", false, now).unwrap();
        assert!(matches!(event, AudienceEvent::Chat { staff: false, .. }));
        // Round trip through JSON, as it travels.
        let batch = EdgeBatch { edge: "e1".into(), members: 3, events: vec![chat("e1-abc", false)] };
        let read = EdgeBatch::from_message("s", &serde_json::to_vec(&batch).unwrap()).unwrap();
        assert_eq!(read, batch);

        let e = chat("e2-abc", false).into_event("e1", false, now).unwrap_err();
        assert!(e.contains("not one of edge"), "{e}");
        let e = chat("e1-abc", true).into_event("e1", false, now).unwrap_err();
        assert!(e.contains("staff chat on the audience subject"), "{e}");
        assert!(chat("e1-abc", true).into_event("e1", true, now).is_ok(), "staff chat from a staff edge");
        let command = WireEvent::Moderator {
            moderator: "m1".into(),
            action: ModeratorAction::Command(VenueCommand::SetParam {
                name: "fog".into(),
                value: ParamValue::Float(0.1),
            }),
        };
        let e = command.clone().into_event("e1", false, now).unwrap_err();
        assert!(e.contains("moderator's request") && e.contains("audience subject"), "{e}");
        let AudienceEvent::Moderator { moderator, .. } = command.into_event("e1", true, now).unwrap() else { panic!() };
        assert_eq!(&*moderator, "e1/m1", "the venue says which edge a moderator is on");
        let staff_role = WireEvent::Vote {
            user: "e1-x".into(),
            poll: "p".into(),
            option: "a".into(),
            age_ms: 0,
            meta: WireMeta {
                roles: crate::roles::ChatRoles { moderator: true, ..Default::default() },
                ..Default::default()
            },
        };
        assert!(staff_role.into_event("e1", false, now).unwrap_err().contains("staff role"));
        let long = WireEvent::Joined { user: "e1-x".into(), name: "n".repeat(65) };
        assert!(long.into_event("e1", false, now).unwrap_err().contains("longer than"));
        for bad in ["", "E1", "edge-1", &"x".repeat(17)] {
            assert!(check_edge_id(bad).is_err(), "{bad:?}");
        }
        let e = EdgeBatch::from_message("s", br#"{"edge":"NO","members":0,"events":[]}"#).unwrap_err();
        assert!(e.to_string().contains("lower-case"), "{e}");
    }
}
