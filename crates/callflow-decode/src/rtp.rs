//! RTP (RFC 3550): header parsing, a cheap "is this RTP?" check, the RFC 3551 static
//! payload types, and per-stream statistics computed exactly as Wireshark 4.0 does.
//!
//! Nothing here allocates: [`RtpPacket`] borrows the datagram, and [`StreamStats`] is a
//! fixed-size accumulator fed one packet at a time.

use crate::{need, DecodeError, Layer, Timestamp};

/// Length of the fixed RTP header, before the CSRC list.
const FIXED_HEADER: usize = 12;

/// Reads a big-endian `u16` at `at`, if the bytes are there.
fn be16(b: &[u8], at: usize) -> Option<u16> {
    let bytes = b.get(at..at.checked_add(2)?)?;
    Some(u16::from_be_bytes(bytes.try_into().ok()?))
}

/// Reads a big-endian `u32` at `at`, if the bytes are there.
fn be32(b: &[u8], at: usize) -> Option<u32> {
    let bytes = b.get(at..at.checked_add(4)?)?;
    Some(u32::from_be_bytes(bytes.try_into().ok()?))
}

/// An RTP header extension: the profile-defined 16 bits and the extension words.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Extension<'a> {
    /// The "defined by profile" field (0xBEDE for RFC 8285 one-byte headers).
    pub profile: u16,
    /// The extension data: `length * 4` bytes after the 4-byte extension header.
    pub data: &'a [u8],
}

/// A parsed RTP packet, borrowing the datagram it came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RtpPacket<'a> {
    /// Protocol version; always 2 for a packet that parsed.
    pub version: u8,
    /// The P bit: the packet ends with padding (already stripped from `payload`).
    pub padding: bool,
    /// The M bit, whose meaning the profile defines (start of a talkspurt for audio).
    pub marker: bool,
    /// Payload type, 0-127.
    pub payload_type: u8,
    /// Sequence number.
    pub sequence: u16,
    /// RTP timestamp, in units of the payload's clock.
    pub timestamp: u32,
    /// Synchronization source identifier.
    pub ssrc: u32,
    /// The payload, after the CSRC list and the extension, without padding.
    pub payload: &'a [u8],
    /// Number of padding bytes stripped from the end (0 without the P bit).
    pub padding_len: u8,
    /// Offset of the payload in the datagram (the header length).
    pub header_len: usize,
    /// The CSRC list, 4 bytes per source.
    csrc: &'a [u8],
    /// The header extension, when the X bit is set.
    extension: Option<Extension<'a>>,
}

impl<'a> RtpPacket<'a> {
    /// Parses an RTP packet (version 2 only).
    ///
    /// Errors, with offsets from the start of `b`: fewer than 12 bytes, a CSRC list or
    /// header extension running past the end, or a P bit with no byte left for the
    /// padding count are [`DecodeError::Truncated`]; a version other than 2, or a
    /// padding count of 0 or larger than what follows the header, is
    /// [`DecodeError::Invalid`].
    pub fn parse(b: &'a [u8]) -> Result<Self, DecodeError> {
        Self::parse_with(b, true)
    }

    /// Parses an SRTP packet's header: as [`RtpPacket::parse`], except that the padding
    /// is not stripped (SRTP encrypts it with the payload, so the last byte is the
    /// authentication tag's, not a padding count): `payload` runs to the end of `b`, with
    /// the encrypted payload, the MKI and the tag.
    pub fn parse_protected(b: &'a [u8]) -> Result<Self, DecodeError> {
        Self::parse_with(b, false)
    }

    fn parse_with(b: &'a [u8], strip_padding: bool) -> Result<Self, DecodeError> {
        need(Layer::Rtp, b, 0, FIXED_HEADER)?;
        let (Some(&first), Some(&second)) = (b.first(), b.get(1)) else {
            return Err(DecodeError::truncated(Layer::Rtp, 0, FIXED_HEADER, b.len()));
        };
        let version = first >> 6;
        if version != 2 {
            return Err(DecodeError::invalid(Layer::Rtp, 0, "version", "not RTP version 2"));
        }
        let padding = first & 0x20 != 0;
        let has_extension = first & 0x10 != 0;
        let csrc_count = usize::from(first & 0x0f);
        let short = || DecodeError::truncated(Layer::Rtp, 0, FIXED_HEADER, b.len());
        let sequence = be16(b, 2).ok_or_else(short)?;
        let timestamp = be32(b, 4).ok_or_else(short)?;
        let ssrc = be32(b, 8).ok_or_else(short)?;

        let mut offset = FIXED_HEADER;
        need(Layer::Rtp, b, offset, csrc_count * 4)?;
        let csrc = b.get(offset..offset + csrc_count * 4).unwrap_or_default();
        offset += csrc_count * 4;

        let extension = if has_extension {
            need(Layer::Rtp, b, offset, 4)?;
            let profile = be16(b, offset).unwrap_or_default();
            let words = usize::from(be16(b, offset + 2).unwrap_or_default());
            need(Layer::Rtp, b, offset + 4, words * 4)?;
            let data = b.get(offset + 4..offset + 4 + words * 4).unwrap_or_default();
            offset += 4 + words * 4;
            Some(Extension { profile, data })
        } else {
            None
        };

        let header_len = offset;
        let rest = b.get(header_len..).unwrap_or_default();
        let (payload, padding_len) = if padding && strip_padding {
            // The last byte counts the padding bytes, itself included.
            let Some(&count) = rest.last() else {
                return Err(DecodeError::truncated(Layer::Rtp, header_len, 1, 0));
            };
            let at = b.len() - 1;
            if count == 0 {
                return Err(DecodeError::invalid(Layer::Rtp, at, "padding", "padding count is 0"));
            }
            if usize::from(count) > rest.len() {
                return Err(DecodeError::invalid(Layer::Rtp, at, "padding", "padding count exceeds the payload"));
            }
            (rest.get(..rest.len() - usize::from(count)).unwrap_or_default(), count)
        } else {
            (rest, 0)
        };

        Ok(RtpPacket {
            version,
            padding,
            marker: second & 0x80 != 0,
            payload_type: second & 0x7f,
            sequence,
            timestamp,
            ssrc,
            payload,
            padding_len,
            header_len,
            csrc,
            extension,
        })
    }

