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

/// Every `related` link of a capture as `CALL-ID -> CALL-ID RELATION (KEY)`, sorted.
fn all_links(path: &Path) -> Vec<String> {
    let sessions = sessions_of(path, AnalyzerOptions::default(), true);
    let call_id = |id: &str| sessions.iter().find(|s| s.id == id).map_or("?", |s| s.call_id.as_str()).to_string();
    let mut links: Vec<String> = sessions
        .iter()
        .flat_map(|s| {
            s.related.iter().map(|r| format!("{} -> {} {:?} ({})", s.call_id, call_id(&r.session), r.relation, r.key))
        })
        .collect();
    links.sort();
    links
}

#[test]
fn sbc_legs_and_an_attended_transfer_in_real_captures() {
    let Some(corpus) = common::corpus_dir() else { return };
    // An SBC between a public and a private network: the same numbers on both legs, with
    // an attended transfer (REFER with Replaces) on top.
    let (a, b, t) = (
        "bf3880-0-16e4-5af571fa-38bc4ba4-5af571fa@101.231.48.19",
        "cdfef7c7647e97e4ff66fbf504c524e4@192.168.1.191",
        "ddd141f1d982d8989fb73db754a8fbb7@192.168.1.191",
    );
    assert_eq!(
        all_links(&corpus.join("public/heplify/erspan_sip_ipv4_udp.pcapng")),
        [
            format!("{a} -> {b} Leg (weak:parties:0008909>0008910)"),
            format!("{a} -> {t} Transfer (refer-to-replaces:{a})"),
            format!("{b} -> {a} Leg (weak:parties:0008909>0008910)"),
            format!("{t} -> {a} Transfer (refer-to-replaces:{a})"),
        ]
    );
    // An Acme Packet style SBC (its Call-IDs start with SD) in front of a fax call.
    let (a, b) =
        ("00e9d4a500e9d48-0015-0001-0000-0000@10.35.40.25", "SD4909701-9ff11bf72eb4a347c92974d8fbbc2668-ao8o3i1");
    assert_eq!(
        all_links(&corpus.join("public/ndpi/FAX-Call-t38-CA-TDM-SIP-FB-1.pcap")),
        [
            format!("{a} -> {b} Leg (weak:parties:unavailable>1963177)"),
            format!("{b} -> {a} Leg (weak:parties:unavailable>1963177)"),
        ]
    );
}

#[test]
fn generated_b2bua_legs_are_the_same_streamed_or_not() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("test_data/b2bua.pcap");
    let whole = leg_links(&sessions_of(&path, AnalyzerOptions::default(), false));
    let streamed = leg_links(&sessions_of(&path, AnalyzerOptions::default(), true));
    assert_eq!(whole.len(), 10, "5 pairs, each link on both legs: {whole:#?}");
    assert_eq!(streamed, whole);
}
