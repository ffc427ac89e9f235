//! A network-namespace lab for multi-node scenario tests: isolated hosts, bridged LANs, NAT
//! routers and an "internet" segment, all built from Linux network namespaces, with the processes
//! started inside them tracked and killed when the test ends.
//!
//! ```no_run
//! use weft_conformance::netns::{Lab, NatKind};
//!
//! let Some(lab) = Lab::for_test("example") else { return };
//! let internet = lab.internet("203.0.113.0/24");
//! let root = lab.host("root");
//! let root_ip = lab.attach(&internet, &root);
//! let nat = lab.nat_router("nat", "192.168.1.0/24", &internet, NatKind::PortRestricted);
//! let leaf = lab.host("leaf");
//! lab.attach(&nat.lan, &leaf);
//! let out = lab.exec_ok(&leaf, &["ping", "-c1", "-W1", &root_ip.to_string()]);
//! # let _ = out;
//! ```
//!
//! Safety properties the lab keeps:
//!
//! * Nothing is ever created in, or changed in, the host's own network namespace: every `ip`
//!   command names a lab namespace (`ip -n NS ...`, or veth peers created directly inside their
//!   target namespace), and `iptables` and sysctls only run inside lab namespaces. No lab namespace
//!   has a link to the host, so no address is reachable from inside, whatever the routes say.
//! * Namespace names are unique across concurrent tests and processes:
//!   `wft<pid hex>x<lab counter hex>-<label>`. Interface names (`eth0`, `br0`, `p3`, ...) only
//!   need to be unique inside their own namespace.
//! * [`Lab`]'s `Drop` stops the processes it started (by PID, SIGTERM then SIGKILL, only children
//!   it has not yet reaped) and deletes all its namespaces, also when the test panics. It never
//!   kills anything it did not start. If the test process is killed outright (SIGKILL), its
//!   spawned processes get SIGKILL from the kernel (parent-death signal), and its namespaces are
//!   removed by the next lab created on the machine, once that process is gone.
//! * Each lab has a log directory (spawned processes' stdout/stderr and every command the lab
//!   ran). When the test panics the directory is kept, its path is printed, and the tail of each
//!   process log is printed; otherwise it is removed (set `WEFT_NETNS_KEEP_LOGS=1` to keep it).
//!
//! IPv6 is disabled in every lab namespace (deterministic, IPv4-only NAT behaviour, no DAD
//! delays); turn it back on with [`Lab::sysctl`] if a scenario needs it.
//!
//! Setup methods panic with the failing command and its stderr: this is a test harness, and a
//! setup failure is a test failure. Tests that cannot run (not root, tools missing) must fail,
//! not pass: use [`Lab::for_test`], which panics with what is missing unless `WEFT_SKIP_NETNS=1`
//! is set explicitly. `scripts/install-test-deps.sh` installs the tools on Debian.

mod nat;
mod proc;
mod topo;

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::fmt;
use std::fs::{self, File, OpenOptions};
use std::io::Write as _;
use std::marker::PhantomData;
use std::net::{SocketAddr, UdpSocket};
use std::os::fd::AsFd as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::Once;
use std::sync::atomic::{AtomicU32, Ordering};

pub use nat::{IptablesVariant, NatKind, NatRouter, iptables_variant};
pub use proc::Proc;
pub use topo::{Lan, Link};

use proc::Tracked;

/// The directory `ip netns` keeps its namespace handles in.
const NETNS_DIR: &str = "/var/run/netns";

/// Environment variable that, set to `1`, makes [`Lab::for_test`] skip (loudly) instead of
/// failing when the harness cannot run.
pub const SKIP_ENV: &str = "WEFT_SKIP_NETNS";

/// Environment variable that, set to `1`, keeps lab log directories even when the test passes.
pub const KEEP_LOGS_ENV: &str = "WEFT_NETNS_KEEP_LOGS";

/// Counter making lab names unique within this process (the PID makes them unique across
/// processes).
static LAB_SEQ: AtomicU32 = AtomicU32::new(0);

