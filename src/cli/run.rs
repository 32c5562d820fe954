//! `parvis run`: a venue in a window, headless, or with no rendering, with its edges attached.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

use super::args::*;
use super::audience::{
    attach_audience, attach_captions, attach_osc, attach_performers, attach_timecode, start_audience,
};
use super::venue::venue_setup;
use super::xr::{XR_CHILD_ENV, run_xr, supervise_xr};
use parvis::app::headless::HeadlessRenderer;
use parvis::app::shutdown::{self, close_edges};
use parvis::app::{FrameLimit, VenueSetup, windowed_app};
use parvis::edges::audience::server::AudienceServer;
use parvis::engine::command::LogSync;
use parvis::engine::rest::Rest;
use parvis::model::command::read_command_log_recovering;

/// Runs the venue until it is closed, interrupted, or has shown `--frames` frames.
pub fn run(mut args: RunArgs) -> Result<()> {
    super::signals::watch();
    if args.nats.shard.is_some() && !args.nats.follow {
        bail!("--shard runs a follower as an overflow shard: use it with `parvis follow`");
    }
    if args.output.any() && args.no_render {
        bail!("--stream and --record send the rendered picture: they cannot go with --no-render");
    }
    if args.output.any() && args.xr.xr.is_some() {
        bail!("--stream and --record do not run with --xr yet: stream from a desktop or headless venue");
    }
    if args.stream_delay == StreamDelayArg::Auto && (args.playback_url.is_none() || args.output.stream.is_empty()) {
        bail!("--stream-delay auto measures the delay of a stream: give --stream URL and --playback-url URL");
    }
    // Every output and setting is checked before anything starts.
    let program = program_output(&args)?;
    let mut setup = venue_setup(&args.venue)?;
    if args.play
        && let Some(show) = &args.venue.show
    {
        setup.initial_commands.push(parvis::engine::command::SubmitCommand::local(
            parvis::model::command::VenueCommand::Transport {
                show: show.clone(),
                action: parvis::model::command::TransportAction::Play,
            },
        ));
    }
    setup.log_sync = match args.log_sync {
        LogSyncArg::Frame => LogSync::Frame,
        LogSyncArg::Never => LogSync::Never,
    };
    if let Some(path) = &args.resume {
        resume(&mut setup, path)?;
    }
    let has_display = std::env::var_os("DISPLAY").is_some_and(|d| !d.is_empty());
    if let Some(mode) = args.xr.xr.filter(|_| !args.no_render) {
        match parvis::engine::xr::probe() {
            Ok(runtime) => {
                let child_log = std::env::var_os(XR_CHILD_ENV).map(PathBuf::from);
                if mode == XrModeArg::Require || child_log.is_some() {
                    if child_log.is_some() {
                        setup.command_log = child_log;
                    }
                    // Here, not before the supervisor: the process that runs the venue connects,
                    // and reads the log as it is when it starts.
                    super::nats::prepare(&args, &mut setup)?;
                    let audience = start_audience(&args, &setup)?;
                    return run_xr(setup, audience, &args, runtime, has_display && !args.headless);
                }
                supervise_xr(&args, &mut setup)?;
                // The headset's process started the new log; carrying on at the desktop must
                // not delete what it wrote.
                args.nats.nats_new_log = false;
            }
            Err(e) if mode == XrModeArg::Require => bail!("--xr=require: {e}"),
            Err(e) => {
                eprintln!("parvis: no headset session: {e}. Carrying on at the desktop (--xr=require exits instead).");
            }
        }
    }
    super::nats::prepare(&args, &mut setup)?;
    let audience = start_audience(&args, &setup)?;
    if args.no_render {
        return run_without_rendering(setup, audience, &args);
    }
    if has_display && !args.headless {
        let limit = (args.frames > 0).then(|| FrameLimit { frames: args.frames, screenshot: args.screenshot.clone() });
        let resting = limit.is_none() && !args.no_rest;
        let title = setup.scene.venue.title.clone();
        let performers = setup.scene.performers.clone();
        let mut app = windowed_app(setup, limit);
        if resting && program.is_none() {
            parvis::app::rest_when_idle(&mut app);
        }
        if let Some(server) = audience {
            attach_audience(&mut app, server, &args);
        }
        attach_osc(&mut app, &args, &title)?;
        attach_performers(&mut app, &args, &performers)?;
        attach_captions(&mut app, &args)?;
        attach_timecode(&mut app, &args)?;
        super::nats::attach_nats(&mut app, &args)?;
        if let Some(program) = program {
            // The window shows the visitor's view; the program has a camera of its own.
            let size = bevy::math::UVec2::new(program.settings.width, program.settings.height);
            let world = app.world_mut();
            let target = parvis::engine::output::readable_target(
                &mut world.resource_mut::<bevy::asset::Assets<bevy::image::Image>>(),
                size,
            );
            parvis::engine::program::spawn_program_camera(world, target);
            let ffmpeg = program.ffmpeg.clone();
            super::program::attach_program(&mut app, program, frame_code(&args), false)?;
            super::program::measure_delay(&mut app, &args, &ffmpeg)?;
        }
        let exit = app.run();
        close_edges(app.world_mut());
        return match exit {
            bevy::app::AppExit::Success => Ok(()),
            bevy::app::AppExit::Error(code) => bail!("the window closed with error code {code}"),
        };
    }
    if !args.headless {
        eprintln!(
            "parvis: no display (DISPLAY is not set): running headless, rendering offscreen at {}x{}",
            args.size.x, args.size.y
        );
    }
    run_headless(setup, audience, &args, program)
}

