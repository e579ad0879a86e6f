//! Prometheus / OpenMetrics metrics of the operator, exported on `/metrics`.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::AtomicU64;
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

use crate::cloud::{ApiObserver, Operation};

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct KindLabels {
    /// `VbsBackup` or `CbrBackup`.
    pub kind: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReasonLabels {
    pub kind: &'static str,
    pub reason: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RequestLabels {
    /// `keystone`, `vbs` or `cbr`.
    pub service: &'static str,
    pub operation: String,
    /// HTTP status code, or `none` when no response arrived.
    pub code: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OperationLabels {
    pub service: &'static str,
    pub operation: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct BackupStatusLabels {
    pub kind: &'static str,
    pub backup_status: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ResourceLabels {
    pub kind: &'static str,
    pub namespace: String,
    pub name: String,
}

type HistogramFamily<L> = Family<L, Histogram, fn() -> Histogram>;

/// Every metric the operator exports. Names carry the `vbs_` prefix.
pub struct Metrics {
    registry: Registry,
    pub reconciles: Family<KindLabels, Counter>,
    pub reconcile_failures: Family<ReasonLabels, Counter>,
    pub reconcile_duration: HistogramFamily<KindLabels>,
    pub cloud_requests: Family<RequestLabels, Counter>,
    pub cloud_request_duration: HistogramFamily<OperationLabels>,
    pub token_refreshes: Counter,
    /// Status patches written (only when the status changed).
    pub status_writes: Family<KindLabels, Counter>,
    /// Secrets read through the API (only when not cached at their current resourceVersion).
    pub secret_reads: Counter,
    /// Events published.
    pub events: Family<KindLabels, Counter>,
    /// Normal Events dropped because the queue of Events to publish was full.
    pub events_dropped: Family<KindLabels, Counter>,
    pub backups: Family<BackupStatusLabels, Gauge>,
    pub last_sync: Family<ResourceLabels, Gauge<f64, AtomicU64>>,
    /// Source of `last_sync`, pruned of deleted VbsBackups at each scrape.
    last_sync_times: Mutex<HashMap<ResourceLabels, f64>>,
}

fn latency_histogram() -> Histogram {
    // 5 ms .. ~40 s
    Histogram::new(exponential_buckets(0.005, 2.0, 14))
}

impl Default for Metrics {
    fn default() -> Self {
        let mut registry = Registry::with_prefix("vbs");
        let reconciles = Family::<KindLabels, Counter>::default();
        registry.register("reconciles", "Reconciles, by kind", reconciles.clone());
        let reconcile_failures = Family::<ReasonLabels, Counter>::default();
        registry.register(
            "reconcile_failures",
            "Reconciles that did not learn the backup's state, by kind and reason (the Synced reason, or KubernetesError)",
            reconcile_failures.clone(),
        );
        let reconcile_duration: HistogramFamily<KindLabels> = Family::new_with_constructor(latency_histogram);
        registry.register(
            "reconcile_duration_seconds",
            "Duration of reconciles, by kind",
            reconcile_duration.clone(),
        );
        let cloud_requests = Family::<RequestLabels, Counter>::default();
        registry.register(
            "cloud_requests",
            "HTTP requests to the cloud, by service (keystone, vbs, cbr), operation (authenticate, show_backup, list_backups) and status code",
            cloud_requests.clone(),
        );
        let cloud_request_duration: HistogramFamily<OperationLabels> =
            Family::new_with_constructor(latency_histogram);
        registry.register(
            "cloud_request_duration_seconds",
            "Latency of HTTP requests to the cloud, by service and operation",
            cloud_request_duration.clone(),
        );
        let token_refreshes = Counter::default();
        registry.register(
            "token_refreshes",
            "Keystone tokens fetched",
            token_refreshes.clone(),
        );
        let status_writes = Family::<KindLabels, Counter>::default();
        registry.register(
            "status_writes",
            "Status patches written, by kind (a write happens only when the status changed)",
            status_writes.clone(),
        );
        let secret_reads = Counter::default();
        registry.register(
            "secret_reads",
            "Secrets read through the Kubernetes API (a Secret unchanged since it was parsed is not read again)",
            secret_reads.clone(),
        );
        let events = Family::<KindLabels, Counter>::default();
        registry.register("events", "Kubernetes Events published, by kind", events.clone());
        let events_dropped = Family::<KindLabels, Counter>::default();
        registry.register(
            "events_dropped",
            "Normal Kubernetes Events dropped because the queue of Events to publish was full, by kind",
            events_dropped.clone(),
        );
        let backups = Family::<BackupStatusLabels, Gauge>::default();
        registry.register(
            "backups",
            "Backup resources by kind and by the backup's status (`none` while unknown or when the backup is gone)",
            backups.clone(),
        );
        let last_sync = Family::<ResourceLabels, Gauge<f64, AtomicU64>>::default();
        registry.register(
            "last_successful_sync_timestamp_seconds",
            "Unix time of the last successful query of the cloud, per backup resource",
            last_sync.clone(),
        );
        Metrics {
            registry,
            reconciles,
            reconcile_failures,
            reconcile_duration,
            cloud_requests,
            cloud_request_duration,
            token_refreshes,
            status_writes,
            secret_reads,
            events,
            events_dropped,
            backups,
            last_sync,
            last_sync_times: Mutex::default(),
        }
    }
}

impl Metrics {
    pub fn failure(&self, kind: &'static str, reason: &str) {
        self.reconcile_failures
            .get_or_create(&ReasonLabels {
                kind,
                reason: reason.to_string(),
            })
            .inc();
    }

    pub fn synced(&self, kind: &'static str, namespace: &str, name: &str, unix_seconds: f64) {
        let labels = ResourceLabels {
            kind,
            namespace: namespace.to_string(),
            name: name.to_string(),
        };
        self.last_sync_times
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(labels, unix_seconds);
    }

    /// Recomputes the per-resource gauges from the watched objects (called before each scrape):
    /// resources by kind and backup status, and the last sync time of those that still exist.
    pub fn refresh_from(&self, objects: impl IntoIterator<Item = WatchedObject>) {
        let mut alive = HashSet::new();
        self.backups.clear();
        for obj in objects {
            self.backups
                .get_or_create(&BackupStatusLabels {
                    kind: obj.kind,
                    backup_status: obj.backup_status.unwrap_or_else(|| "none".into()),
                })
                .inc();
            alive.insert(ResourceLabels {
                kind: obj.kind,
                namespace: obj.namespace,
                name: obj.name,
            });
        }
        let mut times = self
            .last_sync_times
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        times.retain(|labels, _| alive.contains(labels));
        self.last_sync.clear();
        for (labels, t) in times.iter() {
            self.last_sync.get_or_create(labels).set(*t);
        }
    }

    /// The registry in the OpenMetrics text format.
    pub fn encode(&self) -> Result<String, std::fmt::Error> {
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &self.registry)?;
        Ok(out)
    }
}

impl ApiObserver for Metrics {
    fn request_finished(
        &self,
        service: &'static str,
        operation: Operation,
        status: Option<u16>,
        elapsed: Duration,
    ) {
        let op = operation.as_str().to_string();
        let code = status.map_or_else(|| "none".to_string(), |s| s.to_string());
        self.cloud_requests
            .get_or_create(&RequestLabels {
                service,
                operation: op.clone(),
                code,
            })
            .inc();
        self.cloud_request_duration
            .get_or_create(&OperationLabels {
                service,
                operation: op,
            })
            .observe(elapsed.as_secs_f64());
    }

    fn token_fetched(&self) {
        self.token_refreshes.inc();
    }
}
/// One watched resource, as the per-resource gauges need it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WatchedObject {
    pub kind: &'static str,
    pub namespace: String,
    pub name: String,
    pub backup_status: Option<String>,
}

/// The value of a series in an OpenMetrics text, as the operator's `/metrics` serves it; for tests
/// and the benchmark that read it from outside. `series` with labels (`name{a="b"}`) is that one
/// series; a bare name is the sum of all its series (every kind, say), `None` when there is none.
pub fn sample(text: &str, series: &str) -> Option<f64> {
    let value = |v: &str| v.trim().parse::<f64>().ok();
    if series.contains('{') {
        return text
            .lines()
            .find_map(|l| l.strip_prefix(series)?.strip_prefix(' '))
            .and_then(value);
    }
    text.lines()
        .filter_map(|l| {
            let rest = l.strip_prefix(series)?;
            let v = match rest.strip_prefix('{') {
                Some(labelled) => labelled.split_once("} ")?.1,
                None => rest.strip_prefix(' ')?,
            };
            value(v)
        })
        .reduce(|a, b| a + b)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn samples_are_read_by_series() {
        let text = "# TYPE vbs_events counter\nvbs_events_total 3\nvbs_backups{backup_status=\"none\"} 1\n\
                    vbs_backups{backup_status=\"available\"} 2\n";
        assert_eq!(sample(text, "vbs_events_total"), Some(3.0));
        assert_eq!(sample(text, "vbs_backups{backup_status=\"none\"}"), Some(1.0));
        assert_eq!(
            sample(text, "vbs_backups"),
            Some(3.0),
            "a bare name sums its series"
        );
        assert_eq!(
            sample(text, "vbs_events"),
            None,
            "a name is not a prefix of another"
        );
    }
}
