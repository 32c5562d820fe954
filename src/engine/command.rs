//! The command pipeline in the engine: every input (a curator's save, the command line, the
//! audience, cues and controllers) submits [`SubmitCommand`] messages; one system set checks
//! and applies them to the venue's state ([`CurrentScene`], [`VenueParams`]), logs each with a
//! sequence number ([`CommandLog`], [`CommandLogFile`]) and announces it ([`AppliedCommand`])
//! or its refusal ([`RejectedCommand`]). The commands themselves are the model's
//! ([`crate::model::command`]).

use std::collections::VecDeque;
use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::Path;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use bevy::prelude::*;

use crate::engine::schedule::VenueSystems;
use crate::model::assets_root::AssetsRoot;
use crate::model::command::{CommandError, CommandOrigin, LoggedCommand, MAX_SHOWN_CHARS, VenueCommand, state_hash};
use crate::model::params::StageParams;
use crate::model::scene::format::{ParamKind, SceneFile};
use crate::model::scene::validate::validate_scene;

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
        Self { origin: CommandOrigin::Local, command }
    }
}

/// A command that was applied, with its place in the log: the message other systems follow
/// (audience announcements, stage texts, tours, the log file).
#[derive(Debug, Clone, PartialEq, Message, Deref)]
pub struct AppliedCommand(pub LoggedCommand);

/// A logged command asked again by the same origin, so that permissions apply exactly as they
/// did when it was logged (replay, a show restored from its log).
impl From<&LoggedCommand> for SubmitCommand {
    fn from(entry: &LoggedCommand) -> Self {
        Self { origin: entry.origin.clone(), command: entry.command.clone() }
    }
}

/// The venue's stage parameters and their current values: the model's [`StageParams`] as the
/// engine's resource. Systems that only read it compare `is_changed` to skip work.
#[derive(Debug, Clone, Default, PartialEq, Resource, Deref, DerefMut)]
pub struct VenueParams(pub StageParams);

/// The folder asset paths are relative to: the model's [`AssetsRoot`] as the engine's resource.
#[derive(Debug, Clone, PartialEq, Eq, Resource, Deref)]
pub struct VenueAssets(pub AssetsRoot);

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
        let time_ms = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64);
        if self.recent.len() == Self::CAPACITY {
            self.recent.pop_front();
        }
        self.recent.push_back(LoggedCommand { seq: self.next_seq, time_ms, origin, command });
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
            .add_message::<AppliedCommand>()
            .add_message::<RejectedCommand>()
            .init_resource::<CommandLog>()
            .init_resource::<VenueParams>()
            .add_systems(
                Update,
                (apply_commands, advance_param_moves, report_rejected_commands).chain().in_set(VenueSystems::Apply),
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
        Ok(Self { path: path.display().to_string(), writer: BufWriter::new(file), failed: false, skip: 0 })
    }

    /// Leaves the next `n` applied commands out of the file: a show restored from this log
    /// applies its entries again, and they are in the file already.
    pub fn skipping(mut self, n: usize) -> Self {
        self.skip = n;
        self
    }
}

