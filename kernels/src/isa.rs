//! Which instruction set the kernels run on, chosen once at run time, and the dispatcher that
//! enters each kernel's copy for it.
//!
//! [`isa`] is the best the CPU has ([`Isa::best`]: AVX-512F, else AVX2 + FMA, else the portable
//! lanes) unless `GRADLAB_ISA` names another one (`avx512`, `avx2` or `portable`), which is how
//! the AVX2 path is benchmarked and tested on an AVX-512 machine. [`set_isa`] changes it for the
//! whole process (the tests use it); it refuses one the CPU lacks. Every choice computes the
//! same bits (see [`crate::vec`]); only the speed differs.

use std::sync::atomic::{AtomicU8, Ordering};

/// An instruction set the kernels are compiled for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Isa {
    /// AVX-512F (with AVX2 and FMA): one zmm register per vector, 6 × 64 GEMM tiles.
    Avx512,
    /// AVX2 + FMA: two ymm registers per vector, 6 × 16 GEMM tiles.
    Avx2,
    /// Plain Rust lanes, any CPU: slow (fused multiply-adds in software without FMA).
    Portable,
}

/// The environment variable that overrides [`Isa::best`].
pub const ISA_ENV: &str = "GRADLAB_ISA";

impl Isa {
    /// Every instruction set, fastest first.
    pub const ALL: [Isa; 3] = [Isa::Avx512, Isa::Avx2, Isa::Portable];

    /// The name `GRADLAB_ISA` takes and results record.
    pub fn name(self) -> &'static str {
        match self {
            Isa::Avx512 => "avx512",
            Isa::Avx2 => "avx2",
            Isa::Portable => "portable",
        }
    }

    /// The name with what the kernels do on it, for results and `--version`.
    pub fn describe(self) -> &'static str {
        match self {
            Isa::Avx512 => "avx512 (avx512f+fma, f32x16 in zmm, 6x64 tiles)",
            Isa::Avx2 => "avx2 (avx2+fma, f32x16 as 2 ymm, 6x16 tiles)",
            Isa::Portable => "portable (f32x16 as plain lanes)",
        }
    }

    /// The instruction set named `name` (see [`Isa::name`]).
    pub fn parse(name: &str) -> Result<Isa, String> {
        Isa::ALL
            .into_iter()
            .find(|i| i.name() == name.trim().to_ascii_lowercase())
            .ok_or_else(|| {
                format!("unknown instruction set {name:?}: give one of avx512, avx2, portable")
            })
    }

    /// Whether the CPU this process runs on can run the kernels of this instruction set.
    pub fn available(self) -> bool {
        match self {
            #[cfg(target_arch = "x86_64")]
            Isa::Avx512 => std::arch::is_x86_feature_detected!("avx512f") && Isa::Avx2.available(),
            #[cfg(target_arch = "x86_64")]
            Isa::Avx2 => {
                std::arch::is_x86_feature_detected!("avx2")
                    && std::arch::is_x86_feature_detected!("fma")
            }
            Isa::Portable => true,
            #[allow(unreachable_patterns)]
            _ => false,
        }
    }

    /// The fastest instruction set the CPU has.
    pub fn best() -> Isa {
        Isa::ALL
            .into_iter()
            .find(|i| i.available())
            .unwrap_or(Isa::Portable)
    }

    fn code(self) -> u8 {
        self as u8 + 1
    }
}

