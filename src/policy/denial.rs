//! A refusal as the client sees it: the status of the answer and the
//! `x-exception-id` it carries. Checked once, when the policy compiles (a
//! status the proxy may send, a reason a header and a log field can hold),
//! and carried as an [`http::StatusCode`] from there to the answer — no
//! second conversion that could fall back to something else.

use std::sync::Arc;

use http::StatusCode;

/// A refusal's status and reason.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Denial {
    /// The answer's status: a 4xx or 5xx other than 407.
    pub status: StatusCode,
    /// The `x-exception-id`: letters, digits, `_` and `-`.
    pub reason: Arc<str>,
}

/// Which part of a rule's `status`/`reason` is refused, and why.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BadDenial {
    /// Not a 4xx or 5xx, or the 407 only authentication may send.
    Status,
    /// Empty, or a character an `x-exception-id` cannot hold.
    Reason,
}

impl BadDenial {
    /// The rule field at fault.
    pub fn field(self) -> &'static str {
        match self {
            BadDenial::Status => "status",
            BadDenial::Reason => "reason",
        }
    }

    /// What the field must be.
    pub fn message(self) -> &'static str {
        match self {
            BadDenial::Status => "a 4xx or 5xx status other than 407",
            BadDenial::Reason => "letters, digits, '_' and '-' (it is the x-exception-id)",
        }
    }
}

impl Denial {
    /// The refusal of a policy whose default is `deny`, and of a `deny`
    /// rule that names neither status nor reason: `403 policy_denied`.
    pub fn policy_denied() -> Self {
        Denial {
            status: StatusCode::FORBIDDEN,
            reason: "policy_denied".into(),
        }
    }

    /// A `deny` rule's `status` and `reason` (either may be left out: 403,
    /// `policy_denied`), checked.
    pub fn new(status: Option<u16>, reason: Option<&str>) -> Result<Self, BadDenial> {
        let status = status.unwrap_or(403);
        if !(400..=599).contains(&status) || status == 407 {
            return Err(BadDenial::Status);
        }
        let status = StatusCode::from_u16(status).map_err(|_| BadDenial::Status)?;
        let reason = reason.unwrap_or("policy_denied");
        if reason.is_empty()
            || !reason
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
        {
            return Err(BadDenial::Reason);
        }
        Ok(Denial {
            status,
            reason: reason.into(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_rule_may_name_any_4xx_or_5xx_but_407() {
        let d = Denial::new(None, None).unwrap();
        assert_eq!(d, Denial::policy_denied());
        assert_eq!(d.status, StatusCode::FORBIDDEN);
        for ok in [400, 404, 451, 499, 500, 503, 599] {
            let d = Denial::new(Some(ok), Some("x")).unwrap();
            assert_eq!(d.status.as_u16(), ok);
        }
        for bad in [0, 200, 302, 399, 407, 600, 999, 1000] {
            assert_eq!(Denial::new(Some(bad), None), Err(BadDenial::Status));
        }
    }

    #[test]
    fn a_reason_must_fit_an_exception_id() {
        let d = Denial::new(Some(451), Some("legal-hold_2")).unwrap();
        assert_eq!(&*d.reason, "legal-hold_2");
        for bad in ["", "two words", "a,b", "é", "x\r\ny"] {
            assert_eq!(Denial::new(None, Some(bad)), Err(BadDenial::Reason));
        }
        assert_eq!(BadDenial::Reason.field(), "reason");
        assert_eq!(BadDenial::Status.field(), "status");
    }
}
