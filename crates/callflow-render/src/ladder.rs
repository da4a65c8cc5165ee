//! The ladder (sequence) diagram of one session or a leg group, laid out once for every output format.
//!
//! [`Ladder::build`] turns sessions into columns (the hosts, in order of appearance) and
//! rows (the messages in time order, and each media stream where it starts); each format
//! (`text`, `mermaid`, `plantuml`, `svg`, `html`) only draws that layout. Hosts are IP
//! addresses; when a message goes from an address to another port of the same address
//! (two user agents on one machine, a test on loopback) the columns are socket addresses
//! instead, so that no message is drawn from a column to itself.

use callflow_model::{CallState, MediaStream, Message, Problem, Protocol, Session, SessionKind, Timestamp, Transport};
use std::net::{IpAddr, SocketAddr};

/// A ladder diagram's layout: columns and rows, ready to draw.
#[derive(Clone, Debug)]
pub struct Ladder {
    /// One line naming what the diagram shows (Call-ID, From, To, state; the legs of a group).
    pub title: String,
    /// The hosts, in order of appearance.
    pub columns: Vec<Column>,
    /// Messages and media starts, in time order (then frame order).
    pub rows: Vec<Row>,
    /// The media streams, in the order of their rows.
    pub media: Vec<MediaSpan>,
    /// The first row's time, origin of the relative times.
    pub start: Timestamp,
    /// The sessions drawn, in start order.
    pub sessions: Vec<SessionInfo>,
}

/// What the diagram says of each session it draws.
#[derive(Clone, Debug)]
pub struct SessionInfo {
    /// The session's id.
    pub id: String,
    /// What kind of session.
    pub kind: SessionKind,
    /// Its Call-ID.
    pub call_id: String,
    /// Its state.
    pub state: CallState,
    /// What is wrong with it.
    pub problems: Vec<Problem>,
}

/// A host of the diagram.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Column {
    /// The host's address (with its port when the columns are socket addresses).
    pub label: String,
    /// The ports its signalling used, in order of appearance (empty for a media-only host).
    pub ports: Vec<u16>,
}

/// One row of the diagram: an arrow from one column to another.
#[derive(Clone, Debug)]
pub struct Row {
    /// When: the message's capture time, or the stream's first packet.
    pub ts: Timestamp,
    /// The sending column.
    pub from: usize,
    /// The receiving column.
    pub to: usize,
    /// What the arrow is.
    pub kind: RowKind,
}

/// What a [`Row`] shows.
#[derive(Clone, Debug)]
pub enum RowKind {
    /// A signalling message.
    Message(MessageRow),
    /// The start of media stream number `n` of [`Ladder::media`].
    Media(usize),
}

/// A message's row.
#[derive(Clone, Debug)]
pub struct MessageRow {
    /// Frame number in the capture.
    pub frame: u64,
    /// Sender address.
    pub src: SocketAddr,
    /// Receiver address.
    pub dst: SocketAddr,
    /// Transport.
    pub transport: Transport,
    /// The message's protocol.
    pub protocol: Protocol,
    /// The one-line summary (`INVITE (SDP)`, `200 OK`).
    pub summary: String,
    /// The CSeq header value.
    pub cseq: String,
    /// Status code, for responses.
    pub status: Option<u16>,
    /// True for a retransmission.
    pub retransmission: bool,
    /// Index of the session in [`Ladder::sessions`].
    pub session: usize,
}

/// A media stream drawn as a span from its first to its last packet.
#[derive(Clone, Debug)]
pub struct MediaSpan {
    /// Sending column.
    pub from: usize,
    /// Receiving column.
    pub to: usize,
    /// Sender address.
    pub src: SocketAddr,
    /// Receiver address.
    pub dst: SocketAddr,
    /// First packet.
    pub start: Timestamp,
    /// Last packet.
    pub end: Timestamp,
    /// Codec name.
    pub codec: String,
    /// SSRC.
    pub ssrc: u32,
    /// Packets received.
    pub packets: u64,
    /// Packets lost.
    pub lost: i64,
    /// Largest interarrival jitter, ms.
    pub max_jitter_ms: f64,
    /// The E-model MOS, when scored.
    pub mos: Option<f64>,
    /// What is wrong with the stream.
    pub problems: Vec<Problem>,
    /// The RFC 4733 digits, in order.
    pub dtmf: String,
}

