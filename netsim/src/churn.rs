//! Churn: how long a node stays online.
//!
//! Measurements of deployed P2P networks (Stutzbach & Rejaie, "Understanding churn in
//! peer-to-peer networks", IMC 2006) find session lengths heavy-tailed, fitted well by a Weibull
//! with shape below 1; the exponential (shape 1) is the memoryless textbook case. Both are drawn
//! by inverting their CDF with the caller's seeded RNG. New nodes arrive as a Poisson process at
//! rate `population / mean`, so the expected population stays where it started.

use std::time::Duration;

use rand::RngExt;
use rand_chacha::ChaCha8Rng;
use serde::Serialize;

/// The distribution of session lengths.
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
#[serde(rename_all = "kebab-case", tag = "kind")]
pub enum SessionDistribution {
    /// Exponential: memoryless, a node is as likely to leave in its first minute as later.
    Exponential,
    /// Weibull with this shape; below 1 most sessions are short and a few are very long.
    Weibull {
        /// The shape parameter (k). 0.5 is typical of measured file-sharing networks.
        shape: f64,
    },
}

/// Churn settings: sessions drawn from `distribution` with mean `mean_session`.
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub struct Churn {
    /// Mean session length.
    #[serde(serialize_with = "crate::report::as_secs")]
    pub mean_session: Duration,
    /// Session length distribution.
    pub distribution: SessionDistribution,
}

impl Churn {
    /// One session length.
    pub(crate) fn session(&self, rng: &mut ChaCha8Rng) -> Duration {
        let mean = self.mean_session.as_secs_f64();
        // 1 - U lies in (0, 1], so the logarithm is finite.
        let u: f64 = 1.0 - rng.random::<f64>();
        let secs = match self.distribution {
            SessionDistribution::Exponential => -mean * u.ln(),
            SessionDistribution::Weibull { shape } => {
                let shape = shape.max(0.05);
                let scale = mean / gamma(1.0 + 1.0 / shape);
                scale * (-u.ln()).powf(1.0 / shape)
            }
        };
        Duration::from_secs_f64(secs.clamp(0.0, 1e9))
    }

    /// What is left of the session of a node found online at a random instant: the equilibrium
    /// residual life, so that a network that starts under churn is already in its steady state
    /// (with fresh sessions instead, a heavy-tailed Weibull would make most starting nodes leave
    /// early while arrivals only replace them at the long-run rate). A node online at a random
    /// instant is in a length-biased session (density ∝ t·f(t)), at a uniform point of it. For a
    /// Weibull of shape k and scale λ the length-biased length is λ·G^(1/k) with
    /// G ~ Gamma(1 + 1/k); the exponential is shape 1.
    pub(crate) fn residual_session(&self, rng: &mut ChaCha8Rng) -> Duration {
        let mean = self.mean_session.as_secs_f64();
        let shape = match self.distribution {
            SessionDistribution::Exponential => 1.0,
            SessionDistribution::Weibull { shape } => shape.max(0.05),
        };
        let scale = mean / gamma(1.0 + 1.0 / shape);
        let length = scale * sample_gamma(1.0 + 1.0 / shape, rng).powf(1.0 / shape);
        let u: f64 = rng.random::<f64>();
        Duration::from_secs_f64((u * length).clamp(0.0, 1e9))
    }

    /// The wait until the next arrival when `population` nodes are meant to be online.
    pub(crate) fn next_arrival(&self, population: usize, rng: &mut ChaCha8Rng) -> Duration {
        let rate = population.max(1) as f64 / self.mean_session.as_secs_f64().max(1e-3);
        let u: f64 = 1.0 - rng.random::<f64>();
        Duration::from_secs_f64((-u.ln() / rate).clamp(0.0, 1e9))
    }
}

