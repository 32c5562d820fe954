//! Counting across overflow shards, as plain data. A show that outgrows one venue instance
//! runs on shards (`parvis follow --shard ID`), each with an audience of its own; a poll or a
//! crowd-energy rule the scene declares `across_shards: Sum` is decided once, on the main
//! stage, from every instance's counts:
//!
//! - each shard sends a [`ShardReport`] (`parvis.V.shard.report.ID`) at least every second and
//!   every [`REPORT_INTERVAL`] while a summed poll runs: its members, how many chat lines and
//!   reactions its audience has sent since it started, and its counts of each summed poll;
//! - the authority keeps the latest report of each shard in a [`ShardBook`], adds them to its
//!   own counts, decides, and sends the [`ShardTotals`] (`parvis.V.shard.totals`) back so that
//!   every page shows the same tally and winner; the outcome's commands go through the log as
//!   any other, and shards apply them.
//!
//! A poll is one *run*: the log sequence number of the `open_poll` that opened it, which the
//! authority and every shard share. A summed democracy vote (`rule:NAME`, its options the words
//! typed) is not logged: its run is a number the authority picks when it opens the vote — at
//! its own audience's first `!word`, or when a shard's report asks for one ([`ASKING`]: a shard
//! whose audience typed first) — and its totals carry that run and the time left to every
//! shard, which joins it. Nothing here reads a clock or does I/O.

use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use crate::audience::polls::MAX_FREE_OPTIONS;
use crate::net::{MAX_EDGE_ID, NetError, check_edge_id};

/// How often a shard reports while a summed poll runs (and the authority sends totals).
pub const REPORT_INTERVAL: Duration = Duration::from_millis(250);
/// A shard reports at least this often, so the authority knows it is there.
pub const HEARTBEAT: Duration = Duration::from_secs(1);
/// A shard silent this long is lost: its members no longer count towards a quorum, and a poll
/// no longer waits for it (the votes it reported still count).
pub const SHARD_TIMEOUT: Duration = Duration::from_secs(5);
/// How long the authority waits, after a summed poll's time is up, for every shard's final
/// count before it decides with what it has (plus the latest live shard's longer stream delay:
/// [`ShardBook::grace`]).
pub const CLOSING_GRACE: Duration = Duration::from_secs(2);
/// Longest stream delay a shard may declare (the venue's own bound on `--stream-delay`).
pub const MAX_STREAM_DELAY: Duration = Duration::from_secs(600);
/// Reports forgotten this long after their shard was last heard of.
const FORGET_AFTER: Duration = Duration::from_secs(600);
/// Longest report or totals message read: totals name each of up to [`MAX_SHARDS`] shards with
/// its counts (about 150 bytes each at most).
pub const MAX_SHARD_MESSAGE_BYTES: usize = 256 * 1024;
/// Most shards one authority keeps count of (anyone allowed to publish reports could otherwise
/// make it remember without end).
pub const MAX_SHARDS: usize = 1000;
/// Most polls and democracy votes one report may hold.
pub const MAX_POLLS: usize = 16;
/// Most options a poll has (the scene format's limit).
const MAX_OPTIONS: usize = 8;
/// Longest word of a democracy vote counted across shards, in bytes.
const MAX_WORD_BYTES: usize = 64;
/// The run of a shard's democracy vote the main stage has not opened yet: the shard's audience
/// voted first, and its report asks the authority to open the vote everywhere.
pub const ASKING: u64 = 0;
/// Most members one shard may claim (more than one machine holds).
const MAX_MEMBERS: u64 = 10_000_000;

/// One shard's counts, for the authority.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ShardReport {
    /// The shard's id (`--shard`); the last token of the subject it arrives on.
    pub shard: String,
    /// When the shard started (milliseconds since the Unix epoch): a restarted shard counts
    /// its lines from zero again.
    pub started_ms: u64,
    /// Members connected now.
    pub members: u64,
    /// Chat lines and reactions its audience has sent since it started.
    pub lively: u64,
    /// How late its audience's stream shows the stage (`--stream-delay`), in milliseconds: its
    /// polls and votes close that much later, and the main stage waits for them.
    #[serde(default)]
    pub stream_delay_ms: u64,
    /// Its counts of the summed polls it runs or has just closed.
    #[serde(default)]
    pub polls: Vec<ShardPollCount>,
}

