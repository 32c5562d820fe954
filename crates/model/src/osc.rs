//! OSC, the control room's protocol (lighting desks, TouchDesigner, Chataigne, QLab): packets
//! read into messages with bounds that a hostile packet cannot get round, the venue's address
//! space turned into venue commands, and the messages the venue echoes so that desks follow it.
//!
//! Address space (all under `/parvis`):
//! - `/parvis/param/<name>`: a stage parameter. Floats take a number (`f`, `d`, `i`, `h`) or a
//!   string; colours three numbers 0–1 (`fff`), an OSC colour (`r`) or a string `#rrggbb`;
//!   booleans `T`/`F`, a number (0 is false) or a string; enums a string, or a number as the
//!   index of the option.
//! - `/parvis/show/{play,pause,stop,go}`, `/parvis/show/seek` (seconds), `/parvis/cue/<id>`
//!   (jump to the cue and fire it): the show on the transport. A button that sends 1 when
//!   pressed and 0 when released acts on the press only.
//!
//! OSC has no authentication: what it can do is staff work, so the edge accepts it only from
//! listed addresses.

use rosc::{OscBundle, OscColor, OscMessage, OscPacket, OscTime, OscType};
use thiserror::Error;

use crate::command::{TransportAction, VenueCommand};
use crate::params::{ParamError, ParamValue, StageParams};
use crate::program::ProgramAction;
use crate::scene::format::{Colour, Easing, Overlay, ParamKind};

/// Largest OSC packet read (a UDP datagram's payload).
pub const MAX_PACKET: usize = 65_507;
/// Most bundles in one packet: rosc reads nested bundles recursively, so depth is bounded by
/// refusing packets with more than this many.
pub const MAX_BUNDLES: usize = 16;
/// Most messages taken from one packet.
pub const MAX_MESSAGES: usize = 256;
/// Most array openings (`[`) in one packet, for the same reason as bundles.
const MAX_ARRAYS: usize = 64;
/// Most arguments in one message: no address takes more than three, and type tags without a
/// payload (`T`, `F`, `N`, `I`) would otherwise make a 64 KB packet tens of thousands of values.
pub const MAX_ARGUMENTS: usize = 64;

/// Why an OSC packet or message was not used.
#[derive(Debug, Clone, PartialEq, Error)]
pub enum OscError {
    /// The bytes are not an OSC packet.
    #[error("malformed OSC packet: {0}")]
    Malformed(String),
    /// A packet over the limits.
    #[error("OSC packet refused: {0}")]
    TooBig(String),
    /// An address outside the venue's space.
    #[error(
        "unknown OSC address {0:?} (the venue answers /parvis/param/<name>, /parvis/show/<action>, /parvis/cue/<id>)"
    )]
    UnknownAddress(String),
    /// Arguments of the wrong type or number.
    #[error("{addr}: expected {expected}, found {found}")]
    Arguments {
        /// The address.
        addr: String,
        /// What it takes.
        expected: String,
        /// The type tags received.
        found: String,
    },
    /// The parameter refused the value.
    #[error("{addr}: {error}")]
    Param {
        /// The address.
        addr: String,
        /// Why.
        error: ParamError,
    },
    /// A transport address with no show on the transport and none in the venue.
    #[error("{0}: the venue has no show")]
    NoShow(String),
}

/// Reads a packet into its messages, bundles flattened in order (their time tags are not
/// waited for: a message applies in the next frame).
pub fn decode(bytes: &[u8]) -> Result<Vec<OscMessage>, OscError> {
    if bytes.len() > MAX_PACKET {
        return Err(OscError::TooBig(format!("{} bytes, at most {MAX_PACKET}", bytes.len())));
    }
    let bundles = bytes.windows(8).filter(|w| w == b"#bundle\0").count();
    if bundles > MAX_BUNDLES {
        return Err(OscError::TooBig(format!("{bundles} bundles, at most {MAX_BUNDLES}")));
    }
    if bytes.iter().filter(|b| **b == b'[').count() > MAX_ARRAYS {
        return Err(OscError::TooBig(format!("more than {MAX_ARRAYS} arrays")));
    }
    let (rest, packet) = rosc::decoder::decode_udp(bytes).map_err(|e| OscError::Malformed(e.to_string()))?;
    if !rest.is_empty() {
        return Err(OscError::Malformed(format!("{} bytes after the packet", rest.len())));
    }
    let mut out = Vec::new();
    flatten(packet, &mut out)?;
    Ok(out)
}

