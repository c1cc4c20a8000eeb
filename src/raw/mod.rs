//! The raw locks: lock words this crate owns, validates and instruments.

pub(crate) mod condvar;
pub(crate) mod fair;
pub(crate) mod mutex;
pub(crate) mod rwlock;
pub(crate) mod thread_id;
pub(crate) mod violation;
