//! The simulator's state: jobs, their lifecycle, fault injection and call counters.

use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::http::StatusCode;
use rand::Rng;
use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};

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

/// Fault injection and timing, set with `PUT /_sim/config`. 0 or absent means off.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SimConfig {
    /// A created job completes by itself after this many seconds (0: stays InProgress).
    #[serde(default)]
    pub in_progress_seconds: f64,
    /// A stopped job goes from Stopping to Stopped after this many seconds.
    #[serde(default = "default_stopping_seconds")]
    pub stopping_seconds: f64,
    /// Share of API calls answered with ThrottlingException.
    #[serde(default)]
    pub throttle_rate: f64,
    /// Share of API calls answered with HTTP 500 InternalFailure.
    #[serde(default)]
    pub error_rate: f64,
    /// Latency added to every API call.
    #[serde(default)]
    pub latency_ms: u64,
    /// Creates allowed per second; more are throttled (0: unlimited).
    #[serde(default)]
    pub creates_per_second: f64,
    /// Answer every call with UnrecognizedClientException, as AWS does for bad credentials.
    #[serde(default)]
    pub reject_credentials: bool,
    /// Jobs are regional, as in SageMaker: a call sees only the jobs created in its region (the
    /// region of the request's SigV4 credential scope), and new jobs' ARNs name that region.
    /// Off: every call sees every job, whatever its region.
    #[serde(default)]
    pub regional: bool,
    /// Instances of processing jobs allowed at once per instance type (e.g. `{"ml.c5.4xlarge":
    /// 2}`), counting the InstanceCount of InProgress and Stopping jobs (of the caller's region
    /// when `regional`): a create over it is answered `ResourceLimitExceeded`, as SageMaker
    /// does. Types not listed are unlimited.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub instance_quota: BTreeMap<String, u32>,
}

fn default_stopping_seconds() -> f64 {
    1.0
}

impl SimConfig {
    pub fn latency(&self) -> Option<Duration> {
        (self.latency_ms > 0).then(|| Duration::from_millis(self.latency_ms))
    }
}

/// `POST /_sim/jobs/{name}/status` body.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct StatusChange {
    pub status: String,
    #[serde(default)]
    pub failure_reason: Option<String>,
    #[serde(default)]
    pub exit_message: Option<String>,
}

struct Job {
    /// The CreateProcessingJob request as sent.
    request: Map<String, Value>,
    arn: String,
    status: String,
    failure_reason: Option<String>,
    exit_message: Option<String>,
    creation_time: f64,
    start_time: Option<f64>,
    end_time: Option<f64>,
    last_modified: f64,
    /// When an automatic transition (auto-complete or Stopping → Stopped) is due.
    due: Option<f64>,
    tags: Vec<Value>,
    /// The region the create was signed for (`None`: unsigned request).
    region: Option<String>,
    /// The account of the credentials the create was signed with.
    account: String,
}

/// Who calls: the region the request was signed for (`None`: unsigned) and the account of its
/// credentials (`None`: the simulator's default account).
#[derive(Debug, Clone, Copy, Default)]
pub struct Caller<'a> {
    pub region: Option<&'a str>,
    pub account: Option<&'a str>,
}

pub struct Sim {
    region: String,
    account: String,
    pub config: SimConfig,
    jobs: BTreeMap<String, Job>,
    pub calls: BTreeMap<String, u64>,
    /// When a ListProcessingJobs page first returned each job in an ended state (Completed,
    /// Failed, Stopped); cleared with `calls`. The benchmark measures a poll's mirroring from it.
    pub listed_ended: BTreeMap<String, f64>,
    /// Each state-change event PutEvents took: `{job, status, at}`; cleared with `calls`. The
    /// benchmark splits an event's lag with it.
    pub published: Vec<Value>,
    /// CreateProcessingJob requests that reached the handler, by job name (duplicates included).
    pub create_attempts: BTreeMap<String, u64>,
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
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as f64 / 1000.0)
        .unwrap_or_default()
}

/// The `source` and `detail-type` of SageMaker's processing-job state-change events.
pub const EVENT_SOURCE: &str = "aws.sagemaker";
pub const EVENT_DETAIL_TYPE: &str = "SageMaker Processing Job State Change";

