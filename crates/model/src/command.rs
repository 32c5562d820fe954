//! Venue commands: the only way a venue changes once loaded, as plain data that can be
//! logged, replayed and sent to other nodes; who may issue which ([`CommandOrigin::may_issue`]);
//! the command log's lines and how they are read back; and the venue's state fingerprint.

use std::io::BufRead;

use serde::{Deserialize, Serialize};
use thiserror::Error;

use crate::params::{ParamError, ParamValue, StageParams};
use crate::program::ProgramAction;
use crate::scene::format::{Easing, SceneFile};
use crate::scene::validate::SceneProblem;

/// A change to the venue. Plain data: it can be logged, replayed and sent to other nodes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum VenueCommand {
    /// Set a stage parameter to a new value.
    SetParam {
        /// Parameter name.
        name: String,
        /// New value; must match the parameter's type and range.
        value: ParamValue,
    },
    /// Replace the whole venue with a new scene (a curator saved the file, or a show starts).
    /// Stage parameters return to the new scene's defaults.
    LoadScene {
        /// The new scene.
        scene: Box<SceneFile>,
    },
    /// Move a float or colour stage parameter to a new value over time.
    AnimateParam {
        /// Parameter name.
        name: String,
        /// Value at the end of the move.
        to: ParamValue,
        /// Duration in seconds (0 to 600).
        seconds: f32,
        /// Shape of the move.
        #[serde(default)]
        easing: Easing,
    },
    /// Release one of the scene's effects. The seed fixes every piece's start, so a replay
    /// releases the same pieces.
    SpawnEffect {
        /// Effect name, from the scene's `effects`.
        effect: String,
        /// Random seed for the pieces.
        seed: u64,
    },
    /// Show a text panel in the venue (an audience member's moderated words).
    ShowText {
        /// Id of the chat line it comes from, so that a retraction can hide it.
        id: u64,
        /// The text, at most [`MAX_SHOWN_CHARS`] characters.
        text: String,
        /// Who wrote it (display name).
        by: String,
        /// Seconds shown (1 to 120).
        seconds: f32,
        /// Where, in metres.
        at: [f32; 3],
    },
    /// Hide a shown text panel (`id`), or all of them (`id: null`).
    HideText {
        /// The chat line id; `None` hides every panel.
        #[serde(default)]
        id: Option<u64>,
    },
    /// Open one of the scene's polls.
    OpenPoll {
        /// Poll name.
        poll: String,
    },
    /// Close the open poll now and announce its result.
    ClosePoll {
        /// Poll name.
        poll: String,
    },
    /// Open a hotspot's panel and play its audio description (`name: null` closes it).
    ShowHotspot {
        /// Hotspot name, from the scene's `hotspots`.
        #[serde(default)]
        name: Option<String>,
    },
    /// Start a guided tour (`tour: null` stops the one playing).
    PlayTour {
        /// Tour name, from the scene's `tours`.
        #[serde(default)]
        tour: Option<String>,
        /// The visitor's language (a BCP 47 tag); unchanged if absent.
        #[serde(default)]
        language: Option<String>,
    },
    /// Open audience rules (closed ones, by name or group) for a span: an interaction window.
    OpenWindow {
        /// Rule names or groups.
        rules: Vec<String>,
        /// Seconds it stays open (1 to 3600); `None` until closed by command.
        #[serde(default)]
        seconds: Option<f32>,
        /// What the audience reads.
        #[serde(default)]
        label: String,
    },
    /// Close audience rules' windows (by name or group).
    CloseWindow {
        /// Rule names or groups.
        rules: Vec<String>,
    },
    /// Run a show's transport: play, pause, stop, seek, GO, jump to a cue, loop a section.
    Transport {
        /// Show name, from the scene's `shows`.
        show: String,
        /// What to do.
        action: TransportAction,
    },
    /// A cue of a show fired: a record in the log, with where on the show's clock it was
    /// meant to fire and where the clock was when it did. The cue's actions follow it as
    /// commands of their own, from the cue's origin.
    CueFired {
        /// Show name.
        show: String,
        /// Cue id.
        cue: String,
        /// Planned position on the show's clock, seconds.
        planned: f64,
        /// The clock's position in the frame it fired, seconds.
        actual: f64,
    },
    /// The director's work on the program output: cut or move the program camera, show or
    /// hide an overlay.
    Program {
        /// What to do.
        action: ProgramAction,
    },
    /// A line of live captions: what a performer or the narrator says, from the speech
    /// recogniser (revised while they speak, `done` once the line is complete), or a staff
    /// correction of it, which later recognitions of the line do not overwrite.
    Caption {
        /// The line's number (the recogniser's).
        id: u64,
        /// The words, at most [`MAX_CAPTION_CHARS`] characters.
        text: String,
        /// Whether the line is complete.
        #[serde(default)]
        done: bool,
    },
    /// Hide a caption line, before or after it shows (a moderator's decision), or show it
    /// again.
    HideCaption {
        /// The line's number.
        id: u64,
        /// Hidden (`true`) or shown again.
        hidden: bool,
    },
}