/// A Gamma(`shape`, 1) sample for `shape` ≥ 1, by Marsaglia and Tsang's method (2000), with
/// Box–Muller normals. Bounded: after 1,000 rejections (probability far below 1e-100) it returns
/// the mean.
fn sample_gamma(shape: f64, rng: &mut ChaCha8Rng) -> f64 {
    let d = shape.max(1.0) - 1.0 / 3.0;
    let c = 1.0 / (9.0 * d).sqrt();
    for _ in 0..1000 {
        let (u1, u2): (f64, f64) = (1.0 - rng.random::<f64>(), rng.random::<f64>());
        let x = (-2.0 * u1.ln()).sqrt() * (2.0 * std::f64::consts::PI * u2).cos();
        let v = (1.0 + c * x).powi(3);
        if v <= 0.0 {
            continue;
        }
        let u: f64 = 1.0 - rng.random::<f64>();
        if u.ln() < 0.5 * x * x + d - d * v + d * v.ln() {
            return d * v;
        }
    }
    shape
}

/// The gamma function, by the Lanczos approximation (g = 7, nine terms; relative error below
/// 1e-13 for positive arguments), which is all the Weibull mean needs.
fn gamma(x: f64) -> f64 {
    const G: f64 = 7.0;
    const C: [f64; 9] = [
        0.999_999_999_999_809_9,
        676.520_368_121_885_1,
        -1_259.139_216_722_402_8,
        771.323_428_777_653_1,
        -176.615_029_162_140_6,
        12.507_343_278_686_905,
        -0.138_571_095_265_720_12,
        9.984_369_578_019_572e-6,
        1.505_632_735_149_311_6e-7,
    ];
    if x < 0.5 {
        // Reflection formula.
        return std::f64::consts::PI / ((std::f64::consts::PI * x).sin() * gamma(1.0 - x));
    }
    let x = x - 1.0;
    let mut a = C[0];
    let t = x + G + 0.5;
    for (i, c) in C.iter().enumerate().skip(1) {
        a += c / (x + i as f64);
    }
    (2.0 * std::f64::consts::PI).sqrt() * t.powf(x + 0.5) * (-t).exp() * a
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    #[test]
    fn residual_sessions_have_the_equilibrium_mean() {
        // The equilibrium residual life has mean E[L²] / (2 E[L]): the mean for the
        // exponential, Γ(1 + 2/k) / Γ(1 + 1/k)² × mean / 2 for a Weibull (3 × mean for k = 0.5).
        for (distribution, want) in [
            (SessionDistribution::Exponential, 3600.0),
            (SessionDistribution::Weibull { shape: 0.5 }, 3.0 * 3600.0),
        ] {
            let churn = Churn {
                mean_session: Duration::from_secs(3600),
                distribution,
            };
            let mut rng = ChaCha8Rng::seed_from_u64(2);
            let n = 200_000;
            let mean = (0..n)
                .map(|_| churn.residual_session(&mut rng).as_secs_f64())
                .sum::<f64>()
                / f64::from(n);
            assert!(
                (mean - want).abs() < want * 0.05,
                "{distribution:?}: residual mean {mean}, want {want}"
            );
        }
    }

    #[test]
    fn gamma_matches_known_values() {
        assert!((gamma(5.0) - 24.0).abs() < 1e-9);
        assert!((gamma(0.5) - std::f64::consts::PI.sqrt()).abs() < 1e-9);
        assert!((gamma(3.0) - 2.0).abs() < 1e-9);
    }

    #[test]
    fn sample_means_match_the_configured_mean() {
        for distribution in [
            SessionDistribution::Exponential,
            SessionDistribution::Weibull { shape: 0.5 },
            SessionDistribution::Weibull { shape: 2.0 },
        ] {
            let churn = Churn {
                mean_session: Duration::from_secs(3600),
                distribution,
            };
            let mut rng = ChaCha8Rng::seed_from_u64(1);
            let n = 200_000;
            let mean = (0..n)
                .map(|_| churn.session(&mut rng).as_secs_f64())
                .sum::<f64>()
                / f64::from(n);
            // Shape 0.5 has a heavy tail: allow 5 %.
            assert!(
                (mean - 3600.0).abs() < 180.0,
                "{distribution:?}: sample mean {mean}"
            );
        }
    }
}
