//! Functions and modules: SSA values, instructions and regions in arenas.
//!
//! Everything is owned by its [`Function`] and referred to by small copyable ids
//! ([`Value`], [`Inst`], [`Region`]) in the style of Cranelift's entity arenas: passes
//! pass ids around freely and look data up in the function, with no reference counting
//! and no lifetimes in the IR types.
//!
//! A function's body is a [`Region`]: parameters (the function's parameters) and a list
//! of instructions ending in `ret`. A `loop` instruction owns one body region whose
//! parameters are the index (`i64`) and the carried values, ending in `yield`. Regions
//! nest; a region sees every value defined before it in an enclosing region.

use crate::op::{Op, Signature};
use crate::types::Type;
use cranelift_entity::packed_option::ReservedValue;
use cranelift_entity::{entity_impl, PrimaryMap};
use rustc_hash::FxHashMap;
use smallvec::SmallVec;

/// An instruction's operands or results. Four fit inline (no heap allocation, in the
/// same 24 bytes a `Vec` takes): nearly every op has at most three operands and one
/// result, and a million-instruction gradient would otherwise make two allocations
/// per instruction it creates, clones or drops.
pub type ValueList = SmallVec<[Value; 4]>;

/// An SSA value: a function or region parameter, or an instruction result.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Value(u32);
entity_impl!(Value, "v");

/// An instruction.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Inst(u32);
entity_impl!(Inst, "inst");

/// A region: parameters and an instruction list (a function body or a loop body).
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Region(u32);
entity_impl!(Region, "region");

/// Where a value comes from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ValueDef {
    /// Parameter `index` of `region`.
    Param(Region, u32),
    /// Result `index` of `inst`.
    Result(Inst, u32),
}

/// What the function knows about a value.
#[derive(Clone, Debug, PartialEq)]
pub struct ValueData {
    /// Its type.
    pub ty: Type,
    /// Its definition.
    pub def: ValueDef,
}

/// One instruction.
#[derive(Clone, Debug, PartialEq)]
pub struct InstData {
    /// The operation.
    pub op: Op,
    /// Operands.
    pub args: ValueList,
    /// Results, in order.
    pub results: ValueList,
    /// Nested regions (one for `loop`, none otherwise).
    pub regions: Regions,
}

/// An instruction's nested regions: one (a `loop`'s body) or none, in four bytes.
///
/// It reads as a slice (`d.regions.iter()`, `first()`, `is_empty()`), so passes walk
/// regions alike whatever the op. A `Vec` took 24 bytes of every instruction for the
/// one op in ~50 that has a region: a traced gradient has millions of instructions,
/// and their table is what every pass walks and every transform fills (page faults
/// and cache misses measured 4-8% of trace, differentiate and compile per 16 bytes).
/// No op has two regions, so more cannot be expressed.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Regions(Region);

impl Regions {
    /// No region.
    pub fn none() -> Self {
        Regions(Region::reserved_value())
    }

    /// The one region, if any.
    pub fn get(self) -> Option<Region> {
        (!self.0.is_reserved_value()).then_some(self.0)
    }

    /// The regions as a slice (empty or one).
    pub fn as_slice(&self) -> &[Region] {
        if self.0.is_reserved_value() {
            &[]
        } else {
            std::slice::from_ref(&self.0)
        }
    }
}

impl Default for Regions {
    fn default() -> Self {
        Regions::none()
    }
}

impl From<Option<Region>> for Regions {
    fn from(r: Option<Region>) -> Self {
        r.map_or_else(Regions::none, Regions)
    }
}

impl From<Region> for Regions {
    fn from(r: Region) -> Self {
        Regions(r)
    }
}

impl std::ops::Deref for Regions {
    type Target = [Region];
    fn deref(&self) -> &[Region] {
        self.as_slice()
    }
}

impl<'a> IntoIterator for &'a Regions {
    type Item = &'a Region;
    type IntoIter = std::slice::Iter<'a, Region>;
    fn into_iter(self) -> Self::IntoIter {
        self.as_slice().iter()
    }
}

impl std::fmt::Debug for Regions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list().entries(self.as_slice()).finish()
    }
}

/// A region's contents.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct RegionData {
    /// Parameters.
    pub params: Vec<Value>,
    /// Instructions in order; the last one is the terminator in verified IR.
    pub insts: Vec<Inst>,
    /// The instruction owning this region, `None` for a function body.
    pub parent: Option<Inst>,
}

