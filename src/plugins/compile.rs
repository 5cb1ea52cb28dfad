//! Compiling uploaded components in a separate process of our own binary.
//!
//! Compiling untrusted WebAssembly is not bounded by anything wasmtime promises (a 1.5 MiB single-function
//! module took Cranelift 20 s here, and wasmtime does not treat slow compiles as security bugs), so the
//! server never compiles uploads itself. It starts `recado plugin compile-worker`, which limits its own
//! address space and CPU time before reading a byte, compiles with the server's engine settings and writes
//! wasmtime's precompiled form to stdout; the server kills it past a wall-clock timeout. A crash, a
//! limit or a timeout there costs the server nothing.
//!
//! The result goes to the compile cache ([`CompileCache`]), keyed by the component's SHA-256 and the
//! engine's compatibility key, so a restart loads it in a fraction of a millisecond instead of compiling
//! again, and a wasmtime upgrade recompiles from the original bytes kept in the store.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use sha2::{Digest, Sha256};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::{LoadError, engine_config};

/// How the compiler process is started and bounded.
#[derive(Debug, Clone)]
pub struct CompilerSettings {
    /// The program (our own binary) and the arguments that precede the worker's.
    pub program: PathBuf,
    /// Wall-clock limit; the process is killed past it.
    pub timeout: Duration,
    /// Address-space limit of the process.
    pub memory_bytes: u64,
}

/// Exit status of the worker when the compiler refused the bytes (as opposed to crashing or being killed).
const REFUSED: i32 = 2;

/// Compiles `wasm` in a compiler process. Returns wasmtime's precompiled form.
///
/// # Errors
/// The compiler refused the bytes, crashed, ran out of its limits or of time.
pub async fn compile_isolated(wasm: &[u8], settings: &CompilerSettings) -> Result<Vec<u8>, LoadError> {
    let cpu_seconds = settings.timeout.as_secs().saturating_add(1);
    let mut child = tokio::process::Command::new(&settings.program)
        .args(["plugin", "compile-worker", "--memory-bytes"])
        .arg(settings.memory_bytes.to_string())
        .arg("--cpu-seconds")
        .arg(cpu_seconds.to_string())
        // Nothing of the server's environment (secrets, tokens) reaches the process that reads hostile bytes.
        .env_clear()
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .map_err(|error| {
            LoadError::Compile(format!("could not start the compiler {}: {error}", settings.program.display()))
        })?;
    let mut stdin = child.stdin.take().ok_or_else(|| LoadError::Compile("compiler has no stdin".into()))?;
    let mut stdout = child.stdout.take().ok_or_else(|| LoadError::Compile("compiler has no stdout".into()))?;
    let mut stderr = child.stderr.take().ok_or_else(|| LoadError::Compile("compiler has no stderr".into()))?;
    let input = wasm.to_vec();
    let work = async move {
        // Feed and drain at once: a compiler blocked on a full stdout pipe must not deadlock us.
        let feed = async move {
            let written = stdin.write_all(&input).await;
            drop(stdin);
            written
        };
        let mut output = Vec::new();
        let mut said = Vec::new();
        let mut stderr = (&mut stderr).take(16 * 1024);
        let (fed, read, _) = tokio::join!(feed, stdout.read_to_end(&mut output), stderr.read_to_end(&mut said));
        let status = child.wait().await;
        (fed, read, status, output, said)
    };
    let Ok((fed, read, status, output, said)) = tokio::time::timeout(settings.timeout, work).await else {
        // Dropping the future dropped the child, and `kill_on_drop` killed it.
        return Err(LoadError::CompileTimeout(u64::try_from(settings.timeout.as_millis()).unwrap_or(u64::MAX)));
    };
    let said = String::from_utf8_lossy(&said).trim().chars().take(1_000).collect::<String>();
    let status = status.map_err(|error| LoadError::Compile(format!("waiting for the compiler: {error}")))?;
    if status.success() {
        // A process that exits 0 after failing to read or write is a bug of ours, not of the upload.
        fed.and(read).map_err(|error| LoadError::Compile(format!("talking to the compiler: {error}")))?;
        if output.is_empty() {
            return Err(LoadError::Compile("the compiler produced nothing".into()));
        }
        return Ok(output);
    }
    use std::os::unix::process::ExitStatusExt;
    Err(match (status.code(), status.signal()) {
        (Some(REFUSED), _) => LoadError::Compile(said),
        (_, Some(signal)) => LoadError::Compile(format!(
            "the compiler was stopped by signal {signal} (it ran out of its memory or CPU limit){}",
            if said.is_empty() { String::new() } else { format!(": {said}") }
        )),
        (code, None) => LoadError::Compile(format!("the compiler exited with status {code:?}: {said}")),
    })
}

