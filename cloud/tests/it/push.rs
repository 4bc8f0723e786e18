//! `POST /v1/sync/push`: applying, deduplicating, gaps, parking, branch isolation, the audit.

use reqwest::Method;
use sentra_protocol::EntityKind;
use serde_json::json;

use crate::cloud::{Cloud, Device};
use crate::fixtures;

#[tokio::test]
async fn a_push_applies_every_projection_and_moves_the_cursor() {
    let cloud = Cloud::start().await;
    let mut device = cloud.enroll("JKT01").await;
    let mut events = device.outbox.workshop_cycle("OF-1");
    let credit = device.outbox.id("cn");
    let invoice = events[6].entity_id.clone();
    events.push(device.outbox.raw(
        EntityKind::CreditNote,
        &credit,
        "issued",
        json!({"id": credit, "number": "JKT01-CN-202611-00001", "invoice_id": invoice, "amount": 5000,
               "reason": "goodwill", "issued_at": fixtures::AT}),
    ));
    let inspection = device.outbox.id("insp");
    events.push(device.outbox.raw(
        EntityKind::Inspection,
        &inspection,
        "recorded",
        json!({"id": inspection, "asset_id": "car-1", "kind": "HANDOVER", "chain_index": 0,
               "checklist": [{"item": "tyres", "ok": true}], "photos": ["ab".repeat(32)], "signature": {"by": "Budi"},
               "odometer_km": 12000, "fuel_percent": 80, "remarks": null, "inspector": "Sari",
               "created_at": fixtures::AT, "prev_hash": null, "tamper_proof_hash": "cd".repeat(32)}),
    ));
    let job = device.outbox.id("job");
    events.push(device.outbox.raw(
        EntityKind::PrintJob,
        &job,
        "queued",
        json!({"id": job, "document": "receipt", "ref_id": invoice}),
    ));

    let answer = cloud.push(&device, &events).await;
    assert_eq!(answer.status, 200, "{answer:?}");
    assert_eq!(answer.body["cursor"], 11);
    assert_eq!(answer.body["applied"], 11);
    assert_eq!(answer.body["duplicates"], 0);
    assert_eq!(answer.body["parked"], json!([]));
    assert!(answer.body["server_time_ms"].as_u64().is_some());

    let work_order = &events[0].entity_id;
    for (sql, expected) in [
        ("SELECT count(*) FROM events".to_owned(), 11),
        (
            format!(
                "SELECT count(*) FROM work_orders WHERE branch_id = 'JKT01' AND id = '{work_order}' AND status = 'INVOICED'"
            ),
            1,
        ),
        (
            "SELECT count(*) FROM stock_movements WHERE branch_id = 'JKT01'".to_owned(),
            3,
        ),
        (
            "SELECT on_hand FROM stock_levels WHERE branch_id = 'JKT01' AND sku = 'OF-1'"
                .to_owned(),
            2,
        ),
        (
            "SELECT total FROM invoices WHERE branch_id = 'JKT01'".to_owned(),
            266_400,
        ),
        (
            "SELECT amount FROM payments WHERE branch_id = 'JKT01'".to_owned(),
            266_400,
        ),
        (
            "SELECT amount FROM credit_notes WHERE branch_id = 'JKT01'".to_owned(),
            5000,
        ),
        (
            "SELECT fuel_percent FROM inspections WHERE branch_id = 'JKT01'".to_owned(),
            80,
        ),
        (
            format!(
                "SELECT last_seq FROM device_cursors WHERE device_id = '{}'",
                device.id
            ),
            11,
        ),
    ] {
        assert_eq!(cloud.scalar(&sql).await, expected, "{sql}");
    }
    assert_eq!(cloud.audit(&device).await, 11);

    // Money is append-only in the record itself.
    let mut connection = cloud.db.connect().await;
    let update = sqlx::query("UPDATE payments SET amount = 1")
        .execute(&mut connection)
        .await;
    assert!(update.is_err(), "payments refuse updates");
}

