//! The submission queue, pure: who may send CreateProcessingJob now, and who waits.
//!
//! SageMaker limits the instances of processing jobs per instance type, account and region, and
//! answers a create over the limit with `ResourceLimitExceeded`. A GitOps repository that applies
//! 200 jobs must not turn that into 200 failures or a storm of retries: jobs wait `Queued` and
//! are created in creation order as capacity frees.
//!
//! - A **lane** is one account, region and instance type: the unit of SageMaker's quota. After a refusal
//!   the lane is *full*: its oldest waiting job (the head) probes again after a backoff, the
//!   others wait behind it without calling AWS.
//! - A job of the lane ending (the tracker sees it end) *releases* the lane: its head is woken at
//!   once. A success wakes the next waiting job, so capacity freed is used in order, one create
//!   at a time, and a refusal stops the chain until the next release.
//! - Optional **caps** on active jobs per namespace and per account and region hold jobs without any AWS
//!   call; they too wait in creation order (a younger job never passes an older one held by the
//!   same cap or the same lane).
//!
//! The queue lives in memory. After a restart a job whose status says it was queued for quota
//! waits for the backoff before its lane is probed again, so a restart is no storm either.

use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};

use crate::accounts::ScopeKey;

/// Where a job stands in line: oldest first (creationTimestamp, then name, then namespace).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Place {
    /// creationTimestamp, seconds since the epoch.
    pub created: i64,
    pub name: String,
    pub namespace: String,
}

/// The unit of SageMaker's quota: one instance type in one region of one account.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Lane {
    /// The account (`None`: the controller's own) and region.
    pub region: ScopeKey,
    pub instance_type: String,
}

/// Optional limits on active jobs (created and not ended).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Caps {
    /// The namespace's `sagemaker.processing.dev/max-active-jobs`.
    pub namespace: Option<u32>,
    /// The controller's `--max-active-jobs-per-region` (per account and region).
    pub region: Option<u32>,
}

/// Active jobs known now (outside the creates this queue let through and that have not
/// answered yet, which it counts itself).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Active {
    /// Active jobs of the job's namespace, in every region.
    pub namespace: u32,
    /// Active jobs in the job's account and region.
    pub region: u32,
}

/// Why a job waits.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Hold {
    /// SageMaker refused a create of the lane for its quota (its message).
    Quota { message: String },
    /// The namespace has `limit` active jobs.
    NamespaceCap { limit: u32 },
    /// The account and region have `limit` active jobs of this controller.
    RegionCap { limit: u32 },
}

/// The decision for one job.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Send the create now.
    Go,
    /// Wait; look again after `retry` at the latest (a release or a success wakes it earlier).
    Wait { hold: Hold, retry: Duration },
}

/// How often a job waiting behind others looks again without being woken: a backstop for a
/// wake-up lost (a resource deleted while it was the head, a release of capacity used outside
/// this controller), at no AWS cost.
pub const WAITING_BACKSTOP: Duration = Duration::from_secs(60);

/// The backoff of a full lane's head: doubling from 30 s, at most 5 minutes.
pub fn probe_delay(refusals: u32) -> Duration {
    let secs = 30u64.saturating_mul(1u64 << refusals.clamp(1, 5).saturating_sub(1));
    Duration::from_secs(secs.min(300))
}

#[derive(Debug, Default)]
struct LaneState {
    /// SageMaker refused the last create of this lane for its quota, and no job of the lane ended
    /// since.
    full: bool,
    /// When the head may probe a full lane again.
    probe_at: Option<Instant>,
    refusals: u32,
    /// SageMaker's message of the last refusal.
    message: String,
    /// The job of the line whose create is in flight: younger jobs wait for its answer, so that
    /// the line is created in order.
    probing: Option<Place>,
}

#[derive(Debug, Clone)]
struct Waiting {
    lane: Lane,
    hold: Hold,
}

/// The queue of every lane.
#[derive(Debug, Default)]
pub struct Queue {
    lanes: HashMap<Lane, LaneState>,
    waiting: BTreeMap<Place, Waiting>,
    /// Creates let through whose answer is not in yet: they count against the caps.
    creating: BTreeMap<Place, Lane>,
}

