//! TCP stream reassembly: each direction's bytes put in order and cut into PDUs by a framer.
//!
//! [`TcpReassembler::push`] takes one segment of one direction ([`StreamKey`]). Bytes
//! that arrive in sequence are appended to the direction's buffer and offered to the
//! framer again and again: it answers [`Framing::Message`] for a whole PDU at the start of
//! the buffer, [`Framing::Skip`] for bytes to drop (keep-alives, junk) or
//! [`Framing::NeedMore`]. Each PDU is handed to `emit` as a [`Pdu`] that says which frames
//! it came from.
//!
//! What the network and the capture do to a stream, and what happens then:
//! - the capture starts mid-connection: the first data segment sets the sequence origin
//!   (a SYN sets it otherwise), and the framer skips the tail of the PDU it lands in;
//! - segments come out of order: later ones are held until the gap fills;
//! - retransmissions and overlaps: bytes already delivered are trimmed off;
//! - a segment the capture lost never arrives: once the held segments exceed their bounds,
//!   or the gap is older than [`TcpLimits::gap_timeout`], the partial PDU before the gap is
//!   dropped and delivery resumes after it (the framer resynchronises on the next PDU);
//! - FIN or RST: the direction ends; a partial PDU is dropped, never emitted;
//! - a framer that never completes: the buffer is dropped past
//!   [`TcpLimits::max_buffered_bytes`] rather than grown;
//! - many connections: at most [`TcpLimits::max_streams`] directions are tracked, the least
//!   recently active is evicted first, and [`TcpReassembler::expire`] forgets idle ones.
//!
//! Sequence numbers are compared modulo 2^32, so streams that wrap around are fine.

use crate::packet::TcpSegment;
use crate::Timestamp;
use std::collections::{BTreeMap, HashMap, VecDeque};
use std::net::SocketAddr;
use std::time::Duration;

const FIN: u8 = 0x01;
const SYN: u8 = 0x02;
const RST: u8 = 0x04;

/// A segment further than this from where a stream expects data belongs to another
/// connection on the same addresses (or the capture lost sync): the stream starts over.
const RESYNC_DISTANCE: u32 = 1 << 24;

/// One direction of a TCP connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct StreamKey {
    /// The sender.
    pub src: SocketAddr,
    /// The receiver.
    pub dst: SocketAddr,
    /// What else tells this stream apart from another between the same addresses: the
    /// caller's number for the tunnel the stream came through (0 for none).
    pub context: u32,
}

/// Bounds on what the reassembler keeps.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TcpLimits {
    /// Directions tracked at once; the least recently active is evicted for a new one.
    pub max_streams: usize,
    /// In-order bytes buffered per direction while the framer asks for more; past this
    /// the buffer is dropped.
    pub max_buffered_bytes: usize,
    /// Out-of-order segments held per direction; past this the gap is skipped.
    pub max_out_of_order_segments: usize,
    /// Out-of-order bytes held per direction; past this the gap is skipped.
    pub max_out_of_order_bytes: usize,
    /// A direction with no segment for this long (capture time) is forgotten by
    /// [`TcpReassembler::expire`].
    pub idle_timeout: Duration,
    /// A gap in the sequence older than this (capture time) is skipped at the next segment.
    pub gap_timeout: Duration,
}

impl Default for TcpLimits {
    fn default() -> Self {
        TcpLimits {
            max_streams: 16_384,
            max_buffered_bytes: 1 << 20,
            max_out_of_order_segments: 64,
            max_out_of_order_bytes: 1 << 20,
            idle_timeout: Duration::from_secs(600),
            gap_timeout: Duration::from_secs(10),
        }
    }
}

/// A framer's verdict on the bytes at the start of a stream buffer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Framing {
    /// A whole PDU of this many bytes starts the buffer.
    Message(usize),
    /// The PDU at the start of the buffer is not complete yet.
    NeedMore,
    /// Drop this many bytes (keep-alive line ends, junk before the next PDU).
    Skip(usize),
}

/// One PDU cut out of a stream.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Pdu<'a> {
    /// The PDU's bytes.
    pub data: &'a [u8],
    /// The earliest frame that carried some of its bytes.
    pub first_frame: u64,
    /// The frame that completed it: the last of its bytes, or the segment that filled a
    /// gap it waited behind.
    pub last_frame: u64,
    /// The capture time of `last_frame`.
    pub ts: Timestamp,
}

