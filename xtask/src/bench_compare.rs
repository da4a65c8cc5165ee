//! `cargo xtask bench-compare`: `callflow-cli analyze` next to tshark and `cat` on one large generated capture.
//!
//! The capture is the one the speed issue describes (1,200 calls of about 60 s, PCMU both
//! ways, 0.5 % loss, 3 ms jitter, 10 % SIP over TCP, 10 % VLAN-tagged), generated once
//! with a fixed seed and kept under `target/bench/`. Each tool's wall time and peak RSS
//! come from `/usr/bin/time` (GNU time), which reads them from the kernel (getrusage);
//! without it only wall time is shown. Nothing here asserts on time: it prints a table.
//!
//! `callflow-cli` runs three ways, each `--runs` times: one thread, all cores, and all
//! cores with nDPI classifying (when built in); then tshark and ndpiReader once each when
//! installed. The page cache is warmed (the file read once) before every run, because a
//! machine that reclaims idle page cache would otherwise time the disk.

use anyhow::{bail, ensure, Context, Result};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Instant;

#[derive(clap::Args, Debug)]
pub struct Args {
    /// Calls in the generated capture.
    #[arg(long, default_value_t = 1200)]
    calls: u64,
    /// Mean call length in seconds.
    #[arg(long, default_value_t = 60.0)]
    duration: f64,
    /// Seconds over which the calls start [default: half a call]. With more calls over a
    /// longer window, the capture grows while the number of concurrent calls stays the same
    /// (e.g. `--calls 3600 --window 180`: about 5 GB with 1,200 calls at a time).
    #[arg(long)]
    window: Option<f64>,
    /// The capture to use, generated there when missing (by default `target/bench/calls-<N>x<D>s.pcap`).
    #[arg(long)]
    capture: Option<PathBuf>,
    /// How many times `callflow-cli analyze` runs.
    #[arg(long, default_value_t = 3)]
    runs: u32,
    /// Passed to `callflow-cli analyze --workers` in the runs on all cores [default: all].
    #[arg(long)]
    workers: Option<usize>,
    /// Leave tshark out even when it is installed (it takes about a minute per GB).
    #[arg(long)]
    no_tshark: bool,
    /// Leave ndpiReader out even when it is installed.
    #[arg(long)]
    no_ndpi_reader: bool,
    /// Measure this `callflow-cli` binary instead of building the workspace's: an earlier
    /// build kept aside, so that before and after are measured in the same hour.
    #[arg(long)]
    cli: Option<PathBuf>,
}

/// One measured run.
struct Measured {
    wall_s: f64,
    peak_rss_kb: Option<u64>,
}

pub fn run(args: &Args) -> Result<()> {
    ensure!(args.runs >= 1, "--runs must be at least 1");
    let root = workspace_root()?;
    let target = std::env::var_os("CARGO_TARGET_DIR").map(PathBuf::from).unwrap_or_else(|| root.join("target"));
    let capture = args.capture.clone().unwrap_or_else(|| target.join("bench").join(capture_name(args)));
    if !capture.exists() {
        generate(&capture, args)?;
    }
    let truth: serde_json::Value = serde_json::from_slice(
        &std::fs::read(capture.with_extension("truth.json"))
            .with_context(|| format!("reading the ground truth beside {}", capture.display()))?,
    )?;
    let packets = truth["packets"].as_u64().context("the ground truth has no packet count")?;
    let bytes = std::fs::metadata(&capture)?.len();

    let cli = match &args.cli {
        Some(cli) => {
            ensure!(cli.is_file(), "--cli {}: no such file", cli.display());
            cli.clone()
        }
        None => {
            println!("building callflow-cli (release)");
            let status =
                Command::new(cargo()).args(["build", "--release", "--quiet", "-p", "callflow-cli"]).status()?;
            ensure!(status.success(), "cargo build --release -p callflow-cli failed");
            target.join("release").join("callflow-cli")
        }
    };
    println!("measuring {}", cli.display());
    let out_dir = target.join("bench");
    std::fs::create_dir_all(&out_dir)?;

    let mut rows: Vec<(String, Measured)> = Vec::new();
    let warm = || Command::new("cat").arg(&capture).stdout(Stdio::null()).status();
    warm()?;
    let cat = measure(Command::new("cat").arg(&capture))?;
    rows.push(("cat > /dev/null".into(), cat));
    let all_cores = args.workers.map_or_else(|| "all cores".to_string(), |w| format!("--workers {w}"));
    let ways: [(String, Vec<String>); 3] = [
        ("--workers 1 --no-ndpi".into(), vec!["--workers".into(), "1".into(), "--no-ndpi".into()]),
        (format!("{all_cores}, --no-ndpi"), workers_args(args.workers, true)),
        (format!("{all_cores}, nDPI if built in"), workers_args(args.workers, false)),
    ];
    for (label, extra) in &ways {
        for run in 1..=args.runs {
            let mut cmd = Command::new(&cli);
            cmd.arg("analyze").arg(&capture).arg("-o").arg(out_dir.join("analyze.json")).args(extra);
            warm()?;
            rows.push((format!("callflow-cli {label} ({run})"), measure(&mut cmd)?));
        }
    }
    if !args.no_tshark && installed("tshark") {
        let mut cmd = Command::new("tshark");
        cmd.args(["-n", "-q", "-z", "rtp,streams", "-z", "sip,stat", "-r"]).arg(&capture);
        warm()?;
        rows.push(("tshark -q -z rtp,streams -z sip,stat".into(), measure(&mut cmd)?));
    }
    if !args.no_ndpi_reader && installed("ndpiReader") {
        let mut cmd = Command::new("ndpiReader");
        cmd.args(["-q", "-i"]).arg(&capture);
        warm()?;
        rows.push(("ndpiReader -q -i (classification only)".into(), measure(&mut cmd)?));
    }

    let cat_s = rows[0].1.wall_s.max(1e-3);
    println!("\n{} ({} packets, {:.0} MB)", capture.display(), packets, bytes as f64 / 1e6);
    println!("{:<46} {:>9} {:>13} {:>9} {:>13} {:>8}", "tool", "wall s", "packets/s", "MB/s", "peak RSS MB", "x cat");
    for (name, m) in &rows {
        let rss = m.peak_rss_kb.map_or_else(|| "-".to_string(), |kb| format!("{:.1}", kb as f64 / 1024.0));
        println!(
            "{:<46} {:>9.2} {:>13.0} {:>9.0} {:>13} {:>8.1}",
            name,
            m.wall_s,
            packets as f64 / m.wall_s,
            bytes as f64 / 1e6 / m.wall_s,
            rss,
            m.wall_s / cat_s
        );
    }
    Ok(())
}

