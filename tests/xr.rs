//! Headset visits without a headset: teleport validation on the venue's real rapier colliders,
//! turning, walking, comfort settings and pointing at hotspots, driven through the same
//! `HandInputs` the OpenXR controllers fill. (The OpenXR session itself is tested against
//! Monado in `tests/xr_session.rs`.)

use std::path::PathBuf;
use std::time::Duration;

use bevy::prelude::*;
use bevy::time::TimeUpdateStrategy;
use bevy_mod_xr::session::XrTrackingRoot;
use parvis::app::{VenueSetup, core_app};
use parvis::engine::command::SubmitCommand;
use parvis::engine::visit::ActiveTour;
use parvis::engine::visit::OpenHotspot;
use parvis::engine::visit::tour::TourPhase;
use parvis::engine::visit::ui::HoveredHotspot;
use parvis::engine::xr::XrHead;
use parvis::engine::xr::controllers::PointingPlugin;
use parvis::engine::xr::locomotion::{
    ComfortSettings, HandInputs, LEFT, LocomotionPlugin, Posture, RIGHT, TeleportAim, TeleportRefusal, TeleportRules,
    TourInHeadsetPlugin, VignetteState,
};
use parvis::model::assets_root::AssetsRoot;
use parvis::model::command::VenueCommand;
use parvis::model::scene::DEFAULT_SCENE;
use parvis::model::scene::validate::parse_scene;

/// A floor with obstacles of every kind a teleport or a walk must respect.
const COURSE: &str = r##"(
    version: 1,
    venue: (title: "Locomotion course"),
    primitives: [
        (name: "floor", shape: Plane(size: (40, 40))),
        (name: "wall", shape: Box(size: (10, 4, 0.3)), transform: (translation: (0, 2, -6))),
        (name: "roof", shape: Box(size: (4, 0.2, 4)), transform: (translation: (8, 3, 0)), walkable: Some(false)),
        (name: "slab", shape: Box(size: (3, 0.2, 3)), transform: (translation: (-8, 1.2, 0))),
        (name: "column", shape: Cylinder(radius: 0.3, height: 3), transform: (translation: (0, 1.5, 3))),
        (name: "step", shape: Box(size: (4, 0.2, 4)), transform: (translation: (0, 0.1, 10))),
        (name: "plinth", shape: Box(size: (4, 1.0, 4)), transform: (translation: (-10, 0.5, 10))),
        (name: "ramp", shape: Box(size: (4, 0.2, 4)), transform: (translation: (10, 1, 10), rotation: (0, 0, 50))),
    ],
    viewpoints: [(name: "start", position: (0, 1.7, 0), look_at: (0, 1.7, -5))],
)"##;

fn assets() -> AssetsRoot {
    AssetsRoot::new(PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("assets"))
}

/// The head and hands in the play space, as a runtime reports them; a system puts them in the
/// venue through the play space's placement every frame, as the real session does.
#[derive(Resource, Clone, Copy)]
struct Tracked {
    head: Transform,
    hands: [Option<Transform>; 2],
}

fn track(
    tracked: Res<Tracked>,
    roots: Query<&Transform, With<XrTrackingRoot>>,
    mut head: ResMut<XrHead>,
    mut hands: ResMut<HandInputs>,
) {
    let Ok(root) = roots.single() else { return };
    head.0 = Some(root.mul_transform(tracked.head));
    for hand in [LEFT, RIGHT] {
        hands.0[hand].aim = tracked.hands[hand].map(|h| root.mul_transform(h));
    }
}

fn app_for(scene: &str, comfort: ComfortSettings) -> App {
    let scene = parse_scene(scene).expect("the test scene is valid");
    let mut app = core_app(VenueSetup::new(scene, assets()));
    app.add_plugins((LocomotionPlugin, PointingPlugin, TourInHeadsetPlugin))
        .insert_resource(comfort)
        .insert_resource(TimeUpdateStrategy::ManualDuration(Duration::from_secs_f64(1.0 / 60.0)))
        .insert_resource(Tracked { head: Transform::from_xyz(0.0, 1.6, 0.0), hands: [None, None] })
        .add_systems(PreUpdate, track);
    app.world_mut().spawn((XrTrackingRoot, Transform::default()));
    // The venue loads, its colliders are made and join rapier's queries at a physics step.
    for _ in 0..10 {
        app.update();
    }
    app
}

