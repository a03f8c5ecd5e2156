//! The server-flight reader on arbitrary bytes: never panics, and a
//! decision on a prefix never changes — once it says anything but "need
//! more", every longer input (the server sending more) says the same. The
//! tunnel judges the first decision, so a later change of mind would mean
//! the verdict depended on how the server split its bytes.
#![no_main]

use gatehouse::tunnel::server_flight::{read_flight, Flight};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let whole = read_flight(data);
    let mut first: Option<(usize, Flight)> = None;
    for cut in 0..=data.len().min(2048) {
        match read_flight(&data[..cut]) {
            Flight::NeedMore => assert!(first.is_none(), "need more after deciding at {cut}"),
            decided => match &first {
                None => first = Some((cut, decided)),
                Some((at, f)) => assert_eq!(f, &decided, "decided at {at}, changed at {cut}"),
            },
        }
    }
    if let Some((at, f)) = first {
        assert_eq!(f, whole, "decided at {at}, changed on the whole input");
    }
});
