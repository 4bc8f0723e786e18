//! A successor box: what a new box enrolled with `replaces` (a dead box of its branch) fetches
//! from the cloud before it serves: the branch's open state, section by section, and the number
//! series it issues invoices and credit notes in. The cloud pages each section by key
//! (`GET /v1/sync/successor?section=…&after=…`); [`SuccessorPage::check`] is the box's check of
//! every page before any of it reaches the store. Pure.
//!
//! What the snapshot is: the cloud's projections of the events the branch's boxes pushed. Work
//! orders not yet invoiced or cancelled, with the part lines dispensed to them (from their
//! `DISPENSE` stock movements); each part's stock level; the parts catalogue and mechanics those
//! rows name. What never reached the cloud (the dead box's unsynced events) is not in it.

use serde::{Deserialize, Serialize};

use crate::Hlc;
use crate::sync::{MechanicRecord, PartRecord};
use crate::workshop::WorkOrderStatus;

/// Rows a page holds unless the box asks for fewer.
pub const DEFAULT_PAGE: u32 = 500;
/// Most rows a page holds (a larger `limit` is capped to it).
pub const MAX_PAGE: u32 = 1000;
/// Most part lines one page of work orders carries; past it the cloud answers
/// `422 snapshot_too_large` and the box asks for fewer work orders a page.
pub const MAX_PAGE_LINES: usize = 20_000;
/// Most rows, all sections together, a box takes in from one snapshot (memory, one transaction).
pub const MAX_SNAPSHOT_ROWS: usize = 500_000;
/// Longest id, sku or reference accepted in a snapshot (edge ids are UUIDs).
pub const MAX_ID_LEN: usize = 128;
/// Longest free text (customer name, complaint) accepted in a snapshot.
pub const MAX_TEXT_LEN: usize = 4096;
/// Largest quantity of one part line, and the largest stock level either way.
pub const MAX_QTY: i64 = 1_000_000_000;

/// The sections of a snapshot, in the order a box loads them: the catalogue and mechanics first,
/// since work orders and stock name them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Section {
    Parts,
    Mechanics,
    WorkOrders,
    Stock,
}

impl Section {
    pub const ALL: [Section; 4] = [
        Section::Parts,
        Section::Mechanics,
        Section::WorkOrders,
        Section::Stock,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Section::Parts => "parts",
            Section::Mechanics => "mechanics",
            Section::WorkOrders => "work_orders",
            Section::Stock => "stock",
        }
    }

    pub fn parse(raw: &str) -> Option<Section> {
        Self::ALL.into_iter().find(|s| s.as_str() == raw)
    }
}

/// One page of one section. Only the section's own list is filled.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SuccessorPage {
    /// The device this box succeeds.
    pub predecessor: String,
    /// The number series the cloud holds for this box (see [`is_number_series`]).
    pub number_series: String,
    pub section: Section,
    #[serde(default)]
    pub parts: Vec<PartRecord>,
    #[serde(default)]
    pub mechanics: Vec<MechanicRecord>,
    #[serde(default)]
    pub work_orders: Vec<OpenWorkOrder>,
    #[serde(default)]
    pub stock: Vec<StockOnHand>,
    /// Ask for the next page with `after=` this; None: the section is complete.
    pub next: Option<String>,
    pub server_time_ms: u64,
}

/// A work order the branch has not invoiced or cancelled, as the cloud holds it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OpenWorkOrder {
    pub id: String,
    pub customer_name: String,
    pub customer_phone: Option<String>,
    pub vehicle_plate: String,
    pub complaint: String,
    pub mechanic_id: Option<String>,
    /// OPEN, IN_PROGRESS, WAITING_PARTS or DONE.
    pub status: String,
    pub created_at: String,
    pub updated_at: String,
    /// The latest stamp of its status and mechanic: the successor's clock moves past it, so its
    /// own changes win last-writer-wins against the dead box's.
    pub hlc: Hlc,
    pub parts: Vec<OpenWorkOrderPart>,
    /// The vehicle and customer records it is for (absent from work orders made before the
    /// records, and from an older cloud).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vehicle_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub customer_id: Option<String>,
}

/// A part dispensed to an open work order: its line, and the stock movement that took it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OpenWorkOrderPart {
    /// The line's id (`line_id` of the dispense).
    pub id: String,
    /// The stock movement's id.
    pub movement_id: String,
    pub sku: String,
    pub qty: i64,
    pub unit_price: i64,
    pub at: String,
    /// How many of `qty` the work order gave back to the shelf (never billed); 0 from a cloud
    /// older than returns.
    #[serde(default)]
    pub returned: i64,
}

