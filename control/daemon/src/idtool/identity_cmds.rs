//! Identity subcommands: generate, validate, getpublic, sign, verify. spec: service.md §9

use std::io::Write;
use std::path::Path;
use std::process::ExitCode;

use anyhow::{Context, Result, anyhow, bail};
use rand_core::OsRng;
use weft_wire::Identity;
use zeroize::Zeroizing;

use super::fsutil;

/// Whether an identity argument is a literal identity rather than a file path: longer than 32
/// characters with `:` at index 10. spec: service.md §9
pub(crate) fn is_identity_literal(arg: &str) -> bool {
    arg.len() > 32 && arg.as_bytes().get(10) == Some(&b':')
}

/// How an identity argument is named in error messages: the path, or for a literal only its
/// address (a literal may hold a private key).
pub(crate) fn identity_arg_name(arg: &str) -> String {
    if is_identity_literal(arg) {
        format!("identity {}", arg.get(..10).unwrap_or(arg))
    } else {
        arg.to_owned()
    }
}

/// Loads an identity from a literal or a file (see [`is_identity_literal`]). Does not check the
/// address derivation.
pub(crate) fn load_identity(arg: &str) -> Result<Identity> {
    let text: Zeroizing<String> = if is_identity_literal(arg) {
        Zeroizing::new(arg.to_owned())
    } else {
        let bytes = Zeroizing::new(fsutil::read(Path::new(arg))?);
        Zeroizing::new(
            std::str::from_utf8(&bytes)
                .map_err(|_| anyhow!("{arg}: not a text identity file"))?
                .to_owned(),
        )
    };
    text.parse::<Identity>()
        .with_context(|| format!("{}: not a valid identity", identity_arg_name(arg)))
}

/// Parses a vanity prefix: 1 to 10 hex digits, returned in lowercase.
fn parse_vanity(v: &str) -> Result<String> {
    if v.is_empty() || v.len() > 10 || !v.bytes().all(|b| b.is_ascii_hexdigit()) {
        bail!("vanity prefix must be 1 to 10 hex digits, got {v:?}");
    }
    Ok(v.to_ascii_lowercase())
}

/// Generates an identity whose address starts with `prefix` (any address if `None`), reporting
/// progress to `progress`.
pub(crate) fn generate_identity(prefix: Option<&str>, progress: &mut dyn Write) -> Identity {
    let Some(prefix) = prefix else {
        return Identity::generate(&mut OsRng);
    };
    let mut tried: u64 = 0;
    loop {
        let id = Identity::generate(&mut OsRng);
        tried += 1;
        let addr = id.address().to_string();
        let hit = addr.starts_with(prefix);
        // Progress output is best effort.
        let _ = write!(
            progress,
            "\rvanity search for {prefix}: {tried} tried, last {addr}"
        );
        if hit {
            let _ = writeln!(progress);
            return id;
        }
    }
}

