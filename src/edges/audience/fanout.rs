//! What the venue says to everyone, gathered. One task per edge reads the hub's broadcast and,
//! at most once per interval, hands every member's connection one frame: the messages of the
//! interval in order, of several `state` messages only what changed since the last one sent,
//! each encoded once and shared by every connection (a reference count, not a copy). A
//! connection writes a frame's messages together (one WebSocket message each, one write to the
//! socket), so a member wakes once per interval however busy the venue is, which is what the
//! fan-out costs: wake-ups and writes per member, not bytes. The interval grows with the crowd
//! so that the edge sends at most a set number of frames a second in all: a larger crowd sees
//! others' words a little later instead of costing the edge more. Members are in groups, each
//! handed the frame at its own moment of the interval, so that the writes are spread and a
//! member's own reply (through its mailbox) never waits behind a burst of everyone's.
//!
//! A member may leave out what its page does not show (`hello`'s `mute`): its connection skips
//! those messages of each frame. What concerns one member (their own chat line, errors,
//! notices) goes through their mailbox at once, not through here.

use std::collections::VecDeque;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::{Map, Value};
use tokio::sync::broadcast;
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::Utf8Bytes;

use crate::engine::audience::hub::AudienceHub;

/// Frames a slow member may fall behind before it skips to the newest and is sent the whole
/// state again.
const FRAME_CAPACITY: usize = 64;
/// A gathered frame is sent early once its messages reach this size.
const MAX_FRAME_BYTES: usize = 64 * 1024;

/// What a member chose not to receive (`hello`'s `mute`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Muted(u8);

/// What may be muted: a name in `hello`'s `mute` and its bit.
const MUTABLE: [(&str, u8); 2] = [("chat", 1), ("effects", 2)];

impl Muted {
    /// Reads `hello`'s `mute` list; an unknown name is refused with the names there are.
    pub fn parse(names: &[String]) -> Result<Self, String> {
        let mut bits = 0;
        for name in names {
            match MUTABLE.iter().find(|(n, _)| n == name) {
                Some((_, bit)) => bits |= bit,
                None => {
                    let known: Vec<&str> = MUTABLE.iter().map(|(n, _)| *n).collect();
                    return Err(format!("cannot mute {name:?}; these can be muted: {}", known.join(", ")));
                }
            }
        }
        Ok(Self(bits))
    }

    fn hides(self, kind: Kind) -> bool {
        match kind {
            Kind::Chat => self.0 & 1 != 0,
            Kind::Effect => self.0 & 2 != 0,
            Kind::State | Kind::Other => false,
        }
    }
}

/// One interval's messages for everyone, each encoded once and shared by every connection.
#[derive(Debug)]
pub struct Frame {
    messages: Vec<(Kind, Utf8Bytes)>,
}

impl Frame {
    /// What a member who muted `muted` is sent of this frame, in order: written together,
    /// one WebSocket message each.
    pub fn for_member(&self, muted: Muted) -> impl Iterator<Item = &Utf8Bytes> {
        self.messages.iter().filter(move |(kind, _)| !muted.hides(*kind)).map(|(_, text)| text)
    }
}

/// What a message is, for muting and for gathering states.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Chat,
    Effect,
    State,
    Other,
}

