//! Reading and checking scene files: every problem is reported with the file, a line and column
//! where one can be found, the field path, what was expected and what was found.

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::path::Path;

use thiserror::Error;

use super::format::*;
use super::models::{ModelProblem, check_model};
use crate::assets_root::{AssetPathError, AssetsRoot};

/// One thing wrong with a scene file.
#[derive(Debug, Clone, PartialEq)]
pub struct SceneProblem {
    /// 1-based line and column, where known.
    pub line_col: Option<(usize, usize)>,
    /// Field path such as `primitives[3].shape`, where known.
    pub path: String,
    /// What was expected and what was found.
    pub message: String,
}

impl fmt::Display for SceneProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some((line, col)) = self.line_col {
            write!(f, "{line}:{col}: ")?;
        }
        if !self.path.is_empty() {
            write!(f, "{}: ", self.path)?;
        }
        f.write_str(&self.message)
    }
}

/// Why a scene could not be used.
#[derive(Debug, Error)]
pub enum SceneError {
    /// The file could not be read.
    #[error("{file}: cannot read the scene file: {source}")]
    Io {
        /// File name as given.
        file: String,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// The file was read but has problems.
    #[error("{}", render_problems(file, problems))]
    Invalid {
        /// File name as given.
        file: String,
        /// Every problem found, in file order where possible.
        problems: Vec<SceneProblem>,
    },
}

impl SceneError {
    /// The problems found, empty for I/O errors.
    pub fn problems(&self) -> &[SceneProblem] {
        match self {
            SceneError::Io { .. } => &[],
            SceneError::Invalid { problems, .. } => problems,
        }
    }
}

fn render_problems(file: &str, problems: &[SceneProblem]) -> String {
    let lines: Vec<String> = problems.iter().map(|p| format!("{file}:{p}")).collect();
    lines.join("\n")
}

/// Largest scene file accepted. Scenes describe a venue; bulk data (scans, point clouds)
/// belongs in assets, so a larger file is a mistake or an attack, not a venue.
pub const MAX_SCENE_BYTES: u64 = 16 << 20;

/// Reads, parses and validates a scene file.
pub fn load_scene_file(path: &Path, assets: &AssetsRoot) -> Result<SceneFile, SceneError> {
    let file = path.display().to_string();
    let io = |source| SceneError::Io { file: file.clone(), source };
    let size = std::fs::metadata(path).map_err(io)?.len();
    if size > MAX_SCENE_BYTES {
        return Err(SceneError::Invalid {
            file: file.clone(),
            problems: vec![SceneProblem {
                line_col: None,
                path: String::new(),
                message: format!(
                    "the file is {size} bytes; scene files are limited to {MAX_SCENE_BYTES} bytes (put bulk data in assets)"
                ),
            }],
        });
    }
    let text = std::fs::read_to_string(path).map_err(io)?;
    load_scene_str(&text, &file, assets)
}

/// Parses and validates scene text; `file` names it in messages.
pub fn load_scene_str(text: &str, file: &str, assets: &AssetsRoot) -> Result<SceneFile, SceneError> {
    let invalid = |problems| SceneError::Invalid { file: file.to_owned(), problems };
    let scene = parse_scene(text).map_err(|p| invalid(vec![p]))?;
    let problems = validate_scene(&scene, text, assets);
    if problems.is_empty() { Ok(scene) } else { Err(invalid(problems)) }
}

/// Parses scene text without checking its meaning. Syntax and type errors stop at the first.
pub fn parse_scene(text: &str) -> Result<SceneFile, SceneProblem> {
    ron::Options::default().from_str::<SceneFile>(text).map_err(|e| SceneProblem {
        line_col: Some((e.span.start.line, e.span.start.col)),
        path: String::new(),
        message: describe_ron_error(&e.code),
    })
}

fn describe_ron_error(code: &ron::Error) -> String {
    use ron::Error as E;
    match code {
        E::NoSuchStructField { expected, found, outer } => format!(
            "unknown field `{found}`{}; expected one of: {}",
            outer.as_ref().map(|o| format!(" in `{}`", friendly_type(o))).unwrap_or_default(),
            expected.join(", ")
        ),
        E::NoSuchEnumVariant { expected, found, outer } => format!(
            "unknown variant `{found}`{}; expected one of: {}",
            outer.as_ref().map(|o| format!(" of `{}`", friendly_type(o))).unwrap_or_default(),
            expected.join(", ")
        ),
        E::MissingStructField { field, outer } => format!(
            "missing field `{field}`{}",
            outer.as_ref().map(|o| format!(" in `{}`", friendly_type(o))).unwrap_or_default()
        ),
        other => other.to_string(),
    }
}

/// The scene-file name of one of our types, for messages: `MaterialDef` → `material`.
fn friendly_type(rust_name: &str) -> String {
    match rust_name {
        "SceneFile" => "the scene".into(),
        "VenueInfo" => "venue".into(),
        "ShapeDef" => "shape".into(),
        "LightKind" => "light kind".into(),
        "ParamKind" => "parameter kind".into(),
        "BindingDef" => "binding".into(),
        "StageParamDef" => "stage parameter".into(),
        "CreditDef" => "credit".into(),
        other => other.strip_suffix("Def").unwrap_or(other).to_lowercase(),
    }
}

/// What kind of venue entity a name refers to; bindings check they point at the right kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EntityKind {
    /// A glTF model.
    Asset,
    /// A primitive shape (or one copy of a repeated one).
    Primitive,
    /// A light.
    Light,
}

/// A model's problem as a scene problem's message: the model, the glTF field, what is wrong.
fn model_message(model: &str, problem: &ModelProblem) -> String {
    if problem.field.is_empty() {
        format!("{model}: {}", problem.message)
    } else {
        format!("{model}: {}: {}", problem.field, problem.message)
    }
}

/// What a valid scene would rather not have: problems that leave it usable, such as a model
/// whose texture is missing (drawn without it). `parvis check` prints them as warnings.
pub fn scene_warnings(scene: &SceneFile, text: &str, assets: &AssetsRoot) -> Vec<SceneProblem> {
    let mut c = Checker { masked: without_comments(text), problems: Vec::new() };
    for (i, asset) in scene.assets.iter().enumerate() {
        if assets.resolve(&asset.path).is_err() {
            continue;
        }
        for problem in check_model(&asset.path, assets).into_iter().filter(|p| p.drawable) {
            c.report(format!("assets[{i}].path"), Some(asset.path.as_str()), model_message(&asset.path, &problem));
        }
    }
    bound_but_written(scene, &mut c);
    c.problems
}

/// A property a stage parameter drives takes the parameter's value from the start: a
/// different value written in the file is never seen, and editing it changes nothing. Each
/// such property is named, with the parameter that drives it.
fn bound_but_written(scene: &SceneFile, c: &mut Checker) {
    let file = top_fields(&c.masked);
    let environment = file.get("environment").map(|v| top_fields(v)).unwrap_or_default();
    let mut found: Vec<(String, Option<String>, String)> = Vec::new();
    for param in &scene.params {
        let default = match &param.kind {
            ParamKind::Colour { default } => default.to_string(),
            ParamKind::Float { default, .. } => format!("{default}"),
            ParamKind::Enum { default, .. } => format!("{default:?}"),
            ParamKind::Bool { default } => default.to_string(),
        };
        for binding in &param.bind {
            // A binding of one copy (`pillar[2]`) leaves the others as written.
            if binding.target().is_some_and(names_one_copy) {
                continue;
            }
            // (path of the property, anchor, the value written there)
            let written: Option<(String, Option<String>, String)> = match binding {
                BindingDef::LightColour(name) => scene.lights.iter().position(|l| &l.name == name).and_then(|i| {
                    let fields = entry_fields(&c.masked, name)?;
                    fields.contains_key("colour").then(|| {
                        (format!("lights[{i}].colour"), Some(name.clone()), scene.lights[i].colour.to_string())
                    })
                }),
                BindingDef::LightIntensity(name) => scene.lights.iter().position(|l| &l.name == name).map(|i| {
                    let value = match scene.lights[i].kind {
                        LightKind::Directional { illuminance } => ("illuminance", illuminance),
                        LightKind::Point { intensity, .. } | LightKind::Spot { intensity, .. } => {
                            ("intensity", intensity)
                        }
                    };
                    (format!("lights[{i}].kind.{}", value.0), Some(name.clone()), format!("{}", value.1))
                }),
                BindingDef::BaseColour(name) | BindingDef::Emissive(name) => {
                    scene.primitives.iter().position(|p| &p.name == name).and_then(|i| {
                        let fields = entry_fields(&c.masked, name)?;
                        let material = top_fields(fields.get("material")?);
                        let (key, value) = match binding {
                            BindingDef::BaseColour(_) => ("colour", scene.primitives[i].material.colour),
                            _ => ("emissive", scene.primitives[i].material.emissive),
                        };
                        material
                            .contains_key(key)
                            .then(|| (format!("primitives[{i}].material.{key}"), Some(name.clone()), value.to_string()))
                    })
                }
                BindingDef::Visible(name) | BindingDef::VisibleWhen(name, _) => {
                    scene.primitives.iter().position(|p| &p.name == name).and_then(|i| {
                        let fields = entry_fields(&c.masked, name)?;
                        fields.contains_key("visible").then(|| {
                            (
                                format!("primitives[{i}].visible"),
                                Some(name.clone()),
                                scene.primitives[i].visible.to_string(),
                            )
                        })
                    })
                }
                BindingDef::SkyColour => environment
                    .get("sky")
                    .and_then(|_| scene.environment.sky.map(|v| ("environment.sky".into(), None, v.to_string()))),
                BindingDef::FogColour => environment.get("fog_colour").and_then(|_| {
                    scene.environment.fog_colour.map(|v| ("environment.fog_colour".into(), None, v.to_string()))
                }),
                BindingDef::FogDensity => environment
                    .get("fog_density")
                    .map(|_| ("environment.fog_density".into(), None, format!("{}", scene.environment.fog_density))),
                BindingDef::AmbientBrightness => environment.get("ambient_brightness").and_then(|_| {
                    scene
                        .environment
                        .ambient_brightness
                        .map(|v| ("environment.ambient_brightness".into(), None, format!("{v}")))
                }),
                BindingDef::EnvironmentPreset => environment.get("preset").map(|_| {
                    ("environment.preset".into(), None, format!("{:?}", scene.environment.preset).to_lowercase())
                }),
            };
            let Some((path, anchor, value)) = written else { continue };
            // Shown while the parameter is any of the options bound to this entity: visible from
            // the start if it starts at one of them.
            let default = match (binding, &param.kind) {
                (BindingDef::VisibleWhen(name, _), ParamKind::Enum { default, .. }) => param
                    .bind
                    .iter()
                    .any(|b| matches!(b, BindingDef::VisibleWhen(n, option) if n == name && option == default))
                    .to_string(),
                _ => default.clone(),
            };
            // Written as the parameter starts: nothing is hidden.
            if same_value(&value, &default) {
                continue;
            }
            let message = format!(
                "{value} is never shown: stage parameter {:?} drives this and starts at {default}; change the parameter's default instead",
                param.name
            );
            if !found.iter().any(|(p, _, _)| *p == path) {
                found.push((path, anchor, message));
            }
        }
    }
    for (path, anchor, message) in found {
        c.report(path, anchor.as_deref(), message);
    }
}

