//! Decode errors: which layer stopped, where, and how many bytes it needed.

use std::fmt;

/// The protocol layer a decoder was working on.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Layer {
    /// A capture-file record header.
    Capture,
    /// The link layer (Ethernet, Linux cooked, loopback, ...).
    Link,
    /// An 802.1Q / 802.1ad VLAN tag.
    Vlan,
    /// IPv4.
    Ipv4,
    /// IPv6 and its extension headers.
    Ipv6,
    /// UDP.
    Udp,
    /// TCP.
    Tcp,
    /// SCTP.
    Sctp,
    /// GRE (and ERSPAN inside it).
    Gre,
    /// GTP: GTP-U, GTPv1-C and GTPv2-C.
    Gtp,
    /// WebSocket frames (RFC 6455), a SIP transport (RFC 7118).
    WebSocket,
    /// SIP.
    Sip,
    /// SDP.
    Sdp,
    /// RTP.
    Rtp,
    /// RTCP.
    Rtcp,
    /// RFC 4733 telephone events.
    TelephoneEvent,
    /// Diameter (RFC 6733).
    Diameter,
    /// HEP, the Homer Encapsulation Protocol (v1, v2, v3).
    Hep,
    /// TLS records and handshake messages.
    Tls,
}

impl Layer {
    /// The layer's short name, as used in error messages.
    pub fn as_str(self) -> &'static str {
        match self {
            Layer::Capture => "capture",
            Layer::Link => "link",
            Layer::Vlan => "vlan",
            Layer::Ipv4 => "ipv4",
            Layer::Ipv6 => "ipv6",
            Layer::Udp => "udp",
            Layer::Tcp => "tcp",
            Layer::Sctp => "sctp",
            Layer::Gre => "gre",
            Layer::Gtp => "gtp",
            Layer::WebSocket => "websocket",
            Layer::Sip => "sip",
            Layer::Sdp => "sdp",
            Layer::Rtp => "rtp",
            Layer::Rtcp => "rtcp",
            Layer::TelephoneEvent => "telephone-event",
            Layer::Diameter => "diameter",
            Layer::Hep => "hep",
            Layer::Tls => "tls",
        }
    }
}

impl fmt::Display for Layer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why a decoder stopped on one packet or message.
///
/// Offsets are relative to the start of the buffer handed to the decoder that failed
/// (for packet layers: the start of the frame), so a user can find the byte in a hex dump.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DecodeError {
    /// The layer's header, or the length it declares, needs more bytes than there are.
    #[error("{layer}: truncated at offset {offset}: needs {needed} bytes, {available} available")]
    Truncated {
        /// Layer being decoded.
        layer: Layer,
        /// Offset where the layer (or the field) starts.
        offset: usize,
        /// Bytes the layer needs from `offset`.
        needed: usize,
        /// Bytes available from `offset`.
        available: usize,
    },
    /// A field holds a value the protocol does not allow.
    #[error("{layer}: invalid {field} at offset {offset}: {reason}")]
    Invalid {
        /// Layer being decoded.
        layer: Layer,
        /// Offset of the offending field.
        offset: usize,
        /// Name of the field.
        field: &'static str,
        /// What is wrong with it.
        reason: &'static str,
    },
}

impl DecodeError {
    /// Shorthand for [`DecodeError::Truncated`].
    pub fn truncated(layer: Layer, offset: usize, needed: usize, available: usize) -> Self {
        DecodeError::Truncated { layer, offset, needed, available }
    }

    /// Shorthand for [`DecodeError::Invalid`].
    pub fn invalid(layer: Layer, offset: usize, field: &'static str, reason: &'static str) -> Self {
        DecodeError::Invalid { layer, offset, field, reason }
    }

    /// The layer that stopped.
    pub fn layer(&self) -> Layer {
        match self {
            DecodeError::Truncated { layer, .. } | DecodeError::Invalid { layer, .. } => *layer,
        }
    }

    /// Returns a copy with `base` added to the offset, for errors raised on a sub-slice.
    pub fn shifted(self, base: usize) -> Self {
        match self {
            DecodeError::Truncated { layer, offset, needed, available } => {
                DecodeError::Truncated { layer, offset: offset + base, needed, available }
            }
            DecodeError::Invalid { layer, offset, field, reason } => {
                DecodeError::Invalid { layer, offset: offset + base, field, reason }
            }
        }
    }
}

/// Checks that `buf[offset..]` holds at least `needed` bytes.
#[inline]
pub(crate) fn need(layer: Layer, buf: &[u8], offset: usize, needed: usize) -> Result<(), DecodeError> {
    let available = buf.len().saturating_sub(offset);
    if available < needed {
        Err(DecodeError::truncated(layer, offset, needed, available))
    } else {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_name_layer_offset_and_lengths() {
        let e = DecodeError::truncated(Layer::Udp, 34, 8, 3);
        assert_eq!(e.to_string(), "udp: truncated at offset 34: needs 8 bytes, 3 available");
        assert_eq!(e.clone().shifted(10).to_string(), "udp: truncated at offset 44: needs 8 bytes, 3 available");
        assert_eq!(e.layer(), Layer::Udp);
    }

    #[test]
    fn need_reports_what_is_missing() {
        let buf = [0u8; 10];
        assert!(need(Layer::Ipv4, &buf, 0, 10).is_ok());
        assert_eq!(need(Layer::Ipv4, &buf, 4, 20), Err(DecodeError::truncated(Layer::Ipv4, 4, 20, 6)));
        assert_eq!(need(Layer::Ipv4, &buf, 12, 1), Err(DecodeError::truncated(Layer::Ipv4, 12, 1, 0)));
    }
}
