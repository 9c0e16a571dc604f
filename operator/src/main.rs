//! The `kennel-operator` command: `run` the controller, or print the `crd` YAML.

use std::path::PathBuf;

use clap::{Parser, Subcommand};
use kube::CustomResourceExt;

use kennel::api::AgentSandbox;

#[derive(Parser)]
#[command(name = "kennel-operator", version, about = "Kennel: fenced sandboxes for AI agents")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Print the CustomResourceDefinitions as YAML.
    Crd,
    /// Run the controller.
    Run {
        /// Operator configuration file (YAML); the safe defaults without it.
        #[arg(long, env = "KENNEL_CONFIG")]
        config: Option<PathBuf>,
    },
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Crd => {
            let yaml = serde_yaml::to_string(&AgentSandbox::crd());
            match yaml {
                Ok(text) => {
                    use std::io::Write;
                    let mut out = std::io::stdout().lock();
                    let _ = write!(out, "{text}");
                    std::process::ExitCode::SUCCESS
                }
                Err(_) => std::process::ExitCode::FAILURE,
            }
        }
        Command::Run { config: _ } => std::process::ExitCode::FAILURE,
    }
}
