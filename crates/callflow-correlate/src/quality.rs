//! Voice quality: the ITU-T G.107 E-model (G.107.1 for wideband codecs), the codec table of ITU-T G.113, and the per-stream tracker that simulates a fixed jitter buffer, follows the loss pattern and fills the stream's timeline while packets stream by.
//!
//! The formulas and the table, with their sources, are in docs/quality.md. The pure
//! functions ([`r_factor`], [`delay_impairment`], [`effective_ie`], [`mos_from_r`],
//! [`burst_ratio`], [`codec_impairment`]) take figures and give figures. The
//! `QualityTracker` is fed every packet of a stream after its statistics, does a few
//! additions and comparisons per packet in its own fields (the current timeline interval
//! is one of them: a packet touches no other memory than the stream's) and moves an
//! interval to the timeline's vector only when the next one starts; `QualityTracker::quality` turns what it gathered into the output's
//! [`Quality`] when the stream is closed.

use callflow_decode::Timestamp;
use callflow_model::{Quality, QualityMethod, TimelineInterval};
use std::time::Duration;

/// Most timeline intervals kept per stream (24 hours of 5 s intervals); later packets are
/// counted in the last one.
const MAX_INTERVALS: usize = 17_280;

/// A jump of the transit time larger than this (ms) is a discontinuity of the RTP clock
/// (a sender restarting its timestamps without a marker bit), not jitter: the playout
/// reference starts again there.
const DISCONTINUITY_MS: f64 = 10_000.0;

/// How voice quality is estimated and when a stream or session has a problem. The
/// defaults are those of `[quality]` in config.example.toml.
#[derive(Clone, Debug, PartialEq)]
pub struct QualityOptions {
    /// The simulated fixed jitter buffer: a packet arriving more than this after the
    /// fastest delivery of its talkspurt is too late to be played and counts as lost.
    pub jitter_buffer: Duration,
    /// The length of a timeline interval.
    pub interval: Duration,
    /// The one-way network delay assumed when RTCP gives no round-trip time.
    pub default_network_delay: Duration,
    /// A stream whose RFC 3550 mean jitter exceeds this (ms) has `high_jitter`.
    pub max_jitter_ms: f64,
    /// A stream whose effective loss (lost and late) exceeds this (percent) has `high_loss`.
    pub max_loss_pct: f64,
    /// A stream whose MOS is below this has `low_mos`.
    pub min_mos: f64,
    /// A call whose far end answered (first 18x, else the final response) later than this
    /// after the INVITE has `late_answer`.
    pub late_answer: Duration,
    /// RTP more than this after the BYE is `rtp_after_bye`.
    pub rtp_after_bye: Duration,
    /// Capture loss: the smallest number of unrelated streams that must lose packets
    /// within the same window for the capture to be blamed.
    pub capture_loss_streams: usize,
    /// Capture loss: the width of the window in which those gaps must fall.
    pub capture_loss_window: Duration,
}

impl Default for QualityOptions {
    fn default() -> Self {
        QualityOptions {
            jitter_buffer: Duration::from_millis(60),
            interval: Duration::from_secs(5),
            default_network_delay: Duration::from_millis(20),
            max_jitter_ms: 30.0,
            max_loss_pct: 5.0,
            min_mos: 3.6,
            late_answer: Duration::from_secs(10),
            rtp_after_bye: Duration::from_secs(2),
            capture_loss_streams: 3,
            capture_loss_window: Duration::from_millis(20),
        }
    }
}

/// A codec's impairment figures from ITU-T G.113 (see docs/quality.md for each source).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct CodecImpairment {
    /// Equipment impairment factor Ie (Ie,WB on the wideband scale).
    pub ie: f64,
    /// Packet-loss robustness factor Bpl (random loss).
    pub bpl: f64,
    /// Scored on the G.107.1 wideband scale (R up to 129).
    pub wideband: bool,
}

