//! Rejection tickets: turning away an insert without the write lock.
//!
//! On the benchmark streams 19 inserts in 20 are rejected by admission (a
//! new key is rarely more frequent than the warm tier's victim), and a
//! rejection changes nothing in the shard: the key's count goes into the
//! sketch, which is atomic, and the victim stays. Taking the write lock for
//! it costs the lock's acquire and release, the CLOCK hand's walk, and every
//! reader of the shard a wait.
//!
//! A get that misses already holds the shard's read lock. If the shard is
//! full and the entry at the front of the warm queue is unreferenced, the
//! warm hand would pick it as the victim without moving anything, so the
//! get leaves the calling thread a ticket: the shard, the key's hash, the
//! victim's hash and the shard's write version. The insert that usually
//! follows (cache-aside code, [`get_or_insert_with`](super::TwoTierCache::get_or_insert_with))
//! finds the ticket, checks that no write section has run on the shard
//! since, counts the key in the sketch and compares its frequency with the
//! victim's: if the key loses, it is rejected there and then, exactly as the
//! locked path would have rejected it. Otherwise the insert takes the write
//! lock as before (its sketch count already made).
//!
//! Why this is the locked path's decision:
//! * The ticket is only issued when the miss saw no index word with the
//!   key's hash tag, so the shard held no key with that hash; while the
//!   version is unchanged it still holds none. The decision therefore holds
//!   for any key with that hash, and no present key's value is dropped.
//! * An unchanged version means no write section ran, so the warm queue's
//!   front, and so the victim, is the same. (A hit may raise the victim's
//!   reference counter in between, without a version change: the rejection
//!   then reads as if it came just before that hit.)
//! * The hill climber's target is part of the check: a shard that has not
//!   followed the current target (a resize or a sketch ageing owed) gets no
//!   ticket.
//!
//! The lock-free path reads no lock-protected data (the ticket carries what
//! it needs), so a writer racing with it is only a question of order: the
//! rejection is ordered before that writer. A ticket is used once. Tickets
//! live in a thread-local; under shuttle, where tasks share OS-thread
//! locals, one task may use another's ticket, which is still a correct
//! decision for any key of that hash (see above).

use core::cell::Cell;
use core::sync::atomic::{AtomicU64, Ordering};

/// A shard's promise that an insert of `hash` would be rejected unless the
/// key has become more frequent than `victim`.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) struct Ticket {
    /// The shard's process-unique id ([`next_shard_id`]); 0 is no ticket.
    pub(crate) shard: u64,
    pub(crate) hash: u64,
    /// The shard's write version when the ticket was issued.
    pub(crate) version: u64,
    /// The hot-target generation the shard had followed.
    pub(crate) generation: u64,
    /// The hash of the warm tier's next victim.
    pub(crate) victim: u64,
}

impl Ticket {
    const NONE: Ticket = Ticket {
        shard: 0,
        hash: 0,
        version: 0,
        generation: 0,
        victim: 0,
    };
}

thread_local! {
    /// The calling thread's last ticket (one: it is for the next insert).
    static TICKET: Cell<Ticket> = const { Cell::new(Ticket::NONE) };
}

static NEXT_SHARD_ID: AtomicU64 = AtomicU64::new(1);

/// A process-unique shard id (an address could be reused by a later cache).
pub(crate) fn next_shard_id() -> u64 {
    NEXT_SHARD_ID.fetch_add(1, Ordering::Relaxed)
}

/// Leaves `ticket` for the calling thread's next insert.
#[inline]
pub(crate) fn issue(ticket: Ticket) {
    let _ = TICKET.try_with(|t| t.set(ticket));
}

/// The victim's hash, if the calling thread holds a ticket for `hash` in
/// shard `shard` that is still valid at `version` and `generation`. The
/// ticket is used up either way.
#[inline]
pub(crate) fn take(shard: u64, hash: u64, version: u64, generation: u64) -> Option<u64> {
    let t = TICKET.try_with(Cell::get).ok()?;
    if t.shard != shard || t.hash != hash {
        return None;
    }
    let _ = TICKET.try_with(|c| c.set(Ticket::NONE));
    (t.version == version && t.generation == generation).then_some(t.victim)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_ticket_is_used_once_and_only_for_its_shard_hash_and_version() {
        let id = next_shard_id();
        let t = Ticket {
            shard: id,
            hash: 7,
            version: 3,
            generation: 0,
            victim: 9,
        };
        issue(t);
        assert_eq!(take(id + 1, 7, 3, 0), None, "another shard");
        assert_eq!(take(id, 8, 3, 0), None, "another hash");
        assert_eq!(take(id, 7, 3, 0), Some(9));
        assert_eq!(take(id, 7, 3, 0), None, "used up");
        issue(t);
        assert_eq!(take(id, 7, 4, 0), None, "a write section ran since");
        assert_eq!(take(id, 7, 3, 0), None, "a stale ticket is dropped");
        issue(t);
        assert_eq!(take(id, 7, 3, 1), None, "the hot target moved");
    }
}
