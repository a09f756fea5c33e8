//! In-process tests of the reconciler: every branch of reconcile and cleanup against in-memory
//! fakes of SageMaker, EC2, IAM and CloudWatch Logs ([`JobService`], [`NetworkReader`],
//! [`RoleReader`], [`JobLogs`]) and of the Kubernetes API (a
//! tower service answering the requests kube's client sends). No local stack needed.

use std::collections::{BTreeMap, VecDeque};
use std::convert::Infallible;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::FutureExt;
use http::{Method, Request, Response, StatusCode};
use http_body_util::BodyExt;
use kube::runtime::controller::Action;
use serde_json::{json, Value};

use super::*;
use crate::accounts::{Scope, ScopeKey};
use crate::api::{JobPhase, ProcessingJobSpec};
use crate::aws::logs::StreamTail;
use crate::aws::{AwsError, ErrorClass};
use crate::job::{JobState, JobStatus, TAG_UID};
use crate::network::NetworkSnapshot;
use crate::role::{NamedDocument, RoleDocuments, RoleFacts};

const NS: &str = "team-a";
const REGION: &str = "us-east-1";

/// The controller's own account in [`REGION`], as the tracker keys it.
fn own_key() -> ScopeKey {
    Scope::own(REGION).key()
}
const GROUP_PATH: &str = "/apis/sagemaker.processing.dev/v1alpha1";

// ---------------------------------------------------------------------------------------------
// A fake kube-apiserver: ProcessingJobs (finalizer JSON patches, status server-side apply),
// namespaces, Events.

#[derive(Default)]
struct ApiState {
    jobs: BTreeMap<String, Value>,
    namespaces: BTreeMap<String, Value>,
    events: Vec<Value>,
    status_writes: u32,
    /// Merge patches of a ProcessingJob's metadata (finalizer, write-ahead).
    metadata_writes: u32,
    namespace_reads: u32,
    resource_version: u64,
}

/// The fake apiserver; Event writes wait while `events_open` says false (a slow Event sink).
#[derive(Clone)]
struct FakeApi(Arc<Mutex<ApiState>>, Arc<tokio::sync::watch::Sender<bool>>);

impl Default for FakeApi {
    fn default() -> Self {
        Self(Arc::default(), Arc::new(tokio::sync::watch::channel(true).0))
    }
}

fn respond(code: StatusCode, body: Value) -> Response<http_body_util::Full<bytes::Bytes>> {
    let mut r = Response::new(http_body_util::Full::new(bytes::Bytes::from(body.to_string())));
    *r.status_mut() = code;
    r.headers_mut()
        .insert("content-type", http::HeaderValue::from_static("application/json"));
    r
}

fn not_found(what: &str) -> Response<http_body_util::Full<bytes::Bytes>> {
    respond(
        StatusCode::NOT_FOUND,
        json!({"kind": "Status", "apiVersion": "v1", "status": "Failure", "reason": "NotFound", "code": 404, "message": format!("{what} not found")}),
    )
}

impl FakeApi {
    fn state(&self) -> std::sync::MutexGuard<'_, ApiState> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn client(&self) -> kube::Client {
        let api = self.clone();
        let service = tower::service_fn(move |req: Request<kube::client::Body>| {
            let api = api.clone();
            async move {
                if req.uri().path().starts_with("/apis/events.k8s.io/") {
                    let mut open = api.1.subscribe();
                    let _ = open.wait_for(|o| *o).await;
                }
                let (parts, body) = req.into_parts();
                let bytes = body.collect().await.map(|b| b.to_bytes()).unwrap_or_default();
                let body: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
                Ok::<_, Infallible>(api.handle(&parts.method, parts.uri.path(), body))
            }
        });
        kube::Client::new(service, NS)
    }

    fn handle(&self, method: &Method, path: &str, body: Value) -> Response<http_body_util::Full<bytes::Bytes>> {
        let mut s = self.state();
        let segments: Vec<&str> = path.trim_start_matches('/').split('/').collect();
        if path.starts_with("/apis/events.k8s.io/") {
            s.events.push(body.clone());
            return respond(StatusCode::CREATED, body);
        }
        if let ["api", "v1", "namespaces", name] = segments.as_slice() {
            s.namespace_reads += 1;
            return match s.namespaces.get(*name) {
                Some(ns) => respond(StatusCode::OK, ns.clone()),
                None => not_found(name),
            };
        }
        let Some(rest) = path.strip_prefix(&format!("{GROUP_PATH}/namespaces/{NS}/processingjobs/")) else {
            return not_found(path);
        };
        let (name, status) = match rest.split_once('/') {
            Some((name, "status")) => (name.to_string(), true),
            _ => (rest.to_string(), false),
        };
        s.resource_version += 1;
        let rv = s.resource_version.to_string();
        let Some(obj) = s.jobs.get_mut(&name) else {
            return not_found(&name);
        };
        match (method.as_str(), status) {
            ("GET", _) => {}
            ("PATCH", true) => {
                // The controller's server-side apply carries the whole status (and its kind); the
                // report of a malformed object is a merge patch of its conditions.
                if body.get("kind").is_some() {
                    obj["status"] = body["status"].clone();
                } else {
                    json_patch::merge(&mut obj["status"], &body["status"]);
                }
                obj["metadata"]["resourceVersion"] = json!(rv);
                let obj = obj.clone();
                s.status_writes += 1;
                return respond(StatusCode::OK, obj);
            }
            ("PATCH", false) if body.is_object() => {
                // A merge patch of metadata, refused on a stale resourceVersion.
                let expected = body["metadata"]["resourceVersion"].clone();
                if !expected.is_null() && expected != obj["metadata"]["resourceVersion"] {
                    return respond(
                        StatusCode::CONFLICT,
                        json!({"kind": "Status", "status": "Failure", "reason": "Conflict", "code": 409, "message": "the object has been modified"}),
                    );
                }
                let mut patch = body;
                patch["metadata"].as_object_mut().map(|m| m.remove("resourceVersion"));
                json_patch::merge(obj, &patch);
                s.metadata_writes += 1;
                let Some(obj) = s.jobs.get_mut(&name) else {
                    return not_found(&name);
                };
                obj["metadata"]["resourceVersion"] = json!(rv);
                let obj = obj.clone();
                if obj["metadata"]["deletionTimestamp"].is_string()
                    && obj["metadata"]["finalizers"].as_array().is_none_or(|f| f.is_empty())
                {
                    s.jobs.remove(&name);
                }
                return respond(StatusCode::OK, obj);
            }
            ("PATCH", false) => {
                let ops: json_patch::Patch = match serde_json::from_value(body) {
                    Ok(p) => p,
                    Err(e) => return respond(StatusCode::BAD_REQUEST, json!({"message": e.to_string()})),
                };
                // The apiserver's JSON patch treats a missing member as null in `test`.
                if obj["metadata"].get("finalizers").is_none() {
                    obj["metadata"]["finalizers"] = Value::Null;
                }
                if let Err(e) = json_patch::patch(obj, &ops) {
                    return respond(
                        StatusCode::UNPROCESSABLE_ENTITY,
                        json!({"kind": "Status", "status": "Failure", "code": 422, "message": e.to_string()}),
                    );
                }
                obj["metadata"]["resourceVersion"] = json!(rv);
                let obj = obj.clone();
                let gone = obj["metadata"]["deletionTimestamp"].is_string()
                    && obj["metadata"]["finalizers"].as_array().is_none_or(|f| f.is_empty());
                if gone {
                    s.jobs.remove(&name);
                }
                return respond(StatusCode::OK, obj);
            }
            _ => return not_found(path),
        }
        respond(StatusCode::OK, obj.clone())
    }
}

// ---------------------------------------------------------------------------------------------
// Fake SageMaker and EC2.

/// (region, name) → the job and its tags.
type JobTable = BTreeMap<(String, String), (JobState, Vec<(String, String)>)>;

#[derive(Default)]
struct JobsState {
    jobs: JobTable,
    /// Every call: (operation, region, name or ARN).
    calls: Vec<(&'static str, String, String)>,
    /// Scripted failures per operation, served before any answer.
    failures: BTreeMap<&'static str, VecDeque<AwsError>>,
}

#[derive(Clone, Default)]
struct FakeJobs(Arc<Mutex<JobsState>>);

fn aws_error(operation: &'static str, class: ErrorClass, code: &str, message: &str) -> AwsError {
    AwsError {
        service: "sagemaker",
        operation,
        class,
        code: Some(code.into()),
        message: message.into(),
    }
}

fn arn_of(region: &str, name: &str) -> String {
    format!("arn:aws:sagemaker:{region}:123456789012:processing-job/{name}")
}

impl FakeJobs {
    fn state(&self) -> std::sync::MutexGuard<'_, JobsState> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn fail(&self, operation: &'static str, times: usize, class: ErrorClass, code: &str) {
        let mut s = self.state();
        let queue = s.failures.entry(operation).or_default();
        for _ in 0..times {
            queue.push_back(aws_error(operation, class, code, &format!("{code} (scripted)")));
        }
    }

    /// A job that exists in SageMaker, with its tags.
    fn insert(&self, region: &str, name: &str, status: JobStatus, tags: &[(&str, &str)]) {
        let state = JobState {
            name: name.into(),
            arn: Some(arn_of(region, name)),
            status,
            last_modified: Some("2026-11-28T10:00:00Z".into()),
            last_modified_epoch: Some(1_795_860_000.0),
            ..Default::default()
        };
        let tags = tags.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        self.state().jobs.insert((region.into(), name.into()), (state, tags));
    }

    fn set_status(&self, region: &str, name: &str, status: JobStatus) {
        if let Some((j, _)) = self.state().jobs.get_mut(&(region.into(), name.into())) {
            j.status = status;
        }
    }

    /// The job ends Failed with SageMaker's `reason`.
    fn fail_job(&self, region: &str, name: &str, reason: &str) {
        if let Some((j, _)) = self.state().jobs.get_mut(&(region.into(), name.into())) {
            j.status = JobStatus::Failed;
            j.failure_reason = Some(reason.into());
        }
    }

    fn calls(&self) -> Vec<&'static str> {
        self.state().calls.iter().map(|c| c.0).collect()
    }

    fn count(&self, operation: &str) -> usize {
        self.state().calls.iter().filter(|c| c.0 == operation).count()
    }

    fn regions(&self) -> Vec<String> {
        self.state().calls.iter().map(|c| c.1.clone()).collect()
    }

    fn call(&self, operation: &'static str, region: &str, key: &str) -> Result<(), AwsError> {
        let mut s = self.state();
        s.calls.push((operation, region.into(), key.into()));
        match s.failures.get_mut(operation).and_then(VecDeque::pop_front) {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }
}

fn missing(operation: &'static str, name: &str) -> AwsError {
    aws_error(
        operation,
        ErrorClass::NotFound,
        "ValidationException",
        &format!("Could not find requested job with name {name}"),
    )
}

/// Where a fake call went: the region, prefixed by the account when it is not the controller's
/// own (`222222222222:us-east-1`).
fn place(scope: &Scope) -> String {
    match scope.account() {
        Some(account) => format!("{account}:{}", scope.region),
        None => scope.region.clone(),
    }
}

impl JobService for FakeJobs {
    fn sign_in<'a>(&'a self, scope: &'a Scope) -> Answer<'a, ()> {
        async move {
            match &scope.assumed {
                Some(a) => self.call("AssumeRole", &place(scope), &a.role_arn),
                None => Ok(()),
            }
        }
        .boxed()
    }

