//! Saving live frames as pcapng (`callflow-cli analyze --interface eth0 --write out.pcapng`).
//!
//! [`Recorder`] writes through `pcap-file`: a section header, then an interface
//! description the first time each (interface number, link type) pair is seen, then one
//! enhanced packet block per frame with a nanosecond timestamp (`if_tsresol` 9), so the
//! file keeps the times the analysis saw. tshark and Wireshark read it.

use crate::channel::OwnedFrame;
use callflow_decode::capture::Frame;
use callflow_decode::{LinkType, Timestamp};
use pcap_file::pcapng::blocks::enhanced_packet::EnhancedPacketBlock;
use pcap_file::pcapng::blocks::interface_description::{InterfaceDescriptionBlock, InterfaceDescriptionOption};
use pcap_file::pcapng::PcapNgWriter;
use pcap_file::DataLink;
use std::borrow::Cow;
use std::io::{self, Write};
use std::time::Duration;

/// Writes frames to a pcapng stream as they come.
pub struct Recorder<W: Write> {
    writer: PcapNgWriter<W>,
    /// The (source interface, link type) of each interface description written, by its id.
    interfaces: Vec<(u32, LinkType)>,
}

impl<W: Write> Recorder<W> {
    /// Starts the stream with its section header.
    pub fn new(out: W) -> io::Result<Recorder<W>> {
        let writer = PcapNgWriter::new(out).map_err(pcap_error)?;
        Ok(Recorder { writer, interfaces: Vec::new() })
    }

    /// Appends one frame (and, before it, its interface's description if it is new).
    pub fn write(&mut self, frame: &Frame<'_>) -> io::Result<()> {
        let key = (frame.interface, frame.link_type);
        let id = match self.interfaces.iter().position(|k| *k == key) {
            Some(id) => id,
            None => {
                let idb = InterfaceDescriptionBlock {
                    linktype: DataLink::from(frame.link_type.0),
                    snaplen: callflow_decode::capture::MAX_CAPLEN,
                    options: vec![InterfaceDescriptionOption::IfTsResol(9)],
                };
                self.writer.write_pcapng_block(idb).map_err(pcap_error)?;
                self.interfaces.push(key);
                self.interfaces.len() - 1
            }
        };
        let epb = EnhancedPacketBlock {
            interface_id: id as u32,
            timestamp: since_epoch(frame.ts),
            original_len: frame.orig_len.max(frame.data.len() as u32),
            data: Cow::Borrowed(frame.data),
            options: Vec::new(),
        };
        self.writer.write_pcapng_block(epb).map_err(pcap_error)?;
        Ok(())
    }

    /// Appends an owned frame (see [`Recorder::write`]).
    pub fn write_owned(&mut self, frame: &OwnedFrame) -> io::Result<()> {
        self.write(&Frame {
            number: 0,
            ts: frame.ts,
            link_type: frame.link_type,
            data: &frame.data,
            orig_len: frame.orig_len,
            interface: frame.interface,
        })
    }

    /// Flushes and gives the writer back.
    pub fn finish(self) -> io::Result<W> {
        let mut out = self.writer.into_inner();
        out.flush()?;
        Ok(out)
    }
}

/// A capture time as pcap-file wants it (before 1970 is written as 1970).
fn since_epoch(ts: Timestamp) -> Duration {
    Duration::from_nanos(u64::try_from(ts.as_nanos()).unwrap_or(0))
}

fn pcap_error(e: pcap_file::PcapError) -> io::Error {
    match e {
        pcap_file::PcapError::IoError(e) => e,
        other => io::Error::other(other.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use callflow_decode::capture::CaptureReader;

    #[test]
    fn recorded_frames_read_back_with_their_times_link_types_and_bytes() {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../examples/captures/basic-call.pcap");
        let mut original = CaptureReader::open(path).unwrap();
        let mut recorder = Recorder::new(Vec::new()).unwrap();
        let mut expected = Vec::new();
        while let Some(frame) = original.next_frame().unwrap() {
            recorder.write(&frame).unwrap();
            expected.push((frame.ts, frame.link_type, frame.data.to_vec(), frame.orig_len));
        }
        let bytes = recorder.finish().unwrap();
        let mut back = CaptureReader::from_bytes(bytes).unwrap();
        let mut seen = Vec::new();
        while let Some(frame) = back.next_frame().unwrap() {
            seen.push((frame.ts, frame.link_type, frame.data.to_vec(), frame.orig_len));
        }
        assert!(!expected.is_empty());
        assert_eq!(seen, expected);
    }
}
