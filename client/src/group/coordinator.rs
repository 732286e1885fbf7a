//! The requests a member sends its group coordinator: JoinGroup, SyncGroup, Heartbeat and
//! LeaveGroup, each at the version negotiated with the coordinator (fields a version lacks are
//! left out), each answer's error code turned into an [`Error`] the member branches on with
//! [`group_error`].

use std::time::Duration;

use bytes::Bytes;
use kafka_protocol::ResponseError;
use kafka_protocol::messages::join_group_request::JoinGroupRequestProtocol;
use kafka_protocol::messages::leave_group_request::MemberIdentity;
use kafka_protocol::messages::sync_group_request::SyncGroupRequestAssignment;
use kafka_protocol::messages::{
    GroupId, HeartbeatRequest, JoinGroupRequest, LeaveGroupRequest, SyncGroupRequest,
};
use kafka_protocol::protocol::StrBytes;

use crate::cluster::Client;
use crate::error::{Error, Result};
use crate::metadata::NodeId;

/// The protocol type of consumer groups.
pub const PROTOCOL_TYPE: &str = "consumer";
/// Added to the rebalance timeout for a JoinGroup's own deadline (the Java client's margin).
pub const JOIN_MARGIN: Duration = Duration::from_secs(5);

fn s(value: &str) -> StrBytes {
    StrBytes::from_string(value.to_owned())
}

/// The Kafka error a group request failed with, if it was one.
pub fn group_error(e: &Error) -> Option<ResponseError> {
    match e {
        Error::Coordinator { error, .. } | Error::Broker { error, .. } => Some(*error),
        _ => None,
    }
}

/// An answer's error code as an error of `group`: coordinator moves as [`Error::Coordinator`]
/// (retriable, find it again), the rest as [`Error::Broker`].
pub fn check(group: &str, api: &str, code: i16) -> Result<()> {
    let Some(error) = ResponseError::try_from_code(code) else {
        return Ok(());
    };
    Err(match error {
        ResponseError::CoordinatorLoadInProgress
        | ResponseError::CoordinatorNotAvailable
        | ResponseError::NotCoordinator => Error::Coordinator {
            group: group.to_owned(),
            error,
        },
        error => Error::Broker {
            context: format!("{api} of group {group}"),
            error,
            message: None,
        },
    })
}

/// Who is asking: the group, the member, its generation.
#[derive(Debug, Clone)]
pub struct MemberRef<'a> {
    /// The group.
    pub group: &'a str,
    /// Member id ("" before the first join).
    pub member_id: &'a str,
    /// Group instance id of a static member.
    pub instance_id: Option<&'a str>,
    /// Generation (-1 outside one).
    pub generation: i32,
}

/// What a JoinGroup asks for.
#[derive(Debug, Clone)]
pub struct JoinParams {
    /// Session timeout.
    pub session_timeout: Duration,
    /// Rebalance timeout (how long the coordinator waits for members to rejoin).
    pub rebalance_timeout: Duration,
    /// (assignor name, subscription bytes) in preference order.
    pub protocols: Vec<(String, Bytes)>,
    /// Why (v8+, informational).
    pub reason: String,
}

/// A successful JoinGroup.
#[derive(Debug, Clone)]
pub struct Joined {
    /// The new generation.
    pub generation: i32,
    /// Our member id.
    pub member_id: String,
    /// The leader's member id.
    pub leader: String,
    /// The chosen assignor.
    pub protocol: String,
    /// The members and their metadata (the leader only).
    pub members: Vec<(String, Option<String>, Bytes)>,
    /// KIP-814: a static leader that rejoined must not assign again.
    pub skip_assignment: bool,
}

fn millis(d: Duration) -> i32 {
    i32::try_from(d.as_millis()).unwrap_or(i32::MAX)
}

