//! What a test (and `benches/ingest.rs`, which includes this file) needs to act as an enrolled
//! appliance: a device key that signs requests the way `sentra-edge` does, and an outbox that
//! writes events shaped exactly like the edge's (the protocol's payload types, gapless seqs, HLC
//! stamps). Pure: no I/O.

#![allow(dead_code, reason = "shared with the benchmark, which uses a subset")]

use std::time::{SystemTime, UNIX_EPOCH};

use rand::Rng as _;
use sentra_protocol::auth;
use sentra_protocol::ed25519_dalek::SigningKey;
use sentra_protocol::payload::{self as p, op};
use sentra_protocol::sync::PushBatch;
use sentra_protocol::{EntityKind, Event, HlcClock, PROTOCOL_VERSION, SCHEMA_VERSION};

/// A time in the shape the edge writes (RFC 3339, UTC, milliseconds).
pub const AT: &str = "2026-11-02T09:15:00.000Z";

pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |elapsed| {
            u64::try_from(elapsed.as_millis()).unwrap_or(u64::MAX)
        })
}

pub fn random_hex(bytes: usize) -> String {
    let mut buffer = vec![0_u8; bytes];
    rand::rng().fill_bytes(&mut buffer);
    hex::encode(buffer)
}

/// A fresh device key pair; the private half stays in the test, as it stays on the box.
pub fn new_key() -> SigningKey {
    let mut seed = [0_u8; 32];
    rand::rng().fill_bytes(&mut seed);
    SigningKey::from_bytes(&seed)
}

/// The four signature headers for a request, at `timestamp_ms` with `nonce`.
pub fn sign_at(
    key: &SigningKey,
    device: &str,
    method: &str,
    path_and_query: &str,
    body: &[u8],
    timestamp_ms: u64,
    nonce: &str,
) -> Vec<(&'static str, String)> {
    let signed = auth::sign(
        key,
        device,
        method,
        path_and_query,
        timestamp_ms,
        nonce,
        body,
    );
    vec![
        (auth::DEVICE_HEADER, signed.device),
        (auth::TIMESTAMP_HEADER, signed.timestamp_ms.to_string()),
        (auth::NONCE_HEADER, signed.nonce),
        (auth::SIGNATURE_HEADER, signed.signature),
    ]
}

/// The signature headers for a request now, with a fresh nonce.
pub fn sign(
    key: &SigningKey,
    device: &str,
    method: &str,
    path_and_query: &str,
    body: &[u8],
) -> Vec<(&'static str, String)> {
    sign_at(
        key,
        device,
        method,
        path_and_query,
        body,
        now_ms(),
        &random_hex(16),
    )
}

/// A device's outbox: hands out gapless seqs and HLC stamps, like the edge's `sync_event_logs`.
pub struct Outbox {
    pub device_id: String,
    next_seq: u64,
    clock: HlcClock,
    /// Prefix of generated ids, so two outboxes never make the same id by accident.
    prefix: String,
    next_id: u64,
}

impl Outbox {
    pub fn new(device_id: &str) -> Outbox {
        Outbox {
            device_id: device_id.to_owned(),
            next_seq: 1,
            clock: HlcClock::new(Default::default(), HlcClock::DEFAULT_MAX_AHEAD_MS),
            prefix: device_id.chars().take(8).collect(),
            next_id: 1,
        }
    }

    pub fn next_seq(&self) -> u64 {
        self.next_seq
    }

    /// A new id, unique for this outbox: `<kind>-<device prefix>-<n>`.
    pub fn id(&mut self, kind: &str) -> String {
        let id = format!("{kind}-{}-{}", self.prefix, self.next_id);
        self.next_id += 1;
        id
    }

    /// The next event, with any payload (even one the cloud must refuse).
    pub fn raw(
        &mut self,
        entity: EntityKind,
        entity_id: &str,
        event_op: &str,
        payload: serde_json::Value,
    ) -> Event {
        let event = Event {
            device_id: self.device_id.clone(),
            seq: self.next_seq,
            hlc: self.clock.tick(now_ms()),
            schema_version: SCHEMA_VERSION,
            entity,
            entity_id: entity_id.to_owned(),
            op: event_op.to_owned(),
            payload,
        };
        self.next_seq += 1;
        event
    }

    fn typed(
        &mut self,
        entity: EntityKind,
        entity_id: &str,
        event_op: &str,
        payload: &impl serde::Serialize,
    ) -> Event {
        let value = serde_json::to_value(payload).expect("payloads serialise");
        self.raw(entity, entity_id, event_op, value)
    }

    pub fn work_order(&mut self, id: &str) -> Event {
        let payload = p::WorkOrderCreated {
            id: id.to_owned(),
            customer_name: "Budi Santoso".into(),
            customer_phone: Some("+628123456789".into()),
            vehicle_plate: "B 1234 XYZ".into(),
            complaint: "brakes squeal; oil change due".into(),
            mechanic_id: None,
            status: "OPEN".into(),
            created_at: AT.into(),
            vehicle_id: None,
            customer_id: None,
        };
        self.typed(EntityKind::WorkOrder, id, op::CREATED, &payload)
    }

