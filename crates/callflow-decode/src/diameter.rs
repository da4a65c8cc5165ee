//! Diameter (RFC 6733): the message header, the AVPs (grouped ones walked recursively with a depth limit), and a TCP stream framer.
//!
//! A message is a 20-byte header (version 1, a 24-bit length counting the whole message,
//! the R/P/E/T flags, a 24-bit command code, the application id and the hop-by-hop and
//! end-to-end identifiers) followed by AVPs. Each AVP is an 8-byte header (code, V/M/P
//! flags, a 24-bit length counting the header and the data but not the padding), a
//! 4-byte vendor id when the V flag is set, the data, and padding to the next multiple
//! of 4 bytes. Whether an AVP's data is itself AVPs (type Grouped) is not in the wire
//! format: the [`dictionary`] says so, and [`avp_tree`] asks it.
//!
//! Everything borrows the buffer it was given: [`DiameterMessage`] and [`Avp`] are views;
//! only [`avp_tree`] allocates (the tree's nodes, for a message's detail). Offsets in
//! errors count from the start of the message, so they point into a hex dump of it.
//!
//! Bad input is expected: an AVP length that runs past its container, a length shorter
//! than the AVP header, grouped AVPs nested deeper than [`MAX_DEPTH`], a message length
//! above [`MAX_MESSAGE_LEN`] (a 20 MB length is a corrupt or hostile header, never a
//! message to wait for). Each gives a [`DecodeError`] naming the field and its offset.

pub mod dictionary;

use crate::tcp::Framing;
use crate::{need, DecodeError, Layer};
use nom::number::complete::{be_u24, be_u32, be_u8};
use nom::sequence::tuple;
use nom::IResult;

pub use dictionary::{AvpDef, AvpType, Dictionary, DictionaryError};

/// Length of the message header.
pub const HEADER_LEN: usize = 20;

/// The longest message accepted (1 MiB, as the heuristic classifier's signature). The
/// length field could say up to 16 MiB; real messages stay below 64 KiB, so a longer one
/// is a damaged header, reported as such rather than waited for.
pub const MAX_MESSAGE_LEN: usize = 1 << 20;

/// How deep grouped AVPs may nest (the deepest standard ones, in S6a's subscription data,
/// go 5 levels down).
pub const MAX_DEPTH: usize = 12;

/// The IANA port of Diameter over TCP and SCTP.
pub const PORT: u16 = 3868;
/// The IANA port of Diameter over TLS/TCP and DTLS/SCTP (RFC 6733 section 2.1).
pub const TLS_PORT: u16 = 5868;
/// The SCTP payload protocol identifier of Diameter.
pub const PPID: u32 = 46;
/// The SCTP payload protocol identifier of Diameter over DTLS.
pub const PPID_DTLS: u32 = 47;

/// Command flag R: the message is a request.
pub const FLAG_REQUEST: u8 = 0x80;
/// Command flag P: the message may be proxied.
pub const FLAG_PROXIABLE: u8 = 0x40;
/// Command flag E: the answer carries a protocol error.
pub const FLAG_ERROR: u8 = 0x20;
/// Command flag T: the request may be a retransmission (after a link failover).
pub const FLAG_RETRANSMIT: u8 = 0x10;

/// AVP flag V: a vendor id follows the length.
pub const AVP_FLAG_VENDOR: u8 = 0x80;
/// AVP flag M: the receiver must understand the AVP.
pub const AVP_FLAG_MANDATORY: u8 = 0x40;
/// AVP flag P: end-to-end security was requested (deprecated).
pub const AVP_FLAG_PROTECTED: u8 = 0x20;

/// The fixed header of a Diameter message.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Header {
    /// Protocol version (always 1).
    pub version: u8,
    /// Length of the whole message, header included.
    pub length: u32,
    /// The command flags (R, P, E, T and four reserved bits).
    pub flags: u8,
    /// The command code (272 Credit-Control, 316 Update-Location...).
    pub command_code: u32,
    /// The application the message belongs to (0 for the base protocol).
    pub application_id: u32,
    /// Pairs a request with its answer on one hop.
    pub hop_by_hop: u32,
    /// Pairs a request with its answer end to end, and detects duplicates.
    pub end_to_end: u32,
}

