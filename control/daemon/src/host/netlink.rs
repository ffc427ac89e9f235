//! Addresses and routes on a network's TAP through route netlink (`rtnetlink`): the means by
//! which a [`Plan`] from `super::managed` is carried out. Routes are installed
//! `target [via] dev <tap> src <src> proto static metric 5000`. spec: service.md §8.2

use std::net::IpAddr;
use std::time::Duration;

use futures_util::TryStreamExt;
use rtnetlink::packet_route::AddressFamily;
use rtnetlink::packet_route::address::{
    AddressAttribute, AddressFlags, AddressHeaderFlags, AddressMessage,
};
use rtnetlink::packet_route::route::{
    RouteAddress, RouteAttribute, RouteHeader, RouteMessage, RouteProtocol,
};
use rtnetlink::{AddressMessageBuilder, Handle, RouteMessageBuilder};

use super::managed::{Applied, Cidr, Plan, ROUTE_METRIC, RouteSpec};

/// How long [`Netlink::apply`] waits for new IPv6 addresses to finish duplicate address detection
/// before adding routes that use them as source (DAD takes up to about 2 s with the kernel's
/// defaults; until it ends the kernel refuses the address as a route source).
const DAD_WAIT: Duration = Duration::from_secs(4);

/// A failed netlink operation.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum NetlinkError {
    /// The route-netlink socket could not be opened.
    #[error("cannot open a route netlink socket: {0}")]
    Socket(#[source] std::io::Error),
    /// No interface has this name (in the socket's namespace).
    #[error("no interface named {name}")]
    NoSuchInterface {
        /// The name looked up.
        name: String,
    },
    /// The kernel refused a request, or the reply made no sense.
    #[error("{op}: {source}")]
    Request {
        /// What was asked, e.g. `add address 10.147.17.38/24`.
        op: String,
        /// What the netlink layer said.
        #[source]
        source: rtnetlink::Error,
    },
}

/// One operation of a plan that did not go through; the rest of the plan still ran.
#[derive(Debug)]
pub struct ApplyFailure {
    /// The error (its text names the operation).
    pub error: NetlinkError,
}

/// What [`Netlink::apply`] did not manage; [`Applied`] was updated for everything else.
#[derive(Debug, Default)]
pub struct ApplyReport {
    /// Operations that failed, in the order tried.
    pub failures: Vec<ApplyFailure>,
}

/// A route-netlink connection in the namespace of the thread that opened it.
#[derive(Debug, Clone)]
pub struct Netlink {
    handle: Handle,
}

impl Netlink {
    /// Opens a route-netlink socket in the calling thread's network namespace and spawns its
    /// driver on the current tokio runtime (panics outside one, like `tokio::spawn`).
    pub fn connect() -> Result<Netlink, NetlinkError> {
        let (conn, handle, _messages) =
            rtnetlink::new_connection().map_err(NetlinkError::Socket)?;
        tokio::spawn(conn);
        Ok(Netlink { handle })
    }

    /// The index of interface `name`.
    pub async fn ifindex(&self, name: &str) -> Result<u32, NetlinkError> {
        let mut links = self
            .handle
            .link()
            .get()
            .match_name(name.to_owned())
            .execute();
        match links.try_next().await {
            Ok(Some(link)) => Ok(link.header.index),
            Ok(None) => Err(NetlinkError::NoSuchInterface {
                name: name.to_owned(),
            }),
            Err(rtnetlink::Error::NetlinkError(m))
                if m.to_io().raw_os_error() == Some(libc::ENODEV) =>
            {
                Err(NetlinkError::NoSuchInterface {
                    name: name.to_owned(),
                })
            }
            Err(source) => Err(NetlinkError::Request {
                op: format!("look up interface {name}"),
                source,
            }),
        }
    }

    /// The addresses on interface `ifindex` (both families, link-local included).
    #[cfg_attr(not(test), allow(dead_code))] // read-back, used by the namespace tests
    pub async fn addrs(&self, ifindex: u32) -> Result<Vec<Cidr>, NetlinkError> {
        let op = || format!("list addresses of interface {ifindex}");
        let mut stream = self
            .handle
            .address()
            .get()
            .set_link_index_filter(ifindex)
            .execute();
        let mut out = Vec::new();
        while let Some(msg) = stream
            .try_next()
            .await
            .map_err(|source| NetlinkError::Request { op: op(), source })?
        {
            if let Some(c) = address_of(&msg) {
                out.push(c);
            }
        }
        Ok(out)
    }

