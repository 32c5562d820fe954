//! A member's socket, shared by its connection's task and the fan-out. The fan-out writes what
//! the venue says to everyone straight into each member's socket from its own task, walking the
//! members of a group in turn: the bytes of a gathered frame are encoded once (a server's
//! WebSocket frames are not masked, so they are the same for every member) and written with one
//! non-blocking `write` each, without waking the member's task. That task only wakes for what
//! concerns its member (their messages, their replies) and when a write did not go out whole:
//! then the rest waits here, in order, and the task drives it out as the socket makes room.
//!
//! The connection's own traffic (the handshake's answer, replies, pongs, the closing handshake)
//! is written here too, behind what waits: frames are never interleaved, whoever writes them.
//! The member's frames are read here as well, through a [`FrameReader`] that holds no buffer
//! between messages: an idle member costs its task, this outlet and tokio's registration.

use std::collections::VecDeque;
use std::io;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, ready};

use bytes::{Buf, Bytes};
use tokio::net::TcpStream;

use crate::engine::audience::hub::Mailbox;
use crate::model::websocket::{FrameError, FrameReader, Incoming, close_frame_payload, encode_frame, opcode};

/// Bytes that may wait for one member's socket; beyond, the fan-out skips frames for it (and
/// sends the whole state again once it has caught up) and its own traffic waits for room.
pub const MAX_WAITING: usize = 256 << 10;

/// What a member chose not to receive (`hello`'s `mute`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Muted(u8);

/// What may be muted: a name in `hello`'s `mute` and its bit.
const MUTABLE: [(&str, u8); 2] = [("chat", Muted::CHAT), ("effects", Muted::EFFECTS)];

impl Muted {
    /// Chat lines.
    pub const CHAT: u8 = 1;
    /// Effects the audience set off.
    pub const EFFECTS: u8 = 2;
    /// How many different choices there are.
    pub const CHOICES: usize = 4;

    /// Reads `hello`'s `mute` list; an unknown name is refused with the names there are.
    pub fn parse(names: &[String]) -> Result<Self, String> {
        let mut bits = 0;
        for name in names {
            match MUTABLE.iter().find(|(n, _)| n == name) {
                Some((_, bit)) => bits |= bit,
                None => {
                    let known: Vec<&str> = MUTABLE.iter().map(|(n, _)| *n).collect();
                    return Err(format!("cannot mute {name:?}; these can be muted: {}", known.join(", ")));
                }
            }
        }
        Ok(Self(bits))
    }

    /// Whether `bit` ([`Muted::CHAT`], [`Muted::EFFECTS`]) is muted.
    pub fn hides(self, bit: u8) -> bool {
        self.0 & bit != 0
    }

    /// This choice's place among the [`Muted::CHOICES`].
    pub fn index(self) -> usize {
        usize::from(self.0)
    }
}

/// A member's socket and what waits to be written to it.
#[derive(Debug)]
pub struct Outlet {
    stream: TcpStream,
    out: Mutex<Out>,
    /// The member's mailbox, woken when bytes wait here too: the member's task drives them out.
    /// An idle member's task waits on one thing, not two.
    wake: Arc<Mailbox>,
    /// Once set, the fan-out writes nothing more (the connection is closing).
    closed: AtomicBool,
    /// The venue closes: the connection ends once what waits is written.
    ended: AtomicBool,
}

#[derive(Debug, Default)]
struct Out {
    waiting: VecDeque<Bytes>,
    bytes: usize,
    /// Bytes written from `waiting` since the start.
    sent: u64,
    /// The member joined the fan-out: it may write frames.
    joined: bool,
    /// Frames were skipped: the whole state goes before the next one.
    lagged: bool,
    muted: Muted,
}

/// Why a member's messages cannot be read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReadFailed {
    /// What the client sent is not WebSocket frames a server accepts.
    Frame(FrameError),
    /// The connection broke.
    Io,
}

/// What became of a frame offered to a member.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Offered {
    /// Written, or waiting behind earlier bytes.
    Sent,
    /// The member is too far behind: skipped (it will get the whole state again).
    Skipped,
    /// The member is leaving, or not there yet: nothing written.
    Gone,
}

impl Outlet {
    /// A member's socket, before the handshake; `wake` is the member's mailbox, whose reader
    /// also drives out what waits here.
    pub fn new(stream: TcpStream, wake: Arc<Mailbox>) -> Self {
        Self { stream, out: Mutex::default(), wake, closed: AtomicBool::new(false), ended: AtomicBool::new(false) }
    }

