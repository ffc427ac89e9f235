//! What is measured: bare veth, weft (per data-plane back-end) and the comparators, each set up
//! on a fresh pair of namespaces joined by a veth pair (`10.77.<index>.1` ↔ `.2`, no default
//! route). Setup ends with the address the client namespace sends to.

use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use serde_json::{Value, json};

use crate::sys::{Registry, ip, ns_exec, which};

/// The ZeroTier-style primary port (UDP) and local API port (TCP, loopback).
const ZT_PORT: u16 = 9993;
const WG_PORT: u16 = 51820;

/// A kind of subject.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Kind {
    Veth,
    Weft { backend: String },
    ZeroTierOne,
    WireguardKernel,
    WireguardGo,
    Boringtun,
}

impl Kind {
    /// The kind's name (`--only` takes these, or a subject's full name).
    pub(crate) fn name(&self) -> &'static str {
        match self {
            Kind::Veth => "veth",
            Kind::Weft { .. } => "weft",
            Kind::ZeroTierOne => "zerotier-one",
            Kind::WireguardKernel => "wireguard-kernel",
            Kind::WireguardGo => "wireguard-go",
            Kind::Boringtun => "boringtun",
        }
    }

    pub(crate) const NAMES: [&str; 6] = [
        "veth",
        "weft",
        "zerotier-one",
        "wireguard-kernel",
        "wireguard-go",
        "boringtun",
    ];
}

/// One subject of the run.
#[derive(Debug, Clone)]
pub(crate) struct Subject {
    /// Unique: `veth`, `weft-<backend>`, or the kind's name.
    pub name: String,
    pub kind: Kind,
}

/// Where the client sends from and the server listens.
#[derive(Debug)]
pub(crate) struct Endpoints {
    pub client_ns: String,
    pub server_ns: String,
    pub target: Ipv4Addr,
    pub notes: Vec<String>,
}

/// What setup needs from the run.
#[derive(Debug)]
pub(crate) struct Ctx {
    pub reg: Registry,
    /// This executable (re-run in the namespaces).
    pub exe: PathBuf,
    pub weft: Option<PathBuf>,
    /// `weftperf<pid>`: the prefix of every namespace name.
    pub tag: String,
    /// The run's work folder.
    pub dir: PathBuf,
    pub stop: Arc<AtomicBool>,
}

/// Programs a subject needs: `Err(reason)` when one is missing.
pub(crate) fn availability(kind: &Kind, weft: Option<&Path>) -> Result<(), String> {
    let need = |name: &str| {
        which(name)
            .map(|_| ())
            .ok_or_else(|| format!("not installed (no `{name}` in PATH)"))
    };
    match kind {
        Kind::Veth => Ok(()),
        Kind::Weft { .. } => weft.map(|_| ()).ok_or_else(|| {
            "no weft binary (none next to weft-perf or in PATH; give --weft PATH)".into()
        }),
        Kind::ZeroTierOne => {
            need("zerotier-one")?;
            weft.map(|_| ()).ok_or_else(|| {
                "the private planet is made with `weft idtool`: no weft binary".into()
            })
        }
        Kind::WireguardKernel => need("wg"),
        Kind::WireguardGo => {
            need("wireguard-go")?;
            need("wg")
        }
        Kind::Boringtun => {
            need("boringtun-cli")?;
            need("wg")
        }
    }
}

