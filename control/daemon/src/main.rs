//! The `weft` binary: a ZeroTier One 1.14 compatible node. For now it carries the identity tool
//! (`weft idtool …`) and a TCP fallback relay (`weft tcp-relay`); invoked under a name containing
//! `zerotier-idtool` it behaves as `zerotier-idtool`. spec: service.md §1, §9; vl1.md §8.13

mod cli;
mod ctl_cli;
mod demo;
mod fsutil;
mod host;
mod idtool;
mod portmap;
mod service;
mod tcp_relay;

use std::ffi::OsString;
use std::path::Path;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// Top-level command line of `weft`.
#[derive(Debug, Parser)]
#[command(
    name = "weft",
    version,
    about = "weft: a ZeroTier One 1.14 compatible node"
)]
struct Cli {
    /// Options of the client commands (before the command, like zerotier-cli's switches).
    #[command(flatten)]
    client: cli::ClientOpts,
    #[command(subcommand)]
    command: Command,
}

/// `weft` subcommands.
#[derive(Debug, Subcommand)]
enum Command {
    /// Run the node (VL1 service): joins the planet, keeps peers and paths, relays if a root.
    Daemon(service::DaemonArgs),
    /// Talk to a running node (zerotier-cli's info, listpeers, peers, listmoons, orbit, deorbit).
    #[command(flatten)]
    Client(cli::ClientCommand),
    /// Identity, signature, moon and planet tool (compatible with `zerotier-idtool`).
    Idtool(idtool::IdtoolArgs),
    /// TCP fallback relay for nodes whose UDP is blocked (like the one at 204.80.128.1:443).
    TcpRelay(tcp_relay::TcpRelayArgs),
    /// A private world in network namespaces: root, controller, two members, a network, ping,
    /// TCP throughput, a summary; everything removed afterwards (needs root).
    Demo(demo::DemoArgs),
    /// Print shell completions (bash, zsh, fish, elvish, powershell) to stdout.
    Completions {
        /// The shell.
        shell: clap_complete::Shell,
    },
    /// Print the man page (roff) to stdout: `weft man > weft.1`.
    Man,
    /// The data-plane process (started by `weft daemon`; not for direct use).
    #[command(hide = true)]
    Dataplane {
        /// The control plane's SOCK_SEQPACKET socket.
        socket: std::path::PathBuf,
    },
    /// Manage the networks and members of this node's network controller (local API).
    Controller(ctl_cli::ControllerArgs),
}

/// Whether `argv0` selects the `zerotier-idtool` personality (basename contains
/// `zerotier-idtool`, case-insensitively). spec: service.md §1
fn is_idtool_personality(argv0: &OsString) -> bool {
    Path::new(argv0)
        .file_name()
        .map(|n| {
            n.to_string_lossy()
                .to_ascii_lowercase()
                .contains("zerotier-idtool")
        })
        .unwrap_or(false)
}

/// Whether `argv0` selects the `zerotier-cli` personality. spec: service.md §6.1
fn is_cli_personality(argv0: &OsString) -> bool {
    Path::new(argv0)
        .file_name()
        .map(|n| {
            n.to_string_lossy()
                .to_ascii_lowercase()
                .contains("zerotier-cli")
        })
        .unwrap_or(false)
}

/// Runs as `zerotier-cli`: its switches (`-j`, `-p<port>`, `-D<home>`, `-T<token>`, `-H<ip>`,
/// `-v`), `status` meaning `info`, and help for anything else. spec: service.md §6.1
fn zerotier_cli(args: &[OsString]) -> anyhow::Result<ExitCode> {
    let mut rest: Vec<OsString> = Vec::new();
    for a in &args[1..] {
        match a.to_str() {
            Some("-v") => {
                println!("1.14.1");
                return Ok(ExitCode::SUCCESS);
            }
            Some("-h" | "-?") => {
                println!("{}", cli_help());
                return Ok(ExitCode::SUCCESS);
            }
            Some("-q") => {}
            Some("status") => rest.push("info".into()),
            _ => rest.push(a.clone()),
        }
    }
    let mut argv = vec![OsString::from("weft")];
    argv.extend(rest);
    match Cli::try_parse_from(&argv) {
        Ok(Cli {
            client,
            command: Command::Client(c),
        }) => cli::run(client, c),
        _ => {
            eprintln!("{}", cli_help());
            Ok(ExitCode::SUCCESS)
        }
    }
}

