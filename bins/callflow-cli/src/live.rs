//! `callflow-cli analyze` on live input: an interface (`--interface`), a remote Packetflix
//! stream (`ws://`, `wss://`, `packetflix:ws://`) or HEP agents (`hep://ADDR:PORT`).
//!
//! Each source feeds one `callflow_live` channel; the analysis reads its other end like a
//! capture file. Output is NDJSON by default: a `session` line as each call completes (the
//! lines of `--format ndjson` on a file), a `stats` line every `--stats-every` seconds
//! (packets, bytes, drops by where they happened, sessions closed), and, on Ctrl-C,
//! SIGTERM or after `--duration`, the `summary` line; then the exit status is 0. A source
//! that fails on its own (a remote server closing with a reason) ends the run with the
//! summary of what was seen, then the error. `--write FILE` saves every frame analysed as
//! pcapng.

use crate::{classify, CommonArgs, Format};
use anyhow::{bail, Context, Result};
use callflow_correlate::{analyze_with_classifier, AnalyzeControl, AnalyzerOptions, FrameSource, Pulled};
use callflow_decode::capture::CaptureError;
use callflow_decode::diameter::Dictionary;
use callflow_decode::LinkType;
use callflow_jobs::ResultWriter;
use callflow_live::capture::{self, CaptureHandle, CaptureSpec, NetnsTarget};
use callflow_live::hep::{self, HepListener, HepOptions};
use callflow_live::record::Recorder;
use callflow_live::remote::{self, Backoff, RemoteEvent, RemoteSpec};
use callflow_live::{channel, ChannelSource, LiveCounters};
use callflow_model::Session;
use clap::Args;
use serde::Serialize;
use std::cell::RefCell;
use std::fs::File;
use std::io::{self, BufWriter};
use std::ops::ControlFlow;
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Frames queued between the receiving thread and the analysis: at a few hundred bytes a
/// frame, tens of megabytes at most, and seconds of a busy link.
const QUEUE: usize = 65_536;

/// How often a quiet source lets the analysis close the calls that are over.
const TICK: Duration = Duration::from_millis(250);

/// The flags of live analysis (beside `analyze`'s own).
#[derive(Args, Debug, Default)]
pub(crate) struct LiveArgs {
    /// Capture from this network interface (repeat for several) and analyse continuously.
    #[arg(long = "interface", short = 'i', value_name = "IFACE")]
    pub interface: Vec<String>,
    /// The network namespace to capture in: a path (/run/netns/NAME, /proc/PID/ns/net) or
    /// the namespace's inode number.
    #[arg(long, value_name = "PATH|INODE", requires = "interface")]
    pub netns: Option<String>,
    /// A capture filter (BPF, as tcpdump's).
    #[arg(long, value_name = "BPF", requires = "interface")]
    pub filter: Option<String>,
    /// Stop after this long (`90`, `90s`, `5m`, `2h`) and print the summary.
    #[arg(long, value_name = "D", value_parser = parse_duration)]
    pub duration: Option<Duration>,
    /// Save every frame analysed to this pcapng file.
    #[arg(long, value_name = "FILE")]
    pub write: Option<PathBuf>,
    /// Seconds between `stats` lines (0: none).
    #[arg(long, value_name = "SECS", default_value_t = 5)]
    pub stats_every: u64,
    /// For a remote stream: connect again (with backoff) when the connection is lost.
    #[arg(long)]
    pub reconnect: bool,
    /// For `hep://`: accept only HEP packets carrying this authentication key.
    #[arg(long, value_name = "KEY")]
    pub hep_key: Option<String>,
    /// For `wss://`: the PEM file of the CA certificates to trust [default: the system's].
    #[arg(long, value_name = "FILE")]
    pub ca_file: Option<PathBuf>,
}

/// A live input, as the command line names it.
#[derive(Debug)]
enum Input {
    Interface(CaptureSpec),
    Remote(RemoteSpec),
    Hep(HepOptions),
}

/// Whether `analyze` was given live input rather than a capture file.
pub(crate) fn is_live(input: Option<&Path>, args: &LiveArgs) -> bool {
    let name = input.and_then(Path::to_str).unwrap_or("");
    !args.interface.is_empty() || RemoteSpec::is_remote(name) || name.starts_with("hep://")
}

/// How the run was asked to stop, for the exit status.
#[derive(Default)]
struct Stopping {
    /// Ctrl-C, SIGTERM or `--duration`: the end the user wanted.
    asked: AtomicBool,
}