/// Checks that this process can run the lab: effective root, and the `ip`, `iptables` and `ping`
/// tools installed. The error says what is missing and how to get it.
pub fn require_root_and_tools() -> Result<(), String> {
    let mut missing = Vec::new();
    if !rustix::process::geteuid().is_root() {
        missing.push(
            "root privileges (namespaces need CAP_SYS_ADMIN and CAP_NET_ADMIN): run the tests as root"
                .to_string(),
        );
    }
    for (tool, package) in [
        ("ip", "iproute2"),
        ("iptables", "iptables"),
        ("ping", "iputils-ping"),
    ] {
        if find_tool(tool).is_none() {
            missing.push(format!("`{tool}` (Debian package {package})"));
        }
    }
    if missing.is_empty() {
        Ok(())
    } else {
        Err(format!(
            "the network-namespace harness cannot run; missing: {}. \
             Run scripts/install-test-deps.sh as root, or set {SKIP_ENV}=1 to skip these tests explicitly.",
            missing.join("; ")
        ))
    }
}

/// The names of all network namespaces `ip netns list` shows (every test's, not only this
/// process's). Panics when `ip` cannot run.
pub fn listed_namespaces() -> Vec<String> {
    let out = Command::new(tool("ip"))
        .args(["netns", "list"])
        .output()
        .unwrap_or_else(|e| panic!("cannot run `ip netns list`: {e}"));
    assert!(
        out.status.success(),
        "`ip netns list` failed: {}",
        String::from_utf8_lossy(&out.stderr).trim_end()
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.split_whitespace().next().map(str::to_string))
        .collect()
}

/// Finds an executable by name on `PATH`, then in the sbin/bin directories (root tools live in
/// `/usr/sbin`, which a non-login `PATH` may lack).
pub(crate) fn find_tool(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(["/usr/sbin", "/sbin", "/usr/bin", "/bin"].map(PathBuf::from))
        .map(|dir| dir.join(name))
        .find(|p| p.is_file())
}

/// Like [`find_tool`], panicking with a pointer to the install script when the tool is missing.
pub(crate) fn tool(name: &str) -> PathBuf {
    find_tool(name).unwrap_or_else(|| {
        panic!(
            "`{name}` not found on PATH or in /usr/sbin, /sbin; run scripts/install-test-deps.sh"
        )
    })
}

/// A network namespace created by a [`Lab`]. Cheap to clone; the namespace lives as long as the
/// lab.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Ns {
    name: String,
    label: String,
}

impl Ns {
    /// The full namespace name, as `ip netns list` shows it (`wft...-label`).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The short label the test gave it.
    pub fn label(&self) -> &str {
        &self.label
    }
}

impl fmt::Display for Ns {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.name)
    }
}

/// A set of network namespaces and the processes running in them, torn down on drop.
///
/// Neither `Send` nor `Sync`: a lab stays on the thread that created it, which is also the
/// thread its processes are tied to (see [`Lab::spawn`]). Sockets made with
/// [`Lab::udp_socket`] can be used from any thread.
#[derive(Debug)]
pub struct Lab {
    _not_send: PhantomData<*const ()>,
    seq: u32,
    test: String,
    tag: String,
    log_dir: PathBuf,
    namespaces: RefCell<Vec<Ns>>,
    /// Next interface number per namespace (`eth<n>`, or `p<n>` on a switch).
    if_seq: RefCell<HashMap<String, u32>>,
    /// Next switch number (`sw<n>` namespaces).
    switch_seq: Cell<u32>,
    procs: RefCell<Vec<Tracked>>,
}

impl Lab {
    /// Creates an empty lab for the test `test_name` (used in the log directory name). Checks
    /// no preconditions (the first command that cannot run panics); tests should normally start
    /// with [`Lab::for_test`].
    pub fn new(test_name: &str) -> Lab {
        static SWEEP: Once = Once::new();
        SWEEP.call_once(sweep_stale_namespaces);

        let seq = LAB_SEQ.fetch_add(1, Ordering::Relaxed);
        let tag = format!("wft{:x}x{:x}", std::process::id(), seq);
        let test = sanitize(test_name, 48);
        let log_dir = std::env::temp_dir()
            .join("weft-netns")
            .join(format!("{test}-{tag}"));
        fs::create_dir_all(&log_dir)
            .unwrap_or_else(|e| panic!("creating lab log directory {}: {e}", log_dir.display()));
        Lab {
            _not_send: PhantomData,
            seq,
            test,
            tag,
            log_dir,
            namespaces: RefCell::default(),
            if_seq: RefCell::default(),
            switch_seq: Cell::new(0),
            procs: RefCell::default(),
        }
    }

