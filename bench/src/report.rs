//! One server's result as a JSON file, and the side-by-side table of two servers' runs.

use std::fmt::Write as _;

use serde::{Deserialize, Serialize};

use crate::{load::LoadMeasurements, stats::ratio};

/// Everything measured about one server in one run.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ServerResult {
    /// "Medrix", "Synapse 1.163.2", ...
    pub server: String,
    /// From spawning the process to the first 200 from `/_matrix/client/versions`.
    pub cold_start_ms: Option<f64>,
    /// VmRSS after a few seconds idle, before any user exists.
    pub idle_rss_kib: Option<u64>,
    pub load: LoadMeasurements,
}

/// How a ratio reads: which way is better for Medrix.
enum Better {
    Higher,
    Lower,
}

struct Row {
    metric: &'static str,
    /// The value for one run; the table shows the median over the runs.
    value: fn(&ServerResult) -> Option<f64>,
    decimals: usize,
    better: Better,
}

fn mib(kib: Option<u64>) -> Option<f64> {
    kib.map(|k| k as f64 / 1024.0)
}

fn cpu_share(load: &LoadMeasurements, cpu: Option<f64>) -> Option<f64> {
    cpu.map(|c| 100.0 * c / load.load_seconds)
}

const ROWS: [Row; 11] = [
    Row {
        metric: "accepted messages/s",
        value: |r| Some(r.load.accepted_per_second),
        decimals: 1,
        better: Better::Higher,
    },
    Row {
        metric: "send round-trip p50 (ms)",
        value: |r| r.load.send_round_trip.map(|q| q.p50_ms),
        decimals: 2,
        better: Better::Lower,
    },
    Row {
        metric: "send round-trip p95 (ms)",
        value: |r| r.load.send_round_trip.map(|q| q.p95_ms),
        decimals: 2,
        better: Better::Lower,
    },
    Row {
        metric: "send → observer /sync p50 (ms)",
        value: |r| r.load.send_to_sync.map(|q| q.p50_ms),
        decimals: 2,
        better: Better::Lower,
    },
    Row {
        metric: "send → observer /sync p95 (ms)",
        value: |r| r.load.send_to_sync.map(|q| q.p95_ms),
        decimals: 2,
        better: Better::Lower,
    },
    Row {
        metric: "idle RSS (MiB)",
        value: |r| mib(r.idle_rss_kib),
        decimals: 1,
        better: Better::Lower,
    },
    Row {
        metric: "cold start (ms)",
        value: |r| r.cold_start_ms,
        decimals: 0,
        better: Better::Lower,
    },
    Row {
        metric: "RSS after registering and joining the users (MiB)",
        value: |r| mib(r.load.server_rss_before_kib),
        decimals: 1,
        better: Better::Lower,
    },
    Row {
        metric: "RSS after the load (MiB)",
        value: |r| mib(r.load.server_rss_after_kib),
        decimals: 1,
        better: Better::Lower,
    },
    Row {
        metric: "server CPU during the load (% of one core)",
        value: |r| cpu_share(&r.load, r.load.server_cpu_seconds),
        decimals: 0,
        better: Better::Lower,
    },
    Row {
        metric: "loadgen CPU during the load (% of one core)",
        value: |r| cpu_share(&r.load, r.load.loadgen_cpu_seconds),
        decimals: 0,
        better: Better::Lower,
    },
];

/// The median of the values present (the mean of the middle two for an even count).
pub fn median(mut values: Vec<f64>) -> Option<f64> {
    values.sort_by(f64::total_cmp);
    let n = values.len();
    match n {
        0 => None,
        _ if n % 2 == 1 => Some(values[n / 2]),
        _ => Some((values[n / 2 - 1] + values[n / 2]) / 2.0),
    }
}

fn format_value(value: Option<f64>, decimals: usize) -> String {
    value.map_or_else(|| "–".to_owned(), |v| format!("{v:.decimals$}"))
}

/// Renders a ratio; below 0.1 with four decimals, so tiny latencies stay readable.
fn format_ratio(value: Option<f64>, better: &Better) -> String {
    let Some(value) = value else { return "–".to_owned() };
    let number = if value >= 100.0 {
        format!("{value:.0}")
    } else if value >= 0.1 {
        format!("{value:.2}")
    } else {
        format!("{value:.4}")
    };
    let reading = match better {
        Better::Higher if value >= 1.0 => format!(" ({value:.1}x better)"),
        Better::Lower if value > 0.0 && value <= 1.0 => format!(" (1/{:.1})", 1.0 / value),
        _ => String::new(),
    };
    format!("{number}{reading}")
}

