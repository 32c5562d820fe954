//! Timed text from standard files — SubRip (`.srt`) and WebVTT (`.vtt`), one file per
//! language — for a show's surtitles. A small parser (no crate on the pins reads both with
//! line-numbered errors): every problem names its line, and cues whose timing is broken,
//! reversed or overlapping the previous cue are refused, since a surtitle operator would rather
//! fix the file than have two lines fight on screen.

use thiserror::Error;

/// One timed line (or lines) of text.
#[derive(Debug, Clone, PartialEq)]
pub struct TimedText {
    /// Start, seconds from the song's start.
    pub start: f64,
    /// End, seconds.
    pub end: f64,
    /// The text, lines joined by `\n`, markup tags removed.
    pub text: String,
}

/// What is wrong with a subtitle file, and where.
#[derive(Debug, Clone, PartialEq, Error)]
#[error("line {line}: {message}")]
pub struct SubtitleError {
    /// 1-based line.
    pub line: usize,
    /// What was expected and found.
    pub message: String,
}

/// Longest file read, in bytes.
pub const MAX_FILE: usize = 4 * 1024 * 1024;
/// Most cues in one file.
pub const MAX_CUES: usize = 20_000;
/// Longest text of one cue, in characters.
pub const MAX_TEXT: usize = 500;

/// Reads a `.srt` or `.vtt` file's text; `vtt` says which.
pub fn parse(text: &str, vtt: bool) -> Result<Vec<TimedText>, SubtitleError> {
    if text.len() > MAX_FILE {
        return Err(SubtitleError { line: 1, message: format!("file of {} bytes; at most {MAX_FILE}", text.len()) });
    }
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let lines: Vec<&str> = text.lines().map(|l| l.trim_end_matches('\r')).collect();
    let mut i = 0;
    if vtt {
        let header = lines.first().copied().unwrap_or_default();
        if !(header == "WEBVTT" || header.starts_with("WEBVTT ") || header.starts_with("WEBVTT\t")) {
            return Err(SubtitleError { line: 1, message: format!("expected WEBVTT, found {header:?}") });
        }
        // The header block runs to the first blank line.
        while i < lines.len() && !lines[i].trim().is_empty() {
            i += 1;
        }
    }
    let mut cues: Vec<TimedText> = Vec::new();
    while i < lines.len() {
        if lines[i].trim().is_empty() {
            i += 1;
            continue;
        }
        let block_start = i;
        let mut block = Vec::new();
        while i < lines.len() && !lines[i].trim().is_empty() {
            block.push((i + 1, lines[i]));
            i += 1;
        }
        if vtt
            && ["NOTE", "STYLE", "REGION"].iter().any(|k| block[0].1 == *k || block[0].1.starts_with(&format!("{k} ")))
        {
            continue;
        }
        // SRT: a number, then the timing; VTT: an optional identifier, then the timing.
        let timing_at = block.iter().position(|(_, l)| l.contains("-->")).ok_or_else(|| SubtitleError {
            line: block_start + 1,
            message: format!("expected a timing line `00:00:01,000 --> 00:00:02,500`, found {:?}", block[0].1),
        })?;
        if timing_at > 1 {
            let (line, found) = block[0];
            return Err(SubtitleError {
                line,
                message: format!("expected a cue number or id then its timing, found {found:?}"),
            });
        }
        if !vtt && timing_at == 1 && block[0].1.trim().parse::<u64>().is_err() {
            let (line, found) = block[0];
            return Err(SubtitleError { line, message: format!("expected a cue number, found {found:?}") });
        }
        let (line, timing) = block[timing_at];
        let (start, rest) = timing.split_once("-->").expect("found above");
        let end = rest.split_whitespace().next().unwrap_or_default();
        let start = timestamp(start.trim(), vtt).map_err(|m| SubtitleError { line, message: m })?;
        let end = timestamp(end, vtt).map_err(|m| SubtitleError { line, message: m })?;
        if end <= start {
            return Err(SubtitleError {
                line,
                message: format!("the cue ends ({end:.3} s) before it starts ({start:.3} s)"),
            });
        }
        if let Some(previous) = cues.last()
            && start < previous.end - 1e-9
        {
            return Err(SubtitleError {
                line,
                message: format!(
                    "the cue starts at {start:.3} s, before the previous one ends ({:.3} s): surtitles do not overlap",
                    previous.end
                ),
            });
        }
        let body: Vec<String> = block[timing_at + 1..].iter().map(|(_, l)| strip_tags(l)).collect();
        let body = body.join("\n");
        if body.chars().count() > MAX_TEXT {
            return Err(SubtitleError {
                line,
                message: format!("a cue of {} characters; at most {MAX_TEXT}", body.chars().count()),
            });
        }
        if cues.len() == MAX_CUES {
            return Err(SubtitleError { line, message: format!("more than {MAX_CUES} cues") });
        }
        cues.push(TimedText { start, end, text: body });
    }
    Ok(cues)
}

