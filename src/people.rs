//! People's passwords: hashed with Argon2id at OWASP's parameters (19 MiB of memory, 2 passes, 1 lane) and a
//! random salt, stored as the PHC string, never kept in clear, logged or returned. Hashing and checking are
//! slow on purpose (tens of milliseconds): call them off the async threads.

use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::{Algorithm, Argon2, Params, Version};
use base64::Engine as _;
use rand::RngCore as _;

use crate::domain::Invalid;

/// Shortest password accepted, in characters (OWASP: 8 with a second factor, longer without one).
pub const MIN_PASSWORD_CHARS: usize = 12;

/// Longest password accepted, in bytes (hashing cost grows with the input).
pub const MAX_PASSWORD_BYTES: usize = 256;

/// The hasher at OWASP's recommended Argon2id parameters.
fn argon2() -> Argon2<'static> {
    // 19 MiB, 2 iterations, parallelism 1: valid by construction.
    let params = Params::new(19 * 1024, 2, 1, None).expect("OWASP's Argon2id parameters are valid");
    Argon2::new(Algorithm::Argon2id, Version::V0x13, params)
}

/// Checks a password a person chose.
///
/// # Errors
/// Shorter than [`MIN_PASSWORD_CHARS`] or longer than [`MAX_PASSWORD_BYTES`].
pub fn check_password(password: &str) -> Result<(), Invalid> {
    if password.chars().count() < MIN_PASSWORD_CHARS || password.len() > MAX_PASSWORD_BYTES {
        return Err(Invalid::new(
            "password",
            format!("must be {MIN_PASSWORD_CHARS} to {MAX_PASSWORD_BYTES} bytes long (a passphrase is fine)"),
        ));
    }
    Ok(())
}

/// The PHC string of `password` with a fresh random salt. Blocking and slow.
///
/// # Errors
/// The password breaks [`check_password`], or hashing failed.
pub fn hash_password(password: &str) -> anyhow::Result<String> {
    check_password(password)?;
    let mut salt = [0u8; 16];
    rand::rng().fill_bytes(&mut salt);
    let salt = SaltString::encode_b64(&salt).map_err(|error| anyhow::anyhow!("encoding a salt: {error}"))?;
    let hash = argon2()
        .hash_password(password.as_bytes(), &salt)
        .map_err(|error| anyhow::anyhow!("hashing a password: {error}"))?;
    Ok(hash.to_string())
}

/// Returns true if and only if `password` is the one `hash` was made from. Blocking and slow; a malformed
/// hash is a mismatch.
pub fn verify_password(password: &str, hash: &str) -> bool {
    PasswordHash::new(hash).is_ok_and(|parsed| argon2().verify_password(password.as_bytes(), &parsed).is_ok())
}

/// A password for a person who was not given one: 24 characters from 144 random bits.
pub fn generate_password() -> String {
    let mut bytes = [0u8; 18];
    rand::rng().fill_bytes(&mut bytes);
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_password_hashes_to_argon2id_at_owasps_parameters_and_verifies_only_itself() {
        let hash = hash_password("correct horse battery staple").expect("hashed");
        assert!(hash.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"), "{hash}");
        assert!(!hash.contains("correct horse"));
        assert!(verify_password("correct horse battery staple", &hash));
        assert!(!verify_password("correct horse battery stapler", &hash));
        assert!(!verify_password("correct horse battery staple", "not a hash"));
        let again = hash_password("correct horse battery staple").expect("hashed");
        assert_ne!(hash, again, "a fresh salt every time");
    }

    #[test]
    fn short_and_huge_passwords_are_refused_and_generated_ones_pass() {
        assert!(check_password("short").is_err());
        assert!(check_password(&"x".repeat(MAX_PASSWORD_BYTES + 1)).is_err());
        let generated = generate_password();
        assert_eq!(generated.len(), 24);
        assert!(check_password(&generated).is_ok());
        assert_ne!(generated, generate_password());
    }
}
