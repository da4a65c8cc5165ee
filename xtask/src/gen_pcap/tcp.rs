//! SIP over TCP as a real connection carries it: 3-way handshake, messages as segments with correct seq/ack (some split in two, some two to a segment), pure ACKs and a FIN exchange.
//!
//! Splitting and coalescing are what make a SIP-over-TCP parser do stream reassembly instead
//! of reading one message per segment, so the generator produces both on purpose.

use super::pcap::{TcpHeader, TCP_ACK, TCP_FIN, TCP_PSH, TCP_SYN};
use super::rng::Rng;
use super::Side;

/// A SIP message handed to TCP by `from` at time `t` (microseconds).
pub struct Send<'a> {
    pub t: u64,
    pub from: Side,
    pub bytes: &'a [u8],
}

/// One segment on the wire.
#[derive(Debug)]
pub struct Segment {
    pub t: u64,
    pub from: Side,
    pub header: TcpHeader,
    pub payload: Vec<u8>,
}

/// How often messages are split or coalesced.
pub struct Policy {
    /// Probability that a message of 200 bytes or more goes out as two segments.
    pub split: f64,
    /// Probability that a message and the next one from the same side, sent within
    /// [`COALESCE_WINDOW_US`], share one segment (as when a stack's writes queue up).
    pub coalesce: f64,
}

impl Default for Policy {
    fn default() -> Self {
        Policy { split: 0.5, coalesce: 0.5 }
    }
}

pub const COALESCE_WINDOW_US: u64 = 500_000;

/// When the connection opens and closes, and the one-way delay between the ends.
pub struct Timing {
    pub open_at: u64,
    pub delay: u64,
    /// Must come after the last message (and its ACK).
    pub close_at: u64,
}

/// A peer acknowledges data this long after it arrived, unless it answers with data first.
const ACK_DELAY_US: u64 = 500;

/// The caller is the client: it opens the connection, and closes it after the last message.
/// `isn` are the initial sequence numbers of caller and callee.
pub fn connection(sends: &[Send], isn: [u32; 2], timing: &Timing, policy: &Policy, rng: &mut Rng) -> Vec<Segment> {
    let Timing { open_at, delay, close_at } = *timing;
    let mut next = [isn[0].wrapping_add(1), isn[1].wrapping_add(1)];
    let mut out = vec![
        control(open_at, Side::Caller, isn[0], 0, TCP_SYN),
        control(open_at + delay, Side::Callee, isn[1], next[0], TCP_SYN | TCP_ACK),
        control(open_at + 2 * delay, Side::Caller, next[0], next[1], TCP_ACK),
    ];

    let writes = plan_writes(sends, policy, rng);
    for (i, Write { from, pieces }) in writes.iter().enumerate() {
        let (me, peer) = (from.index(), from.peer().index());
        for (t, payload) in pieces {
            let header = TcpHeader { seq: next[me], ack: next[peer], flags: TCP_PSH | TCP_ACK };
            out.push(Segment { t: *t, from: *from, header, payload: payload.clone() });
            next[me] = next[me].wrapping_add(payload.len() as u32);
        }
        // The peer acknowledges on its own unless its answer comes soon enough to carry the ACK,
        // and only if that ACK would go out before the next write (which then carries it).
        let last = pieces.last().map_or(0, |(t, _)| *t);
        let ack_at = last + ACK_DELAY_US;
        let next_write = writes.get(i + 1).map(|w| (w.from, w.pieces[0].0));
        let piggybacked = next_write.is_some_and(|(side, t)| side == from.peer() && t <= last + 200_000);
        let in_time = next_write.is_none_or(|(_, t)| t > ack_at);
        if !piggybacked && in_time {
            out.push(control(ack_at, from.peer(), next[peer], next[me], TCP_ACK));
        }
    }

    out.push(control(close_at, Side::Caller, next[0], next[1], TCP_FIN | TCP_ACK));
    next[0] = next[0].wrapping_add(1);
    out.push(control(close_at + delay, Side::Callee, next[1], next[0], TCP_FIN | TCP_ACK));
    next[1] = next[1].wrapping_add(1);
    out.push(control(close_at + 2 * delay, Side::Caller, next[0], next[1], TCP_ACK));
    debug_assert!(out.windows(2).all(|w| w[0].t <= w[1].t), "segments in time order");
    out
}

/// What one side hands to TCP at once, as the segments (time, payload) it goes out in.
struct Write {
    from: Side,
    pieces: Vec<(u64, Vec<u8>)>,
}

/// Groups messages into writes, coalescing and splitting as the policy draws.
fn plan_writes(sends: &[Send], policy: &Policy, rng: &mut Rng) -> Vec<Write> {
    let mut writes = Vec::new();
    let mut i = 0;
    while i < sends.len() {
        let s = &sends[i];
        if let Some(n) = sends.get(i + 1) {
            if n.from == s.from && n.t - s.t <= COALESCE_WINDOW_US && rng.chance(policy.coalesce) {
                writes.push(Write { from: s.from, pieces: vec![(n.t, [s.bytes, n.bytes].concat())] });
                i += 2;
                continue;
            }
        }
        let len = s.bytes.len() as u64;
        if len >= 200 && rng.chance(policy.split) {
            let cut = rng.range(len / 4, 3 * len / 4) as usize;
            let gap = rng.range(100, 400);
            let pieces = vec![(s.t, s.bytes[..cut].to_vec()), (s.t + gap, s.bytes[cut..].to_vec())];
            writes.push(Write { from: s.from, pieces });
        } else {
            writes.push(Write { from: s.from, pieces: vec![(s.t, s.bytes.to_vec())] });
        }
        i += 1;
    }
    writes
}

