//! Talking to the gateway: the default route (`/proc/net/route`), PCP / NAT-PMP through
//! `crab_nat`, UPnP IGD (SSDP discovery and SOAP) through `igd-next`. No protocol code of our
//! own: this module only chooses addresses and classifies the answers.

use std::net::{IpAddr, Ipv4Addr, SocketAddr, UdpSocket as StdUdpSocket};
use std::num::NonZeroU16;
use std::time::Duration;

use crab_nat::{InternetProtocol, PortMapping, PortMappingOptions, PortMappingType, TimeoutConfig};
use igd_next::aio::Gateway;
use igd_next::aio::tokio::Tokio;
use igd_next::{PortMappingProtocol, SearchError, SearchOptions};

use super::Protocol;

/// Why an attempt produced no mapping.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Failure {
    /// Nothing answered (no SSDP reply, no PCP/NAT-PMP answer, no default route).
    NoGateway,
    /// A gateway answered but would not map the port (the reason as it said it).
    Refused(String),
}

impl Failure {
    /// A refusal beats "nothing answered" when several protocols were tried.
    fn merge(self, other: Failure) -> Failure {
        match (self, other) {
            (Failure::Refused(a), _) => Failure::Refused(a),
            (Failure::NoGateway, o) => o,
        }
    }
}

/// Where to look for gateways and what to ask for.
#[derive(Debug, Clone)]
pub(crate) struct Targets {
    /// Where SSDP M-SEARCH requests go (the UPnP multicast group, `239.255.255.250:1900`).
    pub(crate) ssdp: SocketAddr,
    /// The PCP/NAT-PMP server; `None` = the IPv4 default gateway from `/proc/net/route`.
    pub(crate) pmp_gateway: Option<Ipv4Addr>,
    /// How long one discovery may take per protocol.
    pub(crate) timeout: Duration,
    /// Requested lease, seconds.
    pub(crate) lease_secs: u32,
    /// Try UPnP IGD.
    pub(crate) upnp: bool,
    /// Try PCP (falling back to NAT-PMP when the gateway asks for it).
    pub(crate) pmp: bool,
    /// Try NAT-PMP (RFC 6886) directly: when PCP is off, or after PCP failed.
    pub(crate) natpmp: bool,
}

/// The UPnP multicast group and port. (UPnP Device Architecture 1.1 §1.1)
pub(crate) const SSDP_GROUP: SocketAddr =
    SocketAddr::new(IpAddr::V4(Ipv4Addr::new(239, 255, 255, 250)), 1900);

const DESCRIPTION: &str = "weft (ZeroTier)";

/// A mapping held on a gateway.
#[derive(Debug)]
pub(crate) struct Lease {
    pub(crate) protocol: Protocol,
    /// The address peers outside reach us at.
    pub(crate) external: SocketAddr,
    /// Seconds the gateway granted.
    pub(crate) lifetime: u32,
    kind: LeaseKind,
}

#[derive(Debug)]
enum LeaseKind {
    Upnp {
        gw: Box<Gateway<Tokio>>,
        local: SocketAddr,
    },
    Pmp(Box<PortMapping>),
}

/// The IPv4 default gateway in the text of `/proc/net/route` (lowest metric wins).
pub(crate) fn default_gateway(route_text: &str) -> Option<Ipv4Addr> {
    const RTF_UP: u32 = 0x1;
    const RTF_GATEWAY: u32 = 0x2;
    route_text
        .lines()
        .skip(1)
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            let hex = |i: usize| f.get(i).and_then(|s| u32::from_str_radix(s, 16).ok());
            let (dest, gw, flags, metric, mask) = (hex(1)?, hex(2)?, hex(3)?, f.get(6)?, hex(7)?);
            let metric: u32 = metric.parse().ok()?;
            (dest == 0 && mask == 0 && flags & (RTF_UP | RTF_GATEWAY) == RTF_UP | RTF_GATEWAY)
                // the kernel prints the address as a native-endian u32 of network-order bytes
                .then(|| (metric, Ipv4Addr::from(gw.to_ne_bytes())))
        })
        .min_by_key(|(m, _)| *m)
        .map(|(_, ip)| ip)
}

/// Our address on the way to `to` (a connected UDP socket; nothing is sent).
fn local_ip_towards(to: IpAddr) -> Option<IpAddr> {
    let s = StdUdpSocket::bind(SocketAddr::new(
        if to.is_ipv4() {
            Ipv4Addr::UNSPECIFIED.into()
        } else {
            std::net::Ipv6Addr::UNSPECIFIED.into()
        },
        0,
    ))
    .ok()?;
    s.connect(SocketAddr::new(to, 9)).ok()?;
    s.local_addr().ok().map(|a| a.ip())
}

