//! A network split into two halves: each side declares the other dead; after healing, everyone
//! converges again.

use rafka_mesh::membership::{MemberStatus, MembershipConfig};

use crate::sim::{self, Sim, ms, secs};

#[test]
fn halves_declare_each_other_dead_then_reconverge_after_healing() {
    let (seed, _guard) = sim::seed(0x5B17);
    let started = std::time::Instant::now();
    let mut sim = Sim::new(seed, MembershipConfig::default());
    sim.loss = 0.01;
    // One seed on each side.
    let seeds = [0, 20];
    for i in 0..40 {
        let slot = sim.add_node(None, seeds.to_vec());
        assert_eq!(slot, i);
    }
    for s in 0..40 {
        sim.start(s);
    }
    sim.wait_until(secs(20), ms(500), Sim::converged)
        .unwrap_or_else(|e| panic!("{e}"));
    sim.run_for(secs(30));
    let left: Vec<usize> = (0..20).collect();
    let right: Vec<usize> = (20..40).collect();
    sim.split(&left, &right);
    let each_side_dead = |s: &Sim| -> Result<(), String> {
        for (mine, theirs) in [(&left, &right), (&right, &left)] {
            for &a in mine {
                for &b in theirs {
                    if s.status(a, b) != Some(MemberStatus::Dead) {
                        return Err(format!("{a} sees {b} {:?}", s.status(a, b)));
                    }
                }
                for &b in mine {
                    if a != b && s.status(a, b) != Some(MemberStatus::Alive) {
                        return Err(format!("{a} sees {b} on its side {:?}", s.status(a, b)));
                    }
                }
            }
        }
        Ok(())
    };
    let split_took = sim
        .wait_until(secs(10), ms(250), each_side_dead)
        .unwrap_or_else(|e| panic!("{e}"));
    // A minute apart, and still each side alive to itself.
    sim.run_for(secs(60));
    each_side_dead(&sim).unwrap_or_else(|e| panic!("{e} (seed {seed})"));
    sim.heal_all();
    let heal_took = sim
        .wait_until(secs(30), ms(250), Sim::converged)
        .unwrap_or_else(|e| panic!("{e}"));
    eprintln!(
        "split: each side dead to the other after {split_took:?}; converged {heal_took:?} after healing (seed {seed}); wall {:?}",
        started.elapsed()
    );
    // Dead ~3.8 s after the last heartbeat sent across the cut, which was sent at most 1 s
    // before it; relayed heartbeats count from when they were sent, so a side cannot keep the
    // other alive with old news.
    assert!(split_took <= secs(5), "{split_took:?}");
    // Healing needs one gossip to a dead peer across the cut (probability dead/(live+1) ≈ 1 per
    // node per second), then spreads like a join.
    assert!(heal_took <= secs(10), "{heal_took:?}");
}
