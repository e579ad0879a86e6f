//! One reconcile: get the cloud profile (cached per Secret version), ask the cloud, map to status,
//! write it if it changed, publish Events for transitions, and decide when to look again.

use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::time::Duration;

use futures::FutureExt;
use jiff::{Timestamp, Unit};
use kube::api::{Patch, PatchParams};
use kube::runtime::controller::Action;
use kube::runtime::events::{Event, EventType};
use kube::{Api, ResourceExt};
use serde_json::json;
use tracing::{error, info, instrument, warn};

use super::KindContext;
use super::events::Pending;
use super::requeue::{Observation, parse_duration};
use super::secrets::ProfileError;
use crate::cloud::CloudError;
use crate::kind::BackupKind;
use crate::status::{self, BackupStatus, FailureReason, SyncFailure, SyncOutcome};

/// Field manager of the operator's server-side-apply status patches.
pub const FIELD_MANAGER: &str = "vbs-operator";

/// Errors that stop a reconcile short; cloud-side problems are not among them (they are reported
/// in the `Synced` condition instead).
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("cannot read Secret {namespace}/{name}: {source}")]
    ReadSecret {
        namespace: String,
        name: String,
        source: kube::Error,
    },
    #[error("cannot write the status of {kind} {namespace}/{name}: {source}")]
    PatchStatus {
        kind: &'static str,
        namespace: String,
        name: String,
        source: kube::Error,
    },
    /// A bug met an input it did not expect. The reconcile is abandoned and retried after the
    /// longest backoff; every other resource goes on as before.
    #[error("the reconcile panicked: {message}")]
    Panicked { message: String },
}

#[instrument(skip_all, fields(kind = K::KIND, namespace = obj.namespace(), resource = obj.name_any(), backup_id = obj.backup_spec().backup_id))]
pub async fn reconcile<K: BackupKind>(obj: Arc<K>, ctx: Arc<KindContext<K>>) -> Result<Action, Error> {
    let started = std::time::Instant::now();
    let kind = metrics_kind::<K>();
    let metrics = &ctx.shared.metrics;
    metrics.reconciles.get_or_create(&kind).inc();
    let result = guard_panics(reconcile_inner(obj.as_ref(), ctx.as_ref())).await;
    metrics
        .reconcile_duration
        .get_or_create(&kind)
        .observe(started.elapsed().as_secs_f64());
    if result.is_err() {
        metrics.failure(kind.kind, "KubernetesError");
    }
    result
}

fn metrics_kind<K: BackupKind>() -> crate::metrics::KindLabels {
    crate::metrics::KindLabels { kind: K::KIND }
}

/// Runs one reconcile so that a panic in it becomes [`Error::Panicked`] instead of unwinding into
/// kube-runtime, which would end the process (it unwraps the task's result) and with it the
/// statuses of every namespace.
pub async fn guard_panics<F>(reconcile: F) -> Result<Action, Error>
where
    F: Future<Output = Result<Action, Error>>,
{
    match AssertUnwindSafe(reconcile).catch_unwind().await {
        Ok(result) => result,
        Err(panic) => {
            let message = panic
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| panic.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "unknown panic payload".into());
            let message = status::truncate(&message, 300);
            error!(%message, "reconcile panicked; retrying later");
            Err(Error::Panicked { message })
        }
    }
}

async fn reconcile_inner<K: BackupKind>(obj: &K, ctx: &KindContext<K>) -> Result<Action, Error> {
    let namespace = obj.namespace().unwrap_or_default();
    let name = obj.name_any();
    let kind = K::KIND;
    let metrics = &ctx.shared.metrics;
    let (outcome, retry_after, list_age) = observe(obj, &namespace, ctx).await?;
    match &outcome {
        SyncOutcome::Observed(_) => {
            metrics.synced(
                kind,
                &namespace,
                &name,
                Timestamp::now().as_millisecond() as f64 / 1000.0,
            );
        }
        SyncOutcome::Failed(f) => metrics.failure(kind, f.reason.as_str()),
    }

    let current = obj.current_status();
    let now = Timestamp::now()
        .round(Unit::Second)
        .unwrap_or_else(|_| Timestamp::now());
    let desired = status::desired_status(current, &outcome, obj.meta().generation, now);
    if current != Some(&desired) {
        write_status(obj, &namespace, &name, &desired, ctx).await?;
        publish_notices(obj, current, &desired, ctx).await;
    }

    let spec = obj.backup_spec();
    let observation = Observation {
        outcome: &outcome,
        spec_interval: spec.poll_interval.as_deref().and_then(parse_duration),
        failing_for: failing_for(&desired, Timestamp::now()),
        retry_after,
        list_age,
    };
    if let SyncOutcome::Failed(f) = &outcome {
        info!(reason = f.reason.as_str(), message = %f.message, "the backup's state could not be read");
    }
    Ok(Action::requeue(
        ctx.shared.poll.delay(&observation, rand::random::<f64>()),
    ))
}

