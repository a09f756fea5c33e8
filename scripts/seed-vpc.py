#!/usr/bin/env python3
"""Seeds a realistic SageMaker VPC in moto (EC2), and the examples' execution role in moto's
IAM, and prints their IDs as JSON.

- VPC 10.0.0.0/16 with DNS support and hostnames on, and a VPC flow log
- public subnet with an internet gateway route
- two private subnets (two AZs) whose route table has an S3 gateway endpoint
- an "isolated" private subnet with no route to S3 at all (a broken network)
- security group "processing" with a self-referencing rule (distributed jobs)
- security group "no-self-reference" without it
- IAM role SageMakerProcessingRole (the examples' roleARN), trusted by SageMaker, with the
  ENI, S3, Logs, ECR and KMS permissions a processing job needs (kept when it exists)

Run with the moto venv's Python (it has boto3); endpoint and credentials from the stack env.
"""
import json
import os
import sys

import boto3

REGION = os.environ.get("AWS_REGION", "us-east-1")
ec2 = boto3.client("ec2", region_name=REGION, endpoint_url=os.environ["AWS_ENDPOINT_URL_EC2"])


ROLE = "SageMakerProcessingRole"
TRUST = {
    "Version": "2012-10-17",
    "Statement": [{"Effect": "Allow", "Principal": {"Service": "sagemaker.amazonaws.com"}, "Action": "sts:AssumeRole"}],
}
JOB_POLICY = {
    "Version": "2012-10-17",
    "Statement": [
        {
            "Effect": "Allow",
            "Action": [
                "ec2:CreateNetworkInterface", "ec2:CreateNetworkInterfacePermission", "ec2:DeleteNetworkInterface",
                "ec2:DeleteNetworkInterfacePermission", "ec2:DescribeNetworkInterfaces", "ec2:DescribeVpcs",
                "ec2:DescribeDhcpOptions", "ec2:DescribeSubnets", "ec2:DescribeSecurityGroups",
            ],
            "Resource": "*",
        },
        {"Effect": "Allow", "Action": ["s3:GetObject", "s3:ListBucket", "s3:PutObject"], "Resource": "*"},
        {"Effect": "Allow", "Action": ["logs:CreateLogStream", "logs:PutLogEvents"], "Resource": "arn:aws:logs:*:*:log-group:/aws/sagemaker/*"},
        {"Effect": "Allow", "Action": ["ecr:GetAuthorizationToken", "ecr:BatchGetImage", "ecr:GetDownloadUrlForLayer", "ecr:BatchCheckLayerAvailability"], "Resource": "*"},
        {"Effect": "Allow", "Action": ["kms:CreateGrant", "kms:GenerateDataKey", "kms:Encrypt"], "Resource": "*"},
    ],
}


def execution_role() -> str:
    iam = boto3.client("iam", region_name="us-east-1", endpoint_url=os.environ.get("AWS_ENDPOINT_URL_IAM", os.environ["AWS_ENDPOINT_URL_EC2"]))
    try:
        arn = iam.get_role(RoleName=ROLE)["Role"]["Arn"]
    except iam.exceptions.NoSuchEntityException:
        arn = iam.create_role(RoleName=ROLE, AssumeRolePolicyDocument=json.dumps(TRUST))["Role"]["Arn"]
    iam.put_role_policy(RoleName=ROLE, PolicyName="processing", PolicyDocument=json.dumps(JOB_POLICY))
    return arn


def main() -> None:
    name = sys.argv[1] if len(sys.argv) > 1 else "sagemaker-demo"
    vpc = ec2.create_vpc(CidrBlock="10.0.0.0/16")["Vpc"]["VpcId"]
    ec2.create_tags(Resources=[vpc], Tags=[{"Key": "Name", "Value": name}])
    ec2.modify_vpc_attribute(VpcId=vpc, EnableDnsSupport={"Value": True})
    ec2.modify_vpc_attribute(VpcId=vpc, EnableDnsHostnames={"Value": True})

    def subnet(cidr: str, az: str) -> str:
        return ec2.create_subnet(VpcId=vpc, CidrBlock=cidr, AvailabilityZone=f"{REGION}{az}")["Subnet"]["SubnetId"]

    public = subnet("10.0.0.0/24", "a")
    private_a = subnet("10.0.1.0/24", "a")
    private_b = subnet("10.0.2.0/24", "b")
    isolated = subnet("10.0.3.0/24", "a")

    igw = ec2.create_internet_gateway()["InternetGateway"]["InternetGatewayId"]
    ec2.attach_internet_gateway(InternetGatewayId=igw, VpcId=vpc)
    public_rt = ec2.create_route_table(VpcId=vpc)["RouteTable"]["RouteTableId"]
    ec2.create_route(RouteTableId=public_rt, DestinationCidrBlock="0.0.0.0/0", GatewayId=igw)
    ec2.associate_route_table(RouteTableId=public_rt, SubnetId=public)

    private_rt = ec2.create_route_table(VpcId=vpc)["RouteTable"]["RouteTableId"]
    for s in (private_a, private_b):
        ec2.associate_route_table(RouteTableId=private_rt, SubnetId=s)
    isolated_rt = ec2.create_route_table(VpcId=vpc)["RouteTable"]["RouteTableId"]
    ec2.associate_route_table(RouteTableId=isolated_rt, SubnetId=isolated)

    endpoint = ec2.create_vpc_endpoint(
        VpcId=vpc,
        VpcEndpointType="Gateway",
        ServiceName=f"com.amazonaws.{REGION}.s3",
        RouteTableIds=[private_rt],
    )["VpcEndpoint"]["VpcEndpointId"]

    sg = ec2.create_security_group(GroupName=f"{name}-processing", Description="SageMaker processing", VpcId=vpc)["GroupId"]
    ec2.authorize_security_group_ingress(
        GroupId=sg, IpPermissions=[{"IpProtocol": "-1", "UserIdGroupPairs": [{"GroupId": sg}]}]
    )
    lonely = ec2.create_security_group(GroupName=f"{name}-no-self", Description="no self reference", VpcId=vpc)["GroupId"]

    try:
        s3 = boto3.client("s3", region_name=REGION, endpoint_url=os.environ.get("MOTO_URL", os.environ["AWS_ENDPOINT_URL_EC2"]))
        s3.create_bucket(Bucket=f"{name}-flow-logs")
        result = ec2.create_flow_logs(
            ResourceIds=[vpc],
            ResourceType="VPC",
            TrafficType="ALL",
            LogDestinationType="s3",
            LogDestination=f"arn:aws:s3:::{name}-flow-logs",
        )
        if result.get("Unsuccessful"):
            print(f"seed-vpc: flow log not created: {result['Unsuccessful']}", file=sys.stderr)
    except Exception as e:  # flow logs are advisory; the demo works without them
        print(f"seed-vpc: flow log not created: {e}", file=sys.stderr)

    json.dump(
        {
            "vpc": vpc,
            "publicSubnet": public,
            "privateSubnets": [private_a, private_b],
            "isolatedSubnet": isolated,
            "s3Endpoint": endpoint,
            "securityGroup": sg,
            "securityGroupWithoutSelfReference": lonely,
            "executionRole": execution_role(),
        },
        sys.stdout,
        indent=2,
    )
    print()


if __name__ == "__main__":
    main()
