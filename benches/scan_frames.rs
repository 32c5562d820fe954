//! Frame time and resident memory against data size (issue #6): the same venue showing a
//! point cloud of 1 M, 10 M or 100 M points, or a scanned mesh of 1 M or 10 M triangles with a
//! full material (issue #20: base colour, normal map, occlusion, metallic-roughness,
//! double-sided), on whatever adapter renders (lavapipe on machines without a GPU).
//!
//! Each size is generated, imported and rendered in a child process of its own, so that one
//! size's memory does not count in the next: the resident set measured is the renderer's
//! while it shows that scan, after the import (which a venue does once, ahead of the show).
//!
//! `cargo bench --bench scan_frames -- clouds 1000000 10000000` or `-- meshes 1000000`;
//! no arguments runs clouds at 1 M and 10 M and meshes at 1 M and 10 M.
//! `PARVIS_BENCH_POINT_BUDGET=500000` sets the clouds' point budget (2 M by default).
//! `PARVIS_BENCH_MATERIAL=base` (or `base,normal`, `base,orm`, `base,double`) gives the mesh a
//! base colour and only the listed properties, to measure what each costs (default `full`);
//! `PARVIS_BENCH_ONE_SIDED=1` draws the mesh with `one_sided: true`.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use bevy::prelude::*;
use parvis::app::VenueSetup;
use parvis::app::headless::HeadlessRenderer;
use parvis::engine::camera::CameraRig;
use parvis::engine::heritage::cloud::CloudStatus;
use parvis::engine::heritage::lod::MeshScanStatus;
use parvis::model::assets_root::AssetsRoot;
use parvis::model::scene::DEFAULT_SCENE;
use parvis::model::scene::validate::parse_scene;

const SIZE: UVec2 = UVec2::new(640, 360);
const FRAMES: usize = 20;

/// Where the camera stands: a wide view, inside, and close to a wall.
const VIEWS: [([f32; 3], [f32; 3]); 3] = [
    ([18.0, 16.0, 26.0], [-1.5, 2.5, -2.5]),
    ([-1.3, 1.7, 7.0], [0.0, 1.8, -6.0]),
    ([-9.7, 1.7, 9.5], [-9.7, 1.7, -6.0]),
];

fn main() {
    let args: Vec<String> = std::env::args().skip(1).filter(|a| a != "--bench").collect();
    match args.first().map(String::as_str) {
        Some("--child-cloud") => return child_cloud(Path::new(&args[1]), args[2].parse().expect("points")),
        Some("--child-mesh") => return child_mesh(Path::new(&args[1]), args[2].parse().expect("grid")),
        _ => {}
    }
    let dir = std::env::temp_dir().join("parvis-bench-scan-frames");
    std::fs::create_dir_all(&dir).expect("temp dir");
    let kind = args.first().cloned();
    let sizes: Vec<u64> = args.iter().filter_map(|a| a.parse().ok()).collect();
    let runs: Vec<(&str, u64)> = match kind.as_deref() {
        Some("clouds") => sizes.iter().map(|s| ("cloud", *s)).collect(),
        Some("meshes") => sizes.iter().map(|s| ("mesh", *s)).collect(),
        _ => vec![("cloud", 1_000_000), ("cloud", 10_000_000), ("mesh", 1_000_000), ("mesh", 10_000_000)],
    };
    println!(
        "adapter frames at {}×{}, {FRAMES} frames per view after the view has settled; median ms per frame",
        SIZE.x, SIZE.y
    );
    for (kind, n) in runs {
        let exe = std::env::current_exe().expect("own path");
        let flag = if kind == "cloud" { "--child-cloud" } else { "--child-mesh" };
        let output = Command::new(exe)
            .args([flag, dir.to_str().expect("utf-8 path"), &n.to_string()])
            .output()
            .expect("child runs");
        print!("{}", String::from_utf8_lossy(&output.stdout));
        if !output.status.success() {
            eprintln!("{kind} {n}: failed\n{}", String::from_utf8_lossy(&output.stderr));
        }
    }
}