impl MediaSpan {
    /// One line: `RTP PCMU · MOS 4.31 · 1500 pkts · lost 3 · high_jitter`.
    pub fn label(&self) -> String {
        format!("{} · {}", self.headline(), self.details())
    }

    /// The codec and MOS: `RTP PCMU · MOS 4.31`.
    pub fn headline(&self) -> String {
        match self.mos {
            Some(mos) => format!("RTP {} · MOS {mos:.2}", self.codec),
            None => format!("RTP {}", self.codec),
        }
    }

    /// Packets, loss, DTMF and problems: `1500 pkts · lost 3 · DTMF 12# · high_jitter`.
    pub fn details(&self) -> String {
        let mut s = format!("{} pkts", self.packets);
        if self.lost != 0 {
            s.push_str(&format!(" · lost {}", self.lost));
        }
        if !self.dtmf.is_empty() {
            s.push_str(&format!(" · DTMF {}", self.dtmf));
        }
        for p in &self.problems {
            s.push_str(" · ");
            s.push_str(p.as_str());
        }
        s
    }
}

/// How columns are keyed: by host, or by socket address when a host talks to itself.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Key {
    Ip(IpAddr),
    Addr(SocketAddr),
}

struct Columns {
    by_addr: bool,
    keys: Vec<Key>,
    columns: Vec<Column>,
}

impl Columns {
    fn signalling(&mut self, addr: SocketAddr) -> usize {
        let key = if self.by_addr { Key::Addr(addr) } else { Key::Ip(addr.ip()) };
        let i = self.find_or_add(key, addr);
        if !self.columns[i].ports.contains(&addr.port()) {
            self.columns[i].ports.push(addr.port());
        }
        i
    }

    fn media(&mut self, addr: SocketAddr) -> usize {
        if self.by_addr {
            // The exact address if signalling used it, else the host's first column.
            if let Some(i) = self.keys.iter().position(|k| *k == Key::Addr(addr)) {
                return i;
            }
            if let Some(i) = self.keys.iter().position(|k| matches!(k, Key::Addr(a) if a.ip() == addr.ip())) {
                return i;
            }
            return self.find_or_add(Key::Addr(addr), addr);
        }
        self.find_or_add(Key::Ip(addr.ip()), addr)
    }

    fn find_or_add(&mut self, key: Key, addr: SocketAddr) -> usize {
        if let Some(i) = self.keys.iter().position(|k| *k == key) {
            return i;
        }
        self.keys.push(key);
        let label = match key {
            Key::Ip(ip) => ip.to_string(),
            Key::Addr(_) => addr.to_string(),
        };
        self.columns.push(Column { label, ports: Vec::new() });
        self.keys.len() - 1
    }
}

