//! The tunnel classifier on arbitrary bytes: never panics, and a "need more"
//! answer is consistent with what a longer input then says.
#![no_main]

use gatehouse::tunnel::detect::{classify, Classified};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let whole = classify(data);
    // Every prefix that was already decided must agree with the whole input.
    for cut in [1, 5, 9, 64, 517].into_iter().filter(|c| *c < data.len()) {
        if let Classified::Done(p) = classify(&data[..cut]) {
            if let Classified::Done(q) = &whole {
                assert_eq!(p.name(), q.name(), "decided at {cut}, then changed its mind");
            }
        }
    }
});
