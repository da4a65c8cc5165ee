//! One generated call: its SIP dialog over UDP or TCP, RTP both ways and RTCP sender reports, produced lazily in time order.
//!
//! The signalling (a dozen frames at most) is built when the call starts; the media is made
//! one packet at a time, so a call in progress holds a few kilobytes whatever its length.

use super::pcap;
use super::rng::Rng;
use super::sip::{self, Dialog, Party, Step};
use super::tcp;
use super::{Hangup, LegRule, Outcome, Side};
use std::collections::VecDeque;
use std::net::{Ipv4Addr, SocketAddrV4};

const PTIME_US: u64 = 20_000;
const SAMPLES_PER_PACKET: u32 = 160;
const RTCP_INTERVAL_US: u64 = 5_000_000;
const SIP_PORT: u16 = 5060;
/// Seconds from 1900 (NTP) to 1970 (Unix).
const NTP_UNIX_OFFSET: u64 = 2_208_988_800;
/// The most calls [`addresses`] can give distinct addresses to.
pub const MAX_CALLS: u64 = 64_000 * 127;

/// What the run decided for one call before it starts.
#[derive(Clone, Debug)]
pub struct CallPlan {
    pub index: u64,
    /// Microseconds since the Unix epoch of the call's first frame.
    pub start_us: u64,
    pub outcome: Outcome,
    pub tcp: bool,
    pub vlan: bool,
    /// The number in the caller's and callee's user names (`alice3`, `bob3`): the call's
    /// own, or its A leg's for a B leg.
    pub users: u64,
    /// The Call-ID, when planned (the legs of a B2BUA call); else drawn by the call.
    pub call_id: Option<String>,
    /// Headers added to every message of the call.
    pub headers: Vec<String>,
    /// For a B leg: the A leg's Call-ID and what ties the two.
    pub leg_of: Option<(String, LegRule)>,
}

impl CallPlan {
    pub fn new(index: u64, start_us: u64, outcome: Outcome, tcp: bool, vlan: bool) -> CallPlan {
        CallPlan { index, start_us, outcome, tcp, vlan, users: index, call_id: None, headers: Vec::new(), leg_of: None }
    }
}

/// The options of the run that shape every call.
#[derive(Clone, Debug)]
pub struct Params {
    pub seed: u64,
    pub mean_duration_s: f64,
    pub loss: f64,
    pub jitter_us: u64,
    pub hangup: Hangup,
}

/// What a receiver of one RTP stream has seen, in extended sequence numbers. The truth's
/// `expected` and `lost` come from it as tshark computes them: a stream that lost its first
/// or last packets simply starts or ends later, it does not count them as lost.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SeqCount {
    pub received: u64,
    first: u64,
    highest: u64,
}

impl SeqCount {
    pub fn record(&mut self, extended_seq: u64) {
        if self.received == 0 {
            self.first = extended_seq;
        }
        self.highest = self.highest.max(extended_seq);
        self.received += 1;
    }

    pub fn expected(&self) -> u64 {
        if self.received == 0 {
            0
        } else {
            self.highest - self.first + 1
        }
    }

    pub fn lost(&self) -> i64 {
        self.expected() as i64 - self.received as i64
    }
}

/// One direction of PCMU audio, with the network's loss and jitter applied.
struct RtpStream {
    src: SocketAddrV4,
    dst: SocketAddrV4,
    ssrc: u32,
    seq0: u16,
    ts0: u32,
    start_us: u64,
    count: u64,
    next_k: u64,
    last_t: u64,
    /// Time and number of the next packet that reaches the capture point.
    pending: Option<(u64, u64)>,
    rng: Rng,
    loss: f64,
    jitter_us: u64,
    ip_id: u16,
    seen: SeqCount,
    /// RFC 3550 interarrival jitter, in timestamp units, as the receiver would estimate it.
    jitter: f64,
    last_transit: Option<f64>,
}

impl RtpStream {
    /// Moves to the next packet that is not dropped. Jitter displaces each send time but a
    /// packet never overtakes the one before it, so the capture sees no reordering.
    fn advance(&mut self) {
        self.pending = None;
        while self.next_k < self.count {
            let k = self.next_k;
            self.next_k += 1;
            let nominal = self.start_us + k * PTIME_US;
            let displaced = if self.jitter_us == 0 {
                nominal
            } else {
                (nominal + self.rng.range(0, 2 * self.jitter_us)).saturating_sub(self.jitter_us)
            };
            let t = if k == 0 { displaced } else { displaced.max(self.last_t + 1) };
            self.last_t = t;
            if self.loss > 0.0 && self.rng.chance(self.loss) {
                continue;
            }
            self.pending = Some((t, k));
            return;
        }
    }

