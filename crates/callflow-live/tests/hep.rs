//! The HEP listener on a loopback port: packets from our own encoder over UDP and TCP, and from a real agent, Kamailio's siptrace, mirroring a call the test sends through it; the calls the analysis makes of them.

use callflow_correlate::{Analyzer, FrameSource, Pulled};
use callflow_decode::hep::{chunk, Hep3Builder, ProtoType};
use callflow_live::hep::{self, HepListener, HepOptions};
use callflow_live::{channel, ChannelSource};
use callflow_model::{CallState, Session, Transport};
use std::io::Write;
use std::net::{SocketAddr, TcpStream, UdpSocket};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::Ordering;
use std::time::Duration;

/// A listener on a free loopback port feeding a channel the test reads.
fn listen(auth_key: Option<&str>) -> (HepListener, ChannelSource) {
    let (tx, rx) = channel(1024, Duration::from_millis(50));
    let options = HepOptions {
        listen: "127.0.0.1:0".parse().unwrap(),
        auth_key: auth_key.map(str::to_string),
        ..HepOptions::default()
    };
    (hep::start(&options, tx).expect("HEP listener on loopback"), rx)
}

/// Pulls frames into an analyzer until `done` says the listener has seen enough (or 20 s
/// of quiet ticks pass, a failure naming what arrived), then the sessions, annotated with
/// their capture agents.
fn analyse(listener: &HepListener, source: &mut ChannelSource, done: impl Fn(&HepListener) -> bool) -> Vec<Session> {
    let mut analyzer = Analyzer::default();
    let mut quiet_ticks = 0;
    loop {
        match source.next_frame().expect("the channel does not fail") {
            Some(Pulled::Here(frame)) => analyzer.process(&frame),
            Some(Pulled::Tick(_)) => {
                // A tick comes only when the queue is empty: everything sent is analysed.
                if done(listener) {
                    break;
                }
                quiet_ticks += 1;
                let s = listener.stats();
                assert!(
                    quiet_ticks < 400,
                    "gave up waiting: {} HEP packets, {} SIP, {} malformed, {} unauthorized",
                    s.packets.load(Ordering::Relaxed),
                    s.sip.load(Ordering::Relaxed),
                    s.malformed.load(Ordering::Relaxed),
                    s.unauthorized.load(Ordering::Relaxed)
                );
            }
            other => panic!("unexpected {other:?}"),
        }
    }
    let (mut sessions, _) = analyzer.finish();
    let annotations = listener.annotations();
    sessions.iter_mut().for_each(|s| annotations.annotate(s));
    sessions
}

fn count(listener: &HepListener) -> (u64, u64, u64, u64, u64) {
    let s = listener.stats();
    let n = |c: &std::sync::atomic::AtomicU64| c.load(Ordering::Relaxed);
    (n(&s.packets), n(&s.sip), n(&s.malformed), n(&s.unauthorized), n(&s.ignored))
}

/// A SIP message of a call between alice (a) and bob (b).
fn sip(first_line: &str, call_id: &str, cseq: &str, to_tag: bool) -> String {
    format!(
        "{first_line}\r\nVia: SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bK-{call_id}-{}\r\nMax-Forwards: 70\r\n\
         From: <sip:alice@example.com>;tag=a1\r\nTo: <sip:bob@example.com>{}\r\nCall-ID: {call_id}\r\n\
         CSeq: {cseq}\r\nContact: <sip:alice@192.0.2.1>\r\nContent-Length: 0\r\n\r\n",
        cseq.split(' ').next().unwrap(),
        if to_tag { ";tag=b1" } else { "" }
    )
}

/// The seven messages of a complete call, each with its direction (true: a to b).
fn call(call_id: &str) -> Vec<(bool, String)> {
    vec![
        (true, sip("INVITE sip:bob@example.com SIP/2.0", call_id, "1 INVITE", false)),
        (false, sip("SIP/2.0 100 Trying", call_id, "1 INVITE", false)),
        (false, sip("SIP/2.0 180 Ringing", call_id, "1 INVITE", true)),
        (false, sip("SIP/2.0 200 OK", call_id, "1 INVITE", true)),
        (true, sip("ACK sip:bob@example.com SIP/2.0", call_id, "1 ACK", true)),
        (true, sip("BYE sip:bob@example.com SIP/2.0", call_id, "2 BYE", true)),
        (false, sip("SIP/2.0 200 OK", call_id, "2 BYE", true)),
    ]
}