/// One round: PCP/NAT-PMP to the default gateway, then UPnP. The first mapping wins.
pub(crate) async fn map(t: &Targets, port: NonZeroU16) -> Result<Lease, Failure> {
    let mut failure = Failure::NoGateway;
    if t.pmp || t.natpmp {
        let gw = t.pmp_gateway.or_else(|| {
            std::fs::read_to_string("/proc/net/route")
                .ok()
                .and_then(|s| default_gateway(&s))
        });
        if let Some(gw) = gw {
            if t.pmp {
                match map_pmp(t, gw, port).await {
                    Ok(l) => return Ok(l),
                    Err(f) => failure = failure.merge(f),
                }
            }
            if t.natpmp {
                match map_natpmp(t, gw, port).await {
                    Ok(l) => return Ok(l),
                    Err(f) => failure = failure.merge(f),
                }
            }
        }
    }
    if t.upnp {
        match map_upnp(t, port).await {
            Ok(l) => return Ok(l),
            Err(f) => failure = failure.merge(f),
        }
    }
    Err(failure)
}

fn pmp_timeouts(total: Duration) -> TimeoutConfig {
    // three sends, each waiting twice as long: total ≈ 7 × initial
    TimeoutConfig {
        initial_timeout: (total / 7).max(Duration::from_millis(50)),
        max_retries: 2,
        max_retry_timeout: None,
    }
}

fn pmp_failure(e: &crab_nat::MappingFailure) -> Failure {
    use crab_nat::{MappingFailure as M, natpmp, pcp};
    match e {
        M::NatPmp(natpmp::Failure::Timeout | natpmp::Failure::Socket(_))
        | M::Pcp(pcp::Failure::Timeout | pcp::Failure::Socket(_)) => Failure::NoGateway,
        other => Failure::Refused(other.to_string()),
    }
}

async fn map_pmp(t: &Targets, gw: Ipv4Addr, port: NonZeroU16) -> Result<Lease, Failure> {
    let client = local_ip_towards(gw.into()).ok_or(Failure::NoGateway)?;
    let timeouts = pmp_timeouts(t.timeout);
    let options = PortMappingOptions {
        external_port: Some(port),
        lifetime_seconds: Some(t.lease_secs),
        timeout_config: Some(timeouts),
    };
    // PCP first, NAT-PMP when the gateway says it only speaks version 0 (RFC 6887 §9).
    let m = PortMapping::new(gw.into(), client, InternetProtocol::Udp, port, options)
        .await
        .map_err(|e| pmp_failure(&e))?;
    let (protocol, ip) = match m.mapping_type() {
        PortMappingType::Pcp { external_ip, .. } => (Protocol::Pcp, external_ip),
        PortMappingType::NatPmp => {
            let ip = crab_nat::natpmp::external_address(gw.into(), Some(timeouts))
                .await
                .map_err(|e| pmp_failure(&e.into()))?;
            (Protocol::NatPmp, IpAddr::V4(ip))
        }
    };
    Ok(Lease {
        protocol,
        external: SocketAddr::new(ip, m.external_port().get()),
        lifetime: m.lifetime(),
        kind: LeaseKind::Pmp(Box::new(m)),
    })
}

/// NAT-PMP only (RFC 6886), for gateways whose PCP is missing or broken.
async fn map_natpmp(t: &Targets, gw: Ipv4Addr, port: NonZeroU16) -> Result<Lease, Failure> {
    let timeouts = pmp_timeouts(t.timeout);
    let options = PortMappingOptions {
        external_port: Some(port),
        lifetime_seconds: Some(t.lease_secs),
        timeout_config: Some(timeouts),
    };
    let m = crab_nat::natpmp::port_mapping(gw.into(), InternetProtocol::Udp, port, options)
        .await
        .map_err(|e| pmp_failure(&e.into()))?;
    let ip = crab_nat::natpmp::external_address(gw.into(), Some(timeouts))
        .await
        .map_err(|e| pmp_failure(&e.into()))?;
    Ok(Lease {
        protocol: Protocol::NatPmp,
        external: SocketAddr::new(IpAddr::V4(ip), m.external_port().get()),
        lifetime: m.lifetime(),
        kind: LeaseKind::Pmp(Box::new(m)),
    })
}