async fn write_status<K: BackupKind>(
    obj: &K,
    namespace: &str,
    name: &str,
    desired: &K::Status,
    ctx: &KindContext<K>,
) -> Result<(), Error> {
    let shared = &ctx.shared;
    let api: Api<K> = Api::namespaced(shared.client.clone(), namespace);
    let patch = json!({
        "apiVersion": K::api_version(&()),
        "kind": K::kind(&()),
        "status": desired,
    });
    let _slot = shared.kube_slots.acquire().await.ok();
    api.patch_status(
        name,
        &PatchParams::apply(FIELD_MANAGER).force(),
        &Patch::Apply(&patch),
    )
    .await
    .map_err(|source| Error::PatchStatus {
        kind: K::KIND,
        namespace: namespace.to_string(),
        name: name.to_string(),
        source,
    })?;
    shared
        .metrics
        .status_writes
        .get_or_create(&metrics_kind::<K>())
        .inc();
    info!(
        backup_status = desired.backup_status().unwrap_or("-"),
        generation = obj.meta().generation,
        "status updated"
    );
    Ok(())
}

/// How long the queries of this resource have been failing: since its `Synced` condition last
/// turned False (zero when it is not False).
fn failing_for<S: BackupStatus>(status: &S, now: Timestamp) -> Duration {
    status
        .conditions()
        .iter()
        .find(|c| c.type_ == status::SYNCED && c.status == "False")
        .and_then(|c| Duration::try_from(now.duration_since(c.last_transition_time.0)).ok())
        .unwrap_or(Duration::ZERO)
}

/// Requeues a reconcile that could not finish (Kubernetes API trouble, or a panic) with the same
/// backoff as failed cloud queries; a panic waits the longest backoff.
pub fn error_policy<K: BackupKind>(obj: Arc<K>, error: &Error, ctx: Arc<KindContext<K>>) -> Action {
    let poll = &ctx.shared.poll;
    let delay = match error {
        Error::Panicked { .. } => poll.max_backoff,
        _ => {
            let since = obj
                .current_status()
                .map_or(Duration::ZERO, |s| failing_for(s, Timestamp::now()));
            poll.backoff(since)
        }
    };
    warn!(namespace = obj.namespace(), name = obj.name_any(), %error, retry_in = ?delay, "reconcile failed");
    Action::requeue(delay)
}

/// How old a list may be to serve a resource that has no status yet. Long enough that a fleet
/// starting up (reconciled `--max-reconciles` at a time) is served by one list per group, short
/// enough that a VbsBackup created later sees a recent state.
const NEW_OBJECT_MAX_AGE: Duration = Duration::from_secs(30);

