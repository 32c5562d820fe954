//! The `parvis` command: parses the command line and assembles the venue's plugins.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use bevy::prelude::UVec2;
use clap::{Args, Parser, Subcommand};

use parvis::app::{FrameLimit, VenueSetup, windowed_app};
use parvis::assets_root::AssetsRoot;
use parvis::audience::moderation::Blocklist;
use parvis::audience::server::{AudienceConfig, AudienceServer};
use parvis::camera::pick_viewpoint;
use parvis::command::{CommandLog, CommandLogFile, LoggedCommand, SubmitCommand, VenueCommand, read_command_log, venue_state_hash};
use parvis::output::{HeadlessRenderer, save_png};
use parvis::params::StageParams;
use parvis::scene::format::SceneFile;
use parvis::scene::validate::{SceneError, load_scene_file, load_scene_str};
use parvis::scene::{DEFAULT_SCENE, DEFAULT_SCENE_NAME};

/// Parvis — a real-time engine for immersive cultural venues.
///
/// A venue is a scene file (RON, see docs/scene-format.md). Run it in a window, check it,
/// or render it to an image. With no scene file, the built-in cloister venue is used.
#[derive(Parser)]
#[command(version, propagate_version = true)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Show a venue: in a window when a display is available (DISPLAY set), otherwise headless.
    /// Saving the scene file updates the running venue; a broken save keeps the last good one.
    Run(Box<RunArgs>),
    /// Check scene files without rendering. Exit 0 when all are valid; otherwise print one line
    /// per problem (file:line:column or field path, what was expected, what was found) and exit 1.
    Check(CheckArgs),
    /// Render one frame of a venue headless and write it as a PNG. Deterministic: the same
    /// file, size, viewpoint and values give the same picture on the same adapter.
    Render(RenderArgs),
    /// Re-apply a command log (written by `run --log`) and print the final venue state and its
    /// hash; with --out, also render the final state.
    Replay(ReplayArgs),
    /// Load-test a running venue's audience server on this machine: N connections sending chat
    /// at a set rate for a bounded time; prints a Markdown report. Loopback addresses only.
    Loadgen(LoadgenArgs),
    /// Import a scan into the cache a viewer streams from, in a folder named by the file's
    /// content hash so that the same scan is imported once: a PLY, LAS or LAZ point cloud
    /// becomes a level-of-detail octree; a glTF/GLB mesh becomes chunks with simplified
    /// levels and downscaled textures. Prints what was imported, where, and a scene entry.
    Import(ImportArgs),
}

#[derive(Args)]
struct ImportArgs {
    /// The scan: .ply, .las or .laz.
    input: PathBuf,
    /// Folder of imported scans [default: .parvis-cache next to the scan].
    #[arg(long, value_name = "DIR")]
    cache: Option<PathBuf>,
    /// Most points per octree node (the unit a viewer streams).
    #[arg(long, value_name = "N", default_value_t = 20_000)]
    points_per_node: usize,
}

#[derive(Args)]
struct LoadgenArgs {
    /// Audience server address (loopback only).
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:7878")]
    addr: std::net::SocketAddr,
    /// Connections that send chat.
    #[arg(long, value_name = "N", default_value_t = 100)]
    active: u32,
    /// Connections that only say hello and stay idle.
    #[arg(long, value_name = "N", default_value_t = 0)]
    idle: u32,
    /// Chat lines per second per active connection.
    #[arg(long, value_name = "R", default_value_t = 0.5)]
    rate: f64,
    /// Seconds of load.
    #[arg(long, value_name = "S", default_value_t = 10.0)]
    seconds: f64,
    /// Share of lines that are venue commands (0 to 1).
    #[arg(long, value_name = "F", default_value_t = 0.05)]
    command_share: f64,
    /// The command line to send.
    #[arg(long, value_name = "TEXT", default_value = "!fog 0.1")]
    command: String,
    /// Seconds to open all connections.
    #[arg(long, value_name = "S", default_value_t = 2.0)]
    ramp: f64,
    /// Server process id, to report its memory (resident set) per connection.
    #[arg(long, value_name = "PID")]
    server_pid: Option<u32>,
    /// Connections per local source address (127.1.0.x), to stay under the server's
    /// per-address limits; 0 uses 127.0.0.1 for all.
    #[arg(long, value_name = "N", default_value_t = 8)]
    per_source_address: u32,
    /// Also write the report as JSON to this file.
    #[arg(long, value_name = "FILE")]
    json: Option<PathBuf>,
}

#[derive(Args)]
struct ReplayArgs {
    /// Command log: JSON lines written by `parvis run --log`.
    log: PathBuf,
    /// Folder that asset paths are relative to (see `run --help`).
    #[arg(long, value_name = "DIR")]
    assets: Option<PathBuf>,
    /// Render the final state to this PNG file.
    #[arg(long, value_name = "FILE.png")]
    out: Option<PathBuf>,
    /// Image size, with --out.
    #[arg(long, value_name = "WxH", default_value = "1280x720", value_parser = parse_size)]
    size: UVec2,
    /// Viewpoint, with --out.
    #[arg(long, value_name = "NAME")]
    viewpoint: Option<String>,
}

#[derive(Args)]
struct VenueArgs {
    /// Scene file (RON). Omit for the built-in venue.
    scene: Option<PathBuf>,
    /// Folder that asset paths in the scene are relative to
    /// [default: $PARVIS_ASSETS, else ./assets, else the project's assets folder].
    #[arg(long, value_name = "DIR")]
    assets: Option<PathBuf>,
    /// Start at this viewpoint instead of the scene's spawn viewpoint.
    #[arg(long, value_name = "NAME")]
    viewpoint: Option<String>,
    /// Set a stage parameter after loading, e.g. --set stage_light=#ff2200 --set fog=0.05.
    #[arg(long = "set", value_name = "NAME=VALUE")]
    sets: Vec<String>,
    /// Append every applied command to this file (JSON lines), for `parvis replay`.
    #[arg(long, value_name = "FILE")]
    log: Option<PathBuf>,
    /// Play this guided tour from the scene's `tours`.
    #[arg(long, value_name = "NAME")]
    tour: Option<String>,
    /// Open this hotspot's panel at the start (to preview a hotspot's texts and audio).
    #[arg(long, value_name = "NAME")]
    hotspot: Option<String>,
    /// The visitor's language (e.g. fr, en-GB); texts fall back in the venue's declared order.
    #[arg(long, value_name = "TAG")]
    lang: Option<String>,
}