/// A part's stock level: the sum of every movement the branch's boxes pushed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StockOnHand {
    pub sku: String,
    pub on_hand: i64,
}

/// Why a page is refused. The box keeps nothing of a snapshot with a bad page.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("successor snapshot, section {section}: {message}")]
pub struct BadPage {
    pub section: &'static str,
    pub message: String,
}

/// The letters of a number series: Crockford's base 32 (no I, L, O, U), so a series read aloud
/// or copied by hand from a receipt is not mistaken.
pub const SERIES_ALPHABET: &[u8; 32] = b"0123456789ABCDEFGHJKMNPQRSTVWXYZ";
/// Characters in a number series.
pub const SERIES_LEN: usize = 4;

/// A number series from 4 random bytes: 4 characters, about a million series.
pub fn number_series(random: [u8; SERIES_LEN]) -> String {
    random
        .iter()
        .map(|b| char::from(SERIES_ALPHABET[usize::from(b % 32)]))
        .collect()
}

/// Is `raw` a number series as [`number_series`] makes them?
pub fn is_number_series(raw: &str) -> bool {
    raw.len() == SERIES_LEN && raw.bytes().all(|b| SERIES_ALPHABET.contains(&b))
}

impl SuccessorPage {
    /// Every rule a page must pass before the box loads any of it: the section asked for, the
    /// predecessor and series it was told at enrolment, and every value bounded and well formed.
    pub fn check(
        &self,
        section: Section,
        predecessor: &str,
        number_series: &str,
    ) -> Result<(), BadPage> {
        let bad = |message: String| BadPage {
            section: section.as_str(),
            message,
        };
        if self.section != section {
            return Err(bad(format!(
                "the cloud answered section {}",
                self.section.as_str()
            )));
        }
        if self.predecessor != predecessor || self.number_series != number_series {
            return Err(bad(format!(
                "the page is for predecessor {:?} with series {:?}, not {predecessor:?} with {number_series:?}",
                self.predecessor, self.number_series
            )));
        }
        let others = match section {
            Section::Parts => self.mechanics.len() + self.work_orders.len() + self.stock.len(),
            Section::Mechanics => self.parts.len() + self.work_orders.len() + self.stock.len(),
            Section::WorkOrders => self.parts.len() + self.mechanics.len() + self.stock.len(),
            Section::Stock => self.parts.len() + self.mechanics.len() + self.work_orders.len(),
        };
        if others > 0 {
            return Err(bad("rows of another section on the page".to_owned()));
        }
        let rows =
            self.parts.len() + self.mechanics.len() + self.work_orders.len() + self.stock.len();
        if rows > MAX_PAGE as usize {
            return Err(bad(format!("{rows} rows; a page holds at most {MAX_PAGE}")));
        }
        if let Some(next) = &self.next {
            id("next", next).map_err(bad)?;
        }
        for part in &self.parts {
            id("sku", &part.sku).map_err(bad)?;
            text("name", &part.name).map_err(bad)?;
            if let Some(barcode) = &part.barcode {
                id("barcode", barcode).map_err(bad)?;
            }
            text("unit", &part.unit).map_err(bad)?;
            within("price", part.price, 0, i64::MAX).map_err(bad)?;
        }
        for mechanic in &self.mechanics {
            id("mechanic id", &mechanic.id).map_err(bad)?;
            text("mechanic name", &mechanic.name).map_err(bad)?;
        }
        let mut lines = 0usize;
        for w in &self.work_orders {
            check_work_order(w).map_err(bad)?;
            lines += w.parts.len();
        }
        if lines > MAX_PAGE_LINES {
            return Err(bad(format!(
                "{lines} part lines; a page carries at most {MAX_PAGE_LINES}"
            )));
        }
        for s in &self.stock {
            id("sku", &s.sku).map_err(bad)?;
            within("on_hand", s.on_hand, -MAX_QTY, MAX_QTY).map_err(bad)?;
        }
        Ok(())
    }
}

