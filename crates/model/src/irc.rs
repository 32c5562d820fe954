//! IRC messages in Twitch's IRCv3 dialect, for the chat bridge.
//!
//! Two layers, both pure: [`parse_line`] splits one line into an [`IrcMessage`] that borrows
//! from it (tags, prefix, command, parameters), and [`twitch_event`] decodes the commands a
//! chat bridge acts on into a [`TwitchEvent`]. Parsing allocates nothing: tag values stay
//! escaped until read, and reading one allocates only when it contains an escape (decoding
//! reads a few, such as the display name).
//!
//! References: IRCv3 message tags (<https://ircv3.net/specs/extensions/message-tags>) and
//! Twitch's IRC reference (<https://dev.twitch.tv/docs/chat/irc/>). The test corpus is
//! `tests/data/twitch/corpus.txt`.

use std::borrow::Cow;
use std::ops::Range;

use thiserror::Error;

/// Most bytes a tag section may take, counting its leading `@` and the space after it. This
/// is the IRCv3 limit on what a server may send.
pub const MAX_TAGS_LEN: usize = 8191;

/// Most bytes accepted after the tag section (prefix, command and parameters), line ending not
/// counted.
///
/// Classic IRC allows 512 bytes with the CR LF, but Twitch does not hold to it: a chat message
/// may be 500 *characters*, which is up to 2000 bytes of UTF-8 (CJK, emoji), and Twitch relays
/// such lines whole (twitchdev/issues#282). Refusing them at 512 would drop long messages in
/// non-Latin scripts, so the limit leaves room for the worst case and still bounds the work.
pub const MAX_BODY_LEN: usize = 4096;

/// Most parameters one message may carry (RFC 1459).
pub const MAX_PARAMS: usize = 15;

/// Why a line is not an IRC message, or not a well-formed Twitch event.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum IrcError {
    /// Nothing but spaces and a line ending.
    #[error("empty line")]
    Empty,
    /// The tag section is over [`MAX_TAGS_LEN`].
    #[error("tag section is {len} bytes; at most {max} are allowed, counting the '@' and the space after it")]
    TagsTooLong {
        /// Its length in bytes (to the first space, or the whole line if there is none).
        len: usize,
        /// The limit.
        max: usize,
    },
    /// What follows the tag section is over [`MAX_BODY_LEN`].
    #[error("message after the tag section is {len} bytes; at most {max} are allowed")]
    BodyTooLong {
        /// Its length in bytes.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// A CR, LF or NUL before the end of the line; only a final CR LF or LF may end it.
    #[error("{what} at byte {at}: CR, LF and NUL may not appear inside a line")]
    ForbiddenChar {
        /// `"CR"`, `"LF"` or `"NUL"`.
        what: &'static str,
        /// Byte offset in the line.
        at: usize,
    },
    /// The line starts with `@` but no space ends the tag section, so nothing follows it.
    #[error("tag section is not followed by a space, so the line has no command")]
    TagsWithoutSpace,
    /// `@` followed directly by a space.
    #[error("'@' opens a tag section but no tag follows")]
    EmptyTags,
    /// A tag key that is empty or has characters IRCv3 keys cannot have.
    #[error("malformed tag key {key:?}")]
    BadTagKey {
        /// The key, shortened if long.
        key: String,
    },
    /// A prefix with an empty nick, user or host.
    #[error("malformed prefix {prefix:?}: {reason}")]
    BadPrefix {
        /// The prefix without its `:`, shortened if long.
        prefix: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// Nothing after the tags and the prefix (including a prefix that ends the line).
    #[error("no command after the tags and prefix")]
    MissingCommand,
    /// A command that is neither letters nor digits.
    #[error("command {command:?} is neither letters nor a three-digit numeric")]
    BadCommand {
        /// The command, shortened if long.
        command: String,
    },
    /// A command that starts with a digit but is not exactly three digits.
    #[error("numeric {command:?} is not exactly three digits")]
    BadNumeric {
        /// The command, shortened if long.
        command: String,
    },
    /// More than [`MAX_PARAMS`] parameters.
    #[error("more than {} parameters", MAX_PARAMS)]
    TooManyParams,
    /// A Twitch command that needs a sender (`nick!user@host`) came without a prefix.
    #[error("{command} has no prefix naming its sender")]
    MissingPrefix {
        /// The IRC command.
        command: &'static str,
    },
    /// A Twitch command lacks a parameter it always has.
    #[error("{command} is missing its {param} parameter")]
    MissingParam {
        /// The IRC command.
        command: &'static str,
        /// Which parameter.
        param: &'static str,
    },
    /// A channel parameter without its leading `#`.
    #[error("{command}: {channel:?} is not a channel name (no leading '#')")]
    BadChannel {
        /// The IRC command.
        command: &'static str,
        /// The parameter, shortened if long.
        channel: String,
    },
    /// A Twitch command lacks a tag it always has (is the `twitch.tv/tags` capability on?).
    #[error("{command} is missing the {tag} tag")]
    MissingTag {
        /// The IRC command.
        command: &'static str,
        /// The tag key.
        tag: &'static str,
    },
    /// A tag whose value does not have the form Twitch documents for it.
    #[error("tag {tag} has the value {value:?}; expected {expected}")]
    BadTagValue {
        /// The tag key.
        tag: &'static str,
        /// The raw value, shortened if long.
        value: String,
        /// The form it should have.
        expected: &'static str,
    },
}

impl IrcError {
    /// A short stable name for the error, for metrics labels and test expectations.
    pub fn code(&self) -> &'static str {
        match self {
            IrcError::Empty => "empty",
            IrcError::TagsTooLong { .. } => "tags_too_long",
            IrcError::BodyTooLong { .. } => "body_too_long",
            IrcError::ForbiddenChar { .. } => "forbidden_char",
            IrcError::TagsWithoutSpace => "tags_without_space",
            IrcError::EmptyTags => "empty_tags",
            IrcError::BadTagKey { .. } => "bad_tag_key",
            IrcError::BadPrefix { .. } => "bad_prefix",
            IrcError::MissingCommand => "missing_command",
            IrcError::BadCommand { .. } => "bad_command",
            IrcError::BadNumeric { .. } => "bad_numeric",
            IrcError::TooManyParams => "too_many_params",
            IrcError::MissingPrefix { .. } => "missing_prefix",
            IrcError::MissingParam { .. } => "missing_param",
            IrcError::BadChannel { .. } => "bad_channel",
            IrcError::MissingTag { .. } => "missing_tag",
            IrcError::BadTagValue { .. } => "bad_tag_value",
        }
    }
}

/// Errors quote input, and input can be kilobytes long; logs need only its start.
fn excerpt(s: &str) -> String {
    const MAX: usize = 64;
    if s.len() <= MAX {
        return s.to_owned();
    }
    format!("{}…", &s[..s.floor_char_boundary(MAX)])
}

fn bad_value(tag: &'static str, value: &str, expected: &'static str) -> IrcError {
    IrcError::BadTagValue { tag, value: excerpt(value), expected }
}

// ---------------------------------------------------------------------------------------------
// Generic IRCv3 layer
// ---------------------------------------------------------------------------------------------

/// One IRC line, split into its parts; every part borrows from the line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IrcMessage<'a> {
    /// The IRCv3 tags (empty when the line has none).
    pub tags: Tags<'a>,
    /// The source, when the line names one.
    pub prefix: Option<Prefix<'a>>,
    /// The command as sent: letters (`PRIVMSG`) or a three-digit numeric (`001`).
    pub command: &'a str,
    /// The parameters, the trailing one (after ` :`) included.
    pub params: Params<'a>,
}

/// The source of a message: `nick!user@host`, or a server name (which lands in `nick`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Prefix<'a> {
    /// The whole prefix, without its `:`.
    pub raw: &'a str,
    /// The nick, or the server's name for a server prefix such as `tmi.twitch.tv`.
    pub nick: &'a str,
    /// The part after `!`, if any.
    pub user: Option<&'a str>,
    /// The part after `@`, if any.
    pub host: Option<&'a str>,
}

/// The parameters of a message, held inline so that parsing does not allocate.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Params<'a> {
    items: [&'a str; MAX_PARAMS],
    len: u8,
    trailing: bool,
}

impl<'a> Params<'a> {
    /// How many parameters there are.
    pub fn len(&self) -> usize {
        usize::from(self.len)
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The parameter at `index`, if there is one.
    pub fn get(&self, index: usize) -> Option<&'a str> {
        self.as_slice().get(index).copied()
    }

    /// All parameters, in order.
    pub fn as_slice(&self) -> &[&'a str] {
        &self.items[..self.len()]
    }

    /// All parameters, in order.
    pub fn iter(&self) -> impl Iterator<Item = &'a str> + '_ {
        self.as_slice().iter().copied()
    }

    /// The last parameter if it was sent as a trailing one (after ` :`), which may be empty
    /// and may contain spaces.
    pub fn trailing(&self) -> Option<&'a str> {
        if self.trailing { self.as_slice().last().copied() } else { None }
    }

    fn push(&mut self, param: &'a str) -> Result<(), IrcError> {
        let index = self.len();
        let slot = self.items.get_mut(index).ok_or(IrcError::TooManyParams)?;
        *slot = param;
        self.len += 1;
        Ok(())
    }
}

/// The tag section of a message, kept as sent: values are unescaped only when read.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Tags<'a> {
    raw: &'a str,
}

impl<'a> Tags<'a> {
    /// The section as sent, without its `@`.
    pub fn raw(&self) -> &'a str {
        self.raw
    }

    /// Whether the message had no tags.
    pub fn is_empty(&self) -> bool {
        self.raw.is_empty()
    }

    /// Every tag, in the order sent.
    pub fn iter(&self) -> TagIter<'a> {
        TagIter { rest: self.raw }
    }

    /// The escaped value of `key`. A key sent without `=` has the empty value; a key sent
    /// twice has its last value (IRCv3).
    pub fn get_raw(&self, key: &str) -> Option<&'a str> {
        self.iter().filter(|tag| tag.key == key).last().map(|tag| tag.raw_value)
    }

    /// The unescaped value of `key`; borrowed unless the value contains an escape.
    pub fn get(&self, key: &str) -> Option<Cow<'a, str>> {
        self.get_raw(key).map(unescape_tag_value)
    }

    /// Whether `key` was sent.
    pub fn contains(&self, key: &str) -> bool {
        self.iter().any(|tag| tag.key == key)
    }
}

impl<'a> IntoIterator for Tags<'a> {
    type Item = Tag<'a>;
    type IntoIter = TagIter<'a>;

    fn into_iter(self) -> TagIter<'a> {
        self.iter()
    }
}

