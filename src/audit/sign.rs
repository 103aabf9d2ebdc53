//! Signed checkpoints: the Ed25519 key an operator gives a changing command, with which the
//! writer signs each checkpoint it appends (`chain::checkpoint_message`), and the check of those
//! signatures by `verify --public-key`; and the key files `embatch keygen` writes and the
//! commands read.
//!
//! A chain rebuilt after an edit has new hashes, so the heads its checkpoints vouch for change
//! too, and their signatures no longer hold; without the secret key they cannot be made again.
//!
//! A key file is one line: 64 lowercase hex characters and a newline (the 32 bytes of the secret,
//! or of the public key in `FILE.pub`). The secret's file is created with mode 0600 and is
//! refused when others may read or write it, as ssh refuses a private key: a key anyone else can
//! read signs for them too, and one anyone else can replace signs for whoever replaced it. No
//! message ever quotes a key file's content.

use std::fs;
use std::io::{self, Read as _, Write as _};
use std::path::{Path, PathBuf};

use ed25519_dalek::{Signature, Signer, SigningKey, Verifier, VerifyingKey};

/// The most bytes read from a key file: a key is 65, and a file much larger is no key file (or
/// one that never ends, like `/dev/zero`, which must not be read forever).
const MAX_KEY_FILE_BYTES: u64 = 4096;

/// A key file that cannot be made, read or used.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    /// The file could not be read.
    #[error("cannot read {what} {path}: {source}")]
    Read {
        /// `signing key` or `public key`.
        what: &'static str,
        /// The file.
        path: String,
        /// The cause.
        #[source]
        source: io::Error,
    },
    /// The secret key's file may be read or written by others than its owner.
    #[error(
        "signing key {path} is open to others (mode {mode:04o}), so it is not only yours to sign \
         with; restrict it with `chmod 600 {path}`"
    )]
    OpenToOthers {
        /// The file.
        path: String,
        /// Its permission bits.
        mode: u32,
    },
    /// The file does not hold a key as `keygen` writes it.
    #[error(
        "{what} {path} holds no key: a key file holds 64 hex characters on one line, as \
         `embatch keygen` writes it"
    )]
    Malformed {
        /// `signing key` or `public key`.
        what: &'static str,
        /// The file.
        path: String,
    },
    /// 64 hex characters that are no Ed25519 public key.
    #[error("public key {path} holds 32 bytes that are no Ed25519 public key")]
    NotAPoint {
        /// The file.
        path: String,
    },
    /// A public key's file named where the secret key's is wanted (or would be written).
    #[error(
        "{path} ends in .pub, as a public key's file does: the signing key's is the file without \
         .pub (`embatch keygen FILE` writes FILE and FILE.pub)"
    )]
    PublicFile {
        /// The file.
        path: String,
    },
    /// `keygen` found a file where it would write one.
    #[error(
        "{path} exists and was left as it is; nothing was written: remove it, or choose another name"
    )]
    Exists {
        /// The file.
        path: String,
    },
    /// `keygen` could not write a file.
    #[error("cannot write {path}: {source}")]
    Write {
        /// The file.
        path: String,
        /// The cause.
        #[source]
        source: io::Error,
    },
    /// The operating system gave no random bytes for a new key.
    #[error("no random bytes from the operating system for a new key: {0}")]
    Random(String),
}

/// The key the writer signs checkpoints with.
#[derive(Clone)]
pub struct CheckpointKey {
    signing: SigningKey,
}

impl std::fmt::Debug for CheckpointKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the secret.
        write!(f, "CheckpointKey({})", self.public_hex())
    }
}

impl CheckpointKey {
    /// The key with this 32-byte secret.
    pub fn from_secret(secret: &[u8; 32]) -> CheckpointKey {
        CheckpointKey {
            signing: SigningKey::from_bytes(secret),
        }
    }

