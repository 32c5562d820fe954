//! The scene file format, version 1: plain serde types that curators write in RON.
//!
//! These types are the curator's contract and are documented field by field in
//! `docs/scene-format.md`. They carry no ECS components: `spawn.rs` turns them into entities.

use std::fmt;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// The scene format version this build reads and writes.
pub const SCENE_FORMAT_VERSION: u32 = 1;

/// A whole venue as written by a curator.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SceneFile {
    /// Format version; must equal [`SCENE_FORMAT_VERSION`].
    pub version: u32,
    /// Who and what the venue is, and who made its content.
    pub venue: VenueInfo,
    /// Sky, ambient light and fog.
    #[serde(default)]
    pub environment: EnvironmentDef,
    /// glTF/GLB models placed in the venue.
    #[serde(default)]
    pub assets: Vec<AssetDef>,
    /// Point clouds (LiDAR or photogrammetry scans), streamed by level of detail.
    #[serde(default)]
    pub clouds: Vec<CloudDef>,
    /// Scanned meshes (photogrammetry glTF/GLB), drawn with levels of detail.
    #[serde(default)]
    pub meshes: Vec<MeshScanDef>,
    /// Simple shapes used to block out a venue.
    #[serde(default)]
    pub primitives: Vec<PrimitiveDef>,
    /// Lights.
    #[serde(default)]
    pub lights: Vec<LightDef>,
    /// Named camera positions; the first one is where a visit starts unless `spawn` says otherwise.
    #[serde(default)]
    pub viewpoints: Vec<ViewpointDef>,
    /// Name of the viewpoint a visit starts at (defaults to the first viewpoint).
    #[serde(default)]
    pub spawn: Option<String>,
    /// Name of the viewpoint a headset visitor starts at, standing on the floor below it
    /// (defaults to `spawn`: a desktop overview in the air suits a headset badly).
    #[serde(default)]
    pub xr_spawn: Option<String>,
    /// Named, typed stage parameters that commands change at run time.
    #[serde(default)]
    pub params: Vec<StageParamDef>,
    /// What the live audience's messages may change.
    #[serde(default)]
    pub rules: Vec<AudienceRuleDef>,
    /// Polls a moderator or curator can open during the show.
    #[serde(default)]
    pub polls: Vec<PollDef>,
    /// Physical effects (petals, confetti) that rules can release.
    #[serde(default)]
    pub effects: Vec<EffectDef>,
    /// Points of interest a visitor can open: a title, a text and an audio description per
    /// language.
    #[serde(default)]
    pub hotspots: Vec<HotspotDef>,
    /// Guided tours: ordered stops with narration.
    #[serde(default)]
    pub tours: Vec<TourDef>,
    /// Shows: songs on one clock, with the music they play and the cues they fire.
    // Left out when empty, so that a venue without shows writes (and hashes, see
    // `command::state_hash`) as it did before shows existed.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub shows: Vec<ShowDef>,
    /// Performers: humanoid avatars on the stage, driven by motion capture (VMC) or by a
    /// recorded performance.
    // Left out when empty, as `shows`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub performers: Vec<PerformerDef>,
}

impl SceneFile {
    /// The venue's stage without its content: its environment, lights and viewpoints, with no
    /// models, shapes, parameters, audience rules, polls, effects, hotspots or tours. A stage to
    /// show a scan on, in tests and benchmarks.
    pub fn stage_only(mut self) -> Self {
        self.assets.clear();
        self.primitives.clear();
        self.params.clear();
        self.rules.clear();
        self.polls.clear();
        self.effects.clear();
        self.hotspots.clear();
        self.tours.clear();
        self.shows.clear();
        self.performers.clear();
        self
    }
}

/// A performer: a humanoid avatar (glTF/GLB; VRM files are glTF) placed on the stage, whose
/// bones follow a motion-capture source.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PerformerDef {
    /// Unique name, as shown to the operator and kept in recordings.
    pub name: String,
    /// The avatar, relative to the assets root: a `.glb` or `.gltf` (a VRM file named `.glb`).
    pub avatar: String,
    /// Placement of the avatar's root on the stage.
    #[serde(default)]
    pub transform: TransformDef,
    /// Credit and licence of the avatar.
    pub credit: CreditDef,
    /// What drives it.
    #[serde(default)]
    pub source: PerformerSource,
    /// Humanoid bone (Unity's `HumanBodyBones` name) to the avatar's node name, for avatars
    /// whose nodes are named otherwise and that carry no VRM humanoid map.
    #[serde(default, skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub bones: std::collections::BTreeMap<String, String>,
    /// Seconds the last pose is held when the capture stops, before easing to the idle pose.
    #[serde(default = "default_hold")]
    pub hold: f32,
    /// Seconds the ease to the idle pose takes.
    #[serde(default = "default_ease")]
    pub ease: f32,
    /// Smoothing: the one-euro filter's cut-off at rest in hertz (lower is smoother) and how
    /// fast it rises with speed.
    #[serde(default = "default_smoothing")]
    pub smoothing: (f32, f32),
}

fn default_hold() -> f32 {
    2.0
}

fn default_ease() -> f32 {
    1.5
}

fn default_smoothing() -> (f32, f32) {
    (4.0, 0.5)
}

