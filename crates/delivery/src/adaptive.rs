//! Adaptive concurrency: how many requests a target gets at once, learned from its answers.
//!
//! [`ConcurrencyLimit`] is layer 3 of the per-target stack ([`crate::exec`]): a request holds one of
//! its permits for exactly one HTTP request. With `adaptive_concurrency` off it is a plain fixed
//! limit of the target's `concurrency`. With it on (the default) the limit moves by **AIMD**
//! (additive increase, multiplicative decrease — TCP Reno's congestion control, as in Vector's
//! adaptive request concurrency) between `min` and `concurrency`, starting at `initial`:
//!
//! * **Windows.** Answers are counted in windows of `max(limit, 8)` answers. When the limit is in
//!   use that is about one round trip's worth of requests, so the limit grows by about one per
//!   round trip, like TCP's congestion avoidance. The floor of 8 keeps the latency mean of small
//!   windows from being one or two requests.
//! * **Additive increase.** A window that ends with no congestion signal, and in which the limit
//!   was reached (some request was sent while `limit` requests were in flight), raises the limit by
//!   one, up to `concurrency`. A target that never sees `limit` requests at once keeps its limit:
//!   there is no evidence it could take more.
//! * **Multiplicative decrease.** The limit is multiplied by `decrease_factor` (default 0.5, rounded
//!   down, never below `min`) on an explicit congestion signal: an answer of class `rate_limited`
//!   (429, or a status the connector profile declares as throttling); no answer at all (timeout,
//!   connection failure); 503 or 504. A latency rise (below) is a hint, not a refusal: it lowers
//!   the limit by 10% (× 0.9, at least by one). The limit decreases **at most once per
//!   generation**: a request sent before the last decrease tells about the old limit, so its
//!   signal is ignored — a flight of 429s halves the limit once, not once per request (TCP's
//!   one reduction per window). Answers of an older generation do not count toward windows either.
//! * **Latency rise (EWMA baseline, as Vector's adaptive request concurrency).** The baseline is an
//!   exponentially weighted mean of the window means (each window weighs 0.2). A window whose mean
//!   exceeds `latency_factor` × baseline (default 2.0) *and* the baseline by at least 10 ms (below
//!   that, loopback and LAN jitter would read as congestion) is a latency rise: the target got
//!   suddenly slower, typically because requests queue there. The baseline follows every window,
//!   so a target that slows down for good is absorbed after two or three windows (a few 10% steps,
//!   never a slide to the floor), and a latency that grows slowly with load — a CPU-bound server
//!   whose throughput still rises with concurrency — is not mistaken for congestion. The price:
//!   queueing that builds up slowly is not seen by latency; it shows as timeouts, 503s or 429s
//!   (a minimum-latency baseline as in TCP Vegas would see it, and was measured to throttle a
//!   healthy loopback target to 1–5 requests in flight under CPU contention, docs/performance.md).
//!
//! Acquisition is a tokio [`Semaphore`]: FIFO-fair, and cancel-safe (a dropped `acquire` leaves
//! the queue having taken nothing; a dropped [`Permit`] gives its slot back without a sample).
//! Lowering the limit takes free permits at once and retires the rest as in-flight requests return
//! them (`debt`), so no request is interrupted; raising it cancels debt first, then adds a permit.
//! The limiter never sleeps: a backoff or `Retry-After` wait happens in the executor's retry loop,
//! which holds no permit.

use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use tokio::sync::Semaphore;

use scimflow_config::{AdaptiveConcurrency, TargetConfig};
use scimflow_core::ErrorClass;
use scimflow_telemetry::metrics::{ConcurrencyDecreaseLabels, Metrics, TargetLabel};

/// Answers per window at least (the window is `max(limit, MIN_WINDOW)` answers).
pub const MIN_WINDOW: usize = 8;
/// A window's mean must exceed the baseline by at least this much to count as a latency rise.
pub const MIN_LATENCY_RISE: Duration = Duration::from_millis(10);
/// The weight of each window's mean in the latency baseline (an EWMA).
const BASELINE_ALPHA: f64 = 0.2;
/// A latency rise multiplies the limit by this (a gentler step than an explicit refusal's).
pub const LATENCY_DECREASE: f64 = 0.9;