impl Header {
    /// The R flag: a request (else an answer).
    pub fn is_request(&self) -> bool {
        self.flags & FLAG_REQUEST != 0
    }

    /// The P flag: the message may be proxied.
    pub fn is_proxiable(&self) -> bool {
        self.flags & FLAG_PROXIABLE != 0
    }

    /// The E flag: an answer carrying a protocol error.
    pub fn is_error(&self) -> bool {
        self.flags & FLAG_ERROR != 0
    }

    /// The T flag: a request that may be a retransmission.
    pub fn is_retransmit(&self) -> bool {
        self.flags & FLAG_RETRANSMIT != 0
    }
}

/// The header's fields in wire order: version, length, flags, command code, application
/// id, hop-by-hop id, end-to-end id.
type HeaderFields = (u8, u32, u8, u32, u32, u32, u32);

fn header_fields(i: &[u8]) -> IResult<&[u8], HeaderFields> {
    tuple((be_u8, be_u24, be_u8, be_u24, be_u32, be_u32, be_u32))(i)
}

/// Reads the 20-byte header at the start of `buf`, checking the version, the reserved
/// flag bits and that the length is sane; it does not check that the message is all there.
pub fn parse_header(buf: &[u8]) -> Result<Header, DecodeError> {
    need(Layer::Diameter, buf, 0, HEADER_LEN)?;
    let Ok((_, (version, length, flags, command_code, application_id, hop_by_hop, end_to_end))) = header_fields(buf)
    else {
        return Err(DecodeError::truncated(Layer::Diameter, 0, HEADER_LEN, buf.len()));
    };
    if version != 1 {
        return Err(DecodeError::invalid(Layer::Diameter, 0, "version", "not 1"));
    }
    if flags & 0x0f != 0 {
        return Err(DecodeError::invalid(Layer::Diameter, 4, "command flags", "reserved bits set"));
    }
    let len = length as usize;
    if len < HEADER_LEN {
        return Err(DecodeError::invalid(Layer::Diameter, 1, "message length", "shorter than the 20-byte header"));
    }
    if len > MAX_MESSAGE_LEN {
        return Err(DecodeError::invalid(Layer::Diameter, 1, "message length", "above the 1 MiB maximum"));
    }
    if !len.is_multiple_of(4) {
        return Err(DecodeError::invalid(Layer::Diameter, 1, "message length", "not a multiple of 4"));
    }
    Ok(Header { version, length, flags, command_code, application_id, hop_by_hop, end_to_end })
}

/// One Diameter message: its header and its AVPs, borrowed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DiameterMessage<'a> {
    /// The fixed header.
    pub header: Header,
    /// The bytes after the header, up to the header's length.
    pub body: &'a [u8],
}

impl<'a> DiameterMessage<'a> {
    /// Reads the message at the start of `buf`. Bytes after the header's length are
    /// ignored (the caller framed the message); fewer bytes than it says is an error.
    pub fn parse(buf: &'a [u8]) -> Result<Self, DecodeError> {
        let header = parse_header(buf)?;
        let len = header.length as usize;
        need(Layer::Diameter, buf, 0, len)?;
        Ok(DiameterMessage { header, body: buf.get(HEADER_LEN..len).unwrap_or_default() })
    }

    /// The top-level AVPs, in order.
    pub fn avps(&self) -> Avps<'a> {
        Avps::new(self.body, HEADER_LEN)
    }

    /// The first top-level AVP with this code and vendor (`None` for IETF AVPs); an AVP
    /// after a damaged one is not found.
    pub fn find(&self, code: u32, vendor: Option<u32>) -> Option<Avp<'a>> {
        self.avps().map_while(Result::ok).find(|a| a.code == code && a.vendor_id == vendor)
    }
}

