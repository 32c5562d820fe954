//! The program output on the command line: `--stream` and `--record` of `parvis run`, and
//! `parvis render --video`. Every target and setting is checked before the venue starts, with
//! errors that name the problem and never the stream key.

use std::sync::Arc;

use anyhow::{Context, Result, bail};
use bevy::prelude::*;

use super::args::OutputArgs;
use parvis::edges::program::{ProgramOutput, QUEUE, check_target, choose_encoder, find_program};
use parvis::engine::audience::hub::AudienceLink;
use parvis::engine::program::{ProgramFeed, ProgramOverlays, ProgramStats};
use parvis::engine::show::clock::ShowClock;
use parvis::model::program::{OutputSettings, OutputTarget};

/// Set in tests: network outputs must be on this machine.
const LOOPBACK_ONLY_ENV: &str = "PARVIS_OUTPUT_LOOPBACK_ONLY";

/// The outputs asked for, read and checked.
pub fn targets(args: &OutputArgs) -> Result<Vec<OutputTarget>> {
    let loopback_only = std::env::var_os(LOOPBACK_ONLY_ENV).is_some_and(|v| !v.is_empty() && v != "0");
    let mut out = Vec::new();
    for given in &args.stream {
        // `env:NAME` keeps the key out of the process list.
        let url = match given.strip_prefix("env:") {
            Some(name) => std::env::var(name)
                .with_context(|| format!("--stream env:{name}: the environment variable {name} is not set"))?,
            None => given.clone(),
        };
        let target = OutputTarget::parse(&url).map_err(|e| anyhow::anyhow!("--stream {e}"))?;
        if !target.is_stream() {
            bail!("--stream {}: a file is recorded with --record", target.redacted());
        }
        check_target(&target, loopback_only).map_err(|e| anyhow::anyhow!("--stream {e}"))?;
        out.push(target);
    }
    for given in &args.record {
        let target = OutputTarget::parse(given).map_err(|e| anyhow::anyhow!("--record {e}"))?;
        if target.is_stream() {
            bail!("--record {}: a network output is sent with --stream", target.redacted());
        }
        check_target(&target, loopback_only).map_err(|e| anyhow::anyhow!("--record {e}"))?;
        out.push(target);
    }
    Ok(out)
}

/// What a program output needs, checked before the venue starts.
pub struct Program {
    /// Where it goes.
    pub targets: Vec<OutputTarget>,
    /// Size, rates, encoder.
    pub settings: OutputSettings,
    /// The ffmpeg found.
    pub ffmpeg: std::path::PathBuf,
}

/// Size, rates and the encoder, checked: ffmpeg is found once, and run once to try the encoder.
pub fn settings(args: &OutputArgs, size: UVec2, fps: u32) -> Result<(OutputSettings, std::path::PathBuf)> {
    let mut settings = OutputSettings {
        width: size.x,
        height: size.y,
        fps,
        video_kbps: args.video_kbps,
        audio_kbps: args.audio_kbps,
        keyframe_seconds: args.keyframe_seconds,
        encoder: String::new(),
    };
    settings.check()?;
    let ffmpeg = find_program(&args.ffmpeg).with_context(|| {
        format!("cannot find {} (install Debian's ffmpeg package, or give --ffmpeg PATH)", args.ffmpeg.display())
    })?;
    settings.encoder = choose_encoder(&ffmpeg, args.encoder.as_deref())?;
    Ok((settings, ffmpeg))
}

/// Starts the program output of `app`, whose camera marked `ProgramCamera` renders at
/// `settings`' size: the show's mixer plays into it, its overlays are drawn, `/metrics` gets
/// its counters. `patient`: an offline render, which waits for the encoder.
pub fn attach_program(app: &mut App, program: Program, frame_code: bool, patient: bool) -> Result<()> {
    let Program { targets, settings, ffmpeg } = program;
    let stats = Arc::new(ProgramStats::default());
    let (tx, rx) = std::sync::mpsc::sync_channel(QUEUE);
    for t in &targets {
        eprintln!(
            "parvis: program output to {} ({}x{} at {} fps, {} at {} kbit/s, AAC {} kbit/s)",
            t.redacted(),
            settings.width,
            settings.height,
            settings.fps,
            settings.encoder,
            settings.video_kbps,
            settings.audio_kbps
        );
    }
    let fps = settings.fps;
    let output = ProgramOutput::start(targets, settings, ffmpeg, stats.clone(), rx, patient)?;
    let world = app.world_mut();
    if let Some(link) = world.get_resource::<AudienceLink>() {
        link.hub.metric_sections.write().expect("metric sections").push(stats.clone());
    }
    // The show's music goes into the program (and no longer to a sound card).
    world.insert_resource(ShowClock::for_program());
    if !patient {
        // Live, the stream's clock is the venue's: a frame that stalls up to a second (slow
        // rendering) is caught up rather than lost from the stream (Bevy's cap is 250 ms).
        world.resource_mut::<Time<Virtual>>().set_max_delta(std::time::Duration::from_secs(1));
    }
    let mut overlays = world.resource_mut::<ProgramOverlays>();
    overlays.enabled = true;
    if frame_code {
        overlays.visible.insert(parvis::model::program::Overlay::Stamp);
    }
    world.insert_resource(ProgramFeed::new(tx, stats, fps));
    world.insert_resource(output);
    Ok(())
}

/// `--stream-delay auto`: reads the playback URL's frame code every 30 s; the venue's
/// audience windows then use the measured delay.
pub fn measure_delay(app: &mut App, args: &super::args::RunArgs, ffmpeg: &std::path::Path) -> Result<()> {
    use super::args::StreamDelayArg;
    let (StreamDelayArg::Auto, Some(url)) = (args.stream_delay, &args.playback_url) else { return Ok(()) };
    let world = app.world_mut();
    let feed = world.resource::<ProgramFeed>();
    let (stats, fps) = (feed.stats.clone(), args.output.output_fps);
    let shown = parvis::model::program::redact_url(url);
    eprintln!("parvis: measuring the stream's delay from {shown} every 30 s");
    let meter = parvis::edges::program::DelayMeter::start(
        url.clone(),
        ffmpeg.to_owned(),
        stats,
        bevy::math::UVec2::new(args.size.x, args.size.y),
        fps,
    )?;
    world.insert_resource(meter);
    Ok(())
}
