//! The ladder as a self-contained SVG picture, and as an HTML page holding it with the raw messages.
//!
//! Hosts are boxed columns with lifelines; each message is an arrow coloured by protocol
//! and answer class (requests blue, 1xx grey, 2xx green, 3xx-6xx red, Diameter violet,
//! GTP orange), with its time of day and offset on the left and its frame number on the
//! right. A retransmission is dashed, faded and marked `↻`. A media stream is a teal
//! arrow where it starts, labelled with codec, packets, loss, MOS and problems, and a bar
//! beside the receiving lifeline for as long as it flows, coloured by MOS (green from 4,
//! amber from 3.6, red below). Each row's `<title>` is its tooltip: the raw message when
//! given, else where and when it went.
//!
//! The picture needs nothing outside itself (styles inline, generic font families) and
//! every piece of capture text is escaped ([`crate::escape::xml`]): a SIP header holding
//! `</text><script>` is drawn as those characters.

use crate::escape::{clock, date_time, elide, relative, xml};
use crate::ladder::{describe, Ladder, RowKind};
use crate::RawMessages;
use callflow_model::Protocol;
use std::fmt::Write;

const CHAR_W: f64 = 7.0;
const LEFT: f64 = 170.0;
const RIGHT: f64 = 70.0;
const TOP: f64 = 118.0;
const ROW_H: f64 = 36.0;
const MIN_GAP: f64 = 190.0;
const MAX_GAP: f64 = 380.0;
const MIN_WIDTH: f64 = 860.0;

/// Colours of the picture, by what a row is.
mod colour {
    pub const REQUEST: &str = "#1d4ed8";
    pub const PROVISIONAL: &str = "#6b7280";
    pub const SUCCESS: &str = "#15803d";
    pub const FAILURE: &str = "#b91c1c";
    pub const DIAMETER: &str = "#7c3aed";
    pub const GTP: &str = "#c2410c";
    pub const MEDIA: &str = "#0f766e";
    pub const MOS_FAIR: &str = "#ca8a04";
    pub const ALL: [&str; 8] = [REQUEST, PROVISIONAL, SUCCESS, FAILURE, DIAMETER, GTP, MEDIA, MOS_FAIR];
}

fn message_colour(protocol: Protocol, status: Option<u16>) -> &'static str {
    match protocol {
        Protocol::Diameter => colour::DIAMETER,
        Protocol::Gtp => colour::GTP,
        _ => match status {
            None => colour::REQUEST,
            Some(100..=199) => colour::PROVISIONAL,
            Some(200..=299) => colour::SUCCESS,
            Some(_) => colour::FAILURE,
        },
    }
}

/// The colour of a stream by its MOS.
pub(crate) fn mos_colour(mos: Option<f64>) -> &'static str {
    match mos {
        None => colour::MEDIA,
        Some(m) if m >= 4.0 => colour::SUCCESS,
        Some(m) if m >= 3.6 => colour::MOS_FAIR,
        Some(_) => colour::FAILURE,
    }
}

/// The ladder as a standalone SVG document. `raw` gives the tooltip of each message by
/// frame number (the raw text read back from the capture); without it a tooltip says
/// where and when the message went.
pub fn render(ladder: &Ladder, raw: Option<&RawMessages>) -> String {
    draw(ladder, raw, false)
}

