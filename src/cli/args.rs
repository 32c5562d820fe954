//! The command line's arguments, per subcommand (clap), and the parsers of their values.

use std::path::PathBuf;

use anyhow::Result;
use bevy::prelude::UVec2;
use clap::Args;

#[derive(Args)]
pub struct ImportArgs {
    /// The scan: a point cloud (.ply, .las, .laz) or a mesh (.gltf, .glb).
    pub input: PathBuf,
    /// The assets folder the scene's paths are relative to, for the entry printed
    /// [default: $PARVIS_ASSETS, else ./assets, else the project's assets folder].
    #[arg(long, value_name = "DIR")]
    pub assets: Option<PathBuf>,
    /// Folder of imported scans [default: .parvis-cache next to the scan].
    #[arg(long, value_name = "DIR")]
    pub cache: Option<PathBuf>,
    /// Most points per octree node (the unit a viewer streams).
    #[arg(long, value_name = "N", default_value_t = 20_000)]
    pub points_per_node: usize,
}

#[derive(Args)]
pub struct LoadgenArgs {
    /// Audience server address (loopback only).
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:7878")]
    pub addr: std::net::SocketAddr,
    /// Connections that send chat.
    #[arg(long, value_name = "N", default_value_t = 100)]
    pub active: u32,
    /// Connections that only say hello and stay idle.
    #[arg(long, value_name = "N", default_value_t = 0)]
    pub idle: u32,
    /// Chat lines per second per active connection.
    #[arg(long, value_name = "R", default_value_t = 0.5)]
    pub rate: f64,
    /// Seconds of load.
    #[arg(long, value_name = "S", default_value_t = 10.0)]
    pub seconds: f64,
    /// Share of lines that are venue commands (0 to 1).
    #[arg(long, value_name = "F", default_value_t = 0.05)]
    pub command_share: f64,
    /// The command line to send.
    #[arg(long, value_name = "TEXT", default_value = "!fog 0.1")]
    pub command: String,
    /// Seconds to open all connections.
    #[arg(long, value_name = "S", default_value_t = 2.0)]
    pub ramp: f64,
    /// Server process id, to report its memory (resident set) per connection.
    #[arg(long, value_name = "PID")]
    pub server_pid: Option<u32>,
    /// Connections per local source address (127.1.0.x), to stay under the server's
    /// per-address limits; 0 uses 127.0.0.1 for all.
    #[arg(long, value_name = "N", default_value_t = 8)]
    pub per_source_address: u32,
    /// Also write the report as JSON to this file.
    #[arg(long, value_name = "FILE")]
    pub json: Option<PathBuf>,
    /// A soak: besides the steady load, members who drop without closing and come back,
    /// members who stop reading and members who flood, with the server sampled over time.
    #[arg(long)]
    pub soak: bool,
    /// With --soak: members who join, chat, drop and come back, over and over.
    #[arg(long, value_name = "N", default_value_t = 20, requires = "soak")]
    pub churners: u32,
    /// With --soak: members who stop reading.
    #[arg(long, value_name = "N", default_value_t = 10, requires = "soak")]
    pub slow_readers: u32,
    /// With --soak: members who flood.
    #[arg(long, value_name = "N", default_value_t = 2, requires = "soak")]
    pub flooders: u32,
    /// With --soak: seconds between samples of the server.
    #[arg(long, value_name = "S", default_value_t = 10.0, requires = "soak")]
    pub sample_every: f64,
    /// With --soak: the venue's command log, to check that every command the server says it
    /// applied is in it.
    #[arg(long, value_name = "FILE", requires = "soak")]
    pub log: Option<PathBuf>,
}

