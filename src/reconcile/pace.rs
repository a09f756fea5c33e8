//! Pacing of CreateProcessingJob per account and region (pure: the clock is passed in).
//!
//! SageMaker limits how many CreateProcessingJob calls per second an account makes in a region,
//! and answers the calls over it with a throttling error. Many resources applied at once would
//! send creates as fast as the reconciles run, and every throttled call is a call for nothing
//! (and, retried blindly, another one). So creates go unpaced until SageMaker throttles one; then
//! the pacer learns the rate SageMaker took — the creates that went through in the last second —
//! and gives out send times at a little less than it. It stays there for a minute; then it grows
//! a little with each create that goes through (probing for more: SageMaker's limits differ per
//! account and change), and is cut again when SageMaker throttles a create sent since the last
//! cut (additive increase, multiplicative decrease). At a steady limit — CreateProcessingJob's is
//! about one a second per account and region, not adjustable — creates stay under it, and at most
//! one a minute is throttled, by the probe.

use std::collections::{HashMap, VecDeque};
use std::time::{Duration, Instant};

use crate::accounts::ScopeKey;

/// The window the rate SageMaker took is measured over after a burst (see [`window`] for a paced
/// lane).
const WINDOW: Duration = Duration::from_secs(1);
/// How long creates stay at the pace set by a throttle before the pace probes for more.
const PROBE_AFTER: Duration = Duration::from_secs(60);
/// The pace set after a throttle, as a share of the rate measured: close under it, since the
/// pace does not probe upward for a minute after (at one create a second, 0.95 s a create).
const BACKOFF: f64 = 0.95;
/// What each create that goes through adds to the pace (creates per second).
const GROWTH: f64 = 0.05;
/// The slowest pace: one create every five seconds.
const MIN_RATE: f64 = 0.2;

/// The pace of creates in each account and region.
#[derive(Debug, Default)]
pub struct Pacer {
    lanes: HashMap<ScopeKey, Lane>,
}

#[derive(Debug, Default)]
struct Lane {
    /// Creates per second, once SageMaker throttled one here (before that: no limit).
    rate: Option<f64>,
    /// The next free send time.
    next: Option<Instant>,
    /// When the creates of the last few seconds went through (the longest window: five creates
    /// at [`MIN_RATE`]).
    passed: VecDeque<Instant>,
    /// When the pace was last cut.
    cut: Option<Instant>,
}

impl Pacer {
    /// Reserves a send time for a create in `key`: how long to wait for it (zero while SageMaker
    /// has not throttled this account and region). `Err(wait)`, nothing reserved, when the free
    /// time is further than `hold` away: the caller comes back later instead of waiting.
    pub fn reserve(&mut self, key: &ScopeKey, now: Instant, hold: Duration) -> Result<Duration, Duration> {
        let lane = self.lanes.entry(key.clone()).or_default();
        let Some(rate) = lane.rate else {
            return Ok(Duration::ZERO);
        };
        let at = lane.next.map_or(now, |next| next.max(now));
        let wait = at - now;
        if wait > hold {
            return Err(wait);
        }
        lane.next = Some(at + Duration::from_secs_f64(1.0 / rate));
        Ok(wait)
    }

    /// A create in `key` went through.
    pub fn passed(&mut self, key: &ScopeKey, now: Instant) {
        let lane = self.lanes.entry(key.clone()).or_default();
        lane.passed.push_back(now);
        let longest = window(MIN_RATE);
        while lane.passed.front().is_some_and(|t| now.duration_since(*t) > longest) {
            lane.passed.pop_front();
        }
        // A minute after the last cut, each create that goes through probes for more.
        let probing = lane.cut.is_none_or(|cut| now.duration_since(cut) >= PROBE_AFTER);
        if let (Some(rate), true) = (lane.rate.as_mut(), probing) {
            *rate += GROWTH;
        }
    }

