//! The libp2p transport: Kafka frames over `rafka_mesh::Mesh::kafka_request`.
//!
//! The client runs a light mesh peer (role `Client`: it dials, never listens). A frame is the
//! request header + body without size prefix; the answer is the response header + body, or an
//! empty frame for "no response" (acks=0).
//!
//! Ordering: frames are handed to the swarm in call order, but each request travels on its own
//! libp2p substream, so two requests in flight to the same peer may still arrive out of order.
//! The producer copes (idempotent sequence numbers make the broker refuse a batch that overtook
//! its predecessor, and it is retried in order), but this transport does not give the strict
//! per-connection ordering a Kafka TCP socket gives.
//!
//! The peer also asks nodes for the cluster's members ([`MeshNode::cluster_info`]), from which
//! the client maps node ids to peers ([`crate::routes`]), and with `--bootstrap mdns` it finds a
//! node on the local network by mDNS ([`MeshNode::discover`]).
//!
//! A request that fails marks its transport closed, so the next one opens a fresh connection and
//! negotiates versions again (as a Kafka client does after reconnecting).
//!
//! Without the `mesh` cargo feature, this module only reports that the transport is missing.

#[cfg(feature = "mesh")]
mod imp {
    use std::collections::HashSet;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::time::Duration;

    use bytes::Bytes;
    use futures::future::BoxFuture;
    use futures::stream::FuturesUnordered;
    use futures::{FutureExt, StreamExt};
    use rafka_mesh::membership::MemberStatus;
    use std::path::Path;

    use rafka_mesh::{
        ClusterKey, Keypair, MemberInfo, Mesh, MeshConfig, MeshError, Multiaddr, PeerId,
    };
    use tokio::sync::{mpsc, oneshot};
    use tokio::task::JoinHandle;
    use tracing::debug;

    use crate::connection::FrameTransport;
    use crate::error::{Error, Result};
    use crate::members::{ClusterMember, ClusterView, MemberSource, MemberState};

    /// How often a client that discovers by mDNS queries the network.
    const MDNS_QUERY_INTERVAL: Duration = Duration::from_secs(1);
    /// How often discovery looks at the peers mDNS found.
    const DISCOVERY_POLL: Duration = Duration::from_millis(50);

    fn parse_peer(peer: &str) -> Result<PeerId> {
        peer.parse()
            .map_err(|e| Error::Mesh(format!("bad peer id {peer:?}: {e}")))
    }

    fn request_error(peer: &str, e: MeshError) -> Error {
        match e {
            MeshError::Closed => Error::Mesh(e.to_string()),
            e => Error::Disconnected {
                endpoint: format!("/p2p/{peer}"),
                reason: e.to_string(),
            },
        }
    }

    fn member(m: MemberInfo) -> ClusterMember {
        ClusterMember {
            peer_id: m.peer_id.to_base58(),
            state: match m.status {
                MemberStatus::Alive => MemberState::Alive,
                MemberStatus::Suspect => MemberState::Suspect,
                MemberStatus::Dead => MemberState::Dead,
                MemberStatus::Left => MemberState::Left,
            },
            last_heard_ago: m.last_heard_ago,
            generation: m.generation,
            keys: m.keys,
        }
    }

