//! SIP messages (RFC 3261): a zero-copy view of the start line, headers and body, and TCP framing.
//!
//! [`SipMessage::parse`] checks the start line and finds where the header block and the
//! body are; it copies nothing and builds no map. Accessors walk the header block when
//! asked ([`SipMessage::header`], [`SipMessage::vias`], ...), so a caller pays only for
//! the few headers it needs. Header names match case-insensitively and in their compact
//! forms (`i` for `Call-ID`, `v` for `Via`, ...); folded continuation lines belong to
//! the header above them.
//!
//! The parser accepts what tshark 4.0 accepts, because message counts are compared with
//! `tshark -z sip,stat`:
//! - line ends may be CRLF, a bare LF or a bare CR;
//! - a status code is any three digits followed by a space (`099` and `700` included);
//! - a header line without a colon, or that is not UTF-8, is skipped, not fatal;
//! - a Content-Length larger than the bytes present, or not a number, leaves the body as
//!   what is there ([`SipMessage::check_content_length`] reports it);
//! - a header line cut off without a line end (a truncated datagram) is an error.
//!
//! [`frame_message`] splits a TCP byte stream into messages for [`crate::tcp`].

use crate::tcp::Framing;
use crate::{DecodeError, Layer};
use memchr::{memchr, memchr2, memmem};

/// A header block longer than this is junk, not a SIP message still arriving.
pub const MAX_HEADER_BLOCK: usize = 64 * 1024;

/// A Content-Length above this is junk on a stream (no SIP body is that large).
pub const MAX_BODY: usize = 16 * 1024 * 1024;

/// How deep multipart bodies are searched for SDP (a multipart inside a multipart).
const MAX_MULTIPART_DEPTH: u8 = 2;

/// The SIP version every start line carries.
const VERSION: &[u8] = b"SIP/2.0";

/// Compact header forms (RFC 3261 section 7.3.3 and the extensions registered with IANA).
const COMPACT_FORMS: &[(&str, &str)] = &[
    ("a", "Accept-Contact"),
    ("b", "Referred-By"),
    ("c", "Content-Type"),
    ("d", "Request-Disposition"),
    ("e", "Content-Encoding"),
    ("f", "From"),
    ("i", "Call-ID"),
    ("j", "Reject-Contact"),
    ("k", "Supported"),
    ("l", "Content-Length"),
    ("m", "Contact"),
    ("n", "Identity-Info"),
    ("o", "Event"),
    ("r", "Refer-To"),
    ("s", "Subject"),
    ("t", "To"),
    ("u", "Allow-Events"),
    ("v", "Via"),
    ("x", "Session-Expires"),
    ("y", "Identity"),
];

/// True when `b` starts like a SIP message: a request line (`METHOD uri SIP/2.0`) or a
/// status line (`SIP/2.0 NNN reason`), after any keep-alive line ends.
///
/// Only the first line is looked at, so this is cheap enough to run on every datagram.
pub fn looks_like_sip(b: &[u8]) -> bool {
    let lead = leading_line_ends(b);
    let Some(rest) = b.get(lead..) else { return false };
    // Most datagrams on a media port are binary: reject them on their first byte.
    if !rest.first().is_some_and(|&c| c.is_ascii_alphanumeric() || is_token(&[c])) {
        return false;
    }
    let end = memchr2(b'\r', b'\n', rest).unwrap_or(rest.len());
    rest.get(..end).is_some_and(|line| parse_start_line(line).is_ok())
}

/// Frames the next SIP message at the start of a TCP stream buffer.
///
/// Keep-alive line ends are skipped; so are bytes that do not start with a start line (up
/// to the next line that does). A message is complete once its header block (ended by an
/// empty line) and its Content-Length body are in the buffer; a missing or invalid
/// Content-Length means no body, as RFC 3261 requires it on streams. A header block over
/// [`MAX_HEADER_BLOCK`] bytes, or a Content-Length over [`MAX_BODY`], is junk: its start
/// line is skipped so the search resumes after it.
pub fn frame_message(buf: &[u8]) -> Framing {
    let lead = leading_line_ends(buf);
    if lead > 0 {
        return Framing::Skip(lead);
    }
    if buf.is_empty() {
        return Framing::NeedMore;
    }
    let Some(first) = find_line_end(buf, 0, true) else {
        // The start line itself is still arriving (a last CR may be half of a CRLF).
        let partial = buf.strip_suffix(b"\r").unwrap_or(buf);
        if buf.len() > MAX_HEADER_BLOCK || !could_begin_start_line(partial) {
            return Framing::Skip(buf.len());
        }
        return Framing::NeedMore;
    };
    let is_start = buf.get(..first.end).is_some_and(|line| parse_start_line(line).is_ok());
    if !is_start {
        return Framing::Skip(next_start_line(buf, first.next));
    }
    let mut pos = first.next;
    let (header_end, body_start) = loop {
        if pos > MAX_HEADER_BLOCK {
            return Framing::Skip(first.next);
        }
        match find_line_end(buf, pos, true) {
            None if buf.len() > MAX_HEADER_BLOCK => return Framing::Skip(first.next),
            None => return Framing::NeedMore,
            Some(line) if line.end == pos => break (pos, line.next),
            Some(line) => pos = line.next,
        }
    };
    let block = buf.get(first.next..header_end).unwrap_or_default();
    let body_len = content_length_of(block).unwrap_or(0);
    if body_len > MAX_BODY {
        return Framing::Skip(first.next);
    }
    let total = body_start + body_len;
    if buf.len() >= total {
        Framing::Message(total)
    } else {
        Framing::NeedMore
    }
}

/// The SDP in a message body: the whole body when Content-Type is `application/sdp`, or
/// the `application/sdp` part of a `multipart/*` body (SIP-I, SIP-T, ...).
pub fn sdp_body<'a>(m: &SipMessage<'a>) -> Option<&'a [u8]> {
    let content_type = m.header("Content-Type")?;
    find_sdp(content_type, m.body(), 0)
}

/// A parsed SIP request or response; every accessor returns slices of the input buffer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SipMessage<'a> {
    buf: &'a [u8],
    start: StartLine<'a>,
    /// The header lines after the start line, each with its line end, without the empty line.
    headers: &'a [u8],
    /// Offset of the first byte after the empty line (or of the end of the buffer).
    body_offset: usize,
    body: &'a [u8],
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum StartLine<'a> {
    Request { method: &'a str, uri: &'a [u8] },
    Response { status: u16, reason: &'a [u8] },
}

impl<'a> SipMessage<'a> {
    /// Parses one SIP message (a UDP or SCTP payload, or a PDU framed by [`frame_message`]).
    ///
    /// Leading keep-alive line ends are skipped. Errors: nothing but line ends
    /// ([`DecodeError::Invalid`] `start line`), a first line that is neither a request line
    /// nor a status line (`start line`, or `status code` when the code is not three digits
    /// and a space), and a header line cut off before its line end ([`DecodeError::Truncated`],
    /// needing that line plus CRLF).
    pub fn parse(b: &'a [u8]) -> Result<SipMessage<'a>, DecodeError> {
        let lead = leading_line_ends(b);
        if lead >= b.len() {
            return Err(DecodeError::invalid(Layer::Sip, lead, "start line", "no start line: empty or only line ends"));
        }
        let first = find_line_end(b, lead, false).unwrap_or(LineEnd { end: b.len(), next: b.len() });
        let line = b.get(lead..first.end).unwrap_or_default();
        let start =
            parse_start_line(line).map_err(|e| DecodeError::invalid(Layer::Sip, lead + e.offset, e.field, e.reason))?;
        let header_start = first.next;
        let mut pos = header_start;
        let (header_end, body_offset) = loop {
            if pos >= b.len() {
                // No empty line: the headers run to the end (tshark accepts this too).
                break (b.len(), b.len());
            }
            match find_line_end(b, pos, false) {
                None => {
                    let available = b.len() - pos;
                    return Err(DecodeError::truncated(Layer::Sip, pos, available + 2, available));
                }
                Some(line) if line.end == pos => break (pos, line.next),
                Some(line) => pos = line.next,
            }
        };
        let headers = b.get(header_start..header_end).unwrap_or_default();
        let rest = b.get(body_offset..).unwrap_or_default();
        let body = match content_length_of(headers) {
            Some(n) => rest.get(..n).unwrap_or(rest),
            None => rest,
        };
        Ok(SipMessage { buf: b, start, headers, body_offset, body })
    }

    /// The request method (`INVITE`, ...), or `None` for a response.
    pub fn method(&self) -> Option<&'a str> {
        match self.start {
            StartLine::Request { method, .. } => Some(method),
            StartLine::Response { .. } => None,
        }
    }

