//! `gatehouse explain` and the proxy take their decisions with the same code:
//! a table of requests goes through both — the real binary serving real
//! sockets, and the `explain` command on the same config — and for each the
//! access log's `s-action` and `x-rule` must be what `explain` printed.

mod common;

use std::collections::HashMap;
use std::time::Duration;

use common::*;

const WAIT: Duration = Duration::from_secs(5);

const POLICY: &str = r#"
default = "allow"

[[layers]]
name = "who"
kind = "authentication"
[[layers.rules]]
name = "public-without-login"
host = ["public.test"]
action = "no-authenticate"

[[layers]]
name = "sites"
[[layers.rules]]
name = "blocked-sites"
host = [".blocked.test"]
action = "deny"
reason = "blocked_site"
[[layers.rules]]
name = "skype-tunnel"
group = ["Skype Users"]
method = ["CONNECT"]
action = "tunnel"

[[layers]]
name = "tags"
[[layers.rules]]
name = "tag-public"
host = ["public.test"]
action = "tag"
tag = "public"
"#;

/// One row: who asks, how, and what the client sends after a `200` CONNECT.
struct Row {
    user: Option<&'static str>,
    method: &'static str,
    host: &'static str,
    port: u16,
}

fn request(row: &Row) -> String {
    let auth = row.user.map_or(String::new(), |u| {
        format!("Proxy-Authorization: {}\r\n", basic(&format!("{u}:{u}-pw")))
    });
    let (h, p) = (row.host, row.port);
    if row.method == "CONNECT" {
        format!("CONNECT {h}:{p} HTTP/1.1\r\nHost: {h}:{p}\r\n{auth}\r\n")
    } else {
        format!("GET http://{h}:{p}/ HTTP/1.1\r\nHost: {h}:{p}\r\n{auth}Connection: close\r\n\r\n")
    }
}

/// `explain`'s answer as `field: value` pairs (the first of each).
fn explain(gh: &Gatehouse, row: &Row, protocol: Option<&str>) -> HashMap<String, String> {
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_gatehouse"));
    cmd.args(["explain", "--config"]).arg(&gh.config_path);
    cmd.args(["--method", row.method]);
    let url = if row.method == "CONNECT" {
        format!("{}:{}", row.host, row.port)
    } else {
        format!("http://{}:{}/", row.host, row.port)
    };
    cmd.args(["--url", &url]);
    if let Some(u) = row.user {
        cmd.args(["--user", u]);
    }
    if let Some(p) = protocol {
        cmd.args(["--protocol", p]);
    }
    let out = cmd.output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut fields = HashMap::new();
    for line in text.lines() {
        if let Some((k, v)) = line.split_once(':') {
            fields
                .entry(k.trim().to_string())
                .or_insert_with(|| v.trim().to_string());
        }
    }
    fields.insert("text".into(), text);
    fields
}

#[tokio::test(flavor = "multi_thread")]
async fn explain_and_the_proxy_decide_a_table_of_requests_alike() {
    let origin = Origin::start().await;
    let port = origin.addr.port();
    let dir = tempfile::tempdir().unwrap();
    let policy = dir.path().join("policy.toml");
    std::fs::write(&policy, POLICY).unwrap();
    let extra = format!(
        "{}[resolver]\nsystem = false\nhosts = {{ \"public.test\" = [\"127.0.0.1\"], \
         \"www.blocked.test\" = [\"127.0.0.1\"], \"site.test\" = [\"127.0.0.1\"], \
         \"metadata.test\" = [\"169.254.169.254\"] }}\n\
         [tunnel]\nallowed_ports = [{port}]\n[detection]\nenabled = true\n[policy]\nfile = \"{}\"\n",
        local_realm(dir.path()),
        policy.display()
    );
    let gh = Gatehouse::start("", &extra);
    let row = |user, method, host, port| Row {
        user,
        method,
        host,
        port,
    };
    let rows = [
        // policy exempts it from authentication, forwards it, tags it
        row(None, "GET", "public.test", port),
        // authentication required, none given: 407
        row(None, "GET", "site.test", port),
        row(Some("bob"), "GET", "site.test", port),
        // a rule's deny, with its own reason
        row(Some("bob"), "GET", "www.blocked.test", port),
        // the built-in refusal of cloud-metadata addresses
        row(Some("bob"), "GET", "metadata.test", port),
        // the built-in CONNECT port check, before authentication
        row(None, "CONNECT", "site.test", 25),
        // the allowed group's raw tunnel
        row(Some("alice"), "CONNECT", "site.test", port),
    ];
    for (i, r) in rows.iter().enumerate() {
        let answer = raw_exchange(gh.addr(), request(r).as_bytes(), WAIT).await;
        let lines = gh.log_lines(i + 1);
        let log = &lines[i];
        let said = explain(&gh, r, None);
        let text = &said["text"];
        // A forward's MISS or NC_MISS depends on the response: explain names both.
        let actions: Vec<&str> = said["s-action"].split(" or ").collect();
        assert!(
            actions.contains(&log["s-action"].as_str()),
            "{log:?}\n{}\n{text}\n{answer}",
            request(r)
        );
        assert_eq!(log["x-rule"], said["x-rule"], "{}\n{text}", request(r));
        let status = status_of(&answer);
        let planned = &said["plan"];
        match planned.as_str() {
            "refuse" => assert!(
                text.contains(&format!("DENY {status} ")),
                "{text}\n{answer}"
            ),
            "authenticate" => assert_eq!(status, 407, "{answer}"),
            _ => assert_eq!(status, 200, "{text}\n{answer}"),
        }
    }
    // Detection: bob's CONNECT is detected; what he sends is not TLS and no
    // rule allows it, which `explain --protocol unknown` must also say.
    let r = row(Some("bob"), "CONNECT", "site.test", port);
    let said = explain(&gh, &r, Some("unknown"));
    assert_eq!(said["plan"], "detect", "{}", said["text"]);
    let mut s = tokio::net::TcpStream::connect(gh.addr()).await.unwrap();
    use tokio::io::AsyncWriteExt;
    s.write_all(request(&r).as_bytes()).await.unwrap();
    s.write_all(b"\x00\x01 not a known protocol, long enough to classify\r\n")
        .await
        .unwrap();
    let answer = read_until_close(&mut s, WAIT).await;
    assert_eq!(status_of(&answer), 200, "{answer}");
    let lines = gh.log_lines(rows.len() + 1);
    let log = &lines[rows.len()];
    assert_eq!(log["s-action"], "TCP_DENIED", "{log:?}");
    assert!(
        said["text"].contains(&format!(
            "after detection (unknown): DENY {}",
            log["x-exception-id"]
        )),
        "{}\n{log:?}",
        said["text"]
    );
}
