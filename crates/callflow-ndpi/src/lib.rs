//! nDPI as a `callflow_classify::Classifier`: the detection module, a per-flow cache, and nDPI's verdicts mapped to callflowd's protocols.
//!
//! [`NdpiClassifier`] owns one nDPI detection module and a flow cache keyed by the
//! bidirectional 5-tuple ([`FlowKey`]), so nDPI's per-flow state is created once per
//! flow, fed every packet of the flow until nDPI decides (or its packet budget is
//! spent: 24 UDP / 80 TCP packets, ndpiReader's defaults, after which
//! `ndpi_detection_giveup` guesses), and released when detection ends or the flow is
//! idle for the idle timeout. Its verdicts carry nDPI's confidence and the
//! master/application protocol pair ([`Detection`], e.g. `STUN.RTP`). Until nDPI has
//! decided, and for what nDPI does not know, the [`HeuristicClassifier`] answers, so
//! the correlator never does worse than without nDPI.
//!
//! nDPI wants IP packets while the trait hands out transport payloads; `synth` rebuilds
//! the IP and UDP/TCP headers from the decoded fields (see `PacketMeta` for TCP's). That
//! is the correlator's view, after tunnels and reassembly. `callflow-cli classify` wants
//! ndpiReader's view instead, to be comparable with it: [`FrameInput`] reads a frame as
//! ndpiReader does ([`reader`]: every IP protocol, ICMP and IGMP included, keyed as
//! ndpiReader keys flows, VLAN included), [`NdpiClassifier::detect_input`] hands nDPI the
//! frame's own IP packet, [`Options::capture_report`] keeps every flow to the end of the
//! file as ndpiReader does, and [`Census`] counts the per-protocol table as ndpiReader's.
//!
//! Without nDPI this crate still builds, and [`NdpiClassifier::new`] says why
//! ([`NdpiClassifier::availability`]): [`Error::NotBuiltIn`] without the `ndpi` feature,
//! [`Error::SourceMissing`] with it but without nDPI to link when it was built (a fresh
//! clone before `cargo xtask ndpi`: `callflow-ndpi-sys` then builds empty, with a cargo
//! warning). All of callflowd's `unsafe` nDPI calls are in `ffi.rs`.
//!
//! ```
//! use callflow_classify::{Classifier, PacketMeta, Payload};
//! use callflow_ndpi::{NdpiClassifier, Options};
//!
//! match NdpiClassifier::new(Options::default()) {
//!     Ok(mut ndpi) => {
//!         let sip = b"OPTIONS sip:a@example.com SIP/2.0\r\nVia: SIP/2.0/UDP 10.0.0.1\r\n\r\n";
//!         let p = Payload::udp("10.0.0.1:5080".parse().unwrap(), "10.0.0.2:5080".parse().unwrap(), sip);
//!         let verdict = ndpi.classify_packet(&p, &PacketMeta::at(1_000));
//!         assert_eq!(verdict.protocol, callflow_classify::AppProtocol::Sip);
//!     }
//!     Err(e) => println!("{e}"), // nDPI is not built in
//! }
//! ```
//!
//! # How the crates fit together
//!
//! `callflow-ndpi-sys` (`links = "ndpi"`) is bindings only: its `build.rs` decides where
//! nDPI comes from (`CALLFLOW_NDPI=vendored|system`, a hard error when it cannot be met;
//! else the vendored tree when `cargo xtask ndpi` has laid it out; else nothing, with a
//! cargo warning), compiles `vendor/nDPI-4.2/src/lib` with `cc` into a static library in
//! vendored mode (with `shim/forget.c`, the one C function of our own: it empties a
//! detection module's caches, reading the module's layout, so it is compiled only there,
//! with the library's own definitions), and runs bindgen over an allowlist. When it links
//! nDPI it emits the `ndpi_linked` cfg and the `links` metadata `DEP_NDPI_LINKED`, which
//! `callflow-ndpi`'s build script turns into its own `ndpi_linked`; the FFI code exists
//! only under that cfg. `callflow-ndpi` is the safe wrapper: `NdpiClassifier` owns the
//! detection module and a flow cache keyed by the bidirectional 5-tuple (`FlowKey`),
//! creates nDPI's flow state once per flow, feeds it until nDPI decides or the packet
//! budget (ndpiReader's: 24 UDP, 80 TCP packets) is spent, then calls
//! `ndpi_detection_giveup` and frees the state; idle flows are released after the idle
//! timeout. Verdicts keep nDPI's confidence and master/app pair (`STUN.RTP`). nDPI wants IP
//! packets, so for the correlator the wrapper rebuilds IP and UDP/TCP headers around the
//! decoded payload. `callflow-cli classify` instead reads frames as ndpiReader (nDPI's
//! example program, the oracle of the nDPI tests) does: `reader` reproduces its
//! `reader_util.c` (link layers, VLAN/MPLS/PPPoE, IP-in-IP and no other tunnel, its length
//! checks and fragment rule), and `FrameInput` hands nDPI the frame's own IP packet keyed
//! as ndpiReader keys it, falling back to callflow-decode only for link types ndpiReader
//! refuses; so `classify`'s flows are ndpiReader's (every IP protocol, keyed by VLAN too,
//! none dropped for idleness in a file) and [`Census`] counts its table as ndpiReader's,
//! while `analyze` keeps the decoder's view (tunnels decapsulated, fragments reassembled).
//! `tests/ndpi_suite.rs` holds that table against ndpiReader's over the 257 captures of
//! nDPI's own test suite (which `cargo xtask ndpi` unpacks). The vendored build uses
//! libgcrypt when pkg-config finds it, as Debian's does, so QUIC's first packets are
//! decrypted. Until nDPI knows, and for protocols it does not map to ours, the heuristic
//! classifier answers.
//!
//! A detection module costs some tens of milliseconds to make and free, which a server or
//! a batch of small captures paid per job (a one-call capture's job took 18 ms, of which 17
//! were nDPI's set-up). With the vendored build, a dropped classifier's module is emptied
//! of what it learnt (nDPI's caches of STUN, TLS certificate, BitTorrent... verdicts, the
//! only state its dissectors change) and kept, up to four, for the next classifier
//! (`NdpiClassifier::spare_modules`, `release_spare_modules`); `tests/reuse.rs` checks that
//! a kept module classifies every capture of both corpora as a new one does (without the
//! emptying, the STUN cache changes a verdict).

