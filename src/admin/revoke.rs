//! `POST /revoke?user=NAME` (`gatehouse revoke --user NAME`): the user's
//! cached credentials dropped, the identities kept connections hold for
//! them no longer counted, their open tunnels closed now (each logged
//! `tunnel_revoked`, `x-rule: builtin:revoke`). Answered only to a client
//! on loopback, on an admin listener bound to loopback: whoever can reach
//! it could cut anyone's tunnels.

use http::{Method, StatusCode};

/// The answer: status and body.
pub fn answer(
    revoke: &(dyn Fn(&str) -> usize + Send + Sync),
    method: &Method,
    query: Option<&str>,
    local: bool,
) -> (StatusCode, String) {
    if !local {
        return (
            StatusCode::FORBIDDEN,
            "revoke is answered only on a loopback admin listener, to a local client\n".into(),
        );
    }
    if method != Method::POST {
        return (
            StatusCode::METHOD_NOT_ALLOWED,
            "POST /revoke?user=NAME\n".into(),
        );
    }
    let user = url::form_urlencoded::parse(query.unwrap_or("").as_bytes())
        .find(|(k, _)| k == "user")
        .map(|(_, v)| v.trim().to_string())
        .filter(|u| !u.is_empty());
    let Some(user) = user else {
        return (StatusCode::BAD_REQUEST, "POST /revoke?user=NAME\n".into());
    };
    let closed = revoke(&user);
    let body = serde_json::json!({ "user": user, "tunnels_closed": closed });
    (StatusCode::OK, format!("{body}\n"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn two(_: &str) -> usize {
        2
    }

    #[test]
    fn only_a_local_post_naming_a_user_revokes() {
        let (s, body) = answer(&two, &Method::POST, Some("user=bob"), true);
        assert_eq!(s, StatusCode::OK);
        assert_eq!(body, "{\"tunnels_closed\":2,\"user\":\"bob\"}\n");
        let refused = [
            (Method::POST, Some("user=bob"), false, StatusCode::FORBIDDEN),
            (
                Method::GET,
                Some("user=bob"),
                true,
                StatusCode::METHOD_NOT_ALLOWED,
            ),
            (Method::POST, None, true, StatusCode::BAD_REQUEST),
            (
                Method::POST,
                Some("user=%20"),
                true,
                StatusCode::BAD_REQUEST,
            ),
        ];
        for (m, q, local, want) in refused {
            assert_eq!(answer(&two, &m, q, local).0, want, "{m} {q:?} {local}");
        }
    }
}
