//! This process's writers to one ledger file: they take turns, and they share commits.
//!
//! SQLite's write lock is not a queue: a writer that finds it taken sleeps in the busy handler
//! and retries, and whoever polls first when it frees up wins. With many writers in one process
//! (saturate's slots, the recorder renewing leases, the tick) some lose again and again: 32
//! claiming threads saw p50 2 ms but p99 150–300 ms. So every `Ledger` of this process on one
//! file writes through one shared connection, in turns taken in a FIFO queue
//! (`parking_lot::FairMutex`: its unlock hands the lock straight to the longest-waiting thread,
//! so nobody barges in). SQLite's lock is then free unless another *process* holds it (the busy
//! handler still covers that case). Reads never take a turn: WAL readers do not block writers,
//! and each `Ledger` reads through its own connection.
//!
//! Once writers queue, each still paid one synced commit, so 31 commits stood ahead of the last
//! of 32 claimers. Sharing the commit removes that wait without weakening it (group commit, as
//! databases do): a writer whose turn ends while others are queued leaves the transaction open
//! for the next one and waits; the last writer of a run of turns (or the one that finds the run
//! long enough) commits for all of them and wakes them. Each writer's changes are its own
//! savepoint, so a writer whose closure fails rolls back only its own changes. Nobody returns
//! before the commit that holds their changes is synced: durability is exactly that of one
//! commit per write (`synchronous=FULL`), and if the shared commit fails every writer in it
//! gets the error, none of their changes having landed.
//!
//! parking_lot is already compiled in (comfy-table → crossterm), so this adds no crate.

use std::cell::RefCell;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, LazyLock, Weak};
use std::time::{Duration, Instant};

use parking_lot::{Condvar, FairMutex, FairMutexGuard, MappedFairMutexGuard, Mutex};
use rusqlite::Connection;

use super::{BUSY_TIMEOUT, LedgerError, Queries, Result};

/// A shared transaction takes at most this many writers...
const MAX_GROUP: usize = 64;
/// ...and stays open at most this long before the next turn commits it (another process may
/// be waiting for the lock, and the first writer of the group for its commit).
const MAX_GROUP_AGE: Duration = Duration::from_millis(20);
/// `d` in whole microseconds, saturating (no group lives for 584,000 years).
fn duration_us(d: Duration) -> u64 {
    u64::try_from(d.as_micros()).unwrap_or(u64::MAX)
}

/// How often a writer waiting for its group's commit checks that someone will make it.
const RESCUE_INTERVAL: Duration = Duration::from_millis(5);

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
    /// The commit this write shared with other writers of this process failed; none of their
    /// changes landed.
    #[error("the ledger commit this write shared with other writers failed: {0}")]
    GroupFailed(String),
}

/// One group per ledger file, by canonical path. Entries are weak so a file no `Ledger` has
/// open any more does not keep its group (and connection) alive.
static GROUPS: LazyLock<Mutex<HashMap<PathBuf, Weak<WriteGroup>>>> =
    LazyLock::new(|| Mutex::new(HashMap::new()));

thread_local! {
    /// The groups this thread holds a turn in (by address), to refuse nested writes at once.
    static HELD: RefCell<Vec<usize>> = const { RefCell::new(Vec::new()) };
}

/// How a finished group ended, for the writers waiting on it.
#[derive(Debug, Clone)]
enum Outcome {
    Committed,
    Busy,
    Failed(String),
}

/// The transaction a run of turns shares.
#[derive(Debug)]
struct OpenGroup {
    id: u64,
    /// Writers whose changes it holds.
    writers: usize,
    started: Instant,
}

#[derive(Debug, Default)]
struct GroupState {
    open: Option<OpenGroup>,
    next_id: u64,
    /// Groups up to this id have ended (they end in order: one is open at a time).
    ended_through: u64,
    /// Ended groups that did not commit, with how many waiting writers have yet to hear it.
    failures: HashMap<u64, (Outcome, usize)>,
}

