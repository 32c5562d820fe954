//! Wiring the audience's edges for `parvis run`: the web server, the Twitch bridge, and their settings from the command line and the environment.

use std::time::Duration;

use anyhow::{Context, Result, bail};

use super::args::*;
use parvis::app::VenueSetup;
use parvis::edges::audience::fanout::Pace;
use parvis::edges::audience::server::AudienceServer;
use parvis::edges::audience::shared::AudienceConfig;
use parvis::model::audience::moderation::Blocklist;

/// Starts the audience edge and says where the page is.
pub fn start_audience(args: &RunArgs, setup: &VenueSetup) -> Result<Option<AudienceServer>> {
    let twitch = twitch_config(args)?;
    if args.no_audience {
        if twitch.is_some() {
            bail!("--twitch feeds the audience pipeline, which --no-audience turns off");
        }
        return Ok(None);
    }
    let config = audience_config(args, setup)?;
    let server = AudienceServer::start(config).with_context(|| {
        format!(
            "cannot start the audience server on {} (choose another address with --audience, or --no-audience)",
            args.audience
        )
    })?;
    eprintln!("parvis: audience page at http://{}/ (WebSocket /ws, metrics /metrics)", server.local_addr);
    if let Some(config) = twitch {
        let what = format!(
            "{} on {}{}",
            config.channels.join(", "),
            config.endpoint,
            if config.login.is_some() { "" } else { ", read-only" }
        );
        let bridge = parvis::edges::bridge::twitch::TwitchBridge::new(config)?;
        parvis::edges::bridge::start(server.runtime(), server.hub(), Box::new(bridge), "twitch:");
        eprintln!("parvis: reading the chat of {what}");
    }
    Ok(Some(server))
}

/// The audience server's settings from the command line.
pub fn audience_config(args: &RunArgs, setup: &VenueSetup) -> Result<AudienceConfig> {
    let web_root = setup.assets.dir().join("web");
    let mut config = AudienceConfig::new(args.audience, web_root, setup.scene.venue.title.clone());
    config.mod_token = args.mod_token.clone().filter(|t| !t.is_empty());
    if args.no_default_blocklist {
        config.blocklist = Blocklist::new(std::iter::empty::<&str>());
    }
    for path in &args.blocklist {
        let text =
            std::fs::read_to_string(path).with_context(|| format!("cannot read the blocklist {}", path.display()))?;
        for line in text.lines() {
            let word = line.split('#').next().unwrap_or_default().trim();
            if !word.is_empty() {
                config.blocklist.insert(word);
            }
        }
    }
    config.limits.messages_per_10s = args.rate.max(1);
    config.messages_per_10s_per_address = args.address_rate;
    config.max_connections_per_address = args.max_per_address;
    config.max_connections = args.max_connections;
    config.mod_origins.clone_from(&args.mod_origins);
    config.ws_origins.clone_from(&args.ws_origins);
    config.send_timeout = std::time::Duration::from_secs_f64(args.send_timeout.max(0.1));
    if !(0.0..=10.0).contains(&args.fanout_interval) {
        bail!("--fanout-interval {} is not between 0 and 10 seconds", args.fanout_interval);
    }
    // A shard's members are told apart from every other instance's by its id.
    config.member_prefix.clone_from(&args.nats.shard);
    config.fanout = Pace {
        interval: std::time::Duration::from_secs_f64(args.fanout_interval),
        frames_per_second: args.fanout_rate,
    };
    Ok(config)
}

pub fn attach_audience(app: &mut bevy::app::App, server: AudienceServer, args: &RunArgs) {
    server.attach(app);
    let mut audience = app.world_mut().resource_mut::<parvis::engine::audience::Audience>();
    audience.chat_lines_per_second = args.chat_display_rate;
    audience.stream_delay = stream_delay(args);
    if args.nats.shard.is_some() {
        audience.number_lines_from(parvis::engine::audience::SHARD_LINE_IDS);
    }
}

