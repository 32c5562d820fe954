//! Votes and crowd energy counted across overflow shards, where the scene says
//! `across_shards: Sum` (docs/scale.md, "Overflow shards"). The counting itself is the
//! model's ([`crate::model::shard`]); here the venue takes part in it:
//!
//! - on the **authority** ([`ShardCounting`]): shards' reports are kept in a book; a summed
//!   poll shows and decides on every instance's votes (waiting, when its time is up, up to
//!   [`CLOSING_GRACE`](crate::model::shard::CLOSING_GRACE) for each live shard's last count), and its totals go to the shards; a
//!   summed crowd-energy rule measures the authority's crowd plus every shard's;
//! - on a **shard** ([`ShardReporting`]): its members, chat lines and counts of summed polls
//!   go to the authority; it stops taking votes when the poll's time is up and leaves the
//!   decision to the authority, whose totals it shows and whose outcome arrives through the
//!   log like any of the main stage's commands.
//!
//! The NATS side is [`crate::edges::nats::shards`].

use std::time::{Duration, Instant};

use bevy::prelude::*;
use tokio::sync::mpsc;

use crate::engine::audience::hub::AudienceLink;
use crate::engine::audience::state::{Audience, OpenPoll, Summed, poll_view};
use crate::engine::control::Throttle;
use crate::engine::rest::Rest;
use crate::model::audience::polls::{EnergyMeter, Outcome};
use crate::model::audience::protocol::ServerMessage;
use crate::model::command::CommandOrigin;
use crate::model::scene::format::{AcrossShards, SceneFile, TriggerDef};
use crate::model::shard::{HEARTBEAT, REPORT_INTERVAL, ShardBook, ShardPollCount, ShardReport, ShardTotals};

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
    /// The last decided poll's totals and when: sent again for a few seconds, since core NATS
    /// does not say when one is lost and a shard that misses them has no winner to show.
    decided: Option<(ShardTotals, Instant)>,
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
            decided: None,
            refused: Throttle::default(),
        }
    }

    /// The shards' crowd energy over `window`: their audiences' messages per second.
    pub(super) fn energy(&mut self, now: Instant, window: Duration) -> f32 {
        self.energy.as_mut().map_or(0.0, |m| m.rate(now, window))
    }

    fn send(&mut self, totals: ShardTotals) {
        if totals.closed {
            self.decided = Some((totals.clone(), Instant::now()));
        }
        // Totals are replaced by the next ones; decided ones are sent again (`send_totals`).
        let _ = self.totals.try_send(totals);
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
/// poll or crowd-energy rule `scene` counts across shards (`poll:NAME`, `energy:RULE`, as
/// the audience fires them). The main stage's other audience effects stay on the main stage.
pub fn plays_on_shards(scene: &SceneFile, origin: &CommandOrigin) -> bool {
    let CommandOrigin::Audience(who) = origin else { return false };
    if let Some(poll) = who.strip_prefix("poll:") {
        return scene.polls.iter().any(|p| p.name == poll && p.across_shards == AcrossShards::Sum);
    }
    if let Some(rule) = who.strip_prefix("energy:") {
        return scene.rules.iter().any(|r| {
            r.name == rule && matches!(r.trigger, TriggerDef::CrowdEnergy { across_shards: AcrossShards::Sum, .. })
        });
    }
    false
}

/// The authority takes its shards' reports: their energy, and their counts of the summed poll
/// open now.
pub(super) fn receive_shard_reports(mut counting: ResMut<ShardCounting>, mut audience: ResMut<Audience>) {
    let now = Instant::now();
    let counting = &mut *counting;
    let mut heard = false;
    while let Ok(report) = counting.reports.try_recv() {
        let shard = report.shard.clone();
        let Some(new) = counting.book.take(report, now) else {
            counting.refused.say(|| {
                format!(
                    "a report from shard {shard:?} refused: {} shards are counted already (forgotten 10 minutes after their last report)",
                    crate::model::shard::MAX_SHARDS
                )
            });
            continue;
        };
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
}

/// The authority's totals of the summed poll open now, to every shard, every
/// [`REPORT_INTERVAL`].
pub(super) fn send_totals(mut counting: ResMut<ShardCounting>, audience: Res<Audience>, mut rest: ResMut<Rest>) {
    let now = Instant::now();
    let counting = &mut *counting;
    if let Some(last) = counting.last_totals.filter(|t| now.duration_since(*t) < REPORT_INTERVAL) {
        if audience.poll.is_some() || counting.decided.is_some() {
            rest.wake_at(last + REPORT_INTERVAL);
        }
        return;
    }
    counting.last_totals = Some(now);
    if let Some(poll) = audience.poll.as_ref().filter(|p| p.summed == Summed::Decides) {
        let totals = totals_of(&counting.book, poll, None);
        let _ = counting.totals.try_send(totals);
    } else if let Some((totals, at)) = counting.decided.take() {
        // Kept (and sent again) for a few seconds after the decision, then forgotten.
        if now.duration_since(at) < RESEND_DECIDED {
            let _ = counting.totals.try_send(totals.clone());
            counting.decided = Some((totals, at));
            rest.wake_at(now + REPORT_INTERVAL);
        }
    }
}

fn totals_of(book: &ShardBook, poll: &OpenPoll, outcome: Option<&Outcome>) -> ShardTotals {
    ShardTotals {
        poll: poll.def.name.clone(),
        opened: poll.opened,
        counts: poll.counts(),
        voters: poll.voters(),
        shards: book.by_shard(&poll.def.name, poll.opened),
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
    let every = if summed.is_some() || closed.is_some() { REPORT_INTERVAL } else { HEARTBEAT };
    if let Some(last) = reporting.last_report.filter(|t| now.duration_since(*t) < every) {
        rest.wake_at(last + every);
        return;
    }
    rest.wake_at(now + every);
    reporting.last_report = Some(now);
    let count = |p: &OpenPoll, closed: bool| ShardPollCount {
        poll: p.def.name.clone(),
        opened: p.opened,
        counts: p.tally.counts().to_vec(),
        voters: p.tally.voters() as u64,
        closed,
    };
    let polls = summed.map(|p| count(p, p.closing)).into_iter().chain(closed.map(|p| count(p, true))).collect();
    let report = ShardReport {
        shard: reporting.id.clone(),
        started_ms: reporting.started_ms,
        members: audience.members.len() as u64,
        lively: audience.lively_total,
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
) {
    let now = Instant::now();
    let reporting = &mut *reporting;
    let audience = &mut *audience;
    while let Ok(totals) = reporting.totals.try_recv() {
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