    fn emit(&mut self, buf: &mut Vec<u8>, scratch: &mut Vec<u8>, vlan: Option<u16>) {
        let Some((t, k)) = self.pending else { return };
        let seq = self.seq0.wrapping_add(k as u16);
        let samples = (k as u32).wrapping_mul(SAMPLES_PER_PACKET);
        scratch.clear();
        scratch.push(0x80);
        // The marker bit flags the first packet of the talk spurt; payload type 0 is PCMU.
        scratch.push(if k == 0 { 0x80 } else { 0x00 });
        scratch.extend_from_slice(&seq.to_be_bytes());
        scratch.extend_from_slice(&self.ts0.wrapping_add(samples).to_be_bytes());
        scratch.extend_from_slice(&self.ssrc.to_be_bytes());
        // 0xFF is silence in mu-law.
        scratch.resize(12 + SAMPLES_PER_PACKET as usize, 0xFF);
        pcap::udp_frame(buf, vlan, self.src, self.dst, self.ip_id, scratch);
        self.ip_id = self.ip_id.wrapping_add(1);

        self.seen.record(u64::from(self.seq0) + k);
        let transit = t as f64 * 0.008 - f64::from(samples);
        if let Some(prev) = self.last_transit {
            self.jitter += ((transit - prev).abs() - self.jitter) / 16.0;
        }
        self.last_transit = Some(transit);
        self.advance();
    }

    /// Packets the sender has sent by `t`, dropped ones included: the loss is in the network.
    fn sent_by(&self, t: u64) -> u64 {
        if t < self.start_us {
            0
        } else {
            ((t - self.start_us) / PTIME_US + 1).min(self.count)
        }
    }
}

/// One side's RTCP: a sender report every 5 s with a report block on the stream it receives.
struct RtcpSender {
    src: SocketAddrV4,
    dst: SocketAddrV4,
    next_t: Option<u64>,
    end_us: u64,
    cname: String,
    ip_id: u16,
    /// When the last SR from the peer arrived and its middle 32 NTP bits (for LSR/DLSR).
    last_sr: Option<(u64, u32)>,
    /// Expected and received at the previous report, for the fraction lost.
    prior: (u64, u64),
}

#[derive(Clone, Copy)]
enum Source {
    Signaling,
    Rtp(usize),
    Rtcp(usize),
}

/// A call in progress. `rtp[s]` and `rtcp[s]` are sent by side `s` (see [`Side::index`]).
pub struct Call {
    index: u64,
    call_id: String,
    leg_of: Option<(String, LegRule)>,
    outcome: Outcome,
    hangup: Option<Side>,
    sip_messages: usize,
    /// When each SIP message was sent (µs since the epoch), by step, in order.
    timeline: Vec<(Step, u64)>,
    tcp: bool,
    vlan: Option<u16>,
    signaling: VecDeque<(u64, Vec<u8>)>,
    rtp: Vec<RtpStream>,
    rtcp: Vec<RtcpSender>,
    scratch: Vec<u8>,
}

/// Caller 10.1.x.y and callee 10.2.x.y for the first 64,000 calls, then 10.3/10.4, and so on.
pub fn addresses(index: u64) -> (Ipv4Addr, Ipv4Addr) {
    let (block, n) = (index / 64_000, index % 64_000);
    let (hi, lo) = ((n / 250) as u8, (n % 250 + 1) as u8);
    let net = (1 + 2 * block) as u8;
    (Ipv4Addr::new(10, net, hi, lo), Ipv4Addr::new(10, net + 1, hi, lo))
}

