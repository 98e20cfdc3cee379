//! Slurm hostlist expressions (`node-[0-2,5]`, `a[01-03]b`, `r[1-2]-n[1-2]`), expanded into
//! node names the way `scontrol show hostnames` does, keeping zero padding.

use thiserror::Error;

/// A hostlist expression Slurm would not have produced.
#[derive(Debug, Error, PartialEq, Eq)]
#[error("invalid hostlist `{expr}`: {why}")]
pub struct HostlistError {
    /// The whole expression as received.
    pub expr: String,
    /// What is wrong with it.
    pub why: &'static str,
}

/// Guards against a corrupt answer expanding into millions of names.
const MAX_HOSTS: usize = 1 << 20;

/// Expands a Slurm hostlist into node names, in order. An empty string is no node.
pub fn expand(expr: &str) -> Result<Vec<String>, HostlistError> {
    let err = |why| HostlistError {
        expr: expr.to_string(),
        why,
    };
    let mut out = Vec::new();
    for item in split_top_level(expr).map_err(err)? {
        if item.is_empty() {
            continue;
        }
        let mut names = vec![String::new()];
        let mut rest = item;
        while let Some(open) = rest.find('[') {
            let close = rest[open..].find(']').ok_or_else(|| err("unclosed `[`"))? + open;
            let prefix = &rest[..open];
            let ranges = parse_ranges(&rest[open + 1..close]).map_err(err)?;
            let mut next = Vec::with_capacity(names.len() * ranges.len());
            for name in &names {
                for suffix in &ranges {
                    next.push(format!("{name}{prefix}{suffix}"));
                }
            }
            if next.len() + out.len() > MAX_HOSTS {
                return Err(err("expands to too many hosts"));
            }
            names = next;
            rest = &rest[close + 1..];
        }
        if rest.contains(']') {
            return Err(err("unmatched `]`"));
        }
        out.extend(names.into_iter().map(|n| format!("{n}{rest}")));
    }
    Ok(out)
}

/// Splits at commas that are not inside brackets.
fn split_top_level(expr: &str) -> Result<Vec<&str>, &'static str> {
    let mut parts = Vec::new();
    let mut depth = 0usize;
    let mut start = 0;
    for (i, c) in expr.char_indices() {
        match c {
            '[' if depth > 0 => return Err("nested `[`"),
            '[' => depth += 1,
            ']' if depth == 0 => return Err("unmatched `]`"),
            ']' => depth -= 1,
            ',' if depth == 0 => {
                parts.push(expr[start..i].trim());
                start = i + 1;
            }
            _ => {}
        }
    }
    if depth != 0 {
        return Err("unclosed `[`");
    }
    parts.push(expr[start..].trim());
    Ok(parts)
}

/// `0-2,5` or `01-03` into the listed numbers, formatted with the width of the lower bound
/// when it has a leading zero (Slurm's padding rule).
fn parse_ranges(body: &str) -> Result<Vec<String>, &'static str> {
    let mut out = Vec::new();
    for range in body.split(',') {
        let (lo, hi) = match range.split_once('-') {
            Some((lo, hi)) => (lo.trim(), hi.trim()),
            None => (range.trim(), range.trim()),
        };
        if lo.is_empty() || !lo.bytes().all(|b| b.is_ascii_digit()) {
            return Err("range bound is not a number");
        }
        if hi.is_empty() || !hi.bytes().all(|b| b.is_ascii_digit()) {
            return Err("range bound is not a number");
        }
        let width = if lo.len() > 1 && lo.starts_with('0') {
            lo.len()
        } else {
            0
        };
        let lo_n: u64 = lo.parse().map_err(|_| "range bound too large")?;
        let hi_n: u64 = hi.parse().map_err(|_| "range bound too large")?;
        if hi_n < lo_n {
            return Err("range runs backwards");
        }
        if (hi_n - lo_n) as usize >= MAX_HOSTS {
            return Err("expands to too many hosts");
        }
        out.extend((lo_n..=hi_n).map(|n| format!("{n:0width$}")));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expands_the_forms_slurm_prints() {
        let cases: &[(&str, &[&str])] = &[
            ("", &[]),
            ("node-0", &["node-0"]),
            ("node-[0-2,5]", &["node-0", "node-1", "node-2", "node-5"]),
            ("sim-node-[0-1]", &["sim-node-0", "sim-node-1"]),
            ("a[01-03]b", &["a01b", "a02b", "a03b"]),
            ("n[8-10]", &["n8", "n9", "n10"]),
            ("n[098-101]", &["n098", "n099", "n100", "n101"]),
            ("node-0,node-[2-3]", &["node-0", "node-2", "node-3"]),
            ("r[1-2]-n[1-2]", &["r1-n1", "r1-n2", "r2-n1", "r2-n2"]),
            ("gpu[7]", &["gpu7"]),
        ];
        for (expr, want) in cases {
            assert_eq!(expand(expr).unwrap(), *want, "{expr}");
        }
    }

    #[test]
    fn refuses_malformed_expressions() {
        for expr in [
            "n[1-",
            "n[a-b]",
            "n[3-1]",
            "n]1[",
            "n[[1]]",
            "n[0-99999999]",
        ] {
            assert!(expand(expr).is_err(), "{expr} should be refused");
        }
    }
}
