//! WebSocket frames (RFC 6455) as a server reads them from its clients and writes them back.
//!
//! The audience edge reads its members' frames with [`FrameReader`] rather than through a
//! WebSocket library's stream: an idle member then holds no read buffer, no stream state and
//! no waker proxies, only the reader's two empty vectors (docs/benchmarks.md, "Memory per
//! idle connection"). Everything here is pure: bytes in, messages or a [`FrameError`] out,
//! each error with the close code RFC 6455 asks the server to answer with.

use thiserror::Error;

/// The longest payload of a control frame (ping, pong, close).
pub const MAX_CONTROL: usize = 125;

/// The GUID a handshake's `Sec-WebSocket-Accept` is derived with (RFC 6455, 1.3).
pub const ACCEPT_GUID: &str = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";

/// What a client said, one whole message at a time.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Incoming {
    /// A text message, its fragments joined, valid UTF-8.
    Text(String),
    /// A binary message, of this many bytes (the audience speaks text: its bytes are not kept).
    Binary(usize),
    /// A ping, to be answered with a pong carrying the same payload.
    Ping(Vec<u8>),
    /// A pong (unsolicited or not: nothing to do).
    Pong,
    /// The client closes, with its status code and reason if it gave them.
    Close(Option<(u16, String)>),
}

/// Why a client's bytes are not WebSocket frames the server may accept. The connection ends
/// with a close frame carrying [`FrameError::close_code`].
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum FrameError {
    /// A client's frames must be masked (RFC 6455, 5.1).
    #[error("an unmasked frame (a client must mask every frame)")]
    Unmasked,
    /// No extension was agreed on, so no reserved bit may be set.
    #[error("reserved bits {0:#04x} set, and no extension was agreed on")]
    Reserved(u8),
    /// An opcode RFC 6455 reserves.
    #[error("unknown opcode {0:#x}")]
    UnknownOpcode(u8),
    /// A control frame longer than [`MAX_CONTROL`].
    #[error("a control frame of {0} bytes (at most 125)")]
    ControlTooLong(u64),
    /// A control frame without its FIN bit.
    #[error("a fragmented control frame")]
    ControlFragmented,
    /// A continuation frame with no fragmented message to continue.
    #[error("a continuation frame with no message to continue")]
    StrayContinuation,
    /// A new text or binary message before the fragmented one ended.
    #[error("a new message before the fragmented one was finished")]
    Unfinished,
    /// A 64-bit length with its most significant bit set.
    #[error("a frame length with its most significant bit set")]
    BadLength,
    /// A message longer than the reader takes, refused from its header.
    #[error("a message of at least {len} bytes (at most {max})")]
    TooBig {
        /// The length known so far (the frame's, plus the fragments before it).
        len: u64,
        /// The most the reader takes.
        max: usize,
    },
    /// A text message, or a close frame's reason, that is not UTF-8.
    #[error("text that is not valid UTF-8")]
    InvalidUtf8,
    /// A close frame of one byte, or with a code no endpoint may send.
    #[error("a close frame with an invalid status code {0}")]
    BadCloseCode(u16),
}

impl FrameError {
    /// The status code of the close frame the server answers this with: 1009 for a message too
    /// big, 1007 for text that is not UTF-8, 1002 (protocol error) for the rest.
    pub fn close_code(&self) -> u16 {
        match self {
            Self::TooBig { .. } => 1009,
            Self::InvalidUtf8 => 1007,
            _ => 1002,
        }
    }
}

/// Whether a client may send `code` in a close frame (RFC 6455, 7.4; 1004–1006 and 1015 are
/// never sent, 1012–1014 are registered since).
pub fn close_code_allowed(code: u16) -> bool {
    matches!(code, 1000..=1003 | 1007..=1014 | 3000..=4999)
}

