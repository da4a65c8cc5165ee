//! The context of one packet as the analysis and the protocol handlers see it: one struct instead of long argument lists.

use crate::flows::FlowId;
use crate::front::UdpHints;
use callflow_decode::packet::Tunnel;
use callflow_decode::Timestamp;
use callflow_model::Transport;
use std::net::SocketAddr;

/// Where and when a transport payload was seen: what every protocol handler gets with the
/// bytes.
#[derive(Clone, Copy, Debug)]
pub struct PacketCtx<'a> {
    /// Capture time of the frame.
    pub ts: Timestamp,
    /// The frame's number (for a reassembled IP datagram, of the fragment completing it).
    pub frame: u64,
    /// Sender.
    pub src: SocketAddr,
    /// Receiver.
    pub dst: SocketAddr,
    /// `Udp`, `Tcp` or `Sctp`.
    pub transport: Transport,
    /// The tunnel the packet came through (GTP-U, GRE, IP-in-IP), with its outer endpoints
    /// and key.
    pub tunnel: Option<&'a Tunnel>,
    /// The tunnel's number in this run (0 outside any tunnel): the part of every key that
    /// keeps equal inner addresses of different tunnels apart.
    pub context: u32,
    /// The frame's length on the wire.
    pub wire_len: u64,
    /// The packet's flow in the flow list.
    pub(crate) flow: Option<FlowId>,
    /// What the front stage found in a UDP payload.
    pub(crate) udp: Option<&'a UdpHints>,
}

/// The output form of a tunnel.
pub(crate) fn tunnel_out(t: &Tunnel) -> callflow_model::Tunnel {
    use callflow_decode::packet::TunnelKind as K;
    use callflow_model::TunnelKind as M;
    let kind = match t.kind {
        K::GtpU => M::GtpU,
        K::Gre => M::Gre,
        _ => M::IpInIp,
    };
    let (teid, key) = if kind == M::GtpU { (t.key, None) } else { (None, t.key) };
    callflow_model::Tunnel { kind, src: t.src, dst: t.dst, teid, key }
}
