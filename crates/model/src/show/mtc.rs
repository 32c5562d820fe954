//! MIDI Time Code from raw MIDI bytes: quarter-frame messages (`F1 0nnndddd`, eight make a
//! label, read two frames late by the standard's design) and full-frame SysEx messages
//! (`F0 7F dev 01 01 hh mm ss ff F7`, sent on a locate). Real-time bytes (clock, active
//! sensing) may come between any two bytes and are skipped; anything else out of place resets
//! the message in progress, so garbage cannot produce a label.

use crate::show::timecode::{FrameRate, Timecode};

/// A timecode read from MIDI.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MtcEvent {
    /// From eight quarter frames: the label showing now (two frames after the first piece).
    Running(Timecode, FrameRate),
    /// From a full-frame message: a locate.
    Full(Timecode, FrameRate),
}

/// An MTC decoder fed with MIDI bytes.
#[derive(Debug, Clone, Default)]
pub struct MtcDecoder {
    pieces: [u8; 8],
    /// The next quarter-frame piece expected (pieces arrive 0 to 7 when running forward).
    next_piece: u8,
    /// A quarter frame's status byte was read; its data byte is next.
    quarter: bool,
    sysex: Option<Vec<u8>>,
}

fn rate_of(bits: u8) -> FrameRate {
    match bits & 3 {
        0 => FrameRate::Fps24,
        1 => FrameRate::Fps25,
        2 => FrameRate::Fps2997Drop,
        _ => FrameRate::Fps30,
    }
}

fn label(hours: u8, minutes: u8, seconds: u8, frames: u8, rate: FrameRate) -> Option<Timecode> {
    let tc = Timecode { hours, minutes, seconds, frames };
    Timecode::parse(&tc.to_string(), rate).ok()
}

impl MtcDecoder {
    /// A decoder waiting for its first message.
    pub fn new() -> Self {
        Self::default()
    }

    /// Reads one byte; returns a timecode when a message completes.
    pub fn push(&mut self, byte: u8) -> Option<MtcEvent> {
        if byte >= 0xF8 {
            return None; // real-time: allowed anywhere
        }
        if let Some(sysex) = &mut self.sysex {
            if byte == 0xF7 {
                let message = std::mem::take(sysex);
                self.sysex = None;
                return Self::full_frame(&message);
            }
            if byte & 0x80 != 0 || sysex.len() > 16 {
                self.sysex = None;
            } else {
                sysex.push(byte);
                return None;
            }
        }
        if std::mem::take(&mut self.quarter) {
            if byte & 0x80 == 0 {
                return self.quarter_frame(byte >> 4, byte & 0x0f);
            }
            self.next_piece = 0;
        }
        match byte {
            0xF1 => self.quarter = true,
            0xF0 => self.sysex = Some(Vec::new()),
            _ => {}
        }
        None
    }

    fn quarter_frame(&mut self, piece: u8, value: u8) -> Option<MtcEvent> {
        if piece != self.next_piece {
            // Out of order (a jump, reverse play, a lost byte): start again at piece 0.
            self.next_piece = if piece == 0 { 1 } else { 0 };
            if piece == 0 {
                self.pieces[0] = value;
            }
            return None;
        }
        self.pieces[usize::from(piece)] = value;
        self.next_piece = (piece + 1) % 8;
        if piece != 7 {
            return None;
        }
        let p = self.pieces;
        let rate = rate_of(p[7] >> 1);
        let tc = label(
            p[6] | (p[7] & 1) << 4,
            p[4] | (p[5] & 3) << 4,
            p[2] | (p[3] & 3) << 4,
            p[0] | (p[1] & 1) << 4,
            rate,
        )?;
        // The eight pieces took two frames: the label now is two on.
        Some(MtcEvent::Running(Timecode::from_frames(tc.to_frames(rate) + 2, rate), rate))
    }

    fn full_frame(message: &[u8]) -> Option<MtcEvent> {
        match message {
            [0x7F, _device, 0x01, 0x01, hr, mn, sc, fr] => {
                let rate = rate_of(hr >> 5);
                Some(MtcEvent::Full(label(hr & 0x1f, *mn, *sc, *fr, rate)?, rate))
            }
            _ => None,
        }
    }
}

