//! Event-driven status: SageMaker's state-change events, routed by an EventBridge rule to an SQS
//! queue (`--events-queue-url`, [docs/events.md](../../docs/events.md)), are mirrored within about
//! a second and without a Describe, and the List poll becomes a backstop.
//!
//! A message is deleted only once the resource's status shows what it reported — seen in the
//! controller's cache, so written to the apiserver — or once it is known to need nothing: a job
//! this controller does not track, an event the status already shows (a duplicate, or older than
//! what is known), another kind of event, or a malformed message (it can never become valid, so
//! redelivering it would only delay the queue; the List backstop covers whatever it meant). A
//! message whose status is not written within [`WRITE_WAIT`] is left to SQS, which delivers it
//! again after the queue's visibility timeout.
//!
//! A job's first event (InProgress) is published when it is created, and often arrives before
//! the create's own status write has reached the controller's cache, which still shows the
//! write-ahead (the job's annotation, and no status or the one from before the create). Handed
//! over then, it would start a reconcile that reads the write-ahead and looks before creating
//! (Describe, ListTags) to adopt the job it has just created. So an
//! event waits, within the same bound, until the cache shows the job created, and is decided
//! then: usually the status already shows its state.
//!
//! While every receive succeeds, events flow, and the List poll slows to the backstop interval
//! once one poll has run a whole normal interval after the flow began (that poll catches up what
//! the gap before missed). A failed receive ends the flow: the poll is back at its normal
//! interval at once.
//!
//! But a flow can stop without any error: the EventBridge rule disabled or deleted, its target
//! removed, a queue policy that no longer lets EventBridge send — every receive still succeeds,
//! empty. So "events flow" is proven by events, not by receives: the controller knows what it
//! should hear (every create it makes is followed by the job's InProgress event, every change the
//! List shows should have had its event; [`Tracker::overdue_events`]). An owed event that has not
//! come within [`Cadence::owed_bound`] ends the flow as a failed receive does, counts
//! `smpc_events_missed_total`, and says in a warning which queue and what was missed
//! ([`Hearing`]). Once the event of a job the controller created is heard again, the flow
//! resumes (one catch-up poll, then the backstop).

use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::future::join_all;
use kube::runtime::reflector::{ObjectRef, Store};
use tokio::sync::{watch, Semaphore};
use tokio_util::sync::CancellationToken;

use crate::api::{JobPhase, ProcessingJobStatus};
use crate::aws::events::{self, Parsed};
use crate::aws::sqs::{Message, Queue, BATCH};
use crate::aws::AwsClients;
use crate::job::{epoch_of, JobStatus};
use crate::reconcile::tracker::{ChangeLister, Missed, Tracker};
use crate::reconcile::Guarded;
use crate::telemetry::metrics::{Metrics, OutcomeLabels};
use crate::telemetry::stages;

/// How long a message waits for its status to be written (and, before that, for its job's
/// creation to reach the cache) before it is left to SQS. Below the default visibility timeout
/// (30 s), so that a message is not delivered twice while it waits.
pub const WRITE_WAIT: Duration = Duration::from_secs(20);

/// How often the cache is looked at while a message waits for its status.
const WRITE_CHECK: Duration = Duration::from_millis(50);

/// Batches waiting for their status at once; the next receive waits for a free place.
const IN_FLIGHT: usize = 16;

/// The longest pause between failed receives.
const MAX_RECEIVE_BACKOFF: Duration = Duration::from_secs(30);

/// The settings of `--events-queue-url`.
#[derive(Debug, Clone)]
pub struct EventsSettings {
    pub queue_url: String,
    /// The List poll's interval while events flow.
    pub backstop_interval: Duration,
}

/// When the List poll runs: at `normal` intervals, at `backstop` ones while events flow.
#[derive(Debug, Clone, Copy)]
pub struct Cadence {
    pub normal: Duration,
    pub backstop: Duration,
}

impl Cadence {
    /// Whether the poll is at its backstop interval: events have flowed since `flowing_since`,
    /// and the last poll began a whole normal interval after that, so it covered every change
    /// an event of the gap before could have missed.
    pub fn at_backstop(&self, last_poll: Option<Instant>, flowing_since: Option<Instant>) -> bool {
        matches!((last_poll, flowing_since), (Some(last), Some(since)) if last >= since + self.normal)
    }

    /// How long an owed event may take before the flow is taken for stopped: twice the normal
    /// poll interval (an event normally comes within a second or two).
    pub fn owed_bound(&self) -> Duration {
        self.normal * 2
    }

    /// When the next poll is due (the first one at once). After a gap begins, the normal
    /// interval from the last poll is usually past already: the catch-up poll runs at once.
    pub fn next_poll(&self, last_poll: Option<Instant>, flowing_since: Option<Instant>, now: Instant) -> Instant {
        let Some(last) = last_poll else { return now };
        if self.at_backstop(last_poll, flowing_since) {
            last + self.backstop
        } else {
            last + self.normal
        }
    }
}

