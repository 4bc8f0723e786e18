//! What someone who walks off with the box finds: no plaintext on disk, a wrong key refused with
//! exit 3 and the file untouched; and backups that a daemon can start from.

use reqwest::StatusCode;
use serde_json::json;
use sha2::{Digest as _, Sha256};

use crate::harness::{BIN, Edge, Site};

fn file_digest(path: &std::path::Path) -> String {
    hex::encode(Sha256::digest(std::fs::read(path).expect("read")))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn store_is_not_plaintext_and_a_wrong_key_changes_nothing() {
    let site = Site::new();
    let edge = site.start().await;
    let tablet = edge.pair(&site, "tablet").await;
    let secret = "Rahasia Pelanggan Xyzzy";
    let (s, _) = edge
        .post(
            &tablet,
            "/v1/work-orders",
            json!({"customer_name": secret, "vehicle_plate": "B 1 ZZ", "complaint": secret}),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED);

    // While running (database and WAL) and after a clean stop, nothing is readable.
    let check_plain = |when: &str| {
        for suffix in ["", "-wal"] {
            let p = std::path::PathBuf::from(format!("{}{suffix}", site.db_path().display()));
            let Ok(bytes) = std::fs::read(&p) else {
                continue;
            };
            assert!(
                !bytes.starts_with(b"SQLite format 3"),
                "{when}: {} starts with the SQLite header",
                p.display()
            );
            assert!(
                !bytes.windows(secret.len()).any(|w| w == secret.as_bytes()),
                "{when}: {} holds the customer's name in clear",
                p.display()
            );
        }
    };
    check_plain("running");
    assert_eq!(edge.stop().await, 0);
    check_plain("stopped");

    // A wrong key: exit 3, a message that says so, and the file byte for byte as it was.
    let before = file_digest(&site.db_path());
    let good_key = std::fs::read_to_string(&site.key_file).expect("key");
    std::fs::write(&site.key_file, format!("{}\n", "11".repeat(32))).expect("write wrong key");
    let out = std::process::Command::new(BIN)
        .args(["run", "--config"])
        .arg(&site.config)
        .output()
        .expect("run");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(3), "{stderr}");
    assert!(stderr.contains("store key is wrong"), "{stderr}");
    assert_eq!(
        file_digest(&site.db_path()),
        before,
        "a wrong key leaves the store untouched"
    );
    for args in [
        &["status"][..],
        &["backup", "/tmp/never-written.db"][..],
        &["pair"][..],
    ] {
        let (code, _, err) = site.cli(args);
        assert_eq!(code, 3, "{args:?}: {err}");
    }

    // A malformed or missing key file is exit 3 too, with the path named.
    std::fs::write(&site.key_file, "not a key").expect("write");
    let (code, _, err) = site.cli(&["status"]);
    assert_eq!(code, 3);
    assert!(
        err.contains("64 hex characters") && err.contains(&site.key_file.display().to_string()),
        "{err}"
    );
    std::fs::remove_file(&site.key_file).expect("rm");
    let (code, _, err) = site.cli(&["status"]);
    assert_eq!(code, 3);
    assert!(err.contains("keygen"), "says how to make a key: {err}");

    // The right key opens it again, data intact.
    std::fs::write(&site.key_file, good_key).expect("restore key");
    assert_eq!(file_digest(&site.db_path()), before);
    let (code, out, err) = site.cli(&["status", "--json"]);
    assert_eq!(code, 0, "{err}");
    let st: serde_json::Value = serde_json::from_str(&out).expect("json");
    // The work order, its customer and its vehicle records.
    assert_eq!(st["outbox"]["last_seq"], 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn online_backup_restores_into_a_running_daemon() {
    let site = Site::new();
    site.load_demo_data();
    let edge = site.start().await;
    let tablet = edge.pair(&site, "tablet").await;
    let (_, wo) = edge
        .post(
            &tablet,
            "/v1/work-orders",
            json!({"customer_name": "Backup", "vehicle_plate": "B 2 BK", "complaint": "x"}),
        )
        .await;

    let last_seq = |st: &serde_json::Value| st["last_seq"].as_i64().expect("seq");
    let first = last_seq(&edge.get(&tablet, "/v1/sync/status").await.1);

    // Backup while the daemon runs and takes writes.
    let backup_dir = tempfile::tempdir().expect("tempdir");
    let backup = backup_dir.path().join("sentra.db");
    let writer = {
        let (http, base, token) = (edge.http.clone(), edge.base.clone(), tablet.token.clone());
        tokio::spawn(async move {
            for i in 0..50 {
                let r = http
                    .post(format!("{base}/v1/work-orders"))
                    .bearer_auth(&token)
                    .json(&json!({"customer_name": format!("during {i}"), "vehicle_plate": "B 3 DR", "complaint": "x"}))
                    .send()
                    .await
                    .expect("send");
                assert_eq!(r.status(), StatusCode::CREATED);
            }
        })
    };
    let (code, out, err) = site.cli(&["backup", backup.to_str().expect("utf8")]);
    writer.await.expect("writer");
    let last = last_seq(&edge.get(&tablet, "/v1/sync/status").await.1);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("backup written"), "{out}");
    let bytes = std::fs::read(&backup).expect("backup exists");
    assert!(
        !bytes.starts_with(b"SQLite format 3"),
        "the backup is encrypted"
    );
    assert!(
        !backup_dir.path().join("sentra.partial").exists(),
        "no partial file left behind"
    );

    // A daemon started on the backup (same key) has the data and a consistent outbox.
    let restore_cfg = backup_dir.path().join("edge.toml");
    std::fs::write(
        &restore_cfg,
        format!(
            "[branch]\nid = \"JKT01\"\n[store]\ndata_dir = {:?}\nkey_file = {:?}\n[mqtt]\nlisten = \"127.0.0.1:0\"\n[api]\nlisten = \"127.0.0.1:0\"\n",
            backup_dir.path().display().to_string(),
            site.key_file.display().to_string()
        ),
    )
    .expect("config");
    let restored = Edge::spawn(&restore_cfg, &[]).await;
    let (s, got) = restored
        .get(
            &tablet,
            &format!("/v1/work-orders/{}", wo["id"].as_str().expect("id")),
        )
        .await;
    assert_eq!(
        s,
        StatusCode::OK,
        "the paired device's token works on the restored store too"
    );
    assert_eq!(got["customer_name"], "Backup");
    let (_, st) = restored.get(&tablet, "/v1/sync/status").await;
    let seq = last_seq(&st);
    // Each write is one event or more (the first one for a new plate also makes its customer and
    // vehicle), so the bounds are the live store's own before and after the writes.
    assert!(
        (first..=last).contains(&seq),
        "a consistent snapshot between the first write and the last: {st}"
    );
    let conn = rusqlite::Connection::open(&backup).expect("open");
    conn.pragma_update(
        None,
        "key",
        format!(
            "x'{}'",
            std::fs::read_to_string(&site.key_file).expect("key").trim()
        ),
    )
    .expect("key");
    let (count, max): (i64, i64) = conn
        .query_row("SELECT count(*), max(seq) FROM sync_event_logs", [], |r| {
            Ok((r.get(0)?, r.get(1)?))
        })
        .expect("outbox");
    assert_eq!((count, max), (seq, seq), "gapless in the backup");
    assert_eq!(restored.stop().await, 0);
    assert_eq!(edge.stop().await, 0);
}

/// `sentra-edge restore` refuses what is not this box's backup, with the store left as it was:
/// a backup another key made, one of another branch, and a store the daemon is using. A backup
/// of this box goes in place, and the replaced store is kept beside it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restore_refuses_another_boxs_or_branchs_backup_and_keeps_what_it_replaces() {
    let site = Site::new();
    site.load_demo_data();
    let dir = tempfile::tempdir().expect("tempdir");
    let backup = dir.path().join("jkt01.backup");
    let (code, _, err) = site.cli(&["backup", backup.to_str().expect("utf8")]);
    assert_eq!(code, 0, "{err}");
    let before = file_digest(&site.db_path());

    // Another box's key does not open it.
    let other = Site::new();
    other.load_demo_data();
    let other_before = file_digest(&other.db_path());
    let (code, _, err) = other.cli(&["restore", backup.to_str().expect("utf8")]);
    assert_eq!(code, 3, "{err}");
    assert!(err.contains("key is wrong"), "{err}");
    assert_eq!(file_digest(&other.db_path()), other_before);

    // A backup of a box enrolled for another branch.
    let foreign = dir.path().join("bdg01.backup");
    std::fs::copy(&backup, &foreign).expect("copy");
    let conn = rusqlite::Connection::open(&foreign).expect("open");
    let key = std::fs::read_to_string(&site.key_file).expect("key");
    conn.pragma_update(None, "key", format!("x'{}'", key.trim()))
        .expect("key");
    conn.execute(
        "INSERT INTO cloud_identity (id, cloud_url, device_id, branch_id, branch_name, signing_key, enrolled_at)
         VALUES (1, 'https://cloud.example', 'd-1', 'BDG01', 'Bandung', '00', '2026-01-01T00:00:00Z')",
        [],
    )
    .expect("enrol the copy elsewhere");
    drop(conn);
    let (code, _, err) = site.cli(&["restore", foreign.to_str().expect("utf8")]);
    assert_ne!(code, 0);
    assert!(
        err.contains("backup of branch BDG01, not of JKT01"),
        "{err}"
    );
    assert_eq!(file_digest(&site.db_path()), before);

    // Under a running daemon: refused. Meanwhile the old store issues an invoice the backup
    // does not know of.
    let edge = site.start().await;
    let (code, _, err) = site.cli(&["restore", backup.to_str().expect("utf8")]);
    assert_ne!(code, 0);
    assert!(err.contains("daemon is running"), "{err}");
    let before_restore = invoice(&edge, &site).await;
    assert!(
        before_restore.ends_with("-00001"),
        "the first of the month: {before_restore}"
    );
    assert_eq!(edge.stop().await, 0);

    // Its own backup, daemon stopped: in place, the old store kept.
    let replaced_digest = file_digest(&site.db_path());
    let (code, out, err) = site.cli(&["restore", backup.to_str().expect("utf8")]);
    assert_eq!(code, 0, "{err}");
    assert_ne!(
        file_digest(&site.db_path()),
        replaced_digest,
        "the backup is in place"
    );
    let kept = std::fs::read_dir(site.db_path().parent().expect("dir"))
        .expect("list")
        .filter_map(Result::ok)
        .map(|e| e.path())
        .find(|p| {
            p.file_name().and_then(|n| n.to_str()).is_some_and(|n| {
                n.starts_with("sentra.db.replaced-") && !n.contains("-wal") && !n.contains("-shm")
            })
        })
        .expect("the replaced store is kept");
    assert_eq!(file_digest(&kept), replaced_digest);
    assert!(out.contains(&kept.display().to_string()), "{out}");
    let (code, _, err) = site.cli(&["status"]);
    assert_eq!(code, 0, "the restored store opens: {err}");

    // The restored store counts from the backup's numbers again, in a series of its own.
    let series = out
        .split("are in series ")
        .nth(1)
        .and_then(|rest| rest.split_whitespace().next())
        .expect("restore names the series")
        .to_owned();
    let edge = site.start().await;
    let after_restore = invoice(&edge, &site).await;
    assert_eq!(edge.stop().await, 0);
    assert_ne!(after_restore, before_restore, "no number twice");
    assert!(
        after_restore.ends_with(&format!("-{series}-00001")),
        "{after_restore} in series {series}"
    );
}

