//! `cargo xtask gen-pcap`: synthetic SIP calls with RTP/RTCP written as a classic pcap, plus a ground truth of what was put in.
//!
//! Each call is a lazy generator of its own frames in time order ([`call::Call`]). A call is
//! started when the merge reaches its start time and dropped when it is over, and a binary
//! heap keyed by each live call's next frame time merges them all. So memory follows the
//! number of calls in progress, not the size of the file: 6 million packets take the same
//! few megabytes as sixty.
//!
//! `--volte N` writes N VoLTE calls instead (see [`volte`]): attach, SIP inside GTP-U,
//! Rx/Gx over SCTP or TCP, the dedicated bearer, AMR RTP in the tunnel and detach, with
//! a truth of every key that joins them (IMSI, MSISDN, UE address, icid, Call-ID,
//! Diameter Session-Ids, TEIDs) and each call's outcome.
//!
//! The ground truth (`--truth`, by default `OUT` with the extension `.truth.json`) says for
//! every call its Call-ID, outcome, expected state, who hung up, its SIP message count and
//! when each was sent (`timeline_us`), its
//! transport and VLAN, and per RTP stream the packets written and the `expected`/`lost`
//! counts as tshark's `rtp,streams` computes them from the packets that were written.

mod call;
mod diameter;
mod gtpv2;
mod pcap;
mod rng;
mod sip;
mod tcp;
mod volte;

use anyhow::{ensure, Context, Result};
use call::{Call, CallPlan, Params};
use rng::Rng;
use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::time::Instant;

/// 2024-01-01T00:00:00Z: captures start here, so the same seed gives the same bytes.
const EPOCH_US: u64 = 1_704_067_200_000_000;

#[derive(clap::Args, Debug)]
pub struct Args {
    /// Number of calls.
    #[arg(long, default_value_t = 10)]
    calls: u64,
    /// Mean length of a completed call's media in seconds (each call varies by up to 20 %).
    #[arg(long, default_value_t = 30.0)]
    duration: f64,
    /// Seconds over which the calls start, evenly spread [default: half the mean length].
    /// About `calls * duration / window` calls are up at a time once the window is longer
    /// than a call: more calls over a longer window make a longer capture of the same load.
    #[arg(long)]
    window: Option<f64>,
    /// Probability that each RTP packet is dropped before the capture point.
    #[arg(long, default_value_t = 0.0)]
    loss: f64,
    /// Each RTP packet's send time is displaced by up to this many ms either way (never reordered).
    #[arg(long, default_value_t = 0.0)]
    jitter_ms: f64,
    /// Fraction of calls with SIP over TCP.
    #[arg(long, default_value_t = 0.0)]
    tcp: f64,
    /// Fraction of calls whose frames carry an 802.1Q tag.
    #[arg(long, default_value_t = 0.0)]
    vlan: f64,
    /// Fraction of calls answered 486 Busy Here.
    #[arg(long, default_value_t = 0.0)]
    busy: f64,
    /// Fraction of calls cancelled while ringing.
    #[arg(long, default_value_t = 0.0)]
    cancel: f64,
    /// Fraction of calls that ring and are then answered 480 Temporarily Unavailable (no answer).
    #[arg(long, default_value_t = 0.0)]
    no_answer: f64,
    /// Fraction of calls answered 503 Service Unavailable after the 100 Trying, without ringing.
    #[arg(long, default_value_t = 0.0)]
    failed: f64,
    /// Fraction of calls that go through a B2BUA: each is written as two legs, A -> B2BUA
    /// and B2BUA -> B, the second with a Call-ID of its own and its own addresses, a few ms
    /// later. The legs take turns at what ties them: a shared RFC 7989 Session-ID, a shared
    /// P-Charging-Vector icid-value, an X-CID header naming the A leg's Call-ID, the A leg's
    /// Call-ID with `_b2b-1` appended, or only the same caller and callee and close times.
    /// The truth gives each B leg's `leg_of` (the A leg's Call-ID) and `leg_rule`.
    #[arg(long, default_value_t = 0.0)]
    b2bua: f64,
    /// Who sends the BYE of a completed call.
    #[arg(long, value_enum, default_value_t = Hangup::Random)]
    hangup: Hangup,
    /// Seed of the generator: the same arguments and seed give the same file.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// The pcap file to write.
    #[arg(long)]
    out: PathBuf,
    /// The ground truth JSON [default: OUT with the extension .truth.json].
    #[arg(long)]
    truth: Option<PathBuf>,
    /// Write this many VoLTE calls (attach, SIP in GTP-U, Rx/Gx, dedicated bearer, AMR
    /// RTP, detach) instead of plain SIP calls; `--duration` (seconds of speech),
    /// `--window`, `--seed`, `--out` and `--truth` apply, the other call options do not.
    #[arg(long, value_name = "N")]
    volte: Option<u64>,
}

