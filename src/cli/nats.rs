//! Wiring NATS for `parvis run --nats` (the venue's authority) and `parvis follow` (a render
//! follower): connecting before the venue starts (so a bad URL or credential stops it at once,
//! named), carrying the show on from the stream, then linking the venue to the edge's tasks.

use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{Context, Result, bail};

use super::args::*;
use parvis::app::VenueSetup;
use parvis::edges::nats::{NatsAuth, NatsConfig, NatsNode};
use parvis::engine::audience::shards::plays_on_shards;
use parvis::engine::command::DurableGate;
use parvis::engine::net::{LogFollower, LogPublisher, NetStats, insert_publisher};
use parvis::model::net::{FollowPosition, VenueSubjects, venue_name_from_title};

/// How long a follower waits for its authority's log to hold a venue.
const WAIT_FOR_AUTHORITY: Duration = Duration::from_secs(120);

/// What `prepare` connected, waiting for the venue's app to link it.
struct Session {
    node: NatsNode,
    role: Role,
}

enum Role {
    Authority { snapshot_every: u64 },
    Follower { history: parvis::edges::nats::History },
}

/// Between `prepare` (before the app exists) and `attach_nats` (each way of running builds its
/// own app): one venue per process.
static SESSION: Mutex<Option<Session>> = Mutex::new(None);

/// The venue's name on NATS: `--nats-venue`, else made from the scene's title.
fn venue_name(args: &RunArgs, setup: &VenueSetup) -> String {
    match &args.nats.nats_venue {
        Some(name) => name.clone(),
        None => venue_name_from_title(&setup.scene.venue.title),
    }
}

/// Connects this node (`node`: the client name the server shows) to venue `venue` on the
/// NATS server at `url`, with the credential the environment gives.
pub fn connect(url: &str, ca: Option<&std::path::Path>, venue: &str, node: &str) -> Result<NatsNode> {
    let subjects = VenueSubjects::new(venue)?;
    let auth = NatsAuth::from_env(|k| std::env::var(k).ok())?;
    let config = NatsConfig { url: url.to_owned(), auth, ca: ca.map(ToOwned::to_owned), name: node.to_owned() };
    Ok(NatsNode::connect(&config, subjects)?)
}

/// Connects to NATS if `--nats` asks, before the venue starts: an authority makes its streams
/// and carries on the show they hold; a follower waits for its authority's log and starts from
/// it. Does nothing without `--nats`.
pub fn prepare(args: &RunArgs, setup: &mut VenueSetup) -> Result<()> {
    let Some(url) = &args.nats.nats else { return Ok(()) };
    let name = venue_name(args, setup);
    let role_name = if args.nats.follow { "follower" } else { "authority" };
    let node = connect(url, args.nats.nats_ca.as_deref(), &name, &format!("parvis {role_name} {name}"))?;
    let subjects = node.subjects.clone();
    let shown = parvis::edges::nats::shown_url(url);
    let role = if args.nats.follow {
        let mut history = node.wait_for_history(WAIT_FOR_AUTHORITY)?;
        let applied = history.last_seq;
        if args.nats.shard.is_some() {
            // A shard's audience effects are its own: the main stage's are not restored, but
            // for the outcomes the scene counts across shards (summed polls, crowd energy).
            let mut scene: Option<std::sync::Arc<parvis::model::scene::format::SceneFile>> = None;
            history.entries.retain(|e| {
                if let parvis::model::command::VenueCommand::LoadScene { scene: loaded } = &e.command {
                    scene = Some(std::sync::Arc::new((**loaded).clone()));
                }
                !matches!(e.origin, parvis::model::command::CommandOrigin::Audience(_))
                    || scene.as_deref().is_some_and(|s| plays_on_shards(s, &e.origin))
            });
        }
        let Some(restored) = restore_from(setup, &history) else {
            bail!("{}: the log holds no load_scene, so there is no venue to follow", subjects.log_stream);
        };
        // The restored commands are in the setup now.
        history.entries = Vec::new();
        // The show's clock is the authority's: cues arrive as logged, never fired here.
        setup.replay = true;
        setup.watch = None;
        eprintln!(
            "parvis: following venue {name:?} on {shown}: caught up at #{applied} ({}{restored} commands restored)",
            history.from_snapshot.map_or(String::new(), |s| format!("snapshot at #{s}, "))
        );
        Role::Follower { history }
    } else {
        if args.resume.is_some() {
            bail!(
                "--resume carries a show on from a file; with --nats it carries on from its stream: give one of them"
            );
        }
        node.ensure_streams()?;
        if args.nats.nats_new_log {
            node.new_log()?;
            eprintln!("parvis: emptied the command log of venue {name:?} on {shown} (--nats-new-log)");
        }
        let history = node.history()?;
        if !history.entries.is_empty() {
            let last = history.last_seq;
            let Some(restored) = restore_from(setup, &history) else {
                bail!("{}: the log holds no load_scene, so there is no show to carry on", subjects.log_stream);
            };
            eprintln!(
                "parvis: carrying on the show of venue {name:?} from {}: {restored} commands restored, up to #{last}{}",
                subjects.log_stream,
                history.from_snapshot.map_or(String::new(), |s| format!(" (snapshot at #{s})"))
            );
        }
        // A scene too large for one NATS message could never be logged: refuse it now rather
        // than run a show its followers cannot see.
        let scene_bytes = serde_json::to_vec(&setup.scene).map_or(0, |j| j.len());
        if scene_bytes + 1024 > parvis::model::net::MAX_MESSAGE_BYTES {
            bail!(
                "the scene is {scene_bytes} bytes as a logged command, over what one NATS message carries ({} bytes): it cannot go in the venue's log",
                parvis::model::net::MAX_MESSAGE_BYTES
            );
        }
        eprintln!("parvis: venue {name:?} logs to JetStream stream {} on {shown}", subjects.log_stream);
        Role::Authority { snapshot_every: args.nats.snapshot_every.max(1) }
    };
    *SESSION.lock().expect("session") = Some(Session { node, role });
    Ok(())
}

