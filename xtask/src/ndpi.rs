//! `cargo xtask ndpi`: fetches the pinned nDPI source, verifies it, and lays it out in `vendor/nDPI-<version>/` for `callflow-ndpi-sys`.
//!
//! The project commits no third-party C code, so this task is how a fresh clone gets the
//! tree the vendored build compiles. `vendor/ndpi.lock` names the version, the Debian
//! source package and the archive's SHA-256. The archive comes from `--archive PATH`, from
//! an earlier download kept in `target/ndpi/`, or from the distribution's own tooling:
//! `apt-get source --download-only` run against a private apt state directory whose
//! sources list holds `deb-src` twins of the machine's configured `deb` entries. So the
//! system's apt configuration is never touched and no mirror address is written in the
//! repository. The archive is refused unless its SHA-256 matches the lock file.
//!
//! The library's sources and licence are unpacked, and nDPI's own test captures
//! (`tests/pcap`, 147 MB, 257 captures), which `callflow-ndpi`'s `tests/ndpi_suite.rs`
//! compares `classify` with ndpiReader over; a tree unpacked before the captures were
//! wanted gets them added, from the same verified archive. The headers that nDPI's `configure` would generate
//! (`ndpi_define.h`, `ndpi_api.h`, `ndpi_config.h`) are written with the values Debian's
//! build has, so the vendored library and `libndpi-dev` agree on API version and layout.
//! A stamp file records the verified checksum: running the task again is a no-op.

use anyhow::{bail, ensure, Context, Result};
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

#[derive(clap::Args, Debug, Default)]
pub struct Args {
    /// Use this local copy of the upstream archive (e.g. `ndpi_4.2.orig.tar.gz`) instead of
    /// downloading it through apt.
    #[arg(long, value_name = "PATH")]
    archive: Option<PathBuf>,
}

/// What `vendor/ndpi.lock` pins.
#[derive(Debug, PartialEq, Eq)]
struct Lock {
    version: String,
    debian_source: String,
    debian_version: String,
    archive: String,
    sha256: String,
}

/// The API version Debian's 4.2-2 build computed (configure derives it from
/// SOURCE_DATE_EPOCH outside git); using the same value keeps `ndpi_get_api_version`
/// identical between the vendored and the system library.
const API_VERSION: &str = "8668";
/// The date configure takes from CHANGELOG.md's mtime in the 4.2 release archive.
const GIT_DATE: &str = "Tue Feb  1 08:14:05 UTC 2022";
/// The name of the stamp that says a tree was unpacked from a verified archive.
const STAMP: &str = ".callflow-verified";

pub fn run(args: &Args) -> Result<()> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).parent().context("workspace root")?.to_path_buf();
    let lock_path = root.join("vendor/ndpi.lock");
    let lock =
        parse_lock(&fs::read_to_string(&lock_path).with_context(|| format!("reading {}", lock_path.display()))?)?;
    let tree = root.join("vendor").join(format!("nDPI-{}", lock.version));

    let verified = fs::read_to_string(tree.join(STAMP)).is_ok_and(|s| s.trim() == lock.sha256);
    if verified && headers_present(&tree) {
        if tree.join(TEST_CAPTURES).is_dir() {
            println!(
                "xtask ndpi: {} is already there, unpacked from a verified archive: nothing to do",
                rel(&root, &tree)
            );
            return Ok(());
        }
        let archive = verified_archive(args, &lock, &root)?;
        unpack_members(&archive, &lock, &tree, TEST_CAPTURES)?;
        println!("xtask ndpi: added nDPI's test captures to {}", rel(&root, &tree.join(TEST_CAPTURES)));
        return Ok(());
    }

    let archive = verified_archive(args, &lock, &root)?;
    unpack(&archive, &lock, &tree)?;
    println!("xtask ndpi: unpacked the library sources and test captures into {}", rel(&root, &tree));
    generate_headers(&tree, &lock)?;
    println!("xtask ndpi: generated src/include/ndpi_define.h, ndpi_api.h and ndpi_config.h (configure's output for nDPI {})", lock.version);
    fs::write(tree.join(STAMP), format!("{}\n", lock.sha256))?;
    println!("xtask ndpi: done; callflow-ndpi-sys now builds nDPI {} from {}", lock.version, rel(&root, &tree));
    Ok(())
}

