//! Routing of `Negotiate` tokens (the path up to the GSS call) on arbitrary
//! bytes: never panics; raw NTLMSSP is always recognised as NTLM.
#![no_main]

use gatehouse::auth::spnego::{inspect, TokenKind};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let kind = inspect(data);
    if data.starts_with(b"NTLMSSP\0") {
        assert_eq!(kind, TokenKind::Ntlm);
    }
});
