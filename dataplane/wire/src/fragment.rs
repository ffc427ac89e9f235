//! Datagram classification, fragments, fragmentation and reassembly. spec: vl1.md §4

use crate::address::Address;
use crate::packet::{FLAG_FRAGMENTED, IDX_FLAGS, MAX_PACKET_LEN, MIN_PACKET_LEN};

/// Byte 13 of a fragment: 0xff (where a packet's source address starts; 0xff addresses are
/// reserved, so no packet collides).
pub const FRAGMENT_INDICATOR: u8 = 0xff;
/// Length of the fragment header.
pub const FRAGMENT_HEADER_LEN: usize = 16;
/// Maximum number of pieces (head + fragments) of one packet.
pub const MAX_FRAGMENTS: u8 = 7;
/// Number of concurrent reassemblies. spec: vl1.md §4.5
pub const REASSEMBLY_SLOTS: usize = 32;
/// Incomplete reassemblies older than this are discarded (1.14 has no timer of its own; its ring
/// slots are simply reused, and its receive queue gives up after 5 s).
pub const REASSEMBLY_TIMEOUT_MS: i64 = 5_000;
/// Length of a legacy LAN beacon. spec: vl1.md §8.9
pub const BEACON_LEN: usize = 13;

/// What a received UDP payload is. spec: vl1.md §4.1
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DatagramKind {
    /// Exactly 13 bytes: a legacy LAN beacon.
    Beacon,
    /// A fragment (more than 16 bytes, byte 13 is 0xff).
    Fragment,
    /// A packet head: complete packet, or piece 0 when its fragmented flag is set.
    Packet,
    /// Anything else (e.g. the 4-byte hole-punching keepalives); ignored.
    Ignored,
}

/// Classifies a UDP payload. Never panics.
pub fn classify(datagram: &[u8]) -> DatagramKind {
    let len = datagram.len();
    if len == BEACON_LEN {
        DatagramKind::Beacon
    } else if len > FRAGMENT_HEADER_LEN && datagram[13] == FRAGMENT_INDICATOR {
        DatagramKind::Fragment
    } else if len >= MIN_PACKET_LEN {
        DatagramKind::Packet
    } else {
        DatagramKind::Ignored
    }
}

/// Errors from the fragment codec and reassembly.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum FragmentError {
    /// Not a fragment (too short or no 0xff indicator).
    #[error("not a fragment")]
    NotAFragment,
    /// Total outside 2..=7, number outside 1..total.
    #[error("bad fragment numbering: number {number} of total {total}")]
    BadNumbering {
        /// Fragment number.
        number: u8,
        /// Total announced.
        total: u8,
    },
    /// The reassembled packet would exceed the maximum packet length.
    #[error("reassembled packet would exceed 10024 bytes")]
    TooLarge,
    /// A packet too large to send in 7 pieces at this MTU.
    #[error("packet of {len} bytes needs more than 7 pieces at MTU {mtu}")]
    TooManyFragments {
        /// Packet length.
        len: usize,
        /// Physical MTU.
        mtu: usize,
    },
    /// MTU too small to carry a header and data.
    #[error("MTU {mtu} too small")]
    MtuTooSmall {
        /// The MTU given.
        mtu: usize,
    },
    /// The head given to the reassembler is not a packet with the fragmented flag.
    #[error("not a fragmented packet head")]
    NotAHead,
}

/// A checked view over a fragment datagram. spec: vl1.md §4.2
#[derive(Debug, Clone, Copy)]
pub struct Fragment<'a> {
    buf: &'a [u8],
}

impl<'a> Fragment<'a> {
    /// Checks the indicator and numbering (total 2..=7, number 1..total).
    pub fn new_checked(buf: &'a [u8]) -> Result<Self, FragmentError> {
        if classify(buf) != DatagramKind::Fragment {
            return Err(FragmentError::NotAFragment);
        }
        let f = Fragment { buf };
        let (number, total) = (f.number(), f.total());
        if !(2..=MAX_FRAGMENTS).contains(&total) || number == 0 || number >= total {
            return Err(FragmentError::BadNumbering { number, total });
        }
        Ok(f)
    }

