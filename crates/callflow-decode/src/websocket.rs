//! WebSocket (RFC 6455) as a SIP transport (RFC 7118): the HTTP upgrade handshake, frame views and TCP framing.
//!
//! A WebSocket connection starts as HTTP/1.1: the client sends `GET ... Upgrade: websocket`
//! ([`is_upgrade_request`]), the server answers `HTTP/1.1 101` ([`is_upgrade_response`]),
//! and from then on each direction is a sequence of frames. RFC 7118 has the client offer
//! the `sip` subprotocol ([`has_subprotocol`]) and carries one SIP message per WebSocket
//! message, in a text or binary frame.
//!
//! [`frame_http_or_ws`] cuts such a stream for [`crate::tcp`]: the handshake messages by
//! their empty line (they have no body), everything after them one frame at a time
//! ([`frame_ws`]). It needs no state to tell them apart because no valid frame starts
//! with `G` or `H` (see [`frame_http_or_ws`]).
//!
//! [`WsFrame`] is a zero-copy view of one frame; the payload a client sends is masked,
//! so reading it means [`WsFrame::unmask_into`] a buffer. A message may be split into
//! fragments (a text or binary frame without FIN, then continuation frames);
//! [`MessageAssembler`] puts them back together, within a bound.
//!
//! Not handled: the `permessage-deflate` extension (RFC 7692). Its compressed payloads
//! (RSV1 set) are framed like any other, but they are not SIP text until inflated.

use crate::tcp::Framing;
use crate::{need, DecodeError, Layer};
use memchr::memchr;

/// A frame payload longer than this is junk, not a frame still arriving: no SIP message is
/// that large (it matches [`crate::sip::MAX_BODY`]).
pub const MAX_FRAME_LEN: usize = 16 * 1024 * 1024;

/// An HTTP head longer than this (without its empty line) is junk, not a handshake still arriving.
pub const MAX_HANDSHAKE: usize = 64 * 1024;

/// The largest payload a control frame may carry (RFC 6455 section 5.5).
const MAX_CONTROL_PAYLOAD: usize = 125;

/// How much of a payload [`starts_with_sip_frame`] unmasks to look at its first line.
const SNIFF_LEN: usize = 512;

/// A frame's opcode (RFC 6455 section 5.2); the reserved values do not parse.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Opcode {
    /// 0: a later fragment of a fragmented message.
    Continuation,
    /// 1: UTF-8 text (what RFC 7118 recommends for SIP).
    Text,
    /// 2: binary data.
    Binary,
    /// 8: closing the connection.
    Close,
    /// 9: a keep-alive request.
    Ping,
    /// 10: a keep-alive answer.
    Pong,
}

impl Opcode {
    /// The opcode for the low four bits of a frame's first byte; `None` for reserved values.
    pub fn from_bits(bits: u8) -> Option<Opcode> {
        match bits {
            0 => Some(Opcode::Continuation),
            1 => Some(Opcode::Text),
            2 => Some(Opcode::Binary),
            8 => Some(Opcode::Close),
            9 => Some(Opcode::Ping),
            10 => Some(Opcode::Pong),
            _ => None,
        }
    }

    /// True for close, ping and pong: frames that stand alone between the fragments of a message.
    pub fn is_control(self) -> bool {
        matches!(self, Opcode::Close | Opcode::Ping | Opcode::Pong)
    }
}

/// A frame's header: everything but the payload bytes.
#[derive(Clone, Copy, Debug)]
struct Header {
    fin: bool,
    rsv: u8,
    opcode: Opcode,
    mask: Option<[u8; 4]>,
    /// Bytes from the start of the frame to its payload.
    len: usize,
    /// Declared payload length, at most [`MAX_FRAME_LEN`].
    payload_len: usize,
}