/// `parvis follow`: refuses what would make the follower's venue differ from its authority's,
/// then runs it like `run`.
pub fn follow(mut args: RunArgs) -> Result<()> {
    if args.nats.nats.is_none() {
        bail!("follow needs --nats URL (or PARVIS_NATS_URL): the NATS server of the venue's authority");
    }
    // A follower shows its authority's venue: commands of its own would make it differ, so
    // every input that issues venue commands is refused, by name.
    let inputs = [
        ("--osc", args.osc.is_some()),
        ("--osc-out", !args.osc_out.is_empty()),
        ("--oscquery", args.oscquery.is_some()),
        ("--twitch", args.twitch.is_some()),
        ("--captions-audio", args.captions_audio.is_some()),
        ("--play", args.play),
        ("--resume", args.resume.is_some()),
        ("--set", !args.venue.sets.is_empty()),
        ("--show", args.venue.show.is_some()),
        ("--ltc", args.ltc.is_some()),
        ("--mtc", args.mtc.is_some()),
        ("--nats-new-log", args.nats.nats_new_log),
        ("--tour", args.venue.tour.is_some()),
    ];
    if let Some((flag, _)) = inputs.iter().find(|(_, given)| *given) {
        bail!(
            "{flag} issues venue commands, and a follower takes none of its own: it applies its authority's log. Give {flag} to the authority (`parvis run --nats`)"
        );
    }
    match &args.nats.shard {
        // An overflow shard: its audience's effects are its own, the main stage the authority's.
        Some(shard) => {
            if parvis::model::net::check_edge_id(shard).is_err() {
                bail!("--shard {shard:?}: use 1 to {} lower-case letters or digits", parvis::model::net::MAX_EDGE_ID);
            }
            if args.no_audience {
                bail!("--shard serves an audience of its own: leave out --no-audience");
            }
            if args.venue.log.is_some() {
                bail!(
                    "--log with --shard: a shard applies the authority's numbered commands and its audience's between them, so its log could not be one numbered sequence; the authority's log is on NATS"
                );
            }
        }
        None => args.no_audience = true,
    }
    args.nats.follow = true;
    run(args)
}

/// The outputs and their settings, checked before anything starts; `None` without outputs.
fn program_output(args: &RunArgs) -> Result<Program> {
    if !args.output.any() {
        return Ok(None);
    }
    let targets = super::program::targets(&args.output)?;
    let (settings, ffmpeg) = super::program::settings(&args.output, args.size, args.output.output_fps)?;
    Ok(Some(super::program::Program { targets, settings, ffmpeg }))
}

/// Whether output frames carry the frame code: asked for, or needed to measure the delay.
fn frame_code(args: &RunArgs) -> bool {
    args.output.frame_code || args.stream_delay == StreamDelayArg::Auto
}

/// Carries on the show logged in `path`, appending to it.
fn resume(setup: &mut VenueSetup, path: &std::path::Path) -> Result<()> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("cannot read the command log {}", path.display()))?;
    let (entries, cut) = read_command_log_recovering(&text).with_context(|| format!("{}", path.display()))?;
    if cut > 0 {
        eprintln!("parvis: {}: the last line was cut short ({cut} bytes) and is left out", path.display());
    }
    let Some(restored) = setup.resume_from(&entries) else {
        bail!("{}: the log has no load_scene command, so there is no show to carry on", path.display());
    };
    let last = entries.iter().map(|e| e.seq).max().unwrap_or(0);
    eprintln!("parvis: carrying on the show of {}: {restored} commands restored, up to #{last}", path.display());
    setup.command_log = Some(path.to_owned());
    Ok(())
}

/// Whether the venue may rest between changes: not in a run of a set number of frames (whose
/// count means frames), nor with --no-rest.
fn allow_rest(world: &mut bevy::prelude::World, args: &RunArgs) {
    world.resource_mut::<Rest>().enabled = args.frames == 0 && !args.no_rest;
}

/// While the venue needs no frame, waits for the doorbell (input from an edge), the venue's
/// own next wake-up time, or a stop.
fn rest_while_idle(world: &bevy::prelude::World) {
    let rest = world.resource::<Rest>();
    if rest.needs_frames() {
        return;
    }
    let (doorbell, until) = (rest.doorbell.clone(), rest.next_wake());
    // In slices, so that a stop asked by a signal is seen within a fifth of a second.
    while !shutdown::requested() && Instant::now() < until {
        if doorbell.wait(until.min(Instant::now() + Duration::from_millis(200))) {
            break;
        }
    }
}

