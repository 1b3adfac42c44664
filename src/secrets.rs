//! Secrets that must be read back (the Standard Webhooks signing secret, the 3Dolphins
//! password) sealed at rest with `BRIDGE_SECRET_KEY` (ChaCha20-Poly1305, a random nonce per
//! value). Stored form: `enc:v1:` + base64(nonce ‖ ciphertext). Without a key they are
//! stored in the clear, and `serve` says so; a value in the clear is still read after a
//! key is set, until `dolphin-bridge encrypt-secrets` seals it.

use base64::Engine;
use chacha20poly1305::aead::{Aead, AeadCore, KeyInit, OsRng};
use chacha20poly1305::{ChaCha20Poly1305, Key, Nonce};

/// Marks a sealed value.
pub const SEALED_PREFIX: &str = "enc:v1:";
const NONCE_LEN: usize = 12;

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum SecretError {
    #[error("a stored secret is encrypted but BRIDGE_SECRET_KEY is not set")]
    KeyMissing,
    #[error("a stored secret does not decrypt with this BRIDGE_SECRET_KEY (wrong key?)")]
    WrongKey,
    #[error("a stored secret is damaged")]
    Malformed,
}

/// Seals and opens secrets with the process key, if any.
#[derive(Clone)]
pub struct Sealer {
    cipher: Option<ChaCha20Poly1305>,
}

impl std::fmt::Debug for Sealer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(if self.cipher.is_some() { "Sealer(<key>)" } else { "Sealer(none)" })
    }
}

impl Sealer {
    pub fn new(key: Option<[u8; 32]>) -> Self {
        Sealer { cipher: key.map(|k| ChaCha20Poly1305::new(Key::from_slice(&k))) }
    }

    /// The stored form of `plain`: sealed when there is a key, else `plain` itself.
    pub fn seal(&self, plain: &str) -> String {
        let Some(cipher) = &self.cipher else { return plain.to_string() };
        let nonce = ChaCha20Poly1305::generate_nonce(&mut OsRng);
        match cipher.encrypt(&nonce, plain.as_bytes()) {
            Ok(sealed) => {
                let mut bytes = nonce.to_vec();
                bytes.extend(sealed);
                format!("{SEALED_PREFIX}{}", base64::engine::general_purpose::STANDARD.encode(bytes))
            }
            // Encryption of a short in-memory string does not fail; keep the value usable.
            Err(_) => plain.to_string(),
        }
    }

    /// The secret behind a stored value (a value in the clear is returned as it is).
    pub fn open(&self, stored: &str) -> Result<String, SecretError> {
        let Some(encoded) = stored.strip_prefix(SEALED_PREFIX) else { return Ok(stored.to_string()) };
        let cipher = self.cipher.as_ref().ok_or(SecretError::KeyMissing)?;
        let bytes = base64::engine::general_purpose::STANDARD.decode(encoded).map_err(|_| SecretError::Malformed)?;
        if bytes.len() <= NONCE_LEN {
            return Err(SecretError::Malformed);
        }
        let (nonce, sealed) = bytes.split_at(NONCE_LEN);
        let plain = cipher.decrypt(Nonce::from_slice(nonce), sealed).map_err(|_| SecretError::WrongKey)?;
        String::from_utf8(plain).map_err(|_| SecretError::Malformed)
    }
}

/// Whether a stored value is sealed.
pub fn is_sealed(stored: &str) -> bool {
    stored.starts_with(SEALED_PREFIX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sealed_values_round_trip_and_differ_each_time() {
        let sealer = Sealer::new(Some([7u8; 32]));
        let a = sealer.seal("whsec_abc");
        let b = sealer.seal("whsec_abc");
        assert!(is_sealed(&a) && a != b && !a.contains("whsec_abc"));
        assert_eq!(sealer.open(&a), Ok("whsec_abc".to_string()));
    }

    #[test]
    fn a_missing_or_wrong_key_is_a_clear_error() {
        let sealed = Sealer::new(Some([7u8; 32])).seal("pw");
        assert_eq!(Sealer::new(None).open(&sealed), Err(SecretError::KeyMissing));
        assert_eq!(Sealer::new(Some([8u8; 32])).open(&sealed), Err(SecretError::WrongKey));
        assert_eq!(Sealer::new(Some([7u8; 32])).open("enc:v1:%%%"), Err(SecretError::Malformed));
    }

    #[test]
    fn without_a_key_values_stay_in_the_clear_and_clear_values_are_read_with_one() {
        assert_eq!(Sealer::new(None).seal("pw"), "pw");
        assert_eq!(Sealer::new(Some([7u8; 32])).open("pw"), Ok("pw".to_string()));
    }
}
