//! Money is kept as integer micro-USD so sums over a million rows stay exact.

/// Micro-USD (1e-6 USD).
pub type MicroUsd = i64;

/// USD as configured (a float) to micro-USD, rounding up: a cap or an estimate is never shaved.
pub fn usd_to_micro(usd: f64) -> MicroUsd {
    if !usd.is_finite() || usd <= 0.0 {
        return 0;
    }
    (usd * 1_000_000.0).ceil() as MicroUsd
}

/// micro-USD to USD for display and JSON.
pub fn micro_to_usd(micro: MicroUsd) -> f64 {
    micro as f64 / 1_000_000.0
}

/// `$1.23` style, to the cent unless the amount is under a cent.
pub fn format_usd(micro: MicroUsd) -> String {
    let usd = micro_to_usd(micro);
    if micro != 0 && usd.abs() < 0.01 {
        format!("${usd:.4}")
    } else {
        format!("${usd:.2}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn conversions() {
        assert_eq!(usd_to_micro(2.0), 2_000_000);
        assert_eq!(usd_to_micro(0.0000001), 1);
        assert_eq!(usd_to_micro(-1.0), 0);
        assert_eq!(format_usd(1_234_567), "$1.23");
        assert_eq!(format_usd(3_190), "$0.0032");
        assert_eq!(format_usd(0), "$0.00");
    }

    #[test]
    fn edges_round_and_format_as_documented() {
        // A cap of NaN or infinity admits nothing rather than everything.
        assert_eq!(usd_to_micro(f64::NAN), 0);
        assert_eq!(usd_to_micro(f64::INFINITY), 0);
        // Rounding up, never shaving: a third of a micro-dollar costs one.
        assert_eq!(usd_to_micro(0.000_000_3), 1);
        assert_eq!(usd_to_micro(1.000_000_1), 1_000_001);
        // Exactly a cent is shown to the cent; just under it, to four places.
        assert_eq!(format_usd(10_000), "$0.01");
        assert_eq!(format_usd(9_999), "$0.0100");
        assert_eq!(format_usd(-3_190), "$-0.0032");
        assert_eq!(micro_to_usd(-2_500_000), -2.5);
    }
}
