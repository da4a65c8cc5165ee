//! TLS connections read with the endpoints' key log: each connection's hellos, keys and record decryption, its decrypted application data handed back to the router, and a `tls` session for a connection that could not be read.
//!
//! The router hands every record of a TCP connection that opened with TLS (cut by
//! `tls::frame_record`) to [`TlsHandler::on_record`] with the connection's key. The
//! handler follows the handshake in the clear (ClientHello: client random, SNI, offered
//! session id or ticket; ServerHello: server random, version, cipher suite, whether the
//! session is resumed), then, per direction:
//! - TLS 1.3: records after the ServerHello are protected with the handshake traffic
//!   secret until that side's Finished, then with its application traffic secret, moved on
//!   by each KeyUpdate;
//! - TLS 1.2: records after the side's ChangeCipherSpec are protected with keys from the
//!   master secret (the key log's, or the resumed session's from an earlier connection of
//!   the capture with the same session id or ticket).
//!
//! Decrypted application data goes back to the router, which frames it as it would a
//! plaintext TCP stream (SIP, or SIP over WebSocket) and hands the messages to their
//! handler. A connection is never half-read: the first record that does not authenticate
//! stops its decryption. A connection whose data was not read (no key, a cipher suite or
//! version not decrypted, a handshake the capture missed, a record that failed) or that
//! carried no protocol followed here becomes a `tls` session with the reason.
//!
//! Secrets are looked up once per direction and key change, never per record; plain
//! SIP and RTP never reach this module.

use crate::ctx::PacketCtx;
use crate::handler::{by_first_frame, Handled, Handler, Services, StreamFraming};
use crate::ids::session_id;
use callflow_classify::AppProtocol;
use callflow_decode::packet::Tunnel;
use callflow_decode::tls::crypto::{CipherSuite, RecordKeys, Side};
use callflow_decode::tls::keylog::SharedKeyLog;
use callflow_decode::tls::{self, ClientHello, ContentType, Record, ServerHello};
use callflow_decode::Timestamp;
use callflow_model::{Session, SessionKind, TlsReason, TlsSession};
use std::collections::HashMap;
use std::net::SocketAddr;

/// A TCP connection: its tunnel's number and its two addresses, lower first.
pub(crate) type ConnKey = (u32, SocketAddr, SocketAddr);

/// Most handshake bytes buffered per direction while a message is incomplete (a
/// certificate chain is a few KiB; past this the handshake is given up on).
const MAX_HANDSHAKE_BUFFER: usize = 1 << 16;

/// Most resumable TLS 1.2 sessions remembered (session ids and tickets).
const MAX_RESUMABLE: usize = 65_536;

/// What the connection's decrypted data is, once the router decided.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Inner {
    /// A protocol followed, framed so: its messages go to its handler.
    Followed(StreamFraming),
    /// Not a protocol followed here.
    NotFollowed,
}

/// Where one direction stands.
#[derive(Debug, Default)]
struct Direction {
    /// Handshake bytes not yet made into whole messages (plaintext, or decrypted).
    handshake: Vec<u8>,
    /// Records from here on are protected (TLS 1.2: after ChangeCipherSpec; TLS 1.3:
    /// after the ServerHello).
    protected: bool,
    /// The keys in use, once found.
    keys: Option<RecordKeys>,
    /// TLS 1.3: the side's Finished was seen, application traffic keys are in use.
    application: bool,
    /// The next byte offset of this direction's decrypted application data.
    plain_seq: u32,
}

/// One TLS connection.
#[derive(Debug)]
struct Conn {
    first_frame: u64,
    start: Timestamp,
    last: Timestamp,
    tunnel: Option<Tunnel>,
    /// The end that sent the ClientHello, once seen.
    client: Option<SocketAddr>,
    server: Option<SocketAddr>,
    client_random: Option<[u8; 32]>,
    server_random: Option<[u8; 32]>,
    sni: Option<String>,
    version: Option<u16>,
    suite: Option<u16>,
    /// The client offered encrypt-then-MAC; the server's agreement makes it used.
    etm_offered: bool,
    etm: bool,
    /// The session id the client offered, and the ticket.
    offered_session_id: Vec<u8>,
    offered_ticket: Vec<u8>,
    /// The session id the server gave, and a ticket it issued.
    session_id: Vec<u8>,
    issued_ticket: Vec<u8>,
    resumed: bool,
    /// Client, server.
    dirs: [Direction; 2],
    reason: Option<TlsReason>,
    records: u64,
    decrypted: u64,
    inner: Option<Inner>,
}