/// A client's frames, read into whole messages. Bytes are handed over as they arrive
/// ([`FrameReader::feed`]) and messages taken out as they complete ([`FrameReader::message`]);
/// a frame cut anywhere across reads decodes the same. Once it returned an error the reader
/// is spent: the connection is to close.
#[derive(Debug)]
pub struct FrameReader {
    /// The longest message taken, fragments together. (The fields are kept small: every idle
    /// audience member holds a reader.)
    max_message: u32,
    /// Bytes fed and not yet decoded: at most the start of a frame. Released once empty, so
    /// that an idle client holds nothing.
    pending: Vec<u8>,
    /// A fragmented text message so far.
    message: Vec<u8>,
    /// A fragmented message is under way: text (its bytes in `message`) or binary (its
    /// length in `binary`).
    fragmented: Option<Fragmented>,
    /// A fragmented binary message's length so far.
    binary: u32,
    failed: Option<Box<FrameError>>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Fragmented {
    Text,
    Binary,
}

/// A frame's header, decoded.
struct Header {
    fin: bool,
    opcode: u8,
    mask: [u8; 4],
    /// The header's own length in bytes.
    size: usize,
    /// The payload's length.
    len: usize,
}

impl FrameReader {
    /// A reader taking messages of at most `max_message` bytes (at most 4 GiB).
    pub fn new(max_message: usize) -> Self {
        Self {
            max_message: u32::try_from(max_message).unwrap_or(u32::MAX),
            pending: Vec::new(),
            message: Vec::new(),
            fragmented: None,
            binary: 0,
            failed: None,
        }
    }

    /// Hands over bytes read from the client (ignored once the reader is spent).
    pub fn feed(&mut self, bytes: &[u8]) {
        if self.failed.is_none() {
            self.pending.extend_from_slice(bytes);
        }
    }

    /// Bytes fed and not yet decoded.
    pub fn pending(&self) -> usize {
        self.pending.len()
    }

    /// The next whole message, or `None` until more bytes are fed. After an error, the same
    /// error again.
    pub fn message(&mut self) -> Result<Option<Incoming>, FrameError> {
        if let Some(e) = &self.failed {
            return Err(FrameError::clone(e));
        }
        let result = self.decode();
        if let Err(e) = &result {
            self.failed = Some(Box::new(e.clone()));
            self.pending = Vec::new();
            self.message = Vec::new();
        }
        result
    }

    fn decode(&mut self) -> Result<Option<Incoming>, FrameError> {
        loop {
            let Some(header) = self.header()? else { return Ok(None) };
            let end = header.size + header.len;
            if self.pending.len() < end {
                if self.pending.capacity() < end {
                    // The header says how much is coming: room for it whole, once.
                    self.pending.reserve_exact(end - self.pending.len());
                }
                return Ok(None);
            }
            let payload = &mut self.pending[header.size..end];
            for (i, byte) in payload.iter_mut().enumerate() {
                *byte ^= header.mask[i % 4];
            }
            let message = self.frame(&header, end)?;
            if self.pending.len() == end {
                self.pending = Vec::new();
            } else {
                self.pending.drain(..end);
                // A read that brought a frame and the start of the next leaves a long buffer
                // for a few bytes: not kept for as long as the client stays quiet.
                if self.pending.capacity() > 2 * self.pending.len() + 64 {
                    self.pending.shrink_to_fit();
                }
            }
            if message.is_some() {
                return Ok(message);
            }
        }
    }

