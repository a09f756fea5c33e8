//! The simulator's behaviour, call by call.

use super::*;

use std::thread::sleep;

const US: &str = "us-east-1";
const EU: &str = "eu-west-1";
const OTHER_ACCOUNT: &str = "222222222222";

fn sim() -> Sim {
    Sim::new(US.into(), "123456789012".into())
}

fn job(name: &str) -> Value {
    json!({
        "ProcessingJobName": name,
        "AppSpecification": {"ImageUri": "123456789012.dkr.ecr.us-east-1.amazonaws.com/p:1"},
        "RoleArn": "arn:aws:iam::123456789012:role/SageMakerRole",
        "ProcessingResources": {"ClusterConfig": {"InstanceCount": 1, "InstanceType": "ml.m5.xlarge", "VolumeSizeInGB": 30}},
    })
}

fn in_region(region: &str) -> Caller<'_> {
    Caller {
        region: Some(region),
        account: None,
    }
}

fn create(sim: &mut Sim, name: &str, caller: Caller<'_>) -> Result<String, ApiError> {
    let out = sim.handle("CreateProcessingJob", &job(name), caller)?;
    Ok(out["ProcessingJobArn"].as_str().unwrap_or_default().to_string())
}

fn describe(sim: &mut Sim, name: &str, caller: Caller<'_>) -> Result<Value, ApiError> {
    sim.handle("DescribeProcessingJob", &json!({"ProcessingJobName": name}), caller)
}

fn list(sim: &mut Sim, input: Value) -> Value {
    sim.handle("ListProcessingJobs", &input, Caller::default())
        .expect("list")
}

fn names(page: &Value) -> Vec<String> {
    page["ProcessingJobSummaries"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|s| s["ProcessingJobName"].as_str().unwrap_or_default().to_string())
        .collect()
}

/// Every page of a List, following NextToken; `between` runs after each page.
fn all_pages(sim: &mut Sim, input: Value, mut between: impl FnMut(&mut Sim, usize)) -> Vec<String> {
    let mut out = Vec::new();
    let mut token: Option<String> = None;
    for page_no in 0.. {
        let mut req = input.clone();
        if let Some(t) = &token {
            req["NextToken"] = json!(t);
        }
        let page = list(sim, req);
        out.extend(names(&page));
        between(sim, page_no);
        match page["NextToken"].as_str() {
            Some(t) => token = Some(t.to_string()),
            None => break,
        }
    }
    out
}

fn config(sim: &mut Sim, body: Value) {
    let c: SimConfig = serde_json::from_value(body).expect("config");
    sim.set_config(c);
}

fn event_details(sim: &Sim) -> Vec<Value> {
    sim.outbox
        .iter()
        .map(|e| serde_json::from_str(e.entry["Detail"].as_str().unwrap_or_default()).expect("detail"))
        .collect()
}

fn assert_close(a: f64, b: f64) {
    assert!((a - b).abs() < 1e-6, "{a} != {b}");
}

/// The benchmark times a poll's mirroring from the List that first returned a job ended: a
/// job listed while it runs is not recorded, and a later List keeps the first time.
#[test]
fn the_first_list_that_returns_a_job_ended_is_recorded() {
    let mut sim = sim();
    let caller = Caller::default();
    for name in ["a", "b"] {
        sim.handle("CreateProcessingJob", &job(name), caller).expect("create");
    }
    sim.handle("ListProcessingJobs", &json!({}), caller).expect("list");
    assert!(sim.listed_ended.is_empty(), "running jobs: {:?}", sim.listed_ended);
    sim.admin_bulk_status(&["a".to_string()], "Completed")
        .expect("complete a");
    let before = now();
    sim.handle("ListProcessingJobs", &json!({}), caller).expect("list");
    let first = *sim.listed_ended.get("a").expect("a recorded once listed ended");
    assert!(first >= before);
    assert!(!sim.listed_ended.contains_key("b"), "b still runs");
    // SageMaker's clock has milliseconds: a later List is a later time.
    sleep(Duration::from_millis(5));
    sim.handle("ListProcessingJobs", &json!({}), caller)
        .expect("list again");
    assert_eq!(sim.listed_ended.get("a"), Some(&first), "the first List's time is kept");
}

