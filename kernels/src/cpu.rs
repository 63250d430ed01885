//! Whether the CPU this process runs on has every instruction-set extension the build was
//! compiled for, so that `main` can stop with a clear message instead of dying of SIGILL.
//!
//! The CPU is asked through CPUID here rather than with `is_x86_feature_detected!`: that macro
//! answers `true` for every feature enabled at compile time without asking the CPU (it expands
//! to `cfg!(target_feature = ..) || detect()`), so it can never find a compiled-in feature
//! missing. The rules follow std's detector, which the tests check this one against.
//!
//! Everything here is scalar code, which LLVM encodes the same with or without AVX-512 (no
//! 512-bit vectors, no mask registers): an `x86-64-v4` build runs it, and stops with the message,
//! on an AVX2 machine. A build for AVX or later started on a CPU without AVX at all may still
//! fault before `main`, since with AVX enabled even scalar code may use VEX encodings.

/// Instruction-set extensions this build was compiled for (by `-C target-cpu=...` or
/// `-C target-feature=...`) that the CPU it runs on lacks: code compiled for them dies of SIGILL
/// there. Empty on a CPU that has them all, and on targets other than x86-64. Call it first
/// thing in `main`, before any kernel runs.
pub fn missing_cpu_features() -> Vec<&'static str> {
    let cpu = Cpu::read();
    missing_features(|name| cpu.has(name))
}

/// The x86-64 extensions the compiler may use that this build was compiled with: the features
/// of x86-64-v2, v3 and v4, and the AVX-512 extensions that `target-cpu=native` adds on Zen 4 or
/// Ice Lake and later. Empty for a baseline x86-64 build and on other targets.
pub fn compiled_features() -> Vec<&'static str> {
    X86_FEATURES
        .iter()
        .filter(|f| f.compiled)
        .map(|f| f.name)
        .collect()
}

/// How to build a binary that runs on an older CPU, to print with [`missing_cpu_features`].
pub fn portable_build_hint() -> &'static str {
    "Build without -C target-cpu (the default build runs on any x86-64 and its kernels pick \
     AVX-512, AVX2 or plain code at run time), or for the oldest CPU it must run on, e.g. \
     RUSTFLAGS=\"-C target-cpu=x86-64-v3\"; see the README, \"Building for the machine, and \
     portably\"."
}

/// The features of [`compiled_features`] that `detected` says the CPU lacks.
fn missing_features(detected: impl Fn(&str) -> bool) -> Vec<&'static str> {
    compiled_features()
        .into_iter()
        .filter(|f| !detected(f))
        .collect()
}

/// A 32-bit word of CPUID output: `L1Ecx` is leaf 1, register ECX; `L7s1Eax` leaf 7 sub-leaf 1,
/// EAX; `X1Ecx` the extended leaf 0x8000_0001, ECX.
#[derive(Clone, Copy, Debug)]
enum Word {
    L1Ecx,
    L7Ebx,
    L7Ecx,
    L7s1Eax,
    X1Ecx,
}

/// What a feature needs besides its CPUID bit, as std's detector decides it.
#[derive(Clone, Copy, Debug)]
enum Needs {
    /// Nothing.
    Cpu,
    /// The OS saves the AVX registers (XCR0 bits 1 and 2).
    OsAvx,
    /// The OS saves the AVX-512 registers (XCR0 bits 5 to 7) and the CPU has FMA and F16C, which
    /// Rust's `avx512f` implies.
    OsAvx512,
}

/// One x86-64 extension: its name as `target_feature` spells it, whether this build has it, and
/// where CPUID reports it.
#[derive(Clone, Copy, Debug)]
struct X86Feature {
    name: &'static str,
    compiled: bool,
    word: Word,
    bit: u32,
    needs: Needs,
}

