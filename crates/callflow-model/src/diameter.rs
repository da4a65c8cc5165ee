//! Diameter's own fields: a session's application, hosts and request/answer pairs, a message's header and AVP tree, and the per-peer counts of connection-level messages.

use crate::Timestamp;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::net::SocketAddr;

/// The Diameter fields of a [`Session`](crate::Session) of kind `diameter`: the messages
/// sharing one Session-Id.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct DiameterSession {
    /// The Session-Id.
    pub session_id: String,
    /// The application id of the session's first message.
    pub application_id: u32,
    /// Its short name from the dictionary (`Gx`, `S6a`), or the id when unknown.
    pub application: String,
    /// Origin-Host of the first request.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub origin_host: Option<String>,
    /// Origin-Realm of the first request.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub origin_realm: Option<String>,
    /// Destination-Host of the first request (or Origin-Host of the first answer).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub destination_host: Option<String>,
    /// Destination-Realm of the first request (or Origin-Realm of the first answer).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub destination_realm: Option<String>,
    /// Every request with its answer, in the order the requests were seen (an answer whose
    /// request is not in the capture has a transaction of its own, without a request).
    pub transactions: Vec<DiameterTransaction>,
    /// The PCC rules installed or removed (Gx Charging-Rule-Install / -Remove), in order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub charging_rules: Vec<ChargingRule>,
}

/// A request and its answer, paired by hop-by-hop and end-to-end identifiers between
/// the same two peers.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct DiameterTransaction {
    /// The command's request abbreviation with its kind where there is one (`CCR-I`, `ULR`,
    /// or `cmd 999` when the dictionary does not know it).
    pub command: String,
    /// The command code.
    pub command_code: u32,
    /// Hop-by-hop identifier.
    pub hop_by_hop: u32,
    /// End-to-end identifier.
    pub end_to_end: u32,
    /// Frame of the request (absent when only the answer was captured).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request_frame: Option<u64>,
    /// Time of the request.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request_ts: Option<Timestamp>,
    /// Frame of the answer (absent while unanswered).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub answer_frame: Option<u64>,
    /// Request to answer, in milliseconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub response_time_ms: Option<f64>,
    /// The answer's Result-Code.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub result_code: Option<u32>,
    /// The answer's Experimental-Result-Code (3GPP applications answer with it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub experimental_result_code: Option<u32>,
    /// The name of the result (`DIAMETER_SUCCESS`, `DIAMETER_ERROR_USER_UNKNOWN`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub result: Option<String>,
}

/// A PCC rule a Gx message installed or removed.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChargingRule {
    /// Frame of the message.
    pub frame: u64,
    /// `install` or `remove`.
    pub action: String,
    /// The rule names (Charging-Rule-Name, Charging-Rule-Base-Name), each once.
    pub names: Vec<String>,
    /// The QoS class (QCI) of the rule's QoS-Information, when it has one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub qci: Option<u32>,
}

/// The Diameter fields of a [`Message`](crate::Message).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct DiameterMessage {
    /// The command code.
    pub command_code: u32,
    /// The command's full name (`Credit-Control`), or `cmd 999`.
    pub command: String,
    /// The application id.
    pub application_id: u32,
    /// The application's short name (`Gx`), or its id.
    pub application: String,
    /// The R flag.
    pub request: bool,
    /// The command flags as letters, `R`, `P`, `E`, `T` or `-` (`RP--`).
    pub flags: String,
    /// Hop-by-hop identifier.
    pub hop_by_hop: u32,
    /// End-to-end identifier.
    pub end_to_end: u32,
    /// The Session-Id, when the message has one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub session_id: Option<String>,
    /// Result-Code (answers).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub result_code: Option<u32>,
    /// Experimental-Result-Code (answers).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub experimental_result_code: Option<u32>,
    /// The AVPs, grouped ones with theirs.
    pub avps: Vec<DiameterAvp>,
}

/// One AVP of a message's tree.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DiameterAvp {
    /// The AVP code.
    pub code: u32,
    /// The vendor id, when the V flag is set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vendor: Option<u32>,
    /// The name from the dictionary (absent for an AVP it does not know).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// The value as text: a number (with its name for an Enumerated), a string, an
    /// address; absent for a Grouped AVP and for data that only `hex` can show.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<String>,
    /// The data in hex, for octet strings and AVPs the dictionary does not know.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hex: Option<String>,
    /// The AVPs of a Grouped AVP.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub avps: Vec<DiameterAvp>,
}

/// Connection-level Diameter between two peers (CER/CEA, DWR/DWA, DPR/DPA, which have
/// no Session-Id), counted rather than made into sessions; and Diameter on the TLS port,
/// which cannot be read.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct DiameterPeers {
    /// One peer (the one that sent the first message seen).
    pub a: SocketAddr,
    /// The other.
    pub b: SocketAddr,
    /// The Origin-Hosts the peers announced, in order of appearance.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub hosts: Vec<String>,
    /// Messages by abbreviation (`CER`, `CEA`, `DWR`...).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub messages: BTreeMap<String, u64>,
    /// Requests paired with their answer.
    pub pairs: u64,
    /// Requests that got no answer.
    pub unanswered: u64,
    /// True for Diameter over TLS/DTLS (port 5868, SCTP PPID 47): nothing in it is read.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub encrypted: bool,
    /// Packets (encrypted) or messages (plain) between the peers.
    pub packets: u64,
    /// Bytes on the wire (encrypted) or of the messages (plain).
    pub bytes: u64,
    /// First packet or message.
    pub first: Timestamp,
    /// Last packet or message.
    pub last: Timestamp,
}