/// `HH:MM:SS,mmm` (SRT) or `[HH:]MM:SS.mmm` (VTT) in seconds.
fn timestamp(text: &str, vtt: bool) -> Result<f64, String> {
    let bad = || {
        let form = if vtt { "[HH:]MM:SS.mmm" } else { "HH:MM:SS,mmm" };
        format!("expected a time {form}, found {text:?}")
    };
    let (clock, millis) = text.split_once(if vtt { '.' } else { ',' }).ok_or_else(bad)?;
    if millis.len() != 3 || !millis.bytes().all(|b| b.is_ascii_digit()) {
        return Err(bad());
    }
    let parts: Vec<&str> = clock.split(':').collect();
    let numbers: Vec<u64> = parts
        .iter()
        .map(|p| {
            if !p.is_empty() && p.len() <= 3 && p.bytes().all(|b| b.is_ascii_digit()) {
                p.parse().map_err(|_| bad())
            } else {
                Err(bad())
            }
        })
        .collect::<Result<_, _>>()?;
    let (h, m, s) = match numbers.as_slice() {
        [h, m, s] => (*h, *m, *s),
        [m, s] if vtt => (0, *m, *s),
        _ => return Err(bad()),
    };
    if m > 59 || s > 59 {
        return Err(format!("{text:?}: minutes and seconds go to 59"));
    }
    Ok((h * 3600 + m * 60 + s) as f64 + millis.parse::<f64>().map_err(|_| bad())? / 1000.0)
}

/// The text without markup tags (`<i>`, `<c.loud>`, `<00:00:01.000>`), entities kept as text.
fn strip_tags(line: &str) -> String {
    let mut out = String::with_capacity(line.len());
    let mut in_tag = false;
    for ch in line.chars() {
        match ch {
            '<' => in_tag = true,
            '>' if in_tag => in_tag = false,
            _ if !in_tag => out.push(ch),
            _ => {}
        }
    }
    out.replace("&amp;", "&").replace("&lt;", "<").replace("&gt;", ">").replace("&nbsp;", "\u{a0}")
}

/// The text showing at `at` seconds, if any (cues in order, as [`parse`] returns them).
pub fn at(cues: &[TimedText], at: f64) -> Option<&TimedText> {
    let i = cues.partition_point(|c| c.start <= at);
    cues[..i].last().filter(|c| at < c.end)
}

#[cfg(test)]
mod tests {
    use super::*;

    const SRT: &str = "1\r\n00:00:01,000 --> 00:00:03,500\r\n<i>Casta diva</i>, che inargenti\r\n\r\n2\r\n00:00:04,000 --> 00:00:06,000\r\nqueste sacre\r\nantiche piante\r\n";
    const VTT: &str = "WEBVTT - Norma, act 1\n\nNOTE translated by the house\n\nintro\n00:01.000 --> 00:03.500 align:center\nChaste goddess, who silvers\n\n01:00:04.000 --> 01:00:06.000\nthese <c.old>sacred</c> &amp; ancient trees\n";

    #[test]
    fn reads_srt_and_vtt() {
        let srt = parse(SRT, false).unwrap();
        assert_eq!(srt.len(), 2);
        assert_eq!((srt[0].start, srt[0].end, srt[0].text.as_str()), (1.0, 3.5, "Casta diva, che inargenti"));
        assert_eq!(srt[1].text, "queste sacre\nantiche piante");
        let vtt = parse(VTT, true).unwrap();
        assert_eq!((vtt[0].start, vtt[0].text.as_str()), (1.0, "Chaste goddess, who silvers"));
        assert_eq!((vtt[1].start, vtt[1].end, vtt[1].text.as_str()), (3604.0, 3606.0, "these sacred & ancient trees"));
        assert_eq!(at(&srt, 2.0).map(|c| c.start), Some(1.0));
        assert_eq!(at(&srt, 3.7), None);
        assert_eq!(at(&srt, 0.5), None);
        assert_eq!(at(&srt, 5.999).map(|c| c.start), Some(4.0));
    }

    #[test]
    fn broken_files_name_their_line() {
        let err = |text: &str, vtt: bool| parse(text, vtt).unwrap_err().to_string();
        assert_eq!(
            err("1\n00:00:01,000 -> 00:00:02,000\nx\n", false),
            "line 1: expected a timing line `00:00:01,000 --> 00:00:02,500`, found \"1\""
        );
        assert!(
            err("1\n00:00:01.000 --> 00:00:02,000\nx\n", false).starts_with("line 2: expected a time HH:MM:SS,mmm")
        );
        assert!(
            err("1\n00:00:03,000 --> 00:00:02,000\nx\n", false).contains("ends (2.000 s) before it starts (3.000 s)")
        );
        assert!(
            err("1\n00:00:01,000 --> 00:00:03,000\na\n\n2\n00:00:02,000 --> 00:00:04,000\nb\n", false)
                .starts_with("line 6: the cue starts at 2.000 s, before the previous one ends")
        );
        assert!(err("one\n00:00:01,000 --> 00:00:03,000\na\n", false).contains("expected a cue number"));
        assert!(err("00:01.000 --> 00:02.000\nx\n", true).starts_with("line 1: expected WEBVTT"));
        assert!(err("WEBVTT\n\n00:61.000 --> 01:02.000\nx\n", true).contains("go to 59"));
        assert!(err("WEBVTT\n\na\nb\n00:01.000 --> 00:02.000\n", true).contains("line 3: expected a cue number or id"));
    }
}
