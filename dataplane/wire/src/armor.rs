//! Armor (authenticate and encrypt) and dearmor packets for every cipher suite.
//! spec: vl1.md §3.2–§3.5

use subtle::ConstantTimeEq;

use crate::crypto::PeerKey;
use crate::crypto::aes_gmac_siv::AAD_LEN;
use crate::crypto::salsa::Salsa2012;
use crate::packet::{
    CipherSuite, FLAG_ENCRYPTED_LEGACY, FLAGS_CIPHER_MASK, FLAGS_HOPS_MASK, IDX_DEST, IDX_FLAGS,
    IDX_MAC, IDX_VERB, MAX_PACKET_LEN, MIN_PACKET_LEN,
};

/// Errors from armoring or dearmoring.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ArmorError {
    /// The buffer is not 28..=10024 bytes long.
    #[error("packet length {len} outside 28..=10024")]
    BadLength {
        /// The length given.
        len: usize,
    },
    /// The MAC or AES-GMAC-SIV tag did not verify.
    #[error("authentication failed (cipher {cipher})")]
    MacFailed {
        /// The 3-bit cipher number.
        cipher: u8,
    },
    /// The cipher field names an undefined suite (4..7).
    #[error("undefined cipher suite {cipher}")]
    UnknownCipher {
        /// The 3-bit cipher number.
        cipher: u8,
    },
    /// Cipher 2 (trusted path) is not authenticated by a key; use [`check_trusted_path`].
    #[error(
        "trusted-path packet (id {trusted_path_id:#x}) must be checked against local configuration"
    )]
    TrustedPath {
        /// The 64-bit id in the MAC field.
        trusted_path_id: u64,
    },
    /// Cipher 2 cannot be produced by [`armor`]; use [`armor_trusted_path`].
    #[error("use armor_trusted_path for cipher suite 2")]
    TrustedPathNeedsId,
}

fn check_len(packet: &[u8]) -> Result<(), ArmorError> {
    if packet.len() < MIN_PACKET_LEN || packet.len() > MAX_PACKET_LEN {
        return Err(ArmorError::BadLength { len: packet.len() });
    }
    Ok(())
}

/// The Salsa20/12 stream for one packet, keyed from the peer key mangled with the header.
/// spec: vl1.md §3.2 step 2–3
fn packet_salsa(key: &PeerKey, packet: &[u8]) -> Salsa2012 {
    let mut k = *key.salsa_key();
    for i in 0..18 {
        k[i] ^= packet[i];
    }
    k[18] ^= packet[IDX_FLAGS] & !FLAGS_HOPS_MASK;
    let len = packet.len() as u16;
    k[19] ^= len as u8;
    k[20] ^= (len >> 8) as u8;
    let mut iv = [0u8; 8];
    iv.copy_from_slice(&packet[..8]);
    let s = Salsa2012::new(&k, &iv);
    zeroize::Zeroize::zeroize(&mut k);
    s
}

fn poly_mac(poly_key: &[u8; 32], data: &[u8]) -> [u8; 16] {
    weft_simd::poly1305::mac(poly_key, data)
}

fn aad(packet: &[u8]) -> [u8; AAD_LEN] {
    let mut a = [0u8; AAD_LEN];
    a.copy_from_slice(&packet[IDX_DEST..IDX_FLAGS + 1]);
    a[AAD_LEN - 1] &= !FLAGS_HOPS_MASK;
    a
}

fn set_cipher(packet: &mut [u8], suite: CipherSuite) {
    let mut f = packet[IDX_FLAGS] & !(FLAGS_CIPHER_MASK | FLAG_ENCRYPTED_LEGACY);
    f |= suite.id() << 3;
    if suite == CipherSuite::Poly1305Salsa2012 {
        f |= FLAG_ENCRYPTED_LEGACY;
    }
    packet[IDX_FLAGS] = f;
}

