//! Salsa20/12 keystream, many blocks per pass. spec: vl1.md §3.2, §3.3
//!
//! The state is kept "word-sliced": for a pass of `W` blocks, state word `i` of all `W` blocks
//! sits in one vector (lane `j` = block `counter + j`), the 12 rounds run on those 16 vectors,
//! and a transpose turns them back into `W` consecutive 64-byte blocks that are XORed into the
//! data. Widths:
//!
//! - [`Backend::Avx512`]: 16 blocks (1 KiB) per pass in `zmm` registers (AVX-512F); passes for
//!   the last 8 or fewer blocks use the 8-block kernel with AVX-512VL's 256-bit rotate.
//! - [`Backend::Avx2`]: 8 blocks (512 bytes) per pass in `ymm` registers.
//! - [`Backend::Portable`]: one block per pass, scalar safe Rust (as fast as the `salsa20`
//!   crate; a 4-lane `[u32; 4]` version of the same code measured slower than scalar here).
//!
//! Every backend computes a request for a single block (the Poly1305 key of cipher 0) with the
//! scalar code: one block costs about as much as a whole 8-block vector pass.
//!
//! A pass that covers more than the caller asked for leaves the surplus keystream in a buffer,
//! which the next [`Salsa2012::apply_keystream`] call consumes first, so calls can split the
//! stream anywhere (the armor code takes block 0 for the Poly1305 key, then the rest).

use std::sync::atomic::{AtomicU8, Ordering};

/// "expand 32-byte k", the Salsa20 constants at words 0, 5, 10, 15.
const SIGMA: [u32; 4] = [0x6170_7865, 0x3320_646e, 0x7962_2d32, 0x6b20_6574];
/// Bytes per Salsa20 block.
const BLOCK: usize = 64;
/// Widest pass (AVX-512): 16 blocks.
const MAX_PASS: usize = 16 * BLOCK;

/// Which keystream kernel a [`Salsa2012`] runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Backend {
    /// Safe Rust, one block per pass.
    Portable,
    /// AVX2, 8 blocks per pass.
    Avx2,
    /// AVX-512F, 16 blocks per pass (8 with AVX-512VL for short tails).
    Avx512,
}

/// Cached result of [`Backend::detect`]: 0 = not yet detected, else `1 + index`.
static DETECTED: AtomicU8 = AtomicU8::new(0);

impl Backend {
    /// Every backend, fastest last.
    pub const ALL: [Backend; 3] = [Backend::Portable, Backend::Avx2, Backend::Avx512];

    /// The fastest backend this CPU supports (detected once per process, then cached).
    pub fn detect() -> Backend {
        match DETECTED.load(Ordering::Relaxed) {
            1 => Backend::Portable,
            2 => Backend::Avx2,
            3 => Backend::Avx512,
            _ => {
                let b = if Backend::Avx512.is_available() {
                    Backend::Avx512
                } else if Backend::Avx2.is_available() {
                    Backend::Avx2
                } else {
                    Backend::Portable
                };
                let code = match b {
                    Backend::Portable => 1,
                    Backend::Avx2 => 2,
                    Backend::Avx512 => 3,
                };
                DETECTED.store(code, Ordering::Relaxed);
                b
            }
        }
    }

    /// Whether this CPU can run the backend.
    pub fn is_available(self) -> bool {
        match self {
            Backend::Portable => true,
            #[cfg(target_arch = "x86_64")]
            Backend::Avx2 => std::arch::is_x86_feature_detected!("avx2"),
            #[cfg(target_arch = "x86_64")]
            Backend::Avx512 => {
                std::arch::is_x86_feature_detected!("avx512f")
                    && std::arch::is_x86_feature_detected!("avx512vl")
                    && std::arch::is_x86_feature_detected!("avx2")
            }
            #[cfg(not(target_arch = "x86_64"))]
            Backend::Avx2 | Backend::Avx512 => false,
        }
    }

    /// Blocks in the pass used when `blocks` more blocks are wanted.
    fn pass_blocks(self, blocks: usize) -> usize {
        match self {
            Backend::Portable => 1,
            _ if blocks == 1 => 1,
            Backend::Avx2 => 8,
            Backend::Avx512 if blocks > 8 => 16,
            Backend::Avx512 => 8,
        }
    }
}

