//! argon2 password checks with reused working memory.
//!
//! argon2's `verify_password` allocates its whole working memory (19 MiB at
//! the default parameters) per call. Under a flood of wrong passwords the
//! checks run on whichever blocking threads are free, each thread's malloc
//! arena keeps the freed 19 MiB, and the process grew to ~760 MiB with only two
//! checks at a time (integration/flood). Here each check borrows a buffer
//! from a pool that never holds more buffers than checks ever ran at once —
//! bounded by the password-check permits — so memory for checks is
//! permits × the hash's memory, allocated once and reused.

use std::sync::Mutex;

use argon2::password_hash::{Output, PasswordHash};
use argon2::{Algorithm, Argon2, Block, Params, Version};

/// Working memory for argon2 checks, one buffer per concurrent check.
#[derive(Default)]
pub struct HashMemory {
    free: Mutex<Vec<Vec<Block>>>,
}

impl HashMemory {
    /// True when `password` matches the PHC-format argon2 `hash`. A hash we
    /// cannot read never matches.
    pub fn verify(&self, hash: &str, password: &[u8]) -> bool {
        let Ok(hash) = PasswordHash::new(hash) else {
            return false;
        };
        let mut memory = self
            .free
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .pop()
            .unwrap_or_default();
        let ok = check(&hash, password, &mut memory).unwrap_or(false);
        self.free
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(memory);
        ok
    }

    /// Buffers held.
    #[cfg(test)]
    pub fn buffers(&self) -> usize {
        self.free.lock().unwrap_or_else(|p| p.into_inner()).len()
    }
}

fn check(hash: &PasswordHash<'_>, password: &[u8], memory: &mut Vec<Block>) -> Option<bool> {
    let algorithm = Algorithm::try_from(hash.algorithm).ok()?;
    let version = match hash.version {
        Some(v) => Version::try_from(v).ok()?,
        None => Version::default(),
    };
    let params = Params::try_from(hash).ok()?;
    let expected = hash.hash?;
    let mut salt = [0u8; 64];
    let salt = hash.salt?.decode_b64(&mut salt).ok()?;
    memory.resize(params.block_count(), Block::default());
    let mut out = vec![0u8; expected.len()];
    Argon2::new(algorithm, version, params)
        .hash_password_into_with_memory(password, salt, &mut out, &mut memory[..])
        .ok()?;
    // Output's equality is constant-time.
    Some(Output::new(&out).ok()? == expected)
}

#[cfg(test)]
mod tests {
    use super::*;
    use argon2::password_hash::{PasswordHasher, SaltString};

    #[test]
    fn matches_what_argon2_wrote_and_nothing_else() {
        let salt = SaltString::encode_b64(b"0123456789abcdef").unwrap();
        let hash = Argon2::default()
            .hash_password(b"s3cret", &salt)
            .unwrap()
            .to_string();
        let m = HashMemory::default();
        assert!(m.verify(&hash, b"s3cret"));
        assert!(!m.verify(&hash, b"s3cret "));
        assert!(!m.verify("not a hash", b"s3cret"));
        assert!(!m.verify(&hash.replace("argon2id", "argon2x"), b"s3cret"));
        // argon2i and other parameters, as another tool might write them.
        let other = Argon2::new(
            Algorithm::Argon2i,
            Version::V0x13,
            Params::new(4096, 3, 1, Some(16)).unwrap(),
        )
        .hash_password(b"pw", &salt)
        .unwrap()
        .to_string();
        assert!(m.verify(&other, b"pw"));
        assert_eq!(m.buffers(), 1, "one buffer, reused");
    }
}
