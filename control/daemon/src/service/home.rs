//! The home folder, laid out like ZeroTier One's: `identity.secret` / `identity.public`,
//! `planet`, `moons.d/`, `peers.d/`, `local.conf`, `zerotier-one.port`, `zerotier-one.pid`, `networks.d/`.
//! spec: service.md §2, §3

use std::fs;
use std::net::IpAddr;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use rand_core::OsRng;
use serde_json::Value;
use weft_proto::peer_cache::CachedPeer;
use weft_proto::{TrustedPath, earth_planet};
use weft_wire::{Address, Identity, NetworkId, World, WorldType};

use crate::fsutil::{self, PUBLIC_MODE, SECRET_MODE};

/// Peer-cache files older than this are ignored (and removed). spec: service.md §2
const PEER_CACHE_MAX_AGE: std::time::Duration = std::time::Duration::from_secs(30 * 24 * 3600);

/// The parts of `local.conf` the VL1 service uses.
#[derive(Debug, Clone)]
pub(crate) struct LocalConf {
    /// The whole document (echoed in status).
    pub(crate) raw: Value,
    pub(crate) primary_port: Option<u16>,
    pub(crate) bind: Vec<IpAddr>,
    pub(crate) trusted_paths: Vec<TrustedPath>,
    pub(crate) mtu: Option<usize>,
    pub(crate) allow_tcp_fallback: bool,
    pub(crate) force_tcp_relay: bool,
    pub(crate) tcp_fallback_relay: std::net::SocketAddr,
    /// Networks besides loopback allowed to use the local API. spec: service.md §3.1, §4.1
    pub(crate) allow_management_from: Vec<ipnet::IpNet>,
    /// `settings.portMappingEnabled` (default true). spec: service.md §3.1
    pub(crate) port_mapping: bool,
    /// `settings.tertiaryPort` (0 or absent = random). spec: vl1.md §0.1
    pub(crate) tertiary_port: u16,
    /// `settings.portMappingProtocols` (weft): which of `upnp`, `pcp`, `natpmp` to try.
    pub(crate) port_mapping_protocols: Vec<String>,
    /// `settings.dataplane.backend` (weft): the data plane's UDP back-end (`af_xdp`,
    /// `io_uring`, `mmsg`, `plain`); empty: the best that works.
    pub(crate) dataplane_backend: String,
    /// `settings.dataplane.workers` (weft): data-plane worker threads; 0: half the CPUs (1..8).
    pub(crate) dataplane_workers: u16,
    /// The bonding keys (`defaultBondingPolicy`, `policies`, `peerSpecificBonds`).
    /// spec: vl1.md §9.1, service.md §3.1
    pub(crate) bonding: weft_proto::bond::BondingConfig,
}

/// ZeroTier's public TCP relay, the default of `settings.tcpFallbackRelay`. spec: vl1.md §8.13
const DEFAULT_TCP_RELAY: ([u8; 4], u16) = ([204, 80, 128, 1], 443);

impl Default for LocalConf {
    fn default() -> Self {
        LocalConf {
            raw: Value::Object(Default::default()),
            primary_port: None,
            bind: Vec::new(),
            trusted_paths: Vec::new(),
            mtu: None,
            allow_tcp_fallback: true,
            force_tcp_relay: false,
            tcp_fallback_relay: std::net::SocketAddr::from(DEFAULT_TCP_RELAY),
            allow_management_from: Vec::new(),
            bonding: Default::default(),
            port_mapping: true,
            tertiary_port: 0,
            port_mapping_protocols: vec!["pcp".into(), "natpmp".into(), "upnp".into()],
            dataplane_backend: String::new(),
            dataplane_workers: 0,
        }
    }
}

fn bool_setting(settings: &Value, key: &str, default: bool) -> Result<bool> {
    match &settings[key] {
        Value::Null => Ok(default),
        Value::Bool(b) => Ok(*b),
        _ => bail!("local.conf: settings.{key} must be true or false"),
    }
}

/// An opened home folder.
#[derive(Debug)]
pub(crate) struct Home {
    pub(crate) dir: PathBuf,
}

fn parse_cidr(s: &str) -> Option<(IpAddr, u8)> {
    let (ip, bits) = s.split_once('/')?;
    let ip: IpAddr = ip.parse().ok()?;
    let bits: u8 = bits.parse().ok()?;
    let max = if ip.is_ipv4() { 32 } else { 128 };
    (bits <= max).then_some((ip, bits))
}

