//! Locking that survives a panic elsewhere: every critical section in this
//! crate leaves its data consistent at each step, so a mutex poisoned by a
//! panicking thread is still safe to use, and one panic must not stop a
//! server or a picker from serving.

use std::sync::{Mutex, MutexGuard, PoisonError};

/// Locks `m`, poisoned or not.
pub(crate) fn lock<T: ?Sized>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}
