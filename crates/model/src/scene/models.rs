//! glTF models a scene names, held to the same rules as the scene file itself: every file a
//! model refers to — its buffers and images, by relative path or embedded `data:` URI — must
//! be readable, as long as the model says, and inside the assets root. `parvis check` reports
//! each problem with the model's path and the glTF field (`buffers[0].uri`); a scene whose
//! model refers outside the root is refused before any loader reads the file.

use std::path::{Path, PathBuf};

use crate::assets_root::AssetsRoot;

/// Largest glTF JSON (or GLB) a scene may name: the JSON is read whole to be checked.
pub const MAX_MODEL_BYTES: u64 = 256 << 20;

/// One thing wrong with a model.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModelProblem {
    /// The glTF field, e.g. `buffers[0].uri`; empty for the file as a whole.
    pub field: String,
    /// What is wrong.
    pub message: String,
    /// Whether the model can still be drawn without what is wrong (a texture): a warning, not
    /// an error.
    pub drawable: bool,
}

impl ModelProblem {
    fn new(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self { field: field.into(), message: message.into(), drawable: false }
    }
}

/// Checks the model at `relative` (a path in the assets root, as a scene writes it).
pub fn check_model(relative: &str, root: &AssetsRoot) -> Vec<ModelProblem> {
    let file = match root.resolve(relative) {
        Ok(file) => file,
        Err(e) => return vec![ModelProblem::new("", e.to_string())],
    };
    let size = std::fs::metadata(&file).map(|m| m.len()).unwrap_or(0);
    if size > MAX_MODEL_BYTES {
        return vec![ModelProblem::new("", format!("{size} bytes, over the {MAX_MODEL_BYTES} a model may have"))];
    }
    match std::fs::read(&file) {
        Ok(bytes) => check_model_bytes(&bytes, file.parent().unwrap_or(Path::new(".")), root),
        Err(e) => vec![ModelProblem::new("", format!("cannot be read: {e}"))],
    }
}

/// Checks a model's bytes (glTF JSON or GLB) found in the folder `dir`: the document must
/// parse and every buffer and image it refers to must be there, inside `root`.
pub fn check_model_bytes(bytes: &[u8], dir: &Path, root: &AssetsRoot) -> Vec<ModelProblem> {
    let gltf = match parse_gltf(bytes) {
        Ok(gltf) => gltf,
        Err(problem) => return vec![problem],
    };
    let mut problems = Vec::new();
    let mut buffer_lengths = Vec::new();
    for buffer in gltf.document.buffers() {
        let field = format!("buffers[{}]", buffer.index());
        let declared = buffer.length() as u64;
        let held = match buffer.source() {
            gltf::buffer::Source::Bin => match &gltf.blob {
                Some(blob) => Some(blob.len() as u64),
                None => {
                    problems.push(ModelProblem::new(&field, "refers to the GLB's binary chunk, which the file lacks"));
                    None
                }
            },
            gltf::buffer::Source::Uri(uri) => match reference_length(uri, dir, root) {
                Ok(length) => Some(length),
                Err(message) => {
                    problems.push(ModelProblem::new(format!("{field}.uri"), message));
                    None
                }
            },
        };
        if let Some(held) = held
            && held < declared
        {
            problems.push(ModelProblem::new(
                format!("{field}.byteLength"),
                format!("declares {declared} bytes but the data holds {held} (a truncated file?)"),
            ));
        }
        buffer_lengths.push(held.unwrap_or(0));
    }
    for view in gltf.document.views() {
        let end = view.offset() as u64 + view.length() as u64;
        let available = buffer_lengths.get(view.buffer().index()).copied().unwrap_or(0);
        if end > available && available > 0 {
            problems.push(ModelProblem::new(
                format!("bufferViews[{}]", view.index()),
                format!("reaches byte {end} of buffers[{}], which holds {available}", view.buffer().index()),
            ));
        }
    }
    for image in gltf.document.images() {
        if let gltf::image::Source::Uri { uri, .. } = image.source()
            && let Err(message) = reference_length(uri, dir, root)
        {
            // A texture that is not there leaves the model drawable, plainer.
            let escapes = message.contains("outside the assets root") || message.contains("not a relative path");
            problems.push(ModelProblem {
                field: format!("images[{}].uri", image.index()),
                message,
                drawable: !escapes,
            });
        }
    }
    problems
}

