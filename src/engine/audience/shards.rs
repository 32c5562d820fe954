//! Votes and crowd energy counted across overflow shards, where the scene says
//! `across_shards: Sum` (docs/scale.md, "Overflow shards"). The counting itself is the
//! model's ([`crate::model::shard`]); here the venue takes part in it:
//!
//! - on the **authority** ([`ShardCounting`]): shards' reports are kept in a book; a summed
//!   poll or democracy vote shows and decides on every instance's votes (waiting, when its
//!   time is up, up to [`CLOSING_GRACE`](crate::model::shard::CLOSING_GRACE) for each live
//!   shard's last count), and its totals go to the shards; a summed democracy vote is opened
//!   here, at the first `!word` of this audience or of a shard's; a summed crowd-energy rule
//!   measures the authority's crowd plus every shard's;
//! - on a **shard** ([`ShardReporting`]): its members, chat lines and counts of summed polls
//!   and democracy votes go to the authority; it stops taking votes when the time is up and
//!   leaves the decision to the authority, whose totals it shows and whose outcome arrives
//!   through the log like any of the main stage's commands. A summed democracy vote its
//!   audience starts is counted at once and asked of the main stage, whose run it joins.
//!
//! The NATS side is [`crate::edges::nats::shards`].

use std::time::{Duration, Instant};

use bevy::prelude::*;
use tokio::sync::mpsc;

use crate::engine::audience::hub::AudienceLink;
use crate::engine::audience::state::{Audience, DemocracyVote, OpenPoll, Summed, poll_view, tally_view};
use crate::engine::command::CurrentScene;
use crate::engine::control::Throttle;
use crate::engine::rest::Rest;
use crate::model::audience::polls::{EnergyMeter, MAX_FREE_OPTIONS, Outcome};
use crate::model::audience::protocol::ServerMessage;
use crate::model::command::CommandOrigin;
use crate::model::scene::format::{AcrossShards, AudienceRuleDef, RuleMode, SceneFile, TriggerDef};
use crate::model::shard::{
    ASKING, HEARTBEAT, MAX_POLLS, REPORT_INTERVAL, ShardBook, ShardPollCount, ShardReport, ShardTotals,
};

/// How long a shard waits, after a summed poll's time is up, for the main stage to close it
/// before it closes it without a result (the authority is gone).
pub const MAIN_STAGE_SILENT: Duration = Duration::from_secs(30);
/// How long a shard waits, after the main stage closed a summed poll, for its result before it
/// shows the close without one.
const RESULT_WAIT: Duration = Duration::from_secs(2);
/// How long the authority sends a decided poll's totals again.
const RESEND_DECIDED: Duration = Duration::from_secs(3);

/// The authority's link to its overflow shards: their reports in, the totals of summed polls
/// out.
#[derive(Resource)]
pub struct ShardCounting {
    reports: mpsc::Receiver<ShardReport>,
    totals: mpsc::Sender<ShardTotals>,
    /// Every shard's latest report.
    pub book: ShardBook,
    /// The shards' chat lines and reactions, counted as they are reported.
    energy: Option<EnergyMeter>,
    last_totals: Option<Instant>,
    /// The last decided polls' and votes' totals and when: sent again for a few seconds, since
    /// core NATS does not say when one is lost and a shard that misses them has no winner to
    /// show.
    decided: Vec<(ShardTotals, Instant)>,
    refused: Throttle,
}

impl ShardCounting {
    /// A link whose NATS side reads shards' reports into `reports` and publishes `totals`.
    pub fn new(reports: mpsc::Receiver<ShardReport>, totals: mpsc::Sender<ShardTotals>) -> Self {
        Self {
            reports,
            totals,
            book: ShardBook::default(),
            energy: None,
            last_totals: None,
            decided: Vec::new(),
            refused: Throttle::default(),
        }
    }

    /// The shards' crowd energy over `window`: their audiences' messages per second.
    pub(super) fn energy(&mut self, now: Instant, window: Duration) -> f32 {
        self.energy.as_mut().map_or(0.0, |m| m.rate(now, window))
    }

