//! A throwaway PostgreSQL cluster for tests, from Debian's binaries: `initdb` into a temporary directory as an unprivileged user, `pg_ctl start` on a free loopback port with `fsync=off`, stopped and removed when the test process exits.
//!
//! Without PostgreSQL installed the tests that need it say so and pass, unless `CI` is set:
//! then they fail (`cargo xtask test` and `.ci/run` install the `postgresql` package).
//! As root (CI), the cluster runs as `nobody`, since PostgreSQL refuses to run as root.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::OnceLock;

/// A running cluster; its superuser `postgres` logs in without a password over TCP.
#[derive(Debug)]
pub struct Cluster {
    /// Its data directory (which also holds its Unix socket and its log).
    pub dir: PathBuf,
    /// Its port on 127.0.0.1.
    pub port: u16,
    bin: PathBuf,
    /// The server's options (`pg_ctl -o`), to start it again as it was.
    options: String,
}

/// TLS settings for [`Cluster::start`]: the server's certificate and key (PEM), and whether
/// connections without TLS are refused.
pub struct Tls<'a> {
    pub cert: &'a Path,
    pub key: &'a Path,
}

/// Where Debian's PostgreSQL binaries are (the newest version installed), if anywhere.
pub fn binaries() -> Option<PathBuf> {
    let mut found: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .ok()?
        .flatten()
        .filter_map(|e| {
            let version = e.file_name().to_str()?.parse().ok()?;
            let bin = e.path().join("bin");
            bin.join("initdb").exists().then_some((version, bin))
        })
        .collect();
    found.sort();
    found.pop().map(|(_, bin)| bin)
}

/// The binaries, or `None` after saying why the test is skipped; in CI a missing
/// PostgreSQL fails the test instead.
pub fn binaries_or_skip(test: &str) -> Option<PathBuf> {
    match binaries() {
        Some(bin) => Some(bin),
        None if std::env::var_os("CI").is_some() => {
            panic!("{test}: PostgreSQL is not installed (/usr/lib/postgresql/*/bin/initdb) and CI is set")
        }
        None => {
            eprintln!("{test}: skipped: PostgreSQL is not installed (apt-get install postgresql)");
            None
        }
    }
}

/// The cluster shared by the tests of this process, started on first use; `None` (the
/// test is skipped, having said so) without PostgreSQL.
pub fn shared(test: &str) -> Option<&'static Cluster> {
    static SHARED: OnceLock<Option<Cluster>> = OnceLock::new();
    let bin = binaries_or_skip(test)?;
    SHARED.get_or_init(|| Some(Cluster::start(&bin, None))).as_ref()
}

/// A new, empty database on the shared cluster, as a URL; `None`: skipped.
pub fn database(test: &str) -> Option<String> {
    let cluster = shared(test)?;
    Some(cluster.create_database())
}

fn is_root() -> bool {
    Command::new("id").arg("-u").output().is_ok_and(|o| o.stdout.trim_ascii() == b"0")
}

/// `nobody`'s uid and gid.
fn nobody() -> (u32, u32) {
    let id = |flag: &str| {
        let out = Command::new("id").args([flag, "nobody"]).output().expect("id runs");
        String::from_utf8_lossy(&out.stdout).trim().parse().expect("nobody exists")
    };
    (id("-u"), id("-g"))
}

/// A command run as the cluster's owner: `nobody` when we are root.
fn as_owner(program: &Path) -> Command {
    if is_root() {
        let mut c = Command::new("runuser");
        c.args(["-u", "nobody", "--"]).arg(program);
        c
    } else {
        Command::new(program)
    }
}

/// Gives `path` to the cluster's owner (when we are root).
fn chown(path: &Path) {
    if is_root() {
        let (uid, gid) = nobody();
        std::os::unix::fs::chown(path, Some(uid), Some(gid)).unwrap();
    }
}