/// Parses a glTF document (JSON or GLB), first checking what the `gltf` crate (1.4) takes for
/// granted and panics on otherwise (found by fuzzing): that a primitive's accessors exist and
/// that an image in a buffer view says its MIME type.
pub fn parse_gltf(bytes: &[u8]) -> Result<gltf::Gltf, ModelProblem> {
    let invalid = |e: &dyn std::fmt::Display| ModelProblem::new("", format!("not a valid glTF file: {e}"));
    let json: std::borrow::Cow<[u8]> = if bytes.starts_with(b"glTF") {
        gltf::Glb::from_slice(bytes).map_err(|e| invalid(&e))?.json
    } else {
        bytes.into()
    };
    let value: serde_json::Value = serde_json::from_slice(&json).map_err(|e| invalid(&e))?;
    if let Some(problem) = structure_problem(&value) {
        return Err(problem);
    }
    gltf::Gltf::from_slice(bytes).map_err(|e| invalid(&e))
}

fn structure_problem(root: &serde_json::Value) -> Option<ModelProblem> {
    let accessors = root.get("accessors").and_then(|a| a.as_array()).map_or(0, Vec::len);
    let in_range = |v: &serde_json::Value| v.as_u64().is_some_and(|i| i < accessors as u64);
    let list = |v: Option<&serde_json::Value>| v.and_then(|v| v.as_array()).cloned().unwrap_or_default();
    for (m, mesh) in list(root.get("meshes")).iter().enumerate() {
        for (p, primitive) in list(mesh.get("primitives")).iter().enumerate() {
            let field = format!("meshes[{m}].primitives[{p}]");
            let mut references: Vec<(String, &serde_json::Value)> = Vec::new();
            if let Some(attributes) = primitive.get("attributes").and_then(|a| a.as_object()) {
                references.extend(attributes.iter().map(|(name, v)| (format!("{field}.attributes.{name}"), v)));
            }
            if let Some(indices) = primitive.get("indices") {
                references.push((format!("{field}.indices"), indices));
            }
            for (t, target) in primitive.get("targets").and_then(|t| t.as_array()).into_iter().flatten().enumerate() {
                if let Some(target) = target.as_object() {
                    references.extend(target.iter().map(|(name, v)| (format!("{field}.targets[{t}].{name}"), v)));
                }
            }
            if let Some((field, value)) = references.into_iter().find(|(_, v)| !in_range(v)) {
                return Some(ModelProblem::new(
                    field,
                    format!("names accessor {value}, but the file has {accessors} accessors"),
                ));
            }
        }
    }
    // Data past the end of its view or buffer: Bevy's glTF loader panics on such an accessor
    // (its mesh "has been extracted"), so it is named here first.
    let number = |v: &serde_json::Value, key: &str| v.get(key).and_then(serde_json::Value::as_u64);
    let buffers = list(root.get("buffers"));
    let views = list(root.get("bufferViews"));
    for (v, view) in views.iter().enumerate() {
        let (Some(b), Some(length)) = (number(view, "buffer"), number(view, "byteLength")) else { continue };
        let offset = number(view, "byteOffset").unwrap_or(0);
        if let Some(size) = buffers.get(b as usize).and_then(|buffer| number(buffer, "byteLength"))
            && offset.saturating_add(length) > size
        {
            return Some(ModelProblem::new(
                format!("bufferViews[{v}]"),
                format!(
                    "bytes {offset}..{} lie past the end of buffers[{b}] ({size} bytes)",
                    offset.saturating_add(length)
                ),
            ));
        }
    }
    for (a, accessor) in list(root.get("accessors")).iter().enumerate() {
        let (Some(v), Some(count)) = (number(accessor, "bufferView"), number(accessor, "count")) else { continue };
        let Some(view) = views.get(v as usize) else { continue };
        let component = match number(accessor, "componentType") {
            Some(5120 | 5121) => 1,
            Some(5122 | 5123) => 2,
            Some(5125 | 5126) => 4,
            _ => continue,
        };
        let components = match accessor.get("type").and_then(serde_json::Value::as_str) {
            Some("SCALAR") => 1,
            Some("VEC2") => 2,
            Some("VEC3") => 3,
            Some("VEC4" | "MAT2") => 4,
            Some("MAT3") => 9,
            Some("MAT4") => 16,
            _ => continue,
        };
        // A lower bound for matrices, whose columns may be padded: no false alarm.
        let element = component * components;
        let stride = number(view, "byteStride").unwrap_or(element).max(element);
        let needed = count
            .checked_sub(1)
            .map(|last| {
                number(accessor, "byteOffset")
                    .unwrap_or(0)
                    .saturating_add(last.saturating_mul(stride))
                    .saturating_add(element)
            })
            .unwrap_or(0);
        let held = number(view, "byteLength").unwrap_or(0);
        if needed > held {
            return Some(ModelProblem::new(
                format!("accessors[{a}]"),
                format!("{count} elements need {needed} bytes, but bufferViews[{v}] holds {held}"),
            ));
        }
    }
    for (i, image) in list(root.get("images")).iter().enumerate() {
        let (view, uri, mime) = (image.get("bufferView"), image.get("uri"), image.get("mimeType"));
        if view.is_some() && mime.is_none() {
            return Some(ModelProblem::new(
                format!("images[{i}].mimeType"),
                "is required for an image in a buffer view",
            ));
        }
        if view.is_none() && uri.is_none() {
            return Some(ModelProblem::new(format!("images[{i}]"), "has neither a uri nor a bufferView"));
        }
    }
    None
}