impl Conn {
    fn new(ctx: &PacketCtx<'_>) -> Conn {
        Conn {
            first_frame: ctx.frame,
            start: ctx.ts,
            last: ctx.ts,
            tunnel: ctx.tunnel.copied(),
            client: None,
            server: None,
            client_random: None,
            server_random: None,
            sni: None,
            version: None,
            suite: None,
            etm_offered: false,
            etm: false,
            offered_session_id: Vec::new(),
            offered_ticket: Vec::new(),
            session_id: Vec::new(),
            issued_ticket: Vec::new(),
            resumed: false,
            dirs: Default::default(),
            reason: None,
            records: 0,
            decrypted: 0,
            inner: None,
        }
    }

    fn side_of(&self, src: SocketAddr) -> Side {
        if self.server == Some(src) {
            Side::Server
        } else {
            Side::Client
        }
    }

    fn tls13(&self) -> bool {
        self.version == Some(0x0304)
    }

    /// Stops reading the connection for `reason` (the first reason stays).
    fn give_up(&mut self, reason: TlsReason) {
        self.reason.get_or_insert(reason);
        for d in &mut self.dirs {
            d.keys = None;
            d.handshake = Vec::new();
        }
    }
}

fn index(side: Side) -> usize {
    match side {
        Side::Client => 0,
        Side::Server => 1,
    }
}

/// The TLS connections of the capture.
#[derive(Debug)]
pub(crate) struct TlsHandler {
    keys: SharedKeyLog,
    conns: HashMap<ConnKey, Conn>,
    /// TLS 1.2 master secrets of the connections decrypted, by session id and by ticket,
    /// for the connections that resume them.
    resumable: HashMap<Vec<u8>, Vec<u8>>,
    /// Scratch space for one record's plaintext.
    scratch: Vec<u8>,
}

impl TlsHandler {
    /// A handler reading secrets from `keys`.
    pub fn new(keys: SharedKeyLog) -> Self {
        TlsHandler { keys, conns: HashMap::new(), resumable: HashMap::new(), scratch: Vec::new() }
    }

    /// Reads one whole record of connection `conn` sent by `ctx.src`; returns the
    /// application data it decrypted to, if any.
    pub fn on_record(&mut self, ctx: &PacketCtx<'_>, conn_key: ConnKey, bytes: &[u8]) -> Option<&[u8]> {
        let conn = self.conns.entry(conn_key).or_insert_with(|| Conn::new(ctx));
        conn.last = conn.last.max(ctx.ts);
        conn.records += 1;
        let Ok((record, _)) = Record::parse(bytes) else { return None };
        if conn.client.is_none() && record.content_type != ContentType::Handshake {
            // The capture missed the start of the connection.
            conn.give_up(TlsReason::HandshakeMissing);
        }
        if conn.reason.is_some() {
            return None;
        }
        let side = if conn.client.is_none() { Side::Client } else { conn.side_of(ctx.src) };
        let dir = index(side);
        match record.content_type {
            ContentType::ChangeCipherSpec => {
                // TLS 1.3 sends it for middleboxes only; in TLS 1.2 it switches the direction on.
                if !conn.tls13() {
                    if let Some(d) = conn.dirs.get_mut(dir) {
                        d.protected = true;
                    }
                }
                None
            }
            _ if conn.dirs.get(dir).is_some_and(|d| d.protected) => {
                let plain = decrypt(conn, &self.keys, &mut self.resumable, side, &record, &mut self.scratch)?;
                conn.decrypted += 1;
                match plain {
                    ContentType::ApplicationData => Some(&self.scratch[..]),
                    ContentType::Handshake => {
                        let data = std::mem::take(&mut self.scratch);
                        on_handshake(conn, &self.keys, ctx, side, &data);
                        self.scratch = data;
                        None
                    }
                    _ => None,
                }
            }
            ContentType::Handshake => {
                on_handshake(conn, &self.keys, ctx, side, record.fragment);
                None
            }
            // An application data record before the keys (a capture without the handshake
            // was caught above): nothing to read it with.
            ContentType::ApplicationData => {
                conn.give_up(TlsReason::HandshakeMissing);
                None
            }
            ContentType::Alert | ContentType::Heartbeat => None,
        }
    }