    /// The header at the start of `pending`, checked; `None` while it is incomplete.
    fn header(&self) -> Result<Option<Header>, FrameError> {
        let bytes = &self.pending;
        let (Some(&b0), Some(&b1)) = (bytes.first(), bytes.get(1)) else { return Ok(None) };
        let (fin, reserved, opcode) = (b0 & 0x80 != 0, b0 & 0x70, b0 & 0x0f);
        if reserved != 0 {
            return Err(FrameError::Reserved(reserved));
        }
        let control = opcode >= 8;
        if !matches!(opcode, 0 | 1 | 2 | 8 | 9 | 10) {
            return Err(FrameError::UnknownOpcode(opcode));
        }
        if b1 & 0x80 == 0 {
            return Err(FrameError::Unmasked);
        }
        let (len, mut size) = match b1 & 0x7f {
            126 => {
                let Some(l) = bytes.get(2..4) else { return Ok(None) };
                (u64::from(u16::from_be_bytes([l[0], l[1]])), 4)
            }
            127 => {
                let Some(l) = bytes.get(2..10) else { return Ok(None) };
                let len = u64::from_be_bytes(l.try_into().expect("eight bytes"));
                if len >> 63 != 0 {
                    return Err(FrameError::BadLength);
                }
                (len, 10)
            }
            n => (u64::from(n), 2),
        };
        if control {
            if !fin {
                return Err(FrameError::ControlFragmented);
            }
            if len > MAX_CONTROL as u64 {
                return Err(FrameError::ControlTooLong(len));
            }
        } else {
            match (opcode, self.fragmented) {
                (0, None) => return Err(FrameError::StrayContinuation),
                (1 | 2, Some(_)) => return Err(FrameError::Unfinished),
                _ => {}
            }
            let before = if opcode == 0 { self.message.len() as u64 + u64::from(self.binary) } else { 0 };
            let total = len.saturating_add(before);
            if total > u64::from(self.max_message) {
                return Err(FrameError::TooBig { len: total, max: self.max_message as usize });
            }
        }
        let Some(mask) = bytes.get(size..size + 4) else { return Ok(None) };
        let mask = mask.try_into().expect("four bytes");
        size += 4;
        // Within `max_message` or 125 bytes: it fits a usize.
        Ok(Some(Header { fin, opcode, mask, size, len: len as usize }))
    }

    /// What the frame at the start of `pending` (unmasked, `end` bytes long) completes.
    fn frame(&mut self, header: &Header, end: usize) -> Result<Option<Incoming>, FrameError> {
        let payload = &self.pending[header.size..end];
        Ok(match (header.opcode, header.fin) {
            (1, true) => Some(Incoming::Text(text(payload.to_vec())?)),
            (2, true) => Some(Incoming::Binary(payload.len())),
            (1, false) => {
                self.fragmented = Some(Fragmented::Text);
                self.message.extend_from_slice(payload);
                None
            }
            (2, false) => {
                self.fragmented = Some(Fragmented::Binary);
                // Within `max_message`, a u32.
                self.binary = payload.len() as u32;
                None
            }
            (0, fin) => {
                match self.fragmented {
                    Some(Fragmented::Text) => self.message.extend_from_slice(payload),
                    _ => self.binary += payload.len() as u32,
                }
                if !fin {
                    return Ok(None);
                }
                let kind = self.fragmented.take();
                if kind == Some(Fragmented::Text) {
                    Some(Incoming::Text(text(std::mem::take(&mut self.message))?))
                } else {
                    Some(Incoming::Binary(std::mem::take(&mut self.binary) as usize))
                }
            }
            (8, _) => Some(Incoming::Close(close_payload(payload)?)),
            (9, _) => Some(Incoming::Ping(payload.to_vec())),
            _ => Some(Incoming::Pong),
        })
    }
}

fn text(bytes: Vec<u8>) -> Result<String, FrameError> {
    String::from_utf8(bytes).map_err(|_| FrameError::InvalidUtf8)
}

/// A close frame's status code and reason.
fn close_payload(payload: &[u8]) -> Result<Option<(u16, String)>, FrameError> {
    match payload {
        [] => Ok(None),
        [_] => Err(FrameError::BadCloseCode(0)),
        [a, b, reason @ ..] => {
            let code = u16::from_be_bytes([*a, *b]);
            if !close_code_allowed(code) {
                return Err(FrameError::BadCloseCode(code));
            }
            let reason = std::str::from_utf8(reason).map_err(|_| FrameError::InvalidUtf8)?;
            Ok(Some((code, reason.to_owned())))
        }
    }
}

/// Opcodes of the frames a server writes.
pub mod opcode {
    /// A text message.
    pub const TEXT: u8 = 1;
    /// A close frame.
    pub const CLOSE: u8 = 8;
    /// A pong.
    pub const PONG: u8 = 10;
}

/// Appends one final frame as a server writes it (unmasked) to `out`.
pub fn encode_frame(out: &mut Vec<u8>, opcode: u8, payload: &[u8]) {
    out.push(0x80 | opcode);
    match payload.len() {
        n if n < 126 => out.push(n as u8),
        n if n <= usize::from(u16::MAX) => {
            out.push(126);
            out.extend_from_slice(&(n as u16).to_be_bytes());
        }
        n => {
            out.push(127);
            out.extend_from_slice(&(n as u64).to_be_bytes());
        }
    }
    out.extend_from_slice(payload);
}

/// A close frame's payload: `code`, then `reason` cut to what a control frame holds.
pub fn close_frame_payload(code: u16, reason: &str) -> Vec<u8> {
    let mut cut = reason.len().min(MAX_CONTROL - 2);
    while !reason.is_char_boundary(cut) {
        cut -= 1;
    }
    let mut payload = code.to_be_bytes().to_vec();
    payload.extend_from_slice(&reason.as_bytes()[..cut]);
    payload
}

/// Why an upgrade request is not a WebSocket handshake the server accepts.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum HandshakeError {
    /// Not `GET … HTTP/1.1` (or later).
    #[error("a WebSocket handshake is a GET over HTTP/1.1")]
    Method,
    /// `Connection` does not list `Upgrade`, or `Upgrade` is not `websocket`.
    #[error("the request does not ask to upgrade to websocket")]
    NotUpgrade,
    /// `Sec-WebSocket-Version` is not 13.
    #[error("WebSocket version {0:?} (this server speaks 13)")]
    Version(String),
    /// `Sec-WebSocket-Key` is missing or not 16 bytes in base64.
    #[error("a missing or malformed Sec-WebSocket-Key")]
    Key,
}

