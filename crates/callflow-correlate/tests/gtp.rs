//! GTP sessions on built packets: a PDN connection's transactions, bearers, subscriber keys and user-plane counters by TEID, and damaged GTP-C that is recorded, never a panic.

#[path = "common/packets.rs"]
mod packets;

use callflow_correlate::Analyzer;
use callflow_decode::capture::Frame;
use callflow_decode::{LinkType, Timestamp};
use callflow_model::{CallState, GtpDirection, GtpTraffic, Session, SessionKind, Stats, SubscriberKeyKind};
use packets::{ipv4, udp};

const MME: [u8; 4] = [10, 0, 0, 1];
const SGW: [u8; 4] = [10, 0, 0, 2];
const ENB: [u8; 4] = [192, 0, 2, 1];
const SGW_U: [u8; 4] = [198, 51, 100, 1];

fn ie(t: u8, instance: u8, value: &[u8]) -> Vec<u8> {
    let mut v = vec![t];
    v.extend((value.len() as u16).to_be_bytes());
    v.push(instance);
    v.extend(value);
    v
}

fn fteid(interface: u8, teid: u32, addr: [u8; 4]) -> Vec<u8> {
    let mut v = vec![0x80 | interface];
    v.extend(teid.to_be_bytes());
    v.extend(addr);
    ie(87, 0, &v)
}

fn qos(qci: u8, gbr: u64) -> Vec<u8> {
    let mut v = vec![9 << 2, qci];
    for r in [gbr, gbr, gbr, gbr] {
        v.extend(&r.to_be_bytes()[3..]);
    }
    ie(80, 0, &v)
}

fn gtpv2(t: u8, teid: u32, seq: u32, ies: &[Vec<u8>]) -> Vec<u8> {
    let body = ies.concat();
    let mut v = vec![0x48, t];
    v.extend(((body.len() + 8) as u16).to_be_bytes());
    v.extend(teid.to_be_bytes());
    v.extend(&seq.to_be_bytes()[1..]);
    v.push(0);
    v.extend(body);
    v
}

fn control(src: [u8; 4], dst: [u8; 4], gtp: &[u8]) -> Vec<u8> {
    ipv4(src, dst, 17, 0, 0x4000, &udp(2123, 2123, gtp))
}

/// A G-PDU to `dst` with TEID `teid`, carrying an inner IPv4/UDP packet of 28 + `n` bytes.
fn gpdu(src: [u8; 4], dst: [u8; 4], teid: u32, n: usize) -> Vec<u8> {
    let inner = ipv4([10, 45, 0, 7], [10, 99, 0, 1], 17, 0, 0x4000, &udp(4000, 4000, &vec![0; n]));
    let mut g = vec![0x30, 255];
    g.extend((inner.len() as u16).to_be_bytes());
    g.extend(teid.to_be_bytes());
    g.extend(inner);
    ipv4(src, dst, 17, 0, 0x4000, &udp(2152, 2152, &g))
}

fn analyse(packets: &[Vec<u8>]) -> (Vec<Session>, Stats) {
    let mut analyzer = Analyzer::default();
    for (i, data) in packets.iter().enumerate() {
        analyzer.process(&Frame {
            number: i as u64 + 1,
            ts: Timestamp::from_nanos(1_700_000_000_000_000_000 + i as i64 * 10_000_000),
            link_type: LinkType::IPV4,
            data,
            orig_len: data.len() as u32,
            interface: 0,
        });
    }
    analyzer.finish()
}

