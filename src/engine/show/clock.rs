//! The show's clock and music, on kira: a clock ticking once a second (its fraction gives the
//! exact position) and the songs' tracks streamed from disk, on one mixer so that the music and
//! the cues keep the same time. With no sound card (headless, CI, `parvis render`) the same
//! mixer runs on kira's mock backend, pumped by the frame's time step: the clock then moves
//! exactly as the frames do, and a show is tested and previewed as it would play.

use std::path::Path;

use bevy::prelude::*;
use std::sync::Mutex;

use kira::backend::{Backend, Renderer};
use kira::clock::{ClockHandle, ClockSpeed, ClockTime};
use kira::sound::FromFileError;
use kira::sound::streaming::{StreamingSoundData, StreamingSoundHandle};
use kira::{AudioManager, AudioManagerSettings, DefaultBackend, StartTime, Tween};

/// Samples a second of the silent mixer. Low, since nothing hears it; with [`MOCK_BLOCK`] a
/// block lasts 1/3000 s, so the clock lands within a third of a millisecond of a frame's time.
pub const MOCK_RATE: u32 = 12_000;
/// Samples in a block of the silent mixer (its clock moves by blocks).
pub const MOCK_BLOCK: usize = 4;

/// Samples a second of the mixer whose sound goes to the program output.
pub const PROGRAM_RATE: u32 = crate::model::program::AUDIO_RATE;
/// Samples in a block of that mixer: 1/3000 s, the same granularity as the silent mixer's.
pub const PROGRAM_BLOCK: usize = 16;

enum Mixer {
    Device(Box<AudioManager<DefaultBackend>>),
    /// Pumped by the frames; `capture` keeps what it plays when the program output wants it.
    Silent {
        manager: Box<AudioManager<CaptureBackend>>,
        owed: f64,
        rate: u32,
        block: usize,
        capture: Option<Vec<f32>>,
    },
}

/// kira's mock backend, except that the sound it renders can be read: the silent mixer, and the
/// program output's mixer when the venue is streamed or recorded.
pub struct CaptureBackend {
    // kira hands the renderer over once; a mutex makes the backend `Sync` (the resource is).
    renderer: Option<Mutex<Renderer>>,
    frames: Vec<f32>,
}

impl Backend for CaptureBackend {
    type Settings = u32;
    type Error = std::convert::Infallible;

    fn setup(sample_rate: u32, internal_buffer_size: usize) -> Result<(Self, u32), Self::Error> {
        Ok((Self { renderer: None, frames: vec![0.0; internal_buffer_size * 2] }, sample_rate))
    }

    fn start(&mut self, renderer: Renderer) -> Result<(), Self::Error> {
        self.renderer = Some(Mutex::new(renderer));
        Ok(())
    }
}

impl CaptureBackend {
    fn renderer(&mut self) -> &mut Renderer {
        self.renderer.as_mut().expect("kira starts the backend when the manager is made").get_mut().expect("renderer")
    }

    /// Applies commands sent since the last block (kira's `on_start_processing`).
    fn start_block(&mut self) {
        self.renderer().on_start_processing();
    }

    /// Renders one block; returns its interleaved stereo samples.
    fn process(&mut self) -> &[f32] {
        let mut frames = std::mem::take(&mut self.frames);
        self.renderer().process(&mut frames, 2);
        self.frames = frames;
        &self.frames
    }
}

/// The show's clock and the music playing on it.
#[derive(Resource)]
pub struct ShowClock {
    mixer: Mixer,
    clock: Option<ClockHandle>,
    tracks: Vec<StreamingSoundHandle<FromFileError>>,
}

impl ShowClock {
    /// A clock on the sound card if `device` and one is there, else on the silent mixer.
    pub fn new(device: bool) -> Self {
        let device = device
            .then(|| match AudioManager::<DefaultBackend>::new(AudioManagerSettings::default()) {
                Ok(manager) => Some(Mixer::Device(Box::new(manager))),
                Err(e) => {
                    warn!("no sound output ({e}): shows run on a silent clock");
                    None
                }
            })
            .flatten();
        let mixer = device.unwrap_or_else(|| Self::silent_mixer(MOCK_RATE, MOCK_BLOCK, false));
        Self::with_mixer(mixer)
    }

    fn with_mixer(mut mixer: Mixer) -> Self {
        let speed = ClockSpeed::TicksPerSecond(1.0);
        let clock = match &mut mixer {
            Mixer::Device(m) => m.add_clock(speed),
            Mixer::Silent { manager, .. } => manager.add_clock(speed),
        };
        let clock = clock.map_err(|e| error!("the show clock could not be made: {e}")).ok();
        Self { mixer, clock, tracks: Vec::new() }
    }

