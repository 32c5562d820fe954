//! A show's cue list on its clock: each song placed after the previous one, each cue's
//! position resolved from seconds, bars and beats or timecode ([`ShowPlan`]), and what fires
//! as the clock moves, on GO, on a follow-on and after a seek ([`CueRunner`]). Pure logic, so
//! the engine's transport, `parvis check` and tests share one meaning of "when".

use thiserror::Error;

use crate::scene::format::{CueAt, CueDef, ShowDef, SongDef};
use crate::show::timecode::{FrameRate, Timecode, TimecodeError};

/// Why a cue's position could not be resolved.
#[derive(Debug, Clone, PartialEq, Error)]
pub enum CueTimeError {
    /// A timecode that does not read.
    #[error(transparent)]
    Timecode(#[from] TimecodeError),
    /// A timecode cue in a song with no timecode of its own.
    #[error("a cue at a timecode needs its song's `timecode`")]
    NoSongTimecode,
    /// A timecode before the song's.
    #[error("timecode {cue} is before the song's start at {song}")]
    BeforeSong {
        /// The cue's.
        cue: String,
        /// The song's.
        song: String,
    },
    /// A bar cue in a song with no tempo map.
    #[error("a cue at a bar needs the song's `tempo`")]
    NoTempo,
    /// Bars count from 1, beats from 1 to the bar's beats.
    #[error("bar {bar} beat {beat}: bars count from 1 and beats from 1 up to the bar's {beats} beats")]
    BadBeat {
        /// The bar.
        bar: u32,
        /// The beat.
        beat: f64,
        /// Beats in that bar.
        beats: u32,
    },
    /// A position that is not a finite number of seconds from 0.
    #[error("expected seconds from 0, found {0}")]
    BadSeconds(f64),
}

/// A song's position of a cue in seconds from the song's start; `None` for a manual cue.
/// The tempo map must be valid (first change at bar 1, bars increasing, bpm above 0).
pub fn cue_seconds(song: &SongDef, at: &CueAt, rate: FrameRate) -> Result<Option<f64>, CueTimeError> {
    match at {
        CueAt::Manual => Ok(None),
        CueAt::Seconds(s) if s.is_finite() && *s >= 0.0 => Ok(Some(*s)),
        CueAt::Seconds(s) => Err(CueTimeError::BadSeconds(*s)),
        CueAt::Timecode(text) => {
            let cue = Timecode::parse(text, rate)?;
            let start = song.timecode.as_deref().ok_or(CueTimeError::NoSongTimecode)?;
            let start = Timecode::parse(start, rate)?;
            if cue < start {
                return Err(CueTimeError::BeforeSong { cue: text.clone(), song: start.display(rate) });
            }
            Ok(Some((cue.to_frames(rate) - start.to_frames(rate)) as f64 / rate.fps()))
        }
        CueAt::Bar(bar, beat) => {
            let first = song.tempo.first().ok_or(CueTimeError::NoTempo)?;
            // The tempo in force at `bar`: the last change at or before it.
            let mut seconds = 0.0;
            let mut current = first;
            for next in &song.tempo[1..] {
                if next.bar > *bar {
                    break;
                }
                seconds += f64::from(next.bar - current.bar) * f64::from(current.beats_per_bar) * 60.0 / current.bpm;
                current = next;
            }
            let beats = current.beats_per_bar;
            if *bar < 1 || !beat.is_finite() || *beat < 1.0 || *beat >= f64::from(beats) + 1.0 {
                return Err(CueTimeError::BadBeat { bar: *bar, beat: *beat, beats });
            }
            let beats_in = f64::from(bar - current.bar) * f64::from(beats) + (beat - 1.0);
            Ok(Some(seconds + beats_in * 60.0 / current.bpm))
        }
    }
}

/// A song on the show's clock.
#[derive(Debug, Clone, PartialEq)]
pub struct PlannedSong {
    /// Its name.
    pub name: String,
    /// Where it starts on the show's clock, seconds.
    pub start: f64,
    /// How long it lasts; `None` for a last song that runs until stopped.
    pub length: Option<f64>,
    /// Its audio files.
    pub tracks: Vec<String>,
    /// Its timecode at its start, in frames of the show's rate.
    pub timecode: Option<u64>,
}

/// A cue on the show's clock.
#[derive(Debug, Clone, PartialEq)]
pub struct PlannedCue {
    /// Its id.
    pub id: String,
    /// Its label.
    pub label: String,
    /// The song it belongs to (index).
    pub song: usize,
    /// When it fires on the show's clock, seconds; `None` for a manual cue.
    pub time: Option<f64>,
    /// Seconds after which the next cue follows.
    pub follow: Option<f64>,
    /// Its definition.
    pub def: CueDef,
}

/// A show resolved onto its clock.
#[derive(Debug, Clone, PartialEq)]
pub struct ShowPlan {
    /// The show's name.
    pub name: String,
    /// Its timecode rate.
    pub rate: FrameRate,
    /// Its songs, in order.
    pub songs: Vec<PlannedSong>,
    /// Its cues, in order, every song's in turn.
    pub cues: Vec<PlannedCue>,
}

/// Why a show could not be placed on its clock.
#[derive(Debug, Clone, PartialEq, Error)]
pub enum PlanError {
    /// A rate timecode does not have.
    #[error(transparent)]
    Rate(#[from] TimecodeError),
    /// A cue's position.
    #[error("song {song:?}, cue {cue:?}: {error}")]
    Cue {
        /// The song.
        song: String,
        /// The cue.
        cue: String,
        /// What is wrong.
        error: CueTimeError,
    },
    /// A song before the last with no length and no tracks to measure.
    #[error("song {0:?} needs a `length` (or tracks to take it from): the songs after it start when it ends")]
    NoLength(String),
}

impl ShowPlan {
    /// Places `show` on its clock. `track_length` gives an audio file's length in seconds
    /// (the engine decodes it; `parvis check` may not know it), used for songs without a
    /// `length`.
    pub fn new(show: &ShowDef, track_length: impl Fn(&str) -> Option<f64>) -> Result<Self, PlanError> {
        let rate = FrameRate::from_fps(show.fps)?;
        let mut songs = Vec::with_capacity(show.songs.len());
        let mut cues = Vec::new();
        let mut start = 0.0;
        for (i, song) in show.songs.iter().enumerate() {
            let length = song.length.or_else(|| song.tracks.iter().filter_map(|t| track_length(t)).reduce(f64::max));
            let timecode = match &song.timecode {
                Some(tc) => Some(Timecode::parse(tc, rate)?.to_frames(rate)),
                None => None,
            };
            for cue in &song.cues {
                let time = cue_seconds(song, &cue.at, rate).map_err(|error| PlanError::Cue {
                    song: song.name.clone(),
                    cue: cue.id.clone(),
                    error,
                })?;
                cues.push(PlannedCue {
                    id: cue.id.clone(),
                    label: cue.label.clone(),
                    song: i,
                    time: time.map(|t| start + t),
                    follow: cue.follow,
                    def: cue.clone(),
                });
            }
            songs.push(PlannedSong { name: song.name.clone(), start, length, tracks: song.tracks.clone(), timecode });
            match length {
                Some(length) => start += length,
                None if i + 1 == show.songs.len() => {}
                None => return Err(PlanError::NoLength(song.name.clone())),
            }
        }
        Ok(Self { name: show.name.clone(), rate, songs, cues })
    }

