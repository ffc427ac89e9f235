//! Network configuration: the `NetworkConfig` dictionary of every key (§11), ad-hoc networks
//! (§1.2), the NETWORK_CONFIG_REQUEST metadata (§12) and chunked, signed transport (§9).
//! spec: vl2.md §1.2, §9–§12

mod adhoc;
pub mod chunk;
mod metadata;

pub use adhoc::{AdhocError, is_adhoc};
pub use metadata::{METADATA_CAPACITY, RequestMetadata, os_arch};

use std::net::{IpAddr, SocketAddr};

use ipnet::IpNet;

use crate::address::{Address, NetworkId};
use crate::credential::{Capability, Com, Coo, CredentialError, Tag};
use crate::dictionary::{Dictionary, DictionaryError};
use crate::inet::{InetAddress, InetError};
use crate::mac::Mac;
use crate::rules::{self, MAX_NETWORK_RULES, Rule, RuleError};

/// Config format version written (`v`).
pub const VERSION: u64 = 7;
/// Oldest config format version read; older ones (legacy format) are rejected.
pub const MIN_VERSION: u64 = 6;
/// MTU when `mtu` is absent.
pub const DEFAULT_MTU: u32 = 2800;
/// Smallest MTU accepted (smaller values are raised to it).
pub const MIN_MTU: u32 = 1280;
/// Largest MTU accepted (larger values are lowered to it).
pub const MAX_MTU: u32 = 10000;
/// Longest network name kept, in bytes.
pub const MAX_NAME_LEN: usize = 127;
/// Most capabilities kept.
pub const MAX_CAPABILITIES: usize = 128;
/// Most tags kept.
pub const MAX_TAGS: usize = 128;
/// Most certificates of ownership kept (more are parsed and dropped).
pub const MAX_COOS: usize = 4;
/// Most specialists kept.
pub const MAX_SPECIALISTS: usize = 256;
/// Most routes kept.
pub const MAX_ROUTES: usize = 128;
/// Most static IPs kept.
pub const MAX_STATIC_IPS: usize = 32;
/// Most DNS servers.
pub const MAX_DNS_SERVERS: usize = 4;
/// Bytes of the DNS domain field (NUL padded).
pub const DNS_DOMAIN_LEN: usize = 128;

/// Flag 0x02: broadcast (ff:ff:ff:ff:ff:ff) enabled.
pub const FLAG_ENABLE_BROADCAST: u64 = 0x02;
/// Flag 0x04: IPv6 NDP emulation for rfc4193 / 6PLANE addresses.
pub const FLAG_IPV6_NDP_EMULATION: u64 = 0x04;
/// Flag 0x08: unassigned rule matches evaluate to true.
pub const FLAG_RULES_RESULT_OF_UNSUPPORTED_MATCH: u64 = 0x08;
/// Flag 0x10: do not compress multicast frames.
pub const FLAG_DISABLE_COMPRESSION: u64 = 0x10;

/// Specialist role: active bridge (full 64-bit mask, as in the `S` blob). spec: vl2.md §17.1
pub const ROLE_ACTIVE_BRIDGE: u64 = 0x0000_0200_0000_0000;
/// Specialist role: anchor.
pub const ROLE_ANCHOR: u64 = 0x0000_0400_0000_0000;
/// Specialist role: multicast replicator.
pub const ROLE_MULTICAST_REPLICATOR: u64 = 0x0000_0800_0000_0000;

const ADDRESS_MASK: u64 = 0xff_ffff_ffff;

// Limits of the SSO text fields on read (reference buffer sizes less the NUL). spec: vl2.md §8
const MAX_URL_LEN: usize = 2047;
const MAX_NONCE_LEN: usize = 63;
const MAX_STATE_LEN: usize = 127;
const MAX_CLIENT_ID_LEN: usize = 255;
const MAX_PROVIDER_LEN: usize = 63;

