//! An NTLM test logon through the proxy's own helper path: Samba's
//! `ntlm_auth --helper-protocol=ntlmssp-client-1` plays the client, the
//! configured helper command (leased from the same pool type the proxy
//! uses) the server, and the domain decides. Used by `gatehouse join
//! --ntlm-test-user` and `gatehouse check --ntlm-test-user`.

use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use gatehouse::auth::ntlm_helper::{HelperPool, Reply};
use gatehouse::auth::settings::NtlmConfig;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};

/// The whole exchange must finish within this.
const LIMIT: Duration = Duration::from_secs(15);

/// Logs `user` (`DOMAIN\user` or `user` of `domain`) on with the first line
/// of `password_file` through `helper`: the account the domain accepted.
pub fn logon(
    helper: &[String],
    domain: &str,
    user: &str,
    password_file: &Path,
) -> Result<String, String> {
    let password = gatehouse::settings::read_secret(password_file).map_err(|e| e.to_string())?;
    let (domain, user) = user.split_once('\\').unwrap_or((domain, user));
    let cfg = NtlmConfig {
        helper: helper.to_vec(),
        max_helpers: 1,
        ..NtlmConfig::default()
    };
    crate::users::runtime().block_on(async {
        tokio::time::timeout(LIMIT, exchange(&cfg, domain, user, &password))
            .await
            .unwrap_or_else(|_| Err(format!("no answer within {LIMIT:?}")))
    })
}

async fn exchange(
    cfg: &NtlmConfig,
    domain: &str,
    user: &str,
    password: &str,
) -> Result<String, String> {
    // The client helper reads the password from stdin ("PW <base64>"): never in argv.
    let configfile = cfg.helper.iter().find(|a| a.starts_with("--configfile="));
    let mut child = tokio::process::Command::new("ntlm_auth")
        .args([
            "--helper-protocol=ntlmssp-client-1",
            &format!("--username={user}"),
        ])
        // No domain given: the helper's smb.conf workgroup.
        .args((!domain.is_empty()).then(|| format!("--domain={domain}")))
        .args(configfile)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| format!("cannot run ntlm_auth (winbind package): {e}"))?;
    let mut stdin = child.stdin.take().ok_or("no stdin")?;
    let mut stdout = BufReader::new(child.stdout.take().ok_or("no stdout")?);
    let mut ask = async |line: String| -> Result<String, String> {
        stdin
            .write_all(format!("{line}\n").as_bytes())
            .await
            .map_err(|e| e.to_string())?;
        stdin.flush().await.map_err(|e| e.to_string())?;
        let mut answer = String::new();
        stdout
            .read_line(&mut answer)
            .await
            .map_err(|e| e.to_string())?;
        Ok(answer.trim_end().to_string())
    };
    let pw = ask(format!("PW {}", STANDARD.encode(password))).await?;
    if pw != "OK" {
        return Err(format!("the client helper refused the password: {pw}"));
    }
    let type1 = ask("YR".into()).await?;
    let type1 = type1
        .strip_prefix("YR ")
        .ok_or(format!("client helper: {type1}"))?;
    let pool = HelperPool::new(cfg);
    let mut lease = pool.lease().await.map_err(|e| e.to_string())?;
    let type2 = match lease
        .ask(&format!("YR {type1}"))
        .await
        .map_err(|e| e.to_string())?
    {
        Reply::Challenge(t) => t,
        other => return Err(format!("the helper did not challenge: {other:?}")),
    };
    let type3 = ask(format!("TT {type2}")).await?;
    let type3 = type3
        .strip_prefix("KK ")
        .or_else(|| type3.strip_prefix("AF "))
        .ok_or(format!("client helper: {type3}"))?;
    match lease
        .ask(&format!("KK {type3}"))
        .await
        .map_err(|e| e.to_string())?
    {
        Reply::Accepted(account) => Ok(account.trim().to_string()),
        Reply::Refused(why) => Err(format!("the domain refused {domain}\\{user}: {why}")),
        Reply::Challenge(_) => Err("the helper challenged twice".into()),
    }
}
