//! The PMUv3 unit (being written).
