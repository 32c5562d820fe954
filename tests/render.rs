//! Rendering tests on a real adapter (lavapipe on machines without a GPU): the default venue
//! against a committed golden image, and commands that change exactly the pixels they should.

use std::path::PathBuf;
use std::process::Command;

use bevy::prelude::*;
use parvis::app::VenueSetup;
use parvis::app::headless::HeadlessRenderer;
use parvis::engine::output::{diff_images, save_png};
use parvis::engine::scene::venue::VenueIndex;
use parvis::model::assets_root::AssetsRoot;
use parvis::model::command::VenueCommand;
use parvis::model::params::ParamValue;
use parvis::model::scene::DEFAULT_SCENE;
use parvis::model::scene::format::Colour;
use parvis::model::scene::validate::load_scene_str;

const SIZE: UVec2 = UVec2::new(320, 180);

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn out_dir() -> PathBuf {
    let dir = std::env::temp_dir().join("parvis-render-test");
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn renderer() -> HeadlessRenderer {
    let assets = AssetsRoot::new(root().join("assets"));
    let scene = load_scene_str(DEFAULT_SCENE, "cloister.ron", &assets).unwrap();
    let mut renderer = HeadlessRenderer::new(VenueSetup::new(scene, assets), SIZE);
    renderer.wait_until_ready().expect("the default venue loads");
    renderer
}

/// Screen rectangle (x0, y0, x1, y1) covered by an entity's box, from the camera's projection.
fn screen_box(renderer: &mut HeadlessRenderer, name: &str, half_size: Vec3) -> (f32, f32, f32, f32) {
    let camera = renderer.camera();
    let world = renderer.app_mut().world_mut();
    let target = world.resource::<VenueIndex>().get(name)[0];
    let centre = *world.get::<GlobalTransform>(target).unwrap();
    let (cam, cam_transform) = (world.get::<Camera>(camera).unwrap(), world.get::<GlobalTransform>(camera).unwrap());
    let mut rect = (f32::MAX, f32::MAX, f32::MIN, f32::MIN);
    for i in 0..8 {
        let corner = Vec3::new(
            if i & 1 == 0 { -1.0 } else { 1.0 },
            if i & 2 == 0 { -1.0 } else { 1.0 },
            if i & 4 == 0 { -1.0 } else { 1.0 },
        ) * half_size;
        let p =
            cam.world_to_viewport(cam_transform, centre.transform_point(corner)).expect("box in front of the camera");
        rect = (rect.0.min(p.x), rect.1.min(p.y), rect.2.max(p.x), rect.3.max(p.y));
    }
    rect
}

#[test]
fn default_venue_matches_golden_and_commands_change_the_right_pixels() {
    let mut renderer = renderer();
    let base = renderer.capture().expect("capture");
    save_png(&base, &out_dir().join("cloister.png")).unwrap();

    // 1. Golden image, with a tolerance for driver differences.
    let golden_path = root().join("tests/golden/cloister_overview_320x180.png");
    if std::env::var_os("PARVIS_UPDATE_GOLDEN").is_some() {
        save_png(&base, &golden_path).unwrap();
        eprintln!("golden image updated: {}", golden_path.display());
    }
    let golden = image::open(&golden_path).expect("golden image committed").to_rgba8();
    let diff = diff_images(&golden, &base, 24).expect("same size as the golden image");
    let share = diff.pixels_over as f64 / f64::from(SIZE.x * SIZE.y);
    if diff.mean_abs > 1.5 || share > 0.005 {
        save_png(&diff.heatmap, &out_dir().join("cloister-diff.png")).unwrap();
        panic!(
            "render differs from {}: mean |Δ| {:.3}, max |Δ| {}, {} pixels ({:.2}%) over 24 in {:?}; \
             actual and difference written to {}",
            golden_path.display(),
            diff.mean_abs,
            diff.max_abs,
            diff.pixels_over,
            share * 100.0,
            diff.bbox,
            out_dir().display()
        );
    }

    // 2. The banner's colour changes the banner's pixels and nothing else.
    let banner_box = screen_box(&mut renderer, "banner", Vec3::new(1.15, 1.5, 0.03));
    renderer.submit(VenueCommand::SetParam {
        name: "banner_colour".into(),
        value: ParamValue::Colour(Colour::parse("#20d040").unwrap()),
    });
    renderer.step();
    let green = renderer.capture().unwrap();
    save_png(&green, &out_dir().join("cloister-green-banner.png")).unwrap();
    let diff = diff_images(&base, &green, 8).unwrap();
    let (x0, y0, x1, y1) = diff.bbox.expect("the banner's pixels changed");
    let slack = 2.0;
    assert!(
        x0 as f32 >= banner_box.0 - slack
            && y0 as f32 >= banner_box.1 - slack
            && x1 as f32 <= banner_box.2 + slack
            && y1 as f32 <= banner_box.3 + slack,
        "changed pixels {:?} reach outside the banner's screen box {banner_box:?}",
        diff.bbox
    );
    let area = (banner_box.2 - banner_box.0) * (banner_box.3 - banner_box.1);
    assert!(diff.pixels_over as f32 > area * 0.3, "only {} of ~{area} banner pixels changed", diff.pixels_over);
    // The new colour is really there: the changed pixels turned green.
    let (mut greener, mut total) = (0, 0);
    for (x, y, p) in green.enumerate_pixels() {
        let q = base.get_pixel(x, y);
        if p.0[..3].iter().zip(&q.0[..3]).any(|(a, b)| a.abs_diff(*b) > 8) {
            total += 1;
            if p[1] > q[1] && p[0] < q[0] {
                greener += 1;
            }
        }
    }
    assert!(greener * 10 >= total * 9, "{greener} of {total} changed pixels turned green");

    // 3. Hiding the banner (it casts no shadow) also stays inside its box; the CLI gives the same
    //    picture as the library for the same values.
    renderer.submit(VenueCommand::SetParam {
        name: "banner_colour".into(),
        value: ParamValue::Colour(Colour::parse("#8c1c2b").unwrap()),
    });
    renderer.submit(VenueCommand::SetParam { name: "banner".into(), value: ParamValue::Bool(false) });
    renderer.step();
    let hidden = renderer.capture().unwrap();
    let diff = diff_images(&base, &hidden, 8).unwrap();
    let (x0, y0, x1, y1) = diff.bbox.expect("hiding the banner changed pixels");
    assert!(
        x0 as f32 >= banner_box.0 - slack
            && y1 as f32 <= banner_box.3 + slack
            && x1 as f32 <= banner_box.2 + slack
            && y0 as f32 >= banner_box.1 - slack
    );

    let cli_png = out_dir().join("cli-hidden-banner.png");
    let status = Command::new(env!("CARGO_BIN_EXE_parvis"))
        .args(["render", "--size", "320x180", "--set", "banner=false", "--out"])
        .arg(&cli_png)
        .current_dir(root())
        .status()
        .unwrap();
    assert!(status.success());
    let cli = image::open(&cli_png).unwrap().to_rgba8();
    let from_base = diff_images(&base, &cli, 8).unwrap();
    assert!(from_base.bbox.is_some(), "--set banner=false changed pixels");
    // The CLI's picture is the library's for the same values. Known flake, kept visible rather
    // than hidden: under the parallel render tests' load, lavapipe has drawn the building's
    // front edge up to 4 px differently in about one run in three (76 pixels, all along that
    // edge); a real difference (a wrong value, a missing model) changes thousands.
    let same = diff_images(&hidden, &cli, 8).unwrap();
    if same.pixels_over > 0 {
        same.heatmap.save(out_dir().join("cli-vs-library-heatmap.png")).unwrap();
        eprintln!("CLI and library renders differ in {} pixels, bbox {:?}", same.pixels_over, same.bbox);
    }
    assert!(
        same.pixels_over <= 150,
        "the CLI render differs from the library's in {} pixels (bbox {:?})",
        same.pixels_over,
        same.bbox
    );
    assert!(same.mean_abs < 0.5, "the CLI render differs from the library's on average by {}", same.mean_abs);

    // 4. Night falls: the sky and the lit surfaces darken across the picture.
    renderer.submit(VenueCommand::SetParam { name: "sky".into(), value: ParamValue::Enum("night".into()) });
    renderer.step();
    let night = renderer.capture().unwrap();
    save_png(&night, &out_dir().join("cloister-night.png")).unwrap();
    let luma = |img: &image::RgbaImage| {
        img.pixels().map(|p| u64::from(p[0]) + u64::from(p[1]) + u64::from(p[2])).sum::<u64>() as f64 / img.len() as f64
    };
    assert!(luma(&night) < luma(&hidden) * 0.5, "night {} vs day {}", luma(&night), luma(&hidden));
    // The sky (top-left corner) takes the night preset's colour.
    let corner = night.get_pixel(2, 2);
    assert!(corner[2] > corner[0] && corner[0] < 40, "night sky {corner:?}");
}

#[test]
fn the_desktop_window_opens_and_shows_the_venue_under_xvfb() {
    let shot = out_dir().join("window.png");
    let _ = std::fs::remove_file(&shot);
    let output = Command::new("xvfb-run")
        .args(["--auto-servernum", "--server-args=-screen 0 1280x720x24"])
        .arg(env!("CARGO_BIN_EXE_parvis"))
        // Few frames: they count from the loaded venue, so the picture is never a black one of
        // a venue still loading.
        .args(["run", "--audience", "127.0.0.1:0", "--frames", "3", "--screenshot"])
        .arg(&shot)
        .current_dir(root())
        .output()
        .expect("xvfb-run is installed by scripts/test.sh");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "window run failed:\n{stderr}");
    assert!(!stderr.contains("running headless"), "a display was available, so a window was expected:\n{stderr}");
    let image = image::open(&shot).unwrap_or_else(|e| panic!("no window screenshot ({e}):\n{stderr}")).to_rgba8();
    assert_eq!(image.dimensions(), (1280, 720));
    // A real picture has many colours: sky, stone, roof, grass, overlay text.
    let mut colours: Vec<[u8; 3]> = image.pixels().step_by(97).map(|p| [p[0] >> 3, p[1] >> 3, p[2] >> 3]).collect();
    colours.sort_unstable();
    colours.dedup();
    assert!(colours.len() > 200, "the window shows only {} distinct colours", colours.len());
    // A picture that cannot be saved fails the run, saying why.
    let output = Command::new("xvfb-run")
        .args(["--auto-servernum", "--server-args=-screen 0 320x240x24"])
        .arg(env!("CARGO_BIN_EXE_parvis"))
        .args(["run", "--audience", "127.0.0.1:0", "--frames", "3", "--screenshot"])
        .arg(out_dir().join("no-such-folder/window.png"))
        .current_dir(root())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success(), "{stderr}");
    assert!(stderr.contains("the window could not be saved to"), "{stderr}");
}