/// A state-change event waiting to be published: the region it belongs to and its PutEvents
/// entry.
pub struct OutgoingEvent {
    pub region: String,
    pub entry: Value,
}

impl Sim {
    pub fn new(region: String, account: String) -> Self {
        Self {
            region,
            account,
            config: SimConfig {
                stopping_seconds: default_stopping_seconds(),
                ..Default::default()
            },
            jobs: BTreeMap::new(),
            calls: BTreeMap::new(),
            listed_ended: BTreeMap::new(),
            published: Vec::new(),
            create_attempts: BTreeMap::new(),
            create_tokens: 0.0,
            create_refill_at: now(),
            publish_events: false,
            outbox: Vec::new(),
        }
    }

    /// Queues the state-change event of job `name`, shaped as SageMaker's: the detail holds
    /// Describe's fields, with times in epoch milliseconds.
    fn changed(&mut self, name: &str) {
        if !self.publish_events {
            return;
        }
        let Some(job) = self.jobs.get(name) else { return };
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
        let region = job.region.clone().unwrap_or_else(|| self.region.clone());
        let entry = json!({
            "Source": EVENT_SOURCE,
            "DetailType": EVENT_DETAIL_TYPE,
            "Resources": [job.arn],
            "Detail": Value::Object(detail).to_string(),
        });
        self.outbox.push(OutgoingEvent { region, entry });
    }

    /// Applies the automatic transitions that are due (their events included); for the
    /// publisher, which must not wait for an API call to notice a job's end.
    pub fn tick(&mut self) {
        self.advance();
    }

    pub fn set_config(&mut self, config: SimConfig) {
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

    /// Applies the automatic transitions that are due.
    fn advance(&mut self) {
        let t = now();
        let mut changed = Vec::new();
        for (name, job) in self.jobs.iter_mut() {
            let Some(due) = job.due else { continue };
            if due > t {
                continue;
            }
            job.due = None;
            match job.status.as_str() {
                "InProgress" => {
                    job.status = "Completed".into();
                    job.exit_message = Some("Processing completed".into());
                }
                "Stopping" => job.status = "Stopped".into(),
                _ => continue,
            }
            job.end_time = Some(due);
            job.last_modified = due;
            changed.push(name.clone());
        }
        for name in changed {
            self.changed(&name);
        }
    }

    /// Answers one API call of `caller`. Jobs are partitioned by account as in SageMaker: a
    /// call sees, stops and counts against the quota only the jobs of its own account.
    pub fn handle(&mut self, operation: &str, input: &Value, caller: Caller<'_>) -> Result<Value, ApiError> {
        self.advance();
        let account = caller.account.unwrap_or(&self.account).to_string();
        let caller = Caller {
            region: caller.region,
            account: Some(&account),
        };
        match operation {
            "CreateProcessingJob" => self.create(input, caller),
            "DescribeProcessingJob" => self.describe(input, caller),
            "StopProcessingJob" => self.stop(input, caller),
            "ListProcessingJobs" => {
                let page = self.list(input, caller)?;
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
            "AddTags" => self.add_tags(input, caller),
            "ListTags" => self.list_tags(input, caller),
            other => Err(ApiError::unknown_operation(other)),
        }
    }

    /// Whether `caller` sees `job`: a job of its account, of its region unless jobs are not
    /// regional.
    fn visible(&self, job: &Job, caller: Caller<'_>) -> bool {
        let region = caller.region;
        let regional =
            !self.config.regional || region.is_none() || job.region.is_none() || job.region.as_deref() == region;
        regional && caller.account.unwrap_or(&self.account) == job.account
    }

    fn create(&mut self, input: &Value, caller: Caller<'_>) -> Result<Value, ApiError> {
        let region = caller.region;
        if let Some(name) = input.get("ProcessingJobName").and_then(Value::as_str) {
            *self.create_attempts.entry(name.to_string()).or_default() += 1;
        }
        validate::create_request(input).map_err(ApiError::validation)?;
        let request = input.as_object().cloned().unwrap_or_default();
        let name = request
            .get("ProcessingJobName")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string();
        // Jobs are keyed by name alone: even with `regional`, a name taken in another region or
        // account is refused as in use (SageMaker would create a second job there). Either way
        // the attempt is counted in `create_attempts`.
        if let Some(existing) = self.jobs.get(&name) {
            return Err(ApiError::in_use(format!(
                "Job name must be unique within an AWS account and region, and a job with this name already exists ({})",
                existing.arn
            )));
        }
        self.within_quota(&request, caller)?;
        let t = now();
        let account = caller.account.unwrap_or(&self.account).to_string();
        let arn = match region.filter(|_| self.config.regional) {
            Some(r) => arn_in(r, &account, &name),
            None => arn_in(&self.region, &account, &name),
        };
        let tags = request
            .get("Tags")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default();
        let due = (self.config.in_progress_seconds > 0.0).then_some(t + self.config.in_progress_seconds);
        self.jobs.insert(
            name.clone(),
            Job {
                request,
                arn: arn.clone(),
                status: "InProgress".into(),
                failure_reason: None,
                exit_message: None,
                creation_time: t,
                start_time: Some(t),
                end_time: None,
                last_modified: t,
                due,
                tags,
                region: region.map(str::to_string),
                account,
            },
        );
        self.changed(&name);
        Ok(json!({ "ProcessingJobArn": arn }))
    }

    /// The instance quota of the requested type, checked as SageMaker does at create.
    fn within_quota(&self, request: &Map<String, Value>, caller: Caller<'_>) -> Result<(), ApiError> {
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
            .filter(|j| matches!(j.status.as_str(), "InProgress" | "Stopping") && self.visible(j, caller))
            .map(|j| shape(cluster(&j.request)))
            .filter(|(t, _)| *t == instance_type)
            .map(|(_, n)| n)
            .sum();
        if used + delta > u64::from(quota) {
            return Err(ApiError::over_quota(&instance_type, quota, used, delta));
        }
        Ok(())
    }

    fn job_name<'a>(&self, input: &'a Value) -> Result<&'a str, ApiError> {
        input
            .get("ProcessingJobName")
            .and_then(Value::as_str)
            .filter(|n| validate::job_name(n).is_ok())
            .ok_or_else(|| {
                ApiError::validation(
                    "1 validation error detected: Value at 'processingJobName' failed to satisfy constraint: Member must satisfy regular expression pattern: ^[a-zA-Z0-9](-*[a-zA-Z0-9]){0,62}",
                )
            })
    }