    /// The Request-URI, or `None` for a response (or a URI that is not UTF-8).
    pub fn request_uri(&self) -> Option<&'a str> {
        match self.start {
            StartLine::Request { uri, .. } => std::str::from_utf8(uri).ok(),
            StartLine::Response { .. } => None,
        }
    }

    /// The status code of a response, or `None` for a request.
    pub fn status(&self) -> Option<u16> {
        match self.start {
            StartLine::Response { status, .. } => Some(status),
            StartLine::Request { .. } => None,
        }
    }

    /// The reason phrase of a response (possibly empty), or `None` for a request (or a
    /// phrase that is not UTF-8).
    pub fn reason(&self) -> Option<&'a str> {
        match self.start {
            StartLine::Response { reason, .. } => std::str::from_utf8(reason).ok(),
            StartLine::Request { .. } => None,
        }
    }

    /// The value of the first header called `name` (case-insensitive; the compact and the
    /// long form of a name find each other), trimmed. Folded values keep their inner line
    /// ends and indentation.
    pub fn header(&self, name: &str) -> Option<&'a str> {
        self.headers_named(name).next()
    }

    /// Every header as (name, value) in order, skipping lines that are not UTF-8 or have no colon.
    pub fn headers(&self) -> impl Iterator<Item = (&'a str, &'a str)> {
        RawHeaders::new(self.headers).filter_map(|h| Some((utf8(h.name)?, utf8(h.value)?)))
    }

    /// The Call-ID, if present and not empty.
    pub fn call_id(&self) -> Option<&'a str> {
        self.header("Call-ID").filter(|v| !v.is_empty())
    }

    /// The From header as a name-addr.
    pub fn from(&self) -> Option<NameAddr<'a>> {
        self.header("From").and_then(NameAddr::parse)
    }

    /// The To header as a name-addr.
    pub fn to(&self) -> Option<NameAddr<'a>> {
        self.header("To").and_then(NameAddr::parse)
    }

    /// The CSeq header: sequence number and method.
    pub fn cseq(&self) -> Option<CSeq<'a>> {
        self.header("CSeq").and_then(CSeq::parse)
    }

    /// Every Via, in order: each Via header, and each comma-separated value within one.
    /// Values that do not parse are left out.
    pub fn vias(&self) -> impl Iterator<Item = Via<'a>> {
        let values = RawHeaders::new(self.headers).filter(|h| name_matches(h.name, "Via", Some("v")));
        values.filter_map(|h| utf8(h.value)).flat_map(ListItems::new).filter_map(Via::parse)
    }

    /// The topmost Via (the first value of the first Via header), if it parses.
    pub fn top_via(&self) -> Option<Via<'a>> {
        self.headers_named("Via").next().and_then(|v| ListItems::new(v).next()).and_then(Via::parse)
    }

    /// The Content-Length, when present and a decimal number.
    pub fn content_length(&self) -> Option<usize> {
        content_length_of(self.headers)
    }

    /// The body: the bytes after the empty line, cut to Content-Length when it says fewer.
    pub fn body(&self) -> &'a [u8] {
        self.body
    }

    /// Checks Content-Length against the bytes present: an error when it is not a number
    /// ([`DecodeError::Invalid`] at the value) or says more than there is
    /// ([`DecodeError::Truncated`] at the body). [`SipMessage::parse`] tolerates both,
    /// as tshark does; a caller that wants to flag them calls this.
    pub fn check_content_length(&self) -> Result<(), DecodeError> {
        let Some(raw) = RawHeaders::new(self.headers).find(|h| name_matches(h.name, "Content-Length", Some("l")))
        else {
            return Ok(());
        };
        let Some(declared) = parse_decimal(raw.value) else {
            let offset = offset_in(self.buf, raw.value);
            return Err(DecodeError::invalid(Layer::Sip, offset, "Content-Length", "not a decimal number"));
        };
        let available = self.buf.len().saturating_sub(self.body_offset);
        if declared > available {
            return Err(DecodeError::truncated(Layer::Sip, self.body_offset, declared, available));
        }
        Ok(())
    }

    /// Values of the headers called `name` (or its compact/long alias), UTF-8 ones only.
    fn headers_named<'n>(&self, name: &'n str) -> impl Iterator<Item = &'a str> + 'n
    where
        'a: 'n,
    {
        let alias = alias_of(name);
        RawHeaders::new(self.headers).filter(move |h| name_matches(h.name, name, alias)).filter_map(|h| utf8(h.value))
    }
}

/// A From/To (or Contact, Refer-To...) value: `"Display" <uri>;tag=...` or `uri;tag=...`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct NameAddr<'a> {
    /// The display name: the text between the quotes of a quoted one (escapes kept), or the
    /// trimmed words before `<`.
    pub display_name: Option<&'a str>,
    /// The URI, without angle brackets.
    pub uri: &'a str,
    /// The `tag` parameter (matched case-insensitively).
    pub tag: Option<&'a str>,
}

impl<'a> NameAddr<'a> {
    /// Parses a name-addr or addr-spec header value. Without angle brackets, parameters
    /// after `;` belong to the header (RFC 3261 section 20.10), so `tag` is found there.
    pub fn parse(value: &'a str) -> Option<NameAddr<'a>> {
        let v = trim(value);
        let (display_name, uri, params) = if let Some(quoted) = v.strip_prefix('"') {
            let close = closing_quote(quoted)?;
            let display = quoted.get(..close)?;
            let after = quoted.get(close + 1..)?.trim_start_matches(is_lws);
            let inner = after.strip_prefix('<')?;
            let gt = inner.find('>')?;
            (Some(display), inner.get(..gt)?, inner.get(gt + 1..)?)
        } else if let Some(lt) = v.find('<') {
            let display = trim(v.get(..lt)?);
            let inner = v.get(lt + 1..)?;
            let gt = inner.find('>')?;
            (Some(display).filter(|d| !d.is_empty()), inner.get(..gt)?, inner.get(gt + 1..)?)
        } else {
            let semi = v.find(';').unwrap_or(v.len());
            (None, v.get(..semi)?, v.get(semi..)?)
        };
        let uri = trim(uri);
        if uri.is_empty() {
            return None;
        }
        let tag = Params::new(params).find(|(name, _)| name.eq_ignore_ascii_case("tag")).and_then(|(_, value)| value);
        Some(NameAddr { display_name, uri, tag: tag.filter(|t| !t.is_empty()) })
    }
}

/// The CSeq header: `1 INVITE`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CSeq<'a> {
    /// The sequence number.
    pub seq: u32,
    /// The method the sequence number belongs to.
    pub method: &'a str,
}

impl<'a> CSeq<'a> {
    /// Parses a CSeq value: a decimal number below 2^32 and a method token.
    pub fn parse(value: &'a str) -> Option<CSeq<'a>> {
        let mut words = value.split(is_lws).filter(|w| !w.is_empty());
        let seq = parse_decimal(words.next()?.as_bytes())?;
        let method = words.next().filter(|m| is_token(m.as_bytes()))?;
        Some(CSeq { seq: u32::try_from(seq).ok()?, method })
    }
}

/// One Via value: `SIP/2.0/UDP host:port;branch=z9hG4bK...`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Via<'a> {
    /// The transport (`UDP`, `TCP`, `TLS`, `SCTP`, `WS`, ...), as written.
    pub transport: &'a str,
    /// The sent-by host and optional port (IPv6 hosts keep their brackets).
    pub sent_by: &'a str,
    /// The `branch` parameter (matched case-insensitively).
    pub branch: Option<&'a str>,
}

