//! Stock that matches the shelf: the pure rules of adjustments, cycle counts and work-order
//! returns. The store calls these inside its transactions; nothing here does I/O.
//!
//! - An adjustment never takes a level below zero: DAMAGE and RETURN_TO_SUPPLIER remove at most
//!   what is on hand; a COUNT sets the level to what the shelf holds (so never below zero).
//! - A cycle count remembers, per SKU, the box's level when the SKU was first counted
//!   (`expected`); the difference shown is `counted - expected`, and applying adds exactly that
//!   difference to the level at apply time, so movements made after the SKU was counted (a
//!   dispense while the count was open) are kept, not undone.
//! - A work order gives back at most what was dispensed to it minus what it already gave back,
//!   taken from its newest lines first.

use sentra_protocol::workshop::StockAdjustment;

/// Why a stock rule refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StockRefusal {
    /// The change would take the level below zero.
    BelowZero { on_hand: i64, delta: i64 },
    /// A count that matches the box: nothing to adjust.
    NoDifference,
    /// The kind is not one a person asks for directly (WORK_ORDER_RETURN has its own route).
    NotDirect,
    /// A return of more than the work order holds of the part.
    MoreThanDispensed { available: i64 },
}

impl StockRefusal {
    pub fn message(&self, sku: &str) -> String {
        match self {
            StockRefusal::BelowZero { on_hand, delta } => format!(
                "only {on_hand} of {sku} in stock; a change of {delta} would take it below zero"
            ),
            StockRefusal::NoDifference => {
                format!("the shelf's count of {sku} already matches the box; nothing to adjust")
            }
            StockRefusal::NotDirect => {
                "WORK_ORDER_RETURN goes through POST /v1/work-orders/{id}/returns".to_owned()
            }
            StockRefusal::MoreThanDispensed { available } => format!(
                "only {available} of {sku} dispensed to this work order and not yet returned"
            ),
        }
    }
}

/// The delta of a direct adjustment. `amount` is the quantity removed for DAMAGE and
/// RETURN_TO_SUPPLIER (≥ 1), and the shelf's count for COUNT (≥ 0).
pub fn adjustment_delta(
    kind: StockAdjustment,
    on_hand: i64,
    amount: i64,
) -> Result<i64, StockRefusal> {
    let delta = match kind {
        StockAdjustment::Count => amount.saturating_sub(on_hand),
        StockAdjustment::Damage | StockAdjustment::ReturnToSupplier => amount.saturating_neg(),
        StockAdjustment::WorkOrderReturn => return Err(StockRefusal::NotDirect),
    };
    if delta == 0 {
        return Err(StockRefusal::NoDifference);
    }
    keeps_non_negative(on_hand, delta)?;
    Ok(delta)
}

/// Refuse a delta that would take `on_hand` below zero.
pub fn keeps_non_negative(on_hand: i64, delta: i64) -> Result<(), StockRefusal> {
    match on_hand.checked_add(delta) {
        Some(level) if level >= 0 => Ok(()),
        _ => Err(StockRefusal::BelowZero { on_hand, delta }),
    }
}

/// A counted SKU's difference: what the shelf held against what the box expected then.
pub fn count_difference(expected: i64, counted: i64) -> i64 {
    counted.saturating_sub(expected)
}

/// What applying a counted line adds to the level now (`current`): its difference, or nothing
/// when it matched. Refused when movements since it was counted leave too little to take away.
pub fn count_apply_delta(expected: i64, counted: i64, current: i64) -> Result<i64, StockRefusal> {
    let delta = count_difference(expected, counted);
    if delta != 0 {
        keeps_non_negative(current, delta)?;
    }
    Ok(delta)
}

/// A line of a work order as a return sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReturnableLine {
    pub id: String,
    pub qty: i64,
    pub returned: i64,
}

