//! The controller: a kube-runtime `Controller` over `ProcessingJob`, reconciling as a pipeline
//! observe → resolve (EC2 snapshot, cached) → validate (pure) → act (SageMaker create / stop) →
//! report (status by server-side apply, Events).

pub mod guard;
pub mod leader;
pub mod naming;
pub mod status;
pub mod tracker;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::jiff::Timestamp;
use kube::api::{ApiResource, DynamicObject, Patch, PatchParams};
use kube::core::DeserializeGuard;
use kube::runtime::controller::{Action, Controller};
use kube::runtime::events::{Event, EventType, Recorder, Reporter};
use kube::runtime::finalizer::{finalizer, Event as FinalizerEvent};
use kube::runtime::reflector::ObjectRef;
use kube::runtime::watcher;
use kube::{Api, Client, Resource, ResourceExt};
use rand::Rng;
use tokio_util::sync::CancellationToken;

use crate::api::{
    DeletionPolicy, ProcessingJob, ProcessingJobStatus, Tag, ValidationMode, ACK_DELETION_POLICY_ANNOTATION,
    ACK_REGION_ANNOTATION,
};
use crate::aws::sagemaker::{self, is_terminal, JobState};
use crate::aws::{AwsClients, AwsError, ErrorClass};
use crate::network;
use status::{NetworkOutcome, Observation, Phase};
use tracker::{now_epoch, Tracker};

use crate::server::Health;
use crate::telemetry::metrics::{FindingLabels, Metrics, ReasonLabels, ResultLabels, StatusLabels};

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
    /// How often a job refused for its network is validated again.
    pub revalidate_interval: Duration,
    /// How often an active job is described even when the List saw no change.
    pub resync_interval: Duration,
    /// How often a job is retried while AWS refuses the credentials.
    pub credentials_retry_interval: Duration,
    /// Identity in Events.
    pub instance: Option<String>,
}

/// Everything a reconcile needs.
pub struct Context {
    pub client: Client,
    pub aws: Arc<AwsClients>,
    pub tracker: Arc<Tracker>,
    pub settings: Settings,
    pub metrics: Arc<Metrics>,
    recorder: Recorder,
    failures: Mutex<HashMap<ObjectRef<Guarded>, u32>>,
}

/// A failed reconcile.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("Kubernetes API: {0}")]
    Kube(#[source] kube::Error),
    #[error(transparent)]
    Aws(AwsError),
    #[error("waiting for SageMaker job {0} to stop before releasing the resource")]
    WaitingForStop(String),
    #[error("finalizer: {0}")]
    Finalizer(#[source] Box<kube::runtime::finalizer::Error<Error>>),
}

impl Error {
    /// Stable reason for logs, metrics and Events.
    pub fn reason(&self) -> &'static str {
        match self {
            Error::Kube(_) => "KubernetesError",
            Error::Aws(e) => e.class.reason(),
            Error::WaitingForStop(_) => "WaitingForStop",
            Error::Finalizer(e) => match e.as_ref() {
                kube::runtime::finalizer::Error::ApplyFailed(inner)
                | kube::runtime::finalizer::Error::CleanupFailed(inner) => inner.reason(),
                _ => "FinalizerError",
            },
        }
    }

    fn innermost(&self) -> &Error {
        match self {
            Error::Finalizer(e) => match e.as_ref() {
                kube::runtime::finalizer::Error::ApplyFailed(inner)
                | kube::runtime::finalizer::Error::CleanupFailed(inner) => inner.innermost(),
                _ => self,
            },
            other => other,
        }
    }
}

impl From<AwsError> for Error {
    fn from(e: AwsError) -> Self {
        Error::Aws(e)
    }
}

impl From<kube::Error> for Error {
    fn from(e: kube::Error) -> Self {
        Error::Kube(e)
    }
}

/// The deletion policy: `spec.deletionPolicy`, else ACK's annotation, else Stop.
pub fn deletion_policy(job: &ProcessingJob) -> DeletionPolicy {
    if let Some(p) = job.spec.deletion_policy {
        return p;
    }
    let ack = job
        .annotations()
        .get(ACK_DELETION_POLICY_ANNOTATION)
        .map(|v| v.to_ascii_lowercase());
    if ack.as_deref() == Some("retain") {
        DeletionPolicy::Retain
    } else {
        DeletionPolicy::Stop
    }
}

