//! [`JobManager`]: the bounded queue, the worker threads, cancellation, deletion and the retention sweeper.
//!
//! The store is the truth about every job; the crossbeam channel only carries one wake-up
//! token per queued job, and a woken worker asks the store for the oldest queued job
//! ([`JobStore::claim_next`]). So a job cancelled while queued simply leaves a token that
//! finds nothing (or the next job), no job can be taken twice, and after a restart the
//! manager sends one token per job the store says is queued.

use crate::cluster::{NodeOptions, NodeState};
use crate::events::{Event, EventBus, Subscription};
use crate::live::{live_end, LiveJob, LiveOptions, LiveRun};
use crate::retain::RetainLimits;
use crate::status::{Board, JobStatus};
use crate::store::{JobQuery, JobStore, Outcome, Progress, Recovery, SessionQuery, SessionRow, StoreError};
use crate::{now_millis, Job, JobId, JobRef, JobState, NewJob};
use callflow_classify::{Classifier, HeuristicClassifier};
use callflow_config::{KpiSettings, Settings};
use callflow_correlate::kpis::{AddrRule, KpiOptions, KpiSeries, TrunkRule};
use callflow_correlate::{analyze_with_classifier, AnalyzeControl, AnalyzerOptions, LegOptions, QualityOptions};
use callflow_decode::capture::{CaptureError, CaptureReader};
use callflow_decode::tls::keylog::{KeyLogTail, SharedKeyLog};
use callflow_model::{Document, Session};
use crossbeam_channel::{Receiver, RecvTimeoutError, Sender};
use std::cell::RefCell;
use std::collections::HashMap;
use std::ops::ControlFlow;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicU8, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// Why a job operation was refused.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum JobError {
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// No job has this id (never had, or it was deleted).
    #[error("no job {0}")]
    NotFound(JobId),
    /// The queue holds `capacity` jobs already; try again later.
    #[error("the job queue is full ({capacity} jobs waiting)")]
    QueueFull {
        /// The queue's bound (`limits.max_queued_jobs`).
        capacity: usize,
    },
    /// Only finished jobs can be deleted; cancel it first.
    #[error("job {id} is {state}: only finished jobs can be deleted")]
    NotFinished {
        /// The job.
        id: JobId,
        /// Its state.
        state: JobState,
    },
    /// The job is already finished, there is nothing to cancel.
    #[error("job {id} is already {state}")]
    AlreadyFinished {
        /// The job.
        id: JobId,
        /// Its state.
        state: JobState,
    },
    /// `max_jobs` live jobs run already (`live.max_jobs`).
    #[error("{max} live jobs are running already (live.max_jobs); stop one first")]
    TooManyLive {
        /// The bound.
        max: usize,
    },
    /// Another live process runs a node of this name on the store (its heartbeat goes on).
    #[error(
        "node name `{name}` is in use by another live node of this job store (it heartbeats); give this node \
         another [cluster] node_name"
    )]
    NodeNameInUse {
        /// The name.
        name: String,
    },
    /// The manager is shutting down and takes no more jobs.
    #[error("the job manager is shutting down")]
    ShutDown,
    /// [`JobManager::wait`] gave up before the jobs finished.
    #[error("timed out waiting for jobs to finish")]
    Timeout,
}

/// How the manager runs jobs.
#[derive(Clone, Debug)]
pub struct ManagerOptions {
    /// Worker threads (at least 1).
    pub workers: usize,
    /// Jobs that may wait in the queue.
    pub queue_capacity: usize,
    /// After a crash, re-run the jobs that were running (or fail them as interrupted).
    pub resume_interrupted: bool,
    /// A compressed capture is failed once it inflates past this many bytes.
    pub max_inflated_bytes: u64,
    /// A run is failed once it has taken this long.
    pub max_job_time: Duration,
    /// A job interrupted this many times (started, and the process stopped before it
    /// ended) is failed at the next start instead of resumed.
    pub max_attempts: u32,
    /// Progress events are at least this many packets apart...
    pub progress_every_packets: u64,
    /// ...and at least this much time apart.
    pub progress_interval: Duration,
    /// Finished jobs older than this are deleted by the sweeper.
    pub retention: Duration,
    /// How often the sweeper runs; `None`: no sweeper (call [`JobManager::sweep`]).
    pub sweep_interval: Option<Duration>,
    /// Events buffered per subscriber.
    pub event_buffer: usize,
    /// How captures are analysed.
    pub analyzer: AnalyzerOptions,
    /// Makes the classifier each job hands the traffic no signalling explains to; the
    /// heuristic one unless the embedder chooses (callflowd picks nDPI when enabled).
    pub classifier: ClassifierFactory,
    /// How live jobs run and what they keep.
    pub live: LiveOptions,
    /// At most this many peers get a label of their own in [`JobManager::kpi_series`].
    pub top_peers: usize,
    /// This node: its name and address in the store, and its lease (see `crate::cluster`).
    pub node: NodeOptions,
}

/// The statistics options the configuration asks for (its addresses were checked by
/// `Settings::validate`; one that does not parse is left out).
pub fn kpi_options(s: &KpiSettings) -> KpiOptions {
    let rules = |list: &[String]| list.iter().filter_map(|a| a.parse::<AddrRule>().ok()).collect::<Vec<_>>();
    KpiOptions {
        bucket: s.bucket,
        local: rules(&s.local_addresses),
        trunks: s
            .trunks
            .iter()
            .map(|t| TrunkRule { name: t.name.clone(), addresses: rules(&t.addresses), hosts: t.hosts.clone() })
            .collect(),
    }
}

impl Default for ManagerOptions {
    fn default() -> Self {
        ManagerOptions::from_settings(&Settings::default())
    }
}

impl ManagerOptions {
    /// The options the configuration asks for.
    pub fn from_settings(s: &Settings) -> ManagerOptions {
        let q = &s.quality;
        let analyzer = AnalyzerOptions {
            session_linger: s.processing.session_linger,
            idle_timeout: s.processing.idle_timeout,
            threads: if s.processing.read_ahead { 2 } else { 1 },
            quality: QualityOptions {
                jitter_buffer: q.jitter_buffer,
                interval: q.interval,
                default_network_delay: q.default_network_delay,
                max_jitter_ms: q.max_jitter_ms,
                max_loss_pct: q.max_loss_pct,
                min_mos: q.min_mos,
                late_answer: q.late_answer,
                rtp_after_bye: q.rtp_after_bye,
                capture_loss_streams: q.capture_loss_streams,
                capture_loss_window: q.capture_loss_window,
            },
            legs: LegOptions {
                enabled: s.legs.enabled,
                correlation_headers: s.legs.correlation_headers.clone(),
                call_id_suffixes: s.legs.call_id_suffixes.clone(),
                call_id_prefixes: s.legs.call_id_prefixes.clone(),
                match_parties: s.legs.match_parties,
                party_window: s.legs.party_window,
            },
            kpis: kpi_options(&s.kpis),
            ..AnalyzerOptions::default()
        };
        ManagerOptions {
            workers: s.processing.workers.max(1),
            queue_capacity: s.limits.max_queued_jobs.max(1),
            resume_interrupted: s.processing.resume_interrupted,
            max_attempts: s.processing.max_attempts.max(1),
            max_inflated_bytes: s.limits.max_inflated_bytes,
            max_job_time: s.limits.max_job_time,
            progress_every_packets: s.processing.progress_every_packets.max(1),
            progress_interval: Duration::from_secs(1) / s.processing.progress_per_second.max(1),
            retention: s.storage.retention,
            sweep_interval: Some(s.storage.sweep_interval),
            event_buffer: s.websocket.event_buffer,
            analyzer,
            // This crate knows no classifier but the heuristic one; whoever links nDPI
            // (callflowd) swaps it in after reading `ndpi.enabled`.
            classifier: ClassifierFactory::default(),
            live: LiveOptions {
                dir: s.live_capture_dir(),
                retain: RetainLimits {
                    segment_bytes: s.live.segment_bytes,
                    max_bytes: s.live.max_bytes,
                    max_age: s.live.max_age,
                },
                stats_interval: s.live.stats_interval,
                max_jobs: s.live.max_jobs,
                tls_keylog: (!s.tls.keylog.as_os_str().is_empty()).then(|| s.tls.keylog.clone()),
            },
            top_peers: s.kpis.top_peers,
            node: NodeOptions {
                name: s.node_name(),
                advertise_url: s.advertise_url(),
                lease: s.cluster.lease,
                max_attempts: s.cluster.max_attempts.max(1),
            },
        }
    }
}

