//! horde (work in progress).