    /// What the connection's decrypted data was decided to be, if it was.
    pub fn inner(&self, conn: ConnKey) -> Option<Inner> {
        self.conns.get(&conn).and_then(|c| c.inner)
    }

    /// Records what the connection's decrypted data is.
    pub fn set_inner(&mut self, conn: ConnKey, inner: Inner) {
        if let Some(c) = self.conns.get_mut(&conn) {
            c.inner = Some(inner);
        }
    }

    /// The stream offset at which the next `len` decrypted bytes from `src` start (for the
    /// reassembler that frames them), moved past them.
    pub fn plain_offset(&mut self, conn: ConnKey, src: SocketAddr, len: usize) -> u32 {
        let Some(c) = self.conns.get_mut(&conn) else { return 0 };
        let dir = index(c.side_of(src));
        let Some(d) = c.dirs.get_mut(dir) else { return 0 };
        let at = d.plain_seq;
        d.plain_seq = d.plain_seq.wrapping_add(len as u32);
        at
    }
}

/// Decrypts `record` of `side`, finding its keys first if need be. `None` (and the
/// connection given up on) when it cannot.
fn decrypt(
    conn: &mut Conn,
    log: &SharedKeyLog,
    resumable: &mut HashMap<Vec<u8>, Vec<u8>>,
    side: Side,
    record: &Record<'_>,
    out: &mut Vec<u8>,
) -> Option<ContentType> {
    let dir = index(side);
    if conn.dirs.get(dir).is_some_and(|d| d.keys.is_none()) {
        match keys_for(conn, log, resumable, side) {
            Ok(keys) => {
                if let Some(d) = conn.dirs.get_mut(dir) {
                    d.keys = Some(keys);
                }
            }
            Err(reason) => {
                conn.give_up(reason);
                return None;
            }
        }
    }
    let keys = conn.dirs.get_mut(dir).and_then(|d| d.keys.as_mut())?;
    match keys.decrypt(record, out) {
        Ok(content_type) => Some(content_type),
        Err(_) => {
            conn.give_up(TlsReason::DecryptionFailed);
            None
        }
    }
}

/// The keys of `side`'s first protected records.
fn keys_for(
    conn: &Conn,
    log: &SharedKeyLog,
    resumable: &mut HashMap<Vec<u8>, Vec<u8>>,
    side: Side,
) -> Result<RecordKeys, TlsReason> {
    let (Some(client_random), Some(server_random), Some(suite_id), Some(version)) =
        (conn.client_random, conn.server_random, conn.suite, conn.version)
    else {
        return Err(TlsReason::HandshakeMissing);
    };
    let suite = CipherSuite::by_id(suite_id).ok_or(TlsReason::UnsupportedCipher)?;
    // SSL 3.0 to TLS 1.1 use another PRF and record layout; a TLS 1.3 number with a TLS 1.2
    // connection (or the reverse) is no suite at all.
    if version < 0x0303 || suite.tls13 != (version == 0x0304) {
        return Err(TlsReason::UnsupportedCipher);
    }
    let secrets = log.get(&client_random);
    if suite.tls13 {
        let secret = secrets.and_then(|s| match side {
            Side::Client => s.client_handshake,
            Side::Server => s.server_handshake,
        });
        let secret = secret.ok_or(TlsReason::NoKey)?;
        return RecordKeys::tls13(suite, &secret).ok_or(TlsReason::NoKey);
    }
    let master = secrets.and_then(|s| s.master_secret).or_else(|| {
        // A resumed session: the master secret of the connection that made it.
        let by_id = (!conn.session_id.is_empty()).then(|| resumable.get(&conn.session_id)).flatten();
        let by_ticket = (!conn.offered_ticket.is_empty()).then(|| resumable.get(&conn.offered_ticket)).flatten();
        conn.resumed.then(|| by_id.or(by_ticket).cloned()).flatten()
    });
    let master = master.ok_or(TlsReason::NoKey)?;
    if resumable.len() < MAX_RESUMABLE {
        for id in [&conn.session_id, &conn.issued_ticket] {
            if !id.is_empty() {
                resumable.insert(id.clone(), master.clone());
            }
        }
    }
    RecordKeys::tls12(suite, &master, &client_random, &server_random, side, conn.etm).ok_or(TlsReason::NoKey)
}

