//! The flow list of a run: every transport flow with what it carries and who decided it.

use crate::ctx::{tunnel_out, PacketCtx};
use crate::media::MediaMemo;
use crate::stats::{transport_name, Counted};
use callflow_classify::{Classification, Confidence};
use callflow_model::{Flow, Timestamp, Transport, Tunnel};
use foldhash::{HashMap, HashSet};
use std::hash::{BuildHasher, Hash, Hasher};
use std::net::{IpAddr, SocketAddr};

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
    transport: Transport,
    a: SocketAddr,
    b: SocketAddr,
    protocol: Counted,
    decider: Decider,
    packets: u64,
    bytes: u64,
    first: Timestamp,
    last: Timestamp,
    /// What the analysis remembers about the flow between packets (see [`FlowId`]).
    memo: FlowMemo,
    /// The flow was forgotten: the next packet with its handle starts a new flow.
    vacant: bool,
    tunnel: Option<Tunnel>,
}

impl Entry {
    fn new(ctx: &PacketCtx<'_>) -> Entry {
        // WebSocket messages travel in a TCP flow.
        let transport = if ctx.transport == Transport::Ws { Transport::Tcp } else { ctx.transport };
        let (src, dst) = (ctx.src, ctx.dst);
        // The flow is named in the direction of its first packet (usually the initiator's).
        Entry {
            transport,
            a: src,
            b: dst,
            protocol: Counted::Bare(transport),
            decider: Decider::NONE,
            packets: 0,
            bytes: 0,
            first: Timestamp::default(),
            last: Timestamp::default(),
            memo: FlowMemo::default(),
            vacant: false,
            tunnel: ctx.tunnel.map(tunnel_out),
        }
    }

    fn summary(&self) -> Flow {
        Flow {
            transport: transport_name(self.transport).to_string(),
            a: self.a,
            b: self.b,
            protocol: self.protocol.as_str().to_string(),
            confidence: self.decider.confidence.as_str().to_string(),
            classifier: self.decider.classifier.to_string(),
            packets: self.packets,
            bytes: self.bytes,
            first_ts: self.first,
            last_ts: self.last,
            tunnel: self.tunnel,
        }
    }
}

/// What the analysis keeps per listed flow so that the next packet of the flow finds its
/// state without hashing its addresses again: the statistics counters it was already
/// counted in, and per direction the media binding and stream it went to last.
#[derive(Debug, Default)]
pub(crate) struct FlowMemo {
    /// Bit `i` set: the flow was already counted in statistics counter `i`.
    pub counted: u64,
    /// Per direction (`a` to `b`, then `b` to `a`): where the media went last.
    pub media: [MediaMemo; 2],
}

/// A handle on a listed flow, a plain index. Handles are given out in the order flows are
/// first seen, so the front stage that finds them ([`FlowIndex`]) and the analysis that
/// counts them ([`FlowTable`]) may run on different threads. A handle is valid until its
/// flow is forgotten (only with [`FlowIndex::forgetting`]): the front stage then says so
/// in the frame where it forgot it ([`Prepared::forgotten`](crate::front::Prepared)), before
/// any later frame can reuse the index for a new flow.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct FlowId(u32);

/// Finds the flow of a packet: by transport and unordered address pair, one hash per packet.
///
/// It is all the analysis needs to know of a flow's identity; what it keeps per flow is in
/// the [`FlowTable`], reached through the [`FlowId`] without hashing again.
#[derive(Debug, Default)]
pub(crate) struct FlowIndex {
    index: HashMap<FlowKey, u32>,
    /// Hashes of the flows seen after the list was full, so each is counted once.
    unlisted: HashSet<u64>,
    /// Unlisted flows past [`MAX_UNLISTED_TRACKED`]: counted per packet, an upper bound.
    unlisted_overflow: u64,
    /// How long a flow may be idle before it is forgotten; `None`: flows are never
    /// forgotten (a capture file: the document lists them all).
    forget_after: Option<i64>,
    /// With forgetting, per handle: the flow's key and its last packet's time (`None`: free).
    live: Vec<Option<(FlowKey, Timestamp)>>,
    /// Handles of forgotten flows, for new flows to reuse.
    free: Vec<u32>,
}

/// The flows seen after the list is full are remembered by a 64-bit hash so that each is
/// counted once; past this many the count is of packets (so memory stays bounded).
const MAX_UNLISTED_TRACKED: usize = 1_000_000;

/// A flow's identity: transport, tunnel and the unordered address pair, packed so that
/// hashing it is four word writes instead of the field-by-field walk of `SocketAddr`'s `Hash`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct FlowKey {
    low: u128,
    high: u128,
    /// Ports, address families and the transport.
    rest: u64,
    /// The tunnel's number ([`crate::front::Tunnels`]), 0 outside any tunnel.
    tunnel: u32,
}