    /// The gate every netns test starts with. Returns a new lab when the harness can run. When
    /// it cannot, panics with what is missing (a test that cannot run must not pass), unless
    /// `WEFT_SKIP_NETNS=1` is set, in which case it prints a loud SKIPPED line and returns
    /// `None`.
    #[track_caller]
    pub fn for_test(test_name: &str) -> Option<Lab> {
        if std::env::var(SKIP_ENV).is_ok_and(|v| v == "1") {
            eprintln!(
                "\n*** SKIPPED netns test `{test_name}`: {SKIP_ENV}=1 is set; the network-namespace \
                 scenarios did NOT run ***\n"
            );
            return None;
        }
        if let Err(e) = require_root_and_tools() {
            panic!("\n\n*** NETNS TEST `{test_name}` CANNOT RUN ***\n{e}\n\n");
        }
        Some(Lab::new(test_name))
    }

    /// The directory holding this lab's logs: `commands.log` (every command the lab ran) and
    /// `<n>-<label>.stdout` / `.stderr` for each spawned process.
    pub fn log_dir(&self) -> &Path {
        &self.log_dir
    }

    /// The full names of all namespaces this lab has created, in creation order.
    pub fn namespaces(&self) -> Vec<String> {
        self.namespaces
            .borrow()
            .iter()
            .map(|n| n.name.clone())
            .collect()
    }

    /// Creates a namespace with `lo` up and IPv6 disabled. `label` must be unique in the lab;
    /// characters other than ASCII letters, digits, `-` and `_` are replaced.
    pub fn host(&self, label: &str) -> Ns {
        let label = sanitize(label, 24);
        let ns = Ns {
            name: format!("{}-{label}", self.tag),
            label,
        };
        assert!(
            !self.namespaces.borrow().contains(&ns),
            "lab {}: namespace label `{}` used twice",
            self.test,
            ns.label
        );
        let ip = tool("ip");
        // One retry: the first `ip netns add` on a machine sets up the /run/netns mount, which
        // can race with a concurrent first call from another process.
        let out = self.run(Command::new(&ip).args(["netns", "add", &ns.name]));
        if !out.status.success() {
            std::thread::sleep(std::time::Duration::from_millis(100));
            self.run_ok(Command::new(&ip).args(["netns", "add", &ns.name]));
        }
        // Track it before anything else can fail, so Drop deletes it.
        self.namespaces.borrow_mut().push(ns.clone());
        self.run_ok(Command::new(&ip).args(["-n", &ns.name, "link", "set", "lo", "up"]));
        self.sysctl(&ns, "net.ipv6.conf.all.disable_ipv6", "1");
        self.sysctl(&ns, "net.ipv6.conf.default.disable_ipv6", "1");
        ns
    }

    /// Sets a sysctl under `/proc/sys/net` inside `ns` (for example
    /// `net.ipv4.ip_forward`). Panics when the key does not exist or cannot be written.
    pub fn sysctl(&self, ns: &Ns, key: &str, value: &str) {
        assert!(
            key.starts_with("net.") && !key.contains(".."),
            "Lab::sysctl only sets per-namespace net.* keys, got `{key}`"
        );
        let path = PathBuf::from("/proc/sys").join(key.replace('.', "/"));
        let result = self.in_ns(ns, || fs::write(&path, value));
        self.log_line(&format!("[{}] sysctl {key}={value}", ns.name));
        if let Err(e) = result {
            panic!(
                "sysctl {key}={value} in namespace {}: writing {}: {e}",
                ns.name,
                path.display()
            );
        }
    }

    /// Runs `argv` inside `ns` (`ip netns exec`) and returns its output, whatever its exit
    /// status. Panics only when the command cannot be started.
    pub fn exec(&self, ns: &Ns, argv: &[&str]) -> Output {
        self.run(
            Command::new(tool("ip"))
                .args(["netns", "exec", &ns.name])
                .args(argv),
        )
    }

