//! Audience rules: which chat lines and reactions fire which rule of the scene file, and with
//! what value. Pure functions; cooldowns take the time as an argument.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use unicode_normalization::UnicodeNormalization;
use unicode_normalization::char::is_combining_mark;

use crate::scene::format::{ActionDef, AudienceRuleDef, ParamKind, TriggerDef};

/// Colour names the audience may type for colour parameters, in English and French.
const COLOUR_NAMES: &[(&str, &str)] = &[
    ("red", "#ff0000"),
    ("rouge", "#ff0000"),
    ("green", "#00c040"),
    ("vert", "#00c040"),
    ("blue", "#2050ff"),
    ("bleu", "#2050ff"),
    ("yellow", "#ffd800"),
    ("jaune", "#ffd800"),
    ("orange", "#ff8000"),
    ("purple", "#8000ff"),
    ("violet", "#8000ff"),
    ("pink", "#ff60b0"),
    ("rose", "#ff60b0"),
    ("white", "#ffffff"),
    ("blanc", "#ffffff"),
    ("cyan", "#00e0ff"),
    ("magenta", "#ff00ff"),
    ("gold", "#ffb000"),
    ("or", "#ffb000"),
];

/// Lower case without accents: how words are compared.
pub fn fold(word: &str) -> String {
    word.nfkd().filter(|c| !is_combining_mark(*c)).flat_map(char::to_lowercase).collect()
}

/// A rule that fired, and the value text it asks for (to be read as the parameter's type).
#[derive(Debug, Clone, PartialEq)]
pub struct Fired<'a> {
    /// The rule.
    pub rule: &'a AudienceRuleDef,
    /// The value to set, as text (empty for actions without a value).
    pub value: String,
    /// The member's own words, as typed (after moderation): what a `Show` action shows.
    pub text: String,
}

/// Why a chat line that named a rule did not fire it.
#[derive(Debug, Clone, PartialEq)]
pub enum NoFire {
    /// A `!command` that no rule knows.
    UnknownCommand(String),
    /// A command rule that needs a word, without one.
    MissingValue {
        /// The command.
        command: String,
        /// Words the rule knows, if it lists them.
        known: Vec<String>,
    },
}

/// Finds the rule a chat line fires. `kind_of` gives a parameter's kind (for colour names).
/// Returns `Ok(None)` for ordinary chat.
pub fn match_chat<'a>(
    rules: &'a [AudienceRuleDef],
    text: &str,
    kind_of: impl Fn(&str) -> Option<&'a ParamKind>,
) -> Result<Option<Fired<'a>>, NoFire> {
    if let Some(command_line) = text.strip_prefix('!') {
        let mut words = command_line.split_whitespace();
        let command = fold(words.next().unwrap_or_default());
        let said = words.collect::<Vec<_>>().join(" ");
        let arg = fold(&said);
        let Some(rule) = rules.iter().find(|r| matches!(&r.trigger, TriggerDef::Command(c) if fold(c) == command))
        else {
            return Err(NoFire::UnknownCommand(command));
        };
        let needs_value = matches!(rule.action, ActionDef::Set | ActionDef::Animate { .. });
        if let Some(value) = rule.value.as_ref().filter(|_| needs_value) {
            return Ok(Some(Fired { rule, value: value.clone(), text: said }));
        }
        if !needs_value {
            if matches!(rule.action, ActionDef::Show { .. }) && said.is_empty() {
                return Err(NoFire::MissingValue { command, known: Vec::new() });
            }
            return Ok(Some(Fired { rule, value: String::new(), text: said }));
        }
        if arg.is_empty() {
            return Err(NoFire::MissingValue { command, known: rule.values.keys().cloned().collect() });
        }
        let value = rule
            .values
            .iter()
            .find(|(word, _)| fold(word) == arg)
            .map(|(_, v)| v.clone())
            .or_else(|| match kind_of(&rule.param) {
                Some(ParamKind::Colour { .. }) => {
                    COLOUR_NAMES.iter().find(|(n, _)| *n == arg).map(|(_, hex)| (*hex).to_owned())
                }
                _ => None,
            })
            .unwrap_or(arg);
        return Ok(Some(Fired { rule, value, text: said }));
    }
    let words: Vec<String> =
        fold(text).split(|c: char| !c.is_alphanumeric()).filter(|w| !w.is_empty()).map(str::to_owned).collect();
    Ok(rules.iter().find_map(|rule| match &rule.trigger {
        TriggerDef::Keyword(k) if words.contains(&fold(k)) => {
            Some(Fired { rule, value: rule.value.clone().unwrap_or_default(), text: text.to_owned() })
        }
        _ => None,
    }))
}

