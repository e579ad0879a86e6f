//! When to look at a VbsBackup again: fast while the backup is changing, slowly once it settled,
//! with capped exponential backoff (and the server's `Retry-After`) while the API fails.

use std::time::Duration;

use crate::status::{FailureReason, SyncOutcome, is_transitional};

/// Settled intervals below this are raised to it.
pub const MIN_POLL_INTERVAL: Duration = Duration::from_secs(10);

#[derive(Debug, Clone, PartialEq)]
pub struct PollPolicy {
    /// Interval for transitional backups (creating, restoring, deleting).
    pub fast: Duration,
    /// Interval for settled backups, unless `spec.pollInterval` says otherwise.
    pub settled: Duration,
    /// First retry after a failed query; doubles per consecutive failure.
    pub initial_backoff: Duration,
    pub max_backoff: Duration,
    /// Each delay is spread by ±this fraction so that resources created together drift apart.
    pub jitter: f64,
    /// Lower bound for `spec.pollInterval`.
    pub min_settled: Duration,
}

impl Default for PollPolicy {
    fn default() -> Self {
        PollPolicy {
            fast: Duration::from_secs(15),
            settled: Duration::from_secs(600),
            initial_backoff: Duration::from_secs(5),
            max_backoff: Duration::from_secs(300),
            jitter: 0.1,
            min_settled: MIN_POLL_INTERVAL,
        }
    }
}

/// What the policy needs to know about one reconcile.
#[derive(Debug, Clone, Copy)]
pub struct Observation<'a> {
    pub outcome: &'a SyncOutcome,
    /// `spec.pollInterval`, parsed.
    pub spec_interval: Option<Duration>,
    /// Failed queries in a row, this one included (0 after a success).
    pub consecutive_failures: u32,
    pub retry_after: Option<Duration>,
}

/// Whether an outcome counts as a failure to back off from. Missing Secrets, broken clouds.yaml
/// and vanished backups are states to report, not errors to hammer the API about: they are polled
/// at the settled interval, and a change to the Secret re-triggers at once.
pub fn is_retryable_failure(outcome: &SyncOutcome) -> bool {
    matches!(
        outcome,
        SyncOutcome::Failed(f) if matches!(f.reason, FailureReason::ApiError | FailureReason::AuthenticationFailed)
    )
}

impl PollPolicy {
    /// `initial_backoff` doubled per failure in a row after the first, capped at `max_backoff`.
    pub fn backoff(&self, consecutive_failures: u32) -> Duration {
        let exp = consecutive_failures.saturating_sub(1).min(30);
        self.initial_backoff
            .saturating_mul(1u32 << exp)
            .min(self.max_backoff)
    }

    /// The delay before the next reconcile, before jitter.
    pub fn base_delay(&self, o: &Observation<'_>) -> Duration {
        if is_retryable_failure(o.outcome) {
            let backoff = self.backoff(o.consecutive_failures);
            return o.retry_after.map_or(backoff, |ra| backoff.max(ra));
        }
        match o.outcome {
            SyncOutcome::Observed(b) if b.status.as_deref().is_some_and(is_transitional) => self.fast,
            _ => o.spec_interval.map_or(self.settled, |d| d.max(self.min_settled)),
        }
    }

    /// The delay with jitter applied; `unit` is a uniform sample from [0, 1). A server's
    /// `Retry-After` is never undercut.
    pub fn delay(&self, o: &Observation<'_>, unit: f64) -> Duration {
        let base = self.base_delay(o);
        let factor = 1.0 + self.jitter * (2.0 * unit.clamp(0.0, 1.0) - 1.0);
        let jittered = base.mul_f64(factor.max(0.0));
        match o.retry_after {
            Some(ra) if is_retryable_failure(o.outcome) => jittered.max(ra),
            _ => jittered,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cloud::Backup;
    use crate::status::SyncFailure;

    fn observed(status: &str) -> SyncOutcome {
        SyncOutcome::observed(Backup {
            id: "x".into(),
            status: Some(status.into()),
            ..Default::default()
        })
    }

    fn failed(reason: FailureReason) -> SyncOutcome {
        SyncOutcome::Failed(SyncFailure {
            reason,
            message: String::new(),
        })
    }

    fn obs(outcome: &SyncOutcome, failures: u32) -> Observation<'_> {
        Observation {
            outcome,
            spec_interval: None,
            consecutive_failures: failures,
            retry_after: None,
        }
    }

    #[test]
    fn transitional_fast_settled_slow() {
        let p = PollPolicy::default();
        for s in ["creating", "restoring", "deleting"] {
            assert_eq!(
                p.base_delay(&obs(&observed(s), 0)),
                Duration::from_secs(15),
                "{s}"
            );
        }
        for s in ["available", "error", "error_restoring", "something_new"] {
            assert_eq!(
                p.base_delay(&obs(&observed(s), 0)),
                Duration::from_secs(600),
                "{s}"
            );
        }
    }

    #[test]
    fn spec_interval_overrides_settled_with_a_floor() {
        let p = PollPolicy::default();
        let o = observed("available");
        let with = |d| Observation {
            spec_interval: Some(d),
            ..obs(&o, 0)
        };
        assert_eq!(
            p.base_delay(&with(Duration::from_secs(3600))),
            Duration::from_secs(3600)
        );
        assert_eq!(p.base_delay(&with(Duration::from_secs(1))), MIN_POLL_INTERVAL);
        let creating = observed("creating");
        let fast = Observation {
            spec_interval: Some(Duration::from_secs(3600)),
            ..obs(&creating, 0)
        };
        assert_eq!(
            p.base_delay(&fast),
            Duration::from_secs(15),
            "transitional ignores spec interval"
        );
    }

    #[test]
    fn failures_back_off_exponentially_and_cap() {
        let p = PollPolicy::default();
        let f = failed(FailureReason::ApiError);
        let delays: Vec<u64> = (1..=8).map(|n| p.base_delay(&obs(&f, n)).as_secs()).collect();
        assert_eq!(delays, vec![5, 10, 20, 40, 80, 160, 300, 300]);
        assert_eq!(p.base_delay(&obs(&f, u32::MAX)).as_secs(), 300);
        let auth = failed(FailureReason::AuthenticationFailed);
        assert_eq!(p.base_delay(&obs(&auth, 2)).as_secs(), 10);
    }

    #[test]
    fn retry_after_is_honoured_even_with_jitter() {
        let p = PollPolicy::default();
        let f = failed(FailureReason::ApiError);
        let o = Observation {
            retry_after: Some(Duration::from_secs(120)),
            ..obs(&f, 1)
        };
        assert_eq!(p.base_delay(&o), Duration::from_secs(120));
        assert!(p.delay(&o, 0.0) >= Duration::from_secs(120));
    }

    #[test]
    fn reported_states_poll_at_settled_interval() {
        let p = PollPolicy::default();
        for r in [
            FailureReason::SecretNotFound,
            FailureReason::SecretForbidden,
            FailureReason::InvalidCloudConfig,
            FailureReason::BackupNotFound,
        ] {
            assert_eq!(
                p.base_delay(&obs(&failed(r), 3)),
                Duration::from_secs(600),
                "{r:?}"
            );
        }
    }

    #[test]
    fn jitter_stays_within_bounds() {
        let p = PollPolicy::default();
        let o = observed("available");
        assert_eq!(p.delay(&obs(&o, 0), 0.0), Duration::from_secs(540));
        assert_eq!(p.delay(&obs(&o, 0), 0.5), Duration::from_secs(600));
        assert!(p.delay(&obs(&o, 0), 0.999_999) <= Duration::from_secs(660));
    }
}