impl std::fmt::Display for Isa {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// The chosen instruction set: 0 until the first [`isa`], then `Isa::code`.
static CHOSEN: AtomicU8 = AtomicU8::new(0);

/// The instruction set named by `GRADLAB_ISA`, or [`Isa::best`] where it is unset; an error
/// that says what to fix where it names an unknown one or one this CPU lacks. `main` calls it
/// first, so that [`isa`] never meets a bad value.
pub fn isa_from_env() -> Result<Isa, String> {
    match std::env::var(ISA_ENV) {
        Err(_) => Ok(Isa::best()),
        Ok(name) => {
            let isa = Isa::parse(&name).map_err(|e| format!("{ISA_ENV}: {e}"))?;
            if isa.available() {
                Ok(isa)
            } else {
                Err(format!(
                    "{ISA_ENV}={name}: this CPU lacks it (the best it has is {}); unset {ISA_ENV} \
                     or give one it has",
                    Isa::best()
                ))
            }
        }
    }
}

/// The instruction set every kernel runs on: [`isa_from_env`] on the first call.
///
/// # Panics
/// On the first call, if `GRADLAB_ISA` is set to something [`isa_from_env`] refuses.
#[inline]
pub fn isa() -> Isa {
    match CHOSEN.load(Ordering::Relaxed) {
        1 => Isa::Avx512,
        2 => Isa::Avx2,
        3 => Isa::Portable,
        _ => init(),
    }
}

#[cold]
fn init() -> Isa {
    let isa = isa_from_env().unwrap_or_else(|e| panic!("{e}"));
    CHOSEN.store(isa.code(), Ordering::Relaxed);
    isa
}

/// Makes every kernel run on `isa` from now on, in every thread; refuses one the CPU lacks.
/// The results do not change, only the speed: the tests run every kernel on every instruction
/// set the machine has and compare the bits.
pub fn set_isa(isa: Isa) -> Result<(), String> {
    if !isa.available() {
        return Err(format!("this CPU cannot run the {isa} kernels"));
    }
    CHOSEN.store(isa.code(), Ordering::Relaxed);
    Ok(())
}

/// Defines `fn $name(args) -> ret` that runs `$imp::<V>(args)` compiled for the instruction set
/// [`isa`] chose, `V` its vector type (see [`crate::vec`]). `$imp` is `#[inline(always)]`, and
/// so is everything it calls on `V`, so the whole kernel is compiled with the target features
/// of each instruction set. Closures inside `$imp` do not inherit them: call dispatched
/// functions from a closure, or make it `#[inline(always)]`-only code on `V`.
macro_rules! dispatch {
    ($(#[$meta:meta])* $vis:vis fn $name:ident $(<$g:ident: $b:path>)? ($($arg:ident: $ty:ty),* $(,)?) $(-> $ret:ty)? = $imp:ident;) => {
        $(#[$meta])*
        $vis fn $name $(<$g: $b>)? ($($arg: $ty),*) $(-> $ret)? {
            match $crate::isa::isa() {
                #[cfg(target_arch = "x86_64")]
                $crate::isa::Isa::Avx512 => $crate::isa::dispatch!(@run "avx512f,avx2,fma", Z16,
                    [$($g: $b)?], [$($g)?], ($($arg: $ty),*), [$(-> $ret)?], $imp),
                #[cfg(target_arch = "x86_64")]
                $crate::isa::Isa::Avx2 => $crate::isa::dispatch!(@run "avx2,fma", Y16,
                    [$($g: $b)?], [$($g)?], ($($arg: $ty),*), [$(-> $ret)?], $imp),
                #[allow(unreachable_patterns)]
                _ => $imp::<$crate::vec::P16 $(, $g)?>($($arg),*),
            }
        }
    };
    (@run $features:literal, $v:ident, [$($gen:tt)*], [$($garg:tt)*], ($($arg:ident: $ty:ty),*), [$($ret:tt)*], $imp:ident) => {{
        #[target_feature(enable = $features)]
        fn run<$($gen)*>($($arg: $ty),*) $($ret)* {
            $imp::<$crate::vec::$v, $($garg)*>($($arg),*)
        }
        // SAFETY: `isa()` is Avx512 only on a CPU with AVX-512F, AVX2 and FMA, and Avx2 only on
        // one with AVX2 and FMA (`Isa::available`), which are the features `run` enables.
        unsafe { run($($arg),*) }
    }};
}
pub(crate) use dispatch;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_parse_back_and_unknown_ones_say_what_is_taken() {
        for isa in Isa::ALL {
            assert_eq!(Isa::parse(isa.name()), Ok(isa));
            assert_eq!(Isa::parse(&isa.name().to_uppercase()), Ok(isa));
        }
        let e = Isa::parse("sse9").unwrap_err();
        assert!(e.contains("avx512, avx2, portable"), "{e}");
    }

    #[test]
    fn the_best_is_available_and_portable_always_is() {
        assert!(Isa::best().available());
        assert!(Isa::Portable.available());
        #[cfg(target_arch = "x86_64")]
        assert_eq!(
            Isa::Avx2.available(),
            std::arch::is_x86_feature_detected!("avx2")
                && std::arch::is_x86_feature_detected!("fma")
        );
    }
}
