//! Chat moderation for the audience: cleans what people type, spots blocked words and paces how
//! fast each person may send, before any message can reach the stage.
//!
//! Everything here is pure and deterministic (time is passed in), so the decide step can run it
//! on every message and tests can replay it exactly.
//!
//! # Cleaning ([`sanitize`])
//!
//! A chat line is normalised to NFKC (fullwidth letters, ligatures and other compatibility forms
//! become plain ones); characters that hide or reorder text are removed (bidi controls,
//! zero-width characters, soft hyphen, tag characters, Hangul fillers); control characters and
//! every kind of whitespace become one space; the ends are trimmed. More than
//! [`MAX_COMBINING_RUN`] combining marks in a row ("Zalgo" text that draws over other lines) are
//! dropped. Length is counted in `char`s after cleaning: the limit is about what people see.
//!
//! # Blocked words ([`Blocklist`])
//!
//! Listed words and chat text are folded the same way to a *skeleton*:
//!
//! 1. each character is compatibility-decomposed and its combining marks dropped, so case,
//!    accents, fullwidth and mathematical letters fold to lowercase ASCII;
//! 2. look-alikes become the Latin letter they imitate: leetspeak (`0 1 3 4 5 7 8 9 @ $ € ! | +`)
//!    and common Cyrillic and Greek homoglyphs; `l` and `i` are one letter, since `1`, `|`, `I`
//!    and `l` are interchangeable to the eye;
//! 3. invisible characters vanish; any other letter or digit is a word character that matches
//!    nothing; everything else (spaces, punctuation, emoji) separates words;
//! 4. runs of one letter collapse to the letter and a count.
//!
//! A word of the text is blocked when its collapsed letters equal a listed word's and each run
//! is at least as long as the listed word's: "fuuuck" matches "fuck" and "connnard" matches
//! "connard", but "Niger" does not match "nigger", nor "fagot" (a bundle of wood) "faggot".
//! Only whole words match, which avoids the Scunthorpe problem ("computer" never matches
//! "pute"). Tolerances: digits and symbols at the ends of a word may be punctuation
//! ("connard!!"), so the word is also tried without them; a final `s` is tried off (plurals).
//! Words spelled one letter at a time between separators ("c o n n a r d", "c.o.n") are joined,
//! and every stretch of the joined letters is tried, since real one-letter words may sit next
//! to them ("y a c o n n a r d").
//!
//! Known gaps: masking with separators inside a word ("f*ck", "con nard"), multi-word entries
//! (their separators are dropped, so "fils de pute" only matches when written as one word),
//! entries in non-Latin scripts (refused by [`Blocklist::insert`]), and emoji joined with
//! U+200D, which [`sanitize`] splits into their parts.

use std::collections::{HashMap, HashSet};
use std::net::IpAddr;
use std::time::{Duration, Instant};

use thiserror::Error;

use unicode_normalization::char::{decompose_compatible, is_combining_mark};
use unicode_normalization::{IsNormalized, UnicodeNormalization, is_nfkc_quick};

use super::event::UserId;

/// Most combining marks kept in a row; beyond this, marks only serve to draw over other lines.
pub const MAX_COMBINING_RUN: usize = 4;

/// Why a chat message was refused. The `Display` text is meant for the person who sent it.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum ModerationError {
    /// Nothing visible was left once the message was cleaned.
    #[error("Your message is empty.")]
    Empty,
    /// The cleaned message is longer than the venue allows.
    #[error("Your message is too long: {found} characters, the limit is {max}.")]
    TooLong {
        /// The venue's limit, in characters.
        max: usize,
        /// The cleaned message's length, in characters.
        found: usize,
    },
    /// The message contains a listed word. The word is for moderators' logs, so the message
    /// shown to the audience does not repeat it.
    #[error("Your message contains a word that is not allowed here.")]
    Blocked {
        /// The listed word that matched, as written in the list.
        word: String,
    },
    /// A display name that would pass for the venue's own voice or its staff.
    #[error("This name is kept for the venue and its moderators; choose another.")]
    ReservedName,
}

impl ModerationError {
    /// A stable snake_case code for clients and logs: `empty`, `too_long`, `blocked_word` or
    /// `name_reserved`.
    pub fn code(&self) -> &'static str {
        match self {
            ModerationError::Empty => "empty",
            ModerationError::TooLong { .. } => "too_long",
            ModerationError::Blocked { .. } => "blocked_word",
            ModerationError::ReservedName => "name_reserved",
        }
    }
}

/// Cleans one chat line (see the module docs) and checks its length in characters.
pub fn sanitize(text: &str, max_chars: usize) -> Result<String, ModerationError> {
    // Reserving beyond what may be kept would let a flood of text claim memory for nothing.
    let mut line = Line {
        kept: String::with_capacity(text.len().min(max_chars.saturating_mul(4))),
        max: max_chars,
        count: 0,
        space_pending: false,
        marks: 0,
    };
    // A terminal's escape sequences go whole (`ESC[31m` would otherwise leave `[31m`).
    let text = &*strip_escape_sequences(text);
    // Invisible characters go before normalising, so that what they separated can compose.
    let visible = || text.chars().filter(|&c| !is_invisible(c));
    // Most chat is already normalised; skipping the normaliser then is the main saving.
    if text.is_ascii() || is_nfkc_quick(visible()) == IsNormalized::Yes {
        visible().for_each(|c| line.push(c));
    } else {
        visible().nfkc().for_each(|c| line.push(c));
    }
    line.finish()
}