/// Whether two written values are the same value: numbers by value, the rest by text.
fn same_value(a: &str, b: &str) -> bool {
    let unquote = |s: &str| {
        let s = s.trim();
        let s = s.strip_prefix("Some(").and_then(|s| s.strip_suffix(')')).unwrap_or(s);
        s.trim().trim_matches('"').to_ascii_lowercase()
    };
    match (a.trim().parse::<f64>(), b.trim().parse::<f64>()) {
        (Ok(x), Ok(y)) => x == y,
        _ => unquote(a) == unquote(b),
    }
}

/// The fields written at the top level of the entry named `name` (`(name: "x", ...)`), by key,
/// with their value's text; `masked` has its comments blanked.
fn entry_fields<'a>(masked: &'a str, name: &str) -> Option<HashMap<String, &'a str>> {
    let needle = format!("\"{name}\"");
    let mut from = 0;
    while let Some(found) = masked[from..].find(&needle) {
        let at = from + found;
        from = at + needle.len();
        if !masked[..at].trim_end().ends_with("name:") {
            continue;
        }
        // The entry's opening parenthesis: the nearest one before `name:` not closed since.
        let mut depth = 0i32;
        let open = masked[..at].char_indices().rev().find_map(|(i, ch)| {
            match ch {
                ')' | ']' => depth += 1,
                '(' | '[' if depth > 0 => depth -= 1,
                '(' => return Some(i),
                _ => {}
            }
            None
        })?;
        return Some(top_fields(&masked[open..]));
    }
    None
}

/// The fields of the parenthesised block `text` starts with (after white space), by key, with
/// their value's text; strings are skipped whole, so a key inside one is not a key.
fn top_fields(text: &str) -> HashMap<String, &str> {
    let mut fields = HashMap::new();
    let bytes = text.as_bytes();
    let Some(start) = text.find('(') else { return fields };
    let (mut i, mut depth, mut value_start, mut key) = (start + 1, 1i32, None::<usize>, None::<String>);
    let mut token_start = i;
    while i < bytes.len() && depth > 0 {
        match bytes[i] {
            b'"' => {
                i += 1;
                while i < bytes.len() && bytes[i] != b'"' {
                    i += if bytes[i] == b'\\' { 2 } else { 1 };
                }
            }
            b'(' | b'[' | b'{' => depth += 1,
            b')' | b']' | b'}' => {
                depth -= 1;
                if depth == 0
                    && let (Some(k), Some(v)) = (key.take(), value_start)
                {
                    fields.insert(k, &text[v..i]);
                }
            }
            b',' if depth == 1 => {
                if let (Some(k), Some(v)) = (key.take(), value_start.take()) {
                    fields.insert(k, &text[v..i]);
                }
                token_start = i + 1;
            }
            b':' if depth == 1 && key.is_none() => {
                let word = text[token_start..i].trim();
                if !word.is_empty() && word.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_') {
                    key = Some(word.to_owned());
                    value_start = Some(i + 1);
                }
            }
            _ => {}
        }
        i += 1;
    }
    fields
}

/// Every name a binding may use, with the kind of entity behind it. A repeated primitive is
/// known by its base name (all copies) and by each copy's `name[i]`.
pub fn entity_names(scene: &SceneFile) -> HashMap<String, EntityKind> {
    let mut names = HashMap::new();
    for asset in &scene.assets {
        names.insert(asset.name.clone(), EntityKind::Asset);
    }
    for prim in &scene.primitives {
        names.insert(prim.name.clone(), EntityKind::Primitive);
        for name in prim.copy_names() {
            names.insert(name, EntityKind::Primitive);
        }
    }
    for light in &scene.lights {
        names.insert(light.name.clone(), EntityKind::Light);
    }
    names
}

/// Smallest memory budget of a point cloud, MiB: the root level and a few children.
pub const MIN_CLOUD_MEMORY_MB: u32 = 16;

fn check_cloud(c: &mut Checker, path: &str, cloud: &CloudDef, assets: &AssetsRoot) {
    let anchor = Some(cloud.name.as_str());
    c.transform(&format!("{path}.transform"), anchor, &cloud.transform);
    c.credit(&format!("{path}.credit"), anchor, &cloud.credit);
    c.in_range(&format!("{path}.point_size"), anchor, cloud.point_size, 0.5, 64.0);
    c.in_range(&format!("{path}.max_error_px"), anchor, cloud.max_error_px, 0.25, 100.0);
    if !(1_000..=1_000_000_000).contains(&cloud.point_budget) {
        c.report(
            format!("{path}.point_budget"),
            anchor,
            format!("expected from 1000 to 1000000000 points, found {}", cloud.point_budget),
        );
    }
    if !(MIN_CLOUD_MEMORY_MB..=1 << 20).contains(&cloud.memory_budget_mb) {
        c.report(
            format!("{path}.memory_budget_mb"),
            anchor,
            format!("expected from {MIN_CLOUD_MEMORY_MB} to 1048576 MiB, found {}", cloud.memory_budget_mb),
        );
    }
    check_scan_path(c, &format!("{path}.path"), &cloud.path, &[".ply", ".las", ".laz"], "cloud.json", assets);
}

/// A scan's path: a file with one of `extensions`, or a folder an import wrote (`index` in it).
fn check_scan_path(c: &mut Checker, path: &str, value: &str, extensions: &[&str], index: &str, assets: &AssetsRoot) {
    match assets.resolve_entry(value) {
        Err(e) => {
            let anchor = match e {
                AssetPathError::Empty => None,
                _ => Some(value),
            };
            c.report(path, anchor, e.to_string());
        }
        Ok(resolved) => {
            let lower = value.to_ascii_lowercase();
            let scan = extensions.iter().any(|e| lower.ends_with(e));
            if (scan && !resolved.is_file()) || (!scan && !resolved.join(index).is_file()) {
                let kinds = extensions.join(", ");
                c.report(
                    path,
                    Some(value),
                    format!("expected a {kinds} scan, or a folder written by `parvis import`, found {value:?}"),
                );
            }
        }
    }
}

struct Checker {
    /// The scene text with comments blanked out.
    masked: String,
    problems: Vec<SceneProblem>,
}

impl Checker {
    /// Records a problem, placed at the first occurrence of `anchor` (a quoted name) if given,
    /// else, for a field outside any list, at that field's key.
    fn report(&mut self, path: impl Into<String>, anchor: Option<&str>, message: impl Into<String>) {
        let path = path.into();
        let at = match anchor {
            Some(name) => Some(Anchor::Name(name, 1)),
            None if !path.contains('[') => path.rsplit('.').next().map(Anchor::Key),
            None => None,
        };
        let line_col = at.and_then(|a| locate(&self.masked, a));
        self.problems.push(SceneProblem { line_col, path: path.clone(), message: message.into() });
    }