    /// Runs `argv` inside `ns` and returns its stdout; panics with the command, exit status,
    /// stdout and stderr when it fails.
    pub fn exec_ok(&self, ns: &Ns, argv: &[&str]) -> String {
        self.run_ok(
            Command::new(tool("ip"))
                .args(["netns", "exec", &ns.name])
                .args(argv),
        )
    }

    /// Runs `f` on a short-lived thread that has entered `ns`, and returns its result. Sockets
    /// created in `f` belong to `ns` for their whole life, whichever thread uses them later.
    pub fn in_ns<T: Send>(&self, ns: &Ns, f: impl FnOnce() -> T + Send) -> T {
        let path = Path::new(NETNS_DIR).join(&ns.name);
        let handle = File::open(&path)
            .unwrap_or_else(|e| panic!("opening namespace handle {}: {e}", path.display()));
        let joined = std::thread::scope(|s| {
            s.spawn(|| {
                rustix::thread::move_into_link_name_space(
                    handle.as_fd(),
                    Some(rustix::thread::LinkNameSpaceType::Network),
                )
                .unwrap_or_else(|e| panic!("setns({}): {e}", path.display()));
                f()
            })
            .join()
        });
        joined.unwrap_or_else(|payload| std::panic::resume_unwind(payload))
    }

    /// A UDP socket bound to `addr` inside `ns` (`0.0.0.0:0` for any address, ephemeral port).
    pub fn udp_socket(&self, ns: &Ns, addr: &str) -> UdpSocket {
        let addr: SocketAddr = addr
            .parse()
            .unwrap_or_else(|e| panic!("bad socket address `{addr}`: {e}"));
        self.in_ns(ns, || UdpSocket::bind(addr))
            .unwrap_or_else(|e| panic!("binding UDP {addr} in namespace {}: {e}", ns.name))
    }

    /// Runs a command on the host (only ever `ip -n <lab ns>`, `ip netns ...` or a command
    /// wrapped in `ip netns exec`), recording it in `commands.log`.
    fn run(&self, cmd: &mut Command) -> Output {
        let line = describe(cmd);
        let out = cmd
            .output()
            .unwrap_or_else(|e| panic!("cannot start `{line}`: {e}"));
        let mut entry = format!("$ {line}  -> {}", out.status);
        if !out.status.success() && !out.stderr.is_empty() {
            entry.push_str(&format!(
                "\n  stderr: {}",
                String::from_utf8_lossy(&out.stderr).trim_end()
            ));
        }
        self.log_line(&entry);
        out
    }

    /// [`Lab::run`], panicking with the command and its output unless it succeeds.
    fn run_ok(&self, cmd: &mut Command) -> String {
        let line = describe(cmd);
        let out = self.run(cmd);
        if !out.status.success() {
            panic!(
                "lab {}: `{line}` failed ({})\nstdout: {}\nstderr: {}",
                self.test,
                out.status,
                String::from_utf8_lossy(&out.stdout).trim_end(),
                String::from_utf8_lossy(&out.stderr).trim_end()
            );
        }
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// `ip -n <ns> <args>`, panicking on failure.
    fn ip(&self, ns: &Ns, args: &[&str]) -> String {
        self.run_ok(Command::new(tool("ip")).args(["-n", &ns.name]).args(args))
    }

    /// The next `<prefix><n>` interface name in `ns`.
    fn next_if(&self, ns: &Ns, prefix: &str) -> String {
        let mut seq = self.if_seq.borrow_mut();
        let n = seq.entry(ns.name.clone()).or_insert(0);
        let name = format!("{prefix}{n}");
        *n += 1;
        name
    }

    /// Appends a line to `commands.log` (best effort).
    fn log_line(&self, line: &str) {
        if let Ok(mut f) = OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.log_dir.join("commands.log"))
        {
            let _ = writeln!(f, "{line}");
        }
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        let failed = std::thread::panicking();
        self.stop_all();
        let ip = find_tool("ip");
        for ns in self.namespaces.borrow().iter().rev() {
            let Some(ip) = &ip else { break };
            // Anything still inside was not started by the lab: report it, never kill it.
            if let Ok(out) = Command::new(ip).args(["netns", "pids", &ns.name]).output() {
                let pids = String::from_utf8_lossy(&out.stdout)
                    .split_whitespace()
                    .collect::<Vec<_>>()
                    .join(" ");
                if !pids.is_empty() {
                    eprintln!(
                        "netns lab {}: processes not started by the lab are still in {} (pids {pids}); \
                         not killing them, the namespace goes away when they exit",
                        self.test, ns.name
                    );
                }
            }
            match Command::new(ip).args(["netns", "del", &ns.name]).output() {
                Ok(out) if out.status.success() => {}
                Ok(out) => eprintln!(
                    "netns lab {}: `ip netns del {}` failed: {}",
                    self.test,
                    ns.name,
                    String::from_utf8_lossy(&out.stderr).trim_end()
                ),
                Err(e) => eprintln!(
                    "netns lab {}: cannot run `ip netns del {}`: {e}",
                    self.test, ns.name
                ),
            }
        }
        let keep = std::env::var(KEEP_LOGS_ENV).is_ok_and(|v| v == "1");
        if failed {
            eprintln!(
                "\n=== netns lab `{}` failed; logs kept in {} ===",
                self.test,
                self.log_dir.display()
            );
            self.print_log_tails();
        } else if keep {
            eprintln!(
                "netns lab `{}`: logs kept in {}",
                self.test,
                self.log_dir.display()
            );
        } else {
            let _ = fs::remove_dir_all(&self.log_dir);
        }
    }
}

