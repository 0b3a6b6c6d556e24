//! Money on the wire: amounts are stored in cents (`i64`) and shown in currency units with at
//! most two decimals.

/// Cents as currency units, for the API (`25_000` → `250.0`).
#[allow(clippy::cast_precision_loss, reason = "amounts are at most 10^7 cents, exact in f64")]
pub fn units(cents: i64) -> f64 {
    cents as f64 / 100.0
}

#[cfg(test)]
mod tests {
    #[test]
    fn cents_become_units_exactly() {
        assert_eq!(super::units(25_000), 250.0);
        assert_eq!(super::units(1), 0.01);
        assert_eq!(super::units(10_000_000), 100_000.0);
    }
}
