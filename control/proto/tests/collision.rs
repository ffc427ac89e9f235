//! Identity collisions and HELLO authentication from the receiving side. spec: vl1.md §5.2, §10.1

mod sim;

use rand_chacha::ChaCha20Rng;
use rand_core::{RngCore, SeedableRng};
use sim::{T0, identities, planet};
use weft_proto::{LocalSocket, Node, NodeConfig};
use weft_wire::packet::{IDX_PAYLOAD, Packet, Verb};
use weft_wire::verbs::{ErrorCode, ErrorHeader, Hello};
use weft_wire::{Identity, InetAddress, armor};

fn hello_from(id: &Identity, to: &Identity, packet_id: [u8; 8]) -> Vec<u8> {
    let key = id.agree(to).unwrap();
    Hello {
        protocol_version: 12,
        major: 1,
        minor: 14,
        revision: 1,
        timestamp: T0 as u64,
        identity: id.to_public(),
        destination: Some(InetAddress::Ip("10.0.0.1:9993".parse().unwrap())),
        planet: Some((0, 0)),
        encrypted_tail: Vec::new(),
    }
    .to_packet(packet_id, to.address(), &[], &key)
    .unwrap()
}

#[test]
fn a_second_key_for_a_known_address_gets_identity_collision() {
    let ids = identities(2);
    let (me, genuine) = (&ids[0], &ids[1]);
    let w = planet(&[(me, "10.0.0.1:9993".parse().unwrap())]);
    let mut rng = ChaCha20Rng::seed_from_u64(9);
    let mut node = Node::new(me.clone(), NodeConfig::new(w), T0, &mut rng);
    let from = "10.0.0.2:9993".parse().unwrap();
    node.handle_datagram(T0, LocalSocket(0), from, &hello_from(genuine, me, [1; 8]));
    let replies: Vec<_> = std::iter::from_fn(|| node.poll_transmit()).collect();
    assert!(!replies.is_empty(), "the genuine identity is answered");

    // An impostor claims the same address with another key pair.
    let mut private = [0u8; 64];
    rng.fill_bytes(&mut private);
    let public = weft_wire::identity::public_from_private(&private);
    let impostor = Identity::from_parts(genuine.address(), public, Some(private)).unwrap();
    let from2 = "10.0.9.9:9993".parse().unwrap();
    node.handle_datagram(
        T0 + 3_000,
        LocalSocket(0),
        from2,
        &hello_from(&impostor, me, [2; 8]),
    );
    let out: Vec<_> = std::iter::from_fn(|| node.poll_transmit()).collect();
    assert_eq!(out.len(), 1, "one ERROR, no OK(HELLO)");
    let mut p = out[0].data.clone();
    armor::dearmor(&mut p, &impostor.agree(me).unwrap()).expect("readable by the claimant");
    let pk = Packet::new_checked(&p[..]).unwrap();
    assert_eq!(pk.verb(), Verb::ERROR);
    let e = ErrorHeader::decode(&p[IDX_PAYLOAD..]).unwrap();
    assert_eq!(
        (e.in_re_verb, e.in_re_packet_id, e.code),
        (
            Verb::HELLO,
            0x0202020202020202,
            ErrorCode::IDENTITY_COLLISION
        )
    );
    // The address stays bound to the genuine key.
    let peer = node.peer(genuine.address(), T0 + 3_000).unwrap();
    assert_eq!(peer.address, genuine.address());
    assert_eq!(
        node.cipher_for(genuine.address()),
        Some(weft_wire::CipherSuite::AesGmacSiv)
    );

    // A forged MAC from the genuine address is dropped silently.
    let mut forged = hello_from(genuine, me, [3; 8]);
    let last = forged.len() - 1;
    forged[last] ^= 1;
    node.handle_datagram(T0 + 6_000, LocalSocket(0), from, &forged);
    assert!(node.poll_transmit().is_none());
    assert!(node.stats().mac_failures >= 1);
}