/// The archive, from `--archive`, from an earlier download in `target/ndpi/`, or downloaded
/// now; refused unless its SHA-256 is the lock file's.
fn verified_archive(args: &Args, lock: &Lock, root: &Path) -> Result<PathBuf> {
    let work = root.join("target/ndpi");
    fs::create_dir_all(&work).with_context(|| format!("creating {}", work.display()))?;
    let archive = match &args.archive {
        Some(path) => {
            println!("xtask ndpi: using the archive given, {}", path.display());
            path.clone()
        }
        None => {
            let cached = work.join(&lock.archive);
            if cached.is_file() && sha256_of(&cached)? == lock.sha256 {
                println!("xtask ndpi: using the archive downloaded earlier, {}", rel(root, &cached));
            } else {
                download_with_apt(lock, &work)?;
            }
            cached
        }
    };

    let digest = sha256_of(&archive)?;
    ensure!(
        digest == lock.sha256,
        "{} has SHA-256 {digest}, but vendor/ndpi.lock pins {}: refusing it",
        archive.display(),
        lock.sha256
    );
    println!("xtask ndpi: SHA-256 {digest} matches vendor/ndpi.lock");
    Ok(archive)
}

fn rel(root: &Path, path: &Path) -> String {
    path.strip_prefix(root).unwrap_or(path).display().to_string()
}

fn parse_lock(text: &str) -> Result<Lock> {
    let get = |key: &str| -> Result<String> {
        text.lines()
            .filter_map(|l| l.split_once('='))
            .find(|(k, _)| k.trim() == key)
            .map(|(_, v)| v.trim().trim_matches('"').to_string())
            .with_context(|| format!("vendor/ndpi.lock has no `{key}`"))
    };
    let lock = Lock {
        version: get("version")?,
        debian_source: get("debian_source")?,
        debian_version: get("debian_version")?,
        archive: get("archive")?,
        sha256: get("sha256")?.to_ascii_lowercase(),
    };
    ensure!(
        lock.sha256.len() == 64 && lock.sha256.bytes().all(|b| b.is_ascii_hexdigit()),
        "vendor/ndpi.lock: sha256 is not 64 hex digits"
    );
    Ok(lock)
}

/// The archive's SHA-256 through coreutils' `sha256sum`, which every Debian machine has,
/// rather than a hashing crate that xtask would have to build on a fresh machine.
fn sha256_of(path: &Path) -> Result<String> {
    let out = Command::new("sha256sum").arg(path).output().context("running sha256sum")?;
    ensure!(
        out.status.success(),
        "sha256sum {} failed: {}",
        path.display(),
        String::from_utf8_lossy(&out.stderr).trim()
    );
    let text = String::from_utf8_lossy(&out.stdout);
    Ok(text.split_whitespace().next().unwrap_or_default().to_ascii_lowercase())
}

/// The `deb-src` twins of the `deb` entries of a one-line-style sources list (`*.list`).
fn deb_src_one_line(text: &str) -> Vec<String> {
    text.lines()
        .map(str::trim)
        .filter_map(|line| line.strip_prefix("deb ").or_else(|| line.strip_prefix("deb\t")))
        .map(|rest| format!("deb-src {}", rest.trim()))
        .collect()
}

/// The `deb-src` twins of the enabled `deb` stanzas of a deb822 sources file (`*.sources`):
/// each stanza is kept as written (Signed-By may be an inline key) with `Types: deb-src`.
fn deb_src_deb822(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    for stanza in text.split("\n\n").map(str::trim).filter(|s| !s.is_empty()) {
        let field = |name: &str| {
            stanza.lines().find_map(|l| {
                let (k, v) = l.split_once(':')?;
                k.trim().eq_ignore_ascii_case(name).then(|| v.trim().to_string())
            })
        };
        let has_deb = field("Types").is_some_and(|t| t.split_whitespace().any(|t| t == "deb"));
        let disabled = field("Enabled").is_some_and(|e| e.eq_ignore_ascii_case("no"));
        if !has_deb || disabled {
            continue;
        }
        let lines: Vec<String> = stanza
            .lines()
            .filter(|l| !l.trim_start().starts_with('#'))
            .map(|l| match l.split_once(':') {
                Some((k, _)) if k.trim().eq_ignore_ascii_case("Types") => "Types: deb-src".to_string(),
                _ => l.to_string(),
            })
            .collect();
        out.push(lines.join("\n"));
    }
    out
}

