//! Moving a headset visitor through the venue without making them sick: teleporting onto
//! walkable surfaces, snap and smooth turns, smooth walking that walls stop, a vignette while
//! the view moves, seated or standing height and a reduced-motion mode.
//!
//! The rules are plain functions over rapier's scene queries on the venue's colliders
//! ([`crate::engine::effects`] gives every primitive one), so they are tested headless; the XR plugin
//! feeds them the controllers.

use bevy::prelude::*;
use bevy_rapier3d::prelude::*;
use thiserror::Error;

/// How the visitor wants to move. Set from the command line (`--snap-turn`, `--smooth-turn`,
/// `--seated`, `--reduced-motion`, `--no-vignette`).
#[derive(Debug, Clone, Copy, PartialEq, Resource)]
pub struct ComfortSettings {
    /// Angle of a snap turn in degrees; 0 turns snapping off.
    pub snap_turn_degrees: f32,
    /// Turn continuously with the stick instead of in snaps.
    pub smooth_turn: bool,
    /// Speed of a smooth turn, degrees per second.
    pub smooth_turn_speed: f32,
    /// Walking speed with the stick, metres per second; 0 allows teleporting only.
    pub walk_speed: f32,
    /// Narrow the view while it moves under the visitor (walking and smooth turns).
    pub vignette: bool,
    /// Standing or seated.
    pub posture: Posture,
    /// No continuous motion at all: turns snap, walking is off, tours cut between stops, and
    /// the vignette closes briefly around every jump whatever `vignette` says.
    pub reduced_motion: bool,
}

impl Default for ComfortSettings {
    fn default() -> Self {
        Self {
            snap_turn_degrees: 30.0,
            smooth_turn: false,
            smooth_turn_speed: 90.0,
            walk_speed: 1.4,
            vignette: true,
            posture: Posture::Standing,
            reduced_motion: false,
        }
    }
}

impl ComfortSettings {
    /// Whether the stick turns continuously (never with reduced motion).
    pub fn turns_smoothly(&self) -> bool {
        self.smooth_turn && !self.reduced_motion
    }

    /// Walking speed allowed (0 with reduced motion).
    pub fn walking_speed(&self) -> f32 {
        if self.reduced_motion { 0.0 } else { self.walk_speed.max(0.0) }
    }

    /// How far above the floor the play space's origin is put: seated visitors are raised so
    /// their eyes are where a standing visitor's would be.
    pub fn floor_offset(&self) -> f32 {
        match self.posture {
            Posture::Standing => 0.0,
            Posture::Seated { raise } => raise,
        }
    }
}

/// Standing or seated.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Posture {
    /// The runtime's floor is the venue's floor.
    Standing,
    /// The visitor sits: the view is raised by `raise` metres (0.45 by default, a seated eye
    /// at 1.2 m raised to a standing one at 1.65 m).
    Seated {
        /// Metres.
        raise: f32,
    },
}

/// What counts as a place to stand.
#[derive(Debug, Clone, Copy, PartialEq, Resource)]
pub struct TeleportRules {
    /// Steepest walkable surface, degrees from horizontal.
    pub max_slope_degrees: f32,
    /// Room needed above the floor, metres.
    pub body_height: f32,
    /// Room needed around the body's axis, metres.
    pub body_radius: f32,
    /// Farthest teleport, metres from the visitor's feet.
    pub max_distance: f32,
    /// Speed the arc leaves the hand at, metres per second (with gravity, sets the arc's reach).
    pub launch_speed: f32,
    /// Highest step that walking climbs, metres.
    pub step_height: f32,
}

impl Default for TeleportRules {
    fn default() -> Self {
        Self {
            max_slope_degrees: 35.0,
            body_height: 1.8,
            body_radius: 0.25,
            max_distance: 20.0,
            launch_speed: 8.0,
            step_height: 0.35,
        }
    }
}

const GRAVITY: f32 = 9.81;
/// Time between samples of the arc, seconds.
const ARC_STEP: f32 = 0.04;
/// Longest the arc flies, seconds.
const ARC_TIME: f32 = 3.0;

