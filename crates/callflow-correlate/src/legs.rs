//! The legs of one call joined across Call-IDs: a B2BUA, an SBC or a topology-hiding proxy gives each side of a call its own dialog, and this finds them again.
//!
//! Two calls are legs of one another when, in this order of strength (the first rule that
//! joins a pair is the one recorded in the `key` of its `related` link, relation `leg`):
//!
//! 1. they share an RFC 7989 `Session-ID` UUID (`session-id:UUID`), which the RFC asks
//!    every B2BUA to pass on unchanged;
//! 2. they carry the same `P-Charging-Vector` `icid-value` (`icid:VALUE`), as IMS nodes do;
//! 3. a correlation header of one (`X-CID`, `XCall-ID`..., names configurable) names the
//!    other's Call-ID, or both carry the same value in it (`header:NAME:VALUE`);
//! 4. one's Call-ID is the other's with a known suffix or prefix added
//!    (`call-id-suffix:SUFFIX:CALL-ID`, as Sipwise's SEMS writes `_b2b-1`);
//! 5. as a last resort, when enabled: the same caller and callee user parts (phone numbers
//!    compared on their last 7 digits, since B2BUAs add or strip prefixes and `+`) with
//!    INVITEs at most `party_window` apart and sent from different addresses (one UA
//!    calling the same number again is a redial) (`weak:parties:FROM>TO`; the `weak:` says
//!    it is a guess). A pair the stronger rules already joined is not joined again.
//!
//! What common B2BUAs leave to go by: Cisco CUBE writes RFC 7989 Session-ID (and
//! `Cisco-Guid`), IMS nodes the icid, BroadWorks `X-BroadWorks-Correlation-Info`, HOMER
//! setups add `X-CID`, Sipwise's SEMS appends `_b2b-1`/`_pbx-1` to the Call-ID. Asterisk
//! and FreeSWITCH make a fresh Call-ID and add nothing unless the dialplan does (the
//! FreeSWITCH capture of the corpus carries an `XCall-ID` its dialplan set), so their legs
//! join by the weak rule. Kamailio's topoh/topos keep the Call-ID unless `mask_callid` is
//! on, and OpenSIPS' topology hiding encodes it behind a `DLGCH_` prefix: the masked
//! Call-ID is not the original with an affix, so only the other rules can join those.
//!
//! The same machinery links transfers (relation `transfer`): a REFER's Refer-To target and
//! sender against a new call's To and `Referred-By` (`referred-by:TARGET|REFERRER`), and a
//! call named by a `Replaces` header (`replaces:CALL-ID`) or by the `?Replaces=` of an
//! attended transfer's Refer-To (`refer-to-replaces:CALL-ID`).
//!
//! Legs close at different times (one waits out its linger while the other's BYE is still
//! in flight, a failed attempt towards one callee closes long before the call it was part
//! of), and with a sink a closed session is written at once. So the calls still open are
//! indexed by their tokens as their messages come: when a call closes, it is compared with
//! the open ones, the link is written into the closing session and kept on the open dialog
//! until it closes in its turn. Two legs always overlap in time, so whichever closes first
//! finds the other open, and nothing waits: sessions are streamed as soon as they are over.
//! Joining costs a few hash lookups per call, and memory follows the open calls.

use crate::analyzer::duration_ns;
use crate::ids::Fnv64;
use callflow_decode::sip::{self, SessionIdHeader, SipMessage};
use callflow_decode::Timestamp;
use std::collections::HashMap;
use std::hash::Hasher;
use std::net::SocketAddr;
use std::time::Duration;

/// Most values of each kind kept per call: a few are all a real call carries.
const MAX_VALUES: usize = 4;
/// Longest value kept (a Call-ID, a UUID, an icid): longer ones are someone's noise.
const MAX_VALUE_LEN: usize = 256;
/// Digits of a phone number compared by the weak rule.
const PHONE_DIGITS: usize = 7;

