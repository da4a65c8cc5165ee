//! IP fragment reassembly: puts IPv4 and IPv6 fragments back into whole datagrams.
//!
//! [`FragmentReassembler::push`] takes the [`Fragment`]s that [`crate::packet`] finds
//! and returns the [`Datagram`] once all its bytes are there; feed its payload to
//! [`crate::packet::decode_transport`]. Fragments are keyed by source, destination,
//! identification and protocol (RFC 791, RFC 8200), may arrive in any order, and may
//! overlap: the bytes that arrived first win (as in Wireshark).
//!
//! A capture made at several points holds each datagram two or three times. Each copy
//! must be put together from its own fragments, and every copy completed, not only the
//! first: [`FragmentReassembler::push_in`] takes a context (what the caller knows of the
//! layers around the fragment: VLAN tags, the tunnel it came through) that is part of the
//! key, and within one context a fragment whose bytes a pending copy already holds starts
//! or joins another copy (at most [`MAX_COPIES`]) instead of being dropped as a repeat
//! (fragments that overlap only in part are one copy, cut differently, as above).
//! Memory is bounded by
//! [`FragmentLimits`]: when a new datagram or more bytes would go over a limit, the
//! oldest incomplete datagrams are dropped to make room, and [`FragmentReassembler::expire`]
//! drops those that waited longer than the timeout.

use crate::packet::Fragment;
use crate::{DecodeError, Layer, Timestamp};
use std::collections::HashMap;
use std::net::IpAddr;
use std::time::Duration;

/// The largest reassembled payload accepted: an IP length field cannot describe more.
pub const MAX_DATAGRAM: usize = 65_535;

/// Most copies of one datagram (same addresses, identification, protocol and context)
/// reassembled side by side; a fragment all of them already hold is a repeat, ignored.
pub const MAX_COPIES: u8 = 4;

/// Bounds on what a [`FragmentReassembler`] keeps.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FragmentLimits {
    /// Most incomplete datagrams held at once.
    pub max_datagrams: usize,
    /// Most payload bytes buffered over all incomplete datagrams.
    pub max_bytes: usize,
    /// How long (in capture time) an incomplete datagram waits for its other fragments.
    pub timeout: Duration,
}

impl Default for FragmentLimits {
    /// 4096 datagrams, 64 MiB, 30 seconds.
    fn default() -> Self {
        FragmentLimits { max_datagrams: 4096, max_bytes: 64 << 20, timeout: Duration::from_secs(30) }
    }
}

/// A reassembled datagram: the IP payload of all its fragments, in order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Datagram {
    /// IP protocol of the payload (for IPv6: the fragment header's next header).
    pub protocol: u8,
    /// Source address.
    pub src: IpAddr,
    /// Destination address.
    pub dst: IpAddr,
    /// The reassembled payload (without the IP header).
    pub payload: Vec<u8>,
}

/// Which datagram a fragment belongs to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
struct Key {
    src: IpAddr,
    dst: IpAddr,
    id: u32,
    protocol: u8,
    /// The caller's context: the layers around the fragment.
    context: u64,
    /// Which copy of the datagram (seen at several capture points).
    copy: u8,
}

/// An incomplete datagram.
#[derive(Debug)]
struct Pending {
    /// Capture time of its first fragment, for the timeout.
    first_seen: Timestamp,
    /// Order of arrival, to drop the oldest first when a limit is reached.
    serial: u64,
    /// The payload bytes received so far at their offsets; holes are zero.
    data: Vec<u8>,
    /// The byte ranges received, sorted, merged (no two touch).
    ranges: Vec<(usize, usize)>,
    /// The payload length, once the last fragment (more = false) has arrived.
    total: Option<usize>,
}

