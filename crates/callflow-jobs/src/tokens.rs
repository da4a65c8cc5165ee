//! Login tokens and share links kept in the store, so that every node on one database accepts a token any of them issued, opens a share link any of them made, and sees a logout or a revocation made on any of them.
//!
//! Only the SHA-256 digest of a token is stored: someone who reads the database cannot
//! use what is in it. A logout deletes the token and appends a revocation, which other
//! nodes read every second ([`TokenStore::token_revocations`]) to drop the token from
//! their own caches and close the streams opened with it.
//!
//! Revocations are numbered by the database (a sequence on PostgreSQL, SQLite's rowid),
//! and on PostgreSQL a number can become visible after a higher one (two logouts
//! committing in the other order). So a reader does not move its cursor past a revocation
//! younger than [`SETTLED_MS`]: those are read again at the next poll, which is harmless,
//! a revocation being idempotent.
//!
//! A share link (a read-only link to one call) is kept the same way, by its digest, with
//! the job and session it opens; nodes keep no copy, so a revoked or expired link is
//! refused on every node at once.

use crate::postgres::PgStore;
use crate::sqlite::SqliteStore;
use crate::store::StoreError;
use crate::JobId;
use rusqlite::{params, OptionalExtension};

/// The SHA-256 digest of a token's text.
pub type TokenDigest = [u8; 32];

/// A revocation older than this (ms, by the revoking node's clock) is surely visible to
/// every reader: commits take milliseconds, and node clocks differ by less than this.
pub const SETTLED_MS: i64 = 60_000;

/// One revocation, as [`TokenStore::token_revocations`] reads it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Revocation {
    /// Its number, increasing.
    pub seq: i64,
    /// The token's digest.
    pub digest: TokenDigest,
    /// When it was revoked (ms since the epoch).
    pub at: i64,
}

/// Where login tokens are shared; both store backends implement it.
pub trait TokenStore: Send + Sync {
    /// Keeps a token until `expires` (ms since the epoch).
    fn put_token(&self, digest: &TokenDigest, expires: i64) -> Result<(), StoreError>;
    /// When the token expires, if it is known, not revoked and not expired at `now`.
    fn token_expiry(&self, digest: &TokenDigest, now: i64) -> Result<Option<i64>, StoreError>;
    /// Forgets the token and records its revocation for the other nodes (also when this
    /// store did not know it: another node may have issued it and the put be in flight).
    fn revoke_token(&self, digest: &TokenDigest, now: i64) -> Result<(), StoreError>;
    /// Revocations numbered above `after`, oldest first, at most `limit`.
    fn token_revocations(&self, after: i64, limit: usize) -> Result<Vec<Revocation>, StoreError>;
    /// Forgets tokens expired at `now`, and revocations older than `keep_ms`.
    fn sweep_tokens(&self, now: i64, keep_ms: i64) -> Result<(), StoreError>;

    /// Keeps a share link until `expires` (ms since the epoch): the job and session it opens.
    fn put_share(&self, digest: &TokenDigest, job: JobId, session: &str, expires: i64) -> Result<(), StoreError>;
    /// The job and session a share link opens, if it is known and not expired at `now`.
    fn share(&self, digest: &TokenDigest, now: i64) -> Result<Option<(JobId, String)>, StoreError>;
    /// Forgets a share link; false when there was no valid one at `now`.
    fn revoke_share(&self, digest: &TokenDigest, now: i64) -> Result<bool, StoreError>;
    /// Forgets the share links expired at `now`, and counts those left.
    fn sweep_shares(&self, now: i64) -> Result<u64, StoreError>;
}

/// Where a reader of revocations goes on from, having read `read` after `cursor`:
/// past every revocation up to the first one not yet settled at `now`.
pub fn next_cursor(cursor: i64, read: &[Revocation], now: i64) -> i64 {
    read.iter().take_while(|r| r.at <= now - SETTLED_MS).last().map_or(cursor, |r| r.seq)
}

fn digest_of(bytes: &[u8]) -> Option<TokenDigest> {
    bytes.try_into().ok()
}

impl TokenStore for SqliteStore {
    fn put_token(&self, digest: &TokenDigest, expires: i64) -> Result<(), StoreError> {
        self.conn().execute(
            "INSERT INTO login_tokens (digest, expires_at) VALUES (?1, ?2)
             ON CONFLICT (digest) DO UPDATE SET expires_at = excluded.expires_at",
            params![&digest[..], expires],
        )?;
        Ok(())
    }

