//! The web UI's page and assets as the server gives them (headers, no credential needed, no inline script), and the session listing's `sort` and `detail` the UI's table uses, through a real server on loopback.

mod common;
use common::JobIdOf;

use common::calls::{calls_pcap, CallSpec};
use common::{start, upload_pcap, wait_finished};
use serde_json::Value;

const ASSETS: [(&str, &str); 4] = [
    ("/", "text/html; charset=utf-8"),
    ("/ui/app.js", "text/javascript; charset=utf-8"),
    ("/ui/app.css", "text/css; charset=utf-8"),
    ("/ui/icon.svg", "image/svg+xml"),
];

fn header<'a>(response: &'a reqwest::Response, name: &str) -> &'a str {
    response.headers().get(name).map_or("", |v| v.to_str().unwrap())
}

#[tokio::test]
async fn the_page_and_its_assets_carry_a_policy_that_runs_only_our_own_script() {
    let server = start(|_| {}).await;
    let client = reqwest::Client::new();
    for (path, content_type) in ASSETS {
        let response = client.get(server.url(path)).send().await.unwrap();
        assert_eq!(response.status(), 200, "{path}");
        assert_eq!(header(&response, "content-type"), content_type, "{path}");
        assert_eq!(header(&response, "x-content-type-options"), "nosniff", "{path}");
        assert_eq!(header(&response, "x-frame-options"), "DENY", "{path}");
        let csp = header(&response, "content-security-policy").to_string();
        let directives: Vec<&str> = csp.split(';').map(str::trim).collect();
        for wanted in
            ["default-src 'none'", "script-src 'self'", "style-src 'self'", "frame-ancestors 'none'", "base-uri 'none'"]
        {
            assert!(directives.contains(&wanted), "{path}: {wanted} missing in {csp}");
        }
        assert!(!csp.contains("unsafe"), "{path}: {csp}");
    }
}

#[tokio::test]
async fn the_page_and_assets_need_no_credential_while_the_api_does() {
    let server = start(|s| {
        s.auth.enabled = true;
        s.auth.api_keys = vec!["a-key-long-enough-for-the-check-0123".into()];
    })
    .await;
    let client = reqwest::Client::new();
    for (path, _) in ASSETS {
        assert_eq!(client.get(server.url(path)).send().await.unwrap().status(), 200, "{path}");
    }
    assert_eq!(client.get(server.url("/api/v1/jobs")).send().await.unwrap().status(), 401);
    // Only the assets: a path beside them is not public.
    assert_eq!(client.get(server.url("/ui/other.js")).send().await.unwrap().status(), 401);
}

/// The page's markup has no inline script or style, and the module never turns text into
/// markup: every capture-derived string goes in as text.
#[tokio::test]
async fn the_assets_hold_no_inline_script_and_never_parse_text_as_html() {
    let server = start(|_| {}).await;
    let client = reqwest::Client::new();
    let page = client.get(server.url("/")).send().await.unwrap().text().await.unwrap();
    for tag in page.split("<script").skip(1) {
        let open = &tag[..tag.find('>').unwrap()];
        assert!(open.contains("src=\"/ui/"), "an inline script: <script{open}>");
        assert!(tag[tag.find('>').unwrap() + 1..].starts_with("</script>"), "a script with a body");
    }
    assert!(!page.contains("<style") && !page.contains("style=") && !page.contains(" on"), "{page}");
    let js = client.get(server.url("/ui/app.js")).send().await.unwrap().text().await.unwrap();
    for sink in ["innerHTML", "outerHTML", "insertAdjacentHTML", "document.write", "eval(", "new Function", "srcdoc"] {
        assert!(!js.contains(sink), "app.js uses {sink}");
    }
}

async fn page(client: &reqwest::Client, server: &common::TestServer, job: common::JobUuid, query: &str) -> Value {
    let response = client.get(server.url(&format!("/api/v1/jobs/{job}/sessions?{query}"))).send().await.unwrap();
    let status = response.status();
    let body: Value = response.json().await.unwrap();
    assert_eq!(status, 200, "{query}: {body}");
    body
}

fn froms(page: &Value) -> Vec<&str> {
    page["sessions"].as_array().unwrap().iter().map(|s| s["from"].as_str().unwrap()).collect()
}

