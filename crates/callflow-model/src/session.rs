//! Sessions (SIP dialogs and orphan media flows), the messages that make them up, the tunnel they came through and their links to other sessions.

use crate::{DiameterMessage, DiameterSession, MediaStream, Problem, Timestamp};
use serde::{Deserialize, Serialize};
use std::fmt;
use std::net::{IpAddr, SocketAddr};

/// What kind of exchange a [`Session`] is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum SessionKind {
    /// A SIP dialog started by INVITE: a call.
    SipCall,
    /// A SIP REGISTER exchange.
    SipRegister,
    /// Any other SIP dialog or transaction (OPTIONS, SUBSCRIBE, MESSAGE, ...).
    SipOther,
    /// RTP/RTCP that no SIP/SDP exchange in the capture announced.
    Rtp,
    /// A Diameter session (RFC 6733): the requests and answers sharing one Session-Id.
    Diameter,
    /// A GTP control session: the GTPv2 PDN connection or GTPv1 PDP context of one
    /// subscriber, with its bearers.
    Gtp,
    /// A TLS connection whose application data was not read: no key, a cipher suite or
    /// version not decrypted, a handshake the capture missed, or records that did not
    /// decrypt (the `tls` object says which), or decrypted data of no protocol followed.
    Tls,
}

impl SessionKind {
    /// The name used in the JSON output and in filters.
    pub fn as_str(self) -> &'static str {
        match self {
            SessionKind::SipCall => "sip_call",
            SessionKind::SipRegister => "sip_register",
            SessionKind::SipOther => "sip_other",
            SessionKind::Rtp => "rtp",
            SessionKind::Diameter => "diameter",
            SessionKind::Gtp => "gtp",
            SessionKind::Tls => "tls",
        }
    }
}

/// The state of a session, in the vocabulary of Wireshark's "VoIP Calls" dialog.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
#[non_exhaustive]
pub enum CallState {
    /// A request was sent and no provisional ringing or final answer seen yet.
    CallSetup,
    /// A 18x provisional answer was seen, no final answer yet.
    Ringing,
    /// A 2xx answer established the dialog and no BYE was seen.
    InCall,
    /// The caller cancelled before a final answer (CANCEL, or 487 to the INVITE).
    Cancelled,
    /// The dialog was established and then ended by BYE (or the request was answered 2xx, for non-INVITE sessions).
    Completed,
    /// The request got a final 3xx-6xx answer.
    Rejected,
    /// The exchange broke: e.g. a BYE with no established dialog, or a timeout on the wire.
    Failed,
    /// Nothing seen allows a state to be given (e.g. a capture starting mid-dialog, or media only).
    Unknown,
}

impl CallState {
    /// The name used in the JSON output (`IN_CALL`, ...).
    pub fn as_str(self) -> &'static str {
        match self {
            CallState::CallSetup => "CALL_SETUP",
            CallState::Ringing => "RINGING",
            CallState::InCall => "IN_CALL",
            CallState::Cancelled => "CANCELLED",
            CallState::Completed => "COMPLETED",
            CallState::Rejected => "REJECTED",
            CallState::Failed => "FAILED",
            CallState::Unknown => "UNKNOWN",
        }
    }
}

impl fmt::Display for CallState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The transport a message travelled over.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
#[non_exhaustive]
pub enum Transport {
    /// UDP.
    Udp,
    /// TCP (the message may have been reassembled from several segments).
    Tcp,
    /// SCTP (one DATA chunk, or several reassembled).
    Sctp,
    /// WebSocket over TCP (RFC 7118; its Via transport is `WS`, or `WSS` under TLS): the
    /// message came in one WebSocket message, possibly reassembled from several frames
    /// and segments, after an HTTP upgrade handshake.
    Ws,
    /// TLS over TCP, decrypted with the endpoints' key log (SIP over TLS, RFC 3261 26.2).
    Tls,
    /// WebSocket over TLS (RFC 7118's `WSS`), decrypted with the endpoints' key log.
    Wss,
}

/// One side of a call.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Party {
    /// The side that sent the initial request.
    Caller,
    /// The side the initial request was sent to.
    Callee,
}

