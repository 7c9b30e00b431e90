//! One server's result as a JSON file, and the side-by-side table of two of them.

use std::fmt::Write as _;

use serde::{Deserialize, Serialize};

use crate::{
    load::LoadMeasurements,
    stats::{Summary, ratio},
};

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
    medrix: Option<f64>,
    synapse: Option<f64>,
    decimals: usize,
    better: Better,
}

fn quantile(summary: Option<Summary>, pick: fn(&Summary) -> f64) -> Option<f64> {
    summary.as_ref().map(pick)
}

fn mib(kib: Option<u64>) -> Option<f64> {
    kib.map(|k| k as f64 / 1024.0)
}

fn format_value(value: Option<f64>, decimals: usize) -> String {
    value.map_or_else(|| "–".to_owned(), |v| format!("{v:.decimals$}"))
}

/// Renders a ratio; below 0.01 or above 100 with no decimals, so tiny latencies stay readable.
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

fn delivery(load: &LoadMeasurements) -> String {
    let missing: u64 = load.observer_reports.iter().map(|r| r.missing).sum();
    let duplicated: u64 = load.observer_reports.iter().map(|r| r.duplicated).sum();
    let limited: u64 = load.observer_reports.iter().map(|r| r.limited_syncs).sum();
    let verdict = if load.delivered_exactly_once { "yes" } else { "NO" };
    format!("{verdict} ({missing} missing, {duplicated} duplicated, {limited} limited syncs)")
}

fn failures(load: &LoadMeasurements) -> String {
    if load.failures.is_empty() {
        return "none".to_owned();
    }
    load.failures.iter().map(|(kind, n)| format!("{n}× {kind}")).collect::<Vec<_>>().join(", ")
}

/// The markdown table: both servers, and Medrix / Synapse for each number.
pub fn compare(medrix: &ServerResult, synapse: &ServerResult) -> String {
    let (m, s) = (&medrix.load, &synapse.load);
    let cpu_share =
        |r: &LoadMeasurements, cpu: Option<f64>| cpu.map(|c| 100.0 * c / r.load_seconds);
    let rows = [
        Row {
            metric: "accepted messages/s",
            medrix: Some(m.accepted_per_second),
            synapse: Some(s.accepted_per_second),
            decimals: 1,
            better: Better::Higher,
        },
        Row {
            metric: "send round-trip p50 (ms)",
            medrix: quantile(m.send_round_trip, |q| q.p50_ms),
            synapse: quantile(s.send_round_trip, |q| q.p50_ms),
            decimals: 2,
            better: Better::Lower,
        },
        Row {
            metric: "send round-trip p95 (ms)",
            medrix: quantile(m.send_round_trip, |q| q.p95_ms),
            synapse: quantile(s.send_round_trip, |q| q.p95_ms),
            decimals: 2,
            better: Better::Lower,
        },
        Row {
            metric: "send → observer /sync p50 (ms)",
            medrix: quantile(m.send_to_sync, |q| q.p50_ms),
            synapse: quantile(s.send_to_sync, |q| q.p50_ms),
            decimals: 2,
            better: Better::Lower,
        },
        Row {
            metric: "send → observer /sync p95 (ms)",
            medrix: quantile(m.send_to_sync, |q| q.p95_ms),
            synapse: quantile(s.send_to_sync, |q| q.p95_ms),
            decimals: 2,
            better: Better::Lower,
        },
        Row {
            metric: "idle RSS (MiB)",
            medrix: mib(medrix.idle_rss_kib),
            synapse: mib(synapse.idle_rss_kib),
            decimals: 1,
            better: Better::Lower,
        },
        Row {
            metric: "cold start (ms)",
            medrix: medrix.cold_start_ms,
            synapse: synapse.cold_start_ms,
            decimals: 0,
            better: Better::Lower,
        },
        Row {
            metric: "RSS after registering and joining the users (MiB)",
            medrix: mib(m.server_rss_before_kib),
            synapse: mib(s.server_rss_before_kib),
            decimals: 1,
            better: Better::Lower,
        },
        Row {
            metric: "RSS after the load (MiB)",
            medrix: mib(m.server_rss_after_kib),
            synapse: mib(s.server_rss_after_kib),
            decimals: 1,
            better: Better::Lower,
        },
        Row {
            metric: "server CPU during the load (% of one core)",
            medrix: cpu_share(m, m.server_cpu_seconds),
            synapse: cpu_share(s, s.server_cpu_seconds),
            decimals: 0,
            better: Better::Lower,
        },
        Row {
            metric: "loadgen CPU during the load (% of one core)",
            medrix: cpu_share(m, m.loadgen_cpu_seconds),
            synapse: cpu_share(s, s.loadgen_cpu_seconds),
            decimals: 0,
            better: Better::Lower,
        },
    ];

    let mut out = String::new();
    let _ = writeln!(out, "| metric | {} | {} | Medrix / Synapse |", medrix.server, synapse.server);
    let _ = writeln!(out, "|---|---:|---:|---:|");
    for row in &rows {
        let _ = writeln!(
            out,
            "| {} | {} | {} | {} |",
            row.metric,
            format_value(row.medrix, row.decimals),
            format_value(row.synapse, row.decimals),
            format_ratio(ratio(row.medrix, row.synapse), &row.better),
        );
    }
    let _ = writeln!(
        out,
        "| accepted / attempted | {}/{} | {}/{} | |",
        m.accepted, m.attempted, s.accepted, s.attempted
    );
    let _ = writeln!(out, "| failed sends | {} | {} | |", failures(m), failures(s));
    let _ = writeln!(
        out,
        "| every observer saw every message exactly once | {} | {} | |",
        delivery(m),
        delivery(s)
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
}
