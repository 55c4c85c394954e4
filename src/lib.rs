//! jitad
