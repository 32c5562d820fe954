//! The visitor's camera on the desktop: orbit around a focus with the mouse, walk the focus
//! with the keyboard, and jump between the scene's named viewpoints.

use bevy::input::mouse::{AccumulatedMouseMotion, AccumulatedMouseScroll, MouseScrollUnit};
use bevy::prelude::*;

use crate::engine::command::CurrentScene;
use crate::model::scene::format::{SceneFile, ViewpointDef};

/// Where the camera orbits, and from how far. The camera's transform is derived from it.
#[derive(Debug, Clone, Copy, PartialEq, Component)]
pub struct CameraRig {
    /// Point looked at and orbited around.
    pub focus: Vec3,
    /// Turn about the vertical axis, radians.
    pub yaw: f32,
    /// Tilt, radians; negative looks down.
    pub pitch: f32,
    /// Distance from the focus, metres.
    pub distance: f32,
}

impl CameraRig {
    /// A rig that puts the eye at `eye` looking at `target`.
    pub fn looking(eye: Vec3, target: Vec3) -> Self {
        let offset = eye - target;
        let distance = offset.length().max(0.01);
        let dir = offset / distance;
        Self { focus: target, yaw: dir.x.atan2(dir.z), pitch: -dir.y.clamp(-1.0, 1.0).asin(), distance }
    }

    /// The camera transform for this rig.
    pub fn transform(&self) -> Transform {
        let rotation = Quat::from_euler(EulerRot::YXZ, self.yaw, self.pitch, 0.0);
        let eye = self.focus + rotation * Vec3::new(0.0, 0.0, self.distance);
        Transform::from_translation(eye).with_rotation(rotation)
    }
}

/// The camera whose picture is the program output (the broadcast's): moved by the director's
/// commands (`engine::program`), never by the desktop visitor's mouse and keys.
#[derive(Component, Debug, Clone, Copy)]
pub struct ProgramCamera;

/// The viewpoint a session starts at; `None` means the scene's `spawn` (or its first viewpoint).
#[derive(Debug, Clone, Default, Resource)]
pub struct StartViewpoint(pub Option<String>);

/// The viewpoint to use: the requested one, else the scene's spawn, else the first.
pub fn pick_viewpoint<'a>(scene: &'a SceneFile, requested: Option<&str>) -> Option<&'a ViewpointDef> {
    let name = requested.or(scene.spawn.as_deref());
    match name {
        Some(n) => scene.viewpoints.iter().find(|v| v.name == n),
        None => scene.viewpoints.first(),
    }
}

/// Fallback when a scene has no viewpoint at all.
fn default_rig() -> CameraRig {
    CameraRig::looking(Vec3::new(0.0, 6.0, 18.0), Vec3::new(0.0, 1.5, 0.0))
}

/// Moves a camera to a viewpoint: its rig, and its field of view.
pub fn apply_viewpoint(rig: &mut CameraRig, projection: &mut Projection, viewpoint: &ViewpointDef) {
    *rig = CameraRig::looking(Vec3::from(viewpoint.position), Vec3::from(viewpoint.look_at));
    if let Projection::Perspective(p) = projection {
        p.fov = viewpoint.fov.to_radians();
    }
}

/// Places rig cameras at the start viewpoint, lets the mouse and keyboard move them, and keeps
/// transforms in step with rigs.
pub struct CameraPlugin {
    /// Whether mouse and keyboard move the camera (off for deterministic renders).
    pub interactive: bool,
}

impl Plugin for CameraPlugin {
    fn build(&self, app: &mut App) {
        app.init_resource::<StartViewpoint>()
            .add_systems(PostUpdate, place_new_cameras.before(TransformSystems::Propagate))
            .add_systems(
                PostUpdate,
                apply_rig_to_transform.after(place_new_cameras).before(TransformSystems::Propagate),
            );
        if self.interactive {
            app.add_systems(Update, (orbit_with_mouse, walk_with_keys, jump_to_viewpoint));
        }
    }
}

/// Cameras that have not yet been placed at the start viewpoint.
#[derive(Debug, Clone, Copy, Default, Component)]
pub struct AwaitingViewpoint;

fn place_new_cameras(
    mut commands: Commands,
    scene: Option<Res<CurrentScene>>,
    start: Res<StartViewpoint>,
    mut cameras: Query<(Entity, &mut CameraRig, &mut Projection), With<AwaitingViewpoint>>,
) {
    let Some(scene) = scene else { return };
    for (entity, mut rig, mut projection) in &mut cameras {
        match pick_viewpoint(&scene.0, start.0.as_deref()) {
            Some(vp) => apply_viewpoint(&mut rig, &mut projection, vp),
            None => *rig = default_rig(),
        }
        commands.entity(entity).remove::<AwaitingViewpoint>();
    }
}

