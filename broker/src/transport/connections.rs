//! Kafka connections open per client IP address (`--max-connections-per-ip`, Kafka's
//! `max.connections.per.ip`).

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};

/// Open connections per address; cheap to clone.
#[derive(Clone, Debug)]
pub struct Connections {
    max_per_address: usize,
    open: Arc<Mutex<HashMap<IpAddr, usize>>>,
}

/// One open connection, counted until dropped.
#[derive(Debug)]
pub struct Counted {
    connections: Connections,
    address: IpAddr,
}

impl Connections {
    /// At most `max_per_address` connections per address.
    pub fn new(max_per_address: usize) -> Self {
        Self {
            max_per_address,
            open: Arc::default(),
        }
    }

    /// Counts a new connection from `address`; `None` if that address has its maximum open.
    pub fn open(&self, address: IpAddr) -> Option<Counted> {
        let mut open = self.open.lock().unwrap_or_else(|e| e.into_inner());
        let count = open.entry(address).or_insert(0);
        if *count >= self.max_per_address {
            return None;
        }
        *count += 1;
        Some(Counted {
            connections: self.clone(),
            address,
        })
    }

    /// Connections open from `address`.
    pub fn count(&self, address: IpAddr) -> usize {
        let open = self.open.lock().unwrap_or_else(|e| e.into_inner());
        open.get(&address).copied().unwrap_or(0)
    }
}

impl Drop for Counted {
    fn drop(&mut self) {
        let mut open = self
            .connections
            .open
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        if let Some(count) = open.get_mut(&self.address) {
            *count = count.saturating_sub(1);
            if *count == 0 {
                open.remove(&self.address);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_address_gets_its_maximum_and_a_closed_connection_frees_a_place() {
        let connections = Connections::new(2);
        let a: IpAddr = [10, 0, 0, 1].into();
        let b: IpAddr = [10, 0, 0, 2].into();
        let first = connections.open(a).unwrap();
        let _second = connections.open(a).unwrap();
        assert!(connections.open(a).is_none(), "third from one address");
        assert!(
            connections.open(b).is_some(),
            "another address is counted apart"
        );
        drop(first);
        assert_eq!(connections.count(a), 1);
        assert!(connections.open(a).is_some());
    }
}