fn course() -> App {
    app_for(COURSE, ComfortSettings::default())
}

fn root(app: &mut App) -> Transform {
    *app.world_mut().query_filtered::<&Transform, With<XrTrackingRoot>>().single(app.world()).expect("one play space")
}

fn head(app: &App) -> Transform {
    app.world().resource::<XrHead>().0.expect("the head is tracked")
}

fn set_root(app: &mut App, transform: Transform) {
    *app.world_mut()
        .query_filtered::<&mut Transform, With<XrTrackingRoot>>()
        .single_mut(app.world_mut())
        .expect("one play space") = transform;
}

/// A hand at `at` (in the venue, the play space being at the origin) pointing along `direction`.
fn point_hand(app: &mut App, hand: usize, at: Vec3, direction: Vec3) {
    let pose = Transform::from_translation(at)
        .looking_to(direction, if direction.cross(Vec3::Y).length() < 1e-3 { Vec3::Z } else { Vec3::Y });
    app.world_mut().resource_mut::<Tracked>().hands[hand] = Some(pose);
}

fn stick(app: &mut App, hand: usize, value: Vec2) {
    app.world_mut().resource_mut::<HandInputs>().0[hand].stick = value;
}

/// Lets the stick go back to rest and waits out the jump's short delay.
fn release(app: &mut App) {
    stick(app, RIGHT, Vec2::ZERO);
    for _ in 0..10 {
        app.update();
    }
}

/// Aims at the open floor ahead and lets go: a teleport of about two metres.
fn jump_ahead(app: &mut App) {
    point_hand(app, RIGHT, Vec3::new(0.2, 1.3, -0.3), Vec3::new(0.0, -0.5, -1.0));
    stick(app, RIGHT, Vec2::new(0.0, 1.0));
    app.update();
    release(app);
}

/// Aims a teleport from `at` along `direction` and returns the verdict (without jumping).
fn aim(app: &mut App, at: Vec3, direction: Vec3) -> Result<Vec3, TeleportRefusal> {
    point_hand(app, RIGHT, at, direction);
    stick(app, RIGHT, Vec2::new(0.0, 1.0));
    app.update();
    let verdict = app.world().resource::<TeleportAim>().target.as_ref().expect("aiming").verdict.clone();
    // Cancel without jumping: sweep the stick back through rest, as a thumb does, then let go.
    for y in [0.5, 0.1, -0.3, -0.8] {
        stick(app, RIGHT, Vec2::new(0.0, y));
        app.update();
    }
    release(app);
    verdict
}

#[test]
fn a_teleport_lands_on_the_floor_and_brings_the_head_there() {
    let mut app = course();
    let start = head(&app).translation;
    point_hand(&mut app, RIGHT, Vec3::new(0.2, 1.3, -0.3), Vec3::new(0.0, -0.5, -1.0));
    stick(&mut app, RIGHT, Vec2::new(0.0, 1.0));
    app.update();
    let target = app.world().resource::<TeleportAim>().target.clone().expect("aiming");
    let landing = target.verdict.expect("open floor is a place to stand");
    assert!(landing.y.abs() < 0.02, "the landing is on the floor: {landing}");
    assert!(landing.z < -1.0 && landing.z > -5.0, "the arc flies ahead: {landing}");
    assert!(target.arc.len() > 3 && target.arc.windows(2).all(|w| w[1].z <= w[0].z + 1e-4), "the arc is drawn forward");
    // Nothing moves while aiming.
    assert_eq!(head(&app).translation, start);
    // Let go: the view closes at once, the jump follows a tenth of a second later.
    stick(&mut app, RIGHT, Vec2::ZERO);
    app.update();
    assert_eq!(head(&app).translation, start, "not yet");
    assert_eq!(app.world().resource::<VignetteState>().strength, 1.0, "the view is closed before the jump");
    release(&mut app);
    let now = head(&app).translation;
    assert!(
        (now.x - landing.x).abs() < 1e-3 && (now.z - landing.z).abs() < 1e-3,
        "the head is above the landing: {now} vs {landing}"
    );
    assert!((now.y - 1.6).abs() < 0.02, "the eye height is kept (the floor's collider is 1 cm thick): {now}");
    assert_eq!(app.world().resource::<TeleportAim>().jumps, 1);
}

