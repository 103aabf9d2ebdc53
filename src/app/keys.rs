//! `keygen`: the key pair that signs the audit log's checkpoints, written to two files.

use std::path::Path;

use crate::audit::{AuditError, write_key_pair};
use crate::console::outln;
use crate::exit::Exit;
use crate::text;

use super::AppError;

/// Writes a new key pair to `file` and `file.pub`, and says what to do with each.
pub(super) fn keygen(file: &Path) -> Result<Exit, AppError> {
    let written = write_key_pair(file).map_err(AuditError::from)?;
    let secret = text::printable(&written.secret.display().to_string()).into_owned();
    let public = text::printable(&written.public.display().to_string()).into_owned();
    outln!("wrote the signing key to {secret} (mode 0600) and the public key to {public}")?;
    outln!("public key: {}", written.public_hex)?;
    outln!(
        "sign runs with `--signing-key {secret}` (or EMBATCH_SIGNING_KEY) on apply, replay, undo, \
         resume, rebuild-scopes and snapshot; check them with `embatch verify --public-key \
         {public}`"
    )?;
    outln!(
        "keep {secret} readable by you alone and apart from the audit log: whoever holds it can \
         sign for you"
    )?;
    Ok(Exit::Success)
}