#[derive(Args)]
pub struct ReplayArgs {
    /// Command log: JSON lines written by `parvis run --log` (or, with --nats, none: the
    /// venue's log on JetStream).
    #[arg(required_unless_present = "nats")]
    pub log: Option<PathBuf>,
    /// Read the command log from the venue's JetStream stream on this NATS server.
    #[arg(long, value_name = "URL", conflicts_with = "log")]
    pub nats: Option<String>,
    /// The venue's name on NATS (`parvis.NAME.log`).
    #[arg(long, value_name = "NAME", requires = "nats")]
    pub nats_venue: Option<String>,
    /// A CA certificate (PEM) to trust for TLS to NATS.
    #[arg(long, value_name = "FILE.pem", requires = "nats")]
    pub nats_ca: Option<PathBuf>,
    /// The performance recorded beside it (`parvis run --record-performers`), played onto the
    /// performers on the show's clock, so `--out` shows them as they stood.
    #[arg(long, value_name = "FILE.poses")]
    pub performers: Option<PathBuf>,
    /// Folder that asset paths are relative to (see `run --help`).
    #[arg(long, value_name = "DIR")]
    pub assets: Option<PathBuf>,
    /// Render the final state to this PNG file.
    #[arg(long, value_name = "FILE.png")]
    pub out: Option<PathBuf>,
    /// Image size, with --out.
    #[arg(long, value_name = "WxH", default_value = "1280x720", value_parser = parse_size)]
    pub size: UVec2,
    /// Viewpoint, with --out.
    #[arg(long, value_name = "NAME")]
    pub viewpoint: Option<String>,
}

#[derive(Args)]
pub struct VenueArgs {
    /// Scene file (RON). Omit for the built-in venue.
    pub scene: Option<PathBuf>,
    /// Folder that asset paths in the scene are relative to
    /// [default: $PARVIS_ASSETS, else ./assets, else the project's assets folder].
    #[arg(long, value_name = "DIR")]
    pub assets: Option<PathBuf>,
    /// Start at this viewpoint instead of the scene's spawn viewpoint.
    #[arg(long, value_name = "NAME")]
    pub viewpoint: Option<String>,
    /// Set a stage parameter after loading, e.g. --set stage_light=#ff2200 --set fog=0.05.
    #[arg(long = "set", value_name = "NAME=VALUE")]
    pub sets: Vec<String>,
    /// Append every applied command to this file (JSON lines), for `parvis replay`.
    #[arg(long, value_name = "FILE")]
    pub log: Option<PathBuf>,
    /// Play this guided tour from the scene's `tours`.
    #[arg(long, value_name = "NAME")]
    pub tour: Option<String>,
    /// Open this hotspot's panel at the start (to preview a hotspot's texts and audio).
    #[arg(long, value_name = "NAME")]
    pub hotspot: Option<String>,
    /// The visitor's language (e.g. fr, en-GB); texts fall back in the venue's declared order.
    #[arg(long, value_name = "TAG")]
    pub lang: Option<String>,
    /// Put this show from the scene's `shows` on the transport, stopped at its start (space is
    /// GO, P plays and pauses; `/mod` sends `transport` commands).
    #[arg(long, value_name = "NAME")]
    pub show: Option<String>,
    /// Play this recorded performance (`--record-performers`) onto the scene's performers, in
    /// place of their own sources, on the show's clock: a rehearsal without the performer.
    #[arg(long, value_name = "FILE.poses")]
    pub performers: Option<PathBuf>,
}

