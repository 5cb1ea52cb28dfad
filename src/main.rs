//! The `recado` command: serve, demo, tokens and the load generator. Thin: parse, call the library, print.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context as _;
use clap::{Args, Parser, Subcommand};
use tokio::signal::unix::{Signal, SignalKind, signal};

use recado::app::Application;
use recado::config::{Overrides, Settings};
use recado::domain::{ClientSlug, Role, Timestamp};
use recado::store::Db;

#[derive(Parser)]
#[command(name = "recado", version, about = "A server for virtual assistants answering customers for many businesses")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the server.
    Serve(ServerArgs),
    /// Create the demo clients from kb/*/client.toml and demo tokens, print them, then serve.
    Demo {
        #[command(flatten)]
        server: ServerArgs,
        /// Directory of demo knowledge bases.
        #[arg(long, default_value = "kb")]
        kb: PathBuf,
        /// Also activate the example plugin chain (acknowledgement, router, escalation) for the first demo
        /// client, from this `example-plugins` directory (build the components first).
        #[arg(long)]
        plugins: Option<PathBuf>,
        /// Also play customers writing to every demo client over the next few minutes (WhatsApp webhooks,
        /// answered by a simulated WhatsApp provider on loopback).
        #[arg(long)]
        play: bool,
        /// Milliseconds between two played messages.
        #[arg(long, default_value_t = 6000, hide = true)]
        play_interval_ms: u64,
    },
    /// Manage API tokens (works whether or not the server runs).
    Token {
        #[command(subcommand)]
        command: TokenCommand,
    },
    /// Manage the people who sign in (works whether or not the server runs).
    Person {
        #[command(subcommand)]
        command: PersonCommand,
    },
    /// Print the response-time and workload report of a range, as `GET /api/v1/reports/summary` answers it
    /// (works whether or not the server runs).
    Report {
        /// From (inclusive): an RFC 3339 time or a date (UTC midnight). Default: 30 days before `--to`.
        #[arg(long)]
        from: Option<String>,
        /// To (exclusive): an RFC 3339 time or a date. Default: now.
        #[arg(long)]
        to: Option<String>,
        /// Only this client.
        #[arg(long)]
        client: Option<String>,
        /// Only this person's work: their email or id.
        #[arg(long)]
        assistant: Option<String>,
        /// How periods are cut (UTC; weeks from Monday).
        #[arg(long, value_enum, default_value = "day")]
        group_by: recado::reports::GroupBy,
        /// Print CSV instead of JSON.
        #[arg(long)]
        csv: bool,
        #[command(flatten)]
        store: StoreArgs,
    },
    /// Work with rule plugins.
    Plugin {
        #[command(subcommand)]
        command: PluginCommand,
    },
    /// Import or export knowledge bases as files (works whether or not the server runs).
    Kb {
        #[command(subcommand)]
        command: KbCommand,
    },
    /// Create the database's schema, or bring it up to this version (the server does too when it starts): for
    /// a new PostgreSQL database before any node starts, or to upgrade it once before restarting the nodes.
    Migrate {
        #[command(flatten)]
        store: StoreArgs,
    },
    /// Write the installation's whole database (clients, conversations, articles, plugins, decisions, people,
    /// tokens...) to a new file, to move it to another database with `recado import`. Reads the embedded SQLite
    /// database, from one snapshot; the file holds sealed channel secrets and password hashes and is created
    /// readable by its owner only.
    Export {
        /// The file to create (it must not exist).
        #[arg(long)]
        out: PathBuf,
        #[command(flatten)]
        store: StoreArgs,
    },
    /// Read a file written by `recado export` into a new, empty database (typically PostgreSQL: name it with
    /// --database-url), in one transaction, with the same secrets key. The data directory keeps its media.
    Import {
        /// The file `recado export` wrote.
        file: PathBuf,
        #[command(flatten)]
        store: StoreArgs,
    },
    /// Back up the installation, whether or not the server runs: a consistent copy of the database (plugin
    /// components included), the media it refers to and the settings, with a manifest of checksums, into a
    /// new directory. The search index and compiled plugins are not copied: a restore rebuilds them.
    Backup {
        /// The directory to create (it must not exist).
        #[arg(long)]
        to: PathBuf,
        /// Also copy the key that seals channel secrets (such a backup must be kept as safe as the key).
        #[arg(long)]
        include_secrets_key: bool,
        #[command(flatten)]
        store: StoreArgs,
    },
    /// Restore a backup into a new or empty data directory, after checking every file against its manifest.
    /// The next start rebuilds the search index and compiles the plugins again.
    Restore {
        /// The backup directory.
        #[arg(long)]
        from: PathBuf,
        /// The data directory to restore into (it must be empty or not exist).
        #[arg(long, required_unless_present = "check")]
        data_dir: Option<PathBuf>,
        /// Only check the backup (every file against its manifest, the database's integrity and contents)
        /// and write nothing: for copies kept elsewhere.
        #[arg(long, conflicts_with_all = ["data_dir", "secrets_key"])]
        check: bool,
        /// The key the backup's channel secrets were sealed with, when the backup does not hold it.
        #[arg(long)]
        secrets_key: Option<PathBuf>,
    },
    /// Measure suggestion relevance on a labelled set against two baselines (tantivy's default tokenizer with
    /// plain BM25, and SQLite FTS5).
    Eval {
        /// The knowledge bases.
        #[arg(long, default_value = "kb")]
        kb: PathBuf,
        /// The labelled messages (client<TAB>article<TAB>message).
        #[arg(long, default_value = "eval/queries.tsv")]
        queries: PathBuf,
        /// Also list recado's misses.
        #[arg(long)]
        misses: bool,
    },
    /// Measure knowledge-base import, indexing, size, memory and suggestion latency at scale.
    BenchKb(recado::tools::bench_kb::BenchArgs),
    /// Report benchmark: a year of a busy agency (two million messages), the yearly report timed.
    BenchReports(recado::tools::bench_reports::ReportBenchArgs),
    /// Backup benchmark: an agency's installation backed up stopped and under load, and restored.
    BenchBackup(recado::tools::bench_backup::BackupBenchArgs),
    /// Measure sustained ingest throughput and latency against a fresh server on loopback.
    Loadgen(recado::tools::loadgen::LoadgenArgs),
}