/// Counters of what the reassembler did, for diagnostics.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TcpStats {
    /// PDUs emitted.
    pub pdus: u64,
    /// Bytes received again (retransmissions, overlaps) and trimmed.
    pub retransmitted_bytes: u64,
    /// Bytes the framer skipped.
    pub skipped_bytes: u64,
    /// Gaps given up on (a segment that never came).
    pub gaps_skipped: u64,
    /// Buffers dropped because the framer never completed within the bound.
    pub buffers_dropped: u64,
    /// Directions that started over on a segment far from the expected sequence.
    pub resyncs: u64,
    /// Directions evicted to make room for new ones.
    pub streams_evicted: u64,
    /// Directions forgotten after being idle.
    pub streams_expired: u64,
}

/// Reassembles the TCP directions of a capture; see the module documentation.
#[derive(Debug)]
pub struct TcpReassembler {
    limits: TcpLimits,
    streams: HashMap<StreamKey, Stream>,
    /// Streams by last activity, oldest first, for eviction.
    lru: BTreeMap<u64, StreamKey>,
    tick: u64,
    stats: TcpStats,
}

impl TcpReassembler {
    /// An empty reassembler with these limits.
    pub fn new(limits: TcpLimits) -> Self {
        TcpReassembler { limits, streams: HashMap::new(), lru: BTreeMap::new(), tick: 0, stats: TcpStats::default() }
    }

    /// Adds one segment of direction `key`, captured in `frame` at `ts`, and emits every
    /// PDU it completes, in stream order.
    pub fn push(
        &mut self,
        key: StreamKey,
        seg: &TcpSegment<'_>,
        frame: u64,
        ts: Timestamp,
        framer: &mut dyn FnMut(&[u8]) -> Framing,
        emit: &mut dyn FnMut(Pdu<'_>),
    ) {
        let seg = Segment { seq: seg.seq, flags: seg.flags, payload: seg.payload, frame, ts };
        self.push_segment(key, seg, framer, emit);
    }

    /// Forgets directions idle for longer than [`TcpLimits::idle_timeout`] as of capture time `now`.
    pub fn expire(&mut self, now: Timestamp) {
        let idle = duration_nanos(self.limits.idle_timeout);
        let before = self.streams.len();
        let lru = &mut self.lru;
        self.streams.retain(|_, s| {
            let keep = now.as_nanos().saturating_sub(s.last_seen.as_nanos()) <= idle;
            if !keep {
                lru.remove(&s.tick);
            }
            keep
        });
        self.stats.streams_expired += (before - self.streams.len()) as u64;
    }

    /// Directions currently tracked (including ended ones kept to drop late retransmissions).
    pub fn streams(&self) -> usize {
        self.streams.len()
    }

    /// What the reassembler has done so far.
    pub fn stats(&self) -> TcpStats {
        self.stats
    }

    fn push_segment(
        &mut self,
        key: StreamKey,
        seg: Segment<'_>,
        framer: &mut dyn FnMut(&[u8]) -> Framing,
        emit: &mut dyn FnMut(Pdu<'_>),
    ) {
        if !self.streams.contains_key(&key) {
            // A bare ACK, FIN or RST says nothing about a stream we do not know.
            if seg.flags & SYN == 0 && (seg.payload.is_empty() || seg.flags & RST != 0) {
                return;
            }
            self.make_room();
            self.streams.insert(key, Stream::new(seg.ts));
        }
        self.tick += 1;
        let Some(stream) = self.streams.get_mut(&key) else { return };
        self.lru.remove(&stream.tick);
        stream.tick = self.tick;
        self.lru.insert(self.tick, key);
        stream.last_seen = stream.last_seen.max(seg.ts);
        stream.on_segment(seg, &self.limits, &mut self.stats, framer, emit);
    }

    fn make_room(&mut self) {
        while self.streams.len() >= self.limits.max_streams.max(1) {
            let Some((_, oldest)) = self.lru.pop_first() else { break };
            self.streams.remove(&oldest);
            self.stats.streams_evicted += 1;
        }
    }
}

/// The parts of a segment the reassembler uses.
#[derive(Clone, Copy, Debug)]
struct Segment<'a> {
    seq: u32,
    flags: u8,
    payload: &'a [u8],
    frame: u64,
    ts: Timestamp,
}

/// Which frame carried the stream bytes from `start` (a stream offset) on, and which
/// frame made them in-order (a later one when they waited behind a gap).
#[derive(Clone, Copy, Debug)]
struct Chunk {
    start: u64,
    frame: u64,
    ready_frame: u64,
    ready_ts: Timestamp,
}

/// A segment that arrived ahead of a gap.
#[derive(Clone, Debug)]
struct Held {
    seq: u32,
    data: Vec<u8>,
    frame: u64,
    ts: Timestamp,
}

/// One direction's state.
#[derive(Debug)]
struct Stream {
    /// The sequence number of the next in-order byte; `None` until the first SYN or data.
    next_seq: Option<u32>,
    /// Sequence number just after the FIN, once seen.
    fin_seq: Option<u32>,
    /// Ended by FIN or RST; only a SYN of a new connection opens it again.
    closed: bool,
    /// In-order bytes the framer has not consumed yet.
    buf: Vec<u8>,
    /// Stream offset of `buf[0]`.
    base: u64,
    /// Frames of the bytes in `buf`, by stream offset.
    chunks: VecDeque<Chunk>,
    held: Vec<Held>,
    held_bytes: usize,
    /// Capture time of the oldest held segment (when the current gap was noticed).
    gap_since: Option<Timestamp>,
    last_seen: Timestamp,
    tick: u64,
}

impl Stream {
    fn new(ts: Timestamp) -> Self {
        Stream {
            next_seq: None,
            fin_seq: None,
            closed: false,
            buf: Vec::new(),
            base: 0,
            chunks: VecDeque::new(),
            held: Vec::new(),
            held_bytes: 0,
            gap_since: None,
            last_seen: ts,
            tick: 0,
        }
    }

