//! One reconcile: read the Secret, ask the cloud, map to status, write it if it changed, publish
//! Events for transitions, and decide when to look again.

use std::sync::{Arc, PoisonError};
use std::time::Duration;

use jiff::{Timestamp, Unit};
use k8s_openapi::api::core::v1::Secret;
use kube::api::{Patch, PatchParams};
use kube::runtime::controller::Action;
use kube::runtime::events::{Event, EventType};
use kube::runtime::reflector::ObjectRef;
use kube::{Api, Resource, ResourceExt};
use serde_json::json;
use tracing::{info, instrument, warn};

use super::Context;
use super::requeue::{Observation, is_retryable_failure};
use crate::cloud::{CloudError, load_cloud};
use crate::crd::{VbsBackup, VbsBackupStatus};
use crate::status::{self, FailureReason, SyncFailure, SyncOutcome};

/// Field manager of the operator's server-side-apply status patches.
pub const FIELD_MANAGER: &str = "vbs-operator";
/// The Secret key holding clouds.yaml.
pub const CLOUDS_YAML_KEY: &str = "clouds.yaml";

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
}

#[instrument(skip_all, fields(namespace = obj.namespace(), vbsbackup = obj.name_any(), backup_id = obj.spec.backup_id))]
pub async fn reconcile(obj: Arc<VbsBackup>, ctx: Arc<Context>) -> Result<Action, Error> {
    let started = std::time::Instant::now();
    ctx.metrics.reconciles.inc();
    let result = reconcile_inner(&obj, &ctx).await;
    ctx.metrics
        .reconcile_duration
        .observe(started.elapsed().as_secs_f64());
    if result.is_err() {
        ctx.metrics.failure("KubernetesError");
    }
    result
}

async fn reconcile_inner(obj: &VbsBackup, ctx: &Context) -> Result<Action, Error> {
    let namespace = obj.namespace().unwrap_or_default();
    let name = obj.name_any();
    let (outcome, retry_after) = observe(obj, &namespace, ctx).await?;
    match &outcome {
        SyncOutcome::Observed(_) => ctx.metrics.synced(
            &namespace,
            &name,
            Timestamp::now().as_millisecond() as f64 / 1000.0,
        ),
        SyncOutcome::Failed(f) => ctx.metrics.failure(f.reason.as_str()),
    }

    let current = obj.status.as_ref();
    let now = Timestamp::now()
        .round(Unit::Second)
        .unwrap_or_else(|_| Timestamp::now());
    let desired = status::desired_status(current, &outcome, obj.metadata.generation, now);
    if current != Some(&desired) {
        let api: Api<VbsBackup> = Api::namespaced(ctx.client.clone(), &namespace);
        let patch = json!({
            "apiVersion": VbsBackup::api_version(&()),
            "kind": VbsBackup::kind(&()),
            "status": desired,
        });
        api.patch_status(
            &name,
            &PatchParams::apply(FIELD_MANAGER).force(),
            &Patch::Apply(&patch),
        )
        .await
        .map_err(|source| Error::PatchStatus {
            namespace: namespace.clone(),
            name: name.clone(),
            source,
        })?;
        info!(
            backup_status = desired.backup_status.as_deref().unwrap_or("-"),
            "status updated"
        );
        publish_notices(obj, current, &desired, ctx).await;
    }

    let failures = track_failures(obj, &outcome, ctx);
    let observation = Observation {
        outcome: &outcome,
        spec_interval: obj.spec.poll_interval.as_deref().and_then(parse_duration),
        consecutive_failures: failures,
        retry_after,
    };
    Ok(Action::requeue(
        ctx.poll.delay(&observation, rand::random::<f64>()),
    ))
}

/// Requeues a reconcile that could not finish (Kubernetes API trouble) with the same backoff.
pub fn error_policy(obj: Arc<VbsBackup>, error: &Error, ctx: Arc<Context>) -> Action {
    let failures = ctx.record_failure(&obj);
    warn!(namespace = obj.namespace(), name = obj.name_any(), %error, failures, "reconcile failed");
    Action::requeue(ctx.poll.backoff(failures))
}