    /// The addresses on interface `ifindex` still in duplicate address detection (IPv6
    /// "tentative"); the kernel does not use them as a source yet.
    pub async fn tentative_addrs(&self, ifindex: u32) -> Result<Vec<Cidr>, NetlinkError> {
        let mut stream = self
            .handle
            .address()
            .get()
            .set_link_index_filter(ifindex)
            .execute();
        let mut out = Vec::new();
        while let Some(msg) = stream
            .try_next()
            .await
            .map_err(|source| NetlinkError::Request {
                op: format!("list addresses of interface {ifindex}"),
                source,
            })?
        {
            if is_tentative(&msg)
                && let Some(c) = address_of(&msg)
            {
                out.push(c);
            }
        }
        Ok(out)
    }

    /// Waits (at most `limit`) until none of `addrs` is tentative on `ifindex`.
    async fn wait_usable(&self, ifindex: u32, addrs: &[Cidr], limit: Duration) {
        let deadline = tokio::time::Instant::now() + limit;
        loop {
            match self.tentative_addrs(ifindex).await {
                Ok(t) if t.iter().any(|a| addrs.contains(a)) => {}
                // Nothing pending, or no way to tell: go on and let the kernel judge.
                _ => return,
            }
            if tokio::time::Instant::now() >= deadline {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Adds `addr` (with its prefix length) to interface `ifindex`; already there is success.
    pub async fn add_addr(&self, ifindex: u32, addr: Cidr) -> Result<(), NetlinkError> {
        let r = self
            .handle
            .address()
            .add(ifindex, addr.addr(), addr.len())
            .execute()
            .await;
        tolerate(r, libc::EEXIST, || format!("add address {addr}"))
    }

    /// Removes `addr` from interface `ifindex`; already gone is success.
    pub async fn del_addr(&self, ifindex: u32, addr: Cidr) -> Result<(), NetlinkError> {
        let msg = match addr.addr() {
            IpAddr::V4(a) => AddressMessageBuilder::<std::net::Ipv4Addr>::new()
                .index(ifindex)
                .address(a, addr.len())
                .build(),
            IpAddr::V6(a) => AddressMessageBuilder::<std::net::Ipv6Addr>::new()
                .index(ifindex)
                .address(a, addr.len())
                .build(),
        };
        let r = self.handle.address().del(msg).execute().await;
        tolerate(r, libc::EADDRNOTAVAIL, || format!("delete address {addr}"))
    }

    /// The managed routes through interface `ifindex` in the main table (protocol static, metric
    /// 5000), as installed.
    #[cfg_attr(not(test), allow(dead_code))] // read-back, used by the namespace tests
    pub async fn routes(&self, ifindex: u32) -> Result<Vec<RouteSpec>, NetlinkError> {
        let mut out = Vec::new();
        for family in [AddressFamily::Inet, AddressFamily::Inet6] {
            let mut query = RouteMessage::default();
            query.header.address_family = family;
            let mut stream = self.handle.route().get(query).execute();
            while let Some(msg) =
                stream
                    .try_next()
                    .await
                    .map_err(|source| NetlinkError::Request {
                        op: format!("list routes of interface {ifindex}"),
                        source,
                    })?
            {
                if let Some(r) = managed_route_of(&msg, ifindex) {
                    out.push(r);
                }
            }
        }
        Ok(out)
    }

    /// Installs `route` through interface `ifindex`; an identical route already there is success.
    pub async fn add_route(&self, ifindex: u32, route: &RouteSpec) -> Result<(), NetlinkError> {
        let r = self
            .handle
            .route()
            .add(route_message(ifindex, route))
            .execute()
            .await;
        tolerate(r, libc::EEXIST, || format!("add route {route}"))
    }

    /// Removes `route` from interface `ifindex`; already gone is success.
    pub async fn del_route(&self, ifindex: u32, route: &RouteSpec) -> Result<(), NetlinkError> {
        let r = self
            .handle
            .route()
            .del(route_message(ifindex, route))
            .execute()
            .await;
        tolerate(r, libc::ESRCH, || format!("delete route {route}"))
    }

    /// Carries out `plan` on interface `ifname` in its order (route removals, address removals,
    /// address additions, route additions), recording each success in `applied` so that the next
    /// [`super::managed::sync`] retries only what failed. Fails as a whole only when the
    /// interface cannot be found. spec: service.md §8.2
    pub async fn apply(
        &self,
        plan: &Plan,
        ifname: &str,
        applied: &mut Applied,
    ) -> Result<ApplyReport, NetlinkError> {
        let ifindex = self.ifindex(ifname).await?;
        let mut report = ApplyReport::default();
        for r in &plan.del_routes {
            match self.del_route(ifindex, r).await {
                Ok(()) => applied.routes.retain(|x| x != r),
                Err(error) => report.failures.push(ApplyFailure { error }),
            }
        }
        for a in &plan.del_addrs {
            match self.del_addr(ifindex, *a).await {
                Ok(()) => {
                    applied.addrs.retain(|x| x != a);
                    // The kernel drops IPv4 routes whose source was this address along with it
                    // (IPv6 routes lose their source instead; the plan removed those before).
                    if a.addr().is_ipv4() {
                        applied.routes.retain(|r| r.src != a.addr());
                    }
                }
                Err(error) => report.failures.push(ApplyFailure { error }),
            }
        }
        for a in &plan.add_addrs {
            match self.add_addr(ifindex, *a).await {
                Ok(()) if !applied.addrs.contains(a) => applied.addrs.push(*a),
                Ok(()) => {}
                Err(error) => report.failures.push(ApplyFailure { error }),
            }
        }
        // A route's source must be a usable address: wait out DAD on the IPv6 addresses just
        // added if a new IPv6 route uses one of them.
        let fresh_v6: Vec<Cidr> = plan
            .add_addrs
            .iter()
            .filter(|a| a.addr().is_ipv6() && applied.addrs.contains(a))
            .copied()
            .collect();
        if plan
            .add_routes
            .iter()
            .any(|r| fresh_v6.iter().any(|a| a.addr() == r.src))
        {
            self.wait_usable(ifindex, &fresh_v6, DAD_WAIT).await;
        }
        for r in &plan.add_routes {
            match self.add_route(ifindex, r).await {
                Ok(()) if !applied.routes.contains(r) => applied.routes.push(*r),
                Ok(()) => {}
                Err(error) => report.failures.push(ApplyFailure { error }),
            }
        }
        Ok(report)
    }
}

/// `r`, with the kernel answer `ok_errno` counted as success.
fn tolerate(
    r: Result<(), rtnetlink::Error>,
    ok_errno: i32,
    op: impl FnOnce() -> String,
) -> Result<(), NetlinkError> {
    match r {
        Ok(()) => Ok(()),
        Err(rtnetlink::Error::NetlinkError(m)) if m.to_io().raw_os_error() == Some(ok_errno) => {
            Ok(())
        }
        Err(source) => Err(NetlinkError::Request { op: op(), source }),
    }
}

/// The address (with prefix length) an address message carries: `IFA_LOCAL` where present
/// (IPv4; on point-to-point links `IFA_ADDRESS` is the peer), else `IFA_ADDRESS`.
fn address_of(msg: &AddressMessage) -> Option<Cidr> {
    let mut address = None;
    let mut local = None;
    for a in &msg.attributes {
        match a {
            AddressAttribute::Local(ip) => local = Some(*ip),
            AddressAttribute::Address(ip) => address = Some(*ip),
            _ => {}
        }
    }
    Cidr::new(local.or(address)?, msg.header.prefix_len).ok()
}

/// Whether an address message has the tentative flag (in the header or the 32-bit attribute).
fn is_tentative(msg: &AddressMessage) -> bool {
    msg.header.flags.contains(AddressHeaderFlags::Tentative)
        || msg
            .attributes
            .iter()
            .any(|a| matches!(a, AddressAttribute::Flags(f) if f.contains(AddressFlags::Tentative)))
}

/// The netlink form of `target [via] dev <ifindex> src <src> proto static metric 5000` in the
/// main table.
fn route_message(ifindex: u32, route: &RouteSpec) -> RouteMessage {
    let target = route.target.to_network();
    // `managed::desired_routes` gives source and next hop the target's family; a mixed one
    // would be left out here and the kernel would judge the rest.
    let mut msg = match target.addr() {
        IpAddr::V4(t) => {
            let mut b = RouteMessageBuilder::<std::net::Ipv4Addr>::new()
                .destination_prefix(t, target.len());
            if let IpAddr::V4(s) = route.src {
                b = b.pref_source(s);
            }
            if let Some(IpAddr::V4(g)) = route.via {
                b = b.gateway(g);
            }
            b.build()
        }
        IpAddr::V6(t) => {
            let mut b = RouteMessageBuilder::<std::net::Ipv6Addr>::new()
                .destination_prefix(t, target.len());
            if let IpAddr::V6(s) = route.src {
                b = b.pref_source(s);
            }
            if let Some(IpAddr::V6(g)) = route.via {
                b = b.gateway(g);
            }
            b.build()
        }
    };
    msg.header.protocol = RouteProtocol::Static;
    msg.attributes.push(RouteAttribute::Oif(ifindex));
    msg.attributes.push(RouteAttribute::Priority(ROUTE_METRIC));
    msg
}

/// The [`RouteSpec`] of a dumped route if it is one of ours: main table, protocol static, metric
/// 5000, out of `ifindex`.
#[cfg_attr(not(test), allow(dead_code))] // read-back, used by the namespace tests
fn managed_route_of(msg: &RouteMessage, ifindex: u32) -> Option<RouteSpec> {
    if msg.header.table != RouteHeader::RT_TABLE_MAIN
        || msg.header.protocol != RouteProtocol::Static
    {
        return None;
    }
    let mut dst = None;
    let mut via = None;
    let mut src = None;
    let mut oif = None;
    let mut metric = 0;
    for a in &msg.attributes {
        match a {
            RouteAttribute::Destination(d) => dst = route_ip(d),
            RouteAttribute::Gateway(g) => via = route_ip(g),
            RouteAttribute::PrefSource(s) => src = route_ip(s),
            RouteAttribute::Oif(i) => oif = Some(*i),
            RouteAttribute::Priority(p) => metric = *p,
            _ => {}
        }
    }
    if oif != Some(ifindex) || metric != ROUTE_METRIC {
        return None;
    }
    let dst = match dst {
        Some(d) => d,
        None if msg.header.address_family == AddressFamily::Inet6 => {
            IpAddr::V6(std::net::Ipv6Addr::UNSPECIFIED)
        }
        None => IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED),
    };
    Some(RouteSpec {
        target: Cidr::new(dst, msg.header.destination_prefix_length).ok()?,
        via,
        src: src?,
    })
}

#[cfg_attr(not(test), allow(dead_code))] // read-back, used by the namespace tests
fn route_ip(a: &RouteAddress) -> Option<IpAddr> {
    match a {
        RouteAddress::Inet(v) => Some(IpAddr::V4(*v)),
        RouteAddress::Inet6(v) => Some(IpAddr::V6(*v)),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(target: &str, via: Option<&str>, src: &str) -> RouteSpec {
        RouteSpec {
            target: target.parse().expect("test CIDR"),
            via: via.map(|v| v.parse().expect("test IP")),
            src: src.parse().expect("test IP"),
        }
    }

    #[test]
    fn route_messages_round_trip() {
        for r in [
            spec("192.168.100.0/24", Some("10.147.17.1"), "10.147.17.38"),
            spec("10.147.17.128/25", None, "10.147.17.38"),
            spec("0.0.0.0/1", Some("10.147.17.1"), "10.147.17.38"),
            spec("fd99::/64", Some("fd7c::1"), "fd7c::26"),
            spec("::/1", None, "fd7c::26"),
        ] {
            let mut msg = route_message(7, &r);
            assert_eq!(msg.header.table, RouteHeader::RT_TABLE_MAIN);
            assert_eq!(msg.header.protocol, RouteProtocol::Static);
            assert_eq!(managed_route_of(&msg, 7), Some(r), "{r}");
            assert_eq!(managed_route_of(&msg, 8), None);
            msg.header.protocol = RouteProtocol::Kernel;
            assert_eq!(managed_route_of(&msg, 7), None);
        }
    }
}
