//! The fuzz targets: one function per parser of the model layer that takes outside input.
//! Each one must never panic, and checks what must hold of what it accepts (a cleaned text is
//! clean, a command reads back as itself). The binaries in `src/bin/` hand AFL's inputs to
//! them; `scripts/fuzz.sh TARGET SECONDS` runs one, and their seed corpora are in `corpus/`.

use std::path::Path;
use std::sync::OnceLock;

use parvis_model::assets_root::AssetsRoot;
use parvis_model::audience::moderation::{Blocklist, moderate, moderate_name};
use parvis_model::audience::protocol::parse_client_message;
use parvis_model::audience::rules::match_chat;
use parvis_model::command::{LoggedCommand, read_command_log};
use parvis_model::params::StageParams;
use parvis_model::scene::format::SceneFile;
use parvis_model::scene::validate::{parse_scene, validate_scene};

/// The names of the targets, for the script and the smoke test.
pub const TARGETS: [&str; 13] = [
    "audience_frame",
    "moderation",
    "rules",
    "irc_line",
    "scene",
    "command_log",
    "gltf",
    "osc",
    "subtitles",
    "vmc",
    "poses",
    "nats",
    "websocket",
];

/// Runs the target named `name` on `data`.
pub fn run(name: &str, data: &[u8]) {
    match name {
        "audience_frame" => audience_frame(data),
        "moderation" => moderation(data),
        "rules" => rules(data),
        "irc_line" => irc_line(data),
        "scene" => scene(data),
        "command_log" => command_log(data),
        "gltf" => gltf(data),
        "osc" => osc(data),
        "subtitles" => subtitles(data),
        "vmc" => vmc(data),
        "poses" => poses(data),
        "nats" => nats(data),
        "websocket" => websocket(data),
        other => panic!("no fuzz target named {other:?}"),
    }
}

fn text(data: &[u8]) -> Option<&str> {
    std::str::from_utf8(data).ok()
}

fn blocklist() -> &'static Blocklist {
    static LIST: OnceLock<Blocklist> = OnceLock::new();
    LIST.get_or_init(Blocklist::default_fr_en)
}

fn built_in() -> &'static (SceneFile, StageParams) {
    static SCENE: OnceLock<(SceneFile, StageParams)> = OnceLock::new();
    SCENE.get_or_init(|| {
        let scene = parse_scene(parvis_model::scene::DEFAULT_SCENE).expect("the built-in scene parses");
        let params = StageParams::from_scene(&scene);
        (scene, params)
    })
}

/// A member's bytes after the WebSocket handshake, read as frames: whatever the bytes, and
/// wherever they are cut between reads (the first byte says where), the reader returns the
/// same messages and the same error, never holds more than a frame, and text is UTF-8.
pub fn websocket(data: &[u8]) {
    use parvis_model::websocket::{FrameReader, Incoming, MAX_CONTROL};
    const MAX: usize = 4096;
    let Some((&cut, data)) = data.split_first() else { return };
    let read = |chunks: &[&[u8]]| {
        let mut reader = FrameReader::new(MAX);
        let mut messages = Vec::new();
        for chunk in chunks {
            reader.feed(chunk);
            loop {
                match reader.message() {
                    Ok(Some(message)) => messages.push(message),
                    Ok(None) => break,
                    Err(e) => return (messages, Some(e)),
                }
            }
            // What waits is at most one frame: its header, and a payload within the limits.
            assert!(reader.pending() <= 14 + MAX, "{} bytes pending", reader.pending());
        }
        (messages, None)
    };
    let whole = read(&[data]);
    let at = usize::from(cut).min(data.len());
    let (a, b) = data.split_at(at);
    assert_eq!(read(&[a, b]), whole, "cut at {at}");
    for message in &whole.0 {
        match message {
            Incoming::Text(text) => assert!(text.len() <= MAX),
            Incoming::Binary(len) => assert!(*len <= MAX),
            Incoming::Ping(payload) => assert!(payload.len() <= MAX_CONTROL),
            Incoming::Pong | Incoming::Close(_) => {}
        }
    }
    if let Some(e) = whole.1 {
        assert!(matches!(e.close_code(), 1002 | 1007 | 1009), "{e}");
    }
    if let Ok(head) = std::str::from_utf8(data) {
        let _ = parvis_model::websocket::handshake_key(head);
    }
}