    /// SageMaker throttled a create in `key` that was sent at `sent`: the pace becomes a little
    /// less than the rate it took in the last second, and than the pace itself (half the pace
    /// when none went through). A create sent before the last cut says nothing about the pace
    /// since (those sent together are throttled together): it cuts nothing.
    pub fn throttled(&mut self, key: &ScopeKey, sent: Instant, now: Instant) {
        let lane = self.lanes.entry(key.clone()).or_default();
        if lane.cut.is_some_and(|cut| sent < cut) {
            return;
        }
        lane.cut = Some(now);
        let recent = |span: Duration| lane.passed.iter().filter(|t| now.duration_since(**t) <= span).count();
        let in_second = recent(WINDOW) as f64;
        let rate = match lane.rate {
            // The first throttle: what went through in the last second, else one a second.
            None if in_second > 0.0 => in_second * BACKOFF,
            None => 1.0,
            // Paced: a little under what last went through unthrottled — the pace one probe step
            // back — or, in a fast lane, under what went through in the last second if less.
            Some(pace) => {
                let last_good = (pace - GROWTH).max(MIN_RATE);
                if in_second >= 5.0 {
                    in_second.min(last_good) * BACKOFF
                } else if recent(window(pace)) > 0 {
                    last_good * BACKOFF
                } else {
                    // Nothing goes through at all: half the pace.
                    pace / 2.0
                }
            }
        }
        .max(MIN_RATE);
        lane.rate = Some(rate);
        let after = now + Duration::from_secs_f64(1.0 / rate);
        lane.next = Some(lane.next.map_or(after, |next| next.max(after)));
    }

    /// The pace in `key` (creates per second), once SageMaker throttled one there.
    pub fn rate(&self, key: &ScopeKey) -> Option<f64> {
        self.lanes.get(key).and_then(|l| l.rate)
    }
}