/// One AVP, borrowed: header fields and its data without the padding.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Avp<'a> {
    /// The AVP code (263 Session-Id, 268 Result-Code...).
    pub code: u32,
    /// The V/M/P flags and five reserved bits.
    pub flags: u8,
    /// The vendor id, when the V flag is set (10415 for 3GPP).
    pub vendor_id: Option<u32>,
    /// The data, without the header and the padding.
    pub data: &'a [u8],
    /// Offset of the AVP header from the start of the message.
    pub offset: usize,
}

impl<'a> Avp<'a> {
    /// The M flag.
    pub fn is_mandatory(&self) -> bool {
        self.flags & AVP_FLAG_MANDATORY != 0
    }

    /// The P flag.
    pub fn is_protected(&self) -> bool {
        self.flags & AVP_FLAG_PROTECTED != 0
    }

    /// The data as an Unsigned32 / Integer32 / Enumerated, when it is 4 bytes long.
    pub fn as_u32(&self) -> Option<u32> {
        Some(u32::from_be_bytes(self.data.try_into().ok()?))
    }

    /// The data as UTF-8 text, when it is.
    pub fn as_str(&self) -> Option<&'a str> {
        std::str::from_utf8(self.data).ok()
    }

    /// The AVPs inside a Grouped AVP.
    pub fn children(&self) -> Avps<'a> {
        let header = if self.vendor_id.is_some() { 12 } else { 8 };
        Avps::new(self.data, self.offset + header)
    }
}

/// Iterator over a sequence of AVPs (a message body or a Grouped AVP's data).
///
/// Each item is an AVP or the error that ended the walk; nothing follows an error.
#[derive(Clone, Debug)]
pub struct Avps<'a> {
    bytes: &'a [u8],
    pos: usize,
    /// Offset of `bytes[0]` in the message, for errors and [`Avp::offset`].
    base: usize,
    failed: bool,
}

impl<'a> Avps<'a> {
    /// The AVPs in `bytes`, which start at offset `base` of the message.
    pub fn new(bytes: &'a [u8], base: usize) -> Self {
        Avps { bytes, pos: 0, base, failed: false }
    }

    fn next_avp(&mut self) -> Result<Avp<'a>, DecodeError> {
        let at = self.pos;
        let offset = self.base + at;
        let rest = self.bytes.get(at..).unwrap_or_default();
        let fields: IResult<&[u8], (u32, u8, u32)> = tuple((be_u32, be_u8, be_u24))(rest);
        let Ok((_, (code, flags, length))) = fields else {
            return Err(DecodeError::truncated(Layer::Diameter, offset, 8, rest.len()));
        };
        let header = if flags & AVP_FLAG_VENDOR != 0 { 12 } else { 8 };
        let length = length as usize;
        if length < header {
            return Err(DecodeError::invalid(Layer::Diameter, offset + 5, "AVP length", "shorter than the AVP header"));
        }
        if rest.len() < length {
            return Err(DecodeError::truncated(Layer::Diameter, offset, length, rest.len()));
        }
        let vendor_id = (header == 12).then(|| u32::from_be_bytes([rest[8], rest[9], rest[10], rest[11]]));
        let data = rest.get(header..length).unwrap_or_default();
        // The padding after the last AVP of a group or message may be missing.
        self.pos = (at + ((length + 3) & !3)).min(self.bytes.len());
        Ok(Avp { code, flags, vendor_id, data, offset })
    }
}

impl<'a> Iterator for Avps<'a> {
    type Item = Result<Avp<'a>, DecodeError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.failed || self.pos >= self.bytes.len() {
            return None;
        }
        let avp = self.next_avp();
        self.failed = avp.is_err();
        Some(avp)
    }
}

/// An AVP and, for a Grouped one, the AVPs inside it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AvpNode<'a> {
    /// The AVP.
    pub avp: Avp<'a>,
    /// The AVPs inside it (empty unless the dictionary says it is Grouped).
    pub children: Vec<AvpNode<'a>>,
}

