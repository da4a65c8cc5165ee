//! Problems flagged on a finished session and its streams, from its messages and media alone, with the thresholds of [`QualityOptions`] (docs/quality.md lists each rule).
//!
//! [`flag_problems`] runs once per session, when the router hands it out: the dialog
//! state machine and the media table know nothing of it.

use crate::quality::QualityOptions;
use callflow_model::{MediaStream, Message, Problem, Session, SessionKind, Timestamp};

/// Fills `problems` on each stream of `session` and on the session itself (which also lists
/// its streams' problems), sorted and each once. Problems a handler already recorded (a
/// Diameter request without an answer) are kept.
pub(crate) fn flag_problems(session: &mut Session, opts: &QualityOptions) {
    let mut all = std::mem::take(&mut session.problems);
    let media = &session.media;
    let mut per_stream: Vec<Vec<Problem>> = media.iter().map(|m| stream_problems(m, opts)).collect();
    for (i, m) in media.iter().enumerate() {
        // Another SSRC on the same path before this one: the source changed.
        if media[..i].iter().any(|o| o.src == m.src && o.dst == m.dst && o.ssrc != m.ssrc && o.start <= m.start) {
            per_stream[i].push(Problem::SsrcChange);
        }
        // A payload type change with no offer/answer since the stream began.
        if let Some(at) = m.payload_change {
            let renegotiated = session.messages.iter().any(|msg| carries_sdp(msg) && msg.ts > m.start && msg.ts <= at);
            if !renegotiated {
                per_stream[i].push(Problem::PayloadChange);
            }
        }
    }
    for (m, mut problems) in session.media.iter_mut().zip(per_stream) {
        problems.append(&mut m.problems);
        problems.sort_unstable();
        problems.dedup();
        all.extend_from_slice(&problems);
        m.problems = problems;
    }
    if session.kind == SessionKind::SipCall {
        all.extend(call_problems(session, opts));
    }
    all.sort_unstable();
    all.dedup();
    session.problems = all;
}

/// A stream's own problems: its figures against the thresholds.
fn stream_problems(m: &MediaStream, opts: &QualityOptions) -> Vec<Problem> {
    let mut out = Vec::new();
    if m.mean_jitter_ms > opts.max_jitter_ms {
        out.push(Problem::HighJitter);
    }
    let loss_pct = match &m.quality {
        Some(q) => q.loss_pct,
        None if m.expected > 0 => 100.0 * m.lost.max(0) as f64 / m.expected as f64,
        None => 0.0,
    };
    if loss_pct > opts.max_loss_pct {
        out.push(Problem::HighLoss);
    }
    if m.quality.as_ref().is_some_and(|q| q.mos < opts.min_mos) {
        out.push(Problem::LowMos);
    }
    if m.capture_loss {
        out.push(Problem::CaptureLoss);
    }
    out
}

/// Whether a message carries an SDP offer or answer (the dialog marks its summary).
fn carries_sdp(m: &Message) -> bool {
    m.summary.ends_with("(SDP)")
}

/// The method a CSeq names (`1 INVITE` -> `INVITE`) and its number.
fn cseq(m: &Message) -> (&str, &str) {
    let mut words = m.cseq.split_whitespace();
    let number = words.next().unwrap_or_default();
    (words.next().unwrap_or_default(), number)
}

/// The problems of a call's signalling and of its media as a whole.
fn call_problems(session: &Session, opts: &QualityOptions) -> Vec<Problem> {
    let mut out = Vec::new();
    let messages: Vec<&Message> = session.messages.iter().filter(|m| !m.retransmission).collect();
    let is_response_to = |r: &Message, req: &Message| r.status.is_some() && cseq(r) == cseq(req);
    let answers: Vec<&&Message> = messages
        .iter()
        .filter(|m| m.status.is_some_and(|s| (200..300).contains(&s)) && cseq(m).0 == "INVITE")
        .collect();
    let answered = !answers.is_empty();

    for (i, req) in messages.iter().enumerate() {
        let Some(method) = req.method.as_deref() else { continue };
        if method != "ACK" && !messages[i + 1..].iter().any(|r| is_response_to(r, req)) {
            out.push(Problem::UnansweredRequest);
        }
    }
    for (i, ok) in messages.iter().enumerate() {
        if !answers.iter().any(|a| std::ptr::eq(**a, *ok)) {
            continue;
        }
        let number = cseq(ok).1;
        let acked = messages[i + 1..].iter().any(|m| m.method.as_deref() == Some("ACK") && cseq(m).1 == number);
        if !acked {
            out.push(Problem::NoAck);
        }
    }
    // The far end answered (18x, or the final response when there was none) too late.
    let wait_ms = session.post_dial_delay_ms.or(session.setup_time_ms);
    if wait_ms.is_some_and(|ms| ms > opts.late_answer.as_secs_f64() * 1000.0) {
        out.push(Problem::LateAnswer);
    }
    if answered {
        let offered = messages.iter().any(|m| carries_sdp(m));
        let flowing: Vec<&MediaStream> = session.media.iter().filter(|m| m.packets > 0).collect();
        if flowing.is_empty() {
            if offered {
                out.push(Problem::NoRtp);
            }
        } else {
            // Media one way only: no stream comes back to where one came from.
            let returned = flowing.iter().any(|a| flowing.iter().any(|b| b.src == a.dst || b.dst == a.src));
            if !returned {
                out.push(Problem::OneWayAudio);
            }
        }
    }
    if let Some(bye) = messages.iter().find(|m| m.method.as_deref() == Some("BYE")) {
        let limit = bye.ts.as_nanos().saturating_add(i64::try_from(opts.rtp_after_bye.as_nanos()).unwrap_or(i64::MAX));
        if session.media.iter().any(|m| m.end > Timestamp::from_nanos(limit)) {
            out.push(Problem::RtpAfterBye);
        }
    }
    out
}
