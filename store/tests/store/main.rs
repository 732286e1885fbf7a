//! Integration tests of rafka-store, in one binary (one link, and the crash test re-executes
//! this binary as its child).

mod append_read;
mod batch;
mod common;
mod compaction;
mod crash;
mod fixture;
mod group_commit;
mod idempotence;
mod log_ops;
mod recovery;
mod reopen;
mod retention;
mod transactions;
mod worker_pool;