    fn create<'a>(&'a self, scope: &'a Scope, job: NewJob<'a>) -> Answer<'a, String> {
        async move {
            let region = &place(scope);
            let (name, tags) = (job.name, job.tags);
            self.call("CreateProcessingJob", region, name)?;
            let key = (region.to_string(), name.to_string());
            if self.state().jobs.contains_key(&key) {
                return Err(aws_error(
                    "CreateProcessingJob",
                    ErrorClass::Invalid,
                    "ResourceInUse",
                    "Job name must be unique within an AWS account and region",
                ));
            }
            // The job carries the user's tags and the controller's, as SageMaker stores them.
            let tags: Vec<(&str, &str)> = job
                .spec
                .tags
                .iter()
                .flatten()
                .chain(tags.iter())
                .map(|t| (t.key.as_str(), t.value.as_str()))
                .collect();
            self.insert(region, name, JobStatus::InProgress, &tags);
            Ok(arn_of(region, name))
        }
        .boxed()
    }

    fn describe<'a>(&'a self, scope: &'a Scope, name: &'a str) -> Answer<'a, JobState> {
        async move {
            let region = &place(scope);
            self.call("DescribeProcessingJob", region, name)?;
            let s = self.state();
            s.jobs
                .get(&(region.to_string(), name.to_string()))
                .map(|(j, _)| j.clone())
                .ok_or_else(|| missing("DescribeProcessingJob", name))
        }
        .boxed()
    }

    fn stop<'a>(&'a self, scope: &'a Scope, name: &'a str) -> Answer<'a, ()> {
        async move {
            let region = &place(scope);
            self.call("StopProcessingJob", region, name)?;
            let mut s = self.state();
            match s.jobs.get_mut(&(region.to_string(), name.to_string())) {
                Some((j, _)) => {
                    j.status = JobStatus::Stopping;
                    Ok(())
                }
                None => Err(missing("StopProcessingJob", name)),
            }
        }
        .boxed()
    }

    fn add_tag<'a>(&'a self, scope: &'a Scope, arn: &'a str, tag: (&'a str, &'a str)) -> Answer<'a, ()> {
        async move {
            let region = &place(scope);
            self.call("AddTags", region, arn)?;
            let mut s = self.state();
            match s.jobs.values_mut().find(|(j, _)| j.arn.as_deref() == Some(arn)) {
                // As SageMaker: a key already there is overwritten; a job carries at most 50 tags.
                Some((_, tags)) => match tags.iter().position(|(k, _)| k == tag.0) {
                    Some(i) => {
                        tags[i].1 = tag.1.to_string();
                        Ok(())
                    }
                    None if tags.len() >= crate::job::MAX_JOB_TAGS => Err(aws_error(
                        "AddTags",
                        ErrorClass::Invalid,
                        "ValidationException",
                        "1 validation error detected: Value at 'tags' failed to satisfy constraint: Member must have length less than or equal to 50",
                    )),
                    None => {
                        tags.push((tag.0.to_string(), tag.1.to_string()));
                        Ok(())
                    }
                },
                None => Err(missing("AddTags", arn)),
            }
        }
        .boxed()
    }

    fn tags<'a>(&'a self, scope: &'a Scope, arn: &'a str) -> Answer<'a, Vec<(String, String)>> {
        async move {
            let region = &place(scope);
            self.call("ListTags", region, arn)?;
            let s = self.state();
            Ok(s.jobs
                .values()
                .find(|(j, _)| j.arn.as_deref() == Some(arn))
                .map(|(_, t)| t.clone())
                .unwrap_or_default())
        }
        .boxed()
    }
}

/// EC2 with nothing in it: every subnet and group of a job is missing (Error findings). Counts
/// the snapshots read (`.0`), records the subnets each was read for (`.1`), and counts the cache
/// drops asked for (`.2`).
#[derive(Clone, Default)]
struct EmptyNetwork(Arc<Mutex<u32>>, Arc<Mutex<Vec<Vec<String>>>>, Arc<Mutex<u32>>);

impl NetworkReader for EmptyNetwork {
    fn snapshot<'a>(&'a self, scope: &'a Scope, spec: &'a ProcessingJobSpec) -> Answer<'a, NetworkSnapshot> {
        async move {
            *self.0.lock().unwrap_or_else(|e| e.into_inner()) += 1;
            let subnets = spec.vpc_config().map(|v| v.subnets.clone()).unwrap_or_default();
            self.1.lock().unwrap_or_else(|e| e.into_inner()).push(subnets);
            Ok(NetworkSnapshot {
                region: scope.region.clone(),
                ..Default::default()
            })
        }
        .boxed()
    }

    fn forget(&self, _scope: &Scope) {
        *self.2.lock().unwrap_or_else(|e| e.into_inner()) += 1;
    }
}

/// IAM with one role for every job (complete unless a test says otherwise). Counts reads
/// (`.1`) and cache drops (`.2`).
#[derive(Clone)]
struct FakeRoles(Arc<Mutex<Arc<RoleFacts>>>, Arc<Mutex<u32>>, Arc<Mutex<u32>>);

const COMPLETE_ROLE_POLICY: &str = r#"{"Statement":[
  {"Effect":"Allow","Action":["ec2:*","s3:*","logs:*","ecr:*","kms:*"],"Resource":"*"}]}"#;

impl Default for FakeRoles {
    fn default() -> Self {
        let documents = RoleDocuments {
            arn: "arn:aws:iam::123456789012:role/job".into(),
            trust_policy: r#"{"Statement":[{"Effect":"Allow","Principal":{"Service":"sagemaker.amazonaws.com"},"Action":"sts:AssumeRole"}]}"#.into(),
            policies: vec![NamedDocument {
                name: "complete".into(),
                document: COMPLETE_ROLE_POLICY.into(),
            }],
            boundary: None,
        };
        Self(
            Arc::new(Mutex::new(Arc::new(RoleFacts::Read(Arc::new(documents))))),
            Arc::default(),
            Arc::default(),
        )
    }
}

impl FakeRoles {
    fn set(&self, facts: RoleFacts) {
        *self.0.lock().unwrap_or_else(|e| e.into_inner()) = Arc::new(facts);
    }

    fn reads(&self) -> u32 {
        *self.1.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn forgets(&self) -> u32 {
        *self.2.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl RoleReader for FakeRoles {
    fn role<'a>(&'a self, _scope: &'a Scope, _arn: &'a str) -> futures::future::BoxFuture<'a, Arc<RoleFacts>> {
        async move {
            *self.1.lock().unwrap_or_else(|e| e.into_inner()) += 1;
            self.0.lock().unwrap_or_else(|e| e.into_inner()).clone()
        }
        .boxed()
    }

    fn forget(&self, _scope: &Scope) {
        *self.2.lock().unwrap_or_else(|e| e.into_inner()) += 1;
    }
}

/// CloudWatch Logs with fixed lines per job, or an error for every read. Counts reads.
#[derive(Clone, Default)]
struct FakeLogs(Arc<Mutex<Option<LogAnswer>>>, Arc<Mutex<u32>>);

/// What the fake CloudWatch Logs answers: the streams' lines, or an error of this class.
type LogAnswer = Result<Vec<StreamTail>, ErrorClass>;

impl FakeLogs {
    fn set(&self, tails: LogAnswer) {
        *self.0.lock().unwrap_or_else(|e| e.into_inner()) = Some(tails);
    }

    fn reads(&self) -> u32 {
        *self.1.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl JobLogs for FakeLogs {
    fn tail<'a>(&'a self, _scope: &'a Scope, _job_name: &'a str, _lines: i32) -> Answer<'a, Vec<StreamTail>> {
        async move {
            *self.1.lock().unwrap_or_else(|e| e.into_inner()) += 1;
            match &*self.0.lock().unwrap_or_else(|e| e.into_inner()) {
                None => Ok(Vec::new()),
                Some(Ok(tails)) => Ok(tails.clone()),
                Some(Err(class)) => Err(AwsError {
                    service: "logs",
                    operation: "DescribeLogStreams",
                    class: *class,
                    code: Some("AccessDeniedException".into()),
                    message: "not allowed".into(),
                }),
            }
        }
        .boxed()
    }
}

// ---------------------------------------------------------------------------------------------
// The harness.

struct Harness {
    api: FakeApi,
    sagemaker: FakeJobs,
    ec2: EmptyNetwork,
    roles: FakeRoles,
    logs: FakeLogs,
    ctx: Arc<Context>,
    /// Fills the namespace store the reconciler reads (as the namespace watch does); empty
    /// unless a test says otherwise, so that namespaces are read from the fake apiserver.
    namespaces: Mutex<
        kube::runtime::reflector::store::Writer<kube::core::PartialObjectMeta<k8s_openapi::api::core::v1::Namespace>>,
    >,
    /// What the tracker and the queue brought to the reconciler.
    triggers: Mutex<futures::channel::mpsc::UnboundedReceiver<kube::runtime::reflector::ObjectRef<Guarded>>>,
}

fn settings() -> Settings {
    Settings {
        namespace: Some(NS.into()),
        concurrency: 1,
        poll_interval: Duration::from_secs(5),
        default_region: Some(REGION.into()),
        revalidate_interval: Duration::from_secs(300),
        resync_interval: Duration::from_secs(600),
        credentials_retry_interval: Duration::from_secs(60),
        instance: None,
        orphan_sweep_interval: Duration::from_secs(600),
        stop_orphans: false,
        max_active_jobs_per_region: None,
        carm_namespace: "ack-system".into(),
    }
}

/// A ProcessingJob manifest; `extra` is merged into the spec.
fn manifest(name: &str, spec_extra: Value) -> Value {
    let mut spec = json!({
        "roleARN": "arn:aws:iam::123456789012:role/job",
        "appSpecification": {"imageURI": "123456789012.dkr.ecr.us-east-1.amazonaws.com/p:1"},
        "processingResources": {"clusterConfig": {"instanceCount": 1, "instanceType": "ml.m5.xlarge", "volumeSizeInGB": 30}},
    });
    if let (Some(base), Some(extra)) = (spec.as_object_mut(), spec_extra.as_object()) {
        for (k, v) in extra {
            base.insert(k.clone(), v.clone());
        }
    }
    json!({
        "apiVersion": "sagemaker.processing.dev/v1alpha1",
        "kind": "ProcessingJob",
        "metadata": {"name": name, "namespace": NS, "uid": format!("uid-{name}"), "generation": 1, "resourceVersion": "1",
            "creationTimestamp": "2026-11-28T09:00:00Z"},
        "spec": spec,
    })
}

fn with_vpc(mode: &str) -> Value {
    json!({
        "networkConfig": {"vpcConfig": {"subnets": ["subnet-1"], "securityGroupIDs": ["sg-1"]}},
        "networkValidation": {"mode": mode},
    })
}

impl Harness {
    fn new() -> Self {
        Self::with_settings(settings())
    }