/// The G.113 figures of the codec an SDP (or the static payload table) named, `None` for
/// a codec the table does not hold (Opus, video, telephone events...). G.711 is taken
/// with packet-loss concealment (G.711 Appendix I), as today's endpoints all conceal.
pub fn codec_impairment(codec: &str) -> Option<CodecImpairment> {
    let nb = |ie, bpl| Some(CodecImpairment { ie, bpl, wideband: false });
    let wb = |ie, bpl| Some(CodecImpairment { ie, bpl, wideband: true });
    match codec.to_ascii_uppercase().as_str() {
        "PCMU" | "PCMA" | "G711" => nb(0.0, 25.1),
        "G729" | "G729A" | "G729AB" => nb(11.0, 19.0),
        "G723" | "G7231" => nb(15.0, 16.1),
        "GSM" => nb(20.0, 10.0),
        "GSM-EFR" => nb(5.0, 10.0),
        // AMR at its highest mode (12.2 kbit/s, the GSM-EFR codec); the mode of each frame
        // is not read.
        "AMR" => nb(5.0, 10.0),
        "G722" => wb(13.0, 10.0),
        "AMR-WB" | "G7222" => wb(11.0, 10.0),
        _ => None,
    }
}

/// G.107 default values (Table 3/G.107) used for everything the capture cannot tell.
mod defaults {
    pub const SLR: f64 = 8.0;
    pub const RLR: f64 = 2.0;
    pub const STMR: f64 = 15.0;
    pub const LSTR: f64 = 18.0;
    pub const DS: f64 = 3.0;
    pub const TELR: f64 = 65.0;
    pub const WEPL: f64 = 110.0;
    pub const QDU: f64 = 1.0;
    pub const NC: f64 = -70.0;
    pub const NFOR: f64 = -64.0;
    pub const PS: f64 = 35.0;
    pub const PR: f64 = 35.0;
}

fn log10(x: f64) -> f64 {
    x.log10()
}

/// The basic signal-to-noise ratio Ro and the total noise No, with G.107's defaults.
fn ro_and_no() -> (f64, f64) {
    use defaults::*;
    let olr = SLR + RLR;
    let nos = PS - SLR - DS - 100.0 + 0.004 * (PS - olr - DS - 14.0).powi(2);
    let pre = PR + 10.0 * log10(1.0 + 10f64.powf((10.0 - LSTR) / 10.0));
    let nor = RLR - 121.0 + pre + 0.008 * (pre - 35.0).powi(2);
    let nfo = NFOR + RLR;
    let no =
        10.0 * log10(10f64.powf(NC / 10.0) + 10f64.powf(nos / 10.0) + 10f64.powf(nor / 10.0) + 10f64.powf(nfo / 10.0));
    (15.0 - 1.5 * (SLR + no), no)
}

/// The simultaneous impairment factor Is with G.107's defaults and one-way delay `t` (ms),
/// which enters through the talker echo in STMRo.
fn simultaneous_impairment(ro: f64, no: f64, t: f64) -> f64 {
    use defaults::*;
    let olr = SLR + RLR;
    let xolr = olr + 0.2 * (64.0 + no - RLR);
    let iolr = 20.0 * ((1.0 + (xolr / 8.0).powi(8)).powf(1.0 / 8.0) - xolr / 8.0);
    let stmro = -10.0 * log10(10f64.powf(-STMR / 10.0) + (-t / 4.0).exp() * 10f64.powf(-TELR / 10.0));
    let ist = 12.0 * (1.0 + ((stmro - 13.0) / 6.0).powi(8)).powf(1.0 / 8.0)
        - 28.0 * (1.0 + ((stmro + 1.0) / 19.4).powi(35)).powf(1.0 / 35.0)
        - 13.0 * (1.0 + ((stmro - 3.0) / 33.0).powi(13)).powf(1.0 / 13.0)
        + 29.0;
    let q = 37.0 - 15.0 * log10(QDU);
    let g = 1.07 + 0.258 * q + 0.0602 * q * q;
    let y = (ro - 100.0) / 15.0 + 46.0 / 8.4 - g / 9.0;
    let z = 46.0 / 30.0 - g / 40.0;
    let iq = 15.0 * log10(1.0 + 10f64.powf(y) + 10f64.powf(z));
    iolr + ist + iq
}

