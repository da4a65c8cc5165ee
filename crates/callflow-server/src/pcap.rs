//! A session's packets as a pcap file, cut from the job's capture.
//!
//! The stored session knows the frame number of each SIP message and RTCP report, but
//! not of each RTP packet (the statistics engine counts them, it does not list them). So
//! the capture is read again and a frame is kept when its number is one of those, or
//! when it is a UDP datagram of one of the session's media streams: the stream's exact
//! direction (source and destination address and port) within the stream's first and
//! last packet times. The file is pcap with nanosecond timestamps, in the link type of
//! the first frame kept (a frame of another link type, possible only in a multi-interface
//! pcapng, is left out).

use callflow_decode::capture::{CaptureError, CaptureReader};
use callflow_decode::packet::{decode_frame, Transport};
use callflow_model::Session;
use std::collections::HashSet;
use std::net::SocketAddr;
use std::path::Path;

/// The pcap of `session`'s frames in `capture`.
pub fn session_pcap(capture: &Path, session: &Session) -> Result<Vec<u8>, CaptureError> {
    let mut reader = CaptureReader::open(capture)?;
    let frames: HashSet<u64> = session
        .messages
        .iter()
        .map(|m| m.frame)
        .chain(session.media.iter().flat_map(|s| s.rtcp.iter().map(|r| r.frame)))
        .collect();
    let streams: Vec<(SocketAddr, SocketAddr, i64, i64)> =
        session.media.iter().map(|s| (s.src, s.dst, s.start.as_nanos(), s.end.as_nanos())).collect();
    let mut out = Vec::new();
    let mut link = None;
    while let Some(frame) = reader.next_frame()? {
        let ts = frame.ts.as_nanos();
        let keep = frames.contains(&frame.number)
            || (!streams.is_empty() && {
                let packet = decode_frame(frame.link_type, frame.data);
                match (packet.ip, packet.transport) {
                    (Some(ip), Transport::Udp { src_port, dst_port, .. }) => {
                        let (src, dst) = (SocketAddr::new(ip.src, src_port), SocketAddr::new(ip.dst, dst_port));
                        streams.iter().any(|&(s, d, start, end)| s == src && d == dst && (start..=end).contains(&ts))
                    }
                    _ => false,
                }
            });
        if !keep {
            continue;
        }
        let link_type = *link.get_or_insert_with(|| {
            write_header(&mut out, frame.link_type.0);
            frame.link_type.0
        });
        if frame.link_type.0 != link_type {
            continue;
        }
        let secs = ts.div_euclid(1_000_000_000) as u32;
        let nanos = ts.rem_euclid(1_000_000_000) as u32;
        for v in [secs, nanos, frame.data.len() as u32, frame.orig_len] {
            out.extend_from_slice(&v.to_le_bytes());
        }
        out.extend_from_slice(frame.data);
    }
    if link.is_none() {
        // No frame at all (a session whose capture changed?): still a valid, empty pcap.
        write_header(&mut out, 1);
    }
    Ok(out)
}

fn write_header(out: &mut Vec<u8>, link_type: u32) {
    // Magic for nanosecond timestamps, version 2.4, no zone, no accuracy, snaplen 256 KiB.
    out.extend_from_slice(&0xa1b2_3c4d_u32.to_le_bytes());
    out.extend_from_slice(&2u16.to_le_bytes());
    out.extend_from_slice(&4u16.to_le_bytes());
    out.extend_from_slice(&[0; 8]);
    out.extend_from_slice(&(256 * 1024u32).to_le_bytes());
    out.extend_from_slice(&link_type.to_le_bytes());
}
