//! Packet and protocol counters of a run, turned into the output's `stats` at the end.

use crate::ids::Fnv64;
use callflow_model::{ProtocolStats, Stats};
use foldhash::HashSet;
use std::hash::{Hash, Hasher};
use std::net::SocketAddr;

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
    by_protocol: Vec<(&'static str, Counter)>,
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
    pub fn count(&mut self, protocol: &'static str, bytes: u64, flow: Option<(SocketAddr, SocketAddr)>) {
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
        protocol: &'static str,
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
    fn counter(&mut self, protocol: &'static str) -> (usize, &mut Counter) {
        // The names are string literals: comparing the pointers first usually settles it.
        let i = match self.by_protocol.iter().position(|(name, _)| std::ptr::eq(*name, protocol) || *name == protocol) {
            Some(i) => i,
            None => {
                self.by_protocol.push((protocol, Counter::default()));
                self.by_protocol.len() - 1
            }
        };
        (i, &mut self.by_protocol[i].1)
    }

    /// Moves packets first counted as RTP to plain UDP, once their stream turned out not to be RTP.
    pub fn reclassify_rtp_as_udp(&mut self, (packets, bytes): (u64, u64)) {
        if packets == 0 {
            return;
        }
        if let Some((_, rtp)) = self.by_protocol.iter_mut().find(|(name, _)| *name == "rtp") {
            rtp.packets = rtp.packets.saturating_sub(packets);
            rtp.bytes = rtp.bytes.saturating_sub(bytes);
        }
        let (_, udp) = self.counter("udp");
        udp.packets += packets;
        udp.bytes += bytes;
    }

    /// The output form, as the counts stand now.
    pub fn build(&self, classifier: &str) -> Stats {
        Stats {
            classifier: classifier.to_string(),
            flows_unlisted: 0,
            flows_forgotten: 0,
            packets_decoded: self.decoded,
            malformed: self.malformed,
            by_protocol: self
                .by_protocol
                .iter()
                .map(|(k, c)| {
                    (k.to_string(), ProtocolStats { packets: c.packets, bytes: c.bytes, flows: c.flows.len() as u64 })
                })
                .collect(),
        }
    }
}
