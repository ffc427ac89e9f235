//! The service loop: UDP sockets ↔ the protocol core, timers, persistence, status file.

use std::future::Future;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::num::NonZeroU16;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result};
use rand_core::{OsRng, RngCore};
use serde_json::Value;
use tokio::net::UdpSocket;
use weft_engine::{Engine, Tables, Verdict};
use weft_proto::{Event, LocalSocket, Node, NodeConfig, Timestamp, Transmit};
use weft_wire::Address;
use weft_wire::inet::IpPort;

use super::api::{ApiRequest, NetworkSettings};
use super::controller_api::Ctl;
use super::home::Home;
use super::json;
use super::ports::{self, Ports};
use super::tcp_fallback::{FallbackConfig, TUNNEL_SOCKET, TcpFallback};
use crate::fsutil::{self, PUBLIC_MODE};
use crate::host::managed::LocalNetSettings;
use crate::portmap::{self, PortMapper};
use std::collections::HashMap;
use weft_wire::NetworkId;
use weft_wire::mac::Mac;

/// The file the daemon rewrites every second with its status and peers.
pub(crate) const STATUS_FILE: &str = "status.json";
/// USER_MESSAGE type used by `POST /unstable/ping` ("weft" + 1; above the range reserved for
/// ZeroTier, Inc.).
const PING_MESSAGE_TYPE: u64 = 0x7765_6674_0000_0001;
/// UDP receive/send buffer size asked for.
const SOCKET_BUFFER: usize = 4 << 20;

fn now_ms() -> Timestamp {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as Timestamp)
}

fn bind(addr: SocketAddr) -> Result<UdpSocket> {
    let domain = if addr.is_ipv4() {
        socket2::Domain::IPV4
    } else {
        socket2::Domain::IPV6
    };
    let s = socket2::Socket::new(domain, socket2::Type::DGRAM, Some(socket2::Protocol::UDP))?;
    if addr.is_ipv6() {
        s.set_only_v6(true)?;
    }
    let _ = s.set_recv_buffer_size(SOCKET_BUFFER);
    let _ = s.set_send_buffer_size(SOCKET_BUFFER);
    s.set_nonblocking(true)?;
    s.bind(&addr.into())
        .with_context(|| format!("cannot bind UDP {addr}"))?;
    Ok(UdpSocket::from_std(s.into())?)
}

/// Picks the port: local.conf, else the argument; 0 = random in 20000..65499 (256 tries).
fn choose_port(requested: u16, ips: &[IpAddr]) -> Result<(u16, Vec<UdpSocket>)> {
    let candidates: Vec<u16> = if requested == 0 {
        (0..256)
            .map(|_| 20_000 + (OsRng.next_u32() % 45_500) as u16)
            .collect()
    } else {
        vec![requested]
    };
    let mut last = None;
    for port in candidates {
        let mut socks = Vec::new();
        let mut ok = true;
        for ip in ips {
            match bind(SocketAddr::new(*ip, port)) {
                Ok(s) => socks.push(s),
                // IPv6 may be disabled on this host; IPv4 must work.
                Err(e) if ip.is_ipv6() && ips.len() > 1 => last = Some(e),
                Err(e) => {
                    last = Some(e);
                    ok = false;
                    break;
                }
            }
        }
        if ok && !socks.is_empty() {
            return Ok((port, socks));
        }
    }
    Err(last.unwrap_or_else(|| anyhow::anyhow!("no port could be bound")))
}

struct Service {
    home: Home,
    node: Node,
    sockets: Vec<UdpSocket>,
    settings: Value,
    version: (u8, u8, u16),
    fallback: TcpFallback,
    /// The data plane (in-process for now) and the tables the control plane last published.
    engine: Engine,
    tables: Tables,
    verdicts: Vec<Verdict>,
    /// One TAP per configured network.
    ports: Ports,
    /// Local settings per joined network (`networks.d/<nwid>.local.conf`).
    net_settings: HashMap<NetworkId, LocalNetSettings>,
    /// The network controller (serves networks whose id starts with our address).
    ctl: Ctl,
    /// Status ticks since start (multicast scans every 5, route re-syncs every 30).
    ticks: u64,
    /// The primary UDP port.
    port: u16,
    /// External addresses mapped on the gateway (UPnP/NAT-PMP), advertised like local ones.
    mapped_addresses: Vec<SocketAddr>,
    /// The port mapper of the tertiary port (None when `portMappingEnabled` is false) and what
    /// it last reported.
    portmap: Option<PortMapper>,
    portmap_status: portmap::Status,
}

