//! SageMaker's API constraints for CreateProcessingJob, answered as ValidationException
//! messages in the shape AWS uses.

use serde_json::Value;

fn violation(value: &str, at: &str, constraint: &str) -> String {
    format!("1 validation error detected: Value '{value}' at '{at}' failed to satisfy constraint: {constraint}")
}

fn missing(at: &str) -> String {
    violation("null", at, "Member must not be null")
}

/// `^[a-zA-Z0-9](-*[a-zA-Z0-9]){0,62}$`
pub fn job_name(name: &str) -> Result<(), String> {
    let ok = !name.is_empty()
        && name.len() <= 63
        && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
        && !name.starts_with('-')
        && !name.ends_with('-');
    if ok {
        Ok(())
    } else {
        Err(violation(
            name,
            "processingJobName",
            "Member must satisfy regular expression pattern: ^[a-zA-Z0-9](-*[a-zA-Z0-9]){0,62}",
        ))
    }
}

/// SageMaker's processing instance types: known families and sizes.
fn instance_type_known(t: &str) -> bool {
    const FAMILIES: &[&str] = &[
        "t3", "m4", "m5", "m5d", "m6i", "m7i", "c4", "c5", "c6i", "c7i", "r5", "r5d", "r6i", "r7i", "g4dn", "g5", "p3",
    ];
    const SIZES: &[&str] = &[
        "medium", "large", "xlarge", "2xlarge", "4xlarge", "8xlarge", "12xlarge", "16xlarge", "24xlarge", "32xlarge",
        "48xlarge",
    ];
    let mut parts = t.split('.');
    matches!((parts.next(), parts.next(), parts.next(), parts.next()), (Some("ml"), Some(f), Some(s), None) if FAMILIES.contains(&f) && SIZES.contains(&s))
}

fn int_in(v: &Value, at: &str, min: i64, max: i64) -> Result<(), String> {
    match v.as_i64() {
        None => Err(missing(at)),
        Some(n) if n < min => Err(violation(
            &n.to_string(),
            at,
            &format!("Member must have value greater than or equal to {min}"),
        )),
        Some(n) if n > max => Err(violation(
            &n.to_string(),
            at,
            &format!("Member must have value less than or equal to {max}"),
        )),
        Some(_) => Ok(()),
    }
}

fn list_len(v: Option<&Value>, at: &str, min: usize, max: usize) -> Result<usize, String> {
    let n = v.and_then(Value::as_array).map(Vec::len).unwrap_or(0);
    if n < min || n > max {
        return Err(violation(
            &format!("[{n} items]"),
            at,
            &format!("Member must have length between {min} and {max}"),
        ));
    }
    Ok(n)
}

fn s3_uri(v: Option<&Value>, at: &str) -> Result<(), String> {
    let uri = v.and_then(Value::as_str).ok_or_else(|| missing(at))?;
    let rest = uri.strip_prefix("s3://").or_else(|| uri.strip_prefix("https://"));
    match rest {
        Some(r) if !r.is_empty() && !r.starts_with('/') && uri.len() <= 1024 => Ok(()),
        _ => Err(violation(
            uri,
            at,
            "Member must satisfy regular expression pattern: (https|s3)://([^/]+)/?(.*)",
        )),
    }
}

fn id_list(v: Option<&Value>, at: &str, prefix: &str, min: usize, max: usize) -> Result<(), String> {
    list_len(v, at, min, max)?;
    for id in v.and_then(Value::as_array).into_iter().flatten() {
        let s = id.as_str().unwrap_or_default();
        let ok = s.len() <= 32
            && s.strip_prefix(prefix)
                .is_some_and(|r| !r.is_empty() && r.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit()));
        if !ok {
            return Err(violation(
                s,
                at,
                &format!("Member must satisfy regular expression pattern: {prefix}[0-9a-z]+"),
            ));
        }
    }
    Ok(())
}

pub fn tags(tags: &[Value]) -> Result<(), String> {
    if tags.len() > 50 {
        return Err(violation(
            &format!("[{} items]", tags.len()),
            "tags",
            "Member must have length less than or equal to 50",
        ));
    }
    for t in tags {
        let key = t.get("Key").and_then(Value::as_str).unwrap_or_default();
        if key.is_empty() || key.len() > 128 {
            return Err(violation(
                key,
                "tags.member.key",
                "Member must have length between 1 and 128",
            ));
        }
        let value = t.get("Value").and_then(Value::as_str).unwrap_or_default();
        if value.len() > 256 {
            return Err(violation(
                value,
                "tags.member.value",
                "Member must have length less than or equal to 256",
            ));
        }
    }
    Ok(())
}