    /// The show's length, if its last song has one.
    pub fn length(&self) -> Option<f64> {
        self.songs.last().map_or(Some(0.0), |s| s.length.map(|l| s.start + l))
    }

    /// The index of the cue with this id.
    pub fn cue(&self, id: &str) -> Option<usize> {
        self.cues.iter().position(|c| c.id == id)
    }

    /// The song playing at `position` (the last one started).
    pub fn song_at(&self, position: f64) -> Option<usize> {
        self.songs.iter().rposition(|s| s.start <= position)
    }

    /// Where a cue stands on the clock: its time, or for a manual cue the time of the nearest
    /// timed cue before it (its song's start if none), which is where the stage manager
    /// reaches it.
    pub fn place(&self, index: usize) -> f64 {
        let song = self.cues[index].song;
        self.cues[..=index]
            .iter()
            .rev()
            .take_while(|c| c.song == song)
            .find_map(|c| c.time)
            .unwrap_or_else(|| self.songs.get(song).map_or(0.0, |s| s.start))
    }
}

/// How far a clock may read short of a time and still count as having reached it: the audio
/// clock sums its blocks in floating point, and after minutes it reads a few picoseconds
/// behind (54.9999999999976 s for 55 s). A microsecond is far below one sample (21 µs at
/// 48 kHz), so no cue fires early by any measure that can be heard or seen.
pub const CLOCK_EPSILON: f64 = 1e-6;

/// A cue that fires.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Firing {
    /// The cue (index in the plan).
    pub cue: usize,
    /// Where on the clock it was meant to fire.
    pub planned: f64,
}

/// Which cues have fired in the current pass through the show, and what is waiting.
#[derive(Debug, Clone, PartialEq)]
pub struct CueRunner {
    fired: Vec<bool>,
    last: Option<usize>,
    /// A manual cue that a follow-on fires, and when.
    follow: Option<(usize, f64)>,
    position: f64,
}

impl CueRunner {
    /// A runner at the start of `plan`, nothing fired.
    pub fn new(plan: &ShowPlan) -> Self {
        Self { fired: vec![false; plan.cues.len()], last: None, follow: None, position: 0.0 }
    }