    fn with_settings(settings: Settings) -> Self {
        let api = FakeApi::default();
        api.state().namespaces.insert(
            NS.into(),
            json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NS}}),
        );
        let sagemaker = FakeJobs::default();
        let ec2 = EmptyNetwork::default();
        let roles = FakeRoles::default();
        let logs = FakeLogs::default();
        let (tx, rx) = futures::channel::mpsc::unbounded();
        let tracker = Arc::new(tracker::Tracker::new(tx, settings.resync_interval));
        let (namespaces, writer) = kube::runtime::reflector::store();
        let ctx = Arc::new(
            Context::new(
                api.client(),
                Ports {
                    jobs: Arc::new(sagemaker.clone()),
                    network: Arc::new(ec2.clone()),
                    roles: Arc::new(roles.clone()),
                    logs: Arc::new(logs.clone()),
                },
                tracker,
                settings,
                Arc::new(crate::telemetry::metrics::Metrics::default()),
            )
            .with_namespaces(namespaces),
        );
        Self {
            api,
            sagemaker,
            ec2,
            roles,
            logs,
            ctx,
            namespaces: Mutex::new(writer),
            triggers: Mutex::new(rx),
        }
    }

    /// The namespace watch sees `ns` (a Namespace as JSON).
    fn namespace_watched(&self, ns: Value) {
        let meta = serde_json::from_value(ns).expect("namespace metadata");
        self.namespaces
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .apply_watcher_event(&kube::runtime::watcher::Event::Apply(meta));
    }

    fn apply(&self, obj: Value) {
        let name = obj["metadata"]["name"].as_str().unwrap_or_default().to_string();
        self.api.state().jobs.insert(name, obj);
    }

    fn object(&self, name: &str) -> Option<Value> {
        self.api.state().jobs.get(name).cloned()
    }

    fn job(&self, name: &str) -> ProcessingJob {
        serde_json::from_value(self.object(name).expect("the resource exists")).expect("a ProcessingJob")
    }

    fn status(&self, name: &str) -> crate::api::ProcessingJobStatus {
        self.job(name).status.unwrap_or_default()
    }

    fn condition(&self, name: &str, type_: &str) -> (String, String) {
        self.status(name)
            .conditions
            .iter()
            .find(|c| c.type_ == type_)
            .map(|c| (c.status.clone(), c.reason.clone()))
            .unwrap_or_default()
    }

    fn status_writes(&self) -> u32 {
        self.api.state().status_writes
    }

    fn event_reasons(&self) -> Vec<String> {
        self.api
            .state()
            .events
            .iter()
            .map(|e| e["reason"].as_str().unwrap_or_default().to_string())
            .collect()
    }

    /// One reconcile of the stored object, as the controller runs it (errors go through the
    /// error policy), and the Events it published, written.
    async fn reconcile(&self, name: &str) -> Result<Action, Error> {
        let result = self.reconcile_only(name).await;
        self.ctx.events.flush().await;
        result
    }

    /// [`Self::reconcile`] without waiting for its Events.
    async fn reconcile_only(&self, name: &str) -> Result<Action, Error> {
        let obj: Arc<Guarded> =
            Arc::new(serde_json::from_value(self.object(name).expect("the resource exists")).expect("guarded"));
        let result = reconcile(obj.clone(), self.ctx.clone()).await;
        if let Err(e) = &result {
            error_policy(obj, e, self.ctx.clone());
        }
        result
    }

    /// The first reconcile of a new resource: it adds the finalizer and goes on with the work.
    async fn admit(&self, name: &str) -> Result<Action, Error> {
        let result = self.reconcile(name).await;
        assert_eq!(
            self.object(name).map(|o| o["metadata"]["finalizers"].clone()),
            Some(json!([FINALIZER]))
        );
        result
    }

    /// Marks the resource deleted, as the apiserver does when finalizers hold it.
    fn delete(&self, name: &str) {
        if let Some(obj) = self.api.state().jobs.get_mut(name) {
            obj["metadata"]["deletionTimestamp"] = json!("2026-11-28T12:00:00Z");
            let generation = obj["metadata"]["generation"].as_i64().unwrap_or(1);
            obj["metadata"]["generation"] = json!(generation + 1);
        }
    }

    /// A user's edit of the spec: a new generation.
    fn edit_spec(&self, name: &str, field: &str, value: Value) {
        if let Some(obj) = self.api.state().jobs.get_mut(name) {
            obj["spec"][field] = value;
            let generation = obj["metadata"]["generation"].as_i64().unwrap_or(1);
            obj["metadata"]["generation"] = json!(generation + 1);
        }
    }

    /// The resources brought to the reconciler since the last call (tracker changes, queue
    /// wake-ups), by name.
    fn woken(&self) -> Vec<String> {
        let mut rx = self.triggers.lock().unwrap_or_else(|e| e.into_inner());
        let mut out = Vec::new();
        while let Ok(o) = rx.try_recv() {
            out.push(o.name);
        }
        out
    }

    fn reconciling_message(&self, name: &str) -> String {
        self.status(name)
            .conditions
            .iter()
            .find(|c| c.type_ == "Reconciling")
            .map(|c| c.message.clone())
            .unwrap_or_default()
    }

    fn snapshots_read(&self) -> u32 {
        *self.ec2.0.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn annotate(&self, name: &str, key: &str, value: &str) {
        if let Some(obj) = self.api.state().jobs.get_mut(name) {
            obj["metadata"]["annotations"][key] = json!(value);
        }
    }

    /// Reconciles `times` more and returns (SageMaker calls, status writes) they made.
    async fn quiet_window(&self, name: &str, times: usize) -> (Vec<&'static str>, u32) {
        let (calls, writes) = (self.sagemaker.calls().len(), self.status_writes());
        for _ in 0..times {
            let _ = self.reconcile(name).await;
        }
        (self.sagemaker.calls()[calls..].to_vec(), self.status_writes() - writes)
    }
}

fn is_backoff(r: &Result<Action, Error>, reason: &str) -> bool {
    matches!(r, Err(e) if e.reason() == reason)
}

// ---------------------------------------------------------------------------------------------
// Create.

/// A new resource goes from apply to Submitted in one reconcile and two writes: the finalizer
/// with the write-ahead (one metadata patch), the create, the status — not a finalizer, a trip
/// through the queue, then the rest (docs/performance.md).
#[tokio::test]
async fn a_new_resource_gets_its_finalizer_and_its_job_in_one_reconcile() {
    let h = Harness::new();
    h.apply(manifest("once", json!({})));
    h.reconcile("once").await.expect("reconcile");
    let obj = h.object("once").unwrap_or_default();
    assert_eq!(obj["metadata"]["finalizers"], json!([FINALIZER]));
    let name = h.status("once").processing_job_name.unwrap_or_default();
    assert_eq!(
        obj["metadata"]["annotations"][crate::api::JOB_ANNOTATION],
        json!(format!("{REGION}/{name}"))
    );
    assert_eq!(h.sagemaker.calls(), ["CreateProcessingJob"]);
    assert_eq!(h.status("once").phase, Some(JobPhase::Created));
    assert_eq!(
        h.api.state().metadata_writes,
        1,
        "the finalizer and the write-ahead together"
    );
    assert_eq!(h.status_writes(), 1, "Submitted");
}

/// A new resource that is not created now still gets its finalizer, and no write-ahead: its
/// finalizer, then its status.
#[tokio::test]
async fn a_new_resource_that_waits_gets_its_finalizer_before_its_status() {
    let h = Harness::new();
    h.annotate_namespace(json!({guard::ALLOWED_SUBNETS: "subnet-other"}));
    h.apply(manifest("held", with_vpc("Enforce")));
    h.admit("held").await.expect("reconcile");
    assert_eq!(h.status("held").phase, Some(JobPhase::Blocked));
    let obj = h.object("held").unwrap_or_default();
    assert!(
        obj["metadata"]["annotations"][crate::api::JOB_ANNOTATION].is_null(),
        "{obj}"
    );
    let metadata_writes = h.api.state().metadata_writes;
    assert_eq!((metadata_writes, h.status_writes()), (1, 1));
    assert!(h.sagemaker.calls().is_empty());
}

/// The namespace comes from the namespace watch's store, not from a GET per reconcile; a
/// namespace the store has not seen is read from the apiserver.
#[tokio::test]
async fn a_namespace_the_watch_has_seen_is_not_read_again() {
    let h = Harness::new();
    h.apply(manifest("unseen", with_vpc("Enforce")));
    h.admit("unseen").await.expect("reconcile");
    assert_eq!(h.api.state().namespace_reads, 1, "not in the store: read");

    // The store's copy is the one used: its guard annotation refuses the job, which the
    // apiserver's copy (no annotations) would not.
    h.namespace_watched(json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NS,
        "annotations": {guard::ALLOWED_SUBNETS: "subnet-other"}}}));
    h.apply(manifest("seen", with_vpc("Enforce")));
    h.admit("seen").await.expect("reconcile");
    assert_eq!(h.api.state().namespace_reads, 1, "no GET for a namespace in the store");
    assert_eq!(
        h.condition("seen", "Stalled"),
        ("True".into(), "NotAllowedInNamespace".into())
    );
}

/// Events are written in the background: a reconcile whose Events the apiserver does not take
/// yet still ends, with its status written, and the Events follow in order.
#[tokio::test]
async fn a_slow_event_sink_does_not_slow_the_reconcile() {
    let h = Harness::new();
    h.api.1.send_replace(false);
    h.apply(manifest("quick", json!({})));
    let reconciled = tokio::time::timeout(Duration::from_secs(5), h.reconcile_only("quick")).await;
    assert!(
        matches!(reconciled, Ok(Ok(_))),
        "the reconcile waited for its Events: {reconciled:?}"
    );
    assert_eq!(h.status("quick").phase, Some(JobPhase::Created));
    assert!(h.event_reasons().is_empty());
    h.api.1.send_replace(true);
    h.ctx.events.flush().await;
    assert_eq!(h.event_reasons(), ["NetworkValidated", "JobCreated"]);
}

/// The finalizer comes before anything exists in AWS: when the apiserver refuses it (the object
/// changed since it was read), nothing is created and nothing is written.
#[tokio::test]
async fn a_refused_finalizer_creates_nothing() {
    let h = Harness::new();
    let mut obj = manifest("stale", json!({}));
    obj["metadata"]["resourceVersion"] = json!("1");
    h.apply(obj);
    let read: Arc<Guarded> = Arc::new(serde_json::from_value(h.object("stale").expect("stored")).expect("guarded"));
    if let Some(stored) = h.api.state().jobs.get_mut("stale") {
        stored["metadata"]["resourceVersion"] = json!("2");
    }
    let result = reconcile(read, h.ctx.clone()).await;
    assert!(
        matches!(&result, Err(e) if e.reason() == "FinalizerError"),
        "{result:?}"
    );
    assert!(h.sagemaker.calls().is_empty(), "{:?}", h.sagemaker.calls());
    assert_eq!(h.status_writes(), 0);
}

#[tokio::test]
async fn a_new_job_is_recorded_before_it_is_created_once() {
    let h = Harness::new();
    h.apply(manifest("churn", json!({})));
    let action = h.admit("churn").await.expect("reconcile");
    assert_eq!(action, Action::requeue(Duration::from_secs(600)));
    assert_eq!(h.sagemaker.calls(), ["CreateProcessingJob"]);
    let s = h.status("churn");
    assert_eq!(s.phase, Some(JobPhase::Created));
    let name = s.processing_job_name.clone().unwrap_or_default();
    assert!(name.starts_with("churn-"), "{name}");
    assert_eq!(s.processing_job_arn, Some(arn_of(REGION, &name)));
    assert_eq!(s.region.as_deref(), Some(REGION));
    assert_eq!(s.processing_job_status.as_deref(), Some("InProgress"));
    // The write-ahead (in the metadata, with the finalizer), then the created status.
    assert_eq!(
        h.object("churn")
            .map(|o| o["metadata"]["annotations"][crate::api::JOB_ANNOTATION].clone()),
        Some(json!(format!("{REGION}/{name}")))
    );
    assert_eq!(h.status_writes(), 1);
    assert_eq!(h.condition("churn", "Submitted"), ("True".into(), "Created".into()));
    assert!(h
        .ctx
        .tracker
        .is_tracked(&own_key(), s.processing_job_name.as_deref().unwrap_or_default()));
    assert!(h.event_reasons().contains(&"JobCreated".to_string()));
}

/// The storm of issue #19: a refusal used to be retried on every reconcile its own status write
/// triggered. Now every later reconcile (own writes, timers, restarts) is free.
#[tokio::test]
async fn refusals_by_sagemaker_are_final_and_quiet() {
    // A spec SageMaker rejects; something the job names (a feature group) does not exist.
    for (class, code) in [
        (ErrorClass::Invalid, "ValidationException"),
        (ErrorClass::NotFound, "ResourceNotFound"),
    ] {
        let h = Harness::new();
        h.apply(manifest("refused", json!({})));
        h.sagemaker.fail("CreateProcessingJob", 1, class, code);
        assert_eq!(h.admit("refused").await.ok(), Some(Action::await_change()), "{code}");
        assert_eq!(h.status("refused").phase, Some(JobPhase::Refused), "{code}");
        assert_eq!(h.condition("refused", "Stalled"), ("True".into(), "InvalidSpec".into()));
        assert!(h.event_reasons().contains(&"AwsError".to_string()), "{code}");
        let (calls, writes) = h.quiet_window("refused", 20).await;
        assert!(
            calls.is_empty(),
            "{code}: a refused job calls SageMaker again: {calls:?}"
        );
        assert_eq!(writes, 0, "{code}");
        assert_eq!(h.sagemaker.count("CreateProcessingJob"), 1, "{code}");
    }
}

#[tokio::test]
async fn a_name_owned_by_another_job_is_refused_once_and_then_quiet() {
    let h = Harness::new();
    h.apply(manifest("clash", json!({"processingJobName": "shared-name"})));
    h.sagemaker.insert(
        REGION,
        "shared-name",
        JobStatus::InProgress,
        &[(TAG_UID, "someone-else")],
    );
    h.admit("clash").await.expect("reconcile");
    assert_eq!(
        h.sagemaker.calls(),
        ["CreateProcessingJob", "DescribeProcessingJob", "ListTags"]
    );
    let s = h.status("clash");
    assert_eq!(s.phase, Some(JobPhase::Refused));
    assert_eq!(
        s.processing_job_arn, None,
        "another job's ARN is never recorded as ours"
    );
    assert_eq!(h.condition("clash", "Stalled"), ("True".into(), "JobNameInUse".into()));
    let (calls, writes) = h.quiet_window("clash", 20).await;
    assert!(calls.is_empty() && writes == 0, "{calls:?} {writes}");
    // Deleting the resource leaves the other job alone.
    h.delete("clash");
    h.reconcile("clash").await.expect("released");
    assert!(h.object("clash").is_none());
    assert_eq!(h.sagemaker.count("StopProcessingJob"), 0);
}