impl Service {
    fn socket_for(&self, t: &Transmit) -> Vec<usize> {
        let family = |i: &usize| {
            self.sockets[*i]
                .local_addr()
                .map(|a| a.is_ipv4() == t.to.is_ipv4())
                .unwrap_or(false)
        };
        match t.local {
            Some(LocalSocket(l)) if (l as usize) < self.sockets.len() && family(&(l as usize)) => {
                vec![l as usize]
            }
            _ => {
                let all: Vec<usize> = (0..self.sockets.len()).filter(family).collect();
                if t.local.is_some() {
                    all.into_iter().take(1).collect()
                } else {
                    all
                }
            }
        }
    }

    async fn send_udp(&self, t: &Transmit) {
        for i in self.socket_for(t) {
            let s = &self.sockets[i];
            if let Some(ttl) = t.ttl {
                let old = s.ttl().unwrap_or(64);
                let _ = s.set_ttl(u32::from(ttl));
                let _ = s.send_to(&t.data, t.to).await;
                let _ = s.set_ttl(old);
            } else if let Err(e) = s.send_to(&t.data, t.to).await
                && e.kind() != std::io::ErrorKind::WouldBlock
            {
                eprintln!("weft: send to {} failed: {e}", t.to);
            }
        }
    }

    async fn flush(&mut self) {
        while let Some(t) = self.node.poll_transmit() {
            if !self.fallback.route(t.local, t.to, &t.data) {
                continue;
            }
            self.send_udp(&t).await;
        }
        let mut republish = false;
        let mut again = true;
        // Events may produce more transmits (controller answers), and transmits more events.
        while again {
            again = false;
            while let Some(e) = self.node.poll_event() {
                republish |= matches!(e, Event::PeerAdded { .. } | Event::PathsChanged { .. });
                self.on_event(e).await;
                again = true;
            }
            while let Some(t) = self.node.poll_transmit() {
                if self.fallback.route(t.local, t.to, &t.data) {
                    self.send_udp(&t).await;
                }
            }
        }
        if republish {
            self.publish_tables();
        }
    }

    fn settings_of(&self, nwid: NetworkId) -> LocalNetSettings {
        self.net_settings.get(&nwid).cloned().unwrap_or_default()
    }

    /// A new config: persist it, bring up or update the port, apply managed addresses.
    async fn configure_network(
        &mut self,
        nwid: NetworkId,
        config: &weft_wire::netconf::NetworkConfig,
        dictionary: Option<&[u8]>,
    ) {
        if let Some(d) = dictionary
            && let Err(e) = self.home.save_network_conf(nwid, d)
        {
            eprintln!("weft: cannot save network {:016x}: {e:#}", nwid.0);
        }
        match self.ports.ensure(nwid, self.node.address(), config) {
            Ok(()) => self.node.set_port_error(nwid, false),
            Err(e) => {
                eprintln!("weft: network {:016x}: {e:#}", nwid.0);
                self.node.set_port_error(nwid, true);
                return;
            }
        }
        let settings = self.settings_of(nwid);
        let online = self.node.is_online();
        self.ports
            .sync_managed(nwid, config, &settings, online)
            .await;
        let groups = self.ports.multicast_groups(nwid);
        self.node
            .set_multicast_subscriptions(now_ms(), nwid, groups);
    }

