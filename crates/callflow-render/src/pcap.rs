//! A call's packets cut from its capture into a pcap file (the one place callflowd writes pcap), and its messages read back as text.
//!
//! A stored session knows the frame of each message and RTCP report but not of each RTP
//! packet (the statistics engine counts them, it does not list them). So the capture is
//! read again and a frame is kept when its number is one of those, or when it is a UDP
//! datagram of one of the sessions' media streams: the stream's exact direction (source
//! and destination address and port) within its first and last packet times. RFC 4733
//! DTMF travels in the stream's own direction and is kept with it; SIP INFO DTMF is a
//! message. Addresses are the innermost IP header's, so packets inside GTP-U, GRE or
//! IP-in-IP match as their session saw them; when a session came through a tunnel, a
//! tunnelled packet must also come through one between the same two outer addresses
//! (either way round), so that equal inner addresses of another subscriber's bearer stay
//! out. A message reassembled from several TCP segments, SCTP chunks or IP fragments names
//! only its last frame, so the segments of the sessions' TCP/SCTP connections and the
//! fragments between their hosts are kept too, within the session's time span widened by
//! two seconds: re-analysing the file gives the same call. Several sessions (a leg group)
//! are cut in one pass, frames in capture order.
//!
//! The file is pcap with nanosecond timestamps (written with `pcap-file`), in the link
//! type of the first frame kept; a frame of another link type (possible only in a
//! multi-interface pcapng) is left out and counted.

use crate::escape::message_text;
use callflow_decode::capture::{CaptureError, CaptureReader, Frame};
use callflow_decode::ipfrag::{FragmentLimits, FragmentReassembler};
use callflow_decode::packet::{decode_frame, decode_transport, Transport};
use callflow_decode::tcp::{StreamKey, TcpLimits, TcpReassembler};
use callflow_model::Session;
use pcap_file::pcap::{PcapHeader, PcapPacket, PcapWriter};
use pcap_file::{DataLink, Endianness, TsResolution};
use std::borrow::Cow;
use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::io::Write;
use std::net::{IpAddr, SocketAddr};
use std::ops::ControlFlow;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// The snapshot length written in the header: the decoder's bound on a record.
const SNAPLEN: u32 = 256 * 1024;

/// Why an export failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ExportError {
    /// The capture cannot be opened or read.
    #[error("reading the capture")]
    Capture(#[from] CaptureError),
    /// The pcap cannot be written.
    #[error("writing the pcap")]
    Write(#[from] pcap_file::PcapError),
}

/// What an export wrote.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Exported {
    /// Frames written.
    pub frames: u64,
    /// Frames that matched but had another link type than the first, left out.
    pub other_link_type: u64,
}

/// What a frame must be to belong to the exported sessions, beyond the frames they name.
struct Matcher {
    /// Frames named by a message or an RTCP report.
    frames: HashSet<u64>,
    streams: Vec<StreamMatch>,
    /// The TCP, SCTP and WebSocket connections the sessions' messages used (either way
    /// round), with the session's time span widened by [`SLACK`]: a message reassembled
    /// from several segments names only its last, and the re-analysis needs them all (and
    /// the handshake when it is near).
    connections: Vec<(SocketAddr, SocketAddr, i64, i64)>,
    /// The hosts the sessions' messages went between (either way round), for the IP
    /// fragments of a message, whose first pieces carry no ports.
    hosts: Vec<(IpAddr, IpAddr, i64, i64)>,
}

/// How far before its first and after its last message a session's connection segments
/// and fragments are taken.
const SLACK: i64 = 2_000_000_000;

/// How far a stream's first and last packet times are widened: a stored session's times
/// come back from JSON seconds (an `f64`: about 240 ns apart in this century), so the
/// first packet of a stream captured with nanosecond times (a live job's) was left out.
const TIME_SLACK: i64 = 1_000;

/// One media stream's match: direction and time span.
struct StreamMatch {
    src: SocketAddr,
    dst: SocketAddr,
    start: i64,
    end: i64,
    /// The outer addresses of the session's tunnel, when it came through one.
    tunnel: Option<(IpAddr, IpAddr)>,
}

fn same_pair<T: PartialEq>(a: (T, T), b: (T, T)) -> bool {
    (a.0 == b.0 && a.1 == b.1) || (a.0 == b.1 && a.1 == b.0)
}

impl Matcher {
    fn new(sessions: &[&Session]) -> Matcher {
        let mut m = Matcher { frames: HashSet::new(), streams: Vec::new(), connections: Vec::new(), hosts: Vec::new() };
        for s in sessions {
            let (from, to) = (s.start.as_nanos().saturating_sub(SLACK), s.end.as_nanos().saturating_add(SLACK));
            let tunnel = s.tunnel.map(|t| (t.src, t.dst));
            for msg in &s.messages {
                m.frames.insert(msg.frame);
                if msg.transport != callflow_model::Transport::Udp
                    && !m.connections.iter().any(|c| same_pair((c.0, c.1), (msg.src, msg.dst)))
                {
                    m.connections.push((msg.src, msg.dst, from, to));
                }
                if !m.hosts.iter().any(|h| same_pair((h.0, h.1), (msg.src.ip(), msg.dst.ip()))) {
                    m.hosts.push((msg.src.ip(), msg.dst.ip(), from, to));
                }
            }
            for stream in &s.media {
                m.frames.extend(stream.rtcp.iter().map(|r| r.frame));
                m.streams.push(StreamMatch {
                    src: stream.src,
                    dst: stream.dst,
                    start: stream.start.as_nanos().saturating_sub(TIME_SLACK),
                    end: stream.end.as_nanos().saturating_add(TIME_SLACK),
                    tunnel,
                });
            }
        }
        m
    }

