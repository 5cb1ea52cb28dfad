//! People's passwords: hashed with Argon2id at OWASP's parameters (19 MiB of memory, 2 passes, 1 lane) and a
//! random salt, stored as the PHC string, never kept in clear, logged or returned. Hashing and checking are
//! slow on purpose (tens of milliseconds): the async code goes through [`Passwords`], which runs them on the
//! blocking pool, a few at a time, and checks an unknown account against a stand-in hash so that it takes as
//! long as a wrong password.

use std::sync::{Arc, OnceLock};

use tokio::sync::Semaphore;

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

/// The hash an unknown account's password is checked against, so that a sign-in for an address nobody has
/// costs the same time as a wrong password for one that exists.
static STAND_IN: OnceLock<String> = OnceLock::new();

fn stand_in() -> &'static str {
    STAND_IN.get_or_init(|| hash_password(&generate_password()).unwrap_or_default())
}

/// Why a password could not be checked or hashed.
#[derive(Debug, thiserror::Error)]
pub enum PasswordError {
    /// Every password slot is in use: retry shortly.
    #[error("too many password checks are in progress")]
    Busy,
    /// The password breaks the rules (length).
    #[error(transparent)]
    Invalid(#[from] Invalid),
    /// Hashing failed, or the blocking task did.
    #[error("hashing failed: {0}")]
    Failed(#[from] anyhow::Error),
}

/// Hashes and checks passwords on the blocking pool, at most a configured number at once (each takes 19 MiB
/// and tens of milliseconds of a core, so a flood of sign-ins must not take every core).
#[derive(Clone)]
pub struct Passwords {
    slots: Arc<Semaphore>,
}

impl Passwords {
    /// At most `concurrent` hashes or checks at once. Prepares the stand-in hash in the background.
    pub fn new(concurrent: usize) -> Self {
        if STAND_IN.get().is_none() {
            std::thread::spawn(|| {
                stand_in();
            });
        }
        Self { slots: Arc::new(Semaphore::new(concurrent.max(1))) }
    }

    async fn run<T: Send + 'static>(&self, work: impl FnOnce() -> T + Send + 'static) -> Result<T, PasswordError> {
        let _slot = self.slots.try_acquire().map_err(|_| PasswordError::Busy)?;
        tokio::task::spawn_blocking(work).await.map_err(|error| PasswordError::Failed(error.into()))
    }

    /// Returns true if and only if `password` matches `hash`. Without a hash (no such account, or one that
    /// may not sign in) the password is checked against a stand-in and the answer is false, in the same time.
    ///
    /// # Errors
    /// [`PasswordError::Busy`] when every slot is in use.
    pub async fn verify(&self, password: String, hash: Option<String>) -> Result<bool, PasswordError> {
        self.run(move || {
            // An over-long password is checked like any other (and cannot match): its length is no shortcut.
            let password = &password.as_bytes()[..password.len().min(MAX_PASSWORD_BYTES)];
            let password = String::from_utf8_lossy(password);
            match hash {
                Some(hash) => verify_password(&password, &hash),
                None => {
                    let _ = verify_password(&password, stand_in());
                    false
                }
            }
        })
        .await
    }

    /// The PHC string of a new password.
    ///
    /// # Errors
    /// [`PasswordError::Invalid`] for a password that breaks the rules, [`PasswordError::Busy`] when every slot
    /// is in use.
    pub async fn hash(&self, password: String) -> Result<String, PasswordError> {
        check_password(&password)?;
        self.run(move || hash_password(&password)).await?.map_err(PasswordError::Failed)
    }
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

    #[tokio::test]
    async fn an_unknown_account_is_checked_against_a_stand_in_and_never_matches() {
        let passwords = Passwords::new(2);
        let hash = passwords.hash("a long enough passphrase".into()).await.expect("hashed");
        assert!(passwords.verify("a long enough passphrase".into(), Some(hash.clone())).await.expect("checked"));
        assert!(!passwords.verify("a wrong passphrase here".into(), Some(hash)).await.expect("checked"));
        assert!(!passwords.verify("a long enough passphrase".into(), None).await.expect("checked"));
        assert!(stand_in().starts_with("$argon2id$v=19$m=19456,t=2,p=1$"), "the stand-in costs what a real hash costs");
        assert!(matches!(passwords.hash("short".into()).await, Err(PasswordError::Invalid(_))));
    }
}
