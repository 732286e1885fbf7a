//! The heartbeat task of a member in a generation: a Heartbeat every `heartbeat_interval`, on
//! its own so a member busy between polls stays in the group. It finds the coordinator again
//! when it moves and reports what the member must act on ([`Signal`]); it stops at a rebalance
//! or a fencing (the member's next poll rejoins and starts a new one).

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

use kafka_protocol::ResponseError;
use tokio::task::JoinHandle;
use tracing::debug;

use super::GroupConfig;
use super::coordinator::{self, MemberRef, group_error};
use crate::cluster::{Client, lock};
use crate::consumer::offsets;
use crate::error::Error;
use crate::metadata::NodeId;

/// What the heartbeat heard.
#[derive(Debug, Clone)]
pub enum Signal {
    /// REBALANCE_IN_PROGRESS: rejoin.
    Rejoin,
    /// ILLEGAL_GENERATION, UNKNOWN_MEMBER_ID or FENCED_INSTANCE_ID.
    Fenced(Error),
    /// The coordinator moved to this node (`None`: not found yet).
    Coordinator(Option<NodeId>),
}

/// A running heartbeat task.
#[derive(Debug)]
pub struct Heartbeat {
    task: JoinHandle<()>,
    news: Arc<Mutex<VecDeque<Signal>>>,
}

impl Heartbeat {
    /// Starts heartbeating `node` as `member_id` of `generation`.
    pub fn start(
        client: Client,
        node: NodeId,
        config: GroupConfig,
        member_id: String,
        generation: i32,
    ) -> Heartbeat {
        let news = Arc::new(Mutex::new(VecDeque::new()));
        let task = tokio::spawn(run(
            client,
            node,
            config,
            member_id,
            generation,
            news.clone(),
        ));
        Heartbeat { task, news }
    }

    /// The oldest news not taken yet.
    pub fn take(&self) -> Option<Signal> {
        lock(&self.news).pop_front()
    }

    /// Stops the task.
    pub fn stop(self) {
        self.task.abort();
    }
}

impl Drop for Heartbeat {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn run(
    client: Client,
    mut node: NodeId,
    config: GroupConfig,
    member_id: String,
    generation: i32,
    news: Arc<Mutex<VecDeque<Signal>>>,
) {
    let me = MemberRef {
        group: &config.group_id,
        member_id: &member_id,
        instance_id: config.instance_id.as_deref(),
        generation,
    };
    let tell = |signal: Signal| lock(&news).push_back(signal);
    let mut pause = config.heartbeat_interval;
    loop {
        tokio::time::sleep(pause).await;
        pause = config.heartbeat_interval;
        let Err(e) = coordinator::heartbeat(&client, node, &me).await else {
            continue;
        };
        match group_error(&e) {
            Some(ResponseError::RebalanceInProgress) => {
                tell(Signal::Rejoin);
                return;
            }
            Some(
                ResponseError::IllegalGeneration
                | ResponseError::UnknownMemberId
                | ResponseError::FencedInstanceId,
            ) => {
                tell(Signal::Fenced(e));
                return;
            }
            _ if matches!(e, Error::Coordinator { .. }) || e.is_connection_error() => {
                debug!(group = %config.group_id, error = %e, "heartbeat: finding the coordinator again");
                let wait = client.config().connection.request_timeout;
                let found = offsets::find_coordinator(&client, &config.group_id, wait).await;
                match found {
                    Ok(n) => {
                        node = n;
                        tell(Signal::Coordinator(Some(n)));
                        // Heartbeat the new coordinator at once: the session is running out.
                        pause = client.config().retry_backoff;
                    }
                    Err(e) => {
                        debug!(group = %config.group_id, error = %e, "coordinator not found");
                        tell(Signal::Coordinator(None));
                        pause = client
                            .config()
                            .retry_backoff
                            .max(config.heartbeat_interval / 3);
                    }
                }
            }
            _ => debug!(group = %config.group_id, error = %e, "heartbeat failed"),
        }
    }
}