/// An audience WebSocket frame (JSON) from a member.
pub fn audience_frame(data: &[u8]) {
    if let Some(text) = text(data) {
        let _ = parse_client_message(text);
    }
}

/// Moderation of chat text and display names: what is accepted is clean, within its length,
/// and moderating it again changes nothing.
pub fn moderation(data: &[u8]) {
    let Some(text) = text(data) else { return };
    if let Ok(clean) = moderate(text, 280, blocklist()) {
        assert!(clean.chars().count() <= 280, "{clean:?}");
        assert!(
            !clean.chars().any(|c| c.is_control() || matches!(c, '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}')),
            "{clean:?}"
        );
        assert_eq!(moderate(&clean, 280, blocklist()).as_deref(), Ok(clean.as_str()), "moderation is idempotent");
    }
    let _ = moderate_name(text, 32, blocklist());
}

/// A chat line against the built-in venue's rules.
pub fn rules(data: &[u8]) {
    let Some(text) = text(data) else { return };
    let (scene, params) = built_in();
    if let Ok(Some(fired)) = match_chat(&scene.rules, text, |p| params.get(p).map(|(d, _)| &d.kind)) {
        assert!(scene.rules.iter().any(|r| std::ptr::eq(r, fired.rule)));
        let _ = params.parse_value(&fired.rule.param, &fired.value);
    }
}

/// An IRC line as a Twitch server sends it.
pub fn irc_line(data: &[u8]) {
    let Some(text) = text(data) else { return };
    if let Ok(message) = parvis_model::irc::parse_line(text) {
        let _ = parvis_model::irc::twitch_event(&message);
    }
}

/// A scene file, parsed and then validated against an empty assets root.
pub fn scene(data: &[u8]) {
    let Some(text) = text(data) else { return };
    if let Ok(scene) = parse_scene(text) {
        let _ = validate_scene(&scene, text, &empty_root());
    }
}

/// A command log: what reads reads back as itself once written again.
pub fn command_log(data: &[u8]) {
    if let Ok(entries) = read_command_log(data) {
        for entry in entries {
            let json = serde_json::to_string(&entry).expect("a logged command serialises");
            let again: LoggedCommand = serde_json::from_str(&json).expect("and reads back");
            assert_eq!(again, entry);
        }
    }
}

/// A glTF document (JSON or GLB) checked as a scene's model, in an empty assets root.
pub fn gltf(data: &[u8]) {
    let root = empty_root();
    let _ = parvis_model::scene::models::check_model_bytes(data, &root.dir().join("models"), &root);
}

fn empty_root() -> AssetsRoot {
    static ROOT: OnceLock<AssetsRoot> = OnceLock::new();
    ROOT.get_or_init(|| {
        let dir = std::env::temp_dir().join("parvis-fuzz-assets");
        let _ = std::fs::create_dir_all(dir.join("models"));
        AssetsRoot::new(Path::new(&dir))
    })
    .clone()
}

/// An OSC packet from the control room: decoded within its bounds, each message turned into a
/// command for the built-in venue or refused; what decodes encodes back to the same messages.
pub fn osc(data: &[u8]) {
    let Ok(messages) = parvis_model::osc::decode(data) else { return };
    let (_, params) = built_in();
    for message in &messages {
        if let Ok(Some(command)) = parvis_model::osc::command_for(message, params, Some("evening")) {
            assert!(
                command.numbers_are_finite()
                    || matches!(command, parvis_model::command::VenueCommand::Transport { .. })
            );
        }
    }
    // NaN never equals itself: compare what encodes and decodes again, not the input.
    let again = parvis_model::osc::decode(&parvis_model::osc::encode(messages.clone()));
    if !messages.is_empty() && format!("{messages:?}").find("NaN").is_none() {
        assert_eq!(again.as_ref().ok(), Some(&messages), "a decoded packet encodes back to itself");
    }
}

/// A surtitle file, read as SubRip and as WebVTT: what reads is in order, never overlapping,
/// each cue ending after it starts.
pub fn subtitles(data: &[u8]) {
    let Some(text) = text(data) else { return };
    for vtt in [false, true] {
        if let Ok(cues) = parvis_model::subtitles::parse(text, vtt) {
            for pair in cues.windows(2) {
                assert!(pair[0].end <= pair[1].start + 1e-9, "overlapping cues accepted");
            }
            assert!(cues.iter().all(|c| c.end > c.start), "a cue ends before it starts");
        }
    }
}

