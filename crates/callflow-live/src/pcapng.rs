//! The Packetflix capture stream: a pcapng section written as it is captured, block by block.
//!
//! The layout is what Packetflix sends (dumpcap's pcapng, with csharg's stream editor
//! putting the target in the section header's comment):
//!
//! - a Section Header Block whose first comment describes the capture, ending in the YAML
//!   document csharg's editor looks for (`---\n# capture target information\n` then
//!   `container-name`, `container-type`, `node-name`, `capture-filter`,
//!   `no-promiscuous-mode`), so its clients (and Wireshark's extcap) show the same thing;
//! - one Interface Description Block per interface, with its name, the filter and
//!   `if_tsresol` 9 (nanoseconds);
//! - Enhanced Packet Blocks;
//! - at the end, one Interface Statistics Block per interface with libpcap's received and
//!   dropped counts, and the packets dropped because the client read too slowly.
//!
//! [`StreamWriter`] hands out each block's bytes for the caller to send as one WebSocket
//! message (or append to a file); the blocks are written by `pcap-file`.

use crate::capture::{CapturedInterface, InterfaceStats};
#[cfg(doc)]
use crate::channel::OwnedFrame;
use callflow_decode::capture::Frame;
use pcap_file::pcapng::blocks::enhanced_packet::EnhancedPacketBlock;
use pcap_file::pcapng::blocks::interface_description::{InterfaceDescriptionBlock, InterfaceDescriptionOption};
use pcap_file::pcapng::blocks::interface_statistics::{InterfaceStatisticsBlock, InterfaceStatisticsOption};
use pcap_file::pcapng::blocks::section_header::{SectionHeaderBlock, SectionHeaderOption};
use pcap_file::pcapng::PcapNgWriter;
use pcap_file::{DataLink, Endianness};
use std::borrow::Cow;
use std::time::Duration;

/// The marker csharg's stream editor finds (and replaces) in the section header's comment.
pub const TARGET_MARKER: &str = "---\n# capture target information\n";

/// What the section header's comment says about the capture.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TargetInfo {
    /// The container's (or namespace's) name; `net:[INODE]` when the client gave only an inode.
    pub name: String,
    /// The kind of target (`docker`, `pod`, `netns`, ...).
    pub kind: String,
    /// The node (host) name.
    pub node_name: String,
    /// The namespace's inode.
    pub netns: Option<u64>,
    /// The capture filter, if any.
    pub filter: Option<String>,
    /// Whether promiscuous mode was avoided (`chaste`).
    pub chaste: bool,
}

impl TargetInfo {
    /// The section header's comment: a line for people, then csharg's YAML document.
    pub fn comment(&self, interfaces: &[CapturedInterface]) -> String {
        let names: Vec<&str> = interfaces.iter().map(|i| i.name.as_str()).collect();
        let netns = self.netns.map_or_else(String::new, |inode| format!(" in net:[{inode}]"));
        let mut comment = format!(
            "callflowd {} live capture{netns} on {}\n{TARGET_MARKER}",
            env!("CARGO_PKG_VERSION"),
            names.join(", ")
        );
        // JSON strings are YAML double-quoted scalars: whatever the names hold stays one value.
        let quote = |s: &str| serde_json::to_string(s).unwrap_or_else(|_| "\"\"".into());
        comment.push_str(&format!("container-name: {}\n", quote(&self.name)));
        comment.push_str(&format!("container-type: {}\n", quote(&self.kind)));
        comment.push_str(&format!("node-name: {}\n", quote(&self.node_name)));
        if let Some(filter) = self.filter.as_deref().filter(|f| !f.is_empty()) {
            comment.push_str(&format!("capture-filter: {}\n", quote(filter)));
        }
        if self.chaste {
            comment.push_str("no-promiscuous-mode: true\n");
        }
        comment
    }
}

/// Writes the stream's blocks, each into bytes of its own.
pub struct StreamWriter {
    writer: PcapNgWriter<Vec<u8>>,
    interfaces: usize,
    first_ts: Option<u64>,
    last_ts: u64,
}

/// A timestamp as nanoseconds since 1970, as the blocks carry it (clamped at 0).
fn nanos(ts: callflow_decode::Timestamp) -> u64 {
    u64::try_from(ts.as_nanos()).unwrap_or(0)
}

