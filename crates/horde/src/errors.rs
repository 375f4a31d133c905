//! The errors a [`crate::Horde`] handle returns. Each says what happened and what to do.

use std::time::Duration;

use crate::protocol::{MemberStatus, StartRefusal, Unavailable};

/// Why a horde could not start, or did not become ready.
#[derive(Debug, thiserror::Error)]
pub enum HordeError {
    /// The member actor did not start.
    #[error("cannot start the horde member: {0}")]
    Start(String),
    /// [`crate::Horde::wait_ready`] ran out of time.
    #[error(
        "{node} is not ready after {waited:?}: {alive} of {want} members alive, this member {status}, quorum lease held: {quorum} (are the other nodes started and discovered, with the same cookie?)"
    )]
    NotReady {
        /// This node.
        node: String,
        /// How long it waited.
        waited: Duration,
        /// Members it waited for.
        want: usize,
        /// Members it saw alive.
        alive: usize,
        /// This member's status.
        status: MemberStatus,
        /// Whether it held its quorum lease.
        quorum: bool,
    },
    /// This node cannot join the cluster it found: a member speaks no protocol version it
    /// speaks. The text names both sides' versions and what to do.
    #[error("{0}")]
    Incompatible(crate::membership::Incompatible),
}

/// Why a child could not be started.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StartError {
    /// The name runs already.
    #[error("`{name}` is already started on {owner}")]
    AlreadyStarted {
        /// The name.
        name: String,
        /// Where it runs.
        owner: String,
    },
    /// No member can take children (all joining or draining).
    #[error("no member can take children now (the cluster is starting or draining); retry")]
    NoMember,
    /// Every member that could take it hosts its limit of children already
    /// ([`crate::HordeConfig::max_children`]): retry once games ended, or add a node.
    #[error("every member hosts its limit of {limit} children; retry later or add a node")]
    Full {
        /// The limit per member.
        limit: usize,
    },
    /// The chosen member refused or failed.
    #[error("starting `{name}` failed: {reason}")]
    Failed {
        /// The name.
        name: String,
        /// Why.
        reason: String,
    },
}

impl StartError {
    /// The error for a member's refusal to start `name`.
    pub(crate) fn refused(name: &str, refusal: StartRefusal) -> Self {
        match refusal {
            StartRefusal::AlreadyStarted { owner } => StartError::AlreadyStarted {
                name: name.into(),
                owner,
            },
            StartRefusal::Full { limit } => StartError::Full { limit },
            other => StartError::Failed {
                name: name.into(),
                reason: other.to_string(),
            },
        }
    }
}

/// Why a call did not get an answer.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CallError {
    /// No child of that name in the cluster.
    #[error("no child named `{0}`")]
    NotFound(String),
    /// The child exists but could not be reached; the message may or may not have been applied.
    #[error("child `{name}` is unavailable: {reason}")]
    Unavailable {
        /// The child.
        name: String,
        /// Why.
        reason: String,
    },
    /// No answer in time; the message may or may not have been applied.
    #[error("child `{0}` did not answer in time")]
    Timeout(String),
    /// The node hosting the child is cut off from the majority of the cluster (it holds no
    /// quorum lease): it applies and answers nothing; the majority side restarts the child.
    #[error(
        "child `{0}` is unavailable: its node is cut off from the majority of the cluster (no quorum lease); retry through another node"
    )]
    NoQuorum(String),
}

impl CallError {
    pub(crate) fn unavailable(name: &str, why: impl std::fmt::Display) -> Self {
        CallError::Unavailable {
            name: name.into(),
            reason: why.to_string(),
        }
    }

    pub(crate) fn from_unavailable(name: &str, why: Unavailable) -> Self {
        match why {
            Unavailable::NoLease => CallError::NoQuorum(name.into()),
            other => Self::unavailable(name, other),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_remote_refusal_names_the_owner_once() {
        let err = StartError::refused(
            "g",
            StartRefusal::AlreadyStarted {
                owner: "a@10.0.0.1".into(),
            },
        );
        assert_eq!(err.to_string(), "`g` is already started on a@10.0.0.1");
        let err = StartError::refused("g", StartRefusal::Draining);
        assert_eq!(
            err.to_string(),
            "starting `g` failed: this node is draining; try again"
        );
    }
}
