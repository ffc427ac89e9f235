//! Tables for the engine's integration tests: one peer with its paths, one network whose only
//! member is that peer (credentials pushed).

use std::collections::HashMap;
use std::sync::Arc;

use weft_engine::{BondEntry, MemberEntry, NetworkEntry, PathEntry, PeerEntry, Tables};
use weft_wire::netconf::NetworkConfig;
use weft_wire::packet::CipherSuite;
use weft_wire::rules::Rule;
use weft_wire::{Address, NetworkId, PeerKey};

/// `me`'s tables: `peer` on `paths` (the first preferred) with cipher `suite` and an optional
/// bond, and network `nwid` with `rules` and `peer` as a member we pushed credentials to.
pub fn one_peer_tables(
    me: Address,
    peer: Address,
    paths: Vec<PathEntry>,
    suite: CipherSuite,
    bond: Option<BondEntry>,
    nwid: NetworkId,
    rules: Vec<Rule>,
) -> Tables {
    let mut peers = HashMap::new();
    peers.insert(
        peer,
        PeerEntry {
            key: Arc::new(PeerKey::from_bytes(&[0x5a; 48])),
            cipher: suite,
            preferred: paths.first().cloned(),
            paths,
            bond,
        },
    );
    let mut config = NetworkConfig::new(nwid, me);
    config.rules = rules;
    let mut members = HashMap::new();
    members.insert(
        peer,
        MemberEntry {
            pushed: true,
            ..Default::default()
        },
    );
    let mut networks = HashMap::new();
    networks.insert(
        nwid,
        NetworkEntry {
            config: Arc::new(config),
            members,
        },
    );
    Tables {
        own: me,
        relay: false,
        peers,
        networks,
        trusted_paths: Vec::new(),
        physical_mtu: 0,
    }
}