    fn send(&mut self, totals: ShardTotals) {
        if totals.closed {
            // One decided run per poll or vote is sent again; a handful at most.
            self.decided.retain(|(t, _)| t.poll != totals.poll);
            self.decided.push((totals.clone(), Instant::now()));
        }
        // Totals are replaced by the next ones; decided ones are sent again (`send_totals`).
        let _ = self.totals.try_send(totals);
    }

    /// Sends a summed democracy vote's totals (`words`: every instance's), decided with
    /// `outcome` or still running.
    pub(super) fn send_vote_totals(
        &mut self,
        id: &str,
        vote: &DemocracyVote,
        words: &[(String, u64)],
        outcome: Option<&Outcome>,
        now: Instant,
    ) {
        // A page shows a handful of words; the decision has counted them all.
        let mut shown: Vec<&(String, u64)> = words.iter().take(MAX_FREE_OPTIONS).collect();
        if let Some(Outcome::Winner(i)) = outcome
            && let Some(winner) = words.get(*i).filter(|_| *i >= MAX_FREE_OPTIONS)
        {
            shown.pop();
            shown.push(winner);
        }
        let names: Vec<String> = shown.iter().map(|(w, _)| w.clone()).collect();
        let totals = ShardTotals {
            poll: id.to_owned(),
            opened: vote.opened,
            counts: shown.iter().map(|(_, n)| *n).collect(),
            shards: self.book.by_shard_words(id, vote.opened, &names),
            words: names,
            voters: vote.voters(),
            closes_in_ms: vote.closes_at.saturating_duration_since(now).as_millis() as u64,
            winner: match outcome {
                Some(Outcome::Winner(i)) => words.get(*i).map(|(w, _)| w.clone()),
                _ => None,
            },
            closed: outcome.is_some(),
        };
        self.send(totals);
    }
}

/// The words and voters of a summed democracy vote's run on every shard, into `vote`.
pub(super) fn count_vote_elsewhere(book: &ShardBook, id: &str, vote: &mut DemocracyVote) -> bool {
    let (words, voters) = book.word_counts(id, vote.opened);
    let changed = words != vote.elsewhere || voters != vote.elsewhere_voters;
    vote.elsewhere = words;
    vote.elsewhere_voters = voters;
    changed
}

/// Whether `rule` is a democracy vote summed across shards, and its window.
fn summed_vote(rule: &AudienceRuleDef) -> Option<Duration> {
    match rule.mode {
        RuleMode::Democracy { window, across_shards: AcrossShards::Sum, .. } => {
            Some(Duration::from_secs_f32(window.max(1.0)))
        }
        _ => None,
    }
}

/// An overflow shard's link to its authority: its reports out, the main stage's totals in.
#[derive(Resource)]
pub struct ShardReporting {
    /// The shard's id (`--shard`).
    pub id: String,
    reports: mpsc::Sender<ShardReport>,
    totals: mpsc::Receiver<ShardTotals>,
    started_ms: u64,
    last_report: Option<Instant>,
    /// A summed poll the main stage closed here before its result arrived, and when.
    awaiting_result: Option<(OpenPoll, Instant)>,
}

impl ShardReporting {
    /// Shard `id`'s link, whose NATS side publishes `reports` and reads the main stage's
    /// `totals`.
    pub fn new(id: String, reports: mpsc::Sender<ShardReport>, totals: mpsc::Receiver<ShardTotals>) -> Self {
        Self { id, reports, totals, started_ms: wall_ms(), last_report: None, awaiting_result: None }
    }
}

/// Milliseconds since the Unix epoch, as the log stamps its commands.
pub(super) fn wall_ms() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64)
}

/// Whether a command of the main stage's audience is one a shard applies: the outcome of a
/// poll, democracy vote or crowd-energy rule `scene` counts across shards (`poll:NAME`,
/// `vote:RULE`, `energy:RULE`, as the audience fires them). The main stage's other audience
/// effects stay on the main stage.
pub fn plays_on_shards(scene: &SceneFile, origin: &CommandOrigin) -> bool {
    let CommandOrigin::Audience(who) = origin else { return false };
    if let Some(poll) = who.strip_prefix("poll:") {
        return scene.polls.iter().any(|p| p.name == poll && p.across_shards == AcrossShards::Sum);
    }
    if let Some(rule) = who.strip_prefix("vote:") {
        return scene.rules.iter().any(|r| r.name == rule && summed_vote(r).is_some());
    }
    if let Some(rule) = who.strip_prefix("energy:") {
        return scene.rules.iter().any(|r| {
            r.name == rule && matches!(r.trigger, TriggerDef::CrowdEnergy { across_shards: AcrossShards::Sum, .. })
        });
    }
    false
}

