//! Nodes join through a few seed nodes (not all-to-all) and converge.

use rafka_mesh::membership::{MemberEvent, MemberStatus, MembershipConfig};

use crate::sim::{self, Sim, ms, secs};

#[test]
fn sixty_nodes_join_through_three_seeds_and_converge() {
    let (seed, _guard) = sim::seed(0x101);
    let started = std::time::Instant::now();
    let mut sim = Sim::new(seed, MembershipConfig::default());
    sim.loss = 0.01;
    // Three seed nodes that know one another; 57 more that know only the seeds, starting over 5 s.
    let seeds: Vec<usize> = (0..3).map(|_| sim.add_node(None, vec![0, 1, 2])).collect();
    for &s in &seeds {
        sim.start(s);
    }
    sim.add_started(57, &seeds, secs(5));
    sim.run_for(secs(5));
    let took = sim
        .wait_until(secs(30), ms(250), Sim::converged)
        .unwrap_or_else(|e| panic!("{e}"));
    eprintln!(
        "join: 60 nodes converged {took:?} after the last start (seed {seed}); {:?}; wall {:?}",
        sim.stats,
        started.elapsed()
    );
    // Bound: a new node gets the whole cluster from its seed in one Syn/Ack round, and the
    // cluster gets the newcomer from its broadcasts (once it knows them) and from anti-entropy,
    // which spreads in O(log n) rounds of 1 s.
    assert!(took <= secs(8), "converged only after {took:?}");
    // Nobody was ever suspected while joining.
    let suspicions: Vec<String> = sim
        .log
        .iter()
        .filter_map(|o| match &o.event {
            MemberEvent::StatusChanged { id, new, .. } if *new != MemberStatus::Alive => {
                Some(format!("{} saw {id} {new:?} at {:?}", o.observer, o.at))
            }
            _ => None,
        })
        .collect();
    assert!(suspicions.is_empty(), "{suspicions:?}");
}
