//! The circuit breaker: a target that fails every request is left alone for a while.
//!
//! **Closed** (normal): requests go out; consecutive failures are counted — a request with no
//! response, a timeout or a 5xx counts toward `failures`, a 401 toward `auth_failures`; any other
//! answer (2xx, 404, 409, 400, 429 …) means the target is up and resets both counts. When a count
//! reaches its threshold the breaker **opens**: no request is sent for `open`; callers wait (holding
//! no concurrency permit) instead of hammering a target that is down or refusing our credential.
//! Then it is **half-open**: one request goes out as a probe while the others keep waiting; if it
//! succeeds the breaker closes, if it fails it opens again for twice as long, up to `max_open`.
//!
//! Waiting callers are woken when the state changes. The state is exported (`scimflow_breaker_state`)
//! and shown by `scimflow targets`.

use std::sync::Mutex;
use std::time::Duration;

use scimflow_config::BreakerConfig;
use tokio::sync::Notify;
use tokio::time::Instant;

/// The breaker's state, as exported: 0 closed, 1 half-open, 2 open.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BreakerState {
    Closed,
    HalfOpen,
    Open,
}

impl BreakerState {
    pub fn as_str(self) -> &'static str {
        match self {
            BreakerState::Closed => "closed",
            BreakerState::HalfOpen => "half_open",
            BreakerState::Open => "open",
        }
    }

    pub fn as_gauge(self) -> i64 {
        match self {
            BreakerState::Closed => 0,
            BreakerState::HalfOpen => 1,
            BreakerState::Open => 2,
        }
    }
}

/// What a request's result says about the target.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Signal {
    /// It answered (whatever it answered, except the two below).
    Up,
    /// No response, a timeout, or a 5xx.
    Failure,
    /// 401: our credential is refused.
    AuthFailure,
}

impl Signal {
    /// The signal of a response status (`None`: no response at all).
    pub fn of(status: Option<u16>) -> Signal {
        match status {
            None => Signal::Failure,
            Some(401) => Signal::AuthFailure,
            Some(s) if s >= 500 => Signal::Failure,
            Some(_) => Signal::Up,
        }
    }
}

#[derive(Debug)]
enum Inner {
    Closed {
        failures: u32,
        auth: u32,
    },
    Open {
        until: Instant,
        open_for: Duration,
    },
    /// `probing`: the probe is out; `open_for`: how long the last opening lasted.
    HalfOpen {
        probing: bool,
        open_for: Duration,
    },
}

/// Permission to send one request; report what came of it with [`Breaker::record`].
#[derive(Debug)]
#[must_use]
pub struct Pass {
    probe: bool,
}

/// One target's breaker.
#[derive(Debug)]
pub struct Breaker {
    config: BreakerConfig,
    inner: Mutex<Inner>,
    changed: Notify,
    opened: std::sync::atomic::AtomicU64,
}

impl Breaker {
    pub fn new(config: BreakerConfig) -> Self {
        Breaker {
            config,
            inner: Mutex::new(Inner::Closed {
                failures: 0,
                auth: 0,
            }),
            changed: Notify::new(),
            opened: std::sync::atomic::AtomicU64::new(0),
        }
    }

