//! The parser: `.jir` text to [`Module`]s and [`Function`]s.
//!
//! Reads the syntax fixed in DESIGN.md ("The IR") and printed by [`crate::print`]:
//!
//! ```text
//! module  := func*
//! func    := "func" @name "(" [%name ":" type {"," ...}] ")" ["->" results] "{" inst* "}"
//! results := type | "(" [type {"," type}] ")"
//! type    := f64 | f32 | i64 | bool | scalar "[" dim {"," dim} "]"
//! inst    := [%name {"," %name} "="] op operands
//! operands, by the op's format (crate::op::Format):
//!   Literal   LIT ":" type                       (const, fill)
//!   Unary, Binary, Ternary, Variadic  [%v {"," %v}]   (arity checked when typing)
//!   WithImm   %v "," INT                          (powi)
//!   WithType  %v ":" type                         (cast, broadcast, reshape)
//!   WithAxes  %v "," axes "[" [INT {"," INT}] "]"  (sum, mean, logsumexp, reduce_max/min)
//!   WithPerm  %v "," perm "[" INT {"," INT} "]"   (transpose)
//!   WithRanges %v {"," %v} "[" INT ":" INT [":" INT] {"," ...} "]"  (slice, pad)
//!   WithAxis  %v {"," %v} "," axis INT             (concat)
//!   Indexed   %x "[" %i "]"                        (extract)
//!   IndexedInsert %v into %x "[" %i "]"            (insert)
//!   Iota      axis INT ":" type                    (iota)
//!   Call      @f "(" [%v {"," %v}] ")"
//!   Loop      %i in BOUND ".." BOUND "(" [%c "=" %v ":" type {","...}] ")" "{" inst* "}"
//!   TapeLoop  BOUND ".." BOUND checkpoint POLICY fwd @F "(" %v... ")" caps "(" %v... ")"
//!   RevLoop   BOUND ".." BOUND checkpoint POLICY fwd @F bwd @B [tape %t]
//!             "(" %v... ")" caps "(" %v... ")" seed "(" %v... ")"
//! BOUND   := INT | %v
//! ```
//!
//! The parser finds the op by name ([`Op::from_name`]), reads the syntax of its format,
//! and sets the payload read with [`Op::with_payload`]: it never matches on ops.
//!
//! `;` starts a comment running to the end of the line; newlines are ordinary
//! whitespace. Identifiers are `[A-Za-z0-9_.]+` after `%` or `@` (an identifier ends
//! before `..`, so `%s..%n` is a range). Literals: `0.5`, `1e-3`, `-2.0`, `3`, `nan`,
//! `inf`, `-inf`, `true`, `false`; an integer literal is a valid float constant.
//!
//! Parsing has two phases. The first reads the syntax of the whole file into a small
//! tree, so a function may call one defined later. The second builds each function,
//! typing every instruction with [`Op::result_types`]. What the parser checks: syntax,
//! that each `%name` is defined exactly once per function and textually before its use,
//! that callees exist, and each instruction's operand types. What it leaves to the
//! verifier: region scoping and dominance (a use of a value defined inside an earlier,
//! closed loop body parses), terminators, and `yield`/`ret` against the carried and
//! result types.
//!
//! Robustness: no input makes the parser panic, loop forever or allocate more than a
//! small multiple of the input size. Loop nesting is capped at [`MAX_NESTING`] (parsing
//! is recursive in it) and tensor rank at [`MAX_RANK`].
//!
//! Every value gets the name it has in the text, so printing gives the same labels back.

use crate::checkpoint::Policy;
use crate::function::{Function, Module, Region, Value};
use crate::op::{
    Axes, Bound, Constant, Format, LoopBounds, Op, PayloadError, RevLoop, Signature, TapeLoop,
    TypeError,
};
use crate::shape::SliceRange;
use crate::types::{ScalarType, Shape, Type, MAX_RANK};
use std::collections::HashMap;
use std::fmt;

/// The deepest loop nesting the parser accepts.
pub const MAX_NESTING: usize = 64;

/// A parse error: where (1-based line and column, in characters) and what.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{line}:{col}: {kind}")]
pub struct ParseError {
    /// Line, from 1.
    pub line: usize,
    /// Column, from 1.
    pub col: usize,
    /// What went wrong.
    pub kind: ParseErrorKind,
}

/// The classes of parse errors. Each message says what was expected.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ParseErrorKind {
    /// A character that starts no token (`$`, a lone `.`, a non-ASCII letter, ...).
    #[error("unexpected character {0:?}: expected a token (`%name`, `@name`, a word, a number or punctuation)")]
    UnexpectedChar(char),
    /// The grammar wanted something else here.
    #[error("expected {expected}, found {found}")]
    Expected {
        /// What the grammar allows here.
        expected: String,
        /// What the text has.
        found: String,
    },
    /// A word in op position that names no op.
    #[error("unknown op `{0}`: expected an op name (add, sub, mul, ..., loop, ret)")]
    UnknownOp(String),
    /// A word in type position that names no type.
    #[error("unknown type `{0}`: expected f64, f32, i64 or bool")]
    UnknownType(String),
    /// A malformed or out-of-range literal: an overflowing integer or float, a `powi`
    /// exponent outside `i32`, a bad tensor shape (no dimensions, rank above
    /// [`MAX_RANK`], a dimension above `u32::MAX`).
    #[error("bad number literal `{text}`: expected {expected}")]
    BadNumber {
        /// The literal as written.
        text: String,
        /// What would have been accepted.
        expected: String,
    },
    /// A use of a name not defined (yet) in this function.
    #[error("undefined value %{0}: expected a value defined earlier in this function")]
    UndefinedValue(String),
    /// A second definition of a name in one function.
    #[error(
        "value %{0} is already defined: expected a fresh name (names are unique in a function)"
    )]
    DuplicateValue(String),
    /// A second function with the same name.
    #[error("function @{0} is already defined: expected a fresh function name")]
    DuplicateFunction(String),
    /// A call to a function the module does not have.
    #[error("call to unknown function @{0}: expected a function of this module")]
    UnknownCallee(String),
    /// Operand types (or a literal and its type, or a loop's declared carried type) do
    /// not fit the op.
    #[error("type error: {0}")]
    Type(String),
    /// The number of result names differs from the number of results the op gives.
    #[error(
        "`{op}` gives {expected} result(s): expected {expected} name(s) before `=`, found {found}"
    )]
    ResultCount {
        /// Op name.
        op: String,
        /// Results the op gives.
        expected: usize,
        /// Names on the left of `=`.
        found: usize,
    },
    /// Loops nested deeper than [`MAX_NESTING`].
    #[error("loops nested too deep: expected at most {0} levels")]
    TooDeep(usize),
    /// The input ended inside a function or loop body.
    #[error(
        "unterminated {what} opened at {open_line}:{open_col}: expected `}}`, found end of input"
    )]
    Unterminated {
        /// `function @f` or `loop`.
        what: String,
        /// Line of the opening `{`.
        open_line: usize,
        /// Column of the opening `{`.
        open_col: usize,
    },
}

