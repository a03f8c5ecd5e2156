//! The access log: one line per transaction, written by a dedicated thread so
//! the data path never waits for a disk. Lines are queued with `try_send`;
//! when the queue is full a line is dropped and counted (and the count is
//! reported), which is the one trade a proxy must make for a stalled disk.
//! [`AccessLog::close`] drains the queue and flushes: no line is lost on a
//! graceful shutdown. [`AccessLog::reopen`] (SIGHUP, SIGUSR1) opens the
//! path again — after logrotate moved the file, or with a new path or
//! format — between two lines, none lost.

pub mod format;
pub mod record;
pub mod settings;

use std::fs::OpenOptions;
use std::io::{self, BufWriter, Write};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{
    sync_channel, Receiver, RecvTimeoutError, SyncSender, TryRecvError, TrySendError,
};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, SystemTime};

pub use record::{AccessRecord, FilterResult};

use settings::{AccessLogConfig, LogFormat};

enum Msg {
    Line(Box<AccessRecord>),
    /// Open this destination in this format from the next line on; the
    /// result goes back on `done` (a failure keeps the old destination).
    Reopen {
        path: String,
        format: LogFormat,
        done: SyncSender<io::Result<()>>,
    },
    Close,
}

type Destination = (BufWriter<Box<dyn Write + Send>>, bool);

/// `-` (stdout) or the file at `path`, appended; whether it is empty.
fn open_destination(path: &str) -> io::Result<Destination> {
    let (out, is_new): (Box<dyn Write + Send>, bool) = if path == "-" {
        (Box::new(io::stdout()), true)
    } else {
        let f = OpenOptions::new()
            .create(true)
            .append(true)
            .open(PathBuf::from(path))?;
        let is_new = f.metadata()?.len() == 0;
        (Box::new(f), is_new)
    };
    Ok((BufWriter::with_capacity(64 * 1024, out), is_new))
}

/// Something that sees every record as it is written (the metrics).
pub trait Observe: Send + Sync + 'static {
    /// One finished transaction.
    fn observe(&self, record: &AccessRecord);
}

/// Handle to the access log writer; cheap to clone.
#[derive(Clone)]
pub struct AccessLog {
    tx: SyncSender<Msg>,
    dropped: Arc<AtomicU64>,
    thread: Arc<Mutex<Option<JoinHandle<()>>>>,
    observer: Option<Arc<dyn Observe>>,
}

impl AccessLog {
    /// Opens the configured destination and starts the writer thread.
    pub fn open(cfg: &AccessLogConfig) -> io::Result<Self> {
        let (out, is_new) = open_destination(&cfg.path)?;
        let (tx, rx) = sync_channel(cfg.queue);
        let format = cfg.format;
        let thread = std::thread::Builder::new()
            .name("accesslog".into())
            .spawn(move || writer(rx, out, format, is_new))?;
        Ok(Self {
            tx,
            dropped: Arc::new(AtomicU64::new(0)),
            thread: Arc::new(Mutex::new(Some(thread))),
            observer: None,
        })
    }

    /// Every record written from now on is shown to `observer` too.
    pub fn observed_by(mut self, observer: Arc<dyn Observe>) -> Self {
        self.observer = Some(observer);
        self
    }

    /// Queues one record; never blocks.
    pub fn write(&self, mut record: AccessRecord) {
        record.finish();
        if let Some(o) = &self.observer {
            o.observe(&record);
        }
        match self.tx.try_send(Msg::Line(Box::new(record))) {
            Ok(()) => {}
            Err(TrySendError::Full(_)) | Err(TrySendError::Disconnected(_)) => {
                let n = self.dropped.fetch_add(1, Ordering::Relaxed) + 1;
                if n.is_power_of_two() {
                    tracing::warn!(dropped = n, "access log queue full: lines dropped");
                }
            }
        }
    }