#[derive(Args)]
pub struct RunArgs {
    #[command(flatten)]
    pub venue: VenueArgs,
    /// Carry on the show logged in this file (after a crash or a stop): the scene of its last
    /// load and the commands since, then keep appending to it (as --log FILE does).
    #[arg(long, value_name = "FILE", conflicts_with = "log")]
    pub resume: Option<PathBuf>,
    /// When the command log is forced to the disk: after each frame that applied commands,
    /// before they are acknowledged (`frame`), or never (`never`: it still survives the venue
    /// being killed, not the machine losing power).
    #[arg(long, value_enum, value_name = "WHEN", default_value = "frame")]
    pub log_sync: LogSyncArg,
    /// Draw every frame even when nothing changes (by default a venue rests: no frame is drawn
    /// until a command, an animation, an effect, a tour or an input needs one).
    #[arg(long)]
    pub no_rest: bool,
    /// Render offscreen even if a display is available.
    #[arg(long)]
    pub headless: bool,
    /// Keep the venue's state, command log and audience server running but draw nothing: a
    /// state or edge node, and the way to measure the audience path without the renderer.
    #[arg(long, conflicts_with_all = ["headless", "screenshot"])]
    pub no_render: bool,
    /// Headless only: size of the offscreen frame.
    #[arg(long, value_name = "WxH", default_value = "1280x720", value_parser = parse_size)]
    pub size: UVec2,
    /// Stop after this many frames (0 = run until closed or interrupted).
    #[arg(long, value_name = "N", default_value_t = 0)]
    pub frames: u64,
    /// Window only, with --frames: save the window as a PNG just before stopping.
    #[arg(long, value_name = "FILE.png", requires = "frames")]
    pub screenshot: Option<PathBuf>,
    /// Headless and --no-render: frames per second to aim for.
    #[arg(long, value_name = "FPS", default_value_t = 30.0)]
    pub fps: f64,
    /// Address of the audience server (page, WebSocket and metrics); port 0 picks a free port.
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:7878")]
    pub audience: std::net::SocketAddr,
    /// Do not start the audience server.
    #[arg(long)]
    pub no_audience: bool,
    /// Token for the moderators' channel (/mod); prefer the PARVIS_MOD_TOKEN environment
    /// variable, which other users of the machine cannot read in the process list.
    #[arg(long, value_name = "TOKEN", env = "PARVIS_MOD_TOKEN", hide_env_values = true)]
    pub mod_token: Option<String>,
    /// More words to refuse in audience names and chat: a text file, one word or phrase per
    /// line, `#` starts a comment. Matching resists leetspeak, spacing and look-alike letters.
    #[arg(long, value_name = "FILE")]
    pub blocklist: Vec<PathBuf>,
    /// Do not use the built-in French and English blocklist (only --blocklist files).
    #[arg(long)]
    pub no_default_blocklist: bool,
    /// Chat lines each member may send per 10 seconds (reactions and votes count too).
    #[arg(long, value_name = "N", default_value_t = 10)]
    pub rate: u32,
    /// Messages per 10 seconds from one network address, all its connections together (0: no limit).
    #[arg(long, value_name = "N", default_value_t = 100)]
    pub address_rate: u32,
    /// Most audience connections from one network address (0: no limit).
    #[arg(long, value_name = "N", default_value_t = 256)]
    pub max_per_address: u32,
    /// Most audience connections in all.
    #[arg(long, value_name = "N", default_value_t = 20_000)]
    pub max_connections: u32,
    /// A web origin (e.g. https://console.example.org) whose pages may open the moderators'
    /// channel, besides the venue's own (repeatable). Other sites' pages are refused.
    #[arg(long = "mod-origin", value_name = "ORIGIN")]
    pub mod_origins: Vec<String>,
    /// Only the venue's own pages and these web origins may open the audience WebSocket
    /// (repeatable; without it, any page may, e.g. an embed on a broadcaster's site).
    #[arg(long = "ws-origin", value_name = "ORIGIN")]
    pub ws_origins: Vec<String>,
    /// Seconds a client may leave its socket full (reading nothing) before it is closed; its
    /// connection would otherwise hold a task and the kernel's buffers for ever.
    #[arg(long, value_name = "SECONDS", default_value_t = 10.0)]
    pub send_timeout: f64,
    /// Seconds between two writes to each member of what the venue says to everyone (chat,
    /// effects, state, tallies), gathered: fewer wake-ups and writes for a large crowd. A
    /// member's own line and replies to them go at once. 0: as soon as possible.
    #[arg(long, value_name = "SECONDS", default_value_t = 0.25)]
    pub fanout_interval: f64,
    /// Writes a second the audience server makes at most to send what the venue says to
    /// everyone, every member together (0: no bound): a larger crowd gets the venue's words a
    /// little less often (10 000 members at 20 000: every half second) instead of costing the
    /// server more.
    #[arg(long, value_name = "N", default_value_t = 20_000)]
    pub fanout_rate: u32,
    /// Chat lines shown to everyone per second; faster chat is still read by the rules, and
    /// each line beyond this is shown to its sender only.
    #[arg(long, value_name = "N", default_value_t = 25)]
    pub chat_display_rate: u32,
    /// Also read the chat of these Twitch channels (comma-separated): their viewers' chat goes
    /// through the same moderation and rules as the audience page's, as `twitch:USER-ID`.
    #[arg(long, value_name = "CHANNEL[,CHANNEL]")]
    pub twitch: Option<String>,
    /// The chat server for --twitch: ircs://HOST:PORT or wss://HOST:PORT/PATH, or unencrypted
    /// irc:// and ws:// (any IRC server works; roles and bits come from Twitch's tags)
    /// [default: ircs://irc.chat.twitch.tv:6697].
    #[arg(long, value_name = "URL", requires = "twitch")]
    pub twitch_server: Option<String>,
    /// Also trust the certificate authorities in this PEM file for --twitch-server (a private
    /// relay's); the public ones are always trusted.
    #[arg(long, value_name = "FILE.pem", requires = "twitch")]
    pub twitch_ca: Option<PathBuf>,
    /// The bot account's login, to post poll results and acknowledgements; its OAuth token is
    /// read from the PARVIS_TWITCH_TOKEN environment variable, never from the command line.
    #[arg(long, value_name = "LOGIN", requires = "twitch")]
    pub twitch_nick: Option<String>,
    /// How many seconds the stream's viewers see the stage late (the stream's delay): polls and
    /// votes stay open that much longer for them, and their votes count for what they saw.
    /// `auto`: measured every 30 s by reading --playback-url's frame code (with --stream).
    #[arg(long, value_name = "SECONDS|auto", default_value = "0", value_parser = parse_stream_delay)]
    pub stream_delay: StreamDelayArg,
    /// With --stream-delay auto: where viewers get the stream (an RTMP, SRT or HLS URL that
    /// ffmpeg reads); the program output stamps its frames and the delay is read back from it.
    #[arg(long, value_name = "URL")]
    pub playback_url: Option<String>,
    /// Listen for OSC on this UDP address or port (e.g. 9000, or 0.0.0.0:9000 for a desk on
    /// the network, with --osc-allow). Off by default; a bare port binds 127.0.0.1.
    #[arg(long, value_name = "ADDR|PORT", value_parser = parse_osc_addr)]
    pub osc: Option<std::net::SocketAddr>,
    /// Accept OSC only from these addresses or ranges (e.g. 192.168.1.20, 10.0.0.0/24);
    /// default loopback. OSC has no authentication: whoever may send it runs the show.
    #[arg(long = "osc-allow", value_name = "IP[/BITS]", requires = "osc")]
    pub osc_allow: Vec<String>,
    /// Serve the venue's OSCQuery description (HTTP + JSON) on this address or port, so that
    /// Chataigne, Vezér or TouchDesigner discover its parameters, show and cues.
    #[arg(long, value_name = "ADDR|PORT", value_parser = parse_osc_addr)]
    pub oscquery: Option<std::net::SocketAddr>,
    /// Echo every parameter change, cue and transport change to this OSC address (repeatable),
    /// so a lighting desk or TouchDesigner follows the venue.
    #[arg(long = "osc-out", value_name = "ADDR")]
    pub osc_out: Vec<std::net::SocketAddr>,
    /// Take motion capture (VMC, OSC over UDP) for the scene's performers on this interface
    /// (default 127.0.0.1; 0.0.0.0 for capture machines on the network, with --vmc-allow).
    /// Each performer's port is in the scene file (`source: Vmc(port: 39539)`).
    #[arg(long = "vmc-host", value_name = "IP", default_value = "127.0.0.1")]
    pub vmc_host: std::net::IpAddr,
    /// Accept motion capture only from these addresses or ranges (e.g. 192.168.1.30,
    /// 10.0.0.0/24); default loopback. VMC has no authentication.
    #[arg(long = "vmc-allow", value_name = "IP[/BITS]")]
    pub vmc_allow: Vec<String>,
    /// Record the performers' capture to this file, timed by the show's clock (the venue's
    /// when no show plays): a scene's `source: Recording(path: ...)` plays it back.
    #[arg(long = "record-performers", value_name = "FILE.poses")]
    pub record_performers: Option<std::path::PathBuf>,
    /// Live captions from this audio command (run by `sh -c`), which writes raw 16-bit 16 kHz
    /// mono samples on its standard output: e.g. `arecord -q -f S16_LE -r 16000 -c 1 -t raw`
    /// for a sound card, or `ffmpeg -loglevel error -re -i narration.wav -f s16le -ar 16000 -ac
    /// 1 -` for a file played as if live.
    #[arg(long = "captions-audio", value_name = "COMMAND")]
    pub captions_audio: Option<String>,
    /// The speech recogniser (run by `sh -c`): samples on its standard input, one JSON line
    /// per recognised line on its standard output (scripts/captions/README.md).
    #[arg(long = "captions-engine", value_name = "COMMAND", default_value = "scripts/captions/moonshine.sh")]
    pub captions_engine: String,
    /// The language spoken (BCP 47): captions show as surtitles in it.
    #[arg(long = "captions-lang", value_name = "TAG", default_value = "en")]
    pub captions_lang: String,
    /// Seconds each caption line waits before it shows, for a moderator to hide or correct it.
    #[arg(long = "captions-delay", value_name = "SECONDS", default_value_t = 0.0)]
    pub captions_delay: f64,
    /// Chase linear timecode (LTC) from this WAV file, played as if it came from a sound card:
    /// the `--show` locates to where the timecode puts it (by its songs' `timecode`), plays,
    /// freewheels through a dropout for a second, then holds.
    #[arg(long, value_name = "FILE.wav", requires = "show")]
    pub ltc: Option<std::path::PathBuf>,
    /// Chase MIDI Time Code from the MIDI input port whose name contains this, as --ltc does.
    #[arg(long, value_name = "PORT", requires = "show", conflicts_with = "ltc")]
    pub mtc: Option<String>,
    /// Start the `--show` playing as the venue opens (a server with no stage manager at a
    /// keyboard; `/mod` can still pause, seek and GO).
    #[arg(long, requires = "show")]
    pub play: bool,
    #[command(flatten)]
    pub xr: XrArgs,
    #[command(flatten)]
    pub output: OutputArgs,
    #[command(flatten)]
    pub nats: NatsArgs,
}