impl<'a> Via<'a> {
    /// Parses one Via value (one element of a comma-separated Via header).
    pub fn parse(value: &'a str) -> Option<Via<'a>> {
        let v = trim(value);
        let (protocol, rest) = v.split_once('/')?;
        let (version, rest) = rest.split_once('/')?;
        if trim(protocol).is_empty() || trim(version).is_empty() {
            return None;
        }
        let rest = rest.trim_start_matches(is_lws);
        let transport_end = rest.find(is_lws).unwrap_or(rest.len());
        let transport = rest.get(..transport_end)?;
        let rest = rest.get(transport_end..)?;
        let params_start = rest.find(';').unwrap_or(rest.len());
        let sent_by = trim(rest.get(..params_start)?);
        if transport.is_empty() || sent_by.is_empty() || sent_by.contains(is_lws) {
            return None;
        }
        let branch = Params::new(rest.get(params_start..)?)
            .find(|(name, _)| name.eq_ignore_ascii_case("branch"))
            .and_then(|(_, value)| value);
        Some(Via { transport, sent_by, branch })
    }
}

// ---------------------------------------------------------------------------------------
// Lines and the start line.

/// Where a line ends: `end` is the offset of its line end, `next` of the following line.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct LineEnd {
    end: usize,
    next: usize,
}

/// Finds the end of the line starting at `from`: CRLF, a bare LF or a bare CR. `None` when
/// there is no line end. On a stream (`streaming`) a CR as the last byte is not an end
/// yet, since its LF may be in the next segment.
fn find_line_end(buf: &[u8], from: usize, streaming: bool) -> Option<LineEnd> {
    let rest = buf.get(from..)?;
    let i = memchr2(b'\r', b'\n', rest)?;
    let end = from + i;
    if rest.get(i) == Some(&b'\n') {
        return Some(LineEnd { end, next: end + 1 });
    }
    match rest.get(i + 1) {
        Some(b'\n') => Some(LineEnd { end, next: end + 2 }),
        Some(_) => Some(LineEnd { end, next: end + 1 }),
        None if streaming => None,
        None => Some(LineEnd { end, next: end + 1 }),
    }
}

fn leading_line_ends(b: &[u8]) -> usize {
    b.iter().take_while(|&&c| c == b'\r' || c == b'\n').count()
}

/// Why a start line was rejected: offset within the line, field and reason.
#[derive(Clone, Copy, Debug)]
struct StartLineError {
    offset: usize,
    field: &'static str,
    reason: &'static str,
}

const NOT_A_START_LINE: StartLineError =
    StartLineError { offset: 0, field: "start line", reason: "not a SIP request line or status line" };

/// Parses `SIP/2.0 NNN reason` or `METHOD uri SIP/2.0` (single spaces, as tshark requires).
fn parse_start_line(line: &[u8]) -> Result<StartLine<'_>, StartLineError> {
    // A NUL in the first line means binary data that merely contains SIP-like text
    // (tshark's test too).
    if memchr(0, line).is_some() {
        return Err(NOT_A_START_LINE);
    }
    if let Some(after) = line.strip_prefix(b"SIP/2.0 ") {
        let bad_code =
            StartLineError { offset: 8, field: "status code", reason: "not three digits followed by a space" };
        let digits = after.get(..3).filter(|d| d.iter().all(u8::is_ascii_digit)).ok_or(bad_code)?;
        let reason = after.get(3..).and_then(|r| r.strip_prefix(b" ")).ok_or(bad_code)?;
        let status = digits.iter().fold(0u16, |n, d| n * 10 + u16::from(d - b'0'));
        return Ok(StartLine::Response { status, reason });
    }
    let sp = memchr(b' ', line).ok_or(NOT_A_START_LINE)?;
    // A method is a token of any length (RFC 3261 section 25.1): fuzzing suites send
    // thousands of characters, and such a request is still one to count.
    let method = line.get(..sp).filter(|m| is_token(m)).ok_or(NOT_A_START_LINE)?;
    let rest = line.get(sp + 1..).unwrap_or_default();
    let uri = rest.strip_suffix(VERSION).and_then(|r| r.strip_suffix(b" ")).ok_or(NOT_A_START_LINE)?;
    if uri.is_empty() || !uri.iter().all(|&c| is_uri_byte(c)) {
        return Err(NOT_A_START_LINE);
    }
    let method = std::str::from_utf8(method).map_err(|_| NOT_A_START_LINE)?;
    Ok(StartLine::Request { method, uri })
}

/// True when `partial` (a first line with no line end yet) can still become a start line.
fn could_begin_start_line(partial: &[u8]) -> bool {
    let status_prefix = b"SIP/2.0 ";
    let n = partial.len().min(status_prefix.len());
    if partial.get(..n) == status_prefix.get(..n) {
        let code = partial.get(8..partial.len().min(11)).unwrap_or_default();
        return code.iter().all(u8::is_ascii_digit) && partial.get(11).is_none_or(|&c| c == b' ');
    }
    let Some(sp) = memchr(b' ', partial) else {
        return is_token(partial);
    };
    let method = partial.get(..sp).unwrap_or_default();
    if !is_token(method) {
        return false;
    }
    let rest = partial.get(sp + 1..).unwrap_or_default();
    match memchr(b' ', rest) {
        None => rest.iter().all(|&c| is_uri_byte(c)),
        Some(sp2) => {
            let uri = rest.get(..sp2).unwrap_or_default();
            let version = rest.get(sp2 + 1..).unwrap_or_default();
            !uri.is_empty() && uri.iter().all(|&c| is_uri_byte(c)) && VERSION.starts_with(version)
        }
    }
}

/// Offset of the next complete line from `from` on that is a start line; if none, of the
/// last (incomplete) line, or the end of `buf`, so that the caller skips everything before.
fn next_start_line(buf: &[u8], from: usize) -> usize {
    let mut pos = from;
    while let Some(line) = find_line_end(buf, pos, true) {
        if buf.get(pos..line.end).is_some_and(|l| parse_start_line(l).is_ok()) {
            return pos;
        }
        pos = line.next;
    }
    pos.min(buf.len())
}

/// RFC 3261 token characters.
fn is_token(b: &[u8]) -> bool {
    !b.is_empty() && b.iter().all(|&c| c.is_ascii_alphanumeric() || b"-.!%*_+`'~".contains(&c))
}

/// Bytes a Request-URI may hold here: anything but spaces and control characters.
fn is_uri_byte(c: u8) -> bool {
    c > b' ' && c != 0x7f
}

// ---------------------------------------------------------------------------------------
// Headers.

/// One header line (with its continuation lines) as raw bytes, both sides trimmed.
#[derive(Clone, Copy, Debug)]
struct RawHeader<'a> {
    name: &'a [u8],
    value: &'a [u8],
}

/// Walks a header block: lines without a colon, with an empty name, or continuation
/// lines with no header above them are skipped.
struct RawHeaders<'a> {
    block: &'a [u8],
    pos: usize,
}

impl<'a> RawHeaders<'a> {
    fn new(block: &'a [u8]) -> Self {
        RawHeaders { block, pos: 0 }
    }
}

impl<'a> Iterator for RawHeaders<'a> {
    type Item = RawHeader<'a>;

    fn next(&mut self) -> Option<RawHeader<'a>> {
        let block = self.block;
        while self.pos < block.len() {
            let start = self.pos;
            let first = find_line_end(block, start, false).unwrap_or(LineEnd { end: block.len(), next: block.len() });
            let mut value_end = first.end;
            self.pos = first.next;
            while matches!(block.get(self.pos), Some(b' ' | b'\t')) {
                let more =
                    find_line_end(block, self.pos, false).unwrap_or(LineEnd { end: block.len(), next: block.len() });
                value_end = more.end;
                self.pos = more.next;
            }
            let line = block.get(start..first.end).unwrap_or_default();
            if matches!(line.first(), Some(b' ' | b'\t')) {
                continue;
            }
            let Some(colon) = memchr(b':', line) else { continue };
            let name = trim_bytes(line.get(..colon).unwrap_or_default());
            let value = trim_bytes(block.get(start + colon + 1..value_end).unwrap_or_default());
            if name.is_empty() {
                continue;
            }
            return Some(RawHeader { name, value });
        }
        None
    }
}