    /// Forgets everything but the bookkeeping of the stream map.
    fn reset(&mut self) {
        self.next_seq = None;
        self.fin_seq = None;
        self.closed = false;
        self.drop_buffer();
        self.held.clear();
        self.held_bytes = 0;
        self.gap_since = None;
    }

    fn drop_buffer(&mut self) {
        self.base += self.buf.len() as u64;
        self.buf.clear();
        self.chunks.clear();
    }

    fn close(&mut self) {
        self.drop_buffer();
        self.held.clear();
        self.held_bytes = 0;
        self.gap_since = None;
        self.closed = true;
    }

    fn on_segment(
        &mut self,
        seg: Segment<'_>,
        limits: &TcpLimits,
        stats: &mut TcpStats,
        framer: &mut dyn FnMut(&[u8]) -> Framing,
        emit: &mut dyn FnMut(Pdu<'_>),
    ) {
        if seg.flags & RST != 0 {
            self.close();
            return;
        }
        let mut seq = seg.seq;
        if seg.flags & SYN != 0 {
            seq = seq.wrapping_add(1);
            // A SYN at or before where the stream is is this connection's (retransmitted);
            // anything else opens a new connection on the same addresses.
            let same = self.next_seq.is_some_and(|next| next.wrapping_sub(seq) < RESYNC_DISTANCE);
            if !same {
                self.reset();
                self.next_seq = Some(seq);
            }
        }
        if self.closed {
            stats.retransmitted_bytes += seg.payload.len() as u64;
            return;
        }
        if seg.flags & FIN != 0 {
            self.fin_seq = Some(seq.wrapping_add(seg.payload.len() as u32));
        }
        if !seg.payload.is_empty() {
            let next = *self.next_seq.get_or_insert(seq);
            let mut ahead = seq.wrapping_sub(next) as i32;
            if ahead.unsigned_abs() > RESYNC_DISTANCE {
                self.reset();
                self.next_seq = Some(seq);
                if seg.flags & FIN != 0 {
                    self.fin_seq = Some(seq.wrapping_add(seg.payload.len() as u32));
                }
                stats.resyncs += 1;
                ahead = 0;
            }
            if ahead > 0 {
                self.hold(seq, seg, stats);
            } else {
                let seen = (ahead.unsigned_abs() as usize).min(seg.payload.len());
                stats.retransmitted_bytes += seen as u64;
                let ready = (seg.frame, seg.ts);
                self.append(seg.payload.get(seen..).unwrap_or_default(), seg.frame, ready);
                self.drain_held(Some(ready), stats);
            }
        }
        self.skip_stale_gaps(seg.ts, limits, stats);
        self.deliver(limits, stats, framer, emit);
        let finished = match (self.fin_seq, self.next_seq) {
            (Some(fin), Some(next)) => fin.wrapping_sub(next) as i32 <= 0,
            _ => false,
        };
        if finished {
            self.close();
        }
    }

    /// Appends in-order bytes carried by `frame` and made in-order by `ready` (frame, ts).
    fn append(&mut self, data: &[u8], frame: u64, ready: (u64, Timestamp)) {
        if data.is_empty() {
            return;
        }
        let start = self.base + self.buf.len() as u64;
        let (ready_frame, ready_ts) = ready;
        if self.chunks.back().is_none_or(|c| c.frame != frame || c.ready_frame != ready_frame) {
            self.chunks.push_back(Chunk { start, frame, ready_frame, ready_ts });
        }
        self.buf.extend_from_slice(data);
        if let Some(next) = self.next_seq.as_mut() {
            *next = next.wrapping_add(data.len() as u32);
        }
    }

    fn hold(&mut self, seq: u32, seg: Segment<'_>, stats: &mut TcpStats) {
        if self.held.iter().any(|h| h.seq == seq && h.data.len() >= seg.payload.len()) {
            stats.retransmitted_bytes += seg.payload.len() as u64;
            return;
        }
        self.held.push(Held { seq, data: seg.payload.to_vec(), frame: seg.frame, ts: seg.ts });
        self.held_bytes += seg.payload.len();
        self.gap_since = Some(self.gap_since.map_or(seg.ts, |t| t.min(seg.ts)));
    }

    /// Moves held segments that now join the in-order bytes into the buffer. `ready` is
    /// the segment that filled the gap; `None` when the gap was skipped, so the held
    /// segments count as ready when they arrived.
    fn drain_held(&mut self, ready: Option<(u64, Timestamp)>, stats: &mut TcpStats) {
        while let Some(next) = self.next_seq {
            let Some(i) = self.held.iter().position(|h| h.seq.wrapping_sub(next) as i32 <= 0) else { break };
            let h = self.held.swap_remove(i);
            self.held_bytes -= h.data.len();
            let seen = (next.wrapping_sub(h.seq) as usize).min(h.data.len());
            stats.retransmitted_bytes += seen as u64;
            self.append(h.data.get(seen..).unwrap_or_default(), h.frame, ready.unwrap_or((h.frame, h.ts)));
        }
        self.gap_since = self.held.iter().map(|h| h.ts).min();
    }

    /// Gives up on gaps that will not fill: too much held behind them, or too old.
    fn skip_stale_gaps(&mut self, now: Timestamp, limits: &TcpLimits, stats: &mut TcpStats) {
        let timeout = duration_nanos(limits.gap_timeout);
        loop {
            let Some(since) = self.gap_since else { return };
            let over = self.held.len() > limits.max_out_of_order_segments
                || self.held_bytes > limits.max_out_of_order_bytes
                || now.as_nanos().saturating_sub(since.as_nanos()) > timeout;
            let Some(next) = self.next_seq else { return };
            if !over {
                return;
            }
            let Some(first) = self.held.iter().map(|h| h.seq).min_by_key(|seq| seq.wrapping_sub(next)) else { return };
            // The partial PDU before the gap can never complete.
            self.drop_buffer();
            self.next_seq = Some(first);
            stats.gaps_skipped += 1;
            self.drain_held(None, stats);
        }
    }

    /// Offers the buffer to the framer until it needs more, emitting PDUs.
    fn deliver(
        &mut self,
        limits: &TcpLimits,
        stats: &mut TcpStats,
        framer: &mut dyn FnMut(&[u8]) -> Framing,
        emit: &mut dyn FnMut(Pdu<'_>),
    ) {
        let mut pos = 0;
        while let Some(rest) = self.buf.get(pos..).filter(|r| !r.is_empty()) {
            match framer(rest) {
                Framing::Message(n) if n > 0 && n <= rest.len() => {
                    let start = self.base + pos as u64;
                    let (first_frame, last) = frames_of(&self.chunks, start, start + n as u64);
                    if let (Some(data), Some(first_frame), Some(last)) = (rest.get(..n), first_frame, last) {
                        emit(Pdu { data, first_frame, last_frame: last.ready_frame, ts: last.ready_ts });
                        stats.pdus += 1;
                    }
                    pos += n;
                }
                Framing::Skip(n) if n > 0 => {
                    let n = n.min(rest.len());
                    stats.skipped_bytes += n as u64;
                    pos += n;
                }
                // NeedMore, or a framer that would make no progress.
                _ => break,
            }
        }
        self.consume(pos);
        if self.buf.len() > limits.max_buffered_bytes {
            self.drop_buffer();
            stats.buffers_dropped += 1;
        }
    }

    fn consume(&mut self, n: usize) {
        let n = n.min(self.buf.len());
        self.buf.drain(..n);
        self.base += n as u64;
        if self.buf.is_empty() {
            self.chunks.clear();
            return;
        }
        while self.chunks.get(1).is_some_and(|c| c.start <= self.base) {
            self.chunks.pop_front();
        }
    }
}

/// The lowest frame number among the chunks that overlap stream offsets `start..end`,
/// and the chunk that became in-order last.
fn frames_of(chunks: &VecDeque<Chunk>, start: u64, end: u64) -> (Option<u64>, Option<Chunk>) {
    let mut first: Option<u64> = None;
    let mut last: Option<Chunk> = None;
    for (i, c) in chunks.iter().enumerate() {
        let chunk_end = chunks.get(i + 1).map_or(u64::MAX, |n| n.start);
        if c.start >= end {
            break;
        }
        if chunk_end <= start {
            continue;
        }
        first = Some(first.map_or(c.frame, |f| f.min(c.frame)));
        if last.is_none_or(|l| c.ready_frame > l.ready_frame) {
            last = Some(*c);
        }
    }
    (first, last)
}

fn duration_nanos(d: Duration) -> i64 {
    i64::try_from(d.as_nanos()).unwrap_or(i64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sip::frame_message;
    use std::net::{IpAddr, Ipv4Addr};

    const PSH: u8 = 0x08;

    fn key(port: u16) -> StreamKey {
        let ip = IpAddr::V4(Ipv4Addr::new(10, 0, 0, 1));
        StreamKey { src: SocketAddr::new(ip, port), dst: SocketAddr::new(ip, 5060), context: 0 }
    }

    /// A PDU as the tests see it: text, first frame, last frame, seconds of ts.
    type Out = (String, u64, u64, i64);

    /// Feeds (seq, flags, payload) segments of one direction, frame n at second n, through
    /// the SIP framer; returns the PDUs.
    fn run(r: &mut TcpReassembler, k: StreamKey, first_frame: u64, segments: &[(u32, u8, &[u8])]) -> Vec<Out> {
        let mut out = Vec::new();
        for (i, &(seq, flags, payload)) in segments.iter().enumerate() {
            let frame = first_frame + i as u64;
            let seg = Segment { seq, flags, payload, frame, ts: Timestamp::from_parts(frame as i64, 0) };
            r.push_segment(k, seg, &mut frame_message, &mut |p: Pdu<'_>| {
                out.push((
                    String::from_utf8_lossy(p.data).into_owned(),
                    p.first_frame,
                    p.last_frame,
                    p.ts.as_nanos() / 1_000_000_000,
                ))
            });
        }
        out
    }

    fn check(segments: &[(u32, u8, &[u8])], expected: &[(&str, u64, u64)]) {
        let mut r = TcpReassembler::new(TcpLimits::default());
        let got = run(&mut r, key(1000), 1, segments);
        let expected: Vec<Out> = expected.iter().map(|&(s, f, l)| (s.to_string(), f, l, l as i64)).collect();
        assert_eq!(got, expected);
    }

    const A: &str = "INVITE sip:a SIP/2.0\r\nl: 3\r\n\r\nabc";
    const B: &str = "SIP/2.0 200 OK\r\nl: 0\r\n\r\n";

    fn cat(parts: &[&str]) -> Vec<u8> {
        parts.concat().into_bytes()
    }

    #[test]
    fn two_messages_in_one_segment() {
        let ab = cat(&[A, B]);
        check(&[(100, SYN, b""), (101, PSH, &ab)], &[(A, 2, 2), (B, 2, 2)]);
    }

    #[test]
    fn one_message_over_three_segments() {
        let (p1, rest) = A.as_bytes().split_at(10);
        let (p2, p3) = rest.split_at(15);
        check(&[(0, SYN, b""), (1, 0, p1), (11, 0, p2), (26, 0, p3)], &[(A, 2, 4)]);
    }

    #[test]
    fn message_and_a_half_then_the_rest() {
        let ab = cat(&[A, B]);
        let (p1, p2) = ab.split_at(A.len() + 5);
        check(&[(7, 0, p1), (7 + p1.len() as u32, 0, p2)], &[(A, 1, 1), (B, 1, 2)]);
    }

    #[test]
    fn out_of_order_segments_wait_for_the_gap() {
        let ab = cat(&[A, B]);
        let (p1, rest) = ab.split_at(10);
        let (p2, p3) = rest.split_at(30);
        // Frame 2 and 3 arrive ahead of frame 4, which fills the gap.
        check(&[(0, SYN, b""), (11, 0, p2), (41, 0, p3), (1, 0, p1)], &[(A, 2, 4), (B, 2, 4)]);
    }

    #[test]
    fn retransmissions_are_dropped() {
        let a = A.as_bytes();
        check(&[(0, SYN, b""), (1, 0, a), (1, 0, a), (1, 0, &a[..5])], &[(A, 2, 2)]);
    }

    #[test]
    fn overlapping_retransmission_keeps_only_new_bytes() {
        let ab = cat(&[A, B]);
        let (p1, _) = ab.split_at(20);
        // The second segment resends 10 bytes of the first, then carries the rest.
        check(&[(0, SYN, b""), (1, 0, p1), (11, 0, &ab[10..])], &[(A, 2, 3), (B, 3, 3)]);
    }

    #[test]
    fn overlapping_out_of_order_segments() {
        let ab = cat(&[A, B]);
        check(&[(0, SYN, b""), (21, 0, &ab[20..40]), (31, 0, &ab[30..]), (1, 0, &ab[..25])], &[(A, 2, 4), (B, 2, 4)]);
    }

    #[test]
    fn capture_starting_mid_stream_resyncs_on_the_next_message() {
        let tail_then_b = cat(&["dy of an earlier message\r\n", B]);
        check(&[(5000, PSH, &tail_then_b)], &[(B, 1, 1)]);
        // Starting inside a header block: the junk lines are skipped too.
        let middle = cat(&["Via: SIP/2.0/TCP x\r\nl: 0\r\n\r\n", A]);
        check(&[(77, 0, &middle)], &[(A, 1, 1)]);
    }

    #[test]
    fn keep_alive_line_ends() {
        let a = cat(&["\r\n\r\n", A, "\r\n\r\n"]);
        check(&[(0, SYN, b""), (1, 0, b"\r\n\r\n"), (5, 0, &a), (5 + a.len() as u32, 0, b"\r\n")], &[(A, 3, 3)]);
    }

    #[test]
    fn sequence_numbers_wrap_around() {
        let ab = cat(&[A, B]);
        let isn = u32::MAX - 20;
        let (p1, p2) = ab.split_at(30);
        let s2 = isn.wrapping_add(1).wrapping_add(30);
        check(&[(isn, SYN, b""), (s2, 0, p2), (isn.wrapping_add(1), 0, p1)], &[(A, 2, 3), (B, 2, 3)]);
    }

    #[test]
    fn lost_segment_resyncs_after_the_hold_bound() {
        let limits = TcpLimits { max_out_of_order_segments: 2, ..TcpLimits::default() };
        let mut r = TcpReassembler::new(limits);
        let a = A.as_bytes();
        let b = B.as_bytes();
        // Frame 2 carries the start of A, the rest of A is never captured; then three Bs.
        let mut seq = 1 + 10 + 20;
        let mut segs: Vec<(u32, u8, &[u8])> = vec![(0, SYN, b""), (1, 0, &a[..10])];
        for _ in 0..3 {
            segs.push((seq, 0, b));
            seq += b.len() as u32;
        }
        let got = run(&mut r, key(1), 1, &segs);
        assert_eq!(got, [(B.to_string(), 3, 3, 3), (B.to_string(), 4, 4, 4), (B.to_string(), 5, 5, 5)]);
        assert_eq!(r.stats().gaps_skipped, 1);
    }

    #[test]
    fn lost_segment_resyncs_after_the_gap_timeout() {
        let mut r = TcpReassembler::new(TcpLimits { gap_timeout: Duration::from_secs(2), ..TcpLimits::default() });
        let (a, b) = (A.as_bytes(), B.as_bytes());
        let gap_end = 1 + a.len() as u32;
        // Frame 2 at t=2 is held behind the lost A; at frame 3 (t=3) the gap is not yet
        // older than the timeout; at frame 5 (t=5) it is, and everything held is delivered
        // with the frames and times it arrived in.
        let got = run(&mut r, key(1), 1, &[(0, SYN, b""), (gap_end, 0, b), (gap_end + b.len() as u32, 0, b)]);
        assert_eq!(got, []);
        let got = run(&mut r, key(1), 5, &[(gap_end + 2 * b.len() as u32, 0, b)]);
        let b_out = |f: u64| (B.to_string(), f, f, f as i64);
        assert_eq!(got, [b_out(2), b_out(3), b_out(5)]);
        assert_eq!(r.stats().gaps_skipped, 1);
    }

    #[test]
    fn fin_ends_the_direction_and_drops_a_partial_message() {
        let a = A.as_bytes();
        let mut r = TcpReassembler::new(TcpLimits::default());
        let got = run(&mut r, key(1), 1, &[(0, SYN, b""), (1, 0, &a[..10]), (11, FIN, b"")]);
        assert_eq!(got, []);
        // A retransmission after the FIN does not start a new stream.
        assert_eq!(run(&mut r, key(1), 4, &[(1, 0, a)]), []);
        // A new connection (SYN far from the old sequence) does.
        let got = run(&mut r, key(1), 5, &[(900_000_000, SYN, b""), (900_000_001, 0, a)]);
        assert_eq!(got, [(A.to_string(), 6, 6, 6)]);
    }

    #[test]
    fn fin_with_data_delivers_complete_messages_first() {
        let ab = cat(&[A, &B[..5]]);
        check(&[(0, SYN, b""), (1, FIN, &ab)], &[(A, 2, 2)]);
        // A FIN ahead of a gap closes once the gap is filled.
        let a = A.as_bytes();
        check(&[(0, SYN, b""), (11, FIN, &a[10..]), (1, 0, &a[..10])], &[(A, 2, 3)]);
    }

    #[test]
    fn rst_ends_the_direction() {
        let a = A.as_bytes();
        let mut r = TcpReassembler::new(TcpLimits::default());
        assert_eq!(run(&mut r, key(1), 1, &[(0, SYN, b""), (1, 0, &a[..10]), (11, RST, b""), (11, 0, &a[10..])]), []);
        // A RST for an unknown stream creates nothing.
        run(&mut r, key(2), 5, &[(5, RST, b"x")]);
        assert_eq!(r.streams(), 1);
    }

    #[test]
    fn far_away_sequence_starts_over() {
        let a = A.as_bytes();
        // Data of a new connection whose SYN was not captured.
        check(&[(1, 0, &a[..10]), (3_000_000_000, 0, a)], &[(A, 2, 2)]);
    }

    #[test]
    fn a_framer_that_never_completes_has_its_buffer_dropped() {
        let limits = TcpLimits { max_buffered_bytes: 100, ..TcpLimits::default() };
        let mut r = TcpReassembler::new(limits);
        let mut seq = 1;
        let mut segs = Vec::new();
        let head = b"INVITE sip:a SIP/2.0\r\nl: 1000\r\n\r\n";
        segs.push((seq, 0, head.as_slice()));
        seq += head.len() as u32;
        let filler = [b'x'; 60];
        for _ in 0..2 {
            segs.push((seq, 0, filler.as_slice()));
            seq += 60;
        }
        segs.push((seq, 0, B.as_bytes()));
        let got = run(&mut r, key(1), 1, &segs);
        assert_eq!(got, [(B.to_string(), 4, 4, 4)]);
        assert_eq!(r.stats().buffers_dropped, 1);
    }

    #[test]
    fn oldest_stream_is_evicted_and_idle_ones_expire() {
        let limits = TcpLimits { max_streams: 2, idle_timeout: Duration::from_secs(5), ..TcpLimits::default() };
        let mut r = TcpReassembler::new(limits);
        let a = A.as_bytes();
        run(&mut r, key(1), 1, &[(1, 0, &a[..10])]);
        run(&mut r, key(2), 2, &[(1, 0, &a[..10])]);
        run(&mut r, key(1), 3, &[(11, 0, &a[10..20])]);
        // Key 2 is now the least recently active: a third stream evicts it.
        run(&mut r, key(3), 4, &[(1, 0, b"\r\n")]);
        assert_eq!((r.streams(), r.stats().streams_evicted), (2, 1));
        // Key 1 keeps its bytes.
        let got = run(&mut r, key(1), 5, &[(21, 0, &a[20..])]);
        assert_eq!(got, [(A.to_string(), 1, 5, 5)]);
        // Key 2 starts over mid-message: its tail is skipped, not emitted.
        assert_eq!(run(&mut r, key(2), 6, &[(11, 0, &a[10..])]), []);
        r.expire(Timestamp::from_parts(10, 0));
        assert_eq!(r.streams(), 2);
        r.expire(Timestamp::from_parts(10, 1));
        assert_eq!((r.streams(), r.stats().streams_expired), (1, 1));
        r.expire(Timestamp::from_parts(100, 0));
        assert_eq!(r.streams(), 0);
    }

    #[test]
    fn bare_acks_create_no_stream() {
        let mut r = TcpReassembler::new(TcpLimits::default());
        run(&mut r, key(1), 1, &[(1, 0x10, b""), (1, FIN, b"")]);
        assert_eq!(r.streams(), 0);
    }

    #[test]
    fn push_takes_a_tcp_segment() {
        let mut r = TcpReassembler::new(TcpLimits::default());
        let seg = TcpSegment {
            src_port: 1000,
            dst_port: 5060,
            seq: 42,
            ack: 0,
            flags: PSH | 0x10,
            window: 100,
            payload: B.as_bytes(),
        };
        let mut got = Vec::new();
        r.push(key(1000), &seg, 9, Timestamp::from_nanos(5), &mut frame_message, &mut |p| {
            got.push((p.data.to_vec(), p.first_frame, p.last_frame, p.ts))
        });
        assert_eq!(got, [(B.as_bytes().to_vec(), 9, 9, Timestamp::from_nanos(5))]);
    }

    #[test]
    fn a_framer_that_makes_no_progress_does_not_loop() {
        let mut r = TcpReassembler::new(TcpLimits::default());
        let seg = |seq, payload, frame| Segment { seq, flags: 0, payload, frame, ts: Timestamp::from_nanos(0) };
        let mut calls = 0;
        let mut zero = |_: &[u8]| {
            calls += 1;
            Framing::Message(0)
        };
        r.push_segment(key(1), seg(1, b"abc", 1), &mut zero, &mut |_: Pdu<'_>| panic!("nothing to emit"));
        assert_eq!(calls, 1);
        r.push_segment(key(1), seg(4, b"def", 2), &mut |_: &[u8]| Framing::Skip(0), &mut |_: Pdu<'_>| {
            panic!("nothing")
        });
        let mut seen = Vec::new();
        let mut seven = |b: &[u8]| if b.len() >= 7 { Framing::Message(7) } else { Framing::Message(b.len() + 1) };
        r.push_segment(key(1), seg(7, b"g", 3), &mut seven, &mut |p: Pdu<'_>| {
            seen.push((p.data.to_vec(), p.first_frame))
        });
        assert_eq!(seen, [(b"abcdefg".to_vec(), 1)]);
    }
}
