//! Checks of what `deploy/` installs: the kustomization renders and every object is a valid
//! Kubernetes object (`manifests`), the admission policy's CEL agrees with the scheduler's
//! own rules and words (`admission`), the RBAC roles grant exactly what the scheduler uses
//! against the API server double (`rbac`), and the binary the container image carries runs
//! (`image`).
//!
//! `kubectl` renders the kustomization; where it is missing the tests that need it say
//! SKIPPED and return. The RBAC scenario also needs a real Slurm cluster
//! (`scripts/slurm-cluster start`, exports in the environment) and skips without one.

mod deploy {
    pub mod admission;
    pub mod image;
    pub mod manifests;
    pub mod rbac;
    pub mod render;
}