fn check_work_order(w: &OpenWorkOrder) -> Result<(), String> {
    id("work order id", &w.id)?;
    let what = |field: &str| format!("work order {}: {field}", w.id);
    text(&what("customer_name"), &w.customer_name)?;
    if let Some(phone) = &w.customer_phone {
        text(&what("customer_phone"), phone)?;
    }
    text(&what("vehicle_plate"), &w.vehicle_plate)?;
    text(&what("complaint"), &w.complaint)?;
    for (field, value) in [
        ("mechanic_id", &w.mechanic_id),
        ("vehicle_id", &w.vehicle_id),
        ("customer_id", &w.customer_id),
    ] {
        if let Some(value) = value {
            id(&what(field), value)?;
        }
    }
    match WorkOrderStatus::parse(&w.status) {
        Some(s) if !matches!(s, WorkOrderStatus::Invoiced | WorkOrderStatus::Cancelled) => {}
        _ => {
            return Err(format!(
                "{} {:?}: expected OPEN, IN_PROGRESS, WAITING_PARTS or DONE",
                what("status"),
                w.status
            ));
        }
    }
    time(&what("created_at"), &w.created_at)?;
    time(&what("updated_at"), &w.updated_at)?;
    for line in &w.parts {
        id(&what("part line id"), &line.id)?;
        id(&what("movement_id"), &line.movement_id)?;
        id(&what("sku"), &line.sku)?;
        within(&what("qty"), line.qty, 1, MAX_QTY)?;
        within(&what("returned"), line.returned, 0, line.qty)?;
        within(&what("unit_price"), line.unit_price, 0, i64::MAX)?;
        if line.qty.checked_mul(line.unit_price).is_none() {
            return Err(format!(
                "{}: {} × {} does not fit an amount",
                what("part line"),
                line.qty,
                line.unit_price
            ));
        }
        time(&what("part line at"), &line.at)?;
    }
    Ok(())
}

fn id(field: &str, value: &str) -> Result<(), String> {
    if value.is_empty() || value.len() > MAX_ID_LEN || value.chars().any(char::is_control) {
        Err(format!(
            "{field} {:?}: expected 1-{MAX_ID_LEN} characters without control characters",
            value.chars().take(40).collect::<String>()
        ))
    } else {
        Ok(())
    }
}

fn text(field: &str, value: &str) -> Result<(), String> {
    if value.trim().is_empty() || value.len() > MAX_TEXT_LEN || value.contains('\0') {
        Err(format!(
            "{field}: expected 1-{MAX_TEXT_LEN} bytes of text, not blank"
        ))
    } else {
        Ok(())
    }
}

fn within(field: &str, value: i64, min: i64, max: i64) -> Result<(), String> {
    if (min..=max).contains(&value) {
        Ok(())
    } else {
        Err(format!("{field} {value}: expected {min} to {max}"))
    }
}