/// Scale-out over NATS (docs/scale.md). Credentials come from the environment only:
/// `PARVIS_NATS_TOKEN`, `PARVIS_NATS_USER` + `PARVIS_NATS_PASSWORD`, `PARVIS_NATS_CREDS` (a
/// .creds file) or `PARVIS_NATS_NKEY` (a file with an NKey seed).
#[derive(Args, Clone, Default)]
pub struct NatsArgs {
    /// NATS server(s), comma-separated (`nats://host:4222`, `tls://host:4222`): `run` becomes
    /// the venue's authority, keeping its command log on JetStream (acknowledgements wait for
    /// it, a restart carries the show on from it); `follow` renders the venue of that log.
    #[arg(long, value_name = "URL", env = "PARVIS_NATS_URL", hide_env_values = true)]
    pub nats: Option<String>,
    /// The venue's name on NATS: its subjects are `parvis.NAME.*` [default: from the venue's
    /// title].
    #[arg(long, value_name = "NAME", requires = "nats")]
    pub nats_venue: Option<String>,
    /// A CA certificate (PEM) to trust for TLS to NATS; TLS is then required.
    #[arg(long, value_name = "FILE.pem", requires = "nats")]
    pub nats_ca: Option<PathBuf>,
    /// Start a new command log: empty the venue's streams first, instead of carrying on the
    /// show they hold (a new night, a rehearsal).
    #[arg(long, requires = "nats")]
    pub nats_new_log: bool,
    /// Store a snapshot of the venue every this many commands: nodes that start or restart
    /// read it and the log after it, not the whole log.
    #[arg(long, value_name = "N", default_value_t = 1000, requires = "nats")]
    pub snapshot_every: u64,
    /// Serve `/metrics` on this address (a node without an audience server: a follower, or
    /// `--no-audience`).
    #[arg(long, value_name = "ADDR", requires = "nats")]
    pub metrics: Option<std::net::SocketAddr>,
    /// This audience edge's id (`parvis edge`): 1 to 16 lower-case letters or digits; its
    /// members' ids start with it [default: a random one].
    #[arg(long, value_name = "ID")]
    pub edge_id: Option<String>,
    /// This audience edge passes its moderators' requests to the venue (`parvis edge`; its NATS
    /// user must be allowed to publish on `parvis.VENUE.staff.in`).
    #[arg(long)]
    pub staff_edge: bool,
    /// Run this follower as an overflow shard (`parvis follow`): it also serves an audience of
    /// its own (`--audience`), whose effects apply here only, while the main stage's state
    /// (staff, cues, captions) comes from the authority's log. 1 to 16 lower-case letters or
    /// digits; its members' ids start with it.
    #[arg(long, value_name = "ID", requires = "nats")]
    pub shard: Option<String>,
    /// Set by `parvis follow`.
    #[arg(skip)]
    pub follow: bool,
}

