//! The store's partition log as the core sees it (in-memory reads only).

use rafka_store::PartitionLog;

use super::LocalLog;
use crate::ids::{LeaderEpoch, Offset};

impl LocalLog for PartitionLog {
    fn log_start_offset(&self) -> Offset {
        Offset(PartitionLog::log_start_offset(self))
    }

    fn log_end_offset(&self) -> Offset {
        Offset(PartitionLog::log_end_offset(self))
    }

    fn high_watermark(&self) -> Offset {
        Offset(PartitionLog::high_watermark(self))
    }

    fn latest_epoch(&self) -> Option<LeaderEpoch> {
        PartitionLog::latest_epoch(self).map(LeaderEpoch)
    }

    fn end_offset_for_epoch(&self, epoch: LeaderEpoch) -> Option<(LeaderEpoch, Offset)> {
        PartitionLog::end_offset_for_epoch(self, epoch.0)
            .map(|(epoch, end)| (LeaderEpoch(epoch), Offset(end)))
    }
}
