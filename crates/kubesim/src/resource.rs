//! The resource kinds the double serves and what distinguishes them: names, scope,
//! storage, supported field selectors and delete/create-on-update behaviour.
//!
//! Events are stored once, in their core `v1` form; `events.k8s.io/v1` is a view of the
//! same storage, so both APIs list each other's events, as kube-apiserver does.

/// A served resource, as addressed in a URL.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Resource {
    /// `v1` pods.
    Pods,
    /// `v1` nodes.
    Nodes,
    /// `v1` namespaces.
    Namespaces,
    /// `coordination.k8s.io/v1` leases.
    Leases,
    /// `v1` events.
    CoreEvents,
    /// `events.k8s.io/v1` events (same storage as [`Resource::CoreEvents`]).
    Events,
}

/// Storage tables: one per kind of stored object.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Table {
    /// Pods.
    Pods,
    /// Nodes.
    Nodes,
    /// Namespaces.
    Namespaces,
    /// Leases.
    Leases,
    /// Events of both APIs, stored as core `v1`.
    Events,
}

impl Table {
    /// Every table, in a fixed order.
    pub const ALL: [Table; 5] = [
        Table::Pods,
        Table::Nodes,
        Table::Namespaces,
        Table::Leases,
        Table::Events,
    ];
}

impl Resource {
    /// Every served resource.
    pub const ALL: [Resource; 6] = [
        Resource::Pods,
        Resource::Nodes,
        Resource::Namespaces,
        Resource::Leases,
        Resource::CoreEvents,
        Resource::Events,
    ];

    /// Find a resource by API group and plural name.
    pub fn from_path(group: &str, plural: &str) -> Option<Resource> {
        match (group, plural) {
            ("", "pods") => Some(Resource::Pods),
            ("", "nodes") => Some(Resource::Nodes),
            ("", "namespaces") => Some(Resource::Namespaces),
            ("", "events") => Some(Resource::CoreEvents),
            ("coordination.k8s.io", "leases") => Some(Resource::Leases),
            ("events.k8s.io", "events") => Some(Resource::Events),
            _ => None,
        }
    }

    /// The storage table.
    pub fn table(self) -> Table {
        match self {
            Resource::Pods => Table::Pods,
            Resource::Nodes => Table::Nodes,
            Resource::Namespaces => Table::Namespaces,
            Resource::Leases => Table::Leases,
            Resource::CoreEvents | Resource::Events => Table::Events,
        }
    }

    /// API group (empty for core).
    pub fn group(self) -> &'static str {
        match self {
            Resource::Leases => "coordination.k8s.io",
            Resource::Events => "events.k8s.io",
            _ => "",
        }
    }

    /// `apiVersion` of the objects.
    pub fn api_version(self) -> &'static str {
        match self {
            Resource::Leases => "coordination.k8s.io/v1",
            Resource::Events => "events.k8s.io/v1",
            _ => "v1",
        }
    }

    /// Plural name as in URLs.
    pub fn plural(self) -> &'static str {
        match self {
            Resource::Pods => "pods",
            Resource::Nodes => "nodes",
            Resource::Namespaces => "namespaces",
            Resource::Leases => "leases",
            Resource::CoreEvents | Resource::Events => "events",
        }
    }

    /// Singular name, for discovery.
    pub fn singular(self) -> &'static str {
        match self {
            Resource::Pods => "pod",
            Resource::Nodes => "node",
            Resource::Namespaces => "namespace",
            Resource::Leases => "lease",
            Resource::CoreEvents | Resource::Events => "event",
        }
    }

    /// `kind` of the objects.
    pub fn kind(self) -> &'static str {
        match self {
            Resource::Pods => "Pod",
            Resource::Nodes => "Node",
            Resource::Namespaces => "Namespace",
            Resource::Leases => "Lease",
            Resource::CoreEvents | Resource::Events => "Event",
        }
    }

    /// Short names kubectl accepts.
    pub fn short_names(self) -> &'static [&'static str] {
        match self {
            Resource::Pods => &["po"],
            Resource::Nodes => &["no"],
            Resource::Namespaces => &["ns"],
            Resource::CoreEvents => &["ev"],
            Resource::Events => &["ev"],
            Resource::Leases => &[],
        }
    }

    /// Whether objects live in a namespace.
    pub fn namespaced(self) -> bool {
        !matches!(self, Resource::Nodes | Resource::Namespaces)
    }

    /// Whether a PUT on a missing object creates it (kube-apiserver's AllowCreateOnUpdate).
    pub fn create_on_update(self) -> bool {
        matches!(
            self,
            Resource::Leases | Resource::CoreEvents | Resource::Events
        )
    }

    /// Whether the resource has a `status` subresource.
    pub fn has_status(self) -> bool {
        matches!(
            self,
            Resource::Pods | Resource::Nodes | Resource::Namespaces
        )
    }

    /// Field labels the list and watch field selectors accept, besides `metadata.name`
    /// and (for namespaced resources) `metadata.namespace`.
    pub fn field_labels(self) -> &'static [&'static str] {
        match self {
            Resource::Pods => &[
                "spec.nodeName",
                "spec.schedulerName",
                "spec.restartPolicy",
                "spec.serviceAccountName",
                "spec.hostNetwork",
                "status.phase",
                "status.podIP",
                "status.nominatedNodeName",
            ],
            Resource::Nodes => &["spec.unschedulable"],
            Resource::Namespaces => &["status.phase"],
            Resource::Leases => &[],
            Resource::CoreEvents => &[
                "involvedObject.kind",
                "involvedObject.namespace",
                "involvedObject.name",
                "involvedObject.uid",
                "involvedObject.apiVersion",
                "involvedObject.resourceVersion",
                "involvedObject.fieldPath",
                "reason",
                "reportingComponent",
                "source",
                "type",
            ],
            Resource::Events => &[
                "regarding.kind",
                "regarding.namespace",
                "regarding.name",
                "regarding.uid",
                "regarding.apiVersion",
                "regarding.resourceVersion",
                "regarding.fieldPath",
                "reason",
                "reportingController",
                "type",
            ],
        }
    }

    /// Subresources served under this resource, for discovery.
    pub fn subresources(self) -> &'static [(&'static str, &'static str, &'static [&'static str])] {
        match self {
            Resource::Pods => &[
                ("binding", "Binding", &["create"]),
                ("eviction", "Eviction", &["create"]),
                ("status", "Pod", &["get", "patch", "update"]),
            ],
            Resource::Nodes => &[("status", "Node", &["get", "patch", "update"])],
            Resource::Namespaces => &[("status", "Namespace", &["get", "patch", "update"])],
            _ => &[],
        }
    }
}
