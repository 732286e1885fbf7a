//! A home broker's subscriber sessions: each holds the push messages of its topics until the
//! subscriber's next poll, in a bounded queue (beyond it messages are dropped and counted, and the
//! subscriber fetches what it missed).

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use rafka_format::push::{PollRequest, PollResponse, PushMessage, poll_error};
use tokio::sync::Notify;

use crate::metrics;

/// Limits of a node's sessions.
#[derive(Clone, Copy, Debug)]
pub struct SessionLimits {
    /// Sessions served at once.
    pub max_sessions: usize,
    /// Bytes queued per session before messages are dropped.
    pub max_queued_bytes: usize,
    /// A session not polled for this long is forgotten.
    pub idle: Duration,
    /// The longest a poll is held.
    pub max_wait: Duration,
}

impl Default for SessionLimits {
    fn default() -> Self {
        SessionLimits {
            max_sessions: 1024,
            max_queued_bytes: 8 * 1024 * 1024,
            idle: Duration::from_secs(30),
            max_wait: Duration::from_secs(10),
        }
    }
}

struct Session {
    topics: HashSet<[u8; 16]>,
    queue: VecDeque<Bytes>,
    queued_bytes: usize,
    dropped: u32,
    last_poll: Instant,
    wake: Arc<Notify>,
}

/// Sessions keyed by (subscriber peer, session id).
pub struct Sessions {
    limits: SessionLimits,
    sessions: Mutex<HashMap<(String, u64), Session>>,
}

