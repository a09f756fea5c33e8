//! SQS queues and EventBridge rules in moto for the tests of event-driven status, through boto3
//! in moto's own Python (`MOTO_PYTHON`), as docs/events.md sets them up.

use crate::stack;

/// Runs a boto3 snippet against moto with `endpoint`, `region` and the arguments in `args`.
pub fn boto(script: &str, args: &[&str]) -> String {
    let s = stack();
    let prelude = r#"
import json, sys
import boto3
kw = dict(endpoint_url=sys.argv[1], region_name=sys.argv[2], aws_access_key_id="testing", aws_secret_access_key="testing")
sqs, events = boto3.client("sqs", **kw), boto3.client("events", **kw)
args = sys.argv[3:]
"#;
    let out = s
        .command(s.var("MOTO_PYTHON"))
        .arg("-c")
        .arg(format!("{prelude}{script}"))
        .arg(s.var("MOTO_URL"))
        .arg(s.var("AWS_REGION"))
        .args(args)
        .output()
        .expect("run python");
    assert!(out.status.success(), "boto3: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// A queue and an EventBridge rule routing the state changes of jobs named `prefix…` to it, as
/// docs/events.md sets them up; returns the queue URL.
pub fn queue_and_rule(name: &str, prefix: &str) -> String {
    boto(
        r#"
name, prefix = args
url = sqs.create_queue(QueueName=name, Attributes={"VisibilityTimeout": "30"})["QueueUrl"]
arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
pattern = {"source": ["aws.sagemaker"], "detail-type": ["SageMaker Processing Job State Change"],
           "detail": {"ProcessingJobName": [{"prefix": prefix}]}}
events.put_rule(Name=name, EventPattern=json.dumps(pattern), State="ENABLED")
events.put_targets(Rule=name, Targets=[{"Id": "queue", "Arn": arn}])
print(url)
"#,
        &[name, prefix],
    )
}

/// Messages in the queue, visible and in flight.
pub fn queued(url: &str) -> u64 {
    boto(
        r#"
a = sqs.get_queue_attributes(QueueUrl=args[0], AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"])["Attributes"]
print(int(a["ApproximateNumberOfMessages"]) + int(a["ApproximateNumberOfMessagesNotVisible"]))
"#,
        &[url],
    )
    .parse()
    .unwrap_or(u64::MAX)
}

/// Removes a queue and rule made by [`queue_and_rule`].
pub fn remove_queue_and_rule(url: &str, rule: &str) {
    boto(
        r#"
url, rule = args
events.remove_targets(Rule=rule, Ids=["queue"])
events.delete_rule(Name=rule)
sqs.delete_queue(QueueUrl=url)
"#,
        &[url, rule],
    );
}