#[tokio::test]
async fn ack_adoption_annotation_adopts_an_existing_job() {
    let h = Harness::new();
    h.apply(manifest("adopt", json!({"processingJobName": "legacy-job"})));
    h.annotate("adopt", ACK_ADOPTION_POLICY_ANNOTATION, "adopt");
    h.sagemaker.insert(REGION, "legacy-job", JobStatus::InProgress, &[]);
    h.admit("adopt").await.expect("reconcile");
    let s = h.status("adopt");
    assert_eq!(s.phase, Some(JobPhase::Adopted));
    assert_eq!(
        s.processing_job_arn.as_deref(),
        Some(arn_of(REGION, "legacy-job").as_str())
    );
    assert_eq!(h.condition("adopt", "Submitted"), ("True".into(), "Adopted".into()));
    // Adopted jobs are stopped on delete like our own.
    h.delete("adopt");
    assert!(is_backoff(&h.reconcile("adopt").await, "WaitingForStop"));
    assert_eq!(h.sagemaker.count("StopProcessingJob"), 1);
}

#[tokio::test]
async fn a_crash_after_create_adopts_the_job_instead_of_creating_twice() {
    let h = Harness::new();
    h.apply(manifest("crash", json!({"processingJobName": "crash-job"})));
    h.admit("crash").await.expect("reconcile");
    // Simulate a crash right after CreateProcessingJob: no status was written, only the
    // write-ahead in the metadata records the job.
    if let Some(obj) = h.api.state().jobs.get_mut("crash") {
        obj.as_object_mut().map(|o| o.remove("status"));
    }
    assert_eq!(
        h.object("crash")
            .map(|o| o["metadata"]["annotations"][crate::api::JOB_ANNOTATION].clone()),
        Some(json!(format!("{REGION}/crash-job")))
    );
    h.reconcile("crash").await.expect("reconcile");
    assert_eq!(h.sagemaker.count("CreateProcessingJob"), 1);
    assert_eq!(h.status("crash").phase, Some(JobPhase::Adopted));
    assert!(h.status("crash").processing_job_arn.is_some());
}

/// SageMaker throttles a create: it is sent again in the same reconcile, at the pace the
/// throttling taught (nothing was created, so nothing is looked for), and the pace holds for
/// the creates after it.
#[tokio::test]
async fn a_throttled_create_is_sent_again_at_the_pace_sagemaker_took() {
    let h = Harness::new();
    h.apply(manifest("slow", json!({"processingJobName": "slow-job"})));
    h.sagemaker
        .fail("CreateProcessingJob", 1, ErrorClass::Throttled, "ThrottlingException");
    let started = std::time::Instant::now();
    h.admit("slow").await.expect("created");
    assert_eq!(h.sagemaker.calls(), ["CreateProcessingJob", "CreateProcessingJob"]);
    assert_eq!(h.status("slow").phase, Some(JobPhase::Created));
    assert!(
        started.elapsed() >= Duration::from_millis(900),
        "sent again at once: {:?}",
        started.elapsed()
    );
    assert!(pacer(&h).rate(&own_key()).is_some());
}

/// Throttled on every attempt: the create is given up for now, quietly, and its write-ahead
/// taken back (nothing was created), so the next attempt creates without looking first.
#[tokio::test]
async fn a_create_throttled_on_every_attempt_comes_back_without_a_look() {
    let h = Harness::new();
    h.apply(manifest("busy", json!({"processingJobName": "busy-job"})));
    h.sagemaker
        .fail("CreateProcessingJob", 3, ErrorClass::Throttled, "ThrottlingException");
    assert!(is_backoff(&h.admit("busy").await, "AwsThrottled"));
    assert_eq!(h.sagemaker.count("CreateProcessingJob"), 3);
    assert!(
        h.object("busy")
            .is_some_and(|o| o["metadata"]["annotations"][crate::api::JOB_ANNOTATION].is_null()),
        "the write-ahead is taken back"
    );
    // Its paced time has come (the pace itself is `pace.rs`'s).
    *pacer(&h) = pace::Pacer::default();
    h.reconcile("busy").await.expect("created");
    assert_eq!(h.sagemaker.count("DescribeProcessingJob"), 0);
    assert_eq!(h.status("busy").phase, Some(JobPhase::Created));
}

/// A send time further than a short wait is not waited for in a reconcile slot: the job comes
/// back then, with nothing sent or recorded.
#[tokio::test]
async fn a_create_paced_far_ahead_comes_back_at_its_time_with_nothing_written() {
    let h = Harness::new();
    let t0 = std::time::Instant::now();
    {
        let mut pacer = pacer(&h);
        pacer.throttled(&own_key(), t0, t0);
        // The next send times are taken by others.
        for _ in 0..4 {
            let _ = pacer.reserve(&own_key(), t0, Duration::from_secs(60));
        }
    }
    h.apply(manifest("later", json!({})));
    let action = h.admit("later").await.expect("paced");
    assert_ne!(action, Action::await_change());
    assert!(h.sagemaker.calls().is_empty());
    assert!(h
        .object("later")
        .is_some_and(|o| o["metadata"]["annotations"][crate::api::JOB_ANNOTATION].is_null()));
    assert_eq!(h.status_writes(), 0);
}

fn pacer(h: &Harness) -> std::sync::MutexGuard<'_, pace::Pacer> {
    h.ctx.pacer.lock().unwrap_or_else(|e| e.into_inner())
}

/// The write-ahead outranks what the status showed before the create: a job created while its
/// status said Blocked (the status write after the create failed, or the controller stopped) is
/// looked for and kept — even when its network is refused now — not left running untracked.
#[tokio::test]
async fn a_created_job_whose_status_still_shows_the_block_before_is_found() {
    let h = Harness::new();
    h.apply(manifest("late", json!({"processingJobName": "late-job"})));
    h.admit("late").await.expect("reconcile");
    assert_eq!(h.sagemaker.count("CreateProcessingJob"), 1);
    if let Some(obj) = h.api.state().jobs.get_mut("late") {
        obj["status"] = json!({"phase": "Blocked", "observedGeneration": 1});
    }
    h.ctx.tracker.untrack(&own_key(), "late-job");
    // The namespace refuses the job's network now.
    h.annotate_namespace(json!({guard::ALLOWED_SUBNETS: "subnet-other"}));
    h.reconcile("late").await.expect("reconcile");
    assert_eq!(h.sagemaker.count("CreateProcessingJob"), 1);
    let s = h.status("late");
    assert_eq!(s.phase, Some(JobPhase::Adopted), "{s:?}");
    assert_eq!(s.processing_job_name.as_deref(), Some("late-job"));
    assert!(h.ctx.tracker.is_tracked(&own_key(), "late-job"));
}

/// The write-ahead's value: `<region>/<name>`, with the account first when the job lives in
/// another account; a value the controller did not write is no job.
#[test]
fn a_write_ahead_names_region_account_and_job() {
    let own = JobRef {
        name: "j".into(),
        region: REGION.into(),
        account: None,
    };
    let other = JobRef {
        account: Some("210987654321".into()),
        ..own.clone()
    };
    assert_eq!(own.pin(), "us-east-1/j");
    assert_eq!(other.pin(), "210987654321/us-east-1/j");
    for at in [own, other] {
        assert_eq!(JobRef::from_pin(&at.pin()), Some(at));
    }
    for foreign in ["", "j", "us-east-1/", "/j", "a/b/c/d"] {
        assert_eq!(JobRef::from_pin(foreign), None, "{foreign:?}");
    }
}

#[tokio::test]
async fn a_write_ahead_without_a_job_creates_it_in_the_recorded_region() {
    let h = Harness::new();
    h.apply(manifest("wa", json!({"processingJobName": "wa-job"})));
    if let Some(obj) = h.api.state().jobs.get_mut("wa") {
        obj["metadata"]["finalizers"] = json!([FINALIZER]);
        obj["status"] =
            json!({"phase": "Creating", "processingJobName": "wa-job", "region": "eu-west-1", "observedGeneration": 1});
    }
    h.reconcile("wa").await.expect("reconcile");
    assert_eq!(h.sagemaker.calls(), ["DescribeProcessingJob", "CreateProcessingJob"]);
    assert!(h.sagemaker.regions().iter().all(|r| r == "eu-west-1"));
    assert_eq!(h.status("wa").region.as_deref(), Some("eu-west-1"));
}

#[tokio::test]
async fn a_lost_create_answer_keeps_the_write_ahead_and_looks_first_next_time() {
    let h = Harness::new();
    h.apply(manifest("lost", json!({"processingJobName": "lost-job"})));
    h.sagemaker
        .fail("CreateProcessingJob", 1, ErrorClass::Transient, "InternalFailure");
    assert!(is_backoff(&h.admit("lost").await, "AwsUnavailable"));
    assert_eq!(
        h.object("lost")
            .map(|o| o["metadata"]["annotations"][crate::api::JOB_ANNOTATION].clone()),
        Some(json!(format!("{REGION}/lost-job"))),
        "the job may exist: the write-ahead stays"
    );
    assert_eq!(h.status_writes(), 0, "the first retries are quiet");
    h.reconcile("lost").await.expect("reconcile");
    assert_eq!(
        h.sagemaker.calls(),
        ["CreateProcessingJob", "DescribeProcessingJob", "CreateProcessingJob"]
    );
    assert_eq!(h.status("lost").phase, Some(JobPhase::Created));
}

/// A region that does not exist or an endpoint that does not resolve: the SDK answers with a
/// dispatch failure (a transient class); retried with backoff, and said in status and an Event
/// once it persists — never an endless silent retry.
#[tokio::test]
async fn an_unreachable_endpoint_gets_a_home_in_status_once_it_persists() {
    let h = Harness::new();
    h.apply(manifest("dns", json!({"processingJobName": "dns-job"})));
    h.sagemaker
        .fail("CreateProcessingJob", 10, ErrorClass::Transient, "DispatchFailure");
    assert!(is_backoff(&h.admit("dns").await, "AwsUnavailable"));
    assert!(
        !h.event_reasons().contains(&"AwsError".to_string()),
        "the first failures are quiet"
    );
    for _ in 0..3 {
        assert!(is_backoff(&h.reconcile("dns").await, "AwsUnavailable"));
    }
    assert_eq!(
        h.condition("dns", "Reconciling"),
        ("True".into(), "AwsUnavailable".into())
    );
    let warnings = h.event_reasons().iter().filter(|r| *r == "AwsError").count();
    assert_eq!(warnings, 1, "one Event when the problem appears, not one per retry");
    let s = h.status("dns");
    assert_eq!(
        s.phase,
        Some(JobPhase::Creating),
        "the job may exist: name and region stay"
    );
    assert_eq!(s.processing_job_name.as_deref(), Some("dns-job"));
}

#[tokio::test]
async fn refused_credentials_on_create_wait_on_their_timer_without_a_job() {
    let h = Harness::new();
    h.apply(manifest("creds", json!({})));
    h.sagemaker.fail(
        "CreateProcessingJob",
        1,
        ErrorClass::Credentials,
        "AccessDeniedException",
    );
    let action = h.admit("creds").await.expect("reconcile");
    assert_eq!(action, Action::requeue(Duration::from_secs(60)));
    assert_eq!(h.status("creds").phase, Some(JobPhase::Pending));
    assert_eq!(
        h.condition("creds", "Reconciling"),
        ("True".into(), "AwsCredentialsError".into())
    );
    h.reconcile("creds").await.expect("reconcile");
    assert_eq!(h.status("creds").phase, Some(JobPhase::Created));
    assert_eq!(h.sagemaker.count("CreateProcessingJob"), 2);
}

// ---------------------------------------------------------------------------------------------
// Quotas and caps.

/// SageMaker's answer over the instance quota, word for word.
const QUOTA_MESSAGE: &str = "The account-level service limit 'ml.m5.xlarge for processing job usage' is 2 Instances, with current utilization of 2 Instances and a request delta of 1 Instances. Please use AWS Service Quotas to request an increase for this quota.";

