//! Virtual ports: one TAP per configured network, its managed addresses and routes, DNS, and
//! the multicast groups the host subscribes to on it. spec: service.md §8, vl2.md §3.2

use std::collections::HashMap;
use std::net::IpAddr;
use std::os::fd::{AsRawFd, RawFd};
use std::sync::Arc;

use anyhow::{Context, Result};
use tokio::io::unix::AsyncFd;
use tokio::sync::mpsc;
use weft_engine::io::tap::{Tap, TapOptions, choose_tap_name, multicast_macs};
use weft_wire::NetworkId;
use weft_wire::mac::Mac;
use weft_wire::netconf::NetworkConfig;
use weft_wire::verbs::vl2::MulticastGroup;

use crate::host::dns::{self, DnsConfig};
use crate::host::managed::{self, Applied, Cidr, ConfigRoute, LocalNetSettings};
use crate::host::netlink::Netlink;

/// Frames waiting between a TAP reader and the service loop (dropped beyond this).
pub(crate) const TAP_QUEUE: usize = 1024;

/// A TAP shared between its reader task and the loop that writes to it.
struct TapFd(Arc<Tap>);

impl AsRawFd for TapFd {
    fn as_raw_fd(&self) -> RawFd {
        self.0.as_raw_fd()
    }
}

/// One network's port.
#[derive(Debug)]
pub(crate) struct Port {
    pub(crate) tap: Arc<Tap>,
    pub(crate) mtu: u32,
    pub(crate) applied: Applied,
    /// The frame reader when frames are served here (`None` when the data plane serves them).
    reader: Option<tokio::task::JoinHandle<()>>,
}

impl Drop for Port {
    fn drop(&mut self) {
        if let Some(r) = &self.reader {
            r.abort();
        }
    }
}

/// All ports of the node.
pub(crate) struct Ports {
    ports: HashMap<NetworkId, Port>,
    netlink: Option<Netlink>,
    frames: mpsc::Sender<(NetworkId, Vec<u8>)>,
    devicemap: Option<String>,
    /// Whether frames are read and written here; false when the data-plane process serves the
    /// TAPs (this process creates and configures them, and passes their descriptors on).
    serve_frames: bool,
    /// Queues per TAP (the data plane's workers); 1: a single-queue TAP.
    queues: usize,
    /// Frames dropped because a TAP write failed or a queue was full.
    pub(crate) drops: u64,
}

impl std::fmt::Debug for Ports {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ports")
            .field("ports", &self.ports.keys().collect::<Vec<_>>())
            .finish_non_exhaustive()
    }
}

fn cidr(n: &ipnet::IpNet) -> Option<Cidr> {
    Cidr::new(n.addr(), n.prefix_len()).ok()
}

impl Ports {
    pub(crate) fn new(
        frames: mpsc::Sender<(NetworkId, Vec<u8>)>,
        devicemap: Option<String>,
        serve_frames: bool,
        queues: usize,
    ) -> Self {
        let netlink = match Netlink::connect() {
            Ok(n) => Some(n),
            Err(e) => {
                eprintln!("weft: netlink unavailable, managed addresses will not be applied: {e}");
                None
            }
        };
        Ports {
            ports: HashMap::new(),
            netlink,
            frames,
            devicemap,
            serve_frames,
            queues: queues.max(1),
            drops: 0,
        }
    }

    /// Creates the TAP on the first config, or updates its MTU; returns a new TAP's queues (for
    /// the data plane to serve; the first is the device itself). spec: service.md §8.1
    pub(crate) fn ensure(
        &mut self,
        nwid: NetworkId,
        own: weft_wire::Address,
        c: &NetworkConfig,
    ) -> Result<Option<Vec<Arc<Tap>>>> {
        if let Some(p) = self.ports.get_mut(&nwid) {
            if p.mtu != c.mtu {
                p.tap.set_mtu(c.mtu).context("set MTU")?;
                p.mtu = c.mtu;
            }
            return Ok(None);
        }
        let name = choose_tap_name(nwid.0, self.devicemap.as_deref());
        // A data-plane process gets the TAP with offloads (TSO, checksums: super-frames it
        // segments and coalesces itself); this process reads plain frames.
        let opts = TapOptions {
            vnet_hdr: !self.serve_frames,
            multi_queue: !self.serve_frames && self.queues > 1,
        };
        let tap = Tap::create(&name, &opts).with_context(|| format!("create TAP {name}"))?;
        let mut queues = Vec::new();
        if opts.multi_queue {
            // further queues attach to the same device by name, one per data-plane worker
            for _ in 1..self.queues {
                queues.push(Arc::new(
                    Tap::create(tap.name(), &opts)
                        .with_context(|| format!("open another queue of {name}"))?,
                ));
            }
        }
        if opts.vnet_hdr {
            for q in std::iter::once(&tap).chain(queues.iter().map(|q| &**q)) {
                if let Err(e) = q.enable_offloads() {
                    eprintln!("weft: {name}: no TAP offloads ({e}); frames go one by one");
                }
            }
        }
        tap.set_mac(Mac::for_member(own, nwid).0)
            .context("set MAC")?;
        tap.set_mtu(c.mtu).context("set MTU")?;
        tap.set_up(true).context("bring up")?;
        let tap = Arc::new(tap);
        let reader = self.serve_frames.then(|| {
            let out = self.frames.clone();
            tokio::spawn(read_frames(tap.clone(), move |f| {
                // a full queue drops the frame, like a full NIC ring
                let _ = out.try_send((nwid, f));
            }))
        });
        eprintln!("weft: network {:016x} on {}", nwid.0, tap.name());
        // the further queues live as long as the data plane holds them (they are passed again
        // after a data-plane restart)
        let mut all = vec![tap.clone()];
        all.extend(queues);
        self.ports.insert(
            nwid,
            Port {
                tap: tap.clone(),
                mtu: c.mtu,
                applied: Applied::default(),
                reader,
            },
        );
        Ok(Some(all))
    }

