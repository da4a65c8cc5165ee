//! The top-level `callflow/v1` document: where the capture came from, counts, and the sessions.

use crate::{Session, Subscriber, Timestamp, Tunnel};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::net::SocketAddr;

fn is_zero(n: &u64) -> bool {
    *n == 0
}

/// The format identifier written in every document.
pub const FORMAT: &str = "callflow/v1";

/// The analysis of one capture.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Document {
    /// Always [`FORMAT`].
    pub format: String,
    /// What was read.
    pub source: SourceInfo,
    /// Packet and protocol counts.
    pub stats: Stats,
    /// Every session found, ordered by start time (then id).
    pub sessions: Vec<Session>,
    /// Every transport flow, in order of its first packet, with what it carries and who
    /// decided it (absent in documents written before flows were listed).
    #[serde(default)]
    pub flows: Vec<Flow>,
    /// The subscribers the sessions were joined into (docs/output-format.md, "Subscribers"):
    /// absent when no session carried a subscriber's identity.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub subscribers: Vec<Subscriber>,
    /// Operator statistics of the SIP calls and registrations (docs/kpis.md): absent when
    /// the capture has none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kpis: Option<Box<crate::Kpis>>,
}

/// One transport flow: the packets between two endpoints over one transport, both ways.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Flow {
    /// `udp`, `tcp` or `sctp`.
    pub transport: String,
    /// The endpoint that sent the flow's first packet.
    pub a: SocketAddr,
    /// The other endpoint.
    pub b: SocketAddr,
    /// What the flow carries, named as in `stats.by_protocol` (`sip`, `rtp`, `rtcp`, or the
    /// bare transport when nothing more is known).
    pub protocol: String,
    /// How sure the decision is: `announced` (an SDP named the endpoint), `signature`,
    /// `guessed`, `port`, or `none`.
    pub confidence: String,
    /// Who decided: `sdp`, `heuristic`, `ndpi`, or `none`.
    pub classifier: String,
    /// Packets, both ways.
    pub packets: u64,
    /// Bytes on the wire, both ways.
    pub bytes: u64,
    /// Time of the first packet.
    pub first_ts: Timestamp,
    /// Time of the last packet.
    pub last_ts: Timestamp,
    /// The tunnel the flow came through (its first packet's): flows between the same inner
    /// addresses in different tunnels are different flows.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tunnel: Option<Tunnel>,
}

/// The capture a document was made from.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SourceInfo {
    /// The path as given by the user.
    pub path: String,
    /// Packet records read.
    pub packets: u64,
    /// Size of the capture file in bytes (compressed size for gzip files).
    pub bytes: u64,
    /// Time of the first packet.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub first_ts: Option<Timestamp>,
    /// Time of the last packet.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_ts: Option<Timestamp>,
    /// The link types of the capture's interfaces, e.g. `ETHERNET`, `LINUX_SLL`.
    pub link_types: Vec<String>,
    /// False when reading stopped before the end of the capture (a truncated or damaged
    /// file): the sessions then cover only the packets before that point.
    pub complete: bool,
    /// Why reading stopped early, or other problems with the file as a whole.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub warnings: Vec<String>,
}

/// Packet counts over the whole capture.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Stats {
    /// Packets whose headers were decoded down to the transport layer (or as far as they go).
    pub packets_decoded: u64,
    /// Packets with a malformed or truncated layer that stopped decoding.
    pub malformed: u64,
    /// Counts per application protocol (`sip`, `rtp`, `rtcp`, `other`, ...).
    pub by_protocol: BTreeMap<String, ProtocolStats>,
    /// New flows seen after the flow list reached its bound (100,000): counted here, not
    /// listed in `flows`.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub flows_unlisted: u64,
    /// Flows forgotten after being idle for the idle timeout, when the analysis was asked
    /// to (an endless input): counted here, no longer listed in `flows`.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub flows_forgotten: u64,
    /// Which classifier labelled the traffic no signalling explained: `heuristic` or
    /// `ndpi` (absent in documents written before it was recorded).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub classifier: String,
    /// Connection-level Diameter (capabilities exchange, watchdogs, disconnects) counted
    /// per pair of peers, and Diameter over TLS, listed as encrypted.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub diameter_peers: Vec<crate::DiameterPeers>,
    /// What the capture itself dropped (a lossy mirror port), told apart from the
    /// network's losses (absent when nothing points to it); see docs/quality.md.
    #[serde(default, skip_serializing_if = "CaptureLoss::is_none")]
    pub capture_loss: CaptureLoss,
    /// How many sessions have problems, in all and per kind (absent when none has).
    #[serde(default, skip_serializing_if = "ProblemCounts::is_empty")]
    pub problems: ProblemCounts,
}

/// Sessions with problems: how many in all, and how many have each kind.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProblemCounts {
    /// Sessions with at least one problem.
    pub sessions: u64,
    /// Sessions with each problem, by its name (`high_loss`...).
    pub by_kind: BTreeMap<String, u64>,
}

impl ProblemCounts {
    /// True when no session has a problem.
    pub fn is_empty(&self) -> bool {
        self.sessions == 0
    }
}

/// Signs that the capture dropped packets, as opposed to the network.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CaptureLoss {
    /// Instants at which sequence gaps hit several unrelated RTP streams together.
    pub events: u64,
    /// RTP packets missing in those gaps.
    pub rtp_packets: u64,
    /// TCP bytes acknowledged by one side that the capture never saw the other side send.
    pub tcp_unseen_bytes: u64,
}

impl CaptureLoss {
    /// True when nothing points to capture loss.
    pub fn is_none(&self) -> bool {
        *self == CaptureLoss::default()
    }
}

/// Counts for one protocol.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProtocolStats {
    /// Packets.
    pub packets: u64,
    /// Bytes on the wire (captured frame length).
    pub bytes: u64,
    /// Distinct bidirectional flows.
    pub flows: u64,
}
