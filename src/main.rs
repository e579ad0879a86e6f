use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use clap::{Parser, Subcommand};
use futures::FutureExt;
use tokio::sync::watch;
use tracing::{error, info};
use vbs_operator::cloud::{BatchOptions, CallLimits, ClientOptions, VbsClient};
use vbs_operator::controller::{self, PollPolicy, Watched};
use vbs_operator::leader::{self, Leadership, LeaseSettings};
use vbs_operator::metrics::Metrics;
use vbs_operator::telemetry::{self, LogFormat};

/// Kubernetes operator that mirrors cloud backups into Kubernetes resources: OpenStack Cinder /
/// Huawei Cloud VBS backups into VbsBackups, Cloud Backup and Recovery backups into CbrBackups.
#[derive(Parser)]
#[command(version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the controller (kube config from KUBECONFIG, ~/.kube/config or the in-cluster service account).
    Run(Box<RunArgs>),
    /// Print the CustomResourceDefinitions as YAML (both kinds, or the one named).
    Crd {
        #[arg(value_enum)]
        kind: Option<controller::Kind>,
    },
}

#[derive(clap::Args)]
struct RunArgs {
    /// Watch only this namespace; repeat for several (default: all namespaces).
    #[arg(long = "namespace", env = "VBS_WATCH_NAMESPACES", value_delimiter = ',')]
    namespaces: Vec<String>,
    /// Reconcile only resources matching this label selector (e.g. `shard=a`), so that several
    /// deployments can split a large fleet; all by default.
    #[arg(long, env = "VBS_SELECTOR")]
    selector: Option<String>,
    /// The kinds to reconcile; each needs its CRD installed.
    #[arg(
        long,
        env = "VBS_KINDS",
        value_enum,
        value_delimiter = ',',
        default_value = "vbsbackup,cbrbackup"
    )]
    kinds: Vec<controller::Kind>,
    /// Address of the HTTP server for /metrics, /healthz and /readyz.
    #[arg(long, env = "VBS_LISTEN_ADDR", default_value = "0.0.0.0:8080")]
    listen_addr: SocketAddr,
    /// Poll interval for settled backups (available, error, ...), unless spec.pollInterval is set.
    #[arg(long, env = "VBS_POLL_INTERVAL", default_value = "10m", value_parser = humantime::parse_duration)]
    poll_interval: Duration,
    /// Poll interval for transitional backups (creating, restoring, deleting).
    #[arg(long, env = "VBS_FAST_POLL_INTERVAL", default_value = "15s", value_parser = humantime::parse_duration)]
    fast_poll_interval: Duration,
    /// First retry delay after a failed API call; doubles per failure in a row.
    #[arg(long, env = "VBS_INITIAL_BACKOFF", default_value = "5s", value_parser = humantime::parse_duration)]
    initial_backoff: Duration,
    /// Longest retry delay after failed API calls.
    #[arg(long, env = "VBS_MAX_BACKOFF", default_value = "5m", value_parser = humantime::parse_duration)]
    max_backoff: Duration,
    /// Most cloud API calls in flight at once, across all endpoints.
    #[arg(long, env = "VBS_CONCURRENCY", default_value_t = 16)]
    concurrency: u16,
    /// Most cloud API calls in flight at once to one endpoint host, so that a slow or hanging
    /// endpoint holds only this many of the global slots.
    #[arg(long, env = "VBS_CONCURRENCY_PER_HOST", default_value_t = 4)]
    concurrency_per_host: u16,
    /// Timeouts or connection failures in a row that open an endpoint host's circuit
    /// breaker: its calls then fail at once, without a request, for a while.
    #[arg(long, env = "VBS_BREAKER_FAILURES", default_value_t = 3)]
    breaker_failures: u32,
    /// How long an open circuit breaker first stays open (doubling per re-opening, up to 5m).
    #[arg(long, env = "VBS_BREAKER_OPEN", default_value = "30s", value_parser = humantime::parse_duration)]
    breaker_open: Duration,
    /// Calls per second to one endpoint host, on average (token bucket); halved for a while after
    /// a 429.
    #[arg(long, env = "VBS_CLOUD_QPS", default_value_t = 20.0)]
    cloud_qps: f64,
    /// Calls to one endpoint host in a burst.
    #[arg(long, env = "VBS_CLOUD_BURST", default_value_t = 40)]
    cloud_burst: u32,
    /// Largest cloud response body read, in bytes; a larger answer is an error.
    #[arg(long, env = "VBS_MAX_RESPONSE_BYTES", default_value_t = 1024 * 1024)]
    max_response_bytes: usize,
    /// How settled backups are read: `batch` reads those of one endpoint, project and credential
    /// set that fall due together with the list call; `single` makes one GET per backup.
    #[arg(long, env = "VBS_REFRESH", value_enum, default_value = "batch")]
    refresh: controller::Refresh,
    /// Backups per page of the list call (at most 1000).
    #[arg(long, env = "VBS_LIST_PAGE_SIZE", default_value_t = 1000, value_parser = clap::value_parser!(u32).range(1..=1000))]
    list_page_size: u32,
    /// How long a read that finds no fresh list waits for others of its group to join it.
    #[arg(long, env = "VBS_BATCH_WINDOW", default_value = "200ms", value_parser = humantime::parse_duration)]
    batch_window: Duration,
    /// Most Kubernetes API calls of reconciles (Secret reads, status writes) in flight. Events
    /// have publishers of their own.
    #[arg(long, env = "VBS_KUBE_CONCURRENCY", default_value_t = 32)]
    kube_concurrency: u16,
    /// Most reconciles in flight per watched scope (namespace, or the cluster) and kind. Each
    /// waiting reconcile costs memory; 128 converges 10,000 resources as fast as 256 did.
    #[arg(long, env = "VBS_MAX_RECONCILES", default_value_t = 128)]
    max_reconciles: u16,
    /// Timeout of every call to the cloud API.
    #[arg(long, env = "VBS_CLOUD_TIMEOUT", default_value = "30s", value_parser = humantime::parse_duration)]
    cloud_timeout: Duration,
    /// Run only while holding a Lease, so that several replicas can run with one active.
    #[arg(long, env = "VBS_LEADER_ELECTION")]
    leader_election: bool,
    /// Namespace of the leader-election Lease.
    #[arg(long, env = "POD_NAMESPACE", default_value = "default")]
    leader_election_namespace: String,
    /// Name of the leader-election Lease.
    #[arg(long, env = "VBS_LEADER_ELECTION_LEASE_NAME", default_value = "vbs-operator")]
    leader_election_lease_name: String,
    /// How long the Lease stays valid without renewal: a standby takes over this long after the
    /// leader died at the latest. The holder renews a third of it before expiry.
    #[arg(long, env = "VBS_LEADER_ELECTION_LEASE_DURATION", default_value = "15s", value_parser = humantime::parse_duration)]
    leader_election_lease_duration: Duration,
    /// Log format.
    #[arg(long, env = "VBS_LOG_FORMAT", value_enum, default_value = "text")]
    log_format: LogFormat,
    /// Log level or filter (RUST_LOG syntax); RUST_LOG wins when set.
    #[arg(long, env = "VBS_LOG_LEVEL", default_value = "info")]
    log_level: String,
}

