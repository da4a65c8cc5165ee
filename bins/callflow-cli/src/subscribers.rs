//! `callflow-cli subscribers`: the subscriber view of a capture (each subscriber's identities and addresses, then its sessions of every kind with the key that joined them), as a table or JSON.

use crate::classify;
use anyhow::{Context, Result};
use callflow_correlate::{analyze_with_classifier, AnalyzerOptions, Unattended};
use callflow_decode::capture::CaptureReader;
use callflow_model::{Document, Session, SessionKind, Subscriber, Timestamp};
use clap::{Args, ValueEnum};
use std::collections::HashMap;
use std::io::{self, Write};
use std::path::PathBuf;

#[derive(Args, Debug)]
pub struct SubscribersArgs {
    /// The capture file; `-` reads standard input.
    input: PathBuf,
    /// A table for people, or the document's `subscribers` as JSON.
    #[arg(long, value_enum, default_value_t = ViewFormat::Table)]
    format: ViewFormat,
    /// Classify unexplained traffic with the heuristic classifier even when nDPI is built in.
    #[arg(long)]
    no_ndpi: bool,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum ViewFormat {
    Table,
    Json,
}

pub fn run(args: &SubscribersArgs) -> Result<()> {
    let label = args.input.display().to_string();
    let mut reader =
        if label == "-" { CaptureReader::from_reader(Box::new(io::stdin())) } else { CaptureReader::open(&args.input) }
            .with_context(|| format!("cannot read capture {label}"))?;
    let classifier = classify::analysis_classifier(args.no_ndpi)?;
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    let opts = AnalyzerOptions { threads, ..AnalyzerOptions::default() };
    let doc = analyze_with_classifier(&mut reader, &label, opts, classifier, None, &mut Unattended)
        .with_context(|| format!("cannot read capture {label}"))?;
    for warning in &doc.source.warnings {
        eprintln!("callflow-cli: warning: {label}: {warning}");
    }
    let mut out = io::stdout().lock();
    match args.format {
        ViewFormat::Json => {
            serde_json::to_writer_pretty(&mut out, &doc.subscribers)?;
            writeln!(out)?;
        }
        ViewFormat::Table => out.write_all(table(&doc).as_bytes())?,
    }
    out.flush()?;
    Ok(())
}

/// The view as text: per subscriber a line of identities and addresses, then a line per session.
fn table(doc: &Document) -> String {
    if doc.subscribers.is_empty() {
        return "no subscribers: no session carried a subscriber's identity\n".to_string();
    }
    let sessions: HashMap<&str, &Session> = doc.sessions.iter().map(|s| (s.id.as_str(), s)).collect();
    let mut out = String::new();
    for sub in &doc.subscribers {
        out += &subscriber_block(sub, &sessions);
        out.push('\n');
    }
    out
}

fn subscriber_block(sub: &Subscriber, sessions: &HashMap<&str, &Session>) -> String {
    let dash = |v: Option<&str>| v.filter(|v| !v.is_empty()).unwrap_or("-").to_string();
    let addresses: Vec<String> = sub
        .ue_addresses
        .iter()
        .map(|a| {
            let how = if a.assigned { "" } else { " seen" };
            format!("{} ({}-{}{how})", a.address, clock(a.start), clock(a.end))
        })
        .collect();
    let head = [
        ("SUBSCRIBER", sub.id.clone()),
        ("IMSI", dash(sub.imsi.as_deref())),
        ("MSISDN", dash(sub.msisdn.as_deref())),
        ("IMPU", dash(Some(&sub.impu.join(", ")))),
        ("IMPI", dash(Some(&sub.impi.join(", ")))),
        ("IMEI", dash(sub.imei.as_deref())),
        ("UE ADDRESSES", dash(Some(&addresses.join(", ")))),
    ];
    let mut rows: Vec<[String; 4]> = vec![["KIND".into(), "START".into(), "JOINED BY".into(), "SUMMARY".into()]];
    for s in &sub.sessions {
        let summary = sessions.get(s.session.as_str()).map_or_else(|| s.session.clone(), |full| summary(full));
        rows.push([
            s.kind.as_str().to_string(),
            clock(s.start),
            format!("{} {}", s.key.kind.as_str(), s.key.value),
            summary,
        ]);
    }
    let mut widths = [0usize; 4];
    for row in &rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let mut out = String::new();
    for (name, value) in head {
        out += &format!("{name:<13}{value}\n");
    }
    for row in rows {
        let line = format!(
            "  {:<w0$}  {:<w1$}  {:<w2$}  {}",
            row[0],
            row[1],
            row[2],
            row[3],
            w0 = widths[0],
            w1 = widths[1],
            w2 = widths[2]
        );
        out += line.trim_end();
        out.push('\n');
    }
    out
}

/// One line about a session: who called whom for SIP, the first and last messages otherwise.
fn summary(s: &Session) -> String {
    let n = s.messages.len();
    match s.kind {
        SessionKind::SipCall => format!("to {}, {}, {n} messages, Call-ID {}", s.to, s.state, s.call_id),
        SessionKind::SipRegister | SessionKind::SipOther => {
            let first = s.messages.first().and_then(|m| m.method.as_deref()).unwrap_or("?");
            format!("{first} {}, {}, {n} messages, Call-ID {}", s.from, s.state, s.call_id)
        }
        SessionKind::Rtp => format!("{} streams", s.media.len()),
        _ => {
            let first = s.messages.first().map_or("", |m| m.summary.as_str());
            let last = s.messages.last().map_or("", |m| m.summary.as_str());
            if n > 1 {
                format!("{first} .. {last}, {n} messages, {}", s.state)
            } else {
                format!("{first}, {n} message, {}", s.state)
            }
        }
    }
}

/// The UTC time of day of `t`, to the millisecond.
fn clock(t: Timestamp) -> String {
    let ms = t.as_nanos().div_euclid(1_000_000);
    let (secs, ms) = (ms.div_euclid(1_000), ms.rem_euclid(1_000));
    let day = secs.rem_euclid(86_400);
    format!("{:02}:{:02}:{:02}.{ms:03}", day / 3_600, day / 60 % 60, day % 60)
}