    /// How long the breaker stays open from now (`None`: not open).
    pub fn open_remaining(&self) -> Option<Duration> {
        match &*self.lock() {
            Inner::Open { until, .. } => Some(until.saturating_duration_since(Instant::now())),
            _ => None,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The current state (an open breaker whose time is up reports half-open).
    pub fn state(&self) -> BreakerState {
        match &*self.lock() {
            Inner::Closed { .. } => BreakerState::Closed,
            Inner::Open { until, .. } if Instant::now() < *until => BreakerState::Open,
            Inner::Open { .. } | Inner::HalfOpen { .. } => BreakerState::HalfOpen,
        }
    }

    /// How many times it opened since the start.
    pub fn times_opened(&self) -> u64 {
        self.opened.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Waits until a request may go out.
    pub async fn pass(&self) -> Pass {
        loop {
            // Register for wake-ups before looking, so a change in between is not missed.
            let notified = self.changed.notified();
            let wait_until = {
                let mut g = self.lock();
                match &mut *g {
                    Inner::Closed { .. } => return Pass { probe: false },
                    Inner::Open { until, open_for } => {
                        if Instant::now() >= *until {
                            *g = Inner::HalfOpen {
                                probing: true,
                                open_for: *open_for,
                            };
                            return Pass { probe: true };
                        }
                        Some(*until)
                    }
                    Inner::HalfOpen { probing, .. } => {
                        if !*probing {
                            *probing = true;
                            return Pass { probe: true };
                        }
                        None
                    }
                }
            };
            match wait_until {
                Some(t) => {
                    tokio::select! {
                        _ = tokio::time::sleep_until(t) => {}
                        _ = notified => {}
                    }
                }
                None => notified.await,
            }
        }
    }

    /// Whether a request holding `pass` may still go out: a probe always, any other request
    /// only while the breaker is closed (it may have opened since the pass was given).
    pub fn still_admits(&self, pass: &Pass) -> bool {
        pass.probe || matches!(&*self.lock(), Inner::Closed { .. })
    }

    /// Records what came of a request sent with `pass`.
    pub fn record(&self, pass: Pass, signal: Signal) {
        let mut g = self.lock();
        let next = match (&*g, signal) {
            (Inner::HalfOpen { open_for, .. }, Signal::Up) if pass.probe => {
                tracing::info!(after = ?open_for, "circuit breaker closed: the probe succeeded");
                Some(Inner::Closed {
                    failures: 0,
                    auth: 0,
                })
            }
            (Inner::HalfOpen { open_for, .. }, _) if pass.probe => {
                let open_for = (*open_for * 2).min(self.config.max_open);
                tracing::warn!(?open_for, "circuit breaker opened again: the probe failed");
                self.opened
                    .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                Some(Inner::Open {
                    until: Instant::now() + open_for,
                    open_for,
                })
            }
            (Inner::Closed { .. }, Signal::Up) => Some(Inner::Closed {
                failures: 0,
                auth: 0,
            }),
            (Inner::Closed { failures, auth }, s) => {
                let (failures, auth) = match s {
                    Signal::Failure => (failures + 1, 0),
                    _ => (0, auth + 1),
                };
                if failures >= self.config.failures || auth >= self.config.auth_failures {
                    let why = if auth > 0 {
                        "consecutive 401s"
                    } else {
                        "consecutive failures"
                    };
                    tracing::warn!(failures, auth, open_for = ?self.config.open, "circuit breaker opened after {why}");
                    self.opened
                        .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    Some(Inner::Open {
                        until: Instant::now() + self.config.open,
                        open_for: self.config.open,
                    })
                } else {
                    Some(Inner::Closed { failures, auth })
                }
            }
            // A request that started before the breaker opened: its result changes nothing now.
            _ => None,
        };
        if let Some(n) = next {
            *g = n;
            drop(g);
            self.changed.notify_waiters();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn breaker() -> Breaker {
        Breaker::new(BreakerConfig {
            failures: 3,
            auth_failures: 2,
            open: Duration::from_secs(10),
            max_open: Duration::from_secs(25),
        })
    }

    #[test]
    fn signals_from_statuses() {
        assert_eq!(Signal::of(None), Signal::Failure);
        assert_eq!(Signal::of(Some(503)), Signal::Failure);
        assert_eq!(Signal::of(Some(401)), Signal::AuthFailure);
        for s in [200, 201, 204, 400, 403, 404, 409, 429] {
            assert_eq!(Signal::of(Some(s)), Signal::Up, "{s}");
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_pass_given_before_the_breaker_opened_no_longer_admits() {
        let b = breaker();
        let early = b.pass().await;
        assert!(b.still_admits(&early));
        for _ in 0..3 {
            let p = b.pass().await;
            b.record(p, Signal::Failure);
        }
        assert_eq!(b.state(), BreakerState::Open);
        assert!(
            !b.still_admits(&early),
            "it waited while the breaker opened"
        );
        let probe = b.pass().await;
        assert!(b.still_admits(&probe), "a probe goes out");
        b.record(probe, Signal::Up);
        assert!(b.still_admits(&b.pass().await));
    }

    #[tokio::test(start_paused = true)]
    async fn opens_after_consecutive_failures_probes_and_closes() {
        let b = breaker();
        for _ in 0..2 {
            let p = b.pass().await;
            b.record(p, Signal::Failure);
        }
        // A success in between resets the count.
        let p = b.pass().await;
        b.record(p, Signal::Up);
        for _ in 0..3 {
            let p = b.pass().await;
            b.record(p, Signal::Failure);
        }
        assert_eq!(b.state(), BreakerState::Open);
        assert_eq!(b.times_opened(), 1);
        // Nothing passes until the open time is over.
        let started = Instant::now();
        let probe = b.pass().await;
        assert_eq!(started.elapsed(), Duration::from_secs(10));
        assert!(probe.probe);
        assert_eq!(b.state(), BreakerState::HalfOpen);
        // While the probe is out, others wait; its success lets them through.
        let waiter = async {
            let p = b.pass().await;
            assert!(!p.probe);
            b.record(p, Signal::Up);
        };
        let prober = async {
            tokio::time::sleep(Duration::from_secs(1)).await;
            b.record(probe, Signal::Up);
        };
        tokio::join!(waiter, prober);
        assert_eq!(b.state(), BreakerState::Closed);
    }

    #[tokio::test(start_paused = true)]
    async fn a_failed_probe_doubles_the_open_time_up_to_the_maximum() {
        let b = breaker();
        for _ in 0..2 {
            let p = b.pass().await;
            b.record(p, Signal::AuthFailure);
        }
        assert_eq!(b.state(), BreakerState::Open, "two 401s open it");
        for want in [10, 20, 25, 25] {
            let started = Instant::now();
            let probe = b.pass().await;
            assert_eq!(started.elapsed(), Duration::from_secs(want));
            b.record(probe, Signal::Failure);
        }
        assert_eq!(
            b.times_opened(),
            5,
            "once by the 401s, then by each failed probe"
        );
    }
}