/// The authority takes its shards' reports: their energy, their counts of the summed poll and
/// democracy votes open now, and the democracy votes their audiences ask for.
pub(super) fn receive_shard_reports(
    mut counting: ResMut<ShardCounting>,
    mut audience: ResMut<Audience>,
    scene: Option<Res<CurrentScene>>,
) {
    let now = Instant::now();
    let counting = &mut *counting;
    let mut heard = false;
    while let Ok(report) = counting.reports.try_recv() {
        let shard = report.shard.clone();
        let asked: Vec<String> = ShardBook::asking(&report).map(str::to_owned).collect();
        let Some(new) = counting.book.take(report, now) else {
            counting.refused.say(|| {
                format!(
                    "a report from shard {shard:?} refused: {} shards are counted already (forgotten 10 minutes after their last report)",
                    crate::model::shard::MAX_SHARDS
                )
            });
            continue;
        };
        // A shard's audience voted first: the vote opens here, for every instance.
        for rule in asked {
            let rules = scene.as_deref().map_or(&[][..], |s| &s.0.rules[..]);
            let Some(window) = rules.iter().find(|r| r.name == rule).and_then(summed_vote) else { continue };
            if !audience.democracy.contains_key(&rule) {
                let run = audience.next_run();
                audience.democracy.insert(rule, DemocracyVote::new(now, window, Summed::Decides, run));
                audience.tally_dirty = true;
            }
        }
        let meter = counting.energy.get_or_insert_with(|| EnergyMeter::new(now));
        meter.record(now, u32::try_from(new).unwrap_or(u32::MAX));
        if new > 0 {
            audience.last_lively = Some(now);
        }
        heard = true;
    }
    if !heard {
        return;
    }
    counting.book.forget_old(now);
    let audience = &mut *audience;
    if let Some(poll) = audience.poll.as_mut().filter(|p| p.summed == Summed::Decides) {
        let (counts, voters) = counting.book.counts(&poll.def.name, poll.opened, poll.def.options.len());
        if counts != poll.elsewhere || voters != poll.elsewhere_voters {
            poll.elsewhere = counts;
            poll.elsewhere_voters = voters;
            audience.tally_dirty = true;
        }
    }
    for (rule, vote) in audience.democracy.iter_mut().filter(|(_, v)| v.summed == Summed::Decides) {
        if count_vote_elsewhere(&counting.book, &format!("rule:{rule}"), vote) {
            audience.tally_dirty = true;
        }
    }
}

/// The authority's totals of the summed poll open now, to every shard, every
/// [`REPORT_INTERVAL`].
pub(super) fn send_totals(mut counting: ResMut<ShardCounting>, audience: Res<Audience>, mut rest: ResMut<Rest>) {
    let now = Instant::now();
    let counting = &mut *counting;
    let votes = audience.democracy.iter().filter(|(_, v)| v.summed == Summed::Decides && !v.closing);
    let running = audience.poll.is_some() || votes.clone().next().is_some();
    if let Some(last) = counting.last_totals.filter(|t| now.duration_since(*t) < REPORT_INTERVAL) {
        if running || !counting.decided.is_empty() {
            rest.wake_at(last + REPORT_INTERVAL);
        }
        return;
    }
    counting.last_totals = Some(now);
    if let Some(poll) = audience.poll.as_ref().filter(|p| p.summed == Summed::Decides) {
        let totals = totals_of(&counting.book, poll, None);
        let _ = counting.totals.try_send(totals);
    }
    for (rule, vote) in votes {
        counting.send_vote_totals(&format!("rule:{rule}"), vote, &vote.words(), None, now);
    }
    // Decided runs are sent again for a few seconds after the decision, then forgotten.
    counting.decided.retain(|(_, at)| now.duration_since(*at) < RESEND_DECIDED);
    for (totals, _) in &counting.decided {
        let _ = counting.totals.try_send(totals.clone());
    }
    if running || !counting.decided.is_empty() {
        rest.wake_at(now + REPORT_INTERVAL);
    }
}

