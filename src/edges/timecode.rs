//! Timecode edges: linear timecode read from a WAV file as if it arrived from a sound card
//! (in real time, 10 ms at a time), decoded by the model's LTC decoder and sent to the venue's
//! [`TimecodeLink`](crate::engine::show::chase::TimecodeLink). A file that is not PCM or float
//! WAV is refused before anything starts, naming what it is.

use std::path::Path;
use std::time::{Duration, Instant};

use tokio::sync::mpsc;

use crate::engine::rest::Doorbell;
use crate::engine::show::chase::TimecodeReading;
use crate::model::show::ltc::LtcDecoder;
use crate::model::show::timecode::{FrameRate, Timecode};

/// Why a WAV file cannot be read.
#[derive(Debug, thiserror::Error)]
#[error("{path}: {why}")]
pub struct WavError {
    path: String,
    why: String,
}

/// The first channel of a WAV file as samples in -1..1, and its sample rate.
pub fn read_wav(path: &Path) -> Result<(Vec<f32>, u32), WavError> {
    let fail = |why: String| WavError { path: path.display().to_string(), why };
    let bytes = std::fs::read(path).map_err(|e| fail(e.to_string()))?;
    if bytes.len() < 12 || &bytes[0..4] != b"RIFF" || &bytes[8..12] != b"WAVE" {
        return Err(fail("not a WAV file (no RIFF/WAVE header)".into()));
    }
    let (mut format, mut data) = (None, None);
    let mut at = 12;
    while at + 8 <= bytes.len() {
        let id = &bytes[at..at + 4];
        let len = u32::from_le_bytes(bytes[at + 4..at + 8].try_into().expect("4 bytes")) as usize;
        let body =
            bytes.get(at + 8..at + 8 + len).ok_or_else(|| fail("a chunk runs past the end of the file".into()))?;
        match id {
            b"fmt " if body.len() >= 16 => format = Some(body),
            b"data" => data = Some(body),
            _ => {}
        }
        at += 8 + len + (len & 1);
    }
    let format = format.ok_or_else(|| fail("no fmt chunk".into()))?;
    let data = data.ok_or_else(|| fail("no data chunk".into()))?;
    let u16_at = |i: usize| u16::from_le_bytes([format[i], format[i + 1]]);
    let (mut kind, channels, rate, bits) =
        (u16_at(0), usize::from(u16_at(2)), u32::from_le_bytes(format[4..8].try_into().expect("4 bytes")), u16_at(14));
    // WAVE_FORMAT_EXTENSIBLE (ffmpeg and sox write it beyond 16 bits or 2 channels): the real
    // format is the first two bytes of its sub-format.
    if kind == 0xFFFE {
        if format.len() < 26 {
            return Err(fail("an extensible format chunk too short for its sub-format".into()));
        }
        kind = u16_at(24);
    }
    if channels == 0 || rate == 0 {
        return Err(fail("no channels or no sample rate".into()));
    }
    let width = usize::from(bits / 8);
    let sample = |b: &[u8]| -> Option<f32> {
        Some(match (kind, bits) {
            (1, 8) => (f32::from(b[0]) - 128.0) / 128.0,
            (1, 16) => f32::from(i16::from_le_bytes([b[0], b[1]])) / 32_768.0,
            (1, 24) => (i32::from_le_bytes([0, b[0], b[1], b[2]]) >> 8) as f32 / 8_388_608.0,
            (1, 32) => i32::from_le_bytes([b[0], b[1], b[2], b[3]]) as f32 / 2_147_483_648.0,
            (3, 32) => f32::from_le_bytes([b[0], b[1], b[2], b[3]]),
            _ => return None,
        })
    };
    if width == 0 || sample(&[0; 4][..width.min(4)]).is_none() {
        return Err(fail(format!("{bits}-bit samples of format {kind}: expected PCM 8/16/24/32-bit or 32-bit float")));
    }
    let samples = data.chunks_exact(width * channels).filter_map(|frame| sample(&frame[..width])).collect();
    Ok((samples, rate))
}