impl Pending {
    /// Copies the bytes of `payload` at `offset` that no earlier fragment supplied.
    fn insert(&mut self, offset: usize, payload: &[u8]) {
        let end = offset + payload.len();
        if self.data.len() < end {
            self.data.resize(end, 0);
        }
        let mut at = offset;
        for &(start, stop) in &self.ranges {
            if stop <= at {
                continue;
            }
            if start >= end {
                break;
            }
            if start > at {
                copy(&mut self.data, offset, payload, at, start);
            }
            at = at.max(stop);
            if at >= end {
                break;
            }
        }
        if at < end {
            copy(&mut self.data, offset, payload, at, end);
        }
        let index = self.ranges.partition_point(|&(start, _)| start < offset);
        self.ranges.insert(index, (offset, end));
        let mut merged: Vec<(usize, usize)> = Vec::with_capacity(self.ranges.len());
        for &(start, stop) in &self.ranges {
            match merged.last_mut() {
                Some(last) if start <= last.1 => last.1 = last.1.max(stop),
                _ => merged.push((start, stop)),
            }
        }
        self.ranges = merged;
    }

    /// Whether every byte of `offset..end` was received already (ranges are merged, so one
    /// range holds them all).
    fn holds(&self, offset: usize, end: usize) -> bool {
        self.ranges.iter().any(|&(start, stop)| start <= offset && end <= stop)
    }

    fn is_complete(&self) -> bool {
        self.total.is_some_and(|total| self.ranges.as_slice() == [(0, total)] || total == 0)
    }
}

/// Copies `payload`'s bytes for the datagram range `from..to` (`payload` starts at `offset`).
fn copy(data: &mut [u8], offset: usize, payload: &[u8], from: usize, to: usize) {
    if let (Some(dst), Some(src)) = (data.get_mut(from..to), payload.get(from - offset..to - offset)) {
        dst.copy_from_slice(src);
    }
}

/// Reassembles IPv4 and IPv6 fragments within [`FragmentLimits`].
#[derive(Debug)]
pub struct FragmentReassembler {
    limits: FragmentLimits,
    pending: HashMap<Key, Pending>,
    /// Bytes buffered over all pending datagrams (the sum of their `data` lengths).
    bytes: usize,
    next_serial: u64,
}

impl FragmentReassembler {
    /// A reassembler holding nothing yet.
    pub fn new(limits: FragmentLimits) -> Self {
        FragmentReassembler { limits, pending: HashMap::new(), bytes: 0, next_serial: 0 }
    }

    /// Adds one fragment captured at `ts`; returns the datagram when this fragment
    /// completes it.
    ///
    /// Errors (with layer IPv4 or IPv6, offset 0: the fragment itself is at fault) reject
    /// only this fragment: one that would make the datagram longer than
    /// [`MAX_DATAGRAM`], one that runs past the end set by the last fragment, a second
    /// last fragment with another end, or one that does not fit in `max_bytes` at all.
    pub fn push(&mut self, ts: Timestamp, frag: &Fragment<'_>) -> Result<Option<Datagram>, DecodeError> {
        self.push_in(ts, frag, 0)
    }

    /// [`FragmentReassembler::push`] for a fragment seen in `context`: fragments of
    /// different contexts never meet (give the same value when the caller knows nothing).
    pub fn push_in(
        &mut self,
        ts: Timestamp,
        frag: &Fragment<'_>,
        context: u64,
    ) -> Result<Option<Datagram>, DecodeError> {
        let layer = if frag.src.is_ipv4() { Layer::Ipv4 } else { Layer::Ipv6 };
        let end = frag.offset.saturating_add(frag.payload.len());
        if end > MAX_DATAGRAM {
            return Err(DecodeError::invalid(layer, 0, "fragment offset", "reassembled datagram over 65535 bytes"));
        }
        let key = self.copy_for(ts, frag, context, end);
        if let Some(pending) = self.pending.get(&key) {
            if let Some(total) = pending.total {
                if end > total {
                    return Err(DecodeError::invalid(layer, 0, "fragment offset", "past the end of the datagram"));
                }
                if !frag.more && end != total {
                    return Err(DecodeError::invalid(layer, 0, "fragment flags", "a second last fragment"));
                }
            } else if !frag.more && pending.data.len() > end {
                return Err(DecodeError::invalid(layer, 0, "fragment flags", "last fragment before received data"));
            }
        } else {
            while self.pending.len() >= self.limits.max_datagrams.max(1) {
                if !self.drop_oldest(None) {
                    break;
                }
            }
        }
        // Make room for the bytes this fragment adds to the buffer.
        let buffered = self.pending.get(&key).map_or(0, |p| p.data.len());
        let growth = end.saturating_sub(buffered);
        while self.bytes + growth > self.limits.max_bytes {
            if !self.drop_oldest(Some(&key)) {
                self.remove(&key);
                return Err(DecodeError::invalid(layer, 0, "fragment", "over the reassembly memory limit"));
            }
        }
        let serial = self.next_serial;
        let pending = self.pending.entry(key).or_insert_with(|| Pending {
            first_seen: ts,
            serial,
            data: Vec::new(),
            ranges: Vec::new(),
            total: None,
        });
        if pending.serial == serial {
            self.next_serial += 1;
        }
        pending.insert(frag.offset, frag.payload);
        if !frag.more {
            pending.total = Some(end);
        }
        self.bytes += growth;
        if !pending.is_complete() {
            return Ok(None);
        }
        let payload = self.remove(&key).map(|p| p.data).unwrap_or_default();
        Ok(Some(Datagram { protocol: frag.protocol, src: frag.src, dst: frag.dst, payload }))
    }