fn resident_mib() -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        .map_or(0.0, |kb| kb / 1024.0)
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// Writes the scan (unless there) and imports it with the real CLI, in its own process.
fn prepare(dir: &Path, file: &str, write: impl FnOnce(&Path)) -> PathBuf {
    let scans = dir.join("scans");
    std::fs::create_dir_all(&scans).expect("scans dir");
    let path = scans.join(file);
    if !path.exists() {
        let start = Instant::now();
        write(&path);
        eprintln!("{file}: written in {:.1} s", start.elapsed().as_secs_f64());
    }
    let start = Instant::now();
    let status = Command::new(env!("CARGO_BIN_EXE_parvis"))
        .args([
            "import",
            path.to_str().expect("utf-8"),
            "--cache",
            scans.join(".parvis-cache").to_str().expect("utf-8"),
        ])
        .output()
        .expect("import runs");
    assert!(status.status.success(), "import failed: {}", String::from_utf8_lossy(&status.stderr));
    eprintln!("{file}: imported in {:.1} s", start.elapsed().as_secs_f64());
    path
}

fn scene_with(entry: &str, field: &str) -> parvis::model::scene::format::SceneFile {
    let mut scene = parse_scene(DEFAULT_SCENE).expect("built-in scene").stage_only();
    match field {
        "clouds" => scene.clouds.push(ron::from_str(entry).expect("cloud entry")),
        _ => scene.meshes.push(ron::from_str(entry).expect("mesh entry")),
    }
    scene
}

/// Renders the views; returns the median frame time per view and the drawn amount.
fn measure(renderer: &mut HeadlessRenderer, drawn: impl Fn(&mut HeadlessRenderer) -> (u64, bool)) -> Vec<(f64, u64)> {
    let camera = renderer.camera();
    let mut out = Vec::new();
    for (eye, target) in VIEWS {
        renderer
            .app_mut()
            .world_mut()
            .entity_mut(camera)
            .insert(CameraRig::looking(Vec3::from(eye), Vec3::from(target)));
        for _ in 0..3000 {
            renderer.step();
            if drawn(renderer).1 {
                break;
            }
        }
        let mut times = Vec::new();
        for _ in 0..FRAMES {
            let start = Instant::now();
            renderer.step();
            times.push(start.elapsed().as_secs_f64() * 1000.0);
        }
        out.push((median(times), drawn(renderer).0));
    }
    out
}

fn report(label: &str, views: &[(f64, u64)], unit: &str, rss: f64, extra: &str) {
    let per_view: Vec<String> =
        views.iter().map(|(ms, n)| format!("{ms:.1} ms ({:.2} M {unit})", *n as f64 / 1e6)).collect();
    println!("{label}: {} | resident {rss:.0} MiB{extra}", per_view.join(", "));
}

fn child_cloud(dir: &Path, n: u64) {
    let file = format!("cloister-{n}.ply");
    prepare(dir, &file, |path| {
        let scene = parse_scene(DEFAULT_SCENE).expect("built-in scene");
        // Written in slices: a 100 M point scan need not be held whole while writing.
        let mut out = std::io::BufWriter::new(std::fs::File::create(path).expect("create"));
        let slices = n.div_ceil(10_000_000);
        let header = format!(
            "ply\nformat binary_little_endian 1.0\nelement vertex {n}\nproperty float x\nproperty float y\nproperty float z\nproperty uchar red\nproperty uchar green\nproperty uchar blue\nend_header\n"
        );
        std::io::Write::write_all(&mut out, header.as_bytes()).expect("write");
        for s in 0..slices {
            let count = (n - s * 10_000_000).min(10_000_000) as usize;
            for p in parvis::engine::heritage::sample::sample_scene(&scene, count, 1 + s) {
                let mut record = Vec::with_capacity(15);
                for v in p.position {
                    record.extend(v.to_le_bytes());
                }
                record.extend(p.colour);
                std::io::Write::write_all(&mut out, &record).expect("write");
            }
        }
    });
    let budget: u64 = std::env::var("PARVIS_BENCH_POINT_BUDGET").ok().and_then(|b| b.parse().ok()).unwrap_or(2_000_000);
    let entry = format!(
        r#"(name: "scan", path: "scans/{file}", point_budget: {budget}, memory_budget_mb: 320, credit: (author: "bench", licence: "CC0-1.0"))"#
    );
    let mut renderer = HeadlessRenderer::new(VenueSetup::new(scene_with(&entry, "clouds"), AssetsRoot::new(dir)), SIZE);
    renderer.wait_until_ready().expect("the cloud streams");
    let status = |r: &mut HeadlessRenderer| {
        let world = r.app_mut().world_mut();
        world.query::<&CloudStatus>().single(world).expect("one cloud").clone()
    };
    let views = measure(&mut renderer, |r| {
        let s = status(r);
        (s.drawn_points, s.settled())
    });
    let s = status(&mut renderer);
    report(
        &format!("cloud {:>4} M points, budget {budget}", n / 1_000_000),
        &views,
        "points",
        resident_mib(),
        &format!(
            ", cloud holds {:.0} MiB of its {:.0} MiB budget",
            s.resident_bytes as f64 / 1048576.0,
            s.budget_bytes as f64 / 1048576.0
        ),
    );
}

