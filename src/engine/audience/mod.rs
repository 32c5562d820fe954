//! The live audience as the venue sees it: [`AudiencePlugin`] reads what the audience's edges
//! accepted from the [`hub`], turns chat, reactions and votes into venue commands through the
//! scene's rules (with cooldowns, democracy votes, approval and mutex groups), runs polls and
//! crowd energy, applies moderators' requests that need the venue, and tells the audience what
//! changed. The protocol, moderation and rule matching are the model's
//! ([`crate::model::audience`]); the metrics every edge counts into are in [`metrics`].

pub mod hub;
pub mod metrics;
pub mod shards;
mod state;

use state::{Approval, DemocracyVote, OpenPoll, PendingEffect, RecentLine, Summed, poll_view, tally_view};
pub use state::{Audience, Window};

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use bevy::prelude::*;

use crate::engine::command::{
    AppliedCommand, CurrentScene, DurableCommand, RejectedCommand, SubmitCommand, VenueParams,
};
use crate::engine::rest::Rest;
use crate::engine::schedule::VenueSystems;
use crate::engine::stage_text::ShownTexts;
use crate::model::audience::event::{AudienceEvent, ChatMeta, UserId};
use crate::model::audience::moderator::ModeratorAction;
use crate::model::audience::polls::{EnergyMeter, Outcome, Tally, energy_edge, outcome_of};
use crate::model::audience::protocol::{ServerMessage, WindowView};
use crate::model::audience::rules::{self, Cooldowns, Fired, NoFire, match_chat, match_poll_outcome, match_reaction};
use crate::model::command::{CommandOrigin, MAX_SHOWN_CHARS, VenueCommand};
use crate::model::scene::format::{AcrossShards, ActionDef, AudienceRuleDef, RuleMode, SceneFile, TriggerDef};
use crate::model::shard::valid_word;
use hub::{AudienceHub, AudienceLink};
use metrics::Rejection;

/// Most audience events handled in one frame; the rest wait in the channel for the next.
const EVENTS_PER_FRAME: usize = 50_000;
/// Least time between two `state` broadcasts.
const STATE_INTERVAL: Duration = Duration::from_millis(100);
/// Least time between two `poll` tallies.
const TALLY_INTERVAL: Duration = Duration::from_millis(250);
/// Window of the crowd energy shown to everyone.
const SHOWN_ENERGY_WINDOW: Duration = Duration::from_secs(10);
/// Texts waiting for a moderator's approval; the oldest is dropped beyond this.
const MAX_APPROVALS: usize = 100;

/// Where an overflow shard numbers its chat lines: far from its authority's (whose on-stage
/// texts arrive through the log by number), and within what a page's numbers hold exactly.
pub const SHARD_LINE_IDS: u64 = 1 << 40;

impl Audience {
    /// Numbers chat lines from `start` on: an overflow shard's ([`SHARD_LINE_IDS`]) must not
    /// be taken for its authority's.
    pub fn number_lines_from(&mut self, start: u64) {
        self.next_message_id = self.next_message_id.max(start);
    }

    /// The open poll as the program overlay shows it: question, each option's label and votes,
    /// and seconds left.
    pub fn poll_overlay(&self, now: Instant) -> Option<(String, Vec<(String, u64)>, f32)> {
        let poll = self.poll.as_ref()?;
        let options = poll.def.options.iter().zip(poll.counts()).map(|(o, c)| (o.label.clone(), c)).collect();
        Some((poll.def.question.clone(), options, poll.closes_at.saturating_duration_since(now).as_secs_f32()))
    }

    /// Open interaction windows for the program overlay: label and seconds left (`None`:
    /// until closed), one line per label.
    pub fn window_overlay(&self, now: Instant) -> Vec<(String, Option<f32>)> {
        let mut out: Vec<(String, Option<f32>)> = Vec::new();
        for w in self.windows.values() {
            let left = w.closes_at.map(|t| t.saturating_duration_since(now).as_secs_f32());
            if !out.iter().any(|(l, _)| l == &w.label) {
                out.push((w.label.clone(), left));
            }
        }
        out.sort_by(|a, b| a.0.cmp(&b.0));
        out
    }
}

impl Default for Audience {
    fn default() -> Self {
        Self {
            members: HashMap::new(),
            paused: false,
            chat_lines_per_second: 25,
            next_message_id: 0,
            cooldowns: Cooldowns::default(),
            pending: VecDeque::new(),
            last_state: None,
            state_dirty: false,
            recent_lines: VecDeque::new(),
            stream_delay: Duration::ZERO,
            poll: None,
            democracy: HashMap::new(),
            last_tally: None,
            tally_dirty: false,
            energy: None,
            energy_armed: HashMap::new(),
            approvals: VecDeque::new(),
            approvals_dirty: false,
            groups: HashMap::new(),
            // Seeds are logged with the commands they go into; their start only needs to
            // differ between shows.
            seeds: crate::model::rng::SeededRng::new(
                std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(1, |d| d.as_nanos() as u64),
            ),
            shown_this_second: (None, 0),
            frame_starts: VecDeque::with_capacity(FRAMES_REMEMBERED),
            delay_probe: None,
            last_lively: None,
            lively_total: 0,
            windows: HashMap::new(),
            across: Summed::No,
            last_run: 0,
            finished_runs: HashMap::new(),
            shown_energy: 0.0,
        }
    }
}

impl Audience {
    /// Interaction windows open now, by rule name.
    pub fn windows(&self) -> &HashMap<String, Window> {
        &self.windows
    }

    /// Whether `rule` may fire for a message received at `received`: an open rule always; a
    /// closed one while its window is open — for the stream's viewers, as long after it closes
    /// on stage as they are behind.
    fn rule_open(&self, rule: &AudienceRuleDef, received: Instant, meta: &ChatMeta) -> bool {
        !rule.closed
            || self
                .windows
                .get(&rule.name)
                .is_some_and(|w| w.closes_at.is_none_or(|t| within_window(t, received, meta)))
    }

    /// The open poll's name, if any.
    pub fn open_poll(&self) -> Option<&str> {
        self.poll.as_ref().map(|p| p.def.name.as_str())
    }

    /// Texts waiting for approval: (line id, author, text).
    pub fn awaiting_approval(&self) -> impl Iterator<Item = (u64, &str, &str)> {
        self.approvals.iter().map(|a| (a.id, &*a.by, a.text.as_str()))
    }

    fn seed(&mut self) -> u64 {
        self.seeds.next_u64()
    }
}

/// Frame starts remembered for latency in frames; a longer wait counts as this many.
const FRAMES_REMEMBERED: usize = 128;

impl Audience {
    /// Venue frames begun after `received` (at least 1: the frame applying it began after).
    fn frames_since(&self, received: Instant) -> u64 {
        let later = self.frame_starts.iter().rev().take_while(|start| **start >= received).count();
        later.max(1) as u64
    }
}

/// Chat lines remembered for retraction.
const RECENT_LINES: usize = 2000;

impl Audience {
    /// Takes the pending effect of the command `command` from `user`.
    fn take_pending(&mut self, user: &str, command: &VenueCommand) -> Option<PendingEffect> {
        let i = self.pending.iter().position(|p| p.user == user && &p.command == command)?;
        self.pending.remove(i)
    }
}

