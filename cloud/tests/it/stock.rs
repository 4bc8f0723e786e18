//! Stock adjustments from a box (issue 21 item 4): the cloud keeps each movement with its kind,
//! note and count, and the branch's projected level stays the sum of every movement, pushed
//! twice or not; an adjustment with the wrong sign or kind is parked and moves nothing.

use crate::cloud::Cloud;

#[tokio::test]
async fn adjustments_project_the_level_the_box_has() {
    let cloud = Cloud::start().await;
    let mut device = cloud.enroll("JKT01").await;
    let wo = device.outbox.id("wo");
    let events = vec![
        device.outbox.receipt("OF-1", 10),
        device.outbox.work_order(&wo),
        device.outbox.dispense(&wo, "OF-1", 3, 45_000),
        device
            .outbox
            .adjustment("OF-1", 2, "WORK_ORDER_RETURN", Some(&wo), None),
        device.outbox.adjustment("OF-1", -1, "DAMAGE", None, None),
        device
            .outbox
            .adjustment("OF-1", -2, "RETURN_TO_SUPPLIER", None, None),
        device
            .outbox
            .adjustment("OF-1", -1, "COUNT", None, Some("count-1")),
        // Parked: a DAMAGE that adds stock, a kind the protocol does not know.
        device.outbox.adjustment("OF-1", 5, "DAMAGE", None, None),
        device.outbox.adjustment("OF-1", -5, "THEFT", None, None),
    ];
    // The box re-sends a batch whose answer it lost: applied once.
    for attempt in 0..2 {
        let answer = cloud.push(&device, &events).await;
        assert_eq!(answer.status, 200, "attempt {attempt}: {answer:?}");
        assert_eq!(answer.body["cursor"], 9, "{answer:?}");
    }
    // 10 - 3 + 2 - 1 - 2 - 1 = 5, what the box shows.
    assert_eq!(
        cloud
            .scalar("SELECT on_hand FROM stock_levels WHERE branch_id = 'JKT01' AND sku = 'OF-1'")
            .await,
        5
    );
    assert_eq!(
        cloud
            .scalar("SELECT sum(delta)::bigint FROM stock_movements WHERE branch_id = 'JKT01' AND sku = 'OF-1'")
            .await,
        5
    );
    assert_eq!(
        cloud
            .scalar("SELECT count(*) FROM stock_movements WHERE reason = 'ADJUSTMENT' AND note = 'rak A'")
            .await,
        4
    );
    assert_eq!(
        cloud
            .scalar(&format!(
                "SELECT count(*) FROM stock_movements WHERE adjustment = 'WORK_ORDER_RETURN' AND work_order_id = '{wo}'"
            ))
            .await,
        1
    );
    assert_eq!(
        cloud
            .scalar("SELECT count(*) FROM stock_movements WHERE adjustment = 'COUNT' AND count_id = 'count-1'")
            .await,
        1
    );
    let answer = cloud.pull(&device, 0, None).await;
    let rejections: Vec<_> = answer.body["changes"]
        .as_array()
        .expect("changes")
        .iter()
        .filter(|c| c["kind"] == "rejection")
        .map(|c| c["seq"].as_i64().expect("seq"))
        .collect();
    assert_eq!(rejections, [8, 9], "{answer:?}");
}