/// Why a teleport target is refused; shown to the visitor as the arc's colour and logged.
#[derive(Debug, Clone, PartialEq, Error)]
pub enum TeleportRefusal {
    /// The arc meets nothing.
    #[error("the arc lands on nothing")]
    NothingHit,
    /// Too steep.
    #[error("the surface slopes {degrees:.0}°, steeper than the {limit:.0}° allowed")]
    TooSteep {
        /// The surface's slope.
        degrees: f32,
        /// The limit.
        limit: f32,
    },
    /// The scene says no.
    #[error("{0} is not walkable (the scene says so)")]
    NotWalkable(String),
    /// Something overhead.
    #[error("only {clearance:.2} m of headroom, {needed:.2} m needed")]
    NoHeadroom {
        /// Room above the floor.
        clearance: f32,
        /// The body's height.
        needed: f32,
    },
    /// A wall or a column would be inside the body.
    #[error("too close to something: a body {radius:.2} m wide does not fit")]
    TooNarrow {
        /// The body's radius.
        radius: f32,
    },
    /// Out of range.
    #[error("{distance:.1} m away, farther than {limit:.1} m")]
    TooFar {
        /// From the feet.
        distance: f32,
        /// The limit.
        limit: f32,
    },
}

/// Where the teleport arc goes and whether its landing is a place to stand.
#[derive(Debug, Clone, PartialEq)]
pub struct TeleportTarget {
    /// Sampled points of the arc, up to where it lands.
    pub arc: Vec<Vec3>,
    /// Where the feet would be, or why not.
    pub verdict: Result<Vec3, TeleportRefusal>,
}

/// What the teleport check needs to know about the venue's colliders.
pub trait Surroundings {
    /// The first fixed collider on the segment from `from` to `to`: its entity, the point and
    /// the surface normal.
    fn cast(&self, from: Vec3, to: Vec3) -> Option<(Entity, Vec3, Vec3)>;
    /// Whether a capsule along Y from `bottom` to `top` (segment ends) of `radius` overlaps
    /// any fixed collider.
    fn overlaps(&self, bottom: Vec3, top: Vec3, radius: f32) -> bool;
    /// How far a sphere of `radius` centred at `from` can move along `motion` before touching
    /// a fixed collider, as a fraction of `motion` (1 when free).
    fn sweep(&self, from: Vec3, motion: Vec3, radius: f32) -> f32;
    /// The scene's `walkable` flag of the collider's primitive, and its name.
    fn walkable(&self, entity: Entity) -> (Option<bool>, String);
}

/// The ballistic arc from the hand: `launch_speed` along `direction`, pulled down by gravity.
pub fn arc_points(origin: Vec3, direction: Vec3, rules: &TeleportRules) -> Vec<Vec3> {
    let velocity = direction.normalize_or(Vec3::NEG_Z) * rules.launch_speed;
    let steps = (ARC_TIME / ARC_STEP) as usize;
    (0..=steps)
        .map(|i| {
            let t = i as f32 * ARC_STEP;
            origin + velocity * t + Vec3::new(0.0, -0.5 * GRAVITY * t * t, 0.0)
        })
        .collect()
}

/// Follows the arc to its first hit and judges the landing: on a surface facing up no steeper
/// than the limit, on a primitive the scene does not mark unwalkable, within range, and with
/// room for the body above it.
pub fn check_teleport(
    world: &impl Surroundings,
    origin: Vec3,
    direction: Vec3,
    feet: Vec3,
    rules: &TeleportRules,
) -> TeleportTarget {
    let points = arc_points(origin, direction, rules);
    let mut arc = vec![points[0]];
    for pair in points.windows(2) {
        if let Some((entity, point, normal)) = world.cast(pair[0], pair[1]) {
            arc.push(point);
            return TeleportTarget { arc, verdict: judge_landing(world, entity, point, normal, feet, rules) };
        }
        arc.push(pair[1]);
    }
    TeleportTarget { arc, verdict: Err(TeleportRefusal::NothingHit) }
}

