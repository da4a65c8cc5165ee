//! RTCP (RFC 3550, XR RFC 3611): walk a compound packet and read its sender reports,
//! receiver reports, source descriptions, goodbyes, APP and XR packets, and XR's VoIP
//! Metrics block.
//!
//! A datagram carries one or more RTCP packets back to back, each announcing its length
//! in 32-bit words minus one. [`packets`] walks them without allocating; report blocks
//! are read lazily by [`ReportBlocks`], XR blocks by [`xr_blocks`].

use crate::{need, DecodeError, Layer};

/// Sender report.
pub const SR: u8 = 200;
/// Receiver report.
pub const RR: u8 = 201;
/// Source description.
pub const SDES: u8 = 202;
/// Goodbye.
pub const BYE: u8 = 203;
/// Application-defined.
pub const APP: u8 = 204;
/// Extended report (RFC 3611).
pub const XR: u8 = 207;

/// Length of a reception report block.
const REPORT_BLOCK_LEN: usize = 24;

/// Reads a big-endian `u32` at `at`, if the bytes are there.
fn be32(b: &[u8], at: usize) -> Option<u32> {
    let bytes = b.get(at..at.checked_add(4)?)?;
    Some(u32::from_be_bytes(bytes.try_into().ok()?))
}

/// True when `b` plausibly starts an RTCP packet: version 2, a packet type of 200-207
/// (SR, RR, SDES, BYE, APP, RTPFB, PSFB, XR), and a first packet whose length fits in `b`.
///
/// 192-199 (full INTRA-frame request, NACK, ...) are legal in a compound packet but also
/// what RTP payload types 64-71 with the marker bit look like, so they do not count.
pub fn looks_like_rtcp(b: &[u8]) -> bool {
    match b.get(..4) {
        Some(&[first, packet_type, len_hi, len_lo]) => {
            let words = usize::from(u16::from_be_bytes([len_hi, len_lo]));
            first >> 6 == 2 && (SR..=XR).contains(&packet_type) && (words + 1) * 4 <= b.len()
        }
        _ => false,
    }
}

/// Iterates over the RTCP packets of a (compound) datagram.
///
/// Each item is a packet or the error that ended the walk; nothing follows an error.
/// Error offsets are relative to `b`:
/// - a header cut short, or a length field running past the datagram:
///   [`DecodeError::Truncated`] at the offset of that packet (needed = its declared size);
/// - a packet too short for what its count field announces (report blocks, BYE sources,
///   the SR sender info, an APP name): [`DecodeError::Truncated`] at the offset of that
///   packet, with `available` its declared size;
/// - a version other than 2, or a padding count of 0 or longer than the packet:
///   [`DecodeError::Invalid`].
pub fn packets(b: &[u8]) -> Packets<'_> {
    Packets { bytes: b, offset: 0, failed: false }
}

/// Iterator over the packets of a compound RTCP datagram; see [`packets`].
#[derive(Clone, Debug)]
pub struct Packets<'a> {
    bytes: &'a [u8],
    offset: usize,
    failed: bool,
}

impl<'a> Iterator for Packets<'a> {
    type Item = Result<RtcpPacket<'a>, DecodeError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.failed || self.offset >= self.bytes.len() {
            return None;
        }
        let result = self.next_packet();
        if result.is_err() {
            self.failed = true;
        }
        Some(result)
    }
}

impl<'a> Packets<'a> {
    fn next_packet(&mut self) -> Result<RtcpPacket<'a>, DecodeError> {
        let at = self.offset;
        let Some(&[first, packet_type, len_hi, len_lo]) = self.bytes.get(at..at + 4) else {
            return Err(DecodeError::truncated(Layer::Rtcp, at, 4, self.bytes.len().saturating_sub(at)));
        };
        if first >> 6 != 2 {
            return Err(DecodeError::invalid(Layer::Rtcp, at, "version", "not RTCP version 2"));
        }
        let length = (usize::from(u16::from_be_bytes([len_hi, len_lo])) + 1) * 4;
        need(Layer::Rtcp, self.bytes, at, length)?;
        let packet = self.bytes.get(at..at + length).unwrap_or_default();
        self.offset = at + length;

