//! VL1 verbs other than HELLO. spec: vl1.md §5.3–§5.9

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use super::{Reader, VerbError};
use crate::address::Address;
use crate::identity::Identity;
use crate::inet::PathRecord;
use crate::packet::Verb;

/// The prefix of an OK payload: in-re verb and in-re packet id. spec: vl1.md §5.3
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OkHeader {
    /// The verb being answered.
    pub in_re_verb: Verb,
    /// The on-wire packet id of the request.
    pub in_re_packet_id: u64,
}

impl OkHeader {
    /// Length of the prefix.
    pub const LEN: usize = 9;

    /// Decodes the prefix; the verb-specific body starts at [`OkHeader::LEN`].
    pub fn decode(payload: &[u8]) -> Result<OkHeader, VerbError> {
        let mut r = Reader::new(payload, "OK");
        Ok(OkHeader {
            in_re_verb: Verb::from_byte(r.u8()?),
            in_re_packet_id: r.u64()?,
        })
    }

    /// Appends the prefix.
    pub fn encode(&self, out: &mut Vec<u8>) {
        out.push(self.in_re_verb.to_u8());
        out.extend_from_slice(&self.in_re_packet_id.to_be_bytes());
    }
}

/// ERROR codes. spec: vl1.md §5.1
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ErrorCode(pub u8);

impl ErrorCode {
    /// 0x01
    pub const INVALID_REQUEST: ErrorCode = ErrorCode(0x01);
    /// 0x02
    pub const BAD_PROTOCOL_VERSION: ErrorCode = ErrorCode(0x02);
    /// 0x03
    pub const OBJ_NOT_FOUND: ErrorCode = ErrorCode(0x03);
    /// 0x04
    pub const IDENTITY_COLLISION: ErrorCode = ErrorCode(0x04);
    /// 0x05
    pub const UNSUPPORTED_OPERATION: ErrorCode = ErrorCode(0x05);
    /// 0x06
    pub const NEED_MEMBERSHIP_CERTIFICATE: ErrorCode = ErrorCode(0x06);
    /// 0x07
    pub const NETWORK_ACCESS_DENIED: ErrorCode = ErrorCode(0x07);
    /// 0x08
    pub const UNWANTED_MULTICAST: ErrorCode = ErrorCode(0x08);
    /// 0x09
    pub const NETWORK_AUTHENTICATION_REQUIRED: ErrorCode = ErrorCode(0x09);
}

/// The prefix of an ERROR payload. spec: vl1.md §5.4
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ErrorHeader {
    /// The verb that caused the error.
    pub in_re_verb: Verb,
    /// The on-wire packet id of that packet.
    pub in_re_packet_id: u64,
    /// The error code.
    pub code: ErrorCode,
}

impl ErrorHeader {
    /// Length of the prefix.
    pub const LEN: usize = 10;

    /// Decodes the prefix; code-specific data starts at [`ErrorHeader::LEN`].
    pub fn decode(payload: &[u8]) -> Result<ErrorHeader, VerbError> {
        let mut r = Reader::new(payload, "ERROR");
        Ok(ErrorHeader {
            in_re_verb: Verb::from_byte(r.u8()?),
            in_re_packet_id: r.u64()?,
            code: ErrorCode(r.u8()?),
        })
    }

    /// Appends the prefix.
    pub fn encode(&self, out: &mut Vec<u8>) {
        out.push(self.in_re_verb.to_u8());
        out.extend_from_slice(&self.in_re_packet_id.to_be_bytes());
        out.push(self.code.0);
    }
}

/// A WHOIS request: one or more addresses. spec: vl1.md §5.5
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Whois {
    /// Addresses asked for.
    pub addresses: Vec<Address>,
}

impl Whois {
    /// Decodes the request (trailing bytes shorter than an address are ignored).
    pub fn decode(payload: &[u8]) -> Result<Whois, VerbError> {
        if payload.len() < 5 {
            return Err(VerbError::Truncated {
                what: "WHOIS",
                at: 0,
            });
        }
        Ok(Whois {
            addresses: payload
                .chunks_exact(5)
                .filter_map(Address::from_slice)
                .collect(),
        })
    }

    /// Appends the request.
    pub fn encode(&self, out: &mut Vec<u8>) {
        for a in &self.addresses {
            out.extend_from_slice(&a.to_bytes());
        }
    }
}

/// Decodes the identities of an OK(WHOIS) body (71-byte public forms back to back).
pub fn ok_whois_identities(body: &[u8]) -> Result<Vec<Identity>, VerbError> {
    let mut v = Vec::new();
    let mut i = 0;
    while i < body.len() {
        let (id, used) = Identity::from_binary(&body[i..]).map_err(|_| VerbError::Invalid {
            what: "OK(WHOIS)",
            field: "identity",
        })?;
        v.push(id.to_public());
        i += used;
    }
    Ok(v)
}

