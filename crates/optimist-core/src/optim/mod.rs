//! The update rules, one file per optimizer. Each file's docs state the
//! update rule, the defaults, the reference implementation it matches and
//! the paper.
//!
//! The list at the end of this file is the one place a rule is registered:
//! each line `module::Type` (or `module::{Type, ...}`) declares the module,
//! re-exports its types and adds each type to the registry (in list order)
//! as an [`UpdateRule`](crate::rule::UpdateRule) run by the engine
//! ([`crate::engine::spec`]); `Type => (expr)` registers the entry `expr`
//! instead (rules with an optimizer of their own), and `Type => none` only
//! re-exports the type. Wrappers (lookahead, magma, skipupdate, ...) live
//! in [`crate::wrappers`]; the registry adds their entries after the rules.

/// Declares the rule modules, re-exports their types and lists their
/// registry entries ([`rule_specs`]) from one list (see the module docs).
macro_rules! optimizers {
    ($($m:ident :: $types:tt),* $(,)?) => {
        $(pub mod $m;)*
        $(optimizers!(@use $m $types);)*

        /// The registry entries of the rules listed here, in list order.
        // One push per listed type: the list is generated, not written.
        #[allow(clippy::vec_init_then_push)]
        pub(crate) fn rule_specs() -> Vec<crate::optimizer::OptimizerSpec> {
            let mut specs = Vec::new();
            $(optimizers!(@specs specs $m $types);)*
            specs
        }
    };
    (@use $m:ident { $($t:ident $(=> $s:tt)?),+ $(,)? }) => { pub use $m::{$($t),+}; };
    (@use $m:ident $t:ident) => { pub use $m::$t; };
    (@specs $v:ident $m:ident { $($t:ident $(=> $s:tt)?),+ $(,)? }) => {
        $(optimizers!(@one $v $m $t $(=> $s)?);)+
    };
    (@specs $v:ident $m:ident $t:ident) => { optimizers!(@one $v $m $t); };
    (@one $v:ident $m:ident $t:ident => none) => {};
    (@one $v:ident $m:ident $t:ident => $s:tt) => { $v.push($s); };
    (@one $v:ident $m:ident $t:ident) => { $v.push(crate::engine::spec::<$m::$t>()); };
}

/// The [`Optimizer`](crate::Optimizer) methods `name`, `config` and
/// `set_config` of an optimizer that keeps its configuration, of type
/// `$config`, in its field `$field` (for optimizers with a driver of their
/// own; the engine's rules get them from the engine).
macro_rules! config_methods {
    ($config:ty, $field:ident) => {
        fn name(&self) -> &str {
            <$config as $crate::rule::OptimizerConfig>::NAME
        }

        fn config(&self) -> serde_json::Value {
            $crate::rule::OptimizerConfig::to_json(&self.$field)
        }

        fn set_config(&mut self, config: serde_json::Value) -> $crate::error::Result<()> {
            self.$field = <$config as $crate::rule::OptimizerConfig>::from_json(&config)?;
            Ok(())
        }
    };
}
pub(crate) use config_methods;

// Shared pieces of several rules (no registry entry).
pub mod newton_schulz;
pub mod pytorch_optimizer;
pub mod adam_family;
pub mod each;

optimizers! {
    sgd::Sgd,
    adam::{Adam, AdamW},
    nadam::Nadam,
    radam::Radam,
    adamax::Adamax,
    adagrad::Adagrad,
    rmsprop::Rmsprop,
    adadelta::Adadelta,
    adafactor::Adafactor,
    lion::Lion,
    adabelief::AdaBelief,
    lamb::Lamb,
    adabound::AdaBound,
    signsgd::SignSgd,
    muon::Muon,
    adamuon::AdaMuon,
    namo::{Namo, NamoD},
    sophiah::SophiaH,
    sophiag::SophiaG,
    adamomentum::AdaMomentum,
    adagc::{AdaGc => (AdaGc::spec()), AdaGcOptimizer => none},
    schedulefree::{
        AdamWScheduleFree => (schedulefree::spec::<AdamWScheduleFree>()),
        SgdScheduleFree => (schedulefree::spec::<SgdScheduleFree>()),
    },
    // torch.optim completion and the SGD family
    asgd::Asgd,
    rprop::Rprop,
    lbfgs::{Lbfgs => (Lbfgs::spec()), LbfgsConfig => none},
    sgdw::Sgdw,
    qhm::Qhm,
    aggmo::AggMo,
    lars::Lars,
    sgdp::Sgdp,
    madgrad::Madgrad,
    novograd::NovoGrad,
    tiger::Tiger,
    // the Adam family (pytorch-optimizer 4.1.0)
    adopt::Adopt,
    ademamix::AdEMAMix,
    simplifiedademamix::SimplifiedAdEMAMix,
    adan::Adan,
    laprop::LaProp,
    yogi::Yogi,
    qhadam::QHAdam,
    adamod::AdaMod,
    diffgrad::DiffGrad,
    mars::Mars,
    stableadamw::StableAdamW,
    adamp::AdamP,
    // learning-rate-free, spike-aware and memory-light (pytorch-optimizer 4.1.0)
    prodigy::{
        Prodigy => (prodigy::global_spec::<Prodigy>()),
        GlobalEngine => none,
        GlobalRule => none,
    },
    dadaptadam::{DAdaptAdam => (prodigy::global_spec::<DAdaptAdam>())},
    dadaptsgd::{DAdaptSgd => (prodigy::global_spec::<DAdaptSgd>())},
    dadaptlion::{DAdaptLion => (prodigy::global_spec::<DAdaptLion>())},
    grokfastadamw::GrokFastAdamW,
    ranger::Ranger,
    came::Came,
    schedulefreeradam::{ScheduleFreeRAdam => (schedulefree::spec::<ScheduleFreeRAdam>())},
    adammini::AdamMini,
    stablespam::{StableSpam => (prodigy::global_spec::<StableSpam>())},
    spam::{Spam => (prodigy::global_spec::<Spam>())},
    // preconditioned, second-order, matrix and low-rank (pytorch-optimizer 4.1.0)
    soap::Soap,
    shampoo::Shampoo,
    kron::Kron,
    adahessian::AdaHessian,
    sm3::Sm3,
    normuon::NorMuon,
    scion::Scion,
    galore::GaLore,
    apollo::Apollo,
}
