//! `aws-sdk-sagemaker`, unchanged, against the project's SageMaker simulator; and one
//! wire-compatibility check of the same calls against moto's SageMaker.

use smpc_test_support as support;

use aws_sdk_sagemaker::error::ProvideErrorMetadata;
use aws_sdk_sagemaker::types::{
    AppSpecification, NetworkConfig, ProcessingClusterConfig, ProcessingInstanceType, ProcessingJobStatus,
    ProcessingResources, SortBy, SortOrder, Tag, VpcConfig,
};
use aws_sdk_sagemaker::Client;
use support::{stack, unique_suffix};

fn create(
    client: &Client,
    name: &str,
) -> aws_sdk_sagemaker::operation::create_processing_job::builders::CreateProcessingJobFluentBuilder {
    client
        .create_processing_job()
        .processing_job_name(name)
        .role_arn("arn:aws:iam::123456789012:role/SageMakerRole")
        .app_specification(
            AppSpecification::builder()
                .image_uri("123456789012.dkr.ecr.us-east-1.amazonaws.com/p:1")
                .build(),
        )
        .processing_resources(
            ProcessingResources::builder()
                .cluster_config(
                    ProcessingClusterConfig::builder()
                        .instance_count(1)
                        .instance_type(ProcessingInstanceType::MlM5Xlarge)
                        .volume_size_in_gb(30)
                        .build(),
                )
                .build(),
        )
        .network_config(
            NetworkConfig::builder()
                .vpc_config(
                    VpcConfig::builder()
                        .subnets("subnet-0abc")
                        .security_group_ids("sg-0abc")
                        .build(),
                )
                .build(),
        )
        .tags(Tag::builder().key("owner").value("tests").build())
}

#[tokio::test]
async fn create_describe_duplicate_and_missing() {
    let sm = stack().sagemaker().await;
    let name = format!("sim-{}", unique_suffix());
    let arn = create(&sm, &name)
        .send()
        .await
        .expect("create")
        .processing_job_arn()
        .map(str::to_string);
    assert!(
        arn.as_deref()
            .is_some_and(|a| a.starts_with("arn:aws:sagemaker:") && a.ends_with(&name)),
        "{arn:?}"
    );

    let job = sm
        .describe_processing_job()
        .processing_job_name(&name)
        .send()
        .await
        .expect("describe");
    assert_eq!(job.processing_job_status(), Some(&ProcessingJobStatus::InProgress));
    assert_eq!(job.processing_job_arn(), arn.as_deref());
    assert!(job.creation_time().is_some() && job.last_modified_time().is_some());
    assert_eq!(
        job.network_config()
            .and_then(|n| n.vpc_config())
            .map(|v| v.subnets().to_vec()),
        Some(vec!["subnet-0abc".to_string()])
    );
    assert_eq!(
        job.processing_resources()
            .and_then(|r| r.cluster_config())
            .and_then(|c| c.instance_count()),
        Some(1)
    );

    let err = create(&sm, &name).send().await.expect_err("duplicate name");
    assert_eq!(err.code(), Some("ResourceInUse"), "{err:?}");

    let err = sm
        .describe_processing_job()
        .processing_job_name("does-not-exist-42")
        .send()
        .await
        .expect_err("missing");
    assert_eq!(err.code(), Some("ValidationException"));
    assert!(err.message().is_some_and(|m| m.contains("Could not find")), "{err:?}");
}

#[tokio::test]
async fn invalid_requests_get_validation_exceptions_naming_the_field() {
    let sm = stack().sagemaker().await;
    let name = format!("sim-{}", unique_suffix());
    let cases: Vec<(
        &str,
        aws_sdk_sagemaker::operation::create_processing_job::builders::CreateProcessingJobFluentBuilder,
    )> = vec![
        ("roleArn", create(&sm, &name).role_arn("not-an-arn")),
        ("processingJobName", create(&sm, "-bad-name")),
        (
            "instanceCount",
            create(&sm, &name).processing_resources(
                ProcessingResources::builder()
                    .cluster_config(
                        ProcessingClusterConfig::builder()
                            .instance_count(101)
                            .instance_type(ProcessingInstanceType::MlM5Xlarge)
                            .volume_size_in_gb(30)
                            .build(),
                    )
                    .build(),
            ),
        ),
    ];
    for (field, req) in cases {
        let err = req.send().await.expect_err(field);
        assert_eq!(err.code(), Some("ValidationException"), "{field}: {err:?}");
        assert!(
            err.message().is_some_and(|m| m.contains(field)),
            "{field}: {:?}",
            err.message()
        );
    }
    let err = sm
        .describe_processing_job()
        .processing_job_name(&name)
        .send()
        .await
        .expect_err("nothing was created");
    assert!(err.message().is_some_and(|m| m.contains("Could not find")));
}

