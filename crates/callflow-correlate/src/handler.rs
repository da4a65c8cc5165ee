//! Protocol handlers: what the analyzer's router hands each application payload to, and what every handler implements.
//!
//! The router ([`Analyzer`](crate::Analyzer)) knows transports, flows and handlers, never a
//! protocol's fields. For each packet it finds the flow, decides the application protocol
//! (an [`AppProtocol`], the enum the classifiers answer with: by what an earlier protocol
//! announced, by the flow's earlier decision, by a handler's probe, or by the classifier),
//! and gives the payload to that protocol's [`Handler`]: a UDP datagram as it is, a TCP
//! stream cut into messages by the handler's framer, an SCTP DATA chunk. A handler owns
//! its tables and the sessions it builds; it says which of them are over at a given time
//! ([`Handler::over`]), and hands each out when the router closes it ([`Handler::close`]).
//!
//! The handlers are fields of the router, called through this trait with static dispatch:
//! the RTP path costs no virtual call. What several handlers share (the media an SDP
//! announced, which RTP then finds; the counters; the lifetimes) is in [`Services`].

use crate::ctx::PacketCtx;
use crate::media::MediaTable;
use crate::stats::StatsBuilder;
use callflow_classify::AppProtocol;
use callflow_decode::tcp::Framing;
use callflow_decode::Timestamp;
use callflow_model::Session;

/// What a handler made of a payload, for the flow list and the statistics.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Handled {
    /// It was this protocol's, and is counted under it.
    Counted(AppProtocol),
    /// It was not this protocol's after all (a keep-alive on a media port, say): counted
    /// under the bare transport, not an error.
    NotOurs,
    /// It looked like this protocol's but did not parse: counted under the bare transport,
    /// and as malformed when something more than a port number said it was ours.
    Malformed,
}

/// How a TCP stream of a handler's protocol is cut into messages.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum StreamFraming {
    /// By the handler's own framer ([`Handler::framer`]).
    Plain,
    /// In WebSocket messages after an HTTP upgrade (RFC 6455), each message one of the
    /// protocol's (SIP over WebSocket, RFC 7118).
    WebSocket,
}

/// How long sessions live after they are over, or quiet (capture time, nanoseconds).
#[derive(Clone, Copy, Debug)]
pub(crate) struct Lifetimes {
    /// A finished session waits this long for retransmissions and late media.
    pub linger: i64,
    /// A session silent this long is closed whatever its state.
    pub idle: i64,
}

/// What handlers share: the media table (endpoints an SDP announced, and the RTP/RTCP
/// streams of every owner), the run's counters, and the lifetimes.
#[derive(Debug)]
pub(crate) struct Services {
    pub media: MediaTable,
    pub stats: StatsBuilder,
    pub lifetimes: Lifetimes,
}

/// A protocol handler: one per application protocol the analysis follows.
///
/// A new protocol implements this (with its decoder in `callflow-decode` and its session
/// kind in `callflow-model`), becomes a field of the router, and is given the payloads
/// whose protocol is its own.
pub(crate) trait Handler {
    /// What the handler keeps per direction of a flow between packets (in the flow's
    /// memo, so a packet finds it without a lookup); `()` when nothing.
    type FlowState: Copy + Default;
    /// Names one open session of the handler.
    type Key: Copy;

    /// The protocol the handler analyses (for a handler of several, its main one).
    const PROTOCOL: AppProtocol;

    /// Whether `payload` carries the handler's protocol by its signature, when nothing
    /// else said so (an SCTP DATA chunk, say).
    fn probe(&self, payload: &[u8]) -> bool;

    /// How a TCP connection whose first payload is `first` is framed, if that payload says
    /// it is the handler's protocol in a framing of its own (a WebSocket upgrade naming the
    /// protocol's subprotocol); `None` to leave it to the classifier.
    fn probe_stream(&self, _first: &[u8]) -> Option<StreamFraming> {
        None
    }

    /// Cuts the next message off a byte stream of the protocol (TCP); `None` when the
    /// handler takes no streams.
    fn framer(&self) -> Option<fn(&[u8]) -> Framing> {
        None
    }

    /// Analyses one payload: a datagram, or a message cut from a stream. `protocol` is what
    /// the router decided it is (for a handler of several protocols).
    fn on_payload(
        &mut self,
        protocol: AppProtocol,
        ctx: &PacketCtx<'_>,
        state: &mut Self::FlowState,
        bytes: &[u8],
        services: &mut Services,
    ) -> Handled;

    /// The sessions that are over as of `now`, in the order they are to be closed.
    fn over(&self, now: Timestamp, services: &Services) -> Vec<Self::Key>;

    /// Every open session, in the order they are to be closed at the end.
    fn open(&self, services: &Services) -> Vec<Self::Key>;

    /// Closes session `key` and hands it out (`None` when there is nothing to report).
    fn close(&mut self, key: Self::Key, services: &mut Services) -> Option<Session>;
}

/// The keys of `sessions` (each with the frame that opened it) in the order sessions are
/// closed: by their first frame, so output does not depend on a hash map's order.
pub(crate) fn by_first_frame<K: Ord>(sessions: impl Iterator<Item = (u64, K)>) -> Vec<K> {
    let mut keyed: Vec<(u64, K)> = sessions.collect();
    keyed.sort_unstable();
    keyed.into_iter().map(|(_, key)| key).collect()
}