/// The chunks every test packet starts with: addresses, ports and the time, `ms`
/// milliseconds into the test's calls.
fn hep_header(src: SocketAddr, dst: SocketAddr, tcp: bool, ms: u32) -> Hep3Builder {
    Hep3Builder::new()
        .ip_family(2)
        .ip_proto(if tcp { 6 } else { 17 })
        .src_ip(src.ip())
        .dst_ip(dst.ip())
        .src_port(src.port())
        .dst_port(dst.port())
        .ts_sec(1_700_000_000 + ms / 1000)
        .ts_usec((ms % 1000) * 1000)
}

/// A HEP v3 packet of one SIP message between 192.0.2.1:5060 and 192.0.2.2:5080 (TCP
/// when `tcp`), `ms` milliseconds into the call, with a vendor chunk in the middle.
fn hep_sip(a_to_b: bool, text: &str, ms: u32, tcp: bool, key: &str, agent: u32) -> Vec<u8> {
    let (a, b): (SocketAddr, SocketAddr) = ("192.0.2.1:5060".parse().unwrap(), "192.0.2.2:5080".parse().unwrap());
    let (src, dst) = if a_to_b { (a, b) } else { (b, a) };
    hep_header(src, dst, tcp, ms)
        .chunk(0x0022, 0x0101, b"some vendor's chunk")
        .chunk(0, 0x0fff, &[1, 2, 3])
        .proto_type(ProtoType::Sip)
        .capture_id(agent)
        .auth_key(key.as_bytes())
        .correlation_id(b"corr")
        .payload(text.as_bytes())
        .build()
}

fn one_call(sessions: &[Session], call_id: &str) -> Session {
    let found: Vec<_> = sessions.iter().filter(|s| s.call_id == call_id).collect();
    assert_eq!(
        found.len(),
        1,
        "one session for {call_id}: {:?}",
        sessions.iter().map(|s| &s.call_id).collect::<Vec<_>>()
    );
    found[0].clone()
}

fn summaries(s: &Session) -> Vec<String> {
    s.messages.iter().map(|m| format!("{} {}->{}", m.summary, m.src, m.dst)).collect()
}

#[test]
fn calls_sent_as_hep_over_udp_and_tcp_are_analysed_as_if_captured() {
    let (listener, mut source) = listen(Some("s3cret"));
    let udp = UdpSocket::bind("127.0.0.1:0").unwrap();
    for (i, (dir, text)) in call("udp-call").into_iter().enumerate() {
        udp.send_to(&hep_sip(dir, &text, i as u32 * 100, false, "s3cret", 11), listener.local_addr()).unwrap();
    }
    // Over TCP: the seven packets back to back, written in pieces that cut packets apart.
    let stream: Vec<u8> = call("tcp-call")
        .into_iter()
        .enumerate()
        .flat_map(|(i, (dir, text))| hep_sip(dir, &text, 50 + i as u32 * 100, true, "s3cret", 12))
        .collect();
    let mut tcp = TcpStream::connect(listener.local_addr()).unwrap();
    for piece in stream.chunks(97) {
        tcp.write_all(piece).unwrap();
        tcp.flush().unwrap();
    }
    drop(tcp);
    let sessions = analyse(&listener, &mut source, |l| count(l).1 == 14);
    assert_eq!(count(&listener), (14, 14, 0, 0, 0));

    for (call_id, transport, agent) in [("udp-call", Transport::Udp, 11), ("tcp-call", Transport::Tcp, 12)] {
        let s = one_call(&sessions, call_id);
        assert_eq!(s.state, CallState::Completed, "{call_id}");
        assert_eq!(
            summaries(&s),
            vec![
                "INVITE 192.0.2.1:5060->192.0.2.2:5080",
                "100 Trying 192.0.2.2:5080->192.0.2.1:5060",
                "180 Ringing 192.0.2.2:5080->192.0.2.1:5060",
                "200 OK 192.0.2.2:5080->192.0.2.1:5060",
                "ACK 192.0.2.1:5060->192.0.2.2:5080",
                "BYE 192.0.2.1:5060->192.0.2.2:5080",
                "200 OK 192.0.2.2:5080->192.0.2.1:5060",
            ],
            "{call_id}"
        );
        assert!(s.messages.iter().all(|m| m.transport == transport), "{call_id}");
        assert!(s.messages.iter().all(|m| m.capture_agent == Some(agent)), "{call_id}: the agent id is kept");
        // Time comes from the HEP chunks, not from when the packets arrived.
        assert_eq!(s.messages[0].ts.as_nanos() / 1_000_000_000, 1_700_000_000, "{call_id}");
    }
    listener.stop();
}

