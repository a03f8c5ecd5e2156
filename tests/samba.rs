//! Against a real Active Directory (Samba 4 DC, realm AD.EXAMPLE.TEST):
//! Negotiate with the DC's tickets, users and nested groups from AD's LDAP.
//!
//! The DC uses the standard ports, so one runs per machine: integration/test
//! starts it (integration/lab/samba) and names its folder in LAB_SAMBA_DIR.

mod common;

use common::*;

fn sorted_groups(line: &std::collections::HashMap<String, String>) -> Vec<String> {
    let mut g: Vec<String> = line["cs-auth-group"]
        .split(',')
        .map(str::to_string)
        .collect();
    g.sort();
    g
}

#[tokio::test(flavor = "multi_thread")]
async fn ad_user_with_nested_groups_by_negotiate_and_by_basic() {
    let samba = common::samba::dir();
    let dir = tempfile::tempdir().unwrap();
    let origin = Origin::start().await;
    let realm = common::samba::realm_file(&samba, dir.path());
    let krb5 = samba.join("krb5.conf");
    let cfg = format!(
        "[auth]\nrequired = true\nrealms = [\"{}\"]\nschemes = [\"negotiate\", \"basic\"]\n\
         [auth.negotiate]\nkeytab = \"{}\"\nprincipal = \"HTTP/proxy.ad.example.test@AD.EXAMPLE.TEST\"\n",
        realm.display(),
        samba.join("http.keytab").display()
    );
    let gh = Gatehouse::start_with_env("", &cfg, &[("KRB5_CONFIG", krb5.to_str().unwrap())]);
    // kinit against the DC's KDC, then no password to the proxy.
    let cc = kinit(&krb5, "alice", "alice-Pw1", dir.path());
    let port = gh.port;
    let url = origin.url("/hello");
    let (code, err) = tokio::task::block_in_place(|| {
        curl_negotiate(&krb5, &cc, "proxy.ad.example.test", port, &url)
    });
    assert_eq!(code, "200", "{err}");
    // Basic against AD's LDAP too.
    assert_eq!(
        status_of(
            &raw_exchange(
                gh.addr(),
                format!("GET {url} HTTP/1.1\r\nHost: x\r\nProxy-Authorization: {}\r\nConnection: close\r\n\r\n", basic("bob:bob-Pw1"))
                    .as_bytes(),
                std::time::Duration::from_secs(10)
            )
            .await
        ),
        200
    );
    let lines = gh.log_lines(2);
    let alice = lines.iter().find(|l| l["cs-username"] == "alice").unwrap();
    assert_eq!(alice["x-auth-scheme"], "negotiate-kerberos");
    assert_eq!(
        sorted_groups(alice),
        vec!["Skype Users", "staff", "telephony"],
        "nested via in-chain"
    );
    let bob = lines.iter().find(|l| l["cs-username"] == "bob").unwrap();
    assert_eq!(bob["x-auth-scheme"], "basic");
    assert_eq!(sorted_groups(bob), vec!["staff"]);
}