/// What stops a running source: the handle of whichever kind it is.
trait Running: Send {
    fn stop(self: Box<Self>);
}

impl Running for remote::RemoteHandle {
    fn stop(self: Box<Self>) {
        remote::RemoteHandle::stop(*self);
    }
}

impl Running for CaptureHandle {
    fn stop(self: Box<Self>) {
        // The kernel's drop counts are already in the source's counters.
        let _ = CaptureHandle::stop(*self);
    }
}

impl Running for HepListener {
    fn stop(self: Box<Self>) {
        HepListener::stop(*self);
    }
}

/// Runs the live analysis of `input` (or of `--interface`) until it is stopped or its
/// source ends, writing to `output` (standard output when `None` or `-`).
pub(crate) fn run(input: Option<&Path>, args: &LiveArgs, common: &CommonArgs) -> Result<()> {
    let input = parse_input(input, args)?;
    let threads = common.threads()?;
    let ndjson = common.format != Some(Format::Json);
    let diameter_dictionary = match &common.diameter_dictionary {
        Some(path) => Some(Arc::new(Dictionary::with_file(path).context("bad --diameter-dictionary")?)),
        None => None,
    };
    let label = match &input {
        Input::Interface(spec) if spec.interfaces.is_empty() => "every interface".to_string(),
        Input::Interface(spec) => format!("interface {}", spec.interfaces.join(",")),
        Input::Remote(spec) => spec.url.to_string(),
        Input::Hep(options) => format!("hep://{}", options.listen),
    };
    let (sender, source) = channel(QUEUE, TICK);
    let counters = source.counters().clone();
    // HEP's capture agents and RTCP by call, put on each session before it is written.
    let mut annotations = None;
    let running: Box<dyn Running> = match input {
        Input::Interface(spec) => {
            Box::new(capture::start(&spec, sender).with_context(|| format!("cannot capture on {label}"))?)
        }
        Input::Hep(options) => {
            let listener = hep::start(&options, sender).with_context(|| format!("cannot listen on {label}"))?;
            annotations = Some(listener.annotations());
            Box::new(listener)
        }
        Input::Remote(mut spec) => {
            if args.reconnect {
                spec.reconnect = Some(Backoff::default());
                spec.on_event = Some(Arc::new(|event: &RemoteEvent| match event {
                    RemoteEvent::Lost { reason, retry_in } => {
                        eprintln!("callflow-cli: remote stream lost ({reason}); trying again in {retry_in:?}")
                    }
                    RemoteEvent::Reconnected { attempt } => {
                        eprintln!("callflow-cli: remote stream reconnected (attempt {attempt})")
                    }
                    _ => {}
                }));
            }
            spec.ca_file = args.ca_file.clone();
            Box::new(remote::start(&spec, sender).with_context(|| format!("cannot open {label}"))?)
        }
    };
    let running = Arc::new(Mutex::new(Some(running)));
    let stopping = Arc::new(Stopping::default());
    let (done_tx, done_rx) = tokio::sync::oneshot::channel::<()>();
    let stopper = spawn_stopper(args.duration, running.clone(), stopping.clone(), done_rx)?;

    let out = Rc::new(RefCell::new(ResultWriter::streaming(common.output.as_deref())?));
    let recorder = match &args.write {
        Some(path) => {
            let file = File::create(path).with_context(|| format!("cannot create {}", path.display()))?;
            Some(Recorder::new(BufWriter::new(file)).with_context(|| format!("cannot write {}", path.display()))?)
        }
        None => None,
    };
    let mut source = Recording { inner: source, recorder, error: None };
    let classifier = classify::analysis_classifier(common.no_ndpi)?;
    let tls_keys = match &common.tls_keylog {
        Some(path) => callflow_jobs::read_tls_key_log(path)?,
        None => Default::default(),
    };
    let opts = AnalyzerOptions { threads, diameter_dictionary, tls_keys, ..AnalyzerOptions::default() };
    let mut write_error = None;
    let mut held = Vec::new();
    let lines = out.clone();
    let mut sink = |mut session: Session| {
        if let Some(annotations) = &annotations {
            annotations.annotate(&mut session);
        }
        if !ndjson {
            held.push(session);
        } else if write_error.is_none() {
            if let Err(e) = lines.borrow_mut().write_session_line(&session) {
                write_error = Some(e);
            }
        }
    };
    let mut control = Stats {
        every: Duration::from_secs(args.stats_every),
        started: Instant::now(),
        last: Instant::now(),
        counters: counters.clone(),
        due: false,
        open: None,
        out: out.clone(),
    };
    let analysed = analyze_with_classifier(&mut source, &label, opts, classifier, Some(&mut sink), &mut control);
    // The analysis is over: the stopper may go, and the source is stopped if it was not.
    let _ = done_tx.send(());
    let _ = stopper.join();
    // The queue's end goes first, so a source waiting for room in it (a remote stream)
    // is let go instead of being waited for.
    let Recording { inner, recorder, error } = source;
    drop(inner);
    if let Some(running) = running.lock().ok().and_then(|mut r| r.take()) {
        running.stop();
    }
    if let Some(e) = write_error {
        return Err(e.into());
    }
    if let Some(recorder) = recorder {
        recorder.finish().context("cannot finish the --write file")?;
    }
    if let Some(e) = error {
        return Err(e).context("cannot write the --write file");
    }
    let mut doc = analysed.with_context(|| format!("cannot read {label}"))?;
    let mut out = out.borrow_mut();
    if ndjson {
        out.write_summary_line(&doc)?;
    } else {
        doc.sessions = held;
        callflow_correlate::sort_sessions(&mut doc.sessions);
        out.write_document(&doc, common.pretty)?;
    }
    let asked = stopping.asked.load(Ordering::Relaxed);
    match doc.source.warnings.iter().find(|w| w.starts_with("reading stopped")) {
        Some(warning) if !asked => bail!("{label}: {warning}"),
        _ => Ok(()),
    }
}