/// Builds subject `idx`'s namespaces and tunnel. `Ok(Err(reason))`: the machine cannot run
/// it (a comparator the kernel lacks), which is a skip, not a failure.
pub(crate) fn setup(
    ctx: &Ctx,
    idx: usize,
    s: &Subject,
    say: &dyn Fn(&str),
) -> Result<Result<Endpoints, String>> {
    let a = format!("{}-{idx}a", ctx.tag);
    let b = format!("{}-{idx}b", ctx.tag);
    say("namespaces and the veth pair");
    ctx.reg.add_namespace(&a)?;
    ctx.reg.add_namespace(&b)?;
    ip(&[
        "-n", &a, "link", "add", "ula", "type", "veth", "peer", "name", "ulb",
    ])?;
    ip(&["-n", &a, "link", "set", "ulb", "netns", &b])?;
    let under = |host: u8| format!("10.77.{idx}.{host}");
    for (ns, dev, host) in [(&a, "ula", 1), (&b, "ulb", 2)] {
        ip(&[
            "-n",
            ns,
            "addr",
            "add",
            &format!("{}/24", under(host)),
            "dev",
            dev,
        ])?;
        ip(&["-n", ns, "link", "set", dev, "up"])?;
    }
    let mut notes = vec![format!(
        "namespaces {a} ({}) and {b} ({}) on a veth pair",
        under(1),
        under(2)
    )];
    let target = match &s.kind {
        Kind::Veth => under(2).parse()?,
        Kind::Weft { backend } => {
            let weft = ctx.weft.as_deref().context("no weft binary")?;
            zt_setup(ctx, idx, s, &a, &b, weft, Some(backend), say, &mut notes)?
        }
        Kind::ZeroTierOne => {
            let zt = which("zerotier-one").context("zerotier-one")?;
            zt_setup(ctx, idx, s, &a, &b, &zt, None, say, &mut notes)?
        }
        Kind::WireguardKernel | Kind::WireguardGo | Kind::Boringtun => {
            match wg_setup(ctx, idx, s, &a, &b, say, &mut notes)? {
                Ok(t) => t,
                Err(reason) => return Ok(Err(reason)),
            }
        }
    };
    Ok(Ok(Endpoints {
        client_ns: a,
        server_ns: b,
        target,
        notes,
    }))
}

fn wait<T>(
    ctx: &Ctx,
    what: &str,
    timeout: Duration,
    mut f: impl FnMut() -> Option<T>,
) -> Result<T> {
    let start = Instant::now();
    loop {
        if ctx.stop.load(Ordering::SeqCst) {
            bail!("interrupted");
        }
        if let Some(v) = f() {
            return Ok(v);
        }
        if start.elapsed() > timeout {
            bail!("{what}: not within {timeout:?}");
        }
        std::thread::sleep(Duration::from_millis(250));
    }
}

/// A request to the local API of the node whose home is `home`, from inside namespace `ns`
/// (through `weft-perf __api`).
fn api(ctx: &Ctx, ns: &str, home: &Path, method: &str, path: &str, body: Value) -> Result<Value> {
    let token = home.join("authtoken.secret");
    let body = if body.is_null() {
        String::new()
    } else {
        body.to_string()
    };
    let out = ns_exec(
        ns,
        &ctx.exe,
        &[
            "__api",
            "--port",
            &ZT_PORT.to_string(),
            "--token-file",
            &token.to_string_lossy(),
            "--body",
            &body,
            method,
            path,
        ],
    )?;
    Ok(serde_json::from_str(&out)?)
}

