//! Bounds on cloud calls, so that one tenant's endpoint cannot starve the others: a global limit on
//! calls in flight, a smaller one per endpoint host, and a circuit breaker per host that stops
//! calling an endpoint that keeps timing out or refusing connections.
//!
//! A host waits its turn on its own semaphore before it takes a global slot, so a tarpit (a host
//! that accepts connections and never answers) holds at most `per_host` of the global slots, and
//! once its breaker opens its calls fail at once instead of waiting out one timeout after another.

use std::num::NonZeroUsize;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use lru::LruCache;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// How cloud calls are bounded.
#[derive(Debug, Clone, PartialEq)]
pub struct CallLimits {
    /// Calls in flight at once across all hosts.
    pub global: usize,
    /// Calls in flight at once to one endpoint host (scheme, host and port).
    pub per_host: usize,
    /// Failures (timeouts, connection errors) in a row that open a host's breaker.
    pub breaker_threshold: u32,
    /// How long an open breaker first stays open; doubles each time it opens again, up to
    /// `breaker_max_open`.
    pub breaker_open: Duration,
    pub breaker_max_open: Duration,
    /// Calls per second to one endpoint host, on average (a token bucket)...
    pub qps: f64,
    /// ...and in a burst.
    pub burst: u32,
}

impl Default for CallLimits {
    fn default() -> Self {
        CallLimits {
            global: 16,
            per_host: 4,
            breaker_threshold: 3,
            breaker_open: Duration::from_secs(30),
            breaker_max_open: Duration::from_secs(300),
            qps: 20.0,
            burst: 40,
        }
    }
}

/// Hosts whose state is kept; the least recently used beyond this are forgotten.
const MAX_HOSTS: usize = 1024;

/// The limits in force, shared by every call.
pub struct Limiter {
    limits: CallLimits,
    global: Arc<Semaphore>,
    hosts: Mutex<LruCache<String, Arc<HostState>>>,
}

struct HostState {
    slots: Arc<Semaphore>,
    breaker: Mutex<Breaker>,
    bucket: Mutex<Bucket>,
}

/// A token bucket: `qps` tokens a second up to `burst`. After a 429 the host's rate is halved for
/// the `Retry-After` (or 10 s): a throttling cloud gets fewer calls from every tenant, while the
/// throttled VbsBackup itself waits its full `Retry-After`.
#[derive(Debug)]
struct Bucket {
    tokens: f64,
    updated: Instant,
    slow_until: Option<Instant>,
}

impl Bucket {
    fn new(burst: u32, now: Instant) -> Self {
        Bucket {
            tokens: f64::from(burst.max(1)),
            updated: now,
            slow_until: None,
        }
    }

    /// Takes a token, or says how long to wait for one.
    fn take(&mut self, limits: &CallLimits, now: Instant) -> Option<Duration> {
        let slow = self.slow_until.is_some_and(|u| now < u);
        let rate = if slow { limits.qps / 2.0 } else { limits.qps }.max(0.001);
        let elapsed = now.saturating_duration_since(self.updated).as_secs_f64();
        self.tokens = (self.tokens + elapsed * rate).min(f64::from(limits.burst.max(1)));
        self.updated = now;
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            return None;
        }
        Some(Duration::from_secs_f64(((1.0 - self.tokens) / rate).min(60.0)))
    }

    fn throttled(&mut self, retry_after: Option<Duration>, now: Instant) {
        self.tokens = self.tokens.min(0.0);
        let slow_for = retry_after
            .unwrap_or(Duration::from_secs(10))
            .min(Duration::from_secs(3600));
        self.slow_until = Some(now + slow_for);
    }
}

#[derive(Debug, Default)]
struct Breaker {
    failures_in_a_row: u32,
    times_opened: u32,
    open_until: Option<Instant>,
}

/// Why a call may not go out now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BreakerOpen {
    pub failures: u32,
}

/// Permission to make one call; report how it went with [`CallPermit::finish`].
pub struct CallPermit {
    host: Arc<HostState>,
    limits: CallLimits,
    _host_slot: OwnedSemaphorePermit,
    _global_slot: OwnedSemaphorePermit,
}