/// Errors reading a config dictionary.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum NetconfError {
    /// The bytes are not a dictionary.
    #[error("dictionary: {0}")]
    Dictionary(#[from] DictionaryError),
    /// `v` is below 6 (or absent): the legacy format, which 1.14 does not read.
    #[error("config format version {found} is older than 6")]
    VersionTooOld {
        /// The `v` found.
        found: u64,
    },
    /// `nwid` is absent or zero.
    #[error("config has no network id")]
    MissingNetworkId,
    /// `id` is absent or zero.
    #[error("config has no issued-to address")]
    MissingIssuedTo,
    /// `C` does not decode.
    #[error("C (certificate of membership): {0}")]
    Com(CredentialError),
    /// `COO` does not decode.
    #[error("COO (certificates of ownership): {0}")]
    Coo(CredentialError),
    /// `RT` does not decode.
    #[error("RT (routes): {0}")]
    Routes(&'static str),
    /// `I` does not decode.
    #[error("I (static IPs): {0}")]
    StaticIps(&'static str),
    /// `R` does not decode.
    #[error("R (rules): {0}")]
    Rules(RuleError),
    /// `DNS` does not decode.
    #[error("DNS: {0}")]
    Dns(&'static str),
}

/// Network type (`t`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum NetworkType {
    /// 0: members need a certificate of membership.
    #[default]
    Private,
    /// 1: anyone may talk.
    Public,
}

impl NetworkType {
    /// The wire value.
    pub fn as_u64(self) -> u64 {
        match self {
            NetworkType::Private => 0,
            NetworkType::Public => 1,
        }
    }
}

/// A specialist entry (`S`): an address with role bits (the full-width masks
/// [`ROLE_ACTIVE_BRIDGE`], [`ROLE_ANCHOR`], [`ROLE_MULTICAST_REPLICATOR`]; the low 40 bits are
/// never set). On the wire: `roles | address` as 8 big-endian bytes. spec: vl2.md §17.1
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Specialist {
    /// The node.
    pub address: Address,
    /// Role bits (high 24 bits of the wire value, in place).
    pub roles: u64,
}

impl Specialist {
    /// The 64-bit wire value.
    pub fn to_u64(self) -> u64 {
        (self.roles & !ADDRESS_MASK) | self.address.to_u64()
    }

    /// From the 64-bit wire value.
    pub fn from_u64(v: u64) -> Specialist {
        Specialist {
            address: Address::new(v & ADDRESS_MASK).expect("masked"),
            roles: v & !ADDRESS_MASK,
        }
    }
}

/// A managed route (`RT`): target network, optional gateway, flags and metric.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Route {
    /// Destination network (`ip/bits`).
    pub target: IpNet,
    /// Gateway; `None` = directly on the virtual network.
    pub via: Option<IpAddr>,
    /// Flags.
    pub flags: u16,
    /// Metric.
    pub metric: u16,
}

/// DNS settings (`DNS`).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Default)]
pub struct Dns {
    /// Search domain (at most 127 bytes kept).
    pub domain: String,
    /// Servers (at most 4 kept).
    pub servers: Vec<IpAddr>,
}

/// Single sign-on settings (`ssov`, `ssoe`, …). spec: vl2.md §11
#[derive(Debug, Clone, PartialEq, Eq, Hash, Default)]
pub struct Sso {
    /// `ssov`: 0 (implicit flow) or 1 (full OIDC flow).
    pub version: u64,
    /// `ssoe`: SSO enabled.
    pub enabled: bool,
    /// `aurl` (v0): authentication URL.
    pub authentication_url: String,
    /// `aexpt` (v0): authentication expiry time (ms).
    pub authentication_expiry_time: i64,
    /// `iurl` (v1): OIDC issuer URL.
    pub issuer_url: String,
    /// `ssoce` (v1): central endpoint URL.
    pub central_auth_url: String,
    /// `sson` (v1): nonce.
    pub nonce: String,
    /// `ssos` (v1): state.
    pub state: String,
    /// `ssocid` (v1): client id.
    pub client_id: String,
    /// `ssop` (v1): provider (`default` when absent).
    pub provider: String,
}

/// A network configuration as the controller issues it to one member. spec: vl2.md §11
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NetworkConfig {
    /// `nwid`.
    pub network_id: NetworkId,
    /// `ts`: controller time of issue (ms).
    pub timestamp: i64,
    /// `ctmd`: credential time max delta (ms).
    pub credential_time_max_delta: i64,
    /// `r`: revision of the controller's network record.
    pub revision: u64,
    /// `id`: the member this config is for.
    pub issued_to: Address,
    /// `tt`: remote trace target (`None` = zero).
    pub remote_trace_target: Option<Address>,
    /// `tl`: remote trace level.
    pub remote_trace_level: u64,
    /// `f`: flags (`FLAG_*`).
    pub flags: u64,
    /// `ml`: multicast recipient limit (0 = multicast disabled).
    pub multicast_limit: u32,
    /// `t`: network type.
    pub network_type: NetworkType,
    /// `n`: name.
    pub name: String,
    /// `mtu`.
    pub mtu: u32,
    /// `C`: the member's certificate of membership.
    pub com: Option<Com>,
    /// `CAP`: capabilities, sorted by id.
    pub capabilities: Vec<Capability>,
    /// `TAG`: tags, sorted by id.
    pub tags: Vec<Tag>,
    /// `COO`: certificates of ownership.
    pub coos: Vec<Coo>,
    /// `S`: specialists.
    pub specialists: Vec<Specialist>,
    /// `RT`: managed routes.
    pub routes: Vec<Route>,
    /// `I`: static (managed) IPs with prefix lengths.
    pub static_ips: Vec<IpNet>,
    /// `R`: base rule table.
    pub rules: Vec<Rule>,
    /// `DNS`.
    pub dns: Dns,
    /// SSO keys.
    pub sso: Sso,
}

fn ip_net(a: InetAddress) -> Result<Option<IpNet>, &'static str> {
    match a {
        InetAddress::Ip(sa) => {
            let bits = u8::try_from(sa.port()).map_err(|_| "netmask bits")?;
            IpNet::new(sa.ip(), bits)
                .map(Some)
                .map_err(|_| "netmask bits")
        }
        _ => Ok(None),
    }
}

