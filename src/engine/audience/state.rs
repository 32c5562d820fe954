//! The audience's state as the venue keeps it ([`Audience`]) and the polls it runs, apart from
//! the systems that change them (`super`) so that its parts (`super::shards`) can share them
//! without importing their parent.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bevy::prelude::*;

use crate::engine::command::SubmitCommand;
use crate::model::audience::event::UserId;
use crate::model::audience::polls::{EnergyMeter, Outcome, Tally, outcome_of};
use crate::model::audience::protocol::{PollOptionView, ServerMessage};
use crate::model::audience::rules::Cooldowns;
use crate::model::command::VenueCommand;
use crate::model::scene::format::PollDef;

/// The audience as the venue sees it.
#[derive(Debug, Resource)]
pub struct Audience {
    /// Connected members and their display names.
    pub members: HashMap<UserId, Arc<str>>,
    /// Kill switch: while set, audience messages change nothing.
    pub paused: bool,
    /// Chat lines shown to everyone per second at most; beyond it a line goes only to its
    /// sender (still counted for rules and energy): nobody reads a faster chat, and sending
    /// every line to every member would cost members × lines.
    pub chat_lines_per_second: u32,
    pub(super) next_message_id: u64,
    pub(super) cooldowns: Cooldowns,
    /// Effects waiting for their command to be applied or refused, in submission order.
    pub(super) pending: VecDeque<PendingEffect>,
    pub(super) last_state: Option<Instant>,
    pub(super) state_dirty: bool,
    /// Recent chat lines, so a moderator (or a platform's) can retract them.
    pub(super) recent_lines: VecDeque<RecentLine>,
    /// The longest delay of a stream that chat arrives from: windows opened on stage (polls,
    /// democracy votes) stay open this much longer for the stream's viewers, who see them late.
    pub stream_delay: Duration,
    /// The poll open now, if any.
    pub(super) poll: Option<OpenPoll>,
    /// Democracy votes running, by rule name.
    pub(super) democracy: HashMap<String, DemocracyVote>,
    pub(super) last_tally: Option<Instant>,
    /// Votes changed since the last tally was sent.
    pub(super) tally_dirty: bool,
    pub(super) energy: Option<EnergyMeter>,
    /// Crowd-energy rules ready to fire, by rule name.
    pub(super) energy_armed: HashMap<String, bool>,
    /// Texts waiting for a moderator.
    pub(super) approvals: VecDeque<Approval>,
    pub(super) approvals_dirty: bool,
    /// Mutex groups of rules, by name.
    pub(super) groups: HashMap<String, MutexGroup>,
    /// Seeds for effects; logged with the commands they go into.
    pub(super) seeds: crate::model::rng::SeededRng,
    /// Chat lines shown in the current second: (second start, count).
    pub(super) shown_this_second: (Option<Instant>, u32),
    /// A code shown on stage to measure the stream's delay, and when it was shown.
    pub(super) delay_probe: Option<(String, Instant)>,
    /// The last chat line or reaction: the crowd's energy falls back over the window after it.
    pub(super) last_lively: Option<Instant>,
    /// Chat lines and reactions since the venue started (a shard reports them to its
    /// authority).
    pub(super) lively_total: u64,
    /// When the latest venue frames began to read audience events, newest last, so that
    /// latency can be counted in frames as well as in time.
    pub(super) frame_starts: VecDeque<Instant>,
    /// Interaction windows open now, by rule name: closed rules fire only in them.
    pub(super) windows: HashMap<String, Window>,
    /// Where counts the scene sums across shards are decided: here (`Decides`: an authority
    /// with a NATS link), on the main stage (`Follows`: an overflow shard), or `No` shards.
    pub(super) across: Summed,
    /// The last run number given to a summed democracy vote.
    pub(super) last_run: u64,
    /// On a shard: the last run of each summed democracy vote closed here (late totals of it
    /// or of an earlier run are not joined again).
    pub(super) finished_runs: HashMap<String, u64>,
    /// The crowd's energy in the last `state` sent (one decimal).
    pub(super) shown_energy: f32,
}

