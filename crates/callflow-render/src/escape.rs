//! Making capture text safe for each output (XML, a terminal, Mermaid, PlantUML) and fitting it to a width.
//!
//! Everything a session carries that came off the wire (summaries, Call-IDs, URIs, codec
//! names, raw messages) is hostile input: a SIP header can hold `</text><script>`, an
//! escape sequence that reprograms a terminal, or a line break that ends a Mermaid
//! statement. Each renderer passes such text through the function for its output here.

use callflow_model::Timestamp;
use std::fmt::Write;

/// `s` as XML character data or an attribute value: the five special characters as
/// entities, and the characters XML 1.0 forbids (controls other than tab, line feed and
/// carriage return; U+FFFE and U+FFFF) as U+FFFD.
pub fn xml(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            '\t' | '\n' | '\r' => out.push(c),
            c if (c as u32) < 0x20 || c == '\u{7f}' || c == '\u{fffe}' || c == '\u{ffff}' => out.push('\u{fffd}'),
            c => out.push(c),
        }
    }
    out
}

/// `s` on one line for a terminal: control characters (escape sequences, line breaks,
/// C1 controls) become `?`, so that a capture cannot move the cursor or recolour the screen.
pub fn terminal(s: &str) -> String {
    s.chars().map(|c| if c.is_control() { '?' } else { c }).collect()
}

/// `s` as the text of a Mermaid message or note: one line, with Mermaid's entity codes
/// for the characters that end a statement or start markup (`;`, `#`, `<`, `>`, `:` is
/// fine after the first).
pub fn mermaid(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '#' => out.push_str("#35;"),
            ';' => out.push_str("#59;"),
            '<' => out.push_str("#lt;"),
            '>' => out.push_str("#gt;"),
            '"' => out.push_str("#quot;"),
            '%' => out.push_str("#37;"),
            c if c.is_control() => out.push(' '),
            c => out.push(c),
        }
    }
    out
}

/// `s` as the text of a PlantUML message or note: one line, with the creole markup
/// characters escaped by `~` (PlantUML's escape character), so that a capture cannot add
/// markup, and in particular no `<img:...>` that would make a PlantUML server fetch a URL.
pub fn plantuml(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '~' | '<' | '>' | '[' | ']' | '*' | '_' | '"' | '\\' | '/' | '-' | '=' | '#' | '^' | '|' => {
                out.push('~');
                out.push(c);
            }
            c if c.is_control() => out.push(' '),
            c => out.push(c),
        }
    }
    out
}

/// `s` cut to at most `width` characters, ending with `…` when cut.
pub fn elide(s: &str, width: usize) -> String {
    if s.chars().count() <= width {
        return s.to_string();
    }
    if width == 0 {
        return String::new();
    }
    let mut out: String = s.chars().take(width - 1).collect();
    out.push('…');
    out
}

/// The time of day of `ts` in UTC, `HH:MM:SS.mmm`.
pub fn clock(ts: Timestamp) -> String {
    let nanos = ts.as_nanos();
    let secs = nanos.div_euclid(1_000_000_000);
    let millis = nanos.rem_euclid(1_000_000_000) / 1_000_000;
    let day = secs.rem_euclid(86_400);
    format!("{:02}:{:02}:{:02}.{:03}", day / 3600, day % 3600 / 60, day % 60, millis)
}

/// The date and time of `ts` in UTC, `YYYY-MM-DD HH:MM:SS.mmm UTC`.
pub fn date_time(ts: Timestamp) -> String {
    let days = ts.as_nanos().div_euclid(1_000_000_000).div_euclid(86_400);
    // Days since 1970-01-01 to a civil date (H. Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!("{y:04}-{m:02}-{d:02} {} UTC", clock(ts))
}

/// Seconds from `origin` to `ts`, signed, to the millisecond: `+1.250s`.
pub fn relative(ts: Timestamp, origin: Timestamp) -> String {
    format!("{:+.3}s", ts.millis_since(origin) / 1000.0)
}

