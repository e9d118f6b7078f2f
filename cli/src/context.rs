//! Global flags shared by every command and the derived locations (spec file, state dir).
//! Owns no command logic.

use std::path::{Path, PathBuf};

use clap::{Args, ValueEnum};

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum OutputFormat {
    Human,
    Json,
}

#[derive(Debug, Args)]
pub struct GlobalArgs {
    /// The cluster spec.
    #[arg(short = 'f', long = "file", global = true, default_value = "cluster.yaml")]
    pub file: PathBuf,
    /// Local state dir [default: .kubeforge/<cluster-name>/ beside the spec file].
    #[arg(long, global = true)]
    pub state: Option<PathBuf>,
    /// Output format.
    #[arg(short = 'o', long = "output", global = true, value_enum, default_value = "human")]
    pub output: OutputFormat,
    /// More logging (-v info, -vv debug, -vvv trace).
    #[arg(short = 'v', long = "verbose", global = true, action = clap::ArgAction::Count)]
    pub verbose: u8,
    /// Do not ask for confirmation.
    #[arg(long, global = true)]
    pub yes: bool,
}

/// Resolved global options.
#[derive(Debug, Clone)]
pub struct Global {
    pub file: PathBuf,
    pub state: Option<PathBuf>,
    pub output: OutputFormat,
    pub verbose: u8,
    pub yes: bool,
}

impl Global {
    pub fn from_args(a: GlobalArgs) -> Self {
        Global { file: a.file, state: a.state, output: a.output, verbose: a.verbose, yes: a.yes }
    }

    /// `--state`, or `.kubeforge/<cluster-name>/` beside the spec file.
    pub fn state_dir(&self, cluster_name: &str) -> PathBuf {
        match &self.state {
            Some(dir) => dir.clone(),
            None => {
                let parent = self.file.parent().filter(|p| !p.as_os_str().is_empty());
                parent.unwrap_or(Path::new(".")).join(".kubeforge").join(cluster_name)
            }
        }
    }
}

/// Logs go to stderr so that `-o json` output on stdout stays machine-readable.
pub fn init_logging(verbose: u8) {
    let level = match verbose {
        0 => "warn",
        1 => "info",
        2 => "debug",
        _ => "trace",
    };
    let filter = tracing_subscriber::EnvFilter::try_from_env("KUBEFORGE_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(level));
    tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).init();
}