    /// Joins a network: files, local settings, the node. spec: service.md §4.4, vl2.md §18.1
    async fn join(&mut self, nwid: NetworkId, s: NetworkSettings) -> Value {
        let cur = self.settings_of(nwid);
        let new = LocalNetSettings {
            allow_managed: s.allow_managed.unwrap_or(cur.allow_managed),
            allow_global: s.allow_global.unwrap_or(cur.allow_global),
            allow_default: s.allow_default.unwrap_or(cur.allow_default),
            allow_dns: s.allow_dns.unwrap_or(cur.allow_dns),
            ..cur.clone()
        };
        let joined = self.node.network(nwid).is_some();
        if (!joined || new != cur || self.home.network_local_conf(nwid).is_none())
            && let Err(e) = self.home.save_network_local_conf(
                nwid,
                new.allow_managed,
                new.allow_global,
                new.allow_default,
                new.allow_dns,
            )
        {
            eprintln!("weft: cannot save network settings: {e:#}");
        }
        self.net_settings.insert(nwid, new);
        if !joined {
            // a placeholder until a config arrives (ad-hoc configs stay this way)
            // spec: vl2.md §1.2, §18.1
            if let Err(e) = self.home.save_network_conf(nwid, b"\n") {
                eprintln!("weft: cannot save network {:016x}: {e:#}", nwid.0);
            }
            self.node.join(now_ms(), nwid, None);
        } else if let Some(c) = self.node.network(nwid).and_then(|n| n.config) {
            self.configure_network(nwid, &c, None).await;
        }
        self.network_value(nwid)
    }

    fn leave(&mut self, nwid: NetworkId) -> Value {
        if !self.node.leave(nwid) {
            return Value::Null;
        }
        self.ports.remove(nwid);
        self.net_settings.remove(&nwid);
        if let Err(e) = self.home.remove_network(nwid) {
            eprintln!("weft: cannot remove network files: {e:#}");
        }
        serde_json::json!({ "result": true })
    }

    fn network_value(&self, nwid: NetworkId) -> Value {
        let Some(n) = self.node.network(nwid) else {
            return Value::Null;
        };
        json::network(
            &n,
            Mac::for_member(self.node.address(), nwid),
            self.ports.name(nwid).as_deref(),
            &self.settings_of(nwid),
            self.node.address(),
        )
    }

    /// Publishes a fresh snapshot of keys and paths to the data plane.
    fn publish_tables(&mut self) {
        self.tables = self.node.data_plane_tables(now_ms());
    }

    /// A datagram from the network: the data plane first (relaying), the rest up to the node.
    async fn receive(&mut self, local: LocalSocket, from: SocketAddr, data: &[u8]) {
        let mut verdicts = std::mem::take(&mut self.verdicts);
        self.engine
            .process_rx(&self.tables, &[(from, data)], &mut verdicts);
        for v in verdicts.drain(..) {
            match v {
                Verdict::Up => self.node.handle_datagram(now_ms(), local, from, data),
                Verdict::Relay {
                    local,
                    to,
                    data,
                    ends,
                } => {
                    let t = Transmit {
                        local: Some(LocalSocket(local)),
                        to,
                        data,
                        ttl: None,
                    };
                    if self.fallback.route(t.local, t.to, &t.data) {
                        self.send_udp(&t).await;
                    }
                    if let Some((src, dst)) = ends {
                        self.node.relayed(now_ms(), src, dst);
                    }
                }
                Verdict::Drop(_) => {}
            }
        }
        self.verdicts = verdicts;
    }

    async fn on_event(&mut self, e: Event) {
        let r = match &e {
            Event::TapFrame { network_id, frame } => {
                self.ports.write(*network_id, frame);
                Ok(())
            }
            Event::NetworkConfigured {
                network_id,
                config,
                dictionary,
            } => {
                self.configure_network(*network_id, config, dictionary.as_deref())
                    .await;
                Ok(())
            }
            Event::NetworkStatus { network_id, status } => {
                eprintln!("weft: network {:016x}: {}", network_id.0, status.as_str());
                Ok(())
            }
            Event::ConfigRequest {
                network_id,
                requester,
                packet_id,
                metadata,
                physical,
            } => {
                self.ctl.request(
                    &mut self.node,
                    now_ms(),
                    *network_id,
                    requester,
                    *packet_id,
                    metadata,
                    *physical,
                );
                Ok(())
            }
            Event::PlanetUpdated { bytes } => {
                eprintln!("weft: planet updated");
                self.home.save_planet(bytes)
            }
            Event::MoonUpdated { id, bytes } => {
                eprintln!("weft: moon {id:016x} updated");
                self.home.save_moon(*id, bytes)
            }
            Event::PeerEvicted { address, record } => self.home.save_peer(*address, record),
            Event::Online(on) => {
                eprintln!("weft: {}", if *on { "online" } else { "offline" });
                Ok(())
            }
            Event::IdentityCollision { reported_by } => {
                eprintln!(
                    "weft: FATAL: root {reported_by} reports another node holds our address with a different key"
                );
                Ok(())
            }
            _ => Ok(()),
        };
        if let Err(err) = r {
            eprintln!("weft: cannot persist state: {err:#}");
        }
    }

