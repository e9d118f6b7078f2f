//! kubeforge-templates owns every file kubeforge renders onto a node: the `.tera` sources under
//! `templates/files/` are embedded at compile time and each has a typed context. It renders
//! strictly (an undefined variable is an error) and never does I/O or makes decisions about the
//! cluster: callers pass fully decided contexts.
