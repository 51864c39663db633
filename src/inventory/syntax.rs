//! Syntax of the small strings an inventory holds: node names, DNS names, Kubernetes
//! labels, taints and quantities. Each check returns why a value is wrong, in words an
//! admin can act on.

/// A DNS-1123 label: what Kubernetes accepts as a node or namespace name, and what the
/// cluster name must be because it names a directory and resources.
pub fn dns_label(s: &str) -> Result<(), String> {
    if s.is_empty() {
        return Err("it is empty".into());
    }
    if s.len() > 63 {
        return Err(format!(
            "it is {} characters long; the limit is 63",
            s.len()
        ));
    }
    if let Some(c) = s
        .chars()
        .find(|c| !(c.is_ascii_lowercase() || c.is_ascii_digit() || *c == '-'))
    {
        return Err(format!(
            "{c:?} is not allowed; use lowercase letters, digits and '-'"
        ));
    }
    if s.starts_with('-') || s.ends_with('-') {
        return Err("it must start and end with a letter or digit".into());
    }
    Ok(())
}

/// A lower-cased version of `s` that is a valid DNS-1123 label, for hints.
pub fn to_dns_label(s: &str) -> String {
    let mapped: String = s
        .to_ascii_lowercase()
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
        .collect();
    mapped.trim_matches('-').chars().take(63).collect()
}

/// A DNS name (one or more labels separated by dots; upper case allowed).
pub fn dns_name(s: &str) -> Result<(), String> {
    if s.is_empty() || s.len() > 253 {
        return Err("a DNS name has 1 to 253 characters".into());
    }
    for label in s.trim_end_matches('.').split('.') {
        if label.is_empty() || label.len() > 63 {
            return Err(format!("{s:?} has an empty or over-long part"));
        }
        if !label
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        {
            return Err(format!(
                "{s:?} may hold only letters, digits, '-', '_' and '.'"
            ));
        }
        if label.starts_with('-') || label.ends_with('-') {
            return Err(format!("a part of {s:?} starts or ends with '-'"));
        }
    }
    Ok(())
}

fn label_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 63
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
        && s.starts_with(|c: char| c.is_ascii_alphanumeric())
        && s.ends_with(|c: char| c.is_ascii_alphanumeric())
}

/// A Kubernetes label or taint key: `[prefix/]name`.
pub fn label_key(s: &str) -> Result<(), String> {
    let (prefix, name) = match s.split_once('/') {
        Some((prefix, name)) => (Some(prefix), name),
        None => (None, s),
    };
    if let Some(prefix) = prefix
        && (prefix.len() > 253 || dns_name(prefix).is_err() || prefix.contains('_'))
    {
        return Err(format!("the prefix {prefix:?} is not a DNS subdomain"));
    }
    if !label_name(name) {
        return Err(format!(
            "{name:?} is not a valid label name: up to 63 letters, digits, '-', '_', '.', starting and ending with a letter or digit"
        ));
    }
    Ok(())
}

/// A Kubernetes label value: empty, or like a label name.
pub fn label_value(s: &str) -> Result<(), String> {
    if s.is_empty() || label_name(s) {
        Ok(())
    } else {
        Err(format!(
            "{s:?} is not a valid label value: up to 63 letters, digits, '-', '_', '.', starting and ending with a letter or digit"
        ))
    }
}

/// A taint: `key[=value]:Effect`.
pub fn taint(s: &str) -> Result<(), String> {
    let Some((kv, effect)) = s.rsplit_once(':') else {
        return Err("a taint is written key=value:Effect, e.g. gpu=true:NoSchedule".into());
    };
    if !matches!(effect, "NoSchedule" | "PreferNoSchedule" | "NoExecute") {
        return Err(format!(
            "effect {effect:?} is not one of NoSchedule, PreferNoSchedule, NoExecute"
        ));
    }
    let (key, value) = kv.split_once('=').unwrap_or((kv, ""));
    label_key(key)?;
    label_value(value)
}

/// A Kubernetes quantity such as `12.5`, `500m`, `64Gi` or `1Ti`.
pub fn quantity(s: &str) -> Result<(), String> {
    const SUFFIXES: &[&str] = &[
        "Ki", "Mi", "Gi", "Ti", "Pi", "Ei", "m", "k", "M", "G", "T", "P", "E", "",
    ];
    let number_part = SUFFIXES
        .iter()
        .find_map(|suf| s.strip_suffix(suf).filter(|n| !n.is_empty()))
        .unwrap_or(s);
    let mut parts = number_part.splitn(2, '.');
    let whole = parts.next().unwrap_or("");
    let frac = parts.next();
    let digits = |t: &str| !t.is_empty() && t.chars().all(|c| c.is_ascii_digit());
    if digits(whole) && frac.is_none_or(digits) {
        Ok(())
    } else {
        Err(format!(
            "{s:?} is not a Kubernetes quantity (a number with an optional suffix such as m, Gi, Ti)"
        ))
    }
}

/// `host[:port]` split into the host (without IPv6 brackets) and the port, unchecked.
pub fn split_host_port(s: &str) -> (&str, Option<&str>) {
    let (host, port) = match s.rsplit_once(':') {
        Some((host, port)) if !host.ends_with(']') || s.starts_with('[') => (host, Some(port)),
        _ => (s, None),
    };
    (host.trim_start_matches('[').trim_end_matches(']'), port)
}

/// A registry address: `host[:port]`, without scheme or path.
pub fn registry_address(s: &str) -> Result<(), String> {
    if s.contains("://") {
        return Err("write the address without a scheme (no https://)".into());
    }
    if s.contains('/') {
        return Err("write only host[:port], without a path".into());
    }
    let (host, port) = split_host_port(s);
    if let Some(port) = port
        && port.parse::<u16>().is_err()
    {
        return Err(format!("{port:?} is not a port number"));
    }
    if host.parse::<std::net::IpAddr>().is_ok() {
        return Ok(());
    }
    dns_name(host)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_and_names() {
        assert!(dns_label("gpu01").is_ok());
        assert!(dns_label("GPU01").is_err());
        assert!(dns_label("-a").is_err());
        assert_eq!(to_dns_label("GPU_01"), "gpu-01");
        assert!(label_key("nvidia.com/gpu.product").is_ok());
        assert!(label_key("gpu type").is_err());
        assert!(label_value("").is_ok());
        assert!(label_value("Tesla-T4").is_ok());
        assert!(label_value("-x").is_err());
    }

    #[test]
    fn taints_and_quantities() {
        assert!(taint("gpu=true:NoSchedule").is_ok());
        assert!(taint("dedicated:NoExecute").is_ok());
        assert!(taint("gpu=true").is_err());
        assert!(taint("gpu=true:Never").is_err());
        for q in ["12.5", "500m", "64Gi", "1Ti", "4", "100G"] {
            assert!(quantity(q).is_ok(), "{q}");
        }
        for q in ["", "Gi", "12.5.1", "lots", "1 Gi"] {
            assert!(quantity(q).is_err(), "{q}");
        }
    }

    #[test]
    fn registry_addresses() {
        assert!(registry_address("registry.lab:5000").is_ok());
        assert!(registry_address("10.0.0.9").is_ok());
        assert!(registry_address("https://registry.lab").is_err());
        assert!(registry_address("registry.lab/library").is_err());
        assert!(registry_address("registry.lab:http").is_err());
    }
}