fn delivery(runs: &[ServerResult]) -> String {
    let reports = runs.iter().flat_map(|r| &r.load.observer_reports);
    let (mut missing, mut duplicated, mut limited) = (0, 0, 0);
    for report in reports {
        missing += report.missing;
        duplicated += report.duplicated;
        limited += report.limited_syncs;
    }
    let all = runs.iter().all(|r| r.load.delivered_exactly_once);
    let verdict = if all { "yes" } else { "NO" };
    format!("{verdict} ({missing} missing, {duplicated} duplicated, {limited} limited syncs)")
}

fn failures(runs: &[ServerResult]) -> String {
    let mut kinds: std::collections::BTreeMap<&str, u64> = std::collections::BTreeMap::new();
    for run in runs {
        for (kind, n) in &run.load.failures {
            *kinds.entry(kind).or_insert(0) += n;
        }
    }
    if kinds.is_empty() {
        return "none".to_owned();
    }
    kinds.iter().map(|(kind, n)| format!("{n}× {kind}")).collect::<Vec<_>>().join(", ")
}

fn each_run(runs: &[ServerResult]) -> String {
    runs.iter().map(|r| format!("{:.0}", r.load.accepted_per_second)).collect::<Vec<_>>().join(", ")
}

/// The markdown table: both servers (the median over their runs), and Medrix / Synapse.
pub fn compare(medrix: &[ServerResult], synapse: &[ServerResult]) -> String {
    let name = |runs: &[ServerResult], fallback: &str| {
        runs.first().map_or_else(|| fallback.to_owned(), |r| r.server.clone())
    };
    let mut out = String::new();
    let _ = writeln!(
        out,
        "| metric (median of {} / {} runs) | {} | {} | Medrix / Synapse |",
        medrix.len(),
        synapse.len(),
        name(medrix, "Medrix"),
        name(synapse, "Synapse")
    );
    let _ = writeln!(out, "|---|---:|---:|---:|");
    for row in &ROWS {
        let m = median(medrix.iter().filter_map(row.value).collect());
        let s = median(synapse.iter().filter_map(row.value).collect());
        let _ = writeln!(
            out,
            "| {} | {} | {} | {} |",
            row.metric,
            format_value(m, row.decimals),
            format_value(s, row.decimals),
            format_ratio(ratio(m, s), &row.better),
        );
    }
    let total = |runs: &[ServerResult], f: fn(&LoadMeasurements) -> u64| {
        runs.iter().map(|r| f(&r.load)).sum::<u64>()
    };
    let _ = writeln!(
        out,
        "| accepted messages/s, each run | {} | {} | |",
        each_run(medrix),
        each_run(synapse)
    );
    let _ = writeln!(
        out,
        "| accepted / attempted, all runs | {}/{} | {}/{} | |",
        total(medrix, |l| l.accepted),
        total(medrix, |l| l.attempted),
        total(synapse, |l| l.accepted),
        total(synapse, |l| l.attempted)
    );
    let _ = writeln!(out, "| failed sends | {} | {} | |", failures(medrix), failures(synapse));
    let _ = writeln!(
        out,
        "| every observer saw every message exactly once | {} | {} | |",
        delivery(medrix),
        delivery(synapse)
    );
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ratios_say_which_way_is_better() {
        assert_eq!(format_ratio(Some(60.0), &Better::Higher), "60.00 (60.0x better)");
        assert_eq!(format_ratio(Some(0.05), &Better::Lower), "0.0500 (1/20.0)");
        assert_eq!(format_ratio(Some(2.0), &Better::Lower), "2.00");
        assert_eq!(format_ratio(None, &Better::Lower), "–");
    }

    #[test]
    fn the_median_takes_the_middle_or_the_mean_of_the_middle_two() {
        assert_eq!(median(vec![3.0, 1.0, 2.0]), Some(2.0));
        assert_eq!(median(vec![4.0, 1.0, 3.0, 2.0]), Some(2.5));
        assert_eq!(median(Vec::new()), None);
    }
}