impl Hash for FlowKey {
    fn hash<H: Hasher>(&self, state: &mut H) {
        state.write_u128(self.low);
        state.write_u128(self.high);
        state.write_u64(self.rest);
        state.write_u32(self.tunnel);
    }
}

impl FlowKey {
    fn new(transport: Transport, tunnel: u32, a: SocketAddr, b: SocketAddr) -> FlowKey {
        let (ia, fa) = ip_bits(a.ip());
        let (ib, fb) = ip_bits(b.ip());
        let t = match transport {
            Transport::Udp => 1,
            Transport::Tcp | Transport::Ws | Transport::Tls | Transport::Wss => 2,
            Transport::Sctp => 3,
            _ => 0,
        };
        let rest = u64::from(a.port()) | u64::from(b.port()) << 16 | u64::from(fa | fb << 1 | t << 2) << 32;
        FlowKey { low: ia, high: ib, rest, tunnel }
    }
}

/// An address as 128 bits and whether it was IPv6 (an IPv4 address and its IPv4-mapped
/// IPv6 form are different flows, as they are different `SocketAddr`s).
fn ip_bits(ip: IpAddr) -> (u128, u8) {
    match ip {
        IpAddr::V4(v4) => (u128::from(u32::from(v4)), 0),
        IpAddr::V6(v6) => (u128::from(v6), 1),
    }
}

impl FlowIndex {
    /// An index that forgets the flows idle for longer than `idle` (in capture time), for an
    /// endless input: the list then holds the flows in progress, not every flow ever seen.
    pub fn forgetting(idle: std::time::Duration) -> FlowIndex {
        let idle = i64::try_from(idle.as_nanos()).unwrap_or(i64::MAX);
        FlowIndex { forget_after: Some(idle), ..FlowIndex::default() }
    }

    /// Finds or lists the flow between `src` and `dst` over `transport` in tunnel number `tunnel` (0 for none), seen at `ts`; `None` once the list
    /// is full and the flow is not in it.
    pub fn lookup(
        &mut self,
        transport: Transport,
        tunnel: u32,
        src: SocketAddr,
        dst: SocketAddr,
        ts: Timestamp,
    ) -> Option<FlowId> {
        let key = if src <= dst {
            FlowKey::new(transport, tunnel, src, dst)
        } else {
            FlowKey::new(transport, tunnel, dst, src)
        };
        if let Some(&i) = self.index.get(&key) {
            if self.forget_after.is_some() {
                if let Some(Some((_, last))) = self.live.get_mut(i as usize) {
                    *last = (*last).max(ts);
                }
            }
            return Some(FlowId(i));
        }
        if self.index.len() >= MAX_FLOWS {
            if self.unlisted.len() < MAX_UNLISTED_TRACKED {
                self.unlisted.insert(foldhash::fast::FixedState::with_seed(0).hash_one(key));
            } else {
                self.unlisted_overflow += 1;
            }
            return None;
        }
        let i = match self.free.pop() {
            Some(i) => i,
            None if self.forget_after.is_some() => self.live.len() as u32,
            None => self.index.len() as u32,
        };
        self.index.insert(key, i);
        if self.forget_after.is_some() {
            match self.live.get_mut(i as usize) {
                Some(slot) => *slot = Some((key, ts)),
                None => self.live.push(Some((key, ts))),
            }
        }
        Some(FlowId(i))
    }

    /// Forgets the flows idle since before `now` minus the idle time (none unless made with
    /// [`FlowIndex::forgetting`]) and returns their handles, lowest first.
    pub fn forget_idle(&mut self, now: Timestamp) -> Vec<FlowId> {
        let Some(idle) = self.forget_after else { return Vec::new() };
        let mut forgotten = Vec::new();
        for (i, slot) in self.live.iter_mut().enumerate() {
            if let Some((key, last)) = *slot {
                if now.as_nanos().saturating_sub(last.as_nanos()) > idle {
                    self.index.remove(&key);
                    *slot = None;
                    self.free.push(i as u32);
                    forgotten.push(FlowId(i as u32));
                }
            }
        }
        // Reused lowest first, so handles stay dense.
        self.free.sort_unstable_by(|a, b| b.cmp(a));
        forgotten
    }

    /// How many flows were seen after the list was full.
    pub fn unlisted(&self) -> u64 {
        self.unlisted.len() as u64 + self.unlisted_overflow
    }
}

/// Every listed flow with what it carries, by [`FlowId`].
#[derive(Debug, Default)]
pub(crate) struct FlowTable {
    entries: Vec<Entry>,
    /// Flows forgotten (see [`FlowIndex::forgetting`]) and not yet handed out, summarised.
    forgotten: Vec<Flow>,
    /// How many flows were forgotten in all.
    forgotten_count: u64,
}