fn control(t: u64, from: Side, seq: u32, ack: u32, flags: u8) -> Segment {
    Segment { t, from, header: TcpHeader { seq, ack, flags }, payload: Vec::new() }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// INVITE / 100 / 180 / 200 / ACK: the 100 and 180 can share a segment, INVITE and 200 can split.
    fn sends(msgs: &[Vec<u8>]) -> Vec<Send<'_>> {
        let plan = [
            (1_000, Side::Caller),
            (10_000, Side::Callee),
            (50_000, Side::Callee),
            (2_000_000, Side::Callee),
            (2_010_000, Side::Caller),
        ];
        plan.iter().zip(msgs).map(|(&(t, from), m)| Send { t, from, bytes: m }).collect()
    }

    fn messages() -> Vec<Vec<u8>> {
        [600, 150, 250, 700, 300].iter().enumerate().map(|(i, &n)| vec![b'a' + i as u8; n]).collect()
    }

    fn run(policy: Policy, seed: u64) -> Vec<Segment> {
        let msgs = messages();
        let timing = Timing { open_at: 0, delay: 300, close_at: 3_000_000 };
        connection(&sends(&msgs), [0xFFFF_FF00, 77], &timing, &policy, &mut Rng::new(seed))
    }

    /// Replays the segments as the two ends see them and checks every seq and ack.
    fn check_sequence_numbers(segments: &[Segment]) -> [Vec<u8>; 2] {
        let mut next = [0u32; 2];
        let mut data: [Vec<u8>; 2] = Default::default();
        for (i, s) in segments.iter().enumerate() {
            let (me, peer) = (s.from.index(), s.from.peer().index());
            if s.header.flags & TCP_SYN != 0 {
                next[me] = s.header.seq.wrapping_add(1);
            } else {
                assert_eq!(s.header.seq, next[me], "segment {i}: seq");
                next[me] = next[me].wrapping_add(s.payload.len() as u32);
            }
            if s.header.flags & TCP_FIN != 0 {
                next[me] = next[me].wrapping_add(1);
            }
            if s.header.flags & TCP_ACK != 0 {
                assert_eq!(s.header.ack, next[peer], "segment {i}: ack");
            }
            data[me].extend_from_slice(&s.payload);
        }
        assert!(segments.windows(2).all(|w| w[0].t <= w[1].t));
        data
    }

    fn flags(segments: &[Segment]) -> Vec<u8> {
        segments.iter().map(|s| s.header.flags).collect()
    }

    #[test]
    fn one_segment_per_message_without_split_or_coalesce() {
        let segments = run(Policy { split: 0.0, coalesce: 0.0 }, 1);
        let data = check_sequence_numbers(&segments);
        let msgs = messages();
        assert_eq!(data[0], [&msgs[0][..], &msgs[4][..]].concat());
        assert_eq!(data[1], [&msgs[1][..], &msgs[2][..], &msgs[3][..]].concat());
        let with_data: Vec<usize> =
            segments.iter().filter(|s| !s.payload.is_empty()).map(|s| s.payload.len()).collect();
        assert_eq!(with_data, [600, 150, 250, 700, 300]);
        let (syn, synack, ack, psh, fin) = (TCP_SYN, TCP_SYN | TCP_ACK, TCP_ACK, TCP_PSH | TCP_ACK, TCP_FIN | TCP_ACK);
        // The 100 and 180 answer the INVITE, so it needs no pure ACK; the 180 and the
        // 200 are far apart, so the caller acknowledges each; the final ACK gets one too.
        assert_eq!(flags(&segments), [syn, synack, ack, psh, psh, ack, psh, ack, psh, psh, ack, fin, fin, ack]);
    }

    #[test]
    fn split_and_coalesced_segments_keep_the_byte_stream() {
        let segments = run(Policy { split: 1.0, coalesce: 1.0 }, 1);
        let data = check_sequence_numbers(&segments);
        let msgs = messages();
        assert_eq!(data[0], [&msgs[0][..], &msgs[4][..]].concat());
        assert_eq!(data[1], [&msgs[1][..], &msgs[2][..], &msgs[3][..]].concat());
        let payloads: Vec<&Vec<u8>> = segments.iter().map(|s| &s.payload).filter(|p| !p.is_empty()).collect();
        // INVITE in two, 100+180 together, 200 in two, ACK in two.
        assert_eq!(payloads.len(), 7);
        assert_eq!(payloads[0].len() + payloads[1].len(), 600);
        assert!(payloads[0].len() >= 150 && payloads[0].len() <= 450);
        assert_eq!(*payloads[2], [&msgs[1][..], &msgs[2][..]].concat());
        assert_eq!(segments.iter().filter(|s| s.payload == *payloads[2]).map(|s| s.t).next(), Some(50_000));
    }

    #[test]
    fn sequence_numbers_wrap() {
        // The caller's ISN is 256 below 2^32, so its INVITE crosses the wrap.
        let segments = run(Policy { split: 0.0, coalesce: 0.0 }, 2);
        check_sequence_numbers(&segments);
        let ack = segments.iter().find(|s| s.from == Side::Callee && s.header.flags & TCP_PSH != 0).unwrap();
        assert_eq!(ack.header.ack, 0xFFFF_FF01u32.wrapping_add(600));
    }
}
