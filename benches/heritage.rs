//! Import throughput of scans (issue #6): synthetic scans of the built-in cloister, 1 M and
//! 10 M points, written as PLY, LAS and LAZ, then imported as `parvis import` does (read,
//! octree, cache). Prints points per second per phase. See docs/benchmarks.md.

use std::time::Instant;

use parvis::engine::heritage::las::write_las;
use parvis::engine::heritage::octree::OctreeConfig;
use parvis::engine::heritage::ply::write_ply;
use parvis::engine::heritage::sample::sample_scene;
use parvis::model::scene::DEFAULT_SCENE;
use parvis::model::scene::validate::parse_scene;

fn main() {
    let scene = parse_scene(DEFAULT_SCENE).expect("built-in scene");
    let dir = std::env::temp_dir().join(format!("parvis-bench-heritage-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let sizes: Vec<usize> = std::env::args().skip(1).filter_map(|a| a.parse().ok()).collect();
    let sizes = if sizes.is_empty() { vec![1_000_000, 10_000_000] } else { sizes };
    for n in sizes {
        let start = Instant::now();
        let scan = sample_scene(&scene, n, 1);
        let sampled = start.elapsed().as_secs_f64();
        for ext in ["ply", "las", "laz"] {
            let path = dir.join(format!("scan-{n}.{ext}"));
            if ext == "ply" {
                write_ply(&scan, std::io::BufWriter::new(std::fs::File::create(&path).expect("create")))
                    .expect("write ply");
            } else {
                write_las(&scan, [652_000.0, 6_862_000.0, 35.0], &path).expect("write las");
            }
            let bytes = std::fs::metadata(&path).map(|m| m.len()).unwrap_or(0);
            let cache = dir.join("cache");
            let _ = std::fs::remove_dir_all(&cache);
            let imported =
                parvis::engine::heritage::import(&path, &cache, OctreeConfig::default(), &Default::default())
                    .expect("import");
            let [read, built, written] = imported.timings.map(|d| d.as_secs_f64());
            let total = read + built + written;
            println!(
                "{n:>10} points, {ext} ({:.0} MB): read {:.2} M points/s, octree {:.2} M points/s, cache {:.2} M points/s; whole import {:.2} s ({:.2} M points/s), {} nodes",
                bytes as f64 / 1e6,
                n as f64 / read / 1e6,
                n as f64 / built / 1e6,
                n as f64 / written / 1e6,
                total,
                n as f64 / total / 1e6,
                imported.index.nodes.len(),
            );
            let _ = std::fs::remove_file(&path);
        }
        println!("{n:>10} points sampled from the cloister in {sampled:.2} s");
    }
    let _ = std::fs::remove_dir_all(&dir);
}
