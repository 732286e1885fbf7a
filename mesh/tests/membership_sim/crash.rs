//! A crashed node is declared dead by every live node within 5 s; a node that leaves is seen
//! as left within 1 s.

use rafka_mesh::membership::{MemberStatus, MembershipConfig};

use crate::sim::{self, Sim, ms, secs, summary};

fn converged_cluster(seed: u64, n: usize, loss: f64) -> Sim {
    let mut sim = Sim::new(seed, MembershipConfig::default());
    sim.loss = loss;
    let seeds = [0, 1, 2];
    for _ in seeds {
        sim.add_node(None, seeds.to_vec());
    }
    for s in seeds {
        sim.start(s);
    }
    sim.add_started(n - 3, &seeds, secs(3));
    sim.run_for(secs(3));
    sim.wait_until(secs(20), ms(500), Sim::converged)
        .unwrap_or_else(|e| panic!("{e}"));
    sim
}

#[test]
fn crashed_nodes_are_dead_everywhere_within_five_seconds() {
    let (seed, _guard) = sim::seed(0xC4A5);
    let started = std::time::Instant::now();
    let mut sim = converged_cluster(seed, 50, 0.02);
    // Let the detectors learn the heartbeat rhythm, as in a cluster up for half a minute.
    sim.run_for(secs(30));
    let mut times = Vec::new();
    // A seed, then ordinary nodes, one at a time; each crash at an arbitrary point of its
    // heartbeat period.
    for (victim, offset) in [(0, 130), (17, 470), (33, 910), (49, 20)] {
        sim.run_for(ms(offset));
        let t0 = sim.now;
        sim.crash(victim);
        sim.run_for(secs(5));
        let observers = sim.live();
        let seen = sim
            .first_seen(victim, MemberStatus::Dead, t0, &observers)
            .unwrap_or_else(|e| panic!("{e} within 5 s (seed {seed})"));
        // And it stays dead: no stale gossip brings it back.
        sim.run_for(secs(10));
        for &o in &observers {
            assert_eq!(
                sim.status(o, victim),
                Some(MemberStatus::Dead),
                "{o} on {victim}"
            );
        }
        assert!(
            sim.transitions(victim, t0 + secs(5))
                .iter()
                .all(|(_, _, s)| *s == MemberStatus::Dead),
            "{victim} came back after being dead"
        );
        times.extend(seen);
    }
    eprintln!(
        "crash: dead everywhere after {} over {} observations (seed {seed}); wall {:?}",
        summary(&times),
        times.len(),
        started.elapsed()
    );
    assert!(times.iter().all(|t| *t <= secs(5)));
}

#[test]
fn a_leaving_node_is_left_everywhere_within_one_second() {
    let (seed, _guard) = sim::seed(0x1EF7);
    let started = std::time::Instant::now();
    let mut sim = converged_cluster(seed, 50, 0.05);
    sim.run_for(secs(10));
    let mut times = Vec::new();
    for victim in [1, 20, 40] {
        let t0 = sim.now;
        sim.leave(victim);
        sim.run_for(secs(1));
        let observers = sim.live();
        times.extend(
            sim.first_seen(victim, MemberStatus::Left, t0, &observers)
                .unwrap_or_else(|e| panic!("{e} within 1 s (seed {seed})")),
        );
        // Left is final: never suspected or declared dead afterwards.
        sim.run_for(secs(10));
        assert!(
            sim.transitions(victim, t0)
                .iter()
                .all(|(_, _, s)| *s == MemberStatus::Left)
        );
    }
    eprintln!(
        "leave: left everywhere after {} at 5 % loss (seed {seed}); wall {:?}",
        summary(&times),
        started.elapsed()
    );
    assert!(times.iter().all(|t| *t <= secs(1)));
    sim.wait_until(secs(5), ms(500), Sim::converged)
        .unwrap_or_else(|e| panic!("{e}"));
}