/// One tag of a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Tag<'a> {
    /// The key, vendor prefix and client `+` included.
    pub key: &'a str,
    /// The value as sent, still escaped.
    pub raw_value: &'a str,
}

impl<'a> Tag<'a> {
    /// The unescaped value.
    pub fn value(&self) -> Cow<'a, str> {
        unescape_tag_value(self.raw_value)
    }
}

/// Iterator over the tags of a message.
#[derive(Debug, Clone)]
pub struct TagIter<'a> {
    rest: &'a str,
}

impl<'a> Iterator for TagIter<'a> {
    type Item = Tag<'a>;

    fn next(&mut self) -> Option<Tag<'a>> {
        // memchr's vectorised search, first for the `;`, then for the `=` inside the entry.
        loop {
            if self.rest.is_empty() {
                return None;
            }
            let bytes = self.rest.as_bytes();
            let end = memchr::memchr(b';', bytes).unwrap_or(bytes.len());
            let equals = memchr::memchr(b'=', &bytes[..end]);
            // `;` and `=` are ASCII, so these are character boundaries.
            let entry = &self.rest[..end];
            self.rest = self.rest.get(end + 1..).unwrap_or("");
            // Empty entries (`a=1;;b=2`, a trailing `;`) carry nothing; skip rather than refuse.
            if entry.is_empty() {
                continue;
            }
            let (key, raw_value) = match equals {
                Some(at) => (&entry[..at], &entry[at + 1..]),
                None => (entry, ""),
            };
            return Some(Tag { key, raw_value });
        }
    }
}

/// Undoes IRCv3 tag-value escaping: `\:` → `;`, `\s` → space, `\\` → `\`, `\r` → CR,
/// `\n` → LF, `\` before any other character → that character, and a final lone `\` is
/// dropped. Borrows when there is nothing to undo.
pub fn unescape_tag_value(raw: &str) -> Cow<'_, str> {
    let Some(first) = raw.find('\\') else {
        return Cow::Borrowed(raw);
    };
    let mut out = String::with_capacity(raw.len());
    out.push_str(&raw[..first]);
    let mut rest = &raw[first..];
    while let Some(at) = rest.find('\\') {
        out.push_str(&rest[..at]);
        let mut after = rest[at + 1..].chars();
        match after.next() {
            Some(':') => out.push(';'),
            Some('s') => out.push(' '),
            Some('r') => out.push('\r'),
            Some('n') => out.push('\n'),
            Some(other) => out.push(other),
            None => {}
        }
        rest = after.as_str();
    }
    out.push_str(rest);
    Cow::Owned(out)
}

/// Splits one line into an [`IrcMessage`].
///
/// The line may end with CR LF or LF (or a lone CR, or nothing); spaces may repeat between
/// parts, and lead the line. The tag
/// section is limited to [`MAX_TAGS_LEN`] bytes and the rest to [`MAX_BODY_LEN`]. Tag keys are
/// checked here, tag values only when a layer above reads them.
pub fn parse_line(line: &str) -> Result<IrcMessage<'_>, IrcError> {
    let line = line.strip_suffix('\n').unwrap_or(line);
    let line = line.strip_suffix('\r').unwrap_or(line);
    let unpadded = line.trim_start_matches(' ');
    // Leading spaces are tolerated: they carry nothing, and some relays pad lines.
    let padding = line.len() - unpadded.len();
    let line = unpadded;
    if line.trim_end_matches(' ').is_empty() {
        return Err(IrcError::Empty);
    }
    let bytes = line.as_bytes();

    // The end of the tag section is looked for within the limit only: past it, the line is
    // refused whatever follows.
    let (tags_raw, body) = if line.starts_with('@') {
        let window = &bytes[..bytes.len().min(MAX_TAGS_LEN)];
        match memchr::memchr(b' ', window) {
            Some(1) => return Err(IrcError::EmptyTags),
            Some(space) => (&line[1..space], &line[space + 1..]),
            None if bytes.len() >= MAX_TAGS_LEN => {
                let len = memchr::memchr(b' ', bytes).map_or(bytes.len(), |space| space + 1);
                return Err(IrcError::TagsTooLong { len, max: MAX_TAGS_LEN });
            }
            None => return Err(IrcError::TagsWithoutSpace),
        }
    } else {
        ("", line)
    };
    if body.len() > MAX_BODY_LEN {
        return Err(IrcError::BodyTooLong { len: body.len(), max: MAX_BODY_LEN });
    }
    // Only now is the line known to be bounded; a CR or LF inside it would mean two lines were
    // glued together, and NUL is refused by every IRC grammar.
    if let Some(at) = memchr::memchr3(b'\r', b'\n', 0, bytes) {
        let what = match bytes[at] {
            b'\r' => "CR",
            b'\n' => "LF",
            _ => "NUL",
        };
        return Err(IrcError::ForbiddenChar { what, at: padding + at });
    }
    if !tags_raw.is_empty() {
        check_tag_keys(tags_raw)?;
    }

    let body = body.trim_start_matches(' ');
    let (prefix, body) = match body.strip_prefix(':') {
        Some(after_colon) => {
            let Some((raw, rest)) = split_at_space(after_colon) else {
                return Err(IrcError::MissingCommand);
            };
            (Some(parse_prefix(raw)?), rest.trim_start_matches(' '))
        }
        None => (None, body),
    };
    let (command, mut rest) = split_at_space(body).unwrap_or((body, ""));
    check_command(command)?;

    let mut params = Params::default();
    loop {
        rest = rest.trim_start_matches(' ');
        if rest.is_empty() {
            break;
        }
        if let Some(trailing) = rest.strip_prefix(':') {
            params.push(trailing)?;
            params.trailing = true;
            break;
        }
        let (middle, next) = split_at_space(rest).unwrap_or((rest, ""));
        params.push(middle)?;
        rest = next;
    }

    Ok(IrcMessage { tags: Tags { raw: tags_raw }, prefix, command, params })
}

/// `s.split_once(' ')`.
fn split_at_space(s: &str) -> Option<(&str, &str)> {
    let at = memchr::memchr(b' ', s.as_bytes())?;
    Some((&s[..at], &s[at + 1..]))
}

/// IRCv3 keys are `[+][vendor/]name`; `_` is allowed too because Twitch once sent `user_type`.
fn check_tag_keys(raw: &str) -> Result<(), IrcError> {
    let mut any = false;
    for Tag { key, .. } in (Tags { raw }) {
        any = true;
        let name = key.strip_prefix('+').unwrap_or(key);
        let valid = !name.is_empty()
            && name.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'/'));
        if !valid {
            return Err(IrcError::BadTagKey { key: excerpt(key) });
        }
    }
    if any { Ok(()) } else { Err(IrcError::EmptyTags) }
}

fn parse_prefix(raw: &str) -> Result<Prefix<'_>, IrcError> {
    let bad = |reason| Err(IrcError::BadPrefix { prefix: excerpt(raw), reason });
    if raw.is_empty() {
        return bad("empty prefix");
    }
    let (before_host, host) = match raw.split_once('@') {
        Some((_, "")) => return bad("empty host after '@'"),
        Some((before, host)) => (before, Some(host)),
        None => (raw, None),
    };
    let (nick, user) = match before_host.split_once('!') {
        Some((_, "")) => return bad("empty user after '!'"),
        Some((nick, user)) => (nick, Some(user)),
        None => (before_host, None),
    };
    if nick.is_empty() {
        return bad("empty nick");
    }
    Ok(Prefix { raw, nick, user, host })
}

fn check_command(command: &str) -> Result<(), IrcError> {
    let bytes = command.as_bytes();
    match bytes.first() {
        None => Err(IrcError::MissingCommand),
        Some(b) if b.is_ascii_digit() => {
            if bytes.len() == 3 && bytes.iter().all(u8::is_ascii_digit) {
                Ok(())
            } else {
                Err(IrcError::BadNumeric { command: excerpt(command) })
            }
        }
        Some(_) if bytes.iter().all(u8::is_ascii_alphabetic) => Ok(()),
        Some(_) => Err(IrcError::BadCommand { command: excerpt(command) }),
    }
}

// ---------------------------------------------------------------------------------------------
// Twitch layer
// ---------------------------------------------------------------------------------------------

/// What a Twitch line means to the chat bridge.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TwitchEvent<'a> {
    /// A chat message.
    Privmsg(Privmsg<'a>),
    /// A subscription, gift, raid, announcement or other channel event, with its optional
    /// message.
    UserNotice(UserNotice<'a>),
    /// A moderator cleared the chat, or banned or timed out one user.
    ClearChat(ClearChat<'a>),
    /// A moderator deleted one message.
    ClearMsg(ClearMsg<'a>),
    /// The channel's chat settings, whole on join and partial on each change.
    RoomState(RoomState<'a>),
    /// The server checks the connection; answer `PONG :<token>` or be disconnected.
    Ping {
        /// What to send back (empty if the server sent none).
        token: &'a str,
    },
    /// The server is about to restart; reconnect and rejoin.
    Reconnect,
    /// A server notice: a failed login, the result of a command, a refused message…
    Notice {
        /// The channel it concerns (`None` for `*`, before any channel is joined).
        channel: Option<&'a str>,
        /// Twitch's stable identifier for the notice (`msg_banned`, `slow_on`…), when sent.
        msg_id: Option<&'a str>,
        /// The human-readable text.
        text: &'a str,
    },
    /// A user joined a channel (needs the `twitch.tv/membership` capability).
    Join {
        /// The channel, without `#`.
        channel: &'a str,
        /// The user's login.
        login: &'a str,
    },
    /// A user left a channel (needs the `twitch.tv/membership` capability).
    Part {
        /// The channel, without `#`.
        channel: &'a str,
        /// The user's login.
        login: &'a str,
    },
    /// Numeric `001`: the server accepted the login.
    Connected {
        /// The login the server knows us by.
        login: &'a str,
    },
    /// `CAP * ACK`: the server granted these capabilities (space-separated).
    CapAck {
        /// The capabilities, e.g. `twitch.tv/tags twitch.tv/commands`.
        capabilities: &'a str,
    },
    /// `CAP * NAK`: the server refused these capabilities (space-separated).
    CapNak {
        /// The capabilities.
        capabilities: &'a str,
    },
}

impl TwitchEvent<'_> {
    /// A short stable name for the kind of event, for metrics labels and test expectations.
    pub fn name(&self) -> &'static str {
        match self {
            TwitchEvent::Privmsg(_) => "privmsg",
            TwitchEvent::UserNotice(_) => "usernotice",
            TwitchEvent::ClearChat(_) => "clearchat",
            TwitchEvent::ClearMsg(_) => "clearmsg",
            TwitchEvent::RoomState(_) => "roomstate",
            TwitchEvent::Ping { .. } => "ping",
            TwitchEvent::Reconnect => "reconnect",
            TwitchEvent::Notice { .. } => "notice",
            TwitchEvent::Join { .. } => "join",
            TwitchEvent::Part { .. } => "part",
            TwitchEvent::Connected { .. } => "connected",
            TwitchEvent::CapAck { .. } => "cap_ack",
            TwitchEvent::CapNak { .. } => "cap_nak",
        }
    }
}

/// A chatter's standing in the channel, as the message's tags and badges state it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct Roles {
    /// The channel's owner.
    pub broadcaster: bool,
    /// A moderator of the channel.
    pub moderator: bool,
    /// A VIP of the channel.
    pub vip: bool,
    /// A subscriber (founders included).
    pub subscriber: bool,
}

impl Roles {
    /// Whether the chatter speaks for the channel: its broadcaster or a moderator. ("Staff"
    /// here is the channel's team, not Twitch employees, whose badge is also called `staff`.)
    pub fn is_staff(self) -> bool {
        self.broadcaster || self.moderator
    }

    /// Roles widen what a chatter may do, so only an explicit `1` or badge grants one; anything
    /// unexpected grants nothing. The channel's own account (user id = room id) is its
    /// broadcaster whatever badges the line carries.
    fn derive(badges: &Badges<'_>, known: &Known<'_>, user_id: &str) -> Self {
        let flag = |v: Option<&str>| v == Some("1");
        Roles {
            broadcaster: badges.contains("broadcaster") || known.room_id == Some(user_id),
            moderator: badges.contains("moderator") || flag(known.moderator) || known.user_type == Some("mod"),
            vip: badges.contains("vip") || flag(known.vip),
            subscriber: flag(known.subscriber) || badges.contains("subscriber") || badges.contains("founder"),
        }
    }
}

/// The `badges` or `badge-info` tag: comma-separated `name/version` pairs, e.g.
/// `subscriber/12,bits/100`. For `badge-info` the version is a detail such as the number of
/// months subscribed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Badges<'a> {
    // Unescaped once: `badge-info` versions may contain escapes (prediction outcomes).
    value: Cow<'a, str>,
}