/// The program output: streams and recordings of the director's view with the program sound.
#[derive(Args, Clone)]
pub struct OutputArgs {
    /// Stream the program output to rtmp://HOST/APP/KEY, rtmps://… or srt://HOST:PORT
    /// (repeatable). `env:NAME` reads the URL from the environment variable NAME, so that the
    /// stream key is not in the process list; it never appears in logs or /metrics.
    #[arg(long = "stream", value_name = "URL")]
    pub stream: Vec<String>,
    /// Record the program output to a .mkv (survives a crash) or .mp4 file (repeatable).
    #[arg(long = "record", value_name = "FILE")]
    pub record: Vec<String>,
    /// Output frames per second.
    #[arg(long, value_name = "FPS", default_value_t = 30)]
    pub output_fps: u32,
    /// Video bit rate in kbit/s (Twitch's 720p30: 3000 to 4500).
    #[arg(long, value_name = "KBPS", default_value_t = 4500)]
    pub video_kbps: u32,
    /// Audio bit rate in kbit/s (AAC, 48 kHz stereo).
    #[arg(long, value_name = "KBPS", default_value_t = 160)]
    pub audio_kbps: u32,
    /// Seconds between keyframes (Twitch asks for 2).
    #[arg(long, value_name = "SECONDS", default_value_t = 2)]
    pub keyframe_seconds: u32,
    /// Video encoder (e.g. libx264, h264_nvenc); by default NVENC when ffmpeg has it and it
    /// works on this machine, else libx264.
    #[arg(long, value_name = "NAME")]
    pub encoder: Option<String>,
    /// The ffmpeg program.
    #[arg(long, value_name = "PATH", default_value = "ffmpeg")]
    pub ffmpeg: PathBuf,
    /// Stamp each output frame's number in its bottom-right corner from the start (a row of
    /// squares that survives compression): read back from what viewers get, it gives the
    /// stream's delay. The `stamp` overlay switches it later.
    #[arg(long)]
    pub frame_code: bool,
}