impl Home {
    /// Creates the folder if needed.
    pub(crate) fn open(dir: &Path) -> Result<Home> {
        fs::create_dir_all(dir)
            .with_context(|| format!("cannot create home folder {}", dir.display()))?;
        for sub in ["moons.d", "peers.d"] {
            fs::create_dir_all(dir.join(sub))
                .with_context(|| format!("cannot create {}", dir.join(sub).display()))?;
        }
        Ok(Home {
            dir: dir.to_path_buf(),
        })
    }

    pub(crate) fn path(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }

    /// Loads `identity.secret`, or generates and saves a new identity on first start. An
    /// existing but unreadable secret is an error: it is never overwritten.
    pub(crate) fn identity(&self) -> Result<Identity> {
        let secret_path = self.path("identity.secret");
        let id = if secret_path.exists() {
            let text = fs::read_to_string(&secret_path)
                .with_context(|| format!("cannot read {}", secret_path.display()))?;
            let id: Identity = text.trim().parse().with_context(|| {
                format!("{} does not hold a valid identity", secret_path.display())
            })?;
            if !id.has_private() {
                bail!("{} holds no private key", secret_path.display());
            }
            fsutil::chmod(&secret_path, SECRET_MODE)?;
            id
        } else {
            let id = Identity::generate(&mut OsRng);
            let secret = id.to_secret_string()?;
            fsutil::write_atomic(&secret_path, secret.as_bytes(), SECRET_MODE)?;
            id
        };
        let public_path = self.path("identity.public");
        let public = id.to_string();
        if fs::read_to_string(&public_path)
            .map(|s| s.trim() != public)
            .unwrap_or(true)
        {
            fsutil::write_atomic(&public_path, public.as_bytes(), PUBLIC_MODE)?;
        }
        Ok(id)
    }

    /// The planet: `<home>/planet` if it parses, else the built-in one (then written there).
    /// The built-in planet replaces a file-loaded one only under the update rule.
    /// spec: vl1.md §7.5
    pub(crate) fn planet(&self) -> Result<World> {
        let p = self.path("planet");
        let earth = earth_planet();
        let loaded = fs::read(&p)
            .ok()
            .and_then(|b| World::decode(&b).ok())
            .filter(|(w, _)| w.kind == WorldType::Planet);
        match loaded {
            Some((w, _)) => Ok(if World::should_replace(Some(&w), &earth) {
                earth
            } else {
                w
            }),
            None => {
                fsutil::write_atomic(&p, &earth.to_bytes(), PUBLIC_MODE)?;
                Ok(earth)
            }
        }
    }