#[derive(Args, Clone)]
struct ServerArgs {
    /// TOML configuration file.
    #[arg(long)]
    config: Option<PathBuf>,
    /// Directory for the database (overrides storage.data_dir).
    #[arg(long)]
    data_dir: Option<PathBuf>,
    /// Address to listen on (overrides http.listen).
    #[arg(long)]
    listen: Option<SocketAddr>,
    /// The database (overrides database.url): `postgres://...` or `sqlite:///path/recado.db`. Prefer the
    /// environment (RECADO__DATABASE__URL) or the file for a URL with a password: others can read a
    /// command line.
    #[arg(long)]
    database_url: Option<String>,
}

impl ServerArgs {
    fn settings(&self) -> anyhow::Result<Settings> {
        let overrides = Overrides {
            listen: self.listen,
            data_dir: self.data_dir.clone(),
            database_url: self.database_url.clone().map(Into::into),
        };
        Ok(Settings::load(self.config.as_deref(), &overrides)?)
    }
}

#[derive(Args)]
struct StoreArgs {
    /// TOML configuration file.
    #[arg(long)]
    config: Option<PathBuf>,
    /// Directory of the database (overrides storage.data_dir).
    #[arg(long)]
    data_dir: Option<PathBuf>,
    /// The database (overrides database.url): `postgres://...` or `sqlite:///path/recado.db`.
    #[arg(long)]
    database_url: Option<String>,
}

impl StoreArgs {
    fn settings(&self) -> anyhow::Result<Settings> {
        let overrides = Overrides {
            listen: None,
            data_dir: self.data_dir.clone(),
            database_url: self.database_url.clone().map(Into::into),
        };
        Ok(Settings::load(self.config.as_deref(), &overrides)?)
    }
}