/// How the legs of a call are found (`[legs]` in the configuration).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LegOptions {
    /// Join legs (and transfers) at all.
    pub enabled: bool,
    /// Headers whose value is the Call-ID of the call's other leg, or a value every leg
    /// carries (matched without case).
    pub correlation_headers: Vec<String>,
    /// Suffixes a B2BUA appends to the Call-ID it received to make its own.
    pub call_id_suffixes: Vec<String>,
    /// Prefixes a B2BUA puts before the Call-ID it received to make its own.
    pub call_id_prefixes: Vec<String>,
    /// Join calls with the same caller and callee and close INVITE times (a weaker match).
    pub match_parties: bool,
    /// Most time between the first INVITEs of two legs joined by caller and callee.
    pub party_window: Duration,
}

impl Default for LegOptions {
    fn default() -> Self {
        LegOptions {
            enabled: true,
            correlation_headers: [
                "X-CID",
                "X-Call-ID",
                "XCall-ID",
                "X-Orig-Call-ID",
                "X-Original-Call-ID",
                "X-BroadWorks-Correlation-Info",
                "Cisco-Guid",
            ]
            .map(String::from)
            .to_vec(),
            call_id_suffixes: ["_b2b-1", "_pbx-1"].map(String::from).to_vec(),
            call_id_prefixes: Vec::new(),
            match_parties: true,
            party_window: Duration::from_secs(2),
        }
    }
}

/// What a call carries that can tie it to its other legs, gathered from its messages.
#[derive(Clone, Debug, Default)]
pub(crate) struct LegKeys {
    session_ids: Vec<String>,
    icids: Vec<String>,
    /// (header name as configured, value).
    headers: Vec<(String, String)>,
    /// When the first INVITE was seen, and who sent it.
    invite: Option<Timestamp>,
    invite_src: Option<SocketAddr>,
    /// Each REFER's target and referrer, normalised as `TARGET|REFERRER`.
    refer_targets: Vec<String>,
    /// Call-IDs a REFER's Refer-To (`?Replaces=`, true) or the INVITE's `Replaces` (false) names.
    replaces: Vec<(String, bool)>,
    /// The referrer an INVITE's `Referred-By` names, normalised.
    referred_by: Option<String>,
}

impl LegKeys {
    /// Takes what `msg` carries; `names` are the configured correlation headers. Says
    /// whether anything new was learnt.
    pub fn collect(&mut self, msg: &SipMessage<'_>, ts: Timestamp, src: SocketAddr, names: &[String]) -> bool {
        let before = self.counts();
        let initial = msg.to().and_then(|t| t.tag).is_none();
        match msg.method() {
            Some("INVITE") => {
                self.invite.get_or_insert(ts);
                self.invite_src.get_or_insert(src);
                if initial {
                    self.transfer_headers(msg);
                }
            }
            Some("REFER") => self.refer(msg),
            _ => {}
        }
        for (name, value) in msg.headers() {
            if name.eq_ignore_ascii_case("Session-ID") {
                if let Some(sid) = SessionIdHeader::parse(value) {
                    for uuid in [sid.local, sid.remote].into_iter().flatten() {
                        push(&mut self.session_ids, uuid.to_ascii_lowercase());
                    }
                }
            } else if name.eq_ignore_ascii_case("P-Charging-Vector") {
                if let Some(icid) = sip::icid_value(value) {
                    push(&mut self.icids, icid.to_string());
                }
            } else if let Some(known) = names.iter().find(|n| n.eq_ignore_ascii_case(name)) {
                let value = value.trim();
                let fresh = !self.headers.iter().any(|(n, v)| n == known && v == value);
                if fresh && !value.is_empty() && value.len() <= MAX_VALUE_LEN && self.headers.len() < MAX_VALUES {
                    self.headers.push((known.clone(), value.to_string()));
                }
            }
        }
        before != self.counts()
    }

    fn counts(&self) -> [usize; 7] {
        [
            self.session_ids.len(),
            self.icids.len(),
            self.headers.len(),
            usize::from(self.invite.is_some()),
            self.refer_targets.len(),
            self.replaces.len(),
            usize::from(self.referred_by.is_some()),
        ]
    }

