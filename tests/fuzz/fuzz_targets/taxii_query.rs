//! The query strings of TAXII 2.1 listings: any page size accepted is one the server serves.
#![no_main]

use escape_proto::taxii::{Filters, MAX_LIMIT};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|query: &str| {
    if let Ok(filters) = Filters::parse(Some(query)) {
        assert!((1..=MAX_LIMIT).contains(&filters.limit));
    }
});
