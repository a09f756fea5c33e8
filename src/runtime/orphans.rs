//! Orphaned jobs (invariant 7): active SageMaker jobs this controller created whose resource no
//! longer exists — deleted after its finalizer was removed by hand, gone with its CRD or a
//! force-deleted namespace, retained and then recreated (a new UID).
//!
//! Every `--orphan-sweep-interval` the sweep lists the InProgress and Stopping jobs of each region
//! in use, skips the jobs a resource refers to, and reads the tags of the others only (once per
//! job and process). A job is an orphan when its ownership tags name a UID no resource has and a
//! namespace this controller watches. Each orphan is reported once per process — a warning log
//! line and a Warning Event `OrphanedJob` on its Namespace — and the gauge `smpc_orphaned_jobs`
//! holds the count of the last sweep. With `--stop-orphans` the sweep also stops them. The sweep
//! covers each (account, region) in use: the controller's own account in the default region and
//! in the regions of the resources, and each account a resource's job was created in through
//! ACK's CARM roles (reached through the role the ConfigMaps map to it now; an account no role
//! reaches any more is not swept, docs/multi-account.md).
//!
//! The AWS I/O sits behind [`OrphanAws`], the Event behind [`Announce`], and the resources come
//! in as plain [`Resource`] values, so the sweep runs in-process against fakes (tests below).

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use futures::future::BoxFuture;
use futures::FutureExt;
use k8s_openapi::api::core::v1::{Namespace, ObjectReference};
use kube::runtime::events::{Event, EventType, Reporter};
use kube::runtime::reflector::Store;
use kube::{Api, Client, Resource as _};
use tokio_util::sync::CancellationToken;

use crate::accounts::{Directory, ScopeKey};
use crate::api::ProcessingJob;
use crate::aws::{AwsClients, AwsError, Scope};
use crate::job::{JobState, JobStatus, TAG_NAME, TAG_NAMESPACE, TAG_UID};
use crate::reconcile::publisher::EventWriter;
use crate::reconcile::{Guarded, Settings, ACK_ADOPTION_POLICY_ANNOTATION, FIELD_MANAGER};
use crate::telemetry::metrics::Metrics;

/// Reason of the Event that reports an orphan.
pub const ORPHANED_JOB: &str = "OrphanedJob";

/// The AWS calls of a sweep, in one account and region per call.
pub trait OrphanAws: Send + Sync {
    /// The InProgress and Stopping processing jobs of the scope.
    fn list_active<'a>(&'a self, scope: &'a Scope) -> BoxFuture<'a, Result<Vec<JobState>, AwsError>>;
    /// The job's tags as (key, value) pairs.
    fn tags<'a>(&'a self, scope: &'a Scope, arn: &'a str) -> BoxFuture<'a, Result<Vec<(String, String)>, AwsError>>;
    /// StopProcessingJob.
    fn stop<'a>(&'a self, scope: &'a Scope, name: &'a str) -> BoxFuture<'a, Result<(), AwsError>>;
}

impl OrphanAws for AwsClients {
    fn list_active<'a>(&'a self, scope: &'a Scope) -> BoxFuture<'a, Result<Vec<JobState>, AwsError>> {
        async move {
            self.sign_in(scope).await?;
            self.sagemaker(scope).list_active().await
        }
        .boxed()
    }

    fn tags<'a>(&'a self, scope: &'a Scope, arn: &'a str) -> BoxFuture<'a, Result<Vec<(String, String)>, AwsError>> {
        async move { self.sagemaker(scope).tags(arn).await }.boxed()
    }

    fn stop<'a>(&'a self, scope: &'a Scope, name: &'a str) -> BoxFuture<'a, Result<(), AwsError>> {
        async move { self.sagemaker(scope).stop(name).await }.boxed()
    }
}

/// Tells the cluster of an orphan.
pub trait Announce: Send + Sync {
    /// `false` when that failed: the orphan is announced again at the next sweep.
    fn announce<'a>(&'a self, orphan: &'a Orphan) -> BoxFuture<'a, bool>;
}

/// What the sweep needs of one resource in the controller's cache.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Resource {
    pub uid: Option<String>,
    pub namespace: Option<String>,
    /// The account its job was created in (`status.account`), when not the controller's own.
    pub account: Option<String>,
    /// The region of its job: `status.region`, else the region it would be created in.
    pub region: Option<String>,
    /// The names its job goes by: `status.processingJobName`, and `spec.processingJobName` (a
    /// resource adopting a job names it there before its status does).
    pub job_names: Vec<String>,
}

impl Resource {
    /// The resource as the sweep sees it. A malformed object still counts by its UID: its job
    /// is not an orphan.
    pub fn of(obj: &Guarded, default_region: Option<&str>) -> Resource {
        match &obj.0 {
            Ok(job) => Resource::of_job(job, default_region),
            Err(invalid) => Resource {
                uid: invalid.metadata.uid.clone(),
                ..Resource::default()
            },
        }
    }