/// What [`ClassifierFactory::make`] returns: a classifier for one run, or why none could be made.
type MakeClassifier = dyn Fn() -> Result<Box<dyn Classifier>, String> + Send + Sync;

/// Makes a fresh classifier for each job: flow-tracking classifiers such as nDPI keep
/// per-run state, so one instance cannot be shared between jobs or threads. The default
/// makes the built-in [`HeuristicClassifier`].
#[derive(Clone)]
pub struct ClassifierFactory(Arc<MakeClassifier>);

impl ClassifierFactory {
    /// A factory calling `make` once per job; its error fails that job, with the message
    /// the user sees.
    pub fn new<C, E>(make: impl Fn() -> Result<C, E> + Send + Sync + 'static) -> ClassifierFactory
    where
        C: Classifier + 'static,
        E: std::fmt::Display,
    {
        ClassifierFactory(Arc::new(move || match make() {
            Ok(c) => Ok(Box::new(c) as Box<dyn Classifier>),
            Err(e) => Err(e.to_string()),
        }))
    }

    /// The built-in heuristic classifier, which cannot fail.
    pub fn heuristic() -> ClassifierFactory {
        ClassifierFactory::new(|| Ok::<_, std::convert::Infallible>(HeuristicClassifier))
    }

    /// A new classifier for one run.
    pub fn make(&self) -> Result<Box<dyn Classifier>, String> {
        (self.0)()
    }
}

impl Default for ClassifierFactory {
    fn default() -> Self {
        ClassifierFactory::heuristic()
    }
}

impl std::fmt::Debug for ClassifierFactory {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The closure has nothing printable; which classifier it makes shows in each
        // document's `stats.classifier`.
        f.debug_struct("ClassifierFactory").finish_non_exhaustive()
    }
}

/// Runs one job. [`CaptureAnalysis`] is the real one; embedders (and tests) may supply
/// another. Choosing a classifier needs no new one: see [`ManagerOptions::classifier`].
pub trait Analysis: Send + Sync {
    /// Analyses `job`, handing each session to `ctx` as it completes and asking `ctx`
    /// after each frame whether to go on. An `Err` is the message a user sees.
    fn run(&self, job: &Job, ctx: &mut JobContext<'_>) -> Result<Document, String>;
}

/// The analysis of a capture file through `callflow-correlate`.
#[derive(Clone, Debug, Default)]
pub struct CaptureAnalysis {
    /// Analyzer settings.
    pub options: AnalyzerOptions,
    /// Makes each job's classifier.
    pub classifier: ClassifierFactory,
}

impl Analysis for CaptureAnalysis {
    fn run(&self, job: &Job, ctx: &mut JobContext<'_>) -> Result<Document, String> {
        let opened = match Meter::open_compressed(&job.input, ctx.deadline) {
            // Read through a meter: progress by compressed bytes, and the time bound
            // checked while decompressing too (a stream may inflate without a frame).
            Ok(Some((file, size, meter))) => {
                ctx.meter = Some(meter);
                CaptureReader::from_reader_with_size(Box::new(file), size)
            }
            Ok(None) => CaptureReader::open(&job.input),
            Err(e) => Err(CaptureError::Io(e)),
        };
        let mut reader = opened.map_err(|e| match e {
            // The reader's own messages ("not a capture file: bad magic ...") say what is
            // wrong; an I/O error needs the file's name to be actionable.
            CaptureError::Io(io) => format!("cannot open {}: {io}", job.label),
            other => other.to_string(),
        })?;
        ctx.set_total_bytes(reader.total_bytes());
        // An upload's key log is kept beside its capture. Each job has a key log of its
        // own even without one: a capture's Decryption Secrets Blocks are added to it, and
        // must neither decrypt another job's capture nor stay in memory after this job.
        let mut options = self.options.clone();
        // Session ids unique to the job: the same capture analysed twice (two uploads, or
        // two clusters) gives two sets, and `/sessions/{id}` names one session.
        options.session_id_scope = Some(job.id.uuid().as_u128());
        let key_log = crate::direct::job_key_log_path(&job.input);
        options.tls_keys = if key_log.is_file() {
            crate::direct::read_tls_key_log(&key_log).map_err(|e| {
                let cause = std::error::Error::source(&e).map(|c| format!(": {c}")).unwrap_or_default();
                format!("{e}{cause}")
            })?
        } else {
            SharedKeyLog::default()
        };
        let classifier = self.classifier.make().map_err(|e| format!("cannot start the classifier: {e}"))?;
        // The sink and the control both need the context; sessions wait here for the
        // control call that follows their frame.
        let pending = RefCell::new(Vec::new());
        let mut sink = |s: Session| pending.borrow_mut().push(s);
        let mut control = |frames: u64, bytes: u64| {
            for s in pending.borrow_mut().drain(..) {
                ctx.on_session(s);
            }
            ctx.on_frame(frames, bytes)
        };
        let doc = analyze_with_classifier(&mut reader, &job.label, options, classifier, Some(&mut sink), &mut control)
            .map_err(|e| e.to_string())?;
        for s in pending.into_inner() {
            ctx.on_session(s);
        }
        Ok(doc)
    }
}

pub(crate) const RUN: u8 = 0;
pub(crate) const CANCEL: u8 = 1;
const SHUTDOWN: u8 = 2;
/// The store gives the job to another node now (see `crate::cluster`): the run stops and
/// records nothing.
pub(crate) const SUPERSEDED: u8 = 3;

/// Sessions are written to the store in batches of this many (or at each progress event).
const SESSION_BATCH: usize = 256;

/// The first pause before [`JobStore::finish`] is tried again; each further one doubles.
const FINISH_FIRST_PAUSE: Duration = Duration::from_millis(50);
/// How long a worker keeps trying to record a job's end.
const FINISH_RETRY_FOR: Duration = Duration::from_secs(10);
/// Pauses are slept in slices of this, so that a shutdown does not wait for a long one.
const PAUSE_SLICE: Duration = Duration::from_millis(50);
/// How often the recorder tries again to record the ends the workers could not.
const RECORD_AGAIN_EVERY: Duration = Duration::from_secs(1);

/// What a running analysis reports to, and is stopped through.
pub struct JobContext<'a> {
    shared: &'a Shared,
    job: JobId,
    stop: &'a AtomicU8,
    total_bytes: Option<u64>,
    progress: Progress,
    last_emit: (u64, Instant),
    batch: Vec<Arc<Session>>,
    store_error: Option<StoreError>,
    /// When the run has taken `max_job_time`.
    deadline: Instant,
    /// The compressed capture's meter, when it is one.
    meter: Option<Arc<Meter>>,
    /// The bound the run went past, as the job's error.
    limit: Option<String>,
    /// A live job: the run ends by its source ending (see `crate::live`), not by the
    /// control, has no time bound, and stores each session before publishing it.
    live: bool,
}