fn flatten(packet: OscPacket, out: &mut Vec<OscMessage>) -> Result<(), OscError> {
    match packet {
        OscPacket::Message(m) => {
            if m.args.len() > MAX_ARGUMENTS {
                return Err(OscError::TooBig(format!(
                    "{} arguments in a message, at most {MAX_ARGUMENTS}",
                    m.args.len()
                )));
            }
            if out.len() == MAX_MESSAGES {
                return Err(OscError::TooBig(format!("more than {MAX_MESSAGES} messages")));
            }
            out.push(m);
        }
        OscPacket::Bundle(b) => {
            for p in b.content {
                flatten(p, out)?;
            }
        }
    }
    Ok(())
}

pub use crate::osc_tags::type_tags;

fn number(arg: &OscType) -> Option<f64> {
    match arg {
        OscType::Float(v) => Some(f64::from(*v)),
        OscType::Double(v) => Some(*v),
        OscType::Int(v) => Some(f64::from(*v)),
        OscType::Long(v) => Some(*v as f64),
        _ => None,
    }
}

/// The venue command an OSC message asks for; `Ok(None)` for a button's release. `show` is the
/// show on the transport, else the venue's first.
pub fn command_for(
    msg: &OscMessage,
    params: &StageParams,
    show: Option<&str>,
) -> Result<Option<VenueCommand>, OscError> {
    let addr = msg.addr.as_str();
    let wrong = |expected: &str| OscError::Arguments {
        addr: addr.to_owned(),
        expected: expected.to_owned(),
        found: type_tags(&msg.args),
    };
    if let Some(name) = addr.strip_prefix("/parvis/param/") {
        let def = params.def(name).map_err(|_| OscError::UnknownAddress(addr.to_owned()))?;
        let param = |error| OscError::Param { addr: addr.to_owned(), error };
        let value = match (&def.kind, msg.args.as_slice()) {
            (kind, [OscType::String(text)]) => ParamValue::parse_for(name, kind, text).map_err(param)?,
            (ParamKind::Float { .. }, [arg]) => ParamValue::Float(number(arg).ok_or_else(|| wrong("a number"))? as f32),
            (ParamKind::Colour { .. }, [r, g, b]) => {
                let c = [number(r), number(g), number(b)];
                let [Some(r), Some(g), Some(b)] = c else {
                    return Err(wrong("three numbers 0–1, a colour or \"#rrggbb\""));
                };
                if ![r, g, b].iter().all(|v| (0.0..=1.0).contains(v)) {
                    return Err(wrong("three numbers 0–1"));
                }
                ParamValue::Colour(Colour::rgb(r as f32, g as f32, b as f32))
            }
            (ParamKind::Colour { .. }, [OscType::Color(c)]) => {
                ParamValue::Colour(Colour { srgba: [c.red, c.green, c.blue, c.alpha].map(|v| f32::from(v) / 255.0) })
            }
            (ParamKind::Bool { .. }, [OscType::Bool(b)]) => ParamValue::Bool(*b),
            (ParamKind::Bool { .. }, [arg]) => {
                ParamValue::Bool(number(arg).ok_or_else(|| wrong("T, F, a number or a string"))? != 0.0)
            }
            (ParamKind::Enum { options, .. }, [arg]) => {
                let index = number(arg).ok_or_else(|| wrong("a string, or the index of an option"))?;
                let option = (index >= 0.0 && index.fract() == 0.0).then(|| options.get(index as usize)).flatten();
                ParamValue::Enum(
                    option
                        .ok_or_else(|| {
                            wrong(&format!("an option index from 0 to {}", options.len().saturating_sub(1)))
                        })?
                        .clone(),
                )
            }
            (ParamKind::Float { .. }, _) => return Err(wrong("one number or a string")),
            (ParamKind::Colour { .. }, _) => return Err(wrong("three numbers 0–1, a colour or \"#rrggbb\"")),
            (ParamKind::Bool { .. }, _) => return Err(wrong("T, F, a number or a string")),
            (ParamKind::Enum { .. }, _) => return Err(wrong("a string, or the index of an option")),
        };
        params.check(name, &value).map_err(param)?;
        return Ok(Some(VenueCommand::SetParam { name: name.to_owned(), value }));
    }
    let transport = |action| {
        show.map(|s| Some(VenueCommand::Transport { show: s.to_owned(), action }))
            .ok_or_else(|| OscError::NoShow(addr.to_owned()))
    };
    // A button's release (a lone 0) does nothing; its press (anything else, or no argument) acts.
    let released =
        matches!(msg.args.as_slice(), [arg] if number(arg) == Some(0.0) || matches!(arg, OscType::Bool(false)));
    let press = |action| {
        if released {
            return Ok(None);
        }
        if msg.args.len() > 1 {
            return Err(wrong("no argument, or 1 for a button's press"));
        }
        transport(action)
    };
    if let Some(id) = addr.strip_prefix("/parvis/cue/") {
        if id.is_empty() || id.contains('/') {
            return Err(OscError::UnknownAddress(addr.to_owned()));
        }
        return press(TransportAction::Jump { cue: id.to_owned() });
    }
    // The director: `/parvis/program/cut "stage"`, `/parvis/program/move "aerial" 8`,
    // `/parvis/program/overlay "credits" 1` (a button's press shows, its release hides).
    let program = |action| Ok(Some(VenueCommand::Program { action }));
    match (addr, msg.args.as_slice()) {
        ("/parvis/program/cut", [OscType::String(viewpoint)]) => {
            return program(ProgramAction::Cut { viewpoint: viewpoint.clone() });
        }
        ("/parvis/program/cut", _) => return Err(wrong("a viewpoint's name")),
        ("/parvis/program/move", [OscType::String(viewpoint), seconds]) => {
            let seconds = number(seconds).ok_or_else(|| wrong("a viewpoint's name and seconds"))? as f32;
            return program(ProgramAction::Move { viewpoint: viewpoint.clone(), seconds, easing: Easing::InOut });
        }
        ("/parvis/program/move", _) => return Err(wrong("a viewpoint's name and seconds")),
        ("/parvis/program/overlay", [OscType::String(name), state]) => {
            let overlay =
                Overlay::from_name(name).ok_or_else(|| wrong("credits, poll, chat, stamp or surtitles, and 1 or 0"))?;
            let visible = match state {
                OscType::Bool(b) => *b,
                other => number(other).ok_or_else(|| wrong("an overlay's name and 1 or 0"))? != 0.0,
            };
            return program(ProgramAction::Overlay { overlay, visible });
        }
        ("/parvis/program/overlay", _) => return Err(wrong("an overlay's name and 1 or 0")),
        _ => {}
    }
    match addr {
        "/parvis/show/play" => press(TransportAction::Play),
        "/parvis/show/pause" => press(TransportAction::Pause),
        "/parvis/show/stop" => press(TransportAction::Stop),
        "/parvis/show/go" => press(TransportAction::Go),
        "/parvis/show/seek" => match msg.args.as_slice() {
            [arg] => transport(TransportAction::Seek { seconds: number(arg).ok_or_else(|| wrong("seconds"))? }),
            _ => Err(wrong("seconds")),
        },
        _ => Err(OscError::UnknownAddress(addr.to_owned())),
    }
}