/// What the audience still needs frames for: windows to close, counts and state to send,
/// effects waiting their turn, and the crowd's energy to fall back to calm.
fn keep_awake(audience: Res<Audience>, mut rest: ResMut<Rest>) {
    let delay = audience.stream_delay;
    if let Some(poll) = &audience.poll {
        rest.wake_at(poll.closes_at + delay);
        match poll.summed {
            Summed::Decides => {
                rest.wake_at(poll.closes_at + delay + crate::model::shard::CLOSING_GRACE);
                if let Some(t) = poll.decide_by {
                    rest.wake_at(t);
                }
            }
            Summed::Follows => rest.wake_at(poll.closes_at + delay + shards::MAIN_STAGE_SILENT),
            Summed::No => {}
        }
        // Counts go to and come from the shards while it runs.
        if poll.summed != Summed::No {
            rest.wake_at(Instant::now() + crate::model::shard::REPORT_INTERVAL);
        }
    }
    for vote in audience.democracy.values() {
        let until = match (vote.closing, vote.summed) {
            (true, Summed::Decides) => crate::model::shard::CLOSING_GRACE,
            (true, Summed::Follows) => shards::MAIN_STAGE_SILENT,
            _ => Duration::ZERO,
        };
        rest.wake_at(vote.closes_at + delay + until);
        if vote.summed != Summed::No {
            rest.wake_at(Instant::now() + crate::model::shard::REPORT_INTERVAL);
        }
    }
    for group in audience.groups.values() {
        if let Some(until) = group.busy_until.filter(|_| !group.queue.is_empty()) {
            rest.wake_at(until);
        }
    }
    if let Some(last) = audience.last_lively {
        rest.wake_at(last + SHOWN_ENERGY_WINDOW);
        // Once the last line is out of the window (its 250 ms bucket included), calm is shown.
        if audience.shown_energy != 0.0 {
            rest.wake_at(last + SHOWN_ENERGY_WINDOW + Duration::from_millis(500));
        }
    }
    for window in audience.windows.values() {
        if let Some(at) = window.closes_at {
            rest.wake_at(at + delay);
        }
    }
    // Throttled sends still to go out, and tallies while a vote runs.
    let counting = audience.poll.is_some() || !audience.democracy.is_empty();
    if audience.state_dirty || audience.approvals_dirty || (audience.tally_dirty && counting) {
        rest.busy();
    }
}

/// Lets input the edges queue wake a resting venue.
fn ring_on_input(link: Res<AudienceLink>, rest: Res<Rest>) {
    let bell = rest.doorbell.clone();
    link.hub.doorbell.on_ring(move || bell.ring());
}

/// Connects the audience's edges to the venue through an [`AudienceLink`] (inserted as a
/// resource; without one, the venue has no live audience and these systems do not run).
pub struct AudiencePlugin;

impl Plugin for AudiencePlugin {
    fn build(&self, app: &mut App) {
        let live = resource_exists::<AudienceLink>;
        app.init_resource::<Audience>()
            .add_systems(Update, ring_on_input.run_if(resource_added::<AudienceLink>))
            .add_systems(Update, follow_window_commands.in_set(VenueSystems::Simulate))
            .add_message::<AudienceInput>()
            .add_systems(Update, receive_audience_events.in_set(VenueSystems::Ingest).run_if(live))
            .add_systems(
                Update,
                (apply_audience_rules, run_votes_and_energy, release_mutex_queues)
                    .chain()
                    .in_set(VenueSystems::Decide)
                    .run_if(live),
            )
            .add_systems(
                Update,
                (
                    follow_poll_commands,
                    announce_applied_effects,
                    answer_moderators,
                    broadcast_poll_tally,
                    broadcast_state,
                    broadcast_surtitles,
                    send_approval_queue,
                    keep_awake,
                )
                    .chain()
                    .in_set(VenueSystems::Present)
                    .run_if(live),
            )
            .add_systems(
                Update,
                (
                    shards::take_part_in_counting.before(receive_audience_events).in_set(VenueSystems::Ingest).run_if(
                        resource_added::<shards::ShardCounting>.or_else(resource_added::<shards::ShardReporting>),
                    ),
                    shards::receive_shard_reports
                        .after(receive_audience_events)
                        .in_set(VenueSystems::Ingest)
                        .run_if(live.and_then(resource_exists::<shards::ShardCounting>)),
                    shards::receive_totals
                        .in_set(VenueSystems::Ingest)
                        .run_if(live.and_then(resource_exists::<shards::ShardReporting>)),
                    (
                        shards::send_totals.run_if(resource_exists::<shards::ShardCounting>),
                        shards::send_shard_report.run_if(resource_exists::<shards::ShardReporting>),
                    )
                        .after(follow_poll_commands)
                        .in_set(VenueSystems::Present)
                        .run_if(live),
                ),
            );
    }
}

/// An audience event, in the frame it arrived.
#[derive(Debug, Clone, Message)]
pub struct AudienceInput(pub AudienceEvent);

fn receive_audience_events(
    mut link: ResMut<AudienceLink>,
    mut audience: ResMut<Audience>,
    mut input: MessageWriter<AudienceInput>,
) {
    let now = Instant::now();
    if audience.frame_starts.len() == FRAMES_REMEMBERED {
        audience.frame_starts.pop_front();
    }
    audience.frame_starts.push_back(now);
    link.hub.metrics.venue_frames.fetch_add(1, Ordering::Relaxed);
    // Chat bridges stamp their lines with the delay as the venue knows it now.
    link.hub.stream_delay_ms.store(audience.stream_delay.as_millis() as u64, Ordering::Relaxed);
    let mut taken = 0;
    let mut lively = 0u32;
    while taken < EVENTS_PER_FRAME {
        let Ok(event) = link.events.try_recv() else { break };
        taken += 1;
        match &event {
            AudienceEvent::Joined { user, name } => {
                audience.members.insert(user.clone(), name.clone());
                audience.state_dirty = true;
            }
            AudienceEvent::Left { user } => {
                audience.members.remove(user);
                audience.state_dirty = true;
            }
            AudienceEvent::Chat { .. } | AudienceEvent::React { .. } => lively += 1,
            _ => {}
        }
        input.write(AudienceInput(event));
    }
    audience.energy.get_or_insert_with(|| EnergyMeter::new(now)).record(now, lively);
    if lively > 0 {
        audience.last_lively = Some(now);
        audience.lively_total += u64::from(lively);
    }
    link.hub.metrics.queue_depth.store(link.events.len() as u64, Ordering::Relaxed);
}

/// Everything a rule firing needs to know about where it came from.
struct Firing<'a> {
    user: &'a UserId,
    name: &'a Arc<str>,
    /// Chat line id, for `Show` (0 when there is no line).
    line: u64,
    received: Instant,
    /// Moderators and the streamer: no cooldowns, no vote, no approval.
    staff: bool,
    /// Roles, bits and stream delay from a chat platform.
    meta: ChatMeta,
}