impl FlowTable {
    /// The entry of the flow of `ctx`, created for its first packet.
    fn entry(&mut self, ctx: &PacketCtx<'_>) -> Option<&mut Entry> {
        let i = ctx.flow?.0 as usize;
        if i == self.entries.len() {
            self.entries.push(Entry::new(ctx));
        }
        let e = self.entries.get_mut(i)?;
        if e.vacant {
            *e = Entry::new(ctx);
        }
        Some(e)
    }

    /// Summarises and empties the entries of flows the front stage forgot.
    pub fn forget(&mut self, flows: &[FlowId]) {
        for flow in flows {
            if let Some(e) = self.entries.get_mut(flow.0 as usize) {
                if !e.vacant && e.packets > 0 {
                    self.forgotten.push(e.summary());
                    self.forgotten_count += 1;
                }
                e.vacant = true;
                e.memo = FlowMemo::default();
            }
        }
    }

    /// The flows forgotten since the last call, summarised.
    pub fn take_forgotten(&mut self) -> Vec<Flow> {
        std::mem::take(&mut self.forgotten)
    }

    /// How many flows were forgotten in all.
    pub fn forgotten_count(&self) -> u64 {
        self.forgotten_count
    }

    /// The flows listed now, in order of their first packet (of their handle, with
    /// forgetting), without emptying the list.
    pub fn snapshot(&self) -> Vec<Flow> {
        self.entries.iter().filter(|e| !e.vacant).map(Entry::summary).collect()
    }

    /// Counts the packet of `ctx` in its flow as `protocol`, decided by `decider`, and hands
    /// back the flow's memo (`None` for an unlisted flow).
    pub fn count(&mut self, ctx: &PacketCtx<'_>, protocol: Counted, decider: Decider) -> Option<&mut FlowMemo> {
        let e = self.entry(ctx)?;
        if e.packets == 0 {
            (e.protocol, e.decider, e.first, e.last) = (protocol, decider, ctx.ts, ctx.ts);
        } else if e.protocol.is_bare() && !protocol.is_bare() {
            (e.protocol, e.decider) = (protocol, decider);
        }
        e.packets += 1;
        e.bytes += ctx.wire_len;
        e.last = e.last.max(ctx.ts);
        Some(&mut e.memo)
    }

    /// The memo of the flow of `ctx`, and which of its two directions the packet goes in.
    pub fn memo(&mut self, ctx: &PacketCtx<'_>) -> Option<(&mut FlowMemo, usize)> {
        let e = self.entry(ctx)?;
        let direction = usize::from(ctx.src != e.a);
        Some((&mut e.memo, direction))
    }

