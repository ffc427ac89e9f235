//! Physical addresses: the InetAddress binary form used in HELLO/OK(HELLO)/worlds, the
//! PUSH_DIRECT_PATHS record form, the `IP/port` text form and IP scopes. spec: vl1.md §5.8, §6

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::str::FromStr;

/// Errors decoding an address.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum InetError {
    /// Input ended inside the address.
    #[error("address truncated")]
    Truncated,
    /// Unknown type byte.
    #[error("unknown address type {found:#04x}")]
    BadType {
        /// The type byte.
        found: u8,
    },
    /// PUSH_DIRECT_PATHS record whose length byte does not match its type.
    #[error("address length {len} does not match type {kind}")]
    BadLength {
        /// The type byte.
        kind: u8,
        /// The length byte.
        len: u8,
    },
    /// Text not of the form `IP/port`.
    #[error("expected IP/port, got {text:?}")]
    BadText {
        /// The text (truncated).
        text: String,
    },
}

/// An InetAddress as serialized in HELLO, OK(HELLO), worlds and the peer cache. spec: vl1.md §6.1
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum InetAddress {
    /// Type 0: null / unknown.
    Nil,
    /// Types 1..3: reserved kinds that are accepted and skipped (the type byte is kept).
    Reserved(u8),
    /// Type 4 or 6: an IP address and UDP port.
    Ip(SocketAddr),
}

impl InetAddress {
    /// Decodes one address at the start of `b`; returns it and the bytes consumed.
    pub fn decode(b: &[u8]) -> Result<(InetAddress, usize), InetError> {
        let t = *b.first().ok_or(InetError::Truncated)?;
        let need = |n: usize| {
            if b.len() < n {
                Err(InetError::Truncated)
            } else {
                Ok(())
            }
        };
        match t {
            0x00 => Ok((InetAddress::Nil, 1)),
            0x01 | 0x02 => {
                need(7)?;
                Ok((InetAddress::Reserved(t), 7))
            }
            0x03 => {
                need(3)?;
                let l = usize::from(u16::from_be_bytes([b[1], b[2]]));
                need(3 + l)?;
                Ok((InetAddress::Reserved(t), 3 + l))
            }
            0x04 => {
                need(7)?;
                let ip = Ipv4Addr::new(b[1], b[2], b[3], b[4]);
                let port = u16::from_be_bytes([b[5], b[6]]);
                Ok((InetAddress::Ip(SocketAddr::new(ip.into(), port)), 7))
            }
            0x06 => {
                need(19)?;
                let mut o = [0u8; 16];
                o.copy_from_slice(&b[1..17]);
                let port = u16::from_be_bytes([b[17], b[18]]);
                Ok((
                    InetAddress::Ip(SocketAddr::new(Ipv6Addr::from(o).into(), port)),
                    19,
                ))
            }
            found => Err(InetError::BadType { found }),
        }
    }

    /// Appends the binary form. Reserved kinds are written as nil.
    pub fn encode(&self, out: &mut Vec<u8>) {
        match self {
            InetAddress::Nil | InetAddress::Reserved(_) => out.push(0),
            InetAddress::Ip(SocketAddr::V4(a)) => {
                out.push(4);
                out.extend_from_slice(&a.ip().octets());
                out.extend_from_slice(&a.port().to_be_bytes());
            }
            InetAddress::Ip(SocketAddr::V6(a)) => {
                out.push(6);
                out.extend_from_slice(&a.ip().octets());
                out.extend_from_slice(&a.port().to_be_bytes());
            }
        }
    }

    /// The socket address, if this is an IP address.
    pub fn socket_addr(&self) -> Option<SocketAddr> {
        match self {
            InetAddress::Ip(a) => Some(*a),
            _ => None,
        }
    }
}

impl From<SocketAddr> for InetAddress {
    fn from(a: SocketAddr) -> Self {
        InetAddress::Ip(a)
    }
}

/// The `IP/port` text form used by JSON, local.conf and the world generator.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct IpPort(pub SocketAddr);

impl fmt::Display for IpPort {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.0.ip(), self.0.port())
    }
}

impl FromStr for IpPort {
    type Err = InetError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = || InetError::BadText {
            text: s.chars().take(64).collect(),
        };
        let (ip, port) = s.rsplit_once('/').ok_or_else(bad)?;
        let ip: IpAddr = ip.parse().map_err(|_| bad())?;
        let port: u16 = port.parse().map_err(|_| bad())?;
        Ok(IpPort(SocketAddr::new(ip, port)))
    }
}

/// One PUSH_DIRECT_PATHS record. spec: vl1.md §5.8
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PathRecord {
    /// Flags: 0x01 forget, 0x02 cluster redirect.
    pub flags: u8,
    /// The address, `None` for types other than IPv4/IPv6 (skipped by receivers).
    pub address: Option<SocketAddr>,
}

