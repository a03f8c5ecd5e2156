//! `Proxy-Authorization` parsing on arbitrary bytes: never panics, and what
//! it accepts as Basic always has a user and a non-empty password.
#![no_main]

use gatehouse::auth::header::{parse, Presented};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(Presented::Basic(c)) = parse(data) {
        assert!(!c.user.trim().is_empty());
        assert!(!c.password.is_empty());
    }
});
