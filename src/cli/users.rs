//! `gatehouse passwd` (local users) and `gatehouse auth-test` (which realm
//! accepts a user, with what groups).

use std::io::{BufRead, IsTerminal};
use std::path::Path;
use std::process::ExitCode;

use gatehouse::config::Config;
use gatehouse::directory::{RealmChain, RealmError, RealmVerdict};

pub fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a single-threaded runtime always builds")
}

/// A password from the terminal (no echo), or one line of stdin.
fn read_password(prompt: &str, confirm: bool) -> Result<String, String> {
    if std::io::stdin().is_terminal() {
        let pw = rpassword::prompt_password(prompt).map_err(|e| e.to_string())?;
        if confirm && rpassword::prompt_password("Again: ").map_err(|e| e.to_string())? != pw {
            return Err("the passwords differ".into());
        }
        return Ok(pw);
    }
    let mut line = String::new();
    std::io::stdin()
        .lock()
        .read_line(&mut line)
        .map_err(|e| e.to_string())?;
    Ok(line.trim_end_matches(['\r', '\n']).to_string())
}

pub fn passwd(users: &Path, user: &str, groups: &[String]) -> ExitCode {
    let result = read_password(&format!("Password for {user}: "), true).and_then(|pw| {
        let groups = (!groups.is_empty()).then_some(groups);
        gatehouse::directory::local::set_password(users, user, &pw, groups)
            .map_err(|e| e.to_string())
    });
    match result {
        Ok(()) => {
            println!("{user}: password set in {}", users.display());
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("gatehouse passwd: {e}");
            ExitCode::FAILURE
        }
    }
}

fn realms(config: &Config) -> Result<RealmChain, RealmError> {
    RealmChain::build(&config.realm_configs, &config.auth.password_checks)
}

/// `wbinfo -a` for the proxy: which realm accepts the user, with what groups.
pub fn auth_test(config: &Config, user: &str) -> ExitCode {
    let realms = match realms(config) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("gatehouse: {e}");
            return ExitCode::from(2);
        }
    };
    let password = match read_password(&format!("Password for {user}: "), false) {
        Ok(p) => p,
        Err(e) => {
            eprintln!("gatehouse auth-test: {e}");
            return ExitCode::FAILURE;
        }
    };
    let verdict =
        runtime().block_on(
            realms.verify_observed(user, &password, |realm, verdict, took| match verdict {
                RealmVerdict::Verified(id) => {
                    println!("realm:  {}", realm.name());
                    println!("user:   {}", id.user);
                    println!("dn:     {}", id.dn.as_deref().unwrap_or("-"));
                    println!("groups: {}", id.groups.len());
                    for g in &id.groups {
                        let how = if g.nested { " (nested)" } else { "" };
                        println!("  {}{how}  {}", g.name, g.dn.as_deref().unwrap_or(""));
                    }
                    println!("time:   {took:?}");
                }
                RealmVerdict::UnknownUser => {
                    println!("realm {}: no such user ({took:?})", realm.name())
                }
                RealmVerdict::BadPassword => {
                    println!("realm {}: password refused ({took:?})", realm.name());
                }
                RealmVerdict::Refused(why) => {
                    println!(
                        "realm {}: account refused: {} ({took:?})",
                        realm.name(),
                        why.as_str()
                    );
                }
                RealmVerdict::Unavailable(u) => {
                    println!("realm {}: unavailable: {u} ({took:?})", realm.name())
                }
                RealmVerdict::Busy(why) => {
                    println!("realm {}: busy: {why} ({took:?})", realm.name())
                }
            }),
        );
    if matches!(verdict, RealmVerdict::Verified(_)) {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}
