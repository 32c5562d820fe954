//! The `parvis` command: parses the command line and hands each subcommand to its module
//! under `cli/`, which assembles the venue's app (`parvis::app`) with its edges.

mod cli;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

use cli::args::*;

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
    /// Render the venue of an authority's command log on NATS (`run --nats`): catch up from
    /// its latest snapshot and the log after it, then apply every command it logs, in a window,
    /// headless (--headless), without rendering (--no-render) or in a headset (--xr). A
    /// follower takes no commands of its own; its visitor (viewpoint, language, tour) is local.
    /// With --shard, an overflow shard: it also serves an audience of its own, whose effects
    /// stay on this instance while the main stage's state comes from the authority.
    Follow(Box<RunArgs>),
    /// Serve a venue's audience on this machine for its authority elsewhere (`run --nats`): the
    /// audience page, its WebSockets, per-member limits and moderation, with no venue and no
    /// rendering; accepted events go to the authority over NATS, and what it says comes back
    /// to this edge's members. Edges can be added and removed while a show runs.
    Edge(Box<RunArgs>),
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

fn main() -> ExitCode {
    quiet_error_backtraces();
    install_panic_message();
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Check(args) => return cli::check::check(&args),
        Command::Run(args) => cli::run::run(*args),
        Command::Follow(args) => cli::run::follow(*args),
        Command::Edge(args) => cli::nats::edge(*args),
        Command::Render(args) => cli::render::render(args),
        Command::Replay(args) => cli::replay::replay(&args),
        Command::Loadgen(args) => cli::loadgen::command(&args),
        Command::Import(args) => cli::import::import(&args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("parvis: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// Bevy captures a backtrace into every error it makes when `RUST_BACKTRACE` is set, and prints
/// it with the error: a curator's broken texture read as a crash, the clear line lost below
/// it. `RUST_LIB_BACKTRACE=0` stops that capture and leaves panics their backtraces; set by
/// hand, it wins.
fn quiet_error_backtraces() {
    if std::env::var_os("RUST_LIB_BACKTRACE").is_none() {
        #[allow(unsafe_code, reason = "the first thing main does: no other thread reads the environment yet")]
        // SAFETY: no other thread exists yet, so none reads the environment while it changes.
        unsafe {
            std::env::set_var("RUST_LIB_BACKTRACE", "0");
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
        let lost =
            ["ERROR_INSTANCE_LOST", "ERROR_SESSION_LOST", "ERROR_RUNTIME_FAILURE"].iter().any(|e| message.contains(e));
        if parvis::engine::xr::SESSION_STARTED.load(std::sync::atomic::Ordering::SeqCst)
            && place.contains("bevy_mod_openxr")
            && lost
        {
            eprintln!("parvis: the OpenXR runtime went away mid-session ({message}); exiting");
            std::process::exit(i32::from(parvis::engine::xr::EXIT_RUNTIME_LOST));
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