#[tokio::test]
async fn stock_adds_up_across_devices_and_branches_and_events_are_partitioned() {
    let cloud = Cloud::start().await;
    let mut a1 = cloud.enroll("JKT01").await;
    let mut a2 = cloud.enroll("JKT01").await;
    let mut b1 = cloud.enroll("SBY02").await;

    let batch_a1 = vec![a1.outbox.receipt("OF-1", 10), a1.outbox.receipt("BP-9", 4)];
    let wo = a2.outbox.id("wo");
    let batch_a2 = vec![
        a2.outbox.receipt("OF-1", 5),
        a2.outbox.work_order(&wo),
        a2.outbox.dispense(&wo, "OF-1", 3, 45_000),
    ];
    let batch_b1 = vec![b1.outbox.receipt("OF-1", 7)];
    let answers = crate::support::join_all(vec![
        cloud.push(&a1, &batch_a1),
        cloud.push(&a2, &batch_a2),
        cloud.push(&b1, &batch_b1),
    ])
    .await;
    for answer in &answers {
        assert_eq!(answer.status, 200, "{answer:?}");
    }
    let level = |branch: &str, sku: &str| {
        format!("SELECT on_hand FROM stock_levels WHERE branch_id = '{branch}' AND sku = '{sku}'")
    };
    assert_eq!(cloud.scalar(&level("JKT01", "OF-1")).await, 10 + 5 - 3);
    assert_eq!(cloud.scalar(&level("JKT01", "BP-9")).await, 4);
    assert_eq!(cloud.scalar(&level("SBY02", "OF-1")).await, 7);

    // Each branch's events live in one partition of `events`, none in the parent.
    assert_eq!(cloud.scalar("SELECT count(*) FROM ONLY events").await, 0);
    for branch in ["JKT01", "SBY02"] {
        let partitions = cloud
            .scalar(&format!(
                "SELECT count(DISTINCT tableoid) FROM events WHERE branch_id = '{branch}'"
            ))
            .await;
        assert_eq!(partitions, 1, "{branch}");
    }
    for device in [&a1, &a2, &b1] {
        cloud.audit(device).await;
    }
}

#[tokio::test]
async fn a_re_pushed_batch_is_all_duplicates_and_writes_nothing_twice() {
    let cloud = Cloud::start().await;
    let mut device = cloud.enroll("JKT01").await;
    let events = device.outbox.workshop_cycle("OF-1");
    let first = cloud.push(&device, &events).await;
    assert_eq!(
        (first.status, first.body["applied"].as_u64()),
        (200, Some(8)),
        "{first:?}"
    );

    let counts = "SELECT (SELECT count(*) FROM events) * 1000000 + (SELECT count(*) FROM stock_movements) * 10000
                        + (SELECT count(*) FROM payments) * 100 + (SELECT on_hand FROM stock_levels)";
    let before = cloud.scalar(counts).await;
    for _ in 0..2 {
        let again = cloud.push(&device, &events).await;
        assert_eq!(again.status, 200, "{again:?}");
        assert_eq!(again.body["cursor"], 8);
        assert_eq!(again.body["applied"], 0);
        assert_eq!(again.body["duplicates"], 8);
        assert_eq!(cloud.scalar(counts).await, before);
    }

    // An overlapping batch: the known part is skipped, the rest applied.
    let mut overlapping = events[5..].to_vec();
    overlapping.push(device.outbox.receipt("OF-1", 1));
    let answer = cloud.push(&device, &overlapping).await;
    assert_eq!(answer.status, 200, "{answer:?}");
    assert_eq!(
        (
            answer.body["applied"].as_u64(),
            answer.body["duplicates"].as_u64()
        ),
        (Some(1), Some(3))
    );
    assert_eq!(
        cloud.scalar("SELECT on_hand FROM stock_levels").await,
        4 - 2 + 1
    );

    // The same payment again under a new seq (an edge re-emitting it): a duplicate, not a double.
    let payment = events[7].clone();
    let invoice = payment.payload["invoice_id"]
        .as_str()
        .expect("invoice id")
        .to_owned();
    let amount = payment.payload["amount"].as_i64().expect("amount");
    let again = device.outbox.payment(&payment.entity_id, &invoice, amount);
    let answer = cloud.push(&device, &[again]).await;
    assert_eq!(
        (
            answer.body["applied"].as_u64(),
            answer.body["duplicates"].as_u64()
        ),
        (Some(0), Some(1)),
        "{answer:?}"
    );
    assert_eq!(cloud.scalar("SELECT count(*) FROM payments").await, 1);
    assert_eq!(cloud.audit(&device).await, 10);
}

