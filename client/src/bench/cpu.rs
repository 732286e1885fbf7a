//! CPU time of a process from `/proc/PID/stat` (user + system, all threads), for this process
//! and for a broker on the same machine (`--broker-pid`), so the client/broker split of a run
//! is visible.

use std::time::Duration;

/// Clock ticks per second of the `/proc` times (`USER_HZ`, 100 on every Linux architecture).
const USER_HZ: u64 = 100;

/// CPU time used so far by process `pid` (`None` = this process); `None` when unreadable.
pub fn process_cpu(pid: Option<u32>) -> Option<Duration> {
    let path = match pid {
        Some(pid) => format!("/proc/{pid}/stat"),
        None => "/proc/self/stat".to_owned(),
    };
    parse_stat(&std::fs::read_to_string(path).ok()?)
}

/// utime + stime of a `/proc/PID/stat` line. The command name (in parentheses) may hold spaces
/// and parentheses, so fields are counted from the last `)`.
fn parse_stat(stat: &str) -> Option<Duration> {
    let (_, rest) = stat.rsplit_once(')')?;
    let mut fields = rest.split_whitespace();
    // After the name: state is field 3; utime and stime are fields 14 and 15.
    let utime: u64 = fields.nth(11)?.parse().ok()?;
    let stime: u64 = fields.next()?.parse().ok()?;
    let ticks = utime + stime;
    Some(Duration::from_millis(ticks * 1000 / USER_HZ))
}

/// CPU used by this process and the broker over a run.
#[derive(Debug, Clone, Copy)]
pub struct CpuMeter {
    own: Option<Duration>,
    broker: Option<(u32, Duration)>,
}

/// CPU seconds over a run: total and per million records.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize)]
pub struct CpuReport {
    /// This process (the benchmark client).
    pub client_s: Option<f64>,
    /// This process, per million records.
    pub client_s_per_million: Option<f64>,
    /// The broker process (`--broker-pid`).
    pub broker_s: Option<f64>,
    /// The broker process, per million records.
    pub broker_s_per_million: Option<f64>,
}

impl CpuMeter {
    /// Reads the starting times.
    pub fn start(broker_pid: Option<u32>) -> CpuMeter {
        CpuMeter {
            own: process_cpu(None),
            broker: broker_pid.and_then(|pid| Some((pid, process_cpu(Some(pid))?))),
        }
    }

    /// CPU used since [`CpuMeter::start`], for `records` records.
    pub fn stop(&self, records: u64) -> CpuReport {
        let per_million = |s: f64| (records > 0).then(|| s * 1e6 / records as f64);
        let own = self
            .own
            .zip(process_cpu(None))
            .map(|(a, b)| b.saturating_sub(a).as_secs_f64());
        let broker = self.broker.and_then(|(pid, before)| {
            Some(process_cpu(Some(pid))?.saturating_sub(before).as_secs_f64())
        });
        CpuReport {
            client_s: own,
            client_s_per_million: own.and_then(per_million),
            broker_s: broker,
            broker_s_per_million: broker.and_then(per_million),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_stat_with_odd_names() {
        let line = "1234 (rafka (node) x) S 1 1234 1234 0 -1 4194560 100 0 0 0 250 75 0 0 20 0 9 \
                    0 1000 1 1 18446744073709551615";
        assert_eq!(parse_stat(line), Some(Duration::from_millis(3250)));
        assert_eq!(parse_stat("garbage"), None);
    }

    #[test]
    fn reads_this_process() {
        // Linux only; elsewhere there is nothing to read and the figures are left out.
        if std::path::Path::new("/proc/self/stat").exists() {
            assert!(process_cpu(None).is_some());
            let meter = CpuMeter::start(Some(std::process::id()));
            let report = meter.stop(2_000_000);
            assert!(report.client_s.is_some() && report.broker_s.is_some());
            assert_eq!(
                report.client_s_per_million,
                report.client_s.map(|s| s / 2.0)
            );
        }
    }
}
