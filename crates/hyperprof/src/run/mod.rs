//! `hyperprof run`: scenarios on the simulated machine, and their reports.

pub mod bare_metal;
pub mod guest_spe;
pub mod report;
