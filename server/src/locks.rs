//! Locking a `std::sync::Mutex` without panicking when an earlier holder did.
//!
//! Every mutex in the server guards in-memory bookkeeping (caches, counters, queues, stream
//! positions) changed in short critical sections. A panic inside one would leave at worst a
//! stale entry; treating the lock as poisoned for ever after would instead turn that one
//! panic into a panic of every later request that takes the lock.

use std::sync::{Mutex, MutexGuard, PoisonError};

/// [`Mutex::lock`] that takes over the data of a holder that panicked.
pub trait LockExt<T> {
    fn locked(&self) -> MutexGuard<'_, T>;
}

impl<T> LockExt<T> for Mutex<T> {
    fn locked(&self) -> MutexGuard<'_, T> {
        self.lock().unwrap_or_else(PoisonError::into_inner)
    }
}
