//! Leader election with a `coordination.k8s.io/v1` Lease, the way client-go's
//! `leaderelection` does it: with several replicas only the holder reconciles.
//!
//! Clocks of different machines disagree, so a replica never compares the Lease's `renewTime`
//! (written by the holder's clock) with its own clock. It remembers the last record it read
//! and the local instant at which that record last changed; the holder counts as gone once
//! the record has stayed the same for a whole lease duration by the local clock. A replica
//! that just started therefore waits a full lease duration before taking over a stale lease.
//! The holder gives up when it has not renewed within the renew deadline, which is shorter
//! than the lease duration, so it stops acting before any follower can take over.
//! Optimistic concurrency (resourceVersion) decides races between writers.

use std::future::Future;
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime;
use k8s_openapi::jiff::Timestamp;
use kube::api::{ObjectMeta, PostParams};
use kube::{Api, Client};
use tokio_util::sync::CancellationToken;

/// Lease settings.
#[derive(Debug, Clone)]
pub struct LeaseSettings {
    pub name: String,
    pub namespace: String,
    pub identity: String,
    /// How long a lease is valid without renewal; another replica takes over after it.
    pub duration: Duration,
    /// How often the holder renews.
    pub renew_every: Duration,
}

/// A failed call on the Lease.
#[derive(Debug, thiserror::Error)]
pub enum LeaseError {
    /// Another writer changed the Lease since it was read, or created it first (HTTP 409).
    #[error("the Lease changed since it was read")]
    Conflict,
    #[error("cannot read the Lease: {0}")]
    Read(#[source] kube::Error),
    #[error("cannot write the Lease: {0}")]
    Write(#[source] kube::Error),
}

impl LeaseError {
    /// Stable reason for logs.
    pub fn reason(&self) -> &'static str {
        match self {
            LeaseError::Conflict => "LeaseConflict",
            LeaseError::Read(_) => "LeaseReadFailed",
            LeaseError::Write(_) => "LeaseWriteFailed",
        }
    }
}

/// The Lease calls election needs: read it, and write it with optimistic concurrency.
pub trait LeaseStore: Send + Sync {
    /// The Lease, or `None` when it does not exist.
    fn get(&self) -> impl Future<Output = Result<Option<Lease>, LeaseError>> + Send;
    /// Creates the Lease; [`LeaseError::Conflict`] when it exists already.
    fn create(&self, lease: &Lease) -> impl Future<Output = Result<Lease, LeaseError>> + Send;
    /// Replaces the Lease read before; [`LeaseError::Conflict`] when it changed since.
    fn replace(&self, lease: &Lease) -> impl Future<Output = Result<Lease, LeaseError>> + Send;
}

/// The Lease in the cluster.
pub struct KubeLeases {
    api: Api<Lease>,
    name: String,
}

fn write_error(e: kube::Error) -> LeaseError {
    match e {
        kube::Error::Api(status) if status.code == 409 => LeaseError::Conflict,
        e => LeaseError::Write(e),
    }
}

impl LeaseStore for KubeLeases {
    async fn get(&self) -> Result<Option<Lease>, LeaseError> {
        self.api.get_opt(&self.name).await.map_err(LeaseError::Read)
    }

    async fn create(&self, lease: &Lease) -> Result<Lease, LeaseError> {
        self.api
            .create(&PostParams::default(), lease)
            .await
            .map_err(write_error)
    }

    async fn replace(&self, lease: &Lease) -> Result<Lease, LeaseError> {
        self.api
            .replace(&self.name, &PostParams::default(), lease)
            .await
            .map_err(write_error)
    }
}

/// Time as election sees it.
pub trait Clock: Send + Sync {
    /// The local monotonic clock: it alone judges expiry and deadlines.
    fn now(&self) -> Instant;
    /// Wall-clock time, written into the Lease for people and tools; never compared.
    fn wall(&self) -> Timestamp;
}

/// The machine's clocks.
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> Instant {
        Instant::now()
    }

    fn wall(&self) -> Timestamp {
        Timestamp::now()
    }
}

/// The Lease record as last read or written, and when it last changed by the local clock.
#[derive(Debug, Clone)]
struct Observed {
    record: LeaseSpec,
    at: Instant,
}

/// Takes in a record just read: the observation restarts only when the record changed, so
/// a holder that keeps renewing keeps its lease whatever time its clock writes.
fn observe(last: Option<Observed>, record: LeaseSpec, now: Instant) -> Observed {
    match last {
        Some(last) if last.record == record => last,
        _ => Observed { record, at: now },
    }
}

