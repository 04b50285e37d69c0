//! The `sipedge` binary: command-line entry points. Each subcommand lives in its own module; the
//! edge itself is in `edge-core`, the decisions in `federation-policy`.

mod check_config;
mod config;
mod decode;
mod dns_lookups;
mod explain_route;
mod exporter;
mod fd_limit;
mod health;
mod known_servers;
mod log;
mod pool;
mod push_probe;
mod reload;
mod reload_diff;
mod run;
mod send;
mod sip_client;
mod status;
mod test_push;
mod watch;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// mimalloc instead of glibc malloc: the profile under load put ~10 % of the edge's CPU in
/// malloc/free (per-worker arenas growing with `mprotect`, consolidation); measured side by side with
/// `benches/compare.sh` (README, Performance).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Gives the calling thread's free mimalloc pages back to the operating system. mimalloc keeps the
/// pages a thread freed for that thread's reuse and returns them only when the thread next
/// allocates and collects; a worker that goes idle after a load never does, and in the 10-minute
/// soak the edge stayed 32 % above its idle size a minute after the load stopped (README,
/// Performance). The shell calls this on each worker's own thread once it has been idle a second
/// after work (`ShellSettings::idle_hook`).
#[allow(unsafe_code)]
pub(crate) fn return_free_memory() {
    // SAFETY: `mi_collect` is a plain C function of the allocator this binary links and uses as
    // its global allocator. It takes no pointer and returns nothing; it walks only the calling
    // thread's own heap and segment cache and releases pages that hold no live allocation, so no
    // memory the program still uses is touched. mimalloc documents it as safe to call from any
    // thread at any time (`mi_attr_noexcept`: it cannot unwind into Rust).
    unsafe { libmimalloc_sys::mi_collect(true) }
}

#[derive(Debug, Parser)]
#[command(
    name = "sipedge",
    version,
    about = "SIP federation Access Edge",
    max_term_width = 100
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the edge: the internal and external SIP/TLS listeners.
    ///
    /// Without --config, an embedded local-only default (loopback; a local CA, edge and client
    /// certificates generated on first start in the state directory, printed as `local pki <dir>`).
    Run {
        /// The TOML configuration file (SIPEDGE__SECTION__KEY environment overrides apply).
        #[arg(long)]
        config: Option<PathBuf>,
        /// Write the process id to this file (for `sipedge reload --pid-file`); none by default.
        #[arg(long)]
        pid_file: Option<PathBuf>,
        /// Reload when the configuration file or a certificate, key or CA file it loaded changes
        /// (a Kubernetes ConfigMap/Secret update, a rotated certificate), exactly as on SIGHUP.
        #[arg(long, requires = "config")]
        watch: bool,
    },
    /// Ask a running edge to reload its configuration (SIGHUP).
    ///
    /// The same as `kill -HUP <pid>`, for a pid that is a running `sipedge run` only (anything else
    /// is refused, exit 1). The edge logs `reload_applied` (with the new generation) or
    /// `reload_failed` with every error, keeping the running configuration.
    Reload {
        /// The edge's process id.
        #[arg(long, conflicts_with = "pid_file", required_unless_present = "pid_file")]
        pid: Option<i32>,
        /// The file `sipedge run --pid-file` wrote.
        #[arg(long)]
        pid_file: Option<PathBuf>,
    },
    /// Print every step of the federation decision for DOMAIN, with real DNS lookups.
    ///
    /// Ends with the verdict and its diagnostic; exit 0 when routable, 1 when not.
    ExplainRoute {
        /// The partner domain, e.g. partner.example or push.lync.com.
        domain: String,
        /// The TOML configuration file.
        #[arg(long)]
        config: PathBuf,
    },
    /// Send one request to an edge as a known server (mutual TLS) and print the answer.
    ///
    /// Mutual TLS; each response's status line with its diagnostics. Exit 0 on 2xx, 1 on another
    /// final response, 2 on none. Without flags: a client of `sipedge run` without --config, using
    /// its local PKI; with --config: a client of the edge that file configures.
    Send(send::Args),
    /// Send a test push through a running edge (after Test-CsMcxPushNotification).
    ///
    /// Prints TargetFqdn / Result / Latency / Error / Diagnosis; exit 0 on success, 1 on failure.
    /// Without flags: a client of `sipedge run` without --config, using its local PKI.
    TestPush(test_push::Args),
    /// Ask a running edge's /healthz: a container health check that needs no curl.
    ///
    /// Exit 0 on 200, 1 on another HTTP answer (not healthy), 2 when nothing answered. Asks
    /// --url, else metrics.listen of --config, else the embedded default's.
    Health(health::Args),
    /// Read one SIP message on stdin (as one datagram carries it) and print it as JSON.
    ///
    /// Exit 0 when it decoded; 1 when not — the input is not a message the edge would accept (the
    /// JSON is then `{"error": "..."}`, naming the header at fault) or stdin cannot be read.
    Decode,
    /// Validate a configuration file: print every warning and error.
    ///
    /// With SIPEDGE__SECTION__KEY environment overrides, as `run` reads it. Exit 0 when valid, 1
    /// when not.
    CheckConfig {
        /// The TOML configuration file.
        #[arg(required_unless_present = "embedded_default")]
        file: Option<PathBuf>,
        /// Check the configuration compiled into the binary (used by `run` without --config).
        #[arg(long, conflicts_with = "file")]
        embedded_default: bool,
    },
}

fn main() -> ExitCode {
    // A panic writes what the log queue holds first, so its message comes after the lines before it.
    let default_hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        edge_core::shell::log::flush(std::time::Duration::from_secs(1));
        default_hook(info);
    }));
    let cli = Cli::parse();
    let code = match cli.command {
        Command::Run {
            config,
            pid_file,
            watch,
        } => run::run(config.as_deref(), pid_file.as_deref(), watch),
        Command::Reload { pid, pid_file } => reload::send_hup(pid, pid_file.as_deref()),
        Command::ExplainRoute { domain, config } => explain_route::run(&domain, &config),
        Command::Send(args) => send::run(&args),
        Command::TestPush(args) => test_push::run(&args),
        Command::Health(args) => health::run(&args),
        Command::Decode => decode::run(),
        Command::CheckConfig { file, .. } => check_config::run(file.as_deref()),
    };
    // Every log line queued before the exit is written (the log thread would die with the process).
    edge_core::shell::log::flush(std::time::Duration::from_secs(2));
    code
}
