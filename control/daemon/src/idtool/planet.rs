//! `planet init|update|show` and `world show`: a world generator for self-hosted roots, modelled
//! on the reference world generator (key files `previous.c25519` / `current.c25519`).
//! spec: vl1.md §7.1–§7.3, §7.5, §7.8; service.md §2.1

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, Result, bail};
use clap::{Args, Subcommand};
use weft_wire::world::Root;
use weft_wire::{World, WorldType};

use super::identity_cmds::{identity_arg_name, load_identity};
use super::keys::KeyPair;
use super::{fsutil, worldutil};

/// World id of the built-in "Earth" planet. spec: vl1.md §7.4
const EARTH_WORLD_ID: u64 = 149_604_618;
/// Key file naming the key that signs the revision being built.
const PREVIOUS_KEY_FILE: &str = "previous.c25519";
/// Key file naming the key that the revision being built names for the next update.
const CURRENT_KEY_FILE: &str = "current.c25519";

const KEYS_HELP: &str = "\
Signing keys live in the keys directory as previous.c25519 and current.c25519 (128 bytes each: \
64-byte public key followed by the 64-byte private key, mode 0600), as with the reference world \
generator. A revision is signed with the key named by the revision it replaces (for a new planet: \
previous.c25519) and names current.c25519 (or, with --rotate, a fresh key) as the key that must \
sign the next revision. KEEP THE KEY FILES SAFE: without them the planet can never be updated.";

const ROOT_HELP: &str = "Root server: IDENTITY[@IP/PORT[,IP/PORT...]] where IDENTITY is an \
identity.public file or a literal identity. Repeat for up to 4 roots (order is kept).";

/// `planet` subcommands.
#[derive(Debug, Subcommand)]
pub(crate) enum PlanetCommand {
    /// Create a new planet (its first revision).
    ///
    /// If the keys directory holds neither previous.c25519 nor current.c25519, a fresh key pair
    /// is written to both and the planet is self-signed. Install the result as HOME/planet
    /// on every node and root; a planet id other than Earth's replaces the built-in planet.
    #[command(after_help = KEYS_HELP)]
    Init(InitArgs),
    /// Make the next revision of an existing planet.
    ///
    /// Same id, newer timestamp, signed with the key the existing revision names (found in
    /// current.c25519 or previous.c25519). Nodes holding the existing revision accept it from
    /// their roots. Roots are kept unless --root is given.
    #[command(after_help = KEYS_HELP)]
    Update(UpdateArgs),
    /// Print a planet (or moon) file as JSON.
    Show(ShowArgs),
}

/// `world` subcommands.
#[derive(Debug, Subcommand)]
pub(crate) enum WorldCommand {
    /// Print a world file (planet or moon) as JSON.
    ///
    /// Shows type, id, timestamp, signing key, signature, roots, whether it is self-signed
    /// and, with --previous, whether it is a valid update of that revision.
    Show(ShowArgs),
}

fn parse_world_id_arg(s: &str) -> Result<u64, String> {
    worldutil::parse_world_id(s).map_err(|e| e.to_string())
}

/// Arguments of `planet init`.
#[derive(Debug, Args)]
pub(crate) struct InitArgs {
    /// World id: decimal or 0x-prefixed hex (not Earth's 149604618).
    #[arg(long, value_parser = parse_world_id_arg)]
    id: u64,
    #[arg(long = "root", required = true, value_name = "IDENTITY@IP/PORT,...", help = ROOT_HELP)]
    roots: Vec<String>,
    /// Directory holding previous.c25519 and current.c25519.
    #[arg(long, value_name = "DIR", default_value = ".")]
    keys_dir: PathBuf,
    /// Output planet file.
    #[arg(short, long, value_name = "FILE", default_value = "planet")]
    output: PathBuf,
    /// Timestamp (revision) in ms since the epoch; default now.
    #[arg(long, value_name = "MS")]
    timestamp: Option<u64>,
}

/// Arguments of `planet update`.
#[derive(Debug, Args)]
pub(crate) struct UpdateArgs {
    /// The current revision of the planet.
    #[arg(long, value_name = "FILE")]
    previous: PathBuf,
    #[arg(long = "root", value_name = "IDENTITY@IP/PORT,...", help = ROOT_HELP)]
    roots: Vec<String>,
    /// Rotate the signing key: the new revision names a freshly generated key, which is
    /// written to current.c25519; the signing key is kept as previous.c25519.
    #[arg(long)]
    rotate: bool,
    /// Directory holding previous.c25519 and current.c25519.
    #[arg(long, value_name = "DIR", default_value = ".")]
    keys_dir: PathBuf,
    /// Output file; default: replace the --previous file.
    #[arg(short, long, value_name = "FILE")]
    output: Option<PathBuf>,
    /// Timestamp (revision) in ms since the epoch; must be newer than the previous revision.
    /// Default: now, or previous + 1 if the clock is behind it.
    #[arg(long, value_name = "MS")]
    timestamp: Option<u64>,
}