impl Header {
    /// Parses the header at the start of `b`; a truncated payload is not checked here.
    fn parse(b: &[u8]) -> Result<Header, DecodeError> {
        let err = |offset, field, reason| DecodeError::invalid(Layer::WebSocket, offset, field, reason);
        need(Layer::WebSocket, b, 0, 2)?;
        let (Some(&first), Some(&second)) = (b.first(), b.get(1)) else {
            return Err(DecodeError::truncated(Layer::WebSocket, 0, 2, b.len()));
        };
        let fin = first & 0x80 != 0;
        let opcode = Opcode::from_bits(first & 0x0f).ok_or(err(0, "opcode", "reserved opcode"))?;
        if opcode.is_control() && !fin {
            return Err(err(0, "FIN", "control frame is fragmented"));
        }
        let (payload_len, mut len) = match second & 0x7f {
            126 => (read_be(b, 2, 2)?, 4),
            127 => {
                let n = read_be(b, 2, 8)?;
                if n >> 63 != 0 {
                    return Err(err(2, "payload length", "most significant bit set"));
                }
                (n, 10)
            }
            n => (u64::from(n), 2),
        };
        let payload_len = usize::try_from(payload_len).ok().filter(|&n| n <= MAX_FRAME_LEN).ok_or(err(
            1,
            "payload length",
            "longer than the 16 MiB bound",
        ))?;
        if opcode.is_control() && payload_len > MAX_CONTROL_PAYLOAD {
            return Err(err(1, "payload length", "control frame payload over 125 bytes"));
        }
        let mask = if second & 0x80 != 0 {
            need(Layer::WebSocket, b, len, 4)?;
            let mut key = [0; 4];
            key.copy_from_slice(b.get(len..len + 4).unwrap_or(&[0; 4]));
            len += 4;
            Some(key)
        } else {
            None
        };
        Ok(Header { fin, rsv: (first >> 4) & 0x07, opcode, mask, len, payload_len })
    }
}

/// Reads the `n`-byte big-endian number at `at` (`n` at most 8).
fn read_be(b: &[u8], at: usize, n: usize) -> Result<u64, DecodeError> {
    need(Layer::WebSocket, b, at, n)?;
    let bytes = b.get(at..at + n).unwrap_or_default();
    Ok(bytes.iter().fold(0u64, |v, &d| (v << 8) | u64::from(d)))
}

/// One WebSocket frame, borrowing the buffer it was parsed from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct WsFrame<'a> {
    /// The FIN bit: this frame ends its message.
    pub fin: bool,
    /// The three RSV bits (RSV1 first), which only extensions may set.
    pub rsv: u8,
    /// What the frame carries.
    pub opcode: Opcode,
    /// The masking key, present on every frame a client sends.
    pub mask: Option<[u8; 4]>,
    /// The payload as sent: still masked when `mask` is set.
    pub payload: &'a [u8],
    /// The whole frame's length, header and payload: where the next frame starts.
    pub len: usize,
}

