//! `rafka cluster [--json]`: every member of the mesh as one node sees it; `rafka cluster key
//! generate FILE`: a new cluster key.
//!
//! Over the mesh the node the client reached answers `/rafka/cluster/1` with its gossip
//! membership ([`Client::cluster_members`]): peer ids, node ids, states, heartbeat ages, and the
//! keys each node gossips about itself (endpoints, metadata role, partitions led). Over Kafka TCP
//! there is no membership to ask for: the brokers Metadata lists are printed, with a note on
//! stderr saying how to get the rest.

use std::io::Write;
use std::time::Duration;

use anyhow::Context;
use clap::{Args, Subcommand};
use rafka_client::members::{ClusterMember, ClusterView, MemberState};
use rafka_client::metadata::ClusterMetadata;
use rafka_client::{Bootstrap, Client};
use serde::Serialize;

/// `cluster`.
#[derive(Debug, Args)]
#[command(after_help = JSON_HELP, args_conflicts_with_subcommands = true)]
pub struct ClusterArgs {
    /// Print one JSON document (field names below) instead of a table.
    #[arg(long)]
    pub json: bool,
    #[command(subcommand)]
    pub action: Option<ClusterAction>,
}

/// What `cluster` does besides listing members.
#[derive(Debug, Subcommand)]
pub enum ClusterAction {
    /// The cluster key every node and client of a mesh shares.
    #[command(subcommand)]
    Key(KeyAction),
    /// Remove a stopped node for good: its replicas move to the other nodes (new followers catch
    /// up before its replicas are dropped) and it leaves the metadata quorum. Refused while the
    /// node is alive (stop it first) or is the only in-sync replica of a partition.
    Remove {
        /// The node id (`rafka cluster` lists them).
        node_id: i32,
    },
}

/// `cluster key`.
#[derive(Debug, Subcommand)]
pub enum KeyAction {
    /// Write a new random cluster key to FILE (readable by its owner only; an existing file is
    /// never overwritten). Copy it to every node and client, and give it with --cluster-key-file
    /// (or RAFKA_CLUSTER_KEY_FILE).
    Generate {
        /// Where to write the key.
        file: std::path::PathBuf,
    },
}

/// Runs the `cluster` commands that need no connection; `None` for the others.
pub fn run_offline(args: &ClusterArgs) -> Option<anyhow::Result<()>> {
    let Some(ClusterAction::Key(KeyAction::Generate { file })) = &args.action else {
        return None;
    };
    Some(generate_key(file))
}

#[cfg(feature = "mesh")]
fn generate_key(file: &std::path::Path) -> anyhow::Result<()> {
    let key = rafka_mesh::ClusterKey::generate_file(file)?;
    println!(
        "wrote a new cluster key to {} (fingerprint {}); give every node and client --cluster-key-file {}",
        file.display(),
        key.fingerprint(),
        file.display()
    );
    Ok(())
}

#[cfg(not(feature = "mesh"))]
fn generate_key(_file: &std::path::Path) -> anyhow::Result<()> {
    anyhow::bail!("this build has no mesh (cargo feature `mesh`): it cannot make cluster keys")
}

/// The `--json` document, as `rafka cluster --help` shows it.
const JSON_HELP: &str = "\
Over a Kafka HOST:PORT bootstrap only the brokers from Metadata are known (state, heartbeats,
roles and mesh addresses are gossiped on the mesh): use a p2p bootstrap address for those.

