//! Performers: the humanoid bones motion capture speaks of, the VMC protocol (Virtual Motion
//! Capture: VSeeFace, Warudo, VirtualMotionCapture, mocap suits' bridges) read into pose
//! updates that cannot hurt an avatar, the filter that smooths them, an avatar's bone map, and
//! the compact format performances are recorded in.
//!
//! VMC is OSC over UDP. The messages used (protocol 2.x, <https://protocol.vmc.info/>):
//! - `/VMC/Ext/Root/Pos` `s fff ffff [fff fff]`: the avatar's root: name, position, rotation
//!   (the optional scale and offset of 2.1 are ignored);
//! - `/VMC/Ext/Bone/Pos` `s fff ffff`: a bone's local position and rotation, the bone named as
//!   Unity's `HumanBodyBones` (`Hips`, `LeftUpperArm`, ...);
//! - `/VMC/Ext/Blend/Val` `s f` then `/VMC/Ext/Blend/Apply`: blendshapes, applied together;
//! - `/VMC/Ext/OK`, `/VMC/Ext/T` and the tracker, camera and device messages: read as alive
//!   signals and otherwise ignored.
//!
//! VMC's coordinates are Unity's (left-handed, Y up); glTF's and Bevy's are right-handed with
//! Y up. The X axis is mirrored: a position `(x, y, z)` becomes `(-x, y, z)` and a rotation
//! `(x, y, z, w)` becomes `(x, -y, -z, w)`, as UniVRM converts.

use std::collections::BTreeMap;

use rosc::{OscMessage, OscType};
use thiserror::Error;

/// Unity's `HumanBodyBones`, in its order (the index is the bone's number in recordings).
pub const HUMAN_BONES: [&str; 55] = [
    "Hips",
    "LeftUpperLeg",
    "RightUpperLeg",
    "LeftLowerLeg",
    "RightLowerLeg",
    "LeftFoot",
    "RightFoot",
    "Spine",
    "Chest",
    "Neck",
    "Head",
    "LeftShoulder",
    "RightShoulder",
    "LeftUpperArm",
    "RightUpperArm",
    "LeftLowerArm",
    "RightLowerArm",
    "LeftHand",
    "RightHand",
    "LeftToes",
    "RightToes",
    "LeftEye",
    "RightEye",
    "Jaw",
    "LeftThumbProximal",
    "LeftThumbIntermediate",
    "LeftThumbDistal",
    "LeftIndexProximal",
    "LeftIndexIntermediate",
    "LeftIndexDistal",
    "LeftMiddleProximal",
    "LeftMiddleIntermediate",
    "LeftMiddleDistal",
    "LeftRingProximal",
    "LeftRingIntermediate",
    "LeftRingDistal",
    "LeftLittleProximal",
    "LeftLittleIntermediate",
    "LeftLittleDistal",
    "RightThumbProximal",
    "RightThumbIntermediate",
    "RightThumbDistal",
    "RightIndexProximal",
    "RightIndexIntermediate",
    "RightIndexDistal",
    "RightMiddleProximal",
    "RightMiddleIntermediate",
    "RightMiddleDistal",
    "RightRingProximal",
    "RightRingIntermediate",
    "RightRingDistal",
    "RightLittleProximal",
    "RightLittleIntermediate",
    "RightLittleDistal",
    "UpperChest",
];

/// A humanoid bone: an index into [`HUMAN_BONES`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct HumanBone(u8);

impl HumanBone {
    /// The hips: the bone whose position moves the body.
    pub const HIPS: HumanBone = HumanBone(0);

    /// The bone with Unity's name `name`, in any case (VRM writes `leftUpperArm`).
    pub fn from_name(name: &str) -> Option<Self> {
        HUMAN_BONES.iter().position(|b| b.eq_ignore_ascii_case(name)).map(|i| HumanBone(i as u8))
    }

    /// The bone numbered `index` in Unity's order.
    pub fn from_index(index: u8) -> Option<Self> {
        ((index as usize) < HUMAN_BONES.len()).then_some(HumanBone(index))
    }

    /// Its number in Unity's order.
    pub fn index(self) -> u8 {
        self.0
    }

