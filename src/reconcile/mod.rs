//! The reconciler. For each ProcessingJob, one straight pipeline:
//!
//! observe (the resource's own status → [`Progress`]) → resolve (namespace, EC2 snapshot,
//! execution role) → validate (tenant guard + network and role checks, pure) → act (create /
//! adopt / mirror, and a failure first seen diagnosed; returns an outcome) → report (status by
//! server-side apply, Events).
//!
//! Deletion runs `cleanup` instead of act. The AWS I/O sits behind [`JobService`],
//! [`NetworkReader`], [`RoleReader`] and [`JobLogs`], so every branch runs in-process against
//! fakes (see `tests.rs`).

mod act;
mod cleanup;
pub mod diagnosis;
mod error;
pub mod guard;
pub mod naming;
mod observe;
pub mod pace;
mod ports;
pub mod publisher;
pub mod queue;
mod report;
mod resolve;
pub mod status;
pub mod tracker;
mod validate;

#[cfg(test)]
mod tests;

use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::Namespace;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::core::error_boundary::InvalidObject;
use kube::core::DeserializeGuard;
use kube::core::PartialObjectMeta;
use kube::runtime::controller::Action;
use kube::runtime::events::Reporter;
use kube::runtime::finalizer::{finalizer, Event as FinalizerEvent};
use kube::runtime::reflector::{ObjectRef, Store};
use kube::{Api, Client, ResourceExt};

pub use act::ACK_ADOPTION_POLICY_ANNOTATION;
pub use error::{Backoff, Error};
pub use observe::{pinned, JobRef, Progress};
pub use ports::{Answer, JobLogs, JobService, NetworkReader, NewJob, RoleReader};

use crate::accounts::Directory;
use crate::api::{ProcessingJob, ACK_REGION_ANNOTATION};
use crate::telemetry::metrics::{Metrics, ReasonLabels, ResultLabels};
use crate::telemetry::stages::timed;
use act::{Next, Outcome};
use cleanup::Cleanup;
use status::Phase;
use tracker::Tracker;
use validate::Refusal;

/// The watched type: a malformed object is an error on that object, not a dead stream.
pub type Guarded = DeserializeGuard<ProcessingJob>;

/// Finalizer guarding the external SageMaker job.
pub const FINALIZER: &str = "sagemaker.processing.dev/job";
/// Field manager of the controller's status writes.
pub const FIELD_MANAGER: &str = "sagemaker-processing-controller";

/// Controller settings.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Watch one namespace, or all when `None`.
    pub namespace: Option<String>,
    /// Reconciles running at once.
    pub concurrency: u16,
    /// How often active jobs are polled.
    pub poll_interval: Duration,
    /// Region for jobs that name none.
    pub default_region: Option<String>,
    /// How often a job refused by its network or its namespace is checked again.
    pub revalidate_interval: Duration,
    /// How often an active job is described even when the List saw no change.
    pub resync_interval: Duration,
    /// How often a job is retried while AWS refuses the credentials.
    pub credentials_retry_interval: Duration,
    /// Identity in Events.
    pub instance: Option<String>,
    /// How often SageMaker is searched for active jobs of this controller whose resource is
    /// gone (orphans).
    pub orphan_sweep_interval: Duration,
    /// Stop the orphans found, not only report them.
    pub stop_orphans: bool,
    /// At most this many active jobs (created, not ended) per account and region; more wait
    /// `Queued`.
    pub max_active_jobs_per_region: Option<u32>,
    /// The namespace of ACK's CARM ConfigMaps (`ack-role-account-map`, `ack-role-team-map`).
    pub carm_namespace: String,
}

/// Everything a reconcile needs.
pub struct Context {
    pub client: Client,
    pub jobs: Arc<dyn JobService>,
    pub network: Arc<dyn NetworkReader>,
    pub roles: Arc<dyn RoleReader>,
    pub logs: Arc<dyn JobLogs>,
    pub tracker: Arc<Tracker>,
    pub settings: Settings,
    pub metrics: Arc<Metrics>,
    pub backoff: Backoff,
    /// The CARM ConfigMaps and namespace annotations, as the watches last saw them.
    pub accounts: Arc<Directory>,
    /// Kubernetes Events, written in the background.
    pub events: publisher::EventPublisher,
    /// The namespaces' metadata as the namespace watch last saw it (empty without the watch):
    /// read instead of a GET per reconcile.
    namespaces: Store<PartialObjectMeta<Namespace>>,
    /// Who may be created now (SageMaker's quota, the caps on active jobs).
    queue: std::sync::Mutex<queue::Queue>,
    /// When the next create may be sent (SageMaker's limit on CreateProcessingJob calls).
    pacer: std::sync::Mutex<pace::Pacer>,
}

