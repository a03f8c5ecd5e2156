//! The access log: one line per transaction, written by a dedicated thread so
//! the data path never waits for a disk. Lines are queued with `try_send`;
//! when the queue is full a line is dropped and counted (and the count is
//! reported), which is the one trade a proxy must make for a stalled disk.
//! [`AccessLog::close`] drains the queue and flushes: no line is lost on a
//! graceful shutdown. [`AccessLog::reopen`] (SIGHUP, SIGUSR1) opens the
//! path again — after logrotate moved the file, or with a new path or
//! format — between two lines, none lost.

pub(crate) mod format;
mod record;
pub(crate) mod settings;

use std::fs::OpenOptions;
use std::io::{self, BufWriter, Write};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{
    sync_channel, Receiver, RecvTimeoutError, SyncSender, TryRecvError, TrySendError,
};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime};

pub use record::{AccessRecord, FilterResult};

use settings::{AccessLogConfig, LogFormat};

enum Msg {
    Line(Box<AccessRecord>),
    Reopen(Reopen),
    Close,
}

/// Open this destination in this format from the next line on; the result
/// goes back on `done` (a failure keeps the old destination).
struct Reopen {
    path: String,
    format: LogFormat,
    /// Past this the asker has given up: the writer must not switch after a
    /// refusal was reported.
    deadline: Instant,
    done: SyncSender<io::Result<()>>,
}

type Destination = (BufWriter<Box<dyn Write + Send>>, bool);

/// `-` (stdout), nothing (`off`, reached only by a reload of a running
/// writer) or the regular file at `path`, appended; whether it is empty.
/// Opened non-blocking and refused unless it is a regular file or exactly
/// `/dev/null`: a FIFO (or other device) put in the log's place must not
/// park the writer in `open(2)` or `write(2)` forever; `/dev/null` cannot.
fn open_destination(path: &str) -> io::Result<Destination> {
    use std::os::unix::fs::OpenOptionsExt;
    let (out, is_new): (Box<dyn Write + Send>, bool) = if path == "-" {
        (Box::new(io::stdout()), true)
    } else if path == settings::OFF {
        (Box::new(io::sink()), false)
    } else {
        let nonblocking = rustix::fs::OFlags::NONBLOCK.bits() as i32;
        let f = OpenOptions::new()
            .create(true)
            .append(true)
            .custom_flags(nonblocking)
            .open(PathBuf::from(path))?;
        let meta = f.metadata()?;
        if !meta.is_file() && !is_dev_null(path, &meta) {
            return Err(io::Error::other(format!(
                "{path} is not a regular file (a FIFO or device would stall the log)"
            )));
        }
        rustix::fs::fcntl_setfl(&f, rustix::fs::OFlags::APPEND)?;
        (Box::new(f), meta.len() == 0)
    };
    Ok((BufWriter::with_capacity(64 * 1024, out), is_new))
}

/// `path` is `/dev/null` and what was opened is the null device (1, 3).
fn is_dev_null(path: &str, meta: &std::fs::Metadata) -> bool {
    use std::os::unix::fs::{FileTypeExt, MetadataExt};
    path == "/dev/null"
        && meta.file_type().is_char_device()
        && rustix::fs::major(meta.rdev()) == 1
        && rustix::fs::minor(meta.rdev()) == 3
}

/// How long a reopen or the final close may wait for the writer.
const WRITER_WAIT: Duration = Duration::from_secs(10);

/// Queues a control message without ever blocking past `deadline`: a
/// writer stalled on its disk leaves the queue full.
fn send_by(tx: &SyncSender<Msg>, mut msg: Msg, deadline: Instant) -> io::Result<()> {
    loop {
        match tx.try_send(msg) {
            Ok(()) => return Ok(()),
            Err(TrySendError::Disconnected(_)) => {
                return Err(io::Error::other("the access log writer has stopped"))
            }
            Err(TrySendError::Full(m)) if Instant::now() < deadline => {
                msg = m;
                std::thread::sleep(Duration::from_millis(10));
            }
            Err(TrySendError::Full(_)) => {
                return Err(io::Error::other(
                    "the access log writer is stalled (its queue stays full)",
                ))
            }
        }
    }
}

/// Something that sees every record as it is written (the metrics).
pub trait Observe: Send + Sync + 'static {
    /// One finished transaction.
    fn observe(&self, record: &AccessRecord);
}

/// Handle to the access log writer; cheap to clone.
#[derive(Clone)]
pub struct AccessLog {
    /// `None`: `accesslog.path = "off"`, no writer.
    tx: Option<SyncSender<Msg>>,
    dropped: Arc<AtomicU64>,
    thread: Arc<Mutex<Option<JoinHandle<()>>>>,
    /// Disconnected when the writer thread has ended.
    ended: Arc<Mutex<Receiver<()>>>,
    observer: Option<Arc<dyn Observe>>,
}

