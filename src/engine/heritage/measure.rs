//! The curators' measuring tape: two points picked on what is drawn (meshes, scanned meshes
//! at the level shown, point clouds' loaded points) and the distance between them in metres,
//! with how uncertain it is (a coarse level's error, a cloud level's point spacing).
//!
//! Picking is done on the CPU against the geometry the venue keeps for it: scene meshes'
//! assets, [`PickTriangles`] of scanned-mesh levels and [`PickPoints`] of cloud nodes.

use std::sync::Arc;

use bevy::prelude::*;

/// Triangles of a drawn level, in its entity's local space, for picking.
#[derive(Component, Debug, Clone)]
pub struct PickTriangles {
    /// Positions.
    pub positions: Arc<Vec<Vec3>>,
    /// Triangle list.
    pub indices: Arc<Vec<u32>>,
    /// How far, metres, this geometry may lie from the real surface.
    pub error: f32,
}

/// Points of a loaded cloud node, in its entity's local space, for picking.
#[derive(Component, Debug, Clone)]
pub struct PickPoints {
    /// Positions.
    pub positions: Arc<Vec<Vec3>>,
    /// Distance between neighbouring points at this level, metres.
    pub spacing: f32,
}

/// Marks what the tape sees through: its own markers, hotspot markers.
#[derive(Component, Debug, Clone, Copy, Default)]
pub struct NotMeasured;

/// A request to pick along a ray (a click while measuring, a controller's pointer).
#[derive(Message, Debug, Clone, Copy)]
pub struct MeasureRay {
    /// The ray, in world space.
    pub ray: Ray3d,
    /// How wide a point may be from the ray per metre of distance (a few pixels' angle).
    pub tolerance: f32,
}

/// A picked point.
#[derive(Debug, Clone, PartialEq)]
pub struct MeasuredPoint {
    /// Where, metres.
    pub position: Vec3,
    /// What it lies on.
    pub on: String,
    /// How far the picked surface may be from the real one, metres.
    pub uncertainty: f32,
}

/// The measuring tape.
#[derive(Resource, Debug, Clone, Default, PartialEq)]
pub struct Measurement {
    /// Whether clicks measure (instead of opening hotspots).
    pub active: bool,
    /// First point.
    pub a: Option<MeasuredPoint>,
    /// Second point.
    pub b: Option<MeasuredPoint>,
    /// The last ray that hit nothing.
    pub missed: bool,
}

impl Measurement {
    /// The distance between the two points, and its uncertainty, metres.
    pub fn distance(&self) -> Option<(f32, f32)> {
        let (a, b) = (self.a.as_ref()?, self.b.as_ref()?);
        Some((a.position.distance(b.position), a.uncertainty + b.uncertainty))
    }

    /// What to show: "12.34 m ± 0.02 m", or the step the tape is at.
    pub fn label(&self) -> String {
        match (&self.a, self.distance()) {
            (_, Some((d, u))) if u >= 0.005 => format!("{d:.2} m ± {u:.2} m"),
            (_, Some((d, _))) => format!("{d:.2} m"),
            (Some(_), None) => "pick the second point".into(),
            (None, _) => "measuring: pick the first point (M to stop)".into(),
        }
    }
}

/// Picks points along [`MeasureRay`]s into [`Measurement`]: the first, the second, then a new
/// first.
pub struct MeasurePlugin;

impl Plugin for MeasurePlugin {
    fn build(&self, app: &mut App) {
        app.init_resource::<Measurement>()
            .add_message::<MeasureRay>()
            .add_systems(Update, take_measurements.in_set(crate::engine::schedule::VenueSystems::Simulate));
    }
}

