//! The headset's controllers: OpenXR actions for both hands (aim pose, trigger, grip, stick)
//! bound for the common controllers, read into [`HandInputs`]; what the visitor sees of them
//! (the hands, the pointing ray, the teleport arc, the vignette); and pointing at hotspots.

use bevy::light::NotShadowCaster;
use bevy::prelude::*;
use bevy_mod_openxr::action_binding::{OxrSendActionBindings, OxrSuggestActionBinding};
use bevy_mod_openxr::action_set_attaching::OxrAttachActionSet;
use bevy_mod_openxr::action_set_syncing::{OxrActionSetSyncSet, OxrSyncActionSet};
use bevy_mod_openxr::resources::OxrInstance;
use bevy_mod_openxr::session::OxrSession;
use bevy_mod_openxr::{openxr_session_available, openxr_session_running};
use bevy_mod_xr::camera::XrCamera;
use bevy_mod_xr::session::{XrSessionCreated, XrTrackingRoot};

use super::locomotion::{HandInputs, LEFT, LocomotionPlugin, RIGHT, TeleportAim, VignetteState};
use crate::engine::command::{CurrentScene, SubmitCommand};
use crate::engine::visit::pick_hotspot;
use crate::engine::visit::ui::HoveredHotspot;
use crate::model::command::VenueCommand;

/// The actions, one per hand each.
#[derive(Resource)]
struct ControllerActions {
    set: openxr::ActionSet,
    aim: [openxr::Action<openxr::Posef>; 2],
    trigger: [openxr::Action<f32>; 2],
    grip: [openxr::Action<f32>; 2],
    stick: [openxr::Action<openxr::Vector2f>; 2],
}

/// A hand's pointing pose, tracked by the runtime (a child of the play space).
#[derive(Component)]
struct AimSpace(usize);

#[derive(Component)]
struct PointerRay;

#[derive(Component)]
struct ArcDot(usize);

#[derive(Component)]
struct VignetteQuad;

/// Dots drawn along the teleport arc.
const ARC_DOTS: usize = 24;

/// OpenXR controllers in, [`HandInputs`] out; plus the hands' and the pointer's visuals.
pub struct ControllersPlugin;

impl Plugin for ControllersPlugin {
    fn build(&self, app: &mut App) {
        app.add_plugins((LocomotionPlugin, PointingPlugin))
            .add_systems(Startup, create_actions.run_if(openxr_session_available))
            .add_systems(OxrSendActionBindings, suggest_bindings)
            .add_systems(XrSessionCreated, (attach_actions, spawn_hands))
            .add_systems(PreUpdate, sync_actions.before(OxrActionSetSyncSet).run_if(openxr_session_running))
            .add_systems(Update, read_hands.run_if(openxr_session_running).before(super::session::XrVisitSystems::Move))
            .add_systems(
                Update,
                (spawn_vignette, draw_pointer, draw_arc, draw_vignette).after(super::session::XrVisitSystems::Move),
            );
    }
}

/// Pointing at hotspots with the right hand ([`HandInputs`]); works headless.
pub struct PointingPlugin;

impl Plugin for PointingPlugin {
    fn build(&self, app: &mut App) {
        app.init_resource::<HandInputs>()
            .init_resource::<TeleportAim>()
            .init_resource::<HoveredHotspot>()
            .add_systems(Update, point_at_hotspots.in_set(crate::engine::schedule::VenueSystems::Ingest));
    }
}

fn create_actions(instance: Res<OxrInstance>, mut commands: Commands) {
    let made = (|| -> openxr::Result<ControllerActions> {
        let set = instance.create_action_set("visit", "Visit", 0)?;
        let pair = |kind: &str| [format!("left_{kind}"), format!("right_{kind}")];
        let names = |kind: &str| [format!("Left hand {kind}"), format!("Right hand {kind}")];
        let (aim_ids, aim_names) = (pair("aim"), names("aim"));
        let (trigger_ids, trigger_names) = (pair("trigger"), names("trigger"));
        let (grip_ids, grip_names) = (pair("grip"), names("grip"));
        let (stick_ids, stick_names) = (pair("stick"), names("stick"));
        Ok(ControllerActions {
            aim: [
                set.create_action(&aim_ids[0], &aim_names[0], &[])?,
                set.create_action(&aim_ids[1], &aim_names[1], &[])?,
            ],
            trigger: [
                set.create_action(&trigger_ids[0], &trigger_names[0], &[])?,
                set.create_action(&trigger_ids[1], &trigger_names[1], &[])?,
            ],
            grip: [
                set.create_action(&grip_ids[0], &grip_names[0], &[])?,
                set.create_action(&grip_ids[1], &grip_names[1], &[])?,
            ],
            stick: [
                set.create_action(&stick_ids[0], &stick_names[0], &[])?,
                set.create_action(&stick_ids[1], &stick_names[1], &[])?,
            ],
            set,
        })
    })();
    match made {
        Ok(actions) => {
            commands.insert_resource(actions);
        }
        Err(e) => error!("headset: the controllers' actions could not be made ({e}); controllers will do nothing"),
    }
}