impl std::fmt::Debug for JobContext<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JobContext").field("job", &self.job).field("progress", &self.progress).finish_non_exhaustive()
    }
}

impl JobContext<'_> {
    /// The capture's size, for progress in percent; `None` for streams.
    pub fn set_total_bytes(&mut self, total: Option<u64>) {
        self.total_bytes = total;
    }

    /// True once the job should stop (cancelled, or the manager is shutting down).
    pub fn should_stop(&self) -> bool {
        self.stop.load(Ordering::Relaxed) != RUN || self.store_error.is_some() || self.limit.is_some()
    }

    /// A session completed: stored (in batches) and published.
    pub fn on_session(&mut self, session: Session) {
        if self.live {
            return self.on_sessions(vec![session]);
        }
        self.shared.series.add(&session);
        let session = Arc::new(session);
        self.progress.sessions += 1;
        self.batch.push(session.clone());
        if self.batch.len() >= SESSION_BATCH {
            self.flush();
        }
        self.shared.bus.publish(Event::Session { job: self.job, session });
    }

    /// Sessions completed together (at one frame): stored in one step, then published, so
    /// that a subscriber told of one can read it.
    fn on_sessions(&mut self, sessions: Vec<Session>) {
        if sessions.is_empty() {
            return;
        }
        for session in &sessions {
            self.shared.series.add(session);
        }
        let sessions: Vec<Arc<Session>> = sessions.into_iter().map(Arc::new).collect();
        self.progress.sessions += sessions.len() as u64;
        self.batch.extend(sessions.iter().cloned());
        self.flush();
        if self.store_error.is_none() {
            for session in sessions {
                self.shared.bus.publish(Event::Session { job: self.job, session });
            }
        }
    }

    /// Frame `frames` was analysed and `bytes` of the capture consumed: publishes
    /// progress when due, and says whether to go on.
    pub fn on_frame(&mut self, frames: u64, bytes: u64) -> ControlFlow<()> {
        if self.live {
            return self.on_live_frame(frames, bytes);
        }
        if self.should_stop() {
            return ControlFlow::Break(());
        }
        self.progress.packets = frames;
        self.progress.bytes = bytes;
        let max_inflated = self.shared.opts.max_inflated_bytes;
        if self.meter.is_some() && bytes > max_inflated {
            self.limit = Some(format!(
                "the capture inflates to more than limits.max_inflated_bytes ({max_inflated} bytes) once \
                 decompressed; raise the limit if the capture is genuine"
            ));
            return ControlFlow::Break(());
        }
        // The clock is read once per `progress_every_packets` frames, not per frame.
        if frames - self.last_emit.0 >= self.shared.opts.progress_every_packets {
            let now = Instant::now();
            if now >= self.deadline {
                self.limit = Some(time_limit_message(self.shared.opts.max_job_time));
                return ControlFlow::Break(());
            }
            if now.duration_since(self.last_emit.1) >= self.shared.opts.progress_interval {
                self.last_emit = (frames, now);
                self.emit_progress();
            }
        }
        ControlFlow::Continue(())
    }

    /// A live job's frame (or tick): progress by time alone, and a stop only when the store
    /// fails (a cancel ends the source instead, so that the open calls are handed out).
    fn on_live_frame(&mut self, frames: u64, bytes: u64) -> ControlFlow<()> {
        if self.store_error.is_some() {
            return ControlFlow::Break(());
        }
        self.progress.packets = frames;
        self.progress.bytes = bytes;
        let now = Instant::now();
        if now.duration_since(self.last_emit.1) >= self.shared.opts.progress_interval {
            self.last_emit = (frames, now);
            self.emit_progress();
        }
        ControlFlow::Continue(())
    }

    fn emit_progress(&mut self) {
        if let Some(total) = self.total_bytes.filter(|t| *t > 0) {
            // A compressed capture by the compressed bytes read (its decompressed size is
            // not known before the end). 100 is kept for completion. Never backwards.
            let read = self.meter.as_ref().map_or(self.progress.bytes, |m| m.compressed.load(Ordering::Relaxed));
            let percent = (read.saturating_mul(100) / total).min(99) as u8;
            self.progress.percent = self.progress.percent.max(percent);
        }
        self.flush();
        match self.shared.store.record_progress(self.job, &self.progress) {
            Ok(()) => self.shared.board.progress(self.job, &self.progress),
            Err(e) => {
                self.store_error.get_or_insert(e);
            }
        }
        self.shared.bus.publish(Event::Progress { job: self.job, progress: self.progress });
    }

    fn flush(&mut self) {
        if self.batch.is_empty() || self.store_error.is_some() {
            return;
        }
        if let Err(e) = self.shared.store.add_sessions(self.job, &self.batch) {
            self.store_error = Some(e);
        }
        self.batch.clear();
    }
}

impl AnalyzeControl for JobContext<'_> {
    fn on_frame(&mut self, frames: u64, bytes_consumed: u64) -> ControlFlow<()> {
        JobContext::on_frame(self, frames, bytes_consumed)
    }
}

pub(crate) struct Shared {
    store: Arc<dyn JobStore>,
    pub(crate) bus: EventBus,
    /// Every job's status as the store has it, for [`JobManager::status`].
    pub(crate) board: Board,
    pub(crate) opts: ManagerOptions,
    analysis: Arc<dyn Analysis>,
    /// The operator statistics of every job's sessions, as Prometheus series.
    series: Arc<KpiSeries>,
    /// The wake-up side of the queue; `None` once shutting down.
    tx: Mutex<Option<Sender<()>>>,
    /// Stop flags of the jobs this process is running. Claiming and cancelling both hold
    /// this lock, so a cancel can never fall between "claimed" and "flag registered".
    pub(crate) running: Mutex<HashMap<JobId, Arc<AtomicU8>>>,
    /// Ends of runs that the store would not take within the worker's retries (a full
    /// disk): the jobs are RUNNING in the store with no worker. The recorder thread tries
    /// again until the store takes them; a cancel records one at once. Lost with the
    /// process: the next start re-runs those jobs (or fails them as interrupted).
    pub(crate) unrecorded: Mutex<HashMap<JobId, Outcome>>,
    shutting_down: AtomicBool,
    /// The threads of the live jobs started (those finished are joined at the next start).
    live_threads: Mutex<Vec<JoinHandle<()>>>,
}