    /// The key of the copy `frag` belongs to: the first pending copy that lacks some of its
    /// bytes, else the first copy not pending (a new one), else (every copy has some of its
    /// bytes: a repeat) the first. Copies that waited past the timeout are dropped on the
    /// way: an identification reused after the timeout starts a new datagram.
    fn copy_for(&mut self, ts: Timestamp, frag: &Fragment<'_>, context: u64, end: usize) -> Key {
        let key = |copy| Key { src: frag.src, dst: frag.dst, id: frag.id, protocol: frag.protocol, context, copy };
        let mut free = None;
        for copy in 0..MAX_COPIES {
            let k = key(copy);
            if self.pending.get(&k).is_some_and(|p| self.timed_out(p, ts)) {
                self.remove(&k);
            }
            match self.pending.get(&k) {
                Some(p) if !p.holds(frag.offset, end) => return k,
                Some(_) => {}
                None => {
                    free.get_or_insert(k);
                }
            }
        }
        free.unwrap_or_else(|| key(0))
    }

    /// Drops the incomplete datagrams whose first fragment is older than the timeout at `now`.
    pub fn expire(&mut self, now: Timestamp) {
        let timeout = self.timeout_nanos();
        let before = self.pending.len();
        self.pending.retain(|_, p| now.as_nanos().saturating_sub(p.first_seen.as_nanos()) <= timeout);
        if self.pending.len() != before {
            self.bytes = self.pending.values().map(|p| p.data.len()).sum();
        }
    }

    /// How many incomplete datagrams are held.
    pub fn pending(&self) -> usize {
        self.pending.len()
    }

    /// How many payload bytes are buffered.
    pub fn buffered_bytes(&self) -> usize {
        self.bytes
    }

    fn timeout_nanos(&self) -> i64 {
        i64::try_from(self.limits.timeout.as_nanos()).unwrap_or(i64::MAX)
    }

    fn timed_out(&self, pending: &Pending, now: Timestamp) -> bool {
        now.as_nanos().saturating_sub(pending.first_seen.as_nanos()) > self.timeout_nanos()
    }

    fn remove(&mut self, key: &Key) -> Option<Pending> {
        let pending = self.pending.remove(key)?;
        self.bytes -= pending.data.len();
        Some(pending)
    }

    /// Drops the datagram that arrived first, other than `keep`; false when there is none.
    fn drop_oldest(&mut self, keep: Option<&Key>) -> bool {
        let oldest =
            self.pending.iter().filter(|(k, _)| Some(*k) != keep).min_by_key(|(_, p)| p.serial).map(|(k, _)| *k);
        match oldest {
            Some(key) => self.remove(&key).is_some(),
            None => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SRC: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(10, 0, 0, 1));
    const DST: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(10, 0, 0, 2));
    const SRC6: IpAddr = IpAddr::V6(std::net::Ipv6Addr::LOCALHOST);