/// Turns chat, reactions, votes and moderators' requests into venue commands through the
/// scene's rules.
fn apply_audience_rules(
    link: Res<AudienceLink>,
    mut audience: ResMut<Audience>,
    mut input: MessageReader<AudienceInput>,
    scene: Option<Res<CurrentScene>>,
    params: Res<VenueParams>,
    shown: Res<ShownTexts>,
    mut submit: MessageWriter<SubmitCommand>,
) {
    let Some(scene) = scene else { return };
    let shared = &link.hub;
    let now = Instant::now();
    let audience = &mut *audience;
    for AudienceInput(event) in input.read() {
        match event {
            AudienceEvent::Chat { user, name, text, received, staff, meta } => {
                if meta.from_stream {
                    answer_delay_probe(audience, shared, name, text, *received);
                }
                audience.next_message_id += 1;
                let id = audience.next_message_id;
                let line = ServerMessage::Chat { id, from: name.to_string(), text: text.clone() };
                show_chat_line(audience, &link, user, &line, now);
                if audience.recent_lines.len() == RECENT_LINES {
                    audience.recent_lines.pop_front();
                }
                audience.recent_lines.push_back(RecentLine {
                    id,
                    user: user.clone(),
                    platform_id: meta.platform_id.clone(),
                });
                let fired = match match_chat(&scene.0.rules, text, |p| params.get(p).map(|(d, _)| &d.kind)) {
                    Ok(Some(f)) => f,
                    Ok(None) => continue,
                    Err(why) => {
                        shared.metrics.reject(Rejection::Rule);
                        shared.send_to(user, &ServerMessage::error("not_allowed", no_fire_message(&scene.0, why)));
                        continue;
                    }
                };
                let from = Firing {
                    user,
                    name,
                    line: id,
                    received: *received,
                    staff: *staff || meta.roles.is_staff(),
                    meta: meta.clone(),
                };
                if let Some(command) = fire(audience, shared, &params, &scene.0, &from, fired, now) {
                    submit.write(command);
                }
            }
            AudienceEvent::React { user, emoji, received } => {
                let Some(fired) = match_reaction(&scene.0.rules, emoji) else { continue };
                let name = audience.members.get(user).cloned().unwrap_or_else(|| "?".into());
                let from =
                    Firing { user, name: &name, line: 0, received: *received, staff: false, meta: ChatMeta::default() };
                if let Some(command) = fire(audience, shared, &params, &scene.0, &from, fired, now) {
                    submit.write(command);
                }
            }
            AudienceEvent::Vote { user, poll, option, received, meta } => {
                if let Err((code, message)) = cast_vote(audience, &scene.0, user, poll, option, *received, meta) {
                    shared.send_to(user, &ServerMessage::error(code, message));
                }
            }
            AudienceEvent::Moderator { moderator, action: ModeratorAction::Say(text) } => {
                // A moderator speaking on stage: through the rules like anyone, without limits.
                let Ok(Some(fired)) = match_chat(&scene.0.rules, text, |p| params.get(p).map(|(d, _)| &d.kind)) else {
                    continue;
                };
                let name: Arc<str> = Arc::from(format!("{moderator} (moderator)"));
                audience.next_message_id += 1;
                let from = Firing {
                    user: moderator,
                    name: &name,
                    line: audience.next_message_id,
                    received: now,
                    staff: true,
                    meta: ChatMeta::default(),
                };
                if let Some(mut command) = fire(audience, shared, &params, &scene.0, &from, fired, now) {
                    // Logged as the moderator's own command; no audience effect to announce.
                    audience.take_pending(moderator, &command.command);
                    command.origin = CommandOrigin::Moderator(moderator.to_string());
                    submit.write(command);
                }
            }
            AudienceEvent::Moderator { moderator, action } => {
                submit.write_batch(moderate_venue(audience, &link, &shown, &scene.0, moderator, action));
            }
            AudienceEvent::Joined { .. } | AudienceEvent::Left { .. } => {}
        }
    }
    // Now and then, forget members' old cooldowns so a large audience does not grow the map.
    if audience.next_message_id.is_multiple_of(4096) {
        audience.cooldowns.prune(now);
    }
}

/// Broadcasts a chat line, unless more than the per-second display limit were shown already;
/// then only its sender sees it. The sender is sent it at once either way: everyone else's copy
/// waits for the edge's next gathered frame, and the page shows a line once by its id.
fn show_chat_line(audience: &mut Audience, link: &AudienceLink, user: &UserId, line: &ServerMessage, now: Instant) {
    let (start, shown) = &mut audience.shown_this_second;
    if start.is_none_or(|s| now.duration_since(s) >= Duration::from_secs(1)) {
        *start = Some(now);
        *shown = 0;
    }
    if *shown < audience.chat_lines_per_second {
        *shown += 1;
        let json: Arc<str> = line.to_json().into();
        let _ = link.hub.broadcast.send(json.clone());
        if is_page_member(user) {
            link.hub.send_json_to(user, json);
        }
    } else {
        link.hub.metrics.chat_unshown.fetch_add(1, Ordering::Relaxed);
        link.hub.send_to(user, line);
    }
}

/// Whether `user` is a member of an audience page (here or at an edge), who has a mailbox;
/// chat platforms' members (`twitch:…`) have none.
fn is_page_member(user: &str) -> bool {
    !user.contains(':')
}

fn no_fire_message(scene: &SceneFile, why: NoFire) -> String {
    match why {
        NoFire::UnknownCommand(c) => {
            let known: Vec<String> = scene
                .rules
                .iter()
                .filter_map(|r| match &r.trigger {
                    TriggerDef::Command(c) => Some(format!("!{c}")),
                    _ => None,
                })
                .collect();
            format!("no command !{c}; this venue knows: {}", known.join(" "))
        }
        NoFire::MissingValue { command, known } if known.is_empty() => format!("!{command} needs a value"),
        NoFire::MissingValue { command, known } => format!("!{command} needs one of: {}", known.join(", ")),
    }
}

/// How much a vote weighs: 1, plus one per `bits_per_vote` bits cheered with it (at most 100).
fn vote_weight(bits_per_vote: u32, meta: &ChatMeta) -> u32 {
    1 + meta.bits.checked_div(bits_per_vote).unwrap_or(0).min(99)
}

/// Whether a message sent at `received` by someone `behind` the stage falls in a window that
/// closed on stage at `closes_at`: what they saw on their (delayed) stream counts.
fn within_window(closes_at: Instant, received: Instant, meta: &ChatMeta) -> bool {
    received < closes_at + meta.behind
}

/// Records a vote in the open poll (`poll` empty: whichever is open) or in a democracy vote
/// (`rule:NAME`).
fn cast_vote(
    audience: &mut Audience,
    scene: &SceneFile,
    user: &UserId,
    poll: &str,
    option: &str,
    received: Instant,
    meta: &ChatMeta,
) -> Result<(), (&'static str, String)> {
    if let Some(rule) = poll.strip_prefix("rule:") {
        let vote = audience.democracy.get_mut(rule).ok_or(("no_poll", format!("no vote on !{rule} is open")))?;
        let Some(def) = scene.rules.iter().find(|r| r.name == rule) else {
            return Err(("no_poll", format!("no rule {rule}")));
        };
        if !within_window(vote.closes_at, received, meta) {
            return Err(("no_poll", format!("the vote on !{rule} has closed")));
        }
        let word = rules::fold(option);
        if !valid_word(&word) {
            return Err(("bad_option", BAD_WORD.to_owned()));
        }
        if !def.values.is_empty() && !def.values.keys().any(|k| rules::fold(k) == word) {
            return Err((
                "bad_option",
                format!("choose one of: {}", def.values.keys().cloned().collect::<Vec<_>>().join(", ")),
            ));
        }
        vote.tally
            .vote(user, &word, vote_weight(def.bits_per_vote, meta))
            .map_err(|_| ("bad_option", "too many different choices already".to_owned()))?;
        audience.tally_dirty = true;
        return Ok(());
    }
    let open = audience
        .poll
        .as_mut()
        .filter(|p| (poll.is_empty() || p.def.name == poll) && !p.closing && within_window(p.closes_at, received, meta))
        .ok_or_else(|| {
            (
                "no_poll",
                if poll.is_empty() { "no poll is open".to_owned() } else { format!("no poll {poll:?} is open") },
            )
        })?;
    let weight = vote_weight(open.def.bits_per_vote, meta);
    open.tally.vote(user, option, weight).map_err(|_| {
        let ids: Vec<&str> = open.def.options.iter().map(|o| o.id.as_str()).collect();
        ("bad_option", format!("poll {:?} has options: {}", open.def.name, ids.join(", ")))
    })?;
    audience.tally_dirty = true;
    Ok(())
}

/// How long a delay probe waits for its answer (longer than any stream's delay).
const DELAY_PROBE_LIFETIME: Duration = Duration::from_secs(120);

