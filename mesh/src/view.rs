//! What a node knows about the cluster's members, as published to the broker (a `watch` of
//! [`MembershipView`]) and served to clients and joining nodes over `/rafka/cluster/1`.

use std::collections::BTreeMap;
use std::time::Duration;

use libp2p::{Multiaddr, PeerId};
use prost::Message as _;

use crate::membership::{Member, MemberStatus};

#[allow(clippy::all, missing_docs)]
mod wire {
    include!(concat!(env!("OUT_DIR"), "/rafka.cluster.rs"));
}

/// Membership keys holding a node's control-plane and data-plane (p2p) addresses (comma
/// separated); every gossip key is defined once, in `rafka_format::gossip`.
pub use rafka_format::gossip::{CONTROL_ADDRS_KEY, DATA_ADDRS_KEY};

/// One member, as seen from one node.
#[derive(Clone, Debug, PartialEq)]
pub struct MemberInfo {
    /// Its peer id.
    pub peer_id: PeerId,
    /// Its incarnation (grows across restarts).
    pub generation: u64,
    /// Observed status.
    pub status: MemberStatus,
    /// Its latest heartbeat counter.
    pub heartbeat: u64,
    /// How long ago its heartbeat last grew (zero for the local node).
    pub last_heard_ago: Duration,
    /// Its gossiped state (addresses, endpoints, node id, ...).
    pub keys: BTreeMap<String, String>,
}

impl MemberInfo {
    /// From the membership core's view at `now`.
    pub fn from_member(member: &Member, now: Duration) -> Self {
        MemberInfo {
            peer_id: member.id,
            generation: member.generation.0,
            status: member.status,
            heartbeat: member.heartbeat,
            last_heard_ago: now.saturating_sub(member.last_heard),
            keys: member.keys.clone(),
        }
    }

    /// Addresses listed under `key`, parsed (unparseable entries skipped).
    pub fn addrs(&self, key: &str) -> Vec<Multiaddr> {
        self.keys
            .get(key)
            .map(|v| parse_addrs(v))
            .unwrap_or_default()
    }

    /// Whether the member is alive (or merely suspected).
    pub fn is_live(&self) -> bool {
        self.status.is_live()
    }
}

/// Formats addresses for a membership key.
pub fn format_addrs(addrs: &[Multiaddr]) -> String {
    addrs
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(",")
}

/// Parses a membership address list.
pub fn parse_addrs(value: &str) -> Vec<Multiaddr> {
    value
        .split(',')
        .filter_map(|a| a.trim().parse().ok())
        .collect()
}

/// Every member a node knows, itself included, in peer id order.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct MembershipView {
    /// The node that holds this view.
    pub local: Option<PeerId>,
    /// The members.
    pub members: Vec<MemberInfo>,
}

impl MembershipView {
    /// One member by peer id.
    pub fn member(&self, peer: &PeerId) -> Option<&MemberInfo> {
        self.members.iter().find(|m| m.peer_id == *peer)
    }

    /// Members currently alive or suspect.
    pub fn live(&self) -> impl Iterator<Item = &MemberInfo> {
        self.members.iter().filter(|m| m.is_live())
    }
}

fn status_name(status: MemberStatus) -> &'static str {
    match status {
        MemberStatus::Alive => "alive",
        MemberStatus::Suspect => "suspect",
        MemberStatus::Dead => "dead",
        MemberStatus::Left => "left",
    }
}

fn parse_status(name: &str) -> Option<MemberStatus> {
    Some(match name {
        "alive" => MemberStatus::Alive,
        "suspect" => MemberStatus::Suspect,
        "dead" => MemberStatus::Dead,
        "left" => MemberStatus::Left,
        _ => return None,
    })
}

/// Encodes a view as a `/rafka/cluster/1` answer.
pub fn encode_cluster_info(view: &MembershipView) -> Vec<u8> {
    let members = view
        .members
        .iter()
        .map(|m| wire::ClusterMember {
            peer_id: m.peer_id.to_bytes(),
            generation: m.generation,
            status: status_name(m.status).to_string(),
            heartbeat: m.heartbeat,
            last_heard_ms_ago: u64::try_from(m.last_heard_ago.as_millis()).unwrap_or(u64::MAX),
            keys: m.keys.clone().into_iter().collect(),
        })
        .collect();
    let info = wire::ClusterInfo {
        responder: view.local.map(|p| p.to_bytes()).unwrap_or_default(),
        members,
    };
    info.encode_to_vec()
}

/// Decodes a `/rafka/cluster/1` answer; members that do not decode are skipped.
pub fn decode_cluster_info(bytes: &[u8]) -> Result<MembershipView, prost::DecodeError> {
    let info = wire::ClusterInfo::decode(bytes)?;
    let members = info
        .members
        .into_iter()
        .filter_map(|m| {
            Some(MemberInfo {
                peer_id: PeerId::from_bytes(&m.peer_id).ok()?,
                generation: m.generation,
                status: parse_status(&m.status)?,
                heartbeat: m.heartbeat,
                last_heard_ago: Duration::from_millis(m.last_heard_ms_ago),
                keys: m.keys.into_iter().collect(),
            })
        })
        .collect();
    Ok(MembershipView {
        local: PeerId::from_bytes(&info.responder).ok(),
        members,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cluster_info_round_trips_and_garbage_is_an_error() {
        let peer = PeerId::random();
        let view = MembershipView {
            local: Some(peer),
            members: vec![MemberInfo {
                peer_id: peer,
                generation: 7,
                status: MemberStatus::Suspect,
                heartbeat: 42,
                last_heard_ago: Duration::from_millis(1500),
                keys: BTreeMap::from([(
                    DATA_ADDRS_KEY.to_string(),
                    "/ip4/10.0.0.1/tcp/7070".to_string(),
                )]),
            }],
        };
        let decoded = decode_cluster_info(&encode_cluster_info(&view)).unwrap();
        assert_eq!(decoded, view);
        assert_eq!(decoded.members[0].addrs(DATA_ADDRS_KEY).len(), 1);
        assert!(decode_cluster_info(&[0xff, 0xff, 0xff]).is_err());
    }
}
