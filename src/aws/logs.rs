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
            let events = self
                .call(
                    "GetLogEvents",
                    self.client
                        .get_log_events()
                        .log_group_name(LOG_GROUP)
                        .log_stream_name(stream)
                        .start_from_head(false)
                        .limit(lines)
                        .send(),
                )
                .await?;
            out.push(StreamTail {
                stream: stream.to_string(),
                lines: events
                    .events()
                    .iter()
                    .filter_map(|e| e.message().map(|m| m.trim_end().to_string()))
                    .collect(),
            });
        }
        Ok(out)
    }
}