/// `generate [<secret path>] [<public path>] [<vanity hex>]`.
pub(crate) fn generate(
    out: &mut dyn Write,
    secret_path: Option<&Path>,
    public_path: Option<&Path>,
    vanity: Option<&str>,
) -> Result<ExitCode> {
    let prefix = vanity.map(parse_vanity).transpose()?;
    let id = generate_identity(prefix.as_deref(), &mut std::io::stderr());
    let secret = id.to_secret_string()?;
    match secret_path {
        None => writeln!(out, "{}", secret.as_str())?,
        Some(sp) => {
            fsutil::write_atomic(sp, secret.as_bytes(), fsutil::SECRET_MODE)?;
            writeln!(out, "{} written", sp.display())?;
            if let Some(pp) = public_path {
                fsutil::write_atomic(pp, id.to_string().as_bytes(), fsutil::PUBLIC_MODE)?;
                writeln!(out, "{} written", pp.display())?;
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// `validate <identity>`: full derivation check.
pub(crate) fn validate(out: &mut dyn Write, arg: &str) -> Result<ExitCode> {
    let id = load_identity(arg)?;
    if id.validate() {
        writeln!(out, "{arg} is a valid identity")?;
        Ok(ExitCode::SUCCESS)
    } else {
        eprintln!("{arg} FAILED validation.");
        Ok(ExitCode::FAILURE)
    }
}

/// `getpublic <identity>`: the public text form, no newline.
pub(crate) fn getpublic(out: &mut dyn Write, arg: &str) -> Result<ExitCode> {
    let id = load_identity(arg)?;
    write!(out, "{id}")?;
    Ok(ExitCode::SUCCESS)
}

/// `sign <secret identity> <file>`: 192 hex digits, no newline.
pub(crate) fn sign(out: &mut dyn Write, arg: &str, file: &Path) -> Result<ExitCode> {
    let id = load_identity(arg)?;
    if !id.has_private() {
        bail!(
            "{} has no private key (a secret identity is needed to sign)",
            identity_arg_name(arg)
        );
    }
    let data = fsutil::read(file)?;
    let sig = id.sign(&data)?;
    write!(out, "{}", hex::encode(sig))?;
    Ok(ExitCode::SUCCESS)
}

fn is_hex(s: &str) -> bool {
    !s.is_empty() && s.len().is_multiple_of(2) && s.bytes().all(|b| b.is_ascii_hexdigit())
}

/// Loads a signature argument: 192 hex digits literally, else a file holding hex text (any
/// surrounding whitespace) or the 96 raw bytes.
pub(crate) fn load_signature(arg: &str) -> Result<Vec<u8>> {
    if arg.len() == 2 * weft_wire::signature::SIGNATURE_LEN && is_hex(arg) {
        return hex::decode(arg).map_err(|e| anyhow!("bad signature hex: {e}"));
    }
    let bytes = fsutil::read(Path::new(arg))?;
    if let Ok(text) = std::str::from_utf8(&bytes) {
        let t = text.trim();
        if is_hex(t) {
            return hex::decode(t).map_err(|e| anyhow!("{arg}: bad signature hex: {e}"));
        }
    }
    if bytes.len() == weft_wire::signature::SIGNATURE_LEN {
        return Ok(bytes);
    }
    bail!("{arg}: not a signature (expected 192 hex digits or 96 bytes)")
}

/// `verify <identity> <file> <signature>`.
pub(crate) fn verify(
    out: &mut dyn Write,
    arg: &str,
    file: &Path,
    signature: &str,
) -> Result<ExitCode> {
    let id = load_identity(arg)?;
    let data = fsutil::read(file)?;
    let sig = load_signature(signature)?;
    if id.verify(&data, &sig) {
        writeln!(out, "{} signature valid", file.display())?;
        Ok(ExitCode::SUCCESS)
    } else {
        eprintln!("{} signature check FAILED", file.display());
        Ok(ExitCode::FAILURE)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: &str = "2f52c8fb18:0:cc8def6df561ff69117bdeb006b329ebac35349a91e65175032e6d1398f1eb58b1eaefa4507ccf875e8dea63b32b4b1c39ddd567ccb963ead9cfec1d538cb21b:f0bdc71129bf59592ac580ee136b81b2a2a516f156acf41b2515dd1b756a729dd3babe47ff9b1f7e691f6ecd7c11bf10d273b417abc610fed8462fa111036079";

    #[test]
    fn literal_rule() {
        assert!(is_identity_literal(A));
        assert!(!is_identity_literal("identity.secret"));
        assert!(!is_identity_literal("2f52c8fb18:0:ab"));
        assert!(!is_identity_literal(
            "/some/very/long/path/to/an/identity/file"
        ));
        assert_eq!(identity_arg_name(A), "identity 2f52c8fb18");
        assert_eq!(identity_arg_name("x.secret"), "x.secret");
    }

    #[test]
    fn literal_parse_errors_do_not_leak_private_key() {
        let bad = A.replacen(":0:", ":1:", 1);
        let e = format!("{:#}", load_identity(&bad).unwrap_err());
        assert!(!e.contains("f0bdc711"), "{e}");
        assert!(load_identity("/no/such/file").is_err());
    }

    #[test]
    fn vanity_prefix() {
        assert_eq!(parse_vanity("AB").unwrap(), "ab");
        assert!(parse_vanity("").is_err());
        assert!(parse_vanity("xyz").is_err());
        assert!(parse_vanity("01234567890").is_err());
    }

    #[test]
    fn sign_output_matches_appendix_a() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("msg");
        std::fs::write(&f, b"hello zerotier signature test\n").unwrap();
        let mut out = Vec::new();
        sign(&mut out, A, &f).unwrap();
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "01d7a16958352289c309aaf3bf73816b2f62e3c301c61684d93e72aa09e3ba4b973d205a68168c8ccba3c4c7fead3d5f9ad90ab3db035cdb10a91531bebc6405732991bea06b11eaca424ac717b8c717da8c5211944026834e140e0ca633d66b"
        );
    }
}
