//! Signed checkpoints: the Ed25519 key an operator gives a changing command, with which the
//! writer signs each checkpoint it appends (`chain::checkpoint_message`), and the check of those
//! signatures by `verify --public-key`.
//!
//! A chain rebuilt after an edit has new hashes, so the heads its checkpoints vouch for change
//! too, and their signatures no longer hold; without the secret key they cannot be made again.

use ed25519_dalek::{Signature, Signer, SigningKey, Verifier, VerifyingKey};

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
}