/// A Salsa20 stream with 12 rounds, 256-bit key, 64-bit nonce, 64-bit block counter starting at
/// 0 (the `salsa20` crate's `Salsa12`, byte for byte).
pub struct Salsa2012 {
    /// Key, nonce and constants; words 8 and 9 (the counter) are not used, see `counter`.
    input: [u32; 16],
    /// The block number of the next pass.
    counter: u64,
    /// Keystream generated but not used yet: `buf[pos..len]`.
    buf: [u8; MAX_PASS],
    pos: usize,
    len: usize,
    backend: Backend,
}

impl std::fmt::Debug for Salsa2012 {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Salsa2012")
            .field("backend", &self.backend)
            .finish_non_exhaustive()
    }
}

impl Drop for Salsa2012 {
    fn drop(&mut self) {
        // The key words; the keystream left in `buf` belongs to this one message.
        zeroize::Zeroize::zeroize(&mut self.input);
    }
}

impl Salsa2012 {
    /// Starts a keystream at block 0 on the fastest backend of this CPU.
    pub fn new(key: &[u8; 32], iv: &[u8; 8]) -> Self {
        Self::build(Backend::detect(), key, iv)
    }

    /// Starts a keystream at block 0 on a given backend; `None` if this CPU lacks it.
    pub fn with_backend(backend: Backend, key: &[u8; 32], iv: &[u8; 8]) -> Option<Self> {
        backend
            .is_available()
            .then(|| Self::build(backend, key, iv))
    }

    fn build(backend: Backend, key: &[u8; 32], iv: &[u8; 8]) -> Self {
        let k = |i: usize| u32::from_le_bytes(key[4 * i..4 * i + 4].try_into().expect("4 bytes"));
        let n = |i: usize| u32::from_le_bytes(iv[4 * i..4 * i + 4].try_into().expect("4 bytes"));
        let input = [
            SIGMA[0],
            k(0),
            k(1),
            k(2),
            k(3),
            SIGMA[1],
            n(0),
            n(1),
            0,
            0,
            SIGMA[2],
            k(4),
            k(5),
            k(6),
            k(7),
            SIGMA[3],
        ];
        Salsa2012 {
            input,
            counter: 0,
            buf: [0; MAX_PASS],
            pos: 0,
            len: 0,
            backend,
        }
    }

    /// The kernel this stream runs.
    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// Returns the next 64 keystream bytes: block 0 when called first, as the armor code does
    /// for the Poly1305 key (spec: vl1.md §3.2 step 4). Advances the stream by 64 bytes.
    pub fn keystream_block0(&mut self) -> [u8; 64] {
        let mut b = [0u8; 64];
        self.apply_keystream(&mut b);
        b
    }

    /// XORs `data` with the next `data.len()` keystream bytes.
    pub fn apply_keystream(&mut self, data: &mut [u8]) {
        let mut data = data;
        if self.pos < self.len {
            let n = (self.len - self.pos).min(data.len());
            let (head, rest) = data.split_at_mut(n);
            xor(head, &self.buf[self.pos..self.pos + n]);
            self.pos += n;
            data = rest;
        }
        while !data.is_empty() {
            let w = self.backend.pass_blocks(data.len().div_ceil(BLOCK));
            let bytes = w * BLOCK;
            if data.len() >= bytes {
                let (head, rest) = data.split_at_mut(bytes);
                pass(self.backend, &self.input, self.counter, head);
                self.counter = self.counter.wrapping_add(w as u64);
                data = rest;
            } else {
                // Keep the surplus for the next call.
                self.buf[..bytes].fill(0);
                pass(
                    self.backend,
                    &self.input,
                    self.counter,
                    &mut self.buf[..bytes],
                );
                self.counter = self.counter.wrapping_add(w as u64);
                let n = data.len();
                xor(data, &self.buf[..n]);
                self.pos = n;
                self.len = bytes;
                return;
            }
        }
    }
}

