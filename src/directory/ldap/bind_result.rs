//! What a user bind's result means, sans I/O.
//!
//! Only `invalidCredentials` (49) with no account sub-code is a wrong
//! password: it is cached as a refusal and counted by the failure throttle.
//! Active Directory answers 49 for accounts that may not sign in too, and says
//! why in the diagnostic message (`... AcceptSecurityContext error, data 533,
//! v4563`): those are refused with a reason of their own, because that is the
//! line an administrator looks for when a user calls the help desk. Anything
//! else — `busy` (51), `unavailable` (52), `other` (80), `unwillingToPerform`
//! (53), TLS required (8, 13) — is directory trouble: not a verdict on the
//! password, never cached, never counted, and cached users keep working.

use crate::directory::AccountProblem;

/// What a bind result says about the user's password.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BindOutcome {
    /// The password is right.
    Success,
    /// The password is wrong (or the user unknown to the directory).
    WrongPassword,
    /// The password may be right but the account may not sign in.
    Account(AccountProblem),
    /// The directory did not judge the password; the reason, for the log.
    Trouble(String),
}

/// Classifies an LDAP bind result code and its diagnostic message.
pub fn classify(rc: u32, text: &str) -> BindOutcome {
    match rc {
        0 => BindOutcome::Success,
        49 => match ad_data_code(text) {
            Some(code) => match AccountProblem::from_ad_code(code) {
                Some(p) => BindOutcome::Account(p),
                // 52e: bad password; 525: no such user (as good as wrong).
                None => BindOutcome::WrongPassword,
            },
            None => BindOutcome::WrongPassword,
        },
        rc => BindOutcome::Trouble(format!("bind result {rc} ({})", name(rc))),
    }
}

/// AD's sub-code: the hex number after `data ` in the diagnostic message.
fn ad_data_code(text: &str) -> Option<u32> {
    let rest = &text[text.find("data ")? + 5..];
    let hex: String = rest.chars().take_while(char::is_ascii_hexdigit).collect();
    u32::from_str_radix(&hex, 16).ok()
}

fn name(rc: u32) -> &'static str {
    match rc {
        8 => "strongerAuthRequired",
        13 => "confidentialityRequired",
        51 => "busy",
        52 => "unavailable",
        53 => "unwillingToPerform",
        80 => "other",
        _ => "unexpected",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_invalid_credentials_is_a_wrong_password() {
        assert_eq!(classify(0, ""), BindOutcome::Success);
        assert_eq!(classify(49, ""), BindOutcome::WrongPassword);
        let ad = |code: &str| {
            format!("80090308: LdapErr: DSID-0C09041C, comment: AcceptSecurityContext error, data {code}, v4563\0")
        };
        assert_eq!(classify(49, &ad("52e")), BindOutcome::WrongPassword);
        assert_eq!(classify(49, &ad("525")), BindOutcome::WrongPassword);
        for (code, p) in [
            ("533", AccountProblem::Disabled),
            ("701", AccountProblem::Expired),
            ("775", AccountProblem::LockedOut),
            ("532", AccountProblem::PasswordExpired),
            ("773", AccountProblem::MustChangePassword),
            ("530", AccountProblem::LogonHours),
            ("531", AccountProblem::Workstation),
        ] {
            assert_eq!(classify(49, &ad(code)), BindOutcome::Account(p), "{code}");
        }
        for rc in [51, 52, 53, 80, 8, 13, 1] {
            assert!(
                matches!(classify(rc, "x"), BindOutcome::Trouble(_)),
                "{rc} is not a verdict on the password"
            );
        }
        // A message that merely mentions "data" is no sub-code.
        assert_eq!(
            classify(49, "invalid data here"),
            BindOutcome::WrongPassword
        );
    }
}