impl FakeJobs {
    fn refuse_for_quota(&self, times: usize) {
        let mut s = self.state();
        let queue = s.failures.entry("CreateProcessingJob").or_default();
        for _ in 0..times {
            queue.push_back(aws_error(
                "CreateProcessingJob",
                ErrorClass::LimitExceeded,
                "ResourceLimitExceeded",
                QUOTA_MESSAGE,
            ));
        }
    }
}

/// A job created at `minute` past nine, for the order of the queue.
fn manifest_at(name: &str, minute: u32) -> Value {
    let mut m = manifest(name, json!({}));
    m["metadata"]["creationTimestamp"] = json!(format!("2026-11-28T09:{minute:02}:00Z"));
    m
}

/// The job of `name` ends in SageMaker and the tracker sees it: its reconcile describes it.
async fn end(h: &Harness, name: &str) {
    let job = h.status(name).processing_job_name.unwrap_or_default();
    h.sagemaker.set_status(REGION, &job, JobStatus::Completed);
    h.ctx.tracker.mark_changed(&own_key(), &job);
    h.reconcile(name).await.expect("mirrored");
    assert_eq!(h.status(name).processing_job_status.as_deref(), Some("Completed"));
}

/// Issue #15: ResourceLimitExceeded is no failure: Queued (Reconciling, QuotaExceeded with
/// SageMaker's message), one Event for the whole stay, retried when capacity frees; nothing was
/// created, so nothing is recorded as a job and a delete releases at once.
#[tokio::test]
async fn a_create_refused_for_quota_is_queued_once_and_retried_when_capacity_frees() {
    let h = Harness::new();
    for running in ["first", "second"] {
        h.apply(manifest_at(running, 0));
        h.admit(running).await.expect("created");
    }
    h.apply(manifest_at("queued", 1));
    h.sagemaker.refuse_for_quota(2);
    let action = h.admit("queued").await.expect("queued, not an error");
    assert_eq!(action, Action::requeue(Duration::from_secs(30)), "the quota backoff");
    let s = h.status("queued");
    assert_eq!(s.phase, Some(JobPhase::Queued));
    assert_eq!(s.processing_job_name, None, "nothing was created: no job is recorded");
    assert_eq!(
        h.condition("queued", "Reconciling"),
        ("True".into(), "QuotaExceeded".into())
    );
    assert_eq!(h.condition("queued", "Ready"), ("False".into(), "QuotaExceeded".into()));
    assert_eq!(h.condition("queued", "Stalled").0, "False");
    assert!(h.reconciling_message("queued").contains(QUOTA_MESSAGE));
    let queued_events = |h: &Harness| h.event_reasons().iter().filter(|r| *r == "JobQueued").count();
    assert_eq!(queued_events(&h), 1);

    // Waiting for the backoff: no AWS call, no write.
    let (calls, writes) = h.quiet_window("queued", 5).await;
    assert!(calls.is_empty() && writes == 0, "{calls:?} {writes}");

    // A job of the lane ends: the queued job is woken at once and tries again.
    h.woken();
    end(&h, "first").await;
    assert_eq!(h.woken(), ["queued"], "the end of a job wakes the head of its lane");
    h.reconcile("queued").await.expect("refused again");
    assert_eq!(h.sagemaker.count("CreateProcessingJob"), 4);
    assert_eq!(h.status("queued").phase, Some(JobPhase::Queued));
    assert_eq!(
        queued_events(&h),
        1,
        "one Event per stay in the queue, not one per retry"
    );
    assert!(
        !h.event_reasons().contains(&"AwsError".to_string()),
        "{:?}",
        h.event_reasons()
    );

    // The next release lets it through.
    end(&h, "second").await;
    h.reconcile("queued").await.expect("created");
    assert_eq!(h.status("queued").phase, Some(JobPhase::Created));
    assert_eq!(h.condition("queued", "Submitted"), ("True".into(), "Created".into()));
}

#[tokio::test]
async fn deleting_a_queued_job_releases_it_at_once_and_passes_its_turn_on() {
    let h = Harness::new();
    h.apply(manifest_at("a", 1));
    h.apply(manifest_at("b", 2));
    h.sagemaker.refuse_for_quota(1);
    h.admit("a").await.expect("queued");
    h.admit("b").await.expect("queued behind a");
    assert_eq!(
        h.sagemaker.count("CreateProcessingJob"),
        1,
        "b waits behind a without a call"
    );
    assert_eq!(h.status("b").phase, Some(JobPhase::Queued));
    assert!(h.reconciling_message("b").contains(QUOTA_MESSAGE));
    let calls = h.sagemaker.calls().len();
    h.delete("a");
    h.reconcile("a").await.expect("released");
    assert!(h.object("a").is_none());
    assert_eq!(
        h.sagemaker.calls().len(),
        calls,
        "nothing exists: no call to release it"
    );
}

/// The namespace cap: over it, jobs wait Queued (ActiveJobLimit) in creation order without any
/// AWS call, and go when an active job ends.
#[tokio::test]
async fn the_namespace_cap_holds_jobs_without_aws_until_one_ends() {
    let h = Harness::new();
    h.annotate_namespace(json!({act::MAX_ACTIVE_JOBS_ANNOTATION: "1"}));
    h.apply(manifest_at("one", 0));
    h.admit("one").await.expect("created");
    h.apply(manifest_at("two", 1));
    h.apply(manifest_at("three", 2));
    h.admit("two").await.expect("held");
    h.admit("three").await.expect("held");
    assert_eq!(h.sagemaker.count("CreateProcessingJob"), 1);
    for name in ["two", "three"] {
        assert_eq!(h.status(name).phase, Some(JobPhase::Queued));
        assert_eq!(
            h.condition(name, "Reconciling"),
            ("True".into(), "ActiveJobLimit".into())
        );
        assert!(h.reconciling_message(name).contains("max-active-jobs"));
    }
    let (calls, _) = h.quiet_window("three", 3).await;
    assert!(calls.is_empty(), "{calls:?}");
    h.woken();
    end(&h, "one").await;
    assert_eq!(h.woken(), ["two"], "the oldest held job goes first");
    h.reconcile("three").await.expect("still held");
    assert_eq!(
        h.status("three").phase,
        Some(JobPhase::Queued),
        "three waits behind two"
    );
    h.reconcile("two").await.expect("created");
    assert_eq!(h.status("two").phase, Some(JobPhase::Created));
    h.reconcile("three").await.expect("held by two now");
    assert_eq!(h.status("three").phase, Some(JobPhase::Queued));
    assert_eq!(h.sagemaker.count("CreateProcessingJob"), 2);
}

#[tokio::test]
async fn the_region_cap_holds_jobs_of_every_namespace_and_a_bad_namespace_cap_holds_its_jobs() {
    let h = Harness::with_settings(Settings {
        max_active_jobs_per_region: Some(1),
        ..settings()
    });
    h.apply(manifest_at("one", 0));
    h.admit("one").await.expect("created");
    h.apply(manifest_at("two", 1));
    h.admit("two").await.expect("held");
    assert_eq!(
        h.condition("two", "Reconciling"),
        ("True".into(), "ActiveJobLimit".into())
    );
    assert!(h.reconciling_message("two").contains("--max-active-jobs-per-region"));
    assert_eq!(h.sagemaker.count("CreateProcessingJob"), 1);

    let h = Harness::new();
    h.annotate_namespace(json!({act::MAX_ACTIVE_JOBS_ANNOTATION: "ten"}));
    h.apply(manifest_at("typo", 0));
    h.admit("typo").await.expect("held");
    assert!(h.sagemaker.calls().is_empty());
    assert!(h.reconciling_message("typo").contains("is not a whole number"));
}

// ---------------------------------------------------------------------------------------------
// Validation.

#[tokio::test]
async fn a_broken_network_blocks_the_job_and_rechecks_only_on_its_timer() {
    let h = Harness::new();
    h.apply(manifest("net", with_vpc("Enforce")));
    let action = h.admit("net").await.expect("reconcile");
    assert_eq!(action, Action::requeue(Duration::from_secs(300)));
    assert!(h.sagemaker.calls().is_empty());
    assert_eq!(h.status("net").phase, Some(JobPhase::Blocked));
    assert_eq!(
        h.condition("net", "NetworkValidated"),
        ("False".into(), "NetworkInvalid".into())
    );
    assert!(h
        .status("net")
        .network
        .is_some_and(|n| n.findings.iter().any(|f| f.code == "SubnetNotFound")));
    let (calls, writes) = h.quiet_window("net", 5).await;
    assert!(calls.is_empty() && writes == 0, "{calls:?} {writes}");
}

#[tokio::test]
async fn the_revalidate_annotation_reads_the_network_afresh_once_per_value() {
    let h = Harness::new();
    h.apply(manifest("net", with_vpc("Enforce")));
    h.admit("net").await.expect("reconcile");
    let forgets = || *h.ec2.2.lock().unwrap_or_else(|e| e.into_inner());
    let reads = || *h.ec2.0.lock().unwrap_or_else(|e| e.into_inner());
    assert_eq!((reads(), forgets()), (1, 0), "a first validation uses the shared cache");

    h.annotate("net", crate::api::REVALIDATE_ANNOTATION, "fixed-the-route");
    h.reconcile("net").await.expect("reconcile");
    assert_eq!((reads(), forgets()), (2, 1), "a new value reads EC2 afresh");
    let network = h.status("net").network.expect("network status");
    assert_eq!(network.revalidation.as_deref(), Some("fixed-the-route"));

    // The same value again (a timer, another change): the cache is fine.
    h.reconcile("net").await.expect("reconcile");
    assert_eq!((reads(), forgets()), (3, 1));

    h.annotate("net", crate::api::REVALIDATE_ANNOTATION, "again");
    h.reconcile("net").await.expect("reconcile");
    assert_eq!((reads(), forgets()), (4, 2));
    assert_eq!(h.status("net").phase, Some(JobPhase::Blocked));
}

#[tokio::test]
async fn warn_mode_creates_despite_error_findings() {
    let h = Harness::new();
    h.apply(manifest("warn", with_vpc("Warn")));
    h.admit("warn").await.expect("reconcile");
    assert_eq!(h.sagemaker.count("CreateProcessingJob"), 1);
    assert_eq!(
        h.condition("warn", "NetworkValidated"),
        ("True".into(), "WarnMode".into())
    );
    assert_eq!(*h.ec2.0.lock().unwrap_or_else(|e| e.into_inner()), 1);
}

/// The escape hatch (issue #11 item 8): a job the network blocks under Enforce is created once
/// its mode is switched to Warn, and the status and an Event say why.
#[tokio::test]
async fn switching_a_blocked_job_to_warn_creates_it_and_says_so() {
    let h = Harness::new();
    h.apply(manifest("hatch", with_vpc("Enforce")));
    h.admit("hatch").await.expect("reconcile");
    assert_eq!(h.status("hatch").phase, Some(JobPhase::Blocked));
    assert!(h.sagemaker.calls().is_empty());
    h.edit_spec("hatch", "networkValidation", json!({"mode": "Warn"}));
    h.reconcile("hatch").await.expect("reconcile");
    assert_eq!(h.sagemaker.calls(), ["CreateProcessingJob"]);
    let s = h.status("hatch");
    assert_eq!((s.phase, s.observed_generation), (Some(JobPhase::Created), Some(2)));
    let validated = s
        .conditions
        .iter()
        .find(|c| c.type_ == "NetworkValidated")
        .cloned()
        .expect("NetworkValidated");
    assert_eq!(
        (validated.status.as_str(), validated.reason.as_str()),
        ("True", "WarnMode")
    );
    assert!(
        validated.message.contains("networkValidation.mode was changed to Warn")
            && validated.message.contains("SubnetNotFound"),
        "{}",
        validated.message
    );
    let events = h.api.state().events.clone();
    let warned = events
        .iter()
        .find(|e| e["reason"] == "NetworkValidated")
        .expect("an Event");
    assert_eq!(warned["type"], "Warning");
    assert!(
        warned["note"].as_str().is_some_and(|n| n.contains("changed to Warn")),
        "{warned}"
    );
    // The findings stay visible while the job runs.
    assert!(s
        .network
        .is_some_and(|n| n.findings.iter().any(|f| f.code == "SubnetNotFound")));
}

