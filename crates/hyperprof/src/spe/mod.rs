//! `hyperprof spe …`: SPE trace tools.

pub mod dump;
pub mod export;
pub mod input;
pub mod out;
pub mod stats;
pub mod synth;
pub mod table;