/// A shard's count of one run of a summed poll.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ShardPollCount {
    /// The poll's name.
    pub poll: String,
    /// The run: the log sequence number of the `open_poll` that opened it; for a democracy
    /// vote, the authority's number for it, or [`ASKING`].
    pub opened: u64,
    /// A democracy vote's options: the words voted for, in the order of `counts` (empty for a
    /// poll, whose options are the scene's).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub words: Vec<String>,
    /// Weighted votes per option, in the scene's option order (a poll) or `words`' order.
    pub counts: Vec<u64>,
    /// Members who voted.
    pub voters: u64,
    /// The shard's time for this poll is up: these counts are its last.
    pub closed: bool,
}

/// A summed poll's counts over every instance, from the authority to its shards.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ShardTotals {
    /// The poll's name.
    pub poll: String,
    /// The run (see [`ShardPollCount::opened`]).
    pub opened: u64,
    /// A democracy vote's options: the words voted for on every instance, in the order of
    /// `counts` (empty for a poll).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub words: Vec<String>,
    /// Weighted votes per option over every instance.
    pub counts: Vec<u64>,
    /// Members who voted, over every instance.
    pub voters: u64,
    /// Time left to vote on the main stage when these totals were sent (a democracy vote:
    /// shards close with it).
    #[serde(default)]
    pub closes_in_ms: u64,
    /// What each shard's counts were when these totals were made, by shard id: a shard shows
    /// the totals with its own newer counts in place of these.
    pub shards: BTreeMap<String, Vec<u64>>,
    /// The winning option's id, once decided.
    pub winner: Option<String>,
    /// Decided: the poll is over everywhere.
    pub closed: bool,
}

fn bad(subject: &str, message: String) -> NetError {
    NetError::BadMessage { subject: subject.to_owned(), message }
}

fn read<'a, T: Deserialize<'a>>(subject: &str, payload: &'a [u8], what: &str) -> Result<T, NetError> {
    if payload.len() > MAX_SHARD_MESSAGE_BYTES {
        return Err(bad(subject, format!("{} bytes, more than the {MAX_SHARD_MESSAGE_BYTES} allowed", payload.len())));
    }
    serde_json::from_slice(payload).map_err(|e| bad(subject, format!("not {what}: {e}")))
}

/// Most weighted votes one option may have (a vote weighs at most 100).
const MAX_COUNT: u64 = MAX_MEMBERS * 100;

fn check_counts(subject: &str, poll: &str, words: &[String], counts: &[u64]) -> Result<(), NetError> {
    // A poll's name, or `rule:` and a rule's.
    if poll.is_empty() || poll.len() > 69 || counts.len() > MAX_OPTIONS.max(MAX_FREE_OPTIONS) {
        return Err(bad(
            subject,
            format!("poll {poll:?}: a name of 1 to 64 bytes and at most {MAX_FREE_OPTIONS} counts"),
        ));
    }
    if words.is_empty() && counts.len() > MAX_OPTIONS {
        return Err(bad(
            subject,
            format!("poll {poll:?}: {} counts, more than a poll's {MAX_OPTIONS} options", counts.len()),
        ));
    }
    if !words.is_empty() && words.len() != counts.len() {
        return Err(bad(subject, format!("poll {poll:?}: {} words for {} counts", words.len(), counts.len())));
    }
    if let Some(w) = words.iter().find(|w| !valid_word(w)) {
        return Err(bad(
            subject,
            format!("poll {poll:?}: the word {w:?} (1 to {MAX_WORD_BYTES} bytes, no control characters)"),
        ));
    }
    if counts.iter().any(|c| *c > MAX_COUNT) {
        return Err(bad(subject, format!("poll {poll:?}: a count over {MAX_COUNT}, more than a shard's members cast")));
    }
    Ok(())
}

