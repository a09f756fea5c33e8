//! AWS partitions. ARNs, account principals and console links differ between the commercial
//! regions, the China regions and AWS GovCloud (US): a policy that names `arn:aws:s3:::bucket`
//! does not match a request in `cn-north-1`, whose bucket is `arn:aws-cn:s3:::bucket`.

/// The partition a region belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Partition {
    /// The commercial regions (`aws`).
    Aws,
    /// The China regions, `cn-*` (`aws-cn`).
    China,
    /// AWS GovCloud (US), `us-gov-*` (`aws-us-gov`).
    GovCloud,
}

impl Partition {
    /// The partition of a region, by the region's name as AWS assigns them.
    pub fn of_region(region: &str) -> Self {
        if region.starts_with("cn-") {
            Partition::China
        } else if region.starts_with("us-gov-") {
            Partition::GovCloud
        } else {
            Partition::Aws
        }
    }

    /// The partition as it appears in ARNs.
    pub fn id(self) -> &'static str {
        match self {
            Partition::Aws => "aws",
            Partition::China => "aws-cn",
            Partition::GovCloud => "aws-us-gov",
        }
    }

    /// The ARN of an S3 bucket, or of an object when `key` is given.
    pub fn s3_arn(self, bucket: &str, key: Option<&str>) -> String {
        match key {
            Some(key) => format!("arn:{}:s3:::{bucket}/{key}", self.id()),
            None => format!("arn:{}:s3:::{bucket}", self.id()),
        }
    }

    /// The ARN that names a whole account as a principal.
    pub fn account_root(self, account: &str) -> String {
        format!("arn:{}:iam::{account}:root", self.id())
    }

    /// The AWS console's address for a service page in a region. The China and GovCloud
    /// consoles are separate sites, with the region as a parameter.
    pub fn console_url(self, region: &str, service: &str) -> String {
        match self {
            Partition::Aws => format!("https://{region}.console.aws.amazon.com/{service}/home?region={region}"),
            Partition::China => format!("https://console.amazonaws.cn/{service}/home?region={region}"),
            Partition::GovCloud => format!("https://console.amazonaws-us-gov.com/{service}/home?region={region}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::Partition;

    #[test]
    fn regions_map_to_their_partition() {
        for (region, id) in [
            ("us-east-1", "aws"),
            ("eu-west-1", "aws"),
            ("us-west-2", "aws"),
            ("cn-north-1", "aws-cn"),
            ("cn-northwest-1", "aws-cn"),
            ("us-gov-west-1", "aws-us-gov"),
            ("us-gov-east-1", "aws-us-gov"),
        ] {
            assert_eq!(Partition::of_region(region).id(), id, "{region}");
        }
    }

    #[test]
    fn arns_and_links_use_the_partition() {
        let cn = Partition::of_region("cn-north-1");
        assert_eq!(cn.s3_arn("b", Some("k/x")), "arn:aws-cn:s3:::b/k/x");
        assert_eq!(cn.s3_arn("b", None), "arn:aws-cn:s3:::b");
        assert_eq!(cn.account_root("123456789012"), "arn:aws-cn:iam::123456789012:root");
        assert_eq!(
            cn.console_url("cn-north-1", "cloudwatch"),
            "https://console.amazonaws.cn/cloudwatch/home?region=cn-north-1"
        );
        assert_eq!(
            Partition::of_region("us-gov-west-1").console_url("us-gov-west-1", "cloudwatch"),
            "https://console.amazonaws-us-gov.com/cloudwatch/home?region=us-gov-west-1"
        );
        assert_eq!(
            Partition::of_region("eu-west-1").console_url("eu-west-1", "cloudwatch"),
            "https://eu-west-1.console.aws.amazon.com/cloudwatch/home?region=eu-west-1"
        );
    }
}
