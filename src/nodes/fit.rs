//! Would Kubernetes let this pod run on that node? The node filters of kube-scheduler that a
//! placement through Slurm must still respect: cordoned and NotReady nodes, taints the pod
//! does not tolerate, `nodeSelector` and required node affinity. Nodes that fail are
//! excluded from the pod's job, so Slurm never picks them.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{Node, NodeSelectorRequirement, PodSpec};

/// The taint a cordoned node is treated as having.
const UNSCHEDULABLE_TAINT: &str = "node.kubernetes.io/unschedulable";
/// The taint of a node that is not Ready.
const NOT_READY_TAINT: &str = "node.kubernetes.io/not-ready";
/// The taint an operator sets on a node that is down for good.
pub const OUT_OF_SERVICE_TAINT: &str = "node.kubernetes.io/out-of-service";

/// What the filters need of a node.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct NodeFacts {
    pub name: String,
    pub labels: BTreeMap<String, String>,
    pub unschedulable: bool,
    /// The `Ready` condition is `True`.
    pub ready: bool,
    pub taints: Vec<TaintFacts>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TaintFacts {
    pub key: String,
    pub value: String,
    pub effect: String,
}

impl NodeFacts {
    pub fn from_node(node: &Node) -> Self {
        let spec = node.spec.as_ref();
        let ready = node
            .status
            .as_ref()
            .and_then(|s| s.conditions.as_ref())
            .and_then(|c| c.iter().find(|c| c.type_ == "Ready"))
            .is_some_and(|c| c.status == "True");
        let taints = spec
            .and_then(|s| s.taints.as_ref())
            .map(|ts| {
                ts.iter()
                    .map(|t| TaintFacts {
                        key: t.key.clone(),
                        value: t.value.clone().unwrap_or_default(),
                        effect: t.effect.clone(),
                    })
                    .collect()
            })
            .unwrap_or_default();
        Self {
            name: node.metadata.name.clone().unwrap_or_default(),
            labels: node.metadata.labels.clone().unwrap_or_default(),
            unschedulable: spec.and_then(|s| s.unschedulable).unwrap_or(false),
            ready,
            taints,
        }
    }

    /// A node on which a terminating pod will never finish: NotReady or taken out of service.
    pub fn is_dead(&self) -> bool {
        !self.ready || self.taints.iter().any(|t| t.key == OUT_OF_SERVICE_TAINT)
    }
}