/// Bindings per interaction profile: (profile, trigger, grip, stick); `None` where the
/// controller has no such input. Every profile has aim poses.
const PROFILES: [(&str, &str, Option<&str>, Option<&str>); 5] = [
    // No stick or grip: the left hand's select aims a teleport (as a grip does elsewhere).
    ("/interaction_profiles/khr/simple_controller", "select/click", Some("select/click"), None),
    ("/interaction_profiles/oculus/touch_controller", "trigger/value", Some("squeeze/value"), Some("thumbstick")),
    ("/interaction_profiles/valve/index_controller", "trigger/value", Some("squeeze/value"), Some("thumbstick")),
    ("/interaction_profiles/microsoft/motion_controller", "trigger/value", Some("squeeze/click"), Some("thumbstick")),
    ("/interaction_profiles/htc/vive_controller", "trigger/value", Some("squeeze/click"), Some("trackpad")),
];

fn suggest_bindings(actions: Option<Res<ControllerActions>>, mut bindings: MessageWriter<OxrSuggestActionBinding>) {
    let Some(actions) = actions else { return };
    for (profile, trigger, grip, stick) in PROFILES {
        for (hand, side) in ["left", "right"].into_iter().enumerate() {
            let mut bind = |action: openxr::sys::Action, input: &str| {
                bindings.write(OxrSuggestActionBinding {
                    action,
                    interaction_profile: profile.into(),
                    bindings: vec![format!("/user/hand/{side}/input/{input}").into()],
                });
            };
            bind(actions.aim[hand].as_raw(), "aim/pose");
            bind(actions.trigger[hand].as_raw(), trigger);
            if let Some(grip) = grip {
                bind(actions.grip[hand].as_raw(), grip);
            }
            if let Some(stick) = stick {
                bind(actions.stick[hand].as_raw(), stick);
            }
        }
    }
}

fn attach_actions(actions: Option<Res<ControllerActions>>, mut attach: MessageWriter<OxrAttachActionSet>) {
    if let Some(actions) = actions {
        attach.write(OxrAttachActionSet(actions.set.clone()));
    }
}

fn sync_actions(actions: Option<Res<ControllerActions>>, mut sync: MessageWriter<OxrSyncActionSet>) {
    if let Some(actions) = actions {
        sync.write(OxrSyncActionSet(actions.set.clone()));
    }
}

fn spawn_hands(
    actions: Option<Res<ControllerActions>>,
    session: Res<OxrSession>,
    mut commands: Commands,
    mut meshes: ResMut<Assets<Mesh>>,
    mut materials: ResMut<Assets<StandardMaterial>>,
) {
    let Some(actions) = actions else { return };
    let body = meshes.add(Cuboid::new(0.04, 0.03, 0.12));
    let colour = materials.add(StandardMaterial {
        base_color: Color::srgb(0.15, 0.15, 0.18),
        perceptual_roughness: 0.6,
        ..default()
    });
    for hand in [LEFT, RIGHT] {
        match session.create_action_space(&actions.aim[hand], openxr::Path::NULL, Isometry3d::IDENTITY) {
            Ok(space) => {
                commands.spawn((
                    Name::new(if hand == LEFT { "left hand" } else { "right hand" }),
                    space,
                    AimSpace(hand),
                    Mesh3d(body.clone()),
                    MeshMaterial3d(colour.clone()),
                    NotShadowCaster,
                ));
            }
            Err(e) => error!("headset: no pose for the {} hand ({e})", if hand == LEFT { "left" } else { "right" }),
        }
    }
    // The pointing ray: a thin beam along -Z, its length set each frame.
    let beam = meshes.add(Cuboid::new(0.004, 0.004, 1.0));
    let glow = materials.add(StandardMaterial { base_color: Color::srgb(1.0, 0.85, 0.4), unlit: true, ..default() });
    commands.spawn((
        Name::new("pointer"),
        PointerRay,
        Mesh3d(beam),
        MeshMaterial3d(glow),
        NotShadowCaster,
        Visibility::Hidden,
        Transform::default(),
    ));
    let dot = meshes.add(Sphere::new(0.025));
    for i in 0..ARC_DOTS {
        commands.spawn((
            ArcDot(i),
            Mesh3d(dot.clone()),
            MeshMaterial3d(materials.add(StandardMaterial { unlit: true, ..default() })),
            NotShadowCaster,
            Visibility::Hidden,
            Transform::default(),
        ));
    }
}

