//! Meshes for the scene file's primitive shapes, including the round-headed arch that
//! cloisters, arcades and naves are built from.

use std::f32::consts::PI;

use bevy::asset::RenderAssetUsages;
use bevy::math::primitives::{Cone, Cuboid, Cylinder, Plane3d, Sphere};
use bevy::mesh::{Indices, Mesh, MeshBuilder, Meshable, PrimitiveTopology};
use bevy::prelude::{Vec2, Vec3};

use crate::model::scene::format::ShapeDef;

/// Builds the mesh of a shape. Dimensions must have been validated.
pub fn shape_mesh(shape: &ShapeDef) -> Mesh {
    match *shape {
        ShapeDef::Box { size } => Cuboid::new(size[0], size[1], size[2]).mesh().build(),
        ShapeDef::Plane { size } => Plane3d::default().mesh().size(size[0], size[1]).build(),
        ShapeDef::Sphere { radius } => Sphere::new(radius).mesh().uv(32, 18),
        ShapeDef::Cylinder { radius, height } => Cylinder::new(radius, height).mesh().resolution(24).build(),
        ShapeDef::Cone { radius, height } => Cone::new(radius, height).mesh().resolution(24).build(),
        ShapeDef::Arch { width, height, depth, opening, spring } => arch_mesh(width, height, depth, opening, spring),
    }
}

/// Collects flat-shaded faces; each face gets its own vertices so edges stay crisp.
#[derive(Default)]
struct FaceBuilder {
    positions: Vec<[f32; 3]>,
    normals: Vec<[f32; 3]>,
    uvs: Vec<[f32; 2]>,
    indices: Vec<u32>,
}

impl FaceBuilder {
    /// Adds a triangle whose front faces along `normal`, fixing the winding if needed.
    fn triangle(&mut self, a: Vec3, b: Vec3, c: Vec3, normal: Vec3) {
        let (b, c) = if (b - a).cross(c - a).dot(normal) >= 0.0 { (b, c) } else { (c, b) };
        let base = self.positions.len() as u32;
        for p in [a, b, c] {
            self.positions.push(p.to_array());
            self.normals.push(normal.to_array());
            // Planar mapping along the face's dominant axis, one texture unit per metre.
            let uv = if normal.x.abs() > 0.5 {
                Vec2::new(p.z, p.y)
            } else if normal.y.abs() > 0.5 {
                Vec2::new(p.x, p.z)
            } else {
                Vec2::new(p.x, p.y)
            };
            self.uvs.push(uv.to_array());
        }
        self.indices.extend([base, base + 1, base + 2]);
    }

    /// Adds a quad `a b c d` (in order around its edge) facing along `normal`.
    fn quad(&mut self, a: Vec3, b: Vec3, c: Vec3, d: Vec3, normal: Vec3) {
        self.triangle(a, b, c, normal);
        self.triangle(a, c, d, normal);
    }

    fn build(self) -> Mesh {
        Mesh::new(PrimitiveTopology::TriangleList, RenderAssetUsages::default())
            .with_inserted_attribute(Mesh::ATTRIBUTE_POSITION, self.positions)
            .with_inserted_attribute(Mesh::ATTRIBUTE_NORMAL, self.normals)
            .with_inserted_attribute(Mesh::ATTRIBUTE_UV_0, self.uvs)
            .with_inserted_indices(Indices::U32(self.indices))
    }
}

/// Segments of the arch head's half circle.
const ARCH_SEGMENTS: usize = 24;

