//! AES-GMAC-SIV, ZeroTier cipher suite 3, with AES-NI/VAES and carry-less multiply.
//! spec: vl1.md §1.5 (keys K0, K1), §3.4 (the construction)
//!
//! Sender: `T` = GMAC (GHASH under `H = AES_K0(0)` over `AAD ‖ 00×5 ‖ P ‖ pad ‖ len`, masked by
//! `AES_K0(IV ‖ 0⁴ ‖ 00000001)`), `t8 = T[0..8] ⊕ T[8..16]`, `B = AES_K1(IV ‖ t8)`, then
//! AES-256-CTR under `K1` from `B` with bit 7 of byte 12 cleared (32-bit big-endian counter in
//! bytes 12..16). The receiver runs CTR first, recovers `IV ‖ t8 = AES⁻¹_K1(B)` and recomputes
//! the GMAC over the decrypted payload.
//!
//! Back-ends ([`Backend`]), picked once when the cipher is keyed:
//! - [`Backend::Vaes512`]: VAES + VPCLMULQDQ on 512-bit registers (AVX-512F/BW): CTR 16 blocks
//!   per iteration, GHASH 16 blocks per reduction (precomputed powers `H¹..H¹⁶`), masked loads
//!   and stores for the tails; decryption runs CTR and GHASH in one pass.
//! - [`Backend::Vaes256`]: the same on 256-bit registers (AVX2 + VAES + VPCLMULQDQ), 8 blocks
//!   per iteration.
//! - [`Backend::AesNi`]: AES-NI + PCLMULQDQ on 128-bit registers, 8 blocks per iteration.
//! - [`Backend::Portable`]: the RustCrypto crates (`aes`, `ghash`, `ctr`), which pick their own
//!   implementation.
//!
//! GHASH is computed as POLYVAL on byte-reversed blocks (RFC 8452 Appendix A): with
//! `H' = mulX_POLYVAL(rev(H))`, `GHASH_H(X₁..Xₙ) = rev(POLYVAL_H'(rev(X₁)..rev(Xₙ)))`; POLYVAL's
//! Montgomery product maps directly onto `pclmulqdq` without bit reflection.

use aes::Aes256;
use aes::cipher::{BlockDecrypt, BlockEncrypt, InnerIvInit, KeyInit, StreamCipher};
use ghash::GHash;
use ghash::universal_hash::UniversalHash;
use subtle::ConstantTimeEq;
use zeroize::Zeroize;

/// Length of the AAD: destination (5) ‖ source (5) ‖ flags (1). spec: vl1.md §3.4
pub const AAD_LEN: usize = 11;

/// An implementation of the cipher. [`Backend::best`] is what [`AesGmacSiv::new`] uses.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Backend {
    /// VAES and VPCLMULQDQ on 512-bit registers (x86-64 with AVX-512F and AVX-512BW).
    Vaes512,
    /// VAES and VPCLMULQDQ on 256-bit registers (x86-64 with AVX2).
    Vaes256,
    /// AES-NI and PCLMULQDQ on 128-bit registers (x86-64 with SSE4.1).
    AesNi,
    /// The RustCrypto `aes`, `ghash` and `ctr` crates; runs everywhere.
    Portable,
}

impl Backend {
    /// Every back-end, fastest first.
    pub const ALL: [Backend; 4] = [
        Backend::Vaes512,
        Backend::Vaes256,
        Backend::AesNi,
        Backend::Portable,
    ];

    /// Whether this CPU can run the back-end.
    pub fn is_supported(self) -> bool {
        match self {
            Backend::Portable => true,
            #[cfg(target_arch = "x86_64")]
            b => x86::supported(b),
            #[cfg(not(target_arch = "x86_64"))]
            _ => false,
        }
    }

    /// The fastest back-end this CPU supports.
    pub fn best() -> Backend {
        Backend::ALL
            .into_iter()
            .find(|b| b.is_supported())
            .unwrap_or(Backend::Portable)
    }
}

/// AES-GMAC-SIV keyed with K0 (GMAC) and K1 (tag encryption and CTR). spec: vl1.md §3.4
///
/// The key schedules are wiped when the value is dropped.
#[derive(Clone)]
pub struct AesGmacSiv {
    imp: Imp,
}

// The x86 keys stay inline (one cache-friendly object per peer, no pointer chase per packet).
#[allow(clippy::large_enum_variant)]
#[derive(Clone)]
enum Imp {
    #[cfg(target_arch = "x86_64")]
    X86(x86::Keys),
    /// Boxed: the `aes` crate keeps both its AES-NI and its bitsliced schedules.
    Portable(Box<Portable>),
}

impl std::fmt::Debug for AesGmacSiv {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "AesGmacSiv({:?})", self.backend())
    }
}

impl AesGmacSiv {
    /// Keys the cipher with the two 32-byte AES-256 keys, on the fastest back-end this CPU has.
    pub fn new(k0: &[u8; 32], k1: &[u8; 32]) -> Self {
        Self::with_backend(Backend::best(), k0, k1).unwrap_or_else(|| AesGmacSiv {
            imp: Imp::Portable(Box::new(Portable::new(k0, k1))),
        })
    }

    /// Keys the cipher on a given back-end; `None` when this CPU cannot run it.
    pub fn with_backend(backend: Backend, k0: &[u8; 32], k1: &[u8; 32]) -> Option<Self> {
        let imp = match backend {
            Backend::Portable => Imp::Portable(Box::new(Portable::new(k0, k1))),
            #[cfg(target_arch = "x86_64")]
            b => Imp::X86(x86::Keys::new(b, k0, k1)?),
            #[cfg(not(target_arch = "x86_64"))]
            _ => return None,
        };
        Some(AesGmacSiv { imp })
    }

    /// The back-end in use.
    pub fn backend(&self) -> Backend {
        match &self.imp {
            #[cfg(target_arch = "x86_64")]
            Imp::X86(k) => k.backend(),
            Imp::Portable(_) => Backend::Portable,
        }
    }

    /// Encrypts `payload` in place and returns the 16-byte on-wire tag block `B`
    /// (bytes 0..8 go to packet offset 0, bytes 8..16 to offset 19). spec: vl1.md §3.4
    pub fn encrypt(&self, iv: &[u8; 8], aad: &[u8; AAD_LEN], payload: &mut [u8]) -> [u8; 16] {
        match &self.imp {
            #[cfg(target_arch = "x86_64")]
            Imp::X86(k) => k.encrypt(iv, aad, payload),
            Imp::Portable(p) => p.encrypt(iv, aad, payload),
        }
    }

    /// Undoes the CTR decryption of a failed [`AesGmacSiv::decrypt`], restoring the ciphertext.
    pub fn restore(&self, tag: &[u8; 16], payload: &mut [u8]) {
        match &self.imp {
            #[cfg(target_arch = "x86_64")]
            Imp::X86(k) => k.ctr(tag, payload),
            Imp::Portable(p) => p.ctr(tag, payload),
        }
    }

    /// Decrypts `payload` in place given the on-wire tag block and authenticates it. On success
    /// returns the original 8-byte IV. On failure the payload is left decrypted-but-unauthentic
    /// and must be discarded (or put back with [`AesGmacSiv::restore`]). spec: vl1.md §3.4
    pub fn decrypt(
        &self,
        tag: &[u8; 16],
        aad: &[u8; AAD_LEN],
        payload: &mut [u8],
    ) -> Option<[u8; 8]> {
        let (iv_t8, t8) = match &self.imp {
            #[cfg(target_arch = "x86_64")]
            Imp::X86(k) => k.decrypt(tag, aad, payload),
            Imp::Portable(p) => p.decrypt(tag, aad, payload),
        };
        let mut iv = [0u8; 8];
        iv.copy_from_slice(&iv_t8[..8]);
        bool::from(t8.ct_eq(&iv_t8[8..])).then_some(iv)
    }
}

/// `T[0..8] ⊕ T[8..16]`. spec: vl1.md §3.4 step 3
fn fold8(t: &[u8; 16]) -> [u8; 8] {
    let mut t8 = [0u8; 8];
    for (i, b) in t8.iter_mut().enumerate() {
        *b = t[i] ^ t[i + 8];
    }
    t8
}

