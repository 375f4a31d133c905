//! Waiting for conditions: poll under a deadline, never sleep and hope. [`poll`] is the one
//! polling loop; the harness adds the test form (`eventually`, deadlines stretched by
//! `MINOTAUR_TEST_TIME_SCALE`).

use std::future::Future;
use std::time::Duration;

use tokio::time::Instant;

/// Runs `check` every `every` until it returns `Some`, for at most `timeout` (as given: not
/// scaled); `None` when time ran out. `check` runs at least once.
pub async fn poll<T, F, Fut>(timeout: Duration, every: Duration, mut check: F) -> Option<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let end = Instant::now() + timeout;
    loop {
        if let Some(v) = check().await {
            return Some(v);
        }
        if Instant::now() >= end {
            return None;
        }
        tokio::time::sleep(every).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn poll_returns_the_first_answer_or_none_at_the_deadline() {
        let mut calls = 0;
        let got = poll(Duration::from_secs(1), Duration::from_millis(10), || {
            calls += 1;
            let n = calls;
            async move { (n == 3).then_some(n) }
        })
        .await;
        assert_eq!(got, Some(3));

        let start = Instant::now();
        let never = poll(
            Duration::from_millis(100),
            Duration::from_millis(10),
            || async { None::<()> },
        )
        .await;
        assert_eq!(never, None);
        assert!(start.elapsed() >= Duration::from_millis(100));
    }
}
