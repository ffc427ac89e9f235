//! The systemd unit: the settings the node relies on, and `systemd-analyze verify` where the
//! tool exists (with the unit's binary path pointed at the built `weft`).

use std::process::Command;

use weft_conformance::weftnode::weft_bin;

fn unit() -> String {
    let p =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../packaging/systemd/weft.service");
    std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

#[test]
fn unit_declares_notify_capabilities_and_state() {
    let u = unit();
    for line in [
        "Type=notify",
        "ExecStart=/usr/local/bin/weft daemon /var/lib/weft",
        "AmbientCapabilities=CAP_NET_ADMIN CAP_NET_RAW",
        "CapabilityBoundingSet=CAP_NET_ADMIN CAP_NET_RAW",
        "StateDirectory=weft",
        "NoNewPrivileges=yes",
        "ProtectSystem=strict",
    ] {
        assert!(u.lines().any(|l| l == line), "missing `{line}`");
    }
}

#[test]
fn unit_passes_systemd_analyze_where_available() {
    if Command::new("systemd-analyze")
        .arg("--version")
        .output()
        .is_err()
    {
        eprintln!("systemd-analyze not installed: syntax check skipped (settings checked above)");
        return;
    }
    let dir = std::env::temp_dir().join(format!("weft-unit-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("weft.service");
    let text = unit().replace("/usr/local/bin/weft", &weft_bin().display().to_string());
    std::fs::write(&path, text).unwrap();
    let out = Command::new("systemd-analyze")
        .arg("verify")
        .arg(&path)
        .output()
        .unwrap();
    let _ = std::fs::remove_dir_all(&dir);
    assert!(
        out.status.success() && out.stderr.is_empty(),
        "systemd-analyze verify: {}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
}
