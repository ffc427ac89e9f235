//! Real `weft daemon` processes in a [`netns`](crate::netns) lab: homes with reference
//! identities, a private planet per test, moons, the local HTTP API, and polling of each node's
//! own state (`<home>/status.json`).
//!
//! Every test builds its own planet (`weft idtool planet init`) whose roots are lab nodes, and
//! installs it as `<home>/planet` on every node before it starts, so no node ever contacts the
//! public ZeroTier roots (and none could: lab namespaces have no link to the host). Homes live in
//! the lab's log directory, so they (status files, identities, peer caches) are kept with the
//! logs when a test fails.

use std::ffi::OsStr;
use std::fs;
use std::io::{BufRead as _, BufReader, Read as _, Write as _};
use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde_json::Value;

use crate::netns::{Lab, Ns, Proc};

/// The UDP (and local HTTP API) port every lab node uses; each node has its own namespace.
pub const PORT: u16 = 9993;

/// `local.conf` of every lab node: no TCP fallback relay, no port mapping (UPnP/NAT-PMP)
/// unless a test turns it on with [`WeftNode::write_local_conf`].
pub const LOCAL_CONF: &str =
    r#"{"settings": {"allowTcpFallbackRelay": false, "portMappingEnabled": false}}"#;

/// Environment variable naming the `weft` binary to run instead of building one.
pub const BIN_ENV: &str = "WEFT_BIN";

/// Milliseconds since the Unix epoch, the clock `status.json` timestamps use.
pub fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

/// The `weft` binary, built once per test process.
///
/// `$WEFT_BIN` wins when set. Otherwise this runs `cargo build -p weft --bin weft` (the dev
/// profile, which is also what `cargo test --workspace` builds the binary with, so this is a
/// no-op there) and takes the executable path from cargo's own report, so a stale binary is
/// never tested. Panics with cargo's output when the build fails.
pub fn weft_bin() -> &'static Path {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| {
        if let Some(p) = std::env::var_os(BIN_ENV) {
            let p = PathBuf::from(p);
            assert!(p.is_file(), "{BIN_ENV}={} is not a file", p.display());
            return p;
        }
        let manifest = Path::new(env!("CARGO_MANIFEST_DIR")).join("../Cargo.toml");
        let started = Instant::now();
        let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
        let out = Command::new(&cargo)
            .args([
                "build",
                "-p",
                "weft",
                "--bin",
                "weft",
                "--message-format=json",
            ])
            .arg("--manifest-path")
            .arg(&manifest)
            .stdin(Stdio::null())
            .output()
            .unwrap_or_else(|e| {
                panic!(
                    "cannot run `{} build -p weft` to get the weft binary: {e} \
                     (set {BIN_ENV} to a built binary instead)",
                    cargo.to_string_lossy()
                )
            });
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "`cargo build -p weft --bin weft` failed ({}); the netns scenarios need the weft \
             binary\nstderr:\n{}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
        let exe = stdout
            .lines()
            .filter_map(|l| serde_json::from_str::<Value>(l).ok())
            .filter(|m| m["reason"] == "compiler-artifact" && m["target"]["name"] == "weft")
            .find_map(|m| m["executable"].as_str().map(PathBuf::from))
            .unwrap_or_else(|| {
                panic!("`cargo build -p weft --bin weft` reported no weft executable:\n{stdout}")
            });
        assert!(
            exe.is_file(),
            "cargo reported {} but it is missing",
            exe.display()
        );
        eprintln!(
            "weft binary: {} (cargo build took {:.1} s)",
            exe.display(),
            started.elapsed().as_secs_f64()
        );
        exe
    })
}

