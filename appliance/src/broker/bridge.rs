//! From the store's notices to MQTT: the one place that decides what the LAN hears.
//!
//! It listens to [`Store::subscribe`] (committed events and the notices that change nothing) and
//! publishes, as the daemon, QoS 1:
//!
//! | topic | when | payload (JSON) |
//! | --- | --- | --- |
//! | `sentra/<branch>/work-orders/<id>` | created, status, mechanic | [`WorkOrderMsg`] |
//! | `sentra/<branch>/stock/<sku>` | every stock movement | [`StockMsg`] |
//! | `sentra/<branch>/print-jobs/<id>` | queued, printing, printed, failed | [`PrintJobMsg`] |
//! | `sentra/<branch>/scans/<scanner>` | every scan | `store::pick_slips::ScanNotice` |
//! | `sentra/<branch>/printer` (retained) | printer state changes | [`PrinterMsg`] |
//! | `sentra/<branch>/sync` (retained) | sync state changes, and at start | [`SyncMsg`] |
//!
//! The sync message is computed from the store and the link state every [`SYNC_EVERY`] and
//! published when it differs from the last one, and once at start, so the retained sync state
//! after a restart is today's (the broker also takes its retained messages back from the store).
//! A notice whose record cannot be read is logged and skipped: MQTT is a live view, the store
//! stays the truth.

use std::path::PathBuf;
use std::time::Duration;

use bytes::Bytes;
use rmqtt::types::QoS;
use serde::Serialize;
use tokio::sync::broadcast::error::RecvError;
use tokio_util::sync::CancellationToken;

use super::{BrokerHandle, BrokerState};
use crate::store::{self, Notice, Store, outbox, print_jobs, workshop};
use crate::sync::{LinkState, SyncHandle};
use sentra_protocol::EntityKind;

/// How often the sync state and the broker's state file are checked for changes.
pub const SYNC_EVERY: Duration = Duration::from_secs(1);

/// The topics, in one place.
pub struct Topics {
    prefix: String,
}