#[derive(Subcommand)]
enum PluginCommand {
    /// Run fixture messages through a plugin with the server's engine and limits, and compare its decisions
    /// with the expected ones. Exits 1 if any case does not match.
    Test {
        /// The plugin component (.wasm).
        plugin: PathBuf,
        /// The installation's configuration (a JSON file).
        #[arg(long)]
        config: Option<PathBuf>,
        /// The fixture file (TOML).
        #[arg(long)]
        fixtures: PathBuf,
        /// The server's configuration file, whose plugin limits the cases run under (default: the
        /// built-in settings and `RECADO__PLUGINS__*` variables, as `recado serve` would use).
        #[arg(long)]
        server_config: Option<PathBuf>,
        /// Limits an admin granted the client, as its profile's `plugin_limits` shows them (JSON, e.g.
        /// `{"memory_bytes": 67108864}`): the cases run under those instead of the server's defaults.
        #[arg(long, value_name = "JSON")]
        limits: Option<String>,
        /// Print the results as one JSON document (for CI) instead of lines.
        #[arg(long)]
        json: bool,
    },
    /// Make a rule-plugin project in another language: the template's rules, a build script that installs
    /// the language's component tool by package name, the contract's WIT, and a configuration and fixtures
    /// the rules pass.
    New {
        /// The language.
        #[arg(value_parser = ["rust", "python", "javascript", "c"])]
        language: String,
        /// The directory to create (it must not hold anything yet).
        dir: PathBuf,
    },
    /// Internal: compile a component read from stdin into stdout, under the given limits. The server runs
    /// this in a separate process for every upload.
    #[command(hide = true)]
    CompileWorker {
        /// Address-space limit.
        #[arg(long)]
        memory_bytes: u64,
        /// CPU-time limit.
        #[arg(long)]
        cpu_seconds: u64,
    },
}

#[derive(Subcommand)]
enum KbCommand {
    /// Create or update clients and articles from DIR/<client>/client.toml and DIR/<client>/articles/*.md.
    /// Every file is checked first; if any is broken, nothing is written.
    Import {
        /// The directory holding one directory per client.
        dir: PathBuf,
        #[command(flatten)]
        store: StoreArgs,
    },
    /// Rebuild the search index from the articles in the database (the server must be stopped; it also
    /// rebuilds by itself when the index is missing, damaged or from another version).
    Reindex {
        #[command(flatten)]
        store: StoreArgs,
    },
    /// Write every client's profile and articles under DIR, in the form `kb import` reads.
    Export {
        /// The directory to write into (created if needed).
        dir: PathBuf,
        #[command(flatten)]
        store: StoreArgs,
    },
}

#[derive(Subcommand)]
enum PersonCommand {
    /// Create a person. Without --password-stdin a password is generated and printed, alone, on stdout.
    Create {
        /// The address they sign in with (unique, whatever its case).
        #[arg(long)]
        email: String,
        /// Their name, as shown to others.
        #[arg(long)]
        name: String,
        /// admin, assistant or client.
        #[arg(long)]
        role: String,
        /// The client a client person belongs to.
        #[arg(long)]
        client: Option<String>,
        /// Read the password from standard input (one line).
        #[arg(long)]
        password_stdin: bool,
        #[command(flatten)]
        store: StoreArgs,
    },
    /// Set a person's password (read from standard input with --password-stdin, else generated and printed).
    SetPassword {
        /// The address they sign in with.
        #[arg(long)]
        email: String,
        /// Read the password from standard input (one line).
        #[arg(long)]
        password_stdin: bool,
        #[command(flatten)]
        store: StoreArgs,
    },
    /// Set the clients an assistant serves (replacing those she served); without --client she serves none.
    Assign {
        /// The address she signs in with.
        #[arg(long)]
        email: String,
        /// A client she serves (repeat for several).
        #[arg(long = "client")]
        clients: Vec<String>,
        #[command(flatten)]
        store: StoreArgs,
    },
    /// Disable a person: they can no longer sign in.
    Disable {
        /// The address they sign in with.
        #[arg(long)]
        email: String,
        #[command(flatten)]
        store: StoreArgs,
    },
}