/// Once a job exists, a change of `networkValidation` or `deletionPolicy` is recorded as
/// observed and nothing else: no validation, no second create, no AWS call at all.
#[tokio::test]
async fn changing_the_knobs_of_a_created_job_revalidates_and_recreates_nothing() {
    let h = Harness::new();
    h.apply(manifest("knobs", with_vpc("Warn")));
    h.admit("knobs").await.expect("reconcile");
    let job = h.status("knobs").processing_job_name.unwrap_or_default();
    let (snapshots, calls, writes) = (h.snapshots_read(), h.sagemaker.calls().len(), h.status_writes());
    h.edit_spec("knobs", "networkValidation", json!({"mode": "Enforce"}));
    h.reconcile("knobs").await.expect("reconcile");
    h.edit_spec("knobs", "deletionPolicy", json!("Retain"));
    h.reconcile("knobs").await.expect("reconcile");
    assert_eq!(h.sagemaker.calls()[calls..], [] as [&str; 0]);
    assert_eq!(h.snapshots_read(), snapshots, "a created job was validated again");
    let s = h.status("knobs");
    assert_eq!((s.phase, s.observed_generation), (Some(JobPhase::Created), Some(3)));
    assert!(
        s.conditions.iter().all(|c| c.observed_generation == Some(3)),
        "{:?}",
        s.conditions
    );
    assert_eq!(
        h.condition("knobs", "NetworkValidated"),
        ("True".into(), "WarnMode".into())
    );
    assert_eq!(h.status_writes() - writes, 2, "one write per generation");
    let (calls, writes) = h.quiet_window("knobs", 5).await;
    assert!(calls.is_empty() && writes == 0, "{calls:?} {writes}");
    // Ended jobs too: the generation is recorded, nothing is called.
    h.sagemaker.set_status(REGION, &job, JobStatus::Completed);
    h.ctx.tracker.mark_changed(&own_key(), &job);
    h.reconcile("knobs").await.expect("reconcile");
    let calls = h.sagemaker.calls().len();
    h.edit_spec("knobs", "networkValidation", json!({"mode": "Skip"}));
    assert_eq!(h.reconcile("knobs").await.ok(), Some(Action::await_change()));
    assert_eq!(h.sagemaker.calls().len(), calls);
    assert_eq!(h.status("knobs").observed_generation, Some(4));
    assert_eq!(h.condition("knobs", "Ready"), ("True".into(), "Completed".into()));
    assert_eq!(h.sagemaker.count("CreateProcessingJob"), 1);
}

/// A stored object with a repeated subnet (the CRD refuses them now, older objects may have
/// them): EC2 is read once per subnet, so its free IPs are not counted twice.
#[tokio::test]
async fn repeated_subnets_are_read_once() {
    let h = Harness::new();
    let mut spec = with_vpc("Enforce");
    spec["networkConfig"]["vpcConfig"]["subnets"] = json!(["subnet-1", "subnet-2", "subnet-1"]);
    spec["networkConfig"]["vpcConfig"]["securityGroupIDs"] = json!(["sg-1", "sg-1"]);
    h.apply(manifest("repeated", spec));
    h.admit("repeated").await.expect("reconcile");
    let asked = h.ec2.1.lock().unwrap_or_else(|e| e.into_inner()).clone();
    assert_eq!(asked, [["subnet-1", "subnet-2"]]);
}

#[tokio::test]
async fn the_namespace_guard_refuses_before_any_aws_call() {
    let h = Harness::new();
    h.annotate_namespace(json!({guard::ALLOWED_ROLE_ARNS: "arn:aws:iam::123456789012:role/team-a-*"}));
    h.apply(manifest("guarded", with_vpc("Enforce")));
    h.admit("guarded").await.expect("reconcile");
    assert_eq!(h.status("guarded").phase, Some(JobPhase::Blocked));
    assert_eq!(
        h.condition("guarded", "Stalled"),
        ("True".into(), "NotAllowedInNamespace".into())
    );
    assert!(h.sagemaker.calls().is_empty());
    assert_eq!(
        *h.ec2.0.lock().unwrap_or_else(|e| e.into_inner()),
        0,
        "no EC2 read either"
    );
}

#[tokio::test]
async fn a_job_without_a_region_waits_and_says_how_to_set_one() {
    let h = Harness::with_settings(Settings {
        default_region: None,
        ..settings()
    });
    h.apply(manifest("noregion", json!({})));
    h.admit("noregion").await.expect("reconcile");
    let ready = h.status("noregion");
    let msg = ready
        .conditions
        .iter()
        .find(|c| c.type_ == "Ready")
        .map(|c| c.message.clone())
        .unwrap_or_default();
    assert!(
        msg.contains(crate::api::ACK_REGION_ANNOTATION) && msg.contains("new resource"),
        "{msg}"
    );
    assert!(h.sagemaker.calls().is_empty());
}

// ---------------------------------------------------------------------------------------------
// Mirror.

/// A created job, its SageMaker name.
async fn running(h: &Harness, name: &str) -> String {
    h.apply(manifest(name, json!({})));
    h.admit(name).await.expect("reconcile");
    h.status(name).processing_job_name.unwrap_or_default()
}

#[tokio::test]
async fn an_active_job_is_described_only_when_the_tracker_saw_a_change() {
    let h = Harness::new();
    let job = running(&h, "mirror").await;
    let (calls, writes) = h.quiet_window("mirror", 5).await;
    assert!(calls.is_empty() && writes == 0, "{calls:?} {writes}");
    h.sagemaker.set_status(REGION, &job, JobStatus::Completed);
    h.ctx.tracker.mark_changed(&own_key(), &job);
    assert_eq!(h.reconcile("mirror").await.ok(), Some(Action::await_change()));
    assert_eq!(h.status("mirror").processing_job_status.as_deref(), Some("Completed"));
    assert_eq!(h.condition("mirror", "Ready"), ("True".into(), "Completed".into()));
    assert!(!h.ctx.tracker.is_tracked(&own_key(), &job));
    // Ended: nothing, ever.
    let (calls, writes) = h.quiet_window("mirror", 10).await;
    assert!(calls.is_empty() && writes == 0, "{calls:?} {writes}");
}

#[tokio::test]
async fn a_state_from_a_sagemaker_event_is_mirrored_without_a_describe() {
    let h = Harness::new();
    let job = running(&h, "evented").await;
    let calls = h.sagemaker.calls().len();
    let event = JobState {
        name: job.clone(),
        status: JobStatus::Failed,
        failure_reason: Some("AlgorithmError: exit 1".into()),
        last_modified: Some("2030-01-01T00:00:00Z".into()),
        last_modified_epoch: Some(1_893_456_000.0),
        ..JobState::default()
    };
    assert!(h.ctx.tracker.observe_event(&own_key(), event).is_some());
    h.reconcile("evented").await.expect("reconcile");
    let s = h.status("evented");
    assert_eq!(s.processing_job_status.as_deref(), Some("Failed"));
    assert_eq!(s.failure_reason.as_deref(), Some("AlgorithmError: exit 1"));
    assert_eq!(s.last_modified_time.as_deref(), Some("2030-01-01T00:00:00Z"));
    assert_eq!(h.condition("evented", "Ready"), ("False".into(), "Failed".into()));
    assert!(
        !h.sagemaker.calls()[calls..].contains(&"DescribeProcessingJob"),
        "{:?}",
        h.sagemaker.calls()
    );
    assert!(!h.ctx.tracker.is_tracked(&own_key(), &job), "ended: untracked");
}

#[tokio::test]
async fn an_event_older_than_the_status_is_not_mirrored_over_it() {
    let h = Harness::new();
    let job = running(&h, "stale-event").await;
    h.ctx.tracker.mark_changed(&own_key(), &job);
    h.reconcile("stale-event").await.expect("reconcile");
    let known = h.status("stale-event").last_modified_time.clone();
    let known_epoch = known
        .as_deref()
        .and_then(crate::job::epoch_of)
        .expect("a described time");
    // A delayed event from before that describe (this reconcile's copy of the resource is newer
    // than what the consumer saw).
    let event = JobState {
        name: job.clone(),
        status: JobStatus::Stopping,
        last_modified_epoch: Some(known_epoch - 60.0),
        ..JobState::default()
    };
    h.ctx.tracker.observe_event(&own_key(), event);
    let calls = h.sagemaker.calls().len();
    h.reconcile("stale-event").await.expect("reconcile");
    assert_eq!(h.sagemaker.calls()[calls..], ["DescribeProcessingJob"]);
    let s = h.status("stale-event");
    assert_eq!(s.processing_job_status.as_deref(), Some("InProgress"));
    assert_eq!(s.last_modified_time, known);
}

fn events_with_notes(h: &Harness) -> Vec<(String, String)> {
    h.api
        .state()
        .events
        .iter()
        .map(|e| {
            (
                e["reason"].as_str().unwrap_or_default().to_string(),
                e["note"].as_str().unwrap_or_default().to_string(),
            )
        })
        .collect()
}

#[tokio::test]
async fn a_failure_matching_a_pattern_is_diagnosed_once_with_the_log_tail() {
    let h = Harness::new();
    let job = running(&h, "denied").await;
    h.logs.set(Ok(vec![StreamTail {
        stream: format!("{job}/algo-1-1700000000"),
        lines: vec![
            "reading s3://in/raw".into(),
            "botocore: AccessDenied on GetObject".into(),
        ],
    }]));
    // The role went away after the job was created.
    h.roles.set(RoleFacts::NotFound);
    let reads_before = h.roles.reads();
    h.sagemaker.fail_job(
        REGION,
        &job,
        "ClientError: Access Denied (Service: Amazon S3; Status Code: 403)",
    );
    h.ctx.tracker.mark_changed(&own_key(), &job);
    h.reconcile("denied").await.expect("reconcile");

    let s = h.status("denied");
    let diagnosis = s.diagnosis.clone().expect("a diagnosis");
    assert_eq!(diagnosis.pattern, "AccessDenied");
    assert!(
        diagnosis
            .likely_cause
            .starts_with("RoleNotFound on arn:aws:iam::123456789012:role/job"),
        "{}",
        diagnosis.likely_cause
    );
    assert_eq!(diagnosis.findings.len(), 1);
    // Read afresh: the cache was dropped, then the role read.
    assert_eq!(h.roles.forgets(), 1);
    assert_eq!(h.roles.reads(), reads_before + 1);
    assert_eq!(
        s.log_tail.as_deref(),
        Some("reading s3://in/raw\nbotocore: AccessDenied on GetObject")
    );
    let events = events_with_notes(&h);
    let failed = events.iter().find(|(r, _)| r == "JobFailed").expect("JobFailed");
    assert!(failed.1.contains("Access Denied"), "{}", failed.1);
    assert!(
        failed.1.ends_with("botocore: AccessDenied on GetObject"),
        "{}",
        failed.1
    );
    let diagnosed = events
        .iter()
        .find(|(r, _)| r == "FailureDiagnosed")
        .expect("FailureDiagnosed");
    assert!(diagnosed.1.starts_with("likely cause: RoleNotFound"), "{}", diagnosed.1);

    // Once: the ended job is never read again, logs and roles included.
    let (logs, roles) = (h.logs.reads(), h.roles.reads());
    let (calls, writes) = h.quiet_window("denied", 10).await;
    assert!(calls.is_empty() && writes == 0, "{calls:?} {writes}");
    assert_eq!((h.logs.reads(), h.roles.reads()), (logs, roles));
    assert_eq!(h.status("denied").diagnosis, Some(diagnosis));
}

#[tokio::test]
async fn a_failure_matching_no_pattern_gets_its_log_tail_and_no_guess() {
    let h = Harness::new();
    let job = running(&h, "algo").await;
    h.logs.set(Err(ErrorClass::Credentials));
    h.sagemaker
        .fail_job(REGION, &job, "AlgorithmError: ZeroDivisionError: division by zero");
    h.ctx.tracker.mark_changed(&own_key(), &job);
    h.reconcile("algo")
        .await
        .expect("logs unreadable never fail the reconcile");
    let s = h.status("algo");
    assert_eq!(s.diagnosis, None);
    assert_eq!(h.roles.forgets(), 0, "no pattern, no fresh read");
    let tail = s.log_tail.unwrap_or_default();
    assert!(tail.starts_with("the job's logs could not be read"), "{tail}");
    assert!(!h.event_reasons().contains(&"FailureDiagnosed".to_string()));
    assert_eq!(h.condition("algo", "Ready"), ("False".into(), "Failed".into()));
}