/// What drives a performer.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub enum PerformerSource {
    /// Live capture over the VMC protocol (OSC on UDP) on `port`, from `from` if given (several
    /// performers can share a port, each from its own sender), else from the first allowed
    /// sender (`parvis run --vmc-allow`).
    Vmc {
        /// UDP port; 0 takes a free one (said at start).
        port: u16,
        /// The sender's IP address.
        #[serde(default)]
        from: Option<String>,
    },
    /// A recorded performance (`parvis run --record-performers`), relative to the assets root,
    /// played on the show's clock: a rehearsal without the performer.
    Recording {
        /// The `.poses` file.
        path: String,
    },
    /// Stands in its idle pose.
    #[default]
    Idle,
}

/// A show: songs played one after the other on one clock (a set list), each with its music and
/// its cue list. The clock is the audio clock: cues fire when the music reaches them.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ShowDef {
    /// Unique name, as given to `parvis run --show` and the transport.
    pub name: String,
    /// Timecode frame rate: 24, 25, 29.97 (drop-frame) or 30 (default 25).
    #[serde(default = "default_show_fps")]
    pub fps: f64,
    /// The songs, in the order they play.
    pub songs: Vec<SongDef>,
}

fn default_show_fps() -> f64 {
    25.0
}

/// One song of a show's set list.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SongDef {
    /// Name, shown to the stage manager.
    pub name: String,
    /// Audio files (relative to the assets root) that start with the song, played together.
    #[serde(default)]
    pub tracks: Vec<String>,
    /// Length in seconds; defaults to the longest track. The next song starts after it. Only
    /// the last song may have neither (it then runs until the show is stopped).
    #[serde(default)]
    pub length: Option<f64>,
    /// The timecode at the song's start (`"01:00:00:00"`), as the desk's timecode for this
    /// song: cues at a timecode count from it, and timecode chase finds the song by it.
    #[serde(default)]
    pub timecode: Option<String>,
    /// Tempo map for cues at bars and beats: changes at given bars (the first at bar 1).
    #[serde(default)]
    pub tempo: Vec<TempoDef>,
    /// The song's cues, in the order they fire.
    #[serde(default)]
    pub cues: Vec<CueDef>,
    /// Surtitles per language: a SubRip (`.srt`) or WebVTT (`.vtt`) file under the assets
    /// root, timed from the song's start.
    #[serde(default)]
    pub surtitles: Localized,
}

/// A tempo from a bar on.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TempoDef {
    /// The bar it starts at (1 is the song's first bar).
    pub bar: u32,
    /// Beats per minute.
    pub bpm: f64,
    /// Beats in a bar (default 4).
    #[serde(default = "default_beats_per_bar")]
    pub beats_per_bar: u32,
}

fn default_beats_per_bar() -> u32 {
    4
}

/// A cue: a point in the show that fires venue commands.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CueDef {
    /// Id, unique in the show (`"12"`, `"12.5"`, `"chorus"`), as OSC and the transport name it.
    pub id: String,
    /// What it is, for the stage manager.
    #[serde(default)]
    pub label: String,
    /// When it fires.
    pub at: CueAt,
    /// Fire the next cue this many seconds after this one (it must be `Manual`).
    #[serde(default)]
    pub follow: Option<f64>,
    /// What it does, in order.
    #[serde(default)]
    pub actions: Vec<CueAction>,
}

/// When a cue fires, counted from its song's start.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum CueAt {
    /// When the stage manager says GO (or the previous cue's `follow` runs out).
    Manual,
    /// Seconds from the song's start.
    Seconds(f64),
    /// A bar and beat of the song's tempo map (bar 1 beat 1 is its start; beats may be
    /// fractional).
    Bar(u32, f64),
    /// A timecode `HH:MM:SS:FF` (`;` before the frames for drop-frame), on the song's
    /// `timecode`.
    Timecode(String),
}

/// What a cue does: a venue command, written as a curator would.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub enum CueAction {
    /// Set a stage parameter (the value as on the command line: `#ff0000`, `0.5`, `night`).
    Set {
        /// The parameter.
        param: String,
        /// Its new value.
        value: String,
    },
    /// Move a float or colour parameter to a value over time.
    Animate {
        /// The parameter.
        param: String,
        /// The value at the end of the move.
        to: String,
        /// Seconds.
        seconds: f32,
        /// Shape of the move.
        #[serde(default)]
        easing: Easing,
    },
    /// Release an effect.
    Spawn {
        /// The effect.
        effect: String,
        /// Seed for its pieces (the same seed gives the same pieces).
        #[serde(default)]
        seed: u64,
    },
    /// Open a hotspot's panel (`None` closes it).
    Hotspot(Option<String>),
    /// Start a tour (`None` stops it).
    Tour(Option<String>),
    /// Open a poll.
    OpenPoll(String),
    /// Close a poll and announce its result.
    ClosePoll(String),
    /// Hide every audience text shown in the venue.
    HideTexts,
    /// Open audience rules (by name or `group`) for a span: they fire only while a window is
    /// open, and the audience page counts it down.
    OpenWindow {
        /// Rule names or groups.
        rules: Vec<String>,
        /// Seconds it stays open; `None` until a cue or a moderator closes it.
        #[serde(default)]
        seconds: Option<f32>,
        /// What the audience reads ("Petals for the chorus!").
        #[serde(default)]
        label: String,
    },
    /// Close audience rules' windows (by name or group).
    CloseWindow(Vec<String>),
    /// Cut the program output (the broadcast's camera) to a viewpoint.
    Cut(String),
    /// Move the program camera smoothly to a viewpoint.
    MoveCamera {
        /// The viewpoint.
        viewpoint: String,
        /// Seconds (0 to 600).
        seconds: f32,
        /// Shape of the move.
        #[serde(default)]
        easing: Easing,
    },
    /// Show or hide an overlay of the program output (`Credits`, `Poll`, `Chat`, `Stamp`,
    /// `Surtitles`).
    Overlay {
        /// Which.
        overlay: Overlay,
        /// Shown or hidden.
        visible: bool,
    },
}