/// Removes terminal escape sequences whole: CSI (`ESC [` … final byte, or the one-character
/// CSI U+009B), OSC, DCS, SOS, PM and APC strings (up to BEL or `ESC \`), and two-character
/// `ESC x` sequences. A lone ESC at the end goes too. Borrowed when there is none.
pub fn strip_escape_sequences(text: &str) -> std::borrow::Cow<'_, str> {
    if !text.contains(['\u{1b}', '\u{9b}', '\u{9d}', '\u{90}', '\u{98}', '\u{9e}', '\u{9f}']) {
        return std::borrow::Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars().peekable();
    // Skips a CSI's parameters and intermediates up to and including its final byte.
    fn skip_csi(chars: &mut std::iter::Peekable<std::str::Chars<'_>>) {
        for c in chars.by_ref() {
            if ('\u{40}'..='\u{7e}').contains(&c) {
                break;
            }
            if !('\u{20}'..='\u{3f}').contains(&c) {
                // Not part of a CSI: the sequence was cut; what follows is text again.
                break;
            }
        }
    }
    // Skips a control string up to BEL, ST (U+009C) or `ESC \`.
    fn skip_string(chars: &mut std::iter::Peekable<std::str::Chars<'_>>) {
        while let Some(c) = chars.next() {
            match c {
                '\u{7}' | '\u{9c}' => break,
                '\u{1b}' => {
                    if chars.peek() == Some(&'\\') {
                        chars.next();
                    }
                    break;
                }
                _ => {}
            }
        }
    }
    while let Some(c) = chars.next() {
        match c {
            '\u{1b}' => match chars.next() {
                Some('[') => skip_csi(&mut chars),
                Some(']' | 'P' | 'X' | '^' | '_') => skip_string(&mut chars),
                // Two-character sequences (ESC 7, ESC c, …) and a cut one: both characters go.
                _ => {}
            },
            '\u{9b}' => skip_csi(&mut chars),
            '\u{9d}' | '\u{90}' | '\u{98}' | '\u{9e}' | '\u{9f}' => skip_string(&mut chars),
            c => out.push(c),
        }
    }
    std::borrow::Cow::Owned(out)
}

/// Display names that would pass for the venue's own voices (`the audience` and `the crowd`
/// sign votes and crowd effects, `Parvis` its own messages) or for its staff; compared
/// ignoring case, accents, spacing and punctuation.
const RESERVED_NAMES: &[&str] = &[
    "the audience",
    "the crowd",
    "audience",
    "crowd",
    "le public",
    "la foule",
    "public",
    "parvis",
    "venue",
    "the venue",
    "system",
    "systeme",
    "admin",
    "administrator",
    "administrateur",
    "staff",
    "regie",
    "moderator",
    "moderators",
    "moderateur",
    "moderatrice",
    "moderation",
    "streamer",
    "broadcaster",
];

/// Words that make a name pass for staff or the venue wherever they stand in it (`Parvis
/// bot`, `admin Bob`).
const RESERVED_WORDS: &[&str] = &["admin", "administrator", "administrateur", "parvis"];

/// Staff titles refused even run into other letters (`BobModerator`): long enough that no
/// ordinary name holds them.
const STAFF_TITLES: &[&str] = &["moderator", "moderateur", "moderatrice"];

/// Cleans a display name like a chat line (at most `max_chars`), checks it against the
/// blocklist, and refuses names kept for the venue and its staff.
pub fn moderate_name(name: &str, max_chars: usize, blocklist: &Blocklist) -> Result<String, ModerationError> {
    let name = moderate(name, max_chars, blocklist)?;
    let folded: String = name
        .nfkd()
        .filter(|c| !is_combining_mark(*c))
        .flat_map(char::to_lowercase)
        .map(|c| if c.is_alphanumeric() { c } else { ' ' })
        .collect();
    let words: Vec<&str> = folded.split_whitespace().collect();
    let joined = words.join(" ");
    // Spelled out with spaces (`r é g i e`) or run together (`theaudience`), it is the same name.
    let squashed: String = words.concat();
    let reserved = RESERVED_NAMES.iter().any(|r| *r == joined || r.replace(' ', "") == squashed)
        || words.iter().any(|w| RESERVED_WORDS.contains(w))
        || STAFF_TITLES.iter().any(|t| squashed.contains(t));
    if reserved {
        return Err(ModerationError::ReservedName);
    }
    Ok(name)
}

/// Cleans a chat line and checks it against `blocklist`: the whole moderation of one message.
pub fn moderate(text: &str, max_chars: usize, blocklist: &Blocklist) -> Result<String, ModerationError> {
    let line = sanitize(text, max_chars)?;
    blocklist.check(&line)?;
    Ok(line)
}

/// Characters that show nothing yet can hide words, reorder text or spoof names.
fn is_invisible(c: char) -> bool {
    matches!(c,
        '\u{00AD}' | '\u{034F}' | '\u{061C}' | '\u{115F}' | '\u{1160}' | '\u{17B4}' | '\u{17B5}'
        | '\u{180E}' | '\u{200B}'..='\u{200F}' | '\u{202A}'..='\u{202E}' | '\u{2060}'..='\u{206F}'
        | '\u{3164}' | '\u{FEFF}' | '\u{FFA0}' | '\u{FFF9}'..='\u{FFFB}' | '\u{1BCA0}'..='\u{1BCA3}'
        | '\u{1D173}'..='\u{1D17A}' | '\u{E0000}'..='\u{E007F}')
}

/// A cleaned line being built, and how long it would be without the limit.
struct Line {
    kept: String,
    max: usize,
    count: usize,
    space_pending: bool,
    marks: usize,
}

impl Line {
    fn push(&mut self, c: char) {
        // The braille blank looks like nothing and is a favourite for "empty" messages.
        if c.is_whitespace() || c.is_control() || c == '\u{2800}' {
            // A space only counts between visible characters: runs collapse, both ends trim.
            self.space_pending = self.count > 0;
            self.marks = 0;
            return;
        }
        if !c.is_ascii() && is_invisible(c) {
            // Normalising can map a visible compatibility form onto an invisible one.
            return;
        }
        if !c.is_ascii() && is_combining_mark(c) {
            self.marks += 1;
            if self.marks > MAX_COMBINING_RUN {
                return;
            }
        } else {
            self.marks = 0;
        }
        if std::mem::take(&mut self.space_pending) {
            self.keep(' ');
        }
        self.keep(c);
    }

    fn keep(&mut self, c: char) {
        // Past the limit only the count matters, for the error.
        self.count += 1;
        if self.count <= self.max {
            self.kept.push(c);
        }
    }

    fn finish(self) -> Result<String, ModerationError> {
        match self.count {
            0 => Err(ModerationError::Empty),
            found if found > self.max => Err(ModerationError::TooLong { max: self.max, found }),
            _ => Ok(self.kept),
        }
    }
}

