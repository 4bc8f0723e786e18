//! Idempotent writes: a device's retry with the same `Idempotency-Key` and the same request gets
//! the stored answer and changes nothing; the same key with another request is refused. The key
//! is checked and the answer stored inside the write's own transaction, so "one change, one
//! answer" holds across crashes and concurrent retries (the single writer serialises them).

use rusqlite::OptionalExtension as _;

use super::{DomainError, Result, WriteTx};

/// A stored answer: HTTP status and JSON body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Answer {
    pub status: u16,
    pub body: String,
}

/// Look up `key` for `device`. `Some` is the earlier answer to this same request.
pub fn replay(
    w: &WriteTx<'_>,
    device: &str,
    key: &str,
    request_hash: &str,
) -> Result<Option<Answer>> {
    let found: Option<(String, u16, String)> = w
        .conn()
        .prepare_cached("SELECT request_hash, status, response FROM idempotency_keys WHERE device_id = ?1 AND key = ?2")?
        .query_row((device, key), |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
        .optional()?;
    match found {
        None => Ok(None),
        Some((h, status, body)) if h == request_hash => Ok(Some(Answer { status, body })),
        Some(_) => Err(DomainError::IdempotencyMismatch.into()),
    }
}

pub fn remember(
    w: &WriteTx<'_>,
    device: &str,
    key: &str,
    request_hash: &str,
    answer: &Answer,
) -> Result<()> {
    w.conn()
        .prepare_cached("INSERT INTO idempotency_keys (device_id, key, request_hash, status, response, created_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6)")?
        .execute((device, key, request_hash, answer.status, &answer.body, w.now_str()))?;
    Ok(())
}
