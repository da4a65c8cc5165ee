//! TLS (RFC 5246, RFC 8446): the record layer, the hellos, key logs and record decryption, for reading SIP over TLS with the endpoints' key log.
//!
//! [`Record::parse`] reads one record header and borrows its fragment; [`records`] walks
//! a buffer of records and ends with the error of a truncated or damaged tail, after the
//! records it could read (so a capture cut short still yields what it holds);
//! [`frame_record`] cuts a TCP stream into records for [`crate::tcp::TcpReassembler`].
//! [`handshake_messages`] walks the handshake messages of a handshake stream, and
//! [`ClientHello::parse`] / [`ServerHello::parse`] read the fields decryption needs: the
//! randoms, the session id, the cipher suite, the version (with `supported_versions`),
//! the server name, and the extensions that change how records are protected
//! (encrypt-then-MAC) or tell a resumption (pre-shared keys, tickets).
//!
//! The keys come from a key log in the NSS format ([`keylog`]), given by the user or found
//! in a pcapng Decryption Secrets Block; [`crypto`] turns them into record keys and
//! decrypts records through RustCrypto's AEAD, block cipher and MAC crates.

pub mod crypto;
pub mod keylog;

use crate::tcp::Framing;
use crate::{DecodeError, Layer};

/// The longest record fragment TLS allows: 2^14 bytes of plaintext plus 2048 of expansion
/// (RFC 5246 6.2.3); TLS 1.3 allows less (2^14 + 256), so this bounds both.
pub const MAX_FRAGMENT_LEN: usize = (1 << 14) + 2048;

/// The record header's length.
pub const HEADER_LEN: usize = 5;

/// The content type of a record.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ContentType {
    /// ChangeCipherSpec (20): from here on, this direction's records are protected (TLS 1.2).
    ChangeCipherSpec,
    /// Alert (21).
    Alert,
    /// Handshake (22).
    Handshake,
    /// Application data (23); in TLS 1.3 every protected record has this outer type.
    ApplicationData,
    /// Heartbeat (24, RFC 6520).
    Heartbeat,
}

impl ContentType {
    /// The content type of wire value `v`, if TLS defines it.
    pub fn from_u8(v: u8) -> Option<ContentType> {
        Some(match v {
            20 => ContentType::ChangeCipherSpec,
            21 => ContentType::Alert,
            22 => ContentType::Handshake,
            23 => ContentType::ApplicationData,
            24 => ContentType::Heartbeat,
            _ => return None,
        })
    }

    /// The wire value.
    pub fn as_u8(self) -> u8 {
        match self {
            ContentType::ChangeCipherSpec => 20,
            ContentType::Alert => 21,
            ContentType::Handshake => 22,
            ContentType::ApplicationData => 23,
            ContentType::Heartbeat => 24,
        }
    }
}

/// One record: its header's fields and its fragment, borrowed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Record<'a> {
    /// What the fragment holds (for a protected TLS 1.3 record, always application data).
    pub content_type: ContentType,
    /// The record's protocol version (0x0301 for TLS 1.0 ... 0x0303 for TLS 1.2 and 1.3).
    pub version: u16,
    /// The fragment: plaintext, or the protected bytes.
    pub fragment: &'a [u8],
}

impl<'a> Record<'a> {
    /// Reads the record at the start of `buf`; returns it and its whole length.
    pub fn parse(buf: &'a [u8]) -> Result<(Record<'a>, usize), DecodeError> {
        let header = buf.get(..HEADER_LEN).ok_or(DecodeError::truncated(Layer::Tls, 0, HEADER_LEN, buf.len()))?;
        let (content_type, version, len) = check_header(header)?;
        let fragment = buf.get(HEADER_LEN..HEADER_LEN + len).ok_or(DecodeError::truncated(
            Layer::Tls,
            HEADER_LEN,
            len,
            buf.len() - HEADER_LEN,
        ))?;
        Ok((Record { content_type, version, fragment }, HEADER_LEN + len))
    }

    /// The record's 5-byte header as it was on the wire (TLS 1.3's additional data).
    pub fn header(&self) -> [u8; HEADER_LEN] {
        let [v0, v1] = self.version.to_be_bytes();
        let [l0, l1] = (self.fragment.len() as u16).to_be_bytes();
        [self.content_type.as_u8(), v0, v1, l0, l1]
    }
}

