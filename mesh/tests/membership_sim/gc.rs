//! Dead nodes are forgotten after `gc_after`, and stale gossip never brings them back.

use rafka_mesh::membership::{MemberEvent, MembershipConfig};

use crate::sim::{self, Sim, ms, secs};

#[test]
fn dead_nodes_are_forgotten_and_not_resurrected() {
    let (seed, _guard) = sim::seed(0x6C);
    let config = MembershipConfig {
        gc_after_ms: 30_000,
        ..MembershipConfig::default()
    };
    let mut sim = Sim::new(seed, config);
    sim.loss = 0.02;
    let seeds = [0, 1];
    for _ in seeds {
        sim.add_node(None, seeds.to_vec());
    }
    for s in seeds {
        sim.start(s);
    }
    sim.add_started(18, &seeds, secs(2));
    sim.run_for(secs(2));
    sim.wait_until(secs(20), ms(500), Sim::converged)
        .unwrap_or_else(|e| panic!("{e}"));
    // Node 19 is cut off from everyone for a while around the crash of node 7, so it declares
    // node 7 dead at another time than the others (and so forgets it at another time).
    let others: Vec<usize> = (0..19).collect();
    sim.split(&[19], &others);
    sim.run_for(secs(8));
    let t0 = sim.now;
    sim.crash(7);
    sim.run_for(secs(12));
    sim.heal_all();
    // Two gc periods: forgotten by all, tombstones expired, and never seen again.
    sim.run_for(secs(70));
    let id = sim.nodes[7].id;
    let live = sim.live();
    let removed = sim
        .log
        .iter()
        .filter(|o| {
            o.at >= t0 && matches!(&o.event, MemberEvent::Removed { id: i, .. } if *i == id)
        })
        .count();
    assert_eq!(removed, live.len(), "every live node forgot node 7 once");
    for o in live {
        assert!(sim.core(o).status(&id).is_none(), "{o} still knows node 7");
    }
    let rejoined = sim
        .log
        .iter()
        .filter(|o| o.at >= t0)
        .any(|o| matches!(&o.event, MemberEvent::Joined { id: i, .. } if *i == id));
    assert!(!rejoined, "node 7 came back from stale gossip");
    sim.wait_until(secs(5), ms(500), Sim::converged)
        .unwrap_or_else(|e| panic!("{e}"));
}