async fn map_upnp(t: &Targets, port: NonZeroU16) -> Result<Lease, Failure> {
    let mut options = SearchOptions::default();
    options.broadcast_address = t.ssdp;
    options.timeout = Some(t.timeout);
    options.single_search_timeout = Some(t.timeout);
    let gw = match igd_next::aio::tokio::search_gateway(options).await {
        Ok(gw) => gw,
        Err(SearchError::NoResponseWithinTimeout | SearchError::IoError(_)) => {
            return Err(Failure::NoGateway);
        }
        Err(e) => return Err(Failure::Refused(format!("UPnP: {e}"))),
    };
    let local_ip = local_ip_towards(gw.addr.ip()).ok_or(Failure::NoGateway)?;
    let local = SocketAddr::new(local_ip, port.get());
    let ip = gw
        .get_external_ip()
        .await
        .map_err(|e| Failure::Refused(format!("UPnP: {e}")))?;
    if ip.is_unspecified() {
        return Err(Failure::Refused("UPnP: no external address".into()));
    }
    let udp = PortMappingProtocol::UDP;
    let external_port = match gw
        .add_port(udp, port.get(), local, t.lease_secs, DESCRIPTION)
        .await
    {
        Ok(()) => port.get(),
        // the same external port is taken (or refused): let the gateway pick one
        Err(_) => gw
            .add_any_port(udp, local, t.lease_secs, DESCRIPTION)
            .await
            .map_err(|e| Failure::Refused(format!("UPnP: {e}")))?,
    };
    Ok(Lease {
        protocol: Protocol::Upnp,
        external: SocketAddr::new(ip, external_port),
        lifetime: t.lease_secs,
        kind: LeaseKind::Upnp {
            gw: Box::new(gw),
            local,
        },
    })
}

impl Lease {
    /// Asks the gateway for the same mapping again (a fresh lease).
    pub(crate) async fn renew(&mut self, lease_secs: u32) -> Result<(), Failure> {
        match &mut self.kind {
            LeaseKind::Upnp { gw, local } => {
                gw.add_port(
                    PortMappingProtocol::UDP,
                    self.external.port(),
                    *local,
                    lease_secs,
                    DESCRIPTION,
                )
                .await
                .map_err(|e| Failure::Refused(format!("UPnP: {e}")))?;
                self.lifetime = lease_secs;
            }
            LeaseKind::Pmp(m) => {
                m.renew().await.map_err(|e| pmp_failure(&e))?;
                self.lifetime = m.lifetime();
                self.external.set_port(m.external_port().get());
            }
        }
        Ok(())
    }

    /// Removes the mapping from the gateway.
    pub(crate) async fn remove(self) -> Result<(), Failure> {
        match self.kind {
            LeaseKind::Upnp { gw, .. } => gw
                .remove_port(PortMappingProtocol::UDP, self.external.port())
                .await
                .map_err(|e| Failure::Refused(format!("UPnP: {e}"))),
            LeaseKind::Pmp(m) => m
                .try_drop()
                .await
                .map_err(|(e, _)| Failure::Refused(e.to_string())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_route_from_proc() {
        // two default routes (metrics 100 and 5), a link route, a host route with a gateway
        let text = "Iface\tDestination\tGateway \tFlags\tRefCnt\tUse\tMetric\tMask\t\tMTU\tWindow\tIRTT\n\
            eth0\t00000000\t0101A8C0\t0003\t0\t0\t100\t00000000\t0\t0\t0\n\
            eth1\t00000000\t010010AC\t0003\t0\t0\t5\t00000000\t0\t0\t0\n\
            eth0\t0001A8C0\t00000000\t0001\t0\t0\t0\t00FFFFFF\t0\t0\t0\n\
            eth0\t0202020A\t0101A8C0\t0007\t0\t0\t0\tFFFFFFFF\t0\t0\t0\n";
        let gw = default_gateway(text).expect("a default gateway");
        if cfg!(target_endian = "little") {
            assert_eq!(gw, Ipv4Addr::new(172, 16, 0, 1));
        }
        // no default route, a header only, garbage
        assert_eq!(
            default_gateway(&text.lines().take(1).collect::<String>()),
            None
        );
        assert_eq!(default_gateway(""), None);
        assert_eq!(default_gateway("x\neth0 zz yy\n"), None);
        let link_only = "h\neth0\t00000000\t00000000\t0001\t0\t0\t0\t00000000\t0\t0\t0\n";
        assert_eq!(default_gateway(link_only), None);
    }

    #[test]
    fn refusals_win_over_silence() {
        let r = Failure::Refused("no".into());
        assert_eq!(Failure::NoGateway.merge(r.clone()), r);
        assert_eq!(r.clone().merge(Failure::NoGateway), r);
        assert_eq!(
            Failure::NoGateway.merge(Failure::NoGateway),
            Failure::NoGateway
        );
    }
}