/// The RustCrypto composition (the crates choose AES-NI/CLMUL themselves where they can).
#[derive(Clone)]
struct Portable {
    k0: Aes256,
    k1: Aes256,
    h: [u8; 16],
}

impl Drop for Portable {
    fn drop(&mut self) {
        // Aes256 wipes its own schedule (the crate's `zeroize` feature).
        self.h.zeroize();
    }
}

impl Portable {
    fn new(k0: &[u8; 32], k1: &[u8; 32]) -> Self {
        let k0 = Aes256::new(k0.into());
        let mut h = [0u8; 16];
        k0.encrypt_block((&mut h).into());
        Portable {
            k0,
            k1: Aes256::new(k1.into()),
            h,
        }
    }

    fn gmac8(&self, iv: &[u8; 8], aad: &[u8; AAD_LEN], payload: &[u8]) -> [u8; 8] {
        let mut gh = GHash::new(&self.h.into());
        let mut a = [0u8; 16];
        a[..AAD_LEN].copy_from_slice(aad);
        gh.update_padded(&a);
        gh.update_padded(payload);
        let mut len_block = [0u8; 16];
        len_block[..8].copy_from_slice(&gmac_bits(payload.len()).to_be_bytes());
        gh.update_padded(&len_block);
        let mut t: [u8; 16] = gh.finalize().into();
        let mut j0 = j0(iv);
        self.k0.encrypt_block((&mut j0).into());
        for (t, m) in t.iter_mut().zip(j0) {
            *t ^= m;
        }
        fold8(&t)
    }

    fn ctr(&self, tag: &[u8; 16], payload: &mut [u8]) {
        let mut ctr_block = *tag;
        ctr_block[12] &= 0x7f;
        let core = ctr::CtrCore::<Aes256, ctr::flavors::Ctr32BE>::inner_iv_init(
            self.k1.clone(),
            (&ctr_block).into(),
        );
        ctr::Ctr32BE::<Aes256>::from_core(core).apply_keystream(payload);
    }

    fn encrypt(&self, iv: &[u8; 8], aad: &[u8; AAD_LEN], payload: &mut [u8]) -> [u8; 16] {
        let t8 = self.gmac8(iv, aad, payload);
        let mut b = [0u8; 16];
        b[..8].copy_from_slice(iv);
        b[8..].copy_from_slice(&t8);
        self.k1.encrypt_block((&mut b).into());
        self.ctr(&b, payload);
        b
    }

    /// Returns `AES⁻¹_K1(B)` (IV ‖ t8) and the recomputed t8.
    fn decrypt(
        &self,
        tag: &[u8; 16],
        aad: &[u8; AAD_LEN],
        payload: &mut [u8],
    ) -> ([u8; 16], [u8; 8]) {
        self.ctr(tag, payload);
        let mut x = *tag;
        self.k1.decrypt_block((&mut x).into());
        let iv: [u8; 8] = x[..8].try_into().expect("8 bytes");
        (x, self.gmac8(&iv, aad, payload))
    }
}

/// The GCM length block's first half: bits hashed, counting the 5 AAD padding bytes.
/// spec: vl1.md §3.4 step 2
fn gmac_bits(payload_len: usize) -> u64 {
    (16 + payload_len as u64) * 8
}

/// The GCM pre-counter block `IV ‖ 00000000 ‖ 00000001`.
fn j0(iv: &[u8; 8]) -> [u8; 16] {
    let mut j = [0u8; 16];
    j[..8].copy_from_slice(iv);
    j[15] = 1;
    j
}

/// x86-64 kernels. Every `#[target_feature]` function here is only reached through a [`Keys`],
/// which can only be built after `is_x86_feature_detected!` confirmed its back-end's features.
#[cfg(target_arch = "x86_64")]
#[allow(unsafe_code)]
mod x86 {
    use std::arch::x86_64::*;

    use zeroize::Zeroize;

    use super::{AAD_LEN, Backend, fold8, gmac_bits, j0};

    /// Byte 15..0 reversal within each 128-bit lane.
    const BSWAP: [u8; 16] = [15, 14, 13, 12, 11, 10, 9, 8, 7, 6, 5, 4, 3, 2, 1, 0];
    /// Reverses bytes 12..16 of each lane: turns the big-endian CTR counter into a
    /// little-endian 32-bit lane 3 (and back).
    const CTR_SWAP: [u8; 16] = [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 15, 14, 13, 12];

    pub(super) fn supported(b: Backend) -> bool {
        let ni = std::arch::is_x86_feature_detected!("aes")
            && std::arch::is_x86_feature_detected!("pclmulqdq")
            && std::arch::is_x86_feature_detected!("sse4.1")
            && std::arch::is_x86_feature_detected!("ssse3");
        let vaes = ni
            && std::arch::is_x86_feature_detected!("vaes")
            && std::arch::is_x86_feature_detected!("vpclmulqdq")
            && std::arch::is_x86_feature_detected!("avx2");
        match b {
            Backend::AesNi => ni,
            Backend::Vaes256 => vaes,
            Backend::Vaes512 => {
                vaes && std::arch::is_x86_feature_detected!("avx512f")
                    && std::arch::is_x86_feature_detected!("avx512bw")
            }
            Backend::Portable => true,
        }
    }

    /// Round keys and GHASH powers; its existence proves the CPU runs `backend`.
    #[derive(Clone)]
    pub(super) struct Keys {
        backend: Backend,
        /// AES-256 encryption schedule of K0.
        k0: [[u8; 16]; 15],
        /// AES-256 encryption schedule of K1.
        k1: [[u8; 16]; 15],
        /// Equivalent-inverse-cipher schedule of K1 (for `aesdec`), used once per decryption.
        k1_dec: [[u8; 16]; 15],
        /// POLYVAL-domain powers `[H¹⁶, H¹⁵, .., H¹, 0, 0, 0, 0]`: the `n` blocks of a group
        /// multiply by the `n` entries starting at `16 - n`; the zeros let a 4-block load run
        /// past `H¹` for a short final group (whose missing blocks are zero).
        h: [[u8; 16]; 20],
    }

    impl Drop for Keys {
        fn drop(&mut self) {
            self.k0.zeroize();
            self.k1.zeroize();
            self.k1_dec.zeroize();
            self.h.zeroize();
        }
    }

    impl Keys {
        pub(super) fn new(backend: Backend, k0: &[u8; 32], k1: &[u8; 32]) -> Option<Keys> {
            if backend == Backend::Portable || !supported(backend) {
                return None;
            }
            // SAFETY: `supported` confirmed AES-NI, PCLMULQDQ, SSSE3 and SSE4.1 (every non-portable
            // back-end requires them).
            Some(unsafe { setup(backend, k0, k1) })
        }

        pub(super) fn backend(&self) -> Backend {
            self.backend
        }

        pub(super) fn encrypt(
            &self,
            iv: &[u8; 8],
            aad: &[u8; AAD_LEN],
            payload: &mut [u8],
        ) -> [u8; 16] {
            // SAFETY: a `Keys` exists only for a back-end whose features `supported` confirmed.
            unsafe {
                match self.backend {
                    Backend::Vaes512 => encrypt_vaes512(self, iv, aad, payload),
                    Backend::Vaes256 => encrypt_vaes256(self, iv, aad, payload),
                    _ => encrypt_ni(self, iv, aad, payload),
                }
            }
        }

        pub(super) fn decrypt(
            &self,
            tag: &[u8; 16],
            aad: &[u8; AAD_LEN],
            payload: &mut [u8],
        ) -> ([u8; 16], [u8; 8]) {
            // SAFETY: as in `encrypt`.
            unsafe {
                match self.backend {
                    Backend::Vaes512 => decrypt_vaes512(self, tag, aad, payload),
                    Backend::Vaes256 => decrypt_vaes256(self, tag, aad, payload),
                    _ => decrypt_ni(self, tag, aad, payload),
                }
            }
        }