/// A text in several languages, keyed by language tag: `{"en": "The well", "fr": "Le puits"}`.
/// Which one a visitor gets follows the venue's `languages` (see `visit::lang`).
pub type Localized = std::collections::BTreeMap<String, String>;

/// A point of interest. Desktop visitors click it; headset visitors point at it and pull the
/// trigger. Its panel shows the title and text in the visitor's language, and its audio
/// description plays from where it stands.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HotspotDef {
    /// Unique name.
    pub name: String,
    /// Where it is, metres.
    pub position: [f32; 3],
    /// Radius of the sphere that picks it, metres.
    #[serde(default = "default_hotspot_radius")]
    pub radius: f32,
    /// Title per language.
    pub title: Localized,
    /// Text per language.
    #[serde(default)]
    pub text: Localized,
    /// Audio description per language: a sound file relative to the assets root.
    #[serde(default)]
    pub audio: Localized,
}

fn default_hotspot_radius() -> f32 {
    0.5
}

/// A guided tour.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TourDef {
    /// Unique name, as given to `parvis run --tour`.
    pub name: String,
    /// Title per language.
    #[serde(default)]
    pub title: Localized,
    /// The stops, in order.
    pub stops: Vec<TourStopDef>,
}

/// One stop of a tour: the camera travels to a viewpoint, then the narration plays.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TourStopDef {
    /// The viewpoint to go to.
    pub viewpoint: String,
    /// A hotspot whose panel opens at the stop.
    #[serde(default)]
    pub hotspot: Option<String>,
    /// Narration per language, shown as subtitles.
    #[serde(default)]
    pub narration: Localized,
    /// Narration audio per language (sound files relative to the assets root).
    #[serde(default)]
    pub audio: Localized,
    /// Seconds at the stop; longer if the narration's audio is longer.
    #[serde(default = "default_stop_seconds")]
    pub seconds: f32,
    /// Seconds of travel from the previous stop (or from where the visitor was).
    #[serde(default = "default_travel_seconds")]
    pub travel: f32,
}

fn default_stop_seconds() -> f32 {
    8.0
}
fn default_travel_seconds() -> f32 {
    3.0
}

/// An audience rule: when a chat line, reaction, poll or the crowd's energy matches the trigger,
/// the action runs (by default: a stage parameter is set).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AudienceRuleDef {
    /// Unique name, shown with the effect it causes.
    pub name: String,
    /// What in the audience's messages fires the rule.
    pub trigger: TriggerDef,
    /// What the rule does (default `Set`).
    #[serde(default)]
    pub action: ActionDef,
    /// The stage parameter that `Set` and `Animate` change.
    #[serde(default)]
    pub param: String,
    /// A fixed value to set (as on the command line: `#ff0000`, `0.5`, `night`, `true`).
    /// Required for keyword, reaction and crowd-energy triggers; for commands, the audience's
    /// word is used when this is absent; for poll outcomes, the winning option's id.
    #[serde(default)]
    pub value: Option<String>,
    /// Words the audience may type after a command (or winning poll options), and the value
    /// each stands for (e.g. `{"rouge": "#ff0000"}`); colour parameters also know common colour names.
    #[serde(default)]
    pub values: std::collections::BTreeMap<String, String>,
    /// Seconds before the rule can fire again, for anyone (default 0).
    #[serde(default)]
    pub cooldown: f32,
    /// Seconds before the same member can fire it again (default 0).
    #[serde(default)]
    pub user_cooldown: f32,
    /// Audience size from which the cooldowns grow: with 0 (default) they are fixed; otherwise
    /// they are multiplied by `audience / audience_scale` when that is above 1. Moderators and
    /// the streamer are exempt from cooldowns.
    #[serde(default)]
    pub audience_scale: u32,
    /// Rules naming the same group never run their effects at the same time (default: none).
    #[serde(default)]
    pub mutex: String,
    /// While the group is busy, how many firings of this rule may wait their turn (default 0:
    /// refused with the time to wait).
    #[serde(default)]
    pub queue: u32,
    /// Whether one message fires the rule (`Direct`, default) or the audience votes over a window.
    #[serde(default)]
    pub mode: RuleMode,
    /// Only members with one of these roles on their chat platform may fire the rule, e.g.
    /// `only: [Subscriber, Vip]` (default: everyone). Moderators and the streamer always may.
    #[serde(default)]
    pub only: Vec<AudienceRole>,
    /// In democracy mode, bits cheered with a vote add weight: one more vote per this many
    /// bits, up to 100 votes in all (default 0: every vote weighs 1).
    #[serde(default)]
    pub bits_per_vote: u32,
    /// Closed until a window opens it: a cue or a moderator opens the rule (or its `group`)
    /// for a span — "petals allowed during the chorus" — announced on the audience page with a
    /// countdown (default false: always open).
    // Left out when unset, so that a scene without windows writes (and hashes) as before.
    #[serde(default, skip_serializing_if = "is_false")]
    pub closed: bool,
    /// A name shared by rules that windows open and close together (default: none).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub group: String,
}

fn is_false(b: &bool) -> bool {
    !*b
}

/// A role a chat platform gives a member (Twitch badges); the audience page gives none.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum AudienceRole {
    /// A paying subscriber of the channel.
    Subscriber,
    /// A VIP of the channel.
    Vip,
    /// A moderator of the channel.
    Moderator,
    /// The channel's owner.
    Broadcaster,
}

