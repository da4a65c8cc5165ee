//! B2BUA legs joined through `related`: on a real FreeSWITCH capture, and with sessions streamed to a sink as they close.

mod common;

use callflow_correlate::{analyze, AnalyzerOptions, LegOptions};
use callflow_decode::capture::CaptureReader;
use callflow_model::{Relation, Session, SessionKind};
use std::path::Path;

/// Every leg link of `sessions` as `CALL-ID -> CALL-ID (KEY)`, sorted.
fn leg_links(sessions: &[Session]) -> Vec<String> {
    let call_id = |id: &str| sessions.iter().find(|s| s.id == id).map_or("?", |s| s.call_id.as_str()).to_string();
    let mut links: Vec<String> = sessions
        .iter()
        .flat_map(|s| {
            s.related
                .iter()
                .filter(|r| r.relation == Relation::Leg)
                .map(|r| format!("{} -> {} ({})", s.call_id, call_id(&r.session), r.key))
        })
        .collect();
    links.sort();
    links
}

/// The sessions of `path`, collected from the sink (streamed) or from the document.
fn sessions_of(path: &Path, opts: AnalyzerOptions, streamed: bool) -> Vec<Session> {
    let mut reader = CaptureReader::open(path).expect("open capture");
    let mut got = Vec::new();
    let mut sink = |s: Session| got.push(s);
    let doc =
        analyze(&mut reader, "x", opts, streamed.then_some(&mut sink as &mut dyn FnMut(Session))).expect("analyze");
    if streamed {
        assert!(doc.sessions.is_empty());
        got
    } else {
        doc.sessions
    }
}

#[test]
fn freeswitch_legs_over_websocket_and_udp_are_joined() {
    let Some(corpus) = common::corpus_dir() else { return };
    let path = corpus.join("public/heplify/sip_tcp_websocket.pcap");
    for streamed in [false, true] {
        let sessions = sessions_of(&path, AnalyzerOptions::default(), streamed);
        assert_eq!(sessions.iter().filter(|s| s.kind == SessionKind::SipCall).count(), 2);
        // FreeSWITCH copies the A leg's Call-ID into an `XCall-ID` header of the B leg.
        assert_eq!(
            leg_links(&sessions),
            [
                "926ffd16-6154-1237-09ba-0270b3230128 -> kovfhoptshgn59q712sr (header:XCall-ID:kovfhoptshgn59q712sr)",
                "kovfhoptshgn59q712sr -> 926ffd16-6154-1237-09ba-0270b3230128 (header:XCall-ID:kovfhoptshgn59q712sr)",
            ],
            "streamed: {streamed}"
        );
        // Without the header, caller and callee numbers and the INVITE times still join
        // them, as a weaker match (the B2BUA added a 99981 prefix and a + to the numbers).
        let opts = AnalyzerOptions {
            legs: LegOptions { correlation_headers: Vec::new(), ..LegOptions::default() },
            ..AnalyzerOptions::default()
        };
        assert_eq!(
            leg_links(&sessions_of(&path, opts, streamed)),
            [
                "926ffd16-6154-1237-09ba-0270b3230128 -> kovfhoptshgn59q712sr (weak:parties:5941249>3382742)",
                "kovfhoptshgn59q712sr -> 926ffd16-6154-1237-09ba-0270b3230128 (weak:parties:5941249>3382742)",
            ]
        );
        let off = AnalyzerOptions {
            legs: LegOptions { enabled: false, ..LegOptions::default() },
            ..AnalyzerOptions::default()
        };
        assert!(leg_links(&sessions_of(&path, off, streamed)).is_empty());
    }
}