fn cli_help() -> String {
    format!(
        "ZeroTier One version 1.14.1 build 0 (platform linux arch {}) — weft {}\n\
         Usage: zerotier-cli [-switches] <command/path> [<args>]\n\
         Commands: info, listpeers, peers, listnetworks, join, leave, set, get, listmoons, orbit, deorbit, dump",
        std::env::consts::ARCH,
        env!("CARGO_PKG_VERSION")
    )
}

fn main() -> ExitCode {
    let args: Vec<OsString> = std::env::args_os().collect();
    let result = match args.first() {
        Some(argv0) if is_idtool_personality(argv0) => {
            let cli = idtool::IdtoolCli::parse_from(&args);
            idtool::run(cli.command)
        }
        Some(argv0) if is_cli_personality(argv0) => zerotier_cli(&args),
        _ => {
            let cli = Cli::parse_from(&args);
            match cli.command {
                Command::Daemon(a) => service::run(a),
                Command::Client(c) => cli::run(cli.client, c),
                Command::Idtool(a) => idtool::run(a.command),
                Command::TcpRelay(a) => tcp_relay::run(a),
                Command::Demo(a) => demo::run(a),
                Command::Completions { shell } => {
                    use clap::CommandFactory;
                    clap_complete::generate(
                        shell,
                        &mut Cli::command(),
                        "weft",
                        &mut std::io::stdout(),
                    );
                    Ok(ExitCode::SUCCESS)
                }
                Command::Dataplane { socket } => service::dataplane::run_process(&socket),
                Command::Man => {
                    use clap::CommandFactory;
                    match clap_mangen::Man::new(Cli::command()).render(&mut std::io::stdout()) {
                        Ok(()) => Ok(ExitCode::SUCCESS),
                        Err(e) => Err(e.into()),
                    }
                }
                Command::Controller(a) => ctl_cli::run(&cli.client, a),
            }
        }
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn personality_detection() {
        assert!(is_idtool_personality(&"zerotier-idtool".into()));
        assert!(is_idtool_personality(&"/usr/sbin/zerotier-idtool".into()));
        assert!(is_idtool_personality(&"./ZEROTIER-IDTOOL".into()));
        assert!(!is_idtool_personality(&"/usr/bin/weft".into()));
        assert!(!is_idtool_personality(&"/opt/zerotier-idtool/weft".into()));
        assert!(is_cli_personality(&"/usr/sbin/zerotier-cli".into()));
        assert!(!is_cli_personality(&"/usr/bin/weft".into()));
    }

    #[test]
    fn completions_and_man_page_name_the_commands() {
        use clap::CommandFactory;
        let mut out = Vec::new();
        clap_complete::generate(
            clap_complete::Shell::Bash,
            &mut Cli::command(),
            "weft",
            &mut out,
        );
        let text = String::from_utf8(out).unwrap();
        for cmd in ["daemon", "listnetworks", "join", "demo", "idtool"] {
            assert!(text.contains(cmd), "bash completion lacks {cmd}");
        }
        let mut man = Vec::new();
        clap_mangen::Man::new(Cli::command())
            .render(&mut man)
            .unwrap();
        let man = String::from_utf8(man).unwrap();
        assert!(man.starts_with(".ie") || man.contains(".TH weft"), "{man}");
        assert!(man.contains("listnetworks"));
    }

    #[test]
    fn clap_definitions_are_consistent() {
        use clap::CommandFactory;
        Cli::command().debug_assert();
        idtool::IdtoolCli::command().debug_assert();
    }
}
