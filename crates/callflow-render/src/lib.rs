//! Pictures and exports of callflowd sessions: ladder diagrams, quality charts and per-call pcap files, shared by the CLI and the server.
//!
//! - [`Ladder`] lays out one session, or a leg group ([`leg_group`]), once: hosts as
//!   columns in order of appearance, messages and media starts as rows in time order.
//!   [`render_ladder`] draws it in a [`Format`]: `text` for a terminal ([`text::render`]),
//!   `mermaid` and `plantuml` source ([`diagram`]), a self-contained `svg`, or an `html`
//!   page with the SVG and the raw messages ([`svg`]).
//! - [`chart::render`] draws the jitter, loss and MOS of a stream or a call over time
//!   from the streams' timeline intervals.
//! - [`pcap::export_pcap`] cuts a session's or a group's packets (SIP, RTP/RTCP, DTMF,
//!   inside tunnels too) out of the capture into a pcap file, and
//!   [`pcap::read_messages`] reads messages back as text for tooltips and the HTML page.
//!
//! Everything taken from a capture is hostile input: each output escapes it for its own
//! language ([`escape`]).
//!
//! **Architecture invariant:** no analysis (it draws what `callflow-correlate` found) and
//! no I/O other than reading the capture back for pcap and raw messages; no HTTP, no
//! command line.
//!
//! ```
//! use callflow_model::{CallState, Message, Protocol, Session, SessionKind, Timestamp, Transport};
//! use callflow_render::{render_ladder, Format, Ladder};
//!
//! let at = |ms: i64| Timestamp::from_nanos(1_700_000_000_000_000_000 + ms * 1_000_000);
//! let msg = |ms, src: &str, dst: &str, summary: &str, status| Message {
//!     ts: at(ms), frame: ms as u64 + 1, src: src.parse().unwrap(), dst: dst.parse().unwrap(),
//!     transport: Transport::Udp, method: None, status, reason: None, cseq: "1 INVITE".into(),
//!     summary: summary.into(), retransmission: false, protocol: Protocol::Sip,
//!     diameter: None, gtp: None, vias: 1, capture_agent: None,
//! };
//! let session = Session {
//!     call_id: "abc@host".into(), from: "sip:alice@a".into(), to: "sip:bob@b".into(),
//!     state: CallState::InCall, start: at(0), end: at(40),
//!     messages: vec![
//!         msg(0, "10.0.0.1:5060", "10.0.0.2:5060", "INVITE (SDP)", None),
//!         msg(40, "10.0.0.2:5060", "10.0.0.1:5060", "200 OK (SDP)", Some(200)),
//!     ],
//!     ..Session::empty("s1".into(), SessionKind::SipCall)
//! };
//! let ladder = Ladder::build(&[&session]);
//! let text = render_ladder(&ladder, Format::Text, None);
//! assert!(text.contains("INVITE (SDP)"));
//! assert!(render_ladder(&ladder, Format::Mermaid, None).contains("H0->>H1: INVITE (SDP)"));
//! ```

pub mod chart;
pub mod diagram;
pub mod escape;
pub mod ladder;
pub mod pcap;
pub mod svg;
pub mod text;

pub use ladder::{Ladder, RowKind};
pub use pcap::{
    export_pcap, export_pcap_parts, read_messages, read_messages_parts, CapturePart, ExportError, Exported,
};

use callflow_model::{Relation, Session};
use std::collections::{BTreeMap, HashSet, VecDeque};
use std::str::FromStr;

/// Raw messages read back from a capture, as text, by frame number.
pub type RawMessages = BTreeMap<u64, String>;

/// The most sessions a leg group gathers: a chain of B2BUAs is a handful of legs, and a
/// capture crafted to link thousands must not make one picture of them all.
pub const MAX_GROUP: usize = 64;

/// A ladder's output format.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Format {
    /// Plain text for a terminal, 100 columns wide.
    Text,
    /// A Mermaid `sequenceDiagram`.
    Mermaid,
    /// PlantUML sequence diagram source.
    Plantuml,
    /// A self-contained SVG picture.
    Svg,
    /// An HTML page: the SVG and the raw messages.
    Html,
}

impl Format {
    /// Every format, in the order the help lists them.
    pub const ALL: [Format; 5] = [Format::Text, Format::Mermaid, Format::Plantuml, Format::Svg, Format::Html];