/// The SageMaker job name of a resource.
pub fn job_name(job: &ProcessingJob) -> String {
    if let Some(n) = job.status.as_ref().and_then(|s| s.processing_job_name.clone()) {
        return n;
    }
    if let Some(n) = job.spec.processing_job_name.clone() {
        return n;
    }
    naming::derived_job_name(
        job.namespace().as_deref().unwrap_or_default(),
        &job.name_any(),
        job.metadata.uid.as_deref().unwrap_or_default(),
    )
}

fn owner_tags(job: &ProcessingJob) -> Vec<Tag> {
    vec![
        Tag {
            key: sagemaker::TAG_NAMESPACE.into(),
            value: job.namespace().unwrap_or_default(),
        },
        Tag {
            key: sagemaker::TAG_NAME.into(),
            value: job.name_any(),
        },
        Tag {
            key: sagemaker::TAG_UID.into(),
            value: job.metadata.uid.clone().unwrap_or_default(),
        },
    ]
}

fn epoch_of(rfc3339: &str) -> f64 {
    rfc3339
        .parse::<Timestamp>()
        .ok()
        .map(|t| t.as_millisecond() as f64 / 1000.0)
        .unwrap_or(0.0)
}

fn object_ref(job: &ProcessingJob) -> ObjectRef<Guarded> {
    let r = ObjectRef::<Guarded>::new(&job.name_any());
    match job.namespace() {
        Some(ns) => r.within(&ns),
        None => r,
    }
}

impl Context {
    pub fn new(
        client: Client,
        aws: Arc<AwsClients>,
        tracker: Arc<Tracker>,
        settings: Settings,
        metrics: Arc<Metrics>,
    ) -> Self {
        let reporter = Reporter {
            controller: FIELD_MANAGER.into(),
            instance: settings.instance.clone(),
        };
        Self {
            recorder: Recorder::new(client.clone(), reporter),
            client,
            aws,
            tracker,
            settings,
            metrics,
            failures: Mutex::new(HashMap::new()),
        }
    }

    fn api(&self, job: &ProcessingJob) -> Api<ProcessingJob> {
        Api::namespaced(self.client.clone(), job.namespace().as_deref().unwrap_or("default"))
    }

    async fn publish(&self, job: &ProcessingJob, warning: bool, reason: &str, note: String, action: &str) {
        let event = Event {
            type_: if warning { EventType::Warning } else { EventType::Normal },
            reason: reason.into(),
            note: Some(note),
            action: action.into(),
            secondary: None,
        };
        if let Err(e) = self.recorder.publish(&event, &job.object_ref(&())).await {
            tracing::warn!(error = %e, reason, "cannot publish event");
        }
    }

    /// Writes the status computed from `obs` when it differs from the stored one, and publishes
    /// the Events of the transition. Returns the status now in force.
    async fn report(&self, job: &ProcessingJob, obs: &Observation) -> Result<ProcessingJobStatus, Error> {
        let prev = job.status.clone().unwrap_or_default();
        let next = status::desired_status(&prev, obs);
        if prev == next {
            return Ok(prev);
        }
        let patch = serde_json::json!({
            "apiVersion": format!("{}/{}", crate::api::GROUP, crate::api::VERSION),
            "kind": "ProcessingJob",
            "status": next,
        });
        self.api(job)
            .patch_status(
                &job.name_any(),
                &PatchParams::apply(FIELD_MANAGER).force(),
                &Patch::Apply(&patch),
            )
            .await?;
        self.metrics.status_patches.inc();
        for e in status::transition_events(&prev, &next) {
            self.publish(job, e.warning, e.reason, e.note, &e.action).await;
        }
        Ok(next)
    }
}