/// Whether a democracy vote's word (as folded) can be counted across shards: 1 to 64 bytes,
/// no control characters. A venue refuses other words from its audience, so that one member's
/// word never makes its shard's report refused.
pub fn valid_word(word: &str) -> bool {
    !word.is_empty() && word.len() <= MAX_WORD_BYTES && !word.chars().any(char::is_control)
}

impl ShardReport {
    /// Reads a report that arrived on `subject`, whose last token must be the shard it speaks
    /// for (NATS permissions hold each shard to its own subject).
    pub fn from_message(subject: &str, payload: &[u8]) -> Result<Self, NetError> {
        let report: ShardReport = read(subject, payload, "a shard's report")?;
        check_edge_id(&report.shard).map_err(|_| {
            bad(subject, format!("shard id {:?}: use 1 to {MAX_EDGE_ID} lower-case letters or digits", report.shard))
        })?;
        if subject.rsplit('.').next() != Some(report.shard.as_str()) {
            return Err(bad(
                subject,
                format!("a report in shard {:?}'s name on another shard's subject", report.shard),
            ));
        }
        if report.stream_delay_ms > MAX_STREAM_DELAY.as_millis() as u64 {
            return Err(bad(
                subject,
                format!("a stream delay of {} ms, more than {} s", report.stream_delay_ms, MAX_STREAM_DELAY.as_secs()),
            ));
        }
        if report.members > MAX_MEMBERS || report.polls.len() > MAX_POLLS {
            return Err(bad(
                subject,
                format!("{} members and {} polls: more than a shard holds", report.members, report.polls.len()),
            ));
        }
        for p in &report.polls {
            check_counts(subject, &p.poll, &p.words, &p.counts)?;
            if p.voters > MAX_MEMBERS {
                return Err(bad(subject, format!("poll {:?}: {} voters", p.poll, p.voters)));
            }
        }
        Ok(report)
    }

    /// The report as it travels.
    pub fn to_json(&self) -> Vec<u8> {
        serde_json::to_vec(self).unwrap_or_default()
    }
}

impl ShardTotals {
    /// Reads totals that arrived on `subject`.
    pub fn from_message(subject: &str, payload: &[u8]) -> Result<Self, NetError> {
        let totals: ShardTotals = read(subject, payload, "a poll's totals")?;
        check_counts(subject, &totals.poll, &totals.words, &totals.counts)?;
        if totals.shards.len() > MAX_SHARDS || totals.shards.values().any(|c| c.len() > totals.counts.len()) {
            return Err(bad(subject, "more shards or options than a show has".into()));
        }
        if let Some(w) = totals.winner.as_ref().filter(|w| !totals.words.is_empty() && !totals.words.contains(w)) {
            return Err(bad(subject, format!("poll {:?}: the winner {w:?} is not one of its words", totals.poll)));
        }
        Ok(totals)
    }

    /// The totals as they travel.
    pub fn to_json(&self) -> Vec<u8> {
        serde_json::to_vec(self).unwrap_or_default()
    }

    /// The other instances' counts, as shard `me` adds them to its own (newer) counts: the
    /// totals without what they hold for `me`, so that a member's vote shows at once.
    pub fn others(&self, me: &str) -> Vec<u64> {
        let included = self.shards.get(me);
        let mine = |i: usize| included.and_then(|c| c.get(i)).copied().unwrap_or(0);
        self.counts.iter().enumerate().map(|(i, total)| total.saturating_sub(mine(i))).collect()
    }
}

#[derive(Debug, Clone)]
struct Seen {
    report: ShardReport,
    at: Instant,
}

/// The authority's book of its shards' latest reports.
#[derive(Debug, Default)]
pub struct ShardBook {
    shards: HashMap<String, Seen>,
}