/// The AWS ports of a [`Context`].
pub struct Ports {
    pub jobs: Arc<dyn JobService>,
    pub network: Arc<dyn NetworkReader>,
    pub roles: Arc<dyn RoleReader>,
    pub logs: Arc<dyn JobLogs>,
}

impl Ports {
    /// Every port served by the AWS adapters.
    pub fn aws(aws: Arc<crate::aws::AwsClients>) -> Self {
        Self {
            jobs: aws.clone(),
            network: aws.clone(),
            roles: aws.clone(),
            logs: aws,
        }
    }
}

impl Context {
    /// A context; its Event publisher starts on the current tokio runtime.
    pub fn new(client: Client, ports: Ports, tracker: Arc<Tracker>, settings: Settings, metrics: Arc<Metrics>) -> Self {
        let reporter = Reporter {
            controller: FIELD_MANAGER.into(),
            instance: settings.instance.clone(),
        };
        Self {
            accounts: Arc::new(Directory::new(settings.carm_namespace.clone())),
            events: publisher::EventPublisher::new(
                publisher::EventWriter::new(client.clone(), reporter),
                metrics.kube_events_dropped.clone(),
            ),
            namespaces: kube::runtime::reflector::store().0,
            client,
            jobs: ports.jobs,
            network: ports.network,
            roles: ports.roles,
            logs: ports.logs,
            tracker,
            settings,
            metrics,
            backoff: Backoff::default(),
            queue: Default::default(),
            pacer: Default::default(),
        }
    }

    /// Reads namespaces from `store` (filled by the namespace watch), falling back to a GET for
    /// a namespace it has not seen.
    pub fn with_namespaces(mut self, store: Store<PartialObjectMeta<Namespace>>) -> Self {
        self.namespaces = store;
        self
    }
}

/// The key of a resource in the controller's queue.
pub fn object_ref(job: &ProcessingJob) -> ObjectRef<Guarded> {
    let r = ObjectRef::<Guarded>::new(&job.name_any());
    match job.namespace() {
        Some(ns) => r.within(&ns),
        None => r,
    }
}

/// One reconcile, measured.
#[tracing::instrument(skip_all, fields(object = %obj.name_any(), namespace = obj.namespace().unwrap_or_default()))]
pub async fn reconcile(obj: Arc<Guarded>, ctx: Arc<Context>) -> Result<Action, Error> {
    let start = std::time::Instant::now();
    let result = timed("reconcile", reconcile_object(&obj, &ctx)).await;
    ctx.metrics.reconcile_duration.observe(start.elapsed().as_secs_f64());
    let outcome = match &result {
        Ok(_) => {
            ctx.backoff.reset(&ObjectRef::from_obj(obj.as_ref()));
            "ok"
        }
        Err(e) if e.is_wait() => "waiting",
        Err(e) => {
            ctx.metrics
                .errors
                .get_or_create(&ReasonLabels { reason: e.reason() })
                .inc();
            "error"
        }
    };
    ctx.metrics
        .reconciles
        .get_or_create(&ResultLabels { result: outcome })
        .inc();
    result
}

/// The error policy: back off per object.
pub fn error_policy(obj: Arc<Guarded>, error: &Error, ctx: Arc<Context>) -> Action {
    ctx.backoff
        .next(ObjectRef::from_obj(obj.as_ref()), error, ctx.settings.poll_interval)
}

async fn reconcile_object(obj: &Guarded, ctx: &Context) -> Result<Action, Error> {
    let job = match &obj.0 {
        Ok(job) => job,
        Err(invalid) if being_deleted_with_finalizer(&invalid.metadata) => {
            return delete_malformed(ctx, invalid).await;
        }
        Err(invalid) => {
            report::invalid_object(ctx, invalid, None).await;
            return Ok(Action::await_change());
        }
    };
    // A new resource: the work at once, and the finalizer with the write-ahead when this
    // reconcile creates its job (one write for both), else before its status is written.
    if job.metadata.deletion_timestamp.is_none() && !has_finalizer(&job.metadata) {
        return apply(job, ctx, false).await;
    }
    let api: Api<ProcessingJob> = Api::namespaced(ctx.client.clone(), &job.namespace().unwrap_or_default());
    finalizer(&api, FINALIZER, Arc::new(job.clone()), |event| async {
        match event {
            FinalizerEvent::Apply(job) => apply(&job, ctx, true).await,
            FinalizerEvent::Cleanup(job) => delete(&job, ctx).await,
        }
    })
    .await
    .map_err(|e| Error::Finalizer(Box::new(e)))
}