    fn of_job(job: &ProcessingJob, default_region: Option<&str>) -> Resource {
        let status = job.status.as_ref();
        let mut job_names: Vec<String> = status.and_then(|s| s.processing_job_name.clone()).into_iter().collect();
        job_names.extend(job.spec.processing_job_name.clone());
        Resource {
            uid: job.metadata.uid.clone(),
            namespace: job.metadata.namespace.clone(),
            account: status.and_then(|s| s.account.clone()),
            region: status
                .and_then(|s| s.region.clone())
                .or_else(|| job.region(default_region)),
            job_names,
        }
    }
}

/// The resources of the controller's cache, now.
pub fn resources(store: &Store<Guarded>, default_region: Option<&str>) -> Vec<Resource> {
    store
        .state()
        .iter()
        .map(|obj| Resource::of(obj, default_region))
        .collect()
}

/// What became of `--stop-orphans` for one orphan.
#[derive(Debug, Clone, PartialEq)]
pub enum StopOutcome {
    /// `--stop-orphans` is off.
    NotAsked,
    /// StopProcessingJob succeeded.
    Stopped,
    /// The job was already Stopping.
    AlreadyStopping,
    /// StopProcessingJob failed (retried at the next sweep).
    Failed(String),
}

/// A job of this controller whose resource no longer exists.
#[derive(Debug, Clone, PartialEq)]
pub struct Orphan {
    /// The account its job runs in, when not the controller's own.
    pub account: Option<String>,
    pub region: String,
    pub job: String,
    pub arn: String,
    pub status: JobStatus,
    /// The resource it was created for, from its ownership tags.
    pub namespace: String,
    pub name: String,
    pub uid: String,
    pub stop: StopOutcome,
}

/// The orphans of one account and region.
#[derive(Default)]
struct RegionState {
    /// Tags read in earlier sweeps, by ARN; only jobs still listed as active are kept.
    tags: HashMap<String, Vec<(String, String)>>,
    /// Orphans found by the region's last successful sweep.
    found: usize,
}

/// The sweep and what it remembers between runs.
pub struct Sweeper {
    /// The namespace the controller watches, or all when `None`.
    scope: Option<String>,
    default_region: Option<String>,
    stop_orphans: bool,
    /// ARNs of the orphans announced by this process.
    announced: HashSet<String>,
    regions: BTreeMap<ScopeKey, RegionState>,
    /// How the accounts of cross-account jobs are reached; without it only the controller's own
    /// account is swept.
    accounts: Option<Arc<Directory>>,
}

impl Sweeper {
    pub fn new(scope: Option<String>, default_region: Option<String>, stop_orphans: bool) -> Self {
        Self {
            scope,
            default_region,
            stop_orphans,
            announced: HashSet::new(),
            regions: BTreeMap::new(),
            accounts: None,
        }
    }

    /// Sweeps the accounts of cross-account jobs too, reached as `accounts` maps them.
    pub fn with_accounts(mut self, accounts: Arc<Directory>) -> Self {
        self.accounts = Some(accounts);
        self
    }

    /// Where a resource's job is to be looked for: its account and region, reached now.
    fn scope_of(&self, r: &Resource) -> Option<Scope> {
        let region = r.region.as_deref()?;
        match r.account.as_deref() {
            None => Some(Scope::own(region)),
            Some(account) => {
                let directory = self.accounts.as_ref()?;
                let namespace = r.namespace.as_deref().unwrap_or_default();
                match directory.pinned(namespace, Some(account), region) {
                    Ok(scope) => Some(scope),
                    Err(e) => {
                        tracing::debug!(account, region, error = e.0, "orphan sweep: account not reached");
                        None
                    }
                }
            }
        }
    }

    /// One sweep of every account and region in use: the default region and those of the
    /// resources, in the controller's own account and in those the resources' jobs were created
    /// in. `resources` reads the controller's cache; it is read again after each List, so that a
    /// job listed was created after its resource reached the cache. Returns the number of
    /// orphans, counting a scope whose List failed with its last known count.
    pub async fn sweep<A, F>(&mut self, aws: &A, resources: F, announce: &dyn Announce) -> usize
    where
        A: OrphanAws + ?Sized,
        F: Fn() -> Vec<Resource>,
    {
        let scopes: BTreeMap<ScopeKey, Scope> = resources()
            .iter()
            .filter_map(|r| self.scope_of(r))
            .chain(self.default_region.as_deref().map(Scope::own))
            .map(|scope| (scope.key(), scope))
            .collect();
        self.regions.retain(|k, _| scopes.contains_key(k));
        for (key, scope) in &scopes {
            match self.sweep_region(aws, scope, &resources, announce).await {
                Ok(found) => self.regions.entry(key.clone()).or_default().found = found,
                Err(e) => tracing::warn!(
                    scope = %key,
                    error = %e,
                    "listing active processing jobs for the orphan sweep failed; retrying at the next sweep"
                ),
            }
        }
        self.regions.values().map(|r| r.found).sum()
    }

