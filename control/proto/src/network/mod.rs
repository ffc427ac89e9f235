//! VL2 networks as seen by a member: configuration, status, other members' credentials,
//! multicast membership and bridge routes. The verbs that drive them live in `node/vl2.rs`.
//! spec: vl2.md §14, §16–§18

use std::collections::HashMap;
use std::sync::Arc;

use weft_wire::netconf::NetworkConfig;
use weft_wire::netconf::chunk::ChunkAssembler;
use weft_wire::verbs::vl2::MulticastGroup;
use weft_wire::{Address, NetworkId};

use crate::Timestamp;

pub(crate) mod membership;
pub(crate) mod multicast;

use membership::Membership;
use multicast::MulticastState;

/// Config request period once configured. spec: vl2.md §18.1
pub(crate) const CONFIG_REFRESH_MS: i64 = 60_000;
/// Config request period while unconfigured or failing (the network tick).
pub(crate) const NETWORK_TICK_MS: i64 = 5_000;
/// Bridge route table bound (far below 1.14's; weft-specific memory bound).
const MAX_BRIDGE_ROUTES: usize = 65_536;

/// A network's status, as the API shows it. spec: vl2.md §14
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum NetworkStatus {
    /// No config yet and no failure.
    RequestingConfiguration,
    /// Configured.
    Ok,
    /// The controller refused us.
    AccessDenied,
    /// The controller does not know the network (or is not a controller).
    NotFound,
    /// The virtual port could not be created (set by the driver).
    PortError,
    /// Never set by 1.14.
    ClientTooOld,
    /// The controller asks for SSO authentication.
    AuthenticationRequired,
}

impl NetworkStatus {
    /// The API string.
    pub fn as_str(self) -> &'static str {
        match self {
            NetworkStatus::RequestingConfiguration => "REQUESTING_CONFIGURATION",
            NetworkStatus::Ok => "OK",
            NetworkStatus::AccessDenied => "ACCESS_DENIED",
            NetworkStatus::NotFound => "NOT_FOUND",
            NetworkStatus::PortError => "PORT_ERROR",
            NetworkStatus::ClientTooOld => "CLIENT_TOO_OLD",
            NetworkStatus::AuthenticationRequired => "AUTHENTICATION_REQUIRED",
        }
    }
}

/// A snapshot of one joined network for the driver and the API.
#[derive(Debug, Clone)]
pub struct NetworkInfo {
    /// The network.
    pub network_id: NetworkId,
    /// Status.
    pub status: NetworkStatus,
    /// The current config, if any.
    pub config: Option<Arc<NetworkConfig>>,
    /// Multicast groups we announce.
    pub multicast_subscriptions: Vec<MulticastGroup>,
    /// SSO URL from an AUTHENTICATION_REQUIRED error.
    pub authentication_url: Option<String>,
    /// Rule-filter outcomes on this network.
    pub filter: FilterCounts,
}

/// Frames the rules accepted or rejected, per direction (`zt_network_packets`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct FilterCounts {
    /// Inbound frames accepted.
    pub rx_accepted: u64,
    /// Inbound frames rejected.
    pub rx_rejected: u64,
    /// Outbound frames accepted.
    pub tx_accepted: u64,
    /// Outbound frames rejected.
    pub tx_rejected: u64,
}

/// One joined network.
#[derive(Debug)]
pub(crate) struct Network {
    pub(crate) id: NetworkId,
    pub(crate) config: Option<Arc<NetworkConfig>>,
    /// The serialized dictionary of the current config (to detect identical configs).
    pub(crate) config_bytes: Vec<u8>,
    /// A failure reported by the controller (cleared by the next accepted config).
    pub(crate) failure: Option<NetworkStatus>,
    pub(crate) port_error: bool,
    pub(crate) authentication_url: Option<String>,
    /// When the current config was accepted.
    pub(crate) last_config: Timestamp,
    pub(crate) last_request: Timestamp,
    pub(crate) last_upstream_likes: Timestamp,
    pub(crate) assembler: ChunkAssembler,
    pub(crate) members: HashMap<Address, Membership>,
    pub(crate) multicast: MulticastState,
    /// Foreign MAC → the active bridge it was last seen behind. spec: vl2.md §17.2
    pub(crate) bridge_routes: HashMap<u64, Address>,
    pub(crate) filter: FilterCounts,
}

impl Network {
    pub(crate) fn new(id: NetworkId) -> Self {
        Network {
            id,
            config: None,
            config_bytes: Vec::new(),
            failure: None,
            port_error: false,
            authentication_url: None,
            last_config: i64::MIN / 2,
            last_request: i64::MIN / 2,
            last_upstream_likes: i64::MIN / 2,
            assembler: ChunkAssembler::new(),
            members: HashMap::new(),
            multicast: MulticastState::default(),
            bridge_routes: HashMap::new(),
            filter: FilterCounts::default(),
        }
    }

    pub(crate) fn status(&self) -> NetworkStatus {
        if self.port_error {
            return NetworkStatus::PortError;
        }
        if let Some(f) = self.failure {
            return f;
        }
        if self.config.is_some() {
            NetworkStatus::Ok
        } else {
            NetworkStatus::RequestingConfiguration
        }
    }

    pub(crate) fn info(&self) -> NetworkInfo {
        NetworkInfo {
            network_id: self.id,
            status: self.status(),
            config: self.config.clone(),
            multicast_subscriptions: self
                .multicast
                .all_groups(self.config.as_ref().is_some_and(|c| c.broadcast_enabled())),
            authentication_url: self.authentication_url.clone(),
            filter: self.filter,
        }
    }

    pub(crate) fn member(&mut self, a: Address) -> &mut Membership {
        self.members.entry(a).or_default()
    }

    /// Learns that `mac` sits behind the active bridge `bridge`.
    pub(crate) fn learn_bridge_route(&mut self, mac: u64, bridge: Address) {
        if self.bridge_routes.len() >= MAX_BRIDGE_ROUTES && !self.bridge_routes.contains_key(&mac) {
            // Drop every route of the bridge owning the most routes. spec: vl2.md §17.2
            let mut counts: HashMap<Address, usize> = HashMap::new();
            for b in self.bridge_routes.values() {
                *counts.entry(*b).or_default() += 1;
            }
            if let Some((worst, _)) = counts.into_iter().max_by_key(|(_, n)| *n) {
                self.bridge_routes.retain(|_, b| *b != worst);
            }
        }
        self.bridge_routes.insert(mac, bridge);
    }
}
