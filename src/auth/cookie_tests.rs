use super::*;

const A: &str = "0123456789abcdef0123456789abcdef-key-a";
const B: &str = "fedcba9876543210fedcba9876543210-key-b";

fn claims(expires_ms: u64) -> Claims {
    Claims {
        user: "alice".into(),
        realm: "local".into(),
        host: "example.com".into(),
        issued_ms: 1,
        expires_ms,
        back: String::new(),
    }
}

#[test]
fn a_seal_opens_for_its_purpose_only() {
    let keys = Keys::from_secrets(&[A]);
    let c = claims(u64::MAX);
    let sealed = keys.seal(Purpose::Cookie, &c);
    assert_eq!(keys.open(Purpose::Cookie, &sealed, 5), Ok(c));
    assert_eq!(
        keys.open(Purpose::Token, &sealed, 5),
        Err(Refused::Tampered)
    );
    assert_eq!(keys.open(Purpose::Back, &sealed, 5), Err(Refused::Tampered));
}

#[test]
fn tampered_expired_oversized_and_foreign_seals_do_not_open() {
    let keys = Keys::from_secrets(&[A]);
    let sealed = keys.seal(Purpose::Cookie, &claims(100));
    assert_eq!(
        keys.open(Purpose::Cookie, &sealed, 100),
        Err(Refused::Expired)
    );
    // Another user's name in the claims, the MAC kept.
    let (kid, rest) = sealed.split_once('.').unwrap();
    let (_, tag) = rest.split_once('.').unwrap();
    let forged = B64.encode(
        serde_json::to_vec(&Claims {
            user: "root".into(),
            ..claims(u64::MAX)
        })
        .unwrap(),
    );
    let forged = format!("{kid}.{forged}.{tag}");
    assert_eq!(
        keys.open(Purpose::Cookie, &forged, 1),
        Err(Refused::Tampered)
    );
    let long = "a".repeat(MAX_SEALED + 1);
    assert_eq!(keys.open(Purpose::Cookie, &long, 1), Err(Refused::TooLong));
    assert_eq!(
        keys.open(Purpose::Cookie, "x.y", 1),
        Err(Refused::Malformed)
    );
    let other = Keys::from_secrets(&[B]).seal(Purpose::Cookie, &claims(u64::MAX));
    assert_eq!(
        keys.open(Purpose::Cookie, &other, 1),
        Err(Refused::UnknownKey)
    );
}

#[test]
fn keys_rotate_the_first_signs_every_one_verifies() {
    let old = Keys::from_secrets(&[A]).seal(Purpose::Cookie, &claims(u64::MAX));
    let both = Keys::from_secrets(&[B, A]);
    assert!(
        both.open(Purpose::Cookie, &old, 1).is_ok(),
        "the old key still verifies"
    );
    let new = both.seal(Purpose::Cookie, &claims(u64::MAX));
    assert!(
        Keys::from_secrets(&[B])
            .open(Purpose::Cookie, &new, 1)
            .is_ok(),
        "the first signs"
    );
}

#[test]
fn the_key_file_is_private_and_strong() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("k");
    std::fs::write(&f, format!("# comment\n{A}\n{B}\n")).unwrap();
    std::fs::set_permissions(&f, std::fs::Permissions::from_mode(0o644)).unwrap();
    assert!(
        matches!(Keys::load(&f), Err(KeyError::Secret(_))),
        "group-readable"
    );
    std::fs::set_permissions(&f, std::fs::Permissions::from_mode(0o600)).unwrap();
    assert_eq!(Keys::load(&f).unwrap().keys.len(), 2);
    std::fs::write(&f, "short\n").unwrap();
    assert!(matches!(Keys::load(&f), Err(KeyError::Weak(_))));
}

#[test]
fn our_cookie_is_found_and_stripped_others_kept() {
    let mut h = http::HeaderMap::new();
    h.append(
        http::header::COOKIE,
        format!("a=1; {COOKIE_NAME}=v1; b=2").parse().unwrap(),
    );
    h.append(
        http::header::COOKIE,
        format!("{COOKIE_NAME}=v2").parse().unwrap(),
    );
    assert_eq!(find_cookie(&h).as_deref(), Some("v1"));
    strip_cookie(&mut h);
    let left: Vec<_> = h
        .get_all(http::header::COOKIE)
        .iter()
        .map(|v| v.to_str().unwrap())
        .collect();
    assert_eq!(left, ["a=1; b=2"]);
}

#[test]
fn the_token_parameter_is_split_off_exactly() {
    let url = with_token("http://h/p?q=1", "T");
    assert_eq!(url, format!("http://h/p?q=1&{TOKEN_PARAM}=T"));
    assert_eq!(
        split_token(&url),
        Some(("http://h/p?q=1".into(), "T".into()))
    );
    let url = with_token("http://h/p", "T");
    assert_eq!(split_token(&url), Some(("http://h/p".into(), "T".into())));
    assert_eq!(split_token("http://h/p?q=1"), None);
    assert_eq!(
        split_token(&format!("http://h/?{TOKEN_PARAM}")),
        Some(("http://h/".into(), String::new()))
    );
}