/// The long form of a compact name, or the compact form of a long name.
fn alias_of(name: &str) -> Option<&'static str> {
    COMPACT_FORMS.iter().find_map(|&(compact, long)| {
        if name.eq_ignore_ascii_case(compact) {
            Some(long)
        } else if name.eq_ignore_ascii_case(long) {
            Some(compact)
        } else {
            None
        }
    })
}

fn name_matches(candidate: &[u8], name: &str, alias: Option<&str>) -> bool {
    candidate.eq_ignore_ascii_case(name.as_bytes())
        || alias.is_some_and(|a| candidate.eq_ignore_ascii_case(a.as_bytes()))
}

/// Content-Length (or `l`) of a header block, when present and a number.
fn content_length_of(block: &[u8]) -> Option<usize> {
    let raw = RawHeaders::new(block).find(|h| name_matches(h.name, "Content-Length", Some("l")))?;
    parse_decimal(raw.value)
}

/// A non-empty run of ASCII digits, without overflow.
fn parse_decimal(b: &[u8]) -> Option<usize> {
    if b.is_empty() || !b.iter().all(u8::is_ascii_digit) {
        return None;
    }
    b.iter().try_fold(0usize, |n, d| n.checked_mul(10)?.checked_add(usize::from(d - b'0')))
}

fn utf8(b: &[u8]) -> Option<&str> {
    std::str::from_utf8(b).ok()
}

/// Linear white space, including the line ends of folded values.
fn is_lws(c: char) -> bool {
    matches!(c, ' ' | '\t' | '\r' | '\n')
}

fn trim(s: &str) -> &str {
    s.trim_matches(is_lws)
}

fn trim_bytes(b: &[u8]) -> &[u8] {
    let lws = |c: &u8| matches!(c, b' ' | b'\t' | b'\r' | b'\n');
    let start = b.iter().position(|c| !lws(c)).unwrap_or(b.len());
    let end = b.iter().rposition(|c| !lws(c)).map_or(start, |i| i + 1);
    b.get(start..end).unwrap_or_default()
}

/// Offset of `inner` within `outer` (a sub-slice of it), for error messages.
fn offset_in(outer: &[u8], inner: &[u8]) -> usize {
    (inner.as_ptr() as usize).saturating_sub(outer.as_ptr() as usize)
}

/// Index of the quote closing a quoted string whose opening quote was just before `s`.
fn closing_quote(s: &str) -> Option<usize> {
    let mut escaped = false;
    for (i, c) in s.char_indices() {
        match c {
            _ if escaped => escaped = false,
            '\\' => escaped = true,
            '"' => return Some(i),
            _ => {}
        }
    }
    None
}

/// The elements of a comma-separated header value; commas inside quoted strings or angle
/// brackets do not split.
struct ListItems<'a> {
    rest: Option<&'a str>,
}

impl<'a> ListItems<'a> {
    fn new(value: &'a str) -> Self {
        ListItems { rest: Some(value) }
    }
}

impl<'a> Iterator for ListItems<'a> {
    type Item = &'a str;

    fn next(&mut self) -> Option<&'a str> {
        loop {
            let rest = self.rest?;
            let (item, tail) = split_outside_quotes(rest, b',');
            self.rest = tail;
            let item = trim(item);
            if !item.is_empty() {
                return Some(item);
            }
        }
    }
}

/// Splits at the first `sep` outside quoted strings and angle brackets.
fn split_outside_quotes(s: &str, sep: u8) -> (&str, Option<&str>) {
    let (mut quoted, mut escaped, mut angle) = (false, false, 0usize);
    for (i, &c) in s.as_bytes().iter().enumerate() {
        if quoted {
            match c {
                _ if escaped => escaped = false,
                b'\\' => escaped = true,
                b'"' => quoted = false,
                _ => {}
            }
            continue;
        }
        match c {
            b'"' => quoted = true,
            b'<' => angle += 1,
            b'>' => angle = angle.saturating_sub(1),
            _ if c == sep && angle == 0 => return (s.get(..i).unwrap_or(s), s.get(i + 1..)),
            _ => {}
        }
    }
    (s, None)
}

/// `;name=value` parameters after a URI or Via: (name, value) with both trimmed.
struct Params<'a> {
    rest: Option<&'a str>,
}

impl<'a> Params<'a> {
    fn new(s: &'a str) -> Self {
        let s = s.trim_start_matches(is_lws);
        Params { rest: s.strip_prefix(';') }
    }
}

impl<'a> Iterator for Params<'a> {
    type Item = (&'a str, Option<&'a str>);

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            let rest = self.rest?;
            let (param, tail) = split_outside_quotes(rest, b';');
            self.rest = tail;
            let (name, value) = match param.split_once('=') {
                Some((n, v)) => (trim(n), Some(trim(v))),
                None => (trim(param), None),
            };
            if !name.is_empty() {
                return Some((name, value));
            }
        }
    }
}

// ---------------------------------------------------------------------------------------
// Values that tie the legs of a call together.

/// An RFC 7989 `Session-ID` value: the UUID of the sender and, when it knows it, the
/// peer's (`remote` parameter). The all-zero "null" UUID, which a sender writes before it
/// knows the other side's, is `None`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SessionIdHeader<'a> {
    /// The sender's UUID: 32 hex digits as written (compare without case).
    pub local: Option<&'a str>,
    /// The `remote` parameter's UUID.
    pub remote: Option<&'a str>,
}

impl<'a> SessionIdHeader<'a> {
    /// Parses `sess-uuid *(SEMI generic-param)`; `None` when the value is not a UUID of 32
    /// hex digits (RFC 7989 section 5, as in the earlier Cisco and Avaya forms).
    pub fn parse(value: &'a str) -> Option<SessionIdHeader<'a>> {
        let value = trim(value);
        let semi = value.find(';').unwrap_or(value.len());
        let local = session_uuid(trim(value.get(..semi)?))?;
        let remote = Params::new(value.get(semi..)?)
            .find(|(name, _)| name.eq_ignore_ascii_case("remote"))
            .and_then(|(_, v)| v)
            .and_then(session_uuid)
            .flatten();
        Some(SessionIdHeader { local, remote })
    }
}

/// `Some(None)` for the null UUID, `Some(Some(uuid))` for another, `None` for what is not one.
fn session_uuid(s: &str) -> Option<Option<&str>> {
    if s.len() != 32 || !s.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    Some(s.bytes().any(|b| b != b'0').then_some(s))
}

/// The `icid-value` of a `P-Charging-Vector` value (RFC 7315 section 5.6), unquoted.
pub fn icid_value(pcv: &str) -> Option<&str> {
    let mut params = Params { rest: Some(pcv) };
    let (_, value) = params.find(|(name, _)| name.eq_ignore_ascii_case("icid-value"))?;
    let value = value?;
    let value = value.strip_prefix('"').and_then(|v| v.strip_suffix('"')).unwrap_or(value);
    (!value.is_empty()).then_some(value)
}

/// The user part of a `sip:`, `sips:` or `tel:` URI (without its parameters), or `None`
/// for a URI without one.
pub fn uri_user(uri: &str) -> Option<&str> {
    let (scheme, rest) = uri.split_once(':')?;
    let user = if scheme.eq_ignore_ascii_case("tel") {
        rest.split([';', '?']).next()?
    } else if scheme.eq_ignore_ascii_case("sip") || scheme.eq_ignore_ascii_case("sips") {
        let (userinfo, _) = rest.split_once('@')?;
        userinfo.split([';', ':']).next()?
    } else {
        return None;
    };
    (!user.is_empty()).then_some(user)
}

// ---------------------------------------------------------------------------------------
// Bodies.

/// Splits a Content-Type value into the media type and what follows it (the parameters).
fn media_type(content_type: &str) -> (&str, &str) {
    let semi = content_type.find(';').unwrap_or(content_type.len());
    (trim(content_type.get(..semi).unwrap_or_default()), content_type.get(semi..).unwrap_or_default())
}

fn find_sdp<'a>(content_type: &str, body: &'a [u8], depth: u8) -> Option<&'a [u8]> {
    let (media, params) = media_type(content_type);
    if media.eq_ignore_ascii_case("application/sdp") {
        return Some(body).filter(|b| !b.is_empty());
    }
    let is_multipart = media.get(..10).is_some_and(|p| p.eq_ignore_ascii_case("multipart/"));
    if !is_multipart || depth >= MAX_MULTIPART_DEPTH {
        return None;
    }
    let boundary = Params::new(params).find(|(n, _)| n.eq_ignore_ascii_case("boundary")).and_then(|(_, v)| v)?;
    let boundary = boundary.strip_prefix('"').and_then(|b| b.strip_suffix('"')).unwrap_or(boundary);
    if boundary.is_empty() {
        return None;
    }
    MultipartParts::new(body, boundary.as_bytes()).find_map(|part| {
        let (headers, content) = split_part(part);
        let part_type = RawHeaders::new(headers)
            .find(|h| h.name.eq_ignore_ascii_case(b"Content-Type"))
            .and_then(|h| utf8(h.value))
            .unwrap_or("text/plain");
        find_sdp(part_type, content, depth + 1)
    })
}

