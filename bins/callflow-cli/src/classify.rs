//! `callflow-cli classify`: which protocols a capture carries, as a per-protocol table of packets, bytes and flows like ndpiReader's.
//!
//! Every UDP and TCP packet goes to the classifier: nDPI when it is built in (feature
//! `ndpi`, on by default, and nDPI found at build time) and enabled, otherwise the
//! heuristic one. Packets are read as ndpiReader reads them (`callflow_ndpi::FrameInput`:
//! the frame's own IP packet, no tunnel but IP-in-IP decapsulated, ndpiReader's length
//! checks), so that the table can be held against ndpiReader's; only link types
//! ndpiReader refuses go through callflow-decode. `analyze` keeps the decoder's view
//! (tunnels decapsulated, fragments reassembled). A flow is the transport and its two
//! endpoints in either direction; its protocol is nDPI's final verdict (`MASTER.APP`
//! names, as ndpiReader prints them) or the heuristic's first decisive one.

use anyhow::{Context, Result};
use callflow_classify::{AppProtocol, Classifier, HeuristicClassifier};
use callflow_config::{Loader, Settings};
use callflow_decode::capture::CaptureReader;
use callflow_jobs::ClassifierFactory;
use callflow_ndpi::{Census, FlowKey, FrameInput, NdpiClassifier, Options};
use clap::Args;
use std::collections::HashMap;
use std::io::Write;
use std::path::{Path, PathBuf};

#[derive(Args, Debug)]
pub struct ClassifyArgs {
    /// The capture file.
    input: PathBuf,
    /// Use the built-in heuristic classifier even when nDPI is built in.
    #[arg(long)]
    no_ndpi: bool,
    /// A configuration file (TOML, JSON or YAML); its `ndpi.enabled` is honoured.
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
    /// Also list every flow with its protocol.
    #[arg(long)]
    flows: bool,
}

enum Engine {
    Ndpi(Box<NdpiClassifier>),
    Heuristic(HeuristicClassifier, HashMap<FlowKey, AppProtocol>),
}

/// Whether nDPI should be used: yes (`ndpi.enabled` defaults to true, as in callflowd),
/// unless `--no-ndpi` or the configuration (file or `CALLFLOW_ENABLE_NDPI`) says
/// `ndpi.enabled = false`.
fn ndpi_wanted(no_ndpi: bool, config: Option<&Path>) -> Result<bool> {
    if no_ndpi {
        return Ok(false);
    }
    let mut loader = Loader::new().process_env();
    if let Some(file) = config {
        loader = loader.file(file);
    }
    Ok(loader.load()?.settings.ndpi.enabled)
}

/// Whether to classify with nDPI: wanted (see [`ndpi_wanted`]) and built in. Wanted but
/// not built in (e.g. built before `cargo xtask ndpi`) is said on stderr, with the
/// reason, before falling back to the heuristic classifier.
fn use_ndpi(no_ndpi: bool, config: Option<&Path>) -> Result<bool> {
    if !ndpi_wanted(no_ndpi, config)? {
        return Ok(false);
    }
    match NdpiClassifier::availability() {
        Ok(()) => Ok(true),
        Err(why) => {
            eprintln!("callflow-cli: note: {why}; classifying with the heuristic classifier");
            Ok(false)
        }
    }
}

/// The classifier `analyze` hands the traffic no signalling explains to: nDPI when it is
/// built in and wanted (see [`use_ndpi`]), else the heuristic one.
pub(crate) fn analysis_classifier(no_ndpi: bool) -> Result<Box<dyn Classifier>> {
    if use_ndpi(no_ndpi, None)? {
        Ok(Box::new(NdpiClassifier::new(Options::default())?))
    } else {
        Ok(Box::new(HeuristicClassifier))
    }
}

/// The classifier factory of `jobs run`: the same policy as `analyze`, read from the
/// settings the batch already loaded (file and environment).
pub(crate) fn job_classifiers(settings: &Settings) -> ClassifierFactory {
    if !settings.ndpi.enabled {
        return ClassifierFactory::heuristic();
    }
    match NdpiClassifier::availability() {
        // One per job: nDPI's flow state belongs to one capture.
        Ok(()) => ClassifierFactory::new(|| NdpiClassifier::new(Options::default())),
        Err(why) => {
            eprintln!("callflow-cli: note: {why}; classifying with the heuristic classifier");
            ClassifierFactory::heuristic()
        }
    }
}