// --- configuration ---

#[test]
fn an_empty_config_body_takes_the_defaults() {
    let c: SimConfig = serde_json::from_str("{}").expect("empty config");
    assert!(c.regional, "regional by default");
    assert!(c.publish_create_event);
    assert_eq!(c.stopping_seconds, 1.0);
    assert_eq!(
        (
            c.list_lag_seconds,
            c.duplicate_events,
            c.reorder_events,
            c.provisioning_seconds
        ),
        (0.0, 0.0, false, 0.0)
    );
    assert!(sim().config.regional, "Sim::new is regional");
    let c: SimConfig = serde_json::from_str(
        r#"{"listLagSeconds": 2.5, "duplicateEvents": 0.1, "reorderEvents": true, "publishCreateEvent": false, "provisioningSeconds": 3}"#,
    )
    .expect("new fields");
    assert_eq!(
        (
            c.list_lag_seconds,
            c.duplicate_events,
            c.reorder_events,
            c.publish_create_event,
            c.provisioning_seconds
        ),
        (2.5, 0.1, true, false, 3.0)
    );
    assert!(
        serde_json::from_str::<SimConfig>(r#"{"listLag": 1}"#).is_err(),
        "unknown fields refused"
    );
}

// --- validation of every operation's input ---

#[test]
fn every_operation_is_validated_against_the_model() {
    let mut sim = sim();
    let arn = create(&mut sim, "a", Caller::default()).expect("create");
    let c = Caller::default();
    let refused = |sim: &mut Sim, op: &str, input: Value, needle: &str| {
        let err = sim.handle(op, &input, c).expect_err(op);
        assert_eq!(err.kind, "ValidationException", "{op}: {}", err.message);
        assert!(
            err.message.contains(needle),
            "{op}: {} should contain {needle}",
            err.message
        );
    };
    refused(
        &mut sim,
        "DescribeProcessingJob",
        json!({"ProcessingJobName": "bad_name"}),
        "at 'processingJobName'",
    );
    refused(
        &mut sim,
        "StopProcessingJob",
        json!({}),
        "Value null at 'processingJobName'",
    );
    refused(
        &mut sim,
        "ListProcessingJobs",
        json!({"MaxResults": 101}),
        "Value '101' at 'maxResults' failed to satisfy constraint: Member must have value less than or equal to 100",
    );
    refused(
        &mut sim,
        "ListProcessingJobs",
        json!({"MaxResults": 0}),
        "at 'maxResults'",
    );
    refused(&mut sim, "ListProcessingJobs", json!({"StatusEquals": "Running"}), "Value 'Running' at 'statusEquals' failed to satisfy constraint: Member must satisfy enum value set: [InProgress, Completed, Failed, Stopping, Stopped]");
    refused(&mut sim, "ListProcessingJobs", json!({"SortBy": "Size"}), "at 'sortBy'");
    refused(
        &mut sim,
        "ListProcessingJobs",
        json!({"SortOrder": "Up"}),
        "at 'sortOrder'",
    );
    refused(
        &mut sim,
        "AddTags",
        json!({"ResourceArn": arn, "Tags": [{"Key": "k", "Value": "v!"}]}),
        "at 'tags.member.value'",
    );
    refused(&mut sim, "AddTags", json!({"ResourceArn": arn}), "Value null at 'tags'");
    refused(
        &mut sim,
        "ListTags",
        json!({"ResourceArn": arn, "MaxResults": 10}),
        "at 'maxResults'",
    );
    refused(
        &mut sim,
        "ListTags",
        json!({"ResourceArn": "not-an-arn"}),
        "at 'resourceArn'",
    );
    for (op, input) in [
        ("DescribeProcessingJob", json!({"ProcessingJobName": "a"})),
        (
            "ListProcessingJobs",
            json!({"MaxResults": 100, "StatusEquals": "InProgress", "SortBy": "Name", "SortOrder": "Descending"}),
        ),
        (
            "AddTags",
            json!({"ResourceArn": arn, "Tags": [{"Key": "k", "Value": "v"}]}),
        ),
        ("ListTags", json!({"ResourceArn": arn, "MaxResults": 50})),
        ("StopProcessingJob", json!({"ProcessingJobName": "a"})),
    ] {
        sim.handle(op, &input, c)
            .unwrap_or_else(|e| panic!("{op}: {}", e.message));
    }
}

#[test]
fn two_inputs_with_one_local_path_are_refused_with_an_empty_message() {
    let mut sim = sim();
    let mut req = job("a");
    let input = |n: &str| json!({"InputName": n, "S3Input": {"S3Uri": format!("s3://b/{n}"), "LocalPath": "/opt/ml/processing/input", "S3DataType": "S3Prefix"}});
    req["ProcessingInputs"] = json!([input("x"), input("y")]);
    let err = sim
        .handle("CreateProcessingJob", &req, Caller::default())
        .expect_err("same LocalPath");
    assert_eq!((err.kind, err.message.as_str()), ("ValidationException", ""));
    assert_eq!(sim.create_attempts.get("a"), Some(&1), "the attempt is counted");
}

// --- jobs keyed by (account, region, name) ---

#[test]
fn a_name_is_unique_per_account_and_region() {
    let mut sim = sim();
    let us = create(&mut sim, "a", Caller::default()).expect("unsigned: the simulator's region");
    assert_eq!(us, "arn:aws:sagemaker:us-east-1:123456789012:processing-job/a");
    let eu = create(&mut sim, "a", in_region(EU)).expect("same name in another region");
    assert_eq!(eu, "arn:aws:sagemaker:eu-west-1:123456789012:processing-job/a");
    let other = Caller {
        region: Some(US),
        account: Some(OTHER_ACCOUNT),
    };
    let theirs = create(&mut sim, "a", other).expect("same name in another account");
    assert_eq!(theirs, "arn:aws:sagemaker:us-east-1:222222222222:processing-job/a");
    let err = create(&mut sim, "a", in_region(US)).expect_err("taken here");
    assert_eq!(err.kind, "ResourceInUse");
    assert!(err.message.contains(&us), "{}", err.message);
    assert_eq!(sim.create_attempts.get("a"), Some(&4), "attempts stay keyed by name");

    // Each call sees its own.
    assert_eq!(
        describe(&mut sim, "a", in_region(EU)).expect("eu")["ProcessingJobArn"],
        eu
    );
    assert_eq!(
        describe(&mut sim, "a", Caller::default()).expect("us")["ProcessingJobArn"],
        us
    );
    assert_eq!(
        describe(&mut sim, "a", other).expect("theirs")["ProcessingJobArn"],
        theirs
    );
    assert!(describe(&mut sim, "a", in_region("ap-south-1")).is_err());

    // Stop reaches only the caller's job.
    sim.handle("StopProcessingJob", &json!({"ProcessingJobName": "a"}), in_region(EU))
        .expect("stop eu");
    assert_eq!(
        describe(&mut sim, "a", in_region(EU)).expect("eu")["ProcessingJobStatus"],
        "Stopping"
    );
    assert_eq!(
        describe(&mut sim, "a", in_region(US)).expect("us")["ProcessingJobStatus"],
        "InProgress"
    );

    // Lists and tags by ARN: only the caller's region and account.
    let page = sim
        .handle("ListProcessingJobs", &json!({}), in_region(EU))
        .expect("list");
    assert_eq!(page["ProcessingJobSummaries"][0]["ProcessingJobArn"], eu);
    assert_eq!(names(&page).len(), 1);
    sim.handle(
        "AddTags",
        &json!({"ResourceArn": eu, "Tags": [{"Key": "k", "Value": "eu"}]}),
        in_region(EU),
    )
    .expect("tag eu");
    let err = sim
        .handle(
            "AddTags",
            &json!({"ResourceArn": eu, "Tags": [{"Key": "k", "Value": "x"}]}),
            in_region(US),
        )
        .expect_err("eu's ARN from us");
    assert!(err.message.contains("Could not find resource"), "{}", err.message);
    let tags = sim
        .handle("ListTags", &json!({"ResourceArn": us}), in_region(US))
        .expect("us tags");
    assert_eq!(tags["Tags"], json!([]));
}

#[test]
fn the_instance_quota_counts_the_callers_region_only() {
    let mut sim = sim();
    config(&mut sim, json!({"instanceQuota": {"ml.m5.xlarge": 1}}));
    create(&mut sim, "a", in_region(US)).expect("first in us");
    create(&mut sim, "b", in_region(EU)).expect("first in eu");
    let err = create(&mut sim, "c", Caller::default()).expect_err("second in us");
    assert_eq!(err.kind, "ResourceLimitExceeded");
}

#[test]
fn without_regional_a_name_is_unique_per_account_and_every_region_sees_it() {
    let mut sim = sim();
    config(&mut sim, json!({"regional": false}));
    let arn = create(&mut sim, "a", in_region(EU)).expect("create");
    assert_eq!(arn, "arn:aws:sagemaker:us-east-1:123456789012:processing-job/a");
    assert_eq!(
        create(&mut sim, "a", in_region(US)).expect_err("taken").kind,
        "ResourceInUse"
    );
    describe(&mut sim, "a", in_region("ap-south-1")).expect("seen from anywhere");
    // Its events still go to the region the create was signed for.
    sim.publish_events = true;
    sim.handle("StopProcessingJob", &json!({"ProcessingJobName": "a"}), in_region(US))
        .expect("stop");
    assert_eq!(sim.outbox[0].region, EU);
}

#[test]
fn admin_endpoints_tell_jobs_of_one_name_apart() {
    let mut sim = sim();
    create(&mut sim, "a", in_region(US)).expect("us");
    sleep(Duration::from_millis(2));
    create(&mut sim, "a", in_region(EU)).expect("eu");
    create(&mut sim, "b", in_region(EU)).expect("b only in eu");
    let jobs = sim.admin_jobs();
    assert_eq!(jobs["a"]["region"], US, "the first created keeps the name");
    assert_eq!(jobs["a@123456789012:eu-west-1"]["region"], EU);
    assert_eq!(jobs["a@123456789012:eu-west-1"]["createCalls"], 2);
    assert_eq!(jobs["b"]["region"], EU);

    // The unique job of a name, wherever it is.
    sim.admin_set_status(
        "b",
        StatusChange {
            status: "Completed".into(),
            ..Default::default()
        },
    )
    .expect("b");
    // Ambiguous: the simulator's own region, unless the body names one.
    sim.admin_set_status(
        "a",
        StatusChange {
            status: "Failed".into(),
            ..Default::default()
        },
    )
    .expect("a in us");
    sim.admin_set_status(
        "a",
        StatusChange {
            status: "Stopped".into(),
            region: Some(EU.into()),
            ..Default::default()
        },
    )
    .expect("a in eu");
    assert_eq!(
        describe(&mut sim, "a", in_region(US)).expect("us")["ProcessingJobStatus"],
        "Failed"
    );
    assert_eq!(
        describe(&mut sim, "a", in_region(EU)).expect("eu")["ProcessingJobStatus"],
        "Stopped"
    );
    assert_eq!(
        describe(&mut sim, "b", in_region(EU)).expect("b")["ProcessingJobStatus"],
        "Completed"
    );
    // The admin key of `GET /_sim/jobs` is accepted as a name.
    sim.admin_set_status(
        "a@123456789012:eu-west-1",
        StatusChange {
            status: "Completed".into(),
            ..Default::default()
        },
    )
    .expect("by admin key");
    assert_eq!(
        describe(&mut sim, "a", in_region(EU)).expect("eu")["ProcessingJobStatus"],
        "Completed"
    );
    assert!(sim
        .admin_set_status(
            "a",
            StatusChange {
                status: "Completed".into(),
                region: Some("ap-south-1".into()),
                ..Default::default()
            }
        )
        .is_err());
    assert!(sim
        .admin_set_status(
            "zzz",
            StatusChange {
                status: "Completed".into(),
                ..Default::default()
            }
        )
        .is_err());
}

#[test]
fn an_ambiguous_admin_name_outside_the_simulators_region_is_refused() {
    let mut sim = sim();
    create(&mut sim, "a", in_region(EU)).expect("eu");
    create(&mut sim, "a", in_region("ap-south-1")).expect("ap");
    let err = sim
        .admin_set_status(
            "a",
            StatusChange {
                status: "Completed".into(),
                ..Default::default()
            },
        )
        .expect_err("which one?");
    assert!(err.contains("several"), "{err}");
    sim.admin_bulk_status(&["a@123456789012:ap-south-1".into()], "Completed")
        .expect("bulk by admin key");
    assert_eq!(
        describe(&mut sim, "a", in_region("ap-south-1")).expect("ap")["ProcessingJobStatus"],
        "Completed"
    );
}

// --- ListProcessingJobs ---

#[test]
fn list_sorts_by_creation_time_ascending_by_default() {
    let mut sim = sim();
    for name in ["c", "a", "b"] {
        create(&mut sim, name, Caller::default()).expect("create");
        sleep(Duration::from_millis(2));
    }
    assert_eq!(names(&list(&mut sim, json!({}))), ["c", "a", "b"]);
    assert_eq!(
        names(&list(&mut sim, json!({"SortOrder": "Descending"}))),
        ["b", "a", "c"]
    );
    assert_eq!(names(&list(&mut sim, json!({"SortBy": "Name"}))), ["a", "b", "c"]);
}

#[test]
fn next_token_is_a_cursor_that_jobs_created_between_pages_do_not_shift() {
    let mut sim = sim();
    for i in 0..6 {
        create(&mut sim, &format!("job-{i}"), Caller::default()).expect("create");
        sleep(Duration::from_millis(2));
    }
    // Newest first: a job created after the first page sorts before the cursor and must not
    // push an already returned job onto the next page.
    let seen = all_pages(
        &mut sim,
        json!({"MaxResults": 2, "SortOrder": "Descending"}),
        |sim, page| {
            if page == 0 {
                create(sim, "job-new", Caller::default()).expect("create between pages");
            }
        },
    );
    assert_eq!(seen, ["job-5", "job-4", "job-3", "job-2", "job-1", "job-0"]);

    // By name: a job inserted before the cursor changes nothing after it; one after it shows.
    let seen = all_pages(&mut sim, json!({"MaxResults": 3, "SortBy": "Name"}), |sim, page| {
        if page == 0 {
            create(sim, "a-first", Caller::default()).expect("before the cursor");
            create(sim, "job-9", Caller::default()).expect("after the cursor");
        }
    });
    assert_eq!(
        seen,
        ["job-0", "job-1", "job-2", "job-3", "job-4", "job-5", "job-9", "job-new"]
    );

    // Oldest first (the default): new jobs come at the end, each once.
    let mut created = 0;
    let seen = all_pages(&mut sim, json!({"MaxResults": 4}), |sim, _| {
        if created < 2 {
            created += 1;
            create(sim, &format!("late-{created}"), Caller::default()).expect("create");
        }
    });
    let unique: BTreeSet<&String> = seen.iter().collect();
    assert_eq!(unique.len(), seen.len(), "no job twice: {seen:?}");
    assert_eq!(seen.len(), 11, "{seen:?}");
    assert_eq!(&seen[9..], ["late-1", "late-2"]);
}

#[test]
fn an_invalid_next_token_is_a_validation_error() {
    let mut sim = sim();
    for name in ["a", "b", "c"] {
        create(&mut sim, name, Caller::default()).expect("create");
    }
    let page = list(&mut sim, json!({"MaxResults": 1}));
    let token = page["NextToken"].as_str().expect("a next page").to_string();
    assert!(token.parse::<usize>().is_err(), "not a plain offset: {token}");
    for bad in ["1", "zz", "abc", "7b7d"] {
        let err = sim
            .handle("ListProcessingJobs", &json!({"NextToken": bad}), Caller::default())
            .expect_err(bad);
        assert_eq!(err.kind, "ValidationException", "{bad}");
    }
    // A token of another order is not one of this List.
    let err = sim
        .handle(
            "ListProcessingJobs",
            &json!({"NextToken": token, "SortBy": "Name"}),
            Caller::default(),
        )
        .expect_err("token of another sort");
    assert_eq!(err.kind, "ValidationException");
}

#[test]
fn a_lagging_list_shows_jobs_as_they_were() {
    let mut sim = sim();
    config(&mut sim, json!({"listLagSeconds": 0.3}));
    create(&mut sim, "a", Caller::default()).expect("create");
    assert_eq!(
        names(&list(&mut sim, json!({}))),
        Vec::<String>::new(),
        "too new to be listed"
    );
    describe(&mut sim, "a", Caller::default()).expect("Describe is current");
    sleep(Duration::from_millis(350));
    let page = list(&mut sim, json!({}));
    assert_eq!(page["ProcessingJobSummaries"][0]["ProcessingJobStatus"], "InProgress");

    sim.admin_set_status(
        "a",
        StatusChange {
            status: "Completed".into(),
            ..Default::default()
        },
    )
    .expect("complete");
    let completed_at = describe(&mut sim, "a", Caller::default()).expect("describe")["LastModifiedTime"]
        .as_f64()
        .expect("time");
    let page = list(&mut sim, json!({}));
    assert_eq!(
        page["ProcessingJobSummaries"][0]["ProcessingJobStatus"], "InProgress",
        "not yet"
    );
    assert!(page["ProcessingJobSummaries"][0].get("ProcessingEndTime").is_none());
    let changed = json!({"LastModifiedTimeAfter": completed_at - 0.001});
    assert_eq!(
        names(&list(&mut sim, changed.clone())),
        Vec::<String>::new(),
        "the filter sees the lagged time"
    );
    assert_eq!(
        names(&list(&mut sim, json!({"StatusEquals": "Completed"}))),
        Vec::<String>::new()
    );
    assert!(sim.listed_ended.is_empty());

    sleep(Duration::from_millis(350));
    let page = list(&mut sim, changed);
    assert_eq!(names(&page), ["a"]);
    assert_eq!(page["ProcessingJobSummaries"][0]["ProcessingJobStatus"], "Completed");
    assert_close(
        page["ProcessingJobSummaries"][0]["LastModifiedTime"]
            .as_f64()
            .unwrap_or_default(),
        completed_at,
    );
}

// --- events ---

#[test]
fn publish_create_event_off_suppresses_the_create_event_only() {
    let mut sim = sim();
    sim.publish_events = true;
    create(&mut sim, "a", Caller::default()).expect("create");
    assert_eq!(
        event_details(&sim).len(),
        1,
        "the InProgress event of a create, by default"
    );
    sim.outbox.clear();
    config(&mut sim, json!({"publishCreateEvent": false}));
    create(&mut sim, "b", Caller::default()).expect("create");
    assert!(sim.outbox.is_empty(), "no event on create");
    sim.handle(
        "StopProcessingJob",
        &json!({"ProcessingJobName": "b"}),
        Caller::default(),
    )
    .expect("stop");
    let details = event_details(&sim);
    assert_eq!(details.len(), 1);
    assert_eq!(details[0]["ProcessingJobStatus"], "Stopping");
}

// --- timing ---

#[test]
fn without_provisioning_a_job_starts_at_creation() {
    let mut sim = sim();
    create(&mut sim, "a", Caller::default()).expect("create");
    let d = describe(&mut sim, "a", Caller::default()).expect("describe");
    assert_eq!(d["ProcessingStartTime"], d["CreationTime"]);
}

#[test]
fn a_provisioning_job_starts_later_with_an_event_and_completes_on_time() {
    let mut sim = sim();
    sim.publish_events = true;
    config(&mut sim, json!({"provisioningSeconds": 0.15, "inProgressSeconds": 0.3}));
    create(&mut sim, "a", Caller::default()).expect("create");
    let d = describe(&mut sim, "a", Caller::default()).expect("describe");
    assert!(d.get("ProcessingStartTime").is_none(), "provisioning: {d}");
    let created = d["CreationTime"].as_f64().expect("creation");
    assert_eq!(d["LastModifiedTime"], d["CreationTime"]);

    sleep(Duration::from_millis(200));
    let d = describe(&mut sim, "a", Caller::default()).expect("describe");
    assert_eq!(d["ProcessingJobStatus"], "InProgress");
    assert_close(d["ProcessingStartTime"].as_f64().expect("started"), created + 0.15);
    assert_eq!(d["LastModifiedTime"], d["ProcessingStartTime"]);
    let details = event_details(&sim);
    assert_eq!(details.len(), 2, "create and start");
    assert_eq!(details[1]["ProcessingJobStatus"], "InProgress");
    assert_eq!(
        details[1]["ProcessingStartTime"],
        json!(((created + 0.15) * 1000.0).round() as i64)
    );

    // Completion counts from creation, not from the start.
    sleep(Duration::from_millis(150));
    let d = describe(&mut sim, "a", Caller::default()).expect("describe");
    assert_eq!(d["ProcessingJobStatus"], "Completed");
    assert_close(d["ProcessingEndTime"].as_f64().expect("ended"), created + 0.3);
}

#[test]
fn a_job_stopped_while_provisioning_never_starts() {
    let mut sim = sim();
    config(&mut sim, json!({"provisioningSeconds": 0.05, "stoppingSeconds": 0.05}));
    create(&mut sim, "a", Caller::default()).expect("create");
    sim.handle(
        "StopProcessingJob",
        &json!({"ProcessingJobName": "a"}),
        Caller::default(),
    )
    .expect("stop");
    sleep(Duration::from_millis(80));
    let d = describe(&mut sim, "a", Caller::default()).expect("describe");
    assert_eq!(d["ProcessingJobStatus"], "Stopped");
    assert!(d.get("ProcessingStartTime").is_none(), "{d}");
}

#[test]
fn stopping_seconds_is_the_stopping_to_stopped_delay() {
    let mut sim = sim();
    config(&mut sim, json!({"stoppingSeconds": 0.2}));
    create(&mut sim, "a", Caller::default()).expect("create");
    sim.handle(
        "StopProcessingJob",
        &json!({"ProcessingJobName": "a"}),
        Caller::default(),
    )
    .expect("stop");
    let stopped_at = describe(&mut sim, "a", Caller::default()).expect("describe")["LastModifiedTime"]
        .as_f64()
        .expect("time");
    sleep(Duration::from_millis(100));
    assert_eq!(
        describe(&mut sim, "a", Caller::default()).expect("d")["ProcessingJobStatus"],
        "Stopping"
    );
    sleep(Duration::from_millis(150));
    let d = describe(&mut sim, "a", Caller::default()).expect("describe");
    assert_eq!(d["ProcessingJobStatus"], "Stopped");
    assert_close(d["ProcessingEndTime"].as_f64().expect("ended"), stopped_at + 0.2);
    // The default is one second.
    assert_eq!(SimConfig::default().stopping_seconds, 1.0);
}

// --- tags ---

#[test]
fn a_job_carries_at_most_fifty_tags() {
    let mut sim = sim();
    let mut req = job("a");
    req["Tags"] = json!((0..50)
        .map(|i| json!({"Key": format!("k{i}"), "Value": "v"}))
        .collect::<Vec<_>>());
    let arn = sim
        .handle("CreateProcessingJob", &req, Caller::default())
        .expect("50 tags at create")["ProcessingJobArn"]
        .as_str()
        .expect("arn")
        .to_string();
    let c = Caller::default();
    sim.handle(
        "AddTags",
        &json!({"ResourceArn": arn, "Tags": [{"Key": "k7", "Value": "new"}]}),
        c,
    )
    .expect("overwriting a key adds no tag");
    let err = sim
        .handle(
            "AddTags",
            &json!({"ResourceArn": arn, "Tags": [{"Key": "k50", "Value": "v"}]}),
            c,
        )
        .expect_err("a 51st key");
    assert_eq!(err.kind, "ValidationException");
    assert_eq!(
        err.message,
        "1 validation error detected: Value '[{Key=k50, Value=v}]' at 'tags' failed to satisfy constraint: Member must have length less than or equal to 50"
    );
    let tags = sim
        .handle("ListTags", &json!({"ResourceArn": arn, "MaxResults": 100}), c)
        .expect("tags");
    let tags = tags["Tags"].as_array().expect("tags");
    assert_eq!(tags.len(), 50);
    assert!(tags.contains(&json!({"Key": "k7", "Value": "new"})));
    // 51 at create: the model's TagList max.
    req["ProcessingJobName"] = json!("b");
    req["Tags"]
        .as_array_mut()
        .expect("tags")
        .push(json!({"Key": "k50", "Value": "v"}));
    let err = sim.handle("CreateProcessingJob", &req, c).expect_err("51 tags");
    assert!(
        err.message
            .contains("at 'tags' failed to satisfy constraint: Member must have length less than or equal to 50"),
        "{}",
        err.message
    );
}

// --- failure classes ---

#[test]
fn fail_gives_a_failure_reason_of_sagemakers_classes() {
    let mut sim = sim();
    for (class, expected) in [
        ("CapacityError", "CapacityError: Unable to provision requested ML compute capacity. Please retry using a different ML instance type."),
        ("InternalServerError", "InternalServerError: We encountered an internal error. Please try again."),
        ("ClientError", "ClientError: Failed to download data."),
        ("AlgorithmError", "AlgorithmError: See job logs for more information"),
    ] {
        let name = class.to_lowercase();
        create(&mut sim, &name, Caller::default()).expect("create");
        sim.admin_fail(&name, FailRequest { class: class.into(), message: None, region: None, account: None })
            .expect("fail");
        let d = describe(&mut sim, &name, Caller::default()).expect("describe");
        assert_eq!(d["ProcessingJobStatus"], "Failed");
        assert!(d["FailureReason"].as_str().is_some_and(|r| r.starts_with(expected)), "{d}");
        assert!(d.get("ProcessingEndTime").is_some());
    }
    create(&mut sim, "custom", Caller::default()).expect("create");
    sim.admin_fail(
        "custom",
        FailRequest {
            class: "AlgorithmError".into(),
            message: Some("exit code 137".into()),
            region: Some(US.into()),
            account: None,
        },
    )
    .expect("fail");
    assert_eq!(
        describe(&mut sim, "custom", Caller::default()).expect("d")["FailureReason"],
        "AlgorithmError: exit code 137"
    );
    let again = sim.admin_fail(
        "custom",
        FailRequest {
            class: "ClientError".into(),
            message: None,
            region: None,
            account: None,
        },
    );
    assert_eq!(
        again.map_err(|e| e.0),
        Err(StatusCode::CONFLICT),
        "only an InProgress job fails"
    );
    create(&mut sim, "x", Caller::default()).expect("create");
    let bad = sim.admin_fail(
        "x",
        FailRequest {
            class: "Oops".into(),
            message: None,
            region: None,
            account: None,
        },
    );
    assert_eq!(bad.map_err(|e| e.0), Err(StatusCode::BAD_REQUEST));
    let missing = sim.admin_fail(
        "nope",
        FailRequest {
            class: "ClientError".into(),
            message: None,
            region: None,
            account: None,
        },
    );
    assert_eq!(missing.map_err(|e| e.0), Err(StatusCode::NOT_FOUND));
}
