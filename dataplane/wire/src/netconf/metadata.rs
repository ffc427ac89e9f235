//! The metadata dictionary a member sends in NETWORK_CONFIG_REQUEST. spec: vl2.md §12

use crate::dictionary::{Dictionary, DictionaryError};

/// Capacity of the metadata dictionary in the reference (bytes, including the NUL).
pub const METADATA_CAPACITY: usize = 1024;

/// Request metadata. Writers fill every field; readers get 0 / empty for absent keys.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestMetadata {
    /// `v`: config format version understood (7).
    pub version: u64,
    /// `vend`: vendor (1 = ZeroTier).
    pub vendor: u64,
    /// `pv`: protocol version (12).
    pub protocol_version: u64,
    /// `majv`: software major version.
    pub major: u64,
    /// `minv`: software minor version.
    pub minor: u64,
    /// `revv`: software revision.
    pub revision: u64,
    /// `mr`: most base rules accepted (1024).
    pub max_network_rules: u64,
    /// `mc`: most capabilities accepted (128).
    pub max_capabilities: u64,
    /// `mcr`: most rules per capability accepted (64).
    pub max_capability_rules: u64,
    /// `mt`: most tags accepted (128).
    pub max_tags: u64,
    /// `f`: flags (0).
    pub flags: u64,
    /// `revr`: rules engine revision (1; 0/absent gets a single ACCEPT rule from the controller).
    pub rules_engine_revision: u64,
    /// `o`: `<platform>/<arch>`.
    pub os_arch: String,
    /// `a`: join authorization (`token:<token>`), not sent by stock 1.14 clients.
    pub authorization: Option<String>,
}

impl RequestMetadata {
    /// The set a compatible member sends: everything as 1.14.1 sends it (`v`=7, `pv`=12, `mr`
    /// 1024, `mc` 128, `mcr` 64, `mt` 128, `f` 0, `revr` 1, `o` of this build) with the given
    /// vendor and software version.
    pub fn new(vendor: u64, major: u64, minor: u64, revision: u64) -> RequestMetadata {
        RequestMetadata {
            version: super::VERSION,
            vendor,
            protocol_version: 12,
            major,
            minor,
            revision,
            max_network_rules: crate::rules::MAX_NETWORK_RULES as u64,
            max_capabilities: super::MAX_CAPABILITIES as u64,
            max_capability_rules: crate::rules::MAX_CAPABILITY_RULES as u64,
            max_tags: super::MAX_TAGS as u64,
            flags: 0,
            rules_engine_revision: 1,
            os_arch: os_arch().to_owned(),
            authorization: None,
        }
    }

    /// The dictionary, keys in the order 1.14.1 writes them (`a` last, if set).
    pub fn to_dictionary(&self) -> Dictionary {
        let mut d = Dictionary::new();
        for (k, v) in [
            ("v", self.version),
            ("vend", self.vendor),
            ("pv", self.protocol_version),
            ("majv", self.major),
            ("minv", self.minor),
            ("revv", self.revision),
            ("mr", self.max_network_rules),
            ("mc", self.max_capabilities),
            ("mcr", self.max_capability_rules),
            ("mt", self.max_tags),
            ("f", self.flags),
            ("revr", self.rules_engine_revision),
        ] {
            d.add_u64(k, v).expect("constant key");
        }
        d.add("o", self.os_arch.as_bytes()).expect("constant key");
        if let Some(a) = &self.authorization {
            d.add("a", a.as_bytes()).expect("constant key");
        }
        d
    }

    /// The serialized dictionary (the metadata field of the request).
    pub fn to_bytes(&self) -> Vec<u8> {
        self.to_dictionary().to_bytes()
    }

    /// Reads the keys a controller uses; absent keys read as 0 / empty.
    pub fn from_dictionary(d: &Dictionary) -> RequestMetadata {
        let u = |k: &str| d.get_u64(k).unwrap_or(0);
        RequestMetadata {
            version: u("v"),
            vendor: u("vend"),
            protocol_version: u("pv"),
            major: u("majv"),
            minor: u("minv"),
            revision: u("revv"),
            max_network_rules: u("mr"),
            max_capabilities: u("mc"),
            max_capability_rules: u("mcr"),
            max_tags: u("mt"),
            flags: u("f"),
            rules_engine_revision: u("revr"),
            os_arch: d.get_str("o").unwrap_or_default(),
            authorization: d.get_str("a"),
        }
    }

