//! Push subscription, the broker's side (the path is described in `docs/push.md`):
//!
//! - **Publishing** ([`publisher`]): for every partition this node leads, a task follows the
//!   leader's high watermark ([`crate::partition::Leader::subscribe_commits`]) and announces each
//!   move as a [`Notice`] on the partition's gossip topic: the committed batches inline when they
//!   fit [`INLINE_MAX_BYTES`], else only their extent. Every [`SUMMARY_EVERY`] it also publishes a
//!   [`rafka_format::push::Summary`] of its high watermarks, so idle subscribers learn of lost
//!   tail notices.
//! - **Judging** ([`judge`], sans-IO): a node forwards and uses a gossip message only if its
//!   author is, by the metadata, the partition's leader for the epoch it names.
//! - **Serving subscribers** ([`sessions`]): a subscriber long-polls its home broker; the home
//!   broker joins the gossip topics its sessions want and queues accepted messages per session.
//!
//! Gossip runs between nodes only, on the data plane's gossipsub with `flood_publish` off: a
//! leader sends each notice to its topic's gossip mesh (at most a handful of nodes), whatever the
//! number of subscribers; each home broker answers its own subscribers' polls.

pub mod judge;
pub mod publisher;
pub mod sessions;

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use rafka_format::push::{self as format, Notice, PartitionKey, PollRequest, PushMessage};
use rafka_mesh::{
    InboundPushPoll, IncomingPushStreams, Mesh, PushConfig, PushDelivery, PushStream,
    PushValidator, Verdict,
};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::broker::Broker;
use crate::ids::NodeId;
use crate::metadata::Metadata;
use crate::metrics;
use judge::{LeaderBook, Leadership};
use sessions::{SessionLimits, Sessions};

/// Committed batches up to this size travel inside the notice; larger moves are announced by
/// extent and fetched by subscribers.
pub const INLINE_MAX_BYTES: usize = 64 * 1024;
/// How long a subscriber has to send its request after opening a push stream.
const STREAM_OPEN_WAIT: Duration = Duration::from_secs(10);
/// How often a leader publishes the high watermarks of what it leads.
pub const SUMMARY_EVERY: Duration = Duration::from_secs(1);

/// The data plane's push settings of a node.
pub fn mesh_config() -> PushConfig {
    PushConfig {
        // A notice's header plus the inline batches, with room to spare.
        max_message_bytes: INLINE_MAX_BYTES + 64 * 1024,
        message_key: Notice::key,
        max_poll_wait: SessionLimits::default().max_wait,
    }
}

/// A node's push service: its publishers, its subscribers' sessions and the gossip topics it
/// joined for them.
#[derive(Clone)]
pub struct Push {
    inner: Arc<Inner>,
}

struct Inner {
    mesh: Mesh,
    sessions: Sessions,
    joined: Mutex<HashSet<String>>,
    publishers: publisher::Publishers,
}

impl Push {
    /// A service publishing through `mesh`.
    pub fn new(mesh: Mesh) -> Push {
        Push {
            inner: Arc::new(Inner {
                publishers: publisher::Publishers::default(),
                mesh,
                sessions: Sessions::new(SessionLimits::default()),
                joined: Mutex::new(HashSet::new()),
            }),
        }
    }

    /// Starts a publisher for each partition this node leads in a new epoch and stops those of
    /// leaderships it lost (call after each reconcile).
    pub fn attach(&self, broker: &Broker) {
        self.inner
            .publishers
            .attach(&broker.partitions().leaders(None), self);
    }

    /// True if anyone would receive what is published for topic `topic_id`: a session of this
    /// node, or a node subscribed to its gossip topic. A leader announces nothing otherwise
    /// (a subscriber that arrives later learns of what it missed from the next notice or
    /// summary, and fetches it).
    pub(crate) fn wanted(&self, topic_id: &[u8; 16]) -> bool {
        self.inner.sessions.wants(topic_id)
            || self
                .inner
                .mesh
                .push_listened(&format::gossip_topic(*topic_id))
    }