    /// What the member chose not to receive, set once it said hello; `state` (the whole state,
    /// encoded) goes first and the fan-out's frames may follow from now on.
    pub fn join(&self, muted: Muted, state: &Bytes) {
        let mut out = self.out.lock().expect("outlet");
        out.muted = muted;
        out.joined = true;
        self.write_or_queue(&mut out, state.clone());
    }

    /// Writes one text message of the connection's own, or queues it; the member's task
    /// drives out what waits.
    pub fn write_text(&self, text: &str) {
        self.write_frame(opcode::TEXT, text.as_bytes());
    }

    /// Answers a ping with a pong carrying its payload.
    pub fn write_pong(&self, payload: &[u8]) {
        self.write_frame(opcode::PONG, payload);
    }

    /// Writes the close frame (`code`, `reason`) after what waits; the fan-out writes nothing
    /// more (RFC 6455: no data frame after a close frame).
    pub fn write_close(&self, code: u16, reason: &str) {
        self.close();
        self.write_frame(opcode::CLOSE, &close_frame_payload(code, reason));
    }

    /// Writes one frame of the connection's own, or queues it.
    fn write_frame(&self, opcode: u8, payload: &[u8]) {
        let mut bytes = Vec::with_capacity(payload.len() + 10);
        encode_frame(&mut bytes, opcode, payload);
        self.write_raw(bytes);
    }

    /// Writes bytes as they are (the answer to the WebSocket handshake, before any frame).
    pub fn write_raw(&self, bytes: Vec<u8>) {
        let mut out = self.out.lock().expect("outlet");
        self.write_or_queue(&mut out, bytes.into());
    }

    /// The member's next message, read through `reader` as the socket has bytes; `None` once
    /// the client closed the TCP connection. The reader keeps a frame cut between reads; the
    /// chunk read into is on the stack of this call, not in the member's task.
    pub fn poll_message(
        &self,
        cx: &mut Context<'_>,
        reader: &mut FrameReader,
    ) -> Poll<Result<Option<Incoming>, ReadFailed>> {
        loop {
            if let Some(message) = reader.message().map_err(ReadFailed::Frame)? {
                return Poll::Ready(Ok(Some(message)));
            }
            let n = ready!(self.poll_read(cx, |bytes| reader.feed(bytes))).map_err(|_| ReadFailed::Io)?;
            if n == 0 {
                return Poll::Ready(Ok(None));
            }
        }
    }

    /// Reads what the socket has into a chunk on this call's stack and hands it to `take`;
    /// ready with the bytes read (0: the client closed the connection).
    fn poll_read(&self, cx: &mut Context<'_>, take: impl FnOnce(&[u8])) -> Poll<io::Result<usize>> {
        loop {
            ready!(self.stream.poll_read_ready(cx))?;
            let mut chunk = [0u8; 4096];
            match self.stream.try_read(&mut chunk) {
                Ok(n) => {
                    take(&chunk[..n]);
                    return Poll::Ready(Ok(n));
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(e) => return Poll::Ready(Err(e)),
            }
        }
    }

    /// Reads and drops what the client sends until it closes or the connection ends: after a
    /// close frame is sent, so that the socket is not reset with bytes unread (the client
    /// would lose the close frame).
    pub fn poll_discard(&self, cx: &mut Context<'_>) -> Poll<()> {
        while let Ok(1..) = ready!(self.poll_read(cx, |_| {})) {}
        Poll::Ready(())
    }

    /// Stops the fan-out's writes: the connection closes (its own last words still go).
    pub fn close(&self) {
        self.closed.store(true, Ordering::Relaxed);
    }

    /// Whether the connection is closing.
    pub fn is_closed(&self) -> bool {
        self.closed.load(Ordering::Relaxed)
    }

    /// The venue closes: the member's task ends the connection once what waits is written.
    pub fn end(&self) {
        self.ended.store(true, Ordering::Relaxed);
        self.wake.wake();
    }

    /// The member's mailbox, which the outlet wakes too.
    pub fn mailbox(&self) -> &Arc<Mailbox> {
        &self.wake
    }

    /// Whether the venue closed.
    pub fn is_ended(&self) -> bool {
        self.ended.load(Ordering::Relaxed)
    }

    /// Resolves when bytes may wait (or the venue closed) for the member's task to drive them
    /// out, or a reply was put in the member's mailbox.
    pub fn woken(&self) -> tokio::sync::futures::Notified<'_> {
        self.wake.woken()
    }