        // With the P bit, the packet's last byte counts the padding bytes, itself included.
        let mut body = packet.get(4..).unwrap_or_default();
        if first & 0x20 != 0 {
            let count = usize::from(packet.last().copied().unwrap_or_default());
            if count == 0 || count > body.len() {
                let reason = if count == 0 { "padding count is 0" } else { "padding count exceeds the packet" };
                return Err(DecodeError::invalid(Layer::Rtcp, at + length - 1, "padding", reason));
            }
            body = body.get(..body.len() - count).unwrap_or_default();
        }

        let count = first & 0x1f;
        // The count field may announce more than the length field leaves room for.
        let short = |needed: usize| DecodeError::truncated(Layer::Rtcp, at, needed, length);
        let packet = match packet_type {
            SR => {
                let needed = 4 + 24 + usize::from(count) * REPORT_BLOCK_LEN;
                if body.len() + 4 < needed {
                    return Err(short(needed));
                }
                let sender = SenderInfo {
                    ntp_timestamp: (u64::from(be32(body, 4).unwrap_or_default()) << 32)
                        | u64::from(be32(body, 8).unwrap_or_default()),
                    rtp_timestamp: be32(body, 12).unwrap_or_default(),
                    packet_count: be32(body, 16).unwrap_or_default(),
                    octet_count: be32(body, 20).unwrap_or_default(),
                };
                let blocks = body.get(24..needed - 4).unwrap_or_default();
                RtcpPacket::SenderReport {
                    ssrc: be32(body, 0).unwrap_or_default(),
                    sender,
                    blocks: ReportBlocks { bytes: blocks },
                }
            }
            RR => {
                let needed = 4 + 4 + usize::from(count) * REPORT_BLOCK_LEN;
                if body.len() + 4 < needed {
                    return Err(short(needed));
                }
                let blocks = body.get(4..needed - 4).unwrap_or_default();
                RtcpPacket::ReceiverReport {
                    ssrc: be32(body, 0).unwrap_or_default(),
                    blocks: ReportBlocks { bytes: blocks },
                }
            }
            SDES => RtcpPacket::SourceDescription { chunks: body, count },
            BYE => {
                let list = usize::from(count) * 4;
                if body.len() < list {
                    return Err(short(4 + list));
                }
                let ssrcs = Ssrcs { bytes: body.get(..list).unwrap_or_default() };
                let reason = match body.get(list..) {
                    Some(&[len, ref rest @ ..]) => {
                        let len = usize::from(len);
                        let Some(text) = rest.get(..len) else {
                            return Err(short(4 + list + 1 + len));
                        };
                        Some(text)
                    }
                    _ => None,
                };
                RtcpPacket::Goodbye { ssrcs, reason }
            }
            APP => {
                if body.len() < 8 {
                    return Err(short(12));
                }
                let mut name = [0u8; 4];
                name.copy_from_slice(body.get(4..8).unwrap_or(&[0; 4]));
                RtcpPacket::App {
                    subtype: count,
                    ssrc: be32(body, 0).unwrap_or_default(),
                    name,
                    data: body.get(8..).unwrap_or_default(),
                }
            }
            XR => {
                if body.len() < 4 {
                    return Err(short(8));
                }
                RtcpPacket::ExtendedReport {
                    ssrc: be32(body, 0).unwrap_or_default(),
                    blocks: body.get(4..).unwrap_or_default(),
                }
            }
            _ => RtcpPacket::Other { packet_type, body },
        };
        Ok(packet)
    }
}

