//! A job's operator statistics over the API and the `callflow_sip_*` series on /metrics, against a real server on loopback with the generated capture whose outcomes are known.

mod common;
use common::JobIdOf;

use common::{start, upload_pcap, wait_finished};
use serde_json::Value;
use std::path::PathBuf;

fn kpis_capture() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../callflow-correlate/test_data/kpis.pcap")
}

/// The value of the /metrics line starting with `prefix`.
fn value(text: &str, prefix: &str) -> f64 {
    let line = text.lines().find(|l| l.starts_with(prefix)).unwrap_or_else(|| panic!("no {prefix} in\n{text}"));
    line.rsplit(' ').next().unwrap().parse().unwrap()
}

#[tokio::test]
async fn a_job_serves_its_stats_by_group_and_feeds_the_metrics_series() {
    // Three labels for ten callees: the busiest three, the rest `other`.
    let server = start(|s| s.kpis.top_peers = 3).await;
    let client = reqwest::Client::new();
    let job = upload_pcap(&client, &server, "?name=kpis.pcap", std::fs::read(kpis_capture()).unwrap()).await;
    assert_eq!(wait_finished(&client, &server, job).await["status"], "completed");

    let whole: Value = server.get_json(&client, &format!("/api/v1/jobs/{job}/stats")).await;
    assert_eq!((Some(whole.job_id()), whole["complete"].as_bool()), (Some(job), Some(true)), "{whole}");
    let total = &whole["total"];
    assert_eq!(total["attempts"], 10);
    let ratio = |name: &str| (total[name]["numerator"].as_u64().unwrap(), total[name]["denominator"].as_u64().unwrap());
    assert_eq!([ratio("asr"), ratio("ner"), ratio("seer"), ratio("isa")], [(4, 10), (9, 10), (8, 10), (1, 10)]);
    assert_eq!(total["pdd_ms"]["p50"], 122.0, "as computed by hand in callflow-correlate's tests/kpis.rs");
    assert_eq!(whole["rows"], serde_json::json!([]));

    let by: Value = server.get_json(&client, &format!("/api/v1/jobs/{job}/stats?by=peer,minute")).await;
    assert_eq!(by["by"], serde_json::json!(["peer", "bucket"]));
    let rows = by["rows"].as_array().unwrap();
    assert_eq!(rows.len(), 10, "one callee each: {by}");
    assert!(rows.iter().all(|r| r["peer"].is_string() && r["bucket"].is_number()));

    let calls: Value = server.get_json(&client, &format!("/api/v1/jobs/{job}/stats?calls=true")).await;
    let calls = calls["calls"].as_array().unwrap();
    assert_eq!(calls.len(), 10);
    let failed: Vec<&Value> = calls.iter().filter(|c| c["outcome"] == "failed").collect();
    assert_eq!(
        (failed.len(), &failed[0]["code"], &failed[0]["rule"]),
        (1, &Value::from(503), &Value::from("final answer 408 or 5xx"))
    );

    let bad = client.get(server.url(&format!("/api/v1/jobs/{job}/stats?by=colour"))).send().await.unwrap();
    assert_eq!(bad.status(), 400);
    let missing = client.get(server.url("/api/v1/jobs/999999/stats")).send().await.unwrap();
    assert_eq!(missing.status(), 404);

    let metrics = client.get(server.url("/metrics")).send().await.unwrap().text().await.unwrap();
    let calls = |outcome: &str| -> f64 {
        metrics
            .lines()
            .filter(|l| l.starts_with("callflow_sip_calls_total{") && l.contains(&format!("outcome=\"{outcome}\"")))
            .map(|l| l.rsplit(' ').next().unwrap().parse::<f64>().unwrap())
            .sum()
    };
    assert_eq!(
        [calls("answered"), calls("busy"), calls("no_answer"), calls("abandoned"), calls("failed")],
        [4.0, 2.0, 2.0, 1.0, 1.0]
    );
    let peers: std::collections::BTreeSet<&str> = metrics
        .lines()
        .filter(|l| l.starts_with("callflow_sip_calls_total{"))
        .filter_map(|l| l.split("peer=\"").nth(1)?.split('"').next())
        .collect();
    assert_eq!(peers.len(), 4, "three peers and other: {peers:?}");
    assert!(peers.contains("other"));
    assert_eq!(value(&metrics, "callflow_sip_setup_seconds_count{peer=\"other\",node=\"test\"}"), 7.0, "{metrics}");
    assert!(metrics.contains("# TYPE callflow_sip_post_dial_delay_seconds histogram"));

    // The dashboard in docs/ draws only series that are there.
    let dashboard =
        std::fs::read_to_string(PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../docs/grafana-kpis.json"))
            .unwrap();
    let dashboard: Value = serde_json::from_str(&dashboard).unwrap();
    let mut used = 0;
    for panel in dashboard["panels"].as_array().unwrap() {
        for target in panel["targets"].as_array().unwrap() {
            let expr = target["expr"].as_str().unwrap();
            for name in
                expr.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_')).filter(|w| w.starts_with("callflow_"))
            {
                assert!(
                    metrics.contains(&format!("\n{name}{{")),
                    "{name}, used by {:?}, is not on /metrics",
                    panel["title"]
                );
                used += 1;
            }
        }
    }
    assert!(used >= 10, "{used} series used");
    server.shutdown().await;
}

/// The `callflow_sip_calls_total` values summed by outcome, in the order given.
fn calls_by_outcome(metrics: &str, outcomes: &[&str]) -> Vec<f64> {
    outcomes
        .iter()
        .map(|outcome| {
            metrics
                .lines()
                .filter(|l| l.starts_with("callflow_sip_calls_total{") && l.contains(&format!("outcome=\"{outcome}\"")))
                .map(|l| l.rsplit(' ').next().unwrap().parse::<f64>().unwrap())
                .sum()
        })
        .collect()
}

#[tokio::test]
async fn a_live_job_feeds_the_series_as_a_file_job_of_the_same_traffic_does() {
    // The generated capture replayed as live traffic, a frame a millisecond: its timing is
    // compressed, so what is compared is what does not depend on it (outcomes, answers).
    let replay = common::Replay { capture: kpis_capture(), ..common::Replay::example() };
    let server = common::start_live(replay.sources(), |s| {
        s.processing.session_linger = std::time::Duration::from_secs(1);
        s.live.stats_interval = std::time::Duration::from_millis(200);
    })
    .await;
    let client = reqwest::Client::new();
    let response = client
        .post(server.url("/api/v1/live"))
        .json(&serde_json::json!({"interface": "eth0", "filter": "udp"}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 201);
    let live: Value = response.json().await.unwrap();
    let live = live.job_id();
    // Every call reported, then the job stopped.
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(120);
    loop {
        let status = server.get_json(&client, &format!("/api/v1/jobs/{live}/status")).await;
        if status["session_count"].as_u64() == Some(10) {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "{status}");
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    let cancelled = client.post(server.url(&format!("/api/v1/jobs/{live}/cancel"))).send().await.unwrap();
    assert_eq!(cancelled.status(), 200);
    assert_eq!(wait_finished(&client, &server, live).await["status"], "completed");

    let outcomes = ["answered", "busy", "no_answer", "abandoned", "failed"];
    let metrics = client.get(server.url("/metrics")).send().await.unwrap().text().await.unwrap();
    let after_live = calls_by_outcome(&metrics, &outcomes);
    assert_eq!(after_live, [4.0, 2.0, 2.0, 1.0, 1.0], "{metrics}");

    // The same capture as a file job adds as much again.
    let file = upload_pcap(&client, &server, "?name=kpis.pcap", std::fs::read(kpis_capture()).unwrap()).await;
    assert_eq!(wait_finished(&client, &server, file).await["status"], "completed");
    let metrics = client.get(server.url("/metrics")).send().await.unwrap().text().await.unwrap();
    let after_file = calls_by_outcome(&metrics, &outcomes);
    let file_only: Vec<f64> = after_file.iter().zip(&after_live).map(|(a, b)| a - b).collect();
    assert_eq!(file_only, after_live);

    // And the two jobs' statistics agree on everything that is not a delay.
    let totals = |job: common::JobUuid| {
        let client = client.clone();
        let url = server.url(&format!("/api/v1/jobs/{job}/stats"));
        async move { client.get(url).send().await.unwrap().json::<Value>().await.unwrap()["total"].clone() }
    };
    let (live_total, file_total) = (totals(live).await, totals(file).await);
    for key in ["attempts", "outcomes", "asr", "ner", "ser", "seer", "isa", "scr", "responses"] {
        assert_eq!(live_total[key], file_total[key], "{key}: live {live_total} file {file_total}");
    }
    server.shutdown().await;
}