    /// A REFER (RFC 3515): whom it sends the other party to, who asks, and for an attended
    /// transfer the call the new one is to replace (`Refer-To: <sip:c@x?Replaces=...>`).
    fn refer(&mut self, msg: &SipMessage<'_>) {
        let Some(refer_to) = msg.header("Refer-To").and_then(sip::NameAddr::parse) else { return };
        let (target, headers) = refer_to.uri.split_once('?').unwrap_or((refer_to.uri, ""));
        let referrer = msg.from().and_then(|f| party(f.uri));
        if let (Some(target), Some(referrer)) = (party(target), referrer) {
            push(&mut self.refer_targets, format!("{target}|{referrer}"));
        }
        for header in headers.split('&') {
            let Some((name, value)) = header.split_once('=') else { continue };
            if name.eq_ignore_ascii_case("Replaces") {
                let value = percent_decoded(value);
                let call_id = value.split(';').next().unwrap_or("").trim();
                if !call_id.is_empty() && call_id.len() <= MAX_VALUE_LEN && self.replaces.len() < MAX_VALUES {
                    self.replaces.push((call_id.to_string(), true));
                }
            }
        }
    }

    /// The `Referred-By` (RFC 3892) and `Replaces` (RFC 3891) of an initial INVITE.
    fn transfer_headers(&mut self, msg: &SipMessage<'_>) {
        if let Some(by) = msg.header("Referred-By").and_then(sip::NameAddr::parse) {
            self.referred_by = party(by.uri);
        }
        if let Some(replaces) = msg.header("Replaces") {
            let call_id = replaces.split(';').next().unwrap_or("").trim();
            if !call_id.is_empty() && call_id.len() <= MAX_VALUE_LEN && self.replaces.len() < MAX_VALUES {
                self.replaces.push((call_id.to_string(), false));
            }
        }
    }
}

