//! `callflow-cli`: analyse a packet capture into call flows, as JSON or NDJSON.
//!
//! The binary is glue, as in ripgrep: it parses flags and hands the capture to
//! `callflow_jobs::analyze_to_output` (shared with `callflowd --input`), which runs
//! `callflow-correlate` and writes the `callflow/v1` document. Errors are printed as one line (`{:#}` of the chain) with a non-zero exit
//! status; a closed output pipe (`callflow-cli analyze x.pcap | head`) ends quietly.
//! `analyze` shows a progress line on standard error when it is a terminal and the file
//! is large (`progress`). `ladder`, `export-pcap` and `calls` (module `views`) draw, cut out or list the calls
//! with `callflow-render`.

mod classify;
mod jobs;
mod live;
mod progress;
mod stats;
mod subscribers;
mod views;

use anyhow::{bail, Context, Result};
use callflow_decode::diameter::Dictionary;
use callflow_jobs::{analyze_to_output_with, read_tls_key_log, DirectAnalysis, ResultFormat};
use clap::{Args, Parser, Subcommand, ValueEnum};
use std::io;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

/// Turn packet captures of VoIP traffic into call flows.
#[derive(Parser, Debug)]
#[command(name = "callflow-cli", version, about, args_conflicts_with_subcommands = true)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    /// The seed tool's spelling: `callflow-cli --input X --output Y` is `analyze X -o Y`.
    #[command(flatten)]
    legacy: LegacyArgs,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Analyse a capture (pcap, pcapng, optionally gzip-compressed) into call flows.
    Analyze(AnalyzeArgs),
    /// Which protocols a capture carries: packets, bytes and flows per protocol (nDPI when
    /// built in with the `ndpi` feature, else the heuristic classifier).
    Classify(classify::ClassifyArgs),
    /// The subscriber view: each subscriber's identities and UE addresses, then its SIP,
    /// Diameter, GTP and media sessions with the key that joined each.
    Subscribers(subscribers::SubscribersArgs),
    /// Batch analysis through the job manager, persisted in a results directory.
    #[command(subcommand)]
    Jobs(jobs::JobsCommand),
    /// Draw a call's ladder (sequence) diagram: text, Mermaid, PlantUML, SVG or HTML.
    Ladder(views::LadderArgs),
    /// Cut a call's packets (SIP, RTP/RTCP, DTMF; with --group its legs too) into a pcap file.
    ExportPcap(views::ExportArgs),
    /// The calls of a capture as a table: time, from, to, state, duration, setup, MOS, problems.
    Calls(views::CallsArgs),
    /// Operator statistics: ASR, NER, ACD, post-dial delay, RFC 6076's ratios and delays,
    /// response codes; for the whole capture or per peer, domain and minute (docs/kpis.md).
    Stats(stats::StatsArgs),
}

#[derive(Args, Debug)]
struct AnalyzeArgs {
    /// The capture file; `-` reads standard input. Live input: `ws://`, `wss://` or
    /// `packetflix:ws://` a remote capture stream, `hep://ADDR:PORT` HEP agents (or
    /// `--interface` instead).
    #[arg(required_unless_present = "interface")]
    input: Option<PathBuf>,
    #[command(flatten)]
    live: live::LiveArgs,
    #[command(flatten)]
    common: CommonArgs,
}

#[derive(Args, Debug)]
struct LegacyArgs {
    /// The capture file (same as `analyze INPUT`).
    #[arg(long)]
    input: Option<PathBuf>,
    #[command(flatten)]
    common: CommonArgs,
}