/// Runs the consumer of the queue and the List poll at the cadence events allow, until
/// `shutdown`.
pub async fn run(
    settings: EventsSettings,
    poll_interval: Duration,
    aws: Arc<AwsClients>,
    tracker: Arc<Tracker>,
    store: Store<Guarded>,
    metrics: Arc<Metrics>,
    shutdown: CancellationToken,
) {
    let queue = aws.queue(&settings.queue_url);
    tracker.listen();
    let (flow_tx, flow_rx) = watch::channel(None);
    let cadence = Cadence {
        normal: poll_interval,
        backstop: settings.backstop_interval,
    };
    let consumer = Consumer {
        queue,
        tracker: tracker.clone(),
        store,
        metrics: metrics.clone(),
    };
    tokio::join!(
        poll(
            tracker,
            aws,
            cadence,
            flow_rx,
            metrics,
            settings.queue_url.clone(),
            shutdown.clone()
        ),
        consumer.run(flow_tx, shutdown),
    );
}

/// How often the poll loop looks for owed events that did not come.
const OWED_CHECK: Duration = Duration::from_secs(1);

/// Whether SageMaker's events are heard: owed events that did not come silence the flow until
/// the event of a job the controller created is heard again. Pure but for the tracker's clock.
#[derive(Debug, Default)]
pub struct Hearing {
    /// When (the tracker's clock) missed events silenced the flow.
    silent_since: Option<f64>,
    /// When the flow was heard again after a silence.
    resumed: Option<Instant>,
}

/// What one look at the owed events found.
#[derive(Debug, Default, PartialEq)]
pub struct Heard {
    /// Owed events that did not come in time (each reported once).
    pub missed: Vec<Missed>,
    /// The flow went silent with this look.
    pub silenced: bool,
    /// The flow was heard again with this look.
    pub resumed: bool,
}

impl Hearing {
    pub fn look(&mut self, tracker: &Tracker, bound: Duration) -> Heard {
        let missed = tracker.overdue_events(bound.as_secs_f64());
        let silenced = !missed.is_empty() && self.silent_since.is_none();
        if silenced {
            self.silent_since = Some(tracker.now());
        }
        let resumed = !silenced && self.silent_since.is_some_and(|at| tracker.creation_heard_since(at));
        if resumed {
            self.silent_since = None;
            self.resumed = Some(Instant::now());
            tracker.forgive_owed();
        }
        Heard {
            missed,
            silenced,
            resumed,
        }
    }

    /// Since when events flow, given the receives' view (`since`): none while silent, and not
    /// before the flow was heard again.
    pub fn flowing_since(&self, since: Option<Instant>) -> Option<Instant> {
        if self.silent_since.is_some() {
            return None;
        }
        match (since, self.resumed) {
            (Some(s), Some(r)) => Some(s.max(r)),
            (s, _) => s,
        }
    }
}

/// The tracker's List poll, at the cadence the flow of events allows; it also looks, every
/// [`OWED_CHECK`], for owed events that did not come.
pub async fn poll<L: ChangeLister + ?Sized>(
    tracker: Arc<Tracker>,
    lister: Arc<L>,
    cadence: Cadence,
    mut flow: watch::Receiver<Option<Instant>>,
    metrics: Arc<Metrics>,
    queue_url: String,
    shutdown: CancellationToken,
) {
    let mut last = None;
    let mut open = true;
    let mut hearing = Hearing::default();
    loop {
        let heard = hearing.look(&tracker, cadence.owed_bound());
        if !heard.missed.is_empty() {
            metrics.events_missed.inc_by(heard.missed.len() as u64);
            let what: Vec<String> = heard
                .missed
                .iter()
                .take(5)
                .map(|m| format!("{} ({}, {})", m.job, m.key, m.what))
                .collect();
            tracing::warn!(
                queue = queue_url,
                missed = heard.missed.len(),
                jobs = what.join("; "),
                "SageMaker events owed to this controller did not arrive: the flow stopped without an error (the EventBridge rule disabled or deleted, its target removed, the queue's policy, another region; docs/events.md). The List poll is back at its normal interval"
            );
        }
        if heard.resumed {
            tracing::info!(queue = queue_url, "SageMaker events are heard again for jobs this controller created: the List poll returns to its backstop interval after one more poll");
        }
        let since = hearing.flowing_since(if open { *flow.borrow_and_update() } else { None });
        metrics.events_flowing.set(i64::from(cadence.at_backstop(last, since)));
        let now = Instant::now();
        let due = cadence.next_poll(last, since, now);
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep_until(due.min(now + OWED_CHECK).into()) => {}
            changed = flow.changed(), if open => {
                // The consumer is gone: no flow any more.
                open = changed.is_ok();
                continue;
            }
        }
        if Instant::now() < due {
            continue;
        }
        last = Some(Instant::now());
        tracker.poll_once(lister.as_ref()).await;
    }
}

