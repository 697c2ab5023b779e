//! The per-task pipeline (one attempt: worktree, execute, verify, review, deliver).

pub mod job;
