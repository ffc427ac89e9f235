//! The policy of managed addresses and routes (ZeroTier's `syncManagedStuff`), as pure functions:
//! what a network's `local.conf` allows, which assigned addresses and configured routes that
//! leaves, which source address each route gets, and the plan that takes what was applied before
//! to what is wanted now. The netlink side that carries a plan out is `super::netlink`.
//! spec: service.md §2.2, §8.2

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::str::FromStr;

use weft_wire::dictionary::Dictionary;
use weft_wire::inet::{IpScope, ip_scope};

/// Every managed route is installed with this metric. spec: service.md §8.2 (verified)
pub const ROUTE_METRIC: u32 = 5000;

/// An IP address with a prefix length: an assigned address (`10.147.17.38/24`, host bits kept)
/// or a route target (`192.168.100.0/24`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Cidr {
    addr: IpAddr,
    len: u8,
}

/// Why a [`Cidr`] could not be made.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CidrError {
    /// The prefix length exceeds the family's bits.
    #[error("prefix length {len} too long for {addr}")]
    PrefixTooLong {
        /// The address.
        addr: IpAddr,
        /// The length given.
        len: u8,
    },
    /// Not of the form `address/length`.
    #[error("not an address/length: {0:?}")]
    Syntax(String),
}

impl Cidr {
    /// `addr/len`; `len` at most 32 (IPv4) or 128 (IPv6).
    pub fn new(addr: IpAddr, len: u8) -> Result<Cidr, CidrError> {
        if len > max_len(addr) {
            return Err(CidrError::PrefixTooLong { addr, len });
        }
        Ok(Cidr { addr, len })
    }

    /// The address as given (host bits kept).
    pub fn addr(&self) -> IpAddr {
        self.addr
    }

    /// The prefix length.
    pub fn len(&self) -> u8 {
        self.len
    }

    /// The address with its host bits cleared.
    pub fn network(&self) -> IpAddr {
        mask(self.addr, self.len)
    }

    /// The same prefix with its host bits cleared (the form the kernel wants for route targets).
    pub fn to_network(self) -> Cidr {
        Cidr {
            addr: self.network(),
            len: self.len,
        }
    }

    /// Whether `ip` (of the same family) lies in this prefix.
    pub fn contains_ip(&self, ip: IpAddr) -> bool {
        ip.is_ipv4() == self.addr.is_ipv4() && mask(ip, self.len) == self.network()
    }

    /// Whether `other` lies entirely in this prefix (same family, at least as long, inside).
    pub fn contains(&self, other: &Cidr) -> bool {
        other.len >= self.len && self.contains_ip(other.addr)
    }

    /// `0.0.0.0/0` or `::/0`.
    pub fn is_default(&self) -> bool {
        self.len == 0 && self.addr.is_unspecified()
    }

    /// The two halves that stand in for a default route so that it overrides the system's default
    /// without replacing it: `0.0.0.0/1` + `128.0.0.0/1`, or `::/1` + `8000::/1`.
    /// spec: service.md §8.2
    pub fn default_halves(ipv4: bool) -> [Cidr; 2] {
        if ipv4 {
            [
                Cidr {
                    addr: Ipv4Addr::UNSPECIFIED.into(),
                    len: 1,
                },
                Cidr {
                    addr: Ipv4Addr::new(128, 0, 0, 0).into(),
                    len: 1,
                },
            ]
        } else {
            [
                Cidr {
                    addr: Ipv6Addr::UNSPECIFIED.into(),
                    len: 1,
                },
                Cidr {
                    addr: Ipv6Addr::new(0x8000, 0, 0, 0, 0, 0, 0, 0).into(),
                    len: 1,
                },
            ]
        }
    }
}

impl fmt::Display for Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.len)
    }
}

impl FromStr for Cidr {
    type Err = CidrError;

    /// `address/length`; a bare address is a host prefix (/32 or /128).
    fn from_str(s: &str) -> Result<Cidr, CidrError> {
        let bad = || CidrError::Syntax(s.to_owned());
        let (a, l) = match s.split_once('/') {
            Some((a, l)) => (a, Some(l)),
            None => (s, None),
        };
        let addr: IpAddr = a.trim().parse().map_err(|_| bad())?;
        let len = match l {
            Some(l) => l.trim().parse().map_err(|_| bad())?,
            None => max_len(addr),
        };
        Cidr::new(addr, len)
    }
}

fn max_len(addr: IpAddr) -> u8 {
    if addr.is_ipv4() { 32 } else { 128 }
}