impl Shared {
    pub(crate) fn store(&self) -> &dyn JobStore {
        &*self.store
    }

    /// Sends a token for each worker with nothing to do and no token waiting (jobs
    /// queued on another node sent none here).
    pub(crate) fn wake_idle_workers(&self) {
        // One lock at a time: `start_live` takes the live threads' lock, then `running`.
        let live = self.live_running();
        let running = lock(&self.running).len();
        let busy = running.saturating_sub(live);
        let tx = lock(&self.tx);
        if let Some(tx) = tx.as_ref() {
            let idle = self.opts.workers.max(1).saturating_sub(busy + tx.len());
            for _ in 0..idle {
                if tx.try_send(()).is_err() {
                    break;
                }
            }
        }
    }

    /// Live jobs running here (they hold no worker).
    fn live_running(&self) -> usize {
        lock(&self.live_threads).iter().filter(|h| !h.is_finished()).count()
    }
}

pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // Every critical section here leaves its data consistent, even if a panic cut it short.
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// Runs analysis jobs on a pool of worker threads; see the crate documentation.
pub struct JobManager {
    shared: Arc<Shared>,
    threads: Vec<JoinHandle<()>>,
    /// Dropped to stop the recorder and the sweeper.
    threads_stop: Option<Sender<()>>,
}

impl std::fmt::Debug for JobManager {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JobManager").field("opts", &self.shared.opts).finish_non_exhaustive()
    }
}

impl JobManager {
    /// Recovers the store's jobs after a restart (see [`JobStore::recover`]), then starts
    /// the workers (and the sweeper) with the real capture analysis.
    pub fn start(store: Arc<dyn JobStore>, opts: ManagerOptions) -> Result<(JobManager, Recovery), JobError> {
        let analysis =
            Arc::new(CaptureAnalysis { options: opts.analyzer.clone(), classifier: opts.classifier.clone() });
        JobManager::start_with(store, opts, analysis)
    }

    /// [`JobManager::start`] with another [`Analysis`].
    pub fn start_with(
        store: Arc<dyn JobStore>,
        opts: ManagerOptions,
        analysis: Arc<dyn Analysis>,
    ) -> Result<(JobManager, Recovery), JobError> {
        crate::cluster::check_name_free(&*store, &opts.node)?;
        // Registered first: on a shared store, recovery takes this node's jobs only.
        let started_at = now_millis();
        store.register_node(&crate::cluster::node_info(&opts.node, opts.workers.max(1), started_at), started_at)?;
        let recovery = store.recover(opts.resume_interrupted, opts.max_attempts, now_millis())?;
        let (tx, rx) = crossbeam_channel::bounded(opts.queue_capacity.max(recovery.queued.len()).max(1));
        for _ in &recovery.queued {
            tx.send(()).expect("the channel has room for every recovered job");
        }
        let shared = Arc::new(Shared {
            store,
            bus: EventBus::new(opts.event_buffer),
            board: Board::default(),
            series: Arc::new(KpiSeries::new(opts.analyzer.kpis.clone(), opts.top_peers)),
            opts: opts.clone(),
            analysis,
            tx: Mutex::new(Some(tx)),
            running: Mutex::default(),
            unrecorded: Mutex::default(),
            shutting_down: AtomicBool::new(false),
            live_threads: Mutex::default(),
        });
        let mut threads = Vec::new();
        for i in 0..opts.workers.max(1) {
            let (shared, rx) = (shared.clone(), rx.clone());
            let handle = std::thread::Builder::new()
                .name(format!("callflow-worker-{i}"))
                .spawn(move || worker(&shared, &rx))
                .expect("spawn worker thread");
            threads.push(handle);
        }
        // The recorder and the sweeper stop when this is dropped.
        let (stop_tx, stop_rx) = crossbeam_channel::bounded::<()>(0);
        {
            let (shared, stop_rx) = (shared.clone(), stop_rx.clone());
            let handle = std::thread::Builder::new()
                .name("callflow-recorder".into())
                .spawn(move || {
                    while let Err(RecvTimeoutError::Timeout) = stop_rx.recv_timeout(RECORD_AGAIN_EVERY) {
                        record_unrecorded(&shared);
                    }
                })
                .expect("spawn recorder thread");
            threads.push(handle);
        }
        {
            let (shared, stop_rx) = (shared.clone(), stop_rx.clone());
            let tick = opts.node.tick(shared.store.is_shared());
            let handle = std::thread::Builder::new()
                .name("callflow-heartbeat".into())
                .spawn(move || {
                    let mut heartbeat = crate::cluster::Heartbeat::new();
                    while let Err(RecvTimeoutError::Timeout) = stop_rx.recv_timeout(tick) {
                        heartbeat.tick(&shared);
                    }
                })
                .expect("spawn heartbeat thread");
            threads.push(handle);
        }
        if let Some(interval) = opts.sweep_interval {
            let shared = shared.clone();
            let handle = std::thread::Builder::new()
                .name("callflow-sweeper".into())
                .spawn(move || {
                    while let Err(RecvTimeoutError::Timeout) = stop_rx.recv_timeout(interval) {
                        // A failed sweep is retried at the next interval.
                        let _ = sweep(&shared, now_millis());
                    }
                })
                .expect("spawn sweeper thread");
            threads.push(handle);
        }
        Ok((JobManager { shared, threads, threads_stop: Some(stop_tx) }, recovery))
    }

    /// Queues a job. Refused with [`JobError::QueueFull`] when the queue is at its bound.
    pub fn submit(&self, new: NewJob) -> Result<Job, JobError> {
        // Under the lock, only workers touch the channel, and they only make room: the
        // length checked here is an upper bound until the token is sent.
        let tx_guard = lock(&self.shared.tx);
        let tx = room(&self.shared, &tx_guard)?;
        let job = self.shared.store.create_job(&new, now_millis())?;
        self.shared.board.set(&job);
        // Published before the token is sent, so QUEUED always precedes RUNNING.
        self.shared.bus.publish(Event::State(Arc::new(job.clone())));
        tx.try_send(()).expect("room was checked under the lock");
        Ok(job)
    }