    /// The flows in order of their first packet, emptying the list (what was forgotten
    /// stays counted).
    pub fn take_flows(&mut self) -> Vec<Flow> {
        let flows = self.snapshot();
        self.entries = Vec::new();
        flows
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The index and the table together, as the analysis uses them.
    #[derive(Default)]
    struct Both(FlowIndex, FlowTable);

    impl Both {
        fn packet(
            &mut self,
            transport: Transport,
            (src, dst): (SocketAddr, SocketAddr),
            protocol: Counted,
            decider: Decider,
            ts: Timestamp,
            wire_len: u64,
        ) {
            let flow = self.0.lookup(transport, 0, src, dst, ts);
            let ctx = ctx(transport, src, dst, ts, wire_len, flow);
            let _ = self.1.count(&ctx, protocol, decider);
        }

        fn into_flows(mut self) -> (Vec<Flow>, u64) {
            (self.1.take_flows(), self.0.unlisted())
        }
    }

    const TCP: Counted = Counted::Bare(Transport::Tcp);
    const UDP: Counted = Counted::Bare(Transport::Udp);
    const SIP: Counted = Counted::App(callflow_classify::AppProtocol::Sip);
    const RTP: Counted = Counted::App(callflow_classify::AppProtocol::Rtp);

    fn addr(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    fn ctx(
        transport: Transport,
        src: SocketAddr,
        dst: SocketAddr,
        ts: Timestamp,
        wire_len: u64,
        flow: Option<FlowId>,
    ) -> PacketCtx<'static> {
        PacketCtx { ts, frame: 0, src, dst, transport, tunnel: None, context: 0, wire_len, flow, udp: None }
    }

    #[test]
    fn both_directions_are_one_flow_named_by_its_most_specific_protocol() {
        let mut t = Both::default();
        let (a, b) = (addr("10.0.0.1:40000"), addr("10.0.0.2:5060"));
        let sip = Decider { confidence: Confidence::Signature, classifier: "heuristic" };
        t.packet(Transport::Tcp, (a, b), TCP, Decider::NONE, Timestamp::from_nanos(1), 60);
        t.packet(Transport::Tcp, (b, a), TCP, Decider::NONE, Timestamp::from_nanos(2), 60);
        t.packet(Transport::Tcp, (a, b), SIP, sip, Timestamp::from_nanos(3), 600);
        t.packet(Transport::Tcp, (b, a), TCP, Decider::NONE, Timestamp::from_nanos(4), 60);
        t.packet(Transport::Udp, (a, b), UDP, Decider::NONE, Timestamp::from_nanos(5), 100);
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
        let mut t = Both::default();
        let dst = addr("10.0.0.2:53");
        for i in 0..(MAX_FLOWS as u32 + 5) {
            let src = SocketAddr::from((std::net::Ipv4Addr::from(0x0a00_0000 + i), 1000));
            t.packet(Transport::Udp, (src, dst), UDP, Decider::NONE, Timestamp::from_nanos(i64::from(i)), 80);
        }
        let (flows, unlisted) = t.into_flows();
        assert_eq!((flows.len(), unlisted), (MAX_FLOWS, 5));
    }

    #[test]
    fn unlisted_counts_flows_not_their_packets() {
        // It counted every packet of an unlisted flow, so a single busy flow past the bound
        // looked like thousands of flows.
        let mut t = Both::default();
        let dst = addr("10.0.0.2:53");
        for i in 0..(MAX_FLOWS as u32 + 2) {
            let src = SocketAddr::from((std::net::Ipv4Addr::from(0x0a00_0000 + i), 1000));
            for _ in 0..3 {
                t.packet(Transport::Udp, (src, dst), UDP, Decider::NONE, Timestamp::from_nanos(i64::from(i)), 80);
                t.packet(Transport::Udp, (dst, src), UDP, Decider::NONE, Timestamp::from_nanos(i64::from(i)), 80);
            }
        }
        let (flows, unlisted) = t.into_flows();
        assert_eq!((flows.len(), unlisted), (MAX_FLOWS, 2));
        assert!(flows.iter().all(|f| f.packets == 6));
    }

    #[test]
    fn a_flow_keeps_the_addresses_and_time_of_its_first_packet() {
        let mut t = Both::default();
        let (a, b) = (addr("[2001:db8::1]:5004"), addr("10.0.0.1:5004"));
        t.packet(Transport::Udp, (a, b), RTP, Decider::SDP, Timestamp::from_nanos(9), 10);
        t.packet(Transport::Udp, (b, a), RTP, Decider::SDP, Timestamp::from_nanos(5), 10);
        let (flows, _) = t.into_flows();
        assert_eq!(flows.len(), 1);
        assert_eq!((flows[0].a, flows[0].b), (a, b), "named in the direction of the first packet");
        assert_eq!((flows[0].first_ts, flows[0].last_ts), (Timestamp::from_nanos(9), Timestamp::from_nanos(9)));
    }

    #[test]
    fn a_forgotten_flow_is_summarised_and_its_handle_reused_by_a_new_flow() {
        let mut index = FlowIndex::forgetting(std::time::Duration::from_secs(10));
        let mut table = FlowTable::default();
        let (a, b, c) = (addr("10.0.0.1:1000"), addr("10.0.0.2:5060"), addr("10.0.0.3:5060"));
        let at = |s: i64| Timestamp::from_nanos(s * 1_000_000_000);
        let first = index.lookup(Transport::Udp, 0, a, b, at(0));
        let _ = table.count(&ctx(Transport::Udp, a, b, at(0), 100, first), SIP, Decider::NONE);
        let other = index.lookup(Transport::Udp, 0, a, c, at(5));
        let _ = table.count(&ctx(Transport::Udp, a, c, at(5), 50, other), UDP, Decider::NONE);
        assert!(index.forget_idle(at(10)).is_empty(), "idle for exactly the idle time is not forgotten");
        let forgotten = index.forget_idle(at(11));
        assert_eq!(forgotten, [first.unwrap()]);
        table.forget(&forgotten);
        assert_eq!(table.forgotten_count(), 1);
        let summary = table.take_forgotten();
        assert_eq!((summary.len(), summary[0].b, summary[0].packets), (1, b, 1));
        // A new flow takes the freed handle and starts from nothing.
        let new = index.lookup(Transport::Udp, 0, c, b, at(12));
        assert_eq!(new, first);
        let _ = table.count(&ctx(Transport::Udp, c, b, at(12), 70, new), UDP, Decider::NONE);
        let listed = table.snapshot();
        assert_eq!(listed.len(), 2);
        assert_eq!((listed[0].a, listed[0].packets, listed[0].bytes), (c, 1, 70));
        // The flow that was forgotten is a new flow when it comes back.
        assert_ne!(index.lookup(Transport::Udp, 0, a, b, at(13)), first);
    }
}
