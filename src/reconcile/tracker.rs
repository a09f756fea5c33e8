//! Tracks active SageMaker jobs with one batched `ListProcessingJobs(LastModifiedTimeAfter)` per
//! account and region (a [`ScopeKey`]) and poll interval, and triggers a reconcile (which then describes the job) only for the
//! jobs that changed. Ended jobs are untracked and never polled again.
//!
//! Every List window is bounded in SageMaker's time, never in this machine's: a region's cursor
//! is the newest LastModifiedTime of its last answer minus [`LIST_LAG_MARGIN`], and a window
//! reaches further back only once, for a job tracked for the first time (or again after a failed
//! poll). A job is triggered when a listed LastModifiedTime is newer than the newest one known
//! for it, so overlapping windows and repeated pages trigger a change once.

use std::collections::hash_map::Entry;
use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use futures::channel::mpsc::UnboundedSender;
use futures::future::BoxFuture;
use kube::runtime::reflector::ObjectRef;
use tokio_util::sync::CancellationToken;

use super::Guarded;
use crate::accounts::{Scope, ScopeKey};
use crate::aws::{AwsClients, AwsError};
use crate::job::{JobState, JobSummary};

/// How long after its LastModifiedTime a change may take to show in ListProcessingJobs. Each
/// window overlaps the newest timestamp of the previous answer by this much.
const LIST_LAG_MARGIN: f64 = 10.0;

/// Skew between this machine's clock and SageMaker's that is left uncorrected. `track` may be
/// handed a reading of the local clock (after a create, nothing better is known); such a value is
/// capped at the measured SageMaker time plus this much. Larger, the first change of a job created
/// while the local clock runs ahead can be missed for that long; smaller, a loose measurement
/// makes the job's creation look like a change and costs a describe.
const SKEW_TOLERANCE: f64 = 5.0;

/// Until a List answer has measured the offset, local readings are taken to run ahead of
/// SageMaker by at most this much (the first window reaches this far back, once).
const UNMEASURED_SKEW: f64 = 300.0;

/// How long (local seconds) the best offset measurement stands before a looser one may replace
/// it, so that a step of the local clock cannot leave an estimate that became too high.
const OFFSET_MEMORY: f64 = 600.0;

/// The List call, apart from the SDK so that the poll can be tested without AWS.
pub trait ChangeLister: Send + Sync {
    /// Every job of the scope's account and region modified after `after` (SageMaker time,
    /// seconds since the epoch).
    fn list_changed_since(&self, scope: &Scope, after: f64) -> BoxFuture<'_, Result<Vec<JobSummary>, AwsError>>;
}

impl ChangeLister for AwsClients {
    fn list_changed_since(&self, scope: &Scope, after: f64) -> BoxFuture<'_, Result<Vec<JobSummary>, AwsError>> {
        let sagemaker = self.sagemaker(scope);
        Box::pin(async move { sagemaker.list_changed_since(after).await })
    }
}

struct Tracked {
    object: ObjectRef<Guarded>,
    /// The newest LastModifiedTime a describe saw or was triggered for.
    known: f64,
    /// `known` may be a reading of the local clock taken at this local time, and no offset was
    /// measured yet to correct it: the next answer caps it.
    local_reading: Option<f64>,
    changed: bool,
    /// When the job was last described: a backstop describes it again after `resync`.
    described_at: Instant,
    /// The state a SageMaker event reported, for the next reconcile to mirror without a
    /// Describe (see [`Tracker::observe_event`]).
    event: Option<JobState>,
    /// The newest LastModifiedTime an event handed over: an older event arriving later (SQS
    /// does not keep order) is not handed over again.
    event_newest: f64,
    /// An event owed for this job and not heard yet (only while the controller consumes events).
    expected: Option<Expected>,
}

/// An event the controller knows it should hear: SageMaker publishes a state change when it
/// creates a job and at every transition. One that does not come within its bound means the flow
/// of events stopped without an error (a rule disabled or deleted, its target removed, a queue
/// policy that no longer lets EventBridge send) — see [`Tracker::overdue_events`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Expected {
    /// Local time (seconds since the epoch) since when it is owed.
    pub since: f64,
    pub what: Owed,
}

/// What an owed event is for.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Owed {
    /// The job's creation (its InProgress event).
    Creation,
    /// A change the List showed, of this LastModifiedTime.
    Change(f64),
}

impl std::fmt::Display for Owed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Owed::Creation => f.write_str("the event of its creation"),
            Owed::Change(_) => f.write_str("the event of a change the List showed"),
        }
    }
}

/// An owed event that did not come in time.
#[derive(Debug, Clone, PartialEq)]
pub struct Missed {
    pub key: ScopeKey,
    pub job: String,
    pub what: Owed,
}

impl Tracked {
    /// SageMaker's own time of a change an event reported: it replaces a local reading, and the
    /// List need not report this change again.
    fn learn(&mut self, modified: f64) {
        self.known = if self.local_reading.take().is_some() {
            modified
        } else {
            self.known.max(modified)
        };
    }
}

/// The tracked jobs of one account and region.
struct Region {
    /// Whom to ask: the scope of the latest job tracked (any role of the account sees its jobs).
    scope: Scope,
    jobs: HashMap<String, Tracked>,
    /// Every change not yet listed has a LastModifiedTime after this.
    cursor: Option<f64>,
    /// Where the next window must start for jobs tracked for the first time since the last
    /// successful answer; consumed by the answer whose window covered it.
    reach_back: Option<f64>,
}

