//! Ladders, charts, raw messages and group pcaps of stored sessions, through a real server on loopback.

mod common;

use callflow_decode::capture::CaptureReader;
use callflow_jobs::{Analysis, Job, JobContext};
use callflow_model::{Document, Related, Relation};
use common::{start, start_analysing, upload_example, upload_pcap, wait_finished};
use serde_json::Value;
use std::sync::Arc;

/// The real analysis, then the first two sessions linked as legs of one call, both ways,
/// as a B2BUA's legs are.
struct LinkFirstTwo;

impl Analysis for LinkFirstTwo {
    fn run(&self, job: &Job, ctx: &mut JobContext<'_>) -> Result<Document, String> {
        let mut reader = CaptureReader::open(&job.input).map_err(|e| e.to_string())?;
        let opts = callflow_correlate::AnalyzerOptions::default();
        let mut doc = callflow_correlate::analyze(&mut reader, &job.label, opts, None).map_err(|e| e.to_string())?;
        let (a, b) = (doc.sessions[0].id.clone(), doc.sessions[1].id.clone());
        let link = |session: String| Related { session, relation: Relation::Leg, key: "test".into() };
        doc.sessions[0].related.push(link(b));
        doc.sessions[1].related.push(link(a));
        for s in std::mem::take(&mut doc.sessions) {
            ctx.on_session(s);
        }
        Ok(doc)
    }
}

async fn get(client: &reqwest::Client, server: &common::TestServer, path: &str) -> reqwest::Response {
    client.get(server.url(path)).send().await.unwrap()
}

fn header<'a>(response: &'a reqwest::Response, name: &str) -> &'a str {
    response.headers().get(name).map_or("", |v| v.to_str().unwrap())
}

#[tokio::test]
async fn a_session_is_drawn_in_every_format_from_both_routes() {
    let server = start(|_| {}).await;
    let client = reqwest::Client::new();
    let job = upload_example(&client, &server).await;
    assert_eq!(wait_finished(&client, &server, job).await["status"], "completed");
    let page: Value = server.get_json(&client, &format!("/api/v1/jobs/{job}/sessions")).await;
    let sid = page["sessions"][0]["id"].as_str().unwrap().to_string();

    // SVG is the default: the raw INVITE is its first message's tooltip.
    let svg = get(&client, &server, &format!("/api/v1/sessions/{sid}/ladder")).await;
    assert_eq!(svg.status(), 200);
    assert_eq!(header(&svg, "content-type"), "image/svg+xml");
    assert_eq!(header(&svg, "x-content-type-options"), "nosniff");
    assert!(header(&svg, "content-security-policy").starts_with("default-src 'none'"));
    let body = svg.text().await.unwrap();
    assert!(body.starts_with("<svg ") && body.contains("<title>INVITE sip:"), "{body}");

    for (format, content_type, needle) in [
        ("text", "text/plain; charset=utf-8", "INVITE (SDP)"),
        ("mermaid", "text/plain; charset=utf-8", "sequenceDiagram"),
        ("plantuml", "text/plain; charset=utf-8", "@startuml"),
        ("html", "text/html; charset=utf-8", "<pre>INVITE sip:"),
    ] {
        for path in [
            format!("/api/v1/sessions/{sid}/ladder?format={format}"),
            format!("/api/v1/jobs/{job}/sessions/{sid}/ladder?format={format}&group=true"),
        ] {
            let response = get(&client, &server, &path).await;
            assert_eq!(response.status(), 200, "{path}");
            assert_eq!(header(&response, "content-type"), content_type, "{path}");
            let text = response.text().await.unwrap();
            assert!(text.contains(needle), "{path}: {text}");
        }
    }
    let bad = get(&client, &server, &format!("/api/v1/sessions/{sid}/ladder?format=png")).await;
    assert_eq!(bad.status(), 400);
    let error: Value = bad.json().await.unwrap();
    assert!(error["error"]["message"].as_str().unwrap().contains("unknown format `png`"), "{error}");
    let missing = get(&client, &server, "/api/v1/sessions/nope/ladder").await;
    assert_eq!(missing.status(), 404);
}

