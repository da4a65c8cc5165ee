//! A job's subscriber view over the API, against a real server on loopback: the generated VoLTE capture uploaded, its subscribers listed, filtered and fetched with their sessions, behind authentication.

mod common;
use common::JobIdOf;

use common::{start, upload_pcap, wait_finished};
use serde_json::Value;
use std::path::PathBuf;

const KEY: &str = "k3y-subscribers-0123";

fn volte() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../callflow-correlate/test_data/volte/volte.pcap")
}

fn truth_calls() -> Vec<Value> {
    let truth: Value = serde_json::from_slice(&std::fs::read(volte().with_extension("truth.json")).unwrap()).unwrap();
    truth["calls"].as_array().unwrap().clone()
}

/// The status and JSON body of `GET path` with the API key.
async fn get(client: &reqwest::Client, server: &common::TestServer, path: &str) -> (u16, Value) {
    let response = client.get(server.url(path)).bearer_auth(KEY).send().await.unwrap();
    (response.status().as_u16(), response.json().await.unwrap())
}

#[tokio::test]
async fn a_volte_job_lists_filters_and_serves_its_subscribers_with_their_sessions() {
    let server = start(|s| {
        s.auth.enabled = true;
        s.auth.api_keys = vec![KEY.into()];
    })
    .await;
    let mut headers = reqwest::header::HeaderMap::new();
    headers.insert("authorization", format!("Bearer {KEY}").parse().unwrap());
    let client = reqwest::Client::builder().default_headers(headers).build().unwrap();
    let job = upload_pcap(&client, &server, "?name=volte.pcap", std::fs::read(volte()).unwrap()).await;
    assert_eq!(wait_finished(&client, &server, job).await["status"], "completed");

    // Authentication, as on every job route.
    let bare = reqwest::Client::new();
    for path in [format!("/api/v1/jobs/{job}/subscribers"), format!("/api/v1/jobs/{job}/subscribers/sub-1")] {
        assert_eq!(bare.get(server.url(&path)).send().await.unwrap().status(), 401, "{path}");
    }

    let calls = truth_calls();
    let (status, all) = get(&client, &server, &format!("/api/v1/jobs/{job}/subscribers")).await;
    assert_eq!(status, 200, "{all}");
    assert_eq!((Some(all.job_id()), all["total"].as_u64()), (Some(job), Some(calls.len() as u64)), "{all}");
    assert_eq!(all["subscribers"].as_array().unwrap().len(), calls.len());
    let (_, page) = get(&client, &server, &format!("/api/v1/jobs/{job}/subscribers?offset=1&limit=1")).await;
    assert_eq!(page["subscribers"].as_array().unwrap().len(), 1);
    assert_eq!(page["subscribers"][0], all["subscribers"][1], "paged in the document's order");

    for call in &calls {
        let (imsi, msisdn, call_id) =
            (call["imsi"].as_str().unwrap(), call["msisdn"].as_str().unwrap(), call["call_id"].as_str().unwrap());
        let (_, by_imsi) = get(&client, &server, &format!("/api/v1/jobs/{job}/subscribers?imsi={imsi}")).await;
        assert_eq!(by_imsi["total"], 1, "{imsi}: {by_imsi}");
        let sub = &by_imsi["subscribers"][0];
        assert_eq!((sub["imsi"].as_str(), sub["msisdn"].as_str()), (Some(imsi), Some(msisdn)));
        let (_, by_msisdn) = get(&client, &server, &format!("/api/v1/jobs/{job}/subscribers?msisdn={msisdn}")).await;
        assert_eq!(by_msisdn["subscribers"], by_imsi["subscribers"], "{msisdn}");
        // A piece of the IMPU, in other case, and the UE address are keys too.
        let impu = call["impu"].as_str().unwrap();
        let piece = impu.split('@').next().unwrap().to_ascii_uppercase();
        let encoded = piece.replace('+', "%2B");
        let (_, by_q) = get(&client, &server, &format!("/api/v1/jobs/{job}/subscribers?q={encoded}")).await;
        assert_eq!(by_q["subscribers"], by_imsi["subscribers"], "q={piece}");
        let ue = call["ue_address"].as_str().unwrap();
        let (_, by_ue) = get(&client, &server, &format!("/api/v1/jobs/{job}/subscribers?q={ue}")).await;
        assert!(by_ue["subscribers"].as_array().unwrap().contains(sub), "q={ue}: {by_ue}");

        let id = sub["id"].as_str().unwrap();
        let (status, one) = get(&client, &server, &format!("/api/v1/jobs/{job}/subscribers/{id}")).await;
        assert_eq!(status, 200, "{one}");
        assert_eq!((one["id"].as_str(), one["imsi"].as_str(), Some(one.job_id())), (Some(id), Some(imsi), Some(job)));
        let sessions = one["sessions"].as_array().unwrap();
        assert_eq!(sessions.len() as u64, one["session_total"].as_u64().unwrap());
        assert_eq!(sessions.len(), sub["sessions"].as_array().unwrap().len());
        for s in sessions {
            assert_eq!(s["document"]["id"], s["session"], "each session with its document");
        }
        let kinds: Vec<&str> = sessions.iter().filter_map(|s| s["kind"].as_str()).collect();
        assert!(kinds.contains(&"gtp") && kinds.contains(&"sip_call"), "{id}: {kinds:?}");
        assert!(sessions.iter().any(|s| s["document"]["call_id"] == call_id), "{id} has the call {call_id}");
        let (_, first) = get(&client, &server, &format!("/api/v1/jobs/{job}/subscribers/{id}?limit=1")).await;
        assert_eq!(first["sessions"].as_array().unwrap().len(), 1);
        assert_eq!(first["sessions"][0], one["sessions"][0]);
        assert_eq!(first["session_total"], one["session_total"]);
    }

    let (_, none) = get(&client, &server, &format!("/api/v1/jobs/{job}/subscribers?q=no-such-key")).await;
    assert_eq!((none["total"].as_u64(), none["subscribers"].as_array().map(Vec::len)), (Some(0), Some(0)));
    let (status, missing) = get(&client, &server, &format!("/api/v1/jobs/{job}/subscribers/sub-999")).await;
    assert_eq!((status, missing["error"]["code"].as_str()), (404, Some("subscriber_not_found")));
    let (status, missing) = get(&client, &server, "/api/v1/jobs/999/subscribers").await;
    assert_eq!((status, missing["error"]["code"].as_str()), (404, Some("job_not_found")));
    let (status, _) = get(&client, &server, &format!("/api/v1/jobs/{job}/subscribers?limit=0")).await;
    assert_eq!(status, 400);

    // Both routes are in the OpenAPI document, with their filters.
    let (_, doc) = get(&client, &server, "/api/v1/openapi.json").await;
    let list = &doc["paths"]["/api/v1/jobs/{id}/subscribers"]["get"];
    let names: Vec<&str> = list["parameters"].as_array().unwrap().iter().filter_map(|p| p["name"].as_str()).collect();
    assert_eq!(names, ["id", "offset", "limit", "imsi", "msisdn", "q"]);
    assert!(doc["paths"]["/api/v1/jobs/{id}/subscribers/{sub_id}"]["get"].is_object());
}

