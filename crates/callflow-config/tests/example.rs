//! The example configurations: `config.example.json` is `config.example.toml` rendered as JSON, so the two cannot drift, and both load the same settings through the `config` crate.
//!
//! `config.example.toml` is the one written by hand (its comments document every key);
//! the JSON one, for those who keep their configuration as JSON (the earlier callflowd's
//! milestone report documents `config.example.json`), is generated from it by
//! [`render_json`]. After changing the TOML example, regenerate it with
//! `UPDATE_EXPECT=1 cargo test -p callflow-config --test example`.

use callflow_config::{Loader, Source};
use std::path::PathBuf;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// The TOML example's settings as JSON: its tables as objects, its keys as they are
/// (commented-out keys, which document a default, are not set in either file).
fn render_json(toml_text: &str) -> String {
    let value: serde_json::Value = toml::from_str(toml_text).expect("config.example.toml is TOML");
    let mut text = serde_json::to_string_pretty(&value).expect("JSON serializes");
    text.push('\n');
    text
}

/// The keys a file set, with their values.
fn set_by_file(loaded: &callflow_config::Loaded) -> Vec<(String, serde_json::Value)> {
    loaded
        .entries()
        .into_iter()
        .filter(|(_, _, source)| matches!(source, Source::File(_)))
        .map(|(key, value, _)| (key, value))
        .collect()
}

#[test]
fn the_json_example_is_the_toml_example_rendered_and_loads_the_same_settings() {
    let (toml_path, json_path) = (root().join("config.example.toml"), root().join("config.example.json"));
    let rendered = render_json(&std::fs::read_to_string(&toml_path).unwrap());
    if std::env::var_os("UPDATE_EXPECT").is_some() {
        std::fs::write(&json_path, &rendered).unwrap();
    }
    let committed = std::fs::read_to_string(&json_path).unwrap_or_default();
    assert!(
        committed == rendered,
        "config.example.json is not config.example.toml rendered: run \
         UPDATE_EXPECT=1 cargo test -p callflow-config --test example"
    );
    // Both through the `config` crate, as `callflowd --config FILE` reads them.
    let from_toml = Loader::new().file(&toml_path).load().unwrap();
    let from_json = Loader::new().file(&json_path).load().unwrap();
    assert_eq!(
        serde_json::to_value(&from_json.settings).unwrap(),
        serde_json::to_value(&from_toml.settings).unwrap(),
        "the same settings"
    );
    let (toml_keys, json_keys) = (set_by_file(&from_toml), set_by_file(&from_json));
    assert_eq!(json_keys, toml_keys, "the same keys set by the file");
    assert!(toml_keys.len() >= 20, "the example sets keys: {toml_keys:?}");
}

#[test]
fn a_json_configuration_in_the_reports_shape_loads() {
    // The sections and keys of the earlier callflowd's report (server address and port,
    // workers, upload and results directories, nDPI), as a JSON file.
    let dir = tempfile_dir();
    let path = dir.join("callflowd.json");
    let text = r#"{
        "server": {"bind_addr": "127.0.0.1", "port": 8081},
        "processing": {"workers": 2},
        "storage": {"upload_dir": "/tmp/cf/uploads", "results_dir": "/tmp/cf/results"},
        "ndpi": {"enabled": false}
    }"#;
    std::fs::write(&path, text).unwrap();
    let s = Loader::new().file(&path).load().unwrap().settings;
    assert_eq!((s.server.bind_addr.as_str(), s.server.port, s.processing.workers), ("127.0.0.1", 8081, 2));
    assert_eq!(s.storage.upload_dir, PathBuf::from("/tmp/cf/uploads"));
    assert_eq!(s.storage.results_dir, PathBuf::from("/tmp/cf/results"));
    assert!(!s.ndpi.enabled);
}

/// A directory of this test process's own under the system's temporary directory.
fn tempfile_dir() -> PathBuf {
    let dir = std::env::temp_dir().join(format!("callflow-config-example-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}
