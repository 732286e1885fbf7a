//! One file per command.

pub mod bench;
pub mod cluster;
pub mod consume;
pub mod group;
pub mod produce;
pub mod subscribe;
pub mod topic;
pub mod txn;