/// The content type, version and fragment length of a 5-byte record header.
fn check_header(header: &[u8]) -> Result<(ContentType, u16, usize), DecodeError> {
    let &[t, major, minor, l0, l1] =
        header.first_chunk::<HEADER_LEN>().ok_or(DecodeError::truncated(Layer::Tls, 0, HEADER_LEN, header.len()))?;
    let content_type =
        ContentType::from_u8(t).ok_or(DecodeError::invalid(Layer::Tls, 0, "content type", "not a TLS content type"))?;
    if major != 3 || minor > 4 {
        return Err(DecodeError::invalid(Layer::Tls, 1, "version", "not SSL 3.0 to TLS 1.3"));
    }
    let len = usize::from(u16::from_be_bytes([l0, l1]));
    if len > MAX_FRAGMENT_LEN {
        return Err(DecodeError::invalid(Layer::Tls, 3, "length", "longer than 2^14 + 2048 bytes"));
    }
    Ok((content_type, u16::from_be_bytes([major, minor]), len))
}

/// The records of `buf` in order; after the last whole record, the error of a truncated or
/// damaged tail if there is one (then nothing more).
pub fn records(buf: &[u8]) -> Records<'_> {
    Records { buf, pos: 0, done: false }
}

/// Iterator of [`records`].
#[derive(Clone, Debug)]
pub struct Records<'a> {
    buf: &'a [u8],
    pos: usize,
    done: bool,
}

impl<'a> Iterator for Records<'a> {
    type Item = Result<Record<'a>, DecodeError>;

    fn next(&mut self) -> Option<Self::Item> {
        let rest = self.buf.get(self.pos..).filter(|r| !r.is_empty() && !self.done)?;
        match Record::parse(rest) {
            Ok((record, len)) => {
                self.pos += len;
                Some(Ok(record))
            }
            Err(e) => {
                self.done = true;
                Some(Err(e.shifted(self.pos)))
            }
        }
    }
}

/// Cuts a TLS byte stream into records: a whole record, more bytes needed, or, when the
/// bytes are no record header (a capture that lost its place), everything buffered
/// skipped, since a record boundary cannot be found again by looking.
pub fn frame_record(buf: &[u8]) -> Framing {
    let Some(header) = buf.get(..HEADER_LEN) else { return Framing::NeedMore };
    match check_header(header) {
        Ok((_, _, len)) if buf.len() >= HEADER_LEN + len => Framing::Message(HEADER_LEN + len),
        Ok(_) => Framing::NeedMore,
        Err(_) => Framing::Skip(buf.len()),
    }
}

/// Whether a TCP connection's first payload starts with a TLS record: a plausible
/// header, and for a handshake record a ClientHello or ServerHello. A capture that
/// starts mid-connection opens on an application data record.
pub fn starts_tls(payload: &[u8]) -> bool {
    let Some(header) = payload.get(..HEADER_LEN) else { return false };
    match check_header(header) {
        Ok((ContentType::Handshake, _, len)) => {
            len >= 4 && matches!(payload.get(HEADER_LEN), Some(&(HANDSHAKE_CLIENT_HELLO | HANDSHAKE_SERVER_HELLO)))
        }
        Ok((ContentType::ApplicationData | ContentType::ChangeCipherSpec, version, len)) => {
            version >= 0x0301 && len > 0
        }
        _ => false,
    }
}

/// Handshake message type of a ClientHello.
pub const HANDSHAKE_CLIENT_HELLO: u8 = 1;
/// Handshake message type of a ServerHello (and of TLS 1.3's HelloRetryRequest).
pub const HANDSHAKE_SERVER_HELLO: u8 = 2;
/// Handshake message type of a NewSessionTicket.
pub const HANDSHAKE_NEW_SESSION_TICKET: u8 = 4;
/// Handshake message type of a Finished.
pub const HANDSHAKE_FINISHED: u8 = 20;
/// Handshake message type of a TLS 1.3 KeyUpdate.
pub const HANDSHAKE_KEY_UPDATE: u8 = 24;

/// One handshake message: its type and body, borrowed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HandshakeMessage<'a> {
    /// The message type (1 ClientHello, 2 ServerHello, 20 Finished, 24 KeyUpdate, ...).
    pub msg_type: u8,
    /// The body, after the 4-byte header.
    pub body: &'a [u8],
}

/// Reads the handshake message at the start of `buf`; returns it and its whole length.
/// A message longer than `buf` is [`DecodeError::Truncated`] with the length it needs:
/// handshake messages span records, so the caller waits for more.
pub fn handshake_message(buf: &[u8]) -> Result<(HandshakeMessage<'_>, usize), DecodeError> {
    let &[msg_type, a, b, c] = buf.first_chunk::<4>().ok_or(DecodeError::truncated(Layer::Tls, 0, 4, buf.len()))?;
    let len = (usize::from(a) << 16) | (usize::from(b) << 8) | usize::from(c);
    let body = buf.get(4..4 + len).ok_or(DecodeError::truncated(Layer::Tls, 4, len, buf.len() - 4))?;
    Ok((HandshakeMessage { msg_type, body }, 4 + len))
}