    /// Unity's name for it.
    pub fn name(self) -> &'static str {
        HUMAN_BONES[self.0 as usize]
    }

    /// Every bone.
    pub fn all() -> impl Iterator<Item = HumanBone> {
        (0..HUMAN_BONES.len() as u8).map(HumanBone)
    }
}

impl std::fmt::Display for HumanBone {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// Farthest a root or hips may be from the avatar's origin, in metres: a stage is smaller, and
/// a larger value is a sender's bug that would throw the avatar out of sight.
pub const MAX_OFFSET_M: f32 = 100.0;
/// Farthest a bone's local position may be from its parent (only the hips' is used).
pub const MAX_BONE_OFFSET_M: f32 = 10.0;
/// Longest blendshape name kept.
pub const MAX_BLEND_NAME: usize = 64;

/// A position and rotation in glTF's coordinates; the rotation is a unit quaternion `(x, y, z, w)`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Pose {
    /// Metres.
    pub position: [f32; 3],
    /// Unit quaternion.
    pub rotation: [f32; 4],
}

/// What one VMC packet says about a performer, checked.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct PoseUpdate {
    /// The avatar's root, if sent.
    pub root: Option<Pose>,
    /// Bones' local rotations (and positions, of which the hips' is used), in arrival order.
    pub bones: Vec<(HumanBone, Pose)>,
    /// Blendshape values set by `/VMC/Ext/Blend/Val` and applied by `/VMC/Ext/Blend/Apply` in
    /// the same packet (values without an apply wait for it in [`VmcReader`]).
    pub blends: Vec<(String, f32)>,
}

impl PoseUpdate {
    /// Whether it holds nothing to apply.
    pub fn is_empty(&self) -> bool {
        self.root.is_none() && self.bones.is_empty() && self.blends.is_empty()
    }
}

/// Why a VMC message was not used. Each is counted and said (at most once a second).
#[derive(Debug, Clone, PartialEq, Error)]
pub enum VmcError {
    /// Not a VMC address.
    #[error("not a VMC address: {0:?}")]
    UnknownAddress(String),
    /// A bone name Unity's humanoid does not have.
    #[error("unknown bone {0:?} (VMC names bones as Unity's HumanBodyBones, e.g. LeftUpperArm)")]
    UnknownBone(String),
    /// Arguments of the wrong number or type.
    #[error("{addr}: expected {expected}, found {found}")]
    Arguments {
        /// The address.
        addr: String,
        /// What it takes.
        expected: &'static str,
        /// The type tags received.
        found: String,
    },
    /// NaN or infinity in a transform.
    #[error("{0}: a position or rotation is not a finite number")]
    NotFinite(String),
    /// A position too far away, or a rotation that is not one.
    #[error("{what}: {why}")]
    OutOfRange {
        /// The bone or root.
        what: String,
        /// Why.
        why: String,
    },
}

/// What a packet held: the usable update and what was refused.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct VmcPacket {
    /// The checked update.
    pub update: PoseUpdate,
    /// Messages refused, with why.
    pub problems: Vec<VmcError>,
    /// Messages that were VMC but carry nothing Parvis uses (trackers, cameras, `OK`, time).
    pub ignored: usize,
}

/// Reads VMC messages, keeping blendshape values until their `Apply` arrives (senders may put
/// them in different packets). One per source.
#[derive(Debug, Default)]
pub struct VmcReader {
    pending_blends: BTreeMap<String, f32>,
}

/// Most blendshape values held while waiting for `Apply`.
const MAX_PENDING_BLENDS: usize = 256;

impl VmcReader {
    /// Reads one packet's messages.
    pub fn read(&mut self, messages: &[OscMessage]) -> VmcPacket {
        let mut packet = VmcPacket::default();
        for message in messages {
            match self.read_one(message, &mut packet.update) {
                Ok(true) => {}
                Ok(false) => packet.ignored += 1,
                Err(e) => packet.problems.push(e),
            }
        }
        packet
    }