/// The application protocol of a [`Message`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
#[non_exhaustive]
pub enum Protocol {
    /// SIP (RFC 3261). Documents written before messages named their protocol hold SIP only.
    #[default]
    Sip,
    /// Diameter (RFC 6733).
    Diameter,
    /// GTP control plane (GTPv1-C, GTPv2-C); the message's `gtp` object says which version.
    Gtp,
}

impl Protocol {
    /// The name used in the JSON output.
    pub fn as_str(self) -> &'static str {
        match self {
            Protocol::Sip => "sip",
            Protocol::Diameter => "diameter",
            Protocol::Gtp => "gtp",
        }
    }
}

/// One message of a session, in capture order. The fields up to `summary` (and
/// `protocol`) are every protocol's; `method` to `retransmission` are SIP's, as they were
/// before other protocols came (a message of another protocol leaves them empty and puts
/// its own fields in an object named after the protocol).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Message {
    /// Capture time of the (last) packet that completed the message.
    pub ts: Timestamp,
    /// 1-based frame number in the capture, as Wireshark numbers them.
    pub frame: u64,
    /// Sender address.
    pub src: SocketAddr,
    /// Receiver address.
    pub dst: SocketAddr,
    /// Transport protocol.
    pub transport: Transport,
    /// Request method, for requests.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub method: Option<String>,
    /// Status code, for responses.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<u16>,
    /// Reason phrase, for responses.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// The CSeq header value, e.g. `1 INVITE`.
    pub cseq: String,
    /// A one-line summary as shown in a ladder diagram, e.g. `INVITE (SDP)` or `200 OK`.
    pub summary: String,
    /// True when this message repeats an earlier one of the same transaction.
    pub retransmission: bool,
    /// The message's application protocol.
    #[serde(default)]
    pub protocol: Protocol,
    /// A Diameter message's header fields and AVPs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub diameter: Option<Box<DiameterMessage>>,
    /// The GTP fields of a GTP message (version, type, TEID, sequence, cause, IEs).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gtp: Option<Box<crate::GtpMessage>>,
    /// How many Via header field values a SIP message carried (one per hop a request has
    /// passed, RFC 3261 section 8.1.1.7); 0 when not known (another protocol, or a document
    /// written before they were counted).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub vias: u8,
    /// The HEP capture agent id of the agent that mirrored the message, for messages
    /// received over HEP (`callflow_live::hep`); absent for captured ones.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub capture_agent: Option<u32>,
}

fn is_zero(n: &u8) -> bool {
    *n == 0
}

/// The encapsulation of a [`Tunnel`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum TunnelKind {
    /// A GTP-U bearer (3GPP TS 29.281).
    GtpU,
    /// GRE carrying IP (RFC 2784/2890, or PPTP's enhanced GRE).
    Gre,
    /// IP directly in IP.
    IpInIp,
}

/// The tunnel the packets of a session or flow came through: what ties SIP inside a
/// mobile bearer to that bearer, and keeps equal inner addresses of different tunnels apart.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Tunnel {
    /// The encapsulation.
    pub kind: TunnelKind,
    /// Source address of the outer IP header (of the first packet).
    pub src: IpAddr,
    /// Destination address of the outer IP header (of the first packet).
    pub dst: IpAddr,
    /// The GTP-U TEID of the first packet (that of its receiving end: the other direction
    /// has its own).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub teid: Option<u32>,
    /// The GRE key (for PPTP, the call id), when the header has one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key: Option<u32>,
}

/// How a session is related to another (see [`Related`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum Relation {
    /// Another leg of the same call through a back-to-back user agent, an SBC or a proxy
    /// hop that changed the Call-ID (written `leg`; `b2bua_leg`, its first name, is still read).
    #[serde(rename = "leg", alias = "b2bua_leg")]
    Leg,
    /// The call this one was transferred to, or from (REFER's Refer-To with Replaces, or
    /// the Referred-By of the new call's INVITE).
    Transfer,
    /// The session's packets came through the other session's bearer (a GTP tunnel).
    Bearer,
    /// The two sessions belong to the same subscriber (IMSI, MSISDN, IMPU).
    Subscriber,
}