/// The OSC arguments a parameter's value is echoed with: what a desk would send to set it.
pub fn value_args(value: &ParamValue) -> Vec<OscType> {
    match value {
        ParamValue::Float(v) => vec![OscType::Float(*v)],
        ParamValue::Colour(c) => c.srgba[..3].iter().map(|v| OscType::Float(*v)).collect(),
        ParamValue::Bool(b) => vec![OscType::Bool(*b)],
        ParamValue::Enum(s) => vec![OscType::String(s.clone())],
    }
}

/// `/parvis/param/<name>` with the value.
pub fn param_message(name: &str, value: &ParamValue) -> OscMessage {
    OscMessage { addr: format!("/parvis/param/{name}"), args: value_args(value) }
}

/// `/parvis/cue/fired` show, cue, planned and actual seconds.
pub fn cue_fired_message(show: &str, cue: &str, planned: f64, actual: f64) -> OscMessage {
    OscMessage {
        addr: "/parvis/cue/fired".into(),
        args: vec![
            OscType::String(show.into()),
            OscType::String(cue.into()),
            OscType::Float(planned as f32),
            OscType::Float(actual as f32),
        ],
    }
}

/// `/parvis/show/state` show, state (`playing`, `paused`, `stopped`) and position in seconds.
pub fn transport_message(show: &str, state: &str, position: f64) -> OscMessage {
    OscMessage {
        addr: "/parvis/show/state".into(),
        args: vec![OscType::String(show.into()), OscType::String(state.into()), OscType::Float(position as f32)],
    }
}

