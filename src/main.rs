use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// Runs Amazon SageMaker Processing Jobs in your VPC, validating the network first.
#[derive(Parser)]
#[command(name = "sagemaker-processing-controller", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the controller.
    Run(Box<smpc::cli::run::RunArgs>),
    /// Validate the VPC network of ProcessingJob manifests, without a cluster.
    /// Exit 0: no Error finding; 1: Error findings; 2: bad input; 3: AWS could not be read.
    Validate(smpc::cli::validate::ValidateArgs),
    /// Print the ProcessingJob CustomResourceDefinition as YAML.
    Crd,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Crd => match smpc::api::crd_yaml() {
            Ok(yaml) => {
                print!("{yaml}");
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("error: cannot render the CRD: {e}");
                ExitCode::FAILURE
            }
        },
        Command::Validate(args) => block_on(smpc::cli::validate::run(args)),
        Command::Run(args) => block_on(smpc::cli::run::run(*args)),
    }
}

fn block_on(fut: impl std::future::Future<Output = u8>) -> ExitCode {
    // AWS SDK futures are large; debug builds need more than tokio's default 2 MiB stacks.
    match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_stack_size(16 << 20)
        .build()
    {
        Ok(rt) => ExitCode::from(rt.block_on(fut)),
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            ExitCode::from(3)
        }
    }
}