impl<'a> WsFrame<'a> {
    /// Parses the frame at the start of `b`; bytes after it are ignored.
    ///
    /// Errors, with offsets from the start of `b`: a header or payload running past the
    /// end is [`DecodeError::Truncated`]; a reserved opcode, a fragmented or over-long
    /// control frame, a 64-bit length with its top bit set, or a payload over
    /// [`MAX_FRAME_LEN`] is [`DecodeError::Invalid`].
    pub fn parse(b: &'a [u8]) -> Result<WsFrame<'a>, DecodeError> {
        let h = Header::parse(b)?;
        need(Layer::WebSocket, b, h.len, h.payload_len)?;
        let len = h.len + h.payload_len;
        let payload = b.get(h.len..len).unwrap_or_default();
        Ok(WsFrame { fin: h.fin, rsv: h.rsv, opcode: h.opcode, mask: h.mask, payload, len })
    }

    /// True when the payload is masked (a frame from the client).
    pub fn is_masked(&self) -> bool {
        self.mask.is_some()
    }

    /// Appends the payload, unmasked, to `out`.
    ///
    /// It appends rather than replaces so that the fragments of a message can be
    /// collected in one buffer; an unmasked payload is copied as is.
    pub fn unmask_into(&self, out: &mut Vec<u8>) {
        match self.mask {
            None => out.extend_from_slice(self.payload),
            Some(key) => out.extend(self.payload.iter().zip(key.iter().cycle()).map(|(b, k)| b ^ k)),
        }
    }
}

/// Frames the next WebSocket frame at the start of a TCP stream buffer.
///
/// A header that is not complete yet, or a frame whose payload is still arriving, needs
/// more. A header no valid frame has (a reserved opcode, a fragmented or over-long control
/// frame, a payload over [`MAX_FRAME_LEN`]) skips one byte, so that a stream picked up in
/// the middle of a frame finds the next one.
pub fn frame_ws(buf: &[u8]) -> Framing {
    match Header::parse(buf) {
        Ok(h) if buf.len().saturating_sub(h.len) >= h.payload_len => Framing::Message(h.len + h.payload_len),
        Ok(_) | Err(DecodeError::Truncated { .. }) => Framing::NeedMore,
        Err(_) => Framing::Skip(1),
    }
}

/// Frames an HTTP head (request or status line and headers, up to the empty line) at the
/// start of a TCP stream buffer.
///
/// The upgrade handshake has no body, so the empty line ends the message. A head over
/// [`MAX_HANDSHAKE`] bytes is skipped as junk.
pub fn frame_handshake(buf: &[u8]) -> Framing {
    match head_len(buf) {
        Some(n) => Framing::Message(n),
        None if buf.len() > MAX_HANDSHAKE => Framing::Skip(buf.len()),
        None => Framing::NeedMore,
    }
}

/// Frames a WebSocket connection from its first byte: the HTTP handshake messages with
/// [`frame_handshake`], the frames after them with [`frame_ws`].
///
/// A buffer starting with `G` (`GET`) or `H` (`HTTP/1.1`) is HTTP: read as a frame
/// header, `G` (0x47) has a reserved opcode and `H` (0x48) is a fragmented close frame,
/// neither of which is valid, so the choice needs no state.
pub fn frame_http_or_ws(buf: &[u8]) -> Framing {
    match buf.first() {
        None => Framing::NeedMore,
        Some(b'G' | b'H') => frame_handshake(buf),
        Some(_) => frame_ws(buf),
    }
}

/// The length of the HTTP head at the start of `buf`, through its empty line (CRLF or
/// bare LF line ends); `None` when the empty line is not there within [`MAX_HANDSHAKE`].
fn head_len(buf: &[u8]) -> Option<usize> {
    let buf = buf.get(..buf.len().min(MAX_HANDSHAKE))?;
    let mut pos = 0;
    while let Some(i) = memchr(b'\n', buf.get(pos..)?) {
        let line = buf.get(pos..pos + i)?;
        pos += i + 1;
        if line.is_empty() || line == b"\r" {
            return Some(pos);
        }
    }
    None
}

/// The lines of an HTTP head: the start line, then each header line, without line ends,
/// stopping at the empty line or at [`MAX_HANDSHAKE`].
fn head_lines(b: &[u8]) -> impl Iterator<Item = &[u8]> {
    let head = b.get(..b.len().min(MAX_HANDSHAKE)).unwrap_or_default();
    head.split(|&c| c == b'\n').map(|l| l.strip_suffix(b"\r").unwrap_or(l)).take_while(|l| !l.is_empty())
}

/// The values of header `name` (matched case-insensitively) in the HTTP head at the start of `b`.
fn header_values<'a>(b: &'a [u8], name: &'a str) -> impl Iterator<Item = &'a [u8]> + 'a {
    head_lines(b).skip(1).filter_map(move |line| {
        let colon = memchr(b':', line)?;
        let (n, v) = (line.get(..colon)?, line.get(colon + 1..)?);
        n.trim_ascii().eq_ignore_ascii_case(name.as_bytes()).then_some(v.trim_ascii())
    })
}

/// True when header `name` lists `token` (comma-separated, case-insensitive).
fn header_lists(b: &[u8], name: &str, token: &str) -> bool {
    header_values(b, name)
        .any(|v| v.split(|&c| c == b',').any(|t| t.trim_ascii().eq_ignore_ascii_case(token.as_bytes())))
}

/// True when `b` starts with an HTTP/1.1 `GET` request asking to upgrade to WebSocket
/// (an `Upgrade` header listing `websocket`, in any case).
pub fn is_upgrade_request(b: &[u8]) -> bool {
    let Some(line) = head_lines(b).next() else { return false };
    line.starts_with(b"GET ") && line.ends_with(b" HTTP/1.1") && header_lists(b, "Upgrade", "websocket")
}

