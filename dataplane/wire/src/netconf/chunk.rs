//! Signed, chunked transport of a config dictionary: the controller's signer and the member's
//! assembler. spec: vl2.md §9

use crate::address::NetworkId;
use crate::dictionary::NETWORK_CONFIG_CAPACITY;
use crate::identity::{Identity, IdentityError};
use crate::signature::SIGNATURE_LEN;
use crate::verbs::vl2::ConfigChunk;

/// Most dictionary bytes in one chunk (10024 − 28 − 256).
pub const MAX_CHUNK_DATA: usize = 9740;
/// Most chunks one update may have.
pub const MAX_CHUNKS_PER_UPDATE: usize = 474;
/// Concurrent assemblies (slots, keyed by update id).
pub const MAX_ASSEMBLIES: usize = 3;
/// Chunk flag 0x01: fast propagate.
pub const FLAG_FAST_PROPAGATE: u8 = 0x01;

/// Errors signing or assembling chunks.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ChunkError {
    /// A dictionary (or a chunk's claimed total) at or over the reference capacity (484520).
    #[error("dictionary of {total} bytes is too large")]
    TooLarge {
        /// The total length.
        total: usize,
    },
    /// Nothing to send.
    #[error("empty dictionary")]
    Empty,
    /// Update ids are never 0.
    #[error("config update id 0")]
    ZeroUpdateId,
    /// Signing failed.
    #[error("signing: {0}")]
    Signing(#[from] IdentityError),
    /// The identity given is not the controller of the chunk's network.
    #[error("identity is not the network's controller")]
    NotController,
    /// The chunk's signature does not verify.
    #[error("bad chunk signature")]
    BadSignature,
    /// A legacy (unsigned) chunk that did not come from the controller.
    #[error("unsigned chunk not from the controller")]
    Unsigned,
    /// More than 474 chunks for one update.
    #[error("too many chunks for one update")]
    TooManyChunks,
    /// A chunk whose bytes overlap bytes already received for the update.
    #[error("chunk overlaps data already received")]
    Overlap,
    /// A chunk whose total or network disagrees with earlier chunks of the same update.
    #[error("chunk disagrees with earlier chunks of its update")]
    Inconsistent,
}

/// Splits `dict` into signed chunks of at most [`MAX_CHUNK_DATA`] bytes, each a complete chunk
/// structure (`nwid | len | data | flags 0 | update id | total | index | 01 | 0060 | sig`) ready to
/// be a NETWORK_CONFIG payload or to follow an OK(NETWORK_CONFIG_REQUEST) prefix.
/// spec: vl2.md §9.1, §9.2
pub fn sign_chunks(
    dict: &[u8],
    nwid: NetworkId,
    update_id: u64,
    signer: &Identity,
) -> Result<Vec<Vec<u8>>, ChunkError> {
    if dict.is_empty() {
        return Err(ChunkError::Empty);
    }
    if dict.len() >= NETWORK_CONFIG_CAPACITY {
        return Err(ChunkError::TooLarge { total: dict.len() });
    }
    if update_id == 0 {
        return Err(ChunkError::ZeroUpdateId);
    }
    let total = dict.len() as u32;
    let mut out = Vec::with_capacity(dict.len().div_ceil(MAX_CHUNK_DATA));
    for (i, data) in dict.chunks(MAX_CHUNK_DATA).enumerate() {
        let mut c = Vec::with_capacity(data.len() + 30 + SIGNATURE_LEN);
        c.extend_from_slice(&nwid.0.to_be_bytes());
        c.extend_from_slice(&(data.len() as u16).to_be_bytes());
        c.extend_from_slice(data);
        c.push(0);
        c.extend_from_slice(&update_id.to_be_bytes());
        c.extend_from_slice(&total.to_be_bytes());
        c.extend_from_slice(&((i * MAX_CHUNK_DATA) as u32).to_be_bytes());
        let sig = signer.sign(&c)?;
        c.push(1);
        c.extend_from_slice(&(SIGNATURE_LEN as u16).to_be_bytes());
        c.extend_from_slice(&sig);
        out.push(c);
    }
    Ok(out)
}

/// Per-chunk dedupe id: the first 16 signature bytes XOR-folded into 8.
fn dedupe_id(sig: &[u8]) -> u64 {
    let mut v = [0u8; 8];
    for (i, b) in sig.iter().take(16).enumerate() {
        v[i & 7] ^= b;
    }
    u64::from_le_bytes(v)
}

#[derive(Debug)]
struct Slot {
    update_id: u64,
    network_id: NetworkId,
    total: usize,
    data: Vec<u8>,
    /// Received byte ranges `[start, end)`, sorted, disjoint.
    ranges: Vec<(usize, usize)>,
    received: usize,
    chunk_ids: Vec<u64>,
    touched: (i64, u64),
    /// Delivered; kept (without data) so that re-deliveries of its chunks are ignored.
    complete: bool,
}