#[derive(Args)]
struct RunArgs {
    #[command(flatten)]
    venue: VenueArgs,
    /// Render offscreen even if a display is available.
    #[arg(long)]
    headless: bool,
    /// Keep the venue's state, command log and audience server running but draw nothing: a
    /// state or edge node, and the way to measure the audience path without the renderer.
    #[arg(long, conflicts_with_all = ["headless", "screenshot"])]
    no_render: bool,
    /// Headless only: size of the offscreen frame.
    #[arg(long, value_name = "WxH", default_value = "1280x720", value_parser = parse_size)]
    size: UVec2,
    /// Stop after this many frames (0 = run until closed or interrupted).
    #[arg(long, value_name = "N", default_value_t = 0)]
    frames: u64,
    /// Window only, with --frames: save the window as a PNG just before stopping.
    #[arg(long, value_name = "FILE.png", requires = "frames")]
    screenshot: Option<PathBuf>,
    /// Headless and --no-render: frames per second to aim for.
    #[arg(long, value_name = "FPS", default_value_t = 30.0)]
    fps: f64,
    /// Address of the audience server (page, WebSocket and metrics); port 0 picks a free port.
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:7878")]
    audience: std::net::SocketAddr,
    /// Do not start the audience server.
    #[arg(long)]
    no_audience: bool,
    /// Token for the moderators' channel (/mod); prefer the PARVIS_MOD_TOKEN environment
    /// variable, which other users of the machine cannot read in the process list.
    #[arg(long, value_name = "TOKEN", env = "PARVIS_MOD_TOKEN", hide_env_values = true)]
    mod_token: Option<String>,
    /// More words to refuse in audience names and chat: a text file, one word or phrase per
    /// line, `#` starts a comment. Matching resists leetspeak, spacing and look-alike letters.
    #[arg(long, value_name = "FILE")]
    blocklist: Vec<PathBuf>,
    /// Do not use the built-in French and English blocklist (only --blocklist files).
    #[arg(long)]
    no_default_blocklist: bool,
    /// Chat lines each member may send per 10 seconds (reactions and votes count too).
    #[arg(long, value_name = "N", default_value_t = 10)]
    rate: u32,
    /// Messages per 10 seconds from one network address, all its connections together (0: no limit).
    #[arg(long, value_name = "N", default_value_t = 100)]
    address_rate: u32,
    /// Most audience connections from one network address (0: no limit).
    #[arg(long, value_name = "N", default_value_t = 256)]
    max_per_address: u32,
    /// Most audience connections in all.
    #[arg(long, value_name = "N", default_value_t = 20_000)]
    max_connections: u32,
    /// Chat lines shown to everyone per second; faster chat is still read by the rules, and
    /// each line beyond this is shown to its sender only.
    #[arg(long, value_name = "N", default_value_t = 25)]
    chat_display_rate: u32,
    /// Also read the chat of these Twitch channels (comma-separated): their viewers' chat goes
    /// through the same moderation and rules as the audience page's, as `twitch:USER-ID`.
    #[arg(long, value_name = "CHANNEL[,CHANNEL]")]
    twitch: Option<String>,
    /// The chat server for --twitch: ircs://HOST:PORT or wss://HOST:PORT/PATH, or unencrypted
    /// irc:// and ws:// (any IRC server works; roles and bits come from Twitch's tags)
    /// [default: ircs://irc.chat.twitch.tv:6697].
    #[arg(long, value_name = "URL", requires = "twitch")]
    twitch_server: Option<String>,
    /// Also trust the certificate authorities in this PEM file for --twitch-server (a private
    /// relay's); the public ones are always trusted.
    #[arg(long, value_name = "FILE.pem", requires = "twitch")]
    twitch_ca: Option<PathBuf>,
    /// The bot account's login, to post poll results and acknowledgements; its OAuth token is
    /// read from the PARVIS_TWITCH_TOKEN environment variable, never from the command line.
    #[arg(long, value_name = "LOGIN", requires = "twitch")]
    twitch_nick: Option<String>,
    /// How many seconds the stream's viewers see the stage late (the stream's delay): polls and
    /// votes stay open that much longer for them, and their votes count for what they saw.
    #[arg(long, value_name = "SECONDS", default_value_t = 0.0)]
    stream_delay: f64,
    #[command(flatten)]
    xr: XrArgs,
}

/// What `--xr` does without a headset.
#[derive(Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum XrModeArg {
    /// Say what is missing and carry on at the desktop.
    Prefer,
    /// Say what is missing and exit with an error.
    Require,
}

/// What the desktop shows during a headset session.
#[derive(Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum SpectatorArg {
    /// The visitor's view, smoothed and level.
    FirstPerson,
    /// From behind and above the visitor.
    ThirdPerson,
    /// The desktop camera stays put.
    Off,
}