/// What a show's transport is asked to do.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "do", rename_all = "snake_case")]
pub enum TransportAction {
    /// Start or carry on from where it stands.
    Play,
    /// Hold where it stands, music included.
    Pause,
    /// Stop and go back to the start.
    Stop,
    /// Move to a position (seconds on the show's clock) without firing the cues passed.
    Seek {
        /// Where to.
        seconds: f64,
    },
    /// Fire the cue in standby (the next manual cue).
    Go,
    /// Move to a cue and fire it.
    Jump {
        /// Cue id.
        cue: String,
    },
    /// Repeat a section while rehearsing: on reaching `to`, go back to `from`.
    Loop {
        /// Section start, seconds.
        from: f64,
        /// Section end, seconds.
        to: f64,
    },
    /// Stop repeating the section.
    Unloop,
}

impl TransportAction {
    /// Whether its numbers are finite.
    fn numbers_are_finite(&self) -> bool {
        match self {
            TransportAction::Seek { seconds } => seconds.is_finite(),
            TransportAction::Loop { from, to } => from.is_finite() && to.is_finite(),
            _ => true,
        }
    }
}

impl std::fmt::Display for TransportAction {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            TransportAction::Play => write!(f, "play"),
            TransportAction::Pause => write!(f, "pause"),
            TransportAction::Stop => write!(f, "stop"),
            TransportAction::Seek { seconds } => write!(f, "seek to {seconds} s"),
            TransportAction::Go => write!(f, "GO"),
            TransportAction::Jump { cue } => write!(f, "jump to cue {cue}"),
            TransportAction::Loop { from, to } => write!(f, "loop {from}–{to} s"),
            TransportAction::Unloop => write!(f, "stop looping"),
        }
    }
}

/// Longest text a panel shows, in characters.
pub const MAX_SHOWN_CHARS: usize = 120;

/// Longest caption line, in characters: two lines of a broadcast caption band and some.
pub const MAX_CAPTION_CHARS: usize = 200;

impl VenueCommand {
    /// Whether every number in the command is finite. JSON, and so the command log, cannot
    /// carry infinities or NaN (they would be written as `null`, a line no one can read back),
    /// and no parameter, duration or place means anything with them.
    pub fn numbers_are_finite(&self) -> bool {
        let value = |v: &ParamValue| !matches!(v, ParamValue::Float(f) if !f.is_finite());
        match self {
            VenueCommand::SetParam { value: v, .. } => value(v),
            VenueCommand::AnimateParam { to, seconds, .. } => value(to) && seconds.is_finite(),
            VenueCommand::ShowText { seconds, at, .. } => seconds.is_finite() && at.iter().all(|v| v.is_finite()),
            // A scene has numbers everywhere: it must come back from JSON as itself (NaN is
            // not equal to itself, an infinity comes back as an error).
            VenueCommand::LoadScene { scene } => serde_json::to_string(scene)
                .ok()
                .and_then(|json| serde_json::from_str::<SceneFile>(&json).ok())
                .is_some_and(|back| back == **scene),
            VenueCommand::Transport { action, .. } => action.numbers_are_finite(),
            VenueCommand::OpenWindow { seconds, .. } => seconds.is_none_or(f32::is_finite),
            VenueCommand::CloseWindow { .. } => true,
            VenueCommand::CueFired { planned, actual, .. } => planned.is_finite() && actual.is_finite(),
            VenueCommand::Program { action } => action.numbers_are_finite(),
            VenueCommand::SpawnEffect { .. }
            | VenueCommand::HideText { .. }
            | VenueCommand::OpenPoll { .. }
            | VenueCommand::ClosePoll { .. }
            | VenueCommand::ShowHotspot { .. }
            | VenueCommand::PlayTour { .. }
            | VenueCommand::Caption { .. }
            | VenueCommand::HideCaption { .. } => true,
        }
    }