#[test]
fn a_wrong_or_missing_auth_key_is_refused_and_counted() {
    let (listener, mut source) = listen(Some("right"));
    let udp = UdpSocket::bind("127.0.0.1:0").unwrap();
    let msgs = call("keyed");
    udp.send_to(&hep_sip(true, &msgs[0].1, 0, false, "wrong", 1), listener.local_addr()).unwrap();
    let no_key = Hep3Builder::new()
        .src_ip("192.0.2.1".parse().unwrap())
        .dst_ip("192.0.2.2".parse().unwrap())
        .src_port(1)
        .dst_port(2)
        .proto_type(ProtoType::Sip)
        .payload(msgs[0].1.as_bytes())
        .build();
    udp.send_to(&no_key, listener.local_addr()).unwrap();
    udp.send_to(&hep_sip(false, &msgs[2].1, 10, false, "right", 1), listener.local_addr()).unwrap();
    let sessions = analyse(&listener, &mut source, |l| count(l).0 == 3);
    assert_eq!(count(&listener), (3, 1, 0, 2, 0));
    assert_eq!(source.counters().snapshot().3, 2, "refused packets are the source's drops");
    assert_eq!(summaries(&one_call(&sessions, "keyed")), vec!["180 Ringing 192.0.2.2:5080->192.0.2.1:5060"]);
}

#[test]
fn truncated_and_malformed_packets_are_counted_and_the_listener_goes_on() {
    let (listener, mut source) = listen(None);
    let udp = UdpSocket::bind("127.0.0.1:0").unwrap();
    let msgs = call("survivor");
    let whole = hep_sip(true, &msgs[0].1, 0, false, "k", 1);
    // Cut short, a chunk length below its header, not HEP at all, and SIP without addresses.
    udp.send_to(&whole[..whole.len() - 10], listener.local_addr()).unwrap();
    udp.send_to(b"HEP3\0\x0c\0\0\0\x07\0\x03", listener.local_addr()).unwrap();
    udp.send_to(b"GET / HTTP/1.1\r\n\r\n", listener.local_addr()).unwrap();
    let no_addresses = Hep3Builder::new().proto_type(ProtoType::Sip).payload(msgs[0].1.as_bytes()).build();
    udp.send_to(&no_addresses, listener.local_addr()).unwrap();
    // A log line (type 100): not for the analysis, ignored.
    let log = Hep3Builder::new().proto_type(ProtoType::Log).payload(b"a log line").build();
    udp.send_to(&log, listener.local_addr()).unwrap();
    // Over TCP: a whole packet, then one the peer closes in the middle of.
    let mut tcp = TcpStream::connect(listener.local_addr()).unwrap();
    tcp.write_all(&hep_sip(false, &msgs[1].1, 5, true, "k", 1)).unwrap();
    tcp.write_all(&whole[..40]).unwrap();
    drop(tcp);
    // A stream that is not HEP at all is closed.
    let mut junk = TcpStream::connect(listener.local_addr()).unwrap();
    junk.write_all(b"OPTIONS sip:x SIP/2.0\r\n\r\n").unwrap();
    drop(junk);
    udp.send_to(&whole, listener.local_addr()).unwrap();
    let sessions = analyse(&listener, &mut source, |l| count(l).2 == 6 && count(l).1 == 2);
    // Packets: 5 datagrams before the good one, the good TCP packet, the good datagram; the
    // cut TCP packet and the junk stream are malformed without being whole packets.
    assert_eq!(count(&listener), (7, 2, 6, 0, 1));
    assert_eq!(source.counters().snapshot().3, 6);
    assert_eq!(one_call(&sessions, "survivor").messages.len(), 2);
}