/// The handshake messages of `buf` in order, then the error of a partial last one.
pub fn handshake_messages(buf: &[u8]) -> impl Iterator<Item = Result<HandshakeMessage<'_>, DecodeError>> {
    let mut pos = 0;
    let mut done = false;
    std::iter::from_fn(move || {
        let rest = buf.get(pos..).filter(|r| !r.is_empty() && !done)?;
        match handshake_message(rest) {
            Ok((m, len)) => {
                pos += len;
                Some(Ok(m))
            }
            Err(e) => {
                done = true;
                Some(Err(e.shifted(pos)))
            }
        }
    })
}

/// A little reader over a handshake body, with offsets for the errors.
struct Cursor<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Cursor<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], DecodeError> {
        let out = self.buf.get(self.pos..self.pos + n).ok_or(DecodeError::truncated(
            Layer::Tls,
            self.pos,
            n,
            self.buf.len().saturating_sub(self.pos),
        ))?;
        self.pos += n;
        Ok(out)
    }

    fn u8(&mut self) -> Result<u8, DecodeError> {
        Ok(self.take(1)?.first().copied().unwrap_or_default())
    }

    fn u16(&mut self) -> Result<u16, DecodeError> {
        let b = self.take(2)?;
        Ok(u16::from_be_bytes([b.first().copied().unwrap_or(0), b.get(1).copied().unwrap_or(0)]))
    }

    /// A vector with a one- or two-byte length prefix.
    fn vec8(&mut self) -> Result<&'a [u8], DecodeError> {
        let n = usize::from(self.u8()?);
        self.take(n)
    }

    fn vec16(&mut self) -> Result<&'a [u8], DecodeError> {
        let n = usize::from(self.u16()?);
        self.take(n)
    }

    fn random(&mut self) -> Result<&'a [u8; 32], DecodeError> {
        let at = self.pos;
        self.take(32)?.try_into().map_err(|_| DecodeError::truncated(Layer::Tls, at, 32, 0))
    }

    fn rest(&self) -> bool {
        self.pos < self.buf.len()
    }
}

const EXT_SERVER_NAME: u16 = 0;
const EXT_USE_SRTP: u16 = 14;
const EXT_ENCRYPT_THEN_MAC: u16 = 22;
const EXT_EXTENDED_MASTER_SECRET: u16 = 23;
const EXT_SESSION_TICKET: u16 = 35;
const EXT_PRE_SHARED_KEY: u16 = 41;
const EXT_EARLY_DATA: u16 = 42;
const EXT_SUPPORTED_VERSIONS: u16 = 43;
const EXT_KEY_SHARE: u16 = 51;

/// The extensions of a hello that matter here.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct HelloExtensions<'a> {
    /// The server name (SNI, host_name), when given and UTF-8.
    pub server_name: Option<&'a str>,
    /// `supported_versions`: the client's list (two bytes each), or the server's choice.
    pub supported_versions: Option<&'a [u8]>,
    /// A `key_share` extension is present (TLS 1.3 (EC)DHE).
    pub key_share: bool,
    /// `encrypt_then_mac` (RFC 7366) is present.
    pub encrypt_then_mac: bool,
    /// `extended_master_secret` (RFC 7627) is present.
    pub extended_master_secret: bool,
    /// `session_ticket` (RFC 5077) is present, with its ticket (empty when none offered).
    pub session_ticket: Option<&'a [u8]>,
    /// `pre_shared_key` is present (a TLS 1.3 resumption offered or accepted).
    pub pre_shared_key: bool,
    /// `early_data` is present (0-RTT).
    pub early_data: bool,
    /// `use_srtp` (RFC 5764, DTLS-SRTP), its data: the protection profiles (a vec16 of
    /// two-byte ids; the server's one choice) and the MKI (a vec8).
    pub use_srtp: Option<&'a [u8]>,
}

fn parse_extensions<'a>(c: &mut Cursor<'a>, base: usize) -> Result<HelloExtensions<'a>, DecodeError> {
    let mut ext = HelloExtensions::default();
    if !c.rest() {
        return Ok(ext);
    }
    let all = c.vec16()?;
    let mut e = Cursor { buf: all, pos: 0 };
    while e.rest() {
        let kind = e.u16().map_err(|err| err.shifted(base))?;
        let data = e.vec16().map_err(|err| err.shifted(base))?;
        match kind {
            EXT_SERVER_NAME => {
                // server_name_list: (type u8, name vec16)*; host_name is type 0.
                let mut list = Cursor { buf: data, pos: 0 };
                if let Ok(names) = list.vec16() {
                    let mut n = Cursor { buf: names, pos: 0 };
                    while n.rest() {
                        let (Ok(t), Ok(name)) = (n.u8(), n.vec16()) else { break };
                        if t == 0 {
                            ext.server_name = std::str::from_utf8(name).ok();
                            break;
                        }
                    }
                }
            }
            EXT_SUPPORTED_VERSIONS => {
                // The client sends a vec8 list; the server the one version it chose.
                ext.supported_versions = Some(if data.len() == 2 { data } else { data.get(1..).unwrap_or_default() });
            }
            EXT_KEY_SHARE => ext.key_share = true,
            EXT_ENCRYPT_THEN_MAC => ext.encrypt_then_mac = true,
            EXT_EXTENDED_MASTER_SECRET => ext.extended_master_secret = true,
            EXT_SESSION_TICKET => ext.session_ticket = Some(data),
            EXT_PRE_SHARED_KEY => ext.pre_shared_key = true,
            EXT_EARLY_DATA => ext.early_data = true,
            EXT_USE_SRTP => ext.use_srtp = Some(data),
            _ => {}
        }
    }
    Ok(ext)
}

