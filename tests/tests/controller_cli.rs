//! `weft controller …` against a real daemon in a network namespace of its own: create, list,
//! set, authorize, show and delete, with table and `-j` output, through the local API.
//!
//! Needs root and iproute2 (`scripts/install-test-deps.sh`); fails loudly without them unless
//! `WEFT_SKIP_NETNS=1` is set.

use std::net::Ipv4Addr;

use serde_json::Value;
use weft_conformance::netns::{Lab, Ns};
use weft_conformance::weftnode::{WeftNode, private_planet, weft_bin};

/// Runs `weft -D <home> controller <args>` inside the node's namespace; returns stdout, panics
/// on a non-zero exit.
fn ctl(lab: &Lab, ns: &Ns, node: &WeftNode, args: &[&str]) -> String {
    let bin = weft_bin().to_string_lossy().into_owned();
    let home = node.home.to_string_lossy().into_owned();
    let mut argv = vec![bin.as_str(), "-D", home.as_str(), "controller"];
    argv.extend_from_slice(args);
    lab.exec_ok(ns, &argv)
}

fn json(text: &str) -> Value {
    serde_json::from_str(text).unwrap_or_else(|e| panic!("not JSON ({e}):\n{text}"))
}

#[test]
fn controller_cli_create_list_set_authorize_show_delete() {
    let Some(lab) = Lab::for_test("controller_cli") else {
        return;
    };
    let ns = lab.host("ctl");
    let mut node = WeftNode::new(&lab, &ns, "ctl", 1);
    // a planet of our own (never the public one); the node need not be online for its API
    let planet = private_planet(
        lab.log_dir(),
        0x7765_6674_00c1_0000 | u64::from(std::process::id() & 0xffff),
        &[(&node, Ipv4Addr::LOCALHOST)],
    );
    node.install_planet(&planet);
    node.start(&lab);
    node.authtoken(&lab);
    // the API may still be binding: the first call retries through WeftNode::api
    assert_eq!(node.api(&lab, "GET", "/controller").0, 200);

    let out = ctl(
        &lab,
        &ns,
        &node,
        &[
            "-j",
            "network",
            "create",
            "--name",
            "lab net",
            "--pool",
            "10.44.0.10-10.44.0.20",
            "--route",
            "10.44.0.0/24",
            "--v6",
            "rfc4193",
        ],
    );
    let n = json(&out);
    let nwid = n["id"].as_str().expect("id").to_string();
    assert!(nwid.starts_with(node.address()), "{n}");
    assert_eq!(n["name"], "lab net");
    assert_eq!(n["private"], true);
    assert_eq!(n["v4AssignMode"]["zt"], true);
    assert_eq!(n["v6AssignMode"]["rfc4193"], true);
    assert_eq!(n["routes"][0]["target"], "10.44.0.0/24");

    // list: aligned table (header + one row) and -j
    let table = ctl(&lab, &ns, &node, &["network", "list"]);
    let lines: Vec<&str> = table.lines().collect();
    assert_eq!(lines.len(), 2, "{table}");
    assert!(lines[0].starts_with("<nwid>"), "{table}");
    assert!(
        lines[1].starts_with(&nwid) && lines[1].contains("lab net"),
        "{table}"
    );
    assert!(lines[1].contains("PRIVATE") && lines[1].contains("10.44.0.10-10.44.0.20"));
    assert_eq!(
        lines[0].find("<name>"),
        lines[1].find("lab net"),
        "columns aligned:\n{table}"
    );
    let list = json(&ctl(&lab, &ns, &node, &["-j", "network", "list"]));
    assert_eq!(list["meta"]["networkCount"], 1);

    // set with JSON values; show as a key/value table
    let shown = ctl(
        &lab,
        &ns,
        &node,
        &[
            "network",
            "set",
            &nwid,
            "mtu=1400",
            "private=false",
            "name=renamed",
        ],
    );
    assert!(
        shown
            .lines()
            .any(|l| l.starts_with("mtu") && l.ends_with(" 1400")),
        "{shown}"
    );
    assert!(
        shown
            .lines()
            .any(|l| l.starts_with("private") && l.ends_with(" false"))
    );
    let bad = lab.exec(
        &ns,
        &[
            &weft_bin().to_string_lossy(),
            "-D",
            &node.home.to_string_lossy(),
            "controller",
            "network",
            "set",
            &nwid,
            "private=\"yes\"",
        ],
    );
    assert!(!bad.status.success());
    let stdout = String::from_utf8_lossy(&bad.stdout);
    assert!(
        stdout.starts_with("400 network set ") && stdout.contains("private:"),
        "{stdout}"
    );

    // members: authorize one that never joined, list, show, deauthorize, delete
    let m = json(&ctl(
        &lab,
        &ns,
        &node,
        &["-j", "member", "authorize", &nwid, "0a33989140"],
    ));
    assert_eq!(m["authorized"], true);
    assert_eq!(m["lastAuthorizedCredentialType"], "api");
    ctl(
        &lab,
        &ns,
        &node,
        &[
            "member",
            "set",
            &nwid,
            "0a33989140",
            "name=laptop",
            "ipAssignments=[\"10.44.0.15\"]",
        ],
    );
    let members = ctl(&lab, &ns, &node, &["member", "list", &nwid]);
    let rows: Vec<&str> = members.lines().collect();
    assert_eq!(rows.len(), 2, "{members}");
    assert!(
        rows[1].starts_with("0a33989140") && rows[1].contains("yes"),
        "{members}"
    );
    assert!(
        rows[1].contains("laptop") && rows[1].contains("10.44.0.15"),
        "{members}"
    );
    let show = ctl(&lab, &ns, &node, &["member", "show", &nwid, "0a33989140"]);
    assert!(
        show.lines()
            .any(|l| l.starts_with("authorized") && l.ends_with(" true")),
        "{show}"
    );
    let export = json(&ctl(
        &lab,
        &ns,
        &node,
        &["member", "export", &nwid, "0a33989140"],
    ));
    assert_eq!(export["member"]["name"], "laptop", "{export}");
    let m = json(&ctl(
        &lab,
        &ns,
        &node,
        &["-j", "member", "deauthorize", &nwid, "0a33989140"],
    ));
    assert_eq!(m["authorized"], false);
    assert!(m["lastDeauthorizedTime"].as_i64().unwrap() > 0);
    let out = ctl(&lab, &ns, &node, &["member", "delete", &nwid, "0a33989140"]);
    assert_eq!(out.trim(), format!("deleted member 0a33989140 of {nwid}"));
    let members = json(&ctl(&lab, &ns, &node, &["-j", "member", "list", &nwid]));
    assert_eq!(members["meta"]["totalCount"], 0);

    // delete the network; the list is empty again and its file is gone
    let out = ctl(&lab, &ns, &node, &["network", "delete", &nwid]);
    assert_eq!(out.trim(), format!("deleted network {nwid}"));
    let list = json(&ctl(&lab, &ns, &node, &["-j", "network", "list"]));
    assert_eq!(list["meta"]["networkCount"], 0);
    assert!(
        !node
            .home
            .join(format!("controller.d/network/{nwid}.json"))
            .exists()
    );
    node.stop(&lab);
}
