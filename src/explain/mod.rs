//! `slurm-pod-scheduler explain`: reads manifests, applies the API server's defaults, and
//! shows for every pod the Slurm job it would become or every reason it would be refused,
//! exactly as the running scheduler would decide. This file owns the command's flags, its
//! I/O and its exit status; the submodules are pure.

pub mod defaults;
pub mod manifest;
pub mod render;

use std::io::Read;
use std::path::{Path, PathBuf};

use clap::{Args, ValueEnum};
use thiserror::Error;

use crate::config::{self, ConfigError, FileConfig, TranslateOverrides};
use crate::translate::{self, TranslateContext};
use render::{Outcome, Verdict};

/// How `explain` prints its verdicts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum OutputFormat {
    /// A readable block per pod.
    Table,
    /// One JSON document: {"pods": [...]}.
    Json,
    /// The exact slurmrestd submit body for each schedulable pod of ours, one JSON
    /// document per pod (needs `--slurm-api-version`).
    Request,
}

/// Flags of `explain`.
#[derive(Debug, Clone, Args)]
pub struct ExplainArgs {
    /// Manifest to read (YAML or JSON, several documents allowed); `-` reads standard
    /// input, a directory its .yaml, .yml and .json files. Repeat the flag for several.
    #[arg(short = 'f', long = "filename", value_name = "FILE", required = true)]
    pub files: Vec<PathBuf>,

    /// Output format.
    #[arg(short = 'o', long, value_enum, default_value_t = OutputFormat::Table)]
    pub output: OutputFormat,

    /// The scheduler's YAML configuration file (namespace policy, device map, defaults).
    #[arg(long, env = "SPS_CONFIG", value_name = "FILE")]
    pub config: Option<PathBuf>,

    /// REST API version of the submit bodies printed by `-o request`, e.g. v0.0.42.
    #[arg(long, env = "SPS_SLURM_API_VERSION", value_name = "VERSION")]
    pub slurm_api_version: Option<String>,

    #[command(flatten)]
    pub settings: TranslateOverrides,
}

/// What `explain` concluded; the process exits with [`Status::code`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    /// Every pod of ours is schedulable (or there is none).
    Schedulable,
    /// At least one pod of ours would be refused.
    Rejected,
}

impl Status {
    pub fn code(self) -> u8 {
        match self {
            Status::Schedulable => 0,
            Status::Rejected => 2,
        }
    }
}

