//! The crate's one SIMD dispatch for auto-vectorized loops: `simd!`.

/// Runs a function body compiled for the best instruction set the CPU has:
/// `simd!(avx2; fn(args) -> T { body })` runs `body` from a function
/// compiled for AVX2 and FMA when the CPU has them, else from the portable
/// build; `simd!(avx512; ...)` tries AVX-512F first. The body sees only its
/// arguments (it becomes a function of its own; generic parameters are
/// declared as `fn<R: Bound>(...)`), which are passed under the same names
/// from the caller's scope. Mark helpers the body calls
/// `#[inline(always)]`: only inlined code gets the wider instructions.
/// Values do not depend on the build: Rust never contracts `a * b + c`
/// into an FMA and IEEE arithmetic rounds the same at every width. This is
/// the crate's one SIMD dispatch for auto-vectorized loops.
macro_rules! simd {
    (avx2; $($f:tt)*) => { $crate::exec::simd!(@build [avx2] $($f)*) };
    (avx512; $($f:tt)*) => { $crate::exec::simd!(@build [avx512] $($f)*) };
    (@build [$level:ident] fn $(<$($g:ident : $b:path),* $(,)?>)?
        ($($arg:ident : $ty:ty),* $(,)?) $(-> $ret:ty)? $body:block) => {{
        #[inline(always)]
        fn portable $(<$($g: $b),*>)? ($($arg: $ty),*) $(-> $ret)? $body
        #[cfg(target_arch = "x86_64")]
        let out = {
            #[target_feature(enable = "avx2,fma")]
            unsafe fn avx2 $(<$($g: $b),*>)? ($($arg: $ty),*) $(-> $ret)? {
                portable($($arg),*)
            }
            $crate::exec::simd!(@dispatch [$level] $(<$($g: $b),*>)? ($($arg: $ty),*) $(-> $ret)?)
        };
        #[cfg(not(target_arch = "x86_64"))]
        let out = portable($($arg),*);
        out
    }};
    (@dispatch [avx2] $(<$($g:ident : $b:path),*>)? ($($arg:ident : $ty:ty),*) $(-> $ret:ty)?) => {
        if $crate::cpu::has_avx2() {
            // SAFETY: the CPU supports AVX2 and FMA (checked at run time).
            unsafe { avx2($($arg),*) }
        } else {
            portable($($arg),*)
        }
    };
    (@dispatch [avx512] $(<$($g:ident : $b:path),*>)? ($($arg:ident : $ty:ty),*) $(-> $ret:ty)?) => {{
        #[target_feature(enable = "avx2,fma,avx512f")]
        unsafe fn avx512 $(<$($g: $b),*>)? ($($arg: $ty),*) $(-> $ret)? {
            portable($($arg),*)
        }
        if $crate::cpu::has_avx512() {
            // SAFETY: the CPU supports AVX-512F, AVX2 and FMA (checked at run time).
            unsafe { avx512($($arg),*) }
        } else {
            $crate::exec::simd!(@dispatch [avx2] $(<$($g: $b),*>)? ($($arg: $ty),*) $(-> $ret)?)
        }
    }};
}
pub(crate) use simd;
