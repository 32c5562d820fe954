//! OSC with real peers: Debian's liblo tools (`oscsend`, `oscdump`), a separate OSC
//! implementation, drive a running venue and receive its echoes. Parameters, the transport and
//! cues change the venue through the command pipeline (logged with the sender as origin);
//! malformed packets, unknown addresses, wrong types, out-of-range values and a flood change
//! nothing they should not; addresses not allowed are dropped unread.

use std::io::BufRead;
use std::net::{SocketAddr, UdpSocket};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use parvis::model::command::{CommandOrigin, TransportAction, VenueCommand, read_command_log};
use parvis::model::params::ParamValue;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn tool(name: &str) -> &str {
    let found = Command::new("sh").args(["-c", &format!("command -v {name}")]).output().unwrap();
    assert!(found.status.success(), "{name} is missing: scripts/test.sh installs liblo-tools");
    name
}

/// A child whose stderr (or stdout) is kept as it comes.
struct Watched {
    child: Child,
    text: Arc<Mutex<String>>,
}

impl Watched {
    fn spawn(mut command: Command, stdout: bool) -> Self {
        let mut child = if stdout {
            command.stdout(Stdio::piped()).stderr(Stdio::null()).spawn().unwrap()
        } else {
            command.stderr(Stdio::piped()).stdout(Stdio::null()).spawn().unwrap()
        };
        let text = Arc::new(Mutex::new(String::new()));
        let kept = text.clone();
        let reader: Box<dyn std::io::Read + Send> =
            if stdout { Box::new(child.stdout.take().unwrap()) } else { Box::new(child.stderr.take().unwrap()) };
        std::thread::spawn(move || {
            for line in std::io::BufReader::new(reader).lines().map_while(Result::ok) {
                let mut t = kept.lock().unwrap();
                t.push_str(&line);
                t.push('\n');
            }
        });
        Self { child, text }
    }

    fn text(&self) -> String {
        self.text.lock().unwrap().clone()
    }

