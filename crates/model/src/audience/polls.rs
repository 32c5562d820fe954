//! Votes and crowd energy, as pure data: a [`Tally`] counts one vote per member (a later vote
//! replaces an earlier one), [`Outcome`] applies the quorum, and [`EnergyMeter`] measures
//! messages per second over sliding windows. The ECS side (`super`) decides when polls open and
//! close; nothing here reads a clock.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use super::event::UserId;

/// Most distinct choices a democracy vote collects (words typed after a command).
pub const MAX_FREE_OPTIONS: usize = 16;

/// Why a vote was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum VoteError {
    /// No such option (fixed polls), or too many different words (democracy votes).
    BadOption(String),
}

/// Votes of one poll: one per member, weighted.
#[derive(Debug, Clone)]
pub struct Tally {
    options: Vec<String>,
    /// Whether voters may add options (democracy mode: each typed word is an option).
    open_ended: bool,
    counts: Vec<u64>,
    ballots: HashMap<UserId, (usize, u32)>,
}

/// How a poll ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// This option won (index into the options).
    Winner(usize),
    /// Too few votes.
    NoQuorum {
        /// Votes cast.
        votes: u64,
        /// Votes needed.
        needed: u64,
    },
}

impl Tally {
    /// A poll with fixed options.
    pub fn new(options: impl IntoIterator<Item = String>) -> Self {
        let options: Vec<String> = options.into_iter().collect();
        Self { counts: vec![0; options.len()], options, open_ended: false, ballots: HashMap::new() }
    }

    /// A vote whose options are whatever voters name (up to [`MAX_FREE_OPTIONS`]).
    pub fn open_ended() -> Self {
        Self { open_ended: true, ..Self::new([]) }
    }

    /// Records `user`'s vote for `option` with a weight (1 for everyone unless a platform gives
    /// more, e.g. bits), replacing the member's earlier vote.
    pub fn vote(&mut self, user: &UserId, option: &str, weight: u32) -> Result<(), VoteError> {
        let index = match self.options.iter().position(|o| o == option) {
            Some(i) => i,
            None if self.open_ended && self.options.len() < MAX_FREE_OPTIONS => {
                self.options.push(option.to_owned());
                self.counts.push(0);
                self.options.len() - 1
            }
            None => return Err(VoteError::BadOption(option.to_owned())),
        };
        if let Some((previous, w)) = self.ballots.insert(user.clone(), (index, weight)) {
            self.counts[previous] -= u64::from(w);
        }
        self.counts[index] += u64::from(weight);
        Ok(())
    }

    /// The options, in order.
    pub fn options(&self) -> &[String] {
        &self.options
    }

    /// Weighted votes per option, in option order.
    pub fn counts(&self) -> &[u64] {
        &self.counts
    }

    /// Members who voted.
    pub fn voters(&self) -> usize {
        self.ballots.len()
    }

    /// The result: the option with the most (weighted) votes, if at least `min_votes` members
    /// and `min_share` of the `audience` voted. Ties go to the option listed first (for
    /// democracy votes: the word proposed first), so a result never depends on hashing order.
    pub fn outcome(&self, min_votes: u32, min_share: f32, audience: usize) -> Outcome {
        outcome_of(&self.counts, self.voters() as u64, min_votes, min_share, audience as u64)
    }
}

/// The result of weighted `counts` (in option order) cast by `voters` members of an
/// `audience`: [`Tally::outcome`] for one instance's votes, and the sum of every instance's
/// when a poll is counted across overflow shards.
pub fn outcome_of(counts: &[u64], voters: u64, min_votes: u32, min_share: f32, audience: u64) -> Outcome {
    // The small slack keeps 5 % of 80 at 4 votes despite f32's 0.05 being a hair above it.
    let by_share = (f64::from(min_share.clamp(0.0, 1.0)) * audience as f64 - 1e-6).ceil().max(0.0) as u64;
    let needed = u64::from(min_votes.max(1)).max(by_share);
    if voters < needed || counts.is_empty() {
        return Outcome::NoQuorum { votes: voters, needed };
    }
    let mut best = 0;
    for (i, c) in counts.iter().enumerate() {
        if *c > counts[best] {
            best = i;
        }
    }
    Outcome::Winner(best)
}

/// Width of one bucket of the energy meter.
const BUCKET: Duration = Duration::from_millis(250);
/// Longest window the meter can average over.
pub const MAX_ENERGY_WINDOW: Duration = Duration::from_secs(600);

/// Crowd energy: audience messages counted in 250 ms buckets, averaged over any window up to
/// [`MAX_ENERGY_WINDOW`]. Constant memory whatever the crowd.
#[derive(Debug, Clone)]
pub struct EnergyMeter {
    start: Instant,
    buckets: Vec<u32>,
    /// Index (since `start`) of the newest bucket written.
    newest: u64,
}

impl EnergyMeter {
    /// An empty meter starting at `now`.
    pub fn new(now: Instant) -> Self {
        let len = (MAX_ENERGY_WINDOW.as_millis() / BUCKET.as_millis()) as usize + 1;
        Self { start: now, buckets: vec![0; len], newest: 0 }
    }

    fn index(&self, at: Instant) -> u64 {
        (at.saturating_duration_since(self.start).as_millis() / BUCKET.as_millis()) as u64
    }

