//! Live frame sources: packets that arrive while the analysis runs, rather than a capture file.
//!
//! Every live source (an interface captured in a network namespace, a remote
//! Packetflix-compatible WebSocket stream, HEP agents) runs its receiving side on its own
//! thread and hands frames to the analysis through one bounded queue, [`channel`](mod@channel): the
//! [`ChannelSource`] end is a [`FrameSource`](callflow_correlate::FrameSource) like a
//! capture file, and it ticks while the link is quiet so that calls that are over are
//! closed and reported without waiting for the next packet.
//!
//! Memory stays bounded whatever the rate: when the analysis falls behind, the queue
//! fills and [`FrameSender::offer`] drops (and counts) frames instead of growing.
//!
//! Sources: [`hep`] (a HEP v3/v2 listener over UDP and TCP, for agents such as Kamailio's
//! siptrace or heplify).

pub mod capture;
pub mod channel;
pub mod error;
pub mod hep;
pub mod netns;
pub mod pcapng;
pub mod record;
pub mod remote;

pub use channel::{channel, ChannelSource, FrameSender, LiveCounters, OwnedFrame, SourceClosed};
pub use error::LiveError;