    /// Publishes `message` on the gossip topic of `topic_id` and hands it to this node's own
    /// subscribers (gossip never delivers a node's own messages back to it).
    pub(crate) async fn publish(&self, topic_id: [u8; 16], message: Bytes) {
        self.inner.sessions.deliver(&message);
        let topic = format::gossip_topic(topic_id);
        if let Err(e) = self.inner.mesh.push_publish(&topic, message).await {
            tracing::debug!(topic = %topic, error = %e, "push publish failed");
        }
    }

    /// Runs the service: installs the gossip judge, hands accepted gossip to sessions, answers
    /// subscribers' polls and publishes summaries, until `shutdown`.
    pub async fn run(
        self,
        broker: Broker,
        mut gossip: mpsc::Receiver<PushDelivery>,
        mut polls: mpsc::Receiver<InboundPushPoll>,
        shutdown: CancellationToken,
    ) {
        let judge = Arc::new(MetadataJudge {
            metadata: broker.metadata().clone(),
        });
        self.inner.mesh.set_push_validator(judge).await;
        let tasks = TaskTracker::new();
        match self.inner.mesh.accept_push_streams() {
            Ok(streams) => {
                tasks.spawn(
                    self.clone()
                        .accept_streams(streams, tasks.clone(), shutdown.clone()),
                );
            }
            Err(e) => tracing::warn!(error = %e, "push streams not served (polls still are)"),
        }
        let mut summaries = tokio::time::interval(SUMMARY_EVERY);
        summaries.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                () = shutdown.cancelled() => break,
                Some(delivery) = gossip.recv() => self.inner.sessions.deliver(&delivery.data),
                Some(poll) = polls.recv() => {
                    let push = self.clone();
                    tasks.spawn(async move { push.answer(poll).await });
                }
                _ = summaries.tick() => {
                    self.inner.sessions.expire(std::time::Instant::now());
                    metrics::push_sessions(self.inner.sessions.len());
                    self.attach(&broker);
                    self.publish_summaries(&broker).await;
                }
            }
        }
        self.inner.publishers.stop_all();
        tasks.close();
    }

    /// Accepts subscribers' push streams until `shutdown`, serving each in its own task.
    async fn accept_streams(
        self,
        mut streams: IncomingPushStreams,
        tasks: TaskTracker,
        shutdown: CancellationToken,
    ) {
        loop {
            tokio::select! {
                () = shutdown.cancelled() => break,
                stream = streams.next() => match stream {
                    Some(stream) => {
                        let push = self.clone();
                        let stop = shutdown.clone();
                        tasks.spawn(async move {
                            tokio::select! {
                                () = stop.cancelled() => {}
                                () = push.serve_stream(stream) => {}
                            }
                        });
                    }
                    None => break,
                },
            }
        }
    }

    /// Serves one subscriber's push stream: its first frame opens (or resumes) a session like a
    /// poll; from then on an answer frame is written whenever the session has messages (or
    /// after the session's wait with nothing, so both ends learn the other is alive). A later
    /// frame from the subscriber replaces its request (its topics). The session ends with the
    /// stream.
    async fn serve_stream(&self, mut stream: PushStream) {
        let peer = stream.peer().to_base58();
        let first = tokio::time::timeout(STREAM_OPEN_WAIT, stream.next_frame()).await;
        let Ok(Some(Ok(first))) = first else {
            return;
        };
        let Some(mut request) = self.stream_request(&mut stream, &first).await else {
            return;
        };
        loop {
            let response = tokio::select! {
                response = self.inner.sessions.poll(&peer, &request) => response,
                frame = stream.next_frame() => match frame {
                    Some(Ok(frame)) => match self.stream_request(&mut stream, &frame).await {
                        Some(next) => {
                            request = next;
                            continue;
                        }
                        None => break,
                    },
                    Some(Err(e)) => {
                        tracing::debug!(peer = %peer, error = %e, "push stream failed");
                        break;
                    }
                    None => break,
                },
            };
            let refused = response.error != format::poll_error::NONE;
            if let Err(e) = stream.send(&response.encode()).await {
                tracing::debug!(peer = %peer, error = %e, "push stream write failed");
                break;
            }
            if refused {
                break;
            }
        }
        self.inner.sessions.remove(&peer, request.session);
    }

    /// Reads a subscriber's request frame on its stream and joins its gossip topics; an
    /// unreadable one is answered INVALID_REQUEST (and the stream ends).
    async fn stream_request(&self, stream: &mut PushStream, frame: &[u8]) -> Option<PollRequest> {
        match PollRequest::decode(frame) {
            Ok(request) => {
                self.join(&request.topics).await;
                Some(request)
            }
            Err(e) => {
                tracing::debug!(peer = %stream.peer(), error = %e, "unreadable push stream request");
                let response = format::PollResponse {
                    error: format::poll_error::INVALID_REQUEST,
                    ..Default::default()
                };
                let _ = stream.send(&response.encode()).await;
                None
            }
        }
    }

    async fn answer(&self, poll: InboundPushPoll) {
        let request = match PollRequest::decode(&poll.frame) {
            Ok(request) => request,
            Err(e) => {
                tracing::debug!(peer = %poll.peer, error = %e, "unreadable push poll");
                let response = format::PollResponse {
                    error: format::poll_error::INVALID_REQUEST,
                    ..Default::default()
                };
                let _ = poll.reply.send(response.encode());
                return;
            }
        };
        self.join(&request.topics).await;
        let response = self
            .inner
            .sessions
            .poll(&poll.peer.to_base58(), &request)
            .await;
        let _ = poll.reply.send(response.encode());
    }

    /// Joins the gossip topics of `topics` this node has not joined yet.
    async fn join(&self, topics: &[[u8; 16]]) {
        let wanted: Vec<String> = {
            let mut joined = self
                .inner
                .joined
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            topics
                .iter()
                .map(|id| format::gossip_topic(*id))
                .filter(|topic| joined.insert(topic.clone()))
                .collect()
        };
        for topic in wanted {
            if let Err(e) = self.inner.mesh.push_subscribe(&topic, true).await {
                tracing::warn!(topic = %topic, error = %e, "cannot join push gossip topic");
            }
        }
    }

    async fn publish_summaries(&self, broker: &Broker) {
        let mut by_topic: std::collections::BTreeMap<[u8; 16], Vec<format::SummaryEntry>> =
            std::collections::BTreeMap::new();
        for leader in broker.partitions().leaders(None) {
            if leader.is_resigned() {
                continue;
            }
            let tp = leader.topic_partition();
            let topic_id = *tp.topic_id.as_bytes();
            by_topic
                .entry(topic_id)
                .or_default()
                .push(format::SummaryEntry {
                    partition: PartitionKey {
                        topic_id,
                        partition: tp.partition,
                    },
                    leader_epoch: leader.leader_epoch().0,
                    high_watermark: leader.last_stable_offset().0,
                });
        }
        for (topic_id, entries) in by_topic {
            if !self.wanted(&topic_id) {
                continue;
            }
            let message = format::Summary { entries }.encode();
            metrics::push_summary(message.len());
            self.publish(topic_id, message).await;
        }
    }
}

/// Judges gossip against this node's metadata image.
struct MetadataJudge {
    metadata: Metadata,
}

struct ImageBook(Arc<crate::metadata::MetadataImage>);

impl LeaderBook for ImageBook {
    fn node_of(&self, author: &str) -> Option<NodeId> {
        self.0.node_by_peer(author).map(|node| node.node_id)
    }

    fn leadership(&self, partition: &PartitionKey) -> Option<Leadership> {
        let topic = self
            .0
            .topic_by_id(&uuid::Uuid::from_bytes(partition.topic_id))?;
        let image = topic
            .partitions
            .iter()
            .find(|p| p.index == partition.partition)?;
        Some(Leadership {
            leader: image.leader,
            leader_epoch: image.leader_epoch,
        })
    }
}

impl PushValidator for MetadataJudge {
    fn validate(&self, author: &rafka_mesh::PeerId, _topic: &str, data: &[u8]) -> Verdict {
        let Ok(message) = PushMessage::decode(&Bytes::copy_from_slice(data)) else {
            return Verdict::Reject;
        };
        judge::judge(
            &ImageBook(self.metadata.image()),
            &author.to_base58(),
            &message,
        )
    }
}
