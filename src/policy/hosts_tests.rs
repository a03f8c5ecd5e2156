use super::*;

fn set(patterns: &[&str]) -> HostSet {
    let mut s = HostSet::default();
    for (i, p) in patterns.iter().enumerate() {
        s.insert(Pattern::parse(p).unwrap(), i as u32 + 1);
    }
    s.finish().unwrap();
    s
}

fn hit(s: &HostSet, host: &str) -> Option<String> {
    s.find(host).map(|(p, _)| p.to_string())
}

#[test]
fn exact_name_is_only_that_name() {
    let s = set(&["example.com"]);
    assert_eq!(hit(&s, "example.com"), Some("example.com".into()));
    assert_eq!(hit(&s, "www.example.com"), None);
    assert_eq!(hit(&s, "badexample.com"), None);
    assert_eq!(hit(&s, "example.com.evil"), None);
}

#[test]
fn leading_dot_is_the_domain_and_its_subdomains_not_a_string_suffix() {
    let s = set(&[".example.com"]);
    assert_eq!(hit(&s, "example.com"), Some(".example.com".into()));
    assert_eq!(hit(&s, "a.b.example.com"), Some(".example.com".into()));
    assert_eq!(hit(&s, "badexample.com"), None);
    assert_eq!(hit(&s, "example.com.evil"), None);
    assert_eq!(hit(&s, "com"), None);
}

#[test]
fn trailing_dots_and_case_on_either_side() {
    let s = set(&["Example.COM.", ".Ads.Test"]);
    assert_eq!(hit(&s, "example.com."), Some("example.com".into()));
    assert_eq!(hit(&s, "EXAMPLE.com"), Some("example.com".into()));
    assert_eq!(hit(&s, "X.ADS.test."), Some(".ads.test".into()));
    assert!(Pattern::parse("example.com..").is_err());
}

#[test]
fn unicode_patterns_match_their_punycode() {
    // Request hosts reach the policy in their ASCII (punycode) form.
    let s = set(&["Bücher.example", ".münchen.test"]);
    assert_eq!(
        hit(&s, "xn--bcher-kva.example"),
        Some("xn--bcher-kva.example".into())
    );
    assert_eq!(
        hit(&s, "www.xn--mnchen-3ya.test"),
        Some(".xn--mnchen-3ya.test".into())
    );
    assert_eq!(hit(&s, "bucher.example"), None);
    // Written in punycode, they are the same entry.
    assert_eq!(
        Pattern::parse("xn--bcher-kva.example"),
        Pattern::parse("BÜCHER.example")
    );
}

#[test]
fn the_most_specific_entry_is_reported() {
    let s = set(&[
        ".example.com",
        ".www.example.com",
        "www.example.com",
        "re:^w+\\.",
    ]);
    assert_eq!(hit(&s, "www.example.com"), Some("www.example.com".into()));
    assert_eq!(
        hit(&s, "a.www.example.com"),
        Some(".www.example.com".into())
    );
    assert_eq!(hit(&s, "a.example.com"), Some(".example.com".into()));
    assert_eq!(hit(&s, "ww.other.test"), Some("re:^w+\\.".into()));
    let e = s.entry("host", "a.example.com").unwrap();
    assert_eq!(e.to_string(), "host .example.com");
}

#[test]
fn addresses_are_exact_and_canonical() {
    let s = set(&["127.1", "[::ffff:10.0.0.1]", "2001:DB8::1"]);
    assert_eq!(hit(&s, "127.0.0.1"), Some("127.0.0.1".into()));
    assert_eq!(hit(&s, "10.0.0.1"), Some("10.0.0.1".into()));
    assert_eq!(hit(&s, "2001:db8::1"), Some("2001:db8::1".into()));
    assert!(Pattern::parse(".10.0.0.1").is_err());
}

#[test]
fn bad_patterns_are_refused() {
    for p in ["", ".", "a b.test", "re:(", "..example.com", "a..b"] {
        assert!(Pattern::parse(p).is_err(), "{p:?}");
    }
}
