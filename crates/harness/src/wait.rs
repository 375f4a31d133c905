//! Waiting for conditions: poll under a deadline, never sleep and hope.
//!
//! Test deadlines stretch with `MINOTAUR_TEST_TIME_SCALE` (slow shared CI machines; `.ci/run`
//! sets 3); what a test asserts never does. [`poll`] (`local-cluster`'s) is the one polling
//! loop; [`eventually`] is its test form, which scales the deadline and fails the test when it
//! passes.

use std::future::Future;
use std::time::Duration;

pub use local_cluster::wait::poll;

/// The variable that stretches test deadlines (a positive number; 1 when unset).
pub const TIME_SCALE_VAR: &str = "MINOTAUR_TEST_TIME_SCALE";

/// How often [`eventually`] checks its condition.
pub const POLL_INTERVAL: Duration = Duration::from_millis(20);

/// The factor [`TIME_SCALE_VAR`] sets in the process environment.
///
/// # Panics
/// When it is set to something other than a positive number: a typo must not pass for 1.
pub fn time_scale() -> f64 {
    match time_scale_in(|k| std::env::var(k).ok()) {
        Ok(scale) => scale,
        Err(bad) => panic!("{TIME_SCALE_VAR} must be a positive number such as 3, not `{bad}`"),
    }
}

/// The factor [`TIME_SCALE_VAR`] sets in the environment `lookup` reads; the bad value when
/// it is not a positive number.
pub fn time_scale_in(lookup: impl Fn(&str) -> Option<String>) -> Result<f64, String> {
    match lookup(TIME_SCALE_VAR) {
        None => Ok(1.0),
        Some(v) => match v.trim().parse::<f64>() {
            Ok(scale) if scale.is_finite() && scale > 0.0 => Ok(scale),
            _ => Err(v),
        },
    }
}

/// `d` stretched by [`time_scale`].
pub fn scaled(d: Duration) -> Duration {
    d.mul_f64(time_scale())
}

/// Runs `check` every [`POLL_INTERVAL`] until it returns `Some`, and returns that.
///
/// # Panics
/// Once `deadline` ([`scaled`]) has passed, naming `what` was awaited.
pub async fn eventually<T, F, Fut>(what: &str, deadline: Duration, check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = scaled(deadline);
    match poll(deadline, POLL_INTERVAL, check).await {
        Some(v) => v,
        None => panic!("timed out after {deadline:?} waiting for: {what}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn scale(vars: &[(&str, &str)]) -> Result<f64, String> {
        let env: HashMap<String, String> = vars
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        time_scale_in(|k| env.get(k).cloned())
    }

    #[test]
    fn the_time_scale_is_one_unless_a_positive_number_is_set() {
        assert_eq!(scale(&[]), Ok(1.0));
        assert_eq!(scale(&[(TIME_SCALE_VAR, "3")]), Ok(3.0));
        assert_eq!(scale(&[(TIME_SCALE_VAR, " 1.5 ")]), Ok(1.5));
        for bad in ["", "three", "0", "-2", "inf", "NaN"] {
            assert_eq!(scale(&[(TIME_SCALE_VAR, bad)]), Err(bad.to_string()));
        }
    }
}
