//! ZeroTier addresses (40 bits) and network ids (64 bits). spec: vl1.md §1.2, vl2.md §1.

use std::fmt;
use std::str::FromStr;

/// Errors parsing an address or network id.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum AddressError {
    /// The text was not 1..=N hex digits.
    #[error("invalid hex in address or network id: {text:?}")]
    BadHex {
        /// The offending text (truncated to 32 chars).
        text: String,
    },
    /// The value does not fit in 40 bits.
    #[error("address {value:#x} does not fit in 40 bits")]
    TooLarge {
        /// The parsed value.
        value: u64,
    },
}

fn parse_hex_u64(s: &str, max_digits: usize) -> Result<u64, AddressError> {
    if s.is_empty() || s.len() > max_digits || !s.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(AddressError::BadHex {
            text: s.chars().take(32).collect(),
        });
    }
    u64::from_str_radix(s, 16).map_err(|_| AddressError::BadHex {
        text: s.chars().take(32).collect(),
    })
}

/// A 40-bit ZeroTier node address, shown as 10 lowercase hex digits.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct Address(u64);

impl Address {
    /// Length of the binary form.
    pub const LEN: usize = 5;

    /// Builds an address from a 40-bit value.
    pub fn new(value: u64) -> Result<Self, AddressError> {
        if value >> 40 != 0 {
            return Err(AddressError::TooLarge { value });
        }
        Ok(Address(value))
    }

    /// Reads the 5-byte big-endian binary form (any value is representable).
    pub fn from_bytes(b: [u8; 5]) -> Self {
        Address(
            (u64::from(b[0]) << 32)
                | (u64::from(b[1]) << 24)
                | (u64::from(b[2]) << 16)
                | (u64::from(b[3]) << 8)
                | u64::from(b[4]),
        )
    }

    /// Reads the address from the first 5 bytes of `b`; `None` if `b` is shorter.
    pub fn from_slice(b: &[u8]) -> Option<Self> {
        let a: [u8; 5] = b.get(..5)?.try_into().ok()?;
        Some(Self::from_bytes(a))
    }

    /// The 5-byte big-endian binary form.
    pub fn to_bytes(self) -> [u8; 5] {
        let v = self.0.to_be_bytes();
        [v[3], v[4], v[5], v[6], v[7]]
    }

    /// The address as an integer.
    pub fn to_u64(self) -> u64 {
        self.0
    }

    /// Reserved addresses: zero and any address whose first byte is 0xff (the fragment
    /// indicator). spec: vl1.md §1.2
    pub fn is_reserved(self) -> bool {
        self.0 == 0 || (self.0 >> 32) == 0xff
    }
}

impl fmt::Display for Address {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:010x}", self.0)
    }
}

impl fmt::Debug for Address {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Address({:010x})", self.0)
    }
}

impl FromStr for Address {
    type Err = AddressError;
    /// Parses up to 10 hex digits.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Address::new(parse_hex_u64(s, 10)?)
    }
}

/// A 64-bit network id: controller address (top 40 bits) and network number (low 24 bits).
/// spec: vl2.md §1.1
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct NetworkId(pub u64);

impl NetworkId {
    /// The controller's address (`nwid >> 24`).
    pub fn controller(self) -> Address {
        Address(self.0 >> 24)
    }

    /// Reads the first 8 bytes of `b` as a big-endian id.
    pub fn from_slice(b: &[u8]) -> Option<Self> {
        Some(NetworkId(u64::from_be_bytes(b.get(..8)?.try_into().ok()?)))
    }
}

impl fmt::Display for NetworkId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:016x}", self.0)
    }
}

impl fmt::Debug for NetworkId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "NetworkId({:016x})", self.0)
    }
}

impl FromStr for NetworkId {
    type Err = AddressError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(NetworkId(parse_hex_u64(s, 16)?))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_reserved() {
        let a: Address = "2f52c8fb18".parse().unwrap();
        assert_eq!(a.to_bytes(), [0x2f, 0x52, 0xc8, 0xfb, 0x18]);
        assert_eq!(Address::from_bytes(a.to_bytes()), a);
        assert_eq!(a.to_string(), "2f52c8fb18");
        assert!(!a.is_reserved());
        assert!(Address::new(0).unwrap().is_reserved());
        assert!("ff00000001".parse::<Address>().unwrap().is_reserved());
        assert!("12345678901".parse::<Address>().is_err());
        assert!("xyz".parse::<Address>().is_err());
        assert!("".parse::<Address>().is_err());
        let n: NetworkId = "9cbc6fc0984c4142".parse().unwrap();
        assert_eq!(n.controller().to_string(), "9cbc6fc098");
    }
}
