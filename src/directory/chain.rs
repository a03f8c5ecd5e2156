//! The realms in force, in order, and the one rule across them: the first
//! realm that knows the user decides. A realm that does not know the user
//! passes to the next; a realm that cannot answer makes the whole answer
//! "unavailable" unless a later realm decides. Every caller — Basic, NTLM,
//! Negotiate, `gatehouse auth-test` and `explain` — asks a chain, so the rule
//! is written once.
//!
//! A chain is built whole at start and on each reload and swapped in as one
//! value. A reload keeps each realm whose definition (its settings and the
//! bytes of every file it reads: users file, CA, bind password) did not
//! change — the same object, with its directory caches and pools — so a
//! routine SIGHUP empties no cache: identities it vouched for stay vouched
//! for ([`RealmChain::vouched_for`]). A changed realm is built anew, and only
//! what it vouched for is asked again.

use std::ops::Deref;
use std::sync::Arc;
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};

use super::cache::Unavailable;
use super::config::RealmConfig;
use super::error::RealmError;
use super::identity::Identity;
use super::{Realm, RealmVerdict};
use crate::limit::BlockingSlots;

/// Realms in the configured order, with what each was built from.
pub struct RealmChain {
    realms: Vec<Arc<Realm>>,
    /// Each realm's [`definition`], in order.
    definitions: Vec<[u8; 32]>,
    /// All of them at once ([`RealmChain::digest`]).
    digest: [u8; 32],
    /// The pool local realms check hashes through: one per process, kept
    /// across reloads so the bound stays one bound.
    hashing: Arc<BlockingSlots>,
}

impl RealmChain {
    /// A chain of `realms`, in this order (built by hand: no definitions,
    /// so a rebuild keeps none of them).
    pub fn new(realms: Vec<Realm>) -> Self {
        Self {
            digest: [0; 32],
            definitions: vec![[0; 32]; realms.len()],
            realms: realms.into_iter().map(Arc::new).collect(),
            hashing: Arc::new(BlockingSlots::new(1, Duration::from_secs(1))),
        }
    }

    /// The directory realm called `name`.
    pub fn ldap(&self, name: &str) -> Option<&super::ldap::LdapRealm> {
        self.realms.iter().find_map(|r| match &**r {
            Realm::Ldap(l) if l.name() == name => Some(&**l),
            _ => None,
        })
    }

    /// Builds every configured realm into a chain, sharing one
    /// password-check pool sized by `auth.password_checks`.
    pub fn build(
        configs: &[RealmConfig],
        checks: &super::config::PasswordCheckConfig,
    ) -> Result<Self, RealmError> {
        let hashing = Arc::new(BlockingSlots::new(checks.permits(), checks.queue_timeout));
        Self::assemble(configs, hashing, |_| None)
    }

    /// The chain `configs` define now, keeping each realm of this chain
    /// whose definition did not change.
    pub fn rebuild(&self, configs: &[RealmConfig]) -> Result<Self, RealmError> {
        Self::assemble(configs, self.hashing.clone(), |def| {
            let kept = self.definitions.iter().position(|d| d == def)?;
            Some(self.realms[kept].clone())
        })
    }

    fn assemble(
        configs: &[RealmConfig],
        hashing: Arc<BlockingSlots>,
        kept: impl Fn(&[u8; 32]) -> Option<Arc<Realm>>,
    ) -> Result<Self, RealmError> {
        let (mut realms, mut definitions) = (Vec::new(), Vec::new());
        for cfg in configs {
            let def = definition(cfg);
            let realm = match kept(&def) {
                Some(realm) => realm,
                None => Arc::new(Realm::build(cfg, &hashing)?),
            };
            realms.push(realm);
            definitions.push(def);
        }
        let mut h = Sha256::new();
        for d in &definitions {
            h.update(d);
        }
        Ok(Self {
            realms,
            definitions,
            digest: h.finalize().into(),
            hashing,
        })
    }

    /// All the realms' definitions at once: equal only for a chain built
    /// from the same definitions in the same order.
    pub fn digest(&self) -> [u8; 32] {
        self.digest
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
    type Target = [Arc<Realm>];

    fn deref(&self) -> &[Arc<Realm>] {
        &self.realms
    }
}

/// What a realm is built from: its settings and the bytes of every file it
/// reads (a file that cannot be read is part of the definition too, so its
/// coming back is a change). Secrets are hashed, never kept.
pub fn definition(cfg: &RealmConfig) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update(format!("{cfg:?}").as_bytes());
    let files: Vec<&std::path::Path> = match cfg {
        RealmConfig::Local(c) => vec![&c.users_file],
        RealmConfig::Ldap(c) => c
            .ca_file
            .iter()
            .chain(&c.bind_password_file)
            .map(|p| p.as_path())
            .collect(),
    };
    for f in files {
        h.update([0xff]);
        match std::fs::read(f) {
            Ok(bytes) => {
                h.update((bytes.len() as u64).to_be_bytes());
                h.update(&bytes);
            }
            Err(e) => h.update(format!("unreadable: {:?}", e.kind()).as_bytes()),
        }
    }
    h.finalize().into()
}

#[cfg(test)]
#[path = "chain_tests.rs"]
mod tests;
