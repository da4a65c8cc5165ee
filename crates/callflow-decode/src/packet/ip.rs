//! IPv4, IPv6 and what they carry: UDP, TCP, SCTP, and the tunnels IP-in-IP, GRE/ERSPAN and GTP-U.

use super::{be16, be32, byte, ipv4_addr, ipv6_addr, slice, tail};
use super::{Fragment, IpInfo, TcpSegment, Transport, Tunnel, TunnelKind, Walker, MAX_TUNNELS};
use crate::{need, DecodeError, Layer};
use std::net::IpAddr;

/// The IPv6 extension headers decoded here (plus "no next header"), which
/// [`super::decode_transport`] may meet after a fragment header.
pub(super) fn is_ipv6_extension(next_header: u8) -> bool {
    matches!(next_header, 0 | 43 | 44 | 51 | 59 | 60)
}

/// The UDP port of GTP-U.
const GTP_U_PORT: u16 = 2152;

impl<'a> Walker<'a> {
    /// Raw IP: IPv4 or IPv6 by the version nibble; anything else is an error of `layer`.
    pub(super) fn ip_by_version(
        &mut self,
        buf: &'a [u8],
        base: usize,
        declared: usize,
        layer: Layer,
    ) -> Result<(), DecodeError> {
        need(layer, buf, 0, 1).map_err(|e| e.shifted(base))?;
        match byte(buf, 0) >> 4 {
            4 => self.ipv4(buf, base, declared),
            6 => self.ipv6(buf, base, declared),
            _ => Err(DecodeError::invalid(layer, base, "ip version", "neither 4 nor 6")),
        }
    }

    /// IPv4: header checks, options skipped, payload trimmed to the total length;
    /// fragments are handed out whole for reassembly.
    pub(super) fn ipv4(&mut self, buf: &'a [u8], base: usize, declared: usize) -> Result<(), DecodeError> {
        let layer = Layer::Ipv4;
        need(layer, buf, 0, 20).map_err(|e| e.shifted(base))?;
        if byte(buf, 0) >> 4 != 4 {
            return Err(DecodeError::invalid(layer, base, "version", "not 4"));
        }
        let header_len = usize::from(byte(buf, 0) & 0x0f) * 4;
        if header_len < 20 {
            return Err(DecodeError::invalid(layer, base, "header length", "less than 20 bytes"));
        }
        need(layer, buf, 0, header_len).map_err(|e| e.shifted(base))?;
        let total = usize::from(be16(buf, 2));
        if total < header_len {
            return Err(DecodeError::invalid(layer, base + 2, "total length", "shorter than the header"));
        }
        let (src, dst) = (IpAddr::V4(ipv4_addr(buf, 12)), IpAddr::V4(ipv4_addr(buf, 16)));
        let protocol = byte(buf, 9);
        self.packet.ip = Some(IpInfo { src, dst, protocol, ttl: byte(buf, 8) });
        self.packet.transport = Transport::None;
        if total > declared {
            // The enclosing layer (a tunnel) says the packet is shorter than this header does.
            return Err(DecodeError::truncated(layer, base, total, declared));
        }
        // Bytes past the total length are link-layer padding; fewer bytes than the total
        // length mean the capture was cut by its snapshot length: keep what is there.
        let payload = slice(buf, header_len, total);
        let payload_len = total - header_len;
        let flags_offset = be16(buf, 6);
        let (more, offset) = (flags_offset & 0x2000 != 0, usize::from(flags_offset & 0x1fff) * 8);
        if more || offset != 0 {
            if payload.len() < payload_len {
                // A fragment cut short cannot be put back together.
                return Err(DecodeError::truncated(layer, base, total, buf.len()));
            }
            let id = u32::from(be16(buf, 4));
            self.packet.transport = Transport::Fragment(Fragment { src, dst, id, protocol, offset, more, payload });
            return Ok(());
        }
        self.transport(protocol, src, dst, payload, base + header_len, payload_len)
    }