#[derive(Args)]
#[command(next_help_heading = "Headset (OpenXR)")]
struct XrArgs {
    /// Visit in a headset through OpenXR. Without a runtime or headset, `--xr` (`--xr=prefer`)
    /// says what is missing and carries on at the desktop; `--xr=require` exits with an error.
    /// A runtime that goes away mid-session ends the visit the same way.
    #[arg(long, value_name = "MODE", num_args = 0..=1, require_equals = true, default_missing_value = "prefer", value_enum, conflicts_with = "no_render")]
    xr: Option<XrModeArg>,
    /// Snap turn angle in degrees, 0 to 180 (0: no snap turns).
    #[arg(long, value_name = "DEGREES", default_value_t = 30.0, value_parser = parse_snap_turn)]
    snap_turn: f32,
    /// Turn smoothly with the right stick instead of in snaps.
    #[arg(long)]
    smooth_turn: bool,
    /// Walking speed with the left stick in metres per second, 0 to 5 (0: teleport only).
    #[arg(long, value_name = "M/S", default_value_t = 1.4, value_parser = parse_walk_speed)]
    walk_speed: f32,
    /// The visitor is seated: raise the view to a standing eye height.
    #[arg(long)]
    seated: bool,
    /// No continuous motion: snap turns only, no walking, a brief blink around each jump.
    #[arg(long)]
    reduced_motion: bool,
    /// No vignette while walking or turning smoothly.
    #[arg(long)]
    no_vignette: bool,
    /// What the desktop shows meanwhile.
    #[arg(long, value_enum, default_value = "first-person")]
    spectator: SpectatorArg,
    /// Without a display: save the spectator view to this PNG before a --frames run ends.
    #[arg(long, value_name = "FILE.png")]
    spectator_out: Option<PathBuf>,
    /// Write the headset session's log (states, frames, frame times, poses) as JSON on exit.
    #[arg(long, value_name = "FILE.json")]
    xr_report: Option<PathBuf>,
}

#[derive(Args)]
struct CheckArgs {
    /// Scene files to check.
    #[arg(required = true)]
    scenes: Vec<PathBuf>,
    /// Folder that asset paths are relative to (see `run --help`).
    #[arg(long, value_name = "DIR")]
    assets: Option<PathBuf>,
}

#[derive(Args)]
struct RenderArgs {
    #[command(flatten)]
    venue: VenueArgs,
    /// PNG file to write.
    #[arg(long, value_name = "FILE.png")]
    out: PathBuf,
    /// Image size.
    #[arg(long, value_name = "WxH", default_value = "1280x720", value_parser = parse_size)]
    size: UVec2,
    /// Frames to render after the venue has loaded, before the capture.
    #[arg(long, value_name = "N", default_value_t = 1)]
    frames: u32,
}

fn parse_in_range(text: &str, low: f32, high: f32) -> Result<f32, String> {
    match text.parse::<f32>() {
        Ok(v) if (low..=high).contains(&v) => Ok(v),
        _ => Err(format!("expected a number from {low} to {high}")),
    }
}

fn parse_snap_turn(text: &str) -> Result<f32, String> {
    parse_in_range(text, 0.0, 180.0)
}

fn parse_walk_speed(text: &str) -> Result<f32, String> {
    parse_in_range(text, 0.0, 5.0)
}

fn parse_size(text: &str) -> Result<UVec2, String> {
    let (w, h) = text.split_once(['x', 'X']).ok_or_else(|| format!("expected WIDTHxHEIGHT such as 1280x720, found {text:?}"))?;
    let parse = |v: &str| v.trim().parse::<u32>().ok().filter(|v| (16..=8192).contains(v));
    match (parse(w), parse(h)) {
        (Some(w), Some(h)) => Ok(UVec2::new(w, h)),
        _ => Err(format!("expected width and height from 16 to 8192, found {text:?}")),
    }
}