/// XORs `data.len() / 64` blocks of keystream, from block `counter`, into `data` (64, 256, 512
/// or 1024 bytes as [`Backend::pass_blocks`] chose).
fn pass(backend: Backend, input: &[u32; 16], counter: u64, data: &mut [u8]) {
    match (backend, data.len()) {
        #[cfg(target_arch = "x86_64")]
        (Backend::Avx512, 1024) => x86::xor16(input, counter, data),
        #[cfg(target_arch = "x86_64")]
        #[cfg(target_arch = "x86_64")]
        (Backend::Avx512, 512) => x86::xor8(input, counter, data, true),
        #[cfg(target_arch = "x86_64")]
        (Backend::Avx2, 512) => x86::xor8(input, counter, data, false),
        _ => portable_xor::<1>(input, counter, data),
    }
}

fn xor(data: &mut [u8], ks: &[u8]) {
    for (d, k) in data.iter_mut().zip(ks) {
        *d ^= k;
    }
}

/// The block counters of lanes `0..N` starting at `counter`, split into low and high words.
fn counters<const N: usize>(counter: u64) -> ([u32; N], [u32; N]) {
    let mut lo = [0u32; N];
    let mut hi = [0u32; N];
    for j in 0..N {
        let c = counter.wrapping_add(j as u64);
        lo[j] = c as u32;
        hi[j] = (c >> 32) as u32;
    }
    (lo, hi)
}

/// One Salsa20 double round (column round, then row round) on the 16 state values `$x[i]`,
/// given the lane-wise add, xor and left-rotations by 7, 9, 13 and 18. The indices are literals
/// so that the state stays in registers; the four quarter-rounds of a half round are
/// independent and are interleaved step by step.
macro_rules! double_round {
    ($x:ident, $add:expr, $xor:expr, $r7:expr, $r9:expr, $r13:expr, $r18:expr) => {
        half_round!(
            $x,
            $add,
            $xor,
            $r7,
            $r9,
            $r13,
            $r18,
            [0, 4, 8, 12],
            [5, 9, 13, 1],
            [10, 14, 2, 6],
            [15, 3, 7, 11]
        );
        half_round!(
            $x,
            $add,
            $xor,
            $r7,
            $r9,
            $r13,
            $r18,
            [0, 1, 2, 3],
            [5, 6, 7, 4],
            [10, 11, 8, 9],
            [15, 12, 13, 14]
        );
    };
}

/// Four quarter-rounds `(a, b, c, d)`: `b ^= (a + d) <<< 7; c ^= (b + a) <<< 9;
/// d ^= (c + b) <<< 13; a ^= (d + c) <<< 18`.
macro_rules! half_round {
    ($x:ident, $add:expr, $xor:expr, $r7:expr, $r9:expr, $r13:expr, $r18:expr,
     $([$a:literal, $b:literal, $c:literal, $d:literal]),*) => {
        $( $x[$b] = $xor($x[$b], $r7($add($x[$a], $x[$d]))); )*
        $( $x[$c] = $xor($x[$c], $r9($add($x[$b], $x[$a]))); )*
        $( $x[$d] = $xor($x[$d], $r13($add($x[$c], $x[$b]))); )*
        $( $x[$a] = $xor($x[$a], $r18($add($x[$d], $x[$c]))); )*
    };
}

/// Salsa20/12 = 6 double rounds.
const DOUBLE_ROUNDS: usize = 6;

/// `N` blocks at once on `[u32; N]` lanes (`data` is `64 * N` bytes); used with `N = 1`, which
/// is plain scalar code.
fn portable_xor<const N: usize>(input: &[u32; 16], counter: u64, data: &mut [u8]) {
    debug_assert_eq!(data.len(), N * BLOCK);
    let mut x = [[0u32; N]; 16];
    for (xi, &v) in x.iter_mut().zip(input) {
        *xi = [v; N];
    }
    (x[8], x[9]) = counters::<N>(counter);
    let orig = x;
    let add =
        |a: [u32; N], b: [u32; N]| -> [u32; N] { std::array::from_fn(|l| a[l].wrapping_add(b[l])) };
    let xor = |a: [u32; N], b: [u32; N]| -> [u32; N] { std::array::from_fn(|l| a[l] ^ b[l]) };
    let rol = |a: [u32; N], r: u32| -> [u32; N] { a.map(|v| v.rotate_left(r)) };
    for _ in 0..DOUBLE_ROUNDS {
        double_round!(
            x,
            add,
            xor,
            |a| rol(a, 7),
            |a| rol(a, 9),
            |a| rol(a, 13),
            |a| rol(a, 18)
        );
    }
    for (block, chunk) in data.chunks_exact_mut(BLOCK).enumerate() {
        for (i, word) in chunk.chunks_exact_mut(4).enumerate() {
            let k = x[i][block].wrapping_add(orig[i][block]);
            let d = u32::from_le_bytes(word.try_into().expect("4 bytes")) ^ k;
            word.copy_from_slice(&d.to_le_bytes());
        }
    }
}