#[test]
fn walls_roofs_low_ceilings_columns_and_range_refuse_a_teleport_with_the_reason() {
    let mut app = course();
    // Flat at the wall: its face is vertical.
    match aim(&mut app, Vec3::new(0.0, 1.3, -0.3), Vec3::new(0.0, 0.36, -1.0)) {
        Err(TeleportRefusal::TooSteep { degrees, .. }) => assert!(degrees > 80.0, "{degrees}"),
        other => panic!("the wall: {other:?}"),
    }
    // The roof is flat enough but the scene marks it not walkable.
    assert_eq!(aim(&mut app, Vec3::new(8.0, 4.5, 0.5), Vec3::NEG_Y), Err(TeleportRefusal::NotWalkable("roof".into())));
    // Under the slab the floor is walkable, but there is 1.1 m of room.
    match aim(&mut app, Vec3::new(-8.0, 1.0, 0.0), Vec3::NEG_Y) {
        Err(TeleportRefusal::NoHeadroom { clearance, needed }) => {
            assert!((clearance - 1.1).abs() < 0.02, "{clearance}");
            assert_eq!(needed, 1.8);
        }
        other => panic!("under the slab: {other:?}"),
    }
    // Beside the column the body does not fit; a metre away it does.
    assert!(matches!(aim(&mut app, Vec3::new(0.4, 1.0, 3.0), Vec3::NEG_Y), Err(TeleportRefusal::TooNarrow { .. })));
    assert!(aim(&mut app, Vec3::new(1.4, 1.0, 3.0), Vec3::NEG_Y).is_ok());
    // A steep ramp (50°).
    assert!(matches!(aim(&mut app, Vec3::new(10.0, 4.0, 10.0), Vec3::NEG_Y), Err(TeleportRefusal::TooSteep { .. })));
    // Up into the sky.
    assert_eq!(aim(&mut app, Vec3::new(0.0, 30.0, 0.0), Vec3::Y), Err(TeleportRefusal::NothingHit));
    // Range.
    app.insert_resource(TeleportRules { max_distance: 5.0, ..default() });
    assert!(matches!(aim(&mut app, Vec3::new(9.0, 1.0, -3.0), Vec3::NEG_Y), Err(TeleportRefusal::TooFar { .. })));
    // None of these moved the visitor, and the last refusal is kept for the visitor's feedback.
    assert_eq!(root(&mut app), Transform::default());
    assert_eq!(app.world().resource::<TeleportAim>().jumps, 0);
}

#[test]
fn releasing_on_a_refused_target_or_pulling_back_does_not_move() {
    let mut app = course();
    point_hand(&mut app, RIGHT, Vec3::new(8.0, 4.5, 0.5), Vec3::NEG_Y);
    stick(&mut app, RIGHT, Vec2::new(0.0, 1.0));
    app.update();
    release(&mut app);
    assert_eq!(root(&mut app), Transform::default());
    assert_eq!(app.world().resource::<TeleportAim>().last_refusal, Some(TeleportRefusal::NotWalkable("roof".into())));
    // A good target, then the stick swept back through rest to cancel: no jump.
    point_hand(&mut app, RIGHT, Vec3::new(0.2, 1.3, -0.3), Vec3::new(0.0, -0.5, -1.0));
    for y in [1.0, 0.5, 0.1, -0.3, -0.8] {
        stick(&mut app, RIGHT, Vec2::new(0.0, y));
        app.update();
    }
    release(&mut app);
    assert_eq!(root(&mut app), Transform::default(), "cancelled");
    assert_eq!(app.world().resource::<TeleportAim>().jumps, 0);
}

