//! Connection admission: how many connections are open, in all and per client address, and which new one is closed at once because a limit is reached.
//!
//! Every connection costs a file descriptor and a task until its header timeout, so without
//! a cap a client that opens sockets faster than they time out exhausts the process's
//! descriptors, and then nobody is served (nor can a job open its capture). The accept loop
//! asks [`Connections::admit`] before serving a connection; a refused one is closed
//! straight away, which a client sees as a reset or an end of stream rather than a hang.
//! The per-client limit keeps one address from taking every slot; behind a reverse proxy
//! every connection comes from the proxy's address, so it can be turned off (0).

use crate::state::Metrics;
use dashmap::DashMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

/// The limits, from `server.max_connections` and `server.max_connections_per_client`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ConnectionLimits {
    /// Connections open at once, from all clients.
    pub total: usize,
    /// Connections open at once from one client address; 0: no such limit.
    pub per_client: usize,
}

/// Why a connection was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Refusal {
    /// `server.max_connections` are open.
    Total,
    /// `server.max_connections_per_client` are open from this address.
    PerClient,
}

/// The open connections, shared by the accept loop and the connections' tasks.
#[derive(Debug)]
pub struct Connections {
    limits: ConnectionLimits,
    total: AtomicUsize,
    per_client: DashMap<IpAddr, usize>,
    metrics: Arc<Metrics>,
}

impl Connections {
    /// No connection open yet; the counts go to `metrics` too.
    pub fn new(limits: ConnectionLimits, metrics: Arc<Metrics>) -> Arc<Connections> {
        Arc::new(Connections { limits, total: AtomicUsize::new(0), per_client: DashMap::new(), metrics })
    }

    /// Counts a new connection from `client`, or says which limit it is past. The
    /// returned slot is the connection's: dropping it (when the connection ends) frees it.
    pub fn admit(self: &Arc<Self>, client: IpAddr) -> Result<Slot, Refusal> {
        // An IPv4 client on a dual-stack socket arrives as ::ffff:a.b.c.d: one client either way.
        let client = client.to_canonical();
        let taken =
            self.total.fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| (n < self.limits.total).then_some(n + 1));
        if taken.is_err() {
            self.metrics.count_refused_connection(Refusal::Total);
            return Err(Refusal::Total);
        }
        if self.limits.per_client > 0 {
            let mut open = self.per_client.entry(client).or_insert(0);
            if *open >= self.limits.per_client {
                drop(open);
                self.total.fetch_sub(1, Ordering::AcqRel);
                self.metrics.count_refused_connection(Refusal::PerClient);
                return Err(Refusal::PerClient);
            }
            *open += 1;
        }
        self.metrics.connections.fetch_add(1, Ordering::Relaxed);
        Ok(Slot { connections: Arc::clone(self), client })
    }
}

/// One admitted connection's place; freed on drop.
#[derive(Debug)]
pub struct Slot {
    connections: Arc<Connections>,
    client: IpAddr,
}

impl Drop for Slot {
    fn drop(&mut self) {
        let c = &self.connections;
        if c.limits.per_client > 0 {
            // The entry goes with its last connection: the map holds only clients connected now.
            c.per_client.remove_if_mut(&self.client, |_, open| {
                *open = open.saturating_sub(1);
                *open == 0
            });
        }
        c.total.fetch_sub(1, Ordering::AcqRel);
        c.metrics.connections.fetch_sub(1, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn slots_are_freed_on_drop_and_each_limit_is_counted_apart() {
        let metrics = Arc::new(Metrics::default());
        let conns = Connections::new(ConnectionLimits { total: 3, per_client: 2 }, metrics.clone());
        let a1 = conns.admit(ip("192.0.2.1")).unwrap();
        let _a2 = conns.admit(ip("::ffff:192.0.2.1")).unwrap();
        assert_eq!(
            conns.admit(ip("192.0.2.1")).unwrap_err(),
            Refusal::PerClient,
            "the mapped address is the same client"
        );
        let _b1 = conns.admit(ip("192.0.2.2")).unwrap();
        assert_eq!(conns.admit(ip("192.0.2.3")).unwrap_err(), Refusal::Total);
        assert_eq!((conns.total.load(Ordering::Acquire), metrics.connections.load(Ordering::Relaxed)), (3, 3));
        drop(a1);
        assert_eq!(conns.total.load(Ordering::Acquire), 2);
        let _c1 = conns.admit(ip("192.0.2.3")).unwrap();
        assert_eq!(metrics.connections_refused(), (1, 1));
        assert_eq!(conns.per_client.len(), 3);
    }

    #[test]
    fn a_client_whose_connections_all_ended_is_forgotten() {
        let conns = Connections::new(ConnectionLimits { total: 10, per_client: 5 }, Arc::default());
        let slots: Vec<_> = (0..5).map(|_| conns.admit(ip("2001:db8::1")).unwrap()).collect();
        assert_eq!(conns.per_client.get(&ip("2001:db8::1")).map(|n| *n), Some(5));
        drop(slots);
        assert!(conns.per_client.is_empty());
        assert_eq!(conns.total.load(Ordering::Acquire), 0);
    }

    #[test]
    fn without_a_per_client_limit_one_client_may_take_every_slot() {
        let conns = Connections::new(ConnectionLimits { total: 4, per_client: 0 }, Arc::default());
        let _slots: Vec<_> = (0..4).map(|_| conns.admit(ip("127.0.0.1")).unwrap()).collect();
        assert_eq!(conns.admit(ip("127.0.0.1")).unwrap_err(), Refusal::Total);
        assert!(conns.per_client.is_empty());
    }
}
