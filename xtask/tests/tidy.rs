//! Repository rules checked as tests (rust-analyzer's "tidy"): module docs, dependency edges that follow the layers, and `unsafe` only where the architecture says.

use std::path::{Path, PathBuf};

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("workspace root").to_path_buf()
}

fn files_under(dir: &Path, ext: &str, out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else { return };
    for entry in entries.flatten() {
        let path = entry.path();
        let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
        if path.is_dir() {
            if !matches!(name, "target" | "test_data" | "corpus" | "artifacts") && !name.starts_with('.') {
                files_under(&path, ext, out);
            }
        } else if name.ends_with(ext) {
            out.push(path);
        }
    }
}

/// The layer of each workspace crate: a crate may depend only on crates of lower layers.
const LAYERS: &[(&str, u32)] = &[
    ("callflow-model", 0),
    ("callflow-config", 1),
    ("callflow-decode", 1),
    ("callflow-classify", 2),
    ("callflow-ndpi-sys", 2),
    ("callflow-ndpi", 2),
    ("callflow-correlate", 3),
    ("callflow-jobs", 4),
    ("callflow-render", 4),
    ("callflow-live", 4),
    ("callflow-server", 5),
    ("callflow-cli", 6),
    ("callflowd", 6),
    ("xtask", 7),
    ("callflow-benches", 7),
];

/// Edges allowed within a layer: the nDPI wrapper implements classify's trait over the
/// bindings crate, all three at layer 2, and nothing at layer 2 depends back on it.
const SIDEWAYS: &[(&str, &str)] = &[("callflow-ndpi", "callflow-classify"), ("callflow-ndpi", "callflow-ndpi-sys")];

fn layer(name: &str) -> Option<u32> {
    LAYERS.iter().find(|(n, _)| *n == name).map(|(_, l)| *l)
}

/// The workspace crates a Cargo.toml names under `[dependencies]` (build and dev
/// dependencies may reach sideways for tests, never up).
fn workspace_deps(manifest: &str) -> (String, Vec<String>) {
    let mut name = String::new();
    let mut deps = Vec::new();
    let mut section = String::new();
    for line in manifest.lines().map(str::trim) {
        if line.starts_with('[') {
            section = line.trim_matches(|c| c == '[' || c == ']').to_string();
            continue;
        }
        if section == "package" {
            if let Some(v) = line.strip_prefix("name = ") {
                name = v.trim_matches('"').to_string();
            }
        }
        if section.ends_with("dependencies") {
            let dep = line.split(['.', ' ', '=']).next().unwrap_or("");
            if layer(dep).is_some() {
                deps.push(dep.to_string());
            }
        }
    }
    (name, deps)
}

#[test]
fn dependencies_point_down_the_layers() {
    let mut manifests = Vec::new();
    for dir in ["crates", "bins", "xtask", "benches"] {
        files_under(&root().join(dir), "Cargo.toml", &mut manifests);
    }
    assert!(manifests.len() >= 5, "found only {manifests:?}");
    let mut violations = Vec::new();
    for manifest in &manifests {
        let text = std::fs::read_to_string(manifest).expect("read manifest");
        let (name, deps) = workspace_deps(&text);
        let Some(own) = layer(&name) else {
            violations.push(format!("{}: crate {name} has no layer in tidy.rs LAYERS", manifest.display()));
            continue;
        };
        for dep in deps {
            let theirs = layer(&dep).unwrap_or(0);
            let sideways = theirs == own && SIDEWAYS.contains(&(name.as_str(), dep.as_str()));
            if theirs >= own && dep != name && !sideways {
                violations.push(format!("{name} (layer {own}) depends on {dep} (layer {theirs})"));
            }
        }
    }
    assert!(violations.is_empty(), "layering violations:\n{}", violations.join("\n"));
}

#[test]
fn every_module_starts_with_a_doc_comment() {
    let mut files = Vec::new();
    for dir in ["crates", "bins", "xtask", "benches", "fuzz", "examples"] {
        files_under(&root().join(dir), ".rs", &mut files);
    }
    assert!(files.len() >= 10);
    let missing: Vec<String> = files
        .iter()
        .filter(|f| {
            let text = std::fs::read_to_string(f).unwrap_or_default();
            !text.trim_start().starts_with("//!")
        })
        .map(|f| f.strip_prefix(root()).unwrap_or(f).display().to_string())
        .collect();
    assert!(missing.is_empty(), "files without a `//!` module doc:\n{}", missing.join("\n"));
}