/// The delay impairment Id = Idte + Idle + Idd of G.107 for a one-way mouth-to-ear delay of
/// `one_way_ms`, taking the echo path's delay T and the absolute delay Ta equal to it and
/// the round trip Tr twice it, every other parameter at its default (talker echo loudness
/// 65 dB: echo cancellers are assumed).
pub fn delay_impairment(one_way_ms: f64) -> f64 {
    use defaults::*;
    let t = one_way_ms.max(0.0);
    let (ro, no) = ro_and_no();
    let (ta, tr) = (t, 2.0 * t);
    // Talker echo.
    let terv = TELR - 40.0 * log10((1.0 + t / 10.0) / (1.0 + t / 150.0)) + 6.0 * (-0.3 * t * t).exp();
    let roe = -1.5 * (no - RLR);
    let re = 80.0 + 2.5 * (terv - 14.0);
    let idte = ((roe - re) / 2.0 + (((roe - re) * (roe - re)) / 4.0 + 100.0).sqrt() - 1.0) * (1.0 - (-t).exp());
    // Listener echo.
    let rle = 10.5 * (WEPL + 7.0) * (tr + 1.0).powf(-0.25);
    let idle = (ro - rle) / 2.0 + (((ro - rle) * (ro - rle)) / 4.0 + 169.0).sqrt();
    // Absolute delay (mT = 100 ms, sT = 1).
    let idd = if ta > 100.0 {
        let x = (ta / 100.0).log2();
        25.0 * ((1.0 + x.powi(6)).powf(1.0 / 6.0) - 3.0 * (1.0 + (x / 3.0).powi(6)).powf(1.0 / 6.0) + 2.0)
    } else {
        0.0
    };
    idte + idle + idd
}

/// The effective equipment impairment Ie,eff of G.107 (G.107.1 on the wideband scale,
/// where 129 replaces 95) for `ppl` percent of packets lost with burst ratio `burst_r`.
pub fn effective_ie(ie: f64, bpl: f64, ppl: f64, burst_r: f64, wideband: bool) -> f64 {
    let top = if wideband { 129.0 } else { 95.0 };
    let burst_r = burst_r.max(1.0);
    if ppl <= 0.0 {
        return ie;
    }
    ie + (top - ie) * ppl / (ppl / burst_r + bpl)
}

/// What the E-model is given.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct EModelInputs {
    /// The codec's figures.
    pub codec: CodecImpairment,
    /// Effective packet loss, percent.
    pub ppl: f64,
    /// Burst ratio of the loss.
    pub burst_r: f64,
    /// One-way mouth-to-ear delay, ms.
    pub delay_ms: f64,
}

/// The transmission rating R: `Ro - Is - Id - Ie,eff + A` with A = 0. On the wideband
/// scale (G.107.1) R0 - Is is 129 and Id is G.107's.
pub fn r_factor(inputs: &EModelInputs) -> f64 {
    let id = delay_impairment(inputs.delay_ms);
    let ie_eff = effective_ie(inputs.codec.ie, inputs.codec.bpl, inputs.ppl, inputs.burst_r, inputs.codec.wideband);
    let base = if inputs.codec.wideband {
        129.0
    } else {
        let (ro, no) = ro_and_no();
        ro - simultaneous_impairment(ro, no, inputs.delay_ms.max(0.0))
    };
    base - id - ie_eff
}

