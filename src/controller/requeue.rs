//! When to look at a VbsBackup again: fast while the backup is changing, slowly once it settled,
//! with capped exponential backoff (and the server's `Retry-After`) while the API fails.

use std::time::Duration;

use crate::status::{BackupStatus, FailureReason, SyncOutcome};

/// Settled intervals below this are raised to it.
pub const MIN_POLL_INTERVAL: Duration = Duration::from_secs(10);
/// Longest `spec.pollInterval` honoured (the CRD refuses longer ones where the API server checks
/// CEL rules; older servers let them through, and they are lowered to this).
pub const MAX_POLL_INTERVAL: Duration = Duration::from_secs(7 * 24 * 3600);
/// Longest `spec.pollInterval` text accepted (also the CRD's `maxLength`).
pub const MAX_DURATION_CHARS: usize = 32;

#[derive(Debug, Clone, PartialEq)]
pub struct PollPolicy {
    /// Interval for transitional backups (creating, restoring, deleting).
    pub fast: Duration,
    /// Interval for settled backups, unless `spec.pollInterval` says otherwise.
    pub settled: Duration,
    /// First retry after a failed query; the delay then grows with the time the failures have
    /// lasted, so it doubles per retry.
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
#[derive(Debug)]
pub struct Observation<'a, S> {
    pub outcome: &'a SyncOutcome<S>,
    /// `spec.pollInterval`, parsed.
    pub spec_interval: Option<Duration>,
    /// How long the queries have been failing, from the `Synced` condition's last transition to
    /// False (zero on the first failure). No counter is kept anywhere: the status is the memory,
    /// and it survives a restart of the operator.
    pub failing_for: Duration,
    pub retry_after: Option<Duration>,
    /// How old the list the backup came from was (`None`: a single GET). A settled backup read
    /// from a list comes back when that list is due again, so that the group's reads gather.
    pub list_age: Option<Duration>,
}

/// Whether an outcome counts as a failure to back off from. Missing Secrets, broken clouds.yaml
/// and vanished backups are states to report, not errors to hammer the API about: they are polled
/// at the settled interval, and a change to the Secret re-triggers at once.
pub fn is_retryable_failure<S>(outcome: &SyncOutcome<S>) -> bool {
    matches!(
        outcome,
        SyncOutcome::Failed(f) if matches!(f.reason, FailureReason::ApiError | FailureReason::AuthenticationFailed)
    )
}

impl PollPolicy {
    /// The retry delay after failures that have lasted `failing_for`: the time they have lasted,
    /// at least `initial_backoff` and at most `max_backoff`. Retries therefore come at 0, i, 2i,
    /// 4i, ... after the first failure: exponential backoff without a counter.
    pub fn backoff(&self, failing_for: Duration) -> Duration {
        failing_for.clamp(self.initial_backoff, self.max_backoff.max(self.initial_backoff))
    }

    /// The delay before the next reconcile, before jitter.
    pub fn base_delay<S: BackupStatus>(&self, o: &Observation<'_, S>) -> Duration {
        if is_retryable_failure(o.outcome) {
            let backoff = self.backoff(o.failing_for);
            return o.retry_after.map_or(backoff, |ra| backoff.max(ra));
        }
        match o.outcome {
            SyncOutcome::Observed(_) if o.outcome.is_transitional() => self.fast,
            SyncOutcome::Observed(_) if o.list_age.is_some() => self
                .settled_interval(o.spec_interval)
                .saturating_sub(o.list_age.unwrap_or_default()),
            _ => self.settled_interval(o.spec_interval),
        }
    }

    /// The interval of a settled backup: `spec.pollInterval` within its bounds, else the default.
    pub fn settled_interval(&self, spec_interval: Option<Duration>) -> Duration {
        spec_interval.map_or(self.settled, |d| d.clamp(self.min_settled, MAX_POLL_INTERVAL))
    }

