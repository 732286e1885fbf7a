//! Per-entity metric series (one per partition, per group and partition, ...), rendered at each
//! `/metrics` scrape straight from the node's state, at most `--max-metric-series` per scrape.
//!
//! They are not kept in the metrics registry: a registry series lives until the process ends, so
//! 100,000 partitions once created (or a topic since deleted) would stay in memory and in every
//! scrape. Here each scrape writes what exists now, in a stable order (topics by name, partitions
//! by index), until the cap; entities past it are left out whole (all their families), counted
//! in `rafka_metric_series_dropped{family}` and logged as a limit hit.
//!
//! A source of per-entity series (the partitions here; the group coordinator's lag next) adds a
//! [`Table`] of rows with one value per family, and [`Series::render`] writes the families.

use std::collections::BTreeMap;
use std::fmt::Write;

use crate::limits::{self, Limit};

/// Gauge: per-entity series left out of the last scrape by `--max-metric-series`, by family.
pub const SERIES_DROPPED: &str = "rafka_metric_series_dropped";

/// The labels of one entity's series (name, value).
pub type Labels = Vec<(&'static str, String)>;

/// Series of one kind of entity: the families (name, help) and a row per entity.
#[derive(Debug)]
pub struct Table {
    families: &'static [(&'static str, &'static str)],
    rows: Vec<(Labels, Vec<f64>)>,
}

impl Table {
    /// A table of gauges `families`, each row giving one value per family.
    pub fn new(families: &'static [(&'static str, &'static str)]) -> Self {
        Self {
            families,
            rows: Vec::new(),
        }
    }

    /// Adds an entity with its labels and one value per family (in the families' order).
    pub fn row(&mut self, labels: Labels, values: Vec<f64>) {
        self.rows.push((labels, values));
    }
}

/// The per-entity series of one scrape, within a cap.
#[derive(Debug)]
pub struct Series {
    cap: usize,
    used: usize,
    dropped: BTreeMap<&'static str, usize>,
    out: String,
}

impl Series {
    /// At most `cap` series in this scrape.
    pub fn new(cap: usize) -> Self {
        Self {
            cap,
            used: 0,
            dropped: BTreeMap::new(),
            out: String::new(),
        }
    }

    /// Writes `table`'s families for as many of its entities as the cap leaves room for.
    pub fn add(&mut self, table: Table) {
        let per_row = table.families.len().max(1);
        let room = (self.cap - self.used) / per_row;
        let kept = table.rows.len().min(room);
        for (i, (name, help)) in table.families.iter().enumerate() {
            let _ = writeln!(self.out, "# HELP {name} {help}\n# TYPE {name} gauge");
            for (labels, values) in table.rows.iter().take(kept) {
                let Some(value) = values.get(i) else { continue };
                self.out.push_str(name);
                write_labels(&mut self.out, labels);
                let _ = writeln!(self.out, " {value}");
            }
            let dropped = table.rows.len() - kept;
            if dropped > 0 {
                *self.dropped.entry(name).or_insert(0) += dropped;
            }
        }
        self.used += kept * per_row;
        if kept < table.rows.len() {
            let first = table.families.first().map_or("", |f| f.0);
            limits::hit(
                Limit::MetricSeries,
                format_args!(
                    "/metrics left out {} of {} entities of {first} and its families (at most {} \
                     series per scrape)",
                    table.rows.len() - kept,
                    table.rows.len(),
                    self.cap
                ),
            );
        }
    }

    /// The text of every family added, then how many series each lost to the cap.
    pub fn render(mut self) -> String {
        let _ = writeln!(
            self.out,
            "# HELP {SERIES_DROPPED} Per-entity series left out of this scrape by --max-metric-series.\n# TYPE {SERIES_DROPPED} gauge"
        );
        if self.dropped.is_empty() {
            let _ = writeln!(self.out, "{SERIES_DROPPED} 0");
        }
        for (family, count) in &self.dropped {
            let _ = writeln!(self.out, "{SERIES_DROPPED}{{family=\"{family}\"}} {count}");
        }
        self.out
    }
}

/// `{a="x",b="y"}` with Prometheus' escapes (backslash, double quote, newline).
fn write_labels(out: &mut String, labels: &[(&'static str, String)]) {
    if labels.is_empty() {
        return;
    }
    out.push('{');
    for (i, (name, value)) in labels.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        out.push_str(name);
        out.push_str("=\"");
        for c in value.chars() {
            match c {
                '\\' => out.push_str("\\\\"),
                '"' => out.push_str("\\\""),
                '\n' => out.push_str("\\n"),
                c => out.push(c),
            }
        }
        out.push('"');
    }
    out.push('}');
}

#[cfg(test)]
mod tests {
    use super::*;

    const FAMILIES: &[(&str, &str)] = &[("a_end", "End."), ("a_start", "Start.")];

    fn table(rows: usize) -> Table {
        let mut table = Table::new(FAMILIES);
        for i in 0..rows {
            table.row(vec![("partition", i.to_string())], vec![i as f64, 0.0]);
        }
        table
    }

    fn samples(text: &str, family: &str) -> usize {
        text.lines()
            .filter(|l| l.starts_with(&format!("{family}{{")))
            .count()
    }

    #[test]
    fn every_family_of_an_entity_is_kept_or_left_out_together() {
        let mut series = Series::new(7);
        series.add(table(5));
        let text = series.render();
        // 7 series leave room for three entities of two families.
        assert_eq!(samples(&text, "a_end"), 3);
        assert_eq!(samples(&text, "a_start"), 3);
        assert!(text.contains("a_end{partition=\"2\"} 2\n"), "{text}");
        assert!(!text.contains("partition=\"3\""), "{text}");
        assert!(text.contains("rafka_metric_series_dropped{family=\"a_end\"} 2\n"));
        assert!(text.contains("rafka_metric_series_dropped{family=\"a_start\"} 2\n"));
    }

    #[test]
    fn tables_share_the_cap_and_a_scrape_within_it_drops_nothing() {
        let mut series = Series::new(100);
        series.add(table(10));
        series.add(table(40));
        let text = series.render();
        assert_eq!(samples(&text, "a_end"), 10 + 40);
        assert!(text.contains("rafka_metric_series_dropped 0\n"), "{text}");
        let mut series = Series::new(30);
        series.add(table(10));
        series.add(table(40));
        let text = series.render();
        assert_eq!(samples(&text, "a_end"), 10 + 5);
    }

    #[test]
    fn label_values_are_escaped() {
        let mut out = String::new();
        write_labels(&mut out, &[("group", "a\"b\\c\nd".to_string())]);
        assert_eq!(out, r#"{group="a\"b\\c\nd"}"#);
    }
}