/// How long a stopping leader waits to hand its Lease over.
const LEASE_RELEASE_TIMEOUT: Duration = Duration::from_secs(5);

#[derive(Debug, thiserror::Error)]
enum MainError {
    #[error("cannot print the CRD: {0}")]
    Crd(#[from] serde_saphyr::SerializeError),
    #[error("cannot build the cloud HTTP client: {0}")]
    Http(#[from] reqwest::Error),
    #[error("cannot connect to Kubernetes (set KUBECONFIG or run in a cluster): {0}")]
    Kube(#[from] kube::Error),
    #[error("cannot listen on {addr}: {source}")]
    Listen {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("leader election failed: {0}")]
    Lease(#[from] kube_lease_manager::LeaseManagerError),
    #[error("lost the leader lease; exiting so that another replica takes over")]
    LeadershipLost,
}

fn main() -> std::process::ExitCode {
    tune_malloc();
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("vbs-operator: cannot start the async runtime: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(Cli::parse())) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            error!("{e}");
            eprintln!("vbs-operator: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}

/// Keeps glibc's heap in one arena, and large buffers out of it. By default each thread that
/// allocates may get an arena of its own (up to eight per core), and memory freed in one is not
/// reused by another; and the threshold above which an allocation gets pages of its own rises
/// with every such allocation freed, so that list pages and their parsed backups (hundreds of KiB
/// each) end up in the heap, where they fragment it. At 10,000 VbsBackups peak RSS was 111 MiB
/// with the defaults (the heap itself peaked at 52 MiB), 103 with two arenas, 91 to 103 with one
/// (the higher figure over 5 minutes of list refreshes) and 88 with one arena and a fixed 128 KiB
/// threshold over the same 5 minutes, for no more CPU. The operator's few threads barely
/// contend for the lock. (musl, the image's libc, has neither.) Must run before any thread is
/// started.
fn tune_malloc() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only sets an allocator parameter; it is called before any other thread
    // exists, and a refusal (return value 0) leaves the default in place.
    unsafe {
        libc::mallopt(libc::M_ARENA_MAX, 1);
        libc::mallopt(libc::M_MMAP_THRESHOLD, 128 * 1024);
    }
}

async fn run(cli: Cli) -> Result<(), MainError> {
    match cli.command {
        Command::Crd { kind } => {
            use controller::Kind;
            use vbs_operator::crd::{CbrBackup, VbsBackup};
            let kinds = kind.map_or_else(|| vec![Kind::VbsBackup, Kind::CbrBackup], |k| vec![k]);
            for kind in kinds {
                print!(
                    "{}",
                    match kind {
                        Kind::VbsBackup => vbs_operator::crd_yaml::<VbsBackup>()?,
                        Kind::CbrBackup => vbs_operator::crd_yaml::<CbrBackup>()?,
                    }
                );
            }
            Ok(())
        }
        Command::Run(args) => run_operator(*args).await,
    }
}

async fn run_operator(args: RunArgs) -> Result<(), MainError> {
    vbs_operator::install_crypto_provider();
    telemetry::init(args.log_format, &args.log_level);
    let client = kube::Client::try_default().await?;
    let metrics = Arc::new(Metrics::default());
    let watched = Arc::new(Watched::default());
    let cloud = VbsClient::new(ClientOptions {
        timeout: args.cloud_timeout,
        max_body_bytes: args.max_response_bytes,
        limits: CallLimits {
            global: usize::from(args.concurrency.max(1)),
            per_host: usize::from(args.concurrency_per_host.max(1)),
            breaker_threshold: args.breaker_failures.max(1),
            breaker_open: args.breaker_open,
            qps: args.cloud_qps.max(0.01),
            burst: args.cloud_burst.max(1),
            ..CallLimits::default()
        },
        ..ClientOptions::default()
    })?
    .with_observer(metrics.clone());

    // One stop signal for the HTTP server and the controllers: SIGTERM / Ctrl-C, or the end of the
    // controllers.
    let (stop_tx, stop_rx) = watch::channel(false);
    let shutdown = {
        let mut rx = stop_rx.clone();
        async move {
            let _ = rx.wait_for(|stop| *stop).await;
        }
        .boxed()
        .shared()
    };
    tokio::spawn({
        let stop_tx = stop_tx.clone();
        async move {
            telemetry::shutdown_signal().await;
            info!("shutting down");
            let _ = stop_tx.send(true);
        }
    });

    let listener = tokio::net::TcpListener::bind(args.listen_addr)
        .await
        .map_err(|source| MainError::Listen {
            addr: args.listen_addr,
            source,
        })?;
    let bound = listener.local_addr().unwrap_or(args.listen_addr);
    info!(addr = %bound, "serving /metrics, /healthz and /readyz");
    let server = axum::serve(
        listener,
        vbs_operator::http::router(metrics.clone(), watched.clone()),
    )
    .with_graceful_shutdown(shutdown.clone());
    let server = tokio::spawn(async move {
        if let Err(e) = server.await {
            error!(error = %e, "HTTP server failed");
        }
    });

    let settings = controller::Settings {
        namespaces: args.namespaces,
        kube_concurrency: usize::from(args.kube_concurrency.max(1)),
        max_reconciles: args.max_reconciles.max(1),
        poll: PollPolicy {
            fast: args.fast_poll_interval,
            settled: args.poll_interval,
            initial_backoff: args.initial_backoff,
            max_backoff: args.max_backoff,
            ..PollPolicy::default()
        },
        instance: std::env::var("POD_NAME").ok(),
        selector: args.selector.filter(|s| !s.trim().is_empty()),
        refresh: args.refresh,
        kinds: dedup(args.kinds),
        batch: BatchOptions {
            page_size: args.list_page_size,
            coalesce_window: args.batch_window,
        },
    };
    let scope = if settings.namespaces.is_empty() {
        "<all>".to_string()
    } else {
        settings.namespaces.join(",")
    };
    info!(namespaces = scope, "starting vbs-operator");

    let leadership = if args.leader_election {
        let lease = LeaseSettings {
            namespace: args.leader_election_namespace,
            name: args.leader_election_lease_name,
            identity: leader::default_identity(),
            duration_secs: args.leader_election_lease_duration.as_secs().max(3),
            grace_secs: (args.leader_election_lease_duration.as_secs() / 3).max(1),
        };
        let mut leadership = Leadership::start(client.clone(), &lease).await?;
        info!(lease = %lease.name, namespace = %lease.namespace, identity = %lease.identity, "waiting for the leader lease");
        // A standby replica is healthy and ready; it just does not reconcile.
        watched.set_ready(true);
        tokio::select! {
            acquired = leadership.acquired() => if !acquired { return Err(MainError::LeadershipLost) },
            _ = shutdown.clone() => {
                server.await.ok();
                leadership.release(LEASE_RELEASE_TIMEOUT).await;
                return Ok(());
            }
        }
        info!("acquired the leader lease");
        Some(leadership)
    } else {
        None
    };
    // The controllers stop on SIGTERM (gracefully) or when the lease is lost (at once: another
    // replica may already be active).
    let controllers = controller::run(client, Arc::new(cloud), metrics, watched, settings, shutdown);
    let lost = leadership.as_ref().map(Leadership::lost);
    let result = match lost {
        Some(lost) => tokio::select! {
            _ = controllers => Ok(()),
            _ = lost => {
                error!("lost the leader lease");
                Err(MainError::LeadershipLost)
            }
        },
        None => {
            controllers.await;
            Ok(())
        }
    };
    let _ = stop_tx.send(true);
    server.await.ok();
    if let Some(leadership) = leadership {
        leadership.release(LEASE_RELEASE_TIMEOUT).await;
    }
    result?;
    info!("stopped");
    Ok(())
}

/// `kinds` without repeats, in their first order.
fn dedup(kinds: Vec<controller::Kind>) -> Vec<controller::Kind> {
    let mut out = Vec::new();
    for kind in kinds {
        if !out.contains(&kind) {
            out.push(kind);
        }
    }
    out
}