    fn read_one(&mut self, message: &OscMessage, update: &mut PoseUpdate) -> Result<bool, VmcError> {
        let addr = message.addr.as_str();
        match addr {
            "/VMC/Ext/Root/Pos" | "/VMC/Ext/Bone/Pos" => {
                let (name, values) = name_and_floats(message, 7, "a name and 7 floats (position, rotation)")?;
                let what = if addr == "/VMC/Ext/Root/Pos" { "root".to_owned() } else { name.to_owned() };
                let bone = if addr == "/VMC/Ext/Bone/Pos" {
                    Some(HumanBone::from_name(name).ok_or_else(|| VmcError::UnknownBone(clip(name)))?)
                } else {
                    None
                };
                let limit = if bone.is_some_and(|b| b != HumanBone::HIPS) { MAX_BONE_OFFSET_M } else { MAX_OFFSET_M };
                let pose = checked_pose(&what, &values, limit)?;
                match bone {
                    Some(bone) => update.bones.push((bone, pose)),
                    None => update.root = Some(pose),
                }
                Ok(true)
            }
            "/VMC/Ext/Blend/Val" => {
                let (name, values) = name_and_floats(message, 1, "a name and a float")?;
                if !values[0].is_finite() {
                    return Err(VmcError::NotFinite(format!("blendshape {:?}", clip(name))));
                }
                if self.pending_blends.len() < MAX_PENDING_BLENDS || self.pending_blends.contains_key(name) {
                    self.pending_blends.insert(clip(name), values[0].clamp(0.0, 1.0));
                }
                Ok(true)
            }
            "/VMC/Ext/Blend/Apply" => {
                update.blends.extend(std::mem::take(&mut self.pending_blends));
                Ok(true)
            }
            _ if addr.starts_with("/VMC/") => Ok(false),
            _ => Err(VmcError::UnknownAddress(clip(addr))),
        }
    }
}

/// A name cut to a length fit for a log line and a map key.
fn clip(name: &str) -> String {
    let mut end = name.len().min(MAX_BLEND_NAME);
    while !name.is_char_boundary(end) {
        end -= 1;
    }
    name[..end].to_owned()
}

fn name_and_floats<'a>(
    message: &'a OscMessage,
    count: usize,
    expected: &'static str,
) -> Result<(&'a str, Vec<f32>), VmcError> {
    let wrong = || VmcError::Arguments {
        addr: message.addr.clone(),
        expected,
        found: crate::osc_tags::type_tags(&message.args),
    };
    let Some(OscType::String(name)) = message.args.first() else { return Err(wrong()) };
    // VMC 2.1 adds scale and offset after the root's rotation: more than `count` is fine.
    let values: Vec<f32> = message.args[1..]
        .iter()
        .take(count)
        .map(|a| match a {
            OscType::Float(f) => Some(*f),
            OscType::Double(d) => Some(*d as f32),
            _ => None,
        })
        .collect::<Option<_>>()
        .ok_or_else(wrong)?;
    if values.len() < count {
        return Err(wrong());
    }
    Ok((name, values))
}

/// Unity's position and rotation to glTF's, refusing what would hurt the avatar.
fn checked_pose(what: &str, v: &[f32], limit: f32) -> Result<Pose, VmcError> {
    if v.iter().any(|x| !x.is_finite()) {
        return Err(VmcError::NotFinite(what.to_owned()));
    }
    let distance = (v[0] * v[0] + v[1] * v[1] + v[2] * v[2]).sqrt();
    if distance > limit {
        return Err(VmcError::OutOfRange {
            what: what.to_owned(),
            why: format!("position {distance:.1} m from its origin, more than {limit} m"),
        });
    }
    let norm = (v[3] * v[3] + v[4] * v[4] + v[5] * v[5] + v[6] * v[6]).sqrt();
    // A sender's rounding leaves a unit quaternion near 1; far from it, it is not a rotation.
    if !(0.5..=2.0).contains(&norm) {
        return Err(VmcError::OutOfRange {
            what: what.to_owned(),
            why: format!("rotation of length {norm:.3}, not a unit quaternion"),
        });
    }
    Ok(Pose { position: [-v[0], v[1], v[2]], rotation: [v[3] / norm, -v[4] / norm, -v[5] / norm, v[6] / norm] })
}

/// The one-euro filter's settings (Casiez, Roussel and Vogel, CHI 2012): a low-pass filter
/// whose cut-off rises with speed, so a still pose does not jitter and a fast move does not lag.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct OneEuro {
    /// Cut-off at rest, in hertz: lower is smoother and slower.
    pub min_cutoff: f32,
    /// How much the cut-off rises per unit of speed (radians per second for rotations).
    pub beta: f32,
}

