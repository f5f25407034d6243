//! `--name value` / `--name=value` flags with bounds, for the load runners.
//!
//! The runners take a handful of numeric flags; a full CLI framework would add a dependency
//! for no gain. Unknown flags and out-of-range values are errors, so a typo never silently
//! runs the default.

use std::collections::BTreeMap;
use std::time::Duration;

use crate::{BenchError, Result, fail};

/// Flags parsed from the command line; read each with a `take_*` method, then [`Flags::finish`].
#[derive(Debug, Default)]
pub struct Flags {
    values: BTreeMap<String, Option<String>>,
}

impl Flags {
    /// Parses `args` (without the program name). `switches` are flags that take no value.
    pub fn parse(args: impl IntoIterator<Item = String>, switches: &[&str]) -> Result<Self> {
        let mut values = BTreeMap::new();
        let mut args = args.into_iter();
        while let Some(arg) = args.next() {
            let Some(name) = arg.strip_prefix("--") else {
                return fail(format!("unexpected argument {arg:?}; flags look like --name value"));
            };
            let (name, value) = match name.split_once('=') {
                Some((n, v)) => (n.to_owned(), Some(v.to_owned())),
                None if switches.contains(&name) => (name.to_owned(), None),
                None => {
                    let Some(v) = args.next() else {
                        return fail(format!("--{name} needs a value"));
                    };
                    (name.to_owned(), Some(v))
                }
            };
            values.insert(name, value);
        }
        Ok(Self { values })
    }

    /// True if switch `--name` was given.
    pub fn switch(&mut self, name: &str) -> bool {
        self.values.remove(name).is_some()
    }

    /// The number given as `--name`, or `default`; must lie in `min..=max`.
    pub fn number(&mut self, name: &str, default: u64, min: u64, max: u64) -> Result<u64> {
        let Some(value) = self.values.remove(name) else {
            return Ok(default);
        };
        let value = value.unwrap_or_default();
        match value.replace('_', "").parse::<u64>() {
            Ok(n) if (min..=max).contains(&n) => Ok(n),
            _ => fail(format!("--{name} {value:?}: expected a whole number in {min}..={max}")),
        }
    }

    /// A comma-separated list of numbers given as `--name` (e.g. `1000,10000`), or `default`;
    /// each must lie in `min..=max`, and the list must be strictly increasing.
    pub fn numbers(&mut self, name: &str, default: &[u64], min: u64, max: u64) -> Result<Vec<u64>> {
        let Some(value) = self.values.remove(name) else {
            return Ok(default.to_vec());
        };
        let value = value.unwrap_or_default();
        let parsed: Option<Vec<u64>> = value
            .split(',')
            .map(|n| {
                n.trim().replace('_', "").parse::<u64>().ok().filter(|n| (min..=max).contains(n))
            })
            .collect();
        match parsed {
            Some(list) if !list.is_empty() && list.windows(2).all(|w| w[0] < w[1]) => Ok(list),
            _ => fail(format!(
                "--{name} {value:?}: expected increasing whole numbers in {min}..={max}, \
                 separated by commas (e.g. 1000,10000)"
            )),
        }
    }

    /// Seconds given as `--name` (a whole number), or `default`; must lie in `min..=max`.
    pub fn seconds(&mut self, name: &str, default: u64, min: u64, max: u64) -> Result<Duration> {
        self.number(name, default, min, max).map(Duration::from_secs)
    }

    /// Fails if any flag was given that no `take_*` call asked for.
    pub fn finish(self) -> Result<()> {
        match self.values.keys().next() {
            None => Ok(()),
            Some(name) => Err(BenchError(format!("unknown flag --{name}; see --help"))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Flags {
        Flags::parse(args.iter().map(|s| s.to_string()), &["quick"]).unwrap()
    }

    #[test]
    fn values_switches_and_defaults_are_read_and_unknown_flags_refused() {
        let mut f = parse(&["--clients", "1_000", "--quick", "--secs=5"]);
        assert!(f.switch("quick"));
        assert_eq!(f.number("clients", 1, 1, 5000).unwrap(), 1000);
        assert_eq!(f.seconds("secs", 60, 1, 600).unwrap(), Duration::from_secs(5));
        assert_eq!(f.number("absent", 7, 1, 10).unwrap(), 7);
        f.finish().unwrap();
        let f = parse(&["--typo", "1"]);
        assert!(f.finish().unwrap_err().0.contains("--typo"));
    }

    #[test]
    fn out_of_range_and_missing_values_are_errors() {
        let mut f = parse(&["--clients", "0"]);
        assert!(f.number("clients", 1, 1, 10).is_err());
        assert!(Flags::parse(["--clients".to_string()], &[]).is_err());
        assert!(Flags::parse(["clients".to_string()], &[]).is_err());
    }

    #[test]
    fn number_lists_are_increasing_and_bounded() {
        let mut f = parse(&["--sizes", "1_000,10000, 100000"]);
        assert_eq!(f.numbers("sizes", &[1], 1, 1_000_000).unwrap(), [1000, 10_000, 100_000]);
        assert_eq!(f.numbers("absent", &[5, 6], 1, 10).unwrap(), [5, 6]);
        for bad in ["10,5", "1,,2", "0,1", "x", "", "2000000"] {
            let mut f = parse(&["--sizes", bad]);
            let err = f.numbers("sizes", &[1], 1, 1_000_000).unwrap_err();
            assert!(err.0.contains("--sizes"), "{bad}: {}", err.0);
        }
    }
}