impl ShardBook {
    /// Takes a shard's report, arrived at `now`; returns how many chat lines and reactions
    /// are new since its previous one (none from a shard heard of for the first time or just
    /// restarted: its history is not a burst of energy now). `None`: a shard beyond the
    /// [`MAX_SHARDS`] the book holds, refused.
    pub fn take(&mut self, report: ShardReport, now: Instant) -> Option<u64> {
        if !self.shards.contains_key(&report.shard) && self.shards.len() >= MAX_SHARDS {
            return None;
        }
        let new = match self.shards.get(&report.shard) {
            Some(seen) if seen.report.started_ms == report.started_ms => {
                report.lively.saturating_sub(seen.report.lively)
            }
            _ => 0,
        };
        // Counts of a run the shard no longer reports stay (its votes still count when the
        // poll closes), unless the new report has that run.
        let mut kept: Vec<ShardPollCount> = self
            .shards
            .get(&report.shard)
            .map(|s| s.report.polls.clone())
            .unwrap_or_default()
            .into_iter()
            .filter(|old| {
                old.opened != ASKING && !report.polls.iter().any(|p| p.poll == old.poll && p.opened == old.opened)
            })
            .collect();
        let mut report = report;
        kept.truncate(MAX_POLLS);
        report.polls.extend(kept);
        self.shards.insert(report.shard.clone(), Seen { report, at: now });
        Some(new)
    }

    /// Forgets shards unheard of for ten minutes.
    pub fn forget_old(&mut self, now: Instant) {
        self.shards.retain(|_, s| now.saturating_duration_since(s.at) < FORGET_AFTER);
    }

    fn live(&self, now: Instant) -> impl Iterator<Item = &Seen> {
        self.shards.values().filter(move |s| now.saturating_duration_since(s.at) < SHARD_TIMEOUT)
    }

    /// Shards heard from within [`SHARD_TIMEOUT`], by id.
    pub fn live_shards(&self, now: Instant) -> Vec<&str> {
        let mut ids: Vec<&str> = self.live(now).map(|s| s.report.shard.as_str()).collect();
        ids.sort_unstable();
        ids
    }

    /// Members of the live shards.
    pub fn members(&self, now: Instant) -> u64 {
        self.live(now).map(|s| s.report.members).sum()
    }

    /// How long the main stage, whose own stream is `own_delay` late, waits for its live shards'
    /// last counts after its own time is up: [`CLOSING_GRACE`], plus how much later the latest
    /// shard's stream shows the stage (its viewers vote until they have seen the close).
    pub fn grace(&self, own_delay: Duration, now: Instant) -> Duration {
        let latest = self.live(now).map(|s| Duration::from_millis(s.report.stream_delay_ms)).max();
        CLOSING_GRACE + latest.unwrap_or_default().min(MAX_STREAM_DELAY).saturating_sub(own_delay)
    }

    /// Every shard's counts of one run of a poll with `options` options, and its voters,
    /// summed (lost shards' last counts included: their votes were cast).
    pub fn counts(&self, poll: &str, opened: u64, options: usize) -> (Vec<u64>, u64) {
        let mut counts = vec![0u64; options];
        let mut voters = 0;
        for (_, c) in self.runs(poll, opened) {
            for (sum, n) in counts.iter_mut().zip(&c.counts) {
                *sum = (*sum).saturating_add(*n);
            }
            voters = c.voters.saturating_add(voters);
        }
        (counts, voters)
    }

    /// Each shard's counts of one run, by shard id.
    pub fn by_shard(&self, poll: &str, opened: u64) -> BTreeMap<String, Vec<u64>> {
        self.runs(poll, opened).map(|(id, c)| (id.to_owned(), c.counts.clone())).collect()
    }

    /// Every shard's votes of one run of a democracy vote, summed by word (lost shards' last
    /// counts included), and its voters. The words come in the order of the shards' ids, each
    /// shard's in its own order, so that a tie is decided the same way whatever the order the
    /// reports arrived in.
    pub fn word_counts(&self, poll: &str, opened: u64) -> (Vec<(String, u64)>, u64) {
        let mut runs: Vec<(&str, &ShardPollCount)> = self.runs(poll, opened).collect();
        runs.sort_unstable_by_key(|(id, _)| *id);
        let mut words = Vec::new();
        let mut voters = 0u64;
        for (_, c) in runs {
            add_words(&mut words, c.words.iter().zip(&c.counts));
            voters = voters.saturating_add(c.voters);
        }
        (words, voters)
    }

