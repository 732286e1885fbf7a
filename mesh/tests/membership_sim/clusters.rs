//! Two clusters with different cluster ids on one network, even seeded with each other's nodes,
//! never mix.

use rafka_mesh::membership::{MemberEvent, MembershipConfig};

use crate::sim::{self, Sim, ms, secs};

#[test]
fn two_clusters_on_one_network_never_mix() {
    let (seed, _guard) = sim::seed(0xC1_05);
    let mut sim = Sim::new(seed, MembershipConfig::default());
    sim.loss = 0.01;
    // Slots 0-19 are cluster "a", 20-39 cluster "b"; every node's seeds are a node of each.
    for i in 0..40 {
        let cluster = if i < 20 { "a" } else { "b" };
        sim.add_node(Some(cluster), vec![0, 20]);
    }
    for s in 0..40 {
        sim.start(s);
    }
    let took = sim
        .wait_until(secs(20), ms(500), Sim::converged)
        .unwrap_or_else(|e| panic!("{e}"));
    sim.run_for(secs(30));
    for o in 0..40 {
        let members = sim.core(o).members();
        assert_eq!(members.len(), 20, "{o} knows {} members", members.len());
        let cluster = sim.nodes[o].cluster.clone();
        for m in members {
            let slot = sim
                .nodes
                .iter()
                .position(|n| n.id == m.id)
                .expect("a sim node");
            assert_eq!(sim.nodes[slot].cluster, cluster, "{o} knows {slot}");
        }
    }
    // They noticed each other (the seed of the other cluster), and said so.
    let reports = sim
        .log
        .iter()
        .filter(|o| matches!(o.event, MemberEvent::ForeignCluster { .. }))
        .count();
    assert!(reports > 0);
    eprintln!(
        "clusters: each converged alone in {took:?}, {reports} foreign reports (seed {seed})"
    );
}
