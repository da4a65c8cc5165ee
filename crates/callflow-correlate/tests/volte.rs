//! The generated VoLTE capture (`cargo xtask gen-pcap --volte`, `test_data/volte/`) analysed end to end: every SIP message inside GTP-U found, and every key the subscriber view joins on checked against the generator's truth.

use callflow_correlate::{analyze, AnalyzerOptions};
use callflow_decode::capture::CaptureReader;
use callflow_model::{Document, Relation, Session, SessionKind, SubscriberKeyKind, TunnelKind};
use serde_json::Value;
use std::path::{Path, PathBuf};

fn capture() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("test_data/volte/volte.pcap")
}

fn truth() -> Value {
    serde_json::from_slice(&std::fs::read(capture().with_extension("truth.json")).expect("truth")).expect("JSON")
}

fn analyse(sink: bool) -> Document {
    let path = capture();
    let mut reader = CaptureReader::open(&path).expect("open capture");
    let mut sessions = Vec::new();
    let mut keep = |s: Session| sessions.push(s);
    let sink: Option<&mut dyn FnMut(Session)> = if sink { Some(&mut keep) } else { None };
    let mut doc = analyze(&mut reader, "volte.pcap", AnalyzerOptions::default(), sink).expect("analyze");
    doc.sessions.append(&mut sessions);
    doc
}

/// Whether `session` carries the key `kind` = `value`.
fn has_key(session: &Session, kind: SubscriberKeyKind, value: &str) -> bool {
    session.subscriber_keys.iter().any(|k| k.kind == kind && k.value == value)
}

fn text<'a>(call: &'a Value, field: &str) -> &'a str {
    call[field].as_str().unwrap_or_else(|| panic!("truth has no {field}"))
}

#[test]
fn every_sip_message_and_rtp_packet_inside_gtp_u_is_found() {
    let doc = analyse(false);
    let truth = truth();
    let calls = truth["calls"].as_array().unwrap();
    assert_eq!(doc.source.packets, truth["packets"].as_u64().unwrap());
    assert_eq!(doc.stats.malformed, 0);
    let sip: usize = doc
        .sessions
        .iter()
        .filter(|s| matches!(s.kind, SessionKind::SipCall | SessionKind::SipRegister))
        .map(|s| s.messages.len())
        .sum();
    let expected: u64 =
        calls.iter().map(|c| c["sip_messages"].as_u64().unwrap() + c["register_messages"].as_u64().unwrap()).sum();
    assert_eq!(sip as u64, expected, "SIP messages inside the tunnels (tshark counts 33)");
    for call in calls {
        let find = |id: &str| doc.sessions.iter().find(|s| s.call_id == id).unwrap_or_else(|| panic!("{id} missing"));
        let invite = find(text(call, "call_id"));
        let ctx = format!("call {}", call["index"]);
        assert_eq!(invite.kind, SessionKind::SipCall, "{ctx}");
        assert_eq!(invite.state.as_str(), text(call, "expected_state"), "{ctx}");
        assert_eq!(invite.messages.len() as u64, call["sip_messages"].as_u64().unwrap(), "{ctx}");
        let tunnel = invite.tunnel.expect("the INVITE came through GTP-U");
        assert_eq!(tunnel.kind, TunnelKind::GtpU);
        assert_eq!(tunnel.teid.map(|t| format!("0x{t:08x}")).as_deref(), call["teids"]["s1u_sgw_default"].as_str());
        let rtp: u64 = invite.media.iter().map(|m| m.packets).sum();
        assert_eq!(rtp, call["rtp_packets"].as_u64().unwrap(), "{ctx}: AMR RTP in the bearer joins its call");
        let register = find(text(call, "register_call_id"));
        assert_eq!(register.messages.len(), 2, "{ctx}: REGISTER and its 200, fragmented or not");
    }
}