/// G.107's mapping of R to MOS (Annex B); a wideband R is brought to the narrowband scale
/// by dividing by 1.29 first (G.107.1), so MOS stays on the familiar 1-4.5 scale.
pub fn mos_from_r(r: f64, wideband: bool) -> f64 {
    let r = if wideband { r / 1.29 } else { r };
    if r <= 0.0 {
        1.0
    } else if r >= 100.0 {
        4.5
    } else {
        1.0 + 0.035 * r + r * (r - 60.0) * (100.0 - r) * 7e-6
    }
}

/// The burst ratio of a loss pattern by the two-state Markov model: with p the chance of
/// going from found to lost and q from lost to found, BurstR = 1 / (p + q), which is the
/// mean observed burst length `lost / bursts` times `1 - lost / total` (the mean length
/// random loss of the same rate would give is `1 / (1 - loss)`). 1 when nothing was lost;
/// never below 1 (loss sparser than random is scored as random).
pub fn burst_ratio(lost: u64, bursts: u64, total: u64) -> f64 {
    if lost == 0 || bursts == 0 || total == 0 {
        return 1.0;
    }
    let loss = lost as f64 / total as f64;
    (lost as f64 / bursts as f64 * (1.0 - loss)).max(1.0)
}

/// What the per-packet work needs of the [`QualityOptions`], worked out once per run rather
/// than once per packet (a `Duration` to milliseconds is a division).
#[derive(Clone, Copy, Debug)]
pub(crate) struct Tuning {
    /// The jitter buffer, ms.
    jitter_buffer_ms: f64,
    /// A timeline interval, ns (at least 1 ms).
    interval_ns: i64,
}

impl Tuning {
    pub fn of(opts: &QualityOptions) -> Tuning {
        Tuning {
            jitter_buffer_ms: opts.jitter_buffer.as_secs_f64() * 1000.0,
            interval_ns: i64::try_from(opts.interval.as_nanos()).unwrap_or(i64::MAX).max(1_000_000),
        }
    }
}

/// Per-stream state of the quality estimate, fed every packet after its statistics.
/// The fields a packet touches come first, in this order (`repr(C)`), so that its update
/// reads two or three cache lines of the stream, not five.
#[derive(Clone, Debug, Default)]
#[repr(C)]
pub(crate) struct QualityTracker {
    /// The first packet's arrival, ns, the origin of the transit times.
    origin_ns: i64,
    /// The fastest transit (arrival minus media time, ms) of the talkspurt; `None` before
    /// the first packet with a clock, and after a marker bit.
    min_transit: Option<f64>,
    played: u64,
    missing: u64,
    late: u64,
    /// Where the current interval starts and ends (ns): a packet inside it needs no division.
    interval_span: (i64, i64),
    /// The RTP clock rate last seen, and its tick in ms.
    tick: (u32, f64),
    /// The interval packets are counted in now, kept here rather than at the end of
    /// `timeline` so that each packet's update stays in the stream's cache lines (measured:
    /// the vector's last element was a cache miss per packet, a third of `on_rtp`'s time).
    current: Option<Interval>,
    /// The RTP timestamp the transit times are measured from.
    rtp_origin: u32,
    highest_seq: u16,
    started: bool,
    last_lost: bool,
    /// Runs of consecutive lost-or-late packets.
    bursts: u64,
    /// The index (capture time / interval) of the current timeline interval.
    interval_index: i64,
    /// The index of the first interval, which the others' `offset` counts from.
    first_index: i64,
    /// The timeline's finished intervals.
    timeline: Vec<Interval>,
}

/// A timeline interval as the tracker counts it: 24 bytes where the output's
/// [`TimelineInterval`] takes 40, since every open stream keeps a vector of them (measured:
/// 640 bytes a stream of a minute, the largest part of what the timeline added to memory).
/// Counts saturate rather than wrap: an interval cannot hold 2^32 packets at any real rate.
#[derive(Clone, Copy, Debug, Default)]
struct Interval {
    /// Intervals since the stream's first.
    offset: u32,
    packets: u32,
    lost: u32,
    late: u32,
    max_jitter_ms: f64,
}

