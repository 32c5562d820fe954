//! A tour's timeline: travel to a stop, stay while its narration plays, go on to the next.
//! Plain data stepped by elapsed time, so the sequence is the same on every machine and in
//! a replay, and testable without a window.

/// How long one stop takes.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct StopTiming {
    /// Seconds of travel to it.
    pub travel: f32,
    /// Seconds spent there.
    pub dwell: f32,
}

/// What happened while time advanced.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum TourEvent {
    /// Travel to stop `n` began.
    Depart(usize),
    /// Stop `n` was reached: its narration starts.
    Arrive(usize),
    /// The last stop ended.
    Finished,
}

/// Where a tour is.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum TourPhase {
    /// Moving to stop `stop`; `progress` from 0 to 1.
    Travelling {
        /// The stop travelled to.
        stop: usize,
        /// Share of the travel done.
        progress: f32,
    },
    /// At stop `stop`, `elapsed` seconds into its `dwell`.
    AtStop {
        /// The stop.
        stop: usize,
        /// Seconds since arrival.
        elapsed: f32,
        /// Seconds the stop lasts.
        dwell: f32,
    },
    /// Over.
    Finished,
}

/// A tour being played.
#[derive(Debug, Clone, PartialEq)]
pub struct TourPlayer {
    stops: Vec<StopTiming>,
    stop: usize,
    /// Seconds since the current stop's travel began.
    clock: f32,
    started: bool,
    finished: bool,
}

impl TourPlayer {
    /// A tour over these stops, not started.
    pub fn new(stops: Vec<StopTiming>) -> Self {
        let finished = stops.is_empty();
        Self { stops, stop: 0, clock: 0.0, started: false, finished }
    }

    /// Lengthens stop `stop` to at least `dwell` seconds (its narration's audio is longer).
    pub fn extend_dwell(&mut self, stop: usize, dwell: f32) {
        if let Some(s) = self.stops.get_mut(stop) {
            s.dwell = s.dwell.max(dwell);
        }
    }

    /// Moves time on by `dt` seconds and says what happened, in order. A long `dt` (a stall)
    /// passes through every stop it covers rather than skipping their events.
    pub fn advance(&mut self, dt: f32) -> Vec<TourEvent> {
        let mut events = Vec::new();
        if self.finished {
            return events;
        }
        if !self.started {
            self.started = true;
            events.push(TourEvent::Depart(0));
            if self.stops[0].travel <= 0.0 {
                events.push(TourEvent::Arrive(0));
            }
        }
        let mut left = dt.max(0.0);
        loop {
            let StopTiming { travel, dwell } = self.stops[self.stop];
            let end = travel.max(0.0) + dwell;
            let before = self.clock;
            let step = left.min(end - self.clock);
            self.clock += step;
            left -= step;
            if before < travel && self.clock >= travel && travel > 0.0 {
                events.push(TourEvent::Arrive(self.stop));
            }
            if self.clock < end {
                break;
            }
            if self.stop + 1 == self.stops.len() {
                self.finished = true;
                events.push(TourEvent::Finished);
                break;
            }
            self.stop += 1;
            self.clock = 0.0;
            events.push(TourEvent::Depart(self.stop));
            if self.stops[self.stop].travel <= 0.0 {
                events.push(TourEvent::Arrive(self.stop));
            }
            if left <= 0.0 {
                break;
            }
        }
        events
    }

    /// Goes straight to the start of stop `stop`'s travel (next/previous stop buttons).
    pub fn jump_to(&mut self, stop: usize) -> Vec<TourEvent> {
        if stop >= self.stops.len() {
            return Vec::new();
        }
        self.started = true;
        self.finished = false;
        self.stop = stop;
        self.clock = 0.0;
        let mut events = vec![TourEvent::Depart(stop)];
        if self.stops[stop].travel <= 0.0 {
            events.push(TourEvent::Arrive(stop));
        }
        events
    }

    /// The current stop's index.
    pub fn stop(&self) -> usize {
        self.stop
    }

    /// Where the tour is now.
    pub fn phase(&self) -> TourPhase {
        if self.finished {
            return TourPhase::Finished;
        }
        let StopTiming { travel, dwell } = self.stops[self.stop];
        if self.clock < travel {
            TourPhase::Travelling { stop: self.stop, progress: self.clock / travel }
        } else {
            TourPhase::AtStop { stop: self.stop, elapsed: self.clock - travel.max(0.0), dwell }
        }
    }
}

/// Smooth start and stop for camera moves.
pub fn ease_in_out(t: f32) -> f32 {
    let t = t.clamp(0.0, 1.0);
    t * t * (3.0 - 2.0 * t)
}

/// Most characters of a subtitle line: two lines of a broadcaster's subtitle style.
pub const SUBTITLE_CHARS: usize = 84;

/// Splits a narration into subtitle cues of at most [`SUBTITLE_CHARS`] characters, at
/// sentence ends where it can, else at commas, else between words.
pub fn subtitle_cues(text: &str) -> Vec<String> {
    let mut sentences = Vec::new();
    let mut current = String::new();
    for c in text.split_whitespace().flat_map(|w| w.chars().chain(std::iter::once(' '))) {
        current.push(c);
        if c == ' ' && current.trim_end().ends_with(['.', '!', '?', '…']) {
            sentences.push(current.trim().to_owned());
            current.clear();
        }
    }
    if !current.trim().is_empty() {
        sentences.push(current.trim().to_owned());
    }
    let mut cues = Vec::new();
    for sentence in sentences {
        let mut line = String::new();
        for word in sentence.split(' ') {
            let fits = line.chars().count() + 1 + word.chars().count() <= SUBTITLE_CHARS;
            if !line.is_empty() && !fits {
                cues.push(std::mem::take(&mut line));
            }
            if !line.is_empty() {
                line.push(' ');
            }
            line.push_str(word);
            // Prefer breaking after a comma once the line is well filled.
            if line.ends_with(',') && line.chars().count() > SUBTITLE_CHARS / 2 {
                cues.push(std::mem::take(&mut line));
            }
        }
        if !line.is_empty() {
            cues.push(line);
        }
    }
    cues
}

