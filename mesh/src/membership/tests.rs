//! Unit tests of the core: the actions it emits for given inputs. Whole-cluster behaviour under
//! loss, cuts and churn is in `tests/membership_sim/`.

use std::time::Duration;

use super::*;

fn peer(n: u16) -> MemberId {
    let mut bytes = [0u8; 32];
    bytes[..2].copy_from_slice(&n.to_be_bytes());
    libp2p::identity::Keypair::ed25519_from_bytes(bytes)
        .expect("32 bytes")
        .public()
        .to_peer_id()
}

fn ms(v: u64) -> Duration {
    Duration::from_millis(v)
}

fn node(n: u16, generation: u64) -> Membership {
    Membership::new(
        peer(n),
        Generation(generation),
        MembershipConfig::default(),
        u64::from(n),
    )
    .expect("valid config")
}

fn drain(m: &mut Membership) -> Vec<Output> {
    std::iter::from_fn(|| m.poll_output()).collect()
}

fn events(outputs: &[Output]) -> Vec<MemberEvent> {
    outputs
        .iter()
        .filter_map(|o| match o {
            Output::Event(e) => Some(e.clone()),
            _ => None,
        })
        .collect()
}

/// Delivers every output of every node (sends to their target, broadcasts to all others) through
/// the codec until nothing is left; returns the events per node.
fn pump(nodes: &mut [Membership], now: Duration) -> Vec<Vec<MemberEvent>> {
    let mut seen = vec![Vec::new(); nodes.len()];
    loop {
        let mut mail = Vec::new();
        for (i, m) in nodes.iter_mut().enumerate() {
            for output in drain(m) {
                match output {
                    Output::Send { to, message } => mail.push((m.id(), Some(to), message)),
                    Output::Broadcast { message } => mail.push((m.id(), None, message)),
                    Output::Event(e) => seen[i].push(e),
                }
            }
        }
        if mail.is_empty() {
            return seen;
        }
        for (from, to, message) in mail {
            let bytes = codec::encode(&message);
            assert!(bytes.len() <= MembershipConfig::default().max_message_bytes);
            let message = codec::decode(&bytes, bytes.len()).expect("decodes");
            for m in nodes.iter_mut() {
                if m.id() != from && to.is_none_or(|to| to == m.id()) {
                    m.handle(now, from, message.clone());
                }
            }
        }
    }
}

#[test]
fn own_state_changes_are_validated() {
    let mut m = node(1, 1);
    assert!(m.set("kafka", "10.0.0.1:9092").is_ok());
    assert_eq!(m.get("kafka"), Some("10.0.0.1:9092"));
    assert!(matches!(
        m.set(CLUSTER_ID_KEY, "x"),
        Err(StateError::ReservedKey { .. })
    ));
    assert!(matches!(
        m.set("", "x"),
        Err(StateError::BadKeyLength { .. })
    ));
    assert!(matches!(
        m.set(&"k".repeat(300), "x"),
        Err(StateError::BadKeyLength { .. })
    ));
    let big = "v".repeat(m.config().max_value_bytes + 1);
    assert!(matches!(
        m.set("k", &big),
        Err(StateError::ValueTooLong { .. })
    ));
    assert!(m.remove("kafka").is_ok());
    assert_eq!(m.get("kafka"), None);
    m.leave();
    assert_eq!(m.set("k", "v"), Err(StateError::Left));
    assert_eq!(m.status(&m.id()), Some(MemberStatus::Left));
}

#[test]
fn invalid_config_is_refused() {
    let config = MembershipConfig {
        gossip_interval_ms: 0,
        ..MembershipConfig::default()
    };
    assert!(Membership::new(peer(1), Generation(1), config, 0).is_err());
}

