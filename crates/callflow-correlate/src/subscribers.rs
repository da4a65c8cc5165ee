//! The subscriber view: sessions of every kind joined into subscribers by the keys they carry (UE address within its assignment, icid, IMSI/MSISDN, IMPU/IMPI, Diameter Session-Id, TEID).
//!
//! The join works from each session's `subscriber_keys` only, so it needs no protocol's
//! code: [`Joiner::observe`] keeps a compact summary of every session that has keys (id,
//! kind, start, end, keys) as sessions are handed out, and [`Joiner::join`] joins them
//! once the capture is read. Memory is bounded by the number of sessions with keys, and
//! streaming output (sessions handed to a sink as they close) is joined the same way.
//!
//! Rules:
//! - **Anchors first.** Sessions carrying an IMSI (GTP PDN connections, Gx, S6a) are
//!   joined first, in start order, so every IMSI's subscriber exists before anything
//!   weaker is joined to it; then every other session, in start order.
//! - **Strongest key first**, in the order of `SubscriberKeyKind`: a session joins the
//!   subscriber its strongest key leads to, and that key is recorded as the one that
//!   joined it.
//! - **UE addresses are assigned in time.** Only a GTP session assigns its UE address
//!   (its PAA), from its start to its end; a session carrying that address joins through
//!   it only if the two overlap (the assignment overlapping most wins). TEIDs, reused
//!   like addresses, also join only when the two sessions overlap.
//! - **Never across subscribers.** A subscriber has at most one IMSI, one MSISDN and one
//!   IMEI; a key never joins a session to a subscriber whose IMSI, MSISDN or IMEI
//!   differs from the session's own. So an address reused later by another IMSI leads
//!   to that IMSI's subscriber, and two IMSIs are never merged.
//! - A session that joins nothing starts a subscriber when it carries an identity (IMSI,
//!   MSISDN, IMPU, IMPI, IMEI); otherwise (a plain SIP call, say) it is in no subscriber.

use callflow_model::{
    Related, Relation, Session, SessionKind, Subscriber, SubscriberKey, SubscriberKeyKind as Kind, SubscriberSession,
    Timestamp, UeAddress,
};
use std::collections::HashMap;
use std::net::IpAddr;

/// Most IMPUs or IMPIs listed per subscriber.
const MAX_IDENTITIES: usize = 16;

/// What the join keeps of one session.
#[derive(Clone, Debug)]
struct Summary {
    id: String,
    kind: SessionKind,
    start: Timestamp,
    end: Timestamp,
    keys: Vec<SubscriberKey>,
}

/// Collects the sessions' summaries as they are handed out, then joins them.
#[derive(Debug)]
pub(crate) struct Joiner {
    summaries: Vec<Summary>,
    /// Most summaries kept: an endless input (a live source) keeps only the latest, so its
    /// memory stays flat; a capture file keeps them all.
    limit: usize,
    /// Summaries let go to stay within `limit`, oldest first.
    dropped: u64,
}

impl Default for Joiner {
    fn default() -> Self {
        Joiner::bounded(usize::MAX)
    }
}

/// The result of a join: the subscribers, and per session (by index of observation) the
/// session it was joined through and the key, for `related` links.
#[derive(Debug, Default)]
pub(crate) struct Joined {
    pub subscribers: Vec<Subscriber>,
    /// (session id, the session it joined through, the key's value).
    pub links: Vec<(String, String, String)>,
}

/// One subscriber being built.
#[derive(Debug, Default)]
struct Sub {
    imsi: Option<String>,
    msisdn: Option<String>,
    imei: Option<String>,
    impu: Vec<String>,
    impi: Vec<String>,
    /// (address, start, end, assigned).
    addresses: Vec<(String, Timestamp, Timestamp, bool)>,
    /// (summary index, joining key).
    members: Vec<(usize, SubscriberKey)>,
}

/// Where a key value was seen: in which session, over which range, of which subscriber.
#[derive(Clone, Copy, Debug)]
struct Entry {
    start: Timestamp,
    end: Timestamp,
    sub: usize,
    session: usize,
}

