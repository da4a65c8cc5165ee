//! [`analyze_with`]: the analysis loop with a caller's hand on it, for progress reports and cooperative cancellation.
//!
//! A job runner needs two things the plain [`analyze`](crate::analyze) does not give: how
//! far it has got, and a way to stop it. Both go through one [`AnalyzeControl`] call per
//! frame, so the loop stays one loop and the caller decides how often to do anything
//! costly (the job manager reads the clock once per thousand frames, not per frame).

use crate::bearers;
use crate::front::{Forgotten, Front, Prepared};
use crate::kpis::KpiAccumulator;
use crate::pipeline::{read_ahead, Event};
use crate::source::{FrameSource, Pulled};
use crate::subscribers::{self, Joiner};
use crate::{Analyzer, AnalyzerOptions};
use callflow_classify::Classifier;
use callflow_decode::capture::{CaptureError, Frame};
use callflow_decode::Timestamp;
use callflow_model::{Document, Session, SourceInfo, FORMAT};
use std::ops::ControlFlow;

/// Sessions an endless input (one whose idle flows are forgotten: a live source) keeps for
/// the subscriber join: about 10 MB of summaries, so a live analysis' memory stays flat.
pub(crate) const LIVE_JOIN_SESSIONS: usize = 20_000;

/// What the analysis loop asks its caller after every frame.
pub trait AnalyzeControl {
    /// Called after frame number `frames` has been analysed (and after each
    /// [`Pulled::Tick`] of a quiet source, with the same count), with the bytes of the
    /// capture read so far (decompressed bytes for gzip, see
    /// [`FrameSource::bytes_consumed`]). Return `ControlFlow::Break(())` to stop: the
    /// analysis then returns at once, with the sessions not yet handed out dropped, and a
    /// document whose `source.complete` is false. Called once per frame, so keep it cheap.
    fn on_frame(&mut self, frames: u64, bytes_consumed: u64) -> ControlFlow<()>;

    /// What the loop actually calls: [`AnalyzeControl::on_frame`] with, in addition, the
    /// sessions closed so far (handed to the sink or held for the end), for progress
    /// displays. By default it is `on_frame`.
    fn on_progress(&mut self, frames: u64, bytes_consumed: u64, sessions: u64) -> ControlFlow<()> {
        let _ = sessions;
        self.on_frame(frames, bytes_consumed)
    }

    /// Asked after each [`AnalyzeControl::on_progress`]: whether to be told, after the next
    /// frame or tick, how many sessions are open ([`AnalyzeControl::on_open_sessions`]).
    /// Counting them lists every handler's table, so a caller asks now and then (a live
    /// run's stats line every few seconds), not per frame. By default never.
    fn wants_open_sessions(&mut self) -> bool {
        false
    }

    /// The sessions open (started, not yet over) after the frame or tick just analysed,
    /// when [`AnalyzeControl::wants_open_sessions`] asked for them; called before that
    /// frame's [`AnalyzeControl::on_progress`].
    fn on_open_sessions(&mut self, open: u64) {
        let _ = open;
    }
}

/// The control of a run nobody watches: never stops.
#[derive(Clone, Copy, Debug, Default)]
pub struct Unattended;

impl AnalyzeControl for Unattended {
    fn on_frame(&mut self, _frames: u64, _bytes_consumed: u64) -> ControlFlow<()> {
        ControlFlow::Continue(())
    }
}

impl<F: FnMut(u64, u64) -> ControlFlow<()>> AnalyzeControl for F {
    fn on_frame(&mut self, frames: u64, bytes_consumed: u64) -> ControlFlow<()> {
        self(frames, bytes_consumed)
    }
}

/// [`analyze_with`] with the classifier of the caller's choice (nDPI, say) for the traffic
/// no signalling explains, instead of the built-in heuristic one.
pub fn analyze_with_classifier<C: Classifier, S: FrameSource + Send + ?Sized>(
    reader: &mut S,
    path: &str,
    opts: AnalyzerOptions,
    classifier: C,
    sink: Option<&mut dyn FnMut(Session)>,
    control: &mut dyn AnalyzeControl,
) -> Result<Document, CaptureError> {
    run(Analyzer::with_classifier(opts, classifier), reader, path, sink, control)
}

