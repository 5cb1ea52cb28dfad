//! `recado plugin new`: a rule-plugin project in another language, ready to build and test.
//!
//! The templates live in `plugins-sdk/templates/<language>/` and are compiled into the binary, so a project
//! is made anywhere without a checkout. Every language gets the same rules, the same `config.json` and the
//! same `fixtures.toml` (kept once, beside the templates), and the contract's WIT in `wit/`, which the
//! language's component tool reads. Each template's `build.sh` installs its tools by package name.

use std::path::{Path, PathBuf};

/// A language with a template.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Language {
    /// cargo and wit-bindgen, from crates.io (the wasm32-wasip2 target from rustup).
    Rust,
    /// componentize-py, from PyPI.
    Python,
    /// componentize-js (StarlingMonkey), from the npm registry.
    Javascript,
    /// clang and wasi-libc from Debian, wit-bindgen from crates.io, jco from the npm registry.
    C,
}

impl Language {
    /// Every language with a template.
    pub const ALL: [Self; 4] = [Self::Rust, Self::Python, Self::Javascript, Self::C];

    /// Its name on the command line.
    pub fn name(self) -> &'static str {
        match self {
            Self::Rust => "rust",
            Self::Python => "python",
            Self::Javascript => "javascript",
            Self::C => "c",
        }
    }

    /// The language named `name`.
    pub fn parse(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|language| language.name() == name)
    }

    fn files(self) -> &'static [File] {
        match self {
            Self::Rust => &RUST,
            Self::Python => &PYTHON,
            Self::Javascript => &JAVASCRIPT,
            Self::C => &C,
        }
    }
}

/// One file of a project.
struct File {
    path: &'static str,
    text: &'static str,
    executable: bool,
}

macro_rules! file {
    ($path:literal, $source:literal) => {
        File { path: $path, text: include_str!(concat!("../../plugins-sdk/", $source)), executable: false }
    };
    ($path:literal, $source:literal, executable) => {
        File { path: $path, text: include_str!(concat!("../../plugins-sdk/", $source)), executable: true }
    };
}

/// What every project gets: the configuration and fixtures the template's rules pass, and the contract.
const SHARED: [File; 3] = [
    file!("config.json", "templates/config.json"),
    file!("fixtures.toml", "templates/fixtures.toml"),
    file!("wit/plugin.wit", "wit/since_v0.2.0/plugin.wit"),
];

const RUST: [File; 7] = [
    file!("Cargo.toml", "templates/rust/Cargo.toml"),
    file!("Cargo.lock", "templates/rust/Cargo.lock"),
    file!("src/lib.rs", "templates/rust/src/lib.rs"),
    file!("src/helpers.rs", "templates/rust/src/helpers.rs"),
    file!("build.sh", "templates/rust/build.sh", executable),
    file!("README.md", "templates/rust/README.md"),
    file!(".gitignore", "templates/rust/.gitignore"),
];

const PYTHON: [File; 5] = [
    file!("app.py", "templates/python/app.py"),
    file!("recado_helpers.py", "templates/python/recado_helpers.py"),
    file!("build.sh", "templates/python/build.sh", executable),
    file!("README.md", "templates/python/README.md"),
    file!(".gitignore", "templates/python/.gitignore"),
];

const JAVASCRIPT: [File; 4] = [
    file!("app.js", "templates/javascript/app.js"),
    file!("build.sh", "templates/javascript/build.sh", executable),
    file!("README.md", "templates/javascript/README.md"),
    file!(".gitignore", "templates/javascript/.gitignore"),
];

const C: [File; 8] = [
    file!("plugin.c", "templates/c/plugin.c"),
    file!("recado_helpers.c", "templates/c/recado_helpers.c"),
    file!("recado_helpers.h", "templates/c/recado_helpers.h"),
    file!("json.c", "templates/c/json.c"),
    file!("json.h", "templates/c/json.h"),
    file!("build.sh", "templates/c/build.sh", executable),
    file!("README.md", "templates/c/README.md"),
    file!(".gitignore", "templates/c/.gitignore"),
];

/// Why a project was not made.
#[derive(Debug, thiserror::Error)]
pub enum TemplateError {
    /// The directory exists and has files in it: nothing is overwritten.
    #[error("{0} already exists and is not empty; choose a new directory")]
    NotEmpty(PathBuf),
    /// Writing failed.
    #[error("writing {path}: {source}")]
    Write {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
}

/// Writes a new project for `language` into `dir` (created; it must not hold anything yet). Returns the
/// files written.
///
/// # Errors
/// `dir` is not empty, or a file cannot be written.
pub fn create(language: Language, dir: &Path) -> Result<Vec<PathBuf>, TemplateError> {
    if std::fs::read_dir(dir).is_ok_and(|mut entries| entries.next().is_some()) {
        return Err(TemplateError::NotEmpty(dir.to_owned()));
    }
    let mut written = Vec::new();
    for file in language.files().iter().chain(&SHARED) {
        let path = dir.join(file.path);
        let write = |path: &Path| -> std::io::Result<()> {
            if let Some(parent) = path.parent() {
                std::fs::create_dir_all(parent)?;
            }
            std::fs::write(path, file.text)?;
            if file.executable {
                use std::os::unix::fs::PermissionsExt as _;
                std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755))?;
            }
            Ok(())
        };
        write(&path).map_err(|source| TemplateError::Write { path: path.clone(), source })?;
        written.push(path);
    }
    Ok(written)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_project_has_its_languages_files_the_shared_ones_and_a_runnable_build() {
        let dir = tempfile::tempdir().expect("dir");
        let project = dir.path().join("rules");
        let written = create(Language::Python, &project).expect("made");
        let names: Vec<String> =
            written.iter().map(|path| path.strip_prefix(&project).expect("inside").display().to_string()).collect();
        assert_eq!(
            names,
            [
                "app.py",
                "recado_helpers.py",
                "build.sh",
                "README.md",
                ".gitignore",
                "config.json",
                "fixtures.toml",
                "wit/plugin.wit"
            ]
        );
        use std::os::unix::fs::PermissionsExt as _;
        let mode = std::fs::metadata(project.join("build.sh")).expect("build.sh").permissions().mode();
        assert_eq!(mode & 0o111, 0o111, "build.sh runs as it is");
        let wit = std::fs::read_to_string(project.join("wit/plugin.wit")).expect("wit");
        assert!(wit.contains("package recado:plugin@"), "the contract");
        let config: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(project.join("config.json")).expect("config")).expect("json");
        assert!(config["acknowledge"]["open"].is_object());
        let fixtures = std::fs::read_to_string(project.join("fixtures.toml")).expect("fixtures");
        assert!(toml::from_str::<super::super::fixtures::Fixtures>(&fixtures).is_ok(), "the fixtures parse");

        let again = create(Language::Javascript, &project).expect_err("not over another project");
        assert!(matches!(again, TemplateError::NotEmpty(_)), "{again}");
        assert_eq!(Language::parse("javascript"), Some(Language::Javascript));
        assert_eq!(Language::parse("cobol"), None);
    }
}