/// Runs `apt-get update` and `apt-get source --download-only` in a private apt state
/// directory under `work`, leaving the source package's files in `work`.
fn download_with_apt(lock: &Lock, work: &Path) -> Result<()> {
    ensure!(
        Command::new("apt-get").arg("--version").output().is_ok_and(|o| o.status.success()),
        "apt-get is not available: download {} yourself and run `cargo xtask ndpi --archive PATH`",
        lock.archive
    );
    let apt = work.join("apt");
    let parts = apt.join("etc/sources.list.d");
    for dir in [apt.join("lists/partial"), apt.join("cache/archives/partial"), parts.clone()] {
        fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    }

    let mut one_line = Vec::new();
    let mut deb822 = Vec::new();
    let mut read_from = Vec::new();
    let mut files = vec![PathBuf::from("/etc/apt/sources.list")];
    if let Ok(entries) = fs::read_dir("/etc/apt/sources.list.d") {
        let mut names: Vec<PathBuf> = entries.flatten().map(|e| e.path()).collect();
        names.sort();
        files.extend(names);
    }
    for file in files {
        let Ok(text) = fs::read_to_string(&file) else { continue };
        let name = file.to_string_lossy();
        let before = one_line.len() + deb822.len();
        if name.ends_with(".list") {
            one_line.extend(deb_src_one_line(&text));
        } else if name.ends_with(".sources") {
            deb822.extend(deb_src_deb822(&text));
        }
        if one_line.len() + deb822.len() > before {
            read_from.push(name.into_owned());
        }
    }
    ensure!(
        !one_line.is_empty() || !deb822.is_empty(),
        "no `deb` entries in /etc/apt/sources.list or /etc/apt/sources.list.d: download {} yourself and run \
         `cargo xtask ndpi --archive PATH`",
        lock.archive
    );
    // The derived lists are rewritten on every run, so a changed machine configuration is followed.
    fs::write(apt.join("etc/sources.list"), one_line.join("\n") + "\n")?;
    fs::write(parts.join("derived.sources"), deb822.join("\n\n") + "\n")?;
    println!(
        "xtask ndpi: deb-src entries derived from {} into a private apt directory, {}",
        read_from.join(", "),
        apt.display()
    );

    let private = |command: &mut Command| {
        for (key, value) in [
            ("Dir::State", apt.as_path()),
            ("Dir::State::Lists", &apt.join("lists")),
            ("Dir::Cache", &apt.join("cache")),
            ("Dir::Etc::SourceList", &apt.join("etc/sources.list")),
            ("Dir::Etc::SourceParts", &parts),
        ] {
            command.arg("-o").arg(format!("{key}={}", value.display()));
        }
        // The real dpkg status is only read; locking is skipped because nothing of the
        // system's is written, and it lets the task run without root.
        command.args(["-o", "Dir::State::status=/var/lib/dpkg/status", "-o", "Debug::NoLocking=1", "-q"]);
        if crate::test::is_root() {
            // apt's download sandbox user cannot write into a root-owned private directory.
            command.args(["-o", "APT::Sandbox::User=root"]);
        }
    };

    println!("xtask ndpi: apt-get update (private state; source indexes only)");
    let mut update = Command::new("apt-get");
    private(&mut update);
    update.arg("update");
    if !update.status().context("running apt-get update")?.success() {
        // A third-party repository without source indexes fails the update but not the Debian ones.
        println!("xtask ndpi: apt-get update reported errors; trying the download anyway");
    }

    let spec = format!("{}={}", lock.debian_source, lock.debian_version);
    println!("xtask ndpi: apt-get source --download-only {spec}");
    let mut source = Command::new("apt-get");
    private(&mut source);
    source.args(["source", "--download-only", &spec]).current_dir(work);
    let ok = source.status().context("running apt-get source")?.success();
    // Only the upstream archive matters: a missing Debian patch tarball (some mirrors have
    // dropped old ones) fails apt-get while leaving the archive in place.
    if !work.join(&lock.archive).is_file() {
        bail!(
            "apt-get source --download-only {spec} did not produce {}: enable a Debian bookworm source, \
             or download the archive and run `cargo xtask ndpi --archive PATH`",
            lock.archive
        );
    }
    if !ok {
        println!("xtask ndpi: apt-get source reported errors, but {} was downloaded", lock.archive);
    }
    Ok(())
}

/// Where nDPI's test captures go in the tree (as in the archive).
const TEST_CAPTURES: &str = "tests/pcap";

/// The parts of the archive the library build needs, its licence and changelog, and the
/// test captures.
fn wanted_members(prefix: &str) -> Vec<String> {
    ["src/include", "src/lib", "COPYING", "README.md", "CHANGELOG.md", TEST_CAPTURES]
        .iter()
        .map(|m| format!("{prefix}/{m}"))
        .collect()
}

