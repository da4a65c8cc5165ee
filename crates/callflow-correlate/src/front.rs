//! The front stage of the analysis: what the packets alone tell, before any session is looked at.
//!
//! Decoding the layers, putting IP fragments back together and finding which transport
//! flow a packet belongs to depend on the packets and their order only, never on what the
//! analysis has made of earlier packets (a call, an announced endpoint). That is what lets
//! this stage run on its own thread ahead of the analysis (see `pipeline`) and still give
//! exactly what it gives when run inline: the same fragments reassembled at the same
//! frames, the same flow numbers in the same order.

use crate::flows::{FlowId, FlowIndex};
use crate::ids::Fnv64;
use callflow_decode::capture::Frame;
use callflow_decode::ipfrag::{Datagram, FragmentLimits, FragmentReassembler};
use callflow_decode::packet::{
    decode_frame, decode_transport, Fragment, IpInfo, Packet, Transport as Tp, Tunnel, TunnelKind, MAX_TUNNELS,
};
use callflow_decode::rtp::RtpPacket;
use callflow_decode::{rtcp, sip, DecodeError, Timestamp};
use callflow_model::Transport;
use std::hash::{Hash, Hasher};
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

/// How often (capture time) stale fragments are dropped, and idle sessions looked for.
pub(crate) const SWEEP_INTERVAL_NS: i64 = 1_000_000_000;

/// A frame as the front stage hands it to the analysis: what the analysis needs of the
/// decoded [`Packet`], kept small because every frame crosses between threads.
#[derive(Debug)]
pub(crate) struct Prepared<'a> {
    /// As [`Packet::ip`].
    pub ip: Option<IpInfo>,
    /// As [`Packet::transport`].
    pub transport: Tp<'a>,
    /// As [`Packet::tunnel`] (for a fragment, the tunnel inside the datagram it completed,
    /// else the fragment's), with the tunnel's number in this run (see [`Tunnels`]).
    pub tunnel: Option<(u32, Tunnel)>,
    /// Decoding stopped early ([`Packet::stop`]).
    pub stopped: bool,
    /// What a UDP datagram's payload looks like (not for a reassembled one).
    pub udp: Option<UdpHints>,
    /// For an IP fragment: the datagram it completed, `Ok(None)` while the datagram is
    /// incomplete, or why the fragment could not be used. Boxed: fragments are rare, and
    /// every frame crosses between threads.
    pub reassembly: Option<Box<Result<Option<Datagram>, DecodeError>>>,
    /// The packet's UDP, TCP or SCTP flow (for a fragment, the flow of the datagram it
    /// completed); `None` for other packets and for flows past the list's bound.
    pub flow: Option<FlowId>,
    /// Flows forgotten at this frame (idle too long, see [`FlowIndex::forgetting`]): their
    /// handles may be reused from the next frame on. Boxed and rare, as `reassembly`.
    pub forgotten: Forgotten,
}

/// Handles of forgotten flows, `None` when there are none (nearly always).
pub(crate) type Forgotten = Option<Box<Vec<FlowId>>>;

/// What the analysis asks of every UDP payload, worked out where the payload is first
/// read: on the front stage's thread, the payload's bytes need not travel to the analysis
/// at all for a plain RTP packet.
#[derive(Clone, Copy, Debug)]
pub(crate) struct UdpHints {
    /// [`sip::looks_like_sip`].
    pub sip_like: bool,
    /// [`rtcp::looks_like_rtcp`].
    pub rtcp_like: bool,
    /// The RTP header, if the payload parses as RTP.
    pub rtp: Option<RtpHead>,
}

impl UdpHints {
    pub fn of(payload: &[u8]) -> UdpHints {
        UdpHints {
            sip_like: sip::looks_like_sip(payload),
            rtcp_like: rtcp::looks_like_rtcp(payload),
            // The header parsed once, its padding judged here (RFC 3550 5.1: the last byte
            // counts it, itself included): a packet whose padding does not add up may be
            // SRTP, whose padding is encrypted, so its header is kept, marked, for the
            // media table to judge. (Parsing as RTP, then again as SRTP on failure, cost
            // every packet about 30 instructions more.)
            rtp: RtpPacket::parse_protected(payload).ok().map(|p| {
                let (padding_len, padding_ok) = match (p.padding, p.payload.last()) {
                    (false, _) => (0, true),
                    (true, Some(&count)) if count != 0 && usize::from(count) <= p.payload.len() => (count, true),
                    (true, _) => (0, false),
                };
                RtpHead {
                    payload_type: p.payload_type,
                    marker: p.marker,
                    sequence: p.sequence,
                    timestamp: p.timestamp,
                    ssrc: p.ssrc,
                    payload_len: u16::try_from(payload.len().saturating_sub(p.header_len)).unwrap_or(u16::MAX),
                    padding_len,
                    padding_ok,
                }
            }),
        }
    }
}