/// Reads the handshake bytes `data` of `side` (plaintext or decrypted).
fn on_handshake(conn: &mut Conn, log: &SharedKeyLog, ctx: &PacketCtx<'_>, side: Side, data: &[u8]) {
    let dir = index(side);
    let Some(d) = conn.dirs.get_mut(dir) else { return };
    d.handshake.extend_from_slice(data);
    if d.handshake.len() > MAX_HANDSHAKE_BUFFER {
        conn.give_up(TlsReason::HandshakeMissing);
        return;
    }
    let buf = std::mem::take(&mut d.handshake);
    let mut used = 0;
    while let Ok((msg, len)) = tls::handshake_message(buf.get(used..).unwrap_or_default()) {
        used += len;
        on_message(conn, log, ctx, side, msg.msg_type, msg.body);
        if conn.reason.is_some() {
            return;
        }
    }
    if let Some(d) = conn.dirs.get_mut(dir) {
        d.handshake = buf.get(used..).unwrap_or_default().to_vec();
    }
}

/// One handshake message of `side`.
fn on_message(conn: &mut Conn, log: &SharedKeyLog, ctx: &PacketCtx<'_>, side: Side, msg_type: u8, body: &[u8]) {
    match msg_type {
        tls::HANDSHAKE_CLIENT_HELLO if conn.server_random.is_none() => {
            let Ok(hello) = ClientHello::parse(body) else {
                conn.give_up(TlsReason::HandshakeMissing);
                return;
            };
            conn.client = Some(ctx.src);
            conn.server = Some(ctx.dst);
            // After a HelloRetryRequest the second ClientHello keeps the random.
            conn.client_random = Some(*hello.random);
            conn.sni = hello.extensions.server_name.map(str::to_string);
            conn.etm_offered = hello.extensions.encrypt_then_mac;
            conn.offered_session_id = hello.session_id.to_vec();
            conn.offered_ticket = hello.extensions.session_ticket.unwrap_or_default().to_vec();
        }
        tls::HANDSHAKE_SERVER_HELLO if side == Side::Server && conn.server_random.is_none() => {
            let Ok(hello) = ServerHello::parse(body) else {
                conn.give_up(TlsReason::HandshakeMissing);
                return;
            };
            conn.version = Some(hello.version());
            conn.suite = Some(hello.cipher_suite);
            if hello.is_retry_request() {
                return;
            }
            conn.server_random = Some(*hello.random);
            conn.session_id = hello.session_id.to_vec();
            conn.etm = conn.etm_offered && hello.extensions.encrypt_then_mac;
            if conn.tls13() {
                conn.resumed = hello.extensions.pre_shared_key;
                // Everything after the ServerHello is protected, both ways.
                for d in &mut conn.dirs {
                    d.protected = true;
                }
            } else {
                // TLS 1.2 resumes a session by echoing its id, or by accepting a ticket
                // (then answering with ChangeCipherSpec at once: seen as no certificate).
                conn.resumed = !hello.session_id.is_empty() && hello.session_id == conn.offered_session_id.as_slice()
                    || !conn.offered_ticket.is_empty();
            }
        }
        tls::HANDSHAKE_NEW_SESSION_TICKET if !conn.tls13() => {
            // TLS 1.2 (RFC 5077): lifetime hint, then the ticket.
            if let Some(ticket) = body.get(6..).filter(|t| !t.is_empty()) {
                conn.issued_ticket = ticket.to_vec();
            }
        }
        tls::HANDSHAKE_FINISHED if conn.tls13() => {
            let dir = index(side);
            if conn.dirs.get(dir).is_some_and(|d| d.application) {
                return;
            }
            let suite = conn.suite.and_then(CipherSuite::by_id);
            let secrets = conn.client_random.and_then(|r| log.get(&r));
            let secret = secrets.and_then(|s| match side {
                Side::Client => s.client_traffic,
                Side::Server => s.server_traffic,
            });
            match suite.zip(secret).and_then(|(suite, secret)| RecordKeys::tls13(suite, &secret)) {
                Some(keys) => {
                    if let Some(d) = conn.dirs.get_mut(dir) {
                        d.keys = Some(keys);
                        d.application = true;
                    }
                }
                None => conn.give_up(TlsReason::NoKey),
            }
        }
        tls::HANDSHAKE_KEY_UPDATE if conn.tls13() => {
            let updated = conn.dirs.get_mut(index(side)).and_then(|d| d.keys.as_mut()).is_some_and(|k| k.key_update());
            if !updated {
                conn.give_up(TlsReason::DecryptionFailed);
            }
        }
        _ => {}
    }
}

