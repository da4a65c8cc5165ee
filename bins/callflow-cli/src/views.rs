//! `ladder`, `export-pcap` and `calls`: one capture analysed, then a call drawn, cut out to pcap, or the calls listed as a table.
//!
//! The drawing and cutting are `callflow-render`'s; this module finds the call (by
//! Call-ID or session id, with its leg group on `--group`), writes files under a
//! temporary name renamed into place, and lays out the table. Colours only when standard
//! output is a terminal; every write goes through `?`, so a closed pipe (`| head`) ends
//! the command quietly (see `main`).

use anyhow::{bail, Context, Result};
use callflow_correlate::{analyze_with_classifier, AnalyzerOptions, Unattended};
use callflow_decode::capture::CaptureReader;
use callflow_model::{CallState, Document, Problem, Session, SessionKind};
use callflow_render::escape::{clock, elide, terminal};
use callflow_render::{export_pcap, leg_group, read_messages, render_ladder, Format, Ladder};
use clap::{Args, ValueEnum};
use std::collections::BTreeSet;
use std::io::{self, IsTerminal, Write};
use std::path::{Path, PathBuf};

/// Which call, in which capture.
#[derive(Args, Debug)]
pub struct CallArgs {
    /// The capture file.
    input: PathBuf,
    /// The call: its Call-ID, or a session id from `analyze`'s output.
    #[arg(long = "call", value_name = "CALL_ID")]
    call: String,
    /// The whole leg group: the call and every leg a B2BUA or proxy linked to it.
    #[arg(long)]
    group: bool,
    /// Classify unexplained traffic with the heuristic classifier even when nDPI is built in.
    #[arg(long)]
    no_ndpi: bool,
}

/// `callflow-cli ladder`.
#[derive(Args, Debug)]
pub struct LadderArgs {
    #[command(flatten)]
    call: CallArgs,
    /// The diagram's format.
    #[arg(long, value_enum, default_value_t = LadderFormat::Text)]
    format: LadderFormat,
    /// Where to write it; absent or `-`: standard output.
    #[arg(short = 'o', long = "output")]
    output: Option<PathBuf>,
}

/// `callflow-cli export-pcap`.
#[derive(Args, Debug)]
pub struct ExportArgs {
    #[command(flatten)]
    call: CallArgs,
    /// The pcap file to write.
    #[arg(short = 'o', long = "output")]
    output: PathBuf,
}

/// `callflow-cli calls`.
#[derive(Args, Debug)]
pub struct CallsArgs {
    /// The capture file.
    input: PathBuf,
    /// Only calls in this state (e.g. `completed`, `in_call`, `rejected`).
    #[arg(long)]
    state: Option<String>,
    /// Only calls with a problem: any, or the one named (e.g. `low_mos`, `one_way_audio`).
    #[arg(long, value_name = "PROBLEM", num_args = 0..=1, default_missing_value = "")]
    problem: Option<String>,
    /// Only calls whose Call-ID, From, To or id contains this text (case-insensitive).
    #[arg(long)]
    q: Option<String>,
    /// Classify unexplained traffic with the heuristic classifier even when nDPI is built in.
    #[arg(long)]
    no_ndpi: bool,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum LadderFormat {
    /// Plain text for a terminal, 100 columns.
    Text,
    /// Mermaid `sequenceDiagram`.
    Mermaid,
    /// PlantUML source.
    Plantuml,
    /// A self-contained SVG picture (message text in tooltips).
    Svg,
    /// An HTML page: the SVG and the raw messages.
    Html,
}

impl From<LadderFormat> for Format {
    fn from(f: LadderFormat) -> Format {
        match f {
            LadderFormat::Text => Format::Text,
            LadderFormat::Mermaid => Format::Mermaid,
            LadderFormat::Plantuml => Format::Plantuml,
            LadderFormat::Svg => Format::Svg,
            LadderFormat::Html => Format::Html,
        }
    }
}

/// The capture analysed whole (a file: the call's packets are read back from it later).
fn analyse(input: &Path, no_ndpi: bool) -> Result<Document> {
    if input == Path::new("-") {
        bail!("this command reads the capture twice: give a file, not standard input");
    }
    let label = input.display().to_string();
    let mut reader = CaptureReader::open(input).with_context(|| format!("cannot read capture {label}"))?;
    let classifier = crate::classify::analysis_classifier(no_ndpi)?;
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    let opts = AnalyzerOptions { threads, ..AnalyzerOptions::default() };
    let doc = analyze_with_classifier(&mut reader, &label, opts, classifier, None, &mut Unattended)
        .with_context(|| format!("cannot read capture {label}"))?;
    for warning in &doc.source.warnings {
        eprintln!("callflow-cli: warning: {label}: {warning}");
    }
    Ok(doc)
}

/// The sessions `args` names: every session whose Call-ID or id is `--call` (an INVITE
/// dialog and the other transactions of its Call-ID), with their leg groups on `--group`.
fn find_call<'a>(doc: &'a Document, args: &CallArgs) -> Result<Vec<&'a Session>> {
    let mut found: Vec<&Session> =
        doc.sessions.iter().filter(|s| s.call_id == args.call || s.id == args.call).collect();
    if found.is_empty() {
        bail!(
            "no call `{}` in {} ({} sessions; `callflow-cli calls {}` lists them)",
            terminal(&args.call),
            args.input.display(),
            doc.sessions.len(),
            args.input.display()
        );
    }
    if args.group {
        let mut ids: BTreeSet<&str> = BTreeSet::new();
        let mut group = Vec::new();
        for s in found {
            for member in leg_group(&doc.sessions, &s.id).unwrap_or_default() {
                if ids.insert(&member.id) {
                    group.push(member);
                }
            }
        }
        found = group;
    }
    Ok(found)
}

