//! Operator statistics from the SIP sessions the analysis hands out: each call classified by one rule, then RFC 6076's metrics, ASR, NER, ACD and delays per group.
//!
//! Everything here works one [`Session`] at a time, as sessions complete: a capture's
//! analysis feeds a [`KpiAccumulator`] (the document's `kpis`, `callflow-cli stats`, the
//! API's statistics of a job), a server feeds a [`KpiSeries`] (Prometheus counters and
//! histograms per peer, bounded to the top N peers) from every job, file or live.
//!
//! A call is an INVITE dialog whose INVITE was seen; [`classify`] gives it one
//! [`Outcome`] by the first rule that applies (each outcome's [`Outcome::rule`] says it,
//! docs/kpis.md gives the sources): a 2xx answer; a CANCEL (or a 487); else the final
//! answer that ended it (a 401/407 challenge only when nobody retried); else none, which is
//! a timeout once RFC 3261's timer B (32 s) has passed since the INVITE, and a call still
//! open otherwise (left out of every ratio). Retransmissions count once, and a retry with
//! credentials is the same call. A call through a B2BUA captured on both sides is two
//! dialogs: each counts for its own peer.
//!
//! Percentiles are exact to the unit (milliseconds, or hops): nearest rank over the values
//! rounded to whole units, kept as counts per unit value, so a group costs memory per
//! distinct value, not per call.

use callflow_model::{
    Delay, KpiCall, KpiRow, KpiSet, Kpis, Message, OutcomeCount, Ratio, ResponseCounts, Session, SessionKind, Timestamp,
};
use std::collections::{BTreeMap, HashMap};
use std::fmt::Write;
use std::net::IpAddr;
use std::str::FromStr;
use std::sync::Mutex;
use std::time::Duration;

/// RFC 3261's timer B (64 * T1): an INVITE with no final answer for this long timed out.
const TIMER_B_NS: i64 = 32_000_000_000;

/// Calls with no final answer remembered per group until the report decides whether they
/// timed out (beyond this, they count as timed out at once).
const MAX_PENDING: usize = 100_000;

/// Groups kept per grouping: a new peer or domain beyond them is counted as `other` (a
/// capture of a million callees must not keep a million groups).
const MAX_GROUPS: usize = 10_000;

/// Rows per peer and per domain in the document's `kpis`: the busiest, then one `other`
/// row with the rest.
const DOCUMENT_ROWS: usize = 100;

/// The name of the group of everything beyond the bounds.
const OTHER: &str = "other";

/// How the statistics group and name things.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KpiOptions {
    /// The length of a time bucket.
    pub bucket: Duration,
    /// The capture point's own addresses (an SBC, a PBX): a call from outside to one of
    /// them has the caller as its peer. Otherwise the peer is the address the INVITE went to.
    pub local: Vec<AddrRule>,
    /// Trunk names: a peer matching a rule is named after it, first rule first.
    pub trunks: Vec<TrunkRule>,
}

impl Default for KpiOptions {
    fn default() -> Self {
        KpiOptions { bucket: Duration::from_secs(60), local: Vec::new(), trunks: Vec::new() }
    }
}

/// An address or a network (`192.0.2.7`, `198.51.100.0/24`, `2001:db8::/32`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AddrRule {
    net: IpAddr,
    prefix: u8,
}

/// A rule that is not an address or a network.
#[derive(Debug, thiserror::Error)]
#[error("`{0}` is not an address or a network (e.g. 192.0.2.7 or 198.51.100.0/24)")]
pub struct BadAddrRule(pub String);

impl FromStr for AddrRule {
    type Err = BadAddrRule;
    fn from_str(s: &str) -> Result<AddrRule, BadAddrRule> {
        let bad = || BadAddrRule(s.to_string());
        let (addr, prefix) = match s.split_once('/') {
            Some((a, p)) => (a, Some(p.parse::<u8>().map_err(|_| bad())?)),
            None => (s, None),
        };
        let net: IpAddr = addr.trim().parse().map_err(|_| bad())?;
        let max = if net.is_ipv4() { 32 } else { 128 };
        let prefix = prefix.unwrap_or(max);
        if prefix > max {
            return Err(bad());
        }
        Ok(AddrRule { net, prefix })
    }
}

impl AddrRule {
    /// Whether `ip` is this address or in this network.
    pub fn contains(&self, ip: IpAddr) -> bool {
        let shift = |bits: u32, len: u32| if self.prefix == 0 { 0 } else { bits >> (len - u32::from(self.prefix)) };
        match (self.net, ip) {
            (IpAddr::V4(n), IpAddr::V4(a)) => shift(n.into(), 32) == shift(a.into(), 32),
            (IpAddr::V6(n), IpAddr::V6(a)) => {
                let (n, a) = (u128::from(n), u128::from(a));
                self.prefix == 0 || n >> (128 - u32::from(self.prefix)) == a >> (128 - u32::from(self.prefix))
            }
            _ => false,
        }
    }
}

/// A trunk: the peers that are it, by address or by the host of the URI on their side.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TrunkRule {
    /// The name the peer gets.
    pub name: String,
    /// Its signalling addresses or networks.
    pub addresses: Vec<AddrRule>,
    /// Host names (compared without case) of the To URI of calls to it, or the From URI of
    /// calls from it.
    pub hosts: Vec<String>,
}

/// What became of a call.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Outcome {
    /// A 2xx answered the INVITE.
    Answered,
    /// 486 Busy Here or 600 Busy Everywhere.
    Busy,
    /// 480 Temporarily Unavailable: nobody answered, or the user is not reachable now.
    NoAnswer,
    /// 603 Decline.
    Declined,
    /// The caller gave up after a 18x (CANCEL, or a 487).
    Abandoned,
    /// The caller cancelled before any 18x.
    Cancelled,
    /// A 3xx sent the call elsewhere.
    Redirected,
    /// Another 4xx or 6xx (a routing or request error: 403, 404, 484, 488...).
    Rejected,
    /// 408, or 5xx: a server or the network failed.
    Failed,
    /// No final answer within RFC 3261's timer B (32 s).
    TimedOut,
    /// No final answer yet, less than 32 s before the end of what was seen.
    Open,
    /// The INVITE is not in the capture: the call's outcome cannot be known.
    Unknown,
}

impl Outcome {
    /// Every outcome, in report order.
    pub const ALL: [Outcome; 12] = [
        Outcome::Answered,
        Outcome::Busy,
        Outcome::NoAnswer,
        Outcome::Declined,
        Outcome::Abandoned,
        Outcome::Cancelled,
        Outcome::Redirected,
        Outcome::Rejected,
        Outcome::Failed,
        Outcome::TimedOut,
        Outcome::Open,
        Outcome::Unknown,
    ];

    /// The name in reports and series labels.
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Answered => "answered",
            Outcome::Busy => "busy",
            Outcome::NoAnswer => "no_answer",
            Outcome::Declined => "declined",
            Outcome::Abandoned => "abandoned",
            Outcome::Cancelled => "cancelled",
            Outcome::Redirected => "redirected",
            Outcome::Rejected => "rejected",
            Outcome::Failed => "failed",
            Outcome::TimedOut => "timed_out",
            Outcome::Open => "open",
            Outcome::Unknown => "unknown",
        }
    }

    /// The rule that gives a call this outcome (checked in the order of [`Outcome::ALL`],
    /// the 2xx first).
    pub fn rule(self) -> &'static str {
        match self {
            Outcome::Answered => "a 2xx answered the INVITE",
            Outcome::Busy => "final answer 486 or 600",
            Outcome::NoAnswer => "final answer 480",
            Outcome::Declined => "final answer 603",
            Outcome::Abandoned => "CANCEL or 487 after a 18x",
            Outcome::Cancelled => "CANCEL or 487 before any 18x",
            Outcome::Redirected => "final answer 3xx",
            Outcome::Rejected => "final answer 4xx or 6xx not named above (a 401/407 only when not retried)",
            Outcome::Failed => "final answer 408 or 5xx",
            Outcome::TimedOut => "no final answer 32 s (RFC 3261 timer B) after the INVITE",
            Outcome::Open => "no final answer yet, less than 32 s before the end: not an attempt",
            Outcome::Unknown => "the INVITE is not in the capture: not an attempt",
        }
    }

    /// Whether the call counts as an attempt (the ratios' denominators).
    pub fn is_attempt(self) -> bool {
        !matches!(self, Outcome::Open | Outcome::Unknown)
    }

    /// ITU-T E.411/E.425 NER's numerator: answered, or ended by the user rather than the
    /// network (busy, no answer, declined, abandoned while ringing).
    pub fn is_effective_for_ner(self) -> bool {
        matches!(self, Outcome::Answered | Outcome::Busy | Outcome::NoAnswer | Outcome::Declined | Outcome::Abandoned)
    }

    fn index(self) -> usize {
        self as usize
    }
}