fn judge_landing(
    world: &impl Surroundings,
    entity: Entity,
    point: Vec3,
    normal: Vec3,
    feet: Vec3,
    rules: &TeleportRules,
) -> Result<Vec3, TeleportRefusal> {
    // A ray that starts inside a collider has no normal: no place to stand there.
    let Some(normal) = normal.try_normalize() else {
        return Err(TeleportRefusal::TooNarrow { radius: rules.body_radius });
    };
    let degrees = normal.dot(Vec3::Y).clamp(-1.0, 1.0).acos().to_degrees();
    if degrees > rules.max_slope_degrees {
        return Err(TeleportRefusal::TooSteep { degrees, limit: rules.max_slope_degrees });
    }
    let (walkable, name) = world.walkable(entity);
    if walkable == Some(false) {
        return Err(TeleportRefusal::NotWalkable(name));
    }
    let distance = Vec2::new(point.x - feet.x, point.z - feet.z).length();
    if distance > rules.max_distance {
        return Err(TeleportRefusal::TooFar { distance, limit: rules.max_distance });
    }
    stand_room(world, point, rules)?;
    Ok(point)
}

/// Whether a body fits standing at `feet`: nothing overhead below its height, nothing around
/// it above a step's height (lower things, like the floor's own bumps, are stepped over).
fn stand_room(world: &impl Surroundings, feet: Vec3, rules: &TeleportRules) -> Result<(), TeleportRefusal> {
    let up = feet + Vec3::Y * 0.02;
    if let Some((_, hit, _)) = world.cast(up, feet + Vec3::Y * rules.body_height) {
        return Err(TeleportRefusal::NoHeadroom { clearance: hit.y - feet.y, needed: rules.body_height });
    }
    let radius = rules.body_radius;
    let bottom = feet + Vec3::Y * (rules.step_height + radius);
    let top = feet + Vec3::Y * (rules.body_height - radius).max(rules.step_height + radius);
    if world.overlaps(bottom, top, radius) {
        return Err(TeleportRefusal::TooNarrow { radius });
    }
    Ok(())
}

/// Moves the play space so that the visitor's head ends up above `target`, and its floor on
/// the target's height (plus the posture's raise). Turning is kept.
pub fn teleport_root(root: &Transform, head: Vec3, target: Vec3, floor_offset: f32) -> Transform {
    let mut moved = *root;
    moved.translation.x += target.x - head.x;
    moved.translation.z += target.z - head.z;
    moved.translation.y = target.y + floor_offset;
    moved
}

/// Turns the play space about the vertical line through the head, so the visitor turns on the
/// spot instead of swinging around the play space's origin. Positive is to the left.
pub fn turn_about(root: &Transform, head: Vec3, radians: f32) -> Transform {
    let mut turned = *root;
    turned.rotate_around(Vec3::new(head.x, root.translation.y, head.z), Quat::from_rotation_y(radians));
    turned
}

/// Stick deflection that fires a snap turn, and below which it re-arms.
const SNAP_FIRE: f32 = 0.75;
const SNAP_REARM: f32 = 0.35;
/// Stick deflection ignored (worn sticks drift).
const DEAD_ZONE: f32 = 0.2;

/// One snap turn per push of the stick.
#[derive(Debug, Clone, Copy, Default)]
pub struct SnapTurn {
    fired: bool,
}

impl SnapTurn {
    /// The turn to make this frame for the stick's X (right is positive), in radians
    /// (positive to the left), or `None`.
    pub fn update(&mut self, stick_x: f32, settings: &ComfortSettings) -> Option<f32> {
        if stick_x.abs() < SNAP_REARM {
            self.fired = false;
            return None;
        }
        if self.fired || stick_x.abs() < SNAP_FIRE || settings.snap_turn_degrees <= 0.0 {
            return None;
        }
        self.fired = true;
        Some(-stick_x.signum() * settings.snap_turn_degrees.to_radians())
    }
}

/// The turn of a smooth-turning stick over `dt` seconds, in radians (positive to the left).
pub fn smooth_turn(stick_x: f32, dt: f32, settings: &ComfortSettings) -> f32 {
    if !settings.turns_smoothly() || stick_x.abs() < DEAD_ZONE {
        return 0.0;
    }
    let amount = (stick_x.abs() - DEAD_ZONE) / (1.0 - DEAD_ZONE);
    -stick_x.signum() * amount * settings.smooth_turn_speed.to_radians() * dt
}