        pub(super) fn ctr(&self, tag: &[u8; 16], payload: &mut [u8]) {
            // SAFETY: as in `encrypt`.
            unsafe {
                match self.backend {
                    Backend::Vaes512 => ctr_vaes512_entry(self, tag, payload),
                    Backend::Vaes256 => ctr_vaes256_entry(self, tag, payload),
                    _ => ctr_ni_entry(self, tag, payload),
                }
            }
        }
    }

    // ---------------------------------------------------------------------------------------
    // 128-bit helpers (AES-NI, PCLMULQDQ)

    #[inline]
    #[target_feature(enable = "sse2")]
    fn load(b: &[u8; 16]) -> __m128i {
        // SAFETY: 16 readable bytes; unaligned load.
        unsafe { _mm_loadu_si128(b.as_ptr().cast()) }
    }

    #[inline]
    #[target_feature(enable = "sse2")]
    fn store(v: __m128i) -> [u8; 16] {
        let mut b = [0u8; 16];
        // SAFETY: 16 writable bytes; unaligned store.
        unsafe { _mm_storeu_si128(b.as_mut_ptr().cast(), v) };
        b
    }

    #[inline]
    #[target_feature(enable = "sse2")]
    fn load_at(s: &[u8], off: usize) -> __m128i {
        let b: &[u8; 16] = s[off..off + 16].try_into().expect("16 bytes");
        load(b)
    }

    #[inline]
    #[target_feature(enable = "sse2")]
    fn store_at(s: &mut [u8], off: usize, v: __m128i) {
        let b: &mut [u8; 16] = (&mut s[off..off + 16]).try_into().expect("16 bytes");
        // SAFETY: 16 writable bytes; unaligned store.
        unsafe { _mm_storeu_si128(b.as_mut_ptr().cast(), v) };
    }

    #[inline]
    #[target_feature(enable = "sse2")]
    fn round_keys(k: &[[u8; 16]; 15]) -> [__m128i; 15] {
        std::array::from_fn(|i| load(&k[i]))
    }

    #[inline]
    #[target_feature(enable = "sse2")]
    fn xor_shifted(mut a: __m128i) -> __m128i {
        let mut t = _mm_slli_si128::<4>(a);
        a = _mm_xor_si128(a, t);
        t = _mm_slli_si128::<4>(t);
        a = _mm_xor_si128(a, t);
        t = _mm_slli_si128::<4>(t);
        _mm_xor_si128(a, t)
    }

    /// The AES-256 encryption key schedule (FIPS 197 §5.2) with `aeskeygenassist`.
    #[target_feature(enable = "aes,sse2")]
    fn expand256(key: &[u8; 32]) -> [[u8; 16]; 15] {
        let mut rk = [[0u8; 16]; 15];
        let mut a = load(key[..16].try_into().expect("16 bytes"));
        let mut b = load(key[16..].try_into().expect("16 bytes"));
        rk[0] = store(a);
        rk[1] = store(b);
        macro_rules! step {
            ($i:expr, $rcon:expr) => {
                let t = _mm_shuffle_epi32::<0xff>(_mm_aeskeygenassist_si128::<$rcon>(b));
                a = _mm_xor_si128(xor_shifted(a), t);
                rk[$i] = store(a);
            };
            ($i:expr, $rcon:expr, odd) => {
                step!($i, $rcon);
                let t = _mm_shuffle_epi32::<0xaa>(_mm_aeskeygenassist_si128::<0>(a));
                b = _mm_xor_si128(xor_shifted(b), t);
                rk[$i + 1] = store(b);
            };
        }
        step!(2, 0x01, odd);
        step!(4, 0x02, odd);
        step!(6, 0x04, odd);
        step!(8, 0x08, odd);
        step!(10, 0x10, odd);
        step!(12, 0x20, odd);
        step!(14, 0x40);
        rk
    }

    #[inline]
    #[target_feature(enable = "aes,sse2")]
    fn aes_enc1(rk: &[__m128i; 15], b: __m128i) -> __m128i {
        let mut x = _mm_xor_si128(b, rk[0]);
        for k in &rk[1..14] {
            x = _mm_aesenc_si128(x, *k);
        }
        _mm_aesenclast_si128(x, rk[14])
    }

    #[inline]
    #[target_feature(enable = "aes,sse2")]
    fn aes_dec1(dk: &[__m128i; 15], b: __m128i) -> __m128i {
        let mut x = _mm_xor_si128(b, dk[0]);
        for k in &dk[1..14] {
            x = _mm_aesdec_si128(x, *k);
        }
        _mm_aesdeclast_si128(x, dk[14])
    }

    /// Unreduced 256-bit products, kept as three 128-bit halves (schoolbook: `lo`, `mid`, `hi`).
    #[inline]
    #[target_feature(enable = "pclmulqdq,sse2")]
    fn mul_acc(a: __m128i, b: __m128i, acc: &mut [__m128i; 3]) {
        acc[0] = _mm_xor_si128(acc[0], _mm_clmulepi64_si128::<0x00>(a, b));
        acc[1] = _mm_xor_si128(
            acc[1],
            _mm_xor_si128(
                _mm_clmulepi64_si128::<0x01>(a, b),
                _mm_clmulepi64_si128::<0x10>(a, b),
            ),
        );
        acc[2] = _mm_xor_si128(acc[2], _mm_clmulepi64_si128::<0x11>(a, b));
    }

    /// POLYVAL's Montgomery reduction: `(hi·x¹²⁸ + lo)·x⁻¹²⁸ mod x¹²⁸+x¹²⁷+x¹²⁶+x¹²¹+1`, 64 bits
    /// at a time (`l·x⁻⁶⁴ = swap(l) ⊕ l₀·(x⁶³+x⁶²+x⁵⁷)`).
    #[inline]
    #[target_feature(enable = "pclmulqdq,sse2")]
    fn reduce(acc: [__m128i; 3]) -> __m128i {
        let [lo, mid, hi] = acc;
        let lo = _mm_xor_si128(lo, _mm_slli_si128::<8>(mid));
        let hi = _mm_xor_si128(hi, _mm_srli_si128::<8>(mid));
        let poly = _mm_set_epi64x(0xc200_0000_0000_0000_u64 as i64, 0);
        let t = _mm_clmulepi64_si128::<0x10>(lo, poly);
        let lo = _mm_xor_si128(_mm_shuffle_epi32::<0x4e>(lo), t);
        let t = _mm_clmulepi64_si128::<0x10>(lo, poly);
        let lo = _mm_xor_si128(_mm_shuffle_epi32::<0x4e>(lo), t);
        _mm_xor_si128(hi, lo)
    }

    /// POLYVAL's `dot(a, b) = a·b·x⁻¹²⁸`.
    #[inline]
    #[target_feature(enable = "pclmulqdq,sse2")]
    fn dot(a: __m128i, b: __m128i) -> __m128i {
        let z = _mm_setzero_si128();
        let mut acc = [z, z, z];
        mul_acc(a, b, &mut acc);
        reduce(acc)
    }

    #[target_feature(enable = "aes,pclmulqdq,sse2,ssse3,sse4.1")]
    fn setup(backend: Backend, k0: &[u8; 32], k1: &[u8; 32]) -> Keys {
        let k0s = expand256(k0);
        let k1s = expand256(k1);
        let mut k1_dec = [[0u8; 16]; 15];
        k1_dec[0] = k1s[14];
        for i in 1..14 {
            k1_dec[i] = store(_mm_aesimc_si128(load(&k1s[14 - i])));
        }
        k1_dec[14] = k1s[0];
        // H = AES_K0(0); POLYVAL key H' = mulX_POLYVAL(rev(H)) (RFC 8452 Appendix A).
        let h = store(aes_enc1(&round_keys(&k0s), _mm_setzero_si128()));
        let v = u128::from_be_bytes(h);
        let mut hx = v << 1;
        if v >> 127 == 1 {
            hx ^= (0xc2u128 << 120) | 1;
        }
        let h1 = load(&hx.to_le_bytes());
        let mut powers = [[0u8; 16]; 20];
        let mut p = h1;
        powers[15] = store(p);
        for i in (0..15).rev() {
            p = dot(p, h1);
            powers[i] = store(p);
        }
        Keys {
            backend,
            k0: k0s,
            k1: k1s,
            k1_dec,
            h: powers,
        }
    }

