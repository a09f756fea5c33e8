//! sagemaker-processing-controller: runs Amazon SageMaker Processing Jobs in a customer's VPC,
//! validating the network first.
//!
//! Modules: [`accounts`] (which AWS account a job's calls go to: ACK's CARM), [`api`] (the CRD types), [`network`] (snapshot, checks, policy evaluation), [`role`]
//! (the execution-role pre-flight), [`aws`] (EC2, SageMaker, IAM and CloudWatch Logs adapters),
//! [`job`] (SageMaker's view of a job in our types), [`reconcile`] (the pipeline), [`runtime`]
//! (the process around it), [`manifest`] (reading manifests without a cluster), [`cli`] (the
//! subcommands), [`partition`] (ARNs and console links per AWS partition), [`wildcard`]
//! (IAM-style `*`/`?` patterns).

pub mod accounts;
pub mod api;
pub mod aws;
pub mod cli;
pub mod job;
pub mod manifest;
pub mod network;
pub mod partition;
pub mod reconcile;
pub mod role;
pub mod runtime;
pub mod telemetry;
pub mod wildcard;