    /// A short description for logs, without the payload of large commands.
    pub fn summary(&self) -> String {
        match self {
            VenueCommand::SetParam { name, value } => format!("set {name} = {value}"),
            VenueCommand::LoadScene { scene } => format!("load scene {:?}", scene.venue.title),
            VenueCommand::AnimateParam { name, to, seconds, .. } => format!("animate {name} to {to} over {seconds} s"),
            VenueCommand::SpawnEffect { effect, seed } => format!("spawn {effect} (seed {seed})"),
            VenueCommand::ShowText { id, by, .. } => format!("show text #{id} by {by:?}"),
            VenueCommand::HideText { id: Some(id) } => format!("hide text #{id}"),
            VenueCommand::HideText { id: None } => "hide all texts".into(),
            VenueCommand::OpenPoll { poll } => format!("open poll {poll}"),
            VenueCommand::ClosePoll { poll } => format!("close poll {poll}"),
            VenueCommand::ShowHotspot { name: Some(name) } => format!("show hotspot {name}"),
            VenueCommand::ShowHotspot { name: None } => "close the hotspot panel".into(),
            VenueCommand::PlayTour { tour: Some(tour), language } => {
                format!("play tour {tour} in {}", language.as_deref().unwrap_or("the current language"))
            }
            VenueCommand::PlayTour { tour: None, .. } => "stop the tour".into(),
            VenueCommand::Transport { show, action } => format!("show {show}: {action}"),
            VenueCommand::OpenWindow { rules, seconds: Some(s), .. } => format!("open {} for {s} s", rules.join(", ")),
            VenueCommand::OpenWindow { rules, seconds: None, .. } => format!("open {}", rules.join(", ")),
            VenueCommand::CloseWindow { rules } => format!("close {}", rules.join(", ")),
            VenueCommand::CueFired { show, cue, planned, actual } => {
                format!("show {show}: cue {cue} fired at {actual:.3} s (planned {planned:.3} s)")
            }
            VenueCommand::Program { action } => format!("program: {action}"),
            VenueCommand::Caption { id, done: true, .. } => format!("caption #{id}"),
            VenueCommand::Caption { id, done: false, .. } => format!("caption #{id} (so far)"),
            VenueCommand::HideCaption { id, hidden: true } => format!("hide caption #{id}"),
            VenueCommand::HideCaption { id, hidden: false } => format!("show caption #{id} again"),
        }
    }
}

/// Who asked for a command. Recorded in the log; decides what the command may do.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", content = "id", rename_all = "snake_case")]
pub enum CommandOrigin {
    /// The operator on this machine: command line, start-up.
    Local,
    /// A curator, through a scene file or an editor; the id names the file or person.
    Curator(String),
    /// A moderator of the live audience.
    Moderator(String),
    /// An audience member (pseudonymous id), through the venue's rules.
    Audience(String),
    /// A cue of a show, as `show/cue`: the show's transport fired it.
    Cue(String),
    /// A control-room protocol from an allowed address (`osc 127.0.0.1:53000`): staff.
    Control(String),
}

