//! The CLI against a running daemon (in a namespace): zerotier-cli's commands and output
//! formats, under the name `weft` and under the name `zerotier-cli`, plus `weft status` and
//! `/metrics`. An ad-hoc network gives the node a configured network without a controller.
//! spec: service.md §6

use std::time::{Duration, Instant};

use weft_conformance::netns::Lab;
use weft_conformance::weftnode::{WeftNode, private_planet, weft_bin};

#[test]
fn cli_commands_against_a_running_daemon() {
    let Some(lab) = Lab::for_test("cli") else {
        return;
    };
    let root_ns = lab.host("root");
    let m_ns = lab.host("m");
    let lan = lab.bridge_lan(None, &[&root_ns, &m_ns], "10.30.0.0/24");
    lab.sysctl(&m_ns, "net.ipv6.conf.default.disable_ipv6", "0");
    let mut root = WeftNode::new(&lab, &root_ns, "root", 0);
    let mut m = WeftNode::new(&lab, &m_ns, "m", 1);
    let planet = private_planet(
        lab.log_dir(),
        0x7765_6674_0003_0000 | u64::from(std::process::id()),
        &[(&root, lan.addr_of(&root_ns))],
    );
    root.install_planet(&planet);
    m.install_planet(&planet);
    root.start(&lab);
    m.start(&lab);
    m.wait_online(&lab, Duration::from_secs(30));

    let bin = weft_bin().display().to_string();
    let home = m.home.display().to_string();
    let weft = |args: &[&str]| -> (bool, String) {
        let mut argv = vec![bin.as_str(), "-D", home.as_str()];
        argv.extend(args);
        let out = lab.exec(&m.ns, &argv);
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
        )
    };
    let (ok, info) = weft(&["info"]);
    assert!(ok, "{info}");
    assert_eq!(info, format!("200 info {} 1.14.1 ONLINE\n", m.address()));

    let nwid = "ff00160016000000";
    assert_eq!(weft(&["join", "1234"]).1, "invalid network id\n");
    assert_eq!(weft(&["join", nwid]), (true, "200 join OK\n".to_string()));
    let start = Instant::now();
    let line = loop {
        let (_, out) = weft(&["listnetworks"]);
        let mut lines = out.lines();
        assert_eq!(
            lines.next(),
            Some("200 listnetworks <nwid> <name> <mac> <status> <type> <dev> <ZT assigned ips>")
        );
        if let Some(l) = lines.next()
            && l.contains(" OK ")
        {
            break l.to_string();
        }
        assert!(start.elapsed() < Duration::from_secs(20), "{out}");
        std::thread::sleep(Duration::from_millis(250));
    };
    let f: Vec<&str> = line.split(' ').collect();
    assert_eq!(&f[..2], ["200", "listnetworks"]);
    assert_eq!(f[2], nwid);
    assert_eq!(f[3], "adhoc-0016-0016");
    assert_eq!((f[5], f[6]), ("OK", "PUBLIC"));
    assert!(f[7].starts_with("zt"), "{line}");
    assert!(
        f[8].starts_with("fce9:16:") && f[8].ends_with("/40"),
        "{line}"
    );
    let (_, plane) = weft(&["get", nwid, "ip6plane"]);
    assert_eq!(plane, format!("{}\n", f[8].trim_end_matches("/40")));
    assert_eq!(weft(&["get", nwid, "mtu"]).1, "2800\n");
    assert_eq!(
        weft(&["get", nwid, "bogus"]).1,
        "error, unknown property name\n"
    );
    let (ok, set) = weft(&["set", nwid, "allowManaged=0"]);
    assert!(ok && set.contains("\"allowManaged\":false"), "{set}");
    let (_, st) = weft(&["status"]);
    assert!(st.contains("is online"), "{st}");
    assert!(st.contains(&root.address().to_string()), "{st}");

    // the same binary under the name zerotier-cli
    let link = lab.log_dir().join("zerotier-cli");
    std::os::unix::fs::symlink(weft_bin(), &link).unwrap();
    let link = link.display().to_string();
    let out = lab.exec(&m.ns, &[&link, &format!("-D{home}"), "status"]);
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        format!("200 info {} 1.14.1 ONLINE\n", m.address())
    );
    let out = lab.exec(&m.ns, &[&link, "-v"]);
    assert_eq!(String::from_utf8_lossy(&out.stdout), "1.14.1\n");
    let out = lab.exec(&m.ns, &[&link, &format!("-D{home}"), "-Twrong", "info"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).starts_with("401 info"));

    // metrics with the metrics token; it opens nothing else
    let mtoken = std::fs::read_to_string(m.home.join("metricstoken.secret")).unwrap();
    let out = lab.exec(
        &m.ns,
        &[
            &link,
            &format!("-D{home}"),
            &format!("-T{}", mtoken.trim()),
            "info",
        ],
    );
    assert!(
        !out.status.success(),
        "the metrics token must not open /status"
    );
    let (code, text) = m.api(&lab, "GET", "/metrics");
    assert_eq!(code, 200);
    assert!(text.contains("weft_networks{} 1"), "{text}");
    assert!(text.contains("weft_packets_total{direction=\"rx\",packet_type=\"ok\"}"));

    assert_eq!(weft(&["leave", nwid]), (true, "200 leave OK\n".to_string()));
    assert!(!m.home.join(format!("networks.d/{nwid}.conf")).exists());
    let _ = &mut root;
}