    impl MemberSource for MeshNode {
        fn cluster_info(&self, peer: &str) -> BoxFuture<'static, Result<ClusterView>> {
            let node = self.clone();
            let peer = peer.to_owned();
            async move { node.cluster_info(&peer).await }.boxed()
        }
    }

    /// The client's own mesh peer (started once per [`crate::Client`]; clones share it).
    #[derive(Debug, Clone)]
    pub struct MeshNode {
        mesh: Mesh,
        /// Deadline of a member list request.
        request_timeout: Duration,
        // Kept so the mesh task never sees its inbound queue closed (a client gets no requests).
        _inbound: Arc<rafka_mesh::Inbound>,
    }

    impl MeshNode {
        /// Starts a client-role mesh peer with a fresh identity and the cluster key in `key_file`
        /// (if any); with `mdns`, it also listens for nodes announcing themselves on the local
        /// network (see [`MeshNode::discover`]). Member list requests give up after
        /// `request_timeout`.
        pub async fn start(
            max_frame_bytes: usize,
            mdns: bool,
            key_file: Option<&Path>,
            request_timeout: Duration,
        ) -> Result<MeshNode> {
            let cluster_key = key_file
                .map(ClusterKey::load)
                .transpose()
                .map_err(|e| Error::Config(e.to_string()))?;
            let config = MeshConfig {
                max_frame_bytes: max_frame_bytes.max(1024),
                mdns,
                mdns_query_interval: MDNS_QUERY_INTERVAL,
                cluster_key,
                ..MeshConfig::client()
            };
            let (mesh, inbound) = Mesh::start(Keypair::generate_ed25519(), config)
                .await
                .map_err(|e| Error::Mesh(e.to_string()))?;
            debug!(peer = %mesh.local_peer_id(), "mesh client started");
            Ok(MeshNode {
                mesh,
                request_timeout,
                _inbound: Arc::new(inbound),
            })
        }

        /// Dials `addr` (the `/p2p/<peer id>` suffix optional) and returns the peer id (base58).
        pub async fn dial(&self, addr: &str) -> Result<String> {
            let addr: Multiaddr = addr
                .parse()
                .map_err(|e| Error::Mesh(format!("bad multiaddr {addr:?}: {e}")))?;
            let peer = self
                .mesh
                .dial(addr.clone())
                .await
                .map_err(|e| Error::Connect {
                    endpoint: addr.to_string(),
                    reason: e.to_string(),
                })?;
            Ok(peer.to_base58())
        }

        /// Asks `peer` which members it knows (the mesh makes their data addresses dialable).
        pub async fn cluster_info(&self, peer: &str) -> Result<ClusterView> {
            let id = parse_peer(peer)?;
            let view = tokio::time::timeout(self.request_timeout, self.mesh.cluster_info(id))
                .await
                .map_err(|_| Error::Timeout {
                    api: "cluster info",
                    endpoint: format!("/p2p/{peer}"),
                    timeout: self.request_timeout,
                })?
                .map_err(|e| request_error(peer, e))?;
            Ok(ClusterView {
                responder: view.local.map(|p| p.to_base58()),
                members: view.members.into_iter().map(member).collect(),
            })
        }

        /// Waits until mDNS finds a node that answers with its member list, up to `timeout`;
        /// returns its peer id (base58) and what it said.
        pub async fn discover(&self, timeout: Duration) -> Result<(String, ClusterView)> {
            let deadline = tokio::time::Instant::now() + timeout;
            let mut asked = HashSet::new();
            let mut last_error = None;
            loop {
                for peer in self.mesh.known_peers().await {
                    if !asked.insert(peer) {
                        continue;
                    }
                    // Any libp2p peer on the LAN may answer mDNS: only a Rafka node answers this.
                    let peer = peer.to_base58();
                    let ask = tokio::time::timeout_at(deadline, self.cluster_info(&peer));
                    match ask.await {
                        Ok(Ok(view)) => {
                            debug!(peer = %peer, members = view.members.len(), "mDNS found a node");
                            return Ok((peer, view));
                        }
                        Ok(Err(e)) => {
                            debug!(peer = %peer, error = %e, "mDNS peer is not a Rafka node");
                            last_error = Some(e.to_string());
                        }
                        Err(_) => break,
                    }
                }
                if tokio::time::Instant::now() >= deadline {
                    let mut reason = format!(
                        "no Rafka node found on the local network by mDNS within {timeout:?} \
                         (nodes announce themselves on non-loopback interfaces only; name one \
                         with --bootstrap /ip4/HOST/tcp/PORT)"
                    );
                    if let Some(e) = last_error {
                        reason.push_str(&format!("; last peer found: {e}"));
                    }
                    return Err(Error::Connect {
                        endpoint: "mdns".into(),
                        reason,
                    });
                }
                // mDNS answers arrive inside the swarm task; look again shortly.
                tokio::time::sleep(DISCOVERY_POLL.min(deadline - tokio::time::Instant::now()))
                    .await;
            }
        }

        /// A transport to `peer` (already dialled, or reachable through the mesh).
        pub fn transport(&self, peer: &str) -> Result<MeshTransport> {
            let peer = parse_peer(peer)?;
            let (tx, rx) = mpsc::unbounded_channel();
            let closed = Arc::new(AtomicBool::new(false));
            let task = tokio::spawn(forward(self.mesh.clone(), peer, rx, closed.clone()));
            Ok(MeshTransport {
                tx,
                peer,
                closed,
                task,
            })
        }

        /// Sends a push subscriber's poll frame to `peer` (its home node) and returns the answer.
        pub async fn push_poll(&self, peer: &str, frame: Bytes) -> Result<Bytes> {
            let id = parse_peer(peer)?;
            self.mesh
                .push_poll(id, frame)
                .await
                .map_err(|e| request_error(peer, e))
        }

        /// Opens a push stream to `peer` (a subscriber's home node); `None` if the node does not
        /// serve push streams (an older node: poll it instead).
        pub async fn open_push_stream(&self, peer: &str) -> Result<Option<PushFeed>> {
            let id = parse_peer(peer)?;
            match self.mesh.open_push_stream(id).await {
                Ok(stream) => Ok(Some(PushFeed(stream))),
                Err(MeshError::Unsupported { .. }) => Ok(None),
                Err(e) => Err(request_error(peer, e)),
            }
        }

        /// Stops the mesh peer.
        pub async fn shutdown(&self) {
            self.mesh.shutdown().await;
        }
    }

    /// A push stream to a subscriber's home node (see [`rafka_mesh::PushStream`]).
    #[derive(Debug)]
    pub struct PushFeed(rafka_mesh::PushStream);

    impl PushFeed {
        /// Writes one frame.
        pub async fn send(&mut self, frame: &[u8]) -> Result<()> {
            let peer = self.0.peer().to_base58();
            self.0.send(frame).await.map_err(|e| Error::Disconnected {
                endpoint: format!("/p2p/{peer}"),
                reason: e.to_string(),
            })
        }

        /// The next frame from the node; an error once the stream ended. Cancel-safe.
        pub async fn next_frame(&mut self) -> Result<Bytes> {
            let peer = self.0.peer();
            let closed = |reason: String| Error::Disconnected {
                endpoint: format!("/p2p/{peer}"),
                reason,
            };
            match self.0.next_frame().await {
                Some(Ok(frame)) => Ok(frame),
                Some(Err(e)) => Err(closed(e.to_string())),
                None => Err(closed("push stream closed".into())),
            }
        }
    }

    type Reply = oneshot::Sender<Result<Bytes>>;

    /// A frame for the peer, the deadline of its request, and where its answer goes.
    type Call = (Bytes, Duration, Reply);

    /// How long a request without a deadline of its own may take (Kafka's request.timeout.ms).
    const DEFAULT_DEADLINE: Duration = Duration::from_secs(30);

    /// Frames to one peer over the mesh, handed to the swarm in call order.
    pub struct MeshTransport {
        tx: mpsc::UnboundedSender<Call>,
        peer: PeerId,
        closed: Arc<AtomicBool>,
        task: JoinHandle<()>,
    }

    /// Hands each frame to the swarm before taking the next (so requests leave in call order),
    /// then waits for the answers concurrently.
    async fn forward(
        mesh: Mesh,
        peer: PeerId,
        mut rx: mpsc::UnboundedReceiver<Call>,
        closed: Arc<AtomicBool>,
    ) {
        let mut waiting = FuturesUnordered::new();
        loop {
            tokio::select! {
                next = rx.recv() => {
                    let Some((frame, deadline, reply)) = next else { break };
                    let mesh = mesh.clone();
                    let closed = closed.clone();
                    let mut call = Box::pin(async move {
                        let result = mesh.kafka_request(peer, frame, deadline).await.map_err(|e| {
                            // The peer went away (or the mesh stopped): the next request opens a
                            // fresh connection and negotiates again, as a Kafka client does after
                            // reconnecting (a restarted node may speak other versions).
                            closed.store(true, Ordering::Release);
                            Error::Disconnected { endpoint: peer.to_string(), reason: e.to_string() }
                        });
                        let _ = reply.send(result);
                    });
                    // The first poll enqueues the request in the swarm's command queue.
                    if futures::poll!(&mut call).is_pending() {
                        waiting.push(call);
                    }
                }
                Some(()) = waiting.next(), if !waiting.is_empty() => {}
            }
        }
        while waiting.next().await.is_some() {}
    }

    impl FrameTransport for MeshTransport {
        fn call(&self, frame: Bytes, expect: bool) -> BoxFuture<'static, Result<Option<Bytes>>> {
            self.call_within(frame, expect, DEFAULT_DEADLINE)
        }

        /// The mesh request itself ends at `timeout`, its substream closed (see
        /// `rafka_mesh::Mesh::kafka_request`), so a JoinGroup may wait out its rebalance timeout
        /// and a lost Fetch is given up at its own deadline.
        fn call_within(
            &self,
            frame: Bytes,
            expect: bool,
            timeout: Duration,
        ) -> BoxFuture<'static, Result<Option<Bytes>>> {
            let disconnected = |reason: &str| Error::Disconnected {
                endpoint: self.peer.to_string(),
                reason: reason.to_owned(),
            };
            if self.is_closed() {
                return futures::future::ready(Err(disconnected("closed"))).boxed();
            }
            let (reply, rx) = oneshot::channel();
            if self.tx.send((frame, timeout, reply)).is_err() {
                return futures::future::ready(Err(disconnected("closed"))).boxed();
            }
            // The peer id is base58-encoded only if the call fails.
            let peer = self.peer;
            async move {
                let response = rx.await.map_err(|_| Error::Disconnected {
                    endpoint: peer.to_string(),
                    reason: "the mesh transport stopped".to_owned(),
                })??;
                match (expect, response.is_empty()) {
                    (false, _) => Ok(None),
                    (true, false) => Ok(Some(response)),
                    (true, true) => Err(Error::protocol("empty response frame over the mesh")),
                }
            }
            .boxed()
        }

        fn is_closed(&self) -> bool {
            self.closed.load(Ordering::Acquire) || self.task.is_finished()
        }

        fn close(&self) {
            self.closed.store(true, Ordering::Release);
            self.task.abort();
        }
    }

    impl Drop for MeshTransport {
        fn drop(&mut self) {
            self.task.abort();
        }
    }
}