    /// Starts a live job on `live.feed`: stored RUNNING and run at once on a thread of its
    /// own (see [`crate::live`]); it runs until cancelled, deleted, its duration is over or
    /// its source ends. Refused with [`JobError::TooManyLive`] when `max_jobs` run already.
    pub fn start_live(&self, live: LiveJob) -> Result<Job, JobError> {
        let mut threads = lock(&self.shared.live_threads);
        if self.shared.shutting_down.load(Ordering::SeqCst) {
            return Err(JobError::ShutDown);
        }
        let (finished, running): (Vec<_>, Vec<_>) = threads.drain(..).partition(|h| h.is_finished());
        *threads = running;
        for handle in finished {
            let _ = handle.join();
        }
        let max = self.shared.opts.live.max_jobs;
        if threads.len() >= max {
            return Err(JobError::TooManyLive { max });
        }
        let id = self.shared.store.reserve_id()?;
        let new = NewJob {
            input: self.shared.opts.live.dir.join(id.to_string()),
            label: live.label.clone(),
            owns_input: true,
            id: Some(id),
        };
        let stop = Arc::new(AtomicU8::new(RUN));
        let job = {
            let mut running = lock(&self.shared.running);
            let job = self.shared.store.create_live(&new, &live.source, now_millis())?;
            self.shared.board.set(&job);
            running.insert(job.id, stop.clone());
            job
        };
        self.shared.bus.publish(Event::State(Arc::new(job.clone())));
        let (shared, started) = (self.shared.clone(), job.clone());
        let spawned = std::thread::Builder::new().name(format!("callflow-live-{id}")).spawn(move || {
            run_live(&shared, &started, &stop, live);
            lock(&shared.running).remove(&started.id);
        });
        match spawned {
            Ok(handle) => threads.push(handle),
            Err(e) => {
                // No thread, no run: the job ends at once, saying why.
                lock(&self.shared.running).remove(&id);
                let outcome = Outcome {
                    state: JobState::Failed,
                    progress: Progress::default(),
                    error: Some(format!("cannot start the live job's thread: {e}")),
                    source: None,
                    stats: None,
                    subscribers: None,
                };
                if let Some(job) = self.shared.store.finish(id, &outcome, now_millis())? {
                    self.shared.board.set(&job);
                    self.shared.bus.publish(Event::State(Arc::new(job.clone())));
                    return Ok(job);
                }
            }
        }
        Ok(job)
    }

    /// Whether [`submit`](JobManager::submit) would take a job now: `Err` with what it
    /// would answer ([`JobError::QueueFull`], [`JobError::ShutDown`]) when not. It touches
    /// no store, so a caller can refuse early what it would otherwise prepare for nothing
    /// (an upload's body); `submit` still decides, the queue being free to fill meanwhile.
    pub fn check_room(&self) -> Result<(), JobError> {
        room(&self.shared, &lock(&self.shared.tx)).map(|_| ())
    }

    /// Whether the store would keep a change written now (see [`JobStore::check_writable`]).
    pub fn check_writable(&self) -> Result<(), JobError> {
        Ok(self.shared.store.check_writable()?)
    }

    /// Reserves an id for a job [`submit`](JobManager::submit)ted later with
    /// [`NewJob::with_id`], so that what belongs to the job (an upload's file) can be named
    /// after it before the job exists; see [`JobStore::reserve_id`].
    pub fn reserve_id(&self) -> Result<JobId, JobError> {
        Ok(self.shared.store.reserve_id()?)
    }

    /// Cancels a queued job at once, or asks a running one to stop (it becomes CANCELLED
    /// within 100 ms). Returns the job as it is now.
    pub fn cancel(&self, id: JobId) -> Result<Job, JobError> {
        let running = lock(&self.shared.running);
        if let Some(job) = self.shared.store.cancel_queued(id, now_millis())? {
            self.shared.board.set(&job);
            self.shared.bus.publish(Event::State(Arc::new(job.clone())));
            return Ok(job);
        }
        if let Some(flag) = running.get(&id) {
            flag.store(CANCEL, Ordering::Relaxed);
        } else if let Some(job) = cancel_unrecorded(&self.shared, id)? {
            return Ok(job);
        } else if self.shared.store.is_shared() {
            // Running on another node, whose heartbeat reads the flag within a second.
            self.shared.store.request_cancel(id)?;
        }
        drop(running);
        let job = self.shared.store.job(id)?.ok_or(JobError::NotFound(id))?;
        if job.state.is_finished() {
            return Err(JobError::AlreadyFinished { id, state: job.state });
        }
        Ok(job)
    }

    /// Deletes a finished job, its sessions, and its capture if it owns it (an upload).
    pub fn delete(&self, id: JobId) -> Result<(), JobError> {
        let job = self.shared.store.job(id)?.ok_or(JobError::NotFound(id))?;
        if !job.state.is_finished() {
            return Err(JobError::NotFinished { id, state: job.state });
        }
        delete_job(&self.shared, &job)?;
        Ok(())
    }

    /// Deletes the finished jobs that completed more than the retention before `now`
    /// (milliseconds since the epoch); returns how many. The sweeper calls this.
    pub fn sweep(&self, now: i64) -> Result<usize, JobError> {
        sweep(&self.shared, now)
    }

    /// The job a client names (by UUID, or by the number of a job created before ids
    /// were UUIDs); `None` when there is no such job. From memory for the jobs the manager
    /// has on its status board or resolved before, else from the store. A job deleted on
    /// another node may still resolve here; every read of it then finds it gone.
    pub fn resolve(&self, by: JobRef) -> Result<Option<JobId>, JobError> {
        if let Some(id) = self.cached_resolve(by) {
            return Ok(Some(id));
        }
        let found = self.shared.store.resolve(by)?;
        if let Some(id) = found {
            self.shared.board.remember(id);
        }
        Ok(found)
    }

    /// [`JobManager::resolve`] from memory only: `None` means ask it (it will read the
    /// store). Never waits for the store, so an async caller may call it on its own thread.
    pub fn cached_resolve(&self, by: JobRef) -> Option<JobId> {
        match by {
            JobRef::Uuid(uuid) => self.shared.board.find(uuid),
            JobRef::Number(_) => None,
        }
    }

    /// One job.
    pub fn job(&self, id: JobId) -> Result<Job, JobError> {
        self.shared.store.job(id)?.ok_or(JobError::NotFound(id))
    }

    /// One job's status, from memory when the manager knows it (every job it changed
    /// since it started, and every job read here once), else from the store; the same
    /// answer either way. Blocks only in the second case.
    pub fn status(&self, id: JobId) -> Result<Arc<JobStatus>, JobError> {
        if let Some(status) = self.cached_status(id) {
            return Ok(status);
        }
        if self.shared.store.is_shared() {
            // Other nodes change this job: the store says what it is now.
            let job = self.shared.store.job(id)?.ok_or(JobError::NotFound(id))?;
            return Ok(Arc::new(JobStatus::from(&job)));
        }
        let writes = self.shared.board.writes();
        let job = self.shared.store.job(id)?.ok_or(JobError::NotFound(id))?;
        self.shared.board.fill(&job, writes);
        Ok(Arc::new(JobStatus::from(&job)))
    }

    /// One job's status if [`JobManager::status`] can answer from memory; `None` means
    /// ask it (it will read the store). Never waits for the store, so an async caller may
    /// call it on its own thread.
    pub fn cached_status(&self, id: JobId) -> Option<Arc<JobStatus>> {
        // On a shared store, memory is the truth only for the jobs this node runs.
        if self.shared.store.is_shared() && !lock(&self.shared.running).contains_key(&id) {
            return None;
        }
        self.shared.board.get(id)
    }

    /// This node's name in the store.
    pub fn node_name(&self) -> &str {
        &self.shared.opts.node.name
    }

    /// Every node of the store (this one included), alive when seen within the lease.
    pub fn nodes(&self) -> Result<Vec<NodeState>, JobError> {
        Ok(crate::cluster::nodes(&*self.shared.store, self.shared.opts.node.lease, now_millis())?)
    }

    /// Jobs, newest first.
    pub fn jobs(&self, query: &JobQuery) -> Result<Vec<Job>, JobError> {
        Ok(self.shared.store.jobs(query)?)
    }