/// A function: name, signature and an SSA body.
#[derive(Clone, Debug)]
pub struct Function {
    /// Name, without `@`. May contain dots (`f.jvp`).
    pub name: String,
    /// Parameter and result types.
    pub sig: Signature,
    /// All values.
    pub values: PrimaryMap<Value, ValueData>,
    /// All instructions, in creation order (not program order: see [`RegionData`]).
    pub insts: PrimaryMap<Inst, InstData>,
    /// All regions.
    pub regions: PrimaryMap<Region, RegionData>,
    /// The body region; its params are the function's parameters.
    pub body: Region,
    /// The names values were given in text or by a pass (without `%`); printers invent
    /// `%vN` for the rest. A side table, not a field of [`ValueData`]: most values of a
    /// traced or derived function have no name, and an `Option<String>` in each made
    /// every value 64 bytes instead of 36, for every pass to walk past. Keys are values
    /// of this function ([`Self::set_name`] checks it in debug builds).
    pub names: FxHashMap<Value, String>,
}

impl Function {
    /// A function with parameters of the signature's types and an empty body. The caller
    /// appends the body, ending in `ret` (see [`crate::builder::FunctionBuilder`] for a
    /// type-checked way).
    pub fn new(name: impl Into<String>, sig: Signature) -> Self {
        let mut regions = PrimaryMap::new();
        let body = regions.push(RegionData::default());
        let mut f = Function {
            name: name.into(),
            sig: Signature {
                params: vec![],
                results: sig.results,
            },
            values: PrimaryMap::new(),
            insts: PrimaryMap::new(),
            regions,
            body,
            names: FxHashMap::default(),
        };
        for ty in sig.params {
            f.add_param(ty);
        }
        f
    }

    /// Appends a function parameter of type `ty` (also extending the signature).
    pub fn add_param(&mut self, ty: Type) -> Value {
        self.sig.params.push(ty);
        self.add_region_param(self.body, ty)
    }

    /// Appends a parameter to `region` (not to the signature: use [`Self::add_param`]
    /// for the body).
    pub fn add_region_param(&mut self, region: Region, ty: Type) -> Value {
        let index = self.regions[region].params.len() as u32;
        let v = self.values.push(ValueData {
            ty,
            def: ValueDef::Param(region, index),
        });
        self.regions[region].params.push(v);
        v
    }

    /// Creates a new empty region owned by `parent`; attach it with
    /// [`Self::append_inst`]'s `regions`.
    pub fn new_region(&mut self) -> Region {
        self.regions.push(RegionData::default())
    }

    /// Creates an instruction with results of `result_types` (and the region `nested`,
    /// a `loop`'s body) and appends it to `region`.
    /// No type checking happens here; the builder and the verifier do that.
    pub fn append_inst(
        &mut self,
        region: Region,
        op: Op,
        args: impl AsRef<[Value]>,
        result_types: &[Type],
        nested: Option<Region>,
    ) -> Inst {
        let inst = self.create_inst(op, args, result_types, nested);
        self.regions[region].insts.push(inst);
        inst
    }

    /// Creates an instruction (owning the region `nested`, a `loop`'s body) that is not
    /// yet in any region (place it by pushing onto a region's `insts`).
    pub fn create_inst(
        &mut self,
        op: Op,
        args: impl AsRef<[Value]>,
        result_types: &[Type],
        nested: Option<Region>,
    ) -> Inst {
        let inst = self.insts.next_key();
        // Pushes and a slice copy rather than `collect`/`From<&[T]>`, whose generic
        // element-at-a-time paths showed as the top entry of a traced gradient's
        // profile (these run once per instruction every transform creates).
        let mut results = ValueList::new();
        for (i, &ty) in result_types.iter().enumerate() {
            results.push(self.values.push(ValueData {
                ty,
                def: ValueDef::Result(inst, i as u32),
            }));
        }
        if let Some(r) = nested {
            self.regions[r].parent = Some(inst);
        }
        self.insts.push(InstData {
            op,
            args: ValueList::from_slice(args.as_ref()),
            results,
            regions: nested.into(),
        })
    }

    /// The function's parameters.
    pub fn params(&self) -> &[Value] {
        &self.regions[self.body].params
    }

    /// The type of `v`.
    pub fn ty(&self, v: Value) -> Type {
        self.values[v].ty
    }

    /// The name of `v` if it has one.
    pub fn name_of(&self, v: Value) -> Option<&str> {
        self.names.get(&v).map(String::as_str)
    }

    /// How `v` is called in text and error messages (without `%`): its name, or
    /// `vN` (its arena index) when unnamed. Printers add a suffix when two values
    /// would print alike.
    pub fn value_label(&self, v: Value) -> String {
        match self.names.get(&v) {
            Some(n) => n.clone(),
            None => v.to_string(),
        }
    }