/// Parses a module (any number of functions).
pub fn parse_module(src: &str) -> Result<Module, ParseError> {
    let mut p = Parser::new(src)?;
    let mut asts = Vec::new();
    while p.tok.kind != Tok::Eof {
        asts.push(p.func()?);
    }
    build_module(asts)
}

/// Parses a text holding exactly one function (which may call only itself).
pub fn parse_function(src: &str) -> Result<Function, ParseError> {
    let m = parse_module(src)?;
    let n = m.funcs.len();
    let mut funcs = m.funcs.into_iter();
    match (funcs.next(), n) {
        (Some(f), 1) => Ok(f),
        _ => Err(ParseError {
            line: 1,
            col: 1,
            kind: ParseErrorKind::Expected {
                expected: "exactly one function".into(),
                found: format!("{n} functions"),
            },
        }),
    }
}

// ---------------------------------------------------------------- lexer

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Pos {
    line: usize,
    col: usize,
}

impl Pos {
    fn err(self, kind: ParseErrorKind) -> ParseError {
        ParseError {
            line: self.line,
            col: self.col,
            kind,
        }
    }
}

#[derive(Clone, Debug, PartialEq)]
enum Tok {
    /// `%name`
    Local(String),
    /// `@name`
    Global(String),
    /// A word: keyword, op or type name, `true`, `nan`, ...
    Word(String),
    /// A numeric literal as written (`-2.5e3`).
    Num(String),
    /// `-inf`
    NegInf,
    /// Punctuation: `( ) { } [ ] , : = .. ->`.
    Punct(&'static str),
    Eof,
}

impl fmt::Display for Tok {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Tok::Local(s) => write!(f, "`%{s}`"),
            Tok::Global(s) => write!(f, "`@{s}`"),
            Tok::Word(s) => write!(f, "`{s}`"),
            Tok::Num(s) => write!(f, "number `{s}`"),
            Tok::NegInf => f.write_str("`-inf`"),
            Tok::Punct(s) => write!(f, "`{s}`"),
            Tok::Eof => f.write_str("end of input"),
        }
    }
}

#[derive(Clone, Debug)]
struct Token {
    kind: Tok,
    pos: Pos,
}

struct Lexer<'s> {
    src: &'s str,
    bytes: &'s [u8],
    i: usize,
    line: usize,
    col: usize,
}

fn is_ident_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'_' || b == b'.'
}

impl<'s> Lexer<'s> {
    fn peek_at(&self, k: usize) -> Option<u8> {
        self.bytes.get(self.i + k).copied()
    }

    fn bump(&mut self) {
        if let Some(&b) = self.bytes.get(self.i) {
            self.i += 1;
            if b == b'\n' {
                self.line += 1;
                self.col = 1;
            } else if b & 0xC0 != 0x80 {
                // Count characters, not UTF-8 continuation bytes.
                self.col += 1;
            }
        }
    }

    fn pos(&self) -> Pos {
        Pos {
            line: self.line,
            col: self.col,
        }
    }

    fn skip_trivia(&mut self) {
        while let Some(b) = self.peek_at(0) {
            match b {
                b' ' | b'\t' | b'\n' | b'\r' => self.bump(),
                b';' => {
                    while let Some(c) = self.peek_at(0) {
                        if c == b'\n' {
                            break;
                        }
                        self.bump();
                    }
                }
                _ => break,
            }
        }
    }

    /// An identifier after `%`/`@`: `[A-Za-z0-9_.]+`, ending before `..`.
    fn ident(&mut self, sigil: char, pos: Pos) -> Result<String, ParseError> {
        let start = self.i;
        while let Some(b) = self.peek_at(0) {
            if !is_ident_byte(b) || (b == b'.' && self.peek_at(1) == Some(b'.')) {
                break;
            }
            self.bump();
        }
        if self.i == start {
            return Err(pos.err(ParseErrorKind::Expected {
                expected: format!("an identifier after `{sigil}`"),
                found: self.describe_here(),
            }));
        }
        Ok(self.src[start..self.i].to_string())
    }

    fn describe_here(&self) -> String {
        match self.src.get(self.i..).and_then(|s| s.chars().next()) {
            Some(c) => format!("{c:?}"),
            None => "end of input".into(),
        }
    }

    fn digits(&mut self) -> usize {
        let mut n = 0;
        while matches!(self.peek_at(0), Some(b'0'..=b'9')) {
            self.bump();
            n += 1;
        }
        n
    }

