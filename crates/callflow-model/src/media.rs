//! RTP streams with their quality figures, RTCP reports and DTMF events.

use crate::Timestamp;
use serde::{Deserialize, Serialize};
use std::net::SocketAddr;

/// One RTP stream: one SSRC from one source address to one destination address.
///
/// The loss and jitter figures are computed as Wireshark's RTP stream analysis
/// computes them, so that `lost` here equals tshark's `-z rtp,streams` "Lost".
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct MediaStream {
    /// Sender address.
    pub src: SocketAddr,
    /// Receiver address.
    pub dst: SocketAddr,
    /// Synchronization source identifier.
    pub ssrc: u32,
    /// Payload type of the first packet.
    pub payload_type: u8,
    /// Codec name from the SDP rtpmap, or the static RFC 3551 name (e.g. `PCMU`).
    pub codec: String,
    /// Packets received.
    pub packets: u64,
    /// Packets expected from the sequence numbers (highest extended - first + 1).
    pub expected: u64,
    /// `expected - packets`; negative when duplicates outnumber losses.
    pub lost: i64,
    /// Packets whose sequence number was not the one expected next.
    pub sequence_errors: u64,
    /// Packets that repeated an already seen sequence number.
    pub duplicates: u64,
    /// Smallest arrival-time difference between consecutive packets, in ms.
    pub min_delta_ms: f64,
    /// Mean arrival-time difference between consecutive packets, in ms.
    pub mean_delta_ms: f64,
    /// Largest arrival-time difference between consecutive packets, in ms.
    pub max_delta_ms: f64,
    /// Mean RFC 3550 interarrival jitter, in ms.
    pub mean_jitter_ms: f64,
    /// Largest RFC 3550 interarrival jitter, in ms.
    pub max_jitter_ms: f64,
    /// Arrival time of the first packet.
    pub start: Timestamp,
    /// Arrival time of the last packet.
    pub end: Timestamp,
    /// True when no SDP in the capture announced the stream's destination (found by header heuristics).
    #[serde(default)]
    pub orphan: bool,
    /// RTCP reports sent by this SSRC or about it.
    #[serde(default)]
    pub rtcp: Vec<RtcpReport>,
    /// RFC 4733 telephone events (DTMF) carried in the stream.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub events: Vec<DtmfEvent>,
    /// The stream's voice quality by the E-model, with every input (absent when the codec
    /// or the stream gives nothing to score).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub quality: Option<Quality>,
    /// The stream interval by interval, for charts and for "when did it go bad".
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub timeline: Vec<TimelineInterval>,
    /// What is wrong with the stream (thresholds in the configuration).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub problems: Vec<Problem>,
    /// What the RTCP about this stream says (round trip, what the receiver reported, an
    /// RTCP-XR VoIP metrics block) beside what the capture shows; absent without RTCP.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rtcp_summary: Option<RtcpSummary>,
    /// When the payload type first changed to another codec mid-stream (comfort noise and
    /// telephone events aside); absent when it never did.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub payload_change: Option<Timestamp>,
    /// True when the capture itself dropped packets while this stream was running (gaps
    /// shared with unrelated streams at the same instants): its loss is not the network's.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub capture_loss: bool,
    /// The stream's source or destination is not what the call's SDP announced, while its
    /// other end is: media latched on to a NATed address (symmetric RTP), still the call's.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub nat_latched: bool,
    /// RTP payload bytes of the packets received: after the header (CSRCs, extension),
    /// without padding; for SRTP without the MKI and authentication tag of the suite (see
    /// `srtp`), the padding then being encrypted and counted.
    #[serde(default)]
    pub payload_bytes: u64,
    /// How the stream is protected, when its SDP made it SRTP; absent for RTP.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub srtp: Option<SrtpStream>,
}