/// A call as the statistics see it.
#[derive(Clone, Debug, PartialEq)]
pub struct CallRecord {
    /// When its INVITE was sent (the session's start when it was not seen).
    pub start: Timestamp,
    /// Its outcome (for a call with no final answer, [`Outcome::TimedOut`] when the session
    /// itself lasted 32 s, else [`Outcome::Open`] until a report decides).
    pub outcome: Outcome,
    /// The final answer that decided it, if one did.
    pub code: Option<u16>,
    /// The INVITE was answered 2xx and the BYE too (RFC 6076 section 4.9's completion).
    pub completed: bool,
    /// INVITE to the first 18x, ms.
    pub pdd_ms: Option<f64>,
    /// INVITE to the final answer, ms.
    pub setup_ms: Option<f64>,
    /// INVITE to the first 18x or 2xx, ms (RFC 6076 4.3.1).
    pub srd_ok_ms: Option<f64>,
    /// INVITE to the final failure with no 18x or 2xx before it, ms (RFC 6076 4.3.2).
    pub srd_failed_ms: Option<f64>,
    /// BYE to its final answer, ms (RFC 6076 4.4).
    pub sdd_ms: Option<f64>,
    /// 2xx to BYE, ms (RFC 6076 4.5.1).
    pub duration_ms: Option<f64>,
    /// The Via headers of the INVITE as captured.
    pub hops: Option<u8>,
}

/// The call a `sip_call` session is, or `None` for another kind of session.
pub fn classify(s: &Session) -> Option<CallRecord> {
    if s.kind != SessionKind::SipCall {
        return None;
    }
    let is_invite_response = |m: &Message| m.status.is_some() && m.cseq.ends_with(" INVITE");
    let first = |pred: &dyn Fn(&Message) -> bool| s.messages.iter().find(|m| !m.retransmission && pred(m));
    let Some(invite) = first(&|m| m.method.as_deref() == Some("INVITE")) else {
        let record = CallRecord {
            start: s.start,
            outcome: Outcome::Unknown,
            code: None,
            completed: false,
            pdd_ms: None,
            setup_ms: None,
            srd_ok_ms: None,
            srd_failed_ms: None,
            sdd_ms: None,
            duration_ms: s.duration_ms,
            hops: None,
        };
        return Some(record);
    };
    let since = |m: &Message| m.ts.millis_since(invite.ts);
    let answer = first(&|m| is_invite_response(m) && m.status.is_some_and(|c| (200..300).contains(&c)));
    let progress = first(&|m| is_invite_response(m) && m.status.is_some_and(|c| (180..300).contains(&c)));
    // The final failures to the initial INVITEs; a challenge decides only when nobody retried.
    let failures: Vec<&Message> = s
        .messages
        .iter()
        .filter(|m| !m.retransmission && is_invite_response(m) && m.status.is_some_and(|c| c >= 300))
        .collect();
    let deciding = failures.iter().rev().find(|m| !matches!(m.status, Some(401 | 407))).or(failures.last());
    let rang = s.post_dial_delay_ms.is_some();
    let cancelled = s.state == callflow_model::CallState::Cancelled;
    let (outcome, code) = match (answer, deciding) {
        (Some(a), _) => (Outcome::Answered, a.status),
        // The code is the 487 when it was seen (a CANCEL may be the last thing captured).
        _ if cancelled => (if rang { Outcome::Abandoned } else { Outcome::Cancelled }, deciding.and_then(|m| m.status)),
        (None, Some(m)) => {
            let code = m.status.unwrap_or(0);
            let outcome = match code {
                300..=399 => Outcome::Redirected,
                486 | 600 => Outcome::Busy,
                480 => Outcome::NoAnswer,
                603 => Outcome::Declined,
                487 if rang => Outcome::Abandoned,
                487 => Outcome::Cancelled,
                408 | 500..=599 => Outcome::Failed,
                _ => Outcome::Rejected,
            };
            (outcome, Some(code))
        }
        (None, None) if s.end.nanos_since(invite.ts) >= TIMER_B_NS => (Outcome::TimedOut, None),
        (None, None) => (Outcome::Open, None),
    };
    let srd_failed_ms = match (progress, deciding) {
        (None, Some(m)) if !matches!(outcome, Outcome::Redirected | Outcome::Cancelled | Outcome::Abandoned) => {
            Some(since(m))
        }
        _ => None,
    };
    let bye = first(&|m| m.method.as_deref() == Some("BYE"));
    let bye_answer = bye.and_then(|b| {
        s.messages.iter().find(|m| {
            !m.retransmission && m.status.is_some_and(|c| c >= 200) && m.cseq.ends_with(" BYE") && m.ts >= b.ts
        })
    });
    let completed = answer.is_some() && bye_answer.is_some_and(|m| m.status.is_some_and(|c| (200..300).contains(&c)));
    Some(CallRecord {
        start: invite.ts,
        outcome,
        code,
        completed,
        pdd_ms: s.post_dial_delay_ms,
        setup_ms: s.setup_time_ms,
        srd_ok_ms: progress.map(since),
        srd_failed_ms,
        sdd_ms: bye.zip(bye_answer).map(|(b, a)| a.ts.millis_since(b.ts)),
        duration_ms: if answer.is_some() { s.duration_ms } else { None },
        hops: Some(invite.vias).filter(|v| *v > 0),
    })
}

/// The registrations of a `sip_register` session: how many, how many failed, and the
/// delay of each successful one (RFC 6076 sections 4.1 and 4.2).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Registrations {
    /// Registrations: a REGISTER and, through 401/407 challenges, its retries.
    pub attempts: u64,
    /// Those that ended in a failure other than a challenge, or with no final answer.
    pub failed: u64,
    /// First REGISTER to the 2xx, ms, per successful registration.
    pub delays_ms: Vec<f64>,
}

/// The registrations of a session (none unless it is `sip_register`).
pub fn registrations(s: &Session) -> Registrations {
    let mut out = Registrations::default();
    if s.kind != SessionKind::SipRegister {
        return out;
    }
    let mut open: Option<Timestamp> = None;
    for m in s.messages.iter().filter(|m| !m.retransmission) {
        match (m.method.as_deref(), m.status) {
            (Some("REGISTER"), _) => {
                open.get_or_insert(m.ts);
            }
            (None, Some(code)) if code >= 200 && m.cseq.ends_with(" REGISTER") => {
                let Some(start) = open else { continue };
                if matches!(code, 401 | 407) {
                    continue;
                }
                out.attempts += 1;
                if (200..300).contains(&code) {
                    out.delays_ms.push(m.ts.millis_since(start));
                } else {
                    out.failed += 1;
                }
                open = None;
            }
            _ => {}
        }
    }
    if open.is_some() {
        out.attempts += 1;
        out.failed += 1;
    }
    out
}

/// A dimension rows can be grouped by.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Dimension {
    /// The peer (trunk name, or the far signalling address).
    Peer,
    /// The host of the From URI.
    CallerDomain,
    /// The host of the To URI.
    CalleeDomain,
    /// The time bucket of the call's start.
    Bucket,
}

impl Dimension {
    /// Its name in reports: the field of a row it fills (`peer`, `caller_domain`,
    /// `callee_domain`, `bucket`).
    pub fn as_str(self) -> &'static str {
        match self {
            Dimension::Peer => "peer",
            Dimension::CallerDomain => "caller_domain",
            Dimension::CalleeDomain => "callee_domain",
            Dimension::Bucket => "bucket",
        }
    }
}

/// A grouping: no dimension (the whole capture) or several (`peer,minute`).
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct Grouping(pub Vec<Dimension>);

/// A `--by` value that names no dimension.
#[derive(Debug, thiserror::Error)]
#[error("unknown grouping `{0}`: use peer, domain (the callee's), caller-domain, callee-domain or minute (the time bucket), joined by commas")]
pub struct BadGrouping(pub String);

impl FromStr for Grouping {
    type Err = BadGrouping;
    fn from_str(s: &str) -> Result<Grouping, BadGrouping> {
        let mut dims = Vec::new();
        for word in s.split(',').map(str::trim).filter(|w| !w.is_empty()) {
            let dim = match word.to_ascii_lowercase().replace('_', "-").as_str() {
                "peer" | "trunk" => Dimension::Peer,
                "domain" | "callee-domain" => Dimension::CalleeDomain,
                "caller-domain" => Dimension::CallerDomain,
                "minute" | "bucket" | "time" => Dimension::Bucket,
                "total" | "all" => continue,
                _ => return Err(BadGrouping(word.to_string())),
            };
            if !dims.contains(&dim) {
                dims.push(dim);
            }
        }
        Ok(Grouping(dims))
    }
}

