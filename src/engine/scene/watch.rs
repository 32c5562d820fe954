//! Hot reload: a thread watches the scene file, reads and validates each new version off the
//! frame, and hands the result to the ECS through a small bounded channel.

use std::path::{Path, PathBuf};
use std::sync::mpsc::{Receiver, SyncSender, TrySendError, sync_channel};
use std::time::{Duration, SystemTime};

use bevy::prelude::*;

use crate::engine::rest::Doorbell;
use crate::model::assets_root::AssetsRoot;
use crate::model::scene::format::SceneFile;
use crate::model::scene::validate::{SceneError, load_scene_str};

/// How often the file is looked at. Polling (rather than OS notifications) also catches the
/// save-to-temp-then-rename that many editors do, and network shares.
const POLL_INTERVAL: Duration = Duration::from_millis(150);

/// What the watcher found when the file changed.
#[derive(Debug)]
pub enum SceneFileEvent {
    /// A new valid version.
    Loaded(Box<SceneFile>),
    /// A new version with problems; the venue keeps the last good one.
    Rejected(SceneError),
}

/// The receiving end of a running watcher.
#[derive(Resource)]
pub struct SceneWatcher {
    /// The watched file.
    pub path: PathBuf,
    receiver: std::sync::Mutex<Receiver<SceneFileEvent>>,
}

impl SceneWatcher {
    /// Starts watching `path`, ringing `doorbell` when a new version is found (a resting venue
    /// wakes for it). Versions already seen are not reported again; the thread ends when this
    /// value is dropped.
    pub fn spawn(path: &Path, assets: AssetsRoot, doorbell: Doorbell) -> std::io::Result<Self> {
        // Two slots: one result waiting plus one more; when full, the watcher retries on its
        // next poll instead of queueing, so a burst of saves collapses to the newest.
        let (sender, receiver) = sync_channel(2);
        let initial = std::fs::read_to_string(path).ok();
        let watched = path.to_path_buf();
        std::thread::Builder::new()
            .name("parvis-scene-watch".into())
            .spawn(move || watch_loop(&watched, &assets, initial, &sender, &doorbell))?;
        Ok(Self { path: path.to_path_buf(), receiver: std::sync::Mutex::new(receiver) })
    }

    /// Everything found since the last call, oldest first.
    pub fn drain(&self) -> Vec<SceneFileEvent> {
        let receiver = self.receiver.lock().expect("watcher receiver poisoned");
        receiver.try_iter().collect()
    }
}

fn stamp(path: &Path) -> Option<(SystemTime, u64)> {
    let meta = std::fs::metadata(path).ok()?;
    Some((meta.modified().ok()?, meta.len()))
}

fn watch_loop(
    path: &Path,
    assets: &AssetsRoot,
    mut last_text: Option<String>,
    sender: &SyncSender<SceneFileEvent>,
    doorbell: &Doorbell,
) {
    let file = path.display().to_string();
    let mut last_stamp = stamp(path);
    loop {
        std::thread::sleep(POLL_INTERVAL);
        let now = stamp(path);
        if now.is_none() || now == last_stamp {
            // A missing file is usually an editor between delete and rename: wait for it.
            continue;
        }
        let Ok(text) = std::fs::read_to_string(path) else { continue };
        if last_text.as_deref() == Some(text.as_str()) {
            last_stamp = now;
            continue;
        }
        let event = match load_scene_str(&text, &file, assets) {
            Ok(scene) => SceneFileEvent::Loaded(Box::new(scene)),
            Err(error) => SceneFileEvent::Rejected(error),
        };
        match sender.try_send(event) {
            Ok(()) => {
                last_stamp = now;
                last_text = Some(text);
                doorbell.ring();
            }
            Err(TrySendError::Full(_)) => {} // retried on the next poll
            Err(TrySendError::Disconnected(_)) => return,
        }
    }
}
