//! Shared helpers for building, checking, loading and describing worlds. spec: vl1.md §7

use std::collections::HashSet;
use std::path::Path;

use anyhow::{Context, Result, bail};
use serde::Serialize;
use weft_wire::inet::IpPort;
use weft_wire::world::{MAX_ENDPOINTS, MAX_ROOTS, MAX_SERIALIZED_LEN, Root};
use weft_wire::{Identity, World, WorldType};

use super::fsutil;

/// Lowercase name of a world type, as used in idtool JSON (`worldType`).
pub(crate) fn world_type_name(kind: WorldType) -> &'static str {
    match kind {
        WorldType::Planet => "planet",
        WorldType::Moon => "moon",
    }
}

/// Parses a world id: `0x`-prefixed hex or decimal.
pub(crate) fn parse_world_id(s: &str) -> Result<u64> {
    let t = s.trim();
    let parsed = match t.strip_prefix("0x").or_else(|| t.strip_prefix("0X")) {
        Some(h) => u64::from_str_radix(h, 16),
        None => t.parse::<u64>(),
    };
    match parsed {
        Ok(v) if v != 0 => Ok(v),
        _ => {
            bail!("world id must be a non-zero decimal or 0x-prefixed hex 64-bit number, got {s:?}")
        }
    }
}

/// Parses a list of `IP/port` endpoints.
pub(crate) fn parse_endpoints<'a>(
    items: impl IntoIterator<Item = &'a str>,
) -> Result<Vec<std::net::SocketAddr>> {
    items
        .into_iter()
        .map(|e| {
            e.trim()
                .parse::<IpPort>()
                .map(|ip| ip.0)
                .with_context(|| format!("bad stable endpoint {e:?} (expected IP/port)"))
        })
        .collect()
}

/// Checks a root list before it is signed: 1 to 4 roots, at most 32 endpoints each, no
/// duplicate root addresses, and every root identity valid (address derivation).
pub(crate) fn check_roots(roots: &[Root]) -> Result<()> {
    if roots.is_empty() {
        bail!("a world needs at least one root");
    }
    if roots.len() > MAX_ROOTS {
        bail!(
            "{} roots given, a world holds at most {MAX_ROOTS}",
            roots.len()
        );
    }
    let mut seen = HashSet::new();
    for r in roots {
        let a = r.identity.address();
        if !seen.insert(a) {
            bail!("root {a} is listed twice");
        }
        if r.stable_endpoints.len() > MAX_ENDPOINTS {
            bail!(
                "root {a} has {} stable endpoints, at most {MAX_ENDPOINTS} are allowed",
                r.stable_endpoints.len()
            );
        }
        if !r.identity.validate() {
            bail!("root identity {a} FAILED validation");
        }
    }
    Ok(())
}

/// Builds a root from an identity (the private key, if any, is dropped) and endpoints.
pub(crate) fn make_root(identity: &Identity, endpoints: Vec<std::net::SocketAddr>) -> Root {
    Root {
        identity: identity.to_public(),
        stable_endpoints: endpoints,
    }
}

/// Serializes a signed world and checks it: it decodes back to the same world, fits the 1.14
/// buffer bound, and its signature verifies with `signer_public`.
pub(crate) fn encode_checked(world: &World, signer_public: &[u8; 64]) -> Result<Vec<u8>> {
    let bytes = world.to_bytes();
    if bytes.len() > MAX_SERIALIZED_LEN {
        bail!(
            "serialized world is {} bytes, more than the {MAX_SERIALIZED_LEN} 1.14 accepts",
            bytes.len()
        );
    }
    match World::decode(&bytes) {
        Ok((back, used)) if used == bytes.len() && &back == world => {}
        _ => bail!("internal error: world does not survive a serialization round trip"),
    }
    if !world.verify(signer_public) {
        bail!("internal error: fresh world signature does not verify");
    }
    Ok(bytes)
}

/// Reads and decodes a world file; trailing bytes are an error.
pub(crate) fn load_world(path: &Path) -> Result<World> {
    let b = fsutil::read(path)?;
    let (w, used) =
        World::decode(&b).with_context(|| format!("{}: not a valid world file", path.display()))?;
    if used != b.len() {
        bail!(
            "{}: {} unexpected bytes after the world",
            path.display(),
            b.len() - used
        );
    }
    Ok(w)
}

#[derive(Serialize)]
struct RootShow {
    identity: String,
    address: String,
    #[serde(rename = "stableEndpoints")]
    stable_endpoints: Vec<String>,
}

#[derive(Serialize)]
struct PreviousShow {
    file: String,
    #[serde(rename = "validUpdate")]
    valid_update: bool,
}

#[derive(Serialize)]
struct WorldShow {
    #[serde(rename = "worldType")]
    world_type: &'static str,
    id: String,
    timestamp: u64,
    #[serde(rename = "updatesMustBeSignedBy")]
    updates_must_be_signed_by: String,
    signature: String,
    roots: Vec<RootShow>,
    #[serde(rename = "serializedLength")]
    serialized_length: usize,
    #[serde(rename = "selfSigned")]
    self_signed: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    previous: Option<PreviousShow>,
}

/// Describes a world as JSON (2-space indent): type, 16-hex id, timestamp, key, signature,
/// roots, whether it is self-signed (a valid genesis revision) and, given the previous revision,
/// whether it is a valid update of it (vl1.md §7.3).
pub(crate) fn describe(world: &World, previous: Option<(&str, &World)>) -> Result<String> {
    let show = WorldShow {
        world_type: world_type_name(world.kind),
        id: format!("{:016x}", world.id),
        timestamp: world.timestamp,
        updates_must_be_signed_by: hex::encode(world.updates_must_be_signed_by),
        signature: hex::encode(world.signature),
        roots: world
            .roots
            .iter()
            .map(|r| RootShow {
                identity: r.identity.to_string(),
                address: r.identity.address().to_string(),
                stable_endpoints: r
                    .stable_endpoints
                    .iter()
                    .map(|e| IpPort(*e).to_string())
                    .collect(),
            })
            .collect(),
        serialized_length: world.to_bytes().len(),
        self_signed: world.verify(&world.updates_must_be_signed_by),
        previous: previous.map(|(file, p)| PreviousShow {
            file: file.to_owned(),
            valid_update: World::should_replace(Some(p), world),
        }),
    };
    Ok(serde_json::to_string_pretty(&show)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn world_ids() {
        assert_eq!(parse_world_id("0x4c41425a54").unwrap(), 0x4c41425a54);
        assert_eq!(parse_world_id("149604618").unwrap(), 149604618);
        assert!(parse_world_id("0").is_err());
        assert!(parse_world_id("0xzz").is_err());
        assert!(parse_world_id("-1").is_err());
    }

    #[test]
    fn endpoints() {
        let e = parse_endpoints(["10.0.0.1/9993", "fd00::1/443"]).unwrap();
        assert_eq!(e.len(), 2);
        assert!(parse_endpoints(["10.0.0.1:9993"]).is_err());
    }
}