// Without nDPI the flow cache and packet synthesis are compiled (and unit-tested) but unused.
#![cfg_attr(not(ndpi_linked), allow(dead_code))]

pub mod census;
mod error;
#[cfg(ndpi_linked)]
mod ffi;
pub mod reader;
mod synth;

pub use census::{Census, FlowCount, ProtocolRow};
pub use error::Error;
pub use reader::{ReaderFrame, ReaderPacket};

use callflow_classify::{
    classifier_input, AppProtocol, Classification, Classifier, Confidence, HeuristicClassifier, PacketMeta, Payload,
    TransportKind,
};
use callflow_decode::capture::Frame;
use callflow_decode::packet::decode_frame;
use std::collections::HashMap;
use std::net::SocketAddr;

/// How the flow cache behaves.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Options {
    /// Packets of a UDP flow nDPI sees before it gives up (ndpiReader: 24).
    pub udp_packet_budget: u32,
    /// Packets of a TCP flow nDPI sees before it gives up (ndpiReader: 80).
    pub tcp_packet_budget: u32,
    /// A flow with no packet for this long (capture time) is dropped from the cache.
    pub idle_timeout_ms: u64,
    /// The most flows kept; beyond it, new flows get the heuristic verdict only.
    pub max_flows: usize,
    /// Keep the verdicts of flows dropped for idleness, for [`NdpiClassifier::take_expired`]
    /// (reports want every flow; the correlator does not, and must not grow without bound).
    pub keep_expired: bool,
}

impl Options {
    /// The options for a report on a whole capture file (`callflow-cli classify`), as
    /// ndpiReader reads a file: no flow is dropped for idleness (ndpiReader expires idle
    /// flows only on live captures, so a flow silent for minutes is still one flow), and
    /// verdicts of flows dropped otherwise are kept.
    pub fn capture_report() -> Self {
        Options { idle_timeout_ms: u64::MAX, keep_expired: true, ..Options::default() }
    }
}

impl Default for Options {
    fn default() -> Self {
        Options {
            udp_packet_budget: 24,
            tcp_packet_budget: 80,
            idle_timeout_ms: 180_000,
            max_flows: 1 << 18,
            keep_expired: false,
        }
    }
}