/// Unpacks into a temporary sibling first and renames, so an interrupted run never
/// leaves a half-unpacked tree that looks complete.
fn unpack(archive: &Path, lock: &Lock, tree: &Path) -> Result<()> {
    let prefix = format!("nDPI-{}", lock.version);
    let tmp = extract(archive, lock, tree, &wanted_members(&prefix))?;
    if tree.exists() {
        fs::remove_dir_all(tree).with_context(|| format!("removing the old {}", tree.display()))?;
    }
    fs::rename(tmp.join(&prefix), tree)?;
    fs::remove_dir_all(&tmp)?;
    Ok(())
}

/// Adds one directory of the archive (`member`, relative to its top) to an existing tree,
/// through a temporary sibling and a rename, so that an interrupted run leaves no half
/// directory that looks complete.
fn unpack_members(archive: &Path, lock: &Lock, tree: &Path, member: &str) -> Result<()> {
    let prefix = format!("nDPI-{}", lock.version);
    let tmp = extract(archive, lock, tree, &[format!("{prefix}/{member}")])?;
    let target = tree.join(member);
    fs::create_dir_all(target.parent().context("member's parent")?)?;
    fs::rename(tmp.join(&prefix).join(member), &target)
        .with_context(|| format!("moving the unpacked {member} to {}", target.display()))?;
    fs::remove_dir_all(&tmp)?;
    Ok(())
}

/// Extracts `members` of the archive into a fresh temporary directory beside `tree`
/// (`.nDPI-VERSION.partial`, emptied first) and returns it.
fn extract(archive: &Path, lock: &Lock, tree: &Path, members: &[String]) -> Result<PathBuf> {
    let tmp = tree.parent().context("vendor dir")?.join(format!(".nDPI-{}.partial", lock.version));
    if tmp.exists() {
        fs::remove_dir_all(&tmp)?;
    }
    fs::create_dir_all(&tmp)?;
    let status = Command::new("tar")
        .arg("-xzf")
        .arg(archive)
        .arg("-C")
        .arg(&tmp)
        .args(members)
        .status()
        .context("running tar")?;
    ensure!(status.success(), "tar could not unpack {} from {}", members.join(" "), archive.display());
    Ok(tmp)
}

fn headers_present(tree: &Path) -> bool {
    ["ndpi_define.h", "ndpi_api.h", "ndpi_config.h"].iter().all(|h| tree.join("src/include").join(h).is_file())
}

/// Writes what `./configure` would: the two `.h.in` substitutions, and `ndpi_config.h`
/// for a Linux build without the optional libraries (libgcrypt, libmaxminddb, libpcre).
/// libgcrypt, which nDPI needs to read QUIC's first packets, is added at build time by
/// callflow-ndpi-sys's build script when pkg-config finds it; GeoIP and regular
/// expressions are not used by callflowd.
fn generate_headers(tree: &Path, lock: &Lock) -> Result<()> {
    let include = tree.join("src/include");
    let (major, minor) = lock.version.split_once('.').context("version is MAJOR.MINOR")?;
    let patch = "0";
    let define_in = fs::read_to_string(include.join("ndpi_define.h.in"))?;
    let define = substitute(&define_in, &[("NDPI_MAJOR", major), ("NDPI_MINOR", minor), ("NDPI_PATCH", patch)])?;
    fs::write(include.join("ndpi_define.h"), define)?;
    let api_in = fs::read_to_string(include.join("ndpi_api.h.in"))?;
    fs::write(include.join("ndpi_api.h"), substitute(&api_in, &[("NDPI_API_VERSION", API_VERSION)])?)?;
    let full = format!("{major}.{minor}.{patch}");
    let config = format!(
        "/* Generated by cargo xtask ndpi: what nDPI's configure writes on Linux without optional libraries. */\n\
         #define HAVE_FLOAT_H 1\n#define HAVE_INTTYPES_H 1\n#define HAVE_MATH_H 1\n#define HAVE_NETINET_IN_H 1\n\
         #define HAVE_PTHREAD 1\n#define HAVE_STDINT_H 1\n#define HAVE_STDIO_H 1\n#define HAVE_STDLIB_H 1\n\
         #define HAVE_STRINGS_H 1\n#define HAVE_STRING_H 1\n#define HAVE_SYS_STAT_H 1\n#define HAVE_SYS_TYPES_H 1\n\
         #define HAVE_UNISTD_H 1\n#define NDPI_GIT_DATE \"{GIT_DATE}\"\n#define NDPI_GIT_RELEASE \"{full}\"\n\
         #define NDPI_MAJOR_RELEASE \"{major}\"\n#define NDPI_MINOR_RELEASE \"{minor}\"\n#define NDPI_PATCH_LEVEL \"{patch}\"\n\
         #define PACKAGE \"libndpi\"\n#define PACKAGE_NAME \"libndpi\"\n#define PACKAGE_STRING \"libndpi {full}\"\n\
         #define PACKAGE_TARNAME \"libndpi\"\n#define PACKAGE_VERSION \"{full}\"\n#define STDC_HEADERS 1\n\
         #define VERSION \"{full}\"\n"
    );
    fs::write(include.join("ndpi_config.h"), config)?;
    Ok(())
}

