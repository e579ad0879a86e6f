//! Refreshing many backups of one project with a few list calls instead of one call each.
//!
//! Backups are grouped by everything that shapes what a call may see (endpoint, project,
//! credentials, API path family): a group's list answers only its own reads, so no tenant ever
//! sees another's backups. A read is served from the group's last list while that list is younger
//! than the read's `max_age`. Otherwise the read waits a short coalescing window, and the reads
//! that gathered meanwhile decide together: when they outnumber the pages a list would take, one
//! list (all its pages, by `next` links or offsets) refreshes the whole group; otherwise each
//! makes its single GET. A backup missing from a list gets a single GET too (it may be gone, or in
//! another project), so its answer is always the API's own. One `Batcher` serves one service.

use std::num::NonZeroUsize;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use lru::LruCache;

use super::client::{VbsClient, group_key};
use super::config::CloudProfile;
use super::error::CloudError;
use super::service::BackupService;

/// How reads are batched.
#[derive(Debug, Clone, PartialEq)]
pub struct BatchOptions {
    /// Backups per list page (the API caps it at 1000).
    pub page_size: u32,
    /// How long a read that finds no fresh list waits for others to join it.
    pub coalesce_window: Duration,
}

impl Default for BatchOptions {
    fn default() -> Self {
        BatchOptions {
            page_size: 1000,
            coalesce_window: Duration::from_millis(200),
        }
    }
}

/// Groups whose last list is kept; the least recently used beyond this are dropped.
const MAX_GROUPS: usize = 256;

/// A backup as a read found it, and when the list it came from was fetched (`None`: a single GET).
#[derive(Debug, Clone)]
pub struct Fetched<B> {
    pub backup: B,
    pub listed_at: Option<Instant>,
}

pub struct Batcher<S: BackupService> {
    client: Arc<VbsClient>,
    options: BatchOptions,
    groups: Mutex<Groups<S::Backup>>,
}

/// The groups by key, least recently used dropped first.
type Groups<B> = LruCache<[u8; 32], Arc<Group<B>>>;

struct Group<B> {
    last: tokio::sync::Mutex<LastList<B>>,
    /// Reads waiting in the coalescing window or for the lock.
    waiting: AtomicUsize,
}

impl<B> Default for Group<B> {
    fn default() -> Self {
        Group {
            last: tokio::sync::Mutex::new(LastList {
                listing: None,
                failure: None,
            }),
            waiting: AtomicUsize::new(0),
        }
    }
}

/// The outcome of a group's last list call.
struct LastList<B> {
    listing: Option<Listing<B>>,
    /// The last list that failed, for the reads that were waiting on it: they share its error
    /// rather than each trying the same list again, one after another behind the lock (ten reads
    /// of a project behind a hung endpoint would otherwise wait ten timeouts, making ten calls).
    failure: Option<Failure>,
}

struct Failure {
    at: Instant,
    error: CloudError,
}

struct Listing<B> {
    at: Instant,
    /// Sorted by ID, compared case-insensitively ([`cmp_ids`]). A sorted Vec rather than a map
    /// keyed by lower-case ID: a group's list holds every backup of its project (thousands), and a
    /// map's spare buckets (up to half its table, each the size of a whole backup), its key copies
    /// and its growth while being built cost 9 MiB more peak RSS than this Vec with 10 groups of
    /// 1,000 backups (the fleet benchmark at N = 10,000).
    backups: Vec<B>,
}

impl<B> Listing<B> {
    fn new<S: BackupService<Backup = B>>(mut backups: Vec<B>) -> Self {
        backups.sort_unstable_by(|a, b| cmp_ids(S::id(a), S::id(b)));
        backups.shrink_to_fit();
        Listing {
            at: Instant::now(),
            backups,
        }
    }

    fn fresh(&self, max_age: Duration, now: Instant) -> bool {
        now.saturating_duration_since(self.at) <= max_age
    }

    fn get<S: BackupService<Backup = B>>(&self, id: &str) -> Option<&B> {
        self.backups
            .binary_search_by(|b| cmp_ids(S::id(b), id))
            .ok()
            .and_then(|i| self.backups.get(i))
    }
}

/// Orders backup IDs as their lower-case forms would be ordered (IDs are matched in any case).
fn cmp_ids(a: &str, b: &str) -> std::cmp::Ordering {
    a.bytes()
        .map(|c| c.to_ascii_lowercase())
        .cmp(b.bytes().map(|c| c.to_ascii_lowercase()))
}

/// What the group's last list says about one backup.
enum Hit<B> {
    Found(Box<Fetched<B>>),
    /// The list is fresh but does not hold the backup.
    Missing,
}