    /// The delay with jitter applied; `unit` is a uniform sample from [0, 1). A server's
    /// `Retry-After` is never undercut.
    pub fn delay<S: BackupStatus>(&self, o: &Observation<'_, S>, unit: f64) -> Duration {
        let base = self.base_delay(o);
        let unit = if unit.is_finite() {
            unit.clamp(0.0, 1.0)
        } else {
            0.5
        };
        let settled = matches!(o.outcome, SyncOutcome::Observed(_)) && !o.outcome.is_transitional();
        if o.list_age.is_some() && settled {
            // Aligned with the group's list: back just after it is due again, spread over a
            // second (not ±10%), so that the group's reads gather in one coalescing window.
            return (base + Duration::from_secs_f64(unit)).max(Duration::from_secs(1));
        }
        let factor = 1.0 + self.jitter.clamp(0.0, 1.0) * (2.0 * unit - 1.0);
        let jittered = Duration::try_from_secs_f64(base.as_secs_f64() * factor).unwrap_or(base);
        match o.retry_after {
            Some(ra) if is_retryable_failure(o.outcome) => jittered.max(ra),
            _ => jittered,
        }
    }
}

/// `spec.pollInterval` (`90s`, `10m`, `1h30m`, `1.5h`: Go's duration syntax without signs) as a
/// duration, at most [`MAX_POLL_INTERVAL`]; `None` when it does not parse. Tenant input: the
/// arithmetic is checked and the text is bounded, so no value can overflow.
pub fn parse_duration(value: &str) -> Option<Duration> {
    if value.is_empty() || value.len() > MAX_DURATION_CHARS {
        return None;
    }
    let mut total_ms: u128 = 0;
    let mut rest = value;
    while !rest.is_empty() {
        let number_len = rest.find(|c: char| !(c.is_ascii_digit() || c == '.'))?;
        let (number, tail) = rest.split_at(number_len);
        let (unit_ms, unit_len): (u128, usize) = if tail.starts_with("ms") {
            (1, 2)
        } else if tail.starts_with('s') {
            (1_000, 1)
        } else if tail.starts_with('m') {
            (60_000, 1)
        } else if tail.starts_with('h') {
            (3_600_000, 1)
        } else {
            return None;
        };
        rest = &tail[unit_len..];
        let (whole, fraction) = match number.split_once('.') {
            Some((w, f)) if !f.is_empty() => (w, f),
            Some(_) => return None,
            None => (number, ""),
        };
        if whole.is_empty()
            || !whole.bytes().all(|b| b.is_ascii_digit())
            || !fraction.bytes().all(|b| b.is_ascii_digit())
        {
            return None;
        }
        // At most 32 digits each: both fit a u128 with room for the unit.
        let whole_ms = whole.parse::<u128>().ok()?.checked_mul(unit_ms)?;
        let fraction_ms = if fraction.is_empty() {
            0
        } else {
            let scale = 10u128.checked_pow(u32::try_from(fraction.len()).ok()?)?;
            fraction.parse::<u128>().ok()?.checked_mul(unit_ms)? / scale
        };
        total_ms = total_ms.checked_add(whole_ms)?.checked_add(fraction_ms)?;
    }
    let max_ms = MAX_POLL_INTERVAL.as_millis();
    Some(Duration::from_millis(u64::try_from(total_ms.min(max_ms)).ok()?))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crd::VbsBackupStatus;
    use crate::status::SyncFailure;

    type Outcome = SyncOutcome<VbsBackupStatus>;

    fn observed(status: &str) -> Outcome {
        SyncOutcome::observed(VbsBackupStatus {
            backup_status: Some(status.into()),
            ..Default::default()
        })
    }

    fn failed(reason: FailureReason) -> Outcome {
        SyncOutcome::Failed(SyncFailure {
            reason,
            message: String::new(),
        })
    }

    fn obs(outcome: &Outcome, failing_secs: u64) -> Observation<'_, VbsBackupStatus> {
        Observation {
            outcome,
            spec_interval: None,
            failing_for: Duration::from_secs(failing_secs),
            retry_after: None,
            list_age: None,
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
        // Simulate the retries: each one comes `delay` after the previous.
        let mut failing_for = 0;
        let mut delays = Vec::new();
        for _ in 0..9 {
            let d = p.base_delay(&obs(&f, failing_for)).as_secs();
            delays.push(d);
            failing_for += d;
        }
        assert_eq!(delays, vec![5, 5, 10, 20, 40, 80, 160, 300, 300]);
        assert_eq!(p.base_delay(&obs(&f, u64::MAX)).as_secs(), 300);
        let auth = failed(FailureReason::AuthenticationFailed);
        assert_eq!(p.base_delay(&obs(&auth, 10)).as_secs(), 10);
    }

    #[test]
    fn poll_interval_parsing() {
        assert_eq!(parse_duration("10m"), Some(Duration::from_secs(600)));
        assert_eq!(parse_duration("1h30m"), Some(Duration::from_secs(5400)));
        assert_eq!(parse_duration("90s"), Some(Duration::from_secs(90)));
        assert_eq!(parse_duration("1.5h"), Some(Duration::from_secs(5400)));
        assert_eq!(parse_duration("250ms"), Some(Duration::from_millis(250)));
        for bad in ["soon", "", "10", "m", "1.h", ".5h", "-5m", "1d", "5 m"] {
            assert_eq!(parse_duration(bad), None, "{bad:?}");
        }
        assert_eq!(parse_duration("99999999999999999999h"), Some(MAX_POLL_INTERVAL));
        assert_eq!(parse_duration("169h"), Some(MAX_POLL_INTERVAL));
        assert_eq!(
            parse_duration(&"9".repeat(40)),
            None,
            "longer than the CRD allows"
        );
    }

    #[test]
    fn huge_spec_intervals_are_clamped_not_fatal() {
        let p = PollPolicy::default();
        let o = observed("available");
        let with = Observation {
            spec_interval: parse_duration("99999999999999999999h"),
            ..obs(&o, 0)
        };
        assert_eq!(p.base_delay(&with), MAX_POLL_INTERVAL);
        assert!(p.delay(&with, 0.999) <= MAX_POLL_INTERVAL.mul_f64(1.1));
    }

    proptest::proptest! {
        #[test]
        fn durations_never_panic(text in "[0-9.hms]{0,40}", other in ".{0,40}") {
            for t in [&text, &other] {
                if let Some(d) = parse_duration(t) {
                    proptest::prop_assert!(d <= MAX_POLL_INTERVAL);
                }
            }
        }

        #[test]
        fn delays_are_bounded(
            failing_secs in proptest::num::u64::ANY,
            retry_after_secs in proptest::option::of(0u64..=3600),
            spec_secs in proptest::option::of(proptest::num::u64::ANY),
            unit in proptest::num::f64::ANY,
            reason in 0usize..3,
        ) {
            let p = PollPolicy::default();
            let outcome = match reason {
                0 => failed(FailureReason::ApiError),
                1 => observed("available"),
                _ => observed("creating"),
            };
            let o = Observation {
                outcome: &outcome,
                spec_interval: spec_secs.map(Duration::from_secs),
                failing_for: Duration::from_secs(failing_secs),
                retry_after: retry_after_secs.map(Duration::from_secs),
                list_age: None,
            };
            let d = p.delay(&o, unit);
            proptest::prop_assert!(d <= MAX_POLL_INTERVAL.mul_f64(1.1) + Duration::from_secs(1));
            if let (0, Some(ra)) = (reason, o.retry_after) {
                proptest::prop_assert!(d >= ra, "Retry-After undercut: {d:?} < {ra:?}");
            }
        }
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
    fn listed_backups_come_back_when_their_list_is_due() {
        let p = PollPolicy::default();
        let o = observed("available");
        let listed = Observation {
            list_age: Some(Duration::from_secs(100)),
            ..obs(&o, 0)
        };
        assert_eq!(p.base_delay(&listed), Duration::from_secs(500));
        assert_eq!(p.delay(&listed, 0.5), Duration::from_millis(500_500));
        let creating = observed("creating");
        let fast = Observation {
            list_age: Some(Duration::from_secs(100)),
            ..obs(&creating, 0)
        };
        assert_eq!(
            p.base_delay(&fast),
            Duration::from_secs(15),
            "transitional stays fast"
        );
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