    /// Each shard's votes of one run of a democracy vote for each of `words`, by shard id.
    pub fn by_shard_words(&self, poll: &str, opened: u64, words: &[String]) -> BTreeMap<String, Vec<u64>> {
        self.runs(poll, opened)
            .map(|(id, c)| {
                let of = |w: &String| {
                    c.words.iter().position(|x| x == w).map_or(0, |i| c.counts.get(i).copied().unwrap_or(0))
                };
                (id.to_owned(), words.iter().map(of).collect())
            })
            .collect()
    }

    /// The democracy votes the shards in `report` ask the authority to open: the names of the
    /// rules (`rule:NAME`) its counts hold at [`ASKING`].
    pub fn asking(report: &ShardReport) -> impl Iterator<Item = &str> {
        report.polls.iter().filter(|c| c.opened == ASKING).filter_map(|c| c.poll.strip_prefix("rule:"))
    }

    fn runs<'a>(&'a self, poll: &'a str, opened: u64) -> impl Iterator<Item = (&'a str, &'a ShardPollCount)> {
        self.shards.values().filter_map(move |s| {
            let c = s.report.polls.iter().find(|c| c.poll == poll && c.opened == opened)?;
            Some((s.report.shard.as_str(), c))
        })
    }

    /// Live shards whose last count of this run is not final yet: the authority waits for
    /// them (up to [`CLOSING_GRACE`]) before it decides. A live shard that has not reported
    /// the run at all (it joined late, or has not applied the `open_poll` yet) is waited for
    /// too.
    pub fn still_counting(&self, poll: &str, opened: u64, now: Instant) -> Vec<&str> {
        let mut ids: Vec<&str> = self
            .live(now)
            .filter(|s| !s.report.polls.iter().any(|c| c.poll == poll && c.opened == opened && c.closed))
            .map(|s| s.report.shard.as_str())
            .collect();
        ids.sort_unstable();
        ids
    }
}