fn run(mut command: Command, what: &str) {
    let out = command.stdin(Stdio::null()).output().unwrap_or_else(|e| panic!("{what}: {e}"));
    assert!(
        out.status.success(),
        "{what} failed: {}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

impl Cluster {
    /// Creates and starts a cluster; with `tls`, connections must use TLS.
    pub fn start(bin: &Path, tls: Option<Tls<'_>>) -> Cluster {
        static N: AtomicU32 = AtomicU32::new(0);
        let dir = std::env::temp_dir().join(format!(
            "callflow-pg-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        chown(&dir);
        let data = dir.join("data");
        let mut initdb = as_owner(&bin.join("initdb"));
        initdb.current_dir(&dir).arg("-D").arg(&data).args([
            "-U",
            "postgres",
            "--auth=trust",
            "-E",
            "UTF8",
            "--no-sync",
        ]);
        run(initdb, "initdb");
        let mut options = String::from("-c listen_addresses=127.0.0.1 -c fsync=off -c synchronous_commit=off");
        options.push_str(" -c full_page_writes=off -c max_connections=200");
        if let Some(tls) = tls {
            for (from, name) in [(tls.cert, "server.crt"), (tls.key, "server.key")] {
                let to = data.join(name);
                std::fs::copy(from, &to).unwrap();
                std::fs::set_permissions(&to, std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();
                chown(&to);
            }
            options.push_str(" -c ssl=on -c ssl_cert_file=server.crt -c ssl_key_file=server.key");
            std::fs::write(
                data.join("pg_hba.conf"),
                "local all all trust\nhostssl all all 127.0.0.1/32 trust\nhostnossl all all 127.0.0.1/32 reject\n",
            )
            .unwrap();
        }
        // A port found free may be taken before the server binds it: a few tries.
        for attempt in 0.. {
            let port = free_port();
            let options = format!("-p {port} -k {} {options}", dir.display());
            let cluster = Cluster { options, dir: dir.clone(), port, bin: bin.to_path_buf() };
            if cluster.pg_ctl_start() {
                cluster.remove_on_exit();
                return cluster;
            }
            let log = std::fs::read_to_string(dir.join("log")).unwrap_or_default();
            assert!(attempt < 3, "pg_ctl start failed 4 times; its log:\n{log}");
        }
        unreachable!()
    }

    fn pg_ctl_start(&self) -> bool {
        let mut start = as_owner(&self.bin.join("pg_ctl"));
        start.current_dir(&self.dir).arg("-D").arg(self.dir.join("data")).arg("-l").arg(self.dir.join("log")).args([
            "-w",
            "-t",
            "60",
            "-o",
            &self.options,
            "start",
        ]);
        start.stdin(Stdio::null()).stdout(Stdio::null()).status().is_ok_and(|s| s.success())
    }

    /// Stops the server (`pg_ctl stop -m fast`: open connections are closed).
    pub fn stop(&self) {
        let mut stop = as_owner(&self.bin.join("pg_ctl"));
        stop.current_dir(&self.dir).arg("-D").arg(self.dir.join("data")).args(["-w", "-m", "fast", "stop"]);
        run(stop, "pg_ctl stop");
    }

    /// Starts the server again after [`Cluster::stop`], on the same port.
    pub fn start_again(&self) {
        assert!(
            self.pg_ctl_start(),
            "pg_ctl start again: {}",
            std::fs::read_to_string(self.dir.join("log")).unwrap_or_default()
        );
    }

    /// Stops the server and removes its directory once this test process has exited: a
    /// watcher outlives it, so a test that panics leaves nothing behind either.
    fn remove_on_exit(&self) {
        let pid = self.dir.join("data/postmaster.pid");
        let script = format!(
            "while kill -0 {me} 2>/dev/null; do sleep 0.5; done; \
             pm=$(head -1 '{pid}' 2>/dev/null); [ -n \"$pm\" ] && kill -QUIT \"$pm\" 2>/dev/null; \
             for i in $(seq 1 40); do [ -n \"$pm\" ] && kill -0 \"$pm\" 2>/dev/null || break; sleep 0.25; done; \
             rm -rf '{dir}'",
            me = std::process::id(),
            pid = pid.display(),
            dir = self.dir.display()
        );
        // In the background of a shell that returns at once: the watcher is nobody's child.
        let started = Command::new("sh")
            .args(["-c", &format!("({script}) </dev/null >/dev/null 2>&1 &")])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .expect("the cluster's watcher starts");
        assert!(started.success());
    }

    /// A URL to database `db` as the superuser, with `query` appended (`sslmode=...`).
    pub fn url(&self, db: &str, query: &str) -> String {
        let sep = if query.is_empty() { "" } else { "?" };
        format!("postgres://postgres@127.0.0.1:{}/{db}{sep}{query}", self.port)
    }

    /// Runs SQL with psql on database `db` over the Unix socket, returning its output.
    pub fn psql(&self, db: &str, sql: &str) -> String {
        let out = Command::new(self.bin.join("psql"))
            .args(["-X", "-q", "-t", "-A", "-v", "ON_ERROR_STOP=1", "-h"])
            .arg(&self.dir)
            .args(["-p", &self.port.to_string(), "-U", "postgres", "-d", db, "-c", sql])
            .stdin(Stdio::null())
            .output()
            .expect("psql runs");
        assert!(out.status.success(), "psql {sql}: {}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    }

    /// A new, empty database, as a URL.
    pub fn create_database(&self) -> String {
        static N: AtomicU32 = AtomicU32::new(0);
        let name = format!("test_{}", N.fetch_add(1, Ordering::Relaxed));
        self.psql("postgres", &format!("CREATE DATABASE {name}"));
        self.url(&name, "")
    }
}