/// A flow regardless of direction, as ndpiReader keys it: the IP protocol, the VLAN, and
/// the two endpoints in a fixed order (ports are 0 for protocols without them: ICMP, IGMP...).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct FlowKey {
    /// The IP protocol number (6 TCP, 17 UDP, 1 ICMP, 58 ICMPv6, 132 SCTP, ...).
    pub protocol: u8,
    /// The innermost VLAN id (0: untagged): ndpiReader keeps flows of different VLANs apart.
    pub vlan: u16,
    /// The lower endpoint.
    pub a: SocketAddr,
    /// The higher endpoint.
    pub b: SocketAddr,
}

impl FlowKey {
    /// The key of the flow a packet from `src` to `dst` over `transport` belongs to (untagged).
    pub fn new(transport: TransportKind, src: SocketAddr, dst: SocketAddr) -> Self {
        let protocol = match transport {
            TransportKind::Tcp => 6,
            TransportKind::Udp => 17,
            TransportKind::Sctp => 132,
        };
        FlowKey::of_ip(protocol, 0, src, dst)
    }

    /// The key of a packet of IP protocol `protocol` on VLAN `vlan` (0: untagged).
    pub fn of_ip(protocol: u8, vlan: u16, src: SocketAddr, dst: SocketAddr) -> Self {
        let (a, b) = if src <= dst { (src, dst) } else { (dst, src) };
        FlowKey { protocol, vlan, a, b }
    }

    /// The transport, for UDP, TCP and SCTP flows.
    pub fn transport(&self) -> Option<TransportKind> {
        match self.protocol {
            6 => Some(TransportKind::Tcp),
            17 => Some(TransportKind::Udp),
            132 => Some(TransportKind::Sctp),
            _ => None,
        }
    }

    /// The protocol as ndpiReader prints it in its flow list (`TCP`, `UDP`, `ICMP`, ...,
    /// else the number).
    pub fn protocol_name(&self) -> String {
        match self.protocol {
            6 => "TCP".into(),
            17 => "UDP".into(),
            1 => "ICMP".into(),
            2 => "IGMP".into(),
            58 => "ICMPV6".into(),
            132 => "SCTP".into(),
            n => n.to_string(),
        }
    }
}

/// nDPI's confidence in a verdict (`ndpi_confidence_t`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum NdpiConfidence {
    /// Nothing known.
    Unknown,
    /// From the ports alone.
    Port,
    /// From the addresses alone.
    Ip,
    /// From nDPI's cache of earlier flows between the same hosts.
    DpiCache,
    /// Deep packet inspection.
    Dpi,
}

impl NdpiConfidence {
    /// The label ndpiReader prints (`DPI`, `Match by port`, ...).
    pub fn as_str(self) -> &'static str {
        match self {
            NdpiConfidence::Unknown => "Unknown",
            NdpiConfidence::Port => "Match by port",
            NdpiConfidence::Ip => "Match by IP",
            NdpiConfidence::DpiCache => "DPI (cache)",
            NdpiConfidence::Dpi => "DPI",
        }
    }
}

/// nDPI's verdict on a flow: the master/application protocol ids and the confidence.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Detection {
    /// The master protocol (e.g. STUN for RTP inside STUN, HTTP for a web service); 0 when none.
    pub master: u16,
    /// The application protocol; 0 (Unknown) when nDPI has not recognised one.
    pub app: u16,
    /// How nDPI knows.
    pub confidence: NdpiConfidence,
    /// Set when `ndpi_detection_giveup` guessed the protocol.
    pub guessed: bool,
}

impl Detection {
    /// Whether nDPI knows anything about the flow.
    pub fn is_known(&self) -> bool {
        self.master != 0 || self.app != 0
    }
}