/// A stream viewer typed the code shown on stage: the time since it was shown is the stream's
/// delay (plus the viewer's reaction, about a second, which errs on the side of longer windows).
fn answer_delay_probe(audience: &mut Audience, shared: &AudienceHub, name: &str, text: &str, received: Instant) {
    let Some((code, shown_at)) = &audience.delay_probe else { return };
    // A probe nobody answered is forgotten, so a number typed much later sets nothing.
    if received.saturating_duration_since(*shown_at) > DELAY_PROBE_LIFETIME {
        audience.delay_probe = None;
        return;
    }
    // The line must be the code alone: a viewer typing lists of numbers cannot pick the delay.
    if text.trim() != code {
        return;
    }
    let delay = received.saturating_duration_since(*shown_at).min(Duration::from_secs(600));
    audience.stream_delay = delay;
    audience.delay_probe = None;
    let message = serde_json::json!({"type": "stream_delay", "seconds": delay.as_secs_f64(), "by": name}).to_string();
    let _ = shared.moderators.send(message.into());
}

/// What a moderator's request does in the venue; returns a command to submit, if any.
fn moderate_venue(
    audience: &mut Audience,
    link: &AudienceLink,
    shown: &ShownTexts,
    scene: &SceneFile,
    moderator: &Arc<str>,
    action: &ModeratorAction,
) -> Vec<SubmitCommand> {
    let origin = CommandOrigin::Moderator(moderator.to_string());
    match action {
        ModeratorAction::Pause(paused) => {
            audience.paused = *paused;
            audience.state_dirty = true;
            let text = if *paused { "audience effects are paused" } else { "audience effects are back on" };
            let _ = link.hub.broadcast.send(ServerMessage::Notice { text: text.into() }.to_json().into());
            Vec::new()
        }
        ModeratorAction::Clear { id, user, platform_id, user_prefix } => {
            let ids: Vec<u64> = audience
                .recent_lines
                .iter()
                .filter(|line| {
                    Some(line.id) == *id
                        || user.as_deref() == Some(&*line.user)
                        || platform_id.is_some() && platform_id.as_deref() == line.platform_id.as_deref()
                        || user_prefix.as_deref().is_some_and(|prefix| line.user.starts_with(prefix))
                })
                .map(|line| line.id)
                .collect();
            // A line older than the memory can still be retracted by id.
            let ids = if ids.is_empty() { id.iter().copied().collect() } else { ids };
            audience.approvals.retain(|a| !ids.contains(&a.id));
            audience.approvals_dirty = true;
            for id in &ids {
                let _ = link.hub.broadcast.send(ServerMessage::Retract { id: *id }.to_json().into());
            }
            // A retracted line also leaves the venue if it is shown there.
            ids.iter()
                .filter(|id| shown.texts.iter().any(|t| t.id == **id))
                .map(|id| SubmitCommand { origin: origin.clone(), command: VenueCommand::HideText { id: Some(*id) } })
                .collect()
        }
        ModeratorAction::Approve(id) | ModeratorAction::Reject(id) => {
            let Some(index) = audience.approvals.iter().position(|a| a.id == *id) else {
                return Vec::new();
            };
            let item = audience.approvals.remove(index).expect("found above");
            audience.approvals_dirty = true;
            if matches!(action, ModeratorAction::Reject(_)) {
                link.hub.send_to(
                    &item.user,
                    &ServerMessage::Notice { text: "a moderator did not put your text on stage".into() },
                );
                return Vec::new();
            }
            let command = VenueCommand::ShowText {
                id: item.id,
                text: item.text,
                by: item.by.to_string(),
                seconds: item.seconds,
                at: item.at,
            };
            audience.pending.push_back(PendingEffect {
                user: item.user.to_string(),
                command: command.clone(),
                by: item.by.clone(),
                rule: item.rule.clone(),
                received: Instant::now(),
            });
            vec![SubmitCommand { origin: CommandOrigin::Audience(item.user.to_string()), command }]
        }
        ModeratorAction::Command(command) => vec![SubmitCommand { origin, command: command.clone() }],
        // Handled with the chat in `apply_audience_rules`.
        ModeratorAction::Say(_) => Vec::new(),
        ModeratorAction::MeasureDelay => {
            let code = format!("{}", 1000 + audience.seed() % 9000);
            audience.next_message_id += 1;
            let id = audience.next_message_id;
            audience.delay_probe = Some((code.clone(), Instant::now()));
            let message = serde_json::json!({"type": "delay_probe", "code": code}).to_string();
            let _ = link.hub.moderators.send(message.into());
            // Where the scene shows audience texts, else above the venue's origin.
            let at = scene.rules.iter().find_map(|r| match r.action {
                ActionDef::Show { at, .. } => Some(at),
                _ => None,
            });
            let text = format!("Stream check: type {code} in the chat · Tapez {code} dans le chat");
            vec![SubmitCommand {
                origin,
                command: VenueCommand::ShowText {
                    id,
                    text,
                    by: "Parvis".into(),
                    seconds: 30.0,
                    at: at.unwrap_or([0.0, 3.0, 0.0]),
                },
            }]
        }
    }
}

/// How long an action occupies its rule's mutex group.
fn action_hold(action: &ActionDef, scene: &SceneFile) -> Duration {
    let seconds = match action {
        ActionDef::Set => 0.0,
        ActionDef::Animate { seconds, .. } | ActionDef::Show { seconds, .. } => *seconds,
        ActionDef::Spawn(name) => scene.effects.iter().find(|e| &e.name == name).map_or(0.0, |e| e.lifetime),
    };
    Duration::from_secs_f32(seconds.max(0.0))
}