    /// The AAD block `AAD ‖ 00×5`, byte-reversed into the POLYVAL domain.
    #[inline]
    #[target_feature(enable = "sse2,ssse3")]
    fn aad_block(aad: &[u8; AAD_LEN]) -> __m128i {
        let mut a = [0u8; 16];
        a[..AAD_LEN].copy_from_slice(aad);
        _mm_shuffle_epi8(load(&a), load(&BSWAP))
    }

    /// The GCM length block in the POLYVAL domain (`rev(bits ‖ 0⁶⁴)` = `bits` in the high half).
    #[inline]
    #[target_feature(enable = "sse2")]
    fn len_block(payload_len: usize) -> __m128i {
        _mm_set_epi64x(gmac_bits(payload_len) as i64, 0)
    }

    /// Turns the POLYVAL state into the GMAC tag, folds it and returns `t8`.
    #[inline]
    #[target_feature(enable = "aes,pclmulqdq,sse2,ssse3")]
    fn finish_gmac(keys: &Keys, s: __m128i, iv: &[u8; 8], payload_len: usize) -> [u8; 8] {
        let h1 = load(&keys.h[15]);
        let s = dot(_mm_xor_si128(s, len_block(payload_len)), h1);
        let ghash = _mm_shuffle_epi8(s, load(&BSWAP));
        let m = aes_enc1(&round_keys(&keys.k0), load(&j0(iv)));
        fold8(&store(_mm_xor_si128(ghash, m)))
    }

    /// `B = AES_K1(IV ‖ t8)`.
    #[inline]
    #[target_feature(enable = "aes,sse2")]
    fn seal_tag(keys: &Keys, iv: &[u8; 8], t8: &[u8; 8]) -> [u8; 16] {
        let mut b = [0u8; 16];
        b[..8].copy_from_slice(iv);
        b[8..].copy_from_slice(t8);
        store(aes_enc1(&round_keys(&keys.k1), load(&b)))
    }

    /// `AES⁻¹_K1(B)` = `IV ‖ t8`.
    #[inline]
    #[target_feature(enable = "aes,sse2")]
    fn open_tag(keys: &Keys, tag: &[u8; 16]) -> [u8; 16] {
        store(aes_dec1(&round_keys(&keys.k1_dec), load(tag)))
    }

    /// The initial counter block (bit 7 of byte 12 cleared) with its counter made
    /// little-endian in 32-bit lane 3.
    #[inline]
    #[target_feature(enable = "sse2,ssse3")]
    fn ctr_start(tag: &[u8; 16]) -> __m128i {
        let mut c = *tag;
        c[12] &= 0x7f;
        _mm_shuffle_epi8(load(&c), load(&CTR_SWAP))
    }

    /// GHASH (as POLYVAL) of `data` zero-padded to whole blocks, continuing from `s`: 8 blocks
    /// per reduction, then the rest (with the padded partial block) in one aggregated group.
    #[target_feature(enable = "pclmulqdq,sse2,ssse3")]
    fn ghash_ni(keys: &Keys, mut s: __m128i, data: &[u8]) -> __m128i {
        let bswap = load(&BSWAP);
        let hp: [__m128i; 8] = std::array::from_fn(|i| load(&keys.h[8 + i]));
        let mut chunks = data.chunks_exact(128);
        for c in &mut chunks {
            let z = _mm_setzero_si128();
            let mut acc = [z, z, z];
            for (i, h) in hp.iter().enumerate() {
                let mut x = _mm_shuffle_epi8(load_at(c, 16 * i), bswap);
                if i == 0 {
                    x = _mm_xor_si128(x, s);
                }
                mul_acc(x, *h, &mut acc);
            }
            s = reduce(acc);
        }
        let rest = chunks.remainder();
        if rest.is_empty() {
            return s;
        }
        let mut buf = [0u8; 128];
        buf[..rest.len()].copy_from_slice(rest);
        let n = rest.len().div_ceil(16);
        let z = _mm_setzero_si128();
        let mut acc = [z, z, z];
        for i in 0..n {
            let mut x = _mm_shuffle_epi8(load_at(&buf, 16 * i), bswap);
            if i == 0 {
                x = _mm_xor_si128(x, s);
            }
            mul_acc(x, load(&keys.h[16 - n + i]), &mut acc);
        }
        buf.zeroize();
        reduce(acc)
    }

    /// AES-256-CTR over `data` from counter `ctr` (see [`ctr_start`]), 8 blocks at a time.
    #[target_feature(enable = "aes,sse2,ssse3,sse4.1")]
    fn ctr_ni(rk: &[__m128i; 15], ctr: __m128i, data: &mut [u8]) {
        let swap = load(&CTR_SWAP);
        let mut ctr = ctr;
        let mut chunks = data.chunks_exact_mut(128);
        for c in &mut chunks {
            let mut b: [__m128i; 8] = std::array::from_fn(|i| {
                let ci = _mm_add_epi32(ctr, _mm_set_epi32(i as i32, 0, 0, 0));
                _mm_xor_si128(_mm_shuffle_epi8(ci, swap), rk[0])
            });
            ctr = _mm_add_epi32(ctr, _mm_set_epi32(8, 0, 0, 0));
            for k in &rk[1..14] {
                for x in &mut b {
                    *x = _mm_aesenc_si128(*x, *k);
                }
            }
            for (i, x) in b.iter().enumerate() {
                let ks = _mm_aesenclast_si128(*x, rk[14]);
                store_at(c, 16 * i, _mm_xor_si128(load_at(c, 16 * i), ks));
            }
        }
        let rest = chunks.into_remainder();
        if rest.is_empty() {
            return;
        }
        let mut buf = [0u8; 128];
        buf[..rest.len()].copy_from_slice(rest);
        let n = rest.len().div_ceil(16);
        for i in 0..n {
            let ci = _mm_add_epi32(ctr, _mm_set_epi32(i as i32, 0, 0, 0));
            let ks = aes_enc1(rk, _mm_shuffle_epi8(ci, swap));
            let x = _mm_xor_si128(load_at(&buf, 16 * i), ks);
            store_at(&mut buf, 16 * i, x);
        }
        let len = rest.len();
        rest.copy_from_slice(&buf[..len]);
        buf.zeroize();
    }

    #[target_feature(enable = "aes,pclmulqdq,sse2,ssse3,sse4.1")]
    fn encrypt_ni(keys: &Keys, iv: &[u8; 8], aad: &[u8; AAD_LEN], p: &mut [u8]) -> [u8; 16] {
        let s = dot(aad_block(aad), load(&keys.h[15]));
        let s = ghash_ni(keys, s, p);
        let t8 = finish_gmac(keys, s, iv, p.len());
        let b = seal_tag(keys, iv, &t8);
        ctr_ni(&round_keys(&keys.k1), ctr_start(&b), p);
        b
    }

    #[target_feature(enable = "aes,pclmulqdq,sse2,ssse3,sse4.1")]
    fn decrypt_ni(
        keys: &Keys,
        tag: &[u8; 16],
        aad: &[u8; AAD_LEN],
        p: &mut [u8],
    ) -> ([u8; 16], [u8; 8]) {
        ctr_ni(&round_keys(&keys.k1), ctr_start(tag), p);
        let x = open_tag(keys, tag);
        let iv: [u8; 8] = x[..8].try_into().expect("8 bytes");
        let s = dot(aad_block(aad), load(&keys.h[15]));
        let s = ghash_ni(keys, s, p);
        (x, finish_gmac(keys, s, &iv, p.len()))
    }

    #[target_feature(enable = "aes,sse2,ssse3,sse4.1")]
    fn ctr_ni_entry(keys: &Keys, tag: &[u8; 16], p: &mut [u8]) {
        ctr_ni(&round_keys(&keys.k1), ctr_start(tag), p);
    }

