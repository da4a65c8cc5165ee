//! Who may call the API, against a real server on loopback: cross-site requests (Origin, Referer, form bodies, WebSocket upgrades), DNS rebinding (Host), credentials, and session URLs that another job cannot take over.

mod common;
use common::JobIdOf;

use common::{start, upload_example, upload_example_multipart, wait_finished};
use futures_util::StreamExt;
use serde_json::Value;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::Message;

async fn error_of(response: reqwest::Response) -> (u16, String) {
    let status = response.status().as_u16();
    let v: Value = response.json().await.unwrap();
    (status, v["error"]["code"].as_str().unwrap_or_default().to_string())
}

/// A WebSocket handshake to `path` with `headers`: the first message, or the error.
async fn ws_first(server: &common::TestServer, path: &str, headers: &[(&str, &str)]) -> Result<String, String> {
    let mut req = server.ws_url(path).into_client_request().unwrap();
    for (k, v) in headers {
        let name = tokio_tungstenite::tungstenite::http::HeaderName::from_bytes(k.as_bytes()).unwrap();
        req.headers_mut().insert(name, v.parse().unwrap());
    }
    let (mut ws, _) = tokio_tungstenite::connect_async(req).await.map_err(|e| e.to_string())?;
    match ws.next().await {
        Some(Ok(Message::Text(text))) => Ok(text.to_string()),
        other => Err(format!("{other:?}")),
    }
}

fn capture_form() -> reqwest::multipart::Form {
    let part = reqwest::multipart::Part::bytes(std::fs::read(common::example()).unwrap()).file_name("call.pcap");
    reqwest::multipart::Form::new().part("file", part)
}

#[tokio::test]
async fn a_cross_site_page_can_neither_upload_cancel_delete_nor_read_events() {
    let server = start(|_| {}).await;
    let client = reqwest::Client::new();
    let own = format!("http://{}", server.addr);
    let upload = || client.post(server.url("/api/v1/upload")).multipart(capture_form());

    // What a page on another site's form POST sends: its Origin (or only a Referer).
    let evil = upload().header("origin", "http://evil.example").send().await.unwrap();
    assert_eq!(error_of(evil).await, (403, "origin_not_allowed".into()));
    let referred = upload().header("referer", "http://evil.example/page.html").send().await.unwrap();
    assert_eq!(error_of(referred).await, (403, "origin_not_allowed".into()));
    let opaque = upload().header("origin", "null").send().await.unwrap();
    assert_eq!(error_of(opaque).await, (403, "origin_not_allowed".into()), "a sandboxed frame");
    assert_eq!(server.uploads(), Vec::<String>::new(), "no file begun");
    assert_eq!(server.get_json(&client, "/api/v1/jobs").await["jobs"], serde_json::json!([]), "no job");

    // curl -F (no Origin, no Referer) and a page of the server's own origin still upload.
    let job = upload_example_multipart(&client, &server).await;
    let same = upload().header("origin", &own).send().await.unwrap();
    assert_eq!(same.status(), 201);
    let second: Value = same.json().await.unwrap();
    wait_finished(&client, &server, job).await;

    let cancel = |origin: &str| {
        client.post(server.url(&format!("/api/v1/jobs/{job}/cancel"))).header("origin", origin.to_string()).send()
    };
    assert_eq!(error_of(cancel("http://evil.example").await.unwrap()).await, (403, "origin_not_allowed".into()));
    assert_eq!(error_of(cancel(&own).await.unwrap()).await, (409, "conflict".into()), "allowed: the job is over");
    // A form's body types are refused where a form has no business, even without an Origin.
    let form = client
        .post(server.url(&format!("/api/v1/jobs/{job}/cancel")))
        .header("content-type", "text/plain")
        .body("x=1")
        .send()
        .await
        .unwrap();
    assert_eq!(error_of(form).await, (415, "unsupported_media_type".into()));
    let delete = client
        .delete(server.url(&format!("/api/v1/jobs/{job}")))
        .header("origin", "http://evil.example")
        .send()
        .await
        .unwrap();
    assert_eq!(error_of(delete).await, (403, "origin_not_allowed".into()));
    assert_eq!(server.get_json(&client, &format!("/api/v1/jobs/{job}/status")).await["status"], "completed");

    // The WebSocket handshake of a page on another site carries its Origin.
    let refused = ws_first(&server, "/api/v1/ws", &[("origin", "http://evil.example")]).await.unwrap_err();
    assert!(refused.contains("403"), "{refused}");
    let refused = ws_first(&server, &format!("/api/v1/jobs/{job}/ws"), &[("origin", "http://evil.example")]).await;
    assert!(refused.unwrap_err().contains("403"));
    assert!(ws_first(&server, "/api/v1/ws", &[("origin", &own)]).await.unwrap().contains("full_state"));
    assert!(ws_first(&server, "/api/v1/ws", &[]).await.unwrap().contains("full_state"), "not a browser");
    wait_finished(&client, &server, second.job_id()).await;
    server.shutdown().await;

    // A configured origin (a UI served elsewhere) is allowed; others still are not.
    let server = start(|s| s.server.allowed_origins = vec!["https://ui.example".into()]).await;
    let ui = ws_first(&server, "/api/v1/ws", &[("origin", "https://ui.example")]).await;
    assert!(ui.unwrap().contains("full_state"));
    let other = ws_first(&server, "/api/v1/ws", &[("origin", "http://localhost:1")]).await;
    assert!(other.unwrap_err().contains("403"));
    server.shutdown().await;
}

