//! The federation table: Medrix's ingest beside Synapse's and beside raw ed25519
//! verification on one core, medians over the runs.

use std::fmt::Write as _;

use super::FederationResult;
use crate::{report::median, stats::ratio};

/// The goals: ingest at least half the raw verify rate, and more than 20× Synapse.
const GOAL_OF_RAW: f64 = 0.5;
const GOAL_OVER_SYNAPSE: f64 = 20.0;

fn med(runs: &[FederationResult], value: impl Fn(&FederationResult) -> Option<f64>) -> Option<f64> {
    median(runs.iter().filter_map(value).collect())
}

fn cell(value: Option<f64>, decimals: usize) -> String {
    value.map_or_else(|| "–".to_owned(), |v| format!("{v:.decimals$}"))
}

fn cpu_percent(r: &FederationResult) -> Option<f64> {
    r.server_cpu_seconds.filter(|_| r.load_seconds > 0.0).map(|c| 100.0 * c / r.load_seconds)
}

fn stored_share(r: &FederationResult) -> Option<f64> {
    r.stored_messages.filter(|_| r.pdus_accepted > 0).map(|n| n as f64 / r.pdus_accepted as f64)
}

type Value = fn(&FederationResult) -> Option<f64>;

/// The markdown report: the table, then the ratios against the goals.
pub fn compare(medrix: &[FederationResult], synapse: &[FederationResult]) -> String {
    let rows: [(&str, Value, usize, bool); 12] = [
        ("accepted PDUs/s", |r| Some(r.accepted_per_second), 1, true),
        ("PDUs sent (per run)", |r| Some(r.pdus_sent as f64), 0, false),
        ("accepted / sent", |r| Some(r.pdus_accepted as f64 / r.pdus_sent.max(1) as f64), 3, false),
        ("stored (`/messages` count) / accepted", stored_share, 3, false),
        (
            "transaction round-trip p50 (ms)",
            |r| r.transaction_round_trip.map(|s| s.p50_ms),
            1,
            true,
        ),
        (
            "transaction round-trip p95 (ms)",
            |r| r.transaction_round_trip.map(|s| s.p95_ms),
            1,
            true,
        ),
        (
            "transaction sent → last PDU stored p50 (ms)",
            |r| r.transaction_to_stored.map(|s| s.p50_ms),
            1,
            true,
        ),
        (
            "transaction sent → last PDU stored p95 (ms)",
            |r| r.transaction_to_stored.map(|s| s.p95_ms),
            1,
            true,
        ),
        ("server CPU (% of one core)", cpu_percent, 0, false),
        (
            "accepted PDUs per server CPU-second",
            FederationResult::accepted_per_server_cpu_second,
            1,
            true,
        ),
        (
            "loadgen CPU (% of one core)",
            |r| {
                r.loadgen_cpu_seconds
                    .filter(|_| r.load_seconds > 0.0)
                    .map(|c| 100.0 * c / r.load_seconds)
            },
            0,
            false,
        ),
        (
            "raw ed25519 verify/s, one core (loadgen, before the load)",
            |r| Some(r.rates.verify_per_second),
            0,
            false,
        ),
    ];
    let mut out = String::new();
    let _ = writeln!(out, "| | Medrix | Synapse | Medrix / Synapse |");
    let _ = writeln!(out, "|---|---:|---:|---:|");
    for (name, value, decimals, with_ratio) in rows {
        let (m, s) = (med(medrix, value), med(synapse, value));
        let r = if with_ratio { cell(ratio(m, s), 2) } else { String::new() };
        let _ = writeln!(out, "| {name} | {} | {} | {r} |", cell(m, decimals), cell(s, decimals));
    }

    let all: Vec<FederationResult> = medrix.iter().chain(synapse).cloned().collect();
    let verify = med(&all, |r| Some(r.rates.verify_per_second));
    let strict = med(&all, |r| Some(r.rates.verify_strict_per_second));
    let check = med(&all, |r| Some(r.rates.protocol_check_per_second));
    let ingest = med(medrix, |r| Some(r.accepted_per_second));
    let per_cpu = med(medrix, FederationResult::accepted_per_server_cpu_second);
    let synapse_rate = med(synapse, |r| Some(r.accepted_per_second));
    let verdict = |value: Option<f64>, goal: f64, above: bool| match value {
        Some(v) if (above && v > goal) || (!above && v >= goal) => "met",
        Some(_) => "**not met**",
        None => "–",
    };
    let of_raw = ratio(ingest, verify);
    let over_synapse = ratio(ingest, synapse_rate);
    let _ = writeln!(out);
    let _ = writeln!(
        out,
        "One core of this machine, in loadgen, over the run's own PDUs (median of all runs):"
    );
    let _ = writeln!(
        out,
        "ed25519-dalek `verify` {} /s (what Medrix calls), `verify_strict` {} /s;",
        cell(verify, 0),
        cell(strict, 0)
    );
    let _ = writeln!(
        out,
        "Medrix's whole per-PDU check (`incoming::check_incoming_object`, no storage) {} /s.",
        cell(check, 0)
    );
    let _ = writeln!(out);
    let _ = writeln!(out, "| ratio | value | goal | |");
    let _ = writeln!(out, "|---|---:|---:|---|");
    let _ = writeln!(
        out,
        "| Medrix ingest / raw verify (absolute: server on up to 2 cores, verify on 1) | {} | ≥ {GOAL_OF_RAW} | {} |",
        cell(of_raw, 3),
        verdict(of_raw, GOAL_OF_RAW, false)
    );
    let _ = writeln!(
        out,
        "| Medrix ingest per server CPU-second / raw verify per core-second | {} | | |",
        cell(ratio(per_cpu, verify), 3)
    );
    let _ = writeln!(
        out,
        "| Medrix ingest / Medrix's own PDU check, one core | {} | | |",
        cell(ratio(ingest, check), 3)
    );
    let _ = writeln!(
        out,
        "| Medrix / Synapse ingest | {} | > {GOAL_OVER_SYNAPSE} | {} |",
        cell(over_synapse, 1),
        verdict(over_synapse, GOAL_OVER_SYNAPSE, true)
    );

    let mut failures = String::new();
    for r in &all {
        for why in &r.errors {
            let _ = writeln!(failures, "- {}: {why}", r.server);
        }
    }
    if !failures.is_empty() {
        let _ = writeln!(out);
        let _ = writeln!(out, "PDUs not accepted (first reasons per run):");
        let _ = writeln!(out);
        out.push_str(&failures);
    }
    out
}
