//! The `gatehouse` command.
#![forbid(unsafe_code)]

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use gatehouse::config::Config;

mod check;
mod explain;
mod join;
mod ntlm_logon;
mod replay;
mod revoke;
mod users;

#[derive(Parser)]
#[command(
    name = "gatehouse",
    version,
    about = "Authenticating HTTP forward proxy"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Serve, until SIGTERM or SIGINT.
    Run {
        /// Config file; the embedded default (config/gatehouse.toml) when omitted.
        #[arg(long, short)]
        config: Option<PathBuf>,
    },
    /// Validate a config file and its realms, and try each directory: exit 2
    /// when the config is bad, 3 when a directory cannot be reached.
    Check {
        #[arg(long, short)]
        config: Option<PathBuf>,
        /// Also log this domain user (`DOMAIN\user`) on by NTLM through the
        /// configured helper (exit 4 when the domain refuses).
        #[arg(long)]
        ntlm_test_user: Option<String>,
        /// That user's password, first line of this file (mode 0600).
        #[arg(long, requires = "ntlm_test_user")]
        ntlm_test_password_file: Option<PathBuf>,
    },
    /// Join this host to Active Directory for Negotiate and NTLM: the computer
    /// account, the HTTP SPN, its keytab, winbind's smb.conf — then verify
    /// each (a ticket accepted from the keytab, the trust, an NTLM logon).
    /// Safe to re-run: it checks and repairs.
    Join(Box<join::JoinArgs>),
    /// Add a user to a local users file, or change their password.
    /// The password is read from the terminal (twice) or one line of stdin.
    Passwd {
        /// The users file (see realms/local.toml); created if missing.
        #[arg(long)]
        users: PathBuf,
        user: String,
        /// Set the user's groups (repeat for several); unchanged when omitted.
        #[arg(long = "group")]
        groups: Vec<String>,
    },
    /// Show how the policy decides a request: each layer's matching rule and
    /// the final decision, as the running proxy would decide it.
    Explain {
        #[arg(long, short)]
        config: Option<PathBuf>,
        #[command(flatten)]
        request: Box<explain::ExplainRequest>,
    },
    /// The TLS interception CA.
    Ca {
        #[command(subcommand)]
        command: CaCommand,
    },
    /// Check a user's password against the configured realms and show the
    /// DN and groups found. The password is read from the terminal or stdin.
    AuthTest {
        #[arg(long, short)]
        config: Option<PathBuf>,
        #[arg(long)]
        user: String,
    },
    /// Make a user sign in again now: the running proxy drops their cached
    /// credentials and closes their open tunnels (through the admin
    /// listener, which must be on loopback).
    Revoke {
        #[arg(long, short)]
        config: Option<PathBuf>,
        #[arg(long)]
        user: String,
    },
    /// Re-decide recorded access logs under a new policy: what would change.
    Replay {
        #[arg(long, short)]
        config: Option<PathBuf>,
        #[command(flatten)]
        args: Box<replay::ReplayArgs>,
    },
}

#[derive(Subcommand)]
enum CaCommand {
    /// Create a CA for interception: DIR/ca.pem (give it to clients to
    /// trust) and DIR/ca.key (0600; name both in `[intercept]`).
    Init {
        /// The directory to write them in (created if missing).
        #[arg(long)]
        out: PathBuf,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Check {
            config,
            ntlm_test_user,
            ntlm_test_password_file,
        } => match Config::load(config.as_deref()) {
            Ok(config) => {
                let ntlm = ntlm_test_user.zip(ntlm_test_password_file);
                check::check(
                    &config,
                    ntlm.as_ref().map(|(u, f)| (u.as_str(), f.as_path())),
                )
            }
            Err(e) => {
                eprintln!("gatehouse: config error: {e}");
                ExitCode::from(2)
            }
        },
        Command::Passwd {
            users,
            user,
            groups,
        } => users::passwd(&users, &user, &groups),
        Command::Explain { config, request } => {
            with_config(config, |config| explain::explain(config, &request))
        }
        Command::Ca {
            command: CaCommand::Init { out },
        } => match gatehouse::intercept::ca::init(&out) {
            Ok((cert, key)) => {
                println!(
                    "CA certificate: {} (give it to clients to trust)",
                    cert.display()
                );
                println!(
                    "CA key:         {} (0600; keep it on this host only)",
                    key.display()
                );
                println!(
                    "then in the config:\n[intercept]\nca_cert = {:?}\nca_key = {:?}",
                    cert.display().to_string(),
                    key.display().to_string()
                );
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("gatehouse ca init: {e}");
                ExitCode::FAILURE
            }
        },
        Command::Join(args) => join::join(&args),
        Command::Revoke { config, user } => {
            with_config(config, |config| revoke::revoke(config, &user))
        }
        Command::Replay { config, args } => {
            with_config(config, |config| replay::replay(config, &args))
        }
        Command::AuthTest { config, user } => {
            with_config(config, |config| users::auth_test(config, &user))
        }
        Command::Run { config } => {
            let config_path = config.clone();
            let config = match Config::load(config.as_deref()) {
                Ok(c) => c,
                Err(e) => {
                    eprintln!("gatehouse: config error: {e}");
                    return ExitCode::from(2);
                }
            };
            init_tracing(&config.log);
            // libgssapi finds the keytab only through this process-wide variable:
            // set once, here, before any thread exists.
            if let Some(n) = config.auth.negotiate.as_ref().filter(|_| {
                config
                    .auth
                    .schemes
                    .contains(&gatehouse::auth::settings::Scheme::Negotiate)
            }) {
                std::env::set_var("KRB5_KTNAME", format!("FILE:{}", n.keytab.display()));
            }
            let runtime = match tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .build()
            {
                Ok(r) => r,
                Err(e) => {
                    eprintln!("gatehouse: cannot start runtime: {e}");
                    return ExitCode::FAILURE;
                }
            };
            let stop = tokio_util::sync::CancellationToken::new();
            let result = runtime.block_on(async {
                let s = stop.clone();
                // Caught from here, before the proxy binds and says so.
                let signalled = gatehouse::server::signal();
                tokio::spawn(async move {
                    signalled.await;
                    s.cancel();
                });
                gatehouse::server::run(config, config_path, stop).await
            });
            match result {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("gatehouse: {e}");
                    ExitCode::FAILURE
                }
            }
        }
    }
}

/// Loads the config and runs `f`, or reports the config error (exit 2).
fn with_config(path: Option<PathBuf>, f: impl FnOnce(&Config) -> ExitCode) -> ExitCode {
    match Config::load(path.as_deref()) {
        Ok(config) => f(&config),
        Err(e) => {
            eprintln!("gatehouse: config error: {e}");
            ExitCode::from(2)
        }
    }
}

fn init_tracing(log: &gatehouse::config::process::LogConfig) {
    use gatehouse::config::process::LogFormat;
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .or_else(|_| tracing_subscriber::EnvFilter::try_new(&log.level))
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    // Colour only for a terminal: journald and log files get plain text.
    use std::io::IsTerminal;
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal());
    match log.format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().with_ansi(false).init(),
    }
}
