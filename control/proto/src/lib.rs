//! `weft-proto`: the sans-IO VL1 protocol core.
//!
//! [`Node`] is a state machine. The driver (the daemon, or a simulation) feeds it received
//! datagrams ([`Node::handle_datagram`]) and the passage of time ([`Node::handle_timeout`]), and
//! drains what it wants done: datagrams to send ([`Node::poll_transmit`]) and events
//! ([`Node::poll_event`]). It owns no socket, reads no clock and draws randomness only from the
//! generator it was seeded with, so whole networks can be simulated deterministically.
//!
//! Spec references point at `shared/spec/vl1.md`.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod bond;
mod config;
mod earth;
mod event;
mod gates;
mod network;
mod node;
mod path;
mod peer;
pub mod peer_cache;

pub use config::{NodeConfig, TrustedPath};
pub use earth::{EARTH_PLANET, earth_planet};
pub use event::{Event, LocalSocket, Timestamp, Transmit};
pub use network::{FilterCounts, NetworkInfo, NetworkStatus};
pub use node::{Node, NodeStats, PathInfo, PeerInfo, PeerRole, SetMtuError};
