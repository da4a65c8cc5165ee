//! The bounded queue between a live source's receiving thread and the analysis.
//!
//! A receiving thread (a capture loop, a WebSocket reader, a HEP listener) owns a
//! [`FrameSender`] and offers each frame as it arrives; the analysis pulls from the
//! [`ChannelSource`], which implements [`FrameSource`]. Three rules make this safe on
//! hostile or fast input:
//!
//! - The queue holds at most `capacity` frames. [`FrameSender::offer`] never blocks: a
//!   frame that does not fit is dropped and counted in [`LiveCounters::dropped`], so a slow
//!   analysis costs packets (reported), never memory.
//! - While nothing arrives the source yields [`Pulled::Tick`] every `tick`, carrying the
//!   capture time the source believes it is now (the last frame's time plus the wall time
//!   since it arrived), so calls that ended are closed without waiting for another packet.
//! - The source ends when every sender is dropped, or on the first error a sender
//!   reports with [`FrameSender::fail`], which is then returned once.

use callflow_correlate::{FrameSource, Pulled};
use callflow_decode::capture::{CaptureError, Frame};
use callflow_decode::{LinkType, Timestamp};
use crossbeam_channel::{Receiver, RecvTimeoutError, Sender, TrySendError};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// A frame that owns its bytes, as it crosses from a receiving thread to the analysis.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OwnedFrame {
    /// When the packet was captured (or, for HEP, when the agent says it was).
    pub ts: Timestamp,
    /// The link-layer type of `data`.
    pub link_type: LinkType,
    /// The captured bytes.
    pub data: Vec<u8>,
    /// The packet's length on the wire (at least `data.len()` when the capture cut it).
    pub orig_len: u32,
    /// The interface it was captured on, numbered by the source (0 when there is one).
    pub interface: u32,
}

/// Counters a live source shares with whoever reports on it (the CLI's `stats` lines, a
/// live job's events). All are totals since the source started.
#[derive(Debug, Default)]
pub struct LiveCounters {
    /// Frames handed to the analysis.
    pub received: AtomicU64,
    /// Bytes of those frames.
    pub bytes: AtomicU64,
    /// Frames dropped because the analysis was behind (the queue was full).
    pub dropped: AtomicU64,
    /// Frames the source itself lost or refused before they reached the queue (kernel
    /// drops reported by the capture, malformed HEP packets, ...).
    pub source_dropped: AtomicU64,
}

impl LiveCounters {
    /// A consistent-enough copy of the counters for a report: (received, bytes, dropped, source_dropped).
    pub fn snapshot(&self) -> (u64, u64, u64, u64) {
        (
            self.received.load(Ordering::Relaxed),
            self.bytes.load(Ordering::Relaxed),
            self.dropped.load(Ordering::Relaxed),
            self.source_dropped.load(Ordering::Relaxed),
        )
    }
}

enum Item {
    Frame(OwnedFrame),
    Error(CaptureError),
}

/// The analysis is gone (the [`ChannelSource`] was dropped): the receiving thread should stop.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error("the analysis reading this live source has stopped")]
pub struct SourceClosed;

/// The receiving end's handle: offers frames to the analysis. Cloneable, so one source
/// may have several receiving threads (one per interface, UDP and TCP listeners).
#[derive(Clone)]
pub struct FrameSender {
    tx: Sender<Item>,
    counters: Arc<LiveCounters>,
}

impl FrameSender {
    /// Queues `frame` for the analysis. Returns `Ok(false)` when the queue was full and the
    /// frame was dropped (and counted), and `Err(SourceClosed)` once the analysis has stopped.
    pub fn offer(&self, frame: OwnedFrame) -> Result<bool, SourceClosed> {
        match self.tx.try_send(Item::Frame(frame)) {
            Ok(()) => Ok(true),
            Err(TrySendError::Full(_)) => {
                self.counters.dropped.fetch_add(1, Ordering::Relaxed);
                Ok(false)
            }
            Err(TrySendError::Disconnected(_)) => Err(SourceClosed),
        }
    }

