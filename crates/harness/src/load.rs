//! `local-cluster`'s players and integrity check, and the assertion tests make of it.

pub use local_cluster::load::*;

/// [`Integrity`] as tests assert it.
pub trait AssertIntegrity {
    /// Panics, showing the whole check, unless [`Integrity::nothing_lost`].
    #[track_caller]
    fn assert_nothing_lost(&self);
}

impl AssertIntegrity for Integrity {
    #[track_caller]
    fn assert_nothing_lost(&self) {
        assert_eq!(
            (self.games_lost, self.inputs_lost, self.inputs_duplicated),
            (0, 0, 0),
            "{self:?}"
        );
    }
}