    fn describe(&self, input: &Value, region: Caller<'_>) -> Result<Value, ApiError> {
        let name = self.job_name(input)?;
        let job = self
            .jobs
            .get(name)
            .filter(|j| self.visible(j, region))
            .ok_or_else(|| ApiError::not_found(name))?;
        Ok(Value::Object(description(job)))
    }

    fn stop(&mut self, input: &Value, region: Caller<'_>) -> Result<Value, ApiError> {
        let name = self.job_name(input)?.to_string();
        let stopping = self.config.stopping_seconds;
        if !self.jobs.get(&name).is_some_and(|j| self.visible(j, region)) {
            return Err(ApiError::not_found(&name));
        }
        let job = self.jobs.get_mut(&name).ok_or_else(|| ApiError::not_found(&name))?;
        if job.status != "InProgress" {
            return Err(ApiError::validation(format!(
                "The request was rejected because the processing job is in status {}.",
                job.status
            )));
        }
        let t = now();
        job.status = "Stopping".into();
        job.last_modified = t;
        job.due = Some(t + stopping.max(0.0));
        self.changed(&name);
        Ok(json!({}))
    }

    fn list(&self, input: &Value, region: Caller<'_>) -> Result<Value, ApiError> {
        let num = |k: &str| input.get(k).and_then(Value::as_f64);
        let text = |k: &str| input.get(k).and_then(Value::as_str);
        let max_results = match input.get("MaxResults").and_then(Value::as_i64) {
            None => 10,
            Some(n @ 1..=100) => n as usize,
            Some(n) => {
                return Err(ApiError::validation(format!(
                    "1 validation error detected: Value '{n}' at 'maxResults' failed to satisfy constraint: Member must have value between 1 and 100"
                )))
            }
        };
        let status_equals = text("StatusEquals");
        if let Some(s) = status_equals {
            if !["InProgress", "Completed", "Failed", "Stopping", "Stopped"].contains(&s) {
                return Err(ApiError::validation(format!(
                    "1 validation error detected: Value '{s}' at 'statusEquals' failed to satisfy constraint: Member must satisfy enum value set: [Completed, InProgress, Stopping, Stopped, Failed]"
                )));
            }
        }
        let mut jobs: Vec<&Job> = self
            .jobs
            .iter()
            .filter(|(name, j)| {
                self.visible(j, region)
                    && num("CreationTimeAfter").is_none_or(|t| j.creation_time > t)
                    && num("CreationTimeBefore").is_none_or(|t| j.creation_time < t)
                    && num("LastModifiedTimeAfter").is_none_or(|t| j.last_modified > t)
                    && num("LastModifiedTimeBefore").is_none_or(|t| j.last_modified < t)
                    && text("NameContains").is_none_or(|s| name.contains(s))
                    && status_equals.is_none_or(|s| j.status == s)
            })
            .map(|(_, j)| j)
            .collect();
        match text("SortBy").unwrap_or("CreationTime") {
            "Name" => jobs.sort_by(|a, b| name_of(a).cmp(name_of(b))),
            "Status" => jobs.sort_by(|a, b| a.status.cmp(&b.status).then(name_of(a).cmp(name_of(b)))),
            "CreationTime" => jobs.sort_by(|a, b| {
                a.creation_time
                    .total_cmp(&b.creation_time)
                    .then(name_of(a).cmp(name_of(b)))
            }),
            other => return Err(ApiError::validation(format!("Invalid SortBy value '{other}'"))),
        }
        match text("SortOrder").unwrap_or("Descending") {
            "Descending" => jobs.reverse(),
            "Ascending" => {}
            other => return Err(ApiError::validation(format!("Invalid SortOrder value '{other}'"))),
        }
        let start = match text("NextToken") {
            None => 0,
            Some(tok) => tok
                .parse::<usize>()
                .map_err(|_| ApiError::validation("Invalid pagination token"))?,
        };
        let page: Vec<Value> = jobs.iter().skip(start).take(max_results).map(|j| summary(j)).collect();
        let mut out = json!({ "ProcessingJobSummaries": page });
        if start + max_results < jobs.len() {
            out["NextToken"] = json!((start + max_results).to_string());
        }
        Ok(out)
    }

