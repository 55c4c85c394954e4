//! Value types: scalars and static-shape tensors.
//!
//! A [`Type`] is `Copy` so passes can pass types around freely. Tensor shapes are
//! stored inline (rank at most [`MAX_RANK`]), which is enough for every tensor op the
//! design plans (batched matmul needs rank 3) and keeps the type a few machine words.

use std::fmt;

/// The largest tensor rank a [`Type`] can describe.
pub const MAX_RANK: usize = 4;

/// A scalar element type.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ScalarType {
    /// IEEE 754 binary64.
    F64,
    /// IEEE 754 binary32.
    F32,
    /// Two's-complement 64-bit integer (loop indices, trip counts, casts).
    I64,
    /// Boolean (results of comparisons, `select` conditions, guards).
    Bool,
}

impl ScalarType {
    /// Every scalar type, in printing order.
    pub const ALL: [ScalarType; 4] = [Self::F64, Self::F32, Self::I64, Self::Bool];

    /// The text name (`f64`, `f32`, `i64`, `bool`).
    pub fn name(self) -> &'static str {
        match self {
            Self::F64 => "f64",
            Self::F32 => "f32",
            Self::I64 => "i64",
            Self::Bool => "bool",
        }
    }

    /// Parses a text name.
    pub fn from_name(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|t| t.name() == s)
    }

    /// True for `f64` and `f32`: the types that carry derivatives.
    pub fn is_float(self) -> bool {
        matches!(self, Self::F64 | Self::F32)
    }

    /// True for the types arithmetic applies to (`f64`, `f32`, `i64`).
    pub fn is_numeric(self) -> bool {
        !matches!(self, Self::Bool)
    }

    /// Size of one element in bytes, as stored in buffers.
    pub fn byte_size(self) -> usize {
        match self {
            Self::F64 | Self::I64 => 8,
            Self::F32 => 4,
            Self::Bool => 1,
        }
    }
}

impl fmt::Display for ScalarType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A static tensor shape, row-major, of rank `1..=MAX_RANK`.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Shape {
    rank: u8,
    dims: [u32; MAX_RANK],
}

impl Shape {
    /// Builds a shape; `None` when the rank is 0 or above [`MAX_RANK`], or a dimension
    /// does not fit in `u32`.
    pub fn new(dims: &[usize]) -> Option<Self> {
        if dims.is_empty() || dims.len() > MAX_RANK {
            return None;
        }
        let mut out = [0u32; MAX_RANK];
        for (o, &d) in out.iter_mut().zip(dims) {
            *o = u32::try_from(d).ok()?;
        }
        Some(Self {
            rank: dims.len() as u8,
            dims: out,
        })
    }

    /// The dimensions.
    pub fn dims(&self) -> &[u32] {
        &self.dims[..self.rank as usize]
    }

    /// The rank (number of dimensions).
    pub fn rank(&self) -> usize {
        self.rank as usize
    }

    /// Number of elements (product of dimensions), saturating at `usize::MAX`.
    pub fn num_elements(&self) -> usize {
        self.dims()
            .iter()
            .fold(1usize, |a, &d| a.saturating_mul(d as usize))
    }
}

impl fmt::Debug for Shape {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}", self.dims())
    }
}

/// The type of an SSA value.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub enum Type {
    /// A scalar.
    Scalar(ScalarType),
    /// A tensor with a static shape, e.g. `f64[32,8]`.
    Tensor(ScalarType, Shape),
}

impl Type {
    /// `f64`.
    pub const F64: Type = Type::Scalar(ScalarType::F64);
    /// `f32`.
    pub const F32: Type = Type::Scalar(ScalarType::F32);
    /// `i64`.
    pub const I64: Type = Type::Scalar(ScalarType::I64);
    /// `bool`.
    pub const BOOL: Type = Type::Scalar(ScalarType::Bool);

    /// The element type (the type itself for scalars).
    pub fn elem(self) -> ScalarType {
        match self {
            Type::Scalar(s) | Type::Tensor(s, _) => s,
        }
    }

    /// The scalar type, or `None` for tensors.
    pub fn scalar(self) -> Option<ScalarType> {
        match self {
            Type::Scalar(s) => Some(s),
            Type::Tensor(..) => None,
        }
    }

    /// True for `f64` and `f32` scalars.
    pub fn is_float_scalar(self) -> bool {
        matches!(self, Type::Scalar(s) if s.is_float())
    }

    /// True for scalar or tensor types whose elements are floats.
    pub fn is_float(self) -> bool {
        self.elem().is_float()
    }

    /// Number of scalar elements a value of this type holds.
    pub fn num_elements(self) -> usize {
        match self {
            Type::Scalar(_) => 1,
            Type::Tensor(_, s) => s.num_elements(),
        }
    }
}

impl From<ScalarType> for Type {
    fn from(s: ScalarType) -> Self {
        Type::Scalar(s)
    }
}

impl fmt::Display for Type {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Type::Scalar(s) => write!(f, "{s}"),
            Type::Tensor(s, shape) => {
                write!(f, "{s}[")?;
                for (i, d) in shape.dims().iter().enumerate() {
                    if i > 0 {
                        f.write_str(",")?;
                    }
                    write!(f, "{d}")?;
                }
                f.write_str("]")
            }
        }
    }
}

impl fmt::Debug for Type {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_types() {
        assert_eq!(Type::F64.to_string(), "f64");
        let t = Type::Tensor(ScalarType::F64, Shape::new(&[32, 8]).unwrap());
        assert_eq!(t.to_string(), "f64[32,8]");
        assert_eq!(t.num_elements(), 256);
        assert!(Shape::new(&[]).is_none());
        assert!(Shape::new(&[1, 2, 3, 4, 5]).is_none());
    }
}