#[derive(Subcommand)]
enum TokenCommand {
    /// Create a token and print it (only the token, on stdout): an integration's (`--role`) or one that acts
    /// as a person (`--person`).
    Create {
        /// admin, assistant or client: the role of an integration's token.
        #[arg(long, required_unless_present = "person", conflicts_with = "person")]
        role: Option<String>,
        /// The client a client token belongs to.
        #[arg(long, conflicts_with = "person")]
        client: Option<String>,
        /// The email of the person the token acts as (with their role and clients).
        #[arg(long)]
        person: Option<String>,
        /// A label: the integration's purpose, or what the person uses it for.
        #[arg(long, default_value = "")]
        name: String,
        #[command(flatten)]
        store: StoreArgs,
    },
    /// Revoke a token, given its id or the whole token.
    Revoke {
        /// The token id (the part after `rcd_` up to the next `_`) or the whole token.
        token: String,
        #[command(flatten)]
        store: StoreArgs,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    if let Command::Plugin { command: PluginCommand::CompileWorker { memory_bytes, cpu_seconds } } = &cli.command {
        return match recado::plugins::compile::run_worker(*memory_bytes, *cpu_seconds) {
            Ok(code) => code,
            Err(error) => {
                eprintln!("recado compile-worker: {error:#}");
                ExitCode::from(3)
            }
        };
    }
    if let Command::Plugin { command: PluginCommand::New { language, dir } } = &cli.command {
        return match plugin_new(language, dir) {
            Ok(()) => ExitCode::SUCCESS,
            Err(error) => {
                eprintln!("recado: {error:#}");
                ExitCode::from(2)
            }
        };
    }
    if let Command::Plugin { command: PluginCommand::Test { plugin, config, fixtures, server_config, limits, json } } =
        &cli.command
    {
        // Synchronous: no server, no runtime needed.
        let server = StoreArgs { config: server_config.clone(), data_dir: None, database_url: None };
        return match plugin_test(plugin, config.as_deref(), fixtures, &server, limits.as_deref(), *json) {
            Ok(true) => ExitCode::SUCCESS,
            Ok(false) => ExitCode::from(1),
            Err(error) => {
                eprintln!("recado: {error:#}");
                ExitCode::from(2)
            }
        };
    }
    // Synchronous file and database work: no runtime needed.
    match &cli.command {
        Command::Backup { to, include_secrets_key, store } => {
            return exit_code(backup(to, *include_secrets_key, store));
        }
        Command::Restore { from, check: true, .. } => return exit_code(check_backup(from)),
        Command::Restore { from, data_dir: Some(data_dir), secrets_key, .. } => {
            return exit_code(restore(from, data_dir, secrets_key.clone()));
        }
        _ => {}
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("recado: cannot start the runtime: {error}");
            return ExitCode::from(2);
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("recado: {error:#}");
            ExitCode::from(2)
        }
    }
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Serve(args) => {
            recado::telemetry::init("info");
            let app = Application::build(args.settings()?).await?;
            let signals = Signals::install()?;
            println!("listening on http://{}", app.local_addr());
            serve(app, signals).await
        }
        Command::Demo { server, kb, plugins, play, play_interval_ms } => {
            use recado::tools::play as player;
            recado::telemetry::init("info");
            let mut settings = server.settings()?;
            // The played replies go to the simulated provider on loopback.
            settings.outbox.allow_private_targets |= play;
            let app = Application::build(settings).await?;
            let (clients, tokens) = recado::tools::demo::seed(&app.db(), &kb).await?;
            if let (Some(dir), Some(first)) = (&plugins, clients.first()) {
                recado::tools::demo::install_example_chain(&app.rules(), &app.db(), first, dir).await?;
                println!("example plugin chain active for {first}");
            }
            let signals = Signals::install()?;
            let url = format!("http://{}", app.local_addr());
            println!("listening on {url}");
            print!("{}", recado::tools::demo::banner(&url, &clients, &tokens));
            if play {
                let provider = player::start_provider().await?;
                let secrets = player::connect(&app.db(), &clients, &provider).await?;
                let script = player::script(&app.db(), &clients, 6).await?;
                let every = std::time::Duration::from_millis(play_interval_ms);
                let minutes = (every * u32::try_from(script.len()).unwrap_or(u32::MAX)).as_secs().div_ceil(60);
                println!("playing {} customer messages over about {minutes} min", script.len());
                tokio::spawn(async move {
                    match player::play(&url, &clients, &secrets, &script, every).await {
                        Ok(count) => println!("played {count} customer messages"),
                        Err(error) => eprintln!("the demo's play stopped: {error:#}"),
                    }
                });
            }
            serve(app, signals).await
        }
        Command::Token { command } => token(command).await,
        Command::Person { command } => person(command).await,
        Command::Kb { command } => kb(command).await,
        Command::Migrate { store } => {
            let db = open_store(&store).await?;
            let backend = if db.is_postgres() { "PostgreSQL" } else { "SQLite" };
            println!("{backend} schema at version {}", recado::store::snapshot::schema_version());
            db.close().await;
            Ok(())
        }
        Command::Export { out, store } => {
            let db = open_store(&store).await?;
            let moved = db.export(out.clone()).await.with_context(|| format!("exporting to {}", out.display()));
            db.close().await;
            let moved = moved?;
            println!("exported {} rows of {} tables to {}", moved.rows, moved.tables, out.display());
            Ok(())
        }
        Command::Import { file, store } => {
            let db = open_store(&store).await?;
            let moved = db.import(file.clone()).await.with_context(|| format!("importing {}", file.display()));
            db.close().await;
            let moved = moved?;
            println!("imported {} rows of {} tables from {}", moved.rows, moved.tables, file.display());
            Ok(())
        }
        Command::Report { from, to, client, assistant, group_by, csv, store } => {
            let (from, to) = recado::reports::range_from_text(from.as_deref(), to.as_deref(), Timestamp::now())
                .map_err(|error| anyhow::anyhow!("--{}: {}", error.field, error.message))?;
            let client = client
                .map(|slug| ClientSlug::parse(&slug))
                .transpose()
                .map_err(|error| anyhow::anyhow!("--client: {}", error.message))?;
            let db = open_store(&store).await?;
            let report = async {
                let assistant = match assistant {
                    Some(text) => {
                        let who = recado::store::PersonRef::parse(&text)
                            .map_err(|error| anyhow::anyhow!("--assistant: {}", error.message))?;
                        Some(db.person(who).await.context("--assistant")?.id.to_string())
                    }
                    None => None,
                };
                let range = recado::store::ReportRange { from, to, client, assistant };
                anyhow::Ok(recado::reports::summary(&db, recado::store::Scope::All, range, group_by).await?)
            }
            .await;
            db.close().await;
            let report = report?;
            if csv {
                print!("{}", recado::reports::to_csv(&report));
            } else {
                println!("{}", serde_json::to_string_pretty(&report)?);
            }
            Ok(())
        }
        Command::Plugin { .. } | Command::Backup { .. } | Command::Restore { .. } => {
            unreachable!("handled before the runtime starts")
        }
        Command::Eval { kb, queries, misses } => {
            recado::telemetry::init("warn");
            let labelled = recado::tools::eval::read_labelled(&queries)?;
            let report = recado::tools::eval::run(&kb, &labelled).await?;
            println!("{report}");
            if misses {
                for (item, first) in report.misses.get("recado").into_iter().flatten() {
                    println!(
                        "miss: {} {:?}: expected {}, got {}",
                        item.client,
                        item.text,
                        item.expected,
                        first.as_deref().unwrap_or("nothing")
                    );
                }
            }
            Ok(())
        }
        Command::BenchReports(args) => {
            recado::telemetry::init("warn");
            let report = recado::tools::bench_reports::run(args).await?;
            println!("{report}");
            Ok(())
        }
        Command::BenchBackup(args) => {
            recado::telemetry::init("warn");
            let report = recado::tools::bench_backup::run(args).await?;
            println!("{report}");
            Ok(())
        }
        Command::BenchKb(args) => {
            recado::telemetry::init("warn");
            let report = recado::tools::bench_kb::run(args).await?;
            println!("{report}");
            Ok(())
        }
        Command::Loadgen(args) => {
            recado::telemetry::init("warn");
            if args.burst.is_some() {
                println!("{}", recado::tools::loadgen::run_burst(args).await?);
            } else {
                println!("{}", recado::tools::loadgen::run(args).await?);
            }
            Ok(())
        }
    }
}