#[tokio::test]
async fn refused_credentials_while_mirroring_keep_the_job_in_status() {
    let h = Harness::new();
    let job = running(&h, "outage").await;
    let arn = h.status("outage").processing_job_arn;
    h.ctx.tracker.mark_changed(&own_key(), &job);
    h.sagemaker.fail(
        "DescribeProcessingJob",
        1,
        ErrorClass::Credentials,
        "ExpiredTokenException",
    );
    let action = h.reconcile("outage").await.expect("reconcile");
    assert_eq!(action, Action::requeue(Duration::from_secs(60)));
    let s = h.status("outage");
    assert_eq!(s.processing_job_arn, arn, "the ARN survives the outage");
    assert_eq!(s.phase, Some(JobPhase::Created));
    assert_eq!(s.processing_job_status.as_deref(), Some("InProgress"));
    assert_eq!(
        h.condition("outage", "Reconciling"),
        ("True".into(), "AwsCredentialsError".into())
    );
    assert_eq!(h.condition("outage", "Submitted"), ("True".into(), "Created".into()));
    // Credentials back: the next reconcile describes again and clears the problem.
    h.reconcile("outage").await.expect("reconcile");
    assert_eq!(
        h.condition("outage", "Reconciling"),
        ("True".into(), "InProgress".into())
    );
}

#[tokio::test]
async fn throttling_backs_off_quietly_then_says_so_beside_the_job() {
    let h = Harness::new();
    let job = running(&h, "throttled").await;
    h.sagemaker
        .fail("DescribeProcessingJob", 3, ErrorClass::Throttled, "ThrottlingException");
    let writes = h.status_writes();
    for _ in 0..2 {
        h.ctx.tracker.mark_changed(&own_key(), &job);
        assert!(is_backoff(&h.reconcile("throttled").await, "AwsThrottled"));
    }
    assert_eq!(h.status_writes(), writes, "the first retries are quiet");
    assert!(is_backoff(&h.reconcile("throttled").await, "AwsThrottled"));
    assert_eq!(
        h.condition("throttled", "Reconciling"),
        ("True".into(), "AwsThrottled".into())
    );
    assert!(h.status("throttled").processing_job_arn.is_some());
}

#[tokio::test]
async fn a_recorded_region_is_used_whatever_the_defaults_say_now() {
    let h = Harness::new();
    h.apply(manifest("pinned", json!({"processingJobName": "pinned-job"})));
    h.annotate("pinned", crate::api::ACK_REGION_ANNOTATION, "eu-central-1");
    h.admit("pinned").await.expect("reconcile");
    assert_eq!(h.status("pinned").region.as_deref(), Some("eu-central-1"));
    // The annotation (or the controller's default) changes afterwards.
    h.annotate("pinned", crate::api::ACK_REGION_ANNOTATION, "ap-south-1");
    h.ctx
        .tracker
        .mark_changed(&Scope::own("eu-central-1").key(), "pinned-job");
    h.reconcile("pinned").await.expect("reconcile");
    h.delete("pinned");
    assert!(is_backoff(&h.reconcile("pinned").await, "WaitingForStop"));
    assert!(
        h.sagemaker.regions().iter().all(|r| r == "eu-central-1"),
        "{:?}",
        h.sagemaker.state().calls
    );
}

// ---------------------------------------------------------------------------------------------
// Delete.

#[tokio::test]
async fn deleting_a_running_job_stops_it_and_waits_for_the_end() {
    let h = Harness::new();
    let job = running(&h, "stop").await;
    h.delete("stop");
    assert!(is_backoff(&h.reconcile("stop").await, "WaitingForStop"));
    assert_eq!(
        h.sagemaker.calls()[1..],
        ["DescribeProcessingJob", "ListTags", "StopProcessingJob"]
    );
    assert!(h.object("stop").is_some(), "the finalizer holds until the job ended");
    assert_eq!(h.status("stop").processing_job_status.as_deref(), Some("Stopping"));
    assert!(h.event_reasons().contains(&"JobStopping".to_string()));
    assert!(
        !h.event_reasons().contains(&"AwsError".to_string()),
        "a normal deletion is no AWS error: {:?}",
        h.event_reasons()
    );
    let waiting = crate::telemetry::metrics::ResultLabels { result: "waiting" };
    let errors = crate::telemetry::metrics::ReasonLabels {
        reason: "WaitingForStop",
    };
    assert_eq!(h.ctx.metrics.reconciles.get_or_create(&waiting).get(), 1);
    assert_eq!(
        h.ctx.metrics.errors.get_or_create(&errors).get(),
        0,
        "waiting for a stop is no reconcile error"
    );
    h.sagemaker.set_status(REGION, &job, JobStatus::Stopped);
    assert_eq!(h.reconcile("stop").await.ok(), Some(Action::await_change()));
    assert!(h.object("stop").is_none(), "released once stopped");
    assert_eq!(h.sagemaker.count("StopProcessingJob"), 1);
}

#[tokio::test]
async fn deletion_waits_while_aws_refuses_the_credentials() {
    let h = Harness::new();
    let job = running(&h, "blocked").await;
    let arn = h.status("blocked").processing_job_arn;
    h.delete("blocked");
    h.sagemaker.fail(
        "DescribeProcessingJob",
        3,
        ErrorClass::Credentials,
        "AccessDeniedException",
    );
    for _ in 0..3 {
        assert!(is_backoff(&h.reconcile("blocked").await, "AwsCredentialsError"));
        assert!(h.object("blocked").is_some(), "never released while AWS cannot answer");
    }
    let s = h.status("blocked");
    assert_eq!(s.processing_job_arn, arn);
    assert_eq!(
        h.condition("blocked", "Reconciling"),
        ("True".into(), "DeletionBlocked".into())
    );
    // Credentials back: the job is stopped, then the resource released.
    assert!(is_backoff(&h.reconcile("blocked").await, "WaitingForStop"));
    h.sagemaker.set_status(REGION, &job, JobStatus::Stopped);
    h.reconcile("blocked").await.expect("released");
    assert!(h.object("blocked").is_none());
    assert_eq!(h.sagemaker.count("StopProcessingJob"), 1);
}

#[tokio::test]
async fn retained_jobs_are_released_at_once_and_marked_as_retained() {
    let h = Harness::new();
    let job = running(&h, "keep").await;
    h.annotate("keep", crate::api::ACK_DELETION_POLICY_ANNOTATION, "retain");
    h.delete("keep");
    let calls = h.sagemaker.calls().len();
    h.reconcile("keep").await.expect("released");
    assert!(h.object("keep").is_none());
    // No Describe, no Stop: only the mark that tells the orphan sweep it was left on purpose.
    assert_eq!(h.sagemaker.calls()[calls..], ["AddTags"]);
    let tags = h.sagemaker.state().jobs[&(REGION.to_string(), job)].1.clone();
    assert!(tags.contains(&(crate::job::TAG_RETAINED.to_string(), "true".to_string())));
    assert!(h.event_reasons().contains(&"JobRetained".to_string()));
}

/// A job created with 47 user tags (the CRD allowed 47 before it left room for the retained
/// mark) carries SageMaker's 50: the retained tag is refused, and the mark goes into the UID
/// tag's value, so that the orphan sweep never takes the retained job for an orphan.
#[tokio::test]
async fn a_retained_job_without_room_for_the_retained_tag_is_still_marked() {
    let h = Harness::new();
    let tags: Vec<Value> = (0..47)
        .map(|i| json!({"key": format!("team-{i}"), "value": "x"}))
        .collect();
    h.apply(manifest("full", json!({"tags": tags, "deletionPolicy": "Retain"})));
    h.admit("full").await.expect("reconcile");
    let job = h.status("full").processing_job_name.unwrap_or_default();
    assert_eq!(h.sagemaker.state().jobs[&(REGION.to_string(), job.clone())].1.len(), 50);
    h.delete("full");
    h.reconcile("full").await.expect("released");
    assert!(h.object("full").is_none());
    let tags = h.sagemaker.state().jobs[&(REGION.to_string(), job)].1.clone();
    assert_eq!(tags.len(), 50, "no tag added beyond SageMaker's 50");
    assert!(crate::job::is_retained(&tags), "marked as retained: {tags:?}");
    let notes: Vec<String> = h.api.state().events.iter().map(|e| e["note"].to_string()).collect();
    assert!(
        !notes.iter().any(|n| n.contains("could not be marked")),
        "the mark was written: {notes:?}"
    );
}

/// The deletion policy in force at deletion applies, whatever it was at creation.
#[tokio::test]
async fn a_deletion_policy_changed_after_creation_applies_at_deletion() {
    let h = Harness::new();
    let job = running(&h, "late-retain").await;
    h.edit_spec("late-retain", "deletionPolicy", json!("Retain"));
    h.reconcile("late-retain").await.expect("reconcile");
    h.delete("late-retain");
    let calls = h.sagemaker.calls().len();
    h.reconcile("late-retain").await.expect("released");
    assert!(h.object("late-retain").is_none());
    assert_eq!(h.sagemaker.calls()[calls..], ["AddTags"], "the job was not stopped");
    assert_eq!(
        h.sagemaker.state().jobs[&(REGION.to_string(), job)].0.status,
        JobStatus::InProgress
    );
}

#[tokio::test]
async fn a_job_that_is_not_ours_is_never_stopped() {
    let h = Harness::new();
    let job = running(&h, "foreign").await;
    // The job under our name carries someone else's UID (re-created out of band).
    h.sagemaker
        .insert(REGION, &job, JobStatus::InProgress, &[(TAG_UID, "someone-else")]);
    h.delete("foreign");
    h.reconcile("foreign").await.expect("released");
    assert!(h.object("foreign").is_none());
    assert_eq!(h.sagemaker.count("StopProcessingJob"), 0);
    assert!(h.event_reasons().contains(&"JobNotOwned".to_string()));
}

#[tokio::test]
async fn a_job_gone_from_sagemaker_releases_the_resource() {
    let h = Harness::new();
    let job = running(&h, "gone").await;
    h.sagemaker.state().jobs.remove(&(REGION.to_string(), job));
    h.delete("gone");
    h.reconcile("gone").await.expect("released");
    assert!(h.object("gone").is_none());
}

#[tokio::test]
async fn never_created_jobs_are_released_without_a_call() {
    let h = Harness::new();
    h.apply(manifest("blocked-net", with_vpc("Enforce")));
    h.admit("blocked-net").await.expect("reconcile");
    h.delete("blocked-net");
    h.reconcile("blocked-net").await.expect("released");
    assert!(h.object("blocked-net").is_none());
    assert!(h.sagemaker.calls().is_empty());
}

// ---------------------------------------------------------------------------------------------
// Malformed objects and the watch filter.

#[tokio::test]
async fn a_malformed_object_is_reported_and_never_reaches_aws() {
    let h = Harness::new();
    let mut obj = manifest("broken", json!({}));
    obj["spec"]["processingResources"] = json!("not an object");
    h.apply(obj);
    assert_eq!(h.reconcile("broken").await.ok(), Some(Action::await_change()));
    assert!(h.sagemaker.calls().is_empty());
    assert!(h.event_reasons().contains(&"InvalidSpec".to_string()));
}

/// Makes the stored spec unreadable, as a schema tightening does to an object written before
/// it: a required field gone.
fn corrupt(h: &Harness, name: &str) {
    if let Some(obj) = h.api.state().jobs.get_mut(name) {
        obj["spec"].as_object_mut().map(|s| s.remove("appSpecification"));
    }
}

#[tokio::test]
async fn a_malformed_object_that_created_no_job_is_released_on_delete() {
    let h = Harness::new();
    h.apply(manifest("malformed-blocked", with_vpc("Enforce")));
    h.admit("malformed-blocked").await.expect("reconcile");
    assert_eq!(h.status("malformed-blocked").phase, Some(JobPhase::Blocked));
    corrupt(&h, "malformed-blocked");
    h.delete("malformed-blocked");
    assert_eq!(
        h.reconcile("malformed-blocked").await.ok(),
        Some(Action::await_change())
    );
    assert!(h.object("malformed-blocked").is_none(), "the finalizer is released");
    assert!(h.sagemaker.calls().is_empty());
}

