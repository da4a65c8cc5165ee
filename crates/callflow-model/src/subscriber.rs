//! The subscriber view: one entry per mobile subscriber, with the identities that named it and the sessions of every kind joined to it.

use crate::{SessionKind, SubscriberKey, Timestamp};
use serde::{Deserialize, Serialize};

/// One subscriber: the identities its sessions carried, the addresses its UE had, and its
/// sessions (SIP, Diameter, GTP, media), each with the key that joined it.
///
/// A subscriber has at most one IMSI and one MSISDN: two sessions carrying different
/// IMSIs (or MSISDNs) are never put together, whatever else they share.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Subscriber {
    /// Stable within a document: `sub-1`, `sub-2`... in order of the subscriber's first session.
    pub id: String,
    /// The IMSI (digits only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub imsi: Option<String>,
    /// The MSISDN (E.164 digits, no `+`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub msisdn: Option<String>,
    /// The IMS public user identities (`sip:` and `tel:` URIs), in order of appearance.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub impu: Vec<String>,
    /// The IMS private user identities, in order of appearance.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub impi: Vec<String>,
    /// The equipment identity (IMEI or IMEISV digits).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub imei: Option<String>,
    /// The UE's addresses with when it had them, in order of their start.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ue_addresses: Vec<UeAddress>,
    /// The subscriber's sessions, in order of their start (then id).
    pub sessions: Vec<SubscriberSession>,
}

/// An address the subscriber's UE had, and when.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct UeAddress {
    /// The address, as `IpAddr`'s `Display` writes it.
    pub address: String,
    /// Start of the range.
    pub start: Timestamp,
    /// End of the range.
    pub end: Timestamp,
    /// True when a GTP session assigned the address (its PAA) over this range: sessions
    /// carrying the address join the subscriber only within such a range. False when the
    /// address was only seen in the subscriber's other sessions (the range is theirs).
    pub assigned: bool,
}

/// One session of a subscriber.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SubscriberSession {
    /// The session's `id` in the document's `sessions`.
    pub session: String,
    /// Its kind.
    pub kind: SessionKind,
    /// Its start.
    pub start: Timestamp,
    /// Its end.
    pub end: Timestamp,
    /// The key that joined it to the subscriber: the strongest of its keys that led to
    /// this subscriber (for the session that made the subscriber, its strongest identity).
    pub key: SubscriberKey,
}