#[cfg(target_arch = "x86_64")]
#[allow(unsafe_code)]
mod x86 {
    //! The AVX2 and AVX-512 kernels. Loads and stores are unaligned and bounded by the slice
    //! length checks at the top of each safe wrapper.

    use std::arch::x86_64::*;

    use super::{DOUBLE_ROUNDS, counters};

    /// XORs 16 blocks of keystream into `data` (1024 bytes). Panics on another length or a CPU
    /// without AVX-512F (callers choose the backend through `Backend::is_available`).
    pub(super) fn xor16(input: &[u32; 16], counter: u64, data: &mut [u8]) {
        assert_eq!(data.len(), 1024);
        assert!(std::arch::is_x86_feature_detected!("avx512f"));
        // SAFETY: the CPU supports AVX-512F (checked above; std caches the detection), and
        // `data` is 1024 bytes, which `xor16_avx512` reads and writes in bounds.
        unsafe { xor16_avx512(input, counter, data.as_mut_ptr()) }
    }

    /// XORs 8 blocks of keystream into `data` (512 bytes). Panics on another length or a CPU
    /// without AVX2.
    ///
    /// With `vl` (the AVX-512 backend) the rounds use AVX-512VL's 256-bit rotate instead of two
    /// shifts and an or; panics if `vl` is set on a CPU without AVX-512F/VL.
    pub(super) fn xor8(input: &[u32; 16], counter: u64, data: &mut [u8], vl: bool) {
        assert_eq!(data.len(), 512);
        assert!(std::arch::is_x86_feature_detected!("avx2"));
        assert!(
            !vl || (std::arch::is_x86_feature_detected!("avx512f")
                && std::arch::is_x86_feature_detected!("avx512vl"))
        );
        // SAFETY: the CPU supports AVX2, and AVX-512F/VL when `vl` (checked above); `data` is
        // 512 bytes, which `xor8_avx2` reads and writes in bounds.
        unsafe { xor8_avx2(input, counter, data.as_mut_ptr(), vl) }
    }