/// A generated call: its frames one at a time, in time order.
pub trait Emitter {
    /// When the next frame is due, or `None` when the call is over.
    fn next_time(&self) -> Option<u64>;
    /// Puts the next frame in `buf` and returns its time.
    fn emit(&mut self, buf: &mut Vec<u8>) -> Option<u64>;
}

#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum Hangup {
    Caller,
    Callee,
    Random,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Side {
    Caller,
    Callee,
}

impl Side {
    pub fn index(self) -> usize {
        match self {
            Side::Caller => 0,
            Side::Callee => 1,
        }
    }

    pub fn peer(self) -> Side {
        match self {
            Side::Caller => Side::Callee,
            Side::Callee => Side::Caller,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Side::Caller => "caller",
            Side::Callee => "callee",
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    Completed,
    Busy,
    Cancelled,
    NoAnswer,
    Failed,
}

impl Outcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Completed => "completed",
            Outcome::Busy => "busy",
            Outcome::Cancelled => "cancelled",
            Outcome::NoAnswer => "no_answer",
            Outcome::Failed => "failed",
        }
    }

    /// The call state the analysis must report (docs/output-format.md).
    pub fn expected_state(self) -> &'static str {
        match self {
            Outcome::Completed => "COMPLETED",
            Outcome::Busy => "REJECTED",
            Outcome::Cancelled => "CANCELLED",
            Outcome::NoAnswer | Outcome::Failed => "REJECTED",
        }
    }
}

pub fn run(args: &Args) -> Result<()> {
    let fraction = |name: &str, f: f64| {
        ensure!((0.0..=1.0).contains(&f), "--{name} must be between 0 and 1, not {f}");
        Ok(())
    };
    for (name, f) in [("loss", args.loss), ("tcp", args.tcp), ("vlan", args.vlan), ("b2bua", args.b2bua)] {
        fraction(name, f)?;
    }
    fraction("busy", args.busy)?;
    fraction("cancel", args.cancel)?;
    fraction("no-answer", args.no_answer)?;
    fraction("failed", args.failed)?;
    ensure!(
        args.busy + args.cancel + args.no_answer + args.failed <= 1.0,
        "--busy, --cancel, --no-answer and --failed add up to more than 1"
    );
    ensure!((1..=call::MAX_CALLS / 2).contains(&args.calls), "--calls must be between 1 and {}", call::MAX_CALLS / 2);
    ensure!(args.duration > 0.0 && args.duration <= 86_400.0, "--duration must be above 0 and at most a day");
    if let Some(w) = args.window {
        ensure!(w > 0.0 && w <= 864_000.0, "--window must be above 0 and at most ten days");
    }
    ensure!((0.0..=1_000.0).contains(&args.jitter_ms), "--jitter-ms must be between 0 and 1000");

    let started = Instant::now();
    if let Some(n) = args.volte {
        ensure!((1..=volte::MAX_CALLS).contains(&n), "--volte must be between 1 and {}", volte::MAX_CALLS);
    }
    let params = Params {
        seed: args.seed,
        mean_duration_s: args.duration,
        loss: args.loss,
        jitter_us: (args.jitter_ms * 1_000.0).round() as u64,
        hangup: args.hangup,
    };
    let plans = plan_calls(args);
    let truth_path = args.truth.clone().unwrap_or_else(|| args.out.with_extension("truth.json"));
    for path in [&args.out, &truth_path] {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        }
    }

    let file = File::create(&args.out).with_context(|| format!("creating {}", args.out.display()))?;
    let mut writer = pcap::PcapWriter::new(BufWriter::with_capacity(8 << 20, file))?;
    let mut truths = Vec::with_capacity(plans.len());
    let window_us = (args.window.unwrap_or(args.duration * 0.5) * 1e6).max(1e6) as u64;
    let merged = match args.volte {
        Some(n) => {
            let starts = volte::starts(args.seed, n, EPOCH_US, window_us);
            let media_s = args.duration;
            merge(
                &starts,
                |i| volte::VolteCall::new(args.seed, i as u64, starts[i], media_s),
                |t, frame| writer.write(t, frame),
                |i, call| truths.push((i as u64, call.truth())),
            )
        }
        None => {
            let starts: Vec<u64> = plans.iter().map(|p| p.start_us).collect();
            merge(
                &starts,
                |i| Call::new(&plans[i], &params),
                |t, frame| writer.write(t, frame),
                |_, call| truths.push((call.index(), call.truth())),
            )
        }
    };
    let (first, last) = merged.with_context(|| format!("writing {}", args.out.display()))?;
    let (packets, bytes) = (writer.packets(), writer.bytes());
    writer.into_inner().into_inner().map_err(|e| e.into_error()).context("flushing the capture")?;

    truths.sort_unstable_by_key(|(index, _)| *index);
    write_truth(&truth_path, packets, truths.iter().map(|(_, t)| t.as_str()))?;
    println!(
        "wrote {}: {packets} packets, {bytes} bytes, {} calls, {:.1} s of traffic, in {:.1} s (truth: {})",
        args.out.display(),
        truths.len(),
        last.saturating_sub(first) as f64 / 1e6,
        started.elapsed().as_secs_f64(),
        truth_path.display()
    );
    Ok(())
}

