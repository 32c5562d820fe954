//! OSCQuery (the Vidvox proposal that Chataigne, Vezér and TouchDesigner read): the venue's
//! OSC address space described as JSON — each stage parameter with its OSC type, range,
//! current value and label, the transport's buttons and every cue of the show — so a
//! controller discovers the venue without a hand-made mapping. Implemented: the namespace
//! tree (`FULL_PATH`, `CONTENTS`, `TYPE`, `VALUE`, `RANGE`, `ACCESS`, `DESCRIPTION`), single
//! attributes (`?VALUE`), and `HOST_INFO`. Not implemented: `LISTEN`/`IGNORE` value streaming
//! over WebSocket, `PATH_CHANGED`, tags, units, critical flags and clip modes.

use serde_json::{Map, Value, json};

use crate::params::{ParamValue, StageParams};
use crate::scene::format::{ParamKind, SceneFile};

/// `ACCESS`: read and write (a parameter).
const READ_WRITE: u8 = 3;
/// `ACCESS`: write only (a button).
const WRITE_ONLY: u8 = 2;

fn value_json(value: &ParamValue) -> Value {
    match value {
        ParamValue::Float(v) => json!([v]),
        ParamValue::Colour(c) => {
            let [r, g, b, a] = c.srgba.map(|v| (v.clamp(0.0, 1.0) * 255.0).round() as u8);
            json!([format!("#{r:02x}{g:02x}{b:02x}{a:02x}")])
        }
        ParamValue::Bool(b) => json!([b]),
        ParamValue::Enum(s) => json!([s]),
    }
}

fn leaf(path: &str, kind: &str, access: u8, description: &str) -> Map<String, Value> {
    let mut node = Map::new();
    node.insert("FULL_PATH".into(), json!(path));
    node.insert("TYPE".into(), json!(kind));
    node.insert("ACCESS".into(), json!(access));
    if !description.is_empty() {
        node.insert("DESCRIPTION".into(), json!(description));
    }
    node
}

fn container(path: &str, contents: Map<String, Value>) -> Value {
    json!({ "FULL_PATH": path, "CONTENTS": contents })
}

/// The whole namespace: parameters with their current values, the transport of `show` (the
/// show on the transport, else the venue's first) and its cues.
pub fn namespace(scene: &SceneFile, params: &StageParams, show: Option<&str>, show_length: Option<f64>) -> Value {
    let mut param_nodes = Map::new();
    for (def, value) in params.iter() {
        let path = format!("/parvis/param/{}", def.name);
        let (kind, range) = match &def.kind {
            ParamKind::Float { min, max, .. } => ("f", json!([{ "MIN": min, "MAX": max }])),
            ParamKind::Colour { .. } => ("r", Value::Null),
            ParamKind::Bool { .. } => (if value == &ParamValue::Bool(false) { "F" } else { "T" }, Value::Null),
            ParamKind::Enum { options, .. } => ("s", json!([{ "VALS": options }])),
        };
        let mut node = leaf(&path, kind, READ_WRITE, &def.label);
        node.insert("VALUE".into(), value_json(value));
        if !range.is_null() {
            node.insert("RANGE".into(), range);
        }
        param_nodes.insert(def.name.clone(), Value::Object(node));
    }
    let mut parvis = Map::new();
    parvis.insert("param".into(), container("/parvis/param", param_nodes));
    let show = show.and_then(|name| scene.shows.iter().find(|s| s.name == name)).or(scene.shows.first());
    if let Some(show) = show {
        let mut transport = Map::new();
        for (name, what) in [
            ("play", "play or carry on"),
            ("pause", "hold the clock and the music"),
            ("stop", "stop and go back to the start"),
            ("go", "fire the cue in standby"),
        ] {
            let path = format!("/parvis/show/{name}");
            transport
                .insert(name.into(), Value::Object(leaf(&path, "I", WRITE_ONLY, &format!("{}: {what}", show.name))));
        }
        let mut seek = leaf("/parvis/show/seek", "f", WRITE_ONLY, &format!("{}: move to a time, seconds", show.name));
        seek.insert("RANGE".into(), json!([{ "MIN": 0.0, "MAX": show_length.unwrap_or(86_400.0) }]));
        transport.insert("seek".into(), Value::Object(seek));
        parvis.insert("show".into(), container("/parvis/show", transport));
        let mut cues = Map::new();
        for cue in show.songs.iter().flat_map(|s| &s.cues) {
            let path = format!("/parvis/cue/{}", cue.id);
            let label = if cue.label.is_empty() { format!("jump to cue {}", cue.id) } else { cue.label.clone() };
            cues.insert(cue.id.clone(), Value::Object(leaf(&path, "I", WRITE_ONLY, &label)));
        }
        parvis.insert("cue".into(), container("/parvis/cue", cues));
    }
    let viewpoints: Vec<&str> = scene.viewpoints.iter().map(|v| v.name.as_str()).collect();
    if !viewpoints.is_empty() {
        let mut program = Map::new();
        let mut cut = leaf("/parvis/program/cut", "s", WRITE_ONLY, "cut the program output to a viewpoint");
        cut.insert("RANGE".into(), json!([{ "VALS": viewpoints }]));
        program.insert("cut".into(), Value::Object(cut));
        let mut moves =
            leaf("/parvis/program/move", "sf", WRITE_ONLY, "move the program camera to a viewpoint, over seconds");
        moves.insert("RANGE".into(), json!([{ "VALS": viewpoints }, { "MIN": 0.0, "MAX": 600.0 }]));
        program.insert("move".into(), Value::Object(moves));
        let names: Vec<&str> = crate::scene::format::Overlay::ALL.iter().map(|o| o.name()).collect();
        let mut overlay =
            leaf("/parvis/program/overlay", "si", WRITE_ONLY, "show (1) or hide (0) an overlay of the program output");
        overlay.insert("RANGE".into(), json!([{ "VALS": names }, { "MIN": 0, "MAX": 1 }]));
        program.insert("overlay".into(), Value::Object(overlay));
        parvis.insert("program".into(), container("/parvis/program", program));
    }
    let mut root = Map::new();
    root.insert("parvis".into(), container("/parvis", parvis));
    let mut top = container("/", root);
    top["DESCRIPTION"] = json!(scene.venue.title);
    top
}

