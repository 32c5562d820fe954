//! The cost of a crash-safe command log (issue #15): frames of a venue without a renderer that
//! each apply K commands, with the log synced every busy frame (`--log-sync frame`, the
//! default) and without (`never`). The difference is what durability costs a frame.
//!
//! `cargo bench --profile perf --bench log_sync`; results in docs/benchmarks.md.

use std::time::{Duration, Instant};

use parvis::app::{VenueSetup, core_app};
use parvis::engine::command::{LogSync, SubmitCommand};
use parvis::model::assets_root::AssetsRoot;
use parvis::model::command::VenueCommand;
use parvis::model::params::ParamValue;
use parvis::model::scene::DEFAULT_SCENE;
use parvis::model::scene::validate::parse_scene;

const FRAMES: usize = 400;

fn median_frame(sync: LogSync, per_frame: usize) -> (Duration, Duration) {
    let dir = std::env::temp_dir().join(format!("parvis-log-sync-{}", std::process::id()));
    let _ = std::fs::create_dir_all(&dir);
    let log = dir.join(format!("{sync:?}-{per_frame}.jsonl"));
    let _ = std::fs::remove_file(&log);
    let scene = parse_scene(DEFAULT_SCENE).expect("the built-in scene");
    let mut setup = VenueSetup::new(scene, AssetsRoot::discover());
    setup.command_log = Some(log.clone());
    setup.log_sync = sync;
    let mut app = core_app(setup);
    app.update();
    let mut times = Vec::with_capacity(FRAMES);
    for frame in 0..FRAMES {
        for i in 0..per_frame {
            let fog = ((frame * per_frame + i) % 200) as f32 / 1000.0;
            app.world_mut().write_message(SubmitCommand::local(VenueCommand::SetParam {
                name: "fog".into(),
                value: ParamValue::Float(fog),
            }));
        }
        let start = Instant::now();
        app.update();
        times.push(start.elapsed());
    }
    times.sort();
    let _ = std::fs::remove_file(&log);
    (times[times.len() / 2], times[times.len() * 99 / 100])
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    println!(
        "| commands per frame | frame, log synced (p50 / p99) | frame, not synced (p50 / p99) | sync cost (p50) |"
    );
    println!("|---|---|---|---|");
    for per_frame in [1, 10, 100] {
        let synced = median_frame(LogSync::Frame, per_frame);
        let unsynced = median_frame(LogSync::Never, per_frame);
        let ms = |d: Duration| d.as_secs_f64() * 1000.0;
        println!(
            "| {per_frame} | {:.2} / {:.2} ms | {:.2} / {:.2} ms | {:.2} ms |",
            ms(synced.0),
            ms(synced.1),
            ms(unsynced.0),
            ms(unsynced.1),
            ms(synced.0.saturating_sub(unsynced.0))
        );
    }
}
