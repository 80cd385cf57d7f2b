//! Restart policy as data and pure functions: the delay before a slot's next start, and the
//! crash-loop window. No clocks are read here; callers pass `now`, so tests need no sleeping.

use cts_config::RestartPolicy;
use std::collections::VecDeque;
use std::time::{Duration, Instant};

/// The delay before restarting a slot whose worker just crashed.
///
/// `consecutive` counts this slot's crashes without a stable run in between, this one included.
/// The first crash restarts at once; then the delay doubles from `backoff_initial` up to
/// `backoff_max`, spread by jitter (`jitter` in `[0, 1)`) to ±25% so that slots crashing
/// together do not restart in lock-step. A failing instance retries at the slow rate,
/// `backoff_max`.
pub fn restart_delay(
    policy: &RestartPolicy,
    consecutive: u32,
    failing: bool,
    jitter: f64,
) -> Duration {
    if failing {
        return policy.backoff_max;
    }
    if consecutive <= 1 {
        return Duration::ZERO;
    }
    let doublings = (consecutive - 2).min(32);
    let base = policy
        .backoff_initial
        .checked_mul(1u32 << doublings.min(31))
        .unwrap_or(policy.backoff_max)
        .min(policy.backoff_max);
    base.mul_f64(0.75 + 0.5 * jitter.clamp(0.0, 1.0))
        .min(policy.backoff_max)
}

/// The crashes of an instance within the crash-loop window.
#[derive(Debug, Default)]
pub struct CrashWindow {
    /// Crash times, oldest first, none older than the window.
    times: VecDeque<Instant>,
}

impl CrashWindow {
    /// Records a crash at `now` and returns how many crashes lie within `within` of it.
    pub fn record(&mut self, now: Instant, within: Duration) -> usize {
        self.times.push_back(now);
        while let Some(&t) = self.times.front() {
            if now.saturating_duration_since(t) > within {
                self.times.pop_front();
            } else {
                break;
            }
        }
        self.times.len()
    }

    /// Forgets every crash (an operator started the instance again).
    pub fn clear(&mut self) {
        self.times.clear();
    }

    /// How long ago each crash was, oldest first (for a handover to a new ctsd).
    pub fn ages(&self, now: Instant) -> Vec<Duration> {
        self.times
            .iter()
            .map(|t| now.saturating_duration_since(*t))
            .collect()
    }

    /// The window with crashes `ages` ago, oldest first ([`CrashWindow::ages`]).
    pub fn from_ages(ages: &[Duration], now: Instant) -> Self {
        CrashWindow {
            times: ages
                .iter()
                .map(|a| now.checked_sub(*a).unwrap_or(now))
                .collect(),
        }
    }
}

/// A small xorshift generator for jitter; jitter needs no cryptographic quality and this keeps
/// a dependency out. [`Jitter::fixed`] gives the same value every time, for tests.
#[derive(Debug)]
pub struct Jitter {
    state: u64,
    fixed: Option<f64>,
}

impl Jitter {
    /// Seeded from the clock and pid, so that several ctsd do not share a sequence.
    pub fn new() -> Self {
        let t = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default()
            .as_nanos() as u64;
        Jitter {
            state: (t ^ u64::from(std::process::id()).rotate_left(32)) | 1,
            fixed: None,
        }
    }

    /// Always `value` (0.5 is the midpoint: no spread).
    pub fn fixed(value: f64) -> Self {
        Jitter {
            state: 1,
            fixed: Some(value),
        }
    }

    /// The next value in `[0, 1)`.
    pub fn sample(&mut self) -> f64 {
        if let Some(v) = self.fixed {
            return v;
        }
        let mut x = self.state;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.state = x;
        (x >> 11) as f64 / (1u64 << 53) as f64
    }
}

impl Default for Jitter {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use cts_config::CrashLoop;

    fn policy() -> RestartPolicy {
        RestartPolicy {
            backoff_initial: Duration::from_millis(100),
            backoff_max: Duration::from_secs(30),
            reset_after: Duration::from_secs(10),
            crash_loop: CrashLoop {
                restarts: 5,
                within: Duration::from_secs(60),
            },
        }
    }

    #[test]
    fn delays_double_from_initial_to_max() {
        let p = policy();
        let ms = |n| restart_delay(&p, n, false, 0.5).as_millis();
        // jitter 0.5 is the midpoint: no spread.
        let table = [
            (1, 0),
            (2, 100),
            (3, 200),
            (4, 400),
            (5, 800),
            (10, 25_600),
            (11, 30_000),
            (50, 30_000),
        ];
        for (n, want) in table {
            assert_eq!(ms(n), want, "crash #{n}");
        }
    }

    #[test]
    fn jitter_spreads_within_a_quarter_and_never_exceeds_max() {
        let p = policy();
        assert_eq!(restart_delay(&p, 3, false, 0.0), Duration::from_millis(150));
        assert_eq!(restart_delay(&p, 3, false, 0.999_999).as_millis(), 249);
        assert_eq!(restart_delay(&p, 20, false, 0.999), p.backoff_max);
    }

    #[test]
    fn failing_instances_retry_at_the_slow_rate() {
        let p = policy();
        assert_eq!(restart_delay(&p, 1, true, 0.3), p.backoff_max);
    }

    #[test]
    fn crash_window_forgets_old_crashes() {
        let mut w = CrashWindow::default();
        let t0 = Instant::now();
        let within = Duration::from_secs(60);
        for i in 0..5 {
            assert_eq!(
                w.record(t0 + Duration::from_secs(i), within),
                i as usize + 1
            );
        }
        assert_eq!(w.record(t0 + Duration::from_secs(62), within), 4);
        assert_eq!(w.record(t0 + Duration::from_secs(200), within), 1);
    }

    #[test]
    fn jitter_is_in_unit_interval() {
        let mut j = Jitter::new();
        for _ in 0..10_000 {
            let x = j.sample();
            assert!((0.0..1.0).contains(&x));
        }
    }
}