/// Plays `samples` through an LTC decoder in real time on a thread of its own, sending each
/// frame's label to the venue; stops at the end of the file or when the venue goes.
pub fn start_ltc_file(
    samples: Vec<f32>,
    rate: u32,
    readings: mpsc::Sender<TimecodeReading>,
    doorbell: Doorbell,
) -> std::io::Result<std::thread::JoinHandle<()>> {
    std::thread::Builder::new().name("parvis-ltc".into()).spawn(move || {
        let mut decoder = LtcDecoder::new(rate);
        let chunk = (rate as usize / 100).max(1);
        let started = Instant::now();
        let mut previous_end: Option<u64> = None;
        let mut known_rate: Option<FrameRate> = None;
        for (i, block) in samples.chunks(chunk).enumerate() {
            // As a sound card would deliver it: this block is heard 10 ms after the last.
            let due = started + Duration::from_secs_f64((i + 1) as f64 * chunk as f64 / f64::from(rate));
            if let Some(wait) = due.checked_duration_since(Instant::now()) {
                std::thread::sleep(wait);
            }
            for frame in decoder.push(block) {
                // The rate from the frames' spacing (the drop-frame flag says 29.97).
                // Only the spacing of two frames in a row says the rate: after a lost frame it
                // is two frames, which no rate has. The last rate found holds meanwhile.
                let spacing = previous_end.map(|p| (frame.end_sample - p) as f64);
                previous_end = Some(frame.end_sample);
                if let Some(spacing) = spacing {
                    let fps = f64::from(rate) / spacing;
                    if (23.0..=31.0).contains(&fps) {
                        known_rate = Some(match fps {
                            _ if frame.drop_frame => FrameRate::Fps2997Drop,
                            f if f < 24.5 => FrameRate::Fps24,
                            f if f < 27.5 => FrameRate::Fps25,
                            _ => FrameRate::Fps30,
                        });
                    }
                }
                let Some(frame_rate) = known_rate else { continue };
                // The label names the frame that begins as this one ends.
                let label = Timecode::from_frames(frame.timecode.to_frames(frame_rate) + 1, frame_rate);
                let fed = ((i + 1) * chunk).min(samples.len()) as u64;
                let lag = Duration::from_secs_f64(fed.saturating_sub(frame.end_sample) as f64 / f64::from(rate));
                let reading = TimecodeReading {
                    timecode: label,
                    rate: frame_rate,
                    received: Instant::now() - lag,
                    locate_only: false,
                };
                if readings.try_send(reading).is_ok() {
                    doorbell.ring();
                } else if readings.is_closed() {
                    return;
                }
            }
        }
    })
}

/// Listens for MIDI Time Code on the first MIDI input port whose name contains `name` (any
/// case), sending each label to the venue; returns the port's full name. The connection lives
/// as long as the process. Fails, naming the ports there are, when none matches or when the
/// machine has no MIDI system.
pub fn start_mtc_port(
    name: &str,
    readings: mpsc::Sender<TimecodeReading>,
    doorbell: Doorbell,
) -> Result<String, String> {
    use crate::model::show::mtc::{MtcDecoder, MtcEvent};
    let mut input = midir::MidiInput::new("parvis").map_err(|e| format!("cannot open the MIDI system: {e}"))?;
    // Time code and SysEx (full frames) are what we want; active sensing is noise.
    input.ignore(midir::Ignore::ActiveSense);
    let ports = input.ports();
    let names: Vec<String> = ports.iter().map(|p| input.port_name(p).unwrap_or_else(|_| "?".into())).collect();
    let wanted = name.to_lowercase();
    let Some(index) = names.iter().position(|n| n.to_lowercase().contains(&wanted)) else {
        let list = if names.is_empty() { "(none)".to_owned() } else { names.join(", ") };
        return Err(format!("no MIDI input port matching {name:?}; ports: {list}"));
    };
    let mut decoder = MtcDecoder::new();
    let connection = input
        .connect(
            &ports[index],
            "parvis-mtc",
            move |_, bytes, _| {
                for byte in bytes {
                    let (timecode, rate, locate_only) = match decoder.push(*byte) {
                        Some(MtcEvent::Running(tc, rate)) => (tc, rate, false),
                        // A full frame is a locate: a stopped desk moved.
                        Some(MtcEvent::Full(tc, rate)) => (tc, rate, true),
                        None => continue,
                    };
                    let reading = TimecodeReading { timecode, rate, received: Instant::now(), locate_only };
                    if readings.try_send(reading).is_ok() {
                        doorbell.ring();
                    }
                }
            },
            (),
        )
        .map_err(|e| format!("cannot listen to MIDI port {:?}: {e}", names[index]))?;
    // The callback runs on midir's own thread for as long as the connection is held.
    std::thread::Builder::new()
        .name("parvis-mtc".into())
        .spawn(move || {
            let _held = connection;
            loop {
                std::thread::park();
            }
        })
        .map_err(|e| e.to_string())?;
    Ok(names[index].clone())
}