    /// IPv6: the fixed header, then the extension headers and the payload.
    pub(super) fn ipv6(&mut self, buf: &'a [u8], base: usize, declared: usize) -> Result<(), DecodeError> {
        let layer = Layer::Ipv6;
        need(layer, buf, 0, 40).map_err(|e| e.shifted(base))?;
        if byte(buf, 0) >> 4 != 6 {
            return Err(DecodeError::invalid(layer, base, "version", "not 6"));
        }
        let (src, dst) = (IpAddr::V6(ipv6_addr(buf, 8)), IpAddr::V6(ipv6_addr(buf, 24)));
        let next_header = byte(buf, 6);
        self.packet.ip = Some(IpInfo { src, dst, protocol: next_header, ttl: byte(buf, 7) });
        self.packet.transport = Transport::None;
        let mut payload_len = usize::from(be16(buf, 4));
        if payload_len == 0 && next_header == 0 {
            // A jumbogram: the real length is in a hop-by-hop option; take what is there.
            payload_len = buf.len() - 40;
        }
        if 40 + payload_len > declared {
            return Err(DecodeError::truncated(layer, base, 40 + payload_len, declared));
        }
        let payload = slice(buf, 40, 40 + payload_len);
        self.ipv6_payload(next_header, src, dst, payload, base + 40, payload_len)
    }

    /// The IPv6 extension headers starting with `next_header`, then the transport.
    pub(super) fn ipv6_payload(
        &mut self,
        mut next_header: u8,
        src: IpAddr,
        dst: IpAddr,
        buf: &'a [u8],
        base: usize,
        declared: usize,
    ) -> Result<(), DecodeError> {
        let layer = Layer::Ipv6;
        let mut at = 0;
        loop {
            if let Some(ip) = self.packet.ip.as_mut() {
                ip.protocol = next_header;
            }
            match next_header {
                // Hop-by-hop, routing, destination options: length in 8-byte units, not
                // counting the first 8; AH: length in 4-byte units, not counting the first 8.
                0 | 43 | 60 | 51 => {
                    need(layer, buf, at, 2).map_err(|e| e.shifted(base))?;
                    let units = usize::from(byte(buf, at + 1));
                    let len = if next_header == 51 { (units + 2) * 4 } else { (units + 1) * 8 };
                    need(layer, buf, at, len).map_err(|e| e.shifted(base))?;
                    next_header = byte(buf, at);
                    at += len;
                }
                44 => {
                    need(layer, buf, at, 8).map_err(|e| e.shifted(base))?;
                    let inner = byte(buf, at);
                    let offset_flags = be16(buf, at + 2);
                    let (offset, more) = (usize::from(offset_flags & 0xfff8), offset_flags & 0x0001 != 0);
                    let id = be32(buf, at + 4);
                    at += 8;
                    next_header = inner;
                    if offset == 0 && !more {
                        // An atomic fragment (RFC 6946): the whole packet, nothing to reassemble.
                        continue;
                    }
                    if let Some(ip) = self.packet.ip.as_mut() {
                        ip.protocol = inner;
                    }
                    let payload = tail(buf, at);
                    let payload_len = declared.saturating_sub(at);
                    if payload.len() < payload_len {
                        return Err(DecodeError::truncated(layer, base + at, payload_len, payload.len()));
                    }
                    self.packet.transport =
                        Transport::Fragment(Fragment { src, dst, id, protocol: inner, offset, more, payload });
                    return Ok(());
                }
                59 => return Ok(()),
                protocol => {
                    return self.transport(protocol, src, dst, tail(buf, at), base + at, declared.saturating_sub(at));
                }
            }
        }
    }

