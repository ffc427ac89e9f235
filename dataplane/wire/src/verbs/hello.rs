//! HELLO and OK(HELLO). spec: vl1.md §5.2, §5.3.1, §3.3

use super::{Reader, VerbError};
use crate::address::Address;
use crate::armor::{self, ArmorError, hello_tail_crypt};
use crate::crypto::PeerKey;
use crate::identity::Identity;
use crate::inet::InetAddress;
use crate::packet::{CipherSuite, IDX_PAYLOAD, Verb, build};

/// A moon entry in the HELLO tail.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MoonRef {
    /// World type byte (127 = moon; others are ignored by receivers).
    pub kind: u8,
    /// Moon world id.
    pub id: u64,
    /// Timestamp held, 0 = wanted.
    pub timestamp: u64,
}

/// A HELLO payload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hello {
    /// VL1 protocol version (12 for 1.14).
    pub protocol_version: u8,
    /// Software major version.
    pub major: u8,
    /// Software minor version.
    pub minor: u8,
    /// Software revision.
    pub revision: u16,
    /// Sender's clock (ms), echoed in OK(HELLO).
    pub timestamp: u64,
    /// Sender identity (public).
    pub identity: Identity,
    /// Physical address the HELLO was sent to, if included.
    pub destination: Option<InetAddress>,
    /// Planet id and timestamp, if included.
    pub planet: Option<(u64, u64)>,
    /// The tail after the planet fields, still encrypted with cryptField (empty if absent).
    pub encrypted_tail: Vec<u8>,
}

impl Hello {
    /// Decodes the clear part of a HELLO payload. Trailing parts are optional (1.14 tolerates
    /// HELLOs that end after the identity, the address or the planet fields).
    pub fn decode(payload: &[u8]) -> Result<Hello, VerbError> {
        let mut r = Reader::new(payload, "HELLO");
        let protocol_version = r.u8()?;
        let major = r.u8()?;
        let minor = r.u8()?;
        let revision = r.u16()?;
        let timestamp = r.u64()?;
        let (identity, used) =
            Identity::from_binary(&payload[r.pos()..]).map_err(|_| r.invalid("identity"))?;
        r.take(used)?;
        let mut destination = None;
        let mut planet = None;
        let mut encrypted_tail = Vec::new();
        if r.remaining() > 0 {
            let (a, used) =
                InetAddress::decode(&payload[r.pos()..]).map_err(|_| r.invalid("destination"))?;
            r.take(used)?;
            destination = Some(a);
            if r.remaining() >= 16 {
                planet = Some((r.u64()?, r.u64()?));
                encrypted_tail = r.rest().to_vec();
            }
        }
        Ok(Hello {
            protocol_version,
            major,
            minor,
            revision,
            timestamp,
            identity: identity.to_public(),
            destination,
            planet,
            encrypted_tail,
        })
    }

    /// Decrypts the tail with the peer key and the on-wire packet id.
    pub fn decrypt_tail(&self, key: &PeerKey, packet_id: &[u8; 8]) -> Vec<u8> {
        let mut t = self.encrypted_tail.clone();
        hello_tail_crypt(key, packet_id, &mut t);
        t
    }

    /// Parses a decrypted tail: moon count then 17-byte entries. An empty tail has no moons.
    pub fn parse_moons(plain_tail: &[u8]) -> Result<Vec<MoonRef>, VerbError> {
        if plain_tail.is_empty() {
            return Ok(Vec::new());
        }
        let mut r = Reader::new(plain_tail, "HELLO moons");
        let n = r.u16()?;
        let mut v = Vec::new();
        for _ in 0..n {
            v.push(MoonRef {
                kind: r.u8()?,
                id: r.u64()?,
                timestamp: r.u64()?,
            });
        }
        Ok(v)
    }

    /// Builds and armors a complete HELLO packet (cipher 0, cryptField tail with `moons`).
    /// spec: vl1.md §5.2, §3.3
    pub fn to_packet(
        &self,
        packet_id: [u8; 8],
        dest: Address,
        moons: &[MoonRef],
        key: &PeerKey,
    ) -> Result<Vec<u8>, ArmorError> {
        let mut p = Vec::new();
        p.push(self.protocol_version);
        p.push(self.major);
        p.push(self.minor);
        p.extend_from_slice(&self.revision.to_be_bytes());
        p.extend_from_slice(&self.timestamp.to_be_bytes());
        self.identity.write_binary(&mut p, false);
        self.destination.unwrap_or(InetAddress::Nil).encode(&mut p);
        let (pid, pts) = self.planet.unwrap_or((0, 0));
        p.extend_from_slice(&pid.to_be_bytes());
        p.extend_from_slice(&pts.to_be_bytes());
        let tail_start = IDX_PAYLOAD + p.len();
        p.extend_from_slice(&(moons.len() as u16).to_be_bytes());
        for m in moons {
            p.push(m.kind);
            p.extend_from_slice(&m.id.to_be_bytes());
            p.extend_from_slice(&m.timestamp.to_be_bytes());
        }
        let mut packet = build(packet_id, dest, self.identity.address(), Verb::HELLO, &p);
        hello_tail_crypt(key, &packet_id, &mut packet[tail_start..]);
        armor::armor(&mut packet, key, CipherSuite::Poly1305None)?;
        Ok(packet)
    }
}

