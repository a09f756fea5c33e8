//! Act: create, adopt, mirror. Each step returns an [`Outcome`] — what to report and when to come
//! back — and writes nothing itself, except the write-ahead before a create.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use kube::runtime::controller::Action;
use kube::runtime::reflector::ObjectRef;
use kube::ResourceExt;

use super::diagnosis;
use super::observe::JobRef;
use super::ports::NewJob;
use super::queue::{Active, Caps, Hold, Lane, Place, Queue, Verdict};
use super::report;
use super::resolve::{self, NetworkFacts};
use super::status::{FailureReport, NetworkOutcome, Observation, Phase, Problem, ACTIVE_JOB_LIMIT, QUOTA_EXCEEDED};
use super::tracker;
use super::validate::{self, Validated};
use super::{object_ref, Context, Error};
use crate::accounts::{Scope, ScopeKey, ACCOUNT_NOT_MAPPED, ASSUME_ROLE_FAILED};
use crate::api::{Diagnosis, ProcessingJob, Tag};
use crate::aws::{AwsError, ErrorClass};
use crate::job::{JobState, JobStatus, TAG_NAME, TAG_NAMESPACE, TAG_UID};
use crate::role;
use crate::telemetry::stages::timed;
use k8s_openapi::jiff::Timestamp;

/// ACK's annotation asking to adopt an existing AWS resource instead of creating one.
pub const ACK_ADOPTION_POLICY_ANNOTATION: &str = "services.k8s.aws/adoption-policy";

/// The namespace annotation capping the namespace's active jobs (created and not ended): jobs
/// over it wait `Queued` (reason `ActiveJobLimit`) in creation order.
pub const MAX_ACTIVE_JOBS_ANNOTATION: &str = "sagemaker.processing.dev/max-active-jobs";

/// Transient AWS errors are retried quietly this many times before the status says so.
const QUIET_RETRIES: u32 = 2;

/// The longest a reconcile waits for its create's send time before it is paced; further, the
/// job comes back at that time instead.
const PACE_HOLD: Duration = Duration::from_secs(2);
/// The same, for the retry of a throttled create (the write-ahead is written by then).
const PACE_RETRY_HOLD: Duration = Duration::from_secs(5);
/// Attempts of one create SageMaker throttles (the SDK's default, which does not retry it).
const CREATE_ATTEMPTS: u32 = 3;

/// What a step decided: what to write to status, and when to come back.
#[derive(Debug)]
pub struct Outcome {
    /// The status to report; `None` leaves the status as it is.
    pub observation: Option<Observation>,
    pub next: Next,
    /// The write-ahead of this reconcile put the finalizer on a resource that had none.
    pub finalizer_added: bool,
}

/// When the resource is looked at again.
#[derive(Debug)]
pub enum Next {
    /// On a change, or after a delay.
    Requeue(Action),
    /// Through the error policy's backoff.
    Backoff(Error),
}

impl Outcome {
    /// Reports `phase` for the job `at` (or none yet).
    pub fn report(
        job: &ProcessingJob,
        at: Option<&JobRef>,
        network: Option<NetworkOutcome>,
        phase: Phase,
        next: Next,
    ) -> Self {
        Outcome {
            observation: Some(observation(job, at, network, phase)),
            next,
            finalizer_added: false,
        }
    }

    /// Nothing to write; come back as `next` says.
    pub fn quiet(next: Next) -> Self {
        Outcome {
            observation: None,
            next,
            finalizer_added: false,
        }
    }
}

/// The status to report for the resource's current generation.
pub fn observation(
    job: &ProcessingJob,
    at: Option<&JobRef>,
    network: Option<NetworkOutcome>,
    phase: Phase,
) -> Observation {
    // The job's name only once a job may exist: a refused or waiting resource has none (and
    // the name of a clash is another job's).
    let may_exist = matches!(phase, Phase::Creating { .. } | Phase::Submitted { .. });
    Observation {
        generation: job.metadata.generation,
        job_name: at.filter(|_| may_exist).map(|a| a.name.clone()),
        region: at.map(|a| a.region.clone()),
        account: at.and_then(|a| a.account.clone()),
        network,
        phase,
        failure: None,
    }
}

