//! Throughput of the audience pipeline's pure stages on one core: parse a frame, moderate the
//! text, match the scene's rules. No network: that is the load generator's job (not written
//! yet); this measures the per-message work every frame costs. A second run does the same for
//! Twitch IRC lines (parse the IRCv3 line and its tags, then moderate and match the text), as
//! the chat bridge does. See docs/benchmarks.md.

use std::time::Instant;

use parvis::model::audience::moderation::{Blocklist, moderate};
use parvis::model::audience::protocol::{ClientMessage, parse_client_message};
use parvis::model::audience::rules::match_chat;
use parvis::model::irc::{TwitchEvent, parse_twitch};
use parvis::model::params::StageParams;
use parvis::model::scene::DEFAULT_SCENE;
use parvis::model::scene::validate::parse_scene;

fn main() {
    let scene = parse_scene(DEFAULT_SCENE).expect("built-in scene");
    let params = StageParams::from_scene(&scene);
    let blocklist = Blocklist::default_fr_en();
    // A mixed crowd: plain chat in French and English, commands, emoji, obfuscation attempts.
    let corpus: Vec<String> = [
        "Bravo !! magnifique 👏👏",
        "!light red",
        "!sky nuit",
        "c'est trop beau, on voit la fontaine depuis chez moi",
        "who is playing the cello?",
        "!fog thick",
        "ｃｏｎｎａｒｄ",
        "lol the lanterns 🔥🔥🔥",
        "!lumiere bleu",
        "Quelle acoustique dans ce cloître, merci à toute l'équipe",
        "f u c k",
        "encore ! encore ! encore !",
    ]
    .iter()
    .map(|t| serde_json::json!({"type": "chat", "text": t}).to_string())
    .collect();

    let rounds = 3;
    let per_round = 300_000;
    let mut rates = Vec::new();
    let mut fired = 0usize;
    for _ in 0..rounds {
        let start = Instant::now();
        for i in 0..per_round {
            let frame = &corpus[i % corpus.len()];
            let Ok(ClientMessage::Chat { text }) = parse_client_message(frame) else { continue };
            let Ok(clean) = moderate(&text, 280, &blocklist) else { continue };
            if let Ok(Some(_)) = match_chat(&scene.rules, &clean, |p| params.get(p).map(|(d, _)| &d.kind)) {
                fired += 1;
            }
        }
        rates.push(per_round as f64 / start.elapsed().as_secs_f64());
    }
    rates.sort_by(f64::total_cmp);
    println!(
        "audience pipeline (parse + moderate + rules), one core: median {:.0} messages/s (min {:.0}, max {:.0}) over {rounds} rounds of {per_round}; {fired} rule firings",
        rates[rates.len() / 2],
        rates[0],
        rates[rates.len() - 1]
    );

    twitch_lines(&scene, &params, &blocklist);
}

/// Twitch's own lines through the bridge's pure path, from the real-format corpus of the
/// parser's tests: all of it (edge cases weighing as much as plain chat, among them a line at
/// Twitch's 500-character limit), then a busy channel's mix (nine chat lines of at most 200
/// bytes for each other event).
fn twitch_lines(scene: &parvis::model::scene::format::SceneFile, params: &StageParams, blocklist: &Blocklist) {
    let corpus = include_str!("../tests/data/twitch/corpus.txt");
    let valid: Vec<&str> = corpus
        .lines()
        .filter_map(|l| l.strip_prefix("ok "))
        .filter_map(|l| l.split_once(' '))
        .map(|(_, line)| line)
        .collect();
    let text_len = |line: &str| {
        line.split_once(" PRIVMSG ").and_then(|(_, rest)| rest.split_once(" :")).map_or(0, |(_, text)| text.len())
    };
    let (chat, other): (Vec<&str>, Vec<&str>) = valid.iter().partition(|l| l.contains(" PRIVMSG "));
    let typical_chat: Vec<&str> = chat.iter().copied().filter(|l| text_len(l) <= 200).collect();
    let mut busy: Vec<&str> = Vec::new();
    for i in 0..typical_chat.len() * 10 {
        busy.push(if i % 10 == 9 { other[i / 10 % other.len()] } else { typical_chat[i % typical_chat.len()] });
    }
    for (what, lines) in [("the whole corpus", &valid), ("a busy channel's mix", &busy)] {
        run_twitch(what, lines, scene, params, blocklist);
    }
}

fn run_twitch(
    what: &str,
    lines: &[&str],
    scene: &parvis::model::scene::format::SceneFile,
    params: &StageParams,
    blocklist: &Blocklist,
) {
    let rounds = 5;
    let per_round = 300_000;
    let mut parse_rates = Vec::new();
    let mut rates = Vec::new();
    let (mut chat_lines, mut chat_bytes, mut fired) = (0usize, 0usize, 0usize);
    for _ in 0..rounds {
        let start = Instant::now();
        for i in 0..per_round {
            if let Ok(Some(TwitchEvent::Privmsg(message))) = parse_twitch(lines[i % lines.len()]) {
                chat_lines += 1;
                chat_bytes += std::hint::black_box(message.text).len();
            }
        }
        parse_rates.push(per_round as f64 / start.elapsed().as_secs_f64());
        let start = Instant::now();
        for i in 0..per_round {
            let Ok(Some(TwitchEvent::Privmsg(message))) = parse_twitch(lines[i % lines.len()]) else { continue };
            let Ok(clean) = moderate(message.text, 280, blocklist) else { continue };
            if let Ok(Some(_)) = match_chat(&scene.rules, &clean, |p| params.get(p).map(|(d, _)| &d.kind)) {
                fired += 1;
            }
        }
        rates.push(per_round as f64 / start.elapsed().as_secs_f64());
    }
    parse_rates.sort_by(f64::total_cmp);
    rates.sort_by(f64::total_cmp);
    println!(
        "twitch lines, {what} ({} distinct, {} % chat, chat text {} bytes on average), one core: parse + tags median {:.0} lines/s; parse + tags + moderate + rules median {:.0} lines/s (min {:.0}, max {:.0}; {rounds} rounds of {per_round}; {fired} rule firings)",
        lines.len(),
        100 * chat_lines / (rounds * per_round),
        chat_bytes / chat_lines.max(1),
        parse_rates[rounds / 2],
        rates[rounds / 2],
        rates[0],
        rates[rounds - 1],
    );
}