#[test]
fn first_tick_broadcasts_the_whole_state_and_syns_a_seed() {
    let mut m = node(1, 7);
    m.set("kafka", "a:9092").expect("set");
    m.add_seed(peer(2));
    m.add_seed(m.id()); // a node listing itself as a seed is harmless
    m.tick(ms(0));
    let outputs = drain(&mut m);
    let Some(Output::Broadcast { message }) = outputs.first() else {
        panic!("{outputs:?}");
    };
    let MessageBody::Update(delta) = &message.body else {
        panic!("{message:?}");
    };
    let own = &delta.nodes[0];
    assert_eq!(
        (own.id, own.generation, own.heartbeat),
        (peer(1), Generation(7), 1)
    );
    assert_eq!(
        (own.from_version, own.to_version, own.entries.len()),
        (0, 1, 1)
    );
    assert!(outputs.iter().any(|o| matches!(o,
        Output::Send { to, message: Message { body: MessageBody::Syn(d), .. } }
            if *to == peer(2) && d.nodes.len() == 1)));
    // Within the heartbeat interval nothing is due; a change is broadcast at the next tick.
    m.tick(ms(100));
    assert!(drain(&mut m).is_empty());
    m.set("load", "3").expect("set");
    m.tick(ms(200));
    let outputs = drain(&mut m);
    assert_eq!(outputs.len(), 1, "{outputs:?}");
    // The heartbeat is due at 1 s, and a Syn.
    m.tick(ms(1_000));
    assert_eq!(drain(&mut m).len(), 2);
}

#[test]
fn two_nodes_meet_through_a_seed_and_see_each_other_alive() {
    let mut nodes = vec![node(1, 1), node(2, 1)];
    nodes[0].set("kafka", "a:9092").expect("set");
    nodes[1].set("kafka", "b:9092").expect("set");
    nodes[0].add_seed(peer(2));
    // Node 1's first broadcast reaches nobody that knows it yet in reality; here it reaches 2.
    nodes[1].tick(ms(0));
    nodes[0].tick(ms(0));
    let seen = pump(&mut nodes, ms(5));
    for (i, other) in [(0, peer(2)), (1, peer(1))] {
        assert_eq!(nodes[i].status(&other), Some(MemberStatus::Alive));
        assert!(seen[i].contains(&MemberEvent::Joined {
            id: other,
            generation: Generation(1),
            previous: None
        }));
        let m = nodes[i].member(&other).expect("known");
        assert_eq!(
            m.keys.get("kafka").map(String::as_str),
            Some(if i == 0 { "b:9092" } else { "a:9092" })
        );
    }
    assert_eq!(nodes[0].members().len(), 2);
    assert_eq!(nodes[0].members()[0].id, peer(1));
}

/// Runs a group of nodes for `seconds`, ticking every 100 ms with instant delivery.
fn run(nodes: &mut [Membership], from_ms: u64, seconds: u64) -> Vec<Vec<MemberEvent>> {
    let mut all = vec![Vec::new(); nodes.len()];
    for t in (from_ms..from_ms + seconds * 1000).step_by(100) {
        for m in nodes.iter_mut() {
            m.tick(ms(t));
        }
        for (i, e) in pump(nodes, ms(t)).into_iter().enumerate() {
            all[i].extend(e);
        }
    }
    all
}

fn cluster(n: u16) -> Vec<Membership> {
    let mut nodes: Vec<_> = (1..=n).map(|i| node(i, 1)).collect();
    for m in nodes.iter_mut().skip(1) {
        m.add_seed(peer(1));
    }
    nodes
}

#[test]
fn a_leaving_node_is_left_at_once_and_stays_left() {
    let mut nodes = cluster(3);
    run(&mut nodes, 0, 5);
    nodes[2].leave();
    let outputs: Vec<Output> = drain(&mut nodes[2]);
    let direct = outputs
        .iter()
        .filter(|o| matches!(o, Output::Send { .. }))
        .count();
    let broadcast = outputs
        .iter()
        .filter(|o| matches!(o, Output::Broadcast { .. }))
        .count();
    assert_eq!(
        (direct, broadcast),
        (2, 1),
        "sent to both live peers and broadcast"
    );
    for o in outputs {
        nodes[2].outputs.push_back(o);
    }
    let seen = pump(&mut nodes, ms(5_000));
    for i in 0..2 {
        assert_eq!(nodes[i].status(&peer(3)), Some(MemberStatus::Left));
        assert!(seen[i].contains(&MemberEvent::StatusChanged {
            id: peer(3),
            generation: Generation(1),
            old: MemberStatus::Alive,
            new: MemberStatus::Left
        }));
    }
    // Rebroadcasts follow on the next ticks, then the node is quiet.
    let mut rebroadcasts = 0;
    for t in (5_000..7_000).step_by(100) {
        nodes[2].tick(ms(t));
        rebroadcasts += drain(&mut nodes[2])
            .iter()
            .filter(|o| matches!(o, Output::Broadcast { .. }))
            .count();
    }
    assert_eq!(rebroadcasts, 3);
    // The others never see it alive again, and never declare it dead.
    let seen = run(&mut nodes[..2], 7_000, 20);
    assert!(
        seen.iter()
            .flatten()
            .all(|e| !matches!(e, MemberEvent::StatusChanged { id, .. } if *id == peer(3)))
    );
}

