//! `hyperprof run`: scenarios on the simulated machine, and their reports.

pub mod artifacts;
pub mod bare_metal;
pub mod code_report;
pub mod code_vm;
pub mod engine;
pub mod from_scenario;
mod host;
pub mod migration;
pub mod pinning;
pub mod presets;
pub mod profile;
pub mod report;
pub mod system;