/// Starts the OSC edge if `--osc` or `--osc-out` asks for it, and links it to the venue.
pub fn attach_osc(app: &mut bevy::app::App, args: &RunArgs, title: &str) -> Result<()> {
    use parvis::edges::osc::{OscConfig, OscEdge};
    use parvis::model::osc::AllowList;
    if args.osc.is_none() && args.osc_out.is_empty() && args.oscquery.is_none() {
        return Ok(());
    }
    let allow = if args.osc_allow.is_empty() {
        AllowList::loopback()
    } else {
        AllowList::parse(args.osc_allow.iter().map(String::as_str)).map_err(|e| anyhow::anyhow!("--osc-allow {e}"))?
    };
    let doorbell = app.world().resource::<parvis::engine::rest::Rest>().doorbell.clone();
    let (hub, link, echoes) = parvis::engine::control::control_link(doorbell, !args.osc_out.is_empty());
    let name = title.to_owned();
    let config =
        OscConfig { listen: args.osc, allow: allow.clone(), targets: args.osc_out.clone(), query: args.oscquery, name };
    let edge = OscEdge::start(config, hub, echoes).with_context(|| {
        format!(
            "cannot open the OSC sockets (OSC {}, OSCQuery {}): choose other addresses with --osc and --oscquery",
            args.osc.map_or("off".into(), |a| a.to_string()),
            args.oscquery.map_or("off".into(), |a| a.to_string())
        )
    })?;
    if args.osc.is_some() {
        eprintln!("parvis: OSC on udp://{} from {allow}", edge.local_addr);
    }
    if let Some(addr) = edge.query_addr {
        eprintln!("parvis: OSCQuery at http://{addr}/");
    }
    for target in &args.osc_out {
        eprintln!("parvis: OSC echoes to udp://{target}");
    }
    app.insert_resource(link).insert_resource(edge);
    Ok(())
}

/// Starts taking motion capture for the scene's performers that have a VMC source, and the
/// recording of it if `--record-performers` asks.
pub fn attach_performers(
    app: &mut bevy::app::App,
    args: &RunArgs,
    performers: &[parvis::model::scene::format::PerformerDef],
) -> Result<()> {
    use parvis::engine::performer::{PerformerRecorder, pose_link, vmc_ports};
    use parvis::model::osc::AllowList;
    if let Some(path) = &args.record_performers {
        let recorder = PerformerRecorder::create(path)
            .with_context(|| format!("--record-performers: cannot write {}", path.display()))?;
        eprintln!("parvis: recording the performers to {}", path.display());
        app.insert_resource(recorder);
    }
    let ports = vmc_ports(performers);
    // A follower's performers move as the main stage's do: their poses come over NATS
    // (`attach_nats`), and the capture rigs send to the authority only.
    if ports.is_empty() || args.nats.follow {
        return Ok(());
    }
    let allow = if args.vmc_allow.is_empty() {
        AllowList::loopback()
    } else {
        AllowList::parse(args.vmc_allow.iter().map(String::as_str)).map_err(|e| anyhow::anyhow!("--vmc-allow {e}"))?
    };
    let doorbell = app.world().resource::<parvis::engine::rest::Rest>().doorbell.clone();
    let (hub, link) = pose_link(doorbell);
    if let Some(audience) = app.world().get_resource::<parvis::engine::audience::hub::AudienceLink>() {
        audience.hub.metric_sections.write().expect("metric sections").push(link.stats.clone());
    }
    let edge = parvis::edges::vmc::VmcEdge::start(args.vmc_host, ports, allow.clone(), hub)
        .context("motion capture: choose another port in the scene, or another --vmc-host")?;
    for (addr, names) in &edge.sockets {
        eprintln!("parvis: VMC for {} on udp://{addr} from {allow}", names.join(", "));
    }
    app.insert_resource(link).insert_resource(edge);
    Ok(())
}

