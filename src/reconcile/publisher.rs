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
use std::collections::HashMap;
use std::hash::{Hash, Hasher};
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::ObjectReference;
use k8s_openapi::api::events::v1::Event as K8sEvent;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use k8s_openapi::jiff::Timestamp;
use kube::api::{Patch, PatchParams, PostParams};
use kube::runtime::events::{Event, EventType, Reporter};
use kube::Api;
use prometheus_client::metrics::counter::Counter;
use tokio::sync::{mpsc, oneshot};

/// Lanes writing Events at once. One: an Event write at a time yields the apiserver to the
/// reconciles' status writes when a burst saturates it, and the Events follow a little later.
/// Measured at N = 1,000 against four lanes, back to back (docs/performance.md, the `lanes-*`
/// runs): the status of completed jobs was mirrored sooner with one.
pub const LANES: usize = 1;
/// Events waiting per lane before new ones are dropped: about 3 MB when full.
pub const LANE_CAPACITY: usize = 4000;
/// How long a published Event is remembered to fold a repeat into its series: kube's recorder's
/// window (six minutes), well inside the apiserver's own Event TTL (one hour by default).
pub const SERIES_WINDOW: Duration = Duration::from_secs(6 * 60);

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
    pub fn new(writer: EventWriter, dropped: Counter) -> Self {
        Self::with_capacity(writer, dropped, LANES, LANE_CAPACITY, SERIES_WINDOW)
    }

    fn with_capacity(writer: EventWriter, dropped: Counter, lanes: usize, capacity: usize, window: Duration) -> Self {
        let lanes = (0..lanes.max(1))
            .map(|_| {
                let (tx, rx) = mpsc::channel(capacity.max(1));
                tokio::spawn(lane(Series::new(writer.clone(), window), rx));
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

async fn lane(mut series: Series, mut rx: mpsc::Receiver<Message>) {
    while let Some(message) = rx.recv().await {
        match message {
            Message::Publish(boxed) => {
                let (event, regarding) = *boxed;
                if let Err(e) = series.publish(&event, &regarding).await {
                    tracing::warn!(error = %e, reason = event.reason, name = regarding.name, "cannot publish event");
                }
            }
            Message::Flush(done) => {
                let _ = done.send(());
            }
        }
    }
}

/// Writes `events.k8s.io/v1` Events as the controller: the same objects kube's `Recorder`
/// writes, without its memory of them (see [`Series`]).
#[derive(Clone)]
pub struct EventWriter {
    client: kube::Client,
    reporter: Reporter,
}

impl EventWriter {
    pub fn new(client: kube::Client, reporter: Reporter) -> Self {
        Self { client, reporter }
    }

    fn api(&self, regarding: &ObjectReference) -> Api<K8sEvent> {
        Api::namespaced(self.client.clone(), regarding.namespace.as_deref().unwrap_or("default"))
    }

    /// Creates a new Event; answers its name.
    pub async fn create(&self, ev: &Event, regarding: &ObjectReference) -> Result<String, kube::Error> {
        let now = Timestamp::now();
        let name = format!(
            "{}.{:x}",
            regarding.name.as_deref().unwrap_or(&self.reporter.controller),
            now.as_nanosecond()
        );
        let event = K8sEvent {
            action: Some(ev.action.clone()),
            reason: Some(ev.reason.clone()),
            event_time: Some(MicroTime(now)),
            regarding: Some(regarding.clone()),
            note: ev.note.clone(),
            metadata: ObjectMeta {
                namespace: regarding.namespace.clone(),
                name: Some(name.clone()),
                ..ObjectMeta::default()
            },
            reporting_controller: Some(self.reporter.controller.clone()),
            reporting_instance: Some(
                self.reporter
                    .instance
                    .clone()
                    .unwrap_or_else(|| self.reporter.controller.clone()),
            ),
            type_: Some(
                match ev.type_ {
                    EventType::Normal => "Normal",
                    EventType::Warning => "Warning",
                }
                .into(),
            ),
            related: ev.secondary.clone(),
            ..K8sEvent::default()
        };
        self.api(regarding).create(&PostParams::default(), &event).await?;
        Ok(name)
    }

    /// Counts a repeat of the Event `name` into its series.
    async fn repeat(&self, regarding: &ObjectReference, name: &str, count: i32) -> Result<(), kube::Error> {
        let patch = serde_json::json!({
            "series": { "count": count, "lastObservedTime": MicroTime(Timestamp::now()) }
        });
        self.api(regarding)
            .patch(name, &PatchParams::default(), &Patch::Merge(&patch))
            .await
            .map(|_| ())
    }
}

/// What a lane remembers of an Event it wrote, to fold a repeat into a series as kube's
/// `Recorder` does (same object, type, reason, action and related object; the first note
/// stays): a digest of that key, the Event's name and the count. kube's recorder keeps both the
/// key and the whole Event — object references, note and all — for six minutes, and walks all of
/// them under one lock at every publish; at 10,000 jobs that was tens of thousands of Events
/// (docs/performance.md). The digest is 64 bits: two different keys folding into one series
/// takes a collision among the Events of one lane's window.
struct Series {
    writer: EventWriter,
    window: Duration,
    published: HashMap<u64, Published>,
    swept: Instant,
}

struct Published {
    name: Box<str>,
    count: i32,
    last: Instant,
}

impl Series {
    fn new(writer: EventWriter, window: Duration) -> Self {
        Self {
            writer,
            window,
            published: HashMap::new(),
            swept: Instant::now(),
        }
    }

    fn key(ev: &Event, regarding: &ObjectReference) -> u64 {
        let mut h = DefaultHasher::new();
        (ev.type_ == EventType::Warning).hash(&mut h);
        ev.reason.hash(&mut h);
        ev.action.hash(&mut h);
        for r in std::iter::once(regarding).chain(ev.secondary.as_ref()) {
            (&r.api_version, &r.kind, &r.namespace, &r.name, &r.uid).hash(&mut h);
        }
        ev.secondary.is_some().hash(&mut h);
        h.finish()
    }

    /// Forgets what is older than the window, at most once per tenth of it.
    fn sweep(&mut self, now: Instant) {
        if now.duration_since(self.swept) < self.window / 10 {
            return;
        }
        self.swept = now;
        let window = self.window;
        self.published.retain(|_, p| now.duration_since(p.last) < window);
    }

    async fn publish(&mut self, ev: &Event, regarding: &ObjectReference) -> Result<(), kube::Error> {
        let now = Instant::now();
        self.sweep(now);
        let key = Self::key(ev, regarding);
        if let Some(p) = self
            .published
            .get_mut(&key)
            .filter(|p| now.duration_since(p.last) < self.window)
        {
            let count = p.count + 1;
            match self.writer.repeat(regarding, &p.name, count).await {
                Ok(()) => {
                    p.count = count;
                    p.last = now;
                    return Ok(());
                }
                // The Event is gone (the apiserver's TTL, or deleted): a new one begins.
                Err(kube::Error::Api(s)) if s.code == 404 => {}
                Err(e) => return Err(e),
            }
        }
        let name = self.writer.create(ev, regarding).await?;
        self.published.insert(
            key,
            Published {
                name: name.into_boxed_str(),
                count: 1,
                last: now,
            },
        );
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::convert::Infallible;
    use std::sync::{Arc, Mutex};

    use http::{Request, Response};
    use http_body_util::BodyExt;

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

    fn writer(client: kube::Client) -> EventWriter {
        EventWriter::new(
            client,
            Reporter {
                controller: "test".into(),
                instance: None,
            },
        )
    }

    /// One request the apiserver below took: method, path, body.
    type Request_ = (String, String, serde_json::Value);

    /// An apiserver that takes every Event write, once `open` says so (until then each write
    /// waits), and records it; a PATCH of an Event whose name is in `gone` answers 404, as after
    /// the apiserver's Event TTL.
    fn gated_apiserver(
        gone: Vec<String>,
        open: tokio::sync::watch::Receiver<bool>,
    ) -> (kube::Client, Arc<Mutex<Vec<Request_>>>) {
        let written = Arc::new(Mutex::new(Vec::new()));
        let seen = written.clone();
        let service = tower::service_fn(move |req: Request<kube::client::Body>| {
            let (seen, gone, mut open) = (seen.clone(), gone.clone(), open.clone());
            async move {
                let _ = open.wait_for(|o| *o).await;
                let method = req.method().to_string();
                let path = req.uri().path().to_string();
                let bytes = req
                    .into_body()
                    .collect()
                    .await
                    .map(|b| b.to_bytes())
                    .unwrap_or_default();
                let body: serde_json::Value = serde_json::from_slice(&bytes).unwrap_or_default();
                seen.lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .push((method.clone(), path.clone(), body.clone()));
                let missing = method == "PATCH" && gone.iter().any(|g| path.ends_with(&format!("/{g}")));
                let (status, reply) = if missing {
                    (
                        http::StatusCode::NOT_FOUND,
                        serde_json::json!({"kind": "Status", "apiVersion": "v1", "status": "Failure",
                            "reason": "NotFound", "code": 404, "message": "not found"}),
                    )
                } else {
                    let mut reply = body;
                    reply["apiVersion"] = "events.k8s.io/v1".into();
                    reply["kind"] = "Event".into();
                    reply["metadata"]["name"] = path.rsplit('/').next().unwrap_or_default().into();
                    (http::StatusCode::CREATED, reply)
                };
                let mut r = Response::new(http_body_util::Full::new(bytes::Bytes::from(reply.to_string())));
                *r.status_mut() = status;
                Ok::<_, Infallible>(r)
            }
        });
        (kube::Client::new(service, "n"), written)
    }

    /// [`gated_apiserver`], open from the start.
    fn recording_apiserver(gone: Vec<String>) -> (kube::Client, Arc<Mutex<Vec<Request_>>>) {
        gated_apiserver(gone, tokio::sync::watch::channel(true).1)
    }

    fn requests(written: &Arc<Mutex<Vec<Request_>>>) -> Vec<Request_> {
        written.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    #[tokio::test]
    async fn a_repeat_within_the_window_counts_into_the_first_events_series() {
        let (client, written) = recording_apiserver(vec![]);
        let mut series = Series::new(writer(client), SERIES_WINDOW);
        let mut noted = event("NetworkBlocked");
        noted.note = Some("first".into());
        series.publish(&noted, &regarding("a")).await.unwrap();
        noted.note = Some("second".into());
        series.publish(&noted, &regarding("a")).await.unwrap();
        series.publish(&noted, &regarding("a")).await.unwrap();
        // Another reason, and the same reason about another object: Events of their own.
        series.publish(&event("Created"), &regarding("a")).await.unwrap();
        series.publish(&noted, &regarding("b")).await.unwrap();
        let requests = requests(&written);
        let methods: Vec<&str> = requests.iter().map(|(m, _, _)| m.as_str()).collect();
        assert_eq!(methods, ["POST", "PATCH", "PATCH", "POST", "POST"]);
        let (_, _, first) = &requests[0];
        assert_eq!(first["reason"], "NetworkBlocked");
        assert_eq!(first["note"], "first");
        assert_eq!(first["regarding"]["name"], "a");
        assert_eq!(first["reportingController"], "test");
        assert_eq!(first["type"], "Normal");
        let name = first["metadata"]["name"].as_str().unwrap_or_default().to_string();
        assert!(name.starts_with("a."), "{name}");
        for (i, (_, path, body)) in requests[1..3].iter().enumerate() {
            assert_eq!(path, &format!("/apis/events.k8s.io/v1/namespaces/n/events/{name}"));
            assert_eq!(body["series"]["count"], i + 2);
            assert!(body["series"]["lastObservedTime"].is_string(), "{body}");
        }
    }

    #[tokio::test]
    async fn after_the_window_a_repeat_begins_a_new_event_and_the_old_ones_are_forgotten() {
        let (client, written) = recording_apiserver(vec![]);
        let window = Duration::from_millis(200);
        let mut series = Series::new(writer(client), window);
        for name in ["a", "b", "c", "d"] {
            series.publish(&event("Created"), &regarding(name)).await.unwrap();
        }
        assert_eq!(series.published.len(), 4);
        tokio::time::sleep(window + Duration::from_millis(50)).await;
        series.publish(&event("Created"), &regarding("a")).await.unwrap();
        let methods: Vec<String> = requests(&written).into_iter().map(|(m, _, _)| m).collect();
        assert_eq!(methods, ["POST"; 5]);
        assert_eq!(series.published.len(), 1, "what is past the window is not kept");
    }

    #[tokio::test]
    async fn a_series_whose_event_is_gone_begins_a_new_event() {
        let (client, written) = recording_apiserver(vec![]);
        let mut series = Series::new(writer(client.clone()), SERIES_WINDOW);
        series.publish(&event("Created"), &regarding("a")).await.unwrap();
        let first = requests(&written)[0].2["metadata"]["name"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        // The apiserver no longer has it.
        let (client, written) = recording_apiserver(vec![first.clone()]);
        series.writer = writer(client);
        series.publish(&event("Created"), &regarding("a")).await.unwrap();
        let requests = requests(&written);
        let methods: Vec<&str> = requests.iter().map(|(m, _, _)| m.as_str()).collect();
        assert_eq!(methods, ["PATCH", "POST"]);
        let second = requests[1].2["metadata"]["name"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        assert_ne!(second, first);
        series.publish(&event("Created"), &regarding("a")).await.unwrap();
        let last = &self::requests(&written)[2];
        assert_eq!(
            (last.0.as_str(), last.1.rsplit('/').next()),
            ("PATCH", Some(second.as_str()))
        );
    }

    #[tokio::test]
    async fn a_full_lane_drops_instead_of_waiting_and_each_objects_events_keep_their_order() {
        let (open, gate) = tokio::sync::watch::channel(false);
        let (client, written) = gated_apiserver(vec![], gate);
        let dropped = Counter::default();
        let publisher = EventPublisher::with_capacity(writer(client), dropped.clone(), 2, 3, SERIES_WINDOW);
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
        let written: Vec<String> = requests(&written)
            .into_iter()
            .map(|(_, _, body)| body["reason"].as_str().unwrap_or_default().to_string())
            .collect();
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