/// A wall `width` × `height` × `depth` standing on y = 0, centred on x = 0 and z = 0, pierced
/// by an opening `opening` wide whose round head springs at `spring`.
pub fn arch_mesh(width: f32, height: f32, depth: f32, opening: f32, spring: f32) -> Mesh {
    let (hw, hd, r) = (width / 2.0, depth / 2.0, opening / 2.0);
    let mut faces = FaceBuilder::default();

    // The outline of the front face above the springing line: sample the half circle at
    // regular angles plus the two angles that point at the wall's top corners, so that each
    // band between two samples meets the outer edge along one straight side.
    let corner = (height - spring).atan2(hw);
    let mut angles: Vec<f32> = (0..=ARCH_SEGMENTS).map(|i| PI * i as f32 / ARCH_SEGMENTS as f32).collect();
    angles.extend([corner, PI - corner]);
    angles.sort_by(f32::total_cmp);
    angles.dedup_by(|a, b| (*a - *b).abs() < 1e-5);
    let outer = |a: f32| -> Vec2 {
        let dir = Vec2::new(a.cos(), a.sin());
        // Ray from the circle's centre to the wall's outline: left/right sides or the top.
        let to_side = if dir.x.abs() > 1e-6 { hw / dir.x.abs() } else { f32::INFINITY };
        let to_top = if dir.y > 1e-6 { (height - spring) / dir.y } else { f32::INFINITY };
        let t = to_side.min(to_top);
        Vec2::new(dir.x * t, spring + dir.y * t)
    };
    let inner = |a: f32| Vec2::new(r * a.cos(), spring + r * a.sin());

    for (z, normal) in [(hd, Vec3::Z), (-hd, Vec3::NEG_Z)] {
        let at = |p: Vec2| Vec3::new(p.x, p.y, z);
        // Piers either side of the opening, below the springing line.
        if spring > 0.0 {
            faces.quad(
                at(Vec2::new(-hw, 0.0)),
                at(Vec2::new(-r, 0.0)),
                at(Vec2::new(-r, spring)),
                at(Vec2::new(-hw, spring)),
                normal,
            );
            faces.quad(
                at(Vec2::new(r, 0.0)),
                at(Vec2::new(hw, 0.0)),
                at(Vec2::new(hw, spring)),
                at(Vec2::new(r, spring)),
                normal,
            );
        }
        // Spandrels: bands between the half circle and the outline.
        for pair in angles.windows(2) {
            let (a0, a1) = (pair[0], pair[1]);
            faces.quad(at(inner(a0)), at(outer(a0)), at(outer(a1)), at(inner(a1)), normal);
        }
    }

    // Intrados: the underside of the arch head, facing the opening's axis.
    for pair in angles.windows(2) {
        let (a0, a1) = (pair[0], pair[1]);
        let mid = (a0 + a1) / 2.0;
        let normal = Vec3::new(-mid.cos(), -mid.sin(), 0.0);
        let (p0, p1) = (inner(a0), inner(a1));
        faces.quad(
            Vec3::new(p0.x, p0.y, hd),
            Vec3::new(p1.x, p1.y, hd),
            Vec3::new(p1.x, p1.y, -hd),
            Vec3::new(p0.x, p0.y, -hd),
            normal,
        );
    }
    // Inner faces of the piers.
    if spring > 0.0 {
        for (x, normal) in [(-r, Vec3::X), (r, Vec3::NEG_X)] {
            faces.quad(
                Vec3::new(x, 0.0, hd),
                Vec3::new(x, spring, hd),
                Vec3::new(x, spring, -hd),
                Vec3::new(x, 0.0, -hd),
                normal,
            );
        }
    }
    // Outer sides and top.
    for (x, normal) in [(-hw, Vec3::NEG_X), (hw, Vec3::X)] {
        faces.quad(
            Vec3::new(x, 0.0, hd),
            Vec3::new(x, height, hd),
            Vec3::new(x, height, -hd),
            Vec3::new(x, 0.0, -hd),
            normal,
        );
    }
    faces.quad(
        Vec3::new(-hw, height, hd),
        Vec3::new(hw, height, hd),
        Vec3::new(hw, height, -hd),
        Vec3::new(-hw, height, -hd),
        Vec3::Y,
    );
    faces.build()
}

#[cfg(test)]
mod tests {
    use super::*;
    use bevy::mesh::VertexAttributeValues;

    #[test]
    fn arch_is_closed_within_its_bounds_and_faces_outward() {
        let mesh = arch_mesh(3.0, 4.0, 0.6, 2.0, 2.0);
        let Some(VertexAttributeValues::Float32x3(positions)) = mesh.attribute(Mesh::ATTRIBUTE_POSITION) else {
            panic!("positions missing");
        };
        for p in positions {
            assert!(
                p[0].abs() <= 1.5 + 1e-4 && (0.0..=4.0 + 1e-4).contains(&p[1]) && p[2].abs() <= 0.3 + 1e-4,
                "{p:?}"
            );
        }
        // No vertex may sit inside the opening (the hole is really there).
        for p in positions {
            let (x, y) = (p[0], p[1]);
            let inside_rect = x.abs() < 1.0 - 1e-3 && y < 2.0;
            let inside_head = y >= 2.0 && (x * x + (y - 2.0).powi(2)).sqrt() < 1.0 - 1e-3;
            assert!(!(inside_rect || inside_head), "vertex {p:?} lies in the opening");
        }
        // Front-face area equals the wall minus the opening (rectangle + half disc).
        let Some(Indices::U32(indices)) = mesh.indices() else { panic!("indices missing") };
        let mut front_area = 0.0;
        for tri in indices.chunks(3) {
            let [a, b, c] = [tri[0], tri[1], tri[2]].map(|i| Vec3::from(positions[i as usize]));
            let cross = (b - a).cross(c - a);
            if (a.z - 0.3).abs() < 1e-4 && (b.z - 0.3).abs() < 1e-4 && (c.z - 0.3).abs() < 1e-4 {
                assert!(cross.z > 0.0, "front triangle wound backwards");
                front_area += cross.length() / 2.0;
            }
        }
        let expected = 3.0 * 4.0 - (2.0 * 2.0 + PI / 2.0);
        // The half circle is a polygon, so the hole is a little smaller than the true disc.
        assert!((front_area - expected).abs() < 0.02, "front area {front_area}, expected {expected}");
    }
}
