//! Properties that must hold for any input, checked on many generated ones (proptest): a
//! venue command written to the log reads back as itself; moderating an accepted text again
//! changes nothing; no accepted text holds a control or bidi-override character.

use parvis_model::audience::moderation::{Blocklist, moderate};
use parvis_model::command::{CommandOrigin, LoggedCommand, VenueCommand, read_command_log};
use parvis_model::params::ParamValue;
use parvis_model::scene::format::{Colour, Easing};
use proptest::prelude::*;

fn name() -> impl Strategy<Value = String> {
    prop_oneof!["[a-z_]{1,12}", any::<String>()]
}

fn finite() -> impl Strategy<Value = f32> {
    prop_oneof![-1e6f32..1e6f32, Just(0.0), Just(f32::MIN_POSITIVE), Just(f32::MAX), Just(-0.0)]
}

fn value() -> impl Strategy<Value = ParamValue> {
    prop_oneof![
        (0.0f32..=1.0, 0.0f32..=1.0, 0.0f32..=1.0, 0.0f32..=1.0).prop_map(|(r, g, b, a)| ParamValue::Colour(
            Colour::parse(&Colour { srgba: [r, g, b, a] }.to_string()).unwrap()
        )),
        finite().prop_map(ParamValue::Float),
        name().prop_map(ParamValue::Enum),
        any::<bool>().prop_map(ParamValue::Bool),
    ]
}

fn easing() -> impl Strategy<Value = Easing> {
    prop_oneof![Just(Easing::Linear), Just(Easing::InOut)]
}

fn command() -> impl Strategy<Value = VenueCommand> {
    prop_oneof![
        (name(), value()).prop_map(|(name, value)| VenueCommand::SetParam { name, value }),
        (name(), value(), finite(), easing()).prop_map(|(name, to, seconds, easing)| VenueCommand::AnimateParam {
            name,
            to,
            seconds,
            easing
        }),
        (name(), any::<u64>()).prop_map(|(effect, seed)| VenueCommand::SpawnEffect { effect, seed }),
        (any::<u64>(), any::<String>(), any::<String>(), finite(), [finite(), finite(), finite()])
            .prop_map(|(id, text, by, seconds, at)| VenueCommand::ShowText { id, text, by, seconds, at }),
        proptest::option::of(any::<u64>()).prop_map(|id| VenueCommand::HideText { id }),
        name().prop_map(|poll| VenueCommand::OpenPoll { poll }),
        name().prop_map(|poll| VenueCommand::ClosePoll { poll }),
        proptest::option::of(name()).prop_map(|name| VenueCommand::ShowHotspot { name }),
        (proptest::option::of(name()), proptest::option::of("[a-z]{2}(-[A-Z]{2})?"))
            .prop_map(|(tour, language)| VenueCommand::PlayTour { tour, language }),
    ]
}

fn origin() -> impl Strategy<Value = CommandOrigin> {
    prop_oneof![
        Just(CommandOrigin::Local),
        any::<String>().prop_map(CommandOrigin::Curator),
        any::<String>().prop_map(CommandOrigin::Moderator),
        any::<String>().prop_map(CommandOrigin::Audience),
    ]
}

/// Text with what hostile chat is made of: controls, bidi overrides, zero-width characters,
/// escape sequences, combining marks, look-alike letters.
fn hostile_text() -> impl Strategy<Value = String> {
    let piece = prop_oneof![
        any::<char>().prop_map(String::from),
        "[a-zA-Z0-9 !#?]{1,6}",
        Just("\u{1b}[31m".to_owned()),
        Just("\u{202E}".to_owned()),
        Just("\u{2066}".to_owned()),
        Just("\u{200B}".to_owned()),
        Just("\u{0301}\u{0301}\u{0301}\u{0301}\u{0301}\u{0301}".to_owned()),
        Just("\r\n\t\u{7}\u{85}\u{9b}".to_owned()),
        Just("ｆｕｌｌ".to_owned()),
        Just("\u{FEFF}".to_owned()),
    ];
    proptest::collection::vec(piece, 0..40).prop_map(|pieces| pieces.concat())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2000, ..ProptestConfig::default() })]

    #[test]
    fn a_logged_command_reads_back_as_itself(seq in 1u64.., time_ms in any::<u64>(), origin in origin(), command in command()) {
        let entry = LoggedCommand { seq, time_ms, origin, command };
        let line = serde_json::to_string(&entry).unwrap();
        let back = read_command_log(format!("{line}\n").as_bytes()).unwrap();
        prop_assert_eq!(back, vec![entry]);
    }

    #[test]
    fn moderation_is_idempotent_and_accepted_text_is_clean(text in hostile_text()) {
        let blocklist = Blocklist::default_fr_en();
        if let Ok(clean) = moderate(&text, 280, &blocklist) {
            prop_assert_eq!(moderate(&clean, 280, &blocklist), Ok(clean.clone()), "moderating {:?} again", clean);
            prop_assert!(
                !clean.chars().any(|c| c.is_control() || matches!(c, '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}' | '\u{200B}'..='\u{200F}' | '\u{FEFF}')),
                "{:?} from {:?}", clean, text
            );
            prop_assert!(!clean.starts_with(' ') && !clean.ends_with(' ') && !clean.contains("  "), "{:?}", clean);
            prop_assert!(clean.chars().count() <= 280);
        }
    }
}

/// Found by fuzzing (`command_log`, 13 M executions in): `1e48` reads as an f32 infinity, which
/// JSON writes back as `null`, so the line read could not be written and read again. A log line
/// with a number out of range is refused, naming its line.
#[test]
fn a_log_line_with_a_number_out_of_range_is_refused_by_line() {
    let good = r#"{"seq":1,"time_ms":1,"origin":{"kind":"local"},"command":{"type":"set_param","name":"fog","value":{"Float":0.05}}}"#;
    for bad in [
        r#"{"seq":2,"time_ms":2,"origin":{"kind":"moderator","id":"mod1"},"command":{"type":"animate_param","name":"stage_intensity","to":{"Float":888888888888888888888888888888888888888888000000.0},"seconds":2.0,"easing":"InOut"}}"#,
        r#"{"seq":2,"time_ms":2,"origin":{"kind":"local"},"command":{"type":"animate_param","name":"fog","to":{"Float":0.1},"seconds":1e39}}"#,
        r#"{"seq":2,"time_ms":2,"origin":{"kind":"local"},"command":{"type":"show_text","id":1,"text":"x","by":"y","seconds":5.0,"at":[0.0,-1e40,0.0]}}"#,
    ] {
        let err = read_command_log(format!("{good}\n{bad}\n").as_bytes()).unwrap_err();
        assert_eq!(err.line, 2, "{err}");
        assert!(err.to_string().contains("out of range"), "{err}");
    }
    // What is accepted still reads back as itself.
    let entries = read_command_log(format!("{good}\n").as_bytes()).unwrap();
    let again = serde_json::to_string(&entries[0]).unwrap();
    assert_eq!(read_command_log(format!("{again}\n").as_bytes()).unwrap(), entries);
    assert!(!VenueCommand::SetParam { name: "fog".into(), value: ParamValue::Float(f32::NAN) }.numbers_are_finite());
}
