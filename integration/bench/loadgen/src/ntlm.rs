//! NTLM handshakes through a proxy, each on a new connection, as a browser
//! makes one per new connection to an NTLM proxy: GET with a type 1 → 407
//! carrying the proxy's type 2 → GET with the type 3 on the same connection
//! (`Connection: close`) → 200, then the proxy closes.
//!
//! The messages are made live (a type 3 answers the challenge of its own
//! handshake, so none can be made ahead) by MIT GSS-API with Debian's
//! gss-ntlmssp mechanism (OID 1.3.6.1.4.1.311.2.2.10): one credential per
//! user from its password (the NT hash is computed once, there), a new
//! context per handshake. gss-ntlmssp sends NTLMv2 only (its default LM
//! compatibility level 3), which is what a proxy refusing NTLMv1 accepts.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use libgssapi::context::{ClientCtx, CtxFlags};
use libgssapi::credential::{Cred, CredUsage};
use libgssapi::name::Name;
use libgssapi::oid::{Oid, OidSet, GSS_NT_HOSTBASED_SERVICE, GSS_NT_USER_NAME};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::Res;

/// 1.3.6.1.4.1.311.2.2.10, the NTLMSSP mechanism (gss-ntlmssp).
static GSS_MECH_NTLMSSP: Oid<'static> =
    Oid::from_slice(b"\x2b\x06\x01\x04\x01\x82\x37\x02\x02\x0a");

/// How a handshake ended.
enum Outcome {
    /// 200 after the type 3.
    Done,
    /// A 407 that carried no NTLM challenge (to the type 1), or a 407 to the
    /// type 3 (the domain or the proxy refused the response).
    Refused,
    /// 503: no helper came free in time.
    Busy,
    /// Anything else: another status, a closed connection, a timeout, a GSS error.
    Other(String),
}

/// The counters of a run, shared by its clients.
#[derive(Default)]
struct Tally {
    done: AtomicU64,
    refused: AtomicU64,
    busy: AtomicU64,
    other: AtomicU64,
    first_error: Mutex<Option<String>>,
}

impl Tally {
    fn add(&self, o: Outcome) {
        let (counter, why) = match o {
            Outcome::Done => (&self.done, None),
            Outcome::Refused => (
                &self.refused,
                Some("407 that was not a challenge".to_string()),
            ),
            Outcome::Busy => (&self.busy, Some("503".to_string())),
            Outcome::Other(e) => (&self.other, Some(e)),
        };
        counter.fetch_add(1, Ordering::Relaxed);
        if let Some(why) = why {
            self.first_error.lock().unwrap().get_or_insert(why);
        }
    }

    fn print(&self, secs: f64) {
        let n = self.done.load(Ordering::Relaxed);
        println!(
            "rate {:.1} done {} refused {} busy {} other {} seconds {:.3}",
            n as f64 / secs,
            n,
            self.refused.load(Ordering::Relaxed),
            self.busy.load(Ordering::Relaxed),
            self.other.load(Ordering::Relaxed),
            secs,
        );
        if let Some(e) = self.first_error.lock().unwrap().as_ref() {
            eprintln!("first error: {e}");
        }
    }
}

/// Credentials for `DOMAIN\<prefix><n>` (password `<prefix><n>-Pw1`), n < count.
fn credentials(domain: &str, prefix: &str, count: usize) -> Res<Vec<Cred>> {
    let mechs = OidSet::singleton(GSS_MECH_NTLMSSP)?;
    (0..count)
        .map(|n| {
            let user = format!("{prefix}{n:03}");
            let name = Name::new(
                format!("{domain}\\{user}").as_bytes(),
                Some(GSS_NT_USER_NAME),
            )?;
            let cred = Cred::acquire_with_password(
                Some(&name),
                &format!("{user}-Pw1"),
                None,
                CredUsage::Initiate,
                Some(&mechs),
            )?;
            Ok(cred)
        })
        .collect()
}

/// What every client of a run shares: the users' credentials taken in turn,
/// the proxy's name, the tally, and the window.
struct Clients {
    creds: Arc<Vec<Cred>>,
    target: Arc<Name>,
    next: Arc<AtomicUsize>,
    tally: Arc<Tally>,
    started: Instant,
    deadline: Instant,
}

impl Clients {
    fn new(domain: &str, prefix: &str, users: usize, seconds: u64) -> Res<Self> {
        let creds = Arc::new(credentials(domain, prefix, users)?);
        let target = Name::new(b"HTTP@proxy.example.test", Some(GSS_NT_HOSTBASED_SERVICE))?;
        // The window starts once the credentials are made, as it always did.
        let started = Instant::now();
        Ok(Self {
            creds,
            target: Arc::new(target),
            next: Arc::new(AtomicUsize::new(0)),
            tally: Arc::new(Tally::default()),
            started,
            deadline: started + Duration::from_secs(seconds),
        })
    }
}