/// Walks the play space with the stick, in the direction the head faces (level), for `dt`
/// seconds. Walls and low beams stop the body; the floor is followed up steps and down slopes;
/// a move that would leave the floor (off a ledge), onto a surface the scene marks not
/// walkable, or with no floor under it does not happen.
pub fn walk(
    world: &impl Surroundings,
    root: &Transform,
    head: Vec3,
    facing: Vec3,
    stick: Vec2,
    dt: f32,
    settings: &ComfortSettings,
    rules: &TeleportRules,
) -> Option<Transform> {
    let speed = settings.walking_speed();
    if speed <= 0.0 || stick.length() < DEAD_ZONE {
        return None;
    }
    let forward = Vec3::new(facing.x, 0.0, facing.z).normalize_or_zero();
    if forward == Vec3::ZERO {
        return None;
    }
    let right = forward.cross(Vec3::Y);
    let amount = ((stick.length() - DEAD_ZONE) / (1.0 - DEAD_ZONE)).min(1.0);
    let motion = (forward * stick.y + right * stick.x).normalize_or_zero() * speed * amount * dt;
    let floor = root.translation.y - settings.floor_offset();
    // The body is swept as spheres at waist and head height: walls, columns, balustrades and
    // low beams stop it.
    let waist = Vec3::new(head.x, floor + rules.step_height + rules.body_radius + 0.05, head.z);
    let crown = Vec3::new(head.x, floor + rules.body_height - rules.body_radius, head.z);
    let free = world.sweep(waist, motion, rules.body_radius).min(world.sweep(crown, motion, rules.body_radius));
    let step = motion * (free - 0.01).max(0.0);
    if step.length_squared() < 1e-8 {
        return None;
    }
    let to = Vec3::new(head.x, floor, head.z) + step;
    let (entity, ground, normal) = world.cast(to + Vec3::Y * rules.step_height, to - Vec3::Y * rules.step_height)?;
    if normal.y < rules.max_slope_degrees.to_radians().cos() || world.walkable(entity).0 == Some(false) {
        return None;
    }
    let mut moved = *root;
    moved.translation += Vec3::new(step.x, ground.y - floor, step.z);
    Some(moved)
}

/// How closed the comfort vignette should be: 0 open (no vignette), 1 black.
pub fn vignette_target(moving: bool, turning: bool, settings: &ComfortSettings) -> f32 {
    if !(moving || turning) || !(settings.vignette || settings.reduced_motion) {
        return 0.0;
    }
    if settings.reduced_motion { 0.75 } else { 0.5 }
}

/// Eases the vignette toward `target`: it closes fast (a tenth of a second), so it is there
/// from the start of a motion, and opens more slowly.
pub fn ease_vignette(current: f32, target: f32, dt: f32) -> f32 {
    let rate = if target > current { 10.0 } else { 3.0 };
    let t = 1.0 - (-rate * dt).exp();
    current + (target - current) * t
}

/// The venue's fixed colliders through rapier's query pipeline.
pub struct RapierSurroundings<'a, F: Fn(Entity) -> (Option<bool>, String)> {
    /// Rapier's scene queries, limited to fixed colliders (the venue, not falling confetti).
    pub pipeline: RapierQueryPipeline<'a>,
    /// The scene's flag and name per collider entity.
    pub lookup: F,
}

impl<F: Fn(Entity) -> (Option<bool>, String)> Surroundings for RapierSurroundings<'_, F> {
    fn cast(&self, from: Vec3, to: Vec3) -> Option<(Entity, Vec3, Vec3)> {
        let delta = to - from;
        let length = delta.length();
        if length < 1e-6 {
            return None;
        }
        let (entity, hit) = self.pipeline.cast_ray_and_get_normal(from, delta / length, length, true)?;
        Some((entity, hit.point, hit.normal))
    }

    fn overlaps(&self, bottom: Vec3, top: Vec3, radius: f32) -> bool {
        let capsule = Collider::capsule(bottom, top, radius);
        self.pipeline.intersect_shape(Vec3::ZERO, Quat::IDENTITY, &*capsule.raw).next().is_some()
    }

    fn sweep(&self, from: Vec3, motion: Vec3, radius: f32) -> f32 {
        let ball = Collider::ball(radius);
        let options = ShapeCastOptions { max_time_of_impact: 1.0, stop_at_penetration: false, ..default() };
        self.pipeline
            .cast_shape(from, Quat::IDENTITY, motion, &*ball.raw, options)
            .map_or(1.0, |(_, hit)| hit.time_of_impact.clamp(0.0, 1.0))
    }

    fn walkable(&self, entity: Entity) -> (Option<bool>, String) {
        (self.lookup)(entity)
    }
}