#[cfg(not(feature = "mesh"))]
mod imp {
    use bytes::Bytes;
    use futures::future::BoxFuture;

    use std::time::Duration;

    use crate::connection::FrameTransport;
    use crate::error::{Error, Result};
    use crate::members::{ClusterView, MemberSource};

    const MISSING: &str = "this build has no mesh transport (cargo feature `mesh`); use --kafka";

    /// Stand-in for the mesh peer in builds without the `mesh` feature.
    #[derive(Debug, Clone)]
    pub struct MeshNode(());

    impl MeshNode {
        /// Always fails: the transport is not compiled in.
        pub async fn start(
            _max_frame_bytes: usize,
            _mdns: bool,
            _key_file: Option<&std::path::Path>,
            _request_timeout: Duration,
        ) -> Result<MeshNode> {
            Err(Error::Mesh(MISSING.into()))
        }
        /// Unreachable in practice (no `MeshNode` can exist).
        pub async fn cluster_info(&self, _peer: &str) -> Result<ClusterView> {
            Err(Error::Mesh(MISSING.into()))
        }
        /// Unreachable in practice (no `MeshNode` can exist).
        pub async fn discover(&self, _timeout: Duration) -> Result<(String, ClusterView)> {
            Err(Error::Mesh(MISSING.into()))
        }
        /// Unreachable in practice (no `MeshNode` can exist).
        pub async fn dial(&self, _addr: &str) -> Result<String> {
            Err(Error::Mesh(MISSING.into()))
        }
        /// Unreachable in practice (no `MeshNode` can exist).
        pub fn transport(&self, _peer: &str) -> Result<MeshTransport> {
            Err(Error::Mesh(MISSING.into()))
        }
        /// Unreachable in practice (no `MeshNode` can exist).
        pub async fn open_push_stream(&self, _peer: &str) -> Result<Option<PushFeed>> {
            Err(Error::Mesh(MISSING.into()))
        }
        /// Nothing to stop.
        pub async fn shutdown(&self) {}
    }

    /// Stand-in push stream (none can exist).
    #[derive(Debug)]
    pub struct PushFeed(());

    impl PushFeed {
        /// Unreachable in practice.
        pub async fn send(&mut self, _frame: &[u8]) -> Result<()> {
            Err(Error::Mesh(MISSING.into()))
        }
        /// Unreachable in practice.
        pub async fn next_frame(&mut self) -> Result<Bytes> {
            Err(Error::Mesh(MISSING.into()))
        }
    }

    impl MemberSource for MeshNode {
        fn cluster_info(&self, _peer: &str) -> BoxFuture<'static, Result<ClusterView>> {
            Box::pin(futures::future::ready(Err(Error::Mesh(MISSING.into()))))
        }
    }

    /// Stand-in transport.
    pub struct MeshTransport(());

    impl FrameTransport for MeshTransport {
        fn call(&self, _: Bytes, _: bool) -> BoxFuture<'static, Result<Option<Bytes>>> {
            Box::pin(futures::future::ready(Err(Error::Mesh(MISSING.into()))))
        }
        fn is_closed(&self) -> bool {
            true
        }
        fn close(&self) {}
    }
}

pub use imp::{MeshNode, MeshTransport, PushFeed};
