//! Turn-taking among this process's writers to one ledger file.
//!
//! SQLite's write lock is not a queue: a writer that finds it taken sleeps in the busy handler
//! and retries, and whoever polls first when it frees up wins. With many writers in one process
//! (saturate's slots, the recorder renewing leases, the tick) some lose again and again: 32
//! claiming threads saw p50 2 ms but p99 150–300 ms. So `Ledger::write` first takes a turn in a
//! FIFO queue shared by every connection of this process to the same file, and only then asks
//! SQLite for the write lock, which is then free unless another *process* holds it (the busy
//! handler still covers that case). Reads never take a turn: WAL readers do not block writers.
//!
//! The queue is a `parking_lot::FairMutex`: its unlock hands the lock straight to the
//! longest-waiting thread, so a thread arriving later cannot barge in between (a plain mutex, or
//! a ticket lock on a `Condvar`, would either allow that or wake every waiter on each commit).
//! parking_lot is already compiled in (comfy-table → crossterm), so this adds no crate.

use std::cell::RefCell;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, LazyLock, Weak};

use parking_lot::{FairMutex, FairMutexGuard, Mutex};

use super::BUSY_TIMEOUT;

/// Why a writer could not get its turn.
#[derive(Debug, thiserror::Error)]
pub enum TurnError {
    /// This thread is already inside a write on this file (a `write` closure that writes through
    /// a second `Ledger`): the inner write would wait for the outer one, which waits for it.
    #[error(
        "a ledger write was started inside another write on the same ledger in the same thread; it could never get the lock"
    )]
    Nested,
    /// Other writers in this process kept the queue for `BUSY_TIMEOUT`.
    #[error("timed out waiting for other writers to this ledger in this process")]
    TimedOut,
}

/// One queue per ledger file, by canonical path. Entries are weak so a file no `Ledger` has
/// open any more does not keep its queue (tests open thousands of temporary ledgers).
static QUEUES: LazyLock<Mutex<HashMap<PathBuf, Weak<FairMutex<()>>>>> =
    LazyLock::new(|| Mutex::new(HashMap::new()));

thread_local! {
    /// The queues this thread holds a turn in (by address), to refuse nested writes at once.
    static HELD: RefCell<Vec<usize>> = const { RefCell::new(Vec::new()) };
}

/// The write queue of one ledger file, held by each `Ledger` open on it.
pub(super) struct WriterQueue {
    queue: Arc<FairMutex<()>>,
}

impl WriterQueue {
    /// The queue for the file at `path` (which must exist, so it can be canonicalized: two
    /// spellings of one path, or a symlink, must share one queue).
    pub(super) fn for_file(path: &Path) -> Self {
        // Canonicalizing can only fail if the file vanished since it was opened; the queue is
        // then keyed by the path as given, which at worst leaves that writer to the busy handler.
        let key = std::fs::canonicalize(path).unwrap_or_else(|_| path.to_path_buf());
        let mut queues = QUEUES.lock();
        if let Some(queue) = queues.get(&key).and_then(Weak::upgrade) {
            return WriterQueue { queue };
        }
        queues.retain(|_, queue| queue.strong_count() > 0);
        let queue = Arc::new(FairMutex::new(()));
        queues.insert(key, Arc::downgrade(&queue));
        WriterQueue { queue }
    }

    /// Waits for this thread's turn (in arrival order) and holds it until the `Turn` is dropped.
    /// Gives up after `BUSY_TIMEOUT`, like the busy handler, so a lock-order cycle between two
    /// ledger files cannot hang forever.
    pub(super) fn turn(&self) -> Result<Turn<'_>, TurnError> {
        let id = Arc::as_ptr(&self.queue) as usize;
        if HELD.with_borrow(|held| held.contains(&id)) {
            return Err(TurnError::Nested);
        }
        let guard = self
            .queue
            .try_lock_for(BUSY_TIMEOUT)
            .ok_or(TurnError::TimedOut)?;
        HELD.with_borrow_mut(|held| held.push(id));
        Ok(Turn { _guard: guard, id })
    }
}

/// A writer's turn; the next writer in line goes when it is dropped.
pub(super) struct Turn<'q> {
    _guard: FairMutexGuard<'q, ()>,
    id: usize,
}

impl Drop for Turn<'_> {
    fn drop(&mut self) {
        HELD.with_borrow_mut(|held| held.retain(|&h| h != self.id));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn two_spellings_of_one_file_share_a_queue() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ledger.db");
        std::fs::write(&path, b"").unwrap();
        let a = WriterQueue::for_file(&path);
        let b = WriterQueue::for_file(&dir.path().join(".").join("ledger.db"));
        assert!(Arc::ptr_eq(&a.queue, &b.queue));
        let other = dir.path().join("other.db");
        std::fs::write(&other, b"").unwrap();
        assert!(!Arc::ptr_eq(&a.queue, &WriterQueue::for_file(&other).queue));
    }

    #[test]
    fn a_nested_turn_is_refused_and_the_turn_is_given_back() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ledger.db");
        std::fs::write(&path, b"").unwrap();
        let (a, b) = (WriterQueue::for_file(&path), WriterQueue::for_file(&path));
        {
            let _turn = a.turn().unwrap();
            assert!(matches!(b.turn(), Err(TurnError::Nested)));
        }
        // Released on drop: both can take it again, and another thread too.
        drop(b.turn().unwrap());
        std::thread::scope(|s| {
            s.spawn(|| drop(a.turn().unwrap()));
        });
    }

    #[test]
    fn turns_go_in_arrival_order() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ledger.db");
        std::fs::write(&path, b"").unwrap();
        let queue = WriterQueue::for_file(&path);
        let order = Mutex::new(Vec::new());
        let first = queue.turn().unwrap();
        std::thread::scope(|s| {
            for i in 0..8 {
                let (queue, order) = (&queue, &order);
                s.spawn(move || {
                    let _turn = queue.turn().unwrap();
                    order.lock().push(i);
                });
                // Give thread i time to join the queue before i + 1 arrives.
                std::thread::sleep(std::time::Duration::from_millis(20));
            }
            drop(first);
        });
        assert_eq!(*order.lock(), (0..8).collect::<Vec<_>>());
    }
}