/// `--workers` for the runs on all cores, and `--no-ndpi` when asked.
fn workers_args(workers: Option<usize>, no_ndpi: bool) -> Vec<String> {
    let mut out = Vec::new();
    if let Some(w) = workers {
        out.extend(["--workers".to_string(), w.to_string()]);
    }
    if no_ndpi {
        out.push("--no-ndpi".into());
    }
    out
}

/// Whether `tool` runs at all.
fn installed(tool: &str) -> bool {
    Command::new(tool).arg("--version").stdout(Stdio::null()).stderr(Stdio::null()).status().is_ok()
}

/// The file name of the generated capture, from what shapes it.
fn capture_name(args: &Args) -> String {
    match args.window {
        Some(w) => format!("calls-{}x{}s-w{w}.pcap", args.calls, args.duration),
        None => format!("calls-{}x{}s.pcap", args.calls, args.duration),
    }
}

/// Writes the benchmark capture with this very binary's `gen-pcap` task.
fn generate(capture: &Path, args: &Args) -> Result<()> {
    if let Some(dir) = capture.parent() {
        std::fs::create_dir_all(dir)?;
    }
    println!("generating {} (once; it is kept for later runs)", capture.display());
    let status = Command::new(std::env::current_exe()?)
        .arg("gen-pcap")
        .args(["--calls", &args.calls.to_string(), "--duration", &args.duration.to_string()])
        .args(["--loss", "0.005", "--jitter-ms", "3", "--tcp", "0.1", "--vlan", "0.1", "--seed", "1400"])
        .args(args.window.map(|w| format!("--window={w}")))
        .arg("--out")
        .arg(capture)
        .status()?;
    ensure!(status.success(), "gen-pcap failed");
    Ok(())
}

/// Runs `cmd` with its output discarded, under GNU time when it is there.
fn measure(cmd: &mut Command) -> Result<Measured> {
    let time = Path::new("/usr/bin/time");
    let report = std::env::temp_dir().join(format!("xtask-bench-time-{}", std::process::id()));
    let mut run = if time.exists() {
        let mut c = Command::new(time);
        c.arg("-f").arg("%e %M").arg("-o").arg(&report).arg(cmd.get_program()).args(cmd.get_args());
        c
    } else {
        let mut c = Command::new(cmd.get_program());
        c.args(cmd.get_args());
        c
    };
    let started = Instant::now();
    let status = run.stdout(Stdio::null()).stderr(Stdio::null()).status()?;
    let wall = started.elapsed().as_secs_f64();
    if !status.success() {
        bail!("{:?} failed: {status}", cmd.get_program());
    }
    let mut measured = Measured { wall_s: wall, peak_rss_kb: None };
    if let Ok(text) = std::fs::read_to_string(&report) {
        let _ = std::fs::remove_file(&report);
        if let Some((wall_s, rss_kb)) = parse_gnu_time(&text) {
            measured = Measured { wall_s, peak_rss_kb: Some(rss_kb) };
        }
    }
    Ok(measured)
}

/// Reads the `%e %M` line GNU time writes (it may be preceded by a "Command exited" line).
fn parse_gnu_time(text: &str) -> Option<(f64, u64)> {
    let line = text.lines().rev().find(|l| !l.trim().is_empty())?;
    let mut fields = line.split_whitespace();
    Some((fields.next()?.parse().ok()?, fields.next()?.parse().ok()?))
}

fn cargo() -> String {
    std::env::var("CARGO").unwrap_or_else(|_| "cargo".into())
}

/// The workspace root: the folder above xtask's manifest.
fn workspace_root() -> Result<PathBuf> {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().map(Path::to_path_buf).context("xtask has no parent folder")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_gnu_time_output() {
        assert_eq!(parse_gnu_time("1.05 12516\n"), Some((1.05, 12516)));
        assert_eq!(parse_gnu_time("Command exited with non-zero status 1\n0.01 2048\n"), Some((0.01, 2048)));
        assert_eq!(parse_gnu_time("garbage"), None);
        assert_eq!(parse_gnu_time(""), None);
    }
}