/// Stands for a letter or digit outside the skeleton alphabet: part of a word, matches nothing.
const FOREIGN: u8 = b'#';
/// Characters kept per word while scanning; longer words cannot be listed ones.
const WORD_CAP: usize = 64;
/// Letters kept of a spelled-out stretch before older ones are let go.
const SPELL_CAP: usize = 128;
/// Longest listed word, in collapsed letters; also the longest stretch tried in spelled text.
const ENTRY_CAP: usize = 32;
/// Repeats of one letter worth keeping; listed words are capped the same way.
const RUN_CAP: usize = 3;

/// One folded character. A letter is `masked` (the `bool`) when it came from a digit or symbol,
/// which at the ends of a word may just be punctuation or a number.
#[derive(Clone, Copy)]
enum Glyph {
    Letter(u8, bool),
    Invisible,
    Separator,
}

const fn plain(letter: u8) -> Glyph {
    Glyph::Letter(letter, false)
}

const fn masked(letter: u8) -> Glyph {
    Glyph::Letter(letter, true)
}

fn fold_char(c: char, emit: &mut impl FnMut(Glyph)) {
    if c.is_ascii() {
        emit(fold_ascii(c as u8));
        return;
    }
    // These ligatures have no decomposition, yet read as two letters.
    let pair = match c {
        'æ' | 'Æ' => Some((b'a', b'e')),
        'œ' | 'Œ' => Some((b'o', b'e')),
        'ß' | 'ẞ' => Some((b's', b's')),
        _ => None,
    };
    if let Some((first, second)) = pair {
        emit(plain(first));
        emit(plain(second));
    } else if is_invisible(c) {
        emit(Glyph::Invisible);
    } else {
        decompose_compatible(c, |d| emit(fold_decomposed(d)));
    }
}

fn fold_ascii(b: u8) -> Glyph {
    match b {
        b'l' | b'L' => plain(b'i'),
        b'a'..=b'z' => plain(b),
        b'A'..=b'Z' => plain(b.to_ascii_lowercase()),
        b'0' => masked(b'o'),
        b'1' | b'!' | b'|' => masked(b'i'),
        b'3' => masked(b'e'),
        b'4' | b'@' => masked(b'a'),
        b'5' | b'$' => masked(b's'),
        b'7' | b'+' => masked(b't'),
        b'8' => masked(b'b'),
        b'9' => masked(b'g'),
        b'2' | b'6' => masked(FOREIGN),
        _ => Glyph::Separator,
    }
}

fn fold_decomposed(c: char) -> Glyph {
    if c.is_ascii() {
        fold_ascii(c as u8)
    } else if let Some(letter) = homoglyph(c) {
        plain(letter)
    } else if c == '€' {
        masked(b'e')
    } else if is_combining_mark(c) || is_invisible(c) {
        Glyph::Invisible
    } else if c.is_alphanumeric() {
        plain(FOREIGN)
    } else {
        Glyph::Separator
    }
}

/// The Latin letter that a Cyrillic, Greek or odd Latin letter passes for (already decomposed).
fn homoglyph(c: char) -> Option<u8> {
    Some(match c {
        'а' | 'А' | 'α' | 'Α' | 'ɑ' => b'a',
        'в' | 'В' | 'β' | 'Β' | 'ь' | 'Ь' => b'b',
        'с' | 'С' | 'ϲ' | 'Ϲ' => b'c',
        'ԁ' | 'đ' | 'Đ' => b'd',
        'е' | 'Е' | 'є' | 'Є' | 'ε' | 'Ε' => b'e',
        'ɡ' => b'g',
        'н' | 'Н' | 'һ' | 'Һ' | 'Η' => b'h',
        'і' | 'І' | 'ӏ' | 'Ӏ' | 'ι' | 'Ι' | 'ı' | 'ł' | 'Ł' => b'i',
        'ј' | 'Ј' | 'ϳ' => b'j',
        'к' | 'К' | 'κ' | 'Κ' => b'k',
        'м' | 'М' | 'Μ' => b'm',
        'п' | 'η' | 'Ν' => b'n',
        'о' | 'О' | 'ο' | 'Ο' | 'σ' | 'ø' | 'Ø' => b'o',
        'р' | 'Р' | 'ρ' | 'Ρ' => b'p',
        'ԛ' => b'q',
        'г' => b'r',
        'ѕ' | 'Ѕ' => b's',
        'т' | 'Т' | 'τ' | 'Τ' => b't',
        'υ' | 'μ' => b'u',
        'ν' => b'v',
        'ԝ' | 'ω' => b'w',
        'х' | 'Х' | 'χ' | 'Χ' => b'x',
        'у' | 'У' | 'ү' | 'Ү' | 'γ' | 'Υ' => b'y',
        'Ζ' => b'z',
        _ => return None,
    })
}

/// Folded letters of one word, on the stack: scanning allocates nothing.
struct Word<const N: usize> {
    letters: [u8; N],
    masked: [bool; N],
    len: usize,
    overflowed: bool,
}

impl<const N: usize> Word<N> {
    const fn new() -> Self {
        Word { letters: [0; N], masked: [false; N], len: 0, overflowed: false }
    }

    fn push(&mut self, letter: u8, masked: bool) {
        let recent = &self.letters[self.len.saturating_sub(RUN_CAP)..self.len];
        if recent.len() == RUN_CAP && recent.iter().all(|&l| l == letter) {
            return;
        }
        if self.len == N {
            self.overflowed = true;
            return;
        }
        self.letters[self.len] = letter;
        self.masked[self.len] = masked;
        self.len += 1;
    }

    fn letters(&self) -> &[u8] {
        &self.letters[..self.len]
    }

    /// One letter, maybe repeated: a piece of a word spelled out between separators.
    fn is_piece(&self) -> bool {
        let letters = self.letters();
        let same = |first: &u8| *first != FOREIGN && letters.iter().all(|l| l == first);
        !self.overflowed && letters.first().is_some_and(same)
    }

    fn keep_last(&mut self, keep: usize) {
        let start = self.len.saturating_sub(keep);
        self.letters.copy_within(start..self.len, 0);
        self.masked.copy_within(start..self.len, 0);
        self.len -= start;
    }