/// Checks a CreateProcessingJob request against SageMaker's constraints.
pub fn create_request(input: &Value) -> Result<(), String> {
    let name = input
        .get("ProcessingJobName")
        .and_then(Value::as_str)
        .ok_or_else(|| missing("processingJobName"))?;
    job_name(name)?;

    let image = input
        .pointer("/AppSpecification/ImageUri")
        .and_then(Value::as_str)
        .ok_or_else(|| missing("appSpecification.imageUri"))?;
    if image.is_empty() || image.len() > 255 {
        return Err(violation(
            image,
            "appSpecification.imageUri",
            "Member must have length between 1 and 255",
        ));
    }

    let role = input
        .get("RoleArn")
        .and_then(Value::as_str)
        .ok_or_else(|| missing("roleArn"))?;
    let role_ok = role.len() >= 20
        && role.len() <= 2048
        && role.starts_with("arn:aws")
        && role
            .split(':')
            .nth(4)
            .is_some_and(|acct| acct.len() == 12 && acct.chars().all(|c| c.is_ascii_digit()))
        && role.contains(":role/");
    if !role_ok {
        return Err(violation(role, "roleArn", "Member must satisfy regular expression pattern: ^arn:aws[a-z\\-]*:iam::\\d{12}:role/?[a-zA-Z_0-9+=,.@\\-_/]+$"));
    }

    let cluster = input
        .pointer("/ProcessingResources/ClusterConfig")
        .ok_or_else(|| missing("processingResources.clusterConfig"))?;
    int_in(
        cluster.get("InstanceCount").unwrap_or(&Value::Null),
        "processingResources.clusterConfig.instanceCount",
        1,
        100,
    )?;
    int_in(
        cluster.get("VolumeSizeInGB").unwrap_or(&Value::Null),
        "processingResources.clusterConfig.volumeSizeInGB",
        1,
        16384,
    )?;
    let itype = cluster
        .get("InstanceType")
        .and_then(Value::as_str)
        .ok_or_else(|| missing("processingResources.clusterConfig.instanceType"))?;
    if !instance_type_known(itype) {
        return Err(violation(
            itype,
            "processingResources.clusterConfig.instanceType",
            "Member must satisfy enum value set: [ml.t3.medium, ml.m5.large, ml.m5.xlarge, ...]",
        ));
    }

    if let Some(sc) = input.get("StoppingCondition") {
        int_in(
            sc.get("MaxRuntimeInSeconds").unwrap_or(&Value::Null),
            "stoppingCondition.maxRuntimeInSeconds",
            1,
            777600,
        )?;
    }

    if let Some(inputs) = input.get("ProcessingInputs") {
        list_len(Some(inputs), "processingInputs", 0, 10)?;
        for i in inputs.as_array().into_iter().flatten() {
            if i.get("InputName").and_then(Value::as_str).is_none() {
                return Err(missing("processingInputs.member.inputName"));
            }
            match (i.get("S3Input"), i.get("DatasetDefinition")) {
                (Some(s3), None) => s3_uri(s3.get("S3Uri"), "processingInputs.member.s3Input.s3Uri")?,
                (None, Some(_)) => {}
                _ => {
                    return Err(
                        "Exactly one of S3Input or DatasetDefinition must be specified for each ProcessingInput".into(),
                    )
                }
            }
        }
    }

    if let Some(cfg) = input.get("ProcessingOutputConfig") {
        list_len(cfg.get("Outputs"), "processingOutputConfig.outputs", 1, 10)?;
        for o in cfg.get("Outputs").and_then(Value::as_array).into_iter().flatten() {
            if o.get("OutputName").and_then(Value::as_str).is_none() {
                return Err(missing("processingOutputConfig.outputs.member.outputName"));
            }
            if let Some(s3) = o.get("S3Output") {
                s3_uri(s3.get("S3Uri"), "processingOutputConfig.outputs.member.s3Output.s3Uri")?;
            }
        }
    }

    if let Some(env) = input.get("Environment").and_then(Value::as_object) {
        if env.len() > 100 {
            return Err(violation(
                &format!("{{{} entries}}", env.len()),
                "environment",
                "Member must have length less than or equal to 100",
            ));
        }
        for (k, v) in env {
            let key_ok = k.len() <= 256
                && k.chars().next().is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
                && k.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
            if !key_ok {
                return Err(violation(
                    k,
                    "environment",
                    "Map keys must satisfy regular expression pattern: [a-zA-Z_][a-zA-Z0-9_]*",
                ));
            }
            if v.as_str().is_none_or(|s| s.len() > 256) {
                return Err(violation(
                    k,
                    "environment",
                    "Map value must have length less than or equal to 256",
                ));
            }
        }
    }

    if let Some(vpc) = input.pointer("/NetworkConfig/VpcConfig") {
        id_list(vpc.get("Subnets"), "networkConfig.vpcConfig.subnets", "subnet-", 1, 16)?;
        id_list(
            vpc.get("SecurityGroupIds"),
            "networkConfig.vpcConfig.securityGroupIds",
            "sg-",
            1,
            5,
        )?;
    }

    if let Some(t) = input.get("Tags").and_then(Value::as_array) {
        tags(t)?;
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

    #[test]
    fn accepts_a_minimal_request() {
        assert_eq!(create_request(&valid()), Ok(()));
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
            let mut req = valid();
            *req.pointer_mut(pointer).expect("pointer exists") = value.clone();
            let err = create_request(&req).expect_err(pointer);
            assert!(err.contains(field), "{err} should name {field}");
        }
    }
}
