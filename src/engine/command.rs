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

use crate::engine::rest::Rest;
use crate::engine::schedule::VenueSystems;
use crate::model::assets_root::AssetsRoot;
use crate::model::command::{
    CommandError, CommandOrigin, LoggedCommand, MAX_SHOWN_CHARS, TransportAction, VenueCommand, state_hash,
};
use crate::model::params::StageParams;
use crate::model::program::ProgramAction;
use crate::model::scene::format::{ParamKind, SceneFile, ShowDef};
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
pub struct AppliedCommand {
    /// The command and its place in the log.
    #[deref]
    pub entry: LoggedCommand,
    /// Applied again from the log to restore a show ([`RestoreCommand`]): it was acknowledged
    /// when first applied, and is not written or acknowledged again.
    pub restored: bool,
    /// Applied from another venue's log ([`FollowCommand`]): live here, but acknowledged and
    /// logged durably by that venue.
    pub followed: bool,
}

/// A command from the venue's own log, applied again to restore the show (`parvis run
/// --resume`, a headset session handing over to the desktop). It keeps its sequence number
/// and is not written to the log a second time.
#[derive(Debug, Clone, Message)]
pub struct RestoreCommand(pub LoggedCommand);

/// A command of another venue's log, applied here with its own sequence number: a render
/// follower keeping up with its authority (`parvis follow`). Unlike a [`RestoreCommand`] it is
/// applied as live (its effects play, its texts show); like one, it is not acknowledged here.
#[derive(Debug, Clone, Message)]
pub struct FollowCommand(pub LoggedCommand);

/// An applied command that its origin may now be told about: the log holds it durably. With a
/// log on another machine ([`DurableGate`]) that is when the log said so, frames later; else
/// the frame it was applied (the log file is synced before this is announced).
#[derive(Debug, Clone, PartialEq, Message, Deref)]
pub struct DurableCommand(pub LoggedCommand);

/// Holds acknowledgements back until a log elsewhere (JetStream) holds their command: the
/// highest sequence number it confirmed, every earlier one included. Inserted by the edge
/// that writes that log.
#[derive(Debug, Clone, Default, Resource)]
pub struct DurableGate {
    /// Highest sequence number the log has confirmed.
    pub confirmed: Arc<std::sync::atomic::AtomicU64>,
}

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

    /// A log whose next command is numbered `seq + 1`: a show carried on from its log.
    pub fn starting_after(seq: u64) -> Self {
        Self { next_seq: seq, ..default() }
    }

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

    /// Number of commands applied since start (restored ones included); the sequence number
    /// of the latest.
    pub fn applied(&self) -> u64 {
        self.next_seq
    }

    /// Records a restored command with its own sequence number; later commands follow it.
    fn restore(&mut self, entry: LoggedCommand) {
        self.next_seq = self.next_seq.max(entry.seq);
        if self.recent.len() == Self::CAPACITY {
            self.recent.pop_front();
        }
        self.recent.push_back(entry);
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
            .add_message::<RestoreCommand>()
            .add_message::<FollowCommand>()
            .add_message::<DurableCommand>()
            .add_message::<AppliedCommand>()
            .add_message::<RejectedCommand>()
            .init_resource::<CommandLog>()
            .init_resource::<VenueParams>()
            // The log is written (and synced) right after the commands are applied, before
            // anything announces them: what the audience or a moderator is told was done is
            // on disk.
            .add_systems(
                Update,
                (
                    apply_commands,
                    write_command_log_file,
                    release_durable,
                    advance_param_moves,
                    linger_after_commands,
                    report_rejected_commands,
                )
                    .chain()
                    .in_set(VenueSystems::Apply),
            );
    }
}

/// When the command log is forced to the disk.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum LogSync {
    /// After each frame that applied commands (`fdatasync`), before they are announced: an
    /// acknowledged command survives the machine losing power. Costs one sync per busy frame.
    #[default]
    Frame,
    /// Never: written to the system every frame (it survives the venue being killed, not the
    /// machine stopping).
    Never,
}

/// The command log on disk: one JSON object per line (a [`LoggedCommand`]), appended as
/// commands are applied, flushed to the system every frame and synced by [`LogSync`].
/// `parvis replay` reads it back; `parvis run --resume` carries a show on from it.
#[derive(Resource)]
pub struct CommandLogFile {
    path: String,
    writer: BufWriter<File>,
    failed: bool,
    sync: LogSync,
}

impl CommandLogFile {
    /// Opens `path` for appending (a restarted show continues its log), creating it if needed.
    /// A last line cut short (the venue was killed while writing it) is removed first: it was
    /// never acknowledged, and a line appended to it would spoil both.
    pub fn append_to(path: &Path) -> std::io::Result<Self> {
        let mut file = std::fs::OpenOptions::new().create(true).read(true).append(true).open(path)?;
        let whole = whole_lines_length(&mut file)?;
        let length = file.metadata()?.len();
        if whole < length {
            warn!("{}: removing a last line cut short ({} bytes) before appending", path.display(), length - whole);
            file.set_len(whole)?;
        }
        Ok(Self { path: path.display().to_string(), writer: BufWriter::new(file), failed: false, sync: LogSync::Frame })
    }

