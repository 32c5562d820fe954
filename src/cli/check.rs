//! `parvis check`: validates scene files (and the models they name) and prints one line per
//! problem, then one per warning.

use std::process::ExitCode;

use super::args::*;
use super::venue::assets_root;
use parvis::model::scene::validate::{SceneError, load_scene_file, scene_warnings};

pub fn check(args: &CheckArgs) -> ExitCode {
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
            Ok(scene) => {
                // What leaves the venue usable but not as written (a model's missing texture).
                let text = std::fs::read_to_string(path).unwrap_or_default();
                for warning in scene_warnings(&scene, &text, &assets) {
                    eprintln!("{}:{warning}: warning", path.display());
                }
                println!(
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
                );
            }
            Err(e) => {
                failed = true;
                report_scene_error(&e);
            }
        }
    }
    if failed { ExitCode::FAILURE } else { ExitCode::SUCCESS }
}

pub fn report_scene_error(error: &SceneError) {
    eprintln!("{error}");
    let n = error.problems().len();
    if n > 1 {
        eprintln!("{n} problems");
    }
}