#[tokio::test]
async fn a_dns_rebinding_host_is_refused_without_auth() {
    let server = start(|_| {}).await;
    let client = reqwest::Client::new();
    let port = server.addr.port();
    let jobs = |host: String| client.get(server.url("/api/v1/jobs")).header("host", host).send();
    // evil.example re-pointed at 127.0.0.1: same-origin for the browser, but not our name.
    assert_eq!(error_of(jobs(format!("evil.example:{port}")).await.unwrap()).await, (403, "host_not_allowed".into()));
    assert_eq!(error_of(jobs("evil.example".into()).await.unwrap()).await, (403, "host_not_allowed".into()));
    for host in [format!("localhost:{port}"), format!("127.0.0.1:{port}"), format!("LocalHost:{port}")] {
        assert_eq!(jobs(host.clone()).await.unwrap().status(), 200, "{host}");
    }
    server.shutdown().await;

    // Behind a proxy that passes its public name on: that name, with any port.
    let server = start(|s| s.server.allowed_hosts = vec!["callflow.example".into()]).await;
    let jobs = |host: &str| client.get(server.url("/api/v1/jobs")).header("host", host.to_string()).send();
    assert_eq!(jobs("callflow.example").await.unwrap().status(), 200);
    assert_eq!(jobs("callflow.example:8443").await.unwrap().status(), 200);
    assert_eq!(error_of(jobs("evil.example").await.unwrap()).await, (403, "host_not_allowed".into()));
    server.shutdown().await;

    // With authentication the attacker has no credential to send, and any name is served.
    let server = start(|s| {
        s.auth.enabled = true;
        s.auth.api_keys = vec!["k3y-0123456789abcdef".into()];
    })
    .await;
    let response =
        client.get(server.url("/api/v1/jobs")).header("host", "evil.example").bearer_auth("k3y-0123456789abcdef");
    assert_eq!(response.send().await.unwrap().status(), 200);
    server.shutdown().await;
}

/// Session ids were the capture's alone: a second upload of the same capture had the same
/// ids, and `/api/v1/sessions/{id}` no longer named one session. They are scoped by the
/// job's UUID now.
#[tokio::test]
async fn a_second_upload_of_the_same_capture_gets_session_ids_of_its_own() {
    let server = start(|_| {}).await;
    let client = reqwest::Client::new();
    let messages = |v: &Value| v["messages"].as_array().map_or(0, Vec::len);
    let mut seen: Vec<(String, String)> = Vec::new();
    for _ in 0..2 {
        let job = upload_example(&client, &server).await;
        wait_finished(&client, &server, job).await;
        let job = job.to_string();
        let page = server.get_json(&client, &format!("/api/v1/jobs/{job}/sessions")).await;
        let sid = page["sessions"][0]["id"].as_str().unwrap().to_string();
        assert!(sid.len() == 32 && sid.bytes().all(|b| b.is_ascii_hexdigit()), "{sid}");
        seen.push((job, sid));
    }
    let [(first, sid1), (second, sid2)] = <[_; 2]>::try_from(seen).unwrap();
    assert_ne!(first, second);
    assert_ne!(sid1, sid2, "the same call in two jobs: two ids");
    for (job, sid) in [(&first, &sid1), (&second, &sid2)] {
        let one: Value = server.get_json(&client, &format!("/api/v1/sessions/{sid}")).await;
        assert_eq!((one["job_id"].as_str(), one["id"].as_str()), (Some(job.as_str()), Some(sid.as_str())), "{one}");
        let session: Value = server.get_json(&client, &format!("/api/v1/jobs/{job}/sessions/{sid}")).await;
        assert_eq!((session["job_id"].as_str(), session["id"].as_str()), (Some(job.as_str()), Some(sid.as_str())));
        assert!(messages(&session) > 0);
        for url in [format!("/api/v1/jobs/{job}/sessions/{sid}/pcap"), format!("/api/v1/sessions/{sid}/pcap")] {
            let pcap = client.get(server.url(&url)).send().await.unwrap();
            assert_eq!(pcap.status(), 200, "{url}");
            assert!(pcap.bytes().await.unwrap().len() > 24, "frames, not just a header");
        }
    }
    // One job's session id is not the other's.
    let other = client.get(server.url(&format!("/api/v1/jobs/{second}/sessions/{sid1}"))).send().await.unwrap();
    assert_eq!(error_of(other).await, (404, "session_not_found".into()));
    // Job ids: a UUID no job has, a number no job had, and something that is no id at all.
    for id in ["0190a5c2-7c1e-7d3a-9f1e-2b3c4d5e6f70", "999", "x'; --", "%00"] {
        let missing = client.get(server.url(&format!("/api/v1/jobs/{id}/sessions/{sid1}"))).send().await.unwrap();
        assert_eq!(error_of(missing).await, (404, "job_not_found".into()), "{id}");
    }
    // The UUID in other spellings names the same job.
    let upper = first.to_ascii_uppercase();
    for id in [upper.clone(), first.replace('-', ""), format!("urn:uuid:{first}")] {
        let status: Value = server.get_json(&client, &format!("/api/v1/jobs/{id}/status")).await;
        assert_eq!(status["job_id"], first.as_str(), "{id}");
    }
    let missing = client.get(server.url(&format!("/api/v1/jobs/{first}/sessions/nope"))).send().await.unwrap();
    assert_eq!(error_of(missing).await, (404, "session_not_found".into()));
    server.shutdown().await;
}