    // ---------------------------------------------------------------------------------------
    // 512-bit kernels (VAES, VPCLMULQDQ, AVX-512F/BW)

    #[inline]
    #[target_feature(enable = "avx512f")]
    fn load512(s: &[u8], off: usize) -> __m512i {
        let b: &[u8; 64] = s[off..off + 64].try_into().expect("64 bytes");
        // SAFETY: 64 readable bytes; unaligned load.
        unsafe { _mm512_loadu_si512(b.as_ptr().cast()) }
    }

    #[inline]
    #[target_feature(enable = "avx512f")]
    fn store512(s: &mut [u8], off: usize, v: __m512i) {
        let b: &mut [u8; 64] = (&mut s[off..off + 64]).try_into().expect("64 bytes");
        // SAFETY: 64 writable bytes; unaligned store.
        unsafe { _mm512_storeu_si512(b.as_mut_ptr().cast(), v) }
    }

    /// Loads the first `len` (< 64) bytes at `s[off..]`, zeroing the rest of the register.
    #[inline]
    #[target_feature(enable = "avx512f,avx512bw")]
    fn load512_partial(s: &[u8], off: usize, len: usize) -> __m512i {
        let b = &s[off..off + len];
        let mask: __mmask64 = if len >= 64 { !0 } else { (1u64 << len) - 1 };
        // SAFETY: only the `len` bytes of `b` are read (masked-off bytes are not accessed and
        // cannot fault).
        unsafe { _mm512_maskz_loadu_epi8(mask, b.as_ptr().cast()) }
    }

    /// Stores the first `len` (< 64) bytes of `v` at `s[off..]`.
    #[inline]
    #[target_feature(enable = "avx512f,avx512bw")]
    fn store512_partial(s: &mut [u8], off: usize, len: usize, v: __m512i) {
        let b = &mut s[off..off + len];
        let mask: __mmask64 = if len >= 64 { !0 } else { (1u64 << len) - 1 };
        // SAFETY: only the `len` bytes of `b` are written.
        unsafe { _mm512_mask_storeu_epi8(b.as_mut_ptr().cast(), mask, v) }
    }

    /// Four consecutive entries of the power table, from `i`.
    #[inline]
    #[target_feature(enable = "avx512f")]
    fn powers512(keys: &Keys, i: usize) -> __m512i {
        let p = keys.h[i..i + 4].as_flattened();
        load512(p, 0)
    }

    #[inline]
    #[target_feature(enable = "avx512f,vpclmulqdq")]
    fn mul_acc512(a: __m512i, b: __m512i, acc: &mut [__m512i; 3]) {
        acc[0] = _mm512_xor_si512(acc[0], _mm512_clmulepi64_epi128::<0x00>(a, b));
        acc[1] = _mm512_ternarylogic_epi64::<0x96>(
            acc[1],
            _mm512_clmulepi64_epi128::<0x01>(a, b),
            _mm512_clmulepi64_epi128::<0x10>(a, b),
        );
        acc[2] = _mm512_xor_si512(acc[2], _mm512_clmulepi64_epi128::<0x11>(a, b));
    }

    /// XOR of the four 128-bit lanes.
    #[inline]
    #[target_feature(enable = "avx512f,avx2")]
    fn hxor512(v: __m512i) -> __m128i {
        let y = _mm256_xor_si256(_mm512_castsi512_si256(v), _mm512_extracti64x4_epi64::<1>(v));
        _mm_xor_si128(_mm256_castsi256_si128(y), _mm256_extracti128_si256::<1>(y))
    }

    #[inline]
    #[target_feature(enable = "avx512f,avx2,pclmulqdq")]
    fn reduce512(acc: [__m512i; 3]) -> __m128i {
        reduce([hxor512(acc[0]), hxor512(acc[1]), hxor512(acc[2])])
    }

    #[inline]
    #[target_feature(enable = "avx512f")]
    fn zero3() -> [__m512i; 3] {
        let z = _mm512_setzero_si512();
        [z, z, z]
    }

