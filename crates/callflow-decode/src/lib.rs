//! Zero-copy decoders for packet captures and the VoIP protocols they carry.
//!
//! `callflow-decode` reads capture files ([`capture`]: pcap in both byte orders and
//! time resolutions, pcapng, gzip-compressed either way), peels packets down to their
//! transport payload ([`packet`]: Ethernet/VLAN, Linux cooked, loopback, raw IP,
//! IPv4/IPv6, UDP, TCP, SCTP, and the tunnels IP-in-IP, GRE/ERSPAN and GTP-U), puts
//! fragmented datagrams and TCP streams back together ([`ipfrag`], [`tcp`], [`sctp`]),
//! frames WebSocket connections that carry SIP ([`websocket`]), and decodes the
//! application protocols of a call ([`sip`], [`sdp`], [`rtp`], [`rtcp`], [`dtmf`]) and of
//! the mobile core ([`diameter`], with its dictionary as data; [`gtp`]: GTPv1-C, GTPv2-C, GTPv1-U), and the
//! HEP encapsulation VoIP platforms mirror their traffic in ([`hep`]), and TLS records,
//! hellos, key logs and record decryption ([`tls`]) for SIP over TLS, and the SRTP suites
//! and SRTCP decryption ([`srtp`]) for encrypted media.
//!
//! Decoders borrow from the buffer they are given and allocate nothing on the RTP
//! path. A decoder that cannot go on says why with a [`DecodeError`] naming the
//! layer, the offset and the lengths involved; a packet decoder keeps the layers it
//! decoded before it stopped.
//!
//! Architecture invariant: this crate knows nothing of sessions, jobs, HTTP or JSON.
//! It turns bytes into views of bytes.
//!
//! ```no_run
//! use callflow_decode::capture::CaptureReader;
//! use callflow_decode::packet::{decode_frame, Transport};
//!
//! let mut reader = CaptureReader::open("capture.pcap")?;
//! while let Some(frame) = reader.next_frame()? {
//!     let packet = decode_frame(frame.link_type, frame.data);
//!     if let Transport::Udp { src_port, dst_port, payload } = packet.transport {
//!         println!("frame {}: udp {src_port} -> {dst_port}, {} bytes", frame.number, payload.len());
//!     }
//! }
//! # Ok::<(), callflow_decode::capture::CaptureError>(())
//! ```

pub mod capture;
pub mod diameter;
pub mod dtmf;
mod error;
pub mod gtp;
pub mod hep;
pub mod ipfrag;
mod linktype;
pub mod packet;
pub mod rtcp;
pub mod rtp;
pub mod sctp;
pub mod sdp;
pub mod sip;
pub mod srtp;
pub mod tcp;
#[cfg(test)]
mod test_support;
pub mod tls;
pub mod websocket;

pub use callflow_model::Timestamp;
pub(crate) use error::need;
pub use error::{DecodeError, Layer};
pub use linktype::LinkType;
