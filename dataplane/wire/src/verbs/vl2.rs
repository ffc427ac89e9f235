//! VL2 verb payload codecs (framing only; semantics live in the protocol core).
//! spec: vl2.md §7, §9

use super::{Reader, VerbError};
use crate::address::{Address, NetworkId};
use crate::identity::Identity;
use crate::signature::SIGNATURE_LEN;

/// Moved to [`crate::mac`]; re-exported so the old paths keep working.
pub use crate::mac::{Mac, MulticastGroup};

fn group(r: &mut Reader<'_>) -> Result<MulticastGroup, VerbError> {
    Ok(MulticastGroup {
        mac: Mac(r.array()?),
        adi: r.u32()?,
    })
}

/// FRAME: `nwid | ethertype | payload`. spec: vl2.md §7.1
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Frame<'a> {
    /// Network.
    pub network_id: NetworkId,
    /// Ethertype.
    pub ethertype: u16,
    /// Ethernet payload.
    pub payload: &'a [u8],
}

impl<'a> Frame<'a> {
    /// Decodes the payload.
    pub fn decode(p: &'a [u8]) -> Result<Self, VerbError> {
        let mut r = Reader::new(p, "FRAME");
        Ok(Frame {
            network_id: NetworkId(r.u64()?),
            ethertype: r.u16()?,
            payload: r.rest(),
        })
    }

    /// Appends the payload.
    pub fn encode(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.network_id.0.to_be_bytes());
        out.extend_from_slice(&self.ethertype.to_be_bytes());
        out.extend_from_slice(self.payload);
    }
}

/// EXT_FRAME without an inline COM. spec: vl2.md §7.2
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ExtFrame<'a> {
    /// Network.
    pub network_id: NetworkId,
    /// Flags (0x01 inline COM, 0x10 ACK requested).
    pub flags: u8,
    /// Destination MAC.
    pub to: Mac,
    /// Source MAC.
    pub from: Mac,
    /// Ethertype.
    pub ethertype: u16,
    /// Ethernet payload.
    pub payload: &'a [u8],
}

impl<'a> ExtFrame<'a> {
    /// Decodes the payload. Inline COMs (flag 0x01, never sent by 1.14) are not supported here.
    pub fn decode(p: &'a [u8]) -> Result<Self, VerbError> {
        let mut r = Reader::new(p, "EXT_FRAME");
        let network_id = NetworkId(r.u64()?);
        let flags = r.u8()?;
        if flags & 0x01 != 0 {
            return Err(VerbError::Unsupported {
                what: "EXT_FRAME",
                feature: "inline COM",
            });
        }
        Ok(ExtFrame {
            network_id,
            flags,
            to: Mac(r.array()?),
            from: Mac(r.array()?),
            ethertype: r.u16()?,
            payload: r.rest(),
        })
    }
}

/// MULTICAST_LIKE: `(nwid, MAC, ADI)` tuples. spec: vl2.md §7.3
pub fn multicast_likes(p: &[u8]) -> Result<Vec<(NetworkId, MulticastGroup)>, VerbError> {
    if !p.len().is_multiple_of(18) {
        return Err(VerbError::Invalid {
            what: "MULTICAST_LIKE",
            field: "length",
        });
    }
    let mut r = Reader::new(p, "MULTICAST_LIKE");
    let mut v = Vec::with_capacity(p.len() / 18);
    while r.remaining() > 0 {
        v.push((NetworkId(r.u64()?), group(&mut r)?));
    }
    Ok(v)
}

/// MULTICAST_GATHER. spec: vl2.md §7.4
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MulticastGather<'a> {
    /// Network.
    pub network_id: NetworkId,
    /// Flags (0x01: COM attached).
    pub flags: u8,
    /// Group.
    pub group: MulticastGroup,
    /// Maximum members wanted.
    pub gather_limit: u32,
    /// The attached COM bytes (if flag 0x01), unparsed.
    pub com: &'a [u8],
}

impl<'a> MulticastGather<'a> {
    /// Decodes the payload.
    pub fn decode(p: &'a [u8]) -> Result<Self, VerbError> {
        let mut r = Reader::new(p, "MULTICAST_GATHER");
        Ok(MulticastGather {
            network_id: NetworkId(r.u64()?),
            flags: r.u8()?,
            group: group(&mut r)?,
            gather_limit: r.u32()?,
            com: r.rest(),
        })
    }
}

