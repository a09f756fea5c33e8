//! The simulator's state: jobs, their lifecycle, fault injection and call counters.
//!
//! Jobs are keyed by (account, region, name), as SageMaker's names are unique per account and
//! region. A job's lifecycle: created `InProgress` (its `ProcessingStartTime` set at creation,
//! or `provisioningSeconds` later), completed by itself after `inProgressSeconds` (counted from
//! creation), Stop → `Stopping` → `Stopped` after `stoppingSeconds`; or driven by the admin API.
//! Every change is kept in a short per-job history, from which a ListProcessingJobs lagging by
//! `listLagSeconds` answers.

use std::cmp::Ordering;
use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::http::StatusCode;
use rand::Rng;
use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};

use crate::shapes;
use crate::validate;

/// An error answered in SageMaker's JSON 1.1 shape.
#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub kind: &'static str,
    pub message: String,
}

impl ApiError {
    pub fn validation(message: impl Into<String>) -> Self {
        Self {
            status: StatusCode::BAD_REQUEST,
            kind: "ValidationException",
            message: message.into(),
        }
    }
    fn in_use(message: impl Into<String>) -> Self {
        Self {
            status: StatusCode::BAD_REQUEST,
            kind: "ResourceInUse",
            message: message.into(),
        }
    }
    fn not_found(name: &str) -> Self {
        Self::validation(format!("Could not find requested job with name {name}"))
    }
    fn throttling() -> Self {
        Self {
            status: StatusCode::BAD_REQUEST,
            kind: "ThrottlingException",
            message: "Rate exceeded".into(),
        }
    }
    /// SageMaker's answer to a create over the account's instance quota for a type.
    fn over_quota(instance_type: &str, quota: u32, used: u64, delta: u64) -> Self {
        Self {
            status: StatusCode::BAD_REQUEST,
            kind: "ResourceLimitExceeded",
            message: format!(
                "The account-level service limit '{instance_type} for processing job usage' is {quota} Instances, with current utilization of {used} Instances and a request delta of {delta} Instances. Please use AWS Service Quotas to request an increase for this quota."
            ),
        }
    }
    fn internal() -> Self {
        Self {
            status: StatusCode::INTERNAL_SERVER_ERROR,
            kind: "InternalFailure",
            message: "We encountered an internal error. Please try again.".into(),
        }
    }
    pub fn unknown_operation(target: &str) -> Self {
        Self {
            status: StatusCode::BAD_REQUEST,
            kind: "UnknownOperationException",
            message: format!("unsupported operation target '{target}'"),
        }
    }
    pub fn serialization(message: String) -> Self {
        Self {
            status: StatusCode::BAD_REQUEST,
            kind: "SerializationException",
            message,
        }
    }
}

/// Fault injection and timing, set with `PUT /_sim/config`. A member left out of the body takes
/// its default (0 or off, but `stoppingSeconds` 1, `regional` and `publishCreateEvent` on).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct SimConfig {
    /// A created job completes by itself this many seconds after its creation (0: stays
    /// InProgress).
    pub in_progress_seconds: f64,
    /// The Stopping → Stopped delay: a stopped job is Stopped this many seconds after the
    /// StopProcessingJob (default 1).
    pub stopping_seconds: f64,
    /// Share of API calls answered with ThrottlingException.
    pub throttle_rate: f64,
    /// Share of API calls answered with HTTP 500 InternalFailure.
    pub error_rate: f64,
    /// Latency added to every API call.
    pub latency_ms: u64,
    /// Creates allowed per second; more are throttled (0: unlimited).
    pub creates_per_second: f64,
    /// Answer every call with UnrecognizedClientException, as AWS does for bad credentials.
    pub reject_credentials: bool,
    /// Jobs are regional, as in SageMaker (the default): a call sees only the jobs of its
    /// region (the region of the request's SigV4 credential scope; the simulator's `--region`
    /// for an unsigned request), new jobs' ARNs name that region, and a name is unique per
    /// account and region. Off: every call sees every job of its account, whatever its region,
    /// and a name is unique per account.
    pub regional: bool,
    /// Instances of processing jobs allowed at once per instance type (e.g. `{"ml.c5.4xlarge":
    /// 2}`), counting the InstanceCount of InProgress and Stopping jobs (of the caller's region
    /// when `regional`): a create over it is answered `ResourceLimitExceeded`, as SageMaker
    /// does. Types not listed are unlimited.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub instance_quota: BTreeMap<String, u32>,
    /// ListProcessingJobs is eventually consistent by this many seconds: it answers with each
    /// job as it was `listLagSeconds` ago (a job created more recently is not listed yet), its
    /// filters included. Describe is always current.
    pub list_lag_seconds: f64,
    /// Share (0..1) of state-change events published twice, as EventBridge may deliver.
    pub duplicate_events: f64,
    /// Within one publishing tick, events are published in shuffled order.
    pub reorder_events: bool,
    /// Publish the InProgress event of a create (default on); off, a job's first event is its
    /// next change.
    pub publish_create_event: bool,
    /// A created job provisions for this many seconds: its `ProcessingStartTime` is absent
    /// until then, and is then `CreationTime + provisioningSeconds` (a change, with its
    /// LastModifiedTime and event; the status stays InProgress). 0: started at creation.
    pub provisioning_seconds: f64,
    /// Instance types the model lists but the region does not offer: a create with one is
    /// answered ValidationException, as SageMaker answers it (the model cannot say which types a
    /// region has; the message's wording is not verified against AWS).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub unavailable_instance_types: Vec<String>,
    /// SageMaker's clock runs this many seconds ahead of the machine's (negative: behind): every
    /// time it answers (CreationTime, LastModifiedTime, …) is shifted so, as an unsynchronised
    /// clock would have it. The controller measures the offset from List answers.
    pub clock_skew_seconds: f64,
}

