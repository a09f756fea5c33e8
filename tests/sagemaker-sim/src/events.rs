//! Publishes the jobs' state changes to EventBridge (`PutEvents`), as SageMaker does, so that an
//! EventBridge rule (moto's, on the local stack) can route them to an SQS queue.
//!
//! Delivery is as AWS documents EventBridge's: at least once and in no guaranteed order. By
//! default each event is published once, in order; `duplicateEvents` publishes a share twice
//! and `reorderEvents` shuffles each tick's events (see `plan`).
//!
//! A plain HTTP/1.1 client over a TCP stream: PutEvents in AWS's JSON 1.1 protocol is one POST,
//! and moto checks no signature, only the region of the credential scope.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use rand::seq::SliceRandom;
use rand::Rng;
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
/// events waiting in the outbox, per region (in order, unless `reorderEvents`; some twice with
/// `duplicateEvents`).
pub async fn publish(sim: Arc<Mutex<Sim>>, url: String) {
    let address = url.trim_start_matches("http://").trim_end_matches('/').to_string();
    loop {
        tokio::time::sleep(TICK).await;
        let (outgoing, duplicate, reorder) = {
            let mut s = sim.lock().await;
            s.tick();
            (
                std::mem::take(&mut s.outbox),
                s.config.duplicate_events,
                s.config.reorder_events,
            )
        };
        let calls = plan(outgoing, duplicate, reorder, &mut rand::rng());
        for (region, chunk) in calls {
            match put_events(&address, &region, &chunk).await {
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

/// The PutEvents calls that publish one tick's events: per region, at most 10 entries each.
/// EventBridge's delivery is at least once and unordered, as AWS documents it: a `duplicate`
/// share of the events is published twice (the copy right after the original), and with
/// `reorder` the tick's events are shuffled (before they are grouped and chunked).
pub fn plan(
    outgoing: Vec<OutgoingEvent>,
    duplicate: f64,
    reorder: bool,
    rng: &mut impl Rng,
) -> Vec<(String, Vec<Value>)> {
    let mut events = Vec::with_capacity(outgoing.len());
    for e in outgoing {
        if duplicate > 0.0 && rng.random::<f64>() < duplicate {
            events.push(e.clone());
        }
        events.push(e);
    }
    if reorder {
        events.shuffle(rng);
    }
    let mut by_region: BTreeMap<String, Vec<Value>> = BTreeMap::new();
    for e in events {
        by_region.entry(e.region).or_default().push(e.entry);
    }
    by_region
        .into_iter()
        .flat_map(|(region, entries)| {
            entries
                .chunks(ENTRIES_PER_CALL)
                .map(|c| (region.clone(), c.to_vec()))
                .collect::<Vec<_>>()
        })
        .collect()
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
    use rand::rngs::StdRng;
    use rand::SeedableRng;

    fn events(n: usize, region: &str) -> Vec<OutgoingEvent> {
        (0..n)
            .map(|i| OutgoingEvent {
                region: region.to_string(),
                entry: json!({"Detail": json!({"ProcessingJobName": format!("job-{i}")}).to_string()}),
            })
            .collect()
    }

    fn flat(calls: &[(String, Vec<Value>)]) -> Vec<Value> {
        calls.iter().flat_map(|(_, c)| c.clone()).collect()
    }

    #[test]
    fn by_default_events_are_published_once_in_order_ten_per_call_per_region() {
        let mut outgoing = events(23, "us-east-1");
        outgoing.extend(events(2, "eu-west-1"));
        let calls = plan(outgoing, 0.0, false, &mut StdRng::seed_from_u64(1));
        let sizes: Vec<(&str, usize)> = calls.iter().map(|(r, c)| (r.as_str(), c.len())).collect();
        assert_eq!(
            sizes,
            vec![("eu-west-1", 2), ("us-east-1", 10), ("us-east-1", 10), ("us-east-1", 3)]
        );
        let us: Vec<Value> = flat(&calls[1..]);
        let expected: Vec<Value> = events(23, "us-east-1").into_iter().map(|e| e.entry).collect();
        assert_eq!(us, expected);
    }

    #[test]
    fn duplicate_events_publishes_a_share_twice() {
        let all = plan(events(20, "us-east-1"), 1.0, false, &mut StdRng::seed_from_u64(2));
        let entries = flat(&all);
        assert_eq!(entries.len(), 40, "every event twice");
        assert!(
            entries.chunks(2).all(|pair| pair[0] == pair[1]),
            "the copy follows the original"
        );
        let some = flat(&plan(
            events(1000, "us-east-1"),
            0.3,
            false,
            &mut StdRng::seed_from_u64(3),
        ));
        assert!((1200..1400).contains(&some.len()), "about 30% twice: {}", some.len());
    }

    #[test]
    fn reorder_events_shuffles_a_tick_before_chunking() {
        let original: Vec<Value> = events(30, "us-east-1").into_iter().map(|e| e.entry).collect();
        let calls = plan(events(30, "us-east-1"), 0.0, true, &mut StdRng::seed_from_u64(4));
        assert_eq!(calls.len(), 3, "still ten per call");
        let shuffled = flat(&calls);
        assert_ne!(shuffled, original, "the order changed");
        let mut a: Vec<String> = shuffled.iter().map(Value::to_string).collect();
        let mut b: Vec<String> = original.iter().map(Value::to_string).collect();
        a.sort();
        b.sort();
        assert_eq!(a, b, "the same events, each once");
        // Across chunks: the first call does not hold just the first ten.
        assert_ne!(calls[0].1, original[..10].to_vec());
    }

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