impl StreamWriter {
    /// The section header and the interface descriptions: the stream's first bytes.
    pub fn start(target: &TargetInfo, interfaces: &[CapturedInterface]) -> (StreamWriter, Vec<u8>) {
        let section = SectionHeaderBlock {
            endianness: Endianness::Little,
            major_version: 1,
            minor_version: 0,
            section_length: -1,
            options: vec![
                SectionHeaderOption::Comment(Cow::Owned(target.comment(interfaces))),
                SectionHeaderOption::OS(Cow::Borrowed("Linux")),
                SectionHeaderOption::UserApplication(Cow::Owned(format!("callflowd {}", env!("CARGO_PKG_VERSION")))),
            ],
        };
        // Writing into a Vec cannot fail.
        let mut writer = PcapNgWriter::with_section_header(Vec::new(), section).expect("writing to memory");
        for interface in interfaces {
            let mut options = vec![
                InterfaceDescriptionOption::IfName(Cow::Owned(interface.name.clone())),
                InterfaceDescriptionOption::IfTsResol(9),
            ];
            if let Some(filter) = target.filter.as_deref().filter(|f| !f.is_empty()) {
                // if_filter: a first byte 0 says "libpcap filter string".
                let mut bytes = vec![0u8];
                bytes.extend_from_slice(filter.as_bytes());
                options.push(InterfaceDescriptionOption::IfFilter(Cow::Owned(bytes)));
            }
            let idb = InterfaceDescriptionBlock {
                linktype: DataLink::from(interface.link_type.0),
                snaplen: interface.snaplen,
                options,
            };
            writer.write_pcapng_block(idb).expect("writing to memory");
        }
        let header = std::mem::take(writer.get_mut());
        (StreamWriter { writer, interfaces: interfaces.len(), first_ts: None, last_ts: 0 }, header)
    }

    /// One captured frame as an Enhanced Packet Block (nanosecond timestamp), appended to
    /// `out`. A frame of an interface the header did not describe is skipped. It takes the
    /// borrowed [`Frame`] a [`ChannelSource`](crate::ChannelSource) yields, so nothing is
    /// copied on the way.
    pub fn packet(&mut self, frame: &Frame<'_>, out: &mut Vec<u8>) {
        if frame.interface as usize >= self.interfaces {
            return;
        }
        let ts = nanos(frame.ts);
        self.first_ts.get_or_insert(ts);
        self.last_ts = self.last_ts.max(ts);
        let epb = EnhancedPacketBlock {
            interface_id: frame.interface,
            timestamp: Duration::from_nanos(ts),
            original_len: frame.orig_len.max(frame.data.len() as u32),
            data: Cow::Borrowed(frame.data),
            options: vec![],
        };
        // The writer's buffer is empty between calls: swap the caller's in to skip a copy.
        std::mem::swap(self.writer.get_mut(), out);
        self.writer.write_pcapng_block(epb).expect("writing to memory");
        std::mem::swap(self.writer.get_mut(), out);
    }