    /// GHASH of the last `rem` (< 256) bytes at `data[off..]`, zero-padded, from `s`: one
    /// aggregated group of up to 16 blocks with masked loads.
    #[inline]
    #[target_feature(
        enable = "aes,pclmulqdq,sse2,ssse3,sse4.1,avx,avx2,avx512f,avx512bw,vaes,vpclmulqdq"
    )]
    fn ghash_tail512(keys: &Keys, s: __m128i, data: &[u8], off: usize) -> __m128i {
        let rem = data.len() - off;
        if rem == 0 {
            return s;
        }
        let bswap = _mm512_broadcast_i32x4(load(&BSWAP));
        let n = rem.div_ceil(16);
        let mut acc = zero3();
        let mut g = 0;
        while 64 * g < rem {
            let len = (rem - 64 * g).min(64);
            let mut x = _mm512_shuffle_epi8(load512_partial(data, off + 64 * g, len), bswap);
            if g == 0 {
                x = _mm512_xor_si512(x, _mm512_zextsi128_si512(s));
            }
            mul_acc512(x, powers512(keys, 16 - n + 4 * g), &mut acc);
            g += 1;
        }
        reduce512(acc)
    }

    /// GHASH of `data` (zero-padded) from `s`, 16 blocks per reduction.
    #[target_feature(
        enable = "aes,pclmulqdq,sse2,ssse3,sse4.1,avx,avx2,avx512f,avx512bw,vaes,vpclmulqdq"
    )]
    fn ghash512(keys: &Keys, mut s: __m128i, data: &[u8]) -> __m128i {
        let bswap = _mm512_broadcast_i32x4(load(&BSWAP));
        let hp: [__m512i; 4] = std::array::from_fn(|i| powers512(keys, 4 * i));
        let mut off = 0;
        while data.len() - off >= 256 {
            let mut acc = zero3();
            for (i, h) in hp.iter().enumerate() {
                let mut x = _mm512_shuffle_epi8(load512(data, off + 64 * i), bswap);
                if i == 0 {
                    x = _mm512_xor_si512(x, _mm512_zextsi128_si512(s));
                }
                mul_acc512(x, *h, &mut acc);
            }
            s = reduce512(acc);
            off += 256;
        }
        ghash_tail512(keys, s, data, off)
    }

    /// Round keys broadcast to all four lanes.
    #[inline]
    #[target_feature(enable = "avx512f")]
    fn round_keys512(k: &[[u8; 16]; 15]) -> [__m512i; 15] {
        std::array::from_fn(|i| _mm512_broadcast_i32x4(load(&k[i])))
    }

    /// Four keystream registers (16 blocks) from the little-endian counters `c` (lane `j` of
    /// register `i` holds counter `ctr + 4i + j`).
    #[inline]
    #[target_feature(enable = "aes,sse2,avx,avx2,avx512f,avx512bw,vaes")]
    fn keystream512<const N: usize>(
        rk: &[__m512i; 15],
        c: [__m512i; N],
        swap: __m512i,
    ) -> [__m512i; N] {
        let mut b: [__m512i; N] =
            std::array::from_fn(|i| _mm512_xor_si512(_mm512_shuffle_epi8(c[i], swap), rk[0]));
        for k in &rk[1..14] {
            for x in &mut b {
                *x = _mm512_aesenc_epi128(*x, *k);
            }
        }
        for x in &mut b {
            *x = _mm512_aesenclast_epi128(*x, rk[14]);
        }
        b
    }

    /// CTR state for the 512-bit kernels: counters for lanes 0..4 and the step constants.
    struct Ctr512 {
        rk: [__m512i; 15],
        next: __m512i,
        swap: __m512i,
    }

    impl Ctr512 {
        #[inline]
        #[target_feature(enable = "sse2,ssse3,avx512f")]
        fn new(keys: &Keys, tag: &[u8; 16]) -> Ctr512 {
            let base = _mm512_broadcast_i32x4(ctr_start(tag));
            Ctr512 {
                rk: round_keys512(&keys.k1),
                next: _mm512_add_epi32(
                    base,
                    _mm512_set_epi32(3, 0, 0, 0, 2, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0),
                ),
                swap: _mm512_broadcast_i32x4(load(&CTR_SWAP)),
            }
        }

        /// Keystream for the next `4·N` blocks.
        #[inline]
        #[target_feature(enable = "aes,sse2,avx,avx2,avx512f,avx512bw,vaes")]
        fn blocks<const N: usize>(&mut self) -> [__m512i; N] {
            let four = _mm512_set_epi32(4, 0, 0, 0, 4, 0, 0, 0, 4, 0, 0, 0, 4, 0, 0, 0);
            let mut c = self.next;
            let cs: [__m512i; N] = std::array::from_fn(|_| {
                let x = c;
                c = _mm512_add_epi32(c, four);
                x
            });
            self.next = c;
            keystream512(&self.rk, cs, self.swap)
        }

        /// CTR over `data[off..]` (any length): 32 blocks per iteration (eight independent
        /// registers keep VAES busy through its latency), then one batch for the rest.
        #[target_feature(enable = "aes,sse2,ssse3,sse4.1,avx,avx2,avx512f,avx512bw,vaes")]
        fn apply(&mut self, data: &mut [u8], mut off: usize) {
            while data.len() - off >= 512 {
                let ks = self.blocks::<8>();
                for (i, k) in ks.iter().enumerate() {
                    let o = off + 64 * i;
                    store512(data, o, _mm512_xor_si512(load512(data, o), *k));
                }
                off += 512;
            }
            let rem = data.len() - off;
            if rem > 256 {
                let ks = self.blocks::<8>();
                tail512(&ks, data, off);
            } else if rem > 0 {
                let ks = self.blocks::<4>();
                tail512(&ks, data, off);
            }
        }
    }

    /// XORs the keystream `ks` into the last `data.len() - off` bytes (at most `64·N`).
    #[inline]
    #[target_feature(enable = "avx512f,avx512bw")]
    fn tail512<const N: usize>(ks: &[__m512i; N], data: &mut [u8], off: usize) {
        let rem = data.len() - off;
        for (i, k) in ks.iter().enumerate() {
            if 64 * i >= rem {
                break;
            }
            let (o, len) = (off + 64 * i, (rem - 64 * i).min(64));
            let x = _mm512_xor_si512(load512_partial(data, o, len), *k);
            store512_partial(data, o, len, x);
        }
    }

    #[target_feature(
        enable = "aes,pclmulqdq,sse2,ssse3,sse4.1,avx,avx2,avx512f,avx512bw,vaes,vpclmulqdq"
    )]
    fn encrypt_vaes512(keys: &Keys, iv: &[u8; 8], aad: &[u8; AAD_LEN], p: &mut [u8]) -> [u8; 16] {
        let s = dot(aad_block(aad), load(&keys.h[15]));
        let s = ghash512(keys, s, p);
        let t8 = finish_gmac(keys, s, iv, p.len());
        let b = seal_tag(keys, iv, &t8);
        Ctr512::new(keys, &b).apply(p, 0);
        b
    }

    /// One pass: each 256-byte chunk is decrypted and hashed while in registers.
    #[target_feature(
        enable = "aes,pclmulqdq,sse2,ssse3,sse4.1,avx,avx2,avx512f,avx512bw,vaes,vpclmulqdq"
    )]
    fn decrypt_vaes512(
        keys: &Keys,
        tag: &[u8; 16],
        aad: &[u8; AAD_LEN],
        p: &mut [u8],
    ) -> ([u8; 16], [u8; 8]) {
        let mut ctr = Ctr512::new(keys, tag);
        let bswap = _mm512_broadcast_i32x4(load(&BSWAP));
        let hp: [__m512i; 4] = std::array::from_fn(|i| powers512(keys, 4 * i));
        let mut s = dot(aad_block(aad), load(&keys.h[15]));
        // Decrypts 256 bytes at `p[off..]` with `ks` and hashes the plaintext into `s`.
        let group = |p: &mut [u8], off: usize, ks: &[__m512i], s: __m128i| -> __m128i {
            let mut acc = zero3();
            for (i, k) in ks.iter().enumerate() {
                let o = off + 64 * i;
                let plain = _mm512_xor_si512(load512(p, o), *k);
                store512(p, o, plain);
                let mut x = _mm512_shuffle_epi8(plain, bswap);
                if i == 0 {
                    x = _mm512_xor_si512(x, _mm512_zextsi128_si512(s));
                }
                mul_acc512(x, hp[i], &mut acc);
            }
            reduce512(acc)
        };
        let mut off = 0;
        // 32 blocks of keystream in flight per iteration, hashed as two 16-block groups.
        while p.len() - off >= 512 {
            let ks = ctr.blocks::<8>();
            s = group(p, off, &ks[..4], s);
            s = group(p, off + 256, &ks[4..], s);
            off += 512;
        }
        if p.len() - off >= 256 {
            let ks = ctr.blocks::<4>();
            s = group(p, off, &ks, s);
            off += 256;
        }
        ctr.apply(p, off);
        let s = ghash_tail512(keys, s, p, off);
        let x = open_tag(keys, tag);
        let iv: [u8; 8] = x[..8].try_into().expect("8 bytes");
        (x, finish_gmac(keys, s, &iv, p.len()))
    }

    #[target_feature(enable = "aes,sse2,ssse3,sse4.1,avx,avx2,avx512f,avx512bw,vaes")]
    fn ctr_vaes512_entry(keys: &Keys, tag: &[u8; 16], p: &mut [u8]) {
        Ctr512::new(keys, tag).apply(p, 0);
    }

    // ---------------------------------------------------------------------------------------
    // 256-bit kernels (VAES, VPCLMULQDQ, AVX2); tails go to the 128-bit code.

    #[inline]
    #[target_feature(enable = "avx")]
    fn load256(s: &[u8], off: usize) -> __m256i {
        let b: &[u8; 32] = s[off..off + 32].try_into().expect("32 bytes");
        // SAFETY: 32 readable bytes; unaligned load.
        unsafe { _mm256_loadu_si256(b.as_ptr().cast()) }
    }

    #[inline]
    #[target_feature(enable = "avx")]
    fn store256(s: &mut [u8], off: usize, v: __m256i) {
        let b: &mut [u8; 32] = (&mut s[off..off + 32]).try_into().expect("32 bytes");
        // SAFETY: 32 writable bytes; unaligned store.
        unsafe { _mm256_storeu_si256(b.as_mut_ptr().cast(), v) }
    }

    #[inline]
    #[target_feature(enable = "avx2,vpclmulqdq")]
    fn mul_acc256(a: __m256i, b: __m256i, acc: &mut [__m256i; 3]) {
        acc[0] = _mm256_xor_si256(acc[0], _mm256_clmulepi64_epi128::<0x00>(a, b));
        acc[1] = _mm256_xor_si256(
            acc[1],
            _mm256_xor_si256(
                _mm256_clmulepi64_epi128::<0x01>(a, b),
                _mm256_clmulepi64_epi128::<0x10>(a, b),
            ),
        );
        acc[2] = _mm256_xor_si256(acc[2], _mm256_clmulepi64_epi128::<0x11>(a, b));
    }

    #[inline]
    #[target_feature(enable = "avx2,pclmulqdq")]
    fn reduce256(acc: [__m256i; 3]) -> __m128i {
        let h =
            |v: __m256i| _mm_xor_si128(_mm256_castsi256_si128(v), _mm256_extracti128_si256::<1>(v));
        reduce([h(acc[0]), h(acc[1]), h(acc[2])])
    }

    #[inline]
    #[target_feature(enable = "avx")]
    fn powers256(keys: &Keys, i: usize) -> __m256i {
        load256(keys.h[i..i + 2].as_flattened(), 0)
    }

    /// GHASH 8 blocks (four 256-bit registers, already byte-reversed) from `s`.
    #[inline]
    #[target_feature(enable = "pclmulqdq,sse2,avx,avx2,vpclmulqdq")]
    fn ghash8_256(s: __m128i, x: [__m256i; 4], hp: &[__m256i; 4]) -> __m128i {
        let z = _mm256_setzero_si256();
        let mut acc = [z, z, z];
        for (i, (x, h)) in x.into_iter().zip(hp).enumerate() {
            let x = if i == 0 {
                _mm256_xor_si256(x, _mm256_zextsi128_si256(s))
            } else {
                x
            };
            mul_acc256(x, *h, &mut acc);
        }
        reduce256(acc)
    }

    #[target_feature(enable = "aes,pclmulqdq,sse2,ssse3,sse4.1,avx,avx2,vaes,vpclmulqdq")]
    fn ghash256(keys: &Keys, mut s: __m128i, data: &[u8]) -> __m128i {
        let bswap = _mm256_broadcastsi128_si256(load(&BSWAP));
        let hp: [__m256i; 4] = std::array::from_fn(|i| powers256(keys, 8 + 2 * i));
        let mut chunks = data.chunks_exact(128);
        for c in &mut chunks {
            let x: [__m256i; 4] =
                std::array::from_fn(|i| _mm256_shuffle_epi8(load256(c, 32 * i), bswap));
            s = ghash8_256(s, x, &hp);
        }
        ghash_ni(keys, s, chunks.remainder())
    }

    /// CTR over whole 128-byte chunks of `data` (returns the bytes done); the caller finishes
    /// with [`ctr_ni`] from the returned counter.
    struct Ctr256 {
        rk: [__m256i; 15],
        next: __m256i,
        swap: __m256i,
    }

    impl Ctr256 {
        #[inline]
        #[target_feature(enable = "sse2,ssse3,avx,avx2")]
        fn new(keys: &Keys, tag: &[u8; 16]) -> Ctr256 {
            let base = _mm256_broadcastsi128_si256(ctr_start(tag));
            Ctr256 {
                rk: std::array::from_fn(|i| _mm256_broadcastsi128_si256(load(&keys.k1[i]))),
                next: _mm256_add_epi32(base, _mm256_set_epi32(1, 0, 0, 0, 0, 0, 0, 0)),
                swap: _mm256_broadcastsi128_si256(load(&CTR_SWAP)),
            }
        }

        /// Keystream for the next `2·N` blocks.
        #[inline]
        #[target_feature(enable = "aes,sse2,avx,avx2,vaes")]
        fn blocks<const N: usize>(&mut self) -> [__m256i; N] {
            let two = _mm256_set_epi32(2, 0, 0, 0, 2, 0, 0, 0);
            let mut c = self.next;
            let mut b: [__m256i; N] = std::array::from_fn(|_| {
                let x = _mm256_xor_si256(_mm256_shuffle_epi8(c, self.swap), self.rk[0]);
                c = _mm256_add_epi32(c, two);
                x
            });
            self.next = c;
            for k in &self.rk[1..14] {
                for x in &mut b {
                    *x = _mm256_aesenc_epi128(*x, *k);
                }
            }
            for x in &mut b {
                *x = _mm256_aesenclast_epi128(*x, self.rk[14]);
            }
            b
        }

        /// The 128-bit counter of the next block.
        #[inline]
        #[target_feature(enable = "avx2")]
        fn next128(&self) -> __m128i {
            _mm256_castsi256_si128(self.next)
        }
    }

    #[target_feature(enable = "aes,sse2,ssse3,sse4.1,avx,avx2,vaes")]
    fn ctr256(keys: &Keys, tag: &[u8; 16], data: &mut [u8]) {
        let mut ctr = Ctr256::new(keys, tag);
        // 16 blocks (eight registers) in flight, then at most one 8-block step.
        let mut chunks = data.chunks_exact_mut(256);
        for c in &mut chunks {
            let ks = ctr.blocks::<8>();
            for (i, k) in ks.iter().enumerate() {
                store256(c, 32 * i, _mm256_xor_si256(load256(c, 32 * i), *k));
            }
        }
        let mut rest = chunks.into_remainder();
        if rest.len() >= 128 {
            let ks = ctr.blocks::<4>();
            for (i, k) in ks.iter().enumerate() {
                store256(rest, 32 * i, _mm256_xor_si256(load256(rest, 32 * i), *k));
            }
            rest = &mut rest[128..];
        }
        ctr_ni(&round_keys(&keys.k1), ctr.next128(), rest);
    }

    #[target_feature(enable = "aes,pclmulqdq,sse2,ssse3,sse4.1,avx,avx2,vaes,vpclmulqdq")]
    fn encrypt_vaes256(keys: &Keys, iv: &[u8; 8], aad: &[u8; AAD_LEN], p: &mut [u8]) -> [u8; 16] {
        let s = dot(aad_block(aad), load(&keys.h[15]));
        let s = ghash256(keys, s, p);
        let t8 = finish_gmac(keys, s, iv, p.len());
        let b = seal_tag(keys, iv, &t8);
        ctr256(keys, &b, p);
        b
    }

    /// One pass over whole 128-byte chunks, then the 128-bit tail.
    #[target_feature(enable = "aes,pclmulqdq,sse2,ssse3,sse4.1,avx,avx2,vaes,vpclmulqdq")]
    fn decrypt_vaes256(
        keys: &Keys,
        tag: &[u8; 16],
        aad: &[u8; AAD_LEN],
        p: &mut [u8],
    ) -> ([u8; 16], [u8; 8]) {
        let mut ctr = Ctr256::new(keys, tag);
        let bswap = _mm256_broadcastsi128_si256(load(&BSWAP));
        let hp: [__m256i; 4] = std::array::from_fn(|i| powers256(keys, 8 + 2 * i));
        let mut s = dot(aad_block(aad), load(&keys.h[15]));
        let mut chunks = p.chunks_exact_mut(128);
        for c in &mut chunks {
            let ks = ctr.blocks::<4>();
            let x: [__m256i; 4] = std::array::from_fn(|i| {
                let plain = _mm256_xor_si256(load256(c, 32 * i), ks[i]);
                store256(c, 32 * i, plain);
                _mm256_shuffle_epi8(plain, bswap)
            });
            s = ghash8_256(s, x, &hp);
        }
        let rest = chunks.into_remainder();
        ctr_ni(&round_keys(&keys.k1), ctr.next128(), rest);
        let s = ghash_ni(keys, s, rest);
        let x = open_tag(keys, tag);
        let iv: [u8; 8] = x[..8].try_into().expect("8 bytes");
        (x, finish_gmac(keys, s, &iv, p.len()))
    }

    #[target_feature(enable = "aes,sse2,ssse3,sse4.1,avx,avx2,vaes")]
    fn ctr_vaes256_entry(keys: &Keys, tag: &[u8; 16], p: &mut [u8]) {
        ctr256(keys, tag, p);
    }
}

