//! `defender`: the entry point. Parses the command line, runs the subcommand, and is the only
//! place errors become messages and exit statuses (`defender::exit`).

#![deny(unsafe_code)]

use std::path::Path;
use std::process::ExitCode;

use defender::cli::{Command, DockerfileCommand, FargateCommand, PolicyCommand, RunArgs};
use defender::exit::ExitStatus;
use defender::supervisor::startup::{self, StartupError};
use defender::{embed, input, logger, policy, supervisor, sys};

/// Blocks every signal before `main` (and before the Rust runtime starts): see
/// `defender::sys::signals`. Only this binary registers it, so the library's users are untouched.
// A function in .init_array runs before main with no arguments; this one only sets the signal
// mask (an `extern "C" fn()` of the right type), which makes the placement sound.
#[allow(unsafe_code)]
#[used]
#[unsafe(link_section = ".init_array")]
static BLOCK_SIGNALS_AT_START: extern "C" fn() = sys::signals::block_all_at_start;

/// dlmalloc instead of musl's allocator, which unmaps freed memory at once: start-up made about 180
/// mmap/munmap calls, each with its page faults (docs/benchmarks.md, start-up).
#[global_allocator]
static ALLOCATOR: dlmalloc::GlobalDlmalloc = dlmalloc::GlobalDlmalloc;

fn main() -> ExitCode {
    subcommand().into()
}

/// Parses the command line and runs the subcommand.
fn subcommand() -> ExitStatus {
    let is_run = std::env::args_os().nth(1).is_some_and(|a| a == "run");
    // Only `run` supervises; every other subcommand gets the mask it was started with back at once.
    if !is_run && let Err(e) = sys::signals::restore_original() {
        eprintln!("defender: error: restoring the signal mask: {e}");
        return ExitStatus::Failure;
    }
    let cli = match defender::cli::parse() {
        Ok(cli) => cli,
        Err(e) => {
            let _ = e.print();
            return match e.kind() {
                clap::error::ErrorKind::DisplayHelp | clap::error::ErrorKind::DisplayVersion => {
                    ExitStatus::Success
                }
                _ if is_run => ExitStatus::CannotStart,
                _ => ExitStatus::Invalid,
            };
        }
    };
    match cli.command {
        Command::Run(args) => run(args),
        Command::Policy(PolicyCommand::Check { file }) => check(&file),
        Command::Policy(PolicyCommand::ImportPrisma { file, custom_rules }) => {
            import_prisma(&file, custom_rules.as_deref())
        }
        Command::Policy(PolicyCommand::Default) => {
            print!("{}", policy::default_policy().to_json_pretty());
            ExitStatus::Success
        }
        Command::Fargate(FargateCommand::Embed(args)) => embedded(embed::fargate_embed(&args)),
        Command::Dockerfile(DockerfileCommand::Embed(args)) => {
            embedded(embed::dockerfile_embed(&args))
        }
        Command::Install { dir, state_dirs } => {
            let installed = embed::install::install(&dir).and_then(|path| {
                eprintln!("defender: installed {}", path.display());
                state_dirs.iter().try_for_each(|state| {
                    embed::install::make_state_dir(state)?;
                    eprintln!(
                        "defender: made the state directory {} for uid {}",
                        state.dir.display(),
                        state.uid
                    );
                    Ok(())
                })
            });
            match installed {
                Ok(()) => ExitStatus::Success,
                Err(e) => {
                    eprintln!("defender: error: {e}");
                    ExitStatus::Failure
                }
            }
        }
    }
}

/// Prints what an embedding command made (stdout) and its warnings (stderr).
fn embedded(result: Result<embed::Output, embed::EmbedError>) -> ExitStatus {
    use std::io::Write;
    match result {
        Ok(out) => {
            for w in &out.warnings {
                eprintln!("defender: warn: {w}");
            }
            match std::io::stdout().write_all(out.text.as_bytes()) {
                Ok(()) => ExitStatus::Success,
                Err(e) => {
                    eprintln!("defender: error: writing the output: {e}");
                    ExitStatus::Failure
                }
            }
        }
        Err(e) => {
            eprintln!("defender: error: {e}");
            ExitStatus::Invalid
        }
    }
}

fn check(file: &Path) -> ExitStatus {
    match startup::load_policy(file) {
        Ok(p) => {
            for line in p.summary_lines() {
                println!("{line}");
            }
            ExitStatus::Success
        }
        Err(e) => {
            eprintln!("{e}");
            ExitStatus::Invalid
        }
    }
}

/// `defender policy import-prisma`: the document on stdout, what was not carried over on stderr
/// (one line each); exit 2 when an input cannot be read or is not of the vendor's shape.
fn import_prisma(file: &Path, custom_rules: Option<&Path>) -> ExitStatus {
    use policy::prisma::{self, Input};
    use std::io::Write;
    if custom_rules.is_some_and(|c| c.as_os_str() == "-") && file.as_os_str() == "-" {
        eprintln!(
            "defender: error: only one of FILE and --custom-rules can be `-` (standard input)"
        );
        return ExitStatus::Invalid;
    }
    let read = |path: &Path| {
        input::read(path).map_err(|e| eprintln!("defender: error: {}: {e}", input::shown(path)))
    };
    let Ok(text) = read(file) else {
        return ExitStatus::Invalid;
    };
    let custom_text = match custom_rules.map(read).transpose() {
        Ok(text) => text,
        Err(()) => return ExitStatus::Invalid,
    };
    match prisma::import(&text, custom_text.as_deref()) {
        Ok(imported) => {
            for line in &imported.reports {
                eprintln!("{line}");
            }
            match writeln!(std::io::stdout(), "{}", imported.document) {
                Ok(()) => ExitStatus::Success,
                Err(e) => {
                    eprintln!("defender: error: writing the output: {e}");
                    ExitStatus::Failure
                }
            }
        }
        // Not the input's fault: nothing is written rather than an invalid document.
        Err(e @ prisma::ImportError::Internal(_)) => {
            eprintln!("defender: error: {e}");
            ExitStatus::Failure
        }
        Err(e) => {
            let path = match e.input() {
                Input::Policy => file,
                Input::CustomRules => custom_rules.unwrap_or(file),
            };
            eprintln!("defender: error: {}: {e}", input::shown(path));
            ExitStatus::Invalid
        }
    }
}

/// `defender run`: the command's status, or why the defender could not start it (said before
/// the audits still on their way are delivered, which may take a while).
fn run(args: RunArgs) -> ExitStatus {
    // First, before any thread: a panic anywhere but in the firewall's containment ends the
    // defender and its workload (the release build unwinds, for that containment alone).
    supervisor::keeper::kill_workload_on_panic();
    logger::init(args.log_level.filter());
    let (config, uplink) = match startup::prepare(args) {
        Ok(prepared) => prepared,
        Err(e) => return failed(e),
    };
    let status = supervisor::run(config).unwrap_or_else(|e| failed(e.into()));
    startup::finish(uplink);
    status
}

fn failed(e: StartupError) -> ExitStatus {
    log::error!("{e}");
    e.exit_status()
}