#[tokio::test]
async fn sessions_sort_by_any_column_both_ways_and_detail_adds_the_table_columns() {
    let server = start(|_| {}).await;
    let client = reqwest::Client::new();
    // Calls in this start order, with 2, 0 and 1 INFO exchanges: durations differ.
    let mut specs = vec![CallSpec::new("3003", "9001"), CallSpec::new("1001", "9003"), CallSpec::new("2002", "9002")];
    (specs[0].infos, specs[2].infos) = (2, 1);
    let job = upload_pcap(&client, &server, "", calls_pcap(&specs)).await;
    assert!(wait_finished(&client, &server, job).await["status"].as_str().unwrap().eq_ignore_ascii_case("completed"));
    let uri = |n: &str, host: &str| format!("sip:{n}@{host}.example");
    let (a, b, c) = (uri("3003", "a"), uri("1001", "a"), uri("2002", "a"));
    assert_eq!(froms(&page(&client, &server, job, "").await), [&a, &b, &c]);
    assert_eq!(froms(&page(&client, &server, job, "sort=-start").await), [&c, &b, &a]);
    assert_eq!(froms(&page(&client, &server, job, "sort=from").await), [&b, &c, &a]);
    assert_eq!(froms(&page(&client, &server, job, "sort=-to").await), [&b, &c, &a]);
    assert_eq!(froms(&page(&client, &server, job, "sort=-duration").await), [&a, &c, &b]);
    assert_eq!(froms(&page(&client, &server, job, "sort=messages").await), [&b, &c, &a]);
    // Offset pages through another order; no cursor is offered there, and none is taken.
    let second = page(&client, &server, job, "sort=-duration&limit=1&offset=1").await;
    assert_eq!((froms(&second), &second["next_cursor"]), (vec![c.as_str()], &Value::Null));
    let refused =
        client.get(server.url(&format!("/api/v1/jobs/{job}/sessions?sort=from&cursor=1:1"))).send().await.unwrap();
    assert_eq!(refused.status(), 400);
    let unknown = client.get(server.url(&format!("/api/v1/jobs/{job}/sessions?sort=size"))).send().await.unwrap();
    let body: Value = unknown.json().await.unwrap();
    assert!(body["error"]["message"].as_str().unwrap().contains("unknown sort `size`"), "{body}");

    // detail=true: the call's figures from its document, not the document.
    let detailed = page(&client, &server, job, "detail=true&q=1001").await;
    let row = &detailed["sessions"][0];
    assert_eq!(detailed["total"], 1);
    assert!(row["setup_time_ms"].as_f64().unwrap() > 0.0, "{row}");
    assert!(row["duration_ms"].as_f64().is_some(), "{row}");
    assert_eq!(
        (&row["problems"], &row["streams"], &row["anomalies"]),
        (&Value::Array(vec![]), &Value::Array(vec![]), &Value::from(0))
    );
    assert!(row.get("document").is_none() && row.get("messages").is_some(), "{row}");
    let plain = page(&client, &server, job, "q=1001").await;
    assert!(plain["sessions"][0].get("setup_time_ms").is_none());
}

#[tokio::test]
async fn the_openapi_document_lists_sort_and_detail() {
    let server = start(|_| {}).await;
    let client = reqwest::Client::new();
    let doc = server.get_json(&client, "/api/v1/openapi.json").await;
    let params = doc["paths"]["/api/v1/jobs/{id}/sessions"]["get"]["parameters"].as_array().unwrap();
    let sort = params.iter().find(|p| p["name"] == "sort").expect("sort documented");
    assert!(sort["schema"]["enum"].as_array().unwrap().contains(&Value::from("-duration")));
    assert!(params.iter().any(|p| p["name"] == "detail"));
}

const KEY: &str = "a-key-long-enough-for-the-check-0123";

async fn share(
    client: &reqwest::Client,
    server: &common::TestServer,
    job: common::JobUuid,
    sid: &str,
) -> reqwest::Response {
    client
        .post(server.url("/api/v1/shares"))
        .bearer_auth(KEY)
        .json(&serde_json::json!({"job_id": job.to_string(), "session_id": sid}))
        .send()
        .await
        .unwrap()
}

