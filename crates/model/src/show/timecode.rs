//! SMPTE timecode: `HH:MM:SS:FF` labels at 24, 25, 29.97 drop-frame and 30 frames a second,
//! to and from frame counts and seconds. Drop-frame skips the labels `;00` and `;01` of every
//! minute except each tenth, so that 29.97 fps labels keep to the wall clock.

use std::fmt;

use thiserror::Error;

/// A timecode frame rate.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FrameRate {
    /// 24 fps (film).
    Fps24,
    /// 25 fps (PAL, Europe).
    Fps25,
    /// 30000/1001 fps with drop-frame labels (NTSC).
    Fps2997Drop,
    /// 30 fps.
    Fps30,
}

/// Why a timecode or rate was refused.
#[derive(Debug, Clone, PartialEq, Error)]
pub enum TimecodeError {
    /// Not `HH:MM:SS:FF`.
    #[error("expected a timecode HH:MM:SS:FF, found {0:?}")]
    Syntax(String),
    /// A field is out of range for the rate.
    #[error("timecode {text:?}: {why}")]
    Range {
        /// The timecode.
        text: String,
        /// What is wrong.
        why: String,
    },
    /// Not a rate timecode has.
    #[error("expected a timecode rate of 24, 25, 29.97 (drop-frame) or 30, found {0}")]
    Rate(f64),
}

impl FrameRate {
    /// The rate for a number of frames a second as curators write it.
    pub fn from_fps(fps: f64) -> Result<Self, TimecodeError> {
        match fps {
            24.0 => Ok(Self::Fps24),
            25.0 => Ok(Self::Fps25),
            f if (f - 29.97).abs() < 0.005 => Ok(Self::Fps2997Drop),
            30.0 => Ok(Self::Fps30),
            f => Err(TimecodeError::Rate(f)),
        }
    }

    /// Frame labels in a second (30 for 29.97 drop-frame).
    pub fn nominal(self) -> u32 {
        match self {
            Self::Fps24 => 24,
            Self::Fps25 => 25,
            Self::Fps2997Drop | Self::Fps30 => 30,
        }
    }

    /// Frames a second in real time.
    pub fn fps(self) -> f64 {
        match self {
            Self::Fps2997Drop => 30_000.0 / 1001.0,
            other => f64::from(other.nominal()),
        }
    }

    /// Whether labels are dropped.
    pub fn drop_frame(self) -> bool {
        self == Self::Fps2997Drop
    }
}

/// A timecode label.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Timecode {
    /// Hours, 0 to 23.
    pub hours: u8,
    /// Minutes, 0 to 59.
    pub minutes: u8,
    /// Seconds, 0 to 59.
    pub seconds: u8,
    /// Frames, 0 to the rate's nominal frames minus one.
    pub frames: u8,
}

/// Frames in 24 hours of labels, where timecode wraps.
fn frames_per_day(rate: FrameRate) -> u64 {
    match rate {
        // 30 × 86 400 less 2 labels in 9 of every 10 minutes.
        FrameRate::Fps2997Drop => 30 * 86_400 - 2 * (24 * 60 - 24 * 6),
        other => u64::from(other.nominal()) * 86_400,
    }
}

impl Timecode {
    /// Reads `HH:MM:SS:FF` (or `HH:MM:SS;FF`, drop-frame's usual separator) for `rate`.
    pub fn parse(text: &str, rate: FrameRate) -> Result<Self, TimecodeError> {
        let syntax = || TimecodeError::Syntax(text.to_owned());
        let bytes = text.as_bytes();
        if bytes.len() != 11 || bytes[2] != b':' || bytes[5] != b':' || !matches!(bytes[8], b':' | b';' | b'.') {
            return Err(syntax());
        }
        let field = |at: usize| -> Result<u8, TimecodeError> {
            let digits = &text[at..at + 2];
            if digits.bytes().all(|b| b.is_ascii_digit()) {
                Ok(digits.parse().map_err(|_| syntax())?)
            } else {
                Err(syntax())
            }
        };
        let tc = Self { hours: field(0)?, minutes: field(3)?, seconds: field(6)?, frames: field(9)? };
        tc.check(rate).map_err(|why| TimecodeError::Range { text: text.to_owned(), why })?;
        Ok(tc)
    }

    fn check(&self, rate: FrameRate) -> Result<(), String> {
        if self.hours > 23 || self.minutes > 59 || self.seconds > 59 {
            return Err("hours go to 23, minutes and seconds to 59".into());
        }
        if u32::from(self.frames) >= rate.nominal() {
            return Err(format!("frames go from 0 to {} at {} fps", rate.nominal() - 1, rate.nominal()));
        }
        if rate.drop_frame() && self.seconds == 0 && self.frames < 2 && !self.minutes.is_multiple_of(10) {
            return Err(
                "drop-frame timecode has no frames 00 and 01 at the start of a minute not divisible by ten".into()
            );
        }
        Ok(())
    }

    /// Frames since `00:00:00:00`.
    pub fn to_frames(self, rate: FrameRate) -> u64 {
        let nominal = u64::from(rate.nominal());
        let minutes = u64::from(self.hours) * 60 + u64::from(self.minutes);
        let labels = (minutes * 60 + u64::from(self.seconds)) * nominal + u64::from(self.frames);
        if rate.drop_frame() { labels - 2 * (minutes - minutes / 10) } else { labels }
    }

