//! The NTLM message parser on arbitrary bytes: never panics, and names it
//! returns are free of control characters (they go to the log).
#![no_main]

use gatehouse::auth::ntlm_msg::{parse, NtlmMessage};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(NtlmMessage::Authenticate(a)) = parse(data) {
        for s in [&a.user, &a.domain, &a.workstation] {
            assert!(!s.chars().any(char::is_control));
        }
    }
});
