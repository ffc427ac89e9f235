//! Managed routes and addresses: derived IPv6 addresses, pool allocation, the route-matching
//! netmask rules and the static-IP order. Pure functions. spec: controller.md §4.5, vl2.md §4
//!
//! Three different route-matching rules are used on purpose (they decide which addresses members
//! get, so they must match the reference exactly):
//! * an explicit assignment takes the **largest** prefix among all routes containing it;
//! * a v6 pool candidate takes the **last** IPv6 route *without via* containing it;
//! * a v4 pool candidate takes the **first** IPv4 route (via or not) whose target address equals
//!   the candidate masked to the route's bits.

use std::collections::BTreeSet;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use ipnet::{IpNet, Ipv4Net, Ipv6Net};
use rand_core::RngCore;
use weft_wire::{Address, NetworkId};

use crate::store::{IpPool, RouteRecord, V4AssignMode, V6AssignMode};

/// Most routes in a config. spec: vl2.md §11 (`RT`)
pub const MAX_ROUTES: usize = 128;
/// Most static IPs in a config. spec: vl2.md §11 (`I`)
pub const MAX_STATIC_IPS: usize = 32;
/// Pool allocation tries at most this many candidates per pool. spec: controller.md §4.5
pub const MAX_POOL_TRIALS: u64 = 1000;
/// Netmask bits of the RFC4193 address. spec: vl2.md §4.1
pub const RFC4193_BITS: u8 = 88;
/// Netmask bits of the 6PLANE address. spec: vl2.md §4.2
pub const SIXPLANE_BITS: u8 = 40;

/// A route as it goes into a config: the target with its netmask bits and a gateway of the same
/// family (flags and metric are always 0 from this controller).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConfigRoute {
    /// Destination network.
    pub target: IpNet,
    /// Gateway, if any (same family as the target).
    pub via: Option<IpAddr>,
}

/// The config routes of a network: each record's target, `via` only when it has the target's
/// family, at most [`MAX_ROUTES`]. spec: controller.md §4.5
pub fn config_routes(records: &[RouteRecord]) -> Vec<ConfigRoute> {
    records
        .iter()
        .take(MAX_ROUTES)
        .map(|r| ConfigRoute {
            target: r.target,
            via: r.via.filter(|v| v.is_ipv4() == r.target.addr().is_ipv4()),
        })
        .collect()
}

// The derived addresses are wire facts (vl2.md §4.1, §4.2): one implementation, in weft-wire.
pub use weft_wire::netaddr::{rfc4193, sixplane};

/// The prefix length an explicitly assigned `ip` is sent with: the largest among the routes
/// (any via) containing it; `None` if no route with a non-zero prefix contains it (such IPs are
/// not sent). spec: controller.md §4.5
pub fn assigned_netmask(routes: &[ConfigRoute], ip: IpAddr) -> Option<u8> {
    routes
        .iter()
        .filter(|r| r.target.contains(&ip))
        .map(|r| r.target.prefix_len())
        .max()
        .filter(|&b| b > 0)
}

/// The prefix length of a v6 pool candidate: that of the **last** IPv6 route without `via`
/// containing it. spec: controller.md §4.5
pub fn v6_pool_netmask(routes: &[ConfigRoute], ip: Ipv6Addr) -> Option<u8> {
    routes
        .iter()
        .rev()
        .find(|r| r.via.is_none() && matches!(r.target, IpNet::V6(t) if t.contains(&ip)))
        .map(|r| r.target.prefix_len())
        .filter(|&b| b > 0)
}

/// The prefix length of a v4 pool candidate: that of the **first** IPv4 route (any via) whose
/// target address equals the candidate masked to the route's bits. spec: controller.md §4.5
pub fn v4_pool_netmask(routes: &[ConfigRoute], ip: Ipv4Addr) -> Option<u8> {
    routes
        .iter()
        .find_map(|r| match r.target {
            IpNet::V4(t) if Ipv4Net::new(ip, t.prefix_len()).ok()?.network() == t.addr() => {
                Some(t.prefix_len())
            }
            _ => None,
        })
        .filter(|&b| b > 0)
}