/// Checks pause, cooldowns, votes, approval and mutex groups for a fired rule, and makes its
/// command. Members are told why when nothing happens.
fn fire(
    audience: &mut Audience,
    shared: &AudienceHub,
    params: &VenueParams,
    scene: &SceneFile,
    from: &Firing<'_>,
    fired: Fired<'_>,
    now: Instant,
) -> Option<SubmitCommand> {
    if audience.paused {
        shared.send_to(
            from.user,
            &ServerMessage::Notice { text: "audience effects are paused by the moderators".into() },
        );
        return None;
    }
    let rule = fired.rule;
    if !audience.rule_open(rule, from.received, &from.meta) {
        shared.metrics.reject(Rejection::Rule);
        shared.send_to(
            from.user,
            &ServerMessage::error("closed", format!("{} is closed right now: the show opens it", allows(rule))),
        );
        return None;
    }
    if !from.staff && !rule.only.is_empty() && !rule.only.iter().any(|role| role.held_by(from.meta.roles)) {
        shared.metrics.reject(Rejection::Rule);
        let who: Vec<&str> = rule.only.iter().map(|r| r.label()).collect();
        shared.send_to(
            from.user,
            &ServerMessage::error("not_allowed", format!("!{} is for {} only", rule.name, who.join(", "))),
        );
        return None;
    }
    if let Some(vote) = audience.democracy.get(&rule.name)
        && !from.staff
        && !within_window(vote.closes_at, from.received, &from.meta)
    {
        shared.send_to(
            from.user,
            &ServerMessage::error(
                "no_poll",
                format!(
                    "the vote on !{} has closed; the result comes as soon as the stream's viewers have voted",
                    rule.name
                ),
            ),
        );
        return None;
    }
    if let Err(wait) = audience.cooldowns.try_fire(rule, from.user, now, audience.members.len(), from.staff) {
        shared.metrics.reject(Rejection::Rule);
        shared.send_to(
            from.user,
            &ServerMessage::error(
                "rate_limited",
                format!("!{} is cooling down; retry in {:.0} s", rule.name, wait.as_secs_f32().ceil()),
            ),
        );
        return None;
    }
    if let (RuleMode::Democracy { window, .. }, false) = (&rule.mode, from.staff) {
        // A word that is not a value of the parameter never becomes an option on everyone's
        // screen (`!glow <b>x</b>` would otherwise open a vote with that option).
        if matches!(rule.action, ActionDef::Set | ActionDef::Animate { .. })
            && let Err(e) = params.parse_value(&rule.param, &fired.value).and_then(|v| params.check(&rule.param, &v))
        {
            shared.metrics.reject(Rejection::Rule);
            shared.send_to(from.user, &ServerMessage::error("bad_value", e.to_string()));
            return None;
        }
        // Members vote on the word they typed (`red`), not on the value it stands for.
        let choice = rules::fold(if fired.text.is_empty() { &fired.value } else { &fired.text });
        if !valid_word(&choice) {
            shared.metrics.reject(Rejection::Rule);
            shared.send_to(from.user, &ServerMessage::error("bad_option", BAD_WORD));
            return None;
        }
        let window = Duration::from_secs_f32(window.max(1.0));
        if !audience.democracy.contains_key(&rule.name) {
            // A vote summed across shards is opened by the main stage, whose run number every
            // instance shares; a shard's audience typing first asks for it (its report).
            let (summed, opened) = match (summed_rule(rule), audience.across) {
                (true, Summed::Decides) => (Summed::Decides, audience.next_run()),
                (true, Summed::Follows) => (Summed::Follows, crate::model::shard::ASKING),
                _ => (Summed::No, 0),
            };
            audience.democracy.insert(rule.name.clone(), DemocracyVote::new(now, window, summed, opened));
        }
        let vote = audience.democracy.get_mut(&rule.name)?;
        if vote.tally.vote(from.user, &choice, vote_weight(rule.bits_per_vote, &from.meta)).is_err() {
            shared.send_to(
                from.user,
                &ServerMessage::error("bad_option", "too many different choices already; vote for one of them"),
            );
        }
        audience.tally_dirty = true;
        return None;
    }
    let command = match &rule.action {
        ActionDef::Set | ActionDef::Animate { .. } => {
            let value = match params.parse_value(&rule.param, &fired.value) {
                Ok(v) => v,
                Err(e) => {
                    shared.metrics.reject(Rejection::Rule);
                    shared.send_to(from.user, &ServerMessage::error("bad_value", e.to_string()));
                    return None;
                }
            };
            match &rule.action {
                ActionDef::Animate { seconds, easing } => VenueCommand::AnimateParam {
                    name: rule.param.clone(),
                    to: value,
                    seconds: *seconds,
                    easing: *easing,
                },
                _ => VenueCommand::SetParam { name: rule.param.clone(), value },
            }
        }
        ActionDef::Spawn(effect) => VenueCommand::SpawnEffect { effect: effect.clone(), seed: audience.seed() },
        ActionDef::Show { seconds, approval, at } => {
            let text: String = fired.text.chars().take(MAX_SHOWN_CHARS).collect();
            if *approval && !from.staff {
                if audience.approvals.len() == MAX_APPROVALS {
                    audience.approvals.pop_front();
                }
                audience.approvals.push_back(Approval {
                    id: from.line,
                    user: from.user.clone(),
                    by: from.name.clone(),
                    text,
                    rule: rule.name.clone(),
                    seconds: *seconds,
                    at: *at,
                });
                audience.approvals_dirty = true;
                shared.send_to(
                    from.user,
                    &ServerMessage::Notice { text: "your text waits for a moderator's approval".into() },
                );
                return None;
            }
            VenueCommand::ShowText { id: from.line, text, by: from.name.to_string(), seconds: *seconds, at: *at }
        }
    };
    let submit = SubmitCommand { origin: CommandOrigin::Audience(from.user.to_string()), command };
    let effect = PendingEffect {
        user: from.user.to_string(),
        command: submit.command.clone(),
        by: from.name.clone(),
        rule: rule.name.clone(),
        received: from.received,
    };
    if !rule.mutex.is_empty() {
        let hold = action_hold(&rule.action, scene);
        let group = audience.groups.entry(rule.mutex.clone()).or_default();
        if group.busy_until.is_some_and(|t| t > now) {
            if group.queue.len() < rule.queue as usize {
                group.queue.push_back((submit, effect, hold));
                shared.send_to(
                    from.user,
                    &ServerMessage::Notice {
                        text: format!("!{} is queued (position {})", rule.name, group.queue.len()),
                    },
                );
            } else {
                let wait = group.busy_until.map_or(0.0, |t| t.duration_since(now).as_secs_f32());
                shared.metrics.reject(Rejection::Rule);
                shared.send_to(
                    from.user,
                    &ServerMessage::error(
                        "rate_limited",
                        format!("the stage is busy with another effect; retry in {:.0} s", wait.ceil()),
                    ),
                );
            }
            return None;
        }
        group.busy_until = Some(now + hold);
    }
    audience.pending.push_back(effect);
    Some(submit)
}

