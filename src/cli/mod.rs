//! The subcommands of the `sagemaker-processing-controller` binary.

pub mod validate;
pub mod run;