/// The window the rate that went through is measured over, at a pace of `rate` creates a second.
fn window(rate: f64) -> Duration {
    WINDOW.max(Duration::from_secs_f64(5.0 / rate))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key() -> ScopeKey {
        ScopeKey {
            account: None,
            region: "us-east-1".into(),
        }
    }

    const HOLD: Duration = Duration::from_secs(2);

    #[test]
    fn creates_go_unpaced_until_sagemaker_throttles_one() {
        let mut p = Pacer::default();
        let t0 = Instant::now();
        for i in 0..100 {
            assert_eq!(p.reserve(&key(), t0, HOLD), Ok(Duration::ZERO), "create {i}");
        }
        assert_eq!(p.rate(&key()), None);
    }

    #[test]
    fn after_a_throttle_creates_are_spaced_at_a_little_less_than_the_rate_that_went_through() {
        let mut p = Pacer::default();
        let t0 = Instant::now();
        // 50 creates went through in the last second, then one was throttled.
        for i in 0..50 {
            p.passed(&key(), t0 + Duration::from_millis(i * 10));
        }
        let t1 = t0 + Duration::from_millis(600);
        p.throttled(&key(), t1, t1);
        let rate = p.rate(&key()).unwrap_or_default();
        assert!((rate - 50.0 * BACKOFF).abs() < 1e-9, "{rate}");
        // Send times one pace apart, the first one pace after the throttle.
        let spacing = Duration::from_secs_f64(1.0 / rate);
        let waits: Vec<Duration> = (0..3)
            .map(|_| p.reserve(&key(), t1, HOLD).unwrap_or_default())
            .collect();
        assert_eq!(waits, [spacing, spacing * 2, spacing * 3]);
        // The creates sent before the cut are throttled too: they cut nothing.
        p.throttled(&key(), t1 - Duration::from_millis(5), t1 + Duration::from_millis(100));
        assert_eq!(p.rate(&key()), Some(rate));
        // One sent at the pace and throttled still: cut again, from the pace one step back.
        let t2 = t1 + Duration::from_millis(200);
        p.throttled(&key(), t1 + spacing, t2);
        assert_eq!(p.rate(&key()), Some((rate - GROWTH) * BACKOFF));
    }

    #[test]
    fn a_minute_after_a_cut_the_pace_grows_with_each_create_and_is_cut_on_the_next_throttle() {
        let mut p = Pacer::default();
        let t0 = Instant::now();
        p.throttled(&key(), t0, t0);
        assert_eq!(p.rate(&key()), Some(1.0), "nothing went through: one a second");
        // Within the minute after the cut, creates that go through do not move the pace.
        let mut now = t0;
        for _ in 0..50 {
            now += Duration::from_secs(1);
            p.passed(&key(), now);
        }
        assert_eq!(p.rate(&key()), Some(1.0), "no probe within a minute of the cut");
        now = t0 + PROBE_AFTER;
        for _ in 0..20 {
            now += Duration::from_millis(500);
            p.passed(&key(), now);
        }
        let grown = p.rate(&key()).unwrap_or_default();
        assert!((grown - 2.0).abs() < 1e-9, "{grown}");
        // The probe was throttled at 2 a second: a little under what went through before it.
        p.throttled(&key(), now, now + Duration::from_millis(10));
        let cut = p.rate(&key()).unwrap_or_default();
        assert!((cut - (2.0 - GROWTH) * BACKOFF).abs() < 1e-9, "{cut}");
    }

    /// SageMaker's CreateProcessingJob limit, about one a second per account and region (a
    /// token bucket without burst, as the simulator's `createsPerSecond: 1`): creates sent at
    /// their paced times stay under it, and at most one a minute is throttled — the probe.
    #[test]
    fn at_a_steady_limit_creates_stay_under_it_and_probe_at_most_once_a_minute() {
        let mut p = Pacer::default();
        let t0 = Instant::now();
        let (mut tokens, mut refilled, mut now) = (1.0f64, t0, t0);
        let (mut passes, mut throttles) = (0u32, Vec::new());
        while passes < 600 {
            now += p.reserve(&key(), now, Duration::from_secs(3600)).unwrap_or_else(|w| w);
            tokens = (tokens + now.duration_since(refilled).as_secs_f64()).min(1.0);
            refilled = now;
            if tokens >= 1.0 - 1e-9 {
                tokens -= 1.0;
                p.passed(&key(), now);
                passes += 1;
            } else {
                p.throttled(&key(), now, now);
                throttles.push(now);
            }
        }
        let minutes = now.duration_since(t0).as_secs_f64() / 60.0;
        // The first throttle shows the limit; after it, the probes.
        let probes = throttles.len() - 1;
        assert!(
            (probes as f64) <= minutes.ceil(),
            "{probes} throttles in {minutes:.1} minutes: {:?}",
            throttles.iter().map(|t| t.duration_since(t0)).collect::<Vec<_>>()
        );
        for pair in throttles[1..].windows(2) {
            assert!(
                pair[1].duration_since(pair[0]) >= PROBE_AFTER,
                "two probes within a minute"
            );
        }
        // And it stays close to the limit: 600 creates in little more than 600 seconds.
        let secs = now.duration_since(t0).as_secs_f64();
        assert!(secs <= 600.0 * 1.12, "{secs:.0} s for 600 creates at one a second");
        let calls = f64::from(passes) + throttles.len() as f64;
        assert!(calls / f64::from(passes) <= 1.02, "{calls} calls for {passes} creates");
    }

    #[test]
    fn a_send_time_further_than_the_hold_is_not_reserved() {
        let mut p = Pacer::default();
        let t0 = Instant::now();
        p.throttled(&key(), t0, t0);
        let t = t0 + WINDOW * 2;
        p.throttled(&key(), t, t);
        assert_eq!(p.rate(&key()), Some(0.5));
        assert_eq!(p.reserve(&key(), t, HOLD), Ok(Duration::from_secs(2)));
        assert_eq!(p.reserve(&key(), t, HOLD), Err(Duration::from_secs(4)));
        assert_eq!(
            p.reserve(&key(), t, HOLD),
            Err(Duration::from_secs(4)),
            "nothing was reserved"
        );
        // Another account and region has its own pace.
        let other = ScopeKey {
            account: Some("210987654321".into()),
            region: "us-east-1".into(),
        };
        assert_eq!(p.reserve(&other, t, HOLD), Ok(Duration::ZERO));
    }
}