/// The eight quarter-frame messages that send `tc` (for tests and for sending MTC).
pub fn quarter_frames(tc: Timecode, rate: FrameRate) -> [[u8; 2]; 8] {
    let rate_bits = match rate {
        FrameRate::Fps24 => 0,
        FrameRate::Fps25 => 1,
        FrameRate::Fps2997Drop => 2,
        FrameRate::Fps30 => 3,
    };
    let values = [
        tc.frames & 0x0f,
        tc.frames >> 4,
        tc.seconds & 0x0f,
        tc.seconds >> 4,
        tc.minutes & 0x0f,
        tc.minutes >> 4,
        tc.hours & 0x0f,
        (tc.hours >> 4) | rate_bits << 1,
    ];
    std::array::from_fn(|i| [0xF1, (i as u8) << 4 | values[i]])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn feed(d: &mut MtcDecoder, bytes: &[u8]) -> Vec<MtcEvent> {
        bytes.iter().filter_map(|b| d.push(*b)).collect()
    }

    #[test]
    fn full_frame_and_quarter_frames_as_recorded() {
        let mut d = MtcDecoder::new();
        // A locate to 01:02:03:04 at 25 fps (rate bits 01 in the hour byte), with a MIDI clock
        // byte inside it.
        let full = [0xF0, 0x7F, 0x7F, 0x01, 0x01, 0x21, 0x02, 0xF8, 0x03, 0x04, 0xF7];
        let tc = Timecode { hours: 1, minutes: 2, seconds: 3, frames: 4 };
        assert_eq!(feed(&mut d, &full), [MtcEvent::Full(tc, FrameRate::Fps25)]);
        // Then running: the pieces of 01:02:03:04, 01:02:03:06 (every two frames).
        let mut bytes: Vec<u8> = quarter_frames(tc, FrameRate::Fps25).concat();
        let next = Timecode { frames: 6, ..tc };
        bytes.extend(quarter_frames(next, FrameRate::Fps25).concat());
        let events = feed(&mut d, &bytes);
        assert_eq!(
            events,
            [
                MtcEvent::Running(Timecode { frames: 6, ..tc }, FrameRate::Fps25),
                MtcEvent::Running(Timecode { frames: 8, ..tc }, FrameRate::Fps25)
            ]
        );
    }

    #[test]
    fn drop_frame_rate_and_garbage() {
        let mut d = MtcDecoder::new();
        let tc = Timecode { hours: 0, minutes: 9, seconds: 59, frames: 28 };
        let events = feed(&mut d, &quarter_frames(tc, FrameRate::Fps2997Drop).concat());
        // Two frames on from ;28 of 09:59 is 10:00;00 (minute ten keeps its labels).
        assert_eq!(
            events,
            [MtcEvent::Running(Timecode { hours: 0, minutes: 10, seconds: 0, frames: 0 }, FrameRate::Fps2997Drop)]
        );
        // Pieces out of order, a status byte inside a message, a bad label: nothing.
        let mut garbage: Vec<u8> = quarter_frames(tc, FrameRate::Fps25).concat();
        garbage.swap(5, 7);
        assert!(feed(&mut MtcDecoder::new(), &garbage).is_empty());
        assert!(
            feed(&mut MtcDecoder::new(), &[0xF0, 0x7F, 0x7F, 0x90, 0x01, 0x01, 0x21, 0x02, 0x03, 0x04, 0xF7])
                .is_empty()
        );
        assert!(feed(&mut MtcDecoder::new(), &[0xF0, 0x7F, 0x7F, 0x01, 0x01, 0x21, 0x02, 0x03, 0x1F, 0xF7]).is_empty());
        let mut rng = crate::rng::SeededRng::new(9);
        let random: Vec<u8> =
            (0..100_000).map(|_| (rng.next_u64() & 0xff) as u8).filter(|b| *b != 0xF1 && *b != 0xF0).collect();
        assert!(feed(&mut MtcDecoder::new(), &random).is_empty());
    }
}