/// The body of `recado plugin compile-worker`: limits this process, reads a component from stdin, compiles
/// it and writes the precompiled form to stdout. Exits with `REFUSED` when the bytes do not compile.
///
/// # Errors
/// The limits cannot be set or stdin/stdout fail (the caller exits non-zero).
pub fn run_worker(memory_bytes: u64, cpu_seconds: u64) -> anyhow::Result<std::process::ExitCode> {
    use nix::sys::resource::{Resource, setrlimit};
    // Before reading a byte of input: from here on, whatever the bytes do to the compiler stays within these.
    setrlimit(Resource::RLIMIT_AS, memory_bytes, memory_bytes)?;
    setrlimit(Resource::RLIMIT_CPU, cpu_seconds, cpu_seconds.saturating_add(1))?;
    setrlimit(Resource::RLIMIT_CORE, 0, 0)?;
    setrlimit(Resource::RLIMIT_FSIZE, 0, 0)?;
    let mut wasm = Vec::new();
    std::io::stdin().read_to_end(&mut wasm)?;
    // The same engine settings as the server, without its pooling allocator (which reserves address space
    // the limit above would refuse, and does not change the compiled code).
    let engine = wasmtime::Engine::new(&engine_config(None))?;
    match engine.precompile_component(&wasm) {
        Ok(compiled) => {
            std::io::stdout().write_all(&compiled)?;
            std::io::stdout().flush()?;
            Ok(std::process::ExitCode::SUCCESS)
        }
        Err(error) => {
            eprintln!("{error:#}");
            Ok(std::process::ExitCode::from(REFUSED as u8))
        }
    }
}

/// SHA-256 of a component, in hex: its identity in the store and in the compile cache.
pub fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// Compiled plugins on disk, one file per component and engine.
#[derive(Debug, Clone)]
pub struct CompileCache {
    dir: PathBuf,
}

impl CompileCache {
    /// A cache in `dir` (created when first written).
    pub fn new(dir: PathBuf) -> Self {
        Self { dir }
    }

    /// Where the compiled form of the component with `sha256` lives for the engine with `engine_key`.
    pub fn path(&self, sha256: &str, engine_key: &str) -> PathBuf {
        self.dir.join(format!("{sha256}-{engine_key}.cwasm"))
    }

    /// Stores a compiled form atomically (a reader never sees half a file).
    ///
    /// # Errors
    /// The directory or file cannot be written.
    pub fn store(&self, sha256: &str, engine_key: &str, compiled: &[u8]) -> std::io::Result<PathBuf> {
        std::fs::create_dir_all(&self.dir)?;
        let path = self.path(sha256, engine_key);
        let mut file = tempfile::NamedTempFile::new_in(&self.dir)?;
        file.write_all(compiled)?;
        file.as_file().sync_all()?;
        file.persist(&path).map_err(|error| error.error)?;
        Ok(path)
    }

    /// Whether a compiled form is cached.
    pub fn contains(&self, sha256: &str, engine_key: &str) -> bool {
        Path::exists(&self.path(sha256, engine_key))
    }
}
