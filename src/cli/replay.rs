//! `gatehouse replay`: what a new policy would change, judged over
//! recorded access logs before it is reloaded (see `gatehouse::replay`).

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;

use gatehouse::config::Config;
use gatehouse::replay::run::{run, Options};
use gatehouse::replay::Replayer;

/// `replay`'s arguments besides the config.
#[derive(clap::Args)]
pub struct ReplayArgs {
    /// The policy file to judge the recorded traffic with.
    #[arg(long)]
    pub policy: PathBuf,
    /// Print the report as one JSON object.
    #[arg(long)]
    pub json: bool,
    /// No progress lines on stderr.
    #[arg(long, short)]
    pub quiet: bool,
    /// Access log files (ELFF, Squid or JSON lines; `-` for stdin).
    #[arg(required = true)]
    pub logs: Vec<PathBuf>,
}

/// Replays the logs; exit 0 when done (whatever would change), 2 when the
/// policy or a log cannot be read.
pub fn replay(config: &Config, args: &ReplayArgs) -> ExitCode {
    let replayer = match Replayer::new(config, &args.policy) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("gatehouse replay: {e}");
            return ExitCode::from(2);
        }
    };
    let mut opts = Options::default();
    if args.quiet {
        opts.progress = None;
    }
    let started = Instant::now();
    let tally = match run(&replayer, &args.logs, &opts) {
        Ok(t) => t,
        Err(e) => {
            eprintln!("gatehouse replay: {e}");
            return ExitCode::from(2);
        }
    };
    let took = started.elapsed().as_secs_f64();
    if !args.quiet {
        eprintln!(
            "replay: {} lines in {took:.1} s ({:.0} lines/s, {} workers)",
            tally.lines,
            tally.lines as f64 / took.max(1e-9),
            opts.workers
        );
    }
    if args.json {
        println!("{}", tally.json());
    } else {
        print!("{}", tally.text());
    }
    ExitCode::SUCCESS
}
