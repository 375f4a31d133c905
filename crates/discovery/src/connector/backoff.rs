//! Reconnect delays: exponential, capped, with jitter so that nodes that lost the same peer do
//! not redial it in lock-step. Pure: the random sample is an argument.

use std::time::Duration;

/// Delay before attempt number `attempt` (0 = the first retry). `jitter` in `[0, 1)` scales the
/// delay into `[delay/2, delay)`.
pub fn delay(attempt: u32, min: Duration, max: Duration, jitter: f64) -> Duration {
    let exp = min.saturating_mul(1u32 << attempt.min(16));
    let capped = exp.min(max).max(min);
    let factor = 0.5 + jitter.clamp(0.0, 1.0) / 2.0;
    capped.mul_f64(factor)
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIN: Duration = Duration::from_millis(100);
    const MAX: Duration = Duration::from_secs(5);

    #[test]
    fn grows_then_caps() {
        assert_eq!(delay(0, MIN, MAX, 0.999_999).as_millis(), 99);
        assert_eq!(delay(3, MIN, MAX, 0.0), Duration::from_millis(400));
        assert_eq!(delay(30, MIN, MAX, 0.0), Duration::from_millis(2500));
        assert!(delay(30, MIN, MAX, 0.99) < MAX);
    }

    #[test]
    fn jitter_stays_within_half_to_full() {
        for i in 0..100 {
            let j = i as f64 / 100.0;
            let d = delay(2, MIN, MAX, j);
            assert!(d >= Duration::from_millis(200) && d < Duration::from_millis(400));
        }
    }
}
