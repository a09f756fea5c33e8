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

#[cfg(test)]
mod tests {
    use super::wildcard_match;

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
