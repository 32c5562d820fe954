//! What `run` and `render` share: the assets folder, the scene, and the commands the command line adds (`--set`, `--tour`, `--hotspot`, `--show`), checked before anything starts.

use std::path::Path;

use anyhow::{Context, Result, bail};

use super::args::*;
use parvis::app::VenueSetup;
use parvis::engine::camera::pick_viewpoint;
use parvis::engine::command::{CommandLogFile, SubmitCommand};
use parvis::model::assets_root::AssetsRoot;
use parvis::model::command::{TransportAction, VenueCommand};
use parvis::model::params::StageParams;
use parvis::model::scene::format::SceneFile;
use parvis::model::scene::validate::{load_scene_file, load_scene_str};
use parvis::model::scene::{DEFAULT_SCENE, DEFAULT_SCENE_NAME};

pub fn assets_root(arg: Option<&Path>) -> Result<AssetsRoot> {
    let root = match arg {
        Some(dir) => AssetsRoot::new(dir),
        None => AssetsRoot::discover(),
    };
    if !root.dir().is_dir() {
        bail!("assets folder {} does not exist", root.dir().display());
    }
    Ok(root)
}

/// Loads the scene, checks `--viewpoint` and `--set`, and returns what the app starts with.
pub fn venue_setup(args: &VenueArgs) -> Result<VenueSetup> {
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
        && !parvis::model::lang::is_language_tag(lang)
    {
        bail!("--lang {lang:?}: expected a language tag such as fr or en-GB");
    }
    if let Some(tour) = &args.tour {
        if !scene.tours.iter().any(|t| &t.name == tour) {
            let known: Vec<&str> = scene.tours.iter().map(|t| t.name.as_str()).collect();
            bail!(
                "no tour named {tour:?}; the scene has: {}",
                if known.is_empty() { "(none)".into() } else { known.join(", ") }
            );
        }
        initial_commands.push(VenueCommand::PlayTour { tour: Some(tour.clone()), language: args.lang.clone() });
    }
    if let Some(hotspot) = &args.hotspot {
        if !scene.hotspots.iter().any(|h| &h.name == hotspot) {
            let known: Vec<&str> = scene.hotspots.iter().map(|h| h.name.as_str()).collect();
            bail!(
                "no hotspot named {hotspot:?}; the scene has: {}",
                if known.is_empty() { "(none)".into() } else { known.join(", ") }
            );
        }
        initial_commands.push(VenueCommand::ShowHotspot { name: Some(hotspot.clone()) });
    }
    if let Some(show) = &args.show {
        if !scene.shows.iter().any(|s| &s.name == show) {
            let known: Vec<&str> = scene.shows.iter().map(|s| s.name.as_str()).collect();
            bail!(
                "no show named {show:?}; the scene has: {}",
                if known.is_empty() { "(none)".into() } else { known.join(", ") }
            );
        }
        // Loads it onto the transport, at its start, without playing.
        initial_commands.push(VenueCommand::Transport { show: show.clone(), action: TransportAction::Stop });
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
    if let Some(path) = &args.performers {
        setup.performances = read_performances(path)?;
    }
    Ok(setup)
}

pub fn parse_sets(scene: &SceneFile, sets: &[String]) -> Result<Vec<VenueCommand>> {
    let params = StageParams::from_scene(scene);
    sets.iter()
        .map(|set| {
            let (name, text) = set.split_once('=').with_context(|| format!("--set {set:?}: expected NAME=VALUE"))?;
            let name = name.trim();
            let value = params.parse_value(name, text).with_context(|| format!("--set {set:?}"))?;
            Ok(VenueCommand::SetParam { name: name.to_owned(), value })
        })
        .collect()
}

/// Reads a performance recording; an error names the file and the byte where it breaks.
pub fn read_performances(path: &std::path::Path) -> Result<Vec<parvis::model::performer::recording::PoseRecord>> {
    let bytes = std::fs::read(path).with_context(|| format!("--performers: cannot read {}", path.display()))?;
    parvis::model::performer::recording::read(&bytes)
        .map_err(|e| anyhow::anyhow!("--performers {}: {e}", path.display()))
}
