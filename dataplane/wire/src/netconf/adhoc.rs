//! Ad-hoc networks (`ff…` ids): configurations a node builds for itself. spec: vl2.md §1.2

use std::net::Ipv4Addr;

use ipnet::{IpNet, Ipv4Net};

use super::{FLAG_IPV6_NDP_EMULATION, NetworkConfig, NetworkType};
use crate::address::{Address, NetworkId};
use crate::netaddr::sixplane_net;
use crate::rules::{Rule, RuleKind};

/// Credential time max delta of ad-hoc configs (2 h).
const ADHOC_CTMD: i64 = 7_200_000;

/// An ad-hoc id whose port range is empty: the network status becomes NOT_FOUND.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("ad-hoc network {nwid}: last port {last:#06x} is below first port {first:#06x}")]
pub struct AdhocError {
    /// The network.
    pub nwid: NetworkId,
    /// First port (`SSSS`).
    pub first: u16,
    /// Last port (`EEEE`).
    pub last: u16,
}

fn rule(kind: RuleKind) -> Rule {
    Rule::new(kind)
}

fn not(kind: RuleKind) -> Rule {
    Rule {
        not: true,
        ..Rule::new(kind)
    }
}

fn or(kind: RuleKind) -> Rule {
    Rule {
        or: true,
        ..Rule::new(kind)
    }
}

const TCP_SYN: u64 = 0x02;
const TCP_ACK: u64 = 0x10;

impl NetworkConfig {
    /// The self-built config of an ad-hoc network. Form A `ffSSSSEEEE000000`: IPv6-only, ICMPv6
    /// plus UDP/TCP to ports SSSS..EEEE, an error when EEEE < SSSS. Form B `ffAAHHHHHHHHHH01`:
    /// everything allowed, IPv4 `AA.x.y.z/8` from the own address, hub `H` (if non-zero) as a
    /// specialist. Any other id gives `Ok(None)` (no config). spec: vl2.md §1.2
    pub fn adhoc(
        nwid: NetworkId,
        own: Address,
        now: i64,
    ) -> Result<Option<NetworkConfig>, AdhocError> {
        let n = nwid.0;
        if n >> 56 != 0xff {
            return Ok(None);
        }
        let mut c = NetworkConfig::new(nwid, own);
        c.timestamp = now;
        c.credential_time_max_delta = ADHOC_CTMD;
        c.revision = 1;
        c.flags = FLAG_IPV6_NDP_EMULATION;
        c.network_type = NetworkType::Public;
        c.static_ips.push(IpNet::V6(sixplane_net(nwid, own)));
        if n & 0xff_ffff == 0 {
            let first = (n >> 40) as u16;
            let last = (n >> 24) as u16;
            if last < first {
                return Err(AdhocError { nwid, first, last });
            }
            c.multicast_limit = 0;
            c.name = format!("adhoc-{first:04x}-{last:04x}");
            c.rules = vec![
                not(RuleKind::Ethertype(0x86dd)),
                rule(RuleKind::Drop),
                rule(RuleKind::IpProtocol(0x3a)),
                rule(RuleKind::Accept),
                rule(RuleKind::IpProtocol(0x11)),
                or(RuleKind::IpProtocol(0x06)),
                rule(RuleKind::DestPortRange {
                    start: first,
                    end: last,
                }),
                rule(RuleKind::Accept),
                not(RuleKind::Characteristics(TCP_SYN)),
                rule(RuleKind::Accept),
                rule(RuleKind::Characteristics(TCP_SYN)),
                rule(RuleKind::Characteristics(TCP_ACK)),
                rule(RuleKind::Accept),
                rule(RuleKind::Drop),
            ];
            return Ok(Some(c));
        }
        if n & 0xff == 0x01 {
            let aa = (n >> 48) as u8;
            let hub = (n >> 8) & 0xff_ffff_ffff;
            c.multicast_limit = 1024;
            c.name = format!("adhoc-{aa}.0.0.0");
            if hub != 0 {
                let hub = Address::new(hub).expect("40 bits");
                c.add_specialist(hub, 0);
            }
            let a = own.to_bytes();
            let v4 = Ipv4Addr::new(aa, a[2], a[3], a[4]);
            c.static_ips
                .push(IpNet::V4(Ipv4Net::new(v4, 8).expect("8 <= 32")));
            c.rules = vec![rule(RuleKind::Accept)];
            return Ok(Some(c));
        }
        Ok(None)
    }
}

