//! Packet and protocol counters of a run, turned into the output's `stats` at the end.

use crate::ids::Fnv64;
use callflow_model::{ProtocolStats, Stats};
use foldhash::HashSet;
use std::collections::BTreeMap;
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
    pub sip_malformed: u64,
    by_protocol: BTreeMap<&'static str, Counter>,
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
        let c = self.by_protocol.entry(protocol).or_default();
        c.packets += 1;
        c.bytes += bytes;
        if let Some((a, b)) = flow {
            let mut h = Fnv64::default();
            if a <= b { (a, b) } else { (b, a) }.hash(&mut h);
            c.flows.insert(h.finish());
        }
    }

    /// Moves packets first counted as RTP to plain UDP, once their stream turned out not to be RTP.
    pub fn reclassify_rtp_as_udp(&mut self, (packets, bytes): (u64, u64)) {
        if packets == 0 {
            return;
        }
        if let Some(rtp) = self.by_protocol.get_mut("rtp") {
            rtp.packets = rtp.packets.saturating_sub(packets);
            rtp.bytes = rtp.bytes.saturating_sub(bytes);
        }
        let udp = self.by_protocol.entry("udp").or_default();
        udp.packets += packets;
        udp.bytes += bytes;
    }

    /// The output form.
    pub fn build(self, classifier: &str) -> Stats {
        Stats {
            classifier: classifier.to_string(),
            flows_unlisted: 0,
            packets_decoded: self.decoded,
            malformed: self.malformed,
            by_protocol: self
                .by_protocol
                .into_iter()
                .map(|(k, c)| {
                    (k.to_string(), ProtocolStats { packets: c.packets, bytes: c.bytes, flows: c.flows.len() as u64 })
                })
                .collect(),
        }
    }
}
