//! Capturing from interfaces of a network namespace with libpcap, feeding a [`FrameSender`].
//!
//! [`start`] resolves the namespace (see [`crate::netns`]), then spawns a short-lived
//! thread that enters it (`setns` moves only the calling thread), lists its interfaces,
//! checks the ones asked for, and opens and filters one libpcap handle per interface. A
//! packet socket stays in the namespace it was created in, so the handles are then read
//! from one thread per interface that need not be in the namespace at all. Every error a
//! user can cause (no such namespace, stale reference, unknown interface, bad filter,
//! missing privilege) is reported by `start` itself, before any packet flows.
//!
//! Each reading thread offers its frames to the queue with [`FrameSender::offer`], which
//! drops and counts when the consumer is behind, so a slow consumer costs packets, never
//! memory. The kernel's own drop counts (`pcap_stats`) are kept per interface and added to
//! the source's [`LiveCounters::source_dropped`](crate::LiveCounters). The handles are
//! non-blocking and the readers `poll` their sockets for at most [`POLL`] (libpcap's own
//! read timeout does not fire on an idle link: its `poll` loops until a packet comes), so
//! [`CaptureHandle::stop`] returns within about that long whatever the traffic.

use crate::channel::{FrameSender, OwnedFrame};
use crate::error::{Capability, LiveError};
use crate::netns::{self, Netns};
use callflow_decode::capture::CaptureError;
use callflow_decode::{LinkType, Timestamp};
use rustix::event::{PollFd, PollFlags, Timespec};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

pub use crate::netns::{ContainerTarget, NetnsTarget};

/// How long a read waits for a packet before checking whether to stop.
pub const POLL: Duration = Duration::from_millis(100);

/// How long the kernel holds captured packets before handing them over (TPACKET_V3's
/// block timeout): the latency of a packet on a quiet link.
const BLOCK_TIMEOUT: Duration = Duration::from_millis(20);

/// The most interfaces one capture opens (each costs a thread and a kernel buffer).
pub const MAX_INTERFACES: usize = 64;

/// The kernel buffer asked for per interface: room for bursts while the reader catches up.
const KERNEL_BUFFER: i32 = 4 << 20;

/// What to capture.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CaptureSpec {
    /// The namespace to capture in; `None` is the process's own.
    pub netns: Option<NetnsTarget>,
    /// The interfaces; empty is all the namespace has.
    pub interfaces: Vec<String>,
    /// A BPF capture filter (tcpdump syntax).
    pub filter: Option<String>,
    /// Put the interfaces in promiscuous mode (Packetflix's default; `chaste` turns it off).
    pub promiscuous: bool,
    /// Bytes kept of each packet.
    pub snaplen: u32,
}

impl Default for CaptureSpec {
    fn default() -> Self {
        CaptureSpec { netns: None, interfaces: Vec::new(), filter: None, promiscuous: true, snaplen: 262_144 }
    }
}

/// One interface being captured; its index in [`CaptureHandle::interfaces`] is the
/// `interface` number of its frames.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CapturedInterface {
    /// The interface's name in its namespace.
    pub name: String,
    /// Its link-layer type.
    pub link_type: LinkType,
    /// The snapshot length in force.
    pub snaplen: u32,
}

/// libpcap's counters for one interface (totals since the capture started).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct InterfaceStats {
    /// Packets the kernel passed the filter.
    pub received: u64,
    /// Packets the kernel dropped for lack of buffer space (the reader was behind).
    pub kernel_dropped: u64,
    /// Packets the interface or its driver dropped.
    pub interface_dropped: u64,
}

#[derive(Default)]
struct SharedStats {
    received: AtomicU64,
    kernel_dropped: AtomicU64,
    interface_dropped: AtomicU64,
}

impl SharedStats {
    fn get(&self) -> InterfaceStats {
        InterfaceStats {
            received: self.received.load(Ordering::Relaxed),
            kernel_dropped: self.kernel_dropped.load(Ordering::Relaxed),
            interface_dropped: self.interface_dropped.load(Ordering::Relaxed),
        }
    }
}

/// A running capture. Dropping it stops it too (without waiting for the threads).
pub struct CaptureHandle {
    interfaces: Vec<CapturedInterface>,
    netns_inode: Option<u64>,
    stop: Arc<AtomicBool>,
    stats: Vec<Arc<SharedStats>>,
    threads: Vec<JoinHandle<()>>,
}