/// What a request's result says about the target's load.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Feedback {
    /// It answered; the latency is a sample.
    Answered,
    /// It is overloaded or throttling us.
    Congested(Reason),
    /// Nothing was learned (no request went out, e.g. the credential could not be read).
    Unknown,
}

/// Why the limit was lowered (the `reason` label of `scimflow_target_concurrency_decreases_total`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reason {
    /// Class `rate_limited`: 429, or a throttling status of the connector profile.
    RateLimited,
    /// No answer: timeout or connection failure.
    NoResponse,
    /// 503 Service Unavailable or 504 Gateway Timeout.
    Unavailable,
    /// A window's mean latency rose above `latency_factor` × the baseline.
    Latency,
}

impl Reason {
    pub const ALL: [Reason; 4] = [
        Reason::RateLimited,
        Reason::NoResponse,
        Reason::Unavailable,
        Reason::Latency,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Reason::RateLimited => "rate_limited",
            Reason::NoResponse => "no_response",
            Reason::Unavailable => "unavailable",
            Reason::Latency => "latency",
        }
    }
}

impl Feedback {
    /// The feedback of a request that got `status` (`None`: no response) and, when it failed,
    /// an error of class `class`.
    pub fn of(status: Option<u16>, class: Option<ErrorClass>) -> Feedback {
        match (status, class) {
            (_, Some(ErrorClass::RateLimited)) => Feedback::Congested(Reason::RateLimited),
            (Some(503 | 504), _) => Feedback::Congested(Reason::Unavailable),
            (Some(_), _) => Feedback::Answered,
            (None, Some(ErrorClass::Retryable)) => Feedback::Congested(Reason::NoResponse),
            (None, _) => Feedback::Unknown,
        }
    }
}

/// A target's limit on requests in flight.
pub struct ConcurrencyLimit {
    target: String,
    /// The ceiling: the target's `concurrency`.
    max: usize,
    /// `None`: a fixed limit of `max`.
    adaptive: Option<AdaptiveConcurrency>,
    /// Free permits; `available + held == limit + debt` at all times.
    permits: Semaphore,
    state: Mutex<State>,
}

struct State {
    limit: usize,
    in_flight: usize,
    /// Permits to retire when they come back (the limit was lowered below what is in flight).
    debt: usize,
    /// Bumped at every decrease; a permit remembers the generation it was acquired in.
    generation: u64,
    window: Window,
    /// Seconds: the EWMA of window means.
    baseline: Option<f64>,
    metrics: Option<Arc<Metrics>>,
}

#[derive(Debug, Default)]
struct Window {
    answers: usize,
    /// Seconds.
    latency: f64,
    reached_limit: bool,
}

impl std::fmt::Debug for ConcurrencyLimit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let st = self.lock();
        f.debug_struct("ConcurrencyLimit")
            .field("target", &self.target)
            .field("max", &self.max)
            .field("adaptive", &self.adaptive)
            .field("limit", &st.limit)
            .field("in_flight", &st.in_flight)
            .finish_non_exhaustive()
    }
}

impl ConcurrencyLimit {
    /// The limit for `target` (its `concurrency` and `adaptive_concurrency`).
    pub fn for_target(target: &TargetConfig) -> Self {
        Self::new(
            &target.name,
            target.concurrency,
            target.adaptive_concurrency,
        )
    }