/// One RTCP packet of a compound datagram. Slices exclude the 4-byte header and padding.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum RtcpPacket<'a> {
    /// SR (200): a sender's transmission statistics and its reception reports.
    SenderReport {
        /// SSRC of the sender.
        ssrc: u32,
        /// What the sender has sent so far.
        sender: SenderInfo,
        /// Reception report blocks (RC of them).
        blocks: ReportBlocks<'a>,
    },
    /// RR (201): reception reports from a participant that is not sending.
    ReceiverReport {
        /// SSRC of the reporter.
        ssrc: u32,
        /// Reception report blocks (RC of them).
        blocks: ReportBlocks<'a>,
    },
    /// SDES (202): source description chunks (CNAME, NAME, TOOL...), kept raw.
    SourceDescription {
        /// The chunks: each an SSRC/CSRC followed by items, padded to 32 bits.
        chunks: &'a [u8],
        /// Number of chunks announced (the SC field).
        count: u8,
    },
    /// BYE (203): sources leaving the session.
    Goodbye {
        /// The SSRC/CSRC identifiers leaving.
        ssrcs: Ssrcs<'a>,
        /// The optional reason for leaving (text, usually UTF-8).
        reason: Option<&'a [u8]>,
    },
    /// APP (204): application-defined.
    App {
        /// The subtype (the 5-bit count field).
        subtype: u8,
        /// SSRC of the sender.
        ssrc: u32,
        /// The 4-character ASCII name.
        name: [u8; 4],
        /// Application-dependent data.
        data: &'a [u8],
    },
    /// XR (207, RFC 3611): extended reports.
    ExtendedReport {
        /// SSRC of the sender.
        ssrc: u32,
        /// The report blocks, raw.
        blocks: &'a [u8],
    },
    /// Any other packet type (e.g. 205 RTPFB, 206 PSFB), raw.
    Other {
        /// The packet type.
        packet_type: u8,
        /// The bytes after the 4-byte header, without padding.
        body: &'a [u8],
    },
}

/// The sender information block of an SR.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SenderInfo {
    /// NTP timestamp, 32.32 fixed point seconds since 1900.
    pub ntp_timestamp: u64,
    /// RTP timestamp corresponding to the NTP timestamp.
    pub rtp_timestamp: u32,
    /// Packets sent since the start of transmission.
    pub packet_count: u32,
    /// Payload octets sent since the start of transmission.
    pub octet_count: u32,
}

/// One reception report block of an SR or RR.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ReportBlock {
    /// SSRC of the source reported on.
    pub ssrc: u32,
    /// Fraction of packets lost since the previous report, in 1/256.
    pub fraction_lost: u8,
    /// Cumulative packets lost: a signed 24-bit value, negative with duplicates.
    pub cumulative_lost: i32,
    /// Extended highest sequence number received (cycles in the high 16 bits).
    pub highest_seq: u32,
    /// Interarrival jitter, in timestamp units.
    pub jitter: u32,
    /// Last SR timestamp: the middle 32 bits of its NTP timestamp.
    pub lsr: u32,
    /// Delay since the last SR, in 1/65536 s.
    pub dlsr: u32,
}

/// The report blocks of an SR or RR, read on demand.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReportBlocks<'a> {
    bytes: &'a [u8],
}

impl Iterator for ReportBlocks<'_> {
    type Item = ReportBlock;

    fn next(&mut self) -> Option<ReportBlock> {
        let block = self.bytes.get(..REPORT_BLOCK_LEN)?;
        self.bytes = self.bytes.get(REPORT_BLOCK_LEN..).unwrap_or_default();
        let word = |at: usize| be32(block, at).unwrap_or_default();
        let lost = word(4);
        Some(ReportBlock {
            ssrc: word(0),
            fraction_lost: (lost >> 24) as u8,
            // Sign-extend the low 24 bits: shift them to the top, then back arithmetically.
            cumulative_lost: ((lost << 8) as i32) >> 8,
            highest_seq: word(8),
            jitter: word(12),
            lsr: word(16),
            dlsr: word(20),
        })
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        let n = self.bytes.len() / REPORT_BLOCK_LEN;
        (n, Some(n))
    }
}

impl ExactSizeIterator for ReportBlocks<'_> {}

/// The source identifiers of a BYE, read on demand.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Ssrcs<'a> {
    bytes: &'a [u8],
}

impl Iterator for Ssrcs<'_> {
    type Item = u32;

    fn next(&mut self) -> Option<u32> {
        let ssrc = be32(self.bytes, 0)?;
        self.bytes = self.bytes.get(4..).unwrap_or_default();
        Some(ssrc)
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        let n = self.bytes.len() / 4;
        (n, Some(n))
    }
}

impl ExactSizeIterator for Ssrcs<'_> {}

/// XR block type of the VoIP Metrics Report Block (RFC 3611 section 4.7).
pub const XR_VOIP_METRICS: u8 = 7;

/// Length of a VoIP Metrics block's contents after its 4-byte header.
const VOIP_METRICS_LEN: usize = 32;