    /// The contributing sources (CSRC list), in header order.
    pub fn csrcs(&self) -> impl Iterator<Item = u32> + 'a {
        self.csrc.chunks_exact(4).filter_map(|c| c.try_into().ok().map(u32::from_be_bytes))
    }

    /// The header extension, when the X bit is set.
    pub fn extension(&self) -> Option<Extension<'a>> {
        self.extension
    }
}

/// True when `b` plausibly is an RTP packet: version 2, a header (with its CSRC list and
/// extension) and padding consistent with the length, at least one payload byte, and a
/// payload type outside 72-76.
///
/// This is how RTP that no signalling announced is found, so it must reject RTCP:
/// payload types 72-76 with the marker bit are the bytes of RTCP SR, RR, SDES, BYE and
/// APP (200-204), and RFC 3551 reserves them for that reason.
pub fn looks_like_rtp(b: &[u8]) -> bool {
    match RtpPacket::parse(b) {
        Ok(p) => !(72..=76).contains(&p.payload_type) && !p.payload.is_empty(),
        Err(_) => false,
    }
}

/// The RFC 3551 encoding name of a static payload type (`PCMU`, `GSM`, `PCMA`, `G729`...).
///
/// These are the names SDP `a=rtpmap` lines use; tshark shows its own labels instead
/// (`g711U` for PCMU, `g711A` for PCMA). Unassigned and dynamic types (96-127) have none.
pub fn static_payload_name(pt: u8) -> Option<&'static str> {
    Some(match pt {
        0 => "PCMU",
        3 => "GSM",
        4 => "G723",
        5 | 6 | 16 | 17 => "DVI4",
        7 => "LPC",
        8 => "PCMA",
        9 => "G722",
        10 | 11 => "L16",
        12 => "QCELP",
        13 => "CN",
        14 => "MPA",
        15 => "G728",
        18 => "G729",
        25 => "CelB",
        26 => "JPEG",
        28 => "nv",
        31 => "H261",
        32 => "MPV",
        33 => "MP2T",
        34 => "H263",
        _ => return None,
    })
}

/// The RFC 3551 clock rate, in Hz, of a static payload type.
///
/// G.722 is 8000 although it samples at 16 kHz: RFC 3551 kept the value of an early
/// mistake for compatibility.
pub fn static_clock_rate(pt: u8) -> Option<u32> {
    Some(match pt {
        0 | 3 | 4 | 5 | 7 | 8 | 9 | 12 | 13 | 15 | 18 => 8000,
        6 => 16000,
        10 | 11 => 44100,
        16 => 11025,
        17 => 22050,
        14 | 25 | 26 | 28 | 31 | 32 | 33 | 34 => 90000,
        _ => return None,
    })
}

/// The clock rate Wireshark's stream analysis uses for a payload type below 96: its own
/// table, which also keeps the retired types 1 (FS-1016), 2 (G.721) and 19 (old CN).
fn wireshark_static_clock_rate(pt: u8) -> Option<u32> {
    match pt {
        1 | 2 | 19 => Some(8000),
        _ => static_clock_rate(pt),
    }
}

/// Comfort noise, current (13) and old (19): Wireshark leaves these packets, and the
/// packet after one, out of the delta and jitter figures.
fn is_comfort_noise(pt: u8) -> bool {
    pt == 13 || pt == 19
}

/// Sequence numbers remembered for duplicate detection: a power of two dividing 65536,
/// so a sequence number keeps its slot across wrap-arounds.
const SEEN_WINDOW: u16 = 1024;