fn totals_of(book: &ShardBook, poll: &OpenPoll, outcome: Option<&Outcome>) -> ShardTotals {
    ShardTotals {
        poll: poll.def.name.clone(),
        opened: poll.opened,
        words: Vec::new(),
        counts: poll.counts(),
        voters: poll.voters(),
        closes_in_ms: 0,
        // As many counts as the poll has options, whatever a shard reported.
        shards: book
            .by_shard(&poll.def.name, poll.opened)
            .into_iter()
            .map(|(id, mut c)| {
                c.resize(poll.def.options.len(), 0);
                (id, c)
            })
            .collect(),
        winner: match outcome {
            Some(Outcome::Winner(i)) => poll.def.options.get(*i).map(|o| o.id.clone()),
            _ => None,
        },
        closed: outcome.is_some(),
    }
}

/// Decides a poll as it closes: on the authority of a summed poll (`counting`), on its own
/// votes and every shard's over every instance's members, and sends the final totals to the
/// shards (a shard that misses them shows the close without a winner; the outcome's commands
/// still reach it through the log); elsewhere, on this instance's votes.
pub(super) fn decide(counting: Option<&mut ShardCounting>, poll: &mut OpenPoll, members: usize) -> Outcome {
    let now = Instant::now();
    let mut audience = members as u64;
    if let Some(counting) = counting {
        let (counts, voters) = counting.book.counts(&poll.def.name, poll.opened, poll.def.options.len());
        poll.elsewhere = counts;
        poll.elsewhere_voters = voters;
        audience += counting.book.members(now);
        let outcome = poll.outcome(audience);
        let totals = totals_of(&counting.book, poll, Some(&outcome));
        counting.send(totals);
        return outcome;
    }
    poll.outcome(audience)
}

/// How long the authority waits for its shards' last counts once its own time is up (see
/// [`ShardBook::grace`]).
pub(super) fn grace(counting: Option<&ShardCounting>, own_delay: Duration, now: Instant) -> Duration {
    counting.map_or(crate::model::shard::CLOSING_GRACE, |c| c.book.grace(own_delay, now))
}

/// Which live shards the authority still waits for before it closes `poll`, if any.
pub(super) fn still_counting(counting: Option<&ShardCounting>, poll: &OpenPoll, now: Instant) -> Vec<String> {
    counting.map_or_else(Vec::new, |c| {
        c.book.still_counting(&poll.def.name, poll.opened, now).into_iter().map(str::to_owned).collect()
    })
}

/// A shard reports its members, its crowd's chat lines and its counts of summed polls: every
/// [`REPORT_INTERVAL`] while one runs, else every [`HEARTBEAT`].
pub(super) fn send_shard_report(
    mut reporting: ResMut<ShardReporting>,
    audience: Res<Audience>,
    mut rest: ResMut<Rest>,
) {
    let now = Instant::now();
    let reporting = &mut *reporting;
    let summed = audience.poll.as_ref().filter(|p| p.summed == Summed::Follows);
    let closed = reporting.awaiting_result.as_ref().map(|(p, _)| p);
    // A vote the main stage never opened is not asked for again once its time is up.
    let votes =
        audience.democracy.iter().filter(|(_, v)| v.summed == Summed::Follows && !(v.opened == ASKING && v.closing));
    let counting = summed.is_some() || closed.is_some() || votes.clone().next().is_some();
    let every = if counting { REPORT_INTERVAL } else { HEARTBEAT };
    if let Some(last) = reporting.last_report.filter(|t| now.duration_since(*t) < every) {
        rest.wake_at(last + every);
        return;
    }
    rest.wake_at(now + every);
    reporting.last_report = Some(now);
    let count = |p: &OpenPoll, closed: bool| ShardPollCount {
        poll: p.def.name.clone(),
        opened: p.opened,
        words: Vec::new(),
        counts: p.tally.counts().to_vec(),
        voters: p.tally.voters() as u64,
        closed,
    };
    // A vote at ASKING asks the main stage to open it; its votes so far count in the run.
    let vote = |(rule, v): (&String, &DemocracyVote)| ShardPollCount {
        poll: format!("rule:{rule}"),
        opened: v.opened,
        words: v.tally.options().to_vec(),
        counts: v.tally.counts().to_vec(),
        voters: v.tally.voters() as u64,
        closed: v.closing,
    };
    let polls = summed
        .map(|p| count(p, p.closing))
        .into_iter()
        .chain(closed.map(|p| count(p, true)))
        .chain(votes.map(vote))
        .take(MAX_POLLS)
        .collect();
    let report = ShardReport {
        shard: reporting.id.clone(),
        started_ms: reporting.started_ms,
        members: audience.members.len() as u64,
        lively: audience.lively_total,
        stream_delay_ms: audience.stream_delay.as_millis() as u64,
        polls,
    };
    let _ = reporting.reports.try_send(report);
}