    async fn sweep_region<A, F>(
        &mut self,
        aws: &A,
        scope: &Scope,
        resources: &F,
        announce: &dyn Announce,
    ) -> Result<usize, AwsError>
    where
        A: OrphanAws + ?Sized,
        F: Fn() -> Vec<Resource>,
    {
        let region = scope.region.as_str();
        let account = scope.account().map(str::to_string);
        let active = aws.list_active(scope).await?;
        let resources = resources();
        let uids: HashSet<&str> = resources.iter().filter_map(|r| r.uid.as_deref()).collect();
        let referenced: HashSet<&str> = resources
            .iter()
            .filter(|r| r.region.as_deref() == Some(region) && r.account == account)
            .flat_map(|r| r.job_names.iter().map(String::as_str))
            .collect();
        let state = self.regions.entry(scope.key()).or_default();
        let listed: HashSet<&str> = active.iter().filter_map(|j| j.arn.as_deref()).collect();
        state.tags.retain(|arn, _| listed.contains(arn.as_str()));

        let mut orphans = Vec::new();
        for job in &active {
            let Some(arn) = job.arn.as_deref() else { continue };
            // A live resource's job: no ListTags.
            if referenced.contains(job.name.as_str()) {
                continue;
            }
            if !state.tags.contains_key(arn) {
                match aws.tags(scope, arn).await {
                    Ok(tags) => {
                        state.tags.insert(arn.to_string(), tags);
                    }
                    Err(e) => {
                        tracing::warn!(region, job = job.name, error = %e, "cannot read the tags of a processing job for the orphan sweep; retrying at the next sweep");
                        continue;
                    }
                }
            }
            let tags = &state.tags[arn];
            let tag = |key: &str| tags.iter().find(|(k, _)| k == key).map(|(_, v)| v.clone());
            let (Some(uid), Some(namespace)) = (tag(TAG_UID), tag(TAG_NAMESPACE)) else {
                continue; // not created by this controller
            };
            if crate::job::is_retained(tags) {
                continue; // left running on purpose (deletionPolicy Retain)
            }
            let watched = self.scope.as_deref().is_none_or(|s| s == namespace);
            if !watched || uids.contains(uid.as_str()) {
                continue;
            }
            orphans.push(Orphan {
                account: account.clone(),
                region: region.to_string(),
                job: job.name.clone(),
                arn: arn.to_string(),
                status: job.status,
                namespace,
                name: tag(TAG_NAME).unwrap_or_default(),
                uid,
                stop: StopOutcome::NotAsked,
            });
        }

        let found = orphans.len();
        for mut orphan in orphans {
            if self.stop_orphans {
                orphan.stop = match orphan.status {
                    JobStatus::InProgress => match aws.stop(scope, &orphan.job).await {
                        Ok(()) => StopOutcome::Stopped,
                        Err(e) => StopOutcome::Failed(e.to_string()),
                    },
                    _ => StopOutcome::AlreadyStopping,
                };
                match &orphan.stop {
                    StopOutcome::Stopped => {
                        tracing::info!(
                            region,
                            job = orphan.job,
                            arn = orphan.arn,
                            "stopped an orphaned processing job"
                        )
                    }
                    StopOutcome::Failed(error) => {
                        tracing::warn!(
                            region,
                            job = orphan.job,
                            arn = orphan.arn,
                            error,
                            "cannot stop an orphaned processing job; retrying at the next sweep"
                        )
                    }
                    _ => {}
                }
            }
            if self.announced.contains(&orphan.arn) {
                continue;
            }
            tracing::warn!(
                region,
                job = orphan.job,
                arn = orphan.arn,
                status = %orphan.status,
                namespace = orphan.namespace,
                name = orphan.name,
                uid = orphan.uid,
                stopped = matches!(orphan.stop, StopOutcome::Stopped),
                "orphaned processing job: created for a ProcessingJob that no longer exists"
            );
            if announce.announce(&orphan).await {
                self.announced.insert(orphan.arn.clone());
            }
        }
        Ok(found)
    }
}

/// An Event note (at most 1024 bytes): the job, whose it was, and what to do.
pub fn note(orphan: &Orphan) -> String {
    let Orphan {
        account,
        region,
        job,
        arn,
        status,
        namespace,
        name,
        uid,
        stop,
    } = orphan;
    let in_account = account
        .as_deref()
        .map(|a| format!(" with the credentials of account {a} (the role ack-role-account-map maps to it)"))
        .unwrap_or_default();
    let of_account = account.as_deref().map(|a| format!(", account {a}")).unwrap_or_default();
    let what = format!(
        "SageMaker processing job {job} ({arn}, region {region}{of_account}, {status}) was created for ProcessingJob {namespace}/{name} (UID {uid}), which no longer exists."
    );
    let todo = match stop {
        StopOutcome::Stopped => "The controller stopped it (--stop-orphans).".to_string(),
        StopOutcome::AlreadyStopping => "It is stopping.".to_string(),
        StopOutcome::Failed(error) => format!("Stopping it failed, retried at the next sweep: {error}"),
        StopOutcome::NotAsked => format!(
            "To keep it, adopt it: a new ProcessingJob in {namespace} annotated {ACK_ADOPTION_POLICY_ANNOTATION}=adopt with spec.processingJobName {job} in region {region}. To end it: aws sagemaker stop-processing-job --region {region} --processing-job-name {job}{in_account}, or run the controller with --stop-orphans."
        ),
    };
    truncate(format!("{what} {todo}"), 1024)
}