#[test]
fn tests_cannot_be_switched_off() {
    let mut files = Vec::new();
    for dir in ["crates", "bins", "xtask", "benches"] {
        files_under(&root().join(dir), ".rs", &mut files);
    }
    let needle = ["#[", "ignore]"].concat();
    let panicky = ["#[", "should_panic"].concat();
    let offenders: Vec<String> = files
        .iter()
        .filter(|f| {
            let text = std::fs::read_to_string(f).unwrap_or_default();
            text.contains(&needle) || text.contains(&panicky)
        })
        .map(|f| f.display().to_string())
        .collect();
    assert!(offenders.is_empty(), "tests must run and assert today's behaviour: {offenders:?}");
}

/// The files docs/ARCHITECTURE.md's "Unsafe code" section lists: the backquoted `.rs`
/// paths of its bullet points.
fn files_allowed_unsafe(architecture: &str) -> Vec<String> {
    let Some(start) = architecture.find("\n## Unsafe code\n") else { return Vec::new() };
    let section = &architecture[start + 1..];
    let end = section[3..].find("\n## ").map_or(section.len(), |i| i + 3);
    section[..end]
        .lines()
        .filter_map(|line| line.strip_prefix("- `"))
        .filter_map(|rest| rest.split('`').next())
        .filter(|path| path.ends_with(".rs"))
        .map(str::to_string)
        .collect()
}

/// Whether Rust source uses the `unsafe` keyword outside comments and string literals.
fn uses_unsafe(text: &str) -> bool {
    text.lines().any(|line| {
        let code = line.split("//").next().unwrap_or("");
        // Every other piece between double quotes (escaped ones aside) is inside a string literal.
        let code = code.replace("\\\"", "");
        let outside: Vec<&str> = code.split('"').step_by(2).collect();
        outside.iter().any(|part| part.split(|c: char| !(c.is_alphanumeric() || c == '_')).any(|word| word == "unsafe"))
    })
}

#[test]
fn unsafe_appears_only_where_the_architecture_says() {
    let architecture = std::fs::read_to_string(root().join("docs/ARCHITECTURE.md")).expect("docs/ARCHITECTURE.md");
    let allowed = files_allowed_unsafe(&architecture);
    assert!(!allowed.is_empty(), "ARCHITECTURE.md has an \"Unsafe code\" section listing files");
    let mut files = Vec::new();
    for dir in ["crates", "bins", "xtask", "benches", "fuzz", "examples"] {
        files_under(&root().join(dir), ".rs", &mut files);
    }
    let mut with_unsafe: Vec<String> = files
        .iter()
        .filter(|f| uses_unsafe(&std::fs::read_to_string(f).unwrap_or_default()))
        .map(|f| f.strip_prefix(root()).unwrap_or(f).display().to_string())
        .collect();
    with_unsafe.sort();
    let unlisted: Vec<&String> = with_unsafe.iter().filter(|f| !allowed.contains(f)).collect();
    assert!(unlisted.is_empty(), "`unsafe` in files ARCHITECTURE.md does not list: {unlisted:?}");
    let stale: Vec<&String> = allowed.iter().filter(|f| !with_unsafe.contains(f)).collect();
    assert!(stale.is_empty(), "ARCHITECTURE.md lists files without `unsafe`: {stale:?}");
}

#[test]
fn the_unsafe_check_reads_code_not_comments() {
    assert!(uses_unsafe("let m = unsafe { map() };"));
    assert!(uses_unsafe("unsafe impl Send for Flow {}"));
    assert!(!uses_unsafe("// every `unsafe` call lives in ffi.rs"));
    assert!(!uses_unsafe("//! unsafe nDPI calls"));
    assert!(!uses_unsafe("let unsafe_count = 1;"));
    assert!(!uses_unsafe("assert!(uses(\"unsafe {}\"));"));
    let doc = "# A\n\n## Unsafe code\n\n- `a/b.rs`: why.\n- `c.rs`: why.\n\n## Next\n\n- `d.rs`\n";
    assert_eq!(files_allowed_unsafe(doc), ["a/b.rs", "c.rs"]);
}

#[test]
fn manifest_parsing_finds_workspace_edges() {
    let (name, deps) = workspace_deps(
        "[package]\nname = \"callflow-correlate\"\n\n[dependencies]\ncallflow-decode.workspace = true\nserde = \"1\"\ncallflow-model = { path = \"x\" }\n",
    );
    assert_eq!(name, "callflow-correlate");
    assert_eq!(deps, ["callflow-decode", "callflow-model"]);
}
