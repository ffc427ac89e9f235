//! Poly1305 one-time authenticator (RFC 8439 §2.5) over packet-sized messages.
//! spec: vl1.md §3.2 step 4–5
//!
//! One scalar implementation in radix 2^64 (the accumulator in two 64-bit limbs plus a few
//! bits, 64×64→128-bit products): no key powers to precompute and no vector setup, so its cost
//! is linear from the first byte.
//!
//! Measured against the `poly1305` crate 0.8 on this project's machine (AMD Zen 5 VM, 2 shared
//! vCPUs, noisy; `mac_timing` below, best of 5 × 5000): ns per MAC
//!
//! | bytes | this | crate, AVX2 backend (auto) | crate, soft (`--cfg poly1305_force_soft`) |
//! |---:|---:|---:|---:|
//! | 64 | 17 | 1059 | 36 |
//! | 1373 | ≈390 | 2243 | 588 |
//! | 10000 | ≈2900 | 6880 | 6448 |
//!
//! The crate's AVX2 backend pays about a microsecond per message before its first byte here, and
//! its soft backend (radix 2^26, 32×32-bit products) does more multiplications per block, so
//! this one is used at every size. A vector path (AVX2 4-way or AVX-512 IFMA 8-way in radix
//! 2^26/2^44) could beat it on long messages; it has to beat ≈0.3 ns per byte at 1.4 KB
//! including its key-power setup to be worth adding.

/// A Poly1305 key: `r` (clamped) and `s`, 32 bytes.
pub type Key = [u8; 32];

/// 2^130 − 5 arithmetic on `h = h0 + h1·2^64 + h2·2^128` (h2 a few bits).
#[derive(Clone, Copy)]
struct State {
    h0: u64,
    h1: u64,
    h2: u64,
}

/// The clamped `r` in two limbs and `s1 = r1 + r1/4` (`r1·2^128 ≡ s1 (mod p)`, since clamping
/// clears the low two bits of `r1`).
#[derive(Clone, Copy)]
struct R {
    r0: u64,
    r1: u64,
    s1: u64,
}

impl R {
    fn new(r: u128) -> R {
        let r0 = r as u64;
        let r1 = (r >> 64) as u64;
        R {
            r0,
            r1,
            s1: r1 + (r1 >> 2),
        }
    }
}

#[inline(always)]
fn mul(a: u64, b: u64) -> u128 {
    u128::from(a) * u128::from(b)
}

impl State {
    /// `(d0, d1, d2)` = the unreduced product `h·r` folded mod p: `d0 + d1·2^64 + d2·2^128`.
    #[inline(always)]
    fn product(self, r: R) -> (u128, u128, u64) {
        let d0 = mul(self.h0, r.r0) + mul(self.h1, r.s1);
        let d1 = mul(self.h0, r.r1) + mul(self.h1, r.r0) + mul(self.h2, r.s1);
        let d2 = self.h2 * r.r0;
        (d0, d1, d2)
    }

    /// Carries `d0 + d1·2^64 + d2·2^128` into limbs and folds bits ≥ 130 back (×5).
    #[inline(always)]
    fn reduce(d0: u128, d1: u128, d2: u64) -> State {
        let h0 = d0 as u64;
        let d1 = d1 + (d0 >> 64);
        let h1 = d1 as u64;
        let h2 = ((d1 >> 64) as u64).wrapping_add(d2);
        // h2·2^128 = (h2 >> 2)·2^130 + (h2 & 3)·2^128, and 2^130 ≡ 5.
        let c = (h2 >> 2) + (h2 & !3);
        let (h0, carry) = h0.overflowing_add(c);
        let (h1, carry) = h1.overflowing_add(u64::from(carry));
        State {
            h0,
            h1,
            h2: (h2 & 3) + u64::from(carry),
        }
    }

    /// `h += m` (a 16-byte block as a little-endian number, plus `hibit·2^128`).
    #[inline(always)]
    fn add(self, m: u128, hibit: u64) -> State {
        let (h0, c) = self.h0.overflowing_add(m as u64);
        let (h1, c1) = self.h1.overflowing_add((m >> 64) as u64);
        let (h1, c2) = h1.overflowing_add(u64::from(c));
        State {
            h0,
            h1,
            h2: self.h2 + hibit + u64::from(c1) + u64::from(c2),
        }
    }
}

#[inline(always)]
fn le128(b: &[u8]) -> u128 {
    u128::from_le_bytes(b.try_into().expect("16 bytes"))
}

/// The Poly1305 tag of `msg` under the one-time `key`.
pub fn mac(key: &Key, msg: &[u8]) -> [u8; 16] {
    let r = R::new(le128(&key[..16]) & 0x0fff_fffc_0fff_fffc_0fff_fffc_0fff_ffff);
    let s = le128(&key[16..]);
    let mut h = State {
        h0: 0,
        h1: 0,
        h2: 0,
    };

    let mut blocks = msg.chunks_exact(16);
    for b in &mut blocks {
        let (d0, d1, d2) = h.add(le128(b), 1).product(r);
        h = State::reduce(d0, d1, d2);
    }
    let tail = blocks.remainder();
    if !tail.is_empty() {
        let mut last = [0u8; 16];
        last[..tail.len()].copy_from_slice(tail);
        last[tail.len()] = 1;
        let (d0, d1, d2) = h.add(u128::from_le_bytes(last), 0).product(r);
        h = State::reduce(d0, d1, d2);
    }
    finish(h, s)
}

