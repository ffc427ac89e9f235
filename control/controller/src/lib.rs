//! `weft-controller`: the ZeroTier One 1.14 compatible network controller core.
//!
//! Sans-IO like `weft-proto`: no sockets, no clock, no threads, no global RNG. Time (ms since the
//! epoch) and randomness are arguments; outputs are queued and drained with
//! [`Controller::poll_output`]. Storage goes through the [`Store`] trait ([`MemoryStore`] today;
//! SQLite/PostgreSQL later).
//!
//! Spec references point at `shared/spec/controller.md` and `vl2.md`.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod controller;
pub mod ipalloc;
pub mod issue;
pub mod plan;
pub mod rulesc;
pub mod store;

pub use controller::{Controller, ControllerError, ControllerOutput};
pub use store::{MemberRecord, MemoryStore, NetworkRecord, Saved, Store, StoreError};
