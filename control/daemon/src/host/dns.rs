//! A network's DNS settings on its TAP through systemd-resolved (`resolvectl`), when the network's
//! `allowDNS` is on. ZeroTier 1.14 does nothing here on Linux (spec: service.md §8.2 "DNS"); weft
//! applies them where systemd-resolved runs and otherwise says why not. It never fails the
//! network: every outcome is a value to report, not an error to propagate.

use std::ffi::OsStr;
use std::fmt;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::process::Command;

use super::managed::LocalNetSettings;

/// The DNS part of a network configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DnsConfig {
    /// The search domain (empty: none).
    pub domain: String,
    /// The servers, in order.
    pub servers: Vec<IpAddr>,
}

/// What happened to a network's DNS settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DnsOutcome {
    /// `resolvectl` took them.
    Applied,
    /// Nothing was done, and why (e.g. "systemd-resolved not running").
    NotApplied {
        /// Why not.
        reason: String,
    },
    /// `resolvectl` was run and failed.
    Failed {
        /// The command and what it said.
        reason: String,
    },
}

impl fmt::Display for DnsOutcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DnsOutcome::Applied => f.write_str("applied"),
            DnsOutcome::NotApplied { reason } => write!(f, "not applied: {reason}"),
            DnsOutcome::Failed { reason } => write!(f, "failed: {reason}"),
        }
    }
}

/// The comm name of systemd-resolved's process (15 characters, as the kernel truncates it).
const RESOLVED_COMM: &str = "systemd-resolve";

/// A usable systemd-resolved: `resolvectl` found, the daemon running.
#[derive(Debug, Clone)]
pub struct Resolved {
    resolvectl: PathBuf,
}

impl Resolved {
    /// Looks for `resolvectl` on `PATH` and a running systemd-resolved; the error says what is
    /// missing.
    pub fn probe() -> Result<Resolved, String> {
        Resolved::probe_with(std::env::var_os("PATH").as_deref(), Path::new("/proc"))
    }

    /// [`Resolved::probe`] with the search path and `/proc` as parameters.
    fn probe_with(path: Option<&OsStr>, proc_dir: &Path) -> Result<Resolved, String> {
        let resolvectl = path
            .into_iter()
            .flat_map(std::env::split_paths)
            .map(|dir| dir.join("resolvectl"))
            .find(|p| p.is_file())
            .ok_or_else(|| "resolvectl not found".to_owned())?;
        if !process_running(proc_dir, RESOLVED_COMM) {
            return Err("systemd-resolved not running".to_owned());
        }
        Ok(Resolved { resolvectl })
    }

    /// Sets the servers and search domain of interface `ifname`.
    pub fn set(&self, ifname: &str, dns: &DnsConfig) -> DnsOutcome {
        if let Err(reason) = self.run(&dns_args(ifname, &dns.servers)) {
            return DnsOutcome::Failed { reason };
        }
        if let Err(reason) = self.run(&domain_args(ifname, &dns.domain)) {
            return DnsOutcome::Failed { reason };
        }
        DnsOutcome::Applied
    }

    /// Drops every per-link setting of `ifname` (`resolvectl revert`).
    pub fn revert(&self, ifname: &str) -> DnsOutcome {
        match self.run(&["revert".to_owned(), ifname.to_owned()]) {
            Ok(()) => DnsOutcome::Applied,
            Err(reason) => DnsOutcome::Failed { reason },
        }
    }

    fn run(&self, args: &[String]) -> Result<(), String> {
        let shown = || format!("resolvectl {}", args.join(" "));
        let out = Command::new(&self.resolvectl)
            .args(args)
            .output()
            .map_err(|e| format!("{}: {e}", shown()))?;
        if out.status.success() {
            Ok(())
        } else {
            Err(format!(
                "{}: {} {}",
                shown(),
                out.status,
                String::from_utf8_lossy(&out.stderr).trim()
            ))
        }
    }
}

/// Applies `dns` to interface `ifname` if the network allows DNS and systemd-resolved runs; a
/// configuration without servers reverts the link instead. Blocks while `resolvectl` runs (call
/// it off the event loop, e.g. from `spawn_blocking`).
pub fn apply(ifname: &str, dns: &DnsConfig, settings: &LocalNetSettings) -> DnsOutcome {
    if !settings.allow_dns {
        return DnsOutcome::NotApplied {
            reason: "allowDNS is off".to_owned(),
        };
    }
    match Resolved::probe() {
        Ok(r) if dns.servers.is_empty() => r.revert(ifname),
        Ok(r) => r.set(ifname, dns),
        Err(reason) => DnsOutcome::NotApplied { reason },
    }
}