/// Per-stream RTP statistics, computed exactly as Wireshark 4.0 computes them for
/// `tshark -z rtp,streams` (`rtppacket_analyse()` in `ui/tap-rtp-analysis.c`, and the
/// "Lost" column of `ui/cli/tap-rtp.c`), so that [`StreamStats::packets`] and
/// [`StreamStats::lost`] equal tshark's "Pkts" and "Lost", and the delta and jitter
/// getters its "Min/Mean/Max Delta(ms)" and "Min/Mean/Max Jitter(ms)" columns.
///
/// Feed every packet of one stream (one SSRC from one source address and port to one
/// destination address and port) in capture order with [`StreamStats::update`]. The
/// Wireshark behaviours reproduced, quirks included:
///
/// - **First packet**: it sets the start sequence number, the first RTP timestamp and the
///   reference arrival time, and takes part in no delta or jitter figure.
/// - **Timestamp order**: a packet is *in time sequence* when its RTP timestamp is at most
///   2^31 ahead of the stream's *first* timestamp (wrap-around allowed). Packets that are
///   not (a timestamp gone backwards) neither move the cycle counter nor the expected
///   sequence number, get no delta or jitter, and do not become the reference for the
///   next packet's delta.
/// - **Cycle counter** (sequence wrap-around): an in-time packet whose sequence number is
///   below the *first* packet's counts a new cycle once, until a packet above the first
///   packet's number ends that cycle; a 0 right after a 65535 also starts one (for streams
///   that began at 0). So a late packet older than the first one counts a whole cycle,
///   which shows as ~65536 lost packets, as in tshark.
/// - **Expected and lost**: expected is the last packet's sequence number plus 65536 per
///   cycle, minus the first packet's, plus one; lost is expected minus packets received.
///   The *last* packet's number is used, not the highest, so a late last packet lowers
///   "expected", and duplicates make "lost" negative.
/// - **Sequence errors**: an in-time packet that is not the next number (or 0 after
///   65535) counts an error; a jump forward (or a fall of more than 0xFF00, taken as a
///   wrap with losses) moves the expected number on, while a late or repeated packet
///   leaves it. A packet out of time sequence with a lower number also counts an error.
/// - **Delta**: arrival time since the previous in-time packet. Min/mean/max leave out the
///   first packet, marker-bit packets, comfort noise (PT 13, 19), the packet right after
///   comfort noise, and packets out of time sequence. The "mean" divides by the packets
///   received before this one, not by the deltas kept, as Wireshark does.
/// - **Jitter** (RFC 3550, in ms): `J += (|D| - J) / 16` with the transit difference taken
///   from the RTP timestamps relative to the first one, converted to ms with the clock rate
///   divided by 1000 *in integers* (44100 Hz counts as 44 samples per ms). The running
///   jitter is updated on every in-time packet with a known clock (marker and comfort
///   noise packets included), but only regular packets update min/mean/max.
/// - **Clock rate**: payload types below 96 use Wireshark's static table whatever
///   `clock_rate` says; dynamic ones use `clock_rate`. Without a clock rate (unknown
///   dynamic payload, or telephone-event, which Wireshark treats as rate 0 because event
///   packets repeat their timestamp: pass `None` for those) there is no jitter at all, but
///   deltas still count. A payload type change simply uses the new type's clock for that
///   packet.
///
/// This is the 4.0 analysis; later Wireshark releases changed it (extended sequence
/// numbers and timestamps, the first sequence number becoming the lowest seen), so their
/// numbers can differ. It was checked against tshark 4.0.17 on every RTP stream of the
/// shared public captures and on synthetic edge cases (wraps, late, repeated and
/// reordered packets, timestamps going back, comfort noise, payload type changes).
///
/// Deliberate differences: a clock rate below 1000 Hz is treated as unknown (Wireshark
/// divides by zero and prints `inf`), and [`StreamStats::expected`] never goes below 0.
/// [`StreamStats::duplicates`] is ours (Wireshark does not count duplicates): repeats of
/// any of the last 1024 sequence numbers.
#[derive(Clone, Debug, Default)]
pub struct StreamStats {
    /// Packets received (Wireshark's `total_nr`).
    packets: u64,
    first_arrival: Option<Timestamp>,
    last_arrival: Option<Timestamp>,
    /// Sequence number of the first packet.
    start_seq: u16,
    /// Sequence number of the latest packet.
    stop_seq: u16,
    /// Last sequence number accepted as in order.
    seq_num: u16,
    /// RTP timestamp of the first packet, the reference for time order and jitter.
    first_timestamp: u32,
    /// Sequence number wrap-arounds counted.
    cycles: u32,
    /// Inside a cycle: below the first sequence number since the last wrap.
    under: bool,
    sequence_errors: u64,
    duplicates: u64,
    /// Payload type of the latest packet.
    payload_type: u8,
    /// Arrival of the latest in-time packet, in ms since the first packet.
    time_ms: f64,
    /// RTP time of the latest packet with a clock, in ms since the first timestamp.
    last_nominal_ms: f64,
    delta_ms: f64,
    jitter_ms: f64,
    min_delta_ms: Option<f64>,
    max_delta_ms: f64,
    mean_delta_ms: f64,
    min_jitter_ms: Option<f64>,
    max_jitter_ms: f64,
    mean_jitter_ms: f64,
    /// Highest sequence number seen, for duplicate detection.
    highest_seen: u16,
    /// One bit per sequence number modulo [`SEEN_WINDOW`], for the last [`SEEN_WINDOW`] numbers.
    seen: [u64; SEEN_WINDOW as usize / 64],
}