/// Gather results shared by OK(MULTICAST_GATHER) and OK(MULTICAST_FRAME). spec: vl2.md §7.4
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GatherResults {
    /// Total members known to the responder.
    pub total_known: u32,
    /// Members listed.
    pub members: Vec<Address>,
}

impl GatherResults {
    fn read(r: &mut Reader<'_>) -> Result<Self, VerbError> {
        let total_known = r.u32()?;
        let n = r.u16()?;
        let mut members = Vec::with_capacity(usize::from(n).min(r.remaining() / 5));
        for _ in 0..n {
            members.push(r.address()?);
        }
        Ok(GatherResults {
            total_known,
            members,
        })
    }
}

/// OK(MULTICAST_GATHER) body. spec: vl2.md §7.4
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OkMulticastGather {
    /// Network.
    pub network_id: NetworkId,
    /// Group.
    pub group: MulticastGroup,
    /// Results.
    pub results: GatherResults,
}

impl OkMulticastGather {
    /// Decodes the body (after the OK prefix).
    pub fn decode(b: &[u8]) -> Result<Self, VerbError> {
        let mut r = Reader::new(b, "OK(MULTICAST_GATHER)");
        Ok(OkMulticastGather {
            network_id: NetworkId(r.u64()?),
            group: group(&mut r)?,
            results: GatherResults::read(&mut r)?,
        })
    }
}

/// MULTICAST_FRAME. spec: vl2.md §7.5
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MulticastFrame<'a> {
    /// Network.
    pub network_id: NetworkId,
    /// Flags.
    pub flags: u8,
    /// Implicit gather limit (flag 0x02).
    pub gather_limit: Option<u32>,
    /// Source MAC (flag 0x04), else derived from the sender.
    pub source: Option<Mac>,
    /// Destination group.
    pub group: MulticastGroup,
    /// Ethertype.
    pub ethertype: u16,
    /// Ethernet payload.
    pub payload: &'a [u8],
}

impl<'a> MulticastFrame<'a> {
    /// Decodes the payload. Inline COMs (flag 0x01, never sent by 1.14) are not supported here.
    pub fn decode(p: &'a [u8]) -> Result<Self, VerbError> {
        let mut r = Reader::new(p, "MULTICAST_FRAME");
        let network_id = NetworkId(r.u64()?);
        let flags = r.u8()?;
        if flags & 0x01 != 0 {
            return Err(VerbError::Unsupported {
                what: "MULTICAST_FRAME",
                feature: "inline COM",
            });
        }
        let gather_limit = if flags & 0x02 != 0 {
            Some(r.u32()?)
        } else {
            None
        };
        let source = if flags & 0x04 != 0 {
            Some(Mac(r.array()?))
        } else {
            None
        };
        Ok(MulticastFrame {
            network_id,
            flags,
            gather_limit,
            source,
            group: group(&mut r)?,
            ethertype: r.u16()?,
            payload: r.rest(),
        })
    }
}

/// OK(MULTICAST_FRAME) body. spec: vl2.md §7.5
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OkMulticastFrame {
    /// Network.
    pub network_id: NetworkId,
    /// Group.
    pub group: MulticastGroup,
    /// Flags (0x02: gather results follow).
    pub flags: u8,
    /// Gather results, if present.
    pub results: Option<GatherResults>,
}

impl OkMulticastFrame {
    /// Decodes the body (after the OK prefix). A legacy COM (flag 0x01) is not supported.
    pub fn decode(b: &[u8]) -> Result<Self, VerbError> {
        let mut r = Reader::new(b, "OK(MULTICAST_FRAME)");
        let network_id = NetworkId(r.u64()?);
        let group = group(&mut r)?;
        let flags = r.u8()?;
        if flags & 0x01 != 0 {
            return Err(VerbError::Unsupported {
                what: "OK(MULTICAST_FRAME)",
                feature: "inline COM",
            });
        }
        let results = if flags & 0x02 != 0 {
            Some(GatherResults::read(&mut r)?)
        } else {
            None
        };
        Ok(OkMulticastFrame {
            network_id,
            group,
            flags,
            results,
        })
    }
}

/// NETWORK_CONFIG_REQUEST. spec: vl2.md §7.7
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NetworkConfigRequest<'a> {
    /// Network.
    pub network_id: NetworkId,
    /// Metadata dictionary bytes.
    pub metadata: &'a [u8],
    /// Revision of the config held (0 if none or absent).
    pub revision: u64,
    /// Timestamp of the config held (0 if none or absent).
    pub timestamp: u64,
}

