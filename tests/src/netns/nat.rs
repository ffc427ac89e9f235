//! NAT routers: a namespace between an inside LAN and an outside segment, masquerading with
//! iptables (nft or legacy backend, whichever works).

use std::net::Ipv4Addr;
use std::path::PathBuf;
use std::process::Command;
use std::sync::OnceLock;

use super::{Lab, Lan, Ns, find_tool};

/// How a [`NatRouter`] maps inside sockets to outside ports.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NatKind {
    /// `MASQUERADE`: the outside port is the inside port whenever it is free, the same for every
    /// destination (endpoint-independent mapping); inbound datagrams are delivered only from the
    /// exact address and port the inside socket sent to (address-and-port-dependent filtering).
    /// The common home-router behaviour that ZeroTier hole punching gets through.
    PortRestricted,
    /// `MASQUERADE --random-fully`: every new destination gets a fresh random outside port
    /// (address-and-port-dependent mapping), with the same filtering as `PortRestricted`.
    /// ZeroTier 1.14 does not predict ports, so peers behind it fall back to relaying.
    Symmetric,
}

/// A NAT router made by [`Lab::nat_router`].
#[derive(Debug)]
pub struct NatRouter {
    /// The router's namespace.
    pub ns: Ns,
    /// The mapping behaviour.
    pub kind: NatKind,
    /// The router's outside address: what hosts outside see as the source of inside traffic.
    pub wan: Ipv4Addr,
    /// The outside interface (inside the router's namespace).
    pub wan_if: String,
    /// The inside LAN; the router is its gateway (`.1`). Attach hosts with [`Lab::attach`].
    pub lan: Lan,
}

/// Which iptables backend the lab uses.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum IptablesVariant {
    /// `iptables` on the nf_tables backend (`iptables-nft`, Debian's default).
    Nft(PathBuf),
    /// The legacy x_tables backend (`iptables-legacy`).
    Legacy(PathBuf),
}

impl IptablesVariant {
    /// The binary to run.
    pub fn binary(&self) -> &PathBuf {
        match self {
            IptablesVariant::Nft(p) | IptablesVariant::Legacy(p) => p,
        }
    }
}

/// The iptables backend the lab uses: the first of `iptables`, `iptables-nft`,
/// `iptables-legacy` that can list the NAT table inside a scratch namespace. Decided once per
/// process, so that all rules of a run go through one backend. The error names every candidate
/// tried and its stderr.
pub fn iptables_variant() -> Result<IptablesVariant, String> {
    static CHOICE: OnceLock<Result<IptablesVariant, String>> = OnceLock::new();
    CHOICE.get_or_init(probe_iptables).clone()
}

fn probe_iptables() -> Result<IptablesVariant, String> {
    let mut tried = Vec::new();
    let candidates = ["iptables", "iptables-nft", "iptables-legacy"]
        .into_iter()
        .filter_map(find_tool);
    let probe = Lab::new("iptables-probe");
    let ns = probe.host("probe");
    for bin in candidates {
        let version = Command::new(&bin)
            .arg("-V")
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
            .unwrap_or_default();
        let bin_s = bin.to_string_lossy().into_owned();
        let out = probe.exec(&ns, &[&bin_s, "-w", "5", "-t", "nat", "-L", "-n"]);
        if out.status.success() {
            eprintln!("netns: NAT rules use {bin_s} ({})", version.trim());
            return Ok(if version.contains("legacy") {
                IptablesVariant::Legacy(bin)
            } else {
                IptablesVariant::Nft(bin)
            });
        }
        tried.push(format!(
            "{bin_s} ({}): {}",
            version.trim(),
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    if tried.is_empty() {
        Err("no iptables binary found; run scripts/install-test-deps.sh".to_string())
    } else {
        Err(format!(
            "no iptables backend can use the nat table: {}",
            tried.join("; ")
        ))
    }
}

impl Lab {
    /// Creates a NAT router namespace `label`: attached to `outside` (its `wan` address is the
    /// next free address there) and gateway (`.1`) of a new inside LAN on `inside_subnet`, with
    /// IPv4 forwarding on inside the router only, and `kind`'s MASQUERADE rule on the outside
    /// interface. Inbound forwarding is stateful: only replies to inside-initiated flows pass.
    pub fn nat_router(
        &self,
        label: &str,
        inside_subnet: &str,
        outside: &Lan,
        kind: NatKind,
    ) -> NatRouter {
        let ns = self.host(label);
        let wan = self.attach(outside, &ns);
        let wan_if = outside.iface_of(&ns);
        let lan = self.bridge_lan(Some(&ns), &[], inside_subnet);
        let lan_if = lan.iface_of(&ns);
        self.enable_forwarding(&ns);
        let mut masquerade = vec![
            "-t",
            "nat",
            "-A",
            "POSTROUTING",
            "-o",
            &wan_if,
            "-j",
            "MASQUERADE",
        ];
        if kind == NatKind::Symmetric {
            masquerade.push("--random-fully");
        }
        self.iptables(&ns, &masquerade);
        let established = [
            "-m",
            "conntrack",
            "--ctstate",
            "ESTABLISHED,RELATED",
            "-j",
            "ACCEPT",
        ];
        self.iptables(
            &ns,
            &[&["-A", "FORWARD", "-i", &wan_if][..], &established].concat(),
        );
        self.iptables(
            &ns,
            &[
                "-A", "FORWARD", "-i", &lan_if, "-o", &wan_if, "-j", "ACCEPT",
            ],
        );
        self.iptables(&ns, &["-P", "FORWARD", "DROP"]);
        // Like a home router, drop unsolicited traffic addressed to the router itself on the
        // outside. Otherwise an early hole-punching probe from the far side is accepted locally,
        // its conntrack entry takes the outside port, and the inside host's own punch gets
        // remapped to another port (the lab's NATs are one hop apart, so even the TTL-2 junk
        // arrives).
        self.iptables(
            &ns,
            &[&["-A", "INPUT", "-i", &wan_if][..], &established].concat(),
        );
        self.iptables(&ns, &["-A", "INPUT", "-i", &wan_if, "-j", "DROP"]);
        NatRouter {
            ns,
            kind,
            wan,
            wan_if,
            lan,
        }
    }

    /// Runs one iptables command inside `ns` with the chosen backend; panics with its stderr on
    /// failure.
    pub fn iptables(&self, ns: &Ns, args: &[&str]) -> String {
        let variant = iptables_variant().unwrap_or_else(|e| panic!("{e}"));
        let bin = variant.binary().to_string_lossy().into_owned();
        let argv: Vec<&str> = [bin.as_str(), "-w", "5"]
            .into_iter()
            .chain(args.iter().copied())
            .collect();
        self.exec_ok(ns, &argv)
    }
}