pub fn ladder(args: &LadderArgs) -> Result<()> {
    let doc = analyse(&args.call.input, args.call.no_ndpi)?;
    let sessions = find_call(&doc, &args.call)?;
    let format = Format::from(args.format);
    let raw = if format.wants_raw_messages() {
        let frames: BTreeSet<u64> = sessions.iter().flat_map(|s| s.messages.iter().map(|m| m.frame)).collect();
        Some(read_messages(&args.call.input, &frames).context("reading the messages back")?)
    } else {
        None
    };
    let out = render_ladder(&Ladder::build(&sessions), format, raw.as_ref());
    match args.output.as_deref() {
        None => write_stdout(out.as_bytes()),
        Some(p) if p == Path::new("-") => write_stdout(out.as_bytes()),
        Some(path) => write_file(path, |w| w.write_all(out.as_bytes()).map_err(anyhow::Error::from)),
    }
}

pub fn export(args: &ExportArgs) -> Result<()> {
    let doc = analyse(&args.call.input, args.call.no_ndpi)?;
    let sessions = find_call(&doc, &args.call)?;
    let input = args.call.input.clone();
    let mut done = None;
    write_file(&args.output, |w| {
        done = Some(export_pcap(&input, &sessions, w).context("exporting the call")?);
        Ok(())
    })?;
    if let Some(done) = done {
        if done.other_link_type > 0 {
            eprintln!(
                "callflow-cli: warning: {} frames of another link type than the first were left out",
                done.other_link_type
            );
        }
        eprintln!(
            "callflow-cli: {} frames of {} session(s) written to {}",
            done.frames,
            sessions.len(),
            args.output.display()
        );
    }
    Ok(())
}

fn write_stdout(bytes: &[u8]) -> Result<()> {
    let mut out = io::stdout().lock();
    out.write_all(bytes)?;
    out.flush()?;
    Ok(())
}

/// Writes `path` under a temporary name beside it, renamed into place once complete, so a
/// failed run never leaves a half-written file under the name asked for.
fn write_file(path: &Path, fill: impl FnOnce(&mut io::BufWriter<std::fs::File>) -> Result<()>) -> Result<()> {
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_else(|| "out".into());
    let tmp = path.with_file_name(format!(".{name}.{}.tmp", std::process::id()));
    let file = std::fs::File::create(&tmp).with_context(|| format!("cannot write {}", path.display()))?;
    let mut w = io::BufWriter::new(file);
    let written = fill(&mut w).and_then(|()| {
        w.flush()?;
        w.get_ref().sync_all()?;
        Ok(())
    });
    if let Err(e) = written.and_then(|()| std::fs::rename(&tmp, path).map_err(anyhow::Error::from)) {
        let _ = std::fs::remove_file(&tmp);
        return Err(e.context(format!("cannot write {}", path.display())));
    }
    Ok(())
}

/// A `--problem` value: empty for any problem, else a problem's name.
fn parse_problem(name: &str) -> Result<Option<Problem>> {
    if name.is_empty() {
        return Ok(None);
    }
    serde_json::from_value(serde_json::Value::String(name.to_ascii_lowercase()))
        .map(Some)
        .map_err(|_| anyhow::anyhow!("unknown problem `{name}` (e.g. low_mos, one_way_audio, no_rtp, high_loss)"))
}

fn parse_state(name: &str) -> Result<CallState> {
    serde_json::from_value(serde_json::Value::String(name.to_ascii_uppercase().replace('-', "_")))
        .map_err(|_| anyhow::anyhow!("unknown state `{name}` (e.g. completed, in_call, rejected, cancelled, failed)"))
}