fn inet(e: InetError) -> &'static str {
    match e {
        InetError::Truncated => "truncated address",
        _ => "bad address type",
    }
}

fn write_net(n: &IpNet, out: &mut Vec<u8>) {
    InetAddress::Ip(SocketAddr::new(n.addr(), u16::from(n.prefix_len()))).encode(out);
}

fn write_ip(ip: Option<IpAddr>, out: &mut Vec<u8>) {
    match ip {
        Some(ip) => InetAddress::Ip(SocketAddr::new(ip, 0)).encode(out),
        None => InetAddress::Nil.encode(out),
    }
}

/// Hex integer with an optional leading `-` (the reference reads `strtoull`, which negates).
fn get_i64(d: &Dictionary, key: &str) -> Option<i64> {
    let v = d.get(key)?;
    let (neg, digits) = match v.first() {
        Some(b'-') => (true, &v[1..]),
        Some(b'+') => (false, &v[1..]),
        _ => (false, v),
    };
    let mut n: u64 = 0;
    for &b in digits.iter().take_while(|b| b.is_ascii_hexdigit()) {
        n = n.wrapping_shl(4) | u64::from((b as char).to_digit(16).unwrap_or(0));
    }
    Some(if neg { n.wrapping_neg() } else { n } as i64)
}

fn add_i64(d: &mut Dictionary, key: &str, v: i64) {
    let s = if v < 0 {
        format!("-{:016x}", v.unsigned_abs())
    } else {
        format!("{v:016x}")
    };
    d.add(key, s.as_bytes()).expect("constant key");
}

/// Text up to the first NUL, at most `max` bytes (cut back to a character boundary).
fn text(v: &[u8], max: usize) -> String {
    let v = &v[..v.iter().position(|&b| b == 0).unwrap_or(v.len())];
    let mut s = String::from_utf8_lossy(v).into_owned();
    while s.len() > max {
        s.pop();
    }
    s
}

fn get_text(d: &Dictionary, key: &str, max: usize) -> String {
    d.get(key).map(|v| text(v, max)).unwrap_or_default()
}