#[tokio::test]
async fn charts_messages_and_group_pcaps_of_a_stored_call() {
    let server = start(|_| {}).await;
    let client = reqwest::Client::new();
    let job = upload_example(&client, &server).await;
    wait_finished(&client, &server, job).await;
    let page: Value = server.get_json(&client, &format!("/api/v1/jobs/{job}/sessions")).await;
    let sid = page["sessions"][0]["id"].as_str().unwrap().to_string();
    let session: Value = server.get_json(&client, &format!("/api/v1/sessions/{sid}")).await;

    for path in [format!("/api/v1/sessions/{sid}/chart"), format!("/api/v1/jobs/{job}/sessions/{sid}/chart?stream=1")] {
        let chart = get(&client, &server, &path).await;
        assert_eq!(chart.status(), 200, "{path}");
        assert_eq!(header(&chart, "content-type"), "image/svg+xml");
        let text = chart.text().await.unwrap();
        assert!(text.contains("jitter (ms)") && text.contains("loss (%)") && text.contains("MOS"), "{text}");
    }
    let beyond = get(&client, &server, &format!("/api/v1/sessions/{sid}/chart?stream=2")).await;
    assert_eq!(beyond.status(), 404);
    assert_eq!(beyond.json::<Value>().await.unwrap()["error"]["code"], "stream_not_found");

    // The raw text of the INVITE and of the 200 OK, read back from the stored capture.
    let messages = session["messages"].as_array().unwrap();
    for (m, first_line) in [(&messages[0], "INVITE sip:"), (&messages[3], "SIP/2.0 200 OK")] {
        let frame = m["frame"].as_u64().unwrap();
        let path = format!("/api/v1/jobs/{job}/sessions/{sid}/messages/{frame}");
        let response = get(&client, &server, &path).await;
        assert_eq!(response.status(), 200, "{path}");
        assert_eq!(header(&response, "content-type"), "text/plain; charset=utf-8");
        let text = response.text().await.unwrap();
        assert!(text.starts_with(first_line), "{text}");
        assert!(text.contains(session["call_id"].as_str().unwrap()));
    }
    // A frame of the capture that is not one of the session's messages is not served.
    let rtp_frame = messages.iter().map(|m| m["frame"].as_u64().unwrap()).max().unwrap() - 2;
    for frame in [rtp_frame.to_string(), "999999".into(), "x".into()] {
        let response = get(&client, &server, &format!("/api/v1/sessions/{sid}/messages/{frame}")).await;
        assert_eq!(response.status(), 404, "frame {frame}");
        assert_eq!(response.json::<Value>().await.unwrap()["error"]["code"], "message_not_found");
    }

    let alone = get(&client, &server, &format!("/api/v1/sessions/{sid}/pcap")).await.bytes().await.unwrap();
    let group = get(&client, &server, &format!("/api/v1/jobs/{job}/sessions/{sid}/pcap?group=true")).await;
    assert_eq!(group.status(), 200);
    assert_eq!(header(&group, "content-type"), "application/vnd.tcpdump.pcap");
    assert!(
        header(&group, "content-disposition").ends_with("-group.pcap\""),
        "{}",
        header(&group, "content-disposition")
    );
    assert_eq!(group.bytes().await.unwrap(), alone, "a call without legs is its own group");

    let doc: Value = server.get_json(&client, "/api/v1/openapi.json").await;
    for path in [
        "/api/v1/sessions/{session_id}/ladder",
        "/api/v1/sessions/{session_id}/chart",
        "/api/v1/sessions/{session_id}/messages/{frame}",
        "/api/v1/jobs/{id}/sessions/{session_id}/ladder",
        "/api/v1/jobs/{id}/sessions/{session_id}/chart",
        "/api/v1/jobs/{id}/sessions/{session_id}/messages/{frame}",
    ] {
        assert!(doc["paths"][path]["get"].is_object(), "{path} in the OpenAPI document");
    }
    let ladder = &doc["paths"]["/api/v1/sessions/{session_id}/ladder"]["get"];
    let params: Vec<&str> =
        ladder["parameters"].as_array().unwrap().iter().map(|p| p["name"].as_str().unwrap()).collect();
    assert_eq!(params, ["session_id", "format", "group"]);
    assert!(ladder["responses"]["200"]["content"]["image/svg+xml"].is_object());
}

#[tokio::test]
async fn a_leg_group_is_drawn_and_cut_together() {
    let server = start_analysing(Arc::new(LinkFirstTwo), |_| {}).await;
    let client = reqwest::Client::new();
    let capture =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../callflow-correlate/test_data/outcomes.pcap");
    let job = upload_pcap(&client, &server, "?name=outcomes.pcap", std::fs::read(capture).unwrap()).await;
    assert_eq!(wait_finished(&client, &server, job).await["status"], "completed");
    let page: Value = server.get_json(&client, &format!("/api/v1/jobs/{job}/sessions")).await;
    let sessions = page["sessions"].as_array().unwrap();
    let (first, second) = (sessions[0]["id"].as_str().unwrap(), sessions[1]["id"].as_str().unwrap());
    let call_ids = [sessions[0]["call_id"].as_str().unwrap(), sessions[1]["call_id"].as_str().unwrap()];

    let text = get(&client, &server, &format!("/api/v1/jobs/{job}/sessions/{second}/ladder?format=text&group=true"))
        .await
        .text()
        .await
        .unwrap();
    assert!(text.starts_with("2 legs"), "{text}");
    let svg = get(&client, &server, &format!("/api/v1/sessions/{first}/ladder?group=true")).await.text().await.unwrap();
    for id in call_ids {
        assert!(svg.contains(&format!("Call-ID {id}")), "{id} in the group's picture");
    }
    let alone = get(&client, &server, &format!("/api/v1/sessions/{first}/ladder")).await.text().await.unwrap();
    assert!(!alone.contains(&format!("Call-ID {}", call_ids[1])), "without group=true, the session alone");

    // The group's pcap holds both legs' frames, each once.
    let count = |bytes: Vec<u8>| {
        let mut reader = CaptureReader::from_bytes(bytes).unwrap();
        let mut n = 0;
        while reader.next_frame().unwrap().is_some() {
            n += 1;
        }
        n
    };
    let mut frames = Vec::new();
    for path in [
        format!("/api/v1/sessions/{first}/pcap"),
        format!("/api/v1/sessions/{second}/pcap"),
        format!("/api/v1/sessions/{first}/pcap?group=true"),
    ] {
        let response = get(&client, &server, &path).await;
        assert_eq!(response.status(), 200, "{path}");
        frames.push(count(response.bytes().await.unwrap().to_vec()));
    }
    assert!(frames[0] > 0 && frames[1] > 0);
    assert_eq!(frames[2], frames[0] + frames[1], "{frames:?}");
}
