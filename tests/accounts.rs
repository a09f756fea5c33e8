//! Cross-account jobs (issue #15, ACK's CARM), end to end: the real controller binary, the
//! apiserver, moto's STS and EC2 (moto scopes EC2 by the account of the assumed role's keys) and
//! the simulator (which partitions jobs by the caller's account, learnt from moto's STS).
//!
//! Three namespaces, one controller each (the test support scopes a controller to one
//! namespace), all reading the CARM ConfigMaps of namespace A:
//! - A: no annotation, the controller's own account (moto's default, 123456789012);
//! - B: `services.k8s.aws/owner-account-id: 222222222222`, mapped to a role of B: its job's
//!   network is read in B (its VPC exists only there) and the job is created in B;
//! - C: `services.k8s.aws/owner-account-id: 333333333333`, not mapped: `AccountNotMapped` and an
//!   Event, no create anywhere; adding C to the ConfigMap lets it proceed without a restart.

use smpc_test_support as support;

use std::time::Duration;

use support::controller::*;
use support::stack;

const OWN: &str = "123456789012";
const B: &str = "222222222222";
const C: &str = "333333333333";

fn role_of(account: &str) -> String {
    format!("arn:aws:iam::{account}:role/smpc-carm")
}

fn manifest(ns: &str, name: &str, job_name: &str, network: &str) -> String {
    format!(
        r#"---
apiVersion: sagemaker.processing.dev/v1alpha1
kind: ProcessingJob
metadata:
  name: {name}
  namespace: {ns}
spec:
  processingJobName: {job_name}
  region: us-east-1
  roleARN: arn:aws:iam::123456789012:role/SageMakerProcessingRole
  appSpecification:
    imageURI: 683313688378.dkr.ecr.us-east-1.amazonaws.com/sagemaker-scikit-learn:1.2-1-cpu-py3
  processingResources:
    clusterConfig: {{instanceCount: 1, instanceType: ml.m5.large, volumeSizeInGB: 30}}
{network}"#
    )
}

/// Credentials of account B in moto, through moto's STS (AssumeRole of a role of B).
async fn credentials_of_b(base: &aws_config::SdkConfig) -> aws_config::sts::AssumeRoleProvider {
    let sts = aws_sdk_sts_endpoint(base, stack().var("AWS_ENDPOINT_URL_STS"));
    aws_config::sts::AssumeRoleProvider::builder(role_of(B))
        .session_name("accounts-test")
        .configure(&sts)
        .build()
        .await
}

/// EC2 of account B in moto.
async fn ec2_of_b() -> aws_sdk_ec2::Client {
    let s = stack();
    let base = s.sdk_config().await;
    let conf = aws_sdk_ec2::config::Builder::from(&base)
        .endpoint_url(s.var("AWS_ENDPOINT_URL_EC2"))
        .credentials_provider(credentials_of_b(&base).await)
        .build();
    aws_sdk_ec2::Client::from_conf(conf)
}

/// One log line of `job` in account B's CloudWatch Logs (moto), where SageMaker would write it.
async fn log_in_b(job: &str, line: &str) {
    let s = stack();
    let base = s.sdk_config().await;
    let conf = aws_sdk_cloudwatchlogs::config::Builder::from(&base)
        .endpoint_url(s.var("AWS_ENDPOINT_URL_LOGS"))
        .credentials_provider(credentials_of_b(&base).await)
        .build();
    let logs = aws_sdk_cloudwatchlogs::Client::from_conf(conf);
    let stream = format!("{job}/algo-1-1700000000");
    support::iam::put_log_lines(&logs, &stream, &[(support::iam::now_millis(), line)]).await;
}

fn aws_sdk_sts_endpoint(base: &aws_config::SdkConfig, endpoint: &str) -> aws_config::SdkConfig {
    base.to_builder().endpoint_url(endpoint).build()
}

