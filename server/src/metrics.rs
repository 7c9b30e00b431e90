//! Prometheus metrics, served in the text exposition format on a separate loopback listener.

use std::sync::atomic::{AtomicU64, Ordering};

/// Counters the server keeps. Label-free on purpose: nothing user-identifying is exported.
#[derive(Default)]
pub struct Metrics {
    pub requests: AtomicU64,
    pub errors_4xx: AtomicU64,
    pub errors_5xx: AtomicU64,
    pub rate_limited: AtomicU64,
    /// Federation requests whose X-Matrix signature did not verify.
    pub bad_federation_signatures: AtomicU64,
}

impl Metrics {
    pub fn render(&self) -> String {
        let counter = |name: &str, help: &str, value: &AtomicU64| {
            format!(
                "# HELP {name} {help}\n# TYPE {name} counter\n{name} {}\n",
                value.load(Ordering::Relaxed)
            )
        };
        [
            counter("medrix_http_requests_total", "Client API requests answered.", &self.requests),
            counter(
                "medrix_http_client_errors_total",
                "Requests answered with a 4xx status.",
                &self.errors_4xx,
            ),
            counter(
                "medrix_http_server_errors_total",
                "Requests answered with a 5xx status.",
                &self.errors_5xx,
            ),
            counter(
                "medrix_rate_limited_total",
                "Requests refused by rate limits.",
                &self.rate_limited,
            ),
            counter(
                "medrix_federation_bad_signatures_total",
                "Federation requests refused because their X-Matrix signature did not verify.",
                &self.bad_federation_signatures,
            ),
        ]
        .concat()
    }
}