    fn clear(&mut self) {
        self.len = 0;
        self.overflowed = false;
    }
}

/// Collapses runs: `keys` gets each run's letter, `counts` its length. Returns the run count.
fn collapse(letters: &[u8], keys: &mut [u8], counts: &mut [u8]) -> usize {
    let mut n = 0;
    for &letter in letters {
        if n > 0 && keys[n - 1] == letter {
            counts[n - 1] = counts[n - 1].saturating_add(1);
        } else if n < keys.len() {
            keys[n] = letter;
            counts[n] = 1;
            n += 1;
        }
    }
    n
}

/// A listed word: as written, and the least each run of its skeleton must repeat.
#[derive(Debug, Clone)]
struct Entry {
    word: Box<str>,
    runs: Box<[u8]>,
}

/// Words the venue refuses in chat, matched on skeletons (see the module docs).
#[derive(Debug, Clone)]
pub struct Blocklist {
    entries: HashMap<Box<[u8]>, Vec<Entry>>,
    /// Per first letter, a bit per skeleton length listed: most words skip hashing entirely.
    shapes: [u64; 26],
    len: usize,
}

/// A blocked word found in a message. Only a match allocates: clean messages cost nothing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BlockedMatch {
    /// The listed word that matched, as written in the list.
    pub word: String,
}

impl From<BlockedMatch> for ModerationError {
    fn from(found: BlockedMatch) -> Self {
        ModerationError::Blocked { word: found.word }
    }
}

/// A starting list of clearly abusive French and English words; venues extend it from config.
/// Short or ambiguous words ("con", "ass", "cul", "retard", "nique", "NTM") are left out on
/// purpose: whole-word matching still flags them alone ("en retard", "pique-nique", the band).
#[rustfmt::skip]
const DEFAULT_FR_EN: &[&str] = &[
    "connard", "connasse", "salope", "salaud", "salopard", "enculé", "enculer", "pute",
    "pétasse", "pouffiasse", "bâtard", "nègre", "bougnoule", "youpin", "bicot", "pédé",
    "gouine", "tarlouze", "enfoiré", "trouduc", "fdp", "fuck", "fucking", "fucker", "fucked",
    "motherfucker", "motherfucking", "bitch", "bitches", "asshole", "arsehole", "bastard",
    "cunt", "dickhead", "cocksucker", "faggot", "nigger", "nigga", "whore", "slut", "twat",
    "wanker", "douchebag", "kike", "spic", "tranny", "shithead", "dumbass", "jackass",
];

impl Blocklist {
    /// A blocklist of `words`; entries that can never match are skipped (see [`Self::insert`]).
    pub fn new(words: impl IntoIterator<Item = impl AsRef<str>>) -> Blocklist {
        let mut list = Blocklist { entries: HashMap::new(), shapes: [0; 26], len: 0 };
        for word in words {
            list.insert(word.as_ref());
        }
        list
    }

    /// The built-in starting list of French and English slurs and insults.
    pub fn default_fr_en() -> Blocklist {
        Blocklist::new(DEFAULT_FR_EN)
    }

    /// Adds one word. Returns `false`, adding nothing, when the word cannot be matched: empty,
    /// longer than 32 letters, or with letters outside the Latin skeleton (other scripts).
    pub fn insert(&mut self, word: &str) -> bool {
        let word = word.trim();
        let mut folded = Word::<SPELL_CAP>::new();
        let mut latin = true;
        for c in word.chars() {
            fold_char(c, &mut |glyph| {
                if let Glyph::Letter(letter, _) = glyph {
                    latin &= letter != FOREIGN;
                    folded.push(letter, false);
                }
            });
        }
        let (mut keys, mut counts) = ([0; SPELL_CAP], [0; SPELL_CAP]);
        let n = collapse(folded.letters(), &mut keys, &mut counts);
        if !latin || folded.overflowed || n == 0 || n > ENTRY_CAP {
            return false;
        }
        let (keys, runs) = (&keys[..n], &counts[..n]);
        let spellings = self.entries.entry(Box::from(keys)).or_default();
        if !spellings.iter().any(|entry| *entry.runs == *runs) {
            spellings.push(Entry { word: word.into(), runs: runs.into() });
            self.shapes[usize::from(keys[0] - b'a')] |= 1 << n;
            self.len += 1;
        }
        true
    }

    /// How many distinct words are listed.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether nothing is listed.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The first listed word that `text` contains, if any.
    pub fn find(&self, text: &str) -> Option<BlockedMatch> {
        if self.is_empty() {
            return None;
        }
        let mut scan = Scan { list: self, word: Word::new(), spelled: Word::new(), pieces: 0, found: None };
        for c in text.chars() {
            fold_char(c, &mut |glyph| scan.feed(glyph));
            if scan.found.is_some() {
                break;
            }
        }
        scan.end_word();
        scan.end_spelled();
        scan.found.map(|entry| BlockedMatch { word: entry.word.to_string() })
    }

    /// `Err(ModerationError::Blocked)` when `text` contains a listed word.
    pub fn check(&self, text: &str) -> Result<(), ModerationError> {
        self.find(text).map_or(Ok(()), |found| Err(found.into()))
    }

    fn lookup(&self, keys: &[u8], counts: &[u8]) -> Option<&Entry> {
        let first = *keys.first()?;
        if keys.len() > ENTRY_CAP || !first.is_ascii_lowercase() {
            return None;
        }
        if self.shapes[usize::from(first - b'a')] & (1 << keys.len()) == 0 {
            return None;
        }
        let spellings = self.entries.get(keys)?;
        spellings.iter().find(|entry| entry.runs.iter().zip(counts).all(|(need, got)| got >= need))
    }

    fn match_exact(&self, letters: &[u8]) -> Option<&Entry> {
        let (mut keys, mut counts) = ([0; SPELL_CAP], [0; SPELL_CAP]);
        let n = collapse(letters, &mut keys, &mut counts);
        self.lookup(&keys[..n], &counts[..n])
    }