/// The group key of a row: one value per dimension of its grouping.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
struct Key {
    peer: Option<String>,
    caller_domain: Option<String>,
    callee_domain: Option<String>,
    bucket: Option<i64>,
}

/// A distribution kept as counts per whole unit (its percentiles exact to the unit).
#[derive(Clone, Debug, Default)]
struct Dist {
    count: u64,
    sum: f64,
    max: f64,
    units: Units,
}

/// Distinct values a [`Units`] keeps in its vector before it moves them to a B-tree.
const FEW_UNITS: usize = 32;

/// Counts per whole unit, in order of the unit: a short sorted vector while few values
/// are distinct, a B-tree beyond. Most groups of a document see one call or a handful (a
/// peer, a minute), and a B-tree allocates a 200-byte leaf for its first value (measured:
/// 1.15 MB of 10.5 MB of heap for 500 calls, eight distributions per group).
#[derive(Clone, Debug)]
enum Units {
    Few(Vec<(i64, u64)>),
    Many(BTreeMap<i64, u64>),
}

impl Default for Units {
    fn default() -> Self {
        Units::Few(Vec::new())
    }
}

impl Units {
    fn add(&mut self, unit: i64, n: u64) {
        match self {
            Units::Few(few) => match few.binary_search_by_key(&unit, |&(u, _)| u) {
                Ok(i) => few[i].1 += n,
                Err(i) if few.len() < FEW_UNITS => few.insert(i, (unit, n)),
                Err(_) => {
                    let mut many: BTreeMap<i64, u64> = few.drain(..).collect();
                    *many.entry(unit).or_default() += n;
                    *self = Units::Many(many);
                }
            },
            Units::Many(many) => *many.entry(unit).or_default() += n,
        }
    }

    /// Each unit with its count, smallest unit first.
    fn iter(&self) -> impl Iterator<Item = (i64, u64)> + '_ {
        let (few, many) = match self {
            Units::Few(few) => (Some(few.iter().copied()), None),
            Units::Many(many) => (None, Some(many.iter().map(|(u, n)| (*u, *n)))),
        };
        few.into_iter().flatten().chain(many.into_iter().flatten())
    }
}

impl Dist {
    fn add(&mut self, v: f64) {
        if !v.is_finite() {
            return;
        }
        self.max = if self.count == 0 { v } else { self.max.max(v) };
        self.count += 1;
        self.sum += v;
        self.units.add(v.round() as i64, 1);
    }

    fn merge(&mut self, other: &Dist) {
        if other.count == 0 {
            return;
        }
        self.max = if self.count == 0 { other.max } else { self.max.max(other.max) };
        self.count += other.count;
        self.sum += other.sum;
        for (v, n) in other.units.iter() {
            self.units.add(v, n);
        }
    }

    /// The nearest-rank `p`th percentile (the value at rank ceil(p/100 * count)).
    fn percentile(&self, p: u64) -> Option<f64> {
        let rank = (p * self.count).div_ceil(100).max(1);
        let mut seen = 0;
        for (v, n) in self.units.iter() {
            seen += n;
            if seen >= rank {
                return Some(v as f64);
            }
        }
        None
    }

    fn delay(&self) -> Delay {
        let some = |v: f64| (self.count > 0).then_some(v);
        Delay {
            count: self.count,
            sum: round(self.sum, 1_000.0),
            mean: some(round(self.sum / self.count.max(1) as f64, 1_000.0)),
            p50: self.percentile(50),
            p90: self.percentile(90),
            p99: self.percentile(99),
            max: some(round(self.max, 1_000.0)),
        }
    }
}

fn round(v: f64, scale: f64) -> f64 {
    (v * scale).round() / scale
}

fn ratio(numerator: u64, denominator: u64) -> Ratio {
    let percent = (denominator > 0).then(|| round(numerator as f64 * 100.0 / denominator as f64, 100.0));
    Ratio { percent, numerator, denominator }
}

/// Which distribution of a [`Tally`].
#[derive(Clone, Copy)]
enum D {
    Acd,
    Pdd,
    Setup,
    SrdOk,
    SrdFailed,
    Sdd,
    Rrd,
    Hops,
}

/// The counts of one group.
#[derive(Clone, Debug, Default)]
struct Tally {
    outcomes: [u64; 12],
    completed: u64,
    /// Calls decided by 408, 500, 503 or 504.
    isa_calls: u64,
    registrations: u64,
    registrations_failed: u64,
    dists: [Dist; 8],
    responses: BTreeMap<u16, u64>,
    retransmitted: u64,
    /// The INVITE times of calls with no final answer yet.
    pending: Vec<Timestamp>,
}

impl Tally {
    fn add_call(&mut self, c: &CallRecord) {
        if c.outcome == Outcome::Open && self.pending.len() < MAX_PENDING {
            self.pending.push(c.start);
        } else if c.outcome == Outcome::Open {
            self.outcomes[Outcome::TimedOut.index()] += 1;
        } else {
            self.outcomes[c.outcome.index()] += 1;
        }
        self.completed += u64::from(c.completed);
        self.isa_calls += u64::from(matches!(c.code, Some(408 | 500 | 503 | 504)) && c.outcome == Outcome::Failed);
        let values = [
            (D::Acd, c.duration_ms),
            (D::Pdd, c.pdd_ms),
            (D::Setup, c.setup_ms),
            (D::SrdOk, c.srd_ok_ms),
            (D::SrdFailed, c.srd_failed_ms),
            (D::Sdd, c.sdd_ms),
            (D::Hops, c.hops.map(f64::from)),
        ];
        for (d, v) in values {
            if let Some(v) = v {
                self.dists[d as usize].add(v);
            }
        }
    }

    fn add_registrations(&mut self, r: &Registrations) {
        self.registrations += r.attempts;
        self.registrations_failed += r.failed;
        for v in &r.delays_ms {
            self.dists[D::Rrd as usize].add(*v);
        }
    }

    fn add_responses(&mut self, s: &Session) {
        for m in &s.messages {
            if let Some(code) = m.status {
                *self.responses.entry(code).or_default() += 1;
                self.retransmitted += u64::from(m.retransmission);
            }
        }
    }

    fn merge(&mut self, other: &Tally) {
        for (a, b) in self.outcomes.iter_mut().zip(other.outcomes) {
            *a += b;
        }
        self.completed += other.completed;
        self.isa_calls += other.isa_calls;
        self.registrations += other.registrations;
        self.registrations_failed += other.registrations_failed;
        for (a, b) in self.dists.iter_mut().zip(&other.dists) {
            a.merge(b);
        }
        for (code, n) in &other.responses {
            *self.responses.entry(*code).or_default() += n;
        }
        self.retransmitted += other.retransmitted;
        self.pending.extend_from_slice(&other.pending);
    }

    /// The figures, calls with no final answer decided against `end` (the end of what was seen).
    fn set(&self, end: Timestamp) -> KpiSet {
        let mut outcomes = self.outcomes;
        for t in &self.pending {
            let timed_out = end.nanos_since(*t) >= TIMER_B_NS;
            outcomes[if timed_out { Outcome::TimedOut } else { Outcome::Open }.index()] += 1;
        }
        let n = |o: Outcome| outcomes[o.index()];
        let attempts: u64 = Outcome::ALL.iter().filter(|o| o.is_attempt()).map(|o| n(*o)).sum();
        let answered = n(Outcome::Answered);
        let established_base = attempts - n(Outcome::Redirected);
        // RFC 6076 4.7 names 480, 486, 600 and 603: busy, no answer and declined here.
        let effective = answered + n(Outcome::Busy) + n(Outcome::NoAnswer) + n(Outcome::Declined);
        let ner: u64 = Outcome::ALL.iter().filter(|o| o.is_effective_for_ner()).map(|o| n(*o)).sum();
        // ISA counts calls, not responses: those whose deciding answer is one of RFC 6076
        // 4.8's codes, and the timeouts.
        let isa = self.isa_calls + n(Outcome::TimedOut);
        let mut by_class = BTreeMap::new();
        let mut by_code = BTreeMap::new();
        for (code, count) in &self.responses {
            *by_class.entry(format!("{}xx", code / 100)).or_default() += count;
            by_code.insert(code.to_string(), *count);
        }
        KpiSet {
            attempts,
            outcomes: Outcome::ALL
                .iter()
                .filter(|o| n(**o) > 0)
                .map(|o| OutcomeCount { outcome: o.as_str().into(), count: n(*o), rule: o.rule().into() })
                .collect(),
            asr: ratio(answered, attempts),
            ner: ratio(ner, attempts),
            ser: ratio(answered, established_base),
            seer: ratio(effective, established_base),
            isa: ratio(isa, attempts),
            scr: ratio(self.completed, attempts),
            ira: ratio(self.registrations_failed, self.registrations),
            acd_ms: self.dists[D::Acd as usize].delay(),
            pdd_ms: self.dists[D::Pdd as usize].delay(),
            setup_ms: self.dists[D::Setup as usize].delay(),
            srd_ok_ms: self.dists[D::SrdOk as usize].delay(),
            srd_failed_ms: self.dists[D::SrdFailed as usize].delay(),
            sdd_ms: self.dists[D::Sdd as usize].delay(),
            rrd_ms: self.dists[D::Rrd as usize].delay(),
            hops: self.dists[D::Hops as usize].delay(),
            registrations: self.registrations,
            responses: ResponseCounts {
                total: self.responses.values().sum(),
                retransmitted: self.retransmitted,
                by_class,
                by_code,
            },
        }
    }
}

