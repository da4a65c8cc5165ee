//! The router without a socket (`oneshot`): the OpenAPI document matches the routes, and errors have one shape.

mod common;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use callflow_jobs::{JobManager, ManagerOptions, SqliteStore};
use callflow_server::{router, AppState};
use http_body_util::BodyExt;
use std::sync::Arc;
use tower::ServiceExt;

fn app() -> (axum::Router, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let settings = common::settings(dir.path());
    let store = Arc::new(SqliteStore::open(settings.storage.database_path()).unwrap());
    let (manager, _) = JobManager::start(store, ManagerOptions::from_settings(&settings)).unwrap();
    (router(AppState::new(Arc::new(manager), settings)), dir)
}

async fn call(app: &axum::Router, method: &str, uri: &str) -> (StatusCode, serde_json::Value) {
    let req = Request::builder().method(method).uri(uri).body(Body::empty()).unwrap();
    let response = app.clone().oneshot(req).await.unwrap();
    let status = response.status();
    let bytes = response.into_body().collect().await.unwrap().to_bytes();
    (status, serde_json::from_slice(&bytes).unwrap_or(serde_json::Value::Null))
}

#[tokio::test]
async fn every_openapi_operation_is_a_route_and_every_route_is_documented() {
    let (app, _dir) = app();
    let (status, doc) = call(&app, "GET", "/api/v1/openapi.json").await;
    assert_eq!(status, StatusCode::OK);
    assert!(doc["openapi"].as_str().unwrap().starts_with("3."));
    let paths = doc["paths"].as_object().unwrap();
    let mut operations = 0;
    for (path, ops) in paths {
        for method in ops.as_object().unwrap().keys() {
            operations += 1;
            let uri = path.replace("{id}", "999").replace("{session_id}", "nope");
            let (status, body) = call(&app, &method.to_uppercase(), &uri).await;
            assert_ne!(status, StatusCode::METHOD_NOT_ALLOWED, "{method} {path}");
            assert_ne!(body["error"]["code"], "route_not_found", "{method} {path} is not routed");
        }
    }
    assert_eq!(operations, callflow_server::ROUTES.len());
    // And the converse: a path that is not in the document is not routed.
    let (status, body) = call(&app, "GET", "/api/v1/nothing").await;
    assert_eq!((status, body["error"]["code"].as_str()), (StatusCode::NOT_FOUND, Some("route_not_found")));
    let (status, body) = call(&app, "PUT", "/api/v1/jobs").await;
    assert_eq!((status, body["error"]["code"].as_str()), (StatusCode::METHOD_NOT_ALLOWED, Some("method_not_allowed")));
}

#[tokio::test]
async fn health_version_and_metrics() {
    let (app, _dir) = app();
    let (status, health) = call(&app, "GET", "/health").await;
    assert_eq!((status, health["storage"].as_str()), (StatusCode::OK, Some("ok")));
    let (_, version) = call(&app, "GET", "/version").await;
    assert_eq!(version, serde_json::json!({"name": "callflowd", "version": env!("CARGO_PKG_VERSION")}));
    let req = Request::builder().uri("/metrics").body(Body::empty()).unwrap();
    let response = app.clone().oneshot(req).await.unwrap();
    let text = String::from_utf8(response.into_body().collect().await.unwrap().to_bytes().to_vec()).unwrap();
    for needle in [
        "callflow_http_requests_total{method=\"GET\",route=\"/health\",status=\"200\",node=\"test\"} 1",
        "callflow_jobs{state=\"queued\",node=\"test\"} 0",
        "callflow_upload_bytes_total{node=\"test\"} 0",
        "callflow_websocket_clients{node=\"test\"} 0",
    ] {
        assert!(text.contains(needle), "{needle} missing in\n{text}");
    }
    // Every series names the node (cluster.node_name), so that several nodes' stay apart.
    let unlabelled: Vec<&str> =
        text.lines().filter(|l| !l.starts_with('#') && !l.is_empty() && !l.contains("node=\"test\"")).collect();
    assert!(unlabelled.is_empty(), "{unlabelled:?}");
}

#[tokio::test]
async fn an_over_long_uri_is_refused() {
    let (app, _dir) = app();
    let uri = format!("/api/v1/jobs?q={}", "x".repeat(9000));
    let (status, body) = call(&app, "GET", &uri).await;
    assert_eq!((status, body["error"]["code"].as_str()), (StatusCode::URI_TOO_LONG, Some("uri_too_long")));
}

async fn post_json(app: &axum::Router, uri: &str, body: String) -> (StatusCode, serde_json::Value) {
    let req = Request::post(uri).header("content-type", "application/json").body(Body::from(body)).unwrap();
    let response = app.clone().oneshot(req).await.unwrap();
    let status = response.status();
    let bytes = response.into_body().collect().await.unwrap().to_bytes();
    (status, serde_json::from_slice(&bytes).unwrap())
}

#[tokio::test]
async fn rejected_parameters_and_bodies_get_the_error_shape_too() {
    let (app, _dir) = app();
    let (status, body) = call(&app, "GET", "/api/v1/jobs?offset=abc").await;
    assert_eq!((status, body["error"]["code"].as_str()), (StatusCode::BAD_REQUEST, Some("bad_request")));
    let (status, body) = call(&app, "GET", "/api/v1/jobs/1/sessions?problem=maybe").await;
    assert_eq!((status, body["error"]["code"].as_str()), (StatusCode::BAD_REQUEST, Some("bad_request")));
    let (status, body) = post_json(&app, "/api/login", "{not json".into()).await;
    assert_eq!((status, body["error"]["code"].as_str()), (StatusCode::BAD_REQUEST, Some("bad_request")));
    let huge = format!(r#"{{"username": "a", "password": "{}"}}"#, "x".repeat(100_000));
    let (status, body) = post_json(&app, "/api/login", huge).await;
    assert_eq!((status, body["error"]["code"].as_str()), (StatusCode::PAYLOAD_TOO_LARGE, Some("payload_too_large")));
    assert!(body["error"]["message"].as_str().unwrap().contains("65536"), "{body}");
    let (status, body) = post_json(&app, "/api/login", r#"{"username": "a", "password": "b"}"#.into()).await;
    assert_eq!((status, body["error"]["code"].as_str()), (StatusCode::UNAUTHORIZED, Some("bad_login")));
}
