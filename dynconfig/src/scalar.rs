//! The fast path of `Property::get` for small `Copy` values (integers, floats, bools, chars,
//! durations): the value is mirrored as 64 bits in an atomic, so a read is one atomic load instead
//! of an `ArcSwap` guard. The type is found with `Any` downcasts, which the compiler resolves per
//! monomorphization, so other types pay nothing but a flag check.

use std::any::Any;
use std::time::Duration;

macro_rules! scalars {
    ($($t:ty => |$v:ident| $to:expr, |$b:ident| $from:expr;)*) => {
        /// The 64-bit image of `v`, if its type has one (and, for a duration, if it fits).
        #[inline]
        pub(crate) fn to_bits<T: 'static>(v: &T) -> Option<u64> {
            let any = v as &dyn Any;
            $(
                if let Some(&$v) = any.downcast_ref::<$t>() {
                    return $to;
                }
            )*
            None
        }

        /// The value of type `T` whose image is `bits`, if `T` has images.
        #[inline]
        pub(crate) fn from_bits<T: 'static>(bits: u64) -> Option<T> {
            let mut out: Option<T> = None;
            let any = &mut out as &mut dyn Any;
            $(
                if let Some(slot) = any.downcast_mut::<Option<$t>>() {
                    let $b = bits;
                    *slot = $from;
                    return out;
                }
            )*
            out
        }
    };
}

scalars! {
    u64 => |v| Some(v), |b| Some(b);
    u32 => |v| Some(u64::from(v)), |b| u32::try_from(b).ok();
    u16 => |v| Some(u64::from(v)), |b| u16::try_from(b).ok();
    u8 => |v| Some(u64::from(v)), |b| u8::try_from(b).ok();
    usize => |v| u64::try_from(v).ok(), |b| usize::try_from(b).ok();
    i64 => |v| Some(v.cast_unsigned()), |b| Some(b.cast_signed());
    i32 => |v| Some(i64::from(v).cast_unsigned()), |b| i32::try_from(b.cast_signed()).ok();
    i16 => |v| Some(i64::from(v).cast_unsigned()), |b| i16::try_from(b.cast_signed()).ok();
    i8 => |v| Some(i64::from(v).cast_unsigned()), |b| i8::try_from(b.cast_signed()).ok();
    isize => |v| i64::try_from(v).ok().map(i64::cast_unsigned), |b| isize::try_from(b.cast_signed()).ok();
    bool => |v| Some(u64::from(v)), |b| Some(b != 0);
    f64 => |v| Some(v.to_bits()), |b| Some(f64::from_bits(b));
    f32 => |v| Some(u64::from(v.to_bits())), |b| u32::try_from(b).ok().map(f32::from_bits);
    char => |v| Some(u64::from(u32::from(v))), |b| u32::try_from(b).ok().and_then(char::from_u32);
    Duration => |v| u64::try_from(v.as_nanos()).ok(), |b| Some(Duration::from_nanos(b));
}

#[cfg(test)]
mod tests {
    use super::*;

    fn roundtrip<T: Copy + PartialEq + std::fmt::Debug + 'static>(v: T) {
        let bits = to_bits(&v).expect("a scalar");
        assert_eq!(from_bits::<T>(bits), Some(v));
    }

    #[test]
    fn scalars_roundtrip_and_others_have_no_image() {
        roundtrip(u64::MAX);
        roundtrip(7u32);
        roundtrip(-5i32);
        roundtrip(i64::MIN);
        roundtrip(-1isize);
        roundtrip(true);
        roundtrip(-0.25f64);
        roundtrip(1.5f32);
        roundtrip('é');
        roundtrip(Duration::from_millis(250));
        assert_eq!(
            to_bits(&Duration::MAX),
            None,
            "too big for 64 bits of nanoseconds"
        );
        assert_eq!(to_bits(&String::from("x")), None);
        assert_eq!(from_bits::<String>(1), None);
    }
}