/// The length of the data a glTF URI refers to: decoded `data:` URIs, or files relative to
/// `dir` that must stay inside `root`.
fn reference_length(uri: &str, dir: &Path, root: &AssetsRoot) -> Result<u64, String> {
    if let Some(data) = uri.strip_prefix("data:") {
        return data_uri_length(data).ok_or_else(|| "is a data: URI that is not valid base64 data".to_owned());
    }
    let path = resolve_reference(uri, dir, root)?;
    std::fs::metadata(&path).map(|m| m.len()).map_err(|e| match e.kind() {
        std::io::ErrorKind::NotFound => format!("{uri:?}: no such file ({})", path.display()),
        _ => format!("{uri:?}: cannot be read: {e}"),
    })
}

/// The file a relative glTF URI names, seen from the model's folder `dir`: percent-decoded,
/// not absolute, not another scheme (`file://`, `http://`), and — through `..` and symbolic
/// links alike — inside the assets `root`.
pub fn resolve_reference(uri: &str, dir: &Path, root: &AssetsRoot) -> Result<PathBuf, String> {
    let decoded = percent_decode(uri).ok_or_else(|| format!("{uri:?} is not a valid URI"))?;
    let scheme = decoded
        .split_once(':')
        .is_some_and(|(s, _)| !s.is_empty() && s.chars().all(|c| c.is_ascii_alphanumeric() || "+-.".contains(c)));
    if scheme || decoded.starts_with('/') || decoded.starts_with('\\') || decoded.contains('\\') {
        return Err(format!("{uri:?} is not a relative path inside the assets root"));
    }
    let joined = dir.join(&decoded);
    let root_dir = root.dir().canonicalize().unwrap_or_else(|_| root.dir().to_owned());
    // The path as written must stay inside, whether or not the file exists.
    let mut normal = PathBuf::new();
    for part in joined.components() {
        match part {
            std::path::Component::ParentDir => {
                normal.pop();
            }
            std::path::Component::CurDir => {}
            other => normal.push(other),
        }
    }
    let normal_root = std::path::absolute(root.dir()).unwrap_or_else(|_| root.dir().to_owned());
    if !normal.starts_with(&normal_root) && !normal.starts_with(&root_dir) {
        return Err(format!("{uri:?} leads outside the assets root"));
    }
    // And where it exists, through links too.
    if let Ok(real) = normal.canonicalize()
        && !real.starts_with(&root_dir)
    {
        return Err(format!("{uri:?} leads outside the assets root (through a link)"));
    }
    Ok(normal)
}

