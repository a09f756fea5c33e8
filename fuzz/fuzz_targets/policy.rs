//! Fuzzes the endpoint-policy parser and evaluator: arbitrary documents must never panic, and a
//! parsed policy must give a decision for any request.
#![no_main]

use std::collections::BTreeMap;

use libfuzzer_sys::fuzz_target;
use smpc::network::policy::{self, Request};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    // The first line, if any, is used as a wildcard pattern against the rest.
    if let Some((pattern, rest)) = text.split_once('\n') {
        let _ = policy::wildcard_match(pattern, rest, true);
    }
    let Ok(parsed) = policy::parse(text) else { return };
    let context = BTreeMap::from([
        ("aws:principalarn".to_string(), "arn:aws:iam::123456789012:role/job".to_string()),
        ("s3:prefix".to_string(), "data/".to_string()),
    ]);
    for (action, resource) in [
        ("s3:GetObject", "arn:aws:s3:::bucket/data/object"),
        ("s3:ListBucket", "arn:aws:s3:::bucket"),
        ("s3:PutObject", "arn:aws:s3:::out/x"),
    ] {
        let _ = parsed.evaluate(&Request { action, resource, context: &context, principal_arn: "arn:aws:iam::123456789012:role/job" });
    }
});
