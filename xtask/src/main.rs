//! Project automation, run as `cargo xtask <task>` (the alias is in `.cargo/config.toml`).
//!
//! The rust-analyzer pattern: a plain binary in the workspace instead of shell scripts,
//! one module per task, and few dependencies so that it builds fast on a fresh machine.
//!
//! Tasks:
//! - `bench-compare` ([`bench_compare`]): `callflow-cli analyze` next to tshark and `cat` on
//!   one large generated capture: wall time, packets/s, MB/s and peak RSS side by side.
//! - `gen-pcap` ([`gen_pcap`]): writes a classic pcap of synthetic SIP calls (UDP or TCP,
//!   optional 802.1Q tags, RTP both ways with loss and jitter, RTCP sender reports) and a
//!   `.truth.json` saying exactly what was put in, for tests and benchmarks at any size;
//!   `--volte N` writes VoLTE calls through a mobile core instead (GTPv2-C, SIP and RTP in
//!   GTP-U, Rx/Gx Diameter over SCTP or TCP).
//! - `ndpi` ([`ndpi`]): fetches the nDPI source pinned in `vendor/ndpi.lock` (through
//!   `apt-get source` or `--archive PATH`), verifies its SHA-256 and unpacks it into the
//!   git-ignored `vendor/nDPI-<version>/` that `callflow-ndpi-sys` builds (with nDPI's
//!   test captures, for the whole-suite comparison with ndpiReader).
//! - `example` ([`example`]): installs libpcap's link library when missing and possible (every
//!   binary links it, for live capture), then analyses the bundled example capture with
//!   `callflow-cli`: the README's first command on a fresh machine.
//! - `test` ([`test`](mod@test)): installs tshark, ndpiReader, libclang and libgcrypt when missing and possible,
//!   prepares nDPI as `ndpi` does, then runs `cargo test --workspace --all-targets` (with
//!   the `ndpi` features when nDPI is ready) and any extra arguments.

mod bench_compare;
mod example;
mod gen_pcap;
mod ndpi;
mod test;

use clap::{Parser, Subcommand};
use std::process::ExitCode;

#[derive(Parser)]
#[command(name = "cargo xtask", about = "Project automation for callflowd")]
struct Cli {
    #[command(subcommand)]
    task: Task,
}

#[derive(Subcommand)]
enum Task {
    /// Compare callflow-cli with tshark and cat on a large generated capture (prints a table).
    BenchCompare(bench_compare::Args),
    /// Write a pcap of synthetic SIP calls with RTP/RTCP, and its ground truth.
    GenPcap(gen_pcap::Args),
    /// Fetch, verify and unpack the pinned nDPI source into vendor/ (idempotent).
    Ndpi(ndpi::Args),
    /// Analyse the bundled example capture with callflow-cli, first installing libpcap's link library if missing (as root, via apt-get).
    Example {
        /// Extra arguments for `callflow-cli analyze` (e.g. `-o out.json`).
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
    /// Install tshark, ndpiReader and libclang if missing (as root, via apt-get), prepare nDPI, then run the whole test suite.
    Test {
        /// Extra arguments passed on to `cargo test` as written (e.g. `--test ground_truth -- --nocapture`).
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.task {
        Task::BenchCompare(args) => bench_compare::run(&args).map(|()| ExitCode::SUCCESS),
        Task::GenPcap(args) => gen_pcap::run(&args).map(|()| ExitCode::SUCCESS),
        Task::Ndpi(args) => ndpi::run(&args).map(|()| ExitCode::SUCCESS),
        Task::Example { args } => example::run(&args),
        // Clap drops a leading `--`, but `cargo xtask test -- --nocapture` must reach cargo as
        // written; the task is always the first argument, so the rest is taken verbatim.
        Task::Test { .. } => test::run(&std::env::args().skip(2).collect::<Vec<_>>()),
    };
    match result {
        Ok(code) => code,
        Err(err) => {
            eprintln!("error: {err:#}");
            ExitCode::FAILURE
        }
    }
}