pub async fn run(
    proxy: SocketAddr,
    url: String,
    domain: String,
    prefix: String,
    users: usize,
    clients: usize,
    seconds: u64,
) -> Res<()> {
    let Clients {
        creds,
        target,
        next,
        tally,
        started,
        deadline,
    } = Clients::new(&domain, &prefix, users, seconds)?;
    let mut tasks = Vec::new();
    for _ in 0..clients {
        let (creds, target, next, tally, url) = (
            creds.clone(),
            target.clone(),
            next.clone(),
            tally.clone(),
            url.clone(),
        );
        tasks.push(tokio::spawn(async move {
            let mut buf = Vec::with_capacity(4096);
            while Instant::now() < deadline {
                let cred = &creds[next.fetch_add(1, Ordering::Relaxed) % creds.len()];
                let outcome = match target.duplicate() {
                    Ok(t) => handshake(proxy, &url, cred.clone(), t, &mut buf).await,
                    Err(e) => Outcome::Other(e.to_string()),
                };
                tally.add(outcome);
            }
        }));
    }
    for t in tasks {
        t.await?;
    }
    tally.print(started.elapsed().as_secs_f64());
    Ok(())
}

/// The ceiling no proxy can pass: the same handshakes with no proxy, `helpers`
/// processes of `command` (Samba's `ntlm_auth --helper-protocol=squid-2.5-ntlmssp ...`) driven
/// directly (`YR type1` → `TT type2` → `KK type3` → `AF user`), one handshake at a time
/// each, as a proxy's helper pool drives them. Prints what `run` prints.
pub async fn direct(
    command: Vec<String>,
    domain: String,
    prefix: String,
    users: usize,
    helpers: usize,
    seconds: u64,
) -> Res<()> {
    let Clients {
        creds,
        target,
        next,
        tally,
        started,
        deadline,
    } = Clients::new(&domain, &prefix, users, seconds)?;
    let mut tasks = Vec::new();
    for _ in 0..helpers {
        let (prog, args) = command.split_first().ok_or("no helper command")?;
        let mut child = tokio::process::Command::new(prog)
            .args(args)
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .kill_on_drop(true)
            .spawn()?;
        let mut stdin = child.stdin.take().ok_or("no stdin")?;
        let mut stdout = tokio::io::BufReader::new(child.stdout.take().ok_or("no stdout")?);
        let (creds, target, next, tally) =
            (creds.clone(), target.clone(), next.clone(), tally.clone());
        tasks.push(tokio::spawn(async move {
            let _child = child;
            while Instant::now() < deadline {
                let cred = creds[next.fetch_add(1, Ordering::Relaxed) % creds.len()].clone();
                let outcome = match target.duplicate() {
                    Ok(t) => helper_handshake(&mut stdin, &mut stdout, cred, t).await,
                    Err(e) => Err(e.to_string()),
                };
                match outcome {
                    Ok(true) => tally.add(Outcome::Done),
                    Ok(false) => tally.add(Outcome::Refused),
                    Err(e) => {
                        tally.add(Outcome::Other(e));
                        break;
                    }
                }
            }
        }));
    }
    for t in tasks {
        t.await?;
    }
    tally.print(started.elapsed().as_secs_f64());
    Ok(())
}

/// One handshake with a helper: Ok(true) when it says `AF`, Ok(false) for `NA`.
async fn helper_handshake(
    stdin: &mut tokio::process::ChildStdin,
    stdout: &mut tokio::io::BufReader<tokio::process::ChildStdout>,
    cred: Cred,
    target: Name,
) -> Result<bool, String> {
    let mut ctx = ClientCtx::new(
        Some(cred),
        target,
        CtxFlags::empty(),
        Some(GSS_MECH_NTLMSSP),
    );
    let type1 = ctx
        .step(None, None)
        .map_err(|e| e.to_string())?
        .ok_or("no type 1")?;
    let answer = ask_helper(stdin, stdout, format!("YR {}\n", STANDARD.encode(&*type1))).await?;
    let type2 = answer
        .strip_prefix("TT ")
        .ok_or(format!("helper: {answer}"))?;
    let type2 = STANDARD.decode(type2).map_err(|e| e.to_string())?;
    let type3 = ctx
        .step(Some(&type2), None)
        .map_err(|e| e.to_string())?
        .ok_or("no type 3")?;
    let answer = ask_helper(stdin, stdout, format!("KK {}\n", STANDARD.encode(&*type3))).await?;
    match answer.split_once(' ').map_or(answer.as_str(), |(c, _)| c) {
        "AF" => Ok(true),
        "NA" => Ok(false),
        _ => Err(format!("helper: {answer}")),
    }
}