/// Adds `(word, votes)` to `words`, a word already there by its count, a new one at the end.
pub fn add_words<'a>(words: &mut Vec<(String, u64)>, more: impl IntoIterator<Item = (&'a String, &'a u64)>) {
    for (word, n) in more {
        match words.iter_mut().find(|(w, _)| w == word) {
            Some((_, sum)) => *sum = sum.saturating_add(*n),
            None => words.push((word.clone(), *n)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report(shard: &str, members: u64, lively: u64, polls: Vec<ShardPollCount>) -> ShardReport {
        ShardReport { shard: shard.into(), started_ms: 1, members, lively, stream_delay_ms: 0, polls }
    }

    #[test]
    fn the_main_stage_waits_for_the_shard_whose_stream_is_latest() {
        let now = Instant::now();
        let mut book = ShardBook::default();
        assert_eq!(book.grace(Duration::ZERO, now), CLOSING_GRACE, "no shards");
        book.take(ShardReport { stream_delay_ms: 9_000, ..report("a", 1, 0, vec![]) }, now);
        book.take(ShardReport { stream_delay_ms: 4_000, ..report("b", 1, 0, vec![]) }, now);
        assert_eq!(book.grace(Duration::ZERO, now), CLOSING_GRACE + Duration::from_secs(9));
        assert_eq!(book.grace(Duration::from_secs(5), now), CLOSING_GRACE + Duration::from_secs(4), "own delay");
        assert_eq!(book.grace(Duration::from_secs(20), now), CLOSING_GRACE, "the main stage's is later");
        let later = now + SHARD_TIMEOUT + Duration::from_millis(1);
        assert_eq!(book.grace(Duration::ZERO, later), CLOSING_GRACE, "a lost shard is not waited for");
        let subject = "parvis.v.shard.report.a";
        let hostile = ShardReport { stream_delay_ms: u64::MAX, ..report("a", 1, 0, vec![]) };
        let e = ShardReport::from_message(subject, &hostile.to_json()).unwrap_err().to_string();
        assert!(e.contains("stream delay"), "{e}");
    }

    fn count(opened: u64, counts: &[u64], closed: bool) -> ShardPollCount {
        ShardPollCount {
            poll: "finale".into(),
            opened,
            words: vec![],
            counts: counts.to_vec(),
            voters: counts.iter().sum(),
            closed,
        }
    }

    #[test]
    fn reports_are_summed_per_run_and_lively_counts_only_what_is_new() {
        let t0 = Instant::now();
        let mut book = ShardBook::default();
        assert_eq!(book.take(report("a", 10, 500, vec![count(7, &[1, 2], false)]), t0), Some(0), "first report");
        assert_eq!(book.take(report("a", 11, 530, vec![count(7, &[2, 2], false)]), t0), Some(30));
        book.take(report("b", 5, 0, vec![count(7, &[0, 3], true), count(3, &[9, 9], true)]), t0);
        assert_eq!(book.counts("finale", 7, 2), (vec![2, 5], 7), "the latest of each shard, summed");
        assert_eq!(book.counts("finale", 3, 2), (vec![9, 9], 18), "another run is apart");
        assert_eq!(book.members(t0), 16);
        assert_eq!(book.still_counting("finale", 7, t0), ["a"], "b's count is final");
        // A restarted shard's counter starts again: no burst.
        let restarted = ShardReport { started_ms: 2, ..report("a", 1, 3, vec![]) };
        assert_eq!(book.take(restarted, t0), Some(0));
        assert_eq!(book.counts("finale", 7, 2), (vec![2, 5], 7), "a's votes of the run it no longer reports stay");
        // A lost shard's members leave the quorum; its votes stay; it is not waited for.
        let later = t0 + SHARD_TIMEOUT + Duration::from_millis(1);
        book.take(report("b", 5, 0, vec![count(7, &[0, 3], true)]), later);
        assert_eq!(book.members(later), 5);
        assert_eq!(book.live_shards(later), ["b"]);
        assert!(book.still_counting("finale", 7, later).is_empty());
        assert_eq!(book.counts("finale", 7, 2), (vec![2, 5], 7));
        book.forget_old(later + FORGET_AFTER);
        assert_eq!(book.counts("finale", 7, 2), (vec![0, 0], 0));
    }

    #[test]
    fn the_book_holds_a_bounded_number_of_shards() {
        let now = Instant::now();
        let mut book = ShardBook::default();
        for n in 0..MAX_SHARDS {
            assert_eq!(book.take(report(&format!("s{n}"), 1, 0, vec![]), now), Some(0));
        }
        assert_eq!(book.take(report("late", 1, 0, vec![]), now), None, "one too many");
        assert_eq!(book.take(report("s0", 2, 0, vec![]), now), Some(0), "a known shard still reports");
        assert_eq!(book.members(now), MAX_SHARDS as u64 + 1);
    }

    #[test]
    fn a_shard_adds_the_others_counts_to_its_own() {
        let totals = ShardTotals {
            poll: "finale".into(),
            opened: 7,
            words: vec![],
            counts: vec![10, 20],
            voters: 30,
            closes_in_ms: 0,
            shards: [("a".to_owned(), vec![1, 2])].into(),
            winner: None,
            closed: false,
        };
        assert_eq!(totals.others("a"), [9, 18]);
        assert_eq!(totals.others("z"), [10, 20], "a shard the totals did not hear from yet");
    }

    fn words(opened: u64, words: &[(&str, u64)], closed: bool) -> ShardPollCount {
        ShardPollCount {
            poll: "rule:sky".into(),
            opened,
            words: words.iter().map(|(w, _)| (*w).to_owned()).collect(),
            counts: words.iter().map(|(_, n)| *n).collect(),
            voters: words.iter().map(|(_, n)| n).sum(),
            closed,
        }
    }

    #[test]
    fn democracy_votes_are_summed_by_word_in_the_order_of_the_shards_ids() {
        let now = Instant::now();
        let mut book = ShardBook::default();
        // Shard b reports first; its words still come after a's.
        book.take(report("b", 3, 0, vec![words(9, &[("dawn", 2), ("rain", 1)], false)]), now);
        book.take(report("a", 3, 0, vec![words(9, &[("stars", 1), ("dawn", 1)], true)]), now);
        let (summed, voters) = book.word_counts("rule:sky", 9);
        let summed: Vec<(&str, u64)> = summed.iter().map(|(w, n)| (w.as_str(), *n)).collect();
        assert_eq!(summed, [("stars", 1), ("dawn", 3), ("rain", 1)]);
        assert_eq!(voters, 5);
        let all = ["dawn".to_owned(), "stars".to_owned(), "snow".to_owned()];
        assert_eq!(book.by_shard_words("rule:sky", 9, &all)["b"], [2, 0, 0]);
        assert_eq!(book.still_counting("rule:sky", 9, now), ["b"]);
        // A shard whose audience voted before the main stage opened the vote asks for it; the
        // book does not keep the question once a newer report leaves it out.
        let asking = report("c", 1, 0, vec![words(ASKING, &[("snow", 1)], false)]);
        assert_eq!(ShardBook::asking(&asking).collect::<Vec<_>>(), ["sky"]);
        book.take(asking, now);
        book.take(report("c", 1, 0, vec![words(9, &[("snow", 1)], false)]), now);
        assert_eq!(book.word_counts("rule:sky", ASKING).0, []);
        assert_eq!(book.word_counts("rule:sky", 9).0.len(), 4);
    }

    #[test]
    fn hostile_reports_are_refused_by_name() {
        let subject = "parvis.v.shard.report.a";
        let ok = report("a", 2, 0, vec![count(1, &[1, 1], false)]);
        assert_eq!(ShardReport::from_message(subject, &ok.to_json()).unwrap(), ok);
        let forged = report("b", 2, 0, vec![]);
        let e = ShardReport::from_message(subject, &forged.to_json()).unwrap_err().to_string();
        assert!(e.contains("another shard's subject"), "{e}");
        let huge = report("a", u64::MAX, 0, vec![]);
        assert!(ShardReport::from_message(subject, &huge.to_json()).unwrap_err().to_string().contains("members"));
        let options = report("a", 2, 0, vec![count(1, &[1; 9], false)]);
        assert!(ShardReport::from_message(subject, &options.to_json()).is_err());
        let e = ShardReport::from_message(subject, b"{\"shard\":\"a\"").unwrap_err().to_string();
        assert!(e.starts_with(subject) && e.contains("not a shard's report"), "{e}");
        assert!(ShardReport::from_message(subject, &vec![b' '; MAX_SHARD_MESSAGE_BYTES + 1]).is_err());
        assert!(ShardTotals::from_message("t", b"[]").unwrap_err().to_string().contains("not a poll's totals"));
        // Democracy votes: as many words as counts, each a short printable word.
        let ok = report("a", 2, 0, vec![words(3, &[("dawn", 1); MAX_FREE_OPTIONS], false)]);
        assert!(ShardReport::from_message(subject, &ok.to_json()).is_ok());
        let mut odd = words(3, &[("dawn", 1)], false);
        odd.counts.push(1);
        let e = ShardReport::from_message(subject, &report("a", 2, 0, vec![odd]).to_json()).unwrap_err().to_string();
        assert!(e.contains("1 words for 2 counts"), "{e}");
        let totals = |winner: &str| ShardTotals {
            poll: "rule:sky".into(),
            opened: 3,
            words: vec!["dawn".into()],
            counts: vec![2],
            voters: 2,
            closes_in_ms: 0,
            shards: BTreeMap::new(),
            winner: Some(winner.into()),
            closed: true,
        };
        assert!(ShardTotals::from_message("t", &totals("dawn").to_json()).is_ok());
        let e = ShardTotals::from_message("t", &totals("a notice").to_json()).unwrap_err().to_string();
        assert!(e.contains("is not one of its words"), "{e}");
        assert!(valid_word("ciel") && valid_word(&"é".repeat(32)) && !valid_word(&"é".repeat(33)));
        for word in ["", "a\nb", &"x".repeat(65)] {
            let bad = report("a", 2, 0, vec![words(3, &[(word, 1)], false)]);
            let e = ShardReport::from_message(subject, &bad.to_json()).unwrap_err().to_string();
            assert!(e.contains("the word"), "{word:?}: {e}");
        }
    }
}