/// Armors a complete packet in place with `suite` (0, 1 or 3). The fragmented flag and any
/// compression must already be final. For cipher 3 the packet id (bytes 0..8) is replaced by half
/// of the SIV tag: the on-wire id is what peers echo in OK/ERROR.
pub fn armor(packet: &mut [u8], key: &PeerKey, suite: CipherSuite) -> Result<(), ArmorError> {
    check_len(packet)?;
    set_cipher(packet, suite);
    match suite {
        CipherSuite::Poly1305None | CipherSuite::Poly1305Salsa2012 => {
            let mut s = packet_salsa(key, packet);
            let block0 = s.keystream_block0();
            if suite == CipherSuite::Poly1305Salsa2012 {
                s.apply_keystream(&mut packet[IDX_VERB..]);
            }
            let tag = poly_mac(
                block0[..32].try_into().expect("32 bytes"),
                &packet[IDX_VERB..],
            );
            packet[IDX_MAC..IDX_VERB].copy_from_slice(&tag[..8]);
            Ok(())
        }
        CipherSuite::AesGmacSiv => {
            let mut iv = [0u8; 8];
            iv.copy_from_slice(&packet[..8]);
            let a = aad(packet);
            let b = key.aes_gmac_siv().encrypt(&iv, &a, &mut packet[IDX_VERB..]);
            packet[..8].copy_from_slice(&b[..8]);
            packet[IDX_MAC..IDX_VERB].copy_from_slice(&b[8..]);
            Ok(())
        }
        CipherSuite::TrustedPath => Err(ArmorError::TrustedPathNeedsId),
    }
}

/// Marks a packet as cipher 2 (trusted path) with the given id in the MAC field. No crypto.
/// spec: vl1.md §3.5
pub fn armor_trusted_path(packet: &mut [u8], trusted_path_id: u64) -> Result<(), ArmorError> {
    check_len(packet)?;
    set_cipher(packet, CipherSuite::TrustedPath);
    packet[IDX_MAC..IDX_VERB].copy_from_slice(&trusted_path_id.to_be_bytes());
    Ok(())
}

/// For a cipher-2 packet: whether its MAC field carries `expected_id` (the id configured for the
/// physical network the datagram came from; the caller checks the source address).
pub fn check_trusted_path(packet: &[u8], expected_id: u64) -> bool {
    packet.len() >= MIN_PACKET_LEN
        && (packet[IDX_FLAGS] & FLAGS_CIPHER_MASK) >> 3 == CipherSuite::TrustedPath.id()
        && packet[IDX_MAC..IDX_VERB] == expected_id.to_be_bytes()
}

/// Authenticates and decrypts a complete (reassembled) packet in place with the peer key and
/// returns the suite it used. On failure the buffer holds exactly the bytes it held before, so
/// another key can be tried. spec: vl1.md §3.8 step 4
pub fn dearmor(packet: &mut [u8], key: &PeerKey) -> Result<CipherSuite, ArmorError> {
    check_len(packet)?;
    let cipher = (packet[IDX_FLAGS] & FLAGS_CIPHER_MASK) >> 3;
    let suite = CipherSuite::from_id(cipher).ok_or(ArmorError::UnknownCipher { cipher })?;
    match suite {
        CipherSuite::Poly1305None | CipherSuite::Poly1305Salsa2012 => {
            let mut s = packet_salsa(key, packet);
            let block0 = s.keystream_block0();
            let tag = poly_mac(
                block0[..32].try_into().expect("32 bytes"),
                &packet[IDX_VERB..],
            );
            if !bool::from(tag[..8].ct_eq(&packet[IDX_MAC..IDX_VERB])) {
                return Err(ArmorError::MacFailed { cipher });
            }
            if suite == CipherSuite::Poly1305Salsa2012 {
                s.apply_keystream(&mut packet[IDX_VERB..]);
            }
            Ok(suite)
        }
        CipherSuite::AesGmacSiv => {
            let mut b = [0u8; 16];
            b[..8].copy_from_slice(&packet[..8]);
            b[8..].copy_from_slice(&packet[IDX_MAC..IDX_VERB]);
            let a = aad(packet);
            let aes = key.aes_gmac_siv();
            match aes.decrypt(&b, &a, &mut packet[IDX_VERB..]) {
                Some(_iv) => Ok(suite),
                None => {
                    aes.restore(&b, &mut packet[IDX_VERB..]);
                    Err(ArmorError::MacFailed { cipher })
                }
            }
        }
        CipherSuite::TrustedPath => Err(ArmorError::TrustedPath {
            trusted_path_id: u64::from_be_bytes(
                packet[IDX_MAC..IDX_VERB]
                    .try_into()
                    .expect("length checked above"),
            ),
        }),
    }
}