/// Picks an IPv4 address from the pools for `member` (deterministic: the member address drives
/// the walk). `taken` = every IP any member of the network holds; `own` = the member's list.
/// spec: controller.md §4.5
pub fn allocate_v4(
    pools: &[IpPool],
    routes: &[ConfigRoute],
    member: Address,
    taken: &BTreeSet<IpAddr>,
    own: &[IpAddr],
) -> Option<Ipv4Net> {
    for pool in pools {
        let (IpAddr::V4(s), IpAddr::V4(e)) = (pool.start, pool.end) else {
            continue;
        };
        let (s, e) = (u32::from(s), u32::from(e));
        if e < s || s == 0 {
            continue;
        }
        let len = e - s;
        let start_counter = member.to_u64() & 0xffff_ffff;
        let trials = (u64::from(len) + 1).min(MAX_POOL_TRIALS);
        for counter in start_counter..start_counter + trials {
            // the range end itself is never chosen when len > 0 (modulo len) — quirk kept
            let ip = if len > 0 {
                // counter % len < len ≤ u32::MAX, and s + it ≤ e
                s + (counter % u64::from(len)) as u32
            } else {
                s
            };
            if ip & 0xff == 0xff {
                continue;
            }
            let ip = Ipv4Addr::from(ip);
            let Some(bits) = v4_pool_netmask(routes, ip) else {
                continue;
            };
            let a = IpAddr::V4(ip);
            if taken.contains(&a) || own.contains(&a) {
                continue;
            }
            // bits ≤ 32 from an existing route
            return Ipv4Net::new(ip, bits).ok();
        }
    }
    None
}

fn halves(ip: Ipv6Addr) -> (u64, u64) {
    let v = u128::from(ip);
    ((v >> 64) as u64, v as u64)
}

/// Picks an IPv6 address from the pools for `member`: first the member address added to the
/// pool start when the pool's low half spans at least 40 bits, then random candidates.
/// spec: controller.md §4.5
pub fn allocate_v6(
    pools: &[IpPool],
    routes: &[ConfigRoute],
    member: Address,
    taken: &BTreeSet<IpAddr>,
    own: &[IpAddr],
    rng: &mut impl RngCore,
) -> Option<Ipv6Net> {
    for pool in pools {
        let (IpAddr::V6(s), IpAddr::V6(e)) = (pool.start, pool.end) else {
            continue;
        };
        let ((sh, sl), (eh, el)) = (halves(s), halves(e));
        for trial in 0..MAX_POOL_TRIALS {
            let (h, l) = if trial == 0 && el > sl && el - sl >= 0xff_ffff_ffff {
                (sh, sl.wrapping_add(member.to_u64()))
            } else {
                let h = if eh > sh {
                    sh.wrapping_add(rng.next_u64() % (eh - sh))
                } else {
                    sh
                };
                let l = if el > sl {
                    sl.wrapping_add(rng.next_u64() % (el - sl))
                } else {
                    sl
                };
                (h, l)
            };
            let ip = Ipv6Addr::from((u128::from(h) << 64) | u128::from(l));
            let Some(bits) = v6_pool_netmask(routes, ip) else {
                continue;
            };
            let a = IpAddr::V6(ip);
            if taken.contains(&a) || own.contains(&a) {
                continue;
            }
            return Ipv6Net::new(ip, bits).ok();
        }
    }
    None
}

/// Everything §4.5 needs to know about a network and a member.
#[derive(Debug, Clone, Copy)]
pub struct AssignInput<'a> {
    /// The network.
    pub nwid: NetworkId,
    /// The member.
    pub member: Address,
    /// The network's config routes ([`config_routes`]).
    pub routes: &'a [ConfigRoute],
    /// `ipAssignmentPools`.
    pub pools: &'a [IpPool],
    /// `v4AssignMode`.
    pub v4_mode: V4AssignMode,
    /// `v6AssignMode`.
    pub v6_mode: V6AssignMode,
    /// Member `noAutoAssignIps`.
    pub no_auto_assign: bool,
    /// Member `ipAssignments` as stored.
    pub assigned: &'a [IpAddr],
    /// Every IP held by any member of the network.
    pub taken: &'a BTreeSet<IpAddr>,
}