/// The tags that tie a job to the resource that created it.
pub fn owner_tags(job: &ProcessingJob) -> Vec<Tag> {
    vec![
        Tag {
            key: TAG_NAMESPACE.into(),
            value: job.namespace().unwrap_or_default(),
        },
        Tag {
            key: TAG_NAME.into(),
            value: job.name_any(),
        },
        Tag {
            key: TAG_UID.into(),
            value: job.metadata.uid.clone().unwrap_or_default(),
        },
    ]
}

/// Whether a job with these tags belongs to the resource: its UID tag, or ACK's explicit
/// adoption annotation.
pub fn owns(job: &ProcessingJob, tags: &[(String, String)]) -> bool {
    let uid = job.metadata.uid.as_deref().unwrap_or_default();
    let tagged = tags.iter().any(|(k, v)| k == TAG_UID && v == uid);
    tagged || adoption_requested(job)
}

fn adoption_requested(job: &ProcessingJob) -> bool {
    job.annotations()
        .get(ACK_ADOPTION_POLICY_ANNOTATION)
        .is_some_and(|v| v.eq_ignore_ascii_case("adopt"))
}

/// An AWS problem as a status problem and a retry: credentials and quota wait on their own
/// timers; anything else backs off, and is written to status only once it persists.
pub fn trouble(ctx: &Context, job: &ProcessingJob, e: AwsError, doing: &str) -> (Option<Problem>, Next) {
    let reason = e.class.reason().to_string();
    if e.code.as_deref() == Some(ASSUME_ROLE_FAILED) {
        // The namespace's account cannot be reached: said at once, retried with backoff.
        return (
            Some(Problem {
                reason: ASSUME_ROLE_FAILED.into(),
                message: format!("{doing}: {}; nothing is done in that account until the role can be assumed (its trust policy must allow the controller's role; retrying with backoff)", e.message),
            }),
            Next::Backoff(Error::Aws(e)),
        );
    }
    match e.class {
        ErrorClass::Credentials => (
            Some(Problem {
                reason,
                message: format!("{doing}: AWS refused the credentials or configuration: {e}"),
            }),
            Next::Requeue(Action::requeue(ctx.settings.credentials_retry_interval)),
        ),
        ErrorClass::LimitExceeded => (
            Some(Problem {
                reason,
                message: format!("{doing}: a SageMaker quota was reached, retrying slowly: {e}"),
            }),
            Next::Requeue(Action::requeue(Duration::from_secs(120))),
        ),
        _ => {
            let persistent = ctx.backoff.failures(&object_ref(job)) >= QUIET_RETRIES;
            let problem = persistent.then(|| Problem {
                reason,
                message: format!("{doing}: {e} (retrying with backoff)"),
            });
            (problem, Next::Backoff(Error::Aws(e)))
        }
    }
}

/// Before creating: a problem becomes a waiting status (nothing exists yet).
pub fn not_created(
    ctx: &Context,
    job: &ProcessingJob,
    at: &JobRef,
    network: Option<NetworkOutcome>,
    e: AwsError,
    doing: &str,
) -> Outcome {
    match trouble(ctx, job, e, doing) {
        (Some(p), next) => Outcome::report(
            job,
            Some(at),
            network,
            Phase::Waiting {
                reason: p.reason,
                message: p.message,
            },
            next,
        ),
        (None, next) => Outcome::quiet(next),
    }
}