impl Call {
    pub fn new(plan: &CallPlan, params: &Params) -> Call {
        use Side::{Callee, Caller};
        let mut rng = Rng::derive(params.seed, plan.index + 1);
        let (caller_ip, callee_ip) = addresses(plan.index);
        let mut party = |user: String, ip: Ipv4Addr| Party {
            user,
            ip,
            tag: rng.hex(10),
            rtp_port: 10_000 + 2 * rng.below(25_001) as u16,
            sdp_session: rng.range(1_000_000, 999_999_999),
        };
        let parties =
            [party(format!("alice{}", plan.users), caller_ip), party(format!("bob{}", plan.users), callee_ip)];
        let drawn = format!("{}-{}@{}", rng.hex(16), plan.index, caller_ip);
        let call_id = plan.call_id.clone().unwrap_or(drawn);
        let hangup = match params.hangup {
            Hangup::Caller => Caller,
            Hangup::Callee => Callee,
            Hangup::Random if rng.chance(0.5) => Caller,
            Hangup::Random => Callee,
        };
        let dialog = Dialog { call_id, parties, tcp: plan.tcp, headers: plan.headers.clone() };
        let messages = sip::script(&dialog, plan.outcome, hangup, &mut rng);

        // One-way delay between the two ends, which paces requests and their answers.
        let delay = rng.range(2_000, 30_000);
        let mut t = if plan.tcp { plan.start_us + 2 * delay + 50 } else { plan.start_us };
        let mut times = Vec::with_capacity(messages.len());
        let mut media = None;
        for m in &messages {
            t = match m.step {
                Step::Invite => t,
                Step::Trying => t + delay + rng.range(1_000, 5_000),
                Step::Ringing => t + rng.range(20_000, 200_000),
                Step::Answer | Step::Busy => t + rng.range(1_000_000, 3_000_000),
                Step::Cancel => t + rng.range(1_000_000, 4_000_000),
                Step::Ack => t + delay,
                Step::CancelOk | Step::ByeOk => t + delay + rng.range(0, 2_000),
                Step::Terminated => t + rng.range(1_000, 3_000),
                Step::NoAnswer => t + rng.range(4_000_000, 8_000_000),
                Step::Failure => t + rng.range(10_000, 60_000),
                Step::Bye => {
                    // Media starts after the ACK (t) and the BYE comes after the last packet
                    // even when jitter delays it.
                    let first = t + PTIME_US + params.jitter_us;
                    let secs = params.mean_duration_s * (0.8 + 0.4 * rng.unit());
                    let count = ((secs * 50.0).round() as u64).max(10);
                    let starts = [first, first + rng.range(0, PTIME_US)];
                    media = Some((starts, count));
                    starts[1] + count * PTIME_US + params.jitter_us + rng.range(5_000, 30_000)
                }
            };
            times.push(t);
        }

        let vlan = plan.vlan.then(|| 100 + (plan.index % 3_000) as u16);
        let mut signaling = VecDeque::new();
        let mut buf = Vec::new();
        let sip_addr = |side: Side| SocketAddrV4::new(dialog.parties[side.index()].ip, SIP_PORT);
        let mut ip_id = [rng.next_u32() as u16, rng.next_u32() as u16];
        if plan.tcp {
            let ends = [SocketAddrV4::new(caller_ip, rng.range(32_768, 60_999) as u16), sip_addr(Callee)];
            let sends: Vec<tcp::Send> =
                messages.iter().zip(&times).map(|(m, &t)| tcp::Send { t, from: m.from, bytes: &m.text }).collect();
            let timing = tcp::Timing { open_at: plan.start_us, delay, close_at: t + rng.range(50_000, 200_000) };
            let isn = [rng.next_u32(), rng.next_u32()];
            for s in tcp::connection(&sends, isn, &timing, &tcp::Policy::default(), &mut rng) {
                let (me, peer) = (s.from.index(), s.from.peer().index());
                pcap::tcp_frame(&mut buf, vlan, ends[me], ends[peer], ip_id[me], s.header, &s.payload);
                ip_id[me] = ip_id[me].wrapping_add(1);
                signaling.push_back((s.t, buf.clone()));
            }
        } else {
            for (m, &t) in messages.iter().zip(&times) {
                let me = m.from.index();
                pcap::udp_frame(&mut buf, vlan, sip_addr(m.from), sip_addr(m.from.peer()), ip_id[me], &m.text);
                ip_id[me] = ip_id[me].wrapping_add(1);
                signaling.push_back((t, buf.clone()));
            }
        }

        let mut rtp = Vec::new();
        let mut rtcp = Vec::new();
        if let Some((starts, count)) = media {
            for side in [Caller, Callee] {
                let (me, peer) = (&dialog.parties[side.index()], &dialog.parties[side.peer().index()]);
                let start_us = starts[side.index()];
                let mut stream = RtpStream {
                    src: SocketAddrV4::new(me.ip, me.rtp_port),
                    dst: SocketAddrV4::new(peer.ip, peer.rtp_port),
                    ssrc: rng.next_u32(),
                    seq0: rng.below(65_536) as u16,
                    ts0: rng.next_u32(),
                    start_us,
                    count,
                    next_k: 0,
                    last_t: 0,
                    pending: None,
                    rng: Rng::new(rng.next_u64()),
                    loss: params.loss,
                    jitter_us: params.jitter_us,
                    ip_id: rng.next_u32() as u16,
                    seen: SeqCount::default(),
                    jitter: 0.0,
                    last_transit: None,
                };
                stream.advance();
                rtp.push(stream);
                // Slightly before each 5 s mark, so a stream of 5 s or more always has a report.
                let end_us = start_us + count * PTIME_US;
                let first = start_us + RTCP_INTERVAL_US - rng.range(1_000, 15_000);
                rtcp.push(RtcpSender {
                    src: SocketAddrV4::new(me.ip, me.rtp_port + 1),
                    dst: SocketAddrV4::new(peer.ip, peer.rtp_port + 1),
                    next_t: (first < end_us).then_some(first),
                    end_us,
                    cname: format!("{}@{}", me.user, me.ip),
                    ip_id: rng.next_u32() as u16,
                    last_sr: None,
                    prior: (0, 0),
                });
            }
        }

        Call {
            index: plan.index,
            call_id: dialog.call_id.clone(),
            leg_of: plan.leg_of.clone(),
            outcome: plan.outcome,
            hangup: (plan.outcome == Outcome::Completed).then_some(hangup),
            sip_messages: messages.len(),
            timeline: messages.iter().map(|m| m.step).zip(times.iter().copied()).collect(),
            tcp: plan.tcp,
            vlan,
            signaling,
            rtp,
            rtcp,
            scratch: Vec::with_capacity(256),
        }
    }

