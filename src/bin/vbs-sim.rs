//! vbs-sim: a simulator of the VBS / Cinder backup API, for tests and the demo.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use clap::Parser;
use std::io::Write;
use vbs_operator::sim::{Seed, Sim};

/// Simulated VBS (OpenStack Cinder backup) API with Keystone tokens, AK/SK signing and fault injection.
#[derive(Parser)]
#[command(version, about)]
struct Args {
    /// Address to listen on; port 0 picks a free port.
    #[arg(long, default_value = "127.0.0.1:8776")]
    listen: String,
    /// Seed file (YAML, or JSON when named `*.json`): region, token_ttl_secs, users, access_keys,
    /// backups, cbr_backups.
    #[arg(long)]
    seed: Option<PathBuf>,
    /// Base URL to advertise in the catalog and links (default: http(s)://<listen address>).
    #[arg(long)]
    public_url: Option<String>,
    /// Serve HTTPS with this certificate chain (PEM); needs --tls-key.
    #[arg(long, requires = "tls_key")]
    tls_cert: Option<PathBuf>,
    /// Private key (PEM) of --tls-cert.
    #[arg(long, requires = "tls_cert")]
    tls_key: Option<PathBuf>,
}

#[derive(Debug, thiserror::Error)]
enum SimError {
    #[error("cannot read seed file {path}: {source}")]
    ReadSeed { path: PathBuf, source: std::io::Error },
    #[error("seed file {path} is not valid: {source}")]
    ParseSeed {
        path: PathBuf,
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    #[error("cannot listen on {addr}: {source}")]
    Listen { addr: String, source: std::io::Error },
    #[error("server failed: {0}")]
    Serve(#[from] std::io::Error),
    #[error("cannot load the TLS certificate or key: {0}")]
    Tls(String),
}

fn tls_config(cert: &Path, key: &Path) -> Result<Arc<rustls::ServerConfig>, SimError> {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let certs = CertificateDer::pem_file_iter(cert)
        .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
        .map_err(|e| SimError::Tls(format!("{}: {e}", cert.display())))?;
    let key =
        PrivateKeyDer::from_pem_file(key).map_err(|e| SimError::Tls(format!("{}: {e}", key.display())))?;
    let config = rustls::ServerConfig::builder()
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map_err(|e| SimError::Tls(e.to_string()))?;
    Ok(Arc::new(config))
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter("warn")
        .init();
    match run(Args::parse()).await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("vbs-sim: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}

async fn run(args: Args) -> Result<(), SimError> {
    vbs_operator::install_crypto_provider();
    let seed = match &args.seed {
        Some(path) => {
            let text = std::fs::read_to_string(path).map_err(|source| SimError::ReadSeed {
                path: path.clone(),
                source,
            })?;
            // A `.json` seed is read as JSON: the benchmark's seeds hold tens of thousands of
            // backups, more nodes than the YAML parser's default budget allows.
            let parsed = if path.extension().is_some_and(|e| e == "json") {
                serde_json::from_str::<Seed>(&text).map_err(|e| Box::new(e) as Box<_>)
            } else {
                serde_saphyr::from_str::<Seed>(&text).map_err(|e| Box::new(e) as Box<_>)
            };
            parsed.map_err(|source| SimError::ParseSeed {
                path: path.clone(),
                source,
            })?
        }
        None => Seed::default(),
    };
    let listener = tokio::net::TcpListener::bind(&args.listen)
        .await
        .map_err(|source| SimError::Listen {
            addr: args.listen.clone(),
            source,
        })?;
    let addr = listener.local_addr()?;
    let tls = match (&args.tls_cert, &args.tls_key) {
        (Some(cert), Some(key)) => Some(tls_config(cert, key)?),
        _ => None,
    };
    let scheme = if tls.is_some() { "https" } else { "http" };
    let public_url = args.public_url.unwrap_or_else(|| format!("{scheme}://{addr}"));
    // The first stdout line tells scripts and tests where to connect.
    let mut stdout = std::io::stdout().lock();
    writeln!(stdout, "vbs-sim listening on {public_url}")?;
    stdout.flush()?;
    drop(stdout);
    let sim = Arc::new(Sim::new(seed, public_url));
    let served = async {
        match tls {
            Some(tls) => vbs_operator::sim::serve_tls(listener, sim, tls).await,
            None => vbs_operator::sim::serve(listener, sim).await,
        }
    };
    tokio::select! {
        served = served => served?,
        _ = tokio::signal::ctrl_c() => {}
    }
    Ok(())
}