    fn token_expiry(&self, digest: &TokenDigest, now: i64) -> Result<Option<i64>, StoreError> {
        let conn = self.reader();
        let mut stmt =
            conn.prepare_cached("SELECT expires_at FROM login_tokens WHERE digest = ?1 AND expires_at > ?2")?;
        Ok(stmt.query_row(params![&digest[..], now], |row| row.get(0)).optional()?)
    }

    fn revoke_token(&self, digest: &TokenDigest, now: i64) -> Result<(), StoreError> {
        let mut conn = self.conn();
        let tx = conn.transaction()?;
        tx.execute("DELETE FROM login_tokens WHERE digest = ?1", [&digest[..]])?;
        tx.execute("INSERT INTO token_revocations (digest, revoked_at) VALUES (?1, ?2)", params![&digest[..], now])?;
        tx.commit()?;
        Ok(())
    }

    fn token_revocations(&self, after: i64, limit: usize) -> Result<Vec<Revocation>, StoreError> {
        let conn = self.reader();
        let mut stmt = conn.prepare_cached(
            "SELECT seq, digest, revoked_at FROM token_revocations WHERE seq > ?1 ORDER BY seq LIMIT ?2",
        )?;
        let rows = stmt.query_map(params![after, limit as i64], |row| {
            Ok((row.get::<_, i64>(0)?, row.get::<_, Vec<u8>>(1)?, row.get::<_, i64>(2)?))
        })?;
        let mut out = Vec::new();
        for row in rows {
            let (seq, digest, at) = row?;
            // A row of another length was not written by this code: skipped, not trusted.
            if let Some(digest) = digest_of(&digest) {
                out.push(Revocation { seq, digest, at });
            }
        }
        Ok(out)
    }

    fn sweep_tokens(&self, now: i64, keep_ms: i64) -> Result<(), StoreError> {
        let mut conn = self.conn();
        let tx = conn.transaction()?;
        tx.execute("DELETE FROM login_tokens WHERE expires_at <= ?1", [now])?;
        tx.execute("DELETE FROM token_revocations WHERE revoked_at < ?1", [now - keep_ms])?;
        tx.commit()?;
        Ok(())
    }

    fn put_share(&self, digest: &TokenDigest, job: JobId, session: &str, expires: i64) -> Result<(), StoreError> {
        self.conn().execute(
            "INSERT INTO share_links (digest, job_id, session_id, expires_at) VALUES (?1, ?2, ?3, ?4)",
            params![&digest[..], job.key(), session, expires],
        )?;
        Ok(())
    }

    fn share(&self, digest: &TokenDigest, now: i64) -> Result<Option<(JobId, String)>, StoreError> {
        let conn = self.reader();
        let mut stmt = conn.prepare_cached(
            "SELECT s.job_id, j.uuid, s.session_id FROM share_links s JOIN jobs j ON j.id = s.job_id
             WHERE s.digest = ?1 AND s.expires_at > ?2",
        )?;
        let row = stmt.query_row(params![&digest[..], now], |r| Ok((crate::sqlite::job_id(r, 0, 1)?, r.get(2)?)));
        Ok(row.optional()?)
    }

    fn revoke_share(&self, digest: &TokenDigest, now: i64) -> Result<bool, StoreError> {
        let removed = self
            .conn()
            .execute("DELETE FROM share_links WHERE digest = ?1 AND expires_at > ?2", params![&digest[..], now])?;
        Ok(removed > 0)
    }

    fn sweep_shares(&self, now: i64) -> Result<u64, StoreError> {
        let mut conn = self.conn();
        let tx = conn.transaction()?;
        tx.execute("DELETE FROM share_links WHERE expires_at <= ?1", [now])?;
        let left: i64 = tx.query_row("SELECT count(*) FROM share_links", [], |row| row.get(0))?;
        tx.commit()?;
        Ok(left as u64)
    }
}

impl TokenStore for PgStore {
    fn put_token(&self, digest: &TokenDigest, expires: i64) -> Result<(), StoreError> {
        self.run(async {
            let client = self.client().await?;
            client
                .execute(
                    "INSERT INTO login_tokens (digest, expires_at) VALUES ($1, $2)
                     ON CONFLICT (digest) DO UPDATE SET expires_at = EXCLUDED.expires_at",
                    &[&&digest[..], &expires],
                )
                .await?;
            Ok(())
        })
    }