impl AudienceRole {
    /// The role's name in messages.
    pub fn label(self) -> &'static str {
        match self {
            AudienceRole::Subscriber => "subscribers",
            AudienceRole::Vip => "VIPs",
            AudienceRole::Moderator => "moderators",
            AudienceRole::Broadcaster => "the streamer",
        }
    }

    /// Whether a member with these roles has this one.
    pub fn held_by(self, roles: crate::roles::ChatRoles) -> bool {
        match self {
            AudienceRole::Subscriber => roles.subscriber,
            AudienceRole::Vip => roles.vip,
            AudienceRole::Moderator => roles.moderator,
            AudienceRole::Broadcaster => roles.broadcaster,
        }
    }
}

/// What fires an audience rule.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum TriggerDef {
    /// A chat line `!name` or `!name word` (the name without `!`, case-insensitive).
    Command(String),
    /// A chat line containing this word (case- and accent-insensitive, whole words).
    Keyword(String),
    /// A reaction with this emoji.
    Reaction(String),
    /// The named poll closed with a winner (the winning option's id picks the value).
    PollOutcome(String),
    /// The crowd's energy (chat lines and reactions per second, averaged over `window`
    /// seconds) rose above `above`. Fires once per rise; re-arms when it falls below 80 %.
    CrowdEnergy {
        /// Messages per second.
        above: f32,
        /// Averaging window, seconds.
        window: f32,
        /// With overflow shards: `Each` instance measures its own crowd (the default), or the
        /// main stage measures the `Sum` of every instance's and its effect plays everywhere.
        #[serde(default, skip_serializing_if = "AcrossShards::is_each")]
        across_shards: AcrossShards,
    },
}

/// How a count is taken when a show runs on overflow shards (`parvis follow --shard`), each
/// instance with an audience of its own.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum AcrossShards {
    /// Each instance counts its own audience and acts on its own result: a poll can end
    /// differently on each, and each crowd's energy moves its own stage.
    #[default]
    Each,
    /// The main stage adds every instance's counts up (votes, members, crowd energy) and its
    /// one result plays on every instance.
    Sum,
}

impl AcrossShards {
    /// The default, which scene files leave out.
    pub fn is_each(&self) -> bool {
        *self == Self::Each
    }
}

/// What an audience rule does when it fires.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub enum ActionDef {
    /// Set `param` to the value at once.
    #[default]
    Set,
    /// Move `param` (a float or colour) to the value over `seconds`.
    Animate {
        /// Duration of the move.
        seconds: f32,
        /// Shape of the move (default `Linear`).
        #[serde(default)]
        easing: Easing,
    },
    /// Release the named effect from `effects`.
    Spawn(String),
    /// Show the member's text in the venue, as a floating panel (command: the words after
    /// `!name`; keyword: the whole line).
    Show {
        /// How long the panel stays.
        #[serde(default = "default_show_seconds")]
        seconds: f32,
        /// Whether a moderator must approve each text before it appears.
        #[serde(default)]
        approval: bool,
        /// Where the panel floats, in metres.
        #[serde(default = "default_show_at")]
        at: [f32; 3],
    },
}

fn default_show_seconds() -> f32 {
    8.0
}

fn default_show_at() -> [f32; 3] {
    [0.0, 3.0, 0.0]
}

/// How an animated value moves.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub enum Easing {
    /// At constant speed.
    #[default]
    Linear,
    /// Slow at both ends (smoothstep).
    InOut,
}

impl Easing {
    /// Progress along the move for a time fraction `t` in 0..=1.
    pub fn apply(self, t: f32) -> f32 {
        let t = t.clamp(0.0, 1.0);
        match self {
            Easing::Linear => t,
            Easing::InOut => t * t * (3.0 - 2.0 * t),
        }
    }
}

/// Whether a rule fires on one message or on the audience's vote.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub enum RuleMode {
    /// Each message fires the rule (cooldowns permitting).
    #[default]
    Direct,
    /// Democracy: the first `!command` opens a vote of `window` seconds in which each member's
    /// last `!command word` counts once; the most-voted word wins if the quorum is met.
    Democracy {
        /// Voting time, seconds.
        window: f32,
        /// Fewest votes for a result (default 1).
        #[serde(default = "one")]
        min_votes: u32,
        /// Smallest share of the connected audience that must vote, 0 to 1 (default 0).
        #[serde(default)]
        min_share: f32,
        /// With overflow shards: `Each` instance runs its own vote (the default), or the main
        /// stage sums every instance's votes by word and its winner plays everywhere (the first
        /// `!word` on any instance opens the vote on all of them).
        #[serde(default, skip_serializing_if = "AcrossShards::is_each")]
        across_shards: AcrossShards,
    },
}

fn one() -> u32 {
    1
}

/// A poll the audience votes in.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PollDef {
    /// Unique name, used to open it and by `PollOutcome` rules.
    pub name: String,
    /// The question shown.
    pub question: String,
    /// Choices, 2 to 8.
    pub options: Vec<PollOptionDef>,
    /// Seconds the poll stays open.
    pub seconds: f32,
    /// Fewest votes for a result (default 1).
    #[serde(default = "one")]
    pub min_votes: u32,
    /// Smallest share of the connected audience that must vote, 0 to 1 (default 0).
    #[serde(default)]
    pub min_share: f32,
    /// Bits cheered with a vote add weight: one more vote per this many bits, up to 100 votes
    /// in all (default 0: every vote weighs 1).
    #[serde(default)]
    pub bits_per_vote: u32,
    /// With overflow shards: `Each` instance runs the poll for its own audience (the default),
    /// or the main stage counts the `Sum` of every instance's votes and its winner plays
    /// everywhere.
    #[serde(default, skip_serializing_if = "AcrossShards::is_each")]
    pub across_shards: AcrossShards,
}