/// Declares `X86_FEATURES` from `"name": Word[bit] Needs` rows, so that the name given to
/// `cfg!(target_feature)` is the one reported; in tests also `std_detects`, std's answer for
/// each name.
macro_rules! x86_features {
    ($($name:tt: $word:ident[$bit:literal] $needs:ident),* $(,)?) => {
        #[cfg(target_arch = "x86_64")]
        const X86_FEATURES: &[X86Feature] = &[$(X86Feature {
            name: $name,
            compiled: cfg!(target_feature = $name),
            word: Word::$word,
            bit: $bit,
            needs: Needs::$needs,
        }),*];
        #[cfg(not(target_arch = "x86_64"))]
        const X86_FEATURES: &[X86Feature] = &[];

        #[cfg(all(test, target_arch = "x86_64"))]
        fn std_detects(name: &str) -> bool {
            match name {
                $($name => std::arch::is_x86_feature_detected!($name),)*
                _ => unreachable!("{name} is not in X86_FEATURES"),
            }
        }
    };
}

x86_features!(
    // x86-64-v2
    "cmpxchg16b": L1Ecx[13] Cpu,
    "popcnt": L1Ecx[23] Cpu,
    "sse3": L1Ecx[0] Cpu,
    "ssse3": L1Ecx[9] Cpu,
    "sse4.1": L1Ecx[19] Cpu,
    "sse4.2": L1Ecx[20] Cpu,
    // x86-64-v3
    "avx": L1Ecx[28] OsAvx,
    "avx2": L7Ebx[5] OsAvx,
    "bmi1": L7Ebx[3] Cpu,
    "bmi2": L7Ebx[8] Cpu,
    "f16c": L1Ecx[29] Cpu,
    "fma": L1Ecx[12] OsAvx,
    "lzcnt": X1Ecx[5] Cpu,
    "movbe": L1Ecx[22] Cpu,
    // x86-64-v4
    "avx512f": L7Ebx[16] OsAvx512,
    "avx512bw": L7Ebx[30] OsAvx512,
    "avx512cd": L7Ebx[28] OsAvx512,
    "avx512dq": L7Ebx[17] OsAvx512,
    "avx512vl": L7Ebx[31] OsAvx512,
    // AVX-512 beyond v4 (Ice Lake, Zen 4 and later)
    "avx512bitalg": L7Ecx[12] OsAvx512,
    "avx512bf16": L7s1Eax[5] OsAvx512,
    "avx512ifma": L7Ebx[21] OsAvx512,
    "avx512vbmi": L7Ecx[1] OsAvx512,
    "avx512vbmi2": L7Ecx[6] OsAvx512,
    "avx512vnni": L7Ecx[11] OsAvx512,
    "avx512vpopcntdq": L7Ecx[14] OsAvx512,
    "gfni": L7Ecx[8] Cpu,
    "vaes": L7Ecx[9] Cpu,
    "vpclmulqdq": L7Ecx[10] Cpu,
);

/// Whether bit `i` of `word` is set.
fn bit(word: u32, i: u32) -> bool {
    (word >> i) & 1 == 1
}

/// What CPUID and XCR0 say about the CPU this process runs on.
#[derive(Clone, Copy, Debug, Default)]
struct Cpu {
    l1_ecx: u32,
    l7_ebx: u32,
    l7_ecx: u32,
    l7s1_eax: u32,
    x1_ecx: u32,
    os_avx: bool,
    os_avx512: bool,
    /// Some Skylake chips report BMI1 and BMI2 without having them; std trusts those bits only
    /// on Intel CPUs with AVX.
    intel_without_avx: bool,
}