impl Default for SimConfig {
    fn default() -> Self {
        Self {
            in_progress_seconds: 0.0,
            stopping_seconds: 1.0,
            throttle_rate: 0.0,
            error_rate: 0.0,
            latency_ms: 0,
            creates_per_second: 0.0,
            reject_credentials: false,
            regional: true,
            instance_quota: BTreeMap::new(),
            list_lag_seconds: 0.0,
            duplicate_events: 0.0,
            reorder_events: false,
            publish_create_event: true,
            provisioning_seconds: 0.0,
            unavailable_instance_types: Vec::new(),
            clock_skew_seconds: 0.0,
        }
    }
}

impl SimConfig {
    pub fn latency(&self) -> Option<Duration> {
        (self.latency_ms > 0).then(|| Duration::from_millis(self.latency_ms))
    }
}

/// `POST /_sim/jobs/{name}/status` body. `region` and `account` pick the job when its name is
/// taken in several; by default the only job of that name, else the simulator's own.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct StatusChange {
    pub status: String,
    #[serde(default)]
    pub failure_reason: Option<String>,
    #[serde(default)]
    pub exit_message: Option<String>,
    #[serde(default)]
    pub region: Option<String>,
    #[serde(default)]
    pub account: Option<String>,
}

/// `POST /_sim/jobs/{name}/fail` body: fails an InProgress job with a FailureReason of the
/// class SageMaker uses (`CapacityError`, `InternalServerError`, `ClientError`,
/// `AlgorithmError`), `<class>: <message>`.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct FailRequest {
    pub class: String,
    #[serde(default)]
    pub message: Option<String>,
    #[serde(default)]
    pub region: Option<String>,
    #[serde(default)]
    pub account: Option<String>,
}

/// A job's FailureReason of class `class`, with SageMaker's usual text unless `message` says.
pub fn failure_reason(class: &str, message: Option<&str>) -> Option<String> {
    let default = match class {
        "CapacityError" => {
            "Unable to provision requested ML compute capacity. Please retry using a different ML instance type."
        }
        "InternalServerError" => "We encountered an internal error. Please try again.",
        "ClientError" => {
            "Failed to download data. Please check the S3 URIs of the inputs and the role's access to them."
        }
        "AlgorithmError" => "See job logs for more information",
        _ => return None,
    };
    Some(format!("{class}: {}", message.unwrap_or(default)))
}

/// How long a job's history is kept at least (more when `listLagSeconds` is longer), and at
/// most how many changes.
const HISTORY_SECONDS: f64 = 60.0;
const HISTORY_CHANGES: usize = 64;

/// SageMaker's limit of tags on one resource.
pub const MAX_TAGS: usize = 50;

/// A job as ListProcessingJobs shows it, from a time on.
#[derive(Debug, Clone)]
struct Snapshot {
    at: f64,
    status: String,
    last_modified: f64,
    end_time: Option<f64>,
    failure_reason: Option<String>,
    exit_message: Option<String>,
}

/// (account, region, name): a job's identity, as SageMaker's names are unique per account and
/// region.
type Key = (String, String, String);

struct Job {
    /// The CreateProcessingJob request as sent.
    request: Map<String, Value>,
    name: String,
    /// The job's place in the order of creation (jobs created in one millisecond differ).
    seq: u64,
    arn: String,
    status: String,
    failure_reason: Option<String>,
    exit_message: Option<String>,
    creation_time: f64,
    start_time: Option<f64>,
    /// When provisioning ends and `start_time` is set (`provisioningSeconds`).
    start_due: Option<f64>,
    end_time: Option<f64>,
    last_modified: f64,
    /// When an automatic transition (auto-complete or Stopping → Stopped) is due.
    due: Option<f64>,
    tags: Vec<Value>,
    /// The region the job lives in (its key's): the caller's when `regional`, else the
    /// simulator's.
    region: String,
    /// The region the create was signed for (`None`: unsigned request); its events go there.
    signed_region: Option<String>,
    /// The account of the credentials the create was signed with.
    account: String,
    /// The job's recent states, oldest first, for a lagging List.
    history: VecDeque<Snapshot>,
}

impl Job {
    /// Records the job's current state in its history, keeping `keep` seconds of it.
    fn record(&mut self, keep: f64) {
        self.history.push_back(Snapshot {
            at: self.last_modified,
            status: self.status.clone(),
            last_modified: self.last_modified,
            end_time: self.end_time,
            failure_reason: self.failure_reason.clone(),
            exit_message: self.exit_message.clone(),
        });
        let horizon = now() - keep;
        while self.history.len() > HISTORY_CHANGES || (self.history.len() > 1 && self.history[1].at <= horizon) {
            self.history.pop_front();
        }
    }