/// Decides each call's outcome, transport and tag with exact counts (so `--busy 0.25` of 4
/// calls is exactly one), shuffled, and staggers the start times over the first half of a
/// mean call length.
fn plan_calls(args: &Args) -> Vec<CallPlan> {
    let n = args.calls as usize;
    let mut rng = Rng::derive(args.seed, 0);
    let count = |f: f64| ((f * n as f64).round() as usize).min(n);
    let n_busy = count(args.busy);
    let n_cancel = count(args.cancel).min(n - n_busy);
    let n_no_answer = count(args.no_answer).min(n - n_busy - n_cancel);
    let n_failed = count(args.failed).min(n - n_busy - n_cancel - n_no_answer);
    let mut outcomes: Vec<Outcome> = (0..n)
        .map(|i| match i {
            _ if i < n_busy => Outcome::Busy,
            _ if i < n_busy + n_cancel => Outcome::Cancelled,
            _ if i < n_busy + n_cancel + n_no_answer => Outcome::NoAnswer,
            _ if i < n_busy + n_cancel + n_no_answer + n_failed => Outcome::Failed,
            _ => Outcome::Completed,
        })
        .collect();
    rng.shuffle(&mut outcomes);
    let mut picked = |f: f64| {
        let mut v: Vec<bool> = (0..n).map(|i| i < count(f)).collect();
        rng.shuffle(&mut v);
        v
    };
    let (tcp, vlan) = (picked(args.tcp), picked(args.vlan));
    let window_us = (args.window.unwrap_or(args.duration * 0.5) * 1e6).max(1e6);
    let mut previous = EPOCH_US;
    let mut plans: Vec<CallPlan> = (0..n)
        .map(|i| {
            let offset = ((i as f64 + rng.unit()) * window_us / n as f64) as u64;
            previous = previous.max(EPOCH_US + offset);
            CallPlan::new(i as u64, previous, outcomes[i], tcp[i], vlan[i])
        })
        .collect();
    // The B legs, from a generator of their own so that the other calls stay as they were.
    let mut legs_rng = Rng::derive(args.seed, 1 << 40);
    let mut b2bua: Vec<bool> = (0..n).map(|i| i < count(args.b2bua)).collect();
    legs_rng.shuffle(&mut b2bua);
    let mut b_legs = Vec::new();
    for (i, a) in plans.iter_mut().enumerate().filter(|(i, _)| b2bua[*i]) {
        let rule = LegRule::ALL[b_legs.len() % LegRule::ALL.len()];
        let index = (n + b_legs.len()) as u64;
        let a_call_id = format!("{}-{}@b2bua-a", legs_rng.hex(16), i);
        let b_call_id = match rule {
            LegRule::CallIdSuffix => format!("{a_call_id}_b2b-1"),
            _ => format!("{}-{index}@b2bua-b", legs_rng.hex(16)),
        };
        let shared = match rule {
            LegRule::SessionId => vec![format!("Session-ID: {}", legs_rng.hex(32))],
            LegRule::Icid => vec![format!("P-Charging-Vector: icid-value={};orig-ioi=a.example", legs_rng.hex(20))],
            _ => Vec::new(),
        };
        let mut b = CallPlan::new(index, a.start_us + legs_rng.range(5_000, 40_000), a.outcome, a.tcp, a.vlan);
        b.users = a.index;
        b.call_id = Some(b_call_id);
        b.headers = shared.clone();
        if rule == LegRule::XCid {
            b.headers.push(format!("X-CID: {a_call_id}"));
        }
        b.leg_of = Some((a_call_id.clone(), rule));
        a.call_id = Some(a_call_id);
        a.headers = shared;
        b_legs.push(b);
    }
    plans.extend(b_legs);
    // The merge wants plans in start order.
    plans.sort_by_key(|p| (p.start_us, p.index));
    plans
}

