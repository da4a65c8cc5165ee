//! `callflow-cli stats`: a capture's operator statistics (ASR, NER, RFC 6076's ratios, delays) as a terminal table, JSON or CSV, for the whole capture or per peer, domain and minute.
//!
//! The sessions stream through `callflow_correlate::kpis::KpiAccumulator` as the analysis
//! hands them out, so memory stays that of the calls in progress; the figures and their
//! definitions are docs/kpis.md's.

use anyhow::{Context, Result};
use callflow_config::Loader;
use callflow_correlate::kpis::{Dimension, Grouping, KpiAccumulator, Outcome};
use callflow_correlate::{analyze_with_classifier, AnalyzerOptions, Unattended};
use callflow_decode::capture::CaptureReader;
use callflow_model::{Delay, KpiCall, KpiRow, KpiSet, Ratio, Session};
use callflow_render::escape::{clock, terminal};
use clap::{Args, ValueEnum};
use std::io::{self, IsTerminal, Write};
use std::path::PathBuf;

/// `callflow-cli stats`.
#[derive(Args, Debug)]
pub struct StatsArgs {
    /// The capture file; `-` reads standard input.
    input: PathBuf,
    /// Group by: peer, domain (the callee's), caller-domain, callee-domain, minute (the
    /// time bucket, `kpis.bucket`), or several joined by commas (`peer,minute`).
    #[arg(long, value_name = "GROUPING")]
    by: Option<String>,
    /// Output format.
    #[arg(long, value_enum, default_value_t = StatsFormat::Table)]
    format: StatsFormat,
    /// A configuration file (TOML, JSON or YAML), as for callflowd: its `[kpis]` names
    /// trunks and local addresses and sets the time bucket.
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
    /// Also list every call with its outcome and the rule that gave it (with `--format csv`:
    /// instead of the figures).
    #[arg(long)]
    calls: bool,
    /// Classify unexplained traffic with the heuristic classifier even when nDPI is built in.
    #[arg(long)]
    no_ndpi: bool,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum StatsFormat {
    /// A table for a terminal.
    Table,
    /// One JSON object: the whole capture's figures and the rows, with every count.
    Json,
    /// One line per row (the whole capture last), the main figures.
    Csv,
}

pub fn run(args: &StatsArgs) -> Result<()> {
    let grouping: Grouping = args.by.as_deref().unwrap_or("").parse()?;
    let mut loader = Loader::new().process_env();
    if let Some(file) = &args.config {
        loader = loader.file(file);
    }
    let settings = loader.load()?.settings;
    let kpi_options = callflow_jobs::kpi_options(&settings.kpis);
    let label = args.input.display().to_string();
    let mut reader =
        if label == "-" { CaptureReader::from_reader(Box::new(io::stdin())) } else { CaptureReader::open(&args.input) }
            .with_context(|| format!("cannot read capture {label}"))?;
    let classifier = crate::classify::analysis_classifier(args.no_ndpi)?;
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    let opts = AnalyzerOptions { threads, kpis: kpi_options.clone(), ..AnalyzerOptions::default() };
    let mut acc = KpiAccumulator::new(kpi_options, vec![grouping.clone()]);
    if args.calls {
        acc = acc.keep_calls();
    }
    let mut sink = |s: Session| acc.add(&s);
    let doc = analyze_with_classifier(&mut reader, &label, opts, classifier, Some(&mut sink), &mut Unattended)
        .with_context(|| format!("cannot read capture {label}"))?;
    for warning in &doc.source.warnings {
        eprintln!("callflow-cli: warning: {label}: {warning}");
    }
    let end = doc.source.last_ts;
    let total = acc.total(end);
    let rows = if grouping.0.is_empty() { Vec::new() } else { acc.rows(0, end) };
    let calls = acc.calls(end);
    let mut out = io::BufWriter::new(io::stdout().lock());
    match args.format {
        StatsFormat::Json => {
            let dims: Vec<&str> = grouping.0.iter().map(|d| d.as_str()).collect();
            let mut value = serde_json::json!({
                "source": label,
                "by": dims,
                "bucket_secs": settings.kpis.bucket.as_secs(),
                "total": total,
                "rows": rows,
            });
            if args.calls {
                value["calls"] = serde_json::to_value(&calls)?;
            }
            serde_json::to_writer_pretty(&mut out, &value)?;
            writeln!(out)?;
        }
        StatsFormat::Csv if args.calls => write_calls_csv(&mut out, &calls)?,
        StatsFormat::Csv => write_csv(&mut out, &grouping, &rows, &total)?,
        StatsFormat::Table => {
            if grouping.0.is_empty() {
                write_summary(&mut out, &label, &total)?;
            } else {
                write_groups(&mut out, &grouping, &rows, &total)?;
            }
            if args.calls {
                writeln!(out)?;
                write_calls(&mut out, &calls)?;
            }
        }
    }
    out.flush()?;
    Ok(())
}

/// A row's value of dimension `d`, as text (a bucket as the time of day for people, as
/// seconds since the epoch for machines).
fn key(row: &KpiRow, d: Dimension, machine: bool) -> String {
    match d {
        Dimension::Peer => row.peer.clone().unwrap_or_default(),
        Dimension::CallerDomain => row.caller_domain.clone().unwrap_or_default(),
        Dimension::CalleeDomain => row.callee_domain.clone().unwrap_or_default(),
        Dimension::Bucket if machine => row.bucket.map(|t| t.to_string()).unwrap_or_default(),
        Dimension::Bucket => row.bucket.map(clock).unwrap_or_default(),
    }
}

fn percent(r: &Ratio) -> String {
    r.percent.map_or_else(|| "-".into(), |p| format!("{p:.1}%"))
}

fn counts(r: &Ratio) -> String {
    format!("{} / {}", r.numerator, r.denominator)
}

fn ms(v: Option<f64>) -> String {
    v.map_or_else(|| "-".into(), |v| format!("{v:.0}"))
}

fn spread(d: &Delay) -> String {
    if d.count == 0 {
        return "-".into();
    }
    format!("{}/{}/{}", ms(d.p50), ms(d.p90), ms(d.p99))
}

fn seconds(d: &Delay) -> String {
    d.mean.map_or_else(|| "-".into(), |m| format!("{:.1}s", m / 1_000.0))
}

fn answered(k: &KpiSet) -> u64 {
    k.outcomes.iter().find(|o| o.outcome == Outcome::Answered.as_str()).map_or(0, |o| o.count)
}

/// The whole capture: each figure with its counts and where it is defined, then the
/// outcomes with their rules and the responses by class.
fn write_summary(out: &mut dyn Write, label: &str, k: &KpiSet) -> Result<()> {
    let colour = io::stdout().is_terminal();
    writeln!(out, "{}: {} call attempts, {} registrations", terminal(label), k.attempts, k.registrations)?;
    let ratio = |name: &str, r: &Ratio, source: &str| vec![name.into(), percent(r), counts(r), source.into()];
    let delay = |name: &str, d: &Delay, source: &str| {
        let value = if d.count == 0 { "-".into() } else { format!("{} ms", spread(d)) };
        vec![name.into(), value, format!("{} values, mean {}", d.count, ms(d.mean)), source.into()]
    };
    let acd = match k.acd_ms.count {
        0 => "-".into(),
        _ => seconds(&k.acd_ms),
    };
    let rows = vec![
        ratio("ASR", &k.asr, "answered / attempts (E.411)"),
        ratio("NER", &k.ner, "answered or user busy/no answer/declined/abandoned (E.411, E.425)"),
        ratio("SER", &k.ser, "RFC 6076 4.6: answered / (attempts - 3xx)"),
        ratio("SEER", &k.seer, "RFC 6076 4.7: 200, 480, 486, 600, 603 / (attempts - 3xx)"),
        ratio("ISA", &k.isa, "RFC 6076 4.8: 408, 500, 503, 504 or no answer / attempts"),
        ratio("SCR", &k.scr, "RFC 6076 4.9: answered and BYE answered 2xx / attempts"),
        ratio("IRA", &k.ira, "RFC 6076 4.2: failed registrations / registrations"),
        vec!["ACD".into(), acd, format!("{} calls", k.acd_ms.count), "RFC 6076 4.5: mean 2xx-to-BYE".into()],
        delay("PDD p50/p90/p99", &k.pdd_ms, "INVITE to first 18x"),
        delay("Setup p50/p90/p99", &k.setup_ms, "INVITE to final answer"),
        delay("SRD ok p50/p90/p99", &k.srd_ok_ms, "RFC 6076 4.3.1: INVITE to 18x or 2xx"),
        delay("SRD failed p50/p90/p99", &k.srd_failed_ms, "RFC 6076 4.3.2: INVITE to failure"),
        delay("SDD p50/p90/p99", &k.sdd_ms, "RFC 6076 4.4: BYE to its answer"),
        delay("RRD p50/p90/p99", &k.rrd_ms, "RFC 6076 4.1: REGISTER to 2xx"),
    ];
    crate::views::write_table(out, &["METRIC", "VALUE", "COUNTS", "DEFINITION"], &rows, colour, &|_, _| None)?;
    writeln!(out)?;
    let outcomes: Vec<Vec<String>> =
        k.outcomes.iter().map(|o| vec![o.outcome.clone(), o.count.to_string(), o.rule.clone()]).collect();
    crate::views::write_table(out, &["OUTCOME", "CALLS", "RULE"], &outcomes, colour, &|i, c| match (i, c) {
        (0, "answered") => Some("32"),
        (0, "failed" | "timed_out" | "rejected") => Some("31"),
        _ => None,
    })?;
    let classes: Vec<String> = k.responses.by_class.iter().map(|(c, n)| format!("{c} {n}")).collect();
    writeln!(
        out,
        "\nresponses: {} ({} retransmitted): {}",
        k.responses.total,
        k.responses.retransmitted,
        if classes.is_empty() { "-".into() } else { classes.join(", ") }
    )?;
    Ok(())
}

/// One line per group, then the whole capture.
fn write_groups(out: &mut dyn Write, grouping: &Grouping, rows: &[KpiRow], total: &KpiSet) -> Result<()> {
    let colour = io::stdout().is_terminal();
    let dims: Vec<String> = grouping.0.iter().map(|d| d.as_str().to_uppercase()).collect();
    let mut header: Vec<&str> = dims.iter().map(String::as_str).collect();
    header.extend([
        "CALLS",
        "ANSWERED",
        "ASR",
        "NER",
        "SER",
        "SEER",
        "ISA",
        "SCR",
        "ACD",
        "PDD MS",
        "SETUP MS P50/90/99",
        "REG",
        "IRA",
    ]);
    let figures = |k: &KpiSet| {
        vec![
            k.attempts.to_string(),
            answered(k).to_string(),
            percent(&k.asr),
            percent(&k.ner),
            percent(&k.ser),
            percent(&k.seer),
            percent(&k.isa),
            percent(&k.scr),
            seconds(&k.acd_ms),
            ms(k.pdd_ms.p50),
            spread(&k.setup_ms),
            k.registrations.to_string(),
            percent(&k.ira),
        ]
    };
    let mut cells: Vec<Vec<String>> = rows
        .iter()
        .map(|r| {
            let mut row: Vec<String> = grouping.0.iter().map(|d| terminal(&key(r, *d, false))).collect();
            row.extend(figures(&r.kpis));
            row
        })
        .collect();
    let mut last: Vec<String> = grouping.0.iter().map(|_| String::new()).collect();
    last[0] = "TOTAL".into();
    last.extend(figures(total));
    cells.push(last);
    let first_figure = grouping.0.len();
    crate::views::write_table(out, &header, &cells, colour, &|i, c| {
        (i == first_figure + 2).then(|| match c.trim_end_matches('%').parse::<f64>() {
            Ok(p) if p >= 50.0 => "32",
            Ok(p) if p >= 30.0 => "33",
            Ok(_) => "31",
            Err(_) => "0",
        })
    })?;
    Ok(())
}

/// Every call with its outcome and rule.
fn write_calls(out: &mut dyn Write, calls: &[KpiCall]) -> Result<()> {
    let colour = io::stdout().is_terminal();
    let cells: Vec<Vec<String>> = calls
        .iter()
        .map(|c| {
            vec![
                clock(c.start),
                terminal(&c.call_id),
                terminal(&c.peer),
                c.outcome.clone(),
                c.code.map_or_else(|| "-".into(), |c| c.to_string()),
                c.rule.clone(),
            ]
        })
        .collect();
    let header = ["TIME", "CALL-ID", "PEER", "OUTCOME", "CODE", "RULE"];
    crate::views::write_table(out, &header, &cells, colour, &|_, _| None)?;
    Ok(())
}

fn write_calls_csv(out: &mut dyn Write, calls: &[KpiCall]) -> Result<()> {
    writeln!(out, "session,call_id,start,peer,outcome,code,rule")?;
    for c in calls {
        let code = c.code.map_or_else(String::new, |c| c.to_string());
        let fields = [&c.session, &c.call_id, &c.start.to_string(), &c.peer, &c.outcome, &code, &c.rule];
        let fields: Vec<String> = fields.iter().map(|f| csv_field(f)).collect();
        writeln!(out, "{}", fields.join(","))?;
    }
    Ok(())
}

/// A CSV field, quoted when it needs to be (RFC 4180).
fn csv_field(s: &str) -> String {
    if s.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_string()
    }
}