    /// Writes a frame of the fan-out, as `frame` encodes it for what the member muted (`None`:
    /// nothing for them), or queues what the socket has no room for; `state` (the whole state)
    /// goes first if frames were skipped. Never waits.
    pub fn offer(&self, frame: impl FnOnce(Muted) -> Option<Bytes>, state: &Bytes) -> Offered {
        if self.is_closed() {
            return Offered::Gone;
        }
        let mut out = self.out.lock().expect("outlet");
        // Checked again under the lock: a close frame is written with it held, after the flag
        // is set, and nothing may follow it.
        if !out.joined || self.is_closed() {
            return Offered::Gone;
        }
        let Some(frame) = frame(out.muted) else { return Offered::Sent };
        if out.lagged {
            if out.bytes + state.len() + frame.len() > MAX_WAITING {
                return Offered::Skipped;
            }
            out.lagged = false;
            self.write_or_queue(&mut out, state.clone());
        } else if out.bytes + frame.len() > MAX_WAITING {
            out.lagged = true;
            return Offered::Skipped;
        }
        self.write_or_queue(&mut out, frame);
        Offered::Sent
    }

    /// Writes `bytes` at once if nothing waits, else queues them behind; wakes the member's
    /// task when something is left to write.
    fn write_or_queue(&self, out: &mut Out, mut bytes: Bytes) {
        if out.waiting.is_empty() {
            // A broken socket shows on the task's next read or flush: queue, which it then
            // drops with the connection.
            if let Ok(n) = self.stream.try_write(&bytes) {
                bytes.advance(n);
            }
            if bytes.is_empty() {
                return;
            }
        }
        out.bytes += bytes.len();
        out.waiting.push_back(bytes);
        self.wake.wake();
    }

    /// Writes what waits; ready once nothing does.
    pub fn poll_drain(&self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.poll_drain_until(cx, |out| out.waiting.is_empty())
    }

    /// Writes what waits now; ready once it is out, whatever was queued since. A member who
    /// reads more slowly than the venue speaks then skips frames (and catches up with the whole
    /// state), instead of waiting for a queue that never empties.
    pub async fn drain_waiting(&self) -> io::Result<()> {
        let mark = {
            let out = self.out.lock().expect("outlet");
            out.sent + out.bytes as u64
        };
        std::future::poll_fn(|cx| self.poll_drain_until(cx, |out| out.sent >= mark)).await
    }

    /// Writes what waits as the socket makes room, until `done`.
    fn poll_drain_until(&self, cx: &mut Context<'_>, done: impl Fn(&Out) -> bool) -> Poll<io::Result<()>> {
        loop {
            let mut out = self.out.lock().expect("outlet");
            self.drain(&mut out)?;
            if done(&out) {
                return Poll::Ready(Ok(()));
            }
            drop(out);
            ready!(self.stream.poll_write_ready(cx))?;
        }
    }

    /// Bytes written from the queue since the start: whether a slow member makes progress.
    pub fn sent(&self) -> u64 {
        self.out.lock().expect("outlet").sent
    }

    /// Bytes waiting now.
    pub fn waiting_bytes(&self) -> usize {
        self.out.lock().expect("outlet").bytes
    }

    /// Writes what waits, as far as the socket takes it.
    fn drain(&self, out: &mut Out) -> io::Result<()> {
        while let Some(front) = out.waiting.front_mut() {
            match self.stream.try_write(front) {
                Ok(n) => {
                    front.advance(n);
                    out.bytes -= n;
                    out.sent += n as u64;
                    if front.is_empty() {
                        out.waiting.pop_front();
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(()),
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }
}

/// Appends one WebSocket text message as a server sends it (final, unmasked) to `out`.
pub fn encode_text(out: &mut Vec<u8>, text: &[u8]) {
    encode_frame(out, opcode::TEXT, text);
}

#[cfg(test)]
mod tests {
    use std::io::Cursor;

    use tokio_tungstenite::tungstenite::protocol::frame::FrameHeader;
    use tokio_tungstenite::tungstenite::protocol::frame::coding::{Data, OpCode};

    use super::*;

    #[test]
    fn text_messages_are_encoded_as_tungstenite_reads_them_at_every_length_boundary() {
        for len in [0, 1, 125, 126, 127, 65_535, 65_536, 70_000] {
            let text = "é".repeat(len / 2) + &"a".repeat(len % 2);
            let mut out = Vec::new();
            encode_text(&mut out, text.as_bytes());
            let mut cursor = Cursor::new(&out[..]);
            let (header, length) = FrameHeader::parse(&mut cursor).unwrap().unwrap();
            assert!(header.is_final && header.mask.is_none(), "{len}: {header:?}");
            assert_eq!(header.opcode, OpCode::Data(Data::Text));
            assert_eq!(length as usize, text.len());
            assert_eq!(&out[cursor.position() as usize..], text.as_bytes(), "{len}");
        }
    }
}