    fn job_by_arn(&mut self, input: &Value, region: Caller<'_>) -> Result<&mut Job, ApiError> {
        let arn = input
            .get("ResourceArn")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string();
        let name = self
            .jobs
            .iter()
            .find(|(_, j)| j.arn == arn && self.visible(j, region))
            .map(|(name, _)| name.clone());
        name.and_then(|name| self.jobs.get_mut(&name))
            .ok_or_else(|| ApiError::validation(format!("Could not find resource with ARN {arn}")))
    }

    fn add_tags(&mut self, input: &Value, region: Caller<'_>) -> Result<Value, ApiError> {
        let new_tags = input.get("Tags").and_then(Value::as_array).cloned().unwrap_or_default();
        validate::tags(&new_tags).map_err(ApiError::validation)?;
        let job = self.job_by_arn(input, region)?;
        for tag in new_tags {
            let key = tag.get("Key").cloned();
            job.tags.retain(|t| t.get("Key") != key.as_ref());
            job.tags.push(tag);
        }
        Ok(json!({ "Tags": job.tags }))
    }

    fn list_tags(&mut self, input: &Value, region: Caller<'_>) -> Result<Value, ApiError> {
        let max = input.get("MaxResults").and_then(Value::as_u64).unwrap_or(50) as usize;
        let start = input
            .get("NextToken")
            .and_then(Value::as_str)
            .and_then(|t| t.parse::<usize>().ok())
            .unwrap_or(0);
        let job = self.job_by_arn(input, region)?;
        let page: Vec<Value> = job.tags.iter().skip(start).take(max).cloned().collect();
        let mut out = json!({ "Tags": page });
        if start + max < job.tags.len() {
            out["NextToken"] = json!((start + max).to_string());
        }
        Ok(out)
    }