impl StreamStats {
    /// Accounts for one packet of the stream.
    ///
    /// `arrival` is the capture time; `seq`, `rtp_ts`, `marker` and `payload_type` come
    /// from the RTP header; `clock_rate` is the payload's clock in Hz as signalled (SDP
    /// rtpmap), used for dynamic payload types only; pass `None` when it is unknown and
    /// for telephone-event packets (see the type's documentation).
    pub fn update(
        &mut self,
        arrival: Timestamp,
        seq: u16,
        rtp_ts: u32,
        clock_rate: Option<u32>,
        marker: bool,
        payload_type: u8,
    ) {
        self.note_seen(seq);
        self.last_arrival = Some(arrival);
        let Some(first) = self.first_arrival else {
            self.first_arrival = Some(arrival);
            self.start_seq = seq;
            self.stop_seq = seq;
            self.seq_num = seq;
            self.first_timestamp = rtp_ts;
            self.payload_type = payload_type;
            self.packets = 1;
            return;
        };
        let now_ms = arrival.as_nanos().saturating_sub(first.as_nanos()) as f64 / 1e6;
        let in_time = timestamp_in_sequence(self.first_timestamp, rtp_ts);

        if in_time {
            // A number below the first one starts a cycle, and so does 0 right after 65535
            // (the only way a stream that began at 0 can count one).
            let wrapped = seq < self.start_seq || (seq == 0 && self.stop_seq == u16::MAX);
            if wrapped && !self.under {
                self.cycles = self.cycles.saturating_add(1);
                self.under = true;
            } else if seq > self.start_seq && self.under {
                self.under = false;
            }
        }

        let next = i32::from(self.seq_num) + 1;
        let got = i32::from(seq);
        if in_time && (got == next || (self.seq_num == u16::MAX && seq == 0)) {
            self.seq_num = seq;
        } else if in_time && (next < got || i32::from(self.seq_num) - got > 0xFF00) {
            self.seq_num = seq;
            self.sequence_errors += 1;
        } else if next > got {
            self.sequence_errors += 1;
        }

        let comfort_noise = is_comfort_noise(payload_type);
        let after_comfort_noise = is_comfort_noise(self.payload_type);
        self.payload_type = payload_type;
        let clock = if payload_type < 96 { wireshark_static_clock_rate(payload_type) } else { clock_rate };
        let clock = clock.filter(|&rate| rate >= 1000);

        let mut current_jitter = 0.0;
        if in_time {
            if let Some(rate) = clock {
                let nominal_ms = f64::from(rtp_ts.wrapping_sub(self.first_timestamp)) / f64::from(rate / 1000);
                let expected_ms = self.time_ms + (nominal_ms - self.last_nominal_ms);
                let transit_diff = (now_ms - expected_ms).abs();
                current_jitter = (15.0 * self.jitter_ms + transit_diff) / 16.0;
                self.jitter_ms = current_jitter;
                self.last_nominal_ms = nominal_ms;
            }
            self.delta_ms = now_ms - self.time_ms;
        }

        if in_time && !marker && !comfort_noise && !after_comfort_noise {
            // `packets` does not count this packet yet: it is the number of deltas so far
            // only when no packet was left out, as in Wireshark's running mean.
            let n = self.packets as f64;
            self.max_delta_ms = self.max_delta_ms.max(self.delta_ms);
            self.min_delta_ms = Some(self.min_delta_ms.map_or(self.delta_ms, |m| m.min(self.delta_ms)));
            self.mean_delta_ms = (self.mean_delta_ms * (n - 1.0) + self.delta_ms) / n;
            if clock.is_some() {
                self.max_jitter_ms = self.max_jitter_ms.max(self.jitter_ms);
                self.min_jitter_ms = Some(self.min_jitter_ms.map_or(self.jitter_ms, |m| m.min(self.jitter_ms)));
                self.mean_jitter_ms = (self.mean_jitter_ms * (n - 1.0) + current_jitter) / n;
            }
        }

        if in_time {
            self.time_ms = now_ms;
        }
        self.stop_seq = seq;
        self.packets += 1;
    }

    /// Records `seq` in the window of recent sequence numbers, counting it as a duplicate
    /// when it is already there.
    fn note_seen(&mut self, seq: u16) {
        let slot = |s: u16| (usize::from(s % SEEN_WINDOW) / 64, (s % 64) as u32);
        if self.packets == 0 {
            self.highest_seen = seq;
        } else {
            let ahead = seq.wrapping_sub(self.highest_seen) as i16;
            if ahead > 0 {
                // Forget the numbers the window slides past, so their slots are reused.
                for k in 1..=(ahead as u16).min(SEEN_WINDOW) {
                    let (word, bit) = slot(self.highest_seen.wrapping_add(k));
                    if let Some(w) = self.seen.get_mut(word) {
                        *w &= !(1u64 << bit);
                    }
                }
                self.highest_seen = seq;
            } else if ahead.unsigned_abs() >= SEEN_WINDOW {
                // Older than the window: nothing is known about it.
                return;
            }
        }
        let (word, bit) = slot(seq);
        if let Some(w) = self.seen.get_mut(word) {
            if *w & (1u64 << bit) != 0 {
                self.duplicates += 1;
            }
            *w |= 1u64 << bit;
        }
    }

    /// Packets received.
    pub fn packets(&self) -> u64 {
        self.packets
    }

    /// Wireshark's expected packet count: last sequence number + cycles * 65536 - first
    /// sequence number + 1 (0 before the first packet, and never below 0).
    pub fn expected(&self) -> u64 {
        u64::try_from(self.expected_signed()).unwrap_or(0)
    }

    fn expected_signed(&self) -> i64 {
        if self.packets == 0 {
            return 0;
        }
        i64::from(self.stop_seq) + i64::from(self.cycles) * 65536 - i64::from(self.start_seq) + 1
    }

    /// Lost packets as tshark prints them: expected - received, negative when duplicates
    /// or late packets outnumber the losses.
    pub fn lost(&self) -> i64 {
        self.expected_signed() - i64::try_from(self.packets).unwrap_or(i64::MAX)
    }

    /// Packets whose sequence number was not the next one expected (Wireshark's "wrong
    /// sequence" count: jumps, late and repeated packets).
    pub fn sequence_errors(&self) -> u64 {
        self.sequence_errors
    }

    /// Packets repeating one of the last 1024 sequence numbers seen.
    pub fn duplicates(&self) -> u64 {
        self.duplicates
    }

    /// Smallest delta between consecutive regular packets, in ms; -1 when there is none,
    /// as tshark prints it.
    pub fn min_delta_ms(&self) -> f64 {
        self.min_delta_ms.unwrap_or(-1.0)
    }

    /// Wireshark's mean delta, in ms (0 when there is none).
    pub fn mean_delta_ms(&self) -> f64 {
        self.mean_delta_ms
    }

    /// Largest delta between consecutive regular packets, in ms (0 when there is none).
    pub fn max_delta_ms(&self) -> f64 {
        self.max_delta_ms
    }

    /// Smallest interarrival jitter of a regular packet, in ms; -1 when there is none (no
    /// clock rate, or fewer than two packets), as tshark prints it.
    pub fn min_jitter_ms(&self) -> f64 {
        self.min_jitter_ms.unwrap_or(-1.0)
    }

    /// Wireshark's mean interarrival jitter, in ms (0 when there is none).
    pub fn mean_jitter_ms(&self) -> f64 {
        self.mean_jitter_ms
    }

    /// Largest interarrival jitter of a regular packet, in ms (0 when there is none).
    pub fn max_jitter_ms(&self) -> f64 {
        self.max_jitter_ms
    }

