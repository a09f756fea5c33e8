//! The subcommands of the `sagemaker-processing-controller` binary.

pub mod logs;
pub mod run;
pub mod validate;