fn parse_input(input: Option<&Path>, args: &LiveArgs) -> Result<Input> {
    let name = input.map(|p| p.to_string_lossy().into_owned()).unwrap_or_default();
    if !args.interface.is_empty() {
        if input.is_some() {
            bail!("give either --interface or an input to analyse, not both");
        }
        let netns = args.netns.as_deref().map(|n| match n.parse::<u64>() {
            Ok(inode) => NetnsTarget::Inode(inode),
            Err(_) => NetnsTarget::Path(PathBuf::from(n)),
        });
        // `any` is how tcpdump and Packetflix say every interface.
        let interfaces = args.interface.iter().filter(|i| i.as_str() != "any").cloned().collect();
        return Ok(Input::Interface(CaptureSpec {
            netns,
            interfaces,
            filter: args.filter.clone(),
            ..CaptureSpec::default()
        }));
    }
    if name.starts_with("hep://") {
        let options = HepOptions { auth_key: args.hep_key.clone(), ..HepOptions::from_url(&name)? };
        return Ok(Input::Hep(options));
    }
    Ok(Input::Remote(RemoteSpec::parse(&name)?))
}

/// Waits for Ctrl-C, SIGTERM or the end of `--duration` on a thread of its own, then stops
/// the source (the analysis then finishes what is queued); ends quietly when `done` says
/// the analysis ended first.
fn spawn_stopper(
    duration: Option<Duration>,
    running: Arc<Mutex<Option<Box<dyn Running>>>>,
    stopping: Arc<Stopping>,
    done: tokio::sync::oneshot::Receiver<()>,
) -> Result<std::thread::JoinHandle<()>> {
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    let thread = std::thread::Builder::new().name("callflow-stop".into()).spawn(move || {
        let asked = runtime.block_on(async move {
            let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).ok();
            let term = async {
                match term.as_mut() {
                    Some(term) => {
                        term.recv().await;
                    }
                    None => std::future::pending().await,
                }
            };
            let until = async {
                match duration {
                    Some(d) => tokio::time::sleep(d).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                _ = tokio::signal::ctrl_c() => true,
                () = term => true,
                () = until => true,
                _ = done => false,
            }
        });
        if asked {
            stopping.asked.store(true, Ordering::Relaxed);
            if let Some(running) = running.lock().ok().and_then(|mut r| r.take()) {
                running.stop();
            }
        }
    })?;
    Ok(thread)
}

/// The channel's frames, each written to `--write` on its way to the analysis.
struct Recording {
    inner: ChannelSource,
    recorder: Option<Recorder<BufWriter<File>>>,
    /// The first write error; the recording stops there, the analysis goes on.
    error: Option<io::Error>,
}