#[tokio::test]
async fn a_gap_is_409_with_the_expected_seq_and_broken_batches_are_422() {
    let cloud = Cloud::start().await;
    let mut device = cloud.enroll("JKT01").await;
    let first = vec![
        device.outbox.receipt("OF-1", 1),
        device.outbox.receipt("OF-1", 1),
    ];
    let _lost = device.outbox.receipt("OF-1", 1);
    let after_gap = vec![device.outbox.receipt("OF-1", 1)];
    assert_eq!(cloud.push(&device, &first).await.status, 200);

    let answer = cloud.push(&device, &after_gap).await;
    assert_eq!(
        (answer.status, answer.code()),
        (409, "sequence_gap"),
        "{answer:?}"
    );
    assert_eq!(answer.body["expected_seq"], 3);
    let gap: sentra_protocol::sync::SequenceGap = serde_json::from_value(answer.body.clone())
        .expect("the body parses as the protocol's SequenceGap");
    assert_eq!(gap.expected_seq, 3);

    // Not contiguous.
    let mut holes = vec![device.outbox.receipt("OF-1", 1)];
    let _skipped = device.outbox.receipt("OF-1", 1);
    holes.push(device.outbox.receipt("OF-1", 1));
    let answer = cloud.push(&device, &holes).await;
    assert_eq!(
        (answer.status, answer.code()),
        (422, "not_contiguous"),
        "{answer:?}"
    );

    // Wrong protocol version; not JSON.
    let body = json!({"protocol": 99, "events": []})
        .to_string()
        .into_bytes();
    let answer = cloud
        .signed(&device, Method::POST, "/v1/sync/push", Some(body))
        .await;
    assert_eq!(
        (answer.status, answer.code()),
        (422, "unsupported_protocol"),
        "{answer:?}"
    );
    let answer = cloud
        .signed(&device, Method::POST, "/v1/sync/push", Some(b"{]".to_vec()))
        .await;
    assert_eq!(
        (answer.status, answer.code()),
        (400, "malformed_body"),
        "{answer:?}"
    );
    // Too large.
    let big = vec![b' '; sentra_protocol::sync::MAX_PUSH_BYTES + 1];
    let answer = cloud
        .signed(&device, Method::POST, "/v1/sync/push", Some(big))
        .await;
    assert_eq!(
        (answer.status, answer.code()),
        (413, "payload_too_large"),
        "{answer:?}"
    );

    assert_eq!(
        cloud.scalar("SELECT count(*) FROM events").await,
        2,
        "nothing else applied"
    );
    assert_eq!(cloud.audit(&device).await, 2);
}

#[tokio::test]
async fn a_bad_event_is_parked_and_the_events_behind_it_are_applied() {
    let cloud = Cloud::start().await;
    let mut device = cloud.enroll("JKT01").await;
    let wo = device.outbox.id("wo");
    let events = vec![
        device.outbox.work_order(&wo),
        // A negative payment: parked.
        device.outbox.raw(
            EntityKind::Payment,
            "pay-bad",
            "received",
            json!({"id": "pay-bad", "invoice_id": "inv-1", "method": "CASH", "amount": -5, "reference": null,
                   "received_at": fixtures::AT}),
        ),
        // An invoice whose totals do not add up: parked.
        {
            let mut invoice = device.outbox.invoice("inv-1", &wo, 1, 45_000);
            invoice.payload["total"] = json!(1);
            invoice
        },
        // A payment for that (parked) invoice: parked too, it refers to nothing.
        device.outbox.payment("pay-2", "inv-1", 10),
        device.outbox.receipt("OF-1", 6),
        device.outbox.status(&wo, "OPEN", "IN_PROGRESS"),
    ];
    let answer = cloud.push(&device, &events).await;
    assert_eq!(answer.status, 200, "{answer:?}");
    assert_eq!(
        answer.body["cursor"], 6,
        "the cursor moves past parked events"
    );
    assert_eq!(answer.body["applied"], 3);
    let parked = answer.body["parked"].as_array().expect("parked list");
    let seqs: Vec<u64> = parked.iter().filter_map(|p| p["seq"].as_u64()).collect();
    assert_eq!(seqs, [2, 3, 4]);
    assert_eq!(parked[0]["entity"], "payment");
    assert_eq!(parked[0]["entity_id"], "pay-bad");
    let reason = |i: usize| parked[i]["reason"].as_str().unwrap_or_default().to_owned();
    assert!(reason(0).contains("amount -5"), "{}", reason(0));
    assert!(
        reason(1).contains("total 1 is not subtotal"),
        "{}",
        reason(1)
    );
    assert!(
        reason(2).contains("invoice inv-1 is unknown in branch JKT01"),
        "{}",
        reason(2)
    );

    assert_eq!(
        cloud
            .scalar("SELECT count(*) FROM parked_events WHERE reason LIKE '%amount -5%'")
            .await,
        1
    );
    assert_eq!(cloud.scalar("SELECT count(*) FROM payments").await, 0);
    assert_eq!(cloud.scalar("SELECT on_hand FROM stock_levels").await, 6);
    assert_eq!(
        cloud
            .scalar(&format!(
                "SELECT count(*) FROM work_orders WHERE id = '{wo}' AND status = 'IN_PROGRESS'"
            ))
            .await,
        1
    );

    // The branch hears of each rejection at pull, in seq order.
    let page = cloud.pull(&device, 0, None).await;
    assert_eq!(page.status, 200, "{page:?}");
    let changes = page.body["changes"].as_array().expect("changes");
    assert_eq!(changes.len(), 3, "{page:?}");
    for (change, (cursor, seq)) in changes.iter().zip([(1, 2), (2, 3), (3, 4)]) {
        assert_eq!(change["kind"], "rejection");
        assert_eq!(change["cursor"], cursor);
        assert_eq!(change["seq"], seq);
        assert!(change["reason"].is_string());
    }
    assert_eq!(cloud.audit(&device).await, 6);
}