impl OutputArgs {
    /// Whether any output is asked for.
    pub fn any(&self) -> bool {
        !self.stream.is_empty() || !self.record.is_empty()
    }
}

/// What `--xr` does without a headset.
#[derive(Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum XrModeArg {
    /// Say what is missing and carry on at the desktop.
    Prefer,
    /// Say what is missing and exit with an error.
    Require,
}

/// What the desktop shows during a headset session.
#[derive(Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum SpectatorArg {
    /// The visitor's view, smoothed and level.
    FirstPerson,
    /// From behind and above the visitor.
    ThirdPerson,
    /// The desktop camera stays put.
    Off,
}

#[derive(Args)]
#[command(next_help_heading = "Headset (OpenXR)")]
pub struct XrArgs {
    /// Visit in a headset through OpenXR. Without a runtime or headset, `--xr` (`--xr=prefer`)
    /// says what is missing and carries on at the desktop; `--xr=require` exits with an error.
    /// A runtime that goes away mid-session ends the visit the same way.
    #[arg(long, value_name = "MODE", num_args = 0..=1, require_equals = true, default_missing_value = "prefer", value_enum, conflicts_with = "no_render")]
    pub xr: Option<XrModeArg>,
    /// Snap turn angle in degrees, 0 to 180 (0: no snap turns).
    #[arg(long, value_name = "DEGREES", default_value_t = 30.0, value_parser = parse_snap_turn)]
    pub snap_turn: f32,
    /// Turn smoothly with the right stick instead of in snaps.
    #[arg(long)]
    pub smooth_turn: bool,
    /// Walking speed with the left stick in metres per second, 0 to 5 (0: teleport only).
    #[arg(long, value_name = "M/S", default_value_t = 1.4, value_parser = parse_walk_speed)]
    pub walk_speed: f32,
    /// The visitor is seated: raise the view to a standing eye height.
    #[arg(long)]
    pub seated: bool,
    /// No continuous motion: snap turns only, no walking, a brief blink around each jump.
    #[arg(long)]
    pub reduced_motion: bool,
    /// No vignette while walking or turning smoothly.
    #[arg(long)]
    pub no_vignette: bool,
    /// What the desktop shows meanwhile.
    #[arg(long, value_enum, default_value = "first-person")]
    pub spectator: SpectatorArg,
    /// Without a display: save the spectator view to this PNG before a --frames run ends.
    #[arg(long, value_name = "FILE.png")]
    pub spectator_out: Option<PathBuf>,
    /// Write the headset session's log (states, frames, frame times, poses) as JSON on exit.
    #[arg(long, value_name = "FILE.json")]
    pub xr_report: Option<PathBuf>,
}

