//! Which language a visitor gets: theirs if the text has it, else the venue's fallback order.

use crate::scene::format::Localized;

/// The primary subtag, `fr` for `fr-CA`.
fn primary(tag: &str) -> &str {
    tag.split(['-', '_']).next().unwrap_or(tag)
}

/// The text for a visitor who asked for `wanted`, and the language it is in. Tries, in order:
/// `wanted` itself; its primary language (`fr` for `fr-CA`); a regional variant of it (`fr-BE`
/// for `fr`); then each of the venue's languages in `order` the same way; then any text at
/// all, so that a visitor never faces an empty panel. Tags compare without case.
pub fn pick<'a>(texts: &'a Localized, wanted: &str, order: &[String]) -> Option<(&'a str, &'a str)> {
    let lookup = |tag: &str| {
        let exact = texts.iter().find(|(k, _)| k.eq_ignore_ascii_case(tag));
        let base = || texts.iter().find(|(k, _)| k.eq_ignore_ascii_case(primary(tag)));
        let variant = || texts.iter().find(|(k, _)| primary(k).eq_ignore_ascii_case(primary(tag)));
        exact.or_else(base).or_else(variant)
    };
    std::iter::once(wanted)
        .chain(order.iter().map(String::as_str))
        .filter(|t| !t.is_empty())
        .find_map(lookup)
        .or_else(|| texts.iter().next())
        .map(|(k, v)| (k.as_str(), v.as_str()))
}

/// The language a visit starts in: the one asked for, else the venue's first, else English.
pub fn visitor_language(asked: Option<&str>, order: &[String]) -> String {
    asked.filter(|a| !a.is_empty()).map(str::to_owned).or_else(|| order.first().cloned()).unwrap_or_else(|| "en".into())
}

/// Whether `tag` looks like a BCP 47 language tag (`fr`, `en-GB`, `zh-Hant`).
pub fn is_language_tag(tag: &str) -> bool {
    let mut parts = tag.split('-');
    let first = parts.next().unwrap_or("");
    (2..=3).contains(&first.len())
        && first.chars().all(|c| c.is_ascii_alphabetic())
        && parts.all(|p| (1..=8).contains(&p.len()) && p.chars().all(|c| c.is_ascii_alphanumeric()))
        && tag.len() <= 35
}

#[cfg(test)]
mod tests {
    use super::*;

    fn texts(pairs: &[(&str, &str)]) -> Localized {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    #[test]
    fn the_visitors_language_then_the_venues_order_then_anything() {
        let order = vec!["fr".to_string(), "en".to_string()];
        let both = texts(&[("en", "The well"), ("fr", "Le puits")]);
        assert_eq!(pick(&both, "fr", &order), Some(("fr", "Le puits")));
        assert_eq!(pick(&both, "en", &order), Some(("en", "The well")));
        // German is missing: the venue's first language.
        assert_eq!(pick(&both, "de", &order), Some(("fr", "Le puits")));
        // A regional tag finds its language, and a language finds a regional text.
        assert_eq!(pick(&both, "fr-CA", &order), Some(("fr", "Le puits")));
        assert_eq!(pick(&texts(&[("en-GB", "Colour")]), "en", &order), Some(("en-GB", "Colour")));
        assert_eq!(pick(&both, "EN", &order), Some(("en", "The well")));
        // Only English written: a French visitor still gets it, through the order.
        let english = texts(&[("en", "The well")]);
        assert_eq!(pick(&english, "fr", &order), Some(("en", "The well")));
        // Nothing in any listed language: whatever there is.
        assert_eq!(pick(&texts(&[("it", "Il pozzo")]), "de", &order), Some(("it", "Il pozzo")));
        assert_eq!(pick(&Localized::new(), "fr", &order), None);
    }

    #[test]
    fn a_visit_starts_in_the_asked_language_or_the_venues_first() {
        let order = vec!["fr".to_string(), "en".to_string()];
        assert_eq!(visitor_language(Some("de"), &order), "de");
        assert_eq!(visitor_language(None, &order), "fr");
        assert_eq!(visitor_language(Some(""), &[]), "en");
        assert!(is_language_tag("fr") && is_language_tag("en-GB") && is_language_tag("zh-Hant"));
        assert!(
            !is_language_tag("french!") && !is_language_tag("") && !is_language_tag("f") && !is_language_tag("fr--x")
        );
    }
}
