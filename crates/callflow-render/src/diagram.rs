//! The ladder as Mermaid (`sequenceDiagram`) and PlantUML source, for documents and wikis that draw them.
//!
//! Participants are named `H0`, `H1`... with the host as their label, so no capture text
//! is ever an identifier; every label goes through the escaping of its language
//! ([`crate::escape::mermaid`], [`crate::escape::plantuml`]). Requests are solid arrows,
//! answers dashed, retransmissions marked `[rtx]`; a media stream is an open arrow with a
//! note saying its codec, quality and problems.

use crate::escape::{self, clock, relative};
use crate::ladder::{Ladder, RowKind};
use std::fmt::Write;

/// The ladder as a Mermaid `sequenceDiagram`.
pub fn mermaid(ladder: &Ladder) -> String {
    let mut out = String::from("sequenceDiagram\n");
    let _ = writeln!(out, "    title {}", escape::mermaid(&ladder.title));
    for (i, c) in ladder.columns.iter().enumerate() {
        let _ = writeln!(out, "    participant H{i} as {}", escape::mermaid(&c.label));
    }
    for row in &ladder.rows {
        let when = format!("{} {}", clock(row.ts), relative(row.ts, ladder.start));
        match &row.kind {
            RowKind::Message(m) => {
                let arrow = if m.status.is_some() { "-->>" } else { "->>" };
                let rtx = if m.retransmission { " [rtx]" } else { "" };
                let _ =
                    writeln!(out, "    H{}{arrow}H{}: {}{rtx} ({when})", row.from, row.to, escape::mermaid(&m.summary));
            }
            RowKind::Media(i) => {
                let span = &ladder.media[*i];
                let _ = writeln!(out, "    H{}-)H{}: {} ({when})", row.from, row.to, escape::mermaid(&span.label()));
            }
        }
    }
    out
}

/// The ladder as PlantUML sequence diagram source (`@startuml` ... `@enduml`).
pub fn plantuml(ladder: &Ladder) -> String {
    let mut out = String::from("@startuml\n");
    let _ = writeln!(out, "title {}", escape::plantuml(&ladder.title));
    for (i, c) in ladder.columns.iter().enumerate() {
        // Inside quotes only `"` would matter, and it is escaped with the rest.
        let _ = writeln!(out, "participant \"{}\" as H{i}", escape::plantuml(&c.label));
    }
    for row in &ladder.rows {
        let when = format!("{} {}", clock(row.ts), relative(row.ts, ladder.start));
        match &row.kind {
            RowKind::Message(m) => {
                let arrow = match (m.status.is_some(), m.retransmission) {
                    (_, true) => "-[#888888]>",
                    (true, false) => "-->",
                    (false, false) => "->",
                };
                let rtx = if m.retransmission { " [rtx]" } else { "" };
                let _ =
                    writeln!(out, "H{} {arrow} H{} : {}{rtx} ({when})", row.from, row.to, escape::plantuml(&m.summary));
            }
            RowKind::Media(i) => {
                let span = &ladder.media[*i];
                let _ = writeln!(
                    out,
                    "H{} -[#2a9d8f,bold]>> H{} : {} ({when})",
                    row.from,
                    row.to,
                    escape::plantuml(&span.label())
                );
            }
        }
    }
    out.push_str("@enduml\n");
    out
}
