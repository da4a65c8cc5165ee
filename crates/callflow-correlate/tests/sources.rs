//! Inputs that are not files: a frame source that goes quiet still has its finished calls closed and handed out, statistics can be read while the analysis goes on, and an endless input's flow list is bounded.

use callflow_correlate::{analyze_with, Analyzer, AnalyzerOptions, FrameSource, Pulled};
use callflow_decode::capture::{CaptureError, CaptureReader};
use callflow_decode::{LinkType, Timestamp};
use std::cell::Cell;
use std::ops::ControlFlow;
use std::time::Duration;

fn example() -> CaptureReader {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../examples/captures/basic-call.pcap");
    CaptureReader::open(path).expect("example capture")
}

/// The example capture as a live link would give it: its frames, then silence, of which
/// the source says that ten minutes have gone by, then a failure (the link went down).
struct QuietLink {
    reader: CaptureReader,
    last: Timestamp,
    ticked: bool,
}

impl FrameSource for QuietLink {
    fn next_frame(&mut self) -> Result<Option<Pulled<'_>>, CaptureError> {
        if !self.ticked {
            if let Some(frame) = self.reader.next_frame()? {
                self.last = frame.ts;
                return Ok(Some(Pulled::Here(frame)));
            }
            self.ticked = true;
            return Ok(Some(Pulled::Tick(Timestamp::from_nanos(self.last.as_nanos() + 600_000_000_000))));
        }
        Err(CaptureError::Io(std::io::Error::other("link down")))
    }

    fn bytes_consumed(&self) -> u64 {
        self.reader.bytes_consumed()
    }

    fn link_types(&self) -> &[LinkType] {
        self.reader.link_types()
    }
}

#[test]
fn a_quiet_source_hands_out_its_finished_call_at_the_tick_with_either_thread_count() {
    for threads in [1, 2] {
        let mut source = QuietLink { reader: example(), last: Timestamp::default(), ticked: false };
        let handed = Cell::new(0);
        let mut at_tick = None;
        let frames_total = Cell::new(0);
        let mut sink = |_| handed.set(handed.get() + 1);
        let mut control = |frames: u64, _| {
            if frames == frames_total.get() {
                // Called again with the same count: that is the tick.
                at_tick.get_or_insert(handed.get());
            }
            frames_total.set(frames);
            ControlFlow::Continue(())
        };
        let opts = AnalyzerOptions { threads, ..AnalyzerOptions::default() };
        let doc = analyze_with(&mut source, "live", opts, Some(&mut sink), &mut control).expect("a document");
        assert_eq!(at_tick, Some(1), "{threads} threads: the call was handed out at the tick, before the source ended");
        assert!(!doc.source.complete, "the link went down");
        assert_eq!(handed.get(), 1);
    }
}

#[test]
fn advance_to_closes_what_is_over_and_time_never_goes_back() {
    let mut reader = example();
    let mut analyzer = Analyzer::default();
    let mut last = Timestamp::default();
    while let Some(frame) = reader.next_frame().unwrap() {
        last = frame.ts;
        analyzer.process(&frame);
    }
    assert!(analyzer.take_completed().is_empty(), "the call lingers for retransmissions");
    analyzer.advance_to(Timestamp::from_nanos(0));
    assert!(analyzer.take_completed().is_empty(), "an earlier time does nothing");
    analyzer.advance_to(Timestamp::from_nanos(last.as_nanos() + 40_000_000_000));
    let closed = analyzer.take_completed();
    assert_eq!(closed.len(), 1, "past the linger time, the call is over");
    let (rest, _) = analyzer.finish();
    assert!(rest.is_empty());
}

#[test]
fn statistics_are_readable_while_the_analysis_goes_on_and_agree_with_the_end() {
    let mut reader = example();
    let mut analyzer = Analyzer::default();
    let mut seen = 0;
    while let Some(frame) = reader.next_frame().unwrap() {
        analyzer.process(&frame);
        seen += 1;
        if seen == 10 {
            let stats = analyzer.stats();
            assert_eq!(stats.packets_decoded + stats.malformed, 10);
        }
    }
    let during = analyzer.stats();
    let flows = analyzer.flows();
    let (listed, _) = analyzer.take_flows();
    assert_eq!(flows, listed);
    let (_, at_end) = analyzer.finish();
    assert_eq!(during, at_end);
}

#[test]
fn forgetting_idle_flows_keeps_the_list_to_the_flows_in_progress() {
    // The example's SIP flow goes quiet for longer than the idle time while media flows on:
    // with forgetting, it leaves the list and is counted instead.
    let quick = AnalyzerOptions { idle_timeout: Duration::from_secs(2), ..AnalyzerOptions::default() };
    let all = callflow_correlate::analyze(&mut example(), "x", quick.clone(), None).unwrap();
    for threads in [1, 2] {
        let opts = AnalyzerOptions { forget_idle_flows: true, threads, ..quick.clone() };
        let forgetting = callflow_correlate::analyze(&mut example(), "x", opts, None).unwrap();
        assert!(forgetting.stats.flows_forgotten > 0, "{threads} threads");
        let packets = |doc: &callflow_model::Document| doc.flows.iter().map(|f| f.packets).sum::<u64>();
        assert!(packets(&forgetting) < packets(&all), "the forgotten flows' packets left the list");
        assert_eq!(all.stats.flows_forgotten, 0, "files list every flow by default");
        assert_eq!(forgetting.sessions, all.sessions, "flows are bookkeeping: sessions do not change");
    }
}
