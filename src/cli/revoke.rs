//! `gatehouse revoke --user NAME`: asks the running proxy, on its admin
//! listener (which must be on loopback), to drop the user's cached
//! credentials and close their open tunnels.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::ExitCode;
use std::time::Duration;

use gatehouse::config::Config;

/// Calls `POST /revoke?user=NAME` on the configured admin listener.
pub fn revoke(config: &Config, user: &str) -> ExitCode {
    let Some(addr) = config.admin.address else {
        eprintln!("gatehouse revoke: no [admin] address in the config: nothing to ask");
        return ExitCode::from(2);
    };
    if !addr.ip().is_loopback() {
        eprintln!("gatehouse revoke: admin.address {addr} is not loopback; the proxy answers revoke only there");
        return ExitCode::from(2);
    }
    let query: String = url::form_urlencoded::byte_serialize(user.as_bytes()).collect();
    let request = format!(
        "POST /revoke?user={query} HTTP/1.1\r\nhost: {addr}\r\ncontent-length: 0\r\nconnection: close\r\n\r\n"
    );
    let answer = (|| -> std::io::Result<String> {
        let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(5))?;
        s.set_read_timeout(Some(Duration::from_secs(10)))?;
        s.write_all(request.as_bytes())?;
        let mut out = Vec::new();
        s.read_to_end(&mut out)?;
        Ok(String::from_utf8_lossy(&out).into_owned())
    })();
    let answer = match answer {
        Ok(a) => a,
        Err(e) => {
            eprintln!("gatehouse revoke: admin listener {addr}: {e}");
            return ExitCode::FAILURE;
        }
    };
    let (head, body) = answer.split_once("\r\n\r\n").unwrap_or((&answer, ""));
    let ok = head.split(' ').nth(1) == Some("200");
    if !ok {
        eprintln!(
            "gatehouse revoke: {}: {}",
            head.lines().next().unwrap_or(""),
            body.trim()
        );
        return ExitCode::FAILURE;
    }
    let closed = serde_json::from_str::<serde_json::Value>(body.trim())
        .ok()
        .and_then(|v| v["tunnels_closed"].as_u64());
    match closed {
        Some(n) => {
            println!("revoked {user}: {n} open tunnel(s) closed");
            ExitCode::SUCCESS
        }
        None => {
            eprintln!("gatehouse revoke: unexpected answer: {}", body.trim());
            ExitCode::FAILURE
        }
    }
}