    pub fn admin_set_status(&mut self, name: &str, change: StatusChange) -> Result<(), String> {
        self.advance();
        let job = self.jobs.get_mut(name).ok_or_else(|| format!("no job named {name}"))?;
        let t = now();
        match change.status.as_str() {
            "Completed" | "Failed" | "Stopped" => {
                job.end_time = Some(t);
                job.due = None;
            }
            "InProgress" | "Stopping" => {}
            other => return Err(format!("unknown status {other}")),
        }
        job.status = change.status;
        job.failure_reason = change.failure_reason;
        job.exit_message = change.exit_message;
        job.last_modified = t;
        self.changed(name);
        Ok(())
    }

    /// Sets the status of many jobs at once; returns the time of the change.
    pub fn admin_bulk_status(&mut self, names: &[String], status: &str) -> Result<f64, String> {
        for name in names {
            self.admin_set_status(
                name,
                StatusChange {
                    status: status.to_string(),
                    failure_reason: None,
                    exit_message: None,
                },
            )?;
        }
        Ok(now())
    }

    pub fn admin_jobs(&mut self) -> Value {
        self.advance();
        let jobs: HashMap<&String, Value> = self
            .jobs
            .iter()
            .map(|(name, j)| {
                let creates = self.create_attempts.get(name).copied().unwrap_or(0);
                let v = json!({"status": j.status, "arn": j.arn, "tags": j.tags, "createCalls": creates,
                    "createdAt": j.creation_time, "lastModified": j.last_modified, "region": j.region,
                    "account": j.account});
                (name, v)
            })
            .collect();
        json!(jobs)
    }
}

fn arn_in(region: &str, account: &str, name: &str) -> String {
    format!(
        "arn:aws:sagemaker:{region}:{account}:processing-job/{}",
        name.to_lowercase()
    )
}

fn name_of(job: &Job) -> &str {
    job.request
        .get("ProcessingJobName")
        .and_then(Value::as_str)
        .unwrap_or_default()
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

fn summary(job: &Job) -> Value {
    let mut s = json!({
        "ProcessingJobName": name_of(job),
        "ProcessingJobArn": job.arn,
        "CreationTime": job.creation_time,
        "LastModifiedTime": job.last_modified,
        "ProcessingJobStatus": job.status,
    });
    if let Some(v) = job.end_time {
        s["ProcessingEndTime"] = json!(v);
    }
    if let Some(v) = &job.failure_reason {
        s["FailureReason"] = json!(v);
    }
    if let Some(v) = &job.exit_message {
        s["ExitMessage"] = json!(v);
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn job(name: &str) -> Value {
        json!({
            "ProcessingJobName": name,
            "AppSpecification": {"ImageUri": "123456789012.dkr.ecr.us-east-1.amazonaws.com/p:1"},
            "RoleArn": "arn:aws:iam::123456789012:role/SageMakerRole",
            "ProcessingResources": {"ClusterConfig": {"InstanceCount": 1, "InstanceType": "ml.m5.xlarge", "VolumeSizeInGB": 30}},
        })
    }

    /// The benchmark times a poll's mirroring from the List that first returned a job ended: a
    /// job listed while it runs is not recorded, and a later List keeps the first time.
    #[test]
    fn the_first_list_that_returns_a_job_ended_is_recorded() {
        let mut sim = Sim::new("us-east-1".into(), "123456789012".into());
        let caller = Caller::default();
        for name in ["a", "b"] {
            sim.handle("CreateProcessingJob", &job(name), caller).expect("create");
        }
        sim.handle("ListProcessingJobs", &json!({}), caller).expect("list");
        assert!(sim.listed_ended.is_empty(), "running jobs: {:?}", sim.listed_ended);
        sim.admin_bulk_status(&["a".to_string()], "Completed")
            .expect("complete a");
        let before = now();
        sim.handle("ListProcessingJobs", &json!({}), caller).expect("list");
        let first = *sim.listed_ended.get("a").expect("a recorded once listed ended");
        assert!(first >= before);
        assert!(!sim.listed_ended.contains_key("b"), "b still runs");
        // SageMaker's clock has milliseconds: a later List is a later time.
        std::thread::sleep(std::time::Duration::from_millis(5));
        sim.handle("ListProcessingJobs", &json!({}), caller)
            .expect("list again");
        assert_eq!(sim.listed_ended.get("a"), Some(&first), "the first List's time is kept");
    }
}