    /// Parses request metadata bytes (at most [`METADATA_CAPACITY`] − 1 bytes).
    pub fn parse(b: &[u8]) -> Result<RequestMetadata, DictionaryError> {
        let d = Dictionary::parse_with_capacity(b, METADATA_CAPACITY - 1)?;
        Ok(Self::from_dictionary(&d))
    }

    /// The token of an `a` value `token:<token>`.
    pub fn token(&self) -> Option<&str> {
        self.authorization.as_deref()?.strip_prefix("token:")
    }

    /// A requester below config version 6 is "legacy" (no effect in 1.14).
    pub fn is_legacy(&self) -> bool {
        self.version < super::MIN_VERSION
    }
}

/// `<platform>/<arch>` of this build, spelled as 1.14 does. spec: vl2.md §12
pub fn os_arch() -> &'static str {
    macro_rules! arch {
        ($p:literal) => {{
            if cfg!(target_arch = "x86_64") {
                concat!($p, "/x86_64")
            } else if cfg!(target_arch = "x86") {
                concat!($p, "/x86")
            } else if cfg!(target_arch = "aarch64") {
                concat!($p, "/arm64")
            } else if cfg!(target_arch = "arm") {
                concat!($p, "/arm")
            } else if cfg!(any(target_arch = "mips", target_arch = "mips64")) {
                concat!($p, "/mips")
            } else if cfg!(any(target_arch = "powerpc", target_arch = "powerpc64")) {
                concat!($p, "/powerpc")
            } else if cfg!(any(target_arch = "riscv32", target_arch = "riscv64")) {
                concat!($p, "/riscv")
            } else if cfg!(target_arch = "s390x") {
                concat!($p, "/s390")
            } else if cfg!(target_arch = "loongarch64") {
                concat!($p, "/loongarch")
            } else {
                concat!($p, "/unknown")
            }
        }};
    }
    if cfg!(target_os = "android") {
        arch!("android")
    } else if cfg!(target_os = "linux") {
        arch!("linux")
    } else if cfg!(target_os = "macos") {
        arch!("macos")
    } else if cfg!(target_os = "ios") {
        arch!("ios_iphone")
    } else if cfg!(target_os = "windows") {
        arch!("windows")
    } else if cfg!(any(
        target_os = "freebsd",
        target_os = "openbsd",
        target_os = "netbsd",
        target_os = "dragonfly"
    )) {
        arch!("bsd")
    } else if cfg!(any(target_os = "solaris", target_os = "illumos")) {
        arch!("solaris")
    } else if cfg!(target_os = "aix") {
        arch!("aix")
    } else {
        arch!("unknown")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // the metadata 1.14.1 sent in the reference capture (capture/decoded.jsonl)
    const CAPTURED: &str = "v=0000000000000007\nvend=0000000000000001\npv=000000000000000c\n\
        majv=0000000000000001\nminv=000000000000000e\nrevv=0000000000000001\nmr=0000000000000400\n\
        mc=0000000000000080\nmcr=0000000000000040\nmt=0000000000000080\nf=0000000000000000\n\
        revr=0000000000000001\no=linux/x86_64";

    #[test]
    fn same_bytes_as_the_reference() {
        let mut m = RequestMetadata::new(1, 1, 14, 1);
        m.os_arch = "linux/x86_64".into();
        assert_eq!(String::from_utf8(m.to_bytes()).unwrap(), CAPTURED);
        let back = RequestMetadata::parse(CAPTURED.as_bytes()).unwrap();
        assert_eq!(back, m);
        assert!(!back.is_legacy());
        assert_eq!(back.token(), None);
    }

    #[test]
    fn parser_defaults_and_token() {
        let m = RequestMetadata::parse(b"majv=2\na=token:s3cret").unwrap();
        assert_eq!(
            (m.major, m.minor, m.rules_engine_revision, m.version),
            (2, 0, 0, 0)
        );
        assert!(m.is_legacy());
        assert_eq!(m.token(), Some("s3cret"));
        assert!(RequestMetadata::parse(&vec![b'x'; 2000]).is_err());
        let mut w = RequestMetadata::new(9, 0, 1, 2);
        w.authorization = Some("token:abc".into());
        assert!(
            String::from_utf8(w.to_bytes())
                .unwrap()
                .ends_with("\na=token:abc")
        );
    }

    #[test]
    fn os_arch_form() {
        let s = os_arch();
        let (p, a) = s.split_once('/').unwrap();
        assert!(!p.is_empty() && !a.is_empty());
        #[cfg(all(target_os = "linux", target_arch = "x86_64"))]
        assert_eq!(s, "linux/x86_64");
    }
}
