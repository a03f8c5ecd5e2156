//! `gatehouse check`: the config is valid, every realm builds, and each
//! directory (and the Negotiate keytab) answers.

use std::process::ExitCode;
use std::time::Instant;

use gatehouse::config::Config;
use gatehouse::directory::Realm;
use gatehouse::server::runtime::Runtime;

use crate::users::runtime;

/// Builds the config as `run` would (policy, realms, verifier), then asks
/// each directory for its base: exit 2 when it does not build, 3 when a
/// directory cannot be reached, 4 when the NTLM test logon (`ntlm`: user
/// and password file) is refused.
pub fn check(config: &Config, ntlm: Option<(&str, &std::path::Path)>) -> ExitCode {
    let built = match Runtime::build(std::sync::Arc::new(config.clone())) {
        Ok(b) => b,
        Err(e) => {
            eprintln!("gatehouse: config error: {e}");
            return ExitCode::from(2);
        }
    };
    println!("config OK");
    for w in gatehouse::server::runtime::warnings(config, &built.snapshot.policy) {
        println!("WARNING: {w}");
    }
    let realms = built.snapshot.realms.clone();
    let mut unreachable = 0;
    if let Some(n) = config.auth.negotiate.as_ref().filter(|_| {
        config
            .auth
            .schemes
            .contains(&gatehouse::auth::settings::Scheme::Negotiate)
    }) {
        match gatehouse::auth::negotiate::describe_keytab(n) {
            Ok(report) => println!("negotiate: {report}"),
            Err(e) => {
                unreachable += 1;
                println!("negotiate: PROBLEM: {e}");
            }
        }
    }
    runtime().block_on(async {
        for realm in realms.iter() {
            let started = Instant::now();
            match &**realm {
                Realm::Local(r) => println!("realm {}: local, {} users", r.name(), r.user_count()),
                Realm::Ldap(r) => match r.probe().await {
                    Ok(()) => println!(
                        "realm {}: directory answered in {:?}",
                        r.name(),
                        started.elapsed()
                    ),
                    Err(e) => {
                        unreachable += 1;
                        println!("realm {}: UNREACHABLE: {e}", r.name());
                    }
                },
            }
        }
    });
    if let Some((user, password_file)) = ntlm {
        let helper = &config.auth.ntlm.helper;
        // The domain part of DOMAIN\user, else the helper's default domain.
        match crate::ntlm_logon::logon(helper, "", user, password_file) {
            Ok(account) => println!("ntlm: test logon accepted by the domain as {account}"),
            Err(e) => {
                println!("ntlm: test logon FAILED: {e}");
                return ExitCode::from(4);
            }
        }
    }
    if unreachable > 0 {
        ExitCode::from(3)
    } else {
        ExitCode::SUCCESS
    }
}
