//! The shared capture volume's check at start: the node can write to its directories, and they belong to the same cluster as the job store.
//!
//! Nodes of one store share `upload_dir` and `results_dir` (NFS, CephFS, EFS...). Each
//! directory holds a file, [`CLUSTER_FILE`], with the id of the cluster whose store it
//! belongs to ([`JobStore::cluster_id`](crate::JobStore::cluster_id)), written by the
//! first node that starts on it. A node whose store has another id is pointed at another
//! cluster's files (a mistyped mount or path): it refuses to start, naming both ids and the
//! directory, since its retention sweep and clean-ups would delete that cluster's captures.

use crate::store::{JobStore, StoreError};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

/// The file in each shared directory that names its cluster.
pub const CLUSTER_FILE: &str = ".callflow-cluster";

/// Why a node may not use its directories.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum VolumeError {
    /// The directory cannot be created or written to.
    #[error("cannot write to {dir}: {source}")]
    Unwritable {
        /// The directory.
        dir: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The directory belongs to another cluster than the store.
    #[error(
        "{dir} belongs to cluster {found} but the job store {store} is cluster {expected}: this node is \
         pointed at another cluster's files (check the mount and [storage]); it refuses to start rather \
         than delete that cluster's captures"
    )]
    OtherCluster {
        /// The directory.
        dir: PathBuf,
        /// The id its [`CLUSTER_FILE`] holds.
        found: String,
        /// The store's id.
        expected: String,
        /// The store, for the message (a path, or a URL without its password).
        store: String,
    },
    /// The store could not say its id.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// A new cluster id: 128 random bits from the kernel, in hex.
pub(crate) fn new_cluster_id() -> std::io::Result<String> {
    let mut bytes = [0u8; 16];
    std::fs::File::open("/dev/urandom")?.read_exact(&mut bytes)?;
    Ok(bytes.iter().map(|b| format!("{b:02x}")).collect())
}

/// Checks that `dirs` (created if missing) can be written to and belong to `store`'s
/// cluster, writing its id into those that have none yet; returns the id. `store_name`
/// names the store in messages.
pub fn check_volume(store: &dyn JobStore, store_name: &str, dirs: &[&Path]) -> Result<String, VolumeError> {
    let expected = store.cluster_id()?;
    for dir in dirs {
        let unwritable = |source| VolumeError::Unwritable { dir: dir.to_path_buf(), source };
        std::fs::create_dir_all(dir).map_err(unwritable)?;
        // A write, not a permission bit: a read-only mount or a full volume says so here.
        let probe = dir.join(format!(".callflow-write-check-{}", std::process::id()));
        std::fs::write(&probe, b"ok").map_err(unwritable)?;
        std::fs::remove_file(&probe).map_err(unwritable)?;
        let file = dir.join(CLUSTER_FILE);
        // Created whole or not at all: written beside it and linked into place, so that
        // two nodes starting together never read a half-written id.
        if !file.exists() {
            let tmp = dir.join(format!("{CLUSTER_FILE}.{}", std::process::id()));
            let mut f = std::fs::File::create(&tmp).map_err(unwritable)?;
            f.write_all(format!("{expected}\n").as_bytes()).and_then(|()| f.sync_all()).map_err(unwritable)?;
            // `hard_link` fails if another node's file got there first: then it is read.
            let _ = std::fs::hard_link(&tmp, &file);
            let _ = std::fs::remove_file(&tmp);
        }
        let found = std::fs::read_to_string(&file).map_err(unwritable)?.trim().to_string();
        if found != expected {
            return Err(VolumeError::OtherCluster {
                dir: dir.to_path_buf(),
                found,
                expected,
                store: store_name.to_string(),
            });
        }
    }
    Ok(expected)
}