impl Default for OneEuro {
    fn default() -> Self {
        Self { min_cutoff: 4.0, beta: 0.5 }
    }
}

impl OneEuro {
    /// The share of the way from the filtered value to the new one to go, after `dt` seconds
    /// at `speed`.
    pub fn alpha(&self, dt: f32, speed: f32) -> f32 {
        if dt <= 0.0 {
            return 0.0;
        }
        let cutoff = self.min_cutoff + self.beta * speed.abs();
        let tau = 1.0 / (2.0 * std::f32::consts::PI * cutoff);
        1.0 / (1.0 + tau / dt)
    }
}

/// The pose an avatar eases to when its capture is lost: arms down at its sides, the rest as
/// in its rest pose (a T-pose, for VRM and the built-in performer), as the rotation of `bone`
/// relative to its rest.
pub fn idle_rotation(bone: HumanBone) -> [f32; 4] {
    // The avatar faces +Z, so its left arm lies along +X: turning it about Z by -70° lowers it.
    let about_z = |degrees: f32| {
        let half = degrees.to_radians() / 2.0;
        [0.0, 0.0, half.sin(), half.cos()]
    };
    match bone.name() {
        "LeftUpperArm" => about_z(-70.0),
        "RightUpperArm" => about_z(70.0),
        _ => [0.0, 0.0, 0.0, 1.0],
    }
}

/// Where an avatar's humanoid bones are: each bone's glTF node name.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct AvatarRig {
    /// Node names by bone.
    pub bones: BTreeMap<HumanBone, String>,
    /// Where the map came from, for messages: `VRM 0.x`, `VRM 1.0` or `node names`.
    pub source: &'static str,
}

/// Finds an avatar's bones: the scene file's `bones` map first, then a VRM humanoid map (0.x
/// `VRM` or 1.0 `VRMC_vrm` extension) in the glTF, then nodes named as Unity's bones.
/// `names` are the glTF's node names by index; `json` its JSON document.
pub fn avatar_rig(
    json: &serde_json::Value,
    names: &[Option<String>],
    overrides: &BTreeMap<String, String>,
) -> Result<AvatarRig, String> {
    let mut rig = AvatarRig { bones: BTreeMap::new(), source: "node names" };
    let node_name =
        |index: &serde_json::Value| index.as_u64().and_then(|i| names.get(i as usize)).and_then(|n| n.clone());
    let extensions = &json["extensions"];
    if let Some(bones) = extensions["VRMC_vrm"]["humanoid"]["humanBones"].as_object() {
        rig.source = "VRM 1.0";
        for (name, bone) in bones {
            // VRM 1.0 renamed the thumb: metacarpal, proximal, distal are Unity's proximal,
            // intermediate, distal.
            let unity = name.replace("ThumbProximal", "ThumbIntermediate").replace("ThumbMetacarpal", "ThumbProximal");
            if let (Some(bone), Some(node)) = (HumanBone::from_name(&unity), node_name(&bone["node"])) {
                rig.bones.insert(bone, node);
            }
        }
    } else if let Some(bones) = extensions["VRM"]["humanoid"]["humanBones"].as_array() {
        rig.source = "VRM 0.x";
        for bone in bones {
            if let (Some(b), Some(node)) =
                (bone["bone"].as_str().and_then(HumanBone::from_name), node_name(&bone["node"]))
            {
                rig.bones.insert(b, node);
            }
        }
    } else {
        for name in names.iter().flatten() {
            if let Some(bone) = HumanBone::from_name(name) {
                rig.bones.entry(bone).or_insert_with(|| name.clone());
            }
        }
    }
    for (bone, node) in overrides {
        let bone = HumanBone::from_name(bone).ok_or_else(|| {
            format!("{bone:?} is not a humanoid bone (Unity's HumanBodyBones names, e.g. LeftUpperArm)")
        })?;
        if !names.iter().flatten().any(|n| n == node) {
            return Err(format!("bone {bone} maps to node {node:?}, which the avatar does not have"));
        }
        rig.bones.insert(bone, node.clone());
    }
    if !rig.bones.contains_key(&HumanBone::HIPS) {
        return Err(format!(
            "no Hips bone found (by {}): name the avatar's hips node in `bones`, e.g. bones: {{\"Hips\": \"pelvis\"}}",
            rig.source
        ));
    }
    Ok(rig)
}

