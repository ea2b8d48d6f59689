//! `.previewd.yml` and the compose subset, parsed and validated from arbitrary bytes: a spec
//! or an error naming the problem, never a panic, and quickly (bounded size, depth, aliases).
#![no_main]

use std::path::Path;

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let wt = Path::new("/nonexistent/previewd-fuzz");
    let _ = previewd::spec::parse_previewd_yml(".previewd.yml", data, wt);
    let _ = previewd::spec::parse_compose("compose.yaml", data, wt);
});