fn unit(q: &[f32; 4]) -> bool {
    (q.iter().map(|v| v * v).sum::<f32>().sqrt() - 1.0).abs() < 1e-3
}

/// A motion-capture packet (VMC over OSC): what is accepted can be drawn: finite, within
/// reach of the stage, rotations of unit length, blendshape values from 0 to 1.
pub fn vmc(data: &[u8]) {
    use parvis_model::performer::{MAX_OFFSET_M, VmcReader};
    let Ok(messages) = parvis_model::osc::decode(data) else { return };
    let packet = VmcReader::default().read(&messages);
    let update = &packet.update;
    for pose in update.root.iter().chain(update.bones.iter().map(|(_, p)| p)) {
        assert!(pose.position.iter().all(|v| v.is_finite() && v.abs() <= MAX_OFFSET_M), "{pose:?}");
        assert!(pose.rotation.iter().all(|v| v.is_finite()) && unit(&pose.rotation), "{pose:?}");
    }
    assert!(update.blends.iter().all(|(_, v)| (0.0..=1.0).contains(v)));
}

/// What arrives from NATS (anyone allowed on a subject may publish anything there): an audience
/// edge's batch, each of its events then checked as the venue checks it; a logged command; a
/// snapshot. What is accepted is within bounds, and nothing from the audience subject is staff.
pub fn nats(data: &[u8]) {
    use parvis_model::audience::event::AudienceEvent;
    use parvis_model::net::{EdgeBatch, LogSnapshot, logged_from_message};
    if let Ok(batch) = EdgeBatch::from_message("s", data) {
        let now = std::time::Instant::now();
        for event in batch.events {
            if let Ok(event) = event.clone().into_event(&batch.edge, false, now) {
                let staff = matches!(event, AudienceEvent::Moderator { .. } | AudienceEvent::Chat { staff: true, .. });
                assert!(!staff, "a staff event accepted from the audience subject: {event:?}");
            }
            let _ = event.into_event(&batch.edge, true, now);
        }
    }
    if let Ok(entry) = logged_from_message("s", data) {
        assert!(entry.seq > 0 && entry.command.numbers_are_finite(), "{entry:?}");
    }
    if let Ok(snapshot) = LogSnapshot::from_message("s", data) {
        assert!(snapshot.entries.iter().all(|e| e.seq <= snapshot.seq));
    }
    // A shard's report, read as the authority reads it, twice (a first and a later one), into
    // its book: sums never overflow.
    use parvis_model::shard::{ShardBook, ShardReport, ShardTotals};
    if let Ok(report) = ShardReport::from_message("parvis.v.shard.report.a", data) {
        assert_eq!(report.shard, "a");
        let mut book = ShardBook::default();
        let now = std::time::Instant::now();
        for p in &report.polls {
            assert!(p.counts.len() <= 8);
        }
        assert_eq!(book.take(report.clone(), now), Some(0), "a first report brings no energy");
        assert_eq!(book.take(report.clone(), now), Some(0), "the same report again brings none");
        for p in &report.polls {
            let _ = book.counts(&p.poll, p.opened, p.counts.len());
            let _ = book.still_counting(&p.poll, p.opened, now);
        }
        let _ = book.members(now);
    }
    if let Ok(totals) = ShardTotals::from_message("s", data) {
        assert!(totals.others("a").len() == totals.counts.len());
    }
}

/// A performance recording: what reads is finite with unit rotations, and writes back to a
/// file that reads as the same records.
pub fn poses(data: &[u8]) {
    use parvis_model::performer::recording;
    let mut file = recording::MAGIC.to_vec();
    file.extend_from_slice(data);
    let Ok(records) = recording::read(&file) else { return };
    let mut again = recording::MAGIC.to_vec();
    for record in &records {
        assert!(record.time.is_finite());
        if let Some(root) = &record.update.root {
            assert!(
                unit(&root.rotation) && root.position.iter().all(|v| v.is_finite() && v.abs() <= 100.0),
                "{root:?}"
            );
        }
        for (_, pose) in &record.update.bones {
            assert!(unit(&pose.rotation) && pose.position.iter().all(|v| v.is_finite()), "{pose:?}");
        }
        recording::write(&mut again, record);
    }
    let back = recording::read(&again).expect("what was read writes back readable");
    assert_eq!(back.len(), records.len());
}