#[test]
fn a_turn_in_the_frame_of_a_jump_turns_about_the_head_where_it_landed() {
    let mut app = course();
    point_hand(&mut app, RIGHT, Vec3::new(0.2, 1.3, -0.3), Vec3::new(0.0, -0.5, -1.0));
    stick(&mut app, RIGHT, Vec2::new(0.0, 1.0));
    app.update();
    let landing = app.world().resource::<TeleportAim>().target.clone().unwrap().verdict.unwrap();
    stick(&mut app, RIGHT, Vec2::ZERO);
    for _ in 0..20 {
        if app
            .world()
            .resource::<TeleportAim>()
            .settling
            .is_some_and(|t| t + 1.0 / 60.0 >= parvis::engine::xr::locomotion::RELEASE_SETTLE)
        {
            break;
        }
        app.update();
    }
    // The jump happens on this frame; the thumb rolls to the side on the same frame.
    stick(&mut app, RIGHT, Vec2::new(1.0, 0.0));
    app.update();
    app.update();
    assert_eq!(app.world().resource::<TeleportAim>().jumps, 1);
    let now = head(&app).translation;
    assert!(
        (now.x - landing.x).abs() < 1e-3 && (now.z - landing.z).abs() < 1e-3,
        "turned on the landing spot: {now} vs {landing}"
    );
}

#[test]
fn a_snap_turn_turns_once_per_push_about_the_head() {
    let mut app = course();
    app.world_mut().resource_mut::<Tracked>().head = Transform::from_xyz(0.5, 1.6, 0.3);
    app.update();
    let before = head(&app);
    stick(&mut app, RIGHT, Vec2::new(1.0, 0.0));
    app.update();
    app.update();
    let turned = head(&app);
    assert!(
        turned.translation.distance(before.translation) < 1e-4,
        "turning on the spot: {} vs {}",
        turned.translation,
        before.translation
    );
    let yaw = |t: &Transform| t.rotation.to_euler(EulerRot::YXZ).0.to_degrees();
    assert!(
        (yaw(&turned) - yaw(&before) + 30.0).abs() < 0.01,
        "one 30° turn to the right: {} → {}",
        yaw(&before),
        yaw(&turned)
    );
    for _ in 0..10 {
        app.update();
    }
    assert!((yaw(&head(&app)) - yaw(&turned)).abs() < 0.01, "holding the stick does not turn again");
    stick(&mut app, RIGHT, Vec2::ZERO);
    app.update();
    stick(&mut app, RIGHT, Vec2::new(-1.0, 0.0));
    app.update();
    app.update();
    assert!((yaw(&head(&app)) - yaw(&before)).abs() < 0.01, "a push to the left turns back");
}

#[test]
fn smooth_turning_follows_the_stick_unless_reduced_motion_asks_for_snaps() {
    let smooth = ComfortSettings { smooth_turn: true, ..default() };
    let yaw = |app: &App| head(app).rotation.to_euler(EulerRot::YXZ).0.to_degrees();
    let mut app = app_for(COURSE, smooth);
    stick(&mut app, RIGHT, Vec2::new(1.0, 0.0));
    for _ in 0..31 {
        app.update();
    }
    let turned = -yaw(&app);
    assert!((turned - 45.0).abs() < 3.5, "half a second at 90°/s: {turned}");
    assert!(app.world().resource::<VignetteState>().strength > 0.3, "the vignette closes while turning smoothly");

    let mut app = app_for(COURSE, ComfortSettings { reduced_motion: true, ..smooth });
    stick(&mut app, RIGHT, Vec2::new(1.0, 0.0));
    for _ in 0..31 {
        app.update();
    }
    assert!((-yaw(&app) - 30.0).abs() < 0.01, "reduced motion snaps instead: {}", -yaw(&app));
}