    /// How many jobs are in each state, for every state of [`JobState::ALL`] in that order.
    pub fn job_counts(&self) -> Result<Vec<(JobState, u64)>, JobError> {
        let stored = self.shared.store.count_jobs()?;
        let count = |state| stored.iter().find(|(s, _)| *s == state).map_or(0, |(_, n)| *n);
        Ok(JobState::ALL.into_iter().map(|s| (s, count(s))).collect())
    }

    /// A page of a job's sessions.
    pub fn sessions(&self, id: JobId, query: &SessionQuery) -> Result<Vec<SessionRow>, JobError> {
        Ok(self.shared.store.sessions(id, query)?)
    }

    /// The store.
    pub fn store(&self) -> &Arc<dyn JobStore> {
        &self.shared.store
    }

    /// The operator statistics of the sessions of every job this manager ran (file or
    /// live), fed as each session completes: the `callflow_sip_*` series of /metrics.
    pub fn kpi_series(&self) -> &Arc<KpiSeries> {
        &self.shared.series
    }

    /// Follows every event from now on.
    pub fn subscribe(&self) -> Subscription {
        self.shared.bus.subscribe()
    }

    /// The event bus (to hand to a server that streams it).
    pub fn events(&self) -> &EventBus {
        &self.shared.bus
    }

    /// Waits until every job in `ids` is finished, or `timeout` passes; returns them.
    pub fn wait(&self, ids: &[JobId], timeout: Option<Duration>) -> Result<Vec<Job>, JobError> {
        let deadline = timeout.map(|t| Instant::now() + t);
        // Subscribed before looking, so no state change can slip between look and wait.
        let sub = self.subscribe();
        loop {
            let jobs = ids.iter().map(|&id| self.job(id)).collect::<Result<Vec<_>, _>>()?;
            if jobs.iter().all(|j| j.state.is_finished()) {
                return Ok(jobs);
            }
            let left = match deadline {
                Some(d) => d.checked_duration_since(Instant::now()).ok_or(JobError::Timeout)?,
                None => Duration::from_secs(1),
            };
            // Any event may be the one; the store is looked at again either way.
            while let Some(event) = sub.recv_timeout(left.min(Duration::from_secs(1))) {
                if matches!(event, Event::State(_) | Event::Deleted(_)) {
                    break;
                }
            }
        }
    }

    /// Drains this node (callflowd at SIGTERM): takes no more jobs, lets the running file
    /// jobs finish for up to `within`, then stops those still running and hands them back
    /// to the queue (the start not counted), where any node takes them. Returns the jobs
    /// handed back. Live jobs are left to [`JobManager::shutdown`] (their source is this
    /// node's). The heartbeat goes on meanwhile, so cancels are still heard.
    pub fn drain(&self, within: Duration) -> Vec<JobId> {
        self.shared.shutting_down.store(true, Ordering::SeqCst);
        lock(&self.shared.tx).take();
        let file_jobs = |shared: &Shared| -> Vec<(JobId, Arc<AtomicU8>)> {
            lock(&shared.running)
                .iter()
                .filter(|(id, _)| shared.board.get(**id).is_none_or(|s| s.live.is_none()))
                .map(|(id, flag)| (*id, flag.clone()))
                .collect()
        };
        let deadline = Instant::now() + within;
        while !file_jobs(&self.shared).is_empty() && Instant::now() < deadline {
            std::thread::sleep(PAUSE_SLICE);
        }
        let left = file_jobs(&self.shared);
        for (_, flag) in &left {
            flag.store(SHUTDOWN, Ordering::Relaxed);
        }
        // Handed back once their workers have let go, so no write of theirs comes after.
        let stopped_by = Instant::now() + Duration::from_secs(10);
        let ids: Vec<JobId> = left.iter().map(|(id, _)| *id).collect();
        while lock(&self.shared.running).keys().any(|id| ids.contains(id)) && Instant::now() < stopped_by {
            std::thread::sleep(PAUSE_SLICE);
        }
        let handed = self.shared.store.hand_back(&ids).unwrap_or_default();
        for id in &handed {
            if let Ok(Some(job)) = self.shared.store.job(*id) {
                self.shared.board.set(&job);
                self.shared.bus.publish(Event::State(Arc::new(job)));
            }
        }
        handed
    }

    /// Stops taking jobs, stops the running ones and waits for the threads. Jobs stopped
    /// this way stay RUNNING in the store and are recovered at the next start, like after
    /// a crash. Dropping the manager does the same.
    pub fn shutdown(mut self) {
        self.stop();
    }

    fn stop(&mut self) {
        self.shared.shutting_down.store(true, Ordering::SeqCst);
        lock(&self.shared.tx).take();
        for flag in lock(&self.shared.running).values() {
            flag.store(SHUTDOWN, Ordering::Relaxed);
        }
        self.threads_stop.take();
        for handle in self.threads.drain(..) {
            let _ = handle.join();
        }
        let live: Vec<JoinHandle<()>> = lock(&self.shared.live_threads).drain(..).collect();
        for handle in live {
            let _ = handle.join();
        }
    }
}

impl Drop for JobManager {
    fn drop(&mut self) {
        self.stop();
    }
}

/// The queue's sender if it has room for one more job: the rule of both
/// [`JobManager::submit`] and [`JobManager::check_room`].
fn room<'a>(shared: &Shared, tx: &'a Option<Sender<()>>) -> Result<&'a Sender<()>, JobError> {
    let tx = tx.as_ref().ok_or(JobError::ShutDown)?;
    let capacity = shared.opts.queue_capacity;
    if tx.len() >= capacity {
        return Err(JobError::QueueFull { capacity });
    }
    Ok(tx)
}

fn time_limit_message(limit: Duration) -> String {
    format!(
        "the analysis took longer than limits.max_job_time ({} s); raise the limit if the capture is genuine",
        limit.as_secs_f64()
    )
}

/// What the reader of a compressed capture counts, and when its job's time is up.
struct Meter {
    /// Compressed bytes read so far (a little ahead of the decompression, by a buffer).
    compressed: AtomicU64,
    deadline: Instant,
    /// The reader refused to read on, the deadline having passed.
    timed_out: AtomicBool,
}

/// A compressed capture file read through its [`Meter`].
struct Metered {
    file: std::fs::File,
    meter: Arc<Meter>,
}

impl Meter {
    /// The file at `path` with its size and meter if it is a gzip-compressed regular file,
    /// `None` if it is anything else (read as usual).
    fn open_compressed(
        path: &std::path::Path,
        deadline: Instant,
    ) -> std::io::Result<Option<(Metered, u64, Arc<Meter>)>> {
        use std::io::{Read, Seek};
        let mut file = std::fs::File::open(path)?;
        let meta = file.metadata()?;
        let mut magic = [0u8; 2];
        if !meta.is_file() || file.read_exact(&mut magic).is_err() || magic != [0x1f, 0x8b] {
            return Ok(None);
        }
        file.rewind()?;
        let meter = Arc::new(Meter { compressed: AtomicU64::new(0), deadline, timed_out: AtomicBool::new(false) });
        Ok(Some((Metered { file, meter: meter.clone() }, meta.len(), meter)))
    }
}

