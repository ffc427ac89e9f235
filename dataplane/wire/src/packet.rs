//! The VL1 packet header: a checked view over a byte buffer. spec: vl1.md §3.1, §5.1

use std::fmt;

use crate::address::Address;

/// Offset of the packet id / IV.
pub const IDX_ID: usize = 0;
/// Offset of the destination address.
pub const IDX_DEST: usize = 8;
/// Offset of the source address.
pub const IDX_SOURCE: usize = 13;
/// Offset of the flags byte.
pub const IDX_FLAGS: usize = 18;
/// Offset of the MAC field.
pub const IDX_MAC: usize = 19;
/// Offset of the verb byte (start of the armored envelope).
pub const IDX_VERB: usize = 27;
/// Offset of the verb payload.
pub const IDX_PAYLOAD: usize = 28;
/// Minimum packet length (header + verb byte).
pub const MIN_PACKET_LEN: usize = 28;
/// Maximum assembled packet length.
pub const MAX_PACKET_LEN: usize = 10_024;
/// Default physical MTU (UDP payload bytes).
pub const DEFAULT_PHYSICAL_MTU: usize = 1432;

/// Flags bit: more fragments follow.
pub const FLAG_FRAGMENTED: u8 = 0x40;
/// Flags bit: legacy "encrypted" flag, set iff cipher 1.
pub const FLAG_ENCRYPTED_LEGACY: u8 = 0x80;
/// Flags mask for the hop count.
pub const FLAGS_HOPS_MASK: u8 = 0x07;
/// Flags mask for the cipher suite.
pub const FLAGS_CIPHER_MASK: u8 = 0x38;
/// Verb byte bit: payload is LZ4-compressed.
pub const VERB_FLAG_COMPRESSED: u8 = 0x80;
/// Verb byte mask for the verb number.
pub const VERB_MASK: u8 = 0x1f;

/// Errors from the header codec.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PacketError {
    /// Shorter than [`MIN_PACKET_LEN`].
    #[error("packet too short: {len} bytes (minimum 28)")]
    TooShort {
        /// Length received.
        len: usize,
    },
    /// Longer than [`MAX_PACKET_LEN`].
    #[error("packet too long: {len} bytes (maximum 10024)")]
    TooLong {
        /// Length received.
        len: usize,
    },
}

/// Cipher suites. spec: vl1.md §3.1
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CipherSuite {
    /// 0: Poly1305 MAC, no encryption.
    Poly1305None,
    /// 1: Salsa20/12 encryption + Poly1305 MAC.
    Poly1305Salsa2012,
    /// 2: trusted path (no crypto; MAC field holds the trusted path id).
    TrustedPath,
    /// 3: AES-GMAC-SIV.
    AesGmacSiv,
}

impl CipherSuite {
    /// The 3-bit suite number.
    pub fn id(self) -> u8 {
        match self {
            CipherSuite::Poly1305None => 0,
            CipherSuite::Poly1305Salsa2012 => 1,
            CipherSuite::TrustedPath => 2,
            CipherSuite::AesGmacSiv => 3,
        }
    }

    /// Maps a suite number; 4..7 are undefined.
    pub fn from_id(id: u8) -> Option<Self> {
        Some(match id {
            0 => CipherSuite::Poly1305None,
            1 => CipherSuite::Poly1305Salsa2012,
            2 => CipherSuite::TrustedPath,
            3 => CipherSuite::AesGmacSiv,
            _ => return None,
        })
    }

    /// The name used in ZeroTier's own traces and in the reference decodings.
    pub fn name(self) -> &'static str {
        match self {
            CipherSuite::Poly1305None => "POLY1305_NONE",
            CipherSuite::Poly1305Salsa2012 => "POLY1305_SALSA2012",
            CipherSuite::TrustedPath => "NONE",
            CipherSuite::AesGmacSiv => "AES_GMAC_SIV",
        }
    }
}

/// A verb number (0..31). Unassigned numbers are representable and are ignored after
/// authentication. spec: vl1.md §5.1
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Verb(u8);

