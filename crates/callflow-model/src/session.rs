//! Sessions (SIP dialogs and orphan media flows) and the SIP messages that make them up.

use crate::{MediaStream, Timestamp};
use serde::{Deserialize, Serialize};
use std::fmt;
use std::net::SocketAddr;

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
}

impl SessionKind {
    /// The name used in the JSON output and in filters.
    pub fn as_str(self) -> &'static str {
        match self {
            SessionKind::SipCall => "sip_call",
            SessionKind::SipRegister => "sip_register",
            SessionKind::SipOther => "sip_other",
            SessionKind::Rtp => "rtp",
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

/// One SIP message of a session, in capture order.
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
}

/// One SIP dialog (or orphan media flow) with everything that belongs to it.
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
    /// Things that look wrong in the session (e.g. `BYE without a dialog`), for users to check.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub anomalies: Vec<String>,
}