/// What becomes of one message.
#[derive(Debug, PartialEq)]
enum Step {
    /// Delete it now; the outcome is counted.
    Done(&'static str),
    /// Decide again once the cache shows the resource's job created (see [`Shows::NotCreated`]).
    AwaitCreated(Awaited),
    /// Delete it once the resource's status shows the state handed to the reconcile.
    AwaitStatus(Awaited),
}

/// The job's state an event reported, and the resource whose status is to show it.
#[derive(Debug, PartialEq)]
struct Awaited {
    object: ObjectRef<Guarded>,
    name: String,
    state: JobStatus,
    modified: f64,
}

impl Awaited {
    fn shows(&self, store: &Store<Guarded>) -> Shows {
        status_shows(
            store.get(&self.object).as_deref(),
            &self.name,
            self.state,
            self.modified,
        )
    }
}

/// Whether a resource's status shows a job's state `status` of `modified`.
#[derive(Debug, PartialEq)]
enum Shows {
    Yes,
    /// The state, without a time: the create's answer (InProgress, no LastModifiedTime), which
    /// the job's first event only confirms. Writing the time would cost a status write per job
    /// and tell nobody anything; the tracker takes SageMaker's time from the event instead.
    Untimed,
    No,
    /// The cache shows the resource before its job was created (the write-ahead, no status
    /// showing the job yet): the create's status write has not reached the watch. A reconcile
    /// now would look before creating and adopt the job it has just created.
    NotCreated,
    /// The resource is gone, being deleted (cleanup reads the job itself), unreadable, or
    /// records another job: the event is none of its business any more.
    Gone,
}

impl Shows {
    /// Nothing more to wait for: the status shows the state, or never will.
    fn settled(&self) -> bool {
        matches!(self, Shows::Yes | Shows::Untimed | Shows::Gone)
    }
}

fn status_shows(object: Option<&Guarded>, name: &str, state: JobStatus, modified: f64) -> Shows {
    let Some(Ok(job)) = object.map(|o| &o.0) else {
        return Shows::Gone;
    };
    if job.metadata.deletion_timestamp.is_some() {
        return Shows::Gone;
    }
    let Some(status) = job.status.as_ref() else {
        return Shows::NotCreated;
    };
    if status.processing_job_name.as_deref().is_some_and(|n| n != name) {
        return Shows::Gone;
    }
    if before_created(status, crate::reconcile::pinned(&job.metadata).is_some()) {
        return Shows::NotCreated;
    }
    let shown = status.processing_job_status.as_deref().and_then(JobStatus::parse);
    let known = status.last_modified_time.as_deref().and_then(epoch_of);
    if shown.is_some_and(JobStatus::is_terminal) || known.is_some_and(|k| k >= modified) {
        Shows::Yes
    } else if known.is_none() && shown == Some(state) {
        Shows::Untimed
    } else {
        Shows::No
    }
}

/// The write-ahead (`pinned`: recorded in the metadata, the status still showing what came
/// before — a place in the queue, a block; or, from earlier controllers, the status `Creating`, or
/// a recorded name without an ARN): the job may have been created, but the status does not say
/// so yet. Other phases without a job (pending, queued, refused) are left to the reconcile.
fn before_created(status: &ProcessingJobStatus, pinned: bool) -> bool {
    match status.phase {
        Some(JobPhase::Creating) => true,
        Some(JobPhase::Created | JobPhase::Adopted | JobPhase::Refused) => false,
        Some(_) => pinned,
        None => status.processing_job_arn.is_none(),
    }
}

/// Decides what one message needs, handing a new state to the tracker (which triggers the
/// resource's reconcile).
fn step(message: &Message, tracker: &Tracker, store: &Store<Guarded>) -> Step {
    match events::parse(&message.body) {
        Err(e) => {
            tracing::warn!(message_id = message.id, error = %e, "deleting a malformed message from the events queue");
            Step::Done("malformed")
        }
        Ok(Parsed::Other { source, detail_type }) => {
            tracing::debug!(
                message_id = message.id,
                source,
                detail_type,
                "not a processing job state change: deleted"
            );
            Step::Done("other_event")
        }
        Ok(Parsed::Incomplete {
            account,
            region,
            name,
            missing,
        }) => match tracker.locate(account.as_deref(), &region, &name).and_then(|key| {
            tracker.heard(&key, &name, None);
            tracker.describe_soon(&key, &name)
        }) {
            Some(_) => {
                tracing::info!(
                    job = name,
                    region,
                    missing,
                    "a state change event without {missing}: the job is described instead"
                );
                Step::Done("incomplete")
            }
            None => Step::Done("unknown_job"),
        },
        Ok(Parsed::Change { account, region, state }) => {
            let Some(key) = tracker.locate(account.as_deref(), &region, &state.name) else {
                return Step::Done("unknown_job");
            };
            // Whatever it brings, it is an event owed for the job: the flow is heard.
            tracker.heard(&key, &state.name, state.last_modified_epoch);
            let (Some(object), Some(modified)) = (tracker.object_of(&key, &state.name), state.last_modified_epoch)
            else {
                return Step::Done("unknown_job");
            };
            let awaited = Awaited {
                object,
                name: state.name.clone(),
                state: state.status,
                modified,
            };
            match awaited.shows(store) {
                Shows::Yes => Step::Done("duplicate"),
                Shows::Untimed => {
                    tracker.confirm(&key, &state.name, modified);
                    Step::Done("duplicate")
                }
                Shows::Gone => Step::Done("unknown_job"),
                Shows::NotCreated => {
                    tracing::debug!(job = awaited.name, status = %awaited.state, "the cache does not show the job created yet: the event waits");
                    Step::AwaitCreated(awaited)
                }
                Shows::No => {
                    tracing::debug!(job = awaited.name, status = %awaited.state, "a state change handed to the reconcile");
                    tracker.observe_event(&key, *state);
                    Step::AwaitStatus(awaited)
                }
            }
        }
    }
}

/// What became of one message.
#[derive(Debug, PartialEq)]
enum Settled {
    /// Deleted; the outcome is counted.
    Delete(&'static str),
    /// Not settled by the deadline, for the reason given: left for SQS to deliver again.
    Leave(ObjectRef<Guarded>, &'static str),
}

/// Decides one message, waiting until `deadline` for the cache to show its job created (then
/// deciding again: usually the status shows the state by then) and for the status to show a
/// state handed to the reconcile.
async fn decide(
    message: &Message,
    tracker: &Tracker,
    store: &Store<Guarded>,
    deadline: Instant,
    received: f64,
) -> Settled {
    loop {
        match step(message, tracker, store) {
            Step::Done(outcome) => return Settled::Delete(outcome),
            Step::AwaitCreated(a) => {
                if !until(deadline, || a.shows(store) != Shows::NotCreated).await {
                    return Settled::Leave(a.object, "the job's creation did not reach the cache in time");
                }
            }
            Step::AwaitStatus(a) => {
                stages::handed(&a.object.name, received);
                return if until(deadline, || a.shows(store).settled()).await {
                    Settled::Delete("applied")
                } else {
                    Settled::Leave(a.object, "the status was not written in time")
                };
            }
        }
    }
}

/// Whether `done` holds before `deadline`, looking every [`WRITE_CHECK`].
async fn until(deadline: Instant, done: impl Fn() -> bool) -> bool {
    loop {
        if done() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(WRITE_CHECK).await;
    }
}

/// The consumer of the events queue.
struct Consumer {
    queue: Queue,
    tracker: Arc<Tracker>,
    store: Store<Guarded>,
    metrics: Arc<Metrics>,
}

impl Consumer {
    async fn run(self, flow: watch::Sender<Option<Instant>>, shutdown: CancellationToken) {
        let reachable = self.queue.visibility_timeout().await;
        // The queue answers: events flow from now (the first receive may wait 20 s for one).
        if reachable.is_ok() {
            flow.send_replace(Some(Instant::now()));
        }
        match reachable {
            Ok(Some(v)) if Duration::from_secs(v) <= WRITE_WAIT => tracing::warn!(
                queue = self.queue.url(),
                visibility_timeout = v,
                "the events queue's visibility timeout is not longer than the {}s a message waits for its status: messages may be delivered twice (harmless, but raise it to 30s or more)",
                WRITE_WAIT.as_secs()
            ),
            Ok(v) => tracing::info!(queue = self.queue.url(), visibility_timeout = v, "consuming SageMaker events"),
            // The receive loop retries; until it succeeds the List poll runs at its normal interval.
            Err(e) => tracing::warn!(queue = self.queue.url(), error = %e, "the events queue cannot be read yet"),
        }
        let this = Arc::new(self);
        let settling = Arc::new(Semaphore::new(IN_FLIGHT));
        let mut failures = 0u32;
        loop {
            let received = tokio::select! {
                _ = shutdown.cancelled() => return,
                r = this.queue.receive() => r,
            };
            match received {
                Ok(messages) => {
                    failures = 0;
                    flow.send_if_modified(|since| {
                        let started = since.is_none();
                        if started {
                            tracing::info!(queue = this.queue.url(), "SageMaker events flow: the List poll slows to its backstop interval after one more poll");
                            *since = Some(Instant::now());
                        }
                        started
                    });
                    if messages.is_empty() {
                        continue;
                    }
                    let received = stages::epoch_now();
                    let permit = tokio::select! {
                        _ = shutdown.cancelled() => return,
                        p = settling.clone().acquire_owned() => p,
                    };
                    let Ok(permit) = permit else { return };
                    let this = this.clone();
                    tokio::spawn(async move {
                        this.settle(messages, received).await;
                        drop(permit);
                    });
                }
                Err(e) => {
                    failures += 1;
                    this.metrics.event_receive_errors.inc();
                    let pause = receive_backoff(failures);
                    if flow.send_replace(None).is_some() {
                        tracing::warn!(queue = this.queue.url(), error = %e, "SageMaker events stopped: the List poll is back at its normal interval and catches up");
                    } else {
                        tracing::warn!(queue = this.queue.url(), error = %e, retry_in = ?pause, "receiving from the events queue failed");
                    }
                    tokio::select! {
                        _ = shutdown.cancelled() => return,
                        _ = tokio::time::sleep(pause) => {}
                    }
                }
            }
        }
    }

    /// Handles one received batch: each message decided (waiting for its status, within
    /// [`WRITE_WAIT`] of the receive), the settled ones deleted.
    async fn settle(&self, messages: Vec<Message>, received: f64) {
        let deadline = Instant::now() + WRITE_WAIT;
        let settled = join_all(
            messages
                .iter()
                .map(|m| decide(m, &self.tracker, &self.store, deadline, received)),
        )
        .await;
        let mut done: Vec<&Message> = Vec::new();
        for (m, settled) in messages.iter().zip(settled) {
            match settled {
                Settled::Delete(outcome) => {
                    self.count(outcome);
                    done.push(m);
                }
                Settled::Leave(object, why) => {
                    self.count("pending");
                    tracing::info!(object = %object, message_id = m.id, "{why}: the event is left for SQS to deliver again");
                }
            }
        }
        for chunk in done.chunks(BATCH as usize) {
            match self.queue.delete(chunk).await {
                Ok(failed) if failed.is_empty() => {}
                Ok(failed) => tracing::warn!(
                    ?failed,
                    "SQS did not delete some handled events: they come back and are handled again"
                ),
                Err(e) => {
                    tracing::warn!(error = %e, "deleting handled events failed: they come back and are handled again")
                }
            }
        }
    }

    fn count(&self, outcome: &'static str) {
        self.metrics.events.get_or_create(&OutcomeLabels { outcome }).inc();
    }
}

/// 1 s, 2 s, 4 s, … up to [`MAX_RECEIVE_BACKOFF`].
fn receive_backoff(failures: u32) -> Duration {
    Duration::from_secs(1u64 << failures.saturating_sub(1).min(5)).min(MAX_RECEIVE_BACKOFF)
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures::channel::mpsc;
    use kube::runtime::watcher;
    use serde_json::json;

    const REGION: &str = "us-east-1";
    const NORMAL: Duration = Duration::from_secs(30);
    const BACKSTOP: Duration = Duration::from_secs(300);

    fn cadence() -> Cadence {
        Cadence {
            normal: NORMAL,
            backstop: BACKSTOP,
        }
    }

    #[test]
    fn without_events_the_poll_keeps_its_interval() {
        let t0 = Instant::now();
        let c = cadence();
        assert_eq!(c.next_poll(None, None, t0), t0, "the first poll at once");
        let mut last = t0;
        for _ in 0..5 {
            let next = c.next_poll(Some(last), None, last);
            assert_eq!(next, last + NORMAL);
            last = next;
        }
    }

    #[test]
    fn flowing_events_stretch_the_poll_after_one_catch_up_poll() {
        let t0 = Instant::now();
        let c = cadence();
        let since = t0 + Duration::from_secs(1);
        // The poll at t0 ran before the flow: the next one still comes at the normal interval,
        // and covers the gap.
        let catch_up = c.next_poll(Some(t0), Some(since), since);
        assert_eq!(catch_up, t0 + NORMAL);
        assert!(!c.at_backstop(Some(t0), Some(since)));
        // It ran less than a normal interval after the flow began: once more.
        let next = c.next_poll(Some(catch_up), Some(since), catch_up);
        assert_eq!(next, catch_up + NORMAL);
        // From then on, the backstop.
        assert!(c.at_backstop(Some(next), Some(since)));
        assert_eq!(c.next_poll(Some(next), Some(since), next), next + BACKSTOP);
    }

    #[test]
    fn a_gap_brings_the_normal_interval_back_and_polls_at_once() {
        let t0 = Instant::now();
        let c = cadence();
        let since = t0;
        let last = t0 + Duration::from_secs(60);
        assert_eq!(c.next_poll(Some(last), Some(since), last), last + BACKSTOP);
        // A receive fails two minutes after that poll: the normal interval is past.
        let gap = last + Duration::from_secs(120);
        let due = c.next_poll(Some(last), None, gap);
        assert!(due <= gap, "the catch-up poll is due at once");
        // Events flow again right after the catch-up poll: not yet the backstop.
        let again = gap + Duration::from_secs(1);
        assert_eq!(c.next_poll(Some(gap), Some(again), again), gap + NORMAL);
    }

    #[test]
    fn receive_backoff_grows_and_is_capped() {
        assert_eq!(receive_backoff(1), Duration::from_secs(1));
        assert_eq!(receive_backoff(2), Duration::from_secs(2));
        assert_eq!(receive_backoff(4), Duration::from_secs(8));
        assert_eq!(receive_backoff(40), MAX_RECEIVE_BACKOFF);
    }

    fn message(body: &str) -> Message {
        Message {
            id: "m-1".into(),
            receipt: "r-1".into(),
            body: body.into(),
        }
    }

    fn event(name: &str, status: &str, modified_ms: i64) -> Message {
        message(
            &json!({
                "source": events::SOURCE,
                "detail-type": events::DETAIL_TYPE,
                "region": REGION,
                "detail": {"ProcessingJobName": name, "ProcessingJobStatus": status, "LastModifiedTime": modified_ms},
            })
            .to_string(),
        )
    }

    /// A resource in the cache whose status records its created `job` as `status`, last
    /// modified at `modified` (RFC 3339).
    fn resource(name: &str, job: &str, status: &str, modified: Option<&str>) -> Guarded {
        with_status(
            name,
            json!({
                "phase": "Created",
                "processingJobName": job,
                "processingJobARN": format!("arn:aws:sagemaker:{REGION}:123456789012:processing-job/{job}"),
                "processingJobStatus": status,
                "lastModifiedTime": modified,
            }),
        )
    }

    /// A resource whose status is the write-ahead of `job`: recorded, the create's answer not yet.
    fn creating(name: &str, job: &str) -> Guarded {
        with_status(
            name,
            json!({"phase": "Creating", "processingJobName": job, "region": REGION}),
        )
    }

    fn with_status(name: &str, status: serde_json::Value) -> Guarded {
        serde_json::from_value(json!({
            "apiVersion": "sagemaker.processing.dev/v1alpha1",
            "kind": "ProcessingJob",
            "metadata": {"name": name, "namespace": "team-a", "uid": "u-1"},
            "spec": {
                "processingResources": {"clusterConfig": {"instanceCount": 1, "instanceType": "ml.m5.large", "volumeSizeInGB": 1}},
                "appSpecification": {"imageURI": "123456789012.dkr.ecr.us-east-1.amazonaws.com/x:1"},
                "roleARN": "arn:aws:iam::123456789012:role/r"
            },
            "status": status,
        }))
        .expect("a ProcessingJob")
    }

    struct World {
        tracker: Tracker,
        triggers: mpsc::UnboundedReceiver<ObjectRef<Guarded>>,
        store: Store<Guarded>,
        writer: kube::runtime::reflector::store::Writer<Guarded>,
    }

    fn world() -> World {
        let (tx, triggers) = mpsc::unbounded();
        let (store, writer) = kube::runtime::reflector::store();
        World {
            tracker: Tracker::new(tx, Duration::from_secs(600)),
            triggers,
            store,
            writer,
        }
    }

    impl World {
        fn put(&mut self, obj: Guarded) {
            self.writer.apply_watcher_event(&watcher::Event::Apply(obj));
        }

        fn track(&self, job: &str, known: f64) -> ObjectRef<Guarded> {
            let object = ObjectRef::new("r").within("team-a");
            self.tracker
                .track(&crate::accounts::Scope::own(REGION), job, object.clone(), known);
            object
        }

        fn triggered(&mut self) -> usize {
            let mut n = 0;
            while self.triggers.try_recv().is_ok() {
                n += 1;
            }
            n
        }
    }

    /// 2026-01-01T00:00:10Z and a later instant, in the event's milliseconds and the status's
    /// RFC 3339.
    const T10_MS: i64 = 1_767_225_610_000;
    const T10: &str = "2026-01-01T00:00:10Z";
    const T20_MS: i64 = 1_767_225_620_000;

    #[test]
    fn a_new_state_is_handed_to_the_reconcile_and_waits_for_its_status() {
        let mut w = world();
        let object = w.track("job-a", 1_767_225_600.0);
        w.put(resource("r", "job-a", "InProgress", Some(T10)));
        let s = step(&event("job-a", "Completed", T20_MS), &w.tracker, &w.store);
        assert_eq!(
            s,
            Step::AwaitStatus(Awaited {
                object,
                name: "job-a".into(),
                state: JobStatus::Completed,
                modified: 1_767_225_620.0
            })
        );
        assert_eq!(w.triggered(), 1);
        let handed = w
            .tracker
            .take_event(&crate::accounts::Scope::own(REGION).key(), "job-a")
            .expect("the event's state");
        assert_eq!(handed.status, JobStatus::Completed);
        assert!(w
            .tracker
            .take_changed(&crate::accounts::Scope::own(REGION).key(), "job-a"));
        assert!(
            w.tracker
                .take_event(&crate::accounts::Scope::own(REGION).key(), "job-a")
                .is_none(),
            "handed over once"
        );

        // Written: the same event again is a duplicate, deleted at once.
        w.put(resource("r", "job-a", "Completed", Some("2026-01-01T00:00:20Z")));
        assert_eq!(
            step(&event("job-a", "Completed", T20_MS), &w.tracker, &w.store),
            Step::Done("duplicate")
        );
        assert_eq!(w.triggered(), 0);
    }

    #[test]
    fn an_event_before_the_cache_shows_its_job_created_waits_instead_of_starting_a_reconcile() {
        let mut w = world();
        let object = w.track("job-a", 1_767_225_600.0);
        // The create's status write has not reached the cache: no status yet, or the write-ahead.
        w.put(with_status("r", serde_json::Value::Null));
        let waits = Step::AwaitCreated(Awaited {
            object,
            name: "job-a".into(),
            state: JobStatus::InProgress,
            modified: 1_767_225_610.0,
        });
        assert_eq!(step(&event("job-a", "InProgress", T10_MS), &w.tracker, &w.store), waits);
        w.put(creating("r", "job-a"));
        assert_eq!(step(&event("job-a", "InProgress", T10_MS), &w.tracker, &w.store), waits);
        // A job that waited in the queue: the write-ahead is in its metadata, and its status
        // still shows the queue.
        let mut queued = with_status("r", json!({"phase": "Queued"}));
        if let Ok(job) = queued.0.as_mut() {
            job.metadata.annotations =
                Some([(crate::api::JOB_ANNOTATION.to_string(), format!("{REGION}/job-a"))].into());
        }
        w.put(queued);
        assert_eq!(step(&event("job-a", "InProgress", T10_MS), &w.tracker, &w.store), waits);
        assert!(matches!(
            step(&event("job-a", "Completed", T20_MS), &w.tracker, &w.store),
            Step::AwaitCreated(_)
        ));
        // A reconcile now would read `Creating` and look before creating (Describe, ListTags).
        assert_eq!(w.triggered(), 0, "no reconcile while the cache shows Creating");
        let key = crate::accounts::Scope::own(REGION).key();
        assert!(w.tracker.take_event(&key, "job-a").is_none(), "nothing handed over");

        // Created, as the create's answer says (InProgress, no time): the first event only
        // confirms it; the end is new.
        w.put(resource("r", "job-a", "InProgress", None));
        assert_eq!(
            step(&event("job-a", "InProgress", T10_MS), &w.tracker, &w.store),
            Step::Done("duplicate")
        );
        assert_eq!(w.triggered(), 0, "a confirmation costs no reconcile nor status write");
        assert!(matches!(
            step(&event("job-a", "Completed", T20_MS), &w.tracker, &w.store),
            Step::AwaitStatus(_)
        ));
        assert_eq!(w.triggered(), 1);
    }

    #[tokio::test]
    async fn a_waiting_event_is_decided_again_once_its_job_is_created_and_deleted_after_its_status() {
        let World {
            tracker,
            mut triggers,
            store,
            mut writer,
        } = world();
        let object = ObjectRef::new("r").within("team-a");
        tracker.track(
            &crate::accounts::Scope::own(REGION),
            "job-a",
            object.clone(),
            1_767_225_600.0,
        );
        writer.apply_watcher_event(&watcher::Event::Apply(creating("r", "job-a")));
        let started = Instant::now();
        let deadline = started + Duration::from_secs(10);
        let first = event("job-a", "InProgress", T10_MS);
        let end = event("job-a", "Completed", T20_MS);
        let cache = async move {
            tokio::time::sleep(Duration::from_millis(300)).await;
            writer.apply_watcher_event(&watcher::Event::Apply(resource("r", "job-a", "InProgress", None)));
            tokio::time::sleep(Duration::from_millis(300)).await;
            writer.apply_watcher_event(&watcher::Event::Apply(resource(
                "r",
                "job-a",
                "Completed",
                Some("2026-01-01T00:00:20Z"),
            )));
            writer
        };
        let (first, end, mut writer) = tokio::join!(
            decide(&first, &tracker, &store, deadline, 0.0),
            decide(&end, &tracker, &store, deadline, 0.0),
            cache
        );
        assert_eq!(first, Settled::Delete("duplicate"));
        assert_eq!(end, Settled::Delete("applied"));
        assert!(
            started.elapsed() >= Duration::from_millis(600),
            "deleted only once written"
        );
        let mut handed = 0;
        while triggers.try_recv().is_ok() {
            handed += 1;
        }
        assert_eq!(handed, 1, "only the end went to a reconcile");

        // A creation that does not reach the cache by the deadline: left to SQS, nothing handed.
        tracker.track(
            &crate::accounts::Scope::own(REGION),
            "job-b",
            ObjectRef::new("s").within("team-a"),
            1_767_225_600.0,
        );
        writer.apply_watcher_event(&watcher::Event::Apply(creating("s", "job-b")));
        let soon = Instant::now() + Duration::from_millis(200);
        assert!(matches!(
            decide(&event("job-b", "InProgress", T10_MS), &tracker, &store, soon, 0.0).await,
            Settled::Leave(..)
        ));
        assert!(triggers.try_recv().is_err());
    }

    #[test]
    fn an_event_older_than_the_status_or_the_last_event_changes_nothing() {
        let mut w = world();
        w.track("job-a", 1_767_225_600.0);
        w.put(resource("r", "job-a", "InProgress", Some("2026-01-01T00:00:20Z")));
        assert_eq!(
            step(&event("job-a", "InProgress", T10_MS), &w.tracker, &w.store),
            Step::Done("duplicate")
        );
        // Out of order while the newer state is not written yet: the newer one stays handed over.
        w.put(resource("r", "job-a", "InProgress", None));
        assert!(matches!(
            step(&event("job-a", "Completed", T20_MS), &w.tracker, &w.store),
            Step::AwaitStatus(_)
        ));
        assert!(matches!(
            step(&event("job-a", "Stopping", T10_MS), &w.tracker, &w.store),
            Step::AwaitStatus(_)
        ));
        assert_eq!(w.triggered(), 1, "the older event triggers nothing");
        let handed = w
            .tracker
            .take_event(&crate::accounts::Scope::own(REGION).key(), "job-a")
            .expect("the newer state");
        assert_eq!(handed.status, JobStatus::Completed);
    }

    #[test]
    fn the_same_event_delivered_again_before_its_status_is_written_is_handed_over_again() {
        let mut w = world();
        w.track("job-a", 1_767_225_600.0);
        w.put(resource("r", "job-a", "InProgress", Some(T10)));
        step(&event("job-a", "Failed", T20_MS), &w.tracker, &w.store);
        // The reconcile took it, but its status write failed: SQS delivers the message again.
        assert!(w
            .tracker
            .take_event(&crate::accounts::Scope::own(REGION).key(), "job-a")
            .is_some());
        assert_eq!(w.triggered(), 1);
        step(&event("job-a", "Failed", T20_MS), &w.tracker, &w.store);
        assert_eq!(w.triggered(), 1);
        assert!(w
            .tracker
            .take_event(&crate::accounts::Scope::own(REGION).key(), "job-a")
            .is_some());
    }

    #[test]
    fn an_ended_status_shows_every_event() {
        let mut w = world();
        w.track("job-a", 1_767_225_600.0);
        // An ended status without a time (written from an older controller) still ends it.
        w.put(resource("r", "job-a", "Stopped", None));
        assert_eq!(
            step(&event("job-a", "Stopping", T20_MS), &w.tracker, &w.store),
            Step::Done("duplicate")
        );
    }

    #[test]
    fn untracked_jobs_gone_resources_and_foreign_messages_are_deleted_at_once() {
        let mut w = world();
        assert_eq!(
            step(&event("someone-elses", "Completed", T20_MS), &w.tracker, &w.store),
            Step::Done("unknown_job")
        );
        // Tracked, but the resource is gone from the cache (deleted meanwhile).
        w.track("job-a", 1_767_225_600.0);
        assert_eq!(
            step(&event("job-a", "Completed", T20_MS), &w.tracker, &w.store),
            Step::Done("unknown_job")
        );
        // The resource records another job now.
        w.put(resource("r", "job-b", "InProgress", None));
        assert_eq!(
            step(&event("job-a", "Completed", T20_MS), &w.tracker, &w.store),
            Step::Done("unknown_job")
        );
        let other =
            json!({"source": "aws.sagemaker", "detail-type": "SageMaker Training Job State Change", "detail": {}});
        assert_eq!(
            step(&message(&other.to_string()), &w.tracker, &w.store),
            Step::Done("other_event")
        );
        for body in ["", "{", r#"{"source": "aws.sagemaker"}"#] {
            assert_eq!(step(&message(body), &w.tracker, &w.store), Step::Done("malformed"));
        }
        assert_eq!(w.triggered(), 0);
    }

    #[test]
    fn an_event_without_a_time_asks_for_a_describe() {
        let mut w = world();
        w.track("job-a", 1_767_225_600.0);
        let body = json!({
            "source": events::SOURCE, "detail-type": events::DETAIL_TYPE, "region": REGION,
            "detail": {"ProcessingJobName": "job-a", "ProcessingJobStatus": "Completed"},
        });
        assert_eq!(
            step(&message(&body.to_string()), &w.tracker, &w.store),
            Step::Done("incomplete")
        );
        assert_eq!(w.triggered(), 1);
        assert!(
            w.tracker
                .take_event(&crate::accounts::Scope::own(REGION).key(), "job-a")
                .is_none(),
            "no state to mirror"
        );
        assert!(
            w.tracker
                .take_changed(&crate::accounts::Scope::own(REGION).key(), "job-a"),
            "described on the next reconcile"
        );
    }

    /// A silent flow: an owed creation event that does not come silences the flow (no backstop,
    /// the poll at its normal interval) until the event of a job the controller created is heard
    /// again; a receive that succeeds does not end the silence by itself.
    #[test]
    fn owed_events_that_do_not_come_silence_the_flow_until_one_is_heard() {
        use crate::accounts::ScopeKey;
        use std::sync::Mutex;
        let clock = Arc::new(Mutex::new(1_800_000_000.0f64));
        let read = clock.clone();
        let (tx, _rx) = futures::channel::mpsc::unbounded();
        let tracker = Tracker::with_clock(tx, Duration::from_secs(600), move || *read.lock().unwrap());
        let pass = |s: f64| *clock.lock().unwrap() += s;
        let scope = crate::accounts::Scope::own("us-east-1");
        let key: ScopeKey = scope.key();
        let object = |name: &str| ObjectRef::new(name).within("ns");
        tracker.listen();
        let bound = Duration::from_secs(10);
        let mut hearing = Hearing::default();
        let receives_since = Some(Instant::now());

        let now = || *clock.lock().unwrap();
        let created = now();
        tracker.track(&scope, "a", object("a"), created);
        tracker.expect_creation(&key, "a");
        pass(5.0);
        assert_eq!(hearing.look(&tracker, bound), Heard::default());
        assert_eq!(hearing.flowing_since(receives_since), receives_since);
        pass(6.0);
        let heard = hearing.look(&tracker, bound);
        assert!(heard.silenced && heard.missed.len() == 1, "{heard:?}");
        assert_eq!(hearing.flowing_since(receives_since), None, "silent: no backstop");
        // Receives go on succeeding; still silent.
        pass(30.0);
        assert_eq!(hearing.look(&tracker, bound), Heard::default());
        assert_eq!(hearing.flowing_since(receives_since), None);

        // A new job's creation event is heard: the flow resumes, from now.
        let created = now();
        tracker.track(&scope, "b", object("b"), created);
        tracker.expect_creation(&key, "b");
        pass(1.0);
        tracker.heard(&key, "b", None);
        let heard = hearing.look(&tracker, bound);
        assert!(heard.resumed && !heard.silenced && heard.missed.is_empty(), "{heard:?}");
        let since = hearing.flowing_since(receives_since).expect("flowing again");
        assert!(receives_since.is_some_and(|r| since >= r));
    }
}