/// Starts live captions if `--captions-audio` asks: the audio command and the recogniser are
/// started before the venue runs, so a command that cannot start stops it with its reason.
pub fn attach_captions(app: &mut bevy::app::App, args: &RunArgs) -> Result<()> {
    use parvis::edges::captions::{CaptionsConfig, start_captions};
    let Some(audio) = &args.captions_audio else { return Ok(()) };
    if !(0.0..=10.0).contains(&args.captions_delay) {
        anyhow::bail!("--captions-delay: expected 0 to 10 seconds, found {}", args.captions_delay);
    }
    if !parvis::model::lang::is_language_tag(&args.captions_lang) {
        anyhow::bail!("--captions-lang: expected a language tag such as en or fr-CA, found {:?}", args.captions_lang);
    }
    let language = args.captions_lang.clone();
    let name = args.captions_engine.split_whitespace().next().unwrap_or("engine");
    let name = std::path::Path::new(name).file_stem().map_or(name.to_owned(), |s| s.to_string_lossy().into_owned());
    let config = CaptionsConfig { audio: audio.clone(), engine: args.captions_engine.clone(), name };
    let doorbell = app.world().resource::<parvis::engine::rest::Rest>().doorbell.clone();
    let link = start_captions(config, doorbell).context("--captions-audio")?;
    if let Some(audience) = app.world().get_resource::<parvis::engine::audience::hub::AudienceLink>() {
        audience.hub.metric_sections.write().expect("metric sections").push(link.stats.clone());
    }
    eprintln!("parvis: live captions ({language}) through {}", args.captions_engine);
    let mut captions = app.world_mut().resource_mut::<parvis::engine::captions::LiveCaptions>();
    captions.language = language;
    captions.delay = args.captions_delay;
    app.insert_resource(link);
    Ok(())
}

/// Starts chasing `--ltc`'s timecode: the file is read (and refused, naming why) before the
/// venue runs.
pub fn attach_timecode(app: &mut bevy::app::App, args: &RunArgs) -> Result<()> {
    if let Some(port) = &args.mtc {
        let (readings, link) = parvis::engine::show::chase::timecode_link(
            format!("mtc {port}"),
            parvis::model::show::chase::ChasePolicy::default(),
        );
        let doorbell = app.world().resource::<parvis::engine::rest::Rest>().doorbell.clone();
        let name = parvis::edges::timecode::start_mtc_port(port, readings, doorbell)
            .map_err(|e| anyhow::anyhow!("--mtc: {e}"))?;
        eprintln!("parvis: chasing MIDI Time Code from {name}");
        app.insert_resource(link);
        return Ok(());
    }
    let Some(path) = &args.ltc else { return Ok(()) };
    let (samples, rate) = parvis::edges::timecode::read_wav(path).context("--ltc")?;
    let source = format!("ltc {}", path.display());
    let (readings, link) =
        parvis::engine::show::chase::timecode_link(source, parvis::model::show::chase::ChasePolicy::default());
    let doorbell = app.world().resource::<parvis::engine::rest::Rest>().doorbell.clone();
    parvis::edges::timecode::start_ltc_file(samples, rate, readings, doorbell).context("--ltc")?;
    eprintln!("parvis: chasing LTC from {} ({rate} Hz)", path.display());
    app.insert_resource(link);
    Ok(())
}

/// The declared delay; a measured one (`auto`) starts at 0 until the first measurement.
pub fn stream_delay(args: &RunArgs) -> Duration {
    match args.stream_delay {
        StreamDelayArg::Seconds(s) => Duration::from_secs_f64(s),
        StreamDelayArg::Auto => Duration::ZERO,
    }
}

/// The Twitch bridge's settings from the command line and the environment, checked.
pub fn twitch_config(args: &RunArgs) -> Result<Option<parvis::edges::bridge::twitch::TwitchConfig>> {
    use parvis::edges::bridge::twitch::{Login, TwitchConfig};
    let Some(channels) = &args.twitch else { return Ok(None) };
    let mut config = TwitchConfig::new(channels);
    if let Some(server) = &args.twitch_server {
        config.endpoint = server.parse().context("--twitch-server")?;
    }
    if let Some(path) = &args.twitch_ca {
        let pem = std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
        config.trust_pem(&pem).with_context(|| format!("--twitch-ca {}", path.display()))?;
    }
    let token = std::env::var("PARVIS_TWITCH_TOKEN").ok().filter(|t| !t.trim().is_empty());
    config.login = match (&args.twitch_nick, token) {
        (Some(nick), Some(token)) => Some(Login::new(nick, &token)),
        (Some(_), None) => {
            bail!("--twitch-nick needs the bot's OAuth token in the PARVIS_TWITCH_TOKEN environment variable")
        }
        (None, Some(_)) => bail!(
            "PARVIS_TWITCH_TOKEN is set: name the bot account with --twitch-nick too, or unset it to read anonymously"
        ),
        (None, None) => None,
    };
    config.validate().context("--twitch")?;
    Ok(Some(config))
}
