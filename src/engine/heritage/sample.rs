//! Synthetic scans: points sampled on a venue's surfaces, as a scanner would record them. The
//! tests import such scans, and the benchmarks make them as large as they need.

use bevy::mesh::{Indices, Mesh, VertexAttributeValues};
use bevy::prelude::*;

use super::scan::Point;
use crate::engine::scene::mesh::shape_mesh;
use crate::engine::scene::venue::to_transform;
use crate::model::rng::SeededRng;
use crate::model::scene::format::{SceneFile, ShapeDef};

/// ASPRS class for ground, given to floors (planes); the rest is "building".
const GROUND: u8 = 2;
const BUILDING: u8 = 6;

/// `n` points spread evenly (by area) over every primitive of `scene`, with the primitives'
/// colours; the same seed gives the same scan.
pub fn sample_scene(scene: &SceneFile, n: usize, seed: u64) -> Vec<Point> {
    let mut triangles: Vec<([Vec3; 3], [u8; 3], u8)> = Vec::new();
    for prim in &scene.primitives {
        let mesh = shape_mesh(&prim.shape);
        let Some(VertexAttributeValues::Float32x3(positions)) = mesh.attribute(Mesh::ATTRIBUTE_POSITION) else {
            continue;
        };
        let indices: Vec<usize> = match mesh.indices() {
            Some(Indices::U16(i)) => i.iter().map(|v| usize::from(*v)).collect(),
            Some(Indices::U32(i)) => i.iter().map(|v| *v as usize).collect(),
            None => (0..positions.len()).collect(),
        };
        let colour = prim.material.colour.to_rgba8();
        let class = if matches!(prim.shape, ShapeDef::Plane { .. }) { GROUND } else { BUILDING };
        let base = to_transform(&prim.transform);
        let (copies, step) = prim.repeat.map_or((1, Vec3::ZERO), |r| (r.count, Vec3::from(r.step)));
        for copy in 0..copies {
            let mut transform = base;
            transform.translation += step * copy as f32;
            let matrix = transform.to_matrix();
            for tri in indices.chunks_exact(3) {
                let corner = |k: usize| matrix.transform_point3(Vec3::from(positions[tri[k]]));
                triangles.push(([corner(0), corner(1), corner(2)], [colour[0], colour[1], colour[2]], class));
            }
        }
    }
    let mut cumulative = Vec::with_capacity(triangles.len());
    let mut total = 0.0f64;
    for ([a, b, c], _, _) in &triangles {
        total += f64::from((*b - *a).cross(*c - *a).length() / 2.0);
        cumulative.push(total);
    }
    if triangles.is_empty() || total <= 0.0 {
        return Vec::new();
    }
    let mut rng = SeededRng::new(seed);
    (0..n)
        .map(|i| {
            let pick = f64::from(rng.unit()) * total;
            let t = cumulative.partition_point(|c| *c < pick).min(triangles.len() - 1);
            let ([a, b, c], colour, class) = triangles[t];
            let (mut u, mut v) = (rng.unit(), rng.unit());
            if u + v > 1.0 {
                (u, v) = (1.0 - u, 1.0 - v);
            }
            let p = a + (b - a) * u + (c - a) * v;
            Point { position: p.to_array(), colour, intensity: (i % 4096) as u16 * 16, class }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_scan_of_the_cloister_covers_its_surfaces_with_their_colours() {
        let scene = crate::model::scene::validate::parse_scene(crate::model::scene::DEFAULT_SCENE).unwrap();
        let scan = sample_scene(&scene, 50_000, 7);
        assert_eq!(scan.len(), 50_000);
        assert_eq!(scan, sample_scene(&scene, 50_000, 7), "same seed, same scan");
        assert_ne!(scan, sample_scene(&scene, 50_000, 8));
        let ground = scan.iter().filter(|p| p.class == GROUND).count();
        assert!(ground > 5_000 && ground < 45_000, "floors and walls both scanned: {ground} ground points");
        let colours: std::collections::HashSet<[u8; 3]> = scan.iter().map(|p| p.colour).collect();
        assert!(colours.len() >= 4, "{colours:?}");
        assert!(scan.iter().all(|p| p.position.iter().all(|v| v.is_finite() && v.abs() < 500.0)));
    }
}
