//! LZ4 payload compression (raw LZ4 block, no frame, no size prefix). spec: vl1.md §3.7

use crate::packet::{IDX_PAYLOAD, IDX_VERB, MAX_PACKET_LEN, MIN_PACKET_LEN, VERB_FLAG_COMPRESSED};

/// Payloads of this size or less are sent uncompressed (1.14 behaviour).
pub const MIN_COMPRESS_LEN: usize = 65;

/// Errors from decompression.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CompressError {
    /// The packet is shorter than a header plus verb byte.
    #[error("packet too short to carry a payload")]
    TooShort,
    /// The LZ4 block is malformed or expands beyond the maximum packet size.
    #[error("LZ4 block invalid or larger than the maximum packet")]
    BadBlock,
    /// The output buffer is smaller than the header.
    #[error("output buffer too small")]
    OutputTooSmall,
}

/// Compresses the payload of a plaintext (not yet armored) packet `packet` into `out` (header,
/// verb byte with the compression flag set, compressed payload) and returns its length, or `None`
/// when the payload is too short or would not shrink (then send `packet` as it is).
/// `out` should be at least `packet.len()` long.
pub fn compress_packet(packet: &[u8], out: &mut [u8]) -> Option<usize> {
    if packet.len() < MIN_PACKET_LEN || out.len() < IDX_PAYLOAD {
        return None;
    }
    let payload = &packet[IDX_PAYLOAD..];
    if payload.len() < MIN_COMPRESS_LEN {
        return None;
    }
    // The compressed form must be strictly shorter, so bound the output by payload.len() - 1.
    let limit = (payload.len() - 1).min(out.len() - IDX_PAYLOAD);
    let mut scratch = [0u8; MAX_PACKET_LEN + MAX_PACKET_LEN / 255 + 16];
    let n = lz4_flex::block::compress_into(payload, &mut scratch).ok()?;
    if n > limit {
        return None;
    }
    out[..IDX_PAYLOAD].copy_from_slice(&packet[..IDX_PAYLOAD]);
    out[IDX_VERB] |= VERB_FLAG_COMPRESSED;
    out[IDX_PAYLOAD..IDX_PAYLOAD + n].copy_from_slice(&scratch[..n]);
    Some(IDX_PAYLOAD + n)
}

/// Decompresses a dearmored packet whose verb byte has the compression flag: writes the header,
/// the verb byte with the flag cleared and the decompressed payload into `out` (which should be
/// [`MAX_PACKET_LEN`] long) and returns the total length. The result never exceeds
/// `out.len()`. spec: vl1.md §3.7
pub fn decompress_packet(packet: &[u8], out: &mut [u8]) -> Result<usize, CompressError> {
    if packet.len() < MIN_PACKET_LEN {
        return Err(CompressError::TooShort);
    }
    if out.len() < IDX_PAYLOAD {
        return Err(CompressError::OutputTooSmall);
    }
    out[..IDX_PAYLOAD].copy_from_slice(&packet[..IDX_PAYLOAD]);
    out[IDX_VERB] &= !VERB_FLAG_COMPRESSED;
    let cap = out.len().min(MAX_PACKET_LEN);
    let n = lz4_flex::block::decompress_into(&packet[IDX_PAYLOAD..], &mut out[IDX_PAYLOAD..cap])
        .map_err(|_| CompressError::BadBlock)?;
    Ok(IDX_PAYLOAD + n)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::address::Address;
    use crate::packet::{Verb, build};

    // spec: vl1.md Appendix A (LZ4)
    #[test]
    fn appendix_a_lz4() {
        let mut payload = hex::decode("123456789abcdef0").unwrap();
        for _ in 0..40 {
            payload.extend_from_slice(b"abcdefgh");
        }
        let a = Address::new(1).unwrap();
        let p = build([0; 8], a, a, Verb::USER_MESSAGE, &payload);
        let mut out = [0u8; MAX_PACKET_LEN];
        let n = compress_packet(&p, &mut out).unwrap();
        assert_eq!(out[IDX_VERB], 0x94);
        let mut back = [0u8; MAX_PACKET_LEN];
        let m = decompress_packet(&out[..n], &mut back).unwrap();
        assert_eq!(&back[..m], &p[..]);
        // The reference block decompresses to the same packet.
        let mut refp = p[..IDX_PAYLOAD].to_vec();
        refp[IDX_VERB] = 0x94;
        refp.extend(
            hex::decode("ff01123456789abcdef061626364656667680800ff21506465666768").unwrap(),
        );
        let m = decompress_packet(&refp, &mut back).unwrap();
        assert_eq!(&back[..m], &p[..]);
    }

    #[test]
    fn short_and_incompressible_not_compressed() {
        let a = Address::new(1).unwrap();
        let p = build([0; 8], a, a, Verb::ECHO, &[7u8; 64]);
        assert!(compress_packet(&p, &mut [0u8; 200]).is_none());
        let mut x = 0x9e3779b97f4a7c15u64;
        let noise: Vec<u8> = (0..300)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                (x >> 24) as u8
            })
            .collect();
        let p = build([0; 8], a, a, Verb::ECHO, &noise);
        assert!(compress_packet(&p, &mut [0u8; 400]).is_none());
    }

    #[test]
    fn bomb_is_bounded() {
        // A block claiming far more output than fits is rejected, not allocated.
        let a = Address::new(1).unwrap();
        let mut p = build([0; 8], a, a, Verb::ECHO, &[]);
        p[IDX_VERB] |= 0x80;
        p.extend_from_slice(&[
            0x1f, 0x41, 0x01, 0x00, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
            0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
            0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
            0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
            0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x00, 0x50, 0x41, 0x41, 0x41, 0x41,
            0x41,
        ]);
        let mut out = [0u8; MAX_PACKET_LEN];
        assert_eq!(
            decompress_packet(&p, &mut out),
            Err(CompressError::BadBlock)
        );
    }
}