fn attach_and_dedicated_bearer() -> Vec<Vec<u8>> {
    let imsi = ie(1, 0, &[0x00, 0x01, 0x01, 0x21, 0x43, 0x65, 0x87, 0xf9]);
    let msisdn = ie(76, 0, &[0x64, 0x07, 0x12, 0x54, 0x76, 0xf8]);
    let mei = ie(75, 0, &[0x53, 0x91, 0x02, 0x30, 0x45, 0x67, 0x89, 0x10]);
    let apn = ie(71, 0, b"\x03ims");
    vec![
        control(
            MME,
            SGW,
            &gtpv2(
                32,
                0,
                1,
                &[
                    imsi,
                    msisdn,
                    mei,
                    apn,
                    ie(82, 0, &[6]),
                    fteid(10, 0x100, MME),
                    ie(93, 0, &[ie(73, 0, &[5]), qos(5, 0)].concat()),
                ],
            ),
        ),
        control(
            SGW,
            MME,
            &gtpv2(
                33,
                0x100,
                1,
                &[
                    ie(2, 0, &[16, 0]),
                    fteid(11, 0x200, SGW),
                    ie(79, 0, &[1, 10, 45, 0, 7]),
                    ie(93, 0, &[ie(73, 0, &[5]), ie(2, 0, &[16, 0]), fteid(1, 0x300, SGW_U)].concat()),
                ],
            ),
        ),
        control(MME, SGW, &gtpv2(34, 0x200, 2, &[ie(93, 0, &[ie(73, 0, &[5]), fteid(0, 0x400, ENB)].concat())])),
        control(SGW, MME, &gtpv2(35, 0x100, 2, &[ie(2, 0, &[16, 0])])),
        gpdu(ENB, SGW_U, 0x300, 100),
        gpdu(SGW_U, ENB, 0x400, 50),
        gpdu(ENB, SGW_U, 0x300, 100),
        control(
            SGW,
            MME,
            &gtpv2(
                95,
                0x100,
                3,
                &[ie(73, 0, &[5]), ie(93, 0, &[ie(73, 0, &[0]), qos(1, 64), fteid(1, 0x301, SGW_U)].concat())],
            ),
        ),
        control(
            MME,
            SGW,
            &gtpv2(
                96,
                0x200,
                3,
                &[
                    ie(2, 0, &[16, 0]),
                    ie(
                        93,
                        0,
                        &[ie(73, 0, &[6]), ie(2, 0, &[16, 0]), fteid(0, 0x401, ENB), fteid(1, 0x301, SGW_U)].concat(),
                    ),
                ],
            ),
        ),
        gpdu(ENB, SGW_U, 0x301, 32),
        gpdu(SGW_U, ENB, 0x401, 32),
        gpdu(SGW_U, ENB, 0x401, 32),
        // A TEID no bearer announced: not counted anywhere.
        gpdu(ENB, SGW_U, 0x999, 10),
        control(MME, SGW, &gtpv2(36, 0x200, 4, &[ie(73, 0, &[5])])),
        control(SGW, MME, &gtpv2(37, 0x100, 4, &[ie(2, 0, &[16, 0])])),
    ]
}