/// A pod's constraints on nodes; `None` from [`NodeRules::from_spec`] when it has none
/// beyond the defaults, which keeps the per-pod state small for the common pod.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct NodeRules {
    node_selector: BTreeMap<String, String>,
    /// Required affinity: any term may match; within a term all requirements must.
    terms: Vec<Term>,
    tolerations: Vec<Toleration>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Term {
    labels: Vec<Requirement>,
    /// `matchFields`: only `metadata.name` exists.
    names: Vec<Requirement>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Requirement {
    key: String,
    operator: String,
    values: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Toleration {
    key: String,
    operator: String,
    value: String,
    effect: String,
}

impl NodeRules {
    pub fn from_spec(spec: &PodSpec) -> Option<Self> {
        let node_selector = spec.node_selector.clone().unwrap_or_default();
        let terms = spec
            .affinity
            .as_ref()
            .and_then(|a| a.node_affinity.as_ref())
            .and_then(|a| {
                a.required_during_scheduling_ignored_during_execution
                    .as_ref()
            })
            .map(|sel| {
                sel.node_selector_terms
                    .iter()
                    .map(|t| Term {
                        labels: requirements(t.match_expressions.as_deref()),
                        names: requirements(t.match_fields.as_deref()),
                    })
                    .collect()
            })
            .unwrap_or_default();
        let tolerations = spec
            .tolerations
            .as_ref()
            .map(|ts| {
                ts.iter()
                    .map(|t| Toleration {
                        key: t.key.clone().unwrap_or_default(),
                        operator: t.operator.clone().unwrap_or_else(|| "Equal".into()),
                        value: t.value.clone().unwrap_or_default(),
                        effect: t.effect.clone().unwrap_or_default(),
                    })
                    .collect()
            })
            .unwrap_or_default();
        let rules = Self {
            node_selector,
            terms,
            tolerations,
        };
        (rules != Self::default()).then_some(rules)
    }

    fn tolerates(&self, key: &str, value: &str, effect: &str) -> bool {
        self.tolerations.iter().any(|t| {
            let effect_ok = t.effect.is_empty() || t.effect == effect;
            let key_ok = t.key == key || (t.key.is_empty() && t.operator == "Exists");
            let value_ok = t.operator == "Exists" || t.value == value;
            effect_ok && key_ok && value_ok
        })
    }
}

fn requirements(reqs: Option<&[NodeSelectorRequirement]>) -> Vec<Requirement> {
    reqs.unwrap_or_default()
        .iter()
        .map(|r| Requirement {
            key: r.key.clone(),
            operator: r.operator.clone(),
            values: r.values.clone().unwrap_or_default(),
        })
        .collect()
}

/// Why Kubernetes would refuse this pod on this node, or `None` when it would accept it.
pub fn refusal(rules: Option<&NodeRules>, node: &NodeFacts) -> Option<String> {
    let empty = NodeRules::default();
    let rules = rules.unwrap_or(&empty);

    if node.unschedulable && !rules.tolerates(UNSCHEDULABLE_TAINT, "", "NoSchedule") {
        return Some(format!("node {} is cordoned", node.name));
    }
    if !node.ready && !rules.tolerates(NOT_READY_TAINT, "", "NoSchedule") {
        return Some(format!("node {} is not Ready", node.name));
    }
    for taint in &node.taints {
        let blocking = taint.effect == "NoSchedule" || taint.effect == "NoExecute";
        if blocking && !rules.tolerates(&taint.key, &taint.value, &taint.effect) {
            return Some(format!(
                "node {} has the taint {}={}:{} that the pod does not tolerate",
                node.name, taint.key, taint.value, taint.effect
            ));
        }
    }
    for (key, value) in &rules.node_selector {
        if node.labels.get(key) != Some(value) {
            return Some(format!(
                "node {} does not match the nodeSelector {key}={value}",
                node.name
            ));
        }
    }
    if !rules.terms.is_empty() && !rules.terms.iter().any(|t| term_matches(t, node)) {
        return Some(format!(
            "node {} does not match the pod's required node affinity",
            node.name
        ));
    }
    None
}

fn term_matches(term: &Term, node: &NodeFacts) -> bool {
    // An empty term matches no node, as in Kubernetes.
    if term.labels.is_empty() && term.names.is_empty() {
        return false;
    }
    let labels_ok = term
        .labels
        .iter()
        .all(|r| requirement_matches(r, node.labels.get(&r.key)));
    let names_ok = term
        .names
        .iter()
        .all(|r| r.key == "metadata.name" && requirement_matches(r, Some(&node.name)));
    labels_ok && names_ok
}

fn requirement_matches(req: &Requirement, value: Option<&String>) -> bool {
    match req.operator.as_str() {
        "In" => value.is_some_and(|v| req.values.contains(v)),
        "NotIn" => value.is_none_or(|v| !req.values.contains(v)),
        "Exists" => value.is_some(),
        "DoesNotExist" => value.is_none(),
        "Gt" | "Lt" => {
            let (Some(v), Some(bound)) = (value, req.values.first()) else {
                return false;
            };
            match (v.parse::<i64>(), bound.parse::<i64>()) {
                (Ok(v), Ok(b)) if req.operator == "Gt" => v > b,
                (Ok(v), Ok(b)) => v < b,
                _ => false,
            }
        }
        // An operator Kubernetes would have refused at admission matches nothing.
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn node(v: serde_json::Value) -> NodeFacts {
        NodeFacts::from_node(&serde_json::from_value(v).unwrap())
    }

    fn ready_node(name: &str, labels: serde_json::Value) -> serde_json::Value {
        json!({"metadata": {"name": name, "labels": labels},
               "status": {"conditions": [{"type": "Ready", "status": "True"}]}})
    }

    fn rules(spec: serde_json::Value) -> Option<NodeRules> {
        let mut spec = spec;
        spec["containers"] = json!([]);
        NodeRules::from_spec(&serde_json::from_value(spec).unwrap())
    }

    #[test]
    fn a_plain_pod_has_no_rules_and_fits_a_ready_node() {
        assert_eq!(rules(json!({})), None);
        assert_eq!(refusal(None, &node(ready_node("n", json!({})))), None);
    }

    #[test]
    fn node_conditions_and_taints() {
        let tolerate_all = rules(json!({"tolerations": [{"operator": "Exists"}]}));
        let tolerate_gpu = rules(json!({"tolerations": [
            {"key": "gpu", "operator": "Equal", "value": "yes", "effect": "NoSchedule"}]}));
        let cordoned = {
            let mut n = ready_node("c", json!({}));
            n["spec"] = json!({"unschedulable": true});
            node(n)
        };
        let not_ready = node(json!({"metadata": {"name": "nr"},
            "status": {"conditions": [{"type": "Ready", "status": "False"}]}}));
        let gpu_tainted = {
            let mut n = ready_node("g", json!({}));
            n["spec"] = json!({"taints": [{"key": "gpu", "value": "yes", "effect": "NoSchedule"}]});
            node(n)
        };
        let soft_tainted = {
            let mut n = ready_node("s", json!({}));
            n["spec"] = json!({"taints": [{"key": "x", "effect": "PreferNoSchedule"}]});
            node(n)
        };
        let cases: Vec<(&str, Option<&NodeRules>, &NodeFacts, bool)> = vec![
            ("cordoned refuses a plain pod", None, &cordoned, false),
            (
                "cordoned accepts a pod tolerating everything",
                tolerate_all.as_ref(),
                &cordoned,
                true,
            ),
            ("NotReady refuses", None, &not_ready, false),
            (
                "a NoSchedule taint refuses a plain pod",
                None,
                &gpu_tainted,
                false,
            ),
            (
                "a matching toleration accepts",
                tolerate_gpu.as_ref(),
                &gpu_tainted,
                true,
            ),
            ("PreferNoSchedule never refuses", None, &soft_tainted, true),
        ];
        for (what, r, n, fits) in cases {
            assert_eq!(refusal(r, n).is_none(), fits, "{what}: {:?}", refusal(r, n));
        }
    }

    #[test]
    fn node_selector_and_required_affinity() {
        let intel = node(ready_node("node-0", json!({"cpu": "intel", "rank": "5"})));
        let amd = node(ready_node("node-2", json!({"cpu": "amd"})));
        let sel = rules(json!({"nodeSelector": {"cpu": "intel"}}));
        let aff = |exprs: serde_json::Value| {
            rules(
                json!({"affinity": {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution":
                {"nodeSelectorTerms": exprs}}}}),
            )
        };
        let in_amd = aff(
            json!([{"matchExpressions": [{"key": "cpu", "operator": "In", "values": ["amd"]}]}]),
        );
        let not_in_amd = aff(
            json!([{"matchExpressions": [{"key": "cpu", "operator": "NotIn", "values": ["amd"]}]}]),
        );
        let gt = aff(
            json!([{"matchExpressions": [{"key": "rank", "operator": "Gt", "values": ["3"]}]}]),
        );
        let by_name = aff(
            json!([{"matchFields": [{"key": "metadata.name", "operator": "In", "values": ["node-2"]}]}]),
        );
        let either = aff(json!([
            {"matchExpressions": [{"key": "cpu", "operator": "DoesNotExist"}]},
            {"matchExpressions": [{"key": "cpu", "operator": "Exists"}]}]));
        let empty_term = aff(json!([{}]));
        let cases = [
            ("selector matches", &sel, &intel, true),
            ("selector does not match", &sel, &amd, false),
            ("In", &in_amd, &amd, true),
            ("In refuses", &in_amd, &intel, false),
            ("NotIn", &not_in_amd, &intel, true),
            ("Gt", &gt, &intel, true),
            ("Gt without the label refuses", &gt, &amd, false),
            ("matchFields by name", &by_name, &amd, true),
            ("matchFields refuses others", &by_name, &intel, false),
            ("terms are ORed", &either, &intel, true),
            ("an empty term matches nothing", &empty_term, &intel, false),
        ];
        for (what, r, n, fits) in cases {
            assert_eq!(refusal(r.as_ref(), n).is_none(), fits, "{what}");
        }
    }

    #[test]
    fn dead_nodes() {
        let mut n = ready_node("n", json!({}));
        assert!(!node(n.clone()).is_dead());
        n["spec"] = json!({"taints": [{"key": OUT_OF_SERVICE_TAINT, "effect": "NoExecute"}]});
        assert!(node(n).is_dead());
        assert!(
            node(json!({"metadata": {"name": "x"}})).is_dead(),
            "no Ready condition"
        );
    }
}
