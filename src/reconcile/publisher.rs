//! Kubernetes Events, published off the reconcile's path. An Event write is an apiserver round
//! trip like a status write; awaited inside the reconcile, the Events of a transition doubled the
//! time a reconcile slot was busy with its status (docs/performance.md). Here a reconcile hands
//! its Events to a background task and goes on.
//!
//! Events of one object go through one lane, in order, so that a series is folded as before and
//! a story reads in order; lanes run side by side. Each lane's queue is bounded: when the
//! apiserver cannot take Events as fast as they come, a new Event is dropped with a log line and
//! `smpc_kubernetes_events_dropped_total`, rather than make the reconciles wait — the status says
//! everything an Event says.

use std::collections::hash_map::DefaultHasher;
use std::hash::{Hash, Hasher};

use k8s_openapi::api::core::v1::ObjectReference;
use kube::runtime::events::{Event, Recorder};
use prometheus_client::metrics::counter::Counter;
use tokio::sync::{mpsc, oneshot};

/// Lanes writing Events at once: enough to keep up with the reconciles' status writes, few
/// enough that Events do not crowd them out at the apiserver.
pub const LANES: usize = 4;
/// Events waiting per lane before new ones are dropped.
pub const LANE_CAPACITY: usize = 1000;

enum Message {
    Publish(Box<(Event, ObjectReference)>),
    /// Answered once every Event queued before it is written (or failed).
    Flush(oneshot::Sender<()>),
}

/// Hands Events to background lanes; never waits.
pub struct EventPublisher {
    lanes: Vec<mpsc::Sender<Message>>,
    dropped: Counter,
}

impl EventPublisher {
    /// Starts the lanes (on the current tokio runtime); they end when the publisher is dropped.
    pub fn new(recorder: Recorder, dropped: Counter) -> Self {
        Self::with_capacity(recorder, dropped, LANES, LANE_CAPACITY)
    }

    fn with_capacity(recorder: Recorder, dropped: Counter, lanes: usize, capacity: usize) -> Self {
        let lanes = (0..lanes.max(1))
            .map(|_| {
                let (tx, rx) = mpsc::channel(capacity.max(1));
                tokio::spawn(lane(recorder.clone(), rx));
                tx
            })
            .collect();
        Self { lanes, dropped }
    }

    /// Queues `event` about `regarding`. A full lane drops it (logged and counted).
    pub fn publish(&self, event: Event, regarding: ObjectReference) {
        let lane = &self.lanes[lane_of(&regarding, self.lanes.len())];
        let reason = event.reason.clone();
        match lane.try_send(Message::Publish(Box::new((event, regarding)))) {
            Ok(()) => {}
            Err(mpsc::error::TrySendError::Full(_)) => {
                self.dropped.inc();
                tracing::warn!(
                    reason,
                    "Kubernetes Event dropped: the apiserver is not taking Events as fast as they come"
                );
            }
            Err(mpsc::error::TrySendError::Closed(_)) => {
                tracing::warn!(reason, "Kubernetes Event dropped: the publisher has stopped");
            }
        }
    }

    /// Waits until every Event queued so far has been written (or has failed): at shutdown,
    /// and in tests that read the Events a reconcile made.
    pub async fn flush(&self) {
        for lane in &self.lanes {
            let (tx, rx) = oneshot::channel();
            if lane.send(Message::Flush(tx)).await.is_ok() {
                let _ = rx.await;
            }
        }
    }
}

/// The lane of an object: the same for all its Events.
fn lane_of(regarding: &ObjectReference, lanes: usize) -> usize {
    let mut h = DefaultHasher::new();
    regarding.namespace.hash(&mut h);
    regarding.name.hash(&mut h);
    (h.finish() % lanes.max(1) as u64) as usize
}

