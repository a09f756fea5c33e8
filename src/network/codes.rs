//! The finding codes. They are API: documented in `docs/findings.md`, never renamed.

use crate::api::Severity;

macro_rules! codes {
    ($( $name:ident, $severity:ident, $req:literal, $remediation:literal; )*) => {
        /// A stable finding code.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub enum Code { $( $name, )* }

        impl Code {
            /// Every code, in the order of the design's table.
            pub const ALL: &'static [Code] = &[ $( Code::$name, )* ];

            /// The code as it appears in status and output.
            pub fn as_str(self) -> &'static str {
                match self { $( Code::$name => stringify!($name), )* }
            }

            /// How serious a finding of this code is.
            pub fn severity(self) -> Severity {
                match self { $( Code::$name => Severity::$severity, )* }
            }

            /// The requirement (N1–N14 for the network, R1–R7 for the execution role) the code
            /// belongs to.
            pub fn requirement(self) -> &'static str {
                match self { $( Code::$name => $req, )* }
            }

            /// How to fix it.
            pub fn remediation(self) -> &'static str {
                match self { $( Code::$name => $remediation, )* }
            }
        }
    };
}

codes! {
    SubnetNotFound, Error, "N1", "Check the subnet ID and the job's region (spec.region or the services.k8s.aws/region annotation); subnets are regional.";
    SecurityGroupNotFound, Error, "N1", "Check the security group ID and the job's region; security groups belong to one region and VPC.";
    SubnetsInMultipleVpcs, Error, "N2", "Use subnets of a single VPC in networkConfig.vpcConfig.subnets.";
    SecurityGroupVpcMismatch, Error, "N2", "Use security groups of the subnets' VPC; an ENI can only join groups of its own VPC.";
    InsufficientSubnetIps, Error, "N3", "Add subnets with free addresses, free addresses in these subnets, or lower instanceCount; SageMaker needs 2 private IPs per instance.";
    SubnetLowOnIps, Warning, "N3", "Add a subnet with more free addresses; this subnet alone could not hold all of the job's network interfaces.";
    MissingSelfReferencingIngress, Error, "N4", "Add an inbound rule to one of the job's security groups allowing all traffic from that same group (a self-referencing rule).";
    MissingSelfReferencingEgress, Error, "N4", "Add an outbound rule to one of the job's security groups allowing all traffic to that same group (or to 0.0.0.0/0); with inter-container traffic encryption, UDP 500 and IP protocol 50 (ESP) must pass too.";
    NoS3Egress, Error, "N5", "Allow outbound TCP 443 to the S3 prefix list (pl-...) or 0.0.0.0/0 in one of the job's security groups.";
    NoS3Route, Error, "N6", "Create an S3 gateway endpoint (com.amazonaws.<region>.s3) associated with the subnet's route table, or route 0.0.0.0/0 to a NAT gateway.";
    S3EndpointPolicyDenies, Error, "N7", "Allow s3:GetObject and s3:ListBucket on the inputs and s3:PutObject on the outputs in the endpoint policy, and remove Deny statements that match them.";
    S3EndpointPolicyUnevaluable, Warning, "N7", "Check by hand that the endpoint policy allows the job's S3 access, or simplify the condition so it can be evaluated.";
    VpcDnsDisabled, Warning, "N8", "Turn on enableDnsSupport and enableDnsHostnames on the VPC (aws ec2 modify-vpc-attribute).";
    NetworkAclBlocksS3, Error, "N9", "Allow outbound TCP 443 to S3's address ranges (the CIDRs of the S3 prefix list, or the S3 interface endpoint's subnets) and inbound TCP 32768-61000 from them (return traffic) in the subnet's network ACL, and on a NAT path also in the NAT gateway's subnet; NACLs are stateless.";
    NoInternetRoute, Error, "N10", "Route the subnet's 0.0.0.0/0 to a NAT gateway that sits in a public subnet (with a route to an internet gateway), or set networkValidation.requiresInternet to false.";
    InternetGatewayRouteWithoutNat, Error, "N10", "Put the job in private subnets whose 0.0.0.0/0 route goes to a NAT gateway; SageMaker's interfaces get no public IP, so an internet gateway route alone gives no internet.";
    MissingInterfaceEndpoint, Error, "N11", "Create an interface VPC endpoint for the service (com.amazonaws.<region>.<service>) with private DNS, or give the subnets a NAT path.";
    InterfaceEndpointUnusable, Error, "N6, N11", "Make the interface endpoint serve the job: state available, private DNS enabled (for the VPC, not only the inbound Resolver endpoint), an inbound rule in one of its security groups allowing TCP 443 from the job's security groups or subnets, and outbound TCP 443 from the job's groups to it.";
    EgressNotVerifiable, Warning, "N6, N10, N11", "Check on the far side of the named route (hub VPC, firewall or appliance, peered VPC, on-premises network) that the job's TCP 443 traffic reaches S3, the internet or the services it needs, and that the replies come back; the controller cannot read past this target.";
    FlowLogsDisabled, Info, "N12", "Enable VPC Flow Logs on the VPC to record the job's traffic.";
    PackageRepositoriesReachable, Info, "N13", "If containers must not install packages, deny the arn:aws:s3:::packages.*, repo.* and amazonlinux.* buckets in the S3 endpoint policy.";
    NetworkIsolationSkipsChecks, Info, "N14", "Nothing to do: with network isolation the container's own traffic checks do not apply.";
    // The execution role (R1–R7): read from IAM, evaluated as identity policies ∩ permissions
    // boundary. Resource policies and SCPs are invisible, so a permission that a bucket, key or
    // repository policy could grant is a Warning when only the role's policies lack it.
    RoleNotFound, Error, "R1", "Create the role, or correct spec.roleARN (the role's name and account); SageMaker refuses a role that does not exist.";
    RoleNotChecked, Info, "R1", "Allow the controller iam:GetRole, iam:ListRolePolicies, iam:GetRolePolicy, iam:ListAttachedRolePolicies, iam:GetPolicy and iam:GetPolicyVersion on the job roles (docs/iam-policy.json) to have them checked.";
    RoleNotAssumableBySageMaker, Error, "R2", "Let the service principal sagemaker.amazonaws.com call sts:AssumeRole in the role's trust policy.";
    RoleMissingVpcPermissions, Error, "R3", "Allow the role ec2:CreateNetworkInterface, ec2:CreateNetworkInterfacePermission, ec2:DeleteNetworkInterface, ec2:DeleteNetworkInterfacePermission and ec2:DescribeNetworkInterfaces, ec2:DescribeVpcs, ec2:DescribeDhcpOptions, ec2:DescribeSubnets, ec2:DescribeSecurityGroups (e.g. attach AmazonSageMakerFullAccess or the policy in docs/findings.md), in its policies and its permissions boundary.";
    RoleS3AccessDenied, Error, "R4", "Remove or narrow the Deny statement that matches the job's S3 access in the role's policies or permissions boundary.";
    RoleS3AccessNotGranted, Warning, "R4", "Allow the role s3:GetObject and s3:ListBucket on the inputs and s3:PutObject on the outputs, or check that the bucket's policy grants them to the role (possible only in the role's own account).";
    RoleKmsAccessDenied, Error, "R5", "Remove or narrow the Deny statement that matches the KMS action in the role's policies or permissions boundary.";
    RoleKmsAccessNotGranted, Warning, "R5", "Allow the role kms:CreateGrant on the volume key and kms:GenerateDataKey and kms:Encrypt on the output key, or check that the key policy grants them to the role.";
    RoleLogsAccessMissing, Warning, "R6", "Allow the role logs:CreateLogStream and logs:PutLogEvents on /aws/sagemaker/ProcessingJobs; without them the job runs but its logs are lost.";
    RoleEcrPullDenied, Error, "R7", "Remove or narrow the Deny statement that matches ecr:GetAuthorizationToken, ecr:BatchGetImage or ecr:GetDownloadUrlForLayer in the role's policies or permissions boundary.";
    RoleEcrPullNotGranted, Warning, "R7", "Allow the role ecr:GetAuthorizationToken, ecr:BatchGetImage, ecr:BatchCheckLayerAvailability and ecr:GetDownloadUrlForLayer on the image's repository, or check that the repository policy grants them to the role.";
    RolePolicyUnevaluable, Warning, "R2-R7", "Check by hand that the role's policies allow the action named in the message, or simplify the condition so that it can be evaluated.";
}

impl std::fmt::Display for Code {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}
