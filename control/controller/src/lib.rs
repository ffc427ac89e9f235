//! `weft-controller`: the ZeroTier One 1.14 compatible network controller core.
//!
//! Sans-IO like `weft-proto`: no sockets, no clock, no threads, no global RNG. Time (ms since the
//! epoch) and randomness are arguments; outputs are queued and drained with
//! [`Controller::poll_output`]. Storage goes through the [`Store`] trait: [`MemoryStore`], and with
//! the default feature `sqlite` the `SqliteStore` (the one part that does I/O: a database file);
//! PostgreSQL later. What is stored, and for how long, is listed in `DATA.md`.
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

pub use controller::{Admin, Controller, ControllerConfig, ControllerError, ControllerOutput};
#[cfg(feature = "sqlite")]
pub use store::sqlite::SqliteStore;
pub use store::{
    AuditAction, AuditEntry, Erasure, MemberRecord, MemoryStore, NetworkRecord,
    PhysicalAddressRecord, Saved, Store, StoreError,
};
