//! Scale-out on NATS with the real server: Debian's `nats-server` with JetStream in a
//! temporary folder, started and killed (-9) by these tests on loopback. An authority keeps its
//! command log on JetStream; render followers apply it; every process is killed at some point
//! of a scripted session and the survivors end in the same state, with nothing acknowledged
//! lost. Hostile messages on the venue's subjects and a stream deleted under the venue are
//! survived.

use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use parvis::edges::nats::{NatsAuth, NatsConfig, NatsNode};
use parvis::model::command::{CommandOrigin, LoggedCommand, VenueCommand};
use parvis::model::net::VenueSubjects;
use parvis::model::params::ParamValue;
use tokio_tungstenite::tungstenite::Message;

use super::osc::{Watched, oscsend, root, tool};
use super::temp_dir;

/// A `nats-server` with JetStream on a loopback port, its store in `dir`: killed -9 on drop,
/// started again on the same port and store by [`NatsServer::restart`].
struct NatsServer {
    process: Option<Watched>,
    port: u16,
    dir: PathBuf,
}

impl NatsServer {
    fn start(dir: &Path) -> Self {
        let port = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let mut server = Self { process: None, port, dir: dir.join("jetstream") };
        server.restart();
        server
    }

    fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    fn restart(&mut self) {
        let mut command = Command::new(tool("nats-server"));
        command.args(["-js", "-a", "127.0.0.1", "-p", &self.port.to_string(), "-sd"]).arg(&self.dir);
        let process = Watched::spawn(command, false);
        process.wait_for("Server is ready", Duration::from_secs(20));
        self.process = Some(process);
    }

    fn kill(&mut self) {
        // Watched kills with SIGKILL on drop.
        self.process.take();
    }
}

/// `parvis run` as a venue's authority on NATS with an audience server and moderators.
fn authority_with_audience<'a>(url: &'a str, venue: &'a str) -> Vec<&'a str> {
    let audience = ["--audience", "127.0.0.1:0", "--mod-token", "nats-test-token"];
    [&["run", "--no-render", "--fps", "60"][..], &audience, &["--nats", url, "--nats-venue", venue]].concat()
}

/// A parvis process, and the addresses it said it serves.
fn parvis(args: &[&str]) -> Watched {
    let mut command = Command::new(env!("CARGO_BIN_EXE_parvis"));
    command.args(args).current_dir(root());
    Watched::spawn(command, false)
}

fn said_addr(process: &Watched, before: &str) -> SocketAddr {
    let text = process.wait_for(before, Duration::from_secs(60));
    let rest = text.split(before).nth(1).unwrap();
    rest.split(['/', ' ', '\n']).next().unwrap().parse().unwrap()
}

/// The state fingerprint and log position a node shows on `/metrics`.
fn state(metrics: SocketAddr) -> Option<(String, u64)> {
    let out =
        Command::new("curl").args(["-s", "--max-time", "2", &format!("http://{metrics}/metrics")]).output().ok()?;
    let text = String::from_utf8_lossy(&out.stdout);
    let line = text.lines().find(|l| l.starts_with("parvis_state_info{"))?;
    let hash = line.split("hash=\"").nth(1)?.split('"').next()?.to_owned();
    let seq = line.split("seq=\"").nth(1)?.split('"').next()?.parse().ok()?;
    Some((hash, seq))
}

fn metric(metrics: SocketAddr, name: &str) -> u64 {
    let out =
        Command::new("curl").args(["-s", "--max-time", "2", &format!("http://{metrics}/metrics")]).output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    text.lines()
        .find_map(|l| l.strip_prefix(&format!("{name} ")))
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no {name} in\n{text}"))
}