    pub fn index(&self) -> u64 {
        self.index
    }

    /// The earliest pending frame; ties go to signalling, then RTP, then RTCP.
    fn next(&self) -> Option<(u64, Source)> {
        let mut best: Option<(u64, Source)> = None;
        let mut consider = |t: u64, source| {
            if best.is_none_or(|(b, _)| t < b) {
                best = Some((t, source));
            }
        };
        if let Some((t, _)) = self.signaling.front() {
            consider(*t, Source::Signaling);
        }
        for (i, s) in self.rtp.iter().enumerate() {
            if let Some((t, _)) = s.pending {
                consider(t, Source::Rtp(i));
            }
        }
        for (i, r) in self.rtcp.iter().enumerate() {
            if let Some(t) = r.next_t {
                consider(t, Source::Rtcp(i));
            }
        }
        best
    }

    /// When the next frame is due, or `None` when the call is over.
    pub fn next_time(&self) -> Option<u64> {
        self.next().map(|(t, _)| t)
    }

    /// Puts the next frame in `buf` and returns its time.
    pub fn emit(&mut self, buf: &mut Vec<u8>) -> Option<u64> {
        let (t, source) = self.next()?;
        match source {
            Source::Signaling => {
                let (_, frame) = self.signaling.pop_front()?;
                *buf = frame;
            }
            Source::Rtp(i) => self.rtp[i].emit(buf, &mut self.scratch, self.vlan),
            Source::Rtcp(side) => self.emit_rtcp(side, t, buf),
        }
        Some(t)
    }