    /// The IP payload of protocol `protocol`.
    pub(super) fn transport(
        &mut self,
        protocol: u8,
        src: IpAddr,
        dst: IpAddr,
        buf: &'a [u8],
        base: usize,
        declared: usize,
    ) -> Result<(), DecodeError> {
        match protocol {
            6 => self.tcp(buf, base),
            17 => self.udp(buf, base, declared),
            132 => self.sctp(buf, base),
            4 | 41 => {
                self.packet.transport = Transport::Other { protocol, payload: buf };
                let layer = if src.is_ipv4() || dst.is_ipv4() { Layer::Ipv4 } else { Layer::Ipv6 };
                self.enter_tunnel(layer, base)?;
                self.note_tunnel(TunnelKind::IpInIp, None, declared);
                if protocol == 4 {
                    self.ipv4(buf, base, declared)
                } else {
                    self.ipv6(buf, base, declared)
                }
            }
            47 => {
                self.packet.transport = Transport::Other { protocol, payload: buf };
                self.gre(buf, base, declared)
            }
            _ => {
                self.packet.transport = Transport::Other { protocol, payload: buf };
                Ok(())
            }
        }
    }

    /// Records the tunnel being entered as the packet's, its outer addresses those of the IP
    /// header decoded last (the one carrying the tunnel).
    fn note_tunnel(&mut self, kind: TunnelKind, key: Option<u32>, inner_len: usize) {
        if let Some(ip) = self.packet.ip {
            let inner_len = u32::try_from(inner_len).unwrap_or(u32::MAX);
            self.packet.tunnel = Some(Tunnel { kind, src: ip.src, dst: ip.dst, key, inner_len });
        }
    }

    fn enter_tunnel(&mut self, layer: Layer, at: usize) -> Result<(), DecodeError> {
        if self.packet.tunnels >= MAX_TUNNELS {
            return Err(DecodeError::invalid(layer, at, "tunnel nesting", "more than 4 nested tunnels"));
        }
        self.packet.tunnels += 1;
        Ok(())
    }

    fn udp(&mut self, buf: &'a [u8], base: usize, declared: usize) -> Result<(), DecodeError> {
        let layer = Layer::Udp;
        need(layer, buf, 0, 8).map_err(|e| e.shifted(base))?;
        let length = usize::from(be16(buf, 4));
        let length = match length {
            // Zero: a jumbogram, or checksum offload that left the field empty.
            0 => declared,
            1..=7 => return Err(DecodeError::invalid(layer, base + 4, "length", "less than the 8-byte header")),
            n if n > declared => return Err(DecodeError::truncated(layer, base, n, declared)),
            n => n,
        };
        let payload = slice(buf, 8, length);
        let (src_port, dst_port) = (be16(buf, 0), be16(buf, 2));
        self.packet.transport = Transport::Udp { src_port, dst_port, payload };
        if src_port == GTP_U_PORT || dst_port == GTP_U_PORT {
            return self.gtp_u(payload, base + 8, length - 8);
        }
        Ok(())
    }

    fn tcp(&mut self, buf: &'a [u8], base: usize) -> Result<(), DecodeError> {
        let layer = Layer::Tcp;
        need(layer, buf, 0, 20).map_err(|e| e.shifted(base))?;
        let header_len = usize::from(byte(buf, 12) >> 4) * 4;
        if header_len < 20 {
            return Err(DecodeError::invalid(layer, base + 12, "data offset", "less than 5 (20 bytes)"));
        }
        need(layer, buf, 0, header_len).map_err(|e| e.shifted(base))?;
        self.packet.transport = Transport::Tcp(TcpSegment {
            src_port: be16(buf, 0),
            dst_port: be16(buf, 2),
            seq: be32(buf, 4),
            ack: be32(buf, 8),
            flags: byte(buf, 13),
            window: be16(buf, 14),
            payload: tail(buf, header_len),
        });
        Ok(())
    }

