//! The request framer on arbitrary bytes, fed at arbitrary split points the
//! way the listener's guard feeds it: never panics, never passes more than it holds.
#![no_main]

use gatehouse::listener::framing::{Framer, Limits, Step};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&split, data)) = data.split_first() else { return };
    let mut f = Framer::new(Limits {
        max_header_bytes: 4096,
        max_uri_bytes: 512,
        max_headers: 32,
    });
    let mut held: Vec<u8> = Vec::new();
    let step = (split as usize).max(1);
    for chunk in data.chunks(step) {
        held.extend_from_slice(chunk);
        loop {
            match f.step(&held) {
                Step::Pass(n) => {
                    assert!(n > 0 && n <= held.len());
                    held.drain(..n);
                }
                Step::NeedMore => break,
                Step::AwaitConnect => f.connect_answered(split % 2 == 0),
                Step::Reject(_) | Step::Tunnel => return,
            }
        }
    }
});