--json prints one object (fields are added, never renamed or removed):
  source                 \"mesh\" (the gossiped member list) or \"kafka\" (Metadata brokers only)
  cluster_id             the cluster id, or null
  responder              peer id of the node that answered (mesh), or null
  metadata_leader        node id of the live member leading the metadata log, or null (always
                         null over kafka: Metadata's controller id is any live broker, as in KRaft)
  members[]              sorted by node id
    peer_id              libp2p peer id (null over kafka)
    node_id              Kafka node id (null before the node registered)
    state                \"alive\", \"suspect\", \"dead\" or \"left\" (null over kafka)
    generation           incarnation, grows across restarts (null over kafka)
    last_heartbeat_ms_ago  ms since its heartbeat last advanced, 0 for the responder
                         (null over kafka)
    metadata_role        \"leader\", \"voter\", \"learner\" or \"none\" (null if unknown)
    metadata_version     metadata version it has applied (null if unknown)
    partitions_led       partitions it leads (null if unknown)
    kafka                advertised Kafka endpoint HOST:PORT (null if unknown)
    http                 admin HTTP endpoint HOST:PORT (null if unknown)
    data_addrs[]         data-plane (p2p) multiaddrs: usable as --bootstrap
    control_addrs[]      control-plane multiaddrs (gossip, metadata log)
A dead or left member's role, version and partition count are what it gossiped last.";

/// The `--json` document.
#[derive(Debug, Serialize)]
struct ClusterDoc {
    source: &'static str,
    cluster_id: Option<String>,
    responder: Option<String>,
    metadata_leader: Option<i32>,
    members: Vec<MemberDoc>,
}

/// One member in the `--json` document.
#[derive(Debug, Default, Serialize)]
struct MemberDoc {
    peer_id: Option<String>,
    node_id: Option<i32>,
    state: Option<&'static str>,
    generation: Option<u64>,
    last_heartbeat_ms_ago: Option<u64>,
    metadata_role: Option<String>,
    metadata_version: Option<u64>,
    partitions_led: Option<u64>,
    kafka: Option<String>,
    http: Option<String>,
    data_addrs: Vec<String>,
    control_addrs: Vec<String>,
}

impl MemberDoc {
    fn from_member(m: &ClusterMember) -> MemberDoc {
        MemberDoc {
            peer_id: Some(m.peer_id.clone()),
            node_id: m.node_id(),
            state: Some(m.state.as_str()),
            generation: Some(m.generation),
            last_heartbeat_ms_ago: Some(
                u64::try_from(m.last_heard_ago.as_millis()).unwrap_or(u64::MAX),
            ),
            metadata_role: m.metadata_role().map(str::to_owned),
            metadata_version: m.metadata_version(),
            partitions_led: m.partitions_led(),
            kafka: m.kafka().map(str::to_owned),
            http: m.http().map(str::to_owned),
            data_addrs: m.data_addrs(),
            control_addrs: m.control_addrs(),
        }
    }
}

/// The node id of the one live member that says it leads the metadata log (none if no live
/// member does, or, for a moment after an election, more than one still does).
fn metadata_leader(view: &ClusterView) -> Option<i32> {
    let mut leaders = view
        .members
        .iter()
        .filter(|m| m.is_live() && m.metadata_role() == Some("leader"));
    let leader = leaders.next()?;
    match leaders.next() {
        None => leader.node_id(),
        Some(_) => None,
    }
}

fn mesh_doc(view: &ClusterView, meta: &ClusterMetadata) -> ClusterDoc {
    ClusterDoc {
        source: "mesh",
        cluster_id: meta.cluster_id.clone(),
        responder: view.responder.clone(),
        metadata_leader: metadata_leader(view),
        members: view.members.iter().map(MemberDoc::from_member).collect(),
    }
}

fn kafka_doc(meta: &ClusterMetadata) -> ClusterDoc {
    let members = meta
        .brokers
        .values()
        .map(|b| MemberDoc {
            node_id: Some(b.node_id),
            kafka: Some(format_host_port(&b.host, b.port)),
            ..MemberDoc::default()
        })
        .collect();
    ClusterDoc {
        source: "kafka",
        cluster_id: meta.cluster_id.clone(),
        responder: None,
        // Like KRaft brokers, a node reports an arbitrary live broker (itself) as the controller:
        // not the metadata log's leader.
        metadata_leader: None,
        members,
    }
}

fn format_host_port(host: &str, port: i32) -> String {
    if host.contains(':') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    }
}

/// A duration as an operator reads it: `350ms`, `4.2s`, `3m05s`, `2h07m`.
fn age(d: Duration) -> String {
    let ms = d.as_millis();
    let s = d.as_secs();
    if ms < 1000 {
        format!("{ms}ms")
    } else if s < 60 {
        format!("{:.1}s", d.as_secs_f64())
    } else if s < 3600 {
        format!("{}m{:02}s", s / 60, s % 60)
    } else {
        format!("{}h{:02}m", s / 3600, (s % 3600) / 60)
    }
}

/// Writes `rows` under `headers`, each column as wide as its widest cell, two spaces apart.
fn write_table(
    out: &mut impl Write,
    headers: &[&str],
    rows: &[Vec<String>],
) -> std::io::Result<()> {
    let mut widths: Vec<usize> = headers.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.chars().count());
        }
    }
    let header: Vec<String> = headers.iter().map(|h| (*h).to_owned()).collect();
    for row in std::iter::once(&header).chain(rows) {
        let mut line = String::new();
        for (i, (cell, width)) in row.iter().zip(&widths).enumerate() {
            if i + 1 == row.len() {
                line.push_str(cell);
            } else {
                line.push_str(&format!("{cell:<width$}  "));
            }
        }
        writeln!(out, "{}", line.trim_end())?;
    }
    Ok(())
}

fn or_dash(value: Option<impl ToString>) -> String {
    value.map_or_else(|| "-".to_owned(), |v| v.to_string())
}

