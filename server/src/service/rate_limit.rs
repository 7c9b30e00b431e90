//! Per-client token buckets. Bounded: at most `MAX_CLIENTS` buckets are kept; when full, the
//! buckets that have refilled completely (idle clients) are dropped first.

use std::{collections::HashMap, sync::Mutex, time::Instant};

use crate::{config::RateLimits, locks::LockExt};

const MAX_CLIENTS: usize = 100_000;
/// Requests another server may make in a burst: a busy peer catching up sends transactions,
/// key queries and backfill in quick succession.
const FEDERATION_BURST: u32 = 1_000;
/// Requests per second another server may sustain.
const FEDERATION_PER_SECOND: u32 = 200;

pub struct RateLimiter {
    enabled: bool,
    burst: f64,
    per_second: f64,
    buckets: Mutex<HashMap<String, (f64, Instant)>>,
}

impl RateLimiter {
    pub fn new(config: &RateLimits) -> Self {
        Self {
            enabled: config.enabled,
            burst: f64::from(config.burst.max(1)),
            per_second: f64::from(config.per_second.max(1)),
            buckets: Mutex::new(HashMap::new()),
        }
    }

    /// The limits for other servers, keyed by server name; on and off with the clients' own.
    pub fn federation(config: &RateLimits) -> Self {
        Self::new(&RateLimits {
            enabled: config.enabled,
            burst: FEDERATION_BURST,
            per_second: FEDERATION_PER_SECOND,
        })
    }

    /// Always-on buckets of `burst` that regain one token every `every`: for costly actions
    /// a stranger can cause (fetching a named server's keys), whatever the client limits.
    pub fn per_interval(burst: u32, every: std::time::Duration) -> Self {
        Self {
            enabled: true,
            burst: f64::from(burst.max(1)),
            per_second: 1.0 / every.as_secs_f64().max(0.001),
            buckets: Mutex::new(HashMap::new()),
        }
    }

    /// Takes one request from `client`'s bucket: `Ok` if allowed, else how many milliseconds
    /// until one request will be.
    pub fn check(&self, client: &str) -> Result<(), u64> {
        if !self.enabled {
            return Ok(());
        }
        let now = Instant::now();
        let mut buckets = self.buckets.locked();
        if buckets.len() >= MAX_CLIENTS && !buckets.contains_key(client) {
            let (burst, rate) = (self.burst, self.per_second);
            buckets.retain(|_, (tokens, at)| {
                *tokens + now.duration_since(*at).as_secs_f64() * rate < burst
            });
            if buckets.len() >= MAX_CLIENTS {
                return Err(1_000);
            }
        }
        let (tokens, at) = buckets.entry(client.to_owned()).or_insert((self.burst, now));
        *tokens =
            (*tokens + now.duration_since(*at).as_secs_f64() * self.per_second).min(self.burst);
        *at = now;
        if *tokens >= 1.0 {
            *tokens -= 1.0;
            Ok(())
        } else {
            Err(((1.0 - *tokens) / self.per_second * 1000.0).ceil() as u64)
        }
    }
}
