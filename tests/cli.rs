//! The command line as an administrator uses it, and curl as a real client.

mod common;

use std::process::Command;

use common::*;

fn gatehouse() -> Command {
    Command::new(env!("CARGO_BIN_EXE_gatehouse"))
}

#[test]
fn check_accepts_the_shipped_default_and_names_bad_keys() {
    let root = env!("CARGO_MANIFEST_DIR");
    // The shipped configs run as they are (relative paths from the repository root).
    for shipped in ["config/gatehouse.toml", "config/skype-control.toml"] {
        let ok = gatehouse()
            .current_dir(root)
            .args(["check", "--config", shipped])
            .output()
            .unwrap();
        assert!(
            ok.status.success(),
            "{shipped}: {}",
            String::from_utf8_lossy(&ok.stderr)
        );
    }

    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("bad.toml");
    std::fs::write(&bad, "[tunnel]\nallowed_portz = [443]\n").unwrap();
    let out = gatehouse()
        .args(["check", "--config"])
        .arg(&bad)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("allowed_portz"), "{err}");

    let out = gatehouse()
        .args(["check", "--config", "/nonexistent/gatehouse.toml"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
}

#[test]
fn environment_overrides_are_validated_too() {
    let out = gatehouse()
        .args(["check"])
        .env("GATEHOUSE_LISTENER__MAX_CONNECTIONS", "0")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("listener.max_connections"));
    let out = gatehouse()
        .args(["check"])
        .env("GATEHOUSE_TUNNEL__IDLE_TIMEOUT", "90s")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn curl_through_the_proxy() {
    let origin = Origin::start().await;
    let echo = echo_server().await;
    let gh = Gatehouse::start(
        "",
        &format!("[tunnel]\nallowed_ports = [{}]\n", echo.port()),
    );
    let proxy = format!("http://{}", gh.addr());
    let url = origin.url("/bytes/2048");
    let out = tokio::task::spawn_blocking(move || {
        Command::new("curl")
            .args([
                "-sS",
                "-x",
                &proxy,
                "-o",
                "/dev/null",
                "-w",
                "%{http_code} %{size_download}",
                &url,
            ])
            .output()
    })
    .await
    .unwrap()
    .expect("curl is installed by the test command");
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "200 2048",
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    // curl -p: CONNECT, then plain bytes; the echo server returns curl's own request.
    let proxy = format!("http://{}", gh.addr());
    let target = format!("http://{echo}/via-tunnel");
    let out = tokio::task::spawn_blocking(move || {
        Command::new("curl")
            .args([
                "-sS",
                "-p",
                "-x",
                &proxy,
                "--max-time",
                "5",
                "--http0.9",
                &target,
            ])
            .output()
    })
    .await
    .unwrap()
    .unwrap();
    let body = String::from_utf8_lossy(&out.stdout);
    assert!(
        body.starts_with("GET /via-tunnel HTTP/1.1"),
        "{body} {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let lines = gh.log_lines(2);
    assert_eq!(lines[0]["cs(User-Agent)"].split('/').next(), Some("curl"));
    assert!(lines.iter().any(|l| l["s-action"] == "TCP_TUNNELED"));
}

#[test]
fn only_section_key_environment_variables_are_config() {
    let root = env!("CARGO_MANIFEST_DIR");
    let check = |vars: &[(&str, &str)]| {
        let mut cmd = gatehouse();
        cmd.current_dir(root)
            .args(["check", "--config", "config/gatehouse.toml"]);
        for (k, v) in vars {
            cmd.env(k, v);
        }
        let out = cmd.output().unwrap();
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    // Another tool's variable with our prefix is none of our business.
    let (ok, err) = check(&[("GATEHOUSE_BIN", "/opt/gatehouse/bin")]);
    assert!(ok, "{err}");
    // SECTION__KEY is an override, checked like the file.
    let (ok, err) = check(&[("GATEHOUSE_TUNNEL__ALLOWED_PORTZ", "[443]")]);
    assert!(!ok && err.contains("allowed_portz"), "{err}");
    let (ok, err) = check(&[("GATEHOUSE_LOG__LEVEL", "debug")]);
    assert!(ok, "{err}");
}

#[test]
fn diagnostics_to_a_pipe_carry_no_colour_codes() {
    let gh = Gatehouse::start("", "");
    gh.wait_stderr("listening", 1);
    let err = gh.stderr();
    assert!(!err.contains('\u{1b}'), "{err:?}");
}

#[test]
fn diagnostics_can_be_json_lines() {
    let gh = Gatehouse::start("", "[log]\nformat = \"json\"\n");
    gh.wait_stderr("listening", 1);
    let err = gh.stderr();
    let lines: Vec<&str> = err.lines().filter(|l| !l.trim().is_empty()).collect();
    assert!(!lines.is_empty());
    for line in lines {
        let v: serde_json::Value =
            serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line}"));
        assert!(v["level"].is_string() && v["fields"].is_object(), "{line}");
    }
}

#[test]
fn check_warns_of_detection_rules_that_detection_off_makes_dead() {
    let dir = tempfile::tempdir().unwrap();
    let policy = dir.path().join("policy.toml");
    std::fs::write(
        &policy,
        "[[layers]]\nname = \"l\"\n[[layers.rules]]\nname = \"no-bad-sni\"\nsni = [\".bad.test\"]\naction = \"deny\"\n",
    )
    .unwrap();
    let check = |detection: bool| {
        let cfg = dir.path().join("gatehouse.toml");
        std::fs::write(
            &cfg,
            format!(
                "[auth]\nrequired = false\nrealms = []\n[detection]\nenabled = {detection}\n[policy]\nfile = \"{}\"\n",
                policy.display()
            ),
        )
        .unwrap();
        let out = gatehouse()
            .args(["check", "--config"])
            .arg(&cfg)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let off = check(false);
    assert!(
        off.contains("WARNING") && off.contains("no-bad-sni"),
        "{off}"
    );
    assert!(!check(true).contains("WARNING"));
}