#[cfg(test)]
mod tests {
    use aes_gcm::aead::AeadInPlace;
    use aes_gcm::{Aes256Gcm, KeyInit as _, Nonce};
    use rand_core::{OsRng, RngCore};

    use super::*;

    /// An independent reference: the spec's "equivalently" form of the GMAC (AES-256-GCM with
    /// K0, nonce `IV ‖ 0⁴`, AAD = `AAD ‖ 00×5 ‖ P`, empty plaintext), `aes` for the tag block
    /// and `ctr` for the stream. spec: vl1.md §3.4 step 2
    fn reference_encrypt(
        k0: &[u8; 32],
        k1: &[u8; 32],
        iv: &[u8; 8],
        aad: &[u8; AAD_LEN],
        payload: &mut [u8],
    ) -> [u8; 16] {
        let gcm = Aes256Gcm::new(k0.into());
        let mut nonce = [0u8; 12];
        nonce[..8].copy_from_slice(iv);
        let mut ad = aad.to_vec();
        ad.extend_from_slice(&[0u8; 5]);
        ad.extend_from_slice(payload);
        let t: [u8; 16] = gcm
            .encrypt_in_place_detached(Nonce::from_slice(&nonce), &ad, &mut [])
            .expect("gcm")
            .into();
        let mut b = [0u8; 16];
        b[..8].copy_from_slice(iv);
        b[8..].copy_from_slice(&fold8(&t));
        let k1c = Aes256::new(k1.into());
        k1c.encrypt_block((&mut b).into());
        let mut c = b;
        c[12] &= 0x7f;
        let core = ctr::CtrCore::<Aes256, ctr::flavors::Ctr32BE>::inner_iv_init(k1c, (&c).into());
        ctr::Ctr32BE::<Aes256>::from_core(core).apply_keystream(payload);
        b
    }