impl<'a> Badges<'a> {
    /// Reads a raw (escaped) tag value. Never fails: an entry without `/` is a badge with an
    /// empty version, and empty entries are skipped.
    pub fn from_tag(raw: &'a str) -> Self {
        Badges { value: unescape_tag_value(raw) }
    }

    /// The unescaped tag value.
    pub fn as_str(&self) -> &str {
        &self.value
    }

    /// Whether there are no badges.
    pub fn is_empty(&self) -> bool {
        self.iter().next().is_none()
    }

    /// Every badge, in the order sent.
    pub fn iter(&self) -> impl Iterator<Item = Badge<'_>> + '_ {
        self.value.split(',').filter(|entry| !entry.is_empty()).map(|entry| {
            let (name, version) = entry.split_once('/').unwrap_or((entry, ""));
            Badge { name, version }
        })
    }

    /// The version of badge `name`, if present.
    pub fn version(&self, name: &str) -> Option<&str> {
        self.iter().find(|badge| badge.name == name).map(|badge| badge.version)
    }

    /// Whether badge `name` is present.
    pub fn contains(&self, name: &str) -> bool {
        self.version(name).is_some()
    }
}

/// One badge.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Badge<'b> {
    /// The badge, e.g. `subscriber`, `moderator`, `bits`.
    pub name: &'b str,
    /// Its version, e.g. `12` (tier or months, depending on the badge).
    pub version: &'b str,
}

/// The `emotes` tag: `id:start-end,start-end/id:start-end`, checked when the event is decoded.
///
/// Positions count Unicode code points (not bytes, not UTF-16 units) and are inclusive. Use
/// [`Emotes::slices`] to get the text they cover.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Emotes<'a> {
    raw: &'a str,
}

/// One occurrence of an emote, as positions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EmoteRange<'a> {
    /// The emote's id (e.g. `25`, `emotesv2_…`).
    pub id: &'a str,
    /// Index of its first code point.
    pub start: usize,
    /// Index of its last code point (inclusive).
    pub end: usize,
}

/// One occurrence of an emote, located in the message text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EmoteSlice<'s> {
    /// The emote's id.
    pub id: &'s str,
    /// Index of its first code point.
    pub start: usize,
    /// Index of its last code point (inclusive).
    pub end: usize,
    /// Its byte range in the text.
    pub bytes: Range<usize>,
    /// The text it covers, e.g. `Kappa`.
    pub text: &'s str,
}

impl<'a> Emotes<'a> {
    /// Checks a raw `emotes` tag value. The empty value means no emotes.
    pub fn parse(raw: &'a str) -> Result<Self, IrcError> {
        let valid = raw.is_empty()
            || raw.split('/').all(|entry| {
                entry.split_once(':').is_some_and(|(id, ranges)| {
                    !id.is_empty() && ranges.split(',').all(|range| parse_emote_range(range).is_some())
                })
            });
        if valid {
            Ok(Emotes { raw })
        } else {
            Err(bad_value("emotes", raw, "id:start-end[,start-end] entries separated by '/', with start <= end"))
        }
    }

    /// The tag value as sent.
    pub fn raw(&self) -> &'a str {
        self.raw
    }

    /// Whether the message has no emotes.
    pub fn is_empty(&self) -> bool {
        self.raw.is_empty()
    }

    /// Every occurrence, grouped by emote as sent (not in text order).
    pub fn ranges(&self) -> impl Iterator<Item = EmoteRange<'a>> + use<'a> {
        let raw = self.raw;
        raw.split('/').filter_map(|entry| entry.split_once(':')).flat_map(|(id, ranges)| {
            ranges
                .split(',')
                .filter_map(move |range| parse_emote_range(range).map(|(start, end)| EmoteRange { id, start, end }))
        })
    }

    /// Locates every occurrence in `text` (the message these positions belong to), in text
    /// order. Occurrences that fall outside the text are skipped: Twitch has sent positions
    /// off by one (twitchdev/issues#175, `/me` in a resub message), and a wrong emote position
    /// is no reason to lose the message.
    pub fn slices<'s>(&self, text: &'s str) -> Vec<EmoteSlice<'s>>
    where
        'a: 's,
    {
        let mut ranges: Vec<EmoteRange<'a>> = self.ranges().collect();
        ranges.sort_unstable_by_key(|range| (range.start, range.end));
        let ascii = text.is_ascii();
        let mut out = Vec::with_capacity(ranges.len());
        // Code point → byte by walking forward from the previous start: with starts sorted,
        // the whole pass is linear in the text plus the emotes' lengths.
        let mut cursor = CharCursor::default();
        for range in ranges {
            let Some(end_exclusive) = range.end.checked_add(1) else {
                continue;
            };
            let bytes = if ascii {
                range.start..end_exclusive
            } else {
                let Some(start) = cursor.seek(text, range.start) else {
                    break; // this start is past the end, and so are all later ones
                };
                cursor = start;
                let Some(end) = start.seek(text, end_exclusive) else {
                    continue;
                };
                start.byte..end.byte
            };
            if let Some(covered) = text.get(bytes.clone()) {
                out.push(EmoteSlice { id: range.id, start: range.start, end: range.end, bytes, text: covered });
            }
        }
        out
    }
}

/// A code point index and the byte offset where that code point starts.
#[derive(Debug, Clone, Copy, Default)]
struct CharCursor {
    index: usize,
    byte: usize,
}

impl CharCursor {
    /// The cursor at code point `target`, which may be one past the last; `None` beyond that.
    fn seek(self, text: &str, target: usize) -> Option<CharCursor> {
        // Only forward walks are cheap; going back restarts from the beginning.
        let mut here = if target < self.index { CharCursor::default() } else { self };
        let mut chars = text.get(here.byte..)?.chars();
        while here.index < target {
            here.byte += chars.next()?.len_utf8();
            here.index += 1;
        }
        Some(here)
    }
}

fn parse_emote_range(range: &str) -> Option<(usize, usize)> {
    let (start, end) = range.split_once('-')?;
    let (start, end) = (parse_digits(start)?, parse_digits(end)?);
    (start <= end).then_some((start as usize, end as usize))
}

/// Decimal digits only: `str::parse` would also take a leading `+`, which Twitch never sends.
fn parse_digits(s: &str) -> Option<u32> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse().ok()
}

fn parse_u32_tag(tag: &'static str, raw: &str) -> Result<u32, IrcError> {
    parse_digits(raw).ok_or_else(|| bad_value(tag, raw, "a whole number from 0 to 4294967295"))
}

fn parse_opt_u32_tag(tag: &'static str, raw: Option<&str>) -> Result<Option<u32>, IrcError> {
    raw.filter(|v| !v.is_empty()).map(|v| parse_u32_tag(tag, v)).transpose()
}

/// A chat message (`PRIVMSG`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Privmsg<'a> {
    /// The channel, without `#`.
    pub channel: &'a str,
    /// The channel's user id (`room-id`).
    pub room_id: Option<&'a str>,
    /// The sender's user id (`user-id`), stable across renames: key moderation on this.
    pub user_id: &'a str,
    /// The sender's login (the prefix's nick).
    pub login: &'a str,
    /// The sender's display name: any Unicode, unescaped and trimmed; the login if none was set.
    pub display_name: Cow<'a, str>,
    /// The message's id (`id`), which `CLEARMSG` names to delete it.
    pub message_id: &'a str,
    /// The text; for `/me`, without the CTCP `ACTION` wrapper.
    pub text: &'a str,
    /// Whether the message was a `/me` action.
    pub is_action: bool,
    /// The sender's badges.
    pub badges: Badges<'a>,
    /// Details of the badges (`badge-info`), e.g. `subscriber/14` for months subscribed.
    pub badge_info: Badges<'a>,
    /// The sender's roles, from badges and tags.
    pub roles: Roles,
    /// Bits cheered with the message.
    pub bits: Option<u32>,
    /// Emote positions in [`Privmsg::text`].
    pub emotes: Emotes<'a>,
    /// Whether this is the sender's first message in the channel.
    pub first_msg: bool,
    /// The id of the message this one replies to.
    pub reply_parent_msg_id: Option<&'a str>,
    /// The channel the message was sent in, when that is another channel sharing its chat
    /// with this one (Twitch's Shared Chat). [`Privmsg::roles`] come from the tags as sent; a
    /// bridge that grants powers by role should decide whether such guests get them.
    pub source_room_id: Option<&'a str>,
    /// All tags, for those not decoded here (`color`, `reply-parent-user-login`…).
    pub tags: Tags<'a>,
}