/// A captured frame as `callflow-cli classify` (and the ndpiReader comparison) hands it to
/// a classifier: read as ndpiReader reads it wherever ndpiReader reads the link type, so
/// that flows and nDPI's input are ndpiReader's; otherwise decoded by callflow-decode, as
/// `analyze` sees it (those flows ndpiReader would not have at all).
#[derive(Clone, Copy, Debug)]
pub enum FrameInput<'a> {
    /// ndpiReader's reading of the frame ([`reader`]), and its capture time in milliseconds.
    Reader(ReaderPacket<'a>, u64),
    /// callflow-decode's reading (`classifier_input`): a link type ndpiReader refuses.
    Decoded(Payload<'a>, PacketMeta),
}

impl<'a> FrameInput<'a> {
    /// Reads `frame`; `None` for a frame that ndpiReader drops (not IP, too short, a later
    /// fragment), or, on a link type it refuses, that carries no UDP/TCP packet.
    pub fn of(frame: &Frame<'a>) -> Option<FrameInput<'a>> {
        match reader::read(frame.link_type.0, frame.data) {
            ReaderFrame::Packet(p) => Some(FrameInput::Reader(p, PacketMeta::at_time(frame.ts).time_ms)),
            ReaderFrame::Dropped => None,
            ReaderFrame::UnsupportedLink | ReaderFrame::NotReproduced => {
                let packet = decode_frame(frame.link_type, frame.data);
                let (payload, meta) = classifier_input(&packet, frame.ts)?;
                Some(FrameInput::Decoded(payload, meta))
            }
        }
    }

    /// The flow the frame belongs to.
    pub fn key(&self) -> FlowKey {
        match self {
            FrameInput::Reader(p, _) => p.key,
            FrameInput::Decoded(p, _) => FlowKey::new(p.transport, p.src, p.dst),
        }
    }

    /// The transport payload, for payload classifiers; `None` for a packet of another
    /// protocol than UDP or TCP (ICMP, IGMP, ...).
    pub fn payload(&self) -> Option<Payload<'a>> {
        match self {
            FrameInput::Reader(p, _) => p.as_payload(),
            FrameInput::Decoded(p, _) => Some(*p),
        }
    }

    fn time_ms(&self) -> u64 {
        match self {
            FrameInput::Reader(_, t) => *t,
            FrameInput::Decoded(_, meta) => meta.time_ms,
        }
    }
}

enum State {
    /// nDPI is still looking; it has seen `packets` packets.
    #[cfg(ndpi_linked)]
    Detecting { flow: ffi::Flow, packets: u32 },
    /// Detection is over and nDPI's state is freed.
    Done,
}

struct Entry {
    state: State,
    detection: Detection,
    last_ms: u64,
}

/// The nDPI classifier with its flow cache.
pub struct NdpiClassifier {
    /// Declared before `module`, so flows are freed before the module they came from.
    flows: HashMap<FlowKey, Entry>,
    #[cfg(ndpi_linked)]
    module: ffi::Lent,
    opts: Options,
    heuristic: HeuristicClassifier,
    /// The packet buffer `synth` writes into, reused for every packet.
    buf: Vec<u8>,
    last_sweep_ms: u64,
    /// The time of the last [`NdpiClassifier::detect_input`] frame (ndpiReader's `last_time`).
    last_input_ms: u64,
    expired: Vec<(FlowKey, Detection)>,
}

impl std::fmt::Debug for NdpiClassifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NdpiClassifier").field("flows", &self.flows.len()).field("opts", &self.opts).finish()
    }
}

impl NdpiClassifier {
    /// Creates the classifier, with a detection module kept from an earlier classifier
    /// ([`NdpiClassifier::spare_modules`]) or else a new one (a few MB; some tens of
    /// milliseconds).
    pub fn new(opts: Options) -> Result<Self, Error> {
        #[cfg(ndpi_linked)]
        {
            Ok(NdpiClassifier {
                flows: HashMap::new(),
                module: ffi::Lent::take()?,
                opts,
                heuristic: HeuristicClassifier,
                buf: Vec::with_capacity(2048),
                last_sweep_ms: 0,
                last_input_ms: 0,
                expired: Vec::new(),
            })
        }
        #[cfg(not(ndpi_linked))]
        {
            let _ = opts;
            Err(Self::availability().err().unwrap_or(Error::NotBuiltIn))
        }
    }

    /// How many detection modules are kept for the next classifiers. A classifier's
    /// module, when it is dropped, is emptied of what it learnt (nDPI's caches of STUN,
    /// TLS certificate, BitTorrent... verdicts) and kept, up to a few, so that the next
    /// [`NdpiClassifier::new`] does not pay for making one (some tens of milliseconds):
    /// a new classifier classifies the same whether its module is new or kept. Only with
    /// the vendored nDPI build; with a system libndpi every classifier makes its own, and
    /// this is 0.
    pub fn spare_modules() -> usize {
        #[cfg(ndpi_linked)]
        return ffi::spare_modules();
        #[cfg(not(ndpi_linked))]
        0
    }

    /// Frees the modules kept for reuse (a few MB each); see [`NdpiClassifier::spare_modules`].
    pub fn release_spare_modules() {
        #[cfg(ndpi_linked)]
        ffi::release_spare_modules();
    }

