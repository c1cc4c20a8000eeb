//! Thread identity for [`ReentrantMutex`](crate::ReentrantMutex).

use core::num::NonZeroUsize;

/// Identifies the current thread for lock_api's reentrant mutex.
///
/// ```
/// use lockscope::lock_api::GetThreadId;
/// let id = lockscope::RawThreadId::INIT.nonzero_thread_id();
/// assert_eq!(id, lockscope::RawThreadId::INIT.nonzero_thread_id());
/// ```
pub struct RawThreadId;

// SAFETY: `current_thread_id` is the address of a thread-local, which is
// non-zero, stable for the thread's life, and distinct among live threads.
unsafe impl lock_api::GetThreadId for RawThreadId {
    const INIT: RawThreadId = RawThreadId;

    #[inline]
    fn nonzero_thread_id(&self) -> NonZeroUsize {
        crate::sync::current_thread_id()
    }
}