impl QualityTracker {
    /// Accounts for one packet. `clock` is the clock the statistics used (None for
    /// telephone events and unknown payloads: lateness is then not judged); `jitter_ms` is
    /// the running RFC 3550 jitter after this packet. Returns the packets found missing
    /// just before this one (a gap it ends).
    // Called from one place, once per RTP packet: kept inline there with its two helpers
    // (out of line, as the compiler chose once the statistics code grew, they cost calls
    // and spills: 40 M instructions on 3 M packets).
    #[inline(always)]
    #[allow(clippy::too_many_arguments)]
    pub fn update(
        &mut self,
        arrival: Timestamp,
        seq: u16,
        rtp_ts: u32,
        clock: Option<u32>,
        marker: bool,
        jitter_ms: f64,
        tuning: &Tuning,
    ) -> u64 {
        let now_ns = arrival.as_nanos();
        if !self.started {
            self.started = true;
            self.highest_seq = seq;
            self.origin_ns = now_ns;
            self.rtp_origin = rtp_ts;
        }
        let late = self.is_late(now_ns, rtp_ts, clock, marker, tuning);
        let ahead = seq.wrapping_sub(self.highest_seq) as i16;
        let (mut gap, mut recovered) = (0u64, false);
        if ahead > 0 || self.played + self.late + self.missing == 0 {
            gap = u64::from((ahead.max(1) - 1) as u16);
            self.highest_seq = seq;
            if gap > 0 {
                self.missing += gap;
                if !self.last_lost {
                    self.bursts += 1;
                }
                self.last_lost = true;
            }
            if late {
                self.late += 1;
                if !self.last_lost {
                    self.bursts += 1;
                }
                self.last_lost = true;
            } else {
                self.played += 1;
                self.last_lost = false;
            }
        } else if ahead < 0 && self.missing > 0 {
            // A reordered packet fills a gap counted as lost: played if still in time.
            self.missing -= 1;
            recovered = true;
            if late {
                self.late += 1;
            } else {
                self.played += 1;
            }
        }
        // A duplicate (ahead == 0, or older with nothing missing) changes nothing.
        self.note_interval(now_ns, gap, recovered, late, jitter_ms, tuning);
        gap
    }

    /// Whether a packet misses its playout time in the simulated fixed jitter buffer.
    #[inline(always)]
    fn is_late(&mut self, now_ns: i64, rtp_ts: u32, clock: Option<u32>, marker: bool, tuning: &Tuning) -> bool {
        let Some(rate) = clock.filter(|&r| r >= 1000) else { return false };
        if self.tick.0 != rate {
            self.tick = (rate, 1000.0 / f64::from(rate));
        }
        let arrival_ms = now_ns.saturating_sub(self.origin_ns) as f64 * 1e-6;
        let media_ms = f64::from(rtp_ts.wrapping_sub(self.rtp_origin) as i32) * self.tick.1;
        let transit = arrival_ms - media_ms;
        match self.min_transit {
            Some(min) if !marker && (transit - min).abs() < DISCONTINUITY_MS => {
                if transit < min {
                    self.min_transit = Some(transit);
                    false
                } else {
                    transit - min > tuning.jitter_buffer_ms
                }
            }
            _ => {
                self.min_transit = Some(transit);
                false
            }
        }
    }