fn png(image: &image::RgbaImage) -> Vec<u8> {
    let mut bytes = Vec::new();
    image.write_to(&mut std::io::Cursor::new(&mut bytes), image::ImageFormat::Png).expect("png");
    bytes
}

/// A bumpy terrain of 60 m with what a photogrammetry scan's material carries: a base colour,
/// a normal map, occlusion, roughness and metalness packed in one texture (1024² each), seen
/// from both sides. `properties` other than "full" keep the base colour and add those listed
/// (`normal`, `orm`, `double`), to see what each costs.
fn write_textured_scan(grid: u32, properties: &str, path: &Path) {
    let has = |p: &str| properties == "full" || properties.split(',').any(|q| q == p);
    use parvis::engine::heritage::mesh::{GlbWriter, generate_scan_grid};
    let (positions, normals, uvs, indices) = generate_scan_grid(grid, 60.0);
    let colour = image::RgbaImage::from_fn(1024, 1024, |x, y| image::Rgba([(x / 4) as u8, (y / 4) as u8, 128, 255]));
    let normal = image::RgbaImage::from_fn(1024, 1024, |x, y| {
        let (dx, dy) = ((x as f32 * 0.2).sin() * 60.0, (y as f32 * 0.13).cos() * 60.0);
        image::Rgba([(128.0 + dx) as u8, (128.0 + dy) as u8, 230, 255])
    });
    let orm = image::RgbaImage::from_fn(1024, 1024, |x, y| {
        image::Rgba([200 + ((x ^ y) % 56) as u8, 150 + (x % 100) as u8, 0, 255])
    });
    let mut glb = GlbWriter::default();
    let (colour, normal, orm) =
        (glb.texture(&png(&colour), None), glb.texture(&png(&normal), None), glb.texture(&png(&orm), None));
    let mut material = serde_json::json!({"pbrMetallicRoughness": {"baseColorTexture": {"index": colour}}});
    if has("orm") {
        material["pbrMetallicRoughness"]["metallicRoughnessTexture"] = serde_json::json!({"index": orm});
        material["occlusionTexture"] = serde_json::json!({"index": orm});
    }
    if has("normal") {
        material["normalTexture"] = serde_json::json!({"index": normal});
    }
    material["doubleSided"] = serde_json::json!(has("double"));
    let material = glb.material(material);
    glb.mesh("terrace", &positions, &normals, &uvs, &indices, material, serde_json::json!({}));
    glb.write(path).expect("glb");
}

fn child_mesh(dir: &Path, triangles: u64) {
    let grid = ((triangles / 2) as f64).sqrt().round() as u32;
    let properties = std::env::var("PARVIS_BENCH_MATERIAL").unwrap_or_else(|_| "full".into());
    let file = match properties.as_str() {
        "full" => format!("terrace-{triangles}.glb"),
        other => format!("terrace-{triangles}-{}.glb", other.replace(',', "-")),
    };
    prepare(dir, &file, |path| write_textured_scan(grid, &properties, path));
    let one_sided = std::env::var_os("PARVIS_BENCH_ONE_SIDED").is_some();
    let entry = format!(
        r#"(name: "scan", path: "scans/{file}", one_sided: {one_sided}, credit: (author: "bench", licence: "CC0-1.0"))"#
    );
    let mut renderer = HeadlessRenderer::new(VenueSetup::new(scene_with(&entry, "meshes"), AssetsRoot::new(dir)), SIZE);
    renderer.wait_until_ready().expect("the mesh shows");
    let status = |r: &mut HeadlessRenderer| {
        let world = r.app_mut().world_mut();
        world.query::<&MeshScanStatus>().single(world).expect("one mesh").clone()
    };
    let views = measure(&mut renderer, |r| (status(r).drawn_triangles, true));
    let s = status(&mut renderer);
    report(
        &format!("mesh  {:>4} M triangles", s.source_triangles as f64 / 1e6),
        &views,
        "triangles",
        resident_mib(),
        &format!(", {} chunks", s.chunks),
    );
}