/// `recado plugin new`: writes the project and says what to do next.
fn plugin_new(language: &str, dir: &std::path::Path) -> anyhow::Result<()> {
    use recado::plugins::templates::{Language, create};
    let language = Language::parse(language).ok_or_else(|| anyhow::anyhow!("no template for {language}"))?;
    let written = create(language, dir)?;
    println!("wrote {} files into {}", written.len(), dir.display());
    println!("next: cd {} && ./build.sh", dir.display());
    println!("then: recado plugin test plugin.wasm --config config.json --fixtures fixtures.toml");
    Ok(())
}

/// `recado plugin test`: returns whether every case passed.
fn plugin_test(
    plugin: &std::path::Path,
    config: Option<&std::path::Path>,
    fixtures: &std::path::Path,
    server: &StoreArgs,
    granted: Option<&str>,
    json: bool,
) -> anyhow::Result<bool> {
    // The server's limits (its configuration file and RECADO__PLUGINS__* variables), with what the client
    // was granted: what passes here passes there.
    let settings = server.settings()?;
    let granted: recado::domain::PluginLimits = match granted {
        Some(json) => serde_json::from_str(json).context("--limits")?,
        None => recado::domain::PluginLimits::default(),
    };
    granted.validate().context("--limits")?;
    recado::plugins::ClientLimits::check(&settings.plugins, &granted).context("--limits")?;
    let limits = recado::plugins::ClientLimits::of(&settings.plugins, &granted).call;
    // The engine as the server builds it (room for any client's grant), so a component too big for the
    // limits fails its calls here as it would there, instead of failing to load.
    let room = settings.plugins.per_client_max.memory_bytes;
    let results = recado::plugins::fixtures::run_files(plugin, config, fixtures, limits, room)?;
    let failed = results.iter().filter(|result| !result.passed()).count();
    if json {
        let report = serde_json::json!({ "passed": results.len() - failed, "failed": failed, "cases": results });
        println!("{report:#}");
        return Ok(failed == 0);
    }
    for result in &results {
        println!("{}  {} ({})", if result.passed() { "ok  " } else { "FAIL" }, result.name, result.summary);
        println!(
            "      cost: {:.2} M of {} M fuel, {:.2} ms of {} ms, {:.1} MiB of {} MiB memory",
            result.fuel as f64 / 1e6,
            result.fuel_limit / 1_000_000,
            result.duration_us as f64 / 1e3,
            result.deadline_us / 1_000,
            result.memory as f64 / f64::from(1 << 20),
            result.memory_limit >> 20,
        );
        for mismatch in &result.mismatches {
            println!("      {mismatch}");
        }
        for warning in &result.warnings {
            println!("      warning: {warning}");
        }
    }
    let warned = results.iter().filter(|result| !result.warnings.is_empty()).count();
    println!("{} passed, {failed} failed, {warned} near a limit", results.len() - failed);
    Ok(failed == 0)
}