impl Joiner {
    /// A joiner that keeps at most `limit` summaries (at least 2): past it, the older half
    /// is let go (a summary is about half a kilobyte).
    pub(crate) fn bounded(limit: usize) -> Joiner {
        Joiner { summaries: Vec::new(), limit: limit.max(2), dropped: 0 }
    }

    /// Summaries let go to stay within the limit.
    pub(crate) fn dropped(&self) -> u64 {
        self.dropped
    }

    /// Keeps what the join needs of `session` (nothing when it carries no key).
    pub(crate) fn observe(&mut self, session: &Session) {
        // An unspecified address (the PAA a Create Session Request asks with) names nobody.
        let unspecified = |k: &SubscriberKey| {
            k.kind == Kind::UeAddress && k.value.parse::<IpAddr>().is_ok_and(|ip| ip.is_unspecified())
        };
        let keys: Vec<SubscriberKey> = session.subscriber_keys.iter().filter(|k| !unspecified(k)).cloned().collect();
        if keys.is_empty() {
            return;
        }
        if self.summaries.len() >= self.limit {
            // Halving at once keeps the cost per session constant.
            let half = self.limit / 2;
            self.summaries.drain(..half);
            self.dropped += half as u64;
        }
        self.summaries.push(Summary {
            id: session.id.clone(),
            kind: session.kind,
            start: session.start,
            end: session.end.max(session.start),
            keys,
        });
    }

    /// Joins the sessions observed into subscribers (see the module docs).
    pub(crate) fn join(self) -> Joined {
        let summaries = self.summaries;
        let has_imsi = |s: &Summary| s.keys.iter().any(|k| k.kind == Kind::Imsi);
        let mut order: Vec<usize> = (0..summaries.len()).collect();
        order.sort_by(|&a, &b| {
            let (a, b) = (&summaries[a], &summaries[b]);
            has_imsi(b).cmp(&has_imsi(a)).then(a.start.cmp(&b.start)).then_with(|| a.id.cmp(&b.id))
        });
        let mut subs: Vec<Sub> = Vec::new();
        let mut index: HashMap<(Kind, &str), Vec<Entry>> = HashMap::new();
        let mut links = Vec::new();
        for i in order {
            let s = &summaries[i];
            let mut keys: Vec<&SubscriberKey> = s.keys.iter().collect();
            keys.sort_by_key(|k| k.kind);
            let found = keys.iter().find_map(|key| {
                let entries = index.get(&(key.kind, key.value.as_str()))?;
                let timed = matches!(key.kind, Kind::UeAddress | Kind::Teid);
                entries
                    .iter()
                    .filter(|e| compatible(&subs[e.sub], s))
                    .filter_map(|e| {
                        let overlap = overlap_ns(e.start, e.end, s.start, s.end);
                        match (timed, overlap) {
                            (true, None) => None,
                            (true, Some(ns)) => Some((ns, e.start, *e)),
                            (false, _) => Some((0, e.start, *e)),
                        }
                    })
                    .max_by_key(|(ns, start, _)| (*ns, *start))
                    .map(|(_, _, e)| (e, (*key).clone()))
            });
            let sub = match found {
                Some((entry, key)) => {
                    if entry.session != i {
                        links.push((s.id.clone(), summaries[entry.session].id.clone(), key.value.clone()));
                    }
                    subs[entry.sub].members.push((i, key));
                    entry.sub
                }
                None => {
                    let Some(identity) = keys.iter().find(|k| is_identity(k.kind)) else { continue };
                    subs.push(Sub { members: vec![(i, (*identity).clone())], ..Sub::default() });
                    subs.len() - 1
                }
            };
            let gtp = s.kind == SessionKind::Gtp;
            let target = &mut subs[sub];
            for key in &s.keys {
                let value = key.value.clone();
                match key.kind {
                    Kind::Imsi if target.imsi.is_none() => target.imsi = Some(value),
                    Kind::Msisdn if target.msisdn.is_none() => target.msisdn = Some(value),
                    Kind::Imei if target.imei.is_none() => target.imei = Some(value),
                    Kind::Impu if !target.impu.contains(&value) && target.impu.len() < MAX_IDENTITIES => {
                        target.impu.push(value)
                    }
                    Kind::Impi if !target.impi.contains(&value) && target.impi.len() < MAX_IDENTITIES => {
                        target.impi.push(value)
                    }
                    Kind::UeAddress => target.addresses.push((value, s.start, s.end, gtp)),
                    _ => {}
                }
                // Only a GTP session's address is an assignment other sessions may join through.
                if key.kind != Kind::UeAddress || gtp {
                    let entry = Entry { start: s.start, end: s.end, sub, session: i };
                    index.entry((key.kind, key.value.as_str())).or_default().push(entry);
                }
            }
        }
        let mut built: Vec<(Timestamp, usize, Subscriber)> = subs
            .into_iter()
            .enumerate()
            .map(|(n, sub)| {
                let mut sessions: Vec<SubscriberSession> = sub
                    .members
                    .into_iter()
                    .map(|(i, key)| {
                        let s = &summaries[i];
                        SubscriberSession { session: s.id.clone(), kind: s.kind, start: s.start, end: s.end, key }
                    })
                    .collect();
                sessions.sort_by(|a, b| a.start.cmp(&b.start).then_with(|| a.session.cmp(&b.session)));
                let first = sessions.first().map(|s| s.start).unwrap_or_default();
                let subscriber = Subscriber {
                    id: String::new(),
                    imsi: sub.imsi,
                    msisdn: sub.msisdn,
                    impu: sub.impu,
                    impi: sub.impi,
                    imei: sub.imei,
                    ue_addresses: address_ranges(sub.addresses),
                    sessions,
                };
                (first, n, subscriber)
            })
            .collect();
        built.sort_by_key(|(first, n, _)| (*first, *n));
        let subscribers = built
            .into_iter()
            .enumerate()
            .map(|(n, (_, _, mut s))| {
                s.id = format!("sub-{}", n + 1);
                s
            })
            .collect();
        Joined { subscribers, links }
    }
}