#[tokio::test]
async fn a_device_cannot_write_into_another_branch() {
    let cloud = Cloud::start().await;
    let mut a = cloud.enroll("JKT01").await;
    let mut b = cloud.enroll("SBY02").await;

    // Branch B has an invoice.
    let b_events = b.outbox.workshop_cycle("OF-1");
    let b_invoice = b_events[6].entity_id.clone();
    assert_eq!(cloud.push(&b, &b_events).await.status, 200);

    // A's payload claims branch B (unknown fields are ignored): the rows are A's.
    let mut claim = a.outbox.receipt("OF-1", 50);
    claim.payload["branch_id"] = json!("SBY02");
    // A pays B's invoice: unknown in A's branch, so parked.
    let pay = a.outbox.payment("pay-x", &b_invoice, 10);
    let answer = cloud.push(&a, &[claim, pay]).await;
    assert_eq!(answer.status, 200, "{answer:?}");
    assert_eq!(answer.body["applied"], 1);
    assert_eq!(answer.body["parked"][0]["entity_id"], "pay-x");
    assert_eq!(
        cloud
            .scalar("SELECT on_hand FROM stock_levels WHERE branch_id = 'JKT01'")
            .await,
        50
    );
    assert_eq!(
        cloud
            .scalar("SELECT on_hand FROM stock_levels WHERE branch_id = 'SBY02'")
            .await,
        2
    );
    assert_eq!(
        cloud
            .scalar("SELECT count(*) FROM payments WHERE branch_id = 'SBY02'")
            .await,
        1
    );
    assert_eq!(
        cloud
            .scalar("SELECT count(*) FROM events WHERE branch_id = 'SBY02'")
            .await,
        8
    );

    // Events that name B's device are refused whole, whoever signs the request.
    let mut foreign = a.outbox.receipt("OF-1", 1);
    foreign.device_id = b.id.clone();
    let answer = cloud.push(&a, &[foreign]).await;
    assert_eq!(
        (answer.status, answer.code()),
        (422, "foreign_event"),
        "{answer:?}"
    );
    assert_eq!(
        cloud
            .scalar("SELECT on_hand FROM stock_levels WHERE branch_id = 'SBY02'")
            .await,
        2
    );

    // B hears nothing of A's rejection.
    let page = cloud.pull(&b, 0, None).await;
    assert_eq!(page.body["changes"], json!([]), "{page:?}");
    assert_eq!(
        cloud.pull(&a, 0, None).await.body["changes"]
            .as_array()
            .map(Vec::len),
        Some(1)
    );
    cloud.audit(&a).await;
    cloud.audit(&b).await;
}