/// `%XX` escapes decoded, as glTF URIs are written; `None` for a bad escape or non-UTF-8.
pub fn percent_decode(uri: &str) -> Option<String> {
    let bytes = uri.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = std::str::from_utf8(bytes.get(i + 1..i + 3)?).ok()?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

/// The decoded length of a base64 `data:` URI's payload (after `data:`), if it is one.
fn data_uri_length(data: &str) -> Option<u64> {
    let (header, payload) = data.split_once(',')?;
    if !header.ends_with(";base64") {
        return percent_decode(payload).map(|p| p.len() as u64);
    }
    let payload = payload.trim_end_matches('=');
    if !payload.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'+' || b == b'/') || payload.len() % 4 == 1 {
        return None;
    }
    Some(payload.len() as u64 * 3 / 4)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn root() -> (AssetsRoot, PathBuf) {
        let dir = std::env::temp_dir().join(format!(
            "parvis-models-{}-{:?}",
            std::process::id(),
            std::thread::current().id()
        ));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(dir.join("assets/models/textures")).unwrap();
        std::fs::write(dir.join("assets/models/box.bin"), [0u8; 24]).unwrap();
        std::fs::write(dir.join("assets/models/textures/wood.png"), b"png").unwrap();
        std::fs::write(dir.join("secret.txt"), b"outside").unwrap();
        (AssetsRoot::new(dir.join("assets")), dir)
    }

    fn gltf(buffer_uri: &str, byte_length: u32, image_uri: &str) -> String {
        format!(
            r#"{{"asset":{{"version":"2.0"}},"buffers":[{{"uri":"{buffer_uri}","byteLength":{byte_length}}}],
                "bufferViews":[{{"buffer":0,"byteOffset":0,"byteLength":{byte_length}}}],
                "images":[{{"uri":"{image_uri}"}}]}}"#
        )
    }

    fn problems(text: &str, root: &AssetsRoot) -> Vec<ModelProblem> {
        check_model_bytes(text.as_bytes(), &root.dir().join("models"), root)
    }

    /// Found by fuzzing (`gltf`): the `gltf` crate panics on a primitive whose accessor does
    /// not exist, and on an image with neither a URI nor a buffer view (or one in a buffer view
    /// without its MIME type). Each is a problem naming its field, not a crash.
    #[test]
    fn what_the_gltf_crate_would_panic_on_is_a_problem_naming_its_field() {
        let (root, dir) = root();
        let cases = [
            (
                r#"{"asset":{"version":"2.0"},"meshes":[{"primitives":[{"attributes":{"POSITION":3}}]}]}"#,
                "meshes[0].primitives[0].attributes.POSITION",
                "names accessor 3, but the file has 0 accessors",
            ),
            (
                r#"{"asset":{"version":"2.0"},"accessors":[{"componentType":5126,"count":1,"type":"VEC3"}],
                   "meshes":[{"primitives":[{"attributes":{"POSITION":0},"indices":7}]}]}"#,
                "meshes[0].primitives[0].indices",
                "names accessor 7",
            ),
            (
                r#"{"asset":{"version":"2.0"},"buffers":[{"uri":"box.bin","byteLength":24}],"bufferViews":[{"buffer":0,"byteLength":24}],"images":[{}]}"#,
                "images[0]",
                "neither a uri nor a bufferView",
            ),
            (
                r#"{"asset":{"version":"2.0"},"buffers":[{"uri":"box.bin","byteLength":24}],"bufferViews":[{"buffer":0,"byteLength":24}],"images":[{"bufferView":0}]}"#,
                "images[0].mimeType",
                "is required",
            ),
        ];
        for (text, field, message) in cases {
            let found = problems(text, &root);
            assert!(
                found.len() == 1 && found[0].field == field && found[0].message.contains(message) && !found[0].drawable,
                "{text}: {found:?}"
            );
        }
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn a_whole_model_passes_and_each_broken_reference_names_its_field() {
        let (root, dir) = root();
        assert_eq!(problems(&gltf("box.bin", 24, "textures/wood.png"), &root), vec![]);
        assert_eq!(
            problems(&gltf("box%2Ebin", 24, "textures/../textures/wood.png"), &root),
            vec![],
            "escapes and .. inside"
        );
        let cases = [
            (gltf("missing.bin", 24, "textures/wood.png"), "buffers[0].uri", "no such file", false),
            (
                gltf("box.bin", 48, "textures/wood.png"),
                "buffers[0].byteLength",
                "declares 48 bytes but the data holds 24",
                false,
            ),
            (
                gltf("../../../../etc/hostname", 4, "textures/wood.png"),
                "buffers[0].uri",
                "outside the assets root",
                false,
            ),
            (gltf("../../secret.txt", 4, "textures/wood.png"), "buffers[0].uri", "outside the assets root", false),
            (gltf("/etc/hostname", 4, "textures/wood.png"), "buffers[0].uri", "not a relative path", false),
            (gltf("file:///etc/hostname", 4, "textures/wood.png"), "buffers[0].uri", "not a relative path", false),
            (gltf("box.bin", 24, "textures/missing.png"), "images[0].uri", "no such file", true),
            (gltf("box.bin", 24, "../../secret.txt"), "images[0].uri", "outside the assets root", false),
            (
                gltf("data:application/octet-stream;base64,AAAA", 24, "textures/wood.png"),
                "buffers[0].byteLength",
                "holds 3",
                false,
            ),
            (
                gltf("data:application/octet-stream;base64,!!!", 4, "textures/wood.png"),
                "buffers[0].uri",
                "not valid base64",
                false,
            ),
        ];
        for (text, field, message, drawable) in cases {
            let found = problems(&text, &root);
            assert!(
                found.iter().any(|p| p.field == field && p.message.contains(message) && p.drawable == drawable),
                "{field} {message}: {found:#?}"
            );
        }
        let cut = problems(r#"{"asset":{"version":"2.0"},"buffers":[{"uri":"box.bin""#, &root);
        assert!(cut[0].message.starts_with("not a valid glTF file"), "{cut:?}");
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn a_link_out_of_the_root_is_refused_too() {
        let (root, dir) = root();
        std::os::unix::fs::symlink(dir.join("secret.txt"), dir.join("assets/models/link.bin")).unwrap();
        let found = problems(&gltf("link.bin", 4, "textures/wood.png"), &root);
        assert!(found.iter().any(|p| p.message.contains("through a link")), "{found:?}");
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn uris_are_percent_decoded_and_bad_escapes_refused() {
        assert_eq!(percent_decode("t%C3%AAte%20nord.png").as_deref(), Some("tête nord.png"));
        assert_eq!(percent_decode("plain.bin").as_deref(), Some("plain.bin"));
        assert_eq!(percent_decode("bad%2"), None);
        assert_eq!(percent_decode("bad%zz"), None);
        assert_eq!(percent_decode("%FF"), None, "not UTF-8");
    }
}