/// The value of a blob key, `None` when absent or empty.
fn blob<'a>(d: &'a Dictionary, key: &str) -> Option<&'a [u8]> {
    d.get(key).filter(|v| !v.is_empty())
}

impl NetworkConfig {
    /// A config with the reader's defaults for everything but the required keys.
    pub fn new(network_id: NetworkId, issued_to: Address) -> NetworkConfig {
        NetworkConfig {
            network_id,
            timestamp: 0,
            credential_time_max_delta: 0,
            revision: 0,
            issued_to,
            remote_trace_target: None,
            remote_trace_level: 0,
            flags: 0,
            multicast_limit: 0,
            network_type: NetworkType::Private,
            name: String::new(),
            mtu: DEFAULT_MTU,
            com: None,
            capabilities: Vec::new(),
            tags: Vec::new(),
            coos: Vec::new(),
            specialists: Vec::new(),
            routes: Vec::new(),
            static_ips: Vec::new(),
            rules: Vec::new(),
            dns: Dns::default(),
            sso: Sso::default(),
        }
    }

    /// Serializes every key in the order 1.14 writes them: `v nwid ts ctmd r id tt tl f ml t n
    /// mtu [C] [CAP] [TAG] [COO] [S] [RT] [I] [R] DNS ssov ssoe …`. Lists longer than the reader
    /// limits are written in full.
    pub fn to_dictionary(&self) -> Dictionary {
        let mut d = Dictionary::new();
        let add = |d: &mut Dictionary, k: &str, v: &[u8]| d.add(k, v).expect("constant key");
        let add_u64 = |d: &mut Dictionary, k: &str, v: u64| d.add_u64(k, v).expect("constant key");
        add_u64(&mut d, "v", VERSION);
        add_u64(&mut d, "nwid", self.network_id.0);
        add_i64(&mut d, "ts", self.timestamp);
        add_i64(&mut d, "ctmd", self.credential_time_max_delta);
        add_u64(&mut d, "r", self.revision);
        add(&mut d, "id", self.issued_to.to_string().as_bytes());
        let tt = self.remote_trace_target.unwrap_or_default();
        add(&mut d, "tt", tt.to_string().as_bytes());
        add_u64(&mut d, "tl", self.remote_trace_level);
        add_u64(&mut d, "f", self.flags);
        add_u64(&mut d, "ml", u64::from(self.multicast_limit));
        add_u64(&mut d, "t", self.network_type.as_u64());
        add(&mut d, "n", self.name.as_bytes());
        add_u64(&mut d, "mtu", u64::from(self.mtu));
        let mut b = Vec::new();
        if let Some(c) = &self.com {
            c.encode(&mut b);
            add(&mut d, "C", &b);
        }
        let mut blob_key = |d: &mut Dictionary, k: &str, f: &dyn Fn(&mut Vec<u8>)| {
            b.clear();
            f(&mut b);
            if !b.is_empty() {
                add(d, k, &b);
            }
        };
        blob_key(&mut d, "CAP", &|o| {
            self.capabilities.iter().for_each(|c| c.encode(o))
        });
        blob_key(&mut d, "TAG", &|o| {
            self.tags.iter().for_each(|t| t.encode(o))
        });
        blob_key(&mut d, "COO", &|o| {
            self.coos.iter().for_each(|c| c.encode(o))
        });
        blob_key(&mut d, "S", &|o| {
            for s in &self.specialists {
                o.extend_from_slice(&s.to_u64().to_be_bytes());
            }
        });
        blob_key(&mut d, "RT", &|o| {
            for r in &self.routes {
                write_net(&r.target, o);
                write_ip(r.via, o);
                o.extend_from_slice(&r.flags.to_be_bytes());
                o.extend_from_slice(&r.metric.to_be_bytes());
            }
        });
        blob_key(&mut d, "I", &|o| {
            self.static_ips.iter().for_each(|n| write_net(n, o))
        });
        blob_key(&mut d, "R", &|o| rules::encode_all(&self.rules, o));
        blob_key(&mut d, "DNS", &|o| {
            let mut domain = [0u8; DNS_DOMAIN_LEN];
            let src = self.dns.domain.as_bytes();
            let n = src.len().min(DNS_DOMAIN_LEN - 1);
            domain[..n].copy_from_slice(&src[..n]);
            o.extend_from_slice(&domain);
            for i in 0..MAX_DNS_SERVERS {
                write_ip(self.dns.servers.get(i).copied(), o);
            }
        });
        let s = &self.sso;
        match s.version {
            0 => {
                add_u64(&mut d, "ssov", 0);
                d.add_bool("ssoe", s.enabled).expect("constant key");
                if s.enabled {
                    if !s.authentication_url.is_empty() {
                        add(&mut d, "aurl", s.authentication_url.as_bytes());
                    }
                    add_i64(&mut d, "aexpt", s.authentication_expiry_time);
                }
            }
            1 => {
                add_u64(&mut d, "ssov", 1);
                d.add_bool("ssoe", s.enabled).expect("constant key");
                add(&mut d, "iurl", s.issuer_url.as_bytes());
                add(&mut d, "ssoce", s.central_auth_url.as_bytes());
                add(&mut d, "sson", s.nonce.as_bytes());
                add(&mut d, "ssos", s.state.as_bytes());
                add(&mut d, "ssocid", s.client_id.as_bytes());
                add(&mut d, "ssop", s.provider.as_bytes());
            }
            // The reference writes no SSO keys for other versions.
            _ => {}
        }
        d
    }