/// The host of a SIP or tel URI, lower case, without port or parameters (`tel` for a tel
/// URI, empty when there is none).
pub fn uri_host(uri: &str) -> String {
    let uri = uri.trim().trim_start_matches('<');
    let Some((scheme, rest)) = uri.split_once(':') else { return String::new() };
    if scheme.eq_ignore_ascii_case("tel") {
        return "tel".into();
    }
    let rest = rest.rsplit_once('@').map_or(rest, |(_, host)| host);
    let end = rest.find([';', '?', '>']).unwrap_or(rest.len());
    let hostport = &rest[..end];
    let host = match hostport.strip_prefix('[') {
        Some(v6) => v6.split(']').next().unwrap_or(v6),
        None => hostport.split(':').next().unwrap_or(hostport),
    };
    host.to_ascii_lowercase()
}

/// Where a session's statistics go: its peer, domains and start.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Place {
    /// The trunk name, or the far signalling address.
    pub peer: String,
    /// The host of the From URI.
    pub caller_domain: String,
    /// The host of the To URI.
    pub callee_domain: String,
}

impl KpiOptions {
    /// The peer and domains of a SIP session, from its first request (`None` without one).
    pub fn place(&self, s: &Session) -> Option<Place> {
        let first = s.messages.iter().find(|m| m.method.is_some())?;
        let local = |ip: IpAddr| self.local.iter().any(|r| r.contains(ip));
        // The far side: the sender when a request came from outside to us, else the receiver.
        let inbound = !self.local.is_empty() && local(first.dst.ip()) && !local(first.src.ip());
        let far = if inbound { first.src.ip() } else { first.dst.ip() };
        let (caller_domain, callee_domain) = (uri_host(&s.from), uri_host(&s.to));
        let far_host = if inbound { &caller_domain } else { &callee_domain };
        let trunk = self.trunks.iter().find(|t| {
            t.addresses.iter().any(|r| r.contains(far)) || t.hosts.iter().any(|h| h.eq_ignore_ascii_case(far_host))
        });
        let peer = trunk.map_or_else(|| far.to_string(), |t| t.name.clone());
        Some(Place { peer, caller_domain, callee_domain })
    }

    fn bucket_of(&self, t: Timestamp) -> i64 {
        let width = i64::try_from(self.bucket.as_nanos()).unwrap_or(i64::MAX).max(1);
        // Saturating: the bucket of a time near the start of the range would lie before it.
        t.as_nanos().div_euclid(width).saturating_mul(width)
    }
}

/// What one SIP session adds to the statistics.
struct Contribution {
    place: Place,
    start: Timestamp,
    call: Option<CallRecord>,
    registrations: Registrations,
}

fn contribution(opts: &KpiOptions, s: &Session) -> Option<Contribution> {
    if !matches!(s.kind, SessionKind::SipCall | SessionKind::SipRegister | SessionKind::SipOther) {
        return None;
    }
    let place = opts.place(s).unwrap_or_else(|| Place {
        peer: s.participants.get(1).map_or_else(String::new, |a| a.ip().to_string()),
        caller_domain: uri_host(&s.from),
        callee_domain: uri_host(&s.to),
    });
    let call = classify(s);
    let start = call.as_ref().map_or(s.start, |c| c.start);
    Some(Contribution { place, start, call, registrations: registrations(s) })
}

/// Statistics of a run, grouped as asked: fed one session at a time, reported at any time.
///
/// ```
/// use callflow_correlate::kpis::{Grouping, KpiAccumulator, KpiOptions};
///
/// let by_peer: Grouping = "peer".parse().unwrap();
/// let mut acc = KpiAccumulator::new(KpiOptions::default(), vec![Grouping::default(), by_peer]);
/// // acc.add(&session) for each session as it completes...
/// let kpis = acc.document(None);
/// assert_eq!(kpis.total.attempts, 0);
/// assert_eq!(kpis.total.asr.percent, None, "no attempt: no ratio");
/// ```
#[derive(Debug)]
pub struct KpiAccumulator {
    opts: KpiOptions,
    /// Tallies boxed: a B-tree filled in key order keeps its nodes half empty, and a
    /// tally is nearly 600 bytes (measured: 1.07 MB of nodes for 500 calls' groups).
    groupings: Vec<(Grouping, BTreeMap<Key, Box<Tally>>)>,
    /// The latest session end seen: what a call with no final answer is judged against.
    latest: Option<Timestamp>,
    /// Sessions that added something.
    sessions: u64,
    /// Each call and how it was classified, when asked for ([`KpiAccumulator::keep_calls`]).
    calls: Option<Vec<KpiCall>>,
    /// The whole run, whatever the groupings.
    all: Tally,
}

impl KpiAccumulator {
    /// An accumulator for `groupings` (the empty grouping is the whole run).
    pub fn new(opts: KpiOptions, groupings: Vec<Grouping>) -> KpiAccumulator {
        KpiAccumulator {
            opts,
            groupings: groupings.into_iter().map(|g| (g, BTreeMap::new())).collect(),
            latest: None,
            sessions: 0,
            calls: None,
            all: Tally::default(),
        }
    }

    /// Keeps every call's classification too (memory per call: for a report, not a live run).
    pub fn keep_calls(mut self) -> KpiAccumulator {
        self.calls = Some(Vec::new());
        self
    }

    /// Every call added since [`KpiAccumulator::keep_calls`], in the order added, calls with
    /// no final answer judged against `end` (by default the latest session end seen).
    pub fn calls(&self, end: Option<Timestamp>) -> Vec<KpiCall> {
        let end = end.or(self.latest).unwrap_or_default();
        let mut calls = self.calls.clone().unwrap_or_default();
        for c in calls.iter_mut().filter(|c| c.outcome == Outcome::Open.as_str()) {
            if end.nanos_since(c.start) >= TIMER_B_NS {
                c.outcome = Outcome::TimedOut.as_str().into();
                c.rule = Outcome::TimedOut.rule().into();
            }
        }
        calls
    }

    /// The groupings of the document's `kpis` (besides the whole run, always kept): per
    /// peer, per callee domain, per time bucket.
    pub fn for_document(opts: KpiOptions) -> KpiAccumulator {
        let g = |d: &[Dimension]| Grouping(d.to_vec());
        let groupings = vec![g(&[Dimension::Peer]), g(&[Dimension::CalleeDomain]), g(&[Dimension::Bucket])];
        KpiAccumulator::new(opts, groupings)
    }

    /// Adds a session (sessions other than SIP add nothing).
    pub fn add(&mut self, s: &Session) {
        let Some(c) = contribution(&self.opts, s) else { return };
        self.sessions += 1;
        self.latest = Some(self.latest.map_or(s.end, |t| t.max(s.end)));
        let bucket = self.opts.bucket_of(c.start);
        if let (Some(calls), Some(call)) = (self.calls.as_mut(), c.call.as_ref()) {
            calls.push(KpiCall {
                session: s.id.clone(),
                call_id: s.call_id.clone(),
                start: call.start,
                peer: c.place.peer.clone(),
                outcome: call.outcome.as_str().into(),
                code: call.code,
                rule: call.outcome.rule().into(),
            });
        }
        if let Some(call) = &c.call {
            self.all.add_call(call);
        }
        self.all.add_registrations(&c.registrations);
        self.all.add_responses(s);
        for (grouping, groups) in &mut self.groupings {
            let mut key = Key::default();
            for d in &grouping.0 {
                match d {
                    Dimension::Peer => key.peer = Some(c.place.peer.clone()),
                    Dimension::CallerDomain => key.caller_domain = Some(c.place.caller_domain.clone()),
                    Dimension::CalleeDomain => key.callee_domain = Some(c.place.callee_domain.clone()),
                    Dimension::Bucket => key.bucket = Some(bucket),
                }
            }
            if groups.len() >= MAX_GROUPS && !groups.contains_key(&key) {
                key.peer = key.peer.map(|_| OTHER.to_string());
                key.caller_domain = key.caller_domain.map(|_| OTHER.to_string());
                key.callee_domain = key.callee_domain.map(|_| OTHER.to_string());
                // A time bucket has no `other`: past the bound (a week of minutes, or a
                // capture with wild timestamps) a new one is left out of this grouping,
                // still counted in the others.
                if !groups.contains_key(&key) && key.bucket.is_some() {
                    continue;
                }
            }
            let tally = groups.entry(key).or_default();
            if let Some(call) = &c.call {
                tally.add_call(call);
            }
            tally.add_registrations(&c.registrations);
            tally.add_responses(s);
        }
    }

