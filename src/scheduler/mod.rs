//! What `oxi tick` and `oxi saturate` share: the lock, the reaper, ingest, the plan, claims and
//! budget admission, landed-branch settlement, and the tick's pass.

mod claim;
pub mod landed;
pub mod lock;
pub mod pass;
pub mod plan;
pub mod reap;
pub mod saturate;