    /// The serialized dictionary (what is chunked, signed and saved as `<nwid>.conf`).
    pub fn to_bytes(&self) -> Vec<u8> {
        self.to_dictionary().to_bytes()
    }

    /// Parses serialized dictionary bytes (see [`NetworkConfig::from_dictionary`]).
    pub fn from_bytes(b: &[u8]) -> Result<NetworkConfig, NetconfError> {
        Self::from_dictionary(&Dictionary::parse(b)?)
    }

    /// Reads a config with the rules of 1.14: `v` < 6, a zero `nwid` or `id`, or a malformed
    /// `C`, `COO`, `RT`, `I`, `R` or `DNS` reject it; a malformed `CAP`/`TAG` blob stops there
    /// and keeps what came before; lists are cut at their limits; the MTU is clamped to
    /// [1280, 10000]. Credentials are not verified here. spec: vl2.md §11
    pub fn from_dictionary(d: &Dictionary) -> Result<NetworkConfig, NetconfError> {
        let u = |k: &str| d.get_u64(k).unwrap_or(0);
        let network_id = NetworkId(u("nwid"));
        if network_id.0 == 0 {
            return Err(NetconfError::MissingNetworkId);
        }
        let issued_to = Address::new(u("id") & ADDRESS_MASK).expect("masked");
        if issued_to.to_u64() == 0 {
            return Err(NetconfError::MissingIssuedTo);
        }
        let version = u("v");
        if version < MIN_VERSION {
            return Err(NetconfError::VersionTooOld { found: version });
        }
        let mut c = NetworkConfig::new(network_id, issued_to);
        c.timestamp = get_i64(d, "ts").unwrap_or(0);
        c.credential_time_max_delta = get_i64(d, "ctmd").unwrap_or(0);
        c.revision = u("r");
        let tt = u("tt") & ADDRESS_MASK;
        c.remote_trace_target = (tt != 0).then(|| Address::new(tt).expect("masked"));
        c.remote_trace_level = u("tl");
        c.multicast_limit = u("ml") as u32;
        c.name = get_text(d, "n", MAX_NAME_LEN);
        c.mtu = (d.get_u64("mtu").unwrap_or(u64::from(DEFAULT_MTU)) as u32).clamp(MIN_MTU, MAX_MTU);
        c.flags = u("f");
        c.network_type = if u("t") == 1 {
            NetworkType::Public
        } else {
            NetworkType::Private
        };

        if let Some(b) = blob(d, "C") {
            c.com = Some(Com::decode(b).map_err(NetconfError::Com)?.0);
        }
        if let Some(b) = blob(d, "CAP") {
            let mut at = 0;
            while at < b.len() && c.capabilities.len() < MAX_CAPABILITIES {
                let Ok((cap, n)) = Capability::decode(&b[at..]) else {
                    break;
                };
                c.capabilities.push(cap);
                at += n;
            }
            c.capabilities.sort_by_key(Capability::id);
        }
        if let Some(b) = blob(d, "TAG") {
            let mut at = 0;
            while at < b.len() && c.tags.len() < MAX_TAGS {
                let Ok((tag, n)) = Tag::decode(&b[at..]) else {
                    break;
                };
                c.tags.push(tag);
                at += n;
            }
            c.tags.sort_by_key(Tag::id);
        }
        if let Some(b) = blob(d, "COO") {
            let mut at = 0;
            while at < b.len() {
                let (coo, n) = Coo::decode(&b[at..]).map_err(NetconfError::Coo)?;
                if c.coos.len() < MAX_COOS {
                    c.coos.push(coo);
                }
                at += n;
            }
        }
        if let Some(b) = blob(d, "S") {
            c.specialists = b
                .chunks_exact(8)
                .take(MAX_SPECIALISTS)
                .map(|w| Specialist::from_u64(u64::from_be_bytes(w.try_into().expect("8 bytes"))))
                .collect();
        }
        if let Some(b) = blob(d, "RT") {
            let mut at = 0;
            while at < b.len() && c.routes.len() < MAX_ROUTES {
                let (target, n) =
                    InetAddress::decode(&b[at..]).map_err(|e| NetconfError::Routes(inet(e)))?;
                at += n;
                let (via, n) =
                    InetAddress::decode(&b[at..]).map_err(|e| NetconfError::Routes(inet(e)))?;
                at += n;
                let fm = b
                    .get(at..at + 4)
                    .ok_or(NetconfError::Routes("truncated route"))?;
                at += 4;
                let target = ip_net(target).map_err(NetconfError::Routes)?;
                if let Some(target) = target {
                    c.routes.push(Route {
                        target,
                        via: via.socket_addr().map(|s| s.ip()),
                        flags: u16::from_be_bytes([fm[0], fm[1]]),
                        metric: u16::from_be_bytes([fm[2], fm[3]]),
                    });
                }
            }
        }
        if let Some(b) = blob(d, "I") {
            let mut at = 0;
            while at < b.len() && c.static_ips.len() < MAX_STATIC_IPS {
                let (a, n) =
                    InetAddress::decode(&b[at..]).map_err(|e| NetconfError::StaticIps(inet(e)))?;
                at += n;
                if let Some(net) = ip_net(a).map_err(NetconfError::StaticIps)? {
                    c.static_ips.push(net);
                }
            }
        }
        if let Some(b) = blob(d, "R") {
            c.rules = decode_rules_capped(b).map_err(NetconfError::Rules)?;
        }
        if let Some(b) = blob(d, "DNS") {
            let domain = b
                .get(..DNS_DOMAIN_LEN)
                .ok_or(NetconfError::Dns("truncated domain"))?;
            c.dns.domain = text(&domain[..DNS_DOMAIN_LEN - 1], DNS_DOMAIN_LEN - 1);
            let mut at = DNS_DOMAIN_LEN;
            for _ in 0..MAX_DNS_SERVERS {
                let (a, n) =
                    InetAddress::decode(&b[at..]).map_err(|e| NetconfError::Dns(inet(e)))?;
                at += n;
                if let Some(sa) = a.socket_addr() {
                    c.dns.servers.push(sa.ip());
                }
            }
        }

        let s = &mut c.sso;
        s.version = u("ssov");
        s.enabled = d.get_bool("ssoe").unwrap_or(false);
        if s.enabled && s.version <= 1 {
            s.authentication_url = get_text(d, "aurl", MAX_URL_LEN);
            if s.version == 0 {
                s.authentication_expiry_time = get_i64(d, "aexpt").unwrap_or(0);
            } else {
                s.issuer_url = get_text(d, "iurl", MAX_URL_LEN);
                s.central_auth_url = get_text(d, "ssoce", MAX_URL_LEN);
                s.nonce = get_text(d, "sson", MAX_NONCE_LEN);
                s.state = get_text(d, "ssos", MAX_STATE_LEN);
                s.client_id = get_text(d, "ssocid", MAX_CLIENT_ID_LEN);
                s.provider = get_text(d, "ssop", MAX_PROVIDER_LEN);
                if s.provider.is_empty() {
                    s.provider = "default".to_owned();
                }
            }
        }
        Ok(c)
    }