/// `bytes` as text when they read as text (a SIP message: at most one character in 10
/// undecodable or a control other than tab and line ends; those become U+FFFD, so the
/// text carries no escape sequence), else as a hex dump (a binary protocol).
pub fn message_text(bytes: &[u8]) -> String {
    let text = String::from_utf8_lossy(bytes);
    let odd = |c: char| c == '\u{fffd}' || (c.is_control() && !matches!(c, '\r' | '\n' | '\t'));
    let total = text.chars().count();
    if total > 0 && text.chars().filter(|&c| odd(c)).count() * 10 <= total {
        text.chars().map(|c| if odd(c) { '\u{fffd}' } else { c }).collect()
    } else {
        hex_dump(bytes)
    }
}

/// `bytes` as a hex dump, as `xxd` writes it: offset, 16 bytes in hex, the ASCII column.
pub fn hex_dump(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len() * 4 + 16);
    for (i, line) in bytes.chunks(16).enumerate() {
        let _ = write!(out, "{:08x}: ", i * 16);
        for j in 0..16 {
            match line.get(j) {
                Some(b) => {
                    let _ = write!(out, "{b:02x}");
                }
                None => out.push_str("  "),
            }
            if j % 2 == 1 {
                out.push(' ');
            }
        }
        out.push(' ');
        out.extend(line.iter().map(|&b| if b.is_ascii_graphic() || b == b' ' { b as char } else { '.' }));
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn xml_escapes_markup_and_forbidden_characters() {
        assert_eq!(xml("a<b>&\"c'\u{1b}[31m\u{0}"), "a&lt;b&gt;&amp;&quot;c&#39;\u{fffd}[31m\u{fffd}");
        assert_eq!(xml("line\r\nnext\t"), "line\r\nnext\t");
    }

    #[test]
    fn terminal_text_loses_escape_sequences_and_line_breaks() {
        assert_eq!(terminal("INVITE\u{1b}[2J\r\nX\u{9b}"), "INVITE?[2J??X?");
    }

    #[test]
    fn mermaid_and_plantuml_text_stays_one_statement() {
        assert_eq!(mermaid("a;b#c<d>\nend"), "a#59;b#35;c#lt;d#gt; end");
        assert_eq!(plantuml("<img:http://x/y.png> **b**\n@enduml"), "~<img:http:~/~/x~/y.png~> ~*~*b~*~* @enduml");
    }

    #[test]
    fn elide_counts_characters_not_bytes() {
        assert_eq!(elide("éééé", 4), "éééé");
        assert_eq!(elide("éééééé", 4), "ééé…");
        assert_eq!(elide("abc", 0), "");
    }

    #[test]
    fn clock_and_date_are_utc() {
        let ts = Timestamp::from_parts(1_131_987_546, 338_401_000);
        assert_eq!(clock(ts), "16:59:06.338");
        assert_eq!(date_time(ts), "2005-11-14 16:59:06.338 UTC");
        assert_eq!(date_time(Timestamp::from_parts(951_782_400, 0)), "2000-02-29 00:00:00.000 UTC");
        assert_eq!(relative(Timestamp::from_parts(10, 250_000_000), Timestamp::from_parts(9, 0)), "+1.250s");
    }

    #[test]
    fn binary_payloads_are_dumped_in_hex() {
        assert_eq!(message_text(b"OPTIONS sip:a SIP/2.0\r\n\r\n"), "OPTIONS sip:a SIP/2.0\r\n\r\n");
        // A stray escape or Latin-1 byte in a SIP message keeps it text, without the escape.
        assert_eq!(
            message_text(b"OPTIONS sip:a SIP/2.0\r\nX: \x1b[2J \xe9\r\n\r\n"),
            "OPTIONS sip:a SIP/2.0\r\nX: \u{fffd}[2J \u{fffd}\r\n\r\n"
        );
        assert_eq!(
            message_text(&[0x01, 0x00, 0x00, 0x14, b'A']),
            "00000000: 0100 0014 41                             ....A\n"
        );
    }
}