/// Runs the controller until SIGTERM / SIGINT or `shutdown`.
pub async fn run(
    client: Client,
    aws: Arc<AwsClients>,
    settings: Settings,
    metrics: Arc<Metrics>,
    health: Arc<Health>,
    shutdown: CancellationToken,
) {
    let api: Api<Guarded> = match &settings.namespace {
        Some(ns) => Api::namespaced(client.clone(), ns),
        None => Api::all(client.clone()),
    };
    let (trigger_tx, trigger_rx) = futures::channel::mpsc::unbounded();
    let tracker = Arc::new(Tracker::new(trigger_tx, settings.resync_interval));
    let ctx = Arc::new(Context::new(
        client,
        aws.clone(),
        tracker.clone(),
        settings.clone(),
        metrics.clone(),
    ));
    let poller = tokio::spawn(tracker.clone().run(aws, settings.poll_interval, shutdown.clone()));
    let stop = shutdown.clone();
    let controller = Controller::new(api, watcher::Config::default().any_semantic());
    let store = controller.store();
    let gauges = tokio::spawn(report_gauges(store, tracker, metrics, health, shutdown.clone()));
    controller
        .with_config(kube::runtime::controller::Config::default().concurrency(settings.concurrency))
        .reconcile_on(trigger_rx)
        .graceful_shutdown_on(async move { stop.cancelled().await })
        .run(reconcile, error_policy, ctx)
        .for_each(|result| async move {
            match result {
                Ok((obj, _)) => tracing::debug!(object = %obj, "reconciled"),
                Err(kube::runtime::controller::Error::ReconcilerFailed(e, obj)) => {
                    tracing::info!(object = %obj, reason = e.reason(), error = %e, "reconcile failed")
                }
                Err(e) => tracing::warn!(error = %e, "controller error"),
            }
        })
        .await;
    shutdown.cancel();
    let _ = poller.await;
    let _ = gauges.await;
}

/// Marks the controller ready once its cache synced, then keeps the gauges of jobs by status
/// and findings by code up to date from the cache.
async fn report_gauges(
    store: kube::runtime::reflector::Store<Guarded>,
    tracker: Arc<Tracker>,
    metrics: Arc<Metrics>,
    health: Arc<Health>,
    shutdown: CancellationToken,
) {
    // kube's readiness signal wakes only its latest waiter (the controller's runner also waits
    // on it), so poll it rather than wait once.
    loop {
        if shutdown.is_cancelled() {
            return;
        }
        match tokio::time::timeout(Duration::from_millis(200), store.wait_until_ready()).await {
            Ok(Ok(())) => break,
            Ok(Err(_)) => return,
            Err(_) => {}
        }
    }
    health.set_ready(true);
    tracing::info!("caches synced: ready");
    loop {
        let mut jobs: std::collections::BTreeMap<String, i64> = Default::default();
        let mut findings: std::collections::BTreeMap<(String, String), i64> = Default::default();
        for obj in store.state() {
            let Ok(job) = &obj.0 else { continue };
            let status = job.status.as_ref();
            let phase = status
                .and_then(|s| s.processing_job_status.clone())
                .unwrap_or_else(|| "None".into());
            *jobs.entry(phase).or_default() += 1;
            for f in status
                .and_then(|s| s.network.as_ref())
                .map(|n| n.findings.as_slice())
                .unwrap_or(&[])
            {
                *findings.entry((f.code.clone(), f.severity.to_string())).or_default() += 1;
            }
        }
        metrics.jobs.clear();
        for (status, n) in jobs {
            metrics.jobs.get_or_create(&StatusLabels { status }).set(n);
        }
        metrics.findings.clear();
        for ((code, severity), n) in findings {
            metrics.findings.get_or_create(&FindingLabels { code, severity }).set(n);
        }
        metrics.active_jobs.set(tracker.active() as i64);
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(Duration::from_secs(2)) => {}
        }
    }
}