/// Encrypts or decrypts (the same XOR) the HELLO tail ("cryptField"): Salsa20/12 with the
/// unmangled `K[0..32]` and nonce = packet id with the low 3 bits of byte 7 cleared, from
/// keystream byte 0. spec: vl1.md §3.3
pub fn hello_tail_crypt(key: &PeerKey, packet_id: &[u8; 8], tail: &mut [u8]) {
    let mut iv = *packet_id;
    iv[7] &= 0xf8;
    Salsa2012::new(key.salsa_key(), &iv).apply_keystream(tail);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::identity::Identity;

    use crate::test_vectors::{A, B};
    const PLAIN: &str = "0102030405060708555b5031f82f52c8fb180000000000000000000854686520717569636b2062726f776e20666f78206a756d7073206f76657220746865206c617a7920646f67202d2d205a65726f5469657220564c312074657374207061796c6f61642030313233343536373839";

    fn key() -> PeerKey {
        let a: Identity = A.parse().unwrap();
        let b: Identity = B.parse().unwrap();
        a.agree(&b).unwrap()
    }

    fn check(iv_last: u8, suite: CipherSuite, expect: &str) {
        let k = key();
        let mut p = hex::decode(PLAIN).unwrap();
        p[7] = iv_last;
        let orig = p.clone();
        armor(&mut p, &k, suite).unwrap();
        assert_eq!(hex::encode(&p), expect, "{suite:?}");
        // hop bits are not authenticated
        p[IDX_FLAGS] |= 3;
        assert_eq!(dearmor(&mut p, &k).unwrap(), suite);
        assert_eq!(p[IDX_VERB..], orig[IDX_VERB..]);
        // any payload bit flip fails and leaves the buffer untouched
        let mut q = hex::decode(expect).unwrap();
        q[40] ^= 1;
        let before = q.clone();
        assert!(matches!(
            dearmor(&mut q, &k),
            Err(ArmorError::MacFailed { .. })
        ));
        assert_eq!(q, before);
    }

    // spec: vl1.md Appendix A
    #[test]
    fn appendix_a_ciphers() {
        check(
            0x08,
            CipherSuite::Poly1305Salsa2012,
            "0102030405060708555b5031f82f52c8fb18884cc4eeed2d05e2dd5b619ddf203a1f61d9e31bfdb13daadf654411c12c731b49ef17dfa3bea6bec824126a11456026b5fe77718cd721fa7e086410ec6d8c3217dbc1bd6dcefe5aba090d76fe85f6cad15eee553bf7a6657256a8068a",
        );
        check(
            0x09,
            CipherSuite::Poly1305None,
            "0102030405060709555b5031f82f52c8fb1800591925c08711db3d0854686520717569636b2062726f776e20666f78206a756d7073206f76657220746865206c617a7920646f67202d2d205a65726f5469657220564c312074657374207061796c6f61642030313233343536373839",
        );
        check(
            0x0a,
            CipherSuite::AesGmacSiv,
            "f2ba87d9739f56ea555b5031f82f52c8fb18186dd8fcbe03748409a7a30bff3cac44ba482f2badd7e617557e3de014f8145d7e169d8f70864877da4c8b9dbf1970125d3deb571a3fdbec91e8b3496ba2434e85b0b9f819ec7b929073b269b70226b078e830f5650d900528990e90bf",
        );
    }

    #[test]
    fn trusted_path_and_unknown_cipher() {
        let k = key();
        let mut p = hex::decode(PLAIN).unwrap();
        armor_trusted_path(&mut p, 0x1122).unwrap();
        assert_eq!(p[IDX_FLAGS], 0x10);
        assert!(check_trusted_path(&p, 0x1122));
        assert!(!check_trusted_path(&p, 0x1123));
        assert_eq!(
            dearmor(&mut p, &k),
            Err(ArmorError::TrustedPath {
                trusted_path_id: 0x1122
            })
        );
        p[IDX_FLAGS] = 0x20;
        assert_eq!(
            dearmor(&mut p, &k),
            Err(ArmorError::UnknownCipher { cipher: 4 })
        );
        assert_eq!(
            armor(&mut p, &k, CipherSuite::TrustedPath),
            Err(ArmorError::TrustedPathNeedsId)
        );
        assert!(matches!(
            dearmor(&mut [0u8; 10], &k),
            Err(ArmorError::BadLength { len: 10 })
        ));
    }
}