impl Hold {
    /// Whether this hold of an older job of `lane` (in `namespace`) makes a job of `other_lane`
    /// in `other_namespace` wait behind it.
    fn blocks(&self, lane: &Lane, namespace: &str, other_lane: &Lane, other_namespace: &str) -> bool {
        match self {
            Hold::Quota { .. } => lane == other_lane,
            Hold::NamespaceCap { .. } => namespace == other_namespace,
            Hold::RegionCap { .. } => lane.region == other_lane.region,
        }
    }
}

impl Queue {
    /// Decides for `place` of `lane`; `resumed`: its status says it waited for quota before this
    /// process knew the lane (a restart). A job told to wait is in line (and counts no more as
    /// creating); a job told to go keeps its place until [`Queue::begin`].
    pub fn decide(
        &mut self,
        place: &Place,
        lane: &Lane,
        active: Active,
        caps: Caps,
        resumed: bool,
        now: Instant,
    ) -> Verdict {
        let verdict = self.verdict(place, lane, active, caps, resumed, now);
        if let Verdict::Wait { hold, .. } = &verdict {
            self.creating.remove(place);
            self.waiting.insert(
                place.clone(),
                Waiting {
                    lane: lane.clone(),
                    hold: hold.clone(),
                },
            );
        }
        verdict
    }

    /// The create of `place` is being sent: it leaves the line and counts against the caps until
    /// [`Queue::created`], [`Queue::refused`] or [`Queue::forget`].
    pub fn begin(&mut self, place: &Place, lane: &Lane) {
        let from_line = self
            .waiting
            .remove(place)
            .is_some_and(|w| matches!(w.hold, Hold::Quota { .. }));
        if from_line {
            self.lanes.entry(lane.clone()).or_default().probing = Some(place.clone());
        }
        self.creating.insert(place.clone(), lane.clone());
    }

    fn verdict(
        &mut self,
        place: &Place,
        lane: &Lane,
        active: Active,
        caps: Caps,
        resumed: bool,
        now: Instant,
    ) -> Verdict {
        // In line behind an older job held by the same lane or cap.
        let older = self
            .waiting
            .range(..place)
            .find(|(p, w)| w.hold.blocks(&w.lane, &p.namespace, lane, &place.namespace));
        if let Some((_, w)) = older {
            return Verdict::Wait {
                hold: w.hold.clone(),
                retry: WAITING_BACKSTOP,
            };
        }
        let others = |f: &dyn Fn(&Place, &Lane) -> bool| {
            self.creating.iter().filter(|(p, l)| *p != place && f(p, l)).count() as u32
        };
        if let Some(limit) = caps.namespace {
            if active.namespace + others(&|p, _| p.namespace == place.namespace) >= limit {
                return Verdict::Wait {
                    hold: Hold::NamespaceCap { limit },
                    retry: WAITING_BACKSTOP,
                };
            }
        }
        if let Some(limit) = caps.region {
            if active.region + others(&|_, l| l.region == lane.region) >= limit {
                return Verdict::Wait {
                    hold: Hold::RegionCap { limit },
                    retry: WAITING_BACKSTOP,
                };
            }
        }
        let known = self.lanes.contains_key(lane);
        let state = self.lanes.entry(lane.clone()).or_default();
        if state.probing.as_ref().is_some_and(|p| p < place) {
            return Verdict::Wait {
                hold: Hold::Quota {
                    message: state.message.clone(),
                },
                retry: WAITING_BACKSTOP,
            };
        }
        if resumed && !known {
            // Queued before a restart: the quota was reached a moment ago; probe after the backoff.
            state.full = true;
            state.refusals = 1;
            state.probe_at = Some(now + probe_delay(1));
        }
        match state.probe_at.filter(|at| state.full && now < *at) {
            Some(at) => Verdict::Wait {
                hold: Hold::Quota {
                    message: state.message.clone(),
                },
                retry: at - now,
            },
            None => Verdict::Go,
        }
    }

