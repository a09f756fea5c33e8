//! `logs NAME`: the CloudWatch Logs of a ProcessingJob's SageMaker job, from the terminal. The
//! resource's status says which job (name, region); its streams (`<job-name>/…` in
//! `/aws/sagemaker/ProcessingJobs`, one per instance) are read with the same adapter as the
//! failure log tail and printed merged by time.

use std::collections::BTreeMap;
use std::time::Duration;

use k8s_openapi::api::core::v1::{ConfigMap, Namespace};
use kube::{Api, Client};

use crate::accounts::{Directory, Scope, ACCOUNT_MAP, TEAM_MAP};
use crate::api::{JobPhase, ProcessingJob, ProcessingJobStatus};
use crate::aws::logs::{LogLine, LogReader};
use crate::aws::{AwsClients, AwsError, CallCounter, ErrorClass};
use crate::role::LOG_GROUP;

/// Exit codes: each failure its own, so that a script can tell them apart.
pub mod exit {
    /// The cluster or the AWS configuration cannot be used.
    pub const SETUP: u8 = 1;
    /// No such ProcessingJob.
    pub const NOT_FOUND: u8 = 3;
    /// The resource has no SageMaker job (yet): its phase says why.
    pub const NO_JOB: u8 = 4;
    /// The job exists but has written no log line (yet).
    pub const NO_LOGS: u8 = 5;
    /// CloudWatch Logs refused or failed to answer.
    pub const UNREADABLE: u8 = 6;
}

/// Arguments of `logs`.
#[derive(Debug, clap::Args)]
pub struct LogsArgs {
    /// The ProcessingJob resource.
    pub name: String,
    /// Its namespace (default: the kubeconfig context's).
    #[arg(short = 'n', long)]
    pub namespace: Option<String>,
    /// Keep printing new lines until the job has ended and its streams are drained (or Ctrl-C).
    #[arg(short = 'f', long)]
    pub follow: bool,
    /// Only the last N lines of the job (all streams merged); default: every line.
    #[arg(long, value_name = "N")]
    pub tail: Option<u32>,
    /// How often `--follow` reads new lines.
    #[arg(long, default_value = "2s", value_parser = crate::cli::run::parse_duration)]
    pub interval: Duration,
    /// Namespace of ACK's cross-account ConfigMaps, read for a job created in another account
    /// (status.account) to assume the role mapped to that account, as the controller does.
    #[arg(long, env = "SMPC_CARM_NAMESPACE", default_value = "default")]
    pub carm_namespace: String,
}

/// The job a resource's status points at: `account` is the account it was created in when not
/// the caller's own (ACK's cross-account resource management).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobAt {
    pub name: String,
    pub region: String,
    pub account: Option<String>,
}

/// The job recorded in status, or why there is none: from the `Creating` write-ahead on, a job
/// may exist.
pub fn job_at(status: Option<&ProcessingJobStatus>) -> Result<JobAt, String> {
    let Some(s) = status else {
        return Err("no SageMaker job yet: the controller has not looked at the resource".into());
    };
    let may_exist = matches!(
        s.phase,
        Some(JobPhase::Creating | JobPhase::Created | JobPhase::Adopted)
    ) || s.processing_job_arn.is_some();
    match (&s.processing_job_name, &s.region) {
        (Some(name), Some(region)) if may_exist => Ok(JobAt {
            name: name.clone(),
            region: region.clone(),
            account: s.account.clone(),
        }),
        _ => {
            let phase = s
                .phase
                .as_ref()
                .map(|p| format!("{p:?}"))
                .unwrap_or_else(|| "unknown".into());
            let why = s
                .conditions
                .iter()
                .find(|c| c.type_ == "Ready" && c.status != "True")
                .map(|c| format!(" ({}: {})", c.reason, c.message))
                .unwrap_or_default();
            Err(format!("no SageMaker job: the resource is {phase}{why}"))
        }
    }
}

/// Whether the job has ended (nothing more will be written once its streams are drained).
pub fn ended(status: Option<&ProcessingJobStatus>) -> bool {
    status
        .and_then(|s| s.processing_job_status.as_deref())
        .is_some_and(|s| matches!(s, "Completed" | "Failed" | "Stopped"))
}

/// A stream's name without the job's: `algo-1-1700000000`.
pub fn short_name<'a>(job: &str, stream: &'a str) -> &'a str {
    stream
        .strip_prefix(job)
        .and_then(|s| s.strip_prefix('/'))
        .unwrap_or(stream)
}