    /// A limit of at most `max`, adaptive when `adaptive` is given.
    pub fn new(target: &str, max: usize, adaptive: Option<AdaptiveConcurrency>) -> Self {
        let max = max.max(1);
        let adaptive = adaptive.map(|a| {
            let min = a.min.clamp(1, max);
            AdaptiveConcurrency {
                min,
                initial: a.initial.clamp(min, max),
                ..a
            }
        });
        let limit = adaptive.map_or(max, |a| a.initial);
        ConcurrencyLimit {
            target: target.to_owned(),
            max,
            adaptive,
            permits: Semaphore::new(limit),
            state: Mutex::new(State {
                limit,
                in_flight: 0,
                debt: 0,
                generation: 0,
                window: Window::default(),
                baseline: None,
                metrics: None,
            }),
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Exports the limit as `scimflow_target_concurrency_limit{target}` (set now and at every
    /// change) and its decreases into `metrics` (created at zero).
    pub fn set_metrics(&self, metrics: Arc<Metrics>) {
        let mut st = self.lock();
        if self.adaptive.is_some() {
            for reason in Reason::ALL {
                let _ = metrics
                    .concurrency_decreases
                    .get_or_create(&ConcurrencyDecreaseLabels {
                        target: self.target.clone(),
                        reason: reason.as_str(),
                    });
            }
        }
        st.metrics = Some(metrics);
        self.export(&st);
    }

    fn export(&self, st: &State) {
        if let Some(m) = &st.metrics {
            m.concurrency_limit
                .get_or_create(&TargetLabel {
                    target: self.target.clone(),
                })
                .set(i64::try_from(st.limit).unwrap_or(i64::MAX));
        }
    }

    /// The current limit.
    pub fn limit(&self) -> usize {
        self.lock().limit
    }

    /// Requests holding a permit now.
    pub fn in_flight(&self) -> usize {
        self.lock().in_flight
    }

    /// The ceiling (the target's `concurrency`).
    pub fn max(&self) -> usize {
        self.max
    }

    /// Whether the limit adapts (else it is fixed at [`max`](Self::max)).
    pub fn is_adaptive(&self) -> bool {
        self.adaptive.is_some()
    }

    /// Waits for a permit, in arrival order. Cancel-safe: dropping the future takes nothing.
    pub async fn acquire(&self) -> Permit<'_> {
        self.permits
            .acquire()
            .await
            .expect("the semaphore is never closed")
            .forget();
        // No await from here on: the permit cannot be lost to a cancellation.
        let mut st = self.lock();
        st.in_flight += 1;
        Permit {
            owner: self,
            generation: st.generation,
            reached_limit: st.in_flight >= st.limit,
            open: true,
        }
    }

    /// Gives a permit back (or retires it while the limit is below what is in flight).
    fn release(&self, st: &mut State) {
        st.in_flight = st.in_flight.saturating_sub(1);
        if st.debt > 0 {
            st.debt -= 1;
        } else {
            self.permits.add_permits(1);
        }
    }

    fn learn(
        &self,
        st: &mut State,
        cfg: &AdaptiveConcurrency,
        generation: u64,
        reached_limit: bool,
        latency: Duration,
        feedback: Feedback,
    ) {
        if generation != st.generation {
            // Sent before the last decrease: it reports on the old limit.
            return;
        }
        match feedback {
            Feedback::Unknown => {}
            Feedback::Congested(reason) => self.decrease(st, cfg, reason),
            Feedback::Answered => {
                let w = &mut st.window;
                w.answers += 1;
                w.latency += latency.as_secs_f64();
                w.reached_limit |= reached_limit;
                if w.answers < st.limit.max(MIN_WINDOW) {
                    return;
                }
                let w = std::mem::take(&mut st.window);
                let mean = w.latency / w.answers as f64;
                let baseline = st.baseline.unwrap_or(mean);
                st.baseline = Some(baseline + (mean - baseline) * BASELINE_ALPHA);
                if mean > baseline * cfg.latency_factor
                    && mean - baseline >= MIN_LATENCY_RISE.as_secs_f64()
                {
                    self.decrease(st, cfg, Reason::Latency);
                } else if w.reached_limit && st.limit < self.max {
                    self.increase(st);
                }
            }
        }
    }

    fn increase(&self, st: &mut State) {
        st.limit += 1;
        if st.debt > 0 {
            st.debt -= 1;
        } else {
            self.permits.add_permits(1);
        }
        tracing::trace!(target_name = %self.target, limit = st.limit, "concurrency limit raised");
        self.export(st);
    }

    fn decrease(&self, st: &mut State, cfg: &AdaptiveConcurrency, reason: Reason) {
        st.generation += 1;
        st.window = Window::default();
        let factor = match reason {
            Reason::Latency => LATENCY_DECREASE,
            _ => cfg.decrease_factor,
        };
        let to = ((st.limit as f64 * factor).floor() as usize)
            .min(st.limit.saturating_sub(1))
            .max(cfg.min);
        if to == st.limit {
            return;
        }
        let mut cut = st.limit - to;
        st.limit = to;
        while cut > 0 {
            match self.permits.try_acquire() {
                Ok(p) => {
                    p.forget();
                    cut -= 1;
                }
                Err(_) => break,
            }
        }
        st.debt += cut;
        tracing::debug!(target_name = %self.target, limit = to, reason = reason.as_str(), "concurrency limit lowered");
        self.export(st);
        if let Some(m) = &st.metrics {
            m.concurrency_decreases
                .get_or_create(&ConcurrencyDecreaseLabels {
                    target: self.target.clone(),
                    reason: reason.as_str(),
                })
                .inc();
        }
    }
}

/// One request's slot. Report what came of the request with [`finish`](Self::finish); dropping it
/// unfinished (a cancelled request) gives the slot back without a sample.
#[derive(Debug)]
#[must_use = "a permit is held until it is finished or dropped"]
pub struct Permit<'a> {
    owner: &'a ConcurrencyLimit,
    generation: u64,
    reached_limit: bool,
    open: bool,
}

impl Permit<'_> {
    /// Gives the slot back and lets the limit learn from the request: it took `latency` and
    /// ended as `feedback`.
    pub fn finish(mut self, latency: Duration, feedback: Feedback) {
        self.open = false;
        let owner = self.owner;
        let mut st = owner.lock();
        owner.release(&mut st);
        if let Some(cfg) = &owner.adaptive {
            owner.learn(
                &mut st,
                cfg,
                self.generation,
                self.reached_limit,
                latency,
                feedback,
            );
        }
    }
}