    /// The running interarrival jitter after the latest packet, in ms (0 before the
    /// second packet or without a clock).
    pub fn jitter_ms(&self) -> f64 {
        self.jitter_ms
    }

    /// Arrival time of the first packet.
    pub fn first_arrival(&self) -> Option<Timestamp> {
        self.first_arrival
    }

    /// Arrival time of the latest packet.
    pub fn last_arrival(&self) -> Option<Timestamp> {
        self.last_arrival
    }
}

/// Wireshark's test for "in time sequence": `ts` is less than 2^31 ahead of `first`, or,
/// once the timestamp wrapped, at most 2^31 ahead (the two branches differ by one at
/// exactly 2^31, as Wireshark's do).
fn timestamp_in_sequence(first: u32, ts: u32) -> bool {
    let (first, ts) = (i64::from(first), i64::from(ts));
    if first <= ts {
        ts - first < 0x8000_0000
    } else {
        (0xFFFF_FFFF - first) + ts < 0x8000_0000
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Builds an RTP packet: fixed header fields, then `rest` (CSRCs, extension, payload, padding).
    fn rtp(first: u8, second: u8, seq: u16, ts: u32, ssrc: u32, rest: &[u8]) -> Vec<u8> {
        let mut b = vec![first, second];
        b.extend_from_slice(&seq.to_be_bytes());
        b.extend_from_slice(&ts.to_be_bytes());
        b.extend_from_slice(&ssrc.to_be_bytes());
        b.extend_from_slice(rest);
        b
    }

    /// What a parse is expected to give: (marker, pt, seq, ts, ssrc, csrcs, extension, payload).
    type Parsed<'a> = (bool, u8, u16, u32, u32, Vec<u32>, Option<(u16, &'a [u8])>, &'a [u8]);

    fn check(input: &[u8], expected: Result<Parsed<'_>, DecodeError>) {
        let got = RtpPacket::parse(input).map(|p| {
            (
                p.marker,
                p.payload_type,
                p.sequence,
                p.timestamp,
                p.ssrc,
                p.csrcs().collect::<Vec<_>>(),
                p.extension().map(|e| (e.profile, e.data)),
                p.payload,
            )
        });
        assert_eq!(got, expected);
    }

    #[test]
    fn plain_packet() {
        let b = rtp(0x80, 0x00, 7, 160, 0xdead_beef, b"abc");
        check(&b, Ok((false, 0, 7, 160, 0xdead_beef, vec![], None, b"abc")));
        let p = RtpPacket::parse(&b).unwrap();
        assert_eq!((p.version, p.padding, p.padding_len, p.header_len), (2, false, 0, 12));
    }

    #[test]
    fn marker_and_payload_type() {
        check(&rtp(0x80, 0x80 | 101, 1, 2, 3, b"x"), Ok((true, 101, 1, 2, 3, vec![], None, b"x")));
    }

    #[test]
    fn csrc_list() {
        let b = rtp(0x82, 8, 1, 2, 3, &[0, 0, 0, 1, 0, 0, 0, 2, 0xaa]);
        check(&b, Ok((false, 8, 1, 2, 3, vec![1, 2], None, &[0xaa])));
        assert_eq!(RtpPacket::parse(&b).unwrap().header_len, 20);
    }

    #[test]
    fn header_extension() {
        let b = rtp(0x90, 0, 1, 2, 3, &[0xbe, 0xde, 0, 1, 0x10, 0x20, 0x30, 0x40, 0x55]);
        check(&b, Ok((false, 0, 1, 2, 3, vec![], Some((0xbede, &[0x10, 0x20, 0x30, 0x40])), &[0x55])));
    }

    #[test]
    fn empty_header_extension() {
        check(
            &rtp(0x90, 0, 1, 2, 3, &[0x10, 0x00, 0, 0, 9]),
            Ok((false, 0, 1, 2, 3, vec![], Some((0x1000, &[])), &[9])),
        );
    }

    #[test]
    fn csrc_and_extension_together() {
        let b = rtp(0x91, 0, 1, 2, 3, &[0, 0, 0, 9, 0xab, 0xcd, 0, 1, 1, 2, 3, 4, 7, 7]);
        check(&b, Ok((false, 0, 1, 2, 3, vec![9], Some((0xabcd, &[1, 2, 3, 4])), &[7, 7])));
    }

    #[test]
    fn padding_is_stripped() {
        let b = rtp(0xa0, 0, 1, 2, 3, &[1, 2, 0, 0, 3]);
        check(&b, Ok((false, 0, 1, 2, 3, vec![], None, &[1, 2])));
        let p = RtpPacket::parse(&b).unwrap();
        assert!(p.padding);
        assert_eq!(p.padding_len, 3);
    }

    #[test]
    fn padding_can_fill_the_whole_payload() {
        check(&rtp(0xa0, 0, 1, 2, 3, &[0, 0, 3]), Ok((false, 0, 1, 2, 3, vec![], None, &[])));
    }

    #[test]
    fn padding_longer_than_payload() {
        let b = rtp(0xa0, 0, 1, 2, 3, &[1, 2, 4]);
        check(&b, Err(DecodeError::invalid(Layer::Rtp, 14, "padding", "padding count exceeds the payload")));
    }

    #[test]
    fn a_protected_packet_keeps_its_padding_bit_and_every_byte() {
        // SRTP: the last byte is the tag's, here 4, which as a padding count would exceed
        // the payload; the header still reads and the payload runs to the end.
        let b = rtp(0xa0, 0, 1, 2, 3, &[1, 2, 4]);
        let p = RtpPacket::parse_protected(&b).expect("parses");
        assert_eq!((p.padding, p.padding_len, p.payload, p.header_len), (true, 0, &[1, 2, 4][..], 12));
        assert_eq!(RtpPacket::parse_protected(&b[..11]), Err(DecodeError::truncated(Layer::Rtp, 0, 12, 11)));
    }

    #[test]
    fn padding_count_zero() {
        let b = rtp(0xa0, 0, 1, 2, 3, &[1, 2, 0]);
        check(&b, Err(DecodeError::invalid(Layer::Rtp, 14, "padding", "padding count is 0")));
    }

    #[test]
    fn padding_bit_without_payload() {
        check(&rtp(0xa0, 0, 1, 2, 3, &[]), Err(DecodeError::truncated(Layer::Rtp, 12, 1, 0)));
    }

    #[test]
    fn bad_version() {
        for first in [0x00, 0x40, 0xc0] {
            check(
                &rtp(first, 0, 1, 2, 3, b"x"),
                Err(DecodeError::invalid(Layer::Rtp, 0, "version", "not RTP version 2")),
            );
        }
    }

    #[test]
    fn truncated_fixed_header() {
        check(&[], Err(DecodeError::truncated(Layer::Rtp, 0, 12, 0)));
        check(&[0x80, 0, 0, 1, 0, 0, 0, 2, 0, 0, 0], Err(DecodeError::truncated(Layer::Rtp, 0, 12, 11)));
    }

    #[test]
    fn truncated_csrc_list() {
        check(&rtp(0x83, 0, 1, 2, 3, &[0, 0, 0, 1, 0, 0]), Err(DecodeError::truncated(Layer::Rtp, 12, 12, 6)));
    }

    #[test]
    fn truncated_extension_header() {
        check(&rtp(0x90, 0, 1, 2, 3, &[0xbe, 0xde]), Err(DecodeError::truncated(Layer::Rtp, 12, 4, 2)));
    }

    #[test]
    fn extension_length_lies() {
        check(
            &rtp(0x90, 0, 1, 2, 3, &[0xbe, 0xde, 0, 2, 1, 2, 3, 4]),
            Err(DecodeError::truncated(Layer::Rtp, 16, 8, 4)),
        );
    }

    #[test]
    fn header_only_packet_parses_with_empty_payload() {
        check(&rtp(0x80, 0, 1, 2, 3, &[]), Ok((false, 0, 1, 2, 3, vec![], None, &[])));
    }

    #[test]
    fn rtp_heuristic() {
        assert!(looks_like_rtp(&rtp(0x80, 0, 1, 2, 3, b"x")));
        assert!(looks_like_rtp(&rtp(0x80, 0x80 | 96, 1, 2, 3, b"x")));
        assert!(looks_like_rtp(&rtp(0x80, 0x80 | 77, 1, 2, 3, b"x")));
        // No payload, bad version, cut-short header, lying lengths and padding.
        assert!(!looks_like_rtp(&rtp(0x80, 0, 1, 2, 3, b"")));
        assert!(!looks_like_rtp(&rtp(0x40, 0, 1, 2, 3, b"x")));
        assert!(!looks_like_rtp(&[0x80, 0, 0, 1]));
        assert!(!looks_like_rtp(&rtp(0x8f, 0, 1, 2, 3, b"x")));
        assert!(!looks_like_rtp(&rtp(0x90, 0, 1, 2, 3, &[0, 0, 0, 5, 1])));
        assert!(!looks_like_rtp(&rtp(0xa0, 0, 1, 2, 3, &[1, 9])));
        assert!(!looks_like_rtp(&rtp(0xa0, 0, 1, 2, 3, &[1, 2])));
    }

    #[test]
    fn rtcp_is_not_rtp() {
        // RTCP SR (200), RR (201), SDES, BYE and APP read as PT 72-76 with the marker bit.
        for pt in 200u8..=204 {
            assert!(!looks_like_rtp(&rtp(0x80, pt, 0, 0, 3, b"xxxx")), "PT {pt}");
        }
        assert!(!looks_like_rtp(&rtp(0x80, 72, 0, 0, 3, b"xxxx")));
        assert!(looks_like_rtp(&rtp(0x80, 0x80 | 71, 0, 0, 3, b"xxxx")));
    }

    #[test]
    fn static_payload_types() {
        let names: Vec<_> = (0..=35).map(|pt| static_payload_name(pt).unwrap_or("-")).collect();
        assert_eq!(
            names.join(" "),
            "PCMU - - GSM G723 DVI4 DVI4 LPC PCMA G722 L16 L16 QCELP CN MPA G728 DVI4 DVI4 G729 - - - - - - \
             CelB JPEG - nv - - H261 MPV MP2T H263 -"
        );
        let rates: Vec<_> = [0, 3, 6, 8, 9, 10, 13, 16, 17, 18, 26, 34, 35, 96, 127]
            .iter()
            .map(|&pt| static_clock_rate(pt).unwrap_or(0))
            .collect();
        assert_eq!(rates, [8000, 8000, 16000, 8000, 8000, 44100, 8000, 11025, 22050, 8000, 90000, 90000, 0, 0, 0]);
        assert_eq!(static_payload_name(96), None);
        // Every named type has a clock rate and the other way round.
        for pt in 0..=127 {
            assert_eq!(static_payload_name(pt).is_some(), static_clock_rate(pt).is_some(), "PT {pt}");
        }
    }

    /// One packet for [`StreamStats`]: (arrival in µs, sequence number, RTP timestamp, payload type, marker).
    type Pkt = (i64, u16, u32, u8, bool);

    fn feed(packets: &[Pkt], clock_rate: Option<u32>) -> StreamStats {
        let mut s = StreamStats::default();
        for &(us, seq, ts, pt, marker) in packets {
            s.update(Timestamp::from_nanos(1_000_000_000_000 + us * 1000), seq, ts, clock_rate, marker, pt);
        }
        s
    }

    /// Checks (packets, expected, lost, sequence errors, duplicates).
    fn check_counts(packets: &[Pkt], expected: (u64, u64, i64, u64, u64)) {
        let s = feed(packets, None);
        assert_eq!((s.packets(), s.expected(), s.lost(), s.sequence_errors(), s.duplicates()), expected);
    }

    /// PCMU packets 20 ms and 160 timestamp units apart, with the given sequence numbers.
    fn pcmu(seqs: &[u16]) -> Vec<Pkt> {
        seqs.iter().enumerate().map(|(i, &seq)| (i as i64 * 20_000, seq, i as u32 * 160, 0, false)).collect()
    }

    #[test]
    fn stats_empty() {
        let s = StreamStats::default();
        assert_eq!((s.packets(), s.expected(), s.lost(), s.first_arrival()), (0, 0, 0, None));
        assert_eq!((s.min_delta_ms(), s.mean_delta_ms(), s.max_delta_ms()), (-1.0, 0.0, 0.0));
        assert_eq!((s.min_jitter_ms(), s.mean_jitter_ms(), s.max_jitter_ms()), (-1.0, 0.0, 0.0));
    }

    #[test]
    fn stats_in_order() {
        check_counts(&pcmu(&[100, 101, 102, 103, 104]), (5, 5, 0, 0, 0));
    }

    #[test]
    fn stats_single_packet() {
        check_counts(&pcmu(&[7]), (1, 1, 0, 0, 0));
    }

    #[test]
    fn stats_loss() {
        check_counts(&pcmu(&[10, 11, 14, 15, 17]), (5, 8, 3, 2, 0));
    }

    #[test]
    fn stats_duplicate() {
        check_counts(&pcmu(&[1, 2, 2, 3, 4]), (5, 4, -1, 1, 1));
    }

    #[test]
    fn stats_duplicate_end_packets() {
        // sipp's RFC 2833 captures repeat the final event packet twice: tshark shows -2.
        check_counts(&pcmu(&[7984, 7985, 7986, 7987, 7988, 7989, 7990, 7991, 7991, 7991]), (10, 8, -2, 2, 2));
    }

    #[test]
    fn stats_reorder() {
        check_counts(&pcmu(&[1, 2, 4, 3, 5, 6]), (6, 6, 0, 2, 0));
    }

    #[test]
    fn stats_last_packet_late_lowers_expected() {
        check_counts(&pcmu(&[10, 11, 12, 13, 11]), (5, 2, -3, 1, 1));
    }

    #[test]
    fn stats_wrap_around() {
        check_counts(&pcmu(&[65532, 65533, 65534, 65535, 0, 1, 2, 3]), (8, 8, 0, 0, 0));
    }

    #[test]
    fn stats_wrap_around_with_loss() {
        check_counts(&pcmu(&[65530, 65531, 3, 4]), (4, 11, 7, 1, 0));
    }

    #[test]
    fn stats_two_wraps() {
        let seqs: Vec<u16> = (0..500u32).map(|i| (65000 + i * 300) as u16).collect();
        check_counts(&pcmu(&seqs), (500, 149_701, 149_201, 499, 0));
    }

    #[test]
    fn stats_big_jump() {
        check_counts(&pcmu(&[10, 11, 5000, 5001, 5002]), (5, 4993, 4988, 1, 0));
    }

    #[test]
    fn stats_late_packet_before_the_first_counts_a_cycle() {
        // Wireshark counts a wrap-around when an in-time packet is below the first one.
        let packets = [(0, 100, 1000, 0, false), (20_000, 99, 1200, 0, false), (40_000, 101, 1160, 0, false)];
        check_counts(&packets, (3, 65538, 65535, 1, 0));
    }

    #[test]
    fn stats_late_packet_before_the_first_with_older_timestamp() {
        // Its timestamp is older than the first one: out of time sequence, no cycle.
        let packets = [(0, 100, 1000, 0, false), (20_000, 99, 840, 0, false), (40_000, 101, 1160, 0, false)];
        check_counts(&packets, (3, 2, -1, 1, 0));
    }

    #[test]
    fn stats_stream_starting_at_zero() {
        check_counts(&pcmu(&[0, 1, 65535, 0, 1, 2]), (6, 65539, 65533, 1, 2));
    }

    #[test]
    fn stats_timestamp_going_back_is_ignored() {
        let packets = [
            (0, 1, 5000, 0, false),
            (20_000, 2, 5160, 0, false),
            (40_000, 3, 4000, 0, false),
            (60_000, 4, 5480, 0, false),
            (80_000, 5, 5640, 0, false),
        ];
        let s = feed(&packets, None);
        // The packet with the old timestamp does not move the expected sequence number, so
        // the next one looks like a jump; nor is it a reference: the next delta is 40 ms.
        assert_eq!((s.packets(), s.lost(), s.sequence_errors()), (5, 0, 1));
        assert_eq!((s.min_delta_ms(), s.mean_delta_ms(), s.max_delta_ms()), (20.0, 25.0, 40.0));
    }

    #[test]
    fn stats_timestamp_wrap_stays_in_sequence() {
        let packets: Vec<Pkt> = (0..4u32)
            .map(|i| (i64::from(i) * 20_000, i as u16, 0xFFFF_FF00u32.wrapping_add(i * 160), 0, false))
            .collect();
        let s = feed(&packets, None);
        assert_eq!((s.sequence_errors(), s.max_delta_ms(), s.max_jitter_ms()), (0, 20.0, 0.0));
    }

    #[test]
    fn timestamp_order_matches_wireshark_at_the_edges() {
        assert!(timestamp_in_sequence(10, 10));
        assert!(timestamp_in_sequence(10, 10 + 0x7FFF_FFFF));
        assert!(!timestamp_in_sequence(10, 10 + 0x8000_0000));
        assert!(!timestamp_in_sequence(10, 9));
        assert!(timestamp_in_sequence(0xFFFF_FF00, 5));
        // Exactly 2^31 ahead across the wrap is still in sequence, unlike without a wrap.
        assert!(timestamp_in_sequence(0x9000_0000, 0x1000_0000));
        assert!(!timestamp_in_sequence(0x9000_0000, 0x1000_0001));
    }

    /// Checks (min, mean, max delta, min, mean, max jitter), to the nanosecond.
    fn check_timing(s: &StreamStats, expected: [f64; 6]) {
        let got = [
            s.min_delta_ms(),
            s.mean_delta_ms(),
            s.max_delta_ms(),
            s.min_jitter_ms(),
            s.mean_jitter_ms(),
            s.max_jitter_ms(),
        ];
        for (g, e) in got.iter().zip(expected) {
            assert!((g - e).abs() < 1e-9, "got {got:?}, expected {expected:?}");
        }
    }

    #[test]
    fn stats_delta_and_jitter_by_hand() {
        // Arrivals 0, 20, 42, 59 ms; timestamps 20 ms apart at 8 kHz. Transit differences:
        // 0, 2, 3 ms; jitter 0, 2/16 = 0.125, (15 * 0.125 + 3) / 16 = 0.3046875. tshark 4.0
        // prints 17.000 19.667 22.000 0.000 0.143 0.305 for the same packets.
        let packets = [
            (0, 100, 1000, 0, false),
            (20_000, 101, 1160, 0, false),
            (42_000, 102, 1320, 0, false),
            (59_000, 103, 1480, 0, false),
        ];
        let s = feed(&packets, None);
        let mean_jitter = ((0.0 + 0.125) / 2.0 * 2.0 + 0.3046875) / 3.0;
        check_timing(&s, [17.0, 59.0 / 3.0, 22.0, 0.0, mean_jitter, 0.3046875]);
        assert_eq!(s.first_arrival(), Some(Timestamp::from_nanos(1_000_000_000_000)));
        assert_eq!(s.last_arrival(), Some(Timestamp::from_nanos(1_000_059_000_000)));
    }

    #[test]
    fn stats_marker_and_comfort_noise_are_left_out() {
        // The jitter keeps running through marker and CN packets, but only regular packets
        // count. Packet 3 is CN (80 ms gap), packet 4 follows CN, packet 5 has the marker.
        let packets = [
            (0, 1, 0, 0, true),
            (20_000, 2, 160, 0, false),
            (100_000, 3, 320, 13, false),
            (120_000, 4, 480, 0, false),
            (140_000, 5, 640, 0, true),
            (160_000, 6, 800, 0, false),
        ];
        let s = feed(&packets, None);
        // Transit differences 0, 60, 0, 0, 0: jitter 0, 3.75, then * 15/16 three times.
        // tshark 4.0 prints 20.000 20.000 20.000 0.000 0.618 3.090.
        let j6 = 3.75 * (15.0f64 / 16.0).powi(3);
        check_timing(&s, [20.0, (20.0 * 4.0 + 20.0) / 5.0, 20.0, 0.0, j6 / 5.0, j6]);
    }

    #[test]
    fn stats_without_clock_rate_have_deltas_but_no_jitter() {
        let packets: Vec<Pkt> = (0..4).map(|i| (i * 20_000, i as u16, i as u32 * 160, 96, false)).collect();
        check_timing(&feed(&packets, None), [20.0, 20.0, 20.0, -1.0, 0.0, 0.0]);
        // A dynamic payload type with a signalled clock rate gets jitter.
        check_timing(&feed(&packets, Some(8000)), [20.0, 20.0, 20.0, 0.0, 0.0, 0.0]);
        // A clock rate under 1000 Hz is treated as unknown rather than dividing by zero.
        check_timing(&feed(&packets, Some(500)), [20.0, 20.0, 20.0, -1.0, 0.0, 0.0]);
    }

    #[test]
    fn stats_static_payload_types_use_wiresharks_clock() {
        // PT 11 (L16, 44100 Hz) counts 44 samples per ms: 882 units are 20.045... ms.
        let packets = [(0, 1, 0, 11, false), (20_000, 2, 882, 11, false)];
        let diff = 882.0 / 44.0 - 20.0;
        let s = feed(&packets, Some(8000));
        check_timing(&s, [20.0, 20.0, 20.0, diff / 16.0, diff / 16.0, diff / 16.0]);
    }

    #[test]
    fn stats_payload_type_change_uses_the_new_clock() {
        // PT 6 is DVI4 at 16 kHz: 480 units after the first timestamp are 30 ms, 10 ms
        // after the previous PCMU packet's 20 ms, so the packet arriving 20 ms later is 10 ms
        // off (tshark 4.0: mean jitter 0.312, max 0.625).
        let packets = [(0, 1, 0, 0, false), (20_000, 2, 160, 0, false), (40_000, 3, 480, 6, false)];
        let s = feed(&packets, None);
        check_timing(&s, [20.0, 20.0, 20.0, 0.0, 0.625 / 2.0, 0.625]);
    }

    #[test]
    fn seen_window_forgets_old_numbers() {
        let mut seqs: Vec<u16> = (0..2000).collect();
        seqs.push(10); // older than the window: not known to be a duplicate
        seqs.push(1990); // inside the window
        let s = feed(&pcmu(&seqs), None);
        assert_eq!(s.duplicates(), 1);
        // Wrapping around does not make old numbers look like duplicates.
        let seqs: Vec<u16> = (0..70_000u32).map(|i| i as u16).collect();
        assert_eq!(feed(&pcmu(&seqs), None).duplicates(), 0);
    }
}