    /// The datagram cut into fragments: (offset, more, bytes).
    type Pieces<'a> = &'a [(usize, bool, &'a [u8])];

    fn frag<'a>(id: u32, offset: usize, more: bool, payload: &'a [u8]) -> Fragment<'a> {
        Fragment { src: SRC, dst: DST, id, protocol: 17, offset, more, payload }
    }

    fn at(secs: i64) -> Timestamp {
        Timestamp::from_parts(secs, 0)
    }

    /// Pushes `pieces` of datagram 1 in order; returns what each push gave, as the
    /// payload of a completed datagram, `None`, or the error.
    fn check(pieces: Pieces<'_>, expected: &[Result<Option<&[u8]>, DecodeError>]) {
        let mut r = FragmentReassembler::new(FragmentLimits::default());
        let got: Vec<_> = pieces
            .iter()
            .map(|&(offset, more, payload)| {
                r.push(at(0), &frag(1, offset, more, payload)).map(|d| d.map(|d| d.payload))
            })
            .collect();
        let expected: Vec<_> = expected.iter().map(|e| e.clone().map(|d| d.map(<[u8]>::to_vec))).collect();
        assert_eq!(got, expected);
        if matches!(got.last(), Some(Ok(Some(_)))) {
            assert_eq!((r.pending(), r.buffered_bytes()), (0, 0));
        }
    }

    const A: &[u8] = b"AAAAAAAA";
    const B: &[u8] = b"BBBBBBBB";
    const C: &[u8] = b"CCC";

    #[test]
    fn in_order() {
        check(&[(0, true, A), (8, true, B), (16, false, C)], &[Ok(None), Ok(None), Ok(Some(b"AAAAAAAABBBBBBBBCCC"))]);
    }

    #[test]
    fn reversed() {
        check(&[(16, false, C), (8, true, B), (0, true, A)], &[Ok(None), Ok(None), Ok(Some(b"AAAAAAAABBBBBBBBCCC"))]);
    }

    #[test]
    fn shuffled() {
        check(&[(8, true, B), (16, false, C), (0, true, A)], &[Ok(None), Ok(None), Ok(Some(b"AAAAAAAABBBBBBBBCCC"))]);
    }

    #[test]
    fn duplicate_fragment_changes_nothing() {
        // The repeat waits as the start of a second copy (another capture point's); the
        // datagram is made of the first copy's bytes.
        let mut r = FragmentReassembler::new(FragmentLimits::default());
        assert_eq!(r.push(at(0), &frag(1, 0, true, A)), Ok(None));
        assert_eq!(r.push(at(0), &frag(1, 0, true, b"XXXXXXXX")), Ok(None));
        assert_eq!(r.push(at(0), &frag(1, 8, false, B)).unwrap().unwrap().payload, b"AAAAAAAABBBBBBBB");
        assert_eq!((r.pending(), r.buffered_bytes()), (1, 8));
    }

    #[test]
    fn overlaps_keep_the_first_bytes() {
        // The middle fragment overlaps both neighbours; only its uncovered bytes count.
        check(
            &[(0, true, b"AAAAAA"), (10, false, b"CCCCCC"), (4, true, b"xxxxxxxxxx")],
            &[Ok(None), Ok(None), Ok(Some(b"AAAAAAxxxxCCCCCC"))],
        );
        check(&[(4, false, b"BBBB"), (0, true, b"xxxxxxxx")], &[Ok(None), Ok(Some(b"xxxxBBBB"))]);
    }

    #[test]
    fn hole_keeps_it_pending() {
        check(&[(0, true, A), (16, false, C)], &[Ok(None), Ok(None)]);
    }

    #[test]
    fn single_last_fragment_at_zero_is_complete() {
        check(&[(0, false, C)], &[Ok(Some(C))]);
    }

