//! Venue commands: the only way a venue changes once loaded. Every input (a curator's save,
//! the command line, later the audience, cues and controllers) submits [`SubmitCommand`]
//! messages; one system set checks and applies them, and logs each with a sequence number.

use std::collections::VecDeque;
use std::fs::File;
use std::io::{BufRead, BufWriter, Write};
use std::path::Path;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use bevy::prelude::*;
use serde::{Deserialize, Serialize};
use thiserror::Error;

use crate::VenueSystems;
use crate::assets_root::AssetsRoot;
use crate::params::{ParamError, ParamValue, StageParams};
use crate::scene::format::{Easing, ParamKind, SceneFile};
use crate::scene::validate::{SceneProblem, validate_scene};

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
}

/// Longest text a panel shows, in characters.
pub const MAX_SHOWN_CHARS: usize = 120;

impl VenueCommand {
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
            VenueCommand::PlayTour { tour: Some(tour), language } => format!("play tour {tour} in {}", language.as_deref().unwrap_or("the current language")),
            VenueCommand::PlayTour { tour: None, .. } => "stop the tour".into(),
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
            | VenueCommand::PlayTour { .. } => {
                !matches!(self, CommandOrigin::Audience(_))
            }
            VenueCommand::LoadScene { .. } => matches!(self, CommandOrigin::Local | CommandOrigin::Curator(_)),
        };
        if allowed {
            Ok(())
        } else {
            Err(CommandError::NotAllowed {
                origin: self.clone(),
                what: command.summary(),
            })
        }
    }
}

/// A request to apply a command, from any input.
#[derive(Debug, Clone, Message)]
pub struct SubmitCommand {
    /// Who asks.
    pub origin: CommandOrigin,
    /// What to do.
    pub command: VenueCommand,
}

impl SubmitCommand {
    /// A command from the local operator.
    pub fn local(command: VenueCommand) -> Self {
        Self {
            origin: CommandOrigin::Local,
            command,
        }
    }
}

/// A command that was applied, with its place in the log.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Message)]
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

impl LoggedCommand {
    /// The same command asked again by the same origin, so that permissions apply exactly as
    /// they did when it was logged (replay, a show restored from its log).
    pub fn resubmit(&self) -> SubmitCommand {
        SubmitCommand { origin: self.origin.clone(), command: self.command.clone() }
    }
}

/// A command that was refused, and why.
#[derive(Debug, Clone, Message)]
pub struct RejectedCommand {
    /// Who asked.
    pub origin: CommandOrigin,
    /// The command refused.
    pub command: VenueCommand,
    /// Why.
    pub error: CommandError,
}

/// The applied commands, newest last. Keeps the most recent [`CommandLog::CAPACITY`] in memory.
#[derive(Debug, Default, Resource)]
pub struct CommandLog {
    next_seq: u64,
    refused: u64,
    recent: VecDeque<LoggedCommand>,
}

impl CommandLog {
    /// Entries kept in memory.
    pub const CAPACITY: usize = 10_000;

    /// Appends an applied command and returns its log entry.
    fn append(&mut self, origin: CommandOrigin, command: VenueCommand) -> &LoggedCommand {
        self.next_seq += 1;
        let time_ms = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64);
        if self.recent.len() == Self::CAPACITY {
            self.recent.pop_front();
        }
        self.recent.push_back(LoggedCommand {
            seq: self.next_seq,
            time_ms,
            origin,
            command,
        });
        self.recent.back().expect("just pushed")
    }

    /// Number of commands applied since start.
    pub fn applied(&self) -> u64 {
        self.next_seq
    }

    /// Number of commands refused since start.
    pub fn refused(&self) -> u64 {
        self.refused
    }

    /// The most recent entries, oldest first.
    pub fn recent(&self) -> impl Iterator<Item = &LoggedCommand> {
        self.recent.iter()
    }
}

/// The scene the venue is built from. Replaced only by [`VenueCommand::LoadScene`].
#[derive(Debug, Clone, Resource)]
pub struct CurrentScene(pub Arc<SceneFile>);

/// Checks and applies commands, and keeps the log.
pub struct CommandPlugin;

impl Plugin for CommandPlugin {
    fn build(&self, app: &mut App) {
        app.add_message::<SubmitCommand>()
            .add_message::<LoggedCommand>()
            .add_message::<RejectedCommand>()
            .init_resource::<CommandLog>()
            .init_resource::<StageParams>()
            .add_systems(
                Update,
                (apply_commands, advance_param_moves, report_rejected_commands)
                    .chain()
                    .in_set(VenueSystems::Apply),
            )
            .add_systems(Update, write_command_log_file.in_set(VenueSystems::Present));
    }
}

