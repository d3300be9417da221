//! Physical memory (being written).