/// The mesh table: one row per member, then a summary line.
fn write_mesh_table(
    out: &mut impl Write,
    doc: &ClusterDoc,
    view: &ClusterView,
) -> std::io::Result<()> {
    let headers = [
        "NODE",
        "STATE",
        "ROLE",
        "LEADS",
        "HEARTBEAT",
        "KAFKA",
        "DATA",
        "CONTROL",
        "PEER ID",
    ];
    let mut stale = false;
    let rows: Vec<Vec<String>> = view
        .members
        .iter()
        .map(|m| {
            let responder = view.responder.as_deref() == Some(m.peer_id.as_str());
            // What a dead or left member says about itself is what it said before it went.
            let mark = if m.is_live() { "" } else { "*" };
            let role = m.metadata_role().map(|r| format!("{r}{mark}"));
            let led = m.partitions_led().map(|n| format!("{n}{mark}"));
            stale |= !m.is_live() && (role.is_some() || led.is_some());
            vec![
                or_dash(m.node_id()),
                m.state.to_string(),
                or_dash(role),
                or_dash(led),
                if responder {
                    "self".to_owned()
                } else {
                    format!("{} ago", age(m.last_heard_ago))
                },
                or_dash(m.kafka()),
                or_dash(Some(m.data_addrs().join(",")).filter(|s| !s.is_empty())),
                or_dash(Some(m.control_addrs().join(",")).filter(|s| !s.is_empty())),
                m.peer_id.clone(),
            ]
        })
        .collect();
    write_table(out, &headers, &rows)?;
    if stale {
        writeln!(out, "* as it gossiped before it became dead or left")?;
    }
    let count = |s: MemberState| view.members.iter().filter(|m| m.state == s).count();
    let states: Vec<String> = [
        MemberState::Alive,
        MemberState::Suspect,
        MemberState::Dead,
        MemberState::Left,
    ]
    .into_iter()
    .filter(|s| count(*s) > 0)
    .map(|s| format!("{} {s}", count(s)))
    .collect();
    let responder = view
        .members
        .iter()
        .find(|m| view.responder.as_deref() == Some(m.peer_id.as_str()));
    writeln!(
        out,
        "\n{} members ({}); metadata leader: {}; cluster {}; as seen by {}",
        view.members.len(),
        states.join(", "),
        doc.metadata_leader
            .map_or_else(|| "none".to_owned(), |n| format!("node {n}")),
        doc.cluster_id.as_deref().unwrap_or("-"),
        match (responder.and_then(ClusterMember::node_id), &view.responder) {
            (Some(node), _) => format!("node {node}"),
            (None, Some(peer)) => format!("peer {peer}"),
            (None, None) => "an unnamed node".to_owned(),
        }
    )
}

/// The Kafka table: the brokers Metadata lists.
fn write_kafka_table(out: &mut impl Write, doc: &ClusterDoc) -> std::io::Result<()> {
    let rows: Vec<Vec<String>> = doc
        .members
        .iter()
        .map(|m| vec![or_dash(m.node_id), or_dash(m.kafka.as_deref())])
        .collect();
    write_table(out, &["NODE", "KAFKA"], &rows)
}

const KAFKA_NOTE: &str = "note: over Kafka TCP only the brokers Metadata lists are shown (Rafka lists \
live brokers only); member states, heartbeats, metadata roles and mesh addresses come from the \
mesh: rafka --bootstrap /ip4/HOST/tcp/PORT cluster (a node's p2p address), or --bootstrap mdns";

