//! Packet and protocol counters of a run, turned into the output's `stats` at the end.

use crate::ids::Fnv64;
use callflow_classify::AppProtocol;
use callflow_model::{ProtocolStats, Stats, Transport};
use foldhash::HashSet;
use std::hash::{Hash, Hasher};
use std::net::SocketAddr;

/// What a packet is counted as: its key in `stats.by_protocol`, and a flow's `protocol`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Counted {
    /// An application protocol a handler took (`sip`, `rtp`, `rtcp`).
    App(AppProtocol),
    /// Other traffic of a transport (`udp`, `tcp`, `sctp`).
    Bare(Transport),
    /// An IP fragment waiting for the rest of its datagram.
    IpFragment,
    /// Not IP, or another IP protocol.
    Other,
}

impl Counted {
    /// The name in the output.
    pub fn as_str(self) -> &'static str {
        match self {
            Counted::App(protocol) => protocol.as_str(),
            Counted::Bare(transport) => transport_name(transport),
            Counted::IpFragment => "ip_fragment",
            Counted::Other => "other",
        }
    }

    /// A bare transport: a flow first counted under one takes the first more specific
    /// protocol seen later (a TCP handshake before the SIP it carries).
    pub fn is_bare(self) -> bool {
        matches!(self, Counted::Bare(_))
    }
}

/// The name of a transport, as the output writes it (WebSocket is TCP's).
pub(crate) fn transport_name(transport: Transport) -> &'static str {
    match transport {
        Transport::Udp => "udp",
        Transport::Tcp | Transport::Ws | Transport::Tls | Transport::Wss => "tcp",
        Transport::Sctp => "sctp",
        _ => "other",
    }
}

#[derive(Debug, Default)]
struct Counter {
    packets: u64,
    bytes: u64,
    /// Hashes of the (unordered) address pairs seen, to count flows.
    flows: HashSet<u64>,
}

/// Accumulates counts while frames are analysed.
#[derive(Debug, Default)]
pub(crate) struct StatsBuilder {
    pub packets: u64,
    pub decoded: u64,
    pub malformed: u64,
    /// In order of first use; a protocol's position is its bit in a flow's `counted` mask.
    by_protocol: Vec<(Counted, Counter)>,
    /// The position of the protocol counted last: consecutive packets are mostly of one
    /// protocol (RTP), and comparing two `Counted` for each entry of the list cost about 50
    /// instructions per packet on the analysis thread.
    last: usize,
}

impl StatsBuilder {
    /// Counts one frame; `stopped` when its decoding stopped on a bad layer.
    pub fn frame(&mut self, stopped: bool) {
        self.packets += 1;
        if stopped {
            self.malformed += 1;
        } else {
            self.decoded += 1;
        }
    }

    /// Counts a frame under `protocol`, in the flow between `flow`'s two addresses.
    pub fn count(&mut self, protocol: Counted, bytes: u64, flow: Option<(SocketAddr, SocketAddr)>) {
        match flow {
            Some(flow) => self.count_flow(protocol, bytes, flow, None),
            None => {
                let (_, c) = self.counter(protocol);
                c.packets += 1;
                c.bytes += bytes;
            }
        }
    }

    /// Counts a frame under `protocol`, in the flow between `a` and `b`. `counted` is the
    /// flow's record of the counters it is already in (see
    /// [`FlowMemo`](crate::flows::FlowMemo)): with it, the addresses are hashed once per flow
    /// and protocol instead of once per packet.
    pub fn count_flow(
        &mut self,
        protocol: Counted,
        bytes: u64,
        (a, b): (SocketAddr, SocketAddr),
        counted: Option<&mut u64>,
    ) {
        let (i, c) = self.counter(protocol);
        c.packets += 1;
        c.bytes += bytes;
        let bit = 1u64.checked_shl(i as u32).unwrap_or(0);
        if let Some(counted) = counted {
            if *counted & bit != 0 {
                return;
            }
            *counted |= bit;
        }
        let mut h = Fnv64::default();
        if a <= b { (a, b) } else { (b, a) }.hash(&mut h);
        c.flows.insert(h.finish());
    }

    /// The counter of `protocol` and its position, created on first use.
    fn counter(&mut self, protocol: Counted) -> (usize, &mut Counter) {
        // WebSocket is counted as the TCP it travels in: one name, one counter.
        let protocol = if protocol == Counted::Bare(Transport::Ws) { Counted::Bare(Transport::Tcp) } else { protocol };
        let i = match self.by_protocol.get(self.last) {
            Some((counted, _)) if *counted == protocol => self.last,
            _ => match self.by_protocol.iter().position(|(counted, _)| *counted == protocol) {
                Some(i) => i,
                None => {
                    self.by_protocol.push((protocol, Counter::default()));
                    self.by_protocol.len() - 1
                }
            },
        };
        self.last = i;
        (i, &mut self.by_protocol[i].1)
    }

    /// Moves packets first counted as RTP to plain UDP, once their stream turned out not to be RTP.
    pub fn reclassify_rtp_as_udp(&mut self, (packets, bytes): (u64, u64)) {
        if packets == 0 {
            return;
        }
        if let Some((_, rtp)) =
            self.by_protocol.iter_mut().find(|(counted, _)| *counted == Counted::App(AppProtocol::Rtp))
        {
            rtp.packets = rtp.packets.saturating_sub(packets);
            rtp.bytes = rtp.bytes.saturating_sub(bytes);
        }
        let (_, udp) = self.counter(Counted::Bare(Transport::Udp));
        udp.packets += packets;
        udp.bytes += bytes;
    }

    /// The output form, as the counts stand now.
    pub fn build(&self, classifier: &str) -> Stats {
        Stats {
            classifier: classifier.to_string(),
            capture_loss: Default::default(),
            problems: Default::default(),
            flows_unlisted: 0,
            flows_forgotten: 0,
            diameter_peers: Vec::new(),
            packets_decoded: self.decoded,
            malformed: self.malformed,
            by_protocol: self
                .by_protocol
                .iter()
                .map(|(k, c)| {
                    (
                        k.as_str().to_string(),
                        ProtocolStats { packets: c.packets, bytes: c.bytes, flows: c.flows.len() as u64 },
                    )
                })
                .collect(),
        }
    }
}
