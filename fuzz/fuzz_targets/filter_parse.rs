//! Any input: the filter parser never panics, and whatever parses prints to a canonical form that
//! parses back to the same tree.
#![no_main]

use libfuzzer_sys::fuzz_target;
use scimflow_scim::filter::parse_filter;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(filter) = parse_filter(text) {
        let printed = filter.to_string();
        let reparsed = parse_filter(&printed)
            .unwrap_or_else(|e| panic!("canonical form `{printed}` does not parse: {e}"));
        assert_eq!(reparsed, filter, "canonical form `{printed}` parses differently");
    }
    let _ = scimflow_scim::path::parse_path(text);
});