    /// Opens `cfg.path` again (in `cfg.format`): the file logrotate left in
    /// its place, or a new path. Lines queued before are written to the old
    /// destination, lines after to the new one. Blocks until the writer has
    /// done it (call it off the async threads); on failure the old
    /// destination stays.
    pub fn reopen(&self, cfg: &AccessLogConfig) -> io::Result<()> {
        let (done, result) = sync_channel(1);
        let msg = Msg::Reopen {
            path: cfg.path.clone(),
            format: cfg.format,
            done,
        };
        self.tx
            .send(msg)
            .map_err(|_| io::Error::other("the access log writer has stopped"))?;
        result
            .recv_timeout(Duration::from_secs(10))
            .map_err(|_| io::Error::other("the access log writer did not answer"))?
    }

    /// Lines dropped because the writer could not keep up.
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }

    /// Writes every queued line, flushes, and stops the writer.
    pub fn close(&self) {
        let handle = self.thread.lock().unwrap_or_else(|p| p.into_inner()).take();
        if let Some(handle) = handle {
            // A blocking send: shutdown may wait for the disk, the data path never does.
            let _ = self.tx.send(Msg::Close);
            let _ = handle.join();
        }
    }
}

/// How long a busy writer lets lines gather before the next batch. At 10,000
/// lines/s that is ~50 lines per write, far below the queue's bound.
const BATCH_PAUSE: Duration = Duration::from_millis(5);

fn write_record(out: &mut impl Write, line: &mut String, format: LogFormat, r: &AccessRecord) {
    line.clear();
    format::write_line(line, format, r);
    if let Err(e) = out.write_all(line.as_bytes()) {
        tracing::error!(error = %e, "access log write failed");
    }
}

/// A new destination in `format`: ELFF's header first when it is empty.
fn begin(out: &mut impl Write, format: LogFormat, is_new: bool) {
    if format == LogFormat::Elff && is_new {
        let _ = out.write_all(format::elff_header(SystemTime::now()).as_bytes());
        let _ = out.flush();
    }
}

/// Handles a reopen: the old destination flushed, the new one begun.
fn reopen(
    out: &mut BufWriter<Box<dyn Write + Send>>,
    format: &mut LogFormat,
    path: &str,
    new_format: LogFormat,
) -> io::Result<()> {
    let _ = out.flush();
    let (mut new, is_new) = open_destination(path)?;
    begin(&mut new, new_format, is_new);
    *out = new;
    *format = new_format;
    Ok(())
}

fn writer(
    rx: Receiver<Msg>,
    mut out: BufWriter<Box<dyn Write + Send>>,
    mut format: LogFormat,
    is_new: bool,
) {
    let mut line = String::with_capacity(512);
    begin(&mut out, format, is_new);
    loop {
        // Write what is queued; when nothing was, wait for the next line and
        // write it at once (lines appear promptly when quiet). When busy, pause
        // a moment between batches: a writer that is not parked on the queue
        // costs senders no wake-up, and a batch costs one write(2).
        let mut wrote = 0usize;
        loop {
            match rx.try_recv() {
                Ok(Msg::Line(r)) => {
                    write_record(&mut out, &mut line, format, &r);
                    wrote += 1;
                }
                Ok(Msg::Reopen {
                    path,
                    format: f,
                    done,
                }) => {
                    let _ = done.send(reopen(&mut out, &mut format, &path, f));
                }
                Ok(Msg::Close) | Err(TryRecvError::Disconnected) => {
                    let _ = out.flush();
                    return;
                }
                Err(TryRecvError::Empty) => break,
            }
        }
        let _ = out.flush();
        if wrote > 1 {
            std::thread::sleep(BATCH_PAUSE);
            continue;
        }
        match rx.recv_timeout(Duration::from_secs(1)) {
            Ok(Msg::Line(r)) => write_record(&mut out, &mut line, format, &r),
            Ok(Msg::Reopen {
                path,
                format: f,
                done,
            }) => {
                let _ = done.send(reopen(&mut out, &mut format, &path, f));
            }
            Ok(Msg::Close) | Err(RecvTimeoutError::Disconnected) => break,
            Err(RecvTimeoutError::Timeout) => {}
        }
    }
    let _ = out.flush();
}