/// Reassembles chunked configs: up to 3 updates at once (the least recently touched is
/// replaced), duplicates ignored, at most 474 chunks per update, overlapping chunks refused.
/// A completed update keeps its slot (like the reference), so a relayed copy of one of its chunks
/// is ignored rather than delivered twice.
/// spec: vl2.md §9.3
#[derive(Debug, Default)]
pub struct ChunkAssembler {
    slots: Vec<Slot>,
    seq: u64,
}

impl ChunkAssembler {
    /// An empty assembler.
    pub fn new() -> Self {
        Self::default()
    }

    /// Updates being assembled (not counting completed ones).
    pub fn pending(&self) -> usize {
        self.slots.iter().filter(|s| !s.complete).count()
    }

    /// Adds one chunk. `controller` must be the identity of the chunk network's controller;
    /// `from_controller` says whether the packet came from it (the only source from which a
    /// legacy unsigned chunk is accepted). Returns the complete dictionary bytes when this chunk
    /// completes an update (the assembly is then dropped); `Ok(None)` while incomplete or for a
    /// duplicate chunk.
    pub fn add(
        &mut self,
        chunk: &ConfigChunk<'_>,
        controller: &Identity,
        from_controller: bool,
        now_ms: i64,
    ) -> Result<Option<Vec<u8>>, ChunkError> {
        if controller.address() != chunk.network_id.controller() {
            return Err(ChunkError::NotController);
        }
        let Some(s) = chunk.signed else {
            if !from_controller {
                return Err(ChunkError::Unsigned);
            }
            if chunk.data.len() >= NETWORK_CONFIG_CAPACITY {
                return Err(ChunkError::TooLarge {
                    total: chunk.data.len(),
                });
            }
            return Ok(Some(chunk.data.to_vec()));
        };
        let total = s.total_len as usize;
        let start = s.index as usize;
        let end = start + chunk.data.len();
        if total >= NETWORK_CONFIG_CAPACITY {
            return Err(ChunkError::TooLarge { total });
        }
        if end > total {
            return Err(ChunkError::Inconsistent);
        }
        let id = dedupe_id(s.signature);
        let existing = self.slots.iter().position(|x| x.update_id == s.update_id);
        if let Some(i) = existing
            && (self.slots[i].complete || self.slots[i].chunk_ids.contains(&id))
        {
            return Ok(None);
        }
        if !chunk.verify(controller) {
            return Err(ChunkError::BadSignature);
        }
        self.seq += 1;
        let touched = (now_ms, self.seq);
        let i = match existing {
            Some(i) => {
                let slot = &self.slots[i];
                if slot.total != total || slot.network_id != chunk.network_id {
                    return Err(ChunkError::Inconsistent);
                }
                if slot.chunk_ids.len() >= MAX_CHUNKS_PER_UPDATE {
                    return Err(ChunkError::TooManyChunks);
                }
                if slot.ranges.iter().any(|&(a, b)| start < b && a < end) {
                    return Err(ChunkError::Overlap);
                }
                i
            }
            None => {
                let slot = Slot {
                    update_id: s.update_id,
                    network_id: chunk.network_id,
                    total,
                    data: vec![0; total],
                    ranges: Vec::new(),
                    received: 0,
                    chunk_ids: Vec::new(),
                    touched,
                    complete: false,
                };
                if self.slots.len() < MAX_ASSEMBLIES {
                    self.slots.push(slot);
                    self.slots.len() - 1
                } else {
                    let lru = (0..self.slots.len())
                        .min_by_key(|&i| self.slots[i].touched)
                        .expect("slots are full");
                    self.slots[lru] = slot;
                    lru
                }
            }
        };
        let slot = &mut self.slots[i];
        slot.touched = touched;
        slot.chunk_ids.push(id);
        slot.data[start..end].copy_from_slice(chunk.data);
        if end > start {
            let at = slot.ranges.partition_point(|&(a, _)| a < start);
            slot.ranges.insert(at, (start, end));
        }
        slot.received += end - start;
        if slot.received == slot.total {
            slot.complete = true;
            slot.ranges = Vec::new();
            return Ok(Some(std::mem::take(&mut slot.data)));
        }
        Ok(None)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::credential::test_ids::id;

    const NWID: NetworkId = NetworkId(0x9cbc_6fc0_984c_4142);

    fn dict(n: usize) -> Vec<u8> {
        (0..n).map(|i| b'a' + (i % 26) as u8).collect()
    }

    fn decode(c: &[u8]) -> ConfigChunk<'_> {
        ConfigChunk::decode(c).unwrap()
    }

