//! Printing explain's verdicts: a readable table per pod, or one JSON document whose shape
//! scripts can rely on. Pure: verdicts in, text out.

use serde::Serialize;
use serde_json::Value;
use slurm_client::{Exclusivity, PlaceholderJob, TimeLimit};

use crate::translate::Translation;

/// The verdict on one pod of a manifest.
#[derive(Debug, Clone, PartialEq)]
pub struct Verdict {
    pub kind: String,
    pub namespace: String,
    pub name: String,
    pub outcome: Outcome,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    /// The pod names another scheduler; we would not touch it.
    NotOurs {
        scheduler_name: String,
        ours: String,
    },
    /// Our pod, translated.
    Translated(Box<Translation>),
}

impl Verdict {
    /// A pod of ours that would be refused.
    pub fn is_rejected(&self) -> bool {
        matches!(&self.outcome, Outcome::Translated(t) if !t.is_schedulable())
    }
}

/// Why a pod is not ours, as a sentence.
pub fn not_ours_message(scheduler_name: &str, ours: &str) -> String {
    format!(
        "spec.schedulerName is \"{scheduler_name}\", not \"{ours}\", so this scheduler ignores \
         the pod; set spec.schedulerName: {ours} to have Slurm place it."
    )
}

// === JSON ===
// Structs rather than `json!` so that keys come out in the documented order.

/// The whole report: `{"pods": [...]}`.
#[derive(Debug, Serialize)]
pub struct JsonReport<'a> {
    pub pods: Vec<JsonPod<'a>>,
}

#[derive(Debug, Serialize)]
pub struct JsonPod<'a> {
    pub kind: &'a str,
    pub namespace: &'a str,
    pub name: &'a str,
    pub schedulable: bool,
    pub job: Option<JsonJob<'a>>,
    pub rejections: Vec<JsonRejection<'a>>,
    pub warnings: Vec<String>,
}

#[derive(Debug, Serialize)]
pub struct JsonRejection<'a> {
    pub reason: &'static str,
    pub message: &'a str,
}

#[derive(Debug, Serialize)]
pub struct JsonJob<'a> {
    pub name: &'a str,
    pub comment: &'a str,
    pub cpus_per_task: u32,
    pub memory_per_node_mb: u64,
    pub gres: Option<&'a str>,
    pub partition: Option<&'a str>,
    pub constraint: Option<&'a str>,
    pub account: Option<&'a str>,
    pub qos: Option<&'a str>,
    pub user_id: Option<u32>,
    pub group_id: Option<u32>,
    pub exclusive: Option<&'static str>,
    /// Whole minutes, or the string `infinite`.
    pub time_limit_minutes: Option<Value>,
    pub reservation: Option<&'a str>,
}

/// The whole report, ready for `serde_json`.
pub fn json(verdicts: &[Verdict]) -> JsonReport<'_> {
    JsonReport {
        pods: verdicts.iter().map(json_pod).collect(),
    }
}

fn json_pod(verdict: &Verdict) -> JsonPod<'_> {
    let (schedulable, job, rejections, warnings) = match &verdict.outcome {
        Outcome::NotOurs {
            scheduler_name,
            ours,
        } => (
            false,
            None,
            vec![],
            vec![not_ours_message(scheduler_name, ours)],
        ),
        Outcome::Translated(t) => (
            t.is_schedulable(),
            t.job.as_ref().map(json_job),
            t.rejections
                .iter()
                .map(|r| JsonRejection {
                    reason: r.reason.as_str(),
                    message: &r.message,
                })
                .collect(),
            t.warnings.iter().map(|w| w.message.clone()).collect(),
        ),
    };
    JsonPod {
        kind: &verdict.kind,
        namespace: &verdict.namespace,
        name: &verdict.name,
        schedulable,
        job,
        rejections,
        warnings,
    }
}

fn exclusive_word(e: Exclusivity) -> &'static str {
    match e {
        Exclusivity::None => "none",
        Exclusivity::User => "user",
        Exclusivity::Ok => "ok",
    }
}

