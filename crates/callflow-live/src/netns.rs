//! Finding a network namespace (by path, by inode, or from a container description) and entering it on the calling thread.
//!
//! A namespace is held by an open file (a `/proc/PID/ns/net` link, a bind mount such as
//! `/run/netns/NAME`): once [`resolve`] has opened it, the namespace cannot vanish or
//! be replaced under us, whatever happens to the process or mount that led to it.
//! [`Netns::enter`] calls `setns`, which moves the *calling thread* only: callers run it
//! on a thread of their own that does nothing else (see `capture`).
//!
//! An inode number alone may have been reused by a newer namespace; a container
//! description with the PID of a process in the namespace and that process's start time
//! (field 22 of `/proc/PID/stat`, in clock ticks since boot, as Packetflix's clients send
//! it) detects that: the process must still exist, with that start time, in that
//! namespace, or the reference is stale.

use crate::error::{Capability, LiveError};
use serde::Deserialize;
use std::fs::File;
use std::io;
use std::os::fd::AsFd;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

/// The `f_type` of the nsfs file system that namespace files live on.
const NSFS_MAGIC: i64 = 0x6e73_6673;

/// Which network namespace to capture in.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum NetnsTarget {
    /// A namespace file: `/run/netns/NAME`, `/proc/PID/ns/net`, a bind mount.
    Path(PathBuf),
    /// The namespace's inode number (as `ls -L -i /proc/PID/ns/net` or `lsns` show it).
    Inode(u64),
    /// A Packetflix container description (its `container=` JSON).
    Container(ContainerTarget),
}

/// A capture target as Packetflix's clients describe it (csharg's `api.Target`): the
/// fields the service uses; the others are accepted and ignored.
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(default)]
pub struct ContainerTarget {
    /// The namespace's inode number.
    pub netns: Option<u64>,
    /// A process in the namespace (a container's first process), to check `netns` is current.
    pub pid: Option<u32>,
    /// That process's start time, in clock ticks after boot (`/proc/PID/stat` field 22).
    pub starttime: Option<u64>,
    /// The container's, pod's or namespace's name (shown in the stream's header comment).
    pub name: String,
    /// The kind of target (`docker`, `pod`, `proc`, `bindmount`, ...).
    #[serde(rename = "type")]
    pub kind: String,
    /// A prefix qualifying the name (Docker-in-Docker setups).
    pub prefix: String,
    /// The node the target is on.
    #[serde(rename = "node-name")]
    pub node_name: String,
    /// The interfaces to capture on (all of them when empty).
    #[serde(rename = "network-interfaces")]
    pub network_interfaces: Option<Vec<String>>,
}

/// An open network namespace: entering it later is race-free.
#[derive(Debug)]
pub struct Netns {
    file: File,
    inode: u64,
    path: PathBuf,
}

impl Netns {
    /// The namespace's inode number.
    pub fn inode(&self) -> u64 {
        self.inode
    }

    /// The file it was found through.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Moves the calling thread (only) into this namespace.
    pub fn enter(&self) -> Result<(), LiveError> {
        rustix::thread::move_into_link_name_space(self.file.as_fd(), Some(rustix::thread::LinkNameSpaceType::Network))
            .map_err(|err| match err {
                rustix::io::Errno::PERM => LiveError::NotPermitted {
                    action: format!("entering network namespace net:[{}]", self.inode),
                    capability: Capability::SysAdmin,
                },
                other => LiveError::Io {
                    what: format!("entering network namespace net:[{}] ({})", self.inode, self.path.display()),
                    source: other.into(),
                },
            })
    }
}

/// A description of the namespace for messages and the stream's header: `net:[INODE]`.
impl std::fmt::Display for Netns {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "net:[{}]", self.inode)
    }
}

/// Opens the namespace `target` names, checking that it is one (and, for a container
/// description, that it is still the one meant).
pub fn resolve(target: &NetnsTarget) -> Result<Netns, LiveError> {
    match target {
        NetnsTarget::Path(path) => open_path(path, None),
        NetnsTarget::Inode(inode) => find_inode(*inode),
        NetnsTarget::Container(container) => resolve_container(container),
    }
}

/// The namespace the calling process is in (for describing a capture without a target).
pub fn own_inode() -> Option<u64> {
    std::fs::metadata("/proc/self/ns/net").ok().map(|m| m.ino())
}