    /// Names `v` (without `%`).
    pub fn set_name(&mut self, v: Value, name: impl Into<String>) {
        debug_assert!(
            self.values.get(v).is_some(),
            "{v} is not a value of @{}",
            self.name
        );
        self.names.insert(v, name.into());
    }

    /// The single result of `inst`. Panics if it has not exactly one: only for
    /// instructions the caller created with one result.
    pub fn result(&self, inst: Inst) -> Value {
        let r = &self.insts[inst].results;
        assert_eq!(r.len(), 1, "instruction has {} results", r.len());
        r[0]
    }

    /// The body's terminator (`ret`), if the body ends in one.
    pub fn ret_inst(&self) -> Option<Inst> {
        let last = *self.regions[self.body].insts.last()?;
        matches!(self.insts[last].op, Op::Ret).then_some(last)
    }

    /// Values returned by the body's `ret` (empty if there is none).
    pub fn returned(&self) -> &[Value] {
        match self.ret_inst() {
            Some(i) => &self.insts[i].args,
            None => &[],
        }
    }

    /// Instructions in program order, depth first: each instruction, then (for a loop)
    /// its body, before the next instruction of the enclosing region.
    pub fn insts_in_order(&self) -> Vec<Inst> {
        // One region is the body alone (no loop anywhere): its list is the order, and
        // copying it touches no instruction (the walk below reads every one's regions).
        if self.regions.len() == 1 {
            return self.regions[self.body].insts.clone();
        }
        let mut out = Vec::with_capacity(self.insts.len());
        let mut stack = vec![(self.body, 0usize)];
        while let Some((region, pos)) = stack.pop() {
            let insts = &self.regions[region].insts;
            if pos < insts.len() {
                let inst = insts[pos];
                out.push(inst);
                stack.push((region, pos + 1));
                for &r in self.insts[inst].regions.iter().rev() {
                    stack.push((r, 0));
                }
            }
        }
        out
    }

    /// Number of instructions reachable from the body (program size, for reports).
    pub fn num_insts(&self) -> usize {
        if self.regions.len() == 1 {
            return self.regions[self.body].insts.len();
        }
        self.insts_in_order().len()
    }
}

/// A module: functions that may call each other by name.
#[derive(Clone, Debug, Default)]
pub struct Module {
    /// Functions, in file order.
    pub funcs: Vec<Function>,
}

impl Module {
    /// An empty module.
    pub fn new() -> Self {
        Self::default()
    }

    /// The function named `name`.
    pub fn get(&self, name: &str) -> Option<&Function> {
        self.funcs.iter().find(|f| f.name == name)
    }

    /// The function named `name`, mutably.
    pub fn get_mut(&mut self, name: &str) -> Option<&mut Function> {
        self.funcs.iter_mut().find(|f| f.name == name)
    }

    /// The signature of the function named `name`.
    pub fn signature(&self, name: &str) -> Option<&Signature> {
        self.get(name).map(|f| &f.sig)
    }

    /// Adds `f`, replacing a function of the same name.
    pub fn insert(&mut self, f: Function) {
        match self.funcs.iter_mut().find(|g| g.name == f.name) {
            Some(slot) => *slot = f,
            None => self.funcs.push(f),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every pass walks the instruction table and every transform fills one, millions
    /// of entries for a traced gradient: its entries must not grow unnoticed.
    #[test]
    fn instruction_entries_stay_small() {
        assert_eq!(std::mem::size_of::<Regions>(), 4);
        assert!(
            std::mem::size_of::<Op>() <= 32,
            "{}",
            std::mem::size_of::<Op>()
        );
        assert!(
            std::mem::size_of::<InstData>() <= 88,
            "{}",
            std::mem::size_of::<InstData>()
        );
    }

    #[test]
    fn regions_read_as_a_slice_of_none_or_one() {
        let r = Region::from_u32(3);
        assert!(Regions::none().is_empty());
        assert_eq!(Regions::default(), Regions::none());
        assert_eq!(Regions::none().get(), None);
        assert_eq!(Regions::from(None), Regions::none());
        let one = Regions::from(r);
        assert_eq!(one.as_slice(), &[r]);
        assert_eq!(one.get(), Some(r));
        assert_eq!(Regions::from(Some(r)), one);
        assert_eq!((&one).into_iter().copied().collect::<Vec<_>>(), vec![r]);
        assert_eq!(format!("{one:?}"), "[region3]");
    }
}