/// Creates the validated job: records name, region and account first, with the finalizer
/// when the resource has none yet (`with_finalizer`) — a crash after the create then finds the
/// job instead of creating a second one, and a deletion waits for it —, then
/// CreateProcessingJob. The queue decides first: a job in line or over a cap waits `Queued`
/// without any AWS call.
pub async fn create(
    ctx: &Context,
    job: &ProcessingJob,
    at: JobRef,
    scope: &Scope,
    validated: Validated,
    caps: Caps,
    with_finalizer: bool,
) -> Result<Outcome, Error> {
    if let Some(waiting) = wait_in_line(ctx, job, &at.key(), caps, Some(validated.network().clone())) {
        return Ok(waiting);
    }
    // SageMaker's rate of creates: a send time further than a short wait is not held in a
    // reconcile slot; the job comes back for it, with nothing written.
    let paced = pacer(ctx).reserve(&at.key(), Instant::now(), PACE_HOLD);
    match paced {
        Ok(wait) if wait.is_zero() => {}
        Ok(wait) => timed("pace", tokio::time::sleep(wait)).await,
        Err(wait) => return Ok(Outcome::quiet(Next::Requeue(Action::requeue(wait)))),
    }
    let (place, lane) = ticket(job, &at.key());
    queue(ctx).begin(&place, &lane);
    if let Err(e) = timed("write_ahead", report::write_ahead(ctx, job, &at, with_finalizer)).await {
        leave_queue(ctx, job);
        return Err(e);
    }
    let mut outcome = send_create(ctx, job, at, scope, validated).await?;
    outcome.finalizer_added = with_finalizer;
    Ok(outcome)
}

/// CreateProcessingJob, once the write-ahead is recorded.
async fn send_create(
    ctx: &Context,
    job: &ProcessingJob,
    at: JobRef,
    scope: &Scope,
    validated: Validated,
) -> Result<Outcome, Error> {
    let network = Some(validated.network().clone());
    let tags = owner_tags(job);
    let new = NewJob {
        name: &at.name,
        spec: &job.spec,
        tags: &tags,
    };
    let answer = timed("create", paced_create(ctx, scope, &at.key(), new)).await;
    let (place, lane) = ticket(job, &at.key());
    match &answer {
        // SageMaker's quota: nothing was created; the job waits in line.
        Err(e) if e.class == ErrorClass::LimitExceeded => {
            report::unpin(ctx, job).await;
            let retry = queue(ctx).refused(&place, &lane, &e.message, Instant::now());
            let hold = Hold::Quota {
                message: e.message.clone(),
            };
            return Ok(queued(job, &at.key(), network, hold, retry));
        }
        Ok(_) => {
            let next = queue(ctx).created(&place);
            wake(ctx, next);
        }
        Err(_) => leave_queue(ctx, job),
    }
    match answer {
        Ok(arn) => {
            failpoint("abort-after-create");
            let state = JobState {
                name: at.name.clone(),
                arn: Some(arn),
                status: JobStatus::InProgress,
                ..Default::default()
            };
            // Known as of now: the next change SageMaker records (normally the end) is what the
            // tracker reports; the resync backstop covers clock skew.
            ctx.tracker
                .track(scope, &at.name, object_ref(job), crate::reconcile::tracker::now_epoch());
            // With events consumed, this creation's event is owed: its absence shows a silent flow.
            ctx.tracker.expect_creation(&at.key(), &at.name);
            Ok(Outcome::report(
                job,
                Some(&at),
                network,
                Phase::Submitted {
                    job: Box::new(state),
                    adopted: false,
                    problem: None,
                },
                Next::Requeue(Action::requeue(ctx.settings.resync_interval)),
            ))
        }
        Err(e) if e.code.as_deref() == Some("ResourceInUse") => match ctx.jobs.describe(scope, &at.name).await {
            Ok(state) => adopt_or_refuse(ctx, job, at, scope, state, network).await,
            Err(e) => Ok(creating_problem(ctx, job, &at, network, e)),
        },
        // SageMaker refused the request, or something it names (a feature group, an
        // experiment) does not exist: final for this generation.
        Err(e) if matches!(e.class, ErrorClass::Invalid | ErrorClass::NotFound) => Ok(Outcome::report(
            job,
            Some(&at),
            network,
            Phase::InvalidSpec { message: e.message },
            Next::Requeue(Action::await_change()),
        )),
        // Refused before anything was created: nothing may exist.
        Err(e) if matches!(e.class, ErrorClass::Credentials | ErrorClass::Throttled) => {
            report::unpin(ctx, job).await;
            Ok(not_created(ctx, job, &at, network, e, "creating the job"))
        }
        // Timeouts, 5xx, anything unknown: the job may exist; the next attempt looks first.
        Err(e) => Ok(creating_problem(ctx, job, &at, network, e)),
    }
}