impl Verb {
    /// 0x00
    pub const NOP: Verb = Verb(0x00);
    /// 0x01
    pub const HELLO: Verb = Verb(0x01);
    /// 0x02
    pub const ERROR: Verb = Verb(0x02);
    /// 0x03
    pub const OK: Verb = Verb(0x03);
    /// 0x04
    pub const WHOIS: Verb = Verb(0x04);
    /// 0x05
    pub const RENDEZVOUS: Verb = Verb(0x05);
    /// 0x06
    pub const FRAME: Verb = Verb(0x06);
    /// 0x07
    pub const EXT_FRAME: Verb = Verb(0x07);
    /// 0x08
    pub const ECHO: Verb = Verb(0x08);
    /// 0x09
    pub const MULTICAST_LIKE: Verb = Verb(0x09);
    /// 0x0a
    pub const NETWORK_CREDENTIALS: Verb = Verb(0x0a);
    /// 0x0b
    pub const NETWORK_CONFIG_REQUEST: Verb = Verb(0x0b);
    /// 0x0c
    pub const NETWORK_CONFIG: Verb = Verb(0x0c);
    /// 0x0d
    pub const MULTICAST_GATHER: Verb = Verb(0x0d);
    /// 0x0e
    pub const MULTICAST_FRAME: Verb = Verb(0x0e);
    /// 0x10
    pub const PUSH_DIRECT_PATHS: Verb = Verb(0x10);
    /// 0x12
    pub const ACK: Verb = Verb(0x12);
    /// 0x13
    pub const QOS_MEASUREMENT: Verb = Verb(0x13);
    /// 0x14
    pub const USER_MESSAGE: Verb = Verb(0x14);
    /// 0x15
    pub const REMOTE_TRACE: Verb = Verb(0x15);
    /// 0x16
    pub const PATH_NEGOTIATION_REQUEST: Verb = Verb(0x16);

    /// Builds a verb from a byte, masking to the 5 verb bits.
    pub fn from_byte(b: u8) -> Verb {
        Verb(b & VERB_MASK)
    }

    /// The verb number.
    pub fn to_u8(self) -> u8 {
        self.0
    }

    /// The spec's name, or `None` for unassigned numbers.
    pub fn name(self) -> Option<&'static str> {
        Some(match self.0 {
            0x00 => "NOP",
            0x01 => "HELLO",
            0x02 => "ERROR",
            0x03 => "OK",
            0x04 => "WHOIS",
            0x05 => "RENDEZVOUS",
            0x06 => "FRAME",
            0x07 => "EXT_FRAME",
            0x08 => "ECHO",
            0x09 => "MULTICAST_LIKE",
            0x0a => "NETWORK_CREDENTIALS",
            0x0b => "NETWORK_CONFIG_REQUEST",
            0x0c => "NETWORK_CONFIG",
            0x0d => "MULTICAST_GATHER",
            0x0e => "MULTICAST_FRAME",
            0x10 => "PUSH_DIRECT_PATHS",
            0x12 => "ACK",
            0x13 => "QOS_MEASUREMENT",
            0x14 => "USER_MESSAGE",
            0x15 => "REMOTE_TRACE",
            0x16 => "PATH_NEGOTIATION_REQUEST",
            _ => return None,
        })
    }
}

impl fmt::Debug for Verb {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.name() {
            Some(n) => f.write_str(n),
            None => write!(f, "Verb({:#04x})", self.0),
        }
    }
}

impl fmt::Display for Verb {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self, f)
    }
}

/// A checked view over a packet (head or complete). After [`Packet::new_checked`] no accessor
/// panics.
#[derive(Debug, Clone, Copy)]
pub struct Packet<T> {
    buf: T,
}

impl<T: AsRef<[u8]>> Packet<T> {
    /// Checks the length (28..=10024) and wraps the buffer.
    pub fn new_checked(buf: T) -> Result<Self, PacketError> {
        let len = buf.as_ref().len();
        if len < MIN_PACKET_LEN {
            return Err(PacketError::TooShort { len });
        }
        if len > MAX_PACKET_LEN {
            return Err(PacketError::TooLong { len });
        }
        Ok(Packet { buf })
    }

    fn b(&self) -> &[u8] {
        self.buf.as_ref()
    }

    /// The whole packet.
    pub fn as_bytes(&self) -> &[u8] {
        self.b()
    }

    /// Unwraps the buffer.
    pub fn into_inner(self) -> T {
        self.buf
    }

    /// The 8 packet-id bytes as they are on the wire.
    pub fn id_bytes(&self) -> [u8; 8] {
        let mut id = [0u8; 8];
        id.copy_from_slice(&self.b()[IDX_ID..IDX_ID + 8]);
        id
    }

    /// The packet id as a big-endian integer.
    pub fn id(&self) -> u64 {
        u64::from_be_bytes(self.id_bytes())
    }

    /// Destination address.
    pub fn destination(&self) -> Address {
        Address::from_slice(&self.b()[IDX_DEST..]).unwrap_or_default()
    }

    /// Source address.
    pub fn source(&self) -> Address {
        Address::from_slice(&self.b()[IDX_SOURCE..]).unwrap_or_default()
    }