    /// Moves the newest bucket up to `now`, zeroing the buckets skipped.
    fn roll(&mut self, now: Instant) {
        let target = self.index(now);
        let len = self.buckets.len() as u64;
        if target > self.newest {
            let gap = (target - self.newest).min(len);
            for k in 1..=gap {
                let slot = ((target - gap + k) % len) as usize;
                self.buckets[slot] = 0;
            }
            self.newest = target;
        }
    }

    /// Counts `n` messages at `now`.
    pub fn record(&mut self, now: Instant, n: u32) {
        self.roll(now);
        let slot = (self.newest % self.buckets.len() as u64) as usize;
        self.buckets[slot] = self.buckets[slot].saturating_add(n);
    }

    /// Messages per second over the last `window` (capped at [`MAX_ENERGY_WINDOW`]). Time
    /// before the meter started counts as silence, so the first seconds of a show cannot look
    /// like an ovation.
    pub fn rate(&mut self, now: Instant, window: Duration) -> f32 {
        self.roll(now);
        let window = window.clamp(BUCKET, MAX_ENERGY_WINDOW);
        let wanted = (window.as_millis() / BUCKET.as_millis()).max(1) as u64;
        let n = wanted.min(self.newest + 1);
        let len = self.buckets.len() as u64;
        let sum: u64 = (0..n).map(|k| u64::from(self.buckets[((self.newest - k) % len) as usize])).sum();
        let seconds = (wanted as f32) * BUCKET.as_secs_f32();
        sum as f32 / seconds
    }
}

/// Edge detection with hysteresis for crowd-energy rules: fires once when the rate rises above
/// the threshold, and re-arms only after it falls below 80 % of it, so a crowd hovering at the
/// threshold does not fire the rule every frame.
pub fn energy_edge(armed: &mut bool, rate: f32, above: f32) -> bool {
    if *armed && rate > above {
        *armed = false;
        return true;
    }
    if !*armed && rate < above * 0.8 {
        *armed = true;
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    fn user(n: u32) -> UserId {
        format!("u{n}").into()
    }

    #[test]
    fn one_vote_per_member_and_changes_replace() {
        let mut t = Tally::new(["a".to_owned(), "b".to_owned()]);
        t.vote(&user(1), "a", 1).unwrap();
        t.vote(&user(2), "a", 1).unwrap();
        t.vote(&user(2), "a", 1).unwrap();
        assert_eq!(t.counts(), [2, 0], "voting twice for the same option counts once");
        t.vote(&user(1), "b", 1).unwrap();
        assert_eq!(t.counts(), [1, 1], "a changed vote moves");
        assert_eq!(t.vote(&user(3), "c", 1), Err(VoteError::BadOption("c".into())));
        t.vote(&user(3), "b", 5).unwrap();
        assert_eq!(t.counts(), [1, 6], "weights count");
        assert_eq!(t.voters(), 3);
        assert_eq!(t.outcome(1, 0.0, 10), Outcome::Winner(1));
    }

    #[test]
    fn quorum_by_count_and_by_share_of_the_audience() {
        let mut t = Tally::new(["a".to_owned(), "b".to_owned()]);
        for n in 0..4 {
            t.vote(&user(n), "a", 1).unwrap();
        }
        assert_eq!(t.outcome(5, 0.0, 10), Outcome::NoQuorum { votes: 4, needed: 5 });
        assert_eq!(t.outcome(1, 0.05, 100), Outcome::NoQuorum { votes: 4, needed: 5 }, "5 % of 100 people");
        assert_eq!(t.outcome(1, 0.05, 80), Outcome::Winner(0), "5 % of 80 people is 4");
    }

    #[test]
    fn ties_go_to_the_first_option_and_open_ended_votes_grow() {
        let mut t = Tally::open_ended();
        t.vote(&user(1), "red", 1).unwrap();
        t.vote(&user(2), "blue", 1).unwrap();
        assert_eq!(t.options(), ["red", "blue"]);
        assert_eq!(t.outcome(1, 0.0, 2), Outcome::Winner(0));
        for n in 0..MAX_FREE_OPTIONS as u32 {
            let _ = t.vote(&user(100 + n), &format!("w{n}"), 1);
        }
        assert_eq!(t.options().len(), MAX_FREE_OPTIONS);
        assert!(t.vote(&user(999), "one-too-many", 1).is_err());
    }

    #[test]
    fn energy_is_a_sliding_average_with_constant_memory() {
        let t0 = Instant::now();
        let mut m = EnergyMeter::new(t0);
        for k in 0..40 {
            m.record(t0 + Duration::from_millis(k * 250), 25);
        }
        let now = t0 + Duration::from_millis(39 * 250);
        let rate = m.rate(now, Duration::from_secs(10));
        assert!((rate - 100.0).abs() < 0.01, "{rate}");
        let later = now + Duration::from_secs(5);
        let rate = m.rate(later, Duration::from_secs(10));
        assert!((rate - 47.5).abs() < 3.0, "half the window is silent: {rate}");
        let much_later = now + Duration::from_secs(3600);
        assert_eq!(m.rate(much_later, Duration::from_secs(10)), 0.0, "a long silence empties the meter");
    }

    #[test]
    fn energy_fires_once_per_rise() {
        let mut armed = true;
        let fired: Vec<bool> =
            [5.0, 12.0, 11.0, 9.0, 11.0, 7.0, 12.0].iter().map(|r| energy_edge(&mut armed, *r, 10.0)).collect();
        assert_eq!(fired, [false, true, false, false, false, false, true]);
    }
}
