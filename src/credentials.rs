//! API keys and signing secrets: generated at random, stored only as hashes (keys),
//! compared in constant time.

use base64::Engine;
use rand::{distributions::Alphanumeric, Rng, RngCore};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::domain::KeyKind;

/// Characters of a key kept for display in listings (`dbrd_AbC1…`).
const PREFIX_LEN: usize = 12;

/// A freshly made key: the secret (shown once) and what is stored.
pub struct NewKey {
    pub key: String,
    pub prefix: String,
    pub hash: [u8; 32],
}

/// Makes a key of `kind`: a readable kind tag plus 32 random alphanumerics (≈190 bits).
pub fn generate_key(kind: KeyKind) -> NewKey {
    let tag = match kind {
        KeyKind::Inbound => "dbin",
        KeyKind::ThirdParty => "dbtp",
        KeyKind::Read => "dbrd",
    };
    let random: String = rand::thread_rng().sample_iter(&Alphanumeric).take(32).map(char::from).collect();
    let key = format!("{tag}_{random}");
    NewKey { prefix: key[..PREFIX_LEN].to_string(), hash: hash_key(&key), key }
}

/// The stored form of a key. Keys are high-entropy, so a fast hash suffices.
pub fn hash_key(key: &str) -> [u8; 32] {
    Sha256::digest(key.as_bytes()).into()
}

/// Constant-time equality of two byte strings.
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.ct_eq(b).into()
}

/// A Standard Webhooks signing secret: `whsec_` + base64 of 24 random bytes.
pub fn generate_signing_secret() -> String {
    let mut bytes = [0u8; 24];
    rand::thread_rng().fill_bytes(&mut bytes);
    format!("whsec_{}", base64::engine::general_purpose::STANDARD.encode(bytes))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_unique_tagged_and_hashed() {
        let a = generate_key(KeyKind::Read);
        let b = generate_key(KeyKind::Read);
        assert_ne!(a.key, b.key);
        assert!(a.key.starts_with("dbrd_") && a.key.len() == 37);
        assert!(a.key.starts_with(&a.prefix));
        assert_eq!(a.hash, hash_key(&a.key));
        assert!(constant_time_eq(&a.hash, &hash_key(&a.key)));
        assert!(!constant_time_eq(&a.hash, &b.hash));
    }

    #[test]
    fn signing_secrets_decode_to_24_bytes() {
        let s = generate_signing_secret();
        let raw = s.strip_prefix("whsec_").expect("prefixed");
        assert_eq!(base64::engine::general_purpose::STANDARD.decode(raw).map(|b| b.len()).ok(), Some(24));
    }
}