/// Reads an avatar file's bones (see [`avatar_rig`]): `bytes` is the glTF JSON or GLB.
pub fn read_avatar_rig(bytes: &[u8], overrides: &BTreeMap<String, String>) -> Result<AvatarRig, String> {
    let gltf = crate::scene::models::parse_gltf(bytes).map_err(|p| p.message)?;
    let names: Vec<Option<String>> = gltf.document.nodes().map(|n| n.name().map(str::to_owned)).collect();
    let json: std::borrow::Cow<[u8]> = if bytes.starts_with(b"glTF") {
        gltf::Glb::from_slice(bytes).map_err(|e| e.to_string())?.json
    } else {
        bytes.into()
    };
    let json: serde_json::Value = serde_json::from_slice(&json).map_err(|e| e.to_string())?;
    avatar_rig(&json, &names, overrides)
}

/// Recordings of performances: a header, then one record per pose update, timed by the show's
/// clock (or the venue's, when no show plays).
///
/// ```text
/// file    = "PARVIS-POSES 1\n" record*
/// record  = len:u32 time:f64 performer:u8 name-len:u8 name flags:u8
///           [root: 7×f32]                      if flags & 1
///           bones:u8 (bone:u8 rot:4×i16 [pos:3×f32 if bone is Hips])*
///           blends:u8 (name-len:u8 name value:f32)*
/// ```
/// Little-endian throughout; `len` counts the bytes after itself; rotations are unit
/// quaternions scaled by 32767 (an error under 0.01°); the performer's name is kept so a
/// recording plays onto the performer of that name in any scene. About 10 bytes a bone: a
/// 55-bone body at 60 Hz is 33 KB/s.
pub mod recording {
    use super::{HumanBone, Pose, PoseUpdate};

    /// The first bytes of a recording.
    pub const MAGIC: &[u8] = b"PARVIS-POSES 1\n";
    /// Largest record read: a hostile file cannot make the reader allocate more.
    pub const MAX_RECORD: usize = 64 * 1024;

    /// One recorded update.
    #[derive(Debug, Clone, PartialEq)]
    pub struct PoseRecord {
        /// Seconds on the show's clock.
        pub time: f64,
        /// The performer's name.
        pub performer: String,
        /// What arrived, checked.
        pub update: PoseUpdate,
    }

    /// Appends `record` to `out` (the file's header excluded).
    pub fn write(out: &mut Vec<u8>, record: &PoseRecord) {
        let start = out.len();
        out.extend_from_slice(&0u32.to_le_bytes());
        out.extend_from_slice(&record.time.to_le_bytes());
        short_text(out, &record.performer);
        out.push(u8::from(record.update.root.is_some()));
        if let Some(root) = &record.update.root {
            floats(out, &root.position);
            floats(out, &root.rotation);
        }
        let bones = &record.update.bones[..record.update.bones.len().min(255)];
        out.push(bones.len() as u8);
        for (bone, pose) in bones {
            out.push(bone.index());
            for q in pose.rotation {
                out.extend_from_slice(&((q.clamp(-1.0, 1.0) * 32767.0).round() as i16).to_le_bytes());
            }
            if *bone == HumanBone::HIPS {
                floats(out, &pose.position);
            }
        }
        let blends = &record.update.blends[..record.update.blends.len().min(255)];
        out.push(blends.len() as u8);
        for (name, value) in blends {
            short_text(out, name);
            out.extend_from_slice(&value.to_le_bytes());
        }
        let len = (out.len() - start - 4) as u32;
        out[start..start + 4].copy_from_slice(&len.to_le_bytes());
    }

    fn short_text(out: &mut Vec<u8>, text: &str) {
        let mut end = text.len().min(255);
        while !text.is_char_boundary(end) {
            end -= 1;
        }
        out.push(end as u8);
        out.extend_from_slice(&text.as_bytes()[..end]);
    }

    fn floats(out: &mut Vec<u8>, values: &[f32]) {
        for v in values {
            out.extend_from_slice(&v.to_le_bytes());
        }
    }

