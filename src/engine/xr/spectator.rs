//! The spectator view: while a headset session runs, the desktop window (or a headless image)
//! shows the visit for a stream or for staff, from the visitor's eyes or from behind them,
//! smoothed so that the head's small shakes and turns do not make viewers sick, and with the
//! horizon kept level.

use std::path::PathBuf;

use bevy::prelude::*;

use super::session::{XrHead, XrSessionLog};

/// What the spectator sees.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SpectatorMode {
    /// From the visitor's eyes, smoothed.
    #[default]
    FirstPerson,
    /// From behind and above the visitor, looking where they look.
    ThirdPerson,
    /// Nothing: the desktop camera stays where it is.
    Off,
}

/// The camera that shows the spectator view.
#[derive(Debug, Clone, Copy, Component)]
pub struct SpectatorCamera;

/// Save the spectator view to this PNG shortly before a `--frames` run ends.
#[derive(Debug, Clone, Resource)]
pub struct SpectatorCapture(pub PathBuf);

/// Seconds for the spectator to cover half of its distance to the head.
const POSITION_HALF_LIFE: f32 = 0.2;
/// Seconds for the spectator to turn half of its angle to the head's.
const ROTATION_HALF_LIFE: f32 = 0.35;

/// Where the spectator camera would be for this head, before smoothing.
pub fn spectator_goal(head: &Transform, mode: SpectatorMode) -> Transform {
    let forward = head.forward();
    let level = Vec3::new(forward.x, 0.0, forward.z).normalize_or(Vec3::NEG_Z);
    match mode {
        SpectatorMode::ThirdPerson => {
            let eye = head.translation - level * 2.2 + Vec3::Y * 0.7;
            Transform::from_translation(eye).looking_at(head.translation + level * 2.0, Vec3::Y)
        }
        // Level: the head's yaw and pitch, never its roll.
        _ => Transform::from_translation(head.translation).looking_to(*forward, Vec3::Y),
    }
}

/// One step of the smoothing: `previous` moves toward the goal for `head` by an amount that
/// depends on `dt` only through half-lives, so it behaves the same at 30 or 90 frames per second.
pub fn follow(previous: &Transform, head: &Transform, mode: SpectatorMode, dt: f32) -> Transform {
    let goal = spectator_goal(head, mode);
    let move_part = 1.0 - 0.5f32.powf(dt / POSITION_HALF_LIFE);
    let turn_part = 1.0 - 0.5f32.powf(dt / ROTATION_HALF_LIFE);
    let translation = previous.translation.lerp(goal.translation, move_part);
    let rotation = previous.rotation.slerp(goal.rotation, turn_part);
    // Re-level after the slerp, which can bring back a little roll.
    let forward = rotation * Vec3::NEG_Z;
    Transform::from_translation(translation).looking_to(forward, Vec3::Y)
}

/// What the spectator view does: its mode, and when a headless one is captured.
#[derive(Debug, Clone, Copy, Default, Resource)]
pub struct SpectatorSettings {
    /// What the desktop shows.
    pub mode: SpectatorMode,
    /// Frames of the session after which the app ends (0: none); the capture is taken just
    /// before.
    pub frames: u64,
}

/// Drives the [`SpectatorCamera`] from the head.
pub struct SpectatorPlugin;

impl Plugin for SpectatorPlugin {
    fn build(&self, app: &mut App) {
        app.add_systems(
            Update,
            (follow_the_head, capture_before_the_end).chain().after(super::session::XrVisitSystems::Move),
        );
    }
}

fn follow_the_head(
    head: Res<XrHead>,
    settings: Res<SpectatorSettings>,
    time: Res<Time>,
    mut cameras: Query<&mut Transform, With<SpectatorCamera>>,
    mut started: Local<bool>,
) {
    let Some(head) = head.0 else { return };
    if settings.mode == SpectatorMode::Off {
        return;
    }
    for mut camera in &mut cameras {
        // The first frame jumps: there is nothing to smooth from.
        *camera = if *started {
            follow(&camera, &head, settings.mode, time.delta_secs())
        } else {
            spectator_goal(&head, settings.mode)
        };
    }
    *started = true;
}

