//! Links, bridged LANs and routes between lab namespaces.

use std::cell::{Cell, RefCell};
use std::net::Ipv4Addr;

use super::{Lab, Ns};

/// A veth pair between two namespaces, as made by [`Lab::link`].
#[derive(Clone, Debug)]
pub struct Link {
    /// The first namespace.
    pub a: Ns,
    /// The second namespace.
    pub b: Ns,
    /// The interface in `a`.
    pub a_if: String,
    /// The interface in `b`.
    pub b_if: String,
    /// The address of `a_if`.
    pub a_addr: Ipv4Addr,
    /// The address of `b_if`.
    pub b_addr: Ipv4Addr,
}

/// An L2 segment: a bridge (`br0`) inside a dedicated switch namespace, with hosts attached by
/// veth pairs and addresses handed out in order from its subnet. Made by [`Lab::bridge_lan`] or
/// [`Lab::internet`].
#[derive(Debug)]
pub struct Lan {
    switch: Ns,
    net: Ipv4Addr,
    prefix: u8,
    gateway: Option<Ipv4Addr>,
    next_host: Cell<u32>,
    members: RefCell<Vec<(Ns, String, Ipv4Addr)>>,
}

impl Lan {
    /// The namespace holding the bridge.
    pub fn switch(&self) -> &Ns {
        &self.switch
    }

    /// The subnet, as `a.b.c.d/len`.
    pub fn subnet(&self) -> String {
        format!("{}/{}", self.net, self.prefix)
    }

    /// The prefix length.
    pub fn prefix(&self) -> u8 {
        self.prefix
    }

    /// The router's address (the first host address) when the LAN has one; attached hosts use
    /// it as their default route.
    pub fn gateway(&self) -> Option<Ipv4Addr> {
        self.gateway
    }

    /// The address `ns` has on this LAN. Panics when `ns` is not attached.
    pub fn addr_of(&self, ns: &Ns) -> Ipv4Addr {
        self.member(ns).2
    }

    /// The interface (inside `ns`) that attaches `ns` to this LAN. Panics when `ns` is not
    /// attached.
    pub fn iface_of(&self, ns: &Ns) -> String {
        self.member(ns).1
    }

    /// The attached namespaces with their interface and address, in attachment order.
    pub fn members(&self) -> Vec<(Ns, String, Ipv4Addr)> {
        self.members.borrow().clone()
    }

    fn member(&self, ns: &Ns) -> (Ns, String, Ipv4Addr) {
        self.members
            .borrow()
            .iter()
            .find(|(n, _, _)| n == ns)
            .cloned()
            .unwrap_or_else(|| panic!("{} is not attached to LAN {}", ns.name, self.subnet()))
    }

    /// The next free host address.
    fn allocate(&self) -> Ipv4Addr {
        let i = self.next_host.get();
        let size = 1u64 << (32 - u32::from(self.prefix));
        assert!(
            u64::from(i) + 1 < size,
            "LAN {} has no free addresses left",
            self.subnet()
        );
        self.next_host.set(i + 1);
        Ipv4Addr::from(u32::from(self.net) + i)
    }
}

/// Parses `a.b.c.d/len` into the address and the prefix length.
pub(crate) fn parse_cidr(cidr: &str) -> (Ipv4Addr, u8) {
    let parsed = cidr.split_once('/').and_then(|(a, l)| {
        let addr = a.parse::<Ipv4Addr>().ok()?;
        let len = l.parse::<u8>().ok().filter(|l| (1..=32).contains(l))?;
        Some((addr, len))
    });
    parsed.unwrap_or_else(|| panic!("`{cidr}` is not an IPv4 CIDR like 10.0.0.1/24"))
}

/// The network address of `addr/len`.
fn network(addr: Ipv4Addr, len: u8) -> Ipv4Addr {
    let mask = u32::MAX.checked_shl(32 - u32::from(len)).unwrap_or(0);
    Ipv4Addr::from(u32::from(addr) & mask)
}

impl Lab {
    /// Connects `a` and `b` with a veth pair and gives the ends the addresses `a_cidr` and
    /// `b_cidr` (e.g. `10.9.0.1/30`, `10.9.0.2/30`). Each end is created directly inside its
    /// namespace.
    pub fn link(&self, a: &Ns, b: &Ns, a_cidr: &str, b_cidr: &str) -> Link {
        let (a_addr, _) = parse_cidr(a_cidr);
        let (b_addr, _) = parse_cidr(b_cidr);
        let a_if = self.next_if(a, "eth");
        let b_if = self.next_if(b, "eth");
        self.veth(a, &a_if, b, &b_if);
        self.ip(a, &["addr", "add", a_cidr, "dev", &a_if]);
        self.ip(b, &["addr", "add", b_cidr, "dev", &b_if]);
        self.ip(a, &["link", "set", &a_if, "up"]);
        self.ip(b, &["link", "set", &b_if, "up"]);
        Link {
            a: a.clone(),
            b: b.clone(),
            a_if,
            b_if,
            a_addr,
            b_addr,
        }
    }