/// [`analyze`](crate::analyze), asking `control` after every frame whether to go on.
///
/// When `control` stops the run, the returned document has `complete: false`, a warning
/// `stopped by the caller after N packets`, no further sessions (those still open are
/// dropped, not flushed to `sink`), and empty statistics.
///
/// ```no_run
/// use callflow_correlate::{analyze_with, AnalyzerOptions};
/// use callflow_decode::capture::CaptureReader;
/// use std::ops::ControlFlow;
///
/// let mut reader = CaptureReader::open("call.pcap")?;
/// let total = reader.total_bytes().unwrap_or(0).max(1);
/// let mut control = |frames: u64, bytes: u64| {
///     if frames % 10_000 == 0 {
///         eprintln!("{}%", bytes * 100 / total);
///     }
///     ControlFlow::Continue(())
/// };
/// let doc = analyze_with(&mut reader, "call.pcap", AnalyzerOptions::default(), None, &mut control)?;
/// # Ok::<(), callflow_decode::capture::CaptureError>(())
/// ```
pub fn analyze_with<S: FrameSource + Send + ?Sized>(
    reader: &mut S,
    path: &str,
    opts: AnalyzerOptions,
    sink: Option<&mut dyn FnMut(Session)>,
    control: &mut dyn AnalyzeControl,
) -> Result<Document, CaptureError> {
    run(Analyzer::new(opts), reader, path, sink, control)
}

