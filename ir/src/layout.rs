//! The one value layout: how a value of any [`Type`] is stored in memory.
//!
//! The interpreter, the checkpoint driver (snapshots) and the codegen ABI (arguments,
//! results, workspace buffers) all store values this way, and compute sizes and offsets
//! through this module only, so they cannot drift apart:
//!
//! - **A scalar** is one 8-byte *slot* (`u64`): `f64` as its IEEE bits; `f32` as its bits
//!   in the low 4 bytes (high bytes zero when written, ignored when read); `i64` as its
//!   two's-complement bits; `bool` as 0 or 1 (only the low byte is read). See
//!   [`SLOT_BYTES`], [`Slot`].
//! - **A tensor** is a contiguous, row-major (C order) buffer of its elements, each
//!   stored natively (`f64`, `i64`: 8 bytes; `f32`: 4 bytes; `bool`: 1 byte, 0 or 1),
//!   with no padding and no header: its shape is static and lives in the type. The
//!   buffer's alignment is its element size; planners may over-align (for SIMD or
//!   cache lines) but never rely on more than [`Layout::align`].
//!
//! Guarantees: [`Layout::of`] accepts exactly the types whose every dimension is at
//! least 1 and whose buffer is at most [`MAX_TENSOR_BYTES`]; for those, every byte size,
//! element count, stride and offset this module returns is exact, and any of them fits
//! in an `i64`/`isize`, so generated code may do address arithmetic without overflow
//! checks. Every computation here is overflow-checked; nothing panics.

use crate::types::{ScalarType, Shape, Type, MAX_RANK};

/// Bytes of one scalar slot.
pub const SLOT_BYTES: usize = 8;

/// The largest tensor buffer, in bytes: 2⁴⁰ (1 TiB). Far above any machine this runs
/// on, far below `isize::MAX`, so products of a size with a small factor cannot overflow.
pub const MAX_TENSOR_BYTES: usize = 1 << 40;

/// Slots a value of type `ty` takes in a loop driver's state or adjoint vector (the
/// checkpointing driver's snapshots, [`crate::checkpoint`]): one for a scalar, one per
/// element for a tensor, each element encoded as the scalar [`Slot`] of its type, in
/// row-major order. (Uniform 8-byte slots keep the driver oblivious of types; an `f32`
/// or `bool` tensor's snapshot takes more bytes than its buffer, which
/// `peak_tape_bytes` reports as they are.)
pub fn state_slots(ty: Type) -> usize {
    match ty {
        Type::Scalar(_) => 1,
        Type::Tensor(_, s) => s.num_elements(),
    }
}

/// Why a type has no layout.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum LayoutError {
    /// A tensor with a dimension of size zero (jitad has no empty tensors).
    #[error("tensor type {0} has a zero-size dimension")]
    ZeroDim(Type),
    /// A tensor whose buffer would exceed [`MAX_TENSOR_BYTES`] (or overflow `usize`).
    #[error("tensor type {0} needs more than the {MAX_TENSOR_BYTES} bytes a tensor may have")]
    TooLarge(Type),
}

/// Where and how a value of one type is stored.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Layout {
    /// A scalar in one 8-byte slot.
    Slot(ScalarType),
    /// A tensor in a buffer.
    Buffer(BufferLayout),
}

/// The layout of one tensor buffer: element type, shape, and their exact sizes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct BufferLayout {
    elem: ScalarType,
    shape: Shape,
    len: usize,
    bytes: usize,
}

impl Layout {
    /// The layout of `ty`, or why it has none.
    pub fn of(ty: Type) -> Result<Layout, LayoutError> {
        match ty {
            Type::Scalar(s) => Ok(Layout::Slot(s)),
            Type::Tensor(elem, shape) => BufferLayout::new(elem, shape).map(Layout::Buffer),
        }
    }

    /// Bytes the value occupies ([`SLOT_BYTES`] for a scalar).
    pub fn byte_size(&self) -> usize {
        match self {
            Layout::Slot(_) => SLOT_BYTES,
            Layout::Buffer(b) => b.byte_size(),
        }
    }

