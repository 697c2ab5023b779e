//! Spend caps as one check: would holding `amount` more cross the day's or the month's cap?
//!
//! Callers run the check inside the same `BEGIN IMMEDIATE` transaction that then reserves the
//! money, so two claimers can never both squeeze under a cap.

use serde::Serialize;

use crate::config::{CapsConfig, DailyCapSource};
use crate::ledger::SpendTotals;
use crate::money::{MicroUsd, format_usd, usd_to_micro};

/// The caps in micro-USD.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Caps {
    pub job: MicroUsd,
    pub daily: MicroUsd,
    pub monthly: MicroUsd,
    /// The setting `daily` came from.
    pub daily_limit: Limit,
}

impl Caps {
    pub fn from_config(caps: &CapsConfig) -> Self {
        Self {
            job: usd_to_micro(caps.job_usd),
            daily: usd_to_micro(caps.daily_usd),
            monthly: usd_to_micro(caps.monthly_usd),
            daily_limit: match caps.daily_source {
                DailyCapSource::Config => Limit::DailyUsd,
                DailyCapSource::MaxCostPerDay => Limit::MaxCostPerDay,
            },
        }
    }
}

/// The setting a cap comes from, as a person would change it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Limit {
    /// `caps.daily_usd` in oxi.toml.
    DailyUsd,
    /// `oxi saturate --max-cost-per-day`.
    MaxCostPerDay,
    /// `caps.monthly_usd` in oxi.toml.
    MonthlyUsd,
}

impl Limit {
    /// How the setting is spelled where a person sets it.
    pub fn name(self) -> &'static str {
        match self {
            Limit::DailyUsd => "caps.daily_usd",
            Limit::MaxCostPerDay => "--max-cost-per-day",
            Limit::MonthlyUsd => "caps.monthly_usd",
        }
    }

    fn raise(self) -> &'static str {
        match self {
            Limit::DailyUsd => "raise caps.daily_usd in oxi.toml",
            Limit::MaxCostPerDay => "raise --max-cost-per-day",
            Limit::MonthlyUsd => "raise caps.monthly_usd in oxi.toml",
        }
    }
}

impl std::fmt::Display for Limit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// Which cap a reservation would cross, with the figures a person needs to decide.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Refusal {
    /// `daily` or `monthly`.
    pub period: &'static str,
    /// The setting that holds the cap.
    pub limit: Limit,
    pub cap_microusd: MicroUsd,
    pub spent_microusd: MicroUsd,
    pub held_microusd: MicroUsd,
    pub amount_microusd: MicroUsd,
}

impl std::fmt::Display for Refusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.waits_for_runs_in_flight() {
            return write!(
                f,
                "{} spend cap {} ({}) has no room now: spent {}, held for runs in flight {}, this run may cost up to {}; it fits once those runs settle at what they spent",
                self.period,
                format_usd(self.cap_microusd),
                self.limit,
                format_usd(self.spent_microusd),
                format_usd(self.held_microusd),
                format_usd(self.amount_microusd),
            );
        }
        let next = if self.period == "daily" {
            "UTC day"
        } else {
            "UTC month"
        };
        write!(
            f,
            "{} spend cap {} would be crossed: spent {}, held for running jobs {}, this run may cost up to {} ({}); wait for the next {next}, or {}",
            self.period,
            format_usd(self.cap_microusd),
            format_usd(self.spent_microusd),
            format_usd(self.held_microusd),
            format_usd(self.amount_microusd),
            self.limit,
            self.limit.raise()
        )
    }
}

impl std::error::Error for Refusal {}

impl Refusal {
    /// The cap is full only because of what is held for runs in flight (their reservations
    /// are raised towards the job cap while they run): once they settle at what they spent,
    /// this amount may fit. False when spent + amount alone would cross the cap.
    pub fn waits_for_runs_in_flight(&self) -> bool {
        self.held_microusd > 0
            && self.spent_microusd.saturating_add(self.amount_microusd) <= self.cap_microusd
    }
}