/// Closes democracy votes and polls whose time is up, and fires crowd-energy rules.
fn run_votes_and_energy(
    link: Res<AudienceLink>,
    mut audience: ResMut<Audience>,
    scene: Option<Res<CurrentScene>>,
    params: Res<VenueParams>,
    mut submit: MessageWriter<SubmitCommand>,
    mut counting: Option<ResMut<shards::ShardCounting>>,
    reporting: Option<Res<shards::ShardReporting>>,
) {
    let Some(scene) = scene else { return };
    let scene = &scene.0;
    let shared = &link.hub;
    let now = Instant::now();
    let audience = &mut *audience;
    // Windows close on stage at `closes_at`, and take the stream's viewers' votes until they
    // have seen that moment too.
    let delay = audience.stream_delay;
    if let Some(poll) = audience.poll.as_mut().filter(|p| !p.gave_up && now >= p.closes_at + delay) {
        let close = match poll.summed {
            Summed::No => !poll.closing,
            // Every live shard's last count first, or what there is after a grace.
            Summed::Decides if !poll.closing => {
                let waiting = shards::still_counting(counting.as_deref(), poll, now);
                let grace = shards::grace(counting.as_deref(), delay, now);
                let late = now >= poll.closes_at + delay + grace;
                if late && !waiting.is_empty() {
                    warn!(
                        "poll {:?}: closing without the last count of shard(s) {} (none within {:.1} s); their earlier counts are in",
                        poll.def.name,
                        waiting.join(", "),
                        grace.as_secs_f32()
                    );
                }
                waiting.is_empty() || late
            }
            Summed::Decides => false,
            // A shard stops taking votes and waits for the main stage to close the poll; if the
            // main stage is gone, it closes it without a result.
            Summed::Follows => {
                poll.closing = true;
                if now >= poll.closes_at + delay + shards::MAIN_STAGE_SILENT {
                    warn!(
                        "poll {:?}: the main stage has not closed it {} s after its time; closing it here without a result",
                        poll.def.name,
                        shards::MAIN_STAGE_SILENT.as_secs()
                    );
                    poll.gave_up = true;
                }
                false
            }
        };
        if close {
            poll.closing = true;
            submit.write(SubmitCommand::local(VenueCommand::ClosePoll { poll: poll.def.name.clone() }));
        }
        // Closed here, not logged: this shard's log is the main stage's.
        if let Some(poll) = audience.poll.take_if(|p| p.gave_up) {
            shards::close_on_shard(&link, audience, None, poll, now);
        }
    }
    let due: Vec<String> = audience
        .democracy
        .iter()
        .filter(|(_, v)| now >= v.closes_at + delay || v.result.is_some())
        .map(|(k, _)| k.clone())
        .collect();
    for rule_name in due {
        let Some(rule) = scene.rules.iter().find(|r| r.name == rule_name) else {
            audience.democracy.remove(&rule_name);
            continue;
        };
        let RuleMode::Democracy { min_votes, min_share, .. } = &rule.mode else { continue };
        let Some(vote) = audience.democracy.get_mut(&rule_name) else { continue };
        let id = format!("rule:{rule_name}");
        let mut members = audience.members.len() as u64;
        match vote.summed {
            Summed::No => {}
            // Every live shard's last count first, or what there is after a grace.
            Summed::Decides => {
                let counting = counting.as_deref_mut();
                let waiting = counting.as_ref().map_or_else(Vec::new, |c| c.book.still_counting(&id, vote.opened, now));
                let grace = shards::grace(counting.as_deref(), delay, now);
                let late = now >= vote.closes_at + delay + grace;
                if !waiting.is_empty() && !late {
                    vote.closing = true;
                    continue;
                }
                if !waiting.is_empty() {
                    warn!(
                        "the vote on !{}: decided without the last count of shard(s) {} (none within {:.1} s); their earlier counts are in",
                        command_word(rule),
                        waiting.join(", "),
                        grace.as_secs_f32()
                    );
                }
                if let Some(counting) = counting {
                    members += counting.book.members(now);
                    shards::count_vote_elsewhere(&counting.book, &id, vote);
                }
            }
            // The main stage decides; the shard shows its result, and the winner's command
            // arrives through the log.
            Summed::Follows => {
                vote.closing = true;
                let silent = now >= vote.closes_at + delay + shards::MAIN_STAGE_SILENT;
                if vote.result.is_none() && !silent {
                    continue;
                }
                if vote.result.is_none() {
                    warn!(
                        "the vote on !{}: the main stage has not decided it {} s after its time; closing it here without a result",
                        command_word(rule),
                        shards::MAIN_STAGE_SILENT.as_secs()
                    );
                }
                if let Some(vote) = audience.democracy.remove(&rule_name) {
                    audience.finished_runs.insert(rule_name.clone(), vote.opened);
                    shards::announce_vote_close(&link, &id, &format!("!{}", command_word(rule)), &vote);
                }
                continue;
            }
        }
        let Some(vote) = audience.democracy.remove(&rule_name) else { continue };
        let words = vote.words();
        let counts: Vec<u64> = words.iter().map(|(_, n)| *n).collect();
        let outcome = outcome_of(&counts, vote.voters(), *min_votes, *min_share, members);
        if vote.summed == Summed::Decides
            && let Some(counting) = counting.as_deref_mut()
        {
            counting.send_vote_totals(&id, &vote, &words, Some(&outcome), now);
        }
        let _ = link.hub.broadcast.send(
            tally_view(&id, &format!("!{}", command_word(rule)), &words, "close", Duration::ZERO, &outcome)
                .to_json()
                .into(),
        );
        let Outcome::Winner(i) = outcome else {
            let _ = link.hub.broadcast.send(
                ServerMessage::Notice { text: format!("the vote on !{} did not reach its quorum", command_word(rule)) }
                    .to_json()
                    .into(),
            );
            continue;
        };
        let word = words[i].0.clone();
        // The winning word is read like a command's word: through `values` or colour names.
        let line = format!("!{} {word}", command_word(rule));
        let Ok(Some(mut fired)) =
            match_chat(std::slice::from_ref(rule), &line, |p| params.get(p).map(|(d, _)| &d.kind))
        else {
            continue;
        };
        fired.text = word;
        let crowd: UserId = format!("vote:{rule_name}").into();
        let name: Arc<str> = Arc::from("the audience");
        let from = Firing { user: &crowd, name: &name, line: 0, received: now, staff: true, meta: ChatMeta::default() };
        if let Some(command) = fire(audience, shared, &params, scene, &from, fired, now) {
            submit.write(command);
        }
    }
    let energy_rules: Vec<&AudienceRuleDef> =
        scene.rules.iter().filter(|r| matches!(r.trigger, TriggerDef::CrowdEnergy { .. })).collect();
    if energy_rules.is_empty() {
        return;
    }
    let Some(mut meter) = audience.energy.take() else { return };
    for rule in energy_rules {
        let TriggerDef::CrowdEnergy { above, window, across_shards } = rule.trigger else { continue };
        let window = Duration::from_secs_f32(window.max(0.25));
        let mut rate = meter.rate(now, window);
        if across_shards == AcrossShards::Sum {
            // The main stage measures every instance's crowd; its effect reaches the shards
            // through the log.
            if reporting.is_some() {
                continue;
            }
            rate += counting.as_deref_mut().map_or(0.0, |c| c.energy(now, window));
        }
        let armed = audience.energy_armed.entry(rule.name.clone()).or_insert(true);
        if energy_edge(armed, rate, above) {
            let crowd: UserId = format!("energy:{}", rule.name).into();
            let name: Arc<str> = Arc::from("the crowd");
            let fired = Fired { rule, value: rule.value.clone().unwrap_or_default(), text: String::new() };
            let from =
                Firing { user: &crowd, name: &name, line: 0, received: now, staff: false, meta: ChatMeta::default() };
            if let Some(command) = fire(audience, shared, &params, scene, &from, fired, now) {
                submit.write(command);
            }
        }
    }
    audience.energy = Some(meter);
}

/// Why a democracy vote's word is refused (see [`valid_word`]).
const BAD_WORD: &str = "vote with one word of at most 64 bytes";

/// Whether a democracy rule's votes are summed across overflow shards.
fn summed_rule(rule: &AudienceRuleDef) -> bool {
    matches!(rule.mode, RuleMode::Democracy { across_shards: AcrossShards::Sum, .. })
}

fn command_word(rule: &AudienceRuleDef) -> &str {
    match &rule.trigger {
        TriggerDef::Command(c) => c,
        _ => &rule.name,
    }
}

/// Starts the next queued effect of each mutex group whose effect is over.
fn release_mutex_queues(mut audience: ResMut<Audience>, mut submit: MessageWriter<SubmitCommand>) {
    let now = Instant::now();
    let audience = &mut *audience;
    for group in audience.groups.values_mut() {
        if group.busy_until.is_some_and(|t| t > now) {
            continue;
        }
        if let Some((command, effect, hold)) = group.queue.pop_front() {
            group.busy_until = Some(now + hold);
            audience.pending.push_back(effect);
            submit.write(command);
        }
    }
}