    /// The raw flags byte.
    pub fn flags(&self) -> u8 {
        self.b()[IDX_FLAGS]
    }

    /// Hop count (flags & 7).
    pub fn hops(&self) -> u8 {
        self.flags() & FLAGS_HOPS_MASK
    }

    /// The 3-bit cipher suite number.
    pub fn cipher_id(&self) -> u8 {
        (self.flags() & FLAGS_CIPHER_MASK) >> 3
    }

    /// The cipher suite, `None` for undefined numbers 4..7.
    pub fn cipher(&self) -> Option<CipherSuite> {
        CipherSuite::from_id(self.cipher_id())
    }

    /// Whether more fragments follow.
    pub fn is_fragmented(&self) -> bool {
        self.flags() & FLAG_FRAGMENTED != 0
    }

    /// The 8-byte MAC field.
    pub fn mac(&self) -> [u8; 8] {
        let mut m = [0u8; 8];
        m.copy_from_slice(&self.b()[IDX_MAC..IDX_MAC + 8]);
        m
    }

    /// The raw verb byte (meaningful only after dearmoring for encrypted suites).
    pub fn verb_byte(&self) -> u8 {
        self.b()[IDX_VERB]
    }

    /// The verb (compression flag removed).
    pub fn verb(&self) -> Verb {
        Verb::from_byte(self.verb_byte())
    }

    /// Whether the payload is LZ4-compressed.
    pub fn is_compressed(&self) -> bool {
        self.verb_byte() & VERB_FLAG_COMPRESSED != 0
    }

    /// The verb payload (offset 28 onward).
    pub fn payload(&self) -> &[u8] {
        &self.b()[IDX_PAYLOAD..]
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Packet<T> {
    fn bm(&mut self) -> &mut [u8] {
        self.buf.as_mut()
    }

    /// The whole packet, mutably.
    pub fn as_bytes_mut(&mut self) -> &mut [u8] {
        self.bm()
    }

    /// Sets the hop count (relays do this; it is not authenticated).
    pub fn set_hops(&mut self, hops: u8) {
        let f = self.flags();
        self.bm()[IDX_FLAGS] = (f & !FLAGS_HOPS_MASK) | (hops & FLAGS_HOPS_MASK);
    }

    /// Sets or clears the fragmented flag.
    pub fn set_fragmented(&mut self, on: bool) {
        let f = self.flags();
        self.bm()[IDX_FLAGS] = if on {
            f | FLAG_FRAGMENTED
        } else {
            f & !FLAG_FRAGMENTED
        };
    }

    /// The verb payload, mutably.
    pub fn payload_mut(&mut self) -> &mut [u8] {
        &mut self.bm()[IDX_PAYLOAD..]
    }
}

/// Writes a fresh header (id, destination, source, flags = 0, MAC zero) and the verb byte into a
/// new buffer followed by `payload`. The packet still has to be armored.
pub fn build(id: [u8; 8], dest: Address, source: Address, verb: Verb, payload: &[u8]) -> Vec<u8> {
    let mut v = Vec::with_capacity(IDX_PAYLOAD + payload.len());
    v.extend_from_slice(&id);
    v.extend_from_slice(&dest.to_bytes());
    v.extend_from_slice(&source.to_bytes());
    v.push(0);
    v.extend_from_slice(&[0u8; 8]);
    v.push(verb.to_u8());
    v.extend_from_slice(payload);
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn checked_lengths_and_fields() {
        assert!(matches!(
            Packet::new_checked(&[0u8; 27][..]),
            Err(PacketError::TooShort { len: 27 })
        ));
        assert!(matches!(
            Packet::new_checked(vec![0u8; 10_025]),
            Err(PacketError::TooLong { .. })
        ));
        let mut v = build(
            [1, 2, 3, 4, 5, 6, 7, 8],
            Address::new(0x555b5031f8).unwrap(),
            Address::new(0x2f52c8fb18).unwrap(),
            Verb::ECHO,
            b"x",
        );
        v[IDX_FLAGS] = 0x5a;
        let mut p = Packet::new_checked(&mut v[..]).unwrap();
        assert_eq!(p.hops(), 2);
        assert_eq!(p.cipher(), Some(CipherSuite::AesGmacSiv));
        assert!(p.is_fragmented());
        p.set_hops(7);
        p.set_fragmented(false);
        assert_eq!(p.flags(), 0x1f);
        assert_eq!(p.destination().to_string(), "555b5031f8");
        assert_eq!(p.source().to_string(), "2f52c8fb18");
        assert_eq!(p.verb(), Verb::ECHO);
        assert_eq!(p.payload(), b"x");
    }
}