#[test]
fn sip_sessions_carry_the_subscriber_keys_put_in() {
    let doc = analyse(false);
    for call in truth()["calls"].as_array().unwrap() {
        let find = |id: &str| doc.sessions.iter().find(|s| s.call_id == id).unwrap();
        let (invite, register) = (find(text(call, "call_id")), find(text(call, "register_call_id")));
        use SubscriberKeyKind::*;
        let teids = &call["teids"];
        for (kind, value) in [
            (UeAddress, text(call, "ue_address")),
            (Msisdn, text(call, "msisdn")),
            (Impu, text(call, "impu")),
            (Icid, text(call, "icid")),
            (Teid, teids["s1u_sgw_default"].as_str().unwrap()),
            (Teid, teids["s1u_enb_default"].as_str().unwrap()),
        ] {
            assert!(has_key(invite, kind, value), "INVITE lacks {kind:?} {value}: {:?}", invite.subscriber_keys);
        }
        for (kind, value) in
            [(UeAddress, text(call, "ue_address")), (Impu, text(call, "impu")), (Impi, text(call, "impi"))]
        {
            assert!(has_key(register, kind, value), "REGISTER lacks {kind:?} {value}: {:?}", register.subscriber_keys);
        }
        let addresses = invite.subscriber_keys.iter().filter(|k| k.kind == UeAddress).count();
        assert_eq!(addresses, 1, "the P-CSCF's and the media gateway's addresses are not the UE's");
    }
}

#[test]
fn each_call_is_one_subscriber_streaming_or_not() {
    let held = analyse(false);
    let streamed = analyse(true);
    assert_eq!(held.subscribers, streamed.subscribers);
    let truth = truth();
    let calls = truth["calls"].as_array().unwrap();
    assert_eq!(held.subscribers.len(), calls.len());
    for call in calls {
        let sub = held.subscribers.iter().find(|s| s.msisdn.as_deref() == Some(text(call, "msisdn"))).unwrap();
        let ids: Vec<&str> = sub.sessions.iter().map(|s| s.session.as_str()).collect();
        for call_id in [text(call, "call_id"), text(call, "register_call_id")] {
            let session = held.sessions.iter().find(|s| s.call_id == call_id).unwrap();
            assert!(ids.contains(&session.id.as_str()), "{call_id} not in {}", sub.id);
        }
        assert!(sub.ue_addresses.iter().any(|a| a.address == text(call, "ue_address")));
    }
}