    /// The job as a List sees it: now (`at` None), or as it was at `at` (`None`: not created
    /// yet).
    fn view(&self, at: Option<f64>) -> Option<View<'_>> {
        let Some(t) = at else {
            return Some(View {
                job: self,
                status: &self.status,
                last_modified: self.last_modified,
                end_time: self.end_time,
                failure_reason: self.failure_reason.as_deref(),
                exit_message: self.exit_message.as_deref(),
            });
        };
        if self.creation_time > t {
            return None;
        }
        let s = self.history.iter().rev().find(|s| s.at <= t).or(self.history.front())?;
        Some(View {
            job: self,
            status: &s.status,
            last_modified: s.last_modified,
            end_time: s.end_time,
            failure_reason: s.failure_reason.as_deref(),
            exit_message: s.exit_message.as_deref(),
        })
    }
}

/// A job as one ListProcessingJobs sees it.
struct View<'a> {
    job: &'a Job,
    status: &'a str,
    last_modified: f64,
    end_time: Option<f64>,
    failure_reason: Option<&'a str>,
    exit_message: Option<&'a str>,
}

/// Who calls: the region the request was signed for (`None`: unsigned) and the account of its
/// credentials (`None`: the simulator's default account).
#[derive(Debug, Clone, Copy, Default)]
pub struct Caller<'a> {
    pub region: Option<&'a str>,
    pub account: Option<&'a str>,
}

/// A caller resolved: its account and region (the simulator's for an unsigned request).
struct Scope {
    account: String,
    region: String,
    /// The region the request was signed for.
    signed: Option<String>,
}

pub struct Sim {
    region: String,
    account: String,
    pub config: SimConfig,
    jobs: BTreeMap<Key, Job>,
    pub calls: BTreeMap<String, u64>,
    /// When a ListProcessingJobs page first returned each job (by name) in an ended state
    /// (Completed, Failed, Stopped); cleared with `calls`. The benchmark measures a poll's
    /// mirroring from it.
    pub listed_ended: BTreeMap<String, f64>,
    /// Each state-change event PutEvents took: `{job, status, at}`; cleared with `calls`. The
    /// benchmark splits an event's lag with it.
    pub published: Vec<Value>,
    /// CreateProcessingJob requests that reached the handler, by job name (duplicates included,
    /// whatever their account and region).
    pub create_attempts: BTreeMap<String, u64>,
    /// Jobs created so far (the next job's `seq`).
    created: u64,
    /// Token bucket for `createsPerSecond`.
    create_tokens: f64,
    create_refill_at: f64,
    /// Whether state changes are published as events (the simulator was given an events URL).
    pub publish_events: bool,
    /// State-change events not yet published, in order.
    pub outbox: Vec<OutgoingEvent>,
}

/// SageMaker's clock, to the millisecond as SageMaker's timestamps are (so that an event's
/// epoch milliseconds and Describe's epoch seconds name the same instant).
pub fn now() -> f64 {
    let skew = CLOCK_SKEW_MS.load(std::sync::atomic::Ordering::Relaxed);
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| (d.as_millis() as i64 + skew) as f64 / 1000.0)
        .unwrap_or_default()
}

/// SageMaker's clock minus this machine's, in milliseconds (`clockSkewSeconds`).
static CLOCK_SKEW_MS: std::sync::atomic::AtomicI64 = std::sync::atomic::AtomicI64::new(0);

/// The `source` and `detail-type` of SageMaker's processing-job state-change events.
pub const EVENT_SOURCE: &str = "aws.sagemaker";
pub const EVENT_DETAIL_TYPE: &str = "SageMaker Processing Job State Change";

/// A state-change event waiting to be published: the region it belongs to and its PutEvents
/// entry.
#[derive(Debug, Clone)]
pub struct OutgoingEvent {
    pub region: String,
    pub entry: Value,
}

/// The state-change event of `job` as it is now, shaped as SageMaker's: the detail holds
/// Describe's fields, with times in epoch milliseconds; it goes to the region the create was
/// signed for (`default_region` for an unsigned one).
fn event_of(job: &Job, default_region: &str) -> OutgoingEvent {
    let mut detail = description(job);
    for key in [
        "CreationTime",
        "LastModifiedTime",
        "ProcessingStartTime",
        "ProcessingEndTime",
    ] {
        if let Some(t) = detail.get(key).and_then(Value::as_f64) {
            detail.insert(key.into(), json!((t * 1000.0).round() as i64));
        }
    }
    let region = job.signed_region.clone().unwrap_or_else(|| default_region.to_string());
    let entry = json!({
        "Source": EVENT_SOURCE,
        "DetailType": EVENT_DETAIL_TYPE,
        "Resources": [job.arn],
        "Detail": Value::Object(detail).to_string(),
    });
    OutgoingEvent { region, entry }
}

/// How a ListProcessingJobs orders its jobs.
#[derive(Debug, Clone, Copy, PartialEq)]
enum SortBy {
    Name,
    CreationTime,
    Status,
}

/// Where a job stands in a List's order: its sort key, then (when sorted by CreationTime) its
/// creation sequence, else its name and region, so that two jobs never tie and a job created
/// after a page sorts after it. A NextToken is the position of the last job returned.
#[derive(Debug, Clone)]
struct Position {
    key: Value,
    name: String,
    region: String,
    seq: u64,
}

