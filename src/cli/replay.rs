//! `parvis replay`: re-applies a command log and prints the final state and its hash; with `--out`, renders it.

use anyhow::{Context, Result, bail};

use super::args::*;
use super::venue::assets_root;
use parvis::app::headless::HeadlessRenderer;
use parvis::app::replay_setup;
use parvis::engine::command::{CommandLog, VenueParams, venue_state_hash};
use parvis::engine::output::save_png;
use parvis::model::command::{LoggedCommand, read_command_log};

pub fn replay(args: &ReplayArgs) -> Result<()> {
    let assets = assets_root(args.assets.as_deref())?;
    let (entries, source) = match (&args.log, &args.nats) {
        (Some(path), _) => {
            let file = std::fs::File::open(path).with_context(|| format!("cannot open {}", path.display()))?;
            let entries =
                read_command_log(std::io::BufReader::new(file)).with_context(|| format!("{}", path.display()))?;
            (entries, path.display().to_string())
        }
        (None, Some(url)) => stream_log(args, url)?,
        (None, None) => bail!("give a command log file, or --nats URL --nats-venue NAME"),
    };
    let Some(mut setup) = replay_setup(&entries, assets) else {
        bail!("{source}: the log has no load_scene command, so there is no venue to replay onto");
    };
    setup.viewpoint = args.viewpoint.clone();
    if let Some(path) = &args.performers {
        setup.performances = super::venue::read_performances(path)?;
    }
    let mut renderer = args.out.as_ref().map(|_| HeadlessRenderer::new(setup.clone(), args.size));
    let mut core = match renderer {
        Some(_) => None,
        None => Some(parvis::app::core_app(setup)),
    };
    // Animations end on their value at once: a replay's final state does not wait for them.
    let world = if let Some(r) = renderer.as_mut() {
        r.wait_until_ready().context("the venue did not load")?;
        r.app_mut().world_mut().resource_mut::<VenueParams>().settle();
        r.step();
        r.app_mut().world_mut()
    } else {
        let app = core.as_mut().expect("one of the two");
        app.update();
        app.world_mut().resource_mut::<VenueParams>().settle();
        app.world_mut()
    };
    let log = world.resource::<CommandLog>();
    // The setup's own load of the first scene is one more applied command than the log holds.
    let (applied, refused) = (log.applied().saturating_sub(1), log.refused());
    println!("replayed {} entries: {applied} applied, {refused} refused", entries.len());
    if let Some(params) = world.get_resource::<VenueParams>() {
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

/// The whole command log of a venue's JetStream stream, from its first command.
fn stream_log(args: &ReplayArgs, url: &str) -> Result<(Vec<LoggedCommand>, String)> {
    let Some(name) = &args.nats_venue else {
        bail!("--nats needs --nats-venue NAME: the venue whose log to replay (its subjects are parvis.NAME.*)");
    };
    let node = super::nats::connect(url, args.nats_ca.as_deref(), name, &format!("parvis replay {name}"))?;
    let subjects = node.subjects.clone();
    let history = node.whole_log()?;
    if history.refused > 0 {
        eprintln!("parvis: {} messages on {} were not logged commands and are left out", history.refused, subjects.log);
    }
    node.close(std::time::Duration::ZERO);
    Ok((history.entries, format!("stream {}", subjects.log_stream)))
}