/// SIGINT and SIGTERM listeners, registered before the server announces itself so a signal sent right
/// after the announcement is never missed.
struct Signals {
    interrupt: Signal,
    terminate: Signal,
}

impl Signals {
    fn install() -> anyhow::Result<Self> {
        Ok(Self {
            interrupt: signal(SignalKind::interrupt()).context("listening for SIGINT")?,
            terminate: signal(SignalKind::terminate()).context("listening for SIGTERM")?,
        })
    }

    async fn recv(mut self) {
        tokio::select! {
            _ = self.interrupt.recv() => {}
            _ = self.terminate.recv() => {}
        }
    }
}

/// Serves until SIGINT or SIGTERM.
async fn serve(app: Application, signals: Signals) -> anyhow::Result<()> {
    let shutdown = app.shutdown_token();
    tokio::spawn(async move {
        signals.recv().await;
        tracing::info!("shutdown requested");
        shutdown.cancel();
    });
    app.run_until_stopped().await
}

/// Opens the store named by the flags, from a command-line process (SQLite's WAL lets it share the file with
/// a running server).
fn exit_code(result: anyhow::Result<()>) -> ExitCode {
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("recado: {error:#}");
            ExitCode::from(2)
        }
    }
}

fn backup(to: &std::path::Path, include_secrets_key: bool, store: &StoreArgs) -> anyhow::Result<()> {
    recado::telemetry::init("warn");
    let settings = store.settings()?;
    let options = recado::backup::BackupOptions { include_secrets_key };
    let taken = recado::backup::take_gently(&settings, to, &options)?;
    let manifest = &taken.manifest;
    let counts = &manifest.counts;
    println!(
        "backup written to {} in {:.1} s: {} bytes, schema {}, {} clients, {} messages, {} articles, {} plugin versions, {} media files",
        taken.path.display(),
        taken.elapsed.as_secs_f64(),
        taken.bytes,
        manifest.schema_version,
        counts.clients,
        counts.messages,
        counts.articles,
        counts.plugins,
        manifest.files.iter().filter(|file| file.path.starts_with("blobs/")).count(),
    );
    let secrets = &manifest.secrets;
    if secrets.sealed_channels > 0 && !secrets.key_included {
        println!(
            "the key that seals {} channel(s)' secrets is not in the backup: keep a copy of {} apart (key id {}); a restore needs it",
            secrets.sealed_channels,
            settings.storage.secrets_key_path().display(),
            secrets.key_id.as_deref().unwrap_or("unknown"),
        );
    }
    if !manifest.missing_blobs.is_empty() || !manifest.damaged_blobs.is_empty() {
        println!(
            "{} media file(s) were missing and {} damaged (listed in the manifest); the rest is whole",
            manifest.missing_blobs.len(),
            manifest.damaged_blobs.len()
        );
    }
    Ok(())
}

