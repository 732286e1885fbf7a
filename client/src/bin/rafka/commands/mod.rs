//! One file per command.

pub mod bench;
pub mod consume;
pub mod produce;
pub mod topic;
