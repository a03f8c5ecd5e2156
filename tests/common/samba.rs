//! The Samba AD DC lab (integration/lab/samba). It uses the standard ports, so
//! one serves the whole run: integration/test starts it and names its folder
//! in LAB_SAMBA_DIR. Without it these tests fail, loudly.

use std::path::{Path, PathBuf};

/// The running lab DC's folder.
pub fn dir() -> PathBuf {
    let dir = std::env::var("LAB_SAMBA_DIR").expect(
        "LAB_SAMBA_DIR is not set: the Samba AD DC lab is started by integration/test \
         (or by hand: integration/lab/samba start /tmp/gh-samba; LAB_SAMBA_DIR=/tmp/gh-samba cargo test)",
    );
    let dir = PathBuf::from(dir);
    assert!(
        dir.join("http.keytab").exists(),
        "no Samba lab in {}",
        dir.display()
    );
    dir
}

/// A realm file for the lab DC's LDAP (ad-in-chain groups), written into `dir`.
pub fn realm_file(samba: &Path, dir: &Path) -> PathBuf {
    let path = dir.join("ad.toml");
    std::fs::write(
        &path,
        format!(
            "name = \"ad\"\nkind = \"ldap\"\nurls = [\"ldap://127.0.0.1:389\"]\ntls = \"none\"\n\
             bind_dn = \"Administrator@AD.EXAMPLE.TEST\"\nbind_password_file = \"{}\"\n\
             user_base = \"CN=Users,DC=ad,DC=example,DC=test\"\n\
             user_filter = \"(&(objectClass=user)(sAMAccountName={{user}}))\"\n\
             login_attribute = \"sAMAccountName\"\nprincipal_attribute = \"userPrincipalName\"\n\
             group_base = \"DC=ad,DC=example,DC=test\"\ngroup_strategy = \"ad-in-chain\"\n\
             group_filter = \"(objectClass=group)\"\nstale_grace = \"1h\"\n\
             domains = [\"ADTEST\", \"AD.EXAMPLE.TEST\"]\n",
            samba.join("admin.pw").display()
        ),
    )
    .unwrap();
    path
}