    #[inline(always)]
    fn note_interval(&mut self, now_ns: i64, gap: u64, recovered: bool, late: bool, jitter_ms: f64, tuning: &Tuning) {
        let (from, to) = self.interval_span;
        let inside = self.current.is_some() && now_ns >= from && now_ns < to;
        if !inside {
            let len = tuning.interval_ns;
            let index = now_ns.div_euclid(len);
            // A packet from before the current interval (reordered across its start) is
            // counted in it; so are all packets once the timeline is full, and those
            // whose interval is too far from the first to be numbered (a clock jump).
            let full = self.timeline.len() + 1 >= MAX_INTERVALS;
            let offset = if self.current.is_none() {
                Some(0)
            } else if index > self.interval_index && !full {
                u32::try_from(index.saturating_sub(self.first_index)).ok()
            } else {
                None
            };
            if let Some(offset) = offset {
                if self.current.is_none() {
                    self.first_index = index;
                }
                self.interval_index = index;
                let start = index.saturating_mul(len);
                self.interval_span = (start, start.saturating_add(len));
                let next = Interval { offset, ..Interval::default() };
                if let Some(done) = self.current.replace(next) {
                    self.timeline.push(done);
                }
            }
        }
        if let Some(i) = self.current.as_mut() {
            i.packets = i.packets.saturating_add(1);
            i.lost = i.lost.saturating_add(u32::try_from(gap).unwrap_or(u32::MAX));
            if recovered {
                i.lost = i.lost.saturating_sub(1);
            }
            i.late = i.late.saturating_add(u32::from(late));
            i.max_jitter_ms = i.max_jitter_ms.max(jitter_ms);
        }
    }

    /// Takes the timeline gathered so far, as the output's intervals (`tuning` must be
    /// the one the packets were counted with).
    pub fn take_timeline(&mut self, tuning: &Tuning) -> Vec<TimelineInterval> {
        let len = tuning.interval_ns;
        let done = std::mem::take(&mut self.timeline);
        let mut out = Vec::with_capacity(done.len() + usize::from(self.current.is_some()));
        out.extend(done.into_iter().chain(self.current.take()).map(|i| TimelineInterval {
            start: Timestamp::from_nanos(self.first_index.saturating_add(i64::from(i.offset)).saturating_mul(len)),
            packets: u64::from(i.packets),
            lost: u64::from(i.lost),
            late: u64::from(i.late),
            max_jitter_ms: i.max_jitter_ms,
        }));
        out
    }

    /// The E-model's verdict on the stream for `codec`, with a one-way network delay of
    /// `network_delay_ms` (half the RTCP round trip, or the default); `None` when the codec
    /// has no G.113 figures or no packet arrived.
    pub fn quality(&self, codec: &str, network_delay_ms: f64, opts: &QualityOptions) -> Option<Quality> {
        let figures = codec_impairment(codec)?;
        let lost = self.missing + self.late;
        let total = self.played + lost;
        if self.played == 0 {
            return None;
        }
        let pct = |n: u64| 100.0 * n as f64 / total as f64;
        let jitter_buffer_ms = opts.jitter_buffer.as_secs_f64() * 1000.0;
        let inputs = EModelInputs {
            codec: figures,
            ppl: pct(lost),
            burst_r: burst_ratio(lost, self.bursts, total),
            delay_ms: network_delay_ms + jitter_buffer_ms,
        };
        let r = r_factor(&inputs);
        Some(Quality {
            mos: round(mos_from_r(r, figures.wideband), 2),
            r_factor: round(r, 1),
            method: if figures.wideband { QualityMethod::EModelWideband } else { QualityMethod::EModel },
            codec_ie: figures.ie,
            bpl: figures.bpl,
            loss_pct: round(inputs.ppl, 2),
            late_pct: round(pct(self.late), 2),
            burst_ratio: round(inputs.burst_r, 2),
            delay_ms: round(inputs.delay_ms, 1),
            jitter_buffer_ms,
        })
    }
}

fn round(x: f64, digits: i32) -> f64 {
    let f = 10f64.powi(digits);
    (x * f).round() / f
}

#[cfg(test)]
mod tests {
    use super::*;

    fn close(got: f64, want: f64, tolerance: f64) {
        assert!((got - want).abs() <= tolerance, "got {got}, want {want} ± {tolerance}");
    }

    const G711: CodecImpairment = CodecImpairment { ie: 0.0, bpl: 25.1, wideband: false };

    fn r(codec: CodecImpairment, ppl: f64, burst_r: f64, delay_ms: f64) -> f64 {
        r_factor(&EModelInputs { codec, ppl, burst_r, delay_ms })
    }

