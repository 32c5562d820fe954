//! The layering of the code, checked: imports point one way only — model ← engine ← edges ←
//! app — one edge never imports another, and no two source files import each other, directly
//! or round a longer circle. docs/design.md draws the layers.
//!
//! The check reads the sources (no compiler needed): every `use` (including relative ones,
//! such as a folder's `mod.rs` using its child modules), and every `crate::`, `super::`,
//! `parvis::` and `parvis_model::` path outside comments and test modules, is an import of the
//! module file it names. It is tested on small made-up trees that break each rule, so a
//! checker that stopped finding anything would fail here too.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// A layer of the house, lowest first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Layer {
    Model,
    Engine,
    Edges,
    App,
}

/// One source file as a module: which crate, its module path, its layer.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
struct Module {
    /// "model", "lib" or "bin".
    krate: &'static str,
    /// Module path inside its crate, e.g. `engine::audience::hub`; empty for the crate root.
    path: Vec<String>,
}

impl Module {
    fn name(&self) -> String {
        let prefix = match self.krate {
            "model" => "parvis_model",
            "lib" => "parvis",
            _ => "parvis (binary)",
        };
        if self.path.is_empty() { prefix.to_owned() } else { format!("{prefix}::{}", self.path.join("::")) }
    }

    fn layer(&self) -> Layer {
        match (self.krate, self.path.first().map(String::as_str)) {
            ("model", _) => Layer::Model,
            ("lib", Some("engine")) => Layer::Engine,
            ("lib", Some("edges")) => Layer::Edges,
            _ => Layer::App,
        }
    }

    /// The edge a module of the edges layer belongs to (`audience`, `bridge`, …).
    fn edge(&self) -> Option<&str> {
        (self.layer() == Layer::Edges).then(|| self.path.get(1).map(String::as_str)).flatten()
    }
}

/// The module a source file is, from its path relative to the project root.
fn module_of(file: &str) -> Option<Module> {
    let (krate, rest) = if let Some(rest) = file.strip_prefix("crates/model/src/") {
        ("model", rest)
    } else if let Some(rest) = file.strip_prefix("src/") {
        if rest == "main.rs" || rest.starts_with("cli/") { ("bin", rest) } else { ("lib", rest) }
    } else {
        return None;
    };
    let rest = rest.strip_suffix(".rs")?;
    let mut path: Vec<String> = rest.split('/').map(str::to_owned).collect();
    if matches!(path.last().map(String::as_str), Some("mod" | "lib" | "main")) {
        path.pop();
    }
    Some(Module { krate, path })
}

/// The source with comments, string and character literals blanked, and the test module cut.
fn code_of(source: &str) -> String {
    let source = match source.find("#[cfg(test)]\nmod tests") {
        Some(at) => &source[..at],
        None => source,
    };
    let mut out = String::with_capacity(source.len());
    let mut chars = source.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '/' if chars.peek() == Some(&'/') => {
                for c in chars.by_ref() {
                    if c == '\n' {
                        out.push('\n');
                        break;
                    }
                }
            }
            '"' => {
                // A string: skip to its closing quote, honouring escapes.
                let mut escaped = false;
                for c in chars.by_ref() {
                    if c == '\n' {
                        out.push('\n');
                    }
                    if escaped {
                        escaped = false;
                    } else if c == '\\' {
                        escaped = true;
                    } else if c == '"' {
                        break;
                    }
                }
                out.push_str("\"\"");
            }
            _ => out.push(c),
        }
    }
    out
}