#[test]
fn without_a_display_run_goes_headless_and_says_so() {
    let log = out_dir().join("headless-run.jsonl");
    let _ = std::fs::remove_file(&log);
    let output = Command::new(env!("CARGO_BIN_EXE_parvis"))
        .args([
            "run",
            "--audience",
            "127.0.0.1:0",
            "--frames",
            "3",
            "--size",
            "160x90",
            "--set",
            "banner=false",
            "--log",
        ])
        .arg(&log)
        .env_remove("DISPLAY")
        .env_remove("WAYLAND_DISPLAY")
        .current_dir(root())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stderr}");
    assert!(
        stderr.contains("no display (DISPLAY is not set): running headless, rendering offscreen at 160x90"),
        "{stderr}"
    );
    // The run logged its two commands (the load and the --set); replaying them gives its state.
    let replay =
        Command::new(env!("CARGO_BIN_EXE_parvis")).arg("replay").arg(&log).current_dir(root()).output().unwrap();
    let stdout = String::from_utf8_lossy(&replay.stdout);
    assert!(replay.status.success(), "{stdout}{}", String::from_utf8_lossy(&replay.stderr));
    assert!(
        stdout.contains("replayed 2 entries: 2 applied, 0 refused") && stdout.contains("banner = false"),
        "{stdout}"
    );
}

#[test]
fn a_corrupt_model_fails_the_render_with_a_clear_message() {
    let dir = out_dir().join("corrupt-assets");
    std::fs::create_dir_all(dir.join("models")).unwrap();
    std::fs::write(dir.join("models/broken.gltf"), b"{ \"asset\": { \"version\": \"2.0\" }, \"scenes\": [ truncated")
        .unwrap();
    let scene = dir.join("venue.ron");
    std::fs::write(
        &scene,
        r#"(version: 1, venue: (title: "Corrupt"),
            assets: [(name: "statue", path: "models/broken.gltf", credit: (author: "x", licence: "CC0-1.0"))])"#,
    )
    .unwrap();
    let output = Command::new(env!("CARGO_BIN_EXE_parvis"))
        .args(["render", "--size", "64x64", "--assets"])
        .arg(&dir)
        .arg(&scene)
        .arg("--out")
        .arg(dir.join("out.png"))
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    // Models are checked with the scene, before any loader reads them: one clear line.
    assert!(stderr.contains("assets[0].path: models/broken.gltf: not a valid glTF file"), "{stderr}");
    assert!(!stderr.contains("panicked") && !stderr.contains("internal error"), "{stderr}");
    assert!(!dir.join("out.png").exists());
}

/// The audience page in a real browser: typing `!light red` on the page changes the venue's
/// stage light, which the command log, its replay and a render of the replay all show.
#[test]
fn typing_on_the_audience_page_changes_the_venue() {
    use std::io::{BufRead, BufReader};
    let log = out_dir().join("e2e.jsonl");
    let _ = std::fs::remove_file(&log);
    let mut venue = Command::new(env!("CARGO_BIN_EXE_parvis"))
        .args(["run", "--headless", "--size", "160x90", "--fps", "60", "--audience", "127.0.0.1:0", "--log"])
        .arg(&log)
        .current_dir(root())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    let stderr = BufReader::new(venue.stderr.take().unwrap());
    std::thread::spawn(move || {
        for line in stderr.lines().map_while(Result::ok) {
            if let Some(url) = line.split("audience page at ").nth(1) {
                let _ = tx.send(url.split_whitespace().next().unwrap_or_default().to_owned());
            }
        }
    });
    let url = rx.recv_timeout(std::time::Duration::from_secs(60)).expect("the venue prints its audience page URL");
    let shot = out_dir().join("audience-page.png");
    let e2e = Command::new("node")
        .arg(root().join("tests/e2e/audience.mjs"))
        .arg(&url)
        .env("PARVIS_E2E_SCREENSHOT", &shot)
        .output()
        .expect("node is installed by scripts/test.sh");
    let _ = venue.kill();
    let _ = venue.wait();
    let out = format!("{}{}", String::from_utf8_lossy(&e2e.stdout), String::from_utf8_lossy(&e2e.stderr));
    assert!(e2e.status.success() && out.contains("e2e ok"), "browser test failed:\n{out}");

    let replay_png = out_dir().join("e2e-replay.png");
    let replay = Command::new(env!("CARGO_BIN_EXE_parvis"))
        .arg("replay")
        .arg(&log)
        .args(["--size", "320x180", "--out"])
        .arg(&replay_png)
        .current_dir(root())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&replay.stdout);
    assert!(replay.status.success(), "{stdout}{}", String::from_utf8_lossy(&replay.stderr));
    assert!(stdout.contains("stage_light = #ff0000"), "the page's command reached the log:\n{stdout}");

    // The red stage light shows: pixels that changed from the default venue turned redder.
    let red = image::open(&replay_png).unwrap().to_rgba8();
    let base = renderer().capture().unwrap();
    let (mut redder, mut changed) = (0, 0);
    for (x, y, p) in red.enumerate_pixels() {
        let q = base.get_pixel(x, y);
        if p.0[..3].iter().zip(&q.0[..3]).any(|(a, b)| a.abs_diff(*b) > 8) {
            changed += 1;
            if i32::from(p[0]) - i32::from(p[1]) > i32::from(q[0]) - i32::from(q[1]) {
                redder += 1;
            }
        }
    }
    assert!(changed > 50, "the stage light changed only {changed} pixels");
    assert!(redder * 10 >= changed * 8, "{redder} of {changed} changed pixels turned redder");
}

#[test]
fn audience_texts_and_effects_show_in_the_venue_and_go_when_hidden() {
    let mut renderer = renderer();
    let base = renderer.capture().unwrap();
    // A text panel above the stage.
    renderer.submit(VenueCommand::ShowText {
        id: 1,
        text: "Bravo les musiciens !".into(),
        by: "Ana".into(),
        seconds: 60.0,
        at: [0.0, 4.6, -4.0],
    });
    for _ in 0..3 {
        renderer.step();
    }
    let shown = renderer.capture().unwrap();
    save_png(&shown, &out_dir().join("cloister-text-panel.png")).unwrap();
    let (camera, world) = (renderer.camera(), renderer.app_mut().world_mut());
    let (cam, cam_transform) = (world.get::<Camera>(camera).unwrap(), world.get::<GlobalTransform>(camera).unwrap());
    let centre = cam.world_to_viewport(cam_transform, Vec3::new(0.0, 4.6, -4.0)).unwrap();
    let diff = diff_images(&base, &shown, 16).unwrap();
    let (x0, y0, x1, y1) = diff.bbox.expect("the panel changed pixels");
    assert!(
        (x0 as f32) <= centre.x && centre.x <= x1 as f32 && (y0 as f32) <= centre.y && centre.y <= y1 as f32,
        "panel at {centre:?}, changes in {:?}",
        diff.bbox
    );
    assert!(diff.pixels_over > 40, "{} pixels changed", diff.pixels_over);
    // The dark panel with white letters: both very dark and very light pixels around its centre.
    let (cx, cy) = (centre.x as i32, centre.y as i32);
    let around: Vec<u8> = (-12..=12)
        .flat_map(|dx| (-3..=3).map(move |dy| (dx, dy)))
        .filter_map(|(dx, dy)| {
            shown.get_pixel_checked((cx + dx) as u32, (cy + dy) as u32).map(|p| p.0[0].max(p.0[1]).max(p.0[2]))
        })
        .collect();
    assert!(around.iter().any(|v| *v < 60) && around.iter().any(|v| *v > 150), "panel and letters: {around:?}");
    // A moderator hides it: the venue looks as before.
    renderer.submit(VenueCommand::HideText { id: Some(1) });
    renderer.step();
    renderer.step();
    let hidden = renderer.capture().unwrap();
    assert!(diff_images(&base, &hidden, 16).is_none_or(|d| d.pixels_over < 5), "the panel left pixels behind");
    // Petals fall on the stage: new pink and red pixels appear.
    renderer.submit(VenueCommand::SpawnEffect { effect: "petals".into(), seed: 3 });
    for _ in 0..4 {
        renderer.step();
    }
    let petals = renderer.capture().unwrap();
    save_png(&petals, &out_dir().join("cloister-petals.png")).unwrap();
    let diff = diff_images(&hidden, &petals, 16).unwrap();
    let pinker = petals
        .enumerate_pixels()
        .filter(|(x, y, p)| {
            let q = hidden.get_pixel(*x, *y);
            p.0[..3].iter().zip(&q.0[..3]).any(|(a, b)| a.abs_diff(*b) > 16)
                && p.0[0] > p.0[1]
                && p.0[0] > q.0[0].saturating_sub(40)
        })
        .count();
    assert!(
        diff.pixels_over > 20 && pinker * 2 > diff.pixels_over,
        "{pinker} of {} changed pixels are petal-coloured",
        diff.pixels_over
    );
}

