//! SageMaker's "Processing Job State Change" events as an EventBridge rule delivers them to an SQS
//! queue: the message body is the EventBridge envelope, whose `detail` carries the fields of
//! DescribeProcessingJob. [`parse`] turns a body into the same [`JobState`] the Describe mapping
//! gives (`aws/sagemaker.rs`), so that an event can be mirrored without a Describe.
//!
//! Pure: no I/O, every case has a unit test below.

use aws_smithy_types::DateTime;
use serde_json::Value;

use super::sagemaker::{epoch, rfc3339, status_of_str};
use crate::job::JobState;

/// The `source` of SageMaker's events.
pub const SOURCE: &str = "aws.sagemaker";
/// The `detail-type` of a processing job's state change.
pub const DETAIL_TYPE: &str = "SageMaker Processing Job State Change";

/// What one message says.
#[derive(Debug, Clone, PartialEq)]
pub enum Parsed {
    /// A state change with every field the status needs (name, status, LastModifiedTime).
    Change {
        account: Option<String>,
        region: String,
        state: Box<JobState>,
    },
    /// A state change of the named job that lacks a field the status needs: the job is to be
    /// described instead.
    Incomplete {
        account: Option<String>,
        region: String,
        name: String,
        missing: &'static str,
    },
    /// A well-formed event of another kind (a rule routing more than processing-job changes).
    Other { source: String, detail_type: String },
}

/// A message that is no EventBridge event, or a processing-job event without a job name or
/// region: nothing can be done with it.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("malformed event message: {0}")]
pub struct Malformed(pub String);

/// Parses one message body.
pub fn parse(body: &str) -> Result<Parsed, Malformed> {
    let envelope: Value = serde_json::from_str(body).map_err(|e| Malformed(format!("not JSON: {e}")))?;
    let text = |v: &Value, key: &str| v.get(key).and_then(Value::as_str).map(str::to_string);
    let (Some(source), Some(detail_type)) = (text(&envelope, "source"), text(&envelope, "detail-type")) else {
        return Err(Malformed("no EventBridge envelope (source, detail-type)".into()));
    };
    if source != SOURCE || detail_type != DETAIL_TYPE {
        return Ok(Parsed::Other { source, detail_type });
    }
    let Some(detail) = envelope.get("detail").filter(|d| d.is_object()) else {
        return Err(Malformed(
            "a processing job state change without a detail object".into(),
        ));
    };
    let Some(name) = text(detail, "ProcessingJobName").filter(|n| !n.is_empty()) else {
        return Err(Malformed(
            "a processing job state change without ProcessingJobName".into(),
        ));
    };
    let arn = text(detail, "ProcessingJobArn");
    let region = text(&envelope, "region")
        .filter(|r| !r.is_empty())
        .or_else(|| arn.as_deref().and_then(region_of_arn));
    let Some(region) = region else {
        return Err(Malformed(format!("the state change of {name} names no region")));
    };
    // The account the job runs in: the envelope's, else the ARN's (with CARM, jobs of other
    // accounts arrive through their event buses forwarding to this queue).
    let account = text(&envelope, "account")
        .filter(|a| !a.is_empty())
        .or_else(|| arn.as_deref().and_then(account_of_arn));
    let Some(status) = text(detail, "ProcessingJobStatus") else {
        return Ok(Parsed::Incomplete {
            account,
            region,
            name,
            missing: "ProcessingJobStatus",
        });
    };
    let time = |key: &str| detail.get(key).and_then(timestamp);
    let Some(last_modified) = time("LastModifiedTime") else {
        return Ok(Parsed::Incomplete {
            account,
            region,
            name,
            missing: "LastModifiedTime",
        });
    };
    let state = JobState {
        name,
        arn,
        status: status_of_str(&status),
        failure_reason: text(detail, "FailureReason"),
        exit_message: text(detail, "ExitMessage"),
        creation_time: rfc3339(time("CreationTime").as_ref()),
        start_time: rfc3339(time("ProcessingStartTime").as_ref()),
        end_time: rfc3339(time("ProcessingEndTime").as_ref()),
        last_modified: rfc3339(Some(&last_modified)),
        last_modified_epoch: epoch(Some(&last_modified)),
        monitoring_schedule_arn: text(detail, "MonitoringScheduleArn"),
        auto_ml_job_arn: text(detail, "AutoMLJobArn"),
        training_job_arn: text(detail, "TrainingJobArn"),
    };
    Ok(Parsed::Change {
        account,
        region,
        state: Box::new(state),
    })
}