    /// A compound RTCP packet (SR with one report block, then SDES CNAME) from `side` at `t`.
    fn emit_rtcp(&mut self, side: usize, t: u64, buf: &mut Vec<u8>) {
        let peer = 1 - side;
        let (ntp_sec, ntp_frac) = ntp(t);
        let sender = &self.rtp[side];
        let sent = sender.sent_by(t);
        let rtp_ts = sender.ts0.wrapping_add(((t.saturating_sub(sender.start_us)) * 8 / 1_000) as u32);
        let ssrc = sender.ssrc;
        let received = &self.rtp[peer];
        let seen = received.seen;
        let (peer_ssrc, peer_seq0, peer_jitter) = (received.ssrc, received.seq0, received.jitter);

        let r = &mut self.rtcp[side];
        let (expected, got) = (seen.expected(), seen.received);
        let (expected_interval, got_interval) = (expected - r.prior.0, got - r.prior.1);
        let lost_interval = expected_interval as i64 - got_interval as i64;
        let fraction = if expected_interval == 0 || lost_interval <= 0 {
            0
        } else {
            ((lost_interval << 8) / expected_interval as i64) as u32
        };
        r.prior = (expected, got);
        let cumulative = (seen.lost().clamp(-0x80_0000, 0x7F_FFFF) as u32) & 0xFF_FFFF;
        let highest = if seen.received == 0 { u32::from(peer_seq0) } else { seen.highest as u32 };
        let (lsr, dlsr) = match r.last_sr {
            Some((at, middle)) => (middle, ((t - at) * 65_536 / 1_000_000) as u32),
            None => (0, 0),
        };

        let p = &mut self.scratch;
        p.clear();
        p.extend_from_slice(&[0x81, 200]);
        p.extend_from_slice(&12u16.to_be_bytes());
        for word in [ssrc, ntp_sec, ntp_frac, rtp_ts, sent as u32, (sent * u64::from(SAMPLES_PER_PACKET)) as u32] {
            p.extend_from_slice(&word.to_be_bytes());
        }
        for word in [peer_ssrc, fraction << 24 | cumulative, highest, peer_jitter as u32, lsr, dlsr] {
            p.extend_from_slice(&word.to_be_bytes());
        }
        // SDES: one chunk with the CNAME, ended by a null item and padded to 32 bits.
        let chunk = 4 + 2 + r.cname.len() + 1;
        let chunk = chunk.div_ceil(4) * 4;
        p.extend_from_slice(&[0x81, 202]);
        p.extend_from_slice(&((chunk / 4) as u16).to_be_bytes());
        p.extend_from_slice(&ssrc.to_be_bytes());
        p.extend_from_slice(&[1, r.cname.len() as u8]);
        p.extend_from_slice(r.cname.as_bytes());
        p.resize(52 + 4 + chunk, 0);
        pcap::udp_frame(buf, self.vlan, r.src, r.dst, r.ip_id, p);
        r.ip_id = r.ip_id.wrapping_add(1);
        let next = t + RTCP_INTERVAL_US;
        r.next_t = (next < r.end_us).then_some(next);
        // The peer quotes this report's time in its next one.
        self.rtcp[peer].last_sr = Some((t, (ntp_sec << 16) | (ntp_frac >> 16)));
    }

    /// The ground truth of this call, as one line of JSON.
    pub fn truth(&self) -> String {
        let streams: Vec<serde_json::Value> = self
            .rtp
            .iter()
            .filter(|s| s.seen.received > 0)
            .map(|s| {
                serde_json::json!({
                    "src": s.src.to_string(),
                    "dst": s.dst.to_string(),
                    "ssrc": s.ssrc,
                    "packets": s.seen.received,
                    "lost": s.seen.lost(),
                    "expected": s.seen.expected(),
                })
            })
            .collect();
        let mut truth = serde_json::json!({
            "call_id": self.call_id,
            "outcome": self.outcome.as_str(),
            "expected_state": self.outcome.expected_state(),
            "hangup_by": self.hangup.map(Side::as_str),
            "sip_messages": self.sip_messages,
            "transport": if self.tcp { "tcp" } else { "udp" },
            "vlan": self.vlan.is_some(),
            "streams": streams,
            "timeline_us": self.timeline.iter().map(|(s, t)| serde_json::json!([s.as_str(), t])).collect::<Vec<_>>(),
        });
        if let Some((a, rule)) = &self.leg_of {
            truth["leg_of"] = serde_json::json!(a);
            truth["leg_rule"] = serde_json::json!(rule.as_str());
        }
        truth.to_string()
    }
}

impl super::Emitter for Call {
    fn next_time(&self) -> Option<u64> {
        Call::next_time(self)
    }

    fn emit(&mut self, buf: &mut Vec<u8>) -> Option<u64> {
        Call::emit(self, buf)
    }
}

