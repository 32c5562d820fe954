//! `parvis import`: a scan into the cache a viewer streams from, with a progress bar and a scene entry to paste.

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::Result;
use parvis::model::assets_root::AssetsRoot;

use super::args::*;

/// The scan's path as a scene writes it: relative to the assets root, with forward slashes.
/// A scan outside the root cannot be named by a scene: the error says what to do.
fn scene_path(input: &Path, assets: Option<&Path>) -> Result<String, String> {
    let root = match assets {
        Some(dir) => AssetsRoot::new(dir),
        None => AssetsRoot::discover(),
    };
    let (Ok(file), Ok(dir)) = (input.canonicalize(), root.dir().canonicalize()) else {
        return Err(format!("the assets folder {} cannot be found", root.dir().display()));
    };
    let relative = file.strip_prefix(&dir).map_err(|_| {
        format!(
            "{} is outside the assets folder {}: a scene cannot name it. Move the scan (and its files) into that \
             folder, or import with --assets set to a folder that holds it.",
            input.display(),
            dir.display()
        )
    })?;
    Ok(relative.components().map(|c| c.as_os_str().to_string_lossy()).collect::<Vec<_>>().join("/"))
}

/// The `path:` of the printed entry, or the path as typed with the reason it will not do.
fn entry_path(args: &ImportArgs) -> String {
    match scene_path(&args.input, args.assets.as_deref()) {
        Ok(path) => path,
        Err(why) => {
            println!("note: {why}");
            args.input.to_string_lossy().into_owned()
        }
    }
}

pub fn import(args: &ImportArgs) -> Result<()> {
    let cache = match &args.cache {
        Some(dir) => dir.clone(),
        None => args.input.parent().unwrap_or(std::path::Path::new(".")).join(".parvis-cache"),
    };
    let extension = args.input.extension().and_then(|e| e.to_str()).map(str::to_ascii_lowercase).unwrap_or_default();
    if matches!(extension.as_str(), "glb" | "gltf") {
        return import_mesh(args, &cache);
    }
    let config = parvis::engine::heritage::octree::OctreeConfig {
        max_points_per_node: args.points_per_node.clamp(100, 1_000_000),
        ..Default::default()
    };
    let progress = std::sync::Arc::new(parvis::engine::heritage::Progress::default());
    let imported =
        with_progress(&progress, || parvis::engine::heritage::import(&args.input, &cache, config, &progress))?;
    let index = &imported.index;
    if imported.cached {
        println!("{} was imported before: {}", args.input.display(), imported.dir.display());
    } else {
        let [read, built, written] = imported.timings.map(|d| d.as_secs_f64());
        let rate = index.points as f64 / read.max(1e-9);
        println!(
            "imported {} points into {} nodes in {}: read {read:.2} s ({rate:.0} points/s), octree {built:.2} s, written {written:.2} s{}",
            index.points,
            index.nodes.len(),
            imported.dir.display(),
            if index.dropped > 0 { format!("; {} duplicate points left out", index.dropped) } else { String::new() },
        );
    }
    let depth = index.nodes.iter().map(|n| n.depth).max().unwrap_or(0);
    println!(
        "origin {:?}; {} levels; colour {}, intensity {}, classification {}",
        index.origin,
        depth + 1,
        index.attributes.colour,
        index.attributes.intensity,
        index.attributes.classification
    );
    // A scene entry to paste: the folder works as `path` too, relative to the assets root.
    let name = args.input.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_else(|| "scan".into());
    let path = entry_path(args);
    println!();
    println!("Paste into the scene's `clouds: [...]` (path relative to the assets root; the venue finds this import");
    println!("in .parvis-cache next to the scan, or give the import's folder as the path; fill in the credit):");
    println!("        (name: {name:?}, path: {path:?},");
    println!("            transform: (translation: (0.0, 0.0, 0.0)), // a Z-up scan needs rotation: (-90.0, 0.0, 0.0)");
    println!(
        "            colouring: {}, point_budget: 3000000, memory_budget_mb: 512,",
        match (index.attributes.colour, index.attributes.intensity) {
            (true, _) => "Rgb",
            (false, true) => "Intensity",
            // Nothing but positions: height shows the shape.
            (false, false) => "Elevation",
        }
    );
    println!("            credit: (author: \"\", licence: \"\", source: \"\")),");
    Ok(())
}