/// What a replica concludes from the record it observes.
#[derive(Debug, PartialEq, Eq)]
enum Decision {
    /// Another replica holds the lease and was seen renewing it within the lease duration.
    Follow(String),
    /// Write our identity: the lease is ours, free, or its holder stopped renewing.
    Claim,
}

fn decide(observed: &Observed, me: &str, fallback_duration: Duration, now: Instant) -> Decision {
    let holder = observed.record.holder_identity.as_deref().unwrap_or_default();
    if holder.is_empty() || holder == me {
        return Decision::Claim;
    }
    // The duration the holder declared; a record without one gets ours, not zero.
    let duration = observed
        .record
        .lease_duration_seconds
        .and_then(|s| u64::try_from(s).ok())
        .filter(|s| *s > 0)
        .map_or(fallback_duration, Duration::from_secs);
    let expired = observed.at.checked_add(duration).is_some_and(|end| end < now);
    if expired {
        Decision::Claim
    } else {
        Decision::Follow(holder.to_string())
    }
}

/// The record with `me` as holder, renewed at `wall`.
fn claim(current: &LeaseSpec, me: &str, duration_seconds: i32, wall: Timestamp) -> LeaseSpec {
    let renewing = current.holder_identity.as_deref() == Some(me);
    LeaseSpec {
        holder_identity: Some(me.to_string()),
        lease_duration_seconds: Some(duration_seconds),
        acquire_time: if renewing {
            current.acquire_time.clone()
        } else {
            Some(MicroTime(wall))
        },
        renew_time: Some(MicroTime(wall)),
        lease_transitions: if renewing {
            current.lease_transitions
        } else {
            Some(current.lease_transitions.unwrap_or(0).saturating_add(1))
        },
        ..current.clone()
    }
}

/// The outcome of one attempt.
#[derive(Debug, PartialEq, Eq)]
enum Attempt {
    Leader,
    Follower(String),
}

/// Why the holder stopped holding.
#[derive(Debug, PartialEq, Eq)]
enum Lost {
    /// Not renewed within the renew deadline: a follower may take over soon.
    NotRenewed,
    /// Another replica holds the lease.
    TakenBy(String),
}

#[derive(Debug, Default)]
struct State {
    observed: Option<Observed>,
    /// When our last successful write started: the renew deadline counts from here.
    renewed_at: Option<Instant>,
}

/// Elects this replica through the Lease in `store`, judging time by `clock`.
pub struct LeaderElector<S = KubeLeases, C = SystemClock> {
    store: S,
    clock: C,
    settings: LeaseSettings,
    state: Mutex<State>,
}

impl LeaderElector {
    pub fn new(client: Client, settings: LeaseSettings) -> Self {
        let store = KubeLeases {
            api: Api::namespaced(client, &settings.namespace),
            name: settings.name.clone(),
        };
        Self::from_parts(store, SystemClock, settings)
    }
}

impl<S: LeaseStore, C: Clock> LeaderElector<S, C> {
    fn from_parts(store: S, clock: C, settings: LeaseSettings) -> Self {
        Self {
            store,
            clock,
            settings,
            state: Mutex::default(),
        }
    }

    fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The holder gives up after this long without renewal, before followers take over.
    fn renew_deadline(&self) -> Duration {
        self.settings.duration * 2 / 3
    }

    /// The lease duration written into the Lease: whole seconds, rounded up so that
    /// followers never wait less than the holder's renew deadline assumes.
    fn duration_seconds(&self) -> i32 {
        let d = self.settings.duration;
        let seconds = d.as_secs() + u64::from(d.subsec_nanos() > 0);
        i32::try_from(seconds.max(1)).unwrap_or(i32::MAX)
    }

    /// Pause between renew attempts that failed other than by a conflict.
    fn retry_pause(&self) -> Duration {
        self.settings.renew_every / 4
    }

    fn renewed_at(&self) -> Instant {
        let renewed_at = self.state().renewed_at;
        renewed_at.unwrap_or_else(|| self.clock.now())
    }