    fn report_at(&mut self, path: String, at: Option<Anchor>, message: impl Into<String>) {
        let line_col = at.and_then(|a| locate(&self.masked, a));
        self.problems.push(SceneProblem { line_col, path, message: message.into() });
    }

    fn finite(&mut self, path: &str, anchor: Option<&str>, values: &[f32]) -> bool {
        if values.iter().all(|v| v.is_finite()) {
            true
        } else {
            self.report(path, anchor, format!("expected finite numbers, found {values:?}"));
            false
        }
    }

    fn positive(&mut self, path: &str, anchor: Option<&str>, value: f32) {
        if !(value.is_finite() && value > 0.0) {
            self.report(path, anchor, format!("expected a number greater than 0, found {value}"));
        }
    }

    fn in_range(&mut self, path: &str, anchor: Option<&str>, value: f32, min: f32, max: f32) {
        if !(value.is_finite() && (min..=max).contains(&value)) {
            self.report(path, anchor, format!("expected a number from {min} to {max}, found {value}"));
        }
    }

    fn name(&mut self, path: &str, name: &str) {
        if name.is_empty() || name.len() > 64 {
            self.report(path, None, format!("expected a name of 1 to 64 characters, found {name:?}"));
        } else if name.contains(['[', ']', '"']) || name.chars().any(char::is_control) {
            self.report(
                path,
                Some(name),
                format!("name {name:?} may not contain `[`, `]`, quotes or control characters"),
            );
        }
    }

    fn credit(&mut self, path: &str, anchor: Option<&str>, credit: &CreditDef) {
        if credit.author.trim().is_empty() {
            self.report(format!("{path}.author"), anchor, "expected the author's name, found nothing");
        }
        if credit.licence.trim().is_empty() {
            self.report(
                format!("{path}.licence"),
                anchor,
                "expected a licence (an SPDX id such as \"CC-BY-4.0\"), found nothing",
            );
        }
    }

    fn transform(&mut self, path: &str, anchor: Option<&str>, t: &TransformDef) {
        let mut all = vec![];
        all.extend(t.translation);
        all.extend(t.rotation);
        all.extend(t.scale);
        all.extend(t.look_at.unwrap_or_default());
        if !self.finite(path, anchor, &all) {
            return;
        }
        if t.scale.contains(&0.0) {
            self.report(
                format!("{path}.scale"),
                anchor,
                format!("expected non-zero scale factors, found {:?}", t.scale),
            );
        }
        if t.look_at == Some(t.translation) {
            self.report(format!("{path}.look_at"), anchor, "look_at must differ from translation");
        }
    }
}

/// The text with comments blanked out (same length and line breaks), so that searches for
/// names and keys only find real fields, not words in a curator's comments.
fn without_comments(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = bytes.to_vec();
    let (mut i, mut in_string) = (0, false);
    while i < bytes.len() {
        let b = bytes[i];
        if in_string {
            match b {
                b'\\' => i += 1,
                b'"' => in_string = false,
                _ => {}
            }
        } else if b == b'"' {
            in_string = true;
        } else if b == b'/' && bytes.get(i + 1) == Some(&b'/') {
            while i < bytes.len() && bytes[i] != b'\n' {
                out[i] = b' ';
                i += 1;
            }
            continue;
        } else if b == b'/' && bytes.get(i + 1) == Some(&b'*') {
            while i < bytes.len() && !(bytes[i] == b'*' && bytes.get(i + 1) == Some(&b'/')) {
                if bytes[i] != b'\n' {
                    out[i] = b' ';
                }
                i += 1;
            }
            for _ in 0..2 {
                if i < bytes.len() {
                    out[i] = b' ';
                    i += 1;
                }
            }
            continue;
        }
        i += 1;
    }
    // Only ASCII bytes were replaced by ASCII spaces, and never inside a multi-byte character
    // (comment markers are ASCII and a comment is blanked whole), so this stays valid UTF-8.
    String::from_utf8(out).unwrap_or_else(|_| text.to_owned())
}

/// Line and column (1-based) of a byte offset.
fn line_col(text: &str, at: usize) -> (usize, usize) {
    let before = &text[..at];
    let line = before.matches('\n').count() + 1;
    let col = before.rfind('\n').map_or(before.chars().count(), |nl| before[nl + 1..].chars().count()) + 1;
    (line, col)
}