/// One hand's controls this frame, from OpenXR actions ([`super::controllers`]) or a test.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct HandInput {
    /// The pointing pose in the venue, when tracked.
    pub aim: Option<Transform>,
    /// Trigger, 0 to 1 (the select button on simple controllers).
    pub trigger: f32,
    /// Grip (squeeze), 0 to 1.
    pub grip: f32,
    /// Thumbstick (or touchpad), each axis -1 to 1; +Y forward, +X right.
    pub stick: Vec2,
}

/// Both hands: `[left, right]`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Resource)]
pub struct HandInputs(pub [HandInput; 2]);

/// Left hand index in [`HandInputs`].
pub const LEFT: usize = 0;
/// Right hand index in [`HandInputs`].
pub const RIGHT: usize = 1;

/// The teleport being aimed (right stick pushed forward, or the left grip held), and the last
/// one refused or made, for the arc's drawing and for tests. Letting the stick go back to rest
/// jumps, after the stick has rested for [`RELEASE_SETTLE`] (so a stick swept on to the back,
/// which cancels, passes through rest without jumping).
#[derive(Debug, Clone, Default, PartialEq, Resource)]
pub struct TeleportAim {
    /// Aiming now: the arc and its verdict.
    pub target: Option<TeleportTarget>,
    /// Teleports made.
    pub jumps: u32,
    /// The last refusal, for the log.
    pub last_refusal: Option<TeleportRefusal>,
    /// Seconds the stick has rested since aiming, while a jump waits.
    pub settling: Option<f32>,
}

/// How long the stick must rest after aiming before the jump, seconds; the view closes meanwhile.
pub const RELEASE_SETTLE: f32 = 0.1;

/// How closed the comfort vignette is now (0 open, 1 black).
#[derive(Debug, Clone, Copy, Default, PartialEq, Resource)]
pub struct VignetteState {
    /// Current closure.
    pub strength: f32,
    /// A jump just happened: close fully for a blink.
    blink: f32,
}

/// Stick deflection that starts aiming a teleport, and below which a release teleports.
const AIM_START: f32 = 0.6;
const AIM_RELEASE: f32 = 0.3;

/// Moves the play space ([`bevy_mod_xr::session::XrTrackingRoot`]) from [`HandInputs`]:
/// teleport, turns, walking, and the vignette. Works headless: tests set the inputs and the
/// head by hand.
pub struct LocomotionPlugin;

impl Plugin for LocomotionPlugin {
    fn build(&self, app: &mut App) {
        app.init_resource::<HandInputs>()
            .init_resource::<TeleportAim>()
            .init_resource::<VignetteState>()
            .init_resource::<ComfortSettings>()
            .init_resource::<TeleportRules>()
            .init_resource::<super::session::XrHead>()
            .add_systems(
                Update,
                (aim_and_teleport, turn, walk_with_stick, ease_vignette_system)
                    .chain()
                    .in_set(super::session::XrVisitSystems::Move),
            );
    }
}

type RootQuery<'w, 's> = Query<'w, 's, &'static mut Transform, With<bevy_mod_xr::session::XrTrackingRoot>>;

/// The primitives' `walkable` flags and names, for the teleport check.
type PrimitiveQuery<'w, 's> =
    Query<'w, 's, (&'static crate::engine::scene::venue::VenuePrimitive, Option<&'static Name>)>;

fn lookup<'a>(primitives: &'a PrimitiveQuery) -> impl Fn(Entity) -> (Option<bool>, String) + 'a {
    move |entity| match primitives.get(entity) {
        Ok((primitive, name)) => {
            (primitive.walkable, name.map_or_else(|| format!("{entity}"), |n| n.as_str().to_owned()))
        }
        Err(_) => (None, format!("{entity}")),
    }
}

/// Moves the play space and keeps the head with it, so later systems this frame see where
/// the head now is (the runtime's pose only arrives next frame).
pub(crate) fn move_root(root: &mut Transform, head: &mut super::session::XrHead, to: Transform) {
    if let Some(h) = head.0.as_mut() {
        let change = to.compute_affine() * root.compute_affine().inverse();
        *h = Transform::from_matrix(Mat4::from(change) * h.to_matrix());
    }
    *root = to;
}