impl Position {
    fn of(view: &View<'_>, by: SortBy) -> Self {
        let key = match by {
            SortBy::Name => json!(view.job.name),
            SortBy::CreationTime => json!(view.job.creation_time),
            SortBy::Status => json!(view.status),
        };
        Position {
            key,
            name: view.job.name.clone(),
            region: view.job.region.clone(),
            seq: view.job.seq,
        }
    }

    fn cmp(&self, other: &Self, by: SortBy) -> Ordering {
        let key = match (&self.key, &other.key) {
            (Value::Number(a), Value::Number(b)) => a
                .as_f64()
                .unwrap_or_default()
                .total_cmp(&b.as_f64().unwrap_or_default()),
            (a, b) => a.as_str().unwrap_or_default().cmp(b.as_str().unwrap_or_default()),
        };
        if by == SortBy::CreationTime {
            return key.then(self.seq.cmp(&other.seq));
        }
        key.then_with(|| self.name.cmp(&other.name))
            .then_with(|| self.region.cmp(&other.region))
            .then(self.seq.cmp(&other.seq))
    }

    /// The opaque NextToken naming this position in a List sorted `by`, `ascending` or not:
    /// hex of a small JSON document.
    fn token(&self, by: SortBy, ascending: bool) -> String {
        let doc = json!({"v": 1, "by": format!("{by:?}"), "asc": ascending, "key": self.key,
            "name": self.name, "region": self.region, "seq": self.seq});
        doc.to_string().bytes().map(|b| format!("{b:02x}")).collect()
    }

    /// The position a NextToken names, if it is one of a List sorted `by`, `ascending` or not.
    fn from_token(token: &str, by: SortBy, ascending: bool) -> Option<Self> {
        if !token.len().is_multiple_of(2) || !token.is_ascii() {
            return None;
        }
        let bytes: Vec<u8> = (0..token.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&token[i..i + 2], 16).ok())
            .collect::<Option<_>>()?;
        let doc: Value = serde_json::from_slice(&bytes).ok()?;
        let same_order = doc["v"] == 1 && doc["by"] == format!("{by:?}") && doc["asc"] == ascending;
        let key = doc.get("key")?.clone();
        let key_fits = match by {
            SortBy::CreationTime => key.is_number(),
            SortBy::Name | SortBy::Status => key.is_string(),
        };
        (same_order && key_fits).then_some(Position {
            key,
            name: doc["name"].as_str()?.to_string(),
            region: doc["region"].as_str()?.to_string(),
            seq: doc["seq"].as_u64()?,
        })
    }
}

impl Sim {
    pub fn new(region: String, account: String) -> Self {
        Self {
            region,
            account,
            config: SimConfig::default(),
            jobs: BTreeMap::new(),
            calls: BTreeMap::new(),
            listed_ended: BTreeMap::new(),
            published: Vec::new(),
            create_attempts: BTreeMap::new(),
            created: 0,
            create_tokens: 0.0,
            create_refill_at: now(),
            publish_events: false,
            outbox: Vec::new(),
        }
    }

    /// How long a job's history must reach back.
    fn history_keep(&self) -> f64 {
        self.config.list_lag_seconds.max(HISTORY_SECONDS)
    }

    /// Records job `key`'s change: in its history, and as a state-change event (unless
    /// `publish` is false).
    fn changed(&mut self, key: &Key, publish: bool) {
        let keep = self.history_keep();
        let Some(job) = self.jobs.get_mut(key) else { return };
        job.record(keep);
        if publish && self.publish_events {
            self.outbox.push(event_of(job, &self.region));
        }
    }

    /// Applies the automatic transitions that are due (their events included); for the
    /// publisher, which must not wait for an API call to notice a job's end.
    pub fn tick(&mut self) {
        self.advance();
    }

    pub fn set_config(&mut self, config: SimConfig) {
        CLOCK_SKEW_MS.store(
            (config.clock_skew_seconds * 1000.0).round() as i64,
            std::sync::atomic::Ordering::Relaxed,
        );
        self.create_tokens = config.creates_per_second;
        self.create_refill_at = now();
        self.config = config;
    }

    pub fn count_call(&mut self, operation: &str) {
        *self.calls.entry(operation.to_string()).or_default() += 1;
    }

    /// Draws the injected fault for one call, if any: random throttling and server errors, and
    /// the create rate limit.
    pub fn draw_fault(&mut self, operation: &str) -> Option<ApiError> {
        if self.config.reject_credentials {
            return Some(ApiError {
                status: StatusCode::BAD_REQUEST,
                kind: "UnrecognizedClientException",
                message: "The security token included in the request is invalid.".into(),
            });
        }
        let mut rng = rand::rng();
        if self.config.throttle_rate > 0.0 && rng.random::<f64>() < self.config.throttle_rate {
            return Some(ApiError::throttling());
        }
        if self.config.error_rate > 0.0 && rng.random::<f64>() < self.config.error_rate {
            return Some(ApiError::internal());
        }
        if operation == "CreateProcessingJob" && self.config.creates_per_second > 0.0 {
            let t = now();
            let rate = self.config.creates_per_second;
            self.create_tokens = (self.create_tokens + (t - self.create_refill_at) * rate).min(rate.max(1.0));
            self.create_refill_at = t;
            if self.create_tokens < 1.0 {
                return Some(ApiError::throttling());
            }
            self.create_tokens -= 1.0;
        }
        None
    }