/// CreateProcessingJob (sent once: the SDK does not retry it), retried here when SageMaker throttles
/// it, at the pace the throttling teaches ([`super::pace`]), at most [`CREATE_ATTEMPTS`] times.
async fn paced_create(ctx: &Context, scope: &Scope, key: &ScopeKey, new: NewJob<'_>) -> Result<String, AwsError> {
    let mut attempt = 1;
    loop {
        let sent = Instant::now();
        let answer = ctx.jobs.create(scope, new).await;
        let now = Instant::now();
        let throttled = matches!(&answer, Err(e) if e.class == ErrorClass::Throttled);
        if throttled {
            let mut pacer = pacer(ctx);
            pacer.throttled(key, sent, now);
            tracing::debug!(
                attempt,
                pace = pacer.rate(key),
                "SageMaker throttled a create: creates paced"
            );
        } else if answer.is_ok() {
            pacer(ctx).passed(key, now);
        }
        if !throttled || attempt == CREATE_ATTEMPTS {
            return answer;
        }
        let paced = pacer(ctx).reserve(key, Instant::now(), PACE_RETRY_HOLD);
        match paced {
            Ok(wait) => tokio::time::sleep(wait).await,
            Err(_) => return answer,
        }
        attempt += 1;
    }
}

/// The job may exist but AWS could not say: keep name and region, report why.
fn creating_problem(
    ctx: &Context,
    job: &ProcessingJob,
    at: &JobRef,
    network: Option<NetworkOutcome>,
    e: AwsError,
) -> Outcome {
    match trouble(ctx, job, e, "creating the job") {
        (Some(problem), next) => {
            Outcome::report(job, Some(at), network, Phase::Creating { problem: Some(problem) }, next)
        }
        (None, next) => Outcome::quiet(next),
    }
}

/// After a crash between write-ahead and create (or a create whose answer was lost): the job
/// is adopted when it exists, else `None` and the caller checks and creates.
pub async fn look_before_creating(ctx: &Context, job: &ProcessingJob, at: &JobRef) -> Result<Option<Outcome>, Error> {
    let scope = match reach(ctx, job, at).await {
        Ok(scope) => scope,
        Err(unreachable) => {
            let Unreachable(problem, next) = *unreachable;
            return Ok(Some(Outcome::report(
                job,
                Some(at),
                None,
                Phase::Creating { problem: Some(problem) },
                next,
            )));
        }
    };
    match ctx.jobs.describe(&scope, &at.name).await {
        Ok(state) => Ok(Some(adopt_or_refuse(ctx, job, at.clone(), &scope, state, None).await?)),
        Err(e) if e.class == ErrorClass::NotFound => Ok(None),
        Err(e) => Ok(Some(creating_problem(ctx, job, at, None, e))),
    }
}

/// A job with our name exists: adopt it if it is ours (tags) or adoption was asked for.
async fn adopt_or_refuse(
    ctx: &Context,
    job: &ProcessingJob,
    at: JobRef,
    scope: &Scope,
    state: JobState,
    network: Option<NetworkOutcome>,
) -> Result<Outcome, Error> {
    let tags = match state.arn.as_deref() {
        Some(arn) => match ctx.jobs.tags(scope, arn).await {
            Ok(t) => t,
            Err(e) => return Ok(creating_problem(ctx, job, &at, network, e)),
        },
        None => Vec::new(),
    };
    if !owns(job, &tags) {
        let owner = tags
            .iter()
            .find(|(k, _)| k == TAG_UID)
            .map(|(_, v)| format!("resource UID {v}"))
            .unwrap_or_else(|| "something else".into());
        let message = format!(
            "a SageMaker job named {} already exists and was created by {owner}, not by this resource; choose another spec.processingJobName in a new resource, or annotate the resource {ACK_ADOPTION_POLICY_ANNOTATION}=adopt to adopt that job",
            state.name
        );
        // The name is another job's: never its ARN; `phase: Refused` says no job is ours.
        return Ok(Outcome::report(
            job,
            Some(&at),
            network,
            Phase::NameConflict { message },
            Next::Requeue(Action::await_change()),
        ));
    }
    Ok(observed(ctx, job, at, scope, state, true, network))
}