/// The lowest MOS of the streams sent from `caller` (out) and to it (in).
fn mos_in_out(s: &Session) -> (Option<f64>, Option<f64>) {
    let caller = s.messages.first().map(|m| m.src.ip());
    let lowest = |out: bool| {
        s.media
            .iter()
            .filter(|m| (Some(m.src.ip()) == caller) == out)
            .filter_map(|m| m.quality.as_ref().map(|q| q.mos))
            .reduce(f64::min)
    };
    (lowest(false), lowest(true))
}

pub fn calls(args: &CallsArgs) -> Result<()> {
    let state = args.state.as_deref().map(parse_state).transpose()?;
    let problem = args.problem.as_deref().map(parse_problem).transpose()?;
    let q = args.q.as_deref().map(str::to_lowercase);
    let doc = analyse(&args.input, args.no_ndpi)?;
    let colour = io::stdout().is_terminal();
    let rows: Vec<&Session> = doc
        .sessions
        .iter()
        .filter(|s| s.kind == SessionKind::SipCall)
        .filter(|s| state.is_none_or(|st| s.state == st))
        .filter(|s| match problem {
            None => true,
            Some(None) => !s.problems.is_empty(),
            Some(Some(p)) => s.problems.contains(&p),
        })
        .filter(|s| {
            q.as_deref()
                .is_none_or(|q| [&s.call_id, &s.from, &s.to, &s.id].iter().any(|f| f.to_lowercase().contains(q)))
        })
        .collect();
    let mut out = io::BufWriter::new(io::stdout().lock());
    let header = ["TIME", "FROM", "TO", "STATE", "DURATION", "SETUP", "MOS IN", "MOS OUT", "PROBLEMS"];
    let cells: Vec<[String; 9]> = rows
        .iter()
        .map(|s| {
            let (mos_in, mos_out) = mos_in_out(s);
            let mos = |m: Option<f64>| m.map_or("-".to_string(), |v| format!("{v:.2}"));
            let secs = |ms: Option<f64>| ms.map_or("-".to_string(), |v| format!("{:.1}s", v / 1000.0));
            let problems: Vec<&str> = s.problems.iter().map(|p| p.as_str()).collect();
            [
                clock(s.start),
                elide(&terminal(&s.from), 30),
                elide(&terminal(&s.to), 30),
                s.state.to_string(),
                secs(s.duration_ms),
                secs(s.setup_time_ms),
                mos(mos_in),
                mos(mos_out),
                if problems.is_empty() { "-".into() } else { problems.join(",") },
            ]
        })
        .collect();
    let cells: Vec<Vec<String>> = cells.into_iter().map(Vec::from).collect();
    write_table(&mut out, &header, &cells, colour, &|i, c| match i {
        3 => match c {
            "COMPLETED" | "IN_CALL" => Some("32"),
            "CANCELLED" | "RINGING" | "CALL_SETUP" => Some("33"),
            "REJECTED" | "FAILED" => Some("31"),
            _ => None,
        },
        6 | 7 => match c.parse::<f64>() {
            Ok(m) if m >= 4.0 => Some("32"),
            Ok(m) if m >= 3.6 => Some("33"),
            Ok(_) => Some("31"),
            Err(_) => None,
        },
        8 if c != "-" => Some("31"),
        _ => None,
    })?;
    out.flush()?;
    Ok(())
}

/// Writes `cells` under `header` in aligned columns two spaces apart, the header in bold
/// and each cell in the colour `paint` gives it (by column and text) when `colour`.
pub(crate) fn write_table(
    out: &mut dyn Write,
    header: &[&str],
    cells: &[Vec<String>],
    colour: bool,
    paint: &dyn Fn(usize, &str) -> Option<&'static str>,
) -> io::Result<()> {
    let mut widths: Vec<usize> = header.iter().map(|h| h.len()).collect();
    for row in cells {
        for (w, c) in widths.iter_mut().zip(row) {
            *w = (*w).max(c.chars().count());
        }
    }
    let line = |out: &mut dyn Write, row: &[String], paint: &dyn Fn(usize, &str) -> Option<&'static str>| {
        let mut text = String::new();
        for (i, (c, w)) in row.iter().zip(&widths).enumerate() {
            let pad = " ".repeat(w - c.chars().count());
            let last = i + 1 == row.len();
            let cell = match paint(i, c).filter(|_| colour) {
                Some(code) => format!("\x1b[{code}m{c}\x1b[0m"),
                None => c.clone(),
            };
            text.push_str(&cell);
            if !last {
                text.push_str(&pad);
                text.push_str("  ");
            }
        }
        writeln!(out, "{}", text.trim_end())
    };
    let head: Vec<String> = header.iter().map(|h| h.to_string()).collect();
    line(out, &head, &|_, _| Some("1"))?;
    for row in cells {
        line(out, row, paint)?;
    }
    Ok(())
}