/// True when `b` starts with an HTTP/1.1 `101 Switching Protocols` response upgrading to
/// WebSocket (an `Upgrade` header listing `websocket`, in any case).
pub fn is_upgrade_response(b: &[u8]) -> bool {
    let Some(line) = head_lines(b).next() else { return false };
    let switching = line.strip_prefix(b"HTTP/1.1 101").is_some_and(|rest| rest.is_empty() || rest.starts_with(b" "));
    switching && header_lists(b, "Upgrade", "websocket")
}

/// True when the HTTP head at the start of `b` names subprotocol `name` (case-insensitive)
/// in a `Sec-WebSocket-Protocol` header: what the client offers, or what the server chose.
pub fn has_subprotocol(b: &[u8], name: &str) -> bool {
    header_lists(b, "Sec-WebSocket-Protocol", name)
}

/// True when `b` starts with a text or binary frame whose payload starts like a SIP
/// message: how a SIP-over-WebSocket connection is recognised when the capture missed
/// its handshake. Only the frame's header and the first bytes of its payload need to be
/// there, and nothing is allocated.
pub fn starts_with_sip_frame(b: &[u8]) -> bool {
    let Ok(h) = Header::parse(b) else { return false };
    if !matches!(h.opcode, Opcode::Text | Opcode::Binary) || h.rsv != 0 {
        return false;
    }
    let Some(available) = b.get(h.len..) else { return false };
    let n = available.len().min(h.payload_len).min(SNIFF_LEN);
    let mut prefix = [0u8; SNIFF_LEN];
    for (i, (out, &byte)) in prefix.iter_mut().zip(available.iter().take(n)).enumerate() {
        *out = h.mask.map_or(byte, |k| byte ^ k[i % 4]);
    }
    crate::sip::looks_like_sip(prefix.get(..n).unwrap_or_default())
}

/// Puts fragmented messages back together, one direction of a connection at a time.
///
/// Feed it every frame of the direction in order; it returns each data message once its
/// last fragment arrives, unmasked, borrowed from a buffer it reuses. Control frames may
/// come between fragments (RFC 6455 section 5.4): they are not messages and leave the
/// message in progress alone.
#[derive(Clone, Debug)]
pub struct MessageAssembler {
    max_len: usize,
    buf: Vec<u8>,
    /// The opcode of the message being collected, while its last fragment has not come.
    pending: Option<Opcode>,
}

impl MessageAssembler {
    /// An assembler that gives up on messages longer than `max_len` bytes.
    pub fn new(max_len: usize) -> Self {
        MessageAssembler { max_len, buf: Vec::new(), pending: None }
    }

