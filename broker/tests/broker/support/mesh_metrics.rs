//! The mesh figures a `rafka-node` exports on `/metrics`: the heartbeat-gap histogram
//! (`rafka_mesh_heartbeat_gap_seconds`, see `rafka_mesh::metrics`) and the bytes received on the
//! mesh listener. Two scrapes give the figures of the window between them.
//!
//! Used by `heartbeat_under_load` and included with `#[path]` by `examples/mesh_bench.rs`.

/// Name of the heartbeat-gap histogram.
pub const HEARTBEAT_GAP: &str = "rafka_mesh_heartbeat_gap_seconds";

/// One scrape of a node's `/metrics`.
#[derive(Clone, Debug, Default)]
pub struct MeshSample {
    /// Heartbeat gaps recorded so far.
    pub gaps: f64,
    /// Their sum, seconds.
    pub gap_sum: f64,
    /// Every bucket of the histogram: (upper bound in seconds, gaps up to it), ascending.
    pub buckets: Vec<(f64, f64)>,
    /// Bytes of request frames received on the mesh (p2p) listener.
    pub p2p_bytes_in: f64,
    /// Bytes of response frames sent on the mesh listener (fetch responses to followers and
    /// consumers, produce responses).
    pub p2p_bytes_out: f64,
}

/// The value of the Prometheus text line `name{labels} value` whose labels contain `label`.
pub fn metric(text: &str, name: &str, label: Option<&str>) -> Option<f64> {
    text.lines().find_map(|line| {
        let (key, value) = line.rsplit_once(' ')?;
        let (metric_name, labels) = key.split_once('{').unwrap_or((key, ""));
        let labelled = label.is_none_or(|l| labels.contains(l));
        (metric_name == name && labelled)
            .then(|| value.parse().ok())
            .flatten()
    })
}

/// Whether two bucket bounds are the same (+Inf included).
fn same_bound(a: f64, b: f64) -> bool {
    a == b || (a - b).abs() < 1e-9
}

impl MeshSample {
    /// Parses a `/metrics` body (a histogram not recorded yet is empty).
    pub fn parse(text: &str) -> MeshSample {
        let prefix = format!("{HEARTBEAT_GAP}_bucket{{le=\"");
        let buckets = text
            .lines()
            .filter_map(|line| {
                let rest = line.strip_prefix(prefix.as_str())?;
                let (bound, rest) = rest.split_once('"')?;
                let bound = match bound {
                    "+Inf" => f64::INFINITY,
                    b => b.parse().ok()?,
                };
                Some((bound, rest.rsplit_once(' ')?.1.parse().ok()?))
            })
            .collect();
        MeshSample {
            gaps: metric(text, &format!("{HEARTBEAT_GAP}_count"), None).unwrap_or(0.0),
            gap_sum: metric(text, &format!("{HEARTBEAT_GAP}_sum"), None).unwrap_or(0.0),
            buckets,
            p2p_bytes_in: metric(text, "rafka_bytes_in_total", Some("listener=\"p2p\""))
                .unwrap_or(0.0),
            p2p_bytes_out: metric(text, "rafka_bytes_out_total", Some("listener=\"p2p\""))
                .unwrap_or(0.0),
        }
    }

    /// Gaps up to the bucket bound `le` (0 if no such bucket).
    fn up_to(&self, le: f64) -> f64 {
        self.buckets
            .iter()
            .find(|(bound, _)| same_bound(*bound, le))
            .map_or(0.0, |(_, count)| *count)
    }

    /// Whether the histogram has a bucket bounded by `le`.
    pub fn has_bucket(&self, le: f64) -> bool {
        self.buckets
            .iter()
            .any(|(bound, _)| (bound - le).abs() < 1e-9)
    }
}

/// The heartbeat gaps and mesh bytes between two scrapes of one node, or summed over several
/// nodes' windows ([`GapWindow::merge`]).
#[derive(Clone, Debug, Default)]
pub struct GapWindow {
    count: f64,
    sum: f64,
    /// (bucket bound, gaps up to it), ascending.
    cumulative: Vec<(f64, f64)>,
    p2p_bytes_in: f64,
    p2p_bytes_out: f64,
}

