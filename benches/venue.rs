//! Benchmarks of the venue: scene loading (parse + validate), and headless frame time of the
//! default venue on the current adapter. Run with `scripts/bench.sh` (see docs/benchmarks.md).
//!
//! A bench binary rather than criterion: a rendered frame takes hundreds of milliseconds on
//! lavapipe, so a fixed number of samples with median and spread says more than criterion's
//! adaptive sampling, and it needs no extra build.

use std::time::Instant;

use bevy::prelude::UVec2;
use parvis::app::VenueSetup;
use parvis::app::headless::HeadlessRenderer;
use parvis::model::assets_root::AssetsRoot;
use parvis::model::scene::DEFAULT_SCENE;
use parvis::model::scene::validate::{load_scene_str, parse_scene};

fn stats(label: &str, unit: &str, mut samples: Vec<f64>) {
    samples.sort_by(f64::total_cmp);
    let pick = |q: f64| samples[((samples.len() - 1) as f64 * q).round() as usize];
    println!(
        "{label:<44} n={:<4} median {:>10.3} {unit}  p10 {:>10.3}  p90 {:>10.3}  min {:>10.3}",
        samples.len(),
        pick(0.5),
        pick(0.1),
        pick(0.9),
        samples[0]
    );
}

fn time_ms(f: impl FnOnce()) -> f64 {
    let start = Instant::now();
    f();
    start.elapsed().as_secs_f64() * 1000.0
}

fn arg(name: &str, default: u32) -> u32 {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

fn main() {
    // `cargo bench` passes `--bench`; filters are not supported, everything runs.
    let assets = AssetsRoot::new(concat!(env!("CARGO_MANIFEST_DIR"), "/assets"));
    println!("scene: scenes/cloister.ron ({} bytes)", DEFAULT_SCENE.len());

    let parse: Vec<f64> = (0..300).map(|_| time_ms(|| drop(parse_scene(DEFAULT_SCENE).unwrap())) * 1000.0).collect();
    stats("scene parse", "µs", parse);
    let load: Vec<f64> = (0..300)
        .map(|_| time_ms(|| drop(load_scene_str(DEFAULT_SCENE, "cloister.ron", &assets).unwrap())) * 1000.0)
        .collect();
    stats("scene parse + validate (incl. asset checks)", "µs", load);

    let frames = arg("PARVIS_BENCH_FRAMES", 40);
    for (width, height) in [(1280, 720), (640, 360)] {
        let scene = load_scene_str(DEFAULT_SCENE, "cloister.ron", &assets).unwrap();
        let mut renderer = None;
        let ready = time_ms(|| {
            let mut r = HeadlessRenderer::new(VenueSetup::new(scene, assets.clone()), UVec2::new(width, height));
            r.wait_until_ready().expect("venue loads");
            renderer = Some(r);
        });
        println!(
            "{:<44} {ready:.0} ms (app start, pipeline compilation, models, first frames)",
            format!("venue ready at {width}x{height}")
        );
        let mut renderer = renderer.unwrap();
        for _ in 0..5 {
            renderer.step();
        }
        let samples: Vec<f64> = (0..frames).map(|_| time_ms(|| renderer.step())).collect();
        stats(&format!("frame {width}x{height} (render + GPU wait)"), "ms", samples);
    }
}