    /// Adds one frame; returns the message's opcode (text or binary) and unmasked bytes
    /// when the frame completes one, `Ok(None)` for a first or middle fragment and for
    /// control frames.
    ///
    /// A data frame that arrives while a message is pending starts over (the pending one
    /// broke the protocol or lost its last fragment). Errors (all
    /// [`DecodeError::Invalid`], offset 0 of the frame): a continuation frame with no
    /// message pending (a capture that starts mid-message), or a message that grows past
    /// the bound, which is dropped.
    pub fn push(&mut self, frame: &WsFrame<'_>) -> Result<Option<(Opcode, &[u8])>, DecodeError> {
        let opcode = match frame.opcode {
            Opcode::Close | Opcode::Ping | Opcode::Pong => return Ok(None),
            Opcode::Continuation => self.pending.ok_or(DecodeError::invalid(
                Layer::WebSocket,
                0,
                "opcode",
                "continuation frame without a first fragment",
            ))?,
            first => {
                self.buf.clear();
                first
            }
        };
        if self.buf.len().saturating_add(frame.payload.len()) > self.max_len {
            self.buf.clear();
            self.pending = None;
            return Err(DecodeError::invalid(Layer::WebSocket, 0, "payload length", "message longer than the bound"));
        }
        frame.unmask_into(&mut self.buf);
        if frame.fin {
            self.pending = None;
            Ok(Some((opcode, &self.buf)))
        } else {
            self.pending = Some(opcode);
            Ok(None)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: [u8; 4] = [0x37, 0xfa, 0x21, 0x3d];

    /// Builds a frame: first byte, the payload (masked with `mask` when given), and the
    /// length in its shortest encoding, or in the 64-bit one when `long` is set.
    fn frame(first: u8, mask: Option<[u8; 4]>, payload: &[u8], long: bool) -> Vec<u8> {
        let mut f = vec![first];
        let m = if mask.is_some() { 0x80 } else { 0 };
        match payload.len() {
            n if n < 126 && !long => f.push(m | n as u8),
            n if n <= 0xffff && !long => {
                f.push(m | 126);
                f.extend_from_slice(&(n as u16).to_be_bytes());
            }
            n => {
                f.push(m | 127);
                f.extend_from_slice(&(n as u64).to_be_bytes());
            }
        }
        match mask {
            Some(k) => {
                f.extend_from_slice(&k);
                f.extend(payload.iter().enumerate().map(|(i, b)| b ^ k[i % 4]));
            }
            None => f.extend_from_slice(payload),
        }
        f
    }

    /// What the tests compare for a parsed frame: fin, opcode, mask, unmasked payload, length.
    type Parsed = (bool, Opcode, Option<[u8; 4]>, Vec<u8>, usize);

    fn check(input: &[u8], expected: Result<Parsed, DecodeError>, framing: Framing) {
        let got = WsFrame::parse(input).map(|f| {
            let mut out = Vec::new();
            f.unmask_into(&mut out);
            (f.fin, f.opcode, f.mask, out, f.len)
        });
        assert_eq!(got, expected);
        assert_eq!(frame_ws(input), framing);
    }

    fn ok(fin: bool, opcode: Opcode, mask: Option<[u8; 4]>, payload: &[u8], len: usize) -> Result<Parsed, DecodeError> {
        Ok((fin, opcode, mask, payload.to_vec(), len))
    }

    const SIP: &[u8] = b"OPTIONS sip:a@b SIP/2.0\r\nl: 0\r\n\r\n";

    #[test]
    fn unmasked_text_frame() {
        let f = frame(0x81, None, SIP, false);
        check(&f, ok(true, Opcode::Text, None, SIP, 2 + SIP.len()), Framing::Message(2 + SIP.len()));
        assert!(!WsFrame::parse(&f).unwrap().is_masked());
    }

    #[test]
    fn masked_text_frame() {
        let f = frame(0x81, Some(KEY), SIP, false);
        check(&f, ok(true, Opcode::Text, Some(KEY), SIP, 6 + SIP.len()), Framing::Message(6 + SIP.len()));
        let parsed = WsFrame::parse(&f).unwrap();
        assert!(parsed.is_masked());
        assert_ne!(parsed.payload, SIP, "the view is zero-copy: still masked");
    }

    #[test]
    fn sixteen_bit_length() {
        let payload = [b'x'; 300];
        let f = frame(0x82, Some(KEY), &payload, false);
        assert_eq!(&f[1..4], &[0x80 | 126, 0x01, 0x2c]);
        check(&f, ok(true, Opcode::Binary, Some(KEY), &payload, 308), Framing::Message(308));
    }

    #[test]
    fn sixty_four_bit_length() {
        let f = frame(0x81, None, SIP, true);
        check(&f, ok(true, Opcode::Text, None, SIP, 10 + SIP.len()), Framing::Message(10 + SIP.len()));
        let payload = vec![b'y'; 70_000];
        let f = frame(0x02, Some(KEY), &payload, false);
        assert_eq!(f[1], 0x80 | 127, "over 65535 bytes needs the 64-bit length");
        check(&f, ok(false, Opcode::Binary, Some(KEY), &payload, 70_014), Framing::Message(70_014));
    }

    #[test]
    fn trailing_bytes_belong_to_the_next_frame() {
        let mut f = frame(0x81, None, b"abc", false);
        f.extend_from_slice(&frame(0x89, None, b"", false));
        check(&f, ok(true, Opcode::Text, None, b"abc", 5), Framing::Message(5));
    }

    #[test]
    fn truncated_header_or_payload_needs_more() {
        let t = |offset, needed, available| Err(DecodeError::truncated(Layer::WebSocket, offset, needed, available));
        check(b"", t(0, 2, 0), Framing::NeedMore);
        check(&[0x81], t(0, 2, 1), Framing::NeedMore);
        check(&[0x81, 126, 0x01], t(2, 2, 1), Framing::NeedMore);
        check(&[0x81, 127, 0, 0, 0, 0], t(2, 8, 4), Framing::NeedMore);
        check(&[0x81, 0x85, 1, 2], t(2, 4, 2), Framing::NeedMore);
        let f = frame(0x81, Some(KEY), SIP, false);
        check(&f[..f.len() - 1], t(6, SIP.len(), SIP.len() - 1), Framing::NeedMore);
    }

    #[test]
    fn too_long_or_invalid_headers_are_skipped() {
        let e = |offset, field, reason| Err(DecodeError::invalid(Layer::WebSocket, offset, field, reason));
        let mut too_long = vec![0x81, 127];
        too_long.extend_from_slice(&(MAX_FRAME_LEN as u64 + 1).to_be_bytes());
        check(&too_long, e(1, "payload length", "longer than the 16 MiB bound"), Framing::Skip(1));
        let mut top_bit = vec![0x81, 127];
        top_bit.extend_from_slice(&u64::MAX.to_be_bytes());
        check(&top_bit, e(2, "payload length", "most significant bit set"), Framing::Skip(1));
        check(&[0x83, 0], e(0, "opcode", "reserved opcode"), Framing::Skip(1));
        check(&[0x09, 0], e(0, "FIN", "control frame is fragmented"), Framing::Skip(1));
        check(&[0x89, 126, 0, 126], e(1, "payload length", "control frame payload over 125 bytes"), Framing::Skip(1));
        // Exactly at the bound is a frame still arriving.
        let mut at_bound = vec![0x82, 127];
        at_bound.extend_from_slice(&(MAX_FRAME_LEN as u64).to_be_bytes());
        assert_eq!(frame_ws(&at_bound), Framing::NeedMore);
    }

    #[test]
    fn control_frames() {
        check(&frame(0x89, Some(KEY), b"hi", false), ok(true, Opcode::Ping, Some(KEY), b"hi", 8), Framing::Message(8));
        check(&frame(0x8a, None, b"", false), ok(true, Opcode::Pong, None, b"", 2), Framing::Message(2));
        check(&[0x88, 2, 0x03, 0xe8], ok(true, Opcode::Close, None, &[0x03, 0xe8], 4), Framing::Message(4));
    }

    const REQUEST: &[u8] = b"GET / HTTP/1.1\r\nHost: sip.example.com\r\nUpgrade: WebSocket\r\nConnection: Upgrade\r\n\
        Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Protocol: chat, SIP\r\n\
        Sec-WebSocket-Version: 13\r\n\r\n";
    const RESPONSE: &[u8] = b"HTTP/1.1 101 Switching Protocols\r\nupgrade:websocket\r\nConnection: Upgrade\r\n\
        Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\nSec-WebSocket-Protocol: sip\r\n\r\n";

    #[test]
    fn upgrade_handshake() {
        assert!(is_upgrade_request(REQUEST));
        assert!(is_upgrade_response(RESPONSE));
        assert!(!is_upgrade_request(RESPONSE));
        assert!(!is_upgrade_response(REQUEST));
        assert!(has_subprotocol(REQUEST, "sip") && has_subprotocol(RESPONSE, "sip"));
        assert!(!has_subprotocol(REQUEST, "msrp"));
        // Bare LF line ends do too.
        assert!(is_upgrade_request(b"GET /ws HTTP/1.1\nUpgrade: websocket\n\n"));
        assert!(!is_upgrade_request(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n"), "no Upgrade header");
        assert!(!is_upgrade_request(b"GET / HTTP/1.1\r\nUpgrade: h2c\r\n\r\n"));
        assert!(!is_upgrade_request(b"POST / HTTP/1.1\r\nUpgrade: websocket\r\n\r\n"));
        // A header after the empty line belongs to the body, not the head.
        assert!(!is_upgrade_request(b"GET / HTTP/1.1\r\n\r\nUpgrade: websocket\r\n"));
        assert!(!is_upgrade_response(b"HTTP/1.1 200 OK\r\nUpgrade: websocket\r\n\r\n"));
        assert!(!is_upgrade_response(b"HTTP/1.1 1010\r\nUpgrade: websocket\r\n\r\n"));
        assert!(!is_upgrade_request(b"") && !is_upgrade_response(b"\r\n"));
    }

    #[test]
    fn handshake_then_frames_on_one_stream() {
        let mut stream = REQUEST.to_vec();
        let first = frame(0x81, Some(KEY), SIP, false);
        stream.extend_from_slice(&first);
        assert_eq!(frame_http_or_ws(&stream), Framing::Message(REQUEST.len()));
        assert_eq!(frame_http_or_ws(&stream[REQUEST.len()..]), Framing::Message(first.len()));
        assert_eq!(frame_http_or_ws(&REQUEST[..20]), Framing::NeedMore);
        assert_eq!(frame_http_or_ws(b""), Framing::NeedMore);
        assert_eq!(frame_http_or_ws(b"HTTP/1.1 101 OK\n\nrest"), Framing::Message(17));
        let mut huge = b"GET / HTTP/1.1\r\n".to_vec();
        huge.resize(MAX_HANDSHAKE + 1, b'a');
        assert_eq!(frame_http_or_ws(&huge), Framing::Skip(huge.len()));
    }

    #[test]
    fn sip_frame_sniffing() {
        assert!(starts_with_sip_frame(&frame(0x81, Some(KEY), SIP, false)));
        assert!(starts_with_sip_frame(&frame(0x82, None, SIP, false)));
        // Only the first line needs to be there.
        assert!(starts_with_sip_frame(&frame(0x81, Some(KEY), SIP, false)[..6 + 25]));
        assert!(!starts_with_sip_frame(&frame(0x81, Some(KEY), &SIP[..10], false)));
        assert!(!starts_with_sip_frame(&frame(0x81, Some(KEY), b"{\"json\": 1}", false)));
        assert!(!starts_with_sip_frame(&frame(0x89, None, b"OPTIONS sip:a SIP/2.0\r\n", false)));
        assert!(!starts_with_sip_frame(REQUEST));
        assert!(!starts_with_sip_frame(SIP));
    }

    /// Feeds frames to an assembler; returns what each push gave, messages as text.
    fn assemble(max_len: usize, frames: &[Vec<u8>]) -> Vec<Result<Option<(Opcode, String)>, DecodeError>> {
        let mut a = MessageAssembler::new(max_len);
        frames
            .iter()
            .map(|f| {
                let f = WsFrame::parse(f).unwrap();
                a.push(&f).map(|m| m.map(|(op, b)| (op, String::from_utf8_lossy(b).into_owned())))
            })
            .collect()
    }

    #[test]
    fn fragmented_messages_are_reassembled() {
        let (a, b) = SIP.split_at(10);
        let (b, c) = b.split_at(5);
        let frames = [
            frame(0x01, Some(KEY), a, false),
            frame(0x89, Some(KEY), b"ping", false),
            frame(0x00, Some([1, 2, 3, 4]), b, false),
            frame(0x80, None, c, false),
            frame(0x82, None, b"whole", false),
        ];
        let sip = String::from_utf8(SIP.to_vec()).unwrap();
        assert_eq!(
            assemble(1000, &frames),
            [Ok(None), Ok(None), Ok(None), Ok(Some((Opcode::Text, sip))), Ok(Some((Opcode::Binary, "whole".into())))]
        );
    }

    #[test]
    fn assembler_errors() {
        let e = |field, reason| Err(DecodeError::invalid(Layer::WebSocket, 0, field, reason));
        // A capture that starts with the last fragment.
        let frames = [frame(0x80, None, b"tail", false), frame(0x81, None, b"next", false)];
        assert_eq!(
            assemble(100, &frames),
            [e("opcode", "continuation frame without a first fragment"), Ok(Some((Opcode::Text, "next".into())))]
        );
        // A message over the bound is dropped, and so are its later fragments.
        let frames = [
            frame(0x01, None, b"12345", false),
            frame(0x00, None, b"6789", false),
            frame(0x80, None, b"0", false),
            frame(0x81, None, b"12345678", false),
        ];
        assert_eq!(
            assemble(8, &frames),
            [
                Ok(None),
                e("payload length", "message longer than the bound"),
                e("opcode", "continuation frame without a first fragment"),
                Ok(Some((Opcode::Text, "12345678".into()))),
            ]
        );
        // A new message while one is pending replaces it.
        let frames = [frame(0x01, None, b"lost", false), frame(0x81, None, b"new", false)];
        assert_eq!(assemble(100, &frames), [Ok(None), Ok(Some((Opcode::Text, "new".into())))]);
    }
}