/// `ip` with all but its first `len` bits cleared.
fn mask(ip: IpAddr, len: u8) -> IpAddr {
    match ip {
        IpAddr::V4(v) => {
            let m = u32::MAX
                .checked_shl(32 - u32::from(len.min(32)))
                .unwrap_or(0);
            IpAddr::V4(Ipv4Addr::from(u32::from(v) & m))
        }
        IpAddr::V6(v) => {
            let m = u128::MAX
                .checked_shl(128 - u32::from(len.min(128)))
                .unwrap_or(0);
            IpAddr::V6(Ipv6Addr::from(u128::from(v) & m))
        }
    }
}

/// How many leading bits `a` and `b` share (0 across families).
fn common_prefix_len(a: IpAddr, b: IpAddr) -> u32 {
    match (a, b) {
        (IpAddr::V4(a), IpAddr::V4(b)) => (u32::from(a) ^ u32::from(b)).leading_zeros(),
        (IpAddr::V6(a), IpAddr::V6(b)) => (u128::from(a) ^ u128::from(b)).leading_zeros(),
        _ => 0,
    }
}

/// A network's local settings, `networks.d/<nwid>.local.conf`. spec: service.md §2.2
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LocalNetSettings {
    /// Apply managed addresses and routes at all.
    pub allow_managed: bool,
    /// When not empty: only targets inside one of these (with at least its prefix length) are
    /// applied (`allowManaged` given as a list of CIDRs).
    pub allow_managed_list: Vec<Cidr>,
    /// Allow targets of global scope.
    pub allow_global: bool,
    /// Allow the default route (installed as two halves).
    pub allow_default: bool,
    /// Allow DNS settings from the network configuration.
    pub allow_dns: bool,
}

impl Default for LocalNetSettings {
    /// What applies when the file does not exist: managed on, the rest off. spec: service.md §2.2
    fn default() -> Self {
        LocalNetSettings {
            allow_managed: true,
            allow_managed_list: Vec::new(),
            allow_global: false,
            allow_default: false,
            allow_dns: false,
        }
    }
}

impl LocalNetSettings {
    /// Reads a `local.conf` dictionary; a file that does not parse counts as absent (defaults).
    /// spec: service.md §2.2
    pub fn parse(data: &[u8]) -> LocalNetSettings {
        let Ok(d) = Dictionary::parse(data) else {
            return LocalNetSettings::default();
        };
        let (allow_managed, allow_managed_list) = match d.get("allowManaged") {
            None => (true, Vec::new()),
            Some(v) if v.len() <= 5 => (matches!(v.first(), Some(b'1' | b't' | b'T')), Vec::new()),
            Some(v) => {
                let list = String::from_utf8_lossy(v)
                    .split(',')
                    .filter_map(|s| s.trim().parse().ok())
                    .collect();
                (true, list)
            }
        };
        LocalNetSettings {
            allow_managed,
            allow_managed_list,
            allow_global: d.get_bool("allowGlobal").unwrap_or(false),
            allow_default: d.get_bool("allowDefault").unwrap_or(false),
            allow_dns: d.get_bool("allowDNS").unwrap_or(false),
        }
    }
}

/// Whether the settings allow applying `target` (an address or a route target).
/// spec: service.md §8.2 "Allowed(target)"
pub fn allowed(target: &Cidr, settings: &LocalNetSettings) -> bool {
    if !settings.allow_managed {
        return false;
    }
    if !settings.allow_managed_list.is_empty()
        && !settings
            .allow_managed_list
            .iter()
            .any(|entry| entry.contains(target))
    {
        return false;
    }
    if target.is_default() {
        return settings.allow_default;
    }
    match ip_scope(target.addr) {
        IpScope::None | IpScope::Multicast | IpScope::Loopback | IpScope::LinkLocal => false,
        IpScope::Global => settings.allow_global,
        IpScope::Private | IpScope::PseudoPrivate | IpScope::Shared => true,
    }
}

/// A route from a network configuration: `target [via]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConfigRoute {
    /// Where the route leads.
    pub target: Cidr,
    /// The next hop; `None` for an on-link route.
    pub via: Option<IpAddr>,
}

/// A route as installed: `target [via <via>] dev <tap> src <src> proto static metric 5000`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RouteSpec {
    /// The destination prefix (host bits cleared).
    pub target: Cidr,
    /// The next hop; `None` for an on-link route.
    pub via: Option<IpAddr>,
    /// The preferred source address, one of the TAP's.
    pub src: IpAddr,
}