/// A shard takes the main stage's totals: the other instances' votes, shown with its own, and
/// the result once decided.
pub(super) fn receive_totals(
    link: Res<AudienceLink>,
    mut reporting: ResMut<ShardReporting>,
    mut audience: ResMut<Audience>,
    scene: Option<Res<CurrentScene>>,
) {
    let now = Instant::now();
    let reporting = &mut *reporting;
    let audience = &mut *audience;
    while let Ok(totals) = reporting.totals.try_recv() {
        if let Some(rule) = totals.poll.strip_prefix("rule:").map(str::to_owned) {
            let rules = scene.as_deref().map_or(&[][..], |s| &s.0.rules[..]);
            if let Some(window) = rules.iter().find(|r| r.name == rule).and_then(summed_vote) {
                follow_vote(audience, &reporting.id, &rule, window, totals, now);
            }
            continue;
        }
        let same_run = |p: &OpenPoll| p.def.name == totals.poll && p.opened == totals.opened;
        if let Some(poll) = audience.poll.as_mut().filter(|p| p.summed == Summed::Follows && same_run(p)) {
            if poll.result.is_some() {
                continue;
            }
            let others = totals.others(&reporting.id);
            if others != poll.elsewhere {
                poll.elsewhere = others;
                audience.tally_dirty = true;
            }
            if totals.closed {
                // Decided: votes here no longer count; the close shows when the log says so.
                poll.closing = true;
                poll.result = Some(totals);
            }
        } else if totals.closed
            && let Some((mut poll, _)) = reporting.awaiting_result.take_if(|(p, _)| same_run(p))
        {
            poll.elsewhere = totals.others(&reporting.id);
            poll.result = Some(totals);
            announce_close(&link, audience, &poll, now);
        }
    }
    if let Some((poll, _)) = reporting.awaiting_result.take_if(|(_, at)| now.duration_since(*at) >= RESULT_WAIT) {
        warn!(
            "poll {:?}: the main stage's result did not arrive within {} s; closed here without it",
            poll.def.name,
            RESULT_WAIT.as_secs()
        );
        announce_close(&link, audience, &poll, now);
    }
}

/// A shard follows the main stage's totals of a summed democracy vote: it joins the run (its
/// own vote at [`ASKING`], or a new one), takes its time left (at most the rule's `window`),
/// shows the other instances' votes with its own, and keeps the result once decided. A run
/// this shard has closed is not joined again by its late totals.
fn follow_vote(audience: &mut Audience, me: &str, rule: &str, window: Duration, totals: ShardTotals, now: Instant) {
    if audience.finished_runs.get(rule).is_some_and(|run| totals.opened <= *run) {
        return;
    }
    let left = Duration::from_millis(totals.closes_in_ms).min(window);
    // Running totals with no time left come from a main stage waiting for its stream's
    // viewers or its shards' last counts: too late to join.
    let open = !totals.closed && !left.is_zero();
    let joined = || DemocracyVote::new(now, left, Summed::Follows, totals.opened);
    match audience.democracy.get(rule).map(|v| v.opened) {
        Some(opened) if opened == totals.opened => {}
        // The main stage opened the vote this shard asked for: the votes counted so far are in.
        Some(ASKING) if open => {
            if let Some(v) = audience.democracy.get_mut(rule) {
                v.opened = totals.opened;
                v.closes_at = now + left;
                v.closing = false;
            }
            audience.tally_dirty = true;
        }
        // A newer run than the one this shard holds (the main stage restarted, or this shard
        // missed the last one's result): the newer one counts.
        Some(opened) if open && totals.opened > opened => {
            audience.democracy.insert(rule.to_owned(), joined());
            audience.tally_dirty = true;
        }
        // Opened on another instance: this audience votes in it too.
        None if open && audience.across == Summed::Follows => {
            audience.democracy.insert(rule.to_owned(), joined());
            audience.tally_dirty = true;
        }
        _ => return,
    }
    let Some(vote) = audience.democracy.get_mut(rule) else { return };
    if vote.result.is_some() {
        return;
    }
    let others: Vec<(String, u64)> = totals.words.iter().cloned().zip(totals.others(me)).collect();
    if others != vote.elsewhere {
        vote.elsewhere = others;
        audience.tally_dirty = true;
    }
    if totals.closed {
        vote.closing = true;
        vote.result = Some(totals);
    }
}