    /// Reads a whole recording. An error names the byte offset and what was wrong there.
    pub fn read(bytes: &[u8]) -> Result<Vec<PoseRecord>, String> {
        let Some(mut rest) = bytes.strip_prefix(MAGIC) else {
            return Err("not a Parvis performance recording (it does not start with \"PARVIS-POSES 1\")".into());
        };
        let mut records = Vec::new();
        while !rest.is_empty() {
            let offset = bytes.len() - rest.len();
            let at = |why: &str| format!("byte {offset}: {why}");
            if rest.len() < 4 {
                return Err(at("a truncated record length (the recording was cut short?)"));
            }
            let len = u32::from_le_bytes(rest[..4].try_into().expect("4 bytes")) as usize;
            if len > MAX_RECORD {
                return Err(at(&format!("a record of {len} bytes, more than {MAX_RECORD}")));
            }
            let Some(body) = rest.get(4..4 + len) else {
                return Err(at("a truncated record (the recording was cut short?)"));
            };
            records.push(read_record(body).map_err(|why| at(&why))?);
            rest = &rest[4 + len..];
        }
        Ok(records)
    }

    struct Reader<'a>(&'a [u8]);

    impl<'a> Reader<'a> {
        fn take(&mut self, n: usize) -> Result<&'a [u8], String> {
            if self.0.len() < n {
                return Err("a record shorter than its contents".into());
            }
            let (head, tail) = self.0.split_at(n);
            self.0 = tail;
            Ok(head)
        }
        fn u8(&mut self) -> Result<u8, String> {
            Ok(self.take(1)?[0])
        }
        fn f32(&mut self) -> Result<f32, String> {
            let v = f32::from_le_bytes(self.take(4)?.try_into().expect("4 bytes"));
            if v.is_finite() { Ok(v) } else { Err("a number that is not finite".into()) }
        }
        fn floats<const N: usize>(&mut self) -> Result<[f32; N], String> {
            let mut out = [0.0; N];
            for v in &mut out {
                *v = self.f32()?;
            }
            Ok(out)
        }
        fn text(&mut self) -> Result<String, String> {
            let n = self.u8()? as usize;
            String::from_utf8(self.take(n)?.to_vec()).map_err(|_| "a name that is not UTF-8".into())
        }
    }

    fn read_record(body: &[u8]) -> Result<PoseRecord, String> {
        let mut r = Reader(body);
        let time = f64::from_le_bytes(r.take(8)?.try_into().expect("8 bytes"));
        if !time.is_finite() {
            return Err("a time that is not finite".into());
        }
        let performer = r.text()?;
        let mut update = PoseUpdate::default();
        // The same bounds as live capture: a recording can come from anywhere.
        let near = |p: [f32; 3], what: &str| {
            let d = p.iter().map(|v| v * v).sum::<f32>().sqrt();
            if d <= super::MAX_OFFSET_M {
                Ok(p)
            } else {
                Err(format!("{what} {d:.0} m away, more than {} m", super::MAX_OFFSET_M))
            }
        };
        if r.u8()? & 1 == 1 {
            let position = near(r.floats()?, "a root")?;
            let rotation: [f32; 4] = r.floats()?;
            let norm = rotation.iter().map(|q| q * q).sum::<f32>().sqrt();
            if !(0.5..=2.0).contains(&norm) {
                return Err("a root rotation that is not one".into());
            }
            update.root = Some(Pose { position, rotation: rotation.map(|q| q / norm) });
        }
        for _ in 0..r.u8()? {
            let index = r.u8()?;
            let bone = HumanBone::from_index(index).ok_or_else(|| format!("bone number {index}, which is no bone"))?;
            let mut rotation = [0.0f32; 4];
            for q in &mut rotation {
                *q = i16::from_le_bytes(r.take(2)?.try_into().expect("2 bytes")) as f32 / 32767.0;
            }
            let norm = rotation.iter().map(|q| q * q).sum::<f32>().sqrt();
            if norm < 0.5 {
                return Err(format!("bone {bone}: a rotation that is not one"));
            }
            let rotation = rotation.map(|q| q / norm);
            let position = if bone == HumanBone::HIPS { near(r.floats()?, "the hips")? } else { [0.0; 3] };
            update.bones.push((bone, Pose { position, rotation }));
        }
        for _ in 0..r.u8()? {
            let name = r.text()?;
            update.blends.push((name, r.f32()?.clamp(0.0, 1.0)));
        }
        if !r.0.is_empty() {
            return Err(format!("{} bytes left over after the record", r.0.len()));
        }
        Ok(PoseRecord { time, performer, update })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bone_message(name: &str, values: [f32; 7]) -> OscMessage {
        let mut args = vec![OscType::String(name.into())];
        args.extend(values.iter().map(|v| OscType::Float(*v)));
        OscMessage { addr: "/VMC/Ext/Bone/Pos".into(), args }
    }

    #[test]
    fn bones_are_named_as_unity_in_any_case_and_numbered_in_its_order() {
        assert_eq!(HumanBone::from_name("leftUpperArm").unwrap().name(), "LeftUpperArm");
        assert_eq!(HumanBone::from_name("UpperChest").unwrap().index(), 54);
        assert_eq!(HumanBone::from_name("Tail"), None);
        assert_eq!(HumanBone::from_index(55), None);
    }

    #[test]
    fn unity_coordinates_become_gltf_coordinates_and_rotations_are_normalised() {
        let half = std::f32::consts::FRAC_PI_4; // 90° about Y
        let packet = VmcReader::default()
            .read(&[bone_message("Hips", [1.0, 2.0, 3.0, 0.0, half.sin() * 2.0, 0.0, half.cos() * 2.0])]);
        assert!(packet.problems.is_empty(), "{:?}", packet.problems);
        let (bone, pose) = &packet.update.bones[0];
        assert_eq!(*bone, HumanBone::HIPS);
        assert_eq!(pose.position, [-1.0, 2.0, 3.0]);
        assert!((pose.rotation[1] + half.sin()).abs() < 1e-6 && (pose.rotation[3] - half.cos()).abs() < 1e-6);
    }

    #[test]
    fn hostile_values_are_refused_by_name_and_the_rest_of_the_packet_is_kept() {
        let messages = [
            bone_message("LeftUpperArm", [0.0, 0.0, 0.0, f32::NAN, 0.0, 0.0, 1.0]),
            bone_message("Hips", [1e9, 0.0, 0.0, 0.0, 0.0, 0.0, 1.0]),
            bone_message("Head", [0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0]),
            bone_message("Wing", [0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 1.0]),
            OscMessage {
                addr: "/VMC/Ext/Bone/Pos".into(),
                args: vec![OscType::String("Neck".into()), OscType::Int(3)],
            },
            OscMessage { addr: "/parvis/param/fog".into(), args: vec![] },
            OscMessage { addr: "/VMC/Ext/T".into(), args: vec![OscType::Float(1.0)] },
            bone_message("Spine", [0.0, 0.1, 0.0, 0.0, 0.0, 0.0, 1.0]),
        ];
        let packet = VmcReader::default().read(&messages);
        assert_eq!(packet.update.bones.len(), 1);
        assert_eq!(packet.update.bones[0].0.name(), "Spine");
        assert_eq!(packet.ignored, 1);
        let said: Vec<String> = packet.problems.iter().map(|p| p.to_string()).collect();
        assert_eq!(said.len(), 6, "{said:?}");
        assert!(said[0].contains("LeftUpperArm") && said[0].contains("not a finite"), "{}", said[0]);
        assert!(said[1].contains("more than 100 m"), "{}", said[1]);
        assert!(said[2].contains("not a unit quaternion"), "{}", said[2]);
        assert!(said[3].contains("unknown bone \"Wing\""), "{}", said[3]);
        assert!(said[4].contains("expected a name and 7 floats") && said[4].contains("si"), "{}", said[4]);
        assert!(said[5].contains("not a VMC address"), "{}", said[5]);
    }

    #[test]
    fn blendshapes_wait_for_their_apply_even_across_packets() {
        let mut reader = VmcReader::default();
        let val = |name: &str, v: f32| OscMessage {
            addr: "/VMC/Ext/Blend/Val".into(),
            args: vec![OscType::String(name.into()), OscType::Float(v)],
        };
        let first = reader.read(&[val("A", 0.5), val("Joy", 7.0)]);
        assert!(first.update.blends.is_empty());
        let second = reader.read(&[OscMessage { addr: "/VMC/Ext/Blend/Apply".into(), args: vec![] }]);
        assert_eq!(second.update.blends, vec![("A".to_owned(), 0.5), ("Joy".to_owned(), 1.0)]);
    }

    #[test]
    fn the_one_euro_filter_follows_faster_when_moving_fast() {
        let filter = OneEuro::default();
        let still = filter.alpha(1.0 / 90.0, 0.0);
        let fast = filter.alpha(1.0 / 90.0, 10.0);
        assert!(still > 0.0 && still < fast && fast < 1.0, "{still} {fast}");
        assert_eq!(filter.alpha(0.0, 1.0), 0.0);
    }

    #[test]
    fn the_rig_comes_from_vrm_or_node_names_and_the_scene_can_override_it() {
        let names: Vec<Option<String>> =
            ["root", "pelvis", "arm_l", "Hips"].iter().map(|s| Some(s.to_string())).collect();
        let vrm0 = serde_json::json!({"extensions": {"VRM": {"humanoid": {"humanBones": [
            {"bone": "hips", "node": 1}, {"bone": "leftUpperArm", "node": 2}, {"bone": "nonsense", "node": 0}
        ]}}}});
        let rig = avatar_rig(&vrm0, &names, &BTreeMap::new()).unwrap();
        assert_eq!(rig.source, "VRM 0.x");
        assert_eq!(rig.bones[&HumanBone::HIPS], "pelvis");
        assert_eq!(rig.bones[&HumanBone::from_name("LeftUpperArm").unwrap()], "arm_l");
        let vrm1 = serde_json::json!({"extensions": {"VRMC_vrm": {"humanoid": {"humanBones": {
            "hips": {"node": 1}, "leftThumbMetacarpal": {"node": 2}
        }}}}});
        let rig = avatar_rig(&vrm1, &names, &BTreeMap::new()).unwrap();
        assert_eq!(rig.bones[&HumanBone::from_name("LeftThumbProximal").unwrap()], "arm_l");
        let plain = avatar_rig(&serde_json::json!({}), &names, &BTreeMap::new()).unwrap();
        assert_eq!(plain.bones[&HumanBone::HIPS], "Hips");
        let over = BTreeMap::from([("Hips".to_owned(), "pelvis".to_owned())]);
        assert_eq!(avatar_rig(&serde_json::json!({}), &names, &over).unwrap().bones[&HumanBone::HIPS], "pelvis");
        let missing = BTreeMap::from([("Hips".to_owned(), "nowhere".to_owned())]);
        assert!(avatar_rig(&serde_json::json!({}), &names, &missing).unwrap_err().contains("\"nowhere\""));
        let none: Vec<Option<String>> = vec![Some("torso".into())];
        assert!(avatar_rig(&serde_json::json!({}), &none, &BTreeMap::new()).unwrap_err().contains("no Hips bone"));
    }

    #[test]
    fn recordings_read_back_what_was_written_and_name_where_a_file_is_broken() {
        let record = recording::PoseRecord {
            time: 12.5,
            performer: "singer".into(),
            update: PoseUpdate {
                root: Some(Pose { position: [0.0, 0.1, 0.2], rotation: [0.0, 0.0, 0.0, 1.0] }),
                bones: vec![
                    (HumanBone::HIPS, Pose { position: [0.0, 1.0, 0.0], rotation: [0.0, 0.6, 0.0, 0.8] }),
                    (
                        HumanBone::from_name("Head").unwrap(),
                        Pose { position: [0.0; 3], rotation: [0.6, 0.0, 0.0, 0.8] },
                    ),
                ],
                blends: vec![("A".into(), 0.25)],
            },
        };
        let mut file = recording::MAGIC.to_vec();
        recording::write(&mut file, &record);
        recording::write(&mut file, &record);
        let read = recording::read(&file).unwrap();
        assert_eq!(read.len(), 2);
        assert_eq!(read[0].performer, "singer");
        assert_eq!(read[0].update.bones[0].1.position, [0.0, 1.0, 0.0]);
        assert!((read[0].update.bones[1].1.rotation[0] - 0.6).abs() < 1e-4);
        assert_eq!(read[0].update.blends, record.update.blends);
        let cut = recording::read(&file[..file.len() - 3]).unwrap_err();
        assert!(cut.contains("truncated") && cut.starts_with("byte "), "{cut}");
        assert!(recording::read(b"hello").unwrap_err().contains("not a Parvis performance recording"));
    }
}
