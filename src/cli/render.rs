//! `parvis render`: one frame of a venue, headless, into a PNG; with `--show NAME --at S`, the
//! venue as the show leaves it at that moment; with `--video FILE`, the show as a video with
//! its sound, frame by frame at a fixed time step (the offline capture for trailers and
//! archives: as deterministic as the venue, faster or slower than real time).

use std::path::Path;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

use super::args::*;
use super::venue::venue_setup;
use parvis::app::headless::HeadlessRenderer;
use parvis::edges::program::{check_target, choose_encoder, find_program};
use parvis::engine::output::save_png;
use parvis::engine::program::{ProgramFeed, ProgramOverlays};
use parvis::engine::show::Shows;
use parvis::model::command::{TransportAction, VenueCommand};
use parvis::model::program::{OutputSettings, OutputTarget};

pub fn render(args: RenderArgs) -> Result<()> {
    if let Some(video) = &args.video {
        return render_video(&args, video);
    }
    let Some(out) = &args.out else { bail!("--out FILE.png is needed (or --video FILE.mp4)") };
    let setup = venue_setup(&args.venue)?;
    let mut renderer = HeadlessRenderer::new(setup, args.size);
    renderer.app_mut().world_mut().resource_mut::<ProgramOverlays>().enabled = args.program;
    renderer.wait_until_ready().context("the venue did not load")?;
    if let (Some(show), Some(at)) = (&args.venue.show, args.at) {
        let fired = renderer.play_show_to(show, at).context("the show did not play")?;
        eprintln!("parvis: show {show} played to {at} s: {fired} cues fired");
    }
    for _ in 0..args.frames {
        renderer.step();
    }
    let image = renderer.capture()?;
    save_png(&image, out)?;
    eprintln!("parvis: wrote {} ({}x{})", out.display(), image.width(), image.height());
    Ok(())
}

fn render_video(args: &RenderArgs, video: &str) -> Result<()> {
    let Some(show) = args.venue.show.clone() else { bail!("--video renders a show: give --show NAME") };
    let target = OutputTarget::parse(video).map_err(|e| anyhow::anyhow!("--video {e}"))?;
    if target.is_stream() {
        bail!("--video {}: a file (.mkv or .mp4); to stream, use parvis run --stream", target.redacted());
    }
    check_target(&target, false).map_err(|e| anyhow::anyhow!("--video {e}"))?;
    let mut settings = OutputSettings { width: args.size.x, height: args.size.y, fps: args.fps, ..Default::default() };
    settings.check()?;
    let ffmpeg = find_program(Path::new("ffmpeg")).context("cannot find ffmpeg (install Debian's ffmpeg package)")?;
    // The same encoder a stream would use; an archive wants quality more than speed, but one
    // encoder path is one thing to test.
    settings.encoder = choose_encoder(&ffmpeg, None)?;
    let setup = venue_setup(&args.venue)?;
    let mut renderer = HeadlessRenderer::new(setup, args.size);
    renderer.wait_until_ready().context("the venue did not load")?;
    // The output starts with the show: loading frames are not part of the film.
    let program = super::program::Program { targets: vec![target.clone()], settings, ffmpeg };
    super::program::attach_program(renderer.app_mut(), program, args.frame_code, true)?;
    let step = 1.0 / f64::from(args.fps);
    renderer.app_mut().insert_resource(bevy::time::TimeUpdateStrategy::ManualDuration(Duration::from_secs_f64(step)));
    renderer.submit(VenueCommand::Transport { show: show.clone(), action: TransportAction::Play });
    renderer.step();
    let (length, position) = {
        let shows = renderer.app_mut().world().resource::<Shows>();
        let running = shows.running.as_ref().filter(|r| r.plan.name == show).context("the show did not start")?;
        (running.plan.length(), running.position)
    };
    let end = match (args.at, length) {
        (Some(at), _) => at,
        (None, Some(length)) => length,
        (None, None) => bail!("show {show:?} has no known length (a song without a readable track): give --at SECONDS"),
    };
    let frames = ((end - position) / step).ceil().max(0.0) as u64;
    eprintln!(
        "parvis: rendering show {show} to {end:.2} s: {frames} frames at {} fps into {}",
        args.fps,
        target.redacted()
    );
    let started = Instant::now();
    let mut said = Instant::now();
    let stats = renderer.app_mut().world().resource::<ProgramFeed>().stats.clone();
    for frame in 0..frames {
        renderer.step();
        // Offline, the encoder sets the pace: wait while the queue to it is long (a frame
        // not yet read back needs more frames, so the queue is never waited empty).
        let waited = Instant::now();
        while stats.queued.load(Ordering::Relaxed) > 16 && waited.elapsed() < Duration::from_secs(60) {
            std::thread::sleep(Duration::from_millis(2));
        }
        if said.elapsed() > Duration::from_secs(5) {
            eprintln!(
                "parvis: frame {frame}/{frames} ({:.1} frames/s)",
                frame as f64 / started.elapsed().as_secs_f64()
            );
            said = Instant::now();
        }
    }
    // The last pictures are still being read back: a few more frames bring them in.
    for _ in 0..parvis::engine::program::MAX_IN_FLIGHT {
        renderer.step();
    }
    parvis::app::shutdown::close_edges(renderer.app_mut().world_mut());
    let (grabbed, dropped, repeated) = (
        stats.frames_grabbed.load(Ordering::Relaxed),
        stats.frames_dropped.load(Ordering::Relaxed),
        stats.frames_repeated.load(Ordering::Relaxed),
    );
    let failed = stats.targets.lock().ok().and_then(|t| t.first().filter(|t| t.state != "stopped").cloned());
    if let Some(t) = failed {
        bail!("the video {} was not finished: {}", t.name, t.last_error);
    }
    let restarts = stats.targets.lock().ok().and_then(|t| t.first().map(|t| t.restarts)).unwrap_or(0);
    if restarts > 0 {
        bail!("the encoder had to start again {restarts} times: the video is split into numbered files");
    }
    eprintln!(
        "parvis: wrote {} ({frames} frames in {:.1} s; {grabbed} read back, {dropped} dropped, {repeated} repeated)",
        target.redacted(),
        started.elapsed().as_secs_f64()
    );
    Ok(())
}