/// A VPC with one subnet and one group, in the account `ec2` signs for.
async fn seed_vpc(ec2: &aws_sdk_ec2::Client) -> (String, String, String) {
    let vpc = ec2
        .create_vpc()
        .cidr_block("10.77.0.0/16")
        .send()
        .await
        .expect("vpc in B")
        .vpc
        .and_then(|v| v.vpc_id)
        .expect("vpc id");
    let subnet = ec2
        .create_subnet()
        .vpc_id(&vpc)
        .cidr_block("10.77.1.0/24")
        .availability_zone("us-east-1a")
        .send()
        .await
        .expect("subnet in B")
        .subnet
        .and_then(|s| s.subnet_id)
        .expect("subnet id");
    let group = ec2
        .create_security_group()
        .vpc_id(&vpc)
        .group_name(format!("carm-{}", support::unique_suffix()))
        .description("accounts test")
        .send()
        .await
        .expect("group in B")
        .group_id
        .expect("group id");
    (vpc, subnet, group)
}

/// The simulator's job `name`: (status, account).
fn sim_job(name: &str) -> Option<(String, String)> {
    let jobs = sim_jobs();
    let j = jobs.get(name)?;
    Some((
        j["status"].as_str().unwrap_or_default().to_string(),
        j["account"].as_str().unwrap_or_default().to_string(),
    ))
}

