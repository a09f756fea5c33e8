//! The SQS adapter: the queue an EventBridge rule fills with SageMaker's state-change events.
//! Long-polls in batches, deletes in batches; owns the SDK types.

use std::sync::Arc;

use aws_sdk_sqs::types::{DeleteMessageBatchRequestEntry, QueueAttributeName};
use aws_sdk_sqs::Client;

use super::{Adapter, AwsError, CallCounter, ErrorClass};

const SERVICE: &str = "sqs";

/// SQS's maximum: a receive waits this long for a message before answering empty.
pub const WAIT_SECONDS: i32 = 20;
/// SQS's maximum batch, for receive and delete alike.
pub const BATCH: i32 = 10;

/// One received message.
#[derive(Debug, Clone, PartialEq)]
pub struct Message {
    pub id: String,
    pub receipt: String,
    pub body: String,
}

/// One queue, by URL.
#[derive(Clone)]
pub struct Queue {
    client: Client,
    url: String,
    calls: Arc<CallCounter>,
}

impl Adapter for Queue {
    const SERVICE: &'static str = SERVICE;

    fn counter(&self) -> &CallCounter {
        &self.calls
    }
}

/// The region a standard SQS queue URL names (`https://sqs.<region>.amazonaws.com/…`, or the
/// legacy `https://<region>.queue.amazonaws.com/…`); `None` for any other host (a local
/// endpoint), where the default region applies.
pub fn region_of_url(url: &str) -> Option<String> {
    let host = url.split("://").nth(1)?.split(['/', ':']).next()?;
    let labels: Vec<&str> = host.split('.').collect();
    match labels.as_slice() {
        ["sqs", region, "amazonaws", ..] => Some(region.to_string()),
        [region, "queue", "amazonaws", ..] => Some(region.to_string()),
        _ => None,
    }
}

impl Queue {
    pub fn new(client: Client, url: &str, calls: Arc<CallCounter>) -> Self {
        Self {
            client,
            url: url.to_string(),
            calls,
        }
    }

    pub fn url(&self) -> &str {
        &self.url
    }

    /// The queue's visibility timeout in seconds: how long a received message stays hidden
    /// before it is delivered again. Also proves at startup that the queue can be reached.
    pub async fn visibility_timeout(&self) -> Result<Option<u64>, AwsError> {
        let out = self
            .call(
                "GetQueueAttributes",
                self.client
                    .get_queue_attributes()
                    .queue_url(&self.url)
                    .attribute_names(QueueAttributeName::VisibilityTimeout)
                    .send(),
            )
            .await?;
        Ok(out
            .attributes()
            .and_then(|a| a.get(&QueueAttributeName::VisibilityTimeout))
            .and_then(|v| v.parse().ok()))
    }

    /// Up to [`BATCH`] messages, waiting up to [`WAIT_SECONDS`] for the first.
    pub async fn receive(&self) -> Result<Vec<Message>, AwsError> {
        let out = self
            .call(
                "ReceiveMessage",
                self.client
                    .receive_message()
                    .queue_url(&self.url)
                    .max_number_of_messages(BATCH)
                    .wait_time_seconds(WAIT_SECONDS)
                    .send(),
            )
            .await?;
        Ok(out
            .messages()
            .iter()
            .filter_map(|m| {
                Some(Message {
                    id: m.message_id()?.to_string(),
                    receipt: m.receipt_handle()?.to_string(),
                    body: m.body().unwrap_or_default().to_string(),
                })
            })
            .collect())
    }

    /// Deletes up to [`BATCH`] messages; returns the IDs SQS could not delete (they come back
    /// after the visibility timeout and are handled again, harmlessly).
    pub async fn delete(&self, messages: &[&Message]) -> Result<Vec<String>, AwsError> {
        if messages.is_empty() {
            return Ok(Vec::new());
        }
        let entries = messages
            .iter()
            .map(|m| {
                DeleteMessageBatchRequestEntry::builder()
                    .id(&m.id)
                    .receipt_handle(&m.receipt)
                    .build()
                    .map_err(|e| AwsError {
                        service: SERVICE,
                        operation: "DeleteMessageBatch",
                        class: ErrorClass::Other,
                        code: None,
                        message: format!("could not build the request: {e}"),
                    })
            })
            .collect::<Result<Vec<_>, _>>()?;
        let out = self
            .call(
                "DeleteMessageBatch",
                self.client
                    .delete_message_batch()
                    .queue_url(&self.url)
                    .set_entries(Some(entries))
                    .send(),
            )
            .await?;
        Ok(out.failed().iter().map(|f| f.id().to_string()).collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_region_of_a_queue_url() {
        let cases = [
            ("https://sqs.eu-west-1.amazonaws.com/123456789012/q", Some("eu-west-1")),
            (
                "https://sqs.cn-north-1.amazonaws.com.cn/123456789012/q",
                Some("cn-north-1"),
            ),
            (
                "https://us-east-2.queue.amazonaws.com/123456789012/q",
                Some("us-east-2"),
            ),
            ("http://127.0.0.1:4566/123456789012/q", None),
            ("http://localhost:5000/123456789012/q", None),
            ("no url", None),
        ];
        for (url, region) in cases {
            assert_eq!(region_of_url(url).as_deref(), region, "{url}");
        }
    }
}