    #[test]
    fn sign_and_assemble_in_any_order() {
        let ctl = id(0x9cbc6fc098, 1);
        let d = dict(3 * MAX_CHUNK_DATA + 17);
        let chunks = sign_chunks(&d, NWID, 42, &ctl).unwrap();
        assert_eq!(chunks.len(), 4);
        for (i, c) in chunks.iter().enumerate() {
            let p = decode(c);
            assert!(p.verify(&ctl));
            let s = p.signed.unwrap();
            assert_eq!(
                (s.update_id, s.total_len, s.index),
                (42, d.len() as u32, (i * MAX_CHUNK_DATA) as u32)
            );
            assert_eq!(s.flags, 0);
            assert!(p.data.len() <= MAX_CHUNK_DATA);
        }
        let mut a = ChunkAssembler::new();
        for (k, i) in [2, 0, 3].into_iter().enumerate() {
            assert_eq!(a.add(&decode(&chunks[i]), &ctl, false, k as i64), Ok(None));
            // duplicates are ignored
            assert_eq!(a.add(&decode(&chunks[i]), &ctl, false, k as i64), Ok(None));
        }
        assert_eq!(a.pending(), 1);
        assert_eq!(
            a.add(&decode(&chunks[1]), &ctl, false, 9),
            Ok(Some(d.clone()))
        );
        assert_eq!(a.pending(), 0);
        // a single small config
        let small = sign_chunks(b"v=7", NWID, 1, &ctl).unwrap();
        assert_eq!(small.len(), 1);
        assert_eq!(small[0].len(), 8 + 2 + 3 + 17 + 3 + 96);
        assert_eq!(
            a.add(&decode(&small[0]), &ctl, false, 0),
            Ok(Some(b"v=7".to_vec()))
        );
    }

    #[test]
    fn sign_errors() {
        let ctl = id(0x9cbc6fc098, 1);
        assert_eq!(sign_chunks(b"", NWID, 1, &ctl), Err(ChunkError::Empty));
        assert_eq!(
            sign_chunks(b"x", NWID, 0, &ctl),
            Err(ChunkError::ZeroUpdateId)
        );
        assert!(matches!(
            sign_chunks(&dict(NETWORK_CONFIG_CAPACITY), NWID, 1, &ctl),
            Err(ChunkError::TooLarge { .. })
        ));
        assert!(matches!(
            sign_chunks(b"x", NWID, 1, &ctl.to_public()),
            Err(ChunkError::Signing(_))
        ));
    }

    #[test]
    fn rejections() {
        let ctl = id(0x9cbc6fc098, 1);
        let other = id(0x9cbc6fc098, 2); // same address, different key
        let d = dict(2 * MAX_CHUNK_DATA);
        let chunks = sign_chunks(&d, NWID, 7, &ctl).unwrap();
        let mut a = ChunkAssembler::new();
        assert_eq!(
            a.add(&decode(&chunks[0]), &other, false, 0),
            Err(ChunkError::BadSignature)
        );
        assert_eq!(
            a.add(&decode(&chunks[0]), &id(0x1111111111, 1), false, 0),
            Err(ChunkError::NotController)
        );
        let mut t = chunks[0].clone();
        t[20] ^= 1;
        assert_eq!(
            a.add(&decode(&t), &ctl, false, 0),
            Err(ChunkError::BadSignature)
        );
        assert_eq!(a.pending(), 0);
        // legacy unsigned chunk: only from the controller
        let legacy = [&NWID.0.to_be_bytes()[..], &[0, 3], b"v=7"].concat();
        assert_eq!(
            a.add(&decode(&legacy), &ctl, false, 0),
            Err(ChunkError::Unsigned)
        );
        assert_eq!(
            a.add(&decode(&legacy), &ctl, true, 0),
            Ok(Some(b"v=7".to_vec()))
        );
    }

