//! `weft-wire`: the one implementation of ZeroTier One 1.14 wire formats and crypto.
//!
//! Pure code: no I/O, no clock, no global RNG, no panics on any input. Untrusted bytes enter through
//! checked constructors (`*::new_checked`, `*::decode`, `FromStr`) returning typed errors; after
//! that, accessors never panic. Both planes (control and data) use this crate.
//!
//! Spec references in comments point at `shared/spec/vl1.md` and `vl2.md`.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod address;
pub mod armor;
pub mod compress;
pub mod credential;
pub mod crypto;
pub mod dictionary;
pub mod ethernet;
pub mod fragment;
pub mod fuzzing;
mod hashcash;
pub mod identity;
pub mod inet;
pub mod mac;
pub mod netaddr;
pub mod netconf;
pub mod packet;
pub mod rules;
pub mod signature;
pub mod tcp_tunnel;
pub mod verbs;
pub mod world;

#[cfg(test)]
mod test_vectors;

pub use address::{Address, NetworkId};
pub use armor::{ArmorError, armor, dearmor};
pub use crypto::PeerKey;
pub use identity::{Identity, IdentityError};
pub use inet::InetAddress;
pub use mac::{Mac, MulticastGroup};
pub use packet::{CipherSuite, Packet, PacketError, Verb};
pub use world::{World, WorldError, WorldType};