/// Gets the cloud profile and asks the cloud. Only a failure to read the Secret through the
/// Kubernetes API (other than its absence or RBAC) is an error; everything else is an outcome to
/// report. Also returns the server's `Retry-After` and, for a backup read from a list, its age.
async fn observe<K: BackupKind>(
    obj: &K,
    namespace: &str,
    ctx: &KindContext<K>,
) -> Result<(SyncOutcome<K::Status>, Option<Duration>, Option<Duration>), Error> {
    let shared = &ctx.shared;
    let spec = obj.backup_spec();
    let profile = {
        let _slot = shared.kube_slots.acquire().await.ok();
        shared
            .secrets
            .profile(
                &shared.client,
                namespace,
                &spec.cloud_ref.secret_name,
                spec.cloud_ref.cloud.as_deref(),
                || {
                    shared.metrics.secret_reads.inc();
                },
            )
            .await
    };
    let profile = match profile {
        Ok(p) => p,
        Err(ProfileError::Reported(failure)) => return Ok((SyncOutcome::Failed(failure), None, None)),
        Err(ProfileError::Kube {
            namespace,
            name,
            source,
        }) => {
            return Err(Error::ReadSecret {
                namespace,
                name,
                source,
            });
        }
    };
    let known_state = obj.current_status().and_then(|s| s.backup_status());
    let read = match &ctx.batcher {
        // Transitional backups are polled fast, each on its own.
        Some(batcher) if !known_state.is_some_and(K::Status::is_transitional) => {
            let max_age = match known_state {
                Some(_) => shared
                    .poll
                    .settled_interval(spec.poll_interval.as_deref().and_then(parse_duration)),
                None => NEW_OBJECT_MAX_AGE,
            };
            batcher
                .read(&profile, &spec.backup_id, max_age)
                .await
                .map(|f| (f.backup, f.listed_at.map(|at| at.elapsed())))
        }
        _ => shared
            .cloud
            .show::<K::Service>(&profile, &spec.backup_id)
            .await
            .map(|b| (b, None)),
    };
    match read {
        Ok((backup, list_age)) => {
            for (field, problem) in K::anomalies(&backup) {
                warn!(field, "the cloud's answer: {problem}");
            }
            Ok((SyncOutcome::observed(K::to_status(&backup)), None, list_age))
        }
        Err(e) => {
            let retry_after = e.retry_after();
            let reason = failure_reason(&e);
            let message = format!("cloud `{}`: {e}", profile.name);
            Ok((
                SyncOutcome::Failed(SyncFailure { reason, message }),
                retry_after,
                None,
            ))
        }
    }
}

pub fn failure_reason(e: &CloudError) -> FailureReason {
    match e {
        CloudError::Config(_) | CloudError::NoEndpoint { .. } => FailureReason::InvalidCloudConfig,
        CloudError::Authentication { .. } => FailureReason::AuthenticationFailed,
        CloudError::NotFound { .. } => FailureReason::BackupNotFound,
        CloudError::Api { .. }
        | CloudError::Timeout { .. }
        | CloudError::Transport { .. }
        | CloudError::Decode { .. }
        | CloudError::CircuitOpen { .. } => FailureReason::ApiError,
    }
}

async fn publish_notices<K: BackupKind>(
    obj: &K,
    old: Option<&K::Status>,
    new: &K::Status,
    ctx: &KindContext<K>,
) {
    let ctx = &ctx.shared;
    let reference = obj.object_ref(&());
    for notice in status::notices(old, new) {
        let event = Event {
            type_: if notice.warning {
                EventType::Warning
            } else {
                EventType::Normal
            },
            reason: notice.reason,
            note: Some(notice.note),
            action: "Sync".into(),
            secondary: None,
        };
        ctx.events
            .publish(Pending {
                kind: K::KIND,
                event,
                regarding: reference.clone(),
            })
            .await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_panicking_reconcile_becomes_an_error() {
        let result = guard_panics(async { panic!("boom at {}", 42) }).await;
        assert!(
            matches!(result, Err(Error::Panicked { ref message }) if message == "boom at 42"),
            "{result:?}"
        );
        let fine = guard_panics(async { Ok(Action::await_change()) }).await;
        assert!(fine.is_ok());
    }

    #[test]
    fn failing_for_reads_the_synced_condition() {
        use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
        let since: Timestamp = "2026-11-27T10:00:00Z".parse().expect("time");
        let cond = |status: &str| Condition {
            type_: status::SYNCED.into(),
            status: status.into(),
            reason: "ApiError".into(),
            message: String::new(),
            observed_generation: None,
            last_transition_time: Time(since),
        };
        let now = since + jiff::SignedDuration::from_secs(40);
        let failing = crate::crd::VbsBackupStatus {
            conditions: vec![cond("False")],
            ..Default::default()
        };
        assert_eq!(failing_for(&failing, now), Duration::from_secs(40));
        let fine = crate::crd::VbsBackupStatus {
            conditions: vec![cond("True")],
            ..Default::default()
        };
        assert_eq!(failing_for(&fine, now), Duration::ZERO);
        assert_eq!(
            failing_for(&failing, since - jiff::SignedDuration::from_secs(5)),
            Duration::ZERO,
            "clock skew"
        );
    }
}