/// The writers of this process to one ledger file.
pub(super) struct WriteGroup {
    path: PathBuf,
    /// The shared write connection, opened by the first write (read-only commands never need
    /// one).
    conn: FairMutex<Option<Connection>>,
    /// Threads queued for a turn: a turn ending with others queued leaves the group open.
    queued: AtomicUsize,
    /// `MAX_GROUP_AGE` and `RESCUE_INTERVAL` in microseconds. Tests that hold a group open on
    /// purpose while others queue raise both: on a slow machine the group would otherwise be
    /// committed (by age, or by a rescue while the next writer is not yet parked on the lock)
    /// before the others join it.
    max_group_age_us: AtomicU64,
    rescue_interval_us: AtomicU64,
    state: Mutex<GroupState>,
    ended: Condvar,
}

impl WriteGroup {
    /// The group for the file at `path` (which must exist, so it can be canonicalized: two
    /// spellings of one path, or a symlink, must share one group).
    pub(super) fn for_file(path: &Path) -> Arc<Self> {
        // Canonicalizing can only fail if the file vanished since it was opened; the group is
        // then keyed by the path as given, which at worst leaves that writer to the busy handler.
        let key = std::fs::canonicalize(path).unwrap_or_else(|_| path.to_path_buf());
        let mut groups = GROUPS.lock();
        if let Some(group) = groups.get(&key).and_then(Weak::upgrade) {
            return group;
        }
        groups.retain(|_, group| group.strong_count() > 0);
        let group = Arc::new(WriteGroup {
            path: path.to_path_buf(),
            conn: FairMutex::new(None),
            queued: AtomicUsize::new(0),
            max_group_age_us: AtomicU64::new(duration_us(MAX_GROUP_AGE)),
            rescue_interval_us: AtomicU64::new(duration_us(RESCUE_INTERVAL)),
            state: Mutex::new(GroupState::default()),
            ended: Condvar::new(),
        });
        groups.insert(key, Arc::downgrade(&group));
        group
    }

