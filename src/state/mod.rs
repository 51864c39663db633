//! State: the checkpoint journal and the install locks.
//!
//! The journal ([`journal`]) remembers, per host and stage, the digest of the Ops that
//! last ran, whether they succeeded and when. It is kept beside the inventory
//! (`.gpuctl/<cluster>/state.json`) and on each host (`/var/lib/gpuctl/state.json`), so a
//! second workstation with the same inventory resumes where the first stopped. The locks
//! ([`lock`]) make sure only one install runs at a time: one file beside the journal and
//! one on every host ([`remote`]).

pub mod atomic;
pub mod journal;
pub mod lock;
pub mod remote;

pub use journal::{Checkpoint, HostJournal, Journal, StageResult};
pub use lock::{LocalLock, LockInfo};