    /// Applies the automatic transitions that are due, each at the time it was due: the end of
    /// provisioning, then completion or Stopping → Stopped.
    fn advance(&mut self) {
        let t = now();
        let keep = self.history_keep();
        let publish = self.publish_events;
        let region = &self.region;
        let outbox = &mut self.outbox;
        let mut note = |job: &mut Job| {
            job.record(keep);
            if publish {
                outbox.push(event_of(job, region));
            }
        };
        for job in self.jobs.values_mut() {
            if let Some(started) = job.start_due.filter(|&s| s <= t) {
                // A job due to complete before its provisioning ends starts as it completes.
                let completes_first = job.due.is_some_and(|d| d < started);
                if job.status != "InProgress" {
                    job.start_due = None;
                } else if !completes_first {
                    job.start_due = None;
                    job.start_time = Some(started);
                    job.last_modified = started;
                    note(job);
                }
            }
            let Some(due) = job.due.filter(|&d| d <= t) else {
                continue;
            };
            job.due = None;
            match job.status.as_str() {
                "InProgress" => {
                    job.status = "Completed".into();
                    job.exit_message = Some("Processing completed".into());
                    if let Some(started) = job.start_due.take() {
                        job.start_time = Some(started.min(due));
                    }
                }
                "Stopping" => job.status = "Stopped".into(),
                _ => continue,
            }
            job.end_time = Some(due);
            job.last_modified = due;
            note(job);
        }
    }

    fn scope(&self, caller: Caller<'_>) -> Scope {
        Scope {
            account: caller.account.unwrap_or(&self.account).to_string(),
            region: caller.region.unwrap_or(&self.region).to_string(),
            signed: caller.region.map(str::to_string),
        }
    }

    /// Answers one API call of `caller`. Jobs are partitioned by account as in SageMaker (and
    /// by region when `regional`): a call sees, stops and counts against the quota only the
    /// jobs of its own account and region.
    pub fn handle(&mut self, operation: &str, input: &Value, caller: Caller<'_>) -> Result<Value, ApiError> {
        self.advance();
        let scope = self.scope(caller);
        if operation != "CreateProcessingJob" {
            // CreateProcessingJob is checked after its attempt is counted.
            shapes::model().check_input(operation, input)?;
        }
        match operation {
            "CreateProcessingJob" => self.create(input, &scope),
            "DescribeProcessingJob" => self.describe(input, &scope),
            "StopProcessingJob" => self.stop(input, &scope),
            "ListProcessingJobs" => {
                let page = self.list(input, &scope)?;
                let at = now();
                for s in page["ProcessingJobSummaries"].as_array().into_iter().flatten() {
                    if let (Some(name), Some("Completed" | "Failed" | "Stopped")) =
                        (s["ProcessingJobName"].as_str(), s["ProcessingJobStatus"].as_str())
                    {
                        self.listed_ended.entry(name.to_string()).or_insert(at);
                    }
                }
                Ok(page)
            }
            "AddTags" => self.add_tags(input, &scope),
            "ListTags" => self.list_tags(input, &scope),
            other => Err(ApiError::unknown_operation(other)),
        }
    }

    /// Whether a call of `scope` sees `job`: a job of its account, of its region unless jobs
    /// are not regional.
    fn visible(&self, job: &Job, scope: &Scope) -> bool {
        job.account == scope.account && (!self.config.regional || job.region == scope.region)
    }

    /// The job named `name` that a call of `scope` sees (when jobs are not regional and the
    /// name is taken in several regions, the one of the caller's region, else the first).
    fn find(&self, scope: &Scope, name: &str) -> Option<Key> {
        if self.config.regional {
            let key = (scope.account.clone(), scope.region.clone(), name.to_string());
            return self.jobs.contains_key(&key).then_some(key);
        }
        let mut found: Vec<&Key> = self
            .jobs
            .keys()
            .filter(|(account, _, n)| *account == scope.account && n == name)
            .collect();
        found.sort_by_key(|(_, region, _)| *region != scope.region);
        found.first().map(|k| (*k).clone())
    }

    fn create(&mut self, input: &Value, scope: &Scope) -> Result<Value, ApiError> {
        if let Some(name) = input.get("ProcessingJobName").and_then(Value::as_str) {
            *self.create_attempts.entry(name.to_string()).or_default() += 1;
        }
        validate::create_request(input)?;
        if let Some(t) = input
            .pointer("/ProcessingResources/ClusterConfig/InstanceType")
            .and_then(Value::as_str)
            .filter(|t| self.config.unavailable_instance_types.iter().any(|u| u == t))
        {
            return Err(ApiError::validation(format!(
                "The instance type {t} is not supported for processing jobs in {}.",
                scope.region
            )));
        }
        let request = input.as_object().cloned().unwrap_or_default();
        let name = request
            .get("ProcessingJobName")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string();
        if let Some(existing) = self.find(scope, &name).and_then(|k| self.jobs.get(&k)) {
            return Err(ApiError::in_use(format!(
                "Job name must be unique within an AWS account and region, and a job with this name already exists ({})",
                existing.arn
            )));
        }
        self.within_quota(&request, scope)?;
        let t = now();
        let region = if self.config.regional {
            scope.region.clone()
        } else {
            self.region.clone()
        };
        let arn = arn_in(&region, &scope.account, &name);
        let tags = request
            .get("Tags")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default();
        let due = (self.config.in_progress_seconds > 0.0).then_some(t + self.config.in_progress_seconds);
        let provisioning = self.config.provisioning_seconds;
        let key = (scope.account.clone(), region.clone(), name.clone());
        self.created += 1;
        self.jobs.insert(
            key.clone(),
            Job {
                request,
                name,
                seq: self.created,
                arn: arn.clone(),
                status: "InProgress".into(),
                failure_reason: None,
                exit_message: None,
                creation_time: t,
                start_time: (provisioning <= 0.0).then_some(t),
                start_due: (provisioning > 0.0).then_some(t + provisioning),
                end_time: None,
                last_modified: t,
                due,
                tags,
                region,
                signed_region: scope.signed.clone(),
                account: scope.account.clone(),
                history: VecDeque::new(),
            },
        );
        self.changed(&key, self.config.publish_create_event);
        Ok(json!({ "ProcessingJobArn": arn }))
    }