impl<'a> Privmsg<'a> {
    /// The text each emote covers, in text order (see [`Emotes::slices`]).
    pub fn emote_slices(&self) -> Vec<EmoteSlice<'a>> {
        self.emotes.slices(self.text)
    }

    /// Months subscribed, from `badge-info` (`subscriber/N`, or `founder/N` for founders).
    pub fn subscriber_months(&self) -> Option<u32> {
        let months = self.badge_info.version("subscriber").or_else(|| self.badge_info.version("founder"))?;
        parse_digits(months)
    }
}

/// A channel event with Twitch's own announcement (`USERNOTICE`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserNotice<'a> {
    /// The channel, without `#`.
    pub channel: &'a str,
    /// The channel's user id (`room-id`).
    pub room_id: Option<&'a str>,
    /// The kind as sent (`msg-id`): `sub`, `resub`, `raid`, `viewermilestone`…
    pub msg_id: &'a str,
    /// The kind, decoded with its main `msg-param-*` values.
    pub kind: UserNoticeKind<'a>,
    /// The user the event is about (subscriber, gifter, raider…).
    pub user_id: &'a str,
    /// That user's login (`login` tag: the prefix is the server's).
    pub login: &'a str,
    /// That user's display name, unescaped; the login if none was set.
    pub display_name: Cow<'a, str>,
    /// The notice's id (`id`).
    pub message_id: Option<&'a str>,
    /// Twitch's announcement (`system-msg`), unescaped.
    pub system_msg: Option<Cow<'a, str>>,
    /// The user's own message, when they wrote one.
    pub text: Option<&'a str>,
    /// The user's badges.
    pub badges: Badges<'a>,
    /// Details of the badges (`badge-info`).
    pub badge_info: Badges<'a>,
    /// The user's roles.
    pub roles: Roles,
    /// Emote positions in [`UserNotice::text`].
    pub emotes: Emotes<'a>,
    /// All tags, for the `msg-param-*` values not decoded in [`UserNotice::kind`].
    pub tags: Tags<'a>,
}

impl<'a> UserNotice<'a> {
    /// The unescaped value of `msg-param-<name>`, e.g. `param("sub-plan-name")`.
    pub fn param(&self, name: &str) -> Option<Cow<'a, str>> {
        self.param_raw(name).map(unescape_tag_value)
    }

    /// The escaped value of `msg-param-<name>`.
    pub fn param_raw(&self, name: &str) -> Option<&'a str> {
        self.tags.iter().filter(|tag| tag.key.strip_prefix("msg-param-") == Some(name)).last().map(|tag| tag.raw_value)
    }
}

/// The kinds of [`UserNotice`] a chat bridge tells apart. `msg-param-*` values that Twitch
/// leaves out are `None`; numeric ones that are present but malformed fail the decoding.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UserNoticeKind<'a> {
    /// A first subscription (`sub`).
    Sub {
        /// Months subscribed in total.
        cumulative_months: Option<u32>,
        /// `Prime`, `1000`, `2000` or `3000`.
        plan: Option<&'a str>,
    },
    /// A renewed subscription (`resub`).
    Resub {
        /// Months subscribed in total.
        cumulative_months: Option<u32>,
        /// Consecutive months, when the user chose to share them.
        streak_months: Option<u32>,
        /// `Prime`, `1000`, `2000` or `3000`.
        plan: Option<&'a str>,
    },
    /// A subscription given to one user (`subgift`, `anonsubgift`); the notice's user is the
    /// giver.
    SubGift {
        /// The recipient's user id.
        recipient_id: Option<&'a str>,
        /// The recipient's login.
        recipient_login: Option<&'a str>,
        /// The recipient's display name, unescaped.
        recipient_display_name: Option<Cow<'a, str>>,
        /// Months the recipient has subscribed in total.
        months: Option<u32>,
        /// `1000`, `2000` or `3000`.
        plan: Option<&'a str>,
    },
    /// Subscriptions given to random viewers (`submysterygift`, `anonsubmysterygift`); one
    /// `subgift` notice per recipient follows.
    SubMysteryGift {
        /// How many subscriptions were given.
        mass_gift_count: Option<u32>,
        /// `1000`, `2000` or `3000`.
        plan: Option<&'a str>,
    },
    /// Another channel raided this one (`raid`); the notice's user is the raiding broadcaster.
    Raid {
        /// How many viewers came along.
        viewer_count: Option<u32>,
    },
    /// A highlighted message from the broadcaster or a moderator (`announcement`).
    Announcement {
        /// `PRIMARY`, `BLUE`, `GREEN`, `ORANGE` or `PURPLE`.
        color: Option<&'a str>,
    },
    /// The user reached a new Bits badge tier (`bitsbadgetier`).
    BitsBadgeTier {
        /// The tier, in Bits.
        threshold: Option<u32>,
    },
    /// Any other kind; see [`UserNotice::msg_id`] and [`UserNotice::param`].
    Other,
}

/// A moderator cleared messages (`CLEARCHAT`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClearChat<'a> {
    /// The channel, without `#`.
    pub channel: &'a str,
    /// The channel's user id (`room-id`).
    pub room_id: Option<&'a str>,
    /// Whose messages, and why.
    pub action: ClearChatAction<'a>,
}

/// What a [`ClearChat`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClearChatAction<'a> {
    /// The whole chat was cleared.
    ClearAll,
    /// A user was banned for good.
    Ban {
        /// Their user id (`target-user-id`).
        user_id: &'a str,
        /// Their login.
        login: &'a str,
    },
    /// A user was timed out.
    Timeout {
        /// Their user id (`target-user-id`).
        user_id: &'a str,
        /// Their login.
        login: &'a str,
        /// For how long (`ban-duration`), in seconds.
        seconds: u32,
    },
}

impl<'a> ClearChat<'a> {
    /// The banned or timed-out user's id, if one user was targeted.
    pub fn target_user_id(&self) -> Option<&'a str> {
        match self.action {
            ClearChatAction::ClearAll => None,
            ClearChatAction::Ban { user_id, .. } | ClearChatAction::Timeout { user_id, .. } => Some(user_id),
        }
    }
}

/// A moderator deleted one message (`CLEARMSG`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClearMsg<'a> {
    /// The channel, without `#`.
    pub channel: &'a str,
    /// The login of the message's sender.
    pub login: &'a str,
    /// The deleted message's id: a [`Privmsg::message_id`].
    pub target_msg_id: &'a str,
    /// The deleted message's text.
    pub text: Option<&'a str>,
}

/// The channel's chat settings (`ROOMSTATE`). The state sent on join has every field; later
/// updates carry only what changed, so each field is `None` when not sent.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RoomState<'a> {
    /// The channel, without `#`.
    pub channel: &'a str,
    /// The channel's user id (`room-id`).
    pub room_id: Option<&'a str>,
    /// Only emotes may be sent (`emote-only`).
    pub emote_only: Option<bool>,
    /// Followers-only mode (`followers-only`).
    pub followers_only: Option<FollowersOnly>,
    /// Messages over 9 characters must be unique (`r9k`).
    pub unique: Option<bool>,
    /// Seconds a chatter must wait between messages; 0 when off (`slow`).
    pub slow_seconds: Option<u32>,
    /// Only subscribers may chat (`subs-only`).
    pub subs_only: Option<bool>,
}

/// Followers-only mode: Twitch sends `-1` for off, or the minutes a chatter must have followed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FollowersOnly {
    /// Anyone may chat (`-1`).
    Off,
    /// Only followers of at least this many minutes may chat (0: any follower).
    MinMinutes(u32),
}

/// Decodes a Twitch line. `Ok(None)` for commands a chat bridge does not act on (`USERSTATE`,
/// `GLOBALUSERSTATE`, `WHISPER`, most numerics…); an error when a command the bridge acts on
/// lacks what Twitch always sends with it or has a malformed value.
pub fn twitch_event<'a>(msg: &IrcMessage<'a>) -> Result<Option<TwitchEvent<'a>>, IrcError> {
    let event = match msg.command {
        "PRIVMSG" => TwitchEvent::Privmsg(decode_privmsg(msg)?),
        "USERNOTICE" => TwitchEvent::UserNotice(decode_user_notice(msg)?),
        "CLEARCHAT" => TwitchEvent::ClearChat(decode_clear_chat(msg)?),
        "CLEARMSG" => TwitchEvent::ClearMsg(decode_clear_msg(msg)?),
        "ROOMSTATE" => TwitchEvent::RoomState(decode_room_state(msg)?),
        "PING" => TwitchEvent::Ping { token: msg.params.get(0).unwrap_or("") },
        "RECONNECT" => TwitchEvent::Reconnect,
        "NOTICE" => TwitchEvent::Notice {
            channel: msg.params.get(0).and_then(|target| target.strip_prefix('#')),
            msg_id: msg.tags.get_raw("msg-id").filter(|id| !id.is_empty()),
            text: param(msg, 1, "NOTICE", "text")?,
        },
        "JOIN" => TwitchEvent::Join { channel: channel(msg, "JOIN")?, login: sender(msg, "JOIN")? },
        "PART" => TwitchEvent::Part { channel: channel(msg, "PART")?, login: sender(msg, "PART")? },
        "001" => TwitchEvent::Connected { login: param(msg, 0, "001", "nick")? },
        "CAP" => match msg.params.get(1) {
            Some("ACK") => TwitchEvent::CapAck { capabilities: param(msg, 2, "CAP", "capabilities")? },
            Some("NAK") => TwitchEvent::CapNak { capabilities: param(msg, 2, "CAP", "capabilities")? },
            _ => return Ok(None),
        },
        _ => return Ok(None),
    };
    Ok(Some(event))
}

/// [`parse_line`] then [`twitch_event`].
pub fn parse_twitch(line: &str) -> Result<Option<TwitchEvent<'_>>, IrcError> {
    twitch_event(&parse_line(line)?)
}

/// The tags the decoders read, gathered in one pass over the tag section instead of one
/// search per tag. Raw values; an empty value counts as absent where noted.
#[derive(Debug, Default)]
struct Known<'a> {
    badge_info: Option<&'a str>,
    badges: Option<&'a str>,
    ban_duration: Option<&'a str>,
    bits: Option<&'a str>,
    display_name: Option<&'a str>,
    emote_only: Option<&'a str>,
    emotes: Option<&'a str>,
    first_msg: Option<&'a str>,
    followers_only: Option<&'a str>,
    id: Option<&'a str>,
    login: Option<&'a str>,
    moderator: Option<&'a str>,
    msg_id: Option<&'a str>,
    r9k: Option<&'a str>,
    reply_parent_msg_id: Option<&'a str>,
    room_id: Option<&'a str>,
    slow: Option<&'a str>,
    source_room_id: Option<&'a str>,
    subs_only: Option<&'a str>,
    subscriber: Option<&'a str>,
    system_msg: Option<&'a str>,
    target_msg_id: Option<&'a str>,
    target_user_id: Option<&'a str>,
    user_id: Option<&'a str>,
    user_type: Option<&'a str>,
    vip: Option<&'a str>,
}