/// A link from a session to another session of the same document: which, how, and the
/// value that joined them (a Call-ID, a TEID, an IMSI...).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Related {
    /// The other session's `id`.
    pub session: String,
    /// How the two are related.
    pub relation: Relation,
    /// The value that joined them.
    pub key: String,
}

/// One SIP dialog (or orphan media flow) with everything that belongs to it.
///
/// Every kind shares `id`, `kind`, `start`, `end`, `state`, `participants`, `messages`,
/// `anomalies`, `related` and `tunnel`; the SIP fields (`call_id` to `hangup_by`, and
/// `media`) stay where they were, and a kind added later puts its own fields in an
/// object named after it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Session {
    /// Stable identifier: the same capture always gives the same id.
    pub id: String,
    /// What kind of session this is.
    pub kind: SessionKind,
    /// The SIP Call-ID (empty for media-only sessions).
    pub call_id: String,
    /// The From URI of the first request.
    pub from: String,
    /// The To URI of the first request.
    pub to: String,
    /// The session's state at the end of the capture.
    pub state: CallState,
    /// Time of the first message or packet.
    pub start: Timestamp,
    /// Time of the last message or packet.
    pub end: Timestamp,
    /// INVITE to first final response, in milliseconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub setup_time_ms: Option<f64>,
    /// INVITE to first 18x response (post-dial delay), in milliseconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub post_dial_delay_ms: Option<f64>,
    /// First 18x response to the first final response (how long it rang), in milliseconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ring_time_ms: Option<f64>,
    /// Time from the 2xx answer to the BYE, in milliseconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub duration_ms: Option<f64>,
    /// Which side sent the BYE.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hangup_by: Option<Party>,
    /// Every address that sent or received a message of the session, in order of appearance.
    pub participants: Vec<SocketAddr>,
    /// The SIP messages, in capture order.
    pub messages: Vec<Message>,
    /// The RTP streams (with their RTCP) that belong to the session.
    pub media: Vec<MediaStream>,
    /// RTCP reports of the call that no stream of `media` took: those a HEP agent sent
    /// (matched to the call by the HEP correlation id, its Call-ID) about streams whose RTP
    /// was not seen, as agents such as rtpengine mirror RTCP but not RTP.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub rtcp: Vec<crate::RtcpReport>,
    /// Things that look wrong in the session (e.g. `BYE without a dialog`), for users to check.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub anomalies: Vec<String>,
    /// Other sessions of the document this one is linked to.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub related: Vec<Related>,
    /// The tunnel the session's first packet came through, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tunnel: Option<Tunnel>,
    /// The identities the session carries that can tie it to a subscriber (an IMSI in a
    /// GTP IE, a UE address in an SDP, an icid-value...), each once, in order of
    /// appearance; the document's `subscribers` are joined from them.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub subscriber_keys: Vec<SubscriberKey>,
    /// What is wrong with the session or any of its streams (thresholds in the configuration).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub problems: Vec<Problem>,
    /// A Diameter session's application, hosts and request/answer pairs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub diameter: Option<Box<DiameterSession>>,
    /// The GTP fields of a `gtp` session (subscriber, bearers, transactions).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gtp: Option<Box<crate::GtpSession>>,
    /// Each change of the call's media after the first offer/answer (a re-INVITE or UPDATE
    /// putting it on hold, resuming it, changing codec or address), in order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub media_changes: Vec<MediaChange>,
    /// Media was negotiated before the answer (a provisional response carried SDP) and RTP
    /// arrived before the 2xx, or with no 2xx at all: ringback or announcements.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub early_media: bool,
    /// The branches of a forked INVITE, one per To tag the responses carried, when there
    /// were several.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub branches: Vec<Branch>,
    /// The DTMF digits of the call from every source (RFC 4733 events of its streams, SIP
    /// INFO), in time order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub dtmf: Vec<DtmfDigit>,
    /// The TLS fields of a `tls` session (server name, version, cipher suite, why it was
    /// not read).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls: Option<Box<TlsSession>>,
}