#[tokio::test]
async fn a_share_link_opens_one_call_read_only_without_a_login_until_revoked() {
    let server = start(|s| {
        s.auth.enabled = true;
        s.auth.api_keys = vec![KEY.into()];
        s.auth.max_shares = 2;
    })
    .await;
    let client = reqwest::Client::new();
    let specs = [CallSpec::new("1001", "9001"), CallSpec::new("2002", "9002")];
    let response = client
        .post(server.url("/api/v1/upload"))
        .bearer_auth(KEY)
        .header("content-type", "application/vnd.tcpdump.pcap")
        .body(calls_pcap(&specs))
        .send()
        .await
        .unwrap();
    let job = response.json::<Value>().await.unwrap().job_id();
    let status = loop {
        let s: Value = client
            .get(server.url(&format!("/api/v1/jobs/{job}/status")))
            .bearer_auth(KEY)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        if ["completed", "failed"].iter().any(|w| s["status"].as_str().unwrap().eq_ignore_ascii_case(w)) {
            break s;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    };
    assert!(status["status"].as_str().unwrap().eq_ignore_ascii_case("completed"), "{status}");
    let page: Value = client
        .get(server.url(&format!("/api/v1/jobs/{job}/sessions")))
        .bearer_auth(KEY)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let (sid, other) = (page["sessions"][0]["id"].as_str().unwrap(), page["sessions"][1]["id"].as_str().unwrap());

    // Making one needs a credential, and a session that exists.
    let anonymous = client
        .post(server.url("/api/v1/shares"))
        .json(&serde_json::json!({"job_id": job.to_string(), "session_id": sid}));
    assert_eq!(anonymous.send().await.unwrap().status(), 401);
    assert_eq!(share(&client, &server, job, "nope").await.status(), 404);
    let made = share(&client, &server, job, sid).await;
    assert_eq!(made.status(), 201);
    let link: Value = made.json().await.unwrap();
    let token = link["token"].as_str().unwrap();
    assert_eq!(token.len(), 64);
    assert_eq!(link["url"], format!("/#/share/{token}"));
    assert_eq!(link["expires_in"], 7 * 24 * 3600);

    // Followed with no credential: the call, its ladder, a message of its own, its pcap.
    let get = |path: String| client.get(server.url(&path)).send();
    let doc: Value = get(format!("/api/v1/share/{token}")).await.unwrap().json().await.unwrap();
    assert_eq!((doc["id"].as_str(), &doc["job_id"]), (Some(sid), &Value::from(job.to_string())));
    let frame = doc["messages"][0]["frame"].as_u64().unwrap();
    let ladder = get(format!("/api/v1/share/{token}/ladder?format=text")).await.unwrap();
    assert_eq!(ladder.status(), 200);
    let raw = get(format!("/api/v1/share/{token}/messages/{frame}")).await.unwrap().text().await.unwrap();
    assert!(raw.starts_with("INVITE sip:9001@b.example"), "{raw}");
    let pcap = get(format!("/api/v1/share/{token}/pcap")).await.unwrap();
    assert_eq!(pcap.status(), 200);
    assert!(pcap.bytes().await.unwrap().len() > 24);
    assert_eq!(get(format!("/api/v1/share/{token}/chart")).await.unwrap().status(), 200);
    // Nothing else: another call's frame, the job's other routes, another call.
    let theirs: Value = client
        .get(server.url(&format!("/api/v1/jobs/{job}/sessions/{other}")))
        .bearer_auth(KEY)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let their_frame = theirs["messages"][0]["frame"].as_u64().unwrap();
    assert_eq!(get(format!("/api/v1/share/{token}/messages/{their_frame}")).await.unwrap().status(), 404);
    assert_eq!(get(format!("/api/v1/jobs/{job}/sessions/{other}?token={token}")).await.unwrap().status(), 401);
    assert_eq!(get("/api/v1/share/0000".into()).await.unwrap().status(), 404);

    // At most auth.max_shares at once.
    assert_eq!(share(&client, &server, job, other).await.status(), 201);
    assert_eq!(share(&client, &server, job, other).await.status(), 503);

    // Revoked: gone at once, for every route of the link.
    let revoke = |t: String| client.delete(server.url(&format!("/api/v1/shares/{t}"))).bearer_auth(KEY).send();
    assert_eq!(revoke(token.to_string()).await.unwrap().status(), 204);
    assert_eq!(get(format!("/api/v1/share/{token}")).await.unwrap().status(), 404);
    assert_eq!(get(format!("/api/v1/share/{token}/pcap")).await.unwrap().status(), 404);
    assert_eq!(revoke(token.to_string()).await.unwrap().status(), 404);
    assert_eq!(share(&client, &server, job, other).await.status(), 201, "a revoked link frees its place");
}

#[tokio::test]
async fn a_share_link_expires_after_share_ttl() {
    let server = start(|s| {
        s.auth.enabled = true;
        s.auth.api_keys = vec![KEY.into()];
        s.auth.share_ttl = std::time::Duration::from_secs(1);
    })
    .await;
    let client = reqwest::Client::new();
    let job = {
        let r = client
            .post(server.url("/api/v1/upload"))
            .bearer_auth(KEY)
            .header("content-type", "application/vnd.tcpdump.pcap")
            .body(calls_pcap(&[CallSpec::new("1001", "9001")]))
            .send()
            .await
            .unwrap();
        r.json::<Value>().await.unwrap().job_id()
    };
    let sid = loop {
        let page: Value = client
            .get(server.url(&format!("/api/v1/jobs/{job}/sessions")))
            .bearer_auth(KEY)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        if let Some(id) = page["sessions"][0]["id"].as_str() {
            break id.to_string();
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    };
    let link: Value = share(&client, &server, job, &sid).await.json().await.unwrap();
    let url = server.url(&format!("/api/v1/share/{}", link["token"].as_str().unwrap()));
    assert_eq!(client.get(&url).send().await.unwrap().status(), 200);
    tokio::time::sleep(std::time::Duration::from_millis(1200)).await;
    assert_eq!(client.get(&url).send().await.unwrap().status(), 404);
}