/// A choice in a poll.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PollOptionDef {
    /// Short id sent in votes (letters, digits, `_`, `-`).
    pub id: String,
    /// Text shown.
    pub label: String,
}

/// A burst of small physical objects released into the venue.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EffectDef {
    /// Unique name, used by `Spawn` actions.
    pub name: String,
    /// Shape of each piece.
    pub shape: PieceShape,
    /// Pieces per burst, 1 to 500.
    pub count: u32,
    /// Colours the pieces are drawn from.
    pub colours: Vec<Colour>,
    /// Size of a piece, metres.
    pub size: f32,
    /// Centre of the release volume, metres.
    pub origin: [f32; 3],
    /// Half-extent of the release volume along x, y, z, metres.
    #[serde(default)]
    pub spread: [f32; 3],
    /// Largest initial speed, metres per second, in a random direction.
    #[serde(default)]
    pub speed: f32,
    /// Seconds before the pieces vanish.
    pub lifetime: f32,
    /// Air drag: 0 falls like a stone, 5 floats down like a petal (default 1).
    #[serde(default = "default_drag")]
    pub drag: f32,
}

fn default_drag() -> f32 {
    1.0
}

/// Shape of an effect's pieces.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum PieceShape {
    /// A thin, slightly curved leaf: a flat box.
    Petal,
    /// A thin paper rectangle.
    Confetti,
    /// A small cube.
    Cube,
    /// A small ball.
    Sphere,
}

/// Venue metadata.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VenueInfo {
    /// Display title.
    pub title: String,
    /// Where the real site is.
    #[serde(default)]
    pub site: String,
    /// A short description for visitors.
    #[serde(default)]
    pub description: String,
    /// Languages the venue's texts are available in (BCP 47 tags), in fallback order.
    #[serde(default)]
    pub languages: Vec<String>,
    /// Credits for the venue as a whole.
    #[serde(default)]
    pub credits: Vec<CreditDef>,
}

/// Who made a piece of content and under which licence it may be used.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreditDef {
    /// Author, studio or institution.
    pub author: String,
    /// Licence, preferably an SPDX identifier such as `CC-BY-4.0`.
    pub licence: String,
    /// Where the original comes from (URL or archive reference).
    #[serde(default)]
    pub source: String,
    /// What this credit covers, for venue-wide credits.
    #[serde(default)]
    pub work: String,
}

/// Position, orientation and size of a placed thing.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TransformDef {
    /// Position in metres `(x, y, z)`; `y` is up.
    #[serde(default)]
    pub translation: [f32; 3],
    /// Rotation in degrees about X, Y and Z, applied as yaw (Y), then pitch (X), then roll (Z).
    #[serde(default)]
    pub rotation: [f32; 3],
    /// Scale factors `(x, y, z)`.
    #[serde(default = "one3")]
    pub scale: [f32; 3],
    /// If set, the thing is turned so that its forward (-Z) axis points at this point.
    #[serde(default)]
    pub look_at: Option<[f32; 3]>,
}

fn one3() -> [f32; 3] {
    [1.0, 1.0, 1.0]
}

impl Default for TransformDef {
    fn default() -> Self {
        Self { translation: [0.0; 3], rotation: [0.0; 3], scale: one3(), look_at: None }
    }
}

/// A glTF/GLB model placed in the venue.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AssetDef {
    /// Unique name, used by bindings.
    pub name: String,
    /// Path relative to the assets root, e.g. `models/fountain.gltf`.
    pub path: String,
    /// Which scene of the glTF file to show (default 0).
    #[serde(default)]
    pub scene: usize,
    /// Placement.
    #[serde(default)]
    pub transform: TransformDef,
    /// Credit and licence of the model; required, cultural content must be credited.
    pub credit: CreditDef,
}

/// A point cloud placed in the venue: a scan imported with `parvis import` (or imported when
/// the venue loads), streamed in and out by level of detail within its budgets.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CloudDef {
    /// Unique name.
    pub name: String,
    /// A `.ply`, `.las` or `.laz` scan, or a folder `parvis import` wrote, relative to the
    /// assets root. A scan is imported into `.parvis-cache` next to it on first use.
    pub path: String,
    /// Placement of the scan's own coordinates (relative to its georeferenced origin).
    /// A Z-up scan needs `rotation: (-90, 0, 0)`.
    #[serde(default)]
    pub transform: TransformDef,
    /// What the points' colour shows.
    #[serde(default)]
    pub colouring: CloudColouring,
    /// Smallest point size on screen, in pixels; points grow to close the gaps between them.
    #[serde(default = "default_point_size")]
    pub point_size: f32,
    /// Most points drawn at once.
    #[serde(default = "default_point_budget")]
    pub point_budget: u64,
    /// Most memory the cloud's loaded points may take, in MiB (drawn or kept for reuse).
    #[serde(default = "default_cloud_memory")]
    pub memory_budget_mb: u32,
    /// Finer levels load while points are more than this many pixels apart.
    #[serde(default = "default_max_error")]
    pub max_error_px: f32,
    /// Eye-dome lighting: shades by depth discontinuities, which shows the shape of a
    /// cloud that has no normals.
    #[serde(default = "yes")]
    pub eye_dome_lighting: bool,
    /// Credit and licence of the scan; required, cultural content must be credited.
    pub credit: CreditDef,
}

