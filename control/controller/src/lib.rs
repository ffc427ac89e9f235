//! `weft-controller`: the ZeroTier One 1.14 compatible network controller core.
//!
//! Sans-IO like `weft-proto`: no sockets, no clock, no threads, no global RNG. Time (ms since the
//! epoch) and randomness are arguments; outputs are queued and drained with
//! [`Controller::poll_output`]. Storage goes through the [`Store`] trait: [`MemoryStore`], and with
//! the default features `sqlite` and `postgres` the `SqliteStore` (a database file) and the
//! `PostgresStore` (several controllers on one PostgreSQL database): the parts that do I/O.
//! `store::open_from_setting` picks one from `settings.controllerDbPath`. What is stored, and
//! for how long, is listed in `DATA.md`.
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
#[cfg(feature = "postgres")]
pub use store::postgres::PostgresStore;
#[cfg(feature = "sqlite")]
pub use store::sqlite::SqliteStore;
pub use store::{
    AuditAction, AuditEntry, Erasure, MemberRecord, MemoryStore, NetworkRecord,
    PhysicalAddressRecord, Saved, Store, StoreError,
};
