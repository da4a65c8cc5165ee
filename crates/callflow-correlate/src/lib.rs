//! Turns decoded packets into call flows: SIP dialogs with their messages, state and timing, and the RTP/RTCP streams that belong to them.
//!
//! The [`Analyzer`] takes frames in capture order. SIP messages (over UDP, reassembled
//! TCP, WebSocket, SCTP, or IP fragments) are grouped into dialogs by Call-ID; each dialog follows
//! the call states users know from Wireshark's VoIP Calls (`CALL_SETUP`, `RINGING`,
//! `IN_CALL`, `CANCELLED`, `COMPLETED`, `REJECTED`, ...). Every SDP offer or answer
//! registers the address:port it announces, so RTP and RTCP arriving there join the
//! dialog whatever the port; RTP nobody announced is still reported, as media-only
//! sessions found by header heuristics. GTP-C (GTPv1 and GTPv2) gives `gtp` sessions: a PDN
//! connection or PDP contexts with their request/response pairs, subscriber and bearers,
//! each bearer counting the G-PDUs sent to its tunnel endpoints. [`analyze`] runs the whole pipeline over a
//! [`FrameSource`]: a capture file's `CaptureReader`, or any source of frames in capture
//! order (a source that goes quiet says so with a [`Pulled::Tick`], and the sessions that
//! are over by then still come out).
//!
//! Inside, the [`Analyzer`] is a router: the front stage decodes a frame and finds its flow,
//! the flow remembers what its earlier packets were, the application protocol is decided
//! (announced by SDP, probed, or classified) and the payload goes to that protocol's
//! handler (SIP dialogs, RTP/RTCP media), which owns its tables and says when each of its
//! sessions is over. Every handler gets the same per-packet context, [`PacketCtx`] (time,
//! frame, addresses, transport, tunnel).
//!
//! Every SIP session handed out also feeds the operator statistics ([`kpis`]: each call's
//! outcome by one rule, RFC 6076's ratios and delays, ASR, NER, ACD per peer, domain and
//! time bucket), which become the document's `kpis`.
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
mod bearers;
mod capture_loss;
mod control;
mod ctx;
mod dialog;
mod diameter;
mod flows;
mod front;
mod gtp;
mod handler;
mod ids;
pub mod kpis;
mod legs;
mod media;
mod pipeline;
mod problems;
pub mod quality;
mod rtp;
mod sctp;
mod sip;
mod slots;
mod source;
mod stats;
mod subscriber;
mod subscribers;
mod tls;
mod websocket;

pub use analyzer::{sort_sessions, Analyzer, AnalyzerOptions};
pub use control::{analyze_with, analyze_with_classifier, AnalyzeControl, Unattended};
pub use ctx::PacketCtx;
pub use legs::LegOptions;
pub use media::rtcp_report;
pub use quality::QualityOptions;
pub use source::{FrameSource, Pulled};

use callflow_decode::capture::CaptureError;
use callflow_model::{Document, Session};

/// Runs the whole analysis over `reader` (a [`CaptureReader`](callflow_decode::capture::CaptureReader),
/// or any other [`FrameSource`]) and returns the document.
///
/// With a `sink`, each session is handed to it as soon as it is over (and the rest,
/// in order, at the end), and the returned document's `sessions` is empty: this is how
/// huge captures are written as NDJSON without holding every session. `path` is only
/// written into the document's `source`.
///
/// A capture that breaks off part-way (a truncated last record, a damaged block) still
/// gives the sessions seen so far: the document then says `complete: false` and why.
/// Only a capture that cannot be read at all is an error. [`analyze_with`] is the same
/// with progress reports and a way to stop early.
pub fn analyze<S: FrameSource + Send + ?Sized>(
    reader: &mut S,
    path: &str,
    opts: AnalyzerOptions,
    sink: Option<&mut dyn FnMut(Session)>,
) -> Result<Document, CaptureError> {
    analyze_with(reader, path, opts, sink, &mut Unattended)
}