/// The lines of several streams as one, ordered by time (a tie keeps the streams' order), each
/// prefixed by its stream's short name when there is more than one stream; the last `last`.
pub fn merge(job: &str, streams: &[(String, Vec<LogLine>)], last: Option<usize>) -> Vec<String> {
    let several = streams.len() > 1;
    let mut lines: Vec<(i64, usize, &str, &str)> = streams
        .iter()
        .enumerate()
        .flat_map(|(i, (stream, lines))| {
            lines
                .iter()
                .map(move |l| (l.timestamp, i, short_name(job, stream), l.message.as_str()))
        })
        .collect();
    lines.sort_by_key(|(t, i, _, _)| (*t, *i));
    let skip = last.map_or(0, |n| lines.len().saturating_sub(n));
    lines
        .into_iter()
        .skip(skip)
        .map(|(_, _, short, message)| {
            if several {
                format!("[{short}] {message}")
            } else {
                message.to_string()
            }
        })
        .collect()
}

/// Why CloudWatch Logs could not be read, and what to do about it.
pub fn unreadable(e: &AwsError, region: &str) -> String {
    if matches!(e.code.as_deref(), Some("AccessDenied" | "AccessDeniedException")) {
        return format!(
            "not allowed to read the job's logs: {} was refused; the caller needs logs:DescribeLogStreams and logs:GetLogEvents on arn:aws:logs:{region}:*:log-group:{LOG_GROUP}:* ({e})",
            e.operation
        );
    }
    format!("cannot read the job's logs from CloudWatch Logs in {region}: {e}")
}

/// Where the job's logs are read: the caller's own account, or, for a job created in another
/// account, the role ACK's ConfigMaps map to that account (through the namespace's team or
/// account annotation, as the controller reaches it).
async fn scope_of(client: &Client, namespace: &str, job: &JobAt, carm_namespace: &str) -> Result<Scope, Failure> {
    let Some(account) = job.account.as_deref() else {
        return Ok(Scope::own(job.region.clone()));
    };
    let directory = Directory::new(carm_namespace);
    let maps: Api<ConfigMap> = Api::namespaced(client.clone(), carm_namespace);
    for name in [ACCOUNT_MAP, TEAM_MAP] {
        let map = maps.get_opt(name).await.map_err(|e| {
            Failure(
                format!("the job runs in account {account}: cannot read ConfigMap {carm_namespace}/{name}: {e}"),
                exit::SETUP,
            )
        })?;
        directory.set_map(name, map.map(|m| m.data.unwrap_or_default()));
    }
    let namespaces: Api<Namespace> = Api::all(client.clone());
    if let Ok(Some(ns)) = namespaces.get_metadata_opt(namespace).await {
        directory.set_namespace(namespace, ns.metadata.annotations.as_ref());
    }
    directory
        .pinned(namespace, Some(account), &job.region)
        .map_err(|e| Failure(format!("the job runs in account {account}: {}", e.0), exit::UNREADABLE))
}

/// A failure of the command: its message and exit code.
#[derive(Debug)]
struct Failure(String, u8);

/// Runs `logs`; returns the process exit code.
pub async fn run(args: LogsArgs) -> u8 {
    match logs(args).await {
        Ok(()) => 0,
        Err(Failure(message, code)) => {
            eprintln!("error: {message}");
            code
        }
    }
}

async fn logs(args: LogsArgs) -> Result<(), Failure> {
    let client = Client::try_default()
        .await
        .map_err(|e| Failure(format!("cannot configure the Kubernetes client: {e}"), exit::SETUP))?;
    let namespace = args
        .namespace
        .clone()
        .unwrap_or_else(|| client.default_namespace().to_string());
    let api: Api<ProcessingJob> = Api::namespaced(client.clone(), &namespace);
    let status = read_status(&api, &args.name, &namespace).await?;
    let job = job_at(status.as_ref()).map_err(|m| Failure(format!("{namespace}/{}: {m}", args.name), exit::NO_JOB))?;
    let scope = scope_of(&client, &namespace, &job, &args.carm_namespace).await?;
    let aws = AwsClients::load(Duration::from_secs(60), std::sync::Arc::new(CallCounter::default())).await;
    aws.sign_in(&scope)
        .await
        .map_err(|e| Failure(format!("cannot reach account {scope}: {e}"), exit::UNREADABLE))?;
    let reader = aws.logs(&scope);
    let fail = |e: AwsError| Failure(unreadable(&e, &job.region), exit::UNREADABLE);

    let mut after: BTreeMap<String, Option<String>> = BTreeMap::new();
    let first = read_round(&reader, &job, &mut after, args.tail.map(|n| n as i32))
        .await
        .map_err(fail)?;
    if first.is_empty() && !args.follow {
        let what = if after.is_empty() {
            "no log stream"
        } else {
            "no log line"
        };
        return Err(Failure(
            format!(
                "SageMaker job {} has {what} in {LOG_GROUP} ({}) yet: its container may not have started",
                job.name, job.region
            ),
            exit::NO_LOGS,
        ));
    }
    print_lines(&merge(&job.name, &first, args.tail.map(|n| n as usize)));
    if !args.follow {
        return Ok(());
    }
    loop {
        let done = ended(read_status(&api, &args.name, &namespace).await?.as_ref());
        let new = read_round(&reader, &job, &mut after, None).await.map_err(fail)?;
        print_lines(&merge(&job.name, &new, None));
        if done && new.iter().all(|(_, l)| l.is_empty()) {
            return Ok(());
        }
        tokio::select! {
            _ = tokio::time::sleep(args.interval) => {}
            _ = tokio::signal::ctrl_c() => return Ok(()),
        }
    }
}