    /// Where the clock was last seen.
    pub fn position(&self) -> f64 {
        self.position
    }

    /// The cue fired last.
    pub fn last(&self) -> Option<usize> {
        self.last
    }

    /// Whether a cue has fired in this pass.
    pub fn fired(&self, cue: usize) -> bool {
        self.fired.get(cue).copied().unwrap_or(false)
    }

    /// The manual cue GO would fire: the first not yet fired after the last cue fired.
    pub fn standby(&self, plan: &ShowPlan) -> Option<usize> {
        let from = self.last.map_or(0, |l| l + 1);
        (from..plan.cues.len()).find(|&i| plan.cues[i].time.is_none() && !self.fired[i])
    }

    /// The next cue the clock or a follow-on will fire, and when.
    pub fn next_due(&self, plan: &ShowPlan) -> Option<Firing> {
        // The earliest unfired timed cue ahead (list order breaks ties): a cue a song's track
        // length puts past the next song's start must not hold that song's cues back.
        let timed = (0..plan.cues.len())
            .filter_map(|i| plan.cues[i].time.filter(|t| !self.fired[i] && *t >= self.position - 1e-9).map(|t| (i, t)))
            .min_by(|a, b| a.1.total_cmp(&b.1).then(a.0.cmp(&b.0)))
            .map(|(i, t)| Firing { cue: i, planned: t });
        let follow = self.follow.map(|(cue, planned)| Firing { cue, planned });
        match (timed, follow) {
            (Some(t), Some(f)) => Some(if f.planned < t.planned { f } else { t }),
            (t, f) => t.or(f),
        }
    }

    /// The clock moved on to `to`: the cues due by then, in order (timed cues at or before
    /// it, and follow-ons), each marked fired.
    pub fn advance(&mut self, plan: &ShowPlan, to: f64) -> Vec<Firing> {
        let mut out = Vec::new();
        if to < self.position {
            // The clock went back without a seek (a loop, a timecode jump): as a seek.
            self.seek(plan, to);
        }
        while let Some(due) = self.next_due(plan).filter(|d| d.planned <= to + CLOCK_EPSILON) {
            self.fire(plan, due);
            out.push(due);
        }
        self.position = to;
        out
    }

    /// GO at `now`: fires the cue in standby.
    pub fn go(&mut self, plan: &ShowPlan, now: f64) -> Option<Firing> {
        let cue = self.standby(plan)?;
        let firing = Firing { cue, planned: now };
        self.fire(plan, firing);
        Some(firing)
    }

    /// Moves to `to` without firing: timed cues before it count as passed, as do manual cues
    /// placed before it; follow-ons are cancelled.
    pub fn seek(&mut self, plan: &ShowPlan, to: f64) {
        self.follow = None;
        self.last = None;
        for (i, cue) in plan.cues.iter().enumerate() {
            let passed = match cue.time {
                Some(t) => t < to - 1e-9,
                None => plan.place(i) < to - 1e-9,
            };
            self.fired[i] = passed;
            if passed {
                self.last = Some(i);
            }
        }
        self.position = to;
    }

