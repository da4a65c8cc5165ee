//! Live frame sources: packets that arrive while the analysis runs, rather than a capture file.
//!
//! Every live source (an interface captured in a network namespace, a remote
//! Packetflix-compatible WebSocket stream, HEP agents) runs its receiving side on its own
//! thread and hands frames to the analysis through one bounded queue, [`channel`]: the
//! [`ChannelSource`] end is a [`FrameSource`](callflow_correlate::FrameSource) like a
//! capture file, and it ticks while the link is quiet so that calls that are over are
//! closed and reported without waiting for the next packet.
//!
//! Memory stays bounded whatever the rate: when the analysis falls behind, the queue
//! fills and [`FrameSender::offer`] drops (and counts) frames instead of growing.
//!
//! Sources: [`hep`] (a HEP v3/v2 listener over UDP and TCP, for agents such as Kamailio's
//! siptrace or heplify).

pub mod channel;
pub mod hep;

pub use channel::{channel, ChannelSource, FrameSender, LiveCounters, OwnedFrame, SourceClosed};

/// Why a live source could not start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LiveError {
    /// A listening socket could not be bound (or set up) on an address.
    #[error("cannot listen for {what} on {addr}: {source}")]
    Bind {
        /// The address.
        addr: std::net::SocketAddr,
        /// What was to listen there (e.g. "HEP over UDP").
        what: &'static str,
        /// The system's reason.
        source: std::io::Error,
    },
    /// An address to listen on is not `host:port` with a numeric host.
    #[error("{key}: {value:?} is not an address and a port (e.g. 127.0.0.1:9060 or [::1]:9060)")]
    BadAddress {
        /// The configuration key it came from.
        key: &'static str,
        /// What it said.
        value: String,
    },
}
