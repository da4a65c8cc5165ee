//! The GTP fields of a session and of a message: the subscriber, the bearers with their tunnels, QoS and user-plane counters, the request/response pairs, and each message's decoded IEs.

use serde::{Deserialize, Serialize};
use std::net::IpAddr;

/// What a GTP session follows.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum GtpScope {
    /// A GTPv2 PDN connection (Create Session to Delete Session) with its EPS bearers.
    PdnConnection,
    /// GTPv1 PDP contexts (Create PDP Context to Delete PDP Context), primary and secondary.
    PdpContext,
    /// Path management between two GTP nodes: echo, Version Not Supported, and on the
    /// user plane Error Indication and End Marker.
    Path,
}

/// The GTP object of a `gtp` session.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct GtpSession {
    /// 1 (GTPv1) or 2 (GTPv2).
    pub version: u8,
    /// What the session follows.
    pub scope: Option<GtpScope>,
    /// IMSI digits.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub imsi: Option<String>,
    /// MSISDN digits (E.164, no `+`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub msisdn: Option<String>,
    /// MEI / IMEI(SV) digits.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mei: Option<String>,
    /// The access point name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub apn: Option<String>,
    /// The UE's addresses (GTPv2 PAA, GTPv1 End User Address).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ue_addresses: Vec<IpAddr>,
    /// The RAT type's name (`EUTRAN`, `UTRAN`...).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rat_type: Option<String>,
    /// The user location last reported (`TAI 001-01/0x0001 ECGI 001-01/0x0000101`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub location: Option<String>,
    /// The APN-AMBR, kbps, uplink and downlink.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub apn_ambr_kbps: Option<(u32, u32)>,
    /// The control-plane tunnel endpoints each side announced.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub control_teids: Vec<GtpTeid>,
    /// The bearers (EPS bearers, or PDP contexts by NSAPI).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub bearers: Vec<GtpBearer>,
    /// Every request with its response, in the order the requests came.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub transactions: Vec<GtpTransaction>,
    /// Path management counters (for a `path` session).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<GtpPathCounters>,
}

/// Which way user traffic through a tunnel endpoint goes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum GtpDirection {
    /// From the UE towards the network (the endpoint is the gateway's).
    Uplink,
    /// Towards the UE (the endpoint is the eNodeB's, SGSN's or SGW's on S5/S8).
    Downlink,
}

/// One tunnel endpoint announced in an F-TEID (GTPv2) or a TEID IE (GTPv1).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct GtpTeid {
    /// The TEID.
    pub teid: u32,
    /// The endpoint's addresses.
    pub addresses: Vec<IpAddr>,
    /// The F-TEID interface type's name (`S1-U SGW GTP-U`...), GTPv2 only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub interface: Option<String>,
    /// Which traffic the endpoint receives (user-plane endpoints only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub direction: Option<GtpDirection>,
    /// The frame of the message that announced it.
    pub frame: u64,
}

/// Packets and bytes of user traffic (the T-PDUs' inner packets) in one direction.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct GtpTraffic {
    /// G-PDUs counted.
    pub packets: u64,
    /// The bytes of the packets they carried.
    pub bytes: u64,
}

/// One bearer: its identity, QoS, tunnel endpoints and user traffic.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct GtpBearer {
    /// The EPS bearer id (GTPv2).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ebi: Option<u8>,
    /// The NSAPI (GTPv1).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nsapi: Option<u8>,
    /// QoS class identifier (GTPv2).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub qci: Option<u8>,
    /// ARP priority level (GTPv2) or allocation/retention priority (GTPv1).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub arp: Option<u8>,
    /// ARP pre-emption capability and vulnerability (GTPv2).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub preemption: Option<(bool, bool)>,
    /// Maximum bit rate, kbps, uplink and downlink.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mbr_kbps: Option<(u64, u64)>,
    /// Guaranteed bit rate, kbps, uplink and downlink.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gbr_kbps: Option<(u64, u64)>,
    /// The user-plane tunnel endpoints of the bearer.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub teids: Vec<GtpTeid>,
    /// The bearer's cause in the response that created it, when it was not accepted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rejected: Option<String>,
    /// Whether a Delete Bearer / Delete Session / Delete PDP Context removed it.
    #[serde(default)]
    pub deleted: bool,
    /// User traffic towards the network.
    pub uplink: GtpTraffic,
    /// User traffic towards the UE.
    pub downlink: GtpTraffic,
}

/// A request and its response.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct GtpTransaction {
    /// The request's name.
    pub request: String,
    /// The request's frame.
    pub request_frame: u64,
    /// The sequence number.
    pub sequence: u32,
    /// The response's name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub response: Option<String>,
    /// The response's frame.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub response_frame: Option<u64>,
    /// Request to response, milliseconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub latency_ms: Option<f64>,
    /// The response's cause value.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cause: Option<u8>,
    /// The cause's name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cause_name: Option<String>,
    /// Whether the cause accepts the request.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub accepted: Option<bool>,
    /// How many times the request was sent again.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub retransmissions: u32,
}

fn is_zero(n: &u32) -> bool {
    *n == 0
}

/// Path management counters between two GTP nodes.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct GtpPathCounters {
    /// Echo Requests.
    pub echo_requests: u64,
    /// Echo Responses.
    pub echo_responses: u64,
    /// Error Indications (GTP-U).
    pub error_indications: u64,
    /// End Markers (GTP-U).
    pub end_markers: u64,
    /// Version Not Supported and other messages.
    pub other: u64,
}

/// The GTP object of a message.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct GtpMessage {
    /// 1 or 2.
    pub version: u8,
    /// The message type.
    pub message_type: u8,
    /// Its name (`Create Session Request`).
    pub name: String,
    /// The header's TEID (absent from GTPv2 echo).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub teid: Option<u32>,
    /// The sequence number.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sequence: Option<u32>,
    /// The cause value, for a message that has one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cause: Option<u8>,
    /// Whether the message was piggybacked on the one before it in the datagram.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub piggybacked: bool,
    /// The IEs, grouped ones with their children.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ies: Vec<GtpIe>,
    /// Why decoding stopped early (a truncated IE, a length that lies, grouping too deep).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// One IE of a GTP message.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct GtpIe {
    /// The IE type.
    #[serde(rename = "type")]
    pub ie_type: u8,
    /// Its name (`F-TEID`), `IE` for a type callflowd does not name.
    pub name: String,
    /// The instance (GTPv2).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub instance: Option<u8>,
    /// The decoded value, for the IEs callflowd decodes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<String>,
    /// The raw value in hex, for the others (grouped IEs have `children` instead).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub raw: Option<String>,
    /// The IEs inside a grouped IE.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub children: Vec<GtpIe>,
}
