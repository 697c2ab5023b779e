//! Spend caps as one check: would holding `amount` more cross the day's or the month's cap?
//!
//! Callers run the check inside the same `BEGIN IMMEDIATE` transaction that then reserves the
//! money, so two claimers can never both squeeze under a cap.

use serde::Serialize;

use crate::config::CapsConfig;
use crate::ledger::SpendTotals;
use crate::money::{MicroUsd, format_usd, usd_to_micro};

/// The caps in micro-USD.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Caps {
    pub job: MicroUsd,
    pub daily: MicroUsd,
    pub monthly: MicroUsd,
}

impl Caps {
    pub fn from_config(caps: &CapsConfig) -> Self {
        Self {
            job: usd_to_micro(caps.job_usd),
            daily: usd_to_micro(caps.daily_usd),
            monthly: usd_to_micro(caps.monthly_usd),
        }
    }
}

/// Which cap a reservation would cross, with the figures a person needs to decide.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Refusal {
    /// `daily` or `monthly`.
    pub period: &'static str,
    /// The config key of the cap.
    pub key: &'static str,
    pub cap_microusd: MicroUsd,
    pub spent_microusd: MicroUsd,
    pub held_microusd: MicroUsd,
    pub amount_microusd: MicroUsd,
}

impl std::fmt::Display for Refusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let next = if self.period == "daily" {
            "UTC day"
        } else {
            "UTC month"
        };
        write!(
            f,
            "{} spend cap {} would be crossed: spent {}, held for running jobs {}, this run may cost up to {} (caps.{}); wait for the next {next}, or raise caps.{} in oxi.toml",
            self.period,
            format_usd(self.cap_microusd),
            format_usd(self.spent_microusd),
            format_usd(self.held_microusd),
            format_usd(self.amount_microusd),
            self.key,
            self.key
        )
    }
}

impl std::error::Error for Refusal {}

/// `Ok` when `amount` can be held without spent + held + amount crossing a cap.
pub fn admit(totals: &SpendTotals, amount: MicroUsd, caps: &Caps) -> Result<(), Refusal> {
    let checks = [
        (
            "daily",
            "daily_usd",
            caps.daily,
            totals.day_spent,
            totals.day_reserved,
        ),
        (
            "monthly",
            "monthly_usd",
            caps.monthly,
            totals.month_spent,
            totals.month_reserved,
        ),
    ];
    for (period, key, cap, spent, held) in checks {
        if spent.saturating_add(held).saturating_add(amount) > cap {
            return Err(Refusal {
                period,
                key,
                cap_microusd: cap,
                spent_microusd: spent,
                held_microusd: held,
                amount_microusd: amount,
            });
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn caps() -> Caps {
        Caps {
            job: 2_000_000,
            daily: 10_000_000,
            monthly: 100_000_000,
        }
    }

    #[test]
    fn admits_up_to_the_cap_and_not_a_micro_dollar_past_it() {
        let totals = SpendTotals {
            day_spent: 6_000_000,
            day_reserved: 2_000_000,
            month_spent: 6_000_000,
            month_reserved: 2_000_000,
        };
        assert!(admit(&totals, 2_000_000, &caps()).is_ok());
        let refusal = admit(&totals, 2_000_001, &caps()).unwrap_err();
        assert_eq!(refusal.key, "daily_usd");
        assert!(refusal.to_string().contains("spent $6.00"), "{refusal}");
    }

    #[test]
    fn the_month_is_checked_too() {
        let totals = SpendTotals {
            day_spent: 0,
            day_reserved: 0,
            month_spent: 99_000_000,
            month_reserved: 0,
        };
        assert_eq!(
            admit(&totals, 2_000_000, &caps()).unwrap_err().key,
            "monthly_usd"
        );
    }
}