/// Frames before the end at which the capture is taken, so the readback completes.
const CAPTURE_LEAD: u64 = 10;

fn capture_before_the_end(
    capture: Option<Res<SpectatorCapture>>,
    settings: Res<SpectatorSettings>,
    log: Res<XrSessionLog>,
    cameras: Query<&bevy::camera::RenderTarget, With<SpectatorCamera>>,
    mut commands: Commands,
    mut taken: Local<bool>,
) {
    let Some(capture) = capture else { return };
    if *taken || settings.frames == 0 || log.frames_rendered + CAPTURE_LEAD < settings.frames {
        return;
    }
    let Some(target) = cameras.iter().find_map(|target| match target {
        bevy::camera::RenderTarget::Image(image) => Some(image.handle.clone()),
        _ => None,
    }) else {
        return;
    };
    *taken = true;
    commands
        .spawn(bevy::render::view::screenshot::Screenshot::image(target))
        .observe(bevy::render::view::screenshot::save_to_disk(capture.0.clone()));
}

#[cfg(test)]
mod tests {
    use super::*;

    fn roll_of(t: &Transform) -> f32 {
        // The camera's right vector tilts out of the horizontal plane when it rolls.
        t.right().y.asin().to_degrees()
    }

    #[test]
    fn the_spectator_catches_up_with_a_still_head_at_any_frame_rate() {
        let head = Transform::from_xyz(3.0, 1.6, -2.0).looking_to(Vec3::new(1.0, -0.2, 0.0), Vec3::Y);
        let mut cameras = Vec::new();
        for fps in [30.0f32, 90.0] {
            let mut camera = Transform::from_xyz(0.0, 1.6, 0.0);
            for _ in 0..(fps * 0.5) as usize {
                camera = follow(&camera, &head, SpectatorMode::FirstPerson, 1.0 / fps);
            }
            cameras.push(camera);
        }
        // Half a second is 2.5 half-lives: 18 % of the way is left, whatever the frame rate.
        let left = cameras[0].translation.distance(head.translation) / Vec3::new(3.0, 0.0, -2.0).length();
        assert!((left - 0.177).abs() < 0.01, "{left}");
        assert!(cameras[0].translation.distance(cameras[1].translation) < 0.005);
        let mut camera = cameras[1];
        for _ in 0..270 {
            camera = follow(&camera, &head, SpectatorMode::FirstPerson, 1.0 / 90.0);
        }
        assert!(camera.translation.distance(head.translation) < 0.001);
        assert!(camera.forward().dot(*head.forward()) > 0.9999);
    }

    #[test]
    fn head_shake_is_damped_and_the_horizon_stays_level() {
        let mut camera = Transform::from_xyz(0.0, 1.6, 0.0);
        let mut widest: f32 = 0.0;
        for frame in 0..900 {
            let t = frame as f32 / 90.0;
            // A head bobbing 2 cm sideways at 8 Hz and rolled 20°.
            let shake = 0.02 * (t * 8.0 * std::f32::consts::TAU).sin();
            let head = Transform::from_xyz(shake, 1.6, 0.0).with_rotation(Quat::from_rotation_z(20f32.to_radians()));
            camera = follow(&camera, &head, SpectatorMode::FirstPerson, 1.0 / 90.0);
            if frame > 450 {
                widest = widest.max(camera.translation.x.abs());
            }
            assert!(roll_of(&camera).abs() < 0.01, "rolled {}", roll_of(&camera));
        }
        assert!(widest < 0.02 * 0.2, "the shake is cut to under a fifth: {widest}");
    }

    #[test]
    fn third_person_stands_behind_and_above_looking_ahead() {
        let head = Transform::from_xyz(0.0, 1.6, 0.0).looking_to(Vec3::NEG_Z, Vec3::Y);
        let goal = spectator_goal(&head, SpectatorMode::ThirdPerson);
        assert!(goal.translation.z > 2.0 && goal.translation.y > 2.0, "{}", goal.translation);
        assert!(goal.forward().z < -0.9, "looks the way the visitor looks");
    }
}
