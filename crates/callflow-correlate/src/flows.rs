//! The flow list of a run: every transport flow with what it carries and who decided it.

use callflow_classify::{Classification, Confidence};
use callflow_model::{Flow, Timestamp};
use foldhash::HashMap;
use std::net::SocketAddr;

/// Most flows listed; a capture with more (a scan, say) has the rest counted, not listed,
/// so the list cannot grow without bound.
pub(crate) const MAX_FLOWS: usize = 100_000;

/// Who decided what a flow carries, and how sure it is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Decider {
    pub confidence: Confidence,
    pub classifier: &'static str,
}

impl Decider {
    /// An SDP offer or answer announced the endpoint.
    pub const SDP: Decider = Decider { confidence: Confidence::Announced, classifier: "sdp" };
    /// Nothing looked at the payload (handshakes, other transports).
    pub const NONE: Decider = Decider { confidence: Confidence::None, classifier: "none" };

    /// A classifier's verdict.
    pub fn of(verdict: &Classification) -> Decider {
        Decider { confidence: verdict.confidence, classifier: verdict.classifier }
    }
}

#[derive(Debug)]
struct Entry {
    order: u64,
    a: SocketAddr,
    b: SocketAddr,
    protocol: &'static str,
    decider: Decider,
    packets: u64,
    bytes: u64,
    first: Timestamp,
    last: Timestamp,
}

/// Flows by transport and unordered address pair.
#[derive(Debug, Default)]
pub(crate) struct FlowTable {
    flows: HashMap<(&'static str, SocketAddr, SocketAddr), Entry>,
    unlisted: u64,
}

/// The bare transports: a flow first counted under one of these takes the first more
/// specific protocol seen later (a TCP handshake before the SIP it carries).
fn is_bare(protocol: &str) -> bool {
    matches!(protocol, "udp" | "tcp" | "sctp")
}

impl FlowTable {
    /// Counts one packet from `src` to `dst` over `transport`, counted as `protocol`.
    #[allow(clippy::too_many_arguments)]
    pub fn packet(
        &mut self,
        transport: &'static str,
        src: SocketAddr,
        dst: SocketAddr,
        protocol: &'static str,
        decider: Decider,
        ts: Timestamp,
        bytes: u64,
    ) {
        let key = if src <= dst { (transport, src, dst) } else { (transport, dst, src) };
        let next = self.flows.len() as u64;
        if let Some(e) = self.flows.get_mut(&key) {
            e.packets += 1;
            e.bytes += bytes;
            e.last = e.last.max(ts);
            if is_bare(e.protocol) && !is_bare(protocol) {
                (e.protocol, e.decider) = (protocol, decider);
            }
            return;
        }
        if self.flows.len() >= MAX_FLOWS {
            self.unlisted += 1;
            return;
        }
        let entry = Entry { order: next, a: src, b: dst, protocol, decider, packets: 1, bytes, first: ts, last: ts };
        self.flows.insert(key, entry);
    }

    /// The flows in order of their first packet, and how many new flows were not listed.
    pub fn into_flows(self) -> (Vec<Flow>, u64) {
        let mut entries: Vec<(&'static str, Entry)> = self.flows.into_iter().map(|((t, _, _), e)| (t, e)).collect();
        entries.sort_unstable_by_key(|(_, e)| e.order);
        let flows = entries
            .into_iter()
            .map(|(transport, e)| Flow {
                transport: transport.to_string(),
                a: e.a,
                b: e.b,
                protocol: e.protocol.to_string(),
                confidence: e.decider.confidence.as_str().to_string(),
                classifier: e.decider.classifier.to_string(),
                packets: e.packets,
                bytes: e.bytes,
                first_ts: e.first,
                last_ts: e.last,
            })
            .collect();
        (flows, self.unlisted)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    #[test]
    fn both_directions_are_one_flow_named_by_its_most_specific_protocol() {
        let mut t = FlowTable::default();
        let (a, b) = (addr("10.0.0.1:40000"), addr("10.0.0.2:5060"));
        let sip = Decider { confidence: Confidence::Signature, classifier: "heuristic" };
        t.packet("tcp", a, b, "tcp", Decider::NONE, Timestamp::from_nanos(1), 60);
        t.packet("tcp", b, a, "tcp", Decider::NONE, Timestamp::from_nanos(2), 60);
        t.packet("tcp", a, b, "sip", sip, Timestamp::from_nanos(3), 600);
        t.packet("tcp", b, a, "tcp", Decider::NONE, Timestamp::from_nanos(4), 60);
        t.packet("udp", a, b, "udp", Decider::NONE, Timestamp::from_nanos(5), 100);
        let (flows, unlisted) = t.into_flows();
        assert_eq!(unlisted, 0);
        assert_eq!(flows.len(), 2, "TCP and UDP between the same endpoints are two flows");
        let f = &flows[0];
        assert_eq!((f.transport.as_str(), f.a, f.b, f.protocol.as_str()), ("tcp", a, b, "sip"));
        assert_eq!((f.confidence.as_str(), f.classifier.as_str()), ("signature", "heuristic"));
        assert_eq!(
            (f.packets, f.bytes, f.first_ts, f.last_ts),
            (4, 780, Timestamp::from_nanos(1), Timestamp::from_nanos(4))
        );
        assert_eq!(flows[1].protocol, "udp");
    }

    #[test]
    fn the_list_is_bounded() {
        let mut t = FlowTable::default();
        let dst = addr("10.0.0.2:53");
        for i in 0..(MAX_FLOWS as u32 + 5) {
            let src = SocketAddr::from((std::net::Ipv4Addr::from(0x0a00_0000 + i), 1000));
            t.packet("udp", src, dst, "udp", Decider::NONE, Timestamp::from_nanos(i64::from(i)), 80);
        }
        let (flows, unlisted) = t.into_flows();
        assert_eq!((flows.len(), unlisted), (MAX_FLOWS, 5));
    }
}