    #[test]
    fn default_values_give_g107s_reference_rating() {
        // G.107 section 7.1 / Table 3: with every parameter at its default, R = 93.2
        // (93.193...), which maps to MOS 4.41.
        let r = r(CodecImpairment { ie: 0.0, bpl: 1.0, wideband: false }, 0.0, 1.0, 0.0);
        close(r, 93.2, 0.05);
        close(mos_from_r(r, false), 4.41, 0.005);
    }

    #[test]
    fn mos_mapping_matches_annex_b() {
        // Annex B/G.107: R 50 -> 2.58, 70 -> 3.60, 80 -> 4.02, 90 -> 4.34 (rounded).
        for (r, mos) in [(50.0, 2.58), (70.0, 3.60), (80.0, 4.02), (90.0, 4.34), (-3.0, 1.0), (100.0, 4.5)] {
            close(mos_from_r(r, false), mos, 0.006);
        }
        // The wideband scale: R_WB 129 is R 100 on the narrowband one.
        close(mos_from_r(129.0, true), 4.5, 1e-9);
    }

    #[test]
    fn effective_ie_follows_the_formula() {
        // G.729A, 2 % random loss: 11 + (95 - 11) * 2 / (2 + 19) = 19.0.
        close(effective_ie(11.0, 19.0, 2.0, 1.0, false), 19.0, 1e-9);
        // G.711 with PLC, 10 % random loss: 95 * 10 / (10 + 25.1) = 27.07.
        close(effective_ie(0.0, 25.1, 10.0, 1.0, false), 27.07, 0.005);
        // Bursts hurt: BurstR 2 gives 95 * 10 / (5 + 25.1) = 31.56.
        close(effective_ie(0.0, 25.1, 10.0, 2.0, false), 31.56, 0.005);
        // No loss: Ie itself.
        close(effective_ie(13.0, 10.0, 0.0, 1.0, true), 13.0, 1e-9);
    }

    #[test]
    fn delay_impairment_grows_past_the_g114_knee() {
        // Below 100 ms only the (small) talker-echo term remains with echo cancellers.
        assert!(delay_impairment(80.0) < 2.5, "{}", delay_impairment(80.0));
        // G.107's Idd at Ta = 200 ms: X = 1, 25 * (2^(1/6) - 3 (1 + 3^-6)^(1/6) + 2) = 3.04,
        // plus the echo terms.
        let idd_200 = 25.0 * (2f64.powf(1.0 / 6.0) - 3.0 * (1.0 + 3f64.powi(-6)).powf(1.0 / 6.0) + 2.0);
        close(idd_200, 3.04, 0.01);
        assert!(delay_impairment(200.0) > idd_200 && delay_impairment(400.0) > delay_impairment(200.0) + 10.0);
    }

    #[test]
    fn burst_ratio_from_the_loss_pattern() {
        // 100 packets, 10 lost one at a time: mean burst 1 * 0.9 -> scored as random.
        close(burst_ratio(10, 10, 100), 1.0, 1e-9);
        // The same 10 lost in two runs of 5: 5 * 0.9 = 4.5.
        close(burst_ratio(10, 2, 100), 4.5, 1e-9);
        close(burst_ratio(0, 0, 100), 1.0, 1e-9);
    }

    #[test]
    fn issue_15_targets() {
        // G.711, 10 % random loss, 80 ms one way: well under 3.6.
        let lossy = mos_from_r(r(G711, 10.0, 1.0, 80.0), false);
        assert!(lossy <= 3.6, "{lossy}");
        // Loss-free: at least 4.3.
        let clean = mos_from_r(r(G711, 0.0, 1.0, 80.0), false);
        assert!(clean >= 4.3, "{clean}");
        // Bursty loss scores below the same loss spread out.
        assert!(r(G711, 10.0, 4.5, 80.0) < r(G711, 10.0, 1.0, 80.0));
    }