/// Runs `f` while a thread draws `progress` on stderr.
pub fn with_progress<T>(progress: &std::sync::Arc<parvis::engine::heritage::Progress>, f: impl FnOnce() -> T) -> T {
    let shown = progress.clone();
    let done = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let finished = done.clone();
    let bar = std::thread::spawn(move || show_progress(&shown, &finished));
    let result = f();
    done.store(true, std::sync::atomic::Ordering::Relaxed);
    let _ = bar.join();
    result
}

pub fn import_mesh(args: &ImportArgs, cache: &std::path::Path) -> Result<()> {
    let progress = std::sync::Arc::new(parvis::engine::heritage::Progress::default());
    let started = Instant::now();
    let imported =
        with_progress(&progress, || parvis::engine::heritage::mesh::import_mesh(&args.input, cache, &progress))?;
    let index = &imported.index;
    if imported.cached {
        println!("{} was imported before: {}", args.input.display(), imported.dir.display());
    } else {
        let chunks: usize = index.parts.iter().map(|p| p.chunks.len()).sum();
        let seconds = started.elapsed().as_secs_f64();
        println!(
            "imported {} triangles in {} parts, {chunks} chunks, into {} in {seconds:.2} s ({:.0} triangles/s)",
            index.triangles,
            index.parts.len(),
            imported.dir.display(),
            index.triangles as f64 / seconds.max(1e-9)
        );
    }
    let deepest = index.parts.iter().flat_map(|p| &p.chunks).map(|c| c.levels.len()).max().unwrap_or(0);
    let coarsest: u64 =
        index.parts.iter().flat_map(|p| &p.chunks).map(|c| u64::from(c.levels.last().map_or(0, |l| l.triangles))).sum();
    println!("{deepest} levels of detail; the coarsest has {coarsest} triangles");
    for note in &index.notes {
        println!("note: {note}");
    }
    let name = args.input.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_else(|| "scan".into());
    let path = entry_path(args);
    println!();
    println!("Paste into the scene's `meshes: [...]` (path relative to the assets root; fill in the credit):");
    println!("        (name: {name:?}, path: {path:?}, max_error_px: 1.0,");
    println!("            credit: (author: \"\", licence: \"\", source: \"\")),");
    Ok(())
}

/// The import's progress on stderr: a bar redrawn in place on a terminal, a line per step
/// in a log.
pub fn show_progress(progress: &parvis::engine::heritage::Progress, done: &std::sync::atomic::AtomicBool) {
    use std::io::{IsTerminal, Write};
    let terminal = std::io::stderr().is_terminal();
    let started = Instant::now();
    let mut seen = 0;
    let mut last_tenth = None;
    loop {
        let finished = done.load(std::sync::atomic::Ordering::Relaxed);
        let step = progress.step();
        let fraction = progress.fraction();
        let elapsed = started.elapsed().as_secs_f32();
        let steps = progress.steps();
        if steps.len() > seen {
            if terminal && seen > 0 {
                eprintln!();
            }
            for begun in &steps[seen..] {
                if !terminal || begun != &step {
                    eprintln!("parvis: import: {begun} ({elapsed:.1} s)");
                }
            }
            seen = steps.len();
            last_tenth = None;
        }
        if let Some(f) = fraction {
            let tenth = (f * 10.0) as u32;
            if terminal {
                let filled = (f * 30.0) as usize;
                eprint!(
                    "\rparvis: import: {step:<20} [{}{}] {:>3.0} % ({elapsed:.1} s)",
                    "#".repeat(filled),
                    "-".repeat(30 - filled),
                    f * 100.0
                );
                let _ = std::io::stderr().flush();
            } else if last_tenth != Some(tenth) && tenth > 0 {
                eprintln!("parvis: import: {step} {:.0} % ({elapsed:.1} s)", f * 100.0);
                last_tenth = Some(tenth);
            }
        } else if terminal && !step.is_empty() {
            eprint!("\rparvis: import: {step:<20} ({elapsed:.1} s)");
            let _ = std::io::stderr().flush();
        }
        if finished {
            if terminal {
                eprintln!();
            }
            return;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}