/// An interaction window on a closed rule.
#[derive(Debug, Clone, PartialEq)]
pub struct Window {
    /// What the audience reads.
    pub label: String,
    /// When it closes on stage; `None` until closed by command. The stream's viewers keep it
    /// `stream_delay` longer, since they see the stage late.
    pub closes_at: Option<Instant>,
}

/// A chat line remembered for retraction.
#[derive(Debug)]
pub(super) struct RecentLine {
    pub(super) id: u64,
    pub(super) user: UserId,
    pub(super) platform_id: Option<Arc<str>>,
}

#[derive(Debug, Clone)]
pub(super) struct PendingEffect {
    /// The command's origin id and the command, to pair it with its log entry or refusal
    /// (refusals are reported apart from applied commands, so order alone is not enough).
    pub(super) user: String,
    pub(super) command: VenueCommand,
    pub(super) by: Arc<str>,
    pub(super) rule: String,
    pub(super) received: Instant,
}

#[derive(Debug)]
pub(super) struct OpenPoll {
    pub(super) def: PollDef,
    pub(super) tally: Tally,
    pub(super) closes_at: Instant,
    /// `ClosePoll` submitted, waiting to be applied (on a shard, for a summed poll: its time
    /// is up and it takes no more votes).
    pub(super) closing: bool,
    /// The run: the log sequence number of the `open_poll` that opened it, which the authority
    /// and its shards share.
    pub(super) opened: u64,
    /// Counted here, or across shards.
    pub(super) summed: Summed,
    /// Weighted votes cast on the other instances, per option (summed polls).
    pub(super) elsewhere: Vec<u64>,
    /// Members who voted on the other instances (on the authority).
    pub(super) elsewhere_voters: u64,
    /// On a shard: the main stage's final totals, once decided.
    pub(super) result: Option<crate::model::shard::ShardTotals>,
    /// On a shard: closed here because the main stage did not (it is gone).
    pub(super) gave_up: bool,
    /// On the authority: a summed poll staff closed before its time, decided when every live
    /// shard's last count is in or at this time, whichever comes first.
    pub(super) decide_by: Option<Instant>,
}

/// Where a poll is decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(super) enum Summed {
    /// By this instance, on its own audience's votes.
    #[default]
    No,
    /// By this instance, the authority, on every instance's votes.
    Decides,
    /// By the authority: this shard reports its votes and shows the result.
    Follows,
}

impl OpenPoll {
    /// Weighted votes per option, here and (summed polls) elsewhere.
    pub(super) fn counts(&self) -> Vec<u64> {
        let elsewhere = |i: usize| self.elsewhere.get(i).copied().unwrap_or(0);
        self.tally.counts().iter().enumerate().map(|(i, c)| c.saturating_add(elsewhere(i))).collect()
    }

    /// Members who voted, here and elsewhere.
    pub(super) fn voters(&self) -> u64 {
        (self.tally.voters() as u64).saturating_add(self.elsewhere_voters)
    }

    /// The result over an audience of `members`.
    pub(super) fn outcome(&self, members: u64) -> Outcome {
        outcome_of(&self.counts(), self.voters(), self.def.min_votes, self.def.min_share, members)
    }
}

#[derive(Debug)]
pub(super) struct DemocracyVote {
    pub(super) tally: Tally,
    pub(super) closes_at: Instant,
    /// Counted here, or across shards (`across_shards: Sum`).
    pub(super) summed: Summed,
    /// The run, the authority's number for a summed vote, which its shards share; on a shard,
    /// [`ASKING`](crate::model::shard::ASKING) until the main stage has opened it.
    pub(super) opened: u64,
    /// Words and weighted votes cast on the other instances (summed votes).
    pub(super) elsewhere: Vec<(String, u64)>,
    /// Members who voted on the other instances (on the authority).
    pub(super) elsewhere_voters: u64,
    /// Its time is up here: no more votes; the authority waits for its shards' last counts,
    /// a shard for the main stage's result.
    pub(super) closing: bool,
    /// On a shard: the main stage's final totals, once decided.
    pub(super) result: Option<crate::model::shard::ShardTotals>,
}