pub fn run(args: &ClassifyArgs) -> Result<()> {
    let label = args.input.display().to_string();
    let mut engine = if use_ndpi(args.no_ndpi, args.config.as_deref())? {
        Engine::Ndpi(Box::new(NdpiClassifier::new(Options::capture_report())?))
    } else {
        Engine::Heuristic(HeuristicClassifier, HashMap::new())
    };
    let mut reader = CaptureReader::open(&args.input).with_context(|| format!("cannot read capture {label}"))?;
    let mut census = Census::new();
    // A capture that breaks off (a truncated or corrupt record) is counted up to there, as
    // ndpiReader counts it, and as `analyze` reads it: the table says it is incomplete, a
    // warning says why, and the exit status is still 0.
    let mut cut_short = None;
    loop {
        let frame = match reader.next_frame() {
            Ok(Some(frame)) => frame,
            Ok(None) => break,
            Err(e) => {
                cut_short = Some(e);
                break;
            }
        };
        // ndpiReader's reading of the frame (callflow-decode's for link types it refuses).
        let Some(input) = FrameInput::of(&frame) else { continue };
        let key = input.key();
        census.record(key, frame.data.len());
        match &mut engine {
            Engine::Ndpi(ndpi) => {
                ndpi.detect_input(&input);
            }
            // An empty segment (a handshake) says nothing; the first decisive verdict stays.
            // The heuristic classifier reads UDP and TCP payloads only.
            Engine::Heuristic(h, verdicts) => {
                if let Some(payload) = input.payload().filter(|p| !p.bytes.is_empty()) {
                    let slot = verdicts.entry(key).or_insert(AppProtocol::Unknown);
                    if *slot == AppProtocol::Unknown {
                        *slot = h.classify(&payload).protocol;
                    }
                }
            }
        }
    }

    // Per flow: the name the table counts it under, and the full label the flow list shows
    // (ndpiReader's `MASTER.APP`).
    let (name, labels): (&str, HashMap<FlowKey, (String, String)>) = match &mut engine {
        Engine::Ndpi(ndpi) => {
            let verdicts = ndpi.final_verdicts();
            let both = |d| (ndpi.table_name(d).to_string(), ndpi.label(d));
            ("ndpi", verdicts.iter().map(|(k, d)| (*k, both(d))).collect())
        }
        Engine::Heuristic(_, verdicts) => {
            // ndpiReader's spelling: upper-case protocol names, `Unknown` for the rest.
            let name = |p: &AppProtocol| match p {
                AppProtocol::Unknown => "Unknown".to_string(),
                p => p.as_str().to_ascii_uppercase(),
            };
            ("heuristic", verdicts.iter().map(|(k, p)| (*k, (name(p), name(p)))).collect())
        }
    };
    let unknown = || ("Unknown".to_string(), "Unknown".to_string());
    let table_of = |k: &FlowKey| labels.get(k).cloned().unwrap_or_else(unknown).0;
    let label_of = |k: &FlowKey| labels.get(k).cloned().unwrap_or_else(unknown).1;

    let table = census.table(table_of);
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    writeln!(out, "{label}: {} flows, classifier {name}", census.len())?;
    writeln!(out, "\nDetected protocols:")?;
    for (proto, row) in &table {
        writeln!(out, "\t{proto:<20} packets: {:<13} bytes: {:<13} flows: {}", row.packets, row.bytes, row.flows)?;
    }
    if args.flows {
        let mut flows: Vec<_> = census.flows().collect();
        flows.sort_by_key(|(k, _)| **k);
        writeln!(out)?;
        for (key, c) in flows {
            let vlan = if key.vlan != 0 { format!("[VLAN: {}]", key.vlan) } else { String::new() };
            writeln!(
                out,
                "\t{} {} <-> {} {vlan}[proto: {}][{} pkts/{} bytes]",
                key.protocol_name(),
                key.a,
                key.b,
                label_of(key),
                c.packets,
                c.bytes
            )?;
        }
    }
    if cut_short.is_some() {
        writeln!(out, "\n(incomplete: the capture breaks off; these counts cover the frames before)")?;
    }
    out.flush()?;
    if let Some(e) = cut_short {
        eprintln!("callflow-cli: warning: {label}: {e}");
    }
    Ok(())
}