#[derive(Args)]
pub struct CheckArgs {
    /// Scene files to check.
    #[arg(required = true)]
    pub scenes: Vec<PathBuf>,
    /// Folder that asset paths are relative to (see `run --help`).
    #[arg(long, value_name = "DIR")]
    pub assets: Option<PathBuf>,
}

#[derive(Args)]
pub struct RenderArgs {
    #[command(flatten)]
    pub venue: VenueArgs,
    /// PNG file to write.
    #[arg(long, value_name = "FILE.png", required_unless_present = "video")]
    pub out: Option<PathBuf>,
    /// Image size.
    #[arg(long, value_name = "WxH", default_value = "1280x720", value_parser = parse_size)]
    pub size: UVec2,
    /// Frames to render after the venue has loaded, before the capture.
    #[arg(long, value_name = "N", default_value_t = 1)]
    pub frames: u32,
    /// Play the `--show` to this many seconds on its clock, firing its cues on the way, and
    /// render the venue as it stands there (a preview of any moment of a show).
    #[arg(long, value_name = "SECONDS", requires = "show", value_parser = parse_show_seconds)]
    pub at: Option<f64>,
    /// Render a video instead of a picture: `--show` from its start to `--at` (or its end),
    /// frame by frame at a fixed time step with the program sound, into a .mkv or .mp4 file
    /// (`--out` is then not needed).
    #[arg(long, value_name = "FILE.mp4", requires = "show")]
    pub video: Option<String>,
    /// With --video: frames per second (each frame advances the venue by 1/FPS s).
    #[arg(long, value_name = "FPS", default_value_t = 30)]
    pub fps: u32,
    /// Draw the program output's overlays (credits, poll, chat) as a stream shows them
    /// (always on with --video).
    #[arg(long)]
    pub program: bool,
    /// With --video: stamp each frame's number in its bottom-right corner.
    #[arg(long, requires = "video")]
    pub frame_code: bool,
}

/// `--stream-delay`: seconds, or measured.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum StreamDelayArg {
    /// Declared by the operator.
    Seconds(f64),
    /// Measured from the stream itself.
    Auto,
}

pub fn parse_stream_delay(text: &str) -> Result<StreamDelayArg, String> {
    if text == "auto" {
        return Ok(StreamDelayArg::Auto);
    }
    match text.parse::<f64>() {
        Ok(v) if (0.0..=600.0).contains(&v) => Ok(StreamDelayArg::Seconds(v)),
        _ => Err("expected seconds from 0 to 600, or auto".into()),
    }
}

pub fn parse_osc_addr(text: &str) -> Result<std::net::SocketAddr, String> {
    if let Ok(port) = text.parse::<u16>() {
        return Ok(std::net::SocketAddr::from(([127, 0, 0, 1], port)));
    }
    text.parse().map_err(|_| "expected a UDP port (9000) or an address and port (0.0.0.0:9000)".into())
}

pub fn parse_show_seconds(text: &str) -> Result<f64, String> {
    match text.parse::<f64>() {
        Ok(v) if (0.0..=86_400.0).contains(&v) => Ok(v),
        _ => Err("expected seconds from 0 to 86400".into()),
    }
}

pub fn parse_in_range(text: &str, low: f32, high: f32) -> Result<f32, String> {
    match text.parse::<f32>() {
        Ok(v) if (low..=high).contains(&v) => Ok(v),
        _ => Err(format!("expected a number from {low} to {high}")),
    }
}

pub fn parse_snap_turn(text: &str) -> Result<f32, String> {
    parse_in_range(text, 0.0, 180.0)
}

pub fn parse_walk_speed(text: &str) -> Result<f32, String> {
    parse_in_range(text, 0.0, 5.0)
}

pub fn parse_size(text: &str) -> Result<UVec2, String> {
    let (w, h) =
        text.split_once(['x', 'X']).ok_or_else(|| format!("expected WIDTHxHEIGHT such as 1280x720, found {text:?}"))?;
    let parse = |v: &str| v.trim().parse::<u32>().ok().filter(|v| (16..=8192).contains(v));
    match (parse(w), parse(h)) {
        (Some(w), Some(h)) => Ok(UVec2::new(w, h)),
        _ => Err(format!("expected width and height from 16 to 8192, found {text:?}")),
    }
}

/// When the command log is forced to the disk.
#[derive(Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LogSyncArg {
    /// After each frame that applied commands.
    Frame,
    /// Never.
    Never,
}