/// `arn:<partition>:sagemaker:<region>:<account>:processing-job/<name>` → the region.
fn region_of_arn(arn: &str) -> Option<String> {
    let region = arn.split(':').nth(3)?;
    (!region.is_empty()).then(|| region.to_string())
}

/// `arn:<partition>:sagemaker:<region>:<account>:processing-job/<name>` → the account.
fn account_of_arn(arn: &str) -> Option<String> {
    let account = arn.split(':').nth(4)?;
    (!account.is_empty()).then(|| account.to_string())
}

/// A timestamp of the detail. SageMaker's processing-job events carry epoch milliseconds as JSON
/// integers; AWS's event reference shows other SageMaker job kinds with milliseconds as floats
/// (`1.58e12`) and as quoted strings (`"1583831813445"`). A number of any of these shapes at or
/// above 10^11 is milliseconds (10^11 seconds is the year 5138), a smaller one seconds; an RFC 3339
/// string is read too, so that a change of format is not taken for a malformed message.
fn timestamp(v: &Value) -> Option<DateTime> {
    let number = match v {
        Value::Number(n) => n.as_f64(),
        Value::String(s) => match DateTime::from_str(s, aws_smithy_types::date_time::Format::DateTime) {
            Ok(t) => return Some(t),
            Err(_) => s.trim().parse::<f64>().ok(),
        },
        _ => None,
    }?;
    if !number.is_finite() {
        return None;
    }
    if number.abs() >= MILLISECONDS_FROM {
        // Whole milliseconds when the value is whole (no rounding through seconds).
        if number.fract() == 0.0 && number.abs() < 9.0e15 {
            return Some(DateTime::from_millis(number as i64));
        }
        return Some(DateTime::from_secs_f64(number / 1000.0));
    }
    Some(DateTime::from_secs_f64(number))
}