#[test]
fn walking_stops_at_walls_climbs_steps_and_does_not_walk_off_ledges() {
    // Toward the wall (z = -5.85 on this side) for five seconds.
    let mut app = course();
    stick(&mut app, LEFT, Vec2::new(0.0, 1.0));
    for _ in 0..60 {
        app.update();
    }
    let z = head(&app).translation.z;
    assert!((z + 1.4).abs() < 0.1, "a second at 1.4 m/s: {z}");
    assert!(app.world().resource::<VignetteState>().strength > 0.3, "the vignette is closed while walking");
    for _ in 0..240 {
        app.update();
    }
    let z = head(&app).translation.z;
    assert!(z > -5.85 + 0.2 && z < -5.3, "stopped by the wall, a body's radius away: {z}");
    stick(&mut app, LEFT, Vec2::ZERO);
    for _ in 0..90 {
        app.update();
    }
    assert!(app.world().resource::<VignetteState>().strength < 0.05, "and opens again after");

    // Up a 0.2 m step.
    let mut app = course();
    set_root(&mut app, Transform::from_xyz(0.0, 0.0, 6.5).looking_to(Vec3::Z, Vec3::Y));
    stick(&mut app, LEFT, Vec2::new(0.0, 1.0));
    for _ in 0..120 {
        app.update();
    }
    let r = root(&mut app).translation;
    assert!(r.z > 8.5 && (r.y - 0.2).abs() < 0.01, "on the step: {r}");

    // Not off a 1 m plinth, and not up onto it.
    let mut app = course();
    set_root(&mut app, Transform::from_xyz(-10.0, 1.0, 10.0).looking_to(Vec3::X, Vec3::Y));
    stick(&mut app, LEFT, Vec2::new(0.0, 1.0));
    for _ in 0..180 {
        app.update();
    }
    let r = root(&mut app).translation;
    assert!((r.y - 1.0).abs() < 1e-3 && r.x < -7.9 && r.x > -9.0, "kept on the plinth at its edge: {r}");
    let mut app = course();
    set_root(&mut app, Transform::from_xyz(-6.0, 0.0, 10.0).looking_to(Vec3::NEG_X, Vec3::Y));
    stick(&mut app, LEFT, Vec2::new(0.0, 1.0));
    for _ in 0..180 {
        app.update();
    }
    let r = root(&mut app).translation;
    assert!(r.y.abs() < 0.02 && r.x > -8.0, "stopped at the plinth's side: {r}");
}

#[test]
fn comfort_settings_change_walking_vignette_and_height() {
    // Reduced motion: no walking at all.
    let mut app = app_for(COURSE, ComfortSettings { reduced_motion: true, ..default() });
    stick(&mut app, LEFT, Vec2::new(0.0, 1.0));
    for _ in 0..30 {
        app.update();
    }
    assert_eq!(root(&mut app), Transform::default());
    // No vignette.
    let mut app = app_for(COURSE, ComfortSettings { vignette: false, ..default() });
    stick(&mut app, LEFT, Vec2::new(0.0, 1.0));
    for _ in 0..30 {
        app.update();
    }
    assert!(root(&mut app).translation.z < -0.5, "walks");
    assert_eq!(app.world().resource::<VignetteState>().strength, 0.0);
    // Seated: a teleport puts the play space's floor 0.45 m above the landing.
    let mut app = app_for(COURSE, ComfortSettings { posture: Posture::Seated { raise: 0.45 }, ..default() });
    jump_ahead(&mut app);
    assert!((root(&mut app).translation.y - 0.45).abs() < 0.02, "{}", root(&mut app).translation);
    // Reduced motion blinks on a jump.
    let mut app = app_for(COURSE, ComfortSettings { reduced_motion: true, ..default() });
    jump_ahead(&mut app);
    assert_eq!(app.world().resource::<TeleportAim>().jumps, 1);
    assert!(app.world().resource::<VignetteState>().strength > 0.5, "a blink hides the jump");
    // With neither the vignette nor reduced motion, a jump does not blink.
    let mut app = app_for(COURSE, ComfortSettings { vignette: false, ..default() });
    jump_ahead(&mut app);
    assert_eq!(app.world().resource::<TeleportAim>().jumps, 1);
    assert_eq!(app.world().resource::<VignetteState>().strength, 0.0);
}

