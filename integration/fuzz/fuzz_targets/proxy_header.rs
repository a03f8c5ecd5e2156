//! The PROXY protocol glue on arbitrary bytes: never panics, a header's
//! length is within the bytes and the bound, and a decision on a prefix
//! never changes with more bytes (a header found on a prefix is the same
//! header on the whole; a refusal stays a refusal).
#![no_main]

use gatehouse::listener::proxy_header::{parse, Parsed, V2_MAX};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let whole = parse(data);
    if let Parsed::Header { len, .. } = &whole {
        assert!(*len <= data.len() && *len <= V2_MAX);
    }
    for cut in 0..data.len().min(V2_MAX + 1) {
        match parse(&data[..cut]) {
            Parsed::NeedMore => {}
            header @ Parsed::Header { .. } => assert_eq!(header, whole, "header at {cut}"),
            Parsed::Refused(_) => {
                assert!(matches!(whole, Parsed::Refused(_)), "refused at {cut}, then not")
            }
        }
    }
});
