//! Turns decoded packets into call flows: SIP dialogs with their messages, state and timing, and the RTP/RTCP streams that belong to them.
//!
//! The [`Analyzer`] takes frames in capture order. SIP messages (over UDP, reassembled
//! TCP, SCTP, or IP fragments) are grouped into dialogs by Call-ID; each dialog follows
//! the call states users know from Wireshark's VoIP Calls (`CALL_SETUP`, `RINGING`,
//! `IN_CALL`, `CANCELLED`, `COMPLETED`, `REJECTED`, ...). Every SDP offer or answer
//! registers the address:port it announces, so RTP and RTCP arriving there join the
//! dialog whatever the port; RTP nobody announced is still reported, as media-only
//! sessions found by header heuristics. [`analyze`] runs the whole pipeline over a
//! [`CaptureReader`].
//!
//! Architecture invariant: this crate opens no files and speaks no network protocol;
//! it reads frames from the reader it is handed. It cannot fail on a bad packet: it
//! counts it and goes on. Only the capture as a whole can be unusable.
//!
//! ```no_run
//! use callflow_correlate::{analyze, AnalyzerOptions};
//! use callflow_decode::capture::CaptureReader;
//!
//! let mut reader = CaptureReader::open("call.pcap")?;
//! let doc = analyze(&mut reader, "call.pcap", AnalyzerOptions::default(), None)?;
//! for session in &doc.sessions {
//!     println!("{} {} {} messages", session.call_id, session.state, session.messages.len());
//! }
//! # Ok::<(), callflow_decode::capture::CaptureError>(())
//! ```

mod analyzer;
mod dialog;
mod ids;
mod media;
mod stats;

pub use analyzer::{sort_sessions, Analyzer, AnalyzerOptions};

use callflow_decode::capture::{CaptureError, CaptureReader};
use callflow_model::{Document, Session, SourceInfo, FORMAT};

/// Runs the whole analysis over `reader` and returns the document.
///
/// With a `sink`, each session is handed to it as soon as it is over (and the rest,
/// in order, at the end), and the returned document's `sessions` is empty: this is how
/// huge captures are written as NDJSON without holding every session. `path` is only
/// written into the document's `source`.
///
/// A capture that breaks off part-way (a truncated last record, a damaged block) still
/// gives the sessions seen so far: the document then says `complete: false` and why.
/// Only a capture that cannot be read at all is an error.
pub fn analyze(
    reader: &mut CaptureReader,
    path: &str,
    opts: AnalyzerOptions,
    mut sink: Option<&mut dyn FnMut(Session)>,
) -> Result<Document, CaptureError> {
    let mut analyzer = Analyzer::new(opts);
    let mut source = SourceInfo {
        path: path.to_string(),
        packets: 0,
        bytes: reader.total_bytes().unwrap_or(0),
        first_ts: None,
        last_ts: None,
        link_types: Vec::new(),
        complete: true,
        warnings: Vec::new(),
    };
    loop {
        let frame = match reader.next_frame() {
            Ok(Some(frame)) => frame,
            Ok(None) => break,
            Err(e @ CaptureError::Io(_)) if source.packets == 0 => return Err(e),
            Err(e) => {
                source.complete = false;
                source.warnings.push(format!("reading stopped after {} packets: {e}", source.packets));
                break;
            }
        };
        source.packets += 1;
        source.first_ts.get_or_insert(frame.ts);
        source.last_ts = Some(source.last_ts.map_or(frame.ts, |t| t.max(frame.ts)));
        analyzer.process(&frame);
        if let Some(sink) = sink.as_deref_mut() {
            for session in analyzer.take_completed() {
                sink(session);
            }
        }
    }
    source.link_types = reader.link_types().iter().map(|l| l.name()).collect();
    if source.bytes == 0 {
        source.bytes = reader.bytes_consumed();
    }
    let (sessions, stats) = analyzer.finish();
    let sessions = match sink {
        Some(sink) => {
            sessions.into_iter().for_each(sink);
            Vec::new()
        }
        None => sessions,
    };
    Ok(Document { format: FORMAT.to_string(), source, stats, sessions })
}