    /// Waits for this thread's turn (in arrival order). Gives up after `BUSY_TIMEOUT`, like the
    /// busy handler, so a lock-order cycle between two ledger files cannot hang forever. `open`
    /// makes the shared connection if this is the first write.
    fn turn(&self, open: impl FnOnce(&Path) -> Result<Connection>) -> Result<Turn<'_>> {
        let id = self as *const Self as usize;
        if HELD.with_borrow(|held| held.contains(&id)) {
            return Err(TurnError::Nested.into());
        }
        self.queued.fetch_add(1, Ordering::SeqCst);
        let guard = self.conn.try_lock_for(BUSY_TIMEOUT);
        self.queued.fetch_sub(1, Ordering::SeqCst);
        let mut guard = guard.ok_or(TurnError::TimedOut)?;
        if guard.is_none() {
            *guard = Some(open(&self.path)?);
        }
        let guard = FairMutexGuard::try_map(guard, Option::as_mut)
            .map_err(|_| LedgerError::Corrupt("the shared ledger connection vanished".into()))?;
        HELD.with_borrow_mut(|held| held.push(id));
        Ok(Turn { guard, id })
    }

    /// Runs `f` as one atomic write: its changes commit together, alone or with other writers'
    /// (see the module comment), or not at all. `open` makes the shared connection the first
    /// time one is needed.
    pub(super) fn write<T>(
        &self,
        open: impl FnOnce(&Path) -> Result<Connection>,
        f: impl FnOnce(&Queries<'_>) -> Result<T>,
    ) -> Result<T> {
        let turn = self.turn(open)?;
        let group = self.join(turn.conn())?;
        let (result, kept) = {
            if let Err(e) = exec(turn.conn(), SAVEPOINT) {
                // The group may hold other writers' changes, or hold the lock with none: end
                // this turn like any other, or nobody might ever commit or release it.
                self.end_turn(turn, group, false);
                return Err(e.into());
            }
            let conn = turn.conn();
            let mut savepoint = Savepoint::begun(conn);
            let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                f(&Queries::sqlite_conn(conn))
            }));
            match result {
                Ok(Ok(value)) => match savepoint.release() {
                    Ok(()) => (Ok(value), true),
                    // Releasing failed: the write is undone (rolled back to its start).
                    Err(e) => (Err(e), false),
                },
                Ok(Err(e)) => (Err(e), false),
                Err(panic) => {
                    // Undo this writer's changes and hand the group on before unwinding, so
                    // the shared transaction is neither lost nor left open.
                    drop(savepoint);
                    self.end_turn(turn, group, false);
                    std::panic::resume_unwind(panic);
                }
            }
        };
        match self.end_turn(turn, group, kept) {
            Some(Outcome::Committed) | None => result,
            Some(other) => result.and(Err(failure(other))),
        }
    }

    /// Starts a group if none is open; returns the open group's id.
    fn join(&self, conn: &Connection) -> Result<u64> {
        {
            let mut state = self.state.lock();
            if let Some(open) = &state.open {
                if !conn.is_autocommit() {
                    return Ok(open.id);
                }
                // Its transaction is gone (`end_turn` ends a group whose transaction SQLite
                // rolled back, so this is not expected): say so to its writers, start anew.
                let waiting = open.writers;
                Self::finish(
                    &mut state,
                    Outcome::Failed("the shared transaction was lost".to_owned()),
                    waiting,
                );
                drop(state);
                self.ended.notify_all();
            }
        }
        if !conn.is_autocommit() {
            // Left by a ROLLBACK that failed after a failed COMMIT: clear it first, or every
            // BEGIN from now on would fail and the write lock would never be released.
            conn.execute_batch("ROLLBACK")?;
        }
        // Not under `state`: the writers of the group just committed must not wait for another
        // process's lock before they can return. Only the turn holder opens a group, so nobody
        // else can open one meanwhile.
        exec(conn, "BEGIN IMMEDIATE")?;
        let mut state = self.state.lock();
        state.next_id += 1;
        let id = state.next_id;
        state.open = Some(OpenGroup {
            id,
            writers: 0,
            started: Instant::now(),
        });
        Ok(id)
    }

    /// Ends this writer's turn: leaves the group open for the next queued writer, or commits
    /// it. Returns how the group that holds this writer's changes ended (`None` when they were
    /// not kept, so there is nothing to wait for).
    fn end_turn(&self, turn: Turn<'_>, group: u64, kept: bool) -> Option<Outcome> {
        let conn = turn.conn();
        let mut state = self.state.lock();
        let Some(open) = state.open.as_mut().filter(|open| open.id == group) else {
            // Cannot happen: only a turn holder ends a group, and this writer's is open until
            // its turn ends. Said rather than assumed.
            return kept.then(|| Outcome::Failed("lost track of the shared transaction".into()));
        };
        if kept {
            open.writers += 1;
        }
        let writers = open.writers;
        let outcome = if conn.is_autocommit() {
            // SQLite rolled the whole transaction back under an error (a full disk, say): the
            // group is lost, with every write in it.
            Outcome::Failed(
                "SQLite rolled the shared transaction back after an error in one of its writes"
                    .to_owned(),
            )
        } else {
            // An empty group is ended, not passed on: nobody waits for it, and if the writer it
            // was left for gave up, nothing would release SQLite's write lock.
            let pass_on = writers > 0
                && self.queued.load(Ordering::SeqCst) > 0
                && writers < MAX_GROUP
                && duration_us(open.started.elapsed())
                    < self.max_group_age_us.load(Ordering::Relaxed);
            if pass_on {
                drop(state);
                drop(turn);
                return kept.then(|| self.wait_for(group));
            }
            Self::commit(conn, writers)
        };
        // This writer hears the outcome directly; the others wait for it.
        Self::finish(&mut state, outcome.clone(), writers - usize::from(kept));
        drop(state);
        self.ended.notify_all();
        drop(turn);
        kept.then_some(outcome)
    }

    /// Commits the open transaction (or rolls it back when no write in it was kept).
    fn commit(conn: &Connection, writers: usize) -> Outcome {
        if writers == 0 {
            return match conn.execute_batch("ROLLBACK") {
                Ok(()) => Outcome::Committed,
                Err(e) => Outcome::Failed(e.to_string()),
            };
        }
        match exec(conn, "COMMIT") {
            Ok(()) => Outcome::Committed,
            Err(e) => {
                if !conn.is_autocommit() {
                    let _ = conn.execute_batch("ROLLBACK");
                }
                match LedgerError::from(e) {
                    LedgerError::Busy => Outcome::Busy,
                    other => Outcome::Failed(other.to_string()),
                }
            }
        }
    }

    /// Closes the open group with `outcome`; waiting writers learn it from `ended_through` and
    /// `failures`.
    fn finish(state: &mut GroupState, outcome: Outcome, waiting: usize) {
        let Some(open) = state.open.take() else {
            return;
        };
        if !matches!(outcome, Outcome::Committed) && waiting > 0 {
            state.failures.insert(open.id, (outcome, waiting));
        }
        state.ended_through = open.id;
    }

    /// Waits until group `id` has ended, committing it if nobody else will: the writer it was
    /// passed to can have given up (its wait for a turn timed out) before taking it.
    fn wait_for(&self, id: u64) -> Outcome {
        loop {
            let mut state = self.state.lock();
            if state.ended_through >= id {
                return Self::take_outcome(&mut state, id);
            }
            let rescue = Duration::from_micros(self.rescue_interval_us.load(Ordering::Relaxed));
            if !self.ended.wait_for(&mut state, rescue).timed_out() {
                continue;
            }
            drop(state);
            // Nobody took the turn it was left for: take it and commit the group ourselves.
            let Some(guard) = self.conn.try_lock() else {
                continue;
            };
            let Some(conn) = guard.as_ref() else {
                continue;
            };
            let mut state = self.state.lock();
            if let Some(open) = state.open.as_ref().filter(|open| open.id == id) {
                let outcome = Self::commit(conn, open.writers);
                let writers = open.writers;
                // Every writer of the group is waiting, this one included.
                Self::finish(&mut state, outcome, writers);
                drop(state);
                drop(guard);
                self.ended.notify_all();
                continue;
            }
        }
    }

    /// How group `id` ended, for one of its waiting writers.
    fn take_outcome(state: &mut GroupState, id: u64) -> Outcome {
        let Some((outcome, waiting)) = state.failures.get_mut(&id) else {
            return Outcome::Committed;
        };
        let outcome = outcome.clone();
        *waiting -= 1;
        if *waiting == 0 {
            state.failures.remove(&id);
        }
        outcome
    }
}