/// RENDEZVOUS: "peer X can be reached at this address". spec: vl1.md §5.6
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rendezvous {
    /// Flags (0).
    pub flags: u8,
    /// The peer to contact.
    pub with: Address,
    /// Its physical address.
    pub address: SocketAddr,
}

impl Rendezvous {
    /// Decodes the payload; IP length must be 4 or 16.
    pub fn decode(payload: &[u8]) -> Result<Rendezvous, VerbError> {
        let mut r = Reader::new(payload, "RENDEZVOUS");
        let flags = r.u8()?;
        let with = r.address()?;
        let port = r.u16()?;
        let ip: IpAddr = match r.u8()? {
            4 => Ipv4Addr::from(r.array::<4>()?).into(),
            16 => Ipv6Addr::from(r.array::<16>()?).into(),
            _ => return Err(r.invalid("ip length")),
        };
        Ok(Rendezvous {
            flags,
            with,
            address: SocketAddr::new(ip, port),
        })
    }

    /// Appends the payload.
    pub fn encode(&self, out: &mut Vec<u8>) {
        out.push(self.flags);
        out.extend_from_slice(&self.with.to_bytes());
        out.extend_from_slice(&self.address.port().to_be_bytes());
        match self.address.ip() {
            IpAddr::V4(v) => {
                out.push(4);
                out.extend_from_slice(&v.octets());
            }
            IpAddr::V6(v) => {
                out.push(16);
                out.extend_from_slice(&v.octets());
            }
        }
    }
}

/// PUSH_DIRECT_PATHS: a list of path records. spec: vl1.md §5.8
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PushDirectPaths {
    /// The records in order.
    pub records: Vec<PathRecord>,
}

impl PushDirectPaths {
    /// Decodes the payload.
    pub fn decode(payload: &[u8]) -> Result<PushDirectPaths, VerbError> {
        let mut r = Reader::new(payload, "PUSH_DIRECT_PATHS");
        let n = r.u16()?;
        let mut records = Vec::new();
        for _ in 0..n {
            let (rec, used) =
                PathRecord::decode(&payload[r.pos()..]).map_err(|_| r.invalid("record"))?;
            r.take(used)?;
            records.push(rec);
        }
        Ok(PushDirectPaths { records })
    }

    /// Appends the payload.
    pub fn encode(&self, out: &mut Vec<u8>) {
        let recs: Vec<&PathRecord> = self
            .records
            .iter()
            .filter(|r| r.address.is_some())
            .collect();
        out.extend_from_slice(&(recs.len() as u16).to_be_bytes());
        for r in recs {
            r.encode(out);
        }
    }
}

/// USER_MESSAGE: 8-byte type id then data. spec: vl1.md §5.9
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserMessage {
    /// Message type id (≤ 65535 reserved for ZeroTier, Inc.).
    pub type_id: u64,
    /// Application data.
    pub data: Vec<u8>,
}

impl UserMessage {
    /// Decodes the payload; shorter than 8 bytes is an error.
    pub fn decode(payload: &[u8]) -> Result<UserMessage, VerbError> {
        let mut r = Reader::new(payload, "USER_MESSAGE");
        Ok(UserMessage {
            type_id: r.u64()?,
            data: r.rest().to_vec(),
        })
    }

    /// Appends the payload.
    pub fn encode(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.type_id.to_be_bytes());
        out.extend_from_slice(&self.data);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips() {
        let rv = Rendezvous {
            flags: 0,
            with: Address::new(0xf6372234a7).unwrap(),
            address: "10.77.3.1:9993".parse().unwrap(),
        };
        let mut b = Vec::new();
        rv.encode(&mut b);
        assert_eq!(hex::encode(&b), "00f6372234a72709040a4d0301");
        assert_eq!(Rendezvous::decode(&b).unwrap(), rv);
        let pdp = PushDirectPaths {
            records: vec![
                PathRecord {
                    flags: 0,
                    address: Some("[fd00::1]:9993".parse().unwrap()),
                },
                PathRecord {
                    flags: 0,
                    address: Some("10.0.0.1:1".parse().unwrap()),
                },
            ],
        };
        let mut b = Vec::new();
        pdp.encode(&mut b);
        assert_eq!(PushDirectPaths::decode(&b).unwrap(), pdp);
        let w = Whois {
            addresses: vec![Address::new(1).unwrap(), Address::new(2).unwrap()],
        };
        let mut b = Vec::new();
        w.encode(&mut b);
        assert_eq!(Whois::decode(&b).unwrap(), w);
        let e = ErrorHeader {
            in_re_verb: Verb::HELLO,
            in_re_packet_id: 7,
            code: ErrorCode::IDENTITY_COLLISION,
        };
        let mut b = Vec::new();
        e.encode(&mut b);
        assert_eq!(ErrorHeader::decode(&b).unwrap(), e);
        assert!(UserMessage::decode(&[1, 2, 3]).is_err());
        assert!(Rendezvous::decode(&[0, 1, 2, 3, 4, 5, 0, 1, 5]).is_err());
    }
}
