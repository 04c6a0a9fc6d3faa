//! sidetrace: the flight recorder for AI coding agents.
//!
//! See ARCHITECTURE.md for the data path and how the modules fit together.

pub mod admin;
pub mod ca;
pub mod capture;
pub mod cli;
pub mod config;
pub mod export;
pub mod identity;
pub mod journal;
pub mod key_file;
pub mod metrics;
pub mod priority;
pub mod process;
pub mod proxy;
pub mod record;
pub mod run;
pub mod stdio;
pub mod tls;
