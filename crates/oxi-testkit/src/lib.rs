//! Test doubles for oxi's tests and benchmarks, kept out of the shipped binary: a fake GitHub
//! ([`fake_github`]), a scripted model API server for the real agent CLIs ([`mock_model`]),
//! a webhook receiver for notification sinks ([`receiver`]),
//! GitHub's published API descriptions with a proxy that checks traffic against them
//! ([`github_contract`]), and a throwaway PostgreSQL cluster ([`pg`]).

pub mod fake_github;
pub mod fake_github_issues;
pub mod github_contract;
pub mod mock_model;
pub mod pg;
pub mod receiver;