impl Topics {
    pub fn new(branch: &str) -> Self {
        Self {
            prefix: format!("sentra/{branch}"),
        }
    }
    pub fn work_order(&self, id: &str) -> String {
        format!("{}/work-orders/{id}", self.prefix)
    }
    pub fn stock(&self, sku: &str) -> String {
        format!("{}/stock/{sku}", self.prefix)
    }
    pub fn print_job(&self, id: &str) -> String {
        format!("{}/print-jobs/{id}", self.prefix)
    }
    pub fn scans(&self, scanner: &str) -> String {
        format!("{}/scans/{scanner}", self.prefix)
    }
    pub fn booking(&self, id: &str) -> String {
        format!("{}/bookings/{id}", self.prefix)
    }
    pub fn printer(&self) -> String {
        format!("{}/printer", self.prefix)
    }
    pub fn sync(&self) -> String {
        format!("{}/sync", self.prefix)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct WorkOrderMsg {
    pub id: String,
    pub status: String,
    pub vehicle_plate: String,
    pub mechanic_id: Option<String>,
    /// What happened: `created`, `status_changed`, `assigned`, ...
    pub op: String,
    /// The outbox sequence number of the change.
    pub seq: u64,
    pub updated_at: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct StockMsg {
    pub sku: String,
    pub name: String,
    pub unit: String,
    pub on_hand: i64,
    pub delta: i64,
    pub reason: String,
    pub work_order_id: Option<String>,
    pub seq: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PrintJobMsg {
    pub id: String,
    /// QUEUED, PRINTING, PRINTED or FAILED.
    pub status: String,
    pub attempts: i64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PrinterMsg {
    pub state: String,
    pub detail: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SyncMsg {
    pub link: LinkState,
    pub pending_events: u64,
    pub pending_bytes: u64,
    pub oldest_pending_at: Option<String>,
    pub last_acked_seq: u64,
    pub last_acked_at: Option<String>,
    pub last_error: Option<String>,
}

fn json<T: Serialize>(v: &T) -> Bytes {
    Bytes::from(serde_json::to_vec(v).expect("bridge messages always serialise"))
}

/// What the bridge needs.
pub struct Bridge {
    pub store: Store,
    pub broker: BrokerHandle,
    pub branch: String,
    pub sync: SyncHandle,
    /// Where the broker's state file for `doctor` goes.
    pub data_dir: PathBuf,
}

impl Bridge {
    /// Until `cancel`. `notices` must be subscribed before anything can change the store.
    pub async fn run(
        self,
        mut notices: tokio::sync::broadcast::Receiver<Notice>,
        cancel: CancellationToken,
    ) -> anyhow::Result<()> {
        let topics = Topics::new(&self.branch);
        let mut tick = tokio::time::interval(SYNC_EVERY);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut last_sync: Option<SyncMsg> = None;
        let mut last_clients: Option<usize> = None;
        loop {
            tokio::select! {
                () = cancel.cancelled() => break,
                n = notices.recv() => match n {
                    Ok(notice) => self.on_notice(&topics, notice).await,
                    Err(RecvError::Lagged(k)) => {
                        tracing::warn!(missed = k, "mqtt bridge fell behind the store; some live events were not published");
                    }
                    Err(RecvError::Closed) => break,
                },
                _ = tick.tick() => {
                    self.publish_sync(&topics, &mut last_sync).await;
                    let clients = self.broker.clients();
                    if last_clients != Some(clients) {
                        last_clients = Some(clients);
                        let state = BrokerState {
                            pid: std::process::id(),
                            address: self.broker.local_addr(),
                            clients,
                            updated_at: store::format_time(time::OffsetDateTime::now_utc()),
                        };
                        let dir = self.data_dir.clone();
                        let _ = tokio::task::spawn_blocking(move || super::write_state_file(&dir, &state)).await;
                    }
                }
            }
        }
        let dir = self.data_dir.clone();
        let _ = tokio::task::spawn_blocking(move || super::remove_state_file(&dir)).await;
        Ok(())
    }

    async fn publish(&self, topic: String, payload: Bytes, retain: bool) {
        if let Err(e) = self
            .broker
            .publish(topic.clone(), payload, QoS::AtLeastOnce, retain)
            .await
        {
            tracing::warn!(%topic, error = %e, "mqtt publish failed");
        }
    }

    async fn on_notice(&self, topics: &Topics, notice: Notice) {
        match notice {
            Notice::Event {
                seq,
                entity,
                entity_id,
                op,
            } => match entity {
                EntityKind::WorkOrder => {
                    let id = entity_id.clone();
                    match self.store.read(move |c| workshop::get(c, &id)).await {
                        Ok(wo) => {
                            let msg = WorkOrderMsg {
                                id: wo.id,
                                status: wo.status,
                                vehicle_plate: wo.vehicle_plate,
                                mechanic_id: wo.mechanic_id,
                                op,
                                seq,
                                updated_at: wo.updated_at,
                            };
                            self.publish(topics.work_order(&msg.id), json(&msg), false)
                                .await;
                        }
                        Err(e) => {
                            tracing::warn!(work_order = %entity_id, error = %e, "mqtt: work order not read")
                        }
                    }
                }
                EntityKind::StockMovement => {
                    let id = entity_id.clone();
                    let read = self
                        .store
                        .read(move |c| {
                            let m = workshop::movement(c, &id)?;
                            let level = workshop::stock_level(c, &m.sku)?;
                            Ok((m, level))
                        })
                        .await;
                    match read {
                        Ok((m, level)) => {
                            let msg = StockMsg {
                                sku: level.sku,
                                name: level.name,
                                unit: level.unit,
                                on_hand: level.on_hand,
                                delta: m.delta,
                                reason: m.reason,
                                work_order_id: m.work_order_id,
                                seq,
                            };
                            self.publish(topics.stock(&msg.sku), json(&msg), false)
                                .await;
                        }
                        Err(e) => {
                            tracing::warn!(movement = %entity_id, error = %e, "mqtt: stock movement not read")
                        }
                    }
                }
                EntityKind::PrintJob => {
                    let id = entity_id.clone();
                    match self.store.read(move |c| print_jobs::get(c, &id)).await {
                        Ok(job) => {
                            let msg = PrintJobMsg {
                                id: job.id,
                                status: job.status,
                                attempts: job.attempts,
                            };
                            self.publish(topics.print_job(&msg.id), json(&msg), false)
                                .await;
                        }
                        Err(e) => {
                            tracing::warn!(print_job = %entity_id, error = %e, "mqtt: print job not read")
                        }
                    }
                }
                _ => {}
            },
            Notice::PrintJob {
                id,
                status,
                attempts,
            } => {
                let msg = PrintJobMsg {
                    id,
                    status,
                    attempts,
                };
                self.publish(topics.print_job(&msg.id), json(&msg), false)
                    .await;
            }
            Notice::Printer { state, detail } => {
                self.publish(topics.printer(), json(&PrinterMsg { state, detail }), true)
                    .await;
            }
            Notice::Scan(scan) => {
                self.publish(topics.scans(&scan.scanner), json(&scan), false)
                    .await;
            }
            Notice::Booking(booking) => {
                self.publish(topics.booking(&booking.id), json(&booking), false)
                    .await;
            }
            Notice::DeviceRevoked { id } => self.broker.revoke(id).await,
            Notice::DeviceCredentialsChanged {
                id,
                mqtt_credential,
            } => self.broker.credentials_changed(id, mqtt_credential).await,
        }
    }

    async fn publish_sync(&self, topics: &Topics, last: &mut Option<SyncMsg>) {
        let device = self.store.ctx().device_id.clone();
        let read = self
            .store
            .read(move |c| Ok((outbox::status(c, &device)?, store::sync::state(c)?)))
            .await;
        let (outbox, state) = match read {
            Ok(v) => v,
            Err(e) => {
                tracing::debug!(error = %e, "mqtt: sync state not read");
                return;
            }
        };
        let link = self.sync.get();
        let msg = SyncMsg {
            link: link.state,
            pending_events: outbox.pending_events,
            pending_bytes: outbox.pending_bytes,
            oldest_pending_at: outbox.oldest_pending_at,
            last_acked_seq: outbox.last_acked_seq,
            last_acked_at: outbox.last_acked_at,
            last_error: link.last_error.or(state.last_error),
        };
        if last.as_ref() != Some(&msg) {
            self.publish(topics.sync(), json(&msg), true).await;
            *last = Some(msg);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn topics_follow_the_contract() {
        let t = Topics::new("JKT01");
        assert_eq!(t.work_order("w1"), "sentra/JKT01/work-orders/w1");
        assert_eq!(t.stock("OLI-10W40"), "sentra/JKT01/stock/OLI-10W40");
        assert_eq!(t.print_job("p1"), "sentra/JKT01/print-jobs/p1");
        assert_eq!(t.scans("storeroom"), "sentra/JKT01/scans/storeroom");
        assert_eq!(t.sync(), "sentra/JKT01/sync");
        assert_eq!(t.printer(), "sentra/JKT01/printer");
    }

    #[test]
    fn sync_payload_shape() {
        let msg = SyncMsg {
            link: LinkState::Offline,
            pending_events: 3,
            pending_bytes: 900,
            oldest_pending_at: Some("2026-01-01T00:00:00.000Z".into()),
            last_acked_seq: 7,
            last_acked_at: None,
            last_error: Some("connection refused".into()),
        };
        let v: serde_json::Value = serde_json::from_slice(&json(&msg)).expect("json");
        assert_eq!(v["link"], "offline");
        assert_eq!(v["pending_events"], 3);
        assert_eq!(v["last_acked_seq"], 7);
    }
}