    /// Queues `frame`, waiting for room: for sources that can be slowed down without losing
    /// anything (a remote stream over TCP pushes back on its sender instead).
    pub fn send(&self, frame: OwnedFrame) -> Result<(), SourceClosed> {
        self.tx.send(Item::Frame(frame)).map_err(|_| SourceClosed)
    }

    /// Ends the source with `error`: the analysis gets it after the frames already queued.
    /// Waits for room, since an error must not be dropped.
    pub fn fail(&self, error: CaptureError) {
        let _ = self.tx.send(Item::Error(error));
    }

    /// The counters shared with the [`ChannelSource`], for the sender to add its own drops.
    pub fn counters(&self) -> &Arc<LiveCounters> {
        &self.counters
    }
}

/// The analysis end: a [`FrameSource`] over the frames the senders offer.
pub struct ChannelSource {
    rx: Receiver<Item>,
    counters: Arc<LiveCounters>,
    tick: Duration,
    current: Option<OwnedFrame>,
    number: u64,
    link_types: Vec<LinkType>,
    /// The last frame's time and when (wall clock) it arrived, for ticks.
    last: Option<(Timestamp, Instant)>,
    done: bool,
}

/// A bounded queue of at most `capacity` frames (at least 1) whose source ticks every
/// `tick` while it is empty.
pub fn channel(capacity: usize, tick: Duration) -> (FrameSender, ChannelSource) {
    let (tx, rx) = crossbeam_channel::bounded(capacity.max(1));
    let counters = Arc::new(LiveCounters::default());
    let sender = FrameSender { tx, counters: counters.clone() };
    let source = ChannelSource {
        rx,
        counters,
        tick: tick.max(Duration::from_millis(1)),
        current: None,
        number: 0,
        link_types: Vec::new(),
        last: None,
        done: false,
    };
    (sender, source)
}

impl ChannelSource {
    /// The counters shared with the senders.
    pub fn counters(&self) -> &Arc<LiveCounters> {
        &self.counters
    }

    /// The capture time it is now, as far as this source can tell: the last frame's time
    /// advanced by the wall time since it arrived, or the wall clock before any frame.
    fn now(&self) -> Timestamp {
        match self.last {
            Some((ts, at)) => {
                let elapsed = i64::try_from(at.elapsed().as_nanos()).unwrap_or(i64::MAX);
                Timestamp::from_nanos(ts.as_nanos().saturating_add(elapsed))
            }
            None => {
                let since = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default();
                Timestamp::from_nanos(i64::try_from(since.as_nanos()).unwrap_or(i64::MAX))
            }
        }
    }
}

