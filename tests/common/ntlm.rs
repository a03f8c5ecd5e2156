//! An NTLM client for tests that need to hold a connection: Samba's own
//! `ntlm_auth --helper-protocol=ntlmssp-client-1` computes the messages.

use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

pub struct NtlmClient {
    _child: Child,
    stdin: ChildStdin,
    stdout: BufReader<ChildStdout>,
}

impl NtlmClient {
    pub fn new(samba: &Path, user: &str, password: &str) -> Self {
        let mut child = Command::new("ntlm_auth")
            .args([
                "--helper-protocol=ntlmssp-client-1",
                &format!("--username={user}"),
                "--domain=ADTEST",
            ])
            .arg(format!("--password={password}"))
            .arg(format!(
                "--configfile={}",
                samba.join("etc/smb.conf").display()
            ))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("ntlm_auth (winbind package)");
        let stdin = child.stdin.take().unwrap();
        let stdout = BufReader::new(child.stdout.take().unwrap());
        NtlmClient {
            _child: child,
            stdin,
            stdout,
        }
    }

    fn ask(&mut self, line: &str) -> String {
        writeln!(self.stdin, "{line}").unwrap();
        self.stdin.flush().unwrap();
        let mut out = String::new();
        self.stdout.read_line(&mut out).unwrap();
        out.trim_end().to_string()
    }

    /// The type 1 message, base64.
    pub fn type1(&mut self) -> String {
        let r = self.ask("YR");
        r.strip_prefix("YR ")
            .unwrap_or_else(|| panic!("client helper: {r}"))
            .to_string()
    }

    /// The type 3 answering `type2` (base64).
    pub fn type3(&mut self, type2: &str) -> String {
        let r = self.ask(&format!("TT {type2}"));
        r.strip_prefix("KK ")
            .or_else(|| r.strip_prefix("AF "))
            .unwrap_or_else(|| panic!("client helper: {r}"))
            .to_string()
    }
}

/// Reads one response head (and a Content-Length body) from a kept-alive connection.
pub async fn read_response(s: &mut TcpStream) -> String {
    let mut buf = Vec::new();
    let mut b = [0u8; 1];
    while !buf.ends_with(b"\r\n\r\n") {
        match tokio::time::timeout(std::time::Duration::from_secs(15), s.read(&mut b)).await {
            Ok(Ok(1)) => buf.push(b[0]),
            _ => return String::from_utf8_lossy(&buf).into_owned(),
        }
    }
    let head = String::from_utf8_lossy(&buf).into_owned();
    let len: usize = head
        .lines()
        .find_map(|l| {
            l.to_ascii_lowercase()
                .strip_prefix("content-length: ")
                .map(|v| v.trim().parse().unwrap())
        })
        .unwrap_or(0);
    let mut body = vec![0u8; len];
    s.read_exact(&mut body).await.unwrap();
    head + &String::from_utf8_lossy(&body)
}

/// The NTLM challenge in a 407.
pub fn challenge_of(resp: &str, scheme: &str) -> String {
    resp.lines()
        .find_map(|l| l.strip_prefix(&format!("proxy-authenticate: {scheme} ")))
        .unwrap_or_else(|| panic!("no {scheme} challenge in {resp}"))
        .trim()
        .to_string()
}

/// Runs the three-message handshake for `request_line` (e.g. `GET url` or
/// `CONNECT host:port`) on `s`; returns the final response.
pub async fn handshake(
    s: &mut TcpStream,
    client: &mut NtlmClient,
    method: &str,
    target: &str,
    extra: &str,
) -> String {
    let t1 = client.type1();
    s.write_all(format!("{method} {target} HTTP/1.1\r\nHost: x\r\n{extra}Proxy-Authorization: NTLM {t1}\r\n\r\n").as_bytes())
        .await
        .unwrap();
    let r = read_response(s).await;
    assert_eq!(super::status_of(&r), 407, "{r}");
    assert!(
        !r.contains("connection: close"),
        "the handshake keeps the connection: {r}"
    );
    let t3 = client.type3(&challenge_of(&r, "NTLM"));
    s.write_all(format!("{method} {target} HTTP/1.1\r\nHost: x\r\n{extra}Proxy-Authorization: NTLM {t3}\r\n\r\n").as_bytes())
        .await
        .unwrap();
    read_response(s).await
}