    /// A whole word, also without masked ends and without a plural `s`.
    fn match_word<const N: usize>(&self, word: &Word<N>) -> Option<&Entry> {
        if word.overflowed {
            return None;
        }
        let (letters, masked) = (word.letters(), &word.masked[..word.len]);
        let end = letters.len();
        let lead = masked.iter().take_while(|&&m| m).count();
        let tail = end - masked.iter().rev().take_while(|&&m| m).count();
        let cuts = [(0, end), (lead, end), (0, tail), (lead, tail)];
        for (i, &(from, to)) in cuts.iter().enumerate() {
            if from >= to || cuts[..i].contains(&(from, to)) {
                continue;
            }
            let part = &letters[from..to];
            let found = self.match_exact(part).or_else(|| match part.split_last() {
                Some((b's', stem)) if !stem.is_empty() => self.match_exact(stem),
                _ => None,
            });
            if found.is_some() {
                return found;
            }
        }
        None
    }

    /// Every stretch of a spelled-out run of letters.
    fn match_stretches<const N: usize>(&self, spelled: &Word<N>) -> Option<&Entry> {
        let (mut keys, mut counts) = ([0; SPELL_CAP], [0; SPELL_CAP]);
        let n = collapse(spelled.letters(), &mut keys, &mut counts);
        (0..n).find_map(|from| {
            let longest = (n - from).min(ENTRY_CAP);
            (1..=longest).find_map(|len| self.lookup(&keys[from..from + len], &counts[from..from + len]))
        })
    }
}

/// One pass over a message: the word being read and the spelled-out run it may belong to.
struct Scan<'a> {
    list: &'a Blocklist,
    word: Word<WORD_CAP>,
    spelled: Word<SPELL_CAP>,
    pieces: usize,
    found: Option<&'a Entry>,
}

impl<'a> Scan<'a> {
    fn feed(&mut self, glyph: Glyph) {
        match glyph {
            Glyph::Letter(letter, masked) => self.word.push(letter, masked),
            Glyph::Invisible => {}
            Glyph::Separator => self.end_word(),
        }
    }

    fn end_word(&mut self) {
        if self.word.len == 0 {
            return;
        }
        if self.word.is_piece() {
            if self.spelled.len + self.word.len > SPELL_CAP {
                // Keep enough to still catch a listed word straddling the cut.
                self.found = self.found.or_else(|| self.list.match_stretches(&self.spelled));
                self.spelled.keep_last(SPELL_CAP / 2);
            }
            for i in 0..self.word.len {
                self.spelled.push(self.word.letters[i], self.word.masked[i]);
            }
            self.pieces += 1;
        } else {
            self.end_spelled();
            self.found = self.found.or_else(|| self.list.match_word(&self.word));
        }
        self.word.clear();
    }

    fn end_spelled(&mut self) {
        let found = match self.pieces {
            0 => None,
            1 => self.list.match_word(&self.spelled),
            _ => self.list.match_stretches(&self.spelled),
        };
        self.found = self.found.or(found);
        self.spelled.clear();
        self.pieces = 0;
    }
}

/// Float slack, so that waiting exactly [`TokenBucket::retry_after`] always succeeds.
const TOKEN_SLACK: f64 = 1e-9;

/// Paces one sender: holds up to `capacity` tokens, refilled continuously; each message
/// spends some. Starts full. Time is always passed in, so the bucket is deterministic.
#[derive(Debug, Clone, PartialEq)]
pub struct TokenBucket {
    capacity: f64,
    refill_per_sec: f64,
    tokens: f64,
    refilled_at: Option<Instant>,
}

impl TokenBucket {
    /// A full bucket. A capacity or rate that is negative, NaN or infinite counts as zero.
    pub fn new(capacity: f64, refill_per_sec: f64) -> TokenBucket {
        let sane = |value: f64| {
            if value.is_finite() { value.max(0.0) } else { 0.0 }
        };
        let capacity = sane(capacity);
        TokenBucket { capacity, refill_per_sec: sane(refill_per_sec), tokens: capacity, refilled_at: None }
    }

    /// Tokens available at `now`.
    pub fn available(&self, now: Instant) -> f64 {
        let Some(then) = self.refilled_at else {
            return self.tokens;
        };
        let refill = now.saturating_duration_since(then).as_secs_f64() * self.refill_per_sec;
        (self.tokens + refill).min(self.capacity)
    }

    /// Spends `cost` tokens if there are enough at `now`; a negative or NaN cost is refused.
    pub fn try_take(&mut self, now: Instant, cost: f64) -> bool {
        self.tokens = self.available(now);
        // A clock that steps back must not rewind the refill, or tokens would be granted twice.
        self.refilled_at = Some(self.refilled_at.map_or(now, |then| then.max(now)));
        if cost.is_nan() || cost < 0.0 || self.tokens + TOKEN_SLACK < cost {
            return false;
        }
        self.tokens = (self.tokens - cost).max(0.0);
        true
    }

    /// How long from `now` until `cost` could be taken: zero if it can now, [`Duration::MAX`]
    /// if never (cost above capacity, no refill, or an invalid cost).
    pub fn retry_after(&self, now: Instant, cost: f64) -> Duration {
        if cost.is_nan() || cost < 0.0 || cost > self.capacity + TOKEN_SLACK {
            return Duration::MAX;
        }
        let missing = cost - self.available(now);
        if missing <= TOKEN_SLACK {
            return Duration::ZERO;
        }
        if self.refill_per_sec <= 0.0 {
            return Duration::MAX;
        }
        let secs = missing / self.refill_per_sec;
        // Rounded up to the nanosecond: waiting this long must be enough, never a hair short.
        let nanos = (secs * 1e9).ceil();
        if nanos < u64::MAX as f64 {
            Duration::from_nanos(nanos as u64)
        } else {
            Duration::try_from_secs_f64(secs).unwrap_or(Duration::MAX)
        }
    }
}