/// Finds the rule a reaction fires.
pub fn match_reaction<'a>(rules: &'a [AudienceRuleDef], emoji: &str) -> Option<Fired<'a>> {
    rules.iter().find_map(|rule| match &rule.trigger {
        TriggerDef::Reaction(e) if e == emoji => {
            Some(Fired { rule, value: rule.value.clone().unwrap_or_default(), text: String::new() })
        }
        _ => None,
    })
}

/// The rules a closed poll fires, with the value the winning option stands for.
pub fn match_poll_outcome<'a>(rules: &'a [AudienceRuleDef], poll: &str, winner: &str) -> Vec<Fired<'a>> {
    rules
        .iter()
        .filter(|rule| matches!(&rule.trigger, TriggerDef::PollOutcome(p) if p == poll))
        .map(|rule| Fired {
            rule,
            value: rule.values.get(winner).or(rule.value.as_ref()).cloned().unwrap_or_else(|| winner.to_owned()),
            text: String::new(),
        })
        .collect()
}

/// A cooldown stretched by the audience size, for rules with an `audience_scale`.
pub fn scaled_cooldown(seconds: f32, audience_scale: u32, audience: usize) -> f32 {
    if audience_scale == 0 {
        return seconds;
    }
    seconds * (audience as f32 / audience_scale as f32).max(1.0)
}

/// When each rule last fired, overall and per member.
#[derive(Debug, Default)]
pub struct Cooldowns {
    last: HashMap<String, Instant>,
    per_user: HashMap<(String, String), Instant>,
}

impl Cooldowns {
    /// Whether `rule` may fire for `user` at `now`; if so, records it. On refusal, returns how
    /// long to wait.
    /// `audience` is the number of members connected (for rules whose limits scale with it);
    /// `exempt` members (moderators, the streamer) skip every cooldown.
    pub fn try_fire(
        &mut self,
        rule: &AudienceRuleDef,
        user: &str,
        now: Instant,
        audience: usize,
        exempt: bool,
    ) -> Result<(), Duration> {
        if exempt {
            return Ok(());
        }
        let wait = |since: Option<&Instant>, cooldown: f32| {
            let cooldown = Duration::from_secs_f32(cooldown.max(0.0));
            since.and_then(|t| cooldown.checked_sub(now.saturating_duration_since(*t))).filter(|d| !d.is_zero())
        };
        let key = (rule.name.clone(), user.to_owned());
        let cooldown = scaled_cooldown(rule.cooldown, rule.audience_scale, audience);
        let user_cooldown = scaled_cooldown(rule.user_cooldown, rule.audience_scale, audience);
        if let Some(w) =
            wait(self.last.get(&rule.name), cooldown).or_else(|| wait(self.per_user.get(&key), user_cooldown))
        {
            return Err(w);
        }
        self.last.insert(rule.name.clone(), now);
        if user_cooldown > 0.0 {
            self.per_user.insert(key, now);
        }
        Ok(())
    }