/// The command log on disk: one JSON object per line (a [`LoggedCommand`]), appended as
/// commands are applied and flushed every frame. `parvis replay` reads it back.
#[derive(Resource)]
pub struct CommandLogFile {
    path: String,
    writer: BufWriter<File>,
    failed: bool,
    skip: usize,
}

impl CommandLogFile {
    /// Opens `path` for appending (a restarted show continues its log), creating it if needed.
    pub fn append_to(path: &Path) -> std::io::Result<Self> {
        let file = std::fs::OpenOptions::new().create(true).append(true).open(path)?;
        Ok(Self {
            path: path.display().to_string(),
            writer: BufWriter::new(file),
            failed: false,
            skip: 0,
        })
    }

    /// Leaves the next `n` applied commands out of the file: a show restored from this log
    /// applies its entries again, and they are in the file already.
    pub fn skipping(mut self, n: usize) -> Self {
        self.skip = n;
        self
    }
}

fn write_command_log_file(mut applied: MessageReader<LoggedCommand>, file: Option<ResMut<CommandLogFile>>) {
    let Some(mut file) = file else {
        applied.clear();
        return;
    };
    let file = &mut *file;
    let mut result = Ok(());
    for entry in applied.read() {
        if file.skip > 0 {
            file.skip -= 1;
            continue;
        }
        result = serde_json::to_writer(&mut file.writer, entry)
            .map_err(std::io::Error::from)
            .and_then(|()| file.writer.write_all(b"\n"));
        if result.is_err() {
            break;
        }
    }
    let result = result.and_then(|()| file.writer.flush());
    match result {
        Ok(()) => file.failed = false,
        // Keep the show running; say it once per failure spell, not every frame.
        Err(e) if !file.failed => {
            error!("cannot write the command log {}: {e}", file.path);
            file.failed = true;
        }
        Err(_) => {}
    }
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
        let line = line.map_err(|e| LogLineError {
            line: i + 1,
            message: e.to_string(),
        })?;
        if line.trim().is_empty() {
            continue;
        }
        let entry = serde_json::from_str(&line).map_err(|e| LogLineError {
            line: i + 1,
            message: format!("not a logged command: {e}"),
        })?;
        entries.push(entry);
    }
    Ok(entries)
}