    fn number(&mut self, pos: Pos) -> Result<Tok, ParseError> {
        let start = self.i;
        if self.peek_at(0) == Some(b'-') {
            self.bump();
        }
        self.digits();
        let bad = |lx: &Self, expected: &str| {
            pos.err(ParseErrorKind::BadNumber {
                text: lx.src[start..lx.i].to_string(),
                expected: expected.into(),
            })
        };
        if self.peek_at(0) == Some(b'.') && self.peek_at(1) != Some(b'.') {
            self.bump();
            if self.digits() == 0 {
                return Err(bad(self, "digits after the decimal point"));
            }
        }
        if matches!(self.peek_at(0), Some(b'e' | b'E')) {
            self.bump();
            if matches!(self.peek_at(0), Some(b'+' | b'-')) {
                self.bump();
            }
            if self.digits() == 0 {
                return Err(bad(self, "digits in the exponent"));
            }
        }
        if let Some(b) = self.peek_at(0) {
            if b.is_ascii_alphanumeric() || b == b'_' {
                self.bump();
                return Err(bad(self, "a number followed by a delimiter"));
            }
        }
        Ok(Tok::Num(self.src[start..self.i].to_string()))
    }

    fn next(&mut self) -> Result<Token, ParseError> {
        self.skip_trivia();
        let pos = self.pos();
        let Some(b) = self.peek_at(0) else {
            return Ok(Token {
                kind: Tok::Eof,
                pos,
            });
        };
        let punct = |lx: &mut Self, s: &'static str| {
            for _ in 0..s.len() {
                lx.bump();
            }
            Tok::Punct(s)
        };
        let kind = match b {
            b'%' | b'@' => {
                self.bump();
                let sigil = b as char;
                let id = self.ident(sigil, pos)?;
                if b == b'%' {
                    Tok::Local(id)
                } else {
                    Tok::Global(id)
                }
            }
            b'0'..=b'9' => self.number(pos)?,
            b'-' => match self.peek_at(1) {
                Some(b'0'..=b'9') => self.number(pos)?,
                Some(b'>') => punct(self, "->"),
                Some(b'i')
                    if self.bytes.get(self.i + 1..self.i + 4) == Some(b"inf")
                        && !self
                            .peek_at(4)
                            .is_some_and(|c| c.is_ascii_alphanumeric() || c == b'_') =>
                {
                    for _ in 0..4 {
                        self.bump();
                    }
                    Tok::NegInf
                }
                _ => return Err(pos.err(ParseErrorKind::UnexpectedChar('-'))),
            },
            b'.' if self.peek_at(1) == Some(b'.') => punct(self, ".."),
            b'(' => punct(self, "("),
            b')' => punct(self, ")"),
            b'{' => punct(self, "{"),
            b'}' => punct(self, "}"),
            b'[' => punct(self, "["),
            b']' => punct(self, "]"),
            b',' => punct(self, ","),
            b':' => punct(self, ":"),
            b'=' => punct(self, "="),
            b if b.is_ascii_alphabetic() => {
                let start = self.i;
                // A `-` between letters belongs to the word (`store-all`).
                while self.peek_at(0).is_some_and(|c| {
                    c.is_ascii_alphanumeric()
                        || c == b'_'
                        || (c == b'-' && self.peek_at(1).is_some_and(|d| d.is_ascii_alphabetic()))
                }) {
                    self.bump();
                }
                Tok::Word(self.src[start..self.i].to_string())
            }
            _ => {
                let c = self
                    .src
                    .get(self.i..)
                    .and_then(|s| s.chars().next())
                    .unwrap_or(char::REPLACEMENT_CHARACTER);
                return Err(pos.err(ParseErrorKind::UnexpectedChar(c)));
            }
        };
        Ok(Token { kind, pos })
    }
}

// ---------------------------------------------------------------- syntax

#[derive(Clone, Debug)]
struct Name {
    text: String,
    pos: Pos,
}

#[derive(Debug)]
struct FuncAst {
    name: Name,
    params: Vec<(Name, Type)>,
    results: Vec<Type>,
    body: Vec<Stmt>,
}

#[derive(Debug)]
struct Stmt {
    results: Vec<Name>,
    /// Position of the op word.
    pos: Pos,
    kind: StmtKind,
}

#[derive(Debug)]
enum BoundAst {
    Imm(i64),
    Dyn(Name),
}

#[derive(Debug)]
struct Carried {
    param: Name,
    init: Name,
    ty: Type,
    ty_pos: Pos,
}

#[derive(Debug)]
enum StmtKind {
    /// Any op without regions; `Op::Call` names its callee at `callee_pos`.
    Plain {
        op: Op,
        args: Vec<Name>,
        callee_pos: Option<Pos>,
    },
    Loop {
        index: Name,
        start: BoundAst,
        end: BoundAst,
        carried: Vec<Carried>,
        body: Vec<Stmt>,
    },
}

struct Parser<'s> {
    lx: Lexer<'s>,
    tok: Token,
}

impl<'s> Parser<'s> {
    fn new(src: &'s str) -> Result<Self, ParseError> {
        let mut lx = Lexer {
            src,
            bytes: src.as_bytes(),
            i: 0,
            line: 1,
            col: 1,
        };
        let tok = lx.next()?;
        Ok(Parser { lx, tok })
    }

    fn advance(&mut self) -> Result<Token, ParseError> {
        let next = self.lx.next()?;
        Ok(std::mem::replace(&mut self.tok, next))
    }

    fn expected<T>(&self, what: &str) -> Result<T, ParseError> {
        Err(self.tok.pos.err(ParseErrorKind::Expected {
            expected: what.into(),
            found: self.tok.kind.to_string(),
        }))
    }

    fn is_punct(&self, p: &str) -> bool {
        matches!(self.tok.kind, Tok::Punct(q) if q == p)
    }

    fn eat_punct(&mut self, p: &str) -> Result<bool, ParseError> {
        if self.is_punct(p) {
            self.advance()?;
            Ok(true)
        } else {
            Ok(false)
        }
    }