/// Where a ray enters a triangle, if it does (Möller–Trumbore), as the distance along it.
pub fn ray_triangle(origin: Vec3, direction: Vec3, a: Vec3, b: Vec3, c: Vec3) -> Option<f32> {
    let (e1, e2) = (b - a, c - a);
    let p = direction.cross(e2);
    let det = e1.dot(p);
    if det.abs() < 1e-12 {
        return None;
    }
    let inv = 1.0 / det;
    let s = origin - a;
    let u = s.dot(p) * inv;
    if !(0.0..=1.0).contains(&u) {
        return None;
    }
    let q = s.cross(e1);
    let v = direction.dot(q) * inv;
    if v < 0.0 || u + v > 1.0 {
        return None;
    }
    let t = e2.dot(q) * inv;
    (t > 0.0).then_some(t)
}

/// The nearest point along a ray among `points`, accepting those within `tolerance × distance`
/// of it (a cone a few pixels wide): the distance along the ray and the point.
pub fn ray_points(origin: Vec3, direction: Vec3, points: &[Vec3], tolerance: f32) -> Option<(f32, Vec3)> {
    let mut best: Option<(f32, Vec3)> = None;
    for p in points {
        let to = *p - origin;
        let t = to.dot(direction);
        if t <= 0.0 || best.is_some_and(|(b, _)| t >= b) {
            continue;
        }
        let off = (to - direction * t).length();
        if off <= tolerance * t {
            best = Some((t, *p));
        }
    }
    best
}

/// The triangles of a mesh asset, if it has a CPU copy.
fn mesh_triangles(mesh: &Mesh) -> Option<impl Iterator<Item = [Vec3; 3]> + '_> {
    Some(mesh.triangles().ok()?.map(|t| t.vertices))
}

type Pickable<'a> =
    (Entity, Option<&'a Mesh3d>, Option<&'a PickTriangles>, Option<&'a PickPoints>, &'a GlobalTransform);

fn take_measurements(
    mut rays: MessageReader<MeasureRay>,
    mut measurement: ResMut<Measurement>,
    pickable: Query<Pickable, (Or<(With<Mesh3d>, With<PickPoints>)>, Without<NotMeasured>)>,
    parents: Query<&ChildOf>,
    names: Query<&Name>,
    visibility: Query<&Visibility>,
    meshes: Res<Assets<Mesh>>,
) {
    // What is drawn: nothing on the way up is hidden (works with or without a renderer).
    let shown = |entity: Entity| {
        std::iter::once(entity)
            .chain(parents.iter_ancestors(entity))
            .all(|e| visibility.get(e).map_or(true, |v| *v != Visibility::Hidden))
    };
    for request in rays.read() {
        let hit = cast(request, &pickable, &meshes, &shown);
        let Some((position, uncertainty, entity)) = hit else {
            measurement.missed = true;
            continue;
        };
        measurement.missed = false;
        // Name the thing by its topmost named ancestor: the scene entry ("cloister scan").
        let on = std::iter::once(entity)
            .chain(parents.iter_ancestors(entity))
            .filter_map(|e| names.get(e).ok())
            .last()
            .map_or_else(|| "something".into(), |n| n.as_str().to_owned());
        let point = MeasuredPoint { position, on, uncertainty };
        if measurement.a.is_none() || measurement.b.is_some() {
            measurement.a = Some(point);
            measurement.b = None;
        } else {
            measurement.b = Some(point);
            if let Some((d, u)) = measurement.distance() {
                info!("measured {d:.3} m (± {u:.3} m)");
            }
        }
    }
}