    /// Removes a network's port (the TAP disappears when its descriptor closes).
    pub(crate) fn remove(&mut self, nwid: NetworkId) {
        if let Some(p) = self.ports.remove(&nwid) {
            let name = p.tap.name().to_owned();
            drop(p);
            let _ = std::thread::spawn(move || dns::remove(&name));
        }
    }

    /// Writes a frame to a network's TAP (dropped if the port is busy or absent).
    pub(crate) fn write(&mut self, nwid: NetworkId, frame: &[u8]) {
        let Some(p) = self.ports.get(&nwid) else {
            return;
        };
        // spec: service.md §8.1 — frames longer than the MTU are dropped
        if frame.len() > p.mtu as usize + 14 || p.tap.write(frame).is_err() {
            self.drops += 1;
        }
    }

    /// Applies the managed addresses, routes and DNS the local settings allow.
    /// spec: service.md §8.2
    pub(crate) async fn sync_managed(
        &mut self,
        nwid: NetworkId,
        c: &NetworkConfig,
        settings: &LocalNetSettings,
        online: bool,
    ) {
        let Some(p) = self.ports.get_mut(&nwid) else {
            return;
        };
        let assigned: Vec<Cidr> = c.static_ips.iter().filter_map(cidr).collect();
        let addrs = managed::desired_addrs(&assigned, settings);
        let routes: Vec<ConfigRoute> = c
            .routes
            .iter()
            .filter_map(|r| {
                Some(ConfigRoute {
                    target: cidr(&r.target)?,
                    via: r.via,
                })
            })
            .collect();
        let route_specs = managed::desired_routes(&routes, &addrs, settings, online);
        let plan = managed::sync(&addrs, &route_specs, &p.applied);
        if let Some(nl) = &self.netlink
            && !plan.is_empty()
        {
            match nl.apply(&plan, p.tap.name(), &mut p.applied).await {
                Ok(report) => {
                    for f in report.failures {
                        eprintln!("weft: {}: {}", p.tap.name(), f.error);
                    }
                }
                Err(e) => eprintln!("weft: {}: {e}", p.tap.name()),
            }
        }
        let dns_cfg = DnsConfig {
            domain: c.dns.domain.clone(),
            servers: c.dns.servers.clone(),
        };
        if settings.allow_dns {
            let name = p.tap.name().to_owned();
            let s = settings.clone();
            tokio::task::spawn_blocking(move || {
                let outcome = dns::apply(&name, &dns_cfg, &s);
                if !matches!(outcome, dns::DnsOutcome::Applied) {
                    eprintln!("weft: {name}: DNS {outcome}");
                }
            });
        }
    }

    /// The groups the host subscribes to on a network's port: the OS multicast list plus the
    /// address-resolution group of each address on it. spec: vl2.md §3.2
    pub(crate) fn multicast_groups(&self, nwid: NetworkId) -> Vec<MulticastGroup> {
        let Some(p) = self.ports.get(&nwid) else {
            return Vec::new();
        };
        let mut v: Vec<MulticastGroup> = multicast_macs(p.tap.name())
            .unwrap_or_default()
            .into_iter()
            .map(|m| MulticastGroup {
                mac: Mac(m),
                adi: 0,
            })
            .collect();
        for a in &p.applied.addrs {
            v.push(match a.addr() {
                IpAddr::V4(ip) => MulticastGroup::for_ipv4_arp(ip),
                IpAddr::V6(ip) => MulticastGroup::for_ipv6_solicited(ip),
            });
        }
        v.sort();
        v.dedup();
        v
    }

    /// TAP names by network (for the API).
    pub(crate) fn name(&self, nwid: NetworkId) -> Option<String> {
        self.ports.get(&nwid).map(|p| p.tap.name().to_owned())
    }
}

/// Reads frames from a TAP and hands each to `out` until the device fails.
pub(crate) async fn read_frames(tap: Arc<Tap>, out: impl Fn(Vec<u8>)) {
    // `AsyncFd::new` is deprecated because a caller could close the descriptor while it is
    // registered. Here the registration owns the `Arc<Tap>` that owns the descriptor, so the
    // descriptor outlives the registration; the unsafe `register` would add nothing but
    // `unsafe` in a crate that forbids it.
    #[allow(deprecated)]
    let Ok(fd) = AsyncFd::new(TapFd(tap)) else {
        return;
    };
    let mut buf = vec![0u8; 65_536];
    loop {
        let Ok(mut guard) = fd.readable().await else {
            return;
        };
        loop {
            match guard.try_io(|inner| inner.get_ref().0.read(&mut buf)) {
                Ok(Ok(n)) => out(buf[..n].to_vec()),
                Ok(Err(_)) => return,
                Err(_would_block) => break,
            }
        }
    }
}

/// The local settings of a network from its `.local.conf` (defaults when absent).
pub(crate) fn local_settings(bytes: Option<&[u8]>) -> LocalNetSettings {
    bytes.map(LocalNetSettings::parse).unwrap_or_default()
}