    /// The instance quota of the requested type, checked as SageMaker does at create.
    fn within_quota(&self, request: &Map<String, Value>, scope: &Scope) -> Result<(), ApiError> {
        let cluster = |r: &Map<String, Value>| {
            r.get("ProcessingResources")
                .and_then(|p| p.get("ClusterConfig"))
                .cloned()
        };
        let shape = |c: Option<Value>| {
            let c = c.unwrap_or_default();
            let t = c
                .get("InstanceType")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_string();
            (t, c.get("InstanceCount").and_then(Value::as_u64).unwrap_or(1))
        };
        let (instance_type, delta) = shape(cluster(request));
        let Some(&quota) = self.config.instance_quota.get(&instance_type) else {
            return Ok(());
        };
        let used: u64 = self
            .jobs
            .values()
            .filter(|j| matches!(j.status.as_str(), "InProgress" | "Stopping") && self.visible(j, scope))
            .map(|j| shape(cluster(&j.request)))
            .filter(|(t, _)| *t == instance_type)
            .map(|(_, n)| n)
            .sum();
        if used + delta > u64::from(quota) {
            return Err(ApiError::over_quota(&instance_type, quota, used, delta));
        }
        Ok(())
    }

    fn describe(&self, input: &Value, scope: &Scope) -> Result<Value, ApiError> {
        let name = input["ProcessingJobName"].as_str().unwrap_or_default();
        let job = self
            .find(scope, name)
            .and_then(|k| self.jobs.get(&k))
            .ok_or_else(|| ApiError::not_found(name))?;
        Ok(Value::Object(description(job)))
    }

    fn stop(&mut self, input: &Value, scope: &Scope) -> Result<Value, ApiError> {
        let name = input["ProcessingJobName"].as_str().unwrap_or_default();
        let stopping = self.config.stopping_seconds;
        let key = self.find(scope, name).ok_or_else(|| ApiError::not_found(name))?;
        let job = self.jobs.get_mut(&key).ok_or_else(|| ApiError::not_found(name))?;
        if job.status != "InProgress" {
            return Err(ApiError::validation(format!(
                "The request was rejected because the processing job is in status {}.",
                job.status
            )));
        }
        let t = now();
        job.status = "Stopping".into();
        job.last_modified = t;
        // Stopped while provisioning: it never starts.
        job.start_due = None;
        job.due = Some(t + stopping.max(0.0));
        self.changed(&key, true);
        Ok(json!({}))
    }

