//! A restarted node (new generation, fresh state) is alive again everywhere, and its state from
//! before the restart is gone.

use rafka_mesh::membership::{MemberEvent, MemberStatus, MembershipConfig};

use crate::sim::{self, Sim, ms, secs};

fn cluster(seed: u64) -> Sim {
    let mut sim = Sim::new(seed, MembershipConfig::default());
    sim.loss = 0.02;
    let seeds = [0, 1, 2];
    for _ in seeds {
        sim.add_node(None, seeds.to_vec());
    }
    for s in seeds {
        sim.start(s);
    }
    sim.add_started(37, &seeds, secs(3));
    sim.run_for(secs(3));
    sim.wait_until(secs(20), ms(500), Sim::converged)
        .unwrap_or_else(|e| panic!("{e}"));
    sim
}

/// No live node knows `slot` by a key only its previous incarnation had.
fn old_state_gone(sim: &Sim, slot: usize) -> Result<(), String> {
    let id = sim.nodes[slot].id;
    for o in sim.live() {
        if let Some(m) = sim.core(o).member(&id)
            && m.keys.contains_key("before_restart")
        {
            return Err(format!("{o} still has the old state of {slot}"));
        }
    }
    Ok(())
}

#[test]
fn a_node_restarted_after_being_declared_dead_is_alive_again_with_a_fresh_state() {
    let (seed, _guard) = sim::seed(0x4E57);
    let mut sim = cluster(seed);
    let victim = 12;
    sim.core_mut(victim)
        .set("before_restart", "yes")
        .expect("set");
    sim.wait_until(secs(10), ms(500), Sim::converged)
        .unwrap_or_else(|e| panic!("{e}"));
    let old_generation = sim.core(victim).generation();
    sim.crash(victim);
    sim.run_for(secs(10));
    assert!(
        sim.live()
            .iter()
            .all(|o| sim.status(*o, victim) == Some(MemberStatus::Dead))
    );
    let t0 = sim.now;
    sim.start(victim);
    let took = sim
        .wait_until(secs(15), ms(250), |s| {
            s.converged()?;
            old_state_gone(s, victim)
        })
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(sim.core(victim).generation() > old_generation);
    // Everyone saw the new incarnation replace the old one.
    let replaced = sim
        .log
        .iter()
        .filter(|o| o.at >= t0)
        .filter(|o| {
            matches!(&o.event, MemberEvent::Joined { id, previous: Some(p), .. }
            if *id == sim.nodes[victim].id && *p == old_generation)
        })
        .count();
    assert_eq!(replaced, sim.live().len() - 1);
    eprintln!("restart after death: converged {took:?} after the restart (seed {seed})");
    assert!(took <= secs(6), "{took:?}");
}

#[test]
fn a_quick_restart_replaces_the_old_incarnation_before_it_is_declared_dead() {
    let (seed, _guard) = sim::seed(0x4E58);
    let mut sim = cluster(seed);
    let victim = 25;
    sim.core_mut(victim)
        .set("before_restart", "yes")
        .expect("set");
    sim.wait_until(secs(10), ms(500), Sim::converged)
        .unwrap_or_else(|e| panic!("{e}"));
    let t0 = sim.now;
    sim.crash(victim);
    sim.run_for(ms(500));
    sim.start(victim);
    let took = sim
        .wait_until(secs(15), ms(250), |s| {
            s.converged()?;
            old_state_gone(s, victim)
        })
        .unwrap_or_else(|e| panic!("{e}"));
    eprintln!("quick restart: converged {took:?} after the restart (seed {seed})");
    assert!(took <= secs(6), "{took:?}");
    // The new incarnation was never declared dead.
    let generation = sim.core(victim).generation();
    let id = sim.nodes[victim].id;
    assert!(
        !sim.log
            .iter()
            .filter(|o| o.at >= t0)
            .any(|o| matches!(&o.event,
        MemberEvent::StatusChanged { id: i, generation: g, new: MemberStatus::Dead, .. }
            if *i == id && *g == generation))
    );
}