impl<S: BackupService> Batcher<S> {
    pub fn new(client: Arc<VbsClient>, options: BatchOptions) -> Self {
        Batcher {
            client,
            options,
            groups: Mutex::new(LruCache::new(
                NonZeroUsize::new(MAX_GROUPS).unwrap_or(NonZeroUsize::MIN),
            )),
        }
    }

    fn group(&self, cloud: &CloudProfile) -> Arc<Group<S::Backup>> {
        let mut groups = self.groups.lock().unwrap_or_else(PoisonError::into_inner);
        groups.get_or_insert(group_key::<S>(cloud), Arc::default).clone()
    }

    /// The backup `id` as of at most `max_age` ago: from the group's last list, from a list made
    /// now for the reads that gathered, or from a single GET.
    pub async fn read(
        &self,
        cloud: &CloudProfile,
        id: &str,
        max_age: Duration,
    ) -> Result<Fetched<S::Backup>, CloudError> {
        let group = self.group(cloud);
        let hit = lookup::<S>(&group.last.lock().await.listing, id, max_age);
        if let Some(hit) = hit {
            return self.serve(cloud, id, hit).await;
        }
        let joined = Instant::now();
        group.waiting.fetch_add(1, Ordering::AcqRel);
        tokio::time::sleep(self.options.coalesce_window).await;
        let mut last = group.last.lock().await;
        // Another read may have listed while this one waited: its answer serves this one too,
        // and so does its failure.
        if let Some(failure) = last.failure.as_ref().filter(|f| f.at >= joined) {
            group.waiting.fetch_sub(1, Ordering::AcqRel);
            return Err(failure.error.clone());
        }
        if let Some(hit) = lookup::<S>(&last.listing, id, max_age) {
            group.waiting.fetch_sub(1, Ordering::AcqRel);
            drop(last);
            return self.serve(cloud, id, hit).await;
        }
        let waiting = group.waiting.load(Ordering::Acquire);
        let page = self.options.page_size.max(1) as usize;
        let pages = last
            .listing
            .as_ref()
            .map_or(1, |l| l.backups.len().div_ceil(page).max(1));
        if waiting <= pages {
            group.waiting.fetch_sub(1, Ordering::AcqRel);
            drop(last);
            return self.single(cloud, id).await;
        }
        // The old list goes before the new one is read: the lock keeps every read of the group
        // waiting meanwhile anyway, and holding both (thousands of backups each, in every group
        // refreshing at once) was the fleet benchmark's peak of memory in steady state.
        last.listing = None;
        last.failure = None;
        let result = self.client.list::<S>(cloud, self.options.page_size).await;
        group.waiting.fetch_sub(1, Ordering::AcqRel);
        let backups = match result {
            Ok(backups) => backups,
            Err(error) => {
                last.failure = Some(Failure {
                    at: Instant::now(),
                    error: error.clone(),
                });
                return Err(error);
            }
        };
        last.listing = Some(Listing::new::<S>(backups));
        let hit = lookup::<S>(&last.listing, id, Duration::MAX).unwrap_or(Hit::Missing);
        drop(last);
        self.serve(cloud, id, hit).await
    }

    async fn serve(
        &self,
        cloud: &CloudProfile,
        id: &str,
        hit: Hit<S::Backup>,
    ) -> Result<Fetched<S::Backup>, CloudError> {
        match hit {
            Hit::Found(fetched) => Ok(*fetched),
            Hit::Missing => self.single(cloud, id).await,
        }
    }

    async fn single(&self, cloud: &CloudProfile, id: &str) -> Result<Fetched<S::Backup>, CloudError> {
        let backup = self.client.show::<S>(cloud, id).await?;
        Ok(Fetched {
            backup,
            listed_at: None,
        })
    }
}

