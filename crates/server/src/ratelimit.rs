//! Per-token rate limiting: a token bucket per presented token, keyed by
//! the token's SHA-256 (the secret itself is never kept).
//!
//! Only tokens the server knows get a bucket, so the table is bounded by
//! the number of tokens; buckets of revoked tokens are dropped when the
//! token cache is reloaded. Requests without a known token are answered
//! 401 by the handlers and cost no bucket.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// A token-bucket rate: `per_second` requests sustained, `burst` at once.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateLimit {
    /// Sustained requests per second per token.
    pub per_second: u32,
    /// Bucket size: requests a token may send at once after idling.
    pub burst: u32,
}

#[derive(Debug, Clone, Copy)]
struct Bucket {
    tokens: f64,
    last: Instant,
}

/// The buckets of every token that sent a request.
#[derive(Debug)]
pub struct Limiter {
    limit: RateLimit,
    /// A std `Mutex`: held for one arithmetic update, never across an await.
    buckets: Mutex<HashMap<String, Bucket>>,
}

impl Limiter {
    /// A limiter; a zero rate or burst is raised to 1 (use no limiter to
    /// disable limiting).
    pub fn new(limit: RateLimit) -> Limiter {
        Limiter {
            limit: RateLimit {
                per_second: limit.per_second.max(1),
                burst: limit.burst.max(1),
            },
            buckets: Mutex::new(HashMap::new()),
        }
    }

    /// Takes one request from `key`'s bucket at time `now`; `Err` holds
    /// how long until the next request would be allowed.
    pub fn check(&self, key: &str, now: Instant) -> Result<(), Duration> {
        let rate = f64::from(self.limit.per_second);
        let burst = f64::from(self.limit.burst);
        let mut buckets = self.buckets.lock().unwrap_or_else(|e| e.into_inner());
        let bucket = buckets.entry(key.to_owned()).or_insert(Bucket {
            tokens: burst,
            last: now,
        });
        let elapsed = now.saturating_duration_since(bucket.last).as_secs_f64();
        bucket.tokens = (bucket.tokens + elapsed * rate).min(burst);
        bucket.last = now;
        if bucket.tokens >= 1.0 {
            bucket.tokens -= 1.0;
            Ok(())
        } else {
            Err(Duration::from_secs_f64((1.0 - bucket.tokens) / rate))
        }
    }

    /// Keeps only the buckets whose key `keep` accepts (live tokens).
    pub fn retain(&self, keep: impl Fn(&str) -> bool) {
        self.buckets
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .retain(|k, _| keep(k));
    }

    /// Buckets held (for tests and metrics).
    pub fn len(&self) -> usize {
        self.buckets.lock().unwrap_or_else(|e| e.into_inner()).len()
    }

    /// Whether no bucket is held.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Whole seconds for `Retry-After`, rounded up, at least 1.
pub fn retry_after_secs(wait: Duration) -> u64 {
    (wait.as_secs_f64().ceil() as u64).max(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_token_gets_its_burst_then_is_refused_until_the_bucket_refills() {
        let l = Limiter::new(RateLimit {
            per_second: 10,
            burst: 3,
        });
        let t0 = Instant::now();
        for _ in 0..3 {
            assert!(l.check("a", t0).is_ok());
        }
        let wait = l.check("a", t0).unwrap_err();
        assert_eq!(wait, Duration::from_millis(100));
        assert!(l.check("a", t0 + Duration::from_millis(99)).is_err());
        assert!(l.check("a", t0 + Duration::from_millis(200)).is_ok());
    }

    #[test]
    fn tokens_have_separate_buckets() {
        let l = Limiter::new(RateLimit {
            per_second: 1,
            burst: 1,
        });
        let t0 = Instant::now();
        assert!(l.check("a", t0).is_ok());
        assert!(l.check("a", t0).is_err());
        assert!(l.check("b", t0).is_ok());
        l.retain(|k| k == "b");
        assert_eq!(l.len(), 1);
    }

    #[test]
    fn an_idle_token_never_banks_more_than_its_burst() {
        let l = Limiter::new(RateLimit {
            per_second: 100,
            burst: 2,
        });
        let t0 = Instant::now();
        assert!(l.check("a", t0).is_ok());
        let later = t0 + Duration::from_secs(3600);
        assert!(l.check("a", later).is_ok());
        assert!(l.check("a", later).is_ok());
        assert!(l.check("a", later).is_err());
    }

    #[test]
    fn retry_after_rounds_up_to_whole_seconds() {
        assert_eq!(retry_after_secs(Duration::from_millis(1)), 1);
        assert_eq!(retry_after_secs(Duration::ZERO), 1);
        assert_eq!(retry_after_secs(Duration::from_secs(2)), 2);
        assert_eq!(retry_after_secs(Duration::from_millis(2001)), 3);
    }
}