/// Where a problem is in the file: the n-th (from 1) quoted occurrence of a name, or a key.
#[derive(Clone, Copy)]
enum Anchor<'a> {
    Name(&'a str, usize),
    Key(&'a str),
    /// The n-th (from 1) `key: "value"`, for values as common as a cue id `"1"`.
    KeyValue(&'a str, &'a str, usize),
}

fn locate(masked: &str, anchor: Anchor) -> Option<(usize, usize)> {
    let (needle, nth) = match anchor {
        Anchor::Name(name, nth) => (format!("\"{name}\""), nth),
        Anchor::Key(key) => (format!("{key}:"), 1),
        Anchor::KeyValue(key, value, nth) => {
            let quoted = format!("\"{value}\"");
            let mut from = 0;
            let mut seen = 0;
            while let Some(found) = masked[from..].find(&quoted) {
                let at = from + found;
                if masked[..at].trim_end().strip_suffix(':').is_some_and(|before| before.trim_end().ends_with(key)) {
                    seen += 1;
                    if seen == nth.max(1) {
                        return Some(line_col(masked, at));
                    }
                }
                from = at + quoted.len();
            }
            return None;
        }
    };
    let mut from = 0;
    let mut found = None;
    for _ in 0..nth.max(1) {
        let at = from + masked[from..].find(&needle)?;
        found = Some(at);
        from = at + needle.len();
    }
    found.map(|at| line_col(masked, at))
}

/// Checks the meaning of a parsed scene: ranges, names, references and asset paths.
/// Returns every problem found; an empty list means the scene is valid.
pub fn validate_scene(scene: &SceneFile, text: &str, assets: &AssetsRoot) -> Vec<SceneProblem> {
    let mut c = Checker { masked: without_comments(text), problems: Vec::new() };
    if scene.version != SCENE_FORMAT_VERSION {
        c.report(
            "version",
            None,
            format!(
                "unsupported scene version {}; this build of parvis reads version {SCENE_FORMAT_VERSION}",
                scene.version
            ),
        );
    }
    check_venue(&mut c, &scene.venue);
    check_environment(&mut c, &scene.environment);

    let mut seen: HashMap<String, String> = HashMap::new();
    let mut unique = |c: &mut Checker, path: &str, name: &str| {
        if let Some(first) = seen.insert(name.to_owned(), path.to_owned()) {
            // Point at the second use of the name, the one to rename.
            c.report_at(
                format!("{path}.name"),
                Some(Anchor::Name(name, 2)),
                format!("duplicate name {name:?}, already used by {first}"),
            );
        }
    };
    for (i, asset) in scene.assets.iter().enumerate() {
        let path = format!("assets[{i}]");
        let anchor = Some(asset.name.as_str());
        c.name(&format!("{path}.name"), &asset.name);
        unique(&mut c, &path, &asset.name);
        c.transform(&format!("{path}.transform"), anchor, &asset.transform);
        c.credit(&format!("{path}.credit"), anchor, &asset.credit);
        let lower = asset.path.to_ascii_lowercase();
        if !(lower.ends_with(".gltf") || lower.ends_with(".glb")) {
            c.report(format!("{path}.path"), anchor, format!("expected a .gltf or .glb file, found {:?}", asset.path));
        }
        match assets.resolve(&asset.path) {
            Err(e) => {
                let anchor = match e {
                    AssetPathError::Empty => anchor,
                    _ => Some(asset.path.as_str()),
                };
                c.report(format!("{path}.path"), anchor, e.to_string());
            }
            // The model's own references are held to the same rules; what leaves it
            // undrawable, or reaches outside the root, refuses the scene.
            Ok(_) => {
                for problem in check_model(&asset.path, assets).into_iter().filter(|p| !p.drawable) {
                    c.report(format!("{path}.path"), Some(asset.path.as_str()), model_message(&asset.path, &problem));
                }
            }
        }
    }
    for (i, cloud) in scene.clouds.iter().enumerate() {
        let path = format!("clouds[{i}]");
        c.name(&format!("{path}.name"), &cloud.name);
        unique(&mut c, &path, &cloud.name);
        check_cloud(&mut c, &path, cloud, assets);
    }
    for (i, mesh) in scene.meshes.iter().enumerate() {
        let path = format!("meshes[{i}]");
        c.name(&format!("{path}.name"), &mesh.name);
        unique(&mut c, &path, &mesh.name);
        let anchor = Some(mesh.name.as_str());
        c.transform(&format!("{path}.transform"), anchor, &mesh.transform);
        c.credit(&format!("{path}.credit"), anchor, &mesh.credit);
        c.in_range(&format!("{path}.max_error_px"), anchor, mesh.max_error_px, 0.25, 100.0);
        check_scan_path(&mut c, &format!("{path}.path"), &mesh.path, &[".glb", ".gltf"], "mesh.json", assets);
    }
    for (i, prim) in scene.primitives.iter().enumerate() {
        let path = format!("primitives[{i}]");
        c.name(&format!("{path}.name"), &prim.name);
        unique(&mut c, &path, &prim.name);
        check_primitive(&mut c, &path, prim);
    }
    for (i, light) in scene.lights.iter().enumerate() {
        let path = format!("lights[{i}]");
        c.name(&format!("{path}.name"), &light.name);
        unique(&mut c, &path, &light.name);
        check_light(&mut c, &path, light);
    }
    check_viewpoints(&mut c, scene);
    check_visits(&mut c, scene, assets);
    check_params(&mut c, scene);
    check_polls(&mut c, scene);
    check_effects(&mut c, scene);
    check_rules(&mut c, scene);
    check_shows(&mut c, scene, assets);
    check_performers(&mut c, scene, assets);
    c.problems
}

/// Performers: unique names, an avatar with a humanoid rig, a source that can be told apart
/// from the others on its port, and timings in range.
fn check_performers(c: &mut Checker, scene: &SceneFile, assets: &AssetsRoot) {
    let mut names = HashSet::new();
    // Port → (performer, its sender), to find two performers a packet could not be told apart for.
    let mut ports: HashMap<u16, Vec<(&str, Option<&str>)>> = HashMap::new();
    for (i, performer) in scene.performers.iter().enumerate() {
        let path = format!("performers[{i}]");
        let anchor = Some(performer.name.as_str());
        c.name(&format!("{path}.name"), &performer.name);
        if !names.insert(performer.name.as_str()) {
            c.report_at(
                format!("{path}.name"),
                Some(Anchor::Name(&performer.name, 2)),
                format!("duplicate performer name {:?}", performer.name),
            );
        }
        c.transform(&format!("{path}.transform"), anchor, &performer.transform);
        c.credit(&format!("{path}.credit"), anchor, &performer.credit);
        c.in_range(&format!("{path}.hold"), anchor, performer.hold, 0.0, 600.0);
        c.in_range(&format!("{path}.ease"), anchor, performer.ease, 0.0, 60.0);
        c.in_range(&format!("{path}.smoothing"), anchor, performer.smoothing.0, 0.01, 100.0);
        c.in_range(&format!("{path}.smoothing"), anchor, performer.smoothing.1, 0.0, 100.0);
        let lower = performer.avatar.to_ascii_lowercase();
        if lower.ends_with(".vrm") {
            c.report(
                format!("{path}.avatar"),
                Some(&performer.avatar),
                format!(
                    "{:?}: a VRM file is a GLB; give it a .glb name (the loader reads .glb and .gltf)",
                    performer.avatar
                ),
            );
        } else if ![".glb", ".gltf"].iter().any(|e| lower.ends_with(e)) {
            c.report(
                format!("{path}.avatar"),
                Some(&performer.avatar),
                format!("expected a .glb or .gltf file, found {:?}", performer.avatar),
            );
        } else {
            match assets.resolve(&performer.avatar).map(std::fs::read) {
                Err(e) => c.report(format!("{path}.avatar"), Some(&performer.avatar), e.to_string()),
                Ok(Err(e)) => c.report(
                    format!("{path}.avatar"),
                    Some(&performer.avatar),
                    format!("cannot read {:?}: {e}", performer.avatar),
                ),
                Ok(Ok(bytes)) => {
                    if let Err(why) = crate::performer::read_avatar_rig(&bytes, &performer.bones) {
                        c.report(format!("{path}.bones"), anchor, format!("avatar {:?}: {why}", performer.avatar));
                    }
                }
            }
        }
        match &performer.source {
            PerformerSource::Vmc { port, from } => {
                if let Some(from) = from
                    && from.parse::<std::net::IpAddr>().is_err()
                {
                    c.report(
                        format!("{path}.source.from"),
                        Some(from),
                        format!("expected an IP address such as \"192.168.1.20\", found {from:?}"),
                    );
                }
                if *port != 0 {
                    ports.entry(*port).or_default().push((&performer.name, from.as_deref()));
                }
            }
            PerformerSource::Recording { path: file } => {
                if !file.to_ascii_lowercase().ends_with(".poses") {
                    c.report(
                        format!("{path}.source.path"),
                        Some(file),
                        format!("expected a .poses recording (parvis run --record-performers), found {file:?}"),
                    );
                } else {
                    match assets.resolve(file) {
                        Err(e) => c.report(format!("{path}.source.path"), Some(file), e.to_string()),
                        Ok(found) if !found.is_file() => c.report(
                            format!("{path}.source.path"),
                            Some(file),
                            format!("no such recording under the assets root: {file:?}"),
                        ),
                        Ok(_) => {}
                    }
                }
            }
            PerformerSource::Idle => {}
        }
    }
    let mut ports: Vec<_> = ports.into_iter().collect();
    ports.sort();
    for (port, users) in ports {
        for (k, (name, from)) in users.iter().enumerate() {
            if let Some((other, _)) = users[..k].iter().find(|(_, f)| f.is_none() || *f == *from || from.is_none()) {
                let i = scene.performers.iter().position(|p| p.name == *name).unwrap_or(0);
                c.report(
                    format!("performers[{i}].source"),
                    Some(name),
                    format!(
                        "performers {other:?} and {name:?} both take VMC on port {port} and could not be told apart: give each its own port or its own `from` address"
                    ),
                );
            }
        }
    }
}

/// Ids in polls and votes: short words, as typed by people and sent in JSON.
fn is_word(word: &str) -> bool {
    !word.is_empty()
        && word.chars().count() <= 32
        && word.chars().all(|ch| ch.is_alphanumeric() || ch == '_' || ch == '-')
}

fn check_polls(c: &mut Checker, scene: &SceneFile) {
    let mut names = HashSet::new();
    for (i, poll) in scene.polls.iter().enumerate() {
        let path = format!("polls[{i}]");
        let anchor = Some(poll.name.as_str());
        c.name(&format!("{path}.name"), &poll.name);
        if !names.insert(poll.name.as_str()) {
            c.report_at(
                format!("{path}.name"),
                Some(Anchor::Name(&poll.name, 2)),
                format!("duplicate poll name {:?}", poll.name),
            );
        }
        if poll.question.trim().is_empty() || poll.question.chars().count() > 200 {
            c.report(format!("{path}.question"), anchor, "expected a question of 1 to 200 characters");
        }
        if !(2..=8).contains(&poll.options.len()) {
            c.report(
                format!("{path}.options"),
                anchor,
                format!("expected 2 to 8 options, found {}", poll.options.len()),
            );
        }
        let mut ids = HashSet::new();
        for (j, option) in poll.options.iter().enumerate() {
            if !is_word(&option.id) {
                c.report(
                    format!("{path}.options[{j}].id"),
                    Some(&option.id),
                    format!("expected an id of 1 to 32 letters, digits, `_` or `-`, found {:?}", option.id),
                );
            }
            if !ids.insert(option.id.as_str()) {
                c.report(
                    format!("{path}.options[{j}].id"),
                    Some(&option.id),
                    format!("option id {:?} is used twice", option.id),
                );
            }
            if option.label.trim().is_empty() || option.label.chars().count() > 80 {
                c.report(
                    format!("{path}.options[{j}].label"),
                    Some(&option.id),
                    "expected a label of 1 to 80 characters",
                );
            }
        }
        c.in_range(&format!("{path}.seconds"), anchor, poll.seconds, 5.0, 3600.0);
        c.in_range(&format!("{path}.min_share"), anchor, poll.min_share, 0.0, 1.0);
    }
}

fn check_effects(c: &mut Checker, scene: &SceneFile) {
    let mut names = HashSet::new();
    for (i, effect) in scene.effects.iter().enumerate() {
        let path = format!("effects[{i}]");
        let anchor = Some(effect.name.as_str());
        c.name(&format!("{path}.name"), &effect.name);
        if !names.insert(effect.name.as_str()) {
            c.report_at(
                format!("{path}.name"),
                Some(Anchor::Name(&effect.name, 2)),
                format!("duplicate effect name {:?}", effect.name),
            );
        }
        if !(1..=500).contains(&effect.count) {
            c.report(format!("{path}.count"), anchor, format!("expected 1 to 500 pieces, found {}", effect.count));
        }
        if effect.colours.is_empty() {
            c.report(format!("{path}.colours"), anchor, "expected at least one colour");
        }
        c.in_range(&format!("{path}.size"), anchor, effect.size, 0.01, 2.0);
        c.in_range(&format!("{path}.lifetime"), anchor, effect.lifetime, 0.5, 60.0);
        c.in_range(&format!("{path}.speed"), anchor, effect.speed, 0.0, 50.0);
        c.in_range(&format!("{path}.drag"), anchor, effect.drag, 0.0, 20.0);
        for (field, v) in [("origin", effect.origin), ("spread", effect.spread)] {
            if !v.iter().all(|x| x.is_finite() && x.abs() <= 10_000.0) {
                c.report(
                    format!("{path}.{field}"),
                    anchor,
                    format!("expected finite metres within 10 km, found {v:?}"),
                );
            }
        }
        if effect.spread.iter().any(|v| *v < 0.0) {
            c.report(format!("{path}.spread"), anchor, "half-extents cannot be negative");
        }
    }
}

fn check_rules(c: &mut Checker, scene: &SceneFile) {
    let params = crate::params::StageParams::from_scene(scene);
    let mut names = HashSet::new();
    for (i, rule) in scene.rules.iter().enumerate() {
        let path = format!("rules[{i}]");
        let anchor = Some(rule.name.as_str());
        c.name(&format!("{path}.name"), &rule.name);
        if !rule.group.is_empty() {
            c.name(&format!("{path}.group"), &rule.group);
        }
        if !names.insert(rule.name.as_str()) {
            c.report_at(
                format!("{path}.name"),
                Some(Anchor::Name(&rule.name, 2)),
                format!("duplicate rule name {:?}", rule.name),
            );
        }
        match &rule.trigger {
            TriggerDef::Command(word) | TriggerDef::Keyword(word) => {
                if !is_word(word) {
                    c.report(
                        format!("{path}.trigger"),
                        anchor,
                        format!("expected a word of 1 to 32 letters, digits, `_` or `-`, found {word:?}"),
                    );
                }
            }
            TriggerDef::Reaction(emoji) => {
                if emoji.is_empty() || emoji.chars().count() > 8 {
                    c.report(format!("{path}.trigger"), anchor, format!("expected one emoji, found {emoji:?}"));
                }
            }
            TriggerDef::PollOutcome(poll) => match scene.polls.iter().find(|p| &p.name == poll) {
                None => c.report(
                    format!("{path}.trigger"),
                    Some(poll),
                    format!(
                        "no poll named {poll:?}; the venue has: {}",
                        list(scene.polls.iter().map(|p| p.name.as_str()))
                    ),
                ),
                Some(def) => {
                    for key in rule.values.keys() {
                        if !def.options.iter().any(|o| &o.id == key) {
                            c.report(
                                format!("{path}.values[{key:?}]"),
                                Some(key),
                                format!(
                                    "poll {poll:?} has no option {key:?}; its options are: {}",
                                    list(def.options.iter().map(|o| o.id.as_str()))
                                ),
                            );
                        }
                    }
                }
            },
            TriggerDef::CrowdEnergy { above, window, .. } => {
                c.in_range(&format!("{path}.trigger.above"), anchor, *above, 0.01, 1_000_000.0);
                c.in_range(&format!("{path}.trigger.window"), anchor, *window, 1.0, 600.0);
            }
        }
        let takes_value = matches!(rule.action, ActionDef::Set | ActionDef::Animate { .. });
        let fixed_value_needed =
            matches!(rule.trigger, TriggerDef::Keyword(_) | TriggerDef::Reaction(_) | TriggerDef::CrowdEnergy { .. });
        if takes_value && fixed_value_needed && rule.value.is_none() {
            c.report(format!("{path}.value"), anchor, "keyword, reaction and crowd-energy rules need a fixed `value`");
        }
        for (field, v) in [("cooldown", rule.cooldown), ("user_cooldown", rule.user_cooldown)] {
            c.in_range(&format!("{path}.{field}"), anchor, v, 0.0, 3600.0);
        }
        if rule.queue > 100 {
            c.report(format!("{path}.queue"), anchor, format!("at most 100 firings can wait, found {}", rule.queue));
        }
        if rule.queue > 0 && rule.mutex.is_empty() {
            c.report(format!("{path}.queue"), anchor, "a queue needs a `mutex` group to wait for");
        }
        if !rule.only.is_empty() && matches!(rule.trigger, TriggerDef::PollOutcome(_) | TriggerDef::CrowdEnergy { .. })
        {
            c.report(
                format!("{path}.only"),
                anchor,
                "`only` limits members' own messages; this trigger is the whole audience's, so it would never fire",
            );
        }
        if rule.bits_per_vote > 0 && !matches!(rule.mode, RuleMode::Democracy { .. }) {
            c.report(format!("{path}.bits_per_vote"), anchor, "bits weigh votes only in democracy mode");
        }
        if let RuleMode::Democracy { window, min_share, .. } = &rule.mode {
            if !matches!(rule.trigger, TriggerDef::Command(_)) || !takes_value {
                c.report(format!("{path}.mode"), anchor, "democracy votes need a `Command` trigger and a `Set` or `Animate` action (the audience votes on the word)");
            }
            c.in_range(&format!("{path}.mode.window"), anchor, *window, 1.0, 600.0);
            c.in_range(&format!("{path}.mode.min_share"), anchor, *min_share, 0.0, 1.0);
        }
        match &rule.action {
            ActionDef::Set | ActionDef::Animate { .. } => {}
            ActionDef::Spawn(effect) => {
                if !scene.effects.iter().any(|e| &e.name == effect) {
                    c.report(
                        format!("{path}.action"),
                        Some(effect),
                        format!(
                            "no effect named {effect:?}; the venue has: {}",
                            list(scene.effects.iter().map(|e| e.name.as_str()))
                        ),
                    );
                }
                continue;
            }
            ActionDef::Show { seconds, at, .. } => {
                c.in_range(&format!("{path}.action.seconds"), anchor, *seconds, 1.0, 120.0);
                if !at.iter().all(|v| v.is_finite() && v.abs() <= 10_000.0) {
                    c.report(
                        format!("{path}.action.at"),
                        anchor,
                        format!("expected finite metres within 10 km, found {at:?}"),
                    );
                }
                if !matches!(rule.trigger, TriggerDef::Command(_) | TriggerDef::Keyword(_)) {
                    c.report(
                        format!("{path}.action"),
                        anchor,
                        "`Show` needs words to show: use a `Command` or `Keyword` trigger",
                    );
                }
                continue;
            }
        }
        if params.def(&rule.param).is_err() {
            let known: Vec<&str> = scene.params.iter().map(|p| p.name.as_str()).collect();
            c.report(
                format!("{path}.param"),
                Some(&rule.param),
                format!("no stage parameter named {:?}; the venue has: {}", rule.param, list(known.into_iter())),
            );
            continue;
        };
        if let (ActionDef::Animate { seconds, .. }, Ok(def)) = (&rule.action, params.def(&rule.param)) {
            if !matches!(def.kind, ParamKind::Float { .. } | ParamKind::Colour { .. }) {
                c.report(
                    format!("{path}.action"),
                    anchor,
                    format!(
                        "stage parameter {:?} cannot be animated: only floats and colours move smoothly",
                        rule.param
                    ),
                );
            }
            c.in_range(&format!("{path}.action.seconds"), anchor, *seconds, 0.1, 600.0);
        }
        // Poll outcome values are checked against the options above; the value they stand for
        // is checked here like any other.
        let values = rule
            .value
            .iter()
            .map(|v| ("value".to_owned(), v))
            .chain(rule.values.iter().map(|(k, v)| (format!("values[{k:?}]"), v)));
        for (field, text) in values {
            if let Err(e) = params.parse_value(&rule.param, text) {
                c.report(format!("{path}.{field}"), Some(text.as_str()), e.to_string());
            }
        }
    }
}

fn check_venue(c: &mut Checker, venue: &VenueInfo) {
    if venue.title.trim().is_empty() {
        c.report("venue.title", None, "expected a title, found nothing");
    }
    let mut langs = HashSet::new();
    for (i, lang) in venue.languages.iter().enumerate() {
        if !crate::lang::is_language_tag(lang) {
            c.report(
                format!("venue.languages[{i}]"),
                Some(lang),
                format!("expected a language tag such as \"fr\" or \"en-GB\", found {lang:?}"),
            );
        }
        if !langs.insert(lang.to_ascii_lowercase()) {
            c.report(format!("venue.languages[{i}]"), Some(lang), format!("language {lang:?} is listed twice"));
        }
    }
    for (i, credit) in venue.credits.iter().enumerate() {
        c.credit(&format!("venue.credits[{i}]"), None, credit);
    }
}

fn check_environment(c: &mut Checker, env: &EnvironmentDef) {
    c.in_range("environment.fog_density", None, env.fog_density, 0.0, 10.0);
    if let Some(b) = env.ambient_brightness {
        c.in_range("environment.ambient_brightness", None, b, 0.0, 100_000.0);
    }
}

fn check_primitive(c: &mut Checker, path: &str, prim: &PrimitiveDef) {
    let anchor = Some(prim.name.as_str());
    let shape_path = format!("{path}.shape");
    match prim.shape {
        ShapeDef::Box { size } => size.iter().for_each(|v| c.positive(&shape_path, anchor, *v)),
        ShapeDef::Plane { size } => size.iter().for_each(|v| c.positive(&shape_path, anchor, *v)),
        ShapeDef::Sphere { radius } => c.positive(&shape_path, anchor, radius),
        ShapeDef::Cylinder { radius, height } | ShapeDef::Cone { radius, height } => {
            c.positive(&shape_path, anchor, radius);
            c.positive(&shape_path, anchor, height);
        }
        ShapeDef::Arch { width, height, depth, opening, spring } => {
            for v in [width, height, depth, opening] {
                c.positive(&shape_path, anchor, v);
            }
            if !(spring.is_finite() && spring >= 0.0) {
                c.report(&shape_path, anchor, format!("expected spring ≥ 0, found {spring}"));
            }
            if opening >= width {
                c.report(
                    &shape_path,
                    anchor,
                    format!("the opening ({opening}) must be narrower than the arch ({width})"),
                );
            }
            if spring + opening / 2.0 >= height {
                c.report(
                    &shape_path,
                    anchor,
                    format!(
                        "the arch head reaches {} m, which must be below the arch's height ({height} m)",
                        spring + opening / 2.0
                    ),
                );
            }
        }
    }
    let m = &prim.material;
    c.in_range(&format!("{path}.material.roughness"), anchor, m.roughness, 0.0, 1.0);
    c.in_range(&format!("{path}.material.metallic"), anchor, m.metallic, 0.0, 1.0);
    c.in_range(&format!("{path}.material.emissive_strength"), anchor, m.emissive_strength, 0.0, 1.0e7);
    c.transform(&format!("{path}.transform"), anchor, &prim.transform);
    if let Some(repeat) = prim.repeat {
        if !(1..=MAX_REPEAT).contains(&repeat.count) {
            c.report(
                format!("{path}.repeat.count"),
                anchor,
                format!("expected 1 to {MAX_REPEAT} copies, found {}", repeat.count),
            );
        }
        c.finite(&format!("{path}.repeat.step"), anchor, &repeat.step);
    }
}

fn check_light(c: &mut Checker, path: &str, light: &LightDef) {
    let anchor = Some(light.name.as_str());
    let kind = format!("{path}.kind");
    match light.kind {
        LightKind::Directional { illuminance } => c.in_range(&kind, anchor, illuminance, 0.0, 200_000.0),
        LightKind::Point { intensity, range } => {
            c.in_range(&kind, anchor, intensity, 0.0, 1.0e9);
            c.positive(&kind, anchor, range);
        }
        LightKind::Spot { intensity, range, inner_angle, outer_angle } => {
            c.in_range(&kind, anchor, intensity, 0.0, 1.0e9);
            c.positive(&kind, anchor, range);
            c.in_range(&kind, anchor, outer_angle, 0.0, 89.0);
            if !(inner_angle.is_finite() && (0.0..=outer_angle).contains(&inner_angle)) {
                c.report(
                    &kind,
                    anchor,
                    format!("expected inner_angle from 0 to outer_angle ({outer_angle}), found {inner_angle}"),
                );
            }
        }
    }
    c.transform(&format!("{path}.transform"), anchor, &light.transform);
}

fn check_viewpoints(c: &mut Checker, scene: &SceneFile) {
    let mut names = HashSet::new();
    for (i, vp) in scene.viewpoints.iter().enumerate() {
        let path = format!("viewpoints[{i}]");
        let anchor = Some(vp.name.as_str());
        c.name(&format!("{path}.name"), &vp.name);
        if !names.insert(vp.name.as_str()) {
            c.report_at(
                format!("{path}.name"),
                Some(Anchor::Name(&vp.name, 2)),
                format!("duplicate viewpoint name {:?}", vp.name),
            );
        }
        let mut all = vp.position.to_vec();
        all.extend(vp.look_at);
        if c.finite(&path, anchor, &all) && vp.position == vp.look_at {
            c.report(format!("{path}.look_at"), anchor, "look_at must differ from position");
        }
        c.in_range(&format!("{path}.fov"), anchor, vp.fov, 5.0, 170.0);
    }
    if let Some(spawn) = &scene.spawn
        && !names.contains(spawn.as_str())
    {
        c.report(
            "spawn",
            Some(spawn),
            format!(
                "no viewpoint named {spawn:?}; viewpoints are: {}",
                list(scene.viewpoints.iter().map(|v| v.name.as_str()))
            ),
        );
    }
    if let Some(spawn) = &scene.xr_spawn
        && !names.contains(spawn.as_str())
    {
        c.report(
            "xr_spawn",
            Some(spawn),
            format!(
                "no viewpoint named {spawn:?}; viewpoints are: {}",
                list(scene.viewpoints.iter().map(|v| v.name.as_str()))
            ),
        );
    }
}

/// Longest hotspot or narration text, characters: a panel or subtitles, not a book.
pub const MAX_VISIT_TEXT_CHARS: usize = 4_000;

/// Hotspots and tours: names, positions, texts in the venue's languages, sound files, and the
/// viewpoints and hotspots tours refer to.
fn check_visits(c: &mut Checker, scene: &SceneFile, assets: &AssetsRoot) {
    let languages = &scene.venue.languages;
    let texts = |c: &mut Checker, path: &str, anchor: Option<&str>, texts: &Localized, required: bool| {
        if required && texts.values().all(|t| t.trim().is_empty()) {
            c.report(path, anchor, "expected a text in at least one language, found none");
        }
        for (lang, text) in texts {
            if !languages.is_empty() && !languages.contains(lang) {
                c.report(
                    format!("{path}.{lang}"),
                    anchor,
                    format!("language {lang:?} is not one of the venue's languages ({})", languages.join(", ")),
                );
            }
            let chars = text.chars().count();
            if chars > MAX_VISIT_TEXT_CHARS {
                c.report(
                    format!("{path}.{lang}"),
                    anchor,
                    format!("text of {chars} characters; at most {MAX_VISIT_TEXT_CHARS}"),
                );
            }
        }
    };
    let sounds = |c: &mut Checker, path: &str, anchor: Option<&str>, files: &Localized| {
        for (lang, file) in files {
            if !languages.is_empty() && !languages.contains(lang) {
                c.report(
                    format!("{path}.{lang}"),
                    anchor,
                    format!("language {lang:?} is not one of the venue's languages ({})", languages.join(", ")),
                );
            }
            let lower = file.to_ascii_lowercase();
            if ![".ogg", ".wav", ".mp3", ".flac"].iter().any(|e| lower.ends_with(e)) {
                c.report(
                    format!("{path}.{lang}"),
                    Some(file),
                    format!("expected an .ogg, .wav, .mp3 or .flac file, found {file:?}"),
                );
            } else if let Err(e) = assets.resolve(file) {
                c.report(format!("{path}.{lang}"), Some(file), e.to_string());
            }
        }
    };
    let mut hotspots = HashSet::new();
    for (i, h) in scene.hotspots.iter().enumerate() {
        let path = format!("hotspots[{i}]");
        let anchor = Some(h.name.as_str());
        c.name(&format!("{path}.name"), &h.name);
        if !hotspots.insert(h.name.as_str()) {
            c.report_at(
                format!("{path}.name"),
                Some(Anchor::Name(&h.name, 2)),
                format!("duplicate hotspot name {:?}", h.name),
            );
        }
        c.finite(&format!("{path}.position"), anchor, &h.position);
        c.in_range(&format!("{path}.radius"), anchor, h.radius, 0.05, 20.0);
        texts(c, &format!("{path}.title"), anchor, &h.title, true);
        texts(c, &format!("{path}.text"), anchor, &h.text, false);
        sounds(c, &format!("{path}.audio"), anchor, &h.audio);
    }
    let viewpoints: HashSet<&str> = scene.viewpoints.iter().map(|v| v.name.as_str()).collect();
    let mut tours = HashSet::new();
    for (i, tour) in scene.tours.iter().enumerate() {
        let path = format!("tours[{i}]");
        let anchor = Some(tour.name.as_str());
        c.name(&format!("{path}.name"), &tour.name);
        if !tours.insert(tour.name.as_str()) {
            c.report_at(
                format!("{path}.name"),
                Some(Anchor::Name(&tour.name, 2)),
                format!("duplicate tour name {:?}", tour.name),
            );
        }
        texts(c, &format!("{path}.title"), anchor, &tour.title, false);
        if tour.stops.is_empty() {
            c.report(format!("{path}.stops"), anchor, "a tour needs at least one stop");
        }
        for (j, stop) in tour.stops.iter().enumerate() {
            let path = format!("{path}.stops[{j}]");
            if !viewpoints.contains(stop.viewpoint.as_str()) {
                c.report(
                    format!("{path}.viewpoint"),
                    Some(&stop.viewpoint),
                    format!(
                        "no viewpoint named {:?}; viewpoints are: {}",
                        stop.viewpoint,
                        list(scene.viewpoints.iter().map(|v| v.name.as_str()))
                    ),
                );
            }
            if let Some(h) = &stop.hotspot
                && !hotspots.contains(h.as_str())
            {
                c.report(
                    format!("{path}.hotspot"),
                    Some(h),
                    format!(
                        "no hotspot named {h:?}; hotspots are: {}",
                        list(scene.hotspots.iter().map(|h| h.name.as_str()))
                    ),
                );
            }
            texts(c, &format!("{path}.narration"), anchor, &stop.narration, false);
            sounds(c, &format!("{path}.audio"), anchor, &stop.audio);
            c.in_range(&format!("{path}.seconds"), anchor, stop.seconds, 0.5, 600.0);
            c.in_range(&format!("{path}.travel"), anchor, stop.travel, 0.0, 120.0);
        }
    }
}

fn list<'a>(names: impl Iterator<Item = &'a str>) -> String {
    let names: Vec<&str> = names.collect();
    if names.is_empty() { "(none)".into() } else { names.join(", ") }
}