/// The fields of an RTP header that stream statistics use.
#[derive(Clone, Copy, Debug)]
pub(crate) struct RtpHead {
    pub payload_type: u8,
    pub marker: bool,
    pub sequence: u16,
    pub timestamp: u32,
    pub ssrc: u32,
    /// Bytes after the header (CSRCs and extension): payload and padding, and for SRTP
    /// the MKI and the authentication tag.
    pub payload_len: u16,
    /// The padding at the end, by its count (0 without the P bit, or when not read).
    pub padding_len: u8,
    /// False when the P bit is set and the last byte is no padding count that fits: not
    /// RTP, unless SRTP (whose padding is encrypted) is expected.
    pub padding_ok: bool,
}

/// Most tunnels numbered; the tunnels seen after that share one number (their inner
/// addresses are then told apart by the addresses alone, as without tunnels).
const MAX_TUNNELS_NUMBERED: usize = 1 << 20;

/// Numbers the tunnels of a run that keep equal inner addresses apart, from 1, so that a
/// flow's key holds its tunnel as one word.
///
/// Only GTP-U tunnels are numbered: the addresses of mobile subscribers come from per-APN
/// pools that overlap, and both directions of a bearer are tunnelled. IP-in-IP and GRE
/// get 0, as outside any tunnel: they are often asymmetric (one direction encapsulated,
/// the replies routed directly, as in sngrep's `ipip.pcap`), and numbering them would
/// cut one connection in two. A GTP-U tunnel is known by its (unordered) outer address pair
/// (the eNodeB and the gateway), not by its TEID: the two directions of a bearer carry
/// different TEIDs (each names its receiving end) and must stay one flow. So UEs with equal
/// addresses behind the same pair still meet; telling them apart needs the TEID pairs that
/// GTP-C announces (the GTP handler's to learn).
#[derive(Debug, Default)]
pub(crate) struct Tunnels {
    numbers: foldhash::HashMap<(u8, IpAddr, IpAddr), u32>,
}

impl Tunnels {
    /// The number of `tunnel`, given on its first packet; 0 for a tunnel that is not numbered.
    pub fn number(&mut self, tunnel: &Tunnel) -> u32 {
        if tunnel.kind != TunnelKind::GtpU {
            return 0;
        }
        let (a, b) = if tunnel.src <= tunnel.dst { (tunnel.src, tunnel.dst) } else { (tunnel.dst, tunnel.src) };
        let key = (tunnel.kind as u8, a, b);
        if let Some(&n) = self.numbers.get(&key) {
            return n;
        }
        if self.numbers.len() >= MAX_TUNNELS_NUMBERED {
            return u32::MAX;
        }
        let n = self.numbers.len() as u32 + 1;
        self.numbers.insert(key, n);
        n
    }
}

/// What tells copies of one fragment apart when a capture holds a datagram two or three
/// times (several capture points): the VLAN tags and the number of tunnels around it, the
/// same whether the fragment came in a frame of its own or out of a reassembled datagram
/// (`more_tunnels`: those crossed inside that datagram).
fn fragment_context(packet: &Packet<'_>, more_tunnels: u8) -> u64 {
    let mut h = Fnv64::default();
    packet.vlans.as_slice().hash(&mut h);
    packet.tunnels.saturating_add(more_tunnels).hash(&mut h);
    h.finish()
}

/// The front stage's state: fragments waiting for the rest of their datagram, and the flows
/// seen so far.
#[derive(Debug)]
pub(crate) struct Front {
    fragments: FragmentReassembler,
    flows: FlowIndex,
    tunnels: Tunnels,
    clock: Timestamp,
    last_sweep: Option<Timestamp>,
}

impl Front {
    /// A front stage whose flows are forgotten after `forget_flows_after` of idleness (never
    /// with `None`).
    pub fn new(limits: FragmentLimits, forget_flows_after: Option<Duration>) -> Front {
        Front {
            fragments: FragmentReassembler::new(limits),
            flows: forget_flows_after.map_or_else(FlowIndex::default, FlowIndex::forgetting),
            tunnels: Tunnels::default(),
            clock: Timestamp::default(),
            last_sweep: None,
        }
    }

    /// Time moved on to `now` without a frame (a quiet live input): expires what a frame
    /// of that time would have, and returns the flows forgotten.
    pub fn advance_to(&mut self, now: Timestamp) -> Forgotten {
        let last_sweep = *self.last_sweep.get_or_insert(now);
        self.clock = self.clock.max(now);
        self.sweep(last_sweep)
    }