/// JoinGroup. MEMBER_ID_REQUIRED comes back as `Err((error, Some(member id)))`: rejoin with it.
pub async fn join(
    client: &Client,
    node: NodeId,
    me: &MemberRef<'_>,
    params: &JoinParams,
) -> std::result::Result<Joined, (Error, Option<String>)> {
    let conn = client.node(node).await.map_err(|e| (e, None))?;
    let version = conn.version::<JoinGroupRequest>().map_err(|e| (e, None))?;
    let mut request = JoinGroupRequest::default()
        .with_group_id(GroupId(s(me.group)))
        .with_session_timeout_ms(millis(params.session_timeout))
        .with_member_id(s(me.member_id))
        .with_protocol_type(s(PROTOCOL_TYPE))
        .with_protocols(
            params
                .protocols
                .iter()
                .map(|(name, metadata)| {
                    JoinGroupRequestProtocol::default()
                        .with_name(s(name))
                        .with_metadata(metadata.clone())
                })
                .collect(),
        );
    if version >= 1 {
        request.rebalance_timeout_ms = millis(params.rebalance_timeout);
    }
    if version >= 5 {
        request.group_instance_id = me.instance_id.map(s);
    }
    if version >= 8 {
        request.reason = Some(s(&params.reason));
    }
    // The coordinator holds a join until every member rejoined or the rebalance timeout passed.
    let wait = params.rebalance_timeout + JOIN_MARGIN;
    let response = conn
        .send_within(version, &request, wait)
        .await
        .map_err(|e| (e, None))?;
    if let Err(e) = check(me.group, "JoinGroup", response.error_code) {
        let id = (group_error(&e) == Some(ResponseError::MemberIdRequired))
            .then(|| response.member_id.to_string());
        return Err((e, id));
    }
    if version >= 7
        && let Some(t) = &response.protocol_type
        && t.as_str() != PROTOCOL_TYPE
    {
        let e = Error::Broker {
            context: format!("JoinGroup of group {}", me.group),
            error: ResponseError::InconsistentGroupProtocol,
            message: Some(format!("protocol type {t}")),
        };
        return Err((e, None));
    }
    Ok(Joined {
        generation: response.generation_id,
        member_id: response.member_id.to_string(),
        leader: response.leader.to_string(),
        protocol: response
            .protocol_name
            .map(|p| p.to_string())
            .unwrap_or_default(),
        members: response
            .members
            .into_iter()
            .map(|m| {
                (
                    m.member_id.to_string(),
                    m.group_instance_id.map(|i| i.to_string()),
                    m.metadata,
                )
            })
            .collect(),
        skip_assignment: response.skip_assignment,
    })
}

/// SyncGroup: the leader sends `assignments`, the others none; returns our assignment bytes.
pub async fn sync(
    client: &Client,
    node: NodeId,
    me: &MemberRef<'_>,
    protocol: &str,
    assignments: Vec<(String, Bytes)>,
    wait: Duration,
) -> Result<Bytes> {
    let conn = client.node(node).await?;
    let version = conn.version::<SyncGroupRequest>()?;
    let mut request = SyncGroupRequest::default()
        .with_group_id(GroupId(s(me.group)))
        .with_generation_id(me.generation)
        .with_member_id(s(me.member_id))
        .with_assignments(
            assignments
                .into_iter()
                .map(|(member, bytes)| {
                    SyncGroupRequestAssignment::default()
                        .with_member_id(s(&member))
                        .with_assignment(bytes)
                })
                .collect(),
        );
    if version >= 3 {
        request.group_instance_id = me.instance_id.map(s);
    }
    if version >= 5 {
        request.protocol_type = Some(s(PROTOCOL_TYPE));
        request.protocol_name = Some(s(protocol));
    }
    // Followers' syncs are held until the leader's assignment arrives.
    let response = conn.send_within(version, &request, wait).await?;
    check(me.group, "SyncGroup", response.error_code)?;
    Ok(response.assignment)
}

/// Heartbeat.
pub async fn heartbeat(client: &Client, node: NodeId, me: &MemberRef<'_>) -> Result<()> {
    let conn = client.node(node).await?;
    let version = conn.version::<HeartbeatRequest>()?;
    let mut request = HeartbeatRequest::default()
        .with_group_id(GroupId(s(me.group)))
        .with_generation_id(me.generation)
        .with_member_id(s(me.member_id));
    if version >= 3 {
        request.group_instance_id = me.instance_id.map(s);
    }
    let response = conn.send(version, &request).await?;
    check(me.group, "Heartbeat", response.error_code)
}

/// LeaveGroup for one member (v3+ in `members[]`).
pub async fn leave(client: &Client, node: NodeId, me: &MemberRef<'_>, reason: &str) -> Result<()> {
    let conn = client.node(node).await?;
    let version = conn.version::<LeaveGroupRequest>()?;
    let mut request = LeaveGroupRequest::default().with_group_id(GroupId(s(me.group)));
    if version >= 3 {
        let mut member = MemberIdentity::default()
            .with_member_id(s(me.member_id))
            .with_group_instance_id(me.instance_id.map(s));
        if version >= 5 {
            member.reason = Some(s(reason));
        }
        request.members = vec![member];
    } else {
        request.member_id = s(me.member_id);
    }
    let response = conn.send(version, &request).await?;
    check(me.group, "LeaveGroup", response.error_code)?;
    for m in &response.members {
        check(me.group, "LeaveGroup", m.error_code)?;
    }
    Ok(())
}
