//! `LiveError`: why a live source could not start (or stopped), one variant per cause a user can act on.

use std::fmt;

/// A Linux capability a live source needs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Capability {
    /// `CAP_SYS_ADMIN`: entering another network namespace (`setns`).
    SysAdmin,
    /// `CAP_NET_RAW`: opening a packet socket.
    NetRaw,
}

impl fmt::Display for Capability {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Capability::SysAdmin => "CAP_SYS_ADMIN",
            Capability::NetRaw => "CAP_NET_RAW",
        })
    }
}

/// Why a live source could not start, or why it stopped.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LiveError {
    /// No network namespace matches what the client named (an inode nobody holds, a path
    /// that does not exist or is not a network namespace).
    #[error("no such network namespace: {0}")]
    NoSuchNamespace(String),
    /// The namespace reference is out of date: the process that was to pin it is gone, has
    /// another start time (its PID was reused), or is now in another namespace.
    #[error("stale network namespace reference: {0}")]
    StaleNamespace(String),
    /// A container/target description that cannot name a namespace at all.
    #[error("invalid capture target: {0}")]
    InvalidTarget(String),
    /// An interface asked for does not exist in the namespace.
    #[error("unknown network interface {name:?} in {netns} (it has: {})", available.join(", "))]
    UnknownInterface {
        /// The name asked for.
        name: String,
        /// The namespace looked in, as the user would recognise it.
        netns: String,
        /// The interfaces the namespace has.
        available: Vec<String>,
    },
    /// libpcap refused the capture filter.
    #[error("bad capture filter {filter:?}: {message}")]
    BadFilter {
        /// The filter as given.
        filter: String,
        /// libpcap's explanation.
        message: String,
    },
    /// The process lacks a capability the capture needs.
    #[error("not permitted: {action} needs {capability}")]
    NotPermitted {
        /// What was being attempted.
        action: String,
        /// The capability that would allow it.
        capability: Capability,
    },
    /// libpcap failed to open or read an interface for another reason.
    #[error("capture on {interface}: {message}")]
    Capture {
        /// The interface.
        interface: String,
        /// libpcap's explanation.
        message: String,
    },
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
    /// An I/O error outside libpcap (reading `/proc`, spawning the capture thread).
    #[error("{what}: {source}")]
    Io {
        /// What was being done.
        what: String,
        /// The error.
        source: std::io::Error,
    },
}