fn write_csv(out: &mut dyn Write, grouping: &Grouping, rows: &[KpiRow], total: &KpiSet) -> Result<()> {
    let mut header: Vec<&str> = grouping.0.iter().map(|d| d.as_str()).collect();
    header.extend([
        "attempts",
        "answered",
        "asr_pct",
        "ner_pct",
        "ser_pct",
        "seer_pct",
        "isa_pct",
        "scr_pct",
        "acd_ms",
        "pdd_p50_ms",
        "pdd_p90_ms",
        "setup_p50_ms",
        "setup_p90_ms",
        "setup_p99_ms",
        "registrations",
        "ira_pct",
        "responses",
    ]);
    writeln!(out, "{}", header.join(","))?;
    let num = |v: Option<f64>| v.map_or_else(String::new, |v| v.to_string());
    let line = |keys: Vec<String>, k: &KpiSet| {
        let mut fields: Vec<String> = keys.iter().map(|s| csv_field(s)).collect();
        fields.extend([
            k.attempts.to_string(),
            answered(k).to_string(),
            num(k.asr.percent),
            num(k.ner.percent),
            num(k.ser.percent),
            num(k.seer.percent),
            num(k.isa.percent),
            num(k.scr.percent),
            num(k.acd_ms.mean),
            num(k.pdd_ms.p50),
            num(k.pdd_ms.p90),
            num(k.setup_ms.p50),
            num(k.setup_ms.p90),
            num(k.setup_ms.p99),
            k.registrations.to_string(),
            num(k.ira.percent),
            k.responses.total.to_string(),
        ]);
        fields.join(",")
    };
    for r in rows {
        writeln!(out, "{}", line(grouping.0.iter().map(|d| key(r, *d, true)).collect(), &r.kpis))?;
    }
    // The whole capture last, `total` in its first key column (none without a grouping).
    let keys: Vec<String> =
        grouping.0.iter().enumerate().map(|(i, _)| if i == 0 { "total".into() } else { String::new() }).collect();
    writeln!(out, "{}", line(keys, total))?;
    Ok(())
}