#[tokio::test]
async fn a_job_not_completed_has_no_subscriber_view_yet_rather_than_an_empty_one() {
    let gate = common::Gate::new();
    let server = common::start_gated(&gate, |_| {}).await;
    let client = reqwest::Client::new();
    let job = common::upload_example(&client, &server).await;
    gate.until(|s| s.running == 1).await;
    let error = |v: &Value| v["error"]["code"].as_str().map(str::to_string);
    let running = client.get(server.url(&format!("/api/v1/jobs/{job}/subscribers"))).send().await.unwrap();
    assert_eq!(running.status(), 409);
    let body: Value = running.json().await.unwrap();
    assert!(body["error"]["message"].as_str().unwrap().contains("running"), "{body}");
    // Cancelled (and so failed to complete), it never gets one.
    let cancel = client.post(server.url(&format!("/api/v1/jobs/{job}/cancel"))).send().await.unwrap();
    assert!(cancel.status().is_success());
    gate.open();
    assert_eq!(wait_finished(&client, &server, job).await["status"], "cancelled");
    let one = client.get(server.url(&format!("/api/v1/jobs/{job}/subscribers/sub-1"))).send().await.unwrap();
    assert_eq!(one.status(), 409);
    let body: Value = one.json().await.unwrap();
    assert_eq!(error(&body).as_deref(), Some("conflict"), "{body}");
    assert!(body["error"]["message"].as_str().unwrap().contains("only a completed job"), "{body}");
}