#[test]
fn hep2_packets_of_older_agents_are_analysed() {
    let (listener, mut source) = listen(None);
    let udp = UdpSocket::bind("127.0.0.1:0").unwrap();
    for (i, (dir, text)) in call("v2-call").into_iter().enumerate() {
        let (sp, dp, sa, da) = if dir {
            (5060u16, 5080u16, [192, 0, 2, 1], [192, 0, 2, 2])
        } else {
            (5080, 5060, [192, 0, 2, 2], [192, 0, 2, 1])
        };
        let mut b = vec![2, 28, 2, 17];
        b.extend_from_slice(&sp.to_be_bytes());
        b.extend_from_slice(&dp.to_be_bytes());
        b.extend_from_slice(&sa);
        b.extend_from_slice(&da);
        b.extend_from_slice(&1_600_000_000u32.to_le_bytes());
        b.extend_from_slice(&(i as u32 * 1000).to_le_bytes());
        b.extend_from_slice(&77u16.to_le_bytes());
        b.extend_from_slice(&[0, 0]);
        b.extend_from_slice(text.as_bytes());
        udp.send_to(&b, listener.local_addr()).unwrap();
    }
    let sessions = analyse(&listener, &mut source, |l| count(l).1 == 7);
    let s = one_call(&sessions, "v2-call");
    assert_eq!(s.state, CallState::Completed);
    assert!(s.messages.iter().all(|m| m.capture_agent == Some(77)));
}

/// A SIP message with an SDP body announcing audio at `media`.
fn with_sdp(message: &str, media: SocketAddr) -> String {
    let sdp = format!(
        "v=0\r\no=- 1 1 IN IP4 {ip}\r\ns=-\r\nc=IN IP4 {ip}\r\nt=0 0\r\nm=audio {port} RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\n",
        ip = media.ip(),
        port = media.port()
    );
    message.replace(
        "Content-Length: 0\r\n\r\n",
        &format!("Content-Type: application/sdp\r\nContent-Length: {}\r\n\r\n{sdp}", sdp.len()),
    )
}

fn hep_udp(src: &str, dst: &str, ms: u32, proto: ProtoType, payload: &[u8]) -> Vec<u8> {
    hep_header(src.parse().unwrap(), dst.parse().unwrap(), false, ms)
        .proto_type(proto)
        .chunk(0, chunk::CORRELATION_ID, b"rtcp-call")
        .payload(payload)
        .build()
}

#[test]
fn rtcp_reports_sent_as_json_are_attached_to_their_streams() {
    let (listener, mut source) = listen(None);
    let udp = UdpSocket::bind("127.0.0.1:0").unwrap();
    let send = |bytes: Vec<u8>| udp.send_to(&bytes, listener.local_addr()).unwrap();
    let msgs = call("rtcp-call");
    let (a_media, b_media) = ("192.0.2.1:40000", "192.0.2.2:50000");
    send(hep_sip(true, &with_sdp(&msgs[0].1, a_media.parse().unwrap()), 0, false, "k", 1));
    send(hep_sip(false, &with_sdp(&msgs[3].1, b_media.parse().unwrap()), 100, false, "k", 1));
    send(hep_sip(true, &msgs[4].1, 150, false, "k", 1));
    // Ten RTP packets from a to b (PCMU, SSRC 0x12345678), mirrored as HEP type 4.
    for i in 0..10u16 {
        let mut rtp = vec![0x80, 0, 0, 0, 0, 0, 0, 0, 0x12, 0x34, 0x56, 0x78];
        rtp[2..4].copy_from_slice(&(1000 + i).to_be_bytes());
        rtp[4..8].copy_from_slice(&(u32::from(i) * 160).to_be_bytes());
        rtp.extend_from_slice(&[0xff; 160]);
        send(hep_udp(a_media, b_media, 200 + u32::from(i) * 20, ProtoType::Rtp, &rtp));
    }
    // b's receiver report on a's stream, as JSON, from b's RTCP port to a's.
    let json = br#"{"type":201,"ssrc":2271560481,"report_count":1,"report_blocks":[{"source_ssrc":305419896,"highest_seq_no":1009,"fraction_lost":0,"ia_jitter":12,"packets_lost":0,"lsr":0,"dlsr":0}]}"#;
    send(hep_udp("192.0.2.2:50001", "192.0.2.1:40001", 500, ProtoType::RtcpJson, json));
    send(hep_sip(true, &msgs[5].1, 600, false, "k", 1));
    send(hep_sip(false, &msgs[6].1, 650, false, "k", 1));
    let sessions = analyse(&listener, &mut source, |l| count(l).1 == 5 && l.stats().rtcp.load(Ordering::Relaxed) == 1);
    assert_eq!(listener.stats().rtp.load(Ordering::Relaxed), 10);
    let s = one_call(&sessions, "rtcp-call");
    assert_eq!(s.media.len(), 1, "{:?}", s.media);
    let stream = &s.media[0];
    assert_eq!((stream.ssrc, stream.packets), (0x1234_5678, 10));
    assert_eq!(stream.rtcp.len(), 1, "the report is attached to the stream it names");
    let report = &stream.rtcp[0];
    assert_eq!((report.packet_type.as_str(), report.ssrc, report.blocks.len()), ("RR", 2271560481, 1));
    assert_eq!((report.blocks[0].ssrc, report.blocks[0].jitter), (305419896, 12));
    assert!(s.rtcp.is_empty(), "a report its stream took is not repeated on the call: {:?}", s.rtcp);
}