    /// SIP sessions added so far.
    pub fn sessions(&self) -> u64 {
        self.sessions
    }

    /// The rows of grouping number `i`, calls with no final answer judged against `end`
    /// (by default the latest session end seen). Rows of one dimension other than time
    /// come most attempts first; the others in key order.
    pub fn rows(&self, i: usize, end: Option<Timestamp>) -> Vec<KpiRow> {
        let Some((grouping, groups)) = self.groupings.get(i) else { return Vec::new() };
        let end = end.or(self.latest).unwrap_or_default();
        let mut rows: Vec<KpiRow> = groups
            .iter()
            .map(|(k, t)| KpiRow {
                peer: k.peer.clone(),
                caller_domain: k.caller_domain.clone(),
                callee_domain: k.callee_domain.clone(),
                bucket: k.bucket.map(Timestamp::from_nanos),
                kpis: t.set(end),
            })
            .collect();
        if grouping.0.is_empty() && rows.is_empty() {
            rows.push(KpiRow { kpis: Tally::default().set(end), ..KpiRow::default() });
        }
        if grouping.0.len() == 1 && grouping.0[0] != Dimension::Bucket {
            rows.sort_by(|a, b| {
                (b.kpis.attempts + b.kpis.registrations).cmp(&(a.kpis.attempts + a.kpis.registrations))
            });
        }
        rows
    }

    /// The groupings asked for.
    pub fn groupings(&self) -> impl Iterator<Item = &Grouping> {
        self.groupings.iter().map(|(g, _)| g)
    }

    /// The whole run's figures.
    pub fn total(&self, end: Option<Timestamp>) -> KpiSet {
        self.all.set(end.or(self.latest).unwrap_or_default())
    }

    /// The document's `kpis` (made by [`KpiAccumulator::for_document`]; with other
    /// groupings, the rows of those it has).
    /// Rows per peer and per domain stop at the 100 with the most attempts and
    /// registrations, the rest merged into one row named `other`.
    pub fn document(&self, end: Option<Timestamp>) -> Kpis {
        let mut kpis = Kpis { bucket_secs: self.opts.bucket.as_secs(), total: self.total(end), ..Kpis::default() };
        for (i, (g, _)) in self.groupings.iter().enumerate() {
            match g.0.as_slice() {
                [Dimension::Peer] => kpis.by_peer = self.top_rows(i, end, DOCUMENT_ROWS),
                [Dimension::CalleeDomain] => kpis.by_domain = self.top_rows(i, end, DOCUMENT_ROWS),
                [Dimension::Bucket] => kpis.by_bucket = self.rows(i, end),
                _ => {}
            }
        }
        kpis
    }

    /// The rows of the one-dimension grouping number `i` with the most attempts and
    /// registrations, at most `top`, then (when there are more) one `other` row with the rest.
    fn top_rows(&self, i: usize, end: Option<Timestamp>, top: usize) -> Vec<KpiRow> {
        let Some((_, groups)) = self.groupings.get(i) else { return Vec::new() };
        let end = end.or(self.latest).unwrap_or_default();
        let volume = |t: &Tally| t.outcomes.iter().sum::<u64>() + t.pending.len() as u64 + t.registrations;
        let mut ranked: Vec<(&Key, &Tally)> = groups.iter().map(|(k, t)| (k, &**t)).collect();
        ranked.sort_by_key(|(_, t)| std::cmp::Reverse(volume(t)));
        let row = |k: &Key, t: &Tally| KpiRow {
            peer: k.peer.clone(),
            caller_domain: k.caller_domain.clone(),
            callee_domain: k.callee_domain.clone(),
            bucket: k.bucket.map(Timestamp::from_nanos),
            kpis: t.set(end),
        };
        let mut rows: Vec<KpiRow> = ranked.iter().take(top).map(|(k, t)| row(k, t)).collect();
        if ranked.len() > top {
            let mut rest = Tally::default();
            let mut key = ranked[top].0.clone();
            ranked[top..].iter().for_each(|(_, t)| rest.merge(t));
            key.peer = key.peer.map(|_| OTHER.to_string());
            key.caller_domain = key.caller_domain.map(|_| OTHER.to_string());
            key.callee_domain = key.callee_domain.map(|_| OTHER.to_string());
            rows.push(row(&key, &rest));
        }
        rows
    }
}

/// Histogram bounds of the delays, in seconds.
const DELAY_BOUNDS: [f64; 11] = [0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 3.0, 5.0, 10.0, 20.0, 30.0];
/// Histogram bounds of call durations, in seconds.
const DURATION_BOUNDS: [f64; 9] = [10.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1_800.0, 3_600.0, 7_200.0];

/// A Prometheus histogram: counts per bucket (not cumulative here), sum and count.
#[derive(Clone, Debug, Default, PartialEq)]
struct Histogram {
    buckets: Vec<u64>,
    sum: f64,
    count: u64,
}

impl Histogram {
    fn observe(&mut self, bounds: &[f64], v: f64) {
        if self.buckets.len() != bounds.len() + 1 {
            self.buckets = vec![0; bounds.len() + 1];
        }
        let i = bounds.iter().position(|b| v <= *b).unwrap_or(bounds.len());
        self.buckets[i] += 1;
        self.sum += v;
        self.count += 1;
    }

    fn minus(&self, base: &Histogram) -> Histogram {
        let buckets =
            (0..self.buckets.len()).map(|i| self.buckets[i] - base.buckets.get(i).copied().unwrap_or(0)).collect();
        Histogram { buckets, sum: self.sum - base.sum, count: self.count - base.count }
    }

    fn plus(&mut self, other: &Histogram) {
        if self.buckets.len() < other.buckets.len() {
            self.buckets.resize(other.buckets.len(), 0);
        }
        for (a, b) in self.buckets.iter_mut().zip(&other.buckets) {
            *a += b;
        }
        self.sum += other.sum;
        self.count += other.count;
    }
}

/// The live series of one peer (or of all).
#[derive(Clone, Debug, Default, PartialEq)]
struct Counters {
    calls: [u64; 12],
    /// Responses by class, 1xx to 6xx (index 0 to 5).
    responses: [u64; 6],
    /// Registrations: succeeded, failed.
    registrations: [u64; 2],
    /// Post-dial delay, setup time, disconnect delay, registration delay (seconds).
    delays: [Histogram; 4],
    /// Call durations (seconds).
    duration: Histogram,
}

impl Counters {
    fn add(&mut self, c: &Contribution, s: &Session) {
        if let Some(call) = &c.call {
            // A call handed out live with no final answer has been idle for the idle timeout.
            let outcome = if call.outcome == Outcome::Open { Outcome::TimedOut } else { call.outcome };
            self.calls[outcome.index()] += 1;
            let delays = [call.pdd_ms, call.setup_ms, call.sdd_ms];
            for (h, v) in self.delays.iter_mut().zip(delays) {
                if let Some(v) = v {
                    h.observe(&DELAY_BOUNDS, v / 1e3);
                }
            }
            if let Some(d) = call.duration_ms {
                self.duration.observe(&DURATION_BOUNDS, d / 1e3);
            }
        }
        let r = &c.registrations;
        self.registrations[0] += r.attempts - r.failed;
        self.registrations[1] += r.failed;
        for v in &r.delays_ms {
            self.delays[3].observe(&DELAY_BOUNDS, v / 1e3);
        }
        for m in &s.messages {
            if let Some(class @ 1..=6) = m.status.map(|c| usize::from(c / 100)) {
                self.responses[class - 1] += 1;
            }
        }
    }

    fn attempts(&self) -> u64 {
        Outcome::ALL.iter().filter(|o| o.is_attempt()).map(|o| self.calls[o.index()]).sum::<u64>()
            + self.registrations.iter().sum::<u64>()
    }