/// Cuts `s` to at most `max` bytes, on a character boundary.
fn truncate(mut s: String, max: usize) -> String {
    if s.len() > max {
        let mut at = max - '…'.len_utf8();
        while !s.is_char_boundary(at) {
            at -= 1;
        }
        s.truncate(at);
        s.push('…');
    }
    s
}

/// Publishes an orphan's Event regarding its Namespace, in that namespace.
pub struct EventAnnouncer {
    client: Client,
    reporter: Reporter,
}

impl EventAnnouncer {
    pub fn new(client: Client, instance: Option<String>) -> Self {
        Self {
            client,
            reporter: Reporter {
                controller: FIELD_MANAGER.into(),
                instance,
            },
        }
    }

    /// The orphan's Namespace; the Event lives in it. A namespace that is gone or terminating
    /// takes no new Event: it is then regarded as a cluster-scoped object, whose Events live in
    /// `default`.
    async fn regarding(&self, namespace: &str) -> ObjectReference {
        let found = Api::<Namespace>::all(self.client.clone()).get_opt(namespace).await;
        let (lives_in, uid) = match found {
            Ok(Some(ns)) if ns.metadata.deletion_timestamp.is_none() => (Some(namespace.to_string()), ns.metadata.uid),
            Ok(_) => (None, None),
            Err(e) => {
                tracing::debug!(namespace, error = %e, "cannot read the orphan's namespace");
                (Some(namespace.to_string()), None)
            }
        };
        ObjectReference {
            api_version: Some(Namespace::api_version(&()).into_owned()),
            kind: Some(Namespace::kind(&()).into_owned()),
            name: Some(namespace.to_string()),
            namespace: lives_in,
            uid,
            ..ObjectReference::default()
        }
    }
}

impl Announce for EventAnnouncer {
    fn announce<'a>(&'a self, orphan: &'a Orphan) -> BoxFuture<'a, bool> {
        async move {
            let regarding = self.regarding(&orphan.namespace).await;
            let former = ObjectReference {
                api_version: Some(ProcessingJob::api_version(&()).into_owned()),
                kind: Some(ProcessingJob::kind(&()).into_owned()),
                name: Some(orphan.name.clone()),
                namespace: Some(orphan.namespace.clone()),
                uid: Some(orphan.uid.clone()),
                ..ObjectReference::default()
            };
            let event = Event {
                type_: EventType::Warning,
                reason: ORPHANED_JOB.into(),
                note: Some(note(orphan)),
                action: "Sweep".into(),
                secondary: Some(former),
            };
            // A new Event each time, never folded into a series (which keeps the first note):
            // each orphan has its own.
            let writer = EventWriter::new(self.client.clone(), self.reporter.clone());
            match writer.create(&event, &regarding).await {
                Ok(_) => true,
                Err(e) => {
                    tracing::warn!(namespace = orphan.namespace, job = orphan.job, error = %e, "cannot publish the OrphanedJob event; retrying at the next sweep");
                    false
                }
            }
        }
        .boxed()
    }
}