/// Two ZeroTier-compatible daemons (weft, or zerotier-one): `a` is the private planet's only
/// root, runs the controller with one network and joins it; `b` joins it. Returns `b`'s
/// managed address.
#[allow(clippy::too_many_arguments)]
fn zt_setup(
    ctx: &Ctx,
    idx: usize,
    s: &Subject,
    a_ns: &str,
    b_ns: &str,
    program: &Path,
    backend: Option<&str>,
    say: &dyn Fn(&str),
    notes: &mut Vec<String>,
) -> Result<Ipv4Addr> {
    let weft = ctx.weft.as_deref().context("no weft binary for idtool")?;
    let dir = ctx.dir.join(&s.name);
    let homes = [dir.join("a"), dir.join("b")];
    ctx.reg.add_dir(dir.clone());
    say("identities and a private planet (weft idtool)");
    for h in &homes {
        std::fs::create_dir_all(h)?;
        run(Command::new(weft)
            .arg("idtool")
            .arg("generate")
            .arg(h.join("identity.secret"))
            .arg(h.join("identity.public")))?;
    }
    let root_ip = format!("10.77.{idx}.1");
    let mut id = [0u8; 4];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| std::io::Read::read_exact(&mut f, &mut id))
        .context("/dev/urandom")?;
    std::fs::create_dir_all(dir.join("keys"))?;
    let planet_id = 0x7765_6674_0000_0000u64 | u64::from(u32::from_be_bytes(id));
    run(Command::new(weft)
        .args(["idtool", "planet", "init", "--id"])
        .arg(format!("{planet_id:#x}"))
        .arg("--root")
        .arg(format!(
            "{}@{root_ip}/{ZT_PORT}",
            homes[0].join("identity.public").display()
        ))
        .arg("--keys-dir")
        .arg(dir.join("keys"))
        .arg("-o")
        .arg(dir.join("planet")))?;
    let mut settings = json!({"allowTcpFallbackRelay": false, "portMappingEnabled": false});
    // `mmsg/w2`: back-end mmsg with 2 data-plane workers
    let (backend, workers) = match backend.map(|b| b.split_once("/w")) {
        Some(Some((b, w))) => (Some(b), w.parse::<u16>().ok()),
        _ => (backend, None),
    };
    if let Some(b) = backend {
        // the daemon's data-plane back-end switch (ignored by daemons that predate it)
        settings["dataplane"] = json!({"backend": b});
        if let Some(w) = workers {
            settings["dataplane"]["workers"] = json!(w);
        }
    }
    for (i, h) in homes.iter().enumerate() {
        std::fs::copy(dir.join("planet"), h.join("planet"))?;
        let mut settings = settings.clone();
        if backend == Some("af_xdp") {
            // AF_XDP steers one interface's packets: bind that interface's address
            settings["bind"] = json!([format!("10.77.{idx}.{}", i + 1)]);
        }
        std::fs::write(
            h.join("local.conf"),
            serde_json::to_string_pretty(&json!({"settings": settings}))?,
        )?;
    }
    say("starting the daemons");
    for (ns, h) in [(a_ns, &homes[0]), (b_ns, &homes[1])] {
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", ns]).arg(program);
        if backend.is_some() {
            cmd.arg("daemon").arg(h).args(["-p", &ZT_PORT.to_string()]);
        } else {
            cmd.arg(format!("-p{ZT_PORT}")).arg(h);
        }
        ctx.reg.spawn(
            &format!("{} daemon", s.name),
            &mut cmd,
            Some(&h.join("daemon.log")),
        )?;
    }
    for h in &homes {
        wait(ctx, "authtoken.secret", Duration::from_secs(20), || {
            std::fs::read_to_string(h.join("authtoken.secret"))
                .ok()
                .filter(|t| !t.trim().is_empty())
        })?;
    }
    let address = |h: &Path| -> Result<String> {
        let p = std::fs::read_to_string(h.join("identity.public"))?;
        Ok(p.split(':').next().unwrap_or("").to_string())
    };
    let (addr_a, addr_b) = (address(&homes[0])?, address(&homes[1])?);
    wait(ctx, "the root's API", Duration::from_secs(30), || {
        api(ctx, a_ns, &homes[0], "GET", "/status", Value::Null).ok()
    })?;
    say("waiting for the member to reach the root");
    wait(ctx, "member online", Duration::from_secs(60), || {
        api(ctx, b_ns, &homes[1], "GET", "/status", Value::Null)
            .ok()
            .filter(|s| s["online"] == true)
    })?;
    say("a network on the controller; both join");
    let net = api(
        ctx,
        a_ns,
        &homes[0],
        "POST",
        &format!("/controller/network/{addr_a}______"),
        json!({
            "name": "weft-perf",
            "v4AssignMode": {"zt": true},
            "ipAssignmentPools": [{"ipRangeStart": format!("10.78.{idx}.1"), "ipRangeEnd": format!("10.78.{idx}.254")}],
            "routes": [{"target": format!("10.78.{idx}.0/24"), "via": null}],
        }),
    )?;
    let nwid = net["id"].as_str().context("network id")?.to_string();
    for (ns, h, addr) in [(a_ns, &homes[0], &addr_a), (b_ns, &homes[1], &addr_b)] {
        api(ctx, ns, h, "POST", &format!("/network/{nwid}"), json!({}))?;
        api(
            ctx,
            a_ns,
            &homes[0],
            "POST",
            &format!("/controller/network/{nwid}/member/{addr}"),
            json!({"authorized": true}),
        )?;
    }
    say("waiting for the managed addresses");
    let mut ips = Vec::new();
    for (ns, h) in [(a_ns, &homes[0]), (b_ns, &homes[1])] {
        let ip4 = wait(ctx, "network configured", Duration::from_secs(60), || {
            let n = api(ctx, ns, h, "GET", &format!("/network/{nwid}"), Value::Null).ok()?;
            (n["status"] == "OK").then_some(())?;
            n["assignedAddresses"]
                .as_array()?
                .iter()
                .filter_map(|x| x.as_str()?.split('/').next()?.parse::<Ipv4Addr>().ok())
                .next()
        })?;
        ips.push(ip4);
    }
    notes.push(format!(
        "network {nwid}: {addr_a} (root + controller) {} → {addr_b} {}",
        ips[0], ips[1]
    ));
    if let Some(b) = backend {
        notes.push(format!("local.conf settings.dataplane.backend = {b:?}"));
    }
    Ok(ips[1])
}

