//! `bearer` links: each SIP or media session whose packets came through a GTP-U tunnel, linked both ways to the GTP session whose bearer has that tunnel's TEID.
//!
//! A session's TEIDs are its tunnel's and its `teid` subscriber keys (a SIP call's include
//! the tunnel of its media, which in VoLTE is a dedicated bearer, apart from the default
//! one its signalling used). A TEID leads to the bearer of a GTP session that lists it
//! among the bearer's TEIDs and overlaps the session in time (TEIDs are reused, like
//! addresses); the first such GTP session by start wins. The link's key is the TEID and
//! the bearer's EBI (`0x00001234 ebi 6`), one link per bearer. Only made when the document
//! holds its sessions: a streamed session has already been written.

use callflow_model::{Related, Relation, Session, SessionKind, SubscriberKeyKind, TunnelKind};
use std::collections::HashMap;

/// A bearer of a GTP session: the session's place in the list and the bearer's.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Bearer {
    session: usize,
    bearer: usize,
}

/// Links every SIP and media session to the bearers its packets came through, on both sides.
pub(crate) fn link(sessions: &mut [Session]) {
    let mut by_teid: HashMap<u32, Vec<Bearer>> = HashMap::new();
    for (n, s) in sessions.iter().enumerate() {
        for (b, bearer) in s.gtp.iter().flat_map(|g| g.bearers.iter()).enumerate() {
            for t in &bearer.teids {
                let found = by_teid.entry(t.teid).or_default();
                let place = Bearer { session: n, bearer: b };
                if !found.contains(&place) {
                    found.push(place);
                }
            }
        }
    }
    if by_teid.is_empty() {
        return;
    }
    let mut links: Vec<(usize, usize, String)> = Vec::new();
    for (n, s) in sessions.iter().enumerate() {
        if !matches!(s.kind, SessionKind::SipCall | SessionKind::SipRegister | SessionKind::SipOther | SessionKind::Rtp)
        {
            continue;
        }
        let tunnel = s.tunnel.as_ref().filter(|t| t.kind == TunnelKind::GtpU).and_then(|t| t.teid);
        let keys =
            s.subscriber_keys.iter().filter(|k| k.kind == SubscriberKeyKind::Teid).filter_map(|k| parse_teid(&k.value));
        let mut found: Vec<Bearer> = Vec::new();
        for teid in tunnel.into_iter().chain(keys) {
            let overlapping = by_teid.get(&teid).into_iter().flatten().filter(|b| {
                let gtp = &sessions[b.session];
                gtp.start <= s.end && s.start <= gtp.end
            });
            let Some(&bearer) = overlapping.min_by_key(|b| (sessions[b.session].start, b.session)) else { continue };
            if found.contains(&bearer) {
                continue;
            }
            found.push(bearer);
            let ebi = sessions[bearer.session].gtp.as_ref().and_then(|g| g.bearers[bearer.bearer].ebi);
            let key = match ebi {
                Some(ebi) => format!("0x{teid:08x} ebi {ebi}"),
                None => format!("0x{teid:08x}"),
            };
            links.push((n, bearer.session, key));
        }
    }
    for (from, gtp, key) in links {
        let (id, gtp_id) = (sessions[from].id.clone(), sessions[gtp].id.clone());
        sessions[gtp].related.push(Related { session: id, relation: Relation::Bearer, key: key.clone() });
        sessions[from].related.push(Related { session: gtp_id, relation: Relation::Bearer, key });
    }
}

/// A TEID as subscriber keys write it, `0x` and 8 hex digits.
fn parse_teid(value: &str) -> Option<u32> {
    u32::from_str_radix(value.strip_prefix("0x")?, 16).ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use callflow_model::{GtpBearer, GtpSession, GtpTeid, SubscriberKey, Timestamp, Tunnel};

    fn at(secs: i64) -> Timestamp {
        Timestamp::from_nanos(secs * 1_000_000_000)
    }

    fn gtp(id: &str, start: i64, end: i64, bearers: &[(Option<u8>, &[u32])]) -> Session {
        let bearers = bearers
            .iter()
            .map(|(ebi, teids)| GtpBearer {
                ebi: *ebi,
                teids: teids
                    .iter()
                    .map(|&teid| GtpTeid { teid, addresses: Vec::new(), interface: None, direction: None, frame: 1 })
                    .collect(),
                ..GtpBearer::default()
            })
            .collect();
        Session {
            start: at(start),
            end: at(end),
            gtp: Some(Box::new(GtpSession { bearers, ..GtpSession::default() })),
            ..Session::empty(id.into(), SessionKind::Gtp)
        }
    }

    fn tunnelled(id: &str, kind: SessionKind, start: i64, end: i64, teid: u32, keys: &[u32]) -> Session {
        let tunnel = Tunnel {
            kind: TunnelKind::GtpU,
            src: "172.16.1.1".parse().unwrap(),
            dst: "172.16.2.1".parse().unwrap(),
            teid: Some(teid),
            key: None,
        };
        let subscriber_keys =
            keys.iter().map(|t| SubscriberKey { kind: SubscriberKeyKind::Teid, value: format!("0x{t:08x}") }).collect();
        Session {
            start: at(start),
            end: at(end),
            tunnel: Some(tunnel),
            subscriber_keys,
            ..Session::empty(id.into(), kind)
        }
    }

    fn links(s: &Session) -> Vec<(&str, &str)> {
        s.related
            .iter()
            .filter(|r| r.relation == Relation::Bearer)
            .map(|r| (r.session.as_str(), r.key.as_str()))
            .collect()
    }

    #[test]
    fn a_call_links_to_its_default_and_dedicated_bearers_both_ways() {
        let mut sessions = vec![
            gtp("g", 0, 100, &[(Some(5), &[0x11, 0x12]), (Some(6), &[0x21, 0x22])]),
            tunnelled("call", SessionKind::SipCall, 10, 20, 0x11, &[0x11, 0x12, 0x21]),
            tunnelled("rtp", SessionKind::Rtp, 10, 20, 0x22, &[]),
        ];
        link(&mut sessions);
        assert_eq!(links(&sessions[1]), [("g", "0x00000011 ebi 5"), ("g", "0x00000021 ebi 6")]);
        assert_eq!(links(&sessions[2]), [("g", "0x00000022 ebi 6")]);
        assert_eq!(
            links(&sessions[0]),
            [("call", "0x00000011 ebi 5"), ("call", "0x00000021 ebi 6"), ("rtp", "0x00000022 ebi 6")]
        );
    }

    #[test]
    fn a_reused_teid_leads_to_the_gtp_session_of_its_time_only() {
        let mut sessions = vec![
            gtp("early", 0, 10, &[(Some(5), &[0x11])]),
            gtp("late", 50, 100, &[(None, &[0x11])]),
            tunnelled("call", SessionKind::SipCall, 60, 70, 0x11, &[]),
            tunnelled("stray", SessionKind::SipCall, 20, 30, 0x11, &[]),
            tunnelled("gtp-like", SessionKind::Diameter, 60, 70, 0x11, &[]),
        ];
        link(&mut sessions);
        assert_eq!(links(&sessions[2]), [("late", "0x00000011")], "no EBI known: the TEID alone");
        assert!(links(&sessions[3]).is_empty(), "in no GTP session's time");
        assert!(links(&sessions[4]).is_empty(), "only SIP and media sessions");
        assert!(links(&sessions[0]).is_empty());
    }
}
