use std::net::IpAddr;

use super::*;
use crate::credential::test_ids::id;
use crate::credential::{Revocation, Thing};
use crate::rules::RuleKind;

const NWID: NetworkId = NetworkId(0x7c55_a8da_82c9_0312);
const TS: i64 = 0x1a2_0161_5d1b;

fn member() -> Address {
    "0a33989140".parse().unwrap()
}

fn net(s: &str) -> IpNet {
    s.parse().unwrap()
}

/// The config of vl2.md §11.1, with credentials signed by a stand-in controller key.
fn example() -> NetworkConfig {
    let ctl = id(0x7c55a8da82, 1);
    let m = id(0x0a33989140, 2);
    let mut c = NetworkConfig::new(NWID, member());
    c.timestamp = TS;
    c.credential_time_max_delta = 1_800_000;
    c.revision = 6;
    c.flags = 6;
    c.multicast_limit = 32;
    c.name = "renamed".into();
    c.com = Some(Com::issue(TS, 1_800_000, NWID, &m, &ctl).unwrap());
    let ssh = vec![
        Rule::new(RuleKind::IpProtocol(6)),
        Rule::new(RuleKind::DestPortRange { start: 22, end: 22 }),
        Rule::new(RuleKind::Accept),
    ];
    c.capabilities = vec![Capability::issue(NWID, TS, 1000, ssh, member(), &ctl).unwrap()];
    c.tags = vec![Tag::issue(NWID, TS, 1000, 100, member(), &ctl).unwrap()];
    c.static_ips = vec![
        net("fd7c:55a8:da82:c903:1299:930a:3398:9140/88"),
        net("fcfe:9cab:c80a:3398:9140::1/40"),
        net("fd12:3456:789a::a:3398:9141/64"),
        net("10.147.17.209/24"),
    ];
    let things = c.static_ips.iter().map(|n| Thing::from(n.addr())).collect();
    c.coos = vec![Coo::issue(NWID, TS, 1, things, member(), &ctl).unwrap()];
    c.routes = vec![
        Route {
            target: net("10.147.17.0/24"),
            via: None,
            flags: 0,
            metric: 0,
        },
        Route {
            target: net("fd12:3456:789a::/64"),
            via: None,
            flags: 0,
            metric: 0,
        },
    ];
    c.rules = vec![Rule::new(RuleKind::Accept)];
    c.dns = Dns {
        domain: "zt.example".into(),
        servers: vec![
            "10.147.17.1".parse().unwrap(),
            "fd12:3456:789a::1".parse().unwrap(),
        ],
    };
    c
}

fn keys(d: &Dictionary) -> Vec<String> {
    d.entries()
        .map(|(k, _)| String::from_utf8_lossy(k).into_owned())
        .collect()
}

// spec: vl2.md §11, §11.1 [verified]
#[test]
fn writes_the_reference_layout() {
    let c = example();
    let d = c.to_dictionary();
    assert_eq!(
        keys(&d),
        [
            "v", "nwid", "ts", "ctmd", "r", "id", "tt", "tl", "f", "ml", "t", "n", "mtu", "C",
            "CAP", "TAG", "COO", "RT", "I", "R", "DNS", "ssov", "ssoe"
        ]
    );
    let text = String::from_utf8_lossy(&d.to_bytes()).into_owned();
    assert!(text.starts_with(
        "v=0000000000000007\nnwid=7c55a8da82c90312\nts=000001a201615d1b\nctmd=00000000001b7740\n\
         r=0000000000000006\nid=0a33989140\ntt=0000000000\ntl=0000000000000000\n\
         f=0000000000000006\nml=0000000000000020\nt=0000000000000000\nn=renamed\n\
         mtu=0000000000000af0\nC="
    ));
    assert!(text.ends_with("\nssov=0000000000000000\nssoe=0"));
    let len = |k: &str| d.get(k).unwrap().len();
    assert_eq!(
        (
            len("C"),
            len("TAG"),
            len("CAP"),
            len("COO"),
            len("RT"),
            len("I"),
            len("R"),
            len("DNS")
        ),
        (272, 135, 150, 209, 36, 64, 2, 156)
    );
    assert_eq!(
        hex::encode(d.get("RT").unwrap())[..24],
        *"040a93110000180000000000"
    );
    assert_eq!(hex::encode(d.get("R").unwrap()), "0100");
    let dns = d.get("DNS").unwrap();
    assert_eq!(&dns[..10], b"zt.example");
    assert_eq!(
        hex::encode(&dns[128..]),
        "040a931101000006fd123456789a0000000000000000000100000000"
    );
    // and reads back to the same config, byte for byte
    let back = NetworkConfig::from_bytes(&d.to_bytes()).unwrap();
    assert_eq!(back, c);
    assert_eq!(back.to_bytes(), d.to_bytes());
    let ctl = id(0x7c55a8da82, 1);
    assert!(back.com.as_ref().unwrap().verify(&ctl));
    assert!(
        back.capabilities[0].verify(&ctl) && back.tags[0].verify(&ctl) && back.coos[0].verify(&ctl)
    );
    assert!(back.coos[0].owns_ip("10.147.17.209".parse().unwrap()));
}

