//! The peer-cache record (`<home>/peers.d/<address>.peer`). spec: vl1.md §8.14
//!
//! Layout: version byte 2, public identity (71 bytes), remote protocol, major, minor and
//! revision as four 16-bit values, a 16-bit path count and that many InetAddresses.

use std::net::SocketAddr;

use weft_wire::{Identity, InetAddress};

/// Record version written and accepted.
pub const VERSION: u8 = 2;

/// A decoded peer-cache record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CachedPeer {
    /// The peer's public identity.
    pub identity: Identity,
    /// Remote protocol, major, minor, revision (zeros if unknown).
    pub version: [u16; 4],
    /// Physical addresses it was last reachable at.
    pub paths: Vec<SocketAddr>,
}

/// Errors decoding a record.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PeerCacheError {
    /// Unknown record version.
    #[error("unsupported peer cache version {0}")]
    Version(u8),
    /// The record ended early or holds a bad field.
    #[error("malformed peer cache record")]
    Malformed,
}

impl CachedPeer {
    /// Serializes the record.
    pub fn encode(&self) -> Vec<u8> {
        let mut v = vec![VERSION];
        self.identity.write_binary(&mut v, false);
        for x in self.version {
            v.extend_from_slice(&x.to_be_bytes());
        }
        let n = self.paths.len().min(usize::from(u16::MAX));
        v.extend_from_slice(&(n as u16).to_be_bytes());
        for p in &self.paths[..n] {
            InetAddress::Ip(*p).encode(&mut v);
        }
        v
    }

    /// Parses a record.
    pub fn decode(b: &[u8]) -> Result<Self, PeerCacheError> {
        let (&ver, rest) = b.split_first().ok_or(PeerCacheError::Malformed)?;
        if ver != VERSION {
            return Err(PeerCacheError::Version(ver));
        }
        let (identity, used) =
            Identity::from_binary(rest).map_err(|_| PeerCacheError::Malformed)?;
        let mut i = used;
        let u16_at = |i: &mut usize| -> Result<u16, PeerCacheError> {
            let s = rest.get(*i..*i + 2).ok_or(PeerCacheError::Malformed)?;
            *i += 2;
            Ok(u16::from_be_bytes([s[0], s[1]]))
        };
        let mut version = [0u16; 4];
        for v in &mut version {
            *v = u16_at(&mut i)?;
        }
        let n = u16_at(&mut i)?;
        let mut paths = Vec::new();
        for _ in 0..n {
            let (a, used) = InetAddress::decode(rest.get(i..).unwrap_or_default())
                .map_err(|_| PeerCacheError::Malformed)?;
            i += used;
            if let Some(sa) = a.socket_addr() {
                paths.push(sa);
            }
        }
        Ok(CachedPeer {
            identity: identity.to_public(),
            version,
            paths,
        })
    }
}