/// Which lines give back `qty`, newest first (`lines` are oldest first): `(line id, taken)`.
pub fn allocate_return(
    lines: &[ReturnableLine],
    qty: i64,
) -> Result<Vec<(String, i64)>, StockRefusal> {
    let available: i64 = lines
        .iter()
        .map(|l| (l.qty - l.returned).max(0))
        .fold(0i64, i64::saturating_add);
    if qty > available || qty <= 0 {
        return Err(StockRefusal::MoreThanDispensed { available });
    }
    let mut left = qty;
    let mut taken = Vec::new();
    for l in lines.iter().rev() {
        if left == 0 {
            break;
        }
        let take = (l.qty - l.returned).max(0).min(left);
        if take > 0 {
            taken.push((l.id.clone(), take));
            left -= take;
        }
    }
    Ok(taken)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn adjustments() {
        use StockAdjustment::*;
        assert_eq!(adjustment_delta(Damage, 5, 2), Ok(-2));
        assert_eq!(adjustment_delta(ReturnToSupplier, 5, 5), Ok(-5));
        assert_eq!(
            adjustment_delta(Damage, 1, 2),
            Err(StockRefusal::BelowZero {
                on_hand: 1,
                delta: -2
            })
        );
        assert_eq!(adjustment_delta(Count, 5, 3), Ok(-2));
        assert_eq!(adjustment_delta(Count, 5, 9), Ok(4));
        assert_eq!(
            adjustment_delta(Count, 5, 5),
            Err(StockRefusal::NoDifference)
        );
        assert_eq!(
            adjustment_delta(Count, 0, 0),
            Err(StockRefusal::NoDifference)
        );
        assert_eq!(
            adjustment_delta(WorkOrderReturn, 5, 1),
            Err(StockRefusal::NotDirect)
        );
    }

    #[test]
    fn a_count_keeps_later_movements() {
        // Expected 10 when counted, shelf had 8; 3 dispensed since: the level goes 7 -> 5.
        assert_eq!(count_apply_delta(10, 8, 7), Ok(-2));
        assert_eq!(count_apply_delta(10, 10, 7), Ok(0));
        assert!(count_apply_delta(10, 2, 3).is_err());
    }

    #[test]
    fn returns_take_newest_lines_first() {
        let lines = vec![
            ReturnableLine {
                id: "a".into(),
                qty: 2,
                returned: 0,
            },
            ReturnableLine {
                id: "b".into(),
                qty: 3,
                returned: 1,
            },
        ];
        assert_eq!(allocate_return(&lines, 1), Ok(vec![("b".into(), 1)]));
        assert_eq!(
            allocate_return(&lines, 3),
            Ok(vec![("b".into(), 2), ("a".into(), 1)])
        );
        assert_eq!(
            allocate_return(&lines, 5),
            Err(StockRefusal::MoreThanDispensed { available: 4 })
        );
        assert!(allocate_return(&[], 1).is_err());
    }

    proptest! {
        /// No adjustment the rules accept takes a level below zero, and a COUNT lands on the
        /// counted number.
        #[test]
        fn adjustments_never_go_below_zero(on_hand in 0i64..20_000, amount in 0i64..20_000, k in 0usize..3) {
            let kind = [StockAdjustment::Count, StockAdjustment::Damage, StockAdjustment::ReturnToSupplier][k];
            if let Ok(delta) = adjustment_delta(kind, on_hand, amount) {
                prop_assert!(on_hand + delta >= 0);
                prop_assert!(kind.sign_ok(delta));
                if kind == StockAdjustment::Count {
                    prop_assert_eq!(on_hand + delta, amount);
                }
            }
        }

        /// A return takes exactly what was asked, never more than a line still holds.
        #[test]
        fn returns_add_up(qtys in proptest::collection::vec((1i64..50, 0i64..50), 0..8), want in 1i64..200) {
            let lines: Vec<ReturnableLine> = qtys.iter().enumerate()
                .map(|(i, &(q, r))| ReturnableLine { id: i.to_string(), qty: q, returned: r.min(q) })
                .collect();
            let available: i64 = lines.iter().map(|l| l.qty - l.returned).sum();
            match allocate_return(&lines, want) {
                Ok(taken) => {
                    prop_assert!(want <= available);
                    prop_assert_eq!(taken.iter().map(|t| t.1).sum::<i64>(), want);
                    for (id, t) in taken {
                        let l = lines.iter().find(|l| l.id == id).unwrap();
                        prop_assert!(t > 0 && t <= l.qty - l.returned);
                    }
                }
                Err(_) => prop_assert!(want > available),
            }
        }
    }
}