/// Moderation decisions shared between the venue (which makes them) and the edge (which
/// enforces them on every message). A ban or a time-out holds the member's id (which the page
/// keeps across reconnects in its signed session token) and, where the edge saw one, the
/// network address they came from, so that reconnecting under a new name does not lift it.
#[derive(Debug, Default)]
pub struct ModerationState {
    /// Banned users.
    pub banned: HashSet<UserId>,
    /// Addresses of banned users, with the user banned from each (the page's members; chat
    /// platforms' members have none).
    pub banned_addresses: HashMap<IpAddr, UserId>,
    /// Users timed out until the given instant.
    pub timed_out: HashMap<UserId, Instant>,
    /// Addresses timed out until the given instant.
    pub timed_out_addresses: HashMap<IpAddr, Instant>,
    /// Minimum interval between two chat lines of one user, if slow mode is on.
    pub slow_mode: Option<Duration>,
    /// When each user last chatted, for slow mode.
    pub last_chat: HashMap<UserId, Instant>,
}

/// Senders remembered for slow mode before those whose interval is over are forgotten.
const MAX_LAST_CHAT: usize = 50_000;

/// Why moderators' decisions hold a member's message back.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Held {
    /// Timed out for this much longer.
    TimedOut(Duration),
    /// Slow mode, at one chat line per this interval.
    SlowMode(Duration),
}

impl Held {
    /// The protocol's error code.
    pub fn code(self) -> &'static str {
        match self {
            Held::TimedOut(_) => "timed_out",
            Held::SlowMode(_) => "slow_mode",
        }
    }
}

impl ModerationState {
    /// Bans `user`, and the `address` they came from if known.
    pub fn ban(&mut self, user: UserId, address: Option<IpAddr>) {
        if let Some(address) = address {
            self.banned_addresses.insert(address, user.clone());
        }
        self.banned.insert(user);
    }

    /// Lifts `user`'s ban and that of the addresses banned with them.
    pub fn unban(&mut self, user: &UserId) {
        self.banned.remove(user);
        self.banned_addresses.retain(|_, banned| banned != user);
    }

    /// Whether `user`, or anyone from `address`, is banned.
    pub fn is_banned(&self, user: &UserId, address: Option<IpAddr>) -> bool {
        self.banned.contains(user) || address.is_some_and(|a| self.banned_addresses.contains_key(&a))
    }

    /// Times `user` out until `until`, and the `address` they came from if known.
    pub fn time_out(&mut self, user: UserId, address: Option<IpAddr>, until: Instant) {
        self.timed_out.insert(user, until);
        if let Some(address) = address {
            self.timed_out_addresses.insert(address, until);
        }
    }

    /// Whether `user`'s message at `now` is held back: by a time-out of the member or of the
    /// `address` they write from (forgotten here once over), or by slow mode when `slowed`
    /// (chat lines of members who are not staff).
    pub fn held(&mut self, user: &UserId, address: Option<IpAddr>, now: Instant, slowed: bool) -> Option<Held> {
        let until =
            [self.timed_out.get(user).copied(), address.and_then(|a| self.timed_out_addresses.get(&a).copied())]
                .into_iter()
                .flatten()
                .max();
        if let Some(until) = until {
            if now < until {
                return Some(Held::TimedOut(until - now));
            }
            self.timed_out.remove(user);
            if let Some(address) = address {
                self.timed_out_addresses.remove(&address);
            }
        }
        let interval = self.slow_mode.filter(|_| slowed)?;
        self.last_chat
            .get(user)
            .is_some_and(|last| now.duration_since(*last) < interval)
            .then_some(Held::SlowMode(interval))
    }