impl fmt::Display for RouteSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.target)?;
        if let Some(via) = self.via {
            write!(f, " via {via}")?;
        }
        write!(f, " src {} metric {ROUTE_METRIC}", self.src)
    }
}

/// The assigned addresses the settings allow, in configuration order, without duplicates.
/// spec: service.md §8.2 (IPs)
pub fn desired_addrs(assigned: &[Cidr], settings: &LocalNetSettings) -> Vec<Cidr> {
    let mut out: Vec<Cidr> = Vec::new();
    for a in assigned {
        if allowed(a, settings) && !out.contains(a) {
            out.push(*a);
        }
    }
    out
}

/// The source address for a route to `target`: among `tap_ips`, the one of the same family
/// sharing the longest prefix with the target (the first on a tie). spec: service.md §8.2
pub fn choose_source(target: &Cidr, tap_ips: &[Cidr]) -> Option<IpAddr> {
    let net = target.network();
    let mut best: Option<(u32, IpAddr)> = None;
    for ip in tap_ips
        .iter()
        .filter(|ip| ip.addr.is_ipv4() == net.is_ipv4())
    {
        let score = common_prefix_len(ip.addr, net);
        if best.is_none_or(|(b, _)| score > b) {
            best = Some((score, ip.addr));
        }
    }
    best.map(|(_, ip)| ip)
}

/// The routes to install for the configured `routes`, given the managed addresses the TAP has
/// (`tap_ips`, which are also this node's own IPs on the network) and whether the node is online.
/// On-link routes come first, then via routes (a via route needs its on-link route).
/// spec: service.md §8.2 (Routes)
pub fn desired_routes(
    routes: &[ConfigRoute],
    tap_ips: &[Cidr],
    settings: &LocalNetSettings,
    online: bool,
) -> Vec<RouteSpec> {
    let mut out: Vec<RouteSpec> = Vec::new();
    for r in routes {
        if !allowed(&r.target, settings) {
            continue;
        }
        if let Some(via) = r.via {
            // A next hop of another family, or one of our own addresses, is never installed.
            if via.is_ipv4() != r.target.addr.is_ipv4() || tap_ips.iter().any(|ip| ip.addr == via) {
                continue;
            }
        }
        let targets: Vec<Cidr> = if r.target.is_default() {
            if r.via.is_some() && !online {
                continue;
            }
            Cidr::default_halves(r.target.addr.is_ipv4()).to_vec()
        } else {
            vec![r.target.to_network()]
        };
        for target in targets {
            let Some(src) = choose_source(&target, tap_ips) else {
                continue;
            };
            // The kernel already routes a managed address's own prefix.
            if tap_ips
                .iter()
                .any(|ip| ip.len == target.len && target.contains_ip(ip.addr))
            {
                continue;
            }
            let spec = RouteSpec {
                target,
                via: r.via,
                src,
            };
            if !out.contains(&spec) {
                out.push(spec);
            }
        }
    }
    // Stable: configuration order within each group.
    out.sort_by_key(|r| r.via.is_some());
    out
}

/// What has been applied to a TAP so far (kept by the caller between syncs).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Applied {
    /// Managed addresses on the interface.
    pub addrs: Vec<Cidr>,
    /// Managed routes through the interface.
    pub routes: Vec<RouteSpec>,
}

/// The changes that take [`Applied`] to what is desired, in the order to carry them out:
/// `del_routes` (via routes first), `del_addrs`, `add_addrs`, `add_routes` (on-link first).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Plan {
    /// Addresses to add.
    pub add_addrs: Vec<Cidr>,
    /// Addresses to remove.
    pub del_addrs: Vec<Cidr>,
    /// Routes to add.
    pub add_routes: Vec<RouteSpec>,
    /// Routes to remove.
    pub del_routes: Vec<RouteSpec>,
}

impl Plan {
    /// Nothing to do.
    pub fn is_empty(&self) -> bool {
        self.add_addrs.is_empty()
            && self.del_addrs.is_empty()
            && self.add_routes.is_empty()
            && self.del_routes.is_empty()
    }
}