    fn minus(&self, base: &Counters) -> Counters {
        let sub = |a: &[u64], b: &[u64]| -> Vec<u64> { a.iter().zip(b).map(|(a, b)| a - b).collect() };
        let mut out = Counters::default();
        out.calls.copy_from_slice(&sub(&self.calls, &base.calls));
        out.responses.copy_from_slice(&sub(&self.responses, &base.responses));
        out.registrations.copy_from_slice(&sub(&self.registrations, &base.registrations));
        for i in 0..4 {
            out.delays[i] = self.delays[i].minus(&base.delays[i]);
        }
        out.duration = self.duration.minus(&base.duration);
        out
    }

    fn plus(&mut self, other: &Counters) {
        let add = |a: &mut [u64], b: &[u64]| a.iter_mut().zip(b).for_each(|(a, b)| *a += b);
        add(&mut self.calls, &other.calls);
        add(&mut self.responses, &other.responses);
        add(&mut self.registrations, &other.registrations);
        for i in 0..4 {
            self.delays[i].plus(&other.delays[i]);
        }
        self.duration.plus(&other.duration);
    }
}

/// The series behind [`KpiSeries`]' lock.
#[derive(Debug, Default)]
struct SeriesState {
    total: Counters,
    /// Each peer's counts since it was first seen, and since the last scrape (at most
    /// `max_tracked` peers).
    peers: HashMap<String, (Counters, Counters)>,
    /// The peers with a label of their own, in the order they got it, with what `other`
    /// had shown of them by then: their series count the rest.
    labelled: Vec<(String, Counters)>,
}

/// Prometheus series of the calls and registrations of every job (file or live), fed one
/// session at a time from any thread, with bounded label cardinality: at most `top_peers`
/// peers get a label of their own, the rest are `peer="other"`.
///
/// A peer gets its label when a scrape finds a free one, the peers seen most taken first,
/// and keeps it: what an earlier scrape already showed of it in `other` stays there, its
/// own series counts the rest, so every series only grows (Prometheus' `rate` sees no
/// reset). Before the first scrape nothing was shown: a file job's peers get all their counts.
#[derive(Debug)]
pub struct KpiSeries {
    opts: KpiOptions,
    top_peers: usize,
    state: Mutex<SeriesState>,
}

impl KpiSeries {
    /// Series naming peers by `opts`, at most `top_peers` of them with a label of their own.
    pub fn new(opts: KpiOptions, top_peers: usize) -> KpiSeries {
        KpiSeries { opts, top_peers, state: Mutex::new(SeriesState::default()) }
    }

    /// Peers whose counts are kept, to be labelled later: more are counted in `other` only.
    fn max_tracked(&self) -> usize {
        self.top_peers.saturating_mul(10).max(1_000)
    }

    /// Adds a completed session (sessions other than SIP add nothing).
    pub fn add(&self, s: &Session) {
        let Some(c) = contribution(&self.opts, s) else { return };
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        state.total.add(&c, s);
        let tracked = state.peers.len();
        let counters = match state.peers.get_mut(&c.place.peer) {
            Some(counters) => Some(counters),
            None if tracked < self.max_tracked() => Some(state.peers.entry(c.place.peer.clone()).or_default()),
            None => None,
        };
        if let Some((all, since_scrape)) = counters {
            all.add(&c, s);
            since_scrape.add(&c, s);
        }
    }

    /// Writes the series in the Prometheus text format (version 0.0.4).
    pub fn render(&self, out: &mut String) {
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        let state = &mut *state;
        if state.labelled.len() < self.top_peers {
            let mut candidates: Vec<(&String, &(Counters, Counters))> =
                state.peers.iter().filter(|(p, _)| !state.labelled.iter().any(|(l, _)| l == *p)).collect();
            candidates.sort_by(|a, b| b.1 .0.attempts().cmp(&a.1 .0.attempts()).then(a.0.cmp(b.0)));
            let free = self.top_peers - state.labelled.len();
            // What `other` showed of the peer: all but what came since the last scrape.
            let picked: Vec<(String, Counters)> =
                candidates.into_iter().take(free).map(|(p, (all, since))| (p.clone(), all.minus(since))).collect();
            state.labelled.extend(picked);
        }
        for (_, since_scrape) in state.peers.values_mut() {
            *since_scrape = Counters::default();
        }
        let mut rows: Vec<(String, Counters)> = Vec::new();
        let mut named = Counters::default();
        for (peer, base) in &state.labelled {
            let now = state.peers.get(peer).map_or_else(Counters::default, |(all, _)| all.minus(base));
            named.plus(&now);
            rows.push((peer.clone(), now));
        }
        rows.sort_by(|a, b| a.0.cmp(&b.0));
        rows.push(("other".into(), state.total.minus(&named)));
        write_series(out, &rows);
    }
}

/// A label value with `\`, `"` and newlines escaped.
fn label(v: &str) -> String {
    v.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n")
}