/// What §4.5 decided.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Assignment {
    /// Static IPs for the config, in the reference order: rfc4193, 6plane, stored assignments,
    /// new v6, new v4 (at most [`MAX_STATIC_IPS`]).
    pub static_ips: Vec<IpNet>,
    /// Addresses newly allocated from pools, to append to the member's `ipAssignments` (v6
    /// first, then v4).
    pub allocated: Vec<IpAddr>,
    /// Whether an rfc4193 or 6plane address was assigned (config flag 0x04, NDP emulation).
    pub ndp_emulation: bool,
}

/// Routes and addresses for one member. spec: controller.md §4.5
pub fn assign(input: &AssignInput<'_>, rng: &mut impl RngCore) -> Assignment {
    let mut out = Assignment::default();
    let auto = !input.no_auto_assign;
    if auto && input.v6_mode.rfc4193 {
        let ip = rfc4193(input.nwid, input.member);
        out.static_ips
            .push(IpNet::V6(Ipv6Net::new(ip, RFC4193_BITS).expect("88 ≤ 128")));
        out.ndp_emulation = true;
    }
    if auto && input.v6_mode.sixplane {
        let ip = sixplane(input.nwid, input.member);
        out.static_ips.push(IpNet::V6(
            Ipv6Net::new(ip, SIXPLANE_BITS).expect("40 ≤ 128"),
        ));
        out.ndp_emulation = true;
    }
    let (mut have_v4, mut have_v6) = (false, false);
    for &ip in input.assigned {
        if let Some(bits) = assigned_netmask(input.routes, ip) {
            // bits come from a route of the same family (it contains ip)
            out.static_ips
                .push(IpNet::new(ip, bits).expect("bits from a same-family route"));
            if ip.is_ipv4() {
                have_v4 = true;
            } else {
                have_v6 = true;
            }
        }
    }
    if auto
        && input.v6_mode.zt
        && !have_v6
        && let Some(n) = allocate_v6(
            input.pools,
            input.routes,
            input.member,
            input.taken,
            input.assigned,
            rng,
        )
    {
        out.allocated.push(IpAddr::V6(n.addr()));
        out.static_ips.push(IpNet::V6(n));
    }
    if auto
        && input.v4_mode.zt
        && !have_v4
        && let Some(n) = allocate_v4(
            input.pools,
            input.routes,
            input.member,
            input.taken,
            input.assigned,
        )
    {
        out.allocated.push(IpAddr::V4(n.addr()));
        out.static_ips.push(IpNet::V4(n));
    }
    out.static_ips.truncate(MAX_STATIC_IPS);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand_chacha::ChaCha8Rng;
    use rand_core::SeedableRng;

    const NWID: NetworkId = NetworkId(0x7c55a8da82c90312);

    fn a(s: &str) -> Address {
        s.parse().unwrap()
    }
    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }
    fn pool(s: &str, e: &str) -> IpPool {
        IpPool {
            start: ip(s),
            end: ip(e),
        }
    }
    fn route(t: &str, via: Option<&str>) -> RouteRecord {
        RouteRecord {
            target: t.parse().unwrap(),
            via: via.map(ip),
        }
    }
    fn rng() -> ChaCha8Rng {
        ChaCha8Rng::seed_from_u64(7)
    }

    /// The verified test network of controller.md §7.2 ("full update").
    fn testnet_routes() -> Vec<ConfigRoute> {
        config_routes(&[
            route("10.147.17.0/24", None),
            route("fd12:3456:789a::/64", None),
            route("192.168.100.0/24", Some("10.147.17.1")),
        ])
    }
    fn testnet_pools() -> Vec<IpPool> {
        vec![
            pool("10.147.17.1", "10.147.17.254"),
            pool("fd12:3456:789a::1", "fd12:3456:789a::ffff:ffff:ffff"),
        ]
    }

    #[test]
    fn derived_v6_addresses_match_verified_examples() {
        // spec: vl2.md §4.1, §4.2
        assert_eq!(
            rfc4193(NWID, a("7c55a8da82")),
            ip("fd7c:55a8:da82:c903:1299:937c:55a8:da82")
        );
        assert_eq!(
            sixplane(NWID, a("7c55a8da82")),
            ip("fcfe:9cab:c87c:55a8:da82::1")
        );
        assert_eq!(
            sixplane(NetworkId(0xff00160016000000), a("7c55a8da82")),
            ip("fce9:16:7c:55a8:da82::1")
        );
        // the COO of vl2.md §11.1 lists these for member 0a33989140
        assert_eq!(
            rfc4193(NWID, a("0a33989140")),
            ip("fd7c:55a8:da82:c903:1299:930a:3398:9140")
        );
        assert_eq!(
            sixplane(NWID, a("0a33989140")),
            ip("fcfe:9cab:c80a:3398:9140::1")
        );
    }

    #[test]
    fn v4_pool_examples() {
        let routes = testnet_routes();
        let pools = testnet_pools();
        let none = BTreeSet::new();
        assert_eq!(
            allocate_v4(&pools, &routes, a("7c55a8da82"), &none, &[]),
            Some("10.147.17.38/24".parse().unwrap())
        );
        assert_eq!(
            allocate_v4(&pools, &routes, a("0a33989140"), &none, &[]),
            Some("10.147.17.209/24".parse().unwrap())
        );
    }

    #[test]
    fn v4_pool_walks_past_taken_and_255() {
        let routes = config_routes(&[route("10.0.0.0/8", None)]);
        // counter mod len lands on .255 first: 10.0.0.255 is skipped, then .0 of the next /24
        // S = 10.0.0.0 + 1, len = 0x1000; member low 32 bits 0xfe → S + 0xfe = 10.0.0.255
        let pools = vec![pool("10.0.0.1", "10.0.16.1")];
        let m = Address::new(0xfe).unwrap();
        assert_eq!(
            allocate_v4(&pools, &routes, m, &BTreeSet::new(), &[]),
            Some("10.0.1.0/8".parse().unwrap())
        );
        // a taken address and the member's own are skipped
        let taken: BTreeSet<IpAddr> = [ip("10.0.1.0")].into();
        assert_eq!(
            allocate_v4(&pools, &routes, m, &taken, &[ip("10.0.1.1")]),
            Some("10.0.1.2/8".parse().unwrap())
        );
    }

    #[test]
    fn v4_pool_edge_cases() {
        let routes = config_routes(&[route("10.1.0.0/16", None)]);
        let none = BTreeSet::new();
        let m = a("7c55a8da82");
        // E < S: pool skipped
        assert_eq!(
            allocate_v4(&[pool("10.1.0.9", "10.1.0.1")], &routes, m, &none, &[]),
            None
        );
        // S = 0: pool skipped
        assert_eq!(
            allocate_v4(&[pool("0.0.0.0", "0.0.0.9")], &routes, m, &none, &[]),
            None
        );
        // single-address pool: S itself
        assert_eq!(
            allocate_v4(&[pool("10.1.0.7", "10.1.0.7")], &routes, m, &none, &[]),
            Some("10.1.0.7/16".parse().unwrap())
        );
        // two addresses: the end is never chosen (modulo len); once S is taken, exhausted
        let two = [pool("10.1.0.7", "10.1.0.8")];
        assert_eq!(
            allocate_v4(&two, &routes, m, &none, &[]),
            Some("10.1.0.7/16".parse().unwrap())
        );
        let taken: BTreeSet<IpAddr> = [ip("10.1.0.7")].into();
        assert_eq!(allocate_v4(&two, &routes, m, &taken, &[]), None);
        // a pool outside every route gives nothing
        assert_eq!(
            allocate_v4(&[pool("10.2.0.1", "10.2.0.9")], &routes, m, &none, &[]),
            None
        );
        // a pool whose only address ends in 255
        assert_eq!(
            allocate_v4(&[pool("10.1.0.255", "10.1.0.255")], &routes, m, &none, &[]),
            None
        );
        // a later pool is used when the first is exhausted
        assert_eq!(
            allocate_v4(
                &[pool("10.1.0.7", "10.1.0.7"), pool("10.1.1.1", "10.1.1.1")],
                &routes,
                m,
                &taken,
                &[]
            ),
            Some("10.1.1.1/16".parse().unwrap())
        );
    }

    #[test]
    fn v4_pool_matches_route_by_exact_network_address() {
        let none = BTreeSet::new();
        let m = a("7c55a8da82");
        let p = [pool("10.147.17.1", "10.147.17.254")];
        // first matching IPv4 route wins even with a via; the /16 listed later is not used
        let routes = config_routes(&[
            route("10.147.17.0/24", Some("10.147.17.1")),
            route("10.147.0.0/16", None),
        ]);
        assert_eq!(
            allocate_v4(&p, &routes, m, &none, &[]),
            Some("10.147.17.38/24".parse().unwrap())
        );
        // a target with host bits never equals a masked address
        let routes = config_routes(&[route("10.147.17.5/24", None)]);
        assert_eq!(allocate_v4(&p, &routes, m, &none, &[]), None);
        // a /0 route matches but has no bits: not accepted
        let routes = config_routes(&[route("0.0.0.0/0", None)]);
        assert_eq!(allocate_v4(&p, &routes, m, &none, &[]), None);
    }

    #[test]
    fn v6_pool_example_and_random_fallback() {
        let routes = testnet_routes();
        let pools = testnet_pools();
        let none = BTreeSet::new();
        let got = allocate_v6(&pools, &routes, a("7c55a8da82"), &none, &[], &mut rng());
        assert_eq!(
            got,
            Some("fd12:3456:789a::7c:55a8:da83/64".parse().unwrap())
        );
        // the verified second member (controller.md §7.3)
        let got = allocate_v6(&pools, &routes, a("0a33989140"), &none, &[], &mut rng());
        assert_eq!(got, Some("fd12:3456:789a::a:3398:9141/64".parse().unwrap()));
        // if the deterministic candidate is taken, a random one inside the pool is used
        let taken: BTreeSet<IpAddr> = [ip("fd12:3456:789a::7c:55a8:da83")].into();
        let got = allocate_v6(&pools, &routes, a("7c55a8da82"), &taken, &[], &mut rng()).unwrap();
        assert_ne!(got.addr(), ip("fd12:3456:789a::7c:55a8:da83"));
        assert_eq!(got.prefix_len(), 64);
        let v = u128::from(got.addr());
        assert!(v > u128::from(ip_v6("fd12:3456:789a::1")));
        assert!(v < u128::from(ip_v6("fd12:3456:789a::ffff:ffff:ffff")));
    }

    fn ip_v6(s: &str) -> Ipv6Addr {
        s.parse().unwrap()
    }

    #[test]
    fn v6_pool_needs_a_route_without_via() {
        let pools = testnet_pools();
        let none = BTreeSet::new();
        let routes = config_routes(&[route("fd12:3456:789a::/64", Some("fd12:3456:789a::1"))]);
        assert_eq!(
            allocate_v6(&pools, &routes, a("7c55a8da82"), &none, &[], &mut rng()),
            None
        );
        // last matching route without via wins
        let routes = config_routes(&[
            route("fd12:3456:789a::/48", None),
            route("fd12:3456:789a::/64", None),
            route("fd12::/16", Some("fd12::1")),
        ]);
        assert_eq!(
            v6_pool_netmask(&routes, ip_v6("fd12:3456:789a::7c:55a8:da83")),
            Some(64)
        );
        // a narrow pool: no deterministic trial; random candidates stay inside [S, E)
        let narrow = [pool("fd12:3456:789a::10", "fd12:3456:789a::20")];
        let got = allocate_v6(&narrow, &routes, a("7c55a8da82"), &none, &[], &mut rng()).unwrap();
        let v = u128::from(got.addr()) & 0xffff;
        assert!((0x10..0x20).contains(&v), "{got}");
    }

    #[test]
    fn explicit_assignments_take_the_largest_covering_prefix() {
        let routes = config_routes(&[
            route("10.0.0.0/8", None),
            route("10.147.17.0/24", Some("10.0.0.1")),
            route("10.147.0.0/16", None),
        ]);
        assert_eq!(assigned_netmask(&routes, ip("10.147.17.9")), Some(24));
        assert_eq!(assigned_netmask(&routes, ip("10.1.2.3")), Some(8));
        assert_eq!(assigned_netmask(&routes, ip("192.168.1.1")), None);
        assert_eq!(assigned_netmask(&routes, ip("fd00::1")), None);
    }

    #[test]
    fn via_of_another_family_is_dropped() {
        let r = config_routes(&[route("10.0.0.0/8", Some("fd00::1"))]);
        assert_eq!(r[0].via, None);
        let r = config_routes(&[route("10.0.0.0/8", Some("10.0.0.1"))]);
        assert_eq!(r[0].via, Some(ip("10.0.0.1")));
    }

    #[test]
    fn full_assignment_order_matches_the_verified_example() {
        // controller.md §4.5 / vl2.md §11.1: member 0a33989140 on the test network with an
        // explicit v6 assignment from an earlier request and no v4 yet: rfc4193, 6plane, the
        // stored v6, the new v4.
        let routes = testnet_routes();
        let pools = testnet_pools();
        let stored = [ip("fd12:3456:789a::a:3398:9141")];
        let taken: BTreeSet<IpAddr> = stored.iter().copied().collect();
        let input = AssignInput {
            nwid: NWID,
            member: a("0a33989140"),
            routes: &routes,
            pools: &pools,
            v4_mode: V4AssignMode { zt: true },
            v6_mode: V6AssignMode {
                sixplane: true,
                rfc4193: true,
                zt: true,
            },
            no_auto_assign: false,
            assigned: &stored,
            taken: &taken,
        };
        let out = assign(&input, &mut rng());
        let want: Vec<IpNet> = [
            "fd7c:55a8:da82:c903:1299:930a:3398:9140/88",
            "fcfe:9cab:c80a:3398:9140::1/40",
            "fd12:3456:789a::a:3398:9141/64",
            "10.147.17.209/24",
        ]
        .iter()
        .map(|s| s.parse().unwrap())
        .collect();
        assert_eq!(out.static_ips, want);
        assert_eq!(out.allocated, vec![ip("10.147.17.209")]);
        assert!(out.ndp_emulation);

        // from scratch: both pools allocate, v6 before v4
        let out = assign(
            &AssignInput {
                assigned: &[],
                taken: &BTreeSet::new(),
                ..input
            },
            &mut rng(),
        );
        assert_eq!(
            out.allocated,
            vec![ip("fd12:3456:789a::a:3398:9141"), ip("10.147.17.209")]
        );
        assert_eq!(out.static_ips.len(), 4);
    }

    #[test]
    fn no_auto_assign_keeps_only_covered_explicit_ips() {
        let routes = testnet_routes();
        let pools = testnet_pools();
        let stored = [
            ip("10.147.17.99"),
            ip("fd12:3456:789a::99"),
            ip("172.16.0.1"),
        ];
        let taken: BTreeSet<IpAddr> = stored.iter().copied().collect();
        let out = assign(
            &AssignInput {
                nwid: NWID,
                member: a("0011223344"),
                routes: &routes,
                pools: &pools,
                v4_mode: V4AssignMode { zt: true },
                v6_mode: V6AssignMode {
                    sixplane: true,
                    rfc4193: true,
                    zt: true,
                },
                no_auto_assign: true,
                assigned: &stored,
                taken: &taken,
            },
            &mut rng(),
        );
        // 172.16.0.1 is not covered by any route: not sent (it stays in the record)
        let want: Vec<IpNet> = ["10.147.17.99/24", "fd12:3456:789a::99/64"]
            .iter()
            .map(|s| s.parse().unwrap())
            .collect();
        assert_eq!(out.static_ips, want);
        assert!(out.allocated.is_empty());
        assert!(!out.ndp_emulation);
    }
}