fn draw(ladder: &Ladder, raw: Option<&RawMessages>, links: bool) -> String {
    let n = ladder.columns.len().max(1);
    // The lane width the longest single-lane label wants, within bounds: long labels are
    // cut (the tooltip has them whole).
    let longest = ladder
        .rows
        .iter()
        .filter(|r| r.from.abs_diff(r.to) <= 1)
        .map(|r| match &r.kind {
            RowKind::Message(m) => m.summary.chars().count() + if m.retransmission { 2 } else { 0 },
            RowKind::Media(i) => {
                let m = &ladder.media[*i];
                m.headline().chars().count().max(m.details().chars().count())
            }
        })
        .max()
        .unwrap_or(0);
    // Host labels are bold, a little wider per character; an IPv6 address is 39 at most.
    let host = ladder.columns.iter().map(|c| c.label.chars().count()).max().unwrap_or(0);
    let gap = (longest as f64 * CHAR_W + 40.0).max(host as f64 * 7.6 + 44.0).clamp(MIN_GAP, MAX_GAP);
    let x = |i: usize| LEFT + gap / 2.0 + i as f64 * gap;
    // Wide enough for the title and the legend however few the hosts.
    let width = (LEFT + gap * n as f64 + RIGHT).max(MIN_WIDTH);
    let rows_end = TOP + ladder.rows.len() as f64 * ROW_H;
    let footer = 30.0 + 18.0 * (1 + ladder.sessions.len()) as f64;
    let height = rows_end + footer;
    let y_row = |i: usize| TOP + i as f64 * ROW_H + ROW_H / 2.0 + 4.0;

    let mut s = String::with_capacity(4096 + ladder.rows.len() * 600);
    let _ = write!(
        s,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{width:.0}" height="{height:.0}" viewBox="0 0 {width:.0} {height:.0}" font-family="DejaVu Sans Mono, Menlo, Consolas, monospace" font-size="12">"#
    );
    s.push_str("<style>.lbl{paint-order:stroke;stroke:#fff;stroke-width:4px;stroke-linejoin:round}.t{fill:#374151;font-size:11px}.f{fill:#9ca3af;font-size:10px}.row:hover .hit{fill:#fef3c7}.hit{fill:transparent}</style>");
    s.push_str("<defs>");
    for c in colour::ALL {
        let _ = write!(
            s,
            r#"<marker id="a{}" viewBox="0 0 10 10" refX="9" refY="5" markerUnits="userSpaceOnUse" markerWidth="10" markerHeight="10" orient="auto-start-reverse"><path d="M0,0L10,5L0,10z" fill="{c}"/></marker>"#,
            &c[1..]
        );
    }
    s.push_str("</defs>");
    let _ = write!(s, r##"<rect width="100%" height="100%" fill="#ffffff"/>"##);
    let title_chars = ((width - 24.0) / 9.2) as usize;
    let _ = write!(
        s,
        r##"<text x="12" y="24" font-size="15" font-weight="bold" fill="#111827">{}</text>"##,
        xml(&elide(&ladder.title, title_chars))
    );
    let _ = write!(
        s,
        r##"<text x="12" y="42" class="t">start {} · {} messages · {} media streams</text>"##,
        xml(&date_time(ladder.start)),
        ladder.rows.len() - ladder.media.len(),
        ladder.media.len()
    );
    // Zebra stripes, then lifelines, then host boxes over the top of them.
    for i in (0..ladder.rows.len()).step_by(2) {
        let _ = write!(
            s,
            r##"<rect x="0" y="{:.1}" width="{width:.0}" height="{ROW_H}" fill="#f9fafb"/>"##,
            TOP + i as f64 * ROW_H
        );
    }
    let box_w = gap - 24.0;
    for (i, c) in ladder.columns.iter().enumerate() {
        let cx = x(i);
        let _ = write!(
            s,
            r##"<line x1="{cx:.1}" y1="96" x2="{cx:.1}" y2="{rows_end:.1}" stroke="#9ca3af" stroke-width="1.5"/>"##
        );
        let _ = write!(
            s,
            r##"<rect x="{:.1}" y="56" width="{box_w:.1}" height="40" rx="6" fill="#eef2ff" stroke="#6366f1"/>"##,
            cx - box_w / 2.0
        );
        let chars = (box_w / CHAR_W) as usize;
        let _ = write!(
            s,
            r##"<text x="{cx:.1}" y="73" text-anchor="middle" font-weight="bold" fill="#1e1b4b"><title>{}</title>{}</text>"##,
            xml(&c.label),
            xml(&elide(&c.label, chars))
        );
        let ports: Vec<String> = c.ports.iter().map(|p| format!(":{p}")).collect();
        let ports = if ports.is_empty() { "media".to_string() } else { ports.join(" ") };
        let _ = write!(
            s,
            r##"<text x="{cx:.1}" y="89" text-anchor="middle" class="t">{}</text>"##,
            xml(&elide(&ports, chars))
        );
    }
    // Media bars beside the receiving lifeline, under the arrows.
    for (k, row) in ladder.rows.iter().enumerate() {
        let RowKind::Media(i) = row.kind else { continue };
        let m = &ladder.media[i];
        let end = ladder.row_after(m.end);
        let (top, bottom) = (y_row(k), (TOP + end as f64 * ROW_H).max(y_row(k) + 6.0));
        let bx = if m.to > m.from { x(m.to) - 9.0 } else { x(m.to) + 3.0 };
        let _ = write!(
            s,
            r#"<rect x="{bx:.1}" y="{top:.1}" width="6" height="{:.1}" fill="{}" opacity="0.55"><title>{}</title></rect>"#,
            bottom - top,
            mos_colour(m.mos),
            xml(&format!("{} → {} until {}", m.src, m.dst, clock(m.end)))
        );
    }
    for (k, row) in ladder.rows.iter().enumerate() {
        let y = y_row(k);
        let (x1, x2) = (x(row.from), x(row.to));
        let (label, tip, col, dashed, frame) = match &row.kind {
            RowKind::Message(m) => {
                let tip = raw
                    .and_then(|r| r.get(&m.frame))
                    .map_or_else(|| describe(m, row.ts, ladder.start), |text| text.clone());
                let label = if m.retransmission { format!("↻ {}", m.summary) } else { m.summary.clone() };
                (label, tip, message_colour(m.protocol, m.status), m.retransmission, Some(m.frame))
            }
            RowKind::Media(i) => {
                let m = &ladder.media[*i];
                let tip = format!(
                    "{} → {}\n{} ssrc {:#010x}\n{} packets, lost {}, max jitter {:.1} ms\nfrom {} to {}{}",
                    m.src,
                    m.dst,
                    m.codec,
                    m.ssrc,
                    m.packets,
                    m.lost,
                    m.max_jitter_ms,
                    clock(m.start),
                    clock(m.end),
                    m.mos.map(|v| format!("\nMOS {v:.2}")).unwrap_or_default()
                );
                (m.headline(), tip, colour::MEDIA, false, None)
            }
        };
        let open =
            if links { frame.map(|f| format!(r##"<a href="#f{f}">"##)).unwrap_or_default() } else { String::new() };
        let _ = write!(s, r#"<g class="row">{open}<title>{}</title>"#, xml(&tip));
        let _ = write!(
            s,
            r#"<rect class="hit" x="0" y="{:.1}" width="{width:.0}" height="{ROW_H}"/>"#,
            TOP + k as f64 * ROW_H
        );
        let _ = write!(
            s,
            r#"<text x="10" y="{:.1}" class="t">{}</text><text x="{:.1}" y="{:.1}" class="t" text-anchor="end">{}</text>"#,
            y + 4.0,
            clock(row.ts),
            LEFT - 14.0,
            y + 4.0,
            xml(&relative(row.ts, ladder.start))
        );
        let opacity = if dashed { r#" opacity="0.6""# } else { "" };
        let dash = if dashed {
            r#" stroke-dasharray="6 4""#
        } else if matches!(row.kind, RowKind::Media(_)) {
            r#" stroke-dasharray="2 3""#
        } else {
            ""
        };
        let stroke = if matches!(row.kind, RowKind::Media(_)) { 2.5 } else { 1.6 };
        if x1 == x2 {
            // A host talking to itself: a loop out to the right and back.
            let _ = write!(
                s,
                r#"<path d="M{x1:.1},{:.1}h40v12h-38" fill="none" stroke="{col}" stroke-width="{stroke}"{dash}{opacity} marker-end="url(#a{})"/>"#,
                y - 6.0,
                &col[1..]
            );
        } else {
            let (from, to) = if x2 > x1 { (x1 + 2.0, x2 - 2.0) } else { (x1 - 2.0, x2 + 2.0) };
            let _ = write!(
                s,
                r#"<line x1="{from:.1}" y1="{y:.1}" x2="{to:.1}" y2="{y:.1}" stroke="{col}" stroke-width="{stroke}"{dash}{opacity} marker-end="url(#a{})"/>"#,
                &col[1..]
            );
        }
        let room = ((x1 - x2).abs().max(gap) - 24.0) / CHAR_W;
        let mid = if x1 == x2 { x1 + 44.0 } else { (x1 + x2) / 2.0 };
        let anchor = if x1 == x2 { "start" } else { "middle" };
        let _ = write!(
            s,
            r#"<text x="{mid:.1}" y="{:.1}" text-anchor="{anchor}" class="lbl" fill="{col}"{opacity}>{}</text>"#,
            y - 6.0,
            xml(&elide(&label, room as usize))
        );
        if let RowKind::Media(i) = row.kind {
            // The stream's figures under its arrow, smaller: the headline above says codec and MOS.
            let _ = write!(
                s,
                r#"<text x="{mid:.1}" y="{:.1}" text-anchor="{anchor}" class="lbl" fill="{col}" font-size="11">{}</text>"#,
                y + 13.0,
                xml(&elide(&ladder.media[i].details(), (room * 12.0 / 11.0) as usize))
            );
        }
        if let Some(f) = frame {
            let _ = write!(
                s,
                r#"<text x="{:.1}" y="{:.1}" class="f" text-anchor="end">#{f}</text>"#,
                width - 10.0,
                y + 4.0
            );
        }
        s.push_str(if open.is_empty() { "</g>" } else { "</a></g>" });
    }
    // Footer: one line per session (id, Call-ID, state), then the legend.
    let mut y = rows_end + 24.0;
    for info in &ladder.sessions {
        let mut text = format!("{} session {} · {}", info.kind.as_str(), info.id, info.state);
        if !info.call_id.is_empty() {
            text.push_str(&format!(" · Call-ID {}", info.call_id));
        }
        if !info.problems.is_empty() {
            let names: Vec<&str> = info.problems.iter().map(|p| p.as_str()).collect();
            text.push_str(&format!(" · problems: {}", names.join(", ")));
        }
        let _ = write!(
            s,
            r#"<text x="12" y="{y:.1}" class="t">{}</text>"#,
            xml(&elide(&text, ((width - 24.0) / 6.6) as usize))
        );
        y += 18.0;
    }
    let has = |p: Protocol| ladder.rows.iter().any(|r| matches!(&r.kind, RowKind::Message(m) if m.protocol == p));
    let legend = [
        (colour::REQUEST, "request", true),
        (colour::PROVISIONAL, "1xx", true),
        (colour::SUCCESS, "2xx / MOS ≥ 4", true),
        (colour::FAILURE, "3xx-6xx / MOS < 3.6", true),
        (colour::MOS_FAIR, "MOS 3.6-4", true),
        (colour::MEDIA, "media", true),
        (colour::DIAMETER, "Diameter", has(Protocol::Diameter)),
        (colour::GTP, "GTP", has(Protocol::Gtp)),
    ];
    let mut lx = 12.0;
    for (c, what, _) in legend.into_iter().filter(|l| l.2) {
        let _ = write!(
            s,
            r#"<rect x="{lx:.1}" y="{:.1}" width="10" height="10" fill="{c}"/><text x="{:.1}" y="{y:.1}" class="t">{}</text>"#,
            y - 9.0,
            lx + 14.0,
            xml(what)
        );
        lx += 14.0 + what.chars().count() as f64 * 6.6 + 18.0;
    }
    let _ = write!(s, r#"<text x="{lx:.1}" y="{y:.1}" class="t">↻ dashed: retransmission</text>"#);
    s.push_str("</svg>");
    s
}

/// The ladder as an HTML page: the SVG (each message a link to its text) and below it
/// every message's raw text (`raw`, by frame number), escaped. The page loads nothing
/// and runs nothing (its Content-Security-Policy forbids both).
pub fn html(ladder: &Ladder, raw: &RawMessages) -> String {
    let mut s = String::with_capacity(8192);
    s.push_str("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">");
    s.push_str(
        "<meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'none'; style-src 'unsafe-inline'\">",
    );
    let _ = write!(s, "<title>{}</title>", xml(&ladder.title));
    s.push_str("<style>body{font-family:sans-serif;margin:16px;color:#111827}pre{background:#f3f4f6;padding:8px;overflow-x:auto;font-size:12px}details{margin:4px 0}summary{cursor:pointer;font-family:monospace}:target{outline:2px solid #f59e0b}</style>");
    s.push_str("</head><body>\n");
    let _ = writeln!(s, "<h1>{}</h1>", xml(&ladder.title));
    s.push_str(&draw(ladder, Some(raw), true));
    s.push_str("\n<h2>Messages</h2>\n");
    for row in &ladder.rows {
        let RowKind::Message(m) = &row.kind else { continue };
        let _ = writeln!(
            s,
            "<details id=\"f{}\"><summary>#{} {} {} {} → {} {}</summary><pre>{}</pre></details>",
            m.frame,
            m.frame,
            clock(row.ts),
            xml(&relative(row.ts, ladder.start)),
            m.src,
            m.dst,
            xml(&m.summary),
            xml(raw.get(&m.frame).map_or("(the message could not be read back from the capture)", String::as_str))
        );
    }
    s.push_str("</body></html>\n");
    s
}