    /// The alignment the value's storage needs, in bytes.
    pub fn align(&self) -> usize {
        match self {
            Layout::Slot(_) => SLOT_BYTES,
            Layout::Buffer(b) => b.align(),
        }
    }

    /// Number of scalar elements (1 for a scalar).
    pub fn num_elements(&self) -> usize {
        match self {
            Layout::Slot(_) => 1,
            Layout::Buffer(b) => b.len(),
        }
    }

    /// The buffer layout, for tensors.
    pub fn buffer(&self) -> Option<&BufferLayout> {
        match self {
            Layout::Slot(_) => None,
            Layout::Buffer(b) => Some(b),
        }
    }
}

impl BufferLayout {
    /// The layout of a tensor of `elem` with `shape`, or why it has none.
    pub fn new(elem: ScalarType, shape: Shape) -> Result<Self, LayoutError> {
        let ty = Type::Tensor(elem, shape);
        let mut len = 1usize;
        for &d in shape.dims() {
            if d == 0 {
                return Err(LayoutError::ZeroDim(ty));
            }
            len = len
                .checked_mul(d as usize)
                .ok_or(LayoutError::TooLarge(ty))?;
        }
        let bytes = len
            .checked_mul(elem.byte_size())
            .filter(|&b| b <= MAX_TENSOR_BYTES)
            .ok_or(LayoutError::TooLarge(ty))?;
        Ok(Self {
            elem,
            shape,
            len,
            bytes,
        })
    }

    /// The element type.
    pub fn elem(&self) -> ScalarType {
        self.elem
    }

    /// The shape.
    pub fn shape(&self) -> Shape {
        self.shape
    }

    /// The element count.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Always false: jitad tensors have at least one element.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The buffer's size in bytes.
    pub fn byte_size(&self) -> usize {
        self.bytes
    }

    /// The buffer's alignment in bytes (its element size).
    pub fn align(&self) -> usize {
        self.elem.byte_size()
    }

    /// Row-major strides in elements: see [`strides`].
    pub fn strides(&self) -> [usize; MAX_RANK] {
        // Cannot fail: the element count was checked when `self` was built.
        strides(self.shape.dims()).unwrap_or([0; MAX_RANK])
    }

    /// The element offset of a multi-index, or `None` when its length is not the rank
    /// or a coordinate is out of range.
    pub fn offset(&self, index: &[usize]) -> Option<usize> {
        let dims = self.shape.dims();
        if index.len() != dims.len() {
            return None;
        }
        let st = self.strides();
        index
            .iter()
            .zip(dims)
            .zip(&st)
            .try_fold(0usize, |acc, ((&i, &d), &s)| {
                (i < d as usize).then_some(acc + i * s)
            })
    }
}

/// Row-major strides in elements of `dims` (`strides[i]` = product of `dims[i+1..]`;
/// unused entries 0), or `None` when the product overflows `usize` or the rank exceeds
/// [`MAX_RANK`].
pub fn strides(dims: &[u32]) -> Option<[usize; MAX_RANK]> {
    if dims.len() > MAX_RANK {
        return None;
    }
    let mut out = [0usize; MAX_RANK];
    let mut acc = 1usize;
    for (o, &d) in out[..dims.len()].iter_mut().zip(dims).rev() {
        *o = acc;
        acc = acc.checked_mul(d as usize)?;
    }
    Some(out)
}

/// The element count of `dims` (1 for none), or `None` on overflow.
pub fn element_count(dims: &[u32]) -> Option<usize> {
    dims.iter()
        .try_fold(1usize, |a, &d| a.checked_mul(d as usize))
}

/// The slot encoding of scalars (see the module docs), on raw bits so that this leaf
/// module needs no value type. The interpreter's `Val::to_slot`/`from_slot` and the
/// codegen ABI follow it.
pub struct Slot;