    /// A new key, from 32 bytes of the operating system's randomness (not a seeded generator:
    /// the key outlives the process, and is worth as much as its randomness).
    pub fn generate() -> Result<CheckpointKey, KeyError> {
        use rand::TryRng as _;
        let mut secret = [0u8; 32];
        rand::rngs::SysRng
            .try_fill_bytes(&mut secret)
            .map_err(|e| KeyError::Random(e.to_string()))?;
        Ok(CheckpointKey::from_secret(&secret))
    }

    /// The signing key in the file at `path`, as `embatch keygen` wrote it: refused when others
    /// may read or write the file, when it is named like a public key (`.pub`), and when it holds
    /// anything but 64 hex characters (white space around them aside).
    pub fn load(path: &Path) -> Result<CheckpointKey, KeyError> {
        const WHAT: &str = "signing key";
        if path.extension().is_some_and(|e| e == "pub") {
            return Err(KeyError::PublicFile { path: shown(path) });
        }
        let read = |source| KeyError::Read {
            what: WHAT,
            path: shown(path),
            source,
        };
        let file = fs::File::open(path).map_err(read)?;
        // Asked of the file opened, so that what is judged is what is read.
        let meta = file.metadata().map_err(read)?;
        if meta.is_dir() {
            return Err(read(io::Error::new(
                io::ErrorKind::IsADirectory,
                "is a directory",
            )));
        }
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt as _;
            let mode = meta.permissions().mode() & 0o777;
            if mode & 0o077 != 0 {
                return Err(KeyError::OpenToOthers {
                    path: shown(path),
                    mode,
                });
            }
        }
        let secret = read_key(file, WHAT, path)?;
        Ok(CheckpointKey::from_secret(&secret))
    }

    /// The secret, for writing it to the key file.
    pub fn secret(&self) -> [u8; 32] {
        self.signing.to_bytes()
    }

    /// The public key, lowercase hex (64 characters), as checkpoints record it.
    pub fn public_hex(&self) -> String {
        hex::encode(self.signing.verifying_key().to_bytes())
    }

    /// The signature of `message`, lowercase hex (128 characters).
    pub(crate) fn sign_hex(&self, message: &[u8]) -> String {
        hex::encode(self.signing.sign(message).to_bytes())
    }
}

/// The public key in the file at `path` (as `embatch keygen` wrote it to `FILE.pub`), as
/// lowercase hex, the way checkpoints record it; refused unless it is 64 hex characters (white
/// space around them aside) that are an Ed25519 public key.
pub fn public_key_from_file(path: &Path) -> Result<String, KeyError> {
    const WHAT: &str = "public key";
    let file = fs::File::open(path).map_err(|source| KeyError::Read {
        what: WHAT,
        path: shown(path),
        source,
    })?;
    let bytes = read_key(file, WHAT, path)?;
    VerifyingKey::from_bytes(&bytes).map_err(|_| KeyError::NotAPoint { path: shown(path) })?;
    Ok(hex::encode(bytes))
}

/// The 32 bytes of the key file open as `file`: 64 hex characters, in either case, with white
/// space around them only.
fn read_key(file: fs::File, what: &'static str, path: &Path) -> Result<[u8; 32], KeyError> {
    let mut content = Vec::new();
    file.take(MAX_KEY_FILE_BYTES + 1)
        .read_to_end(&mut content)
        .map_err(|source| KeyError::Read {
            what,
            path: shown(path),
            source,
        })?;
    let malformed = || KeyError::Malformed {
        what,
        path: shown(path),
    };
    let text = std::str::from_utf8(&content)
        .map_err(|_| malformed())?
        .trim();
    let mut key = [0u8; 32];
    if text.len() != 64 {
        return Err(malformed());
    }
    hex::decode_to_slice(text, &mut key).map_err(|_| malformed())?;
    Ok(key)
}

/// Where `embatch keygen FILE` writes the public key: `FILE.pub`.
pub fn public_key_path(secret: &Path) -> PathBuf {
    let mut name = secret.as_os_str().to_owned();
    name.push(".pub");
    PathBuf::from(name)
}