impl Drop for Permit<'_> {
    fn drop(&mut self) {
        if self.open {
            let mut st = self.owner.lock();
            self.owner.release(&mut st);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use std::sync::atomic::{AtomicUsize, Ordering};

    const MS: Duration = Duration::from_millis(1);

    fn cfg(initial: usize, min: usize) -> AdaptiveConcurrency {
        AdaptiveConcurrency {
            initial,
            min,
            decrease_factor: 0.5,
            latency_factor: 2.0,
        }
    }

    /// Runs `n` requests at once (all acquired before any finishes), each answering with
    /// `latency` and `feedback`.
    async fn flight(l: &ConcurrencyLimit, n: usize, latency: Duration, feedback: Feedback) {
        let mut permits = Vec::new();
        for _ in 0..n {
            permits.push(l.acquire().await);
        }
        for p in permits {
            p.finish(latency, feedback);
        }
    }

    /// Fills the limit with one flight per window until `rounds` windows have ended.
    async fn saturated_rounds(l: &ConcurrencyLimit, rounds: usize, latency: Duration) {
        for _ in 0..rounds {
            let limit = l.limit();
            let window = limit.max(MIN_WINDOW);
            let mut done = 0;
            while done < window {
                let n = limit.min(window - done);
                flight(l, n, latency, Feedback::Answered).await;
                done += n;
            }
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_fixed_limit_never_moves() {
        let l = ConcurrencyLimit::new("t", 5, None);
        assert_eq!(l.limit(), 5);
        flight(&l, 5, MS, Feedback::Congested(Reason::RateLimited)).await;
        assert_eq!(l.limit(), 5);
        assert!(!l.is_adaptive());
    }

    #[tokio::test(start_paused = true)]
    async fn increases_by_one_per_window_in_which_the_limit_was_used() {
        let l = ConcurrencyLimit::new("t", 16, Some(cfg(4, 1)));
        saturated_rounds(&l, 1, MS).await;
        assert_eq!(l.limit(), 5);
        saturated_rounds(&l, 3, MS).await;
        assert_eq!(l.limit(), 8);
        // A window is max(limit, 8) answers: at 8, seven answers are not a window yet.
        let mut permits = Vec::new();
        for _ in 0..8 {
            permits.push(l.acquire().await);
        }
        let last = permits.pop().unwrap();
        for p in permits {
            p.finish(MS, Feedback::Answered);
        }
        assert_eq!(l.limit(), 8);
        last.finish(MS, Feedback::Answered);
        assert_eq!(l.limit(), 9);
    }

    #[tokio::test(start_paused = true)]
    async fn does_not_increase_when_the_limit_is_not_used() {
        let l = ConcurrencyLimit::new("t", 16, Some(cfg(4, 1)));
        // One request at a time never reaches a limit of 4.
        for _ in 0..100 {
            flight(&l, 1, MS, Feedback::Answered).await;
        }
        assert_eq!(l.limit(), 4);
    }

    #[tokio::test(start_paused = true)]
    async fn is_capped_at_the_target_concurrency() {
        let l = ConcurrencyLimit::new("t", 6, Some(cfg(4, 1)));
        saturated_rounds(&l, 20, MS).await;
        assert_eq!(l.limit(), 6);
        assert_eq!(l.permits.available_permits(), 6);
    }

    #[tokio::test(start_paused = true)]
    async fn halves_on_a_429_once_per_flight() {
        let l = ConcurrencyLimit::new("t", 64, Some(cfg(32, 1)));
        // 32 requests of the same flight all get 429: one decrease, not 32.
        flight(&l, 32, MS, Feedback::Congested(Reason::RateLimited)).await;
        assert_eq!(l.limit(), 16);
        // The next flight was sent under the new limit: its 429 lowers it again.
        flight(&l, 16, MS, Feedback::Congested(Reason::RateLimited)).await;
        assert_eq!(l.limit(), 8);
        assert_eq!(l.permits.available_permits(), 8);
    }

    #[tokio::test(start_paused = true)]
    async fn decreases_on_no_answer_and_on_503_but_not_on_other_errors() {
        let feedback = Feedback::of;
        assert_eq!(
            feedback(None, Some(ErrorClass::Retryable)),
            Feedback::Congested(Reason::NoResponse)
        );
        assert_eq!(
            feedback(Some(429), Some(ErrorClass::RateLimited)),
            Feedback::Congested(Reason::RateLimited)
        );
        // A profile's throttling 403 is classified rate_limited.
        assert_eq!(
            feedback(Some(403), Some(ErrorClass::RateLimited)),
            Feedback::Congested(Reason::RateLimited)
        );
        assert_eq!(
            feedback(Some(503), Some(ErrorClass::Retryable)),
            Feedback::Congested(Reason::Unavailable)
        );
        assert_eq!(
            feedback(Some(500), Some(ErrorClass::Retryable)),
            Feedback::Answered
        );
        assert_eq!(
            feedback(Some(404), Some(ErrorClass::Permanent)),
            Feedback::Answered
        );
        assert_eq!(feedback(Some(201), None), Feedback::Answered);
        assert_eq!(feedback(None, Some(ErrorClass::Auth)), Feedback::Unknown);

        let l = ConcurrencyLimit::new("t", 16, Some(cfg(16, 1)));
        flight(&l, 4, MS, Feedback::of(None, Some(ErrorClass::Retryable))).await;
        assert_eq!(l.limit(), 8);
        flight(&l, 4, MS, Feedback::of(Some(503), None)).await;
        assert_eq!(l.limit(), 4);
        flight(&l, 4, MS, Feedback::of(Some(500), None)).await;
        flight(&l, 4, MS, Feedback::of(None, Some(ErrorClass::Auth))).await;
        assert_eq!(l.limit(), 4);
    }

    #[tokio::test(start_paused = true)]
    async fn never_goes_below_the_floor() {
        let l = ConcurrencyLimit::new("t", 16, Some(cfg(16, 3)));
        for _ in 0..10 {
            flight(&l, 1, MS, Feedback::Congested(Reason::RateLimited)).await;
        }
        assert_eq!(l.limit(), 3);
        let one = ConcurrencyLimit::new("t", 16, Some(cfg(16, 1)));
        for _ in 0..10 {
            flight(&one, 1, MS, Feedback::Congested(Reason::NoResponse)).await;
        }
        assert_eq!(one.limit(), 1);
        assert_eq!(one.permits.available_permits(), 1);
    }

    #[tokio::test(start_paused = true)]
    async fn decreases_by_a_tenth_on_a_latency_rise_and_recovers() {
        let l = ConcurrencyLimit::new("t", 32, Some(cfg(16, 1)));
        saturated_rounds(&l, 2, 100 * MS).await;
        assert_eq!(l.limit(), 18);
        // Twice as slow plus a little: requests queue at the target.
        saturated_rounds(&l, 1, 210 * MS).await;
        assert_eq!(l.limit(), 16);
        // Fast again: the limit climbs back.
        saturated_rounds(&l, 3, 100 * MS).await;
        assert_eq!(l.limit(), 19);
        // 1.5× is below the factor: no decrease.
        saturated_rounds(&l, 1, 150 * MS).await;
        assert_eq!(l.limit(), 20);
        // A latency step lowers even a small limit by one.
        let small = ConcurrencyLimit::new("t", 32, Some(cfg(4, 1)));
        saturated_rounds(&small, 1, 100 * MS).await;
        saturated_rounds(&small, 1, 300 * MS).await;
        assert_eq!(small.limit(), 4);
    }

    #[tokio::test(start_paused = true)]
    async fn a_latency_that_grows_slowly_with_load_is_not_congestion() {
        // A CPU-bound server: each extra request in flight adds 4% to everyone's latency, and
        // throughput still grows. The baseline follows; the limit reaches the ceiling.
        let l = ConcurrencyLimit::new("t", 64, Some(cfg(4, 1)));
        for _ in 0..80 {
            let latency = Duration::from_secs_f64(0.02 * (1.0 + 0.04 * l.limit() as f64));
            saturated_rounds(&l, 1, latency).await;
        }
        assert_eq!(l.limit(), 64);
    }

    #[tokio::test(start_paused = true)]
    async fn ignores_a_rise_of_a_few_milliseconds() {
        let l = ConcurrencyLimit::new("t", 32, Some(cfg(8, 1)));
        saturated_rounds(&l, 1, Duration::from_micros(500)).await;
        // Ten times the baseline, but only 4.5 ms more: loopback jitter, not queueing.
        saturated_rounds(&l, 1, 5 * MS).await;
        assert_eq!(l.limit(), 10);
    }

    #[tokio::test(start_paused = true)]
    async fn a_target_that_slows_down_for_good_costs_two_small_steps_not_the_floor() {
        let l = ConcurrencyLimit::new("t", 32, Some(cfg(16, 1)));
        saturated_rounds(&l, 1, 50 * MS).await;
        assert_eq!(l.limit(), 17);
        // The target is now three times slower, whatever we send: the baseline catches up
        // after two windows (17 → 15 → 13), then the limit grows again.
        saturated_rounds(&l, 1, 150 * MS).await;
        assert_eq!(l.limit(), 15);
        saturated_rounds(&l, 1, 150 * MS).await;
        assert_eq!(l.limit(), 13);
        saturated_rounds(&l, 4, 150 * MS).await;
        assert_eq!(l.limit(), 17);
    }

    #[tokio::test(start_paused = true)]
    async fn old_answers_do_not_count_after_a_decrease() {
        let l = ConcurrencyLimit::new("t", 32, Some(cfg(16, 1)));
        let old: Vec<_> = {
            let mut v = Vec::new();
            for _ in 0..16 {
                v.push(l.acquire().await);
            }
            v
        };
        // All 16 are out; the first 429 lowers the limit to 8.
        let mut old = old.into_iter();
        old.next()
            .unwrap()
            .finish(MS, Feedback::Congested(Reason::RateLimited));
        assert_eq!(l.limit(), 8);
        // The other 15 were sent under the old limit: neither their successes (a window of
        // 8 would otherwise end) nor their 429s move it.
        for (i, p) in old.enumerate() {
            let f = if i % 2 == 0 {
                Feedback::Answered
            } else {
                Feedback::Congested(Reason::RateLimited)
            };
            p.finish(MS, f);
        }
        assert_eq!(l.limit(), 8);
        assert_eq!(l.in_flight(), 0);
        assert_eq!(l.permits.available_permits(), 8);
    }

    #[tokio::test(start_paused = true)]
    async fn a_lower_limit_takes_effect_as_requests_return_without_interrupting_them() {
        let l = ConcurrencyLimit::new("t", 8, Some(cfg(8, 1)));
        let mut held = Vec::new();
        for _ in 0..8 {
            held.push(l.acquire().await);
        }
        held.pop()
            .unwrap()
            .finish(MS, Feedback::Congested(Reason::RateLimited));
        assert_eq!(l.limit(), 4);
        // 7 in flight, limit 4: three returns retire permits, only the fourth frees one.
        for _ in 0..3 {
            drop(held.pop());
            assert_eq!(l.permits.available_permits(), 0);
        }
        drop(held.pop());
        assert_eq!(l.permits.available_permits(), 1);
        drop(held);
        assert_eq!(l.permits.available_permits(), 4);
        assert_eq!(l.in_flight(), 0);
    }

    #[tokio::test(start_paused = true)]
    async fn waiters_are_served_in_arrival_order() {
        let l = Arc::new(ConcurrencyLimit::new("t", 1, None));
        let first = l.acquire().await;
        let order = Arc::new(Mutex::new(Vec::new()));
        let mut tasks = Vec::new();
        for i in 0..5 {
            let (l, order) = (l.clone(), order.clone());
            tasks.push(tokio::spawn(async move {
                let p = l.acquire().await;
                order.lock().unwrap().push(i);
                tokio::time::sleep(Duration::from_millis(10)).await;
                p.finish(MS, Feedback::Answered);
            }));
            // Let task i queue before task i + 1.
            tokio::task::yield_now().await;
        }
        drop(first);
        for t in tasks {
            t.await.unwrap();
        }
        assert_eq!(*order.lock().unwrap(), vec![0, 1, 2, 3, 4]);
    }

    #[tokio::test(start_paused = true)]
    async fn a_cancelled_wait_takes_nothing_and_a_dropped_permit_is_returned() {
        let l = Arc::new(ConcurrencyLimit::new("t", 2, Some(cfg(2, 1))));
        let a = l.acquire().await;
        let b = l.acquire().await;
        // Waiting with a timeout: cancelled after 1 s, holding nothing.
        let waited = tokio::time::timeout(Duration::from_secs(1), l.acquire()).await;
        assert!(waited.is_err());
        assert_eq!(l.in_flight(), 2);
        // A request cancelled mid-flight (its permit dropped unfinished) frees its slot and
        // teaches the limit nothing.
        drop(a);
        assert_eq!(l.in_flight(), 1);
        assert_eq!(l.limit(), 2);
        let c = tokio::time::timeout(Duration::from_secs(1), l.acquire())
            .await
            .expect("the dropped permit's slot is free");
        b.finish(MS, Feedback::Answered);
        c.finish(MS, Feedback::Answered);
        assert_eq!(l.permits.available_permits(), 2);
        assert_eq!(l.in_flight(), 0);
    }

    #[tokio::test(start_paused = true)]
    async fn waiters_blocked_by_a_decrease_are_released_by_increases() {
        let l = Arc::new(ConcurrencyLimit::new("t", 4, Some(cfg(4, 1))));
        let served = Arc::new(AtomicUsize::new(0));
        // 4 hold the limit and get 429: limit 2.
        flight(&l, 4, MS, Feedback::Congested(Reason::RateLimited)).await;
        assert_eq!(l.limit(), 2);
        let mut tasks = Vec::new();
        for _ in 0..40 {
            let (l, served) = (l.clone(), served.clone());
            tasks.push(tokio::spawn(async move {
                let p = l.acquire().await;
                tokio::time::sleep(Duration::from_millis(100)).await;
                served.fetch_add(1, Ordering::Relaxed);
                p.finish(Duration::from_millis(100), Feedback::Answered);
            }));
        }
        // Never more than the limit in flight while it grows back to 4.
        let mut peak = 0;
        while served.load(Ordering::Relaxed) < 40 {
            let (in_flight, limit) = (l.in_flight(), l.limit());
            assert!(
                in_flight <= limit,
                "{in_flight} in flight over a limit of {limit}"
            );
            peak = peak.max(in_flight);
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        for t in tasks {
            t.await.unwrap();
        }
        assert_eq!(l.limit(), 4);
        assert_eq!(peak, 4);
    }

    #[tokio::test(start_paused = true)]
    async fn exports_the_limit_and_counts_decreases() {
        let l = ConcurrencyLimit::new("zoom", 8, Some(cfg(8, 1)));
        let m = Arc::new(Metrics::new());
        l.set_metrics(m.clone());
        let text = m.encode(|_| {});
        assert!(
            text.contains("scimflow_target_concurrency_limit{target=\"zoom\"} 8"),
            "{text}"
        );
        assert!(
            text.contains(
                "scimflow_target_concurrency_decreases_total{target=\"zoom\",reason=\"latency\"} 0"
            ),
            "{text}"
        );
        flight(&l, 2, MS, Feedback::Congested(Reason::RateLimited)).await;
        let text = m.encode(|_| {});
        assert!(
            text.contains("scimflow_target_concurrency_limit{target=\"zoom\"} 4"),
            "{text}"
        );
        assert!(
            text.contains(
                "scimflow_target_concurrency_decreases_total{target=\"zoom\",reason=\"rate_limited\"} 1"
            ),
            "{text}"
        );
    }
}