/// Arguments of `show`.
#[derive(Debug, Args)]
pub(crate) struct ShowArgs {
    /// The world file (e.g. HOME/planet or HOME/moons.d/ID.moon).
    file: PathBuf,
    /// Also check whether FILE is a valid update of this earlier revision.
    #[arg(long, value_name = "FILE")]
    previous: Option<PathBuf>,
}

/// Parses a `--root` value: `IDENTITY[@IP/PORT[,IP/PORT...]]`.
pub(crate) fn parse_root_spec(spec: &str) -> Result<Root> {
    let (ident, eps) = match spec.rsplit_once('@') {
        Some((i, e)) => (i, e),
        None => (spec, ""),
    };
    let identity = load_identity(ident)?;
    let endpoints = worldutil::parse_endpoints(eps.split(',').filter(|e| !e.trim().is_empty()))
        .with_context(|| format!("root {}", identity_arg_name(ident)))?;
    Ok(worldutil::make_root(&identity, endpoints))
}

fn parse_roots(specs: &[String]) -> Result<Vec<Root>> {
    let roots = specs
        .iter()
        .map(|s| parse_root_spec(s))
        .collect::<Result<Vec<_>>>()?;
    worldutil::check_roots(&roots)?;
    Ok(roots)
}

fn exists(p: &Path) -> Result<bool> {
    p.try_exists()
        .with_context(|| format!("cannot access {}", p.display()))
}

fn plural(n: usize, word: &str) -> String {
    if n == 1 {
        format!("{n} {word}")
    } else {
        format!("{n} {word}s")
    }
}

/// Dispatches a `planet` subcommand.
pub(crate) fn run_planet(out: &mut dyn Write, cmd: PlanetCommand) -> Result<ExitCode> {
    match cmd {
        PlanetCommand::Init(a) => init(out, &a),
        PlanetCommand::Update(a) => update(out, &a),
        PlanetCommand::Show(a) => show(out, &a),
    }
}

/// Dispatches a `world` subcommand.
pub(crate) fn run_world(out: &mut dyn Write, cmd: WorldCommand) -> Result<ExitCode> {
    match cmd {
        WorldCommand::Show(a) => show(out, &a),
    }
}

/// `planet init`.
fn init(out: &mut dyn Write, a: &InitArgs) -> Result<ExitCode> {
    if a.id == EARTH_WORLD_ID {
        bail!("world id {EARTH_WORLD_ID} is the built-in Earth planet's; choose another id");
    }
    let roots = parse_roots(&a.roots)?;
    let prev_path = a.keys_dir.join(PREVIOUS_KEY_FILE);
    let cur_path = a.keys_dir.join(CURRENT_KEY_FILE);
    let (prev, cur) = match (exists(&prev_path)?, exists(&cur_path)?) {
        (false, false) => {
            let k = KeyPair::generate();
            k.save(&prev_path)?;
            writeln!(out, "{} written (new signing key)", prev_path.display())?;
            k.save(&cur_path)?;
            writeln!(
                out,
                "{} written (same key: genesis is self-signed)",
                cur_path.display()
            )?;
            (k.clone(), k)
        }
        (true, true) => (KeyPair::load(&prev_path)?, KeyPair::load(&cur_path)?),
        _ => bail!(
            "{}: only one of {PREVIOUS_KEY_FILE} and {CURRENT_KEY_FILE} exists; both or neither are needed",
            a.keys_dir.display()
        ),
    };
    let timestamp = match a.timestamp {
        Some(t) => t,
        None => super::now_ms()?,
    };
    let mut world = World {
        kind: WorldType::Planet,
        id: a.id,
        timestamp,
        updates_must_be_signed_by: cur.public,
        signature: [0; weft_wire::signature::SIGNATURE_LEN],
        roots,
    };
    world.sign(&prev.private);
    let bytes = worldutil::encode_checked(&world, &prev.public)?;
    fsutil::write_atomic(&a.output, &bytes, fsutil::PUBLIC_MODE)?;
    let signing = if prev.public == cur.public {
        "self-signed".to_owned()
    } else {
        format!("signed with {PREVIOUS_KEY_FILE}, names {CURRENT_KEY_FILE}")
    };
    writeln!(
        out,
        "{} written (planet {:016x}, timestamp {timestamp}, {}, {signing}, {} bytes)",
        a.output.display(),
        world.id,
        plural(world.roots.len(), "root"),
        bytes.len()
    )?;
    Ok(ExitCode::SUCCESS)
}