    fn token_expiry(&self, digest: &TokenDigest, now: i64) -> Result<Option<i64>, StoreError> {
        self.run(async {
            let client = self.client().await?;
            let row = client
                .query_opt(
                    "SELECT expires_at FROM login_tokens WHERE digest = $1 AND expires_at > $2",
                    &[&&digest[..], &now],
                )
                .await?;
            Ok(row.map(|r| r.get(0)))
        })
    }

    fn revoke_token(&self, digest: &TokenDigest, now: i64) -> Result<(), StoreError> {
        self.run(async {
            let mut client = self.client().await?;
            let tx = client.transaction().await?;
            tx.execute("DELETE FROM login_tokens WHERE digest = $1", &[&&digest[..]]).await?;
            tx.execute("INSERT INTO token_revocations (digest, revoked_at) VALUES ($1, $2)", &[&&digest[..], &now])
                .await?;
            tx.commit().await?;
            Ok(())
        })
    }

    fn token_revocations(&self, after: i64, limit: usize) -> Result<Vec<Revocation>, StoreError> {
        self.run(async {
            let client = self.client().await?;
            let rows = client
                .query(
                    "SELECT seq, digest, revoked_at FROM token_revocations WHERE seq > $1 ORDER BY seq LIMIT $2",
                    &[&after, &(limit as i64)],
                )
                .await?;
            Ok(rows
                .iter()
                .filter_map(|r| {
                    let digest: &[u8] = r.get(1);
                    Some(Revocation { seq: r.get(0), digest: digest_of(digest)?, at: r.get(2) })
                })
                .collect())
        })
    }

    fn sweep_tokens(&self, now: i64, keep_ms: i64) -> Result<(), StoreError> {
        self.run(async {
            let client = self.client().await?;
            client.execute("DELETE FROM login_tokens WHERE expires_at <= $1", &[&now]).await?;
            client.execute("DELETE FROM token_revocations WHERE revoked_at < $1", &[&(now - keep_ms)]).await?;
            Ok(())
        })
    }

    fn put_share(&self, digest: &TokenDigest, job: JobId, session: &str, expires: i64) -> Result<(), StoreError> {
        self.run(async {
            let client = self.client().await?;
            client
                .execute(
                    "INSERT INTO share_links (digest, job_id, session_id, expires_at) VALUES ($1, $2, $3, $4)",
                    &[&&digest[..], &job.key(), &session, &expires],
                )
                .await?;
            Ok(())
        })
    }

    fn share(&self, digest: &TokenDigest, now: i64) -> Result<Option<(JobId, String)>, StoreError> {
        self.run(async {
            let client = self.client().await?;
            let row = client
                .query_opt(
                    "SELECT s.job_id, j.uuid, s.session_id FROM share_links s JOIN jobs j ON j.id = s.job_id
                     WHERE s.digest = $1 AND s.expires_at > $2",
                    &[&&digest[..], &now],
                )
                .await?;
            row.map(|r| Ok((crate::postgres::job_id(&r, 0, 1)?, r.try_get(2)?))).transpose()
        })
    }

    fn revoke_share(&self, digest: &TokenDigest, now: i64) -> Result<bool, StoreError> {
        self.run(async {
            let client = self.client().await?;
            let removed = client
                .execute("DELETE FROM share_links WHERE digest = $1 AND expires_at > $2", &[&&digest[..], &now])
                .await?;
            Ok(removed > 0)
        })
    }

    fn sweep_shares(&self, now: i64) -> Result<u64, StoreError> {
        self.run(async {
            let client = self.client().await?;
            client.execute("DELETE FROM share_links WHERE expires_at <= $1", &[&now]).await?;
            let left: i64 = client.query_one("SELECT count(*) FROM share_links", &[]).await?.get(0);
            Ok(left as u64)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(seq: i64, at: i64) -> Revocation {
        Revocation { seq, digest: [0; 32], at }
    }

    #[test]
    fn the_cursor_stops_before_the_first_revocation_not_yet_settled() {
        let now = 1_000_000;
        let old = now - SETTLED_MS;
        assert_eq!(next_cursor(3, &[], now), 3);
        assert_eq!(next_cursor(3, &[at(4, old), at(6, old - 5)], now), 6);
        assert_eq!(next_cursor(3, &[at(4, old), at(5, now - 10), at(6, old)], now), 4, "5 may hide a later 4.5");
        assert_eq!(next_cursor(3, &[at(4, now)], now), 3);
    }
}