    /// Whether this build has nDPI in it: the `ndpi` feature was on and `callflow-ndpi-sys`
    /// found nDPI to link.
    pub fn is_built_in() -> bool {
        cfg!(ndpi_linked)
    }

    /// Whether nDPI decrypts QUIC's Initial packets, as ndpiReader's does: it was built
    /// with libgcrypt. Without it, QUIC flows stay `QUIC` where ndpiReader names the
    /// service from the encrypted client hello (`Google`, `DoH_DoT`...). False without nDPI.
    pub fn decrypts_quic() -> bool {
        #[cfg(ndpi_linked)]
        return ffi::has_gcrypt();
        #[cfg(not(ndpi_linked))]
        false
    }

    /// `Ok` when nDPI is built in, else why not ([`Error::NotBuiltIn`] or
    /// [`Error::SourceMissing`]): what [`NdpiClassifier::new`] would fail with, for a
    /// message before falling back to the heuristic classifier.
    pub fn availability() -> Result<(), Error> {
        if cfg!(ndpi_linked) {
            Ok(())
        } else if cfg!(feature = "ndpi") {
            Err(Error::SourceMissing)
        } else {
            Err(Error::NotBuiltIn)
        }
    }

    /// nDPI's name for a protocol id (`SIP`, `RTP`, `Unknown`, ...).
    pub fn protocol_name(&self, id: u16) -> &str {
        #[cfg(ndpi_linked)]
        {
            self.module.name(id)
        }
        #[cfg(not(ndpi_linked))]
        {
            let _ = id;
            "Unknown"
        }
    }

    /// The name ndpiReader prints for a verdict: `MASTER.APP` when both are known and
    /// differ (ndpi_protocol2name), else the one that is known.
    pub fn label(&self, d: &Detection) -> String {
        if d.master != 0 && d.master != d.app {
            if d.app != 0 {
                format!("{}.{}", self.protocol_name(d.master), self.protocol_name(d.app))
            } else {
                self.protocol_name(d.master).to_string()
            }
        } else {
            self.protocol_name(d.app).to_string()
        }
    }

    /// The name ndpiReader's per-protocol table counts a flow under: the application
    /// protocol, or the master when no application was found.
    pub fn table_name(&self, d: &Detection) -> &str {
        self.protocol_name(if d.app != 0 { d.app } else { d.master })
    }

    /// callflowd's protocol for a verdict: the application protocol if we know it, else the master.
    pub fn app_protocol(&self, d: &Detection) -> AppProtocol {
        let of = |id: u16| match self.protocol_name(id) {
            "SIP" => AppProtocol::Sip,
            "RTP" => AppProtocol::Rtp,
            "RTCP" => AppProtocol::Rtcp,
            "DIAMETER" => AppProtocol::Diameter,
            "GTP_U" => AppProtocol::GtpU,
            "GTP" | "GTP_C" | "GTP_PRIME" => AppProtocol::GtpC,
            "DNS" => AppProtocol::Dns,
            "HTTP" => AppProtocol::Http,
            "TLS" => AppProtocol::Tls,
            "STUN" => AppProtocol::Stun,
            _ => AppProtocol::Unknown,
        };
        match of(d.app) {
            AppProtocol::Unknown => of(d.master),
            known => known,
        }
    }

    /// Feeds one packet to nDPI through the flow cache and returns the flow's verdict so
    /// far; `None` for what nDPI cannot take (SCTP) or when the cache is full. nDPI gets
    /// IP and UDP/TCP headers rebuilt around the decoded payload (`synth`): this is how
    /// the correlator's traffic, after tunnels and reassembly, is classified.
    pub fn detect(&mut self, p: &Payload<'_>, meta: &PacketMeta) -> Option<Detection> {
        self.sweep(meta.time_ms);
        let key = FlowKey::new(p.transport, p.src, p.dst);
        #[cfg(ndpi_linked)]
        {
            if !synth::build(p, meta.tcp, &mut self.buf) {
                return None;
            }
            // The buffer is lent out while `feed` borrows the classifier mutably.
            let buf = std::mem::take(&mut self.buf);
            let detection = self.feed(key, &buf, meta.time_ms);
            self.buf = buf;
            detection
        }
        #[cfg(not(ndpi_linked))]
        {
            let _ = (key, &mut self.buf, &self.heuristic);
            None
        }
    }