/// The smallest epoch value read as milliseconds (10^11 s is the year 5138; 10^11 ms is 1973).
const MILLISECONDS_FROM: f64 = 1.0e11;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::job::JobStatus;
    use serde_json::json;

    /// A state change shaped as SageMaker sends it (times in epoch milliseconds).
    fn event(detail: Value) -> String {
        json!({
            "version": "0",
            "id": "0a15f67d-aa23-0123-0123-01a23w89r01t",
            "detail-type": DETAIL_TYPE,
            "source": SOURCE,
            "account": "123456789012",
            "time": "2026-05-31T21:49:54Z",
            "region": "eu-west-1",
            "resources": ["arn:aws:sagemaker:eu-west-1:123456789012:processing-job/job-a"],
            "detail": detail,
        })
        .to_string()
    }

    fn detail(status: &str) -> Value {
        json!({
            "ProcessingJobName": "job-a",
            "ProcessingJobArn": "arn:aws:sagemaker:eu-west-1:123456789012:processing-job/job-a",
            "ProcessingJobStatus": status,
            "CreationTime": 1_780_000_000_000i64,
            "ProcessingStartTime": 1_780_000_060_000i64,
            "LastModifiedTime": 1_780_000_600_250i64,
            "RoleArn": "arn:aws:iam::123456789012:role/r",
            "AppSpecification": {"ImageUri": "x"},
        })
    }

    fn change(body: &str) -> (String, JobState) {
        match parse(body) {
            Ok(Parsed::Change { region, state, .. }) => (region, *state),
            other => panic!("not a change: {other:?}"),
        }
    }

    #[test]
    fn every_status_maps_as_describe_maps_it() {
        for status in JobStatus::ALL {
            let (region, state) = change(&event(detail(status.as_str())));
            assert_eq!(region, "eu-west-1");
            assert_eq!(state.status, status);
            assert_eq!(state.name, "job-a");
        }
        // A status this build does not know: still running, as Describe says.
        let (_, state) = change(&event(detail("Paused")));
        assert_eq!(state.status, JobStatus::InProgress);
    }

    #[test]
    fn the_detail_becomes_the_state_describe_gives() {
        let mut d = detail("Failed");
        d["FailureReason"] = json!("ClientError: AccessDenied");
        d["ExitMessage"] = json!("bye");
        d["ProcessingEndTime"] = json!(1_780_000_600_000i64);
        let (_, state) = change(&event(d));
        let describe = JobState {
            name: "job-a".into(),
            arn: Some("arn:aws:sagemaker:eu-west-1:123456789012:processing-job/job-a".into()),
            status: JobStatus::Failed,
            failure_reason: Some("ClientError: AccessDenied".into()),
            exit_message: Some("bye".into()),
            creation_time: Some("2026-05-28T20:26:40Z".into()),
            start_time: Some("2026-05-28T20:27:40Z".into()),
            end_time: Some("2026-05-28T20:36:40Z".into()),
            last_modified: Some("2026-05-28T20:36:40.25Z".into()),
            last_modified_epoch: Some(1_780_000_600.25),
            ..JobState::default()
        };
        assert_eq!(state, describe);
        // The same instant as seconds or RFC 3339 is the same state.
        let mut d = detail("Failed");
        d["LastModifiedTime"] = json!(1_780_000_600.25);
        assert_eq!(change(&event(d)).1.last_modified_epoch, Some(1_780_000_600.25));
        let mut d = detail("Failed");
        d["LastModifiedTime"] = json!("2026-05-28T20:36:40.25Z");
        assert_eq!(change(&event(d)).1.last_modified_epoch, Some(1_780_000_600.25));
    }

    /// AWS's event reference shows milliseconds as floats and as quoted strings for other
    /// SageMaker job kinds: read as seconds they would land in the year ~58,000, the tracker
    /// would keep that as the job's last change and never see it change again.
    #[test]
    fn milliseconds_are_read_in_every_number_shape() {
        for shape in [
            json!(1_780_000_600_250i64),
            json!(1_780_000_600_250.0f64),
            json!(1.78000060025e12),
            json!("1780000600250"),
            json!("1780000600250.0"),
            json!(" 1780000600250 "),
        ] {
            let mut d = detail("Completed");
            d["LastModifiedTime"] = shape.clone();
            d["CreationTime"] = shape.clone();
            let state = change(&event(d)).1;
            assert_eq!(state.last_modified_epoch, Some(1_780_000_600.25), "{shape}");
            assert_eq!(
                state.creation_time.as_deref(),
                Some("2026-05-28T20:36:40.25Z"),
                "{shape}"
            );
        }
        // Seconds stay seconds, in every shape too.
        for shape in [json!(1_780_000_600.25), json!("1780000600.25")] {
            let mut d = detail("Completed");
            d["LastModifiedTime"] = shape.clone();
            assert_eq!(
                change(&event(d)).1.last_modified_epoch,
                Some(1_780_000_600.25),
                "{shape}"
            );
        }
    }

    #[test]
    fn a_missing_field_the_status_needs_asks_for_a_describe() {
        for missing in ["ProcessingJobStatus", "LastModifiedTime"] {
            let mut d = detail("Completed");
            d.as_object_mut().map(|o| o.remove(missing));
            assert_eq!(
                parse(&event(d)),
                Ok(Parsed::Incomplete {
                    account: Some("123456789012".into()),
                    region: "eu-west-1".into(),
                    name: "job-a".into(),
                    missing
                })
            );
        }
    }

    #[test]
    fn the_region_comes_from_the_envelope_else_the_arn() {
        let mut envelope: Value = serde_json::from_str(&event(detail("Completed"))).expect("json");
        envelope.as_object_mut().map(|o| o.remove("region"));
        assert_eq!(change(&envelope.to_string()).0, "eu-west-1");
        let mut d = detail("Completed");
        d.as_object_mut().map(|o| o.remove("ProcessingJobArn"));
        envelope["detail"] = d;
        assert!(parse(&envelope.to_string()).is_err(), "no region at all");
    }

    #[test]
    fn other_events_are_told_apart_from_malformed_messages() {
        let training = json!({"source": SOURCE, "detail-type": "SageMaker Training Job State Change", "detail": {}});
        assert_eq!(
            parse(&training.to_string()),
            Ok(Parsed::Other {
                source: SOURCE.into(),
                detail_type: "SageMaker Training Job State Change".into()
            })
        );
        for body in [
            "",
            "not json",
            "[]",
            r#"{"Message": "an SNS envelope"}"#,
            &json!({"source": SOURCE, "detail-type": DETAIL_TYPE}).to_string(),
            &json!({"source": SOURCE, "detail-type": DETAIL_TYPE, "detail": "text"}).to_string(),
            &event(json!({"ProcessingJobStatus": "Completed"})),
            &event(json!({"ProcessingJobName": "", "ProcessingJobStatus": "Completed"})),
        ] {
            assert!(parse(body).is_err(), "{body:?} should be malformed");
        }
    }
}