    fn status_value(&self, now: Timestamp) -> Value {
        let mut settings = self.settings.clone();
        if let Value::Object(m) = &mut settings {
            let listening: Vec<String> = self
                .sockets
                .iter()
                .filter_map(|s| s.local_addr().ok())
                .map(|a| IpPort(a).to_string())
                .collect();
            m.insert("listeningOn".into(), listening.into());
            let surface: Vec<String> = self
                .node
                .external_addresses()
                .into_iter()
                .map(|a| IpPort(a).to_string())
                .collect();
            m.insert("surfaceAddresses".into(), surface.into());
            m.insert("homeDir".into(), self.home.dir.display().to_string().into());
        }
        let mut v = json::status(
            &self.node,
            now,
            settings,
            self.version,
            self.fallback.active(),
        );
        // weft extension: the port mapper's state
        v["portMapping"] = self.portmap_status.to_json(tokio::time::Instant::now());
        let e = self.engine.stats();
        // weft extension: what the data plane did with received datagrams
        v["dataPlane"] =
            serde_json::json!({ "relayed": e.relayed, "handedUp": e.up, "dropped": e.dropped });
        v
    }

    fn peers_value(&self, now: Timestamp) -> Value {
        let tunneled = self.fallback.active();
        Value::Array(
            self.node
                .peers(now)
                .iter()
                .map(|p| json::peer(p, tunneled))
                .collect(),
        )
    }

    fn write_status(&self) {
        let now = now_ms();
        let doc = serde_json::json!({
            "status": self.status_value(now),
            "peers": self.peers_value(now),
        });
        let text = serde_json::to_vec_pretty(&doc).unwrap_or_default();
        if let Err(e) = fsutil::write_atomic(&self.home.path(STATUS_FILE), &text, PUBLIC_MODE) {
            eprintln!("weft: cannot write status: {e:#}");
        }
    }

    fn moon_value(&self, id: u64) -> Value {
        if let Some(m) = self.node.moons().iter().find(|m| m.id == id) {
            json::moon(m, false)
        } else if self.node.moon_seeds().iter().any(|(x, _)| *x == id) {
            json::waiting_moon(id)
        } else {
            Value::Null
        }
    }

    /// Orbit: a moon file in `moons.d/` is loaded as it is; otherwise a non-zero seed is
    /// remembered and the moon fetched from it. spec: vl1.md §7.6, service.md §4.6
    fn orbit(&mut self, now: Timestamp, id: u64, seed: Address) -> Value {
        let existing = self.moon_value(id);
        if !existing.is_null() {
            return existing;
        }
        if let Some(m) = self.home.moons().into_iter().find(|m| m.id == id) {
            self.node.add_moon(now, m);
            return self.moon_value(id);
        }
        if id == 0 || seed.to_u64() == 0 {
            return serde_json::json!({});
        }
        self.node.orbit(now, id, seed);
        json::waiting_moon(id)
    }