    fn sctp(&mut self, buf: &'a [u8], base: usize) -> Result<(), DecodeError> {
        need(Layer::Sctp, buf, 0, 12).map_err(|e| e.shifted(base))?;
        self.packet.transport = Transport::Sctp {
            src_port: be16(buf, 0),
            dst_port: be16(buf, 2),
            verification_tag: be32(buf, 4),
            chunks: tail(buf, 12),
        };
        Ok(())
    }

    /// GRE version 0 (RFC 2784/2890): flags, protocol, then the optional checksum, key and
    /// sequence number words. Version 1 (PPTP) and source-routed GRE are left as they are.
    fn gre(&mut self, buf: &'a [u8], base: usize, declared: usize) -> Result<(), DecodeError> {
        const CHECKSUM: u8 = 0x80;
        const ROUTING: u8 = 0x40;
        const KEY: u8 = 0x20;
        const SEQUENCE: u8 = 0x10;
        let layer = Layer::Gre;
        need(layer, buf, 0, 4).map_err(|e| e.shifted(base))?;
        let flags = byte(buf, 0);
        if byte(buf, 1) & 0x07 == 1 && be16(buf, 2) == 0x880b {
            return self.enhanced_gre(buf, base, declared);
        }
        if byte(buf, 1) & 0x07 != 0 || flags & ROUTING != 0 {
            return Ok(());
        }
        let words = [CHECKSUM, KEY, SEQUENCE].iter().filter(|&&f| flags & f != 0).count();
        let header_len = 4 + 4 * words;
        need(layer, buf, 0, header_len).map_err(|e| e.shifted(base))?;
        let (inner, inner_base, inner_declared) =
            (tail(buf, header_len), base + header_len, declared.saturating_sub(header_len));
        // The key word follows the checksum word when both are there.
        let key = (flags & KEY != 0).then(|| be32(buf, if flags & CHECKSUM != 0 { 8 } else { 4 }));
        match be16(buf, 2) {
            0x0800 => {
                self.enter_tunnel(layer, base)?;
                self.note_tunnel(TunnelKind::Gre, key, inner_declared);
                self.ipv4(inner, inner_base, inner_declared)
            }
            0x86dd => {
                self.enter_tunnel(layer, base)?;
                self.note_tunnel(TunnelKind::Gre, key, inner_declared);
                self.ipv6(inner, inner_base, inner_declared)
            }
            // Transparent Ethernet bridging.
            0x6558 => {
                self.enter_tunnel(layer, base)?;
                self.ethernet(inner, inner_base, inner_declared)
            }
            // ERSPAN type II has an 8-byte header and a GRE sequence number; type I (the
            // same protocol without the sequence number) has no header at all.
            0x88be => {
                let erspan_len = if flags & SEQUENCE != 0 { 8 } else { 0 };
                need(layer, inner, 0, erspan_len).map_err(|e| e.shifted(inner_base))?;
                self.enter_tunnel(layer, base)?;
                self.ethernet(
                    tail(inner, erspan_len),
                    inner_base + erspan_len,
                    inner_declared.saturating_sub(erspan_len),
                )
            }
            // ERSPAN type III: a 12-byte header, then an 8-byte platform-specific
            // subheader when the O bit (the last bit of the header) is set.
            0x22eb => {
                need(layer, inner, 0, 12).map_err(|e| e.shifted(inner_base))?;
                let erspan_len = if byte(inner, 11) & 0x01 != 0 { 20 } else { 12 };
                need(layer, inner, 0, erspan_len).map_err(|e| e.shifted(inner_base))?;
                let frame_type = (byte(inner, 10) >> 2) & 0x1f;
                let (frame, frame_base, frame_declared) =
                    (tail(inner, erspan_len), inner_base + erspan_len, inner_declared.saturating_sub(erspan_len));
                match frame_type {
                    0 => {
                        self.enter_tunnel(layer, base)?;
                        self.ethernet(frame, frame_base, frame_declared)
                    }
                    2 => {
                        self.enter_tunnel(layer, base)?;
                        self.ip_by_version(frame, frame_base, frame_declared, layer)
                    }
                    _ => Ok(()),
                }
            }
            _ => Ok(()),
        }
    }