impl Handler for TlsHandler {
    type FlowState = ();
    type Key = ConnKey;
    const PROTOCOL: AppProtocol = AppProtocol::Tls;

    fn probe(&self, _payload: &[u8]) -> bool {
        false
    }

    /// Records come through [`TlsHandler::on_record`], cut by the router's reassembler.
    fn on_payload(
        &mut self,
        _protocol: AppProtocol,
        _ctx: &PacketCtx<'_>,
        _state: &mut (),
        _bytes: &[u8],
        _services: &mut Services,
    ) -> Handled {
        Handled::NotOurs
    }

    /// A connection is over when it has been quiet for the idle time: its keys must
    /// outlive quiet spells between a trunk's keep-alives.
    fn over(&self, now: Timestamp, services: &Services) -> Vec<ConnKey> {
        let idle = services.lifetimes.idle;
        by_first_frame(
            self.conns.iter().filter(|(_, c)| now.nanos_since(c.last) > idle).map(|(k, c)| (c.first_frame, *k)),
        )
    }

    fn open(&self, _services: &Services) -> Vec<ConnKey> {
        by_first_frame(self.conns.iter().map(|(k, c)| (c.first_frame, *k)))
    }

    /// A `tls` session for a connection whose data was not read or not followed; nothing
    /// for one whose messages went to their handler.
    fn close(&mut self, key: ConnKey, _services: &mut Services) -> Option<Session> {
        let conn = self.conns.remove(&key)?;
        let reason = match (conn.reason, conn.inner) {
            (Some(reason), _) => reason,
            (None, Some(Inner::Followed(_))) => return None,
            // Decrypted (or nothing to decrypt yet) and not ours.
            (None, _) => TlsReason::NotFollowed,
        };
        let (_, a, b) = key;
        let client = conn.client.unwrap_or(a);
        let server = conn.server.unwrap_or(b);
        let name = format!("{client}-{server}");
        let cipher_suite = conn.suite.map(|id| match CipherSuite::by_id(id) {
            Some(s) => s.name.to_string(),
            None => format!("0x{id:04x}"),
        });
        let version = conn.version.map(|v| tls::version_name(v).map_or_else(|| format!("0x{v:04x}"), str::to_string));
        Some(Session {
            start: conn.start,
            end: conn.last,
            participants: vec![client, server],
            tunnel: conn.tunnel.as_ref().map(crate::ctx::tunnel_out),
            tls: Some(Box::new(TlsSession {
                sni: conn.sni,
                version,
                cipher_suite,
                reason: Some(reason),
                records: conn.records,
                decrypted_records: conn.decrypted,
                resumed: conn.resumed,
            })),
            ..Session::empty(session_id(SessionKind::Tls.as_str(), name.as_bytes(), conn.first_frame), SessionKind::Tls)
        })
    }
}