    fn keeps(&self, frame: &callflow_decode::capture::Frame<'_>) -> bool {
        if self.frames.contains(&frame.number) {
            return true;
        }
        let ts = frame.ts.as_nanos();
        let packet = decode_frame(frame.link_type, frame.data);
        let Some(ip) = packet.ip else { return false };
        let outer = packet.tunnel.map(|t| (t.src, t.dst));
        let on_connection = |src_port, dst_port| {
            let (src, dst) = (SocketAddr::new(ip.src, src_port), SocketAddr::new(ip.dst, dst_port));
            self.connections.iter().any(|c| same_pair((c.0, c.1), (src, dst)) && (c.2..=c.3).contains(&ts))
        };
        match packet.transport {
            Transport::Udp { src_port, dst_port, .. } => {
                let (src, dst) = (SocketAddr::new(ip.src, src_port), SocketAddr::new(ip.dst, dst_port));
                self.streams.iter().any(|m| {
                    m.src == src
                        && m.dst == dst
                        && (m.start..=m.end).contains(&ts)
                        && match (m.tunnel, outer) {
                            (Some(a), Some(b)) => same_pair(a, b),
                            _ => true,
                        }
                })
            }
            Transport::Tcp(seg) => on_connection(seg.src_port, seg.dst_port),
            Transport::Sctp { src_port, dst_port, .. } => on_connection(src_port, dst_port),
            Transport::Fragment(f) => {
                self.hosts.iter().any(|h| same_pair((h.0, h.1), (f.src, f.dst)) && (h.2..=h.3).contains(&ts))
            }
            _ => false,
        }
    }
}

/// Writes the frames of `sessions` (one session, or a leg group) found in `capture` to
/// `out` as pcap, in capture order. A capture that breaks off part-way gives the frames
/// read until then; one that cannot be read is an error.
pub fn export_pcap<W: Write>(capture: &Path, sessions: &[&Session], out: W) -> Result<Exported, ExportError> {
    export_pcap_parts(&[CapturePart::whole(capture)], sessions, out)
}

/// One file of a capture kept in several (a live job's rotating files, oldest first): its
/// path and the number its first frame has in the whole capture.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CapturePart {
    /// The file.
    pub path: PathBuf,
    /// The number of its first frame in the whole capture (from 1).
    pub first_frame: u64,
}

impl CapturePart {
    /// A capture held in one file.
    pub fn whole(path: &Path) -> CapturePart {
        CapturePart { path: path.to_path_buf(), first_frame: 1 }
    }
}