fn lookup<S: BackupService>(
    listing: &Option<Listing<S::Backup>>,
    id: &str,
    max_age: Duration,
) -> Option<Hit<S::Backup>> {
    let listing = listing.as_ref().filter(|l| l.fresh(max_age, Instant::now()))?;
    Some(match listing.get::<S>(id) {
        Some(backup) => Hit::Found(Box::new(Fetched {
            backup: backup.clone(),
            listed_at: Some(listing.at),
        })),
        None => Hit::Missing,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cloud::{Backup, Vbs};

    fn backup(id: &str) -> Backup {
        Backup {
            id: id.into(),
            ..Backup::default()
        }
    }

    /// The in-process simulator with one user, `n` available backups and `faults`.
    async fn simulator(n: u32, faults: Vec<crate::sim::Fault>) -> (Arc<crate::sim::Sim>, CloudProfile) {
        use crate::sim::{Seed, Sim};
        crate::install_crypto_provider();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let url = format!("http://{}", listener.local_addr().expect("addr"));
        let sim = Arc::new(Sim::new(Seed::one_user("p1"), url.clone()));
        {
            let mut world = sim.world();
            world.faults = faults;
            let project = world.backups.entry("p1".into()).or_default();
            for i in 0..n {
                let id = test_id(i);
                let mut fields = serde_json::Map::new();
                fields.insert("id".into(), id.clone().into());
                fields.insert("status".into(), "available".into());
                project.insert(id, crate::sim::with_defaults("p1", fields));
            }
        }
        tokio::spawn(crate::sim::serve(listener, sim.clone()));
        let clouds_yaml = format!(
            "clouds:\n  c:\n    auth:\n      auth_url: {url}/v3\n      username: u\n      password: pw\n      user_domain_name: D\n      project_id: p1\n    region_name: eu-de\n"
        );
        let cloud = crate::cloud::config::load_cloud(&clouds_yaml, None).expect("clouds.yaml");
        (sim, cloud)
    }

    fn test_id(i: u32) -> String {
        format!("{i:08x}-0000-4000-8000-000000000000")
    }

    fn calls(sim: &crate::sim::Sim, kind: &str) -> u64 {
        sim.world().stats.requests.get(kind).copied().unwrap_or(0)
    }

    /// `n` reads at once, each of its own backup, as `n` reconciles falling due together.
    async fn read_together(
        batcher: &Arc<Batcher<Vbs>>,
        cloud: &CloudProfile,
        n: u32,
    ) -> Vec<Result<Fetched<Backup>, CloudError>> {
        let reads = (0..n).map(|i| {
            let (batcher, cloud) = (batcher.clone(), cloud.clone());
            tokio::spawn(async move { batcher.read(&cloud, &test_id(i), Duration::from_secs(30)).await })
        });
        futures::future::join_all(reads)
            .await
            .into_iter()
            .map(|joined| joined.expect("read task"))
            .collect()
    }

    fn batcher() -> Arc<Batcher<Vbs>> {
        let client = VbsClient::new(crate::cloud::ClientOptions::default()).expect("client");
        Arc::new(Batcher::new(Arc::new(client), BatchOptions::default()))
    }

    #[tokio::test]
    async fn reads_that_gathered_share_one_list() {
        let (sim, cloud) = simulator(10, Vec::new()).await;
        let batcher = batcher();
        let results = read_together(&batcher, &cloud, 10).await;
        for (i, result) in (0..).zip(&results) {
            let fetched = result.as_ref().expect("read");
            assert_eq!(fetched.backup.id, test_id(i));
            assert!(fetched.listed_at.is_some(), "read {i} was a single GET");
        }
        assert_eq!((calls(&sim, "list"), calls(&sim, "show")), (1, 0));
    }

    #[tokio::test]
    async fn reads_that_gathered_share_a_failed_list() {
        let unavailable = crate::sim::Fault {
            target: crate::sim::FaultTarget::List,
            status: Some(503),
            ..Default::default()
        };
        let (sim, cloud) = simulator(10, vec![unavailable]).await;
        let batcher = batcher();
        let results = read_together(&batcher, &cloud, 10).await;
        for result in &results {
            let error = result.as_ref().expect_err("the list failed");
            assert!(matches!(error, CloudError::Api { status: 503, .. }), "{error}");
        }
        // One call for all ten: a failed list is not tried again by each read that waited on it.
        assert_eq!((calls(&sim, "list"), calls(&sim, "show")), (1, 0));
        // A read that comes after the failure tries again.
        sim.world().faults.clear();
        let results = read_together(&batcher, &cloud, 10).await;
        assert!(results.iter().all(Result::is_ok));
        assert_eq!((calls(&sim, "list"), calls(&sim, "show")), (2, 0));
    }

    #[test]
    fn a_listing_finds_ids_in_any_case() {
        let ids = [
            "b0000000-0000-4000-8000-000000000002",
            "A0000000-0000-4000-8000-000000000001",
            "c0000000-0000-4000-8000-00000000000F",
        ];
        let listing = Listing::new::<Vbs>(ids.iter().map(|id| backup(id)).collect());
        for id in ids {
            let found = listing
                .get::<Vbs>(&id.to_ascii_lowercase())
                .map(|b| b.id.as_str());
            assert_eq!(found, Some(id));
            let found = listing
                .get::<Vbs>(&id.to_ascii_uppercase())
                .map(|b| b.id.as_str());
            assert_eq!(found, Some(id));
        }
        assert!(
            listing
                .get::<Vbs>("d0000000-0000-4000-8000-000000000000")
                .is_none()
        );
        assert!(listing.get::<Vbs>("").is_none());
    }
}