/// Removes whatever [`apply`] set on `ifname` (network left, or DNS no longer allowed).
pub fn remove(ifname: &str) -> DnsOutcome {
    match Resolved::probe() {
        Ok(r) => r.revert(ifname),
        Err(reason) => DnsOutcome::NotApplied { reason },
    }
}

/// `resolvectl dns <if> <servers…>`.
fn dns_args(ifname: &str, servers: &[IpAddr]) -> Vec<String> {
    let mut args = vec!["dns".to_owned(), ifname.to_owned()];
    args.extend(servers.iter().map(IpAddr::to_string));
    args
}

/// `resolvectl domain <if> <domain>` (no domain: clears it).
fn domain_args(ifname: &str, domain: &str) -> Vec<String> {
    let mut args = vec!["domain".to_owned(), ifname.to_owned()];
    if !domain.is_empty() {
        args.push(domain.to_owned());
    }
    args
}

/// Whether some process under `proc_dir` has the comm name `comm`.
fn process_running(proc_dir: &Path, comm: &str) -> bool {
    let Ok(entries) = std::fs::read_dir(proc_dir) else {
        return false;
    };
    entries.flatten().any(|e| {
        e.file_name()
            .to_string_lossy()
            .bytes()
            .all(|b| b.is_ascii_digit())
            && std::fs::read_to_string(e.path().join("comm")).is_ok_and(|c| c.trim_end() == comm)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resolvectl_arguments() {
        let servers: Vec<IpAddr> = vec![
            "10.147.17.1".parse().expect("ip"),
            "fd00::53".parse().expect("ip"),
        ];
        assert_eq!(
            dns_args("ztu3lwdwmq", &servers),
            ["dns", "ztu3lwdwmq", "10.147.17.1", "fd00::53"]
        );
        assert_eq!(
            domain_args("ztu3lwdwmq", "corp.example"),
            ["domain", "ztu3lwdwmq", "corp.example"]
        );
        assert_eq!(domain_args("ztu3lwdwmq", ""), ["domain", "ztu3lwdwmq"]);
    }

    #[test]
    fn probe_needs_resolvectl_and_a_running_resolved() {
        let dir = tempfile::tempdir().expect("tempdir");
        let bin = dir.path().join("bin");
        let proc_dir = dir.path().join("proc");
        std::fs::create_dir_all(&bin).expect("mkdir");
        std::fs::create_dir_all(proc_dir.join("1")).expect("mkdir");
        std::fs::write(proc_dir.join("1/comm"), "init\n").expect("write");
        let path = std::env::join_paths([&bin]).expect("PATH");

        let err = Resolved::probe_with(Some(&path), &proc_dir).expect_err("no resolvectl");
        assert_eq!(err, "resolvectl not found");
        assert_eq!(
            Resolved::probe_with(None, &proc_dir).expect_err("no PATH"),
            "resolvectl not found"
        );

        std::fs::write(bin.join("resolvectl"), "#!/bin/sh\n").expect("write");
        let err = Resolved::probe_with(Some(&path), &proc_dir).expect_err("not running");
        assert_eq!(err, "systemd-resolved not running");
        assert_eq!(
            DnsOutcome::NotApplied { reason: err }.to_string(),
            "not applied: systemd-resolved not running"
        );

        std::fs::create_dir_all(proc_dir.join("812")).expect("mkdir");
        std::fs::write(proc_dir.join("812/comm"), "systemd-resolve\n").expect("write");
        let r = Resolved::probe_with(Some(&path), &proc_dir).expect("found");
        assert_eq!(r.resolvectl, bin.join("resolvectl"));
    }

    #[test]
    fn dns_off_is_never_applied() {
        let dns = DnsConfig {
            domain: "corp.example".to_owned(),
            servers: vec!["10.147.17.1".parse().expect("ip")],
        };
        assert_eq!(
            apply("ztu3lwdwmq", &dns, &LocalNetSettings::default()),
            DnsOutcome::NotApplied {
                reason: "allowDNS is off".to_owned()
            }
        );
    }

    #[test]
    fn a_failing_resolvectl_is_reported_not_raised() {
        // `ls dns ztnope 10.147.17.1` fails like a resolvectl that does not know the link
        // (a script written here could hit ETXTBSY while other tests fork).
        let r = Resolved {
            resolvectl: PathBuf::from("/bin/ls"),
        };
        let dns = DnsConfig {
            domain: String::new(),
            servers: vec!["10.147.17.1".parse().expect("ip")],
        };
        match r.set("ztnope", &dns) {
            DnsOutcome::Failed { reason } => {
                assert!(
                    reason.contains("resolvectl dns ztnope 10.147.17.1"),
                    "{reason}"
                );
                assert!(reason.contains("exit status"), "{reason}");
            }
            other => panic!("expected a failure, got {other:?}"),
        }
    }
}
