//! Physical effects: bursts of petals, confetti or small shapes released by
//! [`VenueCommand::SpawnEffect`] and falling with real physics (bevy_rapier3d) onto the venue's
//! primitives. Every piece's start comes from the command's seed and physics steps at a fixed
//! rate, so a replayed show releases and drops the same pieces.

use std::collections::VecDeque;

use bevy::light::NotShadowCaster;
use bevy::prelude::*;
use bevy_rapier3d::prelude::*;

use crate::engine::command::AppliedCommand;
use crate::engine::command::CurrentScene;
use crate::engine::rest::Rest;
use crate::engine::scene::venue::VenuePrimitive;
use crate::engine::scene::venue::to_color;
use crate::engine::schedule::VenueSystems;
use crate::model::command::VenueCommand;
use crate::model::rng::SeededRng;
use crate::model::scene::format::{EffectDef, PieceShape, ShapeDef};

/// Most pieces alive at once; a new burst beyond it removes the oldest pieces first, so a
/// crowd spamming effects costs a bounded amount of physics and drawing.
pub const MAX_LIVE_PIECES: usize = 3000;

/// Physics steps per second.
pub const PHYSICS_HZ: f64 = 60.0;

/// A piece of an effect; it vanishes at `expires` (seconds of the app clock).
#[derive(Debug, Clone, Copy, Component)]
pub struct EffectPiece {
    /// When it goes.
    pub expires: f64,
}

/// Pieces alive, oldest first.
#[derive(Debug, Default, Resource)]
pub struct LivePieces {
    pieces: VecDeque<(Entity, f64)>,
    /// Bursts released since start.
    pub bursts: u64,
}

impl LivePieces {
    /// Number of pieces alive.
    pub fn len(&self) -> usize {
        self.pieces.len()
    }

    /// Whether no piece is alive.
    pub fn is_empty(&self) -> bool {
        self.pieces.is_empty()
    }
}

/// Runs effects and the physics they need.
pub struct EffectsPlugin;

impl Plugin for EffectsPlugin {
    fn build(&self, app: &mut App) {
        app.insert_resource(TimestepMode::Fixed { dt: (1.0 / PHYSICS_HZ) as f32, substeps: 1 })
            .insert_resource(Time::<Fixed>::from_hz(PHYSICS_HZ))
            .add_plugins(RapierPhysicsPlugin::<NoUserData>::default().in_fixed_schedule())
            .init_resource::<LivePieces>()
            .add_systems(
                Update,
                // After the venue is rebuilt (with its commands applied): colliders go on this
                // version's primitives, not on the ones being replaced.
                (add_venue_colliders.after(crate::engine::scene::spawn::rebuild_venue), release_effects, expire_pieces)
                    .chain()
                    .in_set(VenueSystems::Simulate),
            );
    }
}

/// Where and how one piece starts.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PieceStart {
    /// Position, metres.
    pub position: Vec3,
    /// Orientation.
    pub rotation: Quat,
    /// Velocity, m/s.
    pub velocity: Vec3,
    /// Spin, rad/s.
    pub spin: Vec3,
    /// Index into the effect's colours.
    pub colour: usize,
}

/// The start of every piece of a burst: a pure function of the effect and the seed.
pub fn plan_burst(effect: &EffectDef, seed: u64) -> Vec<PieceStart> {
    let mut rng = SeededRng::new(seed);
    let origin = Vec3::from(effect.origin);
    let spread = Vec3::from(effect.spread);
    (0..effect.count)
        .map(|_| {
            let offset = Vec3::new(rng.signed(), rng.signed(), rng.signed()) * spread;
            let direction = Vec3::new(rng.signed(), rng.signed(), rng.signed()).normalize_or(Vec3::Y);
            let rotation = Quat::from_euler(EulerRot::XYZ, rng.signed() * 3.1, rng.signed() * 3.1, rng.signed() * 3.1);
            PieceStart {
                position: origin + offset,
                rotation,
                velocity: direction * effect.speed * rng.unit(),
                spin: Vec3::new(rng.signed(), rng.signed(), rng.signed()) * 4.0,
                colour: (rng.next_u64() % effect.colours.len().max(1) as u64) as usize,
            }
        })
        .collect()
}

/// Half-extents of a piece's box for its shape and size.
fn piece_half_extents(shape: PieceShape, size: f32) -> Vec3 {
    match shape {
        PieceShape::Petal => Vec3::new(0.5, 0.04, 0.35) * size,
        PieceShape::Confetti => Vec3::new(0.5, 0.01, 0.3) * size,
        PieceShape::Cube | PieceShape::Sphere => Vec3::splat(0.5 * size),
    }
}

/// Gives each primitive of the venue a fixed collider so pieces land on floors and stages.
fn add_venue_colliders(mut commands: Commands, primitives: Query<(Entity, &VenuePrimitive), Without<Collider>>) {
    for (entity, primitive) in &primitives {
        let collider = match primitive.shape {
            ShapeDef::Box { size } => Collider::cuboid(size[0] / 2.0, size[1] / 2.0, size[2] / 2.0),
            ShapeDef::Plane { size } => Collider::cuboid(size[0] / 2.0, 0.01, size[1] / 2.0),
            ShapeDef::Sphere { radius } => Collider::ball(radius),
            ShapeDef::Cylinder { radius, height } => Collider::cylinder(height / 2.0, radius),
            ShapeDef::Cone { radius, height } => Collider::cone(height / 2.0, radius),
            // The wall of an arch as three boxes: two piers and the part above the opening.
            ShapeDef::Arch { width, height, depth, opening, spring } => {
                let pier = (width - opening) / 4.0;
                let top = spring + opening / 2.0;
                Collider::compound(vec![
                    (
                        Vec3::new(-(opening / 2.0 + pier), height / 2.0, 0.0),
                        Quat::IDENTITY,
                        Collider::cuboid(pier, height / 2.0, depth / 2.0),
                    ),
                    (
                        Vec3::new(opening / 2.0 + pier, height / 2.0, 0.0),
                        Quat::IDENTITY,
                        Collider::cuboid(pier, height / 2.0, depth / 2.0),
                    ),
                    (
                        Vec3::new(0.0, (top + height) / 2.0, 0.0),
                        Quat::IDENTITY,
                        Collider::cuboid(width / 2.0, ((height - top) / 2.0).max(0.01), depth / 2.0),
                    ),
                ])
            }
        };
        commands.entity(entity).try_insert((RigidBody::Fixed, collider));
    }
}