/// An SRTP stream's protection, as its SDP negotiated it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SrtpStream {
    /// How the keys were exchanged.
    pub keying: SrtpKeying,
    /// The crypto suite the SDP agreed on (`AES_CM_128_HMAC_SHA1_80`, ...), or for
    /// DTLS-SRTP the one its DTLS 1.2 ServerHello chose; absent when neither says.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub suite: Option<String>,
    /// Bytes of authentication tag at the end of each packet, not counted as payload.
    pub tag_len: u8,
    /// Bytes of master key identifier before the tag, not counted as payload.
    #[serde(default)]
    pub mki_len: u8,
    /// True when the suite is not known (DTLS-SRTP without a readable ServerHello, a suite
    /// this build does not know) and the tag length is the 80 bits of
    /// `AES_CM_128_HMAC_SHA1_80`, which every DTLS-SRTP endpoint must support.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub tag_assumed: bool,
    /// The SRTCP packets this stream's SSRC sent, and what became of them (absent when
    /// it sent none).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub srtcp: Option<SrtcpCounts>,
}

/// What became of the SRTCP packets one SSRC sent. Only packets that authenticated give
/// reports (in the stream's `rtcp`, and its `rtcp_summary`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SrtcpCounts {
    /// SRTCP packets seen.
    pub packets: u64,
    /// Packets that authenticated with one of the call's SDES keys and were decrypted.
    pub decrypted: u64,
    /// Packets whose authentication tag matched none of the call's keys: a wrong key, or
    /// a damaged packet; never read.
    pub auth_failures: u64,
    /// Packets too short for the suite's index, MKI and tag.
    pub truncated: u64,
    /// Packets with no key to try: DTLS-SRTP, keys exchanged elsewhere, a suite not
    /// decrypted (F8, unknown).
    pub no_key: u64,
}

/// How an SRTP stream's keys were exchanged.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SrtpKeying {
    /// SDP security descriptions (`a=crypto`, RFC 4568): the keys are in the SDP.
    Sdes,
    /// DTLS-SRTP (`a=fingerprint`, RFC 5763): the keys come from a DTLS handshake.
    Dtls,
    /// A secure profile with neither (MIKEY, ZRTP, ...).
    Other,
}

impl MediaStream {
    /// Gives back the spare capacity of the stream's lists (see [`crate::Session::shrink_to_fit`]).
    pub fn shrink_to_fit(&mut self) {
        self.rtcp.shrink_to_fit();
        self.events.shrink_to_fit();
        self.timeline.shrink_to_fit();
        self.problems.shrink_to_fit();
    }
}

/// The RTCP about one stream, summarised beside what the capture shows of it.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct RtcpSummary {
    /// Reception report blocks about the stream.
    pub reports: u64,
    /// Mean round-trip time between the capture point and the stream's receiver, ms, from
    /// each receiver report's LSR/DLSR and the capture times of the sender report it
    /// echoes and of itself (RFC 3550 6.4.1); absent when no report echoed a captured SR.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rtt_ms: Option<f64>,
    /// The latest reported fraction lost, percent (since the report before it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reported_loss_pct: Option<f64>,
    /// The latest reported cumulative number of packets lost.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reported_lost: Option<i64>,
    /// The largest reported interarrival jitter, ms (needs the stream's clock rate).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reported_jitter_ms: Option<f64>,
    /// The stream's loss as the capture shows it, percent of expected (for comparison).
    pub captured_loss_pct: f64,
    /// The stream's largest RFC 3550 jitter as the capture shows it, ms (for comparison).
    pub captured_jitter_ms: f64,
    /// The latest RTCP-XR VoIP metrics block about the stream (RFC 3611 4.7).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub xr_voip: Option<XrVoipMetrics>,
}