    /// Feeds one frame as `callflow-cli classify` reads it ([`FrameInput`]) and returns its
    /// flow and the flow's verdict so far (`None` as for [`Self::detect`]). ndpiReader's
    /// packets go to nDPI byte for byte; capture time is made monotonic as ndpiReader does
    /// (a packet older than the previous one gets the previous one's time).
    pub fn detect_input(&mut self, input: &FrameInput<'_>) -> Option<Detection> {
        let time_ms = input.time_ms().max(self.last_input_ms);
        self.last_input_ms = time_ms;
        match input {
            FrameInput::Reader(p, _) => {
                self.sweep(time_ms);
                #[cfg(ndpi_linked)]
                {
                    self.feed(p.key, p.ip, time_ms)
                }
                #[cfg(not(ndpi_linked))]
                {
                    let _ = p;
                    None
                }
            }
            FrameInput::Decoded(payload, meta) => {
                let mut meta = *meta;
                meta.time_ms = time_ms;
                self.detect(payload, &meta)
            }
        }
    }

    /// One IP packet of flow `key` through the flow cache into nDPI, with ndpiReader's
    /// packet budget and give-up rules.
    #[cfg(ndpi_linked)]
    fn feed(&mut self, key: FlowKey, packet: &[u8], time_ms: u64) -> Option<Detection> {
        if !self.flows.contains_key(&key) {
            if self.flows.len() >= self.opts.max_flows {
                return None;
            }
            let unknown = Detection { master: 0, app: 0, confidence: NdpiConfidence::Unknown, guessed: false };
            let flow = self.module.new_flow();
            self.flows
                .insert(key, Entry { state: State::Detecting { flow, packets: 0 }, detection: unknown, last_ms: 0 });
        }
        // ndpiReader's budgets are for TCP and UDP; a flow of another protocol (ICMP, IGMP,
        // ...) is fed until nDPI names it, as ndpiReader feeds it.
        let budget = match key.protocol {
            6 => self.opts.tcp_packet_budget,
            17 => self.opts.udp_packet_budget,
            _ => u32::MAX,
        };
        let entry = self.flows.get_mut(&key)?;
        entry.last_ms = time_ms;
        let finished = match &mut entry.state {
            State::Detecting { flow, packets } => {
                *packets += 1;
                // ndpiReader's rule: the packet that exceeds the budget is still
                // inspected, then detection ends.
                let enough = *packets > budget;
                let d = self.module.process(flow, packet, time_ms);
                entry.detection = d;
                if enough || d.app != 0 {
                    if !enough && self.module.wants_more(flow) {
                        false
                    } else {
                        if d.app == 0 {
                            entry.detection = self.module.give_up(flow);
                        }
                        true
                    }
                } else {
                    false
                }
            }
            State::Done => false,
        };
        if finished {
            // Dropping the old state frees nDPI's flow memory as soon as it is not needed.
            entry.state = State::Done;
        }
        Some(entry.detection)
    }

    /// Ends detection on every flow still undecided, as ndpiReader does at the end of a
    /// capture (with guessing), so [`Self::flows`] gives final verdicts.
    pub fn give_up_all(&mut self) {
        #[cfg(ndpi_linked)]
        for entry in self.flows.values_mut() {
            if let State::Detecting { flow, .. } = &mut entry.state {
                entry.detection = self.module.give_up(flow);
                entry.state = State::Done;
            }
        }
    }

    /// Every flow's final verdict, for a report on a whole capture: the undecided flows
    /// end with nDPI's guess ([`Self::give_up_all`]), and the flows dropped for idleness
    /// (with `keep_expired`) are there too; the cache is left with the decided flows.
    pub fn final_verdicts(&mut self) -> HashMap<FlowKey, Detection> {
        self.give_up_all();
        let mut all: HashMap<FlowKey, Detection> = self.take_expired().into_iter().collect();
        all.extend(self.flows().map(|(k, d)| (*k, *d)));
        all
    }

    /// Every flow in the cache with its verdict so far.
    pub fn flows(&self) -> impl Iterator<Item = (&FlowKey, &Detection)> {
        self.flows.iter().map(|(k, e)| (k, &e.detection))
    }

    /// The flows dropped for idleness since the last call (only with `keep_expired`).
    pub fn take_expired(&mut self) -> Vec<(FlowKey, Detection)> {
        std::mem::take(&mut self.expired)
    }