    /// Every `moons.d/<16 hex>.moon` whose content is a moon with that id.
    pub(crate) fn moons(&self) -> Vec<World> {
        let mut v = Vec::new();
        let Ok(rd) = fs::read_dir(self.path("moons.d")) else {
            return v;
        };
        for e in rd.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            let Some(id) = name
                .strip_suffix(".moon")
                .and_then(|h| u64::from_str_radix(h, 16).ok())
            else {
                continue;
            };
            match fs::read(e.path()).ok().and_then(|b| World::decode(&b).ok()) {
                Some((w, _)) if w.kind == WorldType::Moon && w.id == id => v.push(w),
                _ => eprintln!("weft: ignoring unreadable moon file {}", e.path().display()),
            }
        }
        v
    }

    /// Saves an accepted planet.
    pub(crate) fn save_planet(&self, bytes: &[u8]) -> Result<()> {
        fsutil::write_atomic(&self.path("planet"), bytes, PUBLIC_MODE)
    }

    /// Saves an accepted moon.
    pub(crate) fn save_moon(&self, id: u64, bytes: &[u8]) -> Result<()> {
        fsutil::write_atomic(
            &self.path(&format!("moons.d/{id:016x}.moon")),
            bytes,
            PUBLIC_MODE,
        )
    }

    /// Removes a moon file (deorbit); absent is fine.
    pub(crate) fn remove_moon(&self, id: u64) -> Result<()> {
        match fs::remove_file(self.path(&format!("moons.d/{id:016x}.moon"))) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e.into()),
            _ => Ok(()),
        }
    }

    /// Loads the peer cache, removing files older than 30 days.
    pub(crate) fn cached_peers(&self) -> Vec<CachedPeer> {
        let mut v = Vec::new();
        let Ok(rd) = fs::read_dir(self.path("peers.d")) else {
            return v;
        };
        for e in rd.flatten() {
            let old = e
                .metadata()
                .and_then(|m| m.modified())
                .ok()
                .and_then(|t| t.elapsed().ok())
                .is_some_and(|age| age > PEER_CACHE_MAX_AGE);
            if old {
                let _ = fs::remove_file(e.path());
                continue;
            }
            if let Some(p) = fs::read(e.path())
                .ok()
                .and_then(|b| CachedPeer::decode(&b).ok())
            {
                v.push(p);
            }
        }
        v
    }

    /// Saves one peer-cache record.
    pub(crate) fn save_peer(&self, address: Address, record: &[u8]) -> Result<()> {
        if record.is_empty() {
            return Ok(());
        }
        fsutil::write_atomic(
            &self.path(&format!("peers.d/{address}.peer")),
            record,
            PUBLIC_MODE,
        )
    }

    /// Joined networks: every `networks.d/<16 hex>.conf`, with its bytes (a lone `"\n"` is the
    /// placeholder of a network without a saved config). spec: service.md §2, vl2.md §18.1
    pub(crate) fn joined_networks(&self) -> Vec<(NetworkId, Vec<u8>)> {
        let mut v = Vec::new();
        let Ok(rd) = fs::read_dir(self.path("networks.d")) else {
            return v;
        };
        for e in rd.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            let Some(hex) = name.strip_suffix(".conf") else {
                continue;
            };
            if hex.len() != 16 || hex.contains('.') {
                continue;
            }
            if let (Ok(id), Ok(bytes)) = (u64::from_str_radix(hex, 16), fs::read(e.path())) {
                v.push((NetworkId(id), bytes));
            }
        }
        v.sort_by_key(|(id, _)| *id);
        v
    }

    /// Saves a network's config dictionary (or the one-byte placeholder) atomically.
    pub(crate) fn save_network_conf(&self, id: NetworkId, dictionary: &[u8]) -> Result<()> {
        fs::create_dir_all(self.path("networks.d"))?;
        fsutil::write_atomic(
            &self.path(&format!("networks.d/{:016x}.conf", id.0)),
            dictionary,
            SECRET_MODE,
        )
    }

    /// A network's local settings file (`None` if absent). spec: service.md §2.2
    pub(crate) fn network_local_conf(&self, id: NetworkId) -> Option<Vec<u8>> {
        fs::read(self.path(&format!("networks.d/{:016x}.local.conf", id.0))).ok()
    }

    /// Writes a network's local settings in the exact 1.14 form. spec: service.md §2.2
    pub(crate) fn save_network_local_conf(
        &self,
        id: NetworkId,
        managed: bool,
        global: bool,
        default: bool,
        dns: bool,
    ) -> Result<()> {
        let b = |x: bool| if x { '1' } else { '0' };
        let text = format!(
            "allowManaged={}\nallowGlobal={}\nallowDefault={}\nallowDNS={}\n",
            b(managed),
            b(global),
            b(default),
            b(dns)
        );
        fs::create_dir_all(self.path("networks.d"))?;
        fsutil::write_atomic(
            &self.path(&format!("networks.d/{:016x}.local.conf", id.0)),
            text.as_bytes(),
            PUBLIC_MODE,
        )
    }

    /// Forgets a network (leave): both files. spec: vl2.md §18.3
    pub(crate) fn remove_network(&self, id: NetworkId) -> Result<()> {
        for suffix in ["conf", "local.conf"] {
            match fs::remove_file(self.path(&format!("networks.d/{:016x}.{suffix}", id.0))) {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(e.into()),
                _ => {}
            }
        }
        Ok(())
    }

    /// Reads `local.conf` (absent = defaults). Invalid JSON or a non-object root is an error.
    /// spec: service.md §3
    pub(crate) fn local_conf(&self) -> Result<LocalConf> {
        let p = self.path("local.conf");
        let Ok(text) = fs::read_to_string(&p) else {
            return Ok(LocalConf::default());
        };
        let raw: Value = serde_json::from_str(&text)
            .with_context(|| format!("unable to parse local.conf ({})", p.display()))?;
        if !raw.is_object() {
            bail!("unable to parse local.conf: the root must be a JSON object");
        }
        let settings = &raw["settings"];
        let port = |key: &str| -> Result<Option<u16>> {
            match &settings[key] {
                Value::Null => Ok(None),
                v => v
                    .as_u64()
                    .and_then(|p| u16::try_from(p).ok())
                    .map(Some)
                    .with_context(|| {
                        format!("local.conf: settings.{key} must be an integer 0..65535")
                    }),
            }
        };
        let primary_port = port("primaryPort")?;
        let tertiary_port = port("tertiaryPort")?.unwrap_or(0);
        let port_mapping = bool_setting(settings, "portMappingEnabled", true)?;
        let port_mapping_protocols = match &settings["portMappingProtocols"] {
            Value::Null => LocalConf::default().port_mapping_protocols,
            Value::Array(a) => {
                let mut v = Vec::new();
                for (i, x) in a.iter().enumerate() {
                    match x.as_str() {
                        Some(p @ ("upnp" | "pcp" | "natpmp")) => v.push(p.to_string()),
                        _ => bail!(
                            "local.conf: settings.portMappingProtocols[{i}] must be \"upnp\", \"pcp\" or \"natpmp\""
                        ),
                    }
                }
                v
            }
            _ => bail!("local.conf: settings.portMappingProtocols must be an array"),
        };
        let dataplane_backend = match &settings["dataplane"]["backend"] {
            Value::Null => String::new(),
            Value::String(b) if b == "auto" || b.is_empty() => String::new(),
            Value::String(b) if b.parse::<weft_engine::io::udp::Backend>().is_ok() => b.clone(),
            _ => bail!(
                "local.conf: settings.dataplane.backend must be \"auto\", \"af_xdp\", \"io_uring\", \"mmsg\" or \"plain\""
            ),
        };
        let dataplane_workers = match &settings["dataplane"]["workers"] {
            Value::Null => 0,
            v => v.as_u64().filter(|n| *n <= 64).map(|n| n as u16).context(
                "local.conf: settings.dataplane.workers must be an integer 0..64 (0: half the CPUs)",
            )?,
        };
        let mut bind = Vec::new();
        if let Some(a) = settings["bind"].as_array() {
            for (i, ip) in a.iter().enumerate() {
                let ip = ip.as_str().and_then(|s| s.parse().ok()).with_context(|| {
                    format!("local.conf: settings.bind[{i}] must be an IP address")
                })?;
                bind.push(ip);
            }
        }
        let mut trusted_paths = Vec::new();
        let mut mtu = None;
        if let Some(phys) = raw["physical"].as_object() {
            for (cidr, v) in phys {
                let (network, prefix) = parse_cidr(cidr).with_context(|| {
                    format!("local.conf: physical key {cidr:?} is not a network/bits")
                })?;
                if let Some(id) = v["trustedPathId"].as_u64().filter(|id| *id != 0) {
                    trusted_paths.push(TrustedPath {
                        network,
                        prefix,
                        id,
                    });
                }
                if let Some(m) = v["mtu"].as_u64().filter(|m| *m != 0) {
                    mtu = Some((m as usize).clamp(1400, 10_324));
                }
            }
        }
        let allow_tcp_fallback = bool_setting(settings, "allowTcpFallbackRelay", true)?;
        let force_tcp_relay = bool_setting(settings, "forceTcpRelay", false)?;
        let tcp_fallback_relay = match &settings["tcpFallbackRelay"] {
            Value::Null => std::net::SocketAddr::from(DEFAULT_TCP_RELAY),
            v => v
                .as_str()
                .and_then(|s| s.parse::<weft_wire::inet::IpPort>().ok())
                .map(|p| p.0)
                .context("local.conf: settings.tcpFallbackRelay must be \"ip/port\"")?,
        };
        let mut allow_management_from = Vec::new();
        if let Some(a) = settings["allowManagementFrom"].as_array() {
            for (i, c) in a.iter().enumerate() {
                let net = c
                    .as_str()
                    .and_then(|s| {
                        s.parse::<ipnet::IpNet>()
                            .ok()
                            .or_else(|| s.parse::<IpAddr>().ok().map(ipnet::IpNet::from))
                    })
                    .with_context(|| {
                        format!(
                            "local.conf: settings.allowManagementFrom[{i}] must be a network/bits"
                        )
                    })?;
                allow_management_from.push(net);
            }
        }
        let bonding = weft_proto::bond::BondingConfig::from_local_conf(&raw)
            .map_err(|e| anyhow::anyhow!("local.conf: {e}"))?;
        // Bonding disables the TCP fallback relay. spec: vl1.md §9.1, service.md §3.1
        let allow_tcp_fallback = allow_tcp_fallback && !bonding.in_use();
        Ok(LocalConf {
            bonding,
            raw,
            primary_port,
            bind,
            allow_management_from,
            trusted_paths,
            mtu,
            allow_tcp_fallback,
            force_tcp_relay,
            tcp_fallback_relay,
            port_mapping,
            tertiary_port,
            port_mapping_protocols,
            dataplane_backend,
            dataplane_workers,
        })
    }

    /// Reads `authtoken.secret` (trimmed), creating it on first start: 24 characters from
    /// `[a-z0-9]`, mode 0600. spec: service.md §2
    pub(crate) fn auth_token(&self) -> Result<String> {
        self.token_file("authtoken.secret")
    }

    /// Copies each key of `settings` into local.conf's `settings` object and rewrites the file
    /// (4-space indentation, atomically). A local.conf that does not parse is not overwritten.
    /// spec: service.md §4.2 (`POST /config/settings`)
    pub(crate) fn update_settings(&self, settings: serde_json::Map<String, Value>) -> Result<()> {
        let p = self.path("local.conf");
        let mut doc: Value = match fs::read_to_string(&p) {
            Ok(text) => serde_json::from_str(&text)
                .with_context(|| format!("unable to parse local.conf ({})", p.display()))?,
            Err(_) => Value::Object(Default::default()),
        };
        let Value::Object(root) = &mut doc else {
            bail!("unable to parse local.conf: the root must be a JSON object");
        };
        let entry = root
            .entry("settings")
            .or_insert_with(|| Value::Object(Default::default()));
        if !entry.is_object() {
            *entry = Value::Object(Default::default());
        }
        if let Value::Object(s) = entry {
            s.extend(settings);
        }
        let mut out = Vec::new();
        let fmt = serde_json::ser::PrettyFormatter::with_indent(b"    ");
        let mut ser = serde_json::Serializer::with_formatter(&mut out, fmt);
        serde::Serialize::serialize(&doc, &mut ser)?;
        out.push(b'\n');
        fsutil::write_atomic(&p, &out, SECRET_MODE)
    }

    /// Reads (or creates) `metricstoken.secret`, the token that only opens `/metrics`.
    /// spec: service.md §4.1
    pub(crate) fn metrics_token(&self) -> Result<String> {
        self.token_file("metricstoken.secret")
    }

    /// Reads a 24-character token file, creating it (mode 0600) with a random token if absent.
    fn token_file(&self, name: &str) -> Result<String> {
        let p = self.path(name);
        if let Ok(t) = fs::read_to_string(&p) {
            fsutil::chmod(&p, SECRET_MODE)?;
            let t = t.trim().to_string();
            if !t.is_empty() {
                return Ok(t);
            }
        }
        const ALPHABET: &[u8] = b"abcdefghijklmnopqrstuvwxyz0123456789";
        let token: String = (0..24)
            .map(|_| {
                // 252 = 7 × 36: rejection sampling keeps the draw uniform.
                loop {
                    let b = (rand_core::RngCore::next_u32(&mut OsRng) & 0xff) as u8;
                    if b < 252 {
                        return char::from(ALPHABET[usize::from(b % 36)]);
                    }
                }
            })
            .collect();
        fsutil::write_atomic(&p, token.as_bytes(), SECRET_MODE)?;
        Ok(token)
    }

    /// Writes `zerotier-one.port` and `zerotier-one.pid`.
    pub(crate) fn write_runtime_files(&self, port: u16) -> Result<()> {
        fsutil::write_atomic(
            &self.path("zerotier-one.port"),
            port.to_string().as_bytes(),
            PUBLIC_MODE,
        )?;
        fsutil::write_atomic(
            &self.path("zerotier-one.pid"),
            std::process::id().to_string().as_bytes(),
            PUBLIC_MODE,
        )
    }

    /// Removes the pid file at exit.
    pub(crate) fn remove_pid_file(&self) {
        let _ = fs::remove_file(self.path("zerotier-one.pid"));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn first_start_creates_identity_and_keeps_it() {
        let d = tempfile::tempdir().unwrap();
        let h = Home::open(d.path()).unwrap();
        let id = h.identity().unwrap();
        let again = h.identity().unwrap();
        assert_eq!(id.private_key(), again.private_key(), "never regenerated");
        let secret = fs::read_to_string(h.path("identity.secret")).unwrap();
        assert_eq!(secret.len(), 270);
        assert_eq!(
            fs::read_to_string(h.path("identity.public")).unwrap().len(),
            141
        );
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(
            fs::metadata(h.path("identity.secret"))
                .unwrap()
                .permissions()
                .mode()
                & 0o777,
            0o600
        );
        // a corrupt secret is an error and stays as it is
        fs::write(h.path("identity.secret"), "garbage").unwrap();
        assert!(h.identity().is_err());
        assert_eq!(
            fs::read_to_string(h.path("identity.secret")).unwrap(),
            "garbage"
        );
    }

    #[test]
    fn planet_defaults_to_earth_and_custom_planets_win() {
        let d = tempfile::tempdir().unwrap();
        let h = Home::open(d.path()).unwrap();
        assert_eq!(h.planet().unwrap().id, 149_604_618);
        assert_eq!(
            fs::read(h.path("planet")).unwrap(),
            weft_proto::EARTH_PLANET
        );
        let mut custom = earth_planet();
        custom.id = 0x1122334455;
        fs::write(h.path("planet"), custom.to_bytes()).unwrap();
        assert_eq!(h.planet().unwrap().id, 0x1122334455);
    }

    #[test]
    fn local_conf_errors_name_the_field() {
        let d = tempfile::tempdir().unwrap();
        let h = Home::open(d.path()).unwrap();
        assert!(h.local_conf().unwrap().primary_port.is_none());
        fs::write(h.path("local.conf"), r#"{"settings":{"primaryPort":"x"}}"#).unwrap();
        assert!(format!("{:#}", h.local_conf().unwrap_err()).contains("primaryPort"));
        fs::write(h.path("local.conf"), "[1]").unwrap();
        assert!(h.local_conf().is_err());
        fs::write(h.path("local.conf"), r#"{"settings":{"primaryPort":9999,"bind":["10.0.0.1"]},"physical":{"10.0.0.0/8":{"trustedPathId":7,"mtu":1500}}}"#).unwrap();
        let c = h.local_conf().unwrap();
        assert_eq!(c.primary_port, Some(9999));
        assert_eq!(c.bind, vec!["10.0.0.1".parse::<IpAddr>().unwrap()]);
        assert_eq!(c.trusted_paths.len(), 1);
        assert_eq!(c.mtu, Some(1500));
        // port mapping: on by default, off when asked, typed
        assert!(c.port_mapping);
        assert_eq!(c.tertiary_port, 0);
        fs::write(
            h.path("local.conf"),
            r#"{"settings":{"portMappingEnabled":false,"tertiaryPort":45001}}"#,
        )
        .unwrap();
        let c = h.local_conf().unwrap();
        assert!(!c.port_mapping);
        assert_eq!(c.tertiary_port, 45001);
        fs::write(
            h.path("local.conf"),
            r#"{"settings":{"portMappingEnabled":1}}"#,
        )
        .unwrap();
        assert!(format!("{:#}", h.local_conf().unwrap_err()).contains("portMappingEnabled"));
        fs::write(
            h.path("local.conf"),
            r#"{"settings":{"tertiaryPort":70000}}"#,
        )
        .unwrap();
        assert!(format!("{:#}", h.local_conf().unwrap_err()).contains("tertiaryPort"));
        fs::write(
            h.path("local.conf"),
            r#"{"settings":{"dataplane":{"backend":"turbo"}}}"#,
        )
        .unwrap();
        assert!(
            format!("{:#}", h.local_conf().unwrap_err()).contains("settings.dataplane.backend")
        );
        fs::write(
            h.path("local.conf"),
            r#"{"settings":{"dataplane":{"backend":"mmsg"}}}"#,
        )
        .unwrap();
        assert_eq!(h.local_conf().unwrap().dataplane_backend, "mmsg");
        fs::write(
            h.path("local.conf"),
            r#"{"settings":{"dataplane":{"workers":"many"}}}"#,
        )
        .unwrap();
        assert!(
            format!("{:#}", h.local_conf().unwrap_err()).contains("settings.dataplane.workers")
        );
        // Bonding: a bad policy name refuses to start and names the key; a good one turns
        // the TCP fallback off.
        fs::write(
            h.path("local.conf"),
            r#"{"settings":{"defaultBondingPolicy":"fastest"}}"#,
        )
        .unwrap();
        assert!(
            format!("{:#}", h.local_conf().unwrap_err()).contains("settings.defaultBondingPolicy")
        );
        fs::write(
            h.path("local.conf"),
            r#"{"settings":{"defaultBondingPolicy":"active-backup"}}"#,
        )
        .unwrap();
        let c = h.local_conf().unwrap();
        assert!(c.bonding.in_use());
        assert!(!c.allow_tcp_fallback);
    }
}