/// A MIME part's header block and content.
fn split_part(part: &[u8]) -> (&[u8], &[u8]) {
    let mut pos = 0;
    while let Some(line) = find_line_end(part, pos, false) {
        if line.end == pos {
            return (part.get(..pos).unwrap_or_default(), part.get(line.next..).unwrap_or_default());
        }
        pos = line.next;
    }
    // No empty line: all headers, no content.
    (part, &[])
}

/// The parts of a multipart body (RFC 2046): the bytes between delimiter lines
/// `--boundary`, without the line end before each delimiter.
struct MultipartParts<'a, 'b> {
    body: &'a [u8],
    boundary: &'b [u8],
    /// Where the current part starts (after a delimiter line); `None` once closed.
    part_start: Option<usize>,
}

impl<'a, 'b> MultipartParts<'a, 'b> {
    fn new(body: &'a [u8], boundary: &'b [u8]) -> Self {
        let mut parts = MultipartParts { body, boundary, part_start: None };
        parts.part_start = parts.next_delimiter(0).and_then(|(_, after, close)| (!close).then_some(after));
        parts
    }

    /// The next delimiter line at or after `from`: (its start, where the following part
    /// starts, whether it is the closing delimiter).
    fn next_delimiter(&self, from: usize) -> Option<(usize, usize, bool)> {
        let hay = self.body.get(from..)?;
        for i in memmem::find_iter(hay, self.boundary) {
            let at = from + i;
            let Some(dash_start) = at.checked_sub(2) else { continue };
            if self.body.get(dash_start..at) != Some(b"--".as_slice()) {
                continue;
            }
            if dash_start > 0 && self.body.get(dash_start - 1) != Some(&b'\n') {
                continue;
            }
            let after = at + self.boundary.len();
            let close = self.body.get(after..after + 2) == Some(b"--".as_slice());
            let tail = if close { after + 2 } else { after };
            match self.body.get(tail) {
                None | Some(b'\r' | b'\n' | b' ' | b'\t') => {}
                Some(_) => continue,
            }
            let next = find_line_end(self.body, tail, false).map_or(self.body.len(), |l| l.next);
            return Some((dash_start, next, close));
        }
        None
    }
}