/// Why the application data of a TLS connection was not read.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum TlsReason {
    /// The key log holds no secret for the connection's client random.
    NoKey,
    /// The cipher suite (or protocol version) is not one decrypted.
    UnsupportedCipher,
    /// The capture missed the hellos (it starts mid-connection), so the keys cannot be
    /// chosen.
    HandshakeMissing,
    /// A record did not authenticate with the logged keys (a wrong key, or records the
    /// capture lost); nothing after it was read.
    DecryptionFailed,
    /// Decrypted, but the application data is no protocol followed here.
    NotFollowed,
}

impl TlsReason {
    /// The name used in the JSON output.
    pub fn as_str(self) -> &'static str {
        match self {
            TlsReason::NoKey => "no_key",
            TlsReason::UnsupportedCipher => "unsupported_cipher",
            TlsReason::HandshakeMissing => "handshake_missing",
            TlsReason::DecryptionFailed => "decryption_failed",
            TlsReason::NotFollowed => "not_followed",
        }
    }
}

/// The TLS fields of a `tls` session.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TlsSession {
    /// The server name the client asked for (SNI).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sni: Option<String>,
    /// The version negotiated, as users know it (`TLS 1.2`, `TLS 1.3`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    /// The cipher suite negotiated: its IANA name when known, else `0x` and its number.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cipher_suite: Option<String>,
    /// Why the application data was not read.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<TlsReason>,
    /// Records seen, both directions.
    pub records: u64,
    /// Records decrypted, both directions.
    pub decrypted_records: u64,
    /// The session was resumed (TLS 1.2 session id or ticket, TLS 1.3 pre-shared key).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub resumed: bool,
}

impl Session {
    /// Gives back the spare capacity of the session's lists (its messages, its streams'
    /// reports and timelines...), which grew by doubling while the session was open. A
    /// session kept until the end of a run, as a whole document keeps them all, then
    /// costs what it holds and no more.
    pub fn shrink_to_fit(&mut self) {
        self.participants.shrink_to_fit();
        self.messages.shrink_to_fit();
        self.media.shrink_to_fit();
        self.media.iter_mut().for_each(crate::MediaStream::shrink_to_fit);
        self.rtcp.shrink_to_fit();
        self.anomalies.shrink_to_fit();
        self.related.shrink_to_fit();
        self.subscriber_keys.shrink_to_fit();
        self.problems.shrink_to_fit();
        self.media_changes.shrink_to_fit();
        self.branches.shrink_to_fit();
        self.dtmf.shrink_to_fit();
    }

    /// A session of `kind` named `id` with nothing in it yet (state `UNKNOWN`, times zero,
    /// every list empty): the base a handler fills with struct update syntax,
    /// `Session { state, messages, ..Session::empty(id, kind) }`, so that a field added to
    /// the model later needs no edit where sessions are built.
    pub fn empty(id: String, kind: SessionKind) -> Session {
        Session {
            id,
            kind,
            call_id: String::new(),
            from: String::new(),
            to: String::new(),
            state: CallState::Unknown,
            start: Timestamp::default(),
            end: Timestamp::default(),
            setup_time_ms: None,
            post_dial_delay_ms: None,
            ring_time_ms: None,
            duration_ms: None,
            hangup_by: None,
            participants: Vec::new(),
            messages: Vec::new(),
            media: Vec::new(),
            rtcp: Vec::new(),
            anomalies: Vec::new(),
            related: Vec::new(),
            tunnel: None,
            subscriber_keys: Vec::new(),
            problems: Vec::new(),
            diameter: None,
            gtp: None,
            media_changes: Vec::new(),
            early_media: false,
            branches: Vec::new(),
            dtmf: Vec::new(),
            tls: None,
        }
    }
}

/// What a [`MediaChange`] did.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum MediaChangeKind {
    /// A side stopped sending or receiving: `a=sendonly`, `recvonly`, `inactive`, or the
    /// RFC 2543 connection address `0.0.0.0`.
    Hold,
    /// The media went back to `sendrecv` after a hold.
    Resume,
    /// The codec (the first format of the media line) changed.
    Codec,
    /// The media address or port changed.
    Address,
}