/// Messages as one packet: a lone message as itself, several in an immediate bundle.
pub fn encode(mut messages: Vec<OscMessage>) -> Vec<u8> {
    let packet = if messages.len() == 1 {
        OscPacket::Message(messages.remove(0))
    } else {
        OscPacket::Bundle(OscBundle {
            timetag: OscTime { seconds: 0, fractional: 1 },
            content: messages.into_iter().map(OscPacket::Message).collect(),
        })
    };
    // Encoding our own well-formed messages cannot fail.
    rosc::encoder::encode(&packet).unwrap_or_default()
}

/// An OSC colour from a parameter's colour, for desks that prefer the `r` type.
pub fn osc_colour(c: &Colour) -> OscColor {
    let [red, green, blue, alpha] = c.srgba.map(|v| (v.clamp(0.0, 1.0) * 255.0).round() as u8);
    OscColor { red, green, blue, alpha }
}

/// Source addresses OSC is accepted from: single addresses or CIDR ranges
/// (`127.0.0.1`, `10.0.0.0/24`, `::1`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AllowList(Vec<(std::net::IpAddr, u8)>);

impl AllowList {
    /// Loopback only (`127.0.0.0/8` and `::1`): the default.
    pub fn loopback() -> Self {
        Self(vec![(std::net::Ipv4Addr::LOCALHOST.into(), 8), (std::net::Ipv6Addr::LOCALHOST.into(), 128)])
    }

    /// Reads entries such as `192.168.1.20` or `10.0.0.0/24`.
    pub fn parse<'a>(entries: impl IntoIterator<Item = &'a str>) -> Result<Self, String> {
        let mut list = Vec::new();
        for entry in entries {
            let (ip, bits) = match entry.split_once('/') {
                Some((ip, bits)) => (ip, Some(bits)),
                None => (entry, None),
            };
            let ip: std::net::IpAddr = ip
                .trim()
                .parse()
                .map_err(|_| format!("expected an IP address or a range like 10.0.0.0/24, found {entry:?}"))?;
            let max = if ip.is_ipv4() { 32 } else { 128 };
            let bits = match bits {
                Some(b) => b
                    .trim()
                    .parse::<u8>()
                    .ok()
                    .filter(|b| *b <= max)
                    .ok_or_else(|| format!("{entry:?}: the prefix length goes from 0 to {max}"))?,
                None => max,
            };
            list.push((ip, bits));
        }
        Ok(Self(list))
    }

    /// Whether `ip` is in the list (an IPv4 address mapped into IPv6 counts as itself).
    pub fn allows(&self, ip: std::net::IpAddr) -> bool {
        let ip = match ip {
            std::net::IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, std::net::IpAddr::V4),
            v4 => v4,
        };
        self.0.iter().any(|(net, bits)| match (net, ip) {
            (std::net::IpAddr::V4(n), std::net::IpAddr::V4(a)) => {
                let mask = if *bits == 0 { 0 } else { u32::MAX << (32 - u32::from(*bits)) };
                u32::from(*n) & mask == u32::from(a) & mask
            }
            (std::net::IpAddr::V6(n), std::net::IpAddr::V6(a)) => {
                let mask = if *bits == 0 { 0 } else { u128::MAX << (128 - u32::from(*bits)) };
                u128::from(*n) & mask == u128::from(a) & mask
            }
            _ => false,
        })
    }
}

impl std::fmt::Display for AllowList {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let entries: Vec<String> = self.0.iter().map(|(ip, bits)| format!("{ip}/{bits}")).collect();
        f.write_str(&entries.join(", "))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scene::format::SceneFile;

