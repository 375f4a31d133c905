//! One step of a schedule: what happens to the simulated cluster at one time.

use crate::time::Time;

/// One step of a schedule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// A node starts (a join, or a restart of a name that ran before, as a new incarnation).
    Start {
        /// Its name.
        node: String,
        /// The state schema its build writes.
        schema: u16,
    },
    /// A restart whose wall clock is behind the previous run's (its incarnation is older).
    RestartBehind {
        /// Its name.
        node: String,
        /// The state schema its build writes.
        schema: u16,
    },
    /// Start `count` new children, each through a random running node.
    Create {
        /// How many.
        count: usize,
    },
    /// Start children through one node.
    CreateAt {
        /// The node asked.
        node: String,
        /// How many.
        count: usize,
    },
    /// Add clients writing to the children.
    Clients(usize),
    /// Clients start no new inputs.
    StopClients,
    /// SIGKILL.
    Crash(String),
    /// A panic in a random running child (not a node fault: its node restarts it in place).
    ChildCrash,
    /// SIGKILL of the next node that accepts an offered child, 0-5 ms after its acceptance
    /// left (while the state it took may still be on its way to its own backup).
    CrashOnAccept,
    /// SIGSTOP for a while, then SIGCONT.
    Pause {
        /// The node.
        node: String,
        /// How long.
        dur: Time,
    },
    /// A freeze: paused, and its clock stops (a suspended virtual machine).
    Freeze {
        /// The node.
        node: String,
        /// How long.
        dur: Time,
    },
    /// Cut the node off from every other (its clients still reach it).
    Partition {
        /// The node.
        node: String,
        /// Only its outgoing direction.
        one_way: bool,
    },
    /// End partitions.
    Heal,
    /// One direction of the session between two nodes stalls for a while (TCP
    /// retransmissions backing off): what is sent meanwhile arrives late, in order; both nodes
    /// run (each end's failure detector may close the session meanwhile).
    Stall {
        /// The sending end.
        from: String,
        /// The receiving end.
        to: String,
        /// How long.
        dur: Time,
    },
    /// A drain: SIGTERM (`exit`) or the console's `drain`.
    Drain {
        /// The node.
        node: String,
        /// The node exits when done.
        exit: bool,
    },
    /// Replace the session between two nodes (messages on it are lost).
    Flap {
        /// One end.
        a: String,
        /// The other.
        b: String,
    },
    /// Drains from now on get this deadline.
    DrainDeadline(Time),
    /// Stop `count` started children, each through a random running node (the stop goes to
    /// the owner its registry names).
    Remove {
        /// How many.
        count: usize,
    },
}