/// Reads the synced actions into [`HandInputs`]; aim poses are put in the venue through the
/// play space's current placement (its global transform is last frame's).
fn read_hands(
    actions: Option<Res<ControllerActions>>,
    session: Res<OxrSession>,
    spaces: Query<(&AimSpace, &Transform, &bevy_mod_xr::spaces::XrSpaceLocationFlags), Without<XrTrackingRoot>>,
    roots: Query<&Transform, With<XrTrackingRoot>>,
    mut hands: ResMut<HandInputs>,
) {
    let Some(actions) = actions else { return };
    let root = roots.single().copied().unwrap_or_default();
    for hand in [LEFT, RIGHT] {
        let input = &mut hands.0[hand];
        let float = |action: &openxr::Action<f32>| {
            action.state(&session, openxr::Path::NULL).ok().filter(|s| s.is_active).map_or(0.0, |s| s.current_state)
        };
        input.trigger = float(&actions.trigger[hand]);
        input.grip = float(&actions.grip[hand]);
        input.stick = actions.stick[hand]
            .state(&session, openxr::Path::NULL)
            .ok()
            .filter(|s| s.is_active)
            .map_or(Vec2::ZERO, |s| Vec2::new(s.current_state.x, s.current_state.y));
        // An untracked controller has no pose to point or aim from.
        input.aim = spaces
            .iter()
            .find(|(s, _, flags)| s.0 == hand && flags.position_tracked && flags.rotation_tracked)
            .map(|(_, local, _)| root.mul_transform(*local));
    }
}

/// Pointing the right hand at a hotspot lights it; pulling the trigger opens it (or closes the
/// open panel when pointing at nothing). Same command as a desktop click.
fn point_at_hotspots(
    hands: Res<HandInputs>,
    scene: Option<Res<CurrentScene>>,
    aim: Res<TeleportAim>,
    mut hovered: ResMut<HoveredHotspot>,
    mut pulled: Local<bool>,
    mut submit: MessageWriter<SubmitCommand>,
) {
    let (Some(scene), Some(pose)) = (scene, hands.0[RIGHT].aim) else { return };
    if aim.target.is_some() {
        return;
    }
    let hit =
        pick_hotspot(pose.translation, *pose.forward(), &scene.0.hotspots).map(|i| scene.0.hotspots[i].name.clone());
    hovered.set_if_neq(HoveredHotspot(hit.clone()));
    let pressed = hands.0[RIGHT].trigger > 0.7;
    if pressed && !*pulled {
        submit.write(SubmitCommand::local(VenueCommand::ShowHotspot { name: hit }));
    }
    // Hysteresis: a half-pulled trigger does not fire again.
    *pulled = if *pulled { hands.0[RIGHT].trigger > 0.3 } else { pressed };
}

fn draw_pointer(
    hands: Res<HandInputs>,
    aim: Res<TeleportAim>,
    scene: Option<Res<CurrentScene>>,
    mut rays: Query<(&mut Transform, &mut Visibility), With<PointerRay>>,
) {
    let Ok((mut transform, mut visibility)) = rays.single_mut() else { return };
    let Some(pose) = hands.0[RIGHT].aim.filter(|_| aim.target.is_none()) else {
        *visibility = Visibility::Hidden;
        return;
    };
    // Up to the hotspot pointed at, or 5 m.
    let length = scene
        .and_then(|s| {
            pick_hotspot(pose.translation, *pose.forward(), &s.0.hotspots)
                .map(|i| Vec3::from(s.0.hotspots[i].position).distance(pose.translation))
        })
        .unwrap_or(5.0);
    *transform = Transform {
        translation: pose.translation + *pose.forward() * (length / 2.0),
        rotation: pose.rotation,
        scale: Vec3::new(1.0, 1.0, length),
    };
    *visibility = Visibility::Inherited;
}