    fn params() -> StageParams {
        let text = r##"(version: 1, venue: (title: "t"), params: [
            (name: "fog", kind: Float(default: 0.0, min: 0.0, max: 0.2)),
            (name: "light", kind: Colour(default: "#ffffff")),
            (name: "banner", kind: Bool(default: true)),
            (name: "sky", kind: Enum(default: "day", options: ["day", "night"])),
        ])"##;
        let scene: SceneFile = ron::from_str(text).unwrap();
        StageParams::from_scene(&scene)
    }

    fn msg(addr: &str, args: Vec<OscType>) -> OscMessage {
        OscMessage { addr: addr.into(), args }
    }

    #[test]
    fn parameters_take_the_types_desks_send() {
        let p = params();
        let set = |m: OscMessage| match command_for(&m, &p, None) {
            Ok(Some(VenueCommand::SetParam { value, .. })) => value,
            other => panic!("{other:?}"),
        };
        assert_eq!(set(msg("/parvis/param/fog", vec![OscType::Float(0.1)])), ParamValue::Float(0.1));
        assert_eq!(set(msg("/parvis/param/fog", vec![OscType::Double(0.1)])), ParamValue::Float(0.1));
        assert_eq!(set(msg("/parvis/param/fog", vec![OscType::String("0.05".into())])), ParamValue::Float(0.05));
        let red = ParamValue::Colour(Colour::rgb(1.0, 0.0, 0.0));
        assert_eq!(
            set(msg("/parvis/param/light", vec![OscType::Float(1.0), OscType::Int(0), OscType::Float(0.0)])),
            red
        );
        assert_eq!(set(msg("/parvis/param/light", vec![OscType::String("#ff0000".into())])), red);
        let c = OscColor { red: 255, green: 0, blue: 0, alpha: 255 };
        assert_eq!(set(msg("/parvis/param/light", vec![OscType::Color(c)])), red);
        assert_eq!(set(msg("/parvis/param/banner", vec![OscType::Bool(false)])), ParamValue::Bool(false));
        assert_eq!(set(msg("/parvis/param/banner", vec![OscType::Int(1)])), ParamValue::Bool(true));
        assert_eq!(
            set(msg("/parvis/param/sky", vec![OscType::String("night".into())])),
            ParamValue::Enum("night".into())
        );
        assert_eq!(set(msg("/parvis/param/sky", vec![OscType::Int(1)])), ParamValue::Enum("night".into()));
    }

    #[test]
    fn bad_messages_are_named() {
        let p = params();
        let err = |m: OscMessage| command_for(&m, &p, Some("evening")).unwrap_err().to_string();
        assert!(
            err(msg("/parvis/param/nope", vec![OscType::Float(1.0)]))
                .contains("unknown OSC address \"/parvis/param/nope\"")
        );
        assert!(err(msg("/parvis/param/fog", vec![OscType::Float(9.0)])).contains("takes 0 to 0.2"));
        assert_eq!(
            err(msg("/parvis/param/fog", vec![OscType::Blob(vec![1])])),
            "/parvis/param/fog: expected a number, found ,b"
        );
        assert!(err(msg("/parvis/param/fog", vec![])).contains("found ,"));
        assert!(
            err(msg("/parvis/param/light", vec![OscType::Float(2.0), OscType::Float(0.0), OscType::Float(0.0)]))
                .contains("0–1")
        );
        assert!(err(msg("/parvis/param/sky", vec![OscType::Int(5)])).contains("option index from 0 to 1"));
        assert!(err(msg("/parvis/param/sky", vec![OscType::String("dawn".into())])).contains("dawn"));
        assert!(err(msg("/parvis/show/seek", vec![OscType::String("x".into())])).contains("expected seconds"));
        assert!(err(msg("/other", vec![])).contains("unknown OSC address"));
        assert!(err(msg("/parvis/cue/", vec![])).contains("unknown OSC address"));
        assert!(command_for(&msg("/parvis/show/go", vec![]), &p, None).unwrap_err().to_string().contains("no show"));
    }

    #[test]
    fn the_director_is_reached_by_osc() {
        let p = params();
        let run = |addr: &str, args| command_for(&msg(addr, args), &p, None);
        let program = |action| Some(VenueCommand::Program { action });
        assert_eq!(
            run("/parvis/program/cut", vec![OscType::String("stage".into())]).unwrap(),
            program(ProgramAction::Cut { viewpoint: "stage".into() })
        );
        assert_eq!(
            run("/parvis/program/move", vec![OscType::String("aerial".into()), OscType::Int(8)]).unwrap(),
            program(ProgramAction::Move { viewpoint: "aerial".into(), seconds: 8.0, easing: Easing::InOut })
        );
        assert_eq!(
            run("/parvis/program/overlay", vec![OscType::String("Credits".into()), OscType::Float(0.0)]).unwrap(),
            program(ProgramAction::Overlay { overlay: Overlay::Credits, visible: false })
        );
        let err = |addr: &str, args| run(addr, args).unwrap_err().to_string();
        assert!(err("/parvis/program/cut", vec![]).contains("expected a viewpoint's name"));
        assert!(err("/parvis/program/move", vec![OscType::String("a".into())]).contains("and seconds"));
        assert!(
            err("/parvis/program/overlay", vec![OscType::String("ticker".into()), OscType::Int(1)])
                .contains("credits, poll, chat, stamp or surtitles")
        );
    }

    #[test]
    fn transport_buttons_act_on_press() {
        let p = params();
        let go = |args| command_for(&msg("/parvis/show/go", args), &p, Some("evening")).unwrap();
        let expected = Some(VenueCommand::Transport { show: "evening".into(), action: TransportAction::Go });
        assert_eq!(go(vec![]), expected);
        assert_eq!(go(vec![OscType::Int(1)]), expected);
        assert_eq!(go(vec![OscType::Float(0.0)]), None);
        let jump = command_for(&msg("/parvis/cue/12.5", vec![]), &p, Some("evening")).unwrap();
        assert_eq!(
            jump,
            Some(VenueCommand::Transport {
                show: "evening".into(),
                action: TransportAction::Jump { cue: "12.5".into() }
            })
        );
    }

    #[test]
    fn the_allow_list_matches_addresses_and_ranges() {
        let ip = |s: &str| s.parse::<std::net::IpAddr>().unwrap();
        let loopback = AllowList::loopback();
        assert!(loopback.allows(ip("127.0.0.1")) && loopback.allows(ip("127.3.2.1")) && loopback.allows(ip("::1")));
        assert!(!loopback.allows(ip("192.168.1.2")) && !loopback.allows(ip("::2")));
        assert!(loopback.allows(ip("::ffff:127.0.0.1")));
        let list = AllowList::parse(["10.0.0.0/24", "192.168.1.20", "fd00::/8"]).unwrap();
        assert!(list.allows(ip("10.0.0.255")) && !list.allows(ip("10.0.1.0")));
        assert!(list.allows(ip("192.168.1.20")) && !list.allows(ip("192.168.1.21")));
        assert!(list.allows(ip("fd12::1")) && !list.allows(ip("fe80::1")));
        assert!(AllowList::parse(["0.0.0.0/0"]).unwrap().allows(ip("8.8.8.8")));
        assert!(AllowList::parse(["10.0.0.0/33"]).unwrap_err().contains("0 to 32"));
        assert!(AllowList::parse(["desk"]).unwrap_err().contains("expected an IP address"));
    }

    #[test]
    fn packets_round_trip_and_hostile_ones_are_refused() {
        let messages = vec![param_message("fog", &ParamValue::Float(0.1)), cue_fired_message("s", "1", 1.0, 1.01)];
        assert_eq!(decode(&encode(messages.clone())).unwrap(), messages);
        assert!(matches!(decode(b"garbage"), Err(OscError::Malformed(_))));
        assert!(matches!(decode(&[]), Err(OscError::Malformed(_))));
        // Deeply nested bundles: refused before the recursive decoder sees them.
        let mut packet = OscPacket::Message(msg("/parvis/show/go", vec![]));
        for _ in 0..40 {
            packet =
                OscPacket::Bundle(OscBundle { timetag: OscTime { seconds: 0, fractional: 1 }, content: vec![packet] });
        }
        let bytes = rosc::encoder::encode(&packet).unwrap();
        assert!(matches!(decode(&bytes), Err(OscError::TooBig(_))), "{:?}", decode(&bytes));
        let flags = encode(vec![msg("/parvis/show/go", vec![OscType::Bool(true); MAX_ARGUMENTS + 1])]);
        assert!(matches!(decode(&flags), Err(OscError::TooBig(_))));
        let many = vec![msg("/parvis/show/go", vec![]); MAX_MESSAGES + 1];
        assert!(matches!(decode(&encode(many)), Err(OscError::TooBig(_))));
    }
}