/// Why a command was not applied.
#[derive(Debug, Clone, PartialEq, Error)]
pub enum CommandError {
    /// The origin may not issue this command.
    #[error("{origin:?} may not {what}")]
    NotAllowed {
        /// Who asked.
        origin: CommandOrigin,
        /// What was refused.
        what: String,
    },
    /// A stage parameter refused the value.
    #[error(transparent)]
    Param(#[from] ParamError),
    /// A scene sent by command did not validate.
    #[error("scene rejected: {}", .0.iter().map(ToString::to_string).collect::<Vec<_>>().join("; "))]
    InvalidScene(Vec<SceneProblem>),
    /// The command names something the scene does not have, or is out of bounds.
    #[error("{0}")]
    Invalid(String),
}

impl CommandOrigin {
    /// Whether this origin may issue `command` at all. Audience members may only change stage
    /// parameters; replacing the venue is for the operator and curators.
    pub fn may_issue(&self, command: &VenueCommand) -> Result<(), CommandError> {
        // The audience reaches the venue only through the scene's rules, which build these
        // commands; running the show (polls, retractions) is staff work.
        let allowed = match command {
            VenueCommand::SetParam { .. }
            | VenueCommand::AnimateParam { .. }
            | VenueCommand::SpawnEffect { .. }
            | VenueCommand::ShowText { .. } => true,
            VenueCommand::HideText { .. }
            | VenueCommand::OpenPoll { .. }
            | VenueCommand::ClosePoll { .. }
            | VenueCommand::ShowHotspot { .. }
            | VenueCommand::PlayTour { .. }
            | VenueCommand::Transport { .. }
            | VenueCommand::OpenWindow { .. }
            | VenueCommand::CloseWindow { .. }
            | VenueCommand::Program { .. }
            | VenueCommand::Caption { .. }
            | VenueCommand::HideCaption { .. } => !matches!(self, CommandOrigin::Audience(_)),
            // Only a show's own transport says that one of its cues fired (and replay, which
            // asks again as the same origin).
            VenueCommand::CueFired { .. } => matches!(self, CommandOrigin::Cue(_)),
            VenueCommand::LoadScene { .. } => matches!(self, CommandOrigin::Local | CommandOrigin::Curator(_)),
        };
        if allowed { Ok(()) } else { Err(CommandError::NotAllowed { origin: self.clone(), what: command.summary() }) }
    }
}

/// A command that was applied, with its place in the log.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LoggedCommand {
    /// Sequence number, from 1, without gaps.
    pub seq: u64,
    /// Wall-clock time in milliseconds since the Unix epoch.
    pub time_ms: u64,
    /// Who asked.
    pub origin: CommandOrigin,
    /// What was done.
    pub command: VenueCommand,
}

/// A line of a command log that could not be read.
#[derive(Debug, Error)]
#[error("line {line}: {message}")]
pub struct LogLineError {
    /// 1-based line number.
    pub line: usize,
    /// What was wrong.
    pub message: String,
}

/// Reads a command log. Blank lines are skipped; any other unreadable line is an error, since
/// replaying around a hole would give a different show.
pub fn read_command_log(reader: impl BufRead) -> Result<Vec<LoggedCommand>, LogLineError> {
    let mut entries = Vec::new();
    for (i, line) in reader.lines().enumerate() {
        let line = line.map_err(|e| LogLineError { line: i + 1, message: e.to_string() })?;
        if line.trim().is_empty() {
            continue;
        }
        let entry: LoggedCommand = serde_json::from_str(&line)
            .map_err(|e| LogLineError { line: i + 1, message: format!("not a logged command: {e}") })?;
        // `1e39` reads as an f32 infinity, which no venue applies and no log can hold.
        if !entry.command.numbers_are_finite() {
            return Err(LogLineError {
                line: i + 1,
                message: format!("{}: a number is out of range (infinite or not a number)", entry.command.summary()),
            });
        }
        entries.push(entry);
    }
    Ok(entries)
}

/// Reads a command log that may end with a line cut short (the venue was killed while
/// writing it): every whole line must be a logged command, as in [`read_command_log`]; a last
/// line without its line break is left out (it was never acknowledged: acknowledgements follow
/// the write) and its length returned.
pub fn read_command_log_recovering(text: &str) -> Result<(Vec<LoggedCommand>, usize), LogLineError> {
    let whole = text.rfind('\n').map_or(0, |end| end + 1);
    Ok((read_command_log(&text.as_bytes()[..whole])?, text.len() - whole))
}

/// A fingerprint of a venue's state: its scene and every stage parameter value (where a
/// parameter is animating, the value it is moving to, so the fingerprint does not depend on
/// the frame it is taken in). Two venues with the same fingerprint show the same thing, so
/// replay and sync can be checked cheaply. FNV-1a over JSON: stable across runs, platforms and
/// Rust versions, unlike `DefaultHasher`.
pub fn state_hash(scene: Option<&SceneFile>, params: Option<&StageParams>) -> u64 {
    let scene = scene.map(|s| serde_json::to_string(s).unwrap_or_default());
    let params: Vec<(String, String)> = params
        .map(|p| {
            p.iter_settled().map(|(d, v)| (d.name.clone(), serde_json::to_string(v).unwrap_or_default())).collect()
        })
        .unwrap_or_default();
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    let mut feed = |bytes: &[u8]| {
        for b in bytes {
            hash ^= u64::from(*b);
            hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
        }
        hash ^= 0xff;
        hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
    };
    feed(scene.unwrap_or_default().as_bytes());
    for (name, value) in &params {
        feed(name.as_bytes());
        feed(value.as_bytes());
    }
    hash
}