/// One report block of an XR packet (RFC 3611 section 3): its type, its type-specific
/// byte and its contents after the 4-byte block header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct XrBlock<'a> {
    /// The block type (BT): 7 for VoIP metrics.
    pub block_type: u8,
    /// The type-specific byte.
    pub type_specific: u8,
    /// The block's contents (its length field's words), without the header.
    pub body: &'a [u8],
}

/// Iterates over the report blocks of an XR packet (the `blocks` of
/// [`RtcpPacket::ExtendedReport`]). Each item is a block or the error that ended the walk:
/// a header cut short or a length running past the packet is [`DecodeError::Truncated`]
/// at the block's offset within `blocks`.
pub fn xr_blocks(blocks: &[u8]) -> XrBlocks<'_> {
    XrBlocks { bytes: blocks, offset: 0, failed: false }
}

/// Iterator over the blocks of an XR packet; see [`xr_blocks`].
#[derive(Clone, Debug)]
pub struct XrBlocks<'a> {
    bytes: &'a [u8],
    offset: usize,
    failed: bool,
}

impl<'a> Iterator for XrBlocks<'a> {
    type Item = Result<XrBlock<'a>, DecodeError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.failed || self.offset >= self.bytes.len() {
            return None;
        }
        let at = self.offset;
        let Some(&[block_type, type_specific, len_hi, len_lo]) = self.bytes.get(at..at + 4) else {
            self.failed = true;
            return Some(Err(DecodeError::truncated(Layer::Rtcp, at, 4, self.bytes.len() - at)));
        };
        let length = usize::from(u16::from_be_bytes([len_hi, len_lo])) * 4;
        let Some(body) = self.bytes.get(at + 4..at + 4 + length) else {
            self.failed = true;
            return Some(Err(DecodeError::truncated(Layer::Rtcp, at, 4 + length, self.bytes.len() - at)));
        };
        self.offset = at + 4 + length;
        Some(Ok(XrBlock { block_type, type_specific, body }))
    }
}

/// The VoIP Metrics Report Block (RFC 3611 section 4.7) as sent: rates in 1/256, times in
/// ms, levels in dBm, scores as sent (R 0-100, MOS times 10); 127 means "unavailable" for
/// R and MOS, and 0 for most other fields.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct VoipMetrics {
    /// The SSRC of the stream reported on.
    pub ssrc: u32,
    /// Packets lost in the network, in 1/256.
    pub loss_rate: u8,
    /// Packets discarded (late or early) by the jitter buffer, in 1/256.
    pub discard_rate: u8,
    /// Share of packets lost or discarded within bursts, in 1/256.
    pub burst_density: u8,
    /// Share of packets lost or discarded within gaps, in 1/256.
    pub gap_density: u8,
    /// Mean length of bursts, ms.
    pub burst_duration: u16,
    /// Mean length of gaps, ms.
    pub gap_duration: u16,
    /// The most recent round-trip delay, ms.
    pub round_trip_delay: u16,
    /// The end system's own delay (buffering, coding), ms.
    pub end_system_delay: u16,
    /// Signal level, dBm (127: unavailable).
    pub signal_level: i8,
    /// Noise level, dBm (127: unavailable).
    pub noise_level: i8,
    /// Residual echo return loss, dB (127: unavailable).
    pub rerl: u8,
    /// The gap threshold (minimum packets received between losses for a gap).
    pub gmin: u8,
    /// R factor, 0-100 (127: unavailable).
    pub r_factor: u8,
    /// External R factor, 0-100 (127: unavailable).
    pub ext_r_factor: u8,
    /// MOS listening quality, times 10 (127: unavailable).
    pub mos_lq: u8,
    /// MOS conversational quality, times 10 (127: unavailable).
    pub mos_cq: u8,
    /// Receiver configuration byte (PLC, jitter buffer adaptivity and rate).
    pub rx_config: u8,
    /// Nominal jitter buffer delay, ms.
    pub jb_nominal: u16,
    /// Current maximum jitter buffer delay, ms.
    pub jb_maximum: u16,
    /// Absolute maximum jitter buffer delay, ms.
    pub jb_abs_max: u16,
}