    /// # Safety
    /// The CPU must support AVX-512F; `data` must be valid for reads and writes of 1024 bytes.
    #[target_feature(enable = "avx512f")]
    #[allow(clippy::needless_range_loop)] // block/word indices read better than zips here
    unsafe fn xor16_avx512(input: &[u32; 16], counter: u64, data: *mut u8) {
        let mut x = [_mm512_setzero_si512(); 16];
        for (xi, &v) in x.iter_mut().zip(input) {
            *xi = _mm512_set1_epi32(v as i32);
        }
        let (lo, hi) = counters::<16>(counter);
        // SAFETY: `lo` and `hi` are 64-byte arrays; unaligned loads.
        unsafe {
            x[8] = _mm512_loadu_si512(lo.as_ptr().cast());
            x[9] = _mm512_loadu_si512(hi.as_ptr().cast());
        }
        let orig = x;
        for _ in 0..DOUBLE_ROUNDS {
            double_round!(
                x,
                _mm512_add_epi32,
                _mm512_xor_si512,
                _mm512_rol_epi32::<7>,
                _mm512_rol_epi32::<9>,
                _mm512_rol_epi32::<13>,
                _mm512_rol_epi32::<18>
            );
        }
        for (xi, oi) in x.iter_mut().zip(orig) {
            *xi = _mm512_add_epi32(*xi, oi);
        }
        // Transpose: 4x4 of 32-bit words inside each 128-bit lane, per group of 4 rows...
        let mut v = [[_mm512_setzero_si512(); 4]; 4];
        for g in 0..4 {
            let r = &x[4 * g..4 * g + 4];
            let t0 = _mm512_unpacklo_epi32(r[0], r[1]);
            let t1 = _mm512_unpackhi_epi32(r[0], r[1]);
            let t2 = _mm512_unpacklo_epi32(r[2], r[3]);
            let t3 = _mm512_unpackhi_epi32(r[2], r[3]);
            v[g][0] = _mm512_unpacklo_epi64(t0, t2);
            v[g][1] = _mm512_unpackhi_epi64(t0, t2);
            v[g][2] = _mm512_unpacklo_epi64(t1, t3);
            v[g][3] = _mm512_unpackhi_epi64(t1, t3);
        }
        // ...then 4x4 of 128-bit lanes: lane k of v[g][m] holds words 4g..4g+4 of block 4k+m.
        for m in 0..4 {
            let s0 = _mm512_shuffle_i32x4::<0x44>(v[0][m], v[1][m]);
            let s1 = _mm512_shuffle_i32x4::<0xee>(v[0][m], v[1][m]);
            let s2 = _mm512_shuffle_i32x4::<0x44>(v[2][m], v[3][m]);
            let s3 = _mm512_shuffle_i32x4::<0xee>(v[2][m], v[3][m]);
            let out = [
                _mm512_shuffle_i32x4::<0x88>(s0, s2),
                _mm512_shuffle_i32x4::<0xdd>(s0, s2),
                _mm512_shuffle_i32x4::<0x88>(s1, s3),
                _mm512_shuffle_i32x4::<0xdd>(s1, s3),
            ];
            for (k, o) in out.into_iter().enumerate() {
                // SAFETY: block 4k+m ≤ 15, so bytes 64·(4k+m)..+64 lie inside the 1024 bytes
                // the caller guarantees; unaligned load and store.
                unsafe {
                    let p = data.add(64 * (4 * k + m)).cast::<__m512i>();
                    _mm512_storeu_si512(p, _mm512_xor_si512(_mm512_loadu_si512(p), o));
                }
            }
        }
    }

    /// The 12 rounds on 8 blocks, rotations as two shifts and an or.
    #[target_feature(enable = "avx2")]
    fn rounds8_avx2(x: &mut [__m256i; 16]) {
        #[inline]
        #[target_feature(enable = "avx2")]
        fn rol<const L: i32, const R: i32>(s: __m256i) -> __m256i {
            _mm256_or_si256(_mm256_slli_epi32::<L>(s), _mm256_srli_epi32::<R>(s))
        }
        for _ in 0..DOUBLE_ROUNDS {
            double_round!(
                x,
                _mm256_add_epi32,
                _mm256_xor_si256,
                rol::<7, 25>,
                rol::<9, 23>,
                rol::<13, 19>,
                rol::<18, 14>
            );
        }
    }

    /// The 12 rounds on 8 blocks with AVX-512VL's `vprold`.
    #[target_feature(enable = "avx2,avx512f,avx512vl")]
    fn rounds8_avx512vl(x: &mut [__m256i; 16]) {
        for _ in 0..DOUBLE_ROUNDS {
            double_round!(
                x,
                _mm256_add_epi32,
                _mm256_xor_si256,
                _mm256_rol_epi32::<7>,
                _mm256_rol_epi32::<9>,
                _mm256_rol_epi32::<13>,
                _mm256_rol_epi32::<18>
            );
        }
    }

