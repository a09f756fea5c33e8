//! IAM-style wildcard matching, shared by the endpoint policy evaluator
//! ([`crate::network::policy`]) and the tenant guard ([`crate::reconcile::guard`]).

/// IAM wildcard match: `*` any run of characters, `?` one character.
pub fn wildcard_match(pattern: &str, text: &str, case_insensitive: bool) -> bool {
    let p: Vec<char> = if case_insensitive {
        pattern.to_lowercase().chars().collect()
    } else {
        pattern.chars().collect()
    };
    let t: Vec<char> = if case_insensitive {
        text.to_lowercase().chars().collect()
    } else {
        text.chars().collect()
    };
    // Iterative matcher with backtracking to the last `*`.
    let (mut pi, mut ti) = (0usize, 0usize);
    let mut star: Option<(usize, usize)> = None;
    while ti < t.len() {
        if pi < p.len() && (p[pi] == '?' || p[pi] == t[ti]) {
            pi += 1;
            ti += 1;
        } else if pi < p.len() && p[pi] == '*' {
            star = Some((pi, ti));
            pi += 1;
        } else if let Some((sp, st)) = star {
            pi = sp + 1;
            ti = st + 1;
            star = Some((sp, st + 1));
        } else {
            return false;
        }
    }
    while pi < p.len() && p[pi] == '*' {
        pi += 1;
    }
    pi == p.len()
}

/// The positions of `pattern` that can be reached after reading `text`: the states of the
/// pattern's automaton, each a count of pattern characters consumed.
fn states_after(pattern: &[char], text: &[char]) -> Vec<usize> {
    // A `*` may match nothing, so a position before a `*` also reaches the position after it.
    let close = |states: &mut Vec<usize>| {
        let mut i = 0;
        while i < states.len() {
            let s = states[i];
            if s < pattern.len() && pattern[s] == '*' && !states.contains(&(s + 1)) {
                states.push(s + 1);
            }
            i += 1;
        }
    };
    let mut states = vec![0];
    close(&mut states);
    for &c in text {
        let mut next = Vec::new();
        for &s in &states {
            let reached = match pattern.get(s) {
                Some('*') => Some(s),
                Some(&p) if p == '?' || p == c => Some(s + 1),
                _ => None,
            };
            if let Some(r) = reached.filter(|r| !next.contains(r)) {
                next.push(r);
            }
        }
        close(&mut next);
        if next.is_empty() {
            return next;
        }
        states = next;
    }
    states
}

fn chars(s: &str, case_insensitive: bool) -> Vec<char> {
    if case_insensitive {
        s.to_lowercase().chars().collect()
    } else {
        s.chars().collect()
    }
}

/// Whether the pattern matches *some* text that starts with `prefix` (the prefix itself
/// included): whether a policy naming `pattern` touches anything under a key prefix.
pub fn matches_some_with_prefix(pattern: &str, prefix: &str, case_insensitive: bool) -> bool {
    let p = chars(pattern, case_insensitive);
    // Whatever the pattern still expects after the prefix, some text supplies it.
    !states_after(&p, &chars(prefix, case_insensitive)).is_empty()
}

/// Whether the pattern matches *every* text that starts with `prefix`: whether a policy
/// naming `pattern` covers everything under a key prefix.
pub fn matches_every_with_prefix(pattern: &str, prefix: &str, case_insensitive: bool) -> bool {
    let p = chars(pattern, case_insensitive);
    states_after(&p, &chars(prefix, case_insensitive))
        .into_iter()
        .any(|s| s < p.len() && p[s..].iter().all(|&c| c == '*'))
}

#[cfg(test)]
mod tests {
    use super::{matches_every_with_prefix, matches_some_with_prefix, wildcard_match};

    #[test]
    fn patterns_against_everything_under_a_prefix() {
        let under_in = "arn:aws:s3:::b/in/";
        // A sub-prefix, an object under it, a wildcard in the middle: some of it, not all.
        for p in [
            "arn:aws:s3:::b/in/secret/*",
            "arn:aws:s3:::b/in/x",
            "arn:aws:s3:::b/*/secret",
            "arn:aws:s3:::b/in/",
        ] {
            assert!(matches_some_with_prefix(p, under_in, false), "{p}");
            assert!(!matches_every_with_prefix(p, under_in, false), "{p}");
        }
        // The prefix's own pattern, a parent's, everything: all of it.
        for p in [
            "arn:aws:s3:::b/in/*",
            "arn:aws:s3:::b/*",
            "*",
            "arn:aws:s3:::b?in/**",
            "arn:aws:s3:::*",
        ] {
            assert!(matches_every_with_prefix(p, under_in, false), "{p}");
            assert!(matches_some_with_prefix(p, under_in, false), "{p}");
        }
        // Elsewhere: nothing of it.
        for p in [
            "arn:aws:s3:::b/out/*",
            "arn:aws:s3:::b/i",
            "arn:aws:s3:::c/*",
            "arn:aws:s3:::B/in/*",
        ] {
            assert!(!matches_some_with_prefix(p, under_in, false), "{p}");
            assert!(!matches_every_with_prefix(p, under_in, false), "{p}");
        }
        assert!(matches_every_with_prefix("ARN:AWS:S3:::B/*", under_in, true));
        assert!(matches_some_with_prefix("", "", false));
        assert!(!matches_every_with_prefix("", "", false));
    }

    #[test]
    fn star_and_question_mark() {
        assert!(wildcard_match("s3:Get*", "s3:GetObject", false));
        assert!(wildcard_match("arn:aws:s3:::b?t/*", "arn:aws:s3:::bat/x/y", false));
        assert!(!wildcard_match("arn:aws:s3:::b?t/*", "arn:aws:s3:::boat/x", false));
        assert!(wildcard_match("a*b*c", "axxbyyc", false));
        assert!(!wildcard_match("a*b*c", "axxbyy", false));
        assert!(wildcard_match("a*b", "aXbXb", false), "backtracks past an early match");
    }

    #[test]
    fn empty_pattern_and_text() {
        assert!(wildcard_match("*", "", false));
        assert!(wildcard_match("**", "", false));
        assert!(wildcard_match("", "", false));
        assert!(!wildcard_match("", "a", false));
        assert!(!wildcard_match("?", "", false));
    }

    #[test]
    fn case_sensitivity_is_the_callers_choice() {
        assert!(wildcard_match("S3:GET*", "s3:getobject", true));
        assert!(!wildcard_match("S3:GET*", "s3:getobject", false));
    }

    #[test]
    fn question_mark_is_one_character_not_one_byte() {
        assert!(wildcard_match("team-?", "team-é", false));
        assert!(!wildcard_match("team-?", "team-éé", false));
    }

    #[test]
    fn no_wildcard_means_equality() {
        assert!(wildcard_match("subnet-aaa1", "subnet-aaa1", false));
        assert!(!wildcard_match("subnet-aaa1", "subnet-aaa10", false));
        assert!(!wildcard_match("subnet-aaa1", "subnet-aaa", false));
    }
}