/// The built-in cloister's sky, lights and viewpoints, without its content: a stage for a scan.
fn bare_cloister() -> parvis::model::scene::format::SceneFile {
    load_scene_str(DEFAULT_SCENE, "cloister.ron", &AssetsRoot::new(root().join("assets"))).unwrap().stage_only()
}

/// A venue made of a synthetic scan of the cloister (no meshes), in a temporary assets root.
fn cloud_venue(name: &str, points: usize) -> (PathBuf, parvis::model::scene::format::SceneFile) {
    use parvis::engine::heritage::ply::write_ply;
    use parvis::engine::heritage::sample::sample_scene;
    let dir = std::env::temp_dir().join(format!("parvis-cloud-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(dir.join("scans")).unwrap();
    let assets = AssetsRoot::new(root().join("assets"));
    let scan = sample_scene(&load_scene_str(DEFAULT_SCENE, "cloister.ron", &assets).unwrap(), points, 5);
    write_ply(&scan, std::io::BufWriter::new(std::fs::File::create(dir.join("scans/cloister.ply")).unwrap())).unwrap();
    let mut scene = bare_cloister();
    let text =
        r#"(name: "cloister scan", path: "scans/cloister.ply", credit: (author: "Parvis tests", licence: "CC0-1.0"))"#;
    scene.clouds.push(ron::from_str(text).unwrap());
    (dir, scene)
}

/// Picks the first point of a measure straight down from `from`.
fn measure_down(renderer: &mut HeadlessRenderer, from: Vec3) -> parvis::engine::heritage::measure::Measurement {
    use parvis::engine::heritage::measure::{MeasureRay, Measurement};
    let world = renderer.app_mut().world_mut();
    *world.resource_mut::<Measurement>() = Measurement { active: true, ..Default::default() };
    world.write_message(MeasureRay { ray: Ray3d::new(from, Dir3::NEG_Y), tolerance: 0.01 });
    renderer.step();
    let tape = renderer.app_mut().world().resource::<Measurement>().clone();
    // Put the tape away: its markers and reading would show in later pictures.
    *renderer.app_mut().world_mut().resource_mut::<Measurement>() = Measurement::default();
    renderer.step();
    tape
}

fn cloud_status(renderer: &mut HeadlessRenderer) -> parvis::engine::heritage::cloud::CloudStatus {
    let world = renderer.app_mut().world_mut();
    world.query::<&parvis::engine::heritage::cloud::CloudStatus>().single(world).unwrap().clone()
}

fn compare_with_golden(image: &image::RgbaImage, name: &str) {
    let golden_path = root().join("tests/golden").join(name);
    save_png(image, &out_dir().join(name)).unwrap();
    if std::env::var_os("PARVIS_UPDATE_GOLDEN").is_some() {
        save_png(image, &golden_path).unwrap();
    }
    let golden = image::open(&golden_path).expect("golden image committed").to_rgba8();
    let diff = diff_images(&golden, image, 24).expect("same size as the golden image");
    let share = diff.pixels_over as f64 / f64::from(SIZE.x * SIZE.y);
    if diff.mean_abs > 1.5 || share > 0.005 {
        save_png(&diff.heatmap, &out_dir().join(format!("diff-{name}"))).unwrap();
        panic!(
            "render differs from {}: mean |Δ| {:.3}, {} pixels over 24; see {}",
            golden_path.display(),
            diff.mean_abs,
            diff.pixels_over,
            out_dir().display()
        );
    }
}

#[test]
fn a_point_cloud_renders_with_eye_dome_lighting_and_its_colour_modes() {
    use parvis::model::scene::format::CloudColouring;
    let (dir, scene) = cloud_venue("modes", 300_000);
    let mut renderer = HeadlessRenderer::new(VenueSetup::new(scene.clone(), AssetsRoot::new(&dir)), SIZE);
    renderer.wait_until_ready().expect("the scan imports and streams");
    let lit = renderer.capture().unwrap();
    compare_with_golden(&lit, "cloud_rgb_edl_320x180.png");
    let status = cloud_status(&mut renderer);
    assert!(status.settled() && status.drawn_points > 50_000, "{status:?}");
    let camera = renderer.camera();
    assert_eq!(
        renderer.app_mut().world().get::<Msaa>(camera),
        Some(&Msaa::Off),
        "the pass reads one depth sample a pixel"
    );
    assert!(status.resident_bytes <= status.budget_bytes);

    // The same scan without eye-dome lighting: EDL only ever darkens, and it darkens edges.
    let reload = |renderer: &mut HeadlessRenderer, change: &dyn Fn(&mut parvis::model::scene::format::CloudDef)| {
        let mut scene = scene.clone();
        change(&mut scene.clouds[0]);
        renderer.submit(VenueCommand::LoadScene { scene: Box::new(scene) });
        renderer.wait_until_ready().expect("the cached scan streams again");
        renderer.capture().unwrap()
    };
    let flat = reload(&mut renderer, &|c| c.eye_dome_lighting = false);
    save_png(&flat, &out_dir().join("cloud-flat.png")).unwrap();
    assert_eq!(
        renderer.app_mut().world().get::<Msaa>(camera),
        Some(&Msaa::default()),
        "the camera's anti-aliasing is back"
    );
    let diff = diff_images(&flat, &lit, 24).unwrap();
    assert!(diff.pixels_over > 500, "eye-dome lighting changed only {} pixels", diff.pixels_over);
    let luma = |p: &image::Rgba<u8>| u32::from(p[0]) + u32::from(p[1]) + u32::from(p[2]);
    let brighter = lit.pixels().zip(flat.pixels()).filter(|(a, b)| luma(a) > luma(b) + 24).count();
    assert!(brighter * 100 < diff.pixels_over as usize, "{brighter} pixels got brighter with EDL");

    // Classification: floors are ground (brown), the rest building (orange-red).
    let classes = reload(&mut renderer, &|c| c.colouring = CloudColouring::Classification);
    save_png(&classes, &out_dir().join("cloud-classes.png")).unwrap();
    let reddish = classes.pixels().filter(|p| i32::from(p[0]) > i32::from(p[2]) + 40 && p[0] > p[1]).count();
    assert!(reddish > 3_000, "{reddish} ground or building pixels");
    // Elevation: a ramp from blue (floor) to red (roofs); both ends show.
    let heights = reload(&mut renderer, &|c| c.colouring = CloudColouring::Elevation);
    save_png(&heights, &out_dir().join("cloud-elevation.png")).unwrap();
    let blue = heights.pixels().filter(|p| i32::from(p[2]) > i32::from(p[0]) + 60).count();
    let warm = heights.pixels().filter(|p| i32::from(p[0]) > i32::from(p[2]) + 60).count();
    assert!(blue > 500 && warm > 500, "blue {blue}, warm {warm}");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn a_point_cloud_keeps_to_its_budgets_while_the_camera_moves() {
    let (dir, mut scene) = cloud_venue("budget", 400_000);
    // Room for about 160 000 points: less than the scan.
    scene.clouds[0].memory_budget_mb = 16;
    let mut renderer = HeadlessRenderer::new(VenueSetup::new(scene, AssetsRoot::new(&dir)), SIZE);
    renderer.wait_until_ready().expect("the scan imports and streams");
    let start = cloud_status(&mut renderer);
    assert!(start.total_points > 350_000 && start.drawn_points > 0, "{start:?}");
    let camera = renderer.camera();
    let mut evicted_seen = false;
    for (i, eye) in
        [Vec3::new(-6.0, 1.7, -6.0), Vec3::new(6.0, 1.7, 6.0), Vec3::new(0.0, 30.0, 40.0), Vec3::new(-5.0, 2.0, 5.0)]
            .into_iter()
            .enumerate()
    {
        renderer
            .app_mut()
            .world_mut()
            .entity_mut(camera)
            .insert(parvis::engine::camera::CameraRig::looking(eye, Vec3::new(0.0, 2.0, 0.0)));
        for _ in 0..200 {
            renderer.step();
            let status = cloud_status(&mut renderer);
            assert!(
                status.resident_bytes <= status.budget_bytes,
                "view {i}: {} bytes held for a budget of {}",
                status.resident_bytes,
                status.budget_bytes
            );
            if status.settled() {
                break;
            }
        }
        let status = cloud_status(&mut renderer);
        assert!(status.settled(), "view {i}: {status:?}");
        evicted_seen |= status.evicted > 0;
    }
    assert!(evicted_seen, "moving around a scan larger than the budget dropped nodes");
    // The measuring tape picks the scan's loaded points: straight down onto the paving
    // (y = 0), within the level's point spacing.
    let tape = measure_down(&mut renderer, Vec3::new(15.0, 20.0, 15.0));
    let a = tape.a.expect("a point of the scan under the ray");
    assert!(a.on == "cloister scan" && a.position.y.abs() < 0.2 && a.uncertainty > 0.0, "{a:?}");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn a_tour_shows_its_subtitles_and_hotspot_panel_on_screen() {
    use parvis::engine::visit::Subtitles;
    let assets = AssetsRoot::new(root().join("assets"));
    let mut scene = load_scene_str(DEFAULT_SCENE, "cloister.ron", &assets).unwrap();
    // Arrive at once: the subtitles show on the first frame of the tour.
    scene.tours[0].stops[0].travel = 0.0;
    let size = UVec2::new(640, 360);
    let mut renderer = HeadlessRenderer::new(VenueSetup::new(scene, assets), size);
    renderer.wait_until_ready().unwrap();
    renderer.submit(VenueCommand::PlayTour { tour: Some("highlights".into()), language: Some("fr".into()) });
    renderer.step();
    let subtitle = renderer.app_mut().world().resource::<Subtitles>().text.clone();
    assert!(subtitle.as_deref().is_some_and(|s| s.starts_with("Bienvenue dans le cloître.")), "{subtitle:?}");
    let with_ui = renderer.capture().unwrap();
    save_png(&with_ui, &out_dir().join("tour-fr.png")).unwrap();
    // The same view with the tour stopped and the panel closed: only the overlays differ.
    renderer.submit(VenueCommand::PlayTour { tour: None, language: None });
    renderer.submit(VenueCommand::ShowHotspot { name: None });
    renderer.step();
    let without = renderer.capture().unwrap();
    save_png(&without, &out_dir().join("tour-stopped.png")).unwrap();
    let (w, h) = (size.x, size.y);
    let mut subtitle_band = 0;
    let mut panel_corner = 0;
    let mut elsewhere = 0;
    for (x, y, p) in with_ui.enumerate_pixels() {
        let q = without.get_pixel(x, y);
        if p.0[..3].iter().zip(&q.0[..3]).all(|(a, b)| a.abs_diff(*b) <= 8) {
            continue;
        }
        if y + 4 > h * 2 / 3 && x > w / 10 && x < w * 9 / 10 {
            subtitle_band += 1;
        } else if x < w * 3 / 4 && y < h * 2 / 3 {
            panel_corner += 1;
        } else {
            elsewhere += 1;
        }
    }
    assert!(subtitle_band > 2_000, "subtitle pixels: {subtitle_band}");
    assert!(panel_corner > 2_000, "hotspot panel pixels: {panel_corner}");
    assert!(elsewhere < 50, "{elsewhere} pixels changed outside the subtitles and the panel");
    // White text on the dark subtitle box: the band holds light pixels on a darkened picture.
    let light = (h * 2 / 3..h)
        .flat_map(|y| (0..w).map(move |x| (x, y)))
        .filter(|&(x, y)| with_ui.get_pixel(x, y).0[..3].iter().all(|c| *c > 220))
        .count();
    assert!(light > 200, "{light} light subtitle pixels");
}

#[test]
fn a_scanned_mesh_shows_coarser_levels_from_afar_and_matches_golden() {
    use parvis::engine::heritage::lod::MeshScanStatus;
    use parvis::engine::heritage::mesh::{generate_scan_grid, write_glb};
    let dir = std::env::temp_dir().join(format!("parvis-lod-render-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(dir.join("scans")).unwrap();
    let (positions, normals, uvs, indices) = generate_scan_grid(300, 40.0);
    let texture = image::RgbaImage::from_fn(256, 256, |x, y| {
        if (x / 32 + y / 32) % 2 == 0 { image::Rgba([190, 160, 110, 255]) } else { image::Rgba([120, 90, 60, 255]) }
    });
    let mut png = Vec::new();
    texture.write_to(&mut std::io::Cursor::new(&mut png), image::ImageFormat::Png).unwrap();
    write_glb(&positions, &normals, &uvs, &indices, Some(&png), &dir.join("scans/terrace.glb")).unwrap();
    let mut scene = bare_cloister();
    let text = r#"(name: "terrace", path: "scans/terrace.glb", credit: (author: "Parvis tests", licence: "CC0-1.0"))"#;
    scene.meshes.push(ron::from_str(text).unwrap());
    let mut renderer = HeadlessRenderer::new(VenueSetup::new(scene, AssetsRoot::new(&dir)), SIZE);
    renderer.wait_until_ready().expect("the scan imports and shows");
    let picture = renderer.capture().unwrap();
    compare_with_golden(&picture, "mesh_lod_320x180.png");
    let status = |r: &mut HeadlessRenderer| {
        let world = r.app_mut().world_mut();
        world.query::<&MeshScanStatus>().single(world).unwrap().clone()
    };
    let overview = status(&mut renderer);
    assert_eq!(overview.source_triangles, 180_000);
    // Close to the ground, the chunks underfoot are at their finest; far away, all coarse.
    let camera = renderer.camera();
    renderer
        .app_mut()
        .world_mut()
        .entity_mut(camera)
        .insert(parvis::engine::camera::CameraRig::looking(Vec3::new(2.0, 1.8, 2.0), Vec3::new(0.0, 0.0, -8.0)));
    renderer.step();
    renderer.step();
    let near = status(&mut renderer);
    renderer
        .app_mut()
        .world_mut()
        .entity_mut(camera)
        .insert(parvis::engine::camera::CameraRig::looking(Vec3::new(0.0, 300.0, 400.0), Vec3::ZERO));
    renderer.step();
    renderer.step();
    let far = status(&mut renderer);
    assert!(near.levels_shown.first().copied().unwrap_or(0) > 0, "near: {near:?}");
    assert!(
        far.levels_shown.first().copied().unwrap_or(0) == 0 && far.drawn_triangles * 8 < near.drawn_triangles,
        "far {far:?} vs near {near:?}"
    );
    // So far away, the chunks' group stands in for them: one draw.
    assert!(
        far.groups_shown == 1 && far.levels_shown.is_empty() && near.groups_shown == 0,
        "far {far:?} vs near {near:?}"
    );
    let far_picture = renderer.capture().unwrap();
    save_png(&far_picture, &out_dir().join("mesh-lod-far.png")).unwrap();
    // The levels chosen at 1 px of error look like the finer ones chosen at 0.25 px: the
    // simplification is invisible where it is used.
    renderer
        .app_mut()
        .world_mut()
        .entity_mut(camera)
        .insert(parvis::engine::camera::CameraRig::looking(Vec3::new(18.0, 16.0, 26.0), Vec3::new(-1.5, 2.5, -2.5)));
    let mut finer = renderer.app_mut().world().resource::<parvis::engine::command::CurrentScene>().0.as_ref().clone();
    finer.meshes[0].max_error_px = 0.25;
    renderer.submit(VenueCommand::LoadScene { scene: Box::new(finer) });
    renderer.wait_until_ready().unwrap();
    let fine_status = status(&mut renderer);
    assert!(fine_status.drawn_triangles > overview.drawn_triangles, "{fine_status:?} vs {overview:?}");
    // The tape picks the level shown; its error is the reading's uncertainty.
    let tape = measure_down(&mut renderer, Vec3::new(0.0, 50.0, 0.0));
    let a = tape.a.expect("the scan under the ray");
    assert!(a.on == "terrace" && a.position.y.abs() <= 0.1 + a.uncertainty, "{a:?}");
    let fine_picture = renderer.capture().unwrap();
    let diff = diff_images(&picture, &fine_picture, 24).unwrap();
    assert!(
        diff.mean_abs < 2.0 && diff.pixels_over < 200,
        "coarser levels show: mean {} and {} pixels over 24",
        diff.mean_abs,
        diff.pixels_over
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

/// The material variants of `write_material_sheets`, one sheet each, in order.
const SHEETS: [&str; 11] = [
    "base",
    "mask",
    "blend",
    "emissive",
    "normal",
    "metallic_roughness",
    "occlusion",
    "back_single",
    "back_double",
    "transform",
    "unlit",
];

/// Where sheet `i` stands: two rows of six (then five), one metre each, facing +z.
fn sheet_centre(i: usize) -> Vec3 {
    let (row, column) = (i / 6, i % 6);
    Vec3::new(-2.875 + 1.15 * column as f32, 2.3 - 1.3 * row as f32, 0.0)
}

/// A unit sheet facing +Z, 32 triangles: too few to simplify, so the meshes path shows its
/// finest level.
#[allow(clippy::type_complexity, reason = "a mesh's arrays")]
fn sheet_geometry() -> (Vec<[f32; 3]>, Vec<[f32; 3]>, Vec<[f32; 2]>, Vec<u32>) {
    let n = 4u32;
    let (mut positions, mut uvs, mut indices) = (Vec::new(), Vec::new(), Vec::new());
    for j in 0..=n {
        for i in 0..=n {
            let (u, v) = (i as f32 / n as f32, j as f32 / n as f32);
            positions.push([u - 0.5, 0.5 - v, 0.0]);
            uvs.push([u, v]);
        }
    }
    for j in 0..n {
        for i in 0..n {
            let a = j * (n + 1) + i;
            indices.extend_from_slice(&[a, a + n + 1, a + 1, a + 1, a + n + 1, a + n + 2]);
        }
    }
    let normals = vec![[0.0, 0.0, 1.0]; positions.len()];
    (positions, normals, uvs, indices)
}

/// The bare cloister with one entry (`assets` or `meshes`) from `dir`, or none, seen square
/// on from 5 m in front of the sheets, once loaded.
fn render_sheets(dir: &std::path::Path, entry: Option<(&str, String)>) -> (HeadlessRenderer, image::RgbaImage) {
    let mut scene = bare_cloister();
    match entry {
        Some(("assets", text)) => scene.assets.push(ron::from_str(&text).unwrap()),
        Some((_, text)) => scene.meshes.push(ron::from_str(&text).unwrap()),
        None => {}
    }
    let mut renderer = HeadlessRenderer::new(VenueSetup::new(scene, AssetsRoot::new(dir)), SIZE);
    renderer.wait_until_ready().expect("the model loads");
    let camera = renderer.camera();
    renderer
        .app_mut()
        .world_mut()
        .entity_mut(camera)
        .insert(parvis::engine::camera::CameraRig::looking(Vec3::new(0.0, 1.65, 5.0), Vec3::new(0.0, 1.65, 0.0)));
    renderer.step();
    renderer.step();
    let picture = renderer.capture().unwrap();
    (renderer, picture)
}

fn png(image: &image::RgbaImage) -> Vec<u8> {
    let mut bytes = Vec::new();
    image.write_to(&mut std::io::Cursor::new(&mut bytes), image::ImageFormat::Png).unwrap();
    bytes
}

/// A model of sheets, each with a material that differs from the first ("base": a textured,
/// rough dielectric) by one glTF property: alpha mask, blend, emissive (with
/// `KHR_materials_emissive_strength`), normal map, metallic-roughness texture, occlusion, one
/// side only or both seen from behind, `KHR_texture_transform`, `KHR_materials_unlit`.
fn write_material_sheets(path: &std::path::Path) {
    use parvis::engine::heritage::mesh::GlbWriter;
    use serde_json::json;
    let (positions, normals, uvs, indices) = sheet_geometry();
    let square = |x: u32, y: u32| (x / 8 + y / 8).is_multiple_of(2);
    let stripe = |x: u32| (x / 8).is_multiple_of(2);
    let checker = |alpha_dark: u8, alpha_light: u8| {
        image::RgbaImage::from_fn(32, 32, |x, y| {
            if square(x, y) {
                image::Rgba([220, 200, 160, alpha_light])
            } else {
                image::Rgba([60, 90, 140, alpha_dark])
            }
        })
    };
    let mut glb = GlbWriter::default();
    let opaque = glb.texture(&png(&checker(255, 255)), None);
    let holes = glb.texture(&png(&checker(0, 255)), None);
    let half = glb.texture(&png(&checker(110, 110)), None);
    let white = glb.texture(&png(&image::RgbaImage::from_pixel(4, 4, image::Rgba([255; 4]))), None);
    let normal = glb.texture(
        &png(&image::RgbaImage::from_fn(32, 32, |x, _| {
            if stripe(x) { image::Rgba([230, 128, 210, 255]) } else { image::Rgba([25, 128, 210, 255]) }
        })),
        None,
    );
    let metal = glb.texture(&png(&image::RgbaImage::from_pixel(4, 4, image::Rgba([0, 40, 255, 255]))), None);
    let occlusion = glb.texture(
        &png(&image::RgbaImage::from_fn(32, 32, |x, _| {
            if stripe(x) { image::Rgba([0, 0, 0, 255]) } else { image::Rgba([255, 255, 255, 255]) }
        })),
        None,
    );
    let pbr =
        |texture: usize| json!({"baseColorTexture": {"index": texture}, "metallicFactor": 0.0, "roughnessFactor": 0.8});
    let materials = [
        json!({"pbrMetallicRoughness": pbr(opaque)}),
        json!({"pbrMetallicRoughness": pbr(holes), "alphaMode": "MASK", "alphaCutoff": 0.5}),
        json!({"pbrMetallicRoughness": pbr(half), "alphaMode": "BLEND"}),
        json!({"pbrMetallicRoughness": pbr(opaque), "emissiveFactor": [1.0, 0.4, 0.0], "emissiveTexture": {"index": white},
               "extensions": {"KHR_materials_emissive_strength": {"emissiveStrength": 1.5}}}),
        json!({"pbrMetallicRoughness": pbr(opaque), "normalTexture": {"index": normal}}),
        json!({"pbrMetallicRoughness": {"baseColorTexture": {"index": opaque}, "metallicFactor": 1.0, "roughnessFactor": 1.0,
               "metallicRoughnessTexture": {"index": metal}}}),
        json!({"pbrMetallicRoughness": pbr(opaque), "occlusionTexture": {"index": occlusion}}),
        json!({"pbrMetallicRoughness": pbr(opaque)}),
        json!({"pbrMetallicRoughness": pbr(opaque), "doubleSided": true}),
        json!({"pbrMetallicRoughness": {"baseColorTexture": {"index": opaque, "extensions": {"KHR_texture_transform": {"scale": [3.0, 3.0]}}},
               "metallicFactor": 0.0, "roughnessFactor": 0.8}}),
        json!({"pbrMetallicRoughness": pbr(opaque), "extensions": {"KHR_materials_unlit": {}}}),
    ];
    for (i, (name, material)) in SHEETS.iter().zip(materials).enumerate() {
        let material = glb.material(material);
        let mut node = json!({"translation": sheet_centre(i).to_array()});
        if name.starts_with("back") {
            // Turned away from the camera: its back is what shows.
            node["rotation"] = json!([0.0, 1.0, 0.0, 0.0]);
        }
        glb.mesh(name, &positions, &normals, &uvs, &indices, material, node);
    }
    glb.write(path).unwrap();
}

/// Colours of sheet `i` at a 16 × 16 grid over its middle, and of the background there.
fn sheet_samples(
    renderer: &mut HeadlessRenderer,
    picture: &image::RgbaImage,
    background: &image::RgbaImage,
    i: usize,
) -> Vec<([u8; 3], [u8; 3])> {
    let camera = renderer.camera();
    let world = renderer.app_mut().world_mut();
    let (cam, eye) = (world.get::<Camera>(camera).unwrap(), world.get::<GlobalTransform>(camera).unwrap());
    let mut samples = Vec::new();
    for v in 0..16 {
        for u in 0..16 {
            let offset = Vec3::new(-0.35 + 0.7 * u as f32 / 15.0, 0.35 - 0.7 * v as f32 / 15.0, 0.0);
            let p = cam.world_to_viewport(eye, sheet_centre(i) + offset).unwrap();
            let (x, y) = (p.x as u32, p.y as u32);
            let rgb = |image: &image::RgbaImage| {
                let px = image.get_pixel(x, y);
                [px[0], px[1], px[2]]
            };
            samples.push((rgb(picture), rgb(background)));
        }
    }
    samples
}

/// What a sheet looks like: its mean colour and the share of it that shows the background.
fn mean_and_background(samples: &[([u8; 3], [u8; 3])]) -> ([f64; 3], f64) {
    let mut mean = [0.0; 3];
    let mut background = 0;
    for (p, q) in samples {
        for c in 0..3 {
            mean[c] += f64::from(p[c]) / samples.len() as f64;
        }
        background += usize::from((0..3).all(|c| p[c].abs_diff(q[c]) <= 12));
    }
    (mean, background as f64 / samples.len() as f64)
}

/// Mean over the grid of the largest channel difference between two sheets, point by point.
fn pattern_difference(a: &[([u8; 3], [u8; 3])], b: &[([u8; 3], [u8; 3])]) -> f64 {
    let sum: u32 =
        a.iter().zip(b).map(|((p, _), (q, _))| (0..3).map(|c| u32::from(p[c].abs_diff(q[c]))).max().unwrap()).sum();
    f64::from(sum) / a.len() as f64
}

#[test]
fn a_scanned_model_looks_the_same_as_an_asset_and_through_levels_of_detail() {
    let dir = std::env::temp_dir().join(format!("parvis-materials-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(dir.join("models")).unwrap();
    write_material_sheets(&dir.join("models/sheets.glb"));
    let credit = r#"credit: (author: "Parvis tests", licence: "CC0-1.0")"#;
    let render = |entry| render_sheets(&dir, entry);
    let (_, background) = render(None);
    let (_, as_asset) = render(Some(("assets", format!(r#"(name: "sheets", path: "models/sheets.glb", {credit})"#))));
    // Through the levels of detail (the finest: the sheets are too small to simplify), the
    // picture must match the asset's, property for property.
    let (mut renderer, as_levels) =
        render(Some(("meshes", format!(r#"(name: "sheets", path: "models/sheets.glb", {credit})"#))));
    save_png(&as_asset, &out_dir().join("materials-asset.png")).unwrap();
    save_png(&as_levels, &out_dir().join("materials-levels.png")).unwrap();
    compare_with_golden(&as_levels, "materials_lod_320x180.png");
    let diff = diff_images(&as_asset, &as_levels, 24).unwrap();
    assert!(
        diff.mean_abs < 1.0 && diff.pixels_over < 160,
        "the two paths differ: mean |Δ| {:.3}, {} pixels over 24 (see {})",
        diff.mean_abs,
        diff.pixels_over,
        out_dir().display()
    );
    // Each property changes the pixels it should, against the base sheet.
    let samples: Vec<_> = (0..SHEETS.len()).map(|i| sheet_samples(&mut renderer, &as_levels, &background, i)).collect();
    let sheet = |name: &str| &samples[SHEETS.iter().position(|s| *s == name).unwrap()];
    for name in SHEETS {
        let (mean, bg) = mean_and_background(sheet(name));
        let apart = pattern_difference(sheet(name), sheet("base"));
        eprintln!(
            "{name:>20}: mean {:>6.1} {:>6.1} {:>6.1}, background {bg:.2}, from base {apart:.1}",
            mean[0], mean[1], mean[2]
        );
    }
    let (base, base_bg) = mean_and_background(sheet("base"));
    assert!(base_bg < 0.05, "the base sheet is drawn: {base_bg}");
    let (_, mask_bg) = mean_and_background(sheet("mask"));
    assert!((0.3..0.7).contains(&mask_bg), "the alpha mask cuts holes where alpha is 0: {mask_bg}");
    let (blend, blend_bg) = mean_and_background(sheet("blend"));
    assert!(blend_bg < 0.2 && blend[2] > base[2] + 20.0, "blended with the sky behind: {blend:?} vs {base:?}");
    let (emissive, _) = mean_and_background(sheet("emissive"));
    assert!(emissive[0] > base[0] + 20.0 && emissive[0] > emissive[2] + 20.0, "glows orange: {emissive:?}");
    for name in ["normal", "metallic_roughness", "occlusion", "transform", "unlit"] {
        let (_, bg) = mean_and_background(sheet(name));
        let apart = pattern_difference(sheet(name), sheet("base"));
        assert!(bg < 0.1 && apart > 6.0, "{name} changes the sheet: {apart:.1} from the base");
    }
    let (occluded, _) = mean_and_background(sheet("occlusion"));
    assert!(occluded.iter().sum::<f64>() < base.iter().sum::<f64>() - 3.0, "occlusion darkens: {occluded:?}");
    let (_, single_bg) = mean_and_background(sheet("back_single"));
    let (_, double_bg) = mean_and_background(sheet("back_double"));
    assert!(single_bg > 0.9, "one-sided, seen from behind: not drawn ({single_bg})");
    assert!(double_bg < 0.05, "double-sided, seen from behind: drawn ({double_bg})");
    // A scan drawn `one_sided` culls the back of the double-sided sheet too, and only that.
    let (mut renderer, one_sided) =
        render(Some(("meshes", format!(r#"(name: "sheets", path: "models/sheets.glb", one_sided: true, {credit})"#))));
    let double =
        sheet_samples(&mut renderer, &one_sided, &background, SHEETS.iter().position(|s| *s == "back_double").unwrap());
    let base_again = sheet_samples(&mut renderer, &one_sided, &background, 0);
    assert!(mean_and_background(&double).1 > 0.9, "one_sided: the double-sided sheet's back is culled");
    assert!(mean_and_background(&base_again).1 < 0.05, "one_sided: front faces are drawn");
    std::fs::remove_dir_all(&dir).unwrap();
}

/// A model whose texture is missing is drawn without it and flagged, as an asset and as a
/// scanned mesh alike: the venue comes up, the rest of the model keeps its textures.
#[test]
fn a_model_missing_a_texture_is_drawn_plainly_and_flagged_on_both_paths() {
    use parvis::engine::heritage::lod::MeshScanStatus;
    use parvis::engine::heritage::mesh::GlbWriter;
    use parvis::engine::scene::textures::FailedTextures;
    use serde_json::json;
    let dir = std::env::temp_dir().join(format!("parvis-missing-texture-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(dir.join("models")).unwrap();
    let (positions, normals, uvs, indices) = sheet_geometry();
    let mut glb = GlbWriter::default();
    let missing = glb.texture_file("textures/lost.png");
    let checker = image::RgbaImage::from_fn(32, 32, |x, y| {
        if (x / 8 + y / 8).is_multiple_of(2) {
            image::Rgba([220, 200, 160, 255])
        } else {
            image::Rgba([60, 90, 140, 255])
        }
    });
    let present = glb.texture(&png(&checker), None);
    let plain = glb.material(json!({"pbrMetallicRoughness": {"baseColorTexture": {"index": missing},
        "baseColorFactor": [1.0, 0.45, 0.1, 1.0], "metallicFactor": 0.0, "roughnessFactor": 0.8}}));
    let textured = glb.material(json!({"pbrMetallicRoughness": {"baseColorTexture": {"index": present},
        "metallicFactor": 0.0, "roughnessFactor": 0.8}}));
    glb.mesh("plain", &positions, &normals, &uvs, &indices, plain, json!({"translation": sheet_centre(0).to_array()}));
    glb.mesh(
        "textured",
        &positions,
        &normals,
        &uvs,
        &indices,
        textured,
        json!({"translation": sheet_centre(1).to_array()}),
    );
    glb.write(&dir.join("models/faulty.glb")).unwrap();
    let credit = r#"credit: (author: "Parvis tests", licence: "CC0-1.0")"#;
    let entry = format!(r#"(name: "faulty", path: "models/faulty.glb", {credit})"#);

    let (_, background) = render_sheets(&dir, None);
    for kind in ["assets", "meshes"] {
        let (mut renderer, picture) = render_sheets(&dir, Some((kind, entry.clone())));
        let plain = sheet_samples(&mut renderer, &picture, &background, 0);
        let textured = sheet_samples(&mut renderer, &picture, &background, 1);
        let (colour, plain_bg) = mean_and_background(&plain);
        assert!(plain_bg < 0.05, "{kind}: the sheet without its texture is drawn ({plain_bg})");
        assert!(colour[0] > colour[2] + 40.0, "{kind}: in its base colour factor, orange: {colour:?}");
        // Plain: one colour, where the textured sheet beside it keeps its checker.
        let spread = |samples: &[([u8; 3], [u8; 3])]| {
            let (lo, hi) = samples.iter().fold((255u8, 0u8), |(lo, hi), (p, _)| (lo.min(p[1]), hi.max(p[1])));
            hi - lo
        };
        assert!(spread(&plain) < 20 && spread(&textured) > 60, "{kind}: plain and checker sheets");
        let world = renderer.app_mut().world_mut();
        let flagged: Vec<String> = match kind {
            "assets" => world.resource::<FailedTextures>().0.values().cloned().collect(),
            _ => world.query::<&MeshScanStatus>().single(world).unwrap().notes.clone(),
        };
        assert!(flagged.iter().any(|f| f.contains("lost.png")), "{kind}: the missing texture is flagged: {flagged:?}");
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

/// A texture that does not decode: the render goes on, the model drawn without it, and the
/// log says so in one line, with no backtrace and no asset-server noise, even with
/// `RUST_BACKTRACE` set (Bevy then captured one into every error).
#[test]
fn a_broken_texture_is_one_clear_line_and_the_render_goes_on() {
    use parvis::engine::heritage::mesh::GlbWriter;
    let dir = out_dir().join("broken-texture");
    std::fs::create_dir_all(dir.join("models")).unwrap();
    std::fs::write(dir.join("models/cracked.png"), b"\x89PNG\r\n\x1a\nnot the rest of a png").unwrap();
    let (positions, normals, uvs, indices) = sheet_geometry();
    let mut glb = GlbWriter::default();
    let cracked = glb.texture_file("cracked.png");
    let material = glb.material(serde_json::json!({"pbrMetallicRoughness": {"baseColorTexture": {"index": cracked}}}));
    glb.mesh("sheet", &positions, &normals, &uvs, &indices, material, serde_json::json!({}));
    glb.write(&dir.join("models/sheet.glb")).unwrap();
    let scene = dir.join("venue.ron");
    std::fs::write(
        &scene,
        r#"(version: 1, venue: (title: "Cracked"),
            assets: [(name: "sheet", path: "models/sheet.glb", credit: (author: "x", licence: "CC0-1.0"))])"#,
    )
    .unwrap();
    let out = dir.join("out.png");
    let _ = std::fs::remove_file(&out);
    let output = Command::new(env!("CARGO_BIN_EXE_parvis"))
        .args(["render", "--size", "64x64", "--assets"])
        .arg(&dir)
        .arg(&scene)
        .arg("--out")
        .arg(&out)
        .env("RUST_BACKTRACE", "1")
        .env_remove("RUST_LIB_BACKTRACE")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stderr}");
    assert!(out.exists());
    let about: Vec<&str> = stderr.lines().filter(|l| l.contains("cracked.png")).collect();
    assert_eq!(about.len(), 1, "one line about the texture:\n{stderr}");
    assert!(about[0].contains("its model is drawn without it"), "{stderr}");
    assert!(!stderr.contains("backtrace") && !stderr.contains("bevy_asset::server"), "{stderr}");
    assert!(!stderr.lines().any(|l| l.trim_start().starts_with("1: ")), "{stderr}");
}

/// `parvis render --show evening --at S` previews a moment of a show: the cues up to S fire on
/// the show's clock, so the picture at 45 s (after the finale's "night" cue) is the venue with
/// those cues' commands applied, and differs from the picture at 5 s (dusk).
#[test]
fn a_show_previewed_at_a_moment_shows_the_cues_fired_by_then() {
    let render_at = |at: &str, name: &str| {
        let out = out_dir().join(name);
        let output = Command::new(env!("CARGO_BIN_EXE_parvis"))
            .args(["render", "--show", "evening", "--at", at, "--size", "320x180", "--out"])
            .arg(&out)
            .current_dir(root())
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
        assert!(output.status.success(), "{stderr}");
        (image::open(&out).unwrap().to_rgba8(), stderr)
    };
    let (dusk, stderr) = render_at("5", "show-at-5.png");
    assert!(stderr.contains("show evening played to 5 s: 1 cues fired"), "{stderr}");
    let (night, stderr) = render_at("45", "show-at-45.png");
    // Cues 1, 2, 3 and 6 (4 and 5 wait for GO).
    assert!(stderr.contains("show evening played to 45 s: 4 cues fired"), "{stderr}");

    // The same venue with the fired cues' commands applied directly.
    let mut renderer = renderer();
    for (name, value) in [
        ("sky", ParamValue::Enum("night".into())),
        ("fog", ParamValue::Float(0.04)),
        ("stage_intensity", ParamValue::Float(8_000_000.0)),
        ("lanterns", ParamValue::Colour(Colour::parse("#ff9040").unwrap())),
    ] {
        renderer.submit(VenueCommand::SetParam { name: name.into(), value });
    }
    for _ in 0..3 {
        renderer.step();
    }
    let direct = renderer.capture().unwrap();
    let same = diff_images(&night, &direct, 24).unwrap();
    assert!(
        same.pixels_over < 50,
        "the show at 45 s differs from its cues applied directly: {} pixels",
        same.pixels_over
    );
    // Dusk to night changes most of the picture (sky, light, fog).
    let changed = diff_images(&dusk, &night, 24).unwrap();
    assert!(changed.pixels_over > 320 * 180 / 3, "only {} pixels changed from 5 s to 45 s", changed.pixels_over);

    // --at needs a show, and a show the scene has.
    let output = Command::new(env!("CARGO_BIN_EXE_parvis"))
        .args(["render", "--show", "matinee", "--at", "5", "--out", "/dev/null"])
        .current_dir(root())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        !output.status.success() && stderr.contains("no show named \"matinee\"; the scene has: evening"),
        "{stderr}"
    );
}

/// The director's camera on the program output: a cut gives the picture of a venue started at
/// that viewpoint; an eased move passes between the two pictures and ends on its viewpoint;
/// the credits overlay is drawn only on a program output, shown and hidden by commands.
#[test]
fn the_director_cuts_moves_and_switches_overlays() {
    use parvis::model::program::{Overlay, ProgramAction};
    use parvis::model::scene::format::Easing;
    let program = |action| VenueCommand::Program { action };
    let steps = |r: &mut HeadlessRenderer, n| {
        for _ in 0..n {
            r.step();
        }
    };
    let mut renderer = renderer();
    let overview = renderer.capture().unwrap();

    renderer.submit(program(ProgramAction::Cut { viewpoint: "aerial".into() }));
    steps(&mut renderer, 3);
    let cut = renderer.capture().unwrap();
    let assets = AssetsRoot::new(root().join("assets"));
    let scene = load_scene_str(DEFAULT_SCENE, "cloister.ron", &assets).unwrap();
    let mut setup = VenueSetup::new(scene, assets);
    setup.viewpoint = Some("aerial".into());
    let mut started_there = HeadlessRenderer::new(setup, SIZE);
    started_there.wait_until_ready().unwrap();
    let reference = started_there.capture().unwrap();
    let moved = diff_images(&overview, &cut, 24).unwrap();
    assert!(moved.pixels_over > 320 * 180 / 3, "the cut changed only {} pixels", moved.pixels_over);
    let same = diff_images(&reference, &cut, 24).unwrap();
    assert!(same.pixels_over < 320 * 180 / 100, "cut vs started there: {} pixels differ", same.pixels_over);

    // Half a second into a one-second move back: neither end; after it: the overview.
    renderer.submit(program(ProgramAction::Move { viewpoint: "overview".into(), seconds: 1.0, easing: Easing::InOut }));
    steps(&mut renderer, 30);
    let halfway = renderer.capture().unwrap();
    for (name, end) in [("aerial", &cut), ("overview", &overview)] {
        let d = diff_images(end, &halfway, 24).unwrap();
        assert!(d.pixels_over > 320 * 180 / 10, "halfway looks like {name}: {} pixels differ", d.pixels_over);
    }
    steps(&mut renderer, 40);
    let back = renderer.capture().unwrap();
    let d = diff_images(&overview, &back, 24).unwrap();
    assert!(d.pixels_over < 320 * 180 / 100, "the move ends on the overview: {} pixels differ", d.pixels_over);

    // Overlays: off in a plain render; on a program output the credits come and go by command.
    renderer.submit(program(ProgramAction::Overlay { overlay: Overlay::Credits, visible: true }));
    steps(&mut renderer, 3);
    let plain = renderer.capture().unwrap();
    assert!(diff_images(&back, &plain, 24).is_none_or(|d| d.pixels_over < 50), "no overlay without a program output");
    renderer.app_mut().world_mut().resource_mut::<parvis::engine::program::ProgramOverlays>().enabled = true;
    steps(&mut renderer, 3);
    let credits = renderer.capture().unwrap();
    save_png(&credits, &out_dir().join("program-credits.png")).unwrap();
    let d = diff_images(&back, &credits, 24).unwrap();
    assert!(d.pixels_over > 500, "the credits drew {} pixels", d.pixels_over);
    let (x0, y0, _, _) = d.bbox.unwrap();
    assert!(x0 < 320 / 3 && y0 > 180 / 2, "the lower third is at the bottom left: changes from ({x0}, {y0})");
    renderer.submit(program(ProgramAction::Overlay { overlay: Overlay::Credits, visible: false }));
    steps(&mut renderer, 3);
    let hidden = renderer.capture().unwrap();
    assert!(diff_images(&back, &hidden, 24).is_none_or(|d| d.pixels_over < 50), "hidden again");

    // A viewpoint the venue does not have is refused, naming the ones it has.
    use parvis::engine::command::RejectedCommand;
    let mut cursor = renderer.app_mut().world().resource::<Messages<RejectedCommand>>().get_cursor();
    renderer.submit(program(ProgramAction::Cut { viewpoint: "balcony".into() }));
    renderer.step();
    let world = renderer.app_mut().world();
    let errors: Vec<String> =
        cursor.read(world.resource::<Messages<RejectedCommand>>()).map(|r| r.error.to_string()).collect();
    assert!(errors.iter().any(|e| e.contains("no viewpoint named \"balcony\"") && e.contains("aerial")), "{errors:?}");
}

/// Sends one OSC message with liblo's `oscsend` (a separate OSC implementation).
fn oscsend(addr: std::net::SocketAddr, path: &str, types: &str, values: &[&str]) {
    let found = Command::new("sh").args(["-c", "command -v oscsend"]).output().unwrap();
    assert!(found.status.success(), "oscsend is missing: scripts/test.sh installs liblo-tools");
    let status = Command::new("oscsend")
        .args(["127.0.0.1", &addr.port().to_string(), path, types])
        .args(values)
        .status()
        .unwrap();
    assert!(status.success(), "oscsend {path} {types} {values:?}");
}

/// The built-in venue with its performer taking VMC on a free port, seen from close by.
fn performer_venue(hold: f32, ease: f32) -> HeadlessRenderer {
    use parvis::model::scene::format::{PerformerSource, ViewpointDef};
    let assets = AssetsRoot::new(root().join("assets"));
    let mut scene = load_scene_str(DEFAULT_SCENE, "cloister.ron", &assets).unwrap();
    let performer = &mut scene.performers[0];
    performer.source = PerformerSource::Vmc { port: 0, from: None };
    (performer.hold, performer.ease) = (hold, ease);
    let mut close: ViewpointDef = scene.viewpoints[0].clone();
    close.name = "close".into();
    close.position = [1.6, 1.5, -2.6];
    close.look_at = [1.6, 1.25, -5.9];
    close.fov = 60.0;
    scene.viewpoints.push(close);
    let mut setup = VenueSetup::new(scene, assets);
    setup.viewpoint = Some("close".into());
    let mut renderer = HeadlessRenderer::new(setup, SIZE);
    renderer.wait_until_ready().expect("the venue loads");
    renderer
}

fn performer(renderer: &mut HeadlessRenderer) -> parvis::engine::performer::PerformerState {
    let world = renderer.app_mut().world();
    world.resource::<parvis::engine::performer::Performers>().get("singer").expect("the singer").clone()
}

fn bone(name: &str) -> parvis::model::performer::HumanBone {
    parvis::model::performer::HumanBone::from_name(name).unwrap()
}

#[test]
fn liblo_drives_the_performer_over_vmc_which_holds_then_eases_to_idle_when_the_capture_stops() {
    use parvis::engine::performer::{CaptureState, PerformerStats, pose_link, vmc_ports};
    use parvis::model::osc::AllowList;
    use std::sync::atomic::Ordering;

    // Live until 0.5 s after the last packet, holding for a second more, then 0.4 s of ease.
    let mut renderer = performer_venue(1.0, 0.4);
    let world = renderer.app_mut().world_mut();
    let scene = world.resource::<parvis::engine::command::CurrentScene>().0.clone();
    let doorbell = world.resource::<parvis::engine::rest::Rest>().doorbell.clone();
    let (hub, link) = pose_link(doorbell);
    let stats: std::sync::Arc<PerformerStats> = link.stats.clone();
    let edge = parvis::edges::vmc::VmcEdge::start(
        "127.0.0.1".parse().unwrap(),
        vmc_ports(&scene.performers),
        AllowList::loopback(),
        hub,
    )
    .unwrap();
    let addr = edge.sockets[0].0;
    world.insert_resource(link);
    world.insert_resource(edge);
    for _ in 0..300 {
        if performer(&mut renderer).is_bound() {
            break;
        }
        renderer.step();
    }
    let waiting = performer(&mut renderer);
    assert!(waiting.is_bound(), "the avatar's bones are found");
    assert_eq!(waiting.state, CaptureState::Waiting);
    let idle_arm = waiting.bone_rotation(bone("LeftUpperArm")).unwrap();
    let idle = renderer.capture().unwrap();

    // Unity's rotation (0, 0, -0.5, 0.866) about its left-handed Z raises the left arm 60°
    // above the T-pose: in glTF's axes, 60° about +Z. Hostile values beside it change nothing.
    let send_pose = || {
        oscsend(addr, "/VMC/Ext/Bone/Pos", "sfffffff", &["LeftUpperArm", "0", "0", "0", "0", "0", "-0.5", "0.8660254"]);
        oscsend(addr, "/VMC/Ext/Bone/Pos", "sfffffff", &["RightUpperArm", "0", "0", "0", "0", "0", "0", "1"]);
    };
    oscsend(addr, "/VMC/Ext/Bone/Pos", "sfffffff", &["Head", "0", "0", "0", "nan", "0", "0", "1"]);
    oscsend(addr, "/VMC/Ext/Bone/Pos", "sfffffff", &["Hips", "1e9", "0", "0", "0", "0", "0", "1"]);
    oscsend(addr, "/VMC/Ext/Bone/Pos", "sfffffff", &["Tail", "0", "0", "0", "0", "0", "0", "1"]);
    oscsend(addr, "/VMC/Ext/Bone/Pos", "si", &["Neck", "3"]);
    send_pose();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while stats.applied.load(Ordering::Relaxed) < 2 {
        assert!(std::time::Instant::now() < deadline, "the pose never arrived: {stats:?}");
        renderer.step();
    }
    for _ in 0..20 {
        renderer.step();
    }
    let live = performer(&mut renderer);
    assert_eq!(live.state, CaptureState::Live);
    let raised = Quat::from_rotation_z(60f32.to_radians());
    let arm = live.bone_rotation(bone("LeftUpperArm")).unwrap();
    assert!(arm.angle_between(raised) < 2f32.to_radians(), "the left arm is raised 60°: {arm:?}");
    let right = live.bone_rotation(bone("RightUpperArm")).unwrap();
    assert!(right.angle_between(Quat::IDENTITY) < 2f32.to_radians(), "the right arm in a T: {right:?}");
    assert!(live.bone_rotation(bone("Head")).unwrap().is_finite(), "the head kept a finite rotation despite the NaN");
    assert_eq!(stats.refused_messages.load(Ordering::Relaxed), 4, "NaN, huge, unknown bone, wrong types: {stats:?}");
    // The hand, drawn at the end of the raised arm, is above the shoulder.
    let world = renderer.app_mut().world();
    let y = |b: &str| world.get::<GlobalTransform>(live.bone_entity(bone(b)).unwrap()).unwrap().translation().y;
    assert!(y("LeftHand") > y("LeftUpperArm") + 0.3, "hand {} shoulder {}", y("LeftHand"), y("LeftUpperArm"));
    let raised_image = renderer.capture().unwrap();
    save_png(&raised_image, &out_dir().join("performer-raised.png")).unwrap();
    save_png(&idle, &out_dir().join("performer-idle.png")).unwrap();
    let d = diff_images(&idle, &raised_image, 24).expect("the pose changed the picture");
    assert!(d.pixels_over > 150, "the arms moved {} pixels", d.pixels_over);
    // What changed is the performer: around the arms, not the rest of the venue.
    let (x0, y0, x1, y1) = d.bbox.unwrap();
    assert!(x1 - x0 < SIZE.x * 3 / 4 && y1 - y0 < SIZE.y * 3 / 4, "changes spread to ({x0}, {y0})–({x1}, {y1})");

    // The capture stops: the last pose held for `hold`, then an ease to the idle pose.
    for _ in 0..40 {
        renderer.step();
    }
    let holding = performer(&mut renderer);
    assert_eq!(holding.state, CaptureState::Holding, "a second after the last packet");
    assert!(holding.bone_rotation(bone("LeftUpperArm")).unwrap().angle_between(raised) < 2f32.to_radians());
    for _ in 0..80 {
        renderer.step();
    }
    let idle_again = performer(&mut renderer);
    assert_eq!(idle_again.state, CaptureState::Idle);
    let arm = idle_again.bone_rotation(bone("LeftUpperArm")).unwrap();
    assert!(arm.angle_between(idle_arm) < 1f32.to_radians(), "back in the idle pose: {arm:?} vs {idle_arm:?}");
    let rested = renderer.capture().unwrap();
    assert!(diff_images(&idle, &rested, 24).is_none_or(|d| d.pixels_over < 30), "the picture is the idle one again");

    // A second sender is ignored while the first drives the performer.
    send_pose();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while performer(&mut renderer).state != CaptureState::Live {
        assert!(std::time::Instant::now() < deadline, "the capture never came back");
        renderer.step();
    }
    // Another machine (another loopback address): a second capture rig left sending.
    let other = std::net::UdpSocket::bind("127.0.0.2:0").unwrap();
    let mut args = vec![rosc::OscType::String("LeftUpperArm".into())];
    args.extend([0.0f32, 0.0, 0.0, 0.0, 0.0, 0.0, 1.0].map(rosc::OscType::Float));
    let message = rosc::OscMessage { addr: "/VMC/Ext/Bone/Pos".into(), args };
    let packet = rosc::encoder::encode(&rosc::OscPacket::Message(message)).unwrap();
    other.send_to(&packet, addr).unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while stats.contested.load(Ordering::Relaxed) == 0 {
        assert!(std::time::Instant::now() < deadline, "the second sender was not turned away: {stats:?}");
        renderer.step();
    }
    for _ in 0..20 {
        renderer.step();
    }
    let arm = performer(&mut renderer).bone_rotation(bone("LeftUpperArm")).unwrap();
    assert!(arm.angle_between(raised) < 2f32.to_radians(), "the first sender still drives: {arm:?}");
}

#[test]
fn a_recorded_performance_plays_on_the_show_clock() {
    use parvis::model::performer::recording;
    let bytes = std::fs::read(root().join("assets/performances/evening.poses")).unwrap();
    let records = recording::read(&bytes).unwrap();
    let mut renderer = renderer();
    for _ in 0..100 {
        if performer(&mut renderer).is_bound() {
            break;
        }
        renderer.step();
    }
    let arm = |p: &parvis::engine::performer::PerformerState| p.bone_rotation(bone("LeftUpperArm")).unwrap();
    let at_rest = arm(&performer(&mut renderer));
    let first = &records[0].update.bones.iter().find(|(b, _)| *b == bone("LeftUpperArm")).unwrap().1;
    assert!(at_rest.angle_between(Quat::from_array(first.rotation)) < 1f32.to_radians(), "no show: the first pose");

    renderer.play_show_to("evening", 50.0).unwrap();
    for _ in 0..30 {
        renderer.step();
    }
    let recorded = records.iter().rev().find(|r| r.time <= 50.0).unwrap();
    let expected = recorded.update.bones.iter().find(|(b, _)| *b == bone("LeftUpperArm")).unwrap().1.rotation;
    let drawn = arm(&performer(&mut renderer));
    assert!(
        drawn.angle_between(Quat::from_array(expected)) < 1f32.to_radians(),
        "at 50 s the arm is where the recording has it: {drawn:?} vs {expected:?}"
    );
    assert!(drawn.angle_between(at_rest) > 90f32.to_radians(), "in the finale the arms are up");
}

/// `--performers FILE` plays a recording onto the scene's performers in an offline render, in
/// place of their own source: a rehearsal taken with `--record-performers` renders as it stood.
#[test]
fn a_render_plays_a_recorded_performance_onto_the_performer() {
    use parvis::model::performer::{HumanBone, Pose, PoseUpdate, recording};
    let dir = out_dir();
    let take = dir.join("arms-up.poses");
    let mut file = recording::MAGIC.to_vec();
    // Both arms raised 60° above the T-pose, the whole time.
    let (s, c) = (30f32.to_radians().sin(), 30f32.to_radians().cos());
    // One arm per record, as a sender that sends a bone per packet is recorded: both count.
    for (bone, z) in [("LeftUpperArm", s), ("RightUpperArm", -s)] {
        let pose = Pose { position: [0.0; 3], rotation: [0.0, 0.0, z, c] };
        let update =
            PoseUpdate { root: None, bones: vec![(HumanBone::from_name(bone).unwrap(), pose)], blends: vec![] };
        recording::write(&mut file, &recording::PoseRecord { time: 0.0, performer: "take".into(), update });
    }
    std::fs::write(&take, &file).unwrap();
    // The built-in venue with a viewpoint close to the stage. No show on the transport: a
    // recording then holds its first pose (both records here are at 0 s).
    let scene = dir.join("close-to-the-stage.ron");
    let text = DEFAULT_SCENE.replace(
        "(name: \"aerial\",",
        "(name: \"close\", position: (1.6, 1.5, -2.6), look_at: (1.6, 1.25, -5.9)),\n        (name: \"aerial\",",
    );
    assert!(text.contains("\"close\""));
    std::fs::write(&scene, text).unwrap();
    let render = |extra: &[&str], out: &str| {
        let output = Command::new(env!("CARGO_BIN_EXE_parvis"))
            .args(["render", "--size", "320x180", "--viewpoint", "close"])
            .arg(&scene)
            .args(extra)
            .arg("--out")
            .arg(dir.join(out))
            .current_dir(root())
            .output()
            .unwrap();
        (output.status.success(), String::from_utf8_lossy(&output.stderr).into_owned())
    };
    let (ok, stderr) = render(&[], "rehearsal-own.png");
    assert!(ok, "{stderr}");
    let (ok, stderr) = render(&["--performers", take.to_str().unwrap()], "rehearsal-take.png");
    assert!(ok, "{stderr}");
    let own = image::open(dir.join("rehearsal-own.png")).unwrap().to_rgba8();
    let played = image::open(dir.join("rehearsal-take.png")).unwrap().to_rgba8();
    let d = diff_images(&own, &played, 24).expect("the arms are up");
    assert!(d.pixels_over > 100, "the raised arms changed {} pixels", d.pixels_over);
    let (x0, y0, x1, y1) = d.bbox.unwrap();
    assert!(x1 - x0 < 200 && y1 < 120, "only the performer's arms changed: ({x0}, {y0})–({x1}, {y1})");
    // Both arms: the changes lie on both sides of the performer's middle.
    let middle = (x0 + x1) / 2;
    let side = |range: std::ops::Range<u32>| {
        range
            .flat_map(|x| (y0..=y1).map(move |y| (x, y)))
            .filter(|&(x, y)| {
                let (a, b) = (own.get_pixel(x, y).0, played.get_pixel(x, y).0);
                (0..3).any(|i| a[i].abs_diff(b[i]) > 24)
            })
            .count()
    };
    assert!(side(x0..middle) > 2 && side(middle + 1..x1 + 1) > 2, "both arms moved");

    // A broken recording stops the render, naming the file and where it breaks.
    std::fs::write(&take, &file[..file.len() - 3]).unwrap();
    let (ok, stderr) = render(&["--performers", take.to_str().unwrap()], "rehearsal-broken.png");
    assert!(!ok && stderr.contains("arms-up.poses: byte 44: a truncated record"), "{stderr}");
}