/// An RTCP-XR VoIP Metrics Report Block (RFC 3611 section 4.7) in plain units; a field the
/// sender marked unavailable is absent.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct XrVoipMetrics {
    /// When the block was captured.
    pub ts: Timestamp,
    /// Packets lost in the network, percent.
    pub loss_pct: f64,
    /// Packets discarded by the jitter buffer, percent.
    pub discard_pct: f64,
    /// Share of packets lost or discarded within bursts, percent.
    pub burst_density_pct: f64,
    /// Share of packets lost or discarded within gaps, percent.
    pub gap_density_pct: f64,
    /// Mean burst length, ms.
    pub burst_duration_ms: u16,
    /// Mean gap length, ms.
    pub gap_duration_ms: u16,
    /// Round-trip delay, ms.
    pub round_trip_delay_ms: u16,
    /// The end system's own delay, ms.
    pub end_system_delay_ms: u16,
    /// R factor as the endpoint computed it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub r_factor: Option<u8>,
    /// MOS listening quality.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mos_lq: Option<f64>,
    /// MOS conversational quality.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mos_cq: Option<f64>,
    /// Nominal jitter buffer delay, ms.
    pub jb_nominal_ms: u16,
    /// Current maximum jitter buffer delay, ms.
    pub jb_maximum_ms: u16,
}

/// A stream's voice quality by the ITU-T G.107 E-model, with the inputs that made it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Quality {
    /// Mean opinion score (1.0-4.5; on the wideband scale for wideband codecs).
    pub mos: f64,
    /// The E-model's transmission rating R.
    pub r_factor: f64,
    /// How the figures were reached: `e-model g.107` or `e-model g.107.1`.
    pub method: QualityMethod,
    /// The codec's equipment impairment factor Ie (ITU-T G.113).
    pub codec_ie: f64,
    /// The codec's packet-loss robustness factor Bpl (ITU-T G.113).
    pub bpl: f64,
    /// Effective packet loss (lost plus late), percent.
    pub loss_pct: f64,
    /// Packets that arrived too late for the jitter buffer, percent.
    pub late_pct: f64,
    /// The burst ratio of the loss pattern (1 for random loss, above 1 for bursty loss).
    pub burst_ratio: f64,
    /// One-way delay used, in ms (from RTCP round-trip time when present).
    pub delay_ms: f64,
    /// The simulated jitter buffer, in ms.
    pub jitter_buffer_ms: f64,
}

/// How a [`Quality`] was reached.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[non_exhaustive]
pub enum QualityMethod {
    /// The ITU-T G.107 E-model (narrowband, MOS 1-4.5).
    #[serde(rename = "e-model g.107")]
    EModel,
    /// The ITU-T G.107.1 wideband E-model (R up to 129).
    #[serde(rename = "e-model g.107.1")]
    EModelWideband,
}

impl QualityMethod {
    /// Whether the figures are on the wideband scale (R up to 129, G.107.1).
    pub fn is_wideband(self) -> bool {
        matches!(self, QualityMethod::EModelWideband)
    }

    /// The name in the output.
    pub fn as_str(self) -> &'static str {
        match self {
            QualityMethod::EModel => "e-model g.107",
            QualityMethod::EModelWideband => "e-model g.107.1",
        }
    }
}

impl std::fmt::Display for QualityMethod {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One interval of a stream's [`MediaStream::timeline`].
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TimelineInterval {
    /// Start of the interval.
    pub start: Timestamp,
    /// Packets received in the interval.
    pub packets: u64,
    /// Packets lost in the interval (sequence gaps).
    pub lost: u64,
    /// Packets too late for the jitter buffer.
    pub late: u64,
    /// Largest RFC 3550 interarrival jitter in the interval, ms.
    pub max_jitter_ms: f64,
}

/// Something wrong with a session or stream, flagged by thresholds in the configuration.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum Problem {
    /// Media flowed one way only in an answered call.
    OneWayAudio,
    /// An answered call had no RTP at all.
    NoRtp,
    /// RTP kept flowing after the BYE.
    RtpAfterBye,
    /// The stream's SSRC changed mid-stream.
    SsrcChange,
    /// The payload type changed mid-stream without a new offer/answer.
    PayloadChange,
    /// Jitter above the threshold.
    HighJitter,
    /// Packet loss above the threshold.
    HighLoss,
    /// MOS below the threshold.
    LowMos,
    /// The answer came later than the threshold.
    LateAnswer,
    /// A 2xx to INVITE was never acknowledged.
    NoAck,
    /// A request got no answer.
    UnansweredRequest,
    /// The capture itself dropped packets (not the network).
    CaptureLoss,
}