/// The node at `path` in `tree` (`/`, `/parvis/param/fog`), if any.
pub fn node<'a>(tree: &'a Value, path: &str) -> Option<&'a Value> {
    let mut at = tree;
    for part in path.split('/').filter(|p| !p.is_empty()) {
        at = at.get("CONTENTS")?.get(part)?;
    }
    Some(at)
}

/// The answer to `GET path?query`: the node, one of its attributes (`?VALUE`), or the host's
/// description (`?HOST_INFO`); `None` for a path or attribute that is not there (404).
pub fn answer(tree: &Value, path: &str, query: Option<&str>, host_info: &Value) -> Option<Value> {
    match query {
        Some("HOST_INFO") => Some(host_info.clone()),
        None | Some("") => node(tree, path).cloned(),
        Some(attribute) => {
            let value = node(tree, path)?.get(attribute)?;
            Some(json!({ attribute: value }))
        }
    }
}

/// `HOST_INFO`: the venue's name, where its OSC listens, and the extensions answered.
pub fn host_info(name: &str, osc_port: Option<u16>) -> Value {
    let mut info = json!({
        "NAME": name,
        "OSC_TRANSPORT": "UDP",
        "EXTENSIONS": {
            "ACCESS": true, "VALUE": true, "RANGE": true, "DESCRIPTION": true,
            "TAGS": false, "EXTENDED_TYPE": false, "UNIT": false, "CRITICAL": false,
            "CLIPMODE": false, "LISTEN": false, "PATH_CHANGED": false, "PATH_RENAMED": false,
            "PATH_ADDED": false, "PATH_REMOVED": false
        }
    });
    if let Some(port) = osc_port {
        info["OSC_PORT"] = json!(port);
    }
    info
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scene::DEFAULT_SCENE;

    #[test]
    fn the_built_in_venue_describes_itself() {
        let scene: SceneFile = ron::from_str(DEFAULT_SCENE).unwrap();
        let params = StageParams::from_scene(&scene);
        let tree = namespace(&scene, &params, None, Some(70.0));
        let fog = node(&tree, "/parvis/param/fog").unwrap();
        assert_eq!(fog["TYPE"], "f");
        assert_eq!(fog["RANGE"][0]["MAX"].as_f64().unwrap() as f32, 0.2);
        assert_eq!(fog["VALUE"], json!([0.0]));
        assert_eq!(fog["ACCESS"], 3);
        assert_eq!(
            node(&tree, "/parvis/param/sky").unwrap()["RANGE"][0]["VALS"],
            json!(["day", "overcast", "dusk", "night"])
        );
        assert_eq!(node(&tree, "/parvis/param/stage_light").unwrap()["VALUE"], json!(["#ffd9a0ff"]));
        assert_eq!(node(&tree, "/parvis/param/banner").unwrap()["TYPE"], "T");
        assert_eq!(node(&tree, "/parvis/cue/4").unwrap()["DESCRIPTION"], "GO: the finale poll");
        assert_eq!(node(&tree, "/parvis/show/seek").unwrap()["RANGE"][0]["MAX"], 70.0);
        // Every parameter is there, and nothing else under /parvis/param.
        assert_eq!(node(&tree, "/parvis/param").unwrap()["CONTENTS"].as_object().unwrap().len(), scene.params.len());
        let info = host_info("Cloître", Some(9000));
        assert_eq!(answer(&tree, "/parvis/param/fog", Some("VALUE"), &info), Some(json!({"VALUE": [0.0]})));
        assert_eq!(answer(&tree, "/", Some("HOST_INFO"), &info).unwrap()["OSC_PORT"], 9000);
        assert_eq!(answer(&tree, "/parvis/nothing", None, &info), None);
        assert_eq!(answer(&tree, "/parvis/param/fog", Some("UNIT"), &info), None);
    }
}
