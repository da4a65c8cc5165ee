//! Layered loading: each layer overrides the one below, and unknown keys or bad values are errors naming the key.

use callflow_config::{ConfigError, Loader, Source};
use std::path::PathBuf;
use std::time::Duration;

fn temp_file(name: &str, text: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("callflow-config-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path
}

fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
}

fn load_err(loader: Loader) -> String {
    match loader.load() {
        Ok(loaded) => panic!("expected an error, got {:?}", loaded.settings),
        Err(e) => e.to_string(),
    }
}

#[test]
fn defaults_without_any_layer() {
    let loaded = Loader::new().load().unwrap();
    let s = &loaded.settings;
    assert_eq!(s.server.port, 8080);
    assert_eq!(s.server.bind_addr, "127.0.0.1");
    assert!(s.processing.workers >= 1);
    assert!(s.processing.resume_interrupted);
    assert_eq!(s.storage.retention, Duration::from_secs(86_400));
    assert_eq!(s.storage.database_path(), PathBuf::from("results/callflow.db"));
    assert!(loaded.entries().iter().all(|(_, _, source)| *source == Source::Default));
}

#[test]
fn each_layer_overrides_the_one_below() {
    let file = temp_file(
        "layers.toml",
        "[server]\nport = 7000\nbind_addr = \"0.0.0.0\"\n[processing]\nworkers = 2\n[storage]\nretention = \"12h\"\n",
    );
    // The file beats the defaults.
    let loaded = Loader::new().file(&file).load().unwrap();
    assert_eq!(loaded.settings.server.port, 7000);
    assert_eq!(loaded.source("server.port"), Some(&Source::File(file.clone())));
    assert_eq!(loaded.settings.storage.retention, Duration::from_secs(12 * 3600));
    assert_eq!(loaded.source("server.request_timeout"), Some(&Source::Default));

    // The environment beats the file, through an alias and through SECTION__KEY.
    let vars = env(&[("CALLFLOW_PORT", "7100"), ("CALLFLOW_PROCESSING__WORKERS", "3"), ("PATH", "/bin")]);
    let loaded = Loader::new().file(&file).env_vars(vars.clone()).load().unwrap();
    assert_eq!(loaded.settings.server.port, 7100);
    assert_eq!(loaded.source("server.port"), Some(&Source::Env("CALLFLOW_PORT".into())));
    assert_eq!(loaded.settings.processing.workers, 3);
    assert_eq!(loaded.settings.server.bind_addr, "0.0.0.0", "keys the environment does not set keep the file's value");

    // Flags beat the environment.
    let loaded = Loader::new().file(&file).env_vars(vars).flag("server.port", "7200", "--port").load().unwrap();
    assert_eq!(loaded.settings.server.port, 7200);
    assert_eq!(loaded.source("server.port"), Some(&Source::Flag("--port".into())));
    assert_eq!(loaded.settings.processing.workers, 3);
}

#[test]
fn every_environment_alias_sets_its_key() {
    let vars = env(&[
        ("CALLFLOW_PORT", "1"),
        ("CALLFLOW_BIND_ADDR", "::1"),
        ("CALLFLOW_WORKERS", "5"),
        ("CALLFLOW_UPLOAD_DIR", "/u"),
        ("CALLFLOW_RESULTS_DIR", "/r"),
        ("CALLFLOW_ENABLE_NDPI", "false"),
        ("CALLFLOW_AUTH__API_KEYS", "key-a-0123456789, key-b-0123456789"),
        ("CALLFLOW_BENCH_PCAP", "/tmp/not-ours.pcap"),
    ]);
    let s = Loader::new().env_vars(vars).load().unwrap().settings;
    assert_eq!(s.server.port, 1);
    assert_eq!(s.server.bind_addr, "::1");
    assert_eq!(s.processing.workers, 5);
    assert_eq!(s.storage.upload_dir, PathBuf::from("/u"));
    assert_eq!(s.storage.results_dir, PathBuf::from("/r"));
    assert_eq!(s.storage.database_path(), PathBuf::from("/r/callflow.db"), "the database follows the results dir");
    assert!(!s.ndpi.enabled, "on by default, so the alias is checked turning it off");
    assert_eq!(s.auth.api_keys, ["key-a-0123456789", "key-b-0123456789"]);
}

