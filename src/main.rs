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
    /// Print the ProcessingJob CustomResourceDefinition as YAML.
    Crd,
    /// Validate the VPC network of ProcessingJob manifests, without a cluster.
    /// Exit 0: no Error finding; 1: Error findings; 2: bad input; 3: AWS could not be read.
    Validate(smpc::cli::validate::ValidateArgs),
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
        Command::Validate(args) => {
            let runtime = match tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .build()
            {
                Ok(rt) => rt,
                Err(e) => {
                    eprintln!("error: cannot start the async runtime: {e}");
                    return ExitCode::from(3);
                }
            };
            ExitCode::from(runtime.block_on(smpc::cli::validate::run(args)))
        }
    }
}