/// Whether the object carries the controller's finalizer.
pub fn has_finalizer(meta: &ObjectMeta) -> bool {
    meta.finalizers.iter().flatten().any(|f| f == FINALIZER)
}

/// observe → resolve → validate → act → report. `finalized`: the resource carries the
/// finalizer; if not, the write-ahead adds it, or it is added before the status is written.
async fn apply(job: &ProcessingJob, ctx: &Context, finalized: bool) -> Result<Action, Error> {
    let outcome = match observe::progress(job, ctx.settings.default_region.as_deref()) {
        // At rest: no AWS call, no write, no timer.
        Progress::Refused => return Ok(Action::await_change()),
        Progress::Ended { at } => {
            ctx.tracker.untrack(&at.key(), &at.name);
            act::acknowledge(job, &at, Next::Requeue(Action::await_change()))
        }
        Progress::Active { at, last, adopted } => act::mirror(ctx, job, at, *last, adopted).await,
        Progress::Creating(at) => match timed("look_before_create", act::look_before_creating(ctx, job, &at)).await? {
            Some(outcome) => outcome,
            None => check_and_create(ctx, job, Some(at), finalized).await?,
        },
        Progress::Queued => match still_queued(ctx, job).await? {
            Some(outcome) => outcome,
            None => check_and_create(ctx, job, None, finalized).await?,
        },
        Progress::New | Progress::Blocked => check_and_create(ctx, job, None, finalized).await?,
    };
    if !finalized && !outcome.finalizer_added {
        timed("finalizer", report::add_finalizer(ctx, job)).await?;
    }
    finish(ctx, job, outcome).await
}

/// resolve → validate → create. `pinned`: the name, region and account recorded by an earlier
/// write-ahead, kept. `finalized`: the resource carries the finalizer (else the write-ahead adds
/// it).
async fn check_and_create(
    ctx: &Context,
    job: &ProcessingJob,
    pinned: Option<JobRef>,
    finalized: bool,
) -> Result<Outcome, Error> {
    let recorded = pinned.is_some();
    let namespace = job.namespace().unwrap_or_default();
    let annotations = timed("namespace", resolve::namespace_annotations(ctx, job)).await?;
    let at = match pinned {
        Some(at) => at,
        None => match job.region(ctx.settings.default_region.as_deref()) {
            Some(region) => {
                // The account of the namespace as the ConfigMaps map it now; recorded (pinned)
                // by the write-ahead.
                let account = match ctx.accounts.resolve(&namespace, &annotations, &region) {
                    Ok(scope) => scope.account().map(str::to_string),
                    Err(e) => return Ok(unreachable(ctx, job, None, false, *act::not_mapped(ctx, e))),
                };
                JobRef {
                    name: observe::job_name(job),
                    region,
                    account,
                }
            }
            None => return Ok(region_missing(ctx, job)),
        },
    };
    if let Err(refusal) = validate::tenant(&namespace, &annotations, &job.spec) {
        return Ok(refused(ctx, job, &at, refusal));
    }
    // Every AWS call of the job goes to its account: nothing is read or created before the
    // account is reached.
    let scope = match act::reach(ctx, job, &at).await {
        Ok(scope) => scope,
        Err(why) => return Ok(unreachable(ctx, job, Some(&at), recorded, *why)),
    };
    let caps = match act::caps(ctx, &annotations) {
        Ok(caps) => caps,
        Err(message) => return Ok(cap_unreadable(ctx, job, &at, message)),
    };
    let fresh = resolve::revalidation_request(job).is_some();
    let facts = match timed("network", resolve::network(ctx, &scope, &job.spec, fresh)).await {
        Ok(facts) => facts,
        Err(e) => return Ok(act::not_created(ctx, job, &at, None, e, "reading the network from EC2")),
    };
    match validate::network(&job.spec, &at.name, facts) {
        Ok(validated) => act::create(ctx, job, at, &scope, validated, caps, !finalized).await,
        Err(refusal) => Ok(refused(ctx, job, &at, refusal)),
    }
}

/// Refused by the namespace or the network: checked again on the revalidation timer (and on a
/// change of the resource), never because of the controller's own status write.
fn refused(ctx: &Context, job: &ProcessingJob, at: &JobRef, refusal: Refusal) -> Outcome {
    act::leave_queue(ctx, job);
    let (phase, network) = refusal.into_report();
    Outcome::report(
        job,
        Some(at),
        network,
        phase,
        Next::Requeue(Action::requeue(ctx.settings.revalidate_interval)),
    )
}