impl Ladder {
    /// The layout of `sessions` (one, or a leg group) drawn together.
    pub fn build(sessions: &[&Session]) -> Ladder {
        let mut sessions: Vec<&Session> = sessions.to_vec();
        sessions.sort_by(|a, b| (a.start, &a.id).cmp(&(b.start, &b.id)));
        let mut messages: Vec<(usize, &Message)> =
            sessions.iter().enumerate().flat_map(|(i, s)| s.messages.iter().map(move |m| (i, m))).collect();
        messages.sort_by_key(|(_, m)| (m.ts, m.frame));
        let mut streams: Vec<&MediaStream> = sessions.iter().flat_map(|s| s.media.iter()).collect();
        streams.sort_by_key(|m| (m.start, m.src, m.dst, m.ssrc));
        let by_addr = messages.iter().any(|(_, m)| m.src.ip() == m.dst.ip());
        let mut cols = Columns { by_addr, keys: Vec::new(), columns: Vec::new() };
        let mut rows = Vec::with_capacity(messages.len() + streams.len());
        for (session, m) in &messages {
            let from = cols.signalling(m.src);
            let to = cols.signalling(m.dst);
            rows.push(Row {
                ts: m.ts,
                from,
                to,
                kind: RowKind::Message(MessageRow {
                    frame: m.frame,
                    src: m.src,
                    dst: m.dst,
                    transport: m.transport,
                    protocol: m.protocol,
                    summary: m.summary.clone(),
                    cseq: m.cseq.clone(),
                    status: m.status,
                    retransmission: m.retransmission,
                    session: *session,
                }),
            });
        }
        let mut media = Vec::with_capacity(streams.len());
        for s in streams {
            let from = cols.media(s.src);
            let to = cols.media(s.dst);
            rows.push(Row { ts: s.start, from, to, kind: RowKind::Media(media.len()) });
            media.push(MediaSpan {
                from,
                to,
                src: s.src,
                dst: s.dst,
                start: s.start,
                end: s.end,
                codec: s.codec.clone(),
                ssrc: s.ssrc,
                packets: s.packets,
                lost: s.lost,
                max_jitter_ms: s.max_jitter_ms,
                mos: s.quality.as_ref().map(|q| q.mos),
                problems: s.problems.clone(),
                dtmf: s.events.iter().map(|e| e.digit.as_str()).collect(),
            });
        }
        // Stable: a stream starting at a message's instant comes after it.
        rows.sort_by_key(|r| r.ts);
        let start = rows.first().map_or_else(|| sessions.first().map(|s| s.start).unwrap_or_default(), |r| r.ts);
        let title = match &sessions[..] {
            [] => "no session".to_string(),
            [s] => {
                if s.call_id.is_empty() {
                    // Diameter, GTP, orphan media: no Call-ID, From or To.
                    format!("{} session {} · {}", s.kind.as_str(), s.id, s.state)
                } else {
                    format!("{} · {} → {} · {}", s.call_id, s.from, s.to, s.state)
                }
            }
            many => format!(
                "{} legs · {}",
                many.len(),
                many.iter()
                    .map(|s| if s.call_id.is_empty() { s.id.as_str() } else { s.call_id.as_str() })
                    .collect::<Vec<_>>()
                    .join(" + ")
            ),
        };
        Ladder {
            title,
            columns: cols.columns,
            rows,
            media,
            start,
            sessions: sessions
                .iter()
                .map(|s| SessionInfo {
                    id: s.id.clone(),
                    kind: s.kind,
                    call_id: s.call_id.clone(),
                    state: s.state,
                    problems: s.problems.clone(),
                })
                .collect(),
        }
    }

    /// The index of the first row after `ts` (where a span ending at `ts` stops).
    pub fn row_after(&self, ts: Timestamp) -> usize {
        self.rows.partition_point(|r| r.ts <= ts)
    }
}

/// What a message's tooltip says when the raw message is not at hand: where and when it
/// went, and its summary.
pub fn describe(row: &MessageRow, ts: Timestamp, origin: Timestamp) -> String {
    let retrans = if row.retransmission { " (retransmission)" } else { "" };
    format!(
        "frame {} · {} ({})\n{} → {} over {}\n{}{retrans}\nCSeq: {}",
        row.frame,
        crate::escape::date_time(ts),
        crate::escape::relative(ts, origin),
        row.src,
        row.dst,
        transport_name(row.transport),
        row.summary,
        row.cseq
    )
}

/// The transport's name as SIP writes it.
pub fn transport_name(t: Transport) -> &'static str {
    match t {
        Transport::Udp => "UDP",
        Transport::Tcp => "TCP",
        Transport::Sctp => "SCTP",
        Transport::Ws => "WS",
        Transport::Tls => "TLS",
        Transport::Wss => "WSS",
        _ => "?",
    }
}