#[test]
fn every_call_links_to_its_default_bearer_and_its_media_to_the_bearer_the_rtp_went_through() {
    let doc = analyse(false);
    let bearer_links = |s: &Session| -> Vec<(String, String)> {
        s.related
            .iter()
            .filter(|r| r.relation == Relation::Bearer)
            .map(|r| (r.session.clone(), r.key.clone()))
            .collect()
    };
    for call in truth()["calls"].as_array().unwrap() {
        let ctx = format!("call {}", call["index"]);
        let imsi = text(call, "imsi");
        let gtp = doc
            .sessions
            .iter()
            .find(|s| s.kind == SessionKind::Gtp && s.gtp.as_ref().and_then(|g| g.imsi.as_deref()) == Some(imsi))
            .unwrap_or_else(|| panic!("{ctx}: no GTP session of {imsi}"));
        let bearers = &gtp.gtp.as_ref().unwrap().bearers;
        let invite = doc.sessions.iter().find(|s| s.call_id == text(call, "call_id")).unwrap();
        let links = bearer_links(invite);
        let default = format!("{} ebi 5", text(&call["teids"], "s1u_sgw_default"));
        assert_eq!(links.first(), Some(&(gtp.id.clone(), default.clone())), "{ctx}: signalling in the default bearer");
        assert!(bearer_links(gtp).contains(&(invite.id.clone(), default)), "{ctx}: the link back");

        // The media's bearer: the dedicated one the truth gives, or the default one when
        // there was none.
        let media_teids: Vec<&str> = call["media_teids"].as_array().unwrap().iter().filter_map(Value::as_str).collect();
        let rtp = call["rtp_packets"].as_u64().unwrap();
        if rtp == 0 {
            assert_eq!(links.len(), 1, "{ctx}: no media, the default bearer only: {links:?}");
            continue;
        }
        let teid = |t: &str| u32::from_str_radix(t.trim_start_matches("0x"), 16).unwrap();
        let media_bearer = bearers
            .iter()
            .find(|b| media_teids.iter().all(|&t| b.teids.iter().any(|bt| bt.teid == teid(t))))
            .unwrap_or_else(|| panic!("{ctx}: no bearer has the media TEIDs {media_teids:?}"));
        let carried = media_bearer.uplink.packets + media_bearer.downlink.packets;
        assert!(carried >= rtp, "{ctx}: the bearer carried {carried} packets, the call's RTP {rtp}");
        let ebi = media_bearer.ebi.expect("an EBI");
        if call["dedicated_bearer"] == true {
            assert_ne!(ebi, 5, "{ctx}: a dedicated bearer");
            assert_eq!(media_bearer.qci, Some(1), "{ctx}");
            assert_eq!(carried, rtp, "{ctx}: the dedicated bearer carried the RTP and nothing else");
            assert_eq!(links.len(), 2, "{ctx}: {links:?}");
            let (to, key) = &links[1];
            assert_eq!(to, &gtp.id, "{ctx}");
            let (key_teid, key_ebi) = key.split_once(" ebi ").unwrap();
            assert!(media_teids.contains(&key_teid), "{ctx}: {key} names a TEID of the dedicated bearer");
            assert_eq!(key_ebi, ebi.to_string(), "{ctx}");
            assert!(bearer_links(gtp).contains(&(invite.id.clone(), key.clone())), "{ctx}: the link back");
        } else {
            assert_eq!(ebi, 5, "{ctx}: no dedicated bearer, the RTP went through the default one");
            assert_eq!(links.len(), 1, "{ctx}: {links:?}");
        }
    }
    // Streamed sessions are written as they close, before any GTP session is known to the
    // join: no bearer links then.
    let streamed = analyse(true);
    assert!(streamed.sessions.iter().all(|s| bearer_links(s).is_empty()));
}