    #[test]
    fn worked_example_of_the_docs() {
        // docs/quality.md, "Checking a score by hand".
        let r = r(G711, 10.0, 1.0, 80.0);
        let (ro, no) = ro_and_no();
        close(ro - simultaneous_impairment(ro, no, 80.0), 93.36, 0.01);
        close(delay_impairment(80.0), 2.27, 0.01);
        close(r, 64.02, 0.01);
        close(mos_from_r(r, false), 3.31, 0.005);
    }

    fn at(ms: i64) -> Timestamp {
        Timestamp::from_nanos(ms * 1_000_000)
    }

    /// Feeds `(arrival ms, seq)` packets of a 20 ms, 8 kHz stream and returns (played, missing, late, bursts).
    fn track(packets: &[(i64, u16)]) -> QualityTracker {
        let opts = QualityOptions::default();
        let mut t = QualityTracker::default();
        for &(ms, seq) in packets {
            t.update(at(ms), seq, u32::from(seq) * 160, Some(8000), false, 0.0, &Tuning::of(&opts));
        }
        t
    }

    #[test]
    fn tracker_counts_gaps_late_packets_and_bursts() {
        // 1..=10 on time except 4 and 5 missing and 8 arriving 100 ms late (> 60 ms buffer).
        let mut packets: Vec<(i64, u16)> =
            (1..=10).filter(|s| ![4, 5].contains(s)).map(|s| (i64::from(s) * 20, s)).collect();
        packets.iter_mut().filter(|p| p.1 == 8).for_each(|p| p.0 += 100);
        packets.sort();
        let t = track(&packets);
        // 8 arrives after 9 and 10: a reordered packet filling a gap, but late.
        assert_eq!((t.played, t.missing, t.late), (7, 2, 1));
        assert_eq!(
            t.clone().take_timeline(&Tuning::of(&QualityOptions::default())).iter().map(|i| i.packets).sum::<u64>(),
            8
        );
        // A packet 30 ms late is within the buffer.
        let t = track(&[(0, 1), (20, 2), (70, 3), (60, 4)]);
        assert_eq!((t.played, t.missing, t.late), (4, 0, 0));
    }

    #[test]
    fn timeline_intervals_are_aligned_and_count_their_packets() {
        let packets: Vec<(i64, u16)> = (0..600u16).filter(|s| s % 100 != 50).map(|s| (i64::from(s) * 20, s)).collect();
        let mut t = track(&packets);
        let got: Vec<(i64, u64, u64)> = t
            .take_timeline(&Tuning::of(&QualityOptions::default()))
            .iter()
            .map(|i| (i.start.as_nanos() / 1_000_000, i.packets, i.lost))
            .collect();
        // 12 s of packets, one lost in each 2 s (counted when the next arrives): intervals
        // start at 0, 5 and 10 s.
        assert_eq!(got, vec![(0, 248, 2), (5000, 247, 3), (10_000, 99, 1)]);
    }

    #[test]
    fn a_clock_jump_past_numbered_intervals_is_counted_in_the_last_interval() {
        // 1 ms intervals, then a packet 60 days on: 5.2e9 intervals, more than the
        // tracker's offsets count; it must not be given a start it does not have.
        let opts = QualityOptions { interval: Duration::from_millis(1), ..QualityOptions::default() };
        let tuning = Tuning::of(&opts);
        let mut t = QualityTracker::default();
        let day_ms = 86_400_000;
        for (ms, seq) in [(0, 1), (2, 2), (60 * day_ms, 3)] {
            t.update(at(ms), seq, u32::from(seq) * 160, Some(8000), false, 0.0, &tuning);
        }
        let got: Vec<(i64, u64)> =
            t.take_timeline(&tuning).iter().map(|i| (i.start.as_nanos() / 1_000_000, i.packets)).collect();
        assert_eq!(got, vec![(0, 1), (2, 2)]);
    }
}