impl GapWindow {
    /// The window from `from` to `to` (the later scrape of the same node).
    pub fn new(from: &MeshSample, to: &MeshSample) -> GapWindow {
        GapWindow {
            count: to.gaps - from.gaps,
            sum: to.gap_sum - from.gap_sum,
            cumulative: to
                .buckets
                .iter()
                .map(|&(bound, n)| (bound, n - from.up_to(bound)))
                .collect(),
            p2p_bytes_in: to.p2p_bytes_in - from.p2p_bytes_in,
            p2p_bytes_out: to.p2p_bytes_out - from.p2p_bytes_out,
        }
    }

    /// Adds another window (another node's, over the same buckets).
    pub fn merge(&mut self, other: &GapWindow) {
        self.count += other.count;
        self.sum += other.sum;
        self.p2p_bytes_in += other.p2p_bytes_in;
        self.p2p_bytes_out += other.p2p_bytes_out;
        if self.cumulative.is_empty() {
            self.cumulative = other.cumulative.clone();
            return;
        }
        for (bound, n) in &mut self.cumulative {
            *n += other.up_to(*bound);
        }
    }

    fn up_to(&self, le: f64) -> f64 {
        self.cumulative
            .iter()
            .find(|(bound, _)| same_bound(*bound, le))
            .map_or(0.0, |(_, n)| *n)
    }

    /// Gaps recorded in the window.
    pub fn count(&self) -> f64 {
        self.count
    }

    /// Mean gap, seconds (0 without gaps).
    pub fn mean(&self) -> f64 {
        if self.count > 0.0 {
            self.sum / self.count
        } else {
            0.0
        }
    }

    /// Gaps longer than `bound` seconds (a bucket bound).
    pub fn above(&self, bound: f64) -> f64 {
        self.count - self.up_to(bound)
    }

    /// The smallest bucket bound holding a fraction `q` of the window's gaps: an upper bound of
    /// the `q` quantile (`q` = 1: of the largest gap). Infinite if only +Inf holds them.
    pub fn quantile_bound(&self, q: f64) -> f64 {
        let wanted = q * self.count;
        self.cumulative
            .iter()
            .find(|(_, n)| *n >= wanted - 1e-9)
            .map_or(f64::INFINITY, |(bound, _)| *bound)
    }

    /// Bytes received on the mesh listener in the window.
    pub fn p2p_bytes_in(&self) -> f64 {
        self.p2p_bytes_in
    }

    /// Bytes sent on the mesh listener in the window.
    pub fn p2p_bytes_out(&self) -> f64 {
        self.p2p_bytes_out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn windows_of_two_scrapes() {
        let scrape = |b1: u64, b2: u64, inf: u64, sum: f64, bytes: u64| {
            format!(
                "{HEARTBEAT_GAP}_bucket{{le=\"1\"}} {b1}\n{HEARTBEAT_GAP}_bucket{{le=\"2\"}} {b2}\n\
                 {HEARTBEAT_GAP}_bucket{{le=\"+Inf\"}} {inf}\n{HEARTBEAT_GAP}_sum {sum}\n\
                 {HEARTBEAT_GAP}_count {inf}\nrafka_bytes_in_total{{listener=\"p2p\"}} {bytes}\n\
                 rafka_bytes_out_total{{listener=\"p2p\"}} {}\n",
                2 * bytes
            )
        };
        let a = MeshSample::parse(&scrape(1, 2, 2, 2.5, 10));
        let b = MeshSample::parse(&scrape(3, 5, 6, 9.5, 110));
        assert!(a.has_bucket(2.0));
        let w = GapWindow::new(&a, &b);
        assert_eq!(w.count(), 4.0);
        assert_eq!(w.mean(), 7.0 / 4.0);
        assert_eq!(w.above(2.0), 1.0);
        assert_eq!(w.quantile_bound(0.5), 1.0);
        assert_eq!(w.quantile_bound(0.75), 2.0);
        assert!(w.quantile_bound(1.0).is_infinite());
        assert_eq!(w.p2p_bytes_in(), 100.0);
        assert_eq!(w.p2p_bytes_out(), 200.0);
        let mut both = w.clone();
        both.merge(&w);
        assert_eq!(both.count(), 8.0);
        assert_eq!(both.above(2.0), 2.0);
        assert_eq!(both.quantile_bound(0.5), 1.0);
        assert_eq!(MeshSample::parse("").gaps, 0.0);
    }
}