impl std::io::Read for Metered {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        if Instant::now() >= self.meter.deadline {
            self.meter.timed_out.store(true, Ordering::Relaxed);
            return Err(std::io::Error::other("the job's time limit passed"));
        }
        let n = self.file.read(buf)?;
        self.meter.compressed.fetch_add(n as u64, Ordering::Relaxed);
        Ok(n)
    }
}

/// Records the ends the workers could not (see `Shared::unrecorded`) that the store takes now.
fn record_unrecorded(shared: &Shared) {
    let mut unrecorded = lock(&shared.unrecorded);
    unrecorded.retain(|&id, outcome| match shared.store.finish(id, outcome, now_millis()) {
        Ok(job) => {
            // `None`: no longer RUNNING (an earlier attempt failed after its commit).
            if let Some(job) = job.or_else(|| shared.store.job(id).ok().flatten()) {
                shared.board.set(&job);
                shared.bus.publish(Event::State(Arc::new(job)));
            }
            false
        }
        Err(_) => true,
    });
}

/// Cancels a job whose run ended without the store taking its end: its end is recorded as
/// CANCELLED now, or the store's error returned (the end stays to be recorded, cancelled).
/// `None` when the job is not one of those.
fn cancel_unrecorded(shared: &Shared, id: JobId) -> Result<Option<Job>, JobError> {
    let mut unrecorded = lock(&shared.unrecorded);
    let Some(outcome) = unrecorded.get_mut(&id) else { return Ok(None) };
    *outcome = Outcome {
        state: JobState::Cancelled,
        error: None,
        source: None,
        stats: None,
        subscribers: None,
        ..outcome.clone()
    };
    let job = match shared.store.finish(id, outcome, now_millis())? {
        Some(job) => job,
        // No longer RUNNING: an earlier attempt failed after its commit.
        None => shared.store.job(id)?.ok_or(JobError::NotFound(id))?,
    };
    unrecorded.remove(&id);
    shared.board.set(&job);
    shared.bus.publish(Event::State(Arc::new(job.clone())));
    Ok(Some(job))
}

fn delete_job(shared: &Shared, job: &Job) -> Result<bool, StoreError> {
    if !shared.store.delete_finished(job.id)? {
        return Ok(false);
    }
    shared.board.remove(job.id);
    if job.owns_input {
        // Already gone is as good as deleted; anything else is left for an operator,
        // the job itself being gone. A live job's input is the directory of its files.
        let _ = if job.live.is_some() { std::fs::remove_dir_all(&job.input) } else { std::fs::remove_file(&job.input) };
        // An upload's TLS key log, kept beside its capture.
        let _ = std::fs::remove_file(crate::direct::job_key_log_path(&job.input));
    }
    shared.bus.publish(Event::Deleted(job.id));
    Ok(true)
}

fn sweep(shared: &Shared, now: i64) -> Result<usize, JobError> {
    // One node at a time (on one node, always this one). Only finished jobs are swept,
    // and a file goes only with the job the store deleted, so no running job's capture
    // is removed, whichever node sweeps.
    if !shared.store.lock_sweeper()? {
        return Ok(0);
    }
    let cutoff = now.saturating_sub(shared.opts.retention.as_millis() as i64);
    let mut deleted = 0;
    let result = (|| {
        for job in shared.store.finished_before(cutoff)? {
            deleted += usize::from(delete_job(shared, &job)?);
        }
        Ok::<_, JobError>(())
    })();
    let unlocked = shared.store.unlock_sweeper();
    result?;
    unlocked?;
    Ok(deleted)
}

fn worker(shared: &Shared, rx: &Receiver<()>) {
    while rx.recv().is_ok() {
        if shared.shutting_down.load(Ordering::SeqCst) {
            break;
        }
        let stop = Arc::new(AtomicU8::new(RUN));
        let job = {
            let mut running = lock(&shared.running);
            match shared.store.claim_next(now_millis()) {
                Ok(Some(job)) => {
                    shared.board.set(&job);
                    running.insert(job.id, stop.clone());
                    job
                }
                // The token's job was cancelled while queued.
                Ok(None) => continue,
                // The store is failing; the job stays QUEUED and is taken again at the
                // next token or restart.
                Err(_) => continue,
            }
        };
        shared.bus.publish(Event::State(Arc::new(job.clone())));
        run_job(shared, &job, &stop);
        lock(&shared.running).remove(&job.id);
    }
}

fn run_job(shared: &Shared, job: &Job, stop: &AtomicU8) {
    let mut ctx = JobContext {
        shared,
        job: job.id,
        stop,
        total_bytes: None,
        progress: Progress::default(),
        last_emit: (0, Instant::now()),
        batch: Vec::new(),
        store_error: None,
        deadline: Instant::now() + shared.opts.max_job_time,
        meter: None,
        limit: None,
        live: false,
    };
    // A panic in the analysis fails this job, not the worker.
    let result = catch_unwind(AssertUnwindSafe(|| shared.analysis.run(job, &mut ctx)));
    ctx.flush();
    if ctx.meter.as_ref().is_some_and(|m| m.timed_out.load(Ordering::Relaxed)) {
        ctx.limit.get_or_insert_with(|| time_limit_message(shared.opts.max_job_time));
    }
    let progress = ctx.progress;
    let mut outcome =
        Outcome { state: JobState::Failed, progress, error: None, source: None, stats: None, subscribers: None };
    match stop.load(Ordering::Relaxed) {
        // Left RUNNING: the next start re-runs it (or fails it as interrupted).
        SHUTDOWN => return,
        // Another node's now: whatever this run found is not this node's to record.
        SUPERSEDED => return,
        CANCEL => outcome.state = JobState::Cancelled,
        // The shared store went away under the run (a database restart, connections cut):
        // that is no fault of the job's, which is not failed for it. It stays RUNNING as
        // this node's, and the heartbeat hands it back once the store answers again
        // (`cluster::Heartbeat`): it runs again from the start, on any node, its start
        // not counted.
        _ if shared.store.is_shared() && ctx.store_error.as_ref().is_some_and(StoreError::is_unavailable) => {
            shared.board.remove(job.id);
            return;
        }
        _ => match (result, ctx.store_error.take()) {
            (_, Some(e)) => outcome.error = Some(format!("cannot store results: {e}")),
            // Past a bound, whatever the analysis made of the part it read.
            _ if ctx.limit.is_some() => outcome.error = ctx.limit.take(),
            (Ok(Ok(doc)), None) => {
                outcome.state = JobState::Completed;
                outcome.progress.percent = 100;
                outcome.progress.packets = doc.source.packets;
                outcome.progress.bytes = doc.source.bytes.max(progress.bytes);
                outcome.source = Some(doc.source);
                outcome.stats = Some(doc.stats);
                outcome.subscribers = Some(doc.subscribers);
            }
            (Ok(Err(message)), None) => outcome.error = Some(message),
            (Err(panic), None) => {
                outcome.error =
                    Some(format!("internal error while analysing {}: {}", job.label, panic_message(&*panic)));
            }
        },
    }
    if let (Some(source), Some(stats)) = (&outcome.source, &outcome.stats) {
        shared.bus.publish(Event::Stats {
            job: job.id,
            source: Arc::new(source.clone()),
            stats: Arc::new(stats.clone()),
        });
    }
    let finished = match finish_with_retries(shared, job.id, &outcome) {
        Ok(Some(job)) => Some(job),
        // No longer RUNNING: an attempt that failed after its commit recorded the end.
        // What the store now says is published, or subscribers would never hear of it.
        Ok(None) => match shared.store.job(job.id) {
            // Not finished: the job was taken over (this node was silent for a lease) and
            // is another node's now; this run's end is not to be recorded.
            Ok(Some(now)) if !now.state.is_finished() => {
                shared.board.remove(job.id);
                return;
            }
            other => other.ok().flatten(),
        },
        Err(_) => None,
    };
    match finished {
        Some(job) => {
            shared.board.set(&job);
            shared.bus.publish(Event::State(Arc::new(job)));
        }
        // The store's answer is not known here (it may have taken the change before
        // failing): status reads go to the store again, and the recorder tries again
        // until the store takes the end (a cancel records it at once).
        None => {
            lock(&shared.unrecorded).insert(job.id, outcome);
            shared.board.remove(job.id);
        }
    }
}

