//! Fuzzes the endpoint-policy parser and evaluator: arbitrary documents must never panic, and a
//! parsed policy must give a decision for any request.
#![no_main]

use libfuzzer_sys::fuzz_target;
use smpc::network::policy::{self, Context, Request, Resources};
use smpc::partition::Partition;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    // The first line, if any, is used as a wildcard pattern against the rest.
    if let Some((pattern, rest)) = text.split_once('\n') {
        let _ = policy::wildcard_match(pattern, rest, true);
        let _ = smpc::wildcard::matches_some_with_prefix(pattern, rest, false);
        let _ = smpc::wildcard::matches_every_with_prefix(pattern, rest, false);
    }
    let Ok(parsed) = policy::parse(text) else { return };
    let context = Context::default()
        .with("aws:PrincipalArn", "arn:aws:iam::123456789012:role/job")
        .with("s3:prefix", "data/")
        .without("aws:SourceIp");
    for (action, resources) in [
        ("s3:GetObject", Resources::One("arn:aws:s3:::bucket/data/object")),
        ("s3:GetObject", Resources::StartingWith("arn:aws:s3:::bucket/data/")),
        ("s3:ListBucket", Resources::One("arn:aws:s3:::bucket")),
        ("s3:PutObject", Resources::StartingWith("arn:aws:s3:::out/")),
    ] {
        let _ = parsed.evaluate(&Request {
            action,
            resources,
            context: &context,
            principal_arn: "arn:aws:iam::123456789012:role/job",
            partition: Partition::Aws,
        });
    }
});
