//! `GET /metrics` as Prometheus sees it: one registry under `sentra_cloud_`, requests labelled by
//! route template (never the raw path) and status, ingest's counters, the build.

use reqwest::Method;

use crate::cloud::Cloud;

#[tokio::test]
async fn metrics_count_requests_by_route_template_and_ingest_by_outcome() {
    let cloud = Cloud::start().await;
    let mut device = cloud.enroll("JKT01").await;
    let events = device.outbox.workshop_cycle("OF-1");
    for _ in 0..2 {
        let answer = cloud.push(&device, &events).await;
        assert_eq!(answer.status, 200, "{answer:?}");
    }
    let pulled = cloud.pull(&device, 0, None).await;
    assert_eq!(pulled.status, 200, "{pulled:?}");
    // A path with an id in it, and a path no route has: neither may become a label value.
    let booking = cloud
        .bearer(
            &cloud.operator,
            Method::GET,
            "/v1/bookings/no-such-42",
            None,
        )
        .await;
    assert_eq!(booking.status, 404, "{booking:?}");
    let nowhere = cloud
        .bearer(&cloud.operator, Method::GET, "/no/such/path-42", None)
        .await;
    assert_eq!(nowhere.status, 404, "{nowhere:?}");

    let text = crate::support::scrape(cloud.server.addr, &cloud.operator).await;
    let scrape = crate::support::parse_metrics(&text);
    let value =
        |name: &str, labels: &[(&str, &str)]| crate::support::sample_sum(&scrape, name, labels);
    let requests = "sentra_cloud_http_requests_total";
    let push = [("route", "/v1/sync/push"), ("method", "POST")];
    assert_eq!(
        value(requests, &[push[0], push[1], ("status", "200")]),
        2.0,
        "{text}"
    );
    assert_eq!(
        value(requests, &[("route", "/v1/sync/pull"), ("status", "200")]),
        1.0,
        "{text}"
    );
    // A template with a parameter, read from the text: prometheus-parse's sample pattern stops a
    // label set at the first `}`, so it skips such lines (Prometheus itself reads them).
    assert!(
        text.lines().any(|line| line
            == r#"sentra_cloud_http_requests_total{route="/v1/bookings/{id}",method="GET",status="404"} 1"#),
        "{text}"
    );
    assert_eq!(
        value(requests, &[("route", "unmatched"), ("status", "404")]),
        1.0,
        "{text}"
    );
    assert!(
        !text.contains("-42"),
        "a raw path became a label value:\n{text}"
    );
    assert_eq!(
        value("sentra_cloud_http_request_duration_seconds_count", &push),
        2.0,
        "{text}"
    );
    assert!(
        scrape.samples.iter().any(|s| s.metric
            == "sentra_cloud_http_request_duration_seconds"
            && s.labels.get("route") == Some("/v1/sync/push")
            && matches!(&s.value, prometheus_parse::Value::Histogram(buckets) if !buckets.is_empty())),
        "{text}"
    );

    // The first push applied the cycle; the second was all duplicates.
    let cycle = events.len() as f64;
    assert_eq!(
        value("sentra_cloud_ingest_batches_total", &[]),
        2.0,
        "{text}"
    );
    let ingested = "sentra_cloud_ingest_events_total";
    assert_eq!(value(ingested, &[("outcome", "applied")]), cycle, "{text}");
    assert_eq!(
        value(ingested, &[("outcome", "duplicate")]),
        cycle,
        "{text}"
    );
    assert_eq!(value(ingested, &[("outcome", "parked")]), 0.0, "{text}");

    assert_eq!(
        value(
            "sentra_cloud_build_info",
            &[("version", env!("CARGO_PKG_VERSION"))]
        ),
        1.0,
        "{text}"
    );
    assert_eq!(value("sentra_cloud_fleet_scrape_ok", &[]), 1.0, "{text}");
    // One prefix for every sample.
    for sample in &scrape.samples {
        assert!(
            sample.metric.starts_with("sentra_cloud_"),
            "{}",
            sample.metric
        );
    }
}