fn json_job(job: &PlaceholderJob) -> JsonJob<'_> {
    JsonJob {
        name: &job.name,
        comment: &job.comment,
        cpus_per_task: job.cpus_per_task,
        memory_per_node_mb: job.memory_per_node_mb,
        gres: job.gres.as_deref(),
        partition: job.partition.as_deref(),
        constraint: job.constraint.as_deref(),
        account: job.account.as_deref(),
        qos: job.qos.as_deref(),
        user_id: job.user_id,
        group_id: job.group_id,
        exclusive: job.exclusive.map(exclusive_word),
        time_limit_minutes: job.time_limit.map(|t| match t {
            TimeLimit::Infinite => Value::from("infinite"),
            TimeLimit::Minutes(m) => Value::from(m),
        }),
        reservation: job.reservation.as_deref(),
    }
}

// === table ===

const WIDTH: usize = 100;

/// The report as text for people: one block per pod, then a summary line.
pub fn table(verdicts: &[Verdict]) -> String {
    let mut out = String::new();
    for verdict in verdicts {
        let title = format!("{} {}/{}", verdict.kind, verdict.namespace, verdict.name);
        match &verdict.outcome {
            Outcome::NotOurs {
                scheduler_name,
                ours,
            } => {
                out.push_str(&format!("{title}: not ours\n"));
                wrap_into(
                    &mut out,
                    "  note: ",
                    &not_ours_message(scheduler_name, ours),
                );
            }
            Outcome::Translated(t) => {
                let state = if t.is_schedulable() {
                    "schedulable"
                } else {
                    "REJECTED"
                };
                out.push_str(&format!("{title}: {state}\n"));
                if let Some(job) = &t.job {
                    job_rows(&mut out, job);
                }
                for r in &t.rejections {
                    wrap_into(&mut out, &format!("  {}: ", r.reason), &r.message);
                }
                for w in &t.warnings {
                    wrap_into(&mut out, "  warning: ", &w.message);
                }
            }
        }
        out.push('\n');
    }
    let count = |f: &dyn Fn(&Verdict) -> bool| verdicts.iter().filter(|v| f(v)).count();
    let not_ours = count(&|v| matches!(v.outcome, Outcome::NotOurs { .. }));
    let rejected = count(&|v| v.is_rejected());
    let schedulable = verdicts.len() - not_ours - rejected;
    let noun = if verdicts.len() == 1 { "pod" } else { "pods" };
    out.push_str(&format!(
        "{} {noun}: {schedulable} schedulable, {rejected} rejected, {not_ours} not ours\n",
        verdicts.len()
    ));
    out
}

fn job_rows(out: &mut String, job: &PlaceholderJob) {
    let text = |v: &Option<String>| v.clone().unwrap_or_else(|| "-".to_string());
    let id = |v: Option<u32>| v.map_or("-".to_string(), |n| n.to_string());
    let time_limit = match job.time_limit {
        None => "-".to_string(),
        Some(TimeLimit::Infinite) => "infinite".to_string(),
        Some(TimeLimit::Minutes(m)) => format!("{m} min"),
    };
    let exclusive = match job.exclusive {
        None => "- (partition default)".to_string(),
        Some(e) => exclusive_word(e).to_string(),
    };
    let rows = [
        ("job name", job.name.clone()),
        ("comment", job.comment.clone()),
        ("cpus per task", job.cpus_per_task.to_string()),
        (
            "memory per node",
            format!("{} MiB (Slurm MB)", job.memory_per_node_mb),
        ),
        ("gres", text(&job.gres)),
        ("partition", text(&job.partition)),
        ("constraint", text(&job.constraint)),
        ("account", text(&job.account)),
        ("qos", text(&job.qos)),
        ("user id", id(job.user_id)),
        ("group id", id(job.group_id)),
        ("exclusive", exclusive),
        ("time limit", time_limit),
        ("reservation", text(&job.reservation)),
    ];
    for (label, value) in rows {
        out.push_str(&format!("  {label:<16} {value}\n"));
    }
}