#[test]
fn every_joined_key_matches_the_truth() {
    use SubscriberKeyKind::*;
    let doc = analyse(false);
    let by_id = |id: &str| doc.sessions.iter().find(|s| s.id == id).unwrap_or_else(|| panic!("session {id}"));
    for call in truth()["calls"].as_array().unwrap() {
        let ctx = format!("call {}", call["index"]);
        let sub = doc
            .subscribers
            .iter()
            .find(|s| s.imsi.as_deref() == Some(text(call, "imsi")))
            .unwrap_or_else(|| panic!("{ctx}: no subscriber with its IMSI"));
        assert_eq!(sub.msisdn.as_deref(), Some(text(call, "msisdn")), "{ctx}");
        assert_eq!(sub.imei.as_deref(), Some(text(call, "imei")), "{ctx}");
        assert_eq!(sub.impu, [text(call, "impu")], "{ctx}");
        assert_eq!(sub.impi, [text(call, "impi")], "{ctx}");
        let assigned: Vec<&str> = sub.ue_addresses.iter().filter(|a| a.assigned).map(|a| a.address.as_str()).collect();
        assert_eq!(assigned, [text(call, "ue_address")], "{ctx}: the PAA, assigned over the PDN connection");

        // Its five sessions, each joined by the key the scenario gives it.
        let joined: Vec<(&Session, &str)> =
            sub.sessions.iter().map(|s| (by_id(&s.session), s.key.kind.as_str())).collect();
        let one = |what: &str, pick: &dyn Fn(&Session) -> bool| -> (&Session, &str) {
            let found: Vec<_> = joined.iter().filter(|(s, _)| pick(s)).collect();
            assert_eq!(found.len(), 1, "{ctx}: one {what} in {}", sub.id);
            *found[0]
        };
        let gtp = one("GTP session", &|s| s.kind == SessionKind::Gtp);
        let gx = one("Gx session", &|s| has_key(s, DiameterSessionId, text(call, "gx_session_id")));
        let rx = one("Rx session", &|s| has_key(s, DiameterSessionId, text(call, "rx_session_id")));
        let invite = one("call", &|s| s.call_id == text(call, "call_id"));
        let register = one("REGISTER", &|s| s.call_id == text(call, "register_call_id"));
        assert_eq!(joined.len(), 5, "{ctx}: nothing else joined");
        assert_eq!(gtp.1, "imsi", "{ctx}: the PDN connection makes the subscriber");
        for (session, key) in [gx, rx, invite, register] {
            assert_eq!(key, "ue_address", "{ctx}: {} joined within the address's assignment", session.id);
            let link = session.related.iter().find(|r| r.relation == callflow_model::Relation::Subscriber);
            assert_eq!(link.map(|r| r.key.as_str()), Some(text(call, "ue_address")), "{ctx}");
        }

        // Every key the truth gives, where the scenario puts it.
        let teids = &call["teids"];
        let mut gtp_keys = vec![
            (Imsi, text(call, "imsi")),
            (Msisdn, text(call, "msisdn")),
            (Imei, text(call, "imei")),
            (UeAddress, text(call, "ue_address")),
            (Teid, text(teids, "s11_mme")),
            (Teid, text(teids, "s11_sgw")),
            (Teid, text(teids, "s1u_sgw_default")),
            (Teid, text(teids, "s1u_enb_default")),
        ];
        if call["dedicated_bearer"] == true {
            gtp_keys.extend([(Teid, text(teids, "s1u_sgw_dedicated")), (Teid, text(teids, "s1u_enb_dedicated"))]);
        }
        let expected = [
            (gtp.0, gtp_keys),
            (
                gx.0,
                vec![(Imsi, text(call, "imsi")), (Msisdn, text(call, "msisdn")), (UeAddress, text(call, "ue_address"))],
            ),
            (
                rx.0,
                vec![(Icid, text(call, "icid")), (Msisdn, text(call, "msisdn")), (UeAddress, text(call, "ue_address"))],
            ),
            (
                invite.0,
                vec![(Icid, text(call, "icid")), (Msisdn, text(call, "msisdn")), (UeAddress, text(call, "ue_address"))],
            ),
        ];
        for (session, keys) in expected {
            for (kind, value) in keys {
                assert!(has_key(session, kind, value), "{ctx}: {:?} lacks {kind:?} {value}", session.kind);
            }
        }

        // The speech went through the dedicated bearer when there was one.
        let bearers = &gtp.0.gtp.as_ref().expect("the gtp object").bearers;
        let dedicated = bearers.iter().find(|b| b.ebi == Some(6));
        let half = call["rtp_packets"].as_u64().unwrap() / 2;
        match text(call, "outcome") {
            "completed" => {
                let b = dedicated.unwrap_or_else(|| panic!("{ctx}: no EBI 6 in {bearers:?}"));
                assert_eq!((b.qci, b.uplink.packets, b.downlink.packets), (Some(1), half, half), "{ctx}");
            }
            "bearer_failed" => {
                assert!(dedicated.is_none_or(|b| b.rejected.is_some()), "{ctx}: {bearers:?}");
                let default = bearers.iter().find(|b| b.ebi == Some(5)).unwrap();
                assert!(default.uplink.packets >= half && default.downlink.packets >= half, "{ctx}: {default:?}");
            }
            _ => assert!(dedicated.is_none_or(|b| b.uplink.packets + b.downlink.packets == 0), "{ctx}"),
        }
    }
}