    fn expect_punct(&mut self, p: &str) -> Result<Pos, ParseError> {
        if self.is_punct(p) {
            Ok(self.advance()?.pos)
        } else {
            self.expected(&format!("`{p}`"))
        }
    }

    fn expect_word(&mut self, w: &str) -> Result<(), ParseError> {
        if matches!(&self.tok.kind, Tok::Word(x) if x == w) {
            self.advance()?;
            Ok(())
        } else {
            self.expected(&format!("`{w}`"))
        }
    }

    fn local(&mut self, what: &str) -> Result<Name, ParseError> {
        if let Tok::Local(s) = &self.tok.kind {
            let name = Name {
                text: s.clone(),
                pos: self.tok.pos,
            };
            self.advance()?;
            Ok(name)
        } else {
            self.expected(what)
        }
    }

    /// `%a, %b, ...` (possibly empty when `allow_empty`).
    fn local_list(&mut self, allow_empty: bool) -> Result<Vec<Name>, ParseError> {
        let mut out = Vec::new();
        if allow_empty && !matches!(self.tok.kind, Tok::Local(_)) {
            return Ok(out);
        }
        loop {
            out.push(self.local("a value `%name`")?);
            if !self.eat_punct(",")? {
                return Ok(out);
            }
        }
    }

    fn ty(&mut self) -> Result<Type, ParseError> {
        let Tok::Word(w) = &self.tok.kind else {
            return self.expected("a type (f64, f32, i64, bool)");
        };
        let pos = self.tok.pos;
        let Some(s) = ScalarType::from_name(w) else {
            return Err(pos.err(ParseErrorKind::UnknownType(w.clone())));
        };
        self.advance()?;
        if !self.is_punct("[") {
            return Ok(Type::Scalar(s));
        }
        let open = self.advance()?.pos;
        let mut dims: Vec<usize> = Vec::new();
        loop {
            let Tok::Num(text) = &self.tok.kind else {
                return self.expected("a tensor dimension");
            };
            let text = text.clone();
            let pos = self.tok.pos;
            let d = text
                .parse::<u32>()
                .map_err(|_| {
                    pos.err(ParseErrorKind::BadNumber {
                        text: text.clone(),
                        expected: "a dimension in 0..=4294967295".into(),
                    })
                })
                .map(|d| d as usize)?;
            dims.push(d);
            if dims.len() > MAX_RANK {
                return Err(pos.err(ParseErrorKind::BadNumber {
                    text,
                    expected: format!("a shape of rank at most {MAX_RANK}"),
                }));
            }
            self.advance()?;
            if !self.eat_punct(",")? {
                break;
            }
        }
        self.expect_punct("]")?;
        match Shape::new(&dims) {
            // Zero-size and oversized tensors have no layout: refuse them here, where
            // the shape is written.
            Some(shape) => {
                let ty = Type::Tensor(s, shape);
                crate::layout::Layout::of(ty)
                    .map(|_| ty)
                    .map_err(|e| open.err(ParseErrorKind::Type(e.to_string())))
            }
            None => Err(open.err(ParseErrorKind::BadNumber {
                text: format!("{dims:?}"),
                expected: format!("a shape of rank 1..={MAX_RANK}"),
            })),
        }
    }

    fn func(&mut self) -> Result<FuncAst, ParseError> {
        self.expect_word("func")?;
        let Tok::Global(fname) = &self.tok.kind else {
            return self.expected("a function name `@name`");
        };
        let name = Name {
            text: fname.clone(),
            pos: self.tok.pos,
        };
        self.advance()?;
        self.expect_punct("(")?;
        let mut params = Vec::new();
        if !self.is_punct(")") {
            loop {
                let p = self.local("a parameter `%name`")?;
                self.expect_punct(":")?;
                let t = self.ty()?;
                params.push((p, t));
                if !self.eat_punct(",")? {
                    break;
                }
            }
        }
        self.expect_punct(")")?;
        let mut results = Vec::new();
        if self.eat_punct("->")? {
            if self.eat_punct("(")? {
                if !self.is_punct(")") {
                    loop {
                        results.push(self.ty()?);
                        if !self.eat_punct(",")? {
                            break;
                        }
                    }
                }
                self.expect_punct(")")?;
            } else {
                results.push(self.ty()?);
            }
        }
        let open = self.expect_punct("{")?;
        let what = format!("function @{}", name.text);
        let body = self.block(open, &what, 0)?;
        Ok(FuncAst {
            name,
            params,
            results,
            body,
        })
    }

    /// Instructions up to and including the closing `}`.
    fn block(&mut self, open: Pos, what: &str, depth: usize) -> Result<Vec<Stmt>, ParseError> {
        let mut out = Vec::new();
        loop {
            if self.tok.kind == Tok::Eof {
                return Err(self.tok.pos.err(ParseErrorKind::Unterminated {
                    what: what.into(),
                    open_line: open.line,
                    open_col: open.col,
                }));
            }
            if self.eat_punct("}")? {
                return Ok(out);
            }
            out.push(self.stmt(depth)?);
        }
    }

