//! Where identities come from: realms (the local users file, LDAP/AD
//! directories), each with its cached lookups, and the [`RealmChain`] that
//! asks them in order.
//!
//! This side owns [`Identity`] and name normalisation; `auth` asks a chain
//! and never the other way round (`directory` imports nothing from `auth`).

pub(crate) mod cache;
mod chain;
pub(crate) mod config;
mod error;
pub mod identity;
mod ldap;
pub mod local;
pub(crate) mod timing;
pub(crate) mod watch;

use std::sync::Arc;

use crate::limit::BlockingSlots;
use cache::Unavailable;
use config::RealmConfig;

pub use chain::RealmChain;
pub use error::RealmError;
pub use identity::{Group, Identity};

/// A realm's answer to a user name and password.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RealmVerdict {
    /// The password is right: this user.
    Verified(Arc<Identity>),
    /// Not in this realm: the next realm may know the user.
    UnknownUser,
    /// The realm knows the user and the password is wrong.
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
    /// `ACCOUNTDISABLE` (AD 0x533).
    Disabled,
    /// The account's expiry date has passed (0x701).
    Expired,
    /// Locked out after too many wrong passwords (0x775).
    LockedOut,
    /// The password's age is past the domain's maximum (0x532).
    PasswordExpired,
    /// The user must set a new password first (0x773).
    MustChangePassword,
    /// Outside the account's logon hours (0x530).
    LogonHours,
    /// Not allowed from this workstation (0x531).
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
    /// Users in a file (`kind = "local"`).
    Local(local::LocalRealm),
    /// An LDAP or Active Directory server (`kind = "ldap"`).
    Ldap(Box<ldap::LdapRealm>),
}

impl Realm {
    /// Builds a realm; local realms check hashes through `hashing`, shared
    /// by all of them so the bound is per process.
    pub fn build(cfg: &RealmConfig, hashing: &Arc<BlockingSlots>) -> Result<Self, RealmError> {
        Ok(match cfg {
            RealmConfig::Local(c) => Realm::Local(local::LocalRealm::load(c, hashing)?),
            RealmConfig::Ldap(c) => Realm::Ldap(Box::new(ldap::LdapRealm::new(c)?)),
        })
    }

    /// The realm's `name`, as logs and identities carry it.
    pub fn name(&self) -> &str {
        match self {
            Realm::Local(r) => r.name(),
            Realm::Ldap(r) => r.name(),
        }
    }

    /// Checks `user`'s password in this realm alone (see [`RealmChain::verify`]
    /// for the rule across realms).
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