#[derive(Args, Debug)]
struct CommonArgs {
    /// Where to write the result; `-` or absent: standard output.
    #[arg(short = 'o', long = "output")]
    output: Option<PathBuf>,
    /// Output format: one JSON document, or one session per line as sessions complete
    /// [default: json for a file, ndjson for live input].
    #[arg(long, value_enum)]
    format: Option<Format>,
    /// Indent the JSON document.
    #[arg(long)]
    pretty: bool,
    /// Threads for the analysis [default: the number of cores]. 1 does everything in one
    /// thread; 2 or more read and decode frames on a second thread. The results are the
    /// same for any value.
    #[arg(long, value_name = "N")]
    workers: Option<usize>,
    /// Classify unexplained traffic with the heuristic classifier even when nDPI is built
    /// in (also `CALLFLOW_ENABLE_NDPI=false`).
    #[arg(long)]
    no_ndpi: bool,
    /// A Diameter dictionary file (TOML, the format of the built-in
    /// crates/callflow-decode/data/diameter-dictionary.toml) that extends or overrides the
    /// built-in one.
    #[arg(long, value_name = "FILE")]
    diameter_dictionary: Option<PathBuf>,
    /// A TLS key log (NSS format, as SSLKEYLOGFILE writes it) to decrypt SIP over TLS and
    /// secure WebSocket with; a pcapng capture's own Decryption Secrets Blocks are used
    /// without it.
    #[arg(long, value_name = "FILE")]
    tls_keylog: Option<PathBuf>,
}

impl CommonArgs {
    /// `--workers`, or the number of cores.
    fn threads(&self) -> Result<usize> {
        match self.workers {
            Some(0) => bail!("--workers must be at least 1"),
            Some(n) => Ok(n),
            None => Ok(std::thread::available_parallelism().map_or(1, |n| n.get())),
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum Format {
    /// One `callflow/v1` JSON document.
    Json,
    /// Newline-delimited JSON: one line per session, then a summary line.
    Ndjson,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) if is_broken_pipe(&err) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("callflow-cli: error: {err:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> Result<()> {
    let (input, common) = match cli.command {
        Some(Command::Analyze(args)) if live::is_live(args.input.as_deref(), &args.live) => {
            return live::run(args.input.as_deref(), &args.live, &args.common);
        }
        Some(Command::Analyze(args)) => (args.input.unwrap_or_default(), args.common),
        Some(Command::Jobs(command)) => return jobs::run(command),
        Some(Command::Classify(args)) => return classify::run(&args),
        Some(Command::Subscribers(args)) => return subscribers::run(&args),
        Some(Command::Ladder(args)) => return views::ladder(&args),
        Some(Command::ExportPcap(args)) => return views::export(&args),
        Some(Command::Calls(args)) => return views::calls(&args),
        Some(Command::Stats(args)) => return stats::run(&args),
        None => match cli.legacy.input {
            Some(input) => (input, cli.legacy.common),
            None => bail!("nothing to do: give a capture, e.g. `callflow-cli analyze capture.pcap` (see --help)"),
        },
    };
    let threads = common.threads()?;
    let format = match common.format.unwrap_or(Format::Json) {
        Format::Json => ResultFormat::Json,
        Format::Ndjson => ResultFormat::Ndjson,
    };
    let diameter_dictionary = match &common.diameter_dictionary {
        Some(path) => Some(Arc::new(Dictionary::with_file(path).context("bad --diameter-dictionary")?)),
        None => None,
    };
    let tls_keys = match &common.tls_keylog {
        Some(path) => read_tls_key_log(path)?,
        None => Default::default(),
    };
    let request = DirectAnalysis {
        input,
        output: common.output,
        format,
        pretty: common.pretty,
        threads,
        diameter_dictionary,
        tls_keys,
    };
    let label = request.input.display().to_string();
    let doc = analyze_to_output_with(&request, || classify::analysis_classifier(common.no_ndpi), progress::control)?;
    for warning in &doc.source.warnings {
        eprintln!("callflow-cli: warning: {label}: {warning}");
    }
    Ok(())
}

/// True when the error chain ends in a closed pipe (the reader of our output went away).
fn is_broken_pipe(err: &anyhow::Error) -> bool {
    err.chain().any(|e| e.downcast_ref::<io::Error>().is_some_and(|io| io.kind() == io::ErrorKind::BrokenPipe))
}