fn failure(outcome: Outcome) -> LedgerError {
    match outcome {
        Outcome::Committed => unreachable!("not a failure"),
        Outcome::Busy => LedgerError::Busy,
        Outcome::Failed(why) => TurnError::GroupFailed(why).into(),
    }
}

/// A writer's turn on the shared connection; the next writer in line goes when it is dropped.
struct Turn<'g> {
    guard: MappedFairMutexGuard<'g, Connection>,
    id: usize,
}

impl Turn<'_> {
    fn conn(&self) -> &Connection {
        &self.guard
    }
}

impl Drop for Turn<'_> {
    fn drop(&mut self) {
        HELD.with_borrow_mut(|held| held.retain(|&h| h != self.id));
    }
}

const SAVEPOINT: &str = "SAVEPOINT oxi_write";

/// Runs one of the statements every write runs (begin, savepoint, release, commit) from the
/// statement cache: parsing them anew each time was a measurable part of a claim.
fn exec(conn: &Connection, sql: &str) -> rusqlite::Result<()> {
    conn.prepare_cached(sql)?.execute([]).map(|_| ())
}

/// One writer's changes inside the shared transaction. Dropped without `release` (the
/// closure panicked), its changes are rolled back.
struct Savepoint<'c> {
    conn: &'c Connection,
    open: bool,
}