    fn random<const N: usize>() -> [u8; N] {
        let mut b = [0u8; N];
        OsRng.fill_bytes(&mut b);
        b
    }

    fn backends() -> Vec<Backend> {
        let b: Vec<Backend> = Backend::ALL
            .into_iter()
            .filter(|b| b.is_supported())
            .collect();
        eprintln!("backends on this CPU: {b:?}");
        b
    }

    /// Every length 0..=600 and a spread of longer ones up to 10,000 bytes.
    fn lengths() -> Vec<usize> {
        let mut l: Vec<usize> = (0..=600).collect();
        l.extend([
            1023, 1024, 1025, 1373, 1400, 1500, 2047, 2048, 2773, 2800, 4095, 4096, 4097, 8191,
            9000, 9999, 10_000,
        ]);
        l
    }

    #[test]
    fn unsupported_backends_are_refused() {
        for b in Backend::ALL {
            let c = AesGmacSiv::with_backend(b, &[1; 32], &[2; 32]);
            assert_eq!(c.is_some(), b.is_supported(), "{b:?}");
            if let Some(c) = c {
                assert_eq!(c.backend(), b);
            }
        }
        assert_eq!(
            AesGmacSiv::new(&[1; 32], &[2; 32]).backend(),
            Backend::best()
        );
        assert!(Backend::Portable.is_supported());
    }

    #[test]
    fn every_backend_matches_the_reference() {
        let backends = backends();
        let mut cases = 0;
        for len in lengths() {
            let (k0, k1, iv, aad) = (
                random::<32>(),
                random::<32>(),
                random::<8>(),
                random::<11>(),
            );
            let mut plain = vec![0u8; len];
            OsRng.fill_bytes(&mut plain);
            let mut want = plain.clone();
            let want_tag = reference_encrypt(&k0, &k1, &iv, &aad, &mut want);
            for &b in &backends {
                let c = AesGmacSiv::with_backend(b, &k0, &k1).expect("supported");
                let mut got = plain.clone();
                let tag = c.encrypt(&iv, &aad, &mut got);
                assert_eq!(tag, want_tag, "{b:?} tag, len {len}");
                assert_eq!(got, want, "{b:?} ciphertext, len {len}");
                assert_eq!(c.decrypt(&tag, &aad, &mut got), Some(iv), "{b:?} len {len}");
                assert_eq!(got, plain, "{b:?} round trip, len {len}");
                cases += 1;
            }
        }
        assert_eq!(cases, lengths().len() * backends.len());
        eprintln!("{cases} cases");
    }

    #[test]
    fn flipped_bits_fail_and_restore_puts_the_ciphertext_back() {
        let backends = backends();
        let mut cases = 0;
        for len in [0usize, 1, 15, 16, 17, 63, 64, 65, 255, 256, 257, 1373, 2773] {
            let (k0, k1, iv, aad) = (
                random::<32>(),
                random::<32>(),
                random::<8>(),
                random::<11>(),
            );
            let mut plain = vec![0u8; len];
            OsRng.fill_bytes(&mut plain);
            for &b in &backends {
                let c = AesGmacSiv::with_backend(b, &k0, &k1).expect("supported");
                let mut ct = plain.clone();
                let tag = c.encrypt(&iv, &aad, &mut ct);
                // A flipped payload bit, at the start, the middle and the end.
                for bit in [0, len * 4, (len * 8).saturating_sub(1)] {
                    if len == 0 {
                        break;
                    }
                    let mut bad = ct.clone();
                    bad[bit / 8] ^= 1 << (bit % 8);
                    let flipped = bad.clone();
                    assert_eq!(
                        c.decrypt(&tag, &aad, &mut bad),
                        None,
                        "{b:?} len {len} bit {bit}"
                    );
                    c.restore(&tag, &mut bad);
                    assert_eq!(bad, flipped, "{b:?} restore, len {len}");
                    cases += 1;
                }
                // A flipped tag bit (either half) and a flipped AAD bit.
                for bit in [3usize, 77, 127] {
                    let mut bad_tag = tag;
                    bad_tag[bit / 8] ^= 1 << (bit % 8);
                    let mut p = ct.clone();
                    assert_eq!(
                        c.decrypt(&bad_tag, &aad, &mut p),
                        None,
                        "{b:?} tag bit {bit}"
                    );
                    cases += 1;
                }
                let mut bad_aad = aad;
                bad_aad[10] ^= 0x40;
                let mut p = ct.clone();
                assert_eq!(c.decrypt(&tag, &bad_aad, &mut p), None, "{b:?} aad");
                c.restore(&tag, &mut p);
                assert_eq!(p, ct, "{b:?} restore after bad aad");
                cases += 1;
            }
        }
        eprintln!("{cases} cases");
        assert!(cases >= 13 * backends.len() * 4);
    }

    #[test]
    fn clones_and_shared_keys_agree() {
        for b in backends() {
            let c = AesGmacSiv::with_backend(b, &[7; 32], &[9; 32]).expect("supported");
            let d = c.clone();
            drop(c);
            let mut p = vec![0x5au8; 1400];
            let tag = d.encrypt(&[1; 8], &[2; 11], &mut p);
            let mut q = vec![0x5au8; 1400];
            let want = reference_encrypt(&[7; 32], &[9; 32], &[1; 8], &[2; 11], &mut q);
            assert_eq!((tag, p), (want, q), "{b:?}");
        }
    }

    /// spec: vl1.md Appendix A, cipher 3 (ECHO from A to B, IV 010203040506070a).
    #[test]
    fn spec_appendix_a_cipher3() {
        let k0: [u8; 32] = hex("e519db156252f7464e6c32aba0618751ce496d395a6ea9e55c348161d390487b");
        let k1: [u8; 32] = hex("98905c04b53ddb5432528cc3ee286dd50dc05697880205574ff6776d2e10bba4");
        let payload =
            b"The quick brown fox jumps over the lazy dog -- ZeroTier VL1 test payload 0123456789";
        let armored = hex_vec(
            "f2ba87d9739f56ea555b5031f82f52c8fb18186dd8fcbe03748409a7a30bff3cac44ba482f2badd7e617557e3de014f8145d7e169d8f70864877da4c8b9dbf1970125d3deb571a3fdbec91e8b3496ba2434e85b0b9f819ec7b929073b269b70226b078e830f5650d900528990e90bf",
        );
        let iv = [1, 2, 3, 4, 5, 6, 7, 0x0a];
        // Header: destination 555b5031f8, source 2f52c8fb18, flags 0x18 (cipher 3, 0 hops).
        let mut aad = [0u8; AAD_LEN];
        aad.copy_from_slice(&armored[8..19]);
        assert_eq!(aad[10], 0x18);
        for b in backends() {
            let c = AesGmacSiv::with_backend(b, &k0, &k1).expect("supported");
            // P = verb byte (ECHO = 0x08) ‖ payload.
            let mut p = vec![0x08];
            p.extend_from_slice(payload);
            let tag = c.encrypt(&iv, &aad, &mut p);
            assert_eq!(tag[..8], armored[..8], "{b:?}");
            assert_eq!(tag[8..], armored[19..27], "{b:?}");
            assert_eq!(p, armored[27..], "{b:?}");
            assert_eq!(c.decrypt(&tag, &aad, &mut p), Some(iv), "{b:?}");
            assert_eq!(p[0], 0x08);
            assert_eq!(&p[1..], payload);
        }
    }

    fn hex_vec(s: &str) -> Vec<u8> {
        (0..s.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&s[i..i + 2], 16).expect("hex"))
            .collect()
    }

    fn hex<const N: usize>(s: &str) -> [u8; N] {
        hex_vec(s).try_into().expect("length")
    }
}