/// Why `explain` could not judge its input (exit status 1).
#[derive(Debug, Error)]
pub enum ExplainError {
    /// A manifest file could not be read.
    #[error("cannot read {file}: {source}")]
    Read {
        file: String,
        #[source]
        source: std::io::Error,
    },
    /// A manifest is not valid YAML or not a valid object.
    #[error("{file}:{line}: {message}")]
    Manifest {
        file: String,
        line: usize,
        message: String,
    },
    /// A manifest input is larger than anything worth reading (`/dev/zero`, a disk image).
    #[error("{file} is larger than {limit_mib} MiB: is this a manifest?")]
    TooLarge { file: String, limit_mib: u64 },
    /// The configuration file or a flag is invalid.
    #[error(transparent)]
    Config(#[from] ConfigError),
}

/// Runs the command: reads every file, prints the verdicts to `out` and notes to `notes`.
pub fn run(
    args: &ExplainArgs,
    out: &mut dyn std::io::Write,
    notes: &mut dyn std::io::Write,
) -> Result<Status, ExplainError> {
    let file_config = match &args.config {
        Some(path) => FileConfig::load(path)?,
        None => FileConfig::default(),
    };
    let ctx = config::translate_context(&file_config, &args.settings)?;

    let mut verdicts = Vec::new();
    for path in expand(&args.files)? {
        let (name, text) = read_input(&path)?;
        let manifest = manifest::read(&text).map_err(|e| ExplainError::Manifest {
            file: name.clone(),
            line: e.line,
            message: e.message,
        })?;
        for skipped in &manifest.skipped {
            // A note, not an error: manifests often bundle Services and ConfigMaps.
            let _ = writeln!(
                notes,
                "note: {name}:{}: skipped {} {:?}, which holds no pod",
                skipped.line, skipped.kind, skipped.name
            );
        }
        verdicts.extend(manifest.subjects.into_iter().map(|s| judge(s, &ctx)));
    }

    let mut refused_by_version = false;
    let text = match args.output {
        OutputFormat::Request => {
            let (text, refused) = requests(&verdicts, args, &file_config, notes)?;
            refused_by_version = refused;
            text
        }
        OutputFormat::Table => render::table(&verdicts),
        OutputFormat::Json => {
            let mut json = serde_json::to_string_pretty(&render::json(&verdicts))
                .expect("the report has string keys only");
            json.push('\n');
            json
        }
    };
    out.write_all(text.as_bytes())
        .map_err(|source| ExplainError::Read {
            file: "standard output".into(),
            source,
        })?;

    Ok(
        if refused_by_version || verdicts.iter().any(Verdict::is_rejected) {
            Status::Rejected
        } else {
            Status::Schedulable
        },
    )
}

/// The submit bodies of `-o request`; also whether a job cannot be expressed in that API
/// version (the live scheduler would refuse those pods too).
fn requests(
    verdicts: &[Verdict],
    args: &ExplainArgs,
    file: &FileConfig,
    notes: &mut dyn std::io::Write,
) -> Result<(String, bool), ExplainError> {
    let version_text = args
        .slurm_api_version
        .clone()
        .or_else(|| file.slurm_api_version.clone());
    let Some(version_text) = version_text else {
        return Err(ExplainError::Config(config::ConfigError::Invalid {
            key: "slurm-api-version".into(),
            message: "`-o request` needs the REST API version of the bodies, e.g. v0.0.42".into(),
        }));
    };
    let version: slurm_client::ApiVersion =
        version_text
            .parse()
            .map_err(|e: slurm_client::version::UnknownVersion| {
                ExplainError::Config(config::ConfigError::Invalid {
                    key: "slurm-api-version".into(),
                    message: e.to_string(),
                })
            })?;
    let user_names = file.slurm_user_names.clone().unwrap_or_default();
    let mut text = String::new();
    let mut refused = false;
    for verdict in verdicts {
        let Outcome::Translated(t) = &verdict.outcome else {
            continue;
        };
        let Some(job) = &t.job else {
            let _ = writeln!(
                notes,
                "note: {}/{}: rejected, no request",
                verdict.namespace, verdict.name
            );
            continue;
        };
        let opts = slurm_client::SubmitOptions {
            run_as_user: job.user_id.and_then(|id| user_names.get(&id).cloned()),
        };
        match slurm_client::submit_body(version, job, &opts) {
            Ok(body) => {
                text.push_str(&serde_json::to_string_pretty(&body).expect("JSON values serialize"));
                text.push('\n');
            }
            Err(e) => {
                refused = true;
                let _ = writeln!(notes, "note: {}/{}: {e}", verdict.namespace, verdict.name);
            }
        }
    }
    Ok((text, refused))
}

/// Decides one pod as the running scheduler would, after the API server's defaults.
pub fn judge(subject: manifest::Subject, ctx: &TranslateContext) -> Verdict {
    let mut pod = subject.pod;
    defaults::apply(&mut pod);
    let outcome = if translate::is_ours(&pod, ctx) {
        Outcome::Translated(Box::new(translate::translate(&pod, ctx)))
    } else {
        let scheduler_name = pod.spec.and_then(|s| s.scheduler_name).unwrap_or_default();
        Outcome::NotOurs {
            scheduler_name,
            ours: ctx.scheduler_name.clone(),
        }
    };
    tracing::debug!(kind = %subject.kind, namespace = %subject.namespace, name = %subject.name, "judged");
    Verdict {
        kind: subject.kind,
        namespace: subject.namespace,
        name: subject.name,
        outcome,
    }
}

/// The files to read: each path as given, but a directory becomes its `.yaml`, `.yml` and
/// `.json` files in name order (not its subdirectories), as with `kubectl -f DIR`.
fn expand(paths: &[PathBuf]) -> Result<Vec<PathBuf>, ExplainError> {
    let mut files = Vec::new();
    for path in paths {
        if !path.is_dir() {
            files.push(path.clone());
            continue;
        }
        let read_error = |source| ExplainError::Read {
            file: path.display().to_string(),
            source,
        };
        let mut found = Vec::new();
        for entry in std::fs::read_dir(path).map_err(read_error)? {
            let entry = entry.map_err(read_error)?.path();
            let manifest = matches!(
                entry.extension().and_then(|e| e.to_str()),
                Some("yaml" | "yml" | "json")
            );
            if manifest && entry.is_file() {
                found.push(entry);
            }
        }
        found.sort();
        files.extend(found);
    }
    Ok(files)
}

/// The most of one input `explain` reads. Far above any manifest (the API server takes
/// objects of 1.5 MiB at most), so only something that is not one is refused.
const MAX_INPUT_MIB: u64 = 64;

/// The text of a file, or of standard input for `-`, with the name errors use.
fn read_input(path: &Path) -> Result<(String, String), ExplainError> {
    let (name, reader): (String, Box<dyn Read>) = if path == Path::new("-") {
        ("<stdin>".to_string(), Box::new(std::io::stdin()))
    } else {
        let name = path.display().to_string();
        let file = std::fs::File::open(path).map_err(|source| ExplainError::Read {
            file: name.clone(),
            source,
        })?;
        (name, Box::new(file))
    };
    let limit = MAX_INPUT_MIB << 20;
    let mut bytes = Vec::new();
    reader
        .take(limit + 1)
        .read_to_end(&mut bytes)
        .map_err(|source| ExplainError::Read {
            file: name.clone(),
            source,
        })?;
    if bytes.len() as u64 > limit {
        return Err(ExplainError::TooLarge {
            file: name,
            limit_mib: MAX_INPUT_MIB,
        });
    }
    utf8(name, bytes)
}

fn utf8(name: String, bytes: Vec<u8>) -> Result<(String, String), ExplainError> {
    match String::from_utf8(bytes) {
        Ok(text) => Ok((name, text)),
        Err(e) => {
            let valid = &e.as_bytes()[..e.utf8_error().valid_up_to()];
            let line = valid.iter().filter(|b| **b == b'\n').count() + 1;
            Err(ExplainError::Manifest {
                file: name,
                line,
                message: "not UTF-8 text: is this a manifest?".to_string(),
            })
        }
    }
}
