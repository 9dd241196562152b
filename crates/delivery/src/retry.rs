//! Retry decisions for one target: the retry budget, and when and for how long an operation parks.
//!
//! See [`RetryPolicy`] for the rules. The budget is a token bucket in the style of Finagle's
//! `RetryBudget`: every first attempt deposits `budget_percent / 100` of a token, the balance also
//! refills at `budget_min_per_second`, it holds at most ten seconds' worth of the floor plus the
//! deposits of the last [`DEPOSIT_WINDOW`] first attempts, and every in-memory retry withdraws one.
//! A retry the budget refuses is not dropped: the operation parks (durably) instead.

use std::sync::Mutex;
use std::time::Duration;

use backon::BackoffBuilder;
use chrono::{DateTime, Utc};
use tokio::time::Instant;

use scimflow_config::RetryPolicy;
use scimflow_core::RetryState;

/// How many recent first attempts the budget's deposits may add up from.
pub const DEPOSIT_WINDOW: f64 = 1000.0;

/// A target's retry budget.
#[derive(Debug)]
pub struct RetryBudget {
    ratio: f64,
    floor_per_second: f64,
    cap: f64,
    state: Mutex<(f64, Instant)>,
}

impl RetryBudget {
    pub fn new(policy: &RetryPolicy) -> Self {
        let ratio = policy.budget_percent / 100.0;
        let floor_per_second = policy.budget_min_per_second;
        let cap = (floor_per_second * 10.0 + ratio * DEPOSIT_WINDOW).max(1.0);
        RetryBudget {
            ratio,
            floor_per_second,
            cap,
            // Starts with one second of the floor: a cold target can retry at once.
            state: Mutex::new((floor_per_second.min(cap), Instant::now())),
        }
    }

    fn with<T>(&self, f: impl FnOnce(&mut f64) -> T) -> T {
        let mut st = self
            .state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let now = Instant::now();
        let elapsed = now.duration_since(st.1).as_secs_f64();
        st.0 = (st.0 + elapsed * self.floor_per_second).min(self.cap);
        st.1 = now;
        f(&mut st.0)
    }

    /// A first attempt was made.
    pub fn deposit(&self) {
        let (ratio, cap) = (self.ratio, self.cap);
        self.with(|b| *b = (*b + ratio).min(cap));
    }

    /// Takes one retry from the budget; `false` when none is left.
    pub fn withdraw(&self) -> bool {
        self.with(|b| {
            // (A small tolerance: five deposits of 0.2 make one retry.)
            if *b >= 1.0 - 1e-9 {
                *b = (*b - 1.0).max(0.0);
                true
            } else {
                false
            }
        })
    }

    /// Retries available now (rounded down).
    pub fn available(&self) -> u64 {
        self.with(|b| (*b + 1e-9).floor() as u64)
    }
}

/// The delay before the next try of an operation parked `parks` times before: `park_delay` doubled
/// per earlier park, at most `max_park_delay`, with jitter (backon's: up to as much again, capped),
/// and never less than what the target asked for (`retry_after`).
pub fn park_delay(policy: &RetryPolicy, parks: u32, retry_after: Option<Duration>) -> Duration {
    let backoff = backon::ExponentialBuilder::default()
        .with_min_delay(policy.park_delay)
        .with_max_delay(policy.max_park_delay)
        .with_jitter()
        .without_max_times()
        .build()
        .nth(parks.min(64) as usize)
        .unwrap_or(policy.max_park_delay)
        .min(policy.max_park_delay);
    retry_after.map_or(backoff, |ra| ra.max(backoff))
}

/// The retry state of an operation parked now after `attempts` attempts, for `wait`.
pub fn parked(
    prior: Option<&RetryState>,
    attempts: u32,
    now: DateTime<Utc>,
    first_failure: DateTime<Utc>,
    wait: Duration,
    last_error: String,
) -> RetryState {
    RetryState {
        attempts,
        parks: prior.map_or(0, |p| p.parks) + 1,
        first_failure,
        next_try: now + chrono::Duration::from_std(wait).unwrap_or(chrono::Duration::MAX),
        last_error,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(percent: f64, floor: f64) -> RetryPolicy {
        RetryPolicy {
            budget_percent: percent,
            budget_min_per_second: floor,
            ..RetryPolicy::default()
        }
    }

    #[tokio::test(start_paused = true)]
    async fn the_budget_allows_a_share_of_first_attempts_plus_a_floor() {
        let b = RetryBudget::new(&policy(20.0, 2.0));
        // One second of the floor to start with.
        assert!(b.withdraw());
        assert!(b.withdraw());
        assert!(!b.withdraw(), "exhausted");
        // 10 first attempts at 20% = 2 retries.
        for _ in 0..10 {
            b.deposit();
        }
        assert!(b.withdraw());
        assert!(b.withdraw());
        assert!(!b.withdraw(), "exhausted again");
        // The floor refills with time: 2/s.
        tokio::time::advance(Duration::from_millis(1500)).await;
        assert_eq!(b.available(), 3);
    }

    #[tokio::test(start_paused = true)]
    async fn the_budget_is_capped() {
        let b = RetryBudget::new(&policy(0.0, 1.0));
        tokio::time::advance(Duration::from_secs(3600)).await;
        assert_eq!(b.available(), 10, "ten seconds of the floor at most");
        let none = RetryBudget::new(&policy(0.0, 0.0));
        assert!(!none.withdraw(), "a zero budget never retries in memory");
    }

    #[test]
    fn the_parking_delay_doubles_up_to_the_maximum_and_honours_retry_after() {
        let p = RetryPolicy {
            park_delay: Duration::from_secs(30),
            max_park_delay: Duration::from_secs(600),
            ..RetryPolicy::default()
        };
        for _ in 0..50 {
            let first = park_delay(&p, 0, None);
            assert!(first >= Duration::from_secs(30) && first <= Duration::from_secs(60));
            let third = park_delay(&p, 2, None);
            assert!(third >= Duration::from_secs(120) && third <= Duration::from_secs(240));
            assert!(park_delay(&p, 30, None) <= Duration::from_secs(600));
            assert_eq!(
                park_delay(&p, 0, Some(Duration::from_secs(3000))),
                Duration::from_secs(3000)
            );
        }
    }
}
