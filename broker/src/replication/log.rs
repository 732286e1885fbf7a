//! The store's partition log as the core sees it (in-memory reads only).

use rafka_store::PartitionLog;

use super::LocalLog;

impl LocalLog for PartitionLog {
    fn log_start_offset(&self) -> i64 {
        PartitionLog::log_start_offset(self)
    }

    fn log_end_offset(&self) -> i64 {
        PartitionLog::log_end_offset(self)
    }

    fn high_watermark(&self) -> i64 {
        PartitionLog::high_watermark(self)
    }

    fn latest_epoch(&self) -> Option<i32> {
        PartitionLog::latest_epoch(self)
    }

    fn end_offset_for_epoch(&self, epoch: i32) -> Option<(i32, i64)> {
        PartitionLog::end_offset_for_epoch(self, epoch)
    }
}