#[test]
fn empty_config_still_writes_dns_and_sso() {
    let c = NetworkConfig::new(NWID, member());
    let d = c.to_dictionary();
    assert_eq!(
        keys(&d),
        [
            "v", "nwid", "ts", "ctmd", "r", "id", "tt", "tl", "f", "ml", "t", "n", "mtu", "DNS",
            "ssov", "ssoe"
        ]
    );
    assert_eq!(d.get("DNS").unwrap().len(), 132);
    assert_eq!(d.get("n").unwrap(), b"");
    assert_eq!(NetworkConfig::from_dictionary(&d).unwrap(), c);
}

#[test]
fn specialists_sso_and_signed_values() {
    let mut c = NetworkConfig::new(NWID, member());
    c.timestamp = -5;
    c.remote_trace_target = Some("1122334455".parse().unwrap());
    c.network_type = NetworkType::Public;
    c.add_specialist("0011223344".parse().unwrap(), ROLE_ACTIVE_BRIDGE);
    c.add_specialist("0011223344".parse().unwrap(), ROLE_ANCHOR);
    c.add_specialist("0055667788".parse().unwrap(), ROLE_MULTICAST_REPLICATOR);
    c.routes.push(Route {
        target: net("0.0.0.0/0"),
        via: Some("10.147.17.1".parse().unwrap()),
        flags: 1,
        metric: 7,
    });
    c.sso = Sso {
        version: 1,
        enabled: true,
        issuer_url: "https://issuer".into(),
        central_auth_url: "https://central".into(),
        nonce: "n".into(),
        state: "s".into(),
        client_id: "c".into(),
        provider: "okta".into(),
        ..Sso::default()
    };
    let d = c.to_dictionary();
    assert_eq!(d.get("ts").unwrap(), b"-0000000000000005");
    assert_eq!(d.get("tt").unwrap(), b"1122334455");
    assert_eq!(
        hex::encode(d.get("S").unwrap()),
        "00000600112233440000080055667788"
    );
    assert_eq!(
        &keys(&d)[13..],
        [
            "S", "RT", "DNS", "ssov", "ssoe", "iurl", "ssoce", "sson", "ssos", "ssocid", "ssop"
        ]
    );
    let back = NetworkConfig::from_dictionary(&d).unwrap();
    assert_eq!(back, c);
    assert!(back.is_public());
    assert!(back.is_active_bridge("0011223344".parse().unwrap()));
    assert_eq!(
        back.active_bridges(),
        vec!["0011223344".parse::<Address>().unwrap()]
    );
    assert_eq!(back.anchors().len(), 1);
    assert!(back.is_multicast_replicator("0055667788".parse().unwrap()));
    assert!(!back.is_active_bridge("0055667788".parse().unwrap()));
    assert_eq!(
        back.routes[0].via,
        Some("10.147.17.1".parse::<IpAddr>().unwrap())
    );
    // v1 without a provider reads as "default"; v0 writes aurl only when non-empty
    let mut d1 = Dictionary::parse(b"v=7\nnwid=1\nid=1\nssov=1\nssoe=1\naurl=u").unwrap();
    let c1 = NetworkConfig::from_dictionary(&d1).unwrap();
    assert_eq!(
        (c1.sso.provider.as_str(), c1.sso.authentication_url.as_str()),
        ("default", "u")
    );
    d1 = Dictionary::parse(b"v=7\nnwid=1\nid=1\nssov=0\nssoe=1\naexpt=-10").unwrap();
    let c0 = NetworkConfig::from_dictionary(&d1).unwrap();
    assert_eq!(c0.sso.authentication_expiry_time, -16);
    let w = c0.to_dictionary();
    assert_eq!(&keys(&w)[keys(&w).len() - 3..], ["ssov", "ssoe", "aexpt"]);
    assert_eq!(
        Specialist::from_u64(0x0000_0200_1122_3344).roles,
        ROLE_ACTIVE_BRIDGE
    );
    assert_eq!(c.mac(), Mac::for_member(member(), NWID));
}

fn base() -> Dictionary {
    NetworkConfig::new(NWID, member()).to_dictionary()
}