impl Audience {
    /// A run number for a democracy vote summed across shards: the wall clock's milliseconds,
    /// so that a restarted authority does not give a number its shards have seen, and never
    /// the same twice.
    pub(super) fn next_run(&mut self) -> u64 {
        let ms = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64);
        self.last_run = ms.max(self.last_run + 1);
        self.last_run
    }
}

impl DemocracyVote {
    /// A vote of `window` from `now`.
    pub(super) fn new(now: Instant, window: Duration, summed: Summed, opened: u64) -> Self {
        Self {
            tally: Tally::open_ended(),
            closes_at: now + window,
            summed,
            opened,
            elsewhere: Vec::new(),
            elsewhere_voters: 0,
            closing: false,
            result: None,
        }
    }

    /// The words and their weighted votes, here and (summed votes) elsewhere: this instance's
    /// words first, in the order they were typed.
    pub(super) fn words(&self) -> Vec<(String, u64)> {
        let mut words: Vec<(String, u64)> =
            self.tally.options().iter().cloned().zip(self.tally.counts().iter().copied()).collect();
        crate::model::shard::add_words(&mut words, self.elsewhere.iter().map(|(w, n)| (w, n)));
        words
    }

    /// Members who voted, here and elsewhere.
    pub(super) fn voters(&self) -> u64 {
        (self.tally.voters() as u64).saturating_add(self.elsewhere_voters)
    }
}

#[derive(Debug)]
pub(super) struct Approval {
    pub(super) id: u64,
    pub(super) user: UserId,
    pub(super) by: Arc<str>,
    pub(super) text: String,
    pub(super) rule: String,
    pub(super) seconds: f32,
    pub(super) at: [f32; 3],
}

#[derive(Debug, Default)]
pub(super) struct MutexGroup {
    pub(super) busy_until: Option<Instant>,
    pub(super) queue: VecDeque<(SubmitCommand, PendingEffect, Duration)>,
}

pub(super) fn poll_view(poll: &OpenPoll, phase: &str, now: Instant, outcome: &Outcome) -> ServerMessage {
    // A shard shows the main stage's decided counts once it has them.
    let counts = match &poll.result {
        Some(result) if result.counts.len() == poll.def.options.len() => result.counts.clone(),
        _ => poll.counts(),
    };
    ServerMessage::Poll {
        phase: phase.into(),
        id: poll.def.name.clone(),
        question: poll.def.question.clone(),
        options: poll
            .def
            .options
            .iter()
            .zip(counts)
            .map(|(o, c)| PollOptionView { id: o.id.clone(), label: o.label.clone(), votes: c as u32 })
            .collect(),
        closes_in_ms: poll.closes_at.saturating_duration_since(now).as_millis() as u64,
        winner: match outcome {
            Outcome::Winner(i) if phase == "close" => poll.def.options.get(*i).map(|o| o.id.clone()),
            _ => None,
        },
    }
}

/// A democracy vote as the page shows it: its words and their votes, and the winner on
/// `close`.
pub(super) fn tally_view(
    id: &str,
    question: &str,
    words: &[(String, u64)],
    phase: &str,
    left: Duration,
    outcome: &Outcome,
) -> ServerMessage {
    ServerMessage::Poll {
        phase: phase.into(),
        id: id.into(),
        question: question.into(),
        options: words
            .iter()
            .map(|(o, c)| PollOptionView {
                id: o.clone(),
                label: o.clone(),
                votes: u32::try_from(*c).unwrap_or(u32::MAX),
            })
            .collect(),
        closes_in_ms: left.as_millis() as u64,
        winner: match outcome {
            Outcome::Winner(i) if phase == "close" => words.get(*i).map(|(w, _)| w.clone()),
            _ => None,
        },
    }
}
