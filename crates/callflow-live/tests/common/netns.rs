//! Network namespaces joined by a veth pair for the capture tests: a sender namespace and a capture namespace, removed on drop.
//!
//! Nothing is added to the host's own namespace, so tests running at once (or another
//! checkout's) cannot collide on addresses; names carry the PID and a counter.
//! Needs root: [`root_or_skip`] says so and skips, except when `CI` is set, where it fails.
#![allow(dead_code)]

use std::net::UdpSocket;
use std::path::PathBuf;
use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};

/// The sender's address on the link.
pub const SENDER_IP: &str = "192.0.2.1";
/// The capture side's address on the link.
pub const CAPTURE_IP: &str = "192.0.2.2";

/// Whether the test can make namespaces; without root it prints why it skips, and in CI
/// (`CI` set) it panics instead.
pub fn root_or_skip(test: &str) -> bool {
    let root = std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| s.lines().find(|l| l.starts_with("Uid:")).map(|l| l.split_whitespace().nth(2) == Some("0")))
        .unwrap_or(false);
    let has_ip = Command::new("ip").arg("-V").output().is_ok_and(|o| o.status.success());
    if root && has_ip {
        return true;
    }
    let why = if root { "the `ip` command (iproute2) is missing" } else { "not root: network namespaces need root" };
    assert!(std::env::var_os("CI").is_none(), "{test}: {why} (CI is set, so this fails instead of skipping)");
    eprintln!("{test}: skipped: {why}");
    false
}

fn ip(args: &[&str]) {
    let output = Command::new("ip").args(args).output().expect("running ip");
    assert!(output.status.success(), "ip {}: {}", args.join(" "), String::from_utf8_lossy(&output.stderr));
}

/// Two namespaces joined by a veth pair, both ends up and addressed.
pub struct VethPair {
    /// The sender namespace's name (`/run/netns/NAME`).
    pub sender_ns: String,
    /// The capture namespace's name.
    pub capture_ns: String,
    /// The veth end in the capture namespace.
    pub capture_if: String,
    /// The veth end in the sender namespace.
    pub sender_if: String,
}

impl VethPair {
    /// Makes the pair; `capture_if` names the capture side's end (unique names are the
    /// caller's choice only when it wants a particular one, e.g. with a comma).
    pub fn new(capture_if: Option<&str>) -> VethPair {
        static NEXT: AtomicU32 = AtomicU32::new(0);
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let tag = format!("{:x}{n}", std::process::id());
        let pair = VethPair {
            sender_ns: format!("cf-{tag}-s"),
            capture_ns: format!("cf-{tag}-c"),
            capture_if: capture_if.map_or_else(|| format!("cf{tag}c"), str::to_owned),
            sender_if: format!("cf{tag}s"),
        };
        let sender_if = pair.sender_if.clone();
        ip(&["netns", "add", &pair.sender_ns]);
        ip(&["netns", "add", &pair.capture_ns]);
        ip(&[
            "link",
            "add",
            &sender_if,
            "netns",
            &pair.sender_ns,
            "type",
            "veth",
            "peer",
            "name",
            &pair.capture_if,
            "netns",
            &pair.capture_ns,
        ]);
        for (ns, dev, addr) in
            [(&pair.sender_ns, &sender_if, SENDER_IP), (&pair.capture_ns, &pair.capture_if, CAPTURE_IP)]
        {
            ip(&["-n", ns, "addr", "add", &format!("{addr}/24"), "dev", dev]);
            ip(&["-n", ns, "link", "set", dev, "up"]);
            ip(&["-n", ns, "link", "set", "lo", "up"]);
        }
        pair
    }

    /// The capture namespace's file.
    pub fn capture_path(&self) -> PathBuf {
        PathBuf::from(format!("/run/netns/{}", self.capture_ns))
    }

    /// The capture namespace's inode.
    pub fn capture_inode(&self) -> u64 {
        use std::os::unix::fs::MetadataExt;
        std::fs::metadata(self.capture_path()).unwrap().ino()
    }

    /// Sends `count` UDP datagrams of `payload` from the sender namespace to the capture
    /// side's `port` (from a thread that enters the sender namespace).
    pub fn send_udp(&self, port: u16, count: usize, payload: &[u8]) {
        let path = PathBuf::from(format!("/run/netns/{}", self.sender_ns));
        let payload = payload.to_vec();
        std::thread::spawn(move || {
            let netns = callflow_live::netns::resolve(&callflow_live::netns::NetnsTarget::Path(path)).unwrap();
            netns.enter().unwrap();
            let socket = UdpSocket::bind((SENDER_IP, 0)).unwrap();
            for _ in 0..count {
                socket.send_to(&payload, (CAPTURE_IP, port)).unwrap();
            }
        })
        .join()
        .unwrap();
    }
}

impl VethPair {
    /// Sends each of `frames` as it is (whole Ethernet frames) from the sender's end, `gap`
    /// apart, from a thread that enters the sender namespace.
    pub fn send_frames(&self, frames: Vec<Vec<u8>>, gap: std::time::Duration) {
        let path = PathBuf::from(format!("/run/netns/{}", self.sender_ns));
        let dev = self.sender_if.clone();
        std::thread::spawn(move || {
            let netns = callflow_live::netns::resolve(&callflow_live::netns::NetnsTarget::Path(path)).unwrap();
            netns.enter().unwrap();
            let mut out = pcap::Capture::from_device(dev.as_str()).unwrap().open().unwrap();
            for frame in frames {
                out.sendpacket(frame).unwrap();
                std::thread::sleep(gap);
            }
        })
        .join()
        .unwrap();
    }
}

impl Drop for VethPair {
    fn drop(&mut self) {
        // Deleting a namespace deletes the veth end in it, and so its peer.
        for ns in [&self.sender_ns, &self.capture_ns] {
            let _ = Command::new("ip").args(["netns", "del", ns]).output();
        }
    }
}

/// The UDP destination port of an Ethernet/IPv4/UDP frame.
pub fn udp_dst_port(frame: &[u8]) -> Option<u16> {
    if frame.len() < 14 + 20 + 8 || frame[12..14] != [0x08, 0x00] || frame[23] != 17 {
        return None;
    }
    let ihl = usize::from(frame[14] & 0x0f) * 4;
    let udp = frame.get(14 + ihl..14 + ihl + 8)?;
    Some(u16::from_be_bytes([udp[2], udp[3]]))
}