/// `%XX` escapes decoded (a URI header's value); anything malformed is kept as written.
fn percent_decoded(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let hex = |c: u8| char::from(c).to_digit(16);
        match (b[i], b.get(i + 1).copied().and_then(hex), b.get(i + 2).copied().and_then(hex)) {
            (b'%', Some(hi), Some(lo)) => {
                out.push((hi * 16 + lo) as u8);
                i += 3;
            }
            (c, _, _) => {
                out.push(c);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn push(values: &mut Vec<String>, value: String) {
    if value.len() <= MAX_VALUE_LEN && values.len() < MAX_VALUES && !values.contains(&value) {
        values.push(value);
    }
}

/// A value two legs can share: what kind, and the value. `Own` Call-IDs never join each
/// other (two sessions of one Call-ID are one call's, or a reuse; not legs).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
enum Token {
    SessionId(String),
    Icid(String),
    /// A Call-ID or correlation value, and where it came from.
    Ref(String),
    /// Caller and callee, normalised.
    Parties(String),
    /// A transfer's target and referrer, normalised: a REFER's, or a new call's To and
    /// Referred-By.
    Transfer(String),
}

/// Where a [`Token::Ref`] came from, to say how a pair was joined.
#[derive(Clone, Debug, PartialEq, Eq)]
enum RefSource {
    /// The call's own Call-ID.
    Own,
    /// A correlation header of that name.
    Header(String),
    /// The Call-ID with this suffix taken off.
    Suffix(String),
    /// The Call-ID with this prefix taken off.
    Prefix(String),
    /// An INVITE's `Replaces` header.
    Replaces,
    /// The `Replaces` of a REFER's Refer-To.
    ReferReplaces,
    /// A REFER (for [`Token::Transfer`]).
    Refer,
    /// An INVITE's `Referred-By` (for [`Token::Transfer`]).
    ReferredBy,
}

/// The tokens of a call, strongest first, each with what to write in a link's key.
fn tokens(call: &CallNames<'_>, keys: &LegKeys, opts: &LegOptions) -> Vec<(Token, RefSource)> {
    let mut out = Vec::new();
    for uuid in &keys.session_ids {
        out.push((Token::SessionId(uuid.clone()), RefSource::Own));
    }
    for icid in &keys.icids {
        out.push((Token::Icid(icid.clone()), RefSource::Own));
    }
    let call_id = call.call_id;
    if !call_id.is_empty() && call_id.len() <= MAX_VALUE_LEN {
        out.push((Token::Ref(call_id.to_string()), RefSource::Own));
    }
    for (name, value) in &keys.headers {
        out.push((Token::Ref(value.clone()), RefSource::Header(name.clone())));
    }
    for suffix in opts.call_id_suffixes.iter().filter(|s| !s.is_empty()) {
        if let Some(base) = call_id.strip_suffix(suffix.as_str()).filter(|b| !b.is_empty()) {
            out.push((Token::Ref(base.to_string()), RefSource::Suffix(suffix.clone())));
        }
    }
    for prefix in opts.call_id_prefixes.iter().filter(|s| !s.is_empty()) {
        if let Some(base) = call_id.strip_prefix(prefix.as_str()).filter(|b| !b.is_empty()) {
            out.push((Token::Ref(base.to_string()), RefSource::Prefix(prefix.clone())));
        }
    }
    for (call_id, refer) in &keys.replaces {
        let source = if *refer { RefSource::ReferReplaces } else { RefSource::Replaces };
        out.push((Token::Ref(call_id.clone()), source));
    }
    for target in &keys.refer_targets {
        out.push((Token::Transfer(target.clone()), RefSource::Refer));
    }
    if let (Some(by), Some(to)) = (&keys.referred_by, party(call.to)) {
        out.push((Token::Transfer(format!("{to}|{by}")), RefSource::ReferredBy));
    }
    if opts.match_parties && keys.invite.is_some() {
        if let (Some(from), Some(to)) = (party(call.from), party(call.to)) {
            out.push((Token::Parties(format!("{from}>{to}")), RefSource::Own));
        }
    }
    out
}

/// A URI's user part normalised for comparison: the last [`PHONE_DIGITS`] digits of a
/// number (its leading digits, after any `+`), else the user part in lower case.
fn party(uri: &str) -> Option<String> {
    let user = sip::uri_user(uri)?;
    let digits: String = user
        .trim_start_matches('+')
        .chars()
        .take_while(|c| c.is_ascii_digit() || *c == '-')
        .filter(|c| *c != '-')
        .collect();
    if digits.len() >= PHONE_DIGITS {
        return Some(digits[digits.len() - PHONE_DIGITS..].to_string());
    }
    Some(user.to_ascii_lowercase())
}

/// The key written in the link of two calls joined by a shared `token`, each side's
/// source of it given.
fn link_key(token: &Token, mine: &RefSource, theirs: &RefSource) -> Option<String> {
    Some(match token {
        Token::SessionId(v) => format!("session-id:{v}"),
        Token::Icid(v) => format!("icid:{v}"),
        Token::Parties(v) => format!("weak:parties:{v}"),
        Token::Transfer(v) => match (mine, theirs) {
            (RefSource::Refer, RefSource::ReferredBy) | (RefSource::ReferredBy, RefSource::Refer) => {
                format!("referred-by:{v}")
            }
            _ => return None,
        },
        Token::Ref(v) => {
            // The more telling source: a transfer's Replaces, then a header, then an affix,
            // all before a bare Call-ID.
            let rank = |s: &RefSource| match s {
                RefSource::Replaces | RefSource::ReferReplaces => 0,
                RefSource::Header(_) => 1,
                RefSource::Suffix(_) | RefSource::Prefix(_) => 2,
                RefSource::Own | RefSource::Refer | RefSource::ReferredBy => 3,
            };
            let source = if rank(mine) <= rank(theirs) { mine } else { theirs };
            match source {
                RefSource::Own | RefSource::Refer | RefSource::ReferredBy => return None,
                RefSource::Replaces => format!("replaces:{v}"),
                RefSource::ReferReplaces => format!("refer-to-replaces:{v}"),
                RefSource::Header(name) => format!("header:{name}:{v}"),
                RefSource::Suffix(s) => format!("call-id-suffix:{s}:{v}"),
                RefSource::Prefix(p) => format!("call-id-prefix:{p}:{v}"),
            }
        }
    })
}

/// The order rules are tried in (lower first) for a pair matched by several.
fn strength(key: &str) -> u8 {
    match key.split(':').next() {
        Some("session-id") => 0,
        Some("icid") => 1,
        Some("header") => 2,
        Some("call-id-suffix" | "call-id-prefix") => 3,
        Some("replaces" | "refer-to-replaces" | "referred-by") => 4,
        _ => 5,
    }
}

/// Whether a link's key joins a transfer (relation `transfer`) rather than legs.
pub(crate) fn is_transfer(key: &str) -> bool {
    matches!(key.split(':').next(), Some("replaces" | "refer-to-replaces" | "referred-by"))
}

/// What names a call: its Call-ID and the From and To URIs of its first request.
#[derive(Clone, Copy, Debug)]
pub(crate) struct CallNames<'a> {
    pub call_id: &'a str,
    pub from: &'a str,
    pub to: &'a str,
}

/// An open call as the index knows it.
struct Open {
    session_id: String,
    tokens: Vec<(Token, RefSource)>,
    invite: Option<Timestamp>,
    invite_src: Option<SocketAddr>,
}

/// The open calls, by the tokens that can join them to their other legs.
pub(crate) struct LegIndex {
    opts: LegOptions,
    open: HashMap<u64, Open>,
    /// Token hash -> the open calls carrying it (a hash collision is checked against the
    /// tokens themselves).
    index: HashMap<u64, Vec<u64>>,
}

impl std::fmt::Debug for LegIndex {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LegIndex").field("open", &self.open.len()).finish()
    }
}

fn token_hash(token: &Token) -> u64 {
    let mut h = Fnv64::default();
    let (tag, value) = match token {
        Token::SessionId(v) => (0u8, v),
        Token::Icid(v) => (1, v),
        Token::Ref(v) => (2, v),
        Token::Parties(v) => (3, v),
        Token::Transfer(v) => (4, v),
    };
    h.write(&[tag]);
    h.write(value.as_bytes());
    h.finish()
}

/// A link found when a call closed: the open call it joins (its number and session id)
/// and the key.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct LegLink {
    pub number: u64,
    pub session_id: String,
    pub key: String,
}