/// Runs `cluster`.
pub async fn run(client: &Client, args: ClusterArgs) -> anyhow::Result<()> {
    if let Some(ClusterAction::Remove { node_id }) = args.action {
        rafka_client::admin::Admin::new(client.clone())
            .remove_node(node_id)
            .await
            .with_context(|| format!("remove node {node_id}"))?;
        println!("node {node_id} removed: its replicas move to the other nodes");
        return Ok(());
    }
    let over_kafka = matches!(client.config().bootstrap, Bootstrap::Kafka(_));
    let mut out = std::io::stdout().lock();
    if over_kafka {
        let meta = client
            .refresh_metadata(Some(&[]))
            .await
            .context("list brokers")?;
        eprintln!("{KAFKA_NOTE}");
        let doc = kafka_doc(&meta);
        if args.json {
            serde_json::to_writer_pretty(&mut out, &doc)?;
            writeln!(out)?;
        } else {
            write_kafka_table(&mut out, &doc)?;
        }
        return Ok(());
    }
    let view = client
        .cluster_members()
        .await
        .context("list cluster members")?
        .sorted();
    let doc = mesh_doc(&view, &client.metadata());
    if args.json {
        serde_json::to_writer_pretty(&mut out, &doc)?;
        writeln!(out)?;
    } else {
        write_mesh_table(&mut out, &doc, &view)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use rafka_client::members::{DATA_ADDRS_KEY, LED_KEY, NODE_ID_KEY, ROLE_KEY};
    use rafka_client::metadata::BrokerInfo;

    use super::*;

    fn member(
        peer: &str,
        node: &str,
        state: MemberState,
        role: &str,
        ago_ms: u64,
    ) -> ClusterMember {
        let keys: BTreeMap<String, String> = [
            (NODE_ID_KEY, node),
            (ROLE_KEY, role),
            (LED_KEY, "2"),
            (DATA_ADDRS_KEY, "/ip4/127.0.0.1/tcp/7070"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect();
        ClusterMember {
            peer_id: peer.into(),
            state,
            last_heard_ago: Duration::from_millis(ago_ms),
            generation: 1,
            keys,
        }
    }

    fn view() -> ClusterView {
        ClusterView {
            responder: Some("pa".into()),
            members: vec![
                member("pc", "3", MemberState::Dead, "leader", 4200),
                member("pa", "1", MemberState::Alive, "voter", 0),
                member("pb", "2", MemberState::Alive, "leader", 350),
            ],
        }
        .sorted()
    }

    #[test]
    fn the_leader_is_the_one_live_member_that_says_so() {
        assert_eq!(metadata_leader(&view()), Some(2));
        let mut two = view();
        two.members[0] = member("pa", "1", MemberState::Alive, "leader", 0);
        assert_eq!(metadata_leader(&two), None);
    }

    #[test]
    fn json_uses_the_documented_names() {
        let doc = mesh_doc(&view(), &ClusterMetadata::default());
        let json = serde_json::to_value(&doc).unwrap();
        assert_eq!(json["source"], "mesh");
        assert_eq!(json["responder"], "pa");
        assert_eq!(json["metadata_leader"], 2);
        let m = &json["members"][2];
        for field in JSON_HELP
            .lines()
            .skip_while(|l| !l.contains("members[]"))
            .skip(1)
            .filter_map(|l| l.split_whitespace().next())
            .filter(|w| {
                w.chars()
                    .all(|c| c.is_ascii_lowercase() || c == '_' || c == '[' || c == ']')
            })
        {
            let name = field.trim_end_matches("[]");
            assert!(m.get(name).is_some(), "member field {name} missing: {m}");
        }
        assert_eq!(m["node_id"], 3);
        assert_eq!(m["state"], "dead");
        assert_eq!(m["last_heartbeat_ms_ago"], 4200);
        assert_eq!(m["data_addrs"][0], "/ip4/127.0.0.1/tcp/7070");
        assert!(m["kafka"].is_null());
    }

    #[test]
    fn the_table_is_aligned_and_marks_stale_roles() {
        let v = view();
        let doc = mesh_doc(&v, &ClusterMetadata::default());
        let mut out = Vec::new();
        write_mesh_table(&mut out, &doc, &v).unwrap();
        let text = String::from_utf8(out).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert!(
            lines[0].starts_with("NODE  STATE  ROLE     LEADS  HEARTBEAT"),
            "{text}"
        );
        let col = lines[0].find("HEARTBEAT").unwrap();
        assert!(lines[1][col..].starts_with("self"), "{text}");
        assert!(lines[2][col..].starts_with("350ms ago"), "{text}");
        assert!(lines[3][col..].starts_with("4.2s ago"), "{text}");
        assert!(lines[3].contains("leader*"), "{text}");
        assert!(
            text.contains("3 members (2 alive, 1 dead); metadata leader: node 2"),
            "{text}"
        );
        assert!(text.contains("as seen by node 1"), "{text}");
    }

    #[test]
    fn kafka_brokers_without_mesh_fields() {
        let mut meta = ClusterMetadata {
            controller: Some(2),
            ..ClusterMetadata::default()
        };
        for id in [1, 2] {
            meta.brokers.insert(
                id,
                BrokerInfo {
                    node_id: id,
                    host: "127.0.0.1".into(),
                    port: 9090 + id,
                    rack: None,
                },
            );
        }
        let doc = kafka_doc(&meta);
        let json = serde_json::to_value(&doc).unwrap();
        assert_eq!(json["source"], "kafka");
        assert!(json["metadata_leader"].is_null());
        assert_eq!(json["members"][1]["kafka"], "127.0.0.1:9092");
        assert!(json["members"][1]["state"].is_null());
        let mut out = Vec::new();
        write_kafka_table(&mut out, &doc).unwrap();
        let text = String::from_utf8(out).unwrap();
        assert_eq!(
            text,
            "NODE  KAFKA\n1     127.0.0.1:9091\n2     127.0.0.1:9092\n"
        );
    }

    #[test]
    fn ages_read_naturally() {
        assert_eq!(age(Duration::from_millis(0)), "0ms");
        assert_eq!(age(Duration::from_millis(999)), "999ms");
        assert_eq!(age(Duration::from_millis(4210)), "4.2s");
        assert_eq!(age(Duration::from_secs(185)), "3m05s");
        assert_eq!(age(Duration::from_secs(7620)), "2h07m");
    }
}
