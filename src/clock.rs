//! Wall-clock helpers. The ledger stores Unix milliseconds (UTC); budget days and months are UTC
//! days and months, as the model providers bill them.

use jiff::{Timestamp, tz::TimeZone};

/// Milliseconds since the Unix epoch, now.
pub fn now_ms() -> i64 {
    Timestamp::now().as_millisecond()
}

fn zoned(ms: i64) -> jiff::Zoned {
    Timestamp::from_millisecond(ms)
        .unwrap_or(Timestamp::UNIX_EPOCH)
        .to_zoned(TimeZone::UTC)
}

/// `YYYY-MM-DD` (UTC) of a timestamp: the budget day it belongs to.
pub fn day_of(ms: i64) -> String {
    zoned(ms).strftime("%Y-%m-%d").to_string()
}

/// `YYYY-MM` (UTC) of a timestamp: the budget month it belongs to.
pub fn month_of(ms: i64) -> String {
    zoned(ms).strftime("%Y-%m").to_string()
}

/// RFC 3339 form for people and JSON.
pub fn rfc3339(ms: i64) -> String {
    Timestamp::from_millisecond(ms)
        .map(|t| t.round(jiff::Unit::Second).unwrap_or(t).to_string())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn budget_periods_are_utc() {
        // 2026-03-31T23:59:59.999Z and one millisecond later.
        let end_of_march = 1_775_001_599_999;
        assert_eq!(day_of(end_of_march), "2026-03-31");
        assert_eq!(month_of(end_of_march), "2026-03");
        assert_eq!(day_of(end_of_march + 1), "2026-04-01");
        assert_eq!(month_of(end_of_march + 1), "2026-04");
        assert_eq!(rfc3339(end_of_march + 1), "2026-04-01T00:00:00Z");
    }
}
