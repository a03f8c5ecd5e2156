//! Forwarding absolute-form requests through the real binary to a real origin.

mod common;

use common::*;
use http::{Method, Request};

fn req(method: Method, url: &str, b: OriginBody) -> Request<OriginBody> {
    Request::builder()
        .method(method)
        .uri(url)
        .header("host", "ignored.example")
        .body(b)
        .unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn get_and_post_bodies_of_several_sizes() {
    let origin = Origin::start().await;
    let gh = Gatehouse::start("", "");
    let mut c = proxy_conn(gh.addr()).await;
    for size in [0usize, 1, 1000, 64 * 1024, 3 * 1024 * 1024 + 7] {
        let resp = ready(&mut c)
            .await
            .send_request(req(
                Method::GET,
                &origin.url(&format!("/bytes/{size}")),
                empty(),
            ))
            .await
            .unwrap();
        assert_eq!(resp.status(), 200);
        assert_eq!(resp.headers()["content-length"], size.to_string().as_str());
        assert_eq!(read_all(resp).await.len(), size);

        let payload: Vec<u8> = (0..size).map(|i| (i % 251) as u8).collect();
        let resp = ready(&mut c)
            .await
            .send_request(req(
                Method::POST,
                &origin.url("/echo"),
                body(payload.clone()),
            ))
            .await
            .unwrap();
        assert_eq!(resp.status(), 200);
        assert_eq!(read_all(resp).await, payload, "echo of {size} bytes");
    }
    // Each access line carries the byte counts of its transaction.
    let lines = gh.log_lines(10);
    let post_big = lines
        .iter()
        .rev()
        .find(|l| l["cs-method"] == "POST")
        .unwrap();
    assert_eq!(post_big["cs-bytes"], (3 * 1024 * 1024 + 7).to_string());
    assert_eq!(post_big["sc-bytes"], (3 * 1024 * 1024 + 7).to_string());
    let get_big = lines
        .iter()
        .rev()
        .find(|l| l["cs-method"] == "GET")
        .unwrap();
    assert_eq!(get_big["sc-bytes"], (3 * 1024 * 1024 + 7).to_string());
    assert_eq!(get_big["s-action"], "TCP_MISS");
    assert_eq!(post_big["s-action"], "TCP_NC_MISS");
}

#[tokio::test(flavor = "multi_thread")]
async fn chunked_both_ways() {
    let origin = Origin::start().await;
    let gh = Gatehouse::start("", "");
    // A chunked request body (raw, so the framing is exactly what we say).
    let url = origin.url("/echo");
    let raw = format!(
        "POST {url} HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n\
         5\r\nhello\r\n6;ext=1\r\n world\r\n0\r\n\r\n"
    );
    let text = raw_exchange(gh.addr(), raw.as_bytes(), std::time::Duration::from_secs(5)).await;
    assert_eq!(status_of(&text), 200, "{text}");
    assert!(
        text.to_ascii_lowercase()
            .contains("transfer-encoding: chunked"),
        "{text}"
    );
    assert!(text.contains("hello") && text.contains(" world"), "{text}");
    assert_eq!(origin.last_seen().body_len, 11);
    // A chunked response of 1 MiB streamed to the client.
    let mut c = proxy_conn(gh.addr()).await;
    let resp = ready(&mut c)
        .await
        .send_request(req(Method::GET, &origin.url("/chunked/1048576"), empty()))
        .await
        .unwrap();
    assert!(resp.headers().get("content-length").is_none());
    assert_eq!(read_all(resp).await.len(), 1048576);
}

#[tokio::test(flavor = "multi_thread")]
async fn keep_alive_is_reused_on_both_sides() {
    let origin = Origin::start().await;
    let gh = Gatehouse::start("", "");
    let mut c = proxy_conn(gh.addr()).await;
    for i in 0..20 {
        let resp = ready(&mut c)
            .await
            .send_request(req(
                Method::GET,
                &origin.url(&format!("/bytes/{i}")),
                empty(),
            ))
            .await
            .unwrap();
        assert_eq!(read_all(resp).await.len(), i);
    }
    assert_eq!(origin.requests(), 20);
    assert_eq!(
        origin.connections.load(std::sync::atomic::Ordering::SeqCst),
        1,
        "upstream pool must reuse"
    );
    assert_eq!(gh.log_lines(20).len(), 20);
}

#[tokio::test(flavor = "multi_thread")]
async fn head_204_304_have_no_body_and_keep_the_connection_in_sync() {
    let origin = Origin::start().await;
    let gh = Gatehouse::start("", "");
    let (b1, s204, s304, after) = (
        origin.url("/bytes/100"),
        origin.url("/status/204"),
        origin.url("/status/304"),
        origin.url("/hello"),
    );
    // Pipelined on one connection: any stray body byte would corrupt the next answer.
    let raw = format!(
        "HEAD {b1} HTTP/1.1\r\nHost: x\r\n\r\nGET {s204} HTTP/1.1\r\nHost: x\r\n\r\n\
         GET {s304} HTTP/1.1\r\nHost: x\r\n\r\nGET {after} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    );
    let text = raw_exchange(gh.addr(), raw.as_bytes(), std::time::Duration::from_secs(5)).await;
    let statuses: Vec<&str> = text
        .match_indices("HTTP/1.1 ")
        .map(|(i, _)| &text[i + 9..i + 12])
        .collect();
    assert_eq!(statuses, vec!["200", "204", "304", "200"], "{text}");
    assert!(text.ends_with("hello from origin"), "{text}");
    let head = text.split("HTTP/1.1 204").next().unwrap();
    assert!(
        head.contains("content-length: 100"),
        "HEAD keeps the length: {head}"
    );
    assert!(!head.contains("xxxx"), "HEAD must carry no body");
}

#[tokio::test(flavor = "multi_thread")]
async fn hop_by_hop_headers_stop_here_and_via_is_added() {
    let origin = Origin::start().await;
    let gh = Gatehouse::start("", "");
    let mut c = proxy_conn(gh.addr()).await;
    let r = Request::builder()
        .uri(origin.url("/hello"))
        .header("host", "wrong.example")
        .header("connection", "x-hop")
        .header("x-hop", "secret")
        .header("proxy-connection", "keep-alive")
        .header("proxy-authorization", "Basic dTpw")
        .header("te", "trailers")
        .header("x-end-to-end", "kept")
        .body(empty())
        .unwrap();
    let resp = ready(&mut c).await.send_request(r).await.unwrap();
    assert_eq!(resp.headers()["via"], "1.1 gatehouse");
    assert!(resp.headers().get("x-origin-hop").is_none());
    assert!(resp.headers().get("keep-alive").is_none());
    read_all(resp).await;
    let seen = origin.last_seen();
    for gone in [
        "x-hop",
        "proxy-connection",
        "proxy-authorization",
        "te",
        "connection",
    ] {
        assert!(
            seen.header(gone).is_none(),
            "{gone} reached the origin: {seen:?}"
        );
    }
    assert_eq!(seen.header("x-end-to-end"), Some("kept"));
    assert_eq!(seen.header("via"), Some("1.1 gatehouse"));
    assert_eq!(
        seen.header("host"),
        Some(origin.addr.to_string().as_str()),
        "Host follows the target"
    );
    assert_eq!(seen.uri, "/hello", "origin gets origin-form");
}

#[tokio::test(flavor = "multi_thread")]
async fn userinfo_never_reaches_origin_or_log() {
    let origin = Origin::start().await;
    let gh = Gatehouse::start("", "");
    let url = format!("http://alice:s3cret@{}/hello", origin.addr);
    let raw = format!("GET {url} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
    let text = raw_exchange(gh.addr(), raw.as_bytes(), std::time::Duration::from_secs(5)).await;
    assert_eq!(status_of(&text), 200, "{text}");
    assert_eq!(origin.last_seen().uri, "/hello");
    gh.log_lines(1);
    let log = std::fs::read_to_string(&gh.log_path).unwrap();
    assert!(!log.contains("s3cret") && !log.contains("alice"), "{log}");
}