/// The value of header `name` (any case) in an HTTP request head, trimmed; the first if several.
pub fn header<'a>(head: &'a str, name: &str) -> Option<&'a str> {
    head.lines().skip(1).find_map(|line| {
        let (key, value) = line.split_once(':')?;
        key.trim().eq_ignore_ascii_case(name).then_some(value.trim())
    })
}

/// Checks an upgrade request's head (the request line and headers, as read) and returns its
/// `Sec-WebSocket-Key`, from which the answer's `Sec-WebSocket-Accept` is derived.
pub fn handshake_key(head: &str) -> Result<&str, HandshakeError> {
    let mut lines = head.split("\r\n");
    let mut request = lines.next().unwrap_or_default().split(' ');
    let (method, version) = (request.next(), request.nth(1));
    if method != Some("GET") || version != Some("HTTP/1.1") {
        return Err(HandshakeError::Method);
    }
    let header = |name: &str| header(head, name);
    let connection_upgrades =
        header("connection").is_some_and(|v| v.split(',').any(|token| token.trim().eq_ignore_ascii_case("upgrade")));
    if !connection_upgrades || !header("upgrade").is_some_and(|v| v.eq_ignore_ascii_case("websocket")) {
        return Err(HandshakeError::NotUpgrade);
    }
    match header("sec-websocket-version") {
        Some("13") => {}
        other => return Err(HandshakeError::Version(other.unwrap_or_default().chars().take(16).collect())),
    }
    let key = header("sec-websocket-key").ok_or(HandshakeError::Key)?;
    // Sixteen bytes in base64: 22 characters of the alphabet, then "==".
    let base64 = |c: u8| c.is_ascii_alphanumeric() || c == b'+' || c == b'/';
    let bytes = key.as_bytes();
    if bytes.len() != 24 || !bytes[..22].iter().all(|&c| base64(c)) || &bytes[22..] != b"==" {
        return Err(HandshakeError::Key);
    }
    Ok(key)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A client's frame: masked with a fixed key.
    fn masked(first: u8, payload: &[u8]) -> Vec<u8> {
        let mask = [0x37, 0xfa, 0x21, 0x3d];
        let mut out = vec![first];
        match payload.len() {
            n if n < 126 => out.push(0x80 | n as u8),
            n if n <= 0xffff => {
                out.push(0x80 | 126);
                out.extend_from_slice(&(n as u16).to_be_bytes());
            }
            n => {
                out.push(0x80 | 127);
                out.extend_from_slice(&(n as u64).to_be_bytes());
            }
        }
        out.extend_from_slice(&mask);
        out.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
        out
    }

    fn read_all(reader: &mut FrameReader) -> Result<Vec<Incoming>, FrameError> {
        let mut messages = Vec::new();
        while let Some(m) = reader.message()? {
            messages.push(m);
        }
        Ok(messages)
    }

    #[test]
    fn a_text_message_decodes_from_rfc_6455_s_own_example() {
        // RFC 6455, 5.7: "Hello", masked.
        let mut reader = FrameReader::new(4096);
        reader.feed(&[0x81, 0x85, 0x37, 0xfa, 0x21, 0x3d, 0x7f, 0x9f, 0x4d, 0x51, 0x58]);
        assert_eq!(reader.message(), Ok(Some(Incoming::Text("Hello".into()))));
        assert_eq!(reader.message(), Ok(None));
        assert_eq!(reader.pending(), 0);
    }

    #[test]
    fn frames_cut_at_every_byte_decode_the_same() {
        let mut stream = masked(0x81, "é".repeat(40).as_bytes());
        stream.extend(masked(0x89, b"ping"));
        stream.extend(masked(0x01, b"frag"));
        stream.extend(masked(0x8a, b""));
        stream.extend(masked(0x80, b"mented"));
        stream.extend(masked(0x81, "x".repeat(300).as_bytes()));
        stream.extend(masked(0x82, &[0; 70]));
        stream.extend(masked(0x88, &[0x03, 0xe8, b'o', b'k']));
        let mut whole = FrameReader::new(4096);
        whole.feed(&stream);
        let expected = read_all(&mut whole).unwrap();
        assert_eq!(
            expected,
            vec![
                Incoming::Text("é".repeat(40)),
                Incoming::Ping(b"ping".to_vec()),
                Incoming::Pong,
                Incoming::Text("fragmented".into()),
                Incoming::Text("x".repeat(300)),
                Incoming::Binary(70),
                Incoming::Close(Some((1000, "ok".into()))),
            ]
        );
        for cut in 1..stream.len() {
            let mut reader = FrameReader::new(4096);
            reader.feed(&stream[..cut]);
            let mut got = read_all(&mut reader).unwrap();
            reader.feed(&stream[cut..]);
            got.extend(read_all(&mut reader).unwrap());
            assert_eq!(got, expected, "cut at {cut}");
        }
    }

    #[test]
    fn violations_are_refused_with_the_close_code_rfc_6455_asks_for() {
        let cases: Vec<(Vec<u8>, FrameError)> = vec![
            (vec![0x81, 0x02, b'h', b'i'], FrameError::Unmasked),
            (vec![0xf1, 0x80, 0, 0, 0, 0], FrameError::Reserved(0x70)),
            (vec![0x83, 0x80, 0, 0, 0, 0], FrameError::UnknownOpcode(3)),
            (masked(0x09, b""), FrameError::ControlFragmented),
            (masked(0x89, &[0; 126]), FrameError::ControlTooLong(126)),
            (masked(0x80, b"x"), FrameError::StrayContinuation),
            ([masked(0x01, b"a"), masked(0x81, b"b")].concat(), FrameError::Unfinished),
            (masked(0x81, &[0xff, 0xfe]), FrameError::InvalidUtf8),
            (masked(0x88, &[0x03]), FrameError::BadCloseCode(0)),
            (masked(0x88, &[0x03, 0xed]), FrameError::BadCloseCode(1005)),
            (masked(0x88, &[0x03, 0xe8, 0xff]), FrameError::InvalidUtf8),
            (vec![0x81, 0xff, 0x80, 0, 0, 0, 0, 0, 0, 0], FrameError::BadLength),
        ];
        for (bytes, error) in cases {
            let mut reader = FrameReader::new(4096);
            reader.feed(&bytes);
            assert_eq!(read_all(&mut reader), Err(error.clone()), "{bytes:?}");
            assert_eq!(reader.message(), Err(error.clone()), "the reader stays spent");
            reader.feed(&masked(0x81, b"more"));
            assert_eq!((reader.message(), reader.pending()), (Err(error.clone()), 0), "and takes nothing more");
            let code = error.close_code();
            assert_eq!(code, if error == FrameError::InvalidUtf8 { 1007 } else { 1002 });
        }
    }

    #[test]
    fn a_message_too_big_is_refused_from_its_header_before_its_payload() {
        let mut reader = FrameReader::new(4096);
        // Only the header of a 5 000-byte frame: refused at once, nothing reserved for it.
        reader.feed(&masked(0x81, &[b'x'; 5000])[..8]);
        assert_eq!(reader.message(), Err(FrameError::TooBig { len: 5000, max: 4096 }));
        assert_eq!(FrameError::TooBig { len: 5000, max: 4096 }.close_code(), 1009);
        // Fragments adding up past the limit, each under it.
        let mut reader = FrameReader::new(4096);
        reader.feed(&[masked(0x01, &[b'x'; 3000]), masked(0x80, &[b'x'; 3000])].concat());
        assert_eq!(reader.message(), Err(FrameError::TooBig { len: 6000, max: 4096 }));
        // At the limit, taken.
        let mut reader = FrameReader::new(4096);
        reader.feed(&masked(0x81, &[b'x'; 4096]));
        assert_eq!(reader.message(), Ok(Some(Incoming::Text("x".repeat(4096)))));
    }

    #[test]
    fn an_idle_reader_holds_no_memory() {
        let mut reader = FrameReader::new(4096);
        reader.feed(&masked(0x81, b"hello"));
        reader.message().unwrap();
        assert_eq!(reader.pending.capacity(), 0);
        assert_eq!(reader.message.capacity(), 0);
        // The header of a long frame (room reserved for it), then the rest of it with one byte
        // of the next: what is kept for that byte is small.
        let long = masked(0x81, &[b'x'; 4000]);
        reader.feed(&long[..8]);
        assert_eq!(reader.message(), Ok(None));
        reader.feed(&long[8..]);
        reader.feed(&[0x81]);
        assert!(matches!(reader.message(), Ok(Some(Incoming::Text(_)))));
        assert_eq!(reader.message(), Ok(None));
        assert!(reader.pending.capacity() <= 64, "{} bytes kept", reader.pending.capacity());
    }

    #[test]
    fn server_frames_are_encoded_at_every_length_boundary() {
        for len in [0usize, 125, 126, 65_535, 65_536] {
            let mut out = Vec::new();
            encode_frame(&mut out, opcode::TEXT, &vec![b'a'; len]);
            let header = match len {
                0..=125 => 2,
                126..=65_535 => 4,
                _ => 10,
            };
            assert_eq!(out.len(), header + len);
            assert_eq!(out[0], 0x81);
            assert_eq!(out[1] & 0x80, 0, "unmasked");
        }
        let reason = "é".repeat(100);
        let payload = close_frame_payload(1001, &reason);
        assert!(payload.len() <= MAX_CONTROL && std::str::from_utf8(&payload[2..]).is_ok());
    }

    #[test]
    fn handshakes_are_checked() {
        let good = "GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: keep-alive, Upgrade\r\n\
                    Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n";
        assert_eq!(handshake_key(good), Ok("dGhlIHNhbXBsZSBub25jZQ=="));
        assert_eq!(handshake_key(&good.replace("GET", "POST")), Err(HandshakeError::Method));
        assert_eq!(handshake_key(&good.replace("keep-alive, Upgrade", "close")), Err(HandshakeError::NotUpgrade));
        assert_eq!(handshake_key(&good.replace(": 13", ": 8")), Err(HandshakeError::Version("8".into())));
        assert_eq!(handshake_key(&good.replace("dGhlIHNhbXBsZSBub25jZQ==", "short")), Err(HandshakeError::Key));
    }
}