/// The AVPs of a message as a tree, as far as they decode.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct AvpTree<'a> {
    /// The top-level AVPs decoded before any error, with what is inside the grouped ones.
    pub avps: Vec<AvpNode<'a>>,
    /// What stopped the walk, if something did: the AVPs before it are kept (lax decoding).
    pub error: Option<DecodeError>,
}

/// Walks the AVPs of `msg`, descending into those `dictionary` calls Grouped, at most
/// [`MAX_DEPTH`] levels deep. An error inside a group keeps what came before it.
pub fn avp_tree<'a>(msg: &DiameterMessage<'a>, dictionary: &Dictionary) -> AvpTree<'a> {
    let mut tree = AvpTree::default();
    tree.error = walk(msg.avps(), dictionary, 1, &mut tree.avps).err();
    tree
}

fn walk<'a>(avps: Avps<'a>, dict: &Dictionary, depth: usize, out: &mut Vec<AvpNode<'a>>) -> Result<(), DecodeError> {
    for avp in avps {
        let avp = avp?;
        let mut node = AvpNode { avp, children: Vec::new() };
        let grouped = dict.is_grouped(avp.code, avp.vendor_id);
        if grouped && depth >= MAX_DEPTH {
            out.push(node);
            return Err(DecodeError::invalid(
                Layer::Diameter,
                avp.offset,
                "grouped AVP",
                "nested deeper than the limit",
            ));
        }
        let inner = if grouped { walk(avp.children(), dict, depth + 1, &mut node.children) } else { Ok(()) };
        out.push(node);
        inner?;
    }
    Ok(())
}

/// Whether `payload` starts with a plausible Diameter header whose length is the
/// payload's (an SCTP user message, which carries exactly one message).
pub fn looks_like_diameter(payload: &[u8]) -> bool {
    parse_header(payload).is_ok_and(|h| h.length as usize == payload.len())
}

/// Whether a plausible header starts at `buf[at..]`, as far as the bytes there tell
/// (at least the version, length and flags: 5 bytes).
fn plausible_at(buf: &[u8], at: usize) -> bool {
    let Some(b) = buf.get(at..at + 5) else { return false };
    let len = u32::from_be_bytes([0, b[1], b[2], b[3]]) as usize;
    b[0] == 1 && b[4] & 0x0f == 0 && len >= HEADER_LEN && len.is_multiple_of(4) && len <= MAX_MESSAGE_LEN
}

/// Cuts the next Diameter message off a TCP stream (see [`crate::tcp`]).
///
/// A whole message at the start is [`Framing::Message`] of its length; part of one is
/// [`Framing::NeedMore`]. Bytes that do not start a header (a capture that begins
/// mid-message) are skipped up to the next plausible header. A header of version 1 whose
/// length is impossible (below 20, or above [`MAX_MESSAGE_LEN`], like a 20 MB length) is
/// handed on as a 20-byte message, which then fails to parse and is counted as malformed:
/// it is neither waited for nor buffered.
pub fn frame_message(buf: &[u8]) -> Framing {
    if buf.is_empty() {
        return Framing::NeedMore;
    }
    if plausible_at(buf, 0) {
        let len = u32::from_be_bytes([0, buf[1], buf[2], buf[3]]) as usize;
        return if buf.len() >= len { Framing::Message(len) } else { Framing::NeedMore };
    }
    if buf.len() < 5 {
        return if buf[0] == 1 { Framing::NeedMore } else { Framing::Skip(1) };
    }
    if buf[0] == 1 && buf[4] & 0x0f == 0 {
        // Version and flags right, length impossible: a damaged header.
        return if buf.len() >= HEADER_LEN { Framing::Message(HEADER_LEN) } else { Framing::NeedMore };
    }
    // Resynchronise on the next plausible header; keep the last 4 bytes, which may be the
    // start of one.
    match (1..buf.len()).find(|&at| plausible_at(buf, at)) {
        Some(at) => Framing::Skip(at),
        None => Framing::Skip(buf.len().saturating_sub(4).max(1)),
    }
}

#[cfg(test)]
mod tests;