impl Slot {
    /// An `f64` as a slot.
    pub fn from_f64(v: f64) -> u64 {
        v.to_bits()
    }
    /// An `f32` as a slot (bits in the low 4 bytes).
    pub fn from_f32(v: f32) -> u64 {
        u64::from(v.to_bits())
    }
    /// An `i64` as a slot.
    pub fn from_i64(v: i64) -> u64 {
        v as u64
    }
    /// A `bool` as a slot (0 or 1).
    pub fn from_bool(v: bool) -> u64 {
        u64::from(v)
    }
    /// The `f64` in a slot.
    pub fn to_f64(s: u64) -> f64 {
        f64::from_bits(s)
    }
    /// The `f32` in a slot (low 4 bytes).
    pub fn to_f32(s: u64) -> f32 {
        f32::from_bits(s as u32)
    }
    /// The `i64` in a slot.
    pub fn to_i64(s: u64) -> i64 {
        s as i64
    }
    /// The `bool` in a slot (low byte non-zero).
    pub fn to_bool(s: u64) -> bool {
        s as u8 != 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(elem: ScalarType, d: &[usize]) -> Type {
        Type::Tensor(elem, Shape::new(d).unwrap())
    }

    #[test]
    fn sizes_and_strides() {
        let l = Layout::of(t(ScalarType::F32, &[2, 3, 4])).unwrap();
        assert_eq!(l.num_elements(), 24);
        assert_eq!(l.byte_size(), 96);
        assert_eq!(l.align(), 4);
        let b = l.buffer().unwrap();
        assert_eq!(b.strides(), [12, 4, 1, 0]);
        assert_eq!(b.offset(&[1, 2, 3]), Some(23));
        assert_eq!(b.offset(&[1, 3, 0]), None);
        assert_eq!(b.offset(&[1, 2]), None);
        let s = Layout::of(Type::F32).unwrap();
        assert_eq!((s.byte_size(), s.align(), s.num_elements()), (8, 8, 1));
        assert_eq!(
            Layout::of(t(ScalarType::Bool, &[5])).unwrap().byte_size(),
            5
        );
    }

    #[test]
    fn zero_and_oversized_shapes_are_errors() {
        let z = t(ScalarType::F64, &[3, 0]);
        assert_eq!(Layout::of(z), Err(LayoutError::ZeroDim(z)));
        assert_eq!(
            Layout::of(z).unwrap_err().to_string(),
            "tensor type f64[3,0] has a zero-size dimension"
        );
        // 2^32-1 to the fourth power overflows u64: checked, not wrapped.
        let m = u32::MAX as usize;
        let huge = t(ScalarType::F64, &[m, m, m, m]);
        assert_eq!(Layout::of(huge), Err(LayoutError::TooLarge(huge)));
        // Just above the limit, and exactly at it.
        let over = t(ScalarType::F64, &[1 << 20, 1 << 17, 2]);
        assert!(Layout::of(over).is_err());
        let at = t(ScalarType::F64, &[1 << 20, 1 << 17]);
        assert_eq!(Layout::of(at).unwrap().byte_size(), MAX_TENSOR_BYTES);
        assert!(Layout::of(over)
            .unwrap_err()
            .to_string()
            .contains("f64[1048576,131072,2]"));
        assert_eq!(strides(&[u32::MAX, u32::MAX, u32::MAX, 2]), None);
        assert_eq!(element_count(&[u32::MAX, u32::MAX, u32::MAX]), None);
    }

    #[test]
    fn slot_encoding_round_trips() {
        assert_eq!(Slot::to_f64(Slot::from_f64(-1.5)), -1.5);
        assert_eq!(Slot::from_f32(1.0), 0x3f80_0000);
        assert_eq!(Slot::to_f32(0xdead_beef_3f80_0000), 1.0);
        assert_eq!(Slot::to_i64(Slot::from_i64(-7)), -7);
        assert!(Slot::to_bool(Slot::from_bool(true)));
        assert!(!Slot::to_bool(0x100));
    }
}
