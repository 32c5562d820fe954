//! `parvis run --xr`: the headset session, in a supervised child process so that a runtime that goes away ends the child, not the visit.

use anyhow::{Context, Result, bail};

use super::args::*;
use super::audience::attach_audience;
use parvis::app::VenueSetup;
use parvis::edges::audience::server::AudienceServer;
use parvis::model::command::read_command_log;

/// Set in the child process a `--xr` visit runs in: the command log to write.
pub const XR_CHILD_ENV: &str = "PARVIS_XR_CHILD_LOG";

/// Runs the headset session in a child process, so that a runtime that goes away (which
/// bevy_mod_openxr cannot survive) ends the child, not the visit. When the child ends for that
/// reason, the show's state is restored from the child's command log into `setup` and the
/// caller carries the visit on at the desktop; otherwise this process ends with the child's
/// exit status.
pub fn supervise_xr(args: &RunArgs, setup: &mut VenueSetup) -> Result<()> {
    use std::io::{Read, Seek, SeekFrom};
    use std::os::unix::fs::DirBuilderExt;
    use std::os::unix::process::ExitStatusExt;
    // Without --log, the child logs into a folder only this user can enter, made fresh (a
    // file another user could have planted would be replayed with the origins it claims).
    let (log, private_dir) = match &args.venue.log {
        Some(path) => (path.clone(), None),
        None => {
            let nanos =
                std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.subsec_nanos());
            let dir = std::env::temp_dir().join(format!("parvis-xr-{}-{nanos:08x}", std::process::id()));
            std::fs::DirBuilder::new()
                .mode(0o700)
                .create(&dir)
                .with_context(|| format!("cannot make a private folder {}", dir.display()))?;
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
    if status.code() != Some(i32::from(parvis::engine::xr::EXIT_RUNTIME_LOST)) && !crashed {
        cleanup();
        if let Some(signal) = status.signal() {
            eprintln!("parvis: the headset session was stopped by signal {signal}");
            std::process::exit(128 + signal);
        }
        std::process::exit(status.code().unwrap_or(1));
    }
    let mut file = std::fs::File::open(&log)
        .with_context(|| format!("cannot read the headset session's command log {}", log.display()))?;
    file.seek(SeekFrom::Start(start))?;
    let mut text = String::new();
    file.read_to_string(&mut text).with_context(|| format!("cannot read {}", log.display()))?;
    cleanup();
    // A line the child was writing when it died is cut short: only whole lines count.
    let whole = text.rfind('\n').map_or("", |end| &text[..=end]);
    let entries = read_command_log(whole.as_bytes()).with_context(|| format!("{}", log.display()))?;
    // Every applied command again, with its origin, so the stage is as the headset left it.
    let restored = setup.resume_from(&entries).unwrap_or(0);
    eprintln!(
        "parvis: the headset session is over (its runtime went away); the visit carries on at the desktop with the show's state restored ({} commands)",
        restored
    );
    Ok(())
}

pub fn run_xr(
    setup: VenueSetup,
    audience: Option<AudienceServer>,
    args: &RunArgs,
    runtime: parvis::engine::xr::RuntimeInfo,
    window: bool,
) -> Result<()> {
    use parvis::engine::xr::locomotion::{ComfortSettings, Posture};
    use parvis::engine::xr::spectator::SpectatorMode;
    use parvis::engine::xr::{XrMode, XrVisitSettings};
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
    let options = parvis::app::XrAppOptions {
        settings,
        runtime: Some(runtime),
        window,
        spectator_size: args.size,
        spectator_out: xr.spectator_out.clone(),
    };
    let performers = setup.scene.performers.clone();
    let mut app = parvis::app::xr_app(setup, options);
    // The probe passed but OpenXR's own start failed (it fell back to a plain renderer): this
    // process cannot show a headset; the supervisor (with --xr) carries on at the desktop.
    if matches!(
        app.world().get_resource::<bevy_mod_xr::session::XrState>(),
        Some(bevy_mod_xr::session::XrState::Unavailable)
    ) {
        eprintln!("parvis: OpenXR could not start a session on this runtime (see the log above); exiting");
        std::process::exit(i32::from(parvis::engine::xr::EXIT_RUNTIME_LOST));
    }
    if let Some(server) = audience {
        attach_audience(&mut app, server, args);
    }
    super::audience::attach_performers(&mut app, args, &performers)?;
    super::audience::attach_captions(&mut app, args)?;
    super::nats::attach_nats(&mut app, args)?;
    let exit = app.run();
    parvis::app::shutdown::close_edges(app.world_mut());
    match exit {
        bevy::app::AppExit::Success => Ok(()),
        bevy::app::AppExit::Error(code) if code.get() == parvis::engine::xr::EXIT_RUNTIME_LOST => {
            eprintln!("parvis: the OpenXR runtime went away mid-session; exiting");
            std::process::exit(i32::from(parvis::engine::xr::EXIT_RUNTIME_LOST));
        }
        bevy::app::AppExit::Error(code) => bail!("the headset session stopped with error code {code}"),
    }
}