/// Runs `weft <args>` on the host (idtool commands only: no networking) in `dir`, returning
/// stdout; panics with the command's output when it fails.
pub fn weft(dir: &Path, args: &[&OsStr]) -> String {
    let out = Command::new(weft_bin())
        .args(args)
        .current_dir(dir)
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("cannot run {}: {e}", weft_bin().display()));
    let line = args
        .iter()
        .map(|a| a.to_string_lossy())
        .collect::<Vec<_>>()
        .join(" ");
    assert!(
        out.status.success(),
        "`weft {line}` failed ({})\nstdout: {}\nstderr: {}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Writes a private planet to `<dir>/planet` whose roots are `roots` (each a node and the IPv4
/// address it is reachable at, port [`PORT`]), with fresh signing keys in `<dir>/planet-keys`.
/// Returns the file.
pub fn private_planet(dir: &Path, world_id: u64, roots: &[(&WeftNode, Ipv4Addr)]) -> PathBuf {
    let keys = dir.join("planet-keys");
    fs::create_dir_all(&keys).unwrap_or_else(|e| panic!("creating {}: {e}", keys.display()));
    let file = dir.join("planet");
    let id = format!("{world_id:#x}");
    let mut args: Vec<std::ffi::OsString> = ["idtool", "planet", "init", "--id", &id]
        .iter()
        .map(Into::into)
        .collect();
    for (node, ip) in roots {
        let mut spec = node.identity_public().into_os_string();
        spec.push(format!("@{ip}/{PORT}"));
        args.push("--root".into());
        args.push(spec);
    }
    args.push("--keys-dir".into());
    args.push(keys.into_os_string());
    args.push("-o".into());
    args.push(file.clone().into_os_string());
    let argv: Vec<&OsStr> = args.iter().map(|a| a.as_os_str()).collect();
    weft(dir, &argv);
    file
}

/// Writes a moon whose single root is `root`, reachable at `ip` port [`PORT`]
/// (`weft idtool initmoon` + `genmoon` in `dir`). Returns the `<16 hex id>.moon` file.
pub fn moon(dir: &Path, root: &WeftNode, ip: Ipv4Addr) -> PathBuf {
    fs::create_dir_all(dir).unwrap_or_else(|e| panic!("creating {}: {e}", dir.display()));
    let template = weft(
        dir,
        &[
            OsStr::new("idtool"),
            OsStr::new("initmoon"),
            root.identity_public().as_os_str(),
        ],
    );
    let mut json: Value = serde_json::from_str(&template)
        .unwrap_or_else(|e| panic!("initmoon printed no JSON ({e}):\n{template}"));
    json["roots"][0]["stableEndpoints"] = serde_json::json!([format!("{ip}/{PORT}")]);
    let id = u64::from_str_radix(json["id"].as_str().expect("initmoon id"), 16)
        .expect("initmoon id is hex");
    let desc = dir.join("moon.json");
    fs::write(&desc, serde_json::to_vec_pretty(&json).expect("JSON"))
        .unwrap_or_else(|e| panic!("writing {}: {e}", desc.display()));
    weft(
        dir,
        &[
            OsStr::new("idtool"),
            OsStr::new("genmoon"),
            desc.as_os_str(),
        ],
    );
    let file = dir.join(format!("{id:016x}.moon"));
    assert!(file.is_file(), "genmoon did not write {}", file.display());
    file
}

/// A `weft daemon` home in a lab namespace, and the daemon once started.
#[derive(Debug)]
pub struct WeftNode {
    /// Short name (log labels, messages).
    pub label: String,
    /// The namespace the daemon runs in.
    pub ns: Ns,
    /// The home folder.
    pub home: PathBuf,
    address: String,
    proc: Option<Proc>,
}

impl WeftNode {
    /// Creates `<lab log dir>/home-<label>` holding identity number `identity` (0..10) of the
    /// reference vectors (`identities.jsonl`); nothing runs yet. Reference identities are used
    /// because generating one (memory-hard hash) takes seconds in a debug build; nodes of one
    /// test must use distinct numbers, different tests may share them (their labs are isolated).
    pub fn new(lab: &Lab, ns: &Ns, label: &str, identity: usize) -> WeftNode {
        let home = lab.log_dir().join(format!("home-{label}"));
        fs::create_dir_all(home.join("moons.d"))
            .unwrap_or_else(|e| panic!("creating {}: {e}", home.display()));
        let ids = test_identities();
        let id = ids.get(identity).unwrap_or_else(|| {
            panic!(
                "there are {} reference identities, not {}",
                ids.len(),
                identity + 1
            )
        });
        fs::write(home.join("identity.secret"), &id.secret)
            .unwrap_or_else(|e| panic!("writing {label}'s identity.secret: {e}"));
        fs::write(home.join("identity.public"), &id.public)
            .unwrap_or_else(|e| panic!("writing {label}'s identity.public: {e}"));
        // Never reach for ZeroTier's public TCP relay (it is unreachable from a lab namespace
        // anyway; this makes the intent explicit and keeps the logs quiet).
        fs::write(home.join("local.conf"), LOCAL_CONF)
            .unwrap_or_else(|e| panic!("writing {label}'s local.conf: {e}"));
        WeftNode {
            label: label.to_string(),
            ns: ns.clone(),
            home,
            address: id.address.clone(),
            proc: None,
        }
    }

    /// The node's 10-hex-digit address.
    pub fn address(&self) -> &str {
        &self.address
    }

    /// `<home>/identity.public`.
    pub fn identity_public(&self) -> PathBuf {
        self.home.join("identity.public")
    }

    /// Replaces `<home>/local.conf` (read when the daemon starts).
    pub fn write_local_conf(&self, conf: &Value) {
        let p = self.home.join("local.conf");
        fs::write(&p, serde_json::to_vec_pretty(conf).expect("JSON"))
            .unwrap_or_else(|e| panic!("writing {}: {e}", p.display()));
    }

    /// Copies a planet file to `<home>/planet`.
    pub fn install_planet(&self, planet: &Path) {
        let dest = self.home.join("planet");
        fs::copy(planet, &dest)
            .unwrap_or_else(|e| panic!("copying {} to {}: {e}", planet.display(), dest.display()));
    }

    /// Copies a moon file to `<home>/moons.d/` (same file name).
    pub fn install_moon(&self, moon: &Path) {
        let dest = self
            .home
            .join("moons.d")
            .join(moon.file_name().expect("moon file name"));
        fs::copy(moon, &dest)
            .unwrap_or_else(|e| panic!("copying {} to {}: {e}", moon.display(), dest.display()));
    }

    /// Starts `weft daemon <home> -p 9993` in the node's namespace. The planet must have been
    /// installed (a home without one would fall back to the public planet).
    pub fn start(&mut self, lab: &Lab) {
        assert!(
            self.home.join("planet").is_file(),
            "{}: install a private planet before starting (never use the public one)",
            self.label
        );
        assert!(self.proc.is_none(), "{} is already running", self.label);
        let _ = fs::remove_file(self.home.join(STATUS_FILE));
        let mut cmd = Command::new(weft_bin());
        cmd.arg("daemon")
            .arg(&self.home)
            .args(["-p", &PORT.to_string()]);
        self.proc = Some(lab.spawn(&self.ns, &self.label, &cmd));
    }

    /// Stops the daemon (SIGTERM, SIGKILL after 3 s) and checks that it exited cleanly.
    pub fn stop(&mut self, lab: &Lab) {
        let p = self.proc.take().expect("node not running");
        let st = lab.stop(p);
        assert!(
            st.is_some_and(|s| s.success()),
            "{} did not exit cleanly on SIGTERM: {st:?}\nstderr:\n{}",
            self.label,
            lab.stderr(p)
        );
    }

    /// Crashes the daemon: SIGKILL, no shutdown path runs.
    pub fn kill(&mut self, lab: &Lab) {
        let p = self.proc.take().expect("node not running");
        lab.kill(p);
    }

    /// Panics (with the daemon's stderr) when the daemon has exited.
    #[track_caller]
    pub fn assert_running(&self, lab: &Lab) {
        let p = self.proc.expect("node not started");
        if let Some(st) = lab.try_wait(p) {
            panic!(
                "{} ({}) exited: {st}\nstderr:\n{}",
                self.label,
                self.address,
                lab.stderr(p)
            );
        }
    }

    /// The node's last published state (`<home>/status.json`), if it has written one.
    pub fn status(&self) -> Option<Value> {
        let text = fs::read(self.home.join(STATUS_FILE)).ok()?;
        serde_json::from_slice(&text).ok()
    }

    /// Polls the node's own state every 200 ms until `pred` holds, for at most `timeout`;
    /// returns the status that satisfied it. On timeout panics with `what` and the last status
    /// seen; panics at once if the daemon exits.
    #[track_caller]
    pub fn wait_for(
        &self,
        lab: &Lab,
        what: &str,
        timeout: Duration,
        mut pred: impl FnMut(&Value) -> bool,
    ) -> Value {
        let start = Instant::now();
        let mut last = None;
        loop {
            self.assert_running(lab);
            if let Some(s) = self.status() {
                if pred(&s) {
                    eprintln!(
                        "{}: {what} after {:.1} s",
                        self.label,
                        start.elapsed().as_secs_f64()
                    );
                    return s;
                }
                last = Some(s);
            }
            if start.elapsed() >= timeout {
                panic!(
                    "{} ({}): not {what} within {timeout:?}; last status.json:\n{}",
                    self.label,
                    self.address,
                    last.map_or_else(
                        || "(none written)".to_string(),
                        |s| serde_json::to_string_pretty(&s).unwrap_or_default()
                    )
                );
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// Waits until the node reports itself online.
    #[track_caller]
    pub fn wait_online(&self, lab: &Lab, timeout: Duration) -> Value {
        self.wait_for(lab, "online", timeout, |s| s["status"]["online"] == true)
    }

    /// The local API token (`<home>/authtoken.secret`), waiting up to 10 s for the daemon to
    /// create it.
    pub fn authtoken(&self, lab: &Lab) -> String {
        let path = self.home.join("authtoken.secret");
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Ok(t) = fs::read_to_string(&path)
                && !t.trim().is_empty()
            {
                return t.trim().to_string();
            }
            self.assert_running(lab);
            assert!(
                Instant::now() < deadline,
                "{}: the daemon did not create {} within 10 s",
                self.label,
                path.display()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// One request to the node's local HTTP API (`127.0.0.1:9993` inside its namespace) with
    /// its auth token; returns the status code and body. Retries the connection for up to 10 s
    /// (the API may still be starting); panics if it never answers.
    pub fn api(&self, lab: &Lab, method: &str, path: &str) -> (u16, String) {
        let token = self.authtoken(lab);
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let r = lab.in_ns(&self.ns, || http_request(method, path, &token));
            match r {
                Ok(resp) => return resp,
                Err(e) => {
                    self.assert_running(lab);
                    assert!(
                        Instant::now() < deadline,
                        "{}: {method} {path} on the local API failed: {e}",
                        self.label
                    );
                    std::thread::sleep(Duration::from_millis(200));
                }
            }
        }
    }

    /// A request with a JSON body to the local API; returns the status code and body (retries
    /// the connection like [`WeftNode::api`]).
    pub fn api_body(&self, lab: &Lab, method: &str, path: &str, body: &Value) -> (u16, String) {
        let token = self.authtoken(lab);
        let text = body.to_string();
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            match lab.in_ns(&self.ns, || http_request_body(method, path, &token, &text)) {
                Ok(resp) => return resp,
                Err(e) => {
                    self.assert_running(lab);
                    assert!(
                        Instant::now() < deadline,
                        "{}: {method} {path} on the local API failed: {e}",
                        self.label
                    );
                    std::thread::sleep(Duration::from_millis(200));
                }
            }
        }
    }

    /// `POST <path>` with a JSON body; must answer 200 with JSON.
    #[track_caller]
    pub fn api_post(&self, lab: &Lab, path: &str, body: &Value) -> Value {
        let (code, text) = self.api_body(lab, "POST", path, body);
        assert_eq!(
            code, 200,
            "{}: POST {path} answered {code}: {text}",
            self.label
        );
        serde_json::from_str(&text)
            .unwrap_or_else(|e| panic!("{}: POST {path} is not JSON ({e}): {text}", self.label))
    }

    /// `GET <path>` on the local API, which must answer 200 with JSON.
    #[track_caller]
    pub fn api_get(&self, lab: &Lab, path: &str) -> Value {
        let (code, body) = self.api(lab, "GET", path);
        assert_eq!(
            code, 200,
            "{}: GET {path} answered {code}: {body}",
            self.label
        );
        serde_json::from_str(&body)
            .unwrap_or_else(|e| panic!("{}: GET {path} is not JSON ({e}): {body}", self.label))
    }

    /// `POST /unstable/ping/<addr>`: makes the node send a USER_MESSAGE to `peer` through its
    /// normal send path. Panics unless the API answers 2xx.
    #[track_caller]
    pub fn ping(&self, lab: &Lab, peer: &str) {
        let path = format!("/unstable/ping/{peer}");
        let (code, body) = self.api(lab, "POST", &path);
        assert!(
            (200..300).contains(&code),
            "{}: POST {path} answered {code}: {body}",
            self.label
        );
    }
}

/// A reference identity (secret and public text forms, address).
#[derive(Debug, Clone)]
pub struct TestIdentity {
    /// `address:0:public:private`.
    pub secret: String,
    /// `address:0:public`.
    pub public: String,
    /// 10 hex digits.
    pub address: String,
}

/// The valid identities of the reference vectors (`identities.jsonl`, with private keys).
pub fn test_identities() -> &'static [TestIdentity] {
    static IDS: OnceLock<Vec<TestIdentity>> = OnceLock::new();
    IDS.get_or_init(|| {
        crate::read_jsonl("identities.jsonl")
            .iter()
            .map(|v| {
                let field = |k: &str| {
                    v[k].as_str()
                        .unwrap_or_else(|| panic!("identities.jsonl: no {k:?} in {v}"))
                        .to_string()
                };
                TestIdentity {
                    secret: field("secret"),
                    public: field("public"),
                    address: field("address"),
                }
            })
            .collect()
    })
}

/// The file the daemon rewrites every second.
pub const STATUS_FILE: &str = "status.json";

/// The peer `address` in a status document (`peers` array), if listed.
pub fn peer<'a>(status: &'a Value, address: &str) -> Option<&'a Value> {
    status["peers"]
        .as_array()?
        .iter()
        .find(|p| p["address"] == address)
}

/// The peer's preferred direct path address (`ip/port`), if it has one.
pub fn preferred_path(peer: &Value) -> Option<&str> {
    peer["paths"]
        .as_array()?
        .iter()
        .find(|p| p["preferred"] == true)
        .and_then(|p| p["address"].as_str())
}

/// Whether the peer has any direct path whose IP is `ip`.
pub fn has_path_at(peer: &Value, ip: Ipv4Addr) -> bool {
    paths(peer).iter().any(|p| path_ip(p) == Some(ip))
}

/// The peer's direct paths (empty when relayed).
pub fn paths(peer: &Value) -> Vec<&Value> {
    peer["paths"]
        .as_array()
        .map(|a| a.iter().collect())
        .unwrap_or_default()
}

/// The IPv4 address of a path object (`"address": "ip/port"`).
pub fn path_ip(path: &Value) -> Option<Ipv4Addr> {
    path["address"].as_str()?.split('/').next()?.parse().ok()
}

/// The newest `lastReceive` over a peer's direct paths (0 when it has none).
pub fn newest_path_receive(peer: &Value) -> i64 {
    paths(peer)
        .iter()
        .filter_map(|p| p["lastReceive"].as_i64())
        .max()
        .unwrap_or(0)
}

/// A minimal HTTP/1.1 request to `127.0.0.1:PORT` (call inside the node's namespace).
fn http_request(method: &str, path: &str, token: &str) -> std::io::Result<(u16, String)> {
    http_request_body(method, path, token, "")
}

fn http_request_body(
    method: &str,
    path: &str,
    token: &str,
    body: &str,
) -> std::io::Result<(u16, String)> {
    let addr = SocketAddr::from(([127, 0, 0, 1], PORT));
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(2))?;
    s.set_read_timeout(Some(Duration::from_secs(10)))?;
    s.set_write_timeout(Some(Duration::from_secs(10)))?;
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{PORT}\r\nX-ZT1-Auth: {token}\r\n\
         Content-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )?;
    s.flush()?;
    let mut r = BufReader::new(s);
    let mut status_line = String::new();
    r.read_line(&mut status_line)?;
    let code = status_line
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse::<u16>().ok())
        .ok_or_else(|| std::io::Error::other(format!("bad HTTP status line {status_line:?}")))?;
    let mut chunked = false;
    let mut length = None;
    loop {
        let mut line = String::new();
        if r.read_line(&mut line)? == 0 {
            break;
        }
        let line = line.trim_end();
        if line.is_empty() {
            break;
        }
        if let Some((k, v)) = line.split_once(':') {
            let (k, v) = (k.trim().to_ascii_lowercase(), v.trim());
            if k == "transfer-encoding" && v.eq_ignore_ascii_case("chunked") {
                chunked = true;
            } else if k == "content-length" {
                length = v.parse::<usize>().ok();
            }
        }
    }
    let mut body = Vec::new();
    if chunked {
        loop {
            let mut size = String::new();
            r.read_line(&mut size)?;
            let n = usize::from_str_radix(size.trim().split(';').next().unwrap_or(""), 16)
                .map_err(|_| std::io::Error::other(format!("bad chunk size {size:?}")))?;
            let mut chunk = vec![0; n + 2];
            r.read_exact(&mut chunk)?;
            if n == 0 {
                break;
            }
            body.extend_from_slice(&chunk[..n]);
        }
    } else if let Some(n) = length {
        body.resize(n, 0);
        r.read_exact(&mut body)?;
    } else {
        r.read_to_end(&mut body)?;
    }
    Ok((code, String::from_utf8_lossy(&body).into_owned()))
}