    /// Creates a LAN on `subnet` (e.g. `192.168.1.0/24`): a bridge in its own switch namespace.
    /// With a `router`, the router is attached first and gets the first host address (`.1`), and
    /// every host attached afterwards gets a default route via it (forwarding on the router is
    /// the caller's business; [`Lab::nat_router`] sets it up). `hosts` are attached in order and
    /// get the following addresses; more can be attached later with [`Lab::attach`].
    pub fn bridge_lan(&self, router: Option<&Ns>, hosts: &[&Ns], subnet: &str) -> Lan {
        let (addr, prefix) = parse_cidr(subnet);
        assert!(prefix <= 30, "LAN subnet {subnet} is too small");
        let net = network(addr, prefix);
        let n = self.switch_seq.get();
        self.switch_seq.set(n + 1);
        let switch = self.host(&format!("sw{n}"));
        // Bridged frames must not go through this namespace's netfilter (best effort: the key
        // only exists when the kernel has bridge netfilter).
        let _ = self.in_ns(&switch, || {
            std::fs::write("/proc/sys/net/bridge/bridge-nf-call-iptables", "0")
        });
        self.ip(&switch, &["link", "add", "br0", "type", "bridge"]);
        self.ip(&switch, &["link", "set", "br0", "up"]);
        let lan = Lan {
            switch,
            net,
            prefix,
            gateway: router.map(|_| Ipv4Addr::from(u32::from(net) + 1)),
            next_host: Cell::new(1),
            members: RefCell::default(),
        };
        if let Some(r) = router {
            self.attach(&lan, r);
        }
        for h in hosts {
            self.attach(&lan, h);
        }
        lan
    }

    /// An "internet" segment: a router-less LAN on `subnet` that roots, public hosts and NAT
    /// routers' outside interfaces attach to. Everything on it is reachable directly (no default
    /// routes needed), and nothing on it can reach the host.
    ///
    /// ZeroTier classifies the documentation and benchmark ranges (`203.0.113.0/24`,
    /// `198.18.0.0/15`, ...) as *private* scope; a scenario that needs global-scope behaviour
    /// (e.g. the TCP fallback relay) can pass an ordinary global range instead, which is still
    /// confined to the lab.
    pub fn internet(&self, subnet: &str) -> Lan {
        self.bridge_lan(None, &[], subnet)
    }

    /// Attaches `ns` to `lan` with the next free address and returns it. If the LAN has a
    /// router (and `ns` is not it), `ns` gets a default route via the router.
    pub fn attach(&self, lan: &Lan, ns: &Ns) -> Ipv4Addr {
        assert!(
            !lan.members.borrow().iter().any(|(n, _, _)| n == ns),
            "{} is already attached to LAN {}",
            ns.name,
            lan.subnet()
        );
        let addr = lan.allocate();
        let port = self.next_if(&lan.switch, "p");
        let iface = self.next_if(ns, "eth");
        self.veth(&lan.switch, &port, ns, &iface);
        self.ip(&lan.switch, &["link", "set", &port, "master", "br0"]);
        self.ip(&lan.switch, &["link", "set", &port, "up"]);
        let cidr = format!("{addr}/{}", lan.prefix);
        self.ip(ns, &["addr", "add", &cidr, "dev", &iface]);
        self.ip(ns, &["link", "set", &iface, "up"]);
        if let Some(gw) = lan.gateway.filter(|gw| *gw != addr) {
            self.ip(ns, &["route", "add", "default", "via", &gw.to_string()]);
        }
        lan.members.borrow_mut().push((ns.clone(), iface, addr));
        addr
    }

    /// Adds a route to `dest` (CIDR) via `via` inside `ns`.
    pub fn route(&self, ns: &Ns, dest: &str, via: Ipv4Addr) {
        self.ip(ns, &["route", "add", dest, "via", &via.to_string()]);
    }

    /// Enables IPv4 forwarding inside `ns` (only there).
    pub fn enable_forwarding(&self, ns: &Ns) {
        self.sysctl(ns, "net.ipv4.ip_forward", "1");
    }

    /// A veth pair `a_if` (in `a`) — `b_if` (in `b`), created directly inside both namespaces so
    /// that nothing ever appears in the host's namespace.
    fn veth(&self, a: &Ns, a_if: &str, b: &Ns, b_if: &str) {
        self.ip(
            a,
            &[
                "link",
                "add",
                a_if,
                "type",
                "veth",
                "peer",
                "name",
                b_if,
                "netns",
                b.name(),
            ],
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cidr_parsing_and_networks() {
        assert_eq!(parse_cidr("10.1.2.3/24"), (Ipv4Addr::new(10, 1, 2, 3), 24));
        assert_eq!(
            network(Ipv4Addr::new(10, 1, 2, 3), 24),
            Ipv4Addr::new(10, 1, 2, 0)
        );
        assert_eq!(
            network(Ipv4Addr::new(198, 19, 2, 3), 15),
            Ipv4Addr::new(198, 18, 0, 0)
        );
        assert_eq!(
            network(Ipv4Addr::new(1, 2, 3, 4), 32),
            Ipv4Addr::new(1, 2, 3, 4)
        );
    }

    #[test]
    #[should_panic(expected = "not an IPv4 CIDR")]
    fn bad_cidr_panics() {
        parse_cidr("10.0.0.1");
    }
}