#[test]
fn rtcp_reports_of_a_call_whose_rtp_was_not_mirrored_are_kept_on_the_call() {
    // As Kamailio with rtpengine does: SIP and RTCP reports as JSON with the Call-ID as
    // correlation id, no RTP.
    let (listener, mut source) = listen(None);
    let udp = UdpSocket::bind("127.0.0.1:0").unwrap();
    let send = |bytes: Vec<u8>| udp.send_to(&bytes, listener.local_addr()).unwrap();
    let msgs = call("rtcp-call");
    send(hep_sip(true, &with_sdp(&msgs[0].1, "192.0.2.1:40000".parse().unwrap()), 0, false, "k", 1));
    send(hep_sip(false, &with_sdp(&msgs[3].1, "192.0.2.2:50000".parse().unwrap()), 100, false, "k", 1));
    send(hep_sip(true, &msgs[4].1, 150, false, "k", 1));
    let sr = br#"{"type":200,"ssrc":305419896,"sender_information":{"ntp_timestamp_sec":3900000000,"ntp_timestamp_usec":2147483648,"rtp_timestamp":8000,"packets":50,"octets":8000},"report_blocks":[]}"#;
    send(hep_udp("192.0.2.1:40001", "192.0.2.2:50001", 1150, ProtoType::RtcpJson, sr));
    send(hep_sip(true, &msgs[5].1, 2000, false, "k", 1));
    send(hep_sip(false, &msgs[6].1, 2050, false, "k", 1));
    let sessions = analyse(&listener, &mut source, |l| count(l).1 == 5 && l.stats().rtcp.load(Ordering::Relaxed) == 1);
    let s = one_call(&sessions, "rtcp-call");
    assert!(s.media.is_empty(), "no RTP, no stream: {:?}", s.media);
    assert_eq!(s.rtcp.len(), 1, "the report is kept on the call");
    let r = &s.rtcp[0];
    let info = r.sender_info.expect("an SR");
    assert_eq!((r.packet_type.as_str(), r.ssrc, r.frame), ("SR", 305419896, 4));
    assert_eq!(
        (info.ntp_timestamp, info.packet_count, info.octet_count),
        ((3_900_000_000u64 << 32) | (1 << 31), 50, 8000)
    );
    assert_eq!(r.ts.as_nanos(), 1_700_000_001_150_000_000);
}

/// Kamailio, run with a configuration written for the test, killed when dropped.
struct Kamailio {
    child: Child,
    /// The configuration, log and runtime directory, removed after the process is gone.
    _dir: tempfile::TempDir,
}

impl Drop for Kamailio {
    fn drop(&mut self) {
        // SIGTERM lets the main process take its children down with it.
        let _ = Command::new("kill").args(["-TERM", &self.child.id().to_string()]).status();
        let _ = self.child.wait();
    }
}

/// The kamailio binary and its modules' directory (Debian's, by architecture, or a local build's).
fn find_kamailio() -> Option<(PathBuf, PathBuf)> {
    let binary = ["/usr/sbin/kamailio", "/usr/local/sbin/kamailio"].iter().map(PathBuf::from).find(|p| p.exists())?;
    let multiarch = std::fs::read_dir("/usr/lib").ok()?.flatten().map(|d| d.path().join("kamailio/modules"));
    let local = ["/usr/local/lib64/kamailio/modules", "/usr/local/lib/kamailio/modules"].map(PathBuf::from);
    let modules = multiarch.chain(local).find(|d| d.join("siptrace.so").exists())?;
    Some((binary, modules))
}