    /// The on-wire id of the packet this belongs to.
    pub fn packet_id(&self) -> u64 {
        u64::from_be_bytes(self.buf[..8].try_into().expect("checked length"))
    }

    /// Destination address (copied from the packet).
    pub fn destination(&self) -> Address {
        Address::from_slice(&self.buf[8..]).unwrap_or_default()
    }

    /// Total number of pieces including the head.
    pub fn total(&self) -> u8 {
        self.buf[14] >> 4
    }

    /// This fragment's number (1..total).
    pub fn number(&self) -> u8 {
        self.buf[14] & 0x0f
    }

    /// Hop count (whole byte 15).
    pub fn hops(&self) -> u8 {
        self.buf[15]
    }

    /// The slice of the armored packet this fragment carries.
    pub fn data(&self) -> &'a [u8] {
        &self.buf[FRAGMENT_HEADER_LEN..]
    }
}

/// Splits an armored packet (fragmented flag already set) into a head and fragments.
/// spec: vl1.md §4.3
#[derive(Debug, Clone, Copy)]
pub struct Fragmenter<'a> {
    packet: &'a [u8],
    mtu: usize,
    total: u8,
}

impl<'a> Fragmenter<'a> {
    /// Whether a packet of `len` bytes must be fragmented at `mtu`.
    pub fn needed(len: usize, mtu: usize) -> bool {
        len > mtu
    }

    /// Plans the split of `packet` at `mtu`.
    pub fn new(packet: &'a [u8], mtu: usize) -> Result<Self, FragmentError> {
        if mtu < MIN_PACKET_LEN + FRAGMENT_HEADER_LEN {
            return Err(FragmentError::MtuTooSmall { mtu });
        }
        let total = if packet.len() <= mtu {
            1
        } else {
            1 + (packet.len() - mtu).div_ceil(mtu - FRAGMENT_HEADER_LEN)
        };
        if total > usize::from(MAX_FRAGMENTS) {
            return Err(FragmentError::TooManyFragments {
                len: packet.len(),
                mtu,
            });
        }
        Ok(Fragmenter {
            packet,
            mtu,
            total: total as u8,
        })
    }

    /// Number of pieces including the head.
    pub fn total(&self) -> u8 {
        self.total
    }

    /// The head datagram: the first `mtu` bytes of the packet.
    pub fn head(&self) -> &'a [u8] {
        &self.packet[..self.packet.len().min(self.mtu)]
    }

    /// Builds fragment `number` (1..total) into a new buffer, with hop count 0.
    pub fn fragment(&self, number: u8) -> Option<Vec<u8>> {
        if number == 0 || number >= self.total {
            return None;
        }
        let slice = self.mtu - FRAGMENT_HEADER_LEN;
        let start = self.mtu + (usize::from(number) - 1) * slice;
        let end = (start + slice).min(self.packet.len());
        let mut f = Vec::with_capacity(FRAGMENT_HEADER_LEN + end - start);
        f.extend_from_slice(&self.packet[..13]);
        f.push(FRAGMENT_INDICATOR);
        f.push((self.total << 4) | number);
        f.push(0);
        f.extend_from_slice(&self.packet[start..end]);
        Some(f)
    }
}

#[derive(Debug, Default)]
struct Slot {
    id: u64,
    in_use: bool,
    created_ms: i64,
    have: u8,
    total: u8,
    pieces: [Vec<u8>; MAX_FRAGMENTS as usize],
}

impl Slot {
    fn reset(&mut self, id: u64, now_ms: i64) {
        self.id = id;
        self.in_use = true;
        self.created_ms = now_ms;
        self.have = 0;
        self.total = 0;
        for p in &mut self.pieces {
            p.clear();
        }
    }