    /// Forgets per-member entries older than an hour (the longest cooldown), so that a large
    /// audience does not grow the map forever.
    pub fn prune(&mut self, now: Instant) {
        self.per_user.retain(|_, t| now.saturating_duration_since(*t) < Duration::from_secs(3600));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scene::format::Colour;

    fn rule(name: &str, trigger: TriggerDef, param: &str, value: Option<&str>) -> AudienceRuleDef {
        AudienceRuleDef {
            name: name.into(),
            trigger,
            param: param.into(),
            value: value.map(Into::into),
            values: [("rouge".to_owned(), "#aa0000".to_owned())].into(),
            cooldown: 0.0,
            user_cooldown: 0.0,
            action: ActionDef::Set,
            audience_scale: 0,
            mutex: String::new(),
            queue: 0,
            mode: Default::default(),
            only: Vec::new(),
            bits_per_vote: 0,
            closed: false,
            group: String::new(),
        }
    }

    #[test]
    fn commands_keywords_and_reactions_fire_their_rules() {
        let colour = ParamKind::Colour { default: Colour::rgb(1.0, 1.0, 1.0) };
        let rules = vec![
            rule("light", TriggerDef::Command("light".into()), "stage_light", None),
            rule("night", TriggerDef::Keyword("nuit".into()), "sky", Some("night")),
            rule("roses", TriggerDef::Reaction("🌹".into()), "banner", Some("true")),
        ];
        let kind = |_: &str| Some(&colour);
        let fired = |t: &str| match_chat(&rules, t, kind).unwrap().map(|f| (f.rule.name.clone(), f.value));
        assert_eq!(fired("!light red"), Some(("light".into(), "#ff0000".into())));
        assert_eq!(
            fired("!LIGHT Rouge"),
            Some(("light".into(), "#aa0000".into())),
            "the rule's own words win over built-in names"
        );
        assert_eq!(fired("!light #123456"), Some(("light".into(), "#123456".into())));
        assert_eq!(fired("bonne NUIT à tous"), Some(("night".into(), "night".into())));
        assert_eq!(fired("la nuitée"), None, "whole words only");
        assert_eq!(fired("hello"), None);
        assert_eq!(match_chat(&rules, "!fly", kind), Err(NoFire::UnknownCommand("fly".into())));
        assert!(matches!(match_chat(&rules, "!light", kind), Err(NoFire::MissingValue { .. })));
        assert_eq!(match_reaction(&rules, "🌹").map(|f| f.value), Some("true".into()));
        assert_eq!(match_reaction(&rules, "👏"), None);
    }

    #[test]
    fn cooldowns_hold_per_rule_and_per_member_and_exempt_staff() {
        let mut r = rule("light", TriggerDef::Command("light".into()), "stage_light", None);
        r.cooldown = 2.0;
        r.user_cooldown = 10.0;
        let mut c = Cooldowns::default();
        let t0 = Instant::now();
        assert!(c.try_fire(&r, "a", t0, 1, false).is_ok());
        let wait = c.try_fire(&r, "b", t0 + Duration::from_secs(1), 1, false).unwrap_err();
        assert!(wait > Duration::from_millis(900) && wait <= Duration::from_secs(1), "{wait:?}");
        assert!(c.try_fire(&r, "b", t0 + Duration::from_secs(3), 1, false).is_ok(), "global cooldown over");
        assert!(c.try_fire(&r, "a", t0 + Duration::from_secs(6), 1, false).is_err(), "a's own cooldown runs 10 s");
        assert!(c.try_fire(&r, "a", t0 + Duration::from_secs(6), 1, true).is_ok(), "moderators are exempt");
        assert!(c.try_fire(&r, "a", t0 + Duration::from_secs(11), 1, false).is_ok());
    }

    #[test]
    fn cooldowns_grow_with_the_audience() {
        let mut r = rule("light", TriggerDef::Command("light".into()), "stage_light", None);
        r.cooldown = 2.0;
        r.audience_scale = 100;
        assert_eq!(scaled_cooldown(2.0, 100, 40), 2.0, "small audiences keep the base cooldown");
        assert_eq!(scaled_cooldown(2.0, 100, 1000), 20.0);
        assert_eq!(scaled_cooldown(2.0, 0, 1000), 2.0, "0 means fixed");
        let mut c = Cooldowns::default();
        let t0 = Instant::now();
        assert!(c.try_fire(&r, "a", t0, 1000, false).is_ok());
        assert!(c.try_fire(&r, "b", t0 + Duration::from_secs(5), 1000, false).is_err(), "20 s with 1000 people");
        assert!(c.try_fire(&r, "b", t0 + Duration::from_secs(5), 50, false).is_ok(), "2 s with 50 people");
        assert!(c.try_fire(&r, "c", t0 + Duration::from_secs(6), 1000, true).is_ok(), "staff exempt");
    }

    #[test]
    fn poll_outcomes_and_value_free_actions() {
        let mut sky = rule("encore", TriggerDef::PollOutcome("next".into()), "sky", None);
        sky.values = [("a".to_owned(), "night".to_owned())].into();
        let mut petals = rule("petals", TriggerDef::Command("petals".into()), "", None);
        petals.action = ActionDef::Spawn("petals".into());
        let mut say = rule("say", TriggerDef::Command("say".into()), "", None);
        say.action = ActionDef::Show { seconds: 5.0, approval: false, at: [0.0; 3] };
        let rules = vec![sky, petals, say];
        let fired = match_poll_outcome(&rules, "next", "a");
        assert_eq!(fired.iter().map(|f| f.value.as_str()).collect::<Vec<_>>(), ["night"]);
        assert_eq!(match_poll_outcome(&rules, "next", "b")[0].value, "b", "unmapped options give their id");
        assert!(match_poll_outcome(&rules, "other", "a").is_empty());
        let none = |_: &str| None;
        assert_eq!(match_chat(&rules, "!petals", none).unwrap().unwrap().rule.name, "petals");
        let shown = match_chat(&rules, "!say Bravo   les Musiciens ✨", none).unwrap().unwrap();
        assert_eq!(shown.text, "Bravo les Musiciens ✨", "words keep their case and accents");
        assert!(matches!(match_chat(&rules, "!say", none), Err(NoFire::MissingValue { .. })));
    }
}
