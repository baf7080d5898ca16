//! Parameter groups: an optimizer's settings by parameter-name prefix, the longest matching
//! prefix winning, and the learning-rate factor that scales every group at once.

use crate::Result;

/// The settings of one group of an optimizer: its configuration type (`SgdConfig`,
/// `AdamConfig`), which can check itself and names its base learning rate.
pub(crate) trait GroupConfig: Copy {
    /// The base learning rate, the one a factor of 1 gives.
    fn lr(&self) -> f64;
    /// Checks every setting, naming the first one out of range.
    fn validate(&self) -> Result<()>;
}

/// The default settings, the groups by prefix, and the factor that scales every group's lr.
#[derive(Clone, Debug)]
pub(crate) struct Groups<C> {
    defaults: C,
    /// Prefix and settings, in the order they were added.
    by_prefix: Vec<(String, C)>,
    lr_factor: f64,
}

impl<C: GroupConfig> Groups<C> {
    /// The default group alone, after checking its settings.
    pub(crate) fn new(defaults: C) -> Result<Self> {
        defaults.validate()?;
        Ok(Groups {
            defaults,
            by_prefix: Vec::new(),
            lr_factor: 1.0,
        })
    }

    /// Adds a group for the parameters under `prefix`, or replaces the settings of the group
    /// with that prefix.
    pub(crate) fn add(&mut self, prefix: &str, config: C) -> Result<()> {
        validate_prefix(prefix)?;
        config.validate()?;
        match self.by_prefix.iter_mut().find(|(p, _)| p == prefix) {
            Some((_, c)) => *c = config,
            None => self.by_prefix.push((prefix.to_owned(), config)),
        }
        Ok(())
    }

    /// The settings of the parameter called `name`: those of the longest prefix it falls
    /// under (`name` itself, or `prefix.` followed by the rest), else the defaults.
    pub(crate) fn resolve(&self, name: &str) -> &C {
        self.by_prefix
            .iter()
            .filter(|(prefix, _)| under(name, prefix))
            .max_by_key(|(prefix, _)| prefix.len())
            .map_or(&self.defaults, |(_, c)| c)
    }

    /// The default group's base learning rate.
    pub(crate) fn base_lr(&self) -> f64 {
        self.defaults.lr()
    }

    /// The factor every group's base learning rate is multiplied by.
    pub(crate) fn lr_factor(&self) -> f64 {
        self.lr_factor
    }

    /// Sets the factor.
    ///
    /// # Panics
    /// If `factor` is negative, infinite or NaN.
    #[track_caller]
    pub(crate) fn set_lr_factor(&mut self, factor: f64) {
        assert!(
            factor >= 0.0 && factor.is_finite(),
            "the learning-rate factor must be non-negative and finite, got {factor}"
        );
        self.lr_factor = factor;
    }

    /// Sets the factor that makes the default group's learning rate `lr`.
    ///
    /// # Panics
    /// If `lr` is negative, infinite or NaN, or the default group's base lr is 0 and `lr`
    /// is not.
    #[track_caller]
    pub(crate) fn set_lr(&mut self, lr: f64) {
        assert!(
            lr >= 0.0 && lr.is_finite(),
            "the learning rate must be non-negative and finite, got {lr}"
        );
        let base = self.base_lr();
        if lr == 0.0 {
            self.lr_factor = 0.0;
        } else {
            assert!(
                base > 0.0,
                "cannot set the learning rate to {lr}: the default group's base learning \
                 rate is 0, so no factor scales it there; give it a positive lr"
            );
            self.set_lr_factor(lr / base);
        }
    }
}

/// Whether `name` is `prefix` or starts with `prefix.`.
fn under(name: &str, prefix: &str) -> bool {
    name.strip_prefix(prefix)
        .is_some_and(|rest| rest.is_empty() || rest.starts_with('.'))
}

/// A group prefix is a parameter name or a leading part of one: non-empty dot-separated
/// segments of ASCII letters, digits, `_` and `-`.
fn validate_prefix(prefix: &str) -> Result<()> {
    let bad = |reason| {
        Err(stograd::Error::InvalidParamName {
            name: prefix.to_owned(),
            reason,
        }
        .into())
    };
    if prefix.is_empty() {
        return bad("a group prefix is empty; the optimizer's own settings are the default group");
    }
    for segment in prefix.split('.') {
        if segment.is_empty() {
            return bad("a dot-separated segment of the group prefix is empty");
        }
        if !segment
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
        {
            return bad("segments may hold only ASCII letters, digits, '_' and '-'");
        }
    }
    Ok(())
}

/// The error for a setting outside its range.
pub(super) fn invalid<T>(name: &'static str, constraint: &'static str, value: f64) -> Result<T> {
    Err(crate::Error::InvalidArgument {
        name,
        constraint,
        value,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Clone, Copy, Debug, PartialEq)]
    struct Lr(f64);

    impl GroupConfig for Lr {
        fn lr(&self) -> f64 {
            self.0
        }
        fn validate(&self) -> Result<()> {
            Ok(())
        }
    }

    #[test]
    fn longest_prefix_wins_at_segment_boundaries() {
        let mut groups = Groups::new(Lr(1.0)).unwrap();
        groups.add("encoder", Lr(2.0)).unwrap();
        groups.add("encoder.fc1", Lr(3.0)).unwrap();
        groups.add("decoder.fc2.bias", Lr(4.0)).unwrap();
        assert_eq!(groups.resolve("encoder.fc1.weight"), &Lr(3.0));
        assert_eq!(groups.resolve("encoder.fc10.weight"), &Lr(2.0));
        assert_eq!(groups.resolve("encoder"), &Lr(2.0));
        assert_eq!(groups.resolve("encoder2.bias"), &Lr(1.0));
        assert_eq!(groups.resolve("decoder.fc2.bias"), &Lr(4.0));
        assert_eq!(groups.resolve("decoder.fc2.weight"), &Lr(1.0));
        groups.add("encoder", Lr(5.0)).unwrap();
        assert_eq!(groups.resolve("encoder.fc2.weight"), &Lr(5.0));
    }

    #[test]
    fn bad_prefixes_are_named() {
        let mut groups = Groups::new(Lr(1.0)).unwrap();
        for bad in ["", "encoder.", ".x", "a b"] {
            match groups.add(bad, Lr(1.0)) {
                Err(crate::Error::Engine(stograd::Error::InvalidParamName { name, .. })) => {
                    assert_eq!(name, bad)
                }
                other => panic!("{bad:?}: {other:?}"),
            }
        }
    }

    #[test]
    fn set_lr_scales_through_the_default_group() {
        let mut groups = Groups::new(Lr(0.1)).unwrap();
        groups.set_lr(0.05);
        assert_eq!(groups.lr_factor(), 0.5);
        groups.set_lr(0.0);
        assert_eq!(groups.lr_factor(), 0.0);
    }
}