fn main() -> ExitCode {
    install_panic_message();
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Check(args) => return check(&args),
        Command::Run(args) => run(*args),
        Command::Render(args) => render(args),
        Command::Replay(args) => replay(&args),
        Command::Loadgen(args) => loadgen(&args),
        Command::Import(args) => import(&args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("parvis: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// Turns a panic into one clear line (with a hint for the common case of no GPU driver)
/// instead of a backtrace.
fn install_panic_message() {
    std::panic::set_hook(Box::new(|info| {
        let message = info
            .payload()
            .downcast_ref::<&str>()
            .map(ToString::to_string)
            .or_else(|| info.payload().downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "unknown error".into());
        let place = info.location().map(|l| format!(" ({}:{})", l.file(), l.line())).unwrap_or_default();
        // bevy_mod_openxr panics when a frame call finds the runtime gone: that is not an
        // internal error but the headset's runtime stopping (crashed, killed, unplugged).
        let lost = ["ERROR_INSTANCE_LOST", "ERROR_SESSION_LOST", "ERROR_RUNTIME_FAILURE"].iter().any(|e| message.contains(e));
        if parvis::xr::SESSION_STARTED.load(std::sync::atomic::Ordering::SeqCst) && place.contains("bevy_mod_openxr") && lost {
            eprintln!("parvis: the OpenXR runtime went away mid-session ({message}); exiting");
            std::process::exit(i32::from(parvis::xr::EXIT_RUNTIME_LOST));
        }
        eprintln!("parvis: internal error: {message}{place}");
        if message.contains("GPU") || message.contains("adapter") {
            eprintln!(
                "parvis: no graphics adapter was found. On a machine without a GPU, install Mesa's \
                 software Vulkan driver: `sudo apt-get install mesa-vulkan-drivers libvulkan1`."
            );
        }
    }));
}

fn assets_root(arg: Option<&Path>) -> Result<AssetsRoot> {
    let root = match arg {
        Some(dir) => AssetsRoot::new(dir),
        None => AssetsRoot::discover(),
    };
    if !root.dir().is_dir() {
        bail!("assets folder {} does not exist", root.dir().display());
    }
    Ok(root)
}

fn check(args: &CheckArgs) -> ExitCode {
    let assets = match assets_root(args.assets.as_deref()) {
        Ok(a) => a,
        Err(e) => {
            eprintln!("parvis: {e:#}");
            return ExitCode::FAILURE;
        }
    };
    let mut failed = false;
    for path in &args.scenes {
        match load_scene_file(path, &assets) {
            Ok(scene) => println!(
                "{}: ok — \"{}\": {} assets, {} primitives, {} lights, {} viewpoints, {} stage parameters, {} clouds, {} meshes, {} hotspots, {} tours",
                path.display(),
                scene.venue.title,
                scene.assets.len(),
                scene.primitives.len(),
                scene.lights.len(),
                scene.viewpoints.len(),
                scene.params.len(),
                scene.clouds.len(),
                scene.meshes.len(),
                scene.hotspots.len(),
                scene.tours.len()
            ),
            Err(e) => {
                failed = true;
                report_scene_error(&e);
            }
        }
    }
    if failed { ExitCode::FAILURE } else { ExitCode::SUCCESS }
}

fn report_scene_error(error: &SceneError) {
    eprintln!("{error}");
    let n = error.problems().len();
    if n > 1 {
        eprintln!("{n} problems");
    }
}

/// Loads the scene, checks `--viewpoint` and `--set`, and returns what the app starts with.
fn venue_setup(args: &VenueArgs) -> Result<VenueSetup> {
    let assets = assets_root(args.assets.as_deref())?;
    let scene = match &args.scene {
        Some(path) => load_scene_file(path, &assets),
        None => load_scene_str(DEFAULT_SCENE, DEFAULT_SCENE_NAME, &assets),
    }
    .map_err(|e| anyhow::anyhow!("{e}"))
    .context("the scene cannot be used")?;
    if let Some(name) = &args.viewpoint
        && pick_viewpoint(&scene, Some(name)).is_none()
    {
        let known: Vec<&str> = scene.viewpoints.iter().map(|v| v.name.as_str()).collect();
        bail!("no viewpoint named {name:?}; the scene has: {}", known.join(", "));
    }
    let mut initial_commands = parse_sets(&scene, &args.sets)?;
    if let Some(lang) = &args.lang
        && !parvis::visit::lang::is_language_tag(lang)
    {
        bail!("--lang {lang:?}: expected a language tag such as fr or en-GB");
    }
    if let Some(tour) = &args.tour {
        if !scene.tours.iter().any(|t| &t.name == tour) {
            let known: Vec<&str> = scene.tours.iter().map(|t| t.name.as_str()).collect();
            bail!("no tour named {tour:?}; the scene has: {}", if known.is_empty() { "(none)".into() } else { known.join(", ") });
        }
        initial_commands.push(VenueCommand::PlayTour { tour: Some(tour.clone()), language: args.lang.clone() });
    }
    if let Some(hotspot) = &args.hotspot {
        if !scene.hotspots.iter().any(|h| &h.name == hotspot) {
            let known: Vec<&str> = scene.hotspots.iter().map(|h| h.name.as_str()).collect();
            bail!("no hotspot named {hotspot:?}; the scene has: {}", if known.is_empty() { "(none)".into() } else { known.join(", ") });
        }
        initial_commands.push(VenueCommand::ShowHotspot { name: Some(hotspot.clone()) });
    }
    if let Some(log) = &args.log {
        // Open it once here so that an unwritable path is reported before anything starts.
        CommandLogFile::append_to(log).with_context(|| format!("cannot open the command log {}", log.display()))?;
    }
    let mut setup = VenueSetup::new(scene, assets);
    setup.watch = args.scene.clone();
    setup.viewpoint = args.viewpoint.clone();
    setup.initial_commands = initial_commands.into_iter().map(SubmitCommand::local).collect();
    setup.command_log = args.log.clone();
    setup.language = args.lang.clone();
    Ok(setup)
}

fn parse_sets(scene: &SceneFile, sets: &[String]) -> Result<Vec<VenueCommand>> {
    let params = StageParams::from_scene(scene);
    sets.iter()
        .map(|set| {
            let (name, text) = set
                .split_once('=')
                .with_context(|| format!("--set {set:?}: expected NAME=VALUE"))?;
            let name = name.trim();
            let value = params.parse_value(name, text).with_context(|| format!("--set {set:?}"))?;
            Ok(VenueCommand::SetParam {
                name: name.to_owned(),
                value,
            })
        })
        .collect()
}

/// Starts the audience edge and says where the page is.
fn start_audience(args: &RunArgs, setup: &VenueSetup) -> Result<Option<AudienceServer>> {
    let twitch = twitch_config(args)?;
    if args.no_audience {
        if twitch.is_some() {
            bail!("--twitch feeds the audience pipeline, which --no-audience turns off");
        }
        return Ok(None);
    }
    let web_root = setup.assets.dir().join("web");
    let mut config = AudienceConfig::new(args.audience, web_root, setup.scene.venue.title.clone());
    config.mod_token = args.mod_token.clone().filter(|t| !t.is_empty());
    if args.no_default_blocklist {
        config.blocklist = Blocklist::new(std::iter::empty::<&str>());
    }
    for path in &args.blocklist {
        let text = std::fs::read_to_string(path).with_context(|| format!("cannot read the blocklist {}", path.display()))?;
        for line in text.lines() {
            let word = line.split('#').next().unwrap_or_default().trim();
            if !word.is_empty() {
                config.blocklist.insert(word);
            }
        }
    }
    config.limits.messages_per_10s = args.rate.max(1);
    config.messages_per_10s_per_address = args.address_rate;
    config.max_connections_per_address = args.max_per_address;
    config.max_connections = args.max_connections;
    let server = AudienceServer::start(config).with_context(|| {
        format!("cannot start the audience server on {} (choose another address with --audience, or --no-audience)", args.audience)
    })?;
    eprintln!("parvis: audience page at http://{}/ (WebSocket /ws, metrics /metrics)", server.local_addr);
    if let Some(config) = twitch {
        let what = format!("{} on {}{}", config.channels.join(", "), config.endpoint, if config.login.is_some() { "" } else { ", read-only" });
        let bridge = parvis::bridge::twitch::TwitchBridge::new(config)?;
        parvis::bridge::start(&server, Box::new(bridge), "twitch:");
        eprintln!("parvis: reading the chat of {what}");
    }
    Ok(Some(server))
}

fn attach_audience(app: &mut bevy::app::App, server: AudienceServer, args: &RunArgs) {
    app.insert_resource(server);
    let mut audience = app.world_mut().resource_mut::<parvis::audience::Audience>();
    audience.chat_lines_per_second = args.chat_display_rate;
    audience.stream_delay = stream_delay(args);
}

fn stream_delay(args: &RunArgs) -> Duration {
    Duration::from_secs_f64(if args.stream_delay.is_finite() { args.stream_delay.clamp(0.0, 600.0) } else { 0.0 })
}

/// The Twitch bridge's settings from the command line and the environment, checked.
fn twitch_config(args: &RunArgs) -> Result<Option<parvis::bridge::twitch::TwitchConfig>> {
    use parvis::bridge::twitch::{Login, TwitchConfig};
    let Some(channels) = &args.twitch else { return Ok(None) };
    let mut config = TwitchConfig::new(channels);
    if let Some(server) = &args.twitch_server {
        config.endpoint = server.parse().context("--twitch-server")?;
    }
    if let Some(path) = &args.twitch_ca {
        let pem = std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
        config.trust_pem(&pem).with_context(|| format!("--twitch-ca {}", path.display()))?;
    }
    let token = std::env::var("PARVIS_TWITCH_TOKEN").ok().filter(|t| !t.trim().is_empty());
    config.login = match (&args.twitch_nick, token) {
        (Some(nick), Some(token)) => Some(Login::new(nick, &token)),
        (Some(_), None) => bail!("--twitch-nick needs the bot's OAuth token in the PARVIS_TWITCH_TOKEN environment variable"),
        (None, Some(_)) => bail!("PARVIS_TWITCH_TOKEN is set: name the bot account with --twitch-nick too, or unset it to read anonymously"),
        (None, None) => None,
    };
    config.validate().context("--twitch")?;
    Ok(Some(config))
}

fn run(args: RunArgs) -> Result<()> {
    let mut setup = venue_setup(&args.venue)?;
    let has_display = std::env::var_os("DISPLAY").is_some_and(|d| !d.is_empty());
    if let Some(mode) = args.xr.xr.filter(|_| !args.no_render) {
        match parvis::xr::probe() {
            Ok(runtime) => {
                let child_log = std::env::var_os(XR_CHILD_ENV).map(PathBuf::from);
                if mode == XrModeArg::Require || child_log.is_some() {
                    if child_log.is_some() {
                        setup.command_log = child_log;
                    }
                    let audience = start_audience(&args, &setup)?;
                    return run_xr(setup, audience, &args, runtime, has_display && !args.headless);
                }
                supervise_xr(&args, &mut setup)?;
            }
            Err(e) if mode == XrModeArg::Require => bail!("--xr=require: {e}"),
            Err(e) => eprintln!("parvis: no headset session: {e}. Carrying on at the desktop (--xr=require exits instead)."),
        }
    }
    let audience = start_audience(&args, &setup)?;
    if args.no_render {
        return run_without_rendering(setup, audience, &args);
    }
    if has_display && !args.headless {
        let limit = (args.frames > 0).then(|| FrameLimit {
            frames: args.frames,
            screenshot: args.screenshot.clone(),
        });
        let mut app = windowed_app(setup, limit);
        if let Some(server) = audience {
            attach_audience(&mut app, server, &args);
        }
        return match app.run() {
            bevy::app::AppExit::Success => Ok(()),
            bevy::app::AppExit::Error(code) => bail!("the window closed with error code {code}"),
        };
    }
    if !args.headless {
        eprintln!("parvis: no display (DISPLAY is not set): running headless, rendering offscreen at {}x{}", args.size.x, args.size.y);
    }
    run_headless(setup, audience, &args)
}

/// Set in the child process a `--xr` visit runs in: the command log to write.
const XR_CHILD_ENV: &str = "PARVIS_XR_CHILD_LOG";

/// Runs the headset session in a child process, so that a runtime that goes away (which
/// bevy_mod_openxr cannot survive) ends the child, not the visit. When the child ends for that
/// reason, the show's state is restored from the child's command log into `setup` and the
/// caller carries the visit on at the desktop; otherwise this process ends with the child's
/// exit status.
fn supervise_xr(args: &RunArgs, setup: &mut VenueSetup) -> Result<()> {
    use std::io::{Read, Seek, SeekFrom};
    use std::os::unix::fs::DirBuilderExt;
    use std::os::unix::process::ExitStatusExt;
    // Without --log, the child logs into a folder only this user can enter, made fresh (a
    // file another user could have planted would be replayed with the origins it claims).
    let (log, private_dir) = match &args.venue.log {
        Some(path) => (path.clone(), None),
        None => {
            let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.subsec_nanos());
            let dir = std::env::temp_dir().join(format!("parvis-xr-{}-{nanos:08x}", std::process::id()));
            std::fs::DirBuilder::new().mode(0o700).create(&dir).with_context(|| format!("cannot make a private folder {}", dir.display()))?;
            (dir.join("session.jsonl"), Some(dir))
        }
    };
    let cleanup = || {
        if let Some(dir) = &private_dir {
            let _ = std::fs::remove_dir_all(dir);
        }
    };
    // The log may hold earlier shows (it is appended to): only the child's part is restored.
    let start = std::fs::metadata(&log).map(|m| m.len()).unwrap_or(0);
    let status = std::process::Command::new(std::env::current_exe().context("cannot find the parvis binary")?)
        .args(std::env::args_os().skip(1))
        .env(XR_CHILD_ENV, &log)
        .status();
    let status = match status {
        Ok(status) => status,
        Err(e) => {
            cleanup();
            bail!("cannot start the headset session: {e}");
        }
    };
    // A crash of the runtime's client library or the driver (when the service dies under it)
    // is a lost runtime too; an interrupt or a kill by the user ends the visit.
    let crashed = matches!(status.signal(), Some(6 | 7 | 11));
    if status.code() != Some(i32::from(parvis::xr::EXIT_RUNTIME_LOST)) && !crashed {
        cleanup();
        if let Some(signal) = status.signal() {
            eprintln!("parvis: the headset session was stopped by signal {signal}");
            std::process::exit(128 + signal);
        }
        std::process::exit(status.code().unwrap_or(1));
    }
    let mut file = std::fs::File::open(&log).with_context(|| format!("cannot read the headset session's command log {}", log.display()))?;
    file.seek(SeekFrom::Start(start))?;
    let mut text = String::new();
    file.read_to_string(&mut text).with_context(|| format!("cannot read {}", log.display()))?;
    cleanup();
    // A line the child was writing when it died is cut short: only whole lines count.
    let whole = text.rfind('\n').map_or("", |end| &text[..=end]);
    let entries = read_command_log(whole.as_bytes()).with_context(|| format!("{}", log.display()))?;
    if let Some(scene) = entries.iter().rev().find_map(|e| match &e.command {
        VenueCommand::LoadScene { scene } => Some((**scene).clone()),
        _ => None,
    }) {
        setup.scene = scene;
    }
    // Every applied command again, with its origin, so the stage is as the headset left it;
    // not the passing ones (bursts, audience texts, tours), which would all replay at once.
    let lasting: Vec<_> = entries
        .iter()
        .filter(|e| !matches!(e.command, VenueCommand::SpawnEffect { .. } | VenueCommand::ShowText { .. } | VenueCommand::HideText { .. } | VenueCommand::PlayTour { .. }))
        .collect();
    setup.initial_commands = lasting.iter().map(|e| e.resubmit()).collect();
    // The venue's own first load plus the restored ones are in the user's log already.
    setup.log_skip = lasting.len() + 1;
    eprintln!("parvis: the headset session is over (its runtime went away); the visit carries on at the desktop with the show's state restored ({} commands)", lasting.len());
    Ok(())
}

fn run_xr(setup: VenueSetup, audience: Option<AudienceServer>, args: &RunArgs, runtime: parvis::xr::RuntimeInfo, window: bool) -> Result<()> {
    use parvis::xr::locomotion::{ComfortSettings, Posture};
    use parvis::xr::spectator::SpectatorMode;
    use parvis::xr::{XrMode, XrVisitSettings};
    let xr = &args.xr;
    eprintln!("parvis: headset session through {} on {}", runtime.runtime, runtime.system);
    let comfort = ComfortSettings {
        snap_turn_degrees: xr.snap_turn,
        smooth_turn: xr.smooth_turn,
        walk_speed: xr.walk_speed,
        vignette: !xr.no_vignette,
        posture: if xr.seated { Posture::Seated { raise: 0.45 } } else { Posture::Standing },
        reduced_motion: xr.reduced_motion,
        ..Default::default()
    };
    let settings = XrVisitSettings {
        comfort,
        spectator: match xr.spectator {
            SpectatorArg::FirstPerson => SpectatorMode::FirstPerson,
            SpectatorArg::ThirdPerson => SpectatorMode::ThirdPerson,
            SpectatorArg::Off => SpectatorMode::Off,
        },
        frames: args.frames,
        report: xr.xr_report.clone(),
        mode: if xr.xr == Some(XrModeArg::Require) { XrMode::Require } else { XrMode::Prefer },
        ..Default::default()
    };
    let options = parvis::app::XrAppOptions { settings, runtime: Some(runtime), window, spectator_size: args.size, spectator_out: xr.spectator_out.clone() };
    let mut app = parvis::app::xr_app(setup, options);
    // The probe passed but OpenXR's own start failed (it fell back to a plain renderer): this
    // process cannot show a headset; the supervisor (with --xr) carries on at the desktop.
    if matches!(app.world().get_resource::<bevy_mod_xr::session::XrState>(), Some(bevy_mod_xr::session::XrState::Unavailable)) {
        eprintln!("parvis: OpenXR could not start a session on this runtime (see the log above); exiting");
        std::process::exit(i32::from(parvis::xr::EXIT_RUNTIME_LOST));
    }
    if let Some(server) = audience {
        attach_audience(&mut app, server, args);
    }
    match app.run() {
        bevy::app::AppExit::Success => Ok(()),
        bevy::app::AppExit::Error(code) if code.get() == parvis::xr::EXIT_RUNTIME_LOST => {
            eprintln!("parvis: the OpenXR runtime went away mid-session; exiting");
            std::process::exit(i32::from(parvis::xr::EXIT_RUNTIME_LOST));
        }
        bevy::app::AppExit::Error(code) => bail!("the headset session stopped with error code {code}"),
    }
}

/// Paces frames at `fps`, and reports the median frame time every 5 seconds.
struct FramePacer {
    budget: Duration,
    times: Vec<f64>,
    last_report: Instant,
    frame: u64,
    label: &'static str,
}

impl FramePacer {
    fn new(fps: f64, label: &'static str) -> Self {
        Self { budget: Duration::from_secs_f64(1.0 / fps.max(1.0)), times: Vec::new(), last_report: Instant::now(), frame: 0, label }
    }

    fn frame(&mut self, step: impl FnOnce()) {
        let start = Instant::now();
        step();
        let took = start.elapsed();
        self.times.push(took.as_secs_f64() * 1000.0);
        self.frame += 1;
        if self.last_report.elapsed() >= Duration::from_secs(5) {
            self.times.sort_by(f64::total_cmp);
            eprintln!("parvis: {} frame {}: median {:.2} ms over the last {} frames", self.label, self.frame, self.times[self.times.len() / 2], self.times.len());
            self.times.clear();
            self.last_report = Instant::now();
        }
        if let Some(rest) = self.budget.checked_sub(took) {
            std::thread::sleep(rest);
        }
    }
}

fn run_without_rendering(setup: VenueSetup, audience: Option<AudienceServer>, args: &RunArgs) -> Result<()> {
    let mut app = parvis::app::core_app(setup);
    if let Some(server) = audience {
        attach_audience(&mut app, server, args);
    }
    app.finish();
    app.cleanup();
    eprintln!("parvis: running without rendering at {} frames per second", args.fps);
    let mut pacer = FramePacer::new(args.fps, "state");
    while args.frames == 0 || pacer.frame < args.frames {
        pacer.frame(|| app.update());
        if let Some(exit) = app.should_exit() {
            return match exit {
                bevy::app::AppExit::Success => Ok(()),
                bevy::app::AppExit::Error(code) => bail!("the venue stopped with error code {code}"),
            };
        }
    }
    Ok(())
}

fn run_headless(setup: VenueSetup, audience: Option<AudienceServer>, args: &RunArgs) -> Result<()> {
    let mut renderer = HeadlessRenderer::new(setup, args.size);
    if let Some(server) = audience {
        attach_audience(renderer.app_mut(), server, args);
    }
    renderer.wait_until_ready().context("the venue did not load")?;
    let mut pacer = FramePacer::new(args.fps, "headless");
    while args.frames == 0 || pacer.frame < args.frames {
        pacer.frame(|| renderer.step());
    }
    Ok(())
}

fn render(args: RenderArgs) -> Result<()> {
    let setup = venue_setup(&args.venue)?;
    let mut renderer = HeadlessRenderer::new(setup, args.size);
    renderer.wait_until_ready().context("the venue did not load")?;
    for _ in 0..args.frames {
        renderer.step();
    }
    let image = renderer.capture()?;
    save_png(&image, &args.out)?;
    eprintln!("parvis: wrote {} ({}x{})", args.out.display(), image.width(), image.height());
    Ok(())
}

fn loadgen(args: &LoadgenArgs) -> Result<()> {
    let mut config = parvis::loadgen::LoadConfig::new(args.addr);
    config.active = args.active;
    config.idle = args.idle;
    config.rate_per_conn = args.rate;
    config.duration = Duration::from_secs_f64(args.seconds.max(0.0));
    config.command_share = args.command_share;
    config.command_text = args.command.clone();
    config.ramp = Duration::from_secs_f64(args.ramp.max(0.0));
    config.server_pid = args.server_pid;
    config.per_source_address = args.per_source_address;
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build()?;
    let report = runtime.block_on(parvis::loadgen::run(config))?;
    println!("{}", report.to_markdown());
    if let Some(path) = &args.json {
        std::fs::write(path, serde_json::to_string_pretty(&report)?).with_context(|| format!("cannot write {}", path.display()))?;
    }
    Ok(())
}

fn import(args: &ImportArgs) -> Result<()> {
    let cache = match &args.cache {
        Some(dir) => dir.clone(),
        None => args.input.parent().unwrap_or(std::path::Path::new(".")).join(".parvis-cache"),
    };
    let extension = args.input.extension().and_then(|e| e.to_str()).map(str::to_ascii_lowercase).unwrap_or_default();
    if matches!(extension.as_str(), "glb" | "gltf") {
        return import_mesh(args, &cache);
    }
    let config = parvis::heritage::octree::OctreeConfig { max_points_per_node: args.points_per_node.clamp(100, 1_000_000), ..Default::default() };
    let progress = std::sync::Arc::new(parvis::heritage::Progress::default());
    let imported = with_progress(&progress, || parvis::heritage::import(&args.input, &cache, config, &progress))?;
    let index = &imported.index;
    if imported.cached {
        println!("{} was imported before: {}", args.input.display(), imported.dir.display());
    } else {
        let [read, built, written] = imported.timings.map(|d| d.as_secs_f64());
        let rate = index.points as f64 / read.max(1e-9);
        println!(
            "imported {} points into {} nodes in {}: read {read:.2} s ({rate:.0} points/s), octree {built:.2} s, written {written:.2} s{}",
            index.points,
            index.nodes.len(),
            imported.dir.display(),
            if index.dropped > 0 { format!("; {} duplicate points left out", index.dropped) } else { String::new() },
        );
    }
    let depth = index.nodes.iter().map(|n| n.depth).max().unwrap_or(0);
    println!(
        "origin {:?}; {} levels; colour {}, intensity {}, classification {}",
        index.origin,
        depth + 1,
        index.attributes.colour,
        index.attributes.intensity,
        index.attributes.classification
    );
    // A scene entry to paste: the folder works as `path` too, relative to the assets root.
    let name = args.input.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_else(|| "scan".into());
    println!();
    println!("Paste into the scene's `clouds: [...]` (path relative to the assets root; the venue finds this import");
    println!("in .parvis-cache next to the scan, or give the import's folder as the path; fill in the credit):");
    println!("        (name: {name:?}, path: {:?},", args.input.to_string_lossy());
    println!("            transform: (translation: (0.0, 0.0, 0.0)), // a Z-up scan needs rotation: (-90.0, 0.0, 0.0)");
    println!("            colouring: {}, point_budget: 3000000, memory_budget_mb: 512,", match (index.attributes.colour, index.attributes.intensity) {
        (true, _) => "Rgb",
        (false, true) => "Intensity",
        // Nothing but positions: height shows the shape.
        (false, false) => "Elevation",
    });
    println!("            credit: (author: \"\", licence: \"\", source: \"\")),");
    Ok(())
}

/// Runs `f` while a thread draws `progress` on stderr.
fn with_progress<T>(progress: &std::sync::Arc<parvis::heritage::Progress>, f: impl FnOnce() -> T) -> T {
    let shown = progress.clone();
    let done = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let finished = done.clone();
    let bar = std::thread::spawn(move || show_progress(&shown, &finished));
    let result = f();
    done.store(true, std::sync::atomic::Ordering::Relaxed);
    let _ = bar.join();
    result
}

fn import_mesh(args: &ImportArgs, cache: &std::path::Path) -> Result<()> {
    let progress = std::sync::Arc::new(parvis::heritage::Progress::default());
    let started = Instant::now();
    let imported = with_progress(&progress, || parvis::heritage::mesh::import_mesh(&args.input, cache, &progress))?;
    let index = &imported.index;
    if imported.cached {
        println!("{} was imported before: {}", args.input.display(), imported.dir.display());
    } else {
        let chunks: usize = index.parts.iter().map(|p| p.chunks.len()).sum();
        let seconds = started.elapsed().as_secs_f64();
        println!(
            "imported {} triangles in {} parts, {chunks} chunks, into {} in {seconds:.2} s ({:.0} triangles/s)",
            index.triangles,
            index.parts.len(),
            imported.dir.display(),
            index.triangles as f64 / seconds.max(1e-9)
        );
    }
    let deepest = index.parts.iter().flat_map(|p| &p.chunks).map(|c| c.levels.len()).max().unwrap_or(0);
    let coarsest: u64 = index.parts.iter().flat_map(|p| &p.chunks).map(|c| u64::from(c.levels.last().map_or(0, |l| l.triangles))).sum();
    println!("{deepest} levels of detail; the coarsest has {coarsest} triangles");
    for note in &index.notes {
        println!("note: {note}");
    }
    let name = args.input.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_else(|| "scan".into());
    println!();
    println!("Paste into the scene's `meshes: [...]` (path relative to the assets root; fill in the credit):");
    println!("        (name: {name:?}, path: {:?}, max_error_px: 1.0,", args.input.to_string_lossy());
    println!("            credit: (author: \"\", licence: \"\", source: \"\")),");
    Ok(())
}

/// The import's progress on stderr: a bar redrawn in place on a terminal, a line per step
/// in a log.
fn show_progress(progress: &parvis::heritage::Progress, done: &std::sync::atomic::AtomicBool) {
    use std::io::{IsTerminal, Write};
    let terminal = std::io::stderr().is_terminal();
    let started = Instant::now();
    let mut seen = 0;
    let mut last_tenth = None;
    loop {
        let finished = done.load(std::sync::atomic::Ordering::Relaxed);
        let step = progress.step();
        let fraction = progress.fraction();
        let elapsed = started.elapsed().as_secs_f32();
        let steps = progress.steps();
        if steps.len() > seen {
            if terminal && seen > 0 {
                eprintln!();
            }
            for begun in &steps[seen..] {
                if !terminal || begun != &step {
                    eprintln!("parvis: import: {begun} ({elapsed:.1} s)");
                }
            }
            seen = steps.len();
            last_tenth = None;
        }
        if let Some(f) = fraction {
            let tenth = (f * 10.0) as u32;
            if terminal {
                let filled = (f * 30.0) as usize;
                eprint!("\rparvis: import: {step:<20} [{}{}] {:>3.0} % ({elapsed:.1} s)", "#".repeat(filled), "-".repeat(30 - filled), f * 100.0);
                let _ = std::io::stderr().flush();
            } else if last_tenth != Some(tenth) && tenth > 0 {
                eprintln!("parvis: import: {step} {:.0} % ({elapsed:.1} s)", f * 100.0);
                last_tenth = Some(tenth);
            }
        } else if terminal && !step.is_empty() {
            eprint!("\rparvis: import: {step:<20} ({elapsed:.1} s)");
            let _ = std::io::stderr().flush();
        }
        if finished {
            if terminal {
                eprintln!();
            }
            return;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn replay(args: &ReplayArgs) -> Result<()> {
    let assets = assets_root(args.assets.as_deref())?;
    let file = std::fs::File::open(&args.log).with_context(|| format!("cannot open {}", args.log.display()))?;
    let entries = read_command_log(std::io::BufReader::new(file)).with_context(|| format!("{}", args.log.display()))?;
    let Some(scene) = entries.iter().find_map(|e| match &e.command {
        VenueCommand::LoadScene { scene } => Some((**scene).clone()),
        _ => None,
    }) else {
        bail!("{}: the log has no load_scene command, so there is no venue to replay onto", args.log.display());
    };
    let mut setup = VenueSetup::new(scene, assets);
    setup.viewpoint = args.viewpoint.clone();
    // Every entry keeps its origin, so permissions apply exactly as they did live.
    setup.initial_commands = entries.iter().map(LoggedCommand::resubmit).collect();
    let mut renderer = args.out.as_ref().map(|_| HeadlessRenderer::new(setup.clone(), args.size));
    let mut core = match renderer {
        Some(_) => None,
        None => Some(parvis::app::core_app(setup)),
    };
    // Animations end on their value at once: a replay's final state does not wait for them.
    let world = if let Some(r) = renderer.as_mut() {
        r.wait_until_ready().context("the venue did not load")?;
        r.app_mut().world_mut().resource_mut::<StageParams>().settle();
        r.step();
        r.app_mut().world_mut()
    } else {
        let app = core.as_mut().expect("one of the two");
        app.update();
        app.world_mut().resource_mut::<StageParams>().settle();
        app.world_mut()
    };
    let log = world.resource::<CommandLog>();
    // The setup's own load of the first scene is one more applied command than the log holds.
    let (applied, refused) = (log.applied().saturating_sub(1), log.refused());
    println!("replayed {} entries: {applied} applied, {refused} refused", entries.len());
    if let Some(params) = world.get_resource::<StageParams>() {
        for (def, value) in params.iter() {
            println!("  {} = {value}", def.name);
        }
    }
    println!("state hash {:016x}", venue_state_hash(world));
    if let (Some(r), Some(out)) = (renderer.as_mut(), &args.out) {
        let image = r.capture()?;
        save_png(&image, out)?;
        eprintln!("parvis: wrote {} ({}x{})", out.display(), image.width(), image.height());
    }
    if refused > 0 {
        bail!("{refused} logged commands were refused on replay: the replayed show differs from the live one");
    }
    Ok(())
}
