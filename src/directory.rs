//! Where identities come from: realms (the local users file, LDAP/AD
//! directories), each with its cached lookups.

pub mod cache;
pub mod config;
pub mod ldap;
pub mod local;

use std::sync::Arc;

use crate::auth::blocking::BlockingSlots;
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
    /// The password may be right but the account may not sign in (AD:
    /// disabled, expired, locked out, password expired): refused, logged
    /// with the reason, not counted as a wrong password.
    Refused(AccountProblem),
    /// The realm could not answer (directory down, timeout).
    Unavailable(Unavailable),
    /// Every password-check permit is taken: try again shortly (503 + Retry-After).
    Busy(String),
}

/// Why a directory refused an account whose password it did not call wrong
/// (Active Directory's sub-codes of invalidCredentials).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AccountProblem {
    Disabled,
    Expired,
    LockedOut,
    PasswordExpired,
    MustChangePassword,
    LogonHours,
    Workstation,
}

impl AccountProblem {
    /// From AD's `data <hex>` sub-code; `None` for a plain wrong password.
    pub fn from_ad_code(code: u32) -> Option<Self> {
        Some(match code {
            0x533 => Self::Disabled,
            0x701 => Self::Expired,
            0x775 => Self::LockedOut,
            0x532 => Self::PasswordExpired,
            0x773 => Self::MustChangePassword,
            0x530 => Self::LogonHours,
            0x531 => Self::Workstation,
            _ => return None,
        })
    }

    /// The access log's `x-exception-id` for this refusal.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Disabled => "account_disabled",
            Self::Expired => "account_expired",
            Self::LockedOut => "account_locked_out",
            Self::PasswordExpired => "password_expired",
            Self::MustChangePassword => "password_must_change",
            Self::LogonHours => "account_logon_hours",
            Self::Workstation => "account_workstation_restricted",
        }
    }
}

/// One configured source of identities.
pub enum Realm {
    Local(local::LocalRealm),
    Ldap(Box<ldap::LdapRealm>),
}

impl Realm {
    /// Builds a realm; local realms check hashes through `hashing`, shared
    /// by all of them so the bound is per process.
    pub fn build(cfg: &RealmConfig, hashing: &Arc<BlockingSlots>) -> Result<Self, String> {
        Ok(match cfg {
            RealmConfig::Local(c) => Realm::Local(local::LocalRealm::load(c, hashing)?),
            RealmConfig::Ldap(c) => Realm::Ldap(Box::new(ldap::LdapRealm::new(c)?)),
        })
    }

    /// Every configured realm, in order, sharing one password-check pool
    /// sized by `auth.password_checks`.
    pub fn build_all(
        configs: &[RealmConfig],
        auth: &crate::config::AuthConfig,
    ) -> Result<Vec<Self>, String> {
        let c = &auth.password_checks;
        let hashing = Arc::new(BlockingSlots::new(c.permits(), c.queue_timeout));
        configs.iter().map(|r| Self::build(r, &hashing)).collect()
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
            // `alice@REALM` is looked up as a login: the realm takes it only
            // if it serves REALM (see `login_in_realm`).
            _ => self.lookup(principal).await,
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
