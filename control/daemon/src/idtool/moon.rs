//! `initmoon` and `genmoon`: the idtool moon JSON description and signed moon files.
//! spec: service.md §9, vl1.md §7.6

use std::io::Write;
use std::path::Path;
use std::process::ExitCode;

use anyhow::{Context, Result, bail};
use serde::{Deserialize, Serialize};
use weft_wire::{Identity, World, WorldType};
use zeroize::{Zeroize, Zeroizing};

use super::identity_cmds::load_identity;
use super::keys::{KeyPair, decode_key_hex};
use super::{fsutil, worldutil};

/// One root in the idtool world JSON.
#[derive(Serialize, Deserialize)]
pub(crate) struct RootJson {
    /// Identity text (public; a private part is ignored).
    pub(crate) identity: String,
    /// `IP/port` endpoints.
    #[serde(rename = "stableEndpoints", default)]
    pub(crate) stable_endpoints: Vec<String>,
}

fn default_objtype() -> String {
    "world".to_owned()
}

fn default_world_type() -> String {
    "moon".to_owned()
}

/// The idtool world JSON (`initmoon` output, `genmoon` input). Fields are declared in the
/// order idtool prints them (sorted keys).
#[derive(Serialize, Deserialize)]
pub(crate) struct WorldJson {
    /// World id in hex (initmoon writes the root's 10-digit address).
    pub(crate) id: String,
    /// Always `world`.
    #[serde(default = "default_objtype")]
    pub(crate) objtype: String,
    /// Roots.
    pub(crate) roots: Vec<RootJson>,
    /// Public signing key (hex, 64 bytes); derived from the secret if empty or absent.
    #[serde(rename = "signingKey", default)]
    pub(crate) signing_key: String,
    /// Private signing key (hex, 64 bytes).
    #[serde(rename = "signingKey_SECRET")]
    pub(crate) signing_key_secret: String,
    /// Key that must sign the next revision (hex); the signing key if empty or absent.
    #[serde(rename = "updatesMustBeSignedBy", default)]
    pub(crate) updates_must_be_signed_by: String,
    /// `moon` or `planet`.
    #[serde(rename = "worldType", default = "default_world_type")]
    pub(crate) world_type: String,
}

impl Drop for WorldJson {
    fn drop(&mut self) {
        self.signing_key_secret.zeroize();
    }
}

/// Serializes JSON with a 1-space indent, as idtool does.
fn to_json_1space<T: Serialize>(v: &T) -> Result<Zeroizing<String>> {
    let mut buf = Zeroizing::new(Vec::new());
    let fmt = serde_json::ser::PrettyFormatter::with_indent(b" ");
    let mut ser = serde_json::Serializer::with_formatter(&mut *buf, fmt);
    v.serialize(&mut ser)?;
    Ok(Zeroizing::new(String::from_utf8(buf.to_vec())?))
}

/// The `initmoon` template for a first root, with a given signing key pair.
pub(crate) fn moon_template(root: &Identity, key: &KeyPair) -> WorldJson {
    WorldJson {
        id: root.address().to_string(),
        objtype: default_objtype(),
        roots: vec![RootJson {
            identity: root.to_public().to_string(),
            stable_endpoints: Vec::new(),
        }],
        signing_key: hex::encode(key.public),
        signing_key_secret: hex::encode(&key.private[..]),
        updates_must_be_signed_by: hex::encode(key.public),
        world_type: default_world_type(),
    }
}

/// `initmoon <identity>`: prints the template JSON (1-space indent, trailing newline).
pub(crate) fn initmoon(out: &mut dyn Write, arg: &str) -> Result<ExitCode> {
    let id = load_identity(arg)?;
    let t = moon_template(&id, &KeyPair::generate());
    let json = to_json_1space(&t)?;
    writeln!(out, "{}", json.as_str())?;
    Ok(ExitCode::SUCCESS)
}

/// Parses a hex world id of 1 to 16 digits (an optional `0x` prefix is accepted).
fn parse_hex_id(s: &str) -> Result<u64> {
    let t = s.trim();
    let h = t
        .strip_prefix("0x")
        .or_else(|| t.strip_prefix("0X"))
        .unwrap_or(t);
    if h.is_empty() || h.len() > 16 || !h.bytes().all(|b| b.is_ascii_hexdigit()) {
        bail!("\"id\" must be up to 16 hex digits, got {s:?}");
    }
    let v = u64::from_str_radix(h, 16).with_context(|| format!("bad \"id\" {s:?}"))?;
    if v == 0 {
        bail!("\"id\" must not be zero");
    }
    Ok(v)
}