/// One line to a helper, one line back.
async fn ask_helper(
    stdin: &mut tokio::process::ChildStdin,
    stdout: &mut tokio::io::BufReader<tokio::process::ChildStdout>,
    request: String,
) -> Result<String, String> {
    use tokio::io::AsyncBufReadExt;
    stdin
        .write_all(request.as_bytes())
        .await
        .map_err(|e| e.to_string())?;
    let mut line = String::new();
    stdout
        .read_line(&mut line)
        .await
        .map_err(|e| e.to_string())?;
    Ok(line.trim_end().to_string())
}

/// One handshake on a new connection.
async fn handshake(
    proxy: SocketAddr,
    url: &str,
    cred: Cred,
    target: Name,
    buf: &mut Vec<u8>,
) -> Outcome {
    let mut ctx = ClientCtx::new(
        Some(cred),
        target,
        CtxFlags::empty(),
        Some(GSS_MECH_NTLMSSP),
    );
    let type1 = match ctx.step(None, None) {
        Ok(Some(t)) => STANDARD.encode(&*t),
        Ok(None) => return Outcome::Other("GSS made no type 1".into()),
        Err(e) => return Outcome::Other(format!("type 1: {e}")),
    };
    let mut s = match TcpStream::connect(proxy).await {
        Ok(s) => s,
        Err(e) => return Outcome::Other(format!("connect: {e}")),
    };
    let _ = s.set_nodelay(true);
    let req =
        format!("GET {url} HTTP/1.1\r\nHost: bench\r\nProxy-Authorization: NTLM {type1}\r\n\r\n");
    let (status, challenge) = match ask(&mut s, &req, buf).await {
        Ok(r) => r,
        Err(e) => return Outcome::Other(format!("type 1 exchange: {e}")),
    };
    let type2 = match (status, challenge) {
        (407, Some(c)) => c,
        (407, None) => return Outcome::Refused,
        (503, _) => return Outcome::Busy,
        (s, _) => return Outcome::Other(format!("status {s} to the type 1")),
    };
    let type3 = match STANDARD
        .decode(type2.trim())
        .map_err(|e| e.to_string())
        .and_then(|t2| ctx.step(Some(&t2), None).map_err(|e| e.to_string()))
    {
        Ok(Some(t)) => STANDARD.encode(&*t),
        Ok(None) => return Outcome::Other("GSS made no type 3".into()),
        Err(e) => return Outcome::Other(format!("type 3: {e}")),
    };
    let req = format!(
        "GET {url} HTTP/1.1\r\nHost: bench\r\nProxy-Authorization: NTLM {type3}\r\nConnection: close\r\n\r\n"
    );
    let r = ask(&mut s, &req, buf).await;
    // Let the proxy close first (Connection: close): no TIME_WAIT pile-up here.
    let mut rest = [0u8; 1024];
    while let Ok(Ok(n)) = tokio::time::timeout(Duration::from_secs(5), s.read(&mut rest)).await {
        if n == 0 {
            break;
        }
    }
    match r {
        Ok((200, _)) => Outcome::Done,
        Ok((407, _)) => Outcome::Refused,
        Ok((503, _)) => Outcome::Busy,
        Ok((s, _)) => Outcome::Other(format!("status {s} to the type 3")),
        Err(e) => Outcome::Other(format!("type 3 exchange: {e}")),
    }
}

/// One request and its response (within 30 s): the status and the NTLM
/// challenge in `Proxy-Authenticate`, if any; the body is read and dropped.
async fn ask(s: &mut TcpStream, req: &str, buf: &mut Vec<u8>) -> Res<(u16, Option<String>)> {
    tokio::time::timeout(Duration::from_secs(30), async {
        s.write_all(req.as_bytes()).await?;
        buf.clear();
        let mut chunk = [0u8; 4096];
        loop {
            let n = s.read(&mut chunk).await?;
            if n == 0 {
                return Err("closed".into());
            }
            buf.extend_from_slice(&chunk[..n]);
            let mut headers = [httparse::EMPTY_HEADER; 32];
            let mut resp = httparse::Response::new(&mut headers);
            if let httparse::Status::Complete(head) = resp.parse(buf)? {
                let mut len = 0usize;
                let mut challenge = None;
                for h in resp.headers.iter() {
                    if h.name.eq_ignore_ascii_case("content-length") {
                        len = std::str::from_utf8(h.value)?.trim().parse()?;
                    } else if h.name.eq_ignore_ascii_case("proxy-authenticate") {
                        let v = std::str::from_utf8(h.value)?;
                        if let Some(c) = v.strip_prefix("NTLM ") {
                            challenge = Some(c.to_string());
                        }
                    }
                }
                let status = resp.code.unwrap_or(0);
                let mut have = buf.len() - head;
                while have < len {
                    let n = s.read(&mut chunk).await?;
                    if n == 0 {
                        return Err("closed in body".into());
                    }
                    have += n;
                }
                return Ok((status, challenge));
            }
            if buf.len() > 64 * 1024 {
                return Err("head too long".into());
            }
        }
    })
    .await
    .map_err(|_| -> Box<dyn std::error::Error + Send + Sync> { "timed out".into() })?
}