impl<'a> Known<'a> {
    fn collect(tags: Tags<'a>) -> Self {
        let mut known = Known::default();
        for tag in tags {
            let slot = match tag.key {
                "badge-info" => &mut known.badge_info,
                "badges" => &mut known.badges,
                "ban-duration" => &mut known.ban_duration,
                "bits" => &mut known.bits,
                "display-name" => &mut known.display_name,
                "emote-only" => &mut known.emote_only,
                "emotes" => &mut known.emotes,
                "first-msg" => &mut known.first_msg,
                "followers-only" => &mut known.followers_only,
                "id" => &mut known.id,
                "login" => &mut known.login,
                "mod" => &mut known.moderator,
                "msg-id" => &mut known.msg_id,
                "r9k" => &mut known.r9k,
                "reply-parent-msg-id" => &mut known.reply_parent_msg_id,
                "room-id" => &mut known.room_id,
                "slow" => &mut known.slow,
                "source-room-id" => &mut known.source_room_id,
                "subs-only" => &mut known.subs_only,
                "subscriber" => &mut known.subscriber,
                "system-msg" => &mut known.system_msg,
                "target-msg-id" => &mut known.target_msg_id,
                "target-user-id" => &mut known.target_user_id,
                "user-id" => &mut known.user_id,
                "user-type" => &mut known.user_type,
                "vip" => &mut known.vip,
                _ => continue,
            };
            // Last one wins, as IRCv3 says for repeated keys.
            *slot = Some(tag.raw_value);
        }
        known
    }
}

fn non_empty(value: Option<&str>) -> Option<&str> {
    value.filter(|v| !v.is_empty())
}

fn required<'a>(value: Option<&'a str>, command: &'static str, tag: &'static str) -> Result<&'a str, IrcError> {
    non_empty(value).ok_or(IrcError::MissingTag { command, tag })
}

fn param<'a>(
    msg: &IrcMessage<'a>,
    index: usize,
    command: &'static str,
    name: &'static str,
) -> Result<&'a str, IrcError> {
    msg.params.get(index).ok_or(IrcError::MissingParam { command, param: name })
}

fn channel<'a>(msg: &IrcMessage<'a>, command: &'static str) -> Result<&'a str, IrcError> {
    let raw = param(msg, 0, command, "channel")?;
    match raw.strip_prefix('#') {
        Some(name) if !name.is_empty() => Ok(name),
        _ => Err(IrcError::BadChannel { command, channel: excerpt(raw) }),
    }
}

fn sender<'a>(msg: &IrcMessage<'a>, command: &'static str) -> Result<&'a str, IrcError> {
    msg.prefix.map(|prefix| prefix.nick).ok_or(IrcError::MissingPrefix { command })
}

/// Trimmed because a display name is for showing and comparing, and an escaped `\s` at either
/// end would only mislead; an unset or blank name falls back to the login.
fn display_name<'a>(raw: Option<&'a str>, login: &'a str) -> Cow<'a, str> {
    let name = match unescape_tag_value(raw.unwrap_or("")) {
        Cow::Borrowed(name) => Cow::Borrowed(name.trim()),
        Cow::Owned(name) if name.trim().len() == name.len() => Cow::Owned(name),
        Cow::Owned(name) => Cow::Owned(name.trim().to_owned()),
    };
    if name.is_empty() { Cow::Borrowed(login) } else { name }
}

/// `/me` arrives as CTCP: `\x01ACTION text\x01`. A missing closing `\x01` is tolerated, as
/// IRC clients commonly do; anything else after `\x01ACTION` is not an action.
fn strip_action(text: &str) -> (&str, bool) {
    let Some(rest) = text.strip_prefix("\u{1}ACTION") else {
        return (text, false);
    };
    let rest = rest.strip_suffix('\u{1}').unwrap_or(rest);
    if rest.is_empty() {
        return ("", true);
    }
    match rest.strip_prefix(' ') {
        Some(action) => (action, true),
        None => (text, false),
    }
}

fn decode_privmsg<'a>(msg: &IrcMessage<'a>) -> Result<Privmsg<'a>, IrcError> {
    const CMD: &str = "PRIVMSG";
    let channel = channel(msg, CMD)?;
    let login = sender(msg, CMD)?;
    let raw_text = param(msg, 1, CMD, "text")?;
    let known = Known::collect(msg.tags);
    let user_id = required(known.user_id, CMD, "user-id")?;
    let message_id = required(known.id, CMD, "id")?;
    let (text, is_action) = strip_action(raw_text);
    let badges = Badges::from_tag(known.badges.unwrap_or(""));
    let roles = Roles::derive(&badges, &known, user_id);
    Ok(Privmsg {
        channel,
        room_id: non_empty(known.room_id),
        user_id,
        login,
        display_name: display_name(known.display_name, login),
        message_id,
        text,
        is_action,
        badge_info: Badges::from_tag(known.badge_info.unwrap_or("")),
        badges,
        roles,
        bits: parse_opt_u32_tag("bits", known.bits)?,
        emotes: Emotes::parse(known.emotes.unwrap_or(""))?,
        first_msg: known.first_msg == Some("1"),
        reply_parent_msg_id: non_empty(known.reply_parent_msg_id),
        source_room_id: non_empty(known.source_room_id).filter(|source| Some(*source) != non_empty(known.room_id)),
        tags: msg.tags,
    })
}

fn decode_user_notice<'a>(msg: &IrcMessage<'a>) -> Result<UserNotice<'a>, IrcError> {
    const CMD: &str = "USERNOTICE";
    let channel = channel(msg, CMD)?;
    let known = Known::collect(msg.tags);
    let msg_id = required(known.msg_id, CMD, "msg-id")?;
    let user_id = required(known.user_id, CMD, "user-id")?;
    let login = required(known.login, CMD, "login")?;
    let tags = msg.tags;
    let raw = |name| non_empty(tags.get_raw(name));
    let number = |name| parse_opt_u32_tag(name, tags.get_raw(name));
    let kind = match msg_id {
        "sub" => UserNoticeKind::Sub {
            cumulative_months: number("msg-param-cumulative-months")?,
            plan: raw("msg-param-sub-plan"),
        },
        "resub" => UserNoticeKind::Resub {
            cumulative_months: number("msg-param-cumulative-months")?,
            streak_months: number("msg-param-streak-months")?,
            plan: raw("msg-param-sub-plan"),
        },
        "subgift" | "anonsubgift" => UserNoticeKind::SubGift {
            recipient_id: raw("msg-param-recipient-id"),
            recipient_login: raw("msg-param-recipient-user-name"),
            recipient_display_name: raw("msg-param-recipient-display-name").map(unescape_tag_value),
            months: number("msg-param-months")?,
            plan: raw("msg-param-sub-plan"),
        },
        "submysterygift" | "anonsubmysterygift" => UserNoticeKind::SubMysteryGift {
            mass_gift_count: number("msg-param-mass-gift-count")?,
            plan: raw("msg-param-sub-plan"),
        },
        "raid" => UserNoticeKind::Raid { viewer_count: number("msg-param-viewerCount")? },
        "announcement" => UserNoticeKind::Announcement { color: raw("msg-param-color") },
        "bitsbadgetier" => UserNoticeKind::BitsBadgeTier { threshold: number("msg-param-threshold")? },
        _ => UserNoticeKind::Other,
    };
    let badges = Badges::from_tag(known.badges.unwrap_or(""));
    let roles = Roles::derive(&badges, &known, user_id);
    Ok(UserNotice {
        channel,
        room_id: non_empty(known.room_id),
        msg_id,
        kind,
        user_id,
        login,
        display_name: display_name(known.display_name, login),
        message_id: non_empty(known.id),
        system_msg: non_empty(known.system_msg).map(unescape_tag_value),
        text: msg.params.get(1).filter(|text| !text.is_empty()),
        badge_info: Badges::from_tag(known.badge_info.unwrap_or("")),
        badges,
        roles,
        emotes: Emotes::parse(known.emotes.unwrap_or(""))?,
        tags,
    })
}

fn decode_clear_chat<'a>(msg: &IrcMessage<'a>) -> Result<ClearChat<'a>, IrcError> {
    const CMD: &str = "CLEARCHAT";
    let channel = channel(msg, CMD)?;
    let known = Known::collect(msg.tags);
    let login = msg.params.get(1).filter(|login| !login.is_empty());
    let target = non_empty(known.target_user_id);
    // One user is targeted if either the login or the id says so; then both must be there,
    // or a ban could hit the wrong person (logins can be reused, ids cannot).
    let action = if login.is_none() && target.is_none() {
        ClearChatAction::ClearAll
    } else {
        let user_id = required(target, CMD, "target-user-id")?;
        let login = login.ok_or(IrcError::MissingParam { command: CMD, param: "login" })?;
        match parse_opt_u32_tag("ban-duration", known.ban_duration)? {
            Some(seconds) => ClearChatAction::Timeout { user_id, login, seconds },
            None => ClearChatAction::Ban { user_id, login },
        }
    };
    Ok(ClearChat { channel, room_id: non_empty(known.room_id), action })
}

fn decode_clear_msg<'a>(msg: &IrcMessage<'a>) -> Result<ClearMsg<'a>, IrcError> {
    const CMD: &str = "CLEARMSG";
    let channel = channel(msg, CMD)?;
    let known = Known::collect(msg.tags);
    Ok(ClearMsg {
        channel,
        login: required(known.login, CMD, "login")?,
        target_msg_id: required(known.target_msg_id, CMD, "target-msg-id")?,
        text: msg.params.get(1),
    })
}