    /// Enhanced GRE (version 1, RFC 2637), as PPTP uses it: flags, protocol 0x880b, payload
    /// length, call id, then the sequence and acknowledgement numbers when their flags are
    /// set, then a PPP frame. IPv4 and IPv6 inside PPP are followed; other PPP protocols
    /// (LCP, compressed data) stay GRE.
    fn enhanced_gre(&mut self, buf: &'a [u8], base: usize, declared: usize) -> Result<(), DecodeError> {
        const SEQUENCE: u8 = 0x10;
        const ACK: u8 = 0x80;
        let layer = Layer::Gre;
        let mut header_len = 8;
        if byte(buf, 0) & SEQUENCE != 0 {
            header_len += 4;
        }
        if byte(buf, 1) & ACK != 0 {
            header_len += 4;
        }
        need(layer, buf, 0, header_len).map_err(|e| e.shifted(base))?;
        let ppp = tail(buf, header_len);
        // Address and control (0xff 0x03) may be left out; a protocol number with its
        // low bit set in the first byte is the one-byte compressed form.
        let mut at = if ppp.starts_with(&[0xff, 0x03]) { 2 } else { 0 };
        need(layer, ppp, at, 1).map_err(|e| e.shifted(base + header_len))?;
        let protocol = if byte(ppp, at) & 1 == 1 {
            at += 1;
            u16::from(byte(ppp, at - 1))
        } else {
            need(layer, ppp, at, 2).map_err(|e| e.shifted(base + header_len))?;
            at += 2;
            be16(ppp, at - 2)
        };
        let (inner, inner_base, inner_declared) =
            (tail(ppp, at), base + header_len + at, declared.saturating_sub(header_len + at));
        if !matches!(protocol, super::PPP_IPV4 | super::PPP_IPV6) {
            return Ok(());
        }
        self.enter_tunnel(layer, base)?;
        // PPTP's call id plays the part of the key.
        self.note_tunnel(TunnelKind::Gre, Some(u32::from(be16(buf, 6))), inner_declared);
        self.ppp_ip(protocol, inner, inner_base, inner_declared)
    }

    /// GTP-U (3GPP TS 29.281) in a UDP payload: a version 1 T-PDU (message type 255)
    /// carries an IP packet after the header (`gtp::v1_header`: the mandatory 8 bytes, the
    /// optional sequence number / N-PDU / next-extension word and the chain of extension
    /// headers). Other messages, and anything that is not GTPv1, stay plain UDP.
    fn gtp_u(&mut self, buf: &'a [u8], base: usize, declared: usize) -> Result<(), DecodeError> {
        const T_PDU: u8 = 255;
        let layer = Layer::Gtp;
        let flags = byte(buf, 0);
        let is_gtp_v1 = flags >> 5 == 1 && flags & 0x10 != 0;
        if buf.len() < 2 || !is_gtp_v1 || byte(buf, 1) != T_PDU {
            return Ok(());
        }
        let header = crate::gtp::v1_header(buf).map_err(|e| e.shifted(base))?;
        let end = header.end;
        if end > declared {
            return Err(DecodeError::truncated(layer, base, end, declared));
        }
        let header_len = header.header_len;
        if header_len > end {
            return Err(DecodeError::invalid(layer, base + 2, "length", "shorter than the optional header fields"));
        }
        let inner = slice(buf, header_len, end);
        if !matches!(inner.first().map(|b| b >> 4), Some(4 | 6)) {
            // An empty T-PDU, or one of a PPP or non-IP PDP context.
            return Ok(());
        }
        self.enter_tunnel(layer, base)?;
        self.note_tunnel(TunnelKind::GtpU, Some(header.teid), end - header_len);
        self.ip_by_version(inner, base + header_len, end - header_len, layer)
    }
}