impl LegIndex {
    pub fn new(opts: LegOptions) -> LegIndex {
        LegIndex { opts, open: HashMap::new(), index: HashMap::new() }
    }

    /// The configured correlation header names.
    pub fn header_names(&self) -> &[String] {
        &self.opts.correlation_headers
    }

    /// Whether legs are joined at all.
    pub fn enabled(&self) -> bool {
        self.opts.enabled
    }

    /// (Re)indexes open call `number` (whose session will have `session_id`) under what
    /// `call` and `keys` say now.
    pub fn update(&mut self, number: u64, session_id: impl FnOnce() -> String, call: &CallNames<'_>, keys: &LegKeys) {
        let tokens = tokens(call, keys, &self.opts);
        let session_id = match self.open.remove(&number) {
            Some(old) => {
                self.unindex(number, &old.tokens);
                old.session_id
            }
            None => session_id(),
        };
        for (token, _) in &tokens {
            let numbers = self.index.entry(token_hash(token)).or_default();
            if !numbers.contains(&number) {
                numbers.push(number);
            }
        }
        self.open.insert(number, Open { session_id, tokens, invite: keys.invite, invite_src: keys.invite_src });
    }

    /// Call `number` closes: it leaves the index, and the links to the open calls it is a
    /// leg of come back, the strongest rule for each.
    pub fn close(&mut self, number: u64) -> Vec<LegLink> {
        let Some(me) = self.open.remove(&number) else { return Vec::new() };
        self.unindex(number, &me.tokens);
        let mut found: Vec<LegLink> = Vec::new();
        for (token, mine) in &me.tokens {
            let Some(numbers) = self.index.get(&token_hash(token)) else { continue };
            for &n in numbers {
                let Some(other) = self.open.get(&n) else { continue };
                if other.session_id == me.session_id {
                    continue;
                }
                let Some((_, theirs)) = other.tokens.iter().find(|(t, _)| t == token) else { continue };
                // Legs by caller and callee: INVITEs close in time, from different senders
                // (the same UA calling the same number again is a redial, not a leg).
                let redial = me.invite_src.is_some() && me.invite_src == other.invite_src;
                if matches!(token, Token::Parties(_)) && (!self.close_in_time(me.invite, other.invite) || redial) {
                    continue;
                }
                let Some(key) = link_key(token, mine, theirs) else { continue };
                match found.iter_mut().find(|l| l.number == n) {
                    Some(link) if strength(&key) < strength(&link.key) => link.key = key,
                    Some(_) => {}
                    None => found.push(LegLink { number: n, session_id: other.session_id.clone(), key }),
                }
            }
        }
        // A guess by caller and callee is kept only when it is the one candidate: two
        // calls between the same parties at once are as likely separate calls.
        if found.iter().filter(|l| l.key.starts_with("weak:")).count() > 1 {
            found.retain(|l| !l.key.starts_with("weak:"));
        }
        found
    }

