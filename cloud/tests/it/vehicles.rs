//! Customers and vehicles as records (issue 21 item 5), at the cloud: a work order's vehicle
//! and customer ids are projected, and the H+90 service reminder is per vehicle — a newer
//! invoice for the same vehicle replaces the pending reminder, whichever arrives first, and a
//! repeated push changes nothing.

use sentra_protocol::Event;
use serde_json::{Value, json};

use crate::cloud::Cloud;

/// A workshop cycle's events for `vehicle`, its invoice issued at `issued_at`.
fn for_vehicle(mut events: Vec<Event>, vehicle: Option<&str>, issued_at: &str) -> Vec<Event> {
    if let Some(vehicle) = vehicle {
        events[0].payload["vehicle_id"] = json!(vehicle);
        events[0].payload["customer_id"] = json!(format!("cust-{vehicle}"));
    }
    events[6].payload["issued_at"] = json!(issued_at);
    events
}

/// Every service reminder as `(invoice id, state, vehicle id)`, by invoice id.
async fn reminders(cloud: &Cloud) -> Vec<(String, String, Value)> {
    let mut connection = cloud.db.connect().await;
    let rows: Vec<(String, String, Option<String>)> = sqlx::query_as(
        "SELECT split_part(cause, '/', 2), state, params ->> 'vehicle_id' FROM notifications
         WHERE kind = 'service_reminder' ORDER BY 1",
    )
    .fetch_all(&mut connection)
    .await
    .expect("reminders");
    rows.into_iter()
        .map(|(invoice, state, vehicle)| (invoice, state, json!(vehicle)))
        .collect()
}

fn state_of<'a>(all: &'a [(String, String, Value)], invoice: &str) -> &'a str {
    all.iter()
        .find(|(id, _, _)| id == invoice)
        .map(|(_, state, _)| state.as_str())
        .unwrap_or_else(|| panic!("no reminder for {invoice}: {all:?}"))
}

#[tokio::test]
async fn the_service_reminder_is_per_vehicle_and_the_ids_are_projected() {
    let cloud = Cloud::start().await;
    let mut counter = cloud.enroll("JKT01").await;
    let mut tablet = cloud.enroll("JKT01").await;

    // The counter's first visit for V1 (November) and another vehicle's.
    let first = for_vehicle(
        counter.outbox.workshop_cycle("OF-1"),
        Some("veh-1"),
        "2026-11-02T10:00:00Z",
    );
    let other = for_vehicle(
        counter.outbox.workshop_cycle("OF-1"),
        Some("veh-2"),
        "2026-11-02T11:00:00Z",
    );
    // An old box's work order, without a vehicle: its reminder stays per invoice.
    let legacy = for_vehicle(
        counter.outbox.workshop_cycle("OF-1"),
        None,
        "2026-11-02T12:00:00Z",
    );
    let work_order = first[0].entity_id.clone();
    let inv = |events: &[Event]| events[6].entity_id.clone();
    let (first_inv, other_inv, legacy_inv) = (inv(&first), inv(&other), inv(&legacy));
    let batch: Vec<Event> = [first.clone(), other, legacy].concat();
    let answer = cloud.push(&counter, &batch).await;
    assert_eq!(answer.status, 200, "{answer:?}");
    assert_eq!(
        cloud
            .scalar(&format!(
                "SELECT count(*) FROM work_orders WHERE id = '{work_order}'
                 AND vehicle_id = 'veh-1' AND customer_id = 'cust-veh-1'"
            ))
            .await,
        1,
        "the work order's vehicle and customer are projected"
    );
    let all = reminders(&cloud).await;
    assert_eq!(all.len(), 3, "{all:?}");
    assert!(
        all.iter().all(|(_, state, _)| state == "SCHEDULED"),
        "{all:?}"
    );

    // V1 again, a month later: its reminder replaces the first one's.
    let second = for_vehicle(
        counter.outbox.workshop_cycle("OF-1"),
        Some("veh-1"),
        "2026-12-02T10:00:00Z",
    );
    let second_inv = inv(&second);
    let answer = cloud.push(&counter, &second).await;
    assert_eq!(answer.status, 200, "{answer:?}");
    // A lost acknowledgement: the first batch again changes nothing.
    let answer = cloud.push(&counter, &batch).await;
    assert_eq!(answer.status, 200, "{answer:?}");
    let all = reminders(&cloud).await;
    assert_eq!(all.len(), 4, "{all:?}");
    assert_eq!(state_of(&all, &first_inv), "SKIPPED");
    assert_eq!(state_of(&all, &second_inv), "SCHEDULED");
    assert_eq!(state_of(&all, &other_inv), "SCHEDULED");
    assert_eq!(state_of(&all, &legacy_inv), "SCHEDULED");
    assert_eq!(
        cloud
            .scalar(&format!(
                "SELECT count(*) FROM notifications WHERE cause LIKE '%/{first_inv}'
                 AND reason LIKE 'superseded%'"
            ))
            .await,
        1
    );

    // A tablet that was offline sends an older visit of V1 (October) only now: it is
    // superseded at once, and the newer one stays.
    let late = for_vehicle(
        tablet.outbox.workshop_cycle("OF-1"),
        Some("veh-1"),
        "2026-11-20T10:00:00Z",
    );
    let late_inv = inv(&late);
    let answer = cloud.push(&tablet, &late).await;
    assert_eq!(answer.status, 200, "{answer:?}");
    let all = reminders(&cloud).await;
    assert_eq!(all.len(), 5, "{all:?}");
    assert_eq!(state_of(&all, &late_inv), "SKIPPED");
    assert_eq!(state_of(&all, &second_inv), "SCHEDULED");
    let pending_for_v1 = all
        .iter()
        .filter(|(_, state, vehicle)| state == "SCHEDULED" && vehicle == "veh-1")
        .count();
    assert_eq!(pending_for_v1, 1, "{all:?}");
    cloud.audit(&counter).await;
    cloud.audit(&tablet).await;
}

#[tokio::test]
async fn a_bad_vehicle_id_is_parked_with_its_reason() {
    let cloud = Cloud::start().await;
    let mut device = cloud.enroll("JKT01").await;
    let mut events = device.outbox.workshop_cycle("OF-1");
    events[0].payload["vehicle_id"] = json!("");
    let answer = cloud.push(&device, &events[..1]).await;
    assert_eq!(answer.status, 200, "{answer:?}");
    assert_eq!(
        cloud
            .scalar("SELECT count(*) FROM parked_events WHERE reason LIKE '%vehicle_id%'")
            .await,
        1
    );
    assert_eq!(cloud.scalar("SELECT count(*) FROM work_orders").await, 0);
}