    #[test]
    fn too_large() {
        let big = [0u8; 16];
        check(
            &[(65_528, false, &big)],
            &[Err(DecodeError::invalid(Layer::Ipv4, 0, "fragment offset", "reassembled datagram over 65535 bytes"))],
        );
        // The largest offset with a payload that just fits is fine.
        check(&[(65_528, false, &big[..7])], &[Ok(None)]);
    }

    #[test]
    fn fragments_past_the_end_are_rejected() {
        check(
            &[(8, false, B), (16, true, A), (0, false, A)],
            &[
                Ok(None),
                Err(DecodeError::invalid(Layer::Ipv4, 0, "fragment offset", "past the end of the datagram")),
                Err(DecodeError::invalid(Layer::Ipv4, 0, "fragment flags", "a second last fragment")),
            ],
        );
        check(
            &[(16, true, A), (0, false, A)],
            &[
                Ok(None),
                Err(DecodeError::invalid(Layer::Ipv4, 0, "fragment flags", "last fragment before received data")),
            ],
        );
    }

    #[test]
    fn ipv6_errors_name_ipv6() {
        let mut r = FragmentReassembler::new(FragmentLimits::default());
        let f = Fragment { src: SRC6, dst: SRC6, id: 7, protocol: 17, offset: 65_535, more: false, payload: b"x" };
        assert_eq!(
            r.push(at(0), &f),
            Err(DecodeError::invalid(Layer::Ipv6, 0, "fragment offset", "reassembled datagram over 65535 bytes"))
        );
        let first = Fragment { offset: 0, more: true, payload: A, ..f };
        let last = Fragment { offset: 8, more: false, payload: B, ..f };
        assert_eq!(r.push(at(0), &first), Ok(None));
        let d = r.push(at(0), &last).unwrap().unwrap();
        assert_eq!((d.src, d.protocol, d.payload.as_slice()), (SRC6, 17, &b"AAAAAAAABBBBBBBB"[..]));
    }

    #[test]
    fn datagrams_are_kept_apart() {
        let mut r = FragmentReassembler::new(FragmentLimits::default());
        assert_eq!(r.push(at(0), &frag(1, 0, true, A)), Ok(None));
        assert_eq!(r.push(at(0), &frag(2, 0, true, B)), Ok(None));
        let other_protocol = Fragment { protocol: 6, ..frag(1, 8, false, C) };
        assert_eq!(r.push(at(0), &other_protocol), Ok(None));
        assert_eq!(r.pending(), 3);
        let d = r.push(at(0), &frag(2, 8, false, C)).unwrap().unwrap();
        assert_eq!(d.payload, b"BBBBBBBBCCC");
        assert_eq!((r.pending(), r.buffered_bytes()), (2, 8 + 11));
    }

    #[test]
    fn copies_from_several_capture_points_each_complete() {
        // The same datagram seen at two capture points, its fragments interleaved: each copy
        // completes (the second was left waiting, its first half taken for a repeat).
        for order in [[0, 1, 2, 3], [0, 1, 3, 2], [1, 0, 2, 3]] {
            let mut r = FragmentReassembler::new(FragmentLimits::default());
            let pieces = [frag(1, 0, true, A), frag(1, 0, true, A), frag(1, 8, false, B), frag(1, 8, false, B)];
            let done: Vec<Vec<u8>> =
                order.iter().filter_map(|&i| r.push(at(0), &pieces[i]).unwrap()).map(|d| d.payload).collect();
            assert_eq!(done, [b"AAAAAAAABBBBBBBB", b"AAAAAAAABBBBBBBB"], "order {order:?}");
            assert_eq!(r.pending(), 0);
        }
    }

    #[test]
    fn contexts_keep_copies_apart() {
        // Copies that differ (here in content) reassemble with their own fragments when the
        // caller tells their contexts apart (the VLAN or tunnel each was seen in).
        let mut r = FragmentReassembler::new(FragmentLimits::default());
        assert_eq!(r.push_in(at(0), &frag(1, 0, true, A), 1), Ok(None));
        assert_eq!(r.push_in(at(0), &frag(1, 8, true, C), 2), Ok(None));
        assert_eq!(r.push_in(at(0), &frag(1, 0, true, b"aaaaaaaa"), 2), Ok(None));
        assert_eq!(r.push_in(at(0), &frag(1, 8, false, B), 1).unwrap().unwrap().payload, b"AAAAAAAABBBBBBBB");
        assert_eq!(r.push_in(at(0), &frag(1, 11, false, b"ccccc"), 2).unwrap().unwrap().payload, b"aaaaaaaaCCCccccc");
        assert_eq!(r.pending(), 0);
    }