/// Opens a work order, finishes it and invoices it; the invoice's number.
async fn invoice(edge: &Edge, site: &Site) -> String {
    let tablet = edge.pair(site, "tablet").await;
    let pos = edge.pair(site, "pos").await;
    let (s, wo) = edge
        .post(
            &tablet,
            "/v1/work-orders",
            json!({"customer_name": "Budi", "vehicle_plate": "B 1 ZZ", "complaint": "Servis"}),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{wo}");
    let id = wo["id"].as_str().expect("id").to_owned();
    for status in ["IN_PROGRESS", "DONE"] {
        let (s, b) = edge
            .post(
                &tablet,
                &format!("/v1/work-orders/{id}/status"),
                json!({"status": status}),
            )
            .await;
        assert_eq!(s, StatusCode::OK, "{b}");
    }
    let (s, inv) = edge
        .post(
            &pos,
            "/v1/invoices",
            json!({"work_order_id": id, "labour": [{"description": "Servis", "amount": 150000}]}),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{inv}");
    inv["number"].as_str().expect("number").to_owned()
}

/// Rolling back across a store migration: a store a newer release migrated opens in this one
/// when the newer release's migrations say this one can read it (additive ones), with what the
/// newer release wrote still there; otherwise it is refused with exit 3 and left untouched.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_store_from_a_newer_release_opens_when_its_migrations_say_so() {
    let site = Site::new();
    site.load_demo_data();
    let (code, out, err) = site.cli(&["status", "--json"]);
    assert_eq!(code, 0, "{err}");
    let before: serde_json::Value = serde_json::from_str(&out).expect("status json");
    let key = std::fs::read_to_string(&site.key_file).expect("key");
    let newer = |min_reader: &str| {
        let conn = rusqlite::Connection::open(site.db_path()).expect("open");
        conn.pragma_update(None, "key", format!("x'{}'", key.trim()))
            .expect("key");
        let known: i64 = conn
            .pragma_query_value(None, "user_version", |r| r.get(0))
            .expect("version");
        // What a newer release's additive migration leaves: a table this one does not know,
        // the schema version one up, and the oldest version that can read it.
        conn.execute_batch(
            "CREATE TABLE IF NOT EXISTS future_feature (id TEXT PRIMARY KEY) STRICT;
             INSERT OR IGNORE INTO future_feature VALUES ('written by the newer release');",
        )
        .expect("newer table");
        conn.pragma_update(None, "user_version", known.max(8) + 1)
            .expect("version");
        let readable_by = if min_reader == "this" {
            known.max(8)
        } else {
            known.max(8) + 1
        };
        conn.execute(
            "UPDATE meta SET value = ?1 WHERE key = 'min_reader_version'",
            [readable_by.to_string()],
        )
        .expect("min reader");
    };

    newer("this");
    let (code, out, err) = site.cli(&["status", "--json"]);
    assert_eq!(code, 0, "a readable newer store opens: {err}");
    let after: serde_json::Value = serde_json::from_str(&out).expect("status json");
    assert_eq!(
        after["outbox"], before["outbox"],
        "the same store, unmigrated"
    );
    let edge = site.start().await;
    let tablet = edge.pair(&site, "tablet").await;
    let (s, _) = edge
        .post(
            &tablet,
            "/v1/work-orders",
            json!({"customer_name": "Sesudah rollback", "vehicle_plate": "B 9 RB", "complaint": "x"}),
        )
        .await;
    assert_eq!(
        s,
        StatusCode::CREATED,
        "the rolled-back release serves and writes"
    );
    assert_eq!(edge.stop().await, 0);
    let conn = rusqlite::Connection::open(site.db_path()).expect("open");
    conn.pragma_update(None, "key", format!("x'{}'", key.trim()))
        .expect("key");
    let kept: i64 = conn
        .query_row("SELECT count(*) FROM future_feature", [], |r| r.get(0))
        .expect("the newer release's table");
    assert_eq!(kept, 1, "what the newer release wrote is still there");
    drop(conn);

    newer("newer only");
    let digest = file_digest(&site.db_path());
    let (code, _, err) = site.cli(&["status"]);
    assert_eq!(code, 3, "{err}");
    assert!(err.contains("newer than this build knows"), "{err}");
    assert_eq!(file_digest(&site.db_path()), digest, "left untouched");
}