/// The body of OK(HELLO) (after the in-re verb and packet id).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OkHello {
    /// Timestamp copied from the HELLO.
    pub timestamp_echo: u64,
    /// Responder's protocol version.
    pub protocol_version: u8,
    /// Responder's major version.
    pub major: u8,
    /// Responder's minor version.
    pub minor: u8,
    /// Responder's revision.
    pub revision: u16,
    /// The HELLO sender's address as seen by the responder.
    pub your_address: Option<InetAddress>,
    /// Serialized world updates, back to back (decode with [`crate::World::decode`]).
    pub world_updates: Vec<u8>,
}

impl OkHello {
    /// Decodes the body.
    pub fn decode(body: &[u8]) -> Result<OkHello, VerbError> {
        let mut r = Reader::new(body, "OK(HELLO)");
        let timestamp_echo = r.u64()?;
        let protocol_version = r.u8()?;
        let major = r.u8()?;
        let minor = r.u8()?;
        let revision = r.u16()?;
        let mut your_address = None;
        let mut world_updates = Vec::new();
        if r.remaining() > 0 {
            let (a, used) =
                InetAddress::decode(&body[r.pos()..]).map_err(|_| r.invalid("address"))?;
            r.take(used)?;
            your_address = Some(a);
            if r.remaining() >= 2 {
                let l = r.u16()?;
                world_updates = r.take(usize::from(l))?.to_vec();
            }
        }
        Ok(OkHello {
            timestamp_echo,
            protocol_version,
            major,
            minor,
            revision,
            your_address,
            world_updates,
        })
    }

    /// Appends the body.
    pub fn encode(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.timestamp_echo.to_be_bytes());
        out.push(self.protocol_version);
        out.push(self.major);
        out.push(self.minor);
        out.extend_from_slice(&self.revision.to_be_bytes());
        self.your_address.unwrap_or(InetAddress::Nil).encode(out);
        out.extend_from_slice(&(self.world_updates.len() as u16).to_be_bytes());
        out.extend_from_slice(&self.world_updates);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::test_vectors::{A, B};

    // spec: vl1.md Appendix A (HELLO)
    #[test]
    fn appendix_a_hello() {
        let a: Identity = A.parse().unwrap();
        let b: Identity = B.parse().unwrap();
        let key = a.agree(&b).unwrap();
        let h = Hello {
            protocol_version: 12,
            major: 1,
            minor: 14,
            revision: 1,
            timestamp: 1700000000123,
            identity: a.to_public(),
            destination: Some(InetAddress::Ip("192.0.2.55:9993".parse().unwrap())),
            planet: Some((149604618, 1644592324813)),
            encrypted_tail: Vec::new(),
        };
        let moons = [MoonRef {
            kind: 127,
            id: 0x2f52c8fb18,
            timestamp: 0,
        }];
        let id = [0xa1, 0xa2, 0xa3, 0xa4, 0xa5, 0xa6, 0xa7, 0xa8];
        let p = h.to_packet(id, b.address(), &moons, &key).unwrap();
        assert_eq!(
            hex::encode(&p),
            "a1a2a3a4a5a6a7a8555b5031f82f52c8fb18009476fdaa0cdb59f8010c010e00010000018bcfe5687b2f52c8fb1800cc8def6df561ff69117bdeb006b329ebac35349a91e65175032e6d1398f1eb58b1eaefa4507ccf875e8dea63b32b4b1c39ddd567ccb963ead9cfec1d538cb21b0004c000023727090000000008eac90a0000017ee95760cd341100790c065f413b5a58635e24303a252468"
        );
        let mut q = p.clone();
        armor::dearmor(&mut q, &key).unwrap();
        let back = Hello::decode(&q[IDX_PAYLOAD..]).unwrap();
        assert_eq!(back.identity, a.to_public());
        let tail = back.decrypt_tail(&key, &id);
        assert_eq!(Hello::parse_moons(&tail).unwrap(), moons);
        for n in 0..q.len() - IDX_PAYLOAD {
            let _ = Hello::decode(&q[IDX_PAYLOAD..IDX_PAYLOAD + n]);
        }
    }
}
