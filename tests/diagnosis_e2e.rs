//! A failed job diagnosed end to end: the real controller binary, the real kube-apiserver, moto
//! (EC2, IAM, CloudWatch Logs) and the SageMaker simulator. The job is validated and created,
//! then the network changes under it (its S3 route removed), then SageMaker fails it with its
//! S3 message: the controller reads the network afresh, names the removed route, and carries
//! the job's last log lines.

use smpc_test_support as support;

use std::time::Duration;

use support::controller::*;
use support::iam::write_job_log;
use support::stack;
use support::vpc::{job_manifest_in, topology};

const T: Duration = Duration::from_secs(60);

const S3_FAILURE: &str = "ClientError: Failed to download data. Please ensure that the subnet's route table has a route to an S3 VPC endpoint or a NAT device, and both the security groups and the subnet's network ACL allow outbound traffic to S3.";

#[tokio::test(flavor = "multi_thread")]
async fn a_removed_s3_route_is_named_as_the_likely_cause_with_the_log_tail() {
    let s = stack();
    s.install_crd();
    let t = topology("10.69", true).await;
    let endpoint = t.s3_gateway_endpoint(None).await;
    // Destructured, the namespace is dropped (deleted) first, while its controller still runs
    // to release the job.
    let (_controller, ns) = {
        let ns = s.namespace("diagnosis");
        (ControllerProcess::start(&ns, &[], &[]), ns)
    };

    apply(&job_manifest_in(&ns, "s3-route", 1, &t.private, &[&t.sg], ""));
    let job = wait_job(&ns, "s3-route", "InProgress", T, |j| {
        status_str(j, "processingJobStatus").as_deref() == Some("InProgress")
    });
    let name = status_str(&job, "processingJobName").expect("job name");
    let validated: Vec<String> = job["status"]["network"]["findings"]
        .as_array()
        .map(|f| {
            f.iter()
                .filter_map(|x| x["code"].as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default();
    assert!(!validated.contains(&"NoS3Route".to_string()), "{validated:?}");

    // The network changes after validation: the S3 gateway endpoint and its route go.
    t.ec2
        .delete_vpc_endpoints()
        .vpc_endpoint_ids(&endpoint)
        .send()
        .await
        .expect("delete the S3 endpoint");
    let tables = t
        .ec2
        .describe_route_tables()
        .route_table_ids(&t.private_rtb)
        .send()
        .await
        .expect("route tables");
    for route in tables.route_tables().iter().flat_map(|rt| rt.routes()) {
        if let Some(prefix_list) = route.destination_prefix_list_id() {
            t.ec2
                .delete_route()
                .route_table_id(&t.private_rtb)
                .destination_prefix_list_id(prefix_list)
                .send()
                .await
                .expect("delete the S3 route");
        }
    }
    // What SageMaker's agent wrote before the download failed.
    write_job_log(
        &name,
        &[
            "Starting processing job",
            "Downloading s3://ml-input/raw/ to /opt/ml/processing/input",
            "botocore.exceptions.ConnectTimeoutError: Connect timeout on endpoint URL: \"https://ml-input.s3.amazonaws.com/raw/\"",
        ],
    )
    .await;
    sim_set_status(
        &name,
        &serde_json::json!({"status": "Failed", "failureReason": S3_FAILURE}).to_string(),
    );

    let job = wait_job(&ns, "s3-route", "a diagnosis", T, |j| {
        j["status"]["diagnosis"].is_object()
    });
    let diagnosis = &job["status"]["diagnosis"];
    assert_eq!(diagnosis["pattern"], "S3Unreachable");
    let cause = diagnosis["likelyCause"].as_str().unwrap_or_default();
    assert!(cause.starts_with("NoS3Route on subnet-"), "{cause}");
    assert!(cause.contains("it changed since"), "{cause}");
    let codes: Vec<&str> = diagnosis["findings"]
        .as_array()
        .map(|f| f.iter().filter_map(|x| x["code"].as_str()).collect())
        .unwrap_or_default();
    assert!(codes.contains(&"NoS3Route"), "{codes:?}");
    let tail = status_str(&job, "logTail").unwrap_or_default();
    assert!(tail.starts_with("Starting processing job\n"), "{tail}");
    assert!(
        tail.ends_with("Connect timeout on endpoint URL: \"https://ml-input.s3.amazonaws.com/raw/\""),
        "{tail}"
    );

    let failed = wait_for("JobFailed event", T, || {
        events(&ns, "s3-route").into_iter().find(|e| e.1 == "JobFailed")
    });
    assert!(
        failed.2.starts_with("ClientError: Failed to download data."),
        "{}",
        failed.2
    );
    assert!(
        failed.2.contains("last log lines:\nStarting processing job"),
        "{}",
        failed.2
    );
    let diagnosed = wait_for("FailureDiagnosed event", T, || {
        events(&ns, "s3-route").into_iter().find(|e| e.1 == "FailureDiagnosed")
    });
    assert_eq!(diagnosed.0, "Warning");
    assert!(
        diagnosed.2.starts_with("likely cause: NoS3Route on subnet-"),
        "{}",
        diagnosed.2
    );

    // Once per job end: the diagnosis made then stays as it was.
    std::thread::sleep(Duration::from_secs(3));
    let again = get_job(&ns, "s3-route").expect("resource");
    assert_eq!(again["status"]["diagnosis"], job["status"]["diagnosis"]);
}