    /// Chooses when the log is forced to the disk.
    pub fn syncing(mut self, sync: LogSync) -> Self {
        self.sync = sync;
        self
    }

    fn write_frame(&mut self, entries: &[&LoggedCommand]) -> std::io::Result<()> {
        for entry in entries {
            serde_json::to_writer(&mut self.writer, entry).map_err(std::io::Error::from)?;
            self.writer.write_all(b"\n")?;
        }
        self.writer.flush()?;
        if self.sync == LogSync::Frame && !entries.is_empty() {
            self.writer.get_ref().sync_data()?;
        }
        Ok(())
    }
}

impl Drop for CommandLogFile {
    fn drop(&mut self) {
        // The venue closes: what it wrote reaches the disk.
        let _ = self.writer.flush();
        let _ = self.writer.get_ref().sync_all();
    }
}

/// The length of the file's whole lines: up to and including its last line break.
fn whole_lines_length(file: &mut File) -> std::io::Result<u64> {
    use std::io::{Read, Seek, SeekFrom};
    let length = file.metadata()?.len();
    let mut end = length;
    let mut chunk = [0u8; 4096];
    while end > 0 {
        let start = end.saturating_sub(chunk.len() as u64);
        let part = &mut chunk[..(end - start) as usize];
        file.seek(SeekFrom::Start(start))?;
        file.read_exact(part)?;
        if let Some(at) = part.iter().rposition(|b| *b == b'\n') {
            return Ok(start + at as u64 + 1);
        }
        end = start;
    }
    Ok(0)
}

fn write_command_log_file(mut applied: MessageReader<AppliedCommand>, file: Option<ResMut<CommandLogFile>>) {
    let Some(mut file) = file else {
        applied.clear();
        return;
    };
    let file = &mut *file;
    let entries: Vec<&LoggedCommand> =
        // Restored commands are in the file already.
        applied.read().filter(|a| !a.restored).map(|a| &a.entry).collect();
    match file.write_frame(&entries) {
        Ok(()) => file.failed = false,
        // Keep the show running; say it once per failure spell, not every frame.
        Err(e) if !file.failed => {
            error!("cannot write the command log {}: {e}", file.path);
            file.failed = true;
        }
        Err(_) => {}
    }
}