/// Full reduction mod p, then `(h + s) mod 2^128`, little-endian.
fn finish(h: State, s: u128) -> [u8; 16] {
    // Fold the bits ≥ 130 once more: h < 2^130 + 2^6 < 2p afterwards.
    let State { h0, h1, h2 } = State::reduce(u128::from(h.h0), u128::from(h.h1), h.h2);
    // g = h + 5 − 2^130; keep g if it is not negative (bit 130 of h + 5 set), without branches.
    let (g0, c) = h0.overflowing_add(5);
    let (g1, c) = h1.overflowing_add(u64::from(c));
    let g2 = h2 + u64::from(c);
    let use_g = 0u64.wrapping_sub(g2 >> 2); // all ones when h + 5 ≥ 2^130
    let h0 = (g0 & use_g) | (h0 & !use_g);
    let h1 = (g1 & use_g) | (h1 & !use_g);
    let h = u128::from(h0) | (u128::from(h1) << 64);
    h.wrapping_add(s).to_le_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::salsa::tests::Rng;
    use ::poly1305::universal_hash::KeyInit;

    fn reference(key: &Key, msg: &[u8]) -> [u8; 16] {
        ::poly1305::Poly1305::new(key.into())
            .compute_unpadded(msg)
            .into()
    }

    // RFC 8439 §2.5.2
    #[test]
    fn rfc8439_vector() {
        let key: Key =
            hex::decode("85d6be7857556d337f4452fe42d506a80103808afb0db2fd4abff6af4149f51b")
                .unwrap()
                .try_into()
                .unwrap();
        let tag = mac(&key, b"Cryptographic Forum Research Group");
        assert_eq!(hex::encode(tag), "a8061dc1305136c6c22b8baf0c0127a9");
    }

    #[test]
    fn matches_poly1305_crate_every_length() {
        let mut rng = Rng(3);
        let mut cases = 0;
        let edge_keys: [Key; 4] = [
            [0xff; 32],
            [0; 32],
            {
                let mut k = [0xff; 32];
                k[16..].fill(0);
                k
            },
            {
                let mut k = [0; 32];
                k[16..].fill(0xff);
                k
            },
        ];
        for len in 0..=2000 {
            let mut msg = vec![0u8; len];
            rng.fill(&mut msg);
            let mut key = [0u8; 32];
            rng.fill(&mut key);
            assert_eq!(mac(&key, &msg), reference(&key, &msg), "len {len}");
            cases += 1;
            for k in &edge_keys {
                assert_eq!(mac(k, &msg), reference(k, &msg), "edge key, len {len}");
                // All-0xff messages push the accumulator to its largest values.
                let ff = vec![0xffu8; len];
                assert_eq!(
                    mac(k, &ff),
                    reference(k, &ff),
                    "edge key, 0xff msg, len {len}"
                );
                cases += 2;
            }
        }
        assert_eq!(cases, 2001 * 9);
    }

    #[test]
    fn long_messages_match() {
        let mut rng = Rng(4);
        for len in [4096usize, 9999, 10_000, 10_024, 65_537] {
            let mut msg = vec![0u8; len];
            rng.fill(&mut msg);
            let mut key = [0u8; 32];
            rng.fill(&mut key);
            assert_eq!(mac(&key, &msg), reference(&key, &msg), "len {len}");
        }
    }

    /// Accumulator values near p: messages whose running sum sits at 2^130 − 5 + small.
    #[test]
    fn final_reduction_edges() {
        // With r = 0 the tag is h = last block (+2^128 or the 0x01 pad) reduced, plus s.
        let key = [0u8; 32];
        for tail in [[0xffu8; 16], [0xfb; 16], [0xfa; 16], [0; 16]] {
            assert_eq!(mac(&key, &tail), reference(&key, &tail));
        }
        let mut key = [0u8; 32];
        key[0] = 1; // r = 1: h = sum of blocks
        for m in [[0xffu8; 48], [0xfe; 48]] {
            assert_eq!(mac(&key, &m), reference(&key, &m));
        }
    }
}

/// `cargo test -p weft-simd --release -- --ignored --nocapture mac_timing` prints ns per MAC for
/// this implementation and the `poly1305` crate (build with `RUSTFLAGS="--cfg
/// poly1305_force_soft"` for the crate's soft backend). Rough figures, for choosing backends.
#[cfg(test)]
pub(crate) mod timing {
    use ::poly1305::universal_hash::KeyInit;
    use std::hint::black_box;
    use std::time::Instant;

    pub(crate) fn ns_per<F: FnMut()>(mut f: F) -> f64 {
        for _ in 0..2000 {
            f();
        }
        let mut best = f64::MAX;
        for _ in 0..5 {
            let t = Instant::now();
            for _ in 0..5000 {
                f();
            }
            best = best.min(t.elapsed().as_nanos() as f64 / 5000.0);
        }
        best
    }

    #[test]
    #[ignore = "timing, not a check"]
    fn mac_timing() {
        let key = [0x17u8; 32];
        for len in [64usize, 256, 1373, 2773, 10_000] {
            let msg = vec![0xa5u8; len];
            let ours = ns_per(|| {
                black_box(super::mac(black_box(&key), black_box(&msg)));
            });
            let krate = ns_per(|| {
                let t: [u8; 16] = ::poly1305::Poly1305::new(black_box(&key).into())
                    .compute_unpadded(black_box(&msg))
                    .into();
                black_box(t);
            });
            eprintln!(
                "len {len:>5}: weft {ours:>7.0} ns ({:.2} GB/s)  crate {krate:>7.0} ns ({:.2} GB/s)",
                len as f64 / ours,
                len as f64 / krate
            );
        }
    }
}