fn default_point_size() -> f32 {
    2.0
}
fn default_point_budget() -> u64 {
    3_000_000
}
fn default_cloud_memory() -> u32 {
    512
}
fn default_max_error() -> f32 {
    2.0
}
/// A scanned mesh placed in the venue: a glTF/GLB scan that `parvis import` (or the venue, on
/// first use) cut into chunks with a chain of simplified levels each; every frame each chunk
/// shows the coarsest level whose error is invisible from where the visitor stands.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MeshScanDef {
    /// Unique name.
    pub name: String,
    /// A `.glb` or `.gltf` scan, or a folder `parvis import` wrote, relative to the assets root.
    pub path: String,
    /// Placement.
    #[serde(default)]
    pub transform: TransformDef,
    /// A coarser level shows once its geometric error covers at most this many pixels.
    #[serde(default = "default_mesh_error")]
    pub max_error_px: f32,
    /// Draws only the front of each surface, even where the file's material asks for both
    /// sides: a closed scan exported `doubleSided` (photogrammetry tools often do that) is then
    /// cheaper to draw, since back faces are culled (about a quarter of the frame on lavapipe).
    #[serde(default)]
    pub one_sided: bool,
    /// Credit and licence of the scan; required.
    pub credit: CreditDef,
}

fn default_mesh_error() -> f32 {
    1.0
}

/// What a point cloud's colours show.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum CloudColouring {
    /// The scan's own colours (grey where it has none).
    #[default]
    Rgb,
    /// The laser return's intensity, as grey.
    Intensity,
    /// The ASPRS class (ground, vegetation, building, water …) in a fixed palette.
    Classification,
    /// Height, as a colour ramp from the cloud's lowest to highest point.
    Elevation,
}

/// A simple shape with a material.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PrimitiveDef {
    /// Unique name; with `repeat`, copies are named `name[0]`, `name[1]`, …
    pub name: String,
    /// The shape and its dimensions in metres.
    pub shape: ShapeDef,
    /// Surface appearance.
    #[serde(default)]
    pub material: MaterialDef,
    /// Placement of the first copy.
    #[serde(default)]
    pub transform: TransformDef,
    /// Place several copies in a row.
    #[serde(default)]
    pub repeat: Option<RepeatDef>,
    /// Whether the shape casts shadows (default true).
    #[serde(default = "yes")]
    pub casts_shadows: bool,
    /// Whether the shape is shown when the venue loads (default true).
    #[serde(default = "yes")]
    pub visible: bool,
    /// Whether a headset visitor may teleport onto it. Unset: its faces that point up (no
    /// steeper than the teleport's slope limit) are walkable. `false` for a roof, a balustrade
    /// or an altar; `true` adds nothing beyond the slope rule, which always applies.
    #[serde(default)]
    pub walkable: Option<bool>,
}

fn yes() -> bool {
    true
}

/// Most copies a `repeat` may make.
pub const MAX_REPEAT: u32 = 1000;

impl PrimitiveDef {
    /// The names the primitive's copies are known by, in order: its own name, or `name[0]`,
    /// `name[1]`, … for each copy of a `repeat` (at most [`MAX_REPEAT`]). Validation checks
    /// bindings against these names and spawning gives them to the entities, so both agree.
    pub fn copy_names(&self) -> impl Iterator<Item = String> + '_ {
        let copies = self.repeat.map_or(1, |r| r.count.min(MAX_REPEAT));
        (0..copies).map(move |i| if self.repeat.is_some() { format!("{}[{i}]", self.name) } else { self.name.clone() })
    }
}

/// Whether a binding's target names one copy of a repeated primitive (`name[i]`) rather than
/// all of them: such a copy gets a material of its own.
pub fn names_one_copy(target: &str) -> bool {
    target.ends_with(']')
}

/// Copies of a primitive in a row.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RepeatDef {
    /// Number of copies (1 to 1000).
    pub count: u32,
    /// Offset in metres from one copy to the next, in the venue's axes.
    pub step: [f32; 3],
}

/// Shapes for blocking out a venue. Dimensions are in metres.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub enum ShapeDef {
    /// A box centred on its origin.
    Box {
        /// Width, height and depth.
        size: [f32; 3],
    },
    /// A flat rectangle facing up (+Y).
    Plane {
        /// Width (X) and depth (Z).
        size: [f32; 2],
    },
    /// A sphere.
    Sphere {
        /// Radius.
        radius: f32,
    },
    /// An upright cylinder centred on its origin.
    Cylinder {
        /// Radius.
        radius: f32,
        /// Height.
        height: f32,
    },
    /// An upright cone, tip up, centred on its origin.
    Cone {
        /// Base radius.
        radius: f32,
        /// Height.
        height: f32,
    },
    /// A wall pierced by a round-headed arch, standing on its origin and facing +Z.
    Arch {
        /// Outer width.
        width: f32,
        /// Outer height.
        height: f32,
        /// Thickness of the wall.
        depth: f32,
        /// Width of the opening; the arch head is a half circle of this diameter.
        opening: f32,
        /// Height at which the half circle starts.
        spring: f32,
    },
}