/// Releases a burst for every applied `SpawnEffect`.
#[allow(clippy::too_many_arguments, reason = "a Bevy system: each argument is a query or resource it needs")]
fn release_effects(
    mut applied: MessageReader<AppliedCommand>,
    scene: Option<Res<CurrentScene>>,
    mut live: ResMut<LivePieces>,
    mut commands: Commands,
    mut meshes: ResMut<Assets<Mesh>>,
    mut materials: ResMut<Assets<StandardMaterial>>,
    time: Res<Time>,
) {
    for entry in applied.read() {
        let VenueCommand::SpawnEffect { effect, seed } = &entry.command else { continue };
        let Some(def) = scene.as_ref().and_then(|s| s.0.effects.iter().find(|e| &e.name == effect)) else { continue };
        let half = piece_half_extents(def.shape, def.size);
        let mesh = meshes.add(match def.shape {
            PieceShape::Sphere => {
                Sphere::new(half.x).mesh().ico(1).unwrap_or_else(|_| Mesh::from(Cuboid::from_size(half * 2.0)))
            }
            _ => Mesh::from(Cuboid::from_size(half * 2.0)),
        });
        let palette: Vec<Handle<StandardMaterial>> = def
            .colours
            .iter()
            .map(|c| {
                materials.add(StandardMaterial {
                    base_color: to_color(*c),
                    perceptual_roughness: 0.6,
                    double_sided: true,
                    cull_mode: None,
                    ..default()
                })
            })
            .collect();
        let expires = time.elapsed_secs_f64() + f64::from(def.lifetime);
        let collider = match def.shape {
            PieceShape::Sphere => Collider::ball(half.x),
            _ => Collider::cuboid(half.x, half.y, half.z),
        };
        live.bursts += 1;
        for piece in plan_burst(def, *seed) {
            let id = commands
                .spawn((
                    Name::new(format!("{effect} piece")),
                    EffectPiece { expires },
                    Transform::from_translation(piece.position).with_rotation(piece.rotation),
                    Mesh3d(mesh.clone()),
                    MeshMaterial3d(palette[piece.colour.min(palette.len() - 1)].clone()),
                    NotShadowCaster,
                    RigidBody::Dynamic,
                    collider.clone(),
                    Velocity { linear: piece.velocity, angular: piece.spin },
                    Damping { linear_damping: def.drag, angular_damping: def.drag * 0.5 },
                    ColliderMassProperties::Density(300.0),
                ))
                .id();
            live.pieces.push_back((id, expires));
        }
        while live.pieces.len() > MAX_LIVE_PIECES {
            if let Some((old, _)) = live.pieces.pop_front() {
                commands.entity(old).despawn();
            }
        }
    }
}

/// Removes pieces whose time is up.
fn expire_pieces(mut live: ResMut<LivePieces>, mut commands: Commands, time: Res<Time>, mut rest: ResMut<Rest>) {
    let now = time.elapsed_secs_f64();
    if !live.pieces.is_empty() {
        // Pieces fall until they go.
        rest.busy();
    }
    // Bursts are pushed in time order, but lifetimes differ between effects: scan them all
    // only when the oldest might be due, which is cheap when nothing is.
    if live.pieces.front().is_none_or(|(_, t)| *t > now) && live.pieces.iter().all(|(_, t)| *t > now) {
        return;
    }
    live.pieces.retain(|(entity, expires)| {
        if *expires <= now {
            commands.entity(*entity).despawn();
            false
        } else {
            true
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::scene::format::Colour;

    fn petals() -> EffectDef {
        EffectDef {
            name: "petals".into(),
            shape: PieceShape::Petal,
            count: 50,
            colours: vec![Colour::rgb(1.0, 0.2, 0.4), Colour::rgb(1.0, 0.8, 0.9)],
            size: 0.1,
            origin: [0.0, 5.0, 0.0],
            spread: [2.0, 0.5, 1.0],
            speed: 1.5,
            lifetime: 8.0,
            drag: 3.0,
        }
    }

    #[test]
    fn a_seed_fixes_the_burst_and_pieces_start_inside_the_volume() {
        let a = plan_burst(&petals(), 42);
        assert_eq!(a, plan_burst(&petals(), 42));
        assert_ne!(a, plan_burst(&petals(), 43));
        assert_eq!(a.len(), 50);
        for p in &a {
            let d = (p.position - Vec3::new(0.0, 5.0, 0.0)).abs();
            assert!(d.x <= 2.0 && d.y <= 0.5 && d.z <= 1.0, "{p:?}");
            assert!(p.velocity.length() <= 1.5 + 1e-4);
            assert!(p.colour < 2);
        }
        assert!(a.iter().any(|p| p.colour == 0) && a.iter().any(|p| p.colour == 1), "both colours are used");
    }
}