/// Restores the show `history` holds into `setup`, numbering new commands after the last one
/// the history stands for (a snapshot's own sequence may be a passing command it left out).
fn restore_from(setup: &mut VenueSetup, history: &parvis::edges::nats::History) -> Option<usize> {
    let restored = setup.resume_from(&history.entries)?;
    if let Some(restore) = setup.restore.as_mut() {
        restore.after = restore.after.max(history.last_seq);
    }
    Some(restored)
}

/// Links the venue to NATS if `prepare` connected: starts the publisher or the follower and
/// shows the link's counters on `/metrics`.
pub fn attach_nats(app: &mut bevy::app::App, args: &RunArgs) -> Result<()> {
    let Some(Session { node, role }) = SESSION.lock().expect("session").take() else { return Ok(()) };
    let doorbell = app.world().resource::<parvis::engine::rest::Rest>().doorbell.clone();
    let stats: Arc<NetStats> = node.stats.clone();
    let mut pose_stats = None;
    match role {
        Role::Authority { snapshot_every } => {
            let (outgoing, receiver) = tokio::sync::mpsc::unbounded_channel();
            let gate = DurableGate::default();
            let wants_snapshot = Arc::new(AtomicBool::new(false));
            node.start_publisher(receiver, gate.confirmed.clone(), wants_snapshot.clone(), doorbell.clone());
            let publisher = LogPublisher { outgoing, snapshot_every, wants_snapshot, stats: stats.clone() };
            insert_publisher(app, publisher, gate);
            // The performers' motion, to every follower and shard.
            app.insert_resource(node.start_pose_relay());
        }
        Role::Follower { history } => {
            let (sender, incoming) = tokio::sync::mpsc::channel(4096);
            node.start_follower(&history, sender, doorbell.clone());
            let position = FollowPosition { applied: history.last_seq, rebasing: false };
            let shard = args.nats.shard.is_some();
            app.insert_resource(LogFollower { incoming, position, stats: stats.clone(), shard });
            // The main stage's performers move here as they move there.
            let (poses, link) = parvis::engine::performer::pose_link(doorbell.clone());
            pose_stats = Some(link.stats.clone());
            if let Some(audience) = app.world().get_resource::<parvis::engine::audience::hub::AudienceLink>() {
                audience.hub.metric_sections.write().expect("metric sections").push(link.stats.clone());
            }
            node.follow_poses(poses);
            app.insert_resource(link);
            // A shard reports its audience's counts to the main stage, for what the scene
            // counts across shards.
            if let Some(id) = &args.nats.shard {
                app.insert_resource(node.start_shard_reporting(id.clone(), doorbell.clone()));
            }
        }
    }
    let hub = app.world().get_resource::<parvis::engine::audience::hub::AudienceLink>().map(|l| l.hub.clone());
    if let Some(hub) = &hub {
        hub.metric_sections.write().expect("metric sections").push(stats.clone());
        // An authority's audience includes every edge's (`parvis edge`).
        if !args.nats.follow {
            node.start_audience_authority(hub.clone());
            // And its shards' (`parvis follow --shard`), for what the scene sums across them.
            app.insert_resource(node.start_shard_counting(doorbell.clone()));
        }
    }
    if let Some(addr) = args.nats.metrics {
        let render: Arc<dyn Fn() -> String + Send + Sync> = match hub {
            Some(hub) => Arc::new(move || hub.render_metrics()),
            None => {
                let stats = stats.clone();
                // A follower's performers' counters (poses applied, dropped, unclaimed) too.
                let poses = pose_stats.clone();
                Arc::new(move || {
                    use parvis::engine::audience::hub::MetricsSection;
                    let mut out = String::new();
                    stats.render(&mut out);
                    if let Some(poses) = &poses {
                        poses.render(&mut out);
                    }
                    out
                })
            }
        };
        let bound = node.serve_metrics(addr, render).with_context(|| format!("cannot serve /metrics on {addr}"))?;
        eprintln!("parvis: metrics at http://{bound}/metrics");
    }
    app.insert_resource(node);
    Ok(())
}

