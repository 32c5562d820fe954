//! The assets root: the one folder scene files may load models and media from.
//!
//! Every path a curator writes is resolved here, so that no scene can read a file outside the
//! root, whether through `..`, an absolute path or a symbolic link.

use std::path::{Component, Path, PathBuf};

use thiserror::Error;

/// Why an asset path was refused.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum AssetPathError {
    /// The path was empty.
    #[error("asset path is empty")]
    Empty,
    /// The path was absolute or used `..`, `\` or a drive prefix.
    #[error("asset path {0:?} must be relative to the assets root, with `/` separators and no `..`")]
    NotRelative(String),
    /// No file exists at the path.
    #[error("asset {path:?} not found under the assets root {root}")]
    Missing {
        /// Path as written.
        path: String,
        /// The assets root searched.
        root: String,
    },
    /// The path resolves, through a link, to a file outside the root.
    #[error("asset path {0:?} leads outside the assets root")]
    Escapes(String),
}

/// The folder that asset paths in scene files are relative to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AssetsRoot {
    dir: PathBuf,
}

impl AssetsRoot {
    /// Uses `dir` as the assets root. It is made absolute so that later changes of the
    /// working directory do not change what paths mean.
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        let dir = dir.into();
        let dir = std::path::absolute(&dir).unwrap_or(dir);
        Self { dir }
    }

    /// The project's own `assets/` folder: `$PARVIS_ASSETS` if set, else `./assets` if it exists,
    /// else the folder this crate was built from.
    pub fn discover() -> Self {
        if let Some(dir) = std::env::var_os("PARVIS_ASSETS") {
            return Self::new(dir);
        }
        let local = Path::new("assets");
        if local.is_dir() {
            return Self::new(local);
        }
        // This crate lives in `crates/model` of the project.
        Self::new(Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/../../assets")))
    }

    /// The root folder.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Checks that `relative` is a plain relative path and names an existing file inside the
    /// root, and returns that file's absolute path.
    pub fn resolve(&self, relative: &str) -> Result<PathBuf, AssetPathError> {
        let file = self.resolve_entry(relative)?;
        if !file.is_file() {
            return Err(AssetPathError::Missing { path: relative.to_owned(), root: self.dir.display().to_string() });
        }
        Ok(file)
    }

    /// Like [`AssetsRoot::resolve`], for a file or a folder (an imported point cloud).
    pub fn resolve_entry(&self, relative: &str) -> Result<PathBuf, AssetPathError> {
        check_relative(relative)?;
        let missing = || AssetPathError::Missing { path: relative.to_owned(), root: self.dir.display().to_string() };
        let file = self.dir.join(relative).canonicalize().map_err(|_| missing())?;
        let root = self.dir.canonicalize().map_err(|_| missing())?;
        if !file.starts_with(&root) {
            return Err(AssetPathError::Escapes(relative.to_owned()));
        }
        Ok(file)
    }
}

/// Refuses anything but a plain relative path made of normal components.
pub fn check_relative(relative: &str) -> Result<(), AssetPathError> {
    if relative.is_empty() {
        return Err(AssetPathError::Empty);
    }
    let not_relative = || AssetPathError::NotRelative(relative.to_owned());
    // Backslashes and colons would mean different things on other platforms (and `:` is also
    // Bevy's asset-source separator); refuse them everywhere so a scene means one thing.
    if relative.contains(['\\', ':', '\0']) {
        return Err(not_relative());
    }
    for component in Path::new(relative).components() {
        match component {
            Component::Normal(_) | Component::CurDir => {}
            Component::ParentDir | Component::RootDir | Component::Prefix(_) => {
                return Err(not_relative());
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refuses_paths_that_leave_the_root() {
        for bad in ["../secret.glb", "/etc/passwd", "models/../../x.glb", "a\\b.glb", "c:x.glb", ""] {
            assert!(check_relative(bad).is_err(), "{bad:?} should be refused");
        }
        assert!(check_relative("models/fountain.gltf").is_ok());
        assert!(check_relative("./models/fountain.gltf").is_ok());
    }

    #[cfg(unix)]
    #[test]
    fn refuses_symlinks_out_of_the_root() {
        let base = std::env::temp_dir().join(format!("parvis-root-{}", std::process::id()));
        let root = base.join("assets");
        std::fs::create_dir_all(&root).unwrap();
        std::fs::write(base.join("outside.glb"), b"x").unwrap();
        std::fs::write(root.join("inside.glb"), b"x").unwrap();
        let link = root.join("link.glb");
        let _ = std::fs::remove_file(&link);
        std::os::unix::fs::symlink(base.join("outside.glb"), &link).unwrap();
        let assets = AssetsRoot::new(&root);
        assert!(assets.resolve("inside.glb").is_ok());
        assert_eq!(assets.resolve("link.glb"), Err(AssetPathError::Escapes("link.glb".into())));
        assert!(matches!(assets.resolve("nope.glb"), Err(AssetPathError::Missing { .. })));
        std::fs::remove_dir_all(&base).unwrap();
    }
}