#[test]
fn pdn_connection_with_dedicated_bearer() {
    let (sessions, _) = analyse(&attach_and_dedicated_bearer());
    let gtp: Vec<&Session> = sessions.iter().filter(|s| s.kind == SessionKind::Gtp).collect();
    assert_eq!(gtp.len(), 1, "{:#?}", gtp);
    let s = gtp[0];
    assert_eq!(s.state, CallState::Completed);
    let summaries: Vec<&str> = s.messages.iter().map(|m| m.summary.as_str()).collect();
    assert_eq!(
        summaries,
        [
            "Create Session Request (APN ims, EBI 5)",
            "Create Session Response (Request accepted)",
            "Modify Bearer Request (EBI 5)",
            "Modify Bearer Response (Request accepted)",
            "Create Bearer Request (LBI 5, QCI 1)",
            "Create Bearer Response (Request accepted)",
            "Delete Session Request (EBI 5)",
            "Delete Session Response (Request accepted)",
        ]
    );
    let g = s.gtp.as_ref().unwrap();
    assert_eq!(g.imsi.as_deref(), Some("001010123456789"));
    assert_eq!(g.msisdn.as_deref(), Some("46702145678"));
    assert_eq!(g.mei.as_deref(), Some("3519200354769801"));
    assert_eq!((g.apn.as_deref(), g.rat_type.as_deref()), (Some("ims"), Some("EUTRAN")));
    assert_eq!(g.ue_addresses, ["10.45.0.7".parse::<std::net::IpAddr>().unwrap()]);
    let pairs: Vec<(u64, Option<u64>, Option<u8>)> =
        g.transactions.iter().map(|t| (t.request_frame, t.response_frame, t.cause)).collect();
    assert_eq!(
        pairs,
        [(1, Some(2), Some(16)), (3, Some(4), Some(16)), (8, Some(9), Some(16)), (14, Some(15), Some(16))]
    );
    assert_eq!(g.transactions[0].latency_ms, Some(10.0));

    // Bearers: the default one (EBI 5, QCI 5) and the dedicated one the Create Bearer
    // Response numbered 6 (QCI 1, GBR 64 kbps), each with its user traffic by TEID. An
    // inner packet is 20 + 8 + n bytes.
    let b: Vec<_> = g.bearers.iter().map(|b| (b.ebi, b.qci, b.gbr_kbps, b.uplink, b.downlink, b.deleted)).collect();
    let t = |packets, bytes| GtpTraffic { packets, bytes };
    assert_eq!(
        b,
        [
            (Some(5), Some(5), Some((0, 0)), t(2, 256), t(1, 78), true),
            (Some(6), Some(1), Some((64, 64)), t(1, 60), t(2, 120), true),
        ]
    );
    let dedicated = &g.bearers[1];
    let directions: Vec<_> = dedicated.teids.iter().map(|t| (t.teid, t.direction)).collect();
    assert_eq!(directions, [(0x301, Some(GtpDirection::Uplink)), (0x401, Some(GtpDirection::Downlink))]);

    let keys: Vec<(SubscriberKeyKind, &str)> = s.subscriber_keys.iter().map(|k| (k.kind, k.value.as_str())).collect();
    assert_eq!(
        keys,
        [
            (SubscriberKeyKind::Imsi, "001010123456789"),
            (SubscriberKeyKind::Msisdn, "46702145678"),
            (SubscriberKeyKind::Imei, "3519200354769801"),
            (SubscriberKeyKind::Teid, "0x00000100"),
            (SubscriberKeyKind::UeAddress, "10.45.0.7"),
            (SubscriberKeyKind::Teid, "0x00000200"),
            (SubscriberKeyKind::Teid, "0x00000300"),
            (SubscriberKeyKind::Teid, "0x00000400"),
            (SubscriberKeyKind::Teid, "0x00000301"),
            (SubscriberKeyKind::Teid, "0x00000401"),
        ]
    );
    let json = serde_json::to_value(s).unwrap();
    assert_eq!(json["messages"][0]["protocol"], "gtp");
    assert_eq!(json["messages"][0]["gtp"]["ies"][6]["children"][1]["name"], "Bearer QoS");
}

#[test]
fn error_indication_reaches_the_bearer_session() {
    // The SGW-U could not deliver a G-PDU sent to TEID 0x300 (the default bearer's uplink
    // endpoint): its GTPv1-U Error Indication names that endpoint.
    let mut packets = attach_and_dedicated_bearer();
    let mut ies = vec![16, 0, 0, 0x03, 0x00, 133, 0, 4];
    ies.extend(SGW_U);
    let mut ei = vec![0x32, 26];
    ei.extend(((ies.len() + 4) as u16).to_be_bytes());
    ei.extend([0, 0, 0, 0, 0, 7, 0, 0]);
    ei.extend(ies);
    packets.push(ipv4(SGW_U, ENB, 17, 0, 0x4000, &udp(2152, 2152, &ei)));
    let (sessions, _) = analyse(&packets);
    let pdn = sessions.iter().find(|s| s.gtp.as_ref().is_some_and(|g| g.path.is_none())).unwrap();
    assert_eq!(
        pdn.anomalies,
        ["frame 16: Error Indication from 198.51.100.1: the G-PDUs to TEID 0x00000300 at 198.51.100.1 were not delivered"]
    );
    let path = sessions.iter().find_map(|s| s.gtp.as_ref()?.path).unwrap();
    assert_eq!(path.error_indications, 1);
}