#[test]
fn a_silent_node_turns_suspect_then_dead_and_a_heartbeat_revives_it() {
    let mut nodes = cluster(3);
    run(&mut nodes, 0, 20);
    let crashed = nodes.pop().expect("three nodes");
    let seen = run(&mut nodes, 20_000, 5);
    for (i, s) in seen.iter().enumerate() {
        let transitions: Vec<_> = s
            .iter()
            .filter_map(|e| match e {
                MemberEvent::StatusChanged { id, new, .. } if *id == peer(3) => Some(*new),
                _ => None,
            })
            .collect();
        assert_eq!(
            transitions,
            [MemberStatus::Suspect, MemberStatus::Dead],
            "node {i}"
        );
    }
    nodes.push(crashed);
    let seen = run(&mut nodes, 30_000, 2);
    for s in &seen[..2] {
        assert!(s.contains(&MemberEvent::StatusChanged {
            id: peer(3),
            generation: Generation(1),
            old: MemberStatus::Dead,
            new: MemberStatus::Alive
        }));
    }
}

#[test]
fn a_stall_of_this_node_is_not_blamed_on_its_peers() {
    let mut nodes = cluster(3);
    run(&mut nodes, 0, 20);
    // Node 1 stops ticking (and receiving) for 4 s, then ticks before the others' messages
    // are handled: no suspicion.
    nodes[0].tick(ms(24_000));
    let e = events(&drain(&mut nodes[0]));
    assert!(e.is_empty(), "{e:?}");
    assert_eq!(nodes[0].status(&peer(2)), Some(MemberStatus::Alive));
}

#[test]
fn a_new_generation_replaces_the_old_state_and_stale_ones_are_ignored() {
    let mut nodes = cluster(2);
    nodes[1].set("before", "restart").expect("set");
    run(&mut nodes, 0, 3);
    assert!(
        nodes[0]
            .member(&peer(2))
            .expect("known")
            .keys
            .contains_key("before")
    );
    let mut restarted = node(2, 2);
    restarted.add_seed(peer(1));
    restarted.set("after", "restart").expect("set");
    let old = std::mem::replace(&mut nodes[1], restarted);
    let seen = run(&mut nodes, 3_000, 2);
    assert!(seen[0].contains(&MemberEvent::Joined {
        id: peer(2),
        generation: Generation(2),
        previous: Some(Generation(1))
    }));
    let m = nodes[0].member(&peer(2)).expect("known");
    assert_eq!(m.generation, Generation(2));
    assert!(!m.keys.contains_key("before") && m.keys.contains_key("after"));
    // The old incarnation's gossip (say, delayed in the network) changes nothing.
    let stale = old.own_delta(0);
    nodes[0].handle(
        ms(6_000),
        peer(2),
        old.message(MessageBody::Update(Delta { nodes: vec![stale] })),
    );
    assert!(events(&drain(&mut nodes[0])).is_empty());
    assert_eq!(
        nodes[0].member(&peer(2)).expect("known").generation,
        Generation(2)
    );
}

#[test]
fn forgotten_nodes_are_not_resurrected_by_stale_gossip() {
    let config = MembershipConfig {
        gc_after_ms: 10_000,
        ..MembershipConfig::default()
    };
    let mut nodes: Vec<_> = (1..=3)
        .map(|i| Membership::new(peer(i), Generation(1), config.clone(), 9).expect("valid"))
        .collect();
    nodes[1].add_seed(peer(1));
    nodes[2].add_seed(peer(1));
    run(&mut nodes, 0, 5);
    let crashed = nodes.pop().expect("three");
    let seen = run(&mut nodes, 5_000, 16);
    for s in &seen {
        assert!(s.contains(&MemberEvent::Removed {
            id: peer(3),
            generation: Generation(1)
        }));
    }
    assert_eq!(nodes[0].status(&peer(3)), None);
    // A delta of the forgotten incarnation (whole state) is refused; a new incarnation is not.
    let stale = Delta {
        nodes: vec![crashed.own_delta(0)],
    };
    nodes[0].handle(
        ms(21_000),
        peer(2),
        crashed.message(MessageBody::Ack2(stale)),
    );
    assert_eq!(nodes[0].status(&peer(3)), None);
    let mut reborn = node(3, 2);
    reborn.tick(ms(21_000));
    let Some(Output::Broadcast { message }) = reborn.poll_output() else {
        panic!("first output is the broadcast");
    };
    nodes[0].handle(ms(21_000), peer(3), message);
    assert_eq!(nodes[0].status(&peer(3)), Some(MemberStatus::Alive));
}