#[test]
fn pointing_at_a_hotspot_lights_it_and_the_trigger_opens_it() {
    let mut app = app_for(DEFAULT_SCENE, ComfortSettings::default());
    // From the courtyard toward the fountain (hotspot at (0, 1.6, 0), radius 0.9).
    point_hand(&mut app, RIGHT, Vec3::new(0.0, 1.4, 5.0), Vec3::new(0.0, 0.04, -1.0));
    app.update();
    assert_eq!(app.world().resource::<HoveredHotspot>().0.as_deref(), Some("fountain"));
    assert_eq!(app.world().resource::<OpenHotspot>().name, None, "pointing alone opens nothing");
    app.world_mut().resource_mut::<HandInputs>().0[RIGHT].trigger = 1.0;
    app.update();
    app.update();
    assert_eq!(app.world().resource::<OpenHotspot>().name.as_deref(), Some("fountain"));
    // Holding the trigger while pointing away does not close it; a new pull at nothing does.
    point_hand(&mut app, RIGHT, Vec3::new(0.0, 1.4, 5.0), Vec3::new(1.0, 0.0, 0.0));
    app.update();
    app.update();
    assert_eq!(app.world().resource::<OpenHotspot>().name.as_deref(), Some("fountain"));
    assert_eq!(app.world().resource::<HoveredHotspot>().0, None);
    app.world_mut().resource_mut::<HandInputs>().0[RIGHT].trigger = 0.0;
    app.update();
    app.world_mut().resource_mut::<HandInputs>().0[RIGHT].trigger = 1.0;
    app.update();
    app.update();
    assert_eq!(app.world().resource::<OpenHotspot>().name, None);
}

#[test]
fn the_cloister_roofs_are_not_walkable_and_its_courtyard_is() {
    let mut app = app_for(DEFAULT_SCENE, ComfortSettings::default());
    // Straight down onto the north gallery's roof, and onto the garden path.
    assert_eq!(
        aim(&mut app, Vec3::new(0.0, 8.0, -9.75), Vec3::NEG_Y),
        Err(TeleportRefusal::NotWalkable("roof_north".into()))
    );
    let on_path = aim(&mut app, Vec3::new(0.0, 1.5, 4.0), Vec3::NEG_Y).expect("the path is walkable");
    assert!((on_path.y - 0.12).abs() < 0.01, "{on_path}");
}

#[test]
fn a_tour_puts_the_visitor_at_each_stop_behind_a_blink() {
    let mut app = app_for(DEFAULT_SCENE, ComfortSettings::default());
    app.world_mut().write_message(SubmitCommand::local(VenueCommand::PlayTour {
        tour: Some("highlights".into()),
        language: Some("en".into()),
    }));
    let start = head(&app).translation;
    // Stops: the courtyard (-1.3, 7.0) on the garden (0.1 m), then the gallery (-9.7, 9.5) on the
    // paving (its collider 1 cm thick), both looking north; the head is 1.6 m above the floor.
    for (stop, x, z, floor) in [(0, -1.3, 7.0, 0.1), (1, -9.7, 9.5, 0.01)] {
        let mut frames = 0;
        while !matches!(app.world().resource::<ActiveTour>().phase(), Some(TourPhase::AtStop { stop: s, .. }) if s == stop)
        {
            app.update();
            frames += 1;
            assert!(frames < 60 * 30, "stop {stop} reached");
            if stop == 0 {
                assert_eq!(head(&app).translation, start, "no flying while the tour travels");
            }
        }
        app.update();
        app.update();
        let now = head(&app);
        assert!(
            (now.translation.x - x).abs() < 1e-3 && (now.translation.z - z).abs() < 1e-3,
            "stop {stop}: {}",
            now.translation
        );
        assert!((now.translation.y - 1.6 - floor).abs() < 0.005, "standing on the floor there: {}", now.translation);
        assert!(now.forward().z < -0.99, "facing where the viewpoint looks");
        assert!(app.world().resource::<VignetteState>().strength > 0.5, "behind a blink");
    }
}