/// `parvis edge`: the venue's audience page and WebSockets on this machine, for its authority
/// elsewhere. Runs until interrupted.
pub fn edge(args: RunArgs) -> Result<()> {
    use parvis::edges::audience::server::AudienceServer;
    super::signals::watch();
    // An edge runs no venue app, but its warnings (refused messages, lost peers) reach its
    // operator the same way: Bevy's log plugin installs the process's log output.
    let mut logs = bevy::app::App::new();
    logs.add_plugins(parvis::app::log_plugin());
    let Some(url) = &args.nats.nats else {
        bail!("edge needs --nats URL (or PARVIS_NATS_URL): the NATS server of the venue's authority");
    };
    if args.nats.shard.is_some() {
        bail!("--shard runs a follower as an overflow shard: use it with `parvis follow`");
    }
    let refused = [
        ("--no-audience", args.no_audience),
        ("--twitch", args.twitch.is_some()),
        ("--osc", args.osc.is_some()),
        ("--play", args.play),
        ("--resume", args.resume.is_some()),
        ("--captions-audio", args.captions_audio.is_some()),
    ];
    if let Some((flag, _)) = refused.iter().find(|(_, given)| *given) {
        bail!(
            "an audience edge holds the audience's connections only: {flag} belongs to the venue's authority (`parvis run --nats`)"
        );
    }
    if args.nats.staff_edge && args.mod_token.as_deref().is_none_or(str::is_empty) {
        bail!("--staff-edge passes moderators' requests on: give the moderators' --mod-token too");
    }
    let setup = super::venue::venue_setup(&args.venue)?;
    let name = venue_name(&args, &setup);
    let edge_id = match &args.nats.edge_id {
        Some(id) => id.clone(),
        None => random_edge_id(),
    };
    parvis::model::net::check_edge_id(&edge_id)?;
    let node = connect(url, args.nats.nats_ca.as_deref(), &name, &format!("parvis edge {edge_id} {name}"))?;
    let mut audience = super::audience::audience_config(&args, &setup)?;
    audience.member_prefix = Some(edge_id.clone());
    let mut server = AudienceServer::start(audience).with_context(|| {
        format!("cannot start the audience server on {} (choose another with --audience)", args.audience)
    })?;
    let mut link = server.take_link().context("the audience server's link")?;
    // The hub's input goes to NATS instead of a venue; the link stays here so that closing it
    // says goodbye to every connection.
    let events = std::mem::replace(&mut link.events, tokio::sync::mpsc::channel(1).1);
    server.hub().metric_sections.write().expect("metric sections").push(node.stats.clone());
    node.start_audience_edge(server.hub().clone(), events, edge_id.clone(), args.nats.staff_edge);
    eprintln!(
        "parvis: audience edge {edge_id:?} of venue {name:?}: page at http://{}/ (WebSocket /ws, metrics /metrics), events to {}",
        server.local_addr,
        parvis::edges::nats::shown_url(url)
    );
    while !parvis::app::shutdown::requested() {
        std::thread::sleep(Duration::from_millis(100));
    }
    eprintln!("parvis: audience edge {edge_id:?} closing");
    drop(link);
    server.shutdown(Duration::from_secs(2));
    node.close(Duration::from_secs(1));
    Ok(())
}

/// An edge id nobody chose: `e` and seven hex digits.
fn random_edge_id() -> String {
    use std::hash::{BuildHasher, Hasher};
    let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
    hasher.write_u32(std::process::id());
    format!("e{:07x}", hasher.finish() & 0x0fff_ffff)
}