#[test]
fn another_clusters_messages_are_ignored_and_reported() {
    let with_cluster = |n, c: &str| {
        let config = MembershipConfig {
            cluster_id: Some(c.to_string()),
            ..MembershipConfig::default()
        };
        Membership::new(peer(n), Generation(1), config, 1).expect("valid")
    };
    let mut nodes = vec![with_cluster(1, "a"), with_cluster(2, "b")];
    nodes[1].add_seed(peer(1));
    let seen = run(&mut nodes, 0, 3);
    assert_eq!(nodes[0].members().len(), 1);
    assert_eq!(nodes[1].members().len(), 1);
    assert!(seen[0].contains(&MemberEvent::ForeignCluster {
        id: peer(2),
        cluster_id: "b".into()
    }));
    // The Syn was answered with BadCluster, so the initiator hears of it too; once each.
    let reports = seen[1]
        .iter()
        .filter(|e| matches!(e, MemberEvent::ForeignCluster { .. }))
        .count();
    assert_eq!(reports, 1);
    // A node without a cluster id relaying a foreign node's state does not smuggle it in.
    let mut bridge = node(3, 1);
    let b_state = nodes[1].message(MessageBody::Update(full_delta(&nodes[1])));
    bridge.handle(ms(0), peer(2), b_state);
    let learnt = bridge.member(&peer(2)).expect("the bridge learnt b");
    assert_eq!(
        learnt.keys.get(CLUSTER_ID_KEY).map(String::as_str),
        Some("b")
    );
    let delta = bridge.delta_for(&Digest::default(), 50_000);
    let relay = Message {
        cluster_id: String::new(),
        body: MessageBody::Ack2(delta),
    };
    nodes[0].handle(ms(3_000), peer(3), relay);
    assert_eq!(nodes[0].status(&peer(2)), None);
    assert!(nodes[0].status(&peer(3)).is_some());
}

/// A node's whole own state as a delta.
fn full_delta(m: &Membership) -> Delta {
    let mut node = m.own_delta(0);
    node.entries = m
        .own
        .entries_above(0)
        .into_iter()
        .map(|(k, v)| KeyEntry {
            key: k.clone(),
            value: v.value.clone(),
            version: v.version,
        })
        .collect();
    Delta { nodes: vec![node] }
}

#[test]
fn setting_the_cluster_id_later_forgets_foreign_nodes() {
    let mut nodes = cluster(2);
    nodes[1].set_cluster_id("b").expect("first cluster id");
    run(&mut nodes, 0, 3);
    assert_eq!(nodes[0].status(&peer(2)), Some(MemberStatus::Alive));
    nodes[0].set_cluster_id("a").expect("first cluster id");
    let e = events(&drain(&mut nodes[0]));
    assert!(e.contains(&MemberEvent::Removed {
        id: peer(2),
        generation: Generation(1)
    }));
    assert_eq!(nodes[0].status(&peer(2)), None);
    assert!(nodes[0].set_cluster_id("a").is_ok());
    assert!(matches!(
        nodes[0].set_cluster_id("c"),
        Err(StateError::ClusterIdSet { .. })
    ));
}

/// A node that knows `n` peers, each with `keys` keys of `value_len` bytes.
fn knowing(n: u16, keys: usize, value_len: usize) -> Membership {
    let mut m = node(0, 1);
    for i in 1..=n {
        let mut other = node(i, 1_700_000_000_000);
        for k in 0..keys {
            other
                .set(&format!("key{k}"), &"v".repeat(value_len))
                .expect("set");
        }
        other.tick(ms(0));
        let full = full_delta(&other);
        m.handle(ms(0), peer(i), other.message(MessageBody::Update(full)));
    }
    m.tick(ms(0));
    drain(&mut m);
    m
}

