//! The realms in force, in order, and the one rule across them: the first
//! realm that knows the user decides. A realm that does not know the user
//! passes to the next; a realm that cannot answer makes the whole answer
//! "unavailable" unless a later realm decides. Every caller — Basic, NTLM,
//! Negotiate, `gatehouse auth-test` and `explain` — asks a chain, so the rule
//! is written once.
//!
//! A chain is built whole at start and on each reload and swapped in as one
//! value. It carries the key its verdicts are cached under: a reload draws a
//! new key, so every verdict cached under the old realms (a password changed
//! or removed since) stops being found at once; the old entries age out of
//! the bounded cache unread.

use std::ops::Deref;
use std::sync::Arc;
use std::time::{Duration, Instant};

use hmac::{Hmac, Mac};
use sha2::Sha256;

use super::cache::Unavailable;
use super::config::RealmConfig;
use super::error::RealmError;
use super::identity::Identity;
use super::{Realm, RealmVerdict};

/// Realms in the configured order, with this chain's cache key.
pub struct RealmChain {
    realms: Vec<Realm>,
    key: [u8; 32],
}

impl RealmChain {
    /// A chain of `realms`, in this order, with a fresh random cache key.
    pub fn new(realms: Vec<Realm>) -> Result<Self, RealmError> {
        let mut key = [0u8; 32];
        getrandom::fill(&mut key).map_err(RealmError::Random)?;
        Ok(Self { realms, key })
    }

    /// Builds every configured realm (see [`Realm::build_all`]) into a chain.
    pub fn build(
        configs: &[RealmConfig],
        checks: &super::config::PasswordCheckConfig,
    ) -> Result<Self, RealmError> {
        Self::new(Realm::build_all(configs, checks)?)
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

    /// Checks a password: the first realm that knows the user decides
    /// (verified, wrong password, account refused, or busy). With no
    /// decision, [`RealmVerdict::Unavailable`] if some realm could not
    /// answer, else [`RealmVerdict::UnknownUser`].
    pub async fn verify(&self, user: &str, password: &str) -> RealmVerdict {
        self.verify_observed(user, password, |_, _, _| {}).await
    }

    /// [`RealmChain::verify`], showing `observe` each realm asked, its
    /// answer and how long it took (for `gatehouse auth-test`).
    pub async fn verify_observed(
        &self,
        user: &str,
        password: &str,
        mut observe: impl FnMut(&Realm, &RealmVerdict, Duration),
    ) -> RealmVerdict {
        let mut unavailable = None;
        for realm in &self.realms {
            let started = Instant::now();
            let verdict = realm.verify(user, password).await;
            observe(realm, &verdict, started.elapsed());
            match verdict {
                RealmVerdict::UnknownUser => {}
                RealmVerdict::Unavailable(u) => {
                    tracing::warn!(realm = realm.name(), error = %u, "realm unavailable");
                    unavailable = Some(u);
                }
                RealmVerdict::Refused(problem) => {
                    tracing::info!(realm = realm.name(), %user, reason = problem.as_str(), "the directory refused the account");
                    return RealmVerdict::Refused(problem);
                }
                decided => return decided,
            }
        }
        unavailable.map_or(RealmVerdict::UnknownUser, RealmVerdict::Unavailable)
    }

    /// The user's identity without a password (NTLM's `DOMAIN\user` from the
    /// domain, `explain`): the first realm that knows the login.
    pub async fn lookup(&self, user: &str) -> Result<Option<Arc<Identity>>, Unavailable> {
        self.first_known(|realm| realm.lookup(user)).await
    }

    /// The directory user of a Kerberos principal (see
    /// [`Realm::lookup_principal`]): the first realm that knows it.
    pub async fn lookup_principal(
        &self,
        principal: &str,
        strip_realm: bool,
    ) -> Result<Option<Arc<Identity>>, Unavailable> {
        self.first_known(|realm| realm.lookup_principal(principal, strip_realm))
            .await
    }

    /// The first realm's `Some`; else the last unavailability; else `None`.
    async fn first_known<'a, F, Fut>(&'a self, ask: F) -> Result<Option<Arc<Identity>>, Unavailable>
    where
        F: Fn(&'a Realm) -> Fut,
        Fut: std::future::Future<Output = Result<Option<Arc<Identity>>, Unavailable>>,
    {
        let mut unavailable = None;
        for realm in &self.realms {
            match ask(realm).await {
                Ok(Some(identity)) => return Ok(Some(identity)),
                Ok(None) => {}
                Err(u) => unavailable = Some(u),
            }
        }
        unavailable.map_or(Ok(None), Err)
    }
}

impl Deref for RealmChain {
    type Target = [Realm];

    fn deref(&self) -> &[Realm] {
        &self.realms
    }
}

#[cfg(test)]
#[path = "chain_tests.rs"]
mod tests;
