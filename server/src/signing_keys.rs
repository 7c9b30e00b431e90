//! The server's signing keys on disk, in the data directory: `signing.key` holds the current
//! key (`<version> <base64 seed>`, mode 0600; a bare seed is version `mdx1`, the first
//! format), and `old_signing_keys.json` the public halves of keys rotated out, with when they
//! stopped being used, so signatures made with them still verify elsewhere.
//! `medrix keys rotate` makes a new key and retires the current one.

use std::{
    io::Write,
    os::unix::fs::OpenOptionsExt,
    path::{Path, PathBuf},
};

use base64::{Engine as _, engine::general_purpose::STANDARD_NO_PAD};
use medrix_protocol::{keys::ServerSigningKey, server_keys::OldVerifyKey};
use serde::{Deserialize, Serialize};

const FIRST_VERSION: &str = "mdx1";

/// The current key and the retired ones.
pub struct SigningKeys {
    pub current: ServerSigningKey,
    pub old: Vec<OldVerifyKey>,
}

#[derive(Serialize, Deserialize)]
struct StoredOldKey {
    key_id: String,
    key: String,
    expired_ts: u64,
}

fn current_path(dir: &Path) -> PathBuf {
    dir.join("signing.key")
}

fn old_path(dir: &Path) -> PathBuf {
    dir.join("old_signing_keys.json")
}

/// Loads the keys, creating a first key from OS randomness if there is none.
pub fn load_or_create(dir: &Path, server_name: &str) -> Result<SigningKeys, String> {
    let path = current_path(dir);
    let (version, seed) = match std::fs::read_to_string(&path) {
        Ok(text) => {
            parse_current(&text).ok_or_else(|| format!("{}: unreadable key", path.display()))?
        }
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => {
            let seed = random_seed();
            write_private(&path, &format!("{FIRST_VERSION} {seed}"), false)?;
            (FIRST_VERSION.to_owned(), seed)
        }
        Err(err) => return Err(format!("{}: {err}", path.display())),
    };
    let current = ServerSigningKey::from_base64_seed(server_name, &version, &seed)
        .map_err(|err| format!("{}: {err}", path.display()))?;
    Ok(SigningKeys { current, old: load_old(dir)? })
}

/// Retires the current key (its public half goes to the old keys, expired now) and makes a
/// new one with the next version. Returns the new key ID.
pub fn rotate(dir: &Path, server_name: &str, now_ms: u64) -> Result<String, String> {
    let keys = load_or_create(dir, server_name)?;
    let mut old: Vec<StoredOldKey> = keys
        .old
        .iter()
        .map(|k| StoredOldKey {
            key_id: k.key_id.clone(),
            key: k.public_key_base64.clone(),
            expired_ts: k.expired_ts,
        })
        .collect();
    old.push(StoredOldKey {
        key_id: keys.current.key_id(),
        key: keys.current.public_key_base64(),
        expired_ts: now_ms,
    });
    let next_version = next_version(&keys.current.key_id());
    // The old key list first: a crash between the two writes keeps the current key usable and
    // merely lists it as old too.
    let json = serde_json::to_string_pretty(&old).map_err(|err| format!("old keys: {err}"))?;
    write_replacing(&old_path(dir), &json)?;
    write_private(&current_path(dir), &format!("{next_version} {}", random_seed()), true)?;
    Ok(format!("ed25519:{next_version}"))
}

fn parse_current(text: &str) -> Option<(String, String)> {
    let mut parts = text.split_whitespace();
    match (parts.next(), parts.next(), parts.next()) {
        (Some(seed), None, None) => Some((FIRST_VERSION.to_owned(), seed.to_owned())),
        (Some(version), Some(seed), None) => Some((version.to_owned(), seed.to_owned())),
        _ => None,
    }
}

/// `ed25519:mdx<n>` → `mdx<n+1>`; any other scheme gets `mdx2`.
fn next_version(key_id: &str) -> String {
    let number =
        key_id.strip_prefix("ed25519:mdx").and_then(|n| n.parse::<u64>().ok()).unwrap_or(1);
    format!("mdx{}", number + 1)
}

fn load_old(dir: &Path) -> Result<Vec<OldVerifyKey>, String> {
    let path = old_path(dir);
    let text = match std::fs::read_to_string(&path) {
        Ok(text) => text,
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(err) => return Err(format!("{}: {err}", path.display())),
    };
    let stored: Vec<StoredOldKey> =
        serde_json::from_str(&text).map_err(|err| format!("{}: {err}", path.display()))?;
    Ok(stored
        .into_iter()
        .map(|k| OldVerifyKey {
            key_id: k.key_id,
            public_key_base64: k.key,
            expired_ts: k.expired_ts,
        })
        .collect())
}

fn random_seed() -> String {
    STANDARD_NO_PAD.encode(crate::random::bytes::<32>())
}

/// Writes a secret file readable by the owner only; `replace` allows an existing one.
fn write_private(path: &Path, text: &str, replace: bool) -> Result<(), String> {
    let temporary = path.with_extension("new");
    let mut options = std::fs::OpenOptions::new();
    options.write(true).mode(0o600);
    if replace {
        options.create(true).truncate(true);
    } else {
        options.create_new(true);
    }
    let target = if replace { &temporary } else { path };
    let mut file = options.open(target).map_err(|err| format!("{}: {err}", target.display()))?;
    file.write_all(text.as_bytes())
        .and_then(|()| file.sync_all())
        .map_err(|err| format!("{}: {err}", target.display()))?;
    if replace {
        std::fs::rename(&temporary, path).map_err(|err| format!("{}: {err}", path.display()))?;
        sync_dir(path)?;
    }
    Ok(())
}

fn write_replacing(path: &Path, text: &str) -> Result<(), String> {
    let temporary = path.with_extension("new");
    std::fs::write(&temporary, text)
        .and_then(|()| std::fs::File::open(&temporary)?.sync_all())
        .and_then(|()| std::fs::rename(&temporary, path))
        .map_err(|err| format!("{}: {err}", path.display()))?;
    sync_dir(path)
}

fn sync_dir(path: &Path) -> Result<(), String> {
    let dir = path.parent().unwrap_or(Path::new("."));
    std::fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|err| format!("{}: {err}", dir.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_first_key_format_and_versions_read_back() {
        assert_eq!(parse_current("abc\n"), Some(("mdx1".into(), "abc".into())));
        assert_eq!(parse_current("mdx3 abc"), Some(("mdx3".into(), "abc".into())));
        assert_eq!(parse_current("a b c"), None);
        assert_eq!(next_version("ed25519:mdx1"), "mdx2");
        assert_eq!(next_version("ed25519:mdx41"), "mdx42");
        assert_eq!(next_version("ed25519:other"), "mdx2");
    }

    #[test]
    fn rotation_retires_the_current_key_and_keeps_its_public_half() {
        let dir = std::env::temp_dir().join(format!("medrix-keys-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let first = load_or_create(&dir, "hospital.example").unwrap();
        assert_eq!(first.current.key_id(), "ed25519:mdx1");
        let new_id = rotate(&dir, "hospital.example", 1_234).unwrap();
        let after = load_or_create(&dir, "hospital.example").unwrap();
        assert_eq!(
            (new_id.as_str(), after.current.key_id().as_str()),
            ("ed25519:mdx2", "ed25519:mdx2")
        );
        assert_eq!(
            after.old,
            vec![OldVerifyKey {
                key_id: "ed25519:mdx1".into(),
                public_key_base64: first.current.public_key_base64(),
                expired_ts: 1_234,
            }]
        );
        assert_ne!(after.current.public_key_base64(), first.current.public_key_base64());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