#[tracing::instrument(skip_all, fields(object = %obj.name_any(), namespace = obj.namespace().unwrap_or_default()))]
async fn reconcile(obj: Arc<Guarded>, ctx: Arc<Context>) -> Result<Action, Error> {
    let start = std::time::Instant::now();
    let result = reconcile_inner(&obj, &ctx).await;
    ctx.metrics.reconcile_duration.observe(start.elapsed().as_secs_f64());
    let outcome = match &result {
        Ok(_) => "ok",
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

async fn reconcile_inner(obj: &Arc<Guarded>, ctx: &Arc<Context>) -> Result<Action, Error> {
    let job = match &obj.0 {
        Ok(job) => job.clone(),
        Err(invalid) => {
            report_invalid(ctx, invalid).await?;
            return Ok(Action::await_change());
        }
    };
    let api = ctx.api(&job);
    let result = finalizer(&api, FINALIZER, Arc::new(job), |event| async {
        match event {
            FinalizerEvent::Apply(job) => Box::pin(apply(&job, ctx)).await,
            FinalizerEvent::Cleanup(job) => Box::pin(cleanup(&job, ctx)).await,
        }
    })
    .await
    .map_err(|e| Error::Finalizer(Box::new(e)));
    if result.is_ok() {
        if let Ok(mut f) = ctx.failures.lock() {
            f.remove(&ObjectRef::from_obj(obj.as_ref()));
        }
    }
    result
}

/// Backoff per object: transient problems retry with jittered exponential delays, bounded.
fn error_policy(obj: Arc<Guarded>, error: &Error, ctx: Arc<Context>) -> Action {
    if let Error::WaitingForStop(_) = error.innermost() {
        return Action::requeue(ctx.settings.poll_interval);
    }
    let key = ObjectRef::from_obj(obj.as_ref());
    let attempt = {
        let mut f = ctx.failures.lock().unwrap_or_else(|e| e.into_inner());
        let n = f.entry(key).or_insert(0);
        *n = n.saturating_add(1);
        *n
    };
    let base = match error.innermost() {
        Error::Aws(e) if e.class == ErrorClass::LimitExceeded => 30.0,
        _ => 1.0,
    };
    let delay = (base * 2f64.powi(attempt.min(16) as i32 - 1)).min(300.0);
    let jitter = rand::rng().random_range(0.5..1.5);
    Action::requeue(Duration::from_secs_f64((delay * jitter).max(0.2)))
}

async fn report_invalid(ctx: &Context, invalid: &kube::core::error_boundary::InvalidObject) -> Result<(), Error> {
    let ns = invalid.metadata.namespace.clone().unwrap_or_else(|| "default".into());
    let name = invalid.metadata.name.clone().unwrap_or_default();
    tracing::warn!(namespace = ns, name, error = %invalid.error, "malformed ProcessingJob");
    let ar = ApiResource::erase::<ProcessingJob>(&());
    let api: Api<DynamicObject> = Api::namespaced_with(ctx.client.clone(), &ns, &ar);
    let since = invalid
        .metadata
        .creation_timestamp
        .clone()
        .map(|t| t.0.to_string())
        .unwrap_or_default();
    let message = format!(
        "the object cannot be read: {}; recreate it with a valid spec",
        invalid.error
    );
    let condition = |t: &str, s: &str| serde_json::json!({"type": t, "status": s, "reason": "InvalidObject", "message": message, "lastTransitionTime": since});
    let patch = serde_json::json!({"status": {"conditions": [
        condition(status::READY, "False"), condition(status::STALLED, "True"), condition(status::RECONCILING, "False")
    ]}});
    // The apiserver may refuse even a status write for an object its schema cannot read: the
    // Event below still tells the user.
    if let Err(e) = api
        .patch_status(&name, &PatchParams::default(), &Patch::Merge(&patch))
        .await
    {
        tracing::warn!(namespace = ns, name, error = %e, "cannot write the status of the malformed object");
    }
    let reference = k8s_openapi::api::core::v1::ObjectReference {
        api_version: Some(ar.api_version.clone()),
        kind: Some(ar.kind.clone()),
        name: Some(name),
        namespace: Some(ns),
        uid: invalid.metadata.uid.clone(),
        ..Default::default()
    };
    let event = Event {
        type_: EventType::Warning,
        reason: "InvalidSpec".into(),
        note: Some(message),
        action: "Reconcile".into(),
        secondary: None,
    };
    if let Err(e) = ctx.recorder.publish(&event, &reference).await {
        tracing::warn!(error = %e, "cannot publish event");
    }
    Ok(())
}

fn waiting(reason: &str, message: impl Into<String>) -> Phase {
    Phase::Waiting {
        reason: reason.into(),
        message: message.into(),
    }
}

async fn apply(job: &ProcessingJob, ctx: &Context) -> Result<Action, Error> {
    let status = job.status.clone().unwrap_or_default();
    let name = job_name(job);
    let generation = job.metadata.generation;
    let region = job.region(ctx.settings.default_region.as_deref());
    let mut obs = Observation {
        generation,
        job_name: Some(name.clone()),
        region: region.clone(),
        network: None,
        phase: Phase::Creating,
    };

    // An ended job whose end is mirrored: nothing to do, ever.
    if status.processing_job_status.as_deref().is_some_and(is_terminal) && status.observed_generation == generation {
        if let Some(r) = &region {
            ctx.tracker.untrack(r, &name);
        }
        return Ok(Action::await_change());
    }
    let Some(region) = region else {
        obs.phase = waiting(
            "RegionMissing",
            format!("no AWS region: set spec.region, the {ACK_REGION_ANNOTATION} annotation or the controller's --region / AWS_REGION"),
        );
        ctx.report(job, &obs).await?;
        return Ok(Action::requeue(Duration::from_secs(300)));
    };
    let sm = ctx.aws.sagemaker(&region);

    // The job exists: mirror it when the tracker saw it change.
    if status.processing_job_arn.is_some() {
        let known = status.last_modified_time.as_deref().map(epoch_of);
        let tracked = ctx.tracker.is_tracked(&region, &name);
        if let Some(known) = known {
            ctx.tracker.track(&region, &name, object_ref(job), known);
        }
        let changed = ctx.tracker.take_changed(&region, &name);
        // Described before, or created by this process: the tracker reports changes. Never
        // described and unknown to this process (created just before a restart): describe now.
        if !changed && (known.is_some() || tracked) {
            return Ok(Action::requeue(ctx.settings.resync_interval));
        }
        let adopted = status
            .conditions
            .iter()
            .any(|c| c.type_ == status::SUBMITTED && c.reason == "Adopted");
        return mirror(job, ctx, &sm, obs, &region, &name, adopted).await;
    }

    // A create may have happened before a crash: look before creating again.
    let creating = status.processing_job_name.is_some()
        && status
            .conditions
            .iter()
            .any(|c| c.type_ == status::SUBMITTED && c.reason == "Creating");
    if creating {
        match sm.describe(&name).await {
            Ok(state) => return adopt_or_refuse(job, ctx, &sm, obs, &region, state).await,
            Err(e) if e.class == ErrorClass::NotFound => {}
            Err(e) => return aws_failure(job, ctx, obs, e).await,
        }
    }

    // The namespace's tenant guard.
    let ns = job.namespace().unwrap_or_default();
    let namespace = Api::<k8s_openapi::api::core::v1::Namespace>::all(ctx.client.clone())
        .get(&ns)
        .await?;
    let annotations = namespace.metadata.annotations.unwrap_or_default();
    if let Some(message) = guard::refusal(&ns, &annotations, &job.spec) {
        obs.phase = Phase::NotAllowed { message };
        ctx.report(job, &obs).await?;
        return Ok(Action::await_change());
    }

    // Validate the network.
    let outcome = match validate_network(job, ctx, &region).await {
        Ok(o) => o,
        Err(e) => return aws_failure(job, ctx, obs, e).await,
    };
    obs.network = Some(outcome.clone());
    if !outcome.allows_create() {
        obs.phase = Phase::NetworkInvalid;
        ctx.report(job, &obs).await?;
        return Ok(Action::requeue(ctx.settings.revalidate_interval));
    }

    // Record the chosen name before creating, so a restart looks before creating twice.
    obs.phase = Phase::Creating;
    ctx.report(job, &obs).await?;
    match sm.create(&name, &job.spec, &owner_tags(job)).await {
        Ok(arn) => {
            failpoint("abort-after-create");
            let state = JobState {
                name: name.clone(),
                arn: Some(arn),
                status: "InProgress".into(),
                ..Default::default()
            };
            // The job is known as of now: the next change SageMaker records (normally the end)
            // is what the tracker reports. A server clock behind ours could hide a change made
            // within the skew; the resync backstop describes active jobs periodically anyway.
            ctx.tracker.track(&region, &name, object_ref(job), now_epoch());
            obs.phase = Phase::Submitted {
                job: Box::new(state),
                adopted: false,
            };
            ctx.report(job, &obs).await?;
            Ok(Action::requeue(ctx.settings.resync_interval))
        }
        Err(e) if e.code.as_deref() == Some("ResourceInUse") => match sm.describe(&name).await {
            Ok(state) => adopt_or_refuse(job, ctx, &sm, obs, &region, state).await,
            Err(e) => aws_failure(job, ctx, obs, e).await,
        },
        Err(e) if e.class == ErrorClass::Invalid => {
            obs.phase = Phase::InvalidSpec {
                message: e.message.clone(),
            };
            ctx.report(job, &obs).await?;
            Ok(Action::await_change())
        }
        Err(e) => aws_failure(job, ctx, obs, e).await,
    }
}

/// Fault injection for the crash tests: `SMPC_FAILPOINT=abort-after-create` kills the process
/// right after CreateProcessingJob succeeded and before the status says so.
fn failpoint(name: &str) {
    if std::env::var("SMPC_FAILPOINT").is_ok_and(|v| v == name) {
        tracing::error!(failpoint = name, "failpoint reached: aborting");
        std::process::abort();
    }
}

/// Problems that may go away: slow ones become a condition and a slow retry; throttling and
/// server errors go to the backoff of `error_policy`.
async fn aws_failure(job: &ProcessingJob, ctx: &Context, mut obs: Observation, e: AwsError) -> Result<Action, Error> {
    match e.class {
        ErrorClass::Credentials => {
            obs.phase = waiting(
                e.class.reason(),
                format!("AWS refused the credentials or configuration: {e}"),
            );
            ctx.report(job, &obs).await?;
            Ok(Action::requeue(ctx.settings.credentials_retry_interval))
        }
        ErrorClass::LimitExceeded => {
            obs.phase = waiting(
                e.class.reason(),
                format!("a SageMaker quota was reached, retrying slowly: {e}"),
            );
            ctx.report(job, &obs).await?;
            Ok(Action::requeue(Duration::from_secs(120)))
        }
        _ => Err(Error::Aws(e)),
    }
}

async fn validate_network(job: &ProcessingJob, ctx: &Context, region: &str) -> Result<NetworkOutcome, AwsError> {
    if job.spec.vpc_config().is_none() {
        return Ok(NetworkOutcome::NoVpcConfig);
    }
    let mode = job.spec.validation_mode();
    if mode == ValidationMode::Skip {
        return Ok(NetworkOutcome::Skipped);
    }
    let snapshot = ctx.aws.ec2(region).snapshot(&job.spec).await?;
    let findings = network::validate(&job.spec, &snapshot);
    Ok(NetworkOutcome::Validated {
        mode,
        vpc_id: snapshot.vpc.as_ref().map(|v| v.vpc_id.clone()),
        findings,
    })
}

/// A job with our name exists: adopt it if its tags carry this resource's UID.
async fn adopt_or_refuse(
    job: &ProcessingJob,
    ctx: &Context,
    sm: &sagemaker::SageMaker,
    mut obs: Observation,
    region: &str,
    state: JobState,
) -> Result<Action, Error> {
    let uid = job.metadata.uid.clone().unwrap_or_default();
    let tags = match state.arn.as_deref() {
        Some(arn) => match sm.tags(arn).await {
            Ok(t) => t,
            Err(e) => return aws_failure(job, ctx, obs, e).await,
        },
        None => Vec::new(),
    };
    let ours = tags.iter().any(|(k, v)| k == sagemaker::TAG_UID && v == &uid);
    if !ours {
        let owner = tags
            .iter()
            .find(|(k, _)| k == sagemaker::TAG_UID)
            .map(|(_, v)| format!("resource UID {v}"))
            .unwrap_or_else(|| "something else".into());
        obs.phase = Phase::NameConflict {
            message: format!(
                "a SageMaker job named {} already exists and was created by {owner}, not by this resource; choose another spec.processingJobName in a new resource",
                state.name
            ),
        };
        ctx.report(job, &obs).await?;
        return Ok(Action::await_change());
    }
    let name = state.name.clone();
    if is_terminal(&state.status) {
        ctx.tracker.untrack(region, &name);
    } else {
        ctx.tracker
            .track(region, &name, object_ref(job), state.last_modified_epoch.unwrap_or(0.0));
    }
    let action = follow_up(ctx, &state.status);
    obs.phase = Phase::Submitted {
        job: Box::new(state),
        adopted: true,
    };
    ctx.report(job, &obs).await?;
    Ok(action)
}

/// Ended jobs wait for nothing; active ones come back at the resync backstop at the latest.
fn follow_up(ctx: &Context, status: &str) -> Action {
    if is_terminal(status) {
        Action::await_change()
    } else {
        Action::requeue(ctx.settings.resync_interval)
    }
}

async fn mirror(
    job: &ProcessingJob,
    ctx: &Context,
    sm: &sagemaker::SageMaker,
    mut obs: Observation,
    region: &str,
    name: &str,
    adopted: bool,
) -> Result<Action, Error> {
    let state = match sm.describe(name).await {
        Ok(s) => s,
        Err(e) => {
            // Describe again on the retry, whatever the tracker sees by then.
            ctx.tracker.mark_changed(region, name);
            return aws_failure(job, ctx, obs, e).await;
        }
    };
    if is_terminal(&state.status) {
        ctx.tracker.untrack(region, name);
    } else {
        ctx.tracker
            .track(region, name, object_ref(job), state.last_modified_epoch.unwrap_or(0.0));
    }
    let action = follow_up(ctx, &state.status);
    obs.phase = Phase::Submitted {
        job: Box::new(state),
        adopted,
    };
    ctx.report(job, &obs).await?;
    Ok(action)
}

async fn cleanup(job: &ProcessingJob, ctx: &Context) -> Result<Action, Error> {
    let status = job.status.clone().unwrap_or_default();
    let name = job_name(job);
    let region = job.region(ctx.settings.default_region.as_deref());
    let policy = deletion_policy(job);
    let maybe_created = status.processing_job_arn.is_some()
        || status
            .conditions
            .iter()
            .any(|c| c.type_ == status::SUBMITTED && c.reason == "Creating");
    let (Some(region), true) = (region, maybe_created) else {
        return Ok(Action::await_change());
    };
    if policy == DeletionPolicy::Retain {
        ctx.tracker.untrack(&region, &name);
        ctx.publish(
            job,
            false,
            "JobRetained",
            format!("deletionPolicy Retain: SageMaker job {name} is left as it is"),
            "Retain",
        )
        .await;
        return Ok(Action::await_change());
    }
    let sm = ctx.aws.sagemaker(&region);
    let state = match sm.describe(&name).await {
        Ok(s) => s,
        Err(e) if e.class == ErrorClass::NotFound => {
            ctx.tracker.untrack(&region, &name);
            return Ok(Action::await_change());
        }
        Err(e) => return Err(e.into()),
    };
    match state.status.as_str() {
        "InProgress" => {
            match sm.stop(&name).await {
                Ok(()) => {
                    ctx.publish(
                        job,
                        false,
                        "JobStopping",
                        format!("stopping SageMaker job {name} because the resource is being deleted"),
                        "Stop",
                    )
                    .await
                }
                // It ended between Describe and Stop, or vanished: look again next time.
                Err(e) if matches!(e.class, ErrorClass::Invalid | ErrorClass::NotFound) => {}
                Err(e) => return Err(e.into()),
            }
            Err(Error::WaitingForStop(name))
        }
        "Stopping" => Err(Error::WaitingForStop(name)),
        _ => {
            ctx.tracker.untrack(&region, &name);
            Ok(Action::await_change())
        }
    }
}
