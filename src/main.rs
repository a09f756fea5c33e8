use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// Runs Amazon SageMaker Processing Jobs in your VPC, validating the network first.
#[derive(Parser)]
#[command(
    name = "sagemaker-processing-controller",
    version,
    about,
    disable_help_subcommand = true
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the controller.
    Run(Box<smpc::cli::run::RunArgs>),
    /// Validate the VPC network of ProcessingJob manifests, without a cluster.
    /// Exit 0: no Error finding blocks a job; 1: Error findings block a job (networkValidation
    /// mode Enforce; Warn-mode errors do not, Skip-mode jobs are skipped); 2: bad input; 3: EC2
    /// could not be read. A run with several outcomes exits with the worst: 3 > 2 > 1 > 0.
    Validate(smpc::cli::validate::ValidateArgs),
    /// Print the CloudWatch Logs of a ProcessingJob's SageMaker job, its streams merged by time.
    /// Exit 0: lines printed; 1: the cluster or AWS configuration cannot be used; 3: no such
    /// ProcessingJob; 4: the resource has no SageMaker job (yet: its phase says why); 5: the job
    /// has written no log line yet; 6: CloudWatch Logs cannot be read (e.g. AccessDenied: the
    /// caller needs logs:DescribeLogStreams and logs:GetLogEvents).
    Logs(smpc::cli::logs::LogsArgs),
    /// Print the ProcessingJob CustomResourceDefinition as YAML.
    Crd,
    /// Print this help, or the help of the given subcommand.
    Help {
        /// The subcommand to explain (run, validate, logs, crd).
        command: Option<String>,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Help { command } => help(command.as_deref()),
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
        Command::Logs(args) => block_on(smpc::cli::logs::run(args)),
    }
}

/// `help [COMMAND]`: the same text as `--help`, also for `help --help` (clap's own help
/// subcommand refuses that).
fn help(command: Option<&str>) -> ExitCode {
    let mut cli = <Cli as clap::CommandFactory>::command();
    let target = match command {
        None => Some(&mut cli),
        Some(name) => cli.find_subcommand_mut(name),
    };
    match target {
        Some(cmd) => {
            let _ = cmd.print_long_help();
            ExitCode::SUCCESS
        }
        None => {
            eprintln!(
                "error: no subcommand {:?}; the subcommands are run, validate, logs, crd and help",
                command.unwrap_or_default()
            );
            ExitCode::from(2)
        }
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