fn check_backup(from: &std::path::Path) -> anyhow::Result<()> {
    recado::telemetry::init("warn");
    let (manifest, restorable) = recado::backup::check(from)?;
    println!(
        "the backup of {} (recado {}, schema {}) is whole: {} files match the manifest; {} clients, {} messages, {} articles, {} plugin versions",
        manifest.created_at,
        manifest.recado_version,
        manifest.schema_version,
        manifest.files.len(),
        manifest.counts.clients,
        manifest.counts.messages,
        manifest.counts.articles,
        manifest.counts.plugins,
    );
    if !restorable {
        anyhow::bail!(
            "its schema is newer than this recado knows: restore it with recado {} or newer",
            manifest.recado_version
        );
    }
    Ok(())
}

fn restore(from: &std::path::Path, data_dir: &std::path::Path, secrets_key: Option<PathBuf>) -> anyhow::Result<()> {
    recado::telemetry::init("warn");
    let options = recado::backup::RestoreOptions { secrets_key };
    let restored = recado::backup::restore(from, data_dir, &options)?;
    let manifest = &restored.manifest;
    println!(
        "restored the backup of {} (recado {}, schema {}) into {}: {} clients, {} messages, {} articles, {} plugin versions",
        manifest.created_at,
        manifest.recado_version,
        manifest.schema_version,
        data_dir.display(),
        manifest.counts.clients,
        manifest.counts.messages,
        manifest.counts.articles,
        manifest.counts.plugins,
    );
    if restored.key_restored {
        println!("the secrets key is in {}", data_dir.join("secrets.key").display());
    }
    println!(
        "next: start recado with --data-dir {} (it rebuilds the search index and compiles the plugins); the settings in force at backup time are in {}",
        data_dir.display(),
        from.join("config.toml").display()
    );
    Ok(())
}

async fn open_store(store: &StoreArgs) -> anyhow::Result<Db> {
    let settings = store.settings()?;
    Db::connect(&settings.storage, &settings.database).await.context("opening the store")
}

async fn kb(command: KbCommand) -> anyhow::Result<()> {
    match command {
        KbCommand::Import { dir, store } => {
            let db = open_store(&store).await?;
            // Drawn only when stderr is a terminal; indicatif hides itself otherwise.
            let bar = indicatif::ProgressBar::new(0).with_style(
                indicatif::ProgressStyle::with_template("{bar:30} {pos}/{len} files {msg}")
                    .context("progress style")?,
            );
            let result = recado::kb::import_dir(&db, &dir, "cli", |slug, files| {
                bar.inc_length(files as u64);
                bar.inc(files as u64);
                bar.set_message(slug.to_string());
            })
            .await;
            bar.finish_and_clear();
            let summaries = result?;
            print!("{}", recado::kb::files::import_report(&summaries));
            db.close().await;
            Ok(())
        }
        KbCommand::Reindex { store } => {
            let settings = store.settings()?;
            let db = open_store(&store).await?;
            let index = recado::kb::SearchIndex::open(&settings.storage.index_path(), &settings.search, &db).await?;
            let count = index.rebuild(&db).await?;
            println!("indexed {count} articles");
            drop(index);
            db.close().await;
            Ok(())
        }
        KbCommand::Export { dir, store } => {
            let db = open_store(&store).await?;
            let written = recado::kb::export_dir(&db, &dir).await?;
            eprintln!("wrote {written} files under {}", dir.display());
            db.close().await;
            Ok(())
        }
    }
}

/// The `--role` and `--client` flags of `recado token` and `recado person`.
fn role_and_client(role: &str, client: Option<String>) -> anyhow::Result<(Role, Option<ClientSlug>)> {
    let role: Role =
        role.parse().map_err(|error: recado::domain::Invalid| anyhow::anyhow!("--role: {}", error.message))?;
    let client = client
        .map(|slug| ClientSlug::parse(&slug))
        .transpose()
        .map_err(|error| anyhow::anyhow!("--client: {}", error.message))?;
    Ok((role, client))
}

