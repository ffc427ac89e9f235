//! `weft-simd`: the packet ciphers of the data plane's hot path, written for the CPU they run on.
//!
//! - [`salsa`]: Salsa20/12 keystream (AVX-512, AVX2, portable fallback).
//! - [`poly1305`]: Poly1305 one-shot MACs over packet-sized messages.
//! - [`aes_gmac_siv`]: AES-GMAC-SIV (ZeroTier cipher suite 3) on AES-NI/VAES and carry-less
//!   multiply.
//!
//! Every kernel is chosen at run time (`is_x86_feature_detected!`) and checked against the
//! RustCrypto crates and the spec's vectors. This crate, with `weft-engine`'s I/O back-ends, is
//! the only place `unsafe` is allowed; each use carries a `SAFETY:` note.
//! spec: vl1.md §3.2–§3.4
#![warn(missing_docs)]

pub mod aes_gmac_siv;
pub mod poly1305;
pub mod salsa;
