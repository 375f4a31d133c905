//! `local-cluster`'s players and integrity check, and the assertions tests make of them.

use std::time::Duration;

pub use local_cluster::load::*;

/// [`Integrity`] as tests assert it.
pub trait AssertIntegrity {
    /// Panics, showing the whole check, unless [`Integrity::nothing_lost`], every input got
    /// an answer, every game was compared with its model and acknowledged inputs were probed.
    #[track_caller]
    fn assert_nothing_lost(&self);
}

impl AssertIntegrity for Integrity {
    #[track_caller]
    fn assert_nothing_lost(&self) {
        assert!(self.nothing_lost(), "lost, doubled or changed: {self:?}");
        assert_eq!(
            self.inputs_unanswered, 0,
            "an input got no answer through every retry: {self:?}"
        );
        assert_eq!(
            self.games_modelled, self.games,
            "games not compared with their model: {self:?}"
        );
        assert!(
            self.games == 0 || self.inputs_acked_probed > 0,
            "no acknowledged input probed: {self:?}"
        );
    }
}

/// [`Load`] as tests wait for it.
pub trait ExpectPlay {
    /// Waits until `more` inputs beyond those acknowledged now are acknowledged: traffic
    /// before a fault, or play resumed after one (a condition, never a sleep).
    ///
    /// # Panics
    /// When they were not within a (scaled) 30 s: the players are stuck.
    fn expect_play(&self, more: usize) -> impl std::future::Future<Output = ()>;
}

impl ExpectPlay for Load {
    #[track_caller]
    fn expect_play(&self, more: usize) -> impl std::future::Future<Output = ()> {
        let caller = std::panic::Location::caller();
        async move {
            assert!(
                self.wait_for_play(more, crate::wait::scaled(Duration::from_secs(30)))
                    .await,
                "{caller}: the players got no {more} more answers in 30 s ({} so far)",
                self.answered()
            );
        }
    }
}