#[tokio::test]
async fn work_order_fields_are_last_writer_wins_by_hlc_across_batches_and_devices() {
    let cloud = Cloud::start().await;
    let mut one = cloud.enroll("JKT01").await;
    let mut two = cloud.enroll("JKT01").await;
    let wo = one.outbox.id("wo");
    let created = one.outbox.work_order(&wo);
    assert_eq!(cloud.push(&one, &[created]).await.status, 200);

    // A later batch updates a work order created earlier: status and mechanic.
    let assigned = one.outbox.raw(
        EntityKind::WorkOrder,
        &wo,
        "assigned",
        json!({"mechanic_id": "m7", "at": fixtures::AT}),
    );
    let started = one.outbox.status(&wo, "OPEN", "IN_PROGRESS");
    let answer = cloud.push(&one, &[assigned, started]).await;
    assert_eq!(answer.body["applied"], 2, "{answer:?}");
    let row = format!(
        "SELECT count(*) FROM work_orders WHERE id = '{wo}' AND status = 'IN_PROGRESS' AND mechanic_id = 'm7'"
    );
    assert_eq!(cloud.scalar(&row).await, 1);

    // Another device of the branch sends a change stamped earlier: it arrives later but loses.
    let mut stale = two.outbox.status(&wo, "OPEN", "CANCELLED");
    stale.hlc = sentra_protocol::Hlc::new(1, 0);
    let answer = cloud.push(&two, &[stale]).await;
    assert_eq!(
        answer.body["applied"], 1,
        "recorded, but older than what the row has: {answer:?}"
    );
    assert_eq!(cloud.scalar(&row).await, 1);

    // A newer one wins.
    let done = two.outbox.status(&wo, "IN_PROGRESS", "DONE");
    assert_eq!(cloud.push(&two, &[done]).await.status, 200);
    assert_eq!(
        cloud
            .scalar(&format!(
                "SELECT count(*) FROM work_orders WHERE id = '{wo}' AND status = 'DONE'"
            ))
            .await,
        1
    );
    cloud.audit(&one).await;
    cloud.audit(&two).await;
}

#[tokio::test]
async fn concurrent_re_sends_of_one_batch_apply_it_once() {
    let cloud = Cloud::start().await;
    let mut device = cloud.enroll("JKT01").await;
    let empty = cloud.push(&device, &[]).await;
    assert_eq!(
        (empty.status, &empty.body["cursor"]),
        (200, &json!(0)),
        "{empty:?}"
    );

    let events: Vec<_> = (0..25)
        .flat_map(|_| device.outbox.workshop_cycle("OF-1"))
        .collect();
    let answers =
        crate::support::join_all((0..6).map(|_| cloud.push(&device, &events)).collect()).await;
    let mut applied = 0;
    for answer in &answers {
        assert_eq!(answer.status, 200, "{answer:?}");
        assert_eq!(answer.body["cursor"], 200);
        applied += answer.body["applied"].as_u64().unwrap_or(0);
        let duplicates = answer.body["duplicates"].as_u64().unwrap_or(0);
        assert!(
            (answer.body["applied"] == 200 && duplicates == 0) || duplicates == 200,
            "all or nothing: {answer:?}"
        );
    }
    assert_eq!(applied, 200, "exactly one push applied the batch");
    assert_eq!(cloud.scalar("SELECT count(*) FROM events").await, 200);
    assert_eq!(cloud.scalar("SELECT count(*) FROM payments").await, 25);
    assert_eq!(
        cloud.scalar("SELECT on_hand FROM stock_levels").await,
        25 * 2
    );
    assert_eq!(cloud.audit(&device).await, 200);
}

#[tokio::test]
async fn an_event_postgresql_cannot_store_as_is_is_parked_not_a_500() {
    let cloud = Cloud::start().await;
    let mut device = cloud.enroll("JKT01").await;
    let events = vec![
        device.outbox.raw(
            EntityKind::PrintJob,
            "job\u{0}1",
            "queued",
            json!({"id": "job\u{0}1", "document": "receipt", "ref_id": "x"}),
        ),
        device.outbox.raw(
            EntityKind::PrintJob,
            "job-2",
            "queued",
            json!({"id": "job-2", "document": "receipt\u{0}", "ref_id": "x"}),
        ),
        device.outbox.receipt("OF-1", 1),
    ];
    let body = fixtures::batch(&events);
    one_applied_two_parked(&cloud, &device, &body).await;
    assert_eq!(cloud.scalar("SELECT count(*) FROM parked_events").await, 2);
    assert_eq!(
        cloud.pull(&device, 0, None).await.body["changes"]
            .as_array()
            .map(Vec::len),
        Some(2)
    );
    // Sent again as they were: duplicates, though PostgreSQL holds them with U+FFFD for NUL.
    sent_again_all_three_are_duplicates(&cloud, &device, &body).await;
}

