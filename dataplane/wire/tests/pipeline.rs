//! The whole send/receive pipeline end to end: build → compress → mark fragmented → armor →
//! fragment → (reorder, duplicate) → reassemble → dearmor → decompress, for every cipher suite and
//! a spread of sizes. spec: vl1.md §3.7, §3.8, §4

use weft_wire::compress::{compress_packet, decompress_packet};
use weft_wire::fragment::{DatagramKind, Fragment, Fragmenter, Reassembler, classify};
use weft_wire::packet::{self, DEFAULT_PHYSICAL_MTU, MAX_PACKET_LEN, Packet, Verb};
use weft_wire::{Address, CipherSuite, PeerKey, armor, dearmor};

/// A deterministic generator, so failures reproduce.
struct Xorshift(u64);

impl Xorshift {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

fn payload(rng: &mut Xorshift, len: usize, compressible: bool) -> Vec<u8> {
    (0..len)
        .map(|i| {
            if compressible {
                (i / 16) as u8
            } else {
                rng.next() as u8
            }
        })
        .collect()
}

#[test]
fn pipeline_round_trips() {
    let key = PeerKey::from_bytes(&[7u8; 48]);
    let other = PeerKey::from_bytes(&[8u8; 48]);
    let (src, dst) = (
        Address::new(0x2f52c8fb18).unwrap(),
        Address::new(0x555b5031f8).unwrap(),
    );
    let mut rng = Xorshift(0x1234_5678_9abc_def1);
    let mut cases = 0;
    for suite in [
        CipherSuite::Poly1305None,
        CipherSuite::Poly1305Salsa2012,
        CipherSuite::AesGmacSiv,
    ] {
        for len in [0usize, 1, 37, 64, 65, 500, 1404, 1405, 2000, 4000, 9000] {
            for compressible in [false, true] {
                let id = rng.next().to_be_bytes();
                let plain = packet::build(
                    id,
                    dst,
                    src,
                    Verb::FRAME,
                    &payload(&mut rng, len, compressible),
                );
                let mut wire = vec![0u8; MAX_PACKET_LEN];
                let n = compress_packet(&plain, &mut wire).unwrap_or_else(|| {
                    wire[..plain.len()].copy_from_slice(&plain);
                    plain.len()
                });
                let mut wire = wire[..n].to_vec();
                if compressible && len > 64 {
                    assert!(
                        n < plain.len(),
                        "compressible payload of {len} bytes shrinks"
                    );
                }
                let fragmented = Fragmenter::needed(wire.len(), DEFAULT_PHYSICAL_MTU);
                Packet::new_checked(&mut wire[..])
                    .unwrap()
                    .set_fragmented(fragmented);
                armor(&mut wire, &key, suite).unwrap();

                let f = Fragmenter::new(&wire, DEFAULT_PHYSICAL_MTU).unwrap();
                let mut datagrams = vec![f.head().to_vec()];
                for i in 1..f.total() {
                    datagrams.push(f.fragment(i).unwrap());
                }
                assert!(datagrams.iter().all(|d| d.len() <= DEFAULT_PHYSICAL_MTU));
                // deliver in reverse order, with a duplicate of the first piece of a
                // fragmented packet (an unfragmented duplicate is simply a second packet)
                datagrams.reverse();
                if fragmented {
                    let first = datagrams[0].clone();
                    datagrams.insert(1, first);
                }
                let mut r = Reassembler::new();
                let mut assembled = None;
                for d in &datagrams {
                    let done = match classify(d) {
                        DatagramKind::Packet if !fragmented => Some(d.clone()),
                        DatagramKind::Packet => r.add_head(0, d).unwrap(),
                        DatagramKind::Fragment => r
                            .add_fragment(0, &Fragment::new_checked(d).unwrap())
                            .unwrap(),
                        k => panic!("unexpected {k:?}"),
                    };
                    if let Some(p) = done {
                        assert!(assembled.is_none(), "assembled twice");
                        assembled = Some(p);
                    }
                }
                assert_eq!(r.pending(), 0, "nothing left half-assembled");
                let mut got = assembled.expect("packet assembled");
                assert_eq!(got, wire);
                // the wrong key fails and changes nothing
                assert!(dearmor(&mut got, &other).is_err());
                assert_eq!(got, wire);
                assert_eq!(dearmor(&mut got, &key).unwrap(), suite);
                let p = Packet::new_checked(&got[..]).unwrap();
                let mut out = vec![0u8; MAX_PACKET_LEN];
                let plain_back: Vec<u8> = if p.is_compressed() {
                    let m = decompress_packet(&got, &mut out).unwrap();
                    out[..m].to_vec()
                } else {
                    got.clone()
                };
                // header fields other than id (replaced for cipher 3), flags and MAC are intact
                assert_eq!(plain_back[8..18], plain[8..18]);
                assert_eq!(plain_back[27..], plain[27..], "{suite:?} len {len}");
                cases += 1;
            }
        }
    }
    assert_eq!(cases, 3 * 11 * 2);
}