/// The value type a binding needs.
fn binding_needs(binding: &BindingDef) -> &'static str {
    match binding {
        BindingDef::LightColour(_)
        | BindingDef::Emissive(_)
        | BindingDef::BaseColour(_)
        | BindingDef::SkyColour
        | BindingDef::FogColour => "Colour",
        BindingDef::LightIntensity(_) | BindingDef::FogDensity | BindingDef::AmbientBrightness => "Float",
        BindingDef::Visible(_) => "Bool",
        BindingDef::VisibleWhen(..) | BindingDef::EnvironmentPreset => "Enum",
    }
}

/// A stable description of the property a binding drives, to find two params driving one property.
pub fn binding_property(binding: &BindingDef) -> String {
    match binding {
        BindingDef::VisibleWhen(name, _) => format!("Visible({name})"),
        other => format!("{other:?}"),
    }
}

fn check_params(c: &mut Checker, scene: &SceneFile) {
    let entities = entity_names(scene);
    let mut names = HashSet::new();
    let mut properties: HashMap<String, String> = HashMap::new();
    for (i, param) in scene.params.iter().enumerate() {
        let path = format!("params[{i}]");
        let anchor = Some(param.name.as_str());
        if param.name.is_empty()
            || param.name.len() > 64
            || !param.name.chars().all(|ch| ch.is_ascii_alphanumeric() || "_-.".contains(ch))
        {
            c.report(
                format!("{path}.name"),
                anchor,
                format!(
                    "expected a parameter name of 1 to 64 letters, digits, `_`, `-` or `.`, found {:?}",
                    param.name
                ),
            );
        }
        if !names.insert(param.name.as_str()) {
            c.report_at(
                format!("{path}.name"),
                Some(Anchor::Name(&param.name, 2)),
                format!("duplicate parameter name {:?}", param.name),
            );
        }
        match &param.kind {
            ParamKind::Float { default, min, max } => {
                if c.finite(&format!("{path}.kind"), anchor, &[*default, *min, *max]) {
                    if min > max {
                        c.report(format!("{path}.kind"), anchor, format!("min ({min}) is greater than max ({max})"));
                    } else if !(min..=max).contains(&default) {
                        c.report(
                            format!("{path}.kind.default"),
                            anchor,
                            format!("expected a default from {min} to {max}, found {default}"),
                        );
                    }
                }
            }
            ParamKind::Enum { default, options } => {
                if options.is_empty() {
                    c.report(format!("{path}.kind.options"), anchor, "expected at least one option, found none");
                }
                let mut seen = HashSet::new();
                for option in options {
                    if !seen.insert(option) {
                        c.report(format!("{path}.kind.options"), anchor, format!("option {option:?} is listed twice"));
                    }
                }
                if !options.contains(default) {
                    c.report(
                        format!("{path}.kind.default"),
                        anchor,
                        format!("expected one of the options ({}), found {default:?}", options.join(", ")),
                    );
                }
            }
            ParamKind::Colour { .. } | ParamKind::Bool { .. } => {}
        }
        for (j, binding) in param.bind.iter().enumerate() {
            let bpath = format!("{path}.bind[{j}]");
            let needs = binding_needs(binding);
            let has = crate::params::kind_type_name(&param.kind);
            if needs != has {
                c.report(
                    &bpath,
                    anchor,
                    format!("{binding:?} needs a {needs} parameter, but {:?} is a {has}", param.name),
                );
            }
            check_binding_target(c, &bpath, anchor, binding, &param.kind, &entities);
            let property = binding_property(binding);
            if let Some(other) = properties.insert(property.clone(), param.name.clone())
                && other != param.name
            {
                c.report(
                    &bpath,
                    anchor,
                    format!("{property} is already driven by parameter {other:?}; one property, one parameter"),
                );
            }
        }
    }
}

