//! kubeforge-templates owns every file kubeforge renders onto a node: the `.tera` sources under
//! `templates/files/` are embedded at compile time and each has a typed context. It renders
//! strictly (an undefined variable is an error) and never does I/O or makes decisions about the
//! cluster: callers pass fully decided contexts.
//!
//! One context struct per template lives in [`contexts`]; [`render`] takes any of them. Strings
//! that land in YAML or systemd/haproxy syntax are quoted by the template (`quote` filter:
//! JSON-style double quotes, which YAML reads as a plain string), so a value can never change
//! the structure of the file it is written into.

pub mod contexts;

use std::sync::LazyLock;

use serde::Serialize;
use tera::{Kwargs, State, Tera};

/// A context struct bound to exactly one embedded template.
pub trait TemplateContext: Serialize {
    /// The template's path below `templates/files/`.
    const TEMPLATE: &'static str;
}

/// Why a template could not be rendered: always a kubeforge bug (contexts are typed), so the
/// message names the template and carries tera's line:column report.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("internal error: template {template} failed to render: {message}")]
pub struct TemplateError {
    pub template: &'static str,
    pub message: String,
}

macro_rules! embedded {
    ($($path:literal),* $(,)?) => {
        /// Every embedded template: (path below `templates/files/`, source).
        pub const TEMPLATES: &[(&str, &str)] = &[
            $(($path, include_str!(concat!("../files/", $path))),)*
        ];
    };
}

embedded!(
    "kubernetes/static-pod.yaml.tera",
    "kubernetes/audit-policy.yaml.tera",
    "kubernetes/encryption-config.yaml.tera",
    "kubernetes/authentication-config.yaml.tera",
    "etcd/etcd.service.tera",
    "etcd/sysusers.conf.tera",
    "kubelet/kubelet.service.tera",
    "kubelet/10-kubeadm.conf.tera",
    "kubelet/config.yaml.tera",
    "node/containerd-config.toml.tera",
    "node/crictl.yaml.tera",
    "node/sysctl.conf.tera",
    "node/modules-load.conf.tera",
    "loadbalancer/haproxy.cfg.tera",
    "loadbalancer/keepalived.conf.tera",
    "loadbalancer/keepalived-kubeforge.conf.tera",
    "loadbalancer/keepalived-interface.sh.tera",
    "backup/etcd-backup.yaml.tera",
    "backup/kubeforge-backup.service.tera",
    "backup/kubeforge-backup.timer.tera",
    "addons/coredns.yaml.tera",
    "addons/kube-proxy.yaml.tera",
    "addons/cni-flannel.yaml.tera",
);

/// The engine with every template parsed once. A parse error is a bug caught by the unit tests,
/// so it is kept as an error and reported on first render rather than panicking.
static ENGINE: LazyLock<Result<Tera, String>> = LazyLock::new(build_engine);

fn build_engine() -> Result<Tera, String> {
    let mut tera = Tera::new();
    // Nothing we render is HTML: never escape.
    tera.autoescape_on(Vec::<&str>::new());
    tera.register_filter("quote", quote);
    tera.register_filter("yaml", yaml_scalar);
    tera.add_raw_templates(TEMPLATES.iter().copied()).map_err(|e| report(&e))?;
    Ok(tera)
}

/// `"text"` with JSON escaping: a valid YAML double-quoted scalar and a valid TOML basic string.
fn quote(value: &str, _: Kwargs, _: &State) -> String {
    let mut out = String::with_capacity(value.len() + 2);
    out.push('"');
    for c in value.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            '\r' => out.push_str("\\r"),
            c if u32::from(c) < 0x20 || c == '\u{7f}' => {
                out.push_str(&format!("\\u{:04x}", u32::from(c)));
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// A YAML string scalar: bare when YAML (1.1 and 1.2) reads it back as the same string, as
/// kubeadm writes flags (`--profiling=false`), otherwise [`quote`]d.
fn yaml_scalar(value: &str, kwargs: Kwargs, state: &State) -> String {
    if plain_yaml_safe(value) { value.to_string() } else { quote(value, kwargs, state) }
}

fn plain_yaml_safe(value: &str) -> bool {
    const SPECIAL: [&str; 12] =
        ["true", "false", "yes", "no", "on", "off", "y", "n", "null", "~", "nan", "inf"];
    let Some(first) = value.chars().next() else { return false };
    let allowed = |c: char| c.is_ascii_alphanumeric() || "_./=,*+@%-".contains(c);
    let numeric_start = first.is_ascii_digit()
        || first == '.'
        || first == '+'
        || (first == '-' && value[1..].starts_with(|c: char| c.is_ascii_digit() || c == '.'));
    value.chars().all(|c| allowed(c) || c == ':')
        && !value.contains("::")
        && !value.ends_with(':')
        && !numeric_start
        && !"*&!|>%@,".contains(first)
        && !SPECIAL.contains(&value.to_ascii_lowercase().as_str())
}

fn report(e: &tera::Error) -> String {
    use std::error::Error as _;
    let mut message = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        message.push_str(": ");
        message.push_str(&s.to_string());
        source = s.source();
    }
    message
}

/// Renders the template bound to `C`.
pub fn render<C: TemplateContext>(context: &C) -> Result<String, TemplateError> {
    render_named(C::TEMPLATE, context)
}

fn render_named<C: Serialize>(
    template: &'static str,
    context: &C,
) -> Result<String, TemplateError> {
    let fail = |message: String| TemplateError { template, message };
    let tera = ENGINE.as_ref().map_err(|e| fail(e.clone()))?;
    let context = tera::Context::from_serialize(context).map_err(|e| fail(report(&e)))?;
    tera.render(template, &context).map_err(|e| fail(report(&e)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_template_parses() {
        if let Err(e) = ENGINE.as_ref() {
            panic!("{e}");
        }
        assert_eq!(ENGINE.as_ref().unwrap().get_template_names().count(), TEMPLATES.len());
    }

    #[test]
    fn undefined_variable_is_an_error() {
        #[derive(Serialize)]
        struct Missing {
            unrelated: u32,
        }
        // The audit policy has no variables, so use a template that needs some.
        let err = render_named("node/crictl.yaml.tera", &Missing { unrelated: 1 }).unwrap_err();
        assert_eq!(err.template, "node/crictl.yaml.tera");
        assert!(err.message.contains("runtime_endpoint"), "{}", err.message);
    }

    #[test]
    fn yaml_scalars_stay_strings() {
        for plain in
            ["--profiling=false", "kube-apiserver", "/etc/kubernetes/pki", "--controllers=*,x"]
        {
            assert!(plain_yaml_safe(plain), "{plain}");
        }
        for quoted in
            ["true", "No", "6443", "10.0.0.1", "250m x", "a: b", "", "-1", "*x", "x:", "::1"]
        {
            assert!(!plain_yaml_safe(quoted), "{quoted}");
        }
    }

    #[test]
    fn quote_escapes_structure() {
        let q = |s: &str| {
            let mut tera = Tera::new();
            tera.register_filter("quote", quote);
            tera.add_raw_template("t", "{{ v | quote }}").unwrap();
            let mut ctx = tera::Context::new();
            ctx.insert("v", s);
            tera.render("t", &ctx).unwrap()
        };
        assert_eq!(q("plain"), "\"plain\"");
        assert_eq!(q("a\"b\\c\nd"), "\"a\\\"b\\\\c\\nd\"");
        assert_eq!(q("\u{1}"), "\"\\u0001\"");
    }
}