/// A fingerprint of the venue's state: the scene and every stage parameter value (where a
/// parameter is animating, the value it is moving to, so the fingerprint does not depend on
/// the frame it is taken in). Two venues
/// with the same fingerprint show the same thing, so replay and sync can be checked cheaply.
pub fn venue_state_hash(world: &World) -> u64 {
    let scene = world.get_resource::<CurrentScene>().map(|s| serde_json::to_string(&*s.0).unwrap_or_default());
    let params: Vec<(String, String)> = world
        .get_resource::<StageParams>()
        .map(|p| p.iter_settled().map(|(d, v)| (d.name.clone(), serde_json::to_string(v).unwrap_or_default())).collect())
        .unwrap_or_default();
    // FNV-1a: stable across runs, platforms and Rust versions, unlike `DefaultHasher`.
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

/// Applies every submitted command in order; each either changes state and is logged, or is
/// refused with a reason.
fn apply_commands(
    mut submitted: MessageReader<SubmitCommand>,
    mut applied: MessageWriter<LoggedCommand>,
    mut rejected: MessageWriter<RejectedCommand>,
    mut log: ResMut<CommandLog>,
    mut params: ResMut<StageParams>,
    mut scene: Option<ResMut<CurrentScene>>,
    assets: Option<Res<AssetsRoot>>,
    mut commands: Commands,
    time: Res<Time>,
) {
    // A scene loaded earlier in this batch is the one later commands refer to (start-up
    // commands follow the first `LoadScene` in the same frame).
    let mut latest: Option<Arc<SceneFile>> = scene.as_deref().map(|s| s.0.clone());
    for SubmitCommand { origin, command } in submitted.read() {
        let now = time.elapsed_secs_f64();
        let scene_now = latest.clone();
        let result = origin.may_issue(command).and_then(|()| match command {
            VenueCommand::SetParam { name, value } => {
                // Write through `ResMut` only when the value differs, so that systems reacting
                // to a changed `StageParams` skip repeated identical values (a crowd voting).
                params.check(name, value)?;
                if params.value(name) != Some(value) || params.is_animating(name) {
                    params.set(name, value.clone())?;
                }
                Ok(())
            }
            VenueCommand::AnimateParam { name, to, seconds, easing } => {
                params.check(name, to)?;
                let (def, _) = params.get(name).ok_or_else(|| CommandError::Invalid(format!("no stage parameter named {name:?}")))?;
                if !matches!(def.kind, ParamKind::Float { .. } | ParamKind::Colour { .. }) {
                    return Err(CommandError::Invalid(format!("stage parameter {name:?} cannot be animated: only floats and colours move smoothly")));
                }
                if !(0.0..=600.0).contains(seconds) {
                    return Err(CommandError::Invalid(format!("an animation lasts 0 to 600 seconds, not {seconds}")));
                }
                params.animate(name, to.clone(), *seconds, *easing, now)?;
                Ok(())
            }
            VenueCommand::SpawnEffect { effect, .. } => {
                let known = scene_now.as_deref().is_some_and(|s| s.effects.iter().any(|e| &e.name == effect));
                if known { Ok(()) } else { Err(CommandError::Invalid(format!("no effect named {effect:?} in this venue"))) }
            }
            VenueCommand::ShowText { text, seconds, at, .. } => {
                if text.chars().count() > MAX_SHOWN_CHARS || text.chars().any(char::is_control) || text.trim().is_empty() {
                    return Err(CommandError::Invalid(format!("a shown text has 1 to {MAX_SHOWN_CHARS} characters and no control characters")));
                }
                if !(1.0..=120.0).contains(seconds) || !at.iter().all(|v| v.is_finite() && v.abs() <= 10_000.0) {
                    return Err(CommandError::Invalid("a text is shown 1 to 120 s, at a finite place".into()));
                }
                Ok(())
            }
            VenueCommand::HideText { .. } => Ok(()),
            VenueCommand::OpenPoll { poll } | VenueCommand::ClosePoll { poll } => {
                let known = scene_now.as_deref().is_some_and(|s| s.polls.iter().any(|p| &p.name == poll));
                if known { Ok(()) } else { Err(CommandError::Invalid(format!("no poll named {poll:?} in this venue"))) }
            }
            VenueCommand::ShowHotspot { name } => {
                let known = name.as_ref().is_none_or(|n| scene_now.as_deref().is_some_and(|s| s.hotspots.iter().any(|h| &h.name == n)));
                if known { Ok(()) } else { Err(CommandError::Invalid(format!("no hotspot named {:?} in this venue", name.as_deref().unwrap_or_default()))) }
            }
            VenueCommand::PlayTour { tour, language } => {
                if let Some(language) = language
                    && !crate::visit::lang::is_language_tag(language)
                {
                    return Err(CommandError::Invalid(format!("expected a language tag such as \"fr\" or \"en-GB\", found {language:?}")));
                }
                let known = tour.as_ref().is_none_or(|t| scene_now.as_deref().is_some_and(|s| s.tours.iter().any(|d| &d.name == t)));
                if known {
                    Ok(())
                } else {
                    let tours = scene_now.as_deref().map(|s| s.tours.iter().map(|t| t.name.as_str()).collect::<Vec<_>>().join(", ")).unwrap_or_default();
                    Err(CommandError::Invalid(format!("no tour named {:?} in this venue; tours: {}", tour.as_deref().unwrap_or_default(), if tours.is_empty() { "(none)" } else { &tours })))
                }
            }
            VenueCommand::LoadScene { scene: new_scene } => {
                if let Some(assets) = assets.as_deref() {
                    let problems = validate_scene(new_scene, "", assets);
                    if !problems.is_empty() {
                        return Err(CommandError::InvalidScene(problems));
                    }
                }
                *params = StageParams::from_scene(new_scene);
                let new_scene = CurrentScene(Arc::new((**new_scene).clone()));
                latest = Some(new_scene.0.clone());
                match scene.as_deref_mut() {
                    Some(current) => *current = new_scene,
                    None => commands.insert_resource(new_scene),
                }
                Ok(())
            }
        });
        match result {
            Ok(()) => {
                let entry = log.append(origin.clone(), command.clone());
                debug!("command #{} from {:?}: {}", entry.seq, entry.origin, entry.command.summary());
                applied.write(entry.clone());
            }
            Err(error) => {
                log.refused += 1;
                rejected.write(RejectedCommand {
                    origin: origin.clone(),
                    command: command.clone(),
                    error,
                });
            }
        }
    }
}

/// Moves animating parameters along; touches `StageParams` only while something moves, so
/// bindings are not recomputed every frame.
fn advance_param_moves(time: Res<Time>, mut params: ResMut<StageParams>) {
    if params.any_animating() {
        params.advance(time.elapsed_secs_f64());
    }
}

fn report_rejected_commands(mut rejected: MessageReader<RejectedCommand>) {
    for r in rejected.read() {
        warn!("refused {} from {:?}: {}", r.command.summary(), r.origin, r.error);
    }
}