    /// Drops flows idle for the idle timeout, at most once a second of capture time. A flow
    /// still undecided ends as ndpiReader ends an idle one: with `ndpi_detection_giveup`'s
    /// guess (without it, an idle flow kept only what nDPI had said so far, mostly Unknown).
    fn sweep(&mut self, now_ms: u64) {
        if now_ms < self.last_sweep_ms.saturating_add(1_000) {
            return;
        }
        self.last_sweep_ms = now_ms;
        let timeout = self.opts.idle_timeout_ms;
        let keep = self.opts.keep_expired;
        let expired = &mut self.expired;
        #[cfg(ndpi_linked)]
        let module = &mut self.module;
        self.flows.retain(|key, e| {
            let idle = now_ms.saturating_sub(e.last_ms) >= timeout;
            if idle && keep {
                #[cfg(ndpi_linked)]
                if let State::Detecting { flow, .. } = &mut e.state {
                    e.detection = module.give_up(flow);
                }
                expired.push((*key, e.detection));
            }
            !idle
        });
    }

    fn to_classification(&self, d: &Detection) -> Option<Classification> {
        let protocol = self.app_protocol(d);
        if protocol == AppProtocol::Unknown {
            return None;
        }
        let confidence = match d.confidence {
            NdpiConfidence::Dpi | NdpiConfidence::DpiCache => Confidence::Signature,
            NdpiConfidence::Port => Confidence::Port,
            NdpiConfidence::Ip | NdpiConfidence::Unknown => Confidence::Guessed,
        };
        Some(Classification { protocol, confidence, classifier: "ndpi" })
    }
}