/// What Describe said, reported and tracked.
fn observed(
    ctx: &Context,
    job: &ProcessingJob,
    at: JobRef,
    scope: &Scope,
    state: JobState,
    adopted: bool,
    network: Option<NetworkOutcome>,
) -> Outcome {
    let next = if state.status.is_terminal() {
        ctx.tracker.untrack(&at.key(), &at.name);
        Action::await_change()
    } else {
        ctx.tracker.track(
            scope,
            &at.name,
            object_ref(job),
            // Without SageMaker's time, the local one (the tracker caps it by SageMaker's clock).
            state.last_modified_epoch.unwrap_or_else(tracker::now_epoch),
        );
        Action::requeue(ctx.settings.resync_interval)
    };
    Outcome::report(
        job,
        Some(&at),
        network,
        Phase::Submitted {
            job: Box::new(state),
            adopted,
            problem: None,
        },
        Next::Requeue(next),
    )
}

/// Mirrors an active job: describes it only when the tracker saw it change (or the resync
/// backstop is due, or this process never saw it), and not even then when a SageMaker event
/// already said what changed.
pub async fn mirror(ctx: &Context, job: &ProcessingJob, at: JobRef, last: JobState, adopted: bool) -> Outcome {
    // Only ever the account the job was created in: a mapping that no longer reaches it makes
    // the job wait, never look elsewhere.
    let scope = match pinned(ctx, job, &at) {
        Ok(scope) => scope,
        Err(unreachable) => {
            let Unreachable(problem, next) = *unreachable;
            return beside(job, at, last, adopted, problem, next);
        }
    };
    let known = last.last_modified_epoch;
    let tracked = ctx.tracker.is_tracked(&at.key(), &at.name);
    if let Some(known) = known {
        ctx.tracker.track(&scope, &at.name, object_ref(job), known);
    }
    let changed = ctx.tracker.take_changed(&at.key(), &at.name);
    if !changed && (known.is_some() || tracked) {
        return acknowledge(job, &at, Next::Requeue(Action::requeue(ctx.settings.resync_interval)));
    }
    // A state SageMaker's event reported needs no Describe, unless the status already knows a
    // newer one (this reconcile started from an older copy of the resource).
    let event = ctx
        .tracker
        .take_event(&at.key(), &at.name)
        .filter(|e| e.last_modified_epoch >= known);
    let answer = match event {
        Some(state) => Ok(state),
        None => match ctx.jobs.sign_in(&scope).await {
            Err(e) => {
                ctx.tracker.mark_changed(&at.key(), &at.name);
                return match trouble(ctx, job, e, "reading the job's state") {
                    (Some(problem), next) => beside(job, at, last, adopted, problem, next),
                    (None, next) => Outcome::quiet(next),
                };
            }
            Ok(()) => ctx.jobs.describe(&scope, &at.name).await,
        },
    };
    match answer {
        Ok(state) => {
            if state.status.is_terminal() {
                capacity_freed(ctx, job, &at.key());
            }
            // Looked into once: the reconcile that first sees the failure records what it
            // found, and an ended job is never read again.
            let failed_now = state.status == JobStatus::Failed && last.status != JobStatus::Failed;
            let failure = if failed_now {
                Some(after_failure(ctx, job, &at, &scope, &state).await)
            } else {
                None
            };
            let mut outcome = observed(ctx, job, at, &scope, state, adopted, None);
            if let Some(observation) = outcome.observation.as_mut() {
                observation.failure = failure;
            }
            outcome
        }
        Err(e) if e.class == ErrorClass::NotFound => {
            ctx.tracker.untrack(&at.key(), &at.name);
            let problem = Problem {
                reason: "JobNotFound".into(),
                message: format!(
                    "SageMaker has no job {} in {} any more: {e}; the last known state is kept",
                    at.name,
                    at.key()
                ),
            };
            beside(
                job,
                at,
                last,
                adopted,
                problem,
                Next::Requeue(Action::requeue(ctx.settings.resync_interval)),
            )
        }
        Err(e) => {
            // Describe again on the retry, whatever the tracker sees by then.
            ctx.tracker.mark_changed(&at.key(), &at.name);
            match trouble(ctx, job, e, "reading the job's state") {
                (Some(problem), next) => beside(job, at, last, adopted, problem, next),
                (None, next) => Outcome::quiet(next),
            }
        }
    }
}

