//! One file per command.

pub mod consume;
pub mod produce;
pub mod topic;