/// A ClientHello's fields, borrowed from its body.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ClientHello<'a> {
    /// `legacy_version` (0x0303 in TLS 1.2 and 1.3 hellos).
    pub legacy_version: u16,
    /// The client random: what a key log is keyed by.
    pub random: &'a [u8; 32],
    /// The session id offered (for a TLS 1.2 resumption, the session's).
    pub session_id: &'a [u8],
    /// The cipher suites offered, two bytes each.
    pub cipher_suites: &'a [u8],
    /// The extensions.
    pub extensions: HelloExtensions<'a>,
}

impl<'a> ClientHello<'a> {
    /// Reads a ClientHello's body (after the handshake header).
    pub fn parse(body: &'a [u8]) -> Result<ClientHello<'a>, DecodeError> {
        let mut c = Cursor { buf: body, pos: 0 };
        let legacy_version = c.u16()?;
        let random = c.random()?;
        let session_id = c.vec8()?;
        let cipher_suites = c.vec16()?;
        let _compression = c.vec8()?;
        let extensions = parse_extensions(&mut c, 0)?;
        Ok(ClientHello { legacy_version, random, session_id, cipher_suites, extensions })
    }

    /// Whether the client offers TLS 1.3.
    pub fn offers_tls13(&self) -> bool {
        self.extensions.supported_versions.is_some_and(|v| v.chunks_exact(2).any(|p| p == [3, 4]))
    }
}

/// The random of a HelloRetryRequest (RFC 8446 4.1.3): a ServerHello with it is not the
/// server's answer yet.
pub const HELLO_RETRY_RANDOM: [u8; 32] = [
    0xcf, 0x21, 0xad, 0x74, 0xe5, 0x9a, 0x61, 0x11, 0xbe, 0x1d, 0x8c, 0x02, 0x1e, 0x65, 0xb8, 0x91, 0xc2, 0xa2, 0x11,
    0x16, 0x7a, 0xbb, 0x8c, 0x5e, 0x07, 0x9e, 0x09, 0xe2, 0xc8, 0xa8, 0x33, 0x9c,
];

/// A ServerHello's fields, borrowed from its body.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ServerHello<'a> {
    /// `legacy_version`.
    pub legacy_version: u16,
    /// The server random.
    pub random: &'a [u8; 32],
    /// The session id (TLS 1.2: equal to the client's when the session is resumed).
    pub session_id: &'a [u8],
    /// The cipher suite chosen.
    pub cipher_suite: u16,
    /// The extensions.
    pub extensions: HelloExtensions<'a>,
}

impl<'a> ServerHello<'a> {
    /// Reads a ServerHello's body (after the handshake header).
    pub fn parse(body: &'a [u8]) -> Result<ServerHello<'a>, DecodeError> {
        let mut c = Cursor { buf: body, pos: 0 };
        let legacy_version = c.u16()?;
        let random = c.random()?;
        let session_id = c.vec8()?;
        let cipher_suite = c.u16()?;
        let _compression = c.u8()?;
        let extensions = parse_extensions(&mut c, 0)?;
        Ok(ServerHello { legacy_version, random, session_id, cipher_suite, extensions })
    }

    /// The version the connection runs: `supported_versions`' choice, else `legacy_version`.
    pub fn version(&self) -> u16 {
        match self.extensions.supported_versions {
            Some(&[a, b]) => u16::from_be_bytes([a, b]),
            _ => self.legacy_version,
        }
    }

    /// Whether this is a HelloRetryRequest rather than the server's answer.
    pub fn is_retry_request(&self) -> bool {
        *self.random == HELLO_RETRY_RANDOM
    }
}

/// The name of a TLS version as users know it ("TLS 1.2"), or `None` for an unknown value.
pub fn version_name(version: u16) -> Option<&'static str> {
    Some(match version {
        0x0300 => "SSL 3.0",
        0x0301 => "TLS 1.0",
        0x0302 => "TLS 1.1",
        0x0303 => "TLS 1.2",
        0x0304 => "TLS 1.3",
        _ => return None,
    })
}

#[cfg(test)]
mod tests;