    fn stmt(&mut self, depth: usize) -> Result<Stmt, ParseError> {
        let results = if matches!(self.tok.kind, Tok::Local(_)) {
            let r = self.local_list(false)?;
            self.expect_punct("=")?;
            r
        } else {
            Vec::new()
        };
        let Tok::Word(word) = &self.tok.kind else {
            return self.expected("an instruction (`%name = op ...` or an op)");
        };
        let word = word.clone();
        let pos = self.tok.pos;
        self.advance()?;
        let Some(template) = Op::from_name(&word) else {
            return Err(pos.err(ParseErrorKind::UnknownOp(word)));
        };
        // The syntax after the op name is its format's; the payload read is set with
        // `Op::with_payload`, whose refusals are reported at `at`.
        let mut at = self.tok.pos;
        let mut args: Vec<Name> = Vec::new();
        let mut callee_pos = None;
        let (callee, tape_loop, rev_loop, ranges);
        let format = match template.format() {
            Format::Unary | Format::Binary | Format::Ternary | Format::Variadic => {
                args = self.local_list(true)?;
                None
            }
            Format::Literal(..) => {
                let lit = self.advance()?;
                self.expect_punct(":")?;
                at = self.tok.pos;
                let ty = self.ty()?;
                // The literal has the element type (`fill 0.0 : f64[3]`); whether the op
                // takes a tensor type is `with_payload`'s question.
                let elem = Type::Scalar(ty.elem());
                Some(Format::Literal(literal(&lit, elem, at, &word)?, ty))
            }
            Format::WithImm(_) => {
                args.push(self.local("a value `%name`")?);
                self.expect_punct(",")?;
                at = self.tok.pos;
                Some(Format::WithImm(
                    self.integer("an integer that fits in i64")?,
                ))
            }
            Format::WithType(_) => {
                args.push(self.local("a value `%name`")?);
                self.expect_punct(":")?;
                at = self.tok.pos;
                Some(Format::WithType(self.ty()?))
            }
            Format::WithAxes(_) | Format::WithPerm(_) => {
                let perm = matches!(template.format(), Format::WithPerm(_));
                args.push(self.local("a value `%name`")?);
                self.expect_punct(",")?;
                self.expect_word(if perm { "perm" } else { "axes" })?;
                at = self.tok.pos;
                let list = self.int_list()?;
                let axes = Axes::new(&list).ok_or_else(|| {
                    at.err(ParseErrorKind::BadNumber {
                        text: format!("{list:?}"),
                        expected: format!("at most {MAX_RANK} axes, each below {MAX_RANK}"),
                    })
                })?;
                Some(if perm {
                    Format::WithPerm(axes)
                } else {
                    Format::WithAxes(axes)
                })
            }
            Format::WithRanges(_) => {
                args = self.local_list(false)?;
                at = self.tok.pos;
                ranges = self.range_list()?;
                Some(Format::WithRanges(&ranges))
            }
            Format::WithAxis(_) => {
                loop {
                    args.push(self.local("a value `%name`")?);
                    self.expect_punct(",")?;
                    if matches!(&self.tok.kind, Tok::Word(w) if w == "axis") {
                        break;
                    }
                }
                self.expect_word("axis")?;
                at = self.tok.pos;
                Some(Format::WithAxis(self.small("an axis")?))
            }
            Format::Indexed => {
                args.push(self.local("a tensor `%name`")?);
                self.expect_punct("[")?;
                args.push(self.local("an i64 index `%name`")?);
                self.expect_punct("]")?;
                None
            }
            Format::IndexedInsert => {
                args.push(self.local("a value `%name`")?);
                self.expect_word("into")?;
                args.push(self.local("a tensor `%name`")?);
                self.expect_punct("[")?;
                args.push(self.local("an i64 index `%name`")?);
                self.expect_punct("]")?;
                None
            }
            Format::Iota(..) => {
                self.expect_word("axis")?;
                let axis = self.small("an axis")?;
                self.expect_punct(":")?;
                at = self.tok.pos;
                Some(Format::Iota(axis, self.ty()?))
            }
            Format::Call(_) => {
                callee_pos = Some(self.tok.pos);
                callee = self.global("a function name `@name`")?;
                self.expect_punct("(")?;
                args = self.local_list(true)?;
                self.expect_punct(")")?;
                Some(Format::Call(&callee))
            }
            Format::Loop(_) => return self.loop_stmt(results, pos, depth),
            Format::TapeLoop(_) => {
                let (bounds, policy, f) = self.driver_head(&mut args)?;
                let state = self.value_group(None, &mut args)?;
                self.value_group(Some("caps"), &mut args)?;
                tape_loop = TapeLoop {
                    bounds,
                    policy,
                    fwd: f,
                    state,
                };
                Some(Format::TapeLoop(&tape_loop))
            }
            Format::RevLoop(_) => {
                let (bounds, policy, f) = self.driver_head(&mut args)?;
                self.expect_word("bwd")?;
                let bwd = self.global("the backward step `@name`")?;
                let tape = if matches!(&self.tok.kind, Tok::Word(w) if w == "tape") {
                    self.advance()?;
                    args.push(self.local("a tape token `%name`")?);
                    true
                } else {
                    false
                };
                let state = self.value_group(None, &mut args)?;
                let caps = self.value_group(Some("caps"), &mut args)?;
                self.value_group(Some("seed"), &mut args)?;
                rev_loop = RevLoop {
                    bounds,
                    policy,
                    fwd: f,
                    bwd,
                    state,
                    caps,
                    tape,
                };
                Some(Format::RevLoop(&rev_loop))
            }
        };
        let op = match format {
            None => template,
            Some(format) => template.with_payload(format).map_err(|e| {
                at.err(match e {
                    PayloadError::Immediate { got, expected, .. } => ParseErrorKind::BadNumber {
                        text: got.to_string(),
                        expected: expected.into(),
                    },
                    PayloadError::Type { op, got, expected } => {
                        ParseErrorKind::Type(format!("expected {expected} for `{op}`, found {got}"))
                    }
                    PayloadError::Tensor { op, expected } => {
                        ParseErrorKind::Type(format!("expected {expected} for `{op}`"))
                    }
                    PayloadError::Format { .. } => ParseErrorKind::UnknownOp(word.clone()),
                })
            })?,
        };
        let kind = StmtKind::Plain {
            op,
            args,
            callee_pos,
        };
        Ok(Stmt { results, pos, kind })
    }