impl Cpu {
    #[cfg(target_arch = "x86_64")]
    fn read() -> Cpu {
        use std::arch::x86_64::{__cpuid, __cpuid_count, _xgetbv};

        let leaf0 = __cpuid(0);
        let intel = [leaf0.ebx, leaf0.edx, leaf0.ecx] == [0x756e_6547, 0x4965_6e69, 0x6c65_746e];
        let l1_ecx = if leaf0.eax >= 1 { __cpuid(1).ecx } else { 0 };
        let (l7_ebx, l7_ecx, l7s1_eax) = if leaf0.eax >= 7 {
            let l7 = __cpuid_count(7, 0);
            (l7.ebx, l7.ecx, __cpuid_count(7, 1).eax)
        } else {
            (0, 0, 0)
        };
        let x1_ecx = if __cpuid(0x8000_0000).eax >= 0x8000_0001 {
            __cpuid(0x8000_0001).ecx
        } else {
            0
        };
        // XCR0 says which register states the OS saves; it is readable when the CPU has XSAVE
        // (leaf 1 ECX bit 26) and the OS enabled it (bit 27, OSXSAVE).
        let xcr0 = if bit(l1_ecx, 26) && bit(l1_ecx, 27) {
            // SAFETY: XGETBV exists and is enabled (XSAVE and OSXSAVE, checked just above).
            unsafe { _xgetbv(0) }
        } else {
            0
        };
        let os_avx = xcr0 & 0b110 == 0b110;
        Cpu {
            l1_ecx,
            l7_ebx,
            l7_ecx,
            l7s1_eax,
            x1_ecx,
            os_avx,
            os_avx512: os_avx && xcr0 & 0xe0 == 0xe0,
            intel_without_avx: intel && !(os_avx && bit(l1_ecx, 28)),
        }
    }

    #[cfg(not(target_arch = "x86_64"))]
    fn read() -> Cpu {
        Cpu::default()
    }

    /// Whether the CPU has feature `name` of [`X86_FEATURES`], by std's rules.
    fn has(&self, name: &str) -> bool {
        let Some(f) = X86_FEATURES.iter().find(|f| f.name == name) else {
            unreachable!("{name} is not in X86_FEATURES");
        };
        let word = match f.word {
            Word::L1Ecx => self.l1_ecx,
            Word::L7Ebx => self.l7_ebx,
            Word::L7Ecx => self.l7_ecx,
            Word::L7s1Eax => self.l7s1_eax,
            Word::X1Ecx => self.x1_ecx,
        };
        let needs = match f.needs {
            Needs::Cpu => !(self.intel_without_avx && matches!(name, "bmi1" | "bmi2")),
            Needs::OsAvx => self.os_avx,
            Needs::OsAvx512 => self.os_avx512 && bit(self.l1_ecx, 12) && bit(self.l1_ecx, 29),
        };
        bit(word, f.bit) && needs
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A binary started on the CPU it was built for finds nothing missing.
    #[test]
    fn this_cpu_has_every_compiled_feature() {
        assert_eq!(missing_cpu_features(), Vec::<&str>::new());
    }

    /// The CPUID reading agrees with std's detector on every feature. For features this build
    /// was not compiled with std asks the CPU, so this checks the bits and rules; for compiled
    /// ones it answers `true` unasked, which the CPU running this test must confirm.
    #[test]
    #[cfg(target_arch = "x86_64")]
    fn cpuid_agrees_with_std_on_every_feature() {
        let cpu = Cpu::read();
        for f in X86_FEATURES {
            assert_eq!(cpu.has(f.name), std_detects(f.name), "{f:?}");
        }
    }

    /// On a CPU without any of them, every compiled-in feature is reported: an x86-64-v3 or
    /// native build on this project's machines has at least AVX2 and FMA and what they imply.
    #[test]
    fn a_cpu_without_the_features_is_told_which_are_missing() {
        let missing = missing_features(|_| false);
        assert_eq!(missing, compiled_features());
        let levels = [
            (
                cfg!(all(target_feature = "avx2", target_feature = "fma")),
                "avx2+fma",
                &["sse3", "ssse3", "sse4.1", "sse4.2", "avx", "avx2", "fma"][..],
            ),
            (
                cfg!(target_feature = "avx512f"),
                "avx512f",
                &["avx", "avx2", "fma", "avx512f"][..],
            ),
        ];
        for (built, level, implied) in levels {
            if built {
                for f in implied {
                    assert!(missing.contains(f), "{level} build: {f} not in {missing:?}");
                }
            } else {
                println!("skipping the {level} part: host/build lacks {level}");
            }
        }
        // A CPU that has everything but AVX-512 misses exactly the AVX-512 features compiled in.
        let no_512 = missing_features(|f| !f.starts_with("avx512"));
        let want: Vec<_> = missing
            .iter()
            .copied()
            .filter(|f| f.starts_with("avx512"))
            .collect();
        assert_eq!(no_512, want);
    }
}