/// `planet update`.
fn update(out: &mut dyn Write, a: &UpdateArgs) -> Result<ExitCode> {
    let old = worldutil::load_world(&a.previous)?;
    let roots = if a.roots.is_empty() {
        old.roots.clone()
    } else {
        parse_roots(&a.roots)?
    };
    let prev_path = a.keys_dir.join(PREVIOUS_KEY_FILE);
    let cur_path = a.keys_dir.join(CURRENT_KEY_FILE);
    let cur = KeyPair::load(&cur_path)?;
    let prev = if exists(&prev_path)? {
        Some(KeyPair::load(&prev_path)?)
    } else {
        None
    };
    let (signer, signer_file) = if cur.public == old.updates_must_be_signed_by {
        (cur.clone(), CURRENT_KEY_FILE)
    } else if let Some(p) = prev.filter(|p| p.public == old.updates_must_be_signed_by) {
        (p, PREVIOUS_KEY_FILE)
    } else {
        bail!(
            "{}: neither {CURRENT_KEY_FILE} nor {PREVIOUS_KEY_FILE} holds the key that {} requires for updates ({}…)",
            a.keys_dir.display(),
            a.previous.display(),
            hex::encode(&old.updates_must_be_signed_by[..8])
        );
    };
    let timestamp = match a.timestamp {
        Some(t) if t <= old.timestamp => bail!(
            "--timestamp {t} is not newer than the previous revision's {}",
            old.timestamp
        ),
        Some(t) => t,
        None => super::now_ms()?.max(old.timestamp.saturating_add(1)),
    };
    if timestamp <= old.timestamp {
        bail!("the previous revision has the largest possible timestamp");
    }
    let next = if a.rotate {
        KeyPair::generate()
    } else {
        cur.clone()
    };
    let mut world = World {
        kind: old.kind,
        id: old.id,
        timestamp,
        updates_must_be_signed_by: next.public,
        signature: [0; weft_wire::signature::SIGNATURE_LEN],
        roots,
    };
    world.sign(&signer.private);
    let bytes = worldutil::encode_checked(&world, &signer.public)?;
    if !World::should_replace(Some(&old), &world) {
        bail!("internal error: the new revision would not replace the previous one");
    }
    if a.rotate {
        // Keys first: if writing the world fails, a rerun still finds the signing key.
        signer.save(&prev_path)?;
        writeln!(out, "{} written (signing key)", prev_path.display())?;
        next.save(&cur_path)?;
        writeln!(
            out,
            "{} written (new key for the next update)",
            cur_path.display()
        )?;
    }
    let output = a.output.as_deref().unwrap_or(&a.previous);
    fsutil::write_atomic(output, &bytes, fsutil::PUBLIC_MODE)?;
    let names = if a.rotate || signer.public != next.public {
        "names a new key for the next update"
    } else {
        "keeps the signing key"
    };
    writeln!(
        out,
        "{} written ({} {:016x}, timestamp {timestamp} replacing {}, {}, signed with {signer_file}, {names}, {} bytes)",
        output.display(),
        worldutil::world_type_name(world.kind),
        world.id,
        old.timestamp,
        plural(world.roots.len(), "root"),
        bytes.len()
    )?;
    Ok(ExitCode::SUCCESS)
}

/// `planet show` / `world show`.
fn show(out: &mut dyn Write, a: &ShowArgs) -> Result<ExitCode> {
    let world = worldutil::load_world(&a.file)?;
    let previous = match &a.previous {
        Some(p) => Some((p.display().to_string(), worldutil::load_world(p)?)),
        None => None,
    };
    let json = worldutil::describe(
        &world,
        previous.as_ref().map(|(name, w)| (name.as_str(), w)),
    )?;
    writeln!(out, "{json}")?;
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;

    const A_PUBLIC: &str = "2f52c8fb18:0:cc8def6df561ff69117bdeb006b329ebac35349a91e65175032e6d1398f1eb58b1eaefa4507ccf875e8dea63b32b4b1c39ddd567ccb963ead9cfec1d538cb21b";

    #[test]
    fn root_specs() {
        let r = parse_root_spec(&format!("{A_PUBLIC}@10.0.0.1/9993,fd00::1/9993")).unwrap();
        assert_eq!(r.identity.address().to_string(), "2f52c8fb18");
        assert_eq!(r.stable_endpoints.len(), 2);
        assert!(
            parse_root_spec(A_PUBLIC)
                .unwrap()
                .stable_endpoints
                .is_empty()
        );
        assert!(parse_root_spec(&format!("{A_PUBLIC}@10.0.0.1:9993")).is_err());
        assert!(parse_root_spec("/no/such/file@10.0.0.1/9993").is_err());
        let two = vec![A_PUBLIC.to_owned(), A_PUBLIC.to_owned()];
        assert!(parse_roots(&two).is_err());
    }
}
