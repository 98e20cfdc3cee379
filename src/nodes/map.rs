//! Which Kubernetes node a Slurm node is (`--node-mapping`).
//!
//! - `identity`: the names are the same.
//! - `label=KEY`: the Kubernetes node whose label KEY holds the Slurm node's name.
//! - `slurmd-pods=SELECTOR`: the node running the slurmd pod (selected by SELECTOR in the
//!   slurmd namespace) whose `spec.hostname`, or else name, is the Slurm node's name.

use std::collections::HashMap;
use std::fmt;
use std::str::FromStr;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Mapping {
    Identity,
    Label(String),
    SlurmdPods(String),
}

impl FromStr for Mapping {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = || {
            format!(
                "node mapping `{s}` is not one of `identity`, `label=KEY`, `slurmd-pods=SELECTOR`"
            )
        };
        match s.split_once('=') {
            None if s == "identity" => Ok(Self::Identity),
            Some(("label", key)) if !key.trim().is_empty() => Ok(Self::Label(key.trim().into())),
            Some(("slurmd-pods", sel)) if !sel.trim().is_empty() => {
                Ok(Self::SlurmdPods(sel.trim().into()))
            }
            _ => Err(bad()),
        }
    }
}

impl fmt::Display for Mapping {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Identity => write!(f, "identity"),
            Self::Label(k) => write!(f, "label={k}"),
            Self::SlurmdPods(s) => write!(f, "slurmd-pods={s}"),
        }
    }
}

/// Both directions of the mapping, kept current from the node (or slurmd pod) watcher.
#[derive(Debug, Clone)]
pub struct NodeMap {
    mapping: Mapping,
    /// Source object (a Kubernetes node, or a slurmd pod `ns/name`) to the pair it states.
    sources: HashMap<String, (String, String)>,
    /// Slurm node to Kubernetes nodes claiming it (more than one: ambiguous).
    to_kube: HashMap<String, Vec<String>>,
}

/// Why a Slurm node has no Kubernetes node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Unmapped {
    None,
    Ambiguous(Vec<String>),
}

impl NodeMap {
    pub fn new(mapping: Mapping) -> Self {
        Self {
            mapping,
            sources: HashMap::new(),
            to_kube: HashMap::new(),
        }
    }

    pub fn mapping(&self) -> &Mapping {
        &self.mapping
    }

    /// The Kubernetes node for a Slurm node.
    pub fn kube_node(&self, slurm: &str) -> Result<String, Unmapped> {
        if self.mapping == Mapping::Identity {
            return Ok(slurm.to_string());
        }
        match self.to_kube.get(slurm).map(Vec::as_slice) {
            Some([one]) => Ok(one.clone()),
            Some(many) if many.len() > 1 => Err(Unmapped::Ambiguous(many.to_vec())),
            _ => Err(Unmapped::None),
        }
    }

    /// The Slurm node for a Kubernetes node, for excluding it from a job.
    pub fn slurm_node(&self, kube: &str) -> Option<String> {
        if self.mapping == Mapping::Identity {
            return Some(kube.to_string());
        }
        self.sources
            .values()
            .find(|(_, k)| k == kube)
            .map(|(s, _)| s.clone())
    }

    /// A Kubernetes node was added or changed (`label=KEY`).
    pub fn node_seen(&mut self, name: &str, labels: &std::collections::BTreeMap<String, String>) {
        if let Mapping::Label(key) = &self.mapping {
            match labels.get(key) {
                Some(slurm) => self.set(name, slurm.clone(), name.to_string()),
                None => self.remove(name),
            }
        }
    }

    /// A slurmd pod was added or changed (`slurmd-pods=…`); `key` is `namespace/name`.
    pub fn slurmd_pod_seen(&mut self, key: &str, slurm_name: &str, kube_node: Option<&str>) {
        if !matches!(self.mapping, Mapping::SlurmdPods(_)) {
            return;
        }
        match kube_node {
            Some(node) => self.set(key, slurm_name.to_string(), node.to_string()),
            None => self.remove(key),
        }
    }

    /// A source (node or slurmd pod) went away.
    pub fn remove(&mut self, source: &str) {
        if let Some((slurm, kube)) = self.sources.remove(source) {
            if let Some(list) = self.to_kube.get_mut(&slurm) {
                if let Some(i) = list.iter().position(|k| *k == kube) {
                    list.remove(i);
                }
                if list.is_empty() {
                    self.to_kube.remove(&slurm);
                }
            }
        }
    }

    fn set(&mut self, source: &str, slurm: String, kube: String) {
        if self.sources.get(source) == Some(&(slurm.clone(), kube.clone())) {
            return;
        }
        self.remove(source);
        self.to_kube
            .entry(slurm.clone())
            .or_default()
            .push(kube.clone());
        self.sources.insert(source.to_string(), (slurm, kube));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    #[test]
    fn parsing() {
        let cases = [
            ("identity", Ok(Mapping::Identity)),
            (
                "label=slurm.example/node",
                Ok(Mapping::Label("slurm.example/node".into())),
            ),
            (
                "slurmd-pods=app=slurmd",
                Ok(Mapping::SlurmdPods("app=slurmd".into())),
            ),
            ("label=", Err(())),
            ("labels=x", Err(())),
            ("", Err(())),
        ];
        for (input, want) in cases {
            let got = input.parse::<Mapping>().map_err(|_| ());
            assert_eq!(got, want, "{input}");
        }
        assert_eq!("label=k".parse::<Mapping>().unwrap().to_string(), "label=k");
    }

    #[test]
    fn identity_maps_names_to_themselves() {
        let map = NodeMap::new(Mapping::Identity);
        assert_eq!(map.kube_node("node-1"), Ok("node-1".into()));
        assert_eq!(map.slurm_node("node-1"), Some("node-1".into()));
    }

    #[test]
    fn label_mapping_follows_node_changes() {
        let mut map = NodeMap::new(Mapping::Label("slurm".into()));
        let labels = |v: &str| BTreeMap::from([("slurm".to_string(), v.to_string())]);
        map.node_seen("k-a", &labels("s1"));
        assert_eq!(map.kube_node("s1"), Ok("k-a".into()));
        assert_eq!(map.slurm_node("k-a"), Some("s1".into()));
        assert_eq!(map.kube_node("s2"), Err(Unmapped::None));

        map.node_seen("k-a", &labels("s2"));
        assert_eq!(map.kube_node("s1"), Err(Unmapped::None));
        assert_eq!(map.kube_node("s2"), Ok("k-a".into()));

        map.node_seen("k-b", &labels("s2"));
        assert_eq!(
            map.kube_node("s2"),
            Err(Unmapped::Ambiguous(vec!["k-a".into(), "k-b".into()]))
        );
        map.remove("k-a");
        assert_eq!(map.kube_node("s2"), Ok("k-b".into()));
        map.node_seen("k-b", &BTreeMap::new());
        assert_eq!(map.kube_node("s2"), Err(Unmapped::None));
    }

    #[test]
    fn slurmd_pods_map_by_where_they_run() {
        let mut map = NodeMap::new(Mapping::SlurmdPods("app=slurmd".into()));
        map.slurmd_pod_seen("slurm/slurmd-0", "node-0", None);
        assert_eq!(
            map.kube_node("node-0"),
            Err(Unmapped::None),
            "not scheduled yet"
        );
        map.slurmd_pod_seen("slurm/slurmd-0", "node-0", Some("kube-7"));
        assert_eq!(map.kube_node("node-0"), Ok("kube-7".into()));
        map.remove("slurm/slurmd-0");
        assert_eq!(map.kube_node("node-0"), Err(Unmapped::None));
    }
}