fn apply_rig_to_transform(mut cameras: Query<(&CameraRig, &mut Transform), Changed<CameraRig>>) {
    for (rig, mut transform) in &mut cameras {
        *transform = rig.transform();
    }
}

fn orbit_with_mouse(
    buttons: Res<ButtonInput<MouseButton>>,
    motion: Res<AccumulatedMouseMotion>,
    scroll: Res<AccumulatedMouseScroll>,
    mut rigs: Query<&mut CameraRig, Without<ProgramCamera>>,
) {
    let delta = motion.delta;
    let wheel = match scroll.unit {
        MouseScrollUnit::Line => scroll.delta.y,
        MouseScrollUnit::Pixel => scroll.delta.y / 40.0,
    };
    for mut rig in &mut rigs {
        if buttons.pressed(MouseButton::Left) && delta != Vec2::ZERO {
            rig.yaw -= delta.x * 0.005;
            rig.pitch = (rig.pitch - delta.y * 0.005).clamp(-1.5, 1.5);
        }
        if buttons.pressed(MouseButton::Right) && delta != Vec2::ZERO {
            let rotation = Quat::from_euler(EulerRot::YXZ, rig.yaw, rig.pitch, 0.0);
            let pan = (rotation * Vec3::X * -delta.x + rotation * Vec3::Y * delta.y) * rig.distance * 0.0015;
            rig.focus += pan;
        }
        if wheel != 0.0 {
            rig.distance = (rig.distance * (1.0 - wheel * 0.1)).clamp(0.3, 500.0);
        }
    }
}

fn walk_with_keys(
    keys: Res<ButtonInput<KeyCode>>,
    time: Res<Time>,
    mut rigs: Query<&mut CameraRig, Without<ProgramCamera>>,
) {
    let mut input = Vec3::ZERO;
    for (key, dir) in [
        (KeyCode::KeyW, Vec3::NEG_Z),
        (KeyCode::ArrowUp, Vec3::NEG_Z),
        (KeyCode::KeyS, Vec3::Z),
        (KeyCode::ArrowDown, Vec3::Z),
        (KeyCode::KeyA, Vec3::NEG_X),
        (KeyCode::ArrowLeft, Vec3::NEG_X),
        (KeyCode::KeyD, Vec3::X),
        (KeyCode::ArrowRight, Vec3::X),
        (KeyCode::KeyE, Vec3::Y),
        (KeyCode::KeyQ, Vec3::NEG_Y),
    ] {
        if keys.pressed(key) {
            input += dir;
        }
    }
    if input == Vec3::ZERO {
        return;
    }
    let speed = if keys.pressed(KeyCode::ShiftLeft) { 12.0 } else { 4.0 };
    for mut rig in &mut rigs {
        // Walk on the horizontal plane, as a visitor would; Q/E change height.
        let heading = Quat::from_rotation_y(rig.yaw);
        let step = heading * Vec3::new(input.x, 0.0, input.z) + Vec3::Y * input.y;
        rig.focus += step.normalize_or_zero() * speed * time.delta_secs();
    }
}

fn jump_to_viewpoint(
    keys: Res<ButtonInput<KeyCode>>,
    scene: Option<Res<CurrentScene>>,
    mut cameras: Query<(&mut CameraRig, &mut Projection), Without<ProgramCamera>>,
) {
    let Some(scene) = scene else { return };
    // Shift with a digit cuts the program output instead (`engine::program`).
    if keys.any_pressed([KeyCode::ShiftLeft, KeyCode::ShiftRight]) {
        return;
    }
    let Some(i) = DIGITS.iter().position(|k| keys.just_pressed(*k)) else { return };
    let Some(vp) = scene.0.viewpoints.get(i) else { return };
    for (mut rig, mut projection) in &mut cameras {
        apply_viewpoint(&mut rig, &mut projection, vp);
    }
}

/// The keys 1 to 9, for the scene's first nine viewpoints.
pub const DIGITS: [KeyCode; 9] = [
    KeyCode::Digit1,
    KeyCode::Digit2,
    KeyCode::Digit3,
    KeyCode::Digit4,
    KeyCode::Digit5,
    KeyCode::Digit6,
    KeyCode::Digit7,
    KeyCode::Digit8,
    KeyCode::Digit9,
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rig_reproduces_the_eye_and_target_it_was_made_from() {
        let eye = Vec3::new(3.0, 4.0, 10.0);
        let target = Vec3::new(-1.0, 1.0, 0.0);
        let t = CameraRig::looking(eye, target).transform();
        assert!(t.translation.distance(eye) < 1e-4, "{:?}", t.translation);
        let forward = t.forward();
        assert!(forward.dot((target - eye).normalize()) > 0.9999);
    }
}