    /// Public network (type 1): no certificate needed.
    pub fn is_public(&self) -> bool {
        self.network_type == NetworkType::Public
    }

    /// Flag 0x02.
    pub fn broadcast_enabled(&self) -> bool {
        self.flags & FLAG_ENABLE_BROADCAST != 0
    }

    /// Flag 0x04.
    pub fn ndp_emulation(&self) -> bool {
        self.flags & FLAG_IPV6_NDP_EMULATION != 0
    }

    /// Flag 0x08.
    pub fn unsupported_match_result(&self) -> bool {
        self.flags & FLAG_RULES_RESULT_OF_UNSUPPORTED_MATCH != 0
    }

    /// Flag 0x10.
    pub fn compression_disabled(&self) -> bool {
        self.flags & FLAG_DISABLE_COMPRESSION != 0
    }

    /// Multicast is disabled when the limit is 0.
    pub fn multicast_enabled(&self) -> bool {
        self.multicast_limit != 0
    }

    /// Our MAC on this network (`issued_to` on `network_id`).
    pub fn mac(&self) -> Mac {
        Mac::for_member(self.issued_to, self.network_id)
    }

    fn with_role(&self, role: u64) -> impl Iterator<Item = Address> + '_ {
        self.specialists
            .iter()
            .filter(move |s| s.roles & role != 0)
            .map(|s| s.address)
    }

    /// Addresses of active bridges, in config order.
    pub fn active_bridges(&self) -> Vec<Address> {
        self.with_role(ROLE_ACTIVE_BRIDGE).collect()
    }

    /// Whether `address` is an active bridge.
    pub fn is_active_bridge(&self, address: Address) -> bool {
        self.with_role(ROLE_ACTIVE_BRIDGE).any(|a| a == address)
    }

    /// Addresses of anchors.
    pub fn anchors(&self) -> Vec<Address> {
        self.with_role(ROLE_ANCHOR).collect()
    }

    /// Addresses of multicast replicators.
    pub fn multicast_replicators(&self) -> Vec<Address> {
        self.with_role(ROLE_MULTICAST_REPLICATOR).collect()
    }

    /// Whether `address` is a multicast replicator.
    pub fn is_multicast_replicator(&self, address: Address) -> bool {
        self.with_role(ROLE_MULTICAST_REPLICATOR)
            .any(|a| a == address)
    }

    /// Adds a specialist, OR-ing the roles into an existing entry for the same address.
    pub fn add_specialist(&mut self, address: Address, roles: u64) {
        let roles = roles & !ADDRESS_MASK;
        match self.specialists.iter_mut().find(|s| s.address == address) {
            Some(s) => s.roles |= roles,
            None => self.specialists.push(Specialist { address, roles }),
        }
    }

    /// Our tag with `id`.
    pub fn tag(&self, id: u32) -> Option<&Tag> {
        self.tags.iter().find(|t| t.id() == id)
    }

    /// Our capability with `id`.
    pub fn capability(&self, id: u32) -> Option<&Capability> {
        self.capabilities.iter().find(|c| c.id() == id)
    }
}

/// Decodes at most [`MAX_NETWORK_RULES`] rules (the reference ignores the rest).
fn decode_rules_capped(b: &[u8]) -> Result<Vec<Rule>, RuleError> {
    let (mut end, mut n) = (0, 0);
    while end < b.len() && n < MAX_NETWORK_RULES {
        end = match b.get(end + 1) {
            Some(&l) => end + 2 + usize::from(l),
            None => b.len(),
        };
        n += 1;
    }
    // Cut only after the 1024th rule; a malformed rule before that is still an error.
    let cut = if n == MAX_NETWORK_RULES {
        end.min(b.len())
    } else {
        b.len()
    };
    rules::decode_all(&b[..cut], MAX_NETWORK_RULES)
}

#[cfg(test)]
mod tests;