/// The cue on screen `elapsed` seconds into a narration of `duration` seconds: each cue is
/// shown for a share of the time in proportion to its length, as speech would take.
pub fn cue_at(cues: &[String], elapsed: f32, duration: f32) -> Option<&str> {
    let total: usize = cues.iter().map(|c| c.chars().count().max(1)).sum();
    if total == 0 || duration <= 0.0 {
        return None;
    }
    let mut at = 0.0;
    for cue in cues {
        at += duration * cue.chars().count().max(1) as f32 / total as f32;
        if elapsed < at {
            return Some(cue);
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tour() -> TourPlayer {
        TourPlayer::new(vec![
            StopTiming { travel: 2.0, dwell: 5.0 },
            StopTiming { travel: 0.0, dwell: 3.0 },
            StopTiming { travel: 1.0, dwell: 1.0 },
        ])
    }

    #[test]
    fn stops_follow_in_order_with_travel_then_dwell() {
        let mut t = tour();
        assert_eq!(t.advance(0.0), vec![TourEvent::Depart(0)]);
        assert!(matches!(t.phase(), TourPhase::Travelling { stop: 0, progress } if progress == 0.0));
        assert_eq!(t.advance(1.0), vec![]);
        assert!(matches!(t.phase(), TourPhase::Travelling { stop: 0, progress } if (progress - 0.5).abs() < 1e-6));
        assert_eq!(t.advance(1.5), vec![TourEvent::Arrive(0)]);
        assert!(
            matches!(t.phase(), TourPhase::AtStop { stop: 0, elapsed, dwell: 5.0 } if (elapsed - 0.5).abs() < 1e-6)
        );
        // Stop 1 has no travel: it departs and arrives at once.
        assert_eq!(t.advance(4.5), vec![TourEvent::Depart(1), TourEvent::Arrive(1)]);
        assert_eq!(t.advance(3.0), vec![TourEvent::Depart(2)]);
        assert_eq!(t.advance(1.0), vec![TourEvent::Arrive(2)]);
        assert_eq!(t.advance(1.0), vec![TourEvent::Finished]);
        assert_eq!(t.phase(), TourPhase::Finished);
        assert_eq!(t.advance(10.0), vec![]);
    }

    #[test]
    fn a_stall_passes_through_every_stop_it_covers() {
        let mut t = tour();
        let events = t.advance(100.0);
        use TourEvent::*;
        assert_eq!(events, vec![Depart(0), Arrive(0), Depart(1), Arrive(1), Depart(2), Arrive(2), Finished]);
        // Small steps give the same sequence as one big one.
        let mut small = tour();
        let stepped: Vec<_> = (0..2000).flat_map(|_| small.advance(0.01)).collect();
        assert_eq!(stepped, events);
    }

    #[test]
    fn narration_longer_than_the_stop_holds_it_and_jumps_restart_a_stop() {
        let mut t = tour();
        t.advance(2.0);
        t.extend_dwell(0, 9.0);
        assert_eq!(t.advance(8.0), vec![]);
        assert_eq!(t.advance(1.0), vec![TourEvent::Depart(1), TourEvent::Arrive(1)]);
        assert_eq!(t.jump_to(2), vec![TourEvent::Depart(2)]);
        assert_eq!(t.stop(), 2);
        assert_eq!(t.jump_to(0), vec![TourEvent::Depart(0)]);
        assert_eq!(t.jump_to(7), vec![]);
        assert_eq!(TourPlayer::new(vec![]).advance(1.0), vec![]);
    }

    #[test]
    fn subtitles_break_at_sentences_and_keep_to_two_lines() {
        let text = "Built in the twelfth century, the cloister was the monks' garden. Its well fed the kitchens, the laundry and the infirmary, and it never ran dry, not even in the drought of 1540!";
        let cues = subtitle_cues(text);
        assert_eq!(cues[0], "Built in the twelfth century, the cloister was the monks' garden.");
        assert!(cues.iter().all(|c| c.chars().count() <= SUBTITLE_CHARS), "{cues:?}");
        assert_eq!(cues.join(" "), text.split_whitespace().collect::<Vec<_>>().join(" "), "no word lost");
        assert!(cues.len() >= 3);
        // Longer cues stay up longer; the first shows at the start, the last near the end.
        assert_eq!(cue_at(&cues, 0.0, 20.0), Some(cues[0].as_str()));
        assert_eq!(cue_at(&cues, 19.9, 20.0), cues.last().map(String::as_str));
        assert_eq!(cue_at(&cues, 20.5, 20.0), None);
        assert!(subtitle_cues("").is_empty());
        assert_eq!(subtitle_cues("Bonjour"), vec!["Bonjour"]);
        // One endless word still makes a cue.
        assert_eq!(subtitle_cues(&"a".repeat(200)).len(), 1);
    }
}
