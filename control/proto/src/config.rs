//! Node configuration (what `local.conf`, the planet and moons say).

use weft_wire::World;

pub use weft_wire::inet::TrustedPath;

/// Configuration of a [`crate::Node`].
#[derive(Debug, Clone)]
pub struct NodeConfig {
    /// The planet (required: a node needs roots). Tests use a private planet.
    pub planet: World,
    /// Moons already installed (from `moons.d/`).
    pub moons: Vec<World>,
    /// Moons orbited by seed and not yet received: (world id, seed address).
    pub moon_seeds: Vec<(u64, weft_wire::Address)>,
    /// Trusted physical paths (cipher 2).
    pub trusted_paths: Vec<TrustedPath>,
    /// Physical MTU (UDP payload bytes) used to fragment outgoing packets.
    pub physical_mtu: usize,
    /// Software version advertised (major, minor, revision).
    pub version: (u8, u8, u16),
    /// This node runs a network controller: NETWORK_CONFIG_REQUESTs become
    /// [`crate::Event::ConfigRequest`] instead of ERROR(UNSUPPORTED_OPERATION).
    pub controller: bool,
    /// The `local.conf` bonding settings (`None`: no bonding). spec: vl1.md §9.1
    pub bonding: Option<crate::bond::BondingConfig>,
}

impl NodeConfig {
    /// A configuration with the given planet and defaults for everything else.
    pub fn new(planet: World) -> Self {
        NodeConfig {
            planet,
            moons: Vec::new(),
            moon_seeds: Vec::new(),
            trusted_paths: Vec::new(),
            physical_mtu: weft_wire::packet::DEFAULT_PHYSICAL_MTU,
            version: (1, 14, 1),
            controller: false,
            bonding: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cidr_contains() {
        let t = TrustedPath {
            network: "10.1.0.0".parse().unwrap(),
            prefix: 16,
            id: 1,
        };
        assert!(t.contains("10.1.200.3".parse().unwrap()));
        assert!(!t.contains("10.2.0.1".parse().unwrap()));
        assert!(!t.contains("::1".parse().unwrap()));
        let all = TrustedPath {
            network: "0.0.0.0".parse().unwrap(),
            prefix: 0,
            id: 1,
        };
        assert!(all.contains("1.2.3.4".parse().unwrap()));
    }
}
