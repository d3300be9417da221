//! Stage-1 and stage-2 translation (being written).