#[test]
fn damaged_gtp_c_is_recorded_not_a_panic() {
    // Bearer contexts nested eight deep, an IE whose length runs past the message, and a
    // GTPv2 header whose length leaves no room for the TEID its T flag announces (a
    // malformed message: the whole datagram is counted so).
    let mut nested = ie(73, 0, &[5]);
    for _ in 0..8 {
        nested = ie(93, 0, &nested);
    }
    let mut lying = gtpv2(34, 0x55, 9, &[ie(86, 0, &[0x18, 0, 0xf1])]);
    lying[14] = 200;
    let packets = vec![
        control(MME, SGW, &gtpv2(32, 0, 1, &[nested])),
        control(MME, SGW, &lying),
        control(MME, SGW, &[0x48, 0x20, 0, 4, 0, 0, 0, 0]),
    ];
    let (sessions, stats) = analyse(&packets);
    let anomalies: Vec<&str> = sessions.iter().flat_map(|s| s.anomalies.iter().map(String::as_str)).collect();
    assert!(
        anomalies.contains(
            &"frame 1: Create Session Request: gtp: invalid grouped IE at offset 28: nested deeper than 4 levels"
        ),
        "{anomalies:?}"
    );
    assert!(
        anomalies
            .contains(&"frame 2: Modify Bearer Request: gtp: truncated at offset 16: needs 200 bytes, 3 available"),
        "{anomalies:?}"
    );
    assert_eq!(stats.malformed, 1);
    let errors: Vec<_> =
        sessions.iter().flat_map(|s| &s.messages).filter_map(|m| m.gtp.as_ref()?.error.clone()).collect();
    assert_eq!(errors.len(), 2);
}

#[test]
fn endpoints_announced_without_end_stay_bounded() {
    // One session whose Modify Bearer Requests announce a new eNodeB endpoint each time:
    // what a session keeps of them is bounded, whatever the capture holds.
    let mut packets = vec![
        control(MME, SGW, &gtpv2(32, 0, 1, &[fteid(10, 0x100, MME)])),
        control(SGW, MME, &gtpv2(33, 0x100, 1, &[ie(2, 0, &[16, 0]), fteid(11, 0x200, SGW)])),
    ];
    for i in 0..300u32 {
        let bearer = ie(93, 0, &[ie(73, 0, &[5]), fteid(0, 0x1000 + i, ENB)].concat());
        packets.push(control(MME, SGW, &gtpv2(34, 0x200, 2 + i, &[bearer])));
    }
    let (sessions, _) = analyse(&packets);
    assert_eq!(sessions.len(), 1);
    let s = &sessions[0];
    let g = s.gtp.as_ref().unwrap();
    assert_eq!((s.messages.len(), g.transactions.len()), (302, 301));
    assert_eq!(g.bearers.len(), 1);
    assert_eq!(g.bearers[0].teids.len(), 64);
    assert_eq!(s.subscriber_keys.len(), 64);
}

#[path = "common/mod.rs"]
mod common;

fn gtp_sessions_of(file: &str) -> Option<Vec<Session>> {
    let corpus = common::corpus_dir()?;
    let mut reader = callflow_decode::capture::CaptureReader::open(corpus.join("public").join(file)).unwrap();
    let doc = callflow_correlate::analyze(&mut reader, file, Default::default(), None).unwrap();
    Some(doc.sessions.into_iter().filter(|s| s.kind == SessionKind::Gtp).collect())
}

/// Real GTP-C frames cut at every length and with bytes changed at random, all through one
/// analyzer: sessions and counters take whatever comes, never a panic.
#[test]
fn damaged_real_gtp_frames_never_panic() {
    let Some(corpus) = common::corpus_dir() else { return };
    let files =
        ["ndpi/gtp_c.pcap", "snice/create_pdp_context.pcap", "pcapplusplus/gtpv2.pcap", "zeek/pdp_ctx_messages.pcapng"];
    let mut analyzer = Analyzer::default();
    let mut state = 0x9e37_79b9_7f4a_7c15u64;
    let mut rng = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    let mut number = 0;
    for file in files {
        let mut reader = callflow_decode::capture::CaptureReader::open(corpus.join("public").join(file)).unwrap();
        let mut frames = Vec::new();
        while let Ok(Some(f)) = reader.next_frame() {
            frames.push((f.link_type, f.data.to_vec()));
        }
        for (link_type, data) in frames {
            let mut variants: Vec<Vec<u8>> = (0..=data.len()).map(|n| data[..n].to_vec()).collect();
            for _ in 0..100 {
                let mut bytes = data.clone();
                for _ in 0..1 + rng() % 4 {
                    let at = (rng() as usize) % bytes.len();
                    // The bytes past the outer headers are GTP's: damage them most.
                    let at = if rng() % 4 == 0 { at } else { at.max(42.min(bytes.len() - 1)) };
                    bytes[at] = rng() as u8;
                }
                variants.push(bytes);
            }
            for bytes in variants {
                number += 1;
                analyzer.process(&Frame {
                    number,
                    ts: Timestamp::from_nanos(1_700_000_000_000_000_000 + number as i64 * 1_000_000),
                    link_type,
                    data: &bytes,
                    orig_len: bytes.len() as u32,
                    interface: 0,
                });
            }
        }
    }
    let (sessions, stats) = analyzer.finish();
    assert!(number > 3000);
    assert!(sessions.iter().filter(|s| s.kind == SessionKind::Gtp).count() > 10);
    assert!(stats.malformed > 0);
}