/// What `embatch keygen` wrote.
#[derive(Clone, Debug)]
pub struct KeyFiles {
    /// The signing key's file (mode 0600).
    pub secret: PathBuf,
    /// The public key's file, `secret` with `.pub` added.
    pub public: PathBuf,
    /// The public key, lowercase hex.
    pub public_hex: String,
}

/// Writes a new key pair: the signing key to `path` (mode 0600) and the public key to
/// `path.pub`, each as one line of 64 lowercase hex characters. Neither file may exist: a key
/// overwritten is lost with every signature it could still vouch for, so an existing file is
/// refused, and each file is created exclusively (`O_EXCL`), which also refuses a file made in
/// the meantime, or a symbolic link, by someone else. When the second file cannot be written,
/// the first is removed again: nothing is left half made.
pub fn write_key_pair(path: &Path) -> Result<KeyFiles, KeyError> {
    if path.extension().is_some_and(|e| e == "pub") {
        return Err(KeyError::PublicFile { path: shown(path) });
    }
    let public = public_key_path(path);
    // Both are looked for before either is made, so that a refusal leaves nothing behind.
    for file in [path, public.as_path()] {
        if fs::symlink_metadata(file).is_ok() {
            return Err(KeyError::Exists { path: shown(file) });
        }
    }
    let key = CheckpointKey::generate()?;
    write_new(path, &hex::encode(key.secret()), 0o600)?;
    if let Err(e) = write_new(&public, &key.public_hex(), 0o644) {
        let _ = fs::remove_file(path);
        return Err(e);
    }
    Ok(KeyFiles {
        secret: path.to_path_buf(),
        public,
        public_hex: key.public_hex(),
    })
}

/// Creates `path` exclusively with `mode` (before the umask) and writes `line` and a newline to
/// it, durably; a file that could not be written whole is removed.
fn write_new(path: &Path, line: &str, mode: u32) -> Result<(), KeyError> {
    let mut options = fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt as _;
        options.mode(mode);
    }
    #[cfg(not(unix))]
    let _ = mode;
    let mut file = options.open(path).map_err(|source| match source.kind() {
        io::ErrorKind::AlreadyExists => KeyError::Exists { path: shown(path) },
        _ => KeyError::Write {
            path: shown(path),
            source,
        },
    })?;
    let written = file
        .write_all(format!("{line}\n").as_bytes())
        .and_then(|()| file.sync_all());
    if let Err(source) = written {
        drop(file);
        let _ = fs::remove_file(path);
        return Err(KeyError::Write {
            path: shown(path),
            source,
        });
    }
    Ok(())
}

/// A path as messages show it.
fn shown(path: &Path) -> String {
    path.display().to_string()
}

