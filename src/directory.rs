//! Where identities come from: realms (the local users file, LDAP/AD
//! directories), each with its cached lookups.

pub mod cache;
pub mod config;
pub mod ldap;
pub mod local;

use std::sync::Arc;

use crate::auth::identity::Identity;
use cache::Unavailable;
use config::RealmConfig;

/// A realm's answer to a user name and password.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RealmVerdict {
    Verified(Arc<Identity>),
    /// Not in this realm: the next realm may know the user.
    UnknownUser,
    BadPassword,
    /// The realm could not answer (directory down, timeout).
    Unavailable(Unavailable),
}

/// One configured source of identities.
pub enum Realm {
    Local(local::LocalRealm),
    Ldap(Box<ldap::LdapRealm>),
}

impl Realm {
    pub fn build(cfg: &RealmConfig) -> Result<Self, String> {
        Ok(match cfg {
            RealmConfig::Local(c) => Realm::Local(local::LocalRealm::load(c)?),
            RealmConfig::Ldap(c) => Realm::Ldap(Box::new(ldap::LdapRealm::new(c)?)),
        })
    }

    pub fn name(&self) -> &str {
        match self {
            Realm::Local(r) => r.name(),
            Realm::Ldap(r) => r.name(),
        }
    }

    pub async fn verify(&self, user: &str, password: &str) -> RealmVerdict {
        match self {
            Realm::Local(r) => r.verify(user, password).await,
            Realm::Ldap(r) => r.verify(user, password).await,
        }
    }

    /// The directory user of a Kerberos principal (`alice@EXAMPLE.TEST`):
    /// by the login before the `@` when `strip_realm`, else by the realm's
    /// `principal_attribute`.
    pub async fn lookup_principal(
        &self,
        principal: &str,
        strip_realm: bool,
    ) -> Result<Option<Arc<Identity>>, Unavailable> {
        match self {
            Realm::Ldap(r) if !strip_realm => r.lookup_by_principal(principal).await,
            _ => {
                let user = principal.rsplit_once('@').map_or(principal, |(u, _)| u);
                self.lookup(user).await
            }
        }
    }

    /// The user's identity without a password check.
    pub async fn lookup(&self, user: &str) -> Result<Option<Arc<Identity>>, Unavailable> {
        match self {
            Realm::Local(r) => Ok(r.lookup(user)),
            Realm::Ldap(r) => r.lookup(user).await.map(|(id, _)| id),
        }
    }
}
