//! What crosses the boundary between the core and its driver.

use std::net::SocketAddr;

use std::sync::Arc;

use weft_wire::netconf::NetworkConfig;
use weft_wire::{Address, Identity, NetworkId};

use crate::NetworkStatus;

/// Milliseconds since the Unix epoch (the driver's clock, or virtual time in simulations). The
/// node tolerates clock jumps in both directions but assumes a plausible clock (well inside
/// ±2^62 ms).
pub type Timestamp = i64;

/// A local socket, numbered by the driver (one per bound local address and port).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct LocalSocket(pub u32);

/// A datagram the node wants sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transmit {
    /// The local socket to send from; `None` means "from every bound socket" (probes).
    /// spec: vl1.md §0.1
    pub local: Option<LocalSocket>,
    /// Destination.
    pub to: SocketAddr,
    /// The UDP payload.
    pub data: Vec<u8>,
    /// IP TTL to use for this datagram only (the TTL-2 hole-punching junk), or the default.
    pub ttl: Option<u8>,
}

/// Something the driver should know about.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Event {
    /// Online status changed (something heard from an upstream within 500 s, or we are one).
    Online(bool),
    /// A peer was created (learned from HELLO, OK(WHOIS) or the peer cache).
    PeerAdded {
        /// The peer.
        identity: Identity,
    },
    /// A peer's set of direct paths changed (learned, expired or reset).
    PathsChanged {
        /// The peer.
        address: Address,
    },
    /// A newer planet was accepted; persist these bytes as `<home>/planet`.
    PlanetUpdated {
        /// Serialized world.
        bytes: Vec<u8>,
    },
    /// A moon was installed or updated; persist as `<home>/moons.d/<16 hex id>.moon`.
    MoonUpdated {
        /// Moon world id.
        id: u64,
        /// Serialized world.
        bytes: Vec<u8>,
    },
    /// A USER_MESSAGE arrived.
    UserMessage {
        /// Sender.
        from: Address,
        /// Message type id.
        type_id: u64,
        /// Data.
        data: Vec<u8>,
    },
    /// An upstream reported that another node holds our address with a different key.
    IdentityCollision {
        /// The upstream that reported it.
        reported_by: Address,
    },
    /// A peer left memory (idle for 500 s); persist this record as
    /// `<home>/peers.d/<10 hex address>.peer`.
    PeerEvicted {
        /// The peer.
        address: Address,
        /// Serialized peer-cache record (see [`crate::peer_cache`]).
        record: Vec<u8>,
    },
    /// A member asks for a network config (this node runs a controller, or the request is our
    /// own for a network we control). Answer with [`crate::Node::send_network_config`] or
    /// [`crate::Node::send_network_config_error`]; `packet_id` is `u64::MAX` for our own request.
    ConfigRequest {
        /// The network.
        network_id: NetworkId,
        /// The requester's identity.
        requester: Identity,
        /// The request's packet id (the in-re id of the answer).
        packet_id: u64,
        /// The metadata dictionary.
        metadata: Vec<u8>,
        /// Physical source if the request came directly.
        physical: Option<SocketAddr>,
    },
    /// A new network config was accepted: apply it to the port (MTU, addresses, routes) and,
    /// when `dictionary` is set, persist it as `networks.d/<nwid>.conf`.
    NetworkConfigured {
        /// The network.
        network_id: NetworkId,
        /// The parsed config.
        config: Arc<NetworkConfig>,
        /// The serialized dictionary to persist (`None` for ad-hoc networks).
        dictionary: Option<Vec<u8>>,
    },
    /// A network's status changed.
    NetworkStatus {
        /// The network.
        network_id: NetworkId,
        /// The new status.
        status: NetworkStatus,
    },
    /// An Ethernet frame to write to the network's local port.
    TapFrame {
        /// The network.
        network_id: NetworkId,
        /// The frame (destination MAC, source MAC, ethertype, payload).
        frame: Vec<u8>,
    },
}