    async fn on_api(&mut self, req: ApiRequest) {
        let now = now_ms();
        match req {
            ApiRequest::Status(tx) => {
                let _ = tx.send(self.status_value(now));
            }
            ApiRequest::Peers(None, tx) => {
                let _ = tx.send(self.peers_value(now));
            }
            ApiRequest::Peers(Some(a), tx) => {
                let _ = tx.send(
                    self.node
                        .peer(a, now)
                        .map_or(Value::Null, |p| json::peer(&p, self.fallback.active())),
                );
            }
            ApiRequest::Moons(None, tx) => {
                let mut v: Vec<Value> = self
                    .node
                    .moons()
                    .iter()
                    .map(|m| json::moon(m, false))
                    .collect();
                v.extend(
                    self.node
                        .moon_seeds()
                        .iter()
                        .map(|(id, _)| json::waiting_moon(*id)),
                );
                let _ = tx.send(Value::Array(v));
            }
            ApiRequest::Moons(Some(id), tx) => {
                let _ = tx.send(self.moon_value(id));
            }
            ApiRequest::Orbit(id, seed, tx) => {
                let _ = tx.send(self.orbit(now, id, seed));
            }
            ApiRequest::Deorbit(id, tx) => {
                self.node.deorbit(id);
                if let Err(e) = self.home.remove_moon(id) {
                    eprintln!("weft: cannot remove moon {id:016x}: {e:#}");
                }
                let _ = tx.send(serde_json::json!({}));
            }
            ApiRequest::Networks(None, tx) => {
                let v: Vec<Value> = self
                    .node
                    .networks()
                    .iter()
                    .map(|n| self.network_value(n.network_id))
                    .collect();
                let _ = tx.send(Value::Array(v));
            }
            ApiRequest::Networks(Some(id), tx) => {
                let _ = tx.send(self.network_value(id));
            }
            ApiRequest::Join(id, settings, tx) => {
                let v = self.join(id, settings).await;
                let _ = tx.send(v);
            }
            ApiRequest::Leave(id, tx) => {
                let _ = tx.send(self.leave(id));
            }
            ApiRequest::Controller(req, tx) => {
                let v = self.ctl.api(&mut self.node, now, req);
                let _ = tx.send(v);
            }
            ApiRequest::Ping(a, tx) => {
                self.node
                    .send_user_message(now, a, PING_MESSAGE_TYPE, b"weft ping");
                let _ = tx.send(serde_json::json!({ "address": a.to_string(), "sent": true }));
            }
        }
    }

    /// The addresses advertised to trusted peers: every usable address of every interface except
    /// loopback and virtual ports (`lo`, `zt`, `tun`, `tap` prefixes), with the UDP port, plus
    /// the port-mapped external addresses. spec: vl1.md §0.1, §5.8
    fn refresh_local_addresses(&mut self) {
        let mut v: Vec<SocketAddr> = self.mapped_addresses.clone();
        if let Ok(ifs) = nix::ifaddrs::getifaddrs() {
            for i in ifs {
                let name = i.interface_name.as_str();
                if ["lo", "zt", "tun", "tap"]
                    .iter()
                    .any(|p| name.starts_with(p))
                {
                    continue;
                }
                let Some(a) = i.address else { continue };
                let ip: Option<IpAddr> = if let Some(v4) = a.as_sockaddr_in() {
                    Some(IpAddr::V4(v4.ip()))
                } else {
                    a.as_sockaddr_in6().map(|v6| IpAddr::V6(v6.ip()))
                };
                if let Some(ip) = ip {
                    v.push(SocketAddr::new(ip, self.port));
                }
            }
        }
        self.node.set_local_addresses(v);
    }

    /// Every 5 s: the host's multicast subscriptions per port; every 30 s also routes.
    /// spec: vl2.md §3.2, service.md §8.2
    async fn port_scan(&mut self, routes: bool) {
        let now = now_ms();
        for n in self.node.networks() {
            let groups = self.ports.multicast_groups(n.network_id);
            self.node
                .set_multicast_subscriptions(now, n.network_id, groups);
            if routes && let Some(c) = n.config {
                let s = self.settings_of(n.network_id);
                let online = self.node.is_online();
                self.ports.sync_managed(n.network_id, &c, &s, online).await;
            }
        }
    }

    fn save_peer_cache(&self) {
        for (a, rec) in self.node.peer_cache_records() {
            if let Err(e) = self.home.save_peer(a, &rec) {
                eprintln!("weft: cannot save peer {a}: {e:#}");
            }
        }
    }
}

/// Why the loop woke up.
enum Wake {
    Datagram(usize, std::io::Result<(usize, SocketAddr)>),
    Timer,
    Status,
    Api(ApiRequest),
    Tunnel(SocketAddr, Vec<u8>),
    Tap(NetworkId, Vec<u8>),
    PortMap(portmap::Status),
    Stop,
}

/// The next port-mapper report; never ready when there is no mapper.
async fn portmap_report(m: &mut Option<PortMapper>) -> Option<portmap::Status> {
    match m {
        Some(m) => m.reports.recv().await,
        None => std::future::pending().await,
    }
}

async fn recv(s: &UdpSocket, buf: &mut [u8]) -> std::io::Result<(usize, SocketAddr)> {
    s.recv_from(buf).await
}