/// Deletes lab namespaces (`wft<pid hex>x<hex>-...`) whose creating process no longer exists:
/// leftovers of a test process killed before its labs could drop.
fn sweep_stale_namespaces() {
    let Some(ip) = find_tool("ip") else { return };
    let Ok(out) = Command::new(&ip).args(["netns", "list"]).output() else {
        return;
    };
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        let Some(name) = line.split_whitespace().next() else {
            continue;
        };
        let Some(pid) = stale_owner(name) else {
            continue;
        };
        if Path::new(&format!("/proc/{pid}")).exists() {
            continue;
        }
        let ok = Command::new(&ip)
            .args(["netns", "del", name])
            .status()
            .is_ok_and(|s| s.success());
        eprintln!(
            "netns: {} stale lab namespace {name} (its test process {pid} is gone)",
            if ok { "removed" } else { "could not remove" }
        );
    }
}

/// The PID encoded in a lab namespace name, or `None` if `name` is not a lab namespace.
fn stale_owner(name: &str) -> Option<u32> {
    let rest = name.strip_prefix("wft")?;
    let (pid, rest) = rest.split_once('x')?;
    let (seq, label) = rest.split_once('-')?;
    let is_hex = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_hexdigit());
    if !is_hex(pid) || !is_hex(seq) || label.is_empty() {
        return None;
    }
    u32::from_str_radix(pid, 16).ok()
}

/// Keeps ASCII letters, digits, `-` and `_` (others become `_`), at most `max` characters.
fn sanitize(s: &str, max: usize) -> String {
    let s: String = s
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '_'
            }
        })
        .take(max)
        .collect();
    if s.is_empty() { "_".to_string() } else { s }
}

/// A command as a shell-like line, for messages.
fn describe(cmd: &Command) -> String {
    std::iter::once(cmd.get_program())
        .chain(cmd.get_args())
        .map(|a| a.to_string_lossy().into_owned())
        .collect::<Vec<_>>()
        .join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lab_names_parse_back_to_their_pid() {
        assert_eq!(stale_owner("wft1a2bx3-leaf"), Some(0x1a2b));
        assert_eq!(stale_owner("wft1a2bx3-sw0"), Some(0x1a2b));
        assert_eq!(stale_owner("wft1a2bx-leaf"), None);
        assert_eq!(stale_owner("wft1a2bx3-"), None);
        assert_eq!(stale_owner("wftzzx3-leaf"), None);
        assert_eq!(stale_owner("other"), None);
    }

    #[test]
    fn sanitize_keeps_safe_characters() {
        assert_eq!(sanitize("nat a/b", 24), "nat_a_b");
        assert_eq!(sanitize("", 24), "_");
        assert_eq!(sanitize("abcdef", 3), "abc");
    }
}
