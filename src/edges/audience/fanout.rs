//! What the venue says to everyone, gathered. One task per edge reads the hub's broadcast and,
//! at most once per interval, writes every member one frame: the messages of the interval in
//! order (one WebSocket message each), of several `state` messages only what changed since the
//! last one sent. The frame's bytes are encoded once for each choice of what to mute and shared
//! by every member (a reference count, not a copy), and the task writes them into each member's
//! socket itself ([`Outlet`]): one `write` per member and interval, and no member's task woken,
//! however busy the venue is. That write is what the fan-out costs, not the bytes. The interval grows with the crowd
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
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use bytes::Bytes;
use serde_json::{Map, Value};
use tokio::sync::broadcast;
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::Utf8Bytes;

use super::outlet::{Muted, Offered, Outlet, encode_text};
use crate::engine::audience::hub::AudienceHub;

/// A gathered frame is sent early once its messages reach this size.
const MAX_FRAME_BYTES: usize = 64 * 1024;

/// One interval's messages for everyone, each encoded once and shared by every connection.
#[derive(Debug)]
pub struct Frame {
    messages: Vec<(Kind, Utf8Bytes)>,
    /// The frame's bytes on the wire for each choice of what to mute, made when first needed.
    encoded: [OnceLock<Option<Bytes>>; Muted::CHOICES],
}

impl Frame {
    fn new(messages: Vec<(Kind, Utf8Bytes)>) -> Self {
        Self { messages, encoded: Default::default() }
    }

    /// What a member who muted `muted` is sent of this frame, in order.
    #[cfg(test)]
    pub fn for_member(&self, muted: Muted) -> impl Iterator<Item = &Utf8Bytes> {
        self.messages.iter().filter(move |(kind, _)| !kind.hidden_by(muted)).map(|(_, text)| text)
    }

