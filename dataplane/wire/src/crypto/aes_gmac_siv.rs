//! AES-GMAC-SIV as used by ZeroTier 1.14 (cipher suite 3). spec: vl1.md §3.4

use aes::Aes256;
use aes::cipher::{BlockDecrypt, BlockEncrypt, InnerIvInit, KeyInit, StreamCipher};
use ghash::GHash;
use ghash::universal_hash::UniversalHash;
use subtle::ConstantTimeEq;

type Aes256Ctr32 = ctr::Ctr32BE<Aes256>;

/// Length of the AAD: destination (5) ‖ source (5) ‖ flags (1).
pub const AAD_LEN: usize = 11;

/// AES-GMAC-SIV keyed with K0 (GMAC) and K1 (tag encryption and CTR).
#[derive(Clone)]
pub struct AesGmacSiv {
    k0: Aes256,
    k1: Aes256,
    h: [u8; 16],
}

impl std::fmt::Debug for AesGmacSiv {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("AesGmacSiv(..)")
    }
}

impl AesGmacSiv {
    /// Keys the cipher with the two 32-byte AES-256 keys.
    pub fn new(k0: &[u8; 32], k1: &[u8; 32]) -> Self {
        let k0 = Aes256::new(k0.into());
        let mut h = [0u8; 16];
        k0.encrypt_block((&mut h).into());
        AesGmacSiv {
            k0,
            k1: Aes256::new(k1.into()),
            h,
        }
    }

    /// GMAC over `aad ‖ 0×5 ‖ payload` with nonce `iv ‖ 00000000`, folded to 8 bytes.
    fn gmac8(&self, iv: &[u8; 8], aad: &[u8; AAD_LEN], payload: &[u8]) -> [u8; 8] {
        let mut gh = GHash::new(&self.h.into());
        let mut a = [0u8; 16];
        a[..AAD_LEN].copy_from_slice(aad);
        gh.update_padded(&a);
        gh.update_padded(payload);
        let bits = ((16 + payload.len()) as u64) * 8;
        let mut len_block = [0u8; 16];
        len_block[..8].copy_from_slice(&bits.to_be_bytes());
        gh.update_padded(&len_block);
        let mut t: [u8; 16] = gh.finalize().into();
        let mut j0 = [0u8; 16];
        j0[..8].copy_from_slice(iv);
        j0[15] = 1;
        self.k0.encrypt_block((&mut j0).into());
        for (t, m) in t.iter_mut().zip(j0) {
            *t ^= m;
        }
        let mut t8 = [0u8; 8];
        for i in 0..8 {
            t8[i] = t[i] ^ t[i + 8];
        }
        t8
    }

    fn ctr(&self, tag: &[u8; 16], payload: &mut [u8]) {
        let mut ctr_block = *tag;
        ctr_block[12] &= 0x7f;
        let core = ctr::CtrCore::<Aes256, ctr::flavors::Ctr32BE>::inner_iv_init(
            self.k1.clone(),
            (&ctr_block).into(),
        );
        let mut c = Aes256Ctr32::from_core(core);
        c.apply_keystream(payload);
    }

    /// Encrypts `payload` in place and returns the 16-byte on-wire tag block `B`
    /// (bytes 0..8 go to packet offset 0, bytes 8..16 to offset 19).
    pub fn encrypt(&self, iv: &[u8; 8], aad: &[u8; AAD_LEN], payload: &mut [u8]) -> [u8; 16] {
        let t8 = self.gmac8(iv, aad, payload);
        let mut b = [0u8; 16];
        b[..8].copy_from_slice(iv);
        b[8..].copy_from_slice(&t8);
        self.k1.encrypt_block((&mut b).into());
        self.ctr(&b, payload);
        b
    }

    /// Undoes the CTR decryption of a failed [`AesGmacSiv::decrypt`], restoring the ciphertext.
    pub fn restore(&self, tag: &[u8; 16], payload: &mut [u8]) {
        self.ctr(tag, payload);
    }

    /// Decrypts `payload` in place given the on-wire tag block and authenticates it. On success
    /// returns the original 8-byte IV. On failure the payload is left decrypted-but-unauthentic
    /// and must be discarded by the caller.
    pub fn decrypt(
        &self,
        tag: &[u8; 16],
        aad: &[u8; AAD_LEN],
        payload: &mut [u8],
    ) -> Option<[u8; 8]> {
        self.ctr(tag, payload);
        let mut x = *tag;
        self.k1.decrypt_block((&mut x).into());
        let mut iv = [0u8; 8];
        iv.copy_from_slice(&x[..8]);
        let t8 = self.gmac8(&iv, aad, payload);
        if bool::from(t8.ct_eq(&x[8..16])) {
            Some(iv)
        } else {
            None
        }
    }
}
