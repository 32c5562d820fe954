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
        })
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
}

impl LogSnapshot {
    /// Reads a snapshot from a message, refusing what does not fit.
    pub fn from_message(subject: &str, payload: &[u8]) -> Result<Self, NetError> {
        let bad = |message: String| NetError::BadMessage { subject: subject.to_owned(), message };
        if payload.len() > MAX_MESSAGE_BYTES {
            return Err(bad(format!("{} bytes, more than the {MAX_MESSAGE_BYTES} allowed", payload.len())));
        }
        let snapshot: LogSnapshot = serde_json::from_slice(payload).map_err(|e| bad(format!("not a snapshot: {e}")))?;
        if !matches!(snapshot.entries.first().map(|e| &e.command), Some(VenueCommand::LoadScene { .. })) {
            return Err(bad("a snapshot must start with a load_scene".into()));
        }
        if snapshot.entries.iter().any(|e| e.seq > snapshot.seq || !e.command.numbers_are_finite()) {
            return Err(bad(
                "an entry is after the snapshot's own sequence or holds a number that is not finite".into()
            ));
        }
        Ok(snapshot)
    }
}

/// Reads one logged command from a message of the log subject, refusing what does not fit.
pub fn logged_from_message(subject: &str, payload: &[u8]) -> Result<LoggedCommand, NetError> {
    let bad = |message: String| NetError::BadMessage { subject: subject.to_owned(), message };
    if payload.len() > MAX_MESSAGE_BYTES {
        return Err(bad(format!("{} bytes, more than the {MAX_MESSAGE_BYTES} allowed", payload.len())));
    }
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
    /// Later than the next one: commands are missing in between (the stream lost them, or the
    /// venue's log was started again); apply it and say so.
    Gap {
        /// The sequence number expected.
        expected: u64,
    },
}

/// Where a follower is in the venue's log.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct FollowPosition {
    /// The last sequence number applied.
    pub applied: u64,
}

impl FollowPosition {
    /// Decides about `seq`, and moves past it unless it is a duplicate.
    pub fn arrive(&mut self, seq: u64) -> Arrival {
        if seq <= self.applied {
            return Arrival::Duplicate;
        }
        let expected = self.applied + 1;
        self.applied = seq;
        if seq == expected { Arrival::Apply } else { Arrival::Gap { expected } }
    }
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
        assert!(e.to_string().contains("load_scene"), "{e}");
    }

    #[test]
    fn a_follower_skips_redeliveries_and_names_a_gap() {
        let mut at = FollowPosition { applied: 10 };
        assert_eq!(at.arrive(11), Arrival::Apply);
        assert_eq!(at.arrive(11), Arrival::Duplicate);
        assert_eq!(at.arrive(9), Arrival::Duplicate);
        assert_eq!(at.arrive(14), Arrival::Gap { expected: 12 });
        assert_eq!(at.applied, 14);
    }
}