/// Waits until every node shows the same fingerprint at position `seq`.
fn wait_in_step(nodes: &[(&str, SocketAddr)], seq: u64) -> String {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let states: Vec<(&str, Option<(String, u64)>)> = nodes.iter().map(|(n, m)| (*n, state(*m))).collect();
        let first = states[0].1.clone();
        if first.as_ref().is_some_and(|(_, s)| *s == seq) && states.iter().all(|(_, s)| *s == first) {
            return first.unwrap().0;
        }
        assert!(Instant::now() < deadline, "the nodes never met at #{seq}: {states:?}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// The whole log in the venue's stream, read with parvis's own client.
fn stream_log(url: &str, venue: &str) -> Vec<LoggedCommand> {
    let config = NatsConfig { url: url.into(), auth: NatsAuth::None, ca: None, name: "test".into() };
    let node = NatsNode::connect(&config, VenueSubjects::new(venue).unwrap()).unwrap();
    node.whole_log().unwrap().entries
}

fn fog_values(entries: &[LoggedCommand]) -> Vec<f32> {
    entries
        .iter()
        .filter_map(|e| match &e.command {
            VenueCommand::SetParam { name, value: ParamValue::Float(v) } if name == "fog" => Some(*v),
            _ => None,
        })
        .collect()
}

fn authority(url: &str, venue: &str, log: &Path) -> (Watched, SocketAddr, SocketAddr) {
    let process = parvis(&[
        "run",
        "--no-render",
        "--no-audience",
        "--fps",
        "60",
        "--osc",
        "127.0.0.1:0",
        "--nats",
        url,
        "--nats-venue",
        venue,
        "--snapshot-every",
        "4",
        "--metrics",
        "127.0.0.1:0",
        "--log",
        log.to_str().unwrap(),
    ]);
    let osc = said_addr(&process, "OSC on udp://");
    let metrics = said_addr(&process, "metrics at http://");
    (process, osc, metrics)
}

fn follower(url: &str, venue: &str) -> (Watched, SocketAddr) {
    let process = parvis(&[
        "follow",
        "--no-render",
        "--fps",
        "60",
        "--nats",
        url,
        "--nats-venue",
        venue,
        "--metrics",
        "127.0.0.1:0",
    ]);
    let metrics = said_addr(&process, "metrics at http://");
    (process, metrics)
}

/// Waits until JetStream stored everything the authority applied.
fn wait_stored(metrics: SocketAddr) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while metric(metrics, "parvis_nats_log_backlog") > 0 {
        assert!(Instant::now() < deadline, "JetStream never stored the backlog");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Sets the fog from the desk and waits until the authority logged it as `seq`. OSC is UDP: a
/// packet the loaded machine dropped (nothing applied within 3 s, where a frame takes
/// milliseconds) is sent again, as a desk operator would press again.
fn desk_sets_fog(osc: SocketAddr, metrics: SocketAddr, value: f32, seq: u64) {
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut sent = Instant::now() - Duration::from_secs(10);
    while state(metrics).is_none_or(|(_, s)| s < seq) {
        assert!(Instant::now() < deadline, "fog {value} never logged as #{seq}: {:?}", state(metrics));
        if sent.elapsed() > Duration::from_secs(3) && state(metrics).is_some_and(|(_, s)| s == seq - 1) {
            oscsend(osc, "/parvis/param/fog", "f", &[&value.to_string()]);
            sent = Instant::now();
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn followers_and_a_restarted_authority_end_in_one_state_through_kill_9_of_each() {
    let dir = temp_dir("nats-sync");
    let log = dir.join("authority.jsonl");
    let nats = NatsServer::start(&dir);
    let url = nats.url();
    let venue = "sync-test";

    let (mut auth, mut osc, mut auth_metrics) = authority(&url, venue, &log);
    let (first_process, mut first_metrics) = follower(&url, venue);
    let mut first = Some(first_process);
    let initial = wait_in_step(&[("authority", auth_metrics), ("first", first_metrics)], 1);

    // A scripted evening: the desk sets the fog 24 times (#2 … #25); every process is killed
    // with -9 at some point and started again.
    let mut late: Option<(Watched, SocketAddr)> = None;
    for step in 0..24u64 {
        let seq = step + 2;
        desk_sets_fog(osc, auth_metrics, 0.005 * (step % 20) as f32 + 0.001 * (step / 20) as f32 + 0.002, seq);
        match step {
            5 => {
                first = None;
                std::thread::sleep(Duration::from_millis(300));
            }
            9 => {
                let (process, metrics) = follower(&url, venue);
                (first, first_metrics) = (Some(process), metrics);
            }
            12 => {
                // The authority dies mid-show, once JetStream holds what it applied (the desk's
                // OSC has no acknowledgement to wait for); its successor carries on from the
                // stream.
                wait_stored(auth_metrics);
                drop(auth);
                (auth, osc, auth_metrics) = authority(&url, venue, &log);
                let said = auth.wait_for("carrying on the show", Duration::from_secs(30));
                assert!(said.contains(&format!("up to #{seq}")), "{said}");
            }
            16 => {
                wait_stored(auth_metrics);
                late = Some(follower(&url, venue));
            }
            _ => {}
        }
    }
    let (late_process, late_metrics) = late.unwrap();
    assert!(first.is_some());
    let hash = wait_in_step(&[("authority", auth_metrics), ("first", first_metrics), ("late", late_metrics)], 25);
    assert_ne!(hash, initial, "the session changed the venue: the fingerprint can differ");
    // The late follower started from a snapshot, not from the whole log.
    let said = late_process.text();
    assert!(said.contains("caught up at #18 (snapshot at #"), "{said}");

    // The stream holds every command once, in order, without gaps, the restart included.
    let entries = stream_log(&url, venue);
    let seqs: Vec<u64> = entries.iter().map(|e| e.seq).collect();
    assert_eq!(seqs, (1..=25).collect::<Vec<u64>>());
    assert_eq!(fog_values(&entries).len(), 24);

    // Replaying the stream gives the state every node shows.
    let out = Command::new(env!("CARGO_BIN_EXE_parvis"))
        .args(["replay", "--nats", &url, "--nats-venue", venue])
        .current_dir(root())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}{}", String::from_utf8_lossy(&out.stderr));
    assert!(stdout.contains(&format!("state hash {hash}")), "every node is at {hash}; replay says:\n{stdout}");
    drop(nats);
}

/// A WebSocket to a venue's or an edge's `/ws` or `/mod`, read as the page reads it: each
/// `state` merged into the state shown.
struct Moderator {
    socket: tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>,
    read: parvis::model::audience::protocol::StateReader,
}

impl Moderator {
    async fn connect(addr: SocketAddr) -> Self {
        let (socket, _) = tokio_tungstenite::connect_async(format!("ws://{addr}/mod")).await.unwrap();
        let mut m = Self { socket, read: Default::default() };
        m.send(r#"{"type":"auth","token":"nats-test-token"}"#).await;
        m.next_within(|v| v["type"] == "authed", Duration::from_secs(15)).await.expect("authed");
        m
    }

    /// A member joining the audience at `addr`, and the id the venue gave them.
    async fn join(addr: SocketAddr, name: &str) -> (Self, String) {
        let (socket, _) = tokio_tungstenite::connect_async(format!("ws://{addr}/ws")).await.unwrap();
        let mut m = Self { socket, read: Default::default() };
        m.send(&format!(r#"{{"type":"hello","v":1,"name":"{name}","lang":"en"}}"#)).await;
        let welcome = m.next_within(|v| v["type"] == "welcome", Duration::from_secs(15)).await.expect("welcome");
        (m, welcome["id"].as_str().unwrap().to_owned())
    }

    async fn send(&mut self, text: &str) {
        self.socket.send(Message::text(text.to_owned())).await.unwrap();
    }

    async fn set_fog(&mut self, value: f32) {
        let command = format!(
            r#"{{"type":"command","command":{{"type":"set_param","name":"fog","value":{{"Float":{value}}}}}}}"#
        );
        self.send(&command).await;
    }

    async fn next_within(
        &mut self,
        want: impl Fn(&serde_json::Value) -> bool,
        within: Duration,
    ) -> Option<serde_json::Value> {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            for value in self.read.by_ref() {
                if want(&value) {
                    return Some(value);
                }
            }
            let message = tokio::time::timeout_at(deadline, self.socket.next()).await.ok()??.ok()?;
            if let Message::Text(text) = message {
                self.read.read(&text).unwrap();
            }
        }
    }
}

fn applied(v: &serde_json::Value) -> bool {
    v["type"] == "applied"
}

#[test]
fn acknowledgements_wait_for_jetstream_and_hostile_messages_or_a_deleted_stream_are_survived() {
    let dir = temp_dir("nats-acks");
    let mut nats = NatsServer::start(&dir);
    let url = nats.url();
    let venue = "acks-test";
    let auth = parvis(&authority_with_audience(&url, venue));
    let page = said_addr(&auth, "audience page at http://");
    let (follower_process, follower_metrics) = follower(&url, venue);
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    runtime.block_on(async {
        let mut moderator = Moderator::connect(page).await;
        moderator.set_fog(0.05).await;
        let ack = moderator.next_within(applied, Duration::from_secs(10)).await.expect("acknowledged");
        assert_eq!(ack["seq"], 2);

        // NATS dies: the command applies on stage, but its origin hears nothing until
        // JetStream holds it.
        nats.kill();
        moderator.set_fog(0.1).await;
        let early = moderator.next_within(applied, Duration::from_millis(1500)).await;
        assert!(early.is_none(), "acknowledged before the log had it: {early:?}");
        nats.restart();
        let ack = moderator.next_within(applied, Duration::from_secs(30)).await.expect("acknowledged once stored");
        assert_eq!(ack["seq"], 3);
        assert_eq!(
            fog_values(&stream_log_async(&url, venue).await),
            vec![0.05, 0.1],
            "what was acknowledged is in the stream"
        );
    });
    let metrics = page;
    let hash = wait_in_step(&[("authority", metrics), ("follower", follower_metrics)], 3);
    assert!(metric(metrics, "parvis_nats_reconnects_total") >= 1, "the reconnection is counted");

    // Hostile messages on the log subject (NATS has no schema): garbage, an oversized message,
    // a redelivered command. The follower refuses or skips them, says so, and stays in step.
    runtime.block_on(async {
        let client = async_nats::connect(url.as_str()).await.unwrap();
        let js = async_nats::jetstream::new(client);
        let subject = format!("parvis.{venue}.log");
        let old = serde_json::to_vec(&stream_log_async(&url, venue).await[1]).unwrap();
        for payload in [b"{not json".to_vec(), old] {
            js.publish(subject.clone(), payload.into()).await.unwrap().await.unwrap();
        }
        // The stream itself refuses what no node would read.
        let oversized = js.publish(subject.clone(), vec![b'x'; 950 * 1024].into()).await.unwrap().await;
        assert!(oversized.is_err(), "the stream stored a message over the venue's limit");
    });
    follower_process.wait_for("not a logged command", Duration::from_secs(10));
    let deadline = Instant::now() + Duration::from_secs(10);
    while metric(follower_metrics, "parvis_nats_duplicates_total") < 1 {
        assert!(Instant::now() < deadline, "the redelivery was not skipped");
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(state(follower_metrics).unwrap().0, hash, "nothing hostile changed the follower");

    // The stream is deleted under the running venue: the next command makes it again, the
    // venue stores a snapshot, and a follower starting now catches up from it.
    runtime.block_on(async {
        let client = async_nats::connect(url.as_str()).await.unwrap();
        async_nats::jetstream::new(client).delete_stream(format!("PARVIS_{}_LOG", "ACKS_TEST")).await.unwrap();
        let mut moderator = Moderator::connect(page).await;
        moderator.set_fog(0.15).await;
        let ack = moderator
            .next_within(applied, Duration::from_secs(30))
            .await
            .expect("acknowledged after the stream is made again");
        assert_eq!(ack["seq"], 4);
    });
    auth.wait_for("was gone (deleted under the running venue)", Duration::from_secs(10));
    auth.wait_for("snapshot of the venue at #4 stored", Duration::from_secs(10));
    let (_fresh, fresh_metrics) = follower(&url, venue);
    let after = wait_in_step(&[("authority", metrics), ("follower", follower_metrics), ("fresh", fresh_metrics)], 4);
    assert_ne!(after, hash);
}

async fn stream_log_async(url: &str, venue: &str) -> Vec<LoggedCommand> {
    let (url, venue) = (url.to_owned(), venue.to_owned());
    tokio::task::spawn_blocking(move || stream_log(&url, &venue)).await.unwrap()
}

fn edge(url: &str, venue: &str, id: &str, staff: bool) -> (Watched, SocketAddr) {
    let mut args = vec![
        "edge",
        "--audience",
        "127.0.0.1:0",
        "--mod-token",
        "nats-test-token",
        "--nats",
        url,
        "--nats-venue",
        venue,
        "--edge-id",
        id,
    ];
    if staff {
        args.push("--staff-edge");
    }
    let process = parvis(&args);
    let page = said_addr(&process, "page at http://");
    (process, page)
}

fn audience_is(n: u64) -> impl Fn(&serde_json::Value) -> bool {
    move |v| v["type"] == "state" && v["audience"] == n
}

#[test]
fn audience_edges_feed_one_venue_counted_once_moderated_everywhere_and_lost_cleanly() {
    let dir = temp_dir("nats-edges");
    let nats = NatsServer::start(&dir);
    let url = nats.url();
    let venue = "edges-test";
    let authority_args = authority_with_audience(&url, venue);
    let mut authority = parvis(&authority_args);
    let venue_page = said_addr(&authority, "audience page at http://");
    let (_one, one) = edge(&url, venue, "one", true);
    let (two_process, two) = edge(&url, venue, "two", false);
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let second = Duration::from_secs(10);
    let (ana, cy, cy_id) = runtime.block_on(async {
        let (mut ana, ana_id) = Moderator::join(one, "Ana").await;
        let (mut bob, bob_id) = Moderator::join(two, "Bob").await;
        let (cy, cy_id) = Moderator::join(two, "Cy").await;
        assert!(ana_id.starts_with("one-") && bob_id.starts_with("two-"), "{ana_id} {bob_id}");
        // One venue counts every edge's members, once.
        ana.next_within(audience_is(3), second).await.expect("3 members across two edges");

        // A member's command at one edge changes the venue, and members at the other hear it.
        ana.send(r#"{"type":"chat","text":"!light red"}"#).await;
        let effect =
            bob.next_within(|v| v["type"] == "effect", second).await.expect("the effect reaches the other edge");
        assert_eq!(effect["param"], "stage_light", "{effect}");
        bob.next_within(|v| v["type"] == "state" && v["params"]["stage_light"] == "#ff0000", second)
            .await
            .expect("state");

        // A moderator at the staff edge: a command reaches the venue and is acknowledged back
        // there; a ban reaches the member at the other edge.
        let mut moderator = Moderator::connect(one).await;
        moderator.set_fog(0.05).await;
        let ack = moderator.next_within(applied, second).await.expect("acknowledged at the edge");
        assert!(ack["by"].as_str().unwrap().starts_with("one/"), "the venue says which edge: {ack}");
        moderator.send(&format!(r#"{{"type":"ban","user":"{bob_id}"}}"#)).await;
        let banned = bob.next_within(|v| v["code"] == "banned", second).await;
        assert!(banned.is_some(), "the ban made at edge one reaches Bob at edge two");

        // The same request at an edge without a staff credential goes nowhere.
        let mut outsider = Moderator::connect(two).await;
        outsider.set_fog(0.15).await;
        assert!(outsider.next_within(applied, Duration::from_millis(1500)).await.is_none());
        (ana, cy, cy_id)
    });
    two_process.wait_for("without --staff-edge", Duration::from_secs(15));

    // Forged batches are refused by the venue, by name: a moderator's request on the audience
    // subject, and Cy leaving in edge two's name on edge one's subject.
    let refused_before = metric(venue_page, "parvis_nats_refused_total");
    runtime.block_on(async {
        let client = async_nats::connect(url.as_str()).await.unwrap();
        let forged = br#"{"edge":"two","members":2,"events":[{"t":"moderator","moderator":"m","action":{"command":{"type":"set_param","name":"fog","value":{"Float":0.2}}}}]}"#;
        client.publish(format!("parvis.{venue}.audience.in.two"), forged.to_vec().into()).await.unwrap();
        let impostor = format!(r#"{{"edge":"two","members":0,"events":[{{"t":"left","user":"{cy_id}"}}]}}"#);
        client.publish(format!("parvis.{venue}.audience.in.one"), impostor.into_bytes().into()).await.unwrap();
        client.flush().await.unwrap();
    });
    // The venue says one refusal a second and counts the rest: the first is said, both counted.
    authority.wait_for("moderator's request", Duration::from_secs(10));
    let deadline = Instant::now() + Duration::from_secs(10);
    while metric(venue_page, "parvis_nats_refused_total") < refused_before + 2 {
        assert!(Instant::now() < deadline, "both forged batches refused:\n{}", authority.text());
        std::thread::sleep(Duration::from_millis(50));
    }
    let out = Command::new("curl").args(["-s", &format!("http://{venue_page}/metrics")]).output().unwrap();
    let metrics = String::from_utf8_lossy(&out.stdout);
    assert!(metrics.contains("parvis_nats_edges 2"), "{metrics}");

    // Edge two dies with Cy: its members leave the venue's count within the edge time-out.
    drop(two_process);
    let dan = runtime.block_on(async {
        let (mut dan, _) = Moderator::join(one, "Dan").await;
        // Ana, Cy and Dan (the ban closed Bob's connection), until edge two is found lost.
        dan.next_within(audience_is(3), second).await.expect("Dan counted");
        let remain = dan.next_within(audience_is(2), Duration::from_secs(15)).await;
        assert!(remain.is_some(), "Ana and Dan remain:\n{}", authority.text());
        dan
    });
    let said = authority.wait_for("\"two\" lost", Duration::from_secs(15));
    assert!(!said.contains("its 0 members leave"), "Cy was still there:\n{said}");
    drop(cy);
    let entries = {
        let out = Command::new("curl").args(["-s", &format!("http://{venue_page}/metrics")]).output().unwrap();
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    assert!(entries.contains("parvis_nats_edges 1"), "{entries}");
    let fog = stream_log(&url, venue);
    assert_eq!(fog_values(&fog), vec![0.05], "only the staff edge's request was applied");

    // The authority is killed and started again: edge one says again who its members are.
    drop(authority);
    authority = parvis(&authority_args);
    authority.wait_for("audience edge \"one\" joined", Duration::from_secs(30));
    runtime.block_on(async {
        let (mut eve, _) = Moderator::join(one, "Eve").await;
        let counted = eve.next_within(audience_is(3), Duration::from_secs(10)).await;
        assert!(counted.is_some(), "Ana, Dan and Eve counted by the new authority:\n{}", authority.text());
    });
    drop((dan, ana));
    drop(nats);
}

#[test]
fn credentials_and_tls_are_required_checked_and_never_logged_and_an_edges_permissions_hold() {
    let dir = temp_dir("nats-tls");
    let port = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let tls = root().join("tests/data/tls");
    // A server with TLS and three users: the venue's authority, a follower, and an audience
    // edge that may only publish audience events (docs/scale.md).
    let config = format!(
        r#"listen: "127.0.0.1:{port}"
jetstream {{ store_dir: "{store}" }}
tls {{ cert_file: "{cert}", key_file: "{key}" }}
authorization {{
  users = [
    {{ user: authority, password: "auth-s3cret-pw" }}
    {{ user: follower, password: "follow-s3cret-pw" }}
    {{ user: edge, password: "edge-s3cret-pw", permissions: {{
        publish: ["parvis.tls-test.audience.in.lim"],
        subscribe: ["parvis.tls-test.audience.out", "parvis.tls-test.audience.resync",
                    "parvis.tls-test.staff.moderation"] }} }}
  ]
}}
"#,
        store = dir.join("js").display(),
        cert = tls.join("server.pem").display(),
        key = tls.join("server.key").display(),
    );
    let conf = dir.join("nats.conf");
    std::fs::write(&conf, config).unwrap();
    let mut command = Command::new(tool("nats-server"));
    command.arg("-c").arg(&conf);
    let server = Watched::spawn(command, false);
    server.wait_for("Server is ready", Duration::from_secs(20));
    let url = format!("tls://127.0.0.1:{port}");
    let ca = tls.join("ca.pem");
    let ca = ca.to_str().unwrap();
    let run = |user: &str, password: &str, args: &[&str]| {
        let mut command = Command::new(env!("CARGO_BIN_EXE_parvis"));
        command.args(args).current_dir(root()).env("PARVIS_NATS_USER", user).env("PARVIS_NATS_PASSWORD", password);
        command
    };
    let authority_args = authority_with_audience(&url, "tls-test");

    // A wrong password and a missing CA are refused before the venue starts, naming the
    // server, and the password is never shown.
    let mut args = authority_args.clone();
    args.extend(["--nats-ca", ca]);
    let out = run("authority", "wrong-pw-zz", &args).output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && err.contains(&format!("cannot connect to NATS at {url}")), "{err}");
    assert!(!err.contains("wrong-pw-zz"), "the password reached the log:\n{err}");
    let args = authority_args.clone();
    let out = run("authority", "auth-s3cret-pw", &args).output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && err.contains("cannot connect to NATS"), "no CA: {err}");

    // With the CA and the right password: an authority, a follower, and an edge.
    let mut args = authority_args.clone();
    args.extend(["--nats-ca", ca]);
    let authority = Watched::spawn(run("authority", "auth-s3cret-pw", &args), false);
    let page = said_addr(&authority, "audience page at http://");
    let args = ["follow", "--no-render", "--fps", "60", "--nats", &url, "--nats-ca", ca, "--metrics", "127.0.0.1:0"];
    let args = [&args[..], &["--nats-venue", "tls-test"]].concat();
    let follower = Watched::spawn(run("follower", "follow-s3cret-pw", &args), false);
    let follower_metrics = said_addr(&follower, "metrics at http://");
    let mut args = vec!["edge", "--audience", "127.0.0.1:0", "--mod-token", "nats-test-token", "--staff-edge"];
    args.extend(["--nats", &url, "--nats-ca", ca, "--edge-id", "lim", "--nats-venue", "tls-test"]);
    let edge = Watched::spawn(run("edge", "edge-s3cret-pw", &args), false);
    let edge_page = said_addr(&edge, "page at http://");

    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    runtime.block_on(async {
        // The edge's member is heard by the venue...
        let (mut ana, _) = Moderator::join(edge_page, "Ana").await;
        ana.next_within(audience_is(1), Duration::from_secs(10)).await.expect("the edge's member counted");
        // ...but the edge's NATS user may not publish staff events, whatever the edge claims:
        // the server refuses them, and the venue never sees the request.
        let mut moderator = Moderator::connect(edge_page).await;
        moderator.set_fog(0.15).await;
        assert!(moderator.next_within(applied, Duration::from_millis(1500)).await.is_none());
        // The authority's own moderators are staff.
        let mut staff = Moderator::connect(page).await;
        staff.set_fog(0.05).await;
        staff.next_within(applied, Duration::from_secs(10)).await.expect("applied");
    });
    edge.wait_for("ermissions", Duration::from_secs(15));
    let position = |m: SocketAddr| state(m).map(|(_, s)| s);
    let deadline = Instant::now() + Duration::from_secs(10);
    while position(follower_metrics) != Some(2) {
        assert!(Instant::now() < deadline, "the follower over TLS never reached #2: {:?}", state(follower_metrics));
        std::thread::sleep(Duration::from_millis(50));
    }
    for (who, process) in [("authority", &authority), ("follower", &follower), ("edge", &edge)] {
        let said = process.text();
        for secret in ["auth-s3cret-pw", "follow-s3cret-pw", "edge-s3cret-pw"] {
            assert!(!said.contains(secret), "the {who}'s log holds a password:\n{said}");
        }
    }
    drop(server);
}

/// `parvis follow --shard ID`: an overflow shard, following the authority's log and serving an
/// audience of its own.
fn shard(url: &str, venue: &str, id: &str) -> (Watched, SocketAddr, SocketAddr) {
    let process = parvis(&[
        "follow",
        "--no-render",
        "--fps",
        "60",
        "--audience",
        "127.0.0.1:0",
        "--nats",
        url,
        "--nats-venue",
        venue,
        "--shard",
        id,
        "--metrics",
        "127.0.0.1:0",
    ]);
    let page = said_addr(&process, "audience page at http://");
    let metrics = said_addr(&process, "metrics at http://");
    (process, page, metrics)
}

#[test]
fn overflow_shards_follow_the_main_stage_and_keep_their_audiences_effects() {
    let dir = temp_dir("nats-shards");
    let nats = NatsServer::start(&dir);
    let url = nats.url();
    let venue = "shards-test";
    let authority = parvis(&authority_with_audience(&url, venue));
    let main_page = said_addr(&authority, "audience page at http://");
    let (_a, a_page, a_metrics) = shard(&url, venue, "a");
    let (_b, b_page, _) = shard(&url, venue, "b");
    // Not a shard of anything: refused by name.
    let wrong = Command::new(env!("CARGO_BIN_EXE_parvis"))
        .args(["follow", "--no-render", "--nats", &url, "--shard", "Bad Id"])
        .output()
        .unwrap();
    assert!(!wrong.status.success() && String::from_utf8_lossy(&wrong.stderr).contains("--shard \"Bad Id\""));
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let within = Duration::from_secs(10);
    runtime.block_on(async {
        let (mut ana, ana_id) = Moderator::join(a_page, "Ana").await;
        let (mut bea, _) = Moderator::join(b_page, "Bea").await;
        let (mut max, _) = Moderator::join(main_page, "Max").await;
        assert!(ana_id.starts_with("a-"), "a shard's members carry its id: {ana_id}");

        // The main stage's staff reach every shard.
        let mut desk = Moderator::connect(main_page).await;
        desk.set_fog(0.1).await;
        if desk.next_within(applied, within).await.is_none() {
            panic!("not applied on the main stage:\n{}", authority.text());
        }
        for (name, member) in [("shard a", &mut ana), ("shard b", &mut bea)] {
            member
                .next_within(|v| v["type"] == "state" && v["params"]["fog"] == "0.1", within)
                .await
                .unwrap_or_else(|| panic!("{name} follows the main stage's fog"));
        }

        // A shard's audience changes its shard, and nothing else.
        ana.send(r#"{"type":"chat","text":"!light red"}"#).await;
        let effect = ana.next_within(|v| v["type"] == "effect", within).await.expect("the effect, in shard a");
        assert_eq!(effect["param"], "stage_light", "{effect}");
        ana.next_within(|v| v["type"] == "state" && v["params"]["stage_light"] == "#ff0000", within)
            .await
            .expect("shard a's stage");
        // The main stage carries on (a later fog reaches everyone) without shard a's light.
        desk.set_fog(0.15).await;
        desk.next_within(applied, within).await.expect("applied on the main stage");
        for (name, member) in [("shard b", &mut bea), ("the main stage", &mut max)] {
            let state = member
                .next_within(|v| v["type"] == "state" && v["params"]["fog"] == "0.15", within)
                .await
                .unwrap_or_else(|| panic!("{name} has the fog"));
            assert_ne!(state["params"]["stage_light"], "#ff0000", "shard a's effect stayed there, not in {name}");
        }
        let state = ana
            .next_within(|v| v["type"] == "state" && v["params"]["fog"] == "0.15", within)
            .await
            .expect("shard a has the fog too");
        assert_eq!(state["params"]["stage_light"], "#ff0000", "and keeps its own light: {state}");

        // The main stage's audience changes the main stage, not the shards.
        max.send(r#"{"type":"chat","text":"!light #123456"}"#).await;
        max.next_within(|v| v["type"] == "state" && v["params"]["stage_light"] == "#123456", within)
            .await
            .expect("the main stage's light");
        desk.set_fog(0.05).await;
        desk.next_within(applied, within).await.expect("applied on the main stage");
        let state = bea
            .next_within(|v| v["type"] == "state" && v["params"]["fog"] == "0.05", within)
            .await
            .expect("shard b has the desk's fog");
        assert_ne!(state["params"]["stage_light"], "#123456", "the main stage's audience stays there: {state}");
    });
    // Nothing from a shard's audience went into the authority's log.
    let log = stream_log(&url, venue);
    assert!(
        !log.iter().any(
            |e| matches!(&e.origin, CommandOrigin::Audience(who) if who.starts_with("a-") || who.starts_with("b-"))
        ),
        "a shard's audience logged on the main stage: {log:?}"
    );
    assert!(metric(a_metrics, "parvis_nats_shard_skipped_total") >= 1, "shard a left out the main audience's light");
    // The shard followed the whole log.
    let log_end = log.last().map(|e| e.seq).unwrap();
    assert!(metric(a_metrics, "parvis_nats_followed_total") >= 2, "shard a applied the desk's commands");
    assert!(state(a_metrics).is_some_and(|(_, seq)| seq == log_end), "shard a is at the log's end #{log_end}");
    drop(nats);
}

/// Every `state` a member is sent, until one holds `param` at `value`.
async fn wait_param(member: &mut Moderator, name: &str, param: &str, value: &str) -> serde_json::Value {
    member
        .next_within(|v| v["type"] == "state" && v["params"][param] == value, Duration::from_secs(15))
        .await
        .unwrap_or_else(|| panic!("{name}: {param} never became {value}"))
}

/// A poll, a democracy vote and a crowd-energy rule the scene sums across overflow shards: each
/// decided once, on the main stage, on every instance's votes or crowd, and played everywhere;
/// what each instance's audience does by itself stays there.
#[test]
fn a_poll_a_vote_and_crowd_energy_summed_across_shards_are_decided_once_and_play_everywhere() {
    let dir = temp_dir("nats-shard-sums");
    let nats = NatsServer::start(&dir);
    let url = nats.url();
    let venue = "shard-sums";
    let scene = root().join("tests/scenes/shards.ron");
    let scene = scene.to_str().unwrap();
    let authority = parvis(&[&["run", scene][..], &authority_with_audience(&url, venue)[1..]].concat());
    let main_page = said_addr(&authority, "audience page at http://");
    let (_a, a_page, _) = shard(&url, venue, "a");
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let within = Duration::from_secs(15);
    let mut b_metrics = None;
    runtime.block_on(async {
        let (mut max, _) = Moderator::join(main_page, "Max").await;
        let (mut ana, _) = Moderator::join(a_page, "Ana").await;
        let mut desk = Moderator::connect(main_page).await;

        // A summed poll: one vote on the main stage against two on the shards. Counted on each
        // instance, the main stage would pick "stars"; summed, "dawn" wins everywhere.
        desk.send(r#"{"type":"command","command":{"type":"open_poll","poll":"finale"}}"#).await;
        desk.next_within(applied, within).await.expect("the poll opens on the main stage");
        for (name, member) in [("main", &mut max), ("shard a", &mut ana)] {
            member
                .next_within(|v| v["type"] == "poll" && v["phase"] == "open" && v["id"] == "finale", within)
                .await
                .unwrap_or_else(|| panic!("{name} sees the poll open"));
        }
        // Shard b starts while the poll runs: it catches up with it from the log, and counts for
        // the main stage too.
        let (b, b_page, metrics) = shard(&url, venue, "b");
        b_metrics = Some((b, metrics));
        let (mut bea, _) = Moderator::join(b_page, "Bea").await;
        bea.next_within(|v| v["type"] == "state" && v["poll"]["id"] == "finale", within)
            .await
            .expect("shard b's page shows the poll it caught up with");
        max.send(r#"{"type":"vote","poll":"finale","option":"stars"}"#).await;
        ana.send(r#"{"type":"vote","poll":"finale","option":"dawn"}"#).await;
        bea.send(r#"{"type":"vote","poll":"finale","option":"dawn"}"#).await;
        // Shard a's page shows every instance's votes while the poll runs.
        let votes = |v: &serde_json::Value, option: usize| v["options"][option]["votes"].as_u64().unwrap_or(0);
        let tally = ana
            .next_within(|v| v["type"] == "poll" && v["id"] == "finale" && votes(v, 0) == 1 && votes(v, 1) == 2, within)
            .await
            .expect("shard a shows the summed tally: stars 1, dawn 2");
        assert_ne!(tally["phase"], "close", "{tally}");
        // The desk closes the poll early: the main stage waits for each shard's last count
        // before it decides.
        desk.send(r#"{"type":"command","command":{"type":"close_poll","poll":"finale"}}"#).await;
        for (name, member) in [("main", &mut max), ("shard a", &mut ana), ("shard b", &mut bea)] {
            let close = member
                .next_within(|v| v["type"] == "poll" && v["phase"] == "close" && v["id"] == "finale", within)
                .await
                .unwrap_or_else(|| panic!("{name} sees the poll close"));
            assert_eq!(close["winner"], "dawn", "{name}: {close}");
            assert_eq!((votes(&close, 0), votes(&close, 1)), (1, 2), "{name}: every instance's votes: {close}");
            wait_param(member, name, "finale", "dawn").await;
        }

        // Crowd energy summed: 3 lines at each instance within the 2 s window is 4.5 a second,
        // over the rule's 3; the shards' 6 lines alone are 3, not over it.
        for member in [&mut ana, &mut bea] {
            for n in 0..3 {
                member.send(&format!(r#"{{"type":"chat","text":"hello {n}"}}"#)).await;
            }
        }
        // The shards report within a second; the roar is not up yet.
        let early = max
            .next_within(|v| v["type"] == "state" && v["params"]["roar"] == "true", Duration::from_millis(1200))
            .await;
        assert!(early.is_none(), "the shards' crowds alone are under the rule's energy: {early:?}");
        for n in 0..3 {
            max.send(&format!(r#"{{"type":"chat","text":"bravo {n}"}}"#)).await;
        }
        for (name, member) in [("main", &mut max), ("shard a", &mut ana), ("shard b", &mut bea)] {
            let state = member
                .next_within(|v| v["type"] == "state" && v["params"]["roar"] == "true", within)
                .await
                .unwrap_or_else(|| panic!("{name}: every instance's crowd together roars"));
            // Max's "bravo" (a rule each instance runs for its own audience) stayed on the main
            // stage.
            assert_eq!(state["params"]["fog"] == "0.01", name == "main", "{name}: {state}");
        }

        // A democracy vote summed across shards, started by a shard's audience: shard a asks the
        // main stage to open it, every instance joins that one run. Counted on each instance
        // the main stage would pick "stars"; summed, "dawn" wins everywhere.
        let sky =
            |v: &serde_json::Value, phase: &str| v["type"] == "poll" && v["id"] == "rule:sky" && v["phase"] == phase;
        ana.send(r#"{"type":"chat","text":"!sky dawn"}"#).await;
        for (name, member, word) in [("main", &mut max, "stars"), ("shard b", &mut bea, "dawn")] {
            member
                .next_within(|v| sky(v, "tally"), within)
                .await
                .unwrap_or_else(|| panic!("{name} sees the vote open"));
            member.send(&format!(r#"{{"type":"chat","text":"!sky {word}"}}"#)).await;
        }
        let word_votes = |v: &serde_json::Value, word: &str| {
            v["options"]
                .as_array()
                .and_then(|o| o.iter().find(|o| o["id"] == word))
                .map_or(0, |o| o["votes"].as_u64().unwrap_or(0))
        };
        let running = ana
            .next_within(|v| sky(v, "tally") && word_votes(v, "stars") == 1 && word_votes(v, "dawn") == 2, within)
            .await
            .expect("shard a shows every instance's words while the vote runs");
        assert!(running["closes_in_ms"].as_u64().unwrap() <= 5000, "{running}");
        for (name, member) in [("main", &mut max), ("shard a", &mut ana), ("shard b", &mut bea)] {
            let close = member
                .next_within(|v| sky(v, "close"), within)
                .await
                .unwrap_or_else(|| panic!("{name}: the vote closes"));
            assert_eq!(close["winner"], "dawn", "{name}: {close}");
            assert_eq!((word_votes(&close, "stars"), word_votes(&close, "dawn")), (1, 2), "{name}: {close}");
            wait_param(member, name, "sky", "dawn").await;
        }
    });
    // One outcome of each summed count in the log, applied by the shards.
    let log = stream_log(&url, venue);
    let from = |who: &str| log.iter().filter(|e| matches!(&e.origin, CommandOrigin::Audience(w) if w == who)).count();
    assert_eq!(from("poll:finale"), 1, "the summed poll's outcome, logged once: {log:?}");
    assert_eq!(from("energy:roar"), 1, "the summed energy's effect, logged once");
    assert_eq!(from("vote:sky"), 1, "the summed vote's winner, logged once");
    assert!(
        !log.iter()
            .any(|e| matches!(&e.origin, CommandOrigin::Audience(w) if w.starts_with("a-") || w.starts_with("b-"))),
        "nothing of a shard's audience in the log"
    );
    // The main stage's audience's own effect (a line's) stays there.
    let (_b, b_metrics) = b_metrics.unwrap();
    assert!(metric(b_metrics, "parvis_nats_shard_skipped_total") >= 1, "shard b left out the main stage's cheer");
    drop(nats);
}

/// The performer's motion reaches a follower: liblo's `oscsend` drives the authority's
/// performer over VMC, and a follower (which binds no capture port of its own) moves its
/// performer the same way, as its recording of what it applied shows; a hostile message on the
/// poses subject is refused.
#[test]
fn the_performers_motion_captured_at_the_authority_moves_the_followers_performer() {
    let dir = temp_dir("nats-poses");
    let nats = NatsServer::start(&dir);
    let url = nats.url();
    let venue = "poses-test";
    let text = parvis::model::scene::DEFAULT_SCENE
        .replace("source: Recording(path: \"performances/evening.poses\")", "source: Vmc(port: 0)");
    assert!(text.contains("Vmc(port: 0)"), "the built-in performer's source was found");
    let scene = dir.join("vmc.ron");
    std::fs::write(&scene, text).unwrap();
    let authority = parvis(&[
        "run",
        scene.to_str().unwrap(),
        "--no-render",
        "--no-audience",
        "--fps",
        "60",
        "--nats",
        &url,
        "--nats-venue",
        venue,
    ]);
    let stderr = authority.wait_for("VMC for singer on udp://", Duration::from_secs(30));
    let vmc = super::osc::vmc_addr(&stderr);
    let recorded = dir.join("follower.poses");
    let follower = parvis(&[
        "follow",
        "--no-render",
        "--fps",
        "60",
        "--nats",
        &url,
        "--nats-venue",
        venue,
        "--record-performers",
        recorded.to_str().unwrap(),
        "--metrics",
        "127.0.0.1:0",
    ]);
    let metrics = said_addr(&follower, "metrics at http://");
    // Poses are not logged: the follower sees those sent once it listens. Send until it moved.
    let magic = parvis::model::performer::recording::MAGIC.len() as u64;
    let deadline = Instant::now() + Duration::from_secs(20);
    while std::fs::metadata(&recorded).map_or(0, |m| m.len()) <= magic {
        assert!(Instant::now() < deadline, "no pose reached the follower:\n{}\n{}", authority.text(), follower.text());
        oscsend(vmc, "/VMC/Ext/Bone/Pos", "sfffffff", &["LeftUpperArm", "0", "0", "0", "0", "0", "-0.5", "0.8660254"]);
        std::thread::sleep(Duration::from_millis(200));
    }
    // Garbage on the poses subject is refused by name, and counted.
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    runtime.block_on(async {
        let client = async_nats::connect(url.as_str()).await.unwrap();
        client.publish(format!("parvis.{venue}.performer.poses"), b"not poses".to_vec().into()).await.unwrap();
        client.flush().await.unwrap();
    });
    follower.wait_for("refused on parvis.poses-test.performer.poses", Duration::from_secs(10));
    assert!(metric(metrics, "parvis_nats_refused_total") >= 1);
    assert!(metric(metrics, "parvis_performer_updates_applied_total") >= 1, "the follower counts the poses it applied");
    assert!(!follower.text().contains("VMC for singer on udp://"), "a follower binds no capture port");
    drop(follower);
    let records = parvis::model::performer::recording::read(&std::fs::read(&recorded).unwrap()).unwrap();
    let arm = parvis::model::performer::HumanBone::from_name("LeftUpperArm").unwrap();
    let record = records.first().expect("a record");
    assert_eq!(record.performer, "singer");
    let (bone, pose) = &record.update.bones[0];
    assert_eq!(*bone, arm);
    // Unity's -0.5 about its left-handed Z, as the authority stored it in glTF's axes.
    assert!((pose.rotation[2] - 0.5).abs() < 1e-3, "the follower's arm is the authority's: {:?}", pose.rotation);
    drop(nats);
}