fn open_path(path: &Path, want_inode: Option<u64>) -> Result<Netns, LiveError> {
    let file = File::open(path).map_err(|err| match err.kind() {
        io::ErrorKind::NotFound => LiveError::NoSuchNamespace(format!("{} does not exist", path.display())),
        io::ErrorKind::PermissionDenied => {
            LiveError::NotPermitted { action: format!("opening {}", path.display()), capability: Capability::SysAdmin }
        }
        _ => LiveError::Io { what: format!("opening {}", path.display()), source: err },
    })?;
    // f_type is 32 bits on 32-bit targets: the cast is not a no-op there.
    #[allow(clippy::unnecessary_cast)]
    let is_nsfs = rustix::fs::fstatfs(&file).map(|s| s.f_type as i64 == NSFS_MAGIC).unwrap_or(false);
    if !is_nsfs {
        return Err(LiveError::NoSuchNamespace(format!("{} is not a namespace file", path.display())));
    }
    let inode =
        file.metadata().map_err(|source| LiveError::Io { what: format!("reading {}", path.display()), source })?.ino();
    if let Some(want) = want_inode {
        // The file was found by its inode, then opened: check it is still that one.
        if want != inode {
            return Err(LiveError::NoSuchNamespace(format!("net:[{want}] went away while being opened")));
        }
    }
    Ok(Netns { file, inode, path: path.to_owned() })
}

/// Every place a network namespace can be held open by name: named namespaces (`ip netns`),
/// other nsfs bind mounts, and the processes' own.
fn candidates() -> Vec<PathBuf> {
    let mut found = Vec::new();
    if let Ok(dir) = std::fs::read_dir("/run/netns") {
        found.extend(dir.flatten().map(|e| e.path()));
    }
    if let Ok(mountinfo) = std::fs::read_to_string("/proc/self/mountinfo") {
        for line in mountinfo.lines() {
            // Fields: id parent major:minor root mount-point options ... - fstype source ...
            let Some((left, right)) = line.split_once(" - ") else { continue };
            if right.split(' ').next() == Some("nsfs") {
                if let Some(mount_point) = left.split(' ').nth(4) {
                    found.push(PathBuf::from(unescape_mount(mount_point)));
                }
            }
        }
    }
    if let Ok(proc) = std::fs::read_dir("/proc") {
        for entry in proc.flatten() {
            if entry.file_name().to_str().is_some_and(|n| n.bytes().all(|b| b.is_ascii_digit())) {
                found.push(entry.path().join("ns/net"));
            }
        }
    }
    found
}