#[tokio::test]
async fn a_malformed_object_whose_job_runs_keeps_its_finalizer_until_the_job_ends() {
    let h = Harness::new();
    let job = running(&h, "malformed-running").await;
    corrupt(&h, "malformed-running");
    h.delete("malformed-running");
    let calls = h.sagemaker.calls().len();
    h.reconcile("malformed-running").await.expect("held");
    let held = h.object("malformed-running").expect("still there");
    assert_eq!(held["metadata"]["finalizers"], json!([FINALIZER]));
    assert_eq!(
        h.sagemaker.calls()[calls..].to_vec(),
        vec!["DescribeProcessingJob"],
        "never stopped: the deletion policy cannot be read"
    );
    let said = h.api.state().events.iter().any(|e| {
        e["reason"] == "InvalidSpec"
            && e["note"]
                .as_str()
                .is_some_and(|n| n.contains(&format!("stop-processing-job --processing-job-name {job}")))
    });
    assert!(said, "the Event says how to get out: {:?}", h.api.state().events);
    // Stopped by hand: released.
    h.sagemaker.set_status(REGION, &job, JobStatus::Stopped);
    h.reconcile("malformed-running").await.expect("released");
    assert!(
        h.object("malformed-running").is_none(),
        "{:?}",
        h.object("malformed-running")
    );
}

#[test]
fn status_only_changes_do_not_bring_a_resource_back() {
    let guarded = |v: &Value| -> Guarded { serde_json::from_value(v.clone()).expect("guarded") };
    let base = manifest("w", json!({}));
    let key = crate::runtime::acts_on(&guarded(&base));
    let mut status_only = base.clone();
    status_only["status"] = json!({"phase": "Refused", "observedGeneration": 1});
    status_only["metadata"]["resourceVersion"] = json!("99");
    assert_eq!(crate::runtime::acts_on(&guarded(&status_only)), key);
    // The controller's own finalizer: the reconcile that added it already did the work.
    let mut ours = base.clone();
    ours["metadata"]["finalizers"] = json!([FINALIZER]);
    assert_eq!(crate::runtime::acts_on(&guarded(&ours)), key);
    for change in [
        json!({"generation": 2}),
        json!({"annotations": {"services.k8s.aws/region": "eu-west-1"}}),
        json!({"finalizers": ["example.com/another-controller"]}),
        json!({"deletionTimestamp": "2026-11-28T12:00:00Z"}),
    ] {
        let mut changed = base.clone();
        if let (Some(meta), Some(c)) = (changed["metadata"].as_object_mut(), change.as_object()) {
            for (k, v) in c {
                meta.insert(k.clone(), v.clone());
            }
        }
        assert_ne!(crate::runtime::acts_on(&guarded(&changed)), key, "{change}");
    }
}

#[tokio::test]
async fn retaining_a_job_whose_create_never_reached_sagemaker_retains_nothing() {
    let h = Harness::new();
    h.apply(manifest("never", json!({"processingJobName": "never-job"})));
    h.annotate("never", crate::api::ACK_DELETION_POLICY_ANNOTATION, "retain");
    // A write-ahead whose create never reached SageMaker (a crash, or a create that failed).
    if let Some(obj) = h.api.state().jobs.get_mut("never") {
        obj["metadata"]["finalizers"] = json!([FINALIZER]);
        obj["status"] =
            json!({"phase": "Creating", "processingJobName": "never-job", "region": REGION, "observedGeneration": 1});
    }
    h.delete("never");
    h.reconcile("never").await.expect("released");
    assert!(h.object("never").is_none());
    assert_eq!(h.sagemaker.calls(), ["DescribeProcessingJob"]);
    assert!(
        !h.event_reasons().contains(&"JobRetained".to_string()),
        "no job was retained: {:?}",
        h.event_reasons()
    );
}

#[tokio::test]
async fn one_validation_is_announced_once() {
    let h = Harness::new();
    running(&h, "once").await;
    let validated: Vec<Value> = h
        .api
        .state()
        .events
        .iter()
        .filter(|e| e["reason"] == "NetworkValidated")
        .cloned()
        .collect();
    assert_eq!(validated.len(), 1, "{validated:#?}");
    assert!(
        validated[0]["series"].is_null(),
        "announced again as a series: {validated:#?}"
    );
    assert_eq!(
        h.event_reasons(),
        ["NetworkValidated", "JobCreated"],
        "{:#?}",
        h.api.state().events
    );
}

// ---------------------------------------------------------------------------------------------
// Accounts (ACK's cross-account resource management).

const ACCOUNT_B: &str = "222222222222";
const ROLE_B: &str = "arn:aws:iam::222222222222:role/smpc-b";
const IN_B: &str = "222222222222:us-east-1";

impl Harness {
    /// The namespace's annotations, as the apiserver and the namespace watch see them.
    fn annotate_namespace(&self, annotations: Value) {
        self.api.state().namespaces.insert(
            NS.into(),
            json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NS, "annotations": annotations}}),
        );
        let annotations: BTreeMap<String, String> = serde_json::from_value(annotations).unwrap_or_default();
        self.ctx.accounts.set_namespace(NS, Some(&annotations));
    }

    fn map_account(&self, account: &str, role: &str) {
        let data = BTreeMap::from([(account.to_string(), role.to_string())]);
        self.ctx.accounts.set_map(crate::accounts::ACCOUNT_MAP, Some(data));
    }
}

#[tokio::test]
async fn an_unmapped_account_waits_without_any_aws_call_and_proceeds_once_mapped() {
    let h = Harness::new();
    h.annotate_namespace(json!({crate::accounts::OWNER_ACCOUNT_ANNOTATION: ACCOUNT_B}));
    h.apply(manifest("b", with_vpc("Warn")));
    h.admit("b").await.expect("reconcile");
    assert_eq!(h.status("b").phase, Some(JobPhase::Pending));
    assert_eq!(
        h.condition("b", "Reconciling"),
        ("True".into(), "AccountNotMapped".into())
    );
    let message = h.reconciling_message("b");
    for part in [
        "services.k8s.aws/owner-account-id",
        ACCOUNT_B,
        "ack-system/ack-role-account-map",
    ] {
        assert!(message.contains(part), "{part} in {message}");
    }
    assert!(
        h.event_reasons().contains(&"AccountNotMapped".to_string()),
        "{:?}",
        h.event_reasons()
    );
    assert!(
        h.sagemaker.calls().is_empty(),
        "nothing is sent anywhere: {:?}",
        h.sagemaker.calls()
    );
    assert_eq!(h.snapshots_read(), 0, "not even EC2 of the controller's own account");
    // Still unmapped: quiet (no write, no call).
    assert_eq!(h.quiet_window("b", 2).await, (vec![], 0));

    h.map_account(ACCOUNT_B, ROLE_B);
    h.reconcile("b").await.expect("reconcile");
    assert_eq!(h.sagemaker.calls(), ["AssumeRole", "CreateProcessingJob"]);
    assert!(
        h.sagemaker.regions().iter().all(|r| r == IN_B),
        "{:?}",
        h.sagemaker.regions()
    );
    assert_eq!(h.snapshots_read(), 1, "the network is read once the account is reached");
    let status = h.status("b");
    assert_eq!(status.account.as_deref(), Some(ACCOUNT_B), "pinned");
    assert_eq!(status.phase, Some(JobPhase::Created));
}

#[tokio::test]
async fn a_job_is_only_ever_read_or_stopped_in_the_account_it_was_created_in() {
    let h = Harness::new();
    h.annotate_namespace(json!({crate::accounts::OWNER_ACCOUNT_ANNOTATION: ACCOUNT_B}));
    h.map_account(ACCOUNT_B, ROLE_B);
    h.apply(manifest("b", json!({"processingJobName": "b-job"})));
    h.admit("b").await.expect("reconcile");
    assert_eq!(h.status("b").account.as_deref(), Some(ACCOUNT_B));
    // The namespace moves to another account, and B's mapping goes away.
    h.annotate_namespace(json!({crate::accounts::OWNER_ACCOUNT_ANNOTATION: "333333333333"}));
    h.map_account("333333333333", "arn:aws:iam::333333333333:role/smpc-c");
    h.ctx.tracker.mark_changed(
        &ScopeKey {
            account: Some(ACCOUNT_B.into()),
            region: REGION.into(),
        },
        "b-job",
    );
    let before = h.sagemaker.calls().len();
    h.reconcile("b").await.expect("reconcile");
    assert_eq!(h.sagemaker.calls().len(), before, "no Describe anywhere");
    assert_eq!(
        h.condition("b", "Reconciling"),
        ("True".into(), "AccountNotMapped".into())
    );
    assert_eq!(
        h.status("b").processing_job_status.as_deref(),
        Some("InProgress"),
        "kept"
    );
    h.delete("b");
    assert!(h.reconcile("b").await.is_err(), "deletion waits for the account");
    assert_eq!(
        h.sagemaker.count("StopProcessingJob"),
        0,
        "never a Stop in another account"
    );
    assert!(h.object("b").is_some());
    // B mapped again: its job is stopped there.
    h.map_account(ACCOUNT_B, ROLE_B);
    assert!(is_backoff(&h.reconcile("b").await, "WaitingForStop"));
    assert_eq!(h.sagemaker.count("StopProcessingJob"), 1);
    assert!(
        h.sagemaker.regions().iter().all(|r| r == IN_B),
        "{:?}",
        h.sagemaker.state().calls
    );
}

#[tokio::test]
async fn a_role_that_cannot_be_assumed_is_said_with_stss_message_and_retried_with_backoff() {
    let h = Harness::new();
    h.annotate_namespace(json!({crate::accounts::OWNER_ACCOUNT_ANNOTATION: ACCOUNT_B}));
    h.map_account(ACCOUNT_B, ROLE_B);
    {
        let mut s = h.sagemaker.state();
        s.failures.entry("AssumeRole").or_default().push_back(AwsError {
            service: "sts",
            operation: "AssumeRole",
            class: ErrorClass::Credentials,
            code: Some(crate::accounts::ASSUME_ROLE_FAILED.into()),
            message: format!("cannot assume {ROLE_B}: AccessDenied: not authorized to perform sts:AssumeRole"),
        });
    }
    h.apply(manifest("b", with_vpc("Warn")));
    let result = h.admit("b").await;
    assert!(
        matches!(&result, Err(e) if matches!(e.innermost(), Error::Aws(a) if a.operation == "AssumeRole")),
        "backoff: {result:?}"
    );
    assert_eq!(
        h.condition("b", "Reconciling"),
        ("True".into(), "AssumeRoleFailed".into())
    );
    assert!(h
        .reconciling_message("b")
        .contains("not authorized to perform sts:AssumeRole"));
    assert!(
        h.event_reasons().contains(&"AssumeRoleFailed".to_string()),
        "{:?}",
        h.event_reasons()
    );
    assert_eq!(h.sagemaker.calls(), ["AssumeRole"], "nothing created");
    assert_eq!(h.snapshots_read(), 0);
    // STS lets it through next time.
    h.reconcile("b").await.expect("reconcile");
    assert_eq!(h.sagemaker.count("CreateProcessingJob"), 1);
}

#[tokio::test]
async fn the_tenant_guard_still_applies_to_a_namespace_in_another_account() {
    let h = Harness::new();
    h.map_account(ACCOUNT_B, ROLE_B);
    h.annotate_namespace(json!({
        crate::accounts::OWNER_ACCOUNT_ANNOTATION: ACCOUNT_B,
        guard::ALLOWED_ROLE_ARNS: "arn:aws:iam::222222222222:role/team-b-*"}));
    h.apply(manifest("b", with_vpc("Enforce")));
    h.admit("b").await.expect("reconcile");
    assert_eq!(h.status("b").phase, Some(JobPhase::Blocked));
    assert_eq!(
        h.condition("b", "Stalled"),
        ("True".into(), "NotAllowedInNamespace".into())
    );
    assert!(
        h.sagemaker.calls().is_empty(),
        "refused before the role is even assumed"
    );
    // Allowed by the guard: created in B.
    h.annotate_namespace(json!({
        crate::accounts::OWNER_ACCOUNT_ANNOTATION: ACCOUNT_B,
        guard::ALLOWED_ROLE_ARNS: "arn:aws:iam::123456789012:role/*"}));
    h.apply(manifest("b2", json!({})));
    h.admit("b2").await.expect("reconcile");
    assert_eq!(h.sagemaker.calls(), ["AssumeRole", "CreateProcessingJob"]);
    assert!(h.sagemaker.regions().iter().all(|r| r == IN_B));
}