impl Region {
    fn window_start(&self) -> f64 {
        match (self.cursor, self.reach_back) {
            (Some(cursor), Some(back)) => cursor.min(back),
            (Some(start), None) | (None, Some(start)) => start,
            // A region is created by a registration, which sets `reach_back` until an answer
            // sets `cursor`; should that ever change, start at the oldest job.
            (None, None) => self
                .jobs
                .values()
                .map(|t| t.known - LIST_LAG_MARGIN)
                .fold(f64::INFINITY, f64::min),
        }
    }
}

/// A lower bound of SageMaker's clock minus ours: a listed LastModifiedTime is never later than
/// SageMaker's clock when the answer arrived.
#[derive(Clone, Copy)]
struct ClockOffset {
    lower: f64,
    measured_at: f64,
}

impl ClockOffset {
    fn observe(best: &mut Option<ClockOffset>, sample: f64, at: f64) {
        let replace = match best {
            Some(b) => sample >= b.lower || at - b.measured_at > OFFSET_MEMORY,
            None => true,
        };
        if replace {
            *best = Some(ClockOffset {
                lower: sample,
                measured_at: at,
            });
        }
    }

    /// The latest SageMaker time a local reading taken at `local` can stand for.
    fn cap(self, local: f64) -> f64 {
        local + self.lower + SKEW_TOLERANCE
    }
}

#[derive(Default)]
struct State {
    regions: BTreeMap<ScopeKey, Region>,
    offset: Option<ClockOffset>,
    /// An events consumer runs: creations and the changes the List shows are owed events.
    listening: bool,
    /// When (local seconds) an owed creation event was last heard.
    heard_creation: Option<f64>,
}

pub struct Tracker {
    state: Mutex<State>,
    resync: Duration,
    trigger: UnboundedSender<ObjectRef<Guarded>>,
    /// This machine's clock in seconds since the epoch; tests inject their own.
    clock: Box<dyn Fn() -> f64 + Send + Sync>,
}

/// Seconds since the epoch, the unit of SageMaker's timestamps.
pub(crate) fn now_epoch() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or_default()
}

impl Tracker {
    /// `resync`: how often an active job is described even if the List saw no change (a
    /// backstop against whatever the List misses).
    pub fn new(trigger: UnboundedSender<ObjectRef<Guarded>>, resync: Duration) -> Self {
        Self::with_clock(trigger, resync, now_epoch)
    }

