//! Capture loss versus network loss: sequence gaps that hit several unrelated RTP streams at the same instant, far more often than independent losses would, are blamed on the capture (a lossy mirror port), not on the network.
//!
//! The test, as docs/quality.md states it:
//!
//! - A **gap** is a run of missing sequence numbers in one stream. Its missing packets are
//!   spread evenly between the packets around the gap, so the gap's *drop span* runs from
//!   the first missing packet's expected arrival to the last one's (a single instant for
//!   one lost packet). Gaps around more than a second of silence say nothing and are left out.
//! - Two gaps **coincide** when their drop spans come within `window` of each other.
//! - A new gap is **capture loss** when the gaps coinciding with it come from at least
//!   `min_streams` different owners (calls or orphan address pairs: unrelated streams), and
//!   independent losses would rarely line up like that: with `λ` the number of the other
//!   gaps of the past second (those not coinciding with it), times `2 window / 1 s` (how
//!   many of them would fall in the window by chance), the Poisson chance of at least as
//!   many coinciding gaps is below 1e-4. A gap is judged only when its stream has run for
//!   a second, so that the past second is there to compare with.
//! - Every stream with a gap in such a cluster is flagged, the cluster's missing packets are
//!   added to the document's `capture_loss_packets`, and each cluster that does not overlap
//!   the previous one counts one `capture_loss_events`.

use crate::media::Owner;
use crate::slots::SlotRef;
use std::collections::VecDeque;

/// Gaps remembered: those of the last second, at most this many.
const MAX_RECENT: usize = 512;

/// The chance under independence below which a coincidence is blamed on the capture.
const SIGNIFICANCE: f64 = 1e-4;

/// Gaps around more than this (ns) of silence are not considered.
const MAX_SPAN_NS: i64 = 1_000_000_000;

/// One gap of one stream.
#[derive(Clone, Copy, Debug)]
struct Gap {
    from: i64,
    to: i64,
    owner: Owner,
    stream: SlotRef,
    packets: u64,
    blamed: bool,
}

/// The streaming detector (one per media table).
#[derive(Debug)]
pub(crate) struct CaptureLossDetector {
    min_streams: usize,
    window_ns: i64,
    recent: VecDeque<Gap>,
    /// End of the latest cluster blamed on the capture.
    last_cluster_end: i64,
    /// Clusters blamed on the capture.
    pub events: u64,
    /// Missing packets in those clusters.
    pub packets: u64,
}

impl CaptureLossDetector {
    /// A detector needing `min_streams` unrelated owners within `window_ns` of each other.
    pub fn new(min_streams: usize, window_ns: i64) -> Self {
        CaptureLossDetector {
            min_streams: min_streams.max(2),
            window_ns: window_ns.max(0),
            recent: VecDeque::new(),
            last_cluster_end: i64::MIN,
            events: 0,
            packets: 0,
        }
    }

    /// A gap of `missing` packets in `stream` (of `owner`), between packets captured at
    /// `prev_ns` and `now_ns`. Returns the streams to flag when it completes a cluster of
    /// capture loss (empty otherwise).
    /// `since_ns` is the stream's first packet.
    pub fn on_gap(
        &mut self,
        owner: Owner,
        stream: SlotRef,
        since_ns: i64,
        (prev_ns, now_ns): (i64, i64),
        missing: u64,
    ) -> Vec<SlotRef> {
        let span = now_ns.saturating_sub(prev_ns);
        if missing == 0 || !(0..=MAX_SPAN_NS).contains(&span) {
            return Vec::new();
        }
        let step = span / (missing as i64 + 1);
        let gap = Gap {
            from: prev_ns.saturating_add(step),
            to: now_ns.saturating_sub(step),
            owner,
            stream,
            packets: missing,
            blamed: false,
        };
        // Forget what ended more than a second before this gap could have begun.
        while self.recent.front().is_some_and(|g| g.to < gap.from.saturating_sub(MAX_SPAN_NS)) {
            self.recent.pop_front();
        }
        if self.recent.len() >= MAX_RECENT {
            self.recent.pop_front();
        }
        let w = self.window_ns;
        let coincide = |g: &Gap| g.from.saturating_sub(w) <= gap.to && gap.from.saturating_sub(w) <= g.to;
        let mut owners: Vec<Owner> = vec![owner];
        let mut coinciding = 0usize;
        let mut background = 0usize;
        for g in &self.recent {
            if coincide(g) {
                coinciding += 1;
                if !owners.contains(&g.owner) {
                    owners.push(g.owner);
                }
            } else {
                background += 1;
            }
        }
        self.recent.push_back(gap);
        if owners.len() < self.min_streams || now_ns.saturating_sub(since_ns) < MAX_SPAN_NS {
            return Vec::new();
        }
        // How many of the background gaps would fall in a window of 2w by chance.
        let lambda = background as f64 * (2 * w).max(1) as f64 / MAX_SPAN_NS as f64;
        if poisson_tail(lambda, coinciding) >= SIGNIFICANCE {
            return Vec::new();
        }
        let (mut flagged, mut start, mut end) = (Vec::new(), gap.from, gap.to);
        for g in
            self.recent.iter_mut().filter(|g| g.from.saturating_sub(w) <= gap.to && gap.from.saturating_sub(w) <= g.to)
        {
            if !g.blamed {
                g.blamed = true;
                self.packets += g.packets;
            }
            start = start.min(g.from);
            end = end.max(g.to);
            flagged.push(g.stream);
        }
        if start > self.last_cluster_end.saturating_add(w) {
            self.events += 1;
        }
        self.last_cluster_end = self.last_cluster_end.max(end);
        flagged
    }
}