/// Tells a shard's audience how a summed democracy vote ended everywhere (or that the main
/// stage's result did not come).
pub(super) fn announce_vote_close(link: &AudienceLink, id: &str, question: &str, vote: &DemocracyVote) {
    let (words, winner) = match &vote.result {
        Some(r) => (r.words.iter().cloned().zip(r.counts.iter().copied()).collect(), r.winner.clone()),
        None => (vote.words(), None),
    };
    let winner = winner.as_ref().and_then(|w| words.iter().position(|(x, _)| x == w));
    let outcome = match winner {
        Some(i) => Outcome::Winner(i),
        None => Outcome::NoQuorum { votes: vote.voters(), needed: 1 },
    };
    let view = tally_view(id, question, &words, "close", Duration::ZERO, &outcome);
    let _ = link.hub.broadcast.send(view.to_json().into());
    let text = match (winner, &vote.result) {
        (Some(i), _) => format!("the vote on {question} closed on every stage: {} wins", words[i].0),
        (None, Some(_)) => format!("the vote on {question} did not reach its quorum"),
        (None, None) => format!("the vote on {question} closed; the main stage's result did not reach this stage"),
    };
    let _ = link.hub.broadcast.send(ServerMessage::Notice { text }.to_json().into());
}

/// Marks the venue as an authority counting its shards' votes, or as a shard, once its link is
/// made.
pub(super) fn take_part_in_counting(
    mut audience: ResMut<Audience>,
    counting: Option<Res<ShardCounting>>,
    reporting: Option<Res<ShardReporting>>,
) {
    audience.across = match (counting, reporting) {
        (Some(_), _) => Summed::Decides,
        (_, Some(_)) => Summed::Follows,
        _ => Summed::No,
    };
}

/// A shard closes a summed poll the main stage closed: at once with its result, or when the
/// result arrives ([`receive_totals`]).
pub(super) fn close_on_shard(
    link: &AudienceLink,
    audience: &mut Audience,
    reporting: Option<&mut ShardReporting>,
    poll: OpenPoll,
    now: Instant,
) {
    match reporting {
        Some(reporting) if poll.result.is_none() => reporting.awaiting_result = Some((poll, now)),
        _ => announce_close(link, audience, &poll, now),
    }
}

/// Tells a shard's audience how a summed poll ended everywhere.
fn announce_close(link: &AudienceLink, audience: &mut Audience, poll: &OpenPoll, now: Instant) {
    let winner = poll.result.as_ref().and_then(|r| r.winner.as_ref());
    let outcome = match winner.and_then(|w| poll.def.options.iter().position(|o| &o.id == w)) {
        Some(i) => Outcome::Winner(i),
        None => Outcome::NoQuorum { votes: poll.voters(), needed: u64::from(poll.def.min_votes) },
    };
    let _ = link.hub.broadcast.send(poll_view(poll, "close", now, &outcome).to_json().into());
    audience.state_dirty = true;
    let text = match (&outcome, &poll.result) {
        (Outcome::Winner(i), _) => {
            format!("the poll {:?} closed on every stage: {} wins", poll.def.question, poll.def.options[*i].label)
        }
        (_, Some(_)) => format!("the poll {:?} did not reach its quorum", poll.def.question),
        (_, None) => {
            format!("the poll {:?} closed; the main stage's result did not reach this stage", poll.def.question)
        }
    };
    let _ = link.hub.broadcast.send(ServerMessage::Notice { text }.to_json().into());
}