/// NTP seconds and fraction of a Unix time in microseconds.
fn ntp(t_us: u64) -> (u32, u32) {
    let secs = t_us / 1_000_000 + NTP_UNIX_OFFSET;
    let frac = ((t_us % 1_000_000) << 32) / 1_000_000;
    (secs as u32, frac as u32)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expected_and_lost_ignore_drops_at_the_ends() {
        // Stream of seq 65530..=65545 (extended), crossing the 16-bit wrap. The first two and
        // the last packet are dropped, and two in the middle.
        let mut count = SeqCount::default();
        let dropped = [65_530, 65_531, 65_536, 65_540, 65_545];
        for ext in (65_530u64..=65_545).filter(|s| !dropped.contains(s)) {
            count.record(ext);
        }
        assert_eq!(count.received, 11);
        assert_eq!(count.expected(), 65_544 - 65_532 + 1);
        assert_eq!(count.lost(), 2, "only the drops between the first and last packet written count");
        assert_eq!(SeqCount::default().expected(), 0);
        assert_eq!(SeqCount::default().lost(), 0);
    }

    fn plan(outcome: Outcome, tcp: bool) -> CallPlan {
        CallPlan::new(3, 1_700_000_000_000_000, outcome, tcp, true)
    }

    fn params(loss: f64) -> Params {
        Params { seed: 5, mean_duration_s: 6.0, loss, jitter_us: 3_000, hangup: Hangup::Random }
    }

    /// Every frame of a call: (time, frame).
    fn frames(call: &mut Call) -> Vec<(u64, Vec<u8>)> {
        let mut out = Vec::new();
        let mut buf = Vec::new();
        while let Some(t) = call.emit(&mut buf) {
            out.push((t, buf.clone()));
        }
        out
    }

    #[test]
    fn truth_agrees_with_the_rtp_frames_written() {
        let mut call = Call::new(&plan(Outcome::Completed, false), &params(0.2));
        let frames = frames(&mut call);
        assert!(frames.windows(2).all(|w| w[0].0 <= w[1].0), "frames in time order");
        let truth: serde_json::Value = serde_json::from_str(&call.truth()).unwrap();
        let streams = truth["streams"].as_array().unwrap();
        assert_eq!(streams.len(), 2);
        for stream in streams {
            let src: SocketAddrV4 = stream["src"].as_str().unwrap().parse().unwrap();
            // Read back the RTP sequence numbers of this stream (VLAN-tagged frames: UDP at 18+20).
            let seqs: Vec<u16> = frames
                .iter()
                .map(|(_, f)| f)
                .filter(|f| {
                    f.len() == 18 + 20 + 8 + 172
                        && f[30..34] == src.ip().octets()
                        && f[38..40] == src.port().to_be_bytes()
                })
                .map(|f| u16::from_be_bytes([f[48], f[49]]))
                .collect();
            let mut ext = Vec::new();
            for s in &seqs {
                let e = match ext.last() {
                    None => u64::from(*s),
                    Some(&prev) => prev + u64::from(s.wrapping_sub(prev as u16)),
                };
                ext.push(e);
            }
            let expected = ext.last().unwrap() - ext[0] + 1;
            assert_eq!(stream["packets"].as_u64().unwrap(), seqs.len() as u64);
            assert_eq!(stream["expected"].as_u64().unwrap(), expected);
            assert_eq!(stream["lost"].as_i64().unwrap(), expected as i64 - seqs.len() as i64);
            assert!(stream["lost"].as_i64().unwrap() > 0, "20 % loss loses something");
        }
        assert_eq!(truth["sip_messages"], 7);
        assert_eq!(truth["vlan"], true);
        assert_eq!(truth["expected_state"], "COMPLETED");
    }

    #[test]
    fn busy_tcp_call_has_no_media() {
        let mut call = Call::new(&plan(Outcome::Busy, true), &params(0.0));
        let frames = frames(&mut call);
        assert!(frames.iter().all(|(_, f)| f[18 + 9] == 6), "all TCP");
        let truth: serde_json::Value = serde_json::from_str(&call.truth()).unwrap();
        assert_eq!(truth["streams"].as_array().unwrap().len(), 0);
        assert_eq!(truth["hangup_by"], serde_json::Value::Null);
        assert_eq!(truth["transport"], "tcp");
        assert_eq!(truth["sip_messages"], 5);
    }

    #[test]
    fn same_plan_same_frames() {
        let a = frames(&mut Call::new(&plan(Outcome::Completed, true), &params(0.1)));
        let b = frames(&mut Call::new(&plan(Outcome::Completed, true), &params(0.1)));
        assert_eq!(a, b);
    }

    #[test]
    fn addresses_are_distinct_per_call() {
        assert_eq!(addresses(0), (Ipv4Addr::new(10, 1, 0, 1), Ipv4Addr::new(10, 2, 0, 1)));
        assert_eq!(addresses(250), (Ipv4Addr::new(10, 1, 1, 1), Ipv4Addr::new(10, 2, 1, 1)));
        assert_eq!(addresses(64_000).0, Ipv4Addr::new(10, 3, 0, 1));
        assert_eq!(addresses(MAX_CALLS - 1).1, Ipv4Addr::new(10, 254, 255, 250));
    }
}