    /// A clock whose mixer plays into the program output: pumped by the frames like the silent
    /// one, at [`PROGRAM_RATE`], keeping its sound for [`ShowClock::take_program_audio`].
    pub fn for_program() -> Self {
        Self::with_mixer(Self::silent_mixer(PROGRAM_RATE, PROGRAM_BLOCK, true))
    }

    fn silent_mixer(rate: u32, block: usize, capture: bool) -> Mixer {
        Mixer::Silent {
            manager: Box::new(
                AudioManager::<CaptureBackend>::new(AudioManagerSettings {
                    backend_settings: rate,
                    internal_buffer_size: block,
                    ..default()
                })
                .unwrap_or_else(|e| match e {}),
            ),
            owed: 0.0,
            rate,
            block,
            capture: capture.then(Vec::new),
        }
    }

    /// Seconds in a block of the frame-pumped mixer (its clock moves by blocks).
    pub fn block_seconds(&self) -> f64 {
        match &self.mixer {
            Mixer::Silent { rate, block, .. } => *block as f64 / f64::from(*rate),
            Mixer::Device(_) => MOCK_BLOCK as f64 / f64::from(MOCK_RATE),
        }
    }

    /// The sound played since the last call, interleaved stereo at [`PROGRAM_RATE`], when this
    /// clock plays into the program output; `None` otherwise.
    pub fn take_program_audio(&mut self) -> Option<Vec<f32>> {
        match &mut self.mixer {
            Mixer::Silent { capture: Some(buffer), .. } => Some(std::mem::take(buffer)),
            _ => None,
        }
    }

    /// Whether the music reaches a sound card.
    pub fn audible(&self) -> bool {
        matches!(self.mixer, Mixer::Device(_))
    }

    /// Runs the silent mixer for `seconds` (a frame's time step); a sound card runs itself.
    pub fn pump(&mut self, seconds: f64) {
        if let Mixer::Silent { manager, owed, rate, block, capture } = &mut self.mixer {
            *owed += seconds * f64::from(*rate) / *block as f64;
            // Commands sent since the last frame (start, pause, sounds) apply first, as an
            // audio thread would at the start of its next block.
            manager.backend_mut().start_block();
            while *owed >= 1.0 - 1e-9 {
                let samples = manager.backend_mut().process();
                if let Some(buffer) = capture.as_mut() {
                    buffer.extend_from_slice(samples);
                }
                *owed -= 1.0;
            }
            // The clock publishes its time at the start of a block: once more, so that this
            // frame reads where the mixer now stands, not where it stood before the frame.
            manager.backend_mut().start_block();
        }
    }

    /// The clock's time in seconds (it ticks once a second).
    pub fn seconds(&self) -> f64 {
        self.clock.as_ref().map_or(0.0, |c| {
            let t = c.time();
            t.ticks as f64 + t.fraction
        })
    }

    /// Starts or resumes the clock.
    pub fn start(&mut self) {
        if let Some(c) = &mut self.clock {
            c.start();
        }
    }

    /// Holds the clock.
    pub fn pause(&mut self) {
        if let Some(c) = &mut self.clock {
            c.pause();
        }
    }

    /// Stops every track.
    pub fn stop_tracks(&mut self) {
        for mut t in self.tracks.drain(..) {
            t.stop(Tween::default());
        }
    }

    /// Plays `file` from `from` seconds into it: now, or when the clock reaches `at` (its own
    /// seconds), sample-exactly.
    pub fn play_track(&mut self, file: &Path, from: f64, at: Option<f64>) -> Result<(), String> {
        let mut data = StreamingSoundData::from_file(file).map_err(|e| format!("{}: {e}", file.display()))?;
        data = data.start_position(from.max(0.0));
        if let (Some(at), Some(clock)) = (at, &self.clock) {
            data = data.start_time(StartTime::ClockTime(ClockTime::from_ticks_f64(clock.id(), at)));
        }
        let handle = match &mut self.mixer {
            Mixer::Device(m) => m.play(data),
            Mixer::Silent { manager, .. } => manager.play(data),
        }
        .map_err(|e| format!("{}: the mixer refused it: {e}", file.display()))?;
        self.tracks.retain(|t| t.state() != kira::sound::PlaybackState::Stopped);
        self.tracks.push(handle);
        Ok(())
    }

    /// Errors the streaming decoders met since the last call.
    pub fn track_errors(&mut self) -> Vec<String> {
        self.tracks.iter_mut().filter_map(|t| t.pop_error().map(|e| e.to_string())).collect()
    }

    /// Tracks playing or waiting to.
    pub fn tracks(&self) -> usize {
        self.tracks.iter().filter(|t| t.state() != kira::sound::PlaybackState::Stopped).count()
    }
}

/// The length of an audio file in seconds, if its decoder knows it.
pub fn track_length(file: &Path) -> Option<f64> {
    StreamingSoundData::from_file(file).ok().map(|d| d.duration().as_secs_f64())
}