/// Whether `signature_hex` is a valid signature of `message` by `public_hex` (both as the
/// checkpoints record them); false for text that is not a key or a signature.
pub(crate) fn signature_holds(public_hex: &str, signature_hex: &str, message: &[u8]) -> bool {
    let Ok(Ok(public)) = hex::decode(public_hex).map(|b| <[u8; 32]>::try_from(b.as_slice())) else {
        return false;
    };
    let Ok(Ok(signature)) = hex::decode(signature_hex).map(|b| <[u8; 64]>::try_from(b.as_slice()))
    else {
        return false;
    };
    let Ok(key) = VerifyingKey::from_bytes(&public) else {
        return false;
    };
    key.verify(message, &Signature::from_bytes(&signature))
        .is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_signature_holds_for_its_message_and_key_only() {
        let key = CheckpointKey::from_secret(&[7; 32]);
        let other = CheckpointKey::from_secret(&[8; 32]);
        let signature = key.sign_hex(b"head 1");
        assert!(signature_holds(&key.public_hex(), &signature, b"head 1"));
        assert!(!signature_holds(&key.public_hex(), &signature, b"head 2"));
        assert!(!signature_holds(&other.public_hex(), &signature, b"head 1"));
        assert!(!signature_holds("zz", &signature, b"head 1"));
        assert!(!signature_holds(&key.public_hex(), "00", b"head 1"));
        assert!(!format!("{key:?}").contains(&hex::encode(key.secret())));
    }

    /// Writes `content` to `name` in `dir` with `mode`.
    fn key_file(dir: &Path, name: &str, content: &str, mode: u32) -> PathBuf {
        let path = dir.join(name);
        fs::write(&path, content).unwrap();
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt as _;
            fs::set_permissions(&path, fs::Permissions::from_mode(mode)).unwrap();
        }
        #[cfg(not(unix))]
        let _ = mode;
        path
    }

    #[test]
    fn a_key_pair_is_written_as_two_lines_of_hex_and_read_back() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("signing");
        let written = write_key_pair(&path).unwrap();
        assert_eq!(written.secret, path);
        assert_eq!(written.public, dir.path().join("signing.pub"));
        for file in [&written.secret, &written.public] {
            let text = fs::read_to_string(file).unwrap();
            assert_eq!(text.len(), 65, "{}", file.display());
            assert!(text.ends_with('\n'));
            assert!(
                text[..64]
                    .bytes()
                    .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
            );
        }
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt as _;
            let mode = fs::metadata(&path).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        let key = CheckpointKey::load(&path).unwrap();
        assert_eq!(key.public_hex(), written.public_hex);
        assert_eq!(
            public_key_from_file(&written.public).unwrap(),
            written.public_hex
        );
        let signature = key.sign_hex(b"m");
        assert!(signature_holds(&written.public_hex, &signature, b"m"));

        // Two keys made one after the other differ.
        let other = write_key_pair(&dir.path().join("other")).unwrap();
        assert_ne!(other.public_hex, written.public_hex);
    }

    #[test]
    fn keygen_never_overwrites_a_file_and_leaves_nothing_when_it_refuses() {
        let dir = tempfile::tempdir().unwrap();
        let secret = key_file(dir.path(), "k", "precious\n", 0o600);
        let err = write_key_pair(&secret).unwrap_err();
        assert!(
            matches!(&err, KeyError::Exists { path } if path.ends_with("k")),
            "{err}"
        );
        assert_eq!(fs::read_to_string(&secret).unwrap(), "precious\n");
        assert!(!dir.path().join("k.pub").exists(), "nothing was written");

        // Only the public key's file exists: it is refused too, before the secret is made.
        let public = key_file(dir.path(), "j.pub", "kept\n", 0o644);
        let err = write_key_pair(&dir.path().join("j")).unwrap_err();
        assert!(
            matches!(&err, KeyError::Exists { path } if path.ends_with("j.pub")),
            "{err}"
        );
        assert!(err.to_string().contains("nothing was written"), "{err}");
        assert_eq!(fs::read_to_string(&public).unwrap(), "kept\n");
        assert!(!dir.path().join("j").exists());

        // A dangling symbolic link is a file in the way, not a name to write through.
        #[cfg(unix)]
        {
            let link = dir.path().join("l");
            std::os::unix::fs::symlink(dir.path().join("elsewhere"), &link).unwrap();
            assert!(matches!(
                write_key_pair(&link),
                Err(KeyError::Exists { .. })
            ));
            assert!(!dir.path().join("elsewhere").exists());
        }

        let err = write_key_pair(&dir.path().join("x.pub")).unwrap_err();
        assert!(matches!(err, KeyError::PublicFile { .. }), "{err}");
        let err = write_key_pair(&dir.path().join("no-such-dir").join("k")).unwrap_err();
        assert!(matches!(err, KeyError::Write { .. }), "{err}");
    }

    #[cfg(unix)]
    #[test]
    fn a_signing_key_others_may_read_or_write_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let secret = "ab".repeat(32);
        for mode in [0o644, 0o640, 0o604, 0o620, 0o602, 0o660] {
            let path = key_file(dir.path(), &format!("k{mode:o}"), &secret, mode);
            let err = CheckpointKey::load(&path).unwrap_err();
            assert!(
                matches!(err, KeyError::OpenToOthers { mode: m, .. } if m == mode),
                "{mode:o}: {err}"
            );
            let text = err.to_string();
            assert!(
                text.contains(&format!("chmod 600 {}", path.display())),
                "{text}"
            );
            assert!(!text.contains(&secret), "{text}");
        }
        let path = key_file(dir.path(), "k400", &secret, 0o400);
        assert!(
            CheckpointKey::load(&path).is_ok(),
            "read-only by its owner is fine"
        );
    }

    #[test]
    fn a_signing_key_file_must_hold_64_hex_characters() {
        let dir = tempfile::tempdir().unwrap();
        let secret = "ab".repeat(32);
        for (i, content) in [
            String::new(),
            "\n".to_string(),
            "ab".repeat(31),
            "ab".repeat(33),
            format!("{}zz", "ab".repeat(31)),
            format!("{secret} {secret}"),
            format!("\"{secret}\""),
            format!("secret = {secret}"),
            "é".repeat(32),
            "a".repeat(5000),
        ]
        .into_iter()
        .enumerate()
        {
            let path = key_file(dir.path(), &format!("bad{i}"), &content, 0o600);
            let err = CheckpointKey::load(&path).unwrap_err();
            assert!(
                matches!(
                    err,
                    KeyError::Malformed {
                        what: "signing key",
                        ..
                    }
                ),
                "{content:?}: {err}"
            );
            let text = err.to_string();
            assert!(text.contains("64 hex characters"), "{text}");
            assert!(
                content.trim().is_empty() || !text.contains(content.trim()),
                "{text}"
            );
        }
        // White space around the key is no matter, and neither is its case.
        let path = key_file(
            dir.path(),
            "spaced",
            &format!("  {}\r\n\n", secret.to_uppercase()),
            0o600,
        );
        let key = CheckpointKey::load(&path).unwrap();
        assert_eq!(key.secret(), [0xab; 32]);
    }

    #[test]
    fn a_missing_key_a_directory_and_a_public_key_file_are_refused_as_signing_keys() {
        let dir = tempfile::tempdir().unwrap();
        let err = CheckpointKey::load(&dir.path().join("missing")).unwrap_err();
        assert!(matches!(err, KeyError::Read { .. }), "{err}");
        assert!(
            err.to_string().starts_with("cannot read signing key "),
            "{err}"
        );
        let err = CheckpointKey::load(dir.path()).unwrap_err();
        assert!(err.to_string().contains("is a directory"), "{err}");
        let written = write_key_pair(&dir.path().join("k")).unwrap();
        let err = CheckpointKey::load(&written.public).unwrap_err();
        assert!(matches!(err, KeyError::PublicFile { .. }), "{err}");
        assert!(err.to_string().contains("without .pub"), "{err}");
    }

    #[test]
    fn a_public_key_file_must_hold_a_point_of_the_curve() {
        let dir = tempfile::tempdir().unwrap();
        let err = public_key_from_file(&dir.path().join("missing.pub")).unwrap_err();
        assert!(
            err.to_string().starts_with("cannot read public key "),
            "{err}"
        );
        let path = key_file(dir.path(), "short.pub", &"ab".repeat(31), 0o644);
        let err = public_key_from_file(&path).unwrap_err();
        assert!(
            matches!(
                err,
                KeyError::Malformed {
                    what: "public key",
                    ..
                }
            ),
            "{err}"
        );
        // Not every 32 bytes are a point: the first repeated byte that is not one.
        let not_a_point = (0..=u8::MAX)
            .map(|b| [b; 32])
            .find(|bytes| VerifyingKey::from_bytes(bytes).is_err())
            .expect("some 32 bytes are no point of the curve");
        let path = key_file(dir.path(), "off.pub", &hex::encode(not_a_point), 0o644);
        let err = public_key_from_file(&path).unwrap_err();
        assert!(matches!(err, KeyError::NotAPoint { .. }), "{err}");
        // A public key file may be read by anyone, and may be given in capitals.
        let key = CheckpointKey::from_secret(&[9; 32]);
        let path = key_file(
            dir.path(),
            "ok.pub",
            &key.public_hex().to_uppercase(),
            0o644,
        );
        assert_eq!(public_key_from_file(&path).unwrap(), key.public_hex());
    }
}
