//! Packet armor / dearmor throughput for cipher suites 0, 1 and 3, with same-run baselines that
//! call the RustCrypto crates directly on the same byte counts.
//!
//! Sizes are whole packet lengths (28-byte header + verb + payload); throughput is reported
//! against that length for every function, so throughput ratios equal time ratios.
//!
//! What each function measures (per iteration):
//! - `weft-cN-armor`: `weft_wire::armor::armor` on one packet buffer, in place. Armoring an
//!   already armored buffer does exactly the same work, so the buffer is reused (no copy timed).
//! - `weft-cN-dearmor`: `weft_wire::armor::dearmor` of a freshly armored packet. Each iteration
//!   needs its own armored copy: criterion's `iter_batched_ref` clones it in untimed setup; the
//!   timed part is the dearmor call only (the copy may be colder in cache than in `armor`).
//! - `crates-salsa12-poly1305-enc`: what cipher 1 does, with the crates directly: Salsa12 key
//!   setup, keystream block 0 (Poly1305 key), encrypt `len - 27` bytes, Poly1305 over them.
//!   Counterpart of `weft-c1-armor` (weft additionally mangles the key with the header and
//!   writes the flags/MAC fields).
//! - `crates-salsa12-poly1305-dec`: Poly1305 over the ciphertext, constant-time-ish compare,
//!   decrypt; fresh copy per iteration as for dearmor. Counterpart of `weft-c1-dearmor`.
//! - `crates-poly1305-only`: Salsa12 setup + block 0 + Poly1305 over `len - 27` bytes, no
//!   encryption: the cipher-0 work. Counterpart of `weft-c0-armor`/`-dearmor`.
//! - `crates-salsa12-block0` and `crates-poly1305-mac`: the two halves of that (Salsa12 key
//!   setup + one 64-byte block; Poly1305 key setup + MAC over `len - 27` bytes), to locate the
//!   fixed per-packet cost.
//! - `weft-simd-salsa12-keystream`: `weft_simd::salsa::Salsa2012::new` + `keystream_block0` +
//!   `apply_keystream` over `len - 27` bytes: the whole cipher-1 Salsa20/12 work alone.
//!   Counterpart of the crate's share of `crates-salsa12-poly1305-enc` minus the MAC.
//! - `weft-simd-poly1305-mac`: `weft_simd::poly1305::mac` over `len - 27` bytes. Counterpart
//!   of `crates-poly1305-mac`.
//! - `crates-aes256gcm-enc` / `-dec`: `aes-gcm` Aes256Gcm (key schedule precomputed, 12-byte
//!   nonce, 11-byte AAD) in place, detached tag, over `len - 27` bytes; `-dec` uses a fresh copy
//!   per iteration. A one-pass AEAD reference for cipher 3 (AES-GMAC-SIV is two-pass: GMAC over
//!   the payload, then AES-CTR, plus two AES block operations for the SIV), so ≈0.5× is the
//!   expected ratio for a straightforward implementation, not a defect.
//! - `rustcrypto-gmac-siv-enc` / `-dec`: the cipher-3 primitive alone over `len - 27` bytes on
//!   `weft_simd`'s portable back-end, which is the RustCrypto composition (`aes` + `ghash` +
//!   `ctr`) weft used before the SIMD kernels: the baseline for the next ones.
//! - `simd-gmac-siv-enc` / `-dec`: the same on the back-end `AesGmacSiv::new` picks (VAES-512 on
//!   an AVX-512 machine); `simd-<backend>-gmac-siv-enc`: encryption forced onto each other
//!   back-end this CPU supports (VAES-256, AES-NI).

use std::hint::black_box;