    /// ListProcessingJobs, as the model has it: sorted by CreationTime (or `SortBy`), Ascending
    /// unless `SortOrder` says, and paginated with an opaque NextToken naming the last job
    /// returned (so that jobs created between pages neither hide nor repeat others). With
    /// `listLagSeconds`, every job is seen as it was that long ago, the filters included.
    fn list(&self, input: &Value, scope: &Scope) -> Result<Value, ApiError> {
        let num = |k: &str| input.get(k).and_then(Value::as_f64);
        let text = |k: &str| input.get(k).and_then(Value::as_str);
        let max_results = input.get("MaxResults").and_then(Value::as_u64).unwrap_or(10) as usize;
        let status_equals = text("StatusEquals");
        let lag = self.config.list_lag_seconds;
        let at = (lag > 0.0).then(|| now() - lag);
        let by = match text("SortBy") {
            Some("Name") => SortBy::Name,
            Some("Status") => SortBy::Status,
            _ => SortBy::CreationTime,
        };
        let ascending = text("SortOrder") != Some("Descending");
        let after = match text("NextToken") {
            None | Some("") => None,
            Some(token) => Some(
                Position::from_token(token, by, ascending)
                    .ok_or_else(|| ApiError::validation("Invalid pagination token"))?,
            ),
        };
        let mut jobs: Vec<(Position, View<'_>)> = self
            .jobs
            .values()
            .filter(|j| self.visible(j, scope))
            .filter_map(|j| j.view(at))
            .filter(|v| {
                num("CreationTimeAfter").is_none_or(|t| v.job.creation_time > t)
                    && num("CreationTimeBefore").is_none_or(|t| v.job.creation_time < t)
                    && num("LastModifiedTimeAfter").is_none_or(|t| v.last_modified > t)
                    && num("LastModifiedTimeBefore").is_none_or(|t| v.last_modified < t)
                    && text("NameContains").is_none_or(|s| v.job.name.contains(s))
                    && status_equals.is_none_or(|s| v.status == s)
            })
            .map(|v| (Position::of(&v, by), v))
            .filter(|(p, _)| {
                after.as_ref().is_none_or(|a| {
                    let o = p.cmp(a, by);
                    if ascending {
                        o == Ordering::Greater
                    } else {
                        o == Ordering::Less
                    }
                })
            })
            .collect();
        jobs.sort_by(|(a, _), (b, _)| if ascending { a.cmp(b, by) } else { b.cmp(a, by) });
        let more = jobs.len() > max_results;
        jobs.truncate(max_results);
        let page: Vec<Value> = jobs.iter().map(|(_, v)| summary(v)).collect();
        let mut out = json!({ "ProcessingJobSummaries": page });
        if more {
            if let Some((last, _)) = jobs.last() {
                out["NextToken"] = json!(last.token(by, ascending));
            }
        }
        Ok(out)
    }

    fn job_by_arn(&mut self, input: &Value, scope: &Scope) -> Result<&mut Job, ApiError> {
        let arn = input
            .get("ResourceArn")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string();
        let key = self
            .jobs
            .iter()
            .find(|(_, j)| j.arn == arn && self.visible(j, scope))
            .map(|(key, _)| key.clone());
        key.and_then(|key| self.jobs.get_mut(&key))
            .ok_or_else(|| ApiError::validation(format!("Could not find resource with ARN {arn}")))
    }

    fn add_tags(&mut self, input: &Value, scope: &Scope) -> Result<Value, ApiError> {
        let new_tags = input.get("Tags").and_then(Value::as_array).cloned().unwrap_or_default();
        let job = self.job_by_arn(input, scope)?;
        // A job carries at most 50 tags; overwriting a key adds none. The message is the one
        // AWS gives for a TagList over its length (the model's constraint on `tags`), not
        // AddTags' own text for the cumulative case, which we could not confirm.
        let keys: BTreeSet<&str> = job
            .tags
            .iter()
            .chain(&new_tags)
            .filter_map(|t| t.get("Key").and_then(Value::as_str))
            .collect();
        if keys.len() > MAX_TAGS {
            let message = shapes::validation_message(&[shapes::violation(
                &shapes::render(&Value::Array(new_tags.clone())),
                "tags",
                &format!("Member must have length less than or equal to {MAX_TAGS}"),
            )]);
            return Err(ApiError::validation(message.unwrap_or_default()));
        }
        for tag in new_tags {
            let key = tag.get("Key").cloned();
            job.tags.retain(|t| t.get("Key") != key.as_ref());
            job.tags.push(tag);
        }
        Ok(json!({ "Tags": job.tags }))
    }

    fn list_tags(&mut self, input: &Value, scope: &Scope) -> Result<Value, ApiError> {
        let max = input.get("MaxResults").and_then(Value::as_u64).unwrap_or(50) as usize;
        let start = input
            .get("NextToken")
            .and_then(Value::as_str)
            .and_then(|t| t.parse::<usize>().ok())
            .unwrap_or(0);
        let job = self.job_by_arn(input, scope)?;
        let page: Vec<Value> = job.tags.iter().skip(start).take(max).cloned().collect();
        let mut out = json!({ "Tags": page });
        if start + max < job.tags.len() {
            out["NextToken"] = json!((start + max).to_string());
        }
        Ok(out)
    }

    /// The job an admin request names: `name` (or `name@account:region`, as `GET /_sim/jobs`
    /// keys a name taken several times), in `region` and `account` when given; else the only
    /// job of that name, else the one of the simulator's own account and region.
    fn admin_key(&self, name: &str, region: Option<&str>, account: Option<&str>) -> Result<Key, String> {
        let (name, region, account) = match name.split_once('@') {
            Some((n, rest)) => match rest.split_once(':') {
                Some((a, r)) => (n, Some(r), Some(a)),
                None => return Err(format!("no job named {name}")),
            },
            None => (name, region, account),
        };
        let found: Vec<&Key> = self
            .jobs
            .keys()
            .filter(|(a, r, n)| n == name && region.is_none_or(|x| x == r) && account.is_none_or(|x| x == a))
            .collect();
        match found.as_slice() {
            [] => Err(format!("no job named {name}")),
            [only] => Ok((*only).clone()),
            several => {
                let own = (
                    account.unwrap_or(&self.account).to_string(),
                    region.unwrap_or(&self.region).to_string(),
                    name.to_string(),
                );
                if self.jobs.contains_key(&own) {
                    Ok(own)
                } else {
                    let places: Vec<String> = several.iter().map(|(a, r, _)| format!("{a}/{r}")).collect();
                    Err(format!(
                        "job {name} exists in several places ({}): give its region and account",
                        places.join(", ")
                    ))
                }
            }
        }
    }

    pub fn admin_set_status(&mut self, name: &str, change: StatusChange) -> Result<(), String> {
        self.advance();
        let key = self.admin_key(name, change.region.as_deref(), change.account.as_deref())?;
        let job = self.jobs.get_mut(&key).ok_or_else(|| format!("no job named {name}"))?;
        let t = now();
        match change.status.as_str() {
            "Completed" | "Failed" | "Stopped" => {
                job.end_time = Some(t);
                job.due = None;
                // A job that completes has run; one failed or stopped while provisioning never
                // started.
                let started = job.start_due.take();
                if change.status == "Completed" && job.start_time.is_none() {
                    job.start_time = Some(started.unwrap_or(t).min(t));
                }
            }
            "InProgress" | "Stopping" => {}
            other => return Err(format!("unknown status {other}")),
        }
        job.status = change.status;
        job.failure_reason = change.failure_reason;
        job.exit_message = change.exit_message;
        job.last_modified = t;
        self.changed(&key, true);
        Ok(())
    }

    /// Fails an InProgress job with a FailureReason of SageMaker's class `req.class`.
    pub fn admin_fail(&mut self, name: &str, req: FailRequest) -> Result<(), (StatusCode, String)> {
        self.advance();
        let reason = failure_reason(&req.class, req.message.as_deref()).ok_or_else(|| {
            (
                StatusCode::BAD_REQUEST,
                format!(
                    "unknown failure class {}: CapacityError, InternalServerError, ClientError or AlgorithmError",
                    req.class
                ),
            )
        })?;
        let key = self
            .admin_key(name, req.region.as_deref(), req.account.as_deref())
            .map_err(|e| (StatusCode::NOT_FOUND, e))?;
        let status = self.jobs.get(&key).map(|j| j.status.clone()).unwrap_or_default();
        if status != "InProgress" {
            return Err((StatusCode::CONFLICT, format!("job {name} is {status}, not InProgress")));
        }
        self.admin_set_status(
            &key.2,
            StatusChange {
                status: "Failed".into(),
                failure_reason: Some(reason),
                region: Some(key.1.clone()),
                account: Some(key.0.clone()),
                ..StatusChange::default()
            },
        )
        .map_err(|e| (StatusCode::NOT_FOUND, e))
    }

    /// Sets the status of many jobs at once (each name resolved as by `admin_set_status`);
    /// returns the time of the change.
    pub fn admin_bulk_status(&mut self, names: &[String], status: &str) -> Result<f64, String> {
        for name in names {
            self.admin_set_status(
                name,
                StatusChange {
                    status: status.to_string(),
                    ..StatusChange::default()
                },
            )?;
        }
        Ok(now())
    }

    /// `GET /_sim/jobs`: every job, keyed by its name; when a name is taken in several
    /// (account, region), the first created is keyed by the name and the later ones by
    /// `<name>@<account>:<region>` (a key the admin endpoints accept as a name).
    pub fn admin_jobs(&mut self) -> Value {
        self.advance();
        let mut jobs: Vec<(&Key, &Job)> = self.jobs.iter().collect();
        jobs.sort_by(|(ka, a), (kb, b)| a.creation_time.total_cmp(&b.creation_time).then(ka.cmp(kb)));
        let mut out = Map::new();
        for ((account, region, name), j) in jobs {
            let creates = self.create_attempts.get(name).copied().unwrap_or(0);
            let v = json!({"name": name, "status": j.status, "arn": j.arn, "tags": j.tags, "createCalls": creates,
                "createdAt": j.creation_time, "lastModified": j.last_modified, "region": j.region,
                "signedRegion": j.signed_region, "account": j.account});
            let key = if out.contains_key(name) {
                format!("{name}@{account}:{region}")
            } else {
                name.clone()
            };
            out.insert(key, v);
        }
        Value::Object(out)
    }
}

fn arn_in(region: &str, account: &str, name: &str) -> String {
    format!(
        "arn:aws:sagemaker:{region}:{account}:processing-job/{}",
        name.to_lowercase()
    )
}

/// DescribeProcessingJob's answer for a job (times in epoch seconds, as the JSON protocol has
/// them).
fn description(job: &Job) -> Map<String, Value> {
    let mut out = job.request.clone();
    out.remove("Tags");
    out.insert("ProcessingJobArn".into(), json!(job.arn));
    out.insert("ProcessingJobStatus".into(), json!(job.status));
    out.insert("CreationTime".into(), json!(job.creation_time));
    out.insert("LastModifiedTime".into(), json!(job.last_modified));
    if let Some(v) = job.start_time {
        out.insert("ProcessingStartTime".into(), json!(v));
    }
    if let Some(v) = job.end_time {
        out.insert("ProcessingEndTime".into(), json!(v));
    }
    if let Some(v) = &job.failure_reason {
        out.insert("FailureReason".into(), json!(v));
    }
    if let Some(v) = &job.exit_message {
        out.insert("ExitMessage".into(), json!(v));
    }
    out
}

fn summary(view: &View<'_>) -> Value {
    let job = view.job;
    let mut s = json!({
        "ProcessingJobName": job.name,
        "ProcessingJobArn": job.arn,
        "CreationTime": job.creation_time,
        "LastModifiedTime": view.last_modified,
        "ProcessingJobStatus": view.status,
    });
    if let Some(v) = view.end_time {
        s["ProcessingEndTime"] = json!(v);
    }
    if let Some(v) = view.failure_reason {
        s["FailureReason"] = json!(v);
    }
    if let Some(v) = view.exit_message {
        s["ExitMessage"] = json!(v);
    }
    s
}

#[cfg(test)]
mod tests;