/// Paces frames at `fps`, and reports the median frame time every 5 seconds.
pub struct FramePacer {
    budget: Duration,
    times: Vec<f64>,
    last_report: Instant,
    frame: u64,
    label: &'static str,
}

impl FramePacer {
    fn new(fps: f64, label: &'static str) -> Self {
        Self {
            budget: Duration::from_secs_f64(1.0 / fps.max(1.0)),
            times: Vec::new(),
            last_report: Instant::now(),
            frame: 0,
            label,
        }
    }

    fn frame(&mut self, step: impl FnOnce()) {
        let start = Instant::now();
        step();
        let took = start.elapsed();
        self.times.push(took.as_secs_f64() * 1000.0);
        self.frame += 1;
        if self.last_report.elapsed() >= Duration::from_secs(5) {
            self.times.sort_by(f64::total_cmp);
            eprintln!(
                "parvis: {} frame {}: median {:.2} ms, longest {:.2} ms over the last {} frames",
                self.label,
                self.frame,
                self.times[self.times.len() / 2],
                self.times[self.times.len() - 1],
                self.times.len()
            );
            self.times.clear();
            self.last_report = Instant::now();
        }
        if let Some(rest) = self.budget.checked_sub(took) {
            std::thread::sleep(rest);
        }
    }
}

pub fn run_without_rendering(setup: VenueSetup, audience: Option<AudienceServer>, args: &RunArgs) -> Result<()> {
    let title = setup.scene.venue.title.clone();
    let performers = setup.scene.performers.clone();
    let mut app = parvis::app::core_app(setup);
    // A server's warnings (refused commands and packets, lost peers) reach its operator.
    app.add_plugins(parvis::app::log_plugin());
    if let Some(server) = audience {
        attach_audience(&mut app, server, args);
    }
    attach_osc(&mut app, args, &title)?;
    attach_performers(&mut app, args, &performers)?;
    attach_captions(&mut app, args)?;
    attach_timecode(&mut app, args)?;
    super::nats::attach_nats(&mut app, args)?;
    app.finish();
    app.cleanup();
    eprintln!("parvis: running without rendering at {} frames per second", args.fps);
    let mut pacer = FramePacer::new(args.fps, "state");
    let mut result = Ok(());
    allow_rest(app.world_mut(), args);
    while (args.frames == 0 || pacer.frame < args.frames) && !shutdown::requested() {
        rest_while_idle(app.world());
        pacer.frame(|| app.update());
        if let Some(exit) = app.should_exit() {
            if let bevy::app::AppExit::Error(code) = exit {
                result = Err(anyhow::anyhow!("the venue stopped with error code {code}"));
            }
            break;
        }
    }
    close_edges(app.world_mut());
    result
}

type Program = Option<super::program::Program>;

pub fn run_headless(
    setup: VenueSetup,
    audience: Option<AudienceServer>,
    args: &RunArgs,
    program: Program,
) -> Result<()> {
    let title = setup.scene.venue.title.clone();
    let performers = setup.scene.performers.clone();
    let mut renderer = HeadlessRenderer::new(setup, args.size);
    if let Some(server) = audience {
        attach_audience(renderer.app_mut(), server, args);
    }
    attach_osc(renderer.app_mut(), args, &title)?;
    attach_performers(renderer.app_mut(), args, &performers)?;
    attach_captions(renderer.app_mut(), args)?;
    attach_timecode(renderer.app_mut(), args)?;
    super::nats::attach_nats(renderer.app_mut(), args)?;
    if let Some(program) = program {
        let ffmpeg = program.ffmpeg.clone();
        super::program::attach_program(renderer.app_mut(), program, frame_code(args), false)?;
        super::program::measure_delay(renderer.app_mut(), args, &ffmpeg)?;
    }
    renderer.wait_until_ready().context("the venue did not load")?;
    // The venue's time: the wall clock when it goes out live (a slow renderer must not slow
    // the stream's sound), else one frame's worth per frame at the paced rate.
    let step = if args.output.any() {
        bevy::time::TimeUpdateStrategy::Automatic
    } else {
        bevy::time::TimeUpdateStrategy::ManualDuration(Duration::from_secs_f64(1.0 / args.fps.max(1.0)))
    };
    renderer.app_mut().insert_resource(step);
    let mut pacer = FramePacer::new(args.fps, "headless");
    allow_rest(renderer.app_mut().world_mut(), args);
    while (args.frames == 0 || pacer.frame < args.frames) && !shutdown::requested() {
        rest_while_idle(renderer.app_mut().world());
        pacer.frame(|| renderer.step());
    }
    close_edges(renderer.app_mut().world_mut());
    Ok(())
}
