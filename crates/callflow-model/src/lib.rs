//! Plain data types of callflowd's output: the `callflow/v1` document, its sessions, messages and media streams.
//!
//! This crate is the vocabulary every other callflowd crate shares. It holds data and
//! its serde mapping only: no I/O, no parsing of packets, no policy. The JSON shape
//! these types serialize to is the `callflow/v1` format documented in
//! `docs/output-format.md`; it is an API boundary, so fields are only ever added.
//!
//! The main types are [`Document`] (one analysed capture), [`Session`] (one SIP
//! dialog or one orphan media flow), [`Message`] (one SIP message of a session) and
//! [`MediaStream`] (one RTP stream with its quality figures and RTCP reports). A protocol
//! added later keeps its own fields in an object named after it: Diameter's are
//! [`DiameterSession`], [`DiameterMessage`] and, in the statistics, [`DiameterPeers`].
//!
//! ```
//! use callflow_model::{CallState, Timestamp};
//!
//! let ts = Timestamp::from_parts(1_131_987_546, 338_401_000);
//! assert_eq!(ts.as_secs_f64(), 1_131_987_546.338401);
//! assert_eq!(CallState::InCall.as_str(), "IN_CALL");
//! ```

mod diameter;
mod document;
mod gtp;
mod kpis;
mod media;
mod session;
mod subscriber;
mod time;

pub use diameter::{ChargingRule, DiameterAvp, DiameterMessage, DiameterPeers, DiameterSession, DiameterTransaction};
pub use document::{CaptureLoss, Document, Flow, ProblemCounts, ProtocolStats, SourceInfo, Stats, FORMAT};
pub use gtp::{
    GtpBearer, GtpDirection, GtpIe, GtpMessage, GtpPathCounters, GtpScope, GtpSession, GtpTeid, GtpTraffic,
    GtpTransaction,
};
pub use kpis::{Delay, KpiCall, KpiRow, KpiSet, Kpis, OutcomeCount, Ratio, ResponseCounts};
pub use media::{
    DtmfEvent, MediaStream, Problem, Quality, QualityMethod, ReportBlock, RtcpReport, RtcpReportKind, RtcpSummary,
    SenderInfo, SrtcpCounts, SrtpKeying, SrtpStream, TimelineInterval, XrVoipMetrics,
};
pub use session::{
    Branch, CallState, DtmfDigit, DtmfSource, MediaChange, MediaChangeKind, Message, Party, Protocol, Related,
    Relation, Session, SessionKind, SubscriberKey, SubscriberKeyKind, TlsReason, TlsSession, Transport, Tunnel,
    TunnelKind,
};
pub use subscriber::{Subscriber, SubscriberSession, UeAddress};
pub use time::Timestamp;