impl<'a> Iterator for MultipartParts<'a, '_> {
    type Item = &'a [u8];

    fn next(&mut self) -> Option<&'a [u8]> {
        let start = self.part_start?;
        let end = match self.next_delimiter(start) {
            Some((delimiter, after, close)) => {
                self.part_start = (!close).then_some(after);
                // The line end before a delimiter belongs to the delimiter.
                let mut end = delimiter;
                if end > start && self.body.get(end - 1) == Some(&b'\n') {
                    end -= 1;
                    if end > start && self.body.get(end - 1) == Some(&b'\r') {
                        end -= 1;
                    }
                }
                end
            }
            None => {
                self.part_start = None;
                self.body.len()
            }
        };
        self.body.get(start..end.max(start))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What a test expects of a parsed message.
    #[derive(Debug, PartialEq, Eq)]
    struct Summary<'a> {
        method: Option<&'a str>,
        uri: Option<&'a str>,
        status: Option<u16>,
        reason: Option<&'a str>,
        call_id: Option<&'a str>,
        body: &'a [u8],
    }

    fn summary<'a>(m: &SipMessage<'a>) -> Summary<'a> {
        Summary {
            method: m.method(),
            uri: m.request_uri(),
            status: m.status(),
            reason: m.reason(),
            call_id: m.call_id(),
            body: m.body(),
        }
    }

    fn check(input: &[u8], expected: Result<Summary<'_>, DecodeError>) {
        let got = SipMessage::parse(input).map(|m| summary(&m));
        assert_eq!(got, expected, "input {:?}", String::from_utf8_lossy(input));
    }

    fn request<'a>(method: &'a str, uri: &'a str, call_id: Option<&'a str>, body: &'a [u8]) -> Summary<'a> {
        Summary { method: Some(method), uri: Some(uri), status: None, reason: None, call_id, body }
    }

    fn response<'a>(status: u16, reason: &'a str, call_id: Option<&'a str>, body: &'a [u8]) -> Summary<'a> {
        Summary { method: None, uri: None, status: Some(status), reason: Some(reason), call_id, body }
    }

    fn msg(b: &[u8]) -> SipMessage<'_> {
        SipMessage::parse(b).expect("parses")
    }

    const INVITE: &[u8] = b"INVITE sip:bob@biloxi.example.com SIP/2.0\r\n\
Via: SIP/2.0/UDP pc33.atlanta.example.com;branch=z9hG4bK776asdhds\r\n\
Max-Forwards: 70\r\n\
To: Bob <sip:bob@biloxi.example.com>\r\n\
From: Alice <sip:alice@atlanta.example.com>;tag=1928301774\r\n\
Call-ID: a84b4c76e66710@pc33.atlanta.example.com\r\n\
CSeq: 314159 INVITE\r\n\
Contact: <sip:alice@pc33.atlanta.example.com>\r\n\
Content-Type: application/sdp\r\n\
Content-Length: 4\r\n\
\r\n\
v=0\n";

    #[test]
    fn requests_of_every_kind() {
        check(
            INVITE,
            Ok(request(
                "INVITE",
                "sip:bob@biloxi.example.com",
                Some("a84b4c76e66710@pc33.atlanta.example.com"),
                b"v=0\n",
            )),
        );
        for method in [
            "ACK",
            "BYE",
            "CANCEL",
            "OPTIONS",
            "REGISTER",
            "PRACK",
            "SUBSCRIBE",
            "NOTIFY",
            "PUBLISH",
            "INFO",
            "REFER",
            "MESSAGE",
            "UPDATE",
        ] {
            let text = format!("{method} sip:x@y SIP/2.0\r\nCall-ID: c1\r\nContent-Length: 0\r\n\r\n");
            check(text.as_bytes(), Ok(request(method, "sip:x@y", Some("c1"), b"")));
        }
        // Unknown and lower-case methods are tokens too (tshark counts them).
        check(b"FOO sip:a SIP/2.0\r\n\r\n", Ok(request("FOO", "sip:a", None, b"")));
        check(b"invite tel:+123 SIP/2.0\r\ni: x\r\n\r\n", Ok(request("invite", "tel:+123", Some("x"), b"")));
    }

    #[test]
    fn long_method_tokens_are_requests() {
        // RFC 3261 sets no length; fuzzing suites send 33 to 4,000 characters.
        for len in [32, 33, 4000] {
            let method = "X".repeat(len);
            let text = format!("{method} sip:a SIP/2.0\r\ni: long\r\n\r\n");
            check(text.as_bytes(), Ok(request(&method, "sip:a", Some("long"), b"")));
            assert!(looks_like_sip(text.as_bytes()));
            assert_eq!(frame_message(text.as_bytes()), Framing::Message(text.len()));
            assert_eq!(frame_message(&text.as_bytes()[..len]), Framing::NeedMore);
        }
    }

    #[test]
    fn responses_of_every_kind() {
        check(b"SIP/2.0 100 Trying\r\nCall-ID: a\r\n\r\n", Ok(response(100, "Trying", Some("a"), b"")));
        check(b"SIP/2.0 180 Ringing\r\n\r\n", Ok(response(180, "Ringing", None, b"")));
        check(b"SIP/2.0 200 OK\r\nl: 3\r\n\r\nabcdef", Ok(response(200, "OK", None, b"abc")));
        check(b"SIP/2.0 486 Busy Here\r\n\r\n", Ok(response(486, "Busy Here", None, b"")));
        check(b"SIP/2.0 503 \r\n\r\n", Ok(response(503, "", None, b"")));
        // Out-of-range codes are three digits all the same, as tshark sees them.
        check(b"SIP/2.0 099 Odd\r\n\r\n", Ok(response(99, "Odd", None, b"")));
        check(b"SIP/2.0 700 Odd\r\n\r\n", Ok(response(700, "Odd", None, b"")));
    }

    #[test]
    fn start_line_only_and_missing_empty_line() {
        check(b"INVITE sip:a SIP/2.0", Ok(request("INVITE", "sip:a", None, b"")));
        check(b"SIP/2.0 200 OK", Ok(response(200, "OK", None, b"")));
        check(b"INVITE sip:a SIP/2.0\r\nCall-ID: x\r\n", Ok(request("INVITE", "sip:a", Some("x"), b"")));
    }

    #[test]
    fn line_ends_lf_only_and_bare_cr() {
        check(b"INVITE sip:a SIP/2.0\ni: x\nl: 2\n\nab", Ok(request("INVITE", "sip:a", Some("x"), b"ab")));
        check(b"SIP/2.0 200 OK\rCall-ID: x\r\rbody", Ok(response(200, "OK", Some("x"), b"body")));
    }

    #[test]
    fn leading_keep_alives_are_skipped() {
        check(b"\r\n\r\nOPTIONS sip:a SIP/2.0\r\n\r\n", Ok(request("OPTIONS", "sip:a", None, b"")));
        assert!(looks_like_sip(b"\r\nSIP/2.0 200 OK\r\n"));
    }

    #[test]
    fn bad_inputs() {
        let start = |offset| {
            Err(DecodeError::invalid(Layer::Sip, offset, "start line", "not a SIP request line or status line"))
        };
        let empty = |offset| {
            Err(DecodeError::invalid(Layer::Sip, offset, "start line", "no start line: empty or only line ends"))
        };
        let code = |offset| {
            Err(DecodeError::invalid(Layer::Sip, offset, "status code", "not three digits followed by a space"))
        };
        check(b"", empty(0));
        check(b"\r\n\r\n", empty(4));
        check(b"\n", empty(1));
        check(b"hello\0", start(0));
        check(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n", start(0));
        check(b"INVITE sip:a sip/2.0\r\n\r\n", start(0));
        check(b"INVITE  sip:a SIP/2.0\r\n\r\n", start(0));
        check(b"INVITE sip:a SIP/2.0 \r\n\r\n", start(0));
        check(b"INVITE SIP/2.0\r\n\r\n", start(0));
        check(b"\r\nINV\xffITE sip:a SIP/2.0\r\n\r\n", start(2));
        check(b"SIP/2.0 20 OK\r\n\r\n", code(8));
        check(b"SIP/2.0 2000 OK\r\n\r\n", code(8));
        check(b"SIP/2.0 200\r\n\r\n", code(8));
        check(b"SIP/2.0 2x0 OK\r\n\r\n", code(8));
        check(b"SIP/2.0 401 Unauthori%s\0\r\nCall-ID: x\r\n\r\n", start(0));
        check(b"\r\nSIP/2.0 OK\r\n\r\n", code(10));
        // A header line cut off before its line end: the datagram was truncated.
        check(b"INVITE sip:a SIP/2.0\r\nCall-ID: x\r\nCSeq: 1", Err(DecodeError::truncated(Layer::Sip, 34, 9, 7)));
        check(b"INVITE sip:a SIP/2.0\r\nContent-Lengt", Err(DecodeError::truncated(Layer::Sip, 22, 15, 13)));
    }

    #[test]
    fn header_without_colon_is_skipped() {
        let m = msg(b"INVITE sip:a SIP/2.0\r\nCall-ID: x\r\nBogus\r\n: no name\r\nCSeq: 1 INVITE\r\n\r\n");
        assert_eq!(m.headers().collect::<Vec<_>>(), [("Call-ID", "x"), ("CSeq", "1 INVITE")]);
        assert_eq!(m.cseq(), Some(CSeq { seq: 1, method: "INVITE" }));
    }

    #[test]
    fn non_utf8_values_are_skipped() {
        let m = msg(b"INVITE sip:a\xff SIP/2.0\r\nSubject: caf\xe9\r\nSubject: ok\r\nCall-ID: x\r\n\r\n");
        assert_eq!(m.method(), Some("INVITE"));
        assert_eq!(m.request_uri(), None);
        assert_eq!(m.header("Subject"), Some("ok"));
        assert_eq!(m.headers().count(), 2);
        let r = msg(b"SIP/2.0 200 O\xffK\r\n\r\n");
        assert_eq!((r.status(), r.reason()), (Some(200), None));
    }

    #[test]
    fn content_length_bounds_the_body() {
        // Larger than what is there: the body is what is there (tshark counts the message).
        let m = msg(b"INVITE sip:a SIP/2.0\r\nContent-Length: 10\r\n\r\nabc");
        assert_eq!((m.content_length(), m.body()), (Some(10), b"abc".as_slice()));
        assert_eq!(m.check_content_length(), Err(DecodeError::truncated(Layer::Sip, 44, 10, 3)));
        // Not a number: no length, the whole rest is the body.
        let m = msg(b"INVITE sip:a SIP/2.0\r\nContent-Length: bad\r\n\r\nabc");
        assert_eq!((m.content_length(), m.body()), (None, b"abc".as_slice()));
        assert_eq!(
            m.check_content_length(),
            Err(DecodeError::invalid(Layer::Sip, 38, "Content-Length", "not a decimal number"))
        );
        // Smaller: a second message in the datagram is not part of the body.
        let m = msg(b"INVITE sip:a SIP/2.0\r\nl: 0\r\n\r\nSIP/2.0 200 OK\r\n\r\n");
        assert_eq!((m.content_length(), m.body()), (Some(0), b"".as_slice()));
        assert_eq!(m.check_content_length(), Ok(()));
        assert_eq!(msg(b"SIP/2.0 200 OK\r\n\r\n").check_content_length(), Ok(()));
        assert_eq!(msg(b"SIP/2.0 200 OK\r\nl: 99999999999999999999999\r\n\r\n").content_length(), None);
    }

    #[test]
    fn header_lookup_is_case_insensitive_and_knows_compact_forms() {
        let m = msg(b"MESSAGE sip:a SIP/2.0\r\n\
i: id1\r\nf: <sip:a@b>;tag=1\r\nt: sip:c@d\r\nv: SIP/2.0/TCP h:5060;branch=z9\r\nl: 2\r\nc: text/plain\r\n\
m: <sip:a@h>\r\nk: timer\r\ns: hi\r\ne: gzip\r\no: presence\r\nu: talk\r\nr: <sip:x>\r\nb: <sip:y>\r\n\
x: 90\r\na: *;audio\r\nj: *;video\r\nd: proxy\r\ny: abc\r\nn: <https://x>\r\n\r\nok");
        let pairs = [
            ("Call-ID", "id1"),
            ("From", "<sip:a@b>;tag=1"),
            ("To", "sip:c@d"),
            ("Via", "SIP/2.0/TCP h:5060;branch=z9"),
            ("Content-Length", "2"),
            ("Content-Type", "text/plain"),
            ("Contact", "<sip:a@h>"),
            ("Supported", "timer"),
            ("Subject", "hi"),
            ("Content-Encoding", "gzip"),
            ("Event", "presence"),
            ("Allow-Events", "talk"),
            ("Refer-To", "<sip:x>"),
            ("Referred-By", "<sip:y>"),
            ("Session-Expires", "90"),
            ("Accept-Contact", "*;audio"),
            ("Reject-Contact", "*;video"),
            ("Request-Disposition", "proxy"),
            ("Identity", "abc"),
            ("Identity-Info", "<https://x>"),
        ];
        for (name, value) in pairs {
            assert_eq!(m.header(name), Some(value), "{name}");
            assert_eq!(m.header(&name.to_ascii_uppercase()), Some(value), "{name}");
            assert_eq!(m.header(alias_of(name).unwrap()), Some(value), "{name}");
        }
        assert_eq!(m.body(), b"ok");
        let long = msg(b"SIP/2.0 200 OK\r\ncall-id: x\r\nCONTENT-LENGTH : 0\r\n\r\n");
        assert_eq!((long.header("i"), long.header("L")), (Some("x"), Some("0")));
        assert_eq!(long.header("Max-Forwards"), None);
    }

    #[test]
    fn folded_headers_continue_the_previous_value() {
        let m = msg(b"INVITE sip:a SIP/2.0\r\nSubject: I know you're there,\r\n pick up the phone\r\n\tand talk to me!\r\nCall-ID:\r\n  abc\r\n\r\n");
        assert_eq!(m.header("Subject"), Some("I know you're there,\r\n pick up the phone\r\n\tand talk to me!"));
        assert_eq!(m.call_id(), Some("abc"));
        // A continuation line right after the start line has no header to join: skipped.
        let m = msg(b"INVITE sip:a SIP/2.0\r\n stray\r\nCall-ID: x\r\n\r\n");
        assert_eq!(m.headers().collect::<Vec<_>>(), [("Call-ID", "x")]);
    }

    fn vias(b: &[u8]) -> Vec<Via<'_>> {
        msg(b).vias().collect()
    }

    fn via<'a>(transport: &'a str, sent_by: &'a str, branch: Option<&'a str>) -> Via<'a> {
        Via { transport, sent_by, branch }
    }

    #[test]
    fn multiple_vias_separate_and_comma_joined() {
        let b = b"SIP/2.0 200 OK\r\n\
Via: SIP/2.0/UDP proxy2:5060;branch=z9hG4bK1;received=1.2.3.4, SIP/2.0/TCP [2001:db8::1]:5061;BRANCH=z9hG4bK2\r\n\
v: SIP / 2.0 / TLS host3 ;rport;branch=z9hG4bK3\r\n\
Via: SIP/2.0/UDP host4;comment=\"a, b\";branch=z9hG4bK4,SIP/2.0/WS h5\r\n\r\n";
        assert_eq!(
            vias(b),
            [
                via("UDP", "proxy2:5060", Some("z9hG4bK1")),
                via("TCP", "[2001:db8::1]:5061", Some("z9hG4bK2")),
                via("TLS", "host3", Some("z9hG4bK3")),
                via("UDP", "host4", Some("z9hG4bK4")),
                via("WS", "h5", None),
            ]
        );
        assert_eq!(msg(b).top_via(), Some(via("UDP", "proxy2:5060", Some("z9hG4bK1"))));
    }

    #[test]
    fn malformed_vias_are_left_out() {
        let b = b"INVITE sip:a SIP/2.0\r\nVia: garbage\r\nVia: SIP/2.0/UDP\r\nVia: SIP/2.0/UDP h;branch=b\r\n\r\n";
        assert_eq!(vias(b), [via("UDP", "h", Some("b"))]);
        assert_eq!(msg(b).top_via(), None);
        assert_eq!(msg(b"INVITE sip:a SIP/2.0\r\n\r\n").top_via(), None);
    }

    fn name_addr(v: &str) -> Option<NameAddr<'_>> {
        NameAddr::parse(v)
    }

    fn na<'a>(display_name: Option<&'a str>, uri: &'a str, tag: Option<&'a str>) -> Option<NameAddr<'a>> {
        Some(NameAddr { display_name, uri, tag })
    }

    #[test]
    fn from_and_to_variants() {
        assert_eq!(
            name_addr("Alice <sip:alice@a.com>;tag=88sja8x"),
            na(Some("Alice"), "sip:alice@a.com", Some("88sja8x"))
        );
        assert_eq!(
            name_addr("\"Bob, \\\"B\\\" <x>\" <sip:bob@b.com>"),
            na(Some("Bob, \\\"B\\\" <x>"), "sip:bob@b.com", None)
        );
        assert_eq!(name_addr("\"\" <sip:anon@c>;TAG=abc"), na(Some(""), "sip:anon@c", Some("abc")));
        assert_eq!(
            name_addr("<sip:carol@c.com;transport=tcp>;tag=1;x=y"),
            na(None, "sip:carol@c.com;transport=tcp", Some("1"))
        );
        assert_eq!(name_addr("sip:dave@d.com;tag=2;other"), na(None, "sip:dave@d.com", Some("2")));
        assert_eq!(name_addr("  sip:eve@e.com ; Tag = 3 "), na(None, "sip:eve@e.com", Some("3")));
        assert_eq!(name_addr("The Operator <tel:+1234>"), na(Some("The Operator"), "tel:+1234", None));
        assert_eq!(name_addr("Multi\r\n Line <sip:f@g>;tag=t"), na(Some("Multi\r\n Line"), "sip:f@g", Some("t")));
        assert_eq!(name_addr("sip:h@i;tag="), na(None, "sip:h@i", None));
        assert_eq!(name_addr("<sip:unclosed"), None);
        assert_eq!(name_addr("\"unclosed <sip:x>"), None);
        assert_eq!(name_addr("\"name\" sip:no-brackets"), None);
        assert_eq!(name_addr("<>"), None);
        assert_eq!(name_addr(""), None);
        let m = msg(INVITE);
        assert_eq!(m.from(), na(Some("Alice"), "sip:alice@atlanta.example.com", Some("1928301774")));
        assert_eq!(m.to(), na(Some("Bob"), "sip:bob@biloxi.example.com", None));
    }

    #[test]
    fn cseq_values() {
        assert_eq!(CSeq::parse("314159 INVITE"), Some(CSeq { seq: 314159, method: "INVITE" }));
        assert_eq!(CSeq::parse("  4294967295\t ACK "), Some(CSeq { seq: u32::MAX, method: "ACK" }));
        assert_eq!(CSeq::parse("4294967296 ACK"), None);
        assert_eq!(CSeq::parse("+1 ACK"), None);
        assert_eq!(CSeq::parse("1"), None);
        assert_eq!(CSeq::parse("INVITE 1"), None);
        assert_eq!(msg(b"INVITE sip:a SIP/2.0\r\nCSeq: x\r\n\r\n").cseq(), None);
    }

    #[test]
    fn call_id_must_not_be_empty() {
        assert_eq!(msg(b"INVITE sip:a SIP/2.0\r\nCall-ID:   \r\n\r\n").call_id(), None);
    }

    #[test]
    fn looks_like_sip_checks_the_first_line() {
        assert!(looks_like_sip(INVITE));
        assert!(looks_like_sip(b"SIP/2.0 200 OK\r\n"));
        assert!(looks_like_sip(b"REGISTER sip:1.1.1.1:5060 SIP/2.0"));
        assert!(!looks_like_sip(b""));
        assert!(!looks_like_sip(b"\r\n\r\n"));
        assert!(!looks_like_sip(b"hello\0"));
        assert!(!looks_like_sip(b"\0\0\0\0"));
        assert!(!looks_like_sip(b"GET / HTTP/1.1\r\n"));
        assert!(!looks_like_sip(b"HTTP/1.1 200 OK\r\n"));
        assert!(!looks_like_sip(b"SIP/2.0 2000 OK\r\n"));
        assert!(!looks_like_sip(b"INVITE sip:a SIP/2.0x\r\n"));
    }

    fn framing(b: &[u8]) -> Framing {
        frame_message(b)
    }

    #[test]
    fn framing_on_streams() {
        let one = b"INVITE sip:a SIP/2.0\r\nl: 3\r\n\r\nabc";
        assert_eq!(framing(one), Framing::Message(one.len()));
        let mut two = one.to_vec();
        two.extend_from_slice(b"SIP/2.0 200 OK\r\n\r\n");
        assert_eq!(framing(&two), Framing::Message(one.len()));
        assert_eq!(framing(b"SIP/2.0 200 OK\r\n\r\nmore"), Framing::Message(18), "no Content-Length: no body");
        assert_eq!(framing(b"SIP/2.0 200 OK\r\nContent-Length: bad\r\n\r\n"), Framing::Message(39));
        assert_eq!(framing(b"SIP/2.0 200 OK\nl: 1\n\nxy"), Framing::Message(22));
        assert_eq!(framing(b"INVITE sip:a SIP/2.0\r\nl: 3\r\n\r\nab"), Framing::NeedMore);
        assert_eq!(framing(b"INVITE sip:a SIP/2.0\r\nl: 3\r\n\r"), Framing::NeedMore);
        assert_eq!(framing(b"INVITE sip:a SIP/2.0\r\nl: 3\r\n"), Framing::NeedMore);
        assert_eq!(framing(b"INVITE sip:a SIP/2.0\r"), Framing::NeedMore);
        assert_eq!(framing(b"INVITE sip:a"), Framing::NeedMore);
        assert_eq!(framing(b"SIP/2."), Framing::NeedMore);
        assert_eq!(framing(b""), Framing::NeedMore);
    }

    #[test]
    fn framing_skips_keep_alives_and_junk() {
        assert_eq!(framing(b"\r\n\r\nINVITE"), Framing::Skip(4));
        assert_eq!(framing(b"\n"), Framing::Skip(1));
        assert_eq!(framing(b"junk line\r\nmore junk\r\nSIP/2.0 200 OK\r\n\r\n"), Framing::Skip(22));
        assert_eq!(framing(b"junk line\r\nmore junk\r\nSIP/2.0 2"), Framing::Skip(22));
        assert_eq!(framing(b"junk line\r\nno end yet"), Framing::Skip(11));
        assert_eq!(framing(b"\x16\x03\x01\x02\x00"), Framing::Skip(5), "binary (TLS) can never become a start line");
        assert_eq!(framing(b"SIP/2.0 20x"), Framing::Skip(11));
        assert_eq!(framing(b"GET / HTTP/1.1"), Framing::Skip(14));
    }

    #[test]
    fn framing_bounds() {
        let mut huge = b"INVITE sip:a SIP/2.0\r\n".to_vec();
        while huge.len() <= MAX_HEADER_BLOCK {
            huge.extend_from_slice(b"X-Filler: 0123456789012345678901234567890123456789\r\n");
        }
        assert_eq!(framing(&huge), Framing::Skip(22), "header block over 64 KiB: skip its start line");
        let mut long_line = b"INVITE sip:".to_vec();
        long_line.resize(MAX_HEADER_BLOCK + 1, b'a');
        assert_eq!(framing(&long_line), Framing::Skip(MAX_HEADER_BLOCK + 1));
        assert_eq!(framing(b"SIP/2.0 200 OK\r\nl: 16777217\r\n\r\n"), Framing::Skip(16));
        assert_eq!(framing(b"SIP/2.0 200 OK\r\nl: 16777216\r\n\r\n"), Framing::NeedMore);
    }

    fn sdp_of(b: &[u8]) -> Option<&[u8]> {
        sdp_body(&msg(b))
    }

    #[test]
    fn sdp_bodies() {
        assert_eq!(sdp_of(INVITE), Some(b"v=0\n".as_slice()));
        assert_eq!(
            sdp_of(b"INVITE sip:a SIP/2.0\r\nc: Application/SDP ; charset=utf-8\r\n\r\nv=0"),
            Some(b"v=0".as_slice())
        );
        assert_eq!(sdp_of(b"INVITE sip:a SIP/2.0\r\nContent-Type: text/plain\r\n\r\nv=0"), None);
        assert_eq!(sdp_of(b"INVITE sip:a SIP/2.0\r\n\r\nv=0"), None);
        assert_eq!(sdp_of(b"INVITE sip:a SIP/2.0\r\nContent-Type: application/sdp\r\n\r\n"), None);
    }

    #[test]
    fn sdp_in_multipart_bodies() {
        let sip_i = b"INVITE sip:a SIP/2.0\r\n\
Content-Type: multipart/mixed;boundary=unique-boundary-1\r\n\r\n\
--unique-boundary-1\r\n\
Content-Type: application/sdp\r\n\r\n\
v=0\r\no=- 1 1 IN IP4 1.2.3.4\r\n\
--unique-boundary-1\r\n\
Content-Type: application/ISUP;version=nxv3\r\n\
Content-Disposition: signal;handling=optional\r\n\r\n\
\x01\x00\x49\r\n\
--unique-boundary-1--\r\n";
        assert_eq!(sdp_of(sip_i), Some(b"v=0\r\no=- 1 1 IN IP4 1.2.3.4".as_slice()));
        let second = b"INVITE sip:a SIP/2.0\r\n\
Content-Type: multipart/alternative; boundary=\"b 1\"\r\n\r\n\
preamble\n--b 1\nContent-Type: text/plain\n\nhello\n--b 1x\nnot a delimiter\n--b 1\ncontent-type: application/sdp\n\nv=0\n\n--b 1--\n";
        assert_eq!(sdp_of(second), Some(b"v=0\n".as_slice()));
        let nested = b"INVITE sip:a SIP/2.0\r\nContent-Type: multipart/related;boundary=outer\r\n\r\n\
--outer\r\nContent-Type: multipart/mixed;boundary=inner\r\n\r\n--inner\r\nContent-Type: application/sdp\r\n\r\nv=0\r\n--inner--\r\n--outer--";
        assert_eq!(sdp_of(nested), Some(b"v=0".as_slice()));
        let unclosed = b"INVITE sip:a SIP/2.0\r\nContent-Type: multipart/mixed;boundary=b\r\n\r\n--b\r\nContent-Type: application/sdp\r\n\r\nv=0\r\n";
        assert_eq!(sdp_of(unclosed), Some(b"v=0\r\n".as_slice()));
        let no_boundary = b"INVITE sip:a SIP/2.0\r\nContent-Type: multipart/mixed\r\n\r\n--b\r\nContent-Type: application/sdp\r\n\r\nv=0\r\n";
        assert_eq!(sdp_of(no_boundary), None);
        let no_sdp =
            b"INVITE sip:a SIP/2.0\r\nContent-Type: multipart/mixed;boundary=b\r\n\r\n--b\r\n\r\nplain\r\n--b--";
        assert_eq!(sdp_of(no_sdp), None);
    }

    #[test]
    fn leg_keys() {
        // Each UUID shortened to its first 4 digits, `-` for none.
        let sid = |v: &str| {
            SessionIdHeader::parse(v).map(|s| {
                let short = |u: Option<&str>| u.map_or("-".to_string(), |u| u[..4].to_string());
                format!("{}/{}", short(s.local), short(s.remote))
            })
        };
        let (a, b) = ("ab30317f1a784dc48ff824d0d3715d86", "47755A9DE7794BA387653F2099600EF2");
        let null = "00000000000000000000000000000000";
        assert_eq!(sid(&format!("{a};remote={b}")).as_deref(), Some("ab30/4775"));
        assert_eq!(sid(&format!(" {a} ; REMOTE={b} ;x=1")).as_deref(), Some("ab30/4775"));
        assert_eq!(sid(&format!("{a};remote={null}")).as_deref(), Some("ab30/-"));
        assert_eq!(sid(&format!("{null};remote={b}")).as_deref(), Some("-/4775"));
        assert_eq!(sid(a).as_deref(), Some("ab30/-"));
        assert_eq!(sid("not-a-uuid"), None);
        assert_eq!(sid(&a[1..]), None);

        assert_eq!(
            icid_value("icid-value=1234bc9876e;icid-generated-at=192.0.6.8;orig-ioi=home1.net"),
            Some("1234bc9876e")
        );
        assert_eq!(
            icid_value("orig-ioi=a.net; icid-value=\"AyretyU0dm+6O2IrT5tAFrbHLso=023551024\""),
            Some("AyretyU0dm+6O2IrT5tAFrbHLso=023551024")
        );
        assert_eq!(icid_value("orig-ioi=a.net"), None);
        assert_eq!(icid_value("icid-value="), None);

        assert_eq!(uri_user("sip:+12675941249@10.243.0.143"), Some("+12675941249"));
        assert_eq!(uri_user("sips:alice;npdi@example.com:5061"), Some("alice"));
        assert_eq!(uri_user("sip:bob:secret@example.com"), Some("bob"));
        assert_eq!(uri_user("tel:+1-201-555-0123;phone-context=x"), Some("+1-201-555-0123"));
        assert_eq!(uri_user("sip:example.com"), None);
        assert_eq!(uri_user("urn:service:sos"), None);
    }
}