fn time(field: &str, value: &str) -> Result<(), String> {
    match time::OffsetDateTime::parse(value, &time::format_description::well_known::Rfc3339) {
        Ok(t) if t.year() >= 1 => Ok(()),
        _ => Err(format!(
            "{field} {:?} is not an RFC 3339 time",
            value.chars().take(40).collect::<String>()
        )),
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    const AT: &str = "2026-12-01T08:00:00.000Z";

    fn work_order() -> OpenWorkOrder {
        OpenWorkOrder {
            id: "wo-1".into(),
            customer_name: "Budi".into(),
            customer_phone: Some("0812".into()),
            vehicle_plate: "B 1234 XYZ".into(),
            complaint: "brakes".into(),
            mechanic_id: Some("m-1".into()),
            status: "IN_PROGRESS".into(),
            created_at: AT.into(),
            updated_at: AT.into(),
            hlc: Hlc::new(1_795_400_000_123, 2),
            vehicle_id: Some("veh-1".into()),
            customer_id: None,
            parts: vec![OpenWorkOrderPart {
                id: "line-1".into(),
                movement_id: "mv-1".into(),
                sku: "OF-1".into(),
                qty: 2,
                unit_price: 45_000,
                at: AT.into(),
                returned: 1,
            }],
        }
    }

    fn page(section: Section) -> SuccessorPage {
        SuccessorPage {
            predecessor: "dead".into(),
            number_series: "7KQ2".into(),
            section,
            parts: Vec::new(),
            mechanics: Vec::new(),
            work_orders: Vec::new(),
            stock: Vec::new(),
            next: None,
            server_time_ms: 1,
        }
    }

    fn with_work_order(edit: impl FnOnce(&mut OpenWorkOrder)) -> SuccessorPage {
        let mut w = work_order();
        edit(&mut w);
        let mut p = page(Section::WorkOrders);
        p.work_orders.push(w);
        p
    }

    /// (page, section asked, Ok or a fragment of the reason)
    #[test]
    fn check_table() {
        let mut stock = page(Section::Stock);
        stock.stock.push(StockOnHand {
            sku: "OF-1".into(),
            on_hand: -3,
        });
        let mut mixed = page(Section::Stock);
        mixed.work_orders.push(work_order());
        let mut wild_stock = page(Section::Stock);
        wild_stock.stock.push(StockOnHand {
            sku: "OF-1".into(),
            on_hand: i64::MAX,
        });
        let mut too_many = page(Section::Stock);
        too_many.stock = (0..=MAX_PAGE)
            .map(|n| StockOnHand {
                sku: format!("S{n}"),
                on_hand: 1,
            })
            .collect();
        let mut other_series = page(Section::Parts);
        other_series.number_series = "0000".into();
        let cases: Vec<(SuccessorPage, Section, Result<(), &str>)> = vec![
            (with_work_order(|_| {}), Section::WorkOrders, Ok(())),
            (stock, Section::Stock, Ok(())),
            (
                page(Section::Parts),
                Section::Stock,
                Err("answered section parts"),
            ),
            (
                other_series,
                Section::Parts,
                Err("not \"dead\" with \"7KQ2\""),
            ),
            (mixed, Section::Stock, Err("another section")),
            (wild_stock, Section::Stock, Err("on_hand")),
            (too_many, Section::Stock, Err("at most 1000")),
            (
                with_work_order(|w| w.status = "INVOICED".into()),
                Section::WorkOrders,
                Err("status"),
            ),
            (
                with_work_order(|w| w.status = "open".into()),
                Section::WorkOrders,
                Err("status"),
            ),
            (
                with_work_order(|w| w.customer_name = "  ".into()),
                Section::WorkOrders,
                Err("customer_name"),
            ),
            (
                with_work_order(|w| w.id = "x".repeat(MAX_ID_LEN + 1)),
                Section::WorkOrders,
                Err("work order id"),
            ),
            (
                with_work_order(|w| w.parts[0].qty = 0),
                Section::WorkOrders,
                Err("qty"),
            ),
            (
                with_work_order(|w| w.parts[0].unit_price = -1),
                Section::WorkOrders,
                Err("unit_price"),
            ),
            (
                with_work_order(|w| {
                    w.parts[0].qty = MAX_QTY;
                    w.parts[0].unit_price = i64::MAX;
                }),
                Section::WorkOrders,
                Err("does not fit"),
            ),
            (
                with_work_order(|w| w.created_at = "yesterday".into()),
                Section::WorkOrders,
                Err("created_at"),
            ),
            (
                with_work_order(|w| w.parts[0].sku = "a\u{7}b".into()),
                Section::WorkOrders,
                Err("sku"),
            ),
        ];
        for (page, asked, want) in cases {
            let got = page.check(asked, "dead", "7KQ2");
            match (got, want) {
                (Ok(()), Ok(())) => {}
                (Err(e), Err(fragment)) => {
                    assert!(e.to_string().contains(fragment), "{e} lacks {fragment:?}");
                }
                (got, want) => panic!("{page:?}: got {got:?}, want {want:?}"),
            }
        }
    }

    #[test]
    fn sections_and_series_spell_as_on_the_wire() {
        for section in Section::ALL {
            assert_eq!(Section::parse(section.as_str()), Some(section));
            assert_eq!(
                serde_json::to_value(section).expect("serialises"),
                section.as_str()
            );
        }
        assert_eq!(Section::parse("Parts"), None);
        assert_eq!(number_series([0, 31, 32, 255]), "0Z0Z");
        assert!(is_number_series("7KQ2"));
        for bad in ["", "7KQ", "7KQ22", "7kq2", "7KQI", "7KQU", "7KQ-"] {
            assert!(!is_number_series(bad), "{bad:?}");
        }
        let page = with_work_order(|_| {});
        let text = serde_json::to_string(&page).expect("serialises");
        assert_eq!(
            serde_json::from_str::<SuccessorPage>(&text).expect("parses"),
            page
        );
    }

    proptest! {
        /// Whatever the cloud answers, reading and checking it never panics, and what passes has
        /// only bounded values.
        #[test]
        fn any_answer_is_read_and_checked_without_panic(body in ".{0,400}", qty in any::<i64>(), price in any::<i64>(), on_hand in any::<i64>()) {
            let _ = serde_json::from_str::<SuccessorPage>(&body).map(|p| p.check(Section::Stock, "dead", "7KQ2"));
            let page = with_work_order(|w| { w.parts[0].qty = qty; w.parts[0].unit_price = price; });
            if page.check(Section::WorkOrders, "dead", "7KQ2").is_ok() {
                prop_assert!((1..=MAX_QTY).contains(&qty) && price >= 0 && qty.checked_mul(price).is_some());
            }
            let mut stock = page_of_stock(on_hand);
            if stock.check(Section::Stock, "dead", "7KQ2").is_ok() {
                prop_assert!(on_hand.unsigned_abs() <= MAX_QTY.unsigned_abs());
            }
            stock.next = Some(body.clone());
            let _ = stock.check(Section::Stock, "dead", "7KQ2");
        }
    }

    fn page_of_stock(on_hand: i64) -> SuccessorPage {
        let mut p = page(Section::Stock);
        p.stock.push(StockOnHand {
            sku: "S".into(),
            on_hand,
        });
        p
    }
}