impl Classifier for NdpiClassifier {
    fn name(&self) -> &'static str {
        "ndpi"
    }

    /// Without a capture time, flows never idle out here; the correlator calls
    /// `classify_packet`.
    fn classify(&mut self, payload: &Payload<'_>) -> Classification {
        let now = self.last_sweep_ms;
        self.classify_packet(payload, &PacketMeta::at(now))
    }

    fn classify_packet(&mut self, payload: &Payload<'_>, meta: &PacketMeta) -> Classification {
        let ndpi = self.detect(payload, meta).and_then(|d| self.to_classification(&d));
        // nDPI's telecom verdicts win; where it knows nothing of ours (yet), the heuristic answers.
        ndpi.unwrap_or_else(|| self.heuristic.classify(payload))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flow_keys_are_the_same_both_ways() {
        let x: SocketAddr = "10.0.0.1:5060".parse().unwrap();
        let y: SocketAddr = "10.0.0.2:40000".parse().unwrap();
        assert_eq!(FlowKey::new(TransportKind::Udp, x, y), FlowKey::new(TransportKind::Udp, y, x));
        assert_ne!(FlowKey::new(TransportKind::Udp, x, y), FlowKey::new(TransportKind::Tcp, x, y));
    }

    #[cfg(not(ndpi_linked))]
    #[test]
    fn without_ndpi_new_says_why() {
        let expected = if cfg!(feature = "ndpi") { "SourceMissing" } else { "NotBuiltIn" };
        let err = NdpiClassifier::new(Options::default()).unwrap_err();
        assert_eq!(format!("{err:?}"), expected);
        assert_eq!(format!("{:?}", NdpiClassifier::availability().unwrap_err()), expected);
        assert!(!NdpiClassifier::is_built_in());
    }

    #[cfg(ndpi_linked)]
    #[test]
    fn with_ndpi_linked_it_is_available() {
        assert!(NdpiClassifier::availability().is_ok());
        assert!(NdpiClassifier::is_built_in());
    }

    #[cfg(ndpi_linked)]
    mod with_ndpi {
        use super::*;

        fn udp(src: &str, dst: &str, bytes: &[u8]) -> (SocketAddr, SocketAddr, Vec<u8>) {
            (src.parse().unwrap(), dst.parse().unwrap(), bytes.to_vec())
        }

        #[test]
        fn sip_on_an_odd_port_is_found_by_dpi_and_the_flow_is_created_once() {
            let mut c = NdpiClassifier::new(Options::default()).unwrap();
            let invite = b"INVITE sip:bob@example.com SIP/2.0\r\nVia: SIP/2.0/UDP 10.0.0.1:8060;branch=z9hG4bK1\r\n\
                           From: <sip:alice@example.com>;tag=1\r\nTo: <sip:bob@example.com>\r\nCall-ID: abc\r\n\
                           CSeq: 1 INVITE\r\nContent-Length: 0\r\n\r\n";
            let (a, b, bytes) = udp("10.0.0.1:8060", "10.0.0.2:8060", invite);
            let v = c.classify_packet(&Payload::udp(a, b, &bytes), &PacketMeta::at(1_000));
            assert_eq!((v.protocol, v.classifier), (AppProtocol::Sip, "ndpi"));
            let ok = b"SIP/2.0 200 OK\r\nCall-ID: abc\r\nCSeq: 1 INVITE\r\nContent-Length: 0\r\n\r\n";
            c.classify_packet(&Payload::udp(b, a, ok), &PacketMeta::at(1_010));
            assert_eq!(c.flows().count(), 1);
            let (_, d) = c.flows().next().unwrap();
            assert_eq!(c.label(d), "SIP");
            assert_eq!(d.confidence, NdpiConfidence::Dpi);
        }

        #[test]
        fn budget_then_give_up_and_idle_release() {
            let opts =
                Options { udp_packet_budget: 3, idle_timeout_ms: 10_000, keep_expired: true, ..Options::default() };
            let mut c = NdpiClassifier::new(opts).unwrap();
            let (a, b, junk) = udp("10.0.0.1:40000", "10.0.0.2:41000", &[0x5a; 40]);
            for i in 0..6 {
                c.detect(&Payload::udp(a, b, &junk), &PacketMeta::at(1_000 + i)).unwrap();
            }
            // After the budget the flow's nDPI state is gone: detection is over.
            assert!(matches!(c.flows.values().next().unwrap().state, State::Done));
            // An idle flow is released on the next sweep, and reported as expired.
            let (x, y, other) = udp("10.0.0.3:1", "10.0.0.4:2", &[1; 8]);
            c.detect(&Payload::udp(x, y, &other), &PacketMeta::at(20_000)).unwrap();
            assert_eq!(c.flows().count(), 1);
            let expired = c.take_expired();
            assert_eq!(expired.len(), 1);
            assert_eq!(expired[0].0, FlowKey::new(TransportKind::Udp, a, b));
        }

        #[test]
        fn a_flow_dropped_for_idleness_before_ndpi_decides_gets_ndpis_guess() {
            // WebattackXSS.pcap's short HTTP flows, idle for minutes, were reported Unknown
            // where ndpiReader guesses HTTP from the port.
            let opts = Options { idle_timeout_ms: 10_000, keep_expired: true, ..Options::default() };
            let mut c = NdpiClassifier::new(opts).unwrap();
            let (a, b, junk) = udp("10.0.0.1:40000", "10.0.0.2:53", &[0x5a; 40]);
            c.detect(&Payload::udp(a, b, &junk), &PacketMeta::at(1_000)).unwrap();
            let (x, y, other) = udp("10.0.0.3:1", "10.0.0.4:2", &[1; 8]);
            c.detect(&Payload::udp(x, y, &other), &PacketMeta::at(20_000)).unwrap();
            let expired = c.take_expired();
            assert_eq!(expired.len(), 1);
            assert_eq!((c.label(&expired[0].1), expired[0].1.guessed), ("DNS".to_string(), true));
        }

        #[test]
        fn a_capture_report_keeps_a_flow_whole_however_long_it_is_silent() {
            let mut c = NdpiClassifier::new(Options::capture_report()).unwrap();
            let (a, b, junk) = udp("10.0.0.1:40000", "10.0.0.2:41000", &[0x5a; 40]);
            c.detect(&Payload::udp(a, b, &junk), &PacketMeta::at(1_000)).unwrap();
            c.detect(&Payload::udp(a, b, &junk), &PacketMeta::at(1_000 + 3_600_000)).unwrap();
            assert!(c.take_expired().is_empty());
            assert_eq!(c.final_verdicts().len(), 1);
        }

        #[test]
        fn unknown_traffic_falls_back_to_the_heuristic() {
            let mut c = NdpiClassifier::new(Options::default()).unwrap();
            let mut rtp = vec![0x80, 0x00, 0x00, 0x01, 0, 0, 0, 160, 0x11, 0x22, 0x33, 0x44];
            rtp.extend_from_slice(&[0xd5; 160]);
            let v = c.classify_packet(
                &Payload::udp("10.0.0.1:16384".parse().unwrap(), "10.0.0.2:20000".parse().unwrap(), &rtp),
                &PacketMeta::at(5),
            );
            // One packet is not enough for nDPI's RTP dissector; the heuristic guesses.
            assert_eq!(v.protocol, AppProtocol::Rtp);
        }
    }
}