/// Waits for the first datagram on any socket.
async fn recv_any(
    sockets: &[UdpSocket],
    bufs: &mut [Vec<u8>],
) -> (usize, std::io::Result<(usize, SocketAddr)>) {
    let mut futs: Vec<_> = sockets
        .iter()
        .zip(bufs.iter_mut())
        .enumerate()
        .map(|(i, (s, b))| Box::pin(async move { (i, recv(s, b).await) }))
        .collect();
    std::future::poll_fn(move |cx| {
        for f in futs.iter_mut() {
            if let std::task::Poll::Ready(r) = f.as_mut().poll(cx) {
                return std::task::Poll::Ready(r);
            }
        }
        std::task::Poll::Pending
    })
    .await
}

pub(crate) fn run(home_dir: PathBuf, port_arg: u16) -> Result<ExitCode> {
    let home = Home::open(&home_dir)?;
    let conf = home.local_conf()?;
    let identity = home.identity()?;
    let planet = home.planet()?;
    let mut config = NodeConfig::new(planet);
    // every node runs a controller for the networks whose id starts with its address
    config.controller = true;
    config.moons = home.moons();
    config.trusted_paths = conf.trusted_paths.clone();
    if let Some(m) = conf.mtu {
        config.physical_mtu = m;
    }
    let version = config.version;
    let ips: Vec<IpAddr> = if conf.bind.is_empty() {
        vec![
            IpAddr::V4(Ipv4Addr::UNSPECIFIED),
            IpAddr::V6(Ipv6Addr::UNSPECIFIED),
        ]
    } else {
        conf.bind.clone()
    };
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    rt.block_on(async move {
        let (port, sockets) = choose_port(conf.primary_port.unwrap_or(port_arg), &ips)?;
        home.write_runtime_files(port)?;
        // The tertiary port, mapped on the gateway. spec: vl1.md §0.1
        let mut sockets = sockets;
        let tertiary = if conf.port_mapping {
            let (p, socks) = choose_port(conf.tertiary_port, &ips)?;
            sockets.extend(socks);
            Some(p)
        } else {
            None
        };
        let token = home.auth_token()?;
        let (api_tx, mut api_rx) = tokio::sync::mpsc::channel(64);
        let api_addrs = super::api::serve(port, token, api_tx).await?;
        let now = now_ms();
        let identity_for_ctl = identity.clone();
        let mut node = Node::new(identity, config, now, &mut OsRng);
        for p in home.cached_peers() {
            node.add_cached_peer(p);
        }
        let mut settings = conf
            .raw
            .get("settings")
            .cloned()
            .unwrap_or_else(|| Value::Object(Default::default()));
        if let Value::Object(m) = &mut settings {
            m.insert("primaryPort".into(), port.into());
            m.insert(
                "allowTcpFallbackRelay".into(),
                conf.allow_tcp_fallback.into(),
            );
            m.insert("forceTcpRelay".into(), conf.force_tcp_relay.into());
            m.insert(
                "tcpFallbackRelay".into(),
                IpPort(conf.tcp_fallback_relay).to_string().into(),
            );
            m.insert("portMappingEnabled".into(), conf.port_mapping.into());
            m.insert("tertiaryPort".into(), tertiary.unwrap_or(0).into());
        }
        eprintln!(
            "weft: {} listening on UDP port {port} ({} socket(s)), API on {:?}, planet {:#x}",
            node.address(),
            sockets.len(),
            api_addrs,
            node.planet().id
        );
        let (tunnel_tx, mut tunnel_rx) = tokio::sync::mpsc::channel(256);
        let fallback = TcpFallback::new(
            FallbackConfig {
                relay: conf.tcp_fallback_relay,
                allowed: conf.allow_tcp_fallback,
                forced: conf.force_tcp_relay,
            },
            tunnel_tx,
            version,
        );
        let (tap_tx, mut tap_rx) = tokio::sync::mpsc::channel(ports::TAP_QUEUE);
        let devicemap = std::fs::read_to_string(home.path("devicemap")).ok();
        let ctl = Ctl::open(&home, identity_for_ctl)?;
        let mut svc = Service {
            home,
            node,
            sockets,
            settings,
            version,
            fallback,
            engine: Engine::new(),
            tables: Tables::default(),
            verdicts: Vec::new(),
            ports: Ports::new(tap_tx, devicemap),
            net_settings: HashMap::new(),
            ctl,
            ticks: 0,
            port,
            mapped_addresses: Vec::new(),
            portmap: tertiary
                .and_then(NonZeroU16::new)
                .map(|p| portmap::spawn(portmap::Config::new(p))),
            portmap_status: if tertiary.is_some() {
                portmap::Status::searching()
            } else {
                portmap::Status::disabled()
            },
        };
        svc.refresh_local_addresses();
        svc.publish_tables();
        for (nwid, bytes) in svc.home.joined_networks() {
            let settings = ports::local_settings(svc.home.network_local_conf(nwid).as_deref());
            svc.net_settings.insert(nwid, settings);
            svc.node.join(now_ms(), nwid, Some(&bytes));
        }
        let mut bufs: Vec<Vec<u8>> = svc.sockets.iter().map(|_| vec![0u8; 16_384]).collect();
        let mut sigterm =
            tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
        let mut status_tick = tokio::time::interval(Duration::from_secs(1));
        loop {
            svc.flush().await;
            let wait = (svc.node.poll_timeout() - now_ms()).clamp(0, 60_000) as u64;
            let wake = tokio::select! {
                (i, r) = recv_any(&svc.sockets, &mut bufs) => Wake::Datagram(i, r),
                _ = tokio::time::sleep(Duration::from_millis(wait)) => Wake::Timer,
                _ = status_tick.tick() => Wake::Status,
                Some(req) = api_rx.recv() => Wake::Api(req),
                Some((from, data)) = tunnel_rx.recv() => Wake::Tunnel(from, data),
                Some((nwid, frame)) = tap_rx.recv() => Wake::Tap(nwid, frame),
                Some(s) = portmap_report(&mut svc.portmap) => Wake::PortMap(s),
                _ = tokio::signal::ctrl_c() => Wake::Stop,
                _ = sigterm.recv() => Wake::Stop,
            };
            match wake {
                Wake::Datagram(i, Ok((n, from))) => {
                    let from = match from {
                        SocketAddr::V6(v6) => v6
                            .ip()
                            .to_ipv4_mapped()
                            .map_or(from, |v4| SocketAddr::new(v4.into(), v6.port())),
                        v4 => v4,
                    };
                    svc.fallback.on_udp_receive(&from, n);
                    svc.receive(LocalSocket(i as u32), from, &bufs[i][..n])
                        .await;
                }
                Wake::Datagram(_, Err(e)) => eprintln!("weft: receive error: {e}"),
                Wake::Timer => {
                    svc.node.handle_timeout(now_ms());
                    svc.ctl.tick(&mut svc.node, now_ms());
                }
                Wake::Status => {
                    // Paths age, so the preferred ones change without events: republish.
                    svc.publish_tables();
                    svc.write_status();
                    svc.ticks += 1;
                    if svc.ticks.is_multiple_of(5) {
                        svc.port_scan(svc.ticks.is_multiple_of(30)).await;
                    }
                    if svc.ticks.is_multiple_of(30) {
                        svc.refresh_local_addresses();
                    }
                }
                Wake::Api(req) => svc.on_api(req).await,
                Wake::Tap(nwid, frame) => svc.node.handle_tap_frame(now_ms(), nwid, &frame),
                Wake::Tunnel(from, data) => {
                    svc.node
                        .handle_datagram(now_ms(), TUNNEL_SOCKET, from, &data)
                }
                Wake::PortMap(s) => {
                    let mapped: Vec<SocketAddr> = s.external.into_iter().collect();
                    svc.portmap_status = s;
                    if mapped != svc.mapped_addresses {
                        svc.mapped_addresses = mapped;
                        svc.refresh_local_addresses();
                    }
                }
                Wake::Stop => break,
            }
        }
        eprintln!("weft: shutting down");
        if let Some(m) = svc.portmap.as_mut() {
            m.shutdown().await;
        }
        svc.flush().await;
        svc.save_peer_cache();
        svc.write_status();
        svc.home.remove_pid_file();
        Ok::<_, anyhow::Error>(())
    })?;
    Ok(ExitCode::SUCCESS)
}
