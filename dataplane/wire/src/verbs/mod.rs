//! Verb payload codecs. Decoders take the verb payload (packet offset 28 onward, dearmored and
//! decompressed) and never panic. spec: vl1.md §5, vl2.md §7, §9

mod hello;
mod multipath;
mod vl1;
pub mod vl2;

pub use hello::{Hello, MoonRef, OkHello};
pub use multipath::{Ack, PathNegotiationRequest, QosMeasurement, QosRecord};
pub use vl1::{
    ErrorCode, ErrorHeader, OkHeader, PushDirectPaths, Rendezvous, UserMessage, Whois,
    ok_whois_identities,
};

/// Errors decoding a verb payload.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum VerbError {
    /// The payload ended before a field.
    #[error("{what}: truncated at byte {at}")]
    Truncated {
        /// Which payload.
        what: &'static str,
        /// Offset of the missing field.
        at: usize,
    },
    /// A field holds a value the spec does not allow.
    #[error("{what}: invalid {field}")]
    Invalid {
        /// Which payload.
        what: &'static str,
        /// Which field.
        field: &'static str,
    },
    /// A legacy feature weft does not parse (e.g. inline certificates in MULTICAST_FRAME).
    #[error("{what}: unsupported {feature}")]
    Unsupported {
        /// Which payload.
        what: &'static str,
        /// Which feature.
        feature: &'static str,
    },
}

/// A bounds-checked cursor over a payload.
#[derive(Debug, Clone)]
pub(crate) struct Reader<'a> {
    b: &'a [u8],
    i: usize,
    what: &'static str,
}

impl<'a> Reader<'a> {
    pub(crate) fn new(b: &'a [u8], what: &'static str) -> Self {
        Reader { b, i: 0, what }
    }
    pub(crate) fn pos(&self) -> usize {
        self.i
    }
    pub(crate) fn remaining(&self) -> usize {
        self.b.len() - self.i
    }
    pub(crate) fn rest(&mut self) -> &'a [u8] {
        let s = &self.b[self.i..];
        self.i = self.b.len();
        s
    }
    pub(crate) fn take(&mut self, n: usize) -> Result<&'a [u8], VerbError> {
        if self.remaining() < n {
            return Err(VerbError::Truncated {
                what: self.what,
                at: self.i,
            });
        }
        let s = &self.b[self.i..self.i + n];
        self.i += n;
        Ok(s)
    }
    pub(crate) fn array<const N: usize>(&mut self) -> Result<[u8; N], VerbError> {
        Ok(self.take(N)?.try_into().expect("take returned N bytes"))
    }
    pub(crate) fn u8(&mut self) -> Result<u8, VerbError> {
        Ok(self.take(1)?[0])
    }
    pub(crate) fn u16(&mut self) -> Result<u16, VerbError> {
        Ok(u16::from_be_bytes(self.array()?))
    }
    pub(crate) fn u32(&mut self) -> Result<u32, VerbError> {
        Ok(u32::from_be_bytes(self.array()?))
    }
    pub(crate) fn u64(&mut self) -> Result<u64, VerbError> {
        Ok(u64::from_be_bytes(self.array()?))
    }
    pub(crate) fn address(&mut self) -> Result<crate::Address, VerbError> {
        Ok(crate::Address::from_bytes(self.array()?))
    }
    pub(crate) fn invalid(&self, field: &'static str) -> VerbError {
        VerbError::Invalid {
            what: self.what,
            field,
        }
    }
}