fn write_series(out: &mut String, rows: &[(String, Counters)]) {
    let head = |out: &mut String, name: &str, kind: &str, help: &str| {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
    };
    head(out, "callflow_sip_calls_total", "counter", "SIP calls by peer and outcome (docs/kpis.md).");
    for (peer, c) in rows {
        for o in Outcome::ALL.iter().filter(|o| **o != Outcome::Open) {
            let _ = writeln!(
                out,
                "callflow_sip_calls_total{{peer=\"{}\",outcome=\"{}\"}} {}",
                label(peer),
                o.as_str(),
                c.calls[o.index()]
            );
        }
    }
    head(out, "callflow_sip_responses_total", "counter", "SIP responses by peer and class, retransmissions included.");
    for (peer, c) in rows {
        for (i, n) in c.responses.iter().enumerate() {
            let _ = writeln!(out, "callflow_sip_responses_total{{peer=\"{}\",class=\"{}xx\"}} {n}", label(peer), i + 1);
        }
    }
    head(out, "callflow_sip_registrations_total", "counter", "SIP registrations by peer and result (RFC 6076 4.2).");
    for (peer, c) in rows {
        for (result, n) in ["success", "ineffective"].iter().zip(c.registrations) {
            let _ =
                writeln!(out, "callflow_sip_registrations_total{{peer=\"{}\",result=\"{result}\"}} {n}", label(peer));
        }
    }
    let histograms: [(&str, &str, &[f64]); 5] = [
        ("callflow_sip_post_dial_delay_seconds", "INVITE to the first 18x.", &DELAY_BOUNDS),
        ("callflow_sip_setup_seconds", "INVITE to the final answer.", &DELAY_BOUNDS),
        ("callflow_sip_disconnect_delay_seconds", "BYE to its answer (RFC 6076 4.4).", &DELAY_BOUNDS),
        ("callflow_sip_registration_delay_seconds", "REGISTER to its 2xx (RFC 6076 4.1).", &DELAY_BOUNDS),
        ("callflow_sip_call_duration_seconds", "2xx to BYE of answered calls (RFC 6076 4.5).", &DURATION_BOUNDS),
    ];
    for (i, (name, help, bounds)) in histograms.iter().enumerate() {
        head(out, name, "histogram", help);
        for (peer, c) in rows {
            let h = if i < 4 { &c.delays[i] } else { &c.duration };
            let peer = label(peer);
            let mut cumulative = 0;
            for (j, bound) in bounds.iter().enumerate() {
                cumulative += h.buckets.get(j).copied().unwrap_or(0);
                let _ = writeln!(out, "{name}_bucket{{peer=\"{peer}\",le=\"{bound}\"}} {cumulative}");
            }
            let _ = writeln!(out, "{name}_bucket{{peer=\"{peer}\",le=\"+Inf\"}} {}", h.count);
            let _ = writeln!(out, "{name}_sum{{peer=\"{peer}\"}} {}", h.sum);
            let _ = writeln!(out, "{name}_count{{peer=\"{peer}\"}} {}", h.count);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dialog::tests::script_session;

    /// Classifies the call `script` makes (see `script_session`: 10 ms between messages)
    /// and compares `outcome code pdd setup srd_ok srd_failed sdd duration completed` with `expected`.
    fn check(script: &[&str], expected: &str) {
        let c = classify(&script_session(script)).expect("a call");
        let ms = |v: Option<f64>| v.map_or_else(|| "-".to_string(), |v| v.to_string());
        let got = format!(
            "{} code={} pdd={} setup={} srd_ok={} srd_failed={} sdd={} duration={} completed={}",
            c.outcome.as_str(),
            c.code.map_or_else(|| "-".to_string(), |c| c.to_string()),
            ms(c.pdd_ms),
            ms(c.setup_ms),
            ms(c.srd_ok_ms),
            ms(c.srd_failed_ms),
            ms(c.sdd_ms),
            ms(c.duration_ms),
            c.completed
        );
        assert_eq!(got, expected, "{script:#?}");
    }

    #[test]
    fn answered_and_completed_call() {
        check(
            &[
                "> INVITE 1 i",
                "< 100 INVITE 1 i",
                "< 180 INVITE 1 i",
                "< 200 INVITE 1 i",
                "> ACK 1 a in",
                "> BYE 2 b in",
                "< 200 BYE 2 b",
            ],
            "answered code=200 pdd=20 setup=30 srd_ok=20 srd_failed=- sdd=10 duration=20 completed=true",
        );
        // Answered, and the BYE never answered: not a completion (RFC 6076 4.9).
        check(
            &["> INVITE 1 i", "< 200 INVITE 1 i", "> ACK 1 a in", "> BYE 2 b in"],
            "answered code=200 pdd=- setup=10 srd_ok=10 srd_failed=- sdd=- duration=20 completed=false",
        );
    }

    #[test]
    fn cancel_after_180_is_abandoned_and_before_it_cancelled() {
        check(
            &["> INVITE 1 i", "< 180 INVITE 1 i", "> CANCEL 1 i", "< 200 CANCEL 1 i", "< 487 INVITE 1 i"],
            "abandoned code=487 pdd=10 setup=40 srd_ok=10 srd_failed=- sdd=- duration=- completed=false",
        );
        check(
            &["> INVITE 1 i", "< 100 INVITE 1 i", "> CANCEL 1 i", "< 200 CANCEL 1 i", "< 487 INVITE 1 i"],
            "cancelled code=487 pdd=- setup=40 srd_ok=- srd_failed=- sdd=- duration=- completed=false",
        );
        // The capture ends before the 487: cancelled all the same, no code claimed.
        check(
            &["> INVITE 1 i", "< 180 INVITE 1 i", "> CANCEL 1 i"],
            "abandoned code=- pdd=10 setup=- srd_ok=10 srd_failed=- sdd=- duration=- completed=false",
        );
    }

    #[test]
    fn redirect_is_left_out_of_ser_and_seer() {
        check(
            &["> INVITE 1 i", "< 302 INVITE 1 i", "> ACK 1 i"],
            "redirected code=302 pdd=- setup=10 srd_ok=- srd_failed=- sdd=- duration=- completed=false",
        );
        let mut acc = KpiAccumulator::new(KpiOptions::default(), vec![Grouping::default()]);
        acc.add(&script_session(&["> INVITE 1 i", "< 302 INVITE 1 i", "> ACK 1 i"]));
        acc.add(&script_session(&["> INVITE 1 i", "< 200 INVITE 1 i", "> ACK 1 a in"]));
        acc.add(&script_session(&["> INVITE 1 i", "< 486 INVITE 1 i", "> ACK 1 i"]));
        acc.add(&script_session(&["> INVITE 1 i", "< 503 INVITE 1 i", "> ACK 1 i"]));
        let k = acc.total(None);
        assert_eq!(k.attempts, 4);
        let pair = |r: Ratio| (r.numerator, r.denominator, r.percent);
        assert_eq!(pair(k.ser), (1, 3, Some(33.33)), "SER: 200 / (4 - one 3xx)");
        assert_eq!(pair(k.seer), (2, 3, Some(66.67)), "SEER: 200 and 486 / (4 - one 3xx)");
        assert_eq!(pair(k.asr), (1, 4, Some(25.0)));
        assert_eq!(pair(k.ner), (2, 4, Some(50.0)), "answered and busy");
        assert_eq!(pair(k.isa), (1, 4, Some(25.0)), "the 503");
        assert_eq!(pair(k.scr), (0, 4, Some(0.0)), "no BYE: nothing completed");
        assert_eq!(k.srd_failed_ms.count, 2, "486 and 503 with no 18x before: {:?}", k.srd_failed_ms);
        assert_eq!(k.responses.by_class.get("3xx"), Some(&1));
        assert_eq!(k.responses.by_code.get("503"), Some(&1));
    }

    #[test]
    fn retransmitted_invite_is_one_attempt() {
        check(
            &["> INVITE 1 i", "> INVITE 1 i", "< 180 INVITE 1 i", "< 180 INVITE 1 i", "< 486 INVITE 1 i"],
            "busy code=486 pdd=20 setup=40 srd_ok=20 srd_failed=- sdd=- duration=- completed=false",
        );
        let mut acc = KpiAccumulator::new(KpiOptions::default(), vec![Grouping::default()]);
        acc.add(&script_session(&["> INVITE 1 i", "> INVITE 1 i", "< 180 INVITE 1 i", "< 180 INVITE 1 i"]));
        let k = acc.total(Some(Timestamp::from_parts(60, 0)));
        assert_eq!((k.attempts, k.responses.total, k.responses.retransmitted), (1, 2, 1));
    }

    #[test]
    fn challenge_then_retry_is_one_call_and_an_unretried_one_decides() {
        check(
            &["> INVITE 1 i1", "< 407 INVITE 1 i1", "> ACK 1 i1", "> INVITE 2 i2", "< 200 INVITE 2 i2"],
            "answered code=200 pdd=- setup=40 srd_ok=40 srd_failed=- sdd=- duration=- completed=false",
        );
        check(
            &["> INVITE 1 i1", "< 407 INVITE 1 i1", "> ACK 1 i1"],
            "rejected code=407 pdd=- setup=10 srd_ok=- srd_failed=10 sdd=- duration=- completed=false",
        );
    }

    #[test]
    fn call_still_open_at_the_end_is_no_attempt_until_timer_b_passes() {
        let ringing = script_session(&["> INVITE 1 i", "< 180 INVITE 1 i"]);
        assert_eq!(classify(&ringing).unwrap().outcome, Outcome::Open);
        let mut acc = KpiAccumulator::new(KpiOptions::default(), vec![Grouping::default()]);
        acc.add(&ringing);
        // The end of what was seen 20 s after the INVITE: still open, no attempt, no ratio.
        let open = acc.total(Some(Timestamp::from_parts(20, 0)));
        assert_eq!((open.attempts, open.asr.percent), (0, None));
        assert_eq!(open.outcomes[0].outcome, "open");
        // 40 s after: timer B ran out, an ineffective attempt (RFC 6076 4.8).
        let late = acc.total(Some(Timestamp::from_parts(40, 0)));
        assert_eq!((late.attempts, late.isa.numerator, late.outcomes[0].outcome.as_str()), (1, 1, "timed_out"));
        // Without the INVITE the outcome cannot be known.
        let missing = script_session(&["< 200 INVITE 1 i", "> ACK 1 a in", "> BYE 2 b in"]);
        assert_eq!(classify(&missing).unwrap().outcome, Outcome::Unknown);
    }

    #[test]
    fn kept_calls_say_their_rule_and_an_open_one_times_out_with_the_end() {
        let mut acc = KpiAccumulator::new(KpiOptions::default(), vec![Grouping::default()]).keep_calls();
        acc.add(&script_session(&["> INVITE 1 i", "< 486 INVITE 1 i", "> ACK 1 i"]));
        acc.add(&script_session(&["> INVITE 1 i", "< 180 INVITE 1 i"]));
        let line = |c: &KpiCall| (c.outcome.clone(), c.code, c.rule.clone());
        let now: Vec<_> = acc.calls(Some(Timestamp::from_parts(1, 0))).iter().map(line).collect();
        let want = |o: Outcome, code| (o.as_str().to_string(), code, o.rule().to_string());
        assert_eq!(now, [want(Outcome::Busy, Some(486)), want(Outcome::Open, None)]);
        let later = acc.calls(Some(Timestamp::from_parts(33, 0)));
        assert_eq!((later[1].outcome.as_str(), later[1].peer.as_str()), ("timed_out", "10.0.0.2"));
    }

    #[test]
    fn registrations_through_a_challenge() {
        let mut s =
            script_session(&["> REGISTER 1 r1", "< 401 REGISTER 1 r1", "> REGISTER 2 r2", "< 200 REGISTER 2 r2"]);
        s.kind = SessionKind::SipRegister;
        let r = registrations(&s);
        assert_eq!((r.attempts, r.failed, r.delays_ms.clone()), (1, 0, vec![30.0]), "RRD from the first REGISTER");
        let mut failed = script_session(&["> REGISTER 1 r1", "< 403 REGISTER 1 r1", "> REGISTER 2 r2"]);
        failed.kind = SessionKind::SipRegister;
        let r = registrations(&failed);
        assert_eq!((r.attempts, r.failed), (2, 2), "a 403, then no answer at all");
    }

    #[test]
    fn percentiles_are_nearest_rank_to_the_unit() {
        let mut d = Dist::default();
        for v in [10.4, 20.0, 30.0, 40.0, 50.0, 60.0, 70.0, 80.0, 90.0, 1000.0] {
            d.add(v);
        }
        let delay = d.delay();
        assert_eq!((delay.p50, delay.p90, delay.p99, delay.max), (Some(50.0), Some(90.0), Some(1000.0), Some(1000.0)));
        assert_eq!(delay.mean, Some(145.04));
    }

    #[test]
    fn percentiles_hold_when_the_distinct_values_outgrow_the_short_vector() {
        // 200 distinct values in a shuffled order with repeats, merged from two halves:
        // the counts move from the sorted vector to the B-tree mid-way and must not change.
        let values: Vec<f64> = (0..600u64).map(|i| ((i * 7919) % 200) as f64).collect();
        let (mut a, mut b, mut whole) = (Dist::default(), Dist::default(), Dist::default());
        for (i, v) in values.iter().enumerate() {
            if i % 2 == 0 {
                a.add(*v)
            } else {
                b.add(*v)
            }
            whole.add(*v);
        }
        a.merge(&b);
        let mut sorted = values.clone();
        sorted.sort_by(f64::total_cmp);
        let nearest_rank = |p: usize| sorted[(p * sorted.len()).div_ceil(100).max(1) - 1];
        for d in [&a, &whole] {
            assert!(matches!(d.units, Units::Many(_)));
            for p in [1, 50, 90, 99, 100] {
                assert_eq!(d.percentile(p as u64), Some(nearest_rank(p)), "p{p}");
            }
        }
        let few: Vec<(i64, u64)> = {
            let mut d = Dist::default();
            [3.0, 1.0, 3.0, 2.0].into_iter().for_each(|v| d.add(v));
            d.units.iter().collect()
        };
        assert_eq!(few, vec![(1, 1), (2, 1), (3, 2)]);
    }

    #[test]
    fn peers_domains_and_trunks() {
        assert_eq!(uri_host("sip:bob@Example.COM:5061;transport=tcp"), "example.com");
        assert_eq!(uri_host("<sips:[2001:db8::1]:5061>"), "2001:db8::1");
        assert_eq!(uri_host("tel:+15551234"), "tel");
        let s = script_session(&["> INVITE 1 i", "< 200 INVITE 1 i"]);
        let place = KpiOptions::default().place(&s).unwrap();
        assert_eq!((place.peer.as_str(), place.callee_domain.as_str()), ("10.0.0.2", "10.0.0.2"));
        let opts = KpiOptions {
            local: vec!["10.0.0.2".parse().unwrap()],
            trunks: vec![TrunkRule {
                name: "carrier-a".into(),
                addresses: vec!["10.0.0.0/30".parse().unwrap()],
                hosts: Vec::new(),
            }],
            ..KpiOptions::default()
        };
        assert_eq!(opts.place(&s).unwrap().peer, "carrier-a", "inbound to a local address: the caller's trunk");
        let only_local = KpiOptions { local: vec!["10.0.0.2".parse().unwrap()], ..KpiOptions::default() };
        assert_eq!(only_local.place(&s).unwrap().peer, "10.0.0.1");
        assert!("10.0.0.0/33".parse::<AddrRule>().is_err());
        assert!("2001:db8::/32".parse::<AddrRule>().unwrap().contains("2001:db8::7".parse().unwrap()));
        assert!(!"2001:db8::/32".parse::<AddrRule>().unwrap().contains("10.0.0.1".parse().unwrap()));
    }

    #[test]
    fn the_document_keeps_the_busiest_peers_and_merges_the_rest_into_other() {
        let mut acc = KpiAccumulator::for_document(KpiOptions::default());
        for callee in 1..=105u8 {
            let mut s = script_session(&["> INVITE 1 i", "< 200 INVITE 1 i"]);
            let addr: std::net::IpAddr = std::net::Ipv4Addr::new(10, 1, 0, callee).into();
            for m in s.messages.iter_mut().filter(|m| m.dst.port() == 5060 && m.dst.ip().to_string() == "10.0.0.2") {
                m.dst.set_ip(addr);
            }
            // The first callee gets two calls: the busiest.
            if callee == 1 {
                acc.add(&s);
            }
            acc.add(&s);
        }
        let kpis = acc.document(None);
        assert_eq!(kpis.by_peer.len(), DOCUMENT_ROWS + 1);
        assert_eq!((kpis.by_peer[0].peer.as_deref(), kpis.by_peer[0].kpis.attempts), (Some("10.1.0.1"), 2));
        let other = kpis.by_peer.last().unwrap();
        assert_eq!((other.peer.as_deref(), other.kpis.attempts), (Some("other"), 5));
        let sum: u64 = kpis.by_peer.iter().map(|r| r.kpis.attempts).sum();
        assert_eq!(sum, kpis.total.attempts, "nothing lost: 106 calls");
    }

    #[test]
    fn peers_beyond_the_bound_are_counted_as_other() {
        let mut acc = KpiAccumulator::new(KpiOptions::default(), vec!["peer".parse().unwrap()]);
        let mut s = script_session(&["> INVITE 1 i", "< 200 INVITE 1 i"]);
        for n in 0..=MAX_GROUPS as u32 + 1 {
            let callee: std::net::IpAddr = std::net::Ipv4Addr::from(0x0a00_0000 + 0x100 + n).into();
            for m in s.messages.iter_mut().filter(|m| m.method.is_some()) {
                m.dst.set_ip(callee);
            }
            acc.add(&s);
        }
        let rows = acc.rows(0, None);
        assert_eq!(rows.len(), MAX_GROUPS + 1, "the bound, and other");
        let other = rows.iter().find(|r| r.peer.as_deref() == Some(OTHER)).expect("other");
        assert_eq!(other.kpis.attempts, 2);
        assert_eq!(acc.total(None).attempts, MAX_GROUPS as u64 + 2);
    }

    #[test]
    fn grouping_by_peer_and_minute() {
        let g: Grouping = "peer, minute".parse().unwrap();
        assert_eq!(g.0, [Dimension::Peer, Dimension::Bucket]);
        assert!("peer,colour".parse::<Grouping>().is_err());
        let mut acc = KpiAccumulator::new(KpiOptions::default(), vec![g]);
        acc.add(&script_session(&["> INVITE 1 i", "< 200 INVITE 1 i"]));
        let rows = acc.rows(0, None);
        assert_eq!(rows.len(), 1);
        assert_eq!((rows[0].peer.as_deref(), rows[0].bucket), (Some("10.0.0.2"), Some(Timestamp::from_nanos(0))));
    }

    /// The value of the series line starting with `prefix`.
    fn value(text: &str, prefix: &str) -> u64 {
        let line = text.lines().find(|l| l.starts_with(prefix)).unwrap_or_else(|| panic!("no {prefix} in\n{text}"));
        line.rsplit(' ').next().unwrap().parse().unwrap()
    }

    #[test]
    fn series_label_the_top_peers_and_never_go_down() {
        let series = KpiSeries::new(KpiOptions::default(), 1);
        let call = |callee: &str| {
            let mut s = script_session(&["> INVITE 1 i", "< 180 INVITE 1 i", "< 200 INVITE 1 i"]);
            for m in &mut s.messages {
                if m.dst.ip().to_string() == "10.0.0.2" {
                    m.dst.set_ip(callee.parse().unwrap());
                }
            }
            s
        };
        series.add(&call("10.0.0.2"));
        series.add(&call("10.0.0.3"));
        series.add(&call("10.0.0.3"));
        let mut first = String::new();
        series.render(&mut first);
        let answered = |text: &str, peer: &str| {
            value(text, &format!("callflow_sip_calls_total{{peer=\"{peer}\",outcome=\"answered\"}}"))
        };
        // One label: the busiest peer; the other in `other`.
        assert_eq!(answered(&first, "10.0.0.3"), 2);
        assert_eq!(answered(&first, "other"), 1);
        assert!(!first.contains("peer=\"10.0.0.2\""));
        series.add(&call("10.0.0.2"));
        series.add(&call("10.0.0.2"));
        series.add(&call("10.0.0.2"));
        let mut second = String::new();
        series.render(&mut second);
        assert_eq!(answered(&second, "10.0.0.3"), 2, "the label stays");
        assert_eq!(answered(&second, "other"), 4, "other only grows");
        assert_eq!(value(&second, "callflow_sip_post_dial_delay_seconds_count{peer=\"other\"}"), 4);
        assert_eq!(value(&second, "callflow_sip_post_dial_delay_seconds_bucket{peer=\"10.0.0.3\",le=\"0.05\"}"), 2);
        assert_eq!(value(&second, "callflow_sip_responses_total{peer=\"other\",class=\"2xx\"}"), 4);
    }
}