/// Announces applied commands as [`DurableCommand`]s once the log holds them: at once where
/// the log is this machine's file (written and synced just before), else when the
/// [`DurableGate`] has confirmed their sequence number. Restored and followed commands were
/// acknowledged where they were first applied.
fn release_durable(
    mut applied: MessageReader<AppliedCommand>,
    mut pending: Local<VecDeque<LoggedCommand>>,
    gate: Option<Res<DurableGate>>,
    mut durable: MessageWriter<DurableCommand>,
) {
    for entry in applied.read().filter(|a| !a.restored && !a.followed) {
        pending.push_back(entry.entry.clone());
    }
    let confirmed = gate.map_or(u64::MAX, |g| g.confirmed.load(std::sync::atomic::Ordering::Acquire));
    while pending.front().is_some_and(|e| e.seq <= confirmed) {
        durable.write(DurableCommand(pending.pop_front().expect("just seen")));
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
    mut restored: MessageReader<RestoreCommand>,
    mut followed: MessageReader<FollowCommand>,
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
    // Restored commands first: the show as its log left it, then what is asked now.
    let restored = restored.read().map(|r| (&r.0.origin, &r.0.command, Some(&r.0), false));
    let followed = followed.read().map(|f| (&f.0.origin, &f.0.command, Some(&f.0), true));
    let submitted = submitted.read().map(|s| (&s.origin, &s.command, None, false));
    for (origin, command, logged, follows) in restored.chain(followed).chain(submitted) {
        let now = time.elapsed_secs_f64();
        let scene_now = latest.clone();
        // A parameter's own check names it and its range, which says more than this does.
        let finite = || {
            (matches!(command, VenueCommand::SetParam { .. }) || command.numbers_are_finite())
                .then_some(())
                .ok_or_else(|| CommandError::Invalid("a number is infinite or not a number".into()))
        };
        let result = origin.may_issue(command).and_then(|()| finite()).and_then(|()| match command {
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
            VenueCommand::HideText { .. } | VenueCommand::HideCaption { .. } => Ok(()),
            VenueCommand::Caption { text, .. } => {
                let max = crate::model::command::MAX_CAPTION_CHARS;
                if text.chars().count() > max || text.chars().any(char::is_control) {
                    return Err(CommandError::Invalid(format!(
                        "a caption has at most {max} characters and no control characters"
                    )));
                }
                Ok(())
            }
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
            VenueCommand::OpenWindow { rules, seconds, .. } => {
                if let Some(s) = seconds
                    && !(1.0..=3600.0).contains(s)
                {
                    return Err(CommandError::Invalid(format!("a window stays open 1 to 3600 seconds, not {s}")));
                }
                let scene = scene_now.as_deref().ok_or_else(|| CommandError::Invalid("no venue yet".into()))?;
                crate::model::scene::validate::window_rules(scene, rules).map_err(CommandError::Invalid)
            }
            VenueCommand::CloseWindow { rules } => {
                let scene = scene_now.as_deref().ok_or_else(|| CommandError::Invalid("no venue yet".into()))?;
                crate::model::scene::validate::window_rules(scene, rules).map_err(CommandError::Invalid)
            }
            VenueCommand::Transport { show, action } => {
                let def = find_show(scene_now.as_deref(), show)?;
                match action {
                    TransportAction::Seek { seconds } if !(0.0..=86_400.0).contains(seconds) => {
                        Err(CommandError::Invalid(format!("seek to 0 s up to a day, not {seconds} s")))
                    }
                    // At least half a second: a loop shorter than a frame would fire its cues
                    // and restart the music every frame.
                    TransportAction::Loop { from, to } if !(*from >= 0.0 && to - from >= 0.5) => {
                        Err(CommandError::Invalid(format!(
                            "a loop goes from 0 s or later to at least half a second later, not {from}–{to} s"
                        )))
                    }
                    TransportAction::Jump { cue } => find_cue(def, cue),
                    _ => Ok(()),
                }
            }
            VenueCommand::CueFired { show, cue, planned, actual } => {
                find_cue(find_show(scene_now.as_deref(), show)?, cue)?;
                if *planned < 0.0 || *actual < 0.0 {
                    return Err(CommandError::Invalid("a cue fires at 0 s or later".into()));
                }
                Ok(())
            }
            VenueCommand::Program { action } => {
                let viewpoint = match action {
                    ProgramAction::Cut { viewpoint } => viewpoint,
                    ProgramAction::Move { viewpoint, seconds, .. } => {
                        if !(0.0..=600.0).contains(seconds) {
                            return Err(CommandError::Invalid(format!(
                                "a camera move lasts 0 to 600 seconds, not {seconds}"
                            )));
                        }
                        viewpoint
                    }
                    ProgramAction::Overlay { .. } => return Ok(()),
                };
                let scene = scene_now.as_deref().ok_or_else(|| CommandError::Invalid("no venue yet".into()))?;
                if scene.viewpoints.iter().any(|v| &v.name == viewpoint) {
                    Ok(())
                } else {
                    let names: Vec<&str> = scene.viewpoints.iter().map(|v| v.name.as_str()).collect();
                    Err(CommandError::Invalid(format!(
                        "no viewpoint named {viewpoint:?} in this venue; viewpoints: {}",
                        if names.is_empty() { "(none)".to_owned() } else { names.join(", ") }
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
                let entry = match logged {
                    Some(entry) => {
                        log.restore(entry.clone());
                        entry
                    }
                    None => log.append(origin.clone(), command.clone()),
                };
                debug!("command #{} from {:?}: {}", entry.seq, entry.origin, entry.command.summary());
                applied.write(AppliedCommand {
                    entry: entry.clone(),
                    restored: logged.is_some() && !follows,
                    followed: follows,
                });
            }
            Err(error) => {
                log.refused += 1;
                rejected.write(RejectedCommand { origin: origin.clone(), command: command.clone(), error });
            }
        }
    }
}

/// The scene's show called `name`, or why not.
fn find_show<'a>(scene: Option<&'a SceneFile>, name: &str) -> Result<&'a ShowDef, CommandError> {
    let shows = scene.map(|s| s.shows.as_slice()).unwrap_or_default();
    shows.iter().find(|s| s.name == name).ok_or_else(|| {
        let names: Vec<&str> = shows.iter().map(|s| s.name.as_str()).collect();
        CommandError::Invalid(format!(
            "no show named {name:?} in this venue; shows: {}",
            if names.is_empty() { "(none)".into() } else { names.join(", ") }
        ))
    })
}

/// Whether `show` has a cue `id`.
fn find_cue(show: &ShowDef, id: &str) -> Result<(), CommandError> {
    if show.songs.iter().flat_map(|s| &s.cues).any(|c| c.id == id) {
        Ok(())
    } else {
        Err(CommandError::Invalid(format!("show {:?} has no cue {id:?}", show.name)))
    }
}

/// Moves animating parameters along; touches `StageParams` only while something moves, so
/// bindings are not recomputed every frame.
fn advance_param_moves(time: Res<Time>, mut params: ResMut<VenueParams>, mut rest: ResMut<Rest>) {
    if params.any_animating() {
        params.advance(time.elapsed_secs_f64());
        rest.busy();
    }
}

/// What a command changed settles on screen and reaches the audience before the venue rests;
/// a refusal is answered too.
fn linger_after_commands(
    applied: MessageReader<AppliedCommand>,
    rejected: MessageReader<RejectedCommand>,
    mut rest: ResMut<Rest>,
) {
    if !applied.is_empty() || !rejected.is_empty() {
        rest.linger();
    }
}

fn report_rejected_commands(mut rejected: MessageReader<RejectedCommand>) {
    for r in rejected.read() {
        warn!("refused {} from {:?}: {}", r.command.summary(), r.origin, r.error);
    }
}