    /// The sweep, on the same schedule as the analysis's, so fragments expire at the same
    /// frames whichever thread runs this.
    fn sweep(&mut self, last_sweep: Timestamp) -> Forgotten {
        if self.clock.nanos_since(last_sweep) < SWEEP_INTERVAL_NS {
            return None;
        }
        self.last_sweep = Some(self.clock);
        self.fragments.expire(self.clock);
        let forgotten = self.flows.forget_idle(self.clock);
        (!forgotten.is_empty()).then(|| Box::new(forgotten))
    }

    /// Decodes `frame` and prepares it. Frames must come in capture order.
    pub fn prepare<'a>(&mut self, frame: &Frame<'a>) -> Prepared<'a> {
        self.prepare_decoded(frame.ts, decode_frame(frame.link_type, frame.data))
    }

    /// Prepares a frame captured at `ts` and already decoded.
    pub fn prepare_decoded<'a>(&mut self, ts: Timestamp, packet: Packet<'a>) -> Prepared<'a> {
        let last_sweep = *self.last_sweep.get_or_insert(ts);
        self.clock = self.clock.max(ts);
        let (reassembly, flow, tunnel) = match &packet.transport {
            Tp::Fragment(fragment) => {
                let (reassembly, seen) = self.reassemble(ts, &packet, fragment);
                let (flow, tunnel) = match &reassembly {
                    Ok(Some(d)) => {
                        let inner = decode_transport(d.protocol, d.src, d.dst, &d.payload);
                        let tunnel = self.tunnel(inner.tunnel.or(seen).or(packet.tunnel));
                        (self.flow(&inner, tunnel.map_or(0, |(n, _)| n), ts), tunnel)
                    }
                    _ => (None, self.tunnel(packet.tunnel)),
                };
                (Some(Box::new(reassembly)), flow, tunnel)
            }
            _ => {
                let tunnel = self.tunnel(packet.tunnel);
                (None, self.flow(&packet, tunnel.map_or(0, |(n, _)| n), ts), tunnel)
            }
        };
        let udp = match &packet.transport {
            Tp::Udp { payload, .. } => Some(UdpHints::of(payload)),
            _ => None,
        };
        let forgotten = self.sweep(last_sweep);
        Prepared {
            ip: packet.ip,
            transport: packet.transport,
            tunnel,
            stopped: packet.stop.is_some(),
            udp,
            reassembly,
            flow,
            forgotten,
        }
    }

    /// Adds `fragment` (of `packet`) to its datagram. A datagram it completes that is
    /// itself a fragment (an IP-fragmented GTP-U packet carrying the first fragment of the
    /// UE's packet, as VoLTE captures show) is added in turn, so what comes out is whole.
    /// Also returns the tunnel crossed on the way (the GTP-U around the UE's fragment).
    fn reassemble(
        &mut self,
        ts: Timestamp,
        packet: &Packet<'_>,
        fragment: &Fragment<'_>,
    ) -> (Result<Option<Datagram>, DecodeError>, Option<Tunnel>) {
        let mut reassembly = self.fragments.push_in(ts, fragment, fragment_context(packet, 0));
        let mut tunnel = None;
        for _ in 0..MAX_TUNNELS {
            let Ok(Some(datagram)) = &reassembly else { break };
            let inner = decode_transport(datagram.protocol, datagram.src, datagram.dst, &datagram.payload);
            let Tp::Fragment(inner_fragment) = &inner.transport else { break };
            tunnel = inner.tunnel.or(tunnel);
            let context = fragment_context(packet, inner.tunnels);
            let next = self.fragments.push_in(ts, inner_fragment, context);
            reassembly = next;
        }
        (reassembly, tunnel)
    }

    /// How many flows were seen after the flow list was full.
    pub fn unlisted_flows(&self) -> u64 {
        self.flows.unlisted()
    }

    /// A packet's tunnel with its number; only a tunnelled packet pays for the lookup.
    fn tunnel(&mut self, tunnel: Option<Tunnel>) -> Option<(u32, Tunnel)> {
        tunnel.map(|t| (self.tunnels.number(&t), t))
    }

    fn flow(&mut self, packet: &Packet<'_>, context: u32, ts: Timestamp) -> Option<FlowId> {
        let ip = packet.ip.as_ref()?;
        let (transport, src_port, dst_port) = match &packet.transport {
            Tp::Udp { src_port, dst_port, .. } => (Transport::Udp, *src_port, *dst_port),
            Tp::Tcp(seg) => (Transport::Tcp, seg.src_port, seg.dst_port),
            Tp::Sctp { src_port, dst_port, .. } => (Transport::Sctp, *src_port, *dst_port),
            _ => return None,
        };
        self.flows.lookup(transport, context, SocketAddr::new(ip.src, src_port), SocketAddr::new(ip.dst, dst_port), ts)
    }
}