fn configmap(ns: &str, entries: &[(&str, String)]) -> String {
    let data: String = entries.iter().map(|(k, v)| format!("  \"{k}\": \"{v}\"\n")).collect();
    format!(
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: ack-role-account-map\n  namespace: {ns}\ndata:\n{data}"
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn each_namespace_runs_its_jobs_in_its_own_account_and_an_unmapped_one_waits() {
    let s = stack();
    s.install_crd();
    let (a, b, c) = (s.namespace("acct-a"), s.namespace("acct-b"), s.namespace("acct-c"));
    s.kubectl_ok(&[
        "annotate",
        "namespace",
        b.as_str(),
        &format!("services.k8s.aws/owner-account-id={B}"),
    ]);
    s.kubectl_ok(&[
        "annotate",
        "namespace",
        c.as_str(),
        &format!("services.k8s.aws/owner-account-id={C}"),
    ]);
    apply(&configmap(a.as_str(), &[(B, role_of(B))]));

    // B's VPC exists in B only: moto scopes EC2 by account, as AWS does.
    let (vpc, subnet, group) = seed_vpc(&ec2_of_b().await).await;
    let own = s.ec2().await;
    assert!(
        own.describe_subnets().subnet_ids(&subnet).send().await.is_err(),
        "B's subnet must not be visible from the controller's own account"
    );

    let carm = ["--carm-namespace", a.as_str()];
    let _ca = ControllerProcess::start(a.as_str(), &carm, &[]);
    let _cb = ControllerProcess::start(b.as_str(), &carm, &[]);
    let _cc = ControllerProcess::start(c.as_str(), &carm, &[]);
    let suffix = support::unique_suffix();
    let (job_a, job_b, job_c) = (
        format!("acct-a-{suffix}"),
        format!("acct-b-{suffix}"),
        format!("acct-c-{suffix}"),
    );
    let network_b = format!(
        "  networkConfig:\n    vpcConfig: {{subnets: [{subnet}], securityGroupIDs: [{group}]}}\n  networkValidation: {{mode: Warn}}\n"
    );
    apply(&manifest(b.as_str(), "in-b", &job_b, &network_b));
    apply(&manifest(a.as_str(), "in-a", &job_a, ""));
    apply(&manifest(c.as_str(), "in-c", &job_c, ""));

    // B: validated against B's VPC, created in B, the account pinned in status.
    let res_b = wait_job(b.as_str(), "in-b", "created in B", Duration::from_secs(90), |j| {
        status_str(j, "processingJobARN").is_some()
    });
    assert_eq!(status_str(&res_b, "account").as_deref(), Some(B));
    assert_eq!(
        res_b["status"]["network"]["vpcID"].as_str(),
        Some(vpc.as_str()),
        "{res_b}"
    );
    let codes: Vec<&str> = res_b["status"]["network"]["findings"]
        .as_array()
        .map(|f| f.iter().filter_map(|f| f["code"].as_str()).collect())
        .unwrap_or_default();
    assert!(
        !codes.contains(&"SubnetNotFound") && !codes.contains(&"SecurityGroupNotFound"),
        "the network was read in B: {codes:?}"
    );
    assert_eq!(sim_job(&job_b), Some(("InProgress".into(), B.into())));
    assert!(
        status_str(&res_b, "processingJobARN").is_some_and(|arn| arn.contains(&format!(":{B}:"))),
        "{res_b}"
    );

    // `logs` reads B's job in B, through the role the ConfigMap maps to B.
    log_in_b(&job_b, "hello from account B").await;
    let out = s
        .command(support::controller_bin())
        .args(["logs", "-n", b.as_str(), "in-b", "--carm-namespace", a.as_str()])
        .output()
        .expect("run logs");
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
    );
    assert!(
        out.status.success() && stdout.contains("hello from account B"),
        "logs of B's job: {stdout}{stderr}"
    );

    // A: the controller's own account, no annotation, nothing assumed.
    let res_a = wait_job(a.as_str(), "in-a", "created in A", Duration::from_secs(90), |j| {
        status_str(j, "processingJobARN").is_some()
    });
    assert_eq!(status_str(&res_a, "account"), None);
    assert_eq!(sim_job(&job_a), Some(("InProgress".into(), OWN.into())));

    // C: not mapped: a clear condition and an Event; nothing created anywhere.
    let res_c = wait_job(c.as_str(), "in-c", "AccountNotMapped", Duration::from_secs(60), |j| {
        condition(j, "Reconciling") == Some(("True".into(), "AccountNotMapped".into()))
    });
    let message = condition_message(&res_c, "Reconciling");
    for part in [
        "services.k8s.aws/owner-account-id",
        C,
        "ack-role-account-map",
        a.as_str(),
    ] {
        assert!(message.contains(part), "{part} in {message}");
    }
    wait_for("the AccountNotMapped Event", Duration::from_secs(30), || {
        events(c.as_str(), "in-c")
            .iter()
            .any(|e| e.1 == "AccountNotMapped")
            .then_some(())
    });
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(sim_create_calls(&job_c), 0, "no CreateProcessingJob for C's job");
    assert_eq!(sim_job(&job_c), None);

    // The mapping is added: C's job proceeds in C, no restart.
    apply(&configmap(a.as_str(), &[(B, role_of(B)), (C, role_of(C))]));
    let res_c = wait_job(c.as_str(), "in-c", "created in C", Duration::from_secs(60), |j| {
        status_str(j, "processingJobARN").is_some()
    });
    assert_eq!(status_str(&res_c, "account").as_deref(), Some(C));
    assert_eq!(sim_job(&job_c), Some(("InProgress".into(), C.into())));
    assert_eq!(sim_create_calls(&job_c), 1);

    // Each job is stopped in its own account when its resource goes.
    for (ns, name) in [(a.as_str(), "in-a"), (b.as_str(), "in-b"), (c.as_str(), "in-c")] {
        s.kubectl_ok(&["-n", ns, "delete", "processingjob", name, "--wait=false"]);
    }
    for (ns, name) in [(a.as_str(), "in-a"), (b.as_str(), "in-b"), (c.as_str(), "in-c")] {
        wait_for("the resource released", Duration::from_secs(60), || {
            get_job(ns, name).is_none().then_some(())
        });
    }
    for (job, account) in [(&job_a, OWN), (&job_b, B), (&job_c, C)] {
        assert_eq!(sim_job(job), Some(("Stopped".into(), account.into())), "{job}");
    }
}