impl Limiter {
    pub fn new(limits: CallLimits) -> Self {
        Limiter {
            global: Arc::new(Semaphore::new(limits.global.max(1))),
            hosts: Mutex::new(LruCache::new(
                NonZeroUsize::new(MAX_HOSTS).unwrap_or(NonZeroUsize::MIN),
            )),
            limits,
        }
    }

    fn host(&self, key: &str) -> Arc<HostState> {
        let mut hosts = self.hosts.lock().unwrap_or_else(PoisonError::into_inner);
        hosts
            .get_or_insert(key.to_string(), || {
                Arc::new(HostState {
                    slots: Arc::new(Semaphore::new(self.limits.per_host.max(1))),
                    breaker: Mutex::default(),
                    bucket: Mutex::new(Bucket::new(self.limits.burst, Instant::now())),
                })
            })
            .clone()
    }

    /// Waits for a slot on `host` and then a global one; fails at once while the host's breaker
    /// is open (checked again after the wait, since the breaker may have opened meanwhile).
    pub async fn acquire(&self, host: &str) -> Result<CallPermit, BreakerOpen> {
        let state = self.host(host);
        state.check(Instant::now())?;
        // The semaphores are never closed, so acquiring only waits.
        let host_slot = state
            .slots
            .clone()
            .acquire_owned()
            .await
            .map_err(|_| BreakerOpen { failures: 0 })?;
        state.check(Instant::now())?;
        // The host's rate: wait for a token while holding only this host's slot.
        loop {
            let wait = state
                .bucket
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .take(&self.limits, Instant::now());
            match wait {
                None => break,
                Some(wait) => tokio::time::sleep(wait).await,
            }
        }
        let global_slot = self
            .global
            .clone()
            .acquire_owned()
            .await
            .map_err(|_| BreakerOpen { failures: 0 })?;
        Ok(CallPermit {
            host: state,
            limits: self.limits.clone(),
            _host_slot: host_slot,
            _global_slot: global_slot,
        })
    }

    /// Hosts currently tracked (for tests of the bound).
    pub fn tracked_hosts(&self) -> usize {
        self.hosts.lock().unwrap_or_else(PoisonError::into_inner).len()
    }
}

impl HostState {
    fn check(&self, now: Instant) -> Result<(), BreakerOpen> {
        let breaker = self.breaker.lock().unwrap_or_else(PoisonError::into_inner);
        match breaker.open_until {
            Some(until) if now < until => Err(BreakerOpen {
                failures: breaker.failures_in_a_row,
            }),
            _ => Ok(()),
        }
    }
}

impl CallPermit {
    /// Records whether the call found the host unwell (no answer) and releases the slots.
    pub fn finish(self, outage: bool) {
        let mut b = self.host.breaker.lock().unwrap_or_else(PoisonError::into_inner);
        b.record(outage, &self.limits, Instant::now());
    }

    /// Records a 429 answer (with its `Retry-After`, if any) and releases the slots.
    pub fn throttled(self, retry_after: Option<Duration>) {
        let mut bucket = self.host.bucket.lock().unwrap_or_else(PoisonError::into_inner);
        bucket.throttled(retry_after, Instant::now());
        drop(bucket);
        self.finish(false);
    }
}