/// A job that exists needs nothing for a new generation: only `networkValidation` and
/// `deletionPolicy` can have changed (the rest of the spec is immutable), the first matters
/// before a create and the second at deletion. Never validated or created again; the status
/// records the generation as observed (kstatus readers such as Argo CD, Flux and `kubectl wait`
/// wait for that), without an AWS call.
pub fn acknowledge(job: &ProcessingJob, at: &JobRef, next: Next) -> Outcome {
    let Some(status) = job
        .status
        .as_ref()
        .filter(|s| s.observed_generation != job.metadata.generation)
    else {
        return Outcome::quiet(next);
    };
    let phase = Phase::Submitted {
        job: Box::new(super::observe::last_state(status, &at.name)),
        adopted: status.phase == Some(crate::api::JobPhase::Adopted),
        problem: None,
    };
    Outcome::report(job, Some(at), None, phase, next)
}

/// A job seen ending Failed: its last log lines (or why they could not be read: never an error
/// of the reconcile), and, when its reason matches a documented pattern, a diagnosis.
async fn after_failure(
    ctx: &Context,
    job: &ProcessingJob,
    at: &JobRef,
    scope: &Scope,
    state: &JobState,
) -> FailureReport {
    let no_lines = || {
        format!(
            "no log lines in {} for {}/…: the container may not have started",
            role::LOG_GROUP,
            at.name
        )
    };
    let log_tail = match ctx.logs.tail(scope, &at.name, diagnosis::TAIL_LINES).await {
        Ok(tails) => diagnosis::tail_text(&tails).unwrap_or_else(no_lines),
        // No log group yet: no job of the region ever wrote a line.
        Err(e) if e.class == ErrorClass::NotFound => no_lines(),
        Err(e) => format!("the job's logs could not be read: {e}"),
    };
    let reason = state.failure_reason.as_deref().unwrap_or_default();
    let diagnosis = match diagnosis::pattern(reason, job.spec.vpc_config().is_some()) {
        Some(pattern) => Some(diagnose(ctx, job, at, scope, pattern).await),
        None => None,
    };
    FailureReport {
        diagnosis,
        log_tail: Some(log_tail),
    }
}

/// The network and the execution role read afresh (bypassing the caches) and validated again:
/// what changed since the job was validated shows as the likely cause.
async fn diagnose(
    ctx: &Context,
    job: &ProcessingJob,
    at: &JobRef,
    scope: &Scope,
    pattern: &diagnosis::Pattern,
) -> Diagnosis {
    let findings = match resolve::network(ctx, scope, &job.spec, true).await {
        Ok(facts @ NetworkFacts::Read { .. }) => match validate::outcome(&job.spec, &at.name, facts) {
            NetworkOutcome::Validated { findings, .. } => findings,
            _ => Vec::new(),
        },
        // No network validated for this job: its role alone.
        Ok(_) => {
            ctx.roles.forget(scope);
            let facts = ctx.roles.role(scope, &job.spec.role_arn).await;
            let under_check = role::JobUnderCheck {
                spec: &job.spec,
                region: &at.region,
                name: Some(&at.name),
            };
            role::check(under_check, &facts)
        }
        Err(e) => {
            return Diagnosis {
                pattern: pattern.name.into(),
                likely_cause: format!(
                    "a {} failure; the network could not be read again to look into it: {e}",
                    pattern.name
                ),
                findings: Vec::new(),
                diagnosed_at: Timestamp::now().to_string(),
            }
        }
    };
    let before = job.status.as_ref().and_then(|s| s.network.as_ref());
    Diagnosis {
        pattern: pattern.name.into(),
        likely_cause: diagnosis::likely_cause(pattern, &findings, before),
        findings,
        diagnosed_at: Timestamp::now().to_string(),
    }
}

/// A problem reported beside the job's last known state, never instead of it.
pub fn beside(job: &ProcessingJob, at: JobRef, last: JobState, adopted: bool, problem: Problem, next: Next) -> Outcome {
    Outcome::report(
        job,
        Some(&at),
        None,
        Phase::Submitted {
            job: Box::new(last),
            adopted,
            problem: Some(problem),
        },
        next,
    )
}

