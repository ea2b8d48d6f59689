//! previewd: preview environments for pull requests, on one Docker host, behind one shared
//! Caddy gateway. The binary (`main.rs`) is a thin clap front; everything lives here so tests
//! and benchmarks run the same code.

pub mod access;
pub mod cli;
pub mod clock;
pub mod config;
pub mod edge;
pub mod engine;
pub mod forge;
pub mod ids;
pub mod intent;
pub mod listener;
pub mod metrics;
pub mod preview;
pub mod queue;
pub mod reconciler;
pub mod serve;
pub mod spec;
pub mod webhook;