impl AccessLog {
    /// Opens the configured destination and starts the writer thread.
    pub fn open(cfg: &AccessLogConfig) -> io::Result<Self> {
        if cfg.is_off() {
            let (_, ended) = sync_channel::<()>(0);
            return Ok(Self {
                tx: None,
                dropped: Arc::new(AtomicU64::new(0)),
                thread: Arc::new(Mutex::new(None)),
                ended: Arc::new(Mutex::new(ended)),
                observer: None,
            });
        }
        let (out, is_new) = open_destination(&cfg.path)?;
        let (tx, rx) = sync_channel(cfg.queue);
        let (alive, ended) = sync_channel::<()>(0);
        let format = cfg.format;
        let thread = std::thread::Builder::new()
            .name("accesslog".into())
            .spawn(move || {
                let _alive = alive;
                writer(rx, out, format, is_new)
            })?;
        Ok(Self {
            tx: Some(tx),
            dropped: Arc::new(AtomicU64::new(0)),
            thread: Arc::new(Mutex::new(Some(thread))),
            ended: Arc::new(Mutex::new(ended)),
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
        let Some(tx) = &self.tx else {
            return;
        };
        match tx.try_send(Msg::Line(Box::new(record))) {
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
        let Some(tx) = &self.tx else {
            if cfg.is_off() {
                return Ok(());
            }
            return Err(io::Error::other(
                "the access log was started off: turning it on needs a restart",
            ));
        };
        let deadline = Instant::now() + WRITER_WAIT;
        let (done, result) = sync_channel(1);
        let msg = Msg::Reopen(Reopen {
            path: cfg.path.clone(),
            format: cfg.format,
            deadline,
            done,
        });
        send_by(tx, msg, deadline)?;
        // A moment past the writer's deadline: an answer it sends in time is read.
        let left = deadline.saturating_duration_since(Instant::now()) + Duration::from_secs(1);
        result
            .recv_timeout(left)
            .map_err(|_| io::Error::other("the access log writer did not answer in time"))?
    }

    /// Lines dropped because the writer could not keep up.
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }

    /// Writes every queued line, flushes, and stops the writer — waiting at
    /// most [`WRITER_WAIT`] for a stalled disk (shutdown must end).
    pub fn close(&self) {
        let handle = self.thread.lock().unwrap_or_else(|p| p.into_inner()).take();
        if let (Some(handle), Some(tx)) = (handle, &self.tx) {
            let deadline = Instant::now() + WRITER_WAIT;
            let ended = self.ended.lock().unwrap_or_else(|p| p.into_inner());
            let closed = send_by(tx, Msg::Close, deadline).and_then(|()| {
                let left = deadline.saturating_duration_since(Instant::now());
                match ended.recv_timeout(left) {
                    Err(RecvTimeoutError::Timeout) => {
                        Err(io::Error::other("the access log writer did not finish"))
                    }
                    _ => Ok(()),
                }
            });
            match closed {
                Ok(()) => {
                    let _ = handle.join();
                }
                Err(e) => tracing::error!(error = %e, "access log not flushed at exit"),
            }
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

/// Handles a reopen: the old destination flushed, the new one begun — unless
/// the asker gave up meanwhile (a refused reload must not switch later).
fn reopen(out: &mut BufWriter<Box<dyn Write + Send>>, format: &mut LogFormat, r: Reopen) {
    let _ = out.flush();
    let result = open_destination(&r.path).and_then(|(mut new, is_new)| {
        if Instant::now() >= r.deadline {
            return Err(io::Error::other("too late: the reload gave up"));
        }
        begin(&mut new, r.format, is_new);
        *out = new;
        *format = r.format;
        Ok(())
    });
    let _ = r.done.send(result);
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
                Ok(Msg::Reopen(r)) => reopen(&mut out, &mut format, r),
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
            Ok(Msg::Reopen(r)) => reopen(&mut out, &mut format, r),
            Ok(Msg::Close) | Err(RecvTimeoutError::Disconnected) => break,
            Err(RecvTimeoutError::Timeout) => {}
        }
    }
    let _ = out.flush();
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(path: &std::path::Path) -> AccessLogConfig {
        AccessLogConfig {
            path: path.display().to_string(),
            ..AccessLogConfig::default()
        }
    }

    fn line(log: &AccessLog, host: &str) {
        let mut r = AccessRecord::new([127, 0, 0, 1].into(), [127, 0, 0, 1].into());
        r.host = host.into();
        log.write(r);
    }

    /// `/dev/null` is the one device taken (it cannot stall); `off` starts
    /// no writer and takes lines without a word.
    #[test]
    fn dev_null_and_off() {
        let log = AccessLog::open(&cfg(std::path::Path::new("/dev/null"))).unwrap();
        line(&log, "nowhere.example");
        log.close();
        let off = AccessLog::open(&cfg(std::path::Path::new("off"))).unwrap();
        assert!(off.thread.lock().unwrap().is_none(), "no writer");
        line(&off, "nowhere.example");
        assert_eq!(off.dropped(), 0);
        assert!(off.reopen(&cfg(std::path::Path::new("off"))).is_ok());
        assert!(off.reopen(&cfg(std::path::Path::new("-"))).is_err());
        off.close();
        assert!(AccessLog::open(&cfg(std::path::Path::new("/dev/zero"))).is_err());
    }

    /// A FIFO in the log's place (with no reader, or one that never reads)
    /// must not park the writer: refused at open and at reopen, and the old
    /// file keeps every line.
    #[test]
    fn a_fifo_is_refused_and_the_old_file_keeps_logging() {
        let dir = tempfile::tempdir().unwrap();
        let fifo = dir.path().join("fifo");
        let made = std::process::Command::new("mkfifo")
            .arg(&fifo)
            .status()
            .unwrap();
        assert!(made.success());
        assert!(AccessLog::open(&cfg(&fifo)).is_err());
        let file = dir.path().join("access.log");
        let log = AccessLog::open(&cfg(&file)).unwrap();
        line(&log, "before.example");
        let started = Instant::now();
        assert!(log.reopen(&cfg(&fifo)).is_err());
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "refused at once"
        );
        line(&log, "after.example");
        log.close();
        let text = std::fs::read_to_string(&file).unwrap();
        assert!(
            text.contains("before.example") && text.contains("after.example"),
            "{text}"
        );
    }
}
