//! Nodes joining, leaving, crashing and restarting continuously; once quiet, convergence.

use rafka_mesh::membership::MembershipConfig;

use crate::sim::{self, Rng, Sim, ms, secs};

#[test]
fn churn_then_quiet_converges() {
    let (seed, _guard) = sim::seed(0xC4_0E);
    let started = std::time::Instant::now();
    let mut sim = Sim::new(seed, MembershipConfig::default());
    sim.loss = 0.02;
    let seeds = [0, 1, 2];
    for _ in seeds {
        sim.add_node(None, seeds.to_vec());
    }
    for s in seeds {
        sim.start(s);
    }
    sim.add_started(47, &seeds, secs(3));
    sim.run_for(secs(3));
    let mut rng = Rng::new(seed ^ 0xC4);
    let mut actions = [0usize; 4];
    // Two minutes of churn: every 0.5-2 s a node crashes, leaves, (re)starts, or a new one joins.
    let churn_end = sim.now + secs(120);
    while sim.now < churn_end {
        sim.run_for(ms(500 + rng.below(1_500)));
        let live: Vec<usize> = sim.live().into_iter().filter(|s| *s > 2).collect();
        let down: Vec<usize> = (3..sim.nodes.len())
            .filter(|s| sim.nodes[*s].core.is_none())
            .collect();
        let pick = |rng: &mut Rng, v: &[usize]| v[rng.below(v.len() as u64) as usize];
        match rng.below(4) {
            0 if live.len() > 30 => {
                sim.crash(pick(&mut rng, &live));
                actions[0] += 1;
            }
            1 if live.len() > 30 => {
                sim.leave(pick(&mut rng, &live));
                actions[1] += 1;
            }
            2 if !down.is_empty() => {
                sim.start(pick(&mut rng, &down));
                actions[2] += 1;
            }
            _ => {
                let slot = sim.add_node(None, seeds.to_vec());
                sim.start(slot);
                actions[3] += 1;
            }
        }
    }
    let took = sim
        .wait_until(secs(30), ms(500), Sim::converged)
        .unwrap_or_else(|e| panic!("{e}"));
    eprintln!(
        "churn: {actions:?} crashes/leaves/restarts/joins over 2 min, {} nodes up; converged {took:?} after the last change (seed {seed}); wall {:?}",
        sim.live().len(),
        started.elapsed()
    );
    // The last change may be a crash: dead everywhere within 5 s, the rest within a few rounds.
    assert!(took <= secs(10), "{took:?}");
}
