//! `weft idtool`: a `zerotier-idtool` compatible identity tool, plus planet building for
//! self-hosted roots. spec: service.md §9, vl1.md §1.3, §2, §7

use crate::fsutil;
mod identity_cmds;
mod keys;
mod moon;
mod planet;
mod worldutil;

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Result;
use clap::{Args, Parser, Subcommand};
use std::io::Write;

/// `weft idtool` arguments.
#[derive(Debug, Args)]
pub(crate) struct IdtoolArgs {
    /// The idtool subcommand.
    #[command(subcommand)]
    pub(crate) command: IdtoolCommand,
}

/// Command line of the `zerotier-idtool` personality (the program name contains `zerotier-idtool`).
#[derive(Debug, Parser)]
#[command(
    name = "zerotier-idtool",
    version,
    about = "ZeroTier identity tool (weft implementation)"
)]
pub(crate) struct IdtoolCli {
    /// The idtool subcommand.
    #[command(subcommand)]
    pub(crate) command: IdtoolCommand,
}

const IDENTITY_ARG_HELP: &str = "An identity argument is taken literally if it is longer than 32 \
characters with ':' at index 10; otherwise it is the path of a file holding the identity.";

/// idtool subcommands. spec: service.md §9
#[derive(Debug, Subcommand)]
#[command(after_help = IDENTITY_ARG_HELP)]
pub(crate) enum IdtoolCommand {
    /// Generate a new identity.
    ///
    /// Without paths the secret identity is printed; with paths the secret (mode 0600) and
    /// public identity files are written. With a vanity prefix, identities are generated until
    /// the address starts with it (progress on stderr).
    #[command(after_help = IDENTITY_ARG_HELP)]
    Generate {
        /// Where to write the secret identity (e.g. identity.secret).
        secret_path: Option<PathBuf>,
        /// Where to write the public identity (e.g. identity.public).
        public_path: Option<PathBuf>,
        /// Hex prefix the address must start with (up to 10 hex digits).
        vanity: Option<String>,
    },
    /// Check an identity's address derivation (and key consistency for a secret identity).
    #[command(after_help = IDENTITY_ARG_HELP)]
    Validate {
        /// Identity file or literal.
        identity: String,
    },
    /// Print the public form of an identity.
    #[command(after_help = IDENTITY_ARG_HELP)]
    Getpublic {
        /// Identity file or literal (normally a secret identity).
        identity: String,
    },
    /// Sign a file; prints the 96-byte signature as 192 hex digits.
    #[command(after_help = IDENTITY_ARG_HELP)]
    Sign {
        /// Secret identity file or literal.
        identity: String,
        /// File whose bytes are signed.
        file: PathBuf,
    },
    /// Verify a file's signature.
    #[command(after_help = IDENTITY_ARG_HELP)]
    Verify {
        /// Identity file or literal (public is enough).
        identity: String,
        /// The signed file.
        file: PathBuf,
        /// The signature: 192 hex digits, or a file holding them (or the 96 raw bytes).
        signature: String,
    },
    /// Print a moon template JSON for a first root.
    ///
    /// The template (1-space indent) holds a freshly generated signing key pair; add the
    /// roots' stable endpoints (`IP/port`) and sign it with `genmoon`. The moon id is the
    /// root's address.
    #[command(after_help = IDENTITY_ARG_HELP)]
    Initmoon {
        /// Identity (file or literal) of the moon's first root; its address becomes the moon id.
        identity: String,
    },
    /// Sign a moon JSON description, writing `<16 hex id>.moon`.
    ///
    /// The file is written in the current directory, with the current time as timestamp.
    /// Endpoints are `IP/port`; `worldType` is `moon` or `planet`.
    Genmoon {
        /// The JSON description (from `initmoon`, with stable endpoints added).
        json: PathBuf,
        /// Use this timestamp (ms since the epoch) instead of the current time.
        #[arg(long, hide = true)]
        timestamp: Option<u64>,
    },
    /// Build and update planets (root server lists) for self-hosted roots.
    #[command(subcommand)]
    Planet(planet::PlanetCommand),
    /// Inspect world (planet or moon) files.
    #[command(subcommand)]
    World(planet::WorldCommand),
}

/// Runs one idtool command, printing to stdout/stderr. Returns the process exit code for
/// outcomes that have their own message (failed validation or verification); other failures
/// are errors.
pub(crate) fn run(command: IdtoolCommand) -> Result<ExitCode> {
    let mut out = std::io::stdout().lock();
    let code = match command {
        IdtoolCommand::Generate {
            secret_path,
            public_path,
            vanity,
        } => identity_cmds::generate(
            &mut out,
            secret_path.as_deref(),
            public_path.as_deref(),
            vanity.as_deref(),
        ),
        IdtoolCommand::Validate { identity } => identity_cmds::validate(&mut out, &identity),
        IdtoolCommand::Getpublic { identity } => identity_cmds::getpublic(&mut out, &identity),
        IdtoolCommand::Sign { identity, file } => identity_cmds::sign(&mut out, &identity, &file),
        IdtoolCommand::Verify {
            identity,
            file,
            signature,
        } => identity_cmds::verify(&mut out, &identity, &file, &signature),
        IdtoolCommand::Initmoon { identity } => moon::initmoon(&mut out, &identity),
        IdtoolCommand::Genmoon { json, timestamp } => moon::genmoon(&mut out, &json, timestamp),
        IdtoolCommand::Planet(cmd) => planet::run_planet(&mut out, cmd),
        IdtoolCommand::World(cmd) => planet::run_world(&mut out, cmd),
    }?;
    out.flush()?;
    Ok(code)
}

/// Milliseconds since the Unix epoch.
pub(crate) fn now_ms() -> Result<u64> {
    let d = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_err(|_| anyhow::anyhow!("system clock is before 1970"))?;
    u64::try_from(d.as_millis()).map_err(|_| anyhow::anyhow!("system clock out of range"))
}