async fn lane(recorder: Recorder, mut rx: mpsc::Receiver<Message>) {
    while let Some(message) = rx.recv().await {
        match message {
            Message::Publish(boxed) => {
                let (event, regarding) = *boxed;
                if let Err(e) = recorder.publish(&event, &regarding).await {
                    tracing::warn!(error = %e, reason = event.reason, name = regarding.name, "cannot publish event");
                }
            }
            Message::Flush(done) => {
                let _ = done.send(());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::convert::Infallible;
    use std::sync::{Arc, Mutex};
    use std::time::Duration;

    use http::{Request, Response};
    use http_body_util::BodyExt;
    use kube::runtime::events::{EventType, Reporter};

    use super::*;

    fn event(reason: &str) -> Event {
        Event {
            type_: EventType::Normal,
            reason: reason.into(),
            note: None,
            action: reason.into(),
            secondary: None,
        }
    }

    fn regarding(name: &str) -> ObjectReference {
        ObjectReference {
            api_version: Some("sagemaker.processing.dev/v1alpha1".into()),
            kind: Some("ProcessingJob".into()),
            name: Some(name.into()),
            namespace: Some("n".into()),
            uid: Some(format!("uid-{name}")),
            ..Default::default()
        }
    }

    /// An apiserver that records each Event's reason, once `open` says so (until then every
    /// Event write waits).
    fn apiserver(open: tokio::sync::watch::Receiver<bool>) -> (kube::Client, Arc<Mutex<Vec<String>>>) {
        let written = Arc::new(Mutex::new(Vec::new()));
        let seen = written.clone();
        let service = tower::service_fn(move |req: Request<kube::client::Body>| {
            let (seen, mut open) = (seen.clone(), open.clone());
            async move {
                let _ = open.wait_for(|o| *o).await;
                let bytes = req
                    .into_body()
                    .collect()
                    .await
                    .map(|b| b.to_bytes())
                    .unwrap_or_default();
                let body: serde_json::Value = serde_json::from_slice(&bytes).unwrap_or_default();
                let reason = body["reason"].as_str().unwrap_or_default().to_string();
                seen.lock().unwrap_or_else(|e| e.into_inner()).push(reason);
                let mut r = Response::new(http_body_util::Full::new(bytes));
                *r.status_mut() = http::StatusCode::CREATED;
                Ok::<_, Infallible>(r)
            }
        });
        (kube::Client::new(service, "n"), written)
    }

    fn recorder(client: kube::Client) -> Recorder {
        Recorder::new(
            client,
            Reporter {
                controller: "test".into(),
                instance: None,
            },
        )
    }

    #[tokio::test]
    async fn a_full_lane_drops_instead_of_waiting_and_each_objects_events_keep_their_order() {
        let (open, gate) = tokio::sync::watch::channel(false);
        let (client, written) = apiserver(gate);
        let dropped = Counter::default();
        let publisher = EventPublisher::with_capacity(recorder(client), dropped.clone(), 2, 3);
        // The apiserver takes nothing: one Event per lane in flight, three queued, the rest
        // dropped — and `publish` returned each time at once.
        let quick = tokio::time::timeout(Duration::from_secs(2), async {
            for i in 0..10 {
                publisher.publish(event(&format!("A{i}")), regarding("a"));
                tokio::task::yield_now().await;
            }
        })
        .await;
        assert!(quick.is_ok(), "publish waited for the apiserver");
        assert!(
            (6..=7).contains(&dropped.get()),
            "dropped {} of 10 (capacity 3 + 1 in flight)",
            dropped.get()
        );
        let dropped_a = dropped.get();
        open.send_replace(true);
        publisher.flush().await;
        for name in ["b", "c", "d"] {
            for i in 0..3 {
                publisher.publish(event(&format!("{name}{i}")), regarding(name));
            }
            publisher.flush().await;
        }
        assert_eq!(dropped.get(), dropped_a, "nothing dropped while the apiserver keeps up");
        let written = written.lock().unwrap_or_else(|e| e.into_inner()).clone();
        let of = |p: &str| written.iter().filter(|r| r.starts_with(p)).cloned().collect::<Vec<_>>();
        assert_eq!(
            of("A"),
            (0..10 - dropped_a).map(|i| format!("A{i}")).collect::<Vec<_>>()
        );
        for name in ["b", "c", "d"] {
            assert_eq!(of(name), (0..3).map(|i| format!("{name}{i}")).collect::<Vec<_>>());
        }
    }
}
