//! `callflowd --print-config` and start-up errors: each layer shows up as the source of the values it sets.

use std::process::{Command, Output};

fn callflowd(args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_callflowd"));
    // The test's own environment must not leak in.
    for (name, _) in std::env::vars().filter(|(n, _)| n.starts_with("CALLFLOW_")) {
        cmd.env_remove(name);
    }
    cmd.args(args).envs(env.iter().copied()).output().expect("run callflowd")
}

fn line<'a>(text: &'a str, key: &str) -> &'a str {
    text.lines().find(|l| l.starts_with(&format!("{key} = "))).unwrap_or_else(|| panic!("{key} in\n{text}"))
}

#[test]
fn print_config_names_the_source_of_each_value() {
    let dir = std::env::temp_dir().join(format!("callflowd-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("c.yaml");
    std::fs::write(&file, "server:\n  port: 7000\n  bind_addr: 0.0.0.0\nprocessing:\n  workers: 2\n").unwrap();
    let out = callflowd(
        &["--config", file.to_str().unwrap(), "--print-config", "--workers", "6"],
        &[
            ("CALLFLOW_PORT", "7100"),
            ("CALLFLOW_STORAGE__RETENTION", "2h"),
            ("CALLFLOW_SERVER__TLS__CERT", "/c.pem"),
            ("CALLFLOW_SERVER__TLS__KEY", "/k.pem"),
        ],
    );
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(line(&text, "port").starts_with("port = 7100 ") && line(&text, "port").ends_with("# env CALLFLOW_PORT"));
    assert!(line(&text, "bind_addr").ends_with(&format!("# file {}", file.display())));
    assert!(line(&text, "workers").starts_with("workers = 6 ") && line(&text, "workers").ends_with("# flag --workers"));
    assert!(line(&text, "retention").starts_with("retention = \"2h\""));
    assert!(line(&text, "max_page_size").ends_with("# default"));
    let cert = line(&text, "tls.cert");
    assert!(cert.starts_with("tls.cert = \"/c.pem\"") && cert.ends_with("# env CALLFLOW_SERVER__TLS__CERT"), "{cert}");
    std::fs::remove_dir_all(dir).ok();
}

#[test]
fn the_node_name_comes_from_its_flag_and_a_bad_one_stops_start_up() {
    let out = callflowd(&["--print-config", "--node-name", "node-a"], &[("CALLFLOW_CLUSTER__LEASE", "6s")]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let text = String::from_utf8(out.stdout).unwrap();
    let name = line(&text, "node_name");
    assert!(name.starts_with("node_name = \"node-a\"") && name.ends_with("# flag --node-name"), "{name}");
    assert!(line(&text, "lease").ends_with("# env CALLFLOW_CLUSTER__LEASE"));
    let out = callflowd(&["--print-config", "--node-name", "node a"], &[]);
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("invalid value for `cluster.node_name` (from flag --node-name)"), "{stderr}");
}

#[test]
fn an_unknown_key_or_bad_value_stops_start_up_naming_the_key() {
    let out = callflowd(&["--print-config"], &[("CALLFLOW_SERVER__PROT", "1")]);
    assert_eq!(out.status.code(), Some(2));
    assert_eq!(
        String::from_utf8_lossy(&out.stderr).trim(),
        "callflowd: error: invalid configuration: unknown configuration key `server.prot` (from env CALLFLOW_SERVER__PROT)"
    );
    let out = callflowd(&["--print-config"], &[("CALLFLOW_WORKERS", "many")]);
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("invalid value for `processing.workers` (from env CALLFLOW_WORKERS)"), "{stderr}");
}

#[test]
fn a_diameter_dictionary_with_a_mistake_stops_callflowd_naming_the_file_and_line() {
    let dir = std::env::temp_dir().join(format!("callflowd-dict-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let dict = dir.join("vendor.toml");
    std::fs::write(&dict, "[[command]]\ncode = 8388620\nname = \"Private\"\nrequest = \"PRR\"\n").unwrap();
    let example = concat!(env!("CARGO_MANIFEST_DIR"), "/../../examples/captures/basic-call.pcap");
    let output = dir.join("out.json");
    let out = callflowd(
        &["--input", example, "--output", output.to_str().unwrap()],
        &[("CALLFLOW_DIAMETER__DICTIONARY", dict.to_str().unwrap())],
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    assert!(stderr.contains(&format!("{}:1: missing field `answer`", dict.display())), "{stderr}");
    assert!(!output.exists(), "nothing analysed");
    std::fs::remove_dir_all(dir).ok();
}