    fn size(&self) -> usize {
        self.pieces.iter().map(Vec::len).sum()
    }

    fn try_complete(&mut self) -> Option<Vec<u8>> {
        if self.total == 0 || self.have.count_ones() != u32::from(self.total) {
            return None;
        }
        let want = (1u16 << self.total) - 1;
        if u16::from(self.have) != want {
            return None;
        }
        let mut out = Vec::with_capacity(self.size());
        for p in &self.pieces[..usize::from(self.total)] {
            out.extend_from_slice(p);
        }
        self.in_use = false;
        Some(out)
    }
}

/// Reassembles fragmented packets: a ring of [`REASSEMBLY_SLOTS`] entries keyed by the on-wire
/// packet id; memory is bounded by slots × [`MAX_PACKET_LEN`]. spec: vl1.md §4.5
#[derive(Debug)]
pub struct Reassembler {
    slots: Vec<Slot>,
    next: usize,
}

impl Default for Reassembler {
    fn default() -> Self {
        Self::new()
    }
}

impl Reassembler {
    /// An empty reassembler.
    pub fn new() -> Self {
        Reassembler {
            slots: (0..REASSEMBLY_SLOTS).map(|_| Slot::default()).collect(),
            next: 0,
        }
    }

    /// Number of incomplete packets held.
    pub fn pending(&self) -> usize {
        self.slots.iter().filter(|s| s.in_use).count()
    }

    /// Drops incomplete packets older than [`REASSEMBLY_TIMEOUT_MS`].
    pub fn expire(&mut self, now_ms: i64) {
        for s in &mut self.slots {
            if s.in_use && now_ms.saturating_sub(s.created_ms) > REASSEMBLY_TIMEOUT_MS {
                s.in_use = false;
            }
        }
    }

    fn slot_for(&mut self, id: u64, now_ms: i64) -> &mut Slot {
        self.expire(now_ms);
        // Most recent first.
        let n = self.slots.len();
        let found = (1..=n)
            .map(|back| (self.next + n - back) % n)
            .find(|&i| self.slots[i].in_use && self.slots[i].id == id);
        let i = match found {
            Some(i) => i,
            None => {
                let i = self.next;
                self.next = (self.next + 1) % n;
                self.slots[i].reset(id, now_ms);
                i
            }
        };
        &mut self.slots[i]
    }

    fn insert(
        &mut self,
        now_ms: i64,
        id: u64,
        number: u8,
        total: u8,
        data: &[u8],
    ) -> Result<Option<Vec<u8>>, FragmentError> {
        let slot = self.slot_for(id, now_ms);
        let bit = 1u8 << number;
        if slot.have & bit != 0 {
            return Ok(None);
        }
        if slot.size() + data.len() > MAX_PACKET_LEN {
            slot.in_use = false;
            return Err(FragmentError::TooLarge);
        }
        slot.have |= bit;
        if total != 0 {
            slot.total = total;
        }
        slot.pieces[usize::from(number)].extend_from_slice(data);
        Ok(slot.try_complete())
    }

    /// Adds a packet head that has the fragmented flag set. Returns the assembled packet when
    /// this completes it.
    pub fn add_head(&mut self, now_ms: i64, head: &[u8]) -> Result<Option<Vec<u8>>, FragmentError> {
        if head.len() < MIN_PACKET_LEN
            || head.len() > MAX_PACKET_LEN
            || head[IDX_FLAGS] & FLAG_FRAGMENTED == 0
        {
            return Err(FragmentError::NotAHead);
        }
        let id = u64::from_be_bytes(head[..8].try_into().expect("checked length"));
        self.insert(now_ms, id, 0, 0, head)
    }