fn with(key: &str, value: &[u8]) -> Dictionary {
    let mut d = Dictionary::new();
    for (k, v) in base().entries() {
        let k = std::str::from_utf8(k).unwrap();
        if k != key {
            d.add(k, v).unwrap();
        }
    }
    d.add(key, value).unwrap();
    d
}

// spec: vl2.md §11 reader rules
#[test]
fn reader_rules() {
    let read = |d: &Dictionary| NetworkConfig::from_dictionary(d);
    assert_eq!(
        read(&with("v", b"5")),
        Err(NetconfError::VersionTooOld { found: 5 })
    );
    assert_eq!(
        read(&Dictionary::parse(b"nwid=1\nid=1").unwrap()),
        Err(NetconfError::VersionTooOld { found: 0 })
    );
    assert_eq!(
        read(&with("nwid", b"0")),
        Err(NetconfError::MissingNetworkId)
    );
    assert_eq!(read(&with("id", b"")), Err(NetconfError::MissingIssuedTo));
    assert_eq!(read(&with("mtu", b"10")).unwrap().mtu, 1280);
    assert_eq!(read(&with("mtu", b"ffffff")).unwrap().mtu, 10000);
    let min = Dictionary::parse(b"v=6\nnwid=1\nid=1").unwrap();
    let m = read(&min).unwrap();
    assert_eq!(
        (m.mtu, m.network_type, m.multicast_limit),
        (2800, NetworkType::Private, 0)
    );
    assert_eq!(read(&with("n", &[b'x'; 200])).unwrap().name.len(), 127);
    assert_eq!(read(&with("n", b"ab\0cd")).unwrap().name, "ab");

    let ex = example().to_dictionary();
    let blob = |k: &str| ex.get(k).unwrap().to_vec();
    // malformed C, COO, RT, I, R, DNS reject the config
    for (k, v) in [
        ("C", blob("C")[..100].to_vec()),
        ("COO", blob("COO")[..100].to_vec()),
        ("RT", blob("RT")[..5].to_vec()),
        ("RT", vec![9]),
        ("I", vec![4, 1, 2]),
        ("I", vec![4, 10, 0, 0, 1, 0, 33]),
        ("R", vec![0x24]),
        ("DNS", vec![0; 100]),
        ("DNS", vec![0; 130]),
    ] {
        assert!(read(&with(k, &v)).is_err(), "{k} {v:02x?}");
    }
    // malformed CAP / TAG blobs keep what parsed before the error
    let mut caps = blob("CAP");
    caps.extend_from_slice(&[1, 2, 3]);
    assert_eq!(read(&with("CAP", &caps)).unwrap().capabilities.len(), 1);
    let mut tags = blob("TAG");
    tags.extend_from_slice(&blob("TAG")[..50]);
    assert_eq!(read(&with("TAG", &tags)).unwrap().tags.len(), 1);
    assert!(read(&with("TAG", &[0; 3])).unwrap().tags.is_empty());
    // tags and capabilities are sorted by id
    let ctl = id(0x7c55a8da82, 1);
    let mut t = Vec::new();
    for i in [5u32, 1, 3] {
        Tag::issue(NWID, TS, i, 0, member(), &ctl)
            .unwrap()
            .encode(&mut t);
    }
    let ids: Vec<u32> = read(&with("TAG", &t))
        .unwrap()
        .tags
        .iter()
        .map(Tag::id)
        .collect();
    assert_eq!(ids, [1, 3, 5]);
    // limits: at most 4 COOs (the rest parsed and dropped), 32 static IPs, 256 specialists
    let coo = blob("COO");
    assert_eq!(read(&with("COO", &coo.repeat(6))).unwrap().coos.len(), 4);
    let ip = [4u8, 10, 0, 0, 1, 0, 8];
    assert_eq!(
        read(&with("I", &ip.repeat(40))).unwrap().static_ips.len(),
        32
    );
    assert_eq!(
        read(&with("S", &[0u8, 0, 2, 0, 0, 0, 0, 1].repeat(300)))
            .unwrap()
            .specialists
            .len(),
        256
    );
    // at most 1024 base rules; the rest is ignored
    assert_eq!(
        read(&with("R", &[1u8, 0].repeat(1100)))
            .unwrap()
            .rules
            .len(),
        1024
    );
    // an empty blob is "none"
    assert_eq!(read(&with("C", b"")).unwrap().com, None);
    // credentials are not verified when reading
    let r = Revocation::issue(
        1,
        NWID,
        0,
        0,
        0,
        member(),
        crate::credential::CredentialType::Com,
        &ctl,
    )
    .unwrap();
    assert!(r.verify(&ctl));
}
