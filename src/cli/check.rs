//! `gatehouse check`: the config is valid, every realm builds, and each
//! directory (and the Negotiate keytab) answers.

use std::process::ExitCode;
use std::time::Instant;

use gatehouse::config::Config;
use gatehouse::directory::Realm;

use crate::users::{realms, runtime};

/// Builds every realm and asks each directory for its base.
pub fn check_realms(config: &Config) -> ExitCode {
    let realms = match realms(config) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("gatehouse: {e}");
            return ExitCode::from(2);
        }
    };
    let mut unreachable = 0;
    if let Some(n) = config.auth.negotiate.as_ref().filter(|_| {
        config
            .auth
            .schemes
            .contains(&gatehouse::config::Scheme::Negotiate)
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
        for realm in &realms {
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