/// One change of a call's media, from an SDP that differs from the same side's previous one.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct MediaChange {
    /// When the SDP that made the change was seen.
    pub ts: Timestamp,
    /// Its frame.
    pub frame: u64,
    /// What changed.
    pub kind: MediaChangeKind,
    /// The old and new values, e.g. `sendrecv -> sendonly` or `PCMU -> G729`.
    pub detail: String,
}

/// One branch of a forked INVITE: the responses carrying one To tag.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Branch {
    /// The To tag of the branch.
    pub to_tag: String,
    /// When its first response came.
    pub first_response: Timestamp,
    /// The status of its first response.
    pub first_status: u16,
    /// Its final status, when it got one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub final_status: Option<u16>,
}

/// Where a [`DtmfDigit`] was seen.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum DtmfSource {
    /// An RFC 4733 telephone event in an RTP stream.
    Rfc4733,
    /// A SIP INFO with an `application/dtmf-relay` or `application/dtmf` body.
    SipInfo,
}

/// One DTMF digit of a call.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct DtmfDigit {
    /// When it was seen (its first packet, or the INFO).
    pub ts: Timestamp,
    /// The digit: `0`-`9`, `*`, `#`, `A`-`D`, or an event code.
    pub digit: String,
    /// Where it was seen.
    pub source: DtmfSource,
    /// How long it lasted, when said.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub duration_ms: Option<f64>,
}

/// What kind of identity a [`SubscriberKey`] is. The order is the joining strength, strongest first.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum SubscriberKeyKind {
    /// The UE's IP address (GTP PAA, Diameter Framed-IP-Address, the address in SIP
    /// Contact/Via and SDP); valid only while the address was assigned.
    UeAddress,
    /// The IMS charging identifier (P-Charging-Vector `icid-value`, Diameter AF-Charging-Identifier).
    Icid,
    /// The International Mobile Subscriber Identity (digits only).
    Imsi,
    /// The subscriber's telephone number, E.164 digits without `+`.
    Msisdn,
    /// The IMS public user identity (a `sip:` or `tel:` URI).
    Impu,
    /// The IMS private user identity (`user@realm`).
    Impi,
    /// The equipment identity (IMEI or IMEISV digits).
    Imei,
    /// A Diameter Session-Id.
    DiameterSessionId,
    /// A GTP tunnel endpoint identifier, written `0x` and 8 hex digits.
    Teid,
}

impl SubscriberKeyKind {
    /// The name used in the JSON output.
    pub fn as_str(self) -> &'static str {
        match self {
            SubscriberKeyKind::UeAddress => "ue_address",
            SubscriberKeyKind::Icid => "icid",
            SubscriberKeyKind::Imsi => "imsi",
            SubscriberKeyKind::Msisdn => "msisdn",
            SubscriberKeyKind::Impu => "impu",
            SubscriberKeyKind::Impi => "impi",
            SubscriberKeyKind::Imei => "imei",
            SubscriberKeyKind::DiameterSessionId => "diameter_session_id",
            SubscriberKeyKind::Teid => "teid",
        }
    }
}

/// One identity a session carries (see [`Session::subscriber_keys`]).
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct SubscriberKey {
    /// What kind of identity.
    pub kind: SubscriberKeyKind,
    /// Its value, normalised as the kind says (an address as `Display` writes it).
    pub value: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn leg_relation_is_written_leg_and_read_under_its_first_name() {
        assert_eq!(serde_json::to_string(&Relation::Leg).unwrap(), "\"leg\"");
        assert_eq!(serde_json::from_str::<Relation>("\"b2bua_leg\"").unwrap(), Relation::Leg);
        assert_eq!(serde_json::from_str::<Relation>("\"leg\"").unwrap(), Relation::Leg);
        assert_eq!(serde_json::to_string(&Relation::Transfer).unwrap(), "\"transfer\"");
    }
}