#[allow(clippy::too_many_arguments, reason = "a Bevy system: each argument is a query or resource it needs")]
fn aim_and_teleport(
    hands: Res<HandInputs>,
    mut head: ResMut<super::session::XrHead>,
    rules: Res<TeleportRules>,
    comfort: Res<ComfortSettings>,
    time: Res<Time>,
    rapier: ReadRapierContext,
    primitives: PrimitiveQuery,
    mut roots: RootQuery,
    mut aim: ResMut<TeleportAim>,
    mut vignette: ResMut<VignetteState>,
) {
    let right = hands.0[RIGHT];
    let left = hands.0[LEFT];
    let (Some(eyes), Ok(mut root)) = (head.0, roots.single_mut()) else { return };
    // Pulling the stick back cancels the aim, also during the wait before a jump.
    if right.stick.y < -AIM_START {
        aim.target = None;
        aim.settling = None;
        return;
    }
    // Aim with the right stick pushed forward, or hold the left grip (controllers with no stick).
    let (aiming, hand) = if right.stick.y > AIM_START
        || (aim.target.is_some() && aim.settling.is_none() && right.stick.y > AIM_RELEASE)
    {
        (true, right)
    } else if left.grip > 0.5 {
        (true, left)
    } else {
        (false, right)
    };
    if aiming {
        aim.settling = None;
        let Some(pose) = hand.aim else { return };
        let Ok(context) = rapier.single() else { return };
        let feet = Vec3::new(eyes.translation.x, root.translation.y - comfort.floor_offset(), eyes.translation.z);
        let target = context.with_query_pipeline(QueryFilter::only_fixed(), |pipeline| {
            let world = RapierSurroundings { pipeline, lookup: lookup(&primitives) };
            check_teleport(&world, pose.translation, *pose.forward(), feet, &rules)
        });
        aim.target = Some(target);
        return;
    }
    let Some(target) = aim.target.as_ref() else { return };
    let Ok(point) = target.verdict.clone() else {
        let refusal = target.verdict.clone().err();
        debug!("teleport refused: {refusal:?}");
        aim.last_refusal = refusal;
        aim.target = None;
        return;
    };
    // Released on a good target: wait for the stick to rest (closing the view if wanted), then jump.
    let waited = aim.settling.map_or(0.0, |t| t + time.delta_secs());
    let blinks = comfort.vignette || comfort.reduced_motion;
    if waited < RELEASE_SETTLE {
        aim.settling = Some(waited);
        if blinks {
            vignette.blink = 1.0;
        }
        return;
    }
    let landed = teleport_root(&root, eyes.translation, point, comfort.floor_offset());
    move_root(&mut root, &mut head, landed);
    aim.target = None;
    aim.settling = None;
    aim.jumps += 1;
    aim.last_refusal = None;
    debug!("teleport to ({:.2}, {:.2}, {:.2})", point.x, point.y, point.z);
}

#[allow(clippy::too_many_arguments, reason = "a Bevy system: each argument is a query or resource it needs")]
fn turn(
    hands: Res<HandInputs>,
    mut head: ResMut<super::session::XrHead>,
    comfort: Res<ComfortSettings>,
    time: Res<Time>,
    aim: Res<TeleportAim>,
    mut roots: RootQuery,
    mut snap: Local<SnapTurn>,
    mut vignette: ResMut<VignetteState>,
) {
    let (Some(eyes), Ok(mut root)) = (head.0, roots.single_mut()) else { return };
    // While aiming a teleport the stick's sideways wobble must not turn the visitor.
    let x = if aim.target.is_some() { 0.0 } else { hands.0[RIGHT].stick.x };
    let radians = if comfort.turns_smoothly() {
        smooth_turn(x, time.delta_secs(), &comfort)
    } else {
        snap.update(x, &comfort).unwrap_or(0.0)
    };
    if radians != 0.0 {
        let turned = turn_about(&root, eyes.translation, radians);
        move_root(&mut root, &mut head, turned);
        if !comfort.turns_smoothly() && comfort.reduced_motion {
            vignette.blink = 1.0;
            vignette.strength = 1.0;
        }
    }
}