/// The job's place in line (creationTimestamp, name, namespace) and its lane (account, region,
/// instance type).
fn ticket(job: &ProcessingJob, region: &ScopeKey) -> (Place, Lane) {
    let place = Place {
        created: job
            .metadata
            .creation_timestamp
            .as_ref()
            .map(|t| t.0.as_second())
            .unwrap_or(i64::MAX),
        name: job.name_any(),
        namespace: job.namespace().unwrap_or_default(),
    };
    let lane = Lane {
        region: region.clone(),
        instance_type: job.spec.processing_resources.cluster_config.instance_type.clone(),
    };
    (place, lane)
}

fn queue(ctx: &Context) -> std::sync::MutexGuard<'_, Queue> {
    ctx.queue.lock().unwrap_or_else(|e| e.into_inner())
}

fn pacer(ctx: &Context) -> std::sync::MutexGuard<'_, super::pace::Pacer> {
    ctx.pacer.lock().unwrap_or_else(|e| e.into_inner())
}

/// Brings the jobs whose turn it is to the reconciler.
fn wake(ctx: &Context, places: impl IntoIterator<Item = Place>) {
    for p in places {
        ctx.tracker.wake(ObjectRef::new(&p.name).within(&p.namespace));
    }
}

/// The caps that apply to a job of the namespace with these annotations; `Err` says why the
/// namespace's cap cannot be read (a cap that is not a number holds its jobs rather than let
/// them all through).
pub fn caps(ctx: &Context, annotations: &BTreeMap<String, String>) -> Result<Caps, String> {
    let namespace = match annotations.get(MAX_ACTIVE_JOBS_ANNOTATION) {
        None => None,
        Some(v) => Some(v.trim().parse::<u32>().map_err(|_| {
            format!("the namespace annotation {MAX_ACTIVE_JOBS_ANNOTATION} ({v:?}) is not a whole number, so its jobs are held: fix the annotation")
        })?),
    };
    Ok(Caps {
        namespace,
        region: ctx.settings.max_active_jobs_per_region,
    })
}

/// The queue's decision for the job: `Some` (a `Queued` outcome) when it waits, `None` when it
/// may be created now. No AWS call either way.
pub fn wait_in_line(
    ctx: &Context,
    job: &ProcessingJob,
    region: &ScopeKey,
    caps: Caps,
    network: Option<NetworkOutcome>,
) -> Option<Outcome> {
    let (place, lane) = ticket(job, region);
    let (namespace, in_region) = ctx.tracker.active_jobs(region, &place.namespace);
    let active = Active {
        namespace,
        region: in_region,
    };
    // A pacing hint only: after a restart, a job that waited for quota lets its lane rest for the
    // backoff instead of every queued job probing at once.
    let resumed = job.status.as_ref().is_some_and(|s| {
        s.phase == Some(crate::api::JobPhase::Queued)
            && s.conditions
                .iter()
                .any(|c| c.type_ == super::status::RECONCILING && c.reason == QUOTA_EXCEEDED)
    });
    match queue(ctx).decide(&place, &lane, active, caps, resumed, Instant::now()) {
        Verdict::Go => None,
        Verdict::Wait { hold, retry } => Some(queued(job, region, network, hold, retry)),
    }
}