/// What ties a B leg to its A leg in a generated capture (`--b2bua`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LegRule {
    SessionId,
    Icid,
    XCid,
    CallIdSuffix,
    Parties,
}

impl LegRule {
    const ALL: [LegRule; 5] =
        [LegRule::SessionId, LegRule::Icid, LegRule::XCid, LegRule::CallIdSuffix, LegRule::Parties];

    /// How the analysis names the rule: the start of the `key` of its `related` links.
    pub fn as_str(self) -> &'static str {
        match self {
            LegRule::SessionId => "session-id",
            LegRule::Icid => "icid",
            LegRule::XCid => "header",
            LegRule::CallIdSuffix => "call-id-suffix",
            LegRule::Parties => "weak",
        }
    }
}

/// Runs every call and hands their frames to `write` in time order (ties by call number), and
/// each finished call to `done` with its number. Returns the times of the first and last frame.
///
/// `starts` are in order, and a call's first frame is at its start time, so a call need only
/// exist (`make` it) once the heap has nothing earlier than its start.
fn merge<C: Emitter>(
    starts: &[u64],
    mut make: impl FnMut(usize) -> C,
    mut write: impl FnMut(u64, &[u8]) -> std::io::Result<()>,
    mut done: impl FnMut(usize, &C),
) -> Result<(u64, u64)> {
    let mut live: Vec<Option<Box<C>>> = (0..starts.len()).map(|_| None).collect();
    let mut heap: BinaryHeap<Reverse<(u64, usize)>> = BinaryHeap::new();
    let mut next_plan = 0;
    let mut buf = Vec::with_capacity(2048);
    let (mut first, mut last) = (None, 0);
    loop {
        while let Some(start) = starts.get(next_plan) {
            if heap.peek().is_some_and(|Reverse((t, _))| t < start) {
                break;
            }
            let call = Box::new(make(next_plan));
            match call.next_time() {
                Some(t) => {
                    heap.push(Reverse((t, next_plan)));
                    live[next_plan] = Some(call);
                }
                None => done(next_plan, &call),
            }
            next_plan += 1;
        }
        let Some(Reverse((t, i))) = heap.pop() else { break };
        let call = live[i].as_mut().expect("a call in the heap is live");
        let emitted = call.emit(&mut buf);
        debug_assert_eq!(emitted, Some(t));
        write(t, &buf)?;
        first.get_or_insert(t);
        last = t;
        match call.next_time() {
            Some(next) => heap.push(Reverse((next, i))),
            None => {
                done(i, call);
                live[i] = None;
            }
        }
    }
    Ok((first.unwrap_or(0), last))
}