    /// The closing Interface Statistics Blocks: libpcap's counts per interface, what was
    /// delivered, and (as a comment on each) the packets dropped because the reader of the
    /// stream was too slow, `client_dropped` for all interfaces together.
    pub fn statistics(
        &mut self,
        stats: &[InterfaceStats],
        delivered: &[u64],
        client_dropped: u64,
        now: u64,
    ) -> Vec<u8> {
        for index in 0..self.interfaces {
            let stat = stats.get(index).copied().unwrap_or_default();
            let mut options = vec![
                InterfaceStatisticsOption::IsbIfRecv(stat.received),
                InterfaceStatisticsOption::IsbIfDrop(stat.interface_dropped),
                InterfaceStatisticsOption::IsbOsDrop(stat.kernel_dropped),
                InterfaceStatisticsOption::IsbUsrDeliv(delivered.get(index).copied().unwrap_or(0)),
            ];
            if let Some(first) = self.first_ts {
                options.push(InterfaceStatisticsOption::IsbStartTime(first));
                options.push(InterfaceStatisticsOption::IsbEndTime(self.last_ts));
            }
            if client_dropped > 0 {
                options.push(InterfaceStatisticsOption::Comment(Cow::Owned(format!(
                    "{client_dropped} packets (all interfaces) dropped because the stream's reader was too slow"
                ))));
            }
            let isb = InterfaceStatisticsBlock { interface_id: index as u32, timestamp: now, options };
            self.writer.write_pcapng_block(isb).expect("writing to memory");
        }
        std::mem::take(self.writer.get_mut())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use callflow_decode::{LinkType, Timestamp};
    use pcap_file::pcapng::{Block, PcapNgReader};

    fn interfaces() -> Vec<CapturedInterface> {
        vec![
            CapturedInterface { name: "eth0".into(), link_type: LinkType::ETHERNET, snaplen: 65535 },
            CapturedInterface { name: "weird,name".into(), link_type: LinkType::LINUX_SLL, snaplen: 65535 },
        ]
    }

    #[test]
    fn a_stream_reads_back_with_its_comment_interfaces_packets_and_drop_counts() {
        let target = TargetInfo {
            name: "sbc \"1\"".into(),
            kind: "docker".into(),
            netns: Some(4026532000),
            filter: Some("udp port 5060".into()),
            chaste: true,
            ..TargetInfo::default()
        };
        let (mut writer, mut bytes) = StreamWriter::start(&target, &interfaces());
        let data = [0xab; 61];
        let frame = Frame {
            number: 1,
            ts: Timestamp::from_parts(1_700_000_000, 123_456_789),
            link_type: LinkType::ETHERNET,
            data: &data,
            orig_len: 1500,
            interface: 1,
        };
        writer.packet(&frame, &mut bytes);
        writer.packet(&Frame { interface: 7, ..frame }, &mut bytes);
        let stats =
            [InterfaceStats { received: 10, kernel_dropped: 2, interface_dropped: 1 }, InterfaceStats::default()];
        bytes.extend(writer.statistics(&stats, &[0, 1], 5, 1_700_000_001_000_000_000));

        let mut reader = PcapNgReader::new(&bytes[..]).unwrap();
        let comment = reader.section().options.iter().find_map(|o| match o {
            SectionHeaderOption::Comment(c) => Some(c.to_string()),
            _ => None,
        });
        let comment = comment.expect("SHB comment");
        assert!(comment.contains(TARGET_MARKER), "{comment}");
        assert!(comment.contains("container-name: \"sbc \\\"1\\\"\"\n"), "{comment}");
        assert!(comment.contains("capture-filter: \"udp port 5060\"\nno-promiscuous-mode: true\n"), "{comment}");
        assert!(comment.contains("net:[4026532000] on eth0, weird,name"), "{comment}");
        let mut blocks = Vec::new();
        while let Some(block) = reader.next_block() {
            blocks.push(block.unwrap().into_owned());
        }
        assert_eq!(blocks.len(), 2 + 1 + 2, "{blocks:?}");
        match &blocks[1] {
            Block::InterfaceDescription(idb) => {
                assert!(idb.options.contains(&InterfaceDescriptionOption::IfName("weird,name".into())));
                assert!(idb.options.contains(&InterfaceDescriptionOption::IfTsResol(9)));
            }
            other => panic!("expected an IDB, got {other:?}"),
        }
        match &blocks[2] {
            Block::EnhancedPacket(epb) => {
                assert_eq!(epb.interface_id, 1);
                assert_eq!(epb.timestamp, Duration::new(1_700_000_000, 123_456_789));
                assert_eq!((epb.data.len(), epb.original_len), (61, 1500));
            }
            other => panic!("expected an EPB, got {other:?}"),
        }
        match &blocks[3] {
            Block::InterfaceStatistics(isb) => {
                assert!(isb.options.contains(&InterfaceStatisticsOption::IsbIfRecv(10)));
                assert!(isb.options.contains(&InterfaceStatisticsOption::IsbOsDrop(2)));
                assert!(isb.options.contains(&InterfaceStatisticsOption::IsbIfDrop(1)));
                assert!(isb
                    .options
                    .iter()
                    .any(|o| matches!(o, InterfaceStatisticsOption::Comment(c) if c.starts_with("5 packets"))));
            }
            other => panic!("expected an ISB, got {other:?}"),
        }
    }
}
