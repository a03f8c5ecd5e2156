//! The realms in force: built whole at start and on each reload, swapped in
//! as one value, with the key their cached verdicts are filed under.
//!
//! A reload draws a new key, so every verdict cached under the old realms
//! (a password changed or removed since) stops being found at once; the old
//! entries age out of the bounded cache unread.

use std::ops::Deref;

use hmac::{Hmac, Mac};
use sha2::Sha256;

use super::identity::Identity;
use crate::directory::Realm;

pub struct RealmSet {
    realms: Vec<Realm>,
    key: [u8; 32],
}

impl RealmSet {
    pub fn new(realms: Vec<Realm>) -> Result<Self, String> {
        let mut key = [0u8; 32];
        getrandom::fill(&mut key).map_err(|e| format!("random key: {e}"))?;
        Ok(Self { realms, key })
    }

    /// The credential cache's key for these credentials under these realms:
    /// an HMAC, so the cache never holds anything a password could be
    /// recovered from once the process (and its key) is gone.
    pub fn cache_key(&self, user: &str, password: &str) -> [u8; 32] {
        // An HMAC accepts keys of any length: new_from_slice cannot fail here.
        let mut mac =
            <Hmac<Sha256> as Mac>::new_from_slice(&self.key).expect("HMAC takes any key length");
        for realm in &self.realms {
            mac.update(realm.name().as_bytes());
            mac.update(&[0]);
        }
        mac.update(&[1]);
        mac.update(user.as_bytes());
        mac.update(&[0]);
        mac.update(password.as_bytes());
        mac.finalize().into_bytes().into()
    }

    /// Did one of these realm objects vouch for `id`? Each loaded realm hands
    /// its identities its own name (one allocation per load), so an identity
    /// from before a reload is told apart even when the realm kept its name.
    /// Anything else answers no, and the caller checks again (fails closed).
    pub fn vouched_for(&self, id: &Identity) -> bool {
        self.realms
            .iter()
            .any(|r| std::ptr::eq(r.name().as_ptr(), id.realm.as_ptr()))
    }
}

impl Deref for RealmSet {
    type Target = [Realm];

    fn deref(&self) -> &[Realm] {
        &self.realms
    }
}