/// `Ok` when `amount` can be held without spent + held + amount crossing a cap. When several
/// caps refuse, the one that spent + amount alone crosses is named (the room others lack is
/// only held, and waiting for it would be in vain).
pub fn admit(totals: &SpendTotals, amount: MicroUsd, caps: &Caps) -> Result<(), Refusal> {
    let checks = [
        (
            "daily",
            caps.daily_limit,
            caps.daily,
            totals.day_spent,
            totals.day_reserved,
        ),
        (
            "monthly",
            Limit::MonthlyUsd,
            caps.monthly,
            totals.month_spent,
            totals.month_reserved,
        ),
    ];
    let refusals = checks
        .into_iter()
        .filter(|(_, _, cap, spent, held)| {
            spent.saturating_add(*held).saturating_add(amount) > *cap
        })
        .map(|(period, limit, cap, spent, held)| Refusal {
            period,
            limit,
            cap_microusd: cap,
            spent_microusd: spent,
            held_microusd: held,
            amount_microusd: amount,
        });
    match refusals.reduce(|first, next| {
        if first.waits_for_runs_in_flight() && !next.waits_for_runs_in_flight() {
            next
        } else {
            first
        }
    }) {
        Some(refusal) => Err(refusal),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn caps() -> Caps {
        Caps {
            job: 2_000_000,
            daily: 10_000_000,
            monthly: 100_000_000,
            daily_limit: Limit::DailyUsd,
        }
    }

    #[test]
    fn caps_come_from_the_config_in_micro_dollars_with_the_days_source() {
        let mut config = CapsConfig {
            job_usd: 2.5,
            daily_usd: 10.0,
            monthly_usd: 100.0,
            ..CapsConfig::default()
        };
        let caps = Caps::from_config(&config);
        assert_eq!(
            (caps.job, caps.daily, caps.monthly, caps.daily_limit),
            (2_500_000, 10_000_000, 100_000_000, Limit::DailyUsd)
        );
        config.daily_source = DailyCapSource::MaxCostPerDay;
        assert_eq!(Caps::from_config(&config).daily_limit, Limit::MaxCostPerDay);
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
        assert_eq!(refusal.limit, Limit::DailyUsd);
        assert!(refusal.to_string().contains("spent $6.00"), "{refusal}");
        assert!(refusal.to_string().contains("caps.daily_usd"), "{refusal}");
        // $6 spent + $2.000001 fits under $10 once the $2 held settles.
        assert!(refusal.waits_for_runs_in_flight());
    }

    #[test]
    fn a_refusal_names_the_flag_that_lowered_the_day_and_says_when_spend_alone_crosses() {
        let caps = Caps {
            daily_limit: Limit::MaxCostPerDay,
            ..caps()
        };
        let totals = SpendTotals {
            day_spent: 9_000_000,
            day_reserved: 0,
            month_spent: 9_000_000,
            month_reserved: 0,
        };
        let refusal = admit(&totals, 1_000_001, &caps).unwrap_err();
        let text = refusal.to_string();
        assert!(text.contains("(--max-cost-per-day)"), "{text}");
        assert!(!text.contains("caps.daily_usd in oxi.toml"), "{text}");
        assert!(!refusal.waits_for_runs_in_flight());
    }

    #[test]
    fn a_cap_that_spend_alone_crosses_is_named_before_one_whose_room_is_only_held() {
        // The day's room is only held; the month is really spent.
        let totals = SpendTotals {
            day_spent: 0,
            day_reserved: 9_000_000,
            month_spent: 99_000_000,
            month_reserved: 9_000_000,
        };
        let refusal = admit(&totals, 2_000_000, &caps()).unwrap_err();
        assert_eq!(refusal.limit, Limit::MonthlyUsd);
        assert!(!refusal.waits_for_runs_in_flight());
        let held = admit(
            &SpendTotals {
                month_spent: 0,
                ..totals
            },
            2_000_000,
            &caps(),
        )
        .unwrap_err();
        assert!(held.waits_for_runs_in_flight());
        assert!(
            held.to_string().contains("once those runs settle"),
            "{held}"
        );
    }

    #[test]
    fn when_spend_alone_crosses_both_caps_the_day_is_named() {
        let totals = SpendTotals {
            day_spent: 9_500_000,
            day_reserved: 0,
            month_spent: 99_500_000,
            month_reserved: 0,
        };
        let refusal = admit(&totals, 1_000_000, &caps()).unwrap_err();
        assert_eq!(refusal.limit, Limit::DailyUsd);
        assert_eq!(refusal.period, "daily");
    }

    /// What a person reads when a run is refused: which setting to raise, or when the room
    /// comes back, for each cap and for room that is only held.
    #[test]
    fn refusals_say_which_setting_to_raise_and_when_room_returns() {
        let crossed = |limit, period: &'static str| Refusal {
            period,
            limit,
            cap_microusd: 10_000_000,
            spent_microusd: 9_500_000,
            held_microusd: 0,
            amount_microusd: 1_000_000,
        };
        let texts = [
            crossed(Limit::DailyUsd, "daily"),
            crossed(Limit::MaxCostPerDay, "daily"),
            crossed(Limit::MonthlyUsd, "monthly"),
            Refusal {
                spent_microusd: 1_000_000,
                held_microusd: 9_000_000,
                ..crossed(Limit::DailyUsd, "daily")
            },
        ]
        .map(|refusal| refusal.to_string())
        .join("\n");
        insta::assert_snapshot!(texts, @r"
        daily spend cap $10.00 would be crossed: spent $9.50, held for running jobs $0.00, this run may cost up to $1.00 (caps.daily_usd); wait for the next UTC day, or raise caps.daily_usd in oxi.toml
        daily spend cap $10.00 would be crossed: spent $9.50, held for running jobs $0.00, this run may cost up to $1.00 (--max-cost-per-day); wait for the next UTC day, or raise --max-cost-per-day
        monthly spend cap $10.00 would be crossed: spent $9.50, held for running jobs $0.00, this run may cost up to $1.00 (caps.monthly_usd); wait for the next UTC month, or raise caps.monthly_usd in oxi.toml
        daily spend cap $10.00 (caps.daily_usd) has no room now: spent $1.00, held for runs in flight $9.00, this run may cost up to $1.00; it fits once those runs settle at what they spent
        ");
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
            admit(&totals, 2_000_000, &caps()).unwrap_err().limit,
            Limit::MonthlyUsd
        );
    }
}