fn write_command_log_file(mut applied: MessageReader<AppliedCommand>, file: Option<ResMut<CommandLogFile>>) {
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
        result = serde_json::to_writer(&mut file.writer, &entry.0)
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

/// The venue's state fingerprint ([`state_hash`]) read from a world: its scene and every
/// stage parameter value.
pub fn venue_state_hash(world: &World) -> u64 {
    state_hash(world.get_resource::<CurrentScene>().map(|s| &*s.0), world.get_resource::<VenueParams>().map(|p| &p.0))
}

/// Applies every submitted command in order; each either changes state and is logged, or is
/// refused with a reason.
fn apply_commands(
    mut submitted: MessageReader<SubmitCommand>,
    mut applied: MessageWriter<AppliedCommand>,
    mut rejected: MessageWriter<RejectedCommand>,
    mut log: ResMut<CommandLog>,
    mut params: ResMut<VenueParams>,
    mut scene: Option<ResMut<CurrentScene>>,
    assets: Option<Res<VenueAssets>>,
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
                let (def, _) = params
                    .get(name)
                    .ok_or_else(|| CommandError::Invalid(format!("no stage parameter named {name:?}")))?;
                if !matches!(def.kind, ParamKind::Float { .. } | ParamKind::Colour { .. }) {
                    return Err(CommandError::Invalid(format!(
                        "stage parameter {name:?} cannot be animated: only floats and colours move smoothly"
                    )));
                }
                if !(0.0..=600.0).contains(seconds) {
                    return Err(CommandError::Invalid(format!("an animation lasts 0 to 600 seconds, not {seconds}")));
                }
                params.animate(name, to.clone(), *seconds, *easing, now)?;
                Ok(())
            }
            VenueCommand::SpawnEffect { effect, .. } => {
                let known = scene_now.as_deref().is_some_and(|s| s.effects.iter().any(|e| &e.name == effect));
                if known {
                    Ok(())
                } else {
                    Err(CommandError::Invalid(format!("no effect named {effect:?} in this venue")))
                }
            }
            VenueCommand::ShowText { text, seconds, at, .. } => {
                if text.chars().count() > MAX_SHOWN_CHARS
                    || text.chars().any(char::is_control)
                    || text.trim().is_empty()
                {
                    return Err(CommandError::Invalid(format!(
                        "a shown text has 1 to {MAX_SHOWN_CHARS} characters and no control characters"
                    )));
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
                let known = name
                    .as_ref()
                    .is_none_or(|n| scene_now.as_deref().is_some_and(|s| s.hotspots.iter().any(|h| &h.name == n)));
                if known {
                    Ok(())
                } else {
                    Err(CommandError::Invalid(format!(
                        "no hotspot named {:?} in this venue",
                        name.as_deref().unwrap_or_default()
                    )))
                }
            }
            VenueCommand::PlayTour { tour, language } => {
                if let Some(language) = language
                    && !crate::model::lang::is_language_tag(language)
                {
                    return Err(CommandError::Invalid(format!(
                        "expected a language tag such as \"fr\" or \"en-GB\", found {language:?}"
                    )));
                }
                let known = tour
                    .as_ref()
                    .is_none_or(|t| scene_now.as_deref().is_some_and(|s| s.tours.iter().any(|d| &d.name == t)));
                if known {
                    Ok(())
                } else {
                    let tours = scene_now
                        .as_deref()
                        .map(|s| s.tours.iter().map(|t| t.name.as_str()).collect::<Vec<_>>().join(", "))
                        .unwrap_or_default();
                    Err(CommandError::Invalid(format!(
                        "no tour named {:?} in this venue; tours: {}",
                        tour.as_deref().unwrap_or_default(),
                        if tours.is_empty() { "(none)" } else { &tours }
                    )))
                }
            }
            VenueCommand::LoadScene { scene: new_scene } => {
                if let Some(assets) = assets.as_deref() {
                    let problems = validate_scene(new_scene, "", assets);
                    if !problems.is_empty() {
                        return Err(CommandError::InvalidScene(problems));
                    }
                }
                params.0 = StageParams::from_scene(new_scene);
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
                applied.write(AppliedCommand(entry.clone()));
            }
            Err(error) => {
                log.refused += 1;
                rejected.write(RejectedCommand { origin: origin.clone(), command: command.clone(), error });
            }
        }
    }
}

/// Moves animating parameters along; touches `StageParams` only while something moves, so
/// bindings are not recomputed every frame.
fn advance_param_moves(time: Res<Time>, mut params: ResMut<VenueParams>) {
    if params.any_animating() {
        params.advance(time.elapsed_secs_f64());
    }
}

fn report_rejected_commands(mut rejected: MessageReader<RejectedCommand>) {
    for r in rejected.read() {
        warn!("refused {} from {:?}: {}", r.command.summary(), r.origin, r.error);
    }
}