impl<'a> NetworkConfigRequest<'a> {
    /// Decodes the payload; revision and timestamp are optional.
    pub fn decode(p: &'a [u8]) -> Result<Self, VerbError> {
        let mut r = Reader::new(p, "NETWORK_CONFIG_REQUEST");
        let network_id = NetworkId(r.u64()?);
        let len = r.u16()?;
        let metadata = r.take(usize::from(len))?;
        let (revision, timestamp) = if r.remaining() >= 16 {
            (r.u64()?, r.u64()?)
        } else {
            (0, 0)
        };
        Ok(NetworkConfigRequest {
            network_id,
            metadata,
            revision,
            timestamp,
        })
    }

    /// Appends the payload.
    pub fn encode(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.network_id.0.to_be_bytes());
        out.extend_from_slice(&(self.metadata.len() as u16).to_be_bytes());
        out.extend_from_slice(self.metadata);
        out.extend_from_slice(&self.revision.to_be_bytes());
        out.extend_from_slice(&self.timestamp.to_be_bytes());
    }
}

/// The signed "new style" fields of a config chunk.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChunkSigned<'a> {
    /// Flags (0x01 fast propagate).
    pub flags: u8,
    /// Config update id (same for all chunks of one config).
    pub update_id: u64,
    /// Length of the complete dictionary.
    pub total_len: u32,
    /// Byte offset of this chunk in the dictionary.
    pub index: u32,
    /// The region covered by the signature (nwid through chunk index).
    pub signed_region: &'a [u8],
    /// The 96-byte signature.
    pub signature: &'a [u8],
}

/// A network config chunk (payload of NETWORK_CONFIG, and of OK(NETWORK_CONFIG_REQUEST) after
/// the OK prefix). spec: vl2.md §9.1
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConfigChunk<'a> {
    /// Network.
    pub network_id: NetworkId,
    /// The slice of the serialized dictionary.
    pub data: &'a [u8],
    /// Signed fields, absent in legacy single-chunk replies.
    pub signed: Option<ChunkSigned<'a>>,
}

impl<'a> ConfigChunk<'a> {
    /// Decodes a chunk; rejects `index + len > total`, a signature type other than 1 or a
    /// signature length other than 96.
    pub fn decode(p: &'a [u8]) -> Result<Self, VerbError> {
        let mut r = Reader::new(p, "NETWORK_CONFIG chunk");
        let network_id = NetworkId(r.u64()?);
        let len = r.u16()?;
        let data = r.take(usize::from(len))?;
        if r.remaining() == 0 {
            return Ok(ConfigChunk {
                network_id,
                data,
                signed: None,
            });
        }
        let flags = r.u8()?;
        let update_id = r.u64()?;
        let total_len = r.u32()?;
        let index = r.u32()?;
        let signed_region = &p[..r.pos()];
        if r.u8()? != 1 {
            return Err(r.invalid("signature type"));
        }
        if usize::from(r.u16()?) != SIGNATURE_LEN {
            return Err(r.invalid("signature length"));
        }
        let signature = r.take(SIGNATURE_LEN)?;
        if u64::from(index) + u64::from(len) > u64::from(total_len) {
            return Err(r.invalid("chunk index"));
        }
        Ok(ConfigChunk {
            network_id,
            data,
            signed: Some(ChunkSigned {
                flags,
                update_id,
                total_len,
                index,
                signed_region,
                signature,
            }),
        })
    }

    /// Whether the chunk is signed by `controller` (the identity of `nwid >> 24`).
    pub fn verify(&self, controller: &Identity) -> bool {
        self.signed
            .is_some_and(|s| controller.verify(s.signed_region, s.signature))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decoders_reject_truncation() {
        let mut p = Vec::new();
        NetworkConfigRequest {
            network_id: NetworkId(5),
            metadata: b"v=1",
            revision: 0,
            timestamp: 0,
        }
        .encode(&mut p);
        assert_eq!(NetworkConfigRequest::decode(&p).unwrap().metadata, b"v=1");
        for n in 0..10 {
            assert!(NetworkConfigRequest::decode(&p[..n]).is_err());
        }
        assert!(multicast_likes(&[0u8; 17]).is_err());
        assert_eq!(multicast_likes(&[0u8; 36]).unwrap().len(), 2);
        let f = Frame {
            network_id: NetworkId(1),
            ethertype: 0x0800,
            payload: b"abc",
        };
        let mut b = Vec::new();
        f.encode(&mut b);
        assert_eq!(Frame::decode(&b).unwrap(), f);
        assert!(ConfigChunk::decode(&[0u8; 9]).is_err());
    }
}