    /// Reads the Lease and writes our identity into it when it is ours, free or expired.
    async fn try_acquire_or_renew(&self) -> Result<Attempt, LeaseError> {
        let started = self.clock.now();
        let me = &self.settings.identity;
        let written = match self.store.get().await? {
            None => {
                let mut spec = claim(&LeaseSpec::default(), me, self.duration_seconds(), self.clock.wall());
                spec.lease_transitions = Some(0);
                let lease = Lease {
                    metadata: ObjectMeta {
                        name: Some(self.settings.name.clone()),
                        ..Default::default()
                    },
                    spec: Some(spec),
                };
                self.store.create(&lease).await?
            }
            Some(mut lease) => {
                let record = lease.spec.clone().unwrap_or_default();
                // Observed after the read returned, not before it was sent: a slow read
                // must not make the holder's renewal look older than it is.
                let now = self.clock.now();
                let decision = {
                    let mut state = self.state();
                    let observed = observe(state.observed.take(), record.clone(), now);
                    let decision = decide(&observed, me, self.settings.duration, now);
                    state.observed = Some(observed);
                    decision
                };
                if let Decision::Follow(holder) = decision {
                    return Ok(Attempt::Follower(holder));
                }
                lease.spec = Some(claim(&record, me, self.duration_seconds(), self.clock.wall()));
                self.store.replace(&lease).await?
            }
        };
        let now = self.clock.now();
        let mut state = self.state();
        state.observed = Some(Observed {
            record: written.spec.unwrap_or_default(),
            at: now,
        });
        state.renewed_at = Some(started);
        Ok(Attempt::Leader)
    }

    /// Waits until this replica holds the lease. Returns false when cancelled first.
    pub async fn acquire(&self, shutdown: &CancellationToken) -> bool {
        let mut last_holder = None;
        loop {
            let attempt = tokio::select! {
                _ = shutdown.cancelled() => return false,
                attempt = tokio::time::timeout(self.renew_deadline(), self.try_acquire_or_renew()) => attempt,
            };
            match attempt {
                Ok(Ok(Attempt::Leader)) => {
                    tracing::info!(
                        identity = self.settings.identity,
                        lease = self.settings.name,
                        "acquired the leader lease"
                    );
                    return true;
                }
                Ok(Ok(Attempt::Follower(holder))) => {
                    if last_holder.as_ref() != Some(&holder) {
                        tracing::info!(holder, "standing by: another replica holds the leader lease");
                        last_holder = Some(holder);
                    }
                }
                Ok(Err(LeaseError::Conflict)) => {
                    tracing::debug!("another replica wrote the leader lease first")
                }
                Ok(Err(e)) => {
                    tracing::warn!(error = %e, reason = e.reason(), "leader election attempt failed")
                }
                Err(_) => tracing::warn!("leader election attempt timed out"),
            }
            tokio::select! {
                _ = shutdown.cancelled() => return false,
                _ = tokio::time::sleep(self.settings.renew_every) => {}
            }
        }
    }

    /// Renews the lease, retrying until the renew deadline; a call that hangs is abandoned
    /// when the deadline passes.
    async fn renew(&self) -> Result<(), Lost> {
        let deadline = self.renewed_at() + self.renew_deadline();
        loop {
            let left = deadline.saturating_duration_since(self.clock.now());
            if left.is_zero() {
                return Err(Lost::NotRenewed);
            }
            match tokio::time::timeout(left, self.try_acquire_or_renew()).await {
                Err(_) => return Err(Lost::NotRenewed),
                Ok(Ok(Attempt::Leader)) => return Ok(()),
                Ok(Ok(Attempt::Follower(holder))) => return Err(Lost::TakenBy(holder)),
                // Someone touched the Lease since we read it; reading it again tells
                // whether it is still ours, so retry at once.
                Ok(Err(LeaseError::Conflict)) => {
                    tracing::debug!("the leader lease changed since it was read: reading it again");
                    continue;
                }
                Ok(Err(e)) => {
                    tracing::warn!(error = %e, reason = e.reason(), "cannot renew the leader lease")
                }
            }
            let left = deadline.saturating_duration_since(self.clock.now());
            tokio::time::sleep(self.retry_pause().min(left)).await;
        }
    }

    /// Renews the lease until `shutdown`; cancels `lost` as soon as the lease cannot be held.
    pub async fn hold(&self, shutdown: CancellationToken, lost: CancellationToken) {
        loop {
            let next = self.renewed_at() + self.settings.renew_every;
            let wait = next.saturating_duration_since(self.clock.now());
            let renewal = tokio::select! {
                _ = shutdown.cancelled() => None,
                renewal = async {
                    tokio::time::sleep(wait).await;
                    self.renew().await
                } => Some(renewal),
            };
            match renewal {
                None => {
                    self.release().await;
                    return;
                }
                Some(Ok(())) => {}
                Some(Err(Lost::TakenBy(holder))) => {
                    tracing::error!(holder, "lost the leader lease to another replica");
                    lost.cancel();
                    return;
                }
                Some(Err(Lost::NotRenewed)) => {
                    tracing::error!("leader lease not renewed within the renew deadline");
                    lost.cancel();
                    return;
                }
            }
        }
    }