fn run(cmd: &mut Command) -> Result<String> {
    let out = cmd
        .stdin(Stdio::null())
        .output()
        .with_context(|| format!("running {:?}", cmd.get_program()))?;
    if !out.status.success() {
        bail!(
            "{:?}: {}",
            cmd.get_program(),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// A WireGuard tunnel between the namespaces: kernel, wireguard-go or boringtun, configured
/// with `wg`. Overlay `10.79.<index>.1` ↔ `.2`.
fn wg_setup(
    ctx: &Ctx,
    idx: usize,
    s: &Subject,
    a_ns: &str,
    b_ns: &str,
    say: &dyn Fn(&str),
    notes: &mut Vec<String>,
) -> Result<Result<Ipv4Addr, String>> {
    let wg = which("wg").context("wg")?;
    let dir = ctx.dir.join(&s.name);
    std::fs::create_dir_all(&dir)?;
    ctx.reg.add_dir(dir.clone());
    // interface names are global in /var/run/wireguard (the userspace UAPI sockets): unique
    let ifname = |side: &str| format!("wp{}{idx}{side}", std::process::id() % 100_000);
    say("keys and interfaces");
    let mut keys = Vec::new();
    for side in ["a", "b"] {
        let private = run(Command::new(&wg).arg("genkey"))?.trim().to_string();
        let mut child = Command::new(&wg)
            .arg("pubkey")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()?;
        std::io::Write::write_all(
            child.stdin.as_mut().context("stdin")?,
            format!("{private}\n").as_bytes(),
        )?;
        drop(child.stdin.take());
        let public = String::from_utf8(child.wait_with_output()?.stdout)?
            .trim()
            .to_string();
        let file = dir.join(format!("{side}.key"));
        std::fs::write(&file, format!("{private}\n"))?;
        keys.push((file, public));
    }
    for (ns, side) in [(a_ns, "a"), (b_ns, "b")] {
        let name = ifname(side);
        match s.kind {
            Kind::WireguardKernel => {
                if let Err(e) = ip(&["-n", ns, "link", "add", &name, "type", "wireguard"]) {
                    return Ok(Err(format!("the kernel has no WireGuard ({e})")));
                }
            }
            Kind::WireguardGo | Kind::Boringtun => {
                let mut cmd = Command::new("ip");
                cmd.args(["netns", "exec", ns]);
                if s.kind == Kind::WireguardGo {
                    cmd.arg(which("wireguard-go").context("wireguard-go")?)
                        .args(["-f", &name])
                        .env("WG_PROCESS_FOREGROUND", "1");
                } else {
                    cmd.arg(which("boringtun-cli").context("boringtun-cli")?)
                        .args(["-f", "--disable-drop-privileges", &name])
                        .env("WG_SUDO", "1");
                }
                ctx.reg
                    .spawn(&s.name, &mut cmd, Some(&dir.join(format!("{side}.log"))))?;
                wait(ctx, "the tunnel interface", Duration::from_secs(15), || {
                    ip(&["-n", ns, "link", "show", &name]).ok()
                })?;
            }
            _ => bail!("not a WireGuard subject"),
        }
    }
    for (ns, side, me, other, peer_key) in [
        (a_ns, "a", 0usize, 2u8, &keys[1].1),
        (b_ns, "b", 1, 1, &keys[0].1),
    ] {
        let name = ifname(side);
        ns_exec(
            ns,
            &wg,
            &[
                "set",
                &name,
                "listen-port",
                &WG_PORT.to_string(),
                "private-key",
                &keys[me].0.to_string_lossy(),
                "peer",
                peer_key,
                "allowed-ips",
                &format!("10.79.{idx}.{other}/32"),
                "endpoint",
                &format!("10.77.{idx}.{other}:{WG_PORT}"),
            ],
        )?;
        ip(&[
            "-n",
            ns,
            "addr",
            "add",
            &format!("10.79.{idx}.{}/24", me + 1),
            "dev",
            &name,
        ])?;
        ip(&["-n", ns, "link", "set", &name, "up"])?;
    }
    notes.push(format!(
        "WireGuard {} ↔ {}: 10.79.{idx}.1 → 10.79.{idx}.2",
        ifname("a"),
        ifname("b")
    ));
    Ok(Ok(format!("10.79.{idx}.2").parse()?))
}
