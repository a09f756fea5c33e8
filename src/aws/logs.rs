//! Reads the last lines a failed job wrote to CloudWatch Logs: SageMaker writes one stream per
//! instance, `<job-name>/algo-<n>-<timestamp>`, in the log group `/aws/sagemaker/ProcessingJobs`.

use std::sync::Arc;

use aws_sdk_cloudwatchlogs::Client;

use super::{Adapter, AwsError, CallCounter};
use crate::role::LOG_GROUP;

const SERVICE: &str = "logs";

/// The most streams read for one job (one per instance; the first ones tell the story).
const MAX_STREAMS: i32 = 4;

/// Reads job logs in one region.
pub struct LogReader {
    client: Client,
    calls: Arc<CallCounter>,
}

impl Adapter for LogReader {
    const SERVICE: &'static str = SERVICE;

    fn counter(&self) -> &CallCounter {
        &self.calls
    }
}

/// The last lines of one stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StreamTail {
    pub stream: String,
    pub lines: Vec<String>,
}

impl LogReader {
    pub fn new(client: Client, calls: Arc<CallCounter>) -> Self {
        Self { client, calls }
    }

    /// The last `lines` lines of each of the job's streams (at most [`MAX_STREAMS`]), oldest
    /// first. No stream is not an error: the job may have failed before its container started.
    pub async fn tail(&self, job_name: &str, lines: i32) -> Result<Vec<StreamTail>, AwsError> {
        let streams = self
            .call(
                "DescribeLogStreams",
                self.client
                    .describe_log_streams()
                    .log_group_name(LOG_GROUP)
                    .log_stream_name_prefix(format!("{job_name}/"))
                    .limit(MAX_STREAMS)
                    .send(),
            )
            .await?;
        let mut out = Vec::new();
        for stream in streams.log_streams().iter().filter_map(|s| s.log_stream_name()) {
            let page = self.page(stream, None, Some(lines)).await?;
            out.push(StreamTail {
                stream: stream.to_string(),
                lines: page.lines.into_iter().map(|l| l.message).collect(),
            });
        }
        Ok(out)
    }
}

/// One line of a job's log: when CloudWatch Logs says it was written (ms since the epoch), and
/// the text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogLine {
    pub timestamp: i64,
    pub message: String,
}

/// A page of a stream's lines, and where to read on from (CloudWatch's forward token).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Page {
    pub lines: Vec<LogLine>,
    pub next: Option<String>,
}

impl LogReader {
    /// Every log stream of the job (`<job-name>/…`), paged. `NotFound` when the log group itself
    /// does not exist (no job of the region ever wrote a line).
    pub async fn streams(&self, job_name: &str) -> Result<Vec<String>, AwsError> {
        let mut out = Vec::new();
        let mut token: Option<String> = None;
        loop {
            let page = self
                .call(
                    "DescribeLogStreams",
                    self.client
                        .describe_log_streams()
                        .log_group_name(LOG_GROUP)
                        .log_stream_name_prefix(format!("{job_name}/"))
                        .set_next_token(token.clone())
                        .send(),
                )
                .await?;
            out.extend(
                page.log_streams()
                    .iter()
                    .filter_map(|s| s.log_stream_name().map(str::to_string)),
            );
            token = page.next_token().map(str::to_string);
            if token.is_none() || page.log_streams().is_empty() {
                return Ok(out);
            }
        }
    }

    /// One page of a stream: from `after` (a forward token of an earlier page) on, else its last
    /// `last` lines, else from its beginning.
    pub async fn page(&self, stream: &str, after: Option<String>, last: Option<i32>) -> Result<Page, AwsError> {
        let from_head = after.is_some() || last.is_none();
        let events = self
            .call(
                "GetLogEvents",
                self.client
                    .get_log_events()
                    .log_group_name(LOG_GROUP)
                    .log_stream_name(stream)
                    .start_from_head(from_head)
                    .set_next_token(after)
                    .set_limit(last)
                    .send(),
            )
            .await?;
        Ok(Page {
            lines: events
                .events()
                .iter()
                .filter_map(|e| {
                    Some(LogLine {
                        timestamp: e.timestamp()?,
                        message: e.message()?.trim_end().to_string(),
                    })
                })
                .collect(),
            next: events.next_forward_token().map(str::to_string),
        })
    }
}
