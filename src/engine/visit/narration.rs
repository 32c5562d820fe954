//! Narration and audio descriptions through kira: a tour's voice plays as is, a hotspot's
//! description plays from where the hotspot stands (kira's spatial tracks, the listener at
//! the visitor's camera). With no sound card (a server, CI) the same mixer runs silently on
//! kira's mock backend, so timing and logs do not depend on the machine.

use std::path::{Path, PathBuf};
use std::time::Duration;

use bevy::prelude::*;
use kira::backend::mock::MockBackend;
use kira::listener::ListenerHandle;
use kira::sound::static_sound::{StaticSoundData, StaticSoundHandle};
use kira::track::{SpatialTrackBuilder, SpatialTrackHandle};
use kira::{AudioManager, AudioManagerSettings, DefaultBackend, Tween};
use thiserror::Error;

/// Why a sound did not play.
#[derive(Debug, Error)]
pub enum NarrationError {
    /// The file could not be read or decoded.
    #[error("{path}: cannot play it: {why}")]
    Decode {
        /// The file.
        path: PathBuf,
        /// The decoder's message.
        why: String,
    },
    /// The mixer refused (too many sounds at once).
    #[error("the mixer is full: {0}")]
    Mixer(String),
}

/// What a sound was for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SoundKind {
    /// A tour stop's narration.
    Narration,
    /// A hotspot's audio description.
    Description,
}

/// A sound that started, for logs and tests.
#[derive(Debug, Clone, PartialEq)]
pub struct Played {
    /// The file.
    pub path: PathBuf,
    /// Its language.
    pub language: String,
    /// What it was for.
    pub kind: SoundKind,
    /// Its length.
    pub duration: Duration,
    /// Where it plays from, for descriptions.
    pub at: Option<Vec3>,
}

enum Output {
    Device(Box<AudioManager<DefaultBackend>>),
    Silent(Box<AudioManager<MockBackend>>),
}

/// Runs the same call on whichever mixer is in use.
macro_rules! on_mixer {
    ($output:expr, $m:ident => $body:expr) => {
        match $output {
            Output::Device($m) => $body,
            Output::Silent($m) => $body,
        }
    };
}

/// The venue's voice.
#[derive(Resource)]
pub struct Narrator {
    output: Output,
    listener: Option<ListenerHandle>,
    voice: Option<StaticSoundHandle>,
    description: Option<(SpatialTrackHandle, StaticSoundHandle)>,
    /// Every sound started, oldest first (the last 64).
    pub played: Vec<Played>,
}

impl Narrator {
    /// A narrator on the sound card if `device` and one is there, else a silent one.
    pub fn new(device: bool) -> Self {
        let output = if device {
            match AudioManager::<DefaultBackend>::new(AudioManagerSettings::default()) {
                Ok(manager) => Some(Output::Device(Box::new(manager))),
                Err(e) => {
                    warn!("no sound output ({e}): narration and audio descriptions are silent");
                    None
                }
            }
        } else {
            None
        };
        let mut output = output.unwrap_or_else(|| {
            Output::Silent(Box::new(
                AudioManager::<MockBackend>::new(AudioManagerSettings::default())
                    .expect("the mock backend always starts"),
            ))
        });
        let listener = on_mixer!(&mut output, m => m.add_listener(mint::Vector3 { x: 0.0, y: 0.0, z: 0.0 }, mint::Quaternion { s: 1.0, v: mint::Vector3 { x: 0.0, y: 0.0, z: 0.0 } }).ok());
        Self { output, listener, voice: None, description: None, played: Vec::new() }
    }

    /// Whether sound reaches a device.
    pub fn audible(&self) -> bool {
        matches!(self.output, Output::Device(_))
    }

    fn load(path: &Path) -> Result<StaticSoundData, NarrationError> {
        StaticSoundData::from_file(path)
            .map_err(|e| NarrationError::Decode { path: path.to_owned(), why: e.to_string() })
    }

    fn remember(&mut self, played: Played) {
        if self.played.len() == 64 {
            self.played.remove(0);
        }
        self.played.push(played);
    }

    /// Plays a tour narration, stopping the previous one; returns its length.
    pub fn narrate(&mut self, path: &Path, language: &str) -> Result<Duration, NarrationError> {
        self.stop_narration();
        let data = Self::load(path)?;
        let duration = data.duration();
        let handle =
            on_mixer!(&mut self.output, m => m.play(data)).map_err(|e| NarrationError::Mixer(e.to_string()))?;
        self.voice = Some(handle);
        self.remember(Played {
            path: path.to_owned(),
            language: language.to_owned(),
            kind: SoundKind::Narration,
            duration,
            at: None,
        });
        Ok(duration)
    }

    /// Plays a hotspot's description from `at`, stopping the previous one.
    pub fn describe_at(&mut self, path: &Path, language: &str, at: Vec3) -> Result<Duration, NarrationError> {
        self.stop_description();
        let data = Self::load(path)?;
        let duration = data.duration();
        let Some(listener) = &self.listener else { return Err(NarrationError::Mixer("no listener".into())) };
        let position = mint::Vector3 { x: at.x, y: at.y, z: at.z };
        let builder = SpatialTrackBuilder::new().persist_until_sounds_finish(true);
        let mut track = on_mixer!(&mut self.output, m => m.add_spatial_sub_track(listener, position, builder))
            .map_err(|e| NarrationError::Mixer(e.to_string()))?;
        let handle = track.play(data).map_err(|e| NarrationError::Mixer(e.to_string()))?;
        self.description = Some((track, handle));
        self.remember(Played {
            path: path.to_owned(),
            language: language.to_owned(),
            kind: SoundKind::Description,
            duration,
            at: Some(at),
        });
        Ok(duration)
    }

    /// Stops the tour's voice.
    pub fn stop_narration(&mut self) {
        if let Some(mut voice) = self.voice.take() {
            voice.stop(Tween::default());
        }
    }

    /// Stops the hotspot's description.
    pub fn stop_description(&mut self) {
        if let Some((_, mut sound)) = self.description.take() {
            sound.stop(Tween::default());
        }
    }

    /// Puts the listener at the visitor's ears.
    pub fn set_listener(&mut self, transform: &GlobalTransform) {
        if let Some(listener) = &mut self.listener {
            let (_, rotation, position) = transform.to_scale_rotation_translation();
            listener.set_position(mint::Vector3 { x: position.x, y: position.y, z: position.z }, Tween::default());
            listener.set_orientation(
                mint::Quaternion { s: rotation.w, v: mint::Vector3 { x: rotation.x, y: rotation.y, z: rotation.z } },
                Tween::default(),
            );
        }
    }

    /// The silent mixer has no audio thread: run it a little each frame so that finished and
    /// stopped sounds are cleaned up.
    pub fn pump(&mut self) {
        if let Output::Silent(m) = &mut self.output {
            m.backend_mut().on_start_processing();
            m.backend_mut().process();
        }
    }
}