/// `{"packets": N, "calls": [...]}` with one call per line: readable in a diff, and written
/// from the calls' own JSON without building one big value.
fn write_truth<'a>(path: &Path, packets: u64, calls: impl Iterator<Item = &'a str>) -> Result<()> {
    let file = File::create(path).with_context(|| format!("creating {}", path.display()))?;
    let mut out = BufWriter::new(file);
    write!(out, "{{\n  \"packets\": {packets},\n  \"calls\": [")?;
    for (i, call) in calls.enumerate() {
        write!(out, "{}\n    {call}", if i == 0 { "" } else { "," })?;
    }
    writeln!(out, "\n  ]\n}}")?;
    out.flush().with_context(|| format!("writing {}", path.display()))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        args: Args,
    }

    fn args(line: &str) -> Args {
        Cli::parse_from(std::iter::once("gen-pcap").chain(line.split_whitespace())).args
    }

    #[test]
    fn plans_have_exact_counts_and_ordered_starts() {
        let plans = plan_calls(&args("--calls 8 --busy 0.25 --cancel 0.125 --tcp 0.5 --vlan 0.25 --out x.pcap"));
        let count = |o| plans.iter().filter(|p| p.outcome == o).count();
        assert_eq!((count(Outcome::Busy), count(Outcome::Cancelled), count(Outcome::Completed)), (2, 1, 5));
        assert_eq!(plans.iter().filter(|p| p.tcp).count(), 4);
        assert_eq!(plans.iter().filter(|p| p.vlan).count(), 2);
        assert!(plans.windows(2).all(|w| w[0].start_us <= w[1].start_us));
    }

    #[test]
    fn b2bua_calls_get_a_b_leg_each_with_the_rules_in_turn() {
        let plans = plan_calls(&args("--calls 10 --b2bua 0.5 --seed 6 --out x.pcap"));
        assert_eq!(plans.len(), 15);
        assert!(plans.windows(2).all(|w| w[0].start_us <= w[1].start_us), "in start order for the merge");
        let b_legs: Vec<&CallPlan> = plans.iter().filter(|p| p.leg_of.is_some()).collect();
        let rules: Vec<&str> = b_legs.iter().map(|b| b.leg_of.as_ref().unwrap().1.as_str()).collect();
        assert_eq!(rules, ["session-id", "icid", "header", "call-id-suffix", "weak"]);
        for b in b_legs {
            let (a_call_id, rule) = b.leg_of.clone().unwrap();
            let a = plans.iter().find(|p| p.call_id.as_deref() == Some(&a_call_id)).expect("the A leg");
            assert_eq!((b.users, a.users), (a.index, a.index), "the same caller and callee");
            assert!(b.start_us > a.start_us && b.start_us < a.start_us + 40_000);
            assert_ne!(b.index, a.index);
            let x_cid = b.headers.iter().any(|h| *h == format!("X-CID: {a_call_id}"));
            assert_eq!(x_cid, rule == LegRule::XCid);
            assert_eq!(b.call_id.as_deref() == Some(&format!("{a_call_id}_b2b-1")), rule == LegRule::CallIdSuffix);
        }
        // Without --b2bua, the plans are what they always were.
        let plain = plan_calls(&args("--calls 10 --seed 6 --out x.pcap"));
        assert!(plain.iter().all(|p| p.call_id.is_none() && p.leg_of.is_none()));
        let firsts: Vec<u64> = plans.iter().filter(|p| p.index < 10).map(|p| p.start_us).collect();
        assert_eq!(firsts, plain.iter().map(|p| p.start_us).collect::<Vec<_>>());
    }

    #[test]
    fn starts_spread_over_the_window() {
        let first = EPOCH_US;
        let default = plan_calls(&args("--calls 100 --duration 60 --out x.pcap"));
        assert!(default.iter().all(|p| p.start_us >= first && p.start_us < first + 30_000_000));
        let long = plan_calls(&args("--calls 100 --duration 60 --window 300 --out x.pcap"));
        assert!(long.iter().all(|p| p.start_us < first + 300_000_000));
        assert!(long.last().unwrap().start_us > first + 290_000_000, "the last call starts near the window's end");
        assert!(run(&args("--calls 1 --window 0 --out x.pcap")).is_err());
    }

    #[test]
    fn writes_capture_and_truth() {
        let dir = std::env::temp_dir().join(format!("xtask-gen-pcap-{}", std::process::id()));
        let out = dir.join("calls.pcap");
        let line = format!(
            "--calls 4 --duration 2 --loss 0.05 --jitter-ms 3 --tcp 0.5 --vlan 0.5 --busy 0.25 --cancel 0.25 --seed 7 --out {}",
            out.display()
        );
        run(&args(&line)).unwrap();
        let pcap = std::fs::read(&out).unwrap();
        let truth: serde_json::Value =
            serde_json::from_slice(&std::fs::read(dir.join("calls.truth.json")).unwrap()).unwrap();
        std::fs::remove_dir_all(&dir).unwrap();

        // Walk the records: timestamps never go back, and the count is the truth's.
        let (mut at, mut packets, mut previous) = (24, 0, 0);
        while at < pcap.len() {
            let word = |o: usize| u64::from(u32::from_le_bytes(pcap[at + o..at + o + 4].try_into().unwrap()));
            let t = word(0) * 1_000_000 + word(4);
            assert!(t >= previous, "record {packets} goes back in time");
            previous = t;
            at += 16 + word(8) as usize;
            packets += 1;
        }
        assert_eq!(at, pcap.len());
        assert_eq!(truth["packets"], packets);
        let calls = truth["calls"].as_array().unwrap();
        assert_eq!(calls.len(), 4);
        let outcomes: Vec<&str> = calls.iter().map(|c| c["outcome"].as_str().unwrap()).collect();
        assert_eq!(outcomes.iter().filter(|o| **o == "completed").count(), 2);
        let streams: usize = calls.iter().map(|c| c["streams"].as_array().unwrap().len()).sum();
        assert_eq!(streams, 4);
    }
}