fn free_udp_port() -> u16 {
    UdpSocket::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// A response to `request` (its Via headers copied) with a To tag.
fn reply(request: &str, status: &str) -> String {
    let mut out = format!("SIP/2.0 {status}\r\n");
    for line in request.split("\r\n").skip(1).take_while(|l| !l.is_empty()) {
        let name = line.split(':').next().unwrap_or_default().to_ascii_lowercase();
        match name.as_str() {
            "via" | "from" | "call-id" | "cseq" => out.push_str(&format!("{line}\r\n")),
            "to" if !line.contains("tag=") => out.push_str(&format!("{line};tag=uas1\r\n")),
            "to" => out.push_str(&format!("{line}\r\n")),
            _ => {}
        }
    }
    out.push_str("Content-Length: 0\r\n\r\n");
    out
}

fn recv(socket: &UdpSocket) -> String {
    let mut buf = vec![0u8; 65_536];
    let (n, _) = socket.recv_from(&mut buf).expect("a SIP message through Kamailio");
    String::from_utf8_lossy(&buf[..n]).into_owned()
}

#[test]
fn kamailio_siptrace_mirrors_a_call_as_hep3_over_udp_and_the_listener_yields_it() {
    kamailio_mirrors_a_call(false);
}

#[test]
fn kamailio_siptrace_mirrors_a_call_as_hep3_over_tcp_and_the_listener_yields_it() {
    kamailio_mirrors_a_call(true);
}

/// Runs Kamailio as a stateless proxy between a UAC and a UAS of the test, mirroring every
/// request and reply it receives to the listener (over TCP when `hep_over_tcp`), and checks
/// the call the analysis makes of the mirror.
fn kamailio_mirrors_a_call(hep_over_tcp: bool) {
    let Some((kamailio, modules)) = find_kamailio() else {
        assert!(std::env::var_os("CI").is_none(), "kamailio is missing (Debian package kamailio)");
        eprintln!("kamailio not installed: the test with a real HEP agent is skipped");
        return;
    };
    let (listener, mut source) = listen(Some("kamkey"));
    let uac = UdpSocket::bind("127.0.0.1:0").unwrap();
    let uas = UdpSocket::bind("127.0.0.1:0").unwrap();
    for s in [&uac, &uas] {
        s.set_read_timeout(Some(Duration::from_millis(250))).unwrap();
    }
    let (uac_addr, uas_addr) = (uac.local_addr().unwrap(), uas.local_addr().unwrap());
    let sip_port = free_udp_port();
    // Kamailio sends HEP over TCP only with its TCP transport on (listening on a port of
    // its own, which nothing here connects to).
    let (tcp, transport) = if hep_over_tcp {
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        (format!("listen=tcp:127.0.0.1:{port}"), ";transport=tcp")
    } else {
        ("disable_tcp=yes".to_string(), "")
    };
    let dir = tempfile::tempdir().unwrap();
    let config = format!(
        r#"#!KAMAILIO
debug=2
log_stderror=yes
children=1
tcp_children=1
{tcp}
auto_aliases=no
listen=udp:127.0.0.1:{sip_port}
loadmodule "sl.so"
loadmodule "tm.so"
loadmodule "pv.so"
loadmodule "siptrace.so"
modparam("siptrace", "duplicate_uri", "sip:{hep}{transport}")
modparam("siptrace", "hep_mode_on", 1)
modparam("siptrace", "hep_version", 3)
modparam("siptrace", "hep_capture_id", 4242)
modparam("siptrace", "auth_key", "kamkey")
modparam("siptrace", "trace_to_database", 0)
modparam("siptrace", "trace_on", 1)
request_route {{
    sip_trace();
    forward("127.0.0.1", {uas_port});
    exit;
}}
onreply_route {{
    sip_trace();
}}
"#,
        hep = listener.local_addr(),
        uas_port = uas_addr.port()
    );
    std::fs::write(dir.path().join("kamailio.cfg"), config).unwrap();
    let child = Command::new(&kamailio)
        .arg("-f")
        .arg(dir.path().join("kamailio.cfg"))
        .args(["-DD", "-E", "-L"])
        .arg(&modules)
        .arg("-Y")
        .arg(dir.path())
        .arg("-P")
        .arg(dir.path().join("kamailio.pid"))
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(dir.path().join("kamailio.log")).unwrap())
        .spawn()
        .expect("start kamailio");
    let log = dir.path().join("kamailio.log");
    let _kamailio = Kamailio { child, _dir: dir };
    let proxy: SocketAddr = format!("127.0.0.1:{sip_port}").parse().unwrap();

    // Kamailio takes a moment to listen: probe with OPTIONS until one comes through. It
    // handles requests in order, so once the latest probe arrives, every earlier one that
    // will ever come through has: the count of probes it mirrored is exact.
    let mut probes_through = 0;
    let mut buf = [0u8; 4096];
    for attempt in 0..80 {
        let call_id = format!("probe-{attempt}");
        uac.send_to(sip("OPTIONS sip:bob@example.com SIP/2.0", &call_id, "1 OPTIONS", false).as_bytes(), proxy)
            .unwrap();
        let mut latest = false;
        while let Ok((n, _)) = uas.recv_from(&mut buf) {
            probes_through += 1;
            if String::from_utf8_lossy(&buf[..n]).contains(&format!("Call-ID: {call_id}\r\n")) {
                latest = true;
                break;
            }
        }
        if latest {
            break;
        }
    }
    assert!(
        probes_through > 0,
        "Kamailio never forwarded a request; its log:\n{}",
        std::fs::read_to_string(&log).unwrap_or_default()
    );

    // The call: alice (UAC) through Kamailio to bob (UAS).
    let msg = |first: &str, cseq: &str, tag: bool| {
        sip(first, "kamailio-call", cseq, tag)
            .replace("192.0.2.1:5060", &uac_addr.to_string())
            .replace("<sip:alice@192.0.2.1>", &format!("<sip:alice@{uac_addr}>"))
    };
    uac.send_to(msg("INVITE sip:bob@example.com SIP/2.0", "1 INVITE", false).as_bytes(), proxy).unwrap();
    let invite = recv(&uas);
    uas.send_to(reply(&invite, "180 Ringing").as_bytes(), proxy).unwrap();
    uas.send_to(reply(&invite, "200 OK").as_bytes(), proxy).unwrap();
    assert!(recv(&uac).starts_with("SIP/2.0 180"));
    assert!(recv(&uac).starts_with("SIP/2.0 200"));
    uac.send_to(msg("ACK sip:bob@example.com SIP/2.0", "1 ACK", true).as_bytes(), proxy).unwrap();
    let _ack = recv(&uas);
    uac.send_to(msg("BYE sip:bob@example.com SIP/2.0", "2 BYE", true).as_bytes(), proxy).unwrap();
    let bye = recv(&uas);
    uas.send_to(reply(&bye, "200 OK").as_bytes(), proxy).unwrap();
    assert!(recv(&uac).starts_with("SIP/2.0 200"));

    // The probe that came through, and the call's six messages as Kamailio received them.
    let sessions = analyse(&listener, &mut source, |l| count(l).1 == probes_through + 6);
    let (packets, sip_count, malformed, unauthorized, _) = count(&listener);
    assert_eq!((sip_count, malformed, unauthorized), (probes_through + 6, 0, 0), "{packets} HEP packets");
    let s = one_call(&sessions, "kamailio-call");
    assert_eq!(s.state, CallState::Completed);
    let kam = proxy.to_string();
    let (a, b) = (uac_addr.to_string(), uas_addr.to_string());
    assert_eq!(
        summaries(&s),
        vec![
            format!("INVITE {a}->{kam}"),
            format!("180 Ringing {b}->{kam}"),
            format!("200 OK {b}->{kam}"),
            format!("ACK {a}->{kam}"),
            format!("BYE {a}->{kam}"),
            format!("200 OK {b}->{kam}"),
        ]
    );
    assert!(s.messages.iter().all(|m| m.capture_agent == Some(4242) && m.transport == Transport::Udp));
    let connections = listener.stats().connections.load(Ordering::Relaxed);
    assert_eq!(connections > 0, hep_over_tcp, "HEP came over TCP when asked to ({connections} connections)");
}