/// Joins the sessions observed and, when the document still holds its sessions, links each
/// joined session to the one it was joined through (relation `subscriber`, the key's value):
/// one link per session, so the links stay as many as the sessions.
pub(crate) fn attach(joiner: Joiner, sessions: &mut [Session]) -> Vec<Subscriber> {
    let joined = joiner.join();
    if !sessions.is_empty() && !joined.links.is_empty() {
        let position: HashMap<&str, usize> = sessions.iter().enumerate().map(|(n, s)| (s.id.as_str(), n)).collect();
        let links: Vec<(usize, Related)> = joined
            .links
            .into_iter()
            .filter_map(|(from, to, key)| {
                Some((*position.get(from.as_str())?, Related { session: to, relation: Relation::Subscriber, key }))
            })
            .collect();
        for (n, related) in links {
            sessions[n].related.push(related);
        }
    }
    joined.subscribers
}

/// Whether a kind names a subscriber (rather than a call, a bearer or a session).
fn is_identity(kind: Kind) -> bool {
    matches!(kind, Kind::Imsi | Kind::Msisdn | Kind::Impu | Kind::Impi | Kind::Imei)
}

/// Whether session `s` may join `sub`: no IMSI, MSISDN or IMEI of one contradicts the other's.
fn compatible(sub: &Sub, s: &Summary) -> bool {
    [(Kind::Imsi, &sub.imsi), (Kind::Msisdn, &sub.msisdn), (Kind::Imei, &sub.imei)].into_iter().all(|(kind, held)| {
        let Some(held) = held else { return true };
        let mut values = s.keys.iter().filter(|k| k.kind == kind).peekable();
        values.peek().is_none() || values.any(|k| &k.value == held)
    })
}

/// How many nanoseconds two closed ranges share (`Some(0)` when they touch).
fn overlap_ns(a0: Timestamp, a1: Timestamp, b0: Timestamp, b1: Timestamp) -> Option<i64> {
    let (start, end) = (a0.max(b0), a1.min(b1));
    (start <= end).then(|| end.nanos_since(start))
}