/// Appends `text` after `lead`, wrapped at [`WIDTH`] with continuation lines indented.
fn wrap_into(out: &mut String, lead: &str, text: &str) {
    let indent = "    ";
    let mut line = lead.to_string();
    let mut fresh = true;
    for word in text.split(' ') {
        if !fresh && line.chars().count() + 1 + word.chars().count() > WIDTH {
            out.push_str(&line);
            out.push('\n');
            line = indent.to_string();
            fresh = true;
        }
        if !fresh {
            line.push(' ');
        }
        line.push_str(word);
        fresh = false;
    }
    out.push_str(&line);
    out.push('\n');
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    use crate::translate::{rejection, Cause, Reason, Rejection};

    fn job() -> PlaceholderJob {
        PlaceholderJob {
            name: "default/gpu".into(),
            comment: "slurm-pod-scheduler/v1 scheduler=slurm-pod-scheduler uid=unknown".into(),
            cpus_per_task: 2,
            memory_per_node_mb: 4096,
            gres: Some("gpu:1".into()),
            partition: Some("gpu".into()),
            constraint: None,
            account: None,
            qos: None,
            user_id: Some(7001),
            group_id: Some(7001),
            exclusive: Some(Exclusivity::None),
            time_limit: Some(TimeLimit::Infinite),
            reservation: None,
            excluded_nodes: vec![],
        }
    }

    fn verdicts() -> Vec<Verdict> {
        let ok = Translation {
            job: Some(job()),
            rejections: vec![],
            warnings: vec![],
        };
        let rejected = Translation {
            job: None,
            rejections: vec![Rejection {
                reason: Reason::InvalidPod,
                cause: Cause::GracePeriodTooLong,
                message: rejection::grace_period_too_long(30, false, 30, 5).message,
            }],
            warnings: vec![rejection::unknown_annotation("x/partiton", "x/partition")],
        };
        vec![
            Verdict {
                kind: "Pod".into(),
                namespace: "default".into(),
                name: "gpu".into(),
                outcome: Outcome::Translated(Box::new(ok)),
            },
            Verdict {
                kind: "Job".into(),
                namespace: "ml".into(),
                name: "train".into(),
                outcome: Outcome::Translated(Box::new(rejected)),
            },
            Verdict {
                kind: "Deployment".into(),
                namespace: "default".into(),
                name: "web".into(),
                outcome: Outcome::NotOurs {
                    scheduler_name: "default-scheduler".into(),
                    ours: "slurm-pod-scheduler".into(),
                },
            },
        ]
    }

    #[test]
    fn json_has_the_exact_shape() {
        let verdicts = verdicts();
        let got = serde_json::to_value(json(&verdicts)).unwrap();
        let pods = got["pods"].as_array().unwrap();
        assert_eq!(pods.len(), 3);
        let want_job = json!({
            "name": "default/gpu",
            "comment": "slurm-pod-scheduler/v1 scheduler=slurm-pod-scheduler uid=unknown",
            "cpus_per_task": 2,
            "memory_per_node_mb": 4096,
            "gres": "gpu:1",
            "partition": "gpu",
            "constraint": null,
            "account": null,
            "qos": null,
            "user_id": 7001,
            "group_id": 7001,
            "exclusive": "none",
            "time_limit_minutes": "infinite",
            "reservation": null,
        });
        assert_eq!(
            pods[0],
            json!({
                "kind": "Pod", "namespace": "default", "name": "gpu", "schedulable": true,
                "job": want_job, "rejections": [], "warnings": [],
            })
        );
        assert_eq!(pods[1]["schedulable"], json!(false));
        assert_eq!(pods[1]["job"], Value::Null);
        assert_eq!(pods[1]["rejections"][0]["reason"], json!("InvalidPod"));
        assert_eq!(pods[1]["rejections"][0].as_object().unwrap().len(), 2);
        assert!(pods[1]["warnings"][0]
            .as_str()
            .unwrap()
            .contains("partiton"));
        assert_eq!(pods[2]["schedulable"], json!(false));
        assert!(pods[2]["warnings"][0]
            .as_str()
            .unwrap()
            .contains("default-scheduler"));
    }

    #[test]
    fn table_is_readable_and_wrapped() {
        let text = table(&verdicts());
        assert!(text.contains("Pod default/gpu: schedulable\n"));
        assert!(text.contains("  gres             gpu:1\n"));
        assert!(text.contains("  time limit       infinite\n"));
        assert!(text.contains("Job ml/train: REJECTED\n  InvalidPod: A pod scheduled by Slurm"));
        assert!(text.contains("Deployment default/web: not ours\n"));
        assert!(text.ends_with("3 pods: 1 schedulable, 1 rejected, 1 not ours\n"));
        for line in text.lines() {
            assert!(line.chars().count() <= WIDTH, "{line}");
        }
    }
}