    /// The frame's bytes for a member who muted `muted` (their WebSocket messages one after
    /// the other), or `None` when none is for them.
    pub fn encoded(&self, muted: Muted) -> Option<Bytes> {
        self.encoded[muted.index()]
            .get_or_init(|| {
                let mut out = Vec::new();
                for (_, text) in self.messages.iter().filter(|(kind, _)| !kind.hidden_by(muted)) {
                    encode_text(&mut out, text.as_bytes());
                }
                (!out.is_empty()).then(|| out.into())
            })
            .clone()
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

impl Kind {
    fn hidden_by(self, muted: Muted) -> bool {
        match self {
            Kind::Chat => muted.hides(Muted::CHAT),
            Kind::Effect => muted.hides(Muted::EFFECTS),
            Kind::State | Kind::Other => false,
        }
    }
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

/// A message's bytes on the wire.
fn encoded(text: &str) -> Bytes {
    let mut out = Vec::with_capacity(text.len() + 4);
    encode_text(&mut out, text.as_bytes());
    out.into()
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
    /// Per group, its members and the whole state as last written to them, changed together
    /// so that a member who joins between two frames misses nothing and applies nothing twice.
    groups: Vec<Mutex<Group>>,
    next_group: std::sync::atomic::AtomicUsize,
    pace: Pace,
    /// The hub's broadcast and its closing, listened to from the start, until the task takes
    /// them (a venue closed before the task first runs is seen).
    updates: Mutex<Option<(broadcast::Receiver<Arc<str>>, tokio::sync::watch::Receiver<bool>)>>,
    /// The venue closed: every member was written its last frames and told.
    finished: std::sync::atomic::AtomicBool,
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
    /// The whole state, as JSON and on the wire.
    state: Utf8Bytes,
    state_frame: Bytes,
    members: Vec<Arc<Outlet>>,
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
        let updates = (hub.broadcast.subscribe(), hub.closing.subscribe());
        let state: Utf8Bytes = (&**hub.state_json.read().expect("state snapshot")).into();
        let state_frame = encoded(&state);
        let groups = (0..GROUPS)
            .map(|_| Mutex::new(Group { state: state.clone(), state_frame: state_frame.clone(), members: Vec::new() }))
            .collect();
        Self {
            groups,
            next_group: std::sync::atomic::AtomicUsize::new(0),
            pace,
            updates: Mutex::new(Some(updates)),
            finished: std::sync::atomic::AtomicBool::new(false),
        }
    }

    /// A new member, who muted `muted`: its socket is written the whole state as its group has
    /// it now, then every frame after it.
    pub fn join(&self, outlet: &Arc<Outlet>, muted: Muted) -> GroupId {
        let group = GroupId(self.next_group.fetch_add(1, Ordering::Relaxed) % GROUPS);
        let mut members = self.groups[group.0].lock().expect("fanout");
        outlet.join(muted, &members.state_frame);
        members.members.push(outlet.clone());
        // Checked with the group held: `finish` either sees this member or set this first.
        if self.finished.load(Ordering::SeqCst) {
            outlet.end();
        }
        group
    }

    /// A member who leaves: nothing more is written to it, and its socket is let go.
    pub fn leave(&self, group: GroupId, outlet: &Arc<Outlet>) {
        outlet.close();
        self.groups[group.0].lock().expect("fanout").members.retain(|m| !Arc::ptr_eq(m, outlet));
    }

    /// The whole state as a group has it now.
    #[cfg(test)]
    fn state_of(&self, group: GroupId) -> Utf8Bytes {
        self.groups[group.0].lock().expect("fanout").state.clone()
    }

    /// Reads the hub's broadcast until the venue closes, and hands out what it says. Runs
    /// once: a second call returns at once.
    pub async fn run(self: Arc<Self>, hub: Arc<AudienceHub>) {
        let Some((mut updates, mut closing)) = self.updates.lock().expect("fanout").take() else { return };
        let mut gathered = Gathered::default();
        let mut sent = SentState::default();
        let first = self.groups[0].lock().expect("fanout").state.clone();
        if let Ok(Value::Object(fields)) = serde_json::from_str::<Value>(first.as_str()) {
            sent.fields = fields;
        }
        let mut waiting: VecDeque<Due> = VecDeque::new();
        if *closing.borrow_and_update() {
            self.finish(Gathered::default(), &mut sent, &hub, VecDeque::new());
            return;
        }
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
                            self.hand_out(due, &hub);
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
            self.hand_out(due, hub);
        }
        for group in 0..GROUPS {
            let at = now + spread.mul_f64(group as f64 / GROUPS as f64);
            waiting.push_back(Due { at, group, frame: frame.clone(), state: state.clone() });
        }
        if let Some(first) = waiting.pop_front() {
            self.hand_out(first, hub);
        }
    }

    /// Writes a frame to its group's members, and keeps the state it leaves them with.
    fn hand_out(&self, due: Due, hub: &AudienceHub) {
        let mut group = self.groups[due.group].lock().expect("fanout");
        if let Some(frame) = due.frame {
            let mut skipped = 0;
            let group = &mut *group;
            group.members.retain(|member| !member.is_closed());
            for member in &group.members {
                if member.offer(|muted| frame.encoded(muted), &group.state_frame) == Offered::Skipped {
                    skipped += 1;
                }
            }
            hub.metrics.dropped_outbound.fetch_add(skipped, Ordering::Relaxed);
        }
        if let Some(state) = due.state {
            group.state_frame = encoded(&state);
            group.state = state;
        }
    }

    /// Members listening now, every group together.
    fn members(&self) -> usize {
        self.groups.iter().map(|g| g.lock().expect("fanout").members.len()).sum()
    }

    /// The venue closes: every group gets what waits and what was gathered, at once, and every
    /// member is told to go.
    fn finish(&self, gathered: Gathered, sent: &mut SentState, hub: &AudienceHub, mut waiting: VecDeque<Due>) {
        self.queue(gathered, sent, hub, &mut waiting, Instant::now(), Duration::ZERO);
        for due in waiting {
            self.hand_out(due, hub);
        }
        self.finished.store(true, Ordering::SeqCst);
        for group in &self.groups {
            for member in &group.lock().expect("fanout").members {
                member.end();
            }
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
    ((!messages.is_empty()).then(|| Arc::new(Frame::new(messages))), whole_state)
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

    /// A member connected over loopback: its outlet on the edge's side, joined to `fanout`,
    /// and a WebSocket client reading what the edge writes.
    async fn member(fanout: &Fanout, muted: Muted) -> (Arc<Outlet>, Client) {
        member_reading_into(fanout, muted, None).await
    }

    /// As [`member`], the client's socket receive buffer set to `buffer` bytes.
    async fn member_reading_into(fanout: &Fanout, muted: Muted, buffer: Option<u32>) -> (Arc<Outlet>, Client) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let socket = tokio::net::TcpSocket::new_v4().unwrap();
        if let Some(buffer) = buffer {
            socket.set_recv_buffer_size(buffer).unwrap();
        }
        let client = socket.connect(listener.local_addr().unwrap()).await.unwrap();
        let (server, _) = listener.accept().await.unwrap();
        let outlet = Arc::new(Outlet::new(server, Arc::default()));
        fanout.join(&outlet, muted);
        let client = tokio_tungstenite::WebSocketStream::from_raw_socket(
            client,
            tokio_tungstenite::tungstenite::protocol::Role::Client,
            None,
        )
        .await;
        (outlet, client)
    }

    type Client = tokio_tungstenite::WebSocketStream<tokio::net::TcpStream>;

    async fn next_text(client: &mut Client) -> String {
        use futures_util::StreamExt;
        let message = tokio::time::timeout(Duration::from_secs(5), client.next()).await.expect("a message in time");
        message.unwrap().unwrap().into_text().unwrap().as_str().to_owned()
    }

    #[tokio::test]
    async fn a_burst_becomes_one_frame_and_a_joiner_starts_from_the_state_sent() {
        let link = link();
        let hub = link.hub.clone();
        let fanout = Arc::new(Fanout::new(&hub, Pace { interval: Duration::from_millis(200), frames_per_second: 0 }));
        // Said before the task runs: not lost.
        hub.broadcast.send(r#"{"type":"chat","id":1,"from":"A","text":"one"}"#.into()).unwrap();
        let (_outlet, mut client) = member(&fanout, Muted::default()).await;
        let (_muted, mut muted_client) = member(&fanout, Muted::parse(&["chat".into()]).unwrap()).await;
        tokio::spawn(fanout.clone().run(hub.clone()));
        assert!(next_text(&mut client).await.starts_with(r#"{"type":"state""#), "the whole state first");
        assert!(next_text(&mut client).await.contains("one"));
        // The burst after it waits for the interval and goes as one frame.
        for i in 2..=5 {
            hub.broadcast.send(format!(r#"{{"type":"chat","id":{i},"from":"A","text":"x"}}"#).into()).unwrap();
        }
        hub.broadcast.send(r#"{"type":"state","audience":7}"#.into()).unwrap();
        for i in 2..=5 {
            assert!(next_text(&mut client).await.contains(&format!(r#""id":{i}"#)));
        }
        assert_eq!(next_text(&mut client).await, r#"{"type":"state","audience":7}"#);
        assert_eq!(fanout.state_of(GroupId(0)).as_str(), r#"{"type":"state","audience":7}"#);
        assert_eq!(hub.metrics.fanout_frames.load(Ordering::Relaxed), 2);
        // The member who muted chat: the state, and none of the lines.
        assert!(next_text(&mut muted_client).await.starts_with(r#"{"type":"state""#));
        assert_eq!(next_text(&mut muted_client).await, r#"{"type":"state","audience":7}"#);
    }

    #[tokio::test]
    async fn the_groups_are_written_to_spread_over_the_interval_each_in_order() {
        let link = link();
        let hub = link.hub.clone();
        let interval = Duration::from_millis(320);
        let fanout = Arc::new(Fanout::new(&hub, Pace { interval, frames_per_second: 0 }));
        let mut members = Vec::new();
        for _ in 0..GROUPS {
            let (outlet, mut client) = member(&fanout, Muted::default()).await;
            next_text(&mut client).await;
            members.push((outlet, client));
        }
        tokio::spawn(fanout.clone().run(hub.clone()));
        let start = Instant::now();
        for i in 1..=3 {
            hub.broadcast.send(format!(r#"{{"type":"chat","id":{i},"from":"A","text":"x"}}"#).into()).unwrap();
        }
        let first = next_text(&mut members[0].1).await;
        let first_at = start.elapsed();
        let last = next_text(&mut members[GROUPS - 1].1).await;
        let last_at = start.elapsed();
        assert_eq!(first, last);
        assert!(
            last_at >= interval.mul_f64(0.8) && first_at < interval,
            "the first group at {first_at:?}, the last at {last_at:?}"
        );
        // Every group gets every frame, in order.
        hub.broadcast.send(r#"{"type":"chat","id":4,"from":"A","text":"y"}"#.into()).unwrap();
        for (_, client) in &mut members[1..GROUPS - 1] {
            for id in 1..=3 {
                assert!(next_text(client).await.contains(&format!(r#""id":{id}"#)));
            }
            assert!(next_text(client).await.contains(r#""id":4"#));
        }
        // A member who leaves is written nothing more, and let go.
        let (outlet, _) = &members[1];
        fanout.leave(GroupId(1), outlet);
        assert_eq!(Arc::strong_count(outlet), 1);
        assert_eq!(fanout.members(), GROUPS - 1);
    }

    #[tokio::test]
    async fn a_member_who_stops_reading_skips_frames_and_gets_the_whole_state_when_it_catches_up() {
        let link = link();
        let hub = link.hub.clone();
        let fanout = Arc::new(Fanout::new(&hub, Pace { interval: Duration::ZERO, frames_per_second: 0 }));
        let (outlet, mut client) = member_reading_into(&fanout, Muted::default(), Some(16 << 10)).await;
        next_text(&mut client).await;
        let runner = tokio::spawn(fanout.clone().run(hub.clone()));
        // Far more than the socket (its send buffer grows up to the kernel's tcp_wmem maximum)
        // and the outlet hold, the client reading nothing.
        let wmem_max: usize = std::fs::read_to_string("/proc/sys/net/ipv4/tcp_wmem")
            .ok()
            .and_then(|s| s.split_whitespace().last().and_then(|n| n.parse().ok()))
            .unwrap_or(4 << 20);
        let line = "x".repeat(60_000);
        let total = 2 * (super::super::outlet::MAX_WAITING + wmem_max + (1 << 20)) / line.len();
        for i in 0..total {
            hub.broadcast.send(format!(r#"{{"type":"chat","id":{i},"text":"{line}"}}"#).into()).unwrap();
            // Time for the fan-out to take each (else it would be the hub's queue that skips).
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert!(hub.metrics.dropped_outbound.load(Ordering::Relaxed) > 0, "frames skipped");
        assert!(outlet.waiting_bytes() <= super::super::outlet::MAX_WAITING);
        // Reading again, while the state changes and a line follows now and then: what waited,
        // in order, then — before the first line that finds room — the state as it is.
        let drain = async {
            loop {
                outlet.woken().await;
                outlet.drain_waiting().await.unwrap();
            }
        };
        let speak = async {
            hub.broadcast.send(r#"{"type":"state","audience":3}"#.into()).unwrap();
            loop {
                tokio::time::sleep(Duration::from_millis(50)).await;
                hub.broadcast.send(r#"{"type":"chat","id":-7,"text":"after"}"#.into()).unwrap();
            }
        };
        let reader = async {
            let (mut last_id, mut received, mut state) = (-1i64, 0, None);
            loop {
                let text = next_text(&mut client).await;
                let message: Value = serde_json::from_str(&text).unwrap();
                if message["type"] == "state" {
                    state = Some(message["audience"].clone());
                    continue;
                }
                let id = message["id"].as_i64().unwrap();
                if id == -7 {
                    break;
                }
                assert!(id > last_id, "in order: {id} after {last_id}");
                last_id = id;
                received += 1;
            }
            assert!(received < total, "{received} lines of {total}: some were skipped");
            assert_eq!(state, Some(Value::from(3)), "the state as it is, before the line after");
        };
        tokio::select! {
            () = drain => unreachable!(),
            () = speak => unreachable!(),
            () = reader => {}
        }
        runner.abort();
    }
}