/// Expands one `use` tree (`a::{b, c::{d, e}}`) into its paths.
fn expand_use(tree: &str) -> Vec<String> {
    let tree: String = tree.chars().filter(|c| !c.is_whitespace()).collect();
    let Some(open) = tree.find('{') else { return vec![tree] };
    let prefix = &tree[..open];
    let inner = &tree[open + 1..tree.rfind('}').unwrap_or(tree.len())];
    let mut parts = Vec::new();
    let (mut depth, mut start) = (0, 0);
    for (i, c) in inner.char_indices() {
        match c {
            '{' => depth += 1,
            '}' => depth -= 1,
            ',' if depth == 0 => {
                parts.push(&inner[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    parts.push(&inner[start..]);
    parts
        .into_iter()
        .filter(|p| !p.is_empty())
        .flat_map(|p| expand_use(p).into_iter().map(move |e| format!("{prefix}{e}")))
        .collect()
}

/// Every path the code names that starts at a crate, a parent module or one of `children`
/// (the current module's child modules, which a path may name without `self::`).
fn paths_in(code: &str, children: &[String]) -> Vec<String> {
    let mut paths = Vec::new();
    let mut rest = code;
    while let Some(at) = rest.find("use ") {
        let before = rest[..at].chars().next_back();
        let tail = &rest[at + 4..];
        let end = tail.find(';').unwrap_or(tail.len());
        if before.is_none_or(|c| !c.is_alphanumeric() && c != '_') {
            paths.extend(expand_use(&tail[..end]));
        }
        rest = &tail[end.min(tail.len())..];
    }
    // Paths written inline, e.g. `crate::engine::xr::probe()` or `locomotion::floor_below()`.
    let bytes = code.as_bytes();
    let roots = ["crate::", "super::", "parvis::", "parvis_model::"]
        .map(String::from)
        .into_iter()
        .chain(children.iter().map(|c| format!("{c}::")));
    for root in roots {
        let mut from = 0;
        while let Some(found) = code[from..].find(&root) {
            let at = from + found;
            from = at + root.len();
            if at > 0 && (bytes[at - 1].is_ascii_alphanumeric() || bytes[at - 1] == b'_' || bytes[at - 1] == b':') {
                continue;
            }
            let len =
                code[at..].find(|c: char| !(c.is_alphanumeric() || c == '_' || c == ':')).unwrap_or(code.len() - at);
            let path = &code[at..at + len];
            // `a::{b, c}` and `a::*` are use trees, read whole above.
            if !path.ends_with("::") {
                paths.push(path.to_owned());
            }
        }
    }
    paths
}

/// The module file a path leads to, seen from `from`; `None` for other crates and std.
fn resolve(from: &Module, path: &str, modules: &BTreeSet<Module>) -> Option<Module> {
    let segments: Vec<&str> = path.split("::").map(|s| s.split(" as ").next().unwrap_or(s)).collect();
    let (krate, mut base, rest): (&'static str, Vec<String>, &[&str]) = match segments.first()? {
        &"crate" => (from.krate, Vec::new(), &segments[1..]),
        &"parvis_model" => ("model", Vec::new(), &segments[1..]),
        &"parvis" => ("lib", Vec::new(), &segments[1..]),
        &"super" => {
            // The parent module, whether the file is `a/b.rs` or `a/b/mod.rs`.
            let mut base = from.path.clone();
            base.pop();
            let mut rest = &segments[1..];
            while rest.first() == Some(&"super") {
                base.pop();
                rest = &rest[1..];
            }
            (from.krate, base, rest)
        }
        &"self" => (from.krate, from.path.clone(), &segments[1..]),
        // A path relative to this module: one of its child modules.
        child
            if modules.contains(&Module {
                krate: from.krate,
                path: [from.path.clone(), vec![(*child).to_owned()]].concat(),
            }) =>
        {
            (from.krate, from.path.clone(), &segments[..])
        }
        _ => return None,
    };
    // The library re-exports the model as `model`.
    let (krate, rest) =
        if krate == "lib" && rest.first() == Some(&"model") { ("model", &rest[1..]) } else { (krate, rest) };
    let mut best = Module { krate, path: base.clone() };
    for segment in rest {
        base.push((*segment).to_owned());
        let candidate = Module { krate, path: base.clone() };
        if modules.contains(&candidate) {
            best = candidate;
        } else {
            break;
        }
    }
    modules.contains(&best).then_some(best)
}

/// What is wrong with a tree of sources (path relative to the root → text).
fn problems(sources: &BTreeMap<String, String>) -> Vec<String> {
    let modules: BTreeSet<Module> = sources.keys().filter_map(|f| module_of(f)).collect();
    let mut imports: BTreeMap<Module, BTreeSet<Module>> = BTreeMap::new();
    let mut problems = Vec::new();
    for (file, text) in sources {
        let Some(from) = module_of(file) else { continue };
        let targets = imports.entry(from.clone()).or_default();
        let children: Vec<String> = modules
            .iter()
            .filter(|m| m.krate == from.krate && m.path.len() == from.path.len() + 1 && m.path.starts_with(&from.path))
            .map(|m| m.path.last().expect("a child").clone())
            .collect();
        for path in paths_in(&code_of(text), &children) {
            let Some(to) = resolve(&from, &path, &modules) else { continue };
            if to == from || to.path.is_empty() {
                continue;
            }
            if to.layer() > from.layer() {
                problems.push(format!(
                    "{file}: the {:?} layer imports the {:?} layer: {path}",
                    from.layer(),
                    to.layer()
                ));
            }
            if let (Some(a), Some(b)) = (from.edge(), to.edge())
                && a != b
            {
                problems.push(format!(
                    "{file}: the {a} edge imports the {b} edge: {path} (edges meet only through the engine)"
                ));
            }
            targets.insert(to);
        }
    }
    for circle in circles(&imports) {
        let names: Vec<String> = circle.iter().map(Module::name).collect();
        problems.push(format!("these modules import each other in a circle: {}", names.join(" → ")));
    }
    problems.sort();
    problems.dedup();
    problems
}

/// The strongly connected groups of more than one module (Tarjan), each as a list.
fn circles(imports: &BTreeMap<Module, BTreeSet<Module>>) -> Vec<Vec<Module>> {
    struct Walk<'a> {
        imports: &'a BTreeMap<Module, BTreeSet<Module>>,
        index: BTreeMap<&'a Module, usize>,
        low: BTreeMap<&'a Module, usize>,
        stack: Vec<&'a Module>,
        on_stack: BTreeSet<&'a Module>,
        found: Vec<Vec<Module>>,
    }
    impl<'a> Walk<'a> {
        fn visit(&mut self, v: &'a Module) {
            let i = self.index.len();
            self.index.insert(v, i);
            self.low.insert(v, i);
            self.stack.push(v);
            self.on_stack.insert(v);
            for w in self.imports.get(v).into_iter().flatten() {
                if !self.index.contains_key(w) {
                    self.visit(w);
                    let low = self.low[v].min(self.low[w]);
                    self.low.insert(v, low);
                } else if self.on_stack.contains(w) {
                    let low = self.low[v].min(self.index[w]);
                    self.low.insert(v, low);
                }
            }
            if self.low[v] == self.index[v] {
                let mut group = Vec::new();
                while let Some(w) = self.stack.pop() {
                    self.on_stack.remove(w);
                    group.push(w.clone());
                    if w == v {
                        break;
                    }
                }
                if group.len() > 1 {
                    group.sort();
                    self.found.push(group);
                }
            }
        }
    }
    let mut walk = Walk {
        imports,
        index: BTreeMap::new(),
        low: BTreeMap::new(),
        stack: Vec::new(),
        on_stack: BTreeSet::new(),
        found: Vec::new(),
    };
    for v in imports.keys() {
        if !walk.index.contains_key(v) {
            walk.visit(v);
        }
    }
    walk.found
}

fn read_tree(root: &Path) -> BTreeMap<String, String> {
    fn walk(dir: &Path, root: &Path, out: &mut BTreeMap<String, String>) {
        let Ok(entries) = std::fs::read_dir(dir) else { return };
        for entry in entries.flatten() {
            let path: PathBuf = entry.path();
            if path.is_dir() {
                walk(&path, root, out);
            } else if path.extension().is_some_and(|e| e == "rs") {
                let relative = path.strip_prefix(root).expect("inside the root").to_string_lossy().replace('\\', "/");
                out.insert(relative, std::fs::read_to_string(&path).expect("readable source"));
            }
        }
    }
    let mut out = BTreeMap::new();
    walk(&root.join("src"), root, &mut out);
    walk(&root.join("crates/model/src"), root, &mut out);
    out
}

#[test]
fn imports_point_down_the_layers_and_never_round_a_circle() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let sources = read_tree(root);
    assert!(sources.len() > 50, "the sources were found: {}", sources.len());
    let layers: BTreeSet<Layer> = sources.keys().filter_map(|f| module_of(f)).map(|m| m.layer()).collect();
    assert_eq!(layers.len(), 4, "every layer has modules: {layers:?}");
    let problems = problems(&sources);
    assert!(problems.is_empty(), "{} layering problems:\n{}", problems.len(), problems.join("\n"));
}

#[test]
fn every_layer_folder_says_what_it_owns_and_may_use() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    for file in [
        "crates/model/src/lib.rs",
        "src/lib.rs",
        "src/engine/mod.rs",
        "src/edges/mod.rs",
        "src/app/mod.rs",
        "src/cli/mod.rs",
    ] {
        let text = std::fs::read_to_string(root.join(file)).unwrap();
        assert!(text.starts_with("//!"), "{file} opens with a //! paragraph");
    }
    for file in ["crates/model/src/lib.rs", "src/engine/mod.rs", "src/edges/mod.rs", "src/app/mod.rs"] {
        let text = std::fs::read_to_string(root.join(file)).unwrap();
        let head: String = text.lines().take_while(|l| l.starts_with("//!")).collect::<Vec<_>>().join("\n");
        assert!(
            head.contains("owns") && head.contains("may use"),
            "{file} says what it owns and what it may use:\n{head}"
        );
    }
}

fn tree(files: &[(&str, &str)]) -> BTreeMap<String, String> {
    files.iter().map(|(f, t)| ((*f).to_owned(), (*t).to_owned())).collect()
}

#[test]
fn an_import_up_the_layers_is_found() {
    let bad = tree(&[
        ("crates/model/src/lib.rs", "pub mod scene;"),
        ("crates/model/src/scene.rs", "use std::fmt;\n"),
        ("src/lib.rs", "pub use parvis_model as model;\npub mod engine;\npub mod edges;\n"),
        ("src/engine/mod.rs", "pub mod spawn;"),
        // The engine reaching into a server: what the layering forbids.
        ("src/engine/spawn.rs", "use crate::model::scene;\nuse crate::edges::server::Roles;\n"),
        ("src/edges/mod.rs", "pub mod server;"),
        ("src/edges/server.rs", "use crate::engine::spawn;\n"),
    ]);
    let problems = problems(&bad);
    assert!(
        problems.iter().any(|p| p.contains("src/engine/spawn.rs: the Engine layer imports the Edges layer")),
        "{problems:#?}"
    );
    // The same import written inline, with braces, or from the model: all found.
    let inline = tree(&[
        ("crates/model/src/lib.rs", "pub mod scene;"),
        ("crates/model/src/scene.rs", "fn f() { let _ = parvis::engine::spawn::x(); }\n"),
        ("src/lib.rs", "pub mod engine;"),
        ("src/engine/mod.rs", "pub mod spawn;"),
        ("src/engine/spawn.rs", "use crate::{model::scene, app::{self, Setup}};\n"),
        ("src/app/mod.rs", "//! app\n"),
    ]);
    let problems = problems_of(&inline);
    assert!(
        problems.iter().any(|p| p.starts_with("crates/model/src/scene.rs: the Model layer imports the Engine layer")),
        "{problems:#?}"
    );
    assert!(
        problems.iter().any(|p| p.starts_with("src/engine/spawn.rs: the Engine layer imports the App layer")),
        "{problems:#?}"
    );
}

fn problems_of(sources: &BTreeMap<String, String>) -> Vec<String> {
    problems(sources)
}

#[test]
fn a_circle_and_an_edge_leaning_on_another_are_found() {
    let bad = tree(&[
        ("src/lib.rs", "pub mod engine;\npub mod edges;"),
        ("src/engine/mod.rs", "pub mod cache;\npub mod octree;\npub mod xr;"),
        ("src/engine/cache.rs", "use super::octree::Cube;\n"),
        ("src/engine/octree.rs", "fn f() { super::cache::write(); }\n"),
        // A folder's module using its child, which uses the folder's module.
        ("src/engine/xr/mod.rs", "pub mod panel;\nfn build() { add(panel::PanelPlugin); }\npub struct XrHead;\n"),
        ("src/engine/xr/panel.rs", "use super::XrHead;\n"),
        ("src/edges/mod.rs", "pub mod bridge;\npub mod audience;"),
        ("src/edges/bridge.rs", "use crate::edges::audience::Shared;\n"),
        (
            "src/edges/audience.rs",
            "// use crate::edges::bridge; (a comment is not an import)\nconst S: &str = \"crate::edges::bridge\";\n",
        ),
    ]);
    let problems = problems(&bad);
    assert!(
        problems.iter().any(|p| p.contains("circle") && p.contains("engine::cache") && p.contains("engine::octree")),
        "{problems:#?}"
    );
    assert!(
        problems.iter().any(|p| p.contains("circle") && p.contains("engine::xr →") && p.contains("engine::xr::panel")),
        "{problems:#?}"
    );
    assert!(problems.iter().any(|p| p.contains("the bridge edge imports the audience edge")), "{problems:#?}");
    assert!(
        !problems.iter().any(|p| p.contains("the audience edge imports")),
        "comments and strings are not imports: {problems:#?}"
    );
    // A test module may use anything of its own file's parent.
    let tests_only = tree(&[
        ("src/lib.rs", "pub mod engine;"),
        ("src/engine/mod.rs", "pub mod a;\npub mod b;"),
        ("src/engine/a.rs", "use super::b::B;\n"),
        ("src/engine/b.rs", "pub struct B;\n#[cfg(test)]\nmod tests {\n    use crate::engine::a;\n}\n"),
    ]);
    assert!(problems_of(&tests_only).is_empty(), "{:#?}", problems_of(&tests_only));
}