    fn wait_for(&self, what: &str, within: Duration) -> String {
        let deadline = Instant::now() + within;
        loop {
            let text = self.text();
            if text.contains(what) {
                return text;
            }
            assert!(Instant::now() < deadline, "no {what:?} within {within:?}:\n{text}");
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Watched {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_udp_port() -> u16 {
    UdpSocket::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

fn venue(log: &std::path::Path, extra: &[&str]) -> (Watched, SocketAddr) {
    let mut command = Command::new(env!("CARGO_BIN_EXE_parvis"));
    command
        .args([
            "run",
            "--no-render",
            "--no-audience",
            "--fps",
            "60",
            "--show",
            "evening",
            "--osc",
            "127.0.0.1:0",
            "--log",
        ])
        .arg(log)
        .args(extra)
        .current_dir(root());
    let venue = Watched::spawn(command, false);
    let text = venue.wait_for("OSC on udp://", Duration::from_secs(60));
    let addr = text.split("OSC on udp://").nth(1).unwrap().split_whitespace().next().unwrap().parse().unwrap();
    (venue, addr)
}

fn oscsend(addr: SocketAddr, path: &str, types: &str, values: &[&str]) {
    let status = Command::new(tool("oscsend"))
        .args(["127.0.0.1", &addr.port().to_string(), path, types])
        .args(values)
        .status()
        .unwrap();
    assert!(status.success(), "oscsend {path} {types} {values:?}");
}

fn logged(log: &std::path::Path) -> Vec<parvis::model::command::LoggedCommand> {
    let text = std::fs::read_to_string(log).unwrap_or_default();
    read_command_log(text.as_bytes()).unwrap()
}

fn wait_logged(log: &std::path::Path, what: &str, ok: impl Fn(&[parvis::model::command::LoggedCommand]) -> bool) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while !ok(&logged(log)) {
        assert!(Instant::now() < deadline, "the log never had {what}: {:#?}", logged(log));
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn liblo_drives_the_venue_and_hears_its_echoes_and_bad_packets_change_nothing() {
    let dir = std::env::temp_dir().join(format!("parvis-osc-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let log = dir.join("osc.jsonl");
    let _ = std::fs::remove_file(&log);
    let dump_port = free_udp_port();
    let mut dump = Command::new(tool("oscdump"));
    dump.args(["-L", &dump_port.to_string()]);
    let dump = Watched::spawn(dump, true);
    std::thread::sleep(Duration::from_millis(300));
    let (venue, addr) = venue(&log, &["--osc-out", &format!("127.0.0.1:{dump_port}")]);
    // The venue tells the desk every parameter as it opens.
    dump.wait_for("/parvis/param/fog f 0.000000", Duration::from_secs(20));

    // Hostile input first: garbage, a flood of it, bad types and values, unknown addresses.
    let raw = UdpSocket::bind("127.0.0.1:0").unwrap();
    raw.send_to(b"not osc at all", addr).unwrap();
    raw.send_to(b"/parvis/param/fog\0\0\0,f\0\0", addr).unwrap(); // a float tag with no float
    for _ in 0..5_000 {
        raw.send_to(b"#bundle\0\0\0\0\0\0\0\0\x01\0\0\0\x10garbage", addr).unwrap();
    }
    oscsend(addr, "/parvis/param/fog", "f", &["9"]);
    oscsend(addr, "/parvis/param/fog", "s", &["thick"]);
    oscsend(addr, "/parvis/param/nope", "f", &["1"]);
    oscsend(addr, "/nothing/here", "", &[]);

    // Then a desk's real work.
    oscsend(addr, "/parvis/param/fog", "f", &["0.1"]);
    oscsend(addr, "/parvis/param/stage_light", "s", &["#ff0000"]);
    oscsend(addr, "/parvis/param/lanterns", "fff", &["0", "0", "1"]);
    oscsend(addr, "/parvis/param/sky", "i", &["3"]);
    oscsend(addr, "/parvis/param/banner", "F", &[]);
    oscsend(addr, "/parvis/show/play", "i", &["1"]);
    oscsend(addr, "/parvis/show/play", "i", &["0"]); // the button's release: nothing
    wait_logged(&log, "the transport playing", |l| {
        l.iter().any(|e| matches!(&e.command, VenueCommand::Transport { action: TransportAction::Play, .. }))
    });
    oscsend(addr, "/parvis/show/go", "", &[]);
    oscsend(addr, "/parvis/cue/3", "", &[]);
    wait_logged(&log, "cue 3 fired", |l| {
        l.iter().any(|e| matches!(&e.command, VenueCommand::CueFired { cue, .. } if cue == "3"))
    });

    let entries = logged(&log);
    let from_osc: Vec<&VenueCommand> = entries
        .iter()
        .filter(|e| matches!(&e.origin, CommandOrigin::Control(o) if o.starts_with("osc 127.0.0.1:")))
        .map(|e| &e.command)
        .collect();
    let set = |name: &str| {
        from_osc.iter().find_map(|c| match c {
            VenueCommand::SetParam { name: n, value } if n == name => Some(value.clone()),
            _ => None,
        })
    };
    assert_eq!(set("fog"), Some(ParamValue::Float(0.1)), "only the good fog value applied: {from_osc:#?}");
    assert_eq!(set("sky"), Some(ParamValue::Enum("night".into())));
    assert_eq!(set("banner"), Some(ParamValue::Bool(false)));
    assert!(matches!(set("stage_light"), Some(ParamValue::Colour(c)) if c.srgba == [1.0, 0.0, 0.0, 1.0]));
    assert!(matches!(set("lanterns"), Some(ParamValue::Colour(c)) if c.srgba == [0.0, 0.0, 1.0, 1.0]));
    let sets = from_osc.iter().filter(|c| matches!(c, VenueCommand::SetParam { .. })).count();
    assert_eq!(sets, 5, "bad values must not apply: {from_osc:#?}");
    let plays =
        from_osc.iter().filter(|c| matches!(c, VenueCommand::Transport { action: TransportAction::Play, .. })).count();
    assert_eq!(plays, 1, "a button's release is not a press");
    // GO fired the cue in standby (4, the first manual cue); /parvis/cue/3 jumped to cue 3.
    let cues: Vec<&str> = entries
        .iter()
        .filter_map(|e| match &e.command {
            VenueCommand::CueFired { cue, .. } => Some(cue.as_str()),
            _ => None,
        })
        .collect();
    assert!(cues.contains(&"4") && cues.ends_with(&["3"]), "{cues:?}");

    // The echoes, as liblo read them.
    let echoes = dump.wait_for("/parvis/cue/fired ssff \"evening\" \"3\"", Duration::from_secs(10));
    for want in [
        "/parvis/param/fog f 0.100000",
        "/parvis/param/stage_light fff 1.000000 0.000000 0.000000",
        "/parvis/param/sky s \"night\"",
        "/parvis/param/banner F",
        "/parvis/show/state ssf \"evening\" \"playing\"",
        "/parvis/cue/fired ssff \"evening\" \"4\"",
    ] {
        assert!(echoes.contains(want), "no echo {want:?} in:\n{echoes}");
    }
    // The bad packets were counted and said, not once per packet.
    let stderr = venue.wait_for("more malformed packets since the last line", Duration::from_secs(5));
    assert!(stderr.contains("malformed OSC packet"), "{stderr}");
    assert!(stderr.contains("/parvis/param/fog: stage parameter \"fog\" takes 0 to 0.2, not 9"), "{stderr}");
    assert!(stderr.lines().count() < 200, "the flood flooded the log: {} lines", stderr.lines().count());
    drop(venue);
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn osc_from_an_address_not_allowed_is_dropped_unread() {
    let dir = std::env::temp_dir().join(format!("parvis-osc-allow-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let log = dir.join("osc.jsonl");
    let _ = std::fs::remove_file(&log);
    let (venue, addr) = venue(&log, &["--osc-allow", "10.0.0.0/8"]);
    oscsend(addr, "/parvis/param/fog", "f", &["0.1"]);
    let stderr = venue.wait_for("not an allowed address", Duration::from_secs(20));
    assert!(stderr.contains("allowed: 10.0.0.0/8"), "{stderr}");
    std::thread::sleep(Duration::from_millis(300));
    assert!(
        !logged(&log).iter().any(|e| matches!(e.origin, CommandOrigin::Control(_))),
        "a command from a refused address was applied"
    );
    drop(venue);
    // A bad list stops the venue before it starts, naming the entry.
    let out = Command::new(env!("CARGO_BIN_EXE_parvis"))
        .args(["run", "--no-render", "--no-audience", "--frames", "1", "--osc", "0", "--osc-allow", "desk.local"])
        .current_dir(root())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success()
            && stderr.contains("--osc-allow expected an IP address or a range like 10.0.0.0/24, found \"desk.local\""),
        "{stderr}"
    );
    let _ = std::fs::remove_dir_all(dir);
}

fn curl(url: &str) -> (String, String) {
    let out = Command::new(tool("curl")).args(["-s", "-w", "\n%{http_code}", url]).output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let (body, code) = text.rsplit_once('\n').unwrap();
    (body.to_owned(), code.to_owned())
}

/// OSCQuery read by a real HTTP client (curl): every stage parameter of the scene with its
/// type, range and current value, the show's cues, and HOST_INFO naming the OSC port.
#[test]
fn oscquery_describes_every_parameter_and_cue_to_a_real_client() {
    let dir = std::env::temp_dir().join(format!("parvis-oscquery-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let log = dir.join("q.jsonl");
    let _ = std::fs::remove_file(&log);
    let (venue, osc_addr) = venue(&log, &["--oscquery", "127.0.0.1:0"]);
    let text = venue.wait_for("OSCQuery at http://", Duration::from_secs(20));
    let base = format!("http://{}", text.split("OSCQuery at http://").nth(1).unwrap().split('/').next().unwrap());

    let (body, code) = curl(&format!("{base}/"));
    assert_eq!(code, "200", "{body}");
    let tree: serde_json::Value = serde_json::from_str(&body).unwrap();
    let scene = parvis::model::scene::validate::parse_scene(parvis::model::scene::DEFAULT_SCENE).unwrap();
    let params = &tree["CONTENTS"]["parvis"]["CONTENTS"]["param"]["CONTENTS"];
    assert_eq!(params.as_object().unwrap().len(), scene.params.len());
    for def in &scene.params {
        let node = &params[&def.name];
        assert_eq!(node["FULL_PATH"], format!("/parvis/param/{}", def.name));
        assert_eq!(node["ACCESS"], 3);
        let (kind, value) = match &def.kind {
            parvis::model::scene::format::ParamKind::Float { default, min, max } => {
                assert_eq!(node["RANGE"][0]["MIN"].as_f64().unwrap() as f32, *min);
                assert_eq!(node["RANGE"][0]["MAX"].as_f64().unwrap() as f32, *max);
                ("f", serde_json::json!([default]))
            }
            parvis::model::scene::format::ParamKind::Colour { .. } => ("r", node["VALUE"].clone()),
            parvis::model::scene::format::ParamKind::Bool { default } => {
                (if *default { "T" } else { "F" }, serde_json::json!([default]))
            }
            parvis::model::scene::format::ParamKind::Enum { default, options } => {
                assert_eq!(node["RANGE"][0]["VALS"], serde_json::json!(options));
                ("s", serde_json::json!([default]))
            }
        };
        assert_eq!((node["TYPE"].as_str().unwrap(), &node["VALUE"]), (kind, &value), "{}", def.name);
    }
    let cues = &tree["CONTENTS"]["parvis"]["CONTENTS"]["cue"]["CONTENTS"];
    assert_eq!(cues.as_object().unwrap().len(), 7);
    assert_eq!(cues["3"]["DESCRIPTION"], "Petals at 01:00:20:00");

    let (info, _) = curl(&format!("{base}/?HOST_INFO"));
    let info: serde_json::Value = serde_json::from_str(&info).unwrap();
    assert_eq!(info["OSC_PORT"], osc_addr.port());
    assert_eq!(info["OSC_TRANSPORT"], "UDP");
    // Values follow the venue.
    oscsend(osc_addr, "/parvis/param/fog", "f", &["0.1"]);
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let (value, code) = curl(&format!("{base}/parvis/param/fog?VALUE"));
        assert_eq!(code, "200");
        let value: serde_json::Value = serde_json::from_str(&value).unwrap();
        if (value["VALUE"][0].as_f64().unwrap() - 0.1).abs() < 1e-6 {
            break;
        }
        assert!(Instant::now() < deadline, "the description never showed fog = 0.1: {value}");
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(curl(&format!("{base}/parvis/nothing")).1, "404");
    assert_eq!(curl(&format!("{base}/parvis/param/fog?UNIT")).1, "404");
    drop(venue);
    let _ = std::fs::remove_dir_all(dir);
}