fn check_binding_target(
    c: &mut Checker,
    path: &str,
    anchor: Option<&str>,
    binding: &BindingDef,
    kind: &ParamKind,
    entities: &HashMap<String, EntityKind>,
) {
    let (target, wants): (&str, &[EntityKind]) = match binding {
        BindingDef::LightColour(n) | BindingDef::LightIntensity(n) => (n, &[EntityKind::Light]),
        BindingDef::Emissive(n) | BindingDef::BaseColour(n) => (n, &[EntityKind::Primitive]),
        BindingDef::Visible(n) | BindingDef::VisibleWhen(n, _) => {
            (n, &[EntityKind::Primitive, EntityKind::Asset, EntityKind::Light])
        }
        BindingDef::EnvironmentPreset => {
            if let ParamKind::Enum { options, .. } = kind {
                for option in options {
                    if EnvironmentPreset::from_name(option).is_none() {
                        c.report(
                            path,
                            anchor,
                            format!(
                                "option {option:?} is not an environment preset; expected one of: {}",
                                list(EnvironmentPreset::ALL.iter().map(|p| p.name()))
                            ),
                        );
                    }
                }
            }
            return;
        }
        BindingDef::SkyColour | BindingDef::FogColour | BindingDef::FogDensity | BindingDef::AmbientBrightness => {
            return;
        }
    };
    match entities.get(target) {
        None => c.report(path, Some(target), format!("no primitive, asset or light named {target:?}")),
        Some(found) if !wants.contains(found) => {
            c.report(path, Some(target), format!("{target:?} is a {found:?}, but this binding needs a {:?}", wants[0]));
        }
        Some(_) => {}
    }
    if let (BindingDef::VisibleWhen(_, option), ParamKind::Enum { options, .. }) = (binding, kind)
        && !options.contains(option)
    {
        c.report(
            path,
            anchor,
            format!("option {option:?} is not one of the parameter's options ({})", options.join(", ")),
        );
    }
}