    /// The label of a frame count (wrapping at 24 hours).
    pub fn from_frames(frames: u64, rate: FrameRate) -> Self {
        let mut frames = frames % frames_per_day(rate);
        if rate.drop_frame() {
            // Add back the dropped labels: 17 982 frames per ten minutes, 1 798 per dropping minute.
            let tens = frames / 17_982;
            let rest = frames % 17_982;
            let dropped = 18 * tens + if rest < 2 { 0 } else { 2 * ((rest - 2) / 1_798) };
            frames += dropped;
        }
        let nominal = u64::from(rate.nominal());
        let total_seconds = frames / nominal;
        Self {
            hours: (total_seconds / 3600) as u8,
            minutes: (total_seconds / 60 % 60) as u8,
            seconds: (total_seconds % 60) as u8,
            frames: (frames % nominal) as u8,
        }
    }

    /// Seconds since `00:00:00:00` in real time.
    pub fn to_seconds(self, rate: FrameRate) -> f64 {
        self.to_frames(rate) as f64 / rate.fps()
    }

    /// The label showing at `seconds` of real time since `00:00:00:00`.
    pub fn from_seconds(seconds: f64, rate: FrameRate) -> Self {
        // A hair over, so that a time computed from a frame reads back as that frame.
        Self::from_frames((seconds.max(0.0) * rate.fps() + 1e-6).floor() as u64, rate)
    }

    /// The label written for `rate` (`;` before the frames for drop-frame).
    pub fn display(self, rate: FrameRate) -> String {
        let sep = if rate.drop_frame() { ';' } else { ':' };
        format!("{self}").chars().enumerate().map(|(i, c)| if i == 8 { sep } else { c }).collect()
    }
}

impl fmt::Display for Timecode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:02}:{:02}:{:02}:{:02}", self.hours, self.minutes, self.seconds, self.frames)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_writes_labels() {
        let tc = Timecode::parse("01:02:03:04", FrameRate::Fps25).unwrap();
        assert_eq!(tc, Timecode { hours: 1, minutes: 2, seconds: 3, frames: 4 });
        assert_eq!(tc.to_frames(FrameRate::Fps25), ((3600 + 120 + 3) * 25 + 4));
        assert_eq!(tc.to_string(), "01:02:03:04");
        assert_eq!(
            Timecode::parse("00:00:01;15", FrameRate::Fps2997Drop).unwrap().display(FrameRate::Fps2997Drop),
            "00:00:01;15"
        );
    }

    #[test]
    fn refuses_bad_labels_by_name() {
        for bad in ["1:02:03:04", "01:02:03", "aa:02:03:04", "01-02-03-04", "01:02:03:04:05", "+1:02:03:04"] {
            assert!(matches!(Timecode::parse(bad, FrameRate::Fps25), Err(TimecodeError::Syntax(_))), "{bad}");
        }
        let err = Timecode::parse("00:00:00:25", FrameRate::Fps25).unwrap_err().to_string();
        assert!(err.contains("frames go from 0 to 24"), "{err}");
        assert!(Timecode::parse("24:00:00:00", FrameRate::Fps25).is_err());
        assert!(Timecode::parse("00:60:00:00", FrameRate::Fps30).is_err());
        let err = Timecode::parse("00:01:00;00", FrameRate::Fps2997Drop).unwrap_err().to_string();
        assert!(err.contains("drop-frame"), "{err}");
        assert!(Timecode::parse("00:10:00;00", FrameRate::Fps2997Drop).is_ok());
        assert!(FrameRate::from_fps(50.0).is_err());
    }

    #[test]
    fn drop_frame_counts_match_the_standard() {
        let df = FrameRate::Fps2997Drop;
        // Known anchors: one minute of drop-frame is 1 798 frames, ten minutes 17 982, an hour 107 892.
        assert_eq!(Timecode::parse("00:01:00;02", df).unwrap().to_frames(df), 1800);
        assert_eq!(Timecode::parse("00:10:00;00", df).unwrap().to_frames(df), 17_982);
        assert_eq!(Timecode::parse("01:00:00;00", df).unwrap().to_frames(df), 107_892);
        // An hour of drop-frame labels is an hour of real time, to within 3.6 ms.
        let hour = Timecode::parse("01:00:00;00", df).unwrap().to_seconds(df);
        assert!((hour - 3600.0).abs() < 0.004, "{hour}");
        // The label before a dropping minute is ;29 of second 59.
        assert_eq!(Timecode::from_frames(1799, df).display(df), "00:00:59;29");
        assert_eq!(Timecode::from_frames(1800, df).display(df), "00:01:00;02");
    }

    #[test]
    fn every_frame_round_trips_through_its_label() {
        for rate in [FrameRate::Fps24, FrameRate::Fps25, FrameRate::Fps2997Drop, FrameRate::Fps30] {
            // Two hours, in steps that hit every minute boundary's neighbourhood.
            for frames in (0..220_000u64).step_by(7).chain(frames_per_day(rate) - 3..frames_per_day(rate)) {
                let tc = Timecode::from_frames(frames, rate);
                assert!(tc.check(rate).is_ok(), "{rate:?} {frames} gave {tc}");
                assert_eq!(tc.to_frames(rate), frames, "{rate:?} {tc}");
                assert_eq!(Timecode::from_seconds(tc.to_seconds(rate), rate), tc, "{rate:?} {tc}");
            }
        }
        assert_eq!(
            Timecode::from_frames(frames_per_day(FrameRate::Fps25), FrameRate::Fps25).to_frames(FrameRate::Fps25),
            0
        );
    }
}
