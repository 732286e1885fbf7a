//! Seeded in-memory simulations of the membership protocol, one file per invariant.
//! `RAFKA_SIM_SEED=<n>` replays a failing run (its seed is printed on failure).

mod sim;

mod churn;
mod clusters;
mod crash;
mod gc;
mod healthy;
mod join;
mod restart;
mod split;
