//! The ladder as plain text for a terminal: one line per message, fitted to a width (100 columns by default).
//!
//! Each line starts with the time of day (UTC) and the time since the first row, then the
//! hosts' lifelines with the arrow between two of them and its label, cut with `…` to the
//! room the arrow has. Retransmissions are drawn `~~~` and marked `[rtx]`, media `===`;
//! the media's details (codec, packets, loss, jitter, MOS, problems) follow the diagram,
//! one line each. Capture text loses its control characters: a SIP header cannot send
//! escape sequences to the terminal.

use crate::escape::{clock, date_time, elide, relative, terminal};
use crate::ladder::{Ladder, RowKind};

/// Width of the time prefix: `HH:MM:SS.mmm` and `+ss.mmms` right-aligned, then a space.
const PREFIX: usize = 12 + 1 + 10 + 1;
/// The narrowest lane between two lifelines.
const MIN_GAP: usize = 14;
/// Room left of the first lifeline and right of the last, for the host labels.
const MARGIN: usize = 10;

/// The ladder as text at most `width` characters wide (wider only when the hosts do not
/// fit at the narrowest lane, 14 characters each).
pub fn render(ladder: &Ladder, width: usize) -> String {
    let n = ladder.columns.len().max(1);
    // Half a lane's room for the labels outside the first and last lifelines.
    let gap = (width.saturating_sub(PREFIX + 2 * MARGIN) / (n - 1).max(1)).max(MIN_GAP);
    let center = |i: usize| PREFIX + MARGIN + i * gap;
    let line_width = PREFIX + 2 * MARGIN + gap * (n - 1) + 1;
    let mut out = String::new();
    out.push_str(&elide(&terminal(&ladder.title), width));
    out.push('\n');
    out.push_str(&format!("start {}\n\n", date_time(ladder.start)));
    // Host labels, then their signalling ports, centred on the lifelines.
    let mut head = vec![' '; line_width];
    let mut ports = vec![' '; line_width];
    for (i, c) in ladder.columns.iter().enumerate() {
        let room = if n == 1 { 2 * MARGIN } else { gap - 1 };
        put_centred(&mut head, center(i), &elide(&c.label, room));
        let p: Vec<String> = c.ports.iter().map(|p| format!(":{p}")).collect();
        put_centred(&mut ports, center(i), &elide(&p.join(","), room));
    }
    push_line(&mut out, &head);
    push_line(&mut out, &ports);
    let lifelines = || {
        let mut l = vec![' '; line_width];
        for i in 0..ladder.columns.len() {
            l[center(i)] = '|';
        }
        l
    };
    for row in &ladder.rows {
        let mut line = lifelines();
        let stamp = format!("{} {:>10} ", clock(row.ts), relative(row.ts, ladder.start));
        for (i, c) in stamp.chars().take(PREFIX).enumerate() {
            line[i] = c;
        }
        let (label, fill) = match &row.kind {
            RowKind::Message(m) => {
                let mut label = terminal(&m.summary);
                if m.retransmission {
                    label.push_str(" [rtx]");
                }
                (label, if m.retransmission { '~' } else { '-' })
            }
            RowKind::Media(i) => (terminal(&ladder.media[*i].label()), '='),
        };
        let (a, b) = (center(row.from), center(row.to));
        if a == b {
            // A host talking to itself: a short loop to the right of its lifeline.
            let text = format!("<-{}", elide(&label, gap.saturating_sub(4)));
            for (k, c) in text.chars().enumerate() {
                if let Some(slot) = line.get_mut(a + 1 + k) {
                    *slot = c;
                }
            }
        } else {
            let (lo, hi) = (a.min(b), a.max(b));
            for slot in &mut line[lo + 1..hi] {
                *slot = fill;
            }
            if b > a {
                line[hi - 1] = '>';
            } else {
                line[lo + 1] = '<';
            }
            let room = hi - lo - 1;
            let fit = room.saturating_sub(4);
            // A stream's label shrinks to what matters first (codec and MOS) before it is cut.
            let label = match &row.kind {
                RowKind::Media(i) => {
                    let m = &ladder.media[*i];
                    let short = match m.mos {
                        Some(mos) => format!("{} {mos:.2}", terminal(&m.codec)),
                        None => terminal(&m.codec),
                    };
                    [label, terminal(&m.headline()), short]
                        .into_iter()
                        .find(|l| l.chars().count() <= fit)
                        .unwrap_or_else(|| format!("{:.2}", m.mos.unwrap_or(0.0)))
                }
                RowKind::Message(_) => label,
            };
            let text = elide(&label, fit);
            let len = text.chars().count();
            let at = lo + 1 + (room - len) / 2;
            for (k, c) in text.chars().enumerate() {
                line[at + k] = c;
            }
        }
        push_line(&mut out, &line);
    }
    push_line(&mut out, &lifelines());
    if !ladder.media.is_empty() {
        out.push_str("\nmedia:\n");
        for m in &ladder.media {
            let secs = m.end.millis_since(m.start) / 1000.0;
            out.push_str(&elide(&format!("  {} {} → {}", clock(m.start), m.src, m.dst), width));
            out.push('\n');
            let line = format!(
                "      {} · ssrc {:#010x} · {:.1} s · jitter max {:.1} ms",
                terminal(&m.label()),
                m.ssrc,
                secs,
                m.max_jitter_ms
            );
            out.push_str(&elide(&line, width));
            out.push('\n');
        }
    }
    for info in ladder.sessions.iter().filter(|s| !s.problems.is_empty()) {
        let names: Vec<&str> = info.problems.iter().map(|p| p.as_str()).collect();
        let line = format!("problems of {}: {}", terminal(&info.call_id), names.join(", "));
        out.push_str(&elide(&line, width));
        out.push('\n');
    }
    out.push_str("\n--> message   ~~> retransmission [rtx]   ==> media (RTP)\n");
    out
}

fn put_centred(line: &mut [char], center: usize, text: &str) {
    let len = text.chars().count();
    let start = center.saturating_sub(len / 2);
    for (k, c) in text.chars().enumerate() {
        if let Some(slot) = line.get_mut(start + k) {
            *slot = c;
        }
    }
}

fn push_line(out: &mut String, line: &[char]) {
    let s: String = line.iter().collect();
    out.push_str(s.trim_end());
    out.push('\n');
}