fn decode_room_state<'a>(msg: &IrcMessage<'a>) -> Result<RoomState<'a>, IrcError> {
    let channel = channel(msg, "ROOMSTATE")?;
    let known = Known::collect(msg.tags);
    // Settings are the state moderation enforces: a value out of its documented form is an
    // error, not a guess.
    let flag = |tag: &'static str, raw: Option<&str>| {
        raw.map(|v| match v {
            "0" => Ok(false),
            "1" => Ok(true),
            _ => Err(bad_value(tag, v, "0 or 1")),
        })
        .transpose()
    };
    let followers_only = known
        .followers_only
        .map(|v| match v {
            "-1" => Ok(FollowersOnly::Off),
            _ => parse_digits(v)
                .map(FollowersOnly::MinMinutes)
                .ok_or_else(|| bad_value("followers-only", v, "-1 (off) or minutes followed")),
        })
        .transpose()?;
    Ok(RoomState {
        channel,
        room_id: non_empty(known.room_id),
        emote_only: flag("emote-only", known.emote_only)?,
        followers_only,
        unique: flag("r9k", known.r9k)?,
        slow_seconds: known.slow.map(|v| parse_u32_tag("slow", v)).transpose()?,
        subs_only: flag("subs-only", known.subs_only)?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const CORPUS: &str = include_str!("../../../tests/data/twitch/corpus.txt");

    /// The corpus writes control characters as placeholders (see its header).
    fn expand(line: &str) -> String {
        line.replace("{SOH}", "\u{1}").replace("{CR}", "\r").replace("{LF}", "\n").replace("{NUL}", "\0")
    }

    /// (corpus line number, verdict, expectation, IRC line) for every case in the corpus.
    fn corpus_cases() -> Vec<(usize, &'static str, &'static str, String)> {
        CORPUS
            .lines()
            .enumerate()
            .filter(|(_, line)| !line.is_empty() && !line.starts_with('#'))
            .map(|(n, line)| {
                let mut parts = line.splitn(3, ' ');
                let verdict = parts.next().unwrap_or_default();
                let expected = parts.next().unwrap_or_default();
                (n + 1, verdict, expected, expand(parts.next().unwrap_or_default()))
            })
            .collect()
    }

    /// The first `ok` case of the corpus containing `needle`, so that targeted tests check the
    /// corpus's own lines.
    fn corpus_line(needle: &str) -> &'static str {
        let line = corpus_cases()
            .into_iter()
            .find(|(_, verdict, _, line)| *verdict == "ok" && line.contains(needle))
            .map(|(_, _, _, line)| line)
            .unwrap_or_else(|| panic!("no ok line in the corpus contains {needle:?}"));
        // Leaked so that events borrowing from it can outlive the call; a test's worth of lines.
        Box::leak(line.into_boxed_str())
    }

    fn event(line: &str) -> TwitchEvent<'_> {
        match parse_twitch(line) {
            Ok(Some(event)) => event,
            other => panic!("{line:?} gave {other:?}"),
        }
    }

    fn privmsg(line: &str) -> Privmsg<'_> {
        match event(line) {
            TwitchEvent::Privmsg(msg) => msg,
            other => panic!("not a PRIVMSG: {other:?}"),
        }
    }

    fn user_notice(line: &str) -> UserNotice<'_> {
        match event(line) {
            TwitchEvent::UserNotice(notice) => notice,
            other => panic!("not a USERNOTICE: {other:?}"),
        }
    }

    fn error(line: &str) -> IrcError {
        match parse_twitch(line) {
            Err(error) => error,
            Ok(event) => panic!("{line:?} was accepted as {event:?}"),
        }
    }

    #[test]
    fn corpus_cases_have_their_expected_outcome() {
        let (mut ok, mut bad) = (0, 0);
        for (n, verdict, expected, line) in corpus_cases() {
            let result = parse_twitch(&line);
            match verdict {
                "ok" => {
                    ok += 1;
                    let got = match &result {
                        Ok(event) => event.as_ref().map_or("none", TwitchEvent::name),
                        Err(error) => panic!("corpus line {n}: expected {expected}, got error {error}"),
                    };
                    assert_eq!(got, expected, "corpus line {n}");
                }
                "bad" => {
                    bad += 1;
                    match &result {
                        Err(error) => assert_eq!(error.code(), expected, "corpus line {n}: {error}"),
                        Ok(event) => panic!("corpus line {n}: expected error {expected}, got {event:?}"),
                    }
                }
                other => panic!("corpus line {n}: unknown verdict {other:?}"),
            }
        }
        assert!(ok >= 50 && bad >= 40, "the corpus shrank: {ok} ok, {bad} bad");
    }

    #[test]
    fn corpus_every_event_kind_and_error_code_is_covered() {
        let cases = corpus_cases();
        let covered = |verdict: &str, name: &str| cases.iter().any(|(_, v, e, _)| *v == verdict && *e == name);
        for kind in [
            "privmsg",
            "usernotice",
            "clearchat",
            "clearmsg",
            "roomstate",
            "ping",
            "reconnect",
            "notice",
            "join",
            "part",
            "connected",
            "cap_ack",
            "cap_nak",
            "none",
        ] {
            assert!(covered("ok", kind), "no ok case for {kind}");
        }
        for code in [
            "empty",
            "tags_too_long",
            "body_too_long",
            "forbidden_char",
            "tags_without_space",
            "empty_tags",
            "bad_tag_key",
            "bad_prefix",
            "missing_command",
            "bad_command",
            "bad_numeric",
            "too_many_params",
            "missing_prefix",
            "missing_param",
            "bad_channel",
            "missing_tag",
            "bad_tag_value",
        ] {
            assert!(covered("bad", code), "no bad case for {code}");
        }
    }

    /// Every corpus line cut at every character, and salted there with a separator, must give a
    /// result, never a panic. The salt rotates with the position so that each separator lands
    /// in every part of a line across the corpus, at a twelfth of the cost of trying them all.
    #[test]
    fn damaged_corpus_lines_never_panic() {
        const SALTS: [&str; 12] = [" ", ":", ";", "=", "\\", "/", "-", ",", "@", "!", "\u{1}", "\r"];
        for (_, _, _, line) in corpus_cases().into_iter().filter(|(_, _, _, line)| line.len() <= 2048) {
            for (n, (at, _)) in line.char_indices().enumerate() {
                let _ = parse_twitch(&line[..at]);
                let salted = format!("{}{}{}", &line[..at], SALTS[n % SALTS.len()], &line[at..]);
                if let Ok(Some(TwitchEvent::Privmsg(msg))) = parse_twitch(&salted) {
                    let _ = msg.emote_slices();
                }
            }
        }
    }

    #[test]
    fn unescapes_tag_values_per_ircv3() {
        let cases = [
            ("plain", "plain"),
            ("", ""),
            (r"a\sb", "a b"),
            (r"a\:b", "a;b"),
            (r"a\\b", r"a\b"),
            (r"cr\rlf\n", "cr\rlf\n"),
            (r"unknown\xescape", "unknownxescape"),
            (r"trailing\", "trailing"),
            (r"\\\\", r"\\"),
            (r"\\s", r"\s"),
            (r"\é日本", "é日本"),
            (r"C:\\Users\\moi\:\sça\smarche\s?", r"C:\Users\moi; ça marche ?"),
        ];
        for (raw, want) in cases {
            assert_eq!(unescape_tag_value(raw), want, "{raw:?}");
        }
        assert!(matches!(unescape_tag_value("nothing to undo"), Cow::Borrowed(_)), "no escape, no allocation");
    }

    #[test]
    fn tags_are_read_lazily_and_last_wins() {
        let msg = parse_line(r"@a=1;b=x\sy;flag;empty=;a=2;+vendor.example/k=v :srv CMD").expect("parses");
        let tags = msg.tags;
        assert_eq!(tags.get_raw("a"), Some("2"), "a repeated key takes its last value");
        assert_eq!(tags.get("b").as_deref(), Some("x y"));
        assert_eq!(tags.get_raw("b"), Some(r"x\sy"));
        assert_eq!(tags.get("flag").as_deref(), Some(""), "a key without '=' has the empty value");
        assert_eq!(tags.get("empty").as_deref(), Some(""));
        assert_eq!(tags.get("+vendor.example/k").as_deref(), Some("v"));
        assert_eq!(tags.get("missing"), None);
        assert!(tags.contains("flag") && !tags.contains("fla"));
        let keys: Vec<&str> = tags.iter().map(|tag| tag.key).collect();
        assert_eq!(keys, ["a", "b", "flag", "empty", "a", "+vendor.example/k"]);
        assert!(parse_line("PING").expect("parses").tags.is_empty());
    }

    #[test]
    fn splits_a_line_into_its_parts() {
        let msg = parse_line("@id=1 :nick!user@host.example PRIVMSG #chan :hello :world  \r\n").expect("parses");
        assert_eq!(msg.tags.raw(), "id=1");
        let prefix = msg.prefix.expect("prefix");
        assert_eq!((prefix.nick, prefix.user, prefix.host), ("nick", Some("user"), Some("host.example")));
        assert_eq!(prefix.raw, "nick!user@host.example");
        assert_eq!(msg.command, "PRIVMSG");
        assert_eq!(msg.params.as_slice(), ["#chan", "hello :world  "], "the trailing parameter keeps its spaces");
        assert_eq!(msg.params.trailing(), Some("hello :world  "));

        let msg = parse_line(":tmi.twitch.tv   CAP  *   ACK :a b\n").expect("parses");
        assert_eq!(msg.prefix.map(|p| (p.nick, p.user, p.host)), Some(("tmi.twitch.tv", None, None)));
        assert_eq!(msg.params.as_slice(), ["*", "ACK", "a b"]);

        let msg = parse_line("JOIN #chan   ").expect("parses");
        assert_eq!(msg.params.as_slice(), ["#chan"], "trailing spaces make no empty parameter");
        assert_eq!(msg.params.trailing(), None);

        let msg = parse_line("NOTICE * :").expect("parses");
        assert_eq!(msg.params.as_slice(), ["*", ""]);
        assert_eq!(msg.params.trailing(), Some(""));

        let msg = parse_line(":a@b 001 me").expect("parses");
        assert_eq!(msg.prefix.map(|p| (p.nick, p.user, p.host)), Some(("a", None, Some("b"))));
        assert_eq!(msg.command, "001");

        let fifteen = format!("CMD{}", " p".repeat(MAX_PARAMS));
        assert_eq!(parse_line(&fifteen).expect("15 parameters are allowed").params.len(), MAX_PARAMS);
        assert_eq!(parse_line(&format!("{fifteen} :more")), Err(IrcError::TooManyParams));
    }

    #[test]
    fn refuses_lines_over_the_limits() {
        let tags_of = |section_len: usize| format!("@k={} PING", "v".repeat(section_len - "@k= ".len()));
        assert!(parse_line(&tags_of(MAX_TAGS_LEN)).is_ok(), "a tag section of exactly the limit");
        assert_eq!(
            parse_line(&tags_of(MAX_TAGS_LEN + 1)),
            Err(IrcError::TagsTooLong { len: MAX_TAGS_LEN + 1, max: MAX_TAGS_LEN })
        );
        assert!(matches!(
            parse_line(&format!("@k={}", "v".repeat(20_000))),
            Err(IrcError::TagsTooLong { len: 20_003, .. })
        ));

        let body_of = |len: usize| format!("@k=v PRIVMSG #c :{}", "x".repeat(len - "PRIVMSG #c :".len()));
        assert!(parse_line(&body_of(MAX_BODY_LEN)).is_ok(), "a body of exactly the limit");
        assert!(parse_line(&format!("{}\r\n", body_of(MAX_BODY_LEN))).is_ok(), "the line ending does not count");
        assert_eq!(
            parse_line(&body_of(MAX_BODY_LEN + 1)),
            Err(IrcError::BodyTooLong { len: MAX_BODY_LEN + 1, max: MAX_BODY_LEN })
        );
        let error = parse_line(&format!("PRIVMSG #c :{}", "é".repeat(10_000))).expect_err("too long");
        assert_eq!(error.code(), "body_too_long");
        assert!(error.to_string().contains("20012 bytes"), "{error}");
    }

    #[test]
    fn errors_say_what_is_wrong_in_few_words() {
        assert_eq!(parse_line(""), Err(IrcError::Empty));
        assert_eq!(parse_line("\r\n"), Err(IrcError::Empty));
        assert_eq!(parse_line("PING :a\rb"), Err(IrcError::ForbiddenChar { what: "CR", at: 7 }));
        assert_eq!(parse_line("PING :a\n\n"), Err(IrcError::ForbiddenChar { what: "LF", at: 7 }));
        assert_eq!(
            parse_line("  PING :a\0"),
            Err(IrcError::ForbiddenChar { what: "NUL", at: 9 }),
            "offset in the input"
        );
        assert_eq!(parse_line("@a=1"), Err(IrcError::TagsWithoutSpace));
        assert_eq!(
            parse_line(":n!u@ PRIVMSG #c :x"),
            Err(IrcError::BadPrefix { prefix: "n!u@".into(), reason: "empty host after '@'" })
        );
        let long_key = format!("@{}=1 PING", "k*".repeat(100));
        let IrcError::BadTagKey { key } = parse_line(&long_key).expect_err("bad key") else {
            panic!("wrong error");
        };
        assert!(key.len() < 70 && key.ends_with('…'), "errors quote only the start of long input: {key}");
        assert_eq!(
            error("@user-id=1 :n!n@n PRIVMSG #c :x").to_string(),
            "PRIVMSG is missing the id tag",
            "names the command and the tag"
        );
        assert_eq!(
            error("@bits=lots;id=1;user-id=1 :n!n@n PRIVMSG #c :x").to_string(),
            "tag bits has the value \"lots\"; expected a whole number from 0 to 4294967295"
        );
        assert_eq!(
            error("@emotes=25:5-2;id=1;user-id=1 :n!n@n PRIVMSG #c :Kappa Kappa").code(),
            "bad_tag_value",
            "start after end"
        );
        assert_eq!(error(":srv 1234 x").to_string(), "numeric \"1234\" is not exactly three digits");
    }

    #[test]
    fn privmsg_fields_from_the_corpus() {
        let line = corpus_line("id=d23f0824-128b-4f33-8c5c-7fd0a6a3a450");
        let msg = privmsg(line);
        assert_eq!(msg.channel, "galerie_nocturne");
        assert_eq!(msg.room_id, Some("71020511"));
        assert_eq!(msg.user_id, "61847220");
        assert_eq!(msg.login, "yozakura_miku");
        assert_eq!(msg.display_name, "夜桜ミク");
        assert_eq!(msg.message_id, "d23f0824-128b-4f33-8c5c-7fd0a6a3a450");
        assert_eq!(msg.text, "é Kappa 日本 Kappa 🎉 HeyGuys");
        assert!(!msg.is_action && !msg.first_msg);
        assert_eq!(msg.bits, None);
        assert_eq!(msg.roles, Roles::default());
        assert!(msg.badges.contains("premium") && msg.badge_info.is_empty());

        let slices = msg.emote_slices();
        let found: Vec<(&str, &str, Range<usize>)> = slices.iter().map(|s| (s.id, s.text, s.bytes.clone())).collect();
        assert_eq!(found, [("25", "Kappa", 3..8), ("25", "Kappa", 16..21), ("30259", "HeyGuys", 27..34)]);
        // Byte positions would have cut the wrong text: the point of counting code points.
        assert_eq!(&msg.text[2..7], " Kapp");

        let line = corpus_line("id=9531985d-5d9d-49f8-9818-e811892f902b");
        let msg = privmsg(line);
        let texts: Vec<&str> = msg.emote_slices().iter().map(|s| s.text).collect();
        assert_eq!(texts, ["PogChamp", "Kappa"]);
        assert!(msg.roles.moderator && msg.roles.is_staff() && !msg.roles.broadcaster);

        let line = corpus_line("id=a170b338-3926-4059-b28c-105d1fb17c23");
        let msg = privmsg(line);
        assert_eq!(msg.bits, Some(100));
        assert_eq!(msg.emote_slices().first().map(|s| s.text), Some("Kappa"));

        let line = corpus_line("id=6513270e-269e-4d37-b2a7-4de452e6b438;mod");
        let msg = privmsg(line);
        assert_eq!(msg.badges.version("subscriber"), Some("12"));
        assert_eq!(msg.badges.version("bits"), Some("1000"));
        assert_eq!(msg.subscriber_months(), Some(14));
        assert!(msg.roles.subscriber && !msg.roles.is_staff());
        assert_eq!(msg.tags.get_raw("color"), Some("#8A2BE2"), "undecoded tags stay reachable");

        let line = corpus_line("id=0fd630f1-f29d-4da9-953f-48f1a09f76b5");
        let msg = privmsg(line);
        assert_eq!(msg.reply_parent_msg_id, Some("6513270e-269e-4d37-b2a7-4de452e6b438"));
        assert_eq!(msg.tags.get("reply-parent-msg-body").as_deref(), Some(r"C:\Users\moi; ça marche ?"));

        let line = corpus_line("id=0cb1e29c-658c-4a14-95e6-0af593bd04cf");
        assert!(privmsg(line).first_msg);

        let line = corpus_line("id=92276658-1e27-41c0-8a6a-63ec24ede6a4");
        assert_eq!(privmsg(line).source_room_id, Some("80455120"), "a Shared Chat guest");
        assert_eq!(privmsg(corpus_line("id=6b0d549b")).source_room_id, None);
        let own = "@id=1;room-id=7;source-room-id=7;user-id=1 :n!n@n PRIVMSG #c :x";
        assert_eq!(privmsg(own).source_room_id, None, "sent in this very channel");

        let line = corpus_line("id=907a70c3-1012-4037-b64c-e4228c38fb29");
        let msg = privmsg(line);
        assert_eq!(msg.text.chars().count(), 499);
        assert!(msg.text.len() > 512, "a legal Twitch message longer than classic IRC allows");
    }

    #[test]
    fn actions_lose_their_ctcp_wrapper() {
        let line = corpus_line("id=90c192cf-d3ac-44af-8f21-ddb66cad4a26");
        let msg = privmsg(line);
        assert!(msg.is_action);
        assert_eq!(msg.text, "applaudit Kappa ✨");
        assert_eq!(msg.emote_slices().first().map(|s| s.text), Some("Kappa"), "positions count in the stripped text");

        assert_eq!(strip_action("\u{1}ACTION waves\u{1}"), ("waves", true));
        assert_eq!(strip_action("\u{1}ACTION waves"), ("waves", true), "closing 0x01 missing");
        assert_eq!(strip_action("\u{1}ACTION\u{1}"), ("", true));
        assert_eq!(strip_action("\u{1}ACTIONS\u{1}"), ("\u{1}ACTIONS\u{1}", false));
        assert_eq!(strip_action("\u{1}VERSION\u{1}"), ("\u{1}VERSION\u{1}", false));
        assert_eq!(strip_action("ACTION waves"), ("ACTION waves", false));
    }

    #[test]
    fn emote_slices_count_code_points_and_skip_what_is_outside() {
        fn emotes(raw: &str) -> Emotes<'_> {
            Emotes::parse(raw).expect("well-formed")
        }
        fn texts(raw: &str, text: &str) -> Vec<String> {
            emotes(raw).slices(text).iter().map(|s| format!("{}@{}-{}={}", s.id, s.start, s.end, s.text)).collect()
        }
        // Grouped by emote on the wire, returned in text order.
        assert_eq!(texts("2:6-10/1:0-4", "Kappa Keepo"), ["1@0-4=Kappa", "2@6-10=Keepo"]);
        assert_eq!(texts("1:0-0", "👍"), ["1@0-0=👍"]);
        assert_eq!(texts("1:2-3", "日本語です"), ["1@2-3=語で"]);
        // Outside the text: skipped, in both the ASCII and the general walk.
        assert!(texts("25:10-14", "merci").is_empty());
        assert!(texts("25:10-14", "mérci").is_empty());
        assert_eq!(texts("25:0-4,4-8", "é Kappa"), ["25@0-4=é Kap"], "the second ends past the text");
        assert_eq!(texts("1:0-0,5-9,6-6", "é Kappa"), ["1@0-0=é", "1@6-6=a"], "found after a skipped range");
        assert_eq!(texts(&format!("1:0-{}", u32::MAX), "abc"), Vec::<String>::new());
        // Overlapping ranges are each located.
        assert_eq!(texts("1:0-3,1-2", "日本語!"), ["1@0-3=日本語!", "1@1-2=本語"]);
        assert!(emotes("").is_empty() && emotes("").slices("text").is_empty());

        let ranges: Vec<EmoteRange<'_>> = emotes("25:0-4,12-16/1902:6-10").ranges().collect();
        assert_eq!(
            ranges,
            [
                EmoteRange { id: "25", start: 0, end: 4 },
                EmoteRange { id: "25", start: 12, end: 16 },
                EmoteRange { id: "1902", start: 6, end: 10 },
            ]
        );
        for bad in
            ["25", "25:", ":0-1", "25:1", "25:1-", "25:-1", "25:2-1", "25:+1-2", "25:0-1/", "25:0-1,,2-3", "25:a-b"]
        {
            assert_eq!(Emotes::parse(bad).map_err(|e| e.code()), Err("bad_tag_value"), "{bad:?}");
        }

        let line = corpus_line("id=6b4cb242-4a23-4596-a217-beaddbc496cb");
        let msg = privmsg(line);
        assert!(!msg.emotes.is_empty() && msg.emote_slices().is_empty(), "kept, with the stray range skipped");
    }

    #[test]
    fn roles_come_from_badges_and_tags() {
        let roles = |tags: &str| {
            let line = format!("@{tags};id=1;user-id=42;room-id=7 :n!n@n PRIVMSG #c :x");
            privmsg(&line).roles
        };
        assert_eq!(roles("badges="), Roles::default());
        assert!(roles("badges=broadcaster/1").broadcaster);
        assert!(
            privmsg("@badges=;id=1;user-id=7;room-id=7 :n!n@n PRIVMSG #c :x").roles.broadcaster,
            "user id = room id"
        );
        assert!(roles("badges=moderator/1").moderator);
        assert!(roles("badges=;mod=1").moderator);
        assert!(roles("badges=;user-type=mod").moderator);
        assert!(!roles("badges=;mod=0").moderator);
        assert!(!roles("badges=;mod=yes").moderator, "only an explicit 1 grants a role");
        assert!(roles("badges=vip/1").vip);
        assert!(roles("badges=;vip=1").vip);
        assert!(roles("badges=;subscriber=1").subscriber);
        assert!(roles("badges=subscriber/6").subscriber);
        assert!(roles("badges=founder/0").subscriber);
        assert!(!roles("badges=sub-gifter/5").subscriber);

        assert!(Roles { broadcaster: true, ..Roles::default() }.is_staff());
        assert!(Roles { moderator: true, ..Roles::default() }.is_staff());
        assert!(!Roles { vip: true, subscriber: true, ..Roles::default() }.is_staff());

        let line = corpus_line("id=36f675cc-81e7-4ef5-a8e2-5d940ed90475");
        assert!(privmsg(line).roles.broadcaster);
        let line = corpus_line("id=6b0d549b-6f03-475a-9600-a35a099950d8");
        assert!(privmsg(line).roles.vip);
        let line = corpus_line("id=8d116ece-1738-47d9-bd9c-172411e20b8f");
        let founder = privmsg(line);
        assert!(founder.roles.subscriber);
        assert_eq!(founder.subscriber_months(), Some(27));
    }

    #[test]
    fn badges_parse_leniently() {
        let badges = Badges::from_tag(r"subscriber/12,,bits/100,odd,predictions/Bleu\s1");
        let all: Vec<(&str, &str)> = badges.iter().map(|b| (b.name, b.version)).collect();
        assert_eq!(all, [("subscriber", "12"), ("bits", "100"), ("odd", ""), ("predictions", "Bleu 1")]);
        assert!(Badges::from_tag("").is_empty());
    }

    #[test]
    fn display_names_are_unescaped_trimmed_and_fall_back_to_the_login() {
        let name = |tag: &str| {
            let line = format!("@{tag}id=1;user-id=1 :login_name!login_name@h PRIVMSG #c :x");
            privmsg(&line).display_name.into_owned()
        };
        assert_eq!(name("display-name=Ünïcödé_名前;"), "Ünïcödé_名前");
        assert_eq!(name(r"display-name=OldAccount\s;"), "OldAccount");
        assert_eq!(name("display-name=;"), "login_name");
        assert_eq!(name(r"display-name=\s;"), "login_name");
        assert_eq!(name(""), "login_name");
    }

    #[test]
    fn user_notices_decode_their_kind() {
        let sub = user_notice(corpus_line("msg-id=sub;"));
        assert_eq!(sub.kind, UserNoticeKind::Sub { cumulative_months: Some(1), plan: Some("Prime") });
        assert_eq!(sub.login, "petale_de_lotus");
        assert_eq!(sub.user_id, "58800317");
        assert_eq!(sub.display_name, "PetaleDeLotus");
        assert_eq!(sub.system_msg.as_deref(), Some("PetaleDeLotus subscribed with Prime."));
        assert_eq!(sub.text, None);
        assert_eq!(sub.param("sub-plan-name").as_deref(), Some("Channel Subscription (galerie_nocturne)"));
        assert_eq!(sub.param_raw("should-share-streak"), Some("0"));
        assert_eq!(sub.param("no-such-param"), None);

        let resub = user_notice(corpus_line("msg-id=resub;"));
        assert_eq!(
            resub.kind,
            UserNoticeKind::Resub { cumulative_months: Some(15), streak_months: Some(7), plan: Some("1000") }
        );
        assert_eq!(resub.text, Some("15 mois déjà, merci Kappa"));
        let texts: Vec<&str> = resub.emotes.slices(resub.text.unwrap_or_default()).iter().map(|s| s.text).collect();
        assert_eq!(texts, ["Kappa"]);
        assert!(resub.roles.subscriber);

        let gift = user_notice(corpus_line("msg-id=subgift;"));
        assert_eq!(
            gift.kind,
            UserNoticeKind::SubGift {
                recipient_id: Some("61847220"),
                recipient_login: Some("yozakura_miku"),
                recipient_display_name: Some(Cow::Borrowed("夜桜ミク")),
                months: Some(3),
                plan: Some("1000"),
            }
        );
        assert_eq!(gift.login, "pluie_dor");

        let mystery = user_notice(corpus_line("msg-id=submysterygift;"));
        assert_eq!(mystery.kind, UserNoticeKind::SubMysteryGift { mass_gift_count: Some(5), plan: Some("1000") });
        assert_eq!(mystery.param_raw("sender-count"), Some("55"));

        let raid = user_notice(corpus_line("msg-id=raid;"));
        assert_eq!(raid.kind, UserNoticeKind::Raid { viewer_count: Some(42) });
        assert_eq!(raid.system_msg.as_deref(), Some("42 raiders from Musee_Du_Soir have joined!"));

        let announcement = user_notice(corpus_line("msg-id=announcement;"));
        assert_eq!(announcement.kind, UserNoticeKind::Announcement { color: Some("PURPLE") });
        assert_eq!(announcement.system_msg, None, "an empty system-msg is none");
        assert!(announcement.roles.moderator);

        let tier = user_notice(corpus_line("msg-id=bitsbadgetier;"));
        assert_eq!(tier.kind, UserNoticeKind::BitsBadgeTier { threshold: Some(1000) });

        let other = user_notice(corpus_line("msg-id=viewermilestone;"));
        assert_eq!((&other.kind, other.msg_id), (&UserNoticeKind::Other, "viewermilestone"));
        assert_eq!(other.param_raw("value"), Some("5"));
    }

    #[test]
    fn clearchat_tells_bans_from_timeouts_from_clearing() {
        fn clear(line: &str) -> ClearChat<'_> {
            match event(line) {
                TwitchEvent::ClearChat(clear) => clear,
                other => panic!("not a CLEARCHAT: {other:?}"),
            }
        }
        let ban = clear(corpus_line("target-user-id=66120034"));
        assert_eq!(ban.action, ClearChatAction::Ban { user_id: "66120034", login: "troll_du_soir" });
        assert_eq!(ban.target_user_id(), Some("66120034"));
        assert_eq!(ban.room_id, Some("71020511"));

        let timeout = clear(corpus_line("ban-duration=600"));
        assert_eq!(
            timeout.action,
            ClearChatAction::Timeout { user_id: "66120035", login: "bavard_pressé", seconds: 600 }
        );

        let all = clear(corpus_line("tmi-sent-ts=1716393420000 :tmi.twitch.tv CLEARCHAT"));
        assert_eq!((all.action, all.target_user_id()), (ClearChatAction::ClearAll, None));
        assert_eq!(all.channel, "galerie_nocturne");
    }

    #[test]
    fn clearmsg_names_the_deleted_message() {
        let TwitchEvent::ClearMsg(msg) = event(corpus_line("CLEARMSG")) else {
            panic!("not a CLEARMSG");
        };
        assert_eq!(
            msg,
            ClearMsg {
                channel: "galerie_nocturne",
                login: "lunaverde",
                target_msg_id: "6513270e-269e-4d37-b2a7-4de452e6b438",
                text: Some("bonsoir tout le monde !"),
            }
        );
    }

    #[test]
    fn roomstate_reports_only_what_was_sent() {
        fn state(line: &str) -> RoomState<'_> {
            match event(line) {
                TwitchEvent::RoomState(state) => state,
                other => panic!("not a ROOMSTATE: {other:?}"),
            }
        }
        let full = state(corpus_line("@emote-only=0;followers-only=-1"));
        assert_eq!(
            full,
            RoomState {
                channel: "galerie_nocturne",
                room_id: Some("71020511"),
                emote_only: Some(false),
                followers_only: Some(FollowersOnly::Off),
                unique: Some(false),
                slow_seconds: Some(0),
                subs_only: Some(false),
            }
        );
        let slow = state(corpus_line("slow=30"));
        assert_eq!(
            slow,
            RoomState {
                channel: "galerie_nocturne",
                room_id: Some("71020511"),
                slow_seconds: Some(30),
                ..RoomState::default()
            }
        );
        assert_eq!(state(corpus_line("followers-only=10")).followers_only, Some(FollowersOnly::MinMinutes(10)));
        assert_eq!(state(corpus_line("@emote-only=1")).emote_only, Some(true));
        assert_eq!(state(corpus_line("@r9k=1")).unique, Some(true));
        assert_eq!(
            state("@followers-only=0 :tmi.twitch.tv ROOMSTATE #c").followers_only,
            Some(FollowersOnly::MinMinutes(0)),
            "0 means any follower, not off"
        );
    }

    #[test]
    fn connection_events() {
        assert_eq!(event("PING :tmi.twitch.tv\r\n"), TwitchEvent::Ping { token: "tmi.twitch.tv" });
        assert_eq!(event("PING"), TwitchEvent::Ping { token: "" });
        assert_eq!(event(":tmi.twitch.tv RECONNECT"), TwitchEvent::Reconnect);
        assert_eq!(
            event(corpus_line("msg-id=slow_on")),
            TwitchEvent::Notice {
                channel: Some("galerie_nocturne"),
                msg_id: Some("slow_on"),
                text: "This room is now in slow mode. You may send messages every 30 seconds.",
            }
        );
        assert_eq!(
            event(":tmi.twitch.tv NOTICE * :Login authentication failed"),
            TwitchEvent::Notice { channel: None, msg_id: None, text: "Login authentication failed" }
        );
        assert_eq!(
            event(corpus_line("CAP * ACK")),
            TwitchEvent::CapAck { capabilities: "twitch.tv/tags twitch.tv/commands" }
        );
        assert_eq!(event(corpus_line("CAP * NAK")), TwitchEvent::CapNak { capabilities: "twitch.tv/unknown" });
        assert_eq!(event(corpus_line(" 001 ")), TwitchEvent::Connected { login: "parvis_bridge" });
        assert_eq!(
            event(corpus_line(" JOIN ")),
            TwitchEvent::Join { channel: "galerie_nocturne", login: "parvis_bridge" }
        );
        assert_eq!(event(corpus_line(" PART ")), TwitchEvent::Part { channel: "galerie_nocturne", login: "lunaverde" });
        assert_eq!(parse_twitch(":tmi.twitch.tv 372 me :motd"), Ok(None));
        assert_eq!(parse_twitch(":tmi.twitch.tv CAP * LS :a b"), Ok(None));
    }
}