/// Surface appearance of a primitive (physically based).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MaterialDef {
    /// Base colour.
    #[serde(default = "white")]
    pub colour: Colour,
    /// 0 = mirror-smooth, 1 = fully rough (default 0.8).
    #[serde(default = "default_roughness")]
    pub roughness: f32,
    /// 0 = dielectric, 1 = metal (default 0).
    #[serde(default)]
    pub metallic: f32,
    /// Light the surface emits itself (default black: none).
    #[serde(default = "black")]
    pub emissive: Colour,
    /// Multiplier of `emissive`, in candela per square metre (default 1000).
    #[serde(default = "default_emissive_strength")]
    pub emissive_strength: f32,
    /// Ignore lighting and show the base colour as is.
    #[serde(default)]
    pub unlit: bool,
}

fn white() -> Colour {
    Colour::rgb(1.0, 1.0, 1.0)
}
fn black() -> Colour {
    Colour::rgb(0.0, 0.0, 0.0)
}
fn default_roughness() -> f32 {
    0.8
}
fn default_emissive_strength() -> f32 {
    1000.0
}

impl Default for MaterialDef {
    fn default() -> Self {
        Self {
            colour: white(),
            roughness: default_roughness(),
            metallic: 0.0,
            emissive: black(),
            emissive_strength: default_emissive_strength(),
            unlit: false,
        }
    }
}

/// A light.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LightDef {
    /// Unique name, used by bindings.
    pub name: String,
    /// Kind of light and its strength.
    pub kind: LightKind,
    /// Colour of the light (default white).
    #[serde(default = "white")]
    pub colour: Colour,
    /// Whether the light casts shadows (default false; shadows cost frame time).
    #[serde(default)]
    pub shadows: bool,
    /// Placement; directional and spot lights shine along their forward (-Z) axis, see `look_at`.
    #[serde(default)]
    pub transform: TransformDef,
}

/// Kinds of light, with photometric units.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub enum LightKind {
    /// Sun-like light from one direction.
    Directional {
        /// Illuminance in lux (full daylight ≈ 10000–100000).
        illuminance: f32,
    },
    /// A bulb shining in all directions.
    Point {
        /// Luminous power in lumens.
        intensity: f32,
        /// Distance in metres beyond which the light has no effect.
        range: f32,
    },
    /// A spotlight.
    Spot {
        /// Luminous power in lumens.
        intensity: f32,
        /// Distance in metres beyond which the light has no effect.
        range: f32,
        /// Angle in degrees from the axis where the light starts to fade.
        inner_angle: f32,
        /// Angle in degrees from the axis where the light ends (at most 89).
        outer_angle: f32,
    },
}

/// Sky, ambient light and fog.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EnvironmentDef {
    /// Starting mood: sets sky, ambient light, fog colour and sun strength.
    #[serde(default)]
    pub preset: EnvironmentPreset,
    /// Overrides the preset's sky colour.
    #[serde(default)]
    pub sky: Option<Colour>,
    /// Overrides the preset's ambient light colour.
    #[serde(default)]
    pub ambient_colour: Option<Colour>,
    /// Overrides the preset's ambient brightness (cd/m²).
    #[serde(default)]
    pub ambient_brightness: Option<f32>,
    /// Overrides the preset's fog colour.
    #[serde(default)]
    pub fog_colour: Option<Colour>,
    /// Exponential fog density per metre; 0 disables fog (default 0).
    #[serde(default)]
    pub fog_density: f32,
}

impl Default for EnvironmentDef {
    fn default() -> Self {
        Self {
            preset: EnvironmentPreset::Day,
            sky: None,
            ambient_colour: None,
            ambient_brightness: None,
            fog_colour: None,
            fog_density: 0.0,
        }
    }
}

/// Built-in environment moods.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
pub enum EnvironmentPreset {
    /// Clear midday.
    #[default]
    Day,
    /// Grey, diffuse light.
    Overcast,
    /// Warm low sun.
    Dusk,
    /// Dark blue night; the venue's own lights carry the scene.
    Night,
}

impl EnvironmentPreset {
    /// Every preset, in documentation order.
    pub const ALL: [EnvironmentPreset; 4] = [Self::Day, Self::Overcast, Self::Dusk, Self::Night];

    /// The name used in scene files and in enum stage parameters (`day`, `overcast`, …).
    pub fn name(self) -> &'static str {
        match self {
            Self::Day => "day",
            Self::Overcast => "overcast",
            Self::Dusk => "dusk",
            Self::Night => "night",
        }
    }

    /// Looks a preset up by its lower-case name.
    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|p| p.name() == name)
    }
}

/// A named camera position.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ViewpointDef {
    /// Unique name.
    pub name: String,
    /// Eye position in metres.
    pub position: [f32; 3],
    /// Point looked at.
    pub look_at: [f32; 3],
    /// Vertical field of view in degrees (default 60).
    #[serde(default = "default_fov")]
    pub fov: f32,
}

fn default_fov() -> f32 {
    60.0
}

/// A named, typed value that commands may change at run time, bound to venue properties.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StageParamDef {
    /// Unique name, used by commands (`SetParam`) and on the command line (`--set name=value`).
    pub name: String,
    /// Type, default and allowed values.
    pub kind: ParamKind,
    /// What the value drives.
    #[serde(default)]
    pub bind: Vec<BindingDef>,
    /// Human-readable label for control panels.
    #[serde(default)]
    pub label: String,
}

/// Type of a stage parameter with its default value and constraints.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum ParamKind {
    /// A colour.
    Colour {
        /// Value at load.
        default: Colour,
    },
    /// A number within a closed range.
    Float {
        /// Value at load.
        default: f32,
        /// Smallest allowed value.
        min: f32,
        /// Largest allowed value.
        max: f32,
    },
    /// One of a list of names.
    Enum {
        /// Value at load; one of `options`.
        default: String,
        /// Allowed values.
        options: Vec<String>,
    },
    /// On or off.
    Bool {
        /// Value at load.
        default: bool,
    },
}