/// Replaces each `@NAME@`; a placeholder left over means the template is not the one this
/// task was written for, which must be an error rather than a header that does not compile.
fn substitute(template: &str, values: &[(&str, &str)]) -> Result<String> {
    let mut out = template.to_string();
    for (name, value) in values {
        let key = format!("@{name}@");
        ensure!(out.contains(&key), "template has no {key}");
        out = out.replace(&key, value);
    }
    if let Some(left) = out.lines().find(|l| l.starts_with("#define") && l.contains("@NDPI")) {
        bail!("unsubstituted placeholder left: {left}");
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_committed_lock_file_parses() {
        let text = fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("../vendor/ndpi.lock")).unwrap();
        let lock = parse_lock(&text).unwrap();
        assert_eq!(lock.version, "4.2");
        assert_eq!(lock.debian_version, "4.2-2");
        assert_eq!(lock.archive, "ndpi_4.2.orig.tar.gz");
        assert_eq!(lock.sha256, "e54ce8fe13adc5d747be7553513657fae78f796e0bd459e122c280cc06ce4daf");
    }

    #[test]
    fn one_line_entries_get_deb_src_twins() {
        let list = "# comment\ndeb [signed-by=/k.gpg] http://mirror.invalid/debian bookworm main\n\
                    deb-src http://mirror.invalid/debian bookworm main\n  deb http://x.invalid/ stable contrib\n";
        assert_eq!(
            deb_src_one_line(list),
            [
                "deb-src [signed-by=/k.gpg] http://mirror.invalid/debian bookworm main",
                "deb-src http://x.invalid/ stable contrib"
            ]
        );
    }

    #[test]
    fn deb822_stanzas_keep_their_fields_and_skip_disabled_ones() {
        let sources =
            "Types: deb\n# a comment\nURIs: http://mirror.invalid/debian\nSuites: bookworm bookworm-updates\n\
                       Components: main\nSigned-By: /usr/share/keyrings/k.gpg\n\n\
                       Types: deb\nURIs: http://off.invalid/\nSuites: x\nComponents: main\nEnabled: no\n\n\
                       Types: deb-src\nURIs: http://src.invalid/\nSuites: y\nComponents: main\n";
        assert_eq!(
            deb_src_deb822(sources),
            ["Types: deb-src\nURIs: http://mirror.invalid/debian\nSuites: bookworm bookworm-updates\n\
              Components: main\nSigned-By: /usr/share/keyrings/k.gpg"]
        );
    }

    #[test]
    fn a_tree_without_the_test_captures_gets_them_added_and_keeps_the_rest() {
        let dir = std::env::temp_dir().join(format!("xtask-ndpi-members-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        let source = dir.join("source/nDPI-4.2/tests/pcap");
        fs::create_dir_all(&source).unwrap();
        fs::write(source.join("a.pcap"), b"capture").unwrap();
        let archive = dir.join("ndpi.tar.gz");
        let mut tar = Command::new("tar");
        tar.arg("-czf").arg(&archive).arg("-C").arg(dir.join("source")).arg("nDPI-4.2");
        assert!(tar.status().unwrap().success());
        let tree = dir.join("vendor/nDPI-4.2");
        fs::create_dir_all(tree.join("src")).unwrap();
        fs::write(tree.join(STAMP), "x").unwrap();
        let lock = Lock {
            version: "4.2".into(),
            debian_source: String::new(),
            debian_version: String::new(),
            archive: String::new(),
            sha256: String::new(),
        };
        unpack_members(&archive, &lock, &tree, TEST_CAPTURES).unwrap();
        assert_eq!(fs::read(tree.join("tests/pcap/a.pcap")).unwrap(), b"capture");
        assert!(tree.join(STAMP).is_file() && tree.join("src").is_dir());
        assert!(!dir.join("vendor/.nDPI-4.2.partial").exists(), "the temporary directory is removed");
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn substitution_fails_on_a_missing_or_leftover_placeholder() {
        assert_eq!(substitute("#define A @X@\n", &[("X", "4")]).unwrap(), "#define A 4\n");
        assert!(substitute("#define A 1\n", &[("X", "4")]).is_err());
        assert!(substitute("#define A @X@\n#define B @NDPI_Y@\n", &[("X", "4")]).is_err());
    }
}