/// The nearest visible surface or point along the ray: where, how uncertain, on what.
fn cast(
    request: &MeasureRay,
    pickable: &Query<Pickable, (Or<(With<Mesh3d>, With<PickPoints>)>, Without<NotMeasured>)>,
    meshes: &Assets<Mesh>,
    shown: &dyn Fn(Entity) -> bool,
) -> Option<(Vec3, f32, Entity)> {
    // (distance along the ray, the point in world space, uncertainty, entity)
    let mut best: Option<(f32, Vec3, f32, Entity)> = None;
    let origin = request.ray.origin;
    let direction = *request.ray.direction;
    for (entity, mesh, triangles, points, transform) in pickable {
        if !shown(entity) {
            continue;
        }
        let to_local = transform.affine().inverse();
        let local_origin = to_local.transform_point3(origin);
        let local_direction = to_local.transform_vector3(direction);
        // Distances along the local ray are in local units; convert back through a point.
        let to_world_t = |t: f32| transform.transform_point(local_origin + local_direction * t).distance(origin);
        let mut consider = |t_local: f32, point: Vec3, uncertainty: f32| {
            let t = to_world_t(t_local);
            if best.is_none_or(|(b, ..)| t < b) {
                best = Some((t, point, uncertainty, entity));
            }
        };
        if let Some(points) = points {
            let scale = local_direction.length();
            let dir = local_direction / scale;
            // The scan's own point, not where the ray passes by it.
            if let Some((t, point)) = ray_points(local_origin, dir, &points.positions, request.tolerance) {
                consider(t / scale, transform.transform_point(point), points.spacing * transform.scale().max_element());
            }
        } else if let Some(pick) = triangles {
            for tri in pick.indices.chunks_exact(3) {
                let [a, b, c] = [tri[0], tri[1], tri[2]].map(|i| pick.positions[i as usize]);
                if let Some(t) = ray_triangle(local_origin, local_direction, a, b, c) {
                    consider(t, origin + direction * to_world_t(t), pick.error * transform.scale().max_element());
                }
            }
        } else if let Some(mesh) = mesh.and_then(|m| meshes.get(&m.0))
            && let Some(tris) = mesh_triangles(mesh)
        {
            for [a, b, c] in tris {
                if let Some(t) = ray_triangle(local_origin, local_direction, a, b, c) {
                    consider(t, origin + direction * to_world_t(t), 0.0);
                }
            }
        }
    }
    best.map(|(_, point, u, e)| (point, u, e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rays_meet_triangles_in_front_only() {
        let (a, b, c) = (Vec3::new(-1.0, 0.0, -1.0), Vec3::new(1.0, 0.0, -1.0), Vec3::new(0.0, 0.0, 1.0));
        assert_eq!(ray_triangle(Vec3::new(0.0, 5.0, 0.0), Vec3::NEG_Y, a, b, c), Some(5.0));
        assert_eq!(ray_triangle(Vec3::new(0.0, 5.0, 0.0), Vec3::Y, a, b, c), None, "behind");
        assert_eq!(ray_triangle(Vec3::new(3.0, 5.0, 0.0), Vec3::NEG_Y, a, b, c), None, "beside");
        assert_eq!(ray_triangle(Vec3::new(0.0, 5.0, 0.0), Vec3::X, a, b, c), None, "parallel");
    }

    #[test]
    fn rays_pick_the_nearest_point_within_their_cone() {
        let points = [Vec3::new(0.0, 0.0, -10.0), Vec3::new(0.05, 0.0, -5.0), Vec3::new(2.0, 0.0, -4.0)];
        // 0.05 m off at 5 m is within 0.02 rad: the nearer point wins.
        assert_eq!(ray_points(Vec3::ZERO, Vec3::NEG_Z, &points, 0.02), Some((5.0, points[1])));
        // Narrower, only the one exactly on the ray.
        assert_eq!(ray_points(Vec3::ZERO, Vec3::NEG_Z, &points, 0.001), Some((10.0, points[0])));
        assert_eq!(ray_points(Vec3::ZERO, Vec3::Z, &points, 0.5), None);
    }

    #[test]
    fn the_label_says_what_to_do_then_the_distance() {
        let mut m = Measurement { active: true, ..default() };
        assert!(m.label().contains("first point"));
        m.a = Some(MeasuredPoint { position: Vec3::ZERO, on: "a".into(), uncertainty: 0.0 });
        assert!(m.label().contains("second point"));
        m.b = Some(MeasuredPoint { position: Vec3::new(3.0, 4.0, 0.0), on: "b".into(), uncertainty: 0.02 });
        assert_eq!(m.label(), "5.00 m ± 0.02 m");
        m.b.as_mut().unwrap().uncertainty = 0.0;
        assert_eq!(m.label(), "5.00 m");
    }
}
