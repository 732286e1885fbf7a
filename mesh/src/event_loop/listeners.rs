//! Start-up of the listeners of both planes: `Mesh::start` returns once each has an address.

use std::collections::HashSet;

use libp2p::core::transport::ListenerId;
use libp2p::swarm::NetworkBehaviour;
use libp2p::{Multiaddr, Swarm};
use tokio::sync::oneshot;

use crate::MeshError;

/// Listeners not yet bound, a failure if any, and who waits for them.
#[derive(Default)]
pub(super) struct Listeners {
    starting: HashSet<ListenerId>,
    failure: Option<(Multiaddr, String)>,
    waiters: Vec<oneshot::Sender<Result<(), MeshError>>>,
}

fn listen<B: NetworkBehaviour>(
    swarm: &mut Swarm<B>,
    addrs: &[Multiaddr],
    starting: &mut HashSet<ListenerId>,
) -> Result<(), MeshError> {
    for addr in addrs {
        let id = swarm
            .listen_on(addr.clone())
            .map_err(|e| MeshError::Listen {
                addr: addr.clone(),
                reason: e.to_string(),
            })?;
        starting.insert(id);
    }
    Ok(())
}

impl Listeners {
    pub(super) fn listen_data<B: NetworkBehaviour>(
        &mut self,
        swarm: &mut Swarm<B>,
        addrs: &[Multiaddr],
    ) -> Result<(), MeshError> {
        listen(swarm, addrs, &mut self.starting)
    }

    pub(super) fn listen_control<B: NetworkBehaviour>(
        &mut self,
        swarm: &mut Swarm<B>,
        addrs: &[Multiaddr],
    ) -> Result<(), MeshError> {
        listen(swarm, addrs, &mut self.starting)
    }

    /// A listener reported an address.
    pub(super) fn bound(&mut self, id: ListenerId) {
        self.starting.remove(&id);
        self.notify();
    }

    /// A listener closed; a failure if it never bound.
    pub(super) fn closed(&mut self, id: ListenerId, addr: Option<Multiaddr>, reason: String) {
        if self.starting.remove(&id) {
            self.failure = Some((addr.unwrap_or_else(Multiaddr::empty), reason));
            self.notify();
        }
    }

    /// Replies once every listener is bound (or one failed).
    pub(super) fn wait(&mut self, reply: oneshot::Sender<Result<(), MeshError>>) {
        self.waiters.push(reply);
        self.notify();
    }

    fn notify(&mut self) {
        if !self.starting.is_empty() && self.failure.is_none() {
            return;
        }
        for waiter in self.waiters.drain(..) {
            let result = match &self.failure {
                Some((addr, reason)) => Err(MeshError::Listen {
                    addr: addr.clone(),
                    reason: reason.clone(),
                }),
                None => Ok(()),
            };
            let _ = waiter.send(result);
        }
    }
}