    /// Gives the lease up so that another replica takes over at once. Bounded in time: a
    /// hanging apiserver must not hold up shutdown.
    async fn release(&self) {
        match tokio::time::timeout(self.renew_deadline(), self.try_release()).await {
            Ok(Ok(true)) => tracing::info!("released the leader lease"),
            Ok(Ok(false)) => {}
            Ok(Err(e)) => {
                tracing::warn!(error = %e, reason = e.reason(), "cannot release the leader lease")
            }
            Err(_) => tracing::warn!("releasing the leader lease timed out"),
        }
    }

    /// Clears the holder when it is us; false when the lease is not ours.
    async fn try_release(&self) -> Result<bool, LeaseError> {
        loop {
            let Some(mut lease) = self.store.get().await? else {
                return Ok(false);
            };
            let mine = lease
                .spec
                .as_mut()
                .filter(|spec| spec.holder_identity.as_deref() == Some(self.settings.identity.as_str()));
            let Some(spec) = mine else {
                return Ok(false);
            };
            spec.holder_identity = None;
            match self.store.replace(&lease).await {
                Ok(_) => return Ok(true),
                Err(LeaseError::Conflict) => continue,
                Err(e) => return Err(e),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
    use std::sync::Arc;

    use k8s_openapi::jiff::SignedDuration;

    use super::*;

    /// A local clock that moves only when told; its wall time can be skewed.
    #[derive(Clone)]
    struct FakeClock(Arc<FakeClockState>);

    struct FakeClockState {
        start: Instant,
        elapsed: Mutex<Duration>,
        wall_skew: SignedDuration,
    }

    impl FakeClock {
        fn new() -> Self {
            Self::skewed(SignedDuration::ZERO)
        }

        fn skewed(wall_skew: SignedDuration) -> Self {
            Self(Arc::new(FakeClockState {
                start: Instant::now(),
                elapsed: Mutex::new(Duration::ZERO),
                wall_skew,
            }))
        }

        fn advance(&self, by: Duration) {
            *self.0.elapsed.lock().unwrap() += by;
        }
    }

    impl Clock for FakeClock {
        fn now(&self) -> Instant {
            self.0.start + *self.0.elapsed.lock().unwrap()
        }

        fn wall(&self) -> Timestamp {
            let elapsed = SignedDuration::try_from(*self.0.elapsed.lock().unwrap()).unwrap();
            Timestamp::from_second(1_800_000_000).unwrap() + elapsed + self.0.wall_skew
        }
    }

    /// An in-memory apiserver for one Lease, with resourceVersion checks.
    #[derive(Clone, Default)]
    struct FakeLeases(Arc<FakeLeasesState>);

    #[derive(Default)]
    struct FakeLeasesState {
        lease: Mutex<Option<Lease>>,
        /// Replaces answered with a conflict, as if another writer had touched the Lease
        /// between our read and our write.
        conflicts: AtomicUsize,
        /// While set, calls never answer.
        hang: AtomicBool,
    }

    fn bump(lease: &mut Lease) {
        let version: u64 = lease
            .metadata
            .resource_version
            .as_deref()
            .map_or(0, |v| v.parse().unwrap());
        lease.metadata.resource_version = Some((version + 1).to_string());
    }

    impl FakeLeases {
        fn spec(&self) -> LeaseSpec {
            let lease = self.0.lease.lock().unwrap();
            lease.as_ref().and_then(|l| l.spec.clone()).unwrap_or_default()
        }

        fn holder(&self) -> Option<String> {
            self.spec().holder_identity
        }

        /// Another writer changes the Lease.
        fn edit(&self, change: impl FnOnce(&mut LeaseSpec)) {
            let mut slot = self.0.lease.lock().unwrap();
            let lease = slot.get_or_insert_with(Lease::default);
            change(lease.spec.get_or_insert_with(LeaseSpec::default));
            bump(lease);
        }

        async fn answer(&self) {
            if self.0.hang.load(Ordering::SeqCst) {
                std::future::pending::<()>().await;
            }
        }
    }

    impl LeaseStore for FakeLeases {
        async fn get(&self) -> Result<Option<Lease>, LeaseError> {
            self.answer().await;
            Ok(self.0.lease.lock().unwrap().clone())
        }

        async fn create(&self, lease: &Lease) -> Result<Lease, LeaseError> {
            self.answer().await;
            let mut slot = self.0.lease.lock().unwrap();
            if slot.is_some() {
                return Err(LeaseError::Conflict);
            }
            let mut created = lease.clone();
            bump(&mut created);
            *slot = Some(created.clone());
            Ok(created)
        }

        async fn replace(&self, lease: &Lease) -> Result<Lease, LeaseError> {
            self.answer().await;
            let mut slot = self.0.lease.lock().unwrap();
            let current = slot.as_mut().ok_or(LeaseError::Conflict)?;
            let injected = self
                .0
                .conflicts
                .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
                .is_ok();
            if injected {
                current.metadata.annotations = Some([("touched".to_string(), "yes".to_string())].into());
                bump(current);
            }
            if current.metadata.resource_version != lease.metadata.resource_version {
                return Err(LeaseError::Conflict);
            }
            let mut replaced = lease.clone();
            bump(&mut replaced);
            *current = replaced.clone();
            Ok(replaced)
        }
    }

    const LEASE: Duration = Duration::from_secs(15);

    fn settings(identity: &str, duration: Duration) -> LeaseSettings {
        LeaseSettings {
            name: "smpc-leader".into(),
            namespace: "smpc".into(),
            identity: identity.into(),
            duration,
            renew_every: duration / 3,
        }
    }

    fn elector(identity: &str, store: &FakeLeases, clock: &FakeClock) -> LeaderElector<FakeLeases, FakeClock> {
        LeaderElector::from_parts(store.clone(), clock.clone(), settings(identity, LEASE))
    }

    /// Real time, with a lease short enough for tests.
    fn real_time_elector(
        identity: &str,
        store: &FakeLeases,
        duration: Duration,
    ) -> LeaderElector<FakeLeases, SystemClock> {
        LeaderElector::from_parts(store.clone(), SystemClock, settings(identity, duration))
    }

    async fn attempt<S: LeaseStore, C: Clock>(elector: &LeaderElector<S, C>) -> Attempt {
        elector.try_acquire_or_renew().await.unwrap()
    }

    fn follower(holder: &str) -> Attempt {
        Attempt::Follower(holder.to_string())
    }

    #[tokio::test]
    async fn follower_waits_a_lease_duration_from_its_own_observation_even_when_renew_time_is_old() {
        let store = FakeLeases::default();
        let long_ago = Timestamp::from_second(1_000_000_000).unwrap();
        store.edit(|spec| {
            spec.holder_identity = Some("a".into());
            spec.lease_duration_seconds = Some(15);
            spec.renew_time = Some(MicroTime(long_ago));
            spec.lease_transitions = Some(3);
        });
        let clock = FakeClock::new();
        let b = elector("b", &store, &clock);

        assert_eq!(attempt(&b).await, follower("a"));
        clock.advance(Duration::from_secs(14));
        assert_eq!(attempt(&b).await, follower("a"));
        clock.advance(Duration::from_secs(2));
        assert_eq!(attempt(&b).await, Attempt::Leader);
        assert_eq!(store.holder().as_deref(), Some("b"));
        assert_eq!(store.spec().lease_transitions, Some(4));
    }

    #[tokio::test]
    async fn follower_takes_over_when_the_holder_stops_renewing() {
        let store = FakeLeases::default();
        let (clock_a, clock_b) = (FakeClock::new(), FakeClock::new());
        let (a, b) = (elector("a", &store, &clock_a), elector("b", &store, &clock_b));

        assert_eq!(attempt(&a).await, Attempt::Leader);
        assert_eq!(attempt(&b).await, follower("a"));
        // Three lease durations in all, while a renews every ten seconds.
        for _ in 0..4 {
            clock_a.advance(Duration::from_secs(10));
            clock_b.advance(Duration::from_secs(10));
            assert_eq!(attempt(&a).await, Attempt::Leader);
            assert_eq!(attempt(&b).await, follower("a"));
        }
        // a stops renewing.
        clock_b.advance(Duration::from_secs(10));
        assert_eq!(attempt(&b).await, follower("a"));
        clock_b.advance(Duration::from_secs(6));
        assert_eq!(attempt(&b).await, Attempt::Leader);
        assert_eq!(store.holder().as_deref(), Some("b"));
        assert_eq!(store.spec().lease_transitions, Some(1));
    }

    #[tokio::test]
    async fn holder_clock_far_behind_does_not_make_followers_take_over() {
        let store = FakeLeases::default();
        let clock_a = FakeClock::skewed(SignedDuration::from_hours(-1));
        let clock_b = FakeClock::new();
        let (a, b) = (elector("a", &store, &clock_a), elector("b", &store, &clock_b));

        assert_eq!(attempt(&a).await, Attempt::Leader);
        for _ in 0..4 {
            assert_eq!(attempt(&b).await, follower("a"));
            clock_a.advance(Duration::from_secs(10));
            clock_b.advance(Duration::from_secs(10));
            assert_eq!(attempt(&a).await, Attempt::Leader);
        }
        assert_eq!(attempt(&b).await, follower("a"));
    }

    #[tokio::test]
    async fn holder_clock_far_ahead_does_not_keep_followers_waiting() {
        let store = FakeLeases::default();
        let clock_a = FakeClock::skewed(SignedDuration::from_hours(1));
        let clock_b = FakeClock::new();
        let (a, b) = (elector("a", &store, &clock_a), elector("b", &store, &clock_b));

        assert_eq!(attempt(&a).await, Attempt::Leader);
        assert_eq!(attempt(&b).await, follower("a"));
        // a stops renewing; its renewTime is an hour in b's future.
        clock_b.advance(Duration::from_secs(16));
        assert_eq!(attempt(&b).await, Attempt::Leader);
        assert_eq!(store.holder().as_deref(), Some("b"));
    }

    #[tokio::test]
    async fn hanging_renew_loses_the_lease_before_it_expires() {
        let store = FakeLeases::default();
        let duration = Duration::from_millis(450);
        let a = real_time_elector("a", &store, duration);
        let acquired = Instant::now();
        assert!(a.acquire(&CancellationToken::new()).await);
        store.0.hang.store(true, Ordering::SeqCst);

        let lost = CancellationToken::new();
        let held = tokio::time::timeout(Duration::from_secs(1), a.hold(CancellationToken::new(), lost.clone())).await;
        assert!(held.is_ok(), "hold kept waiting on a renew that never answers");
        assert!(lost.is_cancelled());
        // Followers may take over one lease duration after the last renewal.
        assert!(acquired.elapsed() < duration, "gave up after {:?}", acquired.elapsed());
    }

    #[tokio::test]
    async fn conflict_on_own_renew_is_retried_and_the_lease_kept() {
        let store = FakeLeases::default();
        let clock = FakeClock::new();
        let a = elector("a", &store, &clock);
        assert_eq!(attempt(&a).await, Attempt::Leader);

        clock.advance(Duration::from_secs(5));
        store.0.conflicts.store(2, Ordering::SeqCst);
        assert_eq!(a.renew().await, Ok(()));
        assert_eq!(store.0.conflicts.load(Ordering::SeqCst), 0);
        assert_eq!(store.holder().as_deref(), Some("a"));
        assert_eq!(store.spec().renew_time, Some(MicroTime(clock.wall())));
        assert_eq!(a.renewed_at(), clock.now());
    }

    #[tokio::test]
    async fn lease_taken_by_another_identity_is_lost() {
        let store = FakeLeases::default();
        let a = real_time_elector("a", &store, Duration::from_millis(240));
        assert!(a.acquire(&CancellationToken::new()).await);
        store.edit(|spec| spec.holder_identity = Some("b".into()));
        assert_eq!(a.renew().await, Err(Lost::TakenBy("b".into())));

        let lost = CancellationToken::new();
        let held = tokio::time::timeout(
            Duration::from_millis(500),
            a.hold(CancellationToken::new(), lost.clone()),
        )
        .await;
        assert!(held.is_ok(), "hold went on renewing a lease b holds");
        assert!(lost.is_cancelled());
        assert_eq!(store.holder().as_deref(), Some("b"));
    }

    #[tokio::test]
    async fn release_on_shutdown_clears_the_holder() {
        let store = FakeLeases::default();
        let clock = FakeClock::new();
        let a = elector("a", &store, &clock);
        assert_eq!(attempt(&a).await, Attempt::Leader);

        let (shutdown, lost) = (CancellationToken::new(), CancellationToken::new());
        shutdown.cancel();
        a.hold(shutdown, lost.clone()).await;
        assert!(!lost.is_cancelled());
        assert_eq!(store.holder(), None);
        // A follower that just started takes a released lease at once.
        let b = elector("b", &store, &FakeClock::new());
        assert_eq!(attempt(&b).await, Attempt::Leader);
    }
}