impl PathRecord {
    /// Flag: forget this path.
    pub const FLAG_FORGET: u8 = 0x01;
    /// Flag: cluster redirect.
    pub const FLAG_CLUSTER_REDIRECT: u8 = 0x02;

    /// Decodes one record; returns it and the bytes consumed.
    pub fn decode(b: &[u8]) -> Result<(PathRecord, usize), InetError> {
        if b.len() < 3 {
            return Err(InetError::Truncated);
        }
        let flags = b[0];
        let ext = usize::from(u16::from_be_bytes([b[1], b[2]]));
        let mut i = 3 + ext;
        if b.len() < i + 2 {
            return Err(InetError::Truncated);
        }
        let (kind, len) = (b[i], b[i + 1]);
        i += 2;
        let end = i + usize::from(len);
        if b.len() < end {
            return Err(InetError::Truncated);
        }
        let a = &b[i..end];
        let address = match (kind, len) {
            (4, 6) => Some(SocketAddr::new(
                Ipv4Addr::new(a[0], a[1], a[2], a[3]).into(),
                u16::from_be_bytes([a[4], a[5]]),
            )),
            (6, 18) => {
                let mut o = [0u8; 16];
                o.copy_from_slice(&a[..16]);
                Some(SocketAddr::new(
                    Ipv6Addr::from(o).into(),
                    u16::from_be_bytes([a[16], a[17]]),
                ))
            }
            (4 | 6, len) => return Err(InetError::BadLength { kind, len }),
            _ => None,
        };
        Ok((PathRecord { flags, address }, end))
    }

    /// Appends the record (no extension data). Records without an address are not written.
    pub fn encode(&self, out: &mut Vec<u8>) {
        let Some(a) = self.address else { return };
        out.push(self.flags);
        out.extend_from_slice(&[0, 0]);
        match a {
            SocketAddr::V4(v) => {
                out.extend_from_slice(&[4, 6]);
                out.extend_from_slice(&v.ip().octets());
            }
            SocketAddr::V6(v) => {
                out.extend_from_slice(&[6, 18]);
                out.extend_from_slice(&v.ip().octets());
            }
        }
        out.extend_from_slice(&a.port().to_be_bytes());
    }
}

/// IP scopes; the numbers are those of the reference. spec: vl1.md §6.2
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[repr(u8)]
pub enum IpScope {
    /// 0
    None = 0,
    /// 1
    Multicast = 1,
    /// 2
    Loopback = 2,
    /// 3
    PseudoPrivate = 3,
    /// 4
    Global = 4,
    /// 5
    LinkLocal = 5,
    /// 6 (unused)
    Shared = 6,
    /// 7
    Private = 7,
}

/// Classifies an IP address into its scope. spec: vl1.md §6.2
pub fn ip_scope(ip: IpAddr) -> IpScope {
    match ip {
        IpAddr::V4(v) => {
            let o = v.octets();
            match o[0] {
                0 | 255 => IpScope::None,
                127 => IpScope::Loopback,
                10 => IpScope::Private,
                100 if o[1] & 0xc0 == 64 => IpScope::Private,
                172 if o[1] & 0xf0 == 16 => IpScope::Private,
                192 if o[1] == 168 => IpScope::Private,
                192 if o[1] == 0 && o[2] == 2 => IpScope::Private,
                198 if o[1] & 0xfe == 18 => IpScope::Private,
                198 if o[1] == 51 && o[2] == 100 => IpScope::Private,
                203 if o[1] == 0 && o[2] == 113 => IpScope::Private,
                169 if o[1] == 254 => IpScope::LinkLocal,
                224..=239 => IpScope::Multicast,
                240..=254 => IpScope::PseudoPrivate,
                6 | 11 | 21 | 22 | 25 | 26 | 28 | 29 | 30 | 51 | 55 | 56 => IpScope::PseudoPrivate,
                _ => IpScope::Global,
            }
        }
        IpAddr::V6(v) => {
            let o = v.octets();
            if o[0] == 0xff {
                IpScope::Multicast
            } else if o[0] == 0xfe && o[1] & 0xc0 == 0x80 {
                let rest_zero = o[2..15].iter().all(|&b| b == 0) && o[1] == 0x80;
                if rest_zero && o[15] == 1 {
                    IpScope::Loopback
                } else {
                    IpScope::LinkLocal
                }
            } else if o[0] & 0xfe == 0xfc {
                IpScope::Private
            } else if v == Ipv6Addr::LOCALHOST {
                IpScope::Loopback
            } else if v.is_unspecified() {
                IpScope::None
            } else if let Some(v4) = v.to_ipv4_mapped() {
                if v4.octets()[0] == 127 {
                    IpScope::Loopback
                } else {
                    IpScope::Global
                }
            } else {
                IpScope::Global
            }
        }
    }
}