/// Calls `each` with every frame of `parts` in order, numbered as in the whole capture,
/// until it breaks. A part that breaks off part-way (the file still being written) gives
/// the frames read until then, and one that is gone or cannot be read is skipped, once a
/// frame was read: an error only when nothing could be read at all.
fn each_frame(
    parts: &[CapturePart],
    mut each: impl FnMut(&Frame<'_>) -> Result<ControlFlow<()>, ExportError>,
) -> Result<(), ExportError> {
    let mut read = 0u64;
    let mut first_error = None;
    for part in parts {
        let mut reader = match CaptureReader::open(&part.path) {
            Ok(reader) => reader,
            Err(e) => {
                first_error.get_or_insert(e);
                continue;
            }
        };
        loop {
            let frame = match reader.next_frame() {
                Ok(Some(frame)) => frame,
                Ok(None) => break,
                // Damage after the first frame: keep what was read, as the analysis did.
                Err(_) if read > 0 => break,
                Err(e) => {
                    first_error.get_or_insert(e);
                    break;
                }
            };
            read += 1;
            let frame = Frame { number: part.first_frame + frame.number.saturating_sub(1), ..frame };
            if each(&frame)?.is_break() {
                return Ok(());
            }
        }
    }
    match first_error {
        Some(e) if read == 0 => Err(e.into()),
        _ => Ok(()),
    }
}

/// [`export_pcap`] of a capture kept in several files.
pub fn export_pcap_parts<W: Write>(
    parts: &[CapturePart],
    sessions: &[&Session],
    out: W,
) -> Result<Exported, ExportError> {
    let matcher = Matcher::new(sessions);
    let mut writer: Option<(PcapWriter<W>, u32)> = None;
    let mut out = Some(out);
    let mut done = Exported::default();
    each_frame(parts, |frame| {
        let ts = frame.ts.as_nanos();
        if !matcher.keeps(frame) {
            return Ok(ControlFlow::Continue(()));
        }
        let link = frame.link_type.0;
        let (w, first_link) = match &mut writer {
            Some(w) => w,
            None => {
                let header = header(link);
                let w = PcapWriter::with_header(out.take().expect("the output is taken once"), header)?;
                writer.insert((w, link))
            }
        };
        if link != *first_link {
            done.other_link_type += 1;
            return Ok(ControlFlow::Continue(()));
        }
        if frame.data.len() > SNAPLEN as usize {
            return Ok(ControlFlow::Continue(()));
        }
        // Timestamps before 1970 or after 2106 do not fit pcap's unsigned 32-bit seconds.
        let secs = u64::try_from(ts.div_euclid(1_000_000_000)).unwrap_or(0).min(u64::from(u32::MAX));
        let nanos = ts.rem_euclid(1_000_000_000) as u32;
        let orig_len = frame.orig_len.max(frame.data.len() as u32);
        w.write_packet(&PcapPacket {
            timestamp: Duration::new(secs, nanos),
            orig_len,
            data: Cow::Borrowed(frame.data),
        })?;
        done.frames += 1;
        Ok(ControlFlow::Continue(()))
    })?;
    if let Some(out) = out {
        // No frame at all (the capture changed since the analysis?): a valid, empty pcap.
        PcapWriter::with_header(out, header(1))?;
    }
    Ok(done)
}

fn header(link: u32) -> PcapHeader {
    PcapHeader {
        version_major: 2,
        version_minor: 4,
        ts_correction: 0,
        ts_accuracy: 0,
        snaplen: SNAPLEN,
        datalink: DataLink::from(link),
        ts_resolution: TsResolution::NanoSecond,
        endianness: Endianness::Little,
    }
}

/// The payload of each frame of `frames` in `capture`, as text ([`message_text`]: SIP as
/// it is, a binary protocol as a hex dump), by frame number. The message a frame
/// completes is put back together as the analysis did: TCP segments through the stream
/// reassembler with SIP's framer (every PDU the frame completes, so a segment holding a
/// 100 and a 180 gives both), IP fragments through the fragment reassembler; an SCTP
/// packet gives its first DATA chunk's user data. A frame whose message cannot be put
/// together gives what it carries above its transport. One pass, stopping at the last
/// frame asked for; frames past the end of the capture are missing.
pub fn read_messages(capture: &Path, frames: &BTreeSet<u64>) -> Result<crate::RawMessages, ExportError> {
    read_messages_parts(&[CapturePart::whole(capture)], frames)
}

/// [`read_messages`] of a capture kept in several files.
pub fn read_messages_parts(parts: &[CapturePart], frames: &BTreeSet<u64>) -> Result<crate::RawMessages, ExportError> {
    let mut out = BTreeMap::new();
    let Some(&last) = frames.last() else { return Ok(out) };
    let mut tcp = TcpReassembler::new(TcpLimits::default());
    let mut fragments = FragmentReassembler::new(FragmentLimits::default());
    each_frame(parts, |frame| {
        let wanted = frames.contains(&frame.number);
        let packet = decode_frame(frame.link_type, frame.data);
        let reassembled;
        let mut transport = packet.transport;
        let mut ip = packet.ip.map(|i| (i.src, i.dst));
        if let Transport::Fragment(f) = &transport {
            if let Ok(Some(datagram)) = fragments.push(frame.ts, f) {
                reassembled = datagram;
                let inner =
                    decode_transport(reassembled.protocol, reassembled.src, reassembled.dst, &reassembled.payload);
                transport = inner.transport;
                ip = Some((reassembled.src, reassembled.dst));
            }
        }
        let mut pdus: Vec<u8> = Vec::new();
        if let (Transport::Tcp(seg), Some((src, dst))) = (&transport, ip) {
            let key = StreamKey {
                src: SocketAddr::new(src, seg.src_port),
                dst: SocketAddr::new(dst, seg.dst_port),
                context: 0,
            };
            let number = frame.number;
            tcp.push(key, seg, number, frame.ts, &mut callflow_decode::sip::frame_message, &mut |pdu| {
                if wanted && pdu.last_frame == number {
                    pdus.extend_from_slice(pdu.data);
                }
            });
        }
        if wanted {
            let payload: &[u8] = match transport {
                _ if !pdus.is_empty() => &pdus,
                Transport::Udp { payload, .. } => payload,
                Transport::Tcp(seg) => seg.payload,
                // SIP over SCTP: the first DATA chunk's user data, after its 12-byte header.
                Transport::Sctp { chunks, .. } => callflow_decode::sctp::chunks(chunks)
                    .flatten()
                    .find(|c| c.chunk_type == 0 && c.value.len() >= 12)
                    .map_or(chunks, |c| &c.value[12..]),
                Transport::Other { payload, .. } => payload,
                _ => frame.data,
            };
            out.insert(frame.number, message_text(payload));
        }
        Ok(if frame.number >= last { ControlFlow::Break(()) } else { ControlFlow::Continue(()) })
    })?;
    Ok(out)
}