impl FrameSource for Recording {
    fn next_frame(&mut self) -> Result<Option<Pulled<'_>>, CaptureError> {
        let pulled = self.inner.next_frame()?;
        if let (Some(Pulled::Here(frame)), Some(recorder)) = (&pulled, self.recorder.as_mut()) {
            if let Err(e) = recorder.write(frame) {
                self.error = Some(e);
                self.recorder = None;
            }
        }
        Ok(pulled)
    }

    fn bytes_consumed(&self) -> u64 {
        self.inner.bytes_consumed()
    }

    fn link_types(&self) -> &[LinkType] {
        self.inner.link_types()
    }
}

/// The `stats` lines, written by the analysis loop every `every`.
struct Stats {
    every: Duration,
    started: Instant,
    last: Instant,
    counters: Arc<LiveCounters>,
    /// A stats line is due: the open sessions are asked for.
    due: bool,
    /// The open sessions, once told.
    open: Option<u64>,
    /// The output, shared with the session sink (both run on the analysis thread).
    out: Rc<RefCell<ResultWriter>>,
}

impl AnalyzeControl for Stats {
    fn on_frame(&mut self, _frames: u64, _bytes: u64) -> ControlFlow<()> {
        ControlFlow::Continue(())
    }

    fn wants_open_sessions(&mut self) -> bool {
        self.due
    }

    fn on_open_sessions(&mut self, open: u64) {
        self.open = Some(open);
    }

    fn on_progress(&mut self, frames: u64, _bytes: u64, sessions: u64) -> ControlFlow<()> {
        if self.every.is_zero() {
            return ControlFlow::Continue(());
        }
        // When the time comes, the open sessions are asked for, and the line is written
        // once they are told (after the next frame or tick).
        let Some(open) = self.open.take() else {
            self.due = self.due || self.last.elapsed() >= self.every;
            return ControlFlow::Continue(());
        };
        self.due = false;
        self.last = Instant::now();
        let (received, bytes, dropped, source_dropped) = self.counters.snapshot();
        let line = StatsLine {
            r#type: "stats",
            elapsed_s: self.started.elapsed().as_secs_f64(),
            packets: received,
            bytes,
            analysed: frames,
            dropped_queue: dropped,
            dropped_source: source_dropped,
            sessions_open: open,
            sessions_closed: sessions,
        };
        // A failed write shows again, and is reported, on the next session or the summary.
        let _ = self.out.borrow_mut().write_line(&line, false);
        ControlFlow::Continue(())
    }
}

#[derive(Serialize)]
struct StatsLine {
    r#type: &'static str,
    /// Seconds since the analysis started.
    elapsed_s: f64,
    /// Frames that reached the analysis' queue.
    packets: u64,
    /// Their bytes.
    bytes: u64,
    /// Frames analysed so far.
    analysed: u64,
    /// Frames dropped because the analysis was behind (our queue was full).
    dropped_queue: u64,
    /// Frames the source lost or refused before the queue: the kernel's drops on a
    /// captured interface, malformed or unauthorized HEP packets.
    dropped_source: u64,
    /// Sessions started and not yet over.
    sessions_open: u64,
    /// Sessions over and written so far.
    sessions_closed: u64,
}

/// `90` (seconds), `90s`, `5m`, `2h`, `500ms`.
fn parse_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let digits = text.find(|c: char| !c.is_ascii_digit()).unwrap_or(text.len());
    let (number, unit) = text.split_at(digits);
    let n: u64 = number.parse().map_err(|_| format!("{text:?} is not a duration such as 90s, 5m or 2h"))?;
    let d = match unit {
        "" | "s" => Duration::from_secs(n),
        "ms" => Duration::from_millis(n),
        "m" => Duration::from_secs(n.saturating_mul(60)),
        "h" => Duration::from_secs(n.saturating_mul(3600)),
        _ => return Err(format!("{text:?}: unknown unit {unit:?} (use ms, s, m or h)")),
    };
    if d.is_zero() {
        return Err("the duration must be more than zero".into());
    }
    Ok(d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_are_read_with_or_without_a_unit() {
        assert_eq!(parse_duration("90"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_duration("5m"), Ok(Duration::from_secs(300)));
        assert_eq!(parse_duration("2h"), Ok(Duration::from_secs(7200)));
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
        assert!(parse_duration("5 parsecs").is_err());
        assert!(parse_duration("0").is_err());
    }
}