/// mountinfo escapes space, tab, newline and backslash as `\ooo`.
fn unescape_mount(field: &str) -> String {
    let bytes = field.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let octal = bytes
            .get(i + 1..i + 4)
            .filter(|d| d.iter().all(|b| (b'0'..=b'3').contains(&d[0]) && (b'0'..=b'7').contains(b)));
        if let (b'\\', Some(digits)) = (bytes[i], octal) {
            out.push(digits.iter().fold(0u8, |value, d| value * 8 + (d - b'0')));
            i += 4;
            continue;
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn find_inode(inode: u64) -> Result<Netns, LiveError> {
    if inode == 0 {
        return Err(LiveError::NoSuchNamespace("net:[0] is not a namespace".into()));
    }
    for path in candidates() {
        // `metadata` follows the /proc/PID/ns/net link to the namespace itself.
        if std::fs::metadata(&path).is_ok_and(|m| m.ino() == inode) {
            match open_path(&path, Some(inode)) {
                Ok(netns) => return Ok(netns),
                // The process exited between the look and the open: keep looking.
                Err(LiveError::NoSuchNamespace(_)) => continue,
                Err(other) => return Err(other),
            }
        }
    }
    Err(LiveError::NoSuchNamespace(format!("net:[{inode}]: no process, /run/netns entry or bind mount holds it")))
}

/// The start time (field 22, clock ticks after boot) of process `pid`, or `None` when it is gone.
pub fn process_start_time(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) is in parentheses and may hold spaces or parentheses.
    let after_name = &stat[stat.rfind(')')? + 1..];
    // Fields from the state (field 3) on; the start time is field 22.
    after_name.split_whitespace().nth(22 - 3)?.parse().ok()
}

fn resolve_container(container: &ContainerTarget) -> Result<Netns, LiveError> {
    let Some(pid) = container.pid.filter(|&p| p > 0) else {
        return match container.netns {
            Some(inode) if inode > 0 => find_inode(inode),
            _ => Err(LiveError::InvalidTarget(format!(
                "the container description {:?} gives neither a netns nor a pid (name lookups need a discovery service, which callflowd does not have)",
                container.name
            ))),
        };
    };
    if let Some(starttime) = container.starttime.filter(|&t| t > 0) {
        match process_start_time(pid) {
            None => {
                return Err(LiveError::StaleNamespace(format!(
                    "process {pid} of {:?} no longer exists",
                    container.name
                )))
            }
            Some(actual) if actual != starttime => {
                return Err(LiveError::StaleNamespace(format!(
                    "process {pid} of {:?} started at tick {actual}, not {starttime}: the PID was reused",
                    container.name
                )))
            }
            Some(_) => {}
        }
    }
    let path = PathBuf::from(format!("/proc/{pid}/ns/net"));
    let netns = open_path(&path, None).map_err(|err| match err {
        LiveError::NoSuchNamespace(_) => {
            LiveError::StaleNamespace(format!("process {pid} of {:?} no longer exists", container.name))
        }
        other => other,
    })?;
    match container.netns {
        Some(inode) if inode > 0 && inode != netns.inode => Err(LiveError::StaleNamespace(format!(
            "process {pid} of {:?} is in net:[{}], not net:[{inode}]",
            container.name, netns.inode
        ))),
        _ => Ok(netns),
    }
}

/// The interfaces of the namespace the calling thread is in, in the kernel's order.
///
/// `/proc/thread-self/net/dev` is the calling thread's namespace; `/sys/class/net` would
/// show the namespace sysfs was mounted from, and `/proc/self/net` the main thread's.
pub fn thread_interfaces() -> Result<Vec<String>, LiveError> {
    let text = std::fs::read_to_string("/proc/thread-self/net/dev")
        .map_err(|source| LiveError::Io { what: "reading /proc/thread-self/net/dev".into(), source })?;
    // Two header lines, then "  name: counters...". Interface names cannot hold ':'.
    Ok(text
        .lines()
        .skip(2)
        .filter_map(|line| line.split_once(':').map(|(name, _)| name.trim().to_owned()))
        .filter(|name| !name.is_empty())
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn own_namespace_is_found_by_its_inode() {
        let inode = own_inode().expect("/proc/self/ns/net");
        let netns = resolve(&NetnsTarget::Inode(inode)).unwrap();
        assert_eq!(netns.inode(), inode);
        assert_eq!(netns.to_string(), format!("net:[{inode}]"));
    }

    #[test]
    fn an_inode_nobody_holds_is_no_such_namespace() {
        let err = resolve(&NetnsTarget::Inode(1)).unwrap_err();
        assert!(matches!(err, LiveError::NoSuchNamespace(ref m) if m.contains("net:[1]")), "{err}");
    }

    #[test]
    fn a_file_that_is_not_a_namespace_is_refused() {
        let err = resolve(&NetnsTarget::Path("/proc/self/stat".into())).unwrap_err();
        assert!(matches!(err, LiveError::NoSuchNamespace(ref m) if m.contains("not a namespace")), "{err}");
        let err = resolve(&NetnsTarget::Path("/nonexistent/netns".into())).unwrap_err();
        assert!(matches!(err, LiveError::NoSuchNamespace(ref m) if m.contains("does not exist")), "{err}");
    }

    #[test]
    fn a_container_whose_pid_was_reused_is_stale() {
        let pid = std::process::id();
        let start = process_start_time(pid).expect("own start time");
        let inode = own_inode().unwrap();
        let current =
            ContainerTarget { netns: Some(inode), pid: Some(pid), starttime: Some(start), ..Default::default() };
        assert_eq!(resolve(&NetnsTarget::Container(current.clone())).unwrap().inode(), inode);

        let reused = ContainerTarget { starttime: Some(start + 1), ..current.clone() };
        let err = resolve(&NetnsTarget::Container(reused)).unwrap_err();
        assert!(matches!(err, LiveError::StaleNamespace(ref m) if m.contains("reused")), "{err}");

        let moved = ContainerTarget { netns: Some(inode + 1), ..current };
        let err = resolve(&NetnsTarget::Container(moved)).unwrap_err();
        assert!(matches!(err, LiveError::StaleNamespace(ref m) if m.contains("not net:[")), "{err}");
    }

    #[test]
    fn a_container_json_as_csharg_sends_it_parses() {
        let json = r#"{"name":"sbc","type":"docker","netns":4026532000,"network-interfaces":["eth0","lo"],"prefix":"","starttime":123,"pid":42,"node-name":"n1"}"#;
        let target: ContainerTarget = serde_json::from_str(json).unwrap();
        assert_eq!(target.netns, Some(4026532000));
        assert_eq!(target.pid, Some(42));
        assert_eq!(target.starttime, Some(123));
        assert_eq!(target.network_interfaces, Some(vec!["eth0".to_owned(), "lo".to_owned()]));
        assert_eq!(target.kind, "docker");
    }

    #[test]
    fn mount_points_are_unescaped() {
        assert_eq!(unescape_mount(r"/run/netns/a\040b"), "/run/netns/a b");
        assert_eq!(unescape_mount("/run/netns/plain"), "/run/netns/plain");
        assert_eq!(unescape_mount(r"/x\04"), r"/x\04");
    }

    #[test]
    fn this_threads_interfaces_include_loopback() {
        assert!(thread_interfaces().unwrap().iter().any(|n| n == "lo"));
    }
}