impl CaptureHandle {
    /// The interfaces captured, in the order of their frames' `interface` numbers.
    pub fn interfaces(&self) -> &[CapturedInterface] {
        &self.interfaces
    }

    /// The inode of the namespace captured in.
    pub fn netns_inode(&self) -> Option<u64> {
        self.netns_inode
    }

    /// Packets the kernel dropped so far, all interfaces together (as of the last poll).
    pub fn kernel_drops(&self) -> u64 {
        self.stats.iter().map(|s| s.get().kernel_dropped + s.get().interface_dropped).sum()
    }

    /// libpcap's counters per interface (as of the last poll).
    pub fn stats(&self) -> Vec<InterfaceStats> {
        self.stats.iter().map(|s| s.get()).collect()
    }

    /// Whether every reading thread has ended (the consumer went away, or reading failed).
    pub fn finished(&self) -> bool {
        self.threads.iter().all(|t| t.is_finished())
    }

    /// Stops capturing, waits for the reading threads and closes the interfaces; returns
    /// the final counters per interface. What the kernel had already captured is still
    /// offered (the readers stop once their socket stays empty for 40 ms, or after
    /// [`POLL`] on a link that never goes quiet), so the counters add up: received =
    /// delivered + dropped.
    pub fn stop(mut self) -> Vec<InterfaceStats> {
        self.stop.store(true, Ordering::Relaxed);
        for thread in self.threads.drain(..) {
            let _ = thread.join();
        }
        self.stats()
    }
}

impl Drop for CaptureHandle {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

impl std::fmt::Debug for CaptureHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CaptureHandle")
            .field("interfaces", &self.interfaces)
            .field("netns_inode", &self.netns_inode)
            .finish()
    }
}

type Opened = Vec<(CapturedInterface, pcap::Capture<pcap::Active>)>;

/// Starts capturing what `spec` describes into `sender`.
pub fn start(spec: &CaptureSpec, sender: FrameSender) -> Result<CaptureHandle, LiveError> {
    let netns = spec.netns.as_ref().map(netns::resolve).transpose()?;
    let netns_inode = netns.as_ref().map(Netns::inode).or_else(netns::own_inode);
    let where_ = netns.as_ref().map_or_else(|| "this process's network namespace".to_owned(), |n| n.to_string());
    let spec_copy = spec.clone();
    let opener = std::thread::Builder::new()
        .name("capture-open".into())
        .spawn(move || open_all(netns.as_ref(), &spec_copy, &where_))
        .map_err(|source| LiveError::Io { what: "spawning the capture thread".into(), source })?;
    let opened = opener.join().unwrap_or_else(|_| {
        Err(LiveError::Io {
            what: "opening the capture".into(),
            source: std::io::Error::other("the opening thread panicked"),
        })
    })?;

    let stop = Arc::new(AtomicBool::new(false));
    let mut handle = CaptureHandle {
        interfaces: Vec::new(),
        netns_inode,
        stop: stop.clone(),
        stats: Vec::new(),
        threads: Vec::new(),
    };
    for (index, (interface, capture)) in opened.into_iter().enumerate() {
        let stats = Arc::new(SharedStats::default());
        let reader = Reader {
            capture,
            index: index as u32,
            name: interface.name.clone(),
            link_type: interface.link_type,
            sender: sender.clone(),
            stop: stop.clone(),
            stats: stats.clone(),
        };
        let thread = std::thread::Builder::new()
            .name(format!("capture-{}", interface.name))
            .spawn(move || reader.run())
            .map_err(|source| LiveError::Io { what: "spawning a capture thread".into(), source })?;
        handle.interfaces.push(interface);
        handle.stats.push(stats);
        handle.threads.push(thread);
    }
    Ok(handle)
}