impl Sessions {
    /// No sessions yet.
    pub fn new(limits: SessionLimits) -> Self {
        Sessions {
            limits,
            sessions: Mutex::new(HashMap::new()),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<(String, u64), Session>> {
        self.sessions
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Hands an accepted message to every session of its topics.
    pub fn deliver(&self, message: &Bytes) {
        let Ok(topics) = PushMessage::topic_ids(message) else {
            return;
        };
        let mut sessions = self.lock();
        for session in sessions.values_mut() {
            if !topics.iter().any(|t| session.topics.contains(t)) {
                continue;
            }
            if session.queued_bytes + message.len() > self.limits.max_queued_bytes {
                session.dropped = session.dropped.saturating_add(1);
                metrics::push_session_dropped();
                continue;
            }
            session.queued_bytes += message.len();
            session.queue.push_back(message.clone());
            session.wake.notify_one();
        }
    }

    /// True if some session wants topic `topic_id`.
    pub fn wants(&self, topic_id: &[u8; 16]) -> bool {
        self.lock().values().any(|s| s.topics.contains(topic_id))
    }

    /// Forgets sessions not polled for the idle time.
    pub fn expire(&self, now: Instant) {
        let idle = self.limits.idle;
        self.lock()
            .retain(|_, session| now.duration_since(session.last_poll) < idle);
    }

    /// Forgets a session (its subscriber's stream closed).
    pub fn remove(&self, peer: &str, session: u64) {
        self.lock().remove(&(peer.to_string(), session));
    }

    /// Sessions now.
    pub fn len(&self) -> usize {
        self.lock().len()
    }

    /// True without sessions.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Registers the poll (creating the session if new) and returns what it may take now, or
    /// `None` with the session's wake-up when its queue is empty.
    fn take(&self, peer: &str, request: &PollRequest, fresh: &mut bool) -> Result<Taken, u16> {
        let mut sessions = self.lock();
        let key = (peer.to_string(), request.session);
        if !sessions.contains_key(&key) {
            if sessions.len() >= self.limits.max_sessions {
                return Err(poll_error::TOO_MANY_SESSIONS);
            }
            *fresh = true;
            sessions.insert(
                key.clone(),
                Session {
                    topics: HashSet::new(),
                    queue: VecDeque::new(),
                    queued_bytes: 0,
                    dropped: 0,
                    last_poll: Instant::now(),
                    wake: Arc::new(Notify::new()),
                },
            );
        }
        let Some(session) = sessions.get_mut(&key) else {
            return Err(poll_error::INVALID_REQUEST);
        };
        session.last_poll = Instant::now();
        session.topics = request.topics.iter().copied().collect();
        if session.queue.is_empty() && session.dropped == 0 {
            return Ok(Taken::Wait(session.wake.clone()));
        }
        let mut messages = Vec::new();
        let mut bytes = 0usize;
        while let Some(next) = session.queue.front() {
            if !messages.is_empty() && bytes + next.len() > request.max_bytes as usize {
                break;
            }
            bytes += next.len();
            if let Some(message) = session.queue.pop_front() {
                messages.push(message);
            }
        }
        session.queued_bytes -= bytes;
        let dropped = std::mem::take(&mut session.dropped);
        Ok(Taken::Messages(messages, dropped))
    }

    /// Answers a poll: at once with what is queued, else when something arrives or after the
    /// asked wait (capped).
    pub async fn poll(&self, peer: &str, request: &PollRequest) -> PollResponse {
        let wait = Duration::from_millis(u64::from(request.max_wait_ms)).min(self.limits.max_wait);
        let deadline = tokio::time::Instant::now() + wait;
        let mut fresh = false;
        loop {
            match self.take(peer, request, &mut fresh) {
                Err(error) => {
                    return PollResponse {
                        error,
                        ..PollResponse::default()
                    };
                }
                Ok(Taken::Messages(messages, dropped)) => {
                    return PollResponse {
                        error: poll_error::NONE,
                        fresh,
                        dropped,
                        messages,
                    };
                }
                Ok(Taken::Wait(wake)) => {
                    if fresh
                        || tokio::time::timeout_at(deadline, wake.notified())
                            .await
                            .is_err()
                    {
                        // A new session answers at once (the subscriber learns it is fresh).
                        return PollResponse {
                            fresh,
                            ..PollResponse::default()
                        };
                    }
                }
            }
        }
    }
}

enum Taken {
    Messages(Vec<Bytes>, u32),
    Wait(Arc<Notify>),
}

#[cfg(test)]
mod tests {
    use rafka_format::push::{Notice, PartitionKey};

    use super::*;

    fn notice(topic: u8, base: i64) -> Bytes {
        Notice {
            partition: PartitionKey {
                topic_id: [topic; 16],
                partition: 0,
            },
            leader_epoch: 1,
            base_offset: base,
            end_offset: base + 1,
            batch_bytes: 0,
            batches: None,
        }
        .encode()
    }

    fn poll(topic: u8, wait_ms: u32) -> PollRequest {
        PollRequest {
            session: 1,
            max_wait_ms: wait_ms,
            max_bytes: 1 << 20,
            topics: vec![[topic; 16]],
        }
    }

    #[tokio::test]
    async fn a_session_gets_its_topics_messages_in_order_and_counts_what_overflowed() {
        let limits = SessionLimits {
            max_queued_bytes: 3 * notice(1, 0).len(),
            ..SessionLimits::default()
        };
        let sessions = Sessions::new(limits);
        let first = sessions.poll("p", &poll(1, 0)).await;
        assert!(first.fresh);
        assert!(first.messages.is_empty());
        for base in 0..5 {
            sessions.deliver(&notice(1, base));
            sessions.deliver(&notice(2, base));
        }
        let got = sessions.poll("p", &poll(1, 0)).await;
        assert!(!got.fresh);
        assert_eq!(got.messages, vec![notice(1, 0), notice(1, 1), notice(1, 2)]);
        assert_eq!(got.dropped, 2);
        let empty = sessions.poll("p", &poll(1, 0)).await;
        assert_eq!((empty.messages.len(), empty.dropped), (0, 0));
    }

    #[tokio::test]
    async fn a_held_poll_answers_when_a_message_arrives() {
        let sessions = Arc::new(Sessions::new(SessionLimits::default()));
        sessions.poll("p", &poll(1, 0)).await;
        let waiting = tokio::spawn({
            let sessions = sessions.clone();
            async move { sessions.poll("p", &poll(1, 10_000)).await }
        });
        // The poll is held until the message comes: deliver until the held poll has it (a
        // message delivered before the poll registered is queued and answered at once too).
        sessions.deliver(&notice(1, 7));
        let got = tokio::time::timeout(Duration::from_secs(5), waiting)
            .await
            .expect("the held poll answers")
            .expect("poll task");
        assert_eq!(got.messages, vec![notice(1, 7)]);
    }

    #[tokio::test]
    async fn idle_sessions_expire_and_the_limit_holds() {
        let limits = SessionLimits {
            max_sessions: 1,
            ..SessionLimits::default()
        };
        let sessions = Sessions::new(limits);
        sessions.poll("p", &poll(1, 0)).await;
        let refused = sessions.poll("q", &poll(1, 0)).await;
        assert_eq!(refused.error, poll_error::TOO_MANY_SESSIONS);
        sessions.expire(Instant::now() + Duration::from_secs(31));
        assert!(sessions.is_empty());
        assert_eq!(
            sessions.poll("q", &poll(1, 0)).await.error,
            poll_error::NONE
        );
        // A session whose stream closed is forgotten at once, freeing its place.
        sessions.remove("q", 1);
        assert!(sessions.is_empty());
        assert_eq!(
            sessions.poll("p", &poll(1, 0)).await.error,
            poll_error::NONE
        );
    }
}