    /// The rest of `loop %i in B..B (%c = %v : T, ...) { ... }` after the op word.
    fn loop_stmt(
        &mut self,
        results: Vec<Name>,
        pos: Pos,
        depth: usize,
    ) -> Result<Stmt, ParseError> {
        if depth >= MAX_NESTING {
            return Err(pos.err(ParseErrorKind::TooDeep(MAX_NESTING)));
        }
        let index = self.local("a loop index `%name`")?;
        self.expect_word("in")?;
        let start = self.bound()?;
        self.expect_punct("..")?;
        let end = self.bound()?;
        self.expect_punct("(")?;
        let mut carried = Vec::new();
        if !self.is_punct(")") {
            loop {
                let param = self.local("a carried value `%name`")?;
                self.expect_punct("=")?;
                let init = self.local("an initial value `%name`")?;
                self.expect_punct(":")?;
                let ty_pos = self.tok.pos;
                let ty = self.ty()?;
                carried.push(Carried {
                    param,
                    init,
                    ty,
                    ty_pos,
                });
                if !self.eat_punct(",")? {
                    break;
                }
            }
        }
        self.expect_punct(")")?;
        let open = self.expect_punct("{")?;
        let body = self.block(open, "loop", depth + 1)?;
        let kind = StmtKind::Loop {
            index,
            start,
            end,
            carried,
            body,
        };
        Ok(Stmt { results, pos, kind })
    }

    /// `[n, ...]`: a possibly empty list of small non-negative integers (axes).
    fn int_list(&mut self) -> Result<Vec<usize>, ParseError> {
        self.expect_punct("[")?;
        let mut out = Vec::new();
        if !self.is_punct("]") {
            loop {
                out.push(self.small("an axis")?);
                if !self.eat_punct(",")? {
                    break;
                }
            }
        }
        self.expect_punct("]")?;
        Ok(out)
    }

    /// A small non-negative integer (an axis, below 2^16).
    fn small(&mut self, what: &str) -> Result<usize, ParseError> {
        let Tok::Num(text) = &self.tok.kind else {
            return self.expected(what);
        };
        let n = text.parse::<u16>().map_err(|_| {
            self.tok.pos.err(ParseErrorKind::BadNumber {
                text: text.clone(),
                expected: format!("{what} (a small non-negative integer)"),
            })
        })?;
        self.advance()?;
        Ok(usize::from(n))
    }

    /// A non-negative integer that fits in `u32` (a slice bound or a pad width).
    fn dim_number(&mut self) -> Result<u32, ParseError> {
        let Tok::Num(text) = &self.tok.kind else {
            return self.expected("an index (a non-negative integer)");
        };
        let n = text.parse::<u32>().map_err(|_| {
            self.tok.pos.err(ParseErrorKind::BadNumber {
                text: text.clone(),
                expected: "an index in 0..=4294967295".into(),
            })
        })?;
        self.advance()?;
        Ok(n)
    }

    /// `[s:e(:k), ...]`: one range per axis (`slice` bounds, `pad` widths).
    fn range_list(&mut self) -> Result<Vec<SliceRange>, ParseError> {
        self.expect_punct("[")?;
        let mut out = Vec::new();
        loop {
            let start = self.dim_number()?;
            self.expect_punct(":")?;
            let end = self.dim_number()?;
            let step = if self.eat_punct(":")? {
                self.dim_number()?
            } else {
                1
            };
            out.push(SliceRange { start, end, step });
            if out.len() > MAX_RANK {
                return self.expected(&format!("at most {MAX_RANK} ranges (one per axis)"));
            }
            if !self.eat_punct(",")? {
                break;
            }
        }
        self.expect_punct("]")?;
        Ok(out)
    }

    /// An integer literal (an immediate); `expected` describes it in errors.
    fn integer(&mut self, expected: &str) -> Result<i64, ParseError> {
        let Tok::Num(text) = &self.tok.kind else {
            return self.expected("an integer");
        };
        let n = text.parse::<i64>().map_err(|_| {
            self.tok.pos.err(ParseErrorKind::BadNumber {
                text: text.clone(),
                expected: expected.into(),
            })
        })?;
        self.advance()?;
        Ok(n)
    }

    /// `start..end checkpoint P fwd @F`, the head of a `tapeloop` or `revloop`; dynamic
    /// bounds go to `args`.
    fn driver_head(
        &mut self,
        args: &mut Vec<Name>,
    ) -> Result<(LoopBounds, Policy, String), ParseError> {
        let mut bound = |p: &mut Self| -> Result<Bound, ParseError> {
            Ok(match p.bound()? {
                BoundAst::Imm(n) => Bound::Imm(n),
                BoundAst::Dyn(name) => {
                    args.push(name);
                    Bound::Dyn
                }
            })
        };
        let start = bound(self)?;
        self.expect_punct("..")?;
        let end = bound(self)?;
        self.expect_word("checkpoint")?;
        let policy = self.policy()?;
        self.expect_word("fwd")?;
        let fwd = self.global("the forward step `@name`")?;
        Ok((LoopBounds { start, end }, policy, fwd))
    }

    /// `[word] (%a, %b, ...)`: appends the values to `args`; returns how many.
    fn value_group(&mut self, word: Option<&str>, args: &mut Vec<Name>) -> Result<u32, ParseError> {
        if let Some(w) = word {
            self.expect_word(w)?;
        }
        self.expect_punct("(")?;
        let list = self.local_list(true)?;
        self.expect_punct(")")?;
        let n = list.len() as u32;
        args.extend(list);
        Ok(n)
    }

    /// A checkpoint policy: `store-all`, `recompute`, `binomial:S`, `every:K`, `auto:B`.
    fn policy(&mut self) -> Result<Policy, ParseError> {
        let Tok::Word(w) = &self.tok.kind else {
            return self.expected(
                "a checkpoint policy (store-all, binomial:S, every:K, recompute, auto:BYTES)",
            );
        };
        let mut text = w.clone();
        let pos = self.tok.pos;
        self.advance()?;
        if self.eat_punct(":")? {
            let Tok::Num(n) = &self.tok.kind else {
                return self.expected("a number after `:`");
            };
            text = format!("{text}:{n}");
            self.advance()?;
        }
        text.parse::<Policy>().map_err(|e| {
            pos.err(ParseErrorKind::BadNumber {
                text,
                expected: e.to_string(),
            })
        })
    }

