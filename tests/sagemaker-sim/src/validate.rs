//! CreateProcessingJob's checks: the walk of SageMaker's published API model (see `shapes`),
//! then the rules the model cannot say, answered as SageMaker answers them.

use serde_json::Value;

use crate::model::ApiError;
use crate::shapes::{self, violation};

/// Checks a CreateProcessingJob request as SageMaker does.
pub fn create_request(input: &Value) -> Result<(), ApiError> {
    shapes::model().check_input("CreateProcessingJob", input)?;

    // The model leaves InstanceType and InstanceCount optional since InstancePreferences
    // exists; without preferences both are needed.
    if let Some(cluster) = input.pointer("/ProcessingResources/ClusterConfig") {
        if cluster.get("InstancePreferences").is_none_or(Value::is_null) {
            for (member, at) in [("InstanceType", "instanceType"), ("InstanceCount", "instanceCount")] {
                if cluster.get(member).is_none_or(Value::is_null) {
                    return Err(ApiError::validation(
                        shapes::validation_message(&[violation(
                            "null",
                            &format!("processingResources.clusterConfig.{at}"),
                            "Member must not be null",
                        )])
                        .unwrap_or_default(),
                    ));
                }
            }
        }
    }

    let inputs: &[Value] = input
        .get("ProcessingInputs")
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or_default();
    for i in inputs {
        let present = |k: &str| i.get(k).is_some_and(|v| !v.is_null());
        if present("S3Input") == present("DatasetDefinition") {
            return Err(ApiError::validation(
                "Exactly one of S3Input or DatasetDefinition must be specified for each ProcessingInput",
            ));
        }
    }

    // Two inputs downloaded to the same LocalPath: SageMaker answers ValidationException with
    // an empty message (real behaviour, confirmed by AWS support), and so does the simulator.
    let mut paths = std::collections::BTreeSet::new();
    for i in inputs {
        let path = i
            .pointer("/S3Input/LocalPath")
            .or_else(|| i.pointer("/DatasetDefinition/LocalPath"))
            .and_then(Value::as_str);
        if let Some(path) = path {
            if !paths.insert(path) {
                return Err(ApiError::validation(""));
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn valid() -> Value {
        json!({
            "ProcessingJobName": "job-1",
            "AppSpecification": {"ImageUri": "123456789012.dkr.ecr.us-east-1.amazonaws.com/p:1"},
            "RoleArn": "arn:aws:iam::123456789012:role/SageMakerRole",
            "ProcessingResources": {"ClusterConfig": {"InstanceCount": 1, "InstanceType": "ml.m5.xlarge", "VolumeSizeInGB": 30}},
        })
    }

    fn with(pointer: &str, value: Value) -> Value {
        let mut req = valid();
        match req.pointer_mut(pointer) {
            Some(v) => *v = value,
            None => req[pointer.trim_start_matches('/')] = value,
        }
        req
    }

    fn message(req: &Value) -> String {
        create_request(req).expect_err("refused").message
    }

    fn input(name: &str, local_path: &str) -> Value {
        json!({"InputName": name, "S3Input": {"S3Uri": format!("s3://bucket/{name}"), "LocalPath": local_path,
            "S3DataType": "S3Prefix", "S3InputMode": "File"}})
    }

    #[test]
    fn accepts_a_minimal_request() {
        assert!(create_request(&valid()).is_ok());
    }

    #[test]
    fn rejects_constraint_violations_with_the_field_named() {
        let cases: &[(&str, Value, &str)] = &[
            ("/ProcessingJobName", json!("-bad"), "processingJobName"),
            ("/RoleArn", json!("arn:aws:iam::12:role/x"), "roleArn"),
            (
                "/ProcessingResources/ClusterConfig/InstanceCount",
                json!(101),
                "instanceCount",
            ),
            (
                "/ProcessingResources/ClusterConfig/VolumeSizeInGB",
                json!(0),
                "volumeSizeInGB",
            ),
        ];
        for (pointer, value, field) in cases {
            let err = message(&with(pointer, value.clone()));
            assert!(err.contains(field), "{err} should name {field}");
        }
    }

    #[test]
    fn instance_types_are_the_models_enum() {
        for t in ["ml.m7i-flex.large", "ml.c5.9xlarge", "ml.g6.xlarge", "ml.p5.4xlarge"] {
            let req = with("/ProcessingResources/ClusterConfig/InstanceType", json!(t));
            assert!(create_request(&req).is_ok(), "{t} is a processing instance type");
        }
        let err = message(&with(
            "/ProcessingResources/ClusterConfig/InstanceType",
            json!("ml.m5.medium"),
        ));
        assert!(
            err.starts_with("1 validation error detected: Value 'ml.m5.medium' at 'processingResources.clusterConfig.instanceType' failed to satisfy constraint: Member must satisfy enum value set: [ml.t3.medium, "),
            "{err}"
        );
    }

    #[test]
    fn every_processing_instance_type_of_the_model_is_accepted() {
        let types = shapes::model().enum_values("ProcessingInstanceType");
        assert!(types.len() > 100, "the model lists SageMaker's types: {}", types.len());
        for t in types {
            let req = with("/ProcessingResources/ClusterConfig/InstanceType", json!(t));
            assert!(create_request(&req).is_ok(), "{t} refused");
        }
    }

    #[test]
    fn a_tag_value_outside_the_pattern_is_refused() {
        let err = message(&with("/Tags", json!([{"Key": "owner", "Value": "me!"}])));
        assert_eq!(
            err,
            "1 validation error detected: Value 'me!' at 'tags.member.value' failed to satisfy constraint: Member must satisfy regular expression pattern: ([\\p{L}\\p{Z}\\p{N}_.:/=+\\-@]*)"
        );
        let ok = with("/Tags", json!([{"Key": "owner", "Value": "team a/b=c@d"}]));
        assert!(create_request(&ok).is_ok());
    }

    #[test]
    fn a_volume_above_16384_gb_is_refused() {
        let err = message(&with("/ProcessingResources/ClusterConfig/VolumeSizeInGB", json!(16385)));
        assert_eq!(
            err,
            "1 validation error detected: Value '16385' at 'processingResources.clusterConfig.volumeSizeInGB' failed to satisfy constraint: Member must have value less than or equal to 16384"
        );
        assert!(create_request(&with("/ProcessingResources/ClusterConfig/VolumeSizeInGB", json!(16384))).is_ok());
    }

    #[test]
    fn nested_paths_name_list_items_member() {
        let mut req = valid();
        req["ProcessingInputs"] =
            json!([{"InputName": "in", "S3Input": {"S3Uri": "ftp://x", "S3DataType": "S3Prefix"}}]);
        let err = message(&req);
        assert!(err.contains("at 'processingInputs.member.s3Input.s3Uri'"), "{err}");
        req["ProcessingInputs"] = json!([{"InputName": "in", "S3Input": {"S3Uri": "s3://b/k"}}]);
        let err = message(&req);
        assert!(
            err.contains("Value null at 'processingInputs.member.s3Input.s3DataType' failed to satisfy constraint: Member must not be null"),
            "{err}"
        );
    }

    #[test]
    fn an_input_needs_exactly_one_source() {
        let mut req = valid();
        req["ProcessingInputs"] = json!([{"InputName": "in"}]);
        assert!(message(&req).starts_with("Exactly one of S3Input or DatasetDefinition"));
        req["ProcessingInputs"] = json!([{"InputName": "in", "S3Input": {"S3Uri": "s3://b/k", "S3DataType": "S3Prefix"},
            "DatasetDefinition": {"LocalPath": "/opt/ml/processing/d"}}]);
        assert!(message(&req).starts_with("Exactly one of S3Input or DatasetDefinition"));
    }

    #[test]
    fn two_inputs_with_the_same_local_path_get_an_empty_message() {
        let mut req = valid();
        req["ProcessingInputs"] = json!([input("a", "/opt/ml/processing/in"), input("b", "/opt/ml/processing/in")]);
        let err = create_request(&req).expect_err("same LocalPath");
        assert_eq!((err.kind, err.message.as_str()), ("ValidationException", ""));
        req["ProcessingInputs"] = json!([input("a", "/opt/ml/processing/a"), input("b", "/opt/ml/processing/b")]);
        assert!(create_request(&req).is_ok());
    }

    #[test]
    fn the_instance_type_is_needed_without_instance_preferences() {
        let mut req = valid();
        req["ProcessingResources"]["ClusterConfig"] = json!({"InstanceCount": 1, "VolumeSizeInGB": 30});
        assert!(message(&req).contains("Value null at 'processingResources.clusterConfig.instanceType'"));
        req["ProcessingResources"]["ClusterConfig"] = json!({"VolumeSizeInGB": 30,
            "InstancePreferences": [{"InstanceType": "ml.c5.xlarge", "InstanceCount": 1}]});
        assert!(create_request(&req).is_ok());
    }
}
