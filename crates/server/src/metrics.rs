//! Prometheus metrics, rendered by hand in the text exposition format.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::Mutex;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;

use crate::live::{Live, REASON_NAMES};

/// Latency histogram bounds, seconds.
const BUCKETS: [f64; 10] = [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.5, 2.5];

#[derive(Default)]
struct Series {
    count: u64,
    sum: f64,
    buckets: [u64; BUCKETS.len()],
}

/// One route's series: method → status → series.
type ByMethod = BTreeMap<String, BTreeMap<u16, Series>>;

/// Request and stream metrics. Evaluation counts live in [`Live`].
#[derive(Default)]
pub struct Metrics {
    /// route → method → status → series, nested so that a request looks
    /// its series up with borrowed strings and allocates only the first
    /// time a combination is seen. A std `Mutex`: held for a few
    /// additions, never across an await.
    requests: Mutex<BTreeMap<String, ByMethod>>,
    /// Connected SDK stream clients.
    pub sdk_streams: AtomicI64,
    /// Connected OFREP event-stream clients.
    pub ofrep_streams: AtomicI64,
    /// Requests refused with 429.
    pub overloaded: AtomicI64,
    /// Requests refused with 429 by a token's rate limit.
    pub rate_limited: AtomicI64,
}

/// Decrements a gauge when a stream ends.
pub struct GaugeGuard<'a>(&'a AtomicI64);

impl<'a> GaugeGuard<'a> {
    /// Increments `gauge` until dropped.
    pub fn new(gauge: &'a AtomicI64) -> Self {
        gauge.fetch_add(1, Ordering::Relaxed);
        GaugeGuard(gauge)
    }
}

impl Drop for GaugeGuard<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

impl Metrics {
    /// Records one finished request.
    pub fn observe(&self, route: &str, method: &str, status: u16, elapsed: Duration) {
        let secs = elapsed.as_secs_f64();
        let mut map = self.requests.lock().unwrap_or_else(|e| e.into_inner());
        let by_method = match map.get_mut(route) {
            Some(m) => m,
            None => map.entry(route.to_owned()).or_default(),
        };
        let by_status = match by_method.get_mut(method) {
            Some(m) => m,
            None => by_method.entry(method.to_owned()).or_default(),
        };
        let s = by_status.entry(status).or_default();
        s.count += 1;
        s.sum += secs;
        for (i, bound) in BUCKETS.iter().enumerate() {
            if secs <= *bound {
                s.buckets[i] += 1;
            }
        }
    }

    /// The whole exposition.
    pub fn render(&self, live: &Live) -> String {
        let mut out = String::new();
        out.push_str("# HELP sextant_http_requests_total HTTP requests by route, method and status.\n");
        out.push_str("# TYPE sextant_http_requests_total counter\n");
        let requests = self.requests.lock().unwrap_or_else(|e| e.into_inner());
        let series = || {
            requests.iter().flat_map(|(route, by_method)| {
                by_method.iter().flat_map(move |(method, by_status)| {
                    by_status.iter().map(move |(status, s)| (route, method, status, s))
                })
            })
        };
        for (route, method, status, s) in series() {
            let _ = writeln!(
                out,
                "sextant_http_requests_total{{route=\"{}\",method=\"{method}\",status=\"{status}\"}} {}",
                escape(route),
                s.count
            );
        }
        out.push_str("# HELP sextant_http_request_duration_seconds HTTP request latency by route.\n");
        out.push_str("# TYPE sextant_http_request_duration_seconds histogram\n");
        let mut by_route: BTreeMap<(&str, &str), Series> = BTreeMap::new();
        for (route, method, _, s) in series() {
            let agg = by_route.entry((route, method)).or_default();
            agg.count += s.count;
            agg.sum += s.sum;
            for (a, b) in agg.buckets.iter_mut().zip(s.buckets) {
                *a += b;
            }
        }
        for ((route, method), s) in &by_route {
            let labels = format!("route=\"{}\",method=\"{method}\"", escape(route));
            for (bound, n) in BUCKETS.iter().zip(s.buckets) {
                let _ = writeln!(
                    out,
                    "sextant_http_request_duration_seconds_bucket{{{labels},le=\"{bound}\"}} {n}"
                );
            }
            let _ = writeln!(
                out,
                "sextant_http_request_duration_seconds_bucket{{{labels},le=\"+Inf\"}} {}",
                s.count
            );
            let _ = writeln!(out, "sextant_http_request_duration_seconds_sum{{{labels}}} {}", s.sum);
            let _ = writeln!(
                out,
                "sextant_http_request_duration_seconds_count{{{labels}}} {}",
                s.count
            );
        }
        out.push_str("# HELP sextant_sse_clients Connected server-sent-event clients by stream.\n");
        out.push_str("# TYPE sextant_sse_clients gauge\n");
        let _ = writeln!(
            out,
            "sextant_sse_clients{{stream=\"sdk\"}} {}",
            self.sdk_streams.load(Ordering::Relaxed)
        );
        let _ = writeln!(
            out,
            "sextant_sse_clients{{stream=\"ofrep\"}} {}",
            self.ofrep_streams.load(Ordering::Relaxed)
        );
        out.push_str("# HELP sextant_overloaded_total Evaluation requests refused with 429.\n");
        out.push_str("# TYPE sextant_overloaded_total counter\n");
        let _ = writeln!(
            out,
            "sextant_overloaded_total {}",
            self.overloaded.load(Ordering::Relaxed)
        );
        out.push_str("# HELP sextant_rate_limited_total Requests refused with 429 by their token's rate limit.\n");
        out.push_str("# TYPE sextant_rate_limited_total counter\n");
        let _ = writeln!(
            out,
            "sextant_rate_limited_total {}",
            self.rate_limited.load(Ordering::Relaxed)
        );
        out.push_str("# HELP sextant_snapshot_version Published snapshot version by environment.\n");
        out.push_str("# TYPE sextant_snapshot_version gauge\n");
        let mut slots: Vec<_> = live.all().into_iter().map(|s| s.load()).collect();
        slots.sort_by(|a, b| (&a.workspace, &a.environment).cmp(&(&b.workspace, &b.environment)));
        for p in &slots {
            let _ = writeln!(
                out,
                "sextant_snapshot_version{{workspace=\"{}\",environment=\"{}\"}} {}",
                escape(&p.workspace),
                escape(&p.environment),
                p.version()
            );
        }
        out.push_str("# HELP sextant_evaluations_total Flag evaluations by flag and reason.\n");
        out.push_str("# TYPE sextant_evaluations_total counter\n");
        let mut counters = live.counters();
        counters.sort_by(|a, b| (&a.0, &a.1, &a.2).cmp(&(&b.0, &b.1, &b.2)));
        for (ws, env, flag, c) in counters {
            for (reason, n) in REASON_NAMES.iter().zip(c.iter()) {
                let n = n.load(Ordering::Relaxed);
                if n > 0 {
                    let _ = writeln!(
                        out,
                        "sextant_evaluations_total{{workspace=\"{}\",environment=\"{}\",flag=\"{}\",reason=\"{reason}\"}} {n}",
                        escape(&ws),
                        escape(&env),
                        escape(&flag)
                    );
                }
            }
        }
        out
    }
}

fn escape(s: &str) -> String {
    s.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n")
}