    /// The create of `place` succeeded: the lane has capacity. Returns the next job of the lane
    /// to wake, if one waits for quota.
    pub fn created(&mut self, place: &Place) -> Option<Place> {
        let lane = self.creating.remove(place)?;
        self.waiting.remove(place);
        self.lanes.insert(lane.clone(), LaneState::default());
        // Capacity was there: the next job waiting for quota tries too.
        self.head(&lane)
    }

    /// SageMaker refused the create of `place` for quota (`message`): the lane is full, the job
    /// waits in line. Returns when the lane's head probes again.
    pub fn refused(&mut self, place: &Place, lane: &Lane, message: &str, now: Instant) -> Duration {
        self.creating.remove(place);
        let state = self.lanes.entry(lane.clone()).or_default();
        state.full = true;
        state.probing = None;
        state.refusals = state.refusals.saturating_add(1);
        let delay = probe_delay(state.refusals);
        state.probe_at = Some(now + delay);
        state.message = message.to_string();
        self.waiting.insert(
            place.clone(),
            Waiting {
                lane: lane.clone(),
                hold: Hold::Quota {
                    message: message.to_string(),
                },
            },
        );
        delay
    }

    /// A job of `lane` in `namespace` ended: capacity is free. Returns the jobs to wake: the
    /// lane's head, and the oldest job held by the namespace's or the region's cap.
    pub fn released(&mut self, lane: &Lane, namespace: &str) -> Vec<Place> {
        let state = self.lanes.entry(lane.clone()).or_default();
        // The head's create in flight, if any, keeps its turn.
        *state = LaneState {
            probing: state.probing.take(),
            ..LaneState::default()
        };
        let mut wake: Vec<Place> = self.head(lane).into_iter().collect();
        let capped = |w: &Waiting, p: &Place| match w.hold {
            Hold::NamespaceCap { .. } => p.namespace == namespace,
            Hold::RegionCap { .. } => w.lane.region == lane.region,
            Hold::Quota { .. } => false,
        };
        if let Some((p, _)) = self.waiting.iter().find(|(p, w)| capped(w, p)) {
            if !wake.contains(p) {
                wake.push(p.clone());
            }
        }
        wake
    }

    /// `place` leaves the queue (deleted, refused for another reason, or its create failed
    /// otherwise). Returns the job to wake when it was the head of a lane that is not full.
    pub fn forget(&mut self, place: &Place) -> Option<Place> {
        let lane = self
            .creating
            .remove(place)
            .or_else(|| self.waiting.remove(place).map(|w| w.lane))?;
        let state = self.lanes.entry(lane.clone()).or_default();
        if state.probing.as_ref() == Some(place) {
            state.probing = None;
        }
        let full = state.full;
        (!full).then(|| self.head(&lane)).flatten()
    }

    /// Whether `place` waits in line.
    pub fn is_waiting(&self, place: &Place) -> bool {
        self.waiting.contains_key(place)
    }

