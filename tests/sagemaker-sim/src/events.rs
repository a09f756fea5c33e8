//! Publishes the jobs' state changes to EventBridge (`PutEvents`), as SageMaker does, so that an
//! EventBridge rule (moto's, on the local stack) can route them to an SQS queue.
//!
//! A plain HTTP/1.1 client over a TCP stream: PutEvents in AWS's JSON 1.1 protocol is one POST,
//! and moto checks no signature, only the region of the credential scope.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::Mutex;

use crate::model::{OutgoingEvent, Sim};

/// How often due transitions are applied and the outbox is published.
const TICK: Duration = Duration::from_millis(100);
/// EventBridge's limit of entries per PutEvents.
const ENTRIES_PER_CALL: usize = 10;

/// Runs forever: every tick, applies the automatic transitions that are due and publishes the
/// events waiting in the outbox, in order, per region.
pub async fn publish(sim: Arc<Mutex<Sim>>, url: String) {
    let address = url.trim_start_matches("http://").trim_end_matches('/').to_string();
    loop {
        tokio::time::sleep(TICK).await;
        let outgoing: Vec<OutgoingEvent> = {
            let mut s = sim.lock().await;
            s.tick();
            std::mem::take(&mut s.outbox)
        };
        let mut by_region: BTreeMap<String, Vec<Value>> = BTreeMap::new();
        for e in outgoing {
            by_region.entry(e.region).or_default().push(e.entry);
        }
        for (region, entries) in by_region {
            for chunk in entries.chunks(ENTRIES_PER_CALL) {
                match put_events(&address, &region, chunk).await {
                    Ok(()) => {
                        let at = crate::model::now();
                        sim.lock()
                            .await
                            .published
                            .extend(chunk.iter().filter_map(|entry| published(entry, at)));
                    }
                    Err(e) => eprintln!(
                        "sagemaker-sim: publishing {} event(s) to {url} failed: {e}",
                        chunk.len()
                    ),
                }
            }
        }
    }
}

/// The record of one published event: its job, its status, when PutEvents took it.
fn published(entry: &Value, at: f64) -> Option<Value> {
    let detail: Value = serde_json::from_str(entry.get("Detail")?.as_str()?).ok()?;
    Some(json!({
        "job": detail.get("ProcessingJobName")?,
        "status": detail.get("ProcessingJobStatus")?,
        "at": at,
    }))
}

async fn put_events(address: &str, region: &str, entries: &[Value]) -> std::io::Result<()> {
    let body = json!({ "Entries": entries }).to_string();
    let request = format!(
        "POST / HTTP/1.1\r\nHost: {address}\r\nContent-Type: application/x-amz-json-1.1\r\nX-Amz-Target: AWSEvents.PutEvents\r\nAuthorization: AWS4-HMAC-SHA256 Credential=testing/20260101/{region}/events/aws4_request, SignedHeaders=host, Signature=0\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    let mut stream = TcpStream::connect(address).await?;
    stream.write_all(request.as_bytes()).await?;
    let mut response = Vec::new();
    stream.read_to_end(&mut response).await?;
    let text = String::from_utf8_lossy(&response);
    let status = text.split_whitespace().nth(1).unwrap_or_default();
    if status != "200" {
        return Err(std::io::Error::other(format!(
            "HTTP {status}: {}",
            text.lines().last().unwrap_or_default()
        )));
    }
    // PutEvents answers 200 with a count of entries it refused.
    let failed = text
        .split("\r\n\r\n")
        .nth(1)
        .and_then(|b| serde_json::from_str::<Value>(b).ok())
        .and_then(|v| v.get("FailedEntryCount").and_then(Value::as_u64))
        .unwrap_or(0);
    if failed > 0 {
        return Err(std::io::Error::other(format!("{failed} entries refused: {text}")));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_published_event_is_recorded_with_its_job_and_status() {
        let detail = json!({"ProcessingJobName": "job-1", "ProcessingJobStatus": "Completed", "LastModifiedTime": 1});
        let entry = json!({"Source": "aws.sagemaker", "Detail": detail.to_string()});
        assert_eq!(
            published(&entry, 12.5),
            Some(json!({"job": "job-1", "status": "Completed", "at": 12.5}))
        );
        assert_eq!(published(&json!({"Detail": "{}"}), 1.0), None);
    }
}