impl FrameSource for ChannelSource {
    fn next_frame(&mut self) -> Result<Option<Pulled<'_>>, CaptureError> {
        if self.done {
            return Ok(None);
        }
        match self.rx.recv_timeout(self.tick) {
            Ok(Item::Frame(frame)) => {
                self.number += 1;
                self.counters.received.fetch_add(1, Ordering::Relaxed);
                self.counters.bytes.fetch_add(frame.data.len() as u64, Ordering::Relaxed);
                if !self.link_types.contains(&frame.link_type) {
                    self.link_types.push(frame.link_type);
                }
                // Time only moves forward for the analysis, even if an agent's clock steps back.
                let ts = match self.last {
                    Some((last, _)) if frame.ts < last => last,
                    _ => frame.ts,
                };
                self.last = Some((ts, Instant::now()));
                let frame = self.current.insert(frame);
                Ok(Some(Pulled::Here(Frame {
                    number: self.number,
                    ts,
                    link_type: frame.link_type,
                    data: &frame.data,
                    orig_len: frame.orig_len.max(frame.data.len() as u32),
                    interface: frame.interface,
                })))
            }
            Ok(Item::Error(error)) => {
                self.done = true;
                Err(error)
            }
            Err(RecvTimeoutError::Timeout) => Ok(Some(Pulled::Tick(self.now()))),
            Err(RecvTimeoutError::Disconnected) => {
                self.done = true;
                Ok(None)
            }
        }
    }

    fn bytes_consumed(&self) -> u64 {
        self.counters.bytes.load(Ordering::Relaxed)
    }

    fn link_types(&self) -> &[LinkType] {
        &self.link_types
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(secs: i64, byte: u8) -> OwnedFrame {
        OwnedFrame {
            ts: Timestamp::from_parts(secs, 0),
            link_type: LinkType::ETHERNET,
            data: vec![byte; 60],
            orig_len: 60,
            interface: 0,
        }
    }

    #[test]
    fn frames_come_out_numbered_in_order_then_the_source_ends() {
        let (tx, mut rx) = channel(8, Duration::from_millis(10));
        tx.offer(frame(10, 1)).unwrap();
        tx.offer(frame(11, 2)).unwrap();
        drop(tx);
        let mut seen = Vec::new();
        while let Some(pulled) = rx.next_frame().unwrap() {
            match pulled {
                Pulled::Here(f) => seen.push((f.number, f.ts, f.data[0])),
                other => panic!("unexpected {other:?}"),
            }
        }
        assert_eq!(seen, vec![(1, Timestamp::from_parts(10, 0), 1), (2, Timestamp::from_parts(11, 0), 2)]);
        assert_eq!(rx.bytes_consumed(), 120);
        assert_eq!(rx.link_types(), &[LinkType::ETHERNET]);
    }

    #[test]
    fn a_full_queue_drops_and_counts_instead_of_growing() {
        let (tx, rx) = channel(2, Duration::from_millis(10));
        assert!(tx.offer(frame(1, 0)).unwrap());
        assert!(tx.offer(frame(1, 0)).unwrap());
        assert!(!tx.offer(frame(1, 0)).unwrap());
        assert_eq!(rx.counters().snapshot().2, 1);
        drop(rx);
        assert_eq!(tx.offer(frame(1, 0)), Err(SourceClosed));
    }

    #[test]
    fn a_quiet_source_ticks_from_the_last_frames_time() {
        let (tx, mut rx) = channel(2, Duration::from_millis(5));
        tx.offer(frame(1_000, 0)).unwrap();
        assert!(matches!(rx.next_frame().unwrap(), Some(Pulled::Here(_))));
        match rx.next_frame().unwrap() {
            Some(Pulled::Tick(ts)) => {
                assert!(ts >= Timestamp::from_parts(1_000, 0));
                assert!(ts < Timestamp::from_parts(1_060, 0), "tick far beyond the last frame: {ts:?}");
            }
            other => panic!("expected a tick, got {other:?}"),
        }
        drop(tx);
    }

    #[test]
    fn an_agent_clock_stepping_back_does_not_move_analysis_time_back() {
        let (tx, mut rx) = channel(4, Duration::from_millis(5));
        tx.offer(frame(100, 0)).unwrap();
        tx.offer(frame(90, 0)).unwrap();
        drop(tx);
        let mut times = Vec::new();
        while let Some(Pulled::Here(f)) = rx.next_frame().unwrap() {
            times.push(f.ts);
        }
        assert_eq!(times, vec![Timestamp::from_parts(100, 0); 2]);
    }

    #[test]
    fn a_reported_error_ends_the_source_after_the_queued_frames() {
        let (tx, mut rx) = channel(4, Duration::from_millis(5));
        tx.offer(frame(1, 0)).unwrap();
        tx.fail(CaptureError::Empty);
        assert!(matches!(rx.next_frame().unwrap(), Some(Pulled::Here(_))));
        assert!(matches!(rx.next_frame(), Err(CaptureError::Empty)));
        assert!(rx.next_frame().unwrap().is_none());
    }
}
