//! The SPE unit (being written).