/// Audio files a show may play.
const SOUND_EXTENSIONS: [&str; 4] = [".ogg", ".wav", ".mp3", ".flac"];

fn check_shows(c: &mut Checker, scene: &SceneFile, assets: &AssetsRoot) {
    use crate::params::StageParams;
    use crate::show::plan::{PlanError, cue_seconds};
    use crate::show::timecode::{FrameRate, Timecode};

    let params = StageParams::from_scene(scene);
    let mut shows = HashSet::new();
    for (i, show) in scene.shows.iter().enumerate() {
        let path = format!("shows[{i}]");
        let anchor = Some(show.name.as_str());
        c.name(&format!("{path}.name"), &show.name);
        if !shows.insert(show.name.as_str()) {
            c.report_at(
                format!("{path}.name"),
                Some(Anchor::Name(&show.name, 2)),
                format!("duplicate show name {:?}", show.name),
            );
        }
        let rate = match FrameRate::from_fps(show.fps) {
            Ok(rate) => rate,
            Err(e) => {
                c.report(format!("{path}.fps"), anchor, e.to_string());
                FrameRate::Fps25
            }
        };
        if show.songs.is_empty() {
            c.report(format!("{path}.songs"), anchor, "a show needs at least one song");
        }
        let mut cue_ids: HashMap<&str, usize> = HashMap::new();
        for (j, song) in show.songs.iter().enumerate() {
            let path = format!("{path}.songs[{j}]");
            let anchor = Some(song.name.as_str());
            if song.name.trim().is_empty() {
                c.report(format!("{path}.name"), None, "expected the song's name, found nothing");
            }
            for (k, track) in song.tracks.iter().enumerate() {
                let lower = track.to_ascii_lowercase();
                if !SOUND_EXTENSIONS.iter().any(|e| lower.ends_with(e)) {
                    c.report(
                        format!("{path}.tracks[{k}]"),
                        Some(track),
                        format!("expected an .ogg, .wav, .mp3 or .flac file, found {track:?}"),
                    );
                } else {
                    match assets.resolve(track) {
                        Err(e) => c.report(format!("{path}.tracks[{k}]"), Some(track), e.to_string()),
                        Ok(file) if !file.is_file() => c.report(
                            format!("{path}.tracks[{k}]"),
                            Some(track),
                            format!("no such audio file under the assets root: {track:?}"),
                        ),
                        Ok(_) => {}
                    }
                }
            }
            if let Some(length) = song.length
                && !(length.is_finite() && length > 0.0 && length <= 86_400.0)
            {
                c.report(
                    format!("{path}.length"),
                    anchor,
                    format!("expected seconds above 0 and at most a day, found {length}"),
                );
            }
            if song.length.is_none() && song.tracks.is_empty() && j + 1 < show.songs.len() {
                c.report(format!("{path}.length"), anchor, PlanError::NoLength(song.name.clone()).to_string());
            }
            for (lang, file) in &song.surtitles {
                let at = format!("{path}.surtitles.{lang}");
                if !scene.venue.languages.is_empty() && !scene.venue.languages.contains(lang) {
                    c.report(
                        &at,
                        Some(file),
                        format!(
                            "language {lang:?} is not one of the venue's languages ({})",
                            scene.venue.languages.join(", ")
                        ),
                    );
                }
                let lower = file.to_ascii_lowercase();
                let vtt = lower.ends_with(".vtt");
                if !(vtt || lower.ends_with(".srt")) {
                    c.report(&at, Some(file), format!("expected an .srt or .vtt file, found {file:?}"));
                    continue;
                }
                match assets.resolve(file) {
                    Err(e) => c.report(&at, Some(file), e.to_string()),
                    Ok(resolved) => match std::fs::read_to_string(&resolved) {
                        Err(e) => c.report(&at, Some(file), format!("{file}: cannot read it: {e}")),
                        Ok(text) => match crate::subtitles::parse(&text, vtt) {
                            Err(e) => c.report(&at, Some(file), format!("{file}: {e}")),
                            Ok(cues) => {
                                if let (Some(length), Some(last)) = (song.length, cues.last())
                                    && last.start >= length
                                {
                                    c.report(
                                        &at,
                                        Some(file),
                                        format!(
                                            "{file}: a surtitle at {:.3} s, after the song's end ({length} s)",
                                            last.start
                                        ),
                                    );
                                }
                            }
                        },
                    },
                }
            }
            if let Some(tc) = &song.timecode
                && let Err(e) = Timecode::parse(tc, rate)
            {
                c.report(format!("{path}.timecode"), Some(tc), e.to_string());
            }
            let mut tempo_ok = true;
            for (k, tempo) in song.tempo.iter().enumerate() {
                let at = format!("{path}.tempo[{k}]");
                let first_bar = if k == 0 { tempo.bar == 1 } else { tempo.bar > song.tempo[k - 1].bar };
                if !first_bar {
                    tempo_ok = false;
                    let expected = if k == 0 {
                        "the first tempo at bar 1".to_owned()
                    } else {
                        format!("a bar after {}", song.tempo[k - 1].bar)
                    };
                    c.report(format!("{at}.bar"), anchor, format!("expected {expected}, found bar {}", tempo.bar));
                }
                if !(tempo.bpm.is_finite() && (1.0..=999.0).contains(&tempo.bpm)) {
                    tempo_ok = false;
                    c.report(
                        format!("{at}.bpm"),
                        anchor,
                        format!("expected 1 to 999 beats a minute, found {}", tempo.bpm),
                    );
                }
                if !(1..=32).contains(&tempo.beats_per_bar) {
                    tempo_ok = false;
                    c.report(
                        format!("{at}.beats_per_bar"),
                        anchor,
                        format!("expected 1 to 32 beats in a bar, found {}", tempo.beats_per_bar),
                    );
                }
            }
            let mut previous: Option<(f64, &str)> = None;
            for (k, cue) in song.cues.iter().enumerate() {
                let path = format!("{path}.cues[{k}]");
                let nth = cue_ids.get(cue.id.as_str()).map_or(1, |n| n + 1);
                let here = Some(Anchor::KeyValue("id", &cue.id, nth));
                if cue.id.is_empty()
                    || cue.id.chars().count() > 32
                    || !cue.id.chars().all(|ch| ch.is_alphanumeric() || "_-.".contains(ch))
                {
                    c.report_at(
                        format!("{path}.id"),
                        here,
                        format!("expected a cue id of 1 to 32 letters, digits, `_`, `-` or `.` (it is part of OSC addresses), found {:?}", cue.id),
                    );
                }
                if nth > 1 {
                    c.report_at(
                        format!("{path}.id"),
                        here,
                        format!("duplicate cue id {:?} in show {:?}", cue.id, show.name),
                    );
                }
                cue_ids.insert(&cue.id, nth);
                // A broken tempo map is reported once, not again for each cue on it.
                if tempo_ok || !matches!(cue.at, CueAt::Bar(..)) {
                    match cue_seconds(song, &cue.at, rate) {
                        Err(e) => c.report_at(format!("{path}.at"), here, e.to_string()),
                        Ok(Some(t)) => {
                            if let Some((before, id)) = previous
                                && t < before - 1e-9
                            {
                                c.report_at(
                                    format!("{path}.at"),
                                    here,
                                    format!("cue {:?} at {t:.3} s comes before cue {id:?} at {before:.3} s: cues are listed in the order they fire", cue.id),
                                );
                            }
                            if let Some(length) = song.length
                                && t > length
                            {
                                c.report_at(
                                    format!("{path}.at"),
                                    here,
                                    format!("at {t:.3} s, after the song's end ({length} s)"),
                                );
                            }
                            previous = Some((t, cue.id.as_str()));
                        }
                        Ok(None) => {}
                    }
                }
                if let Some(follow) = cue.follow {
                    let next = song.cues.get(k + 1).or_else(|| show.songs.get(j + 1).and_then(|s| s.cues.first()));
                    if !(follow.is_finite() && (0.0..=3600.0).contains(&follow)) {
                        c.report_at(
                            format!("{path}.follow"),
                            here,
                            format!("expected 0 to 3600 seconds, found {follow}"),
                        );
                    } else if !next.is_some_and(|n| n.at == CueAt::Manual) {
                        c.report_at(
                            format!("{path}.follow"),
                            here,
                            "a follow-on fires the next cue, which must be `Manual` (a timed cue fires at its own time)",
                        );
                    }
                }
                for (a, action) in cue.actions.iter().enumerate() {
                    let at = format!("{path}.actions[{a}]");
                    if let Err(message) = check_cue_action(scene, &params, action) {
                        c.report_at(at, here, message);
                    }
                }
            }
        }
    }
}

