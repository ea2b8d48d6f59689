//! previewd: preview environments for pull requests, on one Docker host, behind one shared
//! Caddy gateway. The binary (`main.rs`) is a thin clap front; everything lives here so tests
//! and benchmarks run the same code.

pub mod config;
pub mod engine;
pub mod ids;
pub mod preview;
pub mod spec;