/// The shared corpus (`../shared/pcaps`, or `CALLFLOW_PCAPS`), or `None` with a line
/// saying the corpus part is skipped; missing in CI, a failure.
fn corpus_dir() -> Option<PathBuf> {
    let dir = std::env::var_os("CALLFLOW_PCAPS")
        .map(PathBuf::from)
        .unwrap_or_else(|| std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/pcaps"));
    if dir.is_dir() {
        return Some(dir);
    }
    assert!(std::env::var_os("CI").is_none(), "the capture corpus is missing at {}", dir.display());
    eprintln!("capture corpus not found at {}: corpus checks skipped", dir.display());
    None
}

/// The HEP datagrams of a corpus capture sent to `outer_dst`, in capture order.
fn corpus_hep(name: &str, outer_dst: &str) -> Option<Vec<Vec<u8>>> {
    use callflow_decode::capture::CaptureReader;
    use callflow_decode::packet::{decode_frame, Transport as Tp};
    let path = corpus_dir()?.join("public/hep-wireshark").join(name);
    let mut reader = CaptureReader::open(&path).unwrap();
    let mut out = Vec::new();
    while let Some(frame) = reader.next_frame().unwrap() {
        let packet = decode_frame(frame.link_type, frame.data);
        if let (Some(ip), Tp::Udp { payload, .. }) = (packet.ip, packet.transport) {
            if ip.dst.to_string() == outer_dst {
                out.push(payload.to_vec());
            }
        }
    }
    Some(out)
}

#[test]
fn real_hep_captures_replayed_to_the_listener_give_their_sip() {
    // The compressed capture caught each HEP packet at three points; one point's copies.
    let Some(register) = corpus_hep("hep3_compressed.pcap.pcapng", "255.255.255.255") else { return };
    let Some(hepgen) = corpus_hep("hep.pcap", "127.0.0.1") else { return };
    let (listener, mut source) = listen(Some("myHep"));
    let udp = UdpSocket::bind("127.0.0.1:0").unwrap();
    for packet in register.iter().chain(&hepgen) {
        udp.send_to(packet, listener.local_addr()).unwrap();
    }
    let sessions = analyse(&listener, &mut source, |l| count(l).0 == 15);
    // hep.pcap's log line is ignored, and its RTCP JSON (hepgen's, with an NTP fraction
    // beyond 32 bits) cannot be written back faithfully.
    assert_eq!(count(&listener), (15, 13, 1, 0, 1));
    let mut seen: Vec<String> = sessions
        .iter()
        .flat_map(|s| &s.messages)
        .map(|m| format!("{} {} {:?} agent {:?}", m.frame, m.summary, m.transport, m.capture_agent))
        .collect();
    seen.sort_by_key(|l| l.split(' ').next().unwrap().parse::<u64>().unwrap());
    let expected = [
        "1 REGISTER Tcp agent Some(228)",
        "2 REGISTER Tcp agent Some(228)",
        "3 401 Unauthorized Tcp agent Some(228)",
        "4 401 Unauthorized Tcp agent Some(228)",
        "5 REGISTER Tcp agent Some(228)",
        "6 REGISTER Tcp agent Some(228)",
        "7 200 OK Tcp agent Some(228)",
        "8 INVITE (SDP) Udp agent Some(2001)",
        "9 100 Trying Udp agent Some(2001)",
        "10 407 Proxy Authentication Required Udp agent Some(2001)",
        "11 OPTIONS Udp agent Some(2001)",
        "12 200 Alive Udp agent Some(2001)",
        "13 PUBLISH Udp agent Some(2001)",
    ];
    assert_eq!(seen, expected);
}

#[test]
fn tcp_connections_beyond_the_limit_are_closed_and_counted() {
    let (tx, mut source) = channel(64, Duration::from_millis(50));
    let options = HepOptions { listen: "127.0.0.1:0".parse().unwrap(), max_connections: 1, ..HepOptions::default() };
    let listener = hep::start(&options, tx).unwrap();
    let msgs = call("limited");
    let mut first = TcpStream::connect(listener.local_addr()).unwrap();
    first.write_all(&hep_sip(true, &msgs[0].1, 0, true, "k", 1)).unwrap();
    let _ = analyse(&listener, &mut source, |l| count(l).1 == 1);
    // The first connection is still open: a second one is over the limit.
    let mut second = TcpStream::connect(listener.local_addr()).unwrap();
    let _ = second.write_all(&hep_sip(false, &msgs[1].1, 10, true, "k", 1));
    let _ = analyse(&listener, &mut source, |l| l.stats().refused_connections.load(Ordering::Relaxed) == 1);
    assert_eq!(count(&listener).1, 1, "nothing read from the refused connection");
    // Once the first closes, a new connection is served (the first's slot is given back
    // when its thread sees the close: until then a new one may be refused too).
    drop(first);
    let mut third = loop {
        let mut s = TcpStream::connect(listener.local_addr()).unwrap();
        s.write_all(&hep_sip(false, &msgs[1].1, 10, true, "k", 1)).unwrap();
        let before = listener.stats().refused_connections.load(Ordering::Relaxed);
        let _ = analyse(&listener, &mut source, |l| {
            count(l).1 == 2 || l.stats().refused_connections.load(Ordering::Relaxed) > before
        });
        if count(&listener).1 == 2 {
            break s;
        }
    };
    third.flush().unwrap();
    assert_eq!(listener.stats().connections.load(Ordering::Relaxed), 2);
}
