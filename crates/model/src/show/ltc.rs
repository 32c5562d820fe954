//! Linear timecode (LTC, SMPTE 12M) decoded from audio: biphase-mark bits found from the
//! signal's zero crossings with a bit period that adapts to 24–30 fps and to tape speed, 80-bit
//! frames found by their sync word, fields read as BCD. Checked against audio written by
//! Debian's libltc (tests/show.rs). Garbage audio yields no frame: a frame needs the sync word
//! and fields in range.

use crate::show::timecode::{FrameRate, Timecode};

/// A decoded LTC frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LtcFrame {
    /// Its timecode label.
    pub timecode: Timecode,
    /// The drop-frame flag (bit 10).
    pub drop_frame: bool,
    /// The sample at which the frame ended (its sync word's last bit), counted from the first
    /// sample given to the decoder. The label is the frame that *started* then.
    pub end_sample: u64,
}

/// An LTC decoder fed with mono samples.
#[derive(Debug, Clone)]
pub struct LtcDecoder {
    rate: f32,
    /// Samples since the last zero crossing.
    since_edge: f32,
    positive: bool,
    /// Running peak, for the crossing's hysteresis.
    peak: f32,
    /// Bit period estimate, samples.
    period: f32,
    half_pending: bool,
    bits: u128,
    count: u32,
    sample: u64,
    /// Frames refused for fields out of range.
    pub rejected: u64,
}

const SYNC: u128 = 0b1011_1111_1111_1100; // bits 64..79 as they sit in the register (bit 64 lowest)

impl LtcDecoder {
    /// A decoder for audio at `rate` samples a second.
    pub fn new(rate: u32) -> Self {
        let rate = rate as f32;
        Self {
            rate,
            since_edge: 0.0,
            positive: false,
            peak: 0.0,
            // The middle of 24–30 fps: 80 bits a frame.
            period: rate / (80.0 * 27.0),
            half_pending: false,
            bits: 0,
            count: 0,
            sample: 0,
            rejected: 0,
        }
    }

    /// Reads samples (any scale, centred on 0); returns the frames completed in them.
    pub fn push(&mut self, samples: &[f32]) -> Vec<LtcFrame> {
        let mut out = Vec::new();
        for &s in samples {
            self.sample += 1;
            self.since_edge += 1.0;
            self.peak = (self.peak * 0.9995).max(s.abs());
            let hysteresis = self.peak * 0.1;
            let crossed = if self.positive { s < -hysteresis } else { s > hysteresis };
            if !crossed {
                // A silence longer than a few bits loses the lock.
                if self.since_edge > self.period * 4.0 {
                    self.half_pending = false;
                }
                continue;
            }
            self.positive = !self.positive;
            let interval = std::mem::take(&mut self.since_edge);
            self.edge(interval, &mut out);
        }
        out
    }

    fn edge(&mut self, interval: f32, out: &mut Vec<LtcFrame>) {
        // Too short or too long to be LTC at 24–30 fps (a speed of ±40 %): noise.
        let min = self.rate / (80.0 * 30.0 * 1.4) / 2.0;
        let max = self.rate / (80.0 * 24.0 / 1.4);
        if !(min..=max).contains(&interval) {
            self.half_pending = false;
            return;
        }
        if interval > self.period * 0.75 {
            // A whole cell without a middle transition: a zero.
            self.period = self.period * 0.75 + interval * 0.25;
            if self.half_pending {
                // A lone half cell before it: out of step; this zero still counts.
                self.half_pending = false;
            }
            self.bit(false, out);
        } else if self.half_pending {
            self.half_pending = false;
            self.bit(true, out);
        } else {
            self.period = self.period * 0.75 + interval * 2.0 * 0.25;
            self.half_pending = true;
        }
    }

    fn bit(&mut self, one: bool, out: &mut Vec<LtcFrame>) {
        self.bits = (self.bits >> 1) | (u128::from(one) << 79);
        self.count = self.count.saturating_add(1);
        if self.count >= 80 && (self.bits >> 64) & 0xffff == SYNC {
            match self.read() {
                Some(frame) => out.push(frame),
                None => self.rejected += 1,
            }
        }
    }

    fn read(&self) -> Option<LtcFrame> {
        let field = |start: u32, len: u32| ((self.bits >> start) & ((1u128 << len) - 1)) as u8;
        let frames = field(0, 4) + 10 * field(8, 2);
        let seconds = field(16, 4) + 10 * field(24, 3);
        let minutes = field(32, 4) + 10 * field(40, 3);
        let hours = field(48, 4) + 10 * field(56, 2);
        let drop_frame = field(10, 1) == 1;
        if field(0, 4) > 9 || field(16, 4) > 9 || field(32, 4) > 9 || field(48, 4) > 9 {
            return None;
        }
        let timecode = Timecode { hours, minutes, seconds, frames };
        let rate = if drop_frame { FrameRate::Fps2997Drop } else { FrameRate::Fps30 };
        Timecode::parse(&timecode.to_string(), rate).ok()?;
        Some(LtcFrame { timecode, drop_frame, end_sample: self.sample })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn noise_and_silence_give_no_frame() {
        let mut d = LtcDecoder::new(48_000);
        let mut rng = crate::rng::SeededRng::new(3);
        let noise: Vec<f32> = (0..480_000).map(|_| rng.signed()).collect();
        assert!(d.push(&noise).is_empty());
        assert!(d.push(&vec![0.0; 48_000]).is_empty());
    }
}