/// A venue property driven by a stage parameter. Entity names refer to primitives, assets or lights.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum BindingDef {
    /// Colour of the named light (colour parameter).
    LightColour(String),
    /// Intensity of the named light: lumens for point and spot lights, lux for directional ones (float parameter).
    LightIntensity(String),
    /// Emissive colour of the named primitive, times its `emissive_strength` (colour parameter).
    Emissive(String),
    /// Base colour of the named primitive (colour parameter).
    BaseColour(String),
    /// Whether the named entity is shown (bool parameter).
    Visible(String),
    /// Shows the named entity only while the enum parameter equals the given option.
    VisibleWhen(String, String),
    /// Sky colour (colour parameter).
    SkyColour,
    /// Fog colour (colour parameter).
    FogColour,
    /// Fog density per metre (float parameter).
    FogDensity,
    /// Ambient brightness in cd/m² (float parameter).
    AmbientBrightness,
    /// Environment preset; the enum's options must be preset names (enum parameter).
    EnvironmentPreset,
}

impl BindingDef {
    /// The entity the binding drives, by name (`pillar`, or one copy `pillar[2]`); `None` for
    /// the environment's properties.
    pub fn target(&self) -> Option<&str> {
        match self {
            Self::LightColour(n)
            | Self::LightIntensity(n)
            | Self::Emissive(n)
            | Self::BaseColour(n)
            | Self::Visible(n)
            | Self::VisibleWhen(n, _) => Some(n),
            Self::SkyColour
            | Self::FogColour
            | Self::FogDensity
            | Self::AmbientBrightness
            | Self::EnvironmentPreset => None,
        }
    }
}

/// An sRGB colour written as `"#rrggbb"` or `"#rrggbbaa"`.
#[derive(Clone, Copy, PartialEq)]
pub struct Colour {
    /// Red, green, blue, alpha in sRGB space, each 0 to 1.
    pub srgba: [f32; 4],
}

impl Colour {
    /// An opaque colour from sRGB components in 0..=1.
    pub const fn rgb(r: f32, g: f32, b: f32) -> Self {
        Self { srgba: [r, g, b, 1.0] }
    }

    /// Parses `#rrggbb` or `#rrggbbaa` (case-insensitive).
    pub fn parse(text: &str) -> Result<Self, String> {
        let bad = || format!("expected a colour like \"#ffaa00\" or \"#ffaa0080\", found {text:?}");
        let hex = text.strip_prefix('#').ok_or_else(bad)?;
        if !(hex.len() == 6 || hex.len() == 8) || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(bad());
        }
        let byte = |i: usize| u8::from_str_radix(&hex[i..i + 2], 16).map_err(|_| bad());
        let alpha = if hex.len() == 8 { byte(6)? } else { 255 };
        Ok(Self {
            srgba: [
                f32::from(byte(0)?) / 255.0,
                f32::from(byte(2)?) / 255.0,
                f32::from(byte(4)?) / 255.0,
                f32::from(alpha) / 255.0,
            ],
        })
    }
}

impl Colour {
    /// The colour as 8-bit sRGB with alpha, each component clamped to 0..=1 first.
    pub fn to_rgba8(self) -> [u8; 4] {
        self.srgba.map(|c| (c.clamp(0.0, 1.0) * 255.0).round() as u8)
    }

    /// Whether light passes through it (alpha below 1): such a surface is blended, not opaque.
    pub fn is_translucent(self) -> bool {
        self.srgba[3] < 1.0
    }
}

impl fmt::Display for Colour {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let [r, g, b, a] = self.to_rgba8();
        if a == 255 { write!(f, "#{r:02x}{g:02x}{b:02x}") } else { write!(f, "#{r:02x}{g:02x}{b:02x}{a:02x}") }
    }
}

impl fmt::Debug for Colour {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Colour({self})")
    }
}

impl Serialize for Colour {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Colour {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        Colour::parse(&text).map_err(serde::de::Error::custom)
    }
}

/// The overlays drawn on the program output only (never in a headset or the desktop window).
// Written as the scene format writes its other names (`InOut`, `Credits`), in scene files and
// in commands alike.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Overlay {
    /// A lower third naming the venue and crediting its content with each licence, built from
    /// the scene's credit metadata.
    Credits,
    /// The open poll, its options and votes, and an open interaction window's countdown.
    Poll,
    /// The last audience lines that passed moderation.
    Chat,
    /// The machine-readable frame code in the bottom-right corner (for measuring the delay).
    Stamp,
    /// The show's surtitles in the venue's first language, for a program camera of its own
    /// (beside a desktop window); a headless venue's picture has the venue's own surtitles.
    Surtitles,
}

impl Overlay {
    /// Every overlay.
    pub const ALL: [Overlay; 5] = [Overlay::Credits, Overlay::Poll, Overlay::Chat, Overlay::Stamp, Overlay::Surtitles];

    /// Its name in commands and on OSC.
    pub fn name(self) -> &'static str {
        match self {
            Overlay::Credits => "credits",
            Overlay::Poll => "poll",
            Overlay::Chat => "chat",
            Overlay::Stamp => "stamp",
            Overlay::Surtitles => "surtitles",
        }
    }

    /// The overlay with this name, in any case.
    pub fn from_name(name: &str) -> Option<Overlay> {
        Overlay::ALL.into_iter().find(|o| o.name().eq_ignore_ascii_case(name))
    }
}