/// P(K >= k) for K Poisson with mean `lambda`.
fn poisson_tail(lambda: f64, k: usize) -> f64 {
    if k == 0 {
        return 1.0;
    }
    let (mut term, mut below) = ((-lambda).exp(), 0.0);
    for i in 0..k {
        below += term;
        term *= lambda / (i as f64 + 1.0);
    }
    (1.0 - below).max(0.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn slot(i: u32) -> SlotRef {
        SlotRef { index: i, version: 0 }
    }

    const MS: i64 = 1_000_000;

    #[test]
    fn poisson_tail_values() {
        assert!((poisson_tail(0.3, 1) - (1.0 - (-0.3f64).exp())).abs() < 1e-12);
        assert!(poisson_tail(0.0, 1) == 0.0 && poisson_tail(5.0, 0) == 1.0);
        assert!((poisson_tail(1.0, 2) - (1.0 - 2.0 * (-1.0f64).exp())).abs() < 1e-12);
    }

    #[test]
    fn simultaneous_gaps_in_unrelated_streams_are_capture_loss() {
        let mut d = CaptureLossDetector::new(3, 10 * MS);
        // Streams of owners 1, 2, 3 each lose the packet due at about 1000 ms (their
        // phases differ by a few ms); the third completes the cluster.
        assert!(d.on_gap(1, slot(1), 0, (980 * MS, 1020 * MS), 1).is_empty());
        assert!(d.on_gap(2, slot(2), 0, (985 * MS, 1025 * MS), 1).is_empty());
        assert_eq!(d.on_gap(3, slot(3), 0, (987 * MS, 1027 * MS), 1), vec![slot(1), slot(2), slot(3)]);
        assert_eq!((d.events, d.packets), (1, 3));
        // A fourth stream's gap in the same cluster is flagged too, with no new event.
        assert_eq!(d.on_gap(4, slot(4), 0, (990 * MS, 1030 * MS), 1).len(), 4);
        assert_eq!((d.events, d.packets), (1, 4));
    }

    #[test]
    fn two_streams_of_one_call_are_not_enough() {
        let mut d = CaptureLossDetector::new(3, 10 * MS);
        // (and streams younger than a second are not judged)
        assert!(d.on_gap(7, slot(7), 900 * MS, (480 * MS, 520 * MS), 1).is_empty());
        assert!(d.on_gap(1, slot(1), 0, (980 * MS, 1020 * MS), 1).is_empty());
        assert!(d.on_gap(1, slot(2), 0, (985 * MS, 1025 * MS), 1).is_empty());
        assert!(d.on_gap(2, slot(3), 0, (987 * MS, 1027 * MS), 1).is_empty());
        assert_eq!(d.events, 0);
    }

    #[test]
    fn coincidences_explained_by_heavy_independent_loss_are_not_blamed() {
        let mut d = CaptureLossDetector::new(3, 10 * MS);
        // From 1 s, when the streams began, a gap every 4 ms, each in another call. Judged
        // once the streams have run a second: λ = 248 * 20 ms / 1 s ≈ 5, and the 2 earlier
        // gaps within 10 ms of each are likely (P(K >= 2) ≈ 0.96).
        for i in 0..500 {
            let t = 1000 * MS + i * 4 * MS;
            assert!(d.on_gap(10 + i as u64, slot(100), 1000 * MS, (t - 20 * MS, t + 20 * MS), 1).is_empty(), "{i}");
        }
        assert_eq!(d.events, 0);
    }
}
