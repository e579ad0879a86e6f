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
use kube::{Api, Resource, ResourceExt};
use serde_json::json;
use tracing::{error, info, instrument, warn};

use super::Context;
use super::requeue::{Observation, parse_duration};
use super::secrets::ProfileError;
use crate::cloud::CloudError;
use crate::crd::{VbsBackup, VbsBackupStatus};
use crate::status::{self, FailureReason, SyncFailure, SyncOutcome};

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
    #[error("cannot write the status of VbsBackup {namespace}/{name}: {source}")]
    PatchStatus {
        namespace: String,
        name: String,
        source: kube::Error,
    },
    /// A bug met an input it did not expect. The reconcile is abandoned and retried after the
    /// longest backoff; every other VbsBackup goes on as before.
    #[error("the reconcile panicked: {message}")]
    Panicked { message: String },
}

#[instrument(skip_all, fields(namespace = obj.namespace(), vbsbackup = obj.name_any(), backup_id = obj.spec.backup_id))]
pub async fn reconcile(obj: Arc<VbsBackup>, ctx: Arc<Context>) -> Result<Action, Error> {
    let started = std::time::Instant::now();
    ctx.metrics.reconciles.inc();
    let result = guard_panics(reconcile_inner(&obj, &ctx)).await;
    ctx.metrics
        .reconcile_duration
        .observe(started.elapsed().as_secs_f64());
    if result.is_err() {
        ctx.metrics.failure("KubernetesError");
    }
    result
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

async fn reconcile_inner(obj: &VbsBackup, ctx: &Context) -> Result<Action, Error> {
    let namespace = obj.namespace().unwrap_or_default();
    let name = obj.name_any();
    let (outcome, retry_after, list_age) = observe(obj, &namespace, ctx).await?;
    match &outcome {
        SyncOutcome::Observed(backup) => {
            for (field, problem) in status::anomalies(backup) {
                warn!(field, "the cloud's answer: {problem}");
            }
            ctx.metrics.synced(
                &namespace,
                &name,
                Timestamp::now().as_millisecond() as f64 / 1000.0,
            );
        }
        SyncOutcome::Failed(f) => ctx.metrics.failure(f.reason.as_str()),
    }

    let current = obj.status.as_ref();
    let now = Timestamp::now()
        .round(Unit::Second)
        .unwrap_or_else(|_| Timestamp::now());
    let desired = status::desired_status(current, &outcome, obj.metadata.generation, now);
    if current != Some(&desired) {
        write_status(obj, &namespace, &name, &desired, ctx).await?;
        publish_notices(obj, current, &desired, ctx).await;
    }

    let observation = Observation {
        outcome: &outcome,
        spec_interval: obj.spec.poll_interval.as_deref().and_then(parse_duration),
        failing_for: failing_for(&desired, Timestamp::now()),
        retry_after,
        list_age,
    };
    if let SyncOutcome::Failed(f) = &outcome {
        info!(reason = f.reason.as_str(), message = %f.message, "the backup's state could not be read");
    }
    Ok(Action::requeue(
        ctx.poll.delay(&observation, rand::random::<f64>()),
    ))
}

async fn write_status(
    obj: &VbsBackup,
    namespace: &str,
    name: &str,
    desired: &VbsBackupStatus,
    ctx: &Context,
) -> Result<(), Error> {
    let api: Api<VbsBackup> = Api::namespaced(ctx.client.clone(), namespace);
    let patch = json!({
        "apiVersion": VbsBackup::api_version(&()),
        "kind": VbsBackup::kind(&()),
        "status": desired,
    });
    let _slot = ctx.kube_slots.acquire().await.ok();
    api.patch_status(
        name,
        &PatchParams::apply(FIELD_MANAGER).force(),
        &Patch::Apply(&patch),
    )
    .await
    .map_err(|source| Error::PatchStatus {
        namespace: namespace.to_string(),
        name: name.to_string(),
        source,
    })?;
    ctx.metrics.status_writes.inc();
    info!(
        backup_status = desired.backup_status.as_deref().unwrap_or("-"),
        generation = obj.metadata.generation,
        "status updated"
    );
    Ok(())
}

/// How long the queries of this VbsBackup have been failing: since its `Synced` condition last
/// turned False (zero when it is not False).
fn failing_for(status: &VbsBackupStatus, now: Timestamp) -> Duration {
    status
        .conditions
        .iter()
        .find(|c| c.type_ == status::SYNCED && c.status == "False")
        .and_then(|c| Duration::try_from(now.duration_since(c.last_transition_time.0)).ok())
        .unwrap_or(Duration::ZERO)
}

/// Requeues a reconcile that could not finish (Kubernetes API trouble, or a panic) with the same
/// backoff as failed cloud queries; a panic waits the longest backoff.
pub fn error_policy(obj: Arc<VbsBackup>, error: &Error, ctx: Arc<Context>) -> Action {
    let delay = match error {
        Error::Panicked { .. } => ctx.poll.max_backoff,
        _ => {
            let since = obj
                .status
                .as_ref()
                .map_or(Duration::ZERO, |s| failing_for(s, Timestamp::now()));
            ctx.poll.backoff(since)
        }
    };
    warn!(namespace = obj.namespace(), name = obj.name_any(), %error, retry_in = ?delay, "reconcile failed");
    Action::requeue(delay)
}

/// How old a list may be to serve a VbsBackup that has no status yet. Long enough that a fleet
/// starting up (reconciled `--max-reconciles` at a time) is served by one list per group, short
/// enough that a VbsBackup created later sees a recent state.
const NEW_OBJECT_MAX_AGE: Duration = Duration::from_secs(30);

/// Gets the cloud profile and asks the cloud. Only a failure to read the Secret through the
/// Kubernetes API (other than its absence or RBAC) is an error; everything else is an outcome to
/// report. Also returns the server's `Retry-After` and, for a backup read from a list, its age.
async fn observe(
    obj: &VbsBackup,
    namespace: &str,
    ctx: &Context,
) -> Result<(SyncOutcome, Option<Duration>, Option<Duration>), Error> {
    let secret_name = &obj.spec.cloud_ref.secret_name;
    let profile = {
        let _slot = ctx.kube_slots.acquire().await.ok();
        ctx.secrets
            .profile(
                &ctx.client,
                namespace,
                secret_name,
                obj.spec.cloud_ref.cloud.as_deref(),
                || {
                    ctx.metrics.secret_reads.inc();
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
    let known_state = obj.status.as_ref().and_then(|s| s.backup_status.as_deref());
    let read = match &ctx.batcher {
        // Transitional backups are polled fast, each on its own.
        Some(batcher) if !known_state.is_some_and(status::is_transitional) => {
            let max_age = match known_state {
                Some(_) => ctx
                    .poll
                    .settled_interval(obj.spec.poll_interval.as_deref().and_then(parse_duration)),
                None => NEW_OBJECT_MAX_AGE,
            };
            batcher
                .read(&profile, &obj.spec.backup_id, max_age)
                .await
                .map(|f| (f.backup, f.listed_at.map(|at| at.elapsed())))
        }
        _ => ctx
            .cloud
            .show_backup(&profile, &obj.spec.backup_id)
            .await
            .map(|b| (b, None)),
    };
    match read {
        Ok((backup, list_age)) => Ok((SyncOutcome::observed(backup), None, list_age)),
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

async fn publish_notices(
    obj: &VbsBackup,
    old: Option<&VbsBackupStatus>,
    new: &VbsBackupStatus,
    ctx: &Context,
) {
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
        let _slot = ctx.kube_slots.acquire().await.ok();
        match ctx.recorder.publish(&event, &reference).await {
            Ok(()) => {
                ctx.metrics.events.inc();
            }
            Err(e) => warn!(error = %e, "cannot publish event"),
        }
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
        let failing = VbsBackupStatus {
            conditions: vec![cond("False")],
            ..Default::default()
        };
        assert_eq!(failing_for(&failing, now), Duration::from_secs(40));
        let fine = VbsBackupStatus {
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
