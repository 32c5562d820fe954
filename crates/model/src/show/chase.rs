//! Chasing external timecode: where a timecode puts the show (the song whose `timecode` it
//! falls after, disguise's TC tags), and what the transport does as readings come and go —
//! locate and play when they are far from it, nothing while they agree (the transport runs
//! on its own audio clock between readings), freewheel through a dropout, then hold.

use crate::show::plan::ShowPlan;
use crate::show::timecode::{FrameRate, Timecode};

/// Where `tc` (at `rate`) puts the show: the song with the latest `timecode` at or before it,
/// that far into it. `None` before every song's timecode, or for a show without timecodes.
pub fn show_position(plan: &ShowPlan, tc: Timecode, rate: FrameRate) -> Option<f64> {
    let seconds = tc.to_seconds(rate);
    plan.songs
        .iter()
        .filter_map(|song| song.timecode.map(|frames| (song, frames as f64 / plan.rate.fps())))
        .filter(|(_, start)| *start <= seconds + 1e-9)
        .max_by(|a, b| a.1.total_cmp(&b.1))
        .map(|(song, start)| song.start + (seconds - start))
}

/// How the transport follows timecode.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ChasePolicy {
    /// Drift, seconds, beyond which the transport locates to the timecode (default: two frames
    /// at 25 fps).
    pub tolerance: f64,
    /// Seconds without a reading during which the transport runs on (freewheel) before it
    /// holds.
    pub freewheel: f64,
}

impl Default for ChasePolicy {
    fn default() -> Self {
        Self { tolerance: 0.08, freewheel: 1.0 }
    }
}

/// What the transport should do.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum ChaseAction {
    /// Move to this position (seconds on the show's clock).
    Locate(f64),
    /// Run.
    Play,
    /// Stop running: the timecode is gone.
    Hold,
}

/// A transport chasing timecode.
#[derive(Debug, Clone, Default)]
pub struct Chaser {
    /// The policy.
    pub policy: ChasePolicy,
    last_reading: Option<f64>,
    locked: bool,
}

impl Chaser {
    /// A chaser with `policy`.
    pub fn new(policy: ChasePolicy) -> Self {
        Self { policy, last_reading: None, locked: false }
    }

    /// Whether readings are coming in.
    pub fn locked(&self) -> bool {
        self.locked
    }

    /// A reading putting the show at `target`, while the transport stands at `transport`
    /// (`playing` or not), at local time `now` (seconds).
    pub fn reading(&mut self, target: f64, transport: f64, playing: bool, now: f64) -> Vec<ChaseAction> {
        let mut actions = Vec::new();
        if (target - transport).abs() > self.policy.tolerance {
            actions.push(ChaseAction::Locate(target));
        }
        if !playing {
            actions.push(ChaseAction::Play);
        }
        self.last_reading = Some(now);
        self.locked = true;
        actions
    }

    /// A locate (an MTC full frame, sent by a stopped desk that moved): go there without
    /// playing, and without counting as running timecode.
    pub fn locate(&mut self, target: f64, transport: f64) -> Option<ChaseAction> {
        ((target - transport).abs() > self.policy.tolerance).then_some(ChaseAction::Locate(target))
    }

    /// Time passes with no reading: after the freewheel, hold.
    pub fn tick(&mut self, now: f64) -> Option<ChaseAction> {
        let silent = self.last_reading.is_some_and(|last| now - last > self.policy.freewheel);
        if self.locked && silent {
            self.locked = false;
            return Some(ChaseAction::Hold);
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scene::format::{ShowDef, SongDef};

    fn plan() -> ShowPlan {
        let song = |name: &str, tc: Option<&str>| SongDef {
            name: name.into(),
            tracks: vec![],
            length: Some(100.0),
            timecode: tc.map(Into::into),
            tempo: vec![],
            cues: vec![],
            surtitles: Default::default(),
        };
        let def = ShowDef {
            name: "s".into(),
            fps: 25.0,
            songs: vec![song("a", Some("01:00:00:00")), song("b", None), song("c", Some("02:00:00:00"))],
        };
        ShowPlan::new(&def, |_| None).unwrap()
    }

    #[test]
    fn timecode_finds_its_song() {
        let plan = plan();
        let tc = |t: &str| Timecode::parse(t, FrameRate::Fps25).unwrap();
        assert_eq!(show_position(&plan, tc("01:00:05:00"), FrameRate::Fps25), Some(5.0));
        let c = show_position(&plan, tc("02:00:01:12"), FrameRate::Fps25).unwrap();
        assert!((c - 201.48).abs() < 1e-9, "{c}");
        assert_eq!(show_position(&plan, tc("00:59:59:24"), FrameRate::Fps25), None);
        // A reading at another rate is placed by its time.
        let at30 = Timecode::parse("01:00:10:15", FrameRate::Fps30).unwrap();
        assert_eq!(show_position(&plan, at30, FrameRate::Fps30), Some(10.5));
    }

    #[test]
    fn locate_play_freewheel_hold() {
        let mut chaser = Chaser::new(ChasePolicy { tolerance: 0.08, freewheel: 1.0 });
        assert_eq!(chaser.reading(5.0, 0.0, false, 0.0), [ChaseAction::Locate(5.0), ChaseAction::Play]);
        // Agreeing readings: nothing; a small drift: nothing; a jump: locate.
        assert!(chaser.reading(5.04, 5.0, true, 0.04).is_empty());
        assert!(chaser.reading(5.5, 5.45, true, 0.5).is_empty());
        assert_eq!(chaser.reading(30.0, 5.5, true, 0.54), [ChaseAction::Locate(30.0)]);
        // A dropout: freewheel for a second, then hold, once.
        assert_eq!(chaser.tick(1.2), None);
        assert_eq!(chaser.tick(1.6), Some(ChaseAction::Hold));
        assert_eq!(chaser.tick(3.0), None);
        assert!(!chaser.locked());
        // A locate from a stopped desk moves the show without playing it.
        assert_eq!(chaser.locate(60.0, 31.0), Some(ChaseAction::Locate(60.0)));
        assert_eq!(chaser.locate(60.02, 60.0), None);
        assert!(!chaser.locked());
        // Timecode again: play from where it says.
        assert_eq!(chaser.reading(40.0, 31.0, false, 5.0), [ChaseAction::Locate(40.0), ChaseAction::Play]);
    }
}