    /// The oldest job of the lane waiting for quota.
    fn head(&self, lane: &Lane) -> Option<Place> {
        self.waiting
            .iter()
            .find(|(_, w)| &w.lane == lane && matches!(w.hold, Hold::Quota { .. }))
            .map(|(p, _)| p.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn place(created: i64, name: &str) -> Place {
        Place {
            created,
            name: name.into(),
            namespace: "team-a".into(),
        }
    }

    fn lane(instance_type: &str) -> Lane {
        Lane {
            region: ScopeKey {
                account: None,
                region: "us-east-1".into(),
            },
            instance_type: instance_type.into(),
        }
    }

    /// What `act` does: decide, and on Go begin the create.
    fn admit(q: &mut Queue, p: &Place, l: &Lane, active: Active, caps: Caps, resumed: bool, now: Instant) -> Verdict {
        let v = q.decide(p, l, active, caps, resumed, now);
        if v == Verdict::Go {
            q.begin(p, l);
        }
        v
    }

    fn go(q: &mut Queue, p: &Place, l: &Lane, now: Instant) -> bool {
        admit(q, p, l, Active::default(), Caps::default(), false, now) == Verdict::Go
    }

    #[test]
    fn places_order_by_creation_then_name() {
        let mut v = vec![place(2, "a"), place(1, "z"), place(1, "b")];
        v.sort();
        assert_eq!(v, [place(1, "b"), place(1, "z"), place(2, "a")]);
    }

    #[test]
    fn an_open_lane_lets_everyone_try() {
        let mut q = Queue::default();
        let now = Instant::now();
        let m5 = lane("ml.m5.xlarge");
        for i in 0..5 {
            assert!(go(&mut q, &place(i, "j"), &m5, now));
        }
    }

    #[test]
    fn after_a_refusal_only_the_head_probes_and_only_after_the_backoff() {
        let mut q = Queue::default();
        let now = Instant::now();
        let m5 = lane("ml.m5.xlarge");
        let (a, b, c) = (place(1, "a"), place(2, "b"), place(3, "c"));
        for p in [&a, &b, &c] {
            assert!(go(&mut q, p, &m5, now));
        }
        assert_eq!(q.refused(&b, &m5, "limit", now), Duration::from_secs(30));
        // c, younger, waits behind b without calling AWS; so does a new job.
        let waits = |v: Verdict| {
            matches!(
                v,
                Verdict::Wait {
                    hold: Hold::Quota { .. },
                    ..
                }
            )
        };
        assert!(waits(admit(
            &mut q,
            &c,
            &m5,
            Active::default(),
            Caps::default(),
            false,
            now
        )));
        assert!(waits(admit(
            &mut q,
            &place(9, "new"),
            &m5,
            Active::default(),
            Caps::default(),
            false,
            now
        )));
        // The head waits for the backoff, then probes.
        assert_eq!(
            admit(&mut q, &b, &m5, Active::default(), Caps::default(), false, now),
            Verdict::Wait {
                hold: Hold::Quota {
                    message: "limit".into()
                },
                retry: Duration::from_secs(30)
            }
        );
        assert!(go(&mut q, &b, &m5, now + Duration::from_secs(31)));
        // Refused again: the backoff doubles, and is bounded.
        assert_eq!(q.refused(&b, &m5, "limit", now), Duration::from_secs(60));
        for _ in 0..10 {
            q.refused(&b, &m5, "limit", now);
        }
        assert_eq!(q.refused(&b, &m5, "limit", now), Duration::from_secs(300));
        // a, let through before the refusal, is not in line.
        assert!(!q.is_waiting(&a));
        // Another lane is not affected.
        assert!(go(&mut q, &place(10, "other"), &lane("ml.c5.4xlarge"), now));
    }

    #[test]
    fn a_release_wakes_the_head_and_each_success_the_next_in_creation_order() {
        let mut q = Queue::default();
        let now = Instant::now();
        let m5 = lane("ml.m5.xlarge");
        let jobs: Vec<Place> = (0..4).map(|i| place(i, &format!("j{i}"))).collect();
        // All tried at once, refused in reverse order: the line is still by creation time.
        for p in &jobs {
            assert!(go(&mut q, p, &m5, now));
        }
        for p in jobs.iter().rev() {
            q.refused(p, &m5, "limit", now);
        }
        assert_eq!(q.released(&m5, "team-a"), [jobs[0].clone()]);
        // Open again, but younger jobs still wait behind the line.
        assert!(!go(&mut q, &jobs[1], &m5, now));
        assert!(go(&mut q, &jobs[0], &m5, now));
        assert_eq!(q.created(&jobs[0]), Some(jobs[1].clone()));
        assert!(go(&mut q, &jobs[1], &m5, now));
        // The capacity is used up again: the chain stops.
        q.refused(&jobs[1], &m5, "limit", now);
        assert!(!go(&mut q, &jobs[2], &m5, now));
        assert_eq!(q.released(&m5, "team-a"), [jobs[1].clone()]);
    }

    #[test]
    fn younger_jobs_wait_for_the_answer_to_the_heads_create() {
        let mut q = Queue::default();
        let now = Instant::now();
        let m5 = lane("ml.m5.xlarge");
        let (a, b) = (place(1, "a"), place(2, "b"));
        for p in [&a, &b] {
            go(&mut q, p, &m5, now);
            q.refused(p, &m5, "limit", now);
        }
        q.released(&m5, "team-a");
        assert!(go(&mut q, &a, &m5, now));
        // a's create is in flight: b (its backstop timer fired) must not pass it.
        assert!(!go(&mut q, &b, &m5, now));
        assert!(!go(&mut q, &place(3, "new"), &m5, now));
        assert_eq!(q.created(&a), Some(b.clone()));
        assert!(go(&mut q, &b, &m5, now));
    }

    #[test]
    fn a_deleted_head_passes_its_turn_on() {
        let mut q = Queue::default();
        let now = Instant::now();
        let m5 = lane("ml.m5.xlarge");
        let (a, b) = (place(1, "a"), place(2, "b"));
        for p in [&a, &b] {
            go(&mut q, p, &m5, now);
            q.refused(p, &m5, "limit", now);
        }
        assert_eq!(q.forget(&a), None, "the lane is full: nobody to wake");
        q.released(&m5, "team-a");
        go(&mut q, &b, &m5, now);
        q.refused(&b, &m5, "limit", now);
        let c = place(3, "c");
        go(&mut q, &c, &m5, now);
        assert_eq!(q.released(&m5, "team-a"), std::slice::from_ref(&b));
        assert_eq!(q.forget(&b), Some(c.clone()), "an open lane's next job takes the turn");
    }

    #[test]
    fn caps_hold_jobs_in_creation_order_without_aws() {
        let mut q = Queue::default();
        let now = Instant::now();
        let m5 = lane("ml.m5.xlarge");
        let caps = Caps {
            namespace: Some(2),
            region: None,
        };
        let (a, b, c) = (place(1, "a"), place(2, "b"), place(3, "c"));
        // Two creates in flight count against the cap.
        assert_eq!(admit(&mut q, &a, &m5, Active::default(), caps, false, now), Verdict::Go);
        assert_eq!(admit(&mut q, &b, &m5, Active::default(), caps, false, now), Verdict::Go);
        let capped = Verdict::Wait {
            hold: Hold::NamespaceCap { limit: 2 },
            retry: WAITING_BACKSTOP,
        };
        assert_eq!(admit(&mut q, &c, &m5, Active::default(), caps, false, now), capped);
        // Both created: the tracker counts them now.
        q.created(&a);
        q.created(&b);
        let two = Active {
            namespace: 2,
            region: 2,
        };
        assert_eq!(admit(&mut q, &c, &m5, two, caps, false, now), capped);
        // A younger job waits behind c, even when capacity appears for a moment.
        let d = place(4, "d");
        let one = Active {
            namespace: 1,
            region: 1,
        };
        assert_eq!(admit(&mut q, &d, &m5, one, caps, false, now), capped);
        assert_eq!(q.released(&m5, "team-a"), std::slice::from_ref(&c));
        assert_eq!(admit(&mut q, &c, &m5, one, caps, false, now), Verdict::Go);
        // Another namespace is not held by team-a's cap.
        let elsewhere = Place {
            namespace: "team-b".into(),
            ..place(0, "e")
        };
        assert_eq!(
            admit(&mut q, &elsewhere, &m5, Active::default(), caps, false, now),
            Verdict::Go
        );
        // The region cap holds every namespace.
        let region = Caps {
            namespace: None,
            region: Some(3),
        };
        let f = Place {
            namespace: "team-b".into(),
            ..place(5, "f")
        };
        assert_eq!(
            admit(
                &mut q,
                &f,
                &m5,
                Active {
                    namespace: 0,
                    region: 3
                },
                region,
                false,
                now
            ),
            Verdict::Wait {
                hold: Hold::RegionCap { limit: 3 },
                retry: WAITING_BACKSTOP
            }
        );
    }

    #[test]
    fn a_job_queued_before_a_restart_waits_for_the_backoff() {
        let mut q = Queue::default();
        let now = Instant::now();
        let m5 = lane("ml.m5.xlarge");
        let a = place(1, "a");
        assert!(matches!(
            admit(&mut q, &a, &m5, Active::default(), Caps::default(), true, now),
            Verdict::Wait {
                hold: Hold::Quota { .. },
                ..
            }
        ));
        assert_eq!(
            admit(
                &mut q,
                &a,
                &m5,
                Active::default(),
                Caps::default(),
                true,
                now + Duration::from_secs(31)
            ),
            Verdict::Go
        );
    }
}