/// Whether `names` (rule names or groups) name closed rules a window can open, or why not: an unknown name, or
/// a rule that is always open (a window on it would change nothing).
pub fn window_rules(scene: &SceneFile, names: &[String]) -> Result<(), String> {
    if names.is_empty() {
        return Err("a window names at least one rule or group".into());
    }
    for name in names {
        let rules: Vec<&AudienceRuleDef> =
            scene.rules.iter().filter(|r| &r.name == name || (!r.group.is_empty() && &r.group == name)).collect();
        if rules.is_empty() {
            let closed = scene.rules.iter().filter(|r| r.closed).map(|r| r.name.as_str());
            return Err(format!("no audience rule or group named {name:?}; closed rules are: {}", list(closed)));
        }
        if let Some(open) = rules.iter().find(|r| !r.closed) {
            return Err(format!(
                "rule {:?} is always open, so a window changes nothing: give it `closed: true`",
                open.name
            ));
        }
    }
    Ok(())
}

/// Whether a cue's action would be applied: its value reads and fits its parameter (as
/// `show::actions::cue_command` reads it), and what it names exists.
fn check_cue_action(scene: &SceneFile, params: &crate::params::StageParams, action: &CueAction) -> Result<(), String> {
    let value = match action {
        CueAction::Set { param, value } => Some((param, value)),
        CueAction::Animate { param, to, .. } => Some((param, to)),
        _ => None,
    };
    if let Some((param, value)) = value {
        params.parse_value(param, value).map_err(|e| e.to_string())?;
    }
    let missing = |what: &str, name: &str, names: Vec<&str>| {
        Err(format!("no {what} named {name:?}; {what}s are: {}", list(names.into_iter())))
    };
    match action {
        CueAction::Animate { param, seconds, .. } => {
            let movable =
                params.def(param).is_ok_and(|d| matches!(d.kind, ParamKind::Float { .. } | ParamKind::Colour { .. }));
            if !movable {
                return Err(format!(
                    "stage parameter {param:?} cannot be animated: only floats and colours move smoothly"
                ));
            }
            if !(seconds.is_finite() && (0.0..=600.0).contains(seconds)) {
                return Err(format!("an animation lasts 0 to 600 seconds, not {seconds}"));
            }
            Ok(())
        }
        CueAction::Spawn { effect, .. } if !scene.effects.iter().any(|e| &e.name == effect) => {
            missing("effect", effect, scene.effects.iter().map(|e| e.name.as_str()).collect())
        }
        CueAction::Hotspot(Some(name)) if !scene.hotspots.iter().any(|h| &h.name == name) => {
            missing("hotspot", name, scene.hotspots.iter().map(|h| h.name.as_str()).collect())
        }
        CueAction::Tour(Some(name)) if !scene.tours.iter().any(|t| &t.name == name) => {
            missing("tour", name, scene.tours.iter().map(|t| t.name.as_str()).collect())
        }
        CueAction::OpenPoll(name) | CueAction::ClosePoll(name) if !scene.polls.iter().any(|p| &p.name == name) => {
            missing("poll", name, scene.polls.iter().map(|p| p.name.as_str()).collect())
        }
        CueAction::OpenWindow { rules, seconds, .. } => {
            if let Some(s) = seconds
                && !(s.is_finite() && (1.0..=3600.0).contains(s))
            {
                return Err(format!("a window stays open 1 to 3600 seconds, not {s}"));
            }
            window_rules(scene, rules)
        }
        CueAction::CloseWindow(rules) => window_rules(scene, rules),
        CueAction::Cut(name) | CueAction::MoveCamera { viewpoint: name, .. }
            if !scene.viewpoints.iter().any(|v| &v.name == name) =>
        {
            missing("viewpoint", name, scene.viewpoints.iter().map(|v| v.name.as_str()).collect())
        }
        CueAction::MoveCamera { seconds, .. } if !(seconds.is_finite() && (0.0..=600.0).contains(seconds)) => {
            Err(format!("a camera move lasts 0 to 600 seconds, not {seconds}"))
        }
        _ => Ok(()),
    }
}