#[tokio::test]
async fn only_the_websocket_routes_skip_the_authentication_check() {
    let server = start(|s| {
        s.auth.enabled = true;
        s.auth.api_keys = vec!["k3y-0123456789abcdef".into()];
    })
    .await;
    let client = reqwest::Client::new();
    // Paths that end in /ws but are ordinary routes.
    for path in ["/api/v1/sessions/ws", "/api/v1/jobs/1/sessions/ws", "/api/v1/sessions/x/ws"] {
        let response = client.get(server.url(path)).send().await.unwrap();
        assert_eq!(error_of(response).await, (401, "unauthorized".into()), "{path}");
    }
    server.shutdown().await;
}

#[tokio::test]
async fn a_lower_case_bearer_scheme_is_accepted() {
    let server = start(|s| {
        s.auth.enabled = true;
        s.auth.api_keys = vec!["k3y-0123456789abcdef".into()];
    })
    .await;
    let client = reqwest::Client::new();
    for value in ["bearer k3y-0123456789abcdef", "BEARER k3y-0123456789abcdef", "Bearer  k3y-0123456789abcdef"] {
        let response = client.get(server.url("/api/v1/jobs")).header("authorization", value).send().await.unwrap();
        assert_eq!(response.status(), 200, "{value}");
    }
    let response = client
        .get(server.url("/api/v1/jobs"))
        .header("authorization", "Basic k3y-0123456789abcdef")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 401, "another scheme");
    server.shutdown().await;
}

#[tokio::test]
async fn an_offset_of_2_pow_63_or_more_is_refused_rather_than_wrapped_to_the_first_page() {
    let server = start(|_| {}).await;
    let client = reqwest::Client::new();
    let job = upload_example(&client, &server).await;
    wait_finished(&client, &server, job).await;
    for offset in ["9223372036854775808", "18446744073709551615"] {
        for path in [format!("/api/v1/jobs?offset={offset}"), format!("/api/v1/jobs/{job}/sessions?offset={offset}")] {
            let response = client.get(server.url(&path)).send().await.unwrap();
            assert_eq!(error_of(response).await, (400, "bad_request".into()), "{path}");
        }
    }
    let last = server.get_json(&client, "/api/v1/jobs?offset=9223372036854775807").await;
    assert_eq!(last["jobs"], serde_json::json!([]), "the largest offset: past the end");
    let last = server.get_json(&client, &format!("/api/v1/jobs/{job}/sessions?offset=9223372036854775807")).await;
    assert_eq!(last["sessions"], serde_json::json!([]));
    server.shutdown().await;
}

#[tokio::test]
async fn health_is_not_rate_limited() {
    let server = start(|s| {
        s.limits.rate_limit_per_second = 1;
        s.limits.rate_limit_burst = 1;
    })
    .await;
    let client = reqwest::Client::new();
    // Spend the client's burst until it is refused...
    let mut limited = false;
    for _ in 0..50 {
        if client.get(server.url("/version")).send().await.unwrap().status() == 429 {
            limited = true;
            break;
        }
    }
    assert!(limited, "other routes are rate-limited");
    // ...a liveness probe from the same address is still answered.
    for _ in 0..10 {
        assert_eq!(client.get(server.url("/health")).send().await.unwrap().status(), 200);
    }
    server.shutdown().await;
}