/// Whether an address may be used as a ZeroTier physical path: scope private, pseudo-private,
/// shared or global, and not in 2001:470::/32. spec: vl1.md §6.2
pub fn is_usable_path(ip: IpAddr) -> bool {
    if let IpAddr::V6(v) = ip
        && v.octets()[..4] == [0x20, 0x01, 0x04, 0x70]
    {
        return false;
    }
    matches!(
        ip_scope(ip),
        IpScope::Private | IpScope::PseudoPrivate | IpScope::Shared | IpScope::Global
    )
}

/// A physical network whose packets may use cipher suite 2 (no crypto). spec: vl1.md §3.5
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TrustedPath {
    /// Network address.
    pub network: IpAddr,
    /// Prefix length.
    pub prefix: u8,
    /// The trusted path id (nonzero).
    pub id: u64,
}

impl TrustedPath {
    /// Whether `ip` lies inside this network.
    pub fn contains(&self, ip: IpAddr) -> bool {
        fn bits(ip: IpAddr) -> (u128, u8) {
            match ip {
                IpAddr::V4(v) => (u128::from(u32::from(v)), 32),
                IpAddr::V6(v) => (u128::from(v), 128),
            }
        }
        let (a, la) = bits(self.network);
        let (b, lb) = bits(ip);
        if la != lb || self.prefix > la {
            return false;
        }
        let shift = u32::from(la - self.prefix);
        shift >= 128 || (a >> shift) == (b >> shift)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // spec: vl1.md §6.1 vector
    #[test]
    fn binary_vector() {
        let mut out = Vec::new();
        let a: IpPort = "10.1.2.3/9993".parse().unwrap();
        let b: IpPort = "2001:db8::1/443".parse().unwrap();
        InetAddress::Ip(a.0).encode(&mut out);
        InetAddress::Ip(b.0).encode(&mut out);
        InetAddress::Nil.encode(&mut out);
        assert_eq!(
            hex::encode(&out),
            "040a01020327090620010db800000000000000000000000101bb00"
        );
        let (x, n) = InetAddress::decode(&out).unwrap();
        assert_eq!((x, n), (InetAddress::Ip(a.0), 7));
        let (y, m) = InetAddress::decode(&out[n..]).unwrap();
        assert_eq!((y, m), (InetAddress::Ip(b.0), 19));
        assert_eq!(
            InetAddress::decode(&out[n + m..]).unwrap(),
            (InetAddress::Nil, 1)
        );
        assert_eq!(a.to_string(), "10.1.2.3/9993");
        assert_eq!(
            InetAddress::decode(&[5]),
            Err(InetError::BadType { found: 5 })
        );
        assert_eq!(
            InetAddress::decode(&[3, 0, 2, 1, 1]).unwrap(),
            (InetAddress::Reserved(3), 5)
        );
        for i in 0..out.len() {
            let _ = InetAddress::decode(&out[..i]);
        }
    }

    #[test]
    fn path_records() {
        let r = PathRecord {
            flags: 0,
            address: Some("10.77.3.1:9993".parse().unwrap()),
        };
        let mut out = Vec::new();
        r.encode(&mut out);
        assert_eq!(hex::encode(&out), "00000004060a4d03012709");
        assert_eq!(PathRecord::decode(&out).unwrap(), (r, out.len()));
        // unknown type skipped by its length, extension skipped
        let skip = [1u8, 0, 2, 9, 9, 7, 3, 1, 2, 3];
        assert_eq!(
            PathRecord::decode(&skip).unwrap(),
            (
                PathRecord {
                    flags: 1,
                    address: None
                },
                10
            )
        );
    }

    #[test]
    fn scopes() {
        let s = |t: &str| ip_scope(t.parse().unwrap());
        assert_eq!(s("10.1.2.3"), IpScope::Private);
        assert_eq!(s("100.64.0.1"), IpScope::Private);
        assert_eq!(s("100.128.0.1"), IpScope::Global);
        assert_eq!(s("172.31.0.1"), IpScope::Private);
        assert_eq!(s("127.0.0.1"), IpScope::Loopback);
        assert_eq!(s("169.254.1.1"), IpScope::LinkLocal);
        assert_eq!(s("224.0.0.1"), IpScope::Multicast);
        assert_eq!(s("240.0.0.1"), IpScope::PseudoPrivate);
        assert_eq!(s("28.0.0.1"), IpScope::PseudoPrivate);
        assert_eq!(s("8.8.8.8"), IpScope::Global);
        assert_eq!(s("fe80::1"), IpScope::Loopback);
        assert_eq!(s("fe80::2"), IpScope::LinkLocal);
        assert_eq!(s("fd00::1"), IpScope::Private);
        assert_eq!(s("::1"), IpScope::Loopback);
        assert_eq!(s("::"), IpScope::None);
        assert_eq!(s("2001:db8::1"), IpScope::Global);
        assert!(!is_usable_path("2001:470::1".parse().unwrap()));
        assert!(is_usable_path("10.0.0.1".parse().unwrap()));
        assert!(!is_usable_path("127.0.0.1".parse().unwrap()));
    }
}