/// One step of the analysis loop.
enum Step<'f, 'p> {
    /// A frame, prepared by the read-ahead thread's front stage, or to be prepared by the
    /// analyzer's own.
    Frame(&'f Frame<'f>, Option<&'p Prepared<'p>>),
    /// Time moved on without a frame, with what the read-ahead thread's front stage forgot
    /// then (`None`: the analyzer's own front stage is advanced).
    Tick(Timestamp, Option<&'p Forgotten>),
}

/// The analysis loop itself, whatever the classifier.
fn run<C: Classifier, S: FrameSource + Send + ?Sized>(
    mut analyzer: Analyzer<C>,
    reader: &mut S,
    path: &str,
    mut sink: Option<&mut dyn FnMut(Session)>,
    control: &mut dyn AnalyzeControl,
) -> Result<Document, CaptureError> {
    let (threads, fragment_limits) = (analyzer.options().threads, analyzer.options().fragments.clone());
    // TLS secrets in the capture itself (pcapng Decryption Secrets Blocks) join the key log.
    reader.share_tls_keys(analyzer.options().tls_keys.clone());
    let flow_idle = analyzer.options().forget_idle_flows.then_some(analyzer.options().idle_timeout);
    let mut source = SourceInfo {
        path: path.to_string(),
        packets: 0,
        bytes: reader.total_bytes().unwrap_or(0),
        first_ts: None,
        last_ts: None,
        link_types: Vec::new(),
        complete: true,
        warnings: Vec::new(),
    };
    let mut stopped = false;
    // What the subscriber view needs of each session handed out before the end: of an
    // endless input, only of the latest sessions.
    let mut joiner = if flow_idle.is_some() { Joiner::bounded(LIVE_JOIN_SESSIONS) } else { Joiner::default() };
    // The operator statistics, fed every session as it is handed out.
    let mut kpis = KpiAccumulator::for_document(analyzer.options().kpis.clone());
    // Sessions handed to the sink so far.
    let mut handed = 0u64;
    // Whether the caller asked for the count of open sessions after the next frame.
    let want_open = std::cell::Cell::new(false);
    // One frame's worth of the loop, whichever thread decoded the frame: the analysis, then
    // (once the frame, which may borrow the reader, is done with) the caller's say.
    let mut analyse = |step: Step<'_, '_>| {
        match step {
            Step::Frame(frame, prepared) => {
                source.packets += 1;
                source.first_ts.get_or_insert(frame.ts);
                source.last_ts = Some(source.last_ts.map_or(frame.ts, |t| t.max(frame.ts)));
                match prepared {
                    Some(prepared) => analyzer.analyse(frame, prepared),
                    None => analyzer.process(frame),
                }
            }
            Step::Tick(now, Some(forgotten)) => analyzer.advance(now, forgotten.as_deref().map_or(&[], |f| &f[..])),
            Step::Tick(now, None) => analyzer.advance_to(now),
        }
        // Forgotten flows (an endless input) are counted in the statistics, not listed.
        drop(analyzer.take_forgotten_flows());
        if let Some(sink) = sink.as_deref_mut() {
            for session in analyzer.take_completed() {
                joiner.observe(&session);
                kpis.add(&session);
                handed += 1;
                sink(session);
            }
        }
        let open = want_open.get().then(|| analyzer.open_count() as u64);
        (source.packets, handed + analyzer.completed_count() as u64, open)
    };
    let mut ask = |(frames, sessions, open): (u64, u64, Option<u64>), consumed: u64| {
        if let Some(open) = open {
            control.on_open_sessions(open);
        }
        let flow = control.on_progress(frames, consumed, sessions);
        want_open.set(control.wants_open_sessions());
        stopped = flow.is_break();
        flow
    };
    // With a second thread, the front stage (decoding, fragments, flows) runs there, and
    // what it counted is added in at the end.
    let mut front_unlisted = 0;
    let ended = if threads >= 2 {
        let front = Front::new(fragment_limits, flow_idle);
        let (front, ended) = read_ahead(reader, front, |event, consumed| match event {
            Event::Frame(frame, prepared) => ask(analyse(Step::Frame(frame, Some(prepared))), consumed),
            Event::Tick(now, forgotten) => ask(analyse(Step::Tick(now, Some(forgotten))), consumed),
        });
        front_unlisted = front.map_or(0, |front| front.unlisted_flows());
        ended
    } else {
        loop {
            let frames = match reader.next_frame() {
                Ok(Some(Pulled::Here(frame))) => analyse(Step::Frame(&frame, None)),
                // `next_frame` never points into shared bytes; were it to, the frame is read there.
                Ok(Some(Pulled::At(at))) => {
                    let bytes = reader.shared_bytes();
                    let frame = at.frame(bytes.as_deref().unwrap_or(&[]));
                    analyse(Step::Frame(&frame, None))
                }
                // One thread: the analyzer's own front stage is advanced with it.
                Ok(Some(Pulled::Tick(now))) => analyse(Step::Tick(now, None)),
                Ok(None) => break Ok(()),
                Err(e) => break Err(e),
            };
            if ask(frames, reader.bytes_consumed()).is_break() {
                break Ok(());
            }
        }
    };
    match ended {
        Ok(()) => {}
        Err(e @ CaptureError::Io(_)) if source.packets == 0 => return Err(e),
        Err(e) => {
            source.complete = false;
            source.warnings.push(format!("reading stopped after {} packets: {e}", source.packets));
        }
    }
    source.link_types = reader.link_types().iter().map(|l| l.name()).collect();
    if source.bytes == 0 {
        source.bytes = reader.bytes_consumed();
    }
    if stopped {
        source.complete = false;
        source.warnings.push(format!("stopped by the caller after {} packets", source.packets));
        return Ok(Document {
            format: FORMAT.to_string(),
            source,
            stats: Default::default(),
            sessions: Vec::new(),
            flows: Vec::new(),
            subscribers: Vec::new(),
            kpis: None,
        });
    }
    let (flows, unlisted) = analyzer.take_flows();
    let (sessions, mut stats) = analyzer.finish();
    stats.flows_unlisted = unlisted + front_unlisted;
    let mut sessions = match sink {
        Some(sink) => {
            sessions.into_iter().for_each(|session| {
                joiner.observe(&session);
                kpis.add(&session);
                sink(session);
            });
            Vec::new()
        }
        None => {
            sessions.iter().for_each(|session| {
                joiner.observe(session);
                kpis.add(session);
            });
            sessions
        }
    };
    if joiner.dropped() > 0 {
        source.warnings.push(format!(
            "subscriber view: the {} oldest sessions with subscriber keys were left out of the join \
             (an endless input joins at most its latest {LIVE_JOIN_SESSIONS})",
            joiner.dropped()
        ));
    }
    let subscribers = subscribers::attach(joiner, &mut sessions);
    bearers::link(&mut sessions);
    let kpis = (kpis.sessions() > 0).then(|| Box::new(kpis.document(source.last_ts)));
    Ok(Document { format: FORMAT.to_string(), source, stats, sessions, flows, subscribers, kpis })
}

#[cfg(test)]
mod tests {
    use super::*;