#[allow(clippy::too_many_arguments, reason = "a Bevy system: each argument is a query or resource it needs")]
fn walk_with_stick(
    hands: Res<HandInputs>,
    mut head: ResMut<super::session::XrHead>,
    comfort: Res<ComfortSettings>,
    rules: Res<TeleportRules>,
    time: Res<Time>,
    rapier: ReadRapierContext,
    primitives: PrimitiveQuery,
    mut roots: RootQuery,
    mut vignette: ResMut<VignetteState>,
) {
    let stick = hands.0[LEFT].stick;
    let turning = comfort.turns_smoothly() && hands.0[RIGHT].stick.x.abs() >= DEAD_ZONE;
    let (Some(eyes), Ok(mut root)) = (head.0, roots.single_mut()) else { return };
    let Ok(context) = rapier.single() else { return };
    let moved = context.with_query_pipeline(QueryFilter::only_fixed(), |pipeline| {
        let world = RapierSurroundings { pipeline, lookup: lookup(&primitives) };
        walk(&world, &root, eyes.translation, *eyes.forward(), stick, time.delta_secs(), &comfort, &rules)
    });
    if let Some(moved) = moved {
        move_root(&mut root, &mut head, moved);
    }
    let target = vignette_target(moved.is_some(), turning, &comfort);
    // A blink closes the view at once; otherwise the vignette eases.
    vignette.strength = ease_vignette(vignette.strength, target, time.delta_secs()).max(vignette.blink);
}

fn ease_vignette_system(time: Res<Time>, aim: Res<TeleportAim>, mut vignette: ResMut<VignetteState>) {
    // A blink holds while a jump waits, then fades over a fifth of a second.
    if aim.settling.is_none() {
        vignette.blink = (vignette.blink - time.delta_secs() * 5.0).max(0.0);
    }
}

/// Where the play space goes so that the head stands at `eye`'s place (on the floor at
/// `floor`, raised by `floor_offset`), facing `look` (level): the head's offset in the play
/// space is taken off, so the head, not the play space's corner, lands on the spot.
pub fn stand_at(root: &Transform, head: Vec3, eye: Vec3, look: Vec3, floor: f32, floor_offset: f32) -> Transform {
    let towards = Vec3::new(look.x - eye.x, 0.0, look.z - eye.z).normalize_or(Vec3::NEG_Z);
    let rotation = Quat::from_rotation_y((-towards.x).atan2(-towards.z));
    let head_local = root.compute_affine().inverse().transform_point3(head);
    let offset = rotation * Vec3::new(head_local.x, 0.0, head_local.z);
    Transform {
        translation: Vec3::new(eye.x - offset.x, floor + floor_offset, eye.z - offset.z),
        rotation,
        scale: root.scale,
    }
}

/// The floor under `eye`: the first fixed collider straight below, within 50 m.
pub fn floor_below(rapier: &ReadRapierContext, eye: Vec3) -> Option<f32> {
    let context = rapier.single().ok()?;
    context.with_query_pipeline(QueryFilter::only_fixed(), |pipeline| {
        pipeline.cast_ray(eye, Vec3::NEG_Y, 50.0, true).map(|(_, toi)| eye.y - toi)
    })
}

/// Guided tours in a headset: flying the visitor's view from stop to stop would sicken, so on
/// arriving at a stop the visitor is put on the floor below the stop's viewpoint, facing where
/// it looks, behind a blink; the narration, subtitles and hotspot panels are the tour's own.
pub struct TourInHeadsetPlugin;

impl Plugin for TourInHeadsetPlugin {
    fn build(&self, app: &mut App) {
        app.add_systems(Update, follow_the_tour.in_set(super::session::XrVisitSystems::Move).before(aim_and_teleport));
    }
}

