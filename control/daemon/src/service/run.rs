//! The service loop: UDP sockets ↔ the protocol core, timers, persistence, status file.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::num::NonZeroU16;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::Result;
use rand_core::{OsRng, RngCore};
use serde_json::Value;
use tokio::net::UdpSocket;
use weft_proto::{Event, Node, NodeConfig, Timestamp, Transmit};
use weft_wire::Address;
use weft_wire::inet::IpPort;

use super::api::{ApiRequest, NetworkSettings};
use super::controller_api::Ctl;
use super::dataplane::{DataPlane, Inbound, bind};
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

fn now_ms() -> Timestamp {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as Timestamp)
}

/// The host's interface addresses, (interface name, address) (empty if they cannot be read).
fn interface_addresses() -> Vec<(String, IpAddr)> {
    let Ok(ifs) = nix::ifaddrs::getifaddrs() else {
        return Vec::new();
    };
    ifs.filter_map(|i| {
        let a = i.address?;
        let ip = a
            .as_sockaddr_in()
            .map(|v4| IpAddr::V4(v4.ip()))
            .or_else(|| a.as_sockaddr_in6().map(|v6| IpAddr::V6(v6.ip())))?;
        Some((i.interface_name, ip))
    })
    .collect()
}

/// Whether interface `name` holds address `ip`.
fn interface_has_address(name: &str, ip: IpAddr) -> bool {
    interface_addresses()
        .iter()
        .any(|(n, a)| n == name && *a == ip)
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
    /// The data plane: a separate process (default) or in this process.
    dp: DataPlane,
    settings: Value,
    version: (u8, u8, u16),
    fallback: TcpFallback,
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
    async fn send_udp(&mut self, t: &Transmit) {
        self.dp.send(t).await;
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
                republish |= matches!(
                    e,
                    Event::PeerAdded { .. }
                        | Event::PathsChanged { .. }
                        | Event::NetworkConfigured { .. }
                );
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
            self.publish_tables().await;
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
            Ok(new_tap) => {
                if let Some(queues) = new_tap {
                    // the data-plane process reads and writes its frames
                    self.dp.attach_tap(nwid, queues);
                }
                self.node.set_port_error(nwid, false)
            }
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
        self.dp.detach_tap(nwid);
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
    async fn publish_tables(&mut self) {
        let t = self.node.data_plane_tables(now_ms());
        self.dp.publish(t).await;
    }

    /// What the data plane handed up: a datagram for the core, or the ends of a relayed packet
    /// (the data plane relays by itself).
    fn receive(&mut self, inbound: Inbound) {
        match inbound {
            Inbound::Datagram { local, from, data } => {
                self.fallback.on_udp_receive(&from, data.len());
                self.node.handle_datagram(now_ms(), local, from, &data);
            }
            Inbound::Relayed(src, dst) => self.node.relayed(now_ms(), src, dst),
            Inbound::Packet { local, from, data } => {
                self.fallback.on_udp_receive(&from, data.len());
                self.node.handle_reassembled(now_ms(), local, from, data);
            }
            Inbound::TapFrame(nwid, frame) => self.node.handle_tap_frame(now_ms(), nwid, &frame),
            Inbound::TapWrite(nwid, frame) => self.ports.write(nwid, &frame),
            Inbound::Activity(a) => self.node.note_activity(now_ms(), &a),
            Inbound::Nothing => {}
        }
    }

    async fn on_event(&mut self, e: Event) {
        let r = match &e {
            Event::TapFrame { network_id, frame } => {
                if self.dp.serves_taps() {
                    self.dp.tap_write(*network_id, frame);
                } else {
                    self.ports.write(*network_id, frame);
                }
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
                .dp
                .local_addrs()
                .iter()
                .map(|a| IpPort(*a).to_string())
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
        let (e, process) = self.dp.stats();
        // weft extension: what the data plane did with received datagrams, and where it runs
        v["dataPlane"] = serde_json::json!({
            "relayed": e.relayed,
            "handedUp": e.up,
            "dropped": e.dropped,
            "framesIn": e.frames_in,
            "framesOut": e.frames_out,
            "framesHandedUp": e.frames_up,
            "framesFiltered": e.filtered,
            "backend": self.dp.backend(),
            "mode": if process.is_some() { "process" } else { "in-process" },
            "pid": process.map(|p| p.0),
            "restarts": process.map_or(0, |p| p.1),
        });
        v
    }

    fn peers_value(&self, now: Timestamp) -> Value {
        let tunneled = self.fallback.active();
        Value::Array(
            self.node
                .peers(now)
                .iter()
                .map(|p| {
                    json::bonded_peer(
                        json::peer(p, tunneled),
                        self.node.bond_info(p.address, now).as_ref(),
                    )
                })
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
                let _ = tx.send(self.node.peer(a, now).map_or(Value::Null, |p| {
                    json::bonded_peer(
                        json::peer(&p, self.fallback.active()),
                        self.node.bond_info(a, now).as_ref(),
                    )
                }));
            }
            ApiRequest::BondShow(a, tx) => {
                let v = match (self.node.peer(a, now), self.node.bond_info(a, now)) {
                    (Some(p), Some(b)) => {
                        json::bonded_peer(json::peer(&p, self.fallback.active()), Some(&b))
                    }
                    _ => Value::Null,
                };
                let _ = tx.send(v);
            }
            ApiRequest::BondRotate(a, tx) => {
                let _ = tx.send(Value::Bool(self.node.bond_rotate(a, now)));
            }
            ApiRequest::BondSetMtu {
                mtu,
                ifname,
                ip,
                reply,
            } => {
                // `<ip>` is the link's own address (every path on it) or a peer's address on
                // it; one that does not parse matches no path (`::` is never a remote)
                let remote = match ip {
                    Some(ip) if interface_has_address(&ifname, ip) => None,
                    Some(ip) => Some(ip),
                    None => Some(IpAddr::V6(Ipv6Addr::UNSPECIFIED)),
                };
                let v = match self.node.bond_set_mtu(&ifname, remote, mtu) {
                    Ok(_) => Value::Null,
                    Err(e) => Value::String(e.to_string()),
                };
                let _ = reply.send(v);
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
            ApiRequest::Health(tx) => {
                let (major, minor, rev) = self.version;
                let _ = tx.send(serde_json::json!({
                    "clock": now,
                    "online": self.node.is_online(),
                    "version": format!("{major}.{minor}.{rev}"),
                    "versionBuild": 0,
                    "versionMajor": major,
                    "versionMinor": minor,
                    "versionRev": rev,
                }));
            }
            ApiRequest::Metrics(tx) => {
                let _ = tx.send(self.metrics_text());
            }
            ApiRequest::Config(tx) => {
                let v = self
                    .home
                    .local_conf()
                    .map(|c| c.raw)
                    .unwrap_or_else(|_| serde_json::json!({}));
                let _ = tx.send(v);
            }
            ApiRequest::ConfigSettings(m, tx) => {
                let v = match self.home.update_settings(m) {
                    Ok(()) => serde_json::json!({}),
                    Err(e) => Value::String(format!("{e:#}")),
                };
                let _ = tx.send(v);
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

    /// Bond link names for paths on wildcard sockets: the interface holding the source address
    /// the kernel picks towards each bonded remote (a connected UDP socket sends nothing).
    /// spec: vl1.md §9.1, service.md §3.3 (`links` are keyed by interface name)
    fn resolve_bond_links(&mut self) {
        let remotes = self.node.bonded_remotes();
        if remotes.is_empty() {
            return;
        }
        let ifs = interface_addresses();
        if ifs.is_empty() {
            return;
        }
        let now = now_ms();
        for remote in remotes {
            let unspecified: IpAddr = if remote.is_ipv4() {
                Ipv4Addr::UNSPECIFIED.into()
            } else {
                Ipv6Addr::UNSPECIFIED.into()
            };
            let Ok(s) = std::net::UdpSocket::bind(SocketAddr::new(unspecified, 0)) else {
                continue;
            };
            if s.connect(SocketAddr::new(remote, 9)).is_err() {
                continue;
            }
            let Ok(local) = s.local_addr() else { continue };
            if let Some((name, _)) = ifs.iter().find(|(_, ip)| *ip == local.ip()) {
                self.node.set_path_interface(now, remote, name);
            }
        }
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

    /// The metrics text (served at `/metrics`, written to `metrics.prom`).
    fn metrics_text(&self) -> String {
        let now = now_ms();
        let per_peer = self.settings["metricsPerPeer"] == true;
        super::metrics::render(&super::metrics::Snapshot {
            node: self.node.stats(),
            engine: self.dp.stats().0,
            backend: self
                .dp
                .backend()
                .split_whitespace()
                .next()
                .unwrap_or("unknown")
                .to_owned(),
            networks: self.node.networks(),
            peers: self.node.peers(now),
            online: self.node.is_online(),
            tap_drops: self.ports.drops,
            per_peer,
            now,
        })
    }

    fn write_metrics(&self) {
        let text = self.metrics_text();
        if let Err(e) = fsutil::write_atomic(
            &self.home.path("metrics.prom"),
            text.as_bytes(),
            PUBLIC_MODE,
        ) {
            eprintln!("weft: cannot write metrics.prom: {e:#}");
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
    Inbound(Inbound),
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

pub(crate) fn run(home_dir: PathBuf, port_arg: u16, single_process: bool) -> Result<ExitCode> {
    let home = Home::open(&home_dir)?;
    let conf = home.local_conf()?;
    let identity = home.identity()?;
    let planet = home.planet()?;
    let mut config = NodeConfig::new(planet);
    // every node runs a controller for the networks whose id starts with its address
    config.controller = true;
    config.moons = home.moons();
    config.trusted_paths = conf.trusted_paths.clone();
    if conf.bonding.in_use() {
        config.bonding = Some(conf.bonding.clone());
    }
    for w in &conf.bonding.warnings {
        eprintln!("weft: local.conf: {w}");
    }
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
        let metrics_token = home.metrics_token()?;
        let app_dir = (conf.raw["settings"]["enableWebServer"] == true).then(|| home.path("app"));
        let api_addrs = super::api::serve(
            port,
            token,
            metrics_token,
            conf.allow_management_from.clone(),
            app_dir,
            api_tx,
        )
        .await?;
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
        // The data plane: this process's sockets, or a process that binds the same addresses
        // (they were just proven bindable) and holds session keys only, with `workers`
        // threads. AF_XDP claims the interface's queues once, so it runs one worker (asked
        // for, or possible: `auto` with specific bind addresses may pick it).
        let may_use_xdp = conf.dataplane_backend == "af_xdp"
            || (conf.dataplane_backend.is_empty() && !conf.bind.is_empty());
        let workers: u16 = if may_use_xdp {
            1
        } else if conf.dataplane_workers == 0 {
            // half the CPUs (the kernel's TCP/IP and TAP work needs the rest), 1 to 8
            std::thread::available_parallelism().map_or(1, |n| (n.get() / 2).clamp(1, 8) as u16)
        } else {
            conf.dataplane_workers
        };
        let dp = if single_process {
            DataPlane::local(sockets)
        } else {
            let addrs: Vec<SocketAddr> = sockets.iter().filter_map(|s| s.local_addr().ok()).collect();
            drop(sockets);
            DataPlane::split(&home.dir, addrs, &conf.dataplane_backend, workers).await?
        };
        eprintln!(
            "weft: {} listening on UDP port {port} ({} socket(s), data plane {:?}), API on {:?}, planet {:#x}",
            node.address(),
            dp.local_addrs().len(),
            dp,
            api_addrs,
            node.planet().id
        );
        // Bond link names: the interface each socket's bound address is on (sockets bound to
        // the wildcard have none). spec: vl1.md §9.1, service.md §3.3 (`links`)
        let ifs = interface_addresses();
        for (i, a) in dp.local_addrs().iter().enumerate() {
            if let Some((name, _)) = ifs.iter().find(|(_, ip)| *ip == a.ip()) {
                node.set_socket_interface(weft_proto::LocalSocket(i as u32), name);
            }
        }
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
        let db_path = conf.raw["settings"]["controllerDbPath"].as_str().map(str::to_owned);
        let ctl = Ctl::open(&home, identity_for_ctl, db_path.as_deref())?;
        let dp_serves_taps = dp.serves_taps();
        let dp_workers = dp.workers();
        let mut svc = Service {
            home,
            node,
            dp,
            settings,
            version,
            fallback,
            ports: Ports::new(tap_tx, devicemap, !dp_serves_taps, dp_workers),
            net_settings: HashMap::new(),
            ctl,
            ticks: 0,
            port,
            mapped_addresses: Vec::new(),
            portmap: tertiary
                .and_then(NonZeroU16::new)
                .map(|p| {
                    portmap::spawn(
                        portmap::Config::new(p).with_protocols(&conf.port_mapping_protocols),
                    )
                }),
            portmap_status: if tertiary.is_some() {
                portmap::Status::searching()
            } else {
                portmap::Status::disabled()
            },
        };
        svc.refresh_local_addresses();
        svc.publish_tables().await;
        for (nwid, bytes) in svc.home.joined_networks() {
            let settings = ports::local_settings(svc.home.network_local_conf(nwid).as_deref());
            svc.net_settings.insert(nwid, settings);
            svc.node.join(now_ms(), nwid, Some(&bytes));
        }
        // The networks joined from networks.d/ get their ports from their cached configs in this
        // first flush; then systemd (Type=notify) may consider the service started.
        svc.flush().await;
        let _ = sd_notify::notify(false, &[sd_notify::NotifyState::Ready]);
        let mut sigterm =
            tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
        let mut status_tick = tokio::time::interval(Duration::from_secs(1));
        loop {
            svc.flush().await;
            let wait = (svc.node.poll_timeout() - now_ms()).clamp(0, 60_000) as u64;
            let wake = tokio::select! {
                inbound = svc.dp.recv() => Wake::Inbound(inbound),
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
                Wake::Inbound(inbound) => svc.receive(inbound),
                Wake::Timer => {
                    svc.node.handle_timeout(now_ms());
                    svc.ctl.tick(&mut svc.node, now_ms());
                }
                Wake::Status => {
                    if let Some(a) = svc.dp.take_activity() {
                        svc.node.note_activity(now_ms(), &a);
                    }
                    svc.resolve_bond_links();
                    // Paths age, so the preferred ones change without events: republish.
                    svc.publish_tables().await;
                    svc.write_status();
                    svc.ticks += 1;
                    if svc.ticks.is_multiple_of(5) {
                        svc.port_scan(svc.ticks.is_multiple_of(30)).await;
                        svc.write_metrics();
                    }
                    if svc.ticks.is_multiple_of(30) {
                        svc.refresh_local_addresses();
                    }
                }
                Wake::Api(req) => svc.on_api(req).await,
                Wake::Tap(nwid, frame) => {
                    if !svc.dp.tap_frame(nwid, &frame).await {
                        svc.node.handle_tap_frame(now_ms(), nwid, &frame);
                    }
                }
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
        let _ = sd_notify::notify(false, &[sd_notify::NotifyState::Stopping]);
        if let Some(m) = svc.portmap.as_mut() {
            m.shutdown().await;
        }
        svc.flush().await;
        svc.save_peer_cache();
        svc.write_status();
        svc.dp.shutdown().await;
        svc.home.remove_pid_file();
        Ok::<_, anyhow::Error>(())
    })?;
    Ok(ExitCode::SUCCESS)
}
