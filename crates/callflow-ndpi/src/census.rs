//! Per-protocol packet, byte and flow counts of a capture, counted as ndpiReader's "Detected protocols" table counts them.
//!
//! ndpiReader (nDPI 4.2's `example/ndpiReader.c`, `node_proto_guess_walker`) adds each
//! flow's packets and bytes, once its verdict is final, to the row of the flow's
//! application protocol, or of its master protocol when nDPI found no application (so
//! `STUN.RTP` counts under `RTP`). A packet's bytes are its captured length (`rawsize`,
//! a 16-bit number in the C), not its length on the wire. [`Census`] keeps the per-flow
//! counts while a capture is read; [`Census::table`] makes the rows once the caller knows
//! each flow's protocol (see [`crate::NdpiClassifier::final_verdicts`]).

use crate::FlowKey;
use std::collections::{BTreeMap, HashMap};

/// One flow's counts.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FlowCount {
    /// Packets of the flow, both directions.
    pub packets: u64,
    /// Their captured bytes.
    pub bytes: u64,
}

/// One row of the table: a protocol's packets, bytes and flows.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ProtocolRow {
    /// Packets of the flows counted under the protocol.
    pub packets: u64,
    /// Their captured bytes.
    pub bytes: u64,
    /// The flows.
    pub flows: u64,
}

/// The per-flow counts of a capture.
#[derive(Clone, Debug, Default)]
pub struct Census {
    flows: HashMap<FlowKey, FlowCount>,
}

impl Census {
    /// An empty census.
    pub fn new() -> Self {
        Census::default()
    }

    /// Counts one packet of flow `key`, whose frame has `captured_len` bytes.
    pub fn record(&mut self, key: FlowKey, captured_len: usize) {
        let c = self.flows.entry(key).or_default();
        c.packets += 1;
        // ndpiReader's `rawsize` is the captured length as a u16.
        c.bytes += u64::from(captured_len as u16);
    }

    /// The number of flows.
    pub fn len(&self) -> usize {
        self.flows.len()
    }

    /// Whether no packet was counted.
    pub fn is_empty(&self) -> bool {
        self.flows.is_empty()
    }

    /// Every flow with its counts (in no particular order).
    pub fn flows(&self) -> impl Iterator<Item = (&FlowKey, &FlowCount)> {
        self.flows.iter()
    }

    /// The table: per protocol name (as `name_of` gives it for each flow), the sums of
    /// its flows' counts.
    pub fn table(&self, mut name_of: impl FnMut(&FlowKey) -> String) -> BTreeMap<String, ProtocolRow> {
        let mut table: BTreeMap<String, ProtocolRow> = BTreeMap::new();
        for (key, c) in &self.flows {
            let row = table.entry(name_of(key)).or_default();
            row.packets += c.packets;
            row.bytes += c.bytes;
            row.flows += 1;
        }
        table
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use callflow_classify::TransportKind;

    #[test]
    fn rows_sum_their_flows_and_bytes_are_the_captured_length_as_ndpi_reader_keeps_it() {
        let mut c = Census::new();
        let k = |port: u16| {
            FlowKey::new(
                TransportKind::Udp,
                "10.0.0.1:5060".parse().unwrap(),
                format!("10.0.0.2:{port}").parse().unwrap(),
            )
        };
        c.record(k(1), 100);
        c.record(k(1), 70_000);
        c.record(k(2), 60);
        let table = c.table(|key| if *key == k(1) { "SIP".into() } else { "Unknown".into() });
        assert_eq!(table["SIP"], ProtocolRow { packets: 2, bytes: 100 + (70_000 - 65_536), flows: 1 });
        assert_eq!(table["Unknown"], ProtocolRow { packets: 1, bytes: 60, flows: 1 });
    }
}