/// The subscriber's addresses: each assignment as it is, and each address only seen (not
/// assigned) merged into one range over the sessions that carried it; by start.
fn address_ranges(addresses: Vec<(String, Timestamp, Timestamp, bool)>) -> Vec<UeAddress> {
    let mut out: Vec<UeAddress> = Vec::new();
    for (address, start, end, assigned) in addresses {
        if assigned {
            out.push(UeAddress { address, start, end, assigned });
            continue;
        }
        match out.iter_mut().find(|a| !a.assigned && a.address == address) {
            Some(seen) => {
                seen.start = seen.start.min(start);
                seen.end = seen.end.max(end);
            }
            None => out.push(UeAddress { address, start, end, assigned }),
        }
    }
    let assigned: Vec<String> = out.iter().filter(|a| a.assigned).map(|a| a.address.clone()).collect();
    out.retain(|a| a.assigned || !assigned.contains(&a.address));
    out.sort_by(|a, b| a.start.cmp(&b.start).then_with(|| a.address.cmp(&b.address)));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A session of `kind` from second `start` to `end` with `keys` written `kind=value`.
    fn session(id: &str, kind: SessionKind, start: i64, end: i64, keys: &[&str]) -> Session {
        let keys = keys
            .iter()
            .map(|k| {
                let (kind, value) = k.split_once('=').unwrap();
                let kind = serde_json::from_value(serde_json::Value::String(kind.into())).unwrap();
                SubscriberKey { kind, value: value.into() }
            })
            .collect();
        Session {
            start: Timestamp::from_parts(start, 0),
            end: Timestamp::from_parts(end, 0),
            subscriber_keys: keys,
            ..Session::empty(id.into(), kind)
        }
    }

    /// Joins `sessions` and writes each subscriber as `imsi: session(key) session(key)...`.
    fn check(sessions: &[Session], expected: &[&str]) {
        let mut joiner = Joiner::default();
        sessions.iter().for_each(|s| joiner.observe(s));
        let got: Vec<String> = joiner
            .join()
            .subscribers
            .iter()
            .map(|sub| {
                let members: Vec<String> =
                    sub.sessions.iter().map(|s| format!("{}({})", s.session, s.key.kind.as_str())).collect();
                format!("{}: {}", sub.imsi.as_deref().or(sub.msisdn.as_deref()).unwrap_or("-"), members.join(" "))
            })
            .collect();
        assert_eq!(got, expected);
    }

    use SessionKind::{Diameter, Gtp, SipCall, SipRegister};

    #[test]
    fn a_bounded_joiner_keeps_the_latest_sessions_of_an_endless_input() {
        let mut joiner = Joiner::bounded(4);
        for n in 0..7 {
            joiner.observe(&session(&format!("reg{n}"), SipRegister, n, n + 1, &[&format!("impu=sip:{n}@ims")]));
        }
        // At the fifth, the older two went; at the seventh, two more.
        assert_eq!(joiner.dropped(), 4);
        let kept: Vec<String> =
            joiner.join().subscribers.iter().flat_map(|sub| sub.sessions.iter().map(|s| s.session.clone())).collect();
        assert_eq!(kept, ["reg4", "reg5", "reg6"]);
    }

    #[test]
    fn a_volte_call_reads_as_one_subscriber() {
        check(
            &[
                session("gtp", Gtp, 0, 100, &["imsi=001010000000001", "msisdn=4915", "ue_address=10.45.0.1"]),
                session("reg", SipRegister, 1, 2, &["ue_address=10.45.0.1", "impu=sip:001010000000001@ims"]),
                session("inv", SipCall, 10, 50, &["ue_address=10.45.0.1", "icid=ab12", "msisdn=4915"]),
                session("rx", Diameter, 11, 50, &["diameter_session_id=pcscf;1", "icid=ab12"]),
                session("gx", Diameter, 0, 60, &["diameter_session_id=pcrf;2", "imsi=001010000000001"]),
            ],
            &["001010000000001: gtp(imsi) gx(imsi) reg(ue_address) inv(ue_address) rx(icid)"],
        );
    }

    #[test]
    fn an_address_reused_later_by_another_imsi_is_that_subscribers() {
        check(
            &[
                session("gtp-a", Gtp, 0, 100, &["imsi=1111", "ue_address=10.45.0.1"]),
                session("gtp-b", Gtp, 200, 300, &["imsi=2222", "ue_address=10.45.0.1"]),
                session("call-a", SipCall, 10, 20, &["ue_address=10.45.0.1"]),
                session("call-b", SipCall, 210, 220, &["ue_address=10.45.0.1"]),
            ],
            &["1111: gtp-a(imsi) call-a(ue_address)", "2222: gtp-b(imsi) call-b(ue_address)"],
        );
    }

    #[test]
    fn an_address_outside_its_assignment_joins_nothing() {
        check(
            &[
                session("gtp", Gtp, 100, 200, &["imsi=1111", "ue_address=10.45.0.1"]),
                session("before", SipCall, 10, 20, &["ue_address=10.45.0.1"]),
                session("after", SipCall, 300, 320, &["ue_address=10.45.0.1"]),
            ],
            &["1111: gtp(imsi)"],
        );
    }

    #[test]
    fn two_imsis_never_merge_whatever_they_share() {
        // The Gx session of the second IMSI has the first one's address and MSISDN (a
        // misconfigured PCRF): it stays with its own IMSI.
        check(
            &[
                session("gtp-a", Gtp, 0, 100, &["imsi=1111", "msisdn=49", "ue_address=10.45.0.1"]),
                session("gx-b", Diameter, 10, 20, &["ue_address=10.45.0.1", "imsi=2222", "msisdn=49"]),
                session("rx", Diameter, 30, 40, &["ue_address=10.45.0.1", "msisdn=49"]),
            ],
            &["1111: gtp-a(imsi) rx(ue_address)", "2222: gx-b(imsi)"],
        );
    }

    #[test]
    fn an_unspecified_address_joins_nothing() {
        check(
            &[
                session("gtp", Gtp, 0, 100, &["imsi=1111", "ue_address=0.0.0.0", "ue_address=10.45.0.1"]),
                session("gx", Diameter, 10, 20, &["ue_address=0.0.0.0", "msisdn=49"]),
            ],
            &["1111: gtp(imsi)", "49: gx(msisdn)"],
        );
    }

    #[test]
    fn icid_joins_sip_to_rx_without_any_gtp() {
        check(
            &[
                session("inv", SipCall, 10, 50, &["ue_address=10.45.0.1", "icid=ab12", "msisdn=4915"]),
                session("rx", Diameter, 11, 50, &["ue_address=10.45.0.1", "icid=ab12"]),
                session("plain", SipCall, 10, 50, &["ue_address=10.1.0.1"]),
            ],
            &["4915: inv(msisdn) rx(icid)"],
        );
    }

    #[test]
    fn links_point_at_the_session_joined_through() {
        let mut sessions = [
            session("gtp", Gtp, 0, 100, &["imsi=1111", "ue_address=10.45.0.1"]),
            session("inv", SipCall, 10, 50, &["ue_address=10.45.0.1", "icid=ab12"]),
            session("rx", Diameter, 11, 50, &["icid=ab12"]),
        ];
        let mut joiner = Joiner::default();
        sessions.iter().for_each(|s| joiner.observe(s));
        let subscribers = attach(joiner, &mut sessions);
        assert_eq!(subscribers.len(), 1);
        assert_eq!(subscribers[0].id, "sub-1");
        assert!(sessions[0].related.is_empty());
        let link = |s: &Session| (s.related[0].session.clone(), s.related[0].key.clone());
        assert_eq!(link(&sessions[1]), ("gtp".to_string(), "10.45.0.1".to_string()));
        assert_eq!(link(&sessions[2]), ("inv".to_string(), "ab12".to_string()));
        let addresses = &subscribers[0].ue_addresses;
        assert_eq!(addresses.len(), 1, "the address seen in the call is the one assigned: {addresses:?}");
        assert!(addresses[0].assigned);
    }
}