impl<'c> Savepoint<'c> {
    /// After `SAVEPOINT` succeeded on `conn`.
    fn begun(conn: &'c Connection) -> Self {
        Savepoint { conn, open: true }
    }

    /// Keeps the changes in the transaction. An error when SQLite rolled the whole transaction
    /// back during the write (a closure that swallowed the error that caused it): its changes
    /// are lost, so it must not report success.
    fn release(&mut self) -> Result<()> {
        if self.conn.is_autocommit() {
            self.open = false;
            return Err(TurnError::GroupFailed(
                "SQLite rolled the transaction back during this write (an error inside it was not passed on)"
                    .to_owned(),
            )
            .into());
        }
        exec(self.conn, "RELEASE oxi_write")?;
        self.open = false;
        Ok(())
    }

    fn roll_back(&mut self) {
        if self.open
            && !self.conn.is_autocommit()
            && self
                .conn
                .execute_batch("ROLLBACK TO oxi_write; RELEASE oxi_write")
                .is_err()
        {
            // This writer's changes cannot be undone alone: undo the whole group (its end
            // sees no transaction and fails every writer in it) rather than commit them.
            let _ = self.conn.execute_batch("ROLLBACK");
        }
        self.open = false;
    }
}

impl Drop for Savepoint<'_> {
    fn drop(&mut self) {
        self.roll_back();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ledger::Ledger;

    type Write = Box<dyn FnOnce(&Queries<'_>) -> Result<()> + Send>;

    fn ledger_with_table(dir: &Path) -> Ledger {
        let path = dir.join("ledger.db");
        let mut ledger = Ledger::open(&path).unwrap();
        // A parent/child pair whose foreign key is checked only at COMMIT, to make a shared
        // commit fail on purpose.
        ledger
            .raw_connection()
            .execute_batch(
                "CREATE TABLE parent (id INTEGER PRIMARY KEY);
                 CREATE TABLE child (id INTEGER PRIMARY KEY, parent INTEGER
                     REFERENCES parent(id) DEFERRABLE INITIALLY DEFERRED);
                 INSERT INTO parent VALUES (1);",
            )
            .unwrap();
        ledger
    }

    fn insert_child(q: &Queries<'_>, id: i64, parent: i64) -> Result<()> {
        q.sqlite()
            .unwrap()
            .execute("INSERT INTO child VALUES (?1, ?2)", [id, parent])?;
        Ok(())
    }

    fn children(ledger: &Ledger) -> Vec<i64> {
        let mut stmt = ledger
            .read()
            .sqlite()
            .unwrap()
            .prepare("SELECT id FROM child ORDER BY id")
            .unwrap();
        stmt.query_map([], |r| r.get(0))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap()
    }

    /// Runs `first` in a write that holds its turn until `queued` more writers wait behind it,
    /// then runs `others` (one thread each, started in order): they share `first`'s group.
    fn grouped(
        dir: &Path,
        first: impl FnOnce(&Queries<'_>) -> Result<()> + Send,
        others: Vec<Write>,
    ) -> (Result<()>, Vec<Result<()>>) {
        let path = dir.join("ledger.db");
        let group = Arc::clone(Ledger::open(&path).unwrap().write_group().unwrap());
        // The first writer's group must still be open when the others join, however long the
        // machine takes to start their threads: that is what these tests are about.
        for knob in [&group.max_group_age_us, &group.rescue_interval_us] {
            knob.store(duration_us(Duration::from_secs(60)), Ordering::Relaxed);
        }
        let queued = others.len();
        std::thread::scope(|s| {
            let first = s.spawn(|| {
                let mut ledger = Ledger::open(&path).unwrap();
                ledger.write(|q| {
                    let deadline = Instant::now() + Duration::from_secs(10);
                    while group.queued.load(Ordering::SeqCst) < queued {
                        assert!(Instant::now() < deadline, "writers never queued");
                        std::thread::sleep(Duration::from_millis(1));
                    }
                    first(q)
                })
            });
            // Let the first writer take its turn before the others queue.
            while group.conn.try_lock().is_some() {
                std::thread::sleep(Duration::from_millis(1));
            }
            let handles: Vec<_> = others
                .into_iter()
                .map(|f| {
                    let path = &path;
                    let handle = s.spawn(move || Ledger::open(path).unwrap().write(f));
                    std::thread::sleep(Duration::from_millis(20));
                    handle
                })
                .collect();
            let first = first.join().unwrap();
            let others = handles
                .into_iter()
                .map(|h| {
                    h.join()
                        .unwrap_or_else(|_| Err(LedgerError::Corrupt("the writer panicked".into())))
                })
                .collect();
            (first, others)
        })
    }

    #[test]
    fn two_spellings_of_one_file_share_a_group() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ledger.db");
        let a = Ledger::open(&path).unwrap();
        let b = Ledger::open(&dir.path().join(".").join("ledger.db")).unwrap();
        let other = Ledger::open(&dir.path().join("other.db")).unwrap();
        let group = |l: &Ledger| Arc::clone(l.write_group().unwrap());
        assert!(Arc::ptr_eq(&group(&a), &group(&b)));
        assert!(!Arc::ptr_eq(&group(&a), &group(&other)));
    }

    #[test]
    fn the_shared_connection_is_opened_by_the_first_write_only() {
        let dir = tempfile::tempdir().unwrap();
        let mut ledger = Ledger::open(&dir.path().join("ledger.db")).unwrap();
        let group = Arc::clone(ledger.write_group().unwrap());
        ledger.read().tasks().unwrap();
        assert!(
            group.conn.lock().is_none(),
            "a read opened a write connection"
        );
        ledger
            .record(
                None,
                None,
                super::super::Event::FollowUp(super::super::events::FollowUp { pr: None }),
            )
            .unwrap();
        assert!(group.conn.lock().is_some());
    }

    #[test]
    fn a_nested_write_is_refused_and_the_turn_is_given_back() {
        let dir = tempfile::tempdir().unwrap();
        let mut outer = ledger_with_table(dir.path());
        let mut inner = Ledger::open(&dir.path().join("ledger.db")).unwrap();
        let nested = outer.write(|q| {
            insert_child(q, 1, 1)?;
            Ok(inner.write(|q| insert_child(q, 2, 1)))
        });
        assert!(matches!(
            nested.unwrap(),
            Err(LedgerError::Turn(TurnError::Nested))
        ));
        // The outer write landed; the turn is free again, in this thread and another.
        inner.write(|q| insert_child(q, 3, 1)).unwrap();
        std::thread::scope(|s| {
            s.spawn(|| outer.write(|q| insert_child(q, 4, 1)).unwrap());
        });
        assert_eq!(children(&inner), vec![1, 3, 4]);
    }

    #[test]
    fn queued_writers_share_one_commit_and_a_failing_one_loses_only_its_own_changes() {
        let dir = tempfile::tempdir().unwrap();
        let ledger = ledger_with_table(dir.path());
        let commits_before: i64 = ledger
            .read()
            .sqlite()
            .unwrap()
            .query_row("PRAGMA data_version", [], |r| r.get(0))
            .unwrap();
        let (first, others) = grouped(
            dir.path(),
            |q| insert_child(q, 1, 1),
            vec![
                Box::new(|q: &Queries<'_>| insert_child(q, 2, 1)),
                Box::new(|q: &Queries<'_>| {
                    insert_child(q, 3, 1)?;
                    Err(LedgerError::Corrupt("this writer changes its mind".into()))
                }),
                Box::new(|q: &Queries<'_>| insert_child(q, 4, 1)),
            ],
        );
        first.unwrap();
        others[0].as_ref().unwrap();
        assert!(matches!(others[1], Err(LedgerError::Corrupt(_))));
        others[2].as_ref().unwrap();
        assert_eq!(children(&ledger), vec![1, 2, 4]);
        // Another connection saw exactly one change to the file: one commit for all of them.
        let commits_after: i64 = ledger
            .read()
            .sqlite()
            .unwrap()
            .query_row("PRAGMA data_version", [], |r| r.get(0))
            .unwrap();
        assert_eq!(commits_after - commits_before, 1);
    }

    #[test]
    fn a_failed_shared_commit_fails_every_writer_in_it_and_lands_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let mut ledger = ledger_with_table(dir.path());
        let (first, others) = grouped(
            dir.path(),
            |q| insert_child(q, 1, 1),
            // No parent 9: the deferred foreign key fails the COMMIT.
            vec![Box::new(|q: &Queries<'_>| insert_child(q, 2, 9))],
        );
        for result in [first, others.into_iter().next().unwrap()] {
            let err = result.unwrap_err();
            assert!(
                matches!(err, LedgerError::Turn(TurnError::GroupFailed(_))),
                "{err:?}"
            );
            assert!(err.to_string().contains("FOREIGN KEY"), "{err}");
        }
        assert!(children(&ledger).is_empty());
        // The group ended cleanly: the next write commits on its own.
        ledger.write(|q| insert_child(q, 5, 1)).unwrap();
        assert_eq!(children(&ledger), vec![5]);
    }

    #[test]
    fn a_write_whose_transaction_sqlite_rolled_back_fails_even_if_its_closure_said_ok() {
        let dir = tempfile::tempdir().unwrap();
        let mut ledger = ledger_with_table(dir.path());
        let result = ledger.write(|q| {
            insert_child(q, 1, 1)?;
            // What SQLite does under some errors (SQLITE_FULL, SQLITE_IOERR, SQLITE_NOMEM in
            // some statements): the whole transaction is rolled back. The closure carries on as
            // if nothing happened, as it must not.
            q.sqlite().unwrap().execute_batch("ROLLBACK").unwrap();
            Ok(())
        });
        let err = result.unwrap_err();
        assert!(
            matches!(err, LedgerError::Turn(TurnError::GroupFailed(_))),
            "{err:?}"
        );
        assert!(children(&ledger).is_empty(), "a lost write landed");
        // The group ended cleanly: the next write commits on its own.
        ledger.write(|q| insert_child(q, 4, 1)).unwrap();
        assert_eq!(children(&ledger), vec![4]);
    }

    #[test]
    fn a_failed_write_never_leaves_an_empty_group_holding_the_lock() {
        let dir = tempfile::tempdir().unwrap();
        let mut ledger = ledger_with_table(dir.path());
        let group = Arc::clone(ledger.write_group().unwrap());
        // A writer counted as queued that gives up before taking its turn (its wait timed out).
        group.queued.fetch_add(1, Ordering::SeqCst);
        let failed = ledger.write(|q| {
            insert_child(q, 1, 1)?;
            Err::<(), _>(LedgerError::Corrupt("changed its mind".into()))
        });
        group.queued.fetch_sub(1, Ordering::SeqCst);
        assert!(failed.is_err());
        // Nobody holds SQLite's write lock: another process could write at once.
        let other = Connection::open(dir.path().join("ledger.db")).unwrap();
        other.execute_batch("BEGIN IMMEDIATE; ROLLBACK").unwrap();
        assert!(group.state.lock().open.is_none());
    }

    #[test]
    fn a_writer_that_panics_loses_its_changes_and_the_group_still_commits() {
        let dir = tempfile::tempdir().unwrap();
        let ledger = ledger_with_table(dir.path());
        let (first, others) = grouped(
            dir.path(),
            |q| insert_child(q, 1, 1),
            vec![
                Box::new(|q: &Queries<'_>| {
                    insert_child(q, 2, 1)?;
                    panic!("a bug in a write closure");
                }),
                Box::new(|q: &Queries<'_>| insert_child(q, 3, 1)),
            ],
        );
        first.unwrap();
        assert!(matches!(&others[0], Err(LedgerError::Corrupt(why)) if why.contains("panicked")));
        others[1].as_ref().unwrap();
        assert_eq!(children(&ledger), vec![1, 3]);
    }
}