    /// # Safety
    /// The CPU must support AVX2, and AVX-512F/VL if `vl`; `data` must be valid for reads and
    /// writes of 512 bytes.
    #[target_feature(enable = "avx2")]
    #[allow(clippy::needless_range_loop)] // block/word indices read better than zips here
    unsafe fn xor8_avx2(input: &[u32; 16], counter: u64, data: *mut u8, vl: bool) {
        let mut x = [_mm256_setzero_si256(); 16];
        for (xi, &v) in x.iter_mut().zip(input) {
            *xi = _mm256_set1_epi32(v as i32);
        }
        let (lo, hi) = counters::<8>(counter);
        // SAFETY: `lo` and `hi` are 32-byte arrays; unaligned loads.
        unsafe {
            x[8] = _mm256_loadu_si256(lo.as_ptr().cast());
            x[9] = _mm256_loadu_si256(hi.as_ptr().cast());
        }
        let orig = x;
        if vl {
            // SAFETY: the caller guarantees AVX-512F/VL when `vl` is set.
            unsafe { rounds8_avx512vl(&mut x) }
        } else {
            rounds8_avx2(&mut x);
        }
        for (xi, oi) in x.iter_mut().zip(orig) {
            *xi = _mm256_add_epi32(*xi, oi);
        }
        let mut v = [[_mm256_setzero_si256(); 4]; 4];
        for g in 0..4 {
            let r = &x[4 * g..4 * g + 4];
            let t0 = _mm256_unpacklo_epi32(r[0], r[1]);
            let t1 = _mm256_unpackhi_epi32(r[0], r[1]);
            let t2 = _mm256_unpacklo_epi32(r[2], r[3]);
            let t3 = _mm256_unpackhi_epi32(r[2], r[3]);
            v[g][0] = _mm256_unpacklo_epi64(t0, t2);
            v[g][1] = _mm256_unpackhi_epi64(t0, t2);
            v[g][2] = _mm256_unpacklo_epi64(t1, t3);
            v[g][3] = _mm256_unpackhi_epi64(t1, t3);
        }
        // Lane k of v[g][m] holds words 4g..4g+4 of block 4k+m.
        for m in 0..4 {
            let halves = [
                (m, 0, _mm256_permute2x128_si256::<0x20>(v[0][m], v[1][m])),
                (m, 32, _mm256_permute2x128_si256::<0x20>(v[2][m], v[3][m])),
                (
                    m + 4,
                    0,
                    _mm256_permute2x128_si256::<0x31>(v[0][m], v[1][m]),
                ),
                (
                    m + 4,
                    32,
                    _mm256_permute2x128_si256::<0x31>(v[2][m], v[3][m]),
                ),
            ];
            for (block, off, o) in halves {
                // SAFETY: block ≤ 7 and off ≤ 32, so the 32 bytes at 64·block + off lie inside
                // the 512 bytes the caller guarantees; unaligned load and store.
                unsafe {
                    let p = data.add(64 * block + off).cast::<__m256i>();
                    _mm256_storeu_si256(p, _mm256_xor_si256(_mm256_loadu_si256(p), o));
                }
            }
        }
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use cipher::{KeyIvInit, StreamCipher, StreamCipherSeek};

    /// splitmix64, for reproducible random keys and data.
    pub(crate) struct Rng(pub u64);
    impl Rng {
        pub fn next(&mut self) -> u64 {
            self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
            let mut z = self.0;
            z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
            z ^ (z >> 31)
        }
        pub fn fill(&mut self, b: &mut [u8]) {
            for x in b {
                *x = self.next() as u8;
            }
        }
    }

    fn available() -> Vec<Backend> {
        let v: Vec<Backend> = Backend::ALL
            .into_iter()
            .filter(|b| b.is_available())
            .collect();
        eprintln!("salsa backends on this CPU: {v:?}");
        v
    }

    fn reference(key: &[u8; 32], iv: &[u8; 8], data: &mut [u8]) {
        salsa20::Salsa12::new(key.into(), iv.into()).apply_keystream(data);
    }

    #[test]
    fn detect_is_available_and_cached() {
        let b = Backend::detect();
        assert!(b.is_available());
        assert_eq!(Backend::detect(), b);
        assert_eq!(Salsa2012::new(&[0; 32], &[0; 8]).backend(), b);
        #[cfg(target_arch = "x86_64")]
        if std::arch::is_x86_feature_detected!("avx512f") {
            assert_eq!(b, Backend::Avx512);
        }
    }

    #[test]
    fn every_length_matches_salsa20_crate() {
        let mut rng = Rng(1);
        let mut cases = 0;
        for backend in available() {
            for len in 0..=1100 {
                let mut key = [0u8; 32];
                let mut iv = [0u8; 8];
                rng.fill(&mut key);
                rng.fill(&mut iv);
                let mut data = vec![0u8; len];
                rng.fill(&mut data);
                let mut expect = data.clone();
                reference(&key, &iv, &mut expect);
                let mut s = Salsa2012::with_backend(backend, &key, &iv).unwrap();
                s.apply_keystream(&mut data);
                assert_eq!(data, expect, "{backend:?} len {len}");
                cases += 1;
            }
        }
        assert!(cases >= 1101);
    }

    #[test]
    fn split_calls_match_one_call() {
        let mut rng = Rng(2);
        let mut cases = 0;
        for backend in available() {
            for _ in 0..300 {
                let mut key = [0u8; 32];
                let mut iv = [0u8; 8];
                rng.fill(&mut key);
                rng.fill(&mut iv);
                let len = (rng.next() % 3000) as usize;
                let mut expect = vec![0u8; len];
                rng.fill(&mut expect);
                let mut data = expect.clone();
                reference(&key, &iv, &mut expect);
                let mut s = Salsa2012::with_backend(backend, &key, &iv).unwrap();
                // Up to four random split points, including empty pieces.
                let mut rest = &mut data[..];
                for _ in 0..4 {
                    let n = (rng.next() as usize) % (rest.len() + 1);
                    let (head, tail) = rest.split_at_mut(n);
                    s.apply_keystream(head);
                    rest = tail;
                }
                s.apply_keystream(rest);
                assert_eq!(data, expect, "{backend:?} len {len}");
                cases += 1;
            }
            // The armor pattern: block 0, then the rest.
            for len in [0usize, 1, 63, 64, 65, 448, 960, 1373, 2773, 9997] {
                let key = [0x5au8; 32];
                let iv = [7u8; 8];
                let mut expect = vec![0u8; 64 + len];
                reference(&key, &iv, &mut expect);
                let mut s = Salsa2012::with_backend(backend, &key, &iv).unwrap();
                let b0 = s.keystream_block0();
                let mut rest = vec![0u8; len];
                s.apply_keystream(&mut rest);
                assert_eq!(b0[..], expect[..64], "{backend:?}");
                assert_eq!(rest[..], expect[64..], "{backend:?} len {len}");
                cases += 1;
            }
        }
        assert!(cases >= 310);
    }

    #[test]
    fn counter_carries_into_high_word() {
        // Lanes of one pass straddle the 2^32 block boundary.
        let key = [3u8; 32];
        let iv = [9u8; 8];
        for backend in available() {
            let start = (1u64 << 32) - 5;
            let mut expect = vec![0u8; 2048];
            let mut r = salsa20::Salsa12::new((&key).into(), (&iv).into());
            r.seek(start * 64);
            r.apply_keystream(&mut expect);
            let mut s = Salsa2012::with_backend(backend, &key, &iv).unwrap();
            s.counter = start;
            let mut data = vec![0u8; 2048];
            s.apply_keystream(&mut data);
            assert_eq!(data, expect, "{backend:?}");
        }
    }

    /// `cargo test -p weft-simd --release -- --ignored --nocapture salsa_timing`: ns for the
    /// cipher-1 keystream (block 0, then `len` bytes) per backend and with the `salsa20` crate.
    #[test]
    #[ignore = "timing, not a check"]
    fn salsa_timing() {
        use crate::poly1305::timing::ns_per;
        use std::hint::black_box;
        let key = [0x42u8; 32];
        let iv = [1u8; 8];
        for len in [64usize, 1373, 2773, 9997] {
            let mut data = vec![0u8; len];
            let mut line = format!("len {len:>5}:");
            for b in available() {
                let t = ns_per(|| {
                    let mut s = Salsa2012::with_backend(b, black_box(&key), &iv).unwrap();
                    black_box(s.keystream_block0());
                    s.apply_keystream(black_box(&mut data));
                });
                line += &format!(" {b:?} {t:.0} ns ({:.2} GB/s)", len as f64 / t);
            }
            let t = ns_per(|| {
                let mut s = salsa20::Salsa12::new(black_box(&key).into(), (&iv).into());
                let mut b0 = [0u8; 64];
                s.apply_keystream(&mut b0);
                black_box(b0);
                s.apply_keystream(black_box(&mut data));
            });
            eprintln!("{line} crate {t:.0} ns ({:.2} GB/s)", len as f64 / t);
        }
    }

    #[test]
    fn unsupported_backend_is_none() {
        for b in Backend::ALL {
            assert_eq!(
                Salsa2012::with_backend(b, &[0; 32], &[0; 8]).is_some(),
                b.is_available()
            );
        }
    }
}