use aes_gcm::aead::{AeadInPlace, KeyInit as _}; // KeyInit also serves Poly1305::new
use aes_gcm::{Aes256Gcm, Nonce};
use cipher::{KeyIvInit, StreamCipher};
use criterion::{BatchSize, BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use poly1305::Poly1305;
use salsa20::Salsa12;
use weft_simd::aes_gmac_siv::{AesGmacSiv, Backend};
use weft_wire::PeerKey;
use weft_wire::address::Address;
use weft_wire::armor::{armor, dearmor};
use weft_wire::packet::{CipherSuite, IDX_VERB, Verb, build};

/// Whole packet lengths benchmarked.
const SIZES: [usize; 3] = [64, 1400, 2800];
/// Bytes covered by the MAC / encryption: verb byte onward.
const fn body_len(size: usize) -> usize {
    size - IDX_VERB
}

const SUITES: [(&str, CipherSuite); 3] = [
    ("c0", CipherSuite::Poly1305None),
    ("c1", CipherSuite::Poly1305Salsa2012),
    ("c3", CipherSuite::AesGmacSiv),
];

fn packet(size: usize) -> Vec<u8> {
    let payload: Vec<u8> = (0..size - IDX_VERB - 1).map(|i| i as u8).collect();
    let p = build(
        [1, 2, 3, 4, 5, 6, 7, 8],
        Address::new(0x55_5b50_31f8).expect("address"),
        Address::new(0x2f_52c8_fb18).expect("address"),
        Verb::FRAME,
        &payload,
    );
    assert_eq!(p.len(), size);
    p
}

fn key() -> PeerKey {
    let mut k = [0u8; 48];
    for (i, b) in k.iter_mut().enumerate() {
        *b = (i as u8).wrapping_mul(37).wrapping_add(11);
    }
    PeerKey::from_bytes(&k)
}

type Group<'a> = criterion::BenchmarkGroup<'a, criterion::measurement::WallTime>;

/// Per size, weft and the baselines run back to back so that they see the same machine state.
fn armor_benches(c: &mut Criterion) {
    let mut g = c.benchmark_group("armor");
    for size in SIZES {
        g.throughput(Throughput::Bytes(size as u64));
        weft(&mut g, size);
        baselines(&mut g, size);
        gmac_siv(&mut g, size);
    }
    g.finish();
}

fn weft(g: &mut Group<'_>, size: usize) {
    let key = key();
    for (name, suite) in SUITES {
        let mut buf = packet(size);
        g.bench_function(BenchmarkId::new(format!("weft-{name}-armor"), size), |b| {
            b.iter(|| armor(black_box(&mut buf[..]), &key, suite).expect("armor"));
        });
        let mut armored = packet(size);
        armor(&mut armored, &key, suite).expect("armor");
        g.bench_function(
            BenchmarkId::new(format!("weft-{name}-dearmor"), size),
            |b| {
                b.iter_batched_ref(
                    || armored.clone(),
                    |p| dearmor(black_box(&mut p[..]), &key).expect("dearmor"),
                    BatchSize::SmallInput,
                );
            },
        );
    }
}

fn salsa_poly(key: &[u8; 32], iv: &[u8; 8], body: &mut [u8], encrypt: bool) -> [u8; 16] {
    let mut s = Salsa12::new(key.into(), iv.into());
    let mut block0 = [0u8; 64];
    s.apply_keystream(&mut block0);
    if encrypt {
        s.apply_keystream(body);
    }
    Poly1305::new(block0[..32].into())
        .compute_unpadded(body)
        .into()
}

fn baselines(g: &mut Group<'_>, size: usize) {
    let skey = [0x42u8; 32];
    let iv = [1u8, 2, 3, 4, 5, 6, 7, 8];
    let gcm = Aes256Gcm::new(&[0x24u8; 32].into());
    let nonce = Nonce::from([9u8; 12]);
    let aad = [0xaau8; 11];
    let mut body = packet(size)[IDX_VERB..].to_vec();
    assert_eq!(body.len(), body_len(size));

    // weft-simd's two halves, for the split of cipher 1's cost.
    g.bench_function(BenchmarkId::new("weft-simd-salsa12-keystream", size), |b| {
        b.iter(|| {
            let mut s = weft_simd::salsa::Salsa2012::new(black_box(&skey), &iv);
            let block0 = s.keystream_block0();
            s.apply_keystream(black_box(&mut body[..]));
            block0
        });
    });
    g.bench_function(BenchmarkId::new("weft-simd-poly1305-mac", size), |b| {
        b.iter(|| weft_simd::poly1305::mac(black_box(&[0x17u8; 32]), black_box(&body)));
    });

    // The two halves of the cipher-0 work, to see where the fixed per-packet cost goes.
    g.bench_function(BenchmarkId::new("crates-salsa12-block0", size), |b| {
        b.iter(|| {
            let mut s = Salsa12::new(black_box(&skey).into(), (&iv).into());
            let mut block0 = [0u8; 64];
            s.apply_keystream(&mut block0);
            block0
        });
    });
    let pkey = [0x17u8; 32];
    g.bench_function(BenchmarkId::new("crates-poly1305-mac", size), |b| {
        b.iter(|| -> [u8; 16] {
            Poly1305::new(black_box(&pkey).into())
                .compute_unpadded(black_box(&body))
                .into()
        });
    });
    g.bench_function(BenchmarkId::new("crates-poly1305-only", size), |b| {
        b.iter(|| salsa_poly(&skey, &iv, black_box(&mut body), false));
    });
    g.bench_function(BenchmarkId::new("crates-salsa12-poly1305-enc", size), |b| {
        b.iter(|| salsa_poly(&skey, &iv, black_box(&mut body), true));
    });
    // Ciphertext and tag for the decrypt direction.
    let mut ct = body.clone();
    let tag = salsa_poly(&skey, &iv, &mut ct, true);
    g.bench_function(BenchmarkId::new("crates-salsa12-poly1305-dec", size), |b| {
        b.iter_batched_ref(
            || ct.clone(),
            |p| {
                let mut s = Salsa12::new((&skey).into(), (&iv).into());
                let mut block0 = [0u8; 64];
                s.apply_keystream(&mut block0);
                let t: [u8; 16] = Poly1305::new(block0[..32].into())
                    .compute_unpadded(p)
                    .into();
                assert!(t[..8] == tag[..8], "mac");
                s.apply_keystream(black_box(&mut p[..]));
            },
            BatchSize::SmallInput,
        );
    });

    g.bench_function(BenchmarkId::new("crates-aes256gcm-enc", size), |b| {
        b.iter(|| {
            gcm.encrypt_in_place_detached(&nonce, &aad, black_box(&mut body[..]))
                .expect("encrypt")
        });
    });
    let mut ct = body.clone();
    let gtag = gcm
        .encrypt_in_place_detached(&nonce, &aad, &mut ct)
        .expect("encrypt");
    g.bench_function(BenchmarkId::new("crates-aes256gcm-dec", size), |b| {
        b.iter_batched_ref(
            || ct.clone(),
            |p| {
                gcm.decrypt_in_place_detached(&nonce, &aad, black_box(&mut p[..]), &gtag)
                    .expect("decrypt")
            },
            BatchSize::SmallInput,
        );
    });
}

/// The cipher-3 primitive alone: the RustCrypto composition against the SIMD back-ends.
fn gmac_siv(g: &mut Group<'_>, size: usize) {
    let (k0, k1) = ([0x31u8; 32], [0x52u8; 32]);
    let iv = [1u8, 2, 3, 4, 5, 6, 7, 8];
    let aad = [0xaau8; 11];
    let mut body = packet(size)[IDX_VERB..].to_vec();
    let named = [
        ("rustcrypto", Some(Backend::Portable)),
        ("simd", None),
        ("simd-vaes256", Some(Backend::Vaes256)),
        ("simd-aesni", Some(Backend::AesNi)),
    ];
    for (name, backend) in named {
        let c = match backend {
            None => AesGmacSiv::new(&k0, &k1),
            Some(b) => match AesGmacSiv::with_backend(b, &k0, &k1) {
                Some(c) => c,
                None => continue,
            },
        };
        g.bench_function(
            BenchmarkId::new(format!("{name}-gmac-siv-enc"), size),
            |b| {
                b.iter(|| c.encrypt(&iv, &aad, black_box(&mut body[..])));
            },
        );
        if backend.is_some_and(|b| b != Backend::Portable) {
            continue;
        }
        let mut ct = body.clone();
        let tag = c.encrypt(&iv, &aad, &mut ct);
        g.bench_function(
            BenchmarkId::new(format!("{name}-gmac-siv-dec"), size),
            |b| {
                b.iter_batched_ref(
                    || ct.clone(),
                    |p| {
                        c.decrypt(&tag, &aad, black_box(&mut p[..]))
                            .expect("decrypt")
                    },
                    BatchSize::SmallInput,
                );
            },
        );
    }
}

criterion_group!(benches, armor_benches);
criterion_main!(benches);