/// Pushes `body`, three events of which PostgreSQL cannot store two as they are: one applied,
/// two parked.
async fn one_applied_two_parked(cloud: &Cloud, device: &Device, body: &[u8]) {
    let answer = cloud
        .signed(device, Method::POST, "/v1/sync/push", Some(body.to_vec()))
        .await;
    assert_eq!(answer.status, 200, "{answer:?}");
    assert_eq!(answer.body["applied"], 1);
    assert_eq!(
        answer.body["parked"].as_array().map(Vec::len),
        Some(2),
        "{answer:?}"
    );
}

/// The same `body` again, as after a lost answer: three duplicates, not a fork; the audit holds.
async fn sent_again_all_three_are_duplicates(cloud: &Cloud, device: &Device, body: &[u8]) {
    let again = cloud
        .signed(device, Method::POST, "/v1/sync/push", Some(body.to_vec()))
        .await;
    assert_eq!(
        (again.status, again.body["duplicates"].as_u64()),
        (200, Some(3)),
        "{again:?}"
    );
    cloud.audit(device).await;
}

/// Text serde_json reads without decoding it but jsonb refuses (an unpaired surrogate escape, a
/// number beyond numeric's range), in a field the payload's type ignores: the event is parked and
/// kept as a JSON string of what was sent, not a batch whose insert fails on every retry.
#[tokio::test]
async fn a_payload_jsonb_cannot_hold_is_parked_not_a_stuck_push() {
    let cloud = Cloud::start().await;
    let mut device = cloud.enroll("JKT01").await;
    let events = vec![
        device.outbox.raw(
            EntityKind::PrintJob,
            "job-1",
            "queued",
            json!({"id": "job-1", "document": "receipt", "ref_id": "x", "extra": "UNPAIRED"}),
        ),
        device.outbox.raw(
            EntityKind::PrintJob,
            "job-2",
            "queued",
            json!({"id": "job-2", "document": "receipt", "ref_id": "x", "extra": "HUGE"}),
        ),
        device.outbox.receipt("OF-1", 1),
    ];
    let body = String::from_utf8(fixtures::batch(&events))
        .expect("a batch is UTF-8")
        .replace(r#""UNPAIRED""#, r#""\ud800""#)
        .replace(r#""HUGE""#, "1e999999")
        .into_bytes();
    one_applied_two_parked(&cloud, &device, &body).await;
    assert_eq!(
        cloud
            .scalar("SELECT count(*) FROM parked_events WHERE jsonb_typeof(payload) = 'string'")
            .await,
        2
    );
    // Sent again as it was (its answer lost): duplicates, not a fork.
    sent_again_all_three_are_duplicates(&cloud, &device, &body).await;
}

#[tokio::test]
async fn a_re_sent_seq_with_other_content_is_a_fork_not_a_duplicate() {
    let cloud = Cloud::start().await;
    let mut device = cloud.enroll("JKT01").await;
    let events = device.outbox.workshop_cycle("OF-1");
    assert_eq!(cloud.push(&device, &events).await.status, 200);
    let counts = "SELECT (SELECT count(*) FROM events) * 1000 + (SELECT count(*) FROM payments) * 10 + (SELECT on_hand FROM stock_levels)";
    let before = cloud.scalar(counts).await;

    // A store restored from after event 5: its own next event is numbered 6 as well.
    let mut forked = device.outbox.receipt("OF-1", 1);
    forked.seq = 6;
    let mut batch = events[3..5].to_vec();
    batch.push(forked);
    let answer = cloud.push(&device, &batch).await;
    assert_eq!(answer.status, 409, "{answer:?}");
    assert_eq!(answer.body["error"]["code"], "sequence_fork");
    assert_eq!(
        (
            answer.body["fork_seq"].as_u64(),
            answer.body["expected_seq"].as_u64()
        ),
        (Some(6), Some(9)),
        "{answer:?}"
    );
    assert_eq!(cloud.scalar(counts).await, before, "a fork changes nothing");

    // The same event renumbered after the cloud's cursor, as the box does: applied.
    let mut renumbered = batch[2].clone();
    renumbered.seq = 9;
    let answer = cloud.push(&device, &[renumbered]).await;
    assert_eq!(
        (answer.status, answer.body["applied"].as_u64()),
        (200, Some(1)),
        "{answer:?}"
    );
    assert_eq!(cloud.audit(&device).await, 9);
}