impl VoipMetrics {
    /// Reads the contents of a VoIP Metrics block (an [`XrBlock::body`] of type
    /// [`XR_VOIP_METRICS`]): [`DecodeError::Truncated`] at offset 0 when it is shorter than
    /// the 32 bytes RFC 3611 gives it.
    pub fn parse(body: &[u8]) -> Result<VoipMetrics, DecodeError> {
        need(Layer::Rtcp, body, 0, VOIP_METRICS_LEN)?;
        let byte = |at: usize| body.get(at).copied().unwrap_or_default();
        let half = |at: usize| u16::from_be_bytes([byte(at), byte(at + 1)]);
        Ok(VoipMetrics {
            ssrc: be32(body, 0).unwrap_or_default(),
            loss_rate: byte(4),
            discard_rate: byte(5),
            burst_density: byte(6),
            gap_density: byte(7),
            burst_duration: half(8),
            gap_duration: half(10),
            round_trip_delay: half(12),
            end_system_delay: half(14),
            signal_level: byte(16) as i8,
            noise_level: byte(17) as i8,
            rerl: byte(18),
            gmin: byte(19),
            r_factor: byte(20),
            ext_r_factor: byte(21),
            mos_lq: byte(22),
            mos_cq: byte(23),
            rx_config: byte(24),
            jb_nominal: half(26),
            jb_maximum: half(28),
            jb_abs_max: half(30),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An RTCP packet: header with `count` and `packet_type`, the length field computed from `body`.
    fn pkt(count: u8, packet_type: u8, body: &[u8]) -> Vec<u8> {
        assert_eq!(body.len() % 4, 0);
        let words = (body.len() / 4) as u16;
        let mut b = vec![0x80 | count, packet_type];
        b.extend_from_slice(&words.to_be_bytes());
        b.extend_from_slice(body);
        b
    }

    fn block(ssrc: u32, fraction: u8, lost: [u8; 3], highest: u32, jitter: u32, lsr: u32, dlsr: u32) -> Vec<u8> {
        let mut b = ssrc.to_be_bytes().to_vec();
        b.push(fraction);
        b.extend_from_slice(&lost);
        for w in [highest, jitter, lsr, dlsr] {
            b.extend_from_slice(&w.to_be_bytes());
        }
        b
    }

    fn sender_info() -> Vec<u8> {
        let mut b = Vec::new();
        for w in [0xe000_0001u32, 0x8000_0000, 160, 10, 1600] {
            b.extend_from_slice(&w.to_be_bytes());
        }
        b
    }

    fn check(input: &[u8], expected: &[Result<RtcpPacket<'_>, DecodeError>]) {
        let got: Vec<_> = packets(input).collect();
        assert_eq!(got, expected);
    }

    fn blocks(bytes: &[u8]) -> ReportBlocks<'_> {
        ReportBlocks { bytes }
    }

    const SENDER: SenderInfo =
        SenderInfo { ntp_timestamp: 0xe000_0001_8000_0000, rtp_timestamp: 160, packet_count: 10, octet_count: 1600 };

    #[test]
    fn compound_sr_and_sdes() {
        let mut sr_body = 0x1111_1111u32.to_be_bytes().to_vec();
        sr_body.extend(sender_info());
        let sdes_body = [0x11, 0x11, 0x11, 0x11, 1, 3, b'a', b'b', b'c', 0, 0, 0];
        let mut b = pkt(0, SR, &sr_body);
        b.extend(pkt(1, SDES, &sdes_body));
        check(
            &b,
            &[
                Ok(RtcpPacket::SenderReport { ssrc: 0x1111_1111, sender: SENDER, blocks: blocks(&[]) }),
                Ok(RtcpPacket::SourceDescription { chunks: &sdes_body, count: 1 }),
            ],
        );
    }

    #[test]
    fn sr_with_report_block() {
        let mut body = 7u32.to_be_bytes().to_vec();
        body.extend(sender_info());
        body.extend(block(9, 25, [0, 0, 3], 0x0001_0005, 12, 0x1234_5678, 65536));
        let b = pkt(1, SR, &body);
        let Some(Ok(RtcpPacket::SenderReport { ssrc, sender, blocks })) = packets(&b).next() else { panic!() };
        assert_eq!((ssrc, sender), (7, SENDER));
        let expected = ReportBlock {
            ssrc: 9,
            fraction_lost: 25,
            cumulative_lost: 3,
            highest_seq: 0x0001_0005,
            jitter: 12,
            lsr: 0x1234_5678,
            dlsr: 65536,
        };
        assert_eq!(blocks.collect::<Vec<_>>(), [expected]);
    }

    #[test]
    fn rr_with_blocks() {
        let mut body = 5u32.to_be_bytes().to_vec();
        body.extend(block(1, 0, [0, 0, 0], 100, 2, 3, 4));
        body.extend(block(2, 255, [0x7f, 0xff, 0xff], 200, 5, 6, 7));
        let b = pkt(2, RR, &body);
        let Some(Ok(RtcpPacket::ReceiverReport { ssrc, blocks })) = packets(&b).next() else { panic!() };
        assert_eq!(ssrc, 5);
        assert_eq!(blocks.len(), 2);
        // The iterator is Clone: reading it twice gives the same blocks.
        let summary: Vec<_> =
            blocks.clone().map(|r| (r.ssrc, r.fraction_lost, r.cumulative_lost, r.highest_seq)).collect();
        assert_eq!(summary, [(1, 0, 0, 100), (2, 255, 0x7f_ffff, 200)]);
        assert_eq!(blocks.map(|r| (r.jitter, r.lsr, r.dlsr)).collect::<Vec<_>>(), [(2, 3, 4), (5, 6, 7)]);
    }

    #[test]
    fn negative_cumulative_lost() {
        for (raw, value) in [([0xff, 0xff, 0xff], -1), ([0xff, 0xff, 0xfe], -2), ([0x80, 0, 0], -8_388_608)] {
            let mut body = 5u32.to_be_bytes().to_vec();
            body.extend(block(1, 0, raw, 0, 0, 0, 0));
            let b = pkt(1, RR, &body);
            let Some(Ok(RtcpPacket::ReceiverReport { mut blocks, .. })) = packets(&b).next() else { panic!() };
            assert_eq!(blocks.next().map(|r| r.cumulative_lost), Some(value));
        }
    }

    #[test]
    fn empty_rr() {
        check(&pkt(0, RR, &[0, 0, 0, 1]), &[Ok(RtcpPacket::ReceiverReport { ssrc: 1, blocks: blocks(&[]) })]);
    }

    #[test]
    fn bye_with_reason() {
        let body = [0, 0, 0, 1, 0, 0, 0, 2, 4, b'd', b'o', b'n', b'e', 0, 0, 0];
        let b = pkt(2, BYE, &body);
        let Some(Ok(RtcpPacket::Goodbye { ssrcs, reason })) = packets(&b).next() else { panic!() };
        assert_eq!(ssrcs.collect::<Vec<_>>(), [1, 2]);
        assert_eq!(reason, Some(&b"done"[..]));
    }

    #[test]
    fn bye_without_reason() {
        let b = pkt(1, BYE, &[0, 0, 0, 9]);
        check(&b, &[Ok(RtcpPacket::Goodbye { ssrcs: Ssrcs { bytes: &[0, 0, 0, 9] }, reason: None })]);
    }

    #[test]
    fn bye_reason_length_lies() {
        check(&pkt(1, BYE, &[0, 0, 0, 9, 9, b'x', b'y', 0]), &[Err(DecodeError::truncated(Layer::Rtcp, 0, 18, 12))]);
    }

    #[test]
    fn bye_count_lies() {
        check(&pkt(3, BYE, &[0, 0, 0, 9]), &[Err(DecodeError::truncated(Layer::Rtcp, 0, 16, 8))]);
    }

    #[test]
    fn app() {
        let body = [0, 0, 0, 3, b'q', b'o', b'e', b'!', 1, 2, 3, 4];
        check(&pkt(5, APP, &body), &[Ok(RtcpPacket::App { subtype: 5, ssrc: 3, name: *b"qoe!", data: &[1, 2, 3, 4] })]);
    }

    #[test]
    fn app_too_short() {
        check(&pkt(0, APP, &[0, 0, 0, 3]), &[Err(DecodeError::truncated(Layer::Rtcp, 0, 12, 8))]);
    }

    #[test]
    fn xr() {
        let body = [0, 0, 0, 4, 4, 0, 0, 2, 0, 0, 0, 1, 0, 0, 0, 2];
        check(&pkt(0, XR, &body), &[Ok(RtcpPacket::ExtendedReport { ssrc: 4, blocks: &body[4..] })]);
    }

    #[test]
    fn xr_without_ssrc() {
        check(&pkt(0, XR, &[]), &[Err(DecodeError::truncated(Layer::Rtcp, 0, 8, 4))]);
    }

    #[test]
    fn other_packet_types() {
        let body = [0, 0, 0, 1, 0, 0, 0, 2];
        check(&pkt(1, 205, &body), &[Ok(RtcpPacket::Other { packet_type: 205, body: &body })]);
        check(&pkt(0, 195, &[]), &[Ok(RtcpPacket::Other { packet_type: 195, body: &[] })]);
    }

    #[test]
    fn padding_is_stripped() {
        let mut b = pkt(0, RR, &[0, 0, 0, 1, 0, 0, 0, 4]);
        b[0] |= 0x20;
        check(&b, &[Ok(RtcpPacket::ReceiverReport { ssrc: 1, blocks: blocks(&[]) })]);
        // ... but RC = 1 needs a block that the padding leaves no room for.
        let mut b = pkt(1, RR, &[0; 28]);
        b[0] |= 0x20;
        if let Some(last) = b.last_mut() {
            *last = 4;
        }
        check(&b, &[Err(DecodeError::truncated(Layer::Rtcp, 0, 32, 32))]);
    }

    #[test]
    fn bad_padding() {
        let mut b = pkt(0, SDES, &[0, 0, 0, 0]);
        b[0] |= 0x20;
        check(&b, &[Err(DecodeError::invalid(Layer::Rtcp, 7, "padding", "padding count is 0"))]);
        let mut b = pkt(0, SDES, &[0, 0, 0, 5]);
        b[0] |= 0x20;
        check(&b, &[Err(DecodeError::invalid(Layer::Rtcp, 7, "padding", "padding count exceeds the packet"))]);
    }

    #[test]
    fn truncated_second_packet() {
        let mut b = pkt(0, RR, &[0, 0, 0, 1]);
        let mut second = pkt(0, SDES, &[0; 8]);
        second.truncate(8);
        b.extend(second);
        check(
            &b,
            &[
                Ok(RtcpPacket::ReceiverReport { ssrc: 1, blocks: blocks(&[]) }),
                Err(DecodeError::truncated(Layer::Rtcp, 8, 12, 8)),
            ],
        );
    }

    #[test]
    fn iteration_stops_after_an_error() {
        let mut b = pkt(0, RR, &[0, 0, 0, 1]);
        b[0] = 0x40;
        b.extend(pkt(0, RR, &[0, 0, 0, 2]));
        check(&b, &[Err(DecodeError::invalid(Layer::Rtcp, 0, "version", "not RTCP version 2"))]);
    }

    #[test]
    fn trailing_bytes_are_a_cut_header() {
        let mut b = pkt(0, RR, &[0, 0, 0, 1]);
        b.extend([0x80, 201]);
        check(
            &b,
            &[
                Ok(RtcpPacket::ReceiverReport { ssrc: 1, blocks: blocks(&[]) }),
                Err(DecodeError::truncated(Layer::Rtcp, 8, 4, 2)),
            ],
        );
    }

    #[test]
    fn sr_count_lies() {
        let mut body = 7u32.to_be_bytes().to_vec();
        body.extend(sender_info());
        check(&pkt(2, SR, &body), &[Err(DecodeError::truncated(Layer::Rtcp, 0, 76, 28))]);
        check(&pkt(0, SR, &[0, 0, 0, 7]), &[Err(DecodeError::truncated(Layer::Rtcp, 0, 28, 8))]);
    }

    #[test]
    fn rr_count_lies() {
        check(&pkt(1, RR, &[0, 0, 0, 7]), &[Err(DecodeError::truncated(Layer::Rtcp, 0, 32, 8))]);
    }

    #[test]
    fn empty_input() {
        check(&[], &[]);
    }

    #[test]
    fn rtcp_heuristic() {
        assert!(looks_like_rtcp(&pkt(0, RR, &[0, 0, 0, 1])));
        for pt in SR..=XR {
            assert!(looks_like_rtcp(&pkt(0, pt, &[0, 0, 0, 1])), "PT {pt}");
        }
        // Trailing packets need not fit: only the first is checked.
        let mut b = pkt(0, RR, &[0, 0, 0, 1]);
        b.extend([0x80, 202, 0, 9]);
        assert!(looks_like_rtcp(&b));
        assert!(!looks_like_rtcp(&pkt(0, 199, &[0, 0, 0, 1])));
        assert!(!looks_like_rtcp(&pkt(0, 208, &[0, 0, 0, 1])));
        assert!(!looks_like_rtcp(&[0x80, 201, 0, 2, 0, 0, 0, 1]));
        assert!(!looks_like_rtcp(&[0x40, 201, 0, 0]));
        assert!(!looks_like_rtcp(&[0x80, 201, 0]));
        // RTP PCMU is not RTCP.
        assert!(!looks_like_rtcp(&[0x80, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 1]));
    }

    /// An XR block: type, type-specific byte, contents.
    fn xr_block(block_type: u8, body: &[u8]) -> Vec<u8> {
        let mut b = vec![block_type, 0];
        b.extend_from_slice(&((body.len() / 4) as u16).to_be_bytes());
        b.extend_from_slice(body);
        b
    }

    fn voip_metrics_body() -> Vec<u8> {
        let mut b = 0x0102_0304u32.to_be_bytes().to_vec();
        b.extend_from_slice(&[26, 13, 64, 3]);
        for half in [120u16, 2000, 45, 80] {
            b.extend_from_slice(&half.to_be_bytes());
        }
        b.extend_from_slice(&[(-20i8) as u8, (-60i8) as u8, 127, 16, 78, 127, 38, 127, 0x54, 0]);
        for half in [60u16, 80, 200] {
            b.extend_from_slice(&half.to_be_bytes());
        }
        b
    }

    #[test]
    fn xr_voip_metrics_block() {
        // An XR with a receiver reference time block (BT 4) before the VoIP metrics.
        let mut blocks = xr_block(4, &[0, 0, 0, 1, 0, 0, 0, 2]);
        blocks.extend(xr_block(XR_VOIP_METRICS, &voip_metrics_body()));
        let mut body = 9u32.to_be_bytes().to_vec();
        body.extend_from_slice(&blocks);
        let b = pkt(0, XR, &body);
        let Some(Ok(RtcpPacket::ExtendedReport { ssrc: 9, blocks })) = packets(&b).next() else { panic!() };
        let got: Vec<_> = xr_blocks(blocks).collect::<Result<_, _>>().expect("blocks");
        assert_eq!(got.iter().map(|b| (b.block_type, b.body.len())).collect::<Vec<_>>(), [(4, 8), (7, 32)]);
        let m = VoipMetrics::parse(got[1].body).expect("metrics");
        let expected = VoipMetrics {
            ssrc: 0x0102_0304,
            loss_rate: 26,
            discard_rate: 13,
            burst_density: 64,
            gap_density: 3,
            burst_duration: 120,
            gap_duration: 2000,
            round_trip_delay: 45,
            end_system_delay: 80,
            signal_level: -20,
            noise_level: -60,
            rerl: 127,
            gmin: 16,
            r_factor: 78,
            ext_r_factor: 127,
            mos_lq: 38,
            mos_cq: 127,
            rx_config: 0x54,
            jb_nominal: 60,
            jb_maximum: 80,
            jb_abs_max: 200,
        };
        assert_eq!(m, expected);
    }

    #[test]
    fn xr_blocks_cut_short_are_errors() {
        // A block announcing 8 words with 4 bytes of them.
        let b = [7, 0, 0, 8, 1, 2, 3, 4];
        assert_eq!(xr_blocks(&b).collect::<Vec<_>>(), [Err(DecodeError::truncated(Layer::Rtcp, 0, 36, 8))]);
        // A header cut short after a whole block.
        let mut b = xr_block(4, &[0; 8]);
        b.extend_from_slice(&[7, 0]);
        let got: Vec<_> = xr_blocks(&b).collect();
        assert_eq!(got.len(), 2);
        assert_eq!(got[1], Err(DecodeError::truncated(Layer::Rtcp, 12, 4, 2)));
        // VoIP metrics shorter than RFC 3611's 32 bytes.
        assert_eq!(VoipMetrics::parse(&[0; 31]), Err(DecodeError::truncated(Layer::Rtcp, 0, 32, 31)));
    }
}