/// The plan from `applied` to `desired_addrs` + `desired_routes`. An address whose prefix length
/// changed, or a route whose next hop or source changed, is removed and added again.
/// spec: service.md §8.2 ("previously applied addresses no longer present are removed"; "routes
/// no longer in the config are removed")
pub fn sync(desired_addrs: &[Cidr], desired_routes: &[RouteSpec], applied: &Applied) -> Plan {
    let add_addrs = desired_addrs
        .iter()
        .filter(|a| !applied.addrs.contains(a))
        .copied()
        .collect();
    let del_addrs = applied
        .addrs
        .iter()
        .filter(|a| !desired_addrs.contains(a))
        .copied()
        .collect();
    let mut add_routes: Vec<RouteSpec> = desired_routes
        .iter()
        .filter(|r| !applied.routes.contains(r))
        .copied()
        .collect();
    add_routes.sort_by_key(|r| r.via.is_some());
    let mut del_routes: Vec<RouteSpec> = applied
        .routes
        .iter()
        .filter(|r| !desired_routes.contains(r))
        .copied()
        .collect();
    del_routes.sort_by_key(|r| r.via.is_none());
    Plan {
        add_addrs,
        del_addrs,
        add_routes,
        del_routes,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn c(s: &str) -> Cidr {
        s.parse().expect("test CIDR")
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().expect("test IP")
    }

    fn route(target: &str, via: Option<&str>) -> ConfigRoute {
        ConfigRoute {
            target: c(target),
            via: via.map(ip),
        }
    }

    #[test]
    fn cidr_parsing_masking_and_containment() {
        let a = c("10.147.17.38/24");
        assert_eq!(a.addr(), ip("10.147.17.38"));
        assert_eq!(a.len(), 24);
        assert_eq!(a.network(), ip("10.147.17.0"));
        assert_eq!(a.to_string(), "10.147.17.38/24");
        assert_eq!(c("10.1.2.3"), Cidr::new(ip("10.1.2.3"), 32).expect("valid"));
        assert_eq!(c("fd00::1").len(), 128);
        assert!(c("10.0.0.0/8").contains(&c("10.147.17.0/24")));
        assert!(!c("10.147.17.0/24").contains(&c("10.0.0.0/8")));
        assert!(!c("10.0.0.0/8").contains(&c("fd00::/8")));
        assert!(c("0.0.0.0/0").contains_ip(ip("8.8.8.8")));
        assert!(!c("0.0.0.0/0").contains_ip(ip("::1")));
        assert_eq!(
            c("fd7c:55a8:da82:c903:1299:93de:6a00:1/88").network(),
            ip("fd7c:55a8:da82:c903:1299:9300::")
        );
        assert!(c("0.0.0.0/0").is_default() && c("::/0").is_default());
        assert!(!c("10.0.0.0/0").is_default() && !c("0.0.0.0/1").is_default());
        assert!("10.0.0.0/33".parse::<Cidr>().is_err());
        assert!("fd00::/129".parse::<Cidr>().is_err());
        assert!("10.0.0/8".parse::<Cidr>().is_err());
        assert!("10.0.0.0/x".parse::<Cidr>().is_err());
    }

    #[test]
    fn local_conf_defaults_and_parsing() {
        // spec: service.md §2.2 — the file as written, and its absence, mean the same.
        let written = b"allowManaged=1\nallowGlobal=0\nallowDefault=0\nallowDNS=0\n";
        assert_eq!(
            LocalNetSettings::parse(written),
            LocalNetSettings::default()
        );
        assert_eq!(LocalNetSettings::parse(b""), LocalNetSettings::default());
        let d = LocalNetSettings::default();
        assert!(d.allow_managed && !d.allow_global && !d.allow_default && !d.allow_dns);

        let s = LocalNetSettings::parse(b"allowManaged=false\nallowGlobal=true\nallowDefault=T\n");
        assert!(!s.allow_managed && s.allow_global && s.allow_default && !s.allow_dns);
        let s = LocalNetSettings::parse(b"allowDNS=1\n");
        assert!(s.allow_managed && s.allow_dns);

        // Longer than 5 bytes: a list of CIDRs.
        let s = LocalNetSettings::parse(b"allowManaged=10.147.0.0/16,fd00::/8\n");
        assert!(s.allow_managed);
        assert_eq!(
            s.allow_managed_list,
            vec![c("10.147.0.0/16"), c("fd00::/8")]
        );
    }

    #[test]
    fn allowed_by_scope_default_and_list() {
        let d = LocalNetSettings::default();
        // Private, shared (RFC 6598) and pseudo-private are allowed by default.
        for t in [
            "10.147.17.38/24",
            "192.168.100.0/24",
            "100.64.1.1/10",
            "fd7c::1/88",
        ] {
            assert!(allowed(&c(t), &d), "{t}");
        }
        assert!(allowed(&c("28.1.2.3/8"), &d)); // pseudo-private
        // Never: link-local, loopback, multicast, none.
        for t in [
            "169.254.1.1/16",
            "fe80::1/64",
            "127.0.0.1/8",
            "224.0.0.1/4",
            "0.1.2.3/8",
        ] {
            let everything = LocalNetSettings {
                allow_global: true,
                allow_default: true,
                ..LocalNetSettings::default()
            };
            assert!(!allowed(&c(t), &everything), "{t}");
        }
        // Global needs allowGlobal; the default route needs allowDefault.
        assert!(!allowed(&c("8.8.8.0/24"), &d));
        assert!(!allowed(&c("2001:db8::1/64"), &d));
        assert!(!allowed(&c("0.0.0.0/0"), &d));
        assert!(!allowed(&c("::/0"), &d));
        let g = LocalNetSettings {
            allow_global: true,
            ..LocalNetSettings::default()
        };
        assert!(allowed(&c("8.8.8.0/24"), &g));
        assert!(!allowed(&c("0.0.0.0/0"), &g));
        let def = LocalNetSettings {
            allow_default: true,
            ..LocalNetSettings::default()
        };
        assert!(allowed(&c("0.0.0.0/0"), &def));
        assert!(allowed(&c("::/0"), &def));
        // allowManaged off: nothing.
        let off = LocalNetSettings {
            allow_managed: false,
            ..def.clone()
        };
        assert!(!allowed(&c("10.147.17.38/24"), &off));
        // Allow-list: inside an entry with at least its prefix length.
        let list = LocalNetSettings {
            allow_managed_list: vec![c("10.147.0.0/16")],
            ..LocalNetSettings::default()
        };
        assert!(allowed(&c("10.147.17.38/24"), &list));
        assert!(allowed(&c("10.147.0.0/16"), &list));
        assert!(!allowed(&c("10.0.0.0/8"), &list));
        assert!(!allowed(&c("192.168.1.1/24"), &list));
    }

    #[test]
    fn addresses_are_filtered_and_deduplicated() {
        let assigned = [
            c("10.147.17.38/24"),
            c("8.8.8.8/32"),
            c("169.254.3.3/16"),
            c("fd7c:55a8:da82:c903:1299:93de:6a00:1/88"),
            c("10.147.17.38/24"),
        ];
        assert_eq!(
            desired_addrs(&assigned, &LocalNetSettings::default()),
            vec![assigned[0], assigned[3]]
        );
        let off = LocalNetSettings {
            allow_managed: false,
            ..LocalNetSettings::default()
        };
        assert!(desired_addrs(&assigned, &off).is_empty());
    }

    #[test]
    fn source_is_the_same_family_longest_match() {
        let ips = [c("10.1.0.5/16"), c("10.147.17.38/24"), c("fd00::5/64")];
        assert_eq!(
            choose_source(&c("10.147.99.0/24"), &ips),
            Some(ip("10.147.17.38"))
        );
        assert_eq!(
            choose_source(&c("10.1.200.0/24"), &ips),
            Some(ip("10.1.0.5"))
        );
        // No match at all: still the same family (first on the tie).
        assert_eq!(
            choose_source(&c("192.168.1.0/24"), &ips),
            Some(ip("10.1.0.5"))
        );
        assert_eq!(choose_source(&c("fd99::/16"), &ips), Some(ip("fd00::5")));
        assert_eq!(choose_source(&c("fd99::/16"), &ips[..2]), None);
    }

    #[test]
    fn routes_follow_the_skip_rules() {
        let d = LocalNetSettings::default();
        let ips = [c("10.147.17.38/24"), c("fd7c::26/88")];
        let routes = [
            // The verified example: installed with a source from the TAP.
            route("192.168.100.0/24", Some("10.147.17.1")),
            // Exactly a managed address's prefix: the kernel already has it.
            route("10.147.17.0/24", None),
            // Via one of our own IPs: skipped.
            route("192.168.200.0/24", Some("10.147.17.38")),
            // On-link, longer prefix than the address: installed, host bits cleared.
            route("10.147.17.128/25", None),
            // Global target without allowGlobal: skipped.
            route("8.8.8.0/24", Some("10.147.17.1")),
            // No IPv6 via routes onto IPv4 targets.
            route("192.168.50.0/24", Some("fd7c::1")),
            // IPv6 via route.
            route("fd99::/64", Some("fd7c::1")),
            // Default without allowDefault: skipped.
            route("0.0.0.0/0", Some("10.147.17.1")),
        ];
        let got = desired_routes(&routes, &ips, &d, true);
        let want = vec![
            RouteSpec {
                target: c("10.147.17.128/25"),
                via: None,
                src: ip("10.147.17.38"),
            },
            RouteSpec {
                target: c("192.168.100.0/24"),
                via: Some(ip("10.147.17.1")),
                src: ip("10.147.17.38"),
            },
            RouteSpec {
                target: c("fd99::/64"),
                via: Some(ip("fd7c::1")),
                src: ip("fd7c::26"),
            },
        ];
        assert_eq!(got, want);
        assert_eq!(
            got[1].to_string(),
            "192.168.100.0/24 via 10.147.17.1 src 10.147.17.38 metric 5000"
        );
        // No address of the family: no route.
        assert!(desired_routes(&routes[..1], &ips[1..], &d, true).is_empty());
    }

    #[test]
    fn default_routes_are_split_and_need_online_for_via() {
        let s = LocalNetSettings {
            allow_default: true,
            ..LocalNetSettings::default()
        };
        let ips = [c("10.147.17.38/24"), c("fd7c::26/88")];
        let routes = [route("0.0.0.0/0", Some("10.147.17.1")), route("::/0", None)];
        let online = desired_routes(&routes, &ips, &s, true);
        let halves4 = Cidr::default_halves(true);
        let halves6 = Cidr::default_halves(false);
        assert_eq!(halves4[1].to_string(), "128.0.0.0/1");
        assert_eq!(halves6[1].to_string(), "8000::/1");
        assert_eq!(
            online,
            vec![
                RouteSpec {
                    target: halves6[0],
                    via: None,
                    src: ip("fd7c::26")
                },
                RouteSpec {
                    target: halves6[1],
                    via: None,
                    src: ip("fd7c::26")
                },
                RouteSpec {
                    target: halves4[0],
                    via: Some(ip("10.147.17.1")),
                    src: ip("10.147.17.38")
                },
                RouteSpec {
                    target: halves4[1],
                    via: Some(ip("10.147.17.1")),
                    src: ip("10.147.17.38")
                },
            ]
        );
        // Offline: the default via route waits; the on-link one stays.
        let offline = desired_routes(&routes, &ips, &s, false);
        assert_eq!(offline, online[..2].to_vec());
    }

    #[test]
    fn sync_diffs_and_orders() {
        let a1 = c("10.147.17.38/24");
        let a2 = c("fd7c::26/88");
        let a3 = c("10.147.18.1/24");
        let onlink = RouteSpec {
            target: c("10.147.17.128/25"),
            via: None,
            src: ip("10.147.17.38"),
        };
        let via = RouteSpec {
            target: c("192.168.100.0/24"),
            via: Some(ip("10.147.17.1")),
            src: ip("10.147.17.38"),
        };
        // From nothing: add everything, on-link before via.
        let plan = sync(&[a1, a2], &[via, onlink], &Applied::default());
        assert_eq!(plan.add_addrs, vec![a1, a2]);
        assert_eq!(plan.add_routes, vec![onlink, via]);
        assert!(plan.del_addrs.is_empty() && plan.del_routes.is_empty());

        // Steady state: nothing.
        let applied = Applied {
            addrs: vec![a1, a2],
            routes: vec![onlink, via],
        };
        assert!(sync(&[a2, a1], &[via, onlink], &applied).is_empty());

        // Everything gone: delete all, via routes before on-link.
        let plan = sync(&[], &[], &applied);
        assert_eq!(plan.del_addrs, vec![a1, a2]);
        assert_eq!(plan.del_routes, vec![via, onlink]);
        assert!(plan.add_addrs.is_empty() && plan.add_routes.is_empty());

        // A changed prefix length or source is removed and added again.
        let a1_16 = c("10.147.17.38/16");
        let via2 = RouteSpec {
            src: ip("10.147.18.1"),
            ..via
        };
        let plan = sync(&[a1_16, a2, a3], &[onlink, via2], &applied);
        assert_eq!(plan.add_addrs, vec![a1_16, a3]);
        assert_eq!(plan.del_addrs, vec![a1]);
        assert_eq!(plan.add_routes, vec![via2]);
        assert_eq!(plan.del_routes, vec![via]);
    }
}