    pub(crate) fn with_clock(
        trigger: UnboundedSender<ObjectRef<Guarded>>,
        resync: Duration,
        clock: impl Fn() -> f64 + Send + Sync + 'static,
    ) -> Self {
        Self {
            state: Mutex::new(State::default()),
            resync,
            trigger,
            clock: Box::new(clock),
        }
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn tracked(&self, region: &ScopeKey, job: &str, f: impl FnOnce(&mut Tracked)) {
        if let Some(t) = self.state().regions.get_mut(region).and_then(|r| r.jobs.get_mut(job)) {
            f(t);
        }
    }

    /// Starts or updates tracking of an active job whose state is known as of `known_modified`
    /// (SageMaker's LastModifiedTime, seconds since the epoch).
    ///
    /// Only a job tracked for the first time widens the next List window back to its
    /// `known_modified`; tracking it again on every reconcile does not. A first value that is not
    /// in the local clock's past may be a local reading (the create path has nothing else): it is
    /// capped at the measured SageMaker time, so that a clock running ahead hides no change.
    pub fn track(&self, scope: &Scope, job: &str, object: ObjectRef<Guarded>, known_modified: f64) {
        let now = (self.clock)();
        let mut s = self.state();
        let offset = s.offset;
        let r = s.regions.entry(scope.key()).or_insert_with(|| Region {
            scope: scope.clone(),
            jobs: HashMap::new(),
            cursor: None,
            reach_back: None,
        });
        r.scope = scope.clone();
        match r.jobs.entry(job.to_string()) {
            Entry::Occupied(mut e) => {
                let t = e.get_mut();
                t.object = object;
                t.known = if t.local_reading.take().is_some() {
                    // A describe's timestamp replaces the uncorrected local reading.
                    known_modified
                } else {
                    t.known.max(known_modified)
                };
            }
            Entry::Vacant(e) => {
                let maybe_local = known_modified > now - SKEW_TOLERANCE;
                let (known, local_reading, floor) = match (maybe_local, offset) {
                    (false, _) => (known_modified, None, known_modified),
                    (true, Some(o)) => {
                        let capped = known_modified.min(o.cap(now));
                        (capped, None, capped)
                    }
                    (true, None) => (known_modified, Some(now), known_modified.min(now - UNMEASURED_SKEW)),
                };
                e.insert(Tracked {
                    object,
                    known,
                    local_reading,
                    changed: false,
                    described_at: Instant::now(),
                    event: None,
                    event_newest: f64::NEG_INFINITY,
                    expected: None,
                });
                let back = floor - LIST_LAG_MARGIN;
                r.reach_back = Some(r.reach_back.map_or(back, |b| b.min(back)));
            }
        }
    }

    /// Whether the job should be described now: it changed since it was last described, or the
    /// resync backstop is due. Clears the mark.
    pub fn take_changed(&self, region: &ScopeKey, job: &str) -> bool {
        let resync = self.resync;
        let mut due = false;
        self.tracked(region, job, |t| {
            due = std::mem::take(&mut t.changed) || t.described_at.elapsed() >= resync;
            if due {
                t.described_at = Instant::now();
            }
        });
        due
    }

    pub fn is_tracked(&self, region: &ScopeKey, job: &str) -> bool {
        self.state()
            .regions
            .get(region)
            .is_some_and(|r| r.jobs.contains_key(job))
    }

    /// Marks a tracked job for a describe on its next reconcile.
    pub fn mark_changed(&self, region: &ScopeKey, job: &str) {
        self.tracked(region, job, |t| t.changed = true);
    }

    /// Where a job an event names is tracked: under its account when jobs of that account were
    /// created through an assumed role, else under the controller's own credentials in that
    /// region (whose account number the controller does not need to know). `None` when no
    /// tracked job has that name there.
    pub fn locate(&self, account: Option<&str>, region: &str, job: &str) -> Option<ScopeKey> {
        let s = self.state();
        let candidates = [
            account.map(|a| ScopeKey {
                account: Some(a.to_string()),
                region: region.to_string(),
            }),
            Some(ScopeKey {
                account: None,
                region: region.to_string(),
            }),
        ];
        candidates
            .into_iter()
            .flatten()
            .find(|key| s.regions.get(key).is_some_and(|r| r.jobs.contains_key(job)))
    }

    /// The resource of a tracked job.
    pub fn object_of(&self, region: &ScopeKey, job: &str) -> Option<ObjectRef<Guarded>> {
        let mut object = None;
        self.tracked(region, job, |t| object = Some(t.object.clone()));
        object
    }

    /// Hands the state a SageMaker state-change event reported to the job's next reconcile,
    /// which mirrors it without a Describe, and triggers that reconcile. Returns the job's
    /// resource, or `None` when the job is not tracked (not this controller's, or ended).
    ///
    /// An event with no LastModifiedTime, or older than one handed over before (events arrive
    /// out of order and more than once), is not handed over; the resource is still returned so
    /// that the caller can wait for its status. Called only for an event the resource's status
    /// does not show yet.
    pub fn observe_event(&self, region: &ScopeKey, state: JobState) -> Option<ObjectRef<Guarded>> {
        let modified = state.last_modified_epoch?;
        let name = state.name.clone();
        let mut object = None;
        self.tracked(region, &name, |t| {
            object = Some(t.object.clone());
            // An older event, or the same one while it waits for its reconcile. The same one
            // again after a reconcile took it means its status was not written: handed over again.
            if modified < t.event_newest || (modified == t.event_newest && t.event.is_some()) {
                return;
            }
            t.event_newest = modified;
            t.learn(modified);
            t.changed = true;
            t.event = Some(state);
            let _ = self.trigger.unbounded_send(t.object.clone());
        });
        object
    }

    /// SageMaker's time of a state the resource's status already shows (the create's answer,
    /// which has no time, confirmed by the job's first event): it replaces a local reading, so
    /// that the List need not report the job's creation as a change. Triggers nothing.
    pub fn confirm(&self, region: &ScopeKey, job: &str, modified: f64) {
        self.tracked(region, job, |t| t.learn(modified));
    }

    /// The events consumer runs: from now on the creations this controller makes and the
    /// changes the List shows are owed events.
    pub fn listen(&self) {
        self.state().listening = true;
    }

    /// A job this controller has just created: its creation's event is owed.
    pub fn expect_creation(&self, region: &ScopeKey, job: &str) {
        let now = (self.clock)();
        let mut s = self.state();
        if !s.listening {
            return;
        }
        if let Some(t) = s.regions.get_mut(region).and_then(|r| r.jobs.get_mut(job)) {
            t.expected = Some(Expected {
                since: now,
                what: Owed::Creation,
            });
        }
    }

    /// An event of a tracked job was heard (`modified`: its LastModifiedTime, when it has one;
    /// the events consumer says so of every event it locates, whatever becomes of it):
    /// it pays what was owed for the job up to that time.
    pub fn heard(&self, region: &ScopeKey, job: &str, modified: Option<f64>) {
        let now = (self.clock)();
        let mut s = self.state();
        let mut creation = false;
        if let Some(t) = s.regions.get_mut(region).and_then(|r| r.jobs.get_mut(job)) {
            match t.expected.map(|e| e.what) {
                Some(Owed::Creation) => {
                    creation = true;
                    t.expected = None;
                }
                Some(Owed::Change(m)) if modified.is_none_or(|heard| heard >= m) => t.expected = None,
                _ => {}
            }
        }
        if creation {
            s.heard_creation = Some(now);
        }
    }

    /// The owed events older than `bound` (local seconds), each given once: the flow of events
    /// stopped. Creations are owed from the create; a change from the poll that showed it.
    pub fn overdue_events(&self, bound: f64) -> Vec<Missed> {
        let now = (self.clock)();
        let mut s = self.state();
        let mut missed = Vec::new();
        for (key, r) in s.regions.iter_mut() {
            for (job, t) in r.jobs.iter_mut() {
                if let Some(e) = t.expected.filter(|e| now - e.since > bound) {
                    t.expected = None;
                    missed.push(Missed {
                        key: key.clone(),
                        job: job.clone(),
                        what: e.what,
                    });
                }
            }
        }
        missed
    }

    /// Forgets every owed event: the flow was heard again, and the poll that follows catches up
    /// whatever the silence before hid (an event owed from then would only silence it again).
    pub fn forgive_owed(&self) {
        for r in self.state().regions.values_mut() {
            for t in r.jobs.values_mut() {
                t.expected = None;
            }
        }
    }

    /// Whether a creation's owed event was heard after `since` (local seconds): events are heard
    /// again for jobs this controller created.
    pub fn creation_heard_since(&self, since: f64) -> bool {
        self.state().heard_creation.is_some_and(|at| at > since)
    }

    /// This machine's clock (seconds since the epoch), as the tracker reads it.
    pub fn now(&self) -> f64 {
        (self.clock)()
    }

    /// The state an event handed over for the job, once.
    pub fn take_event(&self, region: &ScopeKey, job: &str) -> Option<JobState> {
        let mut event = None;
        self.tracked(region, job, |t| event = t.event.take());
        event
    }

    /// A tracked job an event reported changed without saying how: described on its next
    /// reconcile, which is triggered now. `None` when the job is not tracked.
    pub fn describe_soon(&self, region: &ScopeKey, job: &str) -> Option<ObjectRef<Guarded>> {
        let mut object = None;
        self.tracked(region, job, |t| {
            t.changed = true;
            object = Some(t.object.clone());
        });
        if let Some(o) = &object {
            let _ = self.trigger.unbounded_send(o.clone());
        }
        object
    }

    pub fn untrack(&self, region: &ScopeKey, job: &str) {
        let mut s = self.state();
        if let Some(r) = s.regions.get_mut(region) {
            r.jobs.remove(job);
            // A region without jobs is not polled; its next job starts a fresh window.
            if r.jobs.is_empty() {
                s.regions.remove(region);
            }
        }
    }

    /// Brings `object` to the reconciler now (the queue wakes the job whose turn has come).
    pub fn wake(&self, object: ObjectRef<Guarded>) {
        let _ = self.trigger.unbounded_send(object);
    }

    /// Active jobs tracked: (of `namespace`, in every account and region; in `region` (an
    /// account and region), of every namespace).
    pub fn active_jobs(&self, region: &ScopeKey, namespace: &str) -> (u32, u32) {
        let s = self.state();
        let of_namespace = s
            .regions
            .values()
            .flat_map(|r| r.jobs.values())
            .filter(|t| t.object.namespace.as_deref() == Some(namespace))
            .count();
        let in_region = s.regions.get(region).map_or(0, |r| r.jobs.len());
        (of_namespace as u32, in_region as u32)
    }

    pub fn active(&self) -> usize {
        self.state().regions.values().map(|r| r.jobs.len()).sum()
    }

    /// Polls until cancelled.
    pub async fn run<L: ChangeLister + ?Sized>(
        self: Arc<Self>,
        lister: Arc<L>,
        interval: Duration,
        shutdown: CancellationToken,
    ) {
        let mut ticker = tokio::time::interval(interval);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = ticker.tick() => {}
            }
            self.poll_once(lister.as_ref()).await;
        }
    }

    /// One poll of every account and region with tracked jobs.
    pub async fn poll_once<L: ChangeLister + ?Sized>(&self, lister: &L) {
        let plan: Vec<(Scope, f64)> = self
            .state()
            .regions
            .values()
            .map(|r| (r.scope.clone(), r.window_start()))
            .collect();
        for (scope, after) in plan {
            match lister.list_changed_since(&scope, after).await {
                Ok(summaries) => self.absorb(&scope.key(), after, &summaries),
                // The cursor and the pending reach-back stay: the next window is no narrower.
                Err(e) => {
                    tracing::warn!(scope = %scope, error = %e, "listing changed processing jobs failed; retrying next poll")
                }
            }
        }
    }

    /// Takes in a successful answer to `ListProcessingJobs(LastModifiedTimeAfter = after)`.
    fn absorb(&self, region: &ScopeKey, after: f64, summaries: &[JobSummary]) {
        let received = (self.clock)();
        let newest = summaries.iter().map(|j| j.last_modified_epoch).reduce(f64::max);
        let mut s = self.state();
        if let Some(newest) = newest {
            ClockOffset::observe(&mut s.offset, newest - received, received);
        }
        let offset = s.offset;
        let listening = s.listening;
        let Some(r) = s.regions.get_mut(region) else {
            return;
        };
        if let Some(o) = offset {
            for t in r.jobs.values_mut() {
                if let Some(at) = t.local_reading.take() {
                    t.known = t.known.min(o.cap(at));
                }
            }
        }
        let mut triggered = 0usize;
        for summary in summaries {
            if let Some(t) = r.jobs.get_mut(&summary.name) {
                if summary.last_modified_epoch > t.known {
                    // A create is not a change: the job listed as it was created tells nothing
                    // the status does not show, however loose the clock offset behind `known` is.
                    if summary.is_its_creation() {
                        t.learn(summary.last_modified_epoch);
                        continue;
                    }
                    t.known = summary.last_modified_epoch;
                    t.changed = true;
                    // While events are consumed, no event has told this change yet: one is owed.
                    if listening && t.expected.is_none() {
                        t.expected = Some(Expected {
                            since: received,
                            what: Owed::Change(summary.last_modified_epoch),
                        });
                    }
                    triggered += 1;
                    let _ = self.trigger.unbounded_send(t.object.clone());
                }
            }
        }
        // A change not listed yet was made after the answer's newest one, or lags behind it by
        // less than the margin.
        let base = r.cursor.unwrap_or(after);
        r.cursor = Some(newest.map_or(base, |n| base.max(n - LIST_LAG_MARGIN)));
        if r.reach_back.is_some_and(|b| b >= after) {
            r.reach_back = None;
        }
        tracing::debug!(
            scope = %region,
            after,
            listed = summaries.len(),
            triggered,
            "polled changed processing jobs"
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures::channel::mpsc::{self, UnboundedReceiver};

    const REGION: &str = "us-east-1";

    fn own() -> Scope {
        Scope::own(REGION)
    }

    fn key() -> ScopeKey {
        own().key()
    }
    /// SageMaker's clock when a test starts.
    const T0: f64 = 1_800_000_000.0;
    const DAY: f64 = 86_400.0;

    #[derive(Default)]
    struct Account {
        /// SageMaker's clock.
        now: f64,
        /// job → its modifications as (LastModifiedTime, listed from)
        jobs: BTreeMap<String, Vec<(f64, f64)>>,
        failures: usize,
        /// Every summary twice, as pages shifting under a concurrent change can serve it.
        duplicates: bool,
        /// The `after` of every List call.
        asked: Vec<f64>,
    }

    /// SageMaker's List as the tracker sees it, with a clock, List lag and failures.
    #[derive(Clone, Default)]
    struct FakeSageMaker(Arc<Mutex<Account>>);

    impl FakeSageMaker {
        fn account(&self) -> std::sync::MutexGuard<'_, Account> {
            self.0.lock().unwrap()
        }

        fn now(&self) -> f64 {
            self.account().now
        }

        /// Modifies the job now; the List shows it `lag` seconds later.
        fn modify(&self, job: &str, lag: f64) -> f64 {
            let mut a = self.account();
            let now = a.now;
            a.jobs.entry(job.into()).or_default().push((now, now + lag));
            now
        }

        /// A job modified at `at`, in the past.
        fn modified_at(&self, job: &str, at: f64) {
            self.account().jobs.entry(job.into()).or_default().push((at, at));
        }

        /// Lets `seconds` pass in which other jobs of the account change every second.
        fn pass(&self, seconds: f64) {
            let end = self.now() + seconds;
            while self.now() + 1.0 <= end {
                self.account().now += 1.0;
                self.modify("someone-elses-job", 0.0);
            }
            self.account().now = end;
        }

        fn fail_next(&self) {
            self.account().failures += 1;
        }

        fn asked(&self) -> Vec<f64> {
            self.account().asked.clone()
        }

        fn last_asked(&self) -> f64 {
            self.account().asked.last().copied().unwrap()
        }
    }

    impl ChangeLister for FakeSageMaker {
        fn list_changed_since(&self, scope: &Scope, after: f64) -> BoxFuture<'_, Result<Vec<JobSummary>, AwsError>> {
            assert_eq!(scope, &own());
            let mut a = self.account();
            a.asked.push(after);
            let answer = if a.failures > 0 {
                a.failures -= 1;
                Err(AwsError {
                    service: "sagemaker",
                    operation: "ListProcessingJobs",
                    class: crate::aws::ErrorClass::Throttled,
                    code: Some("ThrottlingException".into()),
                    message: "Rate exceeded".into(),
                })
            } else {
                let now = a.now;
                let copies = if a.duplicates { 2 } else { 1 };
                Ok(a.jobs
                    .iter()
                    .filter_map(|(name, mods)| {
                        let (modified, _) = mods.iter().rev().find(|(_, listed)| *listed <= now)?;
                        (*modified > after).then(|| JobSummary {
                            name: name.clone(),
                            last_modified_epoch: *modified,
                            // Every job runs; its first modification is its creation.
                            status: Some(crate::job::JobStatus::InProgress),
                            created_epoch: mods.first().map(|(created, _)| *created),
                        })
                    })
                    .flat_map(|s| std::iter::repeat_n(s, copies))
                    .collect())
            };
            Box::pin(async move { answer })
        }
    }

    struct Harness {
        sagemaker: FakeSageMaker,
        tracker: Tracker,
        triggers: UnboundedReceiver<ObjectRef<Guarded>>,
        /// How far the local clock runs ahead of SageMaker's.
        local_ahead: f64,
    }

    fn harness(local_ahead: f64, resync: Duration) -> Harness {
        let sagemaker = FakeSageMaker::default();
        sagemaker.account().now = T0;
        // The account is busy: other jobs change every second.
        sagemaker.modify("someone-elses-job", 0.0);
        let (tx, triggers) = mpsc::unbounded();
        let clock = sagemaker.clone();
        let tracker = Tracker::with_clock(tx, resync, move || clock.now() + local_ahead);
        Harness {
            sagemaker,
            tracker,
            triggers,
            local_ahead,
        }
    }

    fn object(job: &str) -> ObjectRef<Guarded> {
        ObjectRef::new(job).within("team-a")
    }

    /// An event names the job's account; jobs created with the controller's own credentials are
    /// tracked without one, jobs of an assumed role under their account.
    #[test]
    fn an_event_finds_its_job_under_its_account_or_the_controllers_own() {
        let h = harness(0.0, Duration::from_secs(3600));
        let other = Scope {
            assumed: Some(crate::accounts::Assumed {
                account: "222222222222".into(),
                role_arn: "arn:aws:iam::222222222222:role/ack".into(),
            }),
            region: REGION.into(),
        };
        h.tracker.track(&own(), "mine", object("mine"), 1.0);
        h.tracker.track(&other, "theirs", object("theirs"), 1.0);
        h.tracker.track(&own(), "both", object("both"), 1.0);
        h.tracker.track(&other, "both", object("both-b"), 1.0);

        assert_eq!(h.tracker.locate(Some("123456789012"), REGION, "mine"), Some(key()));
        assert_eq!(h.tracker.locate(None, REGION, "mine"), Some(key()));
        assert_eq!(
            h.tracker.locate(Some("222222222222"), REGION, "theirs"),
            Some(other.key())
        );
        // The same name in two accounts: the event's account decides.
        assert_eq!(
            h.tracker.locate(Some("222222222222"), REGION, "both"),
            Some(other.key())
        );
        // Not tracked: under no key, nor in another region, nor of another assumed account.
        assert_eq!(h.tracker.locate(Some("333333333333"), REGION, "theirs"), None);
        assert_eq!(h.tracker.locate(Some("222222222222"), "eu-west-1", "theirs"), None);
        assert_eq!(h.tracker.locate(None, REGION, "nobody"), None);
    }

    impl Harness {
        fn track(&self, job: &str, known: f64) {
            self.tracker.track(&own(), job, object(job), known);
        }

        /// What the create path tracks: the local clock.
        fn track_created(&self, job: &str) {
            self.track(job, self.sagemaker.now() + self.local_ahead);
        }

        async fn poll(&self) {
            self.tracker.poll_once(&self.sagemaker).await;
        }

        /// The jobs triggered since the last call, in order.
        fn triggered(&mut self) -> Vec<String> {
            let mut out = Vec::new();
            while let Ok(o) = self.triggers.try_recv() {
                out.push(o.name);
            }
            out
        }

        /// What a reconcile does for a triggered job: describe it and track the answer.
        fn describe(&self, job: &str) {
            assert!(self.tracker.take_changed(&key(), job), "{job} should be due");
            let a = self.sagemaker.account();
            let (modified, _) = *a.jobs[job].last().unwrap();
            drop(a);
            self.track(job, modified);
        }

        /// The window of the last poll started no earlier than the previous poll (`interval`
        /// ago) minus the margin, up to a second of rounding.
        fn assert_recent_window(&self, interval: f64) {
            let floor = self.sagemaker.now() - interval - LIST_LAG_MARGIN - 1.0;
            let asked = self.sagemaker.last_asked();
            assert!(
                asked >= floor,
                "window starts {}s before the poll",
                self.sagemaker.now() - asked
            );
        }
    }

    #[tokio::test]
    async fn re_tracking_a_day_old_job_does_not_slide_the_window_back() {
        let mut h = harness(0.0, Duration::from_secs(3600));
        let started = T0 - DAY;
        h.sagemaker.modified_at("day-long", started);
        h.track("day-long", started);
        h.poll().await;
        assert!(h.sagemaker.last_asked() < started, "a new job widens its first window");
        for _ in 0..5 {
            h.sagemaker.pass(5.0);
            // Every reconcile of the running job tracks it again with what its status knows.
            h.track("day-long", started);
            h.poll().await;
            h.assert_recent_window(5.0);
        }
        assert!(h.triggered().is_empty());
    }

    #[tokio::test]
    async fn a_newly_tracked_old_job_widens_one_poll_once() {
        let mut h = harness(0.0, Duration::from_secs(3600));
        h.sagemaker.modify("steady", 0.0);
        h.track("steady", T0);
        h.poll().await;
        h.sagemaker.pass(5.0);
        h.poll().await;
        h.assert_recent_window(5.0);

        // A job started an hour ago whose status is older than its last change.
        let now = h.sagemaker.now();
        h.sagemaker.modified_at("adopted", now - 3600.0);
        h.sagemaker.modified_at("adopted", now - 1800.0);
        h.track("adopted", now - 3600.0);
        h.sagemaker.pass(5.0);
        h.poll().await;
        assert!(
            h.sagemaker.last_asked() < now - 3600.0,
            "a new job widens its first window"
        );
        assert_eq!(h.triggered(), ["adopted"]);
        h.describe("adopted");

        for _ in 0..3 {
            h.sagemaker.pass(5.0);
            h.track("adopted", now - 1800.0);
            h.poll().await;
            h.assert_recent_window(5.0);
        }
        assert!(h.triggered().is_empty());
    }

    #[tokio::test]
    async fn local_clock_ahead_of_sagemaker_loses_no_transition() {
        let mut h = harness(60.0, Duration::from_secs(3600));
        h.sagemaker.modified_at("a", T0 - 100.0);
        h.track("a", T0 - 100.0);
        h.poll().await;
        for _ in 0..3 {
            // Changed just after the poll, in SageMaker's time.
            h.sagemaker.pass(1.0);
            h.sagemaker.modify("a", 0.0);
            h.sagemaker.pass(4.0);
            h.poll().await;
            assert_eq!(h.triggered(), ["a"]);
            h.describe("a");
        }
    }

    /// A create is not a change: with SageMaker's clock ahead of this machine's, the local
    /// reading the create path tracks is older than the job's LastModifiedTime, and the List
    /// would show the job's own creation as a change (a Describe for nothing). The entry shows
    /// the job InProgress, unchanged since its CreationTime: taken as it is, whatever the offset.
    #[tokio::test]
    async fn a_job_listed_as_it_was_created_is_no_change_whatever_the_clocks() {
        for local_ahead in [-30.0, -300.0, 0.0, 30.0] {
            let mut h = harness(local_ahead, Duration::from_secs(3600));
            for round in 0..3 {
                let job = format!("created-{round}");
                h.sagemaker.modify(&job, 0.0);
                h.track_created(&job);
                h.sagemaker.pass(5.0);
                h.poll().await;
                assert!(
                    h.triggered().is_empty(),
                    "{local_ahead}: the creation of {job} is no change"
                );
                // Its first real change is one.
                h.sagemaker.pass(3.0);
                h.sagemaker.modify(&job, 0.0);
                h.sagemaker.pass(5.0);
                h.poll().await;
                assert_eq!(h.triggered(), std::slice::from_ref(&job), "{local_ahead}");
                h.describe(&job);
            }
        }
    }

    /// Events are heard, not assumed: a job created while events are consumed owes the event of
    /// its creation, reported missed once it is older than the bound; heard in time, it is not.
    #[tokio::test]
    async fn a_creation_whose_event_does_not_come_is_missed_once() {
        let h = harness(0.0, Duration::from_secs(3600));
        // Without an events consumer nothing is owed.
        h.sagemaker.modify("quiet", 0.0);
        h.track_created("quiet");
        h.tracker.expect_creation(&key(), "quiet");
        h.sagemaker.pass(60.0);
        assert!(h.tracker.overdue_events(10.0).is_empty());

        h.tracker.listen();
        for job in ["silent", "heard"] {
            h.sagemaker.modify(job, 0.0);
            h.track_created(job);
            h.tracker.expect_creation(&key(), job);
        }
        let created = h.tracker.now();
        h.sagemaker.pass(1.0);
        h.tracker.heard(&key(), "heard", Some(h.sagemaker.now()));
        assert!(h.tracker.creation_heard_since(created));
        h.sagemaker.pass(8.0);
        assert!(h.tracker.overdue_events(10.0).is_empty(), "within the bound");
        h.sagemaker.pass(2.0);
        let missed = h.tracker.overdue_events(10.0);
        assert_eq!(
            missed,
            [Missed {
                key: key(),
                job: "silent".into(),
                what: Owed::Creation
            }]
        );
        assert!(h.tracker.overdue_events(10.0).is_empty(), "reported once");
    }

    /// A change the List showed while events are consumed owes its event; an event of that
    /// change (or a later one) pays it, an older one does not.
    #[tokio::test]
    async fn a_change_the_list_showed_without_its_event_is_missed() {
        let mut h = harness(0.0, Duration::from_secs(3600));
        h.tracker.listen();
        for job in ["told", "untold"] {
            h.sagemaker.modified_at(job, T0 - 100.0);
            h.track(job, T0 - 100.0);
        }
        h.poll().await;
        h.sagemaker.pass(2.0);
        let changed = h.sagemaker.modify("told", 0.0);
        h.sagemaker.modify("untold", 0.0);
        h.sagemaker.pass(4.0);
        h.poll().await;
        assert_eq!(h.triggered(), ["told", "untold"]);
        // An older event of "untold" does not pay for the change; the change's own event of
        // "told" does.
        h.tracker.heard(&key(), "untold", Some(T0 - 50.0));
        h.tracker.heard(&key(), "told", Some(changed));
        h.sagemaker.pass(11.0);
        let missed: Vec<(String, Owed)> = h
            .tracker
            .overdue_events(10.0)
            .into_iter()
            .map(|m| (m.job, m.what))
            .collect();
        assert_eq!(missed.len(), 1, "{missed:?}");
        assert_eq!(missed[0].0, "untold");
        assert!(matches!(missed[0].1, Owed::Change(_)));
    }

    #[tokio::test]
    async fn a_job_created_while_the_local_clock_runs_ahead_keeps_its_transitions() {
        let mut h = harness(60.0, Duration::from_secs(3600));
        // Nothing measured the offset yet.
        h.sagemaker.modify("first", 0.0);
        h.track_created("first");
        h.sagemaker.pass(5.0);
        h.poll().await;
        assert!(h.triggered().is_empty(), "the creation itself is no change");
        h.sagemaker.pass(15.0);
        h.sagemaker.modify("first", 0.0);
        h.sagemaker.pass(5.0);
        h.poll().await;
        assert_eq!(h.triggered(), ["first"]);

        // The offset is measured now.
        h.sagemaker.modify("second", 0.0);
        h.track_created("second");
        h.sagemaker.pass(5.0);
        h.poll().await;
        assert!(h.triggered().is_empty(), "the creation itself is no change");
        h.sagemaker.pass(15.0);
        h.sagemaker.modify("second", 0.0);
        h.sagemaker.pass(5.0);
        h.poll().await;
        assert_eq!(h.triggered(), ["second"]);
    }

    #[tokio::test]
    async fn an_event_confirming_a_creation_gives_the_tracker_sagemakers_time() {
        // The local clock runs behind: the create path's reading is older than the creation.
        let mut h = harness(-3.0, Duration::from_secs(3600));
        let created = h.sagemaker.modify("a", 0.0);
        h.track_created("a");
        // The job's first event (InProgress, as the create answered) is not written to status;
        // its time goes to the tracker, so the List does not report the creation as a change.
        h.tracker.confirm(&key(), "a", created);
        h.sagemaker.pass(5.0);
        h.poll().await;
        assert!(h.triggered().is_empty(), "the creation itself is no change");
        h.sagemaker.modify("a", 0.0);
        h.sagemaker.pass(5.0);
        h.poll().await;
        assert_eq!(h.triggered(), ["a"], "the next change is");
    }

    #[tokio::test]
    async fn a_change_listed_one_poll_late_is_still_triggered() {
        let mut h = harness(0.0, Duration::from_secs(3600));
        h.sagemaker.modified_at("a", T0 - 100.0);
        h.track("a", T0 - 100.0);
        h.poll().await;
        h.sagemaker.pass(4.0);
        // The List shows this change only 8 s after its LastModifiedTime: not at the next poll
        // 6 s later, but at the one after.
        h.sagemaker.modify("a", 8.0);
        h.sagemaker.pass(6.0);
        h.poll().await;
        assert!(h.triggered().is_empty());
        h.sagemaker.pass(5.0);
        h.poll().await;
        assert_eq!(h.triggered(), ["a"]);
        h.sagemaker.pass(5.0);
        h.poll().await;
        assert!(
            h.triggered().is_empty(),
            "listed again within the overlap, triggered once"
        );
    }

    #[tokio::test]
    async fn a_failed_poll_keeps_the_window() {
        let mut h = harness(0.0, Duration::from_secs(3600));
        h.sagemaker.modify("a", 0.0);
        h.track("a", T0);
        h.poll().await;
        h.sagemaker.pass(5.0);
        h.poll().await;

        let now = h.sagemaker.now();
        h.sagemaker.modified_at("b", now - 600.0);
        h.sagemaker.modified_at("b", now - 300.0);
        h.track("b", now - 600.0);
        h.sagemaker.modify("a", 0.0);
        h.sagemaker.pass(5.0);
        h.sagemaker.fail_next();
        h.poll().await;
        assert!(h.triggered().is_empty());
        let failed = h.sagemaker.last_asked();
        assert!(failed < now - 600.0, "a new job widens the window");

        h.sagemaker.pass(5.0);
        h.poll().await;
        assert_eq!(h.sagemaker.last_asked(), failed, "the retry lists the same window");
        let mut triggered = h.triggered();
        triggered.sort();
        assert_eq!(triggered, ["a", "b"]);
        h.describe("a");
        h.describe("b");

        // No new job: a failed poll leaves the cursor where the last answer put it.
        h.sagemaker.pass(5.0);
        h.poll().await;
        let before = h.sagemaker.last_asked();
        h.sagemaker.modify("a", 0.0);
        h.sagemaker.pass(6.0);
        h.sagemaker.fail_next();
        h.poll().await;
        let failed = h.sagemaker.last_asked();
        h.sagemaker.pass(5.0);
        h.poll().await;
        assert_eq!(h.sagemaker.last_asked(), failed, "the retry lists the same window");
        assert!(failed > before, "the window moved on after the success");
        assert_eq!(h.triggered(), ["a"]);
    }

    #[tokio::test]
    async fn a_change_triggers_once_across_pages_and_overlapping_polls() {
        let mut h = harness(0.0, Duration::from_secs(3600));
        h.sagemaker.account().duplicates = true;
        h.sagemaker.modified_at("a", T0 - 100.0);
        h.track("a", T0 - 100.0);
        h.poll().await;
        h.sagemaker.pass(2.0);
        h.sagemaker.modify("a", 0.0);
        h.sagemaker.pass(3.0);
        h.poll().await;
        assert_eq!(h.triggered(), ["a"]);
        // The next window overlaps this change; it is not triggered again.
        h.sagemaker.pass(5.0);
        h.poll().await;
        assert!(h.triggered().is_empty());
        assert!(h.tracker.take_changed(&key(), "a"));
        assert!(!h.tracker.take_changed(&key(), "a"));
    }

    #[tokio::test]
    async fn untracked_jobs_are_not_triggered() {
        let mut h = harness(0.0, Duration::from_secs(3600));
        h.sagemaker.modified_at("mine", T0);
        h.track("mine", T0);
        h.sagemaker.pass(1.0);
        h.sagemaker.modify("mine", 0.0);
        h.sagemaker.modify("not-mine", 0.0);
        h.sagemaker.pass(4.0);
        h.poll().await;
        assert_eq!(h.triggered(), ["mine"]);

        h.tracker.untrack(&key(), "mine");
        assert!(!h.tracker.is_tracked(&key(), "mine"));
        assert_eq!(h.tracker.active(), 0);
        h.sagemaker.modify("mine", 0.0);
        h.sagemaker.pass(5.0);
        let calls = h.sagemaker.asked().len();
        h.poll().await;
        assert!(h.triggered().is_empty());
        assert_eq!(
            h.sagemaker.asked().len(),
            calls,
            "a region without tracked jobs is not listed"
        );
    }

    #[tokio::test]
    async fn a_region_idle_for_a_day_starts_from_its_new_job() {
        let mut h = harness(0.0, Duration::from_secs(3600));
        h.sagemaker.modify("yesterday", 0.0);
        h.track("yesterday", T0);
        h.poll().await;
        h.tracker.untrack(&key(), "yesterday");

        h.sagemaker.pass(DAY);
        let created = h.sagemaker.modify("today", 0.0);
        h.track("today", created);
        h.sagemaker.pass(5.0);
        h.poll().await;
        h.assert_recent_window(5.0);
        assert!(h.triggered().is_empty());
    }

    #[tokio::test]
    async fn take_changed_reports_a_change_once_and_resync_is_the_backstop() {
        let mut h = harness(0.0, Duration::from_secs(3600));
        h.sagemaker.modified_at("a", T0 - 100.0);
        h.track("a", T0 - 100.0);
        assert!(h.tracker.is_tracked(&key(), "a"));
        assert!(!h.tracker.take_changed(&key(), "a"), "no change, resync not due");
        h.sagemaker.modify("a", 0.0);
        h.sagemaker.pass(5.0);
        h.poll().await;
        assert_eq!(h.triggered(), ["a"]);
        assert!(h.tracker.take_changed(&key(), "a"));
        assert!(!h.tracker.take_changed(&key(), "a"));
        h.tracker.mark_changed(&key(), "a");
        assert!(h.tracker.take_changed(&key(), "a"));
        assert!(!h.tracker.take_changed(&key(), "a"));
        assert!(!h.tracker.take_changed(&key(), "never-tracked"));

        let backstop = harness(0.0, Duration::ZERO);
        backstop.track("a", T0 - 100.0);
        assert!(
            backstop.tracker.take_changed(&key(), "a"),
            "resync due without a change"
        );
        assert!(backstop.tracker.take_changed(&key(), "a"));
    }
}