/// Opens and closes polls as their commands are applied, and fires the rules of a result.
fn follow_poll_commands(
    link: Res<AudienceLink>,
    mut audience: ResMut<Audience>,
    mut applied: MessageReader<AppliedCommand>,
    scene: Option<Res<CurrentScene>>,
    params: Res<VenueParams>,
    mut submit: MessageWriter<SubmitCommand>,
    mut counting: Option<ResMut<shards::ShardCounting>>,
    mut reporting: Option<ResMut<shards::ShardReporting>>,
) {
    let Some(scene) = scene else {
        applied.clear();
        return;
    };
    let scene = &scene.0;
    let now = Instant::now();
    let audience = &mut *audience;
    // A summed poll staff closed early, once every live shard's last count is in.
    let due = audience.poll.as_ref().is_some_and(|p| {
        p.decide_by.is_some_and(|t| now >= t || shards::still_counting(counting.as_deref(), p, now).is_empty())
    });
    if due && let Some(open) = audience.poll.take() {
        close_poll(&link, audience, counting.as_deref_mut(), &params, scene, &mut submit, open, now);
    }
    for entry in applied.read() {
        match &entry.command {
            VenueCommand::OpenPoll { poll } => {
                let Some(def) = scene.polls.iter().find(|p| &p.name == poll) else { continue };
                // A summed poll the main stage opened is decided there; one a shard's own
                // moderators open is the shard's.
                let from_main = entry.followed || entry.restored;
                let summed = match (def.across_shards, counting.is_some(), reporting.is_some() && from_main) {
                    (AcrossShards::Sum, true, _) => Summed::Decides,
                    (AcrossShards::Sum, _, true) => Summed::Follows,
                    _ => Summed::No,
                };
                // A shard that caught up with a summed poll after it opened closes it when the
                // main stage does (by the log's clock: the machines' clocks may differ, so only
                // for a poll that opened before this shard came).
                let seconds = Duration::from_secs_f32(def.seconds.max(1.0));
                let since = match summed {
                    Summed::Follows if entry.restored => {
                        Duration::from_millis(shards::wall_ms().saturating_sub(entry.time_ms)).min(seconds)
                    }
                    _ => Duration::ZERO,
                };
                // A summed poll staff closed early and still waiting for shards' counts is
                // decided now, before the next poll takes its place.
                if let Some(waiting) = audience.poll.take_if(|p| p.decide_by.is_some()) {
                    close_poll(&link, audience, counting.as_deref_mut(), &params, scene, &mut submit, waiting, now);
                }
                let open = OpenPoll {
                    tally: Tally::new(def.options.iter().map(|o| o.id.clone())),
                    closes_at: (now + seconds).checked_sub(since).unwrap_or(now),
                    def: def.clone(),
                    closing: false,
                    opened: entry.seq,
                    summed,
                    elsewhere: Vec::new(),
                    elsewhere_voters: 0,
                    result: None,
                    gave_up: false,
                    decide_by: None,
                };
                let _ = link
                    .hub
                    .broadcast
                    .send(poll_view(&open, "open", now, &Outcome::NoQuorum { votes: 0, needed: 1 }).to_json().into());
                let choices: Vec<String> =
                    def.options.iter().map(|o| format!("!vote {} ({})", o.id, o.label)).collect();
                let _ = link.hub.platform_out.send(
                    format!(
                        "Poll: {} Type {} within {:.0} s.",
                        def.question,
                        choices.join(" or "),
                        def.seconds.max(1.0)
                    )
                    .into(),
                );
                audience.poll = Some(open);
                audience.state_dirty = true;
            }
            VenueCommand::ClosePoll { poll } => {
                let Some(open) = audience.poll.take_if(|p| &p.def.name == poll) else { continue };
                match open.summed {
                    // Restored from the log: that poll was decided when it closed, and its
                    // outcome's commands are in the log too.
                    _ if entry.restored => {}
                    // The main stage decides; its outcome arrives through the log.
                    Summed::Follows => shards::close_on_shard(&link, audience, reporting.as_deref_mut(), open, now),
                    // Closed early by staff while shards are still counting: decided when their
                    // last counts are in (or the grace is over), below.
                    Summed::Decides
                        if !open.closing && !shards::still_counting(counting.as_deref(), &open, now).is_empty() =>
                    {
                        let mut open = open;
                        open.closing = true;
                        open.decide_by = Some(now + crate::model::shard::CLOSING_GRACE);
                        audience.poll = Some(open);
                    }
                    _ => close_poll(&link, audience, counting.as_deref_mut(), &params, scene, &mut submit, open, now),
                }
            }
            _ => {}
        }
    }
}

/// Closes a poll: decides it (a summed poll on every instance's votes), tells everyone, and
/// fires the rules of its result.
fn close_poll(
    link: &AudienceLink,
    audience: &mut Audience,
    counting: Option<&mut shards::ShardCounting>,
    params: &VenueParams,
    scene: &SceneFile,
    submit: &mut MessageWriter<SubmitCommand>,
    mut open: OpenPoll,
    now: Instant,
) {
    let deciding = counting.filter(|_| open.summed == Summed::Decides);
    let outcome = shards::decide(deciding, &mut open, audience.members.len());
    let _ = link.hub.broadcast.send(poll_view(&open, "close", now, &outcome).to_json().into());
    audience.state_dirty = true;
    let counts = open.counts();
    let result = match &outcome {
        Outcome::Winner(i) => format!(
            "Poll closed: {} wins ({} of {} votes).",
            open.def.options[*i].label,
            counts[*i],
            counts.iter().sum::<u64>()
        ),
        _ => "Poll closed without a result: too few votes.".to_owned(),
    };
    let _ = link.hub.platform_out.send(format!("{} {result}", open.def.question).into());
    let Outcome::Winner(i) = outcome else {
        let _ = link.hub.broadcast.send(
            ServerMessage::Notice { text: format!("the poll {:?} did not reach its quorum", open.def.question) }
                .to_json()
                .into(),
        );
        return;
    };
    let poll = &open.def.name;
    let winner = &open.def.options[i].id;
    let crowd: UserId = format!("poll:{poll}").into();
    let name: Arc<str> = Arc::from("the audience");
    for fired in match_poll_outcome(&scene.rules, poll, winner) {
        let from = Firing { user: &crowd, name: &name, line: 0, received: now, staff: true, meta: ChatMeta::default() };
        if let Some(command) = fire(audience, &link.hub, params, scene, &from, fired, now) {
            submit.write(command);
        }
    }
}

/// Tells the moderators which of their commands were applied (with the sequence number the
/// log holds it under: it is on disk by now) or refused, and why.
fn answer_moderators(
    link: Res<AudienceLink>,
    mut applied: MessageReader<DurableCommand>,
    mut rejected: MessageReader<RejectedCommand>,
) {
    for entry in applied.read() {
        if let CommandOrigin::Moderator(by) = &entry.origin {
            let message =
                serde_json::json!({"type": "applied", "by": by, "seq": entry.seq, "command": entry.command.summary()});
            let _ = link.hub.moderators.send(message.to_string().into());
        }
    }
    for refusal in rejected.read() {
        if let CommandOrigin::Moderator(by) = &refusal.origin {
            let message = serde_json::json!({"type": "refused", "by": by, "command": refusal.command.summary(), "message": refusal.error.to_string()});
            let _ = link.hub.moderators.send(message.to_string().into());
        }
    }
}

/// Tells everyone what the audience changed, once the command is really applied. Many members
/// firing the same rule in one frame make one announcement, with the count of the others.
fn announce_applied_effects(
    link: Res<AudienceLink>,
    mut audience: ResMut<Audience>,
    mut applied: MessageReader<DurableCommand>,
    mut rejected: MessageReader<RejectedCommand>,
) {
    let shared = &link.hub;
    let mut announcements: Vec<(ServerMessage, u32)> = Vec::new();
    for entry in applied.read() {
        let CommandOrigin::Audience(user) = &entry.origin else { continue };
        let Some(pending) = audience.take_pending(user, &entry.command) else { continue };
        shared.metrics.commands_applied.fetch_add(1, Ordering::Relaxed);
        shared.metrics.observe_latency(pending.received.elapsed(), audience.frames_since(pending.received));
        let (action, param, value) = match &entry.command {
            VenueCommand::SetParam { name, value } => ("set", name.clone(), value.to_string()),
            VenueCommand::AnimateParam { name, to, .. } => ("animate", name.clone(), to.to_string()),
            VenueCommand::SpawnEffect { effect, .. } => ("spawn", String::new(), effect.clone()),
            VenueCommand::ShowText { text, .. } => ("show", String::new(), text.clone()),
            _ => continue,
        };
        // Chat platforms hear back about their own members' effects (within their post limits).
        if pending.user.starts_with("twitch:") || pending.user.starts_with("irc:") {
            let _ = shared.platform_out.send(format!("{} → !{} {value}", pending.by, pending.rule).into());
        }
        let effect = ServerMessage::Effect {
            param,
            value,
            by: pending.by.to_string(),
            rule: Some(pending.rule),
            action: action.into(),
            others: 0,
        };
        let same_rule = |m: &ServerMessage| matches!((m, &effect), (ServerMessage::Effect { rule: a, .. }, ServerMessage::Effect { rule: b, .. }) if a == b);
        match announcements.iter_mut().find(|(m, _)| same_rule(m)) {
            Some((last, others)) => {
                *last = effect;
                *others += 1;
            }
            None => announcements.push((effect, 0)),
        }
        audience.state_dirty = true;
    }
    for (mut effect, n) in announcements {
        if let ServerMessage::Effect { others, .. } = &mut effect {
            *others = n;
        }
        let _ = link.hub.broadcast.send(effect.to_json().into());
    }
    for refusal in rejected.read() {
        if let CommandOrigin::Audience(user) = &refusal.origin {
            audience.take_pending(user, &refusal.command);
            shared.send_to(user, &ServerMessage::error("not_allowed", refusal.error.to_string()));
        }
    }
}