/// Reads the Secret and asks the cloud. Only a failure to read the Secret through the Kubernetes
/// API (other than its absence) is an error; everything else is an outcome to report.
async fn observe(
    obj: &VbsBackup,
    namespace: &str,
    ctx: &Context,
) -> Result<(SyncOutcome, Option<Duration>), Error> {
    let secret_name = &obj.spec.cloud_ref.secret_name;
    let fail = |reason, message: String| Ok((SyncOutcome::Failed(SyncFailure { reason, message }), None));

    let secrets: Api<Secret> = Api::namespaced(ctx.client.clone(), namespace);
    let secret = match secrets.get_opt(secret_name).await {
        Ok(secret) => secret,
        // Missing RBAC is a state for the user to see on the resource, not a crash loop.
        Err(kube::Error::Api(status)) if status.code == 403 => {
            return fail(
                FailureReason::SecretForbidden,
                format!(
                    "the operator may not read Secret {namespace}/{secret_name} ({}): grant it get, list and \
                     watch on secrets in this namespace",
                    status.message
                ),
            );
        }
        Err(source) => {
            return Err(Error::ReadSecret {
                namespace: namespace.to_string(),
                name: secret_name.clone(),
                source,
            });
        }
    };
    let Some(secret) = secret else {
        return fail(
            FailureReason::SecretNotFound,
            format!(
                "Secret {namespace}/{secret_name} does not exist: create it with a `{CLOUDS_YAML_KEY}` key"
            ),
        );
    };
    let Some(bytes) = secret.data.as_ref().and_then(|d| d.get(CLOUDS_YAML_KEY)) else {
        return fail(
            FailureReason::InvalidCloudConfig,
            format!("Secret {namespace}/{secret_name} has no `{CLOUDS_YAML_KEY}` key"),
        );
    };
    let Ok(text) = std::str::from_utf8(&bytes.0) else {
        return fail(
            FailureReason::InvalidCloudConfig,
            format!("Secret {namespace}/{secret_name}: `{CLOUDS_YAML_KEY}` is not UTF-8 text"),
        );
    };
    let profile = match load_cloud(text, obj.spec.cloud_ref.cloud.as_deref()) {
        Ok(p) => p,
        Err(e) => {
            return fail(
                FailureReason::InvalidCloudConfig,
                format!("Secret {namespace}/{secret_name}: {e}"),
            );
        }
    };

    // The semaphore is never closed, so acquiring only waits.
    let _slot = ctx.cloud_slots.acquire().await.ok();
    match ctx.cloud.show_backup(&profile, &obj.spec.backup_id).await {
        Ok(backup) => Ok((SyncOutcome::observed(backup), None)),
        Err(e) => {
            let retry_after = e.retry_after();
            let reason = failure_reason(&e);
            let message = format!("cloud `{}`: {e}", profile.name);
            Ok((SyncOutcome::Failed(SyncFailure { reason, message }), retry_after))
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
        | CloudError::Decode { .. } => FailureReason::ApiError,
    }
}

/// Counts failed queries in a row for backoff; a success or a reported state resets the count.
fn track_failures(obj: &VbsBackup, outcome: &SyncOutcome, ctx: &Context) -> u32 {
    if is_retryable_failure(outcome) {
        ctx.record_failure(obj)
    } else {
        ctx.failures
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(&ObjectRef::from_obj(obj));
        0
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
        if let Err(e) = ctx.recorder.publish(&event, &reference).await {
            warn!(error = %e, "cannot publish event");
        }
    }
}

/// `spec.pollInterval` (`90s`, `10m`, `1h30m`) as a duration; `None` when it does not parse or is
/// negative (the CRD schema refuses such values on create).
pub fn parse_duration(value: &str) -> Option<Duration> {
    let d: kube::core::Duration = value.parse().ok()?;
    Some(d.into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn poll_interval_parsing() {
        assert_eq!(parse_duration("10m"), Some(Duration::from_secs(600)));
        assert_eq!(parse_duration("1h30m"), Some(Duration::from_secs(5400)));
        assert_eq!(parse_duration("90s"), Some(Duration::from_secs(90)));
        assert_eq!(parse_duration("soon"), None);
    }
}