    /// A function name `@name`.
    fn global(&mut self, what: &str) -> Result<String, ParseError> {
        let Tok::Global(g) = &self.tok.kind else {
            return self.expected(what);
        };
        let g = g.clone();
        self.advance()?;
        Ok(g)
    }

    fn bound(&mut self) -> Result<BoundAst, ParseError> {
        match &self.tok.kind {
            Tok::Local(_) => Ok(BoundAst::Dyn(self.local("a loop bound")?)),
            Tok::Num(text) => {
                let n = text.parse::<i64>().map_err(|_| {
                    self.tok.pos.err(ParseErrorKind::BadNumber {
                        text: text.clone(),
                        expected: "an integer loop bound that fits in i64".into(),
                    })
                })?;
                self.advance()?;
                Ok(BoundAst::Imm(n))
            }
            _ => self.expected("a loop bound (an integer or an i64 `%value`)"),
        }
    }
}

/// The constant for literal token `lit` with declared type `ty` (at `ty_pos`), the
/// payload of op `op`.
fn literal(lit: &Token, ty: Type, ty_pos: Pos, op: &str) -> Result<Constant, ParseError> {
    let Type::Scalar(s) = ty else {
        return Err(ty_pos.err(ParseErrorKind::Type(format!(
            "expected a scalar type for `{op}`, found {ty}"
        ))));
    };
    let bad = |text: &str, expected: String| {
        lit.pos.err(ParseErrorKind::BadNumber {
            text: text.into(),
            expected,
        })
    };
    let mismatch = || {
        lit.pos.err(ParseErrorKind::Type(format!(
            "expected a literal of type {s}, found {}",
            lit.kind
        )))
    };
    let float_text: Option<&str> = match &lit.kind {
        Tok::Num(t) => Some(t),
        Tok::Word(w) if w == "nan" || w == "inf" => Some(w),
        Tok::NegInf => Some("-inf"),
        _ => None,
    };
    match s {
        ScalarType::Bool => match &lit.kind {
            Tok::Word(w) if w == "true" => Ok(Constant::Bool(true)),
            Tok::Word(w) if w == "false" => Ok(Constant::Bool(false)),
            Tok::Num(_) | Tok::NegInf | Tok::Word(_) if float_text.is_some() => Err(mismatch()),
            _ => Err(lit.pos.err(ParseErrorKind::Expected {
                expected: "a literal (`true` or `false`)".into(),
                found: lit.kind.to_string(),
            })),
        },
        ScalarType::I64 => match &lit.kind {
            Tok::Num(t) if t.bytes().all(|b| b == b'-' || b.is_ascii_digit()) => t
                .parse::<i64>()
                .map(Constant::I64)
                .map_err(|_| bad(t, "an integer that fits in i64".into())),
            Tok::Num(_) | Tok::NegInf => Err(mismatch()),
            Tok::Word(w) if ["nan", "inf", "true", "false"].contains(&w.as_str()) => {
                Err(mismatch())
            }
            _ => Err(lit.pos.err(ParseErrorKind::Expected {
                expected: "an integer literal".into(),
                found: lit.kind.to_string(),
            })),
        },
        ScalarType::F64 | ScalarType::F32 => {
            let Some(t) = float_text else {
                if matches!(&lit.kind, Tok::Word(w) if w == "true" || w == "false") {
                    return Err(mismatch());
                }
                return Err(lit.pos.err(ParseErrorKind::Expected {
                    expected: "a number literal (`0.5`, `1e-3`, `3`, `nan`, `inf`, `-inf`)".into(),
                    found: lit.kind.to_string(),
                }));
            };
            let finite_text = !t.contains("inf");
            let range = || bad(t, format!("a literal in the finite range of {s}"));
            if s == ScalarType::F64 {
                let v: f64 = t.parse().map_err(|_| bad(t, "a float literal".into()))?;
                if v.is_infinite() && finite_text {
                    return Err(range());
                }
                Ok(Constant::F64(v))
            } else {
                let v: f32 = t.parse().map_err(|_| bad(t, "a float literal".into()))?;
                if v.is_infinite() && finite_text {
                    return Err(range());
                }
                Ok(Constant::F32(v))
            }
        }
    }
}

// ---------------------------------------------------------------- building

/// A typing error in "expected X, found Y" form.
fn type_msg(e: &TypeError) -> String {
    match e {
        TypeError::Arity { op, expected, got } => {
            format!("expected {expected} operand(s) for `{op}`, found {got}")
        }
        TypeError::Operand {
            op,
            index,
            got,
            expected,
        } => format!("expected {expected} as operand {index} of `{op}`, found {got}"),
        TypeError::UnknownCallee(f) => {
            format!("expected a function of this module, found unknown @{f}")
        }
        TypeError::Shape(e) => e.to_string(),
    }
}

fn build_module(asts: Vec<FuncAst>) -> Result<Module, ParseError> {
    let mut sigs: HashMap<String, Signature> = HashMap::new();
    for a in &asts {
        if sigs.contains_key(&a.name.text) {
            return Err(a
                .name
                .pos
                .err(ParseErrorKind::DuplicateFunction(a.name.text.clone())));
        }
        let sig = Signature {
            params: a.params.iter().map(|(_, t)| *t).collect(),
            results: a.results.clone(),
        };
        sigs.insert(a.name.text.clone(), sig);
    }
    let mut module = Module::new();
    for a in asts {
        module.funcs.push(build_function(a, &sigs)?);
    }
    Ok(module)
}

struct FnBuilder<'a> {
    f: Function,
    scope: HashMap<String, Value>,
    sigs: &'a HashMap<String, Signature>,
}

