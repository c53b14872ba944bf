//! Users' passwords: Argon2id (memory-hard, so that a stolen database costs an attacker memory
//! and time per guess), stored as PHC strings that carry their own salt and parameters. Hashing
//! and verifying take tens of milliseconds of CPU and 19 MiB each: the async forms run them off
//! the async workers, a few at a time, so that a flood of logins cannot take all the memory.

use argon2::Argon2;
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};

/// The shortest password a user may be given.
pub const MIN_LENGTH: usize = 12;

/// Why a password cannot be set or hashed.
#[derive(Debug, thiserror::Error)]
pub enum PasswordError {
    #[error("password: at least {MIN_LENGTH} characters are required")]
    TooShort,
    #[error("generating a salt: {0}")]
    Random(#[source] std::io::Error),
    #[error("hashing the password: {0}")]
    Hash(String),
}

/// The PHC string of `password` with a fresh random salt (Argon2id, the crate's default
/// parameters: 19 MiB, 2 passes, 1 lane, as OWASP recommends).
pub fn hash(password: &str) -> Result<String, PasswordError> {
    if password.chars().count() < MIN_LENGTH {
        return Err(PasswordError::TooShort);
    }
    let mut salt = [0u8; 16];
    std::io::Read::read_exact(
        &mut std::fs::File::open("/dev/urandom").map_err(PasswordError::Random)?,
        &mut salt,
    )
    .map_err(PasswordError::Random)?;
    let salt = SaltString::encode_b64(&salt).map_err(|e| PasswordError::Hash(e.to_string()))?;
    Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| PasswordError::Hash(e.to_string()))
}

/// Whether `password` is the one of `phc`; an unreadable hash matches nothing.
pub fn verify(password: &str, phc: &str) -> bool {
    PasswordHash::new(phc).is_ok_and(|h| {
        Argon2::default()
            .verify_password(password.as_bytes(), &h)
            .is_ok()
    })
}

/// Hashings and verifications at once; the others wait their turn.
static AT_ONCE: tokio::sync::Semaphore = tokio::sync::Semaphore::const_new(4);

/// Runs `work` on the blocking pool when its turn comes.
async fn in_turn<T: Send + 'static>(work: impl FnOnce() -> T + Send + 'static) -> Option<T> {
    let _turn = AT_ONCE.acquire().await.ok()?;
    tokio::task::spawn_blocking(work).await.ok()
}

/// [`hash`], off the async workers.
pub async fn hash_in_turn(password: String) -> Result<String, PasswordError> {
    in_turn(move || hash(&password))
        .await
        .unwrap_or_else(|| Err(PasswordError::Hash("the hashing task failed".into())))
}

/// [`verify`], off the async workers; without a hash (no such user), against the [`decoy`], so
/// that the answer takes as long. A failed task matches nothing.
pub async fn verify_in_turn(password: String, phc: Option<String>) -> bool {
    in_turn(move || match &phc {
        Some(phc) => verify(&password, phc),
        None => verify(&password, decoy()),
    })
    .await
    .unwrap_or(false)
}

/// A hash no password matches in practice, verified against when the user does not exist, so
/// that a login for an unknown name takes as long as one with a wrong password.
fn decoy() -> &'static str {
    static DECOY: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    DECOY.get_or_init(|| {
        let secret = crate::auth::generate().unwrap_or_else(|_| "decoy password!".repeat(2));
        hash(&secret).unwrap_or_default()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hashes_verify_and_carry_their_parameters() {
        let phc = hash("correct horse battery").unwrap();
        assert!(phc.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"), "{phc}");
        assert!(!phc.contains("correct horse"));
        assert_ne!(phc, hash("correct horse battery").unwrap(), "salted");
        for (password, want) in [
            ("correct horse battery", true),
            ("correct horse batterx", false),
            ("", false),
        ] {
            assert_eq!(verify(password, &phc), want, "{password}");
        }
        assert!(!verify("x", "not a phc string"));
        assert!(!verify("x", decoy()));
        assert!(matches!(hash("short"), Err(PasswordError::TooShort)));
    }
}