async fn read_status(
    api: &Api<ProcessingJob>,
    name: &str,
    namespace: &str,
) -> Result<Option<ProcessingJobStatus>, Failure> {
    match api.get_opt(name).await {
        Ok(Some(job)) => Ok(job.status),
        Ok(None) => Err(Failure(
            format!("no ProcessingJob {name} in namespace {namespace}"),
            exit::NOT_FOUND,
        )),
        Err(e) => Err(Failure(
            format!("cannot read ProcessingJob {namespace}/{name}: {e}"),
            exit::SETUP,
        )),
    }
}

/// The lines written since the last round, per stream: a stream seen for the first time is read
/// from its beginning (or its last `last` lines), the others from their forward token, page
/// after page until a page is empty.
async fn read_round(
    reader: &LogReader,
    job: &JobAt,
    after: &mut BTreeMap<String, Option<String>>,
    last: Option<i32>,
) -> Result<Vec<(String, Vec<LogLine>)>, AwsError> {
    let streams = match reader.streams(&job.name).await {
        Ok(s) => s,
        // No log group yet: no job of the region ever wrote a line.
        Err(e) if e.class == ErrorClass::NotFound => Vec::new(),
        Err(e) => return Err(e),
    };
    let mut out = Vec::new();
    for stream in streams {
        let mut token = after.get(&stream).cloned().flatten();
        let mut lines = Vec::new();
        let mut tail = if after.contains_key(&stream) { None } else { last };
        loop {
            let page = reader.page(&stream, token.clone(), tail).await?;
            let empty = page.lines.is_empty();
            let same = page.next == token;
            lines.extend(page.lines);
            if page.next.is_some() {
                token = page.next;
            }
            // The last lines are one page; the rest until a page brings nothing new.
            if tail.is_some() || empty || same {
                break;
            }
            tail = None;
        }
        after.insert(stream.clone(), token);
        out.push((stream, lines));
    }
    Ok(out)
}

fn print_lines(lines: &[String]) {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    for l in lines {
        if writeln!(out, "{l}").is_err() {
            return;
        }
    }
    let _ = out.flush();
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line(timestamp: i64, message: &str) -> LogLine {
        LogLine {
            timestamp,
            message: message.into(),
        }
    }

    #[test]
    fn streams_merge_by_time_with_their_short_names() {
        let streams = vec![
            ("j/algo-1-17".to_string(), vec![line(1, "a1"), line(4, "a4")]),
            (
                "j/algo-2-17".to_string(),
                vec![line(2, "b2"), line(4, "b4"), line(5, "b5")],
            ),
        ];
        assert_eq!(
            merge("j", &streams, None),
            [
                "[algo-1-17] a1",
                "[algo-2-17] b2",
                "[algo-1-17] a4",
                "[algo-2-17] b4",
                "[algo-2-17] b5"
            ]
        );
        assert_eq!(merge("j", &streams, Some(2)), ["[algo-2-17] b4", "[algo-2-17] b5"]);
        assert_eq!(merge("j", &streams[..1], None), ["a1", "a4"], "one stream: no prefix");
    }

    #[test]
    fn a_resource_without_a_job_says_why() {
        let blocked: ProcessingJobStatus = serde_json::from_value(serde_json::json!({
            "phase": "Blocked",
            "conditions": [{"type": "Ready", "status": "False", "reason": "NetworkInvalid", "message": "NoS3Route", "lastTransitionTime": "2026-01-01T00:00:00Z"}]
        }))
        .expect("status");
        let e = job_at(Some(&blocked)).expect_err("no job");
        assert!(e.contains("Blocked") && e.contains("NetworkInvalid: NoS3Route"), "{e}");
        assert!(job_at(None).is_err());
        let created: ProcessingJobStatus = serde_json::from_value(serde_json::json!({
            "phase": "Created", "processingJobName": "j", "region": "eu-west-1"
        }))
        .expect("status");
        assert_eq!(
            job_at(Some(&created)),
            Ok(JobAt {
                name: "j".into(),
                region: "eu-west-1".into(),
                account: None
            })
        );
    }

    #[test]
    fn access_denied_names_the_permissions() {
        let e = AwsError {
            service: "logs",
            operation: "GetLogEvents",
            class: ErrorClass::Credentials,
            code: Some("AccessDeniedException".into()),
            message: "not authorized".into(),
        };
        let m = unreadable(&e, "eu-west-1");
        assert!(
            m.contains("logs:DescribeLogStreams") && m.contains("logs:GetLogEvents"),
            "{m}"
        );
        assert!(m.contains("GetLogEvents was refused"), "{m}");
    }
}
