use std::sync::Arc;
use std::time::Duration;

use clap::{Parser, Subcommand};
use vbs_operator::cloud::{ClientOptions, VbsClient};
use vbs_operator::controller::{self, PollPolicy};
use vbs_operator::telemetry::{self, LogFormat};

/// Kubernetes operator that mirrors cloud volume backups (OpenStack Cinder / Huawei Cloud VBS)
/// into VbsBackup resources.
#[derive(Parser)]
#[command(version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the controller (kube config from KUBECONFIG, ~/.kube/config or the in-cluster service account).
    Run(RunArgs),
    /// Print the VbsBackup CustomResourceDefinition as YAML.
    Crd,
}

#[derive(clap::Args)]
struct RunArgs {
    /// Watch only this namespace (default: all namespaces).
    #[arg(long, env = "VBS_WATCH_NAMESPACE")]
    namespace: Option<String>,
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
    /// Most reconciles (and so cloud API calls) in flight at once.
    #[arg(long, env = "VBS_CONCURRENCY", default_value_t = 16)]
    concurrency: u16,
    /// Timeout of every call to the cloud API.
    #[arg(long, env = "VBS_CLOUD_TIMEOUT", default_value = "30s", value_parser = humantime::parse_duration)]
    cloud_timeout: Duration,
    /// Log format.
    #[arg(long, env = "VBS_LOG_FORMAT", value_enum, default_value = "text")]
    log_format: LogFormat,
    /// Log level or filter (RUST_LOG syntax); RUST_LOG wins when set.
    #[arg(long, env = "VBS_LOG_LEVEL", default_value = "info")]
    log_level: String,
}

#[derive(Debug, thiserror::Error)]
enum MainError {
    #[error("cannot print the CRD: {0}")]
    Crd(#[from] serde_saphyr::SerializeError),
    #[error("cannot build the cloud HTTP client: {0}")]
    Http(#[from] reqwest::Error),
    #[error("cannot connect to Kubernetes (set KUBECONFIG or run in a cluster): {0}")]
    Kube(#[from] kube::Error),
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    match run(Cli::parse()).await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("vbs-operator: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}

async fn run(cli: Cli) -> Result<(), MainError> {
    match cli.command {
        Command::Crd => {
            print!("{}", vbs_operator::crd_yaml()?);
            Ok(())
        }
        Command::Run(args) => {
            vbs_operator::install_crypto_provider();
            telemetry::init(args.log_format, &args.log_level);
            let client = kube::Client::try_default().await?;
            let cloud = VbsClient::new(ClientOptions {
                timeout: args.cloud_timeout,
                ..ClientOptions::default()
            })?;
            let settings = controller::Settings {
                namespace: args.namespace,
                concurrency: args.concurrency,
                poll: PollPolicy {
                    fast: args.fast_poll_interval,
                    settled: args.poll_interval,
                    initial_backoff: args.initial_backoff,
                    max_backoff: args.max_backoff,
                    ..PollPolicy::default()
                },
                instance: std::env::var("POD_NAME").ok(),
            };
            tracing::info!(
                namespace = settings.namespace.as_deref().unwrap_or("<all>"),
                "starting vbs-operator"
            );
            controller::run(client, Arc::new(cloud), settings).await;
            tracing::info!("stopped");
            Ok(())
        }
    }
}
