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
/// directory cannot be reached.
pub fn check(config: &Config) -> ExitCode {
    let built = match Runtime::build(config) {
        Ok(b) => b,
        Err(e) => {
            eprintln!("gatehouse: config error: {e}");
            return ExitCode::from(2);
        }
    };
    println!("config OK");
    for w in gatehouse::server::runtime::warnings(config, &built.policy) {
        println!("WARNING: {w}");
    }
    let realms = built.auth.realms();
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
            match realm {
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
    if unreachable > 0 {
        ExitCode::from(3)
    } else {
        ExitCode::SUCCESS
    }
}