/// The GTPv2 attach and detach of nDPI's gtp_c.pcap, field by field as tshark decodes them
/// (tshark writes the ECI with the spare nibble, 0x12345678; TS 29.274 §8.21.5 leaves 28 bits).
#[test]
fn real_gtpv2_create_and_delete_session() {
    let Some(sessions) = gtp_sessions_of("ndpi/gtp_c.pcap") else { return };
    assert_eq!(sessions.len(), 1);
    let s = &sessions[0];
    assert_eq!(s.state, CallState::Completed);
    let g = s.gtp.as_ref().unwrap();
    assert_eq!(
        (g.imsi.as_deref(), g.msisdn.as_deref(), g.mei.as_deref(), g.apn.as_deref()),
        (Some("987654112233445"), Some("896745214365"), Some("436587092110203"), Some("internet"))
    );
    assert_eq!(g.location.as_deref(), Some("TAI 896-457/0x1234 ECGI 896-457/0x2345678"));
    assert_eq!(g.apn_ambr_kbps, Some((9999, 9999)));
    let b = &g.bearers[0];
    assert_eq!((b.ebi, b.qci, b.arp, b.preemption, b.deleted), (Some(5), Some(7), Some(6), Some((true, true)), true));
    let teids: Vec<_> = b.teids.iter().map(|t| (t.interface.as_deref(), t.direction)).collect();
    assert_eq!(
        teids,
        [
            (Some("S5/S8 SGW GTP-U"), Some(GtpDirection::Downlink)),
            (Some("S5/S8 PGW GTP-U"), Some(GtpDirection::Uplink))
        ]
    );
    let t: Vec<_> = g.transactions.iter().map(|t| (t.request.as_str(), t.response_frame, t.accepted)).collect();
    assert_eq!(t, [("Create Session Request", Some(2), Some(true)), ("Delete Session Request", Some(4), Some(true))]);
}

/// A real GTPv1 Create PDP Context exchange (snice): the subscriber, the QoS profile's bit
/// rates as tshark decodes them, and the two data-plane TEIDs, one per direction.
#[test]
fn real_gtpv1_create_pdp_context() {
    let Some(sessions) = gtp_sessions_of("snice/create_pdp_context.pcap") else { return };
    assert_eq!(sessions.len(), 1);
    let s = &sessions[0];
    assert_eq!(s.state, CallState::InCall);
    let g = s.gtp.as_ref().unwrap();
    assert_eq!(
        (g.version, g.imsi.as_deref(), g.mei.as_deref()),
        (1, Some("234507092111649"), Some("8678580320829978"))
    );
    assert_eq!(g.msisdn.as_deref(), Some("882362000011649"));
    let b = &g.bearers[0];
    assert_eq!((b.nsapi, b.arp, b.mbr_kbps, b.gbr_kbps), (Some(5), Some(3), Some((256, 480)), Some((16, 64))));
    let dirs: Vec<_> = b.teids.iter().map(|t| t.direction).collect();
    assert_eq!(dirs, [Some(GtpDirection::Downlink), Some(GtpDirection::Uplink)]);
    assert_eq!(s.messages[1].summary, "Create PDP Context Response (Request accepted)");
}

/// Echo between two GTPv1 nodes is path management: one `path` session with its counters,
/// beside the PDP contexts.
#[test]
fn real_echo_is_a_path_session() {
    let Some(sessions) = gtp_sessions_of("zeek/pdp_ctx_messages.pcapng") else { return };
    let paths: Vec<_> = sessions.iter().filter_map(|s| s.gtp.as_ref()?.path).collect();
    assert_eq!(paths.len(), 1);
    assert_eq!((paths[0].echo_requests, paths[0].echo_responses), (1, 1));
    assert_eq!(sessions.len(), 3);
}