    fn unindex(&mut self, number: u64, tokens: &[(Token, RefSource)]) {
        for (token, _) in tokens {
            let hash = token_hash(token);
            if let Some(numbers) = self.index.get_mut(&hash) {
                numbers.retain(|m| *m != number);
                if numbers.is_empty() {
                    self.index.remove(&hash);
                }
            }
        }
    }

    fn close_in_time(&self, a: Option<Timestamp>, b: Option<Timestamp>) -> bool {
        let (Some(a), Some(b)) = (a, b) else { return false };
        let gap = if a >= b { a.nanos_since(b) } else { b.nanos_since(a) };
        gap <= duration_ns(self.opts.party_window)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Opens the calls of `lines` at their INVITE time and closes them at their close time
    /// (`Call-ID from to invite-seconds close-seconds | Header: value...`), and returns
    /// each call's links as `CALL-ID -> OTHER (KEY)`, sorted.
    fn check(lines: &[&str], expected: &[&str]) {
        let mut index = LegIndex::new(LegOptions::default());
        let mut events = Vec::new();
        let mut calls = Vec::new();
        for (n, line) in lines.iter().enumerate() {
            let mut words = line.split_whitespace();
            let mut word = || words.next().unwrap().to_string();
            let (call_id, from, to) = (word(), word(), word());
            let (invite, close): (f64, f64) = (word().parse().unwrap(), word().parse().unwrap());
            let headers: String = line.split(" | ").skip(1).map(|h| format!("{h}\r\n")).collect();
            let text = format!(
                "INVITE sip:{to}@b SIP/2.0\r\nCall-ID: {call_id}\r\nFrom: <sip:{from}@a>;tag=1\r\n\
                 To: <sip:{to}@b>\r\nCSeq: 1 INVITE\r\n{headers}\r\n"
            );
            events.push((invite, 0, n));
            events.push((close, 1, n));
            calls.push((call_id, format!("sip:{from}@a"), format!("sip:{to}@b"), text));
        }
        events.sort_by(|a, b| a.partial_cmp(b).unwrap());
        let mut links = Vec::new();
        for (t, what, n) in events {
            let (call_id, from, to, text) = &calls[n];
            if what == 0 {
                let msg = SipMessage::parse(text.as_bytes()).unwrap();
                let mut keys = LegKeys::default();
                // Each call's INVITE from its own address, unless the line says `redial`.
                let src = if line_says_redial(lines[n]) { 1 } else { n as u8 + 1 };
                let src = SocketAddr::from(([10, 0, 0, src], 5060));
                assert!(keys.collect(&msg, Timestamp::from_nanos((t * 1e9) as i64), src, index.header_names()));
                let names = CallNames { call_id, from, to };
                index.update(n as u64, || format!("id-{call_id}"), &names, &keys);
            } else {
                for link in index.close(n as u64) {
                    let other = &calls[link.number as usize].0;
                    links.push(format!("{call_id} -> {} ({})", &link.session_id[3..], link.key));
                    links.push(format!("{other} -> {call_id} ({})", link.key));
                }
            }
        }
        links.sort();
        assert_eq!(links, expected, "{lines:#?}");
    }

    #[test]
    fn strong_rules_in_order() {
        let sid = "Session-ID: ab30317f1a784dc48ff824d0d3715d86;remote=00000000000000000000000000000000";
        let sid_b = "Session-ID: 47755a9de7794ba387653f2099600ef2;remote=AB30317F1A784DC48FF824D0D3715D86";
        check(
            &[&format!("a alice bob 0 40 | {sid}"), &format!("b x y 0.1 40.1 | {sid_b}")],
            &[
                "a -> b (session-id:ab30317f1a784dc48ff824d0d3715d86)",
                "b -> a (session-id:ab30317f1a784dc48ff824d0d3715d86)",
            ],
        );
        let pcv = |v: &str| format!("P-Charging-Vector: icid-value={v};orig-ioi=a.net");
        check(
            &[&format!("a alice bob 0 40 | {}", pcv("\"i1\"")), &format!("b x y 0 40 | {} | X-CID: a", pcv("i1"))],
            &["a -> b (icid:i1)", "b -> a (icid:i1)"],
        );
        check(&["a x y 0 40", "b p q 0 41 | X-CID: a"], &["a -> b (header:X-CID:a)", "b -> a (header:X-CID:a)"]);
        // The B leg closes first (a failed attempt, long before the call ends).
        check(
            &["b p q 0 10 | xcall-id: a", "a x y 0 90"],
            &["a -> b (header:XCall-ID:a)", "b -> a (header:XCall-ID:a)"],
        );
        check(
            &["c p q 0 40 | Cisco-Guid: 123-456", "d x y 0 41 | Cisco-Guid: 123-456"],
            &["c -> d (header:Cisco-Guid:123-456)", "d -> c (header:Cisco-Guid:123-456)"],
        );
        check(
            &["abc@h_b2b-1 p q 0 40", "abc@h x y 5 41"],
            &[
                "abc@h -> abc@h_b2b-1 (call-id-suffix:_b2b-1:abc@h)",
                "abc@h_b2b-1 -> abc@h (call-id-suffix:_b2b-1:abc@h)",
            ],
        );
    }

    fn line_says_redial(line: &str) -> bool {
        line.split(" | ").next().is_some_and(|l| l.ends_with(" redial"))
    }

    #[test]
    fn weak_rule_by_parties_and_time() {
        // The FreeSWITCH capture's two legs: the B2BUA adds a prefix and a +.
        check(
            &["a 12675941249_Uclx +12263382742 4.41 40", "b +12675941249 9998112263382742 4.49 40"],
            &["a -> b (weak:parties:5941249>3382742)", "b -> a (weak:parties:5941249>3382742)"],
        );
        // Too far apart, or other parties.
        check(&["a alice bob 0 40", "b alice bob 2.5 40"], &[]);
        check(&["a alice bob 0 40", "b alice carol 0.1 40"], &[]);
        // The same UA calling the same number again at once: a redial, not a leg.
        check(&["a alice bob 0 40", "b alice bob 0.5 41 redial"], &[]);
        // Two candidates when the first closes: no guess; the two left then join.
        check(
            &["a alice bob 0 40", "b alice bob 0.1 41", "c alice bob 0.2 42"],
            &["b -> c (weak:parties:alice>bob)", "c -> b (weak:parties:alice>bob)"],
        );
    }

    #[test]
    fn no_join_by_own_call_ids_or_without_overlap() {
        // The same Call-ID twice (a call reopened) is not two legs.
        check(&["a x y 0 40", "a p q 10 140"], &[]);
        // A call that starts after the other closed is not its leg.
        check(&["a x y 0 40", "b p q 50 101 | X-CID: a"], &[]);
    }
}