    /// Adds a fragment datagram. Returns the assembled packet when this completes it.
    pub fn add_fragment(
        &mut self,
        now_ms: i64,
        fragment: &Fragment<'_>,
    ) -> Result<Option<Vec<u8>>, FragmentError> {
        self.insert(
            now_ms,
            fragment.packet_id(),
            fragment.number(),
            fragment.total(),
            fragment.data(),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn packet(len: usize) -> Vec<u8> {
        let mut p: Vec<u8> = (0..len).map(|i| i as u8).collect();
        p[..8].copy_from_slice(&0x2222222222222222u64.to_be_bytes());
        p[8..13].copy_from_slice(&[0x55, 0x5b, 0x50, 0x31, 0xf8]);
        p[13] = 0x12;
        p[IDX_FLAGS] = 0x18 | FLAG_FRAGMENTED;
        p
    }

    #[test]
    fn split_matches_spec_and_reassembles_in_any_order() {
        // spec: vl1.md §4.3 — 3,028 bytes split as 1,432 + 1,416 + 180
        let p = packet(3028);
        let f = Fragmenter::new(&p, 1432).unwrap();
        assert_eq!(f.total(), 3);
        assert_eq!(f.head().len(), 1432);
        let f1 = f.fragment(1).unwrap();
        let f2 = f.fragment(2).unwrap();
        assert_eq!(f1.len() - 16, 1416);
        assert_eq!(f2.len() - 16, 180);
        assert!(f.fragment(3).is_none());
        // spec: vl1.md §4.2 vector
        assert_eq!(hex::encode(&f1[..16]), "2222222222222222555b5031f8ff3100");
        let fr1 = Fragment::new_checked(&f1).unwrap();
        let fr2 = Fragment::new_checked(&f2).unwrap();
        for order in 0..3 {
            let mut r = Reassembler::new();
            let out = match order {
                0 => {
                    assert_eq!(r.add_head(0, f.head()).unwrap(), None);
                    assert_eq!(r.add_fragment(0, &fr1).unwrap(), None);
                    r.add_fragment(0, &fr2).unwrap()
                }
                1 => {
                    assert_eq!(r.add_fragment(0, &fr2).unwrap(), None);
                    assert_eq!(r.add_fragment(0, &fr2).unwrap(), None);
                    assert_eq!(r.add_head(0, f.head()).unwrap(), None);
                    r.add_fragment(0, &fr1).unwrap()
                }
                _ => {
                    assert_eq!(r.add_fragment(0, &fr1).unwrap(), None);
                    assert_eq!(r.add_fragment(0, &fr2).unwrap(), None);
                    r.add_head(0, f.head()).unwrap()
                }
            };
            assert_eq!(out.as_deref(), Some(&p[..]));
            assert_eq!(r.pending(), 0);
        }
    }

    #[test]
    fn limits() {
        let p = packet(20_000);
        assert!(matches!(
            Fragmenter::new(&p, 1432),
            Err(FragmentError::TooManyFragments { .. })
        ));
        let mut bad = vec![0u8; 40];
        bad[13] = 0xff;
        bad[14] = 0x81;
        assert_eq!(
            Fragment::new_checked(&bad).unwrap_err(),
            FragmentError::BadNumbering {
                number: 1,
                total: 8
            }
        );
        bad[14] = 0x20;
        assert!(Fragment::new_checked(&bad).is_err());
        bad[14] = 0x22;
        assert!(Fragment::new_checked(&bad).is_err());
        assert_eq!(classify(&[0u8; 13]), DatagramKind::Beacon);
        assert_eq!(classify(&[0u8; 4]), DatagramKind::Ignored);
        assert_eq!(classify(&bad), DatagramKind::Fragment);
        // Incomplete entries time out, and the ring never holds more than 32.
        let mut r = Reassembler::new();
        for id in 0..100u64 {
            let mut h = packet(100);
            h[..8].copy_from_slice(&id.to_be_bytes());
            r.add_head(0, &h).unwrap();
        }
        assert_eq!(r.pending(), REASSEMBLY_SLOTS);
        r.expire(REASSEMBLY_TIMEOUT_MS + 1);
        assert_eq!(r.pending(), 0);
    }
}