/// Sweeps every `settings.orphan_sweep_interval` until `shutdown`; the first sweep comes one
/// interval after the start, never in a restart's first moments.
pub async fn run(
    store: Store<Guarded>,
    aws: Arc<AwsClients>,
    accounts: Arc<Directory>,
    client: Client,
    settings: Settings,
    metrics: Arc<Metrics>,
    shutdown: CancellationToken,
) {
    let interval = settings.orphan_sweep_interval;
    let announcer = EventAnnouncer::new(client, settings.instance.clone());
    let mut sweeper = Sweeper::new(
        settings.namespace.clone(),
        settings.default_region.clone(),
        settings.stop_orphans,
    )
    .with_accounts(accounts);
    let mut ticker = tokio::time::interval_at(tokio::time::Instant::now() + interval, interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = ticker.tick() => {}
        }
        // An unsynced cache would make every job look orphaned.
        match tokio::time::timeout(Duration::from_secs(1), store.wait_until_ready()).await {
            Ok(Ok(())) => {}
            _ => {
                tracing::debug!("orphan sweep skipped: the cache is not synced");
                continue;
            }
        }
        let default_region = settings.default_region.as_deref();
        let sweep = sweeper.sweep(aws.as_ref(), || resources(&store, default_region), &announcer);
        tokio::select! {
            _ = shutdown.cancelled() => return,
            found = sweep => {
                metrics.orphaned_jobs.set(found as i64);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use super::*;
    use crate::aws::ErrorClass;
    use std::collections::BTreeSet;

    const EAST: &str = "us-east-1";
    const WEST: &str = "us-west-2";
    const NS: &str = "team-a";

    fn arn(region: &str, job: &str) -> String {
        format!("arn:aws:sagemaker:{region}:123456789012:processing-job/{job}")
    }

    type Tags = Vec<(String, String)>;

    fn ours(namespace: &str, name: &str, uid: &str) -> Tags {
        vec![
            (TAG_NAMESPACE.into(), namespace.into()),
            (TAG_NAME.into(), name.into()),
            (TAG_UID.into(), uid.into()),
        ]
    }

    #[derive(Default)]
    struct Account {
        /// region → jobs with their tags
        jobs: BTreeMap<String, Vec<(JobState, Tags)>>,
        /// Regions whose List fails.
        broken: BTreeSet<String>,
        /// ARNs whose ListTags fails.
        untaggable: BTreeSet<String>,
        lists: Vec<String>,
        tag_reads: Vec<String>,
        stops: Vec<(String, String)>,
    }

    /// SageMaker as the sweep sees it, counting calls.
    #[derive(Default)]
    struct FakeSageMaker(Mutex<Account>);

    impl FakeSageMaker {
        fn account(&self) -> std::sync::MutexGuard<'_, Account> {
            self.0.lock().unwrap()
        }

        fn job(&self, region: &str, name: &str, status: JobStatus, tags: Tags) -> &Self {
            let state = JobState {
                name: name.into(),
                arn: Some(arn(region, name)),
                status,
                ..JobState::default()
            };
            self.account()
                .jobs
                .entry(region.into())
                .or_default()
                .push((state, tags));
            self
        }

        fn error(operation: &'static str) -> AwsError {
            AwsError {
                service: "sagemaker",
                operation,
                class: ErrorClass::Transient,
                code: Some("InternalFailure".into()),
                message: "boom".into(),
            }
        }
    }

    /// Where the fake keeps a scope's jobs: the region for the controller's own account,
    /// `account/region` for another.
    fn place(scope: &Scope) -> String {
        match scope.account() {
            Some(account) => format!("{account}/{}", scope.region),
            None => scope.region.clone(),
        }
    }

    impl OrphanAws for FakeSageMaker {
        fn list_active<'a>(&'a self, scope: &'a Scope) -> BoxFuture<'a, Result<Vec<JobState>, AwsError>> {
            let region = &place(scope);
            let mut a = self.account();
            a.lists.push(region.into());
            let result = if a.broken.contains(region) {
                Err(Self::error("ListProcessingJobs"))
            } else {
                Ok(a.jobs
                    .get(region)
                    .map(|jobs| {
                        jobs.iter()
                            .filter(|(j, _)| !j.status.is_terminal())
                            .map(|(j, _)| j.clone())
                            .collect()
                    })
                    .unwrap_or_default())
            };
            async move { result }.boxed()
        }

        fn tags<'a>(
            &'a self,
            scope: &'a Scope,
            arn: &'a str,
        ) -> BoxFuture<'a, Result<Vec<(String, String)>, AwsError>> {
            let region = &place(scope);
            let mut a = self.account();
            a.tag_reads.push(arn.into());
            let result = if a.untaggable.contains(arn) {
                Err(Self::error("ListTags"))
            } else {
                Ok(a.jobs
                    .get(region)
                    .and_then(|jobs| jobs.iter().find(|(j, _)| j.arn.as_deref() == Some(arn)))
                    .map(|(_, tags)| tags.clone())
                    .unwrap_or_default())
            };
            async move { result }.boxed()
        }

        fn stop<'a>(&'a self, scope: &'a Scope, name: &'a str) -> BoxFuture<'a, Result<(), AwsError>> {
            let region = &place(scope);
            let mut a = self.account();
            a.stops.push((region.into(), name.into()));
            if let Some((job, _)) = a
                .jobs
                .get_mut(region)
                .and_then(|jobs| jobs.iter_mut().find(|(j, _)| j.name == name))
            {
                job.status = JobStatus::Stopping;
            }
            async { Ok(()) }.boxed()
        }
    }

    /// The Events, as the orphans they were about; fails while `refuse` is set.
    #[derive(Default)]
    struct Announced {
        orphans: Mutex<Vec<Orphan>>,
        refuse: std::sync::atomic::AtomicBool,
    }

    impl Announced {
        fn jobs(&self) -> Vec<String> {
            self.orphans.lock().unwrap().iter().map(|o| o.job.clone()).collect()
        }
    }

    impl Announce for Announced {
        fn announce<'a>(&'a self, orphan: &'a Orphan) -> BoxFuture<'a, bool> {
            let ok = !self.refuse.load(std::sync::atomic::Ordering::SeqCst);
            if ok {
                self.orphans.lock().unwrap().push(orphan.clone());
            }
            async move { ok }.boxed()
        }
    }

    fn live(region: &str, job: &str, uid: &str) -> Resource {
        Resource {
            uid: Some(uid.into()),
            region: Some(region.into()),
            job_names: vec![job.into()],
            ..Resource::default()
        }
    }

    fn sweeper(scope: Option<&str>, stop: bool) -> Sweeper {
        Sweeper::new(scope.map(str::to_string), Some(EAST.into()), stop)
    }

    #[tokio::test]
    async fn a_tagged_job_without_its_resource_is_reported_once_across_sweeps() {
        let aws = FakeSageMaker::default();
        aws.job(EAST, "lost", JobStatus::InProgress, ours(NS, "churn", "uid-gone"));
        let events = Announced::default();
        let mut s = sweeper(None, false);

        assert_eq!(s.sweep(&aws, Vec::new, &events).await, 1);
        assert_eq!(
            s.sweep(&aws, Vec::new, &events).await,
            1,
            "still an orphan, still counted"
        );
        let announced = events.orphans.lock().unwrap().clone();
        assert_eq!(
            announced,
            [Orphan {
                account: None,
                region: EAST.into(),
                job: "lost".into(),
                arn: arn(EAST, "lost"),
                status: JobStatus::InProgress,
                namespace: NS.into(),
                name: "churn".into(),
                uid: "uid-gone".into(),
                stop: StopOutcome::NotAsked,
            }],
            "one Event for two sweeps"
        );
        let a = aws.account();
        assert!(a.stops.is_empty(), "never stopped without --stop-orphans");
        assert_eq!(a.tag_reads, [arn(EAST, "lost")], "its tags are read once per process");
    }

    #[tokio::test]
    async fn an_announcement_that_failed_is_made_at_the_next_sweep() {
        let aws = FakeSageMaker::default();
        aws.job(EAST, "lost", JobStatus::InProgress, ours(NS, "churn", "uid-gone"));
        let events = Announced::default();
        events.refuse.store(true, std::sync::atomic::Ordering::SeqCst);
        let mut s = sweeper(None, false);
        assert_eq!(s.sweep(&aws, Vec::new, &events).await, 1);
        assert!(events.jobs().is_empty());
        events.refuse.store(false, std::sync::atomic::Ordering::SeqCst);
        s.sweep(&aws, Vec::new, &events).await;
        s.sweep(&aws, Vec::new, &events).await;
        assert_eq!(events.jobs(), ["lost"]);
    }

    #[tokio::test]
    async fn a_live_resources_job_is_skipped_without_reading_its_tags() {
        let aws = FakeSageMaker::default();
        // Adopted jobs keep the tags of the resource that created them: a job a resource
        // refers to is never an orphan, whatever its tags say.
        aws.job(EAST, "adopted", JobStatus::InProgress, ours(NS, "old", "uid-old"))
            .job(EAST, "named", JobStatus::InProgress, ours(NS, "old2", "uid-old2"));
        let adopting = Resource {
            uid: Some("uid-new2".into()),
            region: Some(EAST.into()),
            job_names: vec!["named".into()],
            ..Resource::default()
        };
        let resources = || vec![live(EAST, "adopted", "uid-new"), adopting.clone()];
        let events = Announced::default();
        let mut s = sweeper(None, true);
        assert_eq!(s.sweep(&aws, resources, &events).await, 0);
        let a = aws.account();
        assert!(a.tag_reads.is_empty(), "no ListTags: {:?}", a.tag_reads);
        assert!(a.stops.is_empty());
        assert!(events.jobs().is_empty());
    }

    #[tokio::test]
    async fn a_job_whose_uid_has_a_resource_is_not_an_orphan() {
        // The cache may show the resource before its status names the job.
        let aws = FakeSageMaker::default();
        aws.job(EAST, "fresh", JobStatus::InProgress, ours(NS, "churn", "uid-live"));
        let resources = || {
            vec![Resource {
                uid: Some("uid-live".into()),
                region: None,
                job_names: vec![],
                ..Resource::default()
            }]
        };
        let events = Announced::default();
        assert_eq!(sweeper(None, true).sweep(&aws, resources, &events).await, 0);
        assert!(aws.account().stops.is_empty());
        assert!(events.jobs().is_empty());
    }

    #[tokio::test]
    async fn a_retained_job_is_never_an_orphan() {
        let aws = FakeSageMaker::default();
        let mut tags = ours(NS, "kept", "gone-uid");
        tags.push((crate::job::TAG_RETAINED.into(), "true".into()));
        aws.job(EAST, "kept", JobStatus::InProgress, tags);
        // A job without room for the retained tag carries the mark in its UID tag's value.
        let mut full = ours(NS, "kept-full", "gone-uid-2");
        for (k, v) in full.iter_mut() {
            if k == TAG_UID {
                *v = format!("{}{v}", crate::job::RETAINED_UID_PREFIX);
            }
        }
        aws.job(EAST, "kept-full", JobStatus::InProgress, full);
        let events = Announced::default();
        let mut s = sweeper(None, true);
        assert_eq!(s.sweep(&aws, Vec::new, &events).await, 0);
        assert!(events.jobs().is_empty());
        assert!(aws.account().stops.is_empty(), "a retained job is never stopped");
    }

    #[tokio::test]
    async fn an_untagged_job_is_never_an_orphan() {
        let aws = FakeSageMaker::default();
        aws.job(EAST, "foreign", JobStatus::InProgress, vec![])
            .job(
                EAST,
                "other-tool",
                JobStatus::InProgress,
                vec![("team".into(), "x".into()), (TAG_NAME.into(), "n".into())],
            )
            .job(
                EAST,
                "no-namespace",
                JobStatus::InProgress,
                vec![(TAG_UID.into(), "u".into())],
            );
        let events = Announced::default();
        let mut s = sweeper(None, true);
        for _ in 0..2 {
            assert_eq!(s.sweep(&aws, Vec::new, &events).await, 0);
        }
        assert!(events.jobs().is_empty());
        let a = aws.account();
        assert!(a.stops.is_empty(), "a foreign job is never stopped: {:?}", a.stops);
        assert_eq!(
            a.tag_reads.len(),
            3,
            "each foreign job's tags are read once: {:?}",
            a.tag_reads
        );
    }

    #[tokio::test]
    async fn a_namespace_scoped_controller_ignores_other_namespaces_jobs() {
        let aws = FakeSageMaker::default();
        aws.job(EAST, "theirs", JobStatus::InProgress, ours("team-b", "x", "uid-b"))
            .job(EAST, "mine", JobStatus::InProgress, ours(NS, "y", "uid-a"));
        let events = Announced::default();
        assert_eq!(sweeper(Some(NS), true).sweep(&aws, Vec::new, &events).await, 1);
        assert_eq!(events.jobs(), ["mine"]);
        assert_eq!(aws.account().stops, [(EAST.to_string(), "mine".to_string())]);

        // Watching every namespace, both are orphans.
        let aws = FakeSageMaker::default();
        aws.job(EAST, "theirs", JobStatus::InProgress, ours("team-b", "x", "uid-b"))
            .job(EAST, "mine", JobStatus::InProgress, ours(NS, "y", "uid-a"));
        assert_eq!(sweeper(None, false).sweep(&aws, Vec::new, &events).await, 2);
    }

    #[tokio::test]
    async fn stop_orphans_stops_exactly_the_orphans() {
        let aws = FakeSageMaker::default();
        aws.job(EAST, "orphan-1", JobStatus::InProgress, ours(NS, "a", "uid-1"))
            .job(EAST, "orphan-2", JobStatus::InProgress, ours(NS, "b", "uid-2"))
            .job(EAST, "orphan-stopping", JobStatus::Stopping, ours(NS, "c", "uid-3"))
            .job(EAST, "live", JobStatus::InProgress, ours(NS, "d", "uid-live"))
            .job(EAST, "live-by-uid", JobStatus::InProgress, ours(NS, "e", "uid-live-2"))
            .job(EAST, "foreign", JobStatus::InProgress, vec![])
            .job(EAST, "elsewhere", JobStatus::InProgress, ours("team-b", "f", "uid-4"));
        let resources = || {
            vec![
                live(EAST, "live", "uid-live"),
                Resource {
                    uid: Some("uid-live-2".into()),
                    ..Resource::default()
                },
            ]
        };
        let events = Announced::default();
        let mut s = sweeper(Some(NS), true);
        assert_eq!(s.sweep(&aws, resources, &events).await, 3);
        let stops: Vec<String> = aws.account().stops.iter().map(|(_, j)| j.clone()).collect();
        assert_eq!(
            stops,
            ["orphan-1", "orphan-2"],
            "a Stopping orphan is not stopped again"
        );
        let outcomes: Vec<(String, StopOutcome)> = events
            .orphans
            .lock()
            .unwrap()
            .iter()
            .map(|o| (o.job.clone(), o.stop.clone()))
            .collect();
        assert_eq!(
            outcomes,
            [
                ("orphan-1".to_string(), StopOutcome::Stopped),
                ("orphan-2".to_string(), StopOutcome::Stopped),
                ("orphan-stopping".to_string(), StopOutcome::AlreadyStopping),
            ]
        );
        // Stopping now: still reported by the gauge, never stopped or announced again.
        assert_eq!(s.sweep(&aws, resources, &events).await, 3);
        assert_eq!(aws.account().stops.len(), 2);
        assert_eq!(events.jobs().len(), 3);
    }

    #[tokio::test]
    async fn an_aws_error_in_one_region_does_not_stop_the_sweep_of_another() {
        let aws = FakeSageMaker::default();
        aws.job(EAST, "east-1", JobStatus::InProgress, ours(NS, "a", "uid-1"))
            .job(WEST, "west-1", JobStatus::InProgress, ours(NS, "b", "uid-2"))
            .job(WEST, "west-2", JobStatus::InProgress, ours(NS, "c", "uid-3"));
        aws.account().broken.insert(EAST.into());
        aws.account().untaggable.insert(arn(WEST, "west-1"));
        // us-west-2 is in use because a resource's job is there.
        let resources = || vec![live(WEST, "elsewhere", "uid-9")];
        let events = Announced::default();
        let mut s = sweeper(None, false);
        assert_eq!(s.sweep(&aws, resources, &events).await, 1);
        assert_eq!(aws.account().lists, [EAST, WEST]);
        assert_eq!(events.jobs(), ["west-2"], "a failed ListTags skips that job only");

        // Both recover: everything is found; then a failed List keeps the region's count.
        aws.account().broken.clear();
        aws.account().untaggable.clear();
        assert_eq!(s.sweep(&aws, resources, &events).await, 3);
        assert_eq!(events.jobs(), ["west-2", "east-1", "west-1"]);
        aws.account().broken.insert(WEST.into());
        assert_eq!(s.sweep(&aws, resources, &events).await, 3);
    }

    #[tokio::test]
    async fn a_region_no_longer_in_use_is_forgotten() {
        let aws = FakeSageMaker::default();
        aws.job(WEST, "west-1", JobStatus::InProgress, ours(NS, "b", "uid-2"));
        let events = Announced::default();
        let mut s = sweeper(None, false);
        assert_eq!(s.sweep(&aws, || vec![live(WEST, "x", "uid-x")], &events).await, 1);
        assert_eq!(s.sweep(&aws, Vec::new, &events).await, 0);
        assert_eq!(aws.account().lists, [EAST, WEST, EAST]);
    }

    /// A cross-account job's account is swept through the role the ConfigMaps map to it, and
    /// only once a role reaches it; its orphan is stopped there and its note names the account.
    #[tokio::test]
    async fn the_accounts_of_cross_account_jobs_are_swept_through_their_roles() {
        const B: &str = "222222222222";
        let in_b = format!("{B}/{EAST}");
        let aws = FakeSageMaker::default();
        aws.job(&in_b, "lost-in-b", JobStatus::InProgress, ours(NS, "gone", "uid-gone"));
        aws.job(&in_b, "live-in-b", JobStatus::InProgress, ours(NS, "live", "uid-live"));
        let directory = Arc::new(Directory::new("controller"));
        let resources = || {
            vec![Resource {
                account: Some(B.into()),
                namespace: Some(NS.into()),
                ..live(EAST, "live-in-b", "uid-live")
            }]
        };
        let events = Announced::default();
        let mut s = sweeper(None, true).with_accounts(directory.clone());

        // No role reaches B: only the controller's own account is listed.
        assert_eq!(s.sweep(&aws, resources, &events).await, 0);
        assert_eq!(aws.account().lists, [EAST.to_string()]);

        directory.set_map(
            crate::accounts::ACCOUNT_MAP,
            Some(BTreeMap::from([(B.to_string(), format!("arn:aws:iam::{B}:role/ack"))])),
        );
        assert_eq!(s.sweep(&aws, resources, &events).await, 1);
        assert!(aws.account().lists.contains(&in_b), "{:?}", aws.account().lists);
        assert_eq!(events.jobs(), ["lost-in-b"]);
        let orphan = events.orphans.lock().unwrap()[0].clone();
        assert_eq!(orphan.account.as_deref(), Some(B));
        assert!(note(&orphan).contains(&format!("account {B}")), "{}", note(&orphan));
        assert_eq!(aws.account().stops, [(in_b.clone(), "lost-in-b".to_string())]);
    }

    #[test]
    fn the_note_names_the_job_its_resource_and_what_to_do() {
        let mut orphan = Orphan {
            account: None,
            region: EAST.into(),
            job: "churn-1a2b3c".into(),
            arn: arn(EAST, "churn-1a2b3c"),
            status: JobStatus::InProgress,
            namespace: NS.into(),
            name: "churn".into(),
            uid: "0b7c".into(),
            stop: StopOutcome::NotAsked,
        };
        let text = note(&orphan);
        for part in [
            "churn-1a2b3c",
            &arn(EAST, "churn-1a2b3c"),
            "region us-east-1",
            "team-a/churn (UID 0b7c)",
            "services.k8s.aws/adoption-policy=adopt",
            "spec.processingJobName churn-1a2b3c",
            "aws sagemaker stop-processing-job --region us-east-1 --processing-job-name churn-1a2b3c",
            "--stop-orphans",
        ] {
            assert!(text.contains(part), "{part:?} missing from {text:?}");
        }
        orphan.stop = StopOutcome::Stopped;
        assert!(note(&orphan).contains("The controller stopped it"), "{}", note(&orphan));

        // The longest names still fit an Event note.
        let long = "a".repeat(63);
        orphan.job = long.clone();
        orphan.arn = arn("ap-southeast-2", &long);
        orphan.namespace = long.clone();
        orphan.name = "n".repeat(253);
        orphan.stop = StopOutcome::Failed("é".repeat(600));
        let text = note(&orphan);
        assert!(text.len() <= 1024, "{} bytes", text.len());
        assert!(text.ends_with('…'));
    }

    #[test]
    fn a_resource_counts_by_its_uid_status_and_spec() {
        let job: ProcessingJob = serde_json::from_value(serde_json::json!({
            "apiVersion": "sagemaker.processing.dev/v1alpha1",
            "kind": "ProcessingJob",
            "metadata": {"name": "churn", "namespace": NS, "uid": "u-1"},
            "spec": {
                "processingJobName": "wanted",
                "roleARN": "arn:aws:iam::123456789012:role/job",
                "appSpecification": {"imageURI": "i"},
                "processingResources": {"clusterConfig": {"instanceCount": 1, "instanceType": "ml.m5.xlarge", "volumeSizeInGB": 30}},
            },
            "status": {"processingJobName": "recorded", "region": WEST},
        }))
        .expect("manifest");
        assert_eq!(
            Resource::of_job(&job, Some(EAST)),
            Resource {
                uid: Some("u-1".into()),
                region: Some(WEST.into()),
                job_names: vec!["recorded".into(), "wanted".into()],
                namespace: Some(NS.into()),
                account: None,
            }
        );
        let mut fresh = job.clone();
        fresh.status = None;
        assert_eq!(Resource::of_job(&fresh, Some(EAST)).region.as_deref(), Some(EAST));
    }
}