fn draw_arc(
    aim: Res<TeleportAim>,
    mut dots: Query<(&ArcDot, &mut Transform, &mut Visibility, &MeshMaterial3d<StandardMaterial>)>,
    mut materials: ResMut<Assets<StandardMaterial>>,
) {
    let colour = match aim.target.as_ref().map(|t| t.verdict.is_ok()) {
        Some(true) => Color::srgb(0.3, 0.9, 1.0),
        _ => Color::srgb(1.0, 0.3, 0.25),
    };
    for (dot, mut transform, mut visibility, material) in &mut dots {
        let point = aim.target.as_ref().and_then(|t| {
            let at = dot.0 * (t.arc.len().max(1) - 1) / (ARC_DOTS - 1);
            t.arc.get(at).copied()
        });
        match point {
            Some(p) => {
                transform.translation = p;
                *visibility = Visibility::Inherited;
                if let Some(mut m) = materials.get_mut(&material.0)
                    && m.base_color != colour
                {
                    m.base_color = colour;
                }
            }
            None => *visibility = Visibility::Hidden,
        }
    }
}

/// The vignette is a ring just in front of each eye (each eye sees its own): clear inside
/// radius 1, fading to black at 1.5, black out to 40. Scaled, its clear middle shrinks while
/// its black stays wider than the view.
fn vignette_ring() -> Mesh {
    const SEGMENTS: u32 = 48;
    const RADII: [(f32, f32); 3] = [(1.0, 0.0), (1.5, 1.0), (40.0, 1.0)];
    let mut positions = Vec::new();
    let mut colours = Vec::new();
    for (radius, alpha) in RADII {
        for i in 0..SEGMENTS {
            let angle = i as f32 / SEGMENTS as f32 * std::f32::consts::TAU;
            positions.push([radius * angle.cos(), radius * angle.sin(), 0.0]);
            colours.push([0.0, 0.0, 0.0, alpha]);
        }
    }
    let mut indices = Vec::new();
    for ring in 0..RADII.len() as u32 - 1 {
        for i in 0..SEGMENTS {
            let (a, b) = (ring * SEGMENTS + i, ring * SEGMENTS + (i + 1) % SEGMENTS);
            let (c, d) = (a + SEGMENTS, b + SEGMENTS);
            indices.extend([a, b, d, a, d, c]);
        }
    }
    let normals = vec![[0.0, 0.0, 1.0]; positions.len()];
    Mesh::new(bevy::mesh::PrimitiveTopology::TriangleList, default())
        .with_inserted_attribute(Mesh::ATTRIBUTE_POSITION, positions)
        .with_inserted_attribute(Mesh::ATTRIBUTE_NORMAL, normals)
        .with_inserted_attribute(Mesh::ATTRIBUTE_COLOR, colours)
        .with_inserted_indices(bevy::mesh::Indices::U32(indices))
}

/// Render layer of the left eye's vignette ring (the right eye's is the next one): each eye
/// sees only its own ring, centred on it, and the spectator sees neither.
pub const VIGNETTE_LAYER: usize = 20;

fn spawn_vignette(
    eyes: Query<(Entity, &XrCamera), Added<XrCamera>>,
    mut commands: Commands,
    mut meshes: ResMut<Assets<Mesh>>,
    mut materials: ResMut<Assets<StandardMaterial>>,
) {
    for (entity, eye) in &eyes {
        let layer = VIGNETTE_LAYER + eye.0 as usize;
        commands.entity(entity).insert(bevy::camera::visibility::RenderLayers::from_layers(&[0, layer]));
        let material = materials.add(StandardMaterial {
            base_color: Color::WHITE,
            unlit: true,
            alpha_mode: AlphaMode::Blend,
            double_sided: true,
            cull_mode: None,
            ..default()
        });
        let ring = commands
            .spawn((
                Name::new("comfort vignette"),
                VignetteQuad,
                Mesh3d(meshes.add(vignette_ring())),
                MeshMaterial3d(material),
                NotShadowCaster,
                Visibility::Hidden,
                Transform::from_xyz(0.0, 0.0, -0.12),
                bevy::camera::visibility::RenderLayers::layer(layer),
            ))
            .id();
        commands.entity(entity).add_child(ring);
    }
}

fn draw_vignette(
    vignette: Res<VignetteState>,
    mut quads: Query<(&mut Transform, &mut Visibility), With<VignetteQuad>>,
) {
    for (mut transform, mut visibility) in &mut quads {
        if vignette.strength < 0.02 {
            *visibility = Visibility::Hidden;
            continue;
        }
        // At 0.12 m from the eye a clear radius of 0.2 m is wider than any headset's view;
        // closed, 5 mm leaves a pinhole (and the black still reaches 0.2 m).
        let size = 0.2 * (1.0 - vignette.strength).max(0.025);
        transform.scale = Vec3::new(size, size, 1.0);
        *visibility = Visibility::Inherited;
    }
}