/// Sends the open poll's and democracy votes' counts as they change, a few times a second.
fn broadcast_poll_tally(link: Res<AudienceLink>, mut audience: ResMut<Audience>) {
    let now = Instant::now();
    if audience.last_tally.is_some_and(|t| now.duration_since(t) < TALLY_INTERVAL) || !audience.tally_dirty {
        return;
    }
    audience.last_tally = Some(now);
    audience.tally_dirty = false;
    // The open poll also travels in `state`, for members who join while it runs.
    audience.state_dirty = true;
    let pending = Outcome::NoQuorum { votes: 0, needed: 1 };
    if let Some(poll) = audience.poll.as_ref().filter(|p| !p.closing) {
        let _ = link.hub.broadcast.send(poll_view(poll, "tally", now, &pending).to_json().into());
    }
    for (rule, vote) in audience.democracy.iter().filter(|(_, v)| !v.closing) {
        let view = tally_view(
            &format!("rule:{rule}"),
            &format!("!{rule}"),
            &vote.words(),
            "tally",
            vote.closes_at.saturating_duration_since(now),
            &pending,
        );
        let _ = link.hub.broadcast.send(view.to_json().into());
    }
}

/// Sends the venue's state to everyone when it changes, at most every [`STATE_INTERVAL`].
fn broadcast_state(
    link: Res<AudienceLink>,
    mut audience: ResMut<Audience>,
    params: Res<VenueParams>,
    scene: Option<Res<CurrentScene>>,
) {
    if params.is_changed() {
        audience.state_dirty = true;
    }
    let now = Instant::now();
    // The crowd's energy as pages show it (one decimal) goes out when it moves: rising with the
    // chat, falling back after it (the venue wakes for that, `keep_awake`).
    let recent = audience.last_lively.is_some_and(|t| now.duration_since(t) <= SHOWN_ENERGY_WINDOW + STATE_INTERVAL)
        || audience.shown_energy != 0.0;
    let energy = match audience.energy.as_mut() {
        Some(meter) if recent => (meter.rate(now, SHOWN_ENERGY_WINDOW) * 10.0).round() / 10.0,
        _ => 0.0,
    };
    if energy != audience.shown_energy {
        audience.state_dirty = true;
    }
    if !audience.state_dirty || audience.last_state.is_some_and(|t| now.duration_since(t) < STATE_INTERVAL) {
        return;
    }
    audience.state_dirty = false;
    audience.last_state = Some(now);
    audience.shown_energy = energy;
    let pending = Outcome::NoQuorum { votes: 0, needed: 1 };
    let state = ServerMessage::State {
        params: params.iter_settled().map(|(d, v)| (d.name.clone(), v.to_string())).collect::<BTreeMap<_, _>>(),
        poll: audience.poll.as_ref().map(|p| Box::new(poll_view(p, "tally", now, &pending))),
        audience: audience.members.len() as u32,
        paused: audience.paused,
        energy,
        windows: window_views(&audience.windows, scene.as_deref().map(|s| &*s.0), now),
    };
    let json: Arc<str> = state.to_json().into();
    *link.hub.state_json.write().expect("state snapshot") = json.clone();
    let _ = link.hub.broadcast.send(json);
}

/// Keeps moderators' view of the approval queue current.
fn send_approval_queue(link: Res<AudienceLink>, mut audience: ResMut<Audience>) {
    if !audience.approvals_dirty {
        return;
    }
    audience.approvals_dirty = false;
    let items: Vec<serde_json::Value> = audience
        .approvals
        .iter()
        .map(|a| serde_json::json!({"id": a.id, "user": &*a.user, "from": &*a.by, "text": a.text, "rule": a.rule}))
        .collect();
    let json: Arc<str> = serde_json::json!({"type": "approvals", "items": items}).to_string().into();
    *link.hub.approvals_json.write().expect("approvals snapshot") = json.clone();
    let _ = link.hub.moderators.send(json);
}

/// What a rule lets the audience do, as they would type it: `!petales`, `🌹`.
fn allows(rule: &AudienceRuleDef) -> String {
    match &rule.trigger {
        TriggerDef::Command(c) => format!("!{c}"),
        TriggerDef::Reaction(e) => e.clone(),
        _ => rule.name.clone(),
    }
}

/// The open windows for the `state` message: one per label, with what it allows and the
/// seconds left on stage.
fn window_views(windows: &HashMap<String, Window>, scene: Option<&SceneFile>, now: Instant) -> Vec<WindowView> {
    let mut views: Vec<WindowView> = Vec::new();
    let mut names: Vec<&String> = windows.keys().collect();
    names.sort();
    for name in names {
        let window = &windows[name];
        // Closed on stage; kept a while for the stream's viewers, not counted down.
        if window.closes_at.is_some_and(|t| t <= now) {
            continue;
        }
        let allowed = scene.and_then(|s| s.rules.iter().find(|r| &r.name == name)).map_or_else(|| name.clone(), allows);
        let closes_in =
            window.closes_at.map(|t| (t.saturating_duration_since(now).as_secs_f32() * 10.0).round() / 10.0);
        match views.iter_mut().find(|v| v.label == window.label && v.closes_in == closes_in) {
            Some(view) => view.allows.push(allowed),
            None => views.push(WindowView { label: window.label.clone(), allows: vec![allowed], closes_in }),
        }
    }
    views
}

/// Opens and closes interaction windows as their commands are applied, and closes those whose
/// time is up (for the stream's viewers too).
fn follow_window_commands(
    mut audience: ResMut<Audience>,
    mut applied: MessageReader<AppliedCommand>,
    scene: Option<Res<CurrentScene>>,
) {
    let now = Instant::now();
    let audience = &mut *audience;
    let rules_named = |scene: &SceneFile, names: &[String]| -> Vec<String> {
        scene
            .rules
            .iter()
            .filter(|r| r.closed && names.iter().any(|n| &r.name == n || (!r.group.is_empty() && &r.group == n)))
            .map(|r| r.name.clone())
            .collect()
    };
    for entry in applied.read() {
        let Some(scene) = scene.as_deref() else { continue };
        match &entry.command {
            VenueCommand::OpenWindow { rules, seconds, label } => {
                let closes_at = seconds.map(|s| now + Duration::from_secs_f32(s));
                for name in rules_named(&scene.0, rules) {
                    audience.windows.insert(name, Window { label: label.clone(), closes_at });
                }
                audience.state_dirty = true;
            }
            // Closed on stage now; kept for the stream's viewers as long as they are behind.
            VenueCommand::CloseWindow { rules } => {
                for name in rules_named(&scene.0, rules) {
                    if let Some(window) = audience.windows.get_mut(&name) {
                        window.closes_at = Some(window.closes_at.map_or(now, |t| t.min(now)));
                    }
                }
                audience.state_dirty = true;
            }
            // A new venue: its rules start as its file says.
            VenueCommand::LoadScene { .. } => {
                audience.windows.clear();
                audience.state_dirty = true;
            }
            _ => {}
        }
    }
    let delay = audience.stream_delay;
    let before = audience.windows.len();
    audience.windows.retain(|_, w| w.closes_at.is_none_or(|t| now < t + delay));
    if audience.windows.len() != before {
        audience.state_dirty = true;
    }
}

/// The show's surtitles to every member, as they change; each page shows its member's language.
fn broadcast_surtitles(
    link: Res<AudienceLink>,
    surtitles: Res<crate::engine::show::ShowSurtitles>,
    scene: Option<Res<CurrentScene>>,
) {
    if !surtitles.is_changed() || surtitles.is_added() {
        return;
    }
    let order = scene.map(|s| s.0.venue.languages.clone()).unwrap_or_default();
    let message = ServerMessage::Surtitle { texts: surtitles.texts.clone(), order };
    let _ = link.hub.broadcast.send(message.to_json().into());
}