    /// A forged pair of chunks (validly signed, overlapping) cannot complete an assembly.
    #[test]
    fn overlapping_chunks_do_not_complete() {
        let ctl = id(0x9cbc6fc098, 1);
        let mk = |data: &[u8], index: u32| {
            let mut c = Vec::new();
            c.extend_from_slice(&NWID.0.to_be_bytes());
            c.extend_from_slice(&(data.len() as u16).to_be_bytes());
            c.extend_from_slice(data);
            c.push(0);
            c.extend_from_slice(&5u64.to_be_bytes());
            c.extend_from_slice(&10u32.to_be_bytes());
            c.extend_from_slice(&index.to_be_bytes());
            let sig = ctl.sign(&c).unwrap();
            c.push(1);
            c.extend_from_slice(&96u16.to_be_bytes());
            c.extend_from_slice(&sig);
            c
        };
        // [0, 6) then [2, 6): 6 + 4 bytes add up to the total of 10, but bytes 6..10 were never
        // sent; the reference would complete here, the range check refuses the second chunk.
        let mut a = ChunkAssembler::new();
        assert_eq!(a.add(&decode(&mk(b"AAAAAA", 0)), &ctl, false, 0), Ok(None));
        assert_eq!(
            a.add(&decode(&mk(b"BBBB", 2)), &ctl, false, 1),
            Err(ChunkError::Overlap)
        );
        assert_eq!(
            a.add(&decode(&mk(b"CCCCC", 5)), &ctl, false, 2),
            Err(ChunkError::Overlap)
        );
        assert_eq!(
            a.add(&decode(&mk(b"DDDD", 6)), &ctl, false, 3),
            Ok(Some(b"AAAAAADDDD".to_vec()))
        );
        // a chunk claiming a different total for the same update
        let mut a = ChunkAssembler::new();
        assert_eq!(a.add(&decode(&mk(b"AAAAAA", 0)), &ctl, false, 0), Ok(None));
        let mut odd = mk(b"DDDD", 6);
        odd[8 + 2 + 4 + 1 + 8 + 3] = 11;
        let sig = ctl.sign(&odd[..8 + 2 + 4 + 17]).unwrap();
        let l = odd.len();
        odd[l - 96..].copy_from_slice(&sig);
        assert_eq!(
            a.add(&decode(&odd), &ctl, false, 1),
            Err(ChunkError::Inconsistent)
        );
    }

    #[test]
    fn three_slots_least_recently_touched_is_replaced() {
        let ctl = id(0x9cbc6fc098, 1);
        let d = dict(MAX_CHUNK_DATA + 1);
        let updates: Vec<Vec<Vec<u8>>> = (1..=4)
            .map(|u| sign_chunks(&d, NWID, u, &ctl).unwrap())
            .collect();
        let mut a = ChunkAssembler::new();
        for (t, u) in [0usize, 1, 2].into_iter().enumerate() {
            assert_eq!(
                a.add(&decode(&updates[u][0]), &ctl, false, t as i64),
                Ok(None)
            );
        }
        assert_eq!(a.pending(), 3);
        // update 4 replaces the least recently touched assembly (update 1, touched at t=0)
        assert_eq!(a.add(&decode(&updates[3][0]), &ctl, false, 10), Ok(None));
        assert_eq!(a.pending(), 3);
        // update 1's second chunk starts a new assembly (its first chunk was evicted)
        assert_eq!(a.add(&decode(&updates[0][1]), &ctl, false, 11), Ok(None));
        // ... which replaced update 2 (touched at t=1); 3 and 4 still complete
        assert_eq!(
            a.add(&decode(&updates[2][1]), &ctl, false, 12),
            Ok(Some(d.clone()))
        );
        assert_eq!(
            a.add(&decode(&updates[3][1]), &ctl, false, 13),
            Ok(Some(d.clone()))
        );
        assert_eq!(
            a.add(&decode(&updates[0][0]), &ctl, false, 14),
            Ok(Some(d.clone()))
        );
        assert_eq!(a.pending(), 0);
        // update 2 was replaced: its second chunk alone does not complete it
        assert_eq!(a.add(&decode(&updates[1][1]), &ctl, false, 15), Ok(None));
        assert_eq!(a.pending(), 1);
    }

    #[test]
    fn chunk_limit() {
        let ctl = id(0x9cbc6fc098, 1);
        let total = MAX_CHUNKS_PER_UPDATE + 1;
        let d = dict(total);
        let mut a = ChunkAssembler::new();
        let mut last = Ok(None);
        for (i, &byte) in d.iter().enumerate() {
            let mut c = Vec::new();
            c.extend_from_slice(&NWID.0.to_be_bytes());
            c.extend_from_slice(&1u16.to_be_bytes());
            c.push(byte);
            c.push(0);
            c.extend_from_slice(&9u64.to_be_bytes());
            c.extend_from_slice(&(total as u32).to_be_bytes());
            c.extend_from_slice(&(i as u32).to_be_bytes());
            let sig = ctl.sign(&c).unwrap();
            c.push(1);
            c.extend_from_slice(&96u16.to_be_bytes());
            c.extend_from_slice(&sig);
            last = a.add(&decode(&c), &ctl, false, i as i64);
            if i < MAX_CHUNKS_PER_UPDATE {
                assert_eq!(last, Ok(None), "{i}");
            }
        }
        assert_eq!(last, Err(ChunkError::TooManyChunks));
    }
}