/// On a thread of its own: enters the namespace, then opens every interface there.
fn open_all(netns: Option<&Netns>, spec: &CaptureSpec, where_: &str) -> Result<Opened, LiveError> {
    if let Some(netns) = netns {
        netns.enter()?;
    }
    let available = netns::thread_interfaces()?;
    let mut wanted: Vec<String> = if spec.interfaces.is_empty() {
        available.clone()
    } else {
        for name in &spec.interfaces {
            if !available.contains(name) {
                return Err(LiveError::UnknownInterface {
                    name: name.clone(),
                    netns: where_.to_owned(),
                    available: available.clone(),
                });
            }
        }
        spec.interfaces.clone()
    };
    // Each interface costs a thread and a kernel ring: "all" of a host with hundreds of
    // veths is refused rather than taken, and a name asked twice is opened once.
    let mut seen = std::collections::HashSet::new();
    wanted.retain(|name| seen.insert(name.clone()));
    if wanted.len() > MAX_INTERFACES {
        return Err(LiveError::InvalidTarget(format!(
            "{where_}: {} interfaces, more than the {MAX_INTERFACES} one capture may take; name the ones wanted",
            wanted.len()
        )));
    }
    if wanted.is_empty() {
        return Err(LiveError::InvalidTarget(format!("{where_} has no network interfaces")));
    }
    let mut opened = Vec::with_capacity(wanted.len());
    for name in wanted {
        let capture = open_one(&name, spec)?;
        let link_type = LinkType(capture.get_datalink().0 as u32);
        opened.push((CapturedInterface { name, link_type, snaplen: spec.snaplen }, capture));
    }
    Ok(opened)
}

fn open_one(name: &str, spec: &CaptureSpec) -> Result<pcap::Capture<pcap::Active>, LiveError> {
    let failed = |err: pcap::Error| pcap_error(name, err);
    let mut capture = pcap::Capture::from_device(name)
        .map_err(failed)?
        .promisc(spec.promiscuous)
        .snaplen(i32::try_from(spec.snaplen.max(64)).unwrap_or(i32::MAX))
        // Not immediate mode: that is TPACKET_V2, a ring of snaplen-sized slots (16 of them
        // in 4 MB at the default snaplen, so a burst overflows it); TPACKET_V3 packs packets
        // by their size and hands a block over when it is full or BLOCK_TIMEOUT old.
        .timeout(BLOCK_TIMEOUT.as_millis() as i32)
        .buffer_size(KERNEL_BUFFER)
        .precision(pcap::Precision::Nano)
        .open()
        .map_err(failed)?
        // Reads never block: the reader polls the socket itself, with a timeout, because
        // libpcap's own read timeout does not return while the link is idle.
        .setnonblock()
        .map_err(failed)?;
    // libpcap opens its packet socket without SOCK_CLOEXEC: a process this one starts (any
    // thread's `Command`) would inherit it and keep the capture open after it is stopped.
    if let Ok(flags) = rustix::io::fcntl_getfd(&capture) {
        let _ = rustix::io::fcntl_setfd(&capture, flags | rustix::io::FdFlags::CLOEXEC);
    }
    if let Some(filter) = spec.filter.as_deref().filter(|f| !f.trim().is_empty()) {
        capture.filter(filter, true).map_err(|err| LiveError::BadFilter {
            filter: filter.to_owned(),
            message: match err {
                pcap::Error::PcapError(message) => message,
                other => other.to_string(),
            },
        })?;
    }
    Ok(capture)
}

/// Sorts libpcap's errors into the ones a user can act on.
fn pcap_error(interface: &str, err: pcap::Error) -> LiveError {
    let message = match err {
        pcap::Error::PcapError(message) => message,
        other => other.to_string(),
    };
    let lower = message.to_ascii_lowercase();
    if lower.contains("permission") || lower.contains("not permitted") {
        LiveError::NotPermitted { action: format!("capturing on {interface}"), capability: Capability::NetRaw }
    } else {
        LiveError::Capture { interface: interface.to_owned(), message }
    }
}

struct Reader {
    capture: pcap::Capture<pcap::Active>,
    index: u32,
    name: String,
    link_type: LinkType,
    sender: FrameSender,
    stop: Arc<AtomicBool>,
    stats: Arc<SharedStats>,
}

