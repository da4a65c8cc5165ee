//! Ladders, charts and pcap exports of real and hand-built sessions: every format drawn, hostile text escaped, exported calls analysed again.

use callflow_correlate::{analyze, AnalyzerOptions};
use callflow_decode::capture::CaptureReader;
use callflow_model::{
    CallState, Document, DtmfEvent, MediaStream, Message, Problem, Protocol, Quality, Related, Relation, Session,
    SessionKind, TimelineInterval, Timestamp, Transport,
};
use callflow_render::{
    chart, collect_group, export_pcap, leg_group, read_messages, render_ladder, Format, Ladder, MAX_GROUP,
};
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

fn repo(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..").join(rel)
}

fn shared(rel: &str) -> Option<PathBuf> {
    let p = repo("../shared/pcaps/public").join(rel);
    if p.exists() {
        Some(p)
    } else {
        assert!(std::env::var_os("CI").is_none(), "{} is missing in CI", p.display());
        eprintln!("skipped: {} is missing", p.display());
        None
    }
}

fn analyse(path: &Path) -> Document {
    let mut reader = CaptureReader::open(path).expect("open capture");
    analyze(&mut reader, &path.display().to_string(), AnalyzerOptions::default(), None).expect("analyse")
}

fn tmp(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("callflow-render-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir.join(name)
}

fn at(ms: i64) -> Timestamp {
    Timestamp::from_nanos(1_700_000_000_000_000_000 + ms * 1_000_000)
}

fn msg(ms: i64, src: &str, dst: &str, summary: &str, status: Option<u16>) -> Message {
    Message {
        ts: at(ms),
        frame: ms as u64 + 1,
        src: src.parse().unwrap(),
        dst: dst.parse().unwrap(),
        transport: Transport::Udp,
        method: status.is_none().then(|| summary.split(' ').next().unwrap().to_string()),
        status,
        reason: None,
        cseq: "1 INVITE".into(),
        summary: summary.into(),
        retransmission: false,
        protocol: Protocol::Sip,
        diameter: None,
        gtp: None,
        vias: 1,
        capture_agent: None,
    }
}

fn stream(src: &str, dst: &str, from_ms: i64, to_ms: i64, mos: Option<f64>) -> MediaStream {
    MediaStream {
        src: src.parse().unwrap(),
        dst: dst.parse().unwrap(),
        ssrc: 0x1234,
        payload_type: 0,
        codec: "PCMU".into(),
        packets: 500,
        expected: 510,
        lost: 10,
        sequence_errors: 1,
        duplicates: 0,
        min_delta_ms: 19.0,
        mean_delta_ms: 20.0,
        max_delta_ms: 40.0,
        mean_jitter_ms: 1.0,
        max_jitter_ms: 4.5,
        start: at(from_ms),
        end: at(to_ms),
        orphan: false,
        rtcp: vec![],
        events: vec![DtmfEvent { ts: at(from_ms + 100), digit: "5".into(), duration: 800, volume: 10 }],
        quality: mos.map(|mos| Quality {
            mos,
            r_factor: 80.0,
            method: callflow_model::QualityMethod::EModel,
            codec_ie: 0.0,
            bpl: 25.1,
            loss_pct: 2.0,
            late_pct: 0.0,
            burst_ratio: 1.0,
            delay_ms: 0.0,
            jitter_buffer_ms: 60.0,
        }),
        timeline: (0..4)
            .map(|k| TimelineInterval {
                start: at(from_ms + k * 5000),
                packets: 250,
                lost: [0, 2, 12, 0][k as usize],
                late: 0,
                max_jitter_ms: [1.0, 3.5, 9.0, 2.0][k as usize],
            })
            .collect(),
        problems: vec![Problem::HighLoss],
        rtcp_summary: None,
        payload_change: None,
        capture_loss: false,
        nat_latched: false,
        payload_bytes: 0,
        srtp: None,
    }
}

fn session(id: &str, call_id: &str, messages: Vec<Message>, media: Vec<MediaStream>) -> Session {
    Session {
        call_id: call_id.into(),
        from: "sip:alice@a.example".into(),
        to: "sip:bob@b.example".into(),
        state: CallState::Completed,
        start: messages.first().map_or(at(0), |m| m.ts),
        end: messages.last().map_or(at(0), |m| m.ts),
        messages,
        media,
        problems: vec![Problem::HighLoss],
        ..Session::empty(id.into(), SessionKind::SipCall)
    }
}

/// Two legs through a B2BUA at 10.0.0.2: alice (10.0.0.1) to the B2BUA, the B2BUA to bob (10.0.0.3).
fn b2bua_legs() -> Vec<Session> {
    let mut a = session(
        "leg-a",
        "a-leg@x",
        vec![
            msg(0, "10.0.0.1:5060", "10.0.0.2:5060", "INVITE (SDP)", None),
            msg(5, "10.0.0.2:5060", "10.0.0.1:5060", "100 Trying", Some(100)),
            msg(120, "10.0.0.2:5060", "10.0.0.1:5060", "200 OK (SDP)", Some(200)),
            msg(130, "10.0.0.1:5060", "10.0.0.2:5060", "ACK", None),
            msg(20_130, "10.0.0.1:5060", "10.0.0.2:5060", "BYE", None),
            msg(20_140, "10.0.0.2:5060", "10.0.0.1:5060", "200 OK", Some(200)),
        ],
        vec![stream("10.0.0.1:4000", "10.0.0.2:6000", 140, 20_120, Some(4.02))],
    );
    let mut b = session(
        "leg-b",
        "b-leg@y",
        vec![
            msg(10, "10.0.0.2:5080", "10.0.0.3:5060", "INVITE (SDP)", None),
            msg(110, "10.0.0.3:5060", "10.0.0.2:5080", "200 OK (SDP)", Some(200)),
            msg(125, "10.0.0.2:5080", "10.0.0.3:5060", "ACK", None),
            msg(20_135, "10.0.0.2:5080", "10.0.0.3:5060", "BYE", None),
            msg(20_145, "10.0.0.3:5060", "10.0.0.2:5080", "200 OK", Some(200)),
        ],
        vec![stream("10.0.0.3:7000", "10.0.0.2:6002", 150, 20_130, Some(3.4))],
    );
    a.related.push(Related { session: "leg-b".into(), relation: Relation::Leg, key: "icid=1".into() });
    b.messages[0].retransmission = false;
    let mut rtx = b.messages[0].clone();
    rtx.ts = at(510);
    rtx.frame = 511;
    rtx.retransmission = true;
    b.messages.insert(1, rtx);
    b.messages.sort_by_key(|m| m.ts);
    vec![a, b, session("other", "unrelated@z", vec![msg(3, "10.9.9.9:5060", "10.0.0.2:5060", "OPTIONS", None)], vec![])]
}

/// A minimal well-formedness check of our own XML output: tags balance, and no text holds
/// a raw `<` or an `&` that does not start an entity.
fn assert_well_formed(xml: &str) {
    let mut stack: Vec<String> = Vec::new();
    let mut rest = xml;
    while let Some(open) = rest.find('<') {
        let text = &rest[..open];
        for (i, _) in text.match_indices('&') {
            let entity = &text[i..];
            assert!(
                ["&amp;", "&lt;", "&gt;", "&quot;", "&#39;"].iter().any(|e| entity.starts_with(e)),
                "bare & in text: {}",
                &entity[..entity.len().min(20)]
            );
        }
        let close = rest[open..].find('>').expect("tag ends") + open;
        let tag = &rest[open + 1..close];
        assert!(!tag[1..].contains('<'), "a `<` inside a tag: {tag}");
        if let Some(name) = tag.strip_prefix('/') {
            assert_eq!(stack.pop().as_deref(), Some(name), "closing tag");
        } else if !tag.ends_with('/') && !tag.starts_with('!') {
            stack.push(tag.split([' ', '\n']).next().unwrap().to_string());
        }
        rest = &rest[close + 1..];
    }
    assert!(stack.is_empty(), "unclosed: {stack:?}");
}

/// An HTML page's SVG and its message list, each well formed.
fn assert_well_formed_page(html: &str) {
    let (start, end) = (html.find("<svg").expect("an SVG"), html.rfind("</svg>").expect("its end") + 6);
    assert_well_formed(&html[start..end]);
    let messages = &html[end..html.rfind("</body>").expect("a body")];
    assert_well_formed(messages);
    assert!(!html.contains("<script"));
}

#[test]
fn a_leg_group_merges_its_hosts_in_order_of_appearance() {
    let sessions = b2bua_legs();
    let group = leg_group(&sessions, "leg-b").expect("leg-b exists");
    let ids: Vec<&str> = group.iter().map(|s| s.id.as_str()).collect();
    assert_eq!(ids, ["leg-a", "leg-b"], "found from the leg named back, the unrelated session left out");
    let ladder = Ladder::build(&group);
    let hosts: Vec<&str> = ladder.columns.iter().map(|c| c.label.as_str()).collect();
    assert_eq!(hosts, ["10.0.0.1", "10.0.0.2", "10.0.0.3"]);
    assert_eq!(ladder.columns[1].ports, [5060, 5080]);
    assert_eq!(ladder.rows.len(), 6 + 6 + 2);
    assert!(ladder.title.starts_with("2 legs"), "{}", ladder.title);
}

#[test]
fn a_group_is_collected_through_a_store_once_per_session_and_bounded() {
    let sessions = b2bua_legs();
    let fetch = |id: &str| Ok::<_, ()>(sessions.iter().find(|s| s.id == id).cloned());
    let group = collect_group(sessions[0].clone(), fetch).unwrap();
    assert_eq!(group.iter().map(|s| s.id.as_str()).collect::<Vec<_>>(), ["leg-a", "leg-b"]);
    // A chain of 100 legs, each naming the next and the previous: at most MAX_GROUP, no loop.
    let chain: Vec<Session> = (0..100)
        .map(|i| {
            let mut s = session(
                &format!("c{i}"),
                &format!("c{i}@x"),
                vec![msg(i, "10.0.0.1:5060", "10.0.0.2:5060", "INVITE", None)],
                vec![],
            );
            for j in [i.wrapping_sub(1), i + 1] {
                s.related.push(Related { session: format!("c{j}"), relation: Relation::Leg, key: "k".into() });
            }
            s
        })
        .collect();
    let mut fetched = 0;
    let group = collect_group(chain[0].clone(), |id| {
        fetched += 1;
        Ok::<_, ()>(chain.iter().find(|s| s.id == id).cloned())
    })
    .unwrap();
    assert_eq!(group.len(), MAX_GROUP);
    assert!(fetched <= MAX_GROUP + 1, "{fetched} fetches");
    assert_eq!(leg_group(&chain, "c50").unwrap().len(), MAX_GROUP);
}

#[test]
fn text_fits_100_columns_and_marks_retransmissions_and_media() {
    let sessions = b2bua_legs();
    let group = leg_group(&sessions, "leg-a").unwrap();
    let text = render_ladder(&Ladder::build(&group), Format::Text, None);
    for line in text.lines() {
        assert!(line.chars().count() <= 100, "{} chars: {line}", line.chars().count());
    }
    let rows: Vec<&str> = text.lines().filter(|l| l.contains("+0.") || l.contains("+20.")).collect();
    assert!(rows[0].starts_with("22:13:20.000    +0.000s "), "{}", rows[0]);
    assert!(rows[0].contains("INVITE (SDP)") && rows[0].contains("-->|"), "{}", rows[0]);
    let rtx = text.lines().find(|l| l.contains("[rtx]")).expect("the retransmission is marked");
    assert!(rtx.contains("~~"), "{rtx}");
    let media = text.lines().find(|l| l.contains("==")).expect("a media row");
    assert!(media.contains("RTP PCMU · MOS 4.02"), "codec and MOS kept when the lane is narrow: {media}");
    assert!(text.contains("MOS 4.02") && text.contains("high_loss") && text.contains("DTMF 5"), "{text}");
    assert!(text.contains("problems of a-leg@x: high_loss"), "{text}");
}

#[test]
fn hostile_summaries_cannot_break_or_script_any_format() {
    let evil = "INVITE</text><script>alert(1)</script>]]>&\u{1b}[2J\u{0}\"';#<img:http://x/a.png>\n@enduml";
    let mut s = session("s", evil, vec![msg(0, "10.0.0.1:5060", "10.0.0.2:5060", evil, None)], vec![]);
    s.media.push(stream("10.0.0.1:4000", "10.0.0.2:6000", 10, 2000, None));
    s.media[0].codec = evil.into();
    let ladder = Ladder::build(&[&s]);
    let mut raw = callflow_render::RawMessages::new();
    raw.insert(1, evil.into());
    for format in [Format::Svg, Format::Html] {
        let out = render_ladder(&ladder, format, Some(&raw));
        assert!(!out.contains("<script"), "{format:?}: {out}");
        assert!(!out.contains('\u{1b}') && !out.contains('\u{0}'), "{format:?}");
        assert!(out.contains("&lt;/text&gt;&lt;script&gt;"), "{format:?}");
        if format == Format::Html {
            assert_well_formed_page(&out);
        } else {
            assert_well_formed(&out);
        }
    }
    let text = render_ladder(&ladder, Format::Text, None);
    assert!(!text.contains('\u{1b}') && !text.contains('\u{0}'), "{text}");
    let mermaid = render_ladder(&ladder, Format::Mermaid, None);
    assert_eq!(mermaid.lines().count(), 2 + 2 + 2, "one statement per row: {mermaid}");
    assert!(!mermaid.contains("<script"));
    let plantuml = render_ladder(&ladder, Format::Plantuml, None);
    assert_eq!(plantuml.lines().filter(|l| l.trim() == "@enduml").count(), 1, "{plantuml}");
    let bare = plantuml.match_indices('<').filter(|(i, _)| !plantuml[..*i].ends_with('~')).count();
    assert_eq!(bare, 0, "every `<` is escaped, so no `<img:...>` fetches a URL: {plantuml}");
}

#[test]
fn a_hostile_capture_is_drawn_as_text_in_every_format() {
    let capture = Path::new(env!("CARGO_MANIFEST_DIR")).join("test_data/hostile-sip.pcap");
    let doc = analyse(&capture);
    let call = &doc.sessions[0];
    assert!(call.call_id.contains("<script>"), "{}", call.call_id);
    let frames: BTreeSet<u64> = call.messages.iter().map(|m| m.frame).collect();
    let raw = read_messages(&capture, &frames).unwrap();
    assert!(raw.values().all(|m| m.starts_with("INVITE") || m.starts_with("SIP/2.0") || m.starts_with("ACK")));
    assert!(raw.values().all(|m| m.contains("X-Evil: ]]><!ENTITY") && !m.contains('\u{1b}')), "{raw:?}");
    let ladder = Ladder::build(&[call]);
    let svg = render_ladder(&ladder, Format::Svg, Some(&raw));
    assert_well_formed(&svg);
    assert!(svg.contains("486 Busy&lt;/text&gt;") && svg.contains("&lt;img src=x onerror=alert(2)&gt;"));
    assert!(svg.contains("]]&gt;&lt;!ENTITY") && !svg.contains('\u{1b}'), "{svg}");
    let html = render_ladder(&ladder, Format::Html, Some(&raw));
    assert_well_formed_page(&html);
    assert!(!html.contains("<img") && !html.contains('\u{1b}'));
    let text = render_ladder(&ladder, Format::Text, None);
    assert!(!text.contains('\u{1b}') && text.contains("486 Busy</text>"), "{text}");
}

#[test]
fn a_diameter_session_is_drawn_in_its_colour_with_hex_messages() {
    let Some(capture) = shared("arkime/diameter_synthetic.pcap") else { return };
    let doc = analyse(&capture);
    let s = doc.sessions.iter().find(|s| s.kind == SessionKind::Diameter).expect("a Diameter session");
    let ladder = Ladder::build(&[s]);
    assert!(ladder.title.starts_with("diameter session "), "{}", ladder.title);
    let frames: BTreeSet<u64> = s.messages.iter().map(|m| m.frame).collect();
    let raw = read_messages(&capture, &frames).unwrap();
    assert!(raw.values().all(|m| m.starts_with("00000000: 01")), "version 1 in a hex dump: {raw:?}");
    let svg = render_ladder(&ladder, Format::Svg, Some(&raw));
    assert_well_formed(&svg);
    assert!(svg.contains(r##"stroke="#7c3aed""##) && svg.contains(">Diameter</text>"), "violet arrows, in the legend");
    assert!(!svg.contains("Call-ID"), "no empty Call-ID in the footer");
}

#[test]
fn svg_of_a_group_has_a_row_with_a_tooltip_per_message_and_stream() {
    let sessions = b2bua_legs();
    let group = leg_group(&sessions, "leg-a").unwrap();
    let svg = render_ladder(&Ladder::build(&group), Format::Svg, None);
    assert_well_formed(&svg);
    assert_eq!(svg.matches(r#"<g class="row">"#).count(), 14);
    assert!(svg.contains("frame 511"), "the tooltip describes the message");
    assert!(svg.contains("↻ INVITE (SDP)"));
    assert!(svg.contains("stroke-dasharray=\"6 4\""), "the retransmission is dashed");
    assert!(svg.contains(">RTP PCMU · MOS 3.40<"), "the media headline");
    assert!(svg.contains(">500 pkts · lost 10 · DTMF 5 · high_loss<"), "the media figures under it");
    assert!(!svg.contains("href"), "a standalone picture links nowhere");
    std::fs::write(tmp("group.svg"), &svg).unwrap();
}

#[test]
fn quality_chart_draws_three_labelled_panels_per_stream() {
    let sessions = b2bua_legs();
    let streams: Vec<&MediaStream> = sessions.iter().flat_map(|s| &s.media).collect();
    let svg = chart::render("call a-leg@x", &streams);
    assert_well_formed(&svg);
    for label in ["jitter (ms)", "loss (%)", "MOS", "time (s)"] {
        assert!(svg.contains(label), "{label}");
    }
    assert_eq!(svg.matches("<polyline").count(), 2 * 3, "jitter, loss and MOS for each of 2 streams");
    // The interval of 10-15 s, 12 of 262 lost (4.6 %), drawn in its middle.
    assert!(svg.contains("12.5 s: 4.58 loss (%)"), "{svg}");
    std::fs::write(tmp("chart.svg"), &svg).unwrap();
}

/// The call of `doc` compared with the call of the same Call-ID in `again`: messages by
/// time, direction and summary, streams by direction, SSRC, packets, loss and DTMF.
fn assert_same_call(doc: &Document, again: &Document, call_id: &str) {
    let find = |d: &Document| d.sessions.iter().find(|s| s.call_id == call_id).cloned().expect("the call");
    let (a, b) = (find(doc), find(again));
    let msgs = |s: &Session| -> Vec<(Timestamp, String, String, String)> {
        s.messages.iter().map(|m| (m.ts, m.src.to_string(), m.dst.to_string(), m.summary.clone())).collect()
    };
    assert_eq!(msgs(&a), msgs(&b));
    let media = |s: &Session| -> Vec<String> {
        s.media
            .iter()
            .map(|m| {
                let digits: String = m.events.iter().map(|e| e.digit.as_str()).collect();
                format!("{} {} {} {} {} {} {digits}", m.src, m.dst, m.ssrc, m.packets, m.lost, m.rtcp.len())
            })
            .collect()
    };
    assert_eq!(media(&a), media(&b));
    assert_eq!(a.state, b.state);
}

fn export_and_reanalyse(capture: &Path, sessions: &[&Session], name: &str) -> (Document, u64) {
    let out = tmp(name);
    let file = std::fs::File::create(&out).unwrap();
    let done = export_pcap(capture, sessions, std::io::BufWriter::new(file)).expect("export");
    assert_eq!(done.other_link_type, 0);
    tshark_reads(&out, done.frames);
    (analyse(&out), done.frames)
}

/// tshark reads the file whole (every frame, no error), when tshark is there.
fn tshark_reads(path: &Path, frames: u64) {
    let Ok(out) = std::process::Command::new("tshark").args(["-n", "-r"]).arg(path).output() else {
        assert!(std::env::var_os("CI").is_none(), "tshark is missing in CI");
        eprintln!("skipped: no tshark");
        return;
    };
    assert!(out.status.success(), "tshark: {}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(String::from_utf8_lossy(&out.stdout).lines().count() as u64, frames);
}

#[test]
fn an_exported_call_analysed_again_is_the_same_call() {
    let capture = repo("examples/captures/basic-call.pcap");
    let doc = analyse(&capture);
    let call = &doc.sessions[0];
    let (again, frames) = export_and_reanalyse(&capture, &[call], "basic.pcap");
    assert_eq!(again.sessions.len(), 1);
    assert!(frames > 500, "RTP included: {frames}");
    assert_same_call(&doc, &again, &call.call_id);
}

#[test]
fn a_call_over_tcp_split_in_segments_is_exported_whole() {
    // The INVITE, 180, 200 and BYE of one call are each split over two segments: the message
    // names only its last, and the file once held the INVITE's second half alone.
    let capture = repo("crates/callflow-correlate/test_data/tcp-vlan.pcap");
    let doc = analyse(&capture);
    for call in doc.sessions.iter().filter(|s| s.messages.iter().any(|m| m.transport == Transport::Tcp)) {
        let (again, _) = export_and_reanalyse(&capture, &[call], "tcp.pcap");
        assert_same_call(&doc, &again, &call.call_id);
    }
}

#[test]
fn a_message_split_over_tcp_segments_is_read_back_whole() {
    // The INVITE of the TCP call comes in two segments: its frame holds only the second
    // half, which was all the tooltip and the raw message showed.
    let capture = repo("crates/callflow-correlate/test_data/tcp-vlan.pcap");
    let doc = analyse(&capture);
    let messages: Vec<&Message> =
        doc.sessions.iter().flat_map(|s| &s.messages).filter(|m| m.transport == Transport::Tcp).collect();
    let frames: BTreeSet<u64> = messages.iter().map(|m| m.frame).collect();
    let raw = read_messages(&capture, &frames).unwrap();
    for m in &messages {
        let text = &raw[&m.frame];
        let first = m.summary.split(' ').next().unwrap();
        let start = if m.status.is_some() { "SIP/2.0 " } else { first };
        assert!(text.starts_with(start), "frame {} ({}): {text}", m.frame, m.summary);
        assert!(text.contains("\r\n\r\n"), "the whole header block: {text}");
    }
}

#[test]
fn a_group_exports_its_legs_together() {
    let capture = repo("crates/callflow-correlate/test_data/outcomes.pcap");
    let mut doc = analyse(&capture);
    assert!(doc.sessions.len() >= 2);
    // Two calls of the capture joined by hand as legs.
    let second = doc.sessions[1].id.clone();
    doc.sessions[0].related.push(Related { session: second, relation: Relation::Leg, key: "test".into() });
    let group = leg_group(&doc.sessions, &doc.sessions[0].id.clone()).unwrap();
    assert_eq!(group.len(), 2);
    let (again, _) = export_and_reanalyse(&capture, &group, "group.pcap");
    assert_eq!(again.sessions.len(), 2, "{:?}", again.sessions.iter().map(|s| &s.call_id).collect::<Vec<_>>());
    for s in &group {
        assert_same_call(&doc, &again, &s.call_id);
    }
}

#[test]
fn a_stream_of_rfc4733_events_is_exported_packet_for_packet() {
    // sipp's capture holds the RTP telephone events of one digit (no SIP announced them):
    // every packet of the stream, the repeated end packets too, comes out in its order.
    let Some(capture) = shared("sipp/dtmf_2833_pound.pcap") else { return };
    let doc = analyse(&capture);
    let media = doc.sessions.iter().find(|s| !s.media.is_empty()).expect("the events' stream");
    let (again, frames) = export_and_reanalyse(&capture, &[media], "dtmf.pcap");
    assert_eq!(frames, media.media.iter().map(|m| m.packets).sum::<u64>());
    let again = again.sessions.iter().find(|s| !s.media.is_empty()).expect("the stream again");
    assert_eq!(again.media, media.media);
}

#[test]
fn a_call_inside_gtp_u_is_exported_with_its_tunnelled_media() {
    let Some(capture) = shared("arkime/gtp-iphone.pcap") else { return };
    let doc = analyse(&capture);
    let call = doc
        .sessions
        .iter()
        .find(|s| s.kind == SessionKind::SipCall && s.tunnel.is_some() && !s.media.is_empty())
        .expect("a tunnelled call with media");
    let (again, frames) = export_and_reanalyse(&capture, &[call], "gtp.pcap");
    let rtp: u64 = call.media.iter().map(|m| m.packets).sum();
    assert!(frames as usize >= call.messages.len() + rtp as usize, "{frames} frames");
    assert_same_call(&doc, &again, &call.call_id);
}

#[test]
fn messages_are_read_back_as_text() {
    let capture = repo("examples/captures/basic-call.pcap");
    let doc = analyse(&capture);
    let call = &doc.sessions[0];
    let frames: BTreeSet<u64> = call.messages.iter().map(|m| m.frame).collect();
    let raw = read_messages(&capture, &frames).unwrap();
    assert_eq!(raw.len(), frames.len());
    let invite = &raw[&call.messages[0].frame];
    assert!(invite.starts_with("INVITE sip:"), "{invite}");
    assert!(invite.contains(&format!("Call-ID: {}", call.call_id)), "{invite}");
    let html = render_ladder(&Ladder::build(&[call]), Format::Html, Some(&raw));
    assert_well_formed_page(&html);
    assert!(html.contains(&format!("<details id=\"f{}\">", call.messages[0].frame)));
    assert!(html.contains(&format!("<a href=\"#f{}\">", call.messages[0].frame)));
    std::fs::write(tmp("basic.html"), &html).unwrap();
    std::fs::write(tmp("basic.svg"), render_ladder(&Ladder::build(&[call]), Format::Svg, Some(&raw))).unwrap();
}

#[test]
fn a_stored_session_s_stream_times_rounded_by_json_still_take_its_first_and_last_packets() {
    // A stored session comes back from JSON seconds (an f64, about 240 ns apart today): a
    // stream whose first packet was captured at a nanosecond time came back a little later
    // than that packet, which the export then left out (a live job's first RTP packet).
    let capture = repo("examples/captures/basic-call.pcap");
    let doc = analyse(&capture);
    let exact = export_and_reanalyse(&capture, &[&doc.sessions[0]], "exact.pcap").1;
    let mut rounded = doc.sessions[0].clone();
    for stream in &mut rounded.media {
        stream.start = Timestamp::from_nanos(stream.start.as_nanos() + 200);
        stream.end = Timestamp::from_nanos(stream.end.as_nanos() - 200);
    }
    let (_, frames) = export_and_reanalyse(&capture, &[&rounded], "rounded.pcap");
    assert_eq!(frames, exact, "every packet of the streams, as with the exact times");
}