/// The `Queued` status of a job held by `hold`, looked at again after `retry` (or when woken).
fn queued(
    job: &ProcessingJob,
    region: &ScopeKey,
    network: Option<NetworkOutcome>,
    hold: Hold,
    retry: Duration,
) -> Outcome {
    let (place, lane) = ticket(job, region);
    let then = "the job waits in creation order and is created when capacity frees";
    let (reason, message) = match hold {
        Hold::Quota { message } if message.is_empty() => (
            QUOTA_EXCEEDED,
            format!("SageMaker's quota for {} in {region} was reached (before the controller restarted); {then}", lane.instance_type),
        ),
        Hold::Quota { message } => (
            QUOTA_EXCEEDED,
            format!("SageMaker's quota for {} in {region} is reached: {message}; {then} (a job of this instance type ending, or a retry with backoff)", lane.instance_type),
        ),
        Hold::NamespaceCap { limit } => (
            ACTIVE_JOB_LIMIT,
            format!("namespace {} has {limit} active job(s), the limit its annotation {MAX_ACTIVE_JOBS_ANNOTATION} sets; {then} (one of them ending)", place.namespace),
        ),
        Hold::RegionCap { limit } => (
            ACTIVE_JOB_LIMIT,
            format!("the controller has {limit} active job(s) in {region}, the limit --max-active-jobs-per-region sets (per account and region); {then} (one of them ending)"),
        ),
    };
    let at = JobRef {
        name: super::observe::job_name(job),
        region: region.region.clone(),
        account: region.account.clone(),
    };
    Outcome::report(
        job,
        Some(&at),
        network,
        Phase::Queued { reason, message },
        Next::Requeue(Action::requeue(retry)),
    )
}

/// The job leaves the queue (deleted, refused, or its create failed otherwise); the next in line
/// takes its turn.
pub fn leave_queue(ctx: &Context, job: &ProcessingJob) {
    let (place, _) = ticket(job, &ScopeKey::default());
    let next = queue(ctx).forget(&place);
    wake(ctx, next);
}

/// A job of this resource ended: capacity of its lane, its namespace and its region is free, and
/// the jobs waiting for it are woken at once (not only on their timers).
pub fn capacity_freed(ctx: &Context, job: &ProcessingJob, region: &ScopeKey) {
    let (place, lane) = ticket(job, region);
    let next = queue(ctx).released(&lane, &place.namespace);
    wake(ctx, next);
}

/// The scope of a job that may exist, from its pinned account ([`crate::accounts::Directory::pinned`]):
/// `Err` when the ConfigMaps no longer reach that account (the job waits; nothing is sent to
/// another account).
pub fn pinned(ctx: &Context, job: &ProcessingJob, at: &JobRef) -> Result<Scope, Box<Unreachable>> {
    let namespace = job.namespace().unwrap_or_default();
    ctx.accounts
        .pinned(&namespace, at.account.as_deref(), &at.region)
        .map_err(|e| not_mapped(ctx, e))
}

/// [`pinned`], signed in: the role of another account assumed (or its credentials cached).
pub async fn reach(ctx: &Context, job: &ProcessingJob, at: &JobRef) -> Result<Scope, Box<Unreachable>> {
    let scope = pinned(ctx, job, at)?;
    match ctx.jobs.sign_in(&scope).await {
        Ok(()) => Ok(scope),
        Err(e) => match trouble(ctx, job, e, "reaching the job's account") {
            (Some(problem), next) => Err(Box::new(Unreachable(problem, next))),
            (None, next) => Err(Box::new(Unreachable(
                Problem {
                    reason: ASSUME_ROLE_FAILED.into(),
                    message: "reaching the job's account".into(),
                },
                next,
            ))),
        },
    }
}

/// An account without a role to reach it: said in status and an Event, looked at again when a
/// ConfigMap or the namespace changes (the watches bring the job back) and on the revalidation
/// timer.
pub fn not_mapped(ctx: &Context, e: crate::accounts::NotMapped) -> Box<Unreachable> {
    Box::new(Unreachable(
        Problem {
            reason: ACCOUNT_NOT_MAPPED.into(),
            message: e.0,
        },
        Next::Requeue(Action::requeue(ctx.settings.revalidate_interval)),
    ))
}

/// Why a job's account cannot be reached, and when to look again.
#[derive(Debug)]
pub struct Unreachable(pub Problem, pub Next);

/// Fault injection for the crash tests (debug builds only): `SMPC_FAILPOINT=abort-after-create`
/// kills the process right after CreateProcessingJob succeeded and before the status says so.
fn failpoint(name: &str) {
    #[cfg(debug_assertions)]
    if std::env::var("SMPC_FAILPOINT").is_ok_and(|v| v == name) {
        tracing::error!(failpoint = name, "failpoint reached: aborting");
        std::process::abort();
    }
    #[cfg(not(debug_assertions))]
    let _ = name;
}