impl Reader {
    fn run(mut self) {
        let mut reported_drops = 0u64;
        let mut since_check = 0u32;
        let mut last_stats = Instant::now();
        // After a stop, what the kernel already holds is still read (until the socket has
        // stayed empty for a block timeout), so that the final counters add up: every
        // packet counted as received was delivered or counted as dropped.
        // On a link that never goes quiet, draining ends at a deadline.
        let mut draining: Option<bool> = None;
        let mut drain_until = Instant::now();
        loop {
            if draining.is_none() && self.stop.load(Ordering::Relaxed) {
                draining = Some(false);
                drain_until = Instant::now() + POLL;
            }
            match self.capture.next_packet() {
                Ok(packet) => {
                    let header = packet.header;
                    // With nanosecond precision libpcap puts nanoseconds in tv_usec. The
                    // casts are not no-ops on 32-bit targets, where time_t is 32 bits.
                    #[allow(clippy::unnecessary_cast)]
                    let ts = Timestamp::from_nanos(
                        (header.ts.tv_sec as i64)
                            .saturating_mul(1_000_000_000)
                            .saturating_add(header.ts.tv_usec as i64),
                    );
                    let frame = OwnedFrame {
                        ts,
                        link_type: self.link_type,
                        data: packet.data.to_vec(),
                        orig_len: header.len,
                        interface: self.index,
                    };
                    if self.sender.offer(frame).is_err() {
                        break;
                    }
                    // While busy, refresh the counters every POLL (checking the clock
                    // every 256 packets only).
                    since_check += 1;
                    if since_check >= 256 {
                        since_check = 0;
                        if last_stats.elapsed() >= POLL {
                            self.update_stats(&mut reported_drops);
                            last_stats = Instant::now();
                        }
                        if draining.is_some() && Instant::now() >= drain_until {
                            break;
                        }
                    }
                }
                // Non-blocking: nothing waiting. Wait for the socket at most POLL, so a
                // stop is seen and the counters refreshed while the link is quiet.
                Err(pcap::Error::TimeoutExpired) => {
                    self.update_stats(&mut reported_drops);
                    last_stats = Instant::now();
                    let wait = match draining {
                        None => POLL,
                        // Once more, for the block the kernel has not handed over yet.
                        Some(false) => BLOCK_TIMEOUT * 2,
                        Some(true) => break,
                    };
                    if draining.is_some() {
                        draining = Some(true);
                    }
                    let mut fds = [PollFd::new(&self.capture, PollFlags::IN)];
                    let timeout = Timespec { tv_sec: 0, tv_nsec: wait.as_nanos() as _ };
                    match rustix::event::poll(&mut fds, Some(&timeout)) {
                        Ok(_) | Err(rustix::io::Errno::INTR) => {}
                        Err(err) => {
                            self.fail(&format!("waiting for packets: {err}"));
                            break;
                        }
                    }
                }
                Err(err) => {
                    self.fail(&err.to_string());
                    break;
                }
            }
        }
        self.update_stats(&mut reported_drops);
    }

    fn fail(&self, message: &str) {
        let message = format!("capture on {} failed: {message}", self.name);
        self.sender.fail(CaptureError::Io(std::io::Error::other(message)));
    }

    fn update_stats(&mut self, reported_drops: &mut u64) {
        let Ok(stat) = self.capture.stats() else { return };
        // libpcap's counters are 32-bit and wrap; keep 64-bit totals by adding the
        // difference from the last reading.
        let update = |total: &AtomicU64, now: u32| {
            let old = total.load(Ordering::Relaxed);
            let delta = now.wrapping_sub(old as u32);
            total.store(old + u64::from(delta), Ordering::Relaxed);
        };
        update(&self.stats.received, stat.received);
        update(&self.stats.kernel_dropped, stat.dropped);
        update(&self.stats.interface_dropped, stat.if_dropped);
        let drops =
            self.stats.kernel_dropped.load(Ordering::Relaxed) + self.stats.interface_dropped.load(Ordering::Relaxed);
        self.sender.counters().source_dropped.fetch_add(drops - *reported_drops, Ordering::Relaxed);
        *reported_drops = drops;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::channel::channel;

    #[test]
    fn an_unknown_interface_is_named_with_the_ones_there_are() {
        let (tx, _rx) = channel(4, POLL);
        let spec = CaptureSpec { interfaces: vec!["nosuch0".into()], ..CaptureSpec::default() };
        let err = start(&spec, tx).unwrap_err();
        match &err {
            LiveError::UnknownInterface { name, available, .. } => {
                assert_eq!(name, "nosuch0");
                assert!(available.iter().any(|n| n == "lo"), "{available:?}");
            }
            other => panic!("expected UnknownInterface, got {other}"),
        }
        assert!(err.to_string().contains("\"nosuch0\""), "{err}");
    }
}
