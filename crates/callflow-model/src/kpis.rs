//! Operator statistics of a capture's SIP traffic: RFC 6076's metrics, ASR, NER, ACD and post-dial delay, each with its counts (docs/kpis.md).

use crate::Timestamp;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// The document's `kpis`: the whole capture's figures and the same figures per peer, per
/// callee domain and per time bucket.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Kpis {
    /// The length of a time bucket, in seconds (60 unless configured).
    pub bucket_secs: u64,
    /// The whole capture.
    pub total: KpiSet,
    /// Per peer (trunk name, or the far signalling address), most attempts first.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub by_peer: Vec<KpiRow>,
    /// Per callee domain (the host of the To URI), most attempts first.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub by_domain: Vec<KpiRow>,
    /// Per time bucket (by the time of the call's INVITE or the registration's REGISTER), in time order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub by_bucket: Vec<KpiRow>,
}

/// The figures of one group: what it is (the dimensions it was grouped by) and its [`KpiSet`].
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct KpiRow {
    /// The peer, when grouped by peer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub peer: Option<String>,
    /// The caller's domain (host of the From URI), when grouped by it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub caller_domain: Option<String>,
    /// The callee's domain (host of the To URI), when grouped by it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub callee_domain: Option<String>,
    /// The start of the time bucket, when grouped by time.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bucket: Option<Timestamp>,
    /// The figures.
    pub kpis: KpiSet,
}

/// Every figure of one group of calls and registrations.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct KpiSet {
    /// Call attempts (INVITE dialogs whose INVITE was seen and which have an outcome).
    pub attempts: u64,
    /// The calls by outcome, each with the rule that decided it.
    pub outcomes: Vec<OutcomeCount>,
    /// Answer-seizure ratio (ITU-T E.411): answered / attempts.
    pub asr: Ratio,
    /// Network effectiveness ratio (ITU-T E.411, E.425): answered or ended by the user
    /// (busy, no answer, declined, abandoned while ringing) / attempts.
    pub ner: Ratio,
    /// RFC 6076 section 4.6, session establishment ratio: answered / (attempts - redirected).
    pub ser: Ratio,
    /// RFC 6076 section 4.7, session establishment effectiveness ratio: answered or
    /// 480/486/600/603 / (attempts - redirected).
    pub seer: Ratio,
    /// RFC 6076 section 4.8, ineffective session attempts: 408/500/503/504 or no answer at
    /// all / attempts.
    pub isa: Ratio,
    /// RFC 6076 section 4.9, session completion ratio: answered and ended by a BYE that
    /// was answered 2xx / attempts.
    pub scr: Ratio,
    /// RFC 6076 section 4.2, ineffective registration attempts: registrations that failed
    /// (a final failure other than a challenge, or no answer) / registrations.
    pub ira: Ratio,
    /// Average call duration (ITU-T E.411 ACD): the mean of RFC 6076 section 4.5.1's
    /// session duration (2xx to BYE) over the answered calls that ended with a BYE.
    pub acd_ms: Delay,
    /// Post-dial delay: INVITE to the first 18x.
    pub pdd_ms: Delay,
    /// Setup time: INVITE to the final answer (through a 401/407 challenge).
    pub setup_ms: Delay,
    /// RFC 6076 section 4.3.1, successful session request delay: INVITE to the first 18x
    /// or 2xx.
    pub srd_ok_ms: Delay,
    /// RFC 6076 section 4.3.2, failed session request delay: INVITE to the final failure
    /// (4xx-6xx other than a challenge), for calls that got no 18x or 2xx before it.
    pub srd_failed_ms: Delay,
    /// RFC 6076 section 4.4, session disconnect delay: BYE to its final answer.
    pub sdd_ms: Delay,
    /// RFC 6076 section 4.1, registration request delay: the first REGISTER to the 2xx
    /// that ended the registration (through a challenge).
    pub rrd_ms: Delay,
    /// Hops per request (draft-ietf-pmol-sip-perf-metrics, left out of the RFC): the Via
    /// headers of each INVITE as captured, one per hop it has passed.
    pub hops: Delay,
    /// Registrations (a REGISTER and, through a challenge, its retry).
    pub registrations: u64,
    /// SIP responses seen, retransmissions included (as tshark's `sip,stat` counts them).
    pub responses: ResponseCounts,
}

/// How many calls had one outcome, and the rule that gives it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct OutcomeCount {
    /// The outcome (`answered`, `busy`, ...).
    pub outcome: String,
    /// Calls with it.
    pub count: u64,
    /// What classifies a call so.
    pub rule: String,
}

/// A ratio with its counts, so it can be checked.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Ratio {
    /// `numerator / denominator` in percent, rounded to 0.01; absent when the denominator is 0.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub percent: Option<f64>,
    /// What is counted.
    pub numerator: u64,
    /// Out of how many.
    pub denominator: u64,
}

/// A delay's (or duration's) distribution over a group: how many, their mean and percentiles.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Delay {
    /// How many values.
    pub count: u64,
    /// The sum of the values (to check the mean).
    pub sum: f64,
    /// The mean (sum / count), rounded to 0.001; absent with no value.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mean: Option<f64>,
    /// The median: nearest rank over the values rounded to whole units.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub p50: Option<f64>,
    /// The 90th percentile, likewise.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub p90: Option<f64>,
    /// The 99th percentile, likewise.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub p99: Option<f64>,
    /// The largest value.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max: Option<f64>,
}

/// SIP responses counted by class and by code.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ResponseCounts {
    /// Every response.
    pub total: u64,
    /// The retransmitted ones among them.
    pub retransmitted: u64,
    /// By class: `1xx` to `6xx`.
    pub by_class: BTreeMap<String, u64>,
    /// By code: `200`, `486`...
    pub by_code: BTreeMap<String, u64>,
}

/// One call as the statistics classified it: which session, where it counts, its outcome
/// and the rule that gave it (`callflow-cli stats --calls`, the API's `calls=true`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct KpiCall {
    /// The session's `id`.
    pub session: String,
    /// Its Call-ID.
    pub call_id: String,
    /// When its INVITE was sent.
    pub start: Timestamp,
    /// Its peer.
    pub peer: String,
    /// Its outcome (`answered`, `busy`...).
    pub outcome: String,
    /// The final answer that decided it, if one did.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub code: Option<u16>,
    /// The rule that gave the outcome.
    pub rule: String,
}