/// The password for `recado person`: one line of standard input, or a generated one that is printed.
fn chosen_password(from_stdin: bool) -> anyhow::Result<(String, bool)> {
    if !from_stdin {
        return Ok((recado::people::generate_password(), true));
    }
    let mut line = String::new();
    std::io::stdin().read_line(&mut line).context("reading the password from standard input")?;
    let password = line.trim_end_matches(['\n', '\r']).to_owned();
    recado::people::check_password(&password).map_err(|error| anyhow::anyhow!("the password {}", error.message))?;
    Ok((password, false))
}

/// Hashes a password off the async threads (it is slow on purpose).
async fn hashed(password: String) -> anyhow::Result<String> {
    tokio::task::spawn_blocking(move || recado::people::hash_password(&password)).await?
}

async fn person(command: PersonCommand) -> anyhow::Result<()> {
    let email =
        |text: &str| recado::domain::Email::parse(text).map_err(|error| anyhow::anyhow!("--email: {}", error.message));
    match command {
        PersonCommand::Create { email: address, name, role, client, password_stdin, store } => {
            let (role, client) = role_and_client(&role, client)?;
            let name = recado::domain::parse_text("--name", &name, 200).map_err(|e| anyhow::anyhow!("{e}"))?;
            let (password, generated) = chosen_password(password_stdin)?;
            let person = recado::store::NewPerson {
                email: email(&address)?,
                name,
                role,
                client,
                password_hash: hashed(password.clone()).await?,
            };
            let db = open_store(&store).await?;
            let created = db.create_person(person, "cli".into()).await.context("creating the person");
            db.close().await;
            let created = created?;
            if generated {
                println!("{password}");
            }
            eprintln!("created {} ({}, {})", created.email, created.role, created.id);
            Ok(())
        }
        PersonCommand::SetPassword { email: address, password_stdin, store } => {
            let (password, generated) = chosen_password(password_stdin)?;
            let hash = hashed(password.clone()).await?;
            let db = open_store(&store).await?;
            let who = recado::store::PersonRef::Email(email(&address)?);
            let updated = db.set_password(who, hash, "cli".into(), None).await.context("setting the password");
            db.close().await;
            let updated = updated?;
            if generated {
                println!("{password}");
            }
            eprintln!("password set for {}", updated.email);
            Ok(())
        }
        PersonCommand::Assign { email: address, clients, store } => {
            let clients = clients
                .iter()
                .map(|slug| ClientSlug::parse(slug))
                .collect::<Result<Vec<_>, _>>()
                .map_err(|error| anyhow::anyhow!("--client: {}", error.message))?;
            let db = open_store(&store).await?;
            let served = async {
                let person = db.person(recado::store::PersonRef::Email(email(&address)?)).await?;
                anyhow::Ok(db.set_served_clients(person.id, clients, "cli".into()).await?)
            }
            .await
            .context("assigning the clients");
            db.close().await;
            let served: Vec<String> = served?.iter().map(ToString::to_string).collect();
            eprintln!(
                "{address} serves: {}",
                if served.is_empty() { "no client".to_owned() } else { served.join(", ") }
            );
            Ok(())
        }
        PersonCommand::Disable { email: address, store } => {
            let db = open_store(&store).await?;
            let who = recado::store::PersonRef::Email(email(&address)?);
            let disabled = db.disable_person(who, "cli".into()).await.context("disabling the person");
            db.close().await;
            eprintln!("disabled {}", disabled?.email);
            Ok(())
        }
    }
}

async fn token(command: TokenCommand) -> anyhow::Result<()> {
    let open = open_store;
    match command {
        TokenCommand::Create { role, client, person, name, store } => {
            let created = if let Some(email) = person {
                let email = recado::domain::Email::parse(&email)?;
                let db = open(&store).await?;
                let name = if name.is_empty() { "command line".to_owned() } else { name };
                let created = db.create_person_token(recado::store::PersonRef::Email(email), name, "cli".into()).await;
                (db, created)
            } else {
                let (role, client) = role_and_client(role.as_deref().unwrap_or_default(), client)?;
                let db = open(&store).await?;
                let name = if name.is_empty() { format!("{role} token") } else { name };
                let created = db.create_token(role, client, name).await;
                (db, created)
            };
            let (db, created) = created;
            let created = created.context("creating the token")?;
            println!("{}", created.token);
            db.close().await;
            Ok(())
        }
        TokenCommand::Revoke { token, store } => {
            let db = open(&store).await?;
            let record = db.revoke_token(token).await.context("revoking the token")?;
            eprintln!("revoked token {} ({}, {})", record.id, record.role, record.name);
            db.close().await;
            Ok(())
        }
    }
}
