//! The replay's pipeline: one reader thread reads the files line by line
//! into batches, a pool of workers judges them, over a bounded queue — so
//! memory is the queue's few batches whatever the logs weigh, and every
//! core works. Each worker keeps its own [`Tally`]; they merge at the end.

use std::io::{self, BufRead, BufReader, Read};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{sync_channel, Receiver};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::line::ElffFields;
use super::tally::Tally;
use super::unknown::Scanner;
use super::Replayer;

/// Lines per batch handed to a worker.
const BATCH: usize = 1024;

/// A line longer than this is malformed (and memory stays bounded).
const MAX_LINE: u64 = 64 * 1024;

/// How the run goes.
#[derive(Debug, Clone)]
pub struct Options {
    /// Workers judging lines (the reader is one more thread).
    pub workers: usize,
    /// Batches queued between the reader and the workers.
    pub queue: usize,
    /// Print progress to stderr about every this often (`None`: quiet).
    pub progress: Option<Duration>,
}

impl Default for Options {
    fn default() -> Self {
        let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
        Self {
            workers: cores,
            queue: 2 * cores,
            progress: Some(Duration::from_secs(2)),
        }
    }
}

/// A batch of lines, with the ELFF field order in force for them.
struct Batch {
    fields: Arc<ElffFields>,
    lines: Vec<String>,
}

/// Reads `paths` (`-`: standard input) through `replayer`.
pub fn run(replayer: &Replayer, paths: &[PathBuf], opts: &Options) -> io::Result<Tally> {
    let (tx, rx) = sync_channel::<Batch>(opts.queue.max(1));
    let rx = Arc::new(Mutex::new(rx));
    let read = Arc::new(AtomicU64::new(0));
    std::thread::scope(|s| {
        let workers: Vec<_> = (0..opts.workers.max(1))
            .map(|_| {
                let rx = rx.clone();
                s.spawn(move || work(replayer, &rx))
            })
            .collect();
        // Only the workers hold the queue's end: if they all stopped, the
        // reader's send fails instead of waiting forever.
        drop(rx);
        let counter = read.clone();
        let reader = s.spawn(move || read_all(paths, &tx, &counter));
        let started = Instant::now();
        if let Some(every) = opts.progress {
            let mut shown = started;
            while !reader.is_finished() {
                std::thread::park_timeout(Duration::from_millis(200));
                if shown.elapsed() >= every {
                    shown = Instant::now();
                    let n = read.load(Ordering::Relaxed);
                    let rate = n as f64 / started.elapsed().as_secs_f64();
                    eprintln!("replay: {n} lines read, {rate:.0} lines/s");
                }
            }
        }
        let done = reader
            .join()
            .unwrap_or_else(|_| Err(io::Error::other("the reader thread panicked")));
        let mut tally = Tally::default();
        for w in workers {
            match w.join() {
                Ok(t) => tally.merge(t),
                Err(_) => return Err(io::Error::other("a replay worker panicked")),
            }
        }
        done.map(|()| tally)
    })
}

fn work(replayer: &Replayer, rx: &Mutex<Receiver<Batch>>) -> Tally {
    let mut tally = Tally::default();
    let mut scan = Scanner::default();
    loop {
        // The lock is held only to take a batch, never while judging it.
        let next = rx.lock().map(|r| r.recv());
        let Ok(Ok(batch)) = next else {
            return tally;
        };
        for l in &batch.lines {
            replayer.replay(&mut scan, &batch.fields, l, &mut tally);
        }
    }
}

fn read_all(
    paths: &[PathBuf],
    tx: &std::sync::mpsc::SyncSender<Batch>,
    read: &AtomicU64,
) -> io::Result<()> {
    for path in paths {
        let input: Box<dyn Read> = if path.as_os_str() == "-" {
            Box::new(io::stdin())
        } else {
            Box::new(
                std::fs::File::open(path)
                    .map_err(|e| io::Error::new(e.kind(), format!("{}: {e}", path.display())))?,
            )
        };
        read_one(BufReader::with_capacity(256 * 1024, input), tx, read)?;
    }
    Ok(())
}

/// One file: a `#Fields:` header sets the ELFF order for the lines after it.
fn read_one(
    mut input: impl BufRead,
    tx: &std::sync::mpsc::SyncSender<Batch>,
    read: &AtomicU64,
) -> io::Result<()> {
    let mut fields = Arc::new(ElffFields::default());
    let mut lines = Vec::with_capacity(BATCH);
    let mut buf = Vec::with_capacity(1024);
    let send = |fields: &Arc<ElffFields>, lines: &mut Vec<String>| {
        if lines.is_empty() {
            return Ok(());
        }
        let batch = Batch {
            fields: fields.clone(),
            lines: std::mem::replace(lines, Vec::with_capacity(BATCH)),
        };
        tx.send(batch)
            .map_err(|_| io::Error::other("the replay workers stopped"))
    };
    loop {
        buf.clear();
        if (&mut input).take(MAX_LINE).read_until(b'\n', &mut buf)? == 0 {
            break;
        }
        if buf.len() as u64 == MAX_LINE && buf.last() != Some(&b'\n') {
            // Over-long: keep its start (it is counted malformed), skip the rest.
            while !buf.ends_with(b"\n") {
                let mut rest = Vec::new();
                if (&mut input).take(MAX_LINE).read_until(b'\n', &mut rest)? == 0 {
                    break;
                }
                buf.truncate(MAX_LINE as usize);
                buf.push(if rest.ends_with(b"\n") { b'\n' } else { b' ' });
            }
            buf.splice(0..0, b"\0".iter().copied());
        }
        read.fetch_add(1, Ordering::Relaxed);
        // A line that is not UTF-8 is read with replacement characters:
        // it then fails to parse and is counted, never skipped in silence.
        let text = String::from_utf8_lossy(&buf).into_owned();
        if let Some(names) = text.strip_prefix("#Fields:") {
            send(&fields, &mut lines)?;
            fields = Arc::new(ElffFields::from_header(names));
            continue;
        }
        lines.push(text);
        if lines.len() == BATCH {
            send(&fields, &mut lines)?;
        }
    }
    send(&fields, &mut lines)
}