#[test]
fn digests_of_hundreds_of_nodes_fit_and_deltas_keep_to_the_budget() {
    let mut m = knowing(300, 8, 600);
    assert_eq!(m.members().len(), 301);
    // A Syn names all 301 nodes and fits in half a message.
    m.tick(ms(1_000));
    let syn = drain(&mut m)
        .into_iter()
        .find_map(|o| match o {
            Output::Send { message, .. } => Some(message),
            _ => None,
        })
        .expect("a syn to a live peer");
    let MessageBody::Syn(digest) = &syn.body else {
        panic!("{syn:?}");
    };
    assert_eq!(digest.nodes.len(), 301);
    assert!(codec::encode(&syn).len() <= m.config().max_message_bytes / 2);
    // An empty node's Syn: the Ack carries as much state as fits, each node's entries a prefix.
    let mut fresh = node(1000, 1);
    fresh.tick(ms(0));
    drain(&mut fresh);
    let digest = fresh.digest(fresh.digest_budget());
    m.handle(ms(0), peer(1000), fresh.message(MessageBody::Syn(digest)));
    let ack = drain(&mut m)
        .into_iter()
        .find_map(|o| match o {
            Output::Send { message, .. } => Some(message),
            _ => None,
        })
        .expect("an ack");
    let bytes = codec::encode(&ack);
    assert!(
        bytes.len() <= m.config().max_message_bytes,
        "{} bytes",
        bytes.len()
    );
    assert!(
        bytes.len() > m.config().max_message_bytes * 9 / 10,
        "budget used: {} bytes",
        bytes.len()
    );
    let MessageBody::Ack { delta, .. } = &ack.body else {
        panic!("{ack:?}");
    };
    // Whole states (9 entries each: 8 keys) come first: the stalest.
    assert!(delta.nodes.len() >= 10);
    assert!(delta.nodes[0].entries.len() == 8);
}

#[test]
fn stalest_nodes_come_first() {
    let mut m = knowing(20, 3, 10);
    // The receiver knows everyone's state but is one heartbeat behind on all and misses two keys
    // of node 5.
    let mut digest = m.digest(usize::MAX);
    for d in &mut digest.nodes {
        d.heartbeat = d.heartbeat.saturating_sub(1);
        if d.id == peer(5) {
            d.max_version -= 2;
        }
    }
    let delta = m.delta_for(&digest, usize::MAX);
    assert_eq!(delta.nodes[0].id, peer(5));
    assert_eq!(delta.nodes[0].entries.len(), 2);
    assert_eq!(delta.nodes.len(), 21);
    // A budget for the headers of a few nodes only.
    let delta = m.delta_for(&digest, 200);
    assert!(
        !delta.nodes.is_empty() && delta.nodes.len() < 5,
        "{}",
        delta.nodes.len()
    );
}

#[test]
fn a_large_own_state_is_broadcast_in_chunks_that_apply_in_order() {
    let config = MembershipConfig {
        max_message_bytes: 4 * 1024,
        max_value_bytes: 1_000,
        max_key_bytes: 64,
        ..MembershipConfig::default()
    };
    let mut big = Membership::new(peer(1), Generation(1), config, 1).expect("valid");
    for k in 0..20 {
        big.set(&format!("k{k}"), &"x".repeat(900)).expect("set");
    }
    big.tick(ms(0));
    let updates: Vec<Message> = drain(&mut big)
        .into_iter()
        .filter_map(|o| match o {
            Output::Broadcast { message } => Some(message),
            _ => None,
        })
        .collect();
    assert!(updates.len() >= 5, "{}", updates.len());
    let mut receiver = node(2, 1);
    for u in updates {
        assert!(codec::encode(&u).len() <= 4 * 1024);
        receiver.handle(ms(0), peer(1), u);
    }
    assert_eq!(receiver.member(&peer(1)).expect("known").keys.len(), 20);
}

#[test]
fn phi_and_last_heard_are_reported() {
    let mut nodes = cluster(2);
    run(&mut nodes, 0, 10);
    let m = nodes[0].member(&peer(2)).expect("known");
    assert!(m.phi < 1.0, "{}", m.phi);
    assert!(m.last_heard >= ms(9_000));
    assert!(m.heartbeat >= 9);
    let me = nodes[0].member(&peer(1)).expect("self");
    assert_eq!((me.status, me.phi), (MemberStatus::Alive, 0.0));
}