    /// The name used on the command line and in `?format=`.
    pub fn as_str(self) -> &'static str {
        match self {
            Format::Text => "text",
            Format::Mermaid => "mermaid",
            Format::Plantuml => "plantuml",
            Format::Svg => "svg",
            Format::Html => "html",
        }
    }

    /// The HTTP content type of the output.
    pub fn content_type(self) -> &'static str {
        match self {
            Format::Text | Format::Mermaid | Format::Plantuml => "text/plain; charset=utf-8",
            Format::Svg => "image/svg+xml",
            Format::Html => "text/html; charset=utf-8",
        }
    }

    /// True when the output shows the raw messages, which are read back from the capture.
    pub fn wants_raw_messages(self) -> bool {
        matches!(self, Format::Svg | Format::Html)
    }
}

/// An unknown format name.
#[derive(Debug, thiserror::Error)]
#[error("unknown format `{0}`: use text, mermaid, plantuml, svg or html")]
pub struct UnknownFormat(pub String);

impl FromStr for Format {
    type Err = UnknownFormat;

    fn from_str(s: &str) -> Result<Format, UnknownFormat> {
        Format::ALL.into_iter().find(|f| f.as_str() == s).ok_or_else(|| UnknownFormat(s.to_string()))
    }
}

/// Draws `ladder` in `format`. `raw` gives the raw messages by frame (tooltips of the
/// SVG, the message list of the HTML page); without them the SVG's tooltips describe the
/// messages and the HTML page says each could not be read.
pub fn render_ladder(ladder: &Ladder, format: Format, raw: Option<&RawMessages>) -> String {
    match format {
        Format::Text => text::render(ladder, 100),
        Format::Mermaid => diagram::mermaid(ladder),
        Format::Plantuml => diagram::plantuml(ladder),
        Format::Svg => svg::render(ladder, raw),
        Format::Html => svg::html(ladder, raw.unwrap_or(&RawMessages::new())),
    }
}

/// True when `relation` joins two legs of one call (a B2BUA's or a proxy's).
pub fn is_leg(relation: Relation) -> bool {
    matches!(relation, Relation::Leg)
}

/// The sessions `session` names as its legs.
pub fn leg_ids(session: &Session) -> impl Iterator<Item = &str> {
    session.related.iter().filter(|r| is_leg(r.relation)).map(|r| r.session.as_str())
}

/// The leg group of `first`: it and every session reachable through leg links, each
/// fetched once by `fetch` (from a document, or a store), at most [`MAX_GROUP`], in start
/// order. A link to a session `fetch` does not find is skipped.
pub fn collect_group<E>(
    first: Session,
    mut fetch: impl FnMut(&str) -> Result<Option<Session>, E>,
) -> Result<Vec<Session>, E> {
    let mut seen: HashSet<String> = HashSet::from([first.id.clone()]);
    let mut queue: VecDeque<String> = leg_ids(&first).map(str::to_string).collect();
    let mut group = vec![first];
    while let Some(id) = queue.pop_front() {
        if group.len() >= MAX_GROUP {
            break;
        }
        if !seen.insert(id.clone()) {
            continue;
        }
        if let Some(s) = fetch(&id)? {
            queue.extend(leg_ids(&s).filter(|l| !seen.contains(*l)).map(str::to_string));
            group.push(s);
        }
    }
    group.sort_by(|a, b| (a.start, &a.id).cmp(&(b.start, &b.id)));
    Ok(group)
}

/// The leg group of session `id` among `sessions` (a whole document): links are followed
/// both ways, as a leg may name its partner without being named back. `None` when no
/// session has that id.
pub fn leg_group<'a>(sessions: &'a [Session], id: &str) -> Option<Vec<&'a Session>> {
    let first = sessions.iter().position(|s| s.id == id)?;
    let mut members = vec![first];
    let mut k = 0;
    while k < members.len() && members.len() < MAX_GROUP {
        let me = &sessions[members[k]];
        for (i, other) in sessions.iter().enumerate() {
            if members.contains(&i) {
                continue;
            }
            let linked = leg_ids(me).any(|l| l == other.id) || leg_ids(other).any(|l| l == me.id);
            if linked && members.len() < MAX_GROUP {
                members.push(i);
            }
        }
        k += 1;
    }
    let mut group: Vec<&Session> = members.into_iter().map(|i| &sessions[i]).collect();
    group.sort_by(|a, b| (a.start, &a.id).cmp(&(b.start, &b.id)));
    Some(group)
}