#[allow(clippy::too_many_arguments, reason = "a Bevy system: each argument is a query or resource it needs")]
fn follow_the_tour(
    active: Res<crate::engine::visit::ActiveTour>,
    scene: Option<Res<crate::engine::command::CurrentScene>>,
    comfort: Res<ComfortSettings>,
    rapier: ReadRapierContext,
    mut head: ResMut<super::session::XrHead>,
    mut roots: RootQuery,
    mut vignette: ResMut<VignetteState>,
    mut at: Local<Option<(String, usize)>>,
) {
    let (Some(name), Some(scene)) = (active.name.clone(), scene) else {
        *at = None;
        return;
    };
    let Some(crate::engine::visit::tour::TourPhase::AtStop { stop, .. }) = active.phase() else { return };
    if at.as_ref() == Some(&(name.clone(), stop)) {
        return;
    }
    let (Some(eyes), Ok(mut root)) = (head.0, roots.single_mut()) else { return };
    let viewpoint = scene
        .0
        .tours
        .iter()
        .find(|t| t.name == name)
        .and_then(|t| t.stops.get(stop))
        .and_then(|s| scene.0.viewpoints.iter().find(|v| v.name == s.viewpoint));
    *at = Some((name, stop));
    let Some(viewpoint) = viewpoint else { return };
    let (eye, look) = (Vec3::from(viewpoint.position), Vec3::from(viewpoint.look_at));
    let floor = floor_below(&rapier, eye).unwrap_or(eye.y - 1.65);
    let placed = stand_at(&root, eyes.translation, eye, look, floor, comfort.floor_offset());
    move_root(&mut root, &mut head, placed);
    if comfort.vignette || comfort.reduced_motion {
        vignette.blink = 1.0;
        vignette.strength = 1.0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_arc_is_ballistic_and_starts_at_the_hand() {
        let rules = TeleportRules::default();
        let arc = arc_points(Vec3::new(0.0, 1.0, 0.0), Vec3::new(0.0, 0.0, -1.0), &rules);
        assert_eq!(arc[0], Vec3::new(0.0, 1.0, 0.0));
        let t = 10.0 * ARC_STEP;
        assert!((arc[10].z + rules.launch_speed * t).abs() < 1e-4);
        assert!((arc[10].y - (1.0 - 0.5 * GRAVITY * t * t)).abs() < 1e-4);
    }

    #[test]
    fn teleporting_keeps_the_turn_and_puts_the_head_over_the_target() {
        let root = Transform::from_xyz(1.0, 0.0, 2.0).with_rotation(Quat::from_rotation_y(0.7));
        let head = Vec3::new(1.3, 1.7, 1.6);
        let moved = teleport_root(&root, head, Vec3::new(-4.0, 0.5, 3.0), 0.45);
        assert_eq!(moved.rotation, root.rotation);
        let new_head = moved.translation + (head - root.translation);
        assert!((new_head.x + 4.0).abs() < 1e-5 && (new_head.z - 3.0).abs() < 1e-5);
        assert!((moved.translation.y - 0.95).abs() < 1e-5);
    }

    #[test]
    fn vignette_closes_fast_and_opens_slowly_and_only_when_wanted() {
        let on = ComfortSettings::default();
        assert_eq!(vignette_target(false, false, &on), 0.0);
        assert!(vignette_target(true, false, &on) > 0.0);
        assert_eq!(vignette_target(true, true, &ComfortSettings { vignette: false, ..on }), 0.0);
        assert!(vignette_target(true, false, &ComfortSettings { vignette: false, reduced_motion: true, ..on }) > 0.5);
        let closing = ease_vignette(0.0, 0.5, 0.1);
        let opening = 0.5 - ease_vignette(0.5, 0.0, 0.1);
        assert!(closing > 2.0 * opening, "{closing} vs {opening}");
    }

    #[test]
    fn snap_turns_need_a_full_push_and_a_return() {
        let settings = ComfortSettings { snap_turn_degrees: 45.0, ..default() };
        let mut snap = SnapTurn::default();
        assert_eq!(snap.update(0.5, &settings), None, "a half push does nothing");
        assert_eq!(snap.update(0.9, &settings), Some(-45f32.to_radians()));
        assert_eq!(snap.update(1.0, &settings), None);
        assert_eq!(snap.update(0.5, &settings), None, "not yet back to rest");
        assert_eq!(snap.update(0.1, &settings), None);
        assert_eq!(snap.update(-0.8, &settings), Some(45f32.to_radians()));
        let mut off = SnapTurn::default();
        assert_eq!(off.update(1.0, &ComfortSettings { snap_turn_degrees: 0.0, ..default() }), None);
    }
}