    pub fn status(&mut self, work_order: &str, from: &str, to: &str) -> Event {
        let payload = p::WorkOrderStatusChanged {
            from: from.into(),
            to: to.into(),
            at: AT.into(),
        };
        self.typed(
            EntityKind::WorkOrder,
            work_order,
            op::STATUS_CHANGED,
            &payload,
        )
    }

    pub fn receipt(&mut self, sku: &str, qty: i64) -> Event {
        let id = self.id("sm");
        let payload = p::StockMoved {
            sku: sku.into(),
            delta: qty,
            reason: "RECEIPT".into(),
            work_order_id: None,
            line_id: None,
            unit_price: None,
            reference: Some("PO-7781".into()),
            at: AT.into(),
            adjustment: None,
            note: None,
            count_id: None,
        };
        self.typed(EntityKind::StockMovement, &id, op::RECEIVED, &payload)
    }

    pub fn dispense(&mut self, work_order: &str, sku: &str, qty: i64, unit_price: i64) -> Event {
        let id = self.id("sm");
        let line = self.id("line");
        let payload = p::StockMoved {
            sku: sku.into(),
            delta: -qty,
            reason: "DISPENSE".into(),
            work_order_id: Some(work_order.into()),
            line_id: Some(line),
            unit_price: Some(unit_price),
            reference: None,
            at: AT.into(),
            adjustment: None,
            note: None,
            count_id: None,
        };
        self.typed(EntityKind::StockMovement, &id, op::DISPENSED, &payload)
    }

    /// An ADJUSTMENT of `kind` (COUNT, DAMAGE, RETURN_TO_SUPPLIER, WORK_ORDER_RETURN), as the
    /// box's `store::stock` writes it.
    pub fn adjustment(
        &mut self,
        sku: &str,
        delta: i64,
        kind: &str,
        work_order: Option<&str>,
        count: Option<&str>,
    ) -> Event {
        let id = self.id("sm");
        let payload = p::StockMoved {
            sku: sku.into(),
            delta,
            reason: "ADJUSTMENT".into(),
            work_order_id: work_order.map(str::to_owned),
            line_id: None,
            unit_price: None,
            reference: None,
            at: AT.into(),
            adjustment: Some(kind.into()),
            note: Some("rak A".into()),
            count_id: count.map(str::to_owned),
        };
        self.typed(EntityKind::StockMovement, &id, op::ADJUSTED, &payload)
    }

    /// An invoice for `work_order`: one labour line and one part line, PPN 11 %.
    pub fn invoice(&mut self, id: &str, work_order: &str, part_qty: i64, unit_price: i64) -> Event {
        let lines = vec![
            p::InvoiceLine {
                kind: "labour".into(),
                description: "Brake service".into(),
                sku: None,
                qty: 1,
                unit_price: 150_000,
                amount: 150_000,
            },
            p::InvoiceLine {
                kind: "part".into(),
                description: "Oil filter".into(),
                sku: Some("OF-1".into()),
                qty: part_qty,
                unit_price,
                amount: part_qty * unit_price,
            },
        ];
        let subtotal: i64 = lines.iter().map(|line| line.amount).sum();
        let tax = (subtotal * 11 + 50) / 100;
        let payload = p::InvoiceIssued {
            id: id.to_owned(),
            // The device's prefix as its series: two devices of a branch never share a number
            // (ingest parks a number the branch already holds).
            number: format!("JKT01-202611-{}-{:05}", self.prefix, self.next_id),
            work_order_id: work_order.to_owned(),
            lines,
            subtotal,
            tax,
            total: subtotal + tax,
            issued_at: AT.into(),
        };
        self.typed(EntityKind::Invoice, id, op::ISSUED, &payload)
    }

    pub fn payment(&mut self, id: &str, invoice: &str, amount: i64) -> Event {
        let payload = p::PaymentReceived {
            id: id.to_owned(),
            invoice_id: invoice.to_owned(),
            method: "QRIS".into(),
            amount,
            reference: Some("QR-0042".into()),
            received_at: AT.into(),
        };
        self.typed(EntityKind::Payment, id, op::RECEIVED, &payload)
    }

    /// One work order's life at a workshop, as the edge records it: 8 events (created, a stock
    /// receipt, in progress, two parts dispensed, done, invoice, payment).
    pub fn workshop_cycle(&mut self, sku: &str) -> Vec<Event> {
        let work_order = self.id("wo");
        let invoice = self.id("inv");
        let payment = self.id("pay");
        let mut events = vec![
            self.work_order(&work_order),
            self.receipt(sku, 4),
            self.status(&work_order, "OPEN", "IN_PROGRESS"),
            self.dispense(&work_order, sku, 1, 45_000),
            self.dispense(&work_order, sku, 1, 45_000),
            self.status(&work_order, "IN_PROGRESS", "DONE"),
        ];
        let issued = self.invoice(&invoice, &work_order, 2, 45_000);
        let total = issued.payload["total"].as_i64().expect("a total");
        events.push(issued);
        events.push(self.payment(&payment, &invoice, total));
        events
    }
}

/// The body of a push.
pub fn batch(events: &[Event]) -> Vec<u8> {
    serde_json::to_vec(&PushBatch {
        protocol: PROTOCOL_VERSION,
        events: events.to_vec(),
    })
    .expect("a batch serialises")
}
