//! Token generation and hashing. Tokens are shown once and stored only as
//! their SHA-256.

use sha2::{Digest, Sha256};

use crate::error::{Result, StoreError};

/// Prefixes name the token kind so a leaked token is recognisable.
pub(crate) fn prefix_for(kind: &str) -> &'static str {
    match kind {
        "admin" => "sxa_",
        "server" => "sxs_",
        _ => "sxc_",
    }
}

/// A fresh random token of a kind (`admin`, `server`, `client`): prefix + 64 hex chars.
pub(crate) fn generate(kind: &str) -> Result<String> {
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes).map_err(|e| StoreError::Database(format!("no randomness: {e}")))?;
    Ok(format!("{}{}", prefix_for(kind), hex::encode(bytes)))
}

/// The stored form of a token: hex SHA-256.
pub fn hash_token(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

/// The displayable start of a token.
pub(crate) fn display_prefix(token: &str) -> String {
    token.chars().take(10).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_tokens_are_prefixed_random_and_hash_stably() {
        let a = generate("admin").unwrap();
        let b = generate("admin").unwrap();
        assert!(a.starts_with("sxa_") && a.len() == 68);
        assert_ne!(a, b);
        assert_eq!(hash_token(&a), hash_token(&a));
        assert_eq!(hash_token(&a).len(), 64);
    }
}