    use callflow_decode::capture::CaptureReader;

    fn example() -> CaptureReader {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../examples/captures/basic-call.pcap");
        CaptureReader::open(path).expect("example capture")
    }

    /// Counts what `on_progress` is told.
    struct Sessions(Vec<u64>);

    impl AnalyzeControl for Sessions {
        fn on_frame(&mut self, _: u64, _: u64) -> ControlFlow<()> {
            ControlFlow::Continue(())
        }

        fn on_progress(&mut self, _: u64, _: u64, sessions: u64) -> ControlFlow<()> {
            self.0.push(sessions);
            ControlFlow::Continue(())
        }
    }

    #[test]
    fn progress_counts_the_sessions_closed_so_far_with_or_without_a_sink() {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/test_data/outcomes.pcap");
        // Calls close a second after they end, while the capture is still being read.
        let opts = AnalyzerOptions { session_linger: std::time::Duration::from_secs(1), ..AnalyzerOptions::default() };
        for with_sink in [false, true] {
            let mut control = Sessions(Vec::new());
            let mut sunk = 0;
            let mut sink = |_: Session| sunk += 1;
            let sink: Option<&mut dyn FnMut(Session)> = if with_sink { Some(&mut sink) } else { None };
            let mut reader = CaptureReader::open(path).unwrap();
            analyze_with(&mut reader, "x", opts.clone(), sink, &mut control).unwrap();
            let seen = control.0;
            assert!(seen.windows(2).all(|w| w[0] <= w[1]), "never goes down");
            assert!(*seen.last().unwrap() >= 2, "calls closed during the run are counted: {:?}", seen.last());
        }
    }

    /// Wants the open sessions after every frame, and keeps them.
    struct Open(Vec<u64>);

    impl AnalyzeControl for Open {
        fn on_frame(&mut self, _: u64, _: u64) -> ControlFlow<()> {
            ControlFlow::Continue(())
        }

        fn wants_open_sessions(&mut self) -> bool {
            true
        }

        fn on_open_sessions(&mut self, open: u64) {
            self.0.push(open);
        }
    }

    #[test]
    fn open_sessions_are_counted_when_the_control_asks() {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/test_data/outcomes.pcap");
        let opts = AnalyzerOptions { session_linger: std::time::Duration::from_secs(1), ..AnalyzerOptions::default() };
        let mut control = Open(Vec::new());
        let mut reader = CaptureReader::open(path).unwrap();
        let doc = analyze_with(&mut reader, "x", opts, None, &mut control).unwrap();
        let seen = control.0;
        // Asked after each frame, told after the next one: every frame but the first.
        assert_eq!(seen.len() as u64, doc.source.packets - 1);
        let most = *seen.iter().max().unwrap();
        assert!(most >= 2, "calls overlap in this capture: {most}");
        assert!(most <= doc.sessions.len() as u64);
        assert!(*seen.last().unwrap() < most, "calls that ended closed during the run");
    }

    #[test]
    fn control_sees_every_frame_with_growing_byte_counts() {
        let mut seen = Vec::new();
        let mut control = |frames: u64, bytes: u64| {
            seen.push((frames, bytes));
            ControlFlow::Continue(())
        };
        let doc = analyze_with(&mut example(), "x", AnalyzerOptions::default(), None, &mut control).unwrap();
        assert_eq!(seen.len() as u64, doc.source.packets);
        assert!(seen.windows(2).all(|w| w[1].0 == w[0].0 + 1 && w[1].1 > w[0].1));
        assert_eq!(seen.last().unwrap().1, doc.source.bytes, "the last frame ends the file");
        assert!(doc.source.complete);
        assert_eq!(doc.sessions.len(), 1);
    }

    #[test]
    fn breaking_stops_at_once_and_marks_the_document_incomplete() {
        let mut control = |frames: u64, _| if frames == 5 { ControlFlow::Break(()) } else { ControlFlow::Continue(()) };
        let doc = analyze_with(&mut example(), "x", AnalyzerOptions::default(), None, &mut control).unwrap();
        assert_eq!(doc.source.packets, 5);
        assert!(!doc.source.complete);
        assert_eq!(doc.source.warnings, ["stopped by the caller after 5 packets"]);
        assert!(doc.sessions.is_empty());
    }
}
