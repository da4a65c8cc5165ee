//! A truncated capture: its job completes, and its status says the capture was not read whole, and why.

mod common;

use common::{start, wait_finished};
use serde_json::Value;

#[tokio::test]
async fn a_truncated_captures_job_says_incomplete_with_its_warning_in_the_status() {
    let server = start(|_| {}).await;
    let client = reqwest::Client::new();
    let whole = std::fs::read(common::example()).unwrap();
    // Cut in the middle of a record: what comes before it is analysed.
    let cut = whole[..whole.len() / 2 + 7].to_vec();
    let job = common::upload_pcap(&client, &server, "?name=cut.pcap", cut).await;
    let done = wait_finished(&client, &server, job).await;
    assert_eq!(done["status"], "completed", "{done}");
    assert_eq!(done["complete"], false, "{done}");
    let warnings = done["warnings"].as_array().unwrap();
    assert!(!warnings.is_empty(), "{done}");
    // The same in the listing, which clients read too.
    let jobs: Value = server.get_json(&client, "/api/v1/jobs").await;
    assert_eq!(jobs["jobs"][0]["complete"], false, "{jobs}");

    // A whole capture says so.
    let whole_job = common::upload_example(&client, &server).await;
    let done = wait_finished(&client, &server, whole_job).await;
    assert_eq!((&done["complete"], &done["warnings"]), (&Value::Bool(true), &serde_json::json!([])), "{done}");
    server.shutdown().await;
}