impl Breaker {
    fn record(&mut self, outage: bool, limits: &CallLimits, now: Instant) {
        if !outage {
            *self = Breaker::default();
            return;
        }
        self.failures_in_a_row = self.failures_in_a_row.saturating_add(1);
        // After the open period a call may probe again; one more failure re-opens the breaker.
        if self.failures_in_a_row >= limits.breaker_threshold.max(1)
            && self.open_until.is_none_or(|u| now >= u)
        {
            let open_for = limits
                .breaker_open
                .saturating_mul(1u32 << self.times_opened.min(16))
                .min(limits.breaker_max_open);
            self.open_until = Some(now + open_for);
            self.times_opened = self.times_opened.saturating_add(1);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits() -> CallLimits {
        CallLimits {
            global: 3,
            per_host: 2,
            breaker_threshold: 2,
            breaker_open: Duration::from_secs(10),
            breaker_max_open: Duration::from_secs(25),
            ..CallLimits::default()
        }
    }

    #[test]
    fn breaker_opens_after_failures_in_a_row_and_backs_off() {
        let l = limits();
        let t0 = Instant::now();
        let mut b = Breaker::default();
        b.record(true, &l, t0);
        assert_eq!(b.open_until, None, "one failure is not an outage");
        b.record(false, &l, t0);
        b.record(true, &l, t0);
        assert_eq!(b.open_until, None, "a success resets the count");
        b.record(true, &l, t0);
        assert_eq!(b.open_until, Some(t0 + Duration::from_secs(10)));
        let t1 = t0 + Duration::from_secs(10);
        b.record(true, &l, t1);
        assert_eq!(b.open_until, Some(t1 + Duration::from_secs(20)), "doubles");
        let t2 = t1 + Duration::from_secs(20);
        b.record(true, &l, t2);
        assert_eq!(b.open_until, Some(t2 + Duration::from_secs(25)), "capped");
        b.record(false, &l, t2);
        assert_eq!(b.open_until, None);
    }

    #[test]
    fn the_bucket_allows_a_burst_then_the_rate_and_slows_down_after_a_429() {
        let l = CallLimits {
            qps: 10.0,
            burst: 3,
            ..limits()
        };
        let t0 = Instant::now();
        let mut b = Bucket::new(l.burst, t0);
        assert_eq!(
            (b.take(&l, t0), b.take(&l, t0), b.take(&l, t0)),
            (None, None, None)
        );
        let wait = b.take(&l, t0).expect("empty");
        assert!((wait.as_secs_f64() - 0.1).abs() < 1e-6, "{wait:?}");
        let t1 = t0 + Duration::from_millis(100);
        assert_eq!(b.take(&l, t1), None, "one token a tenth of a second");
        b.throttled(Some(Duration::from_secs(5)), t1);
        let wait = b.take(&l, t1).expect("drained");
        assert!((wait.as_secs_f64() - 0.2).abs() < 1e-6, "half the rate: {wait:?}");
        let t2 = t1 + Duration::from_secs(6);
        assert_eq!(b.take(&l, t2), None);
        let _ = b.take(&l, t2);
        let _ = b.take(&l, t2);
        let wait = b.take(&l, t2).expect("empty again");
        assert!(
            (wait.as_secs_f64() - 0.1).abs() < 1e-6,
            "the full rate is back: {wait:?}"
        );
    }

    #[tokio::test]
    async fn a_busy_host_does_not_take_every_global_slot() {
        let limiter = Limiter::new(limits());
        let a1 = limiter.acquire("https://tarpit").await.expect("slot");
        let a2 = limiter.acquire("https://tarpit").await.expect("slot");
        // The tarpit's third call waits for its own host's slot, not a global one...
        let third = tokio::time::timeout(Duration::from_millis(50), limiter.acquire("https://tarpit")).await;
        assert!(third.is_err(), "a third call to one host must wait");
        // ...so another host still gets through.
        let b = tokio::time::timeout(Duration::from_millis(50), limiter.acquire("https://healthy")).await;
        assert!(b.is_ok_and(|p| p.is_ok()));
        a1.finish(true);
        a2.finish(true);
        let err = limiter.acquire("https://tarpit").await.err();
        assert_eq!(err, Some(BreakerOpen { failures: 2 }), "open after two timeouts");
    }

    #[tokio::test]
    async fn host_state_is_bounded() {
        let limiter = Limiter::new(limits());
        for i in 0..(MAX_HOSTS + 50) {
            limiter
                .acquire(&format!("https://h{i}"))
                .await
                .expect("slot")
                .finish(false);
        }
        assert_eq!(limiter.tracked_hosts(), MAX_HOSTS);
    }
}