fn kind_of(json: &str) -> Kind {
    let Some(rest) = json.strip_prefix(r#"{"type":""#) else { return Kind::Other };
    // A retraction goes to everyone: a member who muted chat still has their own lines.
    if rest.starts_with(r#"chat""#) {
        Kind::Chat
    } else if rest.starts_with(r#"effect""#) {
        Kind::Effect
    } else if rest.starts_with(r#"state""#) {
        Kind::State
    } else {
        Kind::Other
    }
}

/// The messages of one interval, in order; of several states only the last keeps its place.
#[derive(Debug, Default)]
struct Gathered {
    items: Vec<(Kind, Arc<str>)>,
    bytes: usize,
    state_at: Option<usize>,
}

impl Gathered {
    fn push(&mut self, json: Arc<str>) {
        let kind = kind_of(&json);
        if kind == Kind::State
            && let Some(i) = self.state_at.take()
        {
            let (_, old) = self.items.remove(i);
            self.bytes -= old.len();
        }
        if kind == Kind::State {
            self.state_at = Some(self.items.len());
        }
        self.bytes += json.len();
        self.items.push((kind, json));
    }

    fn is_empty(&self) -> bool {
        self.items.is_empty()
    }
}

/// The state as members last received it, to send only what changed.
#[derive(Debug, Default)]
struct SentState {
    fields: Map<String, Value>,
}

impl SentState {
    /// The `state` message with only the fields that differ from what was sent (each whole),
    /// or `None` when nothing changed; remembers `json` as sent. A state that is not a JSON
    /// object goes as it is.
    fn delta(&mut self, json: &str) -> Option<String> {
        let Ok(Value::Object(fields)) = serde_json::from_str::<Value>(json) else { return Some(json.to_owned()) };
        let mut out = String::from(r#"{"type":"state""#);
        let mut changed = false;
        for (key, value) in &fields {
            if key == "type" || self.fields.get(key) == Some(value) {
                continue;
            }
            changed = true;
            // Keys and values come from serde_json: writing them back cannot fail.
            out.push(',');
            out.push_str(&serde_json::to_string(key).unwrap_or_default());
            out.push(':');
            out.push_str(&serde_json::to_string(value).unwrap_or_default());
        }
        out.push('}');
        self.fields = fields;
        changed.then_some(out)
    }
}

/// Members are spread over this many groups, each written to at its own moment of the
/// interval: a frame's writes are spread over the interval instead of one burst that a member's
/// own reply would wait behind.
const GROUPS: usize = 16;

/// The gathered frames of one edge, and the state a joining member starts from.
#[derive(Debug)]
pub struct Fanout {
    /// Per group, the whole state as last sent to it and the frames after it, changed together
    /// so that a member who joins between two frames misses nothing and applies nothing twice.
    groups: Mutex<Vec<Group>>,
    next_group: std::sync::atomic::AtomicUsize,
    pace: Pace,
    /// The hub's broadcast, listened to from the start, until the task takes it.
    updates: Mutex<Option<broadcast::Receiver<Arc<str>>>>,
}

/// Where a member listens: its group of the fan-out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GroupId(usize);

/// How often frames go: at most once per `interval`, and at most `frames_per_second` member
/// frames a second in all (a crowd of N waits at least N / `frames_per_second` seconds).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Pace {
    /// The shortest time between two frames.
    pub interval: Duration,
    /// Frames a second the edge sends at most, all members together (0: no bound).
    pub frames_per_second: u32,
}

impl Pace {
    /// The time between two frames for a crowd of `members`.
    pub fn interval_for(&self, members: usize) -> Duration {
        let crowd = match self.frames_per_second {
            0 => Duration::ZERO,
            rate => Duration::from_secs_f64(members as f64 / f64::from(rate)),
        };
        self.interval.max(crowd)
    }
}

#[derive(Debug)]
struct Group {
    state: Utf8Bytes,
    frames: broadcast::Sender<Arc<Frame>>,
}

/// A frame waiting for its group's moment.
#[derive(Debug)]
struct Due {
    at: Instant,
    group: usize,
    frame: Option<Arc<Frame>>,
    state: Option<Utf8Bytes>,
}

impl Fanout {
    /// Gathers at the `pace` given (an interval of zero: as soon as the task runs, taking
    /// whatever waits), starting from the hub's latest state.
    pub fn new(hub: &AudienceHub, pace: Pace) -> Self {
        // Listening before reading the state: nothing said in between is missed.
        let updates = hub.broadcast.subscribe();
        let state: Utf8Bytes = (&**hub.state_json.read().expect("state snapshot")).into();
        let groups =
            (0..GROUPS).map(|_| Group { state: state.clone(), frames: broadcast::channel(FRAME_CAPACITY).0 }).collect();
        Self {
            groups: Mutex::new(groups),
            next_group: std::sync::atomic::AtomicUsize::new(0),
            pace,
            updates: Mutex::new(Some(updates)),
        }
    }

    /// A new member's start: its group, the whole state as its group has it now, and the
    /// frames after it.
    pub fn join(&self) -> (GroupId, Utf8Bytes, broadcast::Receiver<Arc<Frame>>) {
        let group = GroupId(self.next_group.fetch_add(1, Ordering::Relaxed) % GROUPS);
        let (state, frames) = self.rejoin(group);
        (group, state, frames)
    }

    /// A member's start again in its group (after it fell behind).
    pub fn rejoin(&self, group: GroupId) -> (Utf8Bytes, broadcast::Receiver<Arc<Frame>>) {
        let groups = self.groups.lock().expect("fanout");
        let group = &groups[group.0 % GROUPS];
        (group.state.clone(), group.frames.subscribe())
    }

    /// Reads the hub's broadcast until the venue closes, and hands out what it says. Runs
    /// once: a second call returns at once.
    pub async fn run(self: Arc<Self>, hub: Arc<AudienceHub>) {
        let Some(mut updates) = self.updates.lock().expect("fanout").take() else { return };
        let mut gathered = Gathered::default();
        let mut sent = SentState::default();
        if let Ok(Value::Object(fields)) = serde_json::from_str::<Value>(self.rejoin(GroupId(0)).0.as_str()) {
            sent.fields = fields;
        }
        let mut waiting: VecDeque<Due> = VecDeque::new();
        let mut closing = hub.closing.subscribe();
        let mut interval = self.pace.interval;
        // Nothing sent yet: the first message goes at once.
        let mut last: Option<Instant> = None;
        loop {
            let due = (!gathered.is_empty()).then(|| last.map_or_else(Instant::now, |t| t + interval));
            let next_group = waiting.front().map(|d| d.at);
            tokio::select! {
                // Frames due to their groups first, so that a flood of updates cannot hold them;
                // then what waits is taken before a frame goes: a burst becomes one frame.
                biased;
                () = tokio::time::sleep_until(next_group.unwrap_or_else(Instant::now)), if next_group.is_some() => {
                    let now = Instant::now();
                    while waiting.front().is_some_and(|d| d.at <= now) {
                        if let Some(due) = waiting.pop_front() {
                            self.hand_out(due);
                        }
                    }
                    continue;
                }
                update = updates.recv() => match update {
                    Ok(json) => {
                        gathered.push(json);
                        if gathered.bytes < MAX_FRAME_BYTES {
                            continue;
                        }
                    }
                    // Messages lost here may have been states: send the whole state again.
                    Err(broadcast::error::RecvError::Lagged(n)) => {
                        hub.metrics.dropped_outbound.fetch_add(n, Ordering::Relaxed);
                        gathered.push(hub.state_json.read().expect("state snapshot").clone());
                        sent.fields.clear();
                        continue;
                    }
                    Err(broadcast::error::RecvError::Closed) => {
                        self.finish(gathered, &mut sent, &hub, waiting);
                        return;
                    }
                },
                () = tokio::time::sleep_until(due.unwrap_or_else(Instant::now)), if due.is_some() => {}
                // The venue closes: what was gathered goes, then nothing more.
                _ = closing.changed() => if *closing.borrow() {
                    self.finish(gathered, &mut sent, &hub, waiting);
                    return;
                } else {
                    continue
                },
            }
            let now = Instant::now();
            last = Some(now);
            self.queue(std::mem::take(&mut gathered), &mut sent, &hub, &mut waiting, now, interval);
            interval = self.pace.interval_for(self.members());
        }
    }

    /// Gathers a frame and queues it for every group, each at its moment of `spread` from
    /// `now`. What still waits for its group goes first (an early frame, or an interval that
    /// shrank), so that each group's frames stay in order and the first group gets this one at
    /// once.
    fn queue(
        &self,
        gathered: Gathered,
        sent: &mut SentState,
        hub: &AudienceHub,
        waiting: &mut VecDeque<Due>,
        now: Instant,
        spread: Duration,
    ) {
        let (frame, state) = gather(gathered, sent);
        if let Some(frame) = &frame {
            hub.metrics.fanout_frames.fetch_add(1, Ordering::Relaxed);
            hub.metrics.fanout_messages.fetch_add(frame.messages.len() as u64, Ordering::Relaxed);
        }
        for due in waiting.drain(..) {
            self.hand_out(due);
        }
        for group in 0..GROUPS {
            let at = now + spread.mul_f64(group as f64 / GROUPS as f64);
            waiting.push_back(Due { at, group, frame: frame.clone(), state: state.clone() });
        }
        if let Some(first) = waiting.pop_front() {
            self.hand_out(first);
        }
    }

    /// Hands a frame to its group, and the state it leaves them with.
    fn hand_out(&self, due: Due) {
        let mut groups = self.groups.lock().expect("fanout");
        let group = &mut groups[due.group];
        if let Some(state) = due.state {
            group.state = state;
        }
        if let Some(frame) = due.frame {
            // No receiver (nobody connected) is not an error.
            let _ = group.frames.send(frame);
        }
    }

    /// Members listening now, every group together.
    fn members(&self) -> usize {
        self.groups.lock().expect("fanout").iter().map(|g| g.frames.receiver_count()).sum()
    }

    /// The venue closes: every group gets what waits and what was gathered, at once.
    fn finish(&self, gathered: Gathered, sent: &mut SentState, hub: &AudienceHub, mut waiting: VecDeque<Due>) {
        self.queue(gathered, sent, hub, &mut waiting, Instant::now(), Duration::ZERO);
        for due in waiting {
            self.hand_out(due);
        }
    }
}

/// The frame of what was gathered (`None`: nothing to send, the state unchanged) and the whole
/// state members have after it, if a state came.
fn gather(gathered: Gathered, sent: &mut SentState) -> (Option<Arc<Frame>>, Option<Utf8Bytes>) {
    let state_at = gathered.state_at;
    let mut whole_state = None;
    let mut messages = Vec::with_capacity(gathered.items.len());
    for (i, (kind, json)) in gathered.items.into_iter().enumerate() {
        if state_at == Some(i) {
            whole_state = Some(Utf8Bytes::from(&*json));
            if let Some(delta) = sent.delta(&json) {
                messages.push((kind, delta.into()));
            }
        } else {
            messages.push((kind, Utf8Bytes::from(&*json)));
        }
    }
    ((!messages.is_empty()).then(|| Arc::new(Frame { messages })), whole_state)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame_of(jsons: &[&str], sent: &mut SentState) -> Option<Arc<Frame>> {
        let mut g = Gathered::default();
        for j in jsons {
            g.push((*j).into());
        }
        gather(g, sent).0
    }

    /// A venue's hub, kept open while the link lives (dropping it closes the hub).
    fn link() -> crate::engine::audience::hub::AudienceLink {
        crate::engine::audience::hub::AudienceLink::new(
            crate::engine::audience::hub::ModerationPolicy {
                blocklist: crate::model::audience::moderation::Blocklist::default_fr_en(),
                limits: crate::model::audience::protocol::Limits { max_chars: 280, messages_per_10s: 10 },
            },
            16,
        )
    }

    fn texts(frame: &Frame, muted: Muted) -> Vec<String> {
        frame.for_member(muted).map(|b| b.as_str().to_owned()).collect()
    }

    #[test]
    fn messages_keep_their_order_with_only_the_last_state() {
        let mut sent = SentState::default();
        let frame = frame_of(
            &[
                r#"{"type":"state","audience":1,"energy":0.0}"#,
                r#"{"type":"chat","id":1,"from":"Ana","text":"hi"}"#,
                r#"{"type":"state","audience":2,"energy":0.0}"#,
                r#"{"type":"effect","param":"fog","value":"0.5","by":"Ana","rule":null,"action":"set","others":0}"#,
            ],
            &mut sent,
        )
        .unwrap();
        let all: Vec<Value> =
            texts(&frame, Muted::default()).iter().map(|t| serde_json::from_str(t).unwrap()).collect();
        let types: Vec<&str> = all.iter().map(|m| m["type"].as_str().unwrap()).collect();
        assert_eq!(types, ["chat", "state", "effect"]);
        assert_eq!(all[1]["audience"], 2);
    }

    #[test]
    fn a_state_carries_only_what_changed_and_nothing_when_nothing_did() {
        let mut sent = SentState::default();
        let first =
            frame_of(&[r#"{"type":"state","params":{"fog":"0.1"},"audience":1,"paused":false}"#], &mut sent).unwrap();
        assert_eq!(
            texts(&first, Muted::default()),
            [r#"{"type":"state","audience":1,"params":{"fog":"0.1"},"paused":false}"#]
        );
        let second =
            frame_of(&[r#"{"type":"state","params":{"fog":"0.1"},"audience":2,"paused":false}"#], &mut sent).unwrap();
        assert_eq!(texts(&second, Muted::default()), [r#"{"type":"state","audience":2}"#]);
        assert!(
            frame_of(&[r#"{"type":"state","params":{"fog":"0.1"},"audience":2,"paused":false}"#], &mut sent).is_none()
        );
    }

    #[test]
    fn muted_members_get_what_they_did_not_mute_and_every_member_shares_the_bytes() {
        let mut sent = SentState::default();
        let frame = frame_of(
            &[
                r#"{"type":"chat","id":1,"from":"Ana","text":"hi"}"#,
                r#"{"type":"effect","param":"fog"}"#,
                r#"{"type":"retract","id":1}"#,
                r#"{"type":"poll","phase":"tally"}"#,
            ],
            &mut sent,
        )
        .unwrap();
        let chat = Muted::parse(&["chat".into()]).unwrap();
        assert_eq!(
            texts(&frame, chat),
            [
                r#"{"type":"effect","param":"fog"}"#,
                r#"{"type":"retract","id":1}"#,
                r#"{"type":"poll","phase":"tally"}"#
            ]
        );
        let both = Muted::parse(&["chat".into(), "effects".into()]).unwrap();
        assert_eq!(texts(&frame, both), [r#"{"type":"retract","id":1}"#, r#"{"type":"poll","phase":"tally"}"#]);
        let a = frame.for_member(Muted::default()).last().unwrap().as_str().as_ptr();
        let b = frame.for_member(both).last().unwrap().as_str().as_ptr();
        assert_eq!(a, b, "one encoding for every member");
    }

    #[test]
    fn the_interval_grows_with_the_crowd_beyond_the_frames_a_second() {
        let pace = Pace { interval: Duration::from_millis(250), frames_per_second: 20_000 };
        assert_eq!(pace.interval_for(100), Duration::from_millis(250));
        assert_eq!(pace.interval_for(10_000), Duration::from_millis(500));
        assert_eq!(pace.interval_for(100_000), Duration::from_secs(5));
        assert_eq!(Pace { frames_per_second: 0, ..pace }.interval_for(100_000), Duration::from_millis(250));
    }

    #[test]
    fn unknown_mutes_are_refused_by_name() {
        let e = Muted::parse(&["chat".into(), "state".into()]).unwrap_err();
        assert!(e.contains("\"state\"") && e.contains("chat, effects"), "{e}");
    }

    #[tokio::test]
    async fn a_burst_becomes_one_frame_and_a_joiner_starts_from_the_state_sent() {
        let link = link();
        let hub = link.hub.clone();
        let fanout = Arc::new(Fanout::new(&hub, Pace { interval: Duration::from_millis(200), frames_per_second: 0 }));
        // Said before the task runs: not lost.
        hub.broadcast.send(r#"{"type":"chat","id":1,"from":"A","text":"one"}"#.into()).unwrap();
        let (_, _, mut frames) = fanout.join();
        tokio::spawn(fanout.clone().run(hub.clone()));
        let first = frames.recv().await.unwrap();
        assert!(texts(&first, Muted::default())[0].contains("one"));
        // The burst after it waits for the interval and goes as one frame.
        for i in 2..=5 {
            hub.broadcast.send(format!(r#"{{"type":"chat","id":{i},"from":"A","text":"x"}}"#).into()).unwrap();
        }
        hub.broadcast.send(r#"{"type":"state","audience":7}"#.into()).unwrap();
        let burst = frames.recv().await.unwrap();
        assert_eq!(burst.for_member(Muted::default()).count(), 5);
        assert_eq!(fanout.rejoin(GroupId(0)).0.as_str(), r#"{"type":"state","audience":7}"#);
        assert_eq!(hub.metrics.fanout_frames.load(Ordering::Relaxed), 2);
    }

    #[tokio::test]
    async fn the_groups_are_written_to_spread_over_the_interval_each_in_order() {
        let link = link();
        let hub = link.hub.clone();
        let interval = Duration::from_millis(320);
        let fanout = Arc::new(Fanout::new(&hub, Pace { interval, frames_per_second: 0 }));
        let mut members: Vec<_> = (0..GROUPS).map(|_| fanout.join().2).collect();
        tokio::spawn(fanout.clone().run(hub.clone()));
        let start = Instant::now();
        for i in 1..=3 {
            hub.broadcast.send(format!(r#"{{"type":"chat","id":{i},"from":"A","text":"x"}}"#).into()).unwrap();
        }
        let first = members[0].recv().await.unwrap();
        let first_at = start.elapsed();
        let last = members[GROUPS - 1].recv().await.unwrap();
        let last_at = start.elapsed();
        assert_eq!(texts(&first, Muted::default()), texts(&last, Muted::default()));
        assert!(
            last_at >= interval.mul_f64(0.8) && first_at < interval / 2,
            "the first group at {first_at:?}, the last at {last_at:?}"
        );
        // Every group gets every frame, in order.
        hub.broadcast.send(r#"{"type":"chat","id":4,"from":"A","text":"y"}"#.into()).unwrap();
        for member in &mut members[1..GROUPS - 1] {
            assert!(texts(&member.recv().await.unwrap(), Muted::default())[0].contains("\"id\":1"));
            assert!(texts(&member.recv().await.unwrap(), Muted::default())[0].contains("\"id\":4"));
        }
    }
}