/// Whether `nwid` is ad-hoc (top byte 0xff): no controller is ever contacted.
pub fn is_adhoc(nwid: NetworkId) -> bool {
    nwid.0 >> 56 == 0xff
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rules;

    fn own() -> Address {
        "7c55a8da82".parse().unwrap()
    }

    #[test]
    fn form_a() {
        let nwid: NetworkId = "ff00160016000000".parse().unwrap();
        let c = NetworkConfig::adhoc(nwid, own(), 1234).unwrap().unwrap();
        assert_eq!(c.name, "adhoc-0016-0016");
        assert_eq!(c.static_ips.len(), 1);
        assert_eq!(c.static_ips[0].to_string(), "fce9:16:7c:55a8:da82::1/40");
        assert_eq!(
            (
                c.flags,
                c.mtu,
                c.multicast_limit,
                c.revision,
                c.credential_time_max_delta
            ),
            (0x04, 2800, 0, 1, 7_200_000)
        );
        assert!(c.is_public() && !c.broadcast_enabled() && c.ndp_emulation());
        assert_eq!(c.timestamp, 1234);
        assert_eq!(c.issued_to, own());
        let mut b = Vec::new();
        rules::encode_all(&c.rules, &mut b);
        assert_eq!(
            hex::encode(b),
            "a50286dd0000\
             24013a0100\
             2401116401062804001600160100\
             a9080000000000000002 0100\
             29080000000000000002 29080000000000000010 0100\
             0000"
                .replace(' ', "")
        );
        // the config survives its own dictionary
        let again = NetworkConfig::from_dictionary(&c.to_dictionary()).unwrap();
        assert_eq!(again, c);
        // an empty port range
        let e = NetworkConfig::adhoc("ff00170016000000".parse().unwrap(), own(), 0);
        assert_eq!(
            e,
            Err(AdhocError {
                nwid: "ff00170016000000".parse().unwrap(),
                first: 0x17,
                last: 0x16
            })
        );
        // a full range
        let c = NetworkConfig::adhoc("ff0000ffff000000".parse().unwrap(), own(), 0)
            .unwrap()
            .unwrap();
        assert_eq!(c.name, "adhoc-0000-ffff");
    }

    #[test]
    fn form_b_and_others() {
        let nwid: NetworkId = "ff0a1122334455 01".replace(' ', "").parse().unwrap();
        let c = NetworkConfig::adhoc(nwid, own(), 0).unwrap().unwrap();
        assert_eq!(c.name, "adhoc-10.0.0.0");
        assert_eq!(c.multicast_limit, 1024);
        assert_eq!(c.specialists.len(), 1);
        assert_eq!(c.specialists[0].address.to_string(), "1122334455");
        assert_eq!(c.specialists[0].roles, 0);
        assert!(c.active_bridges().is_empty());
        let ips: Vec<String> = c.static_ips.iter().map(ToString::to_string).collect();
        assert_eq!(ips[1], "10.168.218.130/8");
        assert_eq!(c.rules, vec![Rule::new(RuleKind::Accept)]);
        assert_eq!(
            NetworkConfig::from_dictionary(&c.to_dictionary()).unwrap(),
            c
        );
        // no hub
        let c = NetworkConfig::adhoc("ff0a000000000001".parse().unwrap(), own(), 0)
            .unwrap()
            .unwrap();
        assert!(c.specialists.is_empty());
        // other ids
        for n in ["ff00000000000002", "ff000000000000ff", "7c55a8da82c90312"] {
            assert_eq!(
                NetworkConfig::adhoc(n.parse().unwrap(), own(), 0),
                Ok(None),
                "{n}"
            );
        }
        assert!(is_adhoc(nwid) && !is_adhoc(NetworkId(1)));
    }
}