/// A queued job: the queue decides before anything is read from AWS; `None` when its turn has
/// come (then it is checked and created).
async fn still_queued(ctx: &Context, job: &ProcessingJob) -> Result<Option<Outcome>, Error> {
    let Some(region) = job.region(ctx.settings.default_region.as_deref()) else {
        return Ok(None);
    };
    let annotations = resolve::namespace_annotations(ctx, job).await?;
    let Ok(caps) = act::caps(ctx, &annotations) else {
        return Ok(None);
    };
    let Ok(scope) = ctx
        .accounts
        .resolve(&job.namespace().unwrap_or_default(), &annotations, &region)
    else {
        return Ok(None);
    };
    Ok(act::wait_in_line(ctx, job, &scope.key(), caps, None))
}

/// The namespace's cap cannot be read: its jobs wait (a cap that is not a number must not let
/// them all through), and are looked at again on the revalidation timer.
fn cap_unreadable(ctx: &Context, job: &ProcessingJob, at: &JobRef, message: String) -> Outcome {
    Outcome::report(
        job,
        Some(at),
        None,
        Phase::Waiting {
            reason: status::ACTIVE_JOB_LIMIT.into(),
            message,
        },
        Next::Requeue(Action::requeue(ctx.settings.revalidate_interval)),
    )
}

/// The job's account cannot be reached (no mapping, or the role cannot be assumed): nothing was
/// read or created; it waits, said in status and an Event. `recorded`: a write-ahead was
/// recorded, so the job may exist, and keeps its name, region and account.
fn unreachable(
    ctx: &Context,
    job: &ProcessingJob,
    at: Option<&JobRef>,
    recorded: bool,
    why: act::Unreachable,
) -> Outcome {
    let act::Unreachable(problem, next) = why;
    act::leave_queue(ctx, job);
    let phase = if recorded {
        Phase::Creating { problem: Some(problem) }
    } else {
        Phase::Waiting {
            reason: problem.reason,
            message: problem.message,
        }
    };
    Outcome::report(job, at, None, phase, next)
}

fn region_missing(ctx: &Context, job: &ProcessingJob) -> Outcome {
    let message = format!(
        "no AWS region: annotate the resource {ACK_REGION_ANNOTATION}, or start the controller with --region / AWS_REGION (spec.region cannot be changed: set it in a new resource)"
    );
    Outcome::report(
        job,
        None,
        None,
        Phase::Waiting {
            reason: "RegionMissing".into(),
            message,
        },
        Next::Requeue(Action::requeue(ctx.settings.revalidate_interval)),
    )
}

/// Deletion: cleanup → report.
async fn delete(job: &ProcessingJob, ctx: &Context) -> Result<Action, Error> {
    let progress = observe::progress(job, ctx.settings.default_region.as_deref());
    match cleanup::cleanup(ctx, job, progress).await {
        Cleanup::Release { note } => {
            if let Some((reason, note)) = note {
                report::publish(ctx, job, false, reason, note, "Delete");
            }
            Ok(Action::await_change())
        }
        Cleanup::Wait {
            observation,
            note,
            until,
        } => {
            if let Some((reason, note)) = note {
                report::publish(ctx, job, false, reason, note, "Delete");
            }
            report::report(ctx, job, &observation).await?;
            Err(until)
        }
    }
}

fn being_deleted_with_finalizer(meta: &ObjectMeta) -> bool {
    meta.deletion_timestamp.is_some() && has_finalizer(meta)
}

/// Deletion of an object whose spec cannot be read: the finalizer helper needs a parsed object,
/// so this path reads the status on its own and releases the finalizer when no job runs.
async fn delete_malformed(ctx: &Context, invalid: &InvalidObject) -> Result<Action, Error> {
    let status = report::raw_status(ctx, &invalid.metadata).await?;
    match cleanup::malformed(
        ctx,
        status,
        observe::pinned(&invalid.metadata),
        invalid.metadata.generation,
    )
    .await
    {
        cleanup::Malformed::Release => {
            report::release_finalizer(ctx, &invalid.metadata).await?;
            Ok(Action::await_change())
        }
        cleanup::Malformed::Hold { message } => {
            report::invalid_object(ctx, invalid, Some(&message)).await;
            Ok(Action::requeue(ctx.settings.poll_interval))
        }
    }
}

/// report, then come back as the outcome says.
async fn finish(ctx: &Context, job: &ProcessingJob, outcome: Outcome) -> Result<Action, Error> {
    if let Some(observation) = &outcome.observation {
        timed("report", report::report(ctx, job, observation)).await?;
    }
    match outcome.next {
        Next::Requeue(action) => Ok(action),
        Next::Backoff(e) => Err(e),
    }
}
