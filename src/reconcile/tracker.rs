//! Tracks active SageMaker jobs with one batched `ListProcessingJobs(LastModifiedTimeAfter)` per
//! region and poll interval, and triggers a reconcile (which then describes the job) only for the
//! jobs that changed. Ended jobs are untracked and never polled again.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use futures::channel::mpsc::UnboundedSender;
use kube::runtime::reflector::ObjectRef;
use tokio_util::sync::CancellationToken;

use super::Guarded;
use crate::aws::AwsClients;

/// Allowance for clock skew between this machine and SageMaker.
const SKEW_SECONDS: f64 = 5.0;

struct Tracked {
    object: ObjectRef<Guarded>,
    known_modified: f64,
    changed: bool,
    /// When the job was last described: a backstop describes it again after `resync`.
    described_at: Instant,
}

#[derive(Default)]
struct State {
    /// (region, job name) → tracked job
    jobs: HashMap<(String, String), Tracked>,
    /// region → jobs modified after this were listed by the last successful poll
    watermark: BTreeMap<String, f64>,
    /// region → earliest `known_modified` of jobs registered since the last poll
    floor: BTreeMap<String, f64>,
}

pub struct Tracker {
    state: Mutex<State>,
    resync: Duration,
    trigger: UnboundedSender<ObjectRef<Guarded>>,
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
    /// backstop against clock skew between this machine and SageMaker).
    pub fn new(trigger: UnboundedSender<ObjectRef<Guarded>>, resync: Duration) -> Self {
        Self {
            state: Mutex::new(State::default()),
            resync,
            trigger,
        }
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Starts or updates tracking of an active job whose state is known as of `known_modified`
    /// (SageMaker's LastModifiedTime, seconds since the epoch).
    pub fn track(&self, region: &str, job: &str, object: ObjectRef<Guarded>, known_modified: f64) {
        let mut s = self.state();
        let key = (region.to_string(), job.to_string());
        let entry = s.jobs.entry(key).or_insert_with(|| Tracked {
            object: object.clone(),
            known_modified,
            changed: false,
            described_at: Instant::now(),
        });
        entry.object = object;
        entry.known_modified = entry.known_modified.max(known_modified);
        let floor = s.floor.entry(region.to_string()).or_insert(known_modified);
        *floor = floor.min(known_modified);
    }

    /// Whether the job should be described now: it changed since it was last described, or the
    /// resync backstop is due. Clears the mark.
    pub fn take_changed(&self, region: &str, job: &str) -> bool {
        let resync = self.resync;
        let mut s = self.state();
        match s.jobs.get_mut(&(region.to_string(), job.to_string())) {
            Some(t) => {
                let due = std::mem::take(&mut t.changed) || t.described_at.elapsed() >= resync;
                if due {
                    t.described_at = Instant::now();
                }
                due
            }
            None => false,
        }
    }

    pub fn is_tracked(&self, region: &str, job: &str) -> bool {
        self.state().jobs.contains_key(&(region.to_string(), job.to_string()))
    }

    /// Marks a tracked job for a describe on its next reconcile.
    pub fn mark_changed(&self, region: &str, job: &str) {
        if let Some(t) = self.state().jobs.get_mut(&(region.to_string(), job.to_string())) {
            t.changed = true;
        }
    }

    pub fn untrack(&self, region: &str, job: &str) {
        self.state().jobs.remove(&(region.to_string(), job.to_string()));
    }

    pub fn active(&self) -> usize {
        self.state().jobs.len()
    }

    /// Polls until cancelled.
    pub async fn run(self: Arc<Self>, aws: Arc<AwsClients>, interval: Duration, shutdown: CancellationToken) {
        let mut ticker = tokio::time::interval(interval);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = ticker.tick() => {}
            }
            self.poll_once(&aws).await;
        }
    }

    /// One poll of every region with tracked jobs.
    pub async fn poll_once(&self, aws: &AwsClients) {
        let plan: Vec<(String, f64)> = {
            let mut s = self.state();
            let mut regions: BTreeMap<String, f64> = BTreeMap::new();
            for ((region, _), t) in &s.jobs {
                let e = regions.entry(region.clone()).or_insert(t.known_modified);
                *e = e.min(t.known_modified);
            }
            let plan = regions
                .into_iter()
                .map(|(region, oldest)| {
                    let since = match (s.watermark.get(&region), s.floor.get(&region)) {
                        (Some(w), Some(f)) => w.min(*f),
                        (Some(w), None) => *w,
                        (None, _) => oldest,
                    };
                    (region, since - SKEW_SECONDS)
                })
                .collect();
            s.floor.clear();
            plan
        };
        for (region, since) in plan {
            let started = now_epoch();
            match aws.sagemaker(&region).list_changed_since(since).await {
                Ok(summaries) => {
                    let mut s = self.state();
                    for summary in summaries {
                        if let Some(t) = s.jobs.get_mut(&(region.clone(), summary.name)) {
                            if summary.last_modified_epoch > t.known_modified {
                                t.changed = true;
                                let _ = self.trigger.unbounded_send(t.object.clone());
                            }
                        }
                    }
                    s.watermark.insert(region, started);
                }
                Err(e) => {
                    tracing::warn!(region, error = %e, "listing changed processing jobs failed; retrying next poll");
                    // Keep the old watermark so that no change is missed.
                    let mut s = self.state();
                    let f = s.floor.entry(region).or_insert(since + SKEW_SECONDS);
                    *f = f.min(since + SKEW_SECONDS);
                }
            }
        }
    }
}