impl Problem {
    /// The name used in the JSON output and in filters.
    pub fn as_str(self) -> &'static str {
        match self {
            Problem::OneWayAudio => "one_way_audio",
            Problem::NoRtp => "no_rtp",
            Problem::RtpAfterBye => "rtp_after_bye",
            Problem::SsrcChange => "ssrc_change",
            Problem::PayloadChange => "payload_change",
            Problem::HighJitter => "high_jitter",
            Problem::HighLoss => "high_loss",
            Problem::LowMos => "low_mos",
            Problem::LateAnswer => "late_answer",
            Problem::NoAck => "no_ack",
            Problem::UnansweredRequest => "unanswered_request",
            Problem::CaptureLoss => "capture_loss",
        }
    }
}

/// One RTCP sender or receiver report.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RtcpReport {
    /// Arrival time.
    pub ts: Timestamp,
    /// 1-based frame number.
    pub frame: u64,
    /// `SR` or `RR`.
    pub packet_type: RtcpReportKind,
    /// SSRC of the report's sender.
    pub ssrc: u32,
    /// Sender information, for SR.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sender_info: Option<SenderInfo>,
    /// Reception report blocks.
    pub blocks: Vec<ReportBlock>,
}

/// Which report an [`RtcpReport`] is (RFC 3550 section 6.4).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum RtcpReportKind {
    /// A sender report (packet type 200).
    #[serde(rename = "SR")]
    Sr,
    /// A receiver report (packet type 201).
    #[serde(rename = "RR")]
    Rr,
}

impl RtcpReportKind {
    /// `SR` or `RR`, as in the output.
    pub fn as_str(self) -> &'static str {
        match self {
            RtcpReportKind::Sr => "SR",
            RtcpReportKind::Rr => "RR",
        }
    }
}

impl std::fmt::Display for RtcpReportKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The sender information of an RTCP SR.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct SenderInfo {
    /// NTP timestamp, 32.32 fixed point.
    pub ntp_timestamp: u64,
    /// RTP timestamp corresponding to the NTP timestamp.
    pub rtp_timestamp: u32,
    /// Packets sent.
    pub packet_count: u32,
    /// Payload octets sent.
    pub octet_count: u32,
}

/// One reception report block of an RTCP SR or RR.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct ReportBlock {
    /// SSRC the block reports on.
    pub ssrc: u32,
    /// Fraction lost since the last report, as a ratio 0..1.
    pub fraction_lost: f64,
    /// Cumulative packets lost (24-bit signed).
    pub cumulative_lost: i32,
    /// Extended highest sequence number received.
    pub highest_seq: u32,
    /// Interarrival jitter, in timestamp units.
    pub jitter: u32,
    /// Last SR timestamp (middle 32 bits of the NTP timestamp).
    pub lsr: u32,
    /// Delay since last SR, in 1/65536 s.
    pub dlsr: u32,
}

/// One RFC 4733 telephone event (a DTMF digit), reported once per event.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct DtmfEvent {
    /// Arrival time of the event's first packet.
    pub ts: Timestamp,
    /// The digit: `0`-`9`, `*`, `#`, `A`-`D`, or the event code for other events.
    pub digit: String,
    /// Duration in timestamp units, from the last packet of the event.
    pub duration: u16,
    /// Volume in -dBm0.
    pub volume: u8,
}
