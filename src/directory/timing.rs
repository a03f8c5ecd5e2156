//! How long directory operations take, by realm, operation and outcome:
//! one histogram family for the whole process, exposed by the admin
//! listener's `/metrics`. (A static, so the directory code depends on no
//! part of the proxy to report its timings.)

use std::sync::LazyLock;
use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};

/// One kind of directory operation.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct Operation {
    /// The realm's name.
    pub realm: String,
    /// `search` (service account) or `bind` (a user's password).
    pub op: &'static str,
    /// `ok`, `wrong_password`, `refused` (the directory answered but did
    /// not judge), `unavailable`.
    pub outcome: &'static str,
}

/// The family type.
pub type Operations = Family<Operation, Histogram, fn() -> Histogram>;

/// 0.5 ms to ~4 s, doubling: loopback searches to a directory at its timeout.
fn histogram() -> Histogram {
    Histogram::new(exponential_buckets(0.0005, 2.0, 14))
}

/// Every directory operation's duration.
pub static OPERATIONS: LazyLock<Operations> =
    LazyLock::new(|| Family::new_with_constructor(histogram));

/// Records one operation.
pub fn observe(realm: &str, op: &'static str, outcome: &'static str, took: Duration) {
    OPERATIONS
        .get_or_create(&Operation {
            realm: realm.to_string(),
            op,
            outcome,
        })
        .observe(took.as_secs_f64());
}