#[tokio::test]
async fn stop_goes_through_stopping_to_stopped_and_ended_jobs_cannot_stop() {
    let s = stack();
    let sm = s.sagemaker().await;
    let name = format!("sim-{}", unique_suffix());
    create(&sm, &name).send().await.expect("create");
    sm.stop_processing_job()
        .processing_job_name(&name)
        .send()
        .await
        .expect("stop");
    let status = sm
        .describe_processing_job()
        .processing_job_name(&name)
        .send()
        .await
        .expect("describe");
    assert_eq!(status.processing_job_status(), Some(&ProcessingJobStatus::Stopping));
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let d = sm
            .describe_processing_job()
            .processing_job_name(&name)
            .send()
            .await
            .expect("describe");
        if d.processing_job_status() == Some(&ProcessingJobStatus::Stopped) {
            assert!(d.processing_end_time().is_some());
            break;
        }
        assert!(std::time::Instant::now() < deadline, "job never reached Stopped");
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
    let err = sm
        .stop_processing_job()
        .processing_job_name(&name)
        .send()
        .await
        .expect_err("stop a stopped job");
    assert_eq!(err.code(), Some("ValidationException"));

    let failed = format!("sim-{}", unique_suffix());
    create(&sm, &failed).send().await.expect("create");
    s.sim_admin(
        "POST",
        &format!("/_sim/jobs/{failed}/status"),
        Some(r#"{"status":"Failed","failureReason":"AlgorithmError: boom\nline 2","exitMessage":"exit 1"}"#),
    );
    let d = sm
        .describe_processing_job()
        .processing_job_name(&failed)
        .send()
        .await
        .expect("describe");
    assert_eq!(d.processing_job_status(), Some(&ProcessingJobStatus::Failed));
    assert_eq!(d.failure_reason(), Some("AlgorithmError: boom\nline 2"));
    assert_eq!(d.exit_message(), Some("exit 1"));
}

#[tokio::test]
async fn list_filters_sorts_and_paginates() {
    let s = stack();
    let sm = s.sagemaker().await;
    let tag = unique_suffix();
    let before = aws_sdk_sagemaker::primitives::DateTime::from_secs(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs() as i64 - 1)
            .unwrap_or(0),
    );
    let names: Vec<String> = (0..5).map(|i| format!("list-{tag}-{i}")).collect();
    for n in &names {
        create(&sm, n).send().await.expect("create");
    }
    s.sim_admin(
        "POST",
        &format!("/_sim/jobs/{}/status", names[2]),
        Some(r#"{"status":"Completed"}"#),
    );

    // Pagination with a small page, ascending by name.
    let mut seen = Vec::new();
    let mut token = None;
    loop {
        let page = sm
            .list_processing_jobs()
            .name_contains(format!("list-{tag}"))
            .sort_by(SortBy::Name)
            .sort_order(SortOrder::Ascending)
            .max_results(2)
            .set_next_token(token)
            .send()
            .await
            .expect("list");
        seen.extend(
            page.processing_job_summaries()
                .iter()
                .filter_map(|j| j.processing_job_name().map(str::to_string)),
        );
        token = page.next_token().map(str::to_string);
        if token.is_none() {
            break;
        }
    }
    assert_eq!(seen, names);

    let completed = sm
        .list_processing_jobs()
        .name_contains(format!("list-{tag}"))
        .status_equals(ProcessingJobStatus::Completed)
        .send()
        .await
        .expect("list completed");
    let only: Vec<_> = completed
        .processing_job_summaries()
        .iter()
        .filter_map(|j| j.processing_job_name())
        .collect();
    assert_eq!(only, [names[2].as_str()]);

    let changed = sm
        .list_processing_jobs()
        .name_contains(format!("list-{tag}"))
        .last_modified_time_after(before)
        .max_results(100)
        .send()
        .await
        .expect("list modified");
    assert_eq!(changed.processing_job_summaries().len(), 5);
    let future = aws_sdk_sagemaker::primitives::DateTime::from_secs(before.secs() + 3600);
    let none = sm
        .list_processing_jobs()
        .last_modified_time_after(future)
        .send()
        .await
        .expect("list none");
    assert!(none.processing_job_summaries().is_empty());
}

#[tokio::test]
async fn tags_can_be_added_and_listed() {
    let sm = stack().sagemaker().await;
    let name = format!("sim-{}", unique_suffix());
    let arn = create(&sm, &name)
        .send()
        .await
        .expect("create")
        .processing_job_arn()
        .expect("arn")
        .to_string();
    sm.add_tags()
        .resource_arn(&arn)
        .tags(Tag::builder().key("stage").value("prod").build())
        .send()
        .await
        .expect("add tags");
    let tags = sm.list_tags().resource_arn(&arn).send().await.expect("list tags");
    let mut pairs: Vec<(String, String)> = tags
        .tags()
        .iter()
        .map(|t| {
            (
                t.key().unwrap_or_default().to_string(),
                t.value().unwrap_or_default().to_string(),
            )
        })
        .collect();
    pairs.sort();
    assert_eq!(
        pairs,
        [
            ("owner".to_string(), "tests".to_string()),
            ("stage".to_string(), "prod".to_string())
        ]
    );
}

#[tokio::test]
async fn moto_sagemaker_speaks_the_same_wire_format() {
    // One wire-compatibility check: the SDK calls the controller makes work the same against
    // moto's SageMaker stub, so the simulator is not a private dialect.
    let s = stack();
    let sm = s.sagemaker_at(s.var("MOTO_URL")).await;
    let name = format!("moto-{}", unique_suffix());
    let arn = create(&sm, &name)
        .send()
        .await
        .expect("create in moto")
        .processing_job_arn()
        .map(str::to_string);
    assert!(arn.is_some_and(|a| a.contains(&name)));
    let d = sm
        .describe_processing_job()
        .processing_job_name(&name)
        .send()
        .await
        .expect("describe in moto");
    assert_eq!(d.processing_job_name(), Some(name.as_str()));
    assert!(d.processing_job_status().is_some());
    assert_eq!(
        d.network_config()
            .and_then(|n| n.vpc_config())
            .map(|v| v.security_group_ids().to_vec()),
        Some(vec!["sg-0abc".to_string()])
    );
}