impl FnBuilder<'_> {
    fn define(&mut self, name: &Name, v: Value) -> Result<(), ParseError> {
        if self.scope.contains_key(&name.text) {
            return Err(name
                .pos
                .err(ParseErrorKind::DuplicateValue(name.text.clone())));
        }
        self.scope.insert(name.text.clone(), v);
        self.f.set_name(v, name.text.clone());
        Ok(())
    }

    fn lookup(&self, name: &Name) -> Result<Value, ParseError> {
        self.scope.get(&name.text).copied().ok_or_else(|| {
            name.pos
                .err(ParseErrorKind::UndefinedValue(name.text.clone()))
        })
    }

    fn check_count(pos: Pos, names: &[Name], op: &Op, n: usize) -> Result<(), ParseError> {
        if names.len() == n {
            Ok(())
        } else {
            Err(pos.err(ParseErrorKind::ResultCount {
                op: op.name().into(),
                expected: n,
                found: names.len(),
            }))
        }
    }

    fn stmts(&mut self, region: Region, stmts: Vec<Stmt>) -> Result<(), ParseError> {
        for stmt in stmts {
            self.stmt(region, stmt)?;
        }
        Ok(())
    }

    fn stmt(&mut self, region: Region, stmt: Stmt) -> Result<(), ParseError> {
        match stmt.kind {
            StmtKind::Plain {
                ref op,
                ref args,
                callee_pos,
            } => {
                if let (Op::Call(callee), Some(cpos)) = (op, callee_pos) {
                    if !self.sigs.contains_key(callee) {
                        return Err(cpos.err(ParseErrorKind::UnknownCallee(callee.clone())));
                    }
                }
                let vals = args
                    .iter()
                    .map(|a| self.lookup(a))
                    .collect::<Result<Vec<_>, _>>()?;
                let tys: Vec<Type> = vals.iter().map(|&v| self.f.ty(v)).collect();
                let sigs = self.sigs;
                let result_tys = op
                    .result_types(&tys, |n| sigs.get(n))
                    .map_err(|e| stmt.pos.err(ParseErrorKind::Type(type_msg(&e))))?;
                Self::check_count(stmt.pos, &stmt.results, op, result_tys.len())?;
                let inst = self
                    .f
                    .append_inst(region, op.clone(), vals, &result_tys, None);
                let results = self.f.insts[inst].results.clone();
                for (name, v) in stmt.results.iter().zip(results) {
                    self.define(name, v)?;
                }
                Ok(())
            }
            StmtKind::Loop {
                index,
                start,
                end,
                carried,
                body,
            } => {
                let mut args = Vec::new();
                let mut bound = |b: &BoundAst| -> Result<Bound, ParseError> {
                    match b {
                        BoundAst::Imm(n) => Ok(Bound::Imm(*n)),
                        BoundAst::Dyn(name) => {
                            args.push(self.lookup(name)?);
                            Ok(Bound::Dyn)
                        }
                    }
                };
                let bounds = LoopBounds {
                    start: bound(&start)?,
                    end: bound(&end)?,
                };
                for c in &carried {
                    let v = self.lookup(&c.init)?;
                    let t = self.f.ty(v);
                    if t != c.ty {
                        return Err(c.ty_pos.err(ParseErrorKind::Type(format!(
                            "expected the initial value %{} of carried %{} to have the declared type {}, found {t}",
                            c.init.text, c.param.text, c.ty
                        ))));
                    }
                    args.push(v);
                }
                let op = Op::Loop(Box::new(bounds));
                let tys: Vec<Type> = args.iter().map(|&v| self.f.ty(v)).collect();
                let carried_tys = op
                    .result_types(&tys, |_| None)
                    .map_err(|e| stmt.pos.err(ParseErrorKind::Type(type_msg(&e))))?;
                Self::check_count(stmt.pos, &stmt.results, &op, carried_tys.len())?;
                let body_region = self.f.new_region();
                let iv = self.f.add_region_param(body_region, Type::I64);
                self.define(&index, iv)?;
                for (c, &t) in carried.iter().zip(&carried_tys) {
                    let p = self.f.add_region_param(body_region, t);
                    self.define(&c.param, p)?;
                }
                self.stmts(body_region, body)?;
                let inst = self
                    .f
                    .append_inst(region, op, args, &carried_tys, Some(body_region));
                let results = self.f.insts[inst].results.clone();
                for (name, v) in stmt.results.iter().zip(results) {
                    self.define(name, v)?;
                }
                Ok(())
            }
        }
    }
}

fn build_function(a: FuncAst, sigs: &HashMap<String, Signature>) -> Result<Function, ParseError> {
    let f = Function::new(
        a.name.text.clone(),
        Signature {
            params: vec![],
            results: a.results,
        },
    );
    let mut b = FnBuilder {
        f,
        scope: HashMap::new(),
        sigs,
    };
    for (name, ty) in &a.params {
        let v = b.f.add_param(*ty);
        b.define(name, v)?;
    }
    let body = b.f.body;
    b.stmts(body, a.body)?;
    Ok(b.f)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_quickstart() {
        let f = parse_function(
            "func @f(%x: f64, %y: f64) -> f64 {\n  %a = add %x, %y\n  %b = sub %x, %y\n  \
             %c = mul %a, %b\n  ret %c\n}\n",
        )
        .unwrap();
        assert_eq!(f.num_insts(), 4);
        assert_eq!(f.sig.results, vec![Type::F64]);
    }

    #[test]
    fn lexes_ranges_and_negatives() {
        let m = parse_module(
            "func @g(%s: i64, %n: i64) -> () {\n loop %i in %s..%n () { yield }\n \
             loop %j in -3..5 () { yield }\n ret\n}",
        )
        .unwrap();
        assert_eq!(m.funcs[0].num_insts(), 5);
    }
}