#[test]
fn json_and_yaml_files_are_read_too() {
    let json = temp_file("c.json", r#"{"storage": {"database": "/data/jobs.db"}, "websocket": {"event_buffer": 64}}"#);
    let s = Loader::new().file(json).load().unwrap().settings;
    assert_eq!(s.storage.database_path(), PathBuf::from("/data/jobs.db"));
    assert_eq!(s.websocket.event_buffer, 64);
    let yaml =
        temp_file("c.yaml", "limits:\n  max_queued_jobs: 5\nauth:\n  enabled: true\n  api_keys: [k1-0123456789abcd]\n");
    let s = Loader::new().file(yaml).load().unwrap().settings;
    assert_eq!(s.limits.max_queued_jobs, 5);
    assert_eq!(s.auth.api_keys, ["k1-0123456789abcd"]);
}

#[test]
fn unknown_keys_are_errors_naming_the_key_and_layer() {
    let file = temp_file("typo.toml", "[server]\nprot = 1\n");
    let err = load_err(Loader::new().file(&file));
    assert_eq!(err, format!("unknown configuration key `server.prot` (from file {})", file.display()));

    let file = temp_file("section.toml", "[sever]\nport = 1\n");
    assert!(load_err(Loader::new().file(file)).starts_with("unknown configuration key `sever`"));

    let err = load_err(Loader::new().env_vars(env(&[("CALLFLOW_STORAGE__RETENTON", "1h")])));
    assert_eq!(err, "unknown configuration key `storage.retenton` (from env CALLFLOW_STORAGE__RETENTON)");

    let err = load_err(Loader::new().flag("server.nope", "1", "--nope"));
    assert_eq!(err, "unknown configuration key `server.nope` (from flag --nope)");
}

#[test]
fn bad_values_are_errors_naming_the_key() {
    let err = load_err(Loader::new().env_vars(env(&[("CALLFLOW_PORT", "eighty")])));
    assert!(err.starts_with("invalid value for `server.port` (from env CALLFLOW_PORT)"), "{err}");

    let file = temp_file("bad.toml", "[storage]\nretention = \"forever\"\n");
    let err = load_err(Loader::new().file(&file));
    assert!(err.starts_with("invalid value for `storage.retention` (from file"), "{err}");
    assert!(err.contains("forever"), "{err}");

    let err = load_err(Loader::new().flag("processing.workers", "0", "--workers"));
    assert_eq!(err, "invalid value for `processing.workers` (from flag --workers): must be at least 1");

    let err = load_err(Loader::new().env_vars(env(&[("CALLFLOW_HEP__LISTEN", "localhost")])));
    assert_eq!(
        err,
        "invalid value for `hep.listen` (from env CALLFLOW_HEP__LISTEN): must be an address and a port, \
         e.g. 127.0.0.1:9060 or [::1]:9060"
    );

    let file = temp_file("x.ini", "");
    assert!(matches!(Loader::new().file(file).load(), Err(ConfigError::UnknownFormat { .. })));
    let missing = std::env::temp_dir().join("callflow-config-no-such-file.toml");
    assert!(matches!(Loader::new().file(missing).load(), Err(ConfigError::File { .. })));
}

#[test]
fn render_shows_every_key_with_its_source() {
    let loaded = Loader::new().flag("server.port", "9000", "--port").load().unwrap();
    let text = loaded.render();
    let port = text.lines().find(|l| l.starts_with("port = ")).unwrap();
    assert!(port.starts_with("port = 9000 ") && port.ends_with("# flag --port"), "{port}");
    let retention = text.lines().find(|l| l.starts_with("retention = ")).unwrap();
    assert!(retention.starts_with("retention = \"1d\"") && retention.ends_with("# default"), "{retention}");
    for section in ["server", "processing", "storage", "ndpi", "websocket", "auth", "limits", "quality", "legs", "live"]
    {
        assert!(text.contains(&format!("[{section}]\n")), "{section} missing in\n{text}");
    }
}

#[test]
fn the_example_file_documents_every_key_and_loads() {
    let example = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../config.example.toml");
    let loaded = Loader::new().file(&example).load().unwrap();
    let text = std::fs::read_to_string(&example).unwrap();
    for (key, _, _) in loaded.entries() {
        // `server.port` under `[server]`, `server.tls.cert` under `[server.tls]`.
        let (table, name) = key.rsplit_once('.').unwrap();
        assert!(text.contains(&format!("[{table}]")), "{table}");
        assert!(text.contains(&format!("\n{name} =")) || text.contains(&format!("\n# {name} =")), "{key} undocumented");
    }
}

#[test]
fn server_tls_cors_users_and_limits_keys() {
    let toml = temp_file(
        "server.toml",
        "[server]\nheader_timeout = \"5s\"\n[server.tls]\ncert = \"/c.pem\"\nkey = \"/k.pem\"\n\
         [auth]\nenabled = true\nusers = { ann = \"$argon2id$v=19$m=19456,t=2,p=1$c2FsdA$aGFzaA\" }\ntoken_ttl = \"1h\"\n\
         [limits]\nmax_concurrent_uploads = 2\n[websocket]\nclient_queue = 10\n",
    );
    let vars = [("CALLFLOW_SERVER__CORS_ORIGINS".to_string(), "https://a.example, https://b.example".to_string())];
    let s = Loader::new().file(toml).env_vars(vars).load().unwrap().settings;
    assert_eq!((s.server.tls.cert, s.server.tls.key), (Some(PathBuf::from("/c.pem")), Some(PathBuf::from("/k.pem"))));
    assert_eq!(s.server.header_timeout, std::time::Duration::from_secs(5));
    assert_eq!(s.server.cors_origins, ["https://a.example", "https://b.example"]);
    assert!(s.auth.users["ann"].starts_with("$argon2id$"), "users alone are credentials enough");
    assert_eq!(s.auth.token_ttl, std::time::Duration::from_secs(3600));
    assert_eq!((s.limits.max_concurrent_uploads, s.websocket.client_queue), (2, 10));
    assert_eq!(s.limits.max_upload_bytes, 10 << 30, "10 GiB by default");

    let half = temp_file("half.toml", "[server.tls]\ncert = \"/c.pem\"\n");
    let err = Loader::new().file(half).load().unwrap_err().to_string();
    assert!(err.contains("server.tls.key") && err.contains("set together"), "{err}");
}

#[test]
fn tls_keys_nest_in_every_layer_and_the_old_flat_keys_say_their_new_name() {
    let inline = temp_file("inline.toml", "[server]\ntls = { cert = \"/c.pem\", key = \"/k.pem\" }\n");
    let loaded = Loader::new().file(&inline).load().unwrap();
    assert_eq!(loaded.settings.server.tls.key, Some(PathBuf::from("/k.pem")));
    assert_eq!(loaded.source("server.tls.cert"), Some(&Source::File(inline)));
    let yaml = temp_file("tls.yaml", "server:\n  tls:\n    cert: /y.pem\n    key: /yk.pem\n");
    assert_eq!(Loader::new().file(yaml).load().unwrap().settings.server.tls.cert, Some(PathBuf::from("/y.pem")));

    let vars = env(&[("CALLFLOW_SERVER__TLS__CERT", "/e.pem"), ("CALLFLOW_SERVER__TLS__KEY", "/ek.pem")]);
    let loaded = Loader::new().env_vars(vars).load().unwrap();
    assert_eq!(loaded.settings.server.tls.cert, Some(PathBuf::from("/e.pem")));
    assert_eq!(loaded.source("server.tls.key"), Some(&Source::Env("CALLFLOW_SERVER__TLS__KEY".into())));
    let text = loaded.render();
    assert!(text.contains("\ntls.cert = \"/e.pem\""), "a dotted key under [server]:\n{text}");
    assert_eq!(loaded.source("server.tls"), None, "a table has no value of its own");

    let err = load_err(Loader::new().env_vars(env(&[("CALLFLOW_SERVER__TLS", "x")])));
    assert_eq!(err, "unknown configuration key `server.tls` (from env CALLFLOW_SERVER__TLS)");
    let err = load_err(Loader::new().env_vars(env(&[("CALLFLOW_SERVER__TLS__CRT", "x")])));
    assert_eq!(err, "unknown configuration key `server.tls.crt` (from env CALLFLOW_SERVER__TLS__CRT)");
    // One key: a file's keys are checked in no particular order.
    let old = temp_file("old.toml", "[server]\ntls_cert = \"/c.pem\"\n");
    let err = load_err(Loader::new().file(&old));
    assert_eq!(
        err,
        format!("configuration key `server.tls_cert` (from file {}) is now `server.tls.cert`", old.display())
    );
    let err = load_err(Loader::new().env_vars(env(&[("CALLFLOW_SERVER__TLS_KEY", "/k.pem")])));
    assert_eq!(err, "configuration key `server.tls_key` (from env CALLFLOW_SERVER__TLS_KEY) is now `server.tls.key`");
    let file = temp_file("scalar.toml", "[server]\ntls = \"/c.pem\"\n");
    assert!(load_err(Loader::new().file(file)).starts_with("invalid value for `server.tls`"));
}

#[test]
fn an_empty_or_short_api_key_is_refused_at_start_up() {
    for keys in ["[\"\"]", "[\"short\"]", "[\"0123456789abcdef\", \"\"]"] {
        let toml = temp_file("keys.toml", &format!("[auth]\nenabled = true\napi_keys = {keys}\n"));
        let err = Loader::new().file(&toml).load().unwrap_err().to_string();
        assert!(err.contains("`auth.api_keys`") && err.contains("at least 16 bytes"), "{keys}: {err}");
    }
    let toml = temp_file("keys.toml", "[auth]\nenabled = true\napi_keys = [\"0123456789abcdef\"]\n");
    assert!(Loader::new().file(&toml).load().is_ok(), "16 bytes is enough");
}

#[test]
fn the_diameter_dictionary_key_is_empty_by_default_and_set_by_file_or_environment() {
    assert_eq!(Loader::new().load().unwrap().settings.diameter.dictionary, PathBuf::new());
    let file = temp_file("diameter.toml", "[diameter]\ndictionary = \"/etc/callflow/vendor.toml\"\n");
    let s = Loader::new().file(file).load().unwrap().settings;
    assert_eq!(s.diameter.dictionary, PathBuf::from("/etc/callflow/vendor.toml"));
    let vars = env(&[("CALLFLOW_DIAMETER__DICTIONARY", "/e.toml")]);
    assert_eq!(Loader::new().env_vars(vars).load().unwrap().settings.diameter.dictionary, PathBuf::from("/e.toml"));
}

#[test]
fn quality_section_from_file_and_environment() {
    let file = temp_file("q.toml", "[quality]\nmin_mos = 3.2\ninterval = \"10s\"\n");
    let loaded =
        Loader::new().file(&file).env_vars(env(&[("CALLFLOW_QUALITY__JITTER_BUFFER", "80ms")])).load().unwrap();
    let q = &loaded.settings.quality;
    assert_eq!((q.min_mos, q.interval, q.jitter_buffer), (3.2, Duration::from_secs(10), Duration::from_millis(80)));
    assert_eq!(q.max_loss_pct, 5.0, "the rest keeps its default");
    // An interval too short to chart is refused, naming the key.
    let bad = temp_file("q2.toml", "[quality]\ninterval = \"10ms\"\n");
    let err = Loader::new().file(&bad).load().unwrap_err().to_string();
    assert!(err.contains("quality.interval"), "{err}");
}

#[test]
fn kpis_trunks_load_and_bad_networks_are_refused_naming_the_key() {
    let good = temp_file(
        "kpis.toml",
        "[kpis]\nbucket = \"5m\"\ntop_peers = 3\nlocal_addresses = [\"192.0.2.0/24\"]\n\
         [[kpis.trunks]]\nname = \"carrier-a\"\naddresses = [\"198.51.100.7\", \"2001:db8::/32\"]\nhosts = [\"sip.a.example\"]\n",
    );
    let s = Loader::new().file(&good).load().unwrap().settings;
    assert_eq!(s.kpis.bucket, Duration::from_secs(300));
    assert_eq!((s.kpis.top_peers, s.kpis.trunks[0].name.as_str()), (3, "carrier-a"));
    assert_eq!(s.kpis.trunks[0].hosts, ["sip.a.example"]);
    let bad = temp_file("kpis-bad.toml", "[kpis]\nlocal_addresses = [\"192.0.2.0/33\"]\n");
    let err = Loader::new().file(&bad).load().unwrap_err().to_string();
    assert!(err.contains("kpis.local_addresses"), "{err}");
}

#[test]
fn the_database_is_a_sqlite_path_or_a_postgres_url_from_file_environment_or_flag() {
    use callflow_config::Database;
    let s = Loader::new().load().unwrap().settings;
    assert_eq!(s.storage.database(), Database::Sqlite(PathBuf::from("results/callflow.db")));
    assert_eq!(s.storage.database_pool, 8);
    let url = "postgres://cf:pw@db:5432/callflow?sslmode=require";
    let s = Loader::new()
        .env_vars(env(&[("CALLFLOW_STORAGE__DATABASE", url), ("CALLFLOW_STORAGE__DATABASE_POOL", "3")]))
        .load()
        .unwrap()
        .settings;
    assert_eq!((s.storage.database(), s.storage.database_pool), (Database::Postgres(url.into()), 3));
    let printed = Loader::new().env_vars(env(&[("CALLFLOW_STORAGE__DATABASE", url)])).load().unwrap().render();
    assert!(printed.contains("postgres://cf@db:5432/callflow?sslmode=require") && !printed.contains("pw"), "{printed}");
    let toml = temp_file("db.toml", "[storage]\ndatabase = \"postgresql://db/x\"\n");
    let s = Loader::new().file(toml).flag("storage.database", "/srv/jobs.db", "--database").load().unwrap().settings;
    assert_eq!(s.storage.database(), Database::Sqlite(PathBuf::from("/srv/jobs.db")), "the flag wins");
    let toml = temp_file("db2.toml", "[storage]\ndatabase = \"postgresql://db/x\"\n");
    assert_eq!(
        Loader::new().file(toml).load().unwrap().settings.storage.database(),
        Database::Postgres("postgresql://db/x".into())
    );
}

#[test]
fn the_cluster_section_has_defaults_env_overrides_and_checked_values() {
    let s = Loader::new().load().unwrap().settings;
    assert_eq!((s.cluster.lease, s.cluster.max_attempts), (Duration::from_secs(30), 3));
    let host = callflow_config::host_name();
    assert_eq!(s.node_name(), format!("{host}:8080"), "the host name and server.port");
    assert_eq!(s.advertise_url(), format!("http://{host}:8080"));
    let ephemeral = Loader::new().flag("server.port", "0", "--port").load().unwrap().settings;
    assert_eq!(ephemeral.node_name(), format!("{host}:pid{}", std::process::id()), "never two nodes named host:0");
    let loaded = Loader::new()
        .env_vars(env(&[
            ("CALLFLOW_CLUSTER__NODE_NAME", "node-b"),
            ("CALLFLOW_CLUSTER__ADVERTISE_URL", "https://b.example:8443"),
            ("CALLFLOW_CLUSTER__LEASE", "9s"),
            ("CALLFLOW_CLUSTER__MAX_ATTEMPTS", "5"),
        ]))
        .load()
        .unwrap();
    let s = &loaded.settings;
    assert_eq!((s.node_name(), s.advertise_url()), ("node-b".to_string(), "https://b.example:8443".to_string()));
    assert_eq!((s.cluster.lease, s.cluster.max_attempts), (Duration::from_secs(9), 5));
    assert_eq!(loaded.source("cluster.lease"), Some(&Source::Env("CALLFLOW_CLUSTER__LEASE".into())));
    for (var, value, key) in [
        ("CALLFLOW_CLUSTER__NODE_NAME", "node b", "cluster.node_name"),
        ("CALLFLOW_CLUSTER__NODE_NAME", "a\u{7}", "cluster.node_name"),
        ("CALLFLOW_CLUSTER__ADVERTISE_URL", "b.example:8080", "cluster.advertise_url"),
        ("CALLFLOW_CLUSTER__LEASE", "500ms", "cluster.lease"),
        ("CALLFLOW_CLUSTER__MAX_ATTEMPTS", "0", "cluster.max_attempts"),
    ] {
        let err = load_err(Loader::new().env_vars(env(&[(var, value)])));
        assert!(err.contains(key) && err.contains(var), "{var}={value}: {err}");
    }
}