/// Records a job's end, trying again with growing pauses (50 ms, doubling) for up to
/// [`FINISH_RETRY_FOR`]: a busy or briefly failing database is the likely cause, and a job
/// whose end is not recorded stays RUNNING, with no worker, until the next start. A
/// shutdown stops the retries, the next start recovering the job anyway.
fn finish_with_retries(shared: &Shared, id: JobId, outcome: &Outcome) -> Result<Option<Job>, StoreError> {
    // Timed from the first failure: SQLite's own busy timeout (10 s) may already have been
    // spent inside that attempt, and a window timed from before it would leave no retry.
    let mut failed_at = None;
    let mut pause = FINISH_FIRST_PAUSE;
    loop {
        let error = match shared.store.finish(id, outcome, now_millis()) {
            Ok(job) => return Ok(job),
            Err(e) => e,
        };
        let left = FINISH_RETRY_FOR.saturating_sub(failed_at.get_or_insert_with(Instant::now).elapsed());
        if left.is_zero() || !pause_unless_shutting_down(shared, pause.min(left)) {
            return Err(error);
        }
        pause *= 2;
    }
}

/// Sleeps for `pause` unless the manager starts shutting down; false if it did.
fn pause_unless_shutting_down(shared: &Shared, pause: Duration) -> bool {
    let until = Instant::now() + pause;
    loop {
        if shared.shutting_down.load(Ordering::SeqCst) {
            return false;
        }
        let left = until.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return true;
        }
        std::thread::sleep(left.min(PAUSE_SLICE));
    }
}

/// Runs a live job to its end on the calling thread (see [`crate::live`]).
fn run_live(shared: &Shared, job: &Job, stop: &AtomicU8, live: LiveJob) {
    let started = Instant::now();
    let mut ctx = JobContext {
        shared,
        job: job.id,
        stop,
        total_bytes: None,
        progress: Progress::default(),
        last_emit: (0, started),
        batch: Vec::new(),
        store_error: None,
        deadline: started,
        meter: None,
        limit: None,
        live: true,
    };
    let sessions = Arc::new(AtomicU64::new(0));
    let annotate = live.feed.annotator();
    let annotated = |mut done: Vec<Session>| {
        if let Some(annotate) = &annotate {
            done.iter_mut().for_each(annotate);
        }
        done
    };
    let mut source = LiveRun {
        retain: LiveRun::retainer(shared, job.id, &job.input),
        feed: live.feed,
        shared,
        job: job.id,
        stop,
        until: live.duration.and_then(|d| started.checked_add(d)),
        failed: None,
        sessions: sessions.clone(),
        started,
        next_stats: started,
        ended: false,
        keylog: shared.opts.live.tls_keylog.as_ref().map(KeyLogTail::new),
        keys: SharedKeyLog::default(),
        next_keylog: started,
        keylog_failing: false,
    };
    let pending = RefCell::new(Vec::new());
    let result = catch_unwind(AssertUnwindSafe(|| {
        let classifier = shared.opts.classifier.make().map_err(|e| format!("cannot start the classifier: {e}"))?;
        let mut sink = |s: Session| pending.borrow_mut().push(s);
        let mut control = |frames: u64, bytes: u64| {
            let done: Vec<Session> = pending.borrow_mut().drain(..).collect();
            ctx.on_sessions(annotated(done));
            sessions.store(ctx.progress.sessions, Ordering::Relaxed);
            ctx.on_frame(frames, bytes)
        };
        // An endless input: idle flows are forgotten (counted), so the flow table holds
        // the flows in progress.
        // A key log of its own, which `[tls] keylog`'s secrets are added to as they come.
        let options = AnalyzerOptions {
            forget_idle_flows: true,
            tls_keys: SharedKeyLog::default(),
            session_id_scope: Some(job.id.uuid().as_u128()),
            ..shared.opts.analyzer.clone()
        };
        analyze_with_classifier(&mut source, &job.label, options, classifier, Some(&mut sink), &mut control)
            .map_err(|e| format!("the live source failed: {e}"))
    }));
    // The files are closed before the job is said to have ended.
    drop(source);
    ctx.on_sessions(annotated(pending.into_inner()));
    ctx.flush();
    if matches!(stop.load(Ordering::Relaxed), SHUTDOWN | SUPERSEDED) {
        // Left RUNNING: the next start ends it as interrupted, keeping its sessions.
        return;
    }
    let progress = ctx.progress;
    let mut outcome =
        Outcome { state: JobState::Failed, progress, error: None, source: None, stats: None, subscribers: None };
    match (result, ctx.store_error.take()) {
        (_, Some(e)) => outcome.error = Some(format!("cannot store results: {e}")),
        (Ok(Ok(doc)), None) => {
            let (state, error) = live_end(&doc);
            outcome.state = state;
            outcome.error = error;
            outcome.progress.packets = doc.source.packets;
            outcome.progress.bytes = doc.source.bytes.max(progress.bytes);
            outcome.progress.percent = 100;
            shared.bus.publish(Event::Stats {
                job: job.id,
                source: Arc::new(doc.source.clone()),
                stats: Arc::new(doc.stats.clone()),
            });
            outcome.source = Some(doc.source);
            outcome.stats = Some(doc.stats);
            outcome.subscribers = Some(doc.subscribers);
        }
        (Ok(Err(message)), None) => outcome.error = Some(message),
        (Err(panic), None) => {
            outcome.error = Some(format!("internal error in live job {}: {}", job.label, panic_message(&*panic)));
        }
    }
    match finish_with_retries(shared, job.id, &outcome) {
        Ok(Some(job)) => {
            shared.board.set(&job);
            shared.bus.publish(Event::State(Arc::new(job)));
        }
        Ok(None) => {
            if let Some(job) = shared.store.job(job.id).ok().flatten().filter(|j| j.state.is_finished()) {
                shared.board.set(&job);
                shared.bus.publish(Event::State(Arc::new(job)));
            }
        }
        Err(_) => {
            lock(&shared.unrecorded).insert(job.id, outcome);
            shared.board.remove(job.id);
        }
    }
}

/// What a caught panic said (`panic!` with a literal or a formatted message), for the job's error.
fn panic_message(panic: &(dyn std::any::Any + Send)) -> String {
    panic
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "unknown panic".into())
}