    /// Jumps to a cue and fires it: the clock moves to the cue's place; returns the firing
    /// and the new position.
    pub fn jump(&mut self, plan: &ShowPlan, cue: usize) -> Firing {
        let place = plan.place(cue);
        self.seek(plan, place);
        // Cues before it in the list stay passed, even at the same time.
        for i in 0..cue {
            self.fired[i] = true;
        }
        let firing = Firing { cue, planned: place };
        self.fire(plan, firing);
        firing
    }

    /// Marks a cue fired (a log restored, or fired here).
    pub fn fire(&mut self, plan: &ShowPlan, firing: Firing) {
        self.fired[firing.cue] = true;
        self.last = Some(firing.cue);
        // A pending follow-on survives other cues firing meanwhile (a timed cue between GO and
        // the cue it follows on to); it ends when its own cue fires, or another follow-on
        // replaces it.
        if self.follow.is_some_and(|(cue, _)| cue == firing.cue) {
            self.follow = None;
        }
        if let Some(after) = plan.cues[firing.cue].follow
            && firing.cue + 1 < plan.cues.len()
        {
            self.follow = Some((firing.cue + 1, firing.planned + after));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scene::format::TempoDef;

    fn cue(id: &str, at: CueAt) -> CueDef {
        CueDef { id: id.into(), label: String::new(), at, follow: None, actions: vec![] }
    }

    fn song(name: &str, length: Option<f64>, cues: Vec<CueDef>) -> SongDef {
        SongDef {
            name: name.into(),
            tracks: vec![],
            length,
            timecode: None,
            tempo: vec![],
            cues,
            surtitles: Default::default(),
        }
    }

    #[test]
    fn bars_and_beats_follow_the_tempo_map() {
        let mut s = song("a", Some(100.0), vec![]);
        s.tempo =
            vec![TempoDef { bar: 1, bpm: 120.0, beats_per_bar: 4 }, TempoDef { bar: 5, bpm: 60.0, beats_per_bar: 3 }];
        let at = |bar, beat| cue_seconds(&s, &CueAt::Bar(bar, beat), FrameRate::Fps25).unwrap().unwrap();
        assert_eq!(at(1, 1.0), 0.0);
        assert_eq!(at(2, 1.0), 2.0); // 4 beats at 120
        assert_eq!(at(1, 2.5), 0.75);
        assert_eq!(at(5, 1.0), 8.0);
        assert_eq!(at(6, 2.0), 8.0 + 3.0 + 1.0); // a 3-beat bar at 60, then a beat
        let err = cue_seconds(&s, &CueAt::Bar(5, 4.0), FrameRate::Fps25).unwrap_err();
        assert!(err.to_string().contains("3 beats"), "{err}");
        assert!(cue_seconds(&s, &CueAt::Bar(0, 1.0), FrameRate::Fps25).is_err());
        s.tempo.clear();
        assert_eq!(cue_seconds(&s, &CueAt::Bar(2, 1.0), FrameRate::Fps25), Err(CueTimeError::NoTempo));
    }

    #[test]
    fn timecode_cues_count_from_the_song_timecode() {
        let mut s = song("a", None, vec![]);
        let at = CueAt::Timecode("01:00:10:12".into());
        assert_eq!(cue_seconds(&s, &at, FrameRate::Fps25), Err(CueTimeError::NoSongTimecode));
        s.timecode = Some("01:00:00:00".into());
        assert_eq!(cue_seconds(&s, &at, FrameRate::Fps25).unwrap(), Some(10.48));
        s.timecode = Some("01:00:20:00".into());
        assert!(matches!(cue_seconds(&s, &at, FrameRate::Fps25), Err(CueTimeError::BeforeSong { .. })));
    }

    fn show() -> ShowPlan {
        let mut go = cue("go", CueAt::Manual);
        go.follow = Some(2.0);
        let def = ShowDef {
            name: "s".into(),
            fps: 25.0,
            songs: vec![
                song(
                    "one",
                    Some(10.0),
                    vec![cue("a", CueAt::Seconds(0.0)), cue("b", CueAt::Seconds(4.0)), go, cue("auto", CueAt::Manual)],
                ),
                song("two", None, vec![cue("c", CueAt::Seconds(1.0)), cue("d", CueAt::Manual)]),
            ],
        };
        ShowPlan::new(&def, |_| None).unwrap()
    }

    #[test]
    fn songs_follow_each_other() {
        let plan = show();
        assert_eq!(plan.songs[1].start, 10.0);
        assert_eq!(plan.cues[4].time, Some(11.0));
        assert_eq!(plan.length(), None);
        assert_eq!(plan.place(2), 4.0);
        let mut def =
            ShowDef { name: "x".into(), fps: 25.0, songs: vec![song("a", None, vec![]), song("b", None, vec![])] };
        assert_eq!(ShowPlan::new(&def, |_| None), Err(PlanError::NoLength("a".into())));
        def.songs[0].tracks = vec!["m.ogg".into()];
        assert_eq!(ShowPlan::new(&def, |_| Some(42.0)).unwrap().songs[1].start, 42.0);
    }

    #[test]
    fn cues_fire_once_in_order_on_the_clock_go_and_follow() {
        let plan = show();
        let mut run = CueRunner::new(&plan);
        let ids = |f: Vec<Firing>| f.iter().map(|f| plan.cues[f.cue].id.clone()).collect::<Vec<_>>();
        assert_eq!(ids(run.advance(&plan, 0.0)), ["a"]);
        assert_eq!(ids(run.advance(&plan, 3.9)), Vec::<String>::new());
        assert_eq!(ids(run.advance(&plan, 4.0)), ["b"]);
        assert_eq!(run.standby(&plan), Some(2));
        let go = run.go(&plan, 5.0).unwrap();
        assert_eq!((plan.cues[go.cue].id.as_str(), go.planned), ("go", 5.0));
        // The follow-on is due at 7 s, planned there even if the frame comes later.
        assert_eq!(ids(run.advance(&plan, 6.9)), Vec::<String>::new());
        let f = run.advance(&plan, 7.01);
        assert_eq!((f.len(), plan.cues[f[0].cue].id.as_str(), f[0].planned), (1, "auto", 7.0));
        assert_eq!(ids(run.advance(&plan, 20.0)), ["c"]);
        assert_eq!(run.standby(&plan), Some(5));
        assert_eq!(run.advance(&plan, 30.0), vec![]);
    }

    #[test]
    fn a_follow_on_survives_a_timed_cue_in_between_and_manual_cues_stay_in_their_song() {
        let mut go = cue("go", CueAt::Manual);
        go.follow = Some(12.0);
        let def = ShowDef {
            name: "s".into(),
            fps: 25.0,
            songs: vec![
                song("one", Some(40.0), vec![cue("a", CueAt::Seconds(5.0)), go, cue("close", CueAt::Manual)]),
                song("two", Some(30.0), vec![cue("b1", CueAt::Manual), cue("night", CueAt::Seconds(0.0))]),
            ],
        };
        let plan = ShowPlan::new(&def, |_| None).unwrap();
        let mut run = CueRunner::new(&plan);
        run.advance(&plan, 30.0);
        run.go(&plan, 30.0).unwrap();
        // "night" (40 s) fires before the follow-on (42 s); the follow-on still comes.
        let ids: Vec<&str> = run.advance(&plan, 43.0).iter().map(|f| plan.cues[f.cue].id.as_str()).collect();
        assert_eq!(ids, ["night", "close"]);
        // A manual cue first in its song stands at its song's start, not at the last cue before.
        assert_eq!(plan.place(3), 40.0);
    }

    #[test]
    fn seeking_back_refires_and_forward_skips() {
        let plan = show();
        let mut run = CueRunner::new(&plan);
        run.advance(&plan, 12.0);
        // Back to 3 s: b (4 s) fires again when reached, a does not.
        run.seek(&plan, 3.0);
        assert!(run.fired(0) && !run.fired(1));
        assert_eq!(run.advance(&plan, 4.5).iter().map(|f| f.cue).collect::<Vec<_>>(), [1]);
        // Forward past c without firing it.
        run.seek(&plan, 11.5);
        assert!(run.advance(&plan, 12.0).is_empty());
        // A clock that goes back by itself (a loop) counts as a seek.
        assert_eq!(run.advance(&plan, 0.5).len(), 0);
        assert_eq!(run.advance(&plan, 4.0).len(), 1);
        // Jump fires the cue where it stands.
        let f = run.jump(&plan, 4);
        assert_eq!((f.cue, f.planned, run.standby(&plan)), (4, 11.0, Some(5)));
    }
}