    /// Records a chat line for slow mode. Audiences churn and platforms bring any number of
    /// senders: beyond a bound, those whose slow-mode interval is over are forgotten.
    pub fn record_chat(&mut self, user: UserId, now: Instant) {
        if self.last_chat.len() >= MAX_LAST_CHAT {
            let keep = self.slow_mode.unwrap_or(Duration::ZERO);
            self.last_chat.retain(|_, at| now.saturating_duration_since(*at) < keep);
        }
        self.last_chat.insert(user, now);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn assert_cleaned(cases: &[(&str, &str)]) {
        for (text, expected) in cases {
            assert_eq!(sanitize(text, 500).as_deref(), Ok(*expected), "{text:?}");
        }
    }

    fn assert_blocked(list: &Blocklist, texts: &[&str], expected: bool) {
        for text in texts {
            assert_eq!(list.find(text).is_some(), expected, "{text:?}");
        }
    }

    fn fr_en() -> Blocklist {
        Blocklist::default_fr_en()
    }

    #[test]
    fn bidi_controls_are_stripped() {
        assert_cleaned(&[("abc\u{202E}def", "abcdef"), ("\u{2067}x\u{2069} y\u{200F}\u{61C}", "x y")]);
    }

    #[test]
    fn zero_width_and_format_characters_are_stripped() {
        assert_cleaned(&[
            ("a\u{200B}b\u{200C}c\u{200D}d\u{2060}e\u{FEFF}f", "abcdef"),
            ("so\u{AD}ft \u{E0041}\u{E0042}tag\u{3164}", "soft tag"),
            ("\u{2764}\u{FE0F}", "\u{2764}\u{FE0F}"), // emoji variation selectors stay
        ]);
    }

    #[test]
    fn terminal_escape_sequences_go_whole() {
        assert_cleaned(&[
            ("\u{1b}[31mred\u{1b}[0m alert", "red alert"),
            ("\u{1b}[1;38;5;196mbold\u{1b}[m", "bold"),
            ("\u{9b}31mx", "x"),
            ("title\u{1b}]0;pwned\u{7} here", "title here"),
            ("a\u{1b}]8;;http://x\u{1b}\\link\u{1b}]8;;\u{1b}\\b", "alinkb"),
            ("\u{1b}cclear", "clear"),
            ("cut\u{1b}", "cut"),
            ("cut\u{1b}[12", "cut"),
        ]);
    }

    #[test]
    fn names_that_pass_for_the_venue_or_its_staff_are_reserved() {
        let list = fr_en();
        for name in
            ["the audience", "The  Crowd", "PARVIS", "Bob (moderator)", "Modérateur", "admin", "r é g i e", "le public"]
        {
            assert_eq!(moderate_name(name, 32, &list), Err(ModerationError::ReservedName), "{name:?}");
        }
        for name in ["Modesto", "Audrey", "Crowdy", "Parvise", "Ana"] {
            assert!(moderate_name(name, 32, &list).is_ok(), "{name:?}");
        }
        assert_eq!(ModerationError::ReservedName.code(), "name_reserved");
    }

    #[test]
    fn controls_and_whitespace_become_single_spaces() {
        assert_cleaned(&[
            ("a\nb\r\n\tc\u{7}d\u{85}e\u{7F}f", "a b c d e f"),
            ("  hello \u{3000}\u{2028} \u{2800} world  \n", "hello world"),
        ]);
    }

    #[test]
    fn nfkc_folds_compatibility_forms() {
        assert_cleaned(&[("ｈｅｌｌｏ　ＷＯＲＬＤ", "hello WORLD"), ("ﬁn", "fin")]);
        // Composition also works across a character that was removed.
        assert_cleaned(&[("e\u{301}te\u{301}", "été"), ("e\u{200B}\u{301}", "é")]);
    }

    #[test]
    fn zalgo_is_capped() {
        let zalgo: String = ['x'].into_iter().chain('\u{300}'..='\u{309}').collect();
        let cleaned = sanitize(&format!("{zalgo} {zalgo}"), 500).expect("valid");
        let marks = cleaned.chars().filter(|&c| is_combining_mark(c)).count();
        assert_eq!(marks, 2 * MAX_COMBINING_RUN);
        assert_eq!(cleaned.chars().count(), 2 * (1 + MAX_COMBINING_RUN) + 1);
        // A removed character between marks does not restart the count.
        let hidden = sanitize("x\u{336}\u{336}\u{336}\u{200B}\u{336}\u{336}\u{336}", 500);
        assert_eq!(hidden.map(|h| h.chars().count()), Ok(1 + MAX_COMBINING_RUN));
    }

    #[test]
    fn length_is_counted_in_characters_after_cleaning() {
        let too_long = |max, found| Err(ModerationError::TooLong { max, found });
        assert_eq!(sanitize("été", 3), Ok("été".to_owned()));
        assert_eq!(sanitize("été", 2), too_long(2, 3));
        assert_eq!(sanitize("🎉🎉🎉", 3), Ok("🎉🎉🎉".to_owned()));
        assert_eq!(sanitize("🎉🎉🎉🎉", 3), too_long(3, 4));
        assert_eq!(sanitize("  a\u{200B}\u{200B}b  ", 2), Ok("ab".to_owned()));
    }

    #[test]
    fn cleaning_twice_changes_nothing() {
        for text in ["  a\u{202E}b\u{301}\u{301}  c\t", "ｘ\u{336}\u{336}\u{336}\u{336}\u{336}\u{FFA0}y"] {
            let once = sanitize(text, 500).expect("valid");
            assert_eq!(sanitize(&once, 500).as_deref(), Ok(once.as_str()), "{text:?}");
        }
    }

    #[test]
    fn empty_after_cleaning_is_refused() {
        for text in ["", "   ", "\u{200B}\u{202E}\n\t", "\u{2800}\u{3164}"] {
            assert_eq!(sanitize(text, 10), Err(ModerationError::Empty), "{text:?}");
        }
    }

    #[test]
    fn errors_have_stable_codes_and_do_not_echo_the_word() {
        let blocked = ModerationError::Blocked { word: "connard".to_owned() };
        let too_long = ModerationError::TooLong { max: 140, found: 150 };
        assert_eq!(ModerationError::Empty.code(), "empty");
        assert_eq!(too_long.code(), "too_long");
        assert_eq!(blocked.code(), "blocked_word");
        assert!(!blocked.to_string().contains("connard"));
        assert!(too_long.to_string().contains("140"));
    }

    #[test]
    fn default_list_is_modest_and_fully_usable() {
        assert_eq!(fr_en().len(), DEFAULT_FR_EN.len());
        assert!((30..=60).contains(&DEFAULT_FR_EN.len()));
        assert_blocked(&fr_en(), DEFAULT_FR_EN, true);
    }

    #[test]
    fn case_and_accents_match() {
        let word = |text| fr_en().find(text).map(|found| found.word);
        assert_eq!(word("t'es un CoNnArD").as_deref(), Some("connard"));
        assert_eq!(word("espèce d'ENCULE").as_deref(), Some("enculé"));
        assert_eq!(word("salôpe").as_deref(), Some("salope"));
        assert_eq!(word("batard").as_deref(), Some("bâtard"));
    }

    #[test]
    fn leetspeak_matches() {
        let texts = ["c0nn4rd", "5alope", "b!tch", "a$$hole", "f@ggot", "s|ut", "+wa+", "€ncul€"];
        assert_blocked(&fr_en(), &texts, true);
        assert_blocked(&fr_en(), &["8itch", "wh0re", "CONN4RD"], true);
    }

    #[test]
    fn homoglyphs_and_compatibility_letters_match() {
        let cyrillic = ["\u{441}\u{43E}nn\u{430}rd", "\u{455}\u{430}l\u{43E}\u{440}\u{435}"];
        let greek = ["\u{3C9}h\u{3BF}r\u{3B5}", "\u{3C4}w\u{3B1}\u{3C4}"];
        assert_blocked(&fr_en(), &cyrillic, true);
        assert_blocked(&fr_en(), &greek, true);
        // Fullwidth, mathematical bold, dotless i, capital I standing for l.
        assert_blocked(&fr_en(), &["ｃｏｎｎａｒｄ", "𝐜𝐨𝐧𝐧𝐚𝐫𝐝", "b\u{131}tch", "sIut"], true);
    }

    #[test]
    fn spelled_out_letters_match() {
        let texts = [
            "c o n n a r d",
            "c.o.n.n.a.r.d",
            "c-o-n-n-a-r-d",
            "c . o _ n n * a r d !",
            "t'es qu'un c o n n a r d",
            "y a c o n n a r d ici",
            "F.D.P",
            "C.0.N.N.4.R.D",
        ];
        assert_blocked(&fr_en(), &texts, true);
        let past_the_buffer = format!("{} c o n n a r d", "x y ".repeat(100));
        assert_blocked(&fr_en(), &[&past_the_buffer], true);
    }

    #[test]
    fn repeats_invisibles_punctuation_and_plurals_match() {
        let repeated = ["connnnnnnard", "fuuuuuuuuck", "biiiiitch", "(((whore)))"];
        assert_blocked(&fr_en(), &repeated, true);
        let hidden = ["con\u{200B}nard", "f\u{200D}u\u{AD}ck", "sal\u{301}\u{336}ope"];
        assert_blocked(&fr_en(), &hidden, true);
        assert_blocked(&fr_en(), &["connard!!!", "fuck?!", "connards", "!!fuck"], true);
    }

    #[test]
    fn doubled_letters_are_required_where_the_word_has_them() {
        let list = Blocklist::new(["ass"]);
        assert_blocked(&list, &["ass", "aaassss"], true);
        assert_blocked(&list, &["as"], false);
        assert_blocked(&fr_en(), &["Niger, Nigeria", "un fagot de bois"], false);
    }

    #[test]
    fn whole_words_only_no_scunthorpe() {
        let list = Blocklist::new(["ass", "con"]);
        let innocent = [
            "class assistant passage bass",
            "Quel concert ! On se contacte après, c'est convenu.",
            "deconne pas, icon",
        ];
        assert_blocked(&list, &innocent, false);
        assert_blocked(&list, &["quel con", "c o n", "ass!"], true);
    }

    #[test]
    fn ordinary_chat_is_not_flagged_by_the_default_list() {
        let innocent = [
            "Scunthorpe, Penistone, Essex, Middlesex, cocktail, Dick",
            "Le député a un ordinateur, computer, disputé, réputé",
            "Je suis en retard, pique-nique au parc, technique",
            "Youpi ! spicy assassin, classe, shiitake, therapist, analyse",
            "Suprême NTM en concert, contact, conte, décontracté",
            "J'y vais, à tout à l'heure ! 1 2 3 4 5 6 7 8 9 0 h2o mp3 4k",
            "中文 日本語 Привет мир Γειά σου",
        ];
        assert_blocked(&fr_en(), &innocent, false);
        assert_blocked(&fr_en(), &["a b ".repeat(300).as_str()], false);
    }

    #[test]
    fn insert_refuses_entries_that_cannot_match() {
        let mut list = Blocklist::new(Vec::<String>::new());
        assert!(list.is_empty() && list.find("anything").is_none());
        assert!(!list.insert("  ") && !list.insert("мразь") && !list.insert(&"ab".repeat(20)));
        assert!(list.insert("Connard"));
        assert!(list.insert("c0nnard"), "same skeleton, accepted once");
        assert_eq!(list.len(), 1);
        assert_eq!(list.find("CONNARD").map(|found| found.word).as_deref(), Some("Connard"));
    }

    #[test]
    fn moderate_cleans_then_checks() {
        let blocked = Err(ModerationError::Blocked { word: "connard".to_owned() });
        assert_eq!(moderate("  bravo\u{202E} ! ", 20, &fr_en()), Ok("bravo !".to_owned()));
        assert_eq!(moderate("con\u{200B}nard", 20, &fr_en()), blocked);
        assert_eq!(moderate("\u{200B}", 20, &fr_en()), Err(ModerationError::Empty));
    }

    fn at(start: Instant, millis: u64) -> Instant {
        start + Duration::from_millis(millis)
    }

    #[test]
    fn bucket_allows_a_burst_then_refills_up_to_capacity() {
        let start = Instant::now();
        let mut bucket = TokenBucket::new(3.0, 2.0);
        assert!((0..3).all(|_| bucket.try_take(start, 1.0)));
        assert!(!bucket.try_take(start, 1.0));
        assert!(!bucket.try_take(at(start, 400), 1.0));
        assert!(bucket.try_take(at(start, 500), 1.0));
        assert!(!bucket.try_take(at(start, 500), 1.0));
        assert!((bucket.available(at(start, 100_000)) - 3.0).abs() < 1e-9);
        assert!(bucket.try_take(at(start, 100_000), 3.0));
        assert!(!bucket.try_take(at(start, 100_000), 0.5));
    }

    #[test]
    fn retry_after_says_when_the_cost_fits() {
        let start = Instant::now();
        let mut bucket = TokenBucket::new(3.0, 1.0);
        assert_eq!(bucket.retry_after(start, 1.0), Duration::ZERO);
        assert!(bucket.try_take(start, 3.0));
        assert_eq!(bucket.retry_after(start, 1.0), Duration::from_secs(1));
        assert_eq!(bucket.retry_after(at(start, 250), 1.0), Duration::from_millis(750));
        assert_eq!(bucket.retry_after(start, 2.5), Duration::from_millis(2500));
        assert_eq!(bucket.retry_after(start, 4.0), Duration::MAX);
        assert_eq!(bucket.retry_after(start, f64::NAN), Duration::MAX);
        for (rate, cost) in [(1.0, 1.0), (3.0, 0.7), (1e6, 1.0), (0.3, 2.9)] {
            let mut bucket = TokenBucket::new(3.0, rate);
            assert!(bucket.try_take(start, 3.0));
            let wait = bucket.retry_after(start, cost);
            let early = start + wait - Duration::from_micros(1);
            assert!(!bucket.clone().try_take(early, cost), "rate {rate} cost {cost}");
            assert!(bucket.try_take(start + wait, cost), "rate {rate} cost {cost}");
        }
    }

    #[test]
    fn bucket_is_safe_with_odd_inputs() {
        let start = Instant::now();
        let mut bucket = TokenBucket::new(2.0, 1.0);
        assert!(!bucket.try_take(start, -1.0) && !bucket.try_take(start, f64::NAN));
        assert!(bucket.try_take(at(start, 1000), 2.0));
        assert!(!bucket.try_take(start, 0.5), "a clock stepping back grants nothing");
        assert!(bucket.try_take(at(start, 1500), 0.5));
        let mut broken = TokenBucket::new(f64::NAN, -3.0);
        assert!(!broken.try_take(start, 1.0));
        assert_eq!(broken.retry_after(start, 1.0), Duration::MAX);
        let mut no_refill = TokenBucket::new(1.0, 0.0);
        assert!(no_refill.try_take(start, 1.0));
        assert_eq!(no_refill.retry_after(start, 1.0), Duration::MAX);
    }
}
