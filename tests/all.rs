//! oxi's integration tests: one binary, one module per area (see tests/support for the builder).
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::print_stdout,
    clippy::print_stderr
)]

mod support;

mod backup;
mod chaos;
mod claim_step;
mod cli_basics;
mod cli_docs;
mod config_errors;
mod diagnostics;
mod dies_with_oxi;
mod docs_lint;
mod doctor;
mod eval;
mod explore;
mod fast_loop;
mod first_hour;
mod fleet;
mod fleet_chaos;
mod followups;
mod forecast;
mod gateway;
mod github_answers;
mod github_contract;
mod github_issues;
mod hostile;
mod improve;
mod improve_judge;
mod improve_report;
mod improve_vectors;
mod kpi;
mod ledger;
mod ledger_protocols;
mod mock_model;
mod money_and_delivery;
mod notify;
mod operator_edits;
mod pipeline_stages;
mod postgres;
mod postgres_conninfo;
mod postgres_read;
mod pr_summary;
mod probe;
mod process;
mod release;
mod report;
mod resume;
mod roadmap_ingest;
mod rollup_locks;
mod routing;
mod run_cmd;
mod run_live;
mod saturate;
mod scheduler_surface;
mod screen;
mod screen_outside;
mod shadow;
mod shipped;
mod tick;
mod triage;
mod worker_kinds;
mod worker_normalize;