    #[test]
    fn a_repeat_of_every_copy_is_ignored() {
        let mut r = FragmentReassembler::new(FragmentLimits::default());
        for _ in 0..=MAX_COPIES {
            assert_eq!(r.push(at(0), &frag(1, 0, true, A)), Ok(None));
        }
        assert_eq!((r.pending(), r.buffered_bytes()), (usize::from(MAX_COPIES), 8 * usize::from(MAX_COPIES)));
    }

    #[test]
    fn max_datagrams_drops_the_oldest() {
        let limits = FragmentLimits { max_datagrams: 2, ..FragmentLimits::default() };
        let mut r = FragmentReassembler::new(limits);
        for id in 1..=3 {
            assert_eq!(r.push(at(0), &frag(id, 0, true, A)), Ok(None));
        }
        assert_eq!(r.pending(), 2);
        // Datagram 1 was dropped: its last fragment starts it again, with a hole.
        assert_eq!(r.push(at(0), &frag(1, 8, false, B)), Ok(None));
        assert_eq!(r.pending(), 2);
        assert_eq!(r.push(at(0), &frag(3, 8, false, B)).unwrap().unwrap().payload, b"AAAAAAAABBBBBBBB");
    }

    #[test]
    fn max_bytes_drops_the_oldest_then_refuses() {
        let limits = FragmentLimits { max_bytes: 20, ..FragmentLimits::default() };
        let mut r = FragmentReassembler::new(limits);
        assert_eq!(r.push(at(0), &frag(1, 0, true, A)), Ok(None));
        assert_eq!(r.push(at(0), &frag(2, 0, true, A)), Ok(None));
        assert_eq!(r.buffered_bytes(), 16);
        // Eight more bytes for datagram 2 do not fit next to datagram 1, which goes.
        assert_eq!(r.push(at(0), &frag(2, 8, true, B)), Ok(None));
        assert_eq!((r.pending(), r.buffered_bytes()), (1, 16));
        // A datagram that alone needs more than the limit is refused and dropped.
        assert_eq!(
            r.push(at(0), &frag(2, 24, true, A)),
            Err(DecodeError::invalid(Layer::Ipv4, 0, "fragment", "over the reassembly memory limit"))
        );
        assert_eq!((r.pending(), r.buffered_bytes()), (0, 0));
    }

    #[test]
    fn expiry() {
        let limits = FragmentLimits { timeout: Duration::from_secs(30), ..FragmentLimits::default() };
        let mut r = FragmentReassembler::new(limits);
        assert_eq!(r.push(at(0), &frag(1, 0, true, A)), Ok(None));
        assert_eq!(r.push(at(20), &frag(2, 0, true, A)), Ok(None));
        r.expire(at(30));
        assert_eq!(r.pending(), 2);
        r.expire(at(31));
        assert_eq!((r.pending(), r.buffered_bytes()), (1, 8));
        assert_eq!(r.push(at(31), &frag(1, 8, false, B)), Ok(None));
        assert_eq!(r.push(at(31), &frag(2, 8, false, B)).unwrap().unwrap().payload, b"AAAAAAAABBBBBBBB");
    }

    #[test]
    fn reused_id_after_the_timeout_starts_over() {
        let mut r = FragmentReassembler::new(FragmentLimits::default());
        assert_eq!(r.push(at(0), &frag(1, 0, true, b"OLDOLDOL")), Ok(None));
        assert_eq!(r.push(at(100), &frag(1, 8, false, B)), Ok(None));
        assert_eq!(r.push(at(100), &frag(1, 0, true, A)).unwrap().unwrap().payload, b"AAAAAAAABBBBBBBB");
    }
}