/// Builds and signs the world described by idtool JSON at `timestamp`. Returns the world and
/// its serialized bytes.
pub(crate) fn build_world(j: &WorldJson, timestamp: u64) -> Result<(World, Vec<u8>)> {
    let kind = match j.world_type.as_str() {
        "moon" => WorldType::Moon,
        "planet" => WorldType::Planet,
        other => bail!("\"worldType\" must be \"moon\" or \"planet\", got {other:?}"),
    };
    let id = parse_hex_id(&j.id)?;
    let mut roots = Vec::with_capacity(j.roots.len());
    for (i, r) in j.roots.iter().enumerate() {
        let identity: Identity = r
            .identity
            .parse()
            .with_context(|| format!("roots[{i}].identity is not a valid identity"))?;
        let eps = worldutil::parse_endpoints(r.stable_endpoints.iter().map(String::as_str))
            .with_context(|| format!("roots[{i}] ({})", identity.address()))?;
        roots.push(worldutil::make_root(&identity, eps));
    }
    worldutil::check_roots(&roots)?;
    let key = KeyPair::from_private(Zeroizing::new(decode_key_hex(
        &j.signing_key_secret,
        "\"signingKey_SECRET\"",
    )?));
    if !j.signing_key.trim().is_empty()
        && decode_key_hex(&j.signing_key, "\"signingKey\"")? != key.public
    {
        bail!("\"signingKey\" is not the public key of \"signingKey_SECRET\"");
    }
    let updates_must_be_signed_by = if j.updates_must_be_signed_by.trim().is_empty() {
        key.public
    } else {
        decode_key_hex(&j.updates_must_be_signed_by, "\"updatesMustBeSignedBy\"")?
    };
    let mut world = World {
        kind,
        id,
        timestamp,
        updates_must_be_signed_by,
        signature: [0; weft_wire::signature::SIGNATURE_LEN],
        roots,
    };
    world.sign(&key.private);
    let bytes = worldutil::encode_checked(&world, &key.public)?;
    Ok((world, bytes))
}

/// `genmoon <json>`: writes `<16 hex id>.moon` in the current directory.
pub(crate) fn genmoon(
    out: &mut dyn Write,
    json: &Path,
    timestamp: Option<u64>,
) -> Result<ExitCode> {
    let text = Zeroizing::new(fsutil::read(json)?);
    let j: WorldJson = serde_json::from_slice(&text)
        .with_context(|| format!("{}: not a valid world JSON description", json.display()))?;
    let timestamp = match timestamp {
        Some(t) => t,
        None => super::now_ms()?,
    };
    let (world, bytes) =
        build_world(&j, timestamp).with_context(|| format!("{}", json.display()))?;
    let name = format!("{:016x}.moon", world.id);
    fsutil::write_atomic(Path::new(&name), &bytes, fsutil::PUBLIC_MODE)?;
    writeln!(
        out,
        "wrote {name} (signed world with timestamp {})",
        world.timestamp
    )?;
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn template_shape_and_build() {
        let root = Identity::generate(&mut rand_core::OsRng);
        let key = KeyPair::generate();
        let mut t = moon_template(&root, &key);
        let json = to_json_1space(&t).unwrap();
        assert!(json.starts_with("{\n \"id\": \""));
        assert!(json.contains("\n  {\n   \"identity\""));
        t.roots[0].stable_endpoints.push("10.0.0.1/9993".into());
        let (w, bytes) = build_world(&t, 1234).unwrap();
        assert_eq!(w.id, root.address().to_u64());
        assert_eq!(w.kind, WorldType::Moon);
        assert!(w.verify(&key.public));
        assert_eq!(World::decode(&bytes).unwrap().0, w);
        t.world_type = "sun".into();
        assert!(build_world(&t, 1).is_err());
        t.world_type = "planet".into();
        t.signing_key = hex::encode([1u8; 64]);
        assert!(build_world(&t, 1).is_err());
    }

    #[test]
    fn hex_ids() {
        assert_eq!(parse_hex_id("9cbc6fc098").unwrap(), 0x9cbc6fc098);
        assert_eq!(parse_hex_id("0x0000009cbc6fc098").unwrap(), 0x9cbc6fc098);
        assert!(parse_hex_id("").is_err());
        assert!(parse_hex_id("0").is_err());
        assert!(parse_hex_id("12345678901234567").is_err());
    }
}
